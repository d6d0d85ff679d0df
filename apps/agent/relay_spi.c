/*
 * relay_spi.c - moat-agent's relays on the moat-avr co-processor over SPI
 * (--relay-driver, docs/AVR.md):
 *
 *   spidev:/dev/spidev0.0[@HZ]   a real board, Linux spidev (moat/spidev.h)
 *   simavr:<moat-avr.elf>        the real firmware in simavr, in step with
 *                                the wall clock (the demo and its tests)
 *
 * The zone controller writes through ag_relay_spi_set(); the agent's loop
 * calls ag_relay_spi_poll() for the heartbeat that keeps the co-processor's
 * fail-safe from switching everything off. Every write is also logged and
 * mirrored to --relay-file by relay.c, as with the simulated relays.
 *
 * One co-processor per agent: the state is this file's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moat/spidev.h"
#include "agent.h"
#ifdef MOAT_AGENT_SIMAVR
#include "avrsim.h"
#endif

static struct {
    bool active;
    bool failing;          /* the last poll failed (said once) */
    moat_spidev dev;
#ifdef MOAT_AGENT_SIMAVR
    avrsim *sim;
#endif
    moat_spi_relay relay;
    char error[MOAT_SPI_RELAY_ERROR_MAX + 32];
} spi = {.dev = {.fd = -1}};

bool ag_relay_spi_open(const char *spec, char *why, size_t cap)
{
    moat_spi_bus bus;
    moat_spilink_frame f;

    if (strncmp(spec, "spidev:", 7) == 0) {
        char path[256];
        const char *at = strchr(spec + 7, '@');
        unsigned long hz = 0;
        size_t n = at ? (size_t)(at - (spec + 7)) : strlen(spec + 7);
        char *end = NULL;

        if (at != NULL)
            hz = strtoul(at + 1, &end, 10);
        if (n == 0 || n >= sizeof path || (at != NULL && (*end != '\0' || hz == 0 ||
                                                          hz > 2000000ul))) {
            snprintf(why, cap, "--relay-driver '%s': expected spidev:/dev/spidevB.C[@HZ] "
                     "with HZ up to 2000000", spec);
            return false;
        }
        memcpy(path, spec + 7, n);
        path[n] = '\0';
        if (moat_spidev_open(&spi.dev, path, (uint32_t)hz, why, cap) != MOAT_OK)
            return false;
        moat_spidev_bus(&spi.dev, &bus);
    } else if (strncmp(spec, "simavr:", 7) == 0) {
#ifdef MOAT_AGENT_SIMAVR
        spi.sim = avrsim_open(spec + 7, NULL, 0, true, why, cap);
        if (spi.sim == NULL)
            return false;
        avrsim_bus(spi.sim, &bus);
#else
        snprintf(why, cap, "--relay-driver '%s': this moat-agent was built without "
                 "simavr (libsimavr-dev)", spec);
        return false;
#endif
    } else {
        snprintf(why, cap, "--relay-driver '%s': expected spidev:/dev/spidevB.C or "
                 "simavr:<moat-avr.elf>", spec);
        return false;
    }
    moat_spi_relay_init(&spi.relay, &bus, NULL);
    /* Say hello: a co-processor that does not answer is a start-up error
     * worth seeing at once, not at the first zone command. */
    if (moat_spi_relay_call(&spi.relay, MOAT_SPILINK_CMD_VERSION, NULL, 0, &f) != MOAT_OK) {
        snprintf(why, cap, "%s: %s", spec, moat_spi_relay_error(&spi.relay));
        ag_relay_spi_close();
        return false;
    }
    ag_log(AG_LOG_INFO, "relays: moat-avr %u.%u.%u (protocol %u) on %s, fail-safe %u ms, "
           "maximum on-time %u s", f.data[1], f.data[2], f.data[3], f.data[0], spec,
           (unsigned)(f.data[4] | f.data[5] << 8), (unsigned)(f.data[6] | f.data[7] << 8));
    spi.active = true;
    return true;
}

bool ag_relay_spi_active(void)
{
    return spi.active;
}

moat_err ag_relay_spi_set(void *ctx, uint8_t bitmap)
{
    moat_err e = moat_spi_relay_set(&spi.relay, bitmap);

    if (e != MOAT_OK) {
        ag_log(AG_LOG_ERROR, "relays: %s", moat_spi_relay_error(&spi.relay));
        return e;
    }
#ifdef MOAT_AGENT_SIMAVR
    if (spi.sim != NULL)
        ag_log(AG_LOG_INFO, "simavr: PORTD 0x%02x (relays active low)", avrsim_portd(spi.sim));
#endif
    return ag_relay_set(ctx, bitmap); /* the log line and --relay-file */
}

moat_err ag_relay_spi_poll(void)
{
    moat_err e;

    if (!spi.active)
        return MOAT_OK;
    e = moat_spi_relay_poll(&spi.relay);
    if (e == MOAT_OK) {
        if (spi.failing)
            ag_log(AG_LOG_INFO, "relays: the co-processor answers again");
        spi.failing = false;
        return MOAT_OK;
    }
    snprintf(spi.error, sizeof spi.error, "%s", moat_spi_relay_error(&spi.relay));
    if (spi.failing && e != MOAT_ERR_STATE)
        return MOAT_OK; /* said already */
    spi.failing = true;
    return e;
}

const char *ag_relay_spi_error(void)
{
    return spi.error;
}

uint32_t ag_relay_spi_next_timeout(void)
{
    return spi.active ? moat_spi_relay_next_timeout(&spi.relay) : UINT32_MAX;
}

void ag_relay_spi_close(void)
{
    moat_spidev_close(&spi.dev);
#ifdef MOAT_AGENT_SIMAVR
    avrsim_close(spi.sim);
    spi.sim = NULL;
#endif
    spi.active = false;
}
