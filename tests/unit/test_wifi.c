/*
 * test_wifi.c - the Wi-Fi level parser (moat/wifi.h) on exact texts of
 * /proc/net/wireless, as Linux prints them (net/wireless/wext-proc.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "moat/wifi.h"

#define HEADER                                                                          \
    "Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE\n" \
    " face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22\n"

static bool parse(const char *text, const char *ifname, int32_t *dbm)
{
    return moat_wifi_rssi_parse(text, strlen(text), ifname, dbm);
}

static void dbm_level_of_the_first_interface(void **state)
{
    int32_t dbm = 0;
    (void)state;
    assert_true(parse(HEADER " wlan0: 0000   54.  -56.  -256        0      0      0      0"
                             "      0        0\n",
                      NULL, &dbm));
    assert_int_equal(dbm, -56);
}

static void named_interface(void **state)
{
    const char *t = HEADER
        " wlan0: 0000   54.  -56.  -256        0      0      0      0      0        0\n"
        "wlp3s0: 0000   70.  -40.  -256        0      0      0      0      0        0\n";
    int32_t dbm = 0;
    (void)state;
    assert_true(parse(t, "wlp3s0", &dbm));
    assert_int_equal(dbm, -40);
    assert_true(parse(t, "wlan0", &dbm));
    assert_int_equal(dbm, -56);
    /* a prefix of a name is not the name */
    assert_false(parse(t, "wlan", &dbm));
    assert_false(parse(t, "eth0", &dbm));
}

static void no_wifi_no_level(void **state)
{
    int32_t dbm = 7;
    (void)state;
    assert_false(parse(HEADER, NULL, &dbm));
    assert_false(parse("", NULL, &dbm));
    /* headers only count as headers: an interface line in their place is not read */
    assert_false(parse(" wlan0: 0000   54.  -56.  -256 0 0 0 0 0 0\n", NULL, &dbm));
    assert_int_equal(dbm, 7);
}

static void relative_or_missing_levels_are_not_dbm(void **state)
{
    int32_t dbm = 7;
    (void)state;
    /* a driver without IW_QUAL_DBM: a relative level 0..255 */
    assert_false(parse(HEADER " wlan0: 0000   54    189     0  0 0 0 0 0 0\n", NULL, &dbm));
    /* IW_QUAL_DBM with a level of 0: printed as -256 */
    assert_false(parse(HEADER " wlan0: 0000    0   -256  -256  0 0 0 0 0 0\n", NULL, &dbm));
    assert_int_equal(dbm, 7);
    /* the first interface without dBm is skipped for the next one */
    assert_true(parse(HEADER " wlan0: 0000   54    189     0  0 0 0 0 0 0\n"
                             " wlan1: 0000   40.  -71.  -256 0 0 0 0 0 0\n",
                      NULL, &dbm));
    assert_int_equal(dbm, -71);
}

static void broken_lines(void **state)
{
    static const char *bad[] = {
        HEADER " wlan0 0000   54.  -56.  -256\n",          /* no colon */
        HEADER ": 0000   54.  -56.  -256\n",              /* no name */
        HEADER " wlan0:\n",                              /* nothing after it */
        HEADER " wlan0: 0000\n",                         /* no quality */
        HEADER " wlan0: 0000   54.\n",                   /* no level */
        HEADER " wlan0: 0000   54.  -.\n",               /* a sign, no digits */
        HEADER " wlan0: 0000   54.  -5612345678901\n",   /* far too long */
        HEADER " wlan0: zz   54.  -56.\n",               /* no status */
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t dbm = 7;
        assert_false(parse(bad[i], NULL, &dbm));
        assert_int_equal(dbm, 7);
    }
}

static void text_without_final_newline_or_nul(void **state)
{
    const char t[] = HEADER " wlan0: 0000   54.  -63.";
    char copy[sizeof t];
    int32_t dbm = 0;
    (void)state;
    memcpy(copy, t, sizeof t - 1);
    copy[sizeof t - 1] = 'X'; /* no NUL within len */
    assert_true(moat_wifi_rssi_parse(copy, sizeof t - 1, NULL, &dbm));
    assert_int_equal(dbm, -63);
}

static void from_a_file(void **state)
{
    char path[] = "/tmp/moat-wifi-XXXXXX";
    int fd = mkstemp(path);
    const char *t = HEADER " wlan0: 0000   54.  -48.  -256 0 0 0 0 0 0\n";
    int32_t dbm = 0;
    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, t, strlen(t)), (int)strlen(t));
    close(fd);
    assert_true(moat_wifi_rssi(path, NULL, &dbm));
    assert_int_equal(dbm, -48);
    unlink(path);
    assert_false(moat_wifi_rssi(path, NULL, &dbm));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dbm_level_of_the_first_interface),
        cmocka_unit_test(named_interface),
        cmocka_unit_test(no_wifi_no_level),
        cmocka_unit_test(relative_or_missing_levels_are_not_dbm),
        cmocka_unit_test(broken_lines),
        cmocka_unit_test(text_without_final_newline_or_nul),
        cmocka_unit_test(from_a_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
