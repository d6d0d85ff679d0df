/*
 * test_interop.c - cross-check the engine against independent clients:
 * mosquitto_sub receives what moat publishes, and moat receives what
 * mosquitto_pub publishes, at QoS 0, 1 and 2, payloads byte for byte.
 */
#include "broker.h"
#include "client.h"
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_OUT 9

static itest_broker broker;
static char pid_str[32];

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

static char *hex(const uint8_t *p, size_t n)
{
    char *s = malloc(2 * n + 1);
    ITEST_CHECK(s != NULL, "out of memory");
    for (size_t i = 0; i < n; i++)
        snprintf(s + 2 * i, 3, "%02x", p[i]);
    s[2 * n] = '\0';
    return s;
}

typedef struct child_wait {
    pid_t pid;
    int status;
    bool done;
} child_wait;

static bool cond_child_exited(void *arg)
{
    child_wait *w = arg;
    if (!w->done)
        w->done = itest_child_exited(w->pid, &w->status);
    return w->done;
}

/* Part A: moat publishes, mosquitto_sub prints topic|qos|retain|len|hex. */
static void moat_to_mosquitto_sub(void)
{
    char sub_id[64], filter[128], out_path[400], port[8], count[8], line[200];
    snprintf(sub_id, sizeof(sub_id), "itest-msub-%s", pid_str);
    snprintf(filter, sizeof(filter), "itest/%s/interop/a/#", pid_str);
    snprintf(out_path, sizeof(out_path), "%s/mosquitto_sub.out", broker.dir);
    snprintf(port, sizeof(port), "%u", (unsigned)broker.port);
    snprintf(count, sizeof(count), "%d", N_OUT);
    const char *argv[] = { "mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-i", sub_id,
                           "-t", filter, "-q", "2", "-C", count, "-W", "30",
                           "-F", "%t|%q|%r|%l|%x", NULL };
    child_wait w = { itest_spawn(argv, out_path, NULL), 0, false };

    itest_client pub;
    itest_client_opts o;
    memset(&o, 0, sizeof(o));
    char pub_id[64];
    snprintf(pub_id, sizeof(pub_id), "itest-interop-pub-%s", pid_str);
    o.client_id = pub_id;
    o.clean_session = true;
    itest_client_init(&pub, &o, broker.port);
    itest_client *all[] = { &pub };
    itest_client_start(&pub);
    itest_wait_connected(all, 1, &pub, 5000);

    /* mosquitto logs "<id> <qos> <filter>" once the subscription exists. */
    snprintf(line, sizeof(line), "%s 2 %s", sub_id, filter);
    if (!itest_broker_log_wait(&broker, line, 1, 10000)) {
        itest_print_file_tail("mosquitto_sub output", out_path, 4000);
        ITEST_FAIL("mosquitto_sub did not subscribe within 10 s (no \"%s\" in the log)", line);
    }

    static uint8_t data[N_OUT][2000];
    size_t lens[N_OUT];
    char topics[N_OUT][128];
    for (int i = 0; i < N_OUT; i++) {
        uint8_t qos = (uint8_t)(i % 3);
        lens[i] = (size_t)(i * 233) % 2000;
        fill(data[i], lens[i], (uint32_t)i + 7u);
        snprintf(topics[i], sizeof(topics[i]), "itest/%s/interop/a/%d", pid_str, i);
        moat_err r = itest_publish(&pub, topics[i], data[i], lens[i], qos, false, NULL);
        ITEST_CHECK(r == MOAT_OK, "publish %d at QoS %u: %s", i, (unsigned)qos, moat_strerror(r));
        itest_run_once(all, 1);
    }
    if (!itest_run_until(all, 1, 15000, cond_child_exited, &w)) {
        itest_print_file_tail("mosquitto_sub output", out_path, 4000);
        ITEST_FAIL("mosquitto_sub did not receive %d messages within 15 s", N_OUT);
    }
    char why[96];
    if (!WIFEXITED(w.status) || WEXITSTATUS(w.status) != 0) {
        itest_print_file_tail("mosquitto_sub output", out_path, 4000);
        ITEST_FAIL("mosquitto_sub %s", itest_describe_status(w.status, why, sizeof(why)));
    }

    /* Compare as a set: the broker may interleave QoS levels. */
    char *text = itest_read_file(out_path, NULL);
    ITEST_CHECK(text != NULL, "cannot read %s", out_path);
    bool seen[N_OUT] = { false };
    int lines = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l != NULL;
         l = strtok_r(NULL, "\n", &save)) {
        char t[160], hx[4096 + 8];
        unsigned q, rt;
        size_t len;
        hx[0] = '\0';
        int f = sscanf(l, "%159[^|]|%u|%u|%zu|%4100s", t, &q, &rt, &len, hx);
        ITEST_CHECK(f >= 4, "mosquitto_sub printed an unexpected line: %s", l);
        lines++;
        int idx = -1;
        for (int i = 0; i < N_OUT; i++)
            if (strcmp(topics[i], t) == 0)
                idx = i;
        ITEST_CHECK(idx >= 0, "mosquitto_sub received an unexpected topic: %s", t);
        ITEST_CHECK(!seen[idx], "mosquitto_sub received %s twice", t);
        seen[idx] = true;
        char *want = hex(data[idx], lens[idx]);
        ITEST_CHECK(len == lens[idx] && strcmp(want, hx) == 0,
                    "mosquitto_sub got %zu bytes on %s, moat sent %zu; payload differs:\n"
                    "  got  %.80s\n  sent %.80s",
                    len, t, lens[idx], hx, want);
        free(want);
        ITEST_CHECK(q == (unsigned)(idx % 3) && rt == 0,
                    "mosquitto_sub got %s at QoS %u retain %u; moat sent QoS %d retain 0", t, q, rt,
                    idx % 3);
    }
    free(text);
    ITEST_CHECK(lines == N_OUT, "mosquitto_sub printed %d messages, expected %d", lines, N_OUT);
    itest_log("mosquitto_sub received %d moat publishes (QoS 0/1/2, 0..1864 bytes) intact", N_OUT);
    itest_disconnect(all, 1, &pub, 5000);
    itest_client_free(&pub);
}

/* Part B: mosquitto_pub publishes (-f file for binary, -m for text), moat
 * receives. */
static void mosquitto_pub_to_moat(void)
{
    itest_client sub;
    itest_client_opts o;
    memset(&o, 0, sizeof(o));
    char sub_id[64], filter[128], port[8];
    snprintf(sub_id, sizeof(sub_id), "itest-interop-sub-%s", pid_str);
    snprintf(filter, sizeof(filter), "itest/%s/interop/b/#", pid_str);
    snprintf(port, sizeof(port), "%u", (unsigned)broker.port);
    o.client_id = sub_id;
    o.clean_session = true;
    o.keep_messages = true;
    itest_client_init(&sub, &o, broker.port);
    itest_client *all[] = { &sub };
    itest_client_start(&sub);
    itest_wait_connected(all, 1, &sub, 5000);
    itest_subscribe(all, 1, &sub, filter, 2, 5000);

    static uint8_t data[3][3000];
    size_t lens[3] = { 1, 700, 3000 };
    char topics[4][128];
    for (int q = 0; q < 3; q++) {
        char file[400], qs[4];
        fill(data[q], lens[q], (uint32_t)q + 100u);
        data[q][0] = 0; /* a NUL byte first: binary, not a C string */
        snprintf(file, sizeof(file), "%s/payload%d.bin", broker.dir, q);
        FILE *f = fopen(file, "wb");
        ITEST_CHECK(f != NULL && fwrite(data[q], 1, lens[q], f) == lens[q] && fclose(f) == 0,
                    "cannot write %s", file);
        snprintf(topics[q], sizeof(topics[q]), "itest/%s/interop/b/q%d", pid_str, q);
        snprintf(qs, sizeof(qs), "%d", q);
        const char *argv[] = { "mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-t", topics[q],
                               "-q", qs, "-f", file, NULL };
        child_wait w = { itest_spawn(argv, NULL, NULL), 0, false };
        if (!itest_run_until(all, 1, 10000, cond_child_exited, &w))
            ITEST_FAIL("mosquitto_pub (QoS %d) did not finish within 10 s", q);
        char why[96];
        ITEST_CHECK(WIFEXITED(w.status) && WEXITSTATUS(w.status) == 0, "mosquitto_pub %s",
                    itest_describe_status(w.status, why, sizeof(why)));
    }
    const char *text = "plain text from mosquitto_pub";
    snprintf(topics[3], sizeof(topics[3]), "itest/%s/interop/b/text", pid_str);
    const char *argv[] = { "mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-t", topics[3],
                           "-q", "1", "-m", text, NULL };
    child_wait w = { itest_spawn(argv, NULL, NULL), 0, false };
    if (!itest_run_until(all, 1, 10000, cond_child_exited, &w))
        ITEST_FAIL("mosquitto_pub -m did not finish within 10 s");

    /* Every publish was acknowledged before mosquitto_pub exited at QoS 1/2,
     * but delivery to us is asynchronous: wait for all four. */
    uint32_t start = moat_clock_ms();
    while (sub.n_msgs < 4 && moat_clock_ms() - start < 5000)
        itest_run_until(all, 1, 20, NULL, NULL);
    itest_run_until(all, 1, 200, NULL, NULL);
    ITEST_CHECK(sub.n_msgs == 4, "moat received %zu of the 4 messages mosquitto_pub sent",
                sub.n_msgs);
    for (int i = 0; i < 4; i++) {
        const itest_msg *m = &sub.msgs[i];
        ITEST_CHECK(strcmp(m->topic, topics[i]) == 0, "message %d on '%s', expected '%s'", i,
                    m->topic, topics[i]);
        const uint8_t *want = i < 3 ? data[i] : (const uint8_t *)text;
        size_t want_len = i < 3 ? lens[i] : strlen(text);
        ITEST_CHECK(m->len == want_len && memcmp(m->payload, want, want_len) == 0,
                    "message %d on %s: got %zu bytes %s, mosquitto_pub sent %zu bytes", i,
                    m->topic, m->len, itest_hex(m->payload, m->len), want_len);
        unsigned want_qos = i < 3 ? (unsigned)i : 1u;
        ITEST_CHECK(m->qos == want_qos && !m->retain,
                    "message %d delivered at QoS %u retain %d, expected QoS %u retain 0", i,
                    (unsigned)m->qos, (int)m->retain, want_qos);
    }
    itest_log("moat received 4 mosquitto_pub messages (QoS 0/1/2 binary, QoS 1 text) intact");
    itest_disconnect(all, 1, &sub, 5000);
    itest_client_free(&sub);
}

int main(void)
{
    snprintf(pid_str, sizeof(pid_str), "%ld", (long)getpid());
    itest_begin("integration_interop", 80);
    itest_broker_start(&broker, NULL);
    moat_to_mosquitto_sub();
    mosquitto_pub_to_moat();
    itest_broker_destroy(&broker);
    return itest_pass();
}
