/* The tensor unit's functional matmul on the host: C = A x B^T with every
 * output summed in the one order the spec defines (c = fmaf(a, b, c), k
 * ascending), vectorised and threaded without changing a single output bit. */
#ifndef POLYMORPH_SIM_GEMM_FAST_H
#define POLYMORPH_SIM_GEMM_FAST_H

#include "polymorph/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#ifndef PM_HIDDEN
#define PM_HIDDEN __attribute__((visibility("hidden")))
#endif

/* A persistent pool of worker threads owned by one simulator (no globals). */
typedef struct pm_gemm_pool pm_gemm_pool;

/* threads = 0: one per online CPU. threads = 1 never starts a thread. */
PM_HIDDEN pm_status pm_gemm_pool_create(unsigned threads, pm_gemm_pool **out, pm_error *err);
PM_HIDDEN void pm_gemm_pool_destroy(pm_gemm_pool *p);
PM_HIDDEN unsigned pm_gemm_pool_threads(const pm_gemm_pool *p);
/* CPU time the pool's worker threads have used so far, in nanoseconds (0
 * for p = NULL or one thread): how a test sees that an idle pool sleeps
 * instead of polling. */
PM_HIDDEN uint64_t pm_gemm_pool_worker_cpu_ns(const pm_gemm_pool *p);

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

/* Compact panels (wpack.c builds them): weights whose bf16 codes are
 * rne_bf16(fmaf(s, q, o)) with a small integer q per element and s, o per
 * block of 32 k of each output (GGUF's Q8_0, Q4_0, Q4_1), in groups of 32
 * outputs; group g, block b at (g * K/32 + b) * block bytes: s[32] and o[32]
 * (fp32), then the codes k-major: int8 q[32 k][32 outputs] (1280 bytes a
 * block: 1.25 bytes a weight), or with `nibbles` unsigned 4-bit q, output j
 * of a k row in byte j % 16, the low nibble for j < 16 (768 bytes: 0.75).
 * Outputs past N have s = o = q = 0. */
enum { PM_GEMM_QGROUP = 32, PM_GEMM_QBLOCK_BYTES = 32 * 4 * 2 + 32 * 32, PM_GEMM_Q4BLOCK_BYTES = 32 * 4 * 2 + 32 * 16 };
/* The bf16 code of one compact weight: fmaf, then round to nearest even by
 * integer steps (exact for finite values and infinities; a NaN gives some
 * NaN code, which wpack.c's check against the decoder then rejects). */
static inline uint16_t pm_gemm_qcode(float s, int q, float o)
{
    float w = fmaf(s, (float)q, o);
    uint32_t u;
    memcpy(&u, &w, sizeof u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
/* Bytes of the compact panels of N x K (K a multiple of 32; 0 on overflow). */
PM_HIDDEN size_t pm_gemm_qpanel_bytes(size_t N, size_t K, bool nibbles);
/* M = 1: C[n] (+)= chain over k of A[k] x code(n, k), the same bits as
 * pm_gemm_kordered_bf16 on the codes. qp 32-byte aligned. */
PM_HIDDEN void pm_gemm_gemv_qpanel(pm_gemm_pool *p, size_t N, size_t K, const void *A, const uint8_t *qp, bool nibbles,
                                   float *C, bool accumulate);
/* Whether every weight of compact panels has the code in `codes` (N rows of
 * K, the decoder's), computed as the kernel computes it. */
PM_HIDDEN bool pm_gemm_qpanel_check(pm_gemm_pool *p, size_t N, size_t K, const uint8_t *qp, bool nibbles,
                                    const uint16_t *codes);
/* The codes of compact panels in the panel layout (for M > 1). */
PM_HIDDEN void pm_gemm_qpanel_expand(pm_gemm_pool *p, size_t N, size_t K, const uint8_t *qp, bool nibbles,
                                     uint16_t *panels);

/* Runs fn(ctx, t) for every t < ntasks on the pool's threads (the caller
 * takes part) and returns when all are done; tasks must touch disjoint data.
 * p may be NULL (runs them here, in order). Used for the weight decode. */
PM_HIDDEN void pm_gemm_pool_for(pm_gemm_pool *p, size_t ntasks, void (*fn)(void *ctx, size_t task), void *ctx);

#endif
