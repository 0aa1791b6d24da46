/* Scalar control core bodies: ALU, SRAM word load/store, branches, counted
 * loops and control registers. They complete at issue; lw/sw report the SRAM
 * word they touch so the scheduler can interlock them against the units. */
#include "sim_internal.h"

#include <stdio.h>
#include <string.h>

#define RD (in->op[0])
#define RA (e->regs[in->op[1]])
#define RB (e->regs[in->op[2]])
#define UA ((uint64_t)e->regs[in->op[1]])
#define UB ((uint64_t)e->regs[in->op[2]])
#define IMM (in->op[2])

/* Writes to r0 are dropped: the scheduler re-zeroes r0 after every body. */
static inline void set_rd(pm_engine *e, int64_t rd, uint64_t v) { e->regs[rd & 31] = (int64_t)v; }

pm_status pm_exec_NOP(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    (void)e, (void)in, (void)c, (void)err;
    return PM_OK;
}

pm_status pm_exec_LI(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    (void)c, (void)err;
    set_rd(e, RD, (uint64_t)in->op[1]);
    return PM_OK;
}

/* Register-register ALU: 64-bit two's complement, wrapping (done in uint64_t
 * so overflow is defined). */
#define ALU_RRR(ID, EXPR)                                                            \
    pm_status pm_exec_##ID(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err) \
    {                                                                                \
        (void)c, (void)err;                                                          \
        set_rd(e, RD, (uint64_t)(EXPR));                                             \
        return PM_OK;                                                                \
    }
ALU_RRR(ADD, UA + UB)
ALU_RRR(SUB, UA - UB)
ALU_RRR(MUL, UA * UB)
ALU_RRR(AND, UA & UB)
ALU_RRR(OR, UA | UB)
ALU_RRR(XOR, UA ^ UB)
ALU_RRR(SHL, UA << (UB & 63))
ALU_RRR(SHR, UA >> (UB & 63))
/* Arithmetic shift written without relying on signed >> of negatives. */
ALU_RRR(SRA, RA >= 0 ? UA >> (UB & 63) : ~(~UA >> (UB & 63)))
ALU_RRR(SLT, RA < RB ? 1u : 0u)
ALU_RRR(SLTU, UA < UB ? 1u : 0u)
ALU_RRR(MIN, RA < RB ? UA : UB)
ALU_RRR(MAX, RA > RB ? UA : UB)
ALU_RRR(ADDI, UA + (uint64_t)IMM)
ALU_RRR(MULI, UA * (uint64_t)IMM)
ALU_RRR(ANDI, UA & (uint64_t)IMM)
ALU_RRR(SHLI, UA << (IMM & 63))
ALU_RRR(SHRI, UA >> (IMM & 63))

/* The SRAM word at ra + imm: bounds and 4-byte alignment. */
static pm_status word_address(pm_engine *e, const pm_insn *in, bool write, pm_cost *c, uint64_t *addr,
                              pm_error *err)
{
    uint64_t a = UA + (uint64_t)IMM;
    int64_t sa = (int64_t)a;
    const char *what = write ? "sw" : "lw";
    if (sa < 0 || a > e->cfg->sram_bytes || e->cfg->sram_bytes - a < 4)
        return pm_sim_fault(err, "SRAM %s [0x%llx, 0x%llx) (r%u + %lld) is out of bounds (SRAM is 0x%llx bytes)",
                            write ? "write" : "read", (unsigned long long)a, (unsigned long long)(a + 4),
                            (unsigned)in->op[1], (long long)IMM, (unsigned long long)e->cfg->sram_bytes);
    if (a & 3) return pm_sim_fault(err, "%s address 0x%llx is not 4-byte aligned", what, (unsigned long long)a);
    pm_cost_range(c, PM_RANGE_SRAM, write, a, a + 4);
    if (write) c->sram_write_bytes += 4;
    else c->sram_read_bytes += 4;
    *addr = a;
    return PM_OK;
}

pm_status pm_exec_LW(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    uint64_t a;
    pm_status st = word_address(e, in, false, c, &a, err);
    if (st) return st;
    pm_shadow_touch(e, a, a + 4);
    uint8_t *p = e->sram + a; /* little-endian word, host-independent */
    uint32_t w = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    set_rd(e, RD, (uint64_t)(int64_t)(int32_t)w);
    return PM_OK;
}

pm_status pm_exec_SW(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    uint64_t a;
    pm_status st = word_address(e, in, true, c, &a, err);
    if (st) return st;
    uint32_t w = (uint32_t)e->regs[RD & 31];
    pm_shadow_touch(e, a, a + 4);
    uint8_t *p = e->sram + a;
    p[0] = (uint8_t)w, p[1] = (uint8_t)(w >> 8), p[2] = (uint8_t)(w >> 16), p[3] = (uint8_t)(w >> 24);
    return PM_OK;
}

static pm_status branch_to(pm_engine *e, int64_t target, bool taken, bool bubble, pm_cost *c, pm_error *err)
{
    if (!taken) return PM_OK;
    if (target < 0 || target >= (int64_t)e->code_count)
        return pm_sim_fault(err, "branch target %lld is outside the program (%u instruction%s)",
                            (long long)target, e->code_count, e->code_count == 1 ? "" : "s");
    c->next_pc = (uint32_t)target;
    c->branch_taken = bubble;
    return PM_OK;
}

pm_status pm_exec_BEQ(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    return branch_to(e, in->op[2], e->regs[in->op[0]] == e->regs[in->op[1]], true, c, err);
}
pm_status pm_exec_BNE(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    return branch_to(e, in->op[2], e->regs[in->op[0]] != e->regs[in->op[1]], true, c, err);
}
pm_status pm_exec_BLT(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    return branch_to(e, in->op[2], e->regs[in->op[0]] < e->regs[in->op[1]], true, c, err);
}
pm_status pm_exec_BGE(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    return branch_to(e, in->op[2], e->regs[in->op[0]] >= e->regs[in->op[1]], true, c, err);
}
pm_status pm_exec_JMP(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    return branch_to(e, in->op[0], true, true, c, err);
}

/* Zero-overhead loop: the decrement and the backward branch cost only the
 * loop instruction's own issue slot, never a bubble. */
pm_status pm_exec_LOOP(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    unsigned rc = (unsigned)in->op[0] & 31;
    uint64_t v = (uint64_t)e->regs[rc] - 1;
    if (rc) e->regs[rc] = (int64_t)v;
    else v = (uint64_t)-1; /* r0 stays 0: r0 - 1 != 0, so `loop r0` always branches */
    return branch_to(e, in->op[1], v != 0, false, c, err);
}

pm_status pm_exec_CSRR(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    (void)c;
    uint64_t v;
    switch (in->op[1]) {
    case PM_CSR_ENGINE_ID: v = e->id; break;
    case PM_CSR_ENGINES: v = e->cfg->engines; break;
    case PM_CSR_LANES: v = e->cfg->vector_lanes; break;
    case PM_CSR_CYCLE: v = e->t; break;
    default: return pm_sim_fault(err, "control register %lld does not exist", (long long)in->op[1]);
    }
    set_rd(e, RD, v);
    return PM_OK;
}
