/*
 * tput_mosq.c - the throughput publisher and subscriber on libmosquitto
 * (Debian's libmosquitto-dev 2.0.11). See tput.h for the command line.
 *
 * Two ways of driving it, as its documentation offers:
 *  - default: one thread, the application calls mosquitto_loop() itself
 *    (mosquitto_publish() writes at once when it can);
 *  - --threaded: mosquitto_loop_start() runs the network in a thread of its
 *    own while the main thread publishes.
 * The window is the library's own: mosquitto_max_inflight_messages_set()
 * for QoS 1 (messages beyond it wait in the library's queue); the
 * publisher also keeps no more than --window messages unacknowledged (QoS
 * 1) or unwritten (QoS 0, counted with on_publish) itself, so the queue
 * stays as bounded as moat's.
 */
#include "tput.h"

#include <pthread.h>
#include <unistd.h>

#include <mosquitto.h>

static tput_opts o;
static struct mosquitto *mq;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static volatile int connected, subscribed;
static long received;
static volatile long done_count;
static uint64_t first_ns, last_ns, start_ns;

static void on_connect(struct mosquitto *m, void *u, int rc)
{
    (void)m;
    (void)u;
    if (rc != 0)
        tput_die("CONNACK refused", mosquitto_connack_string(rc));
    pthread_mutex_lock(&mu);
    connected = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void on_subscribe(struct mosquitto *m, void *u, int mid, int n, const int *granted)
{
    (void)m;
    (void)u;
    (void)mid;
    if (n < 1 || granted[0] > 2)
        tput_die("SUBSCRIBE refused", NULL);
    pthread_mutex_lock(&mu);
    subscribed = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void on_message(struct mosquitto *m, void *u, const struct mosquitto_message *msg)
{
    (void)m;
    (void)u;
    tput_lat_note(&o, msg->payload, (size_t)msg->payloadlen);
    last_ns = tput_now_ns();
    if (received == 0)
        first_ns = last_ns;
    __atomic_store_n(&received, received + 1, __ATOMIC_RELEASE);
}

/* QoS 1: PUBACK arrived. QoS 0: the message was written to the socket. */
static void on_publish(struct mosquitto *m, void *u, int mid)
{
    (void)m;
    (void)u;
    (void)mid;
    if (o.threaded) {
        pthread_mutex_lock(&mu);
        done_count++;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
    } else {
        done_count++;
    }
}

static void check(int rc, const char *what)
{
    if (rc != MOSQ_ERR_SUCCESS)
        tput_die(what, mosquitto_strerror(rc));
}

/* Single-threaded: run the loop until *flag is set. */
static void loop_until(volatile int *flag)
{
    uint64_t deadline = tput_now_ns() + (uint64_t)TPUT_CONNECT_S * 1000000000u;
    while (!*flag) {
        check(mosquitto_loop(mq, 100, 1), "mosquitto_loop");
        if (tput_now_ns() > deadline)
            tput_die("timed out connecting or subscribing", NULL);
    }
}

static void wait_flag(volatile int *flag)
{
    pthread_mutex_lock(&mu);
    while (!*flag)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

/* Publish o.count messages; callgrind counts this function and its callees
 * (single-threaded mode: all of the library's work happens in here). */
__attribute__((noinline)) void bench_publish_loop(void);
__attribute__((noinline)) void bench_publish_loop(void)
{
    uint8_t payload[65536];
    long sent = 0;

    tput_payload(payload, o.size, 0);
    if (o.threaded) {
        while (sent < o.count) {
            pthread_mutex_lock(&mu);
            while (sent - done_count >= o.window)
                pthread_cond_wait(&cv, &mu);
            pthread_mutex_unlock(&mu);
            tput_sleep_until_due(&o, start_ns, sent);
            memcpy(payload, &sent, sizeof sent);
            if (o.rate > 0)
                tput_stamp(payload);
            check(mosquitto_publish(mq, NULL, o.topic, o.size, payload, o.qos, false),
                  "mosquitto_publish");
            sent++;
        }
        pthread_mutex_lock(&mu);
        while (done_count < o.count)
            pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
        return;
    }
    while (done_count < o.count) {
        if (sent < o.count && sent - done_count < o.window)
            tput_sleep_until_due(&o, start_ns, sent); /* --rate: paced */
        while (sent < o.count && sent - done_count < o.window &&
               tput_is_due(&o, start_ns, sent)) {
            memcpy(payload, &sent, sizeof sent);
            if (o.rate > 0)
                tput_stamp(payload);
            check(mosquitto_publish(mq, NULL, o.topic, o.size, payload, o.qos, false),
                  "mosquitto_publish");
            sent++;
        }
        /* Room in the window: only move what is ready; else wait for acks. */
        check(mosquitto_loop(mq, sent < o.count && sent - done_count < o.window ? 0 : 100, 1),
              "mosquitto_loop");
    }
}

int main(int argc, char **argv)
{
    char id[48];

    tput_parse(argc, argv, &o);
    tput_no_hold(&o);
    mosquitto_lib_init();
    snprintf(id, sizeof id, "tput-mosq-%s-%ld", o.pub ? "pub" : "sub", (long)getpid());
    mq = mosquitto_new(id, true, NULL);
    if (mq == NULL)
        tput_die("mosquitto_new", NULL);
    mosquitto_connect_callback_set(mq, on_connect);
    mosquitto_subscribe_callback_set(mq, on_subscribe);
    mosquitto_message_callback_set(mq, on_message);
    mosquitto_publish_callback_set(mq, on_publish);
    check(mosquitto_max_inflight_messages_set(mq, (unsigned)o.window), "max_inflight");
    if (o.ca != NULL) {
        check(mosquitto_tls_set(mq, o.ca, NULL, o.cert, o.key, NULL), "mosquitto_tls_set");
        check(mosquitto_tls_opts_set(mq, 1, "tlsv1.2", NULL), "mosquitto_tls_opts_set");
    }
    check(mosquitto_connect(mq, o.host, o.port, 60), "mosquitto_connect");
    if (o.threaded) {
        check(mosquitto_loop_start(mq), "mosquitto_loop_start");
        wait_flag(&connected);
    } else {
        loop_until(&connected);
    }

    if (o.pub) {
        start_ns = tput_now_ns();
        tput_pub_start(start_ns);
        bench_publish_loop();
        tput_pub_end(tput_now_ns());
    } else {
        check(mosquitto_subscribe(mq, NULL, o.topic, o.qos), "mosquitto_subscribe");
        if (o.threaded)
            wait_flag(&subscribed);
        else
            loop_until(&subscribed);
        tput_ready();
        uint64_t idle_from = tput_now_ns();
        long seen = 0, got;
        while ((got = __atomic_load_n(&received, __ATOMIC_ACQUIRE)) < o.count) {
            if (o.threaded) {
                struct timespec ts = { 0, 2000000 };
                nanosleep(&ts, NULL);
            } else {
                check(mosquitto_loop(mq, 100, 1), "mosquitto_loop");
            }
            if (got != seen) {
                seen = got;
                idle_from = tput_now_ns();
            } else if (tput_now_ns() - idle_from > (uint64_t)TPUT_IDLE_S * 1000000000u) {
                break;
            }
        }
        if (!o.threaded)
            mosquitto_loop(mq, 0, 1); /* the last acknowledgements */
        tput_sub_report(__atomic_load_n(&received, __ATOMIC_ACQUIRE), first_ns, last_ns);
        tput_lat_report(&o);
    }
    mosquitto_disconnect(mq);
    if (o.threaded)
        mosquitto_loop_stop(mq, false);
    else
        mosquitto_loop(mq, 10, 1);
    mosquitto_destroy(mq);
    mosquitto_lib_cleanup();
    tput_cpu();
    return 0;
}
