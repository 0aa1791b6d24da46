/* The host reference of `polymorph bench`: OpenBLAS sgemm, loaded at run
 * time with dlopen so the build has no link dependency on it. A missing
 * library is not an error: the bench reports native figures as null. */
#ifndef POLYMORPH_CLI_BENCH_NATIVE_H
#define POLYMORPH_CLI_BENCH_NATIVE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct pm_bench_native pm_bench_native;

/* Opens libopenblas.so.0. Returns NULL and writes a one-line reason into why
 * (cap bytes) when the library or its cblas_sgemm symbol is missing. */
pm_bench_native *pm_bench_native_open(char *why, size_t cap);
void pm_bench_native_close(pm_bench_native *n);

/* The library's file name as opened ("libopenblas.so.0"). */
const char *pm_bench_native_name(const pm_bench_native *n);

/* threads > 0: ask OpenBLAS for that many threads (when it exports
 * openblas_set_num_threads); 0 leaves its default (one per core). */
void pm_bench_native_set_threads(pm_bench_native *n, unsigned threads);

/* C[M x N] = A[M x K] x B[N x K]^T in fp32, row-major, timed: one warm-up
 * call, then reps timed calls; returns the best (smallest) wall time in
 * seconds and stores the median in *median_s when non-NULL. */
double pm_bench_native_sgemm(pm_bench_native *n, int M, int N, int K, const float *A, const float *B, float *C,
                             int reps, double *median_s);

/* Monotonic wall clock in seconds (shared with the simulated side so both
 * are timed by the same clock). */
double pm_bench_now_s(void);

#endif
