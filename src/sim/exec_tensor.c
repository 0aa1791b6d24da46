/* Tensor unit bodies (work in progress: the tensor-unit issue replaces this
 * file). Until then every tensor instruction faults with a clear cause. */
#include "sim_internal.h"

#define NOT_YET(id)                                                                      \
    pm_status pm_exec_##id(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err) \
    {                                                                                    \
        (void)e; (void)in; (void)c;                                                      \
        return pm_sim_fault(err, "the tensor unit is not modelled yet");                \
    }
NOT_YET(TSHAPE)
NOT_YET(TMM)
NOT_YET(TMMA)
NOT_YET(TEPI)
NOT_YET(TOUT)
