/* Robustness tests: hostile inputs to the base, runtime and CLI-facing
 * library entry points (paths that are directories or endless devices,
 * destinations that are not regular files, device misuse through the
 * runtime API). Each case must end in a clean pm_error naming the place,
 * never a hang, crash or half-written file. */
#define _POSIX_C_SOURCE 200809L
#include "polymorph/base.h"
#include "polymorph/runtime.h"
#include "test.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

/* ---- pm_write_file_atomic / pm_write_files_atomic ---- */

static bool exists(const char *path) { return access(path, F_OK) == 0; }

static size_t dir_entries(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    size_t n = 0;
    if (p) {
        if (fscanf(p, "%zu", &n) != 1) n = (size_t)-1;
        pclose(p);
    }
    return n;
}

/* Writing a result to /dev/null used to create /dev/null.tmp.PID and rename
 * it over the device node (as root, that replaced /dev/null with a regular
 * file). The test uses a FIFO of its own, so a regression cannot damage the
 * host: the destination must still be a FIFO afterwards and the reader must
 * have received the bytes. */
TEST(write_atomic_to_fifo_keeps_the_fifo)
{
    char fifo[512], got_path[512];
    tmp_path(fifo, sizeof fifo, "pipe");
    tmp_path(got_path, sizeof got_path, "received");
    if (mkfifo(fifo, 0600) != 0) return;
    pid_t child = fork();
    if (child == 0) { /* reader: copy whatever arrives into a file */
        FILE *in = fopen(fifo, "rb"), *out = fopen(got_path, "wb");
        int c;
        while (in && out && (c = fgetc(in)) != EOF) fputc(c, out);
        if (out) fclose(out); /* _exit does not flush stdio */
        _exit(0);
    }
    pm_error err = {0};
    CHECK_MSG(pm_write_file_atomic(fifo, "abc", 3, &err) == PM_OK, "%s", err.message);
    struct stat sb;
    bool still_fifo = stat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode);
    CHECK(still_fifo);
    if (!still_fifo) kill(child, SIGKILL); /* its FIFO is gone: it would wait forever */
    int status;
    waitpid(child, &status, 0);
    uint8_t *got = NULL;
    size_t len = 0;
    CHECK(pm_read_file(got_path, &got, &len, &err) == PM_OK && len == 3 && memcmp(got, "abc", 3) == 0);
    free(got);
    CHECK(dir_entries(tmpdir) == 2); /* no temporary file beside the FIFO */
    remove(fifo);
    remove(got_path);
}

TEST(write_atomic_to_directory_is_named)
{
    pm_error err = {0};
    CHECK(pm_write_file_atomic(tmpdir, "abc", 3, &err) == PM_ERR_IO);
    CHECK_MSG(strstr(err.message, tmpdir) && strstr(err.message, "is a directory"), "%s", err.message);
    CHECK(dir_entries(tmpdir) == 0);
}

TEST(write_atomic_missing_directory_leaves_nothing)
{
    char p[512];
    tmp_path(p, sizeof p, "no/such/dir/out.bin");
    pm_error err = {0};
    CHECK(pm_write_file_atomic(p, "abc", 3, &err) == PM_ERR_IO);
    CHECK_MSG(strstr(err.message, p) && strstr(err.message, "cannot create"), "%s", err.message);
    CHECK(dir_entries(tmpdir) == 0);
}

/* All or nothing: the second destination cannot be created, so the first
 * (which could) must not appear either, and no temporary file is left. */
TEST(write_files_all_or_none)
{
    char a[512], b[512];
    tmp_path(a, sizeof a, "a.bin");
    tmp_path(b, sizeof b, "missing/b.bin");
    const char *paths[2] = {a, b};
    const void *data[2] = {"aaaa", "bb"};
    size_t lens[2] = {4, 2};
    pm_error err = {0};
    CHECK(pm_write_files_atomic(2, paths, data, lens, &err) == PM_ERR_IO);
    CHECK_MSG(strstr(err.message, b), "%s", err.message);
    CHECK(!exists(a));
    CHECK(dir_entries(tmpdir) == 0);

    tmp_path(b, sizeof b, "b.bin");
    CHECK_MSG(pm_write_files_atomic(2, paths, data, lens, &err) == PM_OK, "%s", err.message);
    uint8_t *got;
    size_t len;
    CHECK(pm_read_file(a, &got, &len, &err) == PM_OK && len == 4 && memcmp(got, "aaaa", 4) == 0);
    free(got);
    CHECK(pm_read_file(b, &got, &len, &err) == PM_OK && len == 2 && memcmp(got, "bb", 2) == 0);
    free(got);
    CHECK(dir_entries(tmpdir) == 2);
    remove(a);
    remove(b);
}

/* ---- the device API with configs built in code ---- */

/* pm_device_open used to rely on the simulator's own, looser limits
 * (engines up to 4096), so a struct the config layer rejects (engines 1..64)
 * opened a device anyway. */
TEST(device_open_validates_the_config)
{
    pm_config cfg;
    pm_error err = {0};
    pm_device *dev = (pm_device *)&cfg;
    CHECK(pm_config_preset("edge", &cfg, &err) == PM_OK);
    cfg.engines = 100;
    cfg.dram_bytes = (uint64_t)1 << 40;
    CHECK(pm_device_open(&cfg, &dev, &err) == PM_ERR_CONFIG);
    CHECK(dev == NULL);
    CHECK_MSG(strstr(err.message, "device: edge: chip.engines: 100 is out of range (must be 1..64)"), "%s", err.message);

    pm_config_init_unset(&cfg);
    CHECK(pm_device_open(&cfg, &dev, &err) == PM_ERR_CONFIG);
    CHECK_MSG(strstr(err.message, "missing"), "%s", err.message);

    CHECK(pm_config_preset("fpga", &cfg, &err) == PM_OK);
    cfg.sram_bytes = 3; /* not a multiple of the port width */
    CHECK(pm_device_open(&cfg, &dev, &err) == PM_ERR_CONFIG);
    CHECK_MSG(strstr(err.message, "sram.bytes"), "%s", err.message);
}

/* pm_text: growth past the first block keeps every byte, stays NUL-terminated,
 * and printf and append agree with a reference built by snprintf. */
TEST(text_builder_grows_and_keeps_every_byte)
{
    pm_text t = {0};
    char ref[64];
    size_t expect = 0;
    for (int i = 0; i < 3000; i++) {
        int n = snprintf(ref, sizeof ref, "line %d: %x\n", i, (unsigned)(i * 2654435761u));
        if (i % 2) pm_text_printf(&t, "line %d: %x\n", i, (unsigned)(i * 2654435761u));
        else pm_text_append(&t, ref, (size_t)n);
        CHECK(!t.failed);
        CHECK(t.len == expect + (size_t)n);
        CHECK(memcmp(t.data + expect, ref, (size_t)n) == 0);
        CHECK(t.data[t.len] == '\0');
        expect += (size_t)n;
    }
    CHECK(t.cap > 4096 && t.len < t.cap);
    pm_text_append(&t, "", 0);
    CHECK(t.len == expect && t.data[t.len] == '\0');
    free(t.data);
}

int main(void)
{
    make_tmpdir();
    RUN(read_file_directory_is_named);
    RUN(read_file_endless_stream_is_bounded);
    RUN(read_file_empty_stream_is_empty);
    RUN(read_file_missing_names_path);
    RUN(write_atomic_to_fifo_keeps_the_fifo);
    RUN(write_atomic_to_directory_is_named);
    RUN(write_atomic_missing_directory_leaves_nothing);
    RUN(write_files_all_or_none);
    RUN(device_open_validates_the_config);
    RUN(text_builder_grows_and_keeps_every_byte);
    rmdir(tmpdir);
    return TEST_SUMMARY();
}
