/* The growing text buffer every generator of text shares (disassembler,
 * trace writer, doc and ROM generators): amortised doubling, one failure
 * flag instead of an error check after every append. */
#include "polymorph/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(pm_text *t, size_t extra)
{
    if (t->failed) return 0;
    if (t->data && t->cap - t->len > extra) return 1;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap - t->len <= extra) {
        if (cap > ((size_t)-1) / 2) {
            t->failed = 1;
            return 0;
        }
        cap *= 2;
    }
    char *d = realloc(t->data, cap);
    if (!d) {
        t->failed = 1;
        return 0;
    }
    t->data = d;
    t->cap = cap;
    return 1;
}

void pm_text_printf(pm_text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->failed = 1;
        return;
    }
    if (!reserve(t, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(t->data + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

void pm_text_append(pm_text *t, const char *s, size_t n)
{
    if (!reserve(t, n)) return;
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}
