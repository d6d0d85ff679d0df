/*
 * main.c - `moat`, the operator CLI: dispatches to the pki and
 * broker-config commands. See docs/moat-cli.md.
 */
#include "cli.h"
#include "ota_cmd.h"

#include <stdio.h>
#include <string.h>

#define MOAT_CLI_VERSION "0.1.0"

static const char usage[] =
    "usage: moat <command> [options]\n"
    "\n"
    "The moat operator tool.\n"
    "\n"
    "Commands:\n"
    "  pki init              make the CA\n"
    "  pki server <host>     broker certificate\n"
    "  pki device <id>       device key and certificate (PEM and DER)\n"
    "  pki operator <name>   operator key and certificate\n"
    "  pki sign <csr>        certificate for a key made on the device\n"
    "  pki list              every certificate with its expiry and status\n"
    "  pki revoke <id>       revoke, and rewrite the CRL\n"
    "  pki crl               rewrite the CRL with a fresh nextUpdate\n"
    "  broker-config         mosquitto.conf and ACL for the PKI\n"
    "  ota push <id> <image> send an update image to a device over MQTT\n"
    "  cert rotate <id>      new key (made on the device) and certificate for a device\n"
    "  keygen <name>         firmware signing key pair (ECDSA P-256)\n"
    "  keyrotate             key-rotation record: a new signing key, signed by the old\n"
    "  sign <firmware>       signed moat image (product, version, security counter)\n"
    "  image info <image>    every header field; the signature with --pub\n"
    "  image verify <image>  verify an image as a device would\n"
    "\n"
    "`moat <command> --help` describes each command; docs/moat-cli.md has it all.\n"
    "Exit status: 0 success, 1 runtime error, 2 usage error.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("moat %s\n", MOAT_CLI_VERSION);
        return CLI_OK;
    }
    int rc;
    if (strcmp(cmd, "pki") == 0) {
        rc = cli_pki_main(argc - 2, argv + 2);
    } else if (strcmp(cmd, "broker-config") == 0) {
        rc = cli_broker_config_main(argc - 2, argv + 2);
    } else if (strcmp(cmd, "ota") == 0) {
        rc = cli_ota_main(argc - 2, argv + 2);
    } else if (strcmp(cmd, "cert") == 0) {
        rc = cli_cert_main(argc - 2, argv + 2);
    } else if (strcmp(cmd, "keygen") == 0) {
        rc = cli_keygen_main(argc - 2, argv + 2);
    } else if (strcmp(cmd, "keyrotate") == 0) {
        rc = cli_keyrotate_main(argc - 2, argv + 2);
    } else if (strcmp(cmd, "sign") == 0) {
        rc = cli_sign_main(argc - 2, argv + 2);
    } else if (strcmp(cmd, "image") == 0) {
        rc = cli_image_main(argc - 2, argv + 2);
    } else {
        cli_error("unknown command '%s' (see moat --help)", cmd);
        rc = CLI_USAGE;
    }
    if (fflush(stdout) != 0 && rc == CLI_OK) {
        cli_error("cannot write to standard output");
        rc = CLI_FAIL;
    }
    return rc;
}
