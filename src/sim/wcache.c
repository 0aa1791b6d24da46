/* The decoded-weight cache (wcache.h): records of which SRAM bytes a DMA
 * copied from which DRAM bytes, and decoded panels keyed by DRAM origin.
 * Correctness rests on two invariants: a live record's SRAM bytes equal its
 * DRAM bytes (any SRAM write over it, or a DRAM write that changes its
 * source, drops it), and a cached panel is the decode of its DRAM bytes as
 * they are now (a DRAM write that changes them drops it). */
#include "wcache.h"

#include "gemm_fast.h"

#include <stdlib.h>
#include <string.h>

/* Live DMA records per engine: enough for double-buffered weight, activation
 * and bias tiles; the oldest goes when a new one needs room. */
#define MAX_RECORDS 64
#define DEFAULT_BUDGET_MB 2048u

typedef struct record {
    uint64_t sram_lo, sram_hi; /* SRAM bytes the load wrote, contiguously */
    uint64_t dram;             /* DRAM address of sram_lo */
    int64_t row_bytes, row_stride; /* SRAM offset x comes from dram + (x / row_bytes) * row_stride + x % row_bytes */
    uint64_t dram_lo, dram_hi; /* footprint */
} record;

/* Keys seen once (wcache.h), as a set of their hashes: a marker never needs
 * dropping when bytes change (a fill always decodes the operand's current
 * bytes), and a hash collision only fills a key early. Cleared when full. */
#define MAX_SEEN_SLOTS ((size_t)1 << 17)

typedef struct entry {
    pm_wcache_key key;
    uint64_t hash, bytes;
    int kind; /* PM_WCACHE_* */
    void *data;
} entry;

struct pm_wcache {
    uint64_t budget, used; /* bytes of panels */
    bool compact;          /* may keep compact panels (POLYMORPH_WCACHE_COMPACT=0: never) */
    bool enabled;          /* this run may use the cache (no `sw` in the program) */
    record rec[MAX_RECORDS];
    unsigned rec_count;
    entry *ent;
    size_t ent_count, ent_cap;
    uint64_t *seen; /* hashes of keys sighted once; 0 = empty slot */
    size_t seen_cap, seen_count;
    uint32_t *slot; /* open addressing: entry index + 1, 0 = empty */
    size_t slot_cap; /* power of two, > 2 * ent_count */
    /* Every entry's DRAM footprint sorted by start, and the widest one: a
     * DRAM write finds the entries it may touch by binary search (stores of
     * activations and KV rows run between weight loads all the time). */
    struct footprint { uint64_t lo, hi; } *by_lo;
    size_t by_lo_cap;
    uint64_t widest;
    pm_wcache_stats stats;
};

static uint64_t budget_from_env(void)
{
    const char *s = getenv("POLYMORPH_WCACHE_MB");
    uint64_t mb = DEFAULT_BUDGET_MB;
    if (s && *s) {
        char *end = NULL;
        unsigned long long v = strtoull(s, &end, 10);
        if (end && *end == '\0' && v <= ((uint64_t)1 << 30)) mb = v; /* an unreadable value keeps the default */
    }
    return mb << 20;
}

pm_wcache *pm_wcache_create(void)
{
    pm_wcache *wc = calloc(1, sizeof *wc);
    if (!wc) return NULL;
    wc->budget = budget_from_env();
    const char *c = getenv("POLYMORPH_WCACHE_COMPACT");
    wc->compact = !(c && strcmp(c, "0") == 0);
    return wc;
}

static void drop_all_entries(pm_wcache *wc)
{
    for (size_t i = 0; i < wc->ent_count; i++) free(wc->ent[i].data);
    wc->ent_count = 0;
    wc->used = 0;
    wc->widest = 0;
    if (wc->slot) memset(wc->slot, 0, wc->slot_cap * sizeof *wc->slot);
}

void pm_wcache_destroy(pm_wcache *wc)
{
    if (!wc) return;
    drop_all_entries(wc);
    free(wc->ent);
    free(wc->slot);
    free(wc->by_lo);
    free(wc->seen);
    free(wc);
}

void pm_wcache_set_budget(pm_wcache *wc, uint64_t bytes)
{
    if (bytes < wc->used) drop_all_entries(wc);
    wc->budget = bytes;
    if (!bytes) wc->rec_count = 0, wc->enabled = false;
}

void pm_wcache_add_stats(const pm_wcache *wc, pm_wcache_stats *out)
{
    out->hits += wc->stats.hits;
    out->misses += wc->stats.misses;
    out->fills += wc->stats.fills;
    out->dropped += wc->stats.dropped;
    out->compact += wc->stats.compact;
    out->entries += wc->ent_count;
    out->bytes += wc->used;
}

/* ---- SRAM provenance ---- */

void pm_wcache_run_begin(pm_wcache *wc, const pm_engine *e)
{
    wc->rec_count = 0;
    wc->enabled = wc->budget > 0;
    for (uint32_t i = 0; wc->enabled && i < e->code_count; i++)
        if (e->code[i].opcode == PM_OP_SW) wc->enabled = false;
}

static bool overlaps(uint64_t a_lo, uint64_t a_hi, uint64_t b_lo, uint64_t b_hi) { return a_lo < b_hi && b_lo < a_hi; }

void pm_wcache_sram_written(pm_wcache *wc, uint64_t lo, uint64_t hi)
{
    unsigned kept = 0;
    for (unsigned i = 0; i < wc->rec_count; i++)
        if (!overlaps(wc->rec[i].sram_lo, wc->rec[i].sram_hi, lo, hi)) wc->rec[kept++] = wc->rec[i];
    wc->rec_count = kept;
}

/* Lowest and one-past-highest DRAM byte of `rows` rows of row_bytes, the
 * first at `first`, row_stride apart (any sign). */
static void row_span(uint64_t first, int64_t row_bytes, int64_t rows, int64_t row_stride, uint64_t *lo, uint64_t *hi)
{
    int64_t last = row_stride * (rows - 1);
    *lo = first + (uint64_t)(last < 0 ? last : 0);
    *hi = first + (uint64_t)(last > 0 ? last : 0) + (uint64_t)row_bytes;
}

void pm_wcache_dma_loaded(pm_wcache *wc, uint64_t sram, uint64_t dram, int64_t row_bytes, int64_t rows,
                          int64_t planes, int64_t sram_row_stride, int64_t sram_plane_stride,
                          int64_t dram_row_stride, int64_t dram_plane_stride)
{
    /* The SRAM the load wrote: the caller dropped records over its extent
     * already (pm_wcache_sram_written), so only the new record is left to add. */
    if (!wc->enabled) return;
    /* Recorded only when the SRAM side is one contiguous run and the DRAM
     * side a sequence of equal rows at one stride (planes folded in when they
     * continue that sequence): the forms a weight tile takes. */
    if (rows > 1 && sram_row_stride != row_bytes) return;
    if (planes > 1) {
        if (sram_plane_stride != row_bytes * rows || dram_plane_stride != dram_row_stride * rows) return;
        rows *= planes;
    }
    if (rows == 1) dram_row_stride = row_bytes;
    if (wc->rec_count == MAX_RECORDS) {
        memmove(wc->rec, wc->rec + 1, (MAX_RECORDS - 1) * sizeof *wc->rec);
        wc->rec_count--;
    }
    record *r = &wc->rec[wc->rec_count++];
    r->sram_lo = sram;
    r->sram_hi = sram + (uint64_t)(row_bytes * rows);
    r->dram = dram;
    r->row_bytes = row_bytes;
    r->row_stride = dram_row_stride;
    row_span(dram, row_bytes, rows, dram_row_stride, &r->dram_lo, &r->dram_hi);
}

/* ---- the cache ---- */

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15u + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdu;
}

static uint64_t key_hash(const pm_wcache_key *k)
{
    uint64_t h = mix(0, k->dram);
    h = mix(h, (uint64_t)k->row_bytes);
    h = mix(h, (uint64_t)k->row_stride);
    h = mix(h, k->phase);
    h = mix(h, k->bytes);
    h = mix(h, k->n);
    h = mix(h, k->k);
    h = mix(h, k->header_dram);
    h = mix(h, k->header_bytes);
    return mix(h, k->format);
}

static bool key_equal(const pm_wcache_key *a, const pm_wcache_key *b)
{
    return a->dram == b->dram && a->row_bytes == b->row_bytes && a->row_stride == b->row_stride &&
           a->phase == b->phase && a->bytes == b->bytes && a->n == b->n && a->k == b->k && a->format == b->format &&
           a->header_dram == b->header_dram && a->header_bytes == b->header_bytes;
}

static entry *find(const pm_wcache *wc, const pm_wcache_key *key, uint64_t h)
{
    if (!wc->slot_cap) return NULL;
    for (size_t i = (size_t)h & (wc->slot_cap - 1);; i = (i + 1) & (wc->slot_cap - 1)) {
        uint32_t s = wc->slot[i];
        if (!s) return NULL;
        entry *e = &wc->ent[s - 1];
        if (e->hash == h && key_equal(&e->key, key)) return e;
    }
}

static void place(pm_wcache *wc, size_t index)
{
    size_t i = (size_t)wc->ent[index].hash & (wc->slot_cap - 1);
    while (wc->slot[i]) i = (i + 1) & (wc->slot_cap - 1);
    wc->slot[i] = (uint32_t)(index + 1);
}

/* Rebuilds the slots (after growth or removals); the sorted footprints are
 * kept up to date by insertion and removal themselves. */
static void reslot(pm_wcache *wc)
{
    memset(wc->slot, 0, wc->slot_cap * sizeof *wc->slot);
    for (size_t i = 0; i < wc->ent_count; i++) place(wc, i);
}

/* First footprint starting at or after lo. */
static size_t first_from(const pm_wcache *wc, uint64_t lo)
{
    size_t a = 0, b = wc->ent_count;
    while (a < b) {
        size_t mid = a + (b - a) / 2;
        if (wc->by_lo[mid].lo < lo) a = mid + 1;
        else b = mid;
    }
    return a;
}

/* Whether hash h was sighted before; remembers it when not. */
static bool seen_before(pm_wcache *wc, uint64_t h)
{
    h |= 1; /* 0 marks an empty slot */
    if (2 * (wc->seen_count + 1) > wc->seen_cap) {
        size_t cap = wc->seen_cap ? 2 * wc->seen_cap : 1024;
        uint64_t *t = cap <= MAX_SEEN_SLOTS ? calloc(cap, sizeof *t) : NULL;
        if (t) { /* grow and rehash */
            for (size_t i = 0; i < wc->seen_cap; i++) {
                uint64_t v = wc->seen[i];
                if (!v) continue;
                size_t j = (size_t)v & (cap - 1);
                while (t[j]) j = (j + 1) & (cap - 1);
                t[j] = v;
            }
            free(wc->seen);
            wc->seen = t;
            wc->seen_cap = cap;
        } else if (wc->seen_cap) { /* full at its largest (or no memory): forget them all */
            memset(wc->seen, 0, wc->seen_cap * sizeof *wc->seen);
            wc->seen_count = 0;
        } else {
            return true; /* no set at all: fill at once */
        }
    }
    size_t j = (size_t)h & (wc->seen_cap - 1);
    for (; wc->seen[j]; j = (j + 1) & (wc->seen_cap - 1))
        if (wc->seen[j] == h) return true;
    wc->seen[j] = h;
    wc->seen_count++;
    return false;
}

/* The DRAM origin of SRAM [lo, lo + bytes) when one live record covers it:
 * fills the key's dram, row_bytes, row_stride, phase and footprint. */
static bool origin(const pm_wcache *wc, uint64_t lo, uint64_t bytes, pm_wcache_key *key)
{
    const record *r = NULL;
    for (unsigned i = wc->rec_count; i-- > 0;)
        if (wc->rec[i].sram_lo <= lo && lo + bytes <= wc->rec[i].sram_hi) {
            r = &wc->rec[i];
            break;
        }
    if (!r) return false;
    uint64_t o = lo - r->sram_lo, rb = (uint64_t)r->row_bytes, row = o / rb;
    key->phase = o % rb;
    key->dram = r->dram + row * (uint64_t)r->row_stride + key->phase;
    key->row_bytes = key->row_stride = 0;
    if (r->row_stride == r->row_bytes || key->phase + bytes <= rb) {
        key->phase = 0; /* contiguous in DRAM: the rows' shape no longer matters */
        key->dram_lo = key->dram;
        key->dram_hi = key->dram + bytes;
    } else {
        key->row_bytes = r->row_bytes;
        key->row_stride = r->row_stride;
        int64_t rows = (int64_t)((key->phase + bytes + rb - 1) / rb);
        row_span(key->dram - key->phase, r->row_bytes, rows, r->row_stride, &key->dram_lo, &key->dram_hi);
    }
    return true;
}

const void *pm_wcache_lookup(pm_wcache *wc, uint64_t b_off, uint64_t bytes, uint32_t format, uint64_t n, uint64_t k,
                             int *kind, pm_wcache_key *key, bool *cacheable)
{
    *cacheable = false;
    if (!wc->enabled || !bytes) return NULL;
    memset(key, 0, sizeof *key);
    if (!origin(wc, b_off, bytes, key)) {
        /* A tensor-scale header loaded on its own in front of the rows (as
         * the kernels do, once per buffer): two origins, one key. */
        const pm_format_info *fi = pm_format_get((pm_format)format);
        uint64_t h = fi ? fi->header_bytes : 0;
        pm_wcache_key head;
        memset(&head, 0, sizeof head);
        if (!h || h >= bytes || !origin(wc, b_off, h, &head) || head.row_bytes ||
            !origin(wc, b_off + h, bytes - h, key))
            return NULL;
        key->header_dram = head.dram;
        key->header_bytes = h;
        if (head.dram_lo < key->dram_lo) key->dram_lo = head.dram_lo;
        if (head.dram_hi > key->dram_hi) key->dram_hi = head.dram_hi;
    }
    key->bytes = bytes;
    key->n = n;
    key->k = k;
    key->format = format;
    entry *e = find(wc, key, key_hash(key));
    if (e) {
        wc->stats.hits++;
        *kind = e->kind;
        return e->data;
    }
    wc->stats.misses++;
    if (!seen_before(wc, key_hash(key))) return NULL; /* first sighting: remembered only */
    size_t elems = pm_gemm_panel_elems((size_t)n, (size_t)k);
    *cacheable = elems && elems <= (wc->budget - wc->used) / 2;
    return NULL;
}

void *pm_wcache_alloc(uint64_t bytes)
{
    if (!bytes || bytes > SIZE_MAX - 64) return NULL;
    return aligned_alloc(64, ((size_t)bytes + 63) & ~(size_t)63);
}

const void *pm_wcache_insert(pm_wcache *wc, const pm_wcache_key *key, int kind, void *data, uint64_t bytes)
{
    if (!data || bytes > wc->budget - wc->used || wc->ent_count >= UINT32_MAX / 4) {
        free(data);
        return NULL;
    }
    if (wc->ent_count == wc->ent_cap) {
        size_t cap = wc->ent_cap ? 2 * wc->ent_cap : 64;
        entry *p = realloc(wc->ent, cap * sizeof *p);
        if (p) wc->ent = p;
        struct footprint *f = p ? realloc(wc->by_lo, cap * sizeof *f) : NULL;
        if (f) wc->by_lo = f;
        if (!p || !f) {
            free(data);
            return NULL;
        }
        wc->ent_cap = cap;
    }
    if (2 * (wc->ent_count + 1) >= wc->slot_cap) {
        size_t cap = wc->slot_cap ? 2 * wc->slot_cap : 256;
        uint32_t *s = calloc(cap, sizeof *s);
        if (!s) {
            free(data);
            return NULL;
        }
        free(wc->slot);
        wc->slot = s;
        wc->slot_cap = cap;
        reslot(wc);
    }
    entry *e = &wc->ent[wc->ent_count];
    e->key = *key;
    e->hash = key_hash(key);
    e->bytes = bytes;
    e->kind = kind;
    e->data = data;
    size_t at = first_from(wc, key->dram_lo);
    memmove(wc->by_lo + at + 1, wc->by_lo + at, (wc->ent_count - at) * sizeof *wc->by_lo);
    wc->by_lo[at] = (struct footprint){key->dram_lo, key->dram_hi};
    if (key->dram_hi - key->dram_lo > wc->widest) wc->widest = key->dram_hi - key->dram_lo;
    place(wc, wc->ent_count++);
    wc->used += bytes;
    wc->stats.fills++;
    if (kind != PM_WCACHE_PANELS) wc->stats.compact++;
    return data;
}

bool pm_wcache_covers(const pm_wcache *wc, uint64_t lo, uint64_t hi)
{
    if (!wc->enabled || !wc->ent_count) return false;
    /* Footprints starting at or before lo, nearest first; one that covers
     * [lo, hi) starts at most `widest` bytes before lo. */
    uint64_t floor = lo > wc->widest ? lo - wc->widest : 0;
    for (size_t i = first_from(wc, lo + 1); i-- > 0;) {
        if (wc->by_lo[i].lo < floor) break;
        if (wc->by_lo[i].hi >= hi) return true;
    }
    return false;
}

/* ---- DRAM writes ---- */

/* Would writing src over DRAM [addr, addr + n) change any byte? */
static bool dram_differs(const pm_sim *sim, uint64_t addr, const uint8_t *src, size_t n)
{
    while (n) {
        uint64_t page = addr >> PM_DRAM_PAGE_SHIFT, off = addr & (PM_DRAM_PAGE_BYTES - 1);
        size_t chunk = (size_t)(PM_DRAM_PAGE_BYTES - off);
        if (chunk > n) chunk = n;
        const uint8_t *old = sim->dram_pages[page];
        if (old) {
            if (memcmp(old + off, src, chunk)) return true;
        } else {
            for (size_t i = 0; i < chunk; i++)
                if (src[i]) return true;
        }
        src += chunk;
        addr += chunk;
        n -= chunk;
    }
    return false;
}

static bool touches(const pm_wcache *wc, uint64_t lo, uint64_t hi)
{
    for (unsigned i = 0; i < wc->rec_count; i++)
        if (overlaps(wc->rec[i].dram_lo, wc->rec[i].dram_hi, lo, hi)) return true;
    /* A footprint overlapping [lo, hi) starts before hi and at most `widest`
     * bytes before lo. */
    for (size_t i = first_from(wc, lo > wc->widest ? lo - wc->widest : 0); i < wc->ent_count; i++) {
        if (wc->by_lo[i].lo >= hi) break;
        if (wc->by_lo[i].hi > lo) return true;
    }
    return false;
}

static void drop_from(pm_wcache *wc, uint64_t lo, uint64_t hi)
{
    unsigned kept = 0;
    for (unsigned i = 0; i < wc->rec_count; i++)
        if (!overlaps(wc->rec[i].dram_lo, wc->rec[i].dram_hi, lo, hi)) wc->rec[kept++] = wc->rec[i];
    wc->rec_count = kept;
    size_t live = 0;
    for (size_t i = 0; i < wc->ent_count; i++) {
        entry *e = &wc->ent[i];
        if (overlaps(e->key.dram_lo, e->key.dram_hi, lo, hi)) {
            free(e->data);
            wc->used -= e->bytes;
            wc->stats.dropped++;
        } else {
            wc->ent[live++] = *e;
        }
    }
    if (live != wc->ent_count) {
        /* the same footprints leave the sorted list, which stays sorted */
        size_t kept_fp = 0;
        for (size_t i = 0; i < wc->ent_count; i++)
            if (!overlaps(wc->by_lo[i].lo, wc->by_lo[i].hi, lo, hi)) wc->by_lo[kept_fp++] = wc->by_lo[i];
        wc->ent_count = live;
        reslot(wc);
    }
}

void pm_wcache_dram_write(pm_sim *sim, uint64_t addr, const void *src, size_t n)
{
    if (!n) return;
    uint64_t hi = addr + n;
    int changed = -1; /* not compared yet */
    for (uint32_t i = 0; i < sim->cfg.engines; i++) {
        pm_wcache *wc = pm_tensor_wcache(&sim->engines[i], false);
        if (!wc || !touches(wc, addr, hi)) continue;
        /* Rewriting the same bytes (a host that uploads its weights again)
         * keeps what was decoded from them. */
        if (changed < 0) changed = dram_differs(sim, addr, src, n);
        if (!changed) return;
        drop_from(wc, addr, hi);
    }
}

bool pm_wcache_compact_allowed(const pm_wcache *wc) { return wc->compact; }
