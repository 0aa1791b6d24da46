/* The tensor unit's decoded-weight cache (wcache.c): weights that a DMA
 * copied unchanged from DRAM are decoded and repacked for the host kernel once
 * per content, not once per instruction. Purely a host speed-up: the bits,
 * cycles and counters of every run are those without it (docs/simulator.md,
 * "Decoded-weight cache"). */
#ifndef POLYMORPH_SIM_WCACHE_H
#define POLYMORPH_SIM_WCACHE_H

#include "sim_internal.h"

/* One engine's cache and its SRAM provenance records. */
typedef struct pm_wcache pm_wcache;

/* Where a B operand's bytes came from, and the shape they decode to: the
 * cache key. Filled by pm_wcache_lookup, passed back to pm_wcache_insert. */
typedef struct pm_wcache_key {
    uint64_t dram;        /* DRAM address of the operand's first byte */
    int64_t row_bytes;    /* 0: contiguous in DRAM; else DMA rows of this many bytes ... */
    int64_t row_stride;   /* ... this far apart in DRAM ... */
    uint64_t phase;       /* ... the operand starting this many bytes into a row */
    uint64_t bytes;       /* operand size */
    uint64_t n, k;
    uint32_t format;
    uint64_t header_dram;     /* NVFP4/IF4: where the tensor-scale header came from, when */
    uint64_t header_bytes;    /* a load of its own put it in front of the rows (else 0) */
    uint64_t dram_lo, dram_hi; /* every DRAM byte the operand may come from */
} pm_wcache_key;

/* Budget from POLYMORPH_WCACHE_MB (MiB, 0 = off; default 2048). */
PM_HIDDEN pm_wcache *pm_wcache_create(void);
PM_HIDDEN void pm_wcache_destroy(pm_wcache *wc);
PM_HIDDEN void pm_wcache_set_budget(pm_wcache *wc, uint64_t bytes);

/* A new run: host writes and program loads may have changed SRAM, so no
 * record survives; a program with `sw` (which writes SRAM without telling
 * this cache) runs without the cache. */
PM_HIDDEN void pm_wcache_run_begin(pm_wcache *wc, const pm_engine *e);
/* SRAM [lo, hi) of the engine is about to be written. */
PM_HIDDEN void pm_wcache_sram_written(pm_wcache *wc, uint64_t lo, uint64_t hi);
/* A dma.ld copied DRAM into SRAM with this descriptor (after the copy). */
PM_HIDDEN void pm_wcache_dma_loaded(pm_wcache *wc, uint64_t sram, uint64_t dram, int64_t row_bytes, int64_t rows,
                                    int64_t planes, int64_t sram_row_stride, int64_t sram_plane_stride,
                                    int64_t dram_row_stride, int64_t dram_plane_stride);
/* Whether one kept entry's DRAM footprint covers [lo, hi) in this run: a
 * load of those bytes is likely read only through the cache (shadow.c). */
PM_HIDDEN bool pm_wcache_covers(const pm_wcache *wc, uint64_t lo, uint64_t hi);
/* DRAM [addr, addr + n) is about to be written with src (pages reserved):
 * where the bytes change, every engine drops what came from them. */
PM_HIDDEN void pm_wcache_dram_write(pm_sim *sim, uint64_t addr, const void *src, size_t n);

/* What the cache holds for a B operand: panel-layout bf16 codes, or compact
 * panels (gemm_fast.h) where the format allows and they reproduce it. */
enum { PM_WCACHE_PANELS = 0, PM_WCACHE_COMPACT = 1, PM_WCACHE_COMPACT4 = 2 /* 4-bit codes */ };

/* Weights are kept from the second sighting of their key on (the first is
 * only remembered), so operands whose tiles take a new shape every token (a
 * KV cache streamed through the tensor unit) are never packed for nothing. */

/* The cached weights of the B operand at SRAM [b_off, b_off + bytes)
 * decoding to n x k in `format` (their kind in *kind), or NULL. *cacheable
 * says whether a miss may be filled (the bytes' DRAM origin is known and the
 * budget has room for bf16 panels); *key is then the key to fill it under. */
PM_HIDDEN const void *pm_wcache_lookup(pm_wcache *wc, uint64_t b_off, uint64_t bytes, uint32_t format, uint64_t n,
                                       uint64_t k, int *kind, pm_wcache_key *key, bool *cacheable);
/* Takes `data` (`bytes` long, from pm_wcache_alloc) into the cache; returns
 * it, or frees it and returns NULL when there is no room. */
PM_HIDDEN const void *pm_wcache_insert(pm_wcache *wc, const pm_wcache_key *key, int kind, void *data,
                                       uint64_t bytes);
/* 64-byte aligned, NULL when bytes is 0 or memory ran out. */
PM_HIDDEN void *pm_wcache_alloc(uint64_t bytes);

/* Compact panels (wpack.c): their size for n x k in `format` (0 when the
 * format has none; *nibbles: 4-bit codes), and building them from the operand's bytes `src`,
 * checked weight by weight against `codes` (n x k bf16, the decoder's):
 * false when any differs (then `out` is garbage). */
PM_HIDDEN bool pm_wcache_compact_allowed(const pm_wcache *wc);
PM_HIDDEN uint64_t pm_wpack_bytes(uint32_t format, uint64_t n, uint64_t k, bool *nibbles);
PM_HIDDEN bool pm_wpack_build(struct pm_gemm_pool *pool, uint32_t format, const uint8_t *src, uint64_t n, uint64_t k,
                              const uint16_t *codes, uint8_t *out);


/* One engine's cache (exec_tensor.c); NULL when it has none and create is
 * false, or when host memory ran out (the cache is never needed). */
PM_HIDDEN pm_wcache *pm_tensor_wcache(pm_engine *e, bool create);

PM_HIDDEN void pm_wcache_add_stats(const pm_wcache *wc, pm_wcache_stats *out);

#endif
