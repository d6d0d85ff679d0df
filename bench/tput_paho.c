/*
 * tput_paho.c - the throughput publisher and subscriber on Eclipse Paho C
 * (Debian's libpaho-mqtt-dev, the asynchronous API MQTTAsync: libpaho-mqtt3a,
 * or libpaho-mqtt3as for TLS). See tput.h for the command line.
 *
 * MQTTAsync runs the network in threads of its own. The window is its
 * maxInflight connect option; the publisher keeps at most --window messages
 * whose onSuccess has not come (PUBACK for QoS 1, written for QoS 0), and
 * retries a send that MQTTAsync refuses as MQTTASYNC_MAX_MESSAGES_INFLIGHT.
 */
#include "tput.h"

#include <pthread.h>
#include <unistd.h>

#include <MQTTAsync.h>

static tput_opts o;
static MQTTAsync cli;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int connected, subscribed, failed;
static long received, done_count;
static uint64_t first_ns, last_ns, start_ns;

static void signal_flag(int *flag)
{
    pthread_mutex_lock(&mu);
    *flag = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void wait_flag(int *flag)
{
    pthread_mutex_lock(&mu);
    while (!*flag && !failed)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    if (failed)
        tput_die("connect or subscribe failed", NULL);
}

static void on_connect(void *ctx, MQTTAsync_successData *r)
{
    (void)ctx;
    (void)r;
    signal_flag(&connected);
}

static void on_failure(void *ctx, MQTTAsync_failureData *r)
{
    (void)ctx;
    fprintf(stderr, "tput: paho failure %d %s\n", r ? r->code : 0,
            r && r->message ? r->message : "");
    signal_flag(&failed);
}

static void on_subscribe(void *ctx, MQTTAsync_successData *r)
{
    (void)ctx;
    (void)r;
    signal_flag(&subscribed);
}

static void on_sent(void *ctx, MQTTAsync_successData *r)
{
    (void)ctx;
    (void)r;
    pthread_mutex_lock(&mu);
    done_count++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *m)
{
    (void)ctx;
    (void)topic_len;
    last_ns = tput_now_ns();
    if (received == 0)
        first_ns = last_ns;
    tput_lat_note(&o, m->payload, (size_t)m->payloadlen);
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    __atomic_store_n(&received, received + 1, __ATOMIC_RELEASE);
    return 1;
}

static void on_lost(void *ctx, char *cause)
{
    (void)ctx;
    tput_die("connection lost", cause);
}

__attribute__((noinline)) void bench_publish_loop(void);
__attribute__((noinline)) void bench_publish_loop(void)
{
    uint8_t payload[65536];
    long sent = 0;

    tput_payload(payload, o.size, 0);
    while (sent < o.count) {
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        MQTTAsync_message msg = MQTTAsync_message_initializer;
        int rc;
        pthread_mutex_lock(&mu);
        while (sent - done_count >= o.window)
            pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
        tput_sleep_until_due(&o, start_ns, sent);
        memcpy(payload, &sent, sizeof sent);
        if (o.rate > 0)
            tput_stamp(payload);
        msg.payload = payload;
        msg.payloadlen = o.size;
        msg.qos = o.qos;
        ro.onSuccess = on_sent;
        ro.onFailure = on_failure;
        rc = MQTTAsync_sendMessage(cli, o.topic, &msg, &ro);
        if (rc == MQTTASYNC_MAX_MESSAGES_INFLIGHT) {
            /* its window is full: wait for one completion, then retry */
            pthread_mutex_lock(&mu);
            long d = done_count;
            while (done_count == d)
                pthread_cond_wait(&cv, &mu);
            pthread_mutex_unlock(&mu);
            continue;
        }
        if (rc != MQTTASYNC_SUCCESS)
            tput_die("MQTTAsync_sendMessage", MQTTAsync_strerror(rc));
        sent++;
    }
    pthread_mutex_lock(&mu);
    while (done_count < o.count)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

int main(int argc, char **argv)
{
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    char uri[128], id[48];
    int rc;

    tput_parse(argc, argv, &o);
    tput_no_hold(&o);
    /* The broker certificate names localhost and 127.0.0.1; Paho checks a
     * DNS name, so TLS connects as localhost (Paho prefers its IPv4 address). */
    snprintf(uri, sizeof uri, "%s://%s:%d", o.ca ? "ssl" : "tcp",
             o.ca && strcmp(o.host, "127.0.0.1") == 0 ? "localhost" : o.host, o.port);
    snprintf(id, sizeof id, "tput-paho-%s-%ld", o.pub ? "pub" : "sub", (long)getpid());
    if ((rc = MQTTAsync_create(&cli, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL)) !=
        MQTTASYNC_SUCCESS)
        tput_die("MQTTAsync_create", MQTTAsync_strerror(rc));
    MQTTAsync_setCallbacks(cli, NULL, on_lost, on_message, NULL);
    co.keepAliveInterval = 60;
    co.cleansession = 1;
    co.maxInflight = o.window;
    co.onSuccess = on_connect;
    co.onFailure = on_failure;
    if (o.ca != NULL) {
        ssl.trustStore = o.ca;
        ssl.keyStore = o.cert;
        ssl.privateKey = o.key;
        ssl.enableServerCertAuth = 1;
        ssl.verify = 1;
        ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
        co.ssl = &ssl;
    }
    if ((rc = MQTTAsync_connect(cli, &co)) != MQTTASYNC_SUCCESS)
        tput_die("MQTTAsync_connect", MQTTAsync_strerror(rc));
    wait_flag(&connected);

    if (o.pub) {
        start_ns = tput_now_ns();
        tput_pub_start(start_ns);
        bench_publish_loop();
        tput_pub_end(tput_now_ns());
    } else {
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        ro.onSuccess = on_subscribe;
        ro.onFailure = on_failure;
        if ((rc = MQTTAsync_subscribe(cli, o.topic, o.qos, &ro)) != MQTTASYNC_SUCCESS)
            tput_die("MQTTAsync_subscribe", MQTTAsync_strerror(rc));
        wait_flag(&subscribed);
        tput_ready();
        uint64_t idle_from = tput_now_ns();
        long seen = 0, got;
        while ((got = __atomic_load_n(&received, __ATOMIC_ACQUIRE)) < o.count) {
            struct timespec ts = { 0, 2000000 };
            nanosleep(&ts, NULL);
            if (got != seen) {
                seen = got;
                idle_from = tput_now_ns();
            } else if (tput_now_ns() - idle_from > (uint64_t)TPUT_IDLE_S * 1000000000u) {
                break;
            }
        }
        tput_sub_report(__atomic_load_n(&received, __ATOMIC_ACQUIRE), first_ns, last_ns);
        tput_lat_report(&o);
    }
    MQTTAsync_disconnectOptions dopt = MQTTAsync_disconnectOptions_initializer;
    dopt.timeout = 1000;
    MQTTAsync_disconnect(cli, &dopt);
    usleep(100000);
    MQTTAsync_destroy(&cli);
    tput_cpu();
    return 0;
}
