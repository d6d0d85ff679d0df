/*
 * mqtt_match.c - does a topic filter match a topic name (MQTT 3.1.1 4.7)?
 * A helper for applications that route incoming messages; the engine itself
 * never calls it, so a device that does not need it does not link it.
 */
#include "moat/mqtt.h"

/* End of the level that starts at i. */
static size_t level_end(const uint8_t *s, size_t len, size_t i)
{
    while (i < len && s[i] != '/')
        i++;
    return i;
}

bool moat_mqtt_topic_match(const uint8_t *f, size_t flen, const uint8_t *t, size_t tlen)
{
    size_t fi = 0, ti = 0;
    bool topic_done = false;
    if (!moat_mqtt_filter_valid(f, flen) || !moat_mqtt_topic_valid(t, tlen))
        return false;
    if ((f[0] == '+' || f[0] == '#') && t[0] == '$')
        return false;
    for (;;) {
        size_t fe = level_end(f, flen, fi);
        if (fe - fi == 1 && f[fi] == '#')
            return true; /* this level and all below, or the parent level */
        if (topic_done)
            return false;
        size_t te = level_end(t, tlen, ti);
        if (!(fe - fi == 1 && f[fi] == '+')) {
            if (fe - fi != te - ti)
                return false;
            for (size_t k = 0; k < fe - fi; k++)
                if (f[fi + k] != t[ti + k])
                    return false;
        }
        topic_done = te == tlen;
        if (fe == flen)
            return topic_done;
        fi = fe + 1;
        ti = te + 1;
    }
}
