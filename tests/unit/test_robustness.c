/* Robustness tests: hostile inputs to the base, runtime and CLI-facing
 * library entry points (paths that are directories or endless devices,
 * destinations that are not regular files, device misuse through the
 * runtime API). Each case must end in a clean pm_error naming the place,
 * never a hang, crash or half-written file. */
#define _POSIX_C_SOURCE 200809L
#include "polymorph/base.h"
#include "polymorph/runtime.h"
#include "test.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pm_robust_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        exit(1);
    }
}

static void tmp_path(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", tmpdir, name); }

/* ---- pm_read_file ---- */

TEST(read_file_directory_is_named)
{
    pm_error err = {0};
    uint8_t *data = (uint8_t *)"x";
    size_t len = 7;
    CHECK(pm_read_file(tmpdir, &data, &len, &err) == PM_ERR_IO);
    CHECK(data == NULL && len == 0);
    CHECK_MSG(strstr(err.message, tmpdir) && strstr(err.message, "is a directory"), "%s", err.message);
}

/* /dev/zero never ends: before the bound it was read until memory ran out. */
TEST(read_file_endless_stream_is_bounded)
{
    if (access("/dev/zero", R_OK) != 0) return;
    pm_error err = {0};
    uint8_t *data = NULL;
    size_t len = 0;
    CHECK(pm_read_file("/dev/zero", &data, &len, &err) == PM_ERR_IO);
    CHECK(data == NULL);
    CHECK_MSG(strstr(err.message, "/dev/zero: not a regular file and longer than 256 MiB"), "%s", err.message);
}

TEST(read_file_empty_stream_is_empty)
{
    if (access("/dev/null", R_OK) != 0) return;
    pm_error err = {0};
    uint8_t *data = NULL;
    size_t len = 9;
    CHECK(pm_read_file("/dev/null", &data, &len, &err) == PM_OK);
    CHECK(data && len == 0 && data[0] == 0);
    free(data);
}

TEST(read_file_missing_names_path)
{
    char p[512];
    tmp_path(p, sizeof p, "missing.bin");
    pm_error err = {0};
    uint8_t *data;
    size_t len;
    CHECK(pm_read_file(p, &data, &len, &err) == PM_ERR_IO);
    CHECK_MSG(strstr(err.message, p) && strstr(err.message, "cannot open"), "%s", err.message);
}

int main(void)
{
    make_tmpdir();
    RUN(read_file_directory_is_named);
    RUN(read_file_endless_stream_is_bounded);
    RUN(read_file_empty_stream_is_empty);
    RUN(read_file_missing_names_path);
    rmdir(tmpdir);
    return TEST_SUMMARY();
}
