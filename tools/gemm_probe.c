/* Speed probe for the simulator's functional matmul (src/sim/gemm_fast.c):
 * times pm_gemm_kordered against OpenBLAS cblas_sgemm (dlopen'ed, same
 * C = A x B^T product) with 1 and 2 threads and prints median GFLOP/s.
 * usage: gemm_probe [M N K [reps]]   (default 1024 1024 1024 7) */
#define _POSIX_C_SOURCE 200809L
#include "../src/sim/gemm_fast.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void (*sgemm_fn)(int order, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                         int lda, const float *B, int ldb, float beta, float *C, int ldc);
typedef void (*set_threads_fn)(int);

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112, MAX_REPS = 64 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

typedef struct probe {
    size_t M, N, K;
    const float *A, *B;
    float *C;
    sgemm_fn sgemm;
    set_threads_fn set_threads;
} probe;

static void run_ours(const probe *p, pm_gemm_pool *pool)
{
    pm_gemm_kordered(pool, p->M, p->N, p->K, p->A, p->K, p->B, p->K, p->C, p->N, false);
}

static void run_blas(const probe *p)
{
    int M = (int)p->M, N = (int)p->N, K = (int)p->K;
    p->sgemm(ROW_MAJOR, NO_TRANS, TRANS, M, N, K, 1.0f, p->A, K, p->B, K, 0.0f, p->C, N);
}

static double time_ours(const probe *p, unsigned threads, int reps)
{
    pm_gemm_pool *pool = NULL;
    pm_error err = {0};
    if (pm_gemm_pool_create(threads, &pool, &err) != PM_OK) {
        fprintf(stderr, "gemm_probe: %s\n", err.message);
        exit(1);
    }
    double t[MAX_REPS];
    run_ours(p, pool); /* warm-up: packing buffer, worker threads, caches */
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        run_ours(p, pool);
        t[r] = now_s() - t0;
    }
    pm_gemm_pool_destroy(pool);
    return median(t, reps);
}

static double time_blas(const probe *p, int threads, int reps)
{
    double t[MAX_REPS];
    if (p->set_threads)
        p->set_threads(threads);
    run_blas(p);
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        run_blas(p);
        t[r] = now_s() - t0;
    }
    return median(t, reps);
}

int main(int argc, char **argv)
{
    size_t M = 1024, N = 1024, K = 1024;
    int reps = 7;
    if (argc >= 4) {
        M = strtoul(argv[1], NULL, 10), N = strtoul(argv[2], NULL, 10), K = strtoul(argv[3], NULL, 10);
        if (argc >= 5)
            reps = atoi(argv[4]);
    }
    if (!M || !N || !K || M > (1u << 20) || N > (1u << 20) || K > (1u << 20) || reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "usage: gemm_probe [M N K [reps 1..%d]] (dimensions 1..2^20)\n", MAX_REPS);
        return 2;
    }
    float *A = malloc(M * K * sizeof *A), *B = malloc(N * K * sizeof *B), *C = malloc(M * N * sizeof *C);
    if (!A || !B || !C) {
        fprintf(stderr, "gemm_probe: out of memory for %zux%zux%zu\n", M, N, K);
        return 1;
    }
    uint32_t s = 1;
    for (size_t i = 0; i < M * K; i++)
        A[i] = (float)((s = s * 1664525u + 1013904223u) >> 9) / 8388608.0f - 1.0f;
    for (size_t i = 0; i < N * K; i++)
        B[i] = (float)((s = s * 1664525u + 1013904223u) >> 9) / 8388608.0f - 1.0f;

    probe p = {M, N, K, A, B, C, NULL, NULL};
    double flops = 2.0 * (double)M * (double)N * (double)K;
    /* Ours first, before OpenBLAS is even loaded: its threads start at load
     * time and spin for a while after every call, stealing the cores. */
    double ours[3], blas[3] = {0, 0, 0};
    for (unsigned th = 1; th <= 2; th++)
        ours[th] = flops / time_ours(&p, th, reps) * 1e-9;

    void *lib = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (lib) {
        void *f = dlsym(lib, "cblas_sgemm"), *g = dlsym(lib, "openblas_set_num_threads");
        memcpy(&p.sgemm, &f, sizeof f);
        memcpy(&p.set_threads, &g, sizeof g);
    }
    if (!p.sgemm)
        fprintf(stderr, "gemm_probe: libopenblas.so.0 / cblas_sgemm not available: %s\n", lib ? "no symbol" : dlerror());
    printf("M=%zu N=%zu K=%zu, median of %d runs, GFLOP/s\n", M, N, K, reps);
    printf("threads   ours      openblas  ratio\n");
    for (int th = 1; th <= 2 && p.sgemm; th++)
        blas[th] = flops / time_blas(&p, th, reps) * 1e-9;
    for (int th = 1; th <= 2; th++) {
        if (p.sgemm)
            printf("%-9d %-9.2f %-9.2f %.3f\n", th, ours[th], blas[th], ours[th] / blas[th]);
        else
            printf("%-9d %-9.2f -\n", th, ours[th]);
    }
    free(A), free(B), free(C);
    if (lib)
        dlclose(lib);
    return 0;
}
