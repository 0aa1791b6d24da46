/* Polymorph base layer: status codes and the error context every layer fills.
 * Every fallible function returns a pm_status and, when given a pm_error,
 * leaves a one-line human message there naming where the problem is
 * (file:line:col, byte offset, instruction address, config field). */
#ifndef POLYMORPH_BASE_H
#define POLYMORPH_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pm_status {
    PM_OK = 0,
    PM_ERR_INVALID,     /* bad argument or malformed input */
    PM_ERR_NOMEM,       /* allocation failed */
    PM_ERR_IO,          /* file could not be read or written */
    PM_ERR_PARSE,       /* assembly / config / text syntax error */
    PM_ERR_CONFIG,      /* impossible or inconsistent configuration */
    PM_ERR_FORMAT,      /* malformed binary (program file, table, model) */
    PM_ERR_FAULT,       /* simulated engine fault (bounds, encoding, watchdog, deadlock) */
    PM_ERR_HAZARD,      /* missing synchronisation detected by the simulator */
    PM_ERR_UNSUPPORTED, /* valid request this build does not implement */
} pm_status;

#define PM_ERROR_MESSAGE_MAX 1024

typedef struct pm_error {
    pm_status status;
    char message[PM_ERROR_MESSAGE_MAX];
} pm_error;

/* Record an error (if err is non-NULL) and return status, so callers can write
 *   return pm_error_set(err, PM_ERR_INVALID, "%s:%d: bad thing", file, line);
 * Setting an error on an error that already holds one overwrites it. */
pm_status pm_error_set(pm_error *err, pm_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
pm_status pm_error_setv(pm_error *err, pm_status status, const char *fmt, va_list ap);

/* Prefix an existing message with context ("while loading x.pmp: ..."). */
void pm_error_prefix(pm_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void pm_error_clear(pm_error *err);
const char *pm_status_name(pm_status status);

/* A growing text buffer for generated text (disassembly, traces, docs).
 * Start from {0}; on allocation failure `failed` is set, later appends are
 * ignored and the caller reports it once. data is NUL-terminated when
 * non-NULL; free it with free() (or take ownership of it). */
typedef struct pm_text {
    char *data;
    size_t len, cap;
    int failed;
} pm_text;

void pm_text_printf(pm_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pm_text_append(pm_text *t, const char *s, size_t n);

/* Whole-file helpers used by tools and tests (not by the simulator). The
 * buffer is NUL-terminated for convenience; *len excludes the NUL. */
pm_status pm_read_file(const char *path, uint8_t **data, size_t *len, pm_error *err);
/* pm_read_file refuses directories, and reads a path that is not a regular
 * file (a pipe, a device such as /dev/zero) only up to this many bytes, so a
 * stream that never ends is an error instead of a hang. */
#define PM_READ_STREAM_MAX (256 << 20)
/* Writes atomically: to a temporary file beside path, then rename(), so a
 * failure never leaves a half-written result. */
pm_status pm_write_file_atomic(const char *path, const void *data, size_t len, pm_error *err);
/* Several result files, all or none: every file is first written to its
 * temporary name, and only when all of them succeeded are they renamed into
 * place. A destination that exists and is not a regular file (/dev/null,
 * /dev/stdout, a FIFO) is written directly at that point instead (a rename
 * would replace the device node); a directory is an error. */
pm_status pm_write_files_atomic(size_t count, const char *const *paths, const void *const *data, const size_t *lens,
                                pm_error *err);

#ifdef __cplusplus
}
#endif
#endif
