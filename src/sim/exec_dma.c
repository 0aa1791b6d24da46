/* DMA bodies: descriptor set-up (shape, strides) on the control core, and the
 * DRAM<->SRAM transfers. Every byte of a transfer is bounds-checked before
 * anything is copied; the cost charges the shared DRAM channel in 64-byte
 * bursts per contiguous run of DRAM bytes, and the SRAM port by its busiest bank. */
#include "sim_internal.h"

#include "wcache.h"

#include <string.h>

#define PM_DRAM_BURST_BYTES 64u
/* Limits that keep every address computation inside int64_t. */
#define PM_DMA_MAX_ROW_BYTES ((int64_t)1 << 40)
#define PM_DMA_MAX_COUNT ((int64_t)1 << 32)
#define PM_DMA_MAX_EXTENT ((int64_t)1 << 50)

__extension__ typedef __int128 pm_wide;

pm_status pm_exec_DSHAPE(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    (void)c, (void)err;
    e->dma_row_bytes = e->regs[in->op[0]];
    e->dma_rows = e->regs[in->op[1]];
    e->dma_planes = e->regs[in->op[2]];
    return PM_OK;
}

pm_status pm_exec_DSTRIDE(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    (void)c, (void)err;
    e->dma_dram_row_stride = e->regs[in->op[0]];
    e->dma_dram_plane_stride = e->regs[in->op[1]];
    e->dma_sram_row_stride = e->regs[in->op[2]];
    e->dma_sram_plane_stride = e->regs[in->op[3]];
    return PM_OK;
}

/* Lowest and one-past-highest byte of a strided access; fault if any byte
 * falls outside [0, size). The address is affine in (plane, row), so its
 * extremes are at the corners. */
static pm_status extent(const pm_engine *e, const char *mem, bool write, int64_t base, int64_t row_stride,
                        int64_t plane_stride, uint64_t size, uint64_t *lo, uint64_t *hi, pm_error *err)
{
    pm_wide rs = (pm_wide)row_stride * (e->dma_rows - 1), ps = (pm_wide)plane_stride * (e->dma_planes - 1);
    if (rs > PM_DMA_MAX_EXTENT || rs < -PM_DMA_MAX_EXTENT || ps > PM_DMA_MAX_EXTENT || ps < -PM_DMA_MAX_EXTENT)
        return pm_sim_fault(err, "%s strides span more than 2^50 bytes (row stride %lld, plane stride %lld)", mem,
                            (long long)row_stride, (long long)plane_stride);
    pm_wide l = (pm_wide)base + (rs < 0 ? rs : 0) + (ps < 0 ? ps : 0);
    pm_wide h = (pm_wide)base + (rs > 0 ? rs : 0) + (ps > 0 ? ps : 0) + e->dma_row_bytes;
    if (l < 0 || h > (pm_wide)size) {
        /* Print the range as computed, signed: an access that starts below
         * address 0 must not be shown as starting at 0. */
        unsigned long long lo_mag = (unsigned long long)(l < 0 ? -l : l);
        unsigned long long hi_mag = (unsigned long long)(h < 0 ? -h : h);
        return pm_sim_fault(err, "%s %s [%s0x%llx, %s0x%llx) is out of bounds (%s is 0x%llx bytes)", mem,
                            write ? "write" : "read", l < 0 ? "-" : "", lo_mag, h < 0 ? "-" : "", hi_mag, mem,
                            (unsigned long long)size);
    }
    *lo = (uint64_t)l;
    *hi = (uint64_t)h;
    return PM_OK;
}

static uint64_t bursts(uint64_t addr, uint64_t bytes)
{
    return ((addr + bytes + PM_DRAM_BURST_BYTES - 1) / PM_DRAM_BURST_BYTES - addr / PM_DRAM_BURST_BYTES) *
           PM_DRAM_BURST_BYTES;
}

static pm_status transfer(pm_engine *e, const pm_insn *in, bool load, pm_cost *c, pm_error *err)
{
    pm_sim *sim = e->sim;
    int64_t sram_op = load ? in->op[0] : in->op[1], dram_op = load ? in->op[1] : in->op[0];
    int64_t rb = e->dma_row_bytes, rows = e->dma_rows, planes = e->dma_planes;
    if (rb <= 0 || rows <= 0 || planes <= 0)
        return pm_sim_fault(err, "DMA shape is empty or negative (row_bytes %lld, rows %lld, planes %lld); set it "
                                 "with dma.shape",
                            (long long)rb, (long long)rows, (long long)planes);
    if (rb > PM_DMA_MAX_ROW_BYTES || rows > PM_DMA_MAX_COUNT || planes > PM_DMA_MAX_COUNT)
        return pm_sim_fault(err, "DMA shape too large (row_bytes %lld, rows %lld, planes %lld)", (long long)rb,
                            (long long)rows, (long long)planes);
    pm_wide total_w = (pm_wide)rb * rows * planes;
    /* One descriptor moves at most what the scratchpad holds: every byte has
     * its SRAM side, and a larger transfer could only rewrite SRAM bytes.
     * This also bounds the work of one instruction (the watchdog counts
     * instructions), so a zero-stride descriptor cannot run for days. */
    if (total_w > (pm_wide)e->cfg->sram_bytes)
        return pm_sim_fault(err,
                            "DMA moves row_bytes %lld x rows %lld x planes %lld bytes, more than the engine's "
                            "SRAM (%llu bytes); split it into several transfers",
                            (long long)rb, (long long)rows, (long long)planes,
                            (unsigned long long)e->cfg->sram_bytes);
    uint64_t total = (uint64_t)total_w;
    int64_t sbase = e->regs[pm_areg(sram_op)], dbase = e->regs[pm_areg(dram_op)];
    int64_t srs = e->dma_sram_row_stride, sps = e->dma_sram_plane_stride;
    int64_t drs = e->dma_dram_row_stride, dps = e->dma_dram_plane_stride;
    uint64_t slo, shi, dlo, dhi;
    pm_status st = extent(e, "SRAM", load, sbase, srs, sps, e->cfg->sram_bytes, &slo, &shi, err);
    if (!st) st = extent(e, "DRAM", !load, dbase, drs, dps, sim->cfg.dram_bytes, &dlo, &dhi, err);
    if (st) return st;

    /* DRAM is written only after every page it needs exists. */
    bool dram_rows_contiguous = drs == rb || rows == 1;
    bool dram_contiguous = dram_rows_contiguous && (dps == rb * rows || planes == 1);
    uint64_t charged = 0;
    for (int64_t p = 0; p < planes; p++) {
        if (dram_contiguous) {
            if (!load && (st = pm_sim_dram_reserve(sim, (uint64_t)dbase, total, err))) return st;
            charged = bursts((uint64_t)dbase, total);
            break;
        }
        for (int64_t r = 0; r < rows; r++) {
            uint64_t da = (uint64_t)(dbase + p * dps + r * drs);
            uint64_t run = dram_rows_contiguous ? (uint64_t)(rb * rows) : (uint64_t)rb;
            if (!load && (st = pm_sim_dram_reserve(sim, da, run, err))) return st;
            charged += bursts(da, run);
            if (dram_rows_contiguous) break;
        }
    }
    /* Loaded SRAM no longer holds what the cache knew of it; the new bytes
     * are known to be a copy of DRAM once they are in. (Stored DRAM tells
     * the cache itself, in pm_sim_dram_copy_in.) */
    pm_wcache *wc = load ? pm_tensor_wcache(e, true) : NULL;
    if (wc) pm_wcache_sram_written(wc, slo, shi);
    bool sram_contiguous = (rows == 1 || srs == rb) && (planes == 1 || sps == rb * rows);
    if (load) {
        /* Weights the cache holds decoded are likely read only through it:
         * their copy waits until something else needs the bytes (shadow.c). */
        pm_dma_desc d = {sbase, dbase, rb, rows, planes, srs, sps, drs, dps};
        pm_shadow_load(e, &d, slo, shi, dlo, dhi, sram_contiguous, wc && pm_wcache_covers(wc, dlo, dhi));
    } else {
        pm_shadow_touch(e, slo, shi); /* DRAM-side shadows: pm_sim_dram_copy_in */
        for (int64_t p = 0; p < planes; p++)
            for (int64_t r = 0; r < rows; r++)
                pm_sim_dram_copy_in(sim, (uint64_t)(dbase + p * dps + r * drs), e->sram + (sbase + p * sps + r * srs),
                                    (size_t)rb);
    }

    if (wc) pm_wcache_dma_loaded(wc, (uint64_t)sbase, (uint64_t)dbase, rb, rows, planes, srs, sps, drs, dps);

    /* The SRAM side's busiest bank: one range when contiguous, else one per
     * plane (rows contiguous) or per row. */
    pm_banks banks;
    pm_banks_init(&banks, e->cfg);
    bool sram_rows_contiguous = srs == rb || rows == 1;
    if (sram_rows_contiguous && (sps == rb * rows || planes == 1)) {
        pm_banks_add(&banks, (uint64_t)sbase, total);
    } else {
        int64_t runs = sram_rows_contiguous ? 1 : rows, run = sram_rows_contiguous ? rb * rows : rb;
        for (int64_t p = 0; p < planes; p++)
            for (int64_t r = 0; r < runs; r++) pm_banks_add(&banks, (uint64_t)(sbase + p * sps + r * srs), (uint64_t)run);
    }
    c->sram_bank_cycles = pm_banks_cycles(&banks);

    pm_cost_range(c, PM_RANGE_SRAM, load, slo, shi);
    pm_cost_range(c, PM_RANGE_DRAM, !load, dlo, dhi);
    c->dram_channel_bytes = charged;
    if (load) c->dram_read_bytes = total, c->sram_write_bytes = total;
    else c->dram_write_bytes = total, c->sram_read_bytes = total;
    pm_post_increment(e, in->op[0], total);
    pm_post_increment(e, in->op[1], total);
    return PM_OK;
}

pm_status pm_exec_DLD(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    return transfer(e, in, true, c, err);
}

pm_status pm_exec_DST(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    return transfer(e, in, false, c, err);
}
