/*
 * ota_cmd.c - the firmware signing commands of `moat`: keygen, keyrotate,
 * sign, image info and image verify (docs/OTA-IMAGE.md).
 *
 * Images are encoded with the core's header codec and checked with the
 * device's own verifier (moat/ota.h over moat_ota_crypto_mbedtls), so what
 * `moat image verify` says is exactly what a device would decide.
 * Signatures are deterministic ECDSA (RFC 6979) over SHA-256.
 */
#include "cli.h"
#include "keys.h"
#include "ota_cmd.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ecdsa.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>

#include "moat/ota.h"

#define OPT_END {NULL, CLI_OPT_FLAG, NULL}

static int parse_or_help(int argc, char **argv, const cli_opt *opts, const char **pos,
                         int max_pos, int *npos, const char *cmd, const char *usage)
{
    int rc = cli_parse(argc, argv, opts, pos, max_pos, npos, cmd);
    if (rc == CLI_HELP)
        fputs(usage, stdout);
    return rc;
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static void key_id_of(const uint8_t pub[MOAT_OTA_PUB_SIZE], uint8_t id[MOAT_OTA_KEY_ID_SIZE])
{
    uint8_t d[32];
    mbedtls_sha256_ret(pub, MOAT_OTA_PUB_SIZE, d, 0);
    memcpy(id, d, MOAT_OTA_KEY_ID_SIZE);
}

/* The raw public point of a P-256 key pair, or an error naming path. */
static int p256_pub(mbedtls_pk_context *pk, const char *path, uint8_t pub[MOAT_OTA_PUB_SIZE])
{
    size_t olen = 0;
    if (!mbedtls_pk_can_do(pk, MBEDTLS_PK_ECKEY) ||
        mbedtls_pk_ec(*pk)->grp.id != MBEDTLS_ECP_DP_SECP256R1) {
        cli_error("%s is not an ECDSA P-256 key (moat images are signed with P-256)", path);
        return CLI_FAIL;
    }
    if (mbedtls_ecp_point_write_binary(&mbedtls_pk_ec(*pk)->grp, &mbedtls_pk_ec(*pk)->Q,
                                       MBEDTLS_ECP_PF_UNCOMPRESSED, &olen, pub,
                                       MOAT_OTA_PUB_SIZE) != 0 ||
        olen != MOAT_OTA_PUB_SIZE) {
        cli_error("cannot encode the public key of %s", path);
        return CLI_FAIL;
    }
    return CLI_OK;
}

static int load_signing_key(mbedtls_pk_context *pk, const char *path, const cli_pass_src *pass,
                            uint8_t pub[MOAT_OTA_PUB_SIZE])
{
    if (keys_load(pk, path, "signing key", pass) != CLI_OK)
        return CLI_FAIL;
    return p256_pub(pk, path, pub);
}

static int load_pub(const char *path, uint8_t pub[MOAT_OTA_PUB_SIZE])
{
    moat_err e = moat_ota_load_pub(path, pub);
    if (e == MOAT_ERR_FILE) {
        cli_error("cannot read public key %s", path);
        return CLI_FAIL;
    }
    if (e != MOAT_OK) {
        cli_error("%s is not an ECDSA P-256 public key (PEM or DER)", path);
        return CLI_FAIL;
    }
    return CLI_OK;
}

/* Deterministic ECDSA P-256 over SHA-256(data): raw r||s. */
static int sign(mbedtls_pk_context *pk, const uint8_t pub[MOAT_OTA_PUB_SIZE],
                const uint8_t *data, size_t len, uint8_t sig[MOAT_OTA_SIG_SIZE], cli_rng *rng)
{
    uint8_t digest[32];
    mbedtls_ecp_keypair *ec = mbedtls_pk_ec(*pk);
    mbedtls_mpi r, s;
    int ret;

    mbedtls_sha256_ret(data, len, digest, 0);
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    ret = mbedtls_ecdsa_sign_det_ext(&ec->grp, &r, &s, &ec->d, digest, sizeof digest,
                                     MBEDTLS_MD_SHA256, CLI_RNG_F, &rng->drbg);
    if (ret == 0)
        ret = mbedtls_mpi_write_binary(&r, sig, 32);
    if (ret == 0)
        ret = mbedtls_mpi_write_binary(&s, sig + 32, 32);
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    if (ret != 0) {
        cli_tls_error("sign with", "the signing key", ret);
        return CLI_FAIL;
    }
    /* Never hand out a signature that does not verify. */
    if (moat_ota_crypto_mbedtls.p256_verify(NULL, pub, digest, sig) != MOAT_OK) {
        cli_error("the signature just made does not verify: refusing to write it");
        return CLI_FAIL;
    }
    return CLI_OK;
}

static int parse_version(const char *s, moat_ota_version *v)
{
    unsigned long part[3];
    int i;
    for (i = 0; i < 3; i++) {
        char *end;
        if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
            return CLI_USAGE;
        part[i] = strtoul(s, &end, 10);
        if (part[i] > 65535 || (i < 2 && *end != '.') || (i == 2 && *end != '\0'))
            return CLI_USAGE;
        s = end + 1;
    }
    v->major = (uint16_t)part[0];
    v->minor = (uint16_t)part[1];
    v->patch = (uint16_t)part[2];
    return CLI_OK;
}

static int valid_product(const char *p)
{
    size_t n = strlen(p), i;
    if (n == 0 || n > MOAT_OTA_PRODUCT_MAX)
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
            return 0;
    return 1;
}

/* Firmware and images may be larger than the PKI files cli_read_file() is for. */
#define IMAGE_FILE_MAX (1024ul * 1024ul * 1024ul)

static int read_blob(const char *path, unsigned char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    long n;
    unsigned char *b;
    if (f == NULL) {
        cli_error("cannot read %s: %s", path, strerror(errno));
        return CLI_FAIL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        cli_error("cannot read %s: not a regular file", path);
        fclose(f);
        return CLI_FAIL;
    }
    if ((unsigned long)n > IMAGE_FILE_MAX) {
        cli_error("cannot read %s: larger than 1 GiB", path);
        fclose(f);
        return CLI_FAIL;
    }
    b = malloc(n > 0 ? (size_t)n : 1u);
    if (b == NULL || (n > 0 && fread(b, 1, (size_t)n, f) != (size_t)n)) {
        cli_error("cannot read %s: %s", path, b == NULL ? "out of memory" : "read error");
        free(b);
        fclose(f);
        return CLI_FAIL;
    }
    fclose(f);
    *out = b;
    *len = (size_t)n;
    return CLI_OK;
}

/* ---- keygen ---- */

static const char usage_keygen[] =
    "usage: moat keygen <name> [options]\n"
    "Makes an ECDSA P-256 firmware signing key: <name>.pem (private, 0600) and\n"
    "<name>.pub (public, for devices and `moat image verify`), and prints its key id.\n"
    "  --encrypt            encrypt <name>.pem with a passphrase\n"
    "  --passphrase-file F  the passphrase: the first line of F (implies --encrypt)\n"
    "  --passphrase-env V   the passphrase: environment variable V (implies --encrypt)\n"
    "  --force              replace existing files\n";

static int cmd_keygen(int argc, char **argv)
{
    const char *pos[1], *pass_file = NULL, *pass_env = NULL;
    int npos, force = 0, encrypt = 0, rc;
    const cli_opt opts[] = {{"force", CLI_OPT_FLAG, &force},
                            {"encrypt", CLI_OPT_FLAG, &encrypt},
                            {"passphrase-file", CLI_OPT_VALUE, &pass_file},
                            {"passphrase-env", CLI_OPT_VALUE, &pass_env},
                            OPT_END};
    char pem_path[PATH_MAX], pub_path[PATH_MAX], pass[CLI_PASS_MAX], idhex[17];
    unsigned char buf[1024];
    uint8_t pub[MOAT_OTA_PUB_SIZE], id[MOAT_OTA_KEY_ID_SIZE];
    size_t pass_len = 0;
    mbedtls_pk_context pk;
    cli_rng rng;

    rc = parse_or_help(argc, argv, opts, pos, 1, &npos, "keygen", usage_keygen);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (npos != 1 || pos[0][0] == '\0') {
        cli_error("keygen: give the key's name (see --help)");
        return CLI_USAGE;
    }
    if (snprintf(pem_path, sizeof pem_path, "%s.pem", pos[0]) >= (int)sizeof pem_path ||
        snprintf(pub_path, sizeof pub_path, "%s.pub", pos[0]) >= (int)sizeof pub_path) {
        cli_error("keygen: name too long");
        return CLI_USAGE;
    }
    if (!force && (cli_file_exists(pem_path) || cli_file_exists(pub_path))) {
        cli_error("refusing to overwrite the existing key %s (use --force to replace it)",
                  cli_file_exists(pem_path) ? pem_path : pub_path);
        return CLI_FAIL;
    }
    encrypt = encrypt || pass_file != NULL || pass_env != NULL;
    if (encrypt) {
        cli_pass_src src = {pass_file, pass_env};
        if (cli_get_passphrase(&src, "the new signing key", 1, pass, sizeof pass, &pass_len) !=
            CLI_OK)
            return CLI_FAIL;
        if (pass_len < 8) {
            cli_error("the signing key passphrase must have at least 8 characters");
            return CLI_FAIL;
        }
    }
    rc = CLI_FAIL;
    mbedtls_pk_init(&pk);
    if (cli_rng_init(&rng) != CLI_OK)
        goto done;
    if (keys_generate(&pk, "p256", &rng) != CLI_OK || p256_pub(&pk, pem_path, pub) != CLI_OK)
        goto done;
    if (mbedtls_pk_write_pubkey_pem(&pk, buf, sizeof buf) != 0) {
        cli_error("cannot encode the public key for %s", pub_path);
        goto done;
    }
    if (keys_write(&pk, pem_path, NULL, encrypt ? pass : NULL, pass_len, force, &rng) != CLI_OK)
        goto done;
    if (cli_write_file(pub_path, buf, strlen((char *)buf), 0644, 1) != CLI_OK)
        goto done;
    key_id_of(pub, id);
    moat_ota_key_id_hex(id, idhex);
    printf("%s: private key (0600%s)\n%s: public key\nkey id %s\n", pem_path,
           encrypt ? ", encrypted" : "", pub_path, idhex);
    rc = CLI_OK;
done:
    mbedtls_platform_zeroize(pass, sizeof pass);
    mbedtls_pk_free(&pk);
    cli_rng_free(&rng);
    return rc;
}

/* ---- keyrotate ---- */

static const char usage_keyrotate[] =
    "usage: moat keyrotate --key OLD.pem --to NEW.pub -o FILE\n"
    "Writes a key-rotation record: NEW's public key, signed by OLD. `moat sign\n"
    "--rotation FILE` puts it into images signed with NEW, so devices that still\n"
    "trust only OLD take them, and trust NEW from then on. OLD can be retired\n"
    "once the record is made.\n"
    "  --passphrase-file F  passphrase of an encrypted OLD.pem: the first line of F\n"
    "  --passphrase-env V   ... or environment variable V\n";

static int make_rotation(mbedtls_pk_context *old, const uint8_t old_pub[MOAT_OTA_PUB_SIZE],
                         const uint8_t new_pub[MOAT_OTA_PUB_SIZE], moat_ota_rotation *r,
                         cli_rng *rng)
{
    uint8_t body[MOAT_OTA_ROTATION_SIGNED];
    key_id_of(old_pub, r->old_key_id);
    key_id_of(new_pub, r->new_key_id);
    memcpy(r->new_key, new_pub, MOAT_OTA_PUB_SIZE);
    if (memcmp(r->old_key_id, r->new_key_id, MOAT_OTA_KEY_ID_SIZE) == 0) {
        cli_error("a key cannot rotate to itself");
        return CLI_FAIL;
    }
    moat_ota_rotation_signed_bytes(r, body);
    return sign(old, old_pub, body, sizeof body, r->sig, rng);
}

static void rotation_bytes(const moat_ota_rotation *r, uint8_t out[MOAT_OTA_ROTATION_SIZE])
{
    moat_ota_rotation_signed_bytes(r, out);
    memcpy(out + MOAT_OTA_ROTATION_SIGNED, r->sig, MOAT_OTA_SIG_SIZE);
}

static int cmd_keyrotate(int argc, char **argv)
{
    const char *key = NULL, *to = NULL, *out = NULL, *pass_file = NULL, *pass_env = NULL;
    const cli_opt opts[] = {{"key", CLI_OPT_VALUE, &key},
                            {"to", CLI_OPT_VALUE, &to},
                            {"out", CLI_OPT_VALUE, &out},
                            {"passphrase-file", CLI_OPT_VALUE, &pass_file},
                            {"passphrase-env", CLI_OPT_VALUE, &pass_env},
                            OPT_END};
    const char *pos[1];
    int npos, rc;
    uint8_t old_pub[MOAT_OTA_PUB_SIZE], new_pub[MOAT_OTA_PUB_SIZE];
    uint8_t bytes[MOAT_OTA_ROTATION_SIZE];
    char a[17], b[17];
    moat_ota_rotation r;
    mbedtls_pk_context pk;
    cli_pass_src src = {NULL, NULL};
    cli_rng rng;

    for (rc = 0; rc < argc; rc++) /* -o is the one short option */
        if (strcmp(argv[rc], "-o") == 0)
            argv[rc] = "--out";
    rc = parse_or_help(argc, argv, opts, pos, 0, &npos, "keyrotate", usage_keyrotate);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (key == NULL || to == NULL || out == NULL) {
        cli_error("keyrotate: --key, --to and -o are required (see --help)");
        return CLI_USAGE;
    }
    src.file = pass_file;
    src.env = pass_env;
    rc = CLI_FAIL;
    mbedtls_pk_init(&pk);
    if (cli_rng_init(&rng) != CLI_OK || load_signing_key(&pk, key, &src, old_pub) != CLI_OK ||
        load_pub(to, new_pub) != CLI_OK || make_rotation(&pk, old_pub, new_pub, &r, &rng) != CLI_OK)
        goto done;
    rotation_bytes(&r, bytes);
    if (cli_write_file(out, bytes, sizeof bytes, 0644, 1) != CLI_OK)
        goto done;
    moat_ota_key_id_hex(r.old_key_id, a);
    moat_ota_key_id_hex(r.new_key_id, b);
    printf("%s: key rotation %s -> %s\n", out, a, b);
    rc = CLI_OK;
done:
    mbedtls_pk_free(&pk);
    cli_rng_free(&rng);
    return rc;
}

/* ---- sign ---- */

static const char usage_sign[] =
    "usage: moat sign --key K.pem --product P --version X.Y.Z --counter N IN -o OUT\n"
    "Makes a signed moat image of the firmware IN (docs/OTA-IMAGE.md).\n"
    "  --key K.pem          the ECDSA P-256 signing key (moat keygen)\n"
    "  --product P          product id the image is for: 1-31 printable characters\n"
    "  --version X.Y.Z      semantic version, each part 0-65535\n"
    "  --counter N          security counter, 0-4294967295: devices refuse images\n"
    "                       whose counter is lower than the one they stored\n"
    "  --rotation FILE      add a key-rotation record made by `moat keyrotate`\n"
    "                       (repeatable, oldest first; the last must lead to K)\n"
    "  --rotate-to NEW.pub  add a record NEW signed by K: devices that trust K\n"
    "                       trust NEW once they take this image\n"
    "  -o, --out OUT        the image (written to a temporary file and renamed)\n"
    "  --passphrase-file F  passphrase of an encrypted K.pem: the first line of F\n"
    "  --passphrase-env V   ... or environment variable V\n";

static int read_rotation(const char *path, moat_ota_rotation *r)
{
    unsigned char *text;
    size_t len;
    uint8_t hdr[MOAT_OTA_HEADER_FIXED + MOAT_OTA_ROTATION_SIZE];
    if (cli_read_file(path, &text, &len) != CLI_OK)
        return CLI_FAIL;
    if (len != MOAT_OTA_ROTATION_SIZE || memcmp(text, MOAT_OTA_ROTATION_TAG, 4) != 0) {
        cli_error("%s is not a key-rotation record (moat keyrotate writes them)", path);
        cli_free_file(text, len);
        return CLI_FAIL;
    }
    memset(hdr, 0, MOAT_OTA_HEADER_FIXED);
    hdr[10] = 1; /* a header with this one record, to read it with the core */
    memcpy(hdr + MOAT_OTA_HEADER_FIXED, text, len);
    cli_free_file(text, len);
    return moat_ota_rotation_get(hdr, sizeof hdr, 0, r) == MOAT_OK ? CLI_OK : CLI_FAIL;
}

static int cmd_sign(int argc, char **argv)
{
    const char *key = NULL, *product = NULL, *version = NULL, *counter = NULL, *out = NULL,
               *rotate_to = NULL, *pass_file = NULL, *pass_env = NULL;
    cli_list rotations;
    const cli_opt opts[] = {{"key", CLI_OPT_VALUE, &key},
                            {"product", CLI_OPT_VALUE, &product},
                            {"version", CLI_OPT_VALUE, &version},
                            {"counter", CLI_OPT_VALUE, &counter},
                            {"rotation", CLI_OPT_LIST, &rotations},
                            {"rotate-to", CLI_OPT_VALUE, &rotate_to},
                            {"out", CLI_OPT_VALUE, &out},
                            {"passphrase-file", CLI_OPT_VALUE, &pass_file},
                            {"passphrase-env", CLI_OPT_VALUE, &pass_env},
                            OPT_END};
    const char *pos[1];
    int npos, rc, i;
    unsigned long cnt;
    moat_ota_header h;
    moat_ota_rotation rot[MOAT_OTA_MAX_ROTATIONS];
    unsigned nrot = 0;
    uint8_t pub[MOAT_OTA_PUB_SIZE], hdr[MOAT_OTA_HEADER_MAX], *img = NULL;
    unsigned char *payload = NULL;
    size_t payload_len = 0, hlen = 0, need;
    char why[MOAT_OTA_ERROR_MAX], idhex[17];
    mbedtls_pk_context pk;
    cli_pass_src src = {NULL, NULL};
    cli_rng rng;

    memset(&rotations, 0, sizeof rotations);
    memset(&h, 0, sizeof h);
    for (i = 0; i < argc; i++)
        if (strcmp(argv[i], "-o") == 0)
            argv[i] = "--out";
    rc = parse_or_help(argc, argv, opts, pos, 1, &npos, "sign", usage_sign);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (key == NULL || product == NULL || version == NULL || counter == NULL || out == NULL ||
        npos != 1) {
        cli_error("sign: --key, --product, --version, --counter, -o and the firmware file are "
                  "required (see --help)");
        return CLI_USAGE;
    }
    if (!valid_product(product)) {
        cli_error("sign: --product must be 1 to 31 printable characters without spaces");
        return CLI_USAGE;
    }
    if (parse_version(version, &h.version) != CLI_OK) {
        cli_error("sign: --version '%s' is not MAJOR.MINOR.PATCH (each 0-65535)", version);
        return CLI_USAGE;
    }
    if (cli_parse_uint(counter, 0, 4294967295ul, "--counter", &cnt) != CLI_OK)
        return CLI_USAGE;
    if (rotations.n + (rotate_to != NULL) > (int)MOAT_OTA_MAX_ROTATIONS) {
        cli_error("sign: at most %u key-rotation records", MOAT_OTA_MAX_ROTATIONS);
        return CLI_USAGE;
    }
    strcpy(h.product, product);
    h.counter = (uint32_t)cnt;
    src.file = pass_file;
    src.env = pass_env;

    rc = CLI_FAIL;
    mbedtls_pk_init(&pk);
    if (cli_rng_init(&rng) != CLI_OK || load_signing_key(&pk, key, &src, pub) != CLI_OK)
        goto done;
    for (i = 0; i < rotations.n; i++)
        if (read_rotation(rotations.v[i], &rot[nrot++]) != CLI_OK)
            goto done;
    if (rotate_to != NULL) {
        uint8_t new_pub[MOAT_OTA_PUB_SIZE];
        if (load_pub(rotate_to, new_pub) != CLI_OK ||
            make_rotation(&pk, pub, new_pub, &rot[nrot++], &rng) != CLI_OK)
            goto done;
    }
    if (read_blob(pos[0], &payload, &payload_len) != CLI_OK)
        goto done;
    if (payload_len == 0 || payload_len > UINT32_MAX - MOAT_OTA_HEADER_MAX - MOAT_OTA_SIG_SIZE) {
        cli_error("%s: a firmware must have 1 byte to 4 GiB", pos[0]);
        goto done;
    }
    h.payload_size = (uint32_t)payload_len;
    mbedtls_sha256_ret(payload, payload_len, h.payload_sha256, 0);
    key_id_of(pub, h.key_id);
    if (moat_ota_header_encode(&h, rot, nrot, hdr, sizeof hdr, &hlen) != MOAT_OK) {
        cli_error("cannot encode the image header");
        goto done;
    }
    if (moat_ota_header_parse(hdr, hlen, &h, &need, why, sizeof why) != MOAT_OK) {
        cli_error("the key-rotation records do not form a chain: %s", why);
        goto done;
    }
    if (nrot > 0 && memcmp(rot[nrot - 1].new_key_id, h.key_id, MOAT_OTA_KEY_ID_SIZE) != 0 &&
        rotate_to == NULL) {
        moat_ota_key_id_hex(h.key_id, idhex);
        cli_error("the last key-rotation record does not lead to the signing key %s (key id %s)",
                  key, idhex);
        goto done;
    }
    img = malloc(hlen + MOAT_OTA_SIG_SIZE + payload_len);
    if (img == NULL) {
        cli_error("out of memory");
        goto done;
    }
    memcpy(img, hdr, hlen);
    if (sign(&pk, pub, hdr, hlen, img + hlen, &rng) != CLI_OK)
        goto done;
    memcpy(img + hlen + MOAT_OTA_SIG_SIZE, payload, payload_len);
    if (cli_write_file(out, img, hlen + MOAT_OTA_SIG_SIZE + payload_len, 0644, 1) != CLI_OK)
        goto done;
    moat_ota_key_id_hex(h.key_id, idhex);
    printf("%s: %s %u.%u.%u, security counter %lu, %zu bytes of payload, signed by key id %s",
           out, product, h.version.major, h.version.minor, h.version.patch, cnt, payload_len,
           idhex);
    if (nrot > 0)
        printf(", %u key-rotation record%s", nrot, nrot > 1 ? "s" : "");
    printf("\n");
    rc = CLI_OK;
done:
    free(img);
    free(payload);
    mbedtls_pk_free(&pk);
    cli_rng_free(&rng);
    return rc;
}

/* ---- image info / verify ---- */

/* A slot that keeps nothing: verifying a file needs the hash, not the bytes. */
static moat_err null_read(void *ctx, uint32_t off, void *buf, size_t len)
{
    (void)ctx;
    (void)off;
    memset(buf, 0xFF, len);
    return MOAT_OK;
}

static moat_err null_write(void *ctx, uint32_t off, const void *buf, size_t len)
{
    (void)ctx;
    (void)off;
    (void)buf;
    (void)len;
    return MOAT_OK;
}

static moat_err null_op(void *ctx)
{
    (void)ctx;
    return MOAT_OK;
}

typedef struct device_policy {
    const char *product;      /* NULL: the image's own */
    uint32_t counter;
    moat_ota_version running;
} device_policy;

/* Runs the device's verifier over the whole image; prints its words on failure. */
static moat_err run_verifier(const uint8_t *img, size_t len, const moat_ota_header *h,
                             const uint8_t (*keys)[MOAT_OTA_PUB_SIZE], int nkeys,
                             const device_policy *pol, moat_ota_result *res, char *why,
                             size_t why_cap)
{
    static uint8_t buf[MOAT_OTA_BUF_MAX];
    moat_flash_area none = {null_read, null_write, null_op, null_op, UINT32_MAX, NULL};
    moat_ota_config cfg;
    moat_ota v;
    moat_err e;

    memset(&cfg, 0, sizeof cfg);
    cfg.product = pol->product != NULL ? pol->product : h->product;
    cfg.keys[0] = keys[0];
    cfg.keys[1] = nkeys > 1 ? keys[1] : NULL;
    cfg.counter = pol->counter;
    cfg.running = pol->running;
    cfg.slot = &none;
    cfg.crypto = &moat_ota_crypto_mbedtls;
    cfg.buf = buf;
    cfg.buf_size = sizeof buf;
    e = moat_ota_init(&v, &cfg);
    if (e == MOAT_OK)
        e = moat_ota_feed(&v, img, len);
    if (e == MOAT_OK)
        e = moat_ota_finish(&v, res);
    snprintf(why, why_cap, "%s", moat_ota_error(&v));
    return e;
}

static const char usage_info[] =
    "usage: moat image info [--pub K.pub]... IMAGE\n"
    "Prints every header field and key-rotation record of a moat image, checks the\n"
    "payload's SHA-256, and with --pub whether the signature verifies with that key\n"
    "(directly or through the image's key-rotation records). Exit status 1 if a\n"
    "check fails.\n";

static const char usage_verify[] =
    "usage: moat image verify --pub K.pub [--pub K2.pub] [options] IMAGE\n"
    "Verifies IMAGE as a device that trusts the given keys would: structure,\n"
    "key-rotation records, signature and payload SHA-256. Exit status 0 only if\n"
    "it would be installed.\n"
    "  --pub K.pub          a trusted public key (one or two)\n"
    "  --product P          the device's product id (default: the image's)\n"
    "  --counter N          the device's stored security counter (default 0)\n"
    "  --running X.Y.Z      the version the device runs (default 0.0.0)\n";

static int load_image(const char *path, unsigned char **img, size_t *len, moat_ota_header *h)
{
    size_t need;
    char why[MOAT_OTA_ERROR_MAX];
    moat_err e;
    if (read_blob(path, img, len) != CLI_OK)
        return CLI_FAIL;
    e = moat_ota_header_parse(*img, *len, h, &need, why, sizeof why);
    if (e != MOAT_OK) {
        cli_error("%s: %s", path, why);
        free(*img);
        *img = NULL;
        return CLI_FAIL;
    }
    return CLI_OK;
}

static int load_pubs(const cli_list *l, uint8_t (*keys)[MOAT_OTA_PUB_SIZE])
{
    int i;
    if (l->n > (int)MOAT_OTA_MAX_KEYS) {
        cli_error("at most %u --pub keys (a device trusts one or two)", MOAT_OTA_MAX_KEYS);
        return CLI_USAGE;
    }
    for (i = 0; i < l->n; i++)
        if (load_pub(l->v[i], keys[i]) != CLI_OK)
            return CLI_FAIL;
    return CLI_OK;
}

static int cmd_info(int argc, char **argv)
{
    cli_list pubs;
    const cli_opt opts[] = {{"pub", CLI_OPT_LIST, &pubs}, OPT_END};
    const char *pos[1];
    int npos, rc, bad = 0;
    unsigned i;
    unsigned char *img = NULL;
    size_t len = 0, body;
    moat_ota_header h;
    uint8_t keys[MOAT_OTA_MAX_KEYS][MOAT_OTA_PUB_SIZE], digest[32];
    char hx[65], a[17], b[17], why[MOAT_OTA_ERROR_MAX];

    memset(&pubs, 0, sizeof pubs);
    rc = parse_or_help(argc, argv, opts, pos, 1, &npos, "image info", usage_info);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (npos != 1) {
        cli_error("image info: give the image file (see --help)");
        return CLI_USAGE;
    }
    if ((rc = load_pubs(&pubs, keys)) != CLI_OK)
        return rc;
    if (load_image(pos[0], &img, &len, &h) != CLI_OK)
        return CLI_FAIL;
    printf("image:            %s (%zu bytes)\n", pos[0], len);
    printf("format:           %u\n", h.format);
    printf("header size:      %u\n", h.header_size);
    printf("product:          %s\n", h.product);
    printf("version:          %u.%u.%u\n", h.version.major, h.version.minor, h.version.patch);
    printf("security counter: %lu\n", (unsigned long)h.counter);
    printf("payload size:     %lu\n", (unsigned long)h.payload_size);
    hex(h.payload_sha256, 32, hx);
    printf("payload sha256:   %s\n", hx);
    moat_ota_key_id_hex(h.key_id, a);
    printf("key id:           %s\n", a);
    printf("flags:            0x%04x\n", h.flags);
    printf("rotation records: %u\n", h.rotations);
    for (i = 0; i < h.rotations; i++) {
        moat_ota_rotation r;
        moat_ota_rotation_get(img, len, i, &r);
        moat_ota_key_id_hex(r.old_key_id, a);
        moat_ota_key_id_hex(r.new_key_id, b);
        printf("  record %u:       key id %s -> key id %s\n", i + 1, a, b);
    }
    body = (size_t)h.header_size + MOAT_OTA_SIG_SIZE;
    if (len < body + h.payload_size) {
        printf("length:           TRUNCATED: %zu of %zu bytes\n", len, body + h.payload_size);
        bad = 1;
    } else if (len > body + h.payload_size) {
        printf("length:           %zu bytes after the end of the image\n",
               len - body - h.payload_size);
        bad = 1;
    } else {
        mbedtls_sha256_ret(img + body, h.payload_size, digest, 0);
        bad |= memcmp(digest, h.payload_sha256, 32) != 0;
        printf("payload hash:     %s\n", bad ? "DOES NOT MATCH the header" : "matches the header");
    }
    if (pubs.n == 0) {
        printf("signature:        not checked (give --pub KEY.pub)\n");
    } else if (!bad) {
        device_policy pol = {NULL, 0, {0, 0, 0}};
        moat_ota_result res;
        moat_err e = run_verifier(img, len, &h, (const uint8_t(*)[MOAT_OTA_PUB_SIZE])keys,
                                  pubs.n, &pol, &res, why, sizeof why);
        if (e == MOAT_OK) {
            moat_ota_key_id_hex(h.key_id, a);
            printf("signature:        verifies (key id %s)\n", a);
            if (res.rotated) {
                moat_ota_key_id_hex(res.new_key_id, b);
                printf("key rotation:     verifies: devices will trust key id %s\n", b);
            }
        } else {
            printf("signature:        DOES NOT VERIFY: %s\n", why);
            bad = 1;
        }
    }
    free(img);
    return bad ? CLI_FAIL : CLI_OK;
}

static int cmd_verify(int argc, char **argv)
{
    cli_list pubs;
    const char *product = NULL, *counter = NULL, *running = NULL;
    const cli_opt opts[] = {{"pub", CLI_OPT_LIST, &pubs},
                            {"product", CLI_OPT_VALUE, &product},
                            {"counter", CLI_OPT_VALUE, &counter},
                            {"running", CLI_OPT_VALUE, &running},
                            OPT_END};
    const char *pos[1];
    int npos, rc;
    unsigned char *img = NULL;
    size_t len = 0;
    unsigned long cnt = 0;
    moat_ota_header h;
    moat_ota_result res;
    device_policy pol = {NULL, 0, {0, 0, 0}};
    uint8_t keys[MOAT_OTA_MAX_KEYS][MOAT_OTA_PUB_SIZE];
    char why[MOAT_OTA_ERROR_MAX], a[17];
    moat_err e;

    memset(&pubs, 0, sizeof pubs);
    rc = parse_or_help(argc, argv, opts, pos, 1, &npos, "image verify", usage_verify);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (npos != 1 || pubs.n == 0) {
        cli_error("image verify: give --pub KEY.pub and the image file (see --help)");
        return CLI_USAGE;
    }
    if (product != NULL && !valid_product(product)) {
        cli_error("image verify: --product must be 1 to 31 printable characters");
        return CLI_USAGE;
    }
    if (counter != NULL && cli_parse_uint(counter, 0, 4294967295ul, "--counter", &cnt) != CLI_OK)
        return CLI_USAGE;
    if (running != NULL && parse_version(running, &pol.running) != CLI_OK) {
        cli_error("image verify: --running '%s' is not MAJOR.MINOR.PATCH", running);
        return CLI_USAGE;
    }
    pol.product = product;
    pol.counter = (uint32_t)cnt;
    if ((rc = load_pubs(&pubs, keys)) != CLI_OK)
        return rc;
    if (load_image(pos[0], &img, &len, &h) != CLI_OK)
        return CLI_FAIL;
    e = run_verifier(img, len, &h, (const uint8_t(*)[MOAT_OTA_PUB_SIZE])keys, pubs.n, &pol,
                     &res, why, sizeof why);
    free(img);
    if (e != MOAT_OK) {
        cli_error("%s: refused: %s", pos[0], why);
        return CLI_FAIL;
    }
    moat_ota_key_id_hex(h.key_id, a);
    printf("%s: ok: %s %u.%u.%u, security counter %lu, signed by key id %s\n", pos[0],
           h.product, h.version.major, h.version.minor, h.version.patch,
           (unsigned long)h.counter, a);
    if (res.rotated) {
        moat_ota_key_id_hex(res.new_key_id, a);
        printf("%s: key rotation verified: trust key id %s from now on\n", pos[0], a);
    }
    return CLI_OK;
}

static const char usage_image[] =
    "usage: moat image <info|verify> [options] IMAGE\n"
    "  info     print the header fields; check the hash, and the signature with --pub\n"
    "  verify   decide as a device would (--pub required)\n";

int cli_keygen_main(int argc, char **argv)
{
    return cmd_keygen(argc, argv);
}

int cli_keyrotate_main(int argc, char **argv)
{
    return cmd_keyrotate(argc, argv);
}

int cli_sign_main(int argc, char **argv)
{
    return cmd_sign(argc, argv);
}

int cli_image_main(int argc, char **argv)
{
    if (argc < 1) {
        fputs(usage_image, stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0) {
        fputs(usage_image, stdout);
        return CLI_OK;
    }
    if (strcmp(argv[0], "info") == 0)
        return cmd_info(argc - 1, argv + 1);
    if (strcmp(argv[0], "verify") == 0)
        return cmd_verify(argc - 1, argv + 1);
    cli_error("image: unknown command '%s' (info or verify)", argv[0]);
    return CLI_USAGE;
}
