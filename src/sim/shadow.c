/* Deferred DMA copies ("shadows"): a dma.ld of weights the decoded-weight
 * cache already holds is timed and counted as usual, but its host copy waits
 * until something other than a cache-hitting tmm/tmma could see the SRAM
 * bytes, or until its DRAM source is about to change (docs/simulator.md). */
#include "sim_internal.h"

#include "gemm_fast.h"

#include <string.h>

/* A large load whose SRAM side is one contiguous run is copied in slices on
 * the tensor unit's host threads (reading DRAM pages is safe from any
 * thread, and the slices are disjoint). */
#define PARALLEL_LOAD_MIN_BYTES ((uint64_t)1 << 18)
#define LOAD_SLICE_BYTES ((uint64_t)1 << 16)

typedef struct load_job {
    const pm_sim *sim;
    uint8_t *sram;   /* destination of byte 0 */
    int64_t dram;    /* source of byte 0 */
    int64_t rb, drs; /* bytes per DRAM row, DRAM row stride (rows folded from planes) */
    uint64_t total;
} load_job;

static void load_slice(void *ctx, size_t task)
{
    const load_job *j = ctx;
    uint64_t lo = task * LOAD_SLICE_BYTES, hi = lo + LOAD_SLICE_BYTES < j->total ? lo + LOAD_SLICE_BYTES : j->total;
    while (lo < hi) {
        uint64_t row = lo / (uint64_t)j->rb, off = lo % (uint64_t)j->rb;
        uint64_t n = (uint64_t)j->rb - off < hi - lo ? (uint64_t)j->rb - off : hi - lo;
        pm_sim_dram_copy_out(j->sim, (uint64_t)(j->dram + (int64_t)row * j->drs) + off, j->sram + lo, (size_t)n);
        lo += n;
    }
}

void pm_dma_load_copy(pm_engine *e, const pm_dma_desc *d)
{
    pm_sim *sim = e->sim;
    int64_t rb = d->row_bytes, rows = d->rows, planes = d->planes;
    int64_t srs = d->sram_row_stride, sps = d->sram_plane_stride, drs = d->dram_row_stride, dps = d->dram_plane_stride;
    uint64_t total = (uint64_t)(rb * rows * planes);
    bool sram_contiguous = (rows == 1 || srs == rb) && (planes == 1 || sps == rb * rows);
    bool dram_rows = planes == 1 || dps == drs * rows; /* planes continue the rows */
    if (sim->gemm_pool && total >= PARALLEL_LOAD_MIN_BYTES && sram_contiguous && dram_rows) {
        load_job j = {sim, e->sram + d->sram, d->dram, rb, rows * planes > 1 ? drs : rb, total};
        pm_gemm_pool_for(sim->gemm_pool, (size_t)pm_ceil_div(total, LOAD_SLICE_BYTES), load_slice, &j);
        return;
    }
    for (int64_t p = 0; p < planes; p++)
        for (int64_t r = 0; r < rows; r++)
            pm_sim_dram_copy_out(sim, (uint64_t)(d->dram + p * dps + r * drs), e->sram + (d->sram + p * sps + r * srs),
                                 (size_t)rb);
}

/* The union of the live shadows' SRAM extents (empty: lo > hi never overlaps). */
static void rebound(pm_engine *e)
{
    e->shadow_lo = UINT64_MAX;
    e->shadow_hi = 0;
    for (uint32_t i = 0; i < e->shadow_count; i++) {
        if (e->shadow[i].sram_lo < e->shadow_lo) e->shadow_lo = e->shadow[i].sram_lo;
        if (e->shadow[i].sram_hi > e->shadow_hi) e->shadow_hi = e->shadow[i].sram_hi;
    }
}

/* Forget shadow i, copying it first unless `drop` (its bytes are about to
 * be overwritten whole). Order among shadows does not matter: they are
 * disjoint in SRAM, and none has had its DRAM source written. */
static void retire(pm_engine *e, uint32_t i, bool drop)
{
    pm_sim *sim = e->sim;
    pm_shadow *s = &e->shadow[i];
    if (drop) {
        sim->shadow_stats.dropped++;
    } else {
        pm_dma_load_copy(e, &s->d);
        sim->shadow_stats.copied++;
        sim->shadow_stats.copied_bytes += (uint64_t)(s->d.row_bytes * s->d.rows * s->d.planes);
    }
    memmove(s, s + 1, (e->shadow_count - i - 1) * sizeof *s);
    e->shadow_count--;
    sim->shadow_live--;
}

void pm_shadow_copy_sram(pm_engine *e, uint64_t lo, uint64_t hi)
{
    for (uint32_t i = e->shadow_count; i-- > 0;)
        if (e->shadow[i].sram_lo < hi && lo < e->shadow[i].sram_hi) retire(e, i, false);
    rebound(e);
}

void pm_shadow_copy_dram(pm_sim *sim, uint64_t lo, uint64_t hi)
{
    for (uint32_t k = 0; k < sim->cfg.engines; k++) {
        pm_engine *e = &sim->engines[k];
        if (!e->shadow_count) continue;
        bool any = false;
        for (uint32_t i = e->shadow_count; i-- > 0;)
            if (e->shadow[i].dram_lo < hi && lo < e->shadow[i].dram_hi) retire(e, i, false), any = true;
        if (any) rebound(e);
    }
}

/* A contiguous load over SRAM [lo, hi) writes every byte of it: a shadow
 * inside it is dropped uncopied, and a one-run shadow it covers the head or
 * the tail of keeps the rest (double-buffered tiles of unequal sizes reuse
 * their slot so). Any other overlap copies the shadow first. */
static void overwritten(pm_engine *e, uint32_t i, uint64_t lo, uint64_t hi, bool contiguous)
{
    pm_shadow *s = &e->shadow[i];
    bool one_run = s->d.rows == 1 && s->d.planes == 1;
    if (contiguous && lo <= s->sram_lo && s->sram_hi <= hi) {
        retire(e, i, true);
    } else if (contiguous && one_run && lo <= s->sram_lo) {
        uint64_t cut = hi - s->sram_lo; /* the head goes */
        s->d.sram += (int64_t)cut;
        s->d.dram += (int64_t)cut;
        s->d.row_bytes -= (int64_t)cut;
        s->sram_lo += cut;
        s->dram_lo += cut;
        e->sim->shadow_stats.trimmed++;
    } else if (contiguous && one_run && s->sram_hi <= hi) {
        uint64_t keep = lo - s->sram_lo; /* the tail goes */
        s->d.row_bytes = (int64_t)keep;
        s->sram_hi = lo;
        s->dram_hi = s->dram_lo + keep;
        e->sim->shadow_stats.trimmed++;
    } else {
        retire(e, i, false);
    }
}

void pm_shadow_load(pm_engine *e, const pm_dma_desc *d, uint64_t slo, uint64_t shi, uint64_t dlo, uint64_t dhi,
                    bool sram_contiguous, bool defer)
{
    pm_sim *sim = e->sim;
    if (e->shadow_count && slo < e->shadow_hi && e->shadow_lo < shi) {
        for (uint32_t i = e->shadow_count; i-- > 0;)
            if (e->shadow[i].sram_lo < shi && slo < e->shadow[i].sram_hi) overwritten(e, i, slo, shi, sram_contiguous);
        rebound(e);
    }
    if (!defer || !sim->shadow_on) {
        pm_dma_load_copy(e, d);
        return;
    }
    if (e->shadow_count == PM_SHADOW_MAX) retire(e, 0, false);
    pm_shadow *s = &e->shadow[e->shadow_count++];
    *s = (pm_shadow){*d, slo, shi, dlo, dhi};
    /* Contiguous on both sides: one run, which a later load may trim. */
    int64_t rb = d->row_bytes, rows = d->rows, planes = d->planes;
    bool dram_contiguous = (rows == 1 || d->dram_row_stride == rb) && (planes == 1 || d->dram_plane_stride == rb * rows);
    if (sram_contiguous && dram_contiguous) {
        s->d.row_bytes = rb * rows * planes;
        s->d.rows = s->d.planes = 1;
    }
    sim->shadow_live++;
    sim->shadow_stats.deferred++;
    sim->shadow_stats.deferred_bytes += (uint64_t)(d->row_bytes * d->rows * d->planes);
    rebound(e);
}

void pm_sim_shadow_stats(const pm_sim *sim, pm_shadow_stats *out) { *out = sim->shadow_stats; }
