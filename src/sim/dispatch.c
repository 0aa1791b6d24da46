/* The simulator's dispatch table, generated from isa_table.h: one entry per
 * row naming its mnemonic, unit and exec body. A row without a body
 * (pm_exec_<ID> in src/sim/exec_*.c) fails the build at link time. */
#include "sim_internal.h"

const pm_op_meta pm_sim_ops[256] = {
#define PM_INSN(id, opc, mn, unit, ops, doc) [opc] = {mn, PM_UNIT_##unit, pm_exec_##id},
#include "polymorph/isa_table.h"
#undef PM_INSN
};
