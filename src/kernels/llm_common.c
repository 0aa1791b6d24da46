/* What every LLM program shares: the config check, the prologue that loads
 * the four LFU slots, and the small emit helpers of llm_internal.h (any
 * 64-bit constant into a register, DMA in one call, vector ops with n in a
 * register, SRAM/DRAM range checks with messages naming the field). */
#include "llm_internal.h"

pm_status pm_llm_kernels_check(const pm_config *cfg, pm_error *err)
{
    /* The emitters carry no fences: ordering between them is the interlock's. */
    if (cfg->hazard_mode != PM_HAZARD_INTERLOCK)
        return pm_error_set(err, PM_ERR_CONFIG,
                            "llm kernels: control.hazards = report; the LLM programs rely on the interlock "
                            "(control.hazards = interlock)");
    if (cfg->lfu_slots < PM_LLM_SLOTS)
        return pm_error_set(err, PM_ERR_CONFIG, "llm kernels: lfu.slots = %u; the LLM programs need %d (exp, silu, "
                            "rsqrt, recip resident at once)", cfg->lfu_slots, PM_LLM_SLOTS);
    if (cfg->vector_lanes == 0 || cfg->lfu_count == 0)
        return pm_error_set(err, PM_ERR_CONFIG, "llm kernels: vector.lanes = %u, lfu.count = %u; both must be positive",
                            cfg->vector_lanes, cfg->lfu_count);
    if (cfg->tensor_rows == 0 || cfg->tensor_cols == 0 || cfg->accum_bytes < 2u * 4u * cfg->tensor_cols)
        return pm_error_set(err, PM_ERR_CONFIG,
                            "llm kernels: sram.accumulator_bytes = %llu holds fewer than two rows of %u fp32 sums "
                            "(tensor.cols)", (unsigned long long)cfg->accum_bytes, cfg->tensor_cols);
    return PM_OK;
}

void pm_emit_llm_prologue(pm_builder *b)
{
    static const struct { int slot; pm_lfu_func f; } slots[PM_LLM_SLOTS] = {
        {PM_LLM_SLOT_EXP, PM_LFU_EXP},
        {PM_LLM_SLOT_SILU, PM_LFU_SILU},
        {PM_LLM_SLOT_RSQRT, PM_LFU_RSQRT},
        {PM_LLM_SLOT_RECIP, PM_LFU_RECIP},
    };
    for (int i = 0; i < PM_LLM_SLOTS; i++) pm_builder_emit(b, PM_OP_LFUCFG, slots[i].slot, slots[i].f, 0, 0, 0, 0);
}

/* ---- emit helpers ---- */

#define IMM48_MIN (-((int64_t)1 << 47))
#define IMM48_MAX (((int64_t)1 << 47) - 1)

void pm_llm_li(pm_builder *b, int reg, uint64_t value)
{
    int64_t v = (int64_t)value;
    if (v >= IMM48_MIN && v <= IMM48_MAX) {
        pm_builder_emit(b, PM_OP_LI, reg, v, 0, 0, 0, 0);
        return;
    }
    /* High 32 bits shifted up, plus the low 32 bits (non-negative in 48 bits). */
    pm_builder_emit(b, PM_OP_LI, reg, (int64_t)(int32_t)(uint32_t)(value >> 32), 0, 0, 0, 0);
    pm_builder_emit(b, PM_OP_SHLI, reg, reg, 32, 0, 0, 0);
    pm_builder_emit(b, PM_OP_LI, PM_LLM_RT5, (int64_t)(value & 0xffffffffu), 0, 0, 0, 0);
    pm_builder_emit(b, PM_OP_ADD, reg, reg, PM_LLM_RT5, 0, 0, 0);
}

void pm_llm_dma(pm_builder *b, bool load, uint64_t sram, uint64_t dram, uint64_t row_bytes, uint64_t rows,
                int64_t dram_stride, int64_t sram_stride)
{
    pm_llm_li(b, PM_LLM_RT0, row_bytes);
    pm_llm_li(b, PM_LLM_RT1, rows);
    pm_llm_li(b, PM_LLM_RT2, 1);
    pm_builder_emit(b, PM_OP_DSHAPE, PM_LLM_RT0, PM_LLM_RT1, PM_LLM_RT2, 0, 0, 0);
    if (rows > 1) {
        pm_llm_li(b, PM_LLM_RT0, (uint64_t)dram_stride);
        pm_llm_li(b, PM_LLM_RT1, (uint64_t)sram_stride);
        pm_builder_emit(b, PM_OP_DSTRIDE, PM_LLM_RT0, 0, PM_LLM_RT1, 0, 0, 0);
    }
    pm_llm_li(b, PM_LLM_RT3, sram);
    pm_llm_li(b, PM_LLM_RT4, dram);
    if (load) pm_builder_emit(b, PM_OP_DLD, PM_LLM_RT3, PM_LLM_RT4, 0, 0, 0, 0);
    else pm_builder_emit(b, PM_OP_DST, PM_LLM_RT4, PM_LLM_RT3, 0, 0, 0, 0);
}

void pm_llm_dma_ld(pm_builder *b, uint64_t sram, uint64_t dram, uint64_t bytes)
{
    pm_llm_dma(b, true, sram, dram, bytes, 1, 0, 0);
}

void pm_llm_dma_st(pm_builder *b, uint64_t dram, uint64_t sram, uint64_t bytes)
{
    pm_llm_dma(b, false, sram, dram, bytes, 1, 0, 0);
}

void pm_llm_vbin(pm_builder *b, pm_opcode op, pm_format fmt, uint64_t d, uint64_t a, uint64_t bsrc, uint64_t n)
{
    pm_llm_li(b, PM_LLM_RT0, d);
    pm_llm_li(b, PM_LLM_RT1, a);
    pm_llm_li(b, PM_LLM_RT2, bsrc);
    pm_llm_li(b, PM_LLM_RT3, n);
    pm_builder_emit(b, op, fmt, PM_LLM_RT0, PM_LLM_RT1, PM_LLM_RT2, PM_LLM_RT3, 0);
}

void pm_llm_vmov(pm_builder *b, pm_format fmt, uint64_t d, uint64_t a, uint64_t n)
{
    pm_llm_li(b, PM_LLM_RT0, d);
    pm_llm_li(b, PM_LLM_RT1, a);
    pm_llm_li(b, PM_LLM_RT3, n);
    pm_builder_emit(b, PM_OP_VMOV, fmt, PM_LLM_RT0, PM_LLM_RT1, PM_LLM_RT3, 0, 0);
}

void pm_llm_vcvt(pm_builder *b, pm_format dst, pm_format src, uint64_t d, uint64_t a, uint64_t n)
{
    pm_llm_li(b, PM_LLM_RT0, d);
    pm_llm_li(b, PM_LLM_RT1, a);
    pm_llm_li(b, PM_LLM_RT3, n);
    pm_builder_emit(b, PM_OP_VCVT, dst, src, PM_LLM_RT0, PM_LLM_RT1, PM_LLM_RT3, 0);
}

void pm_llm_vscalar(pm_builder *b, pm_opcode op, pm_format fmt, uint64_t d, uint64_t a, float s, uint64_t n)
{
    pm_llm_li(b, PM_LLM_RT0, d);
    pm_llm_li(b, PM_LLM_RT1, a);
    pm_llm_li(b, PM_LLM_RT2, pm_f32_bits(s));
    pm_llm_li(b, PM_LLM_RT3, n);
    pm_builder_emit(b, op, fmt, PM_LLM_RT0, PM_LLM_RT1, PM_LLM_RT2, PM_LLM_RT3, 0);
}

void pm_llm_tshape(pm_builder *b, uint64_t m, uint64_t n, uint64_t k, int dataflow)
{
    pm_llm_li(b, PM_LLM_RT0, m);
    pm_llm_li(b, PM_LLM_RT1, n);
    pm_llm_li(b, PM_LLM_RT2, k);
    pm_builder_emit(b, PM_OP_TSHAPE, PM_LLM_RT0, PM_LLM_RT1, PM_LLM_RT2, dataflow, 0, 0);
}

void pm_llm_tepi_none(pm_builder *b)
{
    pm_llm_li(b, PM_LLM_RT1, pm_f32_bits(1.0f));
    pm_builder_emit(b, PM_OP_TEPI, 0, PM_LLM_RT1, 0, 0, 0, 0);
}

/* ---- range checks ---- */

static pm_status check_range(const char *mem, uint64_t size, const char *who, const char *field, uint64_t addr,
                             uint64_t bytes, pm_error *err)
{
    if (addr > size || bytes > size - addr)
        return pm_error_set(err, PM_ERR_INVALID, "%s: %s [0x%llx, 0x%llx) is outside %s (0x%llx bytes)", who, field,
                            (unsigned long long)addr, (unsigned long long)(addr + bytes), mem,
                            (unsigned long long)size);
    return PM_OK;
}

pm_status pm_llm_check_sram(const pm_config *cfg, const char *who, const char *field, uint64_t addr, uint64_t bytes,
                            pm_error *err)
{
    return check_range("SRAM", cfg->sram_bytes, who, field, addr, bytes, err);
}

pm_status pm_llm_check_dram(const pm_config *cfg, const char *who, const char *field, uint64_t addr, uint64_t bytes,
                            pm_error *err)
{
    return check_range("DRAM", cfg->dram_bytes, who, field, addr, bytes, err);
}

bool pm_llm_overlap(uint64_t a, uint64_t a_bytes, uint64_t b, uint64_t b_bytes)
{
    return a_bytes && b_bytes && a < b + b_bytes && b < a + a_bytes;
}

pm_status pm_llm_check_disjoint(const char *who, const char *fa, uint64_t a, uint64_t a_bytes, const char *fb,
                                uint64_t b, uint64_t b_bytes, pm_error *err)
{
    if (!pm_llm_overlap(a, a_bytes, b, b_bytes)) return PM_OK;
    return pm_error_set(err, PM_ERR_INVALID, "%s: %s [0x%llx, 0x%llx) overlaps %s [0x%llx, 0x%llx)", who, fa,
                        (unsigned long long)a, (unsigned long long)(a + a_bytes), fb, (unsigned long long)b,
                        (unsigned long long)(b + b_bytes));
}
