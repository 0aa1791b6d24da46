/* Synchronisation and trace bodies: they only validate operands and tell the
 * scheduler what to wait for (fence, flag wait), what to release (flag
 * set/add after the engine's earlier work completes), or what to record. */
#include "sim_internal.h"

static pm_status flag_operand(const pm_engine *e, int64_t g, pm_cost *c, pm_error *err)
{
    if (g < 0 || (uint64_t)g >= e->cfg->flags)
        return pm_sim_fault(err, "flag %lld is out of range (chip has %u flags)", (long long)g, e->cfg->flags);
    c->sync_flag = (uint32_t)g;
    return PM_OK;
}

pm_status pm_exec_HALT(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    (void)e, (void)in, (void)err;
    c->sync = PM_SYNC_HALT;
    return PM_OK;
}

pm_status pm_exec_FENCE(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    (void)e, (void)err;
    c->sync = PM_SYNC_FENCE;
    c->sync_mask = (uint32_t)in->op[0];
    return PM_OK;
}

pm_status pm_exec_FSET(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    c->sync = PM_SYNC_FLAG_SET;
    c->sync_value = in->op[1];
    return flag_operand(e, in->op[0], c, err);
}

pm_status pm_exec_FADD(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    c->sync = PM_SYNC_FLAG_ADD;
    c->sync_value = in->op[1];
    return flag_operand(e, in->op[0], c, err);
}

pm_status pm_exec_FWAIT(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    c->sync = PM_SYNC_FLAG_WAIT;
    c->sync_value = in->op[1];
    return flag_operand(e, in->op[0], c, err);
}

pm_status pm_exec_FWAITR(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    c->sync = PM_SYNC_FLAG_WAIT;
    c->sync_value = e->regs[in->op[1] & 31];
    return flag_operand(e, in->op[0], c, err);
}

pm_status pm_exec_MARK(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    (void)e, (void)err;
    c->sync = PM_SYNC_MARK;
    c->sync_value = in->op[0];
    return PM_OK;
}
