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

pm_status pm_write_file_atomic(const char *path, const void *data, size_t len, pm_error *err)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    if (!tmp) return pm_error_set(err, PM_ERR_NOMEM, "%s: out of memory", path);
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        pm_status st = pm_error_set(err, PM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        free(tmp);
        return st;
    }
    size_t wrote = len ? fwrite(data, 1, len, f) : 0;
    int bad = (wrote != len) | (fflush(f) != 0);
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        free(tmp);
        return pm_error_set(err, PM_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    free(tmp);
    return PM_OK;
}
