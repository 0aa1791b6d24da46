/* Bandwidth calendars: the DRAM channel (one per chip) and each engine's SRAM
 * port record, per span of cycles, how much of their per-cycle capacity is
 * already granted. A request is served from its start on at up to its own
 * rate out of what each cycle has left; grants are never taken back, so older
 * requests have priority (oldest-first, work-conserving arbitration), and the
 * result is deterministic because requests arrive in issue order. */
#include "sim_internal.h"

#include <stdlib.h>
#include <string.h>

void pm_timeline_clear(pm_timeline *tl, uint64_t capacity)
{
    tl->head = tl->count = 0;
    tl->capacity = capacity ? capacity : 1;
}

void pm_timeline_free(pm_timeline *tl)
{
    free(tl->busy);
    free(tl->scratch);
    memset(tl, 0, sizeof *tl);
}

void pm_timeline_forget(pm_timeline *tl, uint64_t cycle)
{
    while (tl->head < tl->count && tl->busy[tl->head].hi <= cycle) tl->head++;
    if (tl->head == tl->count) tl->head = tl->count = 0;
}

static pm_status grow(pm_span **p, size_t *cap, size_t need, pm_error *err)
{
    if (need <= *cap) return PM_OK;
    size_t n = *cap ? *cap : 16;
    while (n < need) n *= 2;
    pm_span *q = realloc(*p, n * sizeof *q);
    if (!q) return pm_error_set(err, PM_ERR_NOMEM, "out of host memory for a bandwidth calendar (%zu spans)", n);
    *p = q;
    *cap = n;
    return PM_OK;
}

/* Append a span to the rewrite, joined to the previous one when it continues it. */
static pm_status push(pm_timeline *tl, size_t *n, uint64_t lo, uint64_t hi, uint64_t used, pm_error *err)
{
    if (*n && tl->scratch[*n - 1].hi == lo && tl->scratch[*n - 1].used == used) {
        tl->scratch[*n - 1].hi = hi;
        return PM_OK;
    }
    pm_status st = grow(&tl->scratch, &tl->scratch_cap, *n + 1, err);
    if (st) return st;
    tl->scratch[(*n)++] = (pm_span){lo, hi, used};
    return PM_OK;
}

/* Join busy[k] and busy[k + 1] when they touch with the same grant. */
static void join(pm_timeline *tl, size_t k)
{
    if (k < tl->head || k + 1 >= tl->count) return;
    pm_span *a = &tl->busy[k], *b = a + 1;
    if (a->hi != b->lo || a->used != b->used) return;
    a->hi = b->hi;
    memmove(b, b + 1, (tl->count - k - 2) * sizeof *b);
    tl->count--;
}

pm_status pm_timeline_take(pm_timeline *tl, uint64_t at, uint64_t amount, uint64_t rate, uint64_t *first,
                           uint64_t *end, pm_error *err)
{
    *first = *end = at;
    if (!amount) return PM_OK;
    if (rate < 1) rate = 1;
    if (rate > tl->capacity) rate = tl->capacity;

    /* The first span that ends after `at` (spans are sorted by both ends). */
    size_t lo = tl->head, hi = tl->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tl->busy[mid].hi <= at) lo = mid + 1;
        else hi = mid;
    }
    const size_t i0 = lo;
    size_t i = i0, n = 0;
    pm_status st = PM_OK;

    /* Rewrite the cycles from `at` to the end of the request into scratch:
     * each piece is a stretch with one grant level before the request. The
     * calendar itself changes only once nothing can fail. */
    if (i < tl->count && tl->busy[i].lo < at) st = push(tl, &n, tl->busy[i].lo, at, tl->busy[i].used, err);
    uint64_t cur = at, left = amount;
    bool started = false;
    while (!st && left) {
        bool in_span = i < tl->count && tl->busy[i].lo <= cur;
        uint64_t piece_end = in_span ? tl->busy[i].hi : i < tl->count ? tl->busy[i].lo : UINT64_MAX;
        uint64_t used = in_span ? tl->busy[i].used : 0;
        uint64_t g = rate < tl->capacity - used ? rate : tl->capacity - used; /* granted per cycle */
        uint64_t stop = piece_end;
        if (g) {
            uint64_t need = pm_ceil_div(left, g);
            if (need <= piece_end - cur) stop = cur + need, left = 0;
            else left -= g * (piece_end - cur);
            if (!started) *first = cur, started = true;
        }
        st = push(tl, &n, cur, stop, used + g, err);
        cur = stop;
        if (in_span && cur == tl->busy[i].hi) i++;
    }
    /* The rest of a span the request ended inside keeps its grant. */
    if (!st && i < tl->count && tl->busy[i].lo < cur) st = push(tl, &n, cur, tl->busy[i].hi, tl->busy[i].used, err), i++;
    if (!st && tl->head && tl->count - (i - i0) + n > tl->cap) { /* reuse the forgotten prefix first */
        size_t h = tl->head;
        memmove(tl->busy, tl->busy + h, (tl->count - h) * sizeof *tl->busy);
        tl->count -= h;
        tl->head = 0;
        i -= h;
        lo = i0 - h;
    } else {
        lo = i0;
    }
    if (!st) st = grow(&tl->busy, &tl->cap, tl->count - (i - lo) + n, err);
    if (st) {
        *first = *end = at;
        return st;
    }
    *end = cur;

    /* Splice: busy[lo, i) becomes scratch[0, n); then join at both seams. */
    memmove(tl->busy + lo + n, tl->busy + i, (tl->count - i) * sizeof *tl->busy);
    memcpy(tl->busy + lo, tl->scratch, n * sizeof *tl->scratch);
    tl->count = tl->count - (i - lo) + n;
    join(tl, lo + n - 1);
    if (lo > tl->head) join(tl, lo - 1);
    return PM_OK;
}
