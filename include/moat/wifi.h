/*
 * moat/wifi.h - the Wi-Fi signal level of a Linux device, for the status's
 * rssi field.
 *
 * Linux publishes the wireless statistics of each Wi-Fi interface in
 * /proc/net/wireless, one line per interface after two header lines:
 *
 *   Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE
 *    face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22
 *    wlan0: 0000   54.  -56.  -256        0      0      0      0      0        0
 *
 * The level is in dBm when it is negative (drivers that report dBm set
 * IW_QUAL_DBM, which the kernel prints as a negative number); a driver
 * that reports a relative level prints 0..255, which is not dBm and is
 * not reported. A machine without Wi-Fi has no lines (or no file): no rssi.
 */
#ifndef MOAT_WIFI_H
#define MOAT_WIFI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* From the text of /proc/net/wireless (len bytes, NUL not needed): the
 * level of interface ifname, or with ifname NULL of the first interface
 * that has one in dBm. True and *dbm set when found. */
bool moat_wifi_rssi_parse(const char *text, size_t len, const char *ifname, int32_t *dbm);

/* The same from the file at path (NULL: /proc/net/wireless). */
bool moat_wifi_rssi(const char *path, const char *ifname, int32_t *dbm);

#ifdef __cplusplus
}
#endif
#endif
