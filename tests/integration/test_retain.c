/*
 * test_retain.c - retained messages published by moat reach a later
 * subscriber with the retain flag and exact payload; live deliveries carry
 * retain 0; an empty retained publish clears them.
 */
#include "broker.h"
#include "client.h"
#include "itest.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static itest_broker broker;
static char pid_str[32];

static void make_client(itest_client *c, const char *role)
{
    char id[96];
    itest_client_opts o;
    memset(&o, 0, sizeof(o));
    snprintf(id, sizeof(id), "itest-retain-%s-%s", role, pid_str);
    o.client_id = id;
    o.clean_session = true;
    o.keep_messages = true;
    itest_client_init(c, &o, broker.port);
}

typedef struct count_wait {
    itest_client *c;
    size_t msgs;
    unsigned published;
} count_wait;

static bool cond_counts(void *arg)
{
    count_wait *w = arg;
    return w->c->n_msgs >= w->msgs && w->c->n_published >= w->published;
}

static const itest_msg *find_msg(const itest_client *c, const char *topic)
{
    for (size_t i = 0; i < c->n_msgs; i++)
        if (strcmp(c->msgs[i].topic, topic) == 0)
            return &c->msgs[i];
    return NULL;
}

int main(void)
{
    itest_begin("integration_retain", 50);
    snprintf(pid_str, sizeof(pid_str), "%ld", (long)getpid());
    itest_broker_start(&broker, NULL);

    char topics[3][128], filter[128], marker[128];
    for (int q = 0; q < 3; q++)
        snprintf(topics[q], sizeof(topics[q]), "itest/%s/retain/q%d", pid_str, q);
    snprintf(filter, sizeof(filter), "itest/%s/retain/#", pid_str);
    snprintf(marker, sizeof(marker), "itest/%s/retain/marker", pid_str);
    const uint8_t payload[3][12] = { "state\0zero\xff", "online\x01one", "two\x00\x02\x03tw\xc3\xa9" };

    /* 1. Publish three retained messages, then leave. The QoS 0 one goes
     * first: the acknowledgements of the later ones prove it was processed. */
    itest_client pub;
    make_client(&pub, "pub");
    itest_client *p1[] = { &pub };
    itest_client_start(&pub);
    itest_wait_connected(p1, 1, &pub, 5000);
    for (int q = 0; q < 3; q++) {
        moat_err r = itest_publish(&pub, topics[q], payload[q], sizeof(payload[q]), (uint8_t)q, true,
                                   NULL);
        ITEST_CHECK(r == MOAT_OK, "retained publish at QoS %d: %s", q, moat_strerror(r));
    }
    count_wait wp = { &pub, 0, 2 };
    ITEST_CHECK(itest_run_until(p1, 1, 5000, cond_counts, &wp),
                "only %u of 2 retained QoS 1/2 publishes were acknowledged in 5 s",
                pub.n_published);
    itest_disconnect(p1, 1, &pub, 5000);

    /* 2. A later subscriber gets all three, flagged retained. */
    itest_client sub;
    make_client(&sub, "sub");
    itest_client *s1[] = { &sub };
    itest_client_start(&sub);
    itest_wait_connected(s1, 1, &sub, 5000);
    itest_subscribe(s1, 1, &sub, filter, 2, 5000);
    count_wait ws = { &sub, 3, 0 };
    ITEST_CHECK(itest_run_until(s1, 1, 5000, cond_counts, &ws),
                "a new subscriber received %zu of 3 retained messages", sub.n_msgs);
    for (int q = 0; q < 3; q++) {
        const itest_msg *m = find_msg(&sub, topics[q]);
        ITEST_CHECK(m != NULL, "the retained message on %s was not delivered", topics[q]);
        ITEST_CHECK(m->retain, "the retained message on %s arrived with retain 0", topics[q]);
        ITEST_CHECK(m->qos == q, "the retained message on %s arrived at QoS %u, stored at QoS %d",
                    topics[q], (unsigned)m->qos, q);
        ITEST_CHECK(m->len == sizeof(payload[q]) && memcmp(m->payload, payload[q], m->len) == 0,
                    "the retained message on %s: got %s", topics[q], itest_hex(m->payload, m->len));
    }
    itest_log("a later subscriber got 3 retained messages (QoS 0/1/2) intact with retain=1");

    /* 3. A live publish to an existing subscriber carries retain 0, even when
     * published retained; and an empty retained publish clears the topic. */
    itest_client_start(&pub);
    itest_client *both[] = { &pub, &sub };
    itest_wait_connected(both, 2, &pub, 5000);
    unsigned acked = pub.n_published;
    ITEST_CHECK(itest_publish(&pub, topics[1], "live", 4, 1, true, NULL) == MOAT_OK,
                "live retained publish refused");
    for (int q = 0; q < 3; q++)
        ITEST_CHECK(itest_publish(&pub, topics[q], "", 0, 1, true, NULL) == MOAT_OK,
                    "empty retained publish refused");
    count_wait wl = { &sub, 7, 0 };
    ITEST_CHECK(itest_run_until(both, 2, 5000, cond_counts, &wl),
                "the subscriber got %zu of 4 live messages", sub.n_msgs - 3);
    count_wait wa = { &pub, 0, acked + 4 };
    ITEST_CHECK(itest_run_until(both, 2, 5000, cond_counts, &wa), "publishes not acknowledged");
    const itest_msg *live = &sub.msgs[3];
    ITEST_CHECK(strcmp(live->topic, topics[1]) == 0 && live->len == 4 &&
                    memcmp(live->payload, "live", 4) == 0,
                "the live message arrived as %s: %s", live->topic,
                itest_hex(live->payload, live->len));
    ITEST_CHECK(!live->retain,
                "a message delivered to an existing subscription has retain=1 (MQTT-3.3.1-9)");
    itest_disconnect(both, 2, &sub, 5000);

    /* 4. A new subscriber gets no retained message: the marker, published
     * after its SUBACK, must be the first thing it receives. */
    itest_client sub2;
    make_client(&sub2, "sub2");
    itest_client *two[] = { &pub, &sub2 };
    itest_client_start(&sub2);
    itest_wait_connected(two, 2, &sub2, 5000);
    itest_subscribe(two, 2, &sub2, filter, 1, 5000);
    ITEST_CHECK(itest_publish(&pub, marker, "m", 1, 1, false, NULL) == MOAT_OK, "marker refused");
    count_wait wm = { &sub2, 1, 0 };
    ITEST_CHECK(itest_run_until(two, 2, 5000, cond_counts, &wm), "marker not delivered");
    ITEST_CHECK(strcmp(sub2.msgs[0].topic, marker) == 0,
                "a cleared retained message was still delivered: %s (%zu bytes, retain=%d)",
                sub2.msgs[0].topic, sub2.msgs[0].len, (int)sub2.msgs[0].retain);
    itest_log("empty retained publishes cleared the topics");

    itest_disconnect(two, 2, &sub2, 5000);
    itest_disconnect(two, 2, &pub, 5000);
    itest_client_free(&sub2);
    itest_client_free(&sub);
    itest_client_free(&pub);
    itest_broker_destroy(&broker);
    return itest_pass();
}
