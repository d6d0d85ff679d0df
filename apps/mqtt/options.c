/*
 * options.c - moat-mqtt's flags, as users know them from mosquitto_pub and
 * mosquitto_sub, parsed into a cli_opts. Every usage error names the flag.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

typedef enum opt_id {
    O_HOST, O_PORT, O_TOPIC, O_MESSAGE, O_FILE, O_LINES, O_STDIN, O_NULL,
    O_QOS, O_RETAIN, O_ID, O_KEEPALIVE, O_PERSIST, O_USER, O_PASS,
    O_WILL_TOPIC, O_WILL_PAYLOAD, O_WILL_QOS, O_WILL_RETAIN, O_COUNT,
    O_VERBOSE, O_TIMEOUT, O_DEBUG, O_HELP, O_CAFILE, O_CERT, O_KEY, O_KEY_PASS,
    O_INSECURE
} opt_id;

#define FOR_PUB 1u
#define FOR_SUB 2u
#define FOR_ALL 3u

typedef struct flag {
    const char *short_name;  /* may be NULL */
    const char *long_name;
    opt_id id;
    bool has_arg;
    unsigned cmds;
} flag;

static const flag flags[] = {
    {"-h", "--host", O_HOST, true, FOR_ALL},
    {"-p", "--port", O_PORT, true, FOR_ALL},
    {"-t", "--topic", O_TOPIC, true, FOR_ALL},
    {"-m", "--message", O_MESSAGE, true, FOR_PUB},
    {"-f", "--file", O_FILE, true, FOR_PUB},
    {"-l", "--stdin-line", O_LINES, false, FOR_PUB},
    {"-s", "--stdin-file", O_STDIN, false, FOR_PUB},
    {"-n", "--null-message", O_NULL, false, FOR_PUB},
    {"-q", "--qos", O_QOS, true, FOR_ALL},
    {"-r", "--retain", O_RETAIN, false, FOR_PUB},
    {"-i", "--id", O_ID, true, FOR_ALL},
    {"-k", "--keepalive", O_KEEPALIVE, true, FOR_ALL},
    {"-c", "--disable-clean-session", O_PERSIST, false, FOR_ALL},
    {"-u", "--username", O_USER, true, FOR_ALL},
    {"-P", "--pw", O_PASS, true, FOR_ALL},
    {NULL, "--will-topic", O_WILL_TOPIC, true, FOR_ALL},
    {NULL, "--will-payload", O_WILL_PAYLOAD, true, FOR_ALL},
    {NULL, "--will-qos", O_WILL_QOS, true, FOR_ALL},
    {NULL, "--will-retain", O_WILL_RETAIN, false, FOR_ALL},
    {"-C", "--count", O_COUNT, true, FOR_SUB},
    {"-v", "--verbose", O_VERBOSE, false, FOR_SUB},
    {"-W", "--timeout", O_TIMEOUT, true, FOR_ALL},
    {"-d", "--debug", O_DEBUG, false, FOR_ALL},
    {NULL, "--help", O_HELP, false, FOR_ALL},
    {NULL, "--cafile", O_CAFILE, true, FOR_ALL},
    {NULL, "--cert", O_CERT, true, FOR_ALL},
    {NULL, "--key", O_KEY, true, FOR_ALL},
    {NULL, "--key-pass", O_KEY_PASS, true, FOR_ALL},
    /* Known from mosquitto_pub, and refused: see apply(). */
    {NULL, "--insecure", O_INSECURE, false, FOR_ALL},
};

static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("moat-mqtt: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'moat-mqtt --help'.\n", stderr);
    return CLI_EXIT_USAGE;
}

static const flag *find_flag(const char *arg)
{
    size_t i;

    for (i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        const flag *f = &flags[i];
        if ((f->short_name && strcmp(arg, f->short_name) == 0) ||
            strcmp(arg, f->long_name) == 0)
            return f;
    }
    return NULL;
}

/* A decimal number in [min, max]; leading '+', '-' or spaces are refused. */
static int parse_num(const char *name, const char *arg, unsigned long min,
                     unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(arg, &end, 10);
    if (arg[0] < '0' || arg[0] > '9' || *end != '\0' || errno != 0 ||
        v < min || v > max)
        return usage_error("%s: expected a number from %lu to %lu, got '%s'",
                           name, min, max, arg);
    *out = v;
    return CLI_EXIT_OK;
}

static int parse_qos(const char *name, const char *arg, uint8_t *out)
{
    unsigned long v;

    if (parse_num(name, arg, 0, 2, &v) != CLI_EXIT_OK)
        return CLI_EXIT_USAGE;
    *out = (uint8_t)v;
    return CLI_EXIT_OK;
}

static int set_source(cli_opts *o, cli_source src, const char *name)
{
    if (o->source != CLI_SRC_NONE)
        return usage_error("%s: only one of -m, -f, -l, -s and -n may be given",
                           name);
    o->source = src;
    return CLI_EXIT_OK;
}

static int add_topic(cli_opts *o, const char *name, const char *arg)
{
    if (o->cmd == CLI_CMD_PUB && o->topic_count == 1)
        return usage_error("%s: pub publishes to one topic; '%s' is a second one",
                           name, arg);
    if (o->topic_count == CLI_MAX_TOPICS)
        return usage_error("%s: at most %u topic filters", name, CLI_MAX_TOPICS);
    o->topics[o->topic_count++] = arg;
    return CLI_EXIT_OK;
}

/* The flags with a number or a string. */
static int apply_value(cli_opts *o, const flag *f, const char *name,
                       const char *arg)
{
    unsigned long v;

    switch (f->id) {
    case O_HOST: o->host = arg; return CLI_EXIT_OK;
    case O_PORT:
        if (parse_num(name, arg, 1, 65535, &v) != CLI_EXIT_OK)
            return CLI_EXIT_USAGE;
        o->port = (uint16_t)v;
        o->port_given = true;
        return CLI_EXIT_OK;
    case O_CAFILE: o->cafile = arg; return CLI_EXIT_OK;
    case O_CERT: o->certfile = arg; return CLI_EXIT_OK;
    case O_KEY: o->keyfile = arg; return CLI_EXIT_OK;
    case O_KEY_PASS: o->key_pass = arg; return CLI_EXIT_OK;
    case O_TOPIC: return add_topic(o, name, arg);
    case O_MESSAGE: o->message = arg; return set_source(o, CLI_SRC_ARG, name);
    case O_FILE: o->file = arg; return set_source(o, CLI_SRC_FILE, name);
    case O_QOS: return parse_qos(name, arg, &o->qos);
    case O_ID: o->client_id = arg; return CLI_EXIT_OK;
    case O_KEEPALIVE:
        if (parse_num(name, arg, 0, 65535, &v) != CLI_EXIT_OK)
            return CLI_EXIT_USAGE;
        o->keepalive_s = (uint16_t)v;
        return CLI_EXIT_OK;
    case O_USER: o->username = arg; return CLI_EXIT_OK;
    case O_PASS: o->password = arg; return CLI_EXIT_OK;
    case O_WILL_TOPIC: o->will_topic = arg; return CLI_EXIT_OK;
    case O_WILL_PAYLOAD: o->will_payload = arg; return CLI_EXIT_OK;
    case O_WILL_QOS: return parse_qos(name, arg, &o->will_qos);
    case O_COUNT: return parse_num(name, arg, 1, 1000000000ul, &o->count);
    case O_TIMEOUT: return parse_num(name, arg, 1, 2000000ul, &o->timeout_s);
    default: return usage_error("%s: internal error", name);
    }
}

static int apply(cli_opts *o, const flag *f, const char *name, const char *arg)
{
    switch (f->id) {
    case O_LINES: return set_source(o, CLI_SRC_LINES, name);
    case O_STDIN: return set_source(o, CLI_SRC_STDIN, name);
    case O_NULL: return set_source(o, CLI_SRC_NULL, name);
    case O_RETAIN: o->retain = true; return CLI_EXIT_OK;
    case O_PERSIST: o->clean_session = false; return CLI_EXIT_OK;
    case O_WILL_RETAIN: o->will_retain = true; return CLI_EXIT_OK;
    case O_VERBOSE: o->verbose = true; return CLI_EXIT_OK;
    case O_DEBUG: o->debug = true; return CLI_EXIT_OK;
    case O_HELP: return -1;
    case O_INSECURE:
        return usage_error("%s: moat-mqtt always verifies the broker's certificate "
                           "and host name; there is no way to turn that off", name);
    default: return apply_value(o, f, name, arg);
    }
}

static bool str_ok(const char *s)
{
    size_t n = strlen(s);
    return n <= 65535 && moat_mqtt_utf8_valid((const uint8_t *)s, n);
}

static int check_topics(const cli_opts *o)
{
    const char *what = o->cmd == CLI_CMD_PUB ? "topic" : "topic filter";
    size_t i;

    if (o->topic_count == 0)
        return usage_error("-t: %s needs a %s", o->cmd == CLI_CMD_PUB ? "pub" : "sub",
                           what);
    for (i = 0; i < o->topic_count; i++) {
        const uint8_t *t = (const uint8_t *)o->topics[i];
        size_t n = strlen(o->topics[i]);
        bool ok = n <= 65535 && (o->cmd == CLI_CMD_PUB ? moat_mqtt_topic_valid(t, n)
                                                        : moat_mqtt_filter_valid(t, n));
        if (!ok)
            return usage_error("-t: '%s' is not a valid %s%s", o->topics[i], what,
                               o->cmd == CLI_CMD_PUB ? " (no + or #, not empty)"
                                                     : "");
    }
    return CLI_EXIT_OK;
}

static int check_will(const cli_opts *o)
{
    if (o->will_topic == NULL) {
        const char *given = o->will_payload ? "--will-payload"
                          : o->will_qos     ? "--will-qos"
                          : o->will_retain  ? "--will-retain"
                                            : NULL;
        if (given != NULL)
            return usage_error("%s: needs --will-topic", given);
        return CLI_EXIT_OK;
    }
    if (!moat_mqtt_topic_valid((const uint8_t *)o->will_topic, strlen(o->will_topic)))
        return usage_error("--will-topic: '%s' is not a valid topic", o->will_topic);
    if (o->will_payload && strlen(o->will_payload) > 65535)
        return usage_error("--will-payload: longer than 65535 bytes");
    return CLI_EXIT_OK;
}

/* TLS is mutual or nothing: --cafile, --cert and --key come together. */
static int check_tls(cli_opts *o)
{
    const char *given = o->certfile ? "--cert"
                      : o->keyfile  ? "--key"
                      : o->key_pass ? "--key-pass"
                                    : NULL;

    if (o->cafile == NULL) {
        if (given != NULL)
            return usage_error("%s: needs --cafile (the CA that signed the broker's "
                               "certificate)", given);
        return CLI_EXIT_OK;
    }
    if (o->certfile == NULL || o->keyfile == NULL)
        return usage_error("--cafile: TLS is mutual; give the client certificate "
                           "(--cert) and its key (--key) too");
    if (!o->port_given)
        o->port = 8883;
    return CLI_EXIT_OK;
}

/* Rules that concern more than one flag. */
static int check(cli_opts *o)
{
    if (check_topics(o) != CLI_EXIT_OK || check_will(o) != CLI_EXIT_OK ||
        check_tls(o) != CLI_EXIT_OK)
        return CLI_EXIT_USAGE;
    if (o->cmd == CLI_CMD_PUB && o->source == CLI_SRC_NONE)
        return usage_error("pub needs a message: one of -m, -f, -l, -s or -n");
    if (!o->clean_session && o->client_id == NULL)
        return usage_error("-c: a persistent session needs a client id (-i)");
    if (o->client_id && !str_ok(o->client_id))
        return usage_error("-i: not valid UTF-8, or longer than 65535 bytes");
    if (o->username && !str_ok(o->username))
        return usage_error("-u: not valid UTF-8, or longer than 65535 bytes");
    if (o->password && o->username == NULL)
        return usage_error("-P: a password needs a user name (-u)");
    if (o->password && strlen(o->password) > 65535)
        return usage_error("-P: longer than 65535 bytes");
    return CLI_EXIT_OK;
}

static void defaults(cli_opts *o, cli_cmd cmd)
{
    memset(o, 0, sizeof *o);
    o->cmd = cmd;
    o->host = "localhost";
    o->port = 1883;
    o->keepalive_s = 60;
    o->clean_session = true;
}

int cli_parse(cli_opts *o, cli_cmd cmd, int argc, char **argv)
{
    unsigned want = cmd == CLI_CMD_PUB ? FOR_PUB : FOR_SUB;
    int i, rc;

    defaults(o, cmd);
    for (i = 1; i < argc; i++) {
        const char *name = argv[i];
        const flag *f = find_flag(name);
        const char *arg = NULL;

        if (f == NULL)
            return usage_error(name[0] == '-' ? "%s: unknown option"
                                              : "'%s': unexpected argument", name);
        if (!(f->cmds & want))
            return usage_error("%s: not an option of %s", name, argv[0]);
        if (f->has_arg) {
            if (i + 1 >= argc)
                return usage_error("%s: needs a value", name);
            arg = argv[++i];
        }
        rc = apply(o, f, name, arg);
        if (rc != CLI_EXIT_OK)
            return rc;
    }
    rc = check(o);
    if (rc == CLI_EXIT_OK && o->client_id == NULL) {
        snprintf(o->default_id, sizeof o->default_id, "moat-mqtt-%ld", (long)getpid());
        o->client_id = o->default_id;
    }
    return rc;
}
