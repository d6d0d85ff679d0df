/*
 * moat/error.h - error values shared by every moat module.
 *
 * Every fallible moat function returns a moat_err. MOAT_OK is zero and every
 * error is negative, so a transport can return "n >= 0 bytes moved" or a
 * moat_err in the same signed value.
 */
#ifndef MOAT_ERROR_H
#define MOAT_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum moat_err {
    MOAT_OK = 0,
    MOAT_ERR_WOULD_BLOCK = -1,      /* no room or no data now; try again later */
    MOAT_ERR_ARG = -2,              /* invalid argument */
    MOAT_ERR_NO_SPACE = -3,         /* caller's buffer is too small */
    MOAT_ERR_STATE = -4,            /* not allowed in the current state */
    MOAT_ERR_MALFORMED = -5,        /* packet does not follow the format */
    MOAT_ERR_REMAINING_LENGTH = -6, /* remaining length over 4 bytes or inconsistent */
    MOAT_ERR_UTF8 = -7,             /* string is not valid UTF-8 or holds U+0000 */
    MOAT_ERR_TOPIC = -8,            /* topic name empty or holds a wildcard */
    MOAT_ERR_FILTER = -9,           /* topic filter misuses + or # */
    MOAT_ERR_PACKET_ID = -10,       /* packet identifier is zero */
    MOAT_ERR_FLAGS = -11,           /* reserved flag bits are wrong */
    MOAT_ERR_PROTOCOL = -12,        /* packet not allowed here */
    MOAT_ERR_CONNACK_VERSION = -13, /* broker: unacceptable protocol version */
    MOAT_ERR_CONNACK_ID = -14,      /* broker: client identifier rejected */
    MOAT_ERR_CONNACK_UNAVAILABLE = -15, /* broker: server unavailable */
    MOAT_ERR_CONNACK_CREDENTIALS = -16, /* broker: bad user name or password */
    MOAT_ERR_CONNACK_AUTH = -17,    /* broker: not authorised */
    MOAT_ERR_CONNACK_UNKNOWN = -18, /* broker: reserved CONNACK return code */
    MOAT_ERR_CONNACK_TIMEOUT = -19, /* no CONNACK in time */
    MOAT_ERR_KEEPALIVE = -20,       /* no PINGRESP in time: link is dead */
    MOAT_ERR_CLOSED = -21,          /* peer closed the connection */
    MOAT_ERR_IO = -22,              /* transport failure */
    MOAT_ERR_TOO_LARGE = -23,       /* message larger than the receive buffer */
    MOAT_ERR_SUBACK_FAILURE = -24,  /* broker refused a subscription */
    MOAT_ERR_QOS = -25,             /* QoS is not 0, 1 or 2 */
    MOAT_ERR_WINDOW_FULL = -26,     /* in-flight window or store is full */
    MOAT_ERR_RESOLVE = -27,         /* host name lookup failed */
    MOAT_ERR_CONNECT = -28,         /* TCP connection refused or unreachable */
    MOAT_ERR_TIMEOUT = -29,         /* operation timed out */
    MOAT_ERR_DROPPED = -30,         /* message discarded with a clean session */
    MOAT_ERR_TLS = -31,             /* TLS protocol or library failure */
    MOAT_ERR_TLS_ALERT = -32,       /* the peer ended the TLS session with an alert */
    MOAT_ERR_CERT_REFUSED = -33,    /* the peer refused our certificate */
    MOAT_ERR_CERT_UNTRUSTED = -34,  /* peer certificate not signed by the configured CA */
    MOAT_ERR_CERT_EXPIRED = -35,    /* a certificate is expired or not yet valid */
    MOAT_ERR_CERT_HOST = -36,       /* peer certificate does not name the host */
    MOAT_ERR_CERT_INVALID = -37,    /* peer certificate refused for another reason */
    MOAT_ERR_CERT_NONE = -38,       /* no client certificate or key configured */
    MOAT_ERR_KEY_MISMATCH = -39,    /* client key does not match the client certificate */
    MOAT_ERR_CERT_FORMAT = -40,     /* a certificate or key cannot be parsed */
    MOAT_ERR_FILE = -41,            /* a file cannot be read */
    MOAT_ERR_CLOCK = -42,           /* clock not valid: certificates cannot be checked */
    MOAT_ERR_SNTP_TIMEOUT = -43,    /* time server did not answer any try of a round */
    MOAT_ERR_SNTP_BAD_REPLY = -44,  /* SNTP reply malformed or inconsistent */
    MOAT_ERR_SNTP_NOT_OURS = -45,   /* datagram does not answer our request (nonce) */
    MOAT_ERR_SNTP_UNSYNC = -46,     /* time server is not synchronised */
    MOAT_ERR_SNTP_EARLY = -47,      /* time server's time is before 2024 (or the minimum) */
    MOAT_ERR_SNTP_KOD = -48,        /* time server sent a kiss-o'-death */
    MOAT_ERR_SNTP_RATE = -49,       /* kiss-o'-death RATE: poll less often */
    MOAT_ERR_SNTP_DENY = -50,       /* kiss-o'-death DENY or RSTR: access refused */
    MOAT_ERR_OTA_MAGIC = -51,        /* not a moat image (magic is not MOAT) */
    MOAT_ERR_OTA_FORMAT = -52,       /* image header malformed or of an unknown format */
    MOAT_ERR_OTA_PRODUCT = -53,      /* image made for another product id */
    MOAT_ERR_OTA_DOWNGRADE = -54,    /* image older than what runs (security counter or version) */
    MOAT_ERR_OTA_KEY = -55,          /* image signed by a key the device does not trust */
    MOAT_ERR_OTA_ROTATION = -56,     /* key rotation record signature does not verify */
    MOAT_ERR_OTA_SIGNATURE = -57,    /* image signature does not verify */
    MOAT_ERR_OTA_HASH = -58,         /* payload SHA-256 does not match the header */
    MOAT_ERR_OTA_TRUNCATED = -59,    /* image ended early */
    MOAT_ERR_OTA_TOO_LARGE = -60,    /* image payload larger than the slot */
    MOAT_ERR_SNTP_LATE = -61         /* time server's time is after the configured maximum */
} moat_err;

/* A short English sentence for an error value; never NULL. */
const char *moat_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
