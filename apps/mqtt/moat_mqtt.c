/*
 * moat_mqtt.c - main() of moat-mqtt, the publish/subscribe tool on the moat
 * MQTT engine: picks the subcommand, prints the usage text, and keeps the
 * exit codes (0 success, 1 connection/protocol/runtime error, 2 usage).
 */
#include <stdarg.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
    "Usage: moat-mqtt pub -t topic (-m message | -f file | -l | -s | -n) [options]\n"
    "       moat-mqtt sub -t filter [-t filter ...] [options]\n"
    "       moat-mqtt --help\n"
    "\n"
    "Publish to or subscribe on an MQTT 3.1.1 broker.\n"
    "\n"
    "Connection (pub and sub):\n"
    "  -h, --host HOST         broker host name or address (default localhost)\n"
    "  -p, --port PORT         broker TCP port (default 1883; 8883 with --cafile)\n"
    "  -i, --id ID             client id (default moat-mqtt-<pid>)\n"
    "  -k, --keepalive SEC     keep-alive interval, 0 turns it off (default 60)\n"
    "  -c, --disable-clean-session\n"
    "                          persistent session: the broker keeps\n"
    "                          subscriptions and queued messages; needs -i\n"
    "  -u, --username NAME     user name\n"
    "  -P, --pw PASSWORD       password; needs -u\n"
    "  --will-topic TOPIC      last will: the broker publishes it when the\n"
    "                          link dies without DISCONNECT\n"
    "  --will-payload TEXT     last will: payload (default empty)\n"
    "  --will-qos QOS          last will: QoS 0, 1 or 2 (default 0)\n"
    "  --will-retain           last will: retained\n"
    "  -W, --timeout SEC       end after SEC seconds from start (see below)\n"
    "  -d, --debug             print state changes and events on stderr\n"
    "  --help                  print this text\n"
    "\n"
    "Mutual TLS (pub and sub; give all three of --cafile, --cert and --key):\n"
    "  --cafile FILE           CA certificate(s) the broker's certificate must\n"
    "                          chain to (PEM or DER); turns TLS on\n"
    "  --cert FILE             this client's certificate (its CN is the\n"
    "                          identity the broker sees)\n"
    "  --key FILE              this client's private key\n"
    "  --key-pass PASSWORD     password of an encrypted --key\n"
    "  The broker's certificate must name the -h host (subjectAltName) and be\n"
    "  valid by the system clock; this is always checked. TLS 1.2 or newer,\n"
    "  ECDHE with AEAD ciphers. Reconnects resume the TLS session.\n"
    "\n"
    "pub:\n"
    "  -t, --topic TOPIC       the topic to publish to (exactly one)\n"
    "  -m, --message TEXT      the message\n"
    "  -f, --file FILE         the whole file as one message\n"
    "  -l, --stdin-line        one message per line of stdin until its end;\n"
    "                          an empty line is an empty message\n"
    "  -s, --stdin-file        the whole of stdin as one message\n"
    "  -n, --null-message      an empty message\n"
    "  -q, --qos QOS           0, 1 or 2 (default 0)\n"
    "  -r, --retain            the broker keeps the message for new subscribers\n"
    "  pub waits until the broker has acknowledged every QoS 1 and 2 message,\n"
    "  then disconnects. With -W it fails if that takes longer.\n"
    "\n"
    "sub:\n"
    "  -t, --topic FILTER      a topic filter with + and # wildcards; repeat it\n"
    "                          for more\n"
    "  -q, --qos QOS           the highest QoS to receive (default 0)\n"
    "  -C, --count N           exit after N messages\n"
    "  -v, --verbose           print \"topic payload\" instead of the payload\n"
    "  sub prints one message per line and reconnects when the link is lost.\n"
    "  With -W it ends after that time; with -W and -C it fails if fewer than\n"
    "  N messages came.\n"
    "\n"
    "Exit status: 0 success; 1 connection, protocol or runtime error;\n"
    "2 usage error.\n";

void cli_usage(FILE *f)
{
    fputs(usage_text, f);
}

void cli_error(const char *fmt, ...)
{
    va_list ap;

    fputs("moat-mqtt: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cli_debug(const cli_opts *o, const char *fmt, ...)
{
    va_list ap;

    if (!o->debug)
        return;
    fprintf(stderr, "moat-mqtt: [%u] ", (unsigned)moat_clock_ms());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int bad_usage(const char *what)
{
    fprintf(stderr, "moat-mqtt: %s\nTry 'moat-mqtt --help'.\n", what);
    return CLI_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    static cli_opts opts;  /* the engine keeps pointers into it */
    cli_cmd cmd;
    int rc;

    if (argc < 2)
        return bad_usage("missing subcommand: pub or sub");
    if (strcmp(argv[1], "--help") == 0) {
        cli_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "pub") == 0)
        cmd = CLI_CMD_PUB;
    else if (strcmp(argv[1], "sub") == 0)
        cmd = CLI_CMD_SUB;
    else {
        fprintf(stderr, "moat-mqtt: '%s': unknown subcommand; use pub or sub\n"
                        "Try 'moat-mqtt --help'.\n", argv[1]);
        return CLI_EXIT_USAGE;
    }
    rc = cli_parse(&opts, cmd, argc - 1, argv + 1);
    if (rc < 0) {
        cli_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (rc != CLI_EXIT_OK)
        return rc;
    cli_signals_init();
    return cmd == CLI_CMD_PUB ? cli_pub(&opts) : cli_sub(&opts);
}
