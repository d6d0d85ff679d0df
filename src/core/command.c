/*
 * command.c - remote command dispatch (moat/command.h): name checks, payload
 * limits, the handler call and the result document.
 */
#include "moat/command.h"

#include "mem.h"
#include "strbuf.h"
#include "moat/status.h"

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

bool moat_command_name_valid(const char *name, size_t len)
{
    size_t i;
    if (name == NULL || len == 0 || len > MOAT_COMMAND_NAME_MAX)
        return false;
    for (i = 0; i < len; i++)
        if (!name_char(name[i]))
            return false;
    return true;
}

moat_err moat_command_name_from_topic(const char *topic, size_t topic_len,
                                      const char *prefix, size_t prefix_len,
                                      const char **name, size_t *name_len)
{
    if (topic == NULL || prefix == NULL || name == NULL || name_len == NULL ||
        topic_len <= prefix_len || memcmp(topic, prefix, prefix_len) != 0 ||
        !moat_command_name_valid(topic + prefix_len, topic_len - prefix_len))
        return MOAT_ERR_TOPIC;
    *name = topic + prefix_len;
    *name_len = topic_len - prefix_len;
    return MOAT_OK;
}

static const moat_command *find(const moat_command *table, size_t count, const char *name,
                                size_t len)
{
    size_t i;
    for (i = 0; table != NULL && i < count; i++)
        if (table[i].name != NULL && strlen(table[i].name) == len &&
            memcmp(table[i].name, name, len) == 0)
            return &table[i];
    return NULL;
}

/* The error result; returns e, or NO_SPACE when the document does not fit. */
static moat_err fail(moat_err e, const char *why, char *result, size_t cap, size_t *result_len)
{
    moat_err w = moat_result_json(result, cap, false, why, result_len);
    return w == MOAT_OK ? e : w;
}

moat_err moat_command_dispatch(const moat_command *table, size_t count, void *user,
                               const char *name, size_t name_len,
                               const uint8_t *payload, size_t len,
                               char *result, size_t cap, size_t *result_len)
{
    char why[MOAT_COMMAND_WHY_MAX];
    const moat_command *cmd;
    size_t limit, dummy;
    moat_sb sb;
    moat_err e;

    if (result_len == NULL)
        result_len = &dummy;
    *result_len = 0;
    if (result != NULL && cap > 0)
        result[0] = '\0';
    if (!moat_command_name_valid(name, name_len))
        return fail(MOAT_ERR_TOPIC, "invalid command name (1..32 of A-Z a-z 0-9 _ . -)",
                    result, cap, result_len);
    moat_sb_init(&sb, why, sizeof why);
    cmd = find(table, count, name, name_len);
    if (cmd == NULL || cmd->fn == NULL) {
        moat_sb_str(&sb, "unknown command '");
        moat_sb_mem(&sb, name, name_len);
        moat_sb_str(&sb, "'");
        moat_sb_words(&sb);
        return fail(MOAT_ERR_ARG, why, result, cap, result_len);
    }
    limit = cmd->max_payload ? cmd->max_payload : MOAT_COMMAND_PAYLOAD_DEFAULT;
    if (len > limit) {
        moat_sb_str(&sb, "payload of ");
        moat_sb_u64(&sb, len);
        moat_sb_str(&sb, " bytes is over the limit of ");
        moat_sb_u64(&sb, limit);
        moat_sb_str(&sb, " for command '");
        moat_sb_mem(&sb, name, name_len);
        moat_sb_str(&sb, "'");
        moat_sb_words(&sb);
        return fail(MOAT_ERR_TOO_LARGE, why, result, cap, result_len);
    }
    if (payload == NULL && len > 0)
        return fail(MOAT_ERR_ARG, "invalid argument", result, cap, result_len);
    why[0] = '\0';
    e = cmd->fn(cmd, user, payload != NULL ? payload : (const uint8_t *)"", len, why,
                sizeof why);
    why[sizeof why - 1] = '\0'; /* a careless handler cannot run us off the end */
    if (e == MOAT_ERR_WOULD_BLOCK)
        return e;
    if (e == MOAT_OK) {
        e = moat_result_json(result, cap, true, NULL, result_len);
        return e;
    }
    if (e > 0)
        e = MOAT_ERR_STATE; /* not a moat_err: still a failure */
    return fail(e, why[0] != '\0' ? why : moat_strerror(e), result, cap, result_len);
}

moat_err moat_command_not_supported(const moat_command *self, void *user,
                                    const uint8_t *payload, size_t len,
                                    char *why, size_t why_cap)
{
    moat_sb sb;
    (void)user;
    (void)payload;
    (void)len;
    moat_sb_init(&sb, why, why_cap);
    moat_sb_str(&sb, "command '");
    moat_sb_str(&sb, self != NULL ? self->name : "?");
    moat_sb_str(&sb, "' is not supported");
    moat_sb_words(&sb);
    return MOAT_ERR_STATE;
}
