/*
 * cli.h - the pieces of moat-mqtt shared by its files.
 *
 *   moat_mqtt.c  main(): subcommand, usage text, exit codes
 *   options.c    flags -> cli_opts, with usage errors that name the flag
 *   link.c       the transport to the broker (chosen in one place)
 *   session.c    the engine, its buffers, connecting, the poll() loop step
 *   pub.c sub.c  the two subcommands
 */
#ifndef MOAT_CLI_H
#define MOAT_CLI_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "moat/mqtt.h"
#include "moat/posix.h"
#include "moat/tls.h"
#include "moat/tls_link.h"

/* Buffers of the engine, sized for a command-line tool. The window also
 * holds the broker's QoS 2 messages until their PUBREL; MQTT 3.1.1 sets no
 * limit on those, and Mosquitto 2.0 was seen with more than 64 outstanding
 * (the engine drops the link when the window is full), so it is wide. */
#define CLI_TX_SIZE (64u * 1024u)
#define CLI_RX_SIZE (64u * 1024u)
#define CLI_STORE_SIZE (256u * 1024u)
#define CLI_INFLIGHT 1024u
#define CLI_MAX_TOPICS 64u

/* Exit codes. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_ERROR 1
#define CLI_EXIT_USAGE 2

typedef enum cli_cmd { CLI_CMD_PUB = 1, CLI_CMD_SUB = 2 } cli_cmd;

/* Where pub takes its message(s) from. */
typedef enum cli_source {
    CLI_SRC_NONE = 0,
    CLI_SRC_ARG,   /* -m */
    CLI_SRC_FILE,  /* -f */
    CLI_SRC_LINES, /* -l */
    CLI_SRC_STDIN, /* -s */
    CLI_SRC_NULL   /* -n */
} cli_source;

typedef struct cli_opts {
    cli_cmd cmd;
    const char *host;
    uint16_t port;
    bool port_given;         /* -p; else 1883, or 8883 with --cafile */
    const char *cafile;      /* --cafile: mutual TLS, the CA of the broker */
    const char *certfile;    /* --cert */
    const char *keyfile;     /* --key */
    const char *key_pass;    /* --key-pass */
    const char *topics[CLI_MAX_TOPICS];
    size_t topic_count;
    cli_source source;
    const char *message; /* -m */
    const char *file;    /* -f */
    uint8_t qos;
    bool retain;
    const char *client_id;
    char default_id[32]; /* moat-mqtt-<pid> */
    uint16_t keepalive_s;
    bool clean_session;
    const char *username;
    const char *password;
    const char *will_topic;
    const char *will_payload;
    uint8_t will_qos;
    bool will_retain;
    unsigned long count;     /* -C; 0: no limit */
    unsigned long timeout_s; /* -W; 0: none */
    bool verbose;
    bool debug;
} cli_opts;

/* options.c: returns CLI_EXIT_OK to run, CLI_EXIT_USAGE after printing the
 * error, or -1 after printing the help text (exit 0). argv[0] is the
 * subcommand. */
int cli_parse(cli_opts *o, cli_cmd cmd, int argc, char **argv);
void cli_usage(FILE *f);

/* Messages on stderr, prefixed with the program name. */
void cli_error(const char *fmt, ...);
void cli_debug(const cli_opts *o, const char *fmt, ...);

/* ------------------------------------------------------------ link.c -- */

/* The byte stream to the broker: plain TCP, or mutual TLS (src/tls) over
 * that socket when --cafile is given. Chosen in cli_link_open() and nowhere
 * else; the engine sees only l->t. */
typedef struct cli_link {
    const cli_opts *o;
    moat_link net;            /* TCP, then TLS with --cafile (moat/tls_link.h) */
    bool tls_on;              /* --cafile */
    moat_tls_config tls_cfg;
    moat_tls tls;             /* kept across reconnects: resumption */
} cli_link;

/* Load the TLS credentials once (when --cafile is given). Errors are
 * printed, naming the file, the host and the port. */
moat_err cli_link_init(cli_link *l, const cli_opts *o);
/* Start opening: MOAT_OK (open), MOAT_ERR_WOULD_BLOCK (call cli_link_poll
 * when the link's descriptor is ready), or an error (moat_link_error). The
 * rest is moat_link's: moat_link_fd, _want_write, _pending, _close. */
moat_err cli_link_open(cli_link *l);
moat_err cli_link_poll(cli_link *l);
/* Close the link and release the TLS state. */
void cli_link_free(cli_link *l);

/* --------------------------------------------------------- session.c -- */

typedef struct cli_session cli_session;
typedef void (*cli_event_fn)(cli_session *s, const moat_mqtt_event *ev);

typedef enum cli_link_state {
    CLI_LINK_CLOSED = 0,
    CLI_LINK_OPENING,
    CLI_LINK_UP
} cli_link_state;

struct cli_session {
    const cli_opts *o;
    moat_mqtt_config cfg;
    moat_mqtt_client c;
    cli_link link;
    cli_link_state link_state;
    uint32_t opened_ms;     /* when the current link was started */
    bool connected_once;    /* a CONNACK was ever accepted */
    bool reconnect;         /* after that, ride out a lost link */
    bool closing;           /* DISCONNECT asked for */
    uint32_t close_by_ms;   /* give up draining DISCONNECT then */
    bool done;              /* disconnected as asked; the client is IDLE */
    uint8_t shown_state;    /* for -d */
    cli_event_fn on_event;
    void *app;
    moat_batch batch;       /* cli_session_wait's batched poll() */
};

/* Set up the engine and ask for a connection; errors are printed. */
moat_err cli_session_init(cli_session *s, const cli_opts *o, cli_event_fn fn,
                          void *app, uint32_t now_ms);
/* Connect when due, move bytes, run timers. A non-OK result ends the run
 * with exit 1; its message has been printed. */
moat_err cli_session_service(cli_session *s, uint32_t now_ms);
/* Ask for DISCONNECT; s->done is set once it is sent (or could not be). */
void cli_session_disconnect(cli_session *s, uint32_t now_ms);
bool cli_session_connected(const cli_session *s);
bool cli_session_output_pending(const cli_session *s);
/* Sleep in poll() until the link, one of the extra descriptors (their
 * revents are set) or a signal needs attention, or until wait_ms passes
 * (UINT32_MAX: no limit of the caller's). The engine's next timeout is
 * always respected. While messages stream, each wait first lets more
 * gather for MOAT_BATCH_HOLD_US (moat_poll_batched, moat/posix.h). */
void cli_session_wait(cli_session *s, struct pollfd *extra, size_t n_extra,
                      uint32_t wait_ms);
void cli_session_close(cli_session *s);
/* Close and release the link's TLS state; at the end of the run. */
void cli_session_free(cli_session *s);

/* SIGINT/SIGTERM: install once; how many have arrived so far. */
void cli_signals_init(void);
int cli_interrupted(void);

/* ------------------------------------------------------------ pub/sub -- */

int cli_pub(const cli_opts *o);
int cli_sub(const cli_opts *o);

#endif
