/* LFU array bodies: load a table into a resident slot (from the built-in ROM
 * or a serialized PMLF table in SRAM) and evaluate n elements through a slot
 * with the LFU layer's bit-exact evaluator, in fp32, stored as f32/bf16/f16. */
#include "sim_internal.h"

#include <string.h>

static pm_status slot_operand(const pm_engine *e, int64_t s, pm_error *err)
{
    if (s < 0 || (uint64_t)s >= e->cfg->lfu_slots)
        return pm_sim_fault(err, "LFU slot %lld does not exist (the config has %u slots)", (long long)s,
                            e->cfg->lfu_slots);
    return PM_OK;
}

static void install(pm_engine *e, int64_t s, pm_lfu_table *t)
{
    if (e->lfu_loaded[s]) pm_lfu_table_free(&e->lfu[s]);
    e->lfu[s] = *t;
    e->lfu_loaded[s] = true;
}

/* A table load streams its serialized bytes into the slot (lfu.ld's SRAM
 * reads are charged on the SRAM port by the scheduler). */
static void load_cost(const pm_engine *e, uint64_t table_bytes, pm_cost *c)
{
    c->stream_cycles = pm_ceil_div(table_bytes, e->cfg->lfu_load_bytes_per_cycle);
}

pm_status pm_exec_LFUCFG(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    pm_status st = slot_operand(e, in->op[0], err);
    if (st) return st;
    if (in->op[1] < 0 || in->op[1] >= PM_LFU_FUNC_COUNT)
        return pm_sim_fault(err, "LFU function %lld is not a built-in", (long long)in->op[1]);
    pm_lfu_table t;
    memset(&t, 0, sizeof t);
    if ((st = pm_lfu_builtin((pm_lfu_func)in->op[1], &t, err))) {
        pm_error_prefix(err, "built-in LFU table: ");
        err->status = PM_ERR_FAULT;
        return PM_ERR_FAULT;
    }
    uint64_t bytes = pm_lfu_table_serialized_size(&t);
    install(e, in->op[0], &t);
    load_cost(e, bytes, c);
    return PM_OK;
}

pm_status pm_exec_LFULD(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    pm_status st = slot_operand(e, in->op[0], err);
    if (st) return st;
    unsigned reg = (unsigned)in->op[1] & 31;
    int64_t addr = e->regs[reg];
    uint64_t size = e->cfg->sram_bytes;
    if (addr < 0 || (uint64_t)addr >= size)
        return pm_sim_fault(err, "LFU table address 0x%llx (r%u) is outside SRAM (0x%llx bytes)",
                            (unsigned long long)addr, reg, (unsigned long long)size);
    pm_lfu_table t;
    memset(&t, 0, sizeof t);
    /* The deserializer is bounded by the end of SRAM and validates the table;
     * how far it reads is known only after, so every shadow above comes in. */
    pm_shadow_touch(e, (uint64_t)addr, size);
    if ((st = pm_lfu_table_deserialize(e->sram + addr, (size_t)(size - (uint64_t)addr), &t, err))) {
        pm_error_prefix(err, "malformed LFU table at SRAM 0x%llx: ", (unsigned long long)addr);
        err->status = PM_ERR_FAULT;
        return PM_ERR_FAULT;
    }
    uint64_t bytes = pm_lfu_table_serialized_size(&t);
    install(e, in->op[0], &t);
    pm_cost_range(c, PM_RANGE_SRAM, false, (uint64_t)addr, (uint64_t)addr + bytes);
    c->sram_read_bytes = bytes;
    load_cost(e, bytes, c);
    return PM_OK;
}

/* lfu.T s, d, a, n */
pm_status pm_exec_LFU(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    const pm_config *cfg = e->cfg;
    pm_format f;
    uint64_t n;
    pm_status st = pm_format_operand(in->op[0], "lfu", true, &f, err);
    if (!st) st = slot_operand(e, in->op[1], err);
    if (!st) st = pm_count_operand(e, in->op[4], "n", &n, err);
    if (st) return st;
    if (!e->lfu_loaded[in->op[1]])
        return pm_sim_fault(err, "LFU slot %lld is empty (load it with lfu.cfg or lfu.ld)", (long long)in->op[1]);
    c->latency_cycles = cfg->lfu_latency_cycles;
    if (n == 0) return PM_OK;
    uint64_t bytes = n * (f == PM_FMT_F32 ? 4 : 2), soff, doff;
    if ((st = pm_sram_operand(e, in->op[3], bytes, false, c, &soff, err))) return st;
    if ((st = pm_sram_operand(e, in->op[2], bytes, true, c, &doff, err))) return st;
    float *buf;
    uint8_t *out;
    if ((st = pm_scratch_floats(e, (size_t)(2 * n), &buf, err))) return st;
    if ((st = pm_scratch_bytes(e, (size_t)bytes, &out, err))) return st;
    if ((st = pm_format_decode(f, e->sram + soff, (size_t)n, buf, err))) return st;
    pm_lfu_eval_array(&e->lfu[in->op[1]], buf, buf + n, (size_t)n);
    if ((st = pm_format_encode(f, buf + n, (size_t)n, out, err))) return st;
    memcpy(e->sram + doff, out, (size_t)bytes);
    pm_post_increment(e, in->op[3], bytes);
    pm_post_increment(e, in->op[2], bytes);
    c->stream_cycles = pm_ceil_div(n, cfg->lfu_count); /* the scheduler adds the SRAM port */
    c->lfu_evals = n;
    return PM_OK;
}
