/*
 * test_will.c - the last will.
 *
 *  a: the socket is closed without DISCONNECT (a device losing power): the
 *     broker must publish the will, with the configured payload and QoS.
 *  b: a clean DISCONNECT: the broker must discard the will.
 *  c: a retained will (the design's `moat/<id>/state = offline`) reaches a
 *     subscriber that arrives after the device died.
 */
#include "broker.h"
#include "client.h"
#include "itest.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static itest_broker broker;
static char pid_str[32];

static void make_client(itest_client *c, const char *role, const char *will_topic,
                        const char *will_payload, uint8_t will_qos, bool will_retain)
{
    char id[96];
    itest_client_opts o;
    memset(&o, 0, sizeof(o));
    snprintf(id, sizeof(id), "itest-will-%s-%s", role, pid_str);
    o.client_id = id;
    o.clean_session = true;
    o.keep_messages = true;
    o.will_topic = will_topic;
    o.will_payload = will_payload;
    o.will_qos = will_qos;
    o.will_retain = will_retain;
    itest_client_init(c, &o, broker.port);
}

static const itest_msg *find_msg(const itest_client *c, const char *topic)
{
    for (size_t i = 0; i < c->n_msgs; i++)
        if (strcmp(c->msgs[i].topic, topic) == 0)
            return &c->msgs[i];
    return NULL;
}

typedef struct topic_wait {
    itest_client *c;
    const char *topic;
} topic_wait;

static bool cond_topic(void *arg)
{
    topic_wait *w = arg;
    return find_msg(w->c, w->topic) != NULL;
}

typedef struct log_wait {
    const char *needle;
} log_wait;

static bool cond_log(void *arg)
{
    log_wait *w = arg;
    return itest_broker_log_count(&broker, w->needle) > 0;
}

int main(void)
{
    itest_begin("integration_will", 50);
    snprintf(pid_str, sizeof(pid_str), "%ld", (long)getpid());
    itest_broker_start(&broker, NULL);

    char filter[128], ta[128], tb[128], tc[128], marker[128], line[200];
    snprintf(filter, sizeof(filter), "itest/%s/will/#", pid_str);
    snprintf(ta, sizeof(ta), "itest/%s/will/a", pid_str);
    snprintf(tb, sizeof(tb), "itest/%s/will/b", pid_str);
    snprintf(tc, sizeof(tc), "itest/%s/will/c", pid_str);
    snprintf(marker, sizeof(marker), "itest/%s/will/marker", pid_str);

    itest_client obs, a, b, c;
    make_client(&obs, "observer", NULL, NULL, 0, false);
    make_client(&a, "a", ta, "offline-a \xe2\x9c\x9d", 1, false);
    make_client(&b, "b", tb, "offline-b", 2, false);
    make_client(&c, "c", tc, "offline", 1, true);
    itest_client *all[] = { &obs, &a, &b, &c };
    itest_client_start(&obs);
    itest_wait_connected(all, 4, &obs, 5000);
    itest_subscribe(all, 4, &obs, filter, 2, 5000);

    /* a: abnormal disconnect. */
    itest_client_start(&a);
    itest_wait_connected(all, 4, &a, 5000);
    ITEST_CHECK(itest_broker_log_count(&broker, "Will message specified (13 bytes) (r0, q1).") == 1,
                "the broker did not log a 13-byte QoS 1 will for a");
    uint32_t t0 = moat_clock_ms();
    itest_client_kill(&a);
    topic_wait wa = { &obs, ta };
    ITEST_CHECK(itest_run_until(all, 4, 5000, cond_topic, &wa),
                "no will on %s within 5 s of closing the socket without DISCONNECT", ta);
    const itest_msg *m = find_msg(&obs, ta);
    ITEST_CHECK(m->len == 13 && memcmp(m->payload, "offline-a \xe2\x9c\x9d", 13) == 0,
                "the will payload is %s", itest_hex(m->payload, m->len));
    ITEST_CHECK(m->qos == 1 && !m->retain, "the will arrived at QoS %u retain %d, set QoS 1 retain 0",
                (unsigned)m->qos, (int)m->retain);
    snprintf(line, sizeof(line), "Client %s closed its connection.", a.id);
    ITEST_CHECK(itest_broker_log_count(&broker, line) == 1, "the broker log lacks \"%s\"", line);
    itest_log("will of a delivered %u ms after its socket was closed", moat_clock_ms() - t0);

    /* b: clean DISCONNECT. Once the broker logged b's departure, a marker
     * published afterwards arrives after the will would have. */
    itest_client_start(&b);
    itest_wait_connected(all, 4, &b, 5000);
    ITEST_CHECK(itest_broker_log_count(&broker, "Will message specified (9 bytes) (r0, q2).") == 1,
                "the broker did not log a 9-byte QoS 2 will for b");
    itest_disconnect(all, 4, &b, 5000);
    snprintf(line, sizeof(line), "Client %s disconnected.", b.id);
    log_wait lw = { line };
    ITEST_CHECK(itest_run_until(all, 4, 5000, cond_log, &lw),
                "the broker did not log \"%s\" within 5 s", line);
    snprintf(line, sizeof(line), "Client %s closed its connection.", b.id);
    ITEST_CHECK(itest_broker_log_count(&broker, line) == 0,
                "the broker saw b close without DISCONNECT");
    ITEST_CHECK(itest_publish(&obs, marker, "marker", 6, 1, false, NULL) == MOAT_OK,
                "marker publish refused");
    topic_wait wm = { &obs, marker };
    ITEST_CHECK(itest_run_until(all, 4, 5000, cond_topic, &wm), "the marker never arrived");
    ITEST_CHECK(find_msg(&obs, tb) == NULL, "the will of b was published after a clean DISCONNECT");
    itest_log("no will after a clean DISCONNECT");

    /* c: retained will, seen by a subscriber that comes later. */
    itest_client_start(&c);
    itest_wait_connected(all, 4, &c, 5000);
    itest_client_kill(&c);
    topic_wait wc = { &obs, tc };
    ITEST_CHECK(itest_run_until(all, 4, 5000, cond_topic, &wc), "no will on %s", tc);
    itest_client late;
    make_client(&late, "late", NULL, NULL, 0, false);
    itest_client *l1[] = { &late };
    itest_client_start(&late);
    itest_wait_connected(l1, 1, &late, 5000);
    itest_subscribe(l1, 1, &late, tc, 1, 5000);
    topic_wait wl = { &late, tc };
    ITEST_CHECK(itest_run_until(l1, 1, 5000, cond_topic, &wl),
                "a later subscriber did not get the retained will on %s", tc);
    m = find_msg(&late, tc);
    ITEST_CHECK(m->retain && m->len == 7 && memcmp(m->payload, "offline", 7) == 0,
                "the retained will: retain=%d payload %s", (int)m->retain,
                itest_hex(m->payload, m->len));
    itest_log("retained will delivered to a later subscriber");
    itest_disconnect(l1, 1, &late, 5000);
    itest_disconnect(all, 4, &obs, 5000);

    itest_client_free(&late);
    itest_client_free(&obs);
    itest_client_free(&a);
    itest_client_free(&b);
    itest_client_free(&c);
    itest_broker_destroy(&broker);
    return itest_pass();
}
