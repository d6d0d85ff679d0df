/*
 * error.c - moat_strerror(): every moat_err in words.
 */
#include "moat/error.h"

const char *moat_strerror(int err)
{
    switch (err) {
    case MOAT_OK: return "success";
    case MOAT_ERR_WOULD_BLOCK: return "would block: try again later";
    case MOAT_ERR_ARG: return "invalid argument";
    case MOAT_ERR_NO_SPACE: return "buffer too small";
    case MOAT_ERR_STATE: return "not allowed in the current state";
    case MOAT_ERR_MALFORMED: return "malformed packet";
    case MOAT_ERR_REMAINING_LENGTH: return "packet remaining length is invalid or inconsistent";
    case MOAT_ERR_UTF8: return "string is not valid UTF-8 or contains U+0000";
    case MOAT_ERR_TOPIC: return "invalid topic name (empty, or contains + or #)";
    case MOAT_ERR_FILTER: return "invalid topic filter (+ and # must fill a whole level, # must be last)";
    case MOAT_ERR_PACKET_ID: return "packet identifier is zero";
    case MOAT_ERR_FLAGS: return "reserved flag bits are wrong";
    case MOAT_ERR_PROTOCOL: return "packet not allowed here (protocol violation)";
    case MOAT_ERR_CONNACK_VERSION: return "broker refused the connection: unacceptable protocol version";
    case MOAT_ERR_CONNACK_ID: return "broker refused the connection: client identifier rejected";
    case MOAT_ERR_CONNACK_UNAVAILABLE: return "broker refused the connection: server unavailable";
    case MOAT_ERR_CONNACK_CREDENTIALS: return "broker refused the connection: bad user name or password";
    case MOAT_ERR_CONNACK_AUTH: return "broker refused the connection: not authorised";
    case MOAT_ERR_CONNACK_UNKNOWN: return "broker refused the connection with a reserved return code";
    case MOAT_ERR_CONNACK_TIMEOUT: return "broker did not answer CONNECT in time";
    case MOAT_ERR_KEEPALIVE: return "broker did not answer PINGREQ in time: link is dead";
    case MOAT_ERR_CLOSED: return "connection closed by the peer";
    case MOAT_ERR_IO: return "transport I/O error";
    case MOAT_ERR_TOO_LARGE: return "message larger than the receive buffer";
    case MOAT_ERR_SUBACK_FAILURE: return "broker refused a subscription";
    case MOAT_ERR_QOS: return "QoS must be 0, 1 or 2";
    case MOAT_ERR_WINDOW_FULL: return "in-flight window or store is full";
    case MOAT_ERR_RESOLVE: return "host name lookup failed";
    case MOAT_ERR_CONNECT: return "TCP connection refused or unreachable";
    case MOAT_ERR_TIMEOUT: return "operation timed out";
    case MOAT_ERR_DROPPED: return "message discarded: the session was not kept";
    case MOAT_ERR_TLS: return "TLS failure";
    case MOAT_ERR_TLS_ALERT: return "the peer ended the TLS session with an alert";
    case MOAT_ERR_CERT_REFUSED: return "the peer refused our certificate";
    case MOAT_ERR_CERT_UNTRUSTED: return "peer certificate is not signed by the configured CA";
    case MOAT_ERR_CERT_EXPIRED: return "certificate has expired or is not valid yet";
    case MOAT_ERR_CERT_HOST: return "peer certificate does not name the host";
    case MOAT_ERR_CERT_INVALID: return "peer certificate refused";
    case MOAT_ERR_CERT_NONE: return "no client certificate configured";
    case MOAT_ERR_KEY_MISMATCH: return "client key does not match client certificate";
    case MOAT_ERR_CERT_FORMAT: return "certificate or key cannot be parsed";
    case MOAT_ERR_FILE: return "file cannot be read";
    case MOAT_ERR_CLOCK: return "clock is not valid: certificates cannot be checked yet";
    case MOAT_ERR_SNTP_TIMEOUT: return "time server did not answer (SNTP request timed out on every try)";
    case MOAT_ERR_SNTP_BAD_REPLY: return "malformed SNTP reply (length, mode, version or timestamps)";
    case MOAT_ERR_SNTP_NOT_OURS: return "datagram is not an answer to our SNTP request (originate timestamp differs): ignored";
    case MOAT_ERR_SNTP_UNSYNC: return "time server is not synchronised (leap alarm, stratum 16 or too uncertain)";
    case MOAT_ERR_SNTP_EARLY: return "time server gave a time before 2024-01-01 or the configured minimum: refused";
    case MOAT_ERR_SNTP_KOD: return "time server sent a kiss-o'-death: backing off";
    case MOAT_ERR_SNTP_RATE: return "time server sent kiss-o'-death RATE (asking too often): backing off";
    case MOAT_ERR_SNTP_DENY: return "time server refused access (kiss-o'-death DENY or RSTR): stopped asking it";
    case MOAT_ERR_OTA_MAGIC: return "image does not start with \"MOAT\": not a moat image";
    case MOAT_ERR_OTA_FORMAT: return "image header is malformed or of an unknown format version";
    case MOAT_ERR_OTA_PRODUCT: return "image is made for another product";
    case MOAT_ERR_OTA_DOWNGRADE: return "image is older than what runs (lower security counter, or same counter and older version): refused";
    case MOAT_ERR_OTA_KEY: return "image is signed by a key the device does not trust";
    case MOAT_ERR_OTA_ROTATION: return "a key rotation record in the image does not verify";
    case MOAT_ERR_OTA_SIGNATURE: return "image signature does not verify";
    case MOAT_ERR_OTA_HASH: return "payload SHA-256 does not match the image header: payload changed";
    case MOAT_ERR_OTA_TRUNCATED: return "image is truncated: it ended before its last byte";
    case MOAT_ERR_OTA_TOO_LARGE: return "image payload is larger than the slot";
    case MOAT_ERR_SNTP_LATE: return "time server gave a time after the configured maximum (an answer from another era?): refused";
    default: return "unknown error";
    }
}
