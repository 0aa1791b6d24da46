/* The tensor unit's functional matmul (see gemm_fast.h and docs/gemm-kernel.md).
 * This first version is the plain ordered fmaf loop: it defines the bits the
 * vectorised, threaded version must reproduce. */
#define _POSIX_C_SOURCE 200809L
#include "gemm_fast.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>

struct pm_gemm_pool {
    unsigned threads;
};

pm_status pm_gemm_pool_create(unsigned threads, pm_gemm_pool **out, pm_error *err)
{
    *out = NULL;
    if (threads == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        threads = online > 0 ? (unsigned)online : 1u;
    }
    pm_gemm_pool *p = calloc(1, sizeof *p);
    if (!p)
        return pm_error_set(err, PM_ERR_NOMEM, "gemm pool: out of memory");
    p->threads = threads;
    *out = p;
    return PM_OK;
}

void pm_gemm_pool_destroy(pm_gemm_pool *p)
{
    free(p);
}

unsigned pm_gemm_pool_threads(const pm_gemm_pool *p)
{
    return p ? p->threads : 1u;
}

void pm_gemm_kordered(pm_gemm_pool *p, size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B,
                      size_t ldb, float *C, size_t ldc, bool accumulate)
{
    (void)p;
    for (size_t m = 0; m < M; m++)
        for (size_t n = 0; n < N; n++) {
            float c = accumulate ? C[m * ldc + n] : 0.0f;
            for (size_t k = 0; k < K; k++)
                c = fmaf(A[m * lda + k], B[n * ldb + k], c);
            C[m * ldc + n] = c;
        }
}
