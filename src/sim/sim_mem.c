/* Memories and operand helpers of the simulator: sparse paged DRAM, SRAM
 * operand bounds checks with their hazard ranges, post-increment, scratch
 * buffers reused across instructions, and the fault message helper. */
#include "sim_internal.h"
#include "wcache.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pm_status pm_sim_fault(pm_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pm_error_setv(err, PM_ERR_FAULT, fmt, ap);
    va_end(ap);
    return PM_ERR_FAULT;
}

/* ---- sparse DRAM ---- */

pm_status pm_sim_dram_copy_out(const pm_sim *sim, uint64_t addr, void *dst, size_t n)
{
    uint8_t *out = dst;
    while (n) {
        uint64_t page = addr >> PM_DRAM_PAGE_SHIFT, off = addr & (PM_DRAM_PAGE_BYTES - 1);
        size_t chunk = (size_t)(PM_DRAM_PAGE_BYTES - off);
        if (chunk > n) chunk = n;
        if (sim->dram_pages[page]) memcpy(out, sim->dram_pages[page] + off, chunk);
        else memset(out, 0, chunk); /* untouched pages read as zeros */
        out += chunk;
        addr += chunk;
        n -= chunk;
    }
    return PM_OK;
}

pm_status pm_sim_dram_reserve(pm_sim *sim, uint64_t addr, uint64_t n, pm_error *err)
{
    if (!n) return PM_OK;
    uint64_t first = addr >> PM_DRAM_PAGE_SHIFT, last = (addr + n - 1) >> PM_DRAM_PAGE_SHIFT;
    for (uint64_t p = first; p <= last; p++) {
        if (sim->dram_pages[p]) continue;
        sim->dram_pages[p] = calloc(1, PM_DRAM_PAGE_BYTES);
        if (!sim->dram_pages[p])
            return pm_error_set(err, PM_ERR_NOMEM, "out of host memory for simulated DRAM page 0x%llx",
                                (unsigned long long)(p << PM_DRAM_PAGE_SHIFT));
    }
    return PM_OK;
}

void pm_sim_dram_copy_in(pm_sim *sim, uint64_t addr, const void *src, size_t n)
{
    /* Every DRAM write passes here: deferred copies from these bytes happen
     * first, and the cache drops what was decoded from them. */
    pm_shadow_dram_touch(sim, addr, addr + n);
    pm_wcache_dram_write(sim, addr, src, n);
    const uint8_t *in = src;
    while (n) {
        uint64_t page = addr >> PM_DRAM_PAGE_SHIFT, off = addr & (PM_DRAM_PAGE_BYTES - 1);
        size_t chunk = (size_t)(PM_DRAM_PAGE_BYTES - off);
        if (chunk > n) chunk = n;
        memcpy(sim->dram_pages[page] + off, in, chunk);
        in += chunk;
        addr += chunk;
        n -= chunk;
    }
}

/* ---- operands ---- */

void pm_cost_range(pm_cost *c, uint8_t mem, bool write, uint64_t lo, uint64_t hi)
{
    if (lo >= hi || c->range_count >= PM_COST_MAX_RANGES) return;
    pm_range *r = &c->range[c->range_count++];
    r->mem = mem;
    r->write = write;
    r->lo = lo;
    r->hi = hi;
}

static pm_status sram_operand(pm_engine *e, int64_t op, uint64_t bytes, bool write, bool copy_shadows, pm_cost *c,
                              uint64_t *offset, pm_error *err)
{
    unsigned reg = pm_areg(op);
    int64_t addr = e->regs[reg];
    *offset = 0;
    if (bytes == 0) return PM_OK; /* nothing touched: the address does not matter */
    uint64_t size = e->cfg->sram_bytes;
    if (addr < 0 || (uint64_t)addr > size || bytes > size - (uint64_t)addr)
        return pm_sim_fault(err, "SRAM %s [0x%llx, 0x%llx) through r%u is out of bounds (SRAM is 0x%llx bytes)",
                            write ? "write" : "read", (unsigned long long)addr,
                            (unsigned long long)((uint64_t)addr + bytes), reg, (unsigned long long)size);
    *offset = (uint64_t)addr;
    /* Deferred DMA copies land before anything reads or writes their bytes. */
    if (copy_shadows) pm_shadow_touch(e, (uint64_t)addr, (uint64_t)addr + bytes);
    if (write) {
        /* The decoded-weight cache must forget what it knew of these bytes. */
        pm_wcache *wc = pm_tensor_wcache(e, false);
        if (wc) pm_wcache_sram_written(wc, (uint64_t)addr, (uint64_t)addr + bytes);
    }
    pm_cost_range(c, PM_RANGE_SRAM, write, (uint64_t)addr, (uint64_t)addr + bytes);
    if (write) c->sram_write_bytes += bytes;
    else c->sram_read_bytes += bytes;
    return PM_OK;
}

pm_status pm_sram_operand(pm_engine *e, int64_t op, uint64_t bytes, bool write, pm_cost *c, uint64_t *offset,
                          pm_error *err)
{
    return sram_operand(e, op, bytes, write, true, c, offset, err);
}

pm_status pm_sram_operand_deferred(pm_engine *e, int64_t op, uint64_t bytes, pm_cost *c, uint64_t *offset,
                                   pm_error *err)
{
    return sram_operand(e, op, bytes, false, false, c, offset, err);
}

void pm_post_increment(pm_engine *e, int64_t op, uint64_t bytes)
{
    if (!pm_areg_inc(op)) return;
    unsigned reg = pm_areg(op);
    if (reg) e->regs[reg] = (int64_t)((uint64_t)e->regs[reg] + bytes);
}

pm_status pm_count_operand(const pm_engine *e, int64_t reg, const char *what, uint64_t *n, pm_error *err)
{
    int64_t v = e->regs[reg & 31];
    if (v < 0) return pm_sim_fault(err, "%s = %lld (r%u) is negative", what, (long long)v, (unsigned)(reg & 31));
    if (v > PM_MAX_COUNT)
        return pm_sim_fault(err, "%s = %lld (r%u) is too large", what, (long long)v, (unsigned)(reg & 31));
    *n = (uint64_t)v;
    return PM_OK;
}

pm_status pm_format_operand(int64_t op, const char *mnemonic, bool arith_only, pm_format *f, pm_error *err)
{
    const pm_format_info *info = (op >= 0 && op < PM_FMT_COUNT) ? pm_format_get((pm_format)op) : NULL;
    if (!info) return pm_sim_fault(err, "format code %lld is not a known format", (long long)op);
    if (arith_only && op != PM_FMT_F32 && op != PM_FMT_BF16 && op != PM_FMT_F16)
        return pm_sim_fault(err, "format %s not supported by %s (element arithmetic takes f32, bf16 or f16; "
                                 "convert with vcvt)", info->name, mnemonic);
    *f = (pm_format)op;
    return PM_OK;
}

pm_status pm_scratch_floats(pm_engine *e, size_t n, float **out, pm_error *err)
{
    if (n > e->fscratch_cap) {
        size_t cap = e->fscratch_cap ? e->fscratch_cap : 1024;
        while (cap < n) cap *= 2;
        float *p = realloc(e->fscratch, cap * sizeof *p);
        if (!p) return pm_error_set(err, PM_ERR_NOMEM, "out of host memory for %zu scratch elements", n);
        e->fscratch = p;
        e->fscratch_cap = cap;
    }
    *out = e->fscratch;
    return PM_OK;
}

pm_status pm_scratch_bytes(pm_engine *e, size_t n, uint8_t **out, pm_error *err)
{
    if (n > e->bscratch_cap) {
        size_t cap = e->bscratch_cap ? e->bscratch_cap : 4096;
        while (cap < n) cap *= 2;
        uint8_t *p = realloc(e->bscratch, cap);
        if (!p) return pm_error_set(err, PM_ERR_NOMEM, "out of host memory for %zu scratch bytes", n);
        e->bscratch = p;
        e->bscratch_cap = cap;
    }
    *out = e->bscratch;
    return PM_OK;
}
