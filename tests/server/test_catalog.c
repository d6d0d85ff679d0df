/*
 * test_catalog.c - moat-server's rules without HTTP: request paths (no
 * traversal, no listing), Range headers, curimage versions, the choice of
 * the next image, and the per-device product.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "catalog.h"

static void routes(void **state)
{
    (void)state;
    assert_int_equal(srv_route_path("/", "/firmware.bin"), SRV_ROUTE_FIRMWARE);
    assert_int_equal(srv_route_path("/", "/config.json"), SRV_ROUTE_CONFIG);
    assert_int_equal(srv_route_path("/fw/", "/fw/firmware.bin"), SRV_ROUTE_FIRMWARE);
    assert_int_equal(srv_route_path("/fw/", "/fw//firmware.bin"), SRV_ROUTE_FIRMWARE);
    assert_int_equal(srv_route_path("/fw", "/fw/config.json"), SRV_ROUTE_CONFIG);
    assert_int_equal(srv_route_path("/a/b/", "//a//b/config.json"), SRV_ROUTE_CONFIG);
    assert_int_equal(srv_route_path("/fw/", "/firmware.bin"), SRV_ROUTE_NONE);
    assert_int_equal(srv_route_path("/fw/", "/fwx/firmware.bin"), SRV_ROUTE_NONE);
    assert_int_equal(srv_route_path("/fw/", "/fw/"), SRV_ROUTE_NONE);
    assert_int_equal(srv_route_path("/", "/"), SRV_ROUTE_NONE);
    assert_int_equal(srv_route_path("/", "/images/a.bin"), SRV_ROUTE_NONE);
    assert_int_equal(srv_route_path("/", "/configs/x.json"), SRV_ROUTE_NONE);
    assert_int_equal(srv_route_path("/", "/ca.key"), SRV_ROUTE_NONE);
    assert_int_equal(srv_route_path("/", "/firmware.bin/"), SRV_ROUTE_FIRMWARE);
    /* traversal and odd bytes are refused, not resolved */
    assert_int_equal(srv_route_path("/fw/", "/fw/../firmware.bin"), SRV_ROUTE_BAD);
    assert_int_equal(srv_route_path("/", "/../../etc/passwd"), SRV_ROUTE_BAD);
    assert_int_equal(srv_route_path("/", "/./firmware.bin"), SRV_ROUTE_BAD);
    assert_int_equal(srv_route_path("/", "/a\\..\\b"), SRV_ROUTE_BAD);
    assert_int_equal(srv_route_path("/", "/%2e%2e/x"), SRV_ROUTE_BAD);
    assert_int_equal(srv_route_path("/", "/a b"), SRV_ROUTE_BAD);
    assert_int_equal(srv_route_path("/", "firmware.bin"), SRV_ROUTE_BAD);
    assert_int_equal(srv_route_path("/", NULL), SRV_ROUTE_BAD);
    /* dots inside a name are fine */
    assert_int_equal(srv_route_path("/", "/..firmware.bin"), SRV_ROUTE_NONE);
}

static void ranges(void **state)
{
    (void)state;
    uint64_t a = 0, b = 0;
    assert_int_equal(srv_parse_range(NULL, 10, &a, &b), SRV_RANGE_NONE);
    assert_int_equal(srv_parse_range("bytes=0-", 10, &a, &b), SRV_RANGE_OK);
    assert_true(a == 0 && b == 9);
    assert_int_equal(srv_parse_range("bytes=6-", 10, &a, &b), SRV_RANGE_OK);
    assert_true(a == 6 && b == 9);
    assert_int_equal(srv_parse_range("bytes=2-4", 10, &a, &b), SRV_RANGE_OK);
    assert_true(a == 2 && b == 4);
    assert_int_equal(srv_parse_range("bytes=2-400", 10, &a, &b), SRV_RANGE_OK);
    assert_true(a == 2 && b == 9);
    assert_int_equal(srv_parse_range("bytes=-3", 10, &a, &b), SRV_RANGE_OK);
    assert_true(a == 7 && b == 9);
    assert_int_equal(srv_parse_range("bytes=-30", 10, &a, &b), SRV_RANGE_OK);
    assert_true(a == 0 && b == 9);
    assert_int_equal(srv_parse_range("bytes=10-", 10, &a, &b), SRV_RANGE_UNSATISFIABLE);
    assert_int_equal(srv_parse_range("bytes=-0", 10, &a, &b), SRV_RANGE_UNSATISFIABLE);
    assert_int_equal(srv_parse_range("bytes=0-", 0, &a, &b), SRV_RANGE_UNSATISFIABLE);
    assert_int_equal(srv_parse_range("bytes=5-2", 10, &a, &b), SRV_RANGE_NONE);
    assert_int_equal(srv_parse_range("bytes=0-1,4-5", 10, &a, &b), SRV_RANGE_NONE);
    assert_int_equal(srv_parse_range("items=0-1", 10, &a, &b), SRV_RANGE_NONE);
    assert_int_equal(srv_parse_range("bytes=x-", 10, &a, &b), SRV_RANGE_NONE);
    assert_int_equal(srv_parse_range("bytes=99999999999999999999-", 10, &a, &b),
                     SRV_RANGE_NONE);
    assert_int_equal(srv_parse_range("bytes=1-2junk", 10, &a, &b), SRV_RANGE_NONE);
}

static void versions(void **state)
{
    (void)state;
    moat_ota_version v;
    assert_true(srv_parse_version("1.2.3", &v));
    assert_true(v.major == 1 && v.minor == 2 && v.patch == 3);
    assert_true(srv_parse_version("v10.0.65535", &v));
    assert_true(v.major == 10 && v.patch == 65535);
    assert_true(srv_parse_version("moat-agent-1.4.0.bin", &v));
    assert_true(v.major == 1 && v.minor == 4 && v.patch == 0);
    assert_true(srv_parse_version("fw_2.0.1", &v));
    assert_true(v.major == 2 && v.patch == 1);
    assert_false(srv_parse_version("", &v));
    assert_false(srv_parse_version("1.2", &v));
    assert_false(srv_parse_version("1.2.3.4", &v));
    assert_false(srv_parse_version("1.2.65536", &v));
    assert_false(srv_parse_version("latest", &v));
    assert_false(srv_parse_version("../../1.2.3", &v));
}

static void ids(void **state)
{
    (void)state;
    assert_true(srv_valid_id("a0b1c2d3e4f5"));
    assert_true(srv_valid_id("dev_1-A"));
    assert_false(srv_valid_id(""));
    assert_false(srv_valid_id("../x"));
    assert_false(srv_valid_id("a/b"));
    assert_false(srv_valid_id("a.b"));
    assert_false(srv_valid_id("a b"));
    assert_false(srv_valid_id("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")); /* 65 */
}

/* ---- a catalog in a temporary directory --------------------------------- */

static char dir[256], images[300];

static void image(const char *name, const char *product, uint16_t ma, uint16_t mi,
                  uint16_t pa, uint32_t counter, uint32_t payload)
{
    moat_ota_header h;
    uint8_t head[MOAT_OTA_HEADER_MAX], zero[256];
    size_t len;
    char path[512];
    FILE *f;
    uint32_t left = payload + MOAT_OTA_SIG_SIZE;
    memset(&h, 0, sizeof h);
    snprintf(h.product, sizeof h.product, "%s", product);
    h.version.major = ma;
    h.version.minor = mi;
    h.version.patch = pa;
    h.counter = counter;
    h.payload_size = payload;
    assert_int_equal(moat_ota_header_encode(&h, NULL, 0, head, sizeof head, &len), MOAT_OK);
    snprintf(path, sizeof path, "%s/%s", images, name);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(head, 1, len, f), len);
    memset(zero, 0, sizeof zero);
    while (left > 0) {
        uint32_t n = left > sizeof zero ? (uint32_t)sizeof zero : left;
        assert_int_equal(fwrite(zero, 1, n, f), n);
        left -= n;
    }
    assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "%s/moat-catalog.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(dir));
    snprintf(images, sizeof images, "%s/images", dir);
    assert_int_equal(mkdir(images, 0755), 0);
    return 0;
}

static int teardown(void **state)
{
    char cmd[600];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void pick(void **state)
{
    (void)state;
    srv_image img;
    char why[300], path[512], link[600];
    FILE *f;

    image("garden-1.0.0.bin", "garden", 1, 0, 0, 1, 100);
    image("garden-1.2.0.bin", "garden", 1, 2, 0, 1, 300);
    image("garden-1.1.0.bin", "garden", 1, 1, 0, 1, 200);
    image("pump-9.0.0.bin", "pump", 9, 0, 0, 1, 50);
    /* not images: skipped */
    snprintf(path, sizeof path, "%s/README", images);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("not an image\n", f);
    fclose(f);
    image(".hidden.bin", "garden", 7, 0, 0, 9, 10);
    image("garden-8.0.0.bin.tmp", "garden", 8, 0, 0, 9, 10);
    snprintf(path, sizeof path, "%s/images/garden-1.2.0.bin", dir);
    snprintf(link, sizeof link, "%s/garden-link.bin", images);
    assert_int_equal(symlink(path, link), 0);

    assert_int_equal(srv_pick_image(images, "garden", "1.0.0", &img, why, sizeof why),
                     SRV_PICK_IMAGE);
    assert_string_equal(img.name, "garden-1.2.0.bin");
    assert_int_equal(img.size, 128 + 64 + 300);
    assert_int_equal(srv_pick_image(images, "garden", "1.1.5", &img, why, sizeof why),
                     SRV_PICK_IMAGE);
    assert_int_equal(srv_pick_image(images, "garden", "1.2.0", &img, why, sizeof why),
                     SRV_PICK_CURRENT);
    assert_int_equal(srv_pick_image(images, "garden", "v2.0.0", &img, why, sizeof why),
                     SRV_PICK_CURRENT);
    assert_int_equal(srv_pick_image(images, "garden", "garden-1.2.0.bin", &img, why, sizeof why),
                     SRV_PICK_CURRENT);
    assert_int_equal(srv_pick_image(images, "garden", "garden-1.0.0.bin", &img, why, sizeof why),
                     SRV_PICK_IMAGE);
    assert_int_equal(srv_pick_image(images, "garden", "", &img, why, sizeof why),
                     SRV_PICK_IMAGE);
    assert_int_equal(srv_pick_image(images, "garden", NULL, &img, why, sizeof why),
                     SRV_PICK_IMAGE);
    assert_int_equal(srv_pick_image(images, "garden", "latest", &img, why, sizeof why),
                     SRV_PICK_BAD_CURIMAGE);
    assert_int_equal(srv_pick_image(images, "hose", "1.0.0", &img, why, sizeof why),
                     SRV_PICK_NO_PRODUCT);
    assert_string_equal(why, "no image for product 'hose'");
    assert_int_equal(srv_pick_image(images, "pump", "1.0.0", &img, why, sizeof why),
                     SRV_PICK_IMAGE);
    assert_string_equal(img.name, "pump-9.0.0.bin");

    /* an operator roll-back: an older build re-signed with a higher counter */
    image("garden-1.1.1-rollback.bin", "garden", 1, 1, 1, 2, 210);
    assert_int_equal(srv_pick_image(images, "garden", "garden-1.2.0.bin", &img, why, sizeof why),
                     SRV_PICK_IMAGE);
    assert_string_equal(img.name, "garden-1.1.1-rollback.bin");
    /* a device that says only its version keeps it: the server cannot know
     * its counter */
    assert_int_equal(srv_pick_image(images, "garden", "1.2.0", &img, why, sizeof why),
                     SRV_PICK_CURRENT);
}

static void truncated_image_is_skipped(void **state)
{
    (void)state;
    srv_image img;
    char why[300], path[512];
    image("short.bin", "garden", 1, 0, 0, 1, 100);
    snprintf(path, sizeof path, "%s/short.bin", images);
    assert_int_equal(truncate(path, 128 + 64 + 50), 0);
    assert_int_equal(srv_read_image(images, "short.bin", &img, why, sizeof why), -1);
    assert_non_null(strstr(why, "its header says"));
    assert_int_equal(srv_read_image(images, "../images/short.bin", &img, why, sizeof why), -1);
}

static void device_product(void **state)
{
    (void)state;
    char out[MOAT_OTA_PRODUCT_MAX + 1], why[300], path[512];
    FILE *f;
    snprintf(path, sizeof path, "%s/devices", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/devices/dev1.json", dir);
    f = fopen(path, "w");
    fputs("{\"product\": \"pump\", \"note\": \"x\"}", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/devices/dev2.json", dir);
    f = fopen(path, "w");
    fputs("{\"product\": 7}", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/devices/dev3.json", dir);
    f = fopen(path, "w");
    fputs("{\"product\": ", f);
    fclose(f);

    assert_int_equal(srv_device_product(dir, "dev1", "garden", out, why, sizeof why), 0);
    assert_string_equal(out, "pump");
    assert_int_equal(srv_device_product(dir, "dev9", "garden", out, why, sizeof why), 0);
    assert_string_equal(out, "garden");
    assert_int_equal(srv_device_product(dir, "dev9", NULL, out, why, sizeof why), -1);
    assert_int_equal(srv_device_product(dir, "dev2", "garden", out, why, sizeof why), -1);
    assert_non_null(strstr(why, "must be a string"));
    assert_int_equal(srv_device_product(dir, "dev3", "garden", out, why, sizeof why), -1);
    assert_int_equal(srv_device_product(dir, "../dev1", "garden", out, why, sizeof why), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(routes),
        cmocka_unit_test(ranges),
        cmocka_unit_test(versions),
        cmocka_unit_test(ids),
        cmocka_unit_test(pick),
        cmocka_unit_test(truncated_image_is_skipped),
        cmocka_unit_test(device_product),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
