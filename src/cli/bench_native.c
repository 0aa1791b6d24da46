/* OpenBLAS sgemm as the native reference of `polymorph bench gemm`: the same
 * M x N x K product in fp32 on the host CPU, timed in the same process as
 * the simulated run. Loaded with dlopen so Polymorph never links against it. */
#define _POSIX_C_SOURCE 200809L
#include "bench_native.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The CBLAS interface's constants (fixed by the CBLAS standard). */
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

typedef void (*sgemm_fn)(int order, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                         int lda, const float *B, int ldb, float beta, float *C, int ldc);
typedef void (*set_threads_fn)(int threads);

static const char native_library[] = "libopenblas.so.0";

struct pm_bench_native {
    void *handle;
    sgemm_fn sgemm;
    set_threads_fn set_threads; /* NULL when the library does not export it */
};

/* dlsym returns an object pointer; POSIX guarantees it converts to a
 * function pointer, and copying the bytes says so without a cast warning. */
static void *symbol(void *handle, const char *name, size_t fn_size, void *fn_out)
{
    void *p = dlsym(handle, name);
    if (p) memcpy(fn_out, &p, fn_size);
    return p;
}

pm_bench_native *pm_bench_native_open(char *why, size_t cap)
{
    void *handle = dlopen(native_library, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *msg = dlerror();
        snprintf(why, cap, "%s could not be loaded (%s); install Debian's libopenblas0", native_library,
                 msg ? msg : "unknown reason");
        return NULL;
    }
    pm_bench_native *n = calloc(1, sizeof *n);
    if (!n) {
        dlclose(handle);
        snprintf(why, cap, "out of memory");
        return NULL;
    }
    n->handle = handle;
    if (!symbol(handle, "cblas_sgemm", sizeof n->sgemm, &n->sgemm)) {
        snprintf(why, cap, "%s has no cblas_sgemm symbol", native_library);
        pm_bench_native_close(n);
        return NULL;
    }
    symbol(handle, "openblas_set_num_threads", sizeof n->set_threads, &n->set_threads);
    return n;
}

void pm_bench_native_close(pm_bench_native *n)
{
    if (!n) return;
    dlclose(n->handle);
    free(n);
}

const char *pm_bench_native_name(const pm_bench_native *n)
{
    (void)n;
    return native_library;
}

void pm_bench_native_set_threads(pm_bench_native *n, unsigned threads)
{
    if (threads > 0 && n->set_threads) n->set_threads((int)threads);
}

double pm_bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double pm_bench_native_sgemm(pm_bench_native *n, int M, int N, int K, const float *A, const float *B, float *C,
                             int reps, double *median_s)
{
    enum { MAX_REPS = 32 };
    double times[MAX_REPS];
    if (reps < 1) reps = 1;
    if (reps > MAX_REPS) reps = MAX_REPS;
    /* B is N x K (one row per output column, as the engine stores weights),
     * so the product is A x B^T. The warm-up starts OpenBLAS's threads and
     * faults the pages in, which the simulated side has also done by then. */
    n->sgemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
    for (int r = 0; r < reps; r++) {
        double t0 = pm_bench_now_s();
        n->sgemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
        times[r] = pm_bench_now_s() - t0;
    }
    qsort(times, (size_t)reps, sizeof times[0], compare_double);
    if (median_s) median_s[0] = reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2]);
    return times[0];
}
