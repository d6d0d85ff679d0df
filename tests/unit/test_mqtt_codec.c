/*
 * test_mqtt_codec.c - the MQTT 3.1.1 codec, byte for byte.
 *
 * Expected bytes are written by hand from the OASIS MQTT 3.1.1 specification
 * (chapters 2 and 3), never produced by the code under test. Every one of
 * the 14 packet types is encoded and decoded; every broken packet is refused
 * with the specific moat_err of include/moat/error.h.
 *
 * Where the header leaves the error code open, the test accepts the few codes
 * that a careful reading allows (see expect_one_of), and says so.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "moat/mqtt.h"

#define V4 MOAT_MQTT_V311
#define U8(s) ((const uint8_t *)(s))
#define STR(s) ((moat_mqtt_str){ U8(s), (uint16_t)(sizeof(s) - 1) })
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------ helpers -- */

/* Encode into a big buffer and compare with `exp`; then check that every
 * capacity below the packet size is refused with MOAT_ERR_NO_SPACE and that
 * nothing is written at or past the capacity. */
#define CHECK_ENC(exp, fn, ...)                                                   \
    do {                                                                          \
        uint8_t b_[512];                                                          \
        size_t l_ = 99999;                                                        \
        memset(b_, 0xA5, sizeof b_);                                              \
        assert_int_equal(fn(b_, sizeof b_, &l_, __VA_ARGS__), MOAT_OK);           \
        assert_int_equal(l_, sizeof(exp));                                        \
        assert_memory_equal(b_, exp, sizeof(exp));                                \
        for (size_t k_ = sizeof(exp); k_ < sizeof b_; k_++)                       \
            assert_int_equal(b_[k_], 0xA5);                                       \
        for (size_t cap_ = 0; cap_ < sizeof(exp); cap_++) {                       \
            memset(b_, 0xA5, sizeof b_);                                          \
            assert_int_equal(fn(b_, cap_, &l_, __VA_ARGS__), MOAT_ERR_NO_SPACE);  \
            for (size_t k_ = cap_; k_ < sizeof b_; k_++)                          \
                assert_int_equal(b_[k_], 0xA5);                                   \
        }                                                                         \
        memset(b_, 0xA5, sizeof b_);                                              \
        assert_int_equal(fn(b_, sizeof(exp), &l_, __VA_ARGS__), MOAT_OK);         \
        assert_int_equal(l_, sizeof(exp));                                        \
        assert_memory_equal(b_, exp, sizeof(exp));                                \
    } while (0)

/* The encoder must refuse with `err`. */
#define ENC_ERR(err, fn, ...)                                                     \
    do {                                                                          \
        uint8_t b_[512];                                                          \
        size_t l_ = 0;                                                            \
        assert_int_equal(fn(b_, sizeof b_, &l_, __VA_ARGS__), err);               \
    } while (0)

static void expect_one_of(moat_err got, const moat_err *ok, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (got == ok[i])
            return;
    fail_msg("error %d is none of the %zu accepted codes (first: %d)", (int)got, n,
             (int)ok[0]);
}

/* Split a whole packet into its fixed header and body via the header
 * decoder, and check the length agrees with the byte count. */
static void split(const uint8_t *pkt, size_t n, uint8_t *type, uint8_t *flags,
                  uint32_t *rem, size_t *hl)
{
    assert_int_equal(moat_mqtt_decode_header(pkt, n, type, flags, rem, hl), MOAT_OK);
    assert_int_equal(*hl + *rem, n);
}

static moat_err dec_srv(const uint8_t *pkt, size_t n, moat_mqtt_packet *out)
{
    uint8_t type, flags;
    uint32_t rem;
    size_t hl;
    split(pkt, n, &type, &flags, &rem, &hl);
    memset(out, 0x5A, sizeof *out);
    return moat_mqtt_decode_from_server(V4, type, flags, pkt + hl, rem, out);
}

static moat_err dec_cli(const uint8_t *pkt, size_t n, moat_mqtt_packet *out)
{
    uint8_t type, flags;
    uint32_t rem;
    size_t hl;
    split(pkt, n, &type, &flags, &rem, &hl);
    memset(out, 0x5A, sizeof *out);
    return moat_mqtt_decode_from_client(V4, type, flags, pkt + hl, rem, out);
}

#define SRV_ERR(err, ...)                                                         \
    do {                                                                          \
        static const uint8_t p_[] = { __VA_ARGS__ };                              \
        moat_mqtt_packet o_;                                                      \
        assert_int_equal(dec_srv(p_, sizeof p_, &o_), err);                       \
    } while (0)

#define CLI_ERR(err, ...)                                                         \
    do {                                                                          \
        static const uint8_t p_[] = { __VA_ARGS__ };                              \
        moat_mqtt_packet o_;                                                      \
        assert_int_equal(dec_cli(p_, sizeof p_, &o_), err);                       \
    } while (0)

static void str_eq(moat_mqtt_str s, const char *want)
{
    assert_int_equal(s.len, strlen(want));
    if (s.len)
        assert_memory_equal(s.data, want, s.len);
}

/* -------------------------------------------------- the spec's bytes -- */

/* CONNECT, clean session, keep-alive 60, client id "dev1". */
static const uint8_t CONNECT_MIN[] = {
    0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3C,
    0x00, 0x04, 'd', 'e', 'v', '1'
};
/* CONNECT, no clean session, keep-alive 0, client id "c". */
static const uint8_t CONNECT_NOCLEAN[] = {
    0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x00, 0x00, 0x00,
    0x00, 0x01, 'c'
};
/* CONNECT, clean, empty client id. */
static const uint8_t CONNECT_EMPTY_ID[] = {
    0x10, 0x0C, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3C,
    0x00, 0x00
};
/* CONNECT with everything: user, password, will QoS 1 retained, clean;
 * keep-alive 300; password is binary. Flags 1110 1110. */
static const uint8_t CONNECT_FULL[] = {
    0x10, 0x1E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0xEE, 0x01, 0x2C,
    0x00, 0x01, 'c',
    0x00, 0x03, 'w', '/', 't',
    0x00, 0x03, 'b', 'y', 'e',
    0x00, 0x01, 'u',
    0x00, 0x02, 0x00, 0xFF
};
/* CONNECT with will QoS 2 (not retained, empty will payload) and a user
 * name but no password, no clean session, keep-alive 10. Flags 1001 0100. */
static const uint8_t CONNECT_WILL2_USER[] = {
    0x10, 0x15, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x94, 0x00, 0x0A,
    0x00, 0x01, 'c',
    0x00, 0x01, 'w',
    0x00, 0x00,
    0x00, 0x01, 'u'
};

static const uint8_t CONNACK_OK[] = { 0x20, 0x02, 0x00, 0x00 };
static const uint8_t CONNACK_SP[] = { 0x20, 0x02, 0x01, 0x00 };
static const uint8_t CONNACK_AUTH[] = { 0x20, 0x02, 0x00, 0x05 };

static const uint8_t PUB_Q0[] = {
    0x30, 0x0A, 0x00, 0x03, 'a', '/', 'b', 'h', 'e', 'l', 'l', 'o'
};
static const uint8_t PUB_Q1_RETAIN[] = {
    0x33, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x12, 0x34, 'h', 'i'
};
static const uint8_t PUB_Q2_DUP_EMPTY[] = { 0x3C, 0x05, 0x00, 0x01, 'x', 0x00, 0x01 };
static const uint8_t PUB_Q2_DUP_RETAIN[] = {
    0x3D, 0x07, 0x00, 0x01, 'x', 0xFF, 0xFE, 0x00, 0x7F
};
static const uint8_t PUB_Q0_EMPTY[] = { 0x30, 0x03, 0x00, 0x01, 't' };
/* payloads are binary: NUL, 0xFF and an overlong sequence are fine there */
static const uint8_t PUB_Q0_BINARY[] = {
    0x30, 0x07, 0x00, 0x01, 't', 0x00, 0xFF, 0xC0, 0x80
};

static const uint8_t PUBACK_1234[] = { 0x40, 0x02, 0x12, 0x34 };
static const uint8_t PUBREC_1234[] = { 0x50, 0x02, 0x12, 0x34 };
static const uint8_t PUBREL_1234[] = { 0x62, 0x02, 0x12, 0x34 };
static const uint8_t PUBCOMP_1234[] = { 0x70, 0x02, 0x12, 0x34 };
static const uint8_t UNSUBACK_FFFF[] = { 0xB0, 0x02, 0xFF, 0xFF };

/* SUBSCRIBE id 10: "a/b" QoS 0, "c/+" QoS 1, "#" QoS 2. */
static const uint8_t SUBSCRIBE_3[] = {
    0x82, 0x12, 0x00, 0x0A,
    0x00, 0x03, 'a', '/', 'b', 0x00,
    0x00, 0x03, 'c', '/', '+', 0x01,
    0x00, 0x01, '#', 0x02
};
/* SUBACK id 10: granted 0, 1, 2 and refused. */
static const uint8_t SUBACK_4[] = { 0x90, 0x06, 0x00, 0x0A, 0x00, 0x01, 0x02, 0x80 };
/* UNSUBSCRIBE id 11: "a/b", "c/#". */
static const uint8_t UNSUBSCRIBE_2[] = {
    0xA2, 0x0C, 0x00, 0x0B,
    0x00, 0x03, 'a', '/', 'b',
    0x00, 0x03, 'c', '/', '#'
};
static const uint8_t PINGREQ[] = { 0xC0, 0x00 };
static const uint8_t PINGRESP[] = { 0xD0, 0x00 };
static const uint8_t DISCONNECT[] = { 0xE0, 0x00 };

/* ---------------------------------------------------- fixed header -- */

static void header_size_boundaries(void **state)
{
    (void)state;
    assert_int_equal(moat_mqtt_header_size(0), 2);
    assert_int_equal(moat_mqtt_header_size(1), 2);
    assert_int_equal(moat_mqtt_header_size(127), 2);
    assert_int_equal(moat_mqtt_header_size(128), 3);
    assert_int_equal(moat_mqtt_header_size(16383), 3);
    assert_int_equal(moat_mqtt_header_size(16384), 4);
    assert_int_equal(moat_mqtt_header_size(2097151), 4);
    assert_int_equal(moat_mqtt_header_size(2097152), 5);
    assert_int_equal(moat_mqtt_header_size(MOAT_MQTT_MAX_REMAINING), 5);
}

static void check_header(const uint8_t *b, size_t n, uint8_t type, uint8_t flags,
                         uint32_t rem)
{
    uint8_t t = 0xEE, f = 0xEE;
    uint32_t r = 0xEEEEEEEE;
    size_t hl = 999;
    assert_int_equal(moat_mqtt_decode_header(b, n, &t, &f, &r, &hl), MOAT_OK);
    assert_int_equal(t, type);
    assert_int_equal(f, flags);
    assert_int_equal(r, rem);
    assert_int_equal(hl, n);
    /* every strict prefix is not enough to know */
    for (size_t k = 0; k < n; k++)
        assert_int_equal(moat_mqtt_decode_header(b, k, &t, &f, &r, &hl),
                         MOAT_ERR_WOULD_BLOCK);
}

static void header_decode_boundaries(void **state)
{
    (void)state;
    static const uint8_t h0[] = { 0x30, 0x00 };
    static const uint8_t h127[] = { 0x30, 0x7F };
    static const uint8_t h128[] = { 0x30, 0x80, 0x01 };
    static const uint8_t h16383[] = { 0x30, 0xFF, 0x7F };
    static const uint8_t h16384[] = { 0x30, 0x80, 0x80, 0x01 };
    static const uint8_t h2097151[] = { 0x30, 0xFF, 0xFF, 0x7F };
    static const uint8_t h2097152[] = { 0x30, 0x80, 0x80, 0x80, 0x01 };
    static const uint8_t hmax[] = { 0x30, 0xFF, 0xFF, 0xFF, 0x7F };
    static const uint8_t h321[] = { 0x62, 0xC1, 0x02 };   /* 0x41 + 2*128 */
    check_header(h0, sizeof h0, 3, 0, 0);
    check_header(h127, sizeof h127, 3, 0, 127);
    check_header(h128, sizeof h128, 3, 0, 128);
    check_header(h16383, sizeof h16383, 3, 0, 16383);
    check_header(h16384, sizeof h16384, 3, 0, 16384);
    check_header(h2097151, sizeof h2097151, 3, 0, 2097151);
    check_header(h2097152, sizeof h2097152, 3, 0, 2097152);
    check_header(hmax, sizeof hmax, 3, 0, 268435455u);
    check_header(h321, sizeof h321, 6, 2, 321);
}

static void header_decode_ignores_following_bytes(void **state)
{
    (void)state;
    static const uint8_t b[] = { 0x3B, 0x05, 0x00, 0x01, 'x', 0x00, 0x01, 0xEE };
    uint8_t t, f;
    uint32_t r;
    size_t hl;
    assert_int_equal(moat_mqtt_decode_header(b, sizeof b, &t, &f, &r, &hl), MOAT_OK);
    assert_int_equal(t, 3);
    assert_int_equal(f, 0x0B);
    assert_int_equal(r, 5);
    assert_int_equal(hl, 2);
}

static void header_five_length_bytes_rejected(void **state)
{
    (void)state;
    static const uint8_t b5[] = { 0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01 };
    static const uint8_t b5b[] = { 0x30, 0x80, 0x80, 0x80, 0x80, 0x01 };
    uint8_t t, f;
    uint32_t r;
    size_t hl;
    assert_int_equal(moat_mqtt_decode_header(b5, sizeof b5, &t, &f, &r, &hl),
                     MOAT_ERR_REMAINING_LENGTH);
    assert_int_equal(moat_mqtt_decode_header(b5b, sizeof b5b, &t, &f, &r, &hl),
                     MOAT_ERR_REMAINING_LENGTH);
    assert_int_equal(moat_mqtt_decode_header(b5, 5, &t, &f, &r, &hl),
                     MOAT_ERR_REMAINING_LENGTH);
}

static void header_fifth_byte_known_early(void **state)
{
    (void)state;
    /* The 4th length byte has its continuation bit set: a 5th byte would be
     * needed, so the length is already known to be invalid. */
    static const uint8_t b[] = { 0x30, 0xFF, 0xFF, 0xFF, 0x80 };
    uint8_t t, f;
    uint32_t r;
    size_t hl;
    assert_int_equal(moat_mqtt_decode_header(b, sizeof b, &t, &f, &r, &hl),
                     MOAT_ERR_REMAINING_LENGTH);
}

static void header_reserved_types_rejected(void **state)
{
    (void)state;
    static const uint8_t t0[] = { 0x00, 0x00 };
    static const uint8_t t15[] = { 0xF0, 0x00 };
    uint8_t t, f;
    uint32_t r;
    size_t hl;
    assert_int_equal(moat_mqtt_decode_header(t0, sizeof t0, &t, &f, &r, &hl),
                     MOAT_ERR_MALFORMED);
    assert_int_equal(moat_mqtt_decode_header(t15, sizeof t15, &t, &f, &r, &hl),
                     MOAT_ERR_MALFORMED);
}

/* --------------------------------------------------------- encoders -- */

static void encode_connect_all_flag_combinations(void **state)
{
    (void)state;
    moat_mqtt_connect_pkt c;

    memset(&c, 0, sizeof c);
    c.version = V4;
    c.clean_session = true;
    c.keepalive_s = 60;
    c.client_id = STR("dev1");
    CHECK_ENC(CONNECT_MIN, moat_mqtt_encode_connect, &c);

    memset(&c, 0, sizeof c);
    c.version = V4;
    c.client_id = STR("c");
    CHECK_ENC(CONNECT_NOCLEAN, moat_mqtt_encode_connect, &c);

    memset(&c, 0, sizeof c);
    c.version = V4;
    c.clean_session = true;
    c.keepalive_s = 60;
    c.client_id = STR("");
    CHECK_ENC(CONNECT_EMPTY_ID, moat_mqtt_encode_connect, &c);

    static const uint8_t pw[] = { 0x00, 0xFF };
    memset(&c, 0, sizeof c);
    c.version = V4;
    c.clean_session = true;
    c.keepalive_s = 300;
    c.client_id = STR("c");
    c.has_will = true;
    c.will_qos = 1;
    c.will_retain = true;
    c.will_topic = STR("w/t");
    c.will_payload = STR("bye");
    c.has_username = true;
    c.username = STR("u");
    c.has_password = true;
    c.password = (moat_mqtt_str){ pw, 2 };
    CHECK_ENC(CONNECT_FULL, moat_mqtt_encode_connect, &c);

    memset(&c, 0, sizeof c);
    c.version = V4;
    c.keepalive_s = 10;
    c.client_id = STR("c");
    c.has_will = true;
    c.will_qos = 2;
    c.will_topic = STR("w");
    c.will_payload = STR("");
    c.has_username = true;
    c.username = STR("u");
    CHECK_ENC(CONNECT_WILL2_USER, moat_mqtt_encode_connect, &c);
}

static void encode_connect_user_password_no_will(void **state)
{
    (void)state;
    /* flags 1100 0000: user and password, no clean session */
    static const uint8_t exp[] = {
        0x10, 0x16, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0xC0, 0xFF, 0xFF,
        0x00, 0x02, 'i', 'd',
        0x00, 0x02, 'u', 's',
        0x00, 0x02, 'p', 'w'
    };
    moat_mqtt_connect_pkt c;
    memset(&c, 0, sizeof c);
    c.version = V4;
    c.keepalive_s = 65535;
    c.client_id = STR("id");
    c.has_username = true;
    c.username = STR("us");
    c.has_password = true;
    c.password = STR("pw");
    CHECK_ENC(exp, moat_mqtt_encode_connect, &c);
}

static void encode_connect_refuses_bad_input(void **state)
{
    (void)state;
    moat_mqtt_connect_pkt c, base;
    memset(&base, 0, sizeof base);
    base.version = V4;
    base.clean_session = true;
    base.client_id = STR("c");

    c = base;
    c.version = 5;
    ENC_ERR(MOAT_ERR_ARG, moat_mqtt_encode_connect, &c);
    c.version = 3;
    ENC_ERR(MOAT_ERR_ARG, moat_mqtt_encode_connect, &c);

    c = base;
    c.client_id = STR("\xED\xA0\x80");
    ENC_ERR(MOAT_ERR_UTF8, moat_mqtt_encode_connect, &c);

    c = base;
    c.has_will = true;
    c.will_topic = STR("w");
    c.will_qos = 3;
    ENC_ERR(MOAT_ERR_QOS, moat_mqtt_encode_connect, &c);

    c = base;
    c.has_will = true;
    c.will_topic = STR("w/#");
    ENC_ERR(MOAT_ERR_TOPIC, moat_mqtt_encode_connect, &c);

    c = base;
    c.has_will = true;
    c.will_topic = STR("");
    ENC_ERR(MOAT_ERR_TOPIC, moat_mqtt_encode_connect, &c);

    c = base;
    c.has_username = true;
    c.username = STR("u\xC0\x80");
    ENC_ERR(MOAT_ERR_UTF8, moat_mqtt_encode_connect, &c);

    /* 3.1.2.9 [MQTT-3.1.2-22]: no password without a user name */
    c = base;
    c.has_password = true;
    c.password = STR("pw");
    {
        uint8_t b[128];
        size_t l;
        moat_err e = moat_mqtt_encode_connect(b, sizeof b, &l, &c);
        static const moat_err ok[] = { MOAT_ERR_ARG, MOAT_ERR_FLAGS, MOAT_ERR_PROTOCOL };
        expect_one_of(e, ok, LEN(ok));
    }
}

static void encode_connack(void **state)
{
    (void)state;
    CHECK_ENC(CONNACK_OK, moat_mqtt_encode_connack, false, 0);
    CHECK_ENC(CONNACK_SP, moat_mqtt_encode_connack, true, 0);
    CHECK_ENC(CONNACK_AUTH, moat_mqtt_encode_connack, false, 5);
}

static void encode_publish_qos_retain_dup(void **state)
{
    (void)state;
    moat_mqtt_publish_pkt p;

    memset(&p, 0, sizeof p);
    p.topic = STR("a/b");
    p.payload = U8("hello");
    p.payload_len = 5;
    CHECK_ENC(PUB_Q0, moat_mqtt_encode_publish, &p);

    memset(&p, 0, sizeof p);
    p.topic = STR("a/b");
    p.qos = 1;
    p.retain = true;
    p.packet_id = 0x1234;
    p.payload = U8("hi");
    p.payload_len = 2;
    CHECK_ENC(PUB_Q1_RETAIN, moat_mqtt_encode_publish, &p);

    memset(&p, 0, sizeof p);
    p.topic = STR("x");
    p.qos = 2;
    p.dup = true;
    p.packet_id = 1;
    CHECK_ENC(PUB_Q2_DUP_EMPTY, moat_mqtt_encode_publish, &p);

    static const uint8_t pl[] = { 0x00, 0x7F };
    memset(&p, 0, sizeof p);
    p.topic = STR("x");
    p.qos = 2;
    p.dup = true;
    p.retain = true;
    p.packet_id = 0xFFFE;
    p.payload = pl;
    p.payload_len = 2;
    CHECK_ENC(PUB_Q2_DUP_RETAIN, moat_mqtt_encode_publish, &p);

    memset(&p, 0, sizeof p);
    p.topic = STR("t");
    CHECK_ENC(PUB_Q0_EMPTY, moat_mqtt_encode_publish, &p);

    static const uint8_t bin[] = { 0x00, 0xFF, 0xC0, 0x80 };
    memset(&p, 0, sizeof p);
    p.topic = STR("t");
    p.payload = bin;
    p.payload_len = 4;
    CHECK_ENC(PUB_Q0_BINARY, moat_mqtt_encode_publish, &p);
}

static void encode_publish_refuses_bad_input(void **state)
{
    (void)state;
    moat_mqtt_publish_pkt p, base;
    memset(&base, 0, sizeof base);
    base.topic = STR("a/b");
    base.payload = U8("x");
    base.payload_len = 1;

    p = base;
    p.qos = 1;
    p.packet_id = 0;
    ENC_ERR(MOAT_ERR_PACKET_ID, moat_mqtt_encode_publish, &p);
    p.qos = 2;
    ENC_ERR(MOAT_ERR_PACKET_ID, moat_mqtt_encode_publish, &p);

    p = base;
    p.qos = 3;
    p.packet_id = 1;
    ENC_ERR(MOAT_ERR_QOS, moat_mqtt_encode_publish, &p);

    p = base;
    p.topic = STR("a/+");
    ENC_ERR(MOAT_ERR_TOPIC, moat_mqtt_encode_publish, &p);
    p.topic = STR("a/#");
    ENC_ERR(MOAT_ERR_TOPIC, moat_mqtt_encode_publish, &p);
    p.topic = STR("#");
    ENC_ERR(MOAT_ERR_TOPIC, moat_mqtt_encode_publish, &p);
    p.topic = STR("");
    ENC_ERR(MOAT_ERR_TOPIC, moat_mqtt_encode_publish, &p);
    p.topic = STR("a/\xED\xBF\xBF");
    ENC_ERR(MOAT_ERR_UTF8, moat_mqtt_encode_publish, &p);

    /* [MQTT-3.3.1-2]: DUP must be 0 with QoS 0 */
    p = base;
    p.dup = true;
    {
        uint8_t b[64];
        size_t l;
        static const moat_err ok[] = { MOAT_ERR_FLAGS, MOAT_ERR_ARG };
        expect_one_of(moat_mqtt_encode_publish(b, sizeof b, &l, &p), ok, LEN(ok));
    }
}

static void encode_publish_too_long_remaining(void **state)
{
    (void)state;
    /* A remaining length over 268435455 cannot be expressed. The payload
     * pointer is never read: the size is refused first. */
    static const uint8_t one = 0;
    moat_mqtt_publish_pkt p;
    memset(&p, 0, sizeof p);
    p.topic = STR("t");
    p.payload = &one;
    p.payload_len = MOAT_MQTT_MAX_REMAINING; /* + 3 bytes of topic */
    uint8_t b[64];
    size_t l;
    assert_int_not_equal(moat_mqtt_encode_publish(b, sizeof b, &l, &p), MOAT_OK);
}

/* PUBLISH whose remaining length sits on each length-byte boundary. */
static void encode_publish_length_boundaries(void **state)
{
    (void)state;
    static const struct {
        uint32_t rem;
        uint8_t hdr[5];
        size_t hl;
    } cases[] = {
        { 127, { 0x30, 0x7F }, 2 },
        { 128, { 0x30, 0x80, 0x01 }, 3 },
        { 16383, { 0x30, 0xFF, 0x7F }, 3 },
        { 16384, { 0x30, 0x80, 0x80, 0x01 }, 4 },
        { 2097151, { 0x30, 0xFF, 0xFF, 0x7F }, 4 },
        { 2097152, { 0x30, 0x80, 0x80, 0x80, 0x01 }, 5 },
    };
    size_t cap = 2097152 + 16;
    uint8_t *buf = malloc(cap);
    uint8_t *pl = malloc(cap);
    assert_non_null(buf);
    assert_non_null(pl);
    for (size_t i = 0; i < cap; i++)
        pl[i] = (uint8_t)(i * 7u + 3u);

    for (size_t i = 0; i < LEN(cases); i++) {
        moat_mqtt_publish_pkt p;
        memset(&p, 0, sizeof p);
        p.topic = STR("t");
        p.payload = pl;
        p.payload_len = cases[i].rem - 3;
        size_t len = 0;
        size_t total = cases[i].hl + cases[i].rem;
        assert_int_equal(moat_mqtt_encode_publish(buf, cap, &len, &p), MOAT_OK);
        assert_int_equal(len, total);
        assert_memory_equal(buf, cases[i].hdr, cases[i].hl);
        assert_memory_equal(buf + cases[i].hl, "\x00\x01t", 3);
        assert_memory_equal(buf + cases[i].hl + 3, pl, p.payload_len);
        assert_int_equal(moat_mqtt_header_size(cases[i].rem), cases[i].hl);
        /* one byte short */
        assert_int_equal(moat_mqtt_encode_publish(buf, total - 1, &len, &p),
                         MOAT_ERR_NO_SPACE);

        /* and back */
        assert_int_equal(moat_mqtt_encode_publish(buf, cap, &len, &p), MOAT_OK);
        moat_mqtt_packet out;
        size_t consumed = 0;
        assert_int_equal(moat_mqtt_decode(V4, buf, len, &out, &consumed), MOAT_OK);
        assert_int_equal(consumed, total);
        assert_int_equal(out.type, MOAT_MQTT_PUBLISH);
        assert_int_equal(out.remaining, cases[i].rem);
        assert_int_equal(out.u.publish.payload_len, cases[i].rem - 3);
        assert_ptr_equal(out.u.publish.payload, buf + cases[i].hl + 3);
        assert_int_equal(moat_mqtt_decode(V4, buf, len - 1, &out, &consumed),
                         MOAT_ERR_WOULD_BLOCK);
    }
    free(buf);
    free(pl);
}

static void encode_acks(void **state)
{
    (void)state;
    CHECK_ENC(PUBACK_1234, moat_mqtt_encode_ack, MOAT_MQTT_PUBACK, 0x1234);
    CHECK_ENC(PUBREC_1234, moat_mqtt_encode_ack, MOAT_MQTT_PUBREC, 0x1234);
    CHECK_ENC(PUBREL_1234, moat_mqtt_encode_ack, MOAT_MQTT_PUBREL, 0x1234);
    CHECK_ENC(PUBCOMP_1234, moat_mqtt_encode_ack, MOAT_MQTT_PUBCOMP, 0x1234);
    CHECK_ENC(UNSUBACK_FFFF, moat_mqtt_encode_ack, MOAT_MQTT_UNSUBACK, 0xFFFF);
    static const uint8_t one[] = { 0x40, 0x02, 0x00, 0x01 };
    CHECK_ENC(one, moat_mqtt_encode_ack, MOAT_MQTT_PUBACK, 1);
}

static void encode_acks_refuse_bad_input(void **state)
{
    (void)state;
    ENC_ERR(MOAT_ERR_PACKET_ID, moat_mqtt_encode_ack, MOAT_MQTT_PUBACK, 0);
    ENC_ERR(MOAT_ERR_PACKET_ID, moat_mqtt_encode_ack, MOAT_MQTT_PUBREL, 0);
    ENC_ERR(MOAT_ERR_ARG, moat_mqtt_encode_ack, MOAT_MQTT_CONNECT, 1);
    ENC_ERR(MOAT_ERR_ARG, moat_mqtt_encode_ack, MOAT_MQTT_PUBLISH, 1);
    ENC_ERR(MOAT_ERR_ARG, moat_mqtt_encode_ack, MOAT_MQTT_SUBACK, 1);
    ENC_ERR(MOAT_ERR_ARG, moat_mqtt_encode_ack, MOAT_MQTT_PINGREQ, 1);
    ENC_ERR(MOAT_ERR_ARG, moat_mqtt_encode_ack, 0, 1);
    ENC_ERR(MOAT_ERR_ARG, moat_mqtt_encode_ack, 15, 1);
}

static void encode_subscribe_several_filters(void **state)
{
    (void)state;
    static const moat_mqtt_sub subs[] = { { "a/b", 0 }, { "c/+", 1 }, { "#", 2 } };
    CHECK_ENC(SUBSCRIBE_3, moat_mqtt_encode_subscribe, 10, subs, 3);

    static const moat_mqtt_sub one[] = { { "moat/0123456789ab/cmd/+", 1 } };
    static const uint8_t exp1[] = {
        0x82, 0x1C, 0xAB, 0xCD, 0x00, 0x17,
        'm', 'o', 'a', 't', '/', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9',
        'a', 'b', '/', 'c', 'm', 'd', '/', '+', 0x01
    };
    CHECK_ENC(exp1, moat_mqtt_encode_subscribe, 0xABCD, one, 1);
}

static void encode_subscribe_refuses_bad_input(void **state)
{
    (void)state;
    static const moat_mqtt_sub ok[] = { { "a/b", 0 } };
    ENC_ERR(MOAT_ERR_PACKET_ID, moat_mqtt_encode_subscribe, 0, ok, 1);

    static const moat_mqtt_sub q3[] = { { "a/b", 0 }, { "c", 3 } };
    ENC_ERR(MOAT_ERR_QOS, moat_mqtt_encode_subscribe, 1, q3, 2);

    static const char *bad[] = { "a/#/b", "a+", "#a", "", "a/b#", "+a/b" };
    for (size_t i = 0; i < LEN(bad); i++) {
        moat_mqtt_sub s[2] = { { "ok", 0 }, { bad[i], 1 } };
        ENC_ERR(MOAT_ERR_FILTER, moat_mqtt_encode_subscribe, 1, s, 2);
        ENC_ERR(MOAT_ERR_FILTER, moat_mqtt_encode_unsubscribe, 1, s, 2);
    }
    static const moat_mqtt_sub u8[] = { { "a/\xC0\xAF", 0 } };
    ENC_ERR(MOAT_ERR_UTF8, moat_mqtt_encode_subscribe, 1, u8, 1);

    /* [MQTT-3.8.3-3], [MQTT-3.10.3-2]: at least one filter */
    {
        uint8_t b[64];
        size_t l;
        static const moat_err okc[] = { MOAT_ERR_ARG, MOAT_ERR_PROTOCOL };
        expect_one_of(moat_mqtt_encode_subscribe(b, sizeof b, &l, 1, ok, 0), okc,
                      LEN(okc));
        expect_one_of(moat_mqtt_encode_unsubscribe(b, sizeof b, &l, 1, ok, 0), okc,
                      LEN(okc));
    }
}

static void encode_suback(void **state)
{
    (void)state;
    static const uint8_t codes[] = { 0x00, 0x01, 0x02, 0x80 };
    CHECK_ENC(SUBACK_4, moat_mqtt_encode_suback, 10, codes, 4);

    static const uint8_t bad[] = { 0x00, 0x03 };
    uint8_t b[64];
    size_t l;
    assert_int_not_equal(moat_mqtt_encode_suback(b, sizeof b, &l, 10, bad, 2), MOAT_OK);
    static const uint8_t bad2[] = { 0x81 };
    assert_int_not_equal(moat_mqtt_encode_suback(b, sizeof b, &l, 10, bad2, 1), MOAT_OK);
    assert_int_equal(moat_mqtt_encode_suback(b, sizeof b, &l, 0, codes, 1),
                     MOAT_ERR_PACKET_ID);
}

static void encode_unsubscribe(void **state)
{
    (void)state;
    /* the qos of an UNSUBSCRIBE entry is ignored */
    static const moat_mqtt_sub subs[] = { { "a/b", 2 }, { "c/#", 3 } };
    CHECK_ENC(UNSUBSCRIBE_2, moat_mqtt_encode_unsubscribe, 11, subs, 2);
    ENC_ERR(MOAT_ERR_PACKET_ID, moat_mqtt_encode_unsubscribe, 0, subs, 2);
}

static void encode_empty_packets(void **state)
{
    (void)state;
    CHECK_ENC(PINGREQ, moat_mqtt_encode_empty, MOAT_MQTT_PINGREQ);
    CHECK_ENC(PINGRESP, moat_mqtt_encode_empty, MOAT_MQTT_PINGRESP);
    CHECK_ENC(DISCONNECT, moat_mqtt_encode_empty, MOAT_MQTT_DISCONNECT);
    ENC_ERR(MOAT_ERR_ARG, moat_mqtt_encode_empty, MOAT_MQTT_PUBACK);
    ENC_ERR(MOAT_ERR_ARG, moat_mqtt_encode_empty, MOAT_MQTT_CONNECT);
    ENC_ERR(MOAT_ERR_ARG, moat_mqtt_encode_empty, 0);
    ENC_ERR(MOAT_ERR_ARG, moat_mqtt_encode_empty, 15);
}

/* ----------------------------------------------- decode, all 14 types -- */

static void decode_connect(void **state)
{
    (void)state;
    moat_mqtt_packet p;

    assert_int_equal(dec_cli(CONNECT_MIN, sizeof CONNECT_MIN, &p), MOAT_OK);
    assert_int_equal(p.type, MOAT_MQTT_CONNECT);
    assert_int_equal(p.flags, 0);
    assert_int_equal(p.remaining, 16);
    assert_int_equal(p.props.len, 0);
    assert_int_equal(p.u.connect.version, 4);
    assert_true(p.u.connect.clean_session);
    assert_int_equal(p.u.connect.keepalive_s, 60);
    str_eq(p.u.connect.client_id, "dev1");
    assert_false(p.u.connect.has_will);
    assert_false(p.u.connect.has_username);
    assert_false(p.u.connect.has_password);

    assert_int_equal(dec_cli(CONNECT_FULL, sizeof CONNECT_FULL, &p), MOAT_OK);
    assert_true(p.u.connect.clean_session);
    assert_int_equal(p.u.connect.keepalive_s, 300);
    str_eq(p.u.connect.client_id, "c");
    assert_true(p.u.connect.has_will);
    assert_int_equal(p.u.connect.will_qos, 1);
    assert_true(p.u.connect.will_retain);
    str_eq(p.u.connect.will_topic, "w/t");
    str_eq(p.u.connect.will_payload, "bye");
    assert_true(p.u.connect.has_username);
    str_eq(p.u.connect.username, "u");
    assert_true(p.u.connect.has_password);
    assert_int_equal(p.u.connect.password.len, 2);
    assert_memory_equal(p.u.connect.password.data, "\x00\xFF", 2);
    /* slices point into the decoded buffer */
    assert_ptr_equal(p.u.connect.client_id.data, CONNECT_FULL + 14);

    assert_int_equal(dec_cli(CONNECT_WILL2_USER, sizeof CONNECT_WILL2_USER, &p), MOAT_OK);
    assert_false(p.u.connect.clean_session);
    assert_int_equal(p.u.connect.keepalive_s, 10);
    assert_true(p.u.connect.has_will);
    assert_int_equal(p.u.connect.will_qos, 2);
    assert_false(p.u.connect.will_retain);
    str_eq(p.u.connect.will_topic, "w");
    assert_int_equal(p.u.connect.will_payload.len, 0);
    assert_true(p.u.connect.has_username);
    str_eq(p.u.connect.username, "u");
    assert_false(p.u.connect.has_password);

    assert_int_equal(dec_cli(CONNECT_NOCLEAN, sizeof CONNECT_NOCLEAN, &p), MOAT_OK);
    assert_false(p.u.connect.clean_session);
    assert_int_equal(p.u.connect.keepalive_s, 0);

    assert_int_equal(dec_cli(CONNECT_EMPTY_ID, sizeof CONNECT_EMPTY_ID, &p), MOAT_OK);
    assert_int_equal(p.u.connect.client_id.len, 0);
}

static void decode_connack(void **state)
{
    (void)state;
    moat_mqtt_packet p;
    assert_int_equal(dec_srv(CONNACK_OK, sizeof CONNACK_OK, &p), MOAT_OK);
    assert_int_equal(p.type, MOAT_MQTT_CONNACK);
    assert_int_equal(p.remaining, 2);
    assert_false(p.u.connack.session_present);
    assert_int_equal(p.u.connack.return_code, 0);
    assert_int_equal(dec_srv(CONNACK_SP, sizeof CONNACK_SP, &p), MOAT_OK);
    assert_true(p.u.connack.session_present);
    assert_int_equal(p.u.connack.return_code, 0);
    /* refusals 1..5 are well-formed packets: the client maps them */
    for (uint8_t rc = 1; rc <= 5; rc++) {
        uint8_t b[] = { 0x20, 0x02, 0x00, rc };
        assert_int_equal(dec_srv(b, sizeof b, &p), MOAT_OK);
        assert_false(p.u.connack.session_present);
        assert_int_equal(p.u.connack.return_code, rc);
    }
}

static void decode_publish(void **state)
{
    (void)state;
    moat_mqtt_packet p;

    assert_int_equal(dec_srv(PUB_Q0, sizeof PUB_Q0, &p), MOAT_OK);
    assert_int_equal(p.type, MOAT_MQTT_PUBLISH);
    assert_int_equal(p.flags, 0);
    assert_int_equal(p.remaining, 10);
    str_eq(p.u.publish.topic, "a/b");
    assert_int_equal(p.u.publish.qos, 0);
    assert_int_equal(p.u.publish.packet_id, 0);
    assert_false(p.u.publish.retain);
    assert_false(p.u.publish.dup);
    assert_int_equal(p.u.publish.payload_len, 5);
    assert_memory_equal(p.u.publish.payload, "hello", 5);
    assert_ptr_equal(p.u.publish.payload, PUB_Q0 + 7);

    assert_int_equal(dec_srv(PUB_Q1_RETAIN, sizeof PUB_Q1_RETAIN, &p), MOAT_OK);
    assert_int_equal(p.flags, 3);
    assert_int_equal(p.u.publish.qos, 1);
    assert_true(p.u.publish.retain);
    assert_false(p.u.publish.dup);
    assert_int_equal(p.u.publish.packet_id, 0x1234);
    assert_int_equal(p.u.publish.payload_len, 2);
    assert_memory_equal(p.u.publish.payload, "hi", 2);

    assert_int_equal(dec_srv(PUB_Q2_DUP_EMPTY, sizeof PUB_Q2_DUP_EMPTY, &p), MOAT_OK);
    assert_int_equal(p.u.publish.qos, 2);
    assert_true(p.u.publish.dup);
    assert_false(p.u.publish.retain);
    assert_int_equal(p.u.publish.packet_id, 1);
    assert_int_equal(p.u.publish.payload_len, 0);

    assert_int_equal(dec_srv(PUB_Q2_DUP_RETAIN, sizeof PUB_Q2_DUP_RETAIN, &p), MOAT_OK);
    assert_int_equal(p.u.publish.qos, 2);
    assert_true(p.u.publish.dup);
    assert_true(p.u.publish.retain);
    assert_int_equal(p.u.publish.packet_id, 0xFFFE);
    assert_int_equal(p.u.publish.payload_len, 2);

    assert_int_equal(dec_srv(PUB_Q0_EMPTY, sizeof PUB_Q0_EMPTY, &p), MOAT_OK);
    str_eq(p.u.publish.topic, "t");
    assert_int_equal(p.u.publish.payload_len, 0);

    assert_int_equal(dec_srv(PUB_Q0_BINARY, sizeof PUB_Q0_BINARY, &p), MOAT_OK);
    assert_int_equal(p.u.publish.payload_len, 4);
    assert_memory_equal(p.u.publish.payload, "\x00\xFF\xC0\x80", 4);

    /* the broker direction decodes the same PUBLISH */
    assert_int_equal(dec_cli(PUB_Q1_RETAIN, sizeof PUB_Q1_RETAIN, &p), MOAT_OK);
    assert_int_equal(p.u.publish.packet_id, 0x1234);
}

static void decode_acks(void **state)
{
    (void)state;
    static const struct {
        const uint8_t *b;
        uint8_t type;
        uint16_t id;
    } acks[] = {
        { PUBACK_1234, MOAT_MQTT_PUBACK, 0x1234 },
        { PUBREC_1234, MOAT_MQTT_PUBREC, 0x1234 },
        { PUBREL_1234, MOAT_MQTT_PUBREL, 0x1234 },
        { PUBCOMP_1234, MOAT_MQTT_PUBCOMP, 0x1234 },
        { UNSUBACK_FFFF, MOAT_MQTT_UNSUBACK, 0xFFFF },
    };
    for (size_t i = 0; i < LEN(acks); i++) {
        moat_mqtt_packet p;
        assert_int_equal(dec_srv(acks[i].b, 4, &p), MOAT_OK);
        assert_int_equal(p.type, acks[i].type);
        assert_int_equal(p.remaining, 2);
        assert_int_equal(p.u.packet_id, acks[i].id);
        if (acks[i].type != MOAT_MQTT_UNSUBACK) {
            assert_int_equal(dec_cli(acks[i].b, 4, &p), MOAT_OK);
            assert_int_equal(p.type, acks[i].type);
            assert_int_equal(p.u.packet_id, acks[i].id);
        }
    }
}

static void decode_subscribe(void **state)
{
    (void)state;
    moat_mqtt_packet p;
    assert_int_equal(dec_cli(SUBSCRIBE_3, sizeof SUBSCRIBE_3, &p), MOAT_OK);
    assert_int_equal(p.type, MOAT_MQTT_SUBSCRIBE);
    assert_int_equal(p.flags, 2);
    assert_int_equal(p.u.sublist.packet_id, 10);
    assert_int_equal(p.u.sublist.count, 3);

    static const char *want[] = { "a/b", "c/+", "#" };
    size_t pos = 0, n = 0;
    moat_mqtt_str f;
    uint8_t q = 0xEE;
    while (moat_mqtt_sublist_next(&p, &pos, &f, &q)) {
        assert_true(n < 3);
        str_eq(f, want[n]);
        assert_int_equal(q, n);
        n++;
    }
    assert_int_equal(n, 3);
    /* the end stays the end */
    assert_false(moat_mqtt_sublist_next(&p, &pos, &f, &q));
}

static void decode_suback(void **state)
{
    (void)state;
    moat_mqtt_packet p;
    assert_int_equal(dec_srv(SUBACK_4, sizeof SUBACK_4, &p), MOAT_OK);
    assert_int_equal(p.type, MOAT_MQTT_SUBACK);
    assert_int_equal(p.u.suback.packet_id, 10);
    assert_int_equal(p.u.suback.count, 4);
    assert_memory_equal(p.u.suback.codes, "\x00\x01\x02\x80", 4);
}

static void decode_unsubscribe(void **state)
{
    (void)state;
    moat_mqtt_packet p;
    assert_int_equal(dec_cli(UNSUBSCRIBE_2, sizeof UNSUBSCRIBE_2, &p), MOAT_OK);
    assert_int_equal(p.type, MOAT_MQTT_UNSUBSCRIBE);
    assert_int_equal(p.flags, 2);
    assert_int_equal(p.u.sublist.packet_id, 11);
    assert_int_equal(p.u.sublist.count, 2);
    static const char *want[] = { "a/b", "c/#" };
    size_t pos = 0, n = 0;
    moat_mqtt_str f;
    while (moat_mqtt_sublist_next(&p, &pos, &f, NULL)) {
        assert_true(n < 2);
        str_eq(f, want[n]);
        n++;
    }
    assert_int_equal(n, 2);
}

static void decode_empty_packets(void **state)
{
    (void)state;
    moat_mqtt_packet p;
    assert_int_equal(dec_cli(PINGREQ, 2, &p), MOAT_OK);
    assert_int_equal(p.type, MOAT_MQTT_PINGREQ);
    assert_int_equal(p.remaining, 0);
    assert_int_equal(dec_srv(PINGRESP, 2, &p), MOAT_OK);
    assert_int_equal(p.type, MOAT_MQTT_PINGRESP);
    assert_int_equal(dec_cli(DISCONNECT, 2, &p), MOAT_OK);
    assert_int_equal(p.type, MOAT_MQTT_DISCONNECT);
}

/* moat_mqtt_decode: every type from one buffer, whole or not at all. */
static void decode_whole_any_type(void **state)
{
    (void)state;
    static const struct {
        const uint8_t *b;
        size_t n;
        uint8_t type;
    } all[] = {
        { CONNECT_FULL, sizeof CONNECT_FULL, MOAT_MQTT_CONNECT },
        { CONNACK_SP, sizeof CONNACK_SP, MOAT_MQTT_CONNACK },
        { PUB_Q1_RETAIN, sizeof PUB_Q1_RETAIN, MOAT_MQTT_PUBLISH },
        { PUBACK_1234, 4, MOAT_MQTT_PUBACK },
        { PUBREC_1234, 4, MOAT_MQTT_PUBREC },
        { PUBREL_1234, 4, MOAT_MQTT_PUBREL },
        { PUBCOMP_1234, 4, MOAT_MQTT_PUBCOMP },
        { SUBSCRIBE_3, sizeof SUBSCRIBE_3, MOAT_MQTT_SUBSCRIBE },
        { SUBACK_4, sizeof SUBACK_4, MOAT_MQTT_SUBACK },
        { UNSUBSCRIBE_2, sizeof UNSUBSCRIBE_2, MOAT_MQTT_UNSUBSCRIBE },
        { UNSUBACK_FFFF, 4, MOAT_MQTT_UNSUBACK },
        { PINGREQ, 2, MOAT_MQTT_PINGREQ },
        { PINGRESP, 2, MOAT_MQTT_PINGRESP },
        { DISCONNECT, 2, MOAT_MQTT_DISCONNECT },
    };
    assert_int_equal(LEN(all), 14);
    for (size_t i = 0; i < LEN(all); i++) {
        uint8_t buf[128];
        moat_mqtt_packet p;
        size_t consumed = 0;
        memcpy(buf, all[i].b, all[i].n);
        /* a second packet right behind it is left alone */
        memcpy(buf + all[i].n, PINGRESP, 2);
        assert_int_equal(moat_mqtt_decode(V4, buf, all[i].n + 2, &p, &consumed), MOAT_OK);
        assert_int_equal(p.type, all[i].type);
        assert_int_equal(consumed, all[i].n);
        for (size_t k = 0; k < all[i].n; k++)
            assert_int_equal(moat_mqtt_decode(V4, buf, k, &p, &consumed),
                             MOAT_ERR_WOULD_BLOCK);
    }
}

static void decode_whole_reports_errors(void **state)
{
    (void)state;
    static const uint8_t bad_flags[] = { 0x41, 0x02, 0x00, 0x01 };
    static const uint8_t five[] = { 0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01 };
    moat_mqtt_packet p;
    size_t consumed;
    assert_int_equal(moat_mqtt_decode(V4, bad_flags, sizeof bad_flags, &p, &consumed),
                     MOAT_ERR_FLAGS);
    assert_int_equal(moat_mqtt_decode(V4, five, sizeof five, &p, &consumed),
                     MOAT_ERR_REMAINING_LENGTH);
}

static void decode_refuses_other_versions(void **state)
{
    (void)state;
    moat_mqtt_packet p;
    size_t consumed;
    assert_int_equal(moat_mqtt_decode(5, PUBACK_1234, 4, &p, &consumed), MOAT_ERR_ARG);
    assert_int_equal(moat_mqtt_decode(3, PUBACK_1234, 4, &p, &consumed), MOAT_ERR_ARG);
    assert_int_equal(moat_mqtt_decode_from_server(5, MOAT_MQTT_PUBACK, 0, PUBACK_1234 + 2,
                                                  2, &p),
                     MOAT_ERR_ARG);
    assert_int_equal(moat_mqtt_decode_from_client(5, MOAT_MQTT_PUBACK, 0, PUBACK_1234 + 2,
                                                  2, &p),
                     MOAT_ERR_ARG);
}

/* ------------------------------------------------- broken: direction -- */

static void client_only_packets_from_server(void **state)
{
    (void)state;
    moat_mqtt_packet p;
    assert_int_equal(dec_srv(CONNECT_MIN, sizeof CONNECT_MIN, &p), MOAT_ERR_PROTOCOL);
    assert_int_equal(dec_srv(SUBSCRIBE_3, sizeof SUBSCRIBE_3, &p), MOAT_ERR_PROTOCOL);
    assert_int_equal(dec_srv(UNSUBSCRIBE_2, sizeof UNSUBSCRIBE_2, &p), MOAT_ERR_PROTOCOL);
    assert_int_equal(dec_srv(PINGREQ, 2, &p), MOAT_ERR_PROTOCOL);
    assert_int_equal(dec_srv(DISCONNECT, 2, &p), MOAT_ERR_PROTOCOL);
}

static void server_only_packets_from_client(void **state)
{
    (void)state;
    moat_mqtt_packet p;
    assert_int_equal(dec_cli(CONNACK_OK, 4, &p), MOAT_ERR_PROTOCOL);
    assert_int_equal(dec_cli(SUBACK_4, sizeof SUBACK_4, &p), MOAT_ERR_PROTOCOL);
    assert_int_equal(dec_cli(UNSUBACK_FFFF, 4, &p), MOAT_ERR_PROTOCOL);
    assert_int_equal(dec_cli(PINGRESP, 2, &p), MOAT_ERR_PROTOCOL);
}

/* -------------------------------------------------- broken: flags -- */

static void reserved_flags_wrong(void **state)
{
    (void)state;
    /* 2.2.2: flags are fixed for every type but PUBLISH */
    for (uint8_t f = 0; f < 16; f++) {
        moat_mqtt_packet p;
        uint8_t b[4];
        if (f != 0) {
            b[0] = (uint8_t)(0x20 | f); b[1] = 2; b[2] = 0; b[3] = 0;
            assert_int_equal(dec_srv(b, 4, &p), MOAT_ERR_FLAGS);   /* CONNACK */
            b[0] = (uint8_t)(0x40 | f); b[1] = 2; b[2] = 0; b[3] = 1;
            assert_int_equal(dec_srv(b, 4, &p), MOAT_ERR_FLAGS);   /* PUBACK */
            assert_int_equal(dec_cli(b, 4, &p), MOAT_ERR_FLAGS);
            b[0] = (uint8_t)(0x50 | f);
            assert_int_equal(dec_srv(b, 4, &p), MOAT_ERR_FLAGS);   /* PUBREC */
            b[0] = (uint8_t)(0x70 | f);
            assert_int_equal(dec_srv(b, 4, &p), MOAT_ERR_FLAGS);   /* PUBCOMP */
            b[0] = (uint8_t)(0xB0 | f);
            assert_int_equal(dec_srv(b, 4, &p), MOAT_ERR_FLAGS);   /* UNSUBACK */
            b[0] = (uint8_t)(0x90 | f); b[1] = 3; b[2] = 0; b[3] = 1;
            {
                uint8_t s[5] = { b[0], 3, 0, 1, 0 };
                assert_int_equal(dec_srv(s, 5, &p), MOAT_ERR_FLAGS); /* SUBACK */
            }
            b[0] = (uint8_t)(0xD0 | f); b[1] = 0;
            assert_int_equal(dec_srv(b, 2, &p), MOAT_ERR_FLAGS);   /* PINGRESP */
            b[0] = (uint8_t)(0xC0 | f);
            assert_int_equal(dec_cli(b, 2, &p), MOAT_ERR_FLAGS);   /* PINGREQ */
            b[0] = (uint8_t)(0xE0 | f);
            assert_int_equal(dec_cli(b, 2, &p), MOAT_ERR_FLAGS);   /* DISCONNECT */
            uint8_t c[sizeof CONNECT_MIN];
            memcpy(c, CONNECT_MIN, sizeof c);
            c[0] = (uint8_t)(0x10 | f);
            assert_int_equal(dec_cli(c, sizeof c, &p), MOAT_ERR_FLAGS); /* CONNECT */
        }
        if (f != 2) {
            b[0] = (uint8_t)(0x60 | f); b[1] = 2; b[2] = 0; b[3] = 1;
            assert_int_equal(dec_srv(b, 4, &p), MOAT_ERR_FLAGS);   /* PUBREL */
            assert_int_equal(dec_cli(b, 4, &p), MOAT_ERR_FLAGS);
            uint8_t s[sizeof SUBSCRIBE_3];
            memcpy(s, SUBSCRIBE_3, sizeof s);
            s[0] = (uint8_t)(0x80 | f);
            assert_int_equal(dec_cli(s, sizeof s, &p), MOAT_ERR_FLAGS);
            uint8_t u[sizeof UNSUBSCRIBE_2];
            memcpy(u, UNSUBSCRIBE_2, sizeof u);
            u[0] = (uint8_t)(0xA0 | f);
            assert_int_equal(dec_cli(u, sizeof u, &p), MOAT_ERR_FLAGS);
        }
    }
}

static void publish_qos3_and_dup_rules(void **state)
{
    (void)state;
    /* [MQTT-3.3.1-4]: both QoS bits set */
    SRV_ERR(MOAT_ERR_QOS, 0x36, 0x05, 0x00, 0x01, 'x', 0x00, 0x01);
    SRV_ERR(MOAT_ERR_QOS, 0x3F, 0x05, 0x00, 0x01, 'x', 0x00, 0x01);
    CLI_ERR(MOAT_ERR_QOS, 0x36, 0x05, 0x00, 0x01, 'x', 0x00, 0x01);
    /* [MQTT-3.3.1-2]: DUP must be 0 with QoS 0 */
    SRV_ERR(MOAT_ERR_FLAGS, 0x38, 0x03, 0x00, 0x01, 'x');
    SRV_ERR(MOAT_ERR_FLAGS, 0x39, 0x03, 0x00, 0x01, 'x');
    CLI_ERR(MOAT_ERR_FLAGS, 0x38, 0x03, 0x00, 0x01, 'x');
}

static void connack_reserved_bits_and_codes(void **state)
{
    (void)state;
    /* 3.2.2.1: bits 7-1 of the acknowledge flags are reserved */
    SRV_ERR(MOAT_ERR_FLAGS, 0x20, 0x02, 0x02, 0x00);
    SRV_ERR(MOAT_ERR_FLAGS, 0x20, 0x02, 0x80, 0x00);
    SRV_ERR(MOAT_ERR_FLAGS, 0x20, 0x02, 0xFF, 0x00);
    /* [MQTT-3.2.2-4]: a refusal never has session present set */
    {
        static const uint8_t b[] = { 0x20, 0x02, 0x01, 0x05 };
        moat_mqtt_packet p;
        static const moat_err ok[] = { MOAT_ERR_MALFORMED, MOAT_ERR_PROTOCOL,
                                       MOAT_ERR_FLAGS };
        expect_one_of(dec_srv(b, sizeof b, &p), ok, LEN(ok));
    }
}

/* 3.2.2.3: return codes 6-255 are reserved. The header does not say whether
 * the codec or the client refuses them; the client test checks the client
 * gives MOAT_ERR_CONNACK_UNKNOWN. This test asks the codec to refuse them
 * too, as a broken packet. */
static void connack_unknown_return_code_refused_by_codec(void **state)
{
    (void)state;
    SRV_ERR(MOAT_ERR_CONNACK_UNKNOWN, 0x20, 0x02, 0x00, 0x06);
    SRV_ERR(MOAT_ERR_CONNACK_UNKNOWN, 0x20, 0x02, 0x00, 0xFF);
}

static void connect_flag_rules(void **state)
{
    (void)state;
    /* [MQTT-3.1.2-3]: reserved bit 0 of the connect flags */
    CLI_ERR(MOAT_ERR_FLAGS, 0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x03,
            0x00, 0x3C, 0x00, 0x04, 'd', 'e', 'v', '1');
    /* [MQTT-3.1.2-13]: no will, but will QoS 1 */
    CLI_ERR(MOAT_ERR_FLAGS, 0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x0A,
            0x00, 0x3C, 0x00, 0x04, 'd', 'e', 'v', '1');
    /* [MQTT-3.1.2-15]: no will, but will retain */
    CLI_ERR(MOAT_ERR_FLAGS, 0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x22,
            0x00, 0x3C, 0x00, 0x04, 'd', 'e', 'v', '1');
    /* [MQTT-3.1.2-14]: will QoS 3 */
    CLI_ERR(MOAT_ERR_QOS, 0x10, 0x12, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x1E,
            0x00, 0x3C, 0x00, 0x01, 'c', 0x00, 0x01, 'w', 0x00, 0x00);
    /* [MQTT-3.1.2-22]: password without user name */
    {
        static const uint8_t b[] = { 0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
                                     0x42, 0x00, 0x3C, 0x00, 0x01, 'c', 0x00, 0x01,
                                     'p' };
        moat_mqtt_packet p;
        static const moat_err ok[] = { MOAT_ERR_FLAGS, MOAT_ERR_MALFORMED,
                                       MOAT_ERR_PROTOCOL };
        expect_one_of(dec_cli(b, sizeof b, &p), ok, LEN(ok));
    }
    /* 3.1.2.1: protocol name is "MQTT" */
    {
        static const uint8_t b[] = { 0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'X', 0x04,
                                     0x02, 0x00, 0x3C, 0x00, 0x04, 'd', 'e', 'v', '1' };
        moat_mqtt_packet p;
        static const moat_err ok[] = { MOAT_ERR_MALFORMED, MOAT_ERR_PROTOCOL };
        expect_one_of(dec_cli(b, sizeof b, &p), ok, LEN(ok));
    }
}

static void subscribe_requested_qos(void **state)
{
    (void)state;
    /* 3.8.3.1: requested QoS 3 */
    CLI_ERR(MOAT_ERR_QOS, 0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x03);
    /* [MQTT-3-8.3-4]: reserved bits of the requested QoS byte */
    {
        static const uint8_t b[] = { 0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x04 };
        moat_mqtt_packet p;
        static const moat_err ok[] = { MOAT_ERR_FLAGS, MOAT_ERR_MALFORMED };
        expect_one_of(dec_cli(b, sizeof b, &p), ok, LEN(ok));
    }
}

static void suback_invalid_return_codes(void **state)
{
    (void)state;
    /* [MQTT-3.9.3-2]: only 0x00, 0x01, 0x02 and 0x80 */
    SRV_ERR(MOAT_ERR_MALFORMED, 0x90, 0x03, 0x00, 0x0A, 0x03);
    SRV_ERR(MOAT_ERR_MALFORMED, 0x90, 0x04, 0x00, 0x0A, 0x00, 0x81);
    SRV_ERR(MOAT_ERR_MALFORMED, 0x90, 0x04, 0x00, 0x0A, 0x40, 0x00);
    SRV_ERR(MOAT_ERR_MALFORMED, 0x90, 0x03, 0x00, 0x0A, 0xFF);
}

/* ---------------------------------------------- broken: identifiers -- */

static void zero_packet_ids(void **state)
{
    (void)state;
    SRV_ERR(MOAT_ERR_PACKET_ID, 0x32, 0x05, 0x00, 0x01, 'x', 0x00, 0x00);
    SRV_ERR(MOAT_ERR_PACKET_ID, 0x34, 0x05, 0x00, 0x01, 'x', 0x00, 0x00);
    SRV_ERR(MOAT_ERR_PACKET_ID, 0x40, 0x02, 0x00, 0x00);
    SRV_ERR(MOAT_ERR_PACKET_ID, 0x50, 0x02, 0x00, 0x00);
    SRV_ERR(MOAT_ERR_PACKET_ID, 0x62, 0x02, 0x00, 0x00);
    SRV_ERR(MOAT_ERR_PACKET_ID, 0x70, 0x02, 0x00, 0x00);
    SRV_ERR(MOAT_ERR_PACKET_ID, 0x90, 0x03, 0x00, 0x00, 0x00);
    SRV_ERR(MOAT_ERR_PACKET_ID, 0xB0, 0x02, 0x00, 0x00);
    CLI_ERR(MOAT_ERR_PACKET_ID, 0x82, 0x06, 0x00, 0x00, 0x00, 0x01, 'a', 0x00);
    CLI_ERR(MOAT_ERR_PACKET_ID, 0xA2, 0x05, 0x00, 0x00, 0x00, 0x01, 'a');
    CLI_ERR(MOAT_ERR_PACKET_ID, 0x32, 0x05, 0x00, 0x01, 'x', 0x00, 0x00);
}

/* ------------------------------------------------ broken: lengths -- */

static void remaining_length_too_long(void **state)
{
    (void)state;
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0x20, 0x03, 0x00, 0x00, 0x00);
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0x40, 0x03, 0x00, 0x01, 0x00);
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0x50, 0x03, 0x00, 0x01, 0x00);
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0x62, 0x04, 0x00, 0x01, 0x00, 0x00);
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0x70, 0x03, 0x00, 0x01, 0x00);
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0xB0, 0x03, 0x00, 0x01, 0x00);
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0xD0, 0x01, 0x00);
    CLI_ERR(MOAT_ERR_REMAINING_LENGTH, 0xC0, 0x01, 0x00);
    CLI_ERR(MOAT_ERR_REMAINING_LENGTH, 0xE0, 0x01, 0x00);
    /* CONNECT with one byte after the last field */
    CLI_ERR(MOAT_ERR_REMAINING_LENGTH, 0x10, 0x11, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
            0x02, 0x00, 0x3C, 0x00, 0x04, 'd', 'e', 'v', '1', 0x00);
    /* UNSUBSCRIBE with a stray byte after the last filter */
    CLI_ERR(MOAT_ERR_REMAINING_LENGTH, 0xA2, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00);
}

static void remaining_length_too_short(void **state)
{
    (void)state;
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0x20, 0x01, 0x00);
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0x20, 0x00);
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0x40, 0x01, 0x01);
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0x40, 0x00);
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0x62, 0x01, 0x01);
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0xB0, 0x00);
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0x90, 0x01, 0x00);
    /* PUBLISH: no room for the topic length, the topic, or the id */
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0x30, 0x00);
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0x30, 0x01, 0x00);
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0x30, 0x04, 0x00, 0x05, 'a', 'b');
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0x32, 0x03, 0x00, 0x01, 'x');
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0x32, 0x04, 0x00, 0x01, 'x', 0x00);
    SRV_ERR(MOAT_ERR_REMAINING_LENGTH, 0x34, 0x04, 0x00, 0x01, 'x', 0x00);
    /* CONNECT: empty, cut in the protocol name, and the password missing */
    CLI_ERR(MOAT_ERR_REMAINING_LENGTH, 0x10, 0x00);
    CLI_ERR(MOAT_ERR_REMAINING_LENGTH, 0x10, 0x04, 0x00, 0x04, 'M', 'Q');
    CLI_ERR(MOAT_ERR_REMAINING_LENGTH, 0x10, 0x1C, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
            0xEE, 0x01, 0x2C, 0x00, 0x01, 'c', 0x00, 0x03, 'w', '/', 't', 0x00, 0x03,
            'b', 'y', 'e', 0x00, 0x01, 'u', 0x00, 0x02);
    /* CONNECT: will flag set, will message absent */
    CLI_ERR(MOAT_ERR_REMAINING_LENGTH, 0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
            0x06, 0x00, 0x3C, 0x00, 0x01, 'c', 0x00, 0x01, 'w');
    /* SUBSCRIBE: QoS byte missing; filter cut */
    CLI_ERR(MOAT_ERR_REMAINING_LENGTH, 0x82, 0x05, 0x00, 0x01, 0x00, 0x01, 'a');
    CLI_ERR(MOAT_ERR_REMAINING_LENGTH, 0x82, 0x05, 0x00, 0x01, 0x00, 0x03, 'a');
    CLI_ERR(MOAT_ERR_REMAINING_LENGTH, 0x82, 0x01, 0x00);
    /* UNSUBSCRIBE: filter cut */
    CLI_ERR(MOAT_ERR_REMAINING_LENGTH, 0xA2, 0x05, 0x00, 0x01, 0x00, 0x05, 'a');
}

static void empty_lists(void **state)
{
    (void)state;
    /* [MQTT-3.8.3-3] [MQTT-3.10.3-2] [MQTT-3.9.3-1]: a list needs one entry */
    static const moat_err ok[] = { MOAT_ERR_REMAINING_LENGTH, MOAT_ERR_PROTOCOL,
                                   MOAT_ERR_MALFORMED };
    static const uint8_t sub[] = { 0x82, 0x02, 0x00, 0x01 };
    static const uint8_t unsub[] = { 0xA2, 0x02, 0x00, 0x01 };
    static const uint8_t suback[] = { 0x90, 0x02, 0x00, 0x01 };
    moat_mqtt_packet p;
    expect_one_of(dec_cli(sub, sizeof sub, &p), ok, LEN(ok));
    expect_one_of(dec_cli(unsub, sizeof unsub, &p), ok, LEN(ok));
    expect_one_of(dec_srv(suback, sizeof suback, &p), ok, LEN(ok));
}

/* ----------------------------------------- broken: strings and topics -- */

static void invalid_utf8_in_strings(void **state)
{
    (void)state;
    /* PUBLISH topic: overlong, surrogate, truncated, U+0000, stray */
    SRV_ERR(MOAT_ERR_UTF8, 0x30, 0x04, 0x00, 0x02, 0xC0, 0xAF);
    SRV_ERR(MOAT_ERR_UTF8, 0x30, 0x05, 0x00, 0x03, 0xE0, 0x80, 0xAF);
    SRV_ERR(MOAT_ERR_UTF8, 0x30, 0x05, 0x00, 0x03, 0xED, 0xA0, 0x80);
    SRV_ERR(MOAT_ERR_UTF8, 0x30, 0x05, 0x00, 0x03, 0xED, 0xBF, 0xBF);
    SRV_ERR(MOAT_ERR_UTF8, 0x30, 0x04, 0x00, 0x02, 'a', 0xE2);
    SRV_ERR(MOAT_ERR_UTF8, 0x30, 0x06, 0x00, 0x02, 'a', 0xE2, 0x82, 0xAC);
    SRV_ERR(MOAT_ERR_UTF8, 0x30, 0x04, 0x00, 0x02, 'a', 0x00);
    SRV_ERR(MOAT_ERR_UTF8, 0x30, 0x04, 0x00, 0x02, 0x80, 'a');
    SRV_ERR(MOAT_ERR_UTF8, 0x30, 0x06, 0x00, 0x04, 0xF4, 0x90, 0x80, 0x80);
    /* CONNECT: client id, will topic, user name */
    CLI_ERR(MOAT_ERR_UTF8, 0x10, 0x0F, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00,
            0x00, 0x00, 0x03, 0xED, 0xA0, 0x80);
    CLI_ERR(MOAT_ERR_UTF8, 0x10, 0x12, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x06, 0x00,
            0x00, 0x00, 0x01, 'c', 0x00, 0x01, 0x00, 0x00, 0x00);
    CLI_ERR(MOAT_ERR_UTF8, 0x10, 0x11, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x82, 0x00,
            0x00, 0x00, 0x01, 'c', 0x00, 0x02, 0xC1, 0xBF);
    /* SUBSCRIBE and UNSUBSCRIBE filters */
    CLI_ERR(MOAT_ERR_UTF8, 0x82, 0x07, 0x00, 0x01, 0x00, 0x02, 0xC0, 0x80, 0x00);
    CLI_ERR(MOAT_ERR_UTF8, 0xA2, 0x07, 0x00, 0x01, 0x00, 0x03, 'a', '/', 0xFF);
}

static void wildcards_in_publish_topic(void **state)
{
    (void)state;
    /* [MQTT-3.3.2-2] */
    SRV_ERR(MOAT_ERR_TOPIC, 0x30, 0x05, 0x00, 0x03, 'a', '/', '+');
    SRV_ERR(MOAT_ERR_TOPIC, 0x30, 0x05, 0x00, 0x03, 'a', '/', '#');
    SRV_ERR(MOAT_ERR_TOPIC, 0x30, 0x03, 0x00, 0x01, '#');
    SRV_ERR(MOAT_ERR_TOPIC, 0x32, 0x05, 0x00, 0x01, '+', 0x00, 0x01);
    CLI_ERR(MOAT_ERR_TOPIC, 0x30, 0x05, 0x00, 0x03, 'a', '/', '#');
    /* [MQTT-4.7.3-1]: at least one character */
    SRV_ERR(MOAT_ERR_TOPIC, 0x30, 0x02, 0x00, 0x00);
    SRV_ERR(MOAT_ERR_TOPIC, 0x30, 0x04, 0x00, 0x00, 'h', 'i');
    /* will topic */
    CLI_ERR(MOAT_ERR_TOPIC, 0x10, 0x14, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x06, 0x00,
            0x00, 0x00, 0x01, 'c', 0x00, 0x03, 'w', '/', '#', 0x00, 0x00);
}

static void bad_filters(void **state)
{
    (void)state;
    /* SUBSCRIBE with one bad filter each */
    CLI_ERR(MOAT_ERR_FILTER, 0x82, 0x0A, 0x00, 0x01, 0x00, 0x05, 'a', '/', '#', '/', 'b',
            0x00);
    CLI_ERR(MOAT_ERR_FILTER, 0x82, 0x07, 0x00, 0x01, 0x00, 0x02, 'a', '+', 0x00);
    CLI_ERR(MOAT_ERR_FILTER, 0x82, 0x07, 0x00, 0x01, 0x00, 0x02, '#', 'a', 0x00);
    CLI_ERR(MOAT_ERR_FILTER, 0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00);
    /* the bad one second */
    CLI_ERR(MOAT_ERR_FILTER, 0x82, 0x0B, 0x00, 0x01, 0x00, 0x01, 'a', 0x00, 0x00, 0x02,
            'b', '#', 0x01);
    /* UNSUBSCRIBE */
    CLI_ERR(MOAT_ERR_FILTER, 0xA2, 0x09, 0x00, 0x01, 0x00, 0x05, 'a', '/', '#', '/', 'b');
    CLI_ERR(MOAT_ERR_FILTER, 0xA2, 0x06, 0x00, 0x01, 0x00, 0x02, 'a', '+');
    CLI_ERR(MOAT_ERR_FILTER, 0xA2, 0x06, 0x00, 0x01, 0x00, 0x02, '#', 'a');
    CLI_ERR(MOAT_ERR_FILTER, 0xA2, 0x04, 0x00, 0x01, 0x00, 0x00);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(header_size_boundaries),
        cmocka_unit_test(header_decode_boundaries),
        cmocka_unit_test(header_decode_ignores_following_bytes),
        cmocka_unit_test(header_five_length_bytes_rejected),
        cmocka_unit_test(header_fifth_byte_known_early),
        cmocka_unit_test(header_reserved_types_rejected),
        cmocka_unit_test(encode_connect_all_flag_combinations),
        cmocka_unit_test(encode_connect_user_password_no_will),
        cmocka_unit_test(encode_connect_refuses_bad_input),
        cmocka_unit_test(encode_connack),
        cmocka_unit_test(encode_publish_qos_retain_dup),
        cmocka_unit_test(encode_publish_refuses_bad_input),
        cmocka_unit_test(encode_publish_too_long_remaining),
        cmocka_unit_test(encode_publish_length_boundaries),
        cmocka_unit_test(encode_acks),
        cmocka_unit_test(encode_acks_refuse_bad_input),
        cmocka_unit_test(encode_subscribe_several_filters),
        cmocka_unit_test(encode_subscribe_refuses_bad_input),
        cmocka_unit_test(encode_suback),
        cmocka_unit_test(encode_unsubscribe),
        cmocka_unit_test(encode_empty_packets),
        cmocka_unit_test(decode_connect),
        cmocka_unit_test(decode_connack),
        cmocka_unit_test(decode_publish),
        cmocka_unit_test(decode_acks),
        cmocka_unit_test(decode_subscribe),
        cmocka_unit_test(decode_suback),
        cmocka_unit_test(decode_unsubscribe),
        cmocka_unit_test(decode_empty_packets),
        cmocka_unit_test(decode_whole_any_type),
        cmocka_unit_test(decode_whole_reports_errors),
        cmocka_unit_test(decode_refuses_other_versions),
        cmocka_unit_test(client_only_packets_from_server),
        cmocka_unit_test(server_only_packets_from_client),
        cmocka_unit_test(reserved_flags_wrong),
        cmocka_unit_test(publish_qos3_and_dup_rules),
        cmocka_unit_test(connack_reserved_bits_and_codes),
        cmocka_unit_test(connack_unknown_return_code_refused_by_codec),
        cmocka_unit_test(connect_flag_rules),
        cmocka_unit_test(subscribe_requested_qos),
        cmocka_unit_test(suback_invalid_return_codes),
        cmocka_unit_test(zero_packet_ids),
        cmocka_unit_test(remaining_length_too_long),
        cmocka_unit_test(remaining_length_too_short),
        cmocka_unit_test(empty_lists),
        cmocka_unit_test(invalid_utf8_in_strings),
        cmocka_unit_test(wildcards_in_publish_topic),
        cmocka_unit_test(bad_filters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
