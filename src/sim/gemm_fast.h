/* The tensor unit's functional matmul on the host: C = A x B^T with every
 * output summed in the one order the spec defines (c = fmaf(a, b, c), k
 * ascending), vectorised and threaded without changing a single output bit. */
#ifndef POLYMORPH_SIM_GEMM_FAST_H
#define POLYMORPH_SIM_GEMM_FAST_H

#include "polymorph/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef PM_HIDDEN
#define PM_HIDDEN __attribute__((visibility("hidden")))
#endif

/* A persistent pool of worker threads owned by one simulator (no globals). */
typedef struct pm_gemm_pool pm_gemm_pool;

/* threads = 0: one per online CPU. threads = 1 never starts a thread. */
PM_HIDDEN pm_status pm_gemm_pool_create(unsigned threads, pm_gemm_pool **out, pm_error *err);
PM_HIDDEN void pm_gemm_pool_destroy(pm_gemm_pool *p);
PM_HIDDEN unsigned pm_gemm_pool_threads(const pm_gemm_pool *p);

/* For each m<M, n<N: c = accumulate ? C[m*ldc+n] : +0.0f; for k ascending
 * c = fmaf(A[m*lda+k], B[n*ldb+k], c); C[m*ldc+n] = c. Bit-exact for any
 * thread count. p may be NULL (runs on the calling thread). C must not
 * overlap A or B. */
PM_HIDDEN void pm_gemm_kordered(pm_gemm_pool *p, size_t M, size_t N, size_t K, const float *A, size_t lda,
                                const float *B, size_t ldb, float *C, size_t ldc, bool accumulate);

/* The same product with A and B given as bf16 codes (the upper 16 bits of an
 * fp32; little-endian, any alignment; lda and ldb count elements). Widening
 * bf16 to fp32 is exact, so the result is bit for bit that of widening both
 * operands and calling pm_gemm_kordered; B is widened while it is packed, and
 * A once up front, so the caller needs no conversion pass of its own. */
PM_HIDDEN void pm_gemm_kordered_bf16(pm_gemm_pool *p, size_t M, size_t N, size_t K, const void *A, size_t lda,
                                     const void *B, size_t ldb, float *C, size_t ldc, bool accumulate);

/* The panel layout of an N x K weight matrix (bf16 codes): panels of
 * PM_GEMM_PANEL outputs, panel p holding outputs [64p, 64p + 64) k-major,
 * element (n, k) at (n / 64) * K * 64 + k * 64 + n % 64; columns past N are
 * zero. A small-M product then reads B as one contiguous stream with every
 * output's chain in its own lane; the tensor unit keeps decoded weights in
 * this layout (wcache.c). */
enum { PM_GEMM_PANEL = 64 };
/* Elements of the panel layout of N x K (0 when it would overflow). */
PM_HIDDEN size_t pm_gemm_panel_elems(size_t N, size_t K);
/* B (N rows of K bf16 codes, ldb elements apart, 2-byte aligned) into the
 * panel layout at `panels` (pm_gemm_panel_elems codes, 64-byte aligned). */
PM_HIDDEN void pm_gemm_panel_pack(pm_gemm_pool *p, size_t N, size_t K, const uint16_t *B, size_t ldb,
                                  uint16_t *panels);
/* pm_gemm_kordered_bf16 with B in the panel layout (64-byte aligned): the same
 * bits. */
PM_HIDDEN void pm_gemm_kordered_panel(pm_gemm_pool *p, size_t M, size_t N, size_t K, const void *A, size_t lda,
                                      const uint16_t *panels, float *C, size_t ldc, bool accumulate);

/* Runs fn(ctx, t) for every t < ntasks on the pool's threads (the caller
 * takes part) and returns when all are done; tasks must touch disjoint data.
 * p may be NULL (runs them here, in order). Used for the weight decode. */
PM_HIDDEN void pm_gemm_pool_for(pm_gemm_pool *p, size_t ntasks, void (*fn)(void *ctx, size_t task), void *ctx);

#endif
