/* First-fit address-range allocator: the logic behind pm_device_alloc (device
 * DRAM), also usable for any other address space. Live blocks are kept in one
 * array sorted by address, so the free space is exactly the gaps between
 * them: freeing a block coalesces with its neighbours by construction. */
#include "polymorph/runtime.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define PM_DEFAULT_ALIGN 64u

typedef struct pm_block {
    uint64_t addr;
    uint64_t size;
    uint32_t tag; /* 0 = allocation, otherwise the owner of a reservation */
} pm_block;

struct pm_allocator {
    uint64_t base, size; /* managed range [base, base + size) */
    pm_block *blocks;    /* sorted by addr, never overlapping */
    size_t count, cap;
    uint64_t used;
};

pm_status pm_allocator_create(uint64_t base, uint64_t size, pm_allocator **out, pm_error *err)
{
    *out = NULL;
    if (size == 0) return pm_error_set(err, PM_ERR_INVALID, "allocator: empty range");
    if (base + size < base)
        return pm_error_set(err, PM_ERR_INVALID, "allocator: range 0x%" PRIx64 " + 0x%" PRIx64 " wraps around",
                            base, size);
    pm_allocator *a = calloc(1, sizeof *a);
    if (!a) return pm_error_set(err, PM_ERR_NOMEM, "allocator: out of memory");
    a->base = base;
    a->size = size;
    *out = a;
    return PM_OK;
}

void pm_allocator_destroy(pm_allocator *a)
{
    if (!a) return;
    free(a->blocks);
    free(a);
}

static uint64_t range_end(const pm_allocator *a) { return a->base + a->size; }

/* Index of the first block whose addr >= addr (binary search). */
static size_t lower_bound(const pm_allocator *a, uint64_t addr)
{
    size_t lo = 0, hi = a->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a->blocks[mid].addr < addr) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static pm_status insert_block(pm_allocator *a, size_t at, pm_block b, pm_error *err)
{
    if (a->count == a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 16;
        pm_block *nb = realloc(a->blocks, ncap * sizeof *nb);
        if (!nb) return pm_error_set(err, PM_ERR_NOMEM, "allocator: out of memory");
        a->blocks = nb;
        a->cap = ncap;
    }
    memmove(a->blocks + at + 1, a->blocks + at, (a->count - at) * sizeof *a->blocks);
    a->blocks[at] = b;
    a->count++;
    a->used += b.size;
    return PM_OK;
}

static void remove_block(pm_allocator *a, size_t at)
{
    a->used -= a->blocks[at].size;
    memmove(a->blocks + at, a->blocks + at + 1, (a->count - at - 1) * sizeof *a->blocks);
    a->count--;
}

/* Aligned start of a request placed in the gap [lo, hi), or false if it does
 * not fit. Written with subtractions only, so nothing can wrap. */
static bool fit_in_gap(uint64_t lo, uint64_t hi, uint64_t bytes, uint64_t align, uint64_t *start)
{
    uint64_t mis = lo & (align - 1);
    uint64_t pad = mis ? align - mis : 0;
    if (hi < lo || hi - lo < pad || hi - lo - pad < bytes) return false;
    *start = lo + pad;
    return true;
}

pm_status pm_allocator_alloc(pm_allocator *a, uint64_t bytes, uint64_t align, uint64_t *addr, pm_error *err)
{
    if (align == 0) align = PM_DEFAULT_ALIGN;
    if (align & (align - 1))
        return pm_error_set(err, PM_ERR_INVALID, "alloc: alignment %" PRIu64 " is not a power of two", align);
    if (bytes == 0) return pm_error_set(err, PM_ERR_INVALID, "alloc: zero-byte request");
    uint64_t lo = a->base, start;
    for (size_t i = 0; i <= a->count; i++) {
        uint64_t hi = i < a->count ? a->blocks[i].addr : range_end(a);
        if (fit_in_gap(lo, hi, bytes, align, &start)) {
            pm_block b = {start, bytes, 0};
            pm_status st = insert_block(a, i, b, err);
            if (st == PM_OK) *addr = start;
            return st;
        }
        if (i < a->count) lo = a->blocks[i].addr + a->blocks[i].size;
    }
    return pm_error_set(err, PM_ERR_NOMEM,
                        "alloc: no free range of %" PRIu64 " bytes aligned to %" PRIu64
                        " (%" PRIu64 " of %" PRIu64 " bytes in use, largest free range %" PRIu64 ")",
                        bytes, align, a->used, a->size, pm_allocator_largest_free(a));
}

pm_status pm_allocator_free(pm_allocator *a, uint64_t addr, pm_error *err)
{
    size_t i = lower_bound(a, addr);
    if (i < a->count && a->blocks[i].addr == addr) {
        if (a->blocks[i].tag != 0)
            return pm_error_set(err, PM_ERR_INVALID,
                                "free: 0x%" PRIx64 " is reserved by a loaded program, not an allocation", addr);
        remove_block(a, i);
        return PM_OK;
    }
    if (i > 0) {
        const pm_block *p = &a->blocks[i - 1];
        if (addr - p->addr < p->size)
            return pm_error_set(err, PM_ERR_INVALID,
                                "free: 0x%" PRIx64 " is inside the %s at 0x%" PRIx64
                                " (free takes the start address)",
                                addr, p->tag ? "program reservation" : "allocation", p->addr);
    }
    return pm_error_set(err, PM_ERR_INVALID,
                        "free: 0x%" PRIx64 " is not a live allocation (already freed, or never allocated)", addr);
}

pm_status pm_allocator_reserve(pm_allocator *a, uint64_t addr, uint64_t bytes, uint32_t tag, pm_error *err)
{
    if (tag == 0) return pm_error_set(err, PM_ERR_INVALID, "reserve: owner tag must be non-zero");
    if (bytes == 0) return PM_OK; /* an empty range occupies nothing */
    if (addr < a->base || addr - a->base > a->size || a->size - (addr - a->base) < bytes)
        return pm_error_set(err, PM_ERR_INVALID,
                            "reserve: [0x%" PRIx64 ", +0x%" PRIx64 ") lies outside [0x%" PRIx64 ", 0x%" PRIx64 ")",
                            addr, bytes, a->base, range_end(a));
    size_t i = lower_bound(a, addr);
    const pm_block *clash = NULL;
    if (i > 0 && a->blocks[i - 1].addr + a->blocks[i - 1].size > addr) clash = &a->blocks[i - 1];
    else if (i < a->count && a->blocks[i].addr - addr < bytes) clash = &a->blocks[i];
    if (clash)
        return pm_error_set(err, PM_ERR_INVALID,
                            "reserve: [0x%" PRIx64 ", 0x%" PRIx64 ") collides with the %s [0x%" PRIx64
                            ", 0x%" PRIx64 ")",
                            addr, addr + bytes, clash->tag ? "program reservation" : "live allocation",
                            clash->addr, clash->addr + clash->size);
    pm_block b = {addr, bytes, tag};
    return insert_block(a, i, b, err);
}

size_t pm_allocator_release_tag(pm_allocator *a, uint32_t tag)
{
    if (tag == 0) return 0;
    size_t kept = 0, released = 0;
    for (size_t i = 0; i < a->count; i++) {
        if (a->blocks[i].tag == tag) {
            a->used -= a->blocks[i].size;
            released++;
        } else {
            a->blocks[kept++] = a->blocks[i];
        }
    }
    a->count = kept;
    return released;
}

uint64_t pm_allocator_used_bytes(const pm_allocator *a) { return a->used; }

size_t pm_allocator_block_count(const pm_allocator *a) { return a->count; }

uint64_t pm_allocator_largest_free(const pm_allocator *a)
{
    uint64_t lo = a->base, best = 0;
    for (size_t i = 0; i <= a->count; i++) {
        uint64_t hi = i < a->count ? a->blocks[i].addr : range_end(a);
        if (hi - lo > best) best = hi - lo;
        if (i < a->count) lo = a->blocks[i].addr + a->blocks[i].size;
    }
    return best;
}
