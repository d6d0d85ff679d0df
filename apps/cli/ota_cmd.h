/*
 * ota_cmd.h - the firmware signing commands of `moat` (ota_cmd.c):
 * keygen, keyrotate, sign, image info / verify. See docs/OTA-IMAGE.md.
 */
#ifndef MOAT_CLI_OTA_CMD_H
#define MOAT_CLI_OTA_CMD_H

int cli_keygen_main(int argc, char **argv);
int cli_keyrotate_main(int argc, char **argv);
int cli_sign_main(int argc, char **argv);
int cli_image_main(int argc, char **argv);

#endif
