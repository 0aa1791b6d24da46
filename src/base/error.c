/* Error context and whole-file I/O shared by every layer.
 * Messages are bounded; a message that does not fit is cut, never overflowed. */
#define _POSIX_C_SOURCE 200809L
#include "polymorph/base.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

pm_status pm_error_setv(pm_error *err, pm_status status, const char *fmt, va_list ap)
{
    if (err) {
        err->status = status;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
    }
    return status;
}

pm_status pm_error_set(pm_error *err, pm_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pm_error_setv(err, status, fmt, ap);
    va_end(ap);
    return status;
}

void pm_error_prefix(pm_error *err, const char *fmt, ...)
{
    if (!err) return;
    char prefix[PM_ERROR_MESSAGE_MAX];
    char old[PM_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof old);
    /* Cut explicitly (the message is bounded by design) rather than let
     * snprintf truncate, which gcc rightly warns about. */
    size_t plen = strnlen(prefix, sizeof prefix - 1);
    size_t olen = strnlen(old, sizeof old - 1);
    if (plen > sizeof err->message - 1) plen = sizeof err->message - 1;
    if (olen > sizeof err->message - 1 - plen) olen = sizeof err->message - 1 - plen;
    memcpy(err->message, prefix, plen);
    memcpy(err->message + plen, old, olen);
    err->message[plen + olen] = '\0';
}

void pm_error_clear(pm_error *err)
{
    if (!err) return;
    err->status = PM_OK;
    err->message[0] = '\0';
}

const char *pm_status_name(pm_status status)
{
    static const char *const names[] = {
        [PM_OK] = "ok",
        [PM_ERR_INVALID] = "invalid argument",
        [PM_ERR_NOMEM] = "out of memory",
        [PM_ERR_IO] = "i/o error",
        [PM_ERR_PARSE] = "parse error",
        [PM_ERR_CONFIG] = "configuration error",
        [PM_ERR_FORMAT] = "malformed file",
        [PM_ERR_FAULT] = "engine fault",
        [PM_ERR_HAZARD] = "hazard",
        [PM_ERR_UNSUPPORTED] = "unsupported",
    };
    if ((unsigned)status < sizeof names / sizeof names[0] && names[status]) return names[status];
    return "unknown status";
}

pm_status pm_read_file(const char *path, uint8_t **data, size_t *len, pm_error *err)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return pm_error_set(err, PM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    /* A directory opens fine and then fails to read with a vague error; say
     * what it is. A stream that is not a regular file (/dev/zero, a pipe)
     * may never end, so it is read up to a bound instead of until memory
     * runs out. */
    struct stat sb;
    bool regular = true;
    if (fstat(fileno(f), &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) {
            fclose(f);
            return pm_error_set(err, PM_ERR_IO, "%s: is a directory, not a file", path);
        }
        regular = S_ISREG(sb.st_mode);
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return pm_error_set(err, PM_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap && !regular && n >= PM_READ_STREAM_MAX) {
            if (fgetc(f) == EOF) break; /* exactly at the bound: complete */
            free(buf);
            fclose(f);
            return pm_error_set(err, PM_ERR_IO, "%s: not a regular file and longer than %d MiB; refusing to read on",
                                path, PM_READ_STREAM_MAX >> 20);
        }
        if (n == cap) {
            size_t ncap = cap * 2;
            uint8_t *nb = realloc(buf, ncap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return pm_error_set(err, PM_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f), e = errno;
    fclose(f);
    if (bad) {
        free(buf);
        return pm_error_set(err, PM_ERR_IO, "%s: read error: %s", path, strerror(e));
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return PM_OK;
}

/* One destination of pm_write_files_atomic: either a temporary file beside
 * it (renamed into place on commit) or, for an existing destination that is
 * not a regular file (/dev/null, /dev/stdout, a FIFO), a direct write on
 * commit: renaming over a device node would replace the device itself. */
typedef struct staged_file {
    char *tmp; /* NULL for a direct write */
} staged_file;

static pm_status write_stream(const char *open_path, const char *name, const void *data, size_t len, pm_error *err)
{
    FILE *f = fopen(open_path, "wb");
    if (!f) return pm_error_set(err, PM_ERR_IO, "%s: cannot create: %s", name, strerror(errno));
    size_t wrote = len ? fwrite(data, 1, len, f) : 0;
    int bad = (wrote != len) | (fflush(f) != 0);
    int e = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (bad) return pm_error_set(err, PM_ERR_IO, "%s: write failed: %s", name, strerror(e));
    return PM_OK;
}

static pm_status stage_file(const char *path, size_t index, const void *data, size_t len, staged_file *s,
                            pm_error *err)
{
    s->tmp = NULL;
    struct stat sb;
    if (stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return pm_error_set(err, PM_ERR_IO, "%s: is a directory, not a file", path);
        if (!S_ISREG(sb.st_mode)) return PM_OK; /* written directly on commit */
    }
    size_t cap = strlen(path) + 48;
    s->tmp = malloc(cap);
    if (!s->tmp) return pm_error_set(err, PM_ERR_NOMEM, "%s: out of memory", path);
    snprintf(s->tmp, cap, "%s.tmp.%ld.%zu", path, (long)getpid(), index);
    pm_status st = write_stream(s->tmp, path, data, len, err);
    if (st != PM_OK) {
        remove(s->tmp);
        free(s->tmp);
        s->tmp = NULL;
    }
    return st;
}

pm_status pm_write_files_atomic(size_t count, const char *const *paths, const void *const *data, const size_t *lens,
                                pm_error *err)
{
    if (count == 0) return PM_OK;
    staged_file *s = calloc(count, sizeof *s);
    if (!s) return pm_error_set(err, PM_ERR_NOMEM, "out of memory staging %zu files", count);
    pm_status st = PM_OK;
    size_t staged = 0;
    while (staged < count && st == PM_OK) {
        st = stage_file(paths[staged], staged, data[staged], lens[staged], &s[staged], err);
        if (st == PM_OK) staged++; /* a failed one cleans up after itself */
    }
    /* Commit only when every file is staged, so a failure leaves none. */
    for (size_t i = 0; i < staged && st == PM_OK; i++) {
        if (!s[i].tmp) st = write_stream(paths[i], paths[i], data[i], lens[i], err);
        else if (rename(s[i].tmp, paths[i]) != 0)
            st = pm_error_set(err, PM_ERR_IO, "%s: write failed: %s", paths[i], strerror(errno));
        else {
            free(s[i].tmp);
            s[i].tmp = NULL;
        }
    }
    for (size_t i = 0; i < staged; i++) {
        if (s[i].tmp) remove(s[i].tmp);
        free(s[i].tmp);
    }
    free(s);
    return st;
}

pm_status pm_write_file_atomic(const char *path, const void *data, size_t len, pm_error *err)
{
    return pm_write_files_atomic(1, &path, &data, &len, err);
}
