/* Private helpers shared by the kernel builders and their references:
 * the validation every matmul entry point applies to a descriptor. */
#ifndef POLYMORPH_KERNELS_INTERNAL_H
#define POLYMORPH_KERNELS_INTERNAL_H

#include "polymorph/kernels.h"

/* Checks shape and formats (independent of any config) and returns the
 * per-batch operand bytes. Messages name the descriptor field. */
pm_status pm_matmul_check(const pm_matmul_desc *d, uint64_t *x_bytes, uint64_t *w_bytes, uint64_t *y_bytes,
                          pm_error *err);

#endif
