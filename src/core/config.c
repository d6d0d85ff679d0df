/*
 * config.c - moat-agent's config.json: defaults, presets, the checks of
 * every key, and topic templates (moat/config.h).
 *
 * Keys are described by tables (name, kind, field, range), so every key of
 * a kind is checked and worded the same way. The text is parsed into
 * work->tmp and copied to the caller's config only when all of it is good.
 */
#include <stddef.h>

#include "moat/config.h"

#include "mem.h"

/* Longest id and command name a template is expanded with. */
#define ID_LEN (MOAT_CONFIG_ID_MAX - 1u)
#define NAME_LEN (MOAT_CONFIG_NAME_MAX - 1u)

/* ---------------------------------------------------------- messages -- */

typedef struct sbuf {
    char *b;
    size_t cap, n;
} sbuf;

static void sb_init(sbuf *s, char *b, size_t cap)
{
    s->b = b;
    s->cap = cap;
    s->n = 0;
    b[0] = '\0';
}

static void sb_s(sbuf *s, const char *t)
{
    while (*t && s->n + 1 < s->cap)
        s->b[s->n++] = *t++;
    s->b[s->n] = '\0';
}

static void sb_u(sbuf *s, unsigned long v)
{
    char d[21];
    size_t i = sizeof(d) - 1;
    d[i] = '\0';
    do {
        d[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    sb_s(s, d + i);
}

/* Raw text from the file, for "got ...": at most 40 bytes, cut between
 * UTF-8 characters, control bytes as '?', so a message stays one short
 * printable line. */
static void sb_raw(sbuf *s, const char *p, size_t n)
{
    char t[48];
    size_t k = 0, m = n;

    if (m > 40) {
        m = 40;
        while (m > 0 && ((unsigned char)p[m] & 0xC0u) == 0x80u)
            m--; /* p[m] continues a character: cut before it starts */
    }
    for (size_t i = 0; i < m; i++)
        t[k++] = (unsigned char)p[i] < 0x20 || p[i] == 0x7F ? '?' : p[i];
    t[k] = '\0';
    sb_s(s, t);
    if (n > m)
        sb_s(s, "...");
}

/* ----------------------------------------------------------- context -- */

typedef struct ctx {
    const moat_json *doc;
    const char *source;
    moat_config_diag *diag;
    moat_config *cfg;
    char keybuf[48];  /* the key being read: "mqttport", "zones.count" */
    int keytok;       /* its token, for the line number; -1 if none */
    sbuf msg;
    char spare[MOAT_CONFIG_MESSAGE_MAX]; /* the message when diag is NULL */
} ctx;

static unsigned line_of(const ctx *c, int tok)
{
    if (tok < 0 || tok >= c->doc->count)
        return 0;
    return moat_json_line(c->doc->text, c->doc->len, (size_t)c->doc->tok[tok].start);
}

/* Starts the error message "<source>: key '<key>': " and records the key. */
static sbuf *err_key(ctx *c)
{
    sb_init(&c->msg, c->diag ? c->diag->message : c->spare, MOAT_CONFIG_MESSAGE_MAX);
    sb_s(&c->msg, c->source);
    sb_s(&c->msg, ": key '");
    sb_s(&c->msg, c->keybuf);
    sb_s(&c->msg, "': ");
    if (c->diag) {
        sbuf k;
        sb_init(&k, c->diag->key, sizeof(c->diag->key));
        sb_s(&k, c->keybuf);
        c->diag->line = line_of(c, c->keytok);
    }
    return &c->msg;
}

/* "..., got <what>": the raw number, the quoted string, or the type. */
static void got(sbuf *s, const ctx *c, int val)
{
    moat_json_type t = moat_json_type_of(c->doc, val);
    size_t n;
    const char *raw = moat_json_raw(c->doc, val, &n);

    sb_s(s, ", got ");
    if (t == MOAT_JSON_NUMBER) {
        sb_raw(s, raw, n);
    } else if (t == MOAT_JSON_STRING) {
        sb_s(s, "\"");
        sb_raw(s, raw, n);
        sb_s(s, "\"");
    } else {
        sb_s(s, moat_json_type_name(t));
    }
}

static moat_err fail_got(ctx *c, const char *what, int val)
{
    sbuf *s = err_key(c);
    sb_s(s, what);
    got(s, c, val);
    return MOAT_ERR_ARG;
}

static moat_err fail_msg(ctx *c, const char *what)
{
    sb_s(err_key(c), what);
    return MOAT_ERR_ARG;
}

static void warn_unknown(ctx *c, int key)
{
    moat_config_diag *d = c->diag;
    size_t n;
    const char *raw = moat_json_raw(c->doc, key, &n);
    sbuf s;

    if (d == NULL)
        return;
    if (d->warning_count < MOAT_CONFIG_MAX_WARNINGS) {
        sb_init(&s, d->warnings[d->warning_count], MOAT_CONFIG_MESSAGE_MAX);
        sb_s(&s, c->source);
        sb_s(&s, ": line ");
        sb_u(&s, line_of(c, key));
        sb_s(&s, ": unknown key '");
        if (c->keybuf[0]) {
            sb_s(&s, c->keybuf);
            sb_s(&s, ".");
        }
        sb_raw(&s, raw, n);
        sb_s(&s, "' ignored");
    }
    d->warning_count++;
}

/* ----------------------------------------------------------- checks -- */

static bool id_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-';
}

bool moat_config_id_valid(const char *id)
{
    size_t n = 0;
    if (id == NULL)
        return false;
    for (; id[n]; n++)
        if (!id_char(id[n]) || n >= ID_LEN)
            return false;
    return n > 0;
}

void moat_config_id_from_mac(const uint8_t mac[6], char out[13])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 6; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[12] = '\0';
}

static bool host_valid(const char *h)
{
    for (; *h; h++) {
        char ch = *h;
        if (!id_char(ch) && ch != '.' && ch != ':')
            return false;
    }
    return true;
}

static bool ifname_valid(const char *h)
{
    for (; *h; h++)
        if (!id_char(*h) && *h != '.' && *h != ':')
            return false;
    return true;
}

/* Printable, no control bytes (UTF-8 above 0x7F is fine in file names). */
static bool path_valid(const char *p)
{
    for (; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7F)
            return false;
    return true;
}

/* A URL path: starts with '/', printable ASCII without spaces. */
static bool urlpath_valid(const char *p)
{
    if (p[0] != '/')
        return false;
    for (; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7F)
            return false;
    return true;
}

/* True when the NUL-terminated t starts with p (never reads past t's NUL). */
static bool starts_with(const char *t, const char *p)
{
    while (*p && *t == *p) {
        t++;
        p++;
    }
    return *p == '\0';
}

/* Which placeholder starts at t: 1 {id}, 2 {name}, 0 none. */
static int placeholder(const char *t, size_t *len)
{
    if (starts_with(t, "{id}")) {
        *len = 4;
        return 1;
    }
    if (starts_with(t, "{name}")) {
        *len = 6;
        return 2;
    }
    return 0;
}

typedef enum tmpl_need { TMPL_NO_NAME, TMPL_NAME } tmpl_need;

/* Checks a template; NULL when good, else what is wrong (words). */
static const char *template_problem(const char *t, tmpl_need need)
{
    size_t n = 0, ids = 0, names = 0, len;

    if (t[0] == '\0')
        return "must not be empty";
    for (size_t i = 0; t[i];) {
        char ch = t[i];
        if (ch == '+' || ch == '#')
            return "must not hold the wildcards + or #";
        if (ch == '{') {
            int ph = placeholder(t + i, &len);
            if (ph == 0)
                return "'{' may only start {id} or {name}";
            if (ph == 2) {
                if (need == TMPL_NO_NAME)
                    return "must not hold {name}: only cmd and result have a command name";
                if ((i > 0 && t[i - 1] != '/') || (t[i + len] != '\0' && t[i + len] != '/'))
                    return "{name} must fill a whole topic level, as in moat/{id}/cmd/{name}";
                names++;
            } else {
                ids++;
            }
            i += len;
            n += ph == 1 ? ID_LEN : NAME_LEN;
            continue;
        }
        if (ch == '}')
            return "'}' may only end {id} or {name}";
        i++;
        n++;
    }
    if (need == TMPL_NAME && names != 1)
        return names ? "must hold {name} only once"
                     : "must hold {name} as a whole topic level, as in moat/{id}/cmd/{name}";
    (void)ids;
    if (n > 65535u || n + 1 > MOAT_CONFIG_TOPIC_BUF)
        return "too long: with a 64-character id it exceeds the topic buffer";
    return NULL;
}

/* -------------------------------------------------------- templates -- */

/* An id or name that may stand in a topic level: not empty, no / + #. */
static bool level_ok(const char *s, bool allow_plus)
{
    if (s == NULL || s[0] == '\0')
        return false;
    if (allow_plus && s[0] == '+' && s[1] == '\0')
        return true;
    for (; *s; s++)
        if (*s == '/' || *s == '+' || *s == '#')
            return false;
    return true;
}

moat_err moat_config_topic(const char *tmpl, const char *id, const char *name, char *out,
                           size_t cap)
{
    size_t k = 0, len;

    if (out == NULL || cap == 0)
        return MOAT_ERR_NO_SPACE;
    out[0] = '\0';
    if (tmpl == NULL)
        return MOAT_ERR_ARG;
    for (size_t i = 0; tmpl[i];) {
        const char *part = tmpl + i;
        size_t plen = 1;
        if (tmpl[i] == '{') {
            int ph = placeholder(tmpl + i, &len);
            if (ph == 0)
                return MOAT_ERR_ARG;
            part = ph == 1 ? id : name;
            if (!level_ok(part, ph == 2))
                return MOAT_ERR_ARG;
            plen = strlen(part);
            i += len;
        } else {
            i++;
        }
        if (plen >= cap - k) {
            out[0] = '\0';
            return MOAT_ERR_NO_SPACE;
        }
        memcpy(out + k, part, plen);
        k += plen;
    }
    out[k] = '\0';
    return MOAT_OK;
}

moat_err moat_config_topic_match(const char *tmpl, const char *id, const char *topic,
                                 size_t len, char *name, size_t cap)
{
    size_t i = 0, k = 0, plen;
    const char *nm = NULL;
    size_t nlen = 0;

    if (name && cap)
        name[0] = '\0';
    if (tmpl == NULL || topic == NULL || !level_ok(id, false))
        return MOAT_ERR_TOPIC;
    while (tmpl[i]) {
        if (tmpl[i] == '{') {
            int ph = placeholder(tmpl + i, &plen);
            if (ph == 1) {
                size_t idn = strlen(id);
                if (len - k < idn || memcmp(topic + k, id, idn) != 0)
                    return MOAT_ERR_TOPIC;
                k += idn;
            } else if (ph == 2) {
                if (nm != NULL)
                    return MOAT_ERR_TOPIC;
                nm = topic + k;
                while (k < len && topic[k] != '/') {
                    if (topic[k] == '\0' || topic[k] == '+' || topic[k] == '#')
                        return MOAT_ERR_TOPIC;
                    k++;
                }
                nlen = (size_t)(topic + k - nm);
                if (nlen == 0)
                    return MOAT_ERR_TOPIC;
            } else {
                return MOAT_ERR_TOPIC;
            }
            i += plen;
            continue;
        }
        if (k >= len || topic[k] != tmpl[i])
            return MOAT_ERR_TOPIC;
        i++;
        k++;
    }
    if (k != len || nm == NULL)
        return MOAT_ERR_TOPIC;
    if (name == NULL || nlen >= cap)
        return MOAT_ERR_NO_SPACE;
    memcpy(name, nm, nlen);
    name[nlen] = '\0';
    return MOAT_OK;
}

moat_err moat_config_command_of(const moat_config *cfg, const char *id, const char *topic,
                                size_t len, char *name, size_t cap)
{
    char t[MOAT_CONFIG_TOPIC_BUF];
    moat_err e;

    if (cfg == NULL)
        return MOAT_ERR_TOPIC;
    e = moat_config_topic_match(cfg->topics.cmd, id, topic, len, name, cap);
    if (e != MOAT_ERR_TOPIC || cfg->topics.zonecmd[0] == '\0')
        return e;
    if (moat_config_topic(cfg->topics.zonecmd, id, NULL, t, sizeof(t)) != MOAT_OK ||
        strlen(t) != len || memcmp(t, topic, len) != 0)
        return MOAT_ERR_TOPIC;
    if (name == NULL || cap < sizeof(MOAT_CONFIG_ZONE_COMMAND))
        return MOAT_ERR_NO_SPACE;
    memcpy(name, MOAT_CONFIG_ZONE_COMMAND, sizeof(MOAT_CONFIG_ZONE_COMMAND));
    return MOAT_OK;
}

/* ---------------------------------------------------------- presets -- */

typedef struct preset_def {
    const char *name;
    const char *state, *status, *cmd, *result, *zones, *zonecmd;
    uint8_t statusfields;
} preset_def;

static const preset_def presets[] = {
    {"moat", "moat/{id}/state", "moat/{id}/status", "moat/{id}/cmd/{name}",
     "moat/{id}/result/{name}", "moat/{id}/zones", "", MOAT_STATUSFIELDS_MOAT},
    {"secureesp8266", "/will/{id}", "/status/{id}", "/command/{id}/{name}",
     "/result/{id}/{name}", "/zones/{id}", "", MOAT_STATUSFIELDS_SEED},
    {"poc", "moat/{id}/state", "moat/{id}/status", "moat/{id}/cmd/{name}",
     "moat/{id}/result/{name}", "moat/{id}/zones", "irrigation/zone/on",
     MOAT_STATUSFIELDS_MOAT},
};

#define PRESET_COUNT (sizeof(presets) / sizeof(presets[0]))

const char *moat_config_preset_name(moat_config_preset p)
{
    return (unsigned)p < PRESET_COUNT ? presets[p].name : "unknown";
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void apply_preset(moat_config *cfg, unsigned p)
{
    const preset_def *d = &presets[p];
    moat_config_topics *t = &cfg->topics;
    copy_str(t->state, sizeof(t->state), d->state);
    copy_str(t->status, sizeof(t->status), d->status);
    copy_str(t->cmd, sizeof(t->cmd), d->cmd);
    copy_str(t->result, sizeof(t->result), d->result);
    copy_str(t->zones, sizeof(t->zones), d->zones);
    copy_str(t->zonecmd, sizeof(t->zonecmd), d->zonecmd);
    cfg->preset = (uint8_t)p;
    cfg->statusfields = d->statusfields;
}

void moat_config_defaults(moat_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->mqttport = MOAT_CONFIG_DEFAULT_MQTTPORT;
    cfg->mqtttls = true;
    copy_str(cfg->ntpserver, sizeof(cfg->ntpserver), MOAT_CONFIG_DEFAULT_NTPSERVER);
    cfg->statusinterval_ms = MOAT_CONFIG_DEFAULT_STATUSINTERVAL_MS;
    cfg->waittimeout_ms = MOAT_CONFIG_DEFAULT_WAITTIMEOUT_MS;
    cfg->retrytimeout_ms = MOAT_CONFIG_DEFAULT_RETRYTIMEOUT_MS;
    cfg->downloadport = MOAT_CONFIG_DEFAULT_DOWNLOADPORT;
    copy_str(cfg->downloadpath, sizeof(cfg->downloadpath), MOAT_CONFIG_DEFAULT_DOWNLOADPATH);
    apply_preset(cfg, MOAT_PRESET_MOAT);
    cfg->zone_count = MOAT_CONFIG_MAX_ZONES;
    cfg->zones_exclusive = true;
    cfg->zone_maxseconds = MOAT_CONFIG_DEFAULT_ZONE_MAXSECONDS;
}

/* -------------------------------------------------------- key tables -- */

typedef enum kind {
    K_HOST,          /* host name or IP address, required non-empty */
    K_HOST_OPT,      /* the same, "" allowed */
    K_FILE,          /* a file path */
    K_URLPATH,       /* an HTTP path */
    K_UINT,          /* an integer in [min, max] into a uint8/16/32 field */
    K_TLS,           /* mqtttls: true only */
    K_BOOL,
    K_ID,            /* deviceid */
    K_IFNAME,        /* interface */
    K_PRESET,
    K_STATUSFIELDS,
    K_TOPICS,        /* the topics object */
    K_ZONES,         /* the zones object */
    K_TEMPLATE,      /* a template without {name} */
    K_TEMPLATE_NAME, /* a template with {name} */
    K_TEMPLATE_OPT   /* a template without {name}, "" allowed */
} kind;

typedef struct key_rule {
    const char *name;
    uint8_t kind;
    uint16_t off, size;
    uint32_t min, max;
} key_rule;

#define F(field) offsetof(moat_config, field), sizeof(((moat_config *)0)->field)
#define T(field) offsetof(moat_config, topics.field), sizeof(((moat_config *)0)->topics.field)

static const key_rule top_rules[] = {
    {"mqttserver", K_HOST, F(mqttserver), 0, 0},
    {"mqttport", K_UINT, F(mqttport), 1, 65535},
    {"mqtttls", K_TLS, F(mqtttls), 0, 0},
    {"ntpserver", K_HOST, F(ntpserver), 0, 0},
    {"statusinterval", K_UINT, F(statusinterval_ms), MOAT_CONFIG_STATUSINTERVAL_MIN_MS,
     MOAT_CONFIG_INTERVAL_MAX_MS},
    {"waittimeout", K_UINT, F(waittimeout_ms), MOAT_CONFIG_WAITTIMEOUT_MIN_MS,
     MOAT_CONFIG_INTERVAL_MAX_MS},
    {"retrytimeout", K_UINT, F(retrytimeout_ms), MOAT_CONFIG_RETRYTIMEOUT_MIN_MS,
     MOAT_CONFIG_RETRYTIMEOUT_MAX_MS},
    {"downloadserver", K_HOST_OPT, F(downloadserver), 0, 0},
    {"downloadport", K_UINT, F(downloadport), 1, 65535},
    {"downloadpath", K_URLPATH, F(downloadpath), 0, 0},
    {"deviceid", K_ID, F(deviceid), 0, 0},
    {"interface", K_IFNAME, F(interface), 0, 0},
    {"cafile", K_FILE, F(cafile), 0, 0},
    {"certfile", K_FILE, F(certfile), 0, 0},
    {"keyfile", K_FILE, F(keyfile), 0, 0},
    {"topics", K_TOPICS, 0, 0, 0, 0},
    {"preset", K_PRESET, F(preset), 0, 0},
    {"zones", K_ZONES, 0, 0, 0, 0},
    {"statusfields", K_STATUSFIELDS, F(statusfields), 0, 0},
};

static const key_rule topic_rules[] = {
    {"state", K_TEMPLATE, T(state), 0, 0},
    {"status", K_TEMPLATE, T(status), 0, 0},
    {"cmd", K_TEMPLATE_NAME, T(cmd), 0, 0},
    {"result", K_TEMPLATE_NAME, T(result), 0, 0},
    {"zones", K_TEMPLATE, T(zones), 0, 0},
    {"zonecmd", K_TEMPLATE_OPT, T(zonecmd), 0, 0},
};

static const key_rule zone_rules[] = {
    {"count", K_UINT, F(zone_count), 1, MOAT_CONFIG_MAX_ZONES},
    {"exclusive", K_BOOL, F(zones_exclusive), 0, 0},
    {"maxseconds", K_UINT, F(zone_maxseconds), 1, MOAT_CONFIG_ZONE_MAXSECONDS_MAX},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------ values -- */

/* A string value into field[0..size): type, length, no U+0000. */
static moat_err read_string(ctx *c, int val, char *field, size_t size)
{
    size_t n;
    moat_err e;

    if (moat_json_type_of(c->doc, val) != MOAT_JSON_STRING)
        return fail_got(c, "must be a string", val);
    e = moat_json_get_string(c->doc, val, field, size, &n);
    if (e == MOAT_ERR_NO_SPACE) {
        sbuf *s = err_key(c);
        sb_s(s, "too long: at most ");
        sb_u(s, (unsigned long)(size - 1));
        sb_s(s, " bytes");
        return MOAT_ERR_ARG;
    }
    if (e != MOAT_OK)
        return fail_msg(c, "must not hold \\u0000");
    return MOAT_OK;
}

/* Digits only, as seed files may quote numbers: "8883". */
static bool digit_string(const ctx *c, int val, uint64_t *v)
{
    size_t n;
    const char *p = moat_json_raw(c->doc, val, &n);
    uint64_t x = 0;

    if (moat_json_type_of(c->doc, val) != MOAT_JSON_STRING || n == 0 || n > 18)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        x = x * 10u + (uint64_t)(p[i] - '0');
    }
    *v = x;
    return true;
}

static moat_err read_uint(ctx *c, const key_rule *r, int val, void *field)
{
    int64_t v = 0;
    uint64_t u;
    bool ok;

    if (digit_string(c, val, &u)) {
        ok = u >= r->min && u <= r->max;
        v = (int64_t)u;
    } else {
        ok = moat_json_get_int(c->doc, val, r->min, r->max, &v) == MOAT_OK;
    }
    if (!ok) {
        sbuf *s = err_key(c);
        sb_s(s, "must be an integer from ");
        sb_u(s, r->min);
        sb_s(s, " to ");
        sb_u(s, r->max);
        got(s, c, val);
        return MOAT_ERR_ARG;
    }
    if (r->size == 1)
        *(uint8_t *)field = (uint8_t)v;
    else if (r->size == 2)
        *(uint16_t *)field = (uint16_t)v;
    else
        *(uint32_t *)field = (uint32_t)v;
    return MOAT_OK;
}

/* true, false, or the same as a string; -1 for anything else. */
static int bool_of(const ctx *c, int val)
{
    bool b;
    if (moat_json_get_bool(c->doc, val, &b) == MOAT_OK)
        return b;
    if (moat_json_eq(c->doc, val, "true"))
        return 1;
    if (moat_json_eq(c->doc, val, "false"))
        return 0;
    return -1;
}

/* One of names[0..n) (case-insensitive ASCII); -1 if none. */
static int choice(const ctx *c, int val, const char *const *names, size_t n)
{
    char v[16];
    if (moat_json_type_of(c->doc, val) != MOAT_JSON_STRING ||
        moat_json_get_string(c->doc, val, v, sizeof(v), NULL) != MOAT_OK)
        return -1;
    for (size_t i = 0; v[i]; i++)
        if (v[i] >= 'A' && v[i] <= 'Z')
            v[i] = (char)(v[i] - 'A' + 'a');
    for (size_t i = 0; i < n; i++)
        if (strlen(v) == strlen(names[i]) && memcmp(v, names[i], strlen(v)) == 0)
            return (int)i;
    return -1;
}

static const char *const preset_names[] = {"moat", "secureesp8266", "poc"};
static const char *const statusfields_names[] = {"moat", "seed"};

static moat_err walk(ctx *c, int obj, const key_rule *rules, size_t n);

static moat_err apply(ctx *c, const key_rule *r, int val)
{
    char *field = (char *)c->cfg + r->off;
    moat_err e;
    int k;

    switch ((kind)r->kind) {
    case K_HOST:
    case K_HOST_OPT:
        if ((e = read_string(c, val, field, r->size)) != MOAT_OK)
            return e;
        if (field[0] == '\0' && r->kind == K_HOST)
            return fail_msg(c, "must not be empty");
        if (!host_valid(field))
            return fail_got(c, "must be a host name or IP address (letters, digits, '.', '-', "
                               "'_', ':')", val);
        return MOAT_OK;
    case K_FILE:
        if ((e = read_string(c, val, field, r->size)) != MOAT_OK)
            return e;
        if (field[0] == '\0')
            return fail_msg(c, "must not be empty");
        if (!path_valid(field))
            return fail_msg(c, "must not hold control characters");
        return MOAT_OK;
    case K_URLPATH:
        if ((e = read_string(c, val, field, r->size)) != MOAT_OK)
            return e;
        if (!urlpath_valid(field))
            return fail_got(c, "must be a URL path: '/' then printable characters without "
                               "spaces", val);
        return MOAT_OK;
    case K_UINT:
        return read_uint(c, r, val, field);
    case K_TLS:
        k = bool_of(c, val);
        if (k == 0)
            return fail_msg(c, "false is not allowed: moat always uses TLS");
        if (k < 0)
            return fail_got(c, "must be true (moat always uses TLS)", val);
        c->cfg->mqtttls = true;
        return MOAT_OK;
    case K_BOOL:
        k = bool_of(c, val);
        if (k < 0)
            return fail_got(c, "must be true or false", val);
        *(bool *)field = k == 1;
        return MOAT_OK;
    case K_ID:
        if ((e = read_string(c, val, field, r->size)) != MOAT_OK) {
            if (moat_json_type_of(c->doc, val) == MOAT_JSON_STRING)
                return fail_got(c, "must be 1 to 64 of A-Z a-z 0-9 _ - (or 12 lowercase hex "
                                   "digits, the MAC)", val);
            return e;
        }
        if (field[0] != '\0' && !moat_config_id_valid(field))
            return fail_got(c, "must be 1 to 64 of A-Z a-z 0-9 _ - (or 12 lowercase hex "
                               "digits, the MAC)", val);
        return MOAT_OK;
    case K_IFNAME:
        if ((e = read_string(c, val, field, r->size)) != MOAT_OK)
            return e;
        if (!ifname_valid(field))
            return fail_got(c, "must be a network interface name (letters, digits, '.', "
                               "'-', '_', ':')", val);
        return MOAT_OK;
    case K_PRESET:
        /* applied before the walk: topics and statusfields override it */
        if (choice(c, val, preset_names, COUNT(preset_names)) < 0)
            return fail_got(c, "must be \"moat\", \"secureesp8266\" or \"poc\"", val);
        return MOAT_OK;
    case K_STATUSFIELDS:
        k = choice(c, val, statusfields_names, COUNT(statusfields_names));
        if (k < 0)
            return fail_got(c, "must be \"moat\" or \"seed\"", val);
        c->cfg->statusfields = (uint8_t)k;
        return MOAT_OK;
    case K_TOPICS:
    case K_ZONES:
        if (moat_json_type_of(c->doc, val) != MOAT_JSON_OBJECT)
            return fail_got(c, "must be an object", val);
        if (r->kind == K_TOPICS)
            return walk(c, val, topic_rules, COUNT(topic_rules));
        return walk(c, val, zone_rules, COUNT(zone_rules));
    case K_TEMPLATE:
    case K_TEMPLATE_NAME:
    case K_TEMPLATE_OPT: {
        const char *why;
        if ((e = read_string(c, val, field, r->size)) != MOAT_OK)
            return e;
        if (r->kind == K_TEMPLATE_OPT && field[0] == '\0')
            return MOAT_OK;
        why = template_problem(field, r->kind == K_TEMPLATE_NAME ? TMPL_NAME : TMPL_NO_NAME);
        if (why)
            return fail_got(c, why, val);
        return MOAT_OK;
    }
    }
    return MOAT_ERR_ARG;
}

/* Sets the key path "<parent>.<name>" for messages; returns the old length.
 * The rule's name, not the raw key: "mqtt\u0070ort" is 'mqttport'. */
static size_t push_key(ctx *c, const char *name)
{
    size_t old = strlen(c->keybuf);
    sbuf s;

    s.b = c->keybuf;
    s.cap = sizeof(c->keybuf);
    s.n = old;
    if (old)
        sb_s(&s, ".");
    sb_s(&s, name);
    return old;
}

/* Every member of obj: known keys applied, duplicates refused, unknown
 * keys warned about. */
static moat_err walk(ctx *c, int obj, const key_rule *rules, size_t n)
{
    int it = 0, key, val;

    while (moat_json_next(c->doc, obj, &it, &key, &val)) {
        const key_rule *r = NULL;
        int it2 = 0, k2, v2;
        size_t old;
        moat_err e;

        for (size_t i = 0; i < n && r == NULL; i++)
            if (moat_json_eq(c->doc, key, rules[i].name))
                r = &rules[i];
        if (r == NULL) {
            warn_unknown(c, key);
            continue;
        }
        old = push_key(c, r->name);
        c->keytok = key;
        while (moat_json_next(c->doc, obj, &it2, &k2, &v2) && k2 < key)
            if (moat_json_eq(c->doc, k2, r->name)) {
                sbuf *s = err_key(c);
                sb_s(s, "given twice (lines ");
                sb_u(s, line_of(c, k2));
                sb_s(s, " and ");
                sb_u(s, line_of(c, key));
                sb_s(s, ")");
                return MOAT_ERR_ARG;
            }
        e = apply(c, r, val);
        if (e != MOAT_OK)
            return e;
        c->keybuf[old] = '\0';
    }
    return MOAT_OK;
}

/* ------------------------------------------------------------- parse -- */

static moat_err fail_syntax(ctx *c, moat_err e, size_t pos)
{
    sbuf *s = &c->msg;
    sb_init(s, c->diag ? c->diag->message : c->spare, MOAT_CONFIG_MESSAGE_MAX);
    sb_s(s, c->source);
    if (e == MOAT_ERR_NO_SPACE) {
        sb_s(s, ": too large: more than ");
        sb_u(s, MOAT_CONFIG_MAX_TOKENS);
        sb_s(s, " JSON values and keys");
        return e;
    }
    sb_s(s, ": line ");
    sb_u(s, moat_json_line(c->doc->text, c->doc->len, pos));
    if (c->diag)
        c->diag->line = moat_json_line(c->doc->text, c->doc->len, pos);
    if (e == MOAT_ERR_UTF8)
        sb_s(s, ": not valid JSON: a string is not valid UTF-8");
    else if (pos >= c->doc->len)
        sb_s(s, ": not valid JSON: the text ends too early");
    else
        sb_s(s, ": not valid JSON");
    return MOAT_ERR_MALFORMED;
}

static const struct {
    size_t off;
    const char *key;
    const char *what;
} required[] = {
    {offsetof(moat_config, mqttserver), "mqttserver", "the MQTT broker's host name"},
    {offsetof(moat_config, cafile), "cafile", "the CA certificate that signed the broker's certificate"},
    {offsetof(moat_config, certfile), "certfile", "this device's certificate file"},
    {offsetof(moat_config, keyfile), "keyfile", "this device's private key file"},
};

moat_err moat_config_parse(moat_config *cfg, const char *source, const char *text,
                           size_t len, moat_config_work *work, moat_config_diag *diag)
{
    ctx c;
    moat_json doc;
    size_t pos = 0;
    moat_err e;
    int p;

    if (diag)
        memset(diag, 0, sizeof(*diag));
    memset(&c, 0, sizeof(c));
    c.source = source ? source : "config.json";
    c.diag = diag;
    c.keytok = -1;
    doc.text = text;
    doc.len = len;
    doc.tok = NULL;
    doc.count = 0;
    c.doc = &doc;
    if (cfg == NULL || text == NULL || work == NULL) {
        sb_init(&c.msg, diag ? diag->message : c.spare, MOAT_CONFIG_MESSAGE_MAX);
        sb_s(&c.msg, c.source);
        sb_s(&c.msg, ": no config given");
        return MOAT_ERR_ARG;
    }
    c.cfg = &work->tmp;

    e = moat_json_parse(&doc, text, len, work->tok, MOAT_CONFIG_MAX_TOKENS, &pos);
    if (e == MOAT_ERR_ARG)
        e = MOAT_ERR_MALFORMED; /* over 2 GB: not a config */
    if (e != MOAT_OK)
        return fail_syntax(&c, e, pos);
    if (moat_json_type_of(&doc, 0) != MOAT_JSON_OBJECT) {
        sbuf *s = &c.msg;
        sb_init(s, diag ? diag->message : c.spare, MOAT_CONFIG_MESSAGE_MAX);
        sb_s(s, c.source);
        sb_s(s, ": line ");
        sb_u(s, line_of(&c, 0));
        sb_s(s, ": must be a JSON object { ... }, got ");
        sb_s(s, moat_json_type_name(moat_json_type_of(&doc, 0)));
        if (diag)
            diag->line = line_of(&c, 0);
        return MOAT_ERR_MALFORMED;
    }

    moat_config_defaults(c.cfg);
    p = moat_json_find(&doc, 0, "preset");
    if (p >= 0) {
        int k = choice(&c, p, preset_names, COUNT(preset_names));
        if (k >= 0)
            apply_preset(c.cfg, (unsigned)k);
        /* a bad value is reported by the walk, in document order */
    }
    e = walk(&c, 0, top_rules, COUNT(top_rules));
    if (e != MOAT_OK)
        return e;

    c.keytok = -1;
    for (size_t i = 0; i < COUNT(required); i++) {
        if (((const char *)c.cfg)[required[i].off] == '\0') {
            sbuf *s;
            copy_str(c.keybuf, sizeof(c.keybuf), required[i].key);
            s = err_key(&c);
            sb_s(s, "missing: it is required (");
            sb_s(s, required[i].what);
            sb_s(s, ")");
            return MOAT_ERR_ARG;
        }
    }
    if (c.cfg->deviceid[0] == '\0' && c.cfg->interface[0] == '\0') {
        copy_str(c.keybuf, sizeof(c.keybuf), "deviceid");
        return fail_msg(&c, "missing: give 'deviceid', or 'interface' whose MAC becomes "
                            "the id");
    }
    memcpy(cfg, c.cfg, sizeof(*cfg));
    return MOAT_OK;
}
