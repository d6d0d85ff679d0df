/*
 * config.c - the agent's side of config.json: reading the file, the device
 * identity, and writing a new config atomically.
 *
 * Parsing and checking are core code (moat/config.h); this file adds the
 * I/O around it. A config is applied only when all of it is good: a parse
 * error leaves the caller's moat_config exactly as it was.
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

moat_err ag_config_parse(const char *source, const char *text, size_t len,
                         moat_config *cfg, moat_config_work *work, char *msg, size_t cap,
                         bool log_warnings)
{
    static moat_config_diag diag;
    moat_err err;
    unsigned i;

    memset(&diag, 0, sizeof diag);
    err = moat_config_parse(cfg, source, text, len, work, &diag);
    if (err != MOAT_OK) {
        snprintf(msg, cap, "%s", diag.message[0] ? diag.message : moat_strerror(err));
        return err;
    }
    if (!ag_time_server_valid(cfg->ntpserver)) {
        snprintf(msg, cap, "%s: key 'ntpserver': must be a host name or address, "
                 "optionally with :port (1 to 65535), or \"system\"; got '%s'",
                 source, cfg->ntpserver);
        return MOAT_ERR_ARG;
    }
    for (i = 0; log_warnings && i < diag.warning_count && i < MOAT_CONFIG_MAX_WARNINGS; i++)
        ag_log(AG_LOG_WARN, "%s", diag.warnings[i]);
    if (log_warnings && diag.warning_count > MOAT_CONFIG_MAX_WARNINGS)
        ag_log(AG_LOG_WARN, "%s: %u more unknown keys ignored", source,
               diag.warning_count - MOAT_CONFIG_MAX_WARNINGS);
    msg[0] = '\0';
    return MOAT_OK;
}

moat_err ag_config_load(const char *path, moat_config *cfg, moat_config_work *work,
                        char *msg, size_t cap)
{
    static char text[AG_CONFIG_FILE_MAX + 1];
    size_t len = 0;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        snprintf(msg, cap, "cannot read config file '%s': %s", path, strerror(errno));
        return MOAT_ERR_FILE;
    }
    while ((n = read(fd, text + len, sizeof text - len)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0)
            len += (size_t)n;
    if (n < 0) {
        snprintf(msg, cap, "cannot read config file '%s': %s", path, strerror(errno));
        close(fd);
        return MOAT_ERR_FILE;
    }
    close(fd);
    if (len > AG_CONFIG_FILE_MAX) {
        snprintf(msg, cap, "%s: the file is larger than %u bytes", path,
                 AG_CONFIG_FILE_MAX);
        return MOAT_ERR_TOO_LARGE;
    }
    return ag_config_parse(path, text, len, cfg, work, msg, cap, true);
}

static moat_err mac_of(const char *ifname, uint8_t mac[6], char *msg, size_t cap)
{
    struct ifreq ifr;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    static const uint8_t zero[6];

    if (fd < 0) {
        snprintf(msg, cap, "key 'interface': cannot open a socket: %s", strerror(errno));
        return MOAT_ERR_IO;
    }
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) {
        snprintf(msg, cap, "key 'interface': cannot read the MAC address of '%s': %s",
                 ifname, strerror(errno));
        close(fd);
        return MOAT_ERR_ARG;
    }
    close(fd);
    memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    if (memcmp(mac, zero, 6) == 0) {
        snprintf(msg, cap, "key 'interface': '%s' has no MAC address; name another "
                 "interface or set 'deviceid'", ifname);
        return MOAT_ERR_ARG;
    }
    return MOAT_OK;
}

moat_err ag_config_identity(const moat_config *cfg, char id[MOAT_CONFIG_ID_MAX],
                            char *msg, size_t cap)
{
    uint8_t mac[6];
    moat_err err;

    if (cfg->deviceid[0] != '\0') {
        snprintf(id, MOAT_CONFIG_ID_MAX, "%s", cfg->deviceid);
        return MOAT_OK;
    }
    if (cfg->interface[0] == '\0') {
        snprintf(msg, cap, "key 'deviceid': missing, and no 'interface' to take the MAC "
                 "address from");
        return MOAT_ERR_ARG;
    }
    err = mac_of(cfg->interface, mac, msg, cap);
    if (err != MOAT_OK)
        return err;
    moat_config_id_from_mac(mac, id);
    return MOAT_OK;
}

/* Make the directory's entry durable too, so the rename survives a power cut. */
static void sync_dir(const char *path)
{
    char dir[MOAT_CONFIG_PATH_MAX + 8];
    const char *slash = strrchr(path, '/');
    int fd;

    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

moat_err ag_write_atomic(const char *path, const char *text, size_t len, int mode,
                         bool durable, char *msg, size_t cap)
{
    char tmp[1024];
    size_t done = 0;
    ssize_t n;
    int fd;

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp) {
        snprintf(msg, cap, "path '%s' is too long", path);
        return MOAT_ERR_ARG;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        snprintf(msg, cap, "cannot write '%s': %s", tmp, strerror(errno));
        return MOAT_ERR_FILE;
    }
    while (done < len) {
        n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    if (done < len || (durable && fsync(fd) != 0)) {
        snprintf(msg, cap, "cannot write '%s': %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return MOAT_ERR_FILE;
    }
    fchmod(fd, (mode_t)mode);
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        snprintf(msg, cap, "cannot replace '%s': %s", path, strerror(errno));
        unlink(tmp);
        return MOAT_ERR_FILE;
    }
    if (durable)
        sync_dir(path);
    return MOAT_OK;
}
