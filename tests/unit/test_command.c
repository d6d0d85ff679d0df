/*
 * test_command.c - command dispatch (moat/command.h): the handler called
 * with exactly the payload, result documents byte for byte, unknown and
 * invalid names, payload limits, deferred results, not-supported commands,
 * and names taken from topics.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "moat/command.h"
#include "moat/status.h"

typedef struct calls {
    int n;
    const moat_command *self;
    void *user;
    const uint8_t *payload;
    size_t len;
    moat_err ret;
    const char *words; /* written into why when not NULL */
} calls;

static calls seen;

static moat_err record(const moat_command *self, void *user, const uint8_t *payload,
                       size_t len, char *why, size_t why_cap)
{
    seen.n++;
    seen.self = self;
    seen.user = user;
    seen.payload = payload;
    seen.len = len;
    assert_non_null(why);
    assert_int_equal(why_cap, MOAT_COMMAND_WHY_MAX);
    assert_string_equal(why, "");
    if (seen.words != NULL)
        strncpy(why, seen.words, why_cap);
    return seen.ret;
}

static moat_err scribble(const moat_command *self, void *user, const uint8_t *payload,
                         size_t len, char *why, size_t why_cap)
{
    (void)self;
    (void)user;
    (void)payload;
    (void)len;
    memset(why, 'w', why_cap); /* no NUL at all */
    return MOAT_ERR_ARG;
}

static const moat_command table[] = {
    {"reboot", record, 0},
    {"status", record, 0},
    {"zone", record, 64},
    {"config", record, 4096},
    {"firmware", moat_command_not_supported, 0},
    {"flash", moat_command_not_supported, 0},
    {"ca", moat_command_not_supported, 0},
    {"cert", moat_command_not_supported, 0},
    {"key", moat_command_not_supported, 0},
    {"scribble", scribble, 0},
    {"nohandler", NULL, 0},
};
#define COUNT (sizeof table / sizeof table[0])

static char result[MOAT_RESULT_JSON_MAX];
static size_t rlen;

static moat_err run(const char *name, const char *payload, size_t len)
{
    memset(result, 'x', sizeof result);
    rlen = 12345;
    return moat_command_dispatch(table, COUNT, &seen, name, strlen(name),
                                 (const uint8_t *)payload, len, result, sizeof result, &rlen);
}

static void reset(moat_err ret, const char *words)
{
    memset(&seen, 0, sizeof seen);
    seen.ret = ret;
    seen.words = words;
}

static void calls_handler(void **state)
{
    const char *p = "3 60";
    (void)state;
    reset(MOAT_OK, NULL);
    assert_int_equal(run("zone", p, 4), MOAT_OK);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.self->name, "zone");
    assert_ptr_equal(seen.self, &table[2]);
    assert_ptr_equal(seen.user, &seen);
    assert_ptr_equal(seen.payload, p);
    assert_int_equal(seen.len, 4);
    assert_string_equal(result, "{\"ok\":true}");
    assert_int_equal(rlen, 11);
}

static void empty_payload(void **state)
{
    (void)state;
    reset(MOAT_OK, NULL);
    assert_int_equal(moat_command_dispatch(table, COUNT, NULL, "reboot", 6, NULL, 0, result,
                                           sizeof result, &rlen), MOAT_OK);
    assert_int_equal(seen.n, 1);
    assert_non_null(seen.payload); /* never NULL for the handler */
    assert_int_equal(seen.len, 0);
    assert_null(seen.user);
    /* NULL payload with a length is refused */
    reset(MOAT_OK, NULL);
    assert_int_equal(moat_command_dispatch(table, COUNT, NULL, "reboot", 6, NULL, 1, result,
                                           sizeof result, &rlen), MOAT_ERR_ARG);
    assert_int_equal(seen.n, 0);
}

static void handler_error_with_words(void **state)
{
    (void)state;
    reset(MOAT_ERR_ARG, "zone 9 does not exist (zones are 1 to 8)");
    assert_int_equal(run("zone", "9 1", 3), MOAT_ERR_ARG);
    assert_string_equal(result,
                        "{\"ok\":false,\"error\":\"zone 9 does not exist (zones are 1 to 8)\"}");
    assert_int_equal(rlen, strlen(result));
}

static void handler_error_without_words(void **state)
{
    (void)state;
    reset(MOAT_ERR_FILE, NULL);
    assert_int_equal(run("config", "", 0), MOAT_ERR_FILE);
    assert_string_equal(result, "{\"ok\":false,\"error\":\"file cannot be read\"}");
    /* a positive return is not success */
    reset((moat_err)3, NULL);
    assert_int_equal(run("config", "", 0), MOAT_ERR_STATE);
    assert_string_equal(result,
                        "{\"ok\":false,\"error\":\"not allowed in the current state\"}");
}

static void handler_words_escaped_and_bounded(void **state)
{
    (void)state;
    reset(MOAT_ERR_MALFORMED, "bad \"key\"\n");
    assert_int_equal(run("config", "{", 1), MOAT_ERR_MALFORMED);
    assert_string_equal(result, "{\"ok\":false,\"error\":\"bad \\\"key\\\"\\n\"}");
    memset(result, 0, sizeof result);
    assert_int_equal(run("scribble", "", 0), MOAT_ERR_ARG);
    assert_int_equal(rlen, strlen("{\"ok\":false,\"error\":\"\"}") + MOAT_COMMAND_WHY_MAX - 1);
}

static void deferred_result(void **state)
{
    (void)state;
    reset(MOAT_ERR_WOULD_BLOCK, NULL);
    assert_int_equal(run("config", "", 0), MOAT_ERR_WOULD_BLOCK);
    assert_int_equal(rlen, 0);
    assert_string_equal(result, "");
}

static void unknown_command(void **state)
{
    (void)state;
    reset(MOAT_OK, NULL);
    assert_int_equal(run("Zone", "", 0), MOAT_ERR_ARG);
    assert_string_equal(result, "{\"ok\":false,\"error\":\"unknown command 'Zone'\"}");
    assert_int_equal(run("zon", "", 0), MOAT_ERR_ARG);
    assert_int_equal(run("zones", "", 0), MOAT_ERR_ARG);
    assert_string_equal(result, "{\"ok\":false,\"error\":\"unknown command 'zones'\"}");
    assert_int_equal(run("nohandler", "", 0), MOAT_ERR_ARG);
    assert_int_equal(seen.n, 0);
    /* an empty table */
    assert_int_equal(moat_command_dispatch(NULL, 0, NULL, "zone", 4, NULL, 0, result,
                                           sizeof result, &rlen), MOAT_ERR_ARG);
    assert_string_equal(result, "{\"ok\":false,\"error\":\"unknown command 'zone'\"}");
}

#define INVALID "{\"ok\":false,\"error\":\"invalid command name (1..32 of A-Z a-z 0-9 _ . -)\"}"

static void invalid_names(void **state)
{
    static const char *bad[] = {"", "a/b", "+", "#", "zone ", "a\"b", "a\\b", "\n",
                                "012345678901234567890123456789012", "caf\xc3\xa9"};
    size_t i;
    (void)state;
    reset(MOAT_OK, NULL);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(run(bad[i], "", 0), MOAT_ERR_TOPIC);
        assert_string_equal(result, INVALID);
    }
    /* a NUL inside the name slice */
    assert_int_equal(moat_command_dispatch(table, COUNT, NULL, "zone\0", 5, NULL, 0, result,
                                           sizeof result, &rlen), MOAT_ERR_TOPIC);
    assert_int_equal(moat_command_dispatch(table, COUNT, NULL, NULL, 3, NULL, 0, result,
                                           sizeof result, &rlen), MOAT_ERR_TOPIC);
    assert_int_equal(seen.n, 0);
    assert_true(moat_command_name_valid("012345678901234567890123456789_.", 32));
    assert_true(moat_command_name_valid("A-z", 3));
    assert_false(moat_command_name_valid("zone", 0));
}

static void payload_limits(void **state)
{
    char big[5000];
    (void)state;
    memset(big, 'a', sizeof big);
    reset(MOAT_OK, NULL);
    assert_int_equal(run("zone", big, 64), MOAT_OK);
    assert_int_equal(run("zone", big, 65), MOAT_ERR_TOO_LARGE);
    assert_string_equal(result, "{\"ok\":false,\"error\":\"payload of 65 bytes is over the "
                                "limit of 64 for command 'zone'\"}");
    assert_int_equal(run("status", big, MOAT_COMMAND_PAYLOAD_DEFAULT), MOAT_OK);
    assert_int_equal(run("status", big, MOAT_COMMAND_PAYLOAD_DEFAULT + 1), MOAT_ERR_TOO_LARGE);
    assert_string_equal(result, "{\"ok\":false,\"error\":\"payload of 257 bytes is over the "
                                "limit of 256 for command 'status'\"}");
    assert_int_equal(run("config", big, 4096), MOAT_OK);
    assert_int_equal(run("config", big, 4097), MOAT_ERR_TOO_LARGE);
    assert_int_equal(seen.n, 3);
}

static void not_supported(void **state)
{
    static const char *names[] = {"firmware", "flash", "ca", "cert", "key"};
    char want[128];
    size_t i;
    (void)state;
    for (i = 0; i < 5; i++) {
        assert_int_equal(run(names[i], "x", 1), MOAT_ERR_STATE);
        strcpy(want, "{\"ok\":false,\"error\":\"command '");
        strcat(want, names[i]);
        strcat(want, "' is not supported\"}");
        assert_string_equal(result, want);
    }
}

static void small_result_buffer(void **state)
{
    char small[12];
    size_t len = 9;
    (void)state;
    reset(MOAT_OK, NULL);
    assert_int_equal(moat_command_dispatch(table, COUNT, NULL, "reboot", 6, NULL, 0, small,
                                           sizeof small, &len), MOAT_OK);
    assert_string_equal(small, "{\"ok\":true}");
    assert_int_equal(moat_command_dispatch(table, COUNT, NULL, "reboot", 6, NULL, 0, small,
                                           11, &len), MOAT_ERR_NO_SPACE);
    assert_int_equal(len, 0);
    assert_int_equal(seen.n, 2); /* the handler did run */
    assert_int_equal(moat_command_dispatch(table, COUNT, NULL, "nope", 4, NULL, 0, small,
                                           sizeof small, &len), MOAT_ERR_NO_SPACE);
    assert_string_equal(small, "");
    assert_int_equal(moat_command_dispatch(table, COUNT, NULL, "reboot", 6, NULL, 0, NULL, 0,
                                           NULL), MOAT_ERR_NO_SPACE);
}

static void name_from_topic(void **state)
{
    const char *prefix = "moat/a0b1c2d3e4f5/cmd/";
    const char *t, *name = NULL;
    size_t n = 0, pl = strlen(prefix);
    (void)state;
    t = "moat/a0b1c2d3e4f5/cmd/zone";
    assert_int_equal(moat_command_name_from_topic(t, strlen(t), prefix, pl, &name, &n), MOAT_OK);
    assert_ptr_equal(name, t + pl);
    assert_int_equal(n, 4);
    t = "/command/a0b1c2d3e4f5/reboot"; /* the seed's layout */
    assert_int_equal(moat_command_name_from_topic(t, strlen(t), "/command/a0b1c2d3e4f5/", 22,
                                                  &name, &n), MOAT_OK);
    assert_int_equal(n, 6);
    t = "moat/a0b1c2d3e4f5/cmd/";
    assert_int_equal(moat_command_name_from_topic(t, strlen(t), prefix, pl, &name, &n),
                     MOAT_ERR_TOPIC);
    t = "moat/a0b1c2d3e4f5/cmd/a/b";
    assert_int_equal(moat_command_name_from_topic(t, strlen(t), prefix, pl, &name, &n),
                     MOAT_ERR_TOPIC);
    t = "moat/ffffffffffff/cmd/zone";
    assert_int_equal(moat_command_name_from_topic(t, strlen(t), prefix, pl, &name, &n),
                     MOAT_ERR_TOPIC);
    t = "moat/a0b1";
    assert_int_equal(moat_command_name_from_topic(t, strlen(t), prefix, pl, &name, &n),
                     MOAT_ERR_TOPIC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(calls_handler),
        cmocka_unit_test(empty_payload),
        cmocka_unit_test(handler_error_with_words),
        cmocka_unit_test(handler_error_without_words),
        cmocka_unit_test(handler_words_escaped_and_bounded),
        cmocka_unit_test(deferred_result),
        cmocka_unit_test(unknown_command),
        cmocka_unit_test(invalid_names),
        cmocka_unit_test(payload_limits),
        cmocka_unit_test(not_supported),
        cmocka_unit_test(small_result_buffer),
        cmocka_unit_test(name_from_topic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
