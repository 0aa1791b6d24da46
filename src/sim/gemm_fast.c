/* The tensor unit's functional matmul on the host (gemm_fast.h): register-
 * blocked AVX2/FMA kernels and a persistent thread pool that reproduce the
 * spec's single fmaf chain per output bit for bit. docs/gemm-kernel.md argues why. */
#define _POSIX_C_SOURCE 200809L
#include "gemm_fast.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* -DPM_GEMM_NO_SIMD builds only the portable path (how the tests check it on
 * an AVX2 host). */
#if (defined(__x86_64__) || defined(__i386__)) && !defined(PM_GEMM_NO_SIMD)
#define PM_GEMM_X86 1
#include <immintrin.h>
#define PM_AVX2 __attribute__((target("avx2,fma")))
#else
#define PM_GEMM_X86 0
#endif

/* ---- blocking ---------------------------------------------------------- */

/* Micro-tile: 6 rows x 16 columns = 12 ymm accumulators, two B vectors and a
 * broadcast A value: 15 of the 16 registers. */
enum { MR = 6, NR = 16 };
/* K block: a 16-wide B micro-panel of KC rows (16 KiB) stays in L1 while the
 * rows of one block of A stream past it; MC rows of A x KC (144 KiB) sit in L2.
 * B is packed whole (per column slice) before any tile runs; A needs no
 * packing: the kernel broadcasts its elements straight from six row pointers. */
enum { KC = 256, MC = 144 };
/* Below this many multiply-adds a call runs on the calling thread. Workers
 * that are still polling after the previous product join within a
 * microsecond, and the caller never waits for one that is asleep, so even a
 * 1 x 512 x 128 GEMV step (the edge preset's) gains from a second thread. */
#define PARALLEL_MIN_MACS ((size_t)1 << 16)
/* Fewer A rows than this: B is read once, transposed in registers, instead of
 * being packed (GEMV and other thin products run at memory speed; packing B
 * would cost as much as the product). */
#ifndef PM_GEMM_DIRECT_MAX_M
#define PM_GEMM_DIRECT_MAX_M 8
#endif
/* The packed copy of B is built for at most this many floats at a time
 * (column slices beyond). */
#define BPACK_MAX_FLOATS ((size_t)1 << 24)

/* ---- thread pool ------------------------------------------------------- */

/* A job is a count of independent tasks; any thread may run any of them. The
 * caller publishes it, works too, and returns as soon as every task is done,
 * so a worker the host scheduler wakes late costs nothing but its share.
 *
 * The simulator issues small products back to back (a SmolLM2 decode token
 * is ~1200 GEMVs of 160 outputs, 5-25 us each, with ~20 us of other host
 * work between them), so the hand-off must cost well under a microsecond:
 * between jobs, workers poll the job's sequence number for a while, and the
 * fast path takes no lock and makes no system call. The mutex and condition
 * variables serve only threads that have given up polling and sleep; a
 * publisher or finisher touches them only when it sees such a sleeper.
 *
 * The job's description (fn, ctx, ntasks) is a seqlock: `seq` is odd while the
 * caller rewrites it and even (the job's number) when published; a worker
 * takes a copy and checks that `seq` did not move meanwhile. Tasks are
 * claimed from one word holding (job number << 32 | next task), so a worker
 * holding an old job's copy can never claim a task of a newer one. */
typedef void (*pool_task_fn)(void *ctx, size_t task);

/* How long a worker polls for the next job before sleeping, and how long the
 * caller polls for the workers' last tasks. Long enough to span the gaps
 * between a decode token's products; short enough that an idle simulator's
 * threads are asleep within a fraction of a millisecond. */
#ifndef POOL_SPIN_NS
#define POOL_SPIN_NS 200000
#endif
/* Polls between clock readings (and, past POOL_YIELD_NS of polling, between
 * sched_yield calls: on a host with more runnable threads than cores a
 * poller then lets a thread with work run). */
enum { POLLS_PER_CHECK = 64 };
#ifndef POOL_YIELD_NS
#define POOL_YIELD_NS 20000
#endif

enum { CACHE_LINE = 64 };

struct pm_gemm_pool {
    unsigned threads; /* including the calling thread */
    bool simd;        /* AVX2 + FMA usable on this host */
    pthread_t *workers;
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    float *bpack;     /* packed B, grown on demand, reused */
    size_t bpack_cap; /* floats */
    float *a32;       /* bf16 entry: A widened to fp32 */
    size_t a32_cap;   /* floats */
    atomic_flag in_use; /* one job at a time; a concurrent caller runs alone */
    /* written once per job by the caller, read by every worker */
    alignas(CACHE_LINE) atomic_uint_least32_t seq;
    _Atomic(pool_task_fn) fn;
    _Atomic(void *) ctx;
    atomic_size_t ntasks;
    atomic_bool quit;
    /* written by every thread during a job */
    alignas(CACHE_LINE) atomic_uint_least64_t claim; /* job << 32 | next task */
    atomic_size_t finished;                          /* tasks of the current job done */
    /* the sleepers, changed under lock (read without it to skip the wake-up) */
    alignas(CACHE_LINE) atomic_uint sleeping_workers;
    atomic_bool caller_sleeping;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void cpu_relax(void)
{
#if PM_GEMM_X86
    _mm_pause();
#endif
}

/* One bounded poll: call after each unsuccessful look with polls counting
 * from 1; returns true once the polling time has run out. The clock starts
 * at the first check, so a poll that succeeds at once never reads it. */
typedef struct spin_clock {
    uint64_t start, now;
} spin_clock;

static bool spin_expired(spin_clock *sc, unsigned polls)
{
    cpu_relax();
    if (polls % POLLS_PER_CHECK != 0)
        return false;
    sc->now = now_ns();
    if (!sc->start)
        sc->start = sc->now;
    if (sc->now - sc->start > POOL_YIELD_NS)
        sched_yield();
    return sc->now - sc->start > POOL_SPIN_NS;
}

/* Runs tasks of job `job` until none is left to claim. The thread that
 * finishes the last one wakes the caller if it has gone to sleep. */
static void pool_claim_tasks(pm_gemm_pool *p, uint32_t job, pool_task_fn fn, void *ctx, size_t ntasks)
{
    uint64_t v = atomic_load_explicit(&p->claim, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(v >> 32) != job || (v & 0xFFFFFFFFu) >= ntasks)
            return;
        if (!atomic_compare_exchange_weak_explicit(&p->claim, &v, v + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        fn(ctx, (size_t)(v & 0xFFFFFFFFu));
        /* seq_cst, with the caller's store of caller_sleeping before it reads
         * `finished`: one of the two sees the other, so no wake-up is lost */
        if (atomic_fetch_add(&p->finished, 1) + 1 == ntasks) {
            if (atomic_load(&p->caller_sleeping)) {
                pthread_mutex_lock(&p->lock);
                pthread_cond_signal(&p->done);
                pthread_mutex_unlock(&p->lock);
            }
            return;
        }
        v = atomic_load_explicit(&p->claim, memory_order_acquire);
    }
}

/* Waits for a job numbered other than `seen` (polling, then asleep); returns
 * its number, or `seen` when the pool is stopping. */
static uint32_t pool_wait_job(pm_gemm_pool *p, uint32_t seen)
{
    spin_clock sc = {0, 0};
    for (unsigned polls = 1;; polls++) {
        uint32_t s = atomic_load_explicit(&p->seq, memory_order_acquire);
        if (s != seen && !(s & 1u))
            return s;
        if (atomic_load_explicit(&p->quit, memory_order_relaxed))
            return seen;
        if (s == seen && spin_expired(&sc, polls))
            break;
    }
    pthread_mutex_lock(&p->lock);
    /* seq_cst, with the publisher's store of seq before it reads
     * sleeping_workers: a job published after this increment is seen below,
     * one published before it is woken for */
    atomic_fetch_add(&p->sleeping_workers, 1);
    while (atomic_load(&p->seq) == seen && !atomic_load(&p->quit))
        pthread_cond_wait(&p->wake, &p->lock);
    atomic_fetch_sub(&p->sleeping_workers, 1);
    pthread_mutex_unlock(&p->lock);
    return atomic_load(&p->quit) ? seen : pool_wait_job(p, seen); /* poll again: seq may be mid-write */
}

static void *pool_worker(void *arg)
{
    pm_gemm_pool *p = arg;
    uint32_t seen = 0;
    for (;;) {
        uint32_t s = pool_wait_job(p, seen);
        if (s == seen)
            return NULL;
        pool_task_fn fn = atomic_load_explicit(&p->fn, memory_order_relaxed);
        void *ctx = atomic_load_explicit(&p->ctx, memory_order_relaxed);
        size_t ntasks = atomic_load_explicit(&p->ntasks, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&p->seq, memory_order_relaxed) != s)
            continue; /* rewritten while copied: wait for the newer job */
        seen = s;
        pool_claim_tasks(p, s, fn, ctx, ntasks);
    }
}

/* Runs fn(ctx, t) for every t < ntasks on a pool the caller holds (in_use)
 * and returns when all are done. Which thread runs a task never matters:
 * tasks own disjoint outputs. parallel = false (or a one-thread pool) runs
 * them here in order. */
static void pool_run_held(pm_gemm_pool *p, bool parallel, size_t ntasks, pool_task_fn fn, void *ctx)
{
    if (!p || p->threads < 2 || !parallel || ntasks < 2 || ntasks > 0xFFFFFFFFu) {
        for (size_t t = 0; t < ntasks; t++)
            fn(ctx, t);
        return;
    }
    /* only the holder writes seq, so it is even here */
    uint32_t job = atomic_load_explicit(&p->seq, memory_order_relaxed) + 2u;
    atomic_store_explicit(&p->seq, job - 1u, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&p->ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&p->ntasks, ntasks, memory_order_relaxed);
    atomic_store_explicit(&p->finished, 0, memory_order_relaxed);
    atomic_store_explicit(&p->claim, (uint64_t)job << 32, memory_order_relaxed);
    atomic_store(&p->seq, job); /* seq_cst: see pool_wait_job */
    if (atomic_load(&p->sleeping_workers)) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }
    pool_claim_tasks(p, job, fn, ctx, ntasks);
    spin_clock sc = {0, 0};
    for (unsigned polls = 1; atomic_load_explicit(&p->finished, memory_order_acquire) != ntasks; polls++)
        if (spin_expired(&sc, polls))
            break;
    if (atomic_load_explicit(&p->finished, memory_order_acquire) == ntasks)
        return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->caller_sleeping, true); /* seq_cst: see pool_claim_tasks */
    while (atomic_load(&p->finished) != ntasks)
        pthread_cond_wait(&p->done, &p->lock);
    atomic_store(&p->caller_sleeping, false);
    pthread_mutex_unlock(&p->lock);
}

/* pool_run_held for a caller that does not hold the pool yet: takes it, or,
 * when another job runs on it (a second caller, or a task calling back),
 * runs the tasks here. */
static void pool_run(pm_gemm_pool *p, bool parallel, size_t ntasks, pool_task_fn fn, void *ctx)
{
    bool own = p && !atomic_flag_test_and_set_explicit(&p->in_use, memory_order_acquire);
    pool_run_held(own ? p : NULL, parallel, ntasks, fn, ctx);
    if (own)
        atomic_flag_clear_explicit(&p->in_use, memory_order_release);
}

static bool host_has_avx2_fma(void)
{
#if PM_GEMM_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

/* 64-byte aligned float buffer (aligned_alloc wants a multiple of the alignment). */
static float *alloc_floats(size_t n)
{
    if (n > SIZE_MAX / sizeof(float) - 64)
        return NULL;
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes ? bytes : 64);
}

static void pool_stop(pm_gemm_pool *p, unsigned started)
{
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->quit, true);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < started; i++)
        pthread_join(p->workers[i], NULL);
}

static void pool_free(pm_gemm_pool *p)
{
    free(p->bpack);
    free(p->a32);
    free(p->workers);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

pm_status pm_gemm_pool_create(unsigned threads, pm_gemm_pool **out, pm_error *err)
{
    *out = NULL;
    if (threads == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        threads = online > 0 ? (unsigned)online : 1u;
    }
    if (threads > 1024)
        return pm_error_set(err, PM_ERR_INVALID, "gemm pool: %u threads requested (at most 1024)", threads);
    /* aligned for the cache-line separated fields */
    pm_gemm_pool *p = aligned_alloc(CACHE_LINE, (sizeof *p + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE);
    if (!p)
        return pm_error_set(err, PM_ERR_NOMEM, "gemm pool: out of memory");
    memset(p, 0, sizeof *p);
    p->threads = threads;
    p->simd = host_has_avx2_fma();
    atomic_flag_clear(&p->in_use);
    atomic_init(&p->seq, 0);
    atomic_init(&p->fn, NULL);
    atomic_init(&p->ctx, NULL);
    atomic_init(&p->ntasks, 0);
    atomic_init(&p->quit, false);
    atomic_init(&p->claim, 0);
    atomic_init(&p->finished, 0);
    atomic_init(&p->sleeping_workers, 0);
    atomic_init(&p->caller_sleeping, false);
    if (pthread_mutex_init(&p->lock, NULL) || pthread_cond_init(&p->wake, NULL) || pthread_cond_init(&p->done, NULL)) {
        free(p);
        return pm_error_set(err, PM_ERR_NOMEM, "gemm pool: cannot create its mutex or condition variables");
    }
    if (!(p->workers = calloc(threads, sizeof *p->workers))) {
        pool_free(p);
        return pm_error_set(err, PM_ERR_NOMEM, "gemm pool: out of memory for %u threads", threads);
    }
    for (unsigned i = 1; i < threads; i++) {
        if (pthread_create(&p->workers[i - 1], NULL, pool_worker, p)) {
            pool_stop(p, i - 1);
            pool_free(p);
            return pm_error_set(err, PM_ERR_NOMEM, "gemm pool: cannot start worker thread %u of %u", i, threads - 1);
        }
    }
    *out = p;
    return PM_OK;
}

void pm_gemm_pool_destroy(pm_gemm_pool *p)
{
    if (!p)
        return;
    pool_stop(p, p->threads - 1);
    pool_free(p);
}

unsigned pm_gemm_pool_threads(const pm_gemm_pool *p)
{
    return p ? p->threads : 1u;
}

uint64_t pm_gemm_pool_worker_cpu_ns(const pm_gemm_pool *p)
{
    uint64_t total = 0;
    for (unsigned i = 0; p && i + 1 < p->threads; i++) {
        clockid_t clock;
        struct timespec ts;
        if (!pthread_getcpuclockid(p->workers[i], &clock) && !clock_gettime(clock, &ts))
            total += (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    }
    return total;
}

/* ---- the product ------------------------------------------------------- */

typedef struct gemm_job {
    size_t M, N, K;
    const float *A, *B;
    /* bf16 entry: when set, the operand is these little-endian bf16 codes
     * (any alignment) instead of A / B. The vector paths only ever see A in
     * fp32 (widened first); B is widened as it is packed or transposed. */
    const unsigned char *A16, *B16;
    /* panel entry: B as bf16 codes in the panel layout (gemm_fast.h) */
    const uint16_t *P;
    /* compact-panel entry (M = 1): gemm_fast.h */
    const uint8_t *Q;
    bool nibbles;
    size_t lda, ldb, ldc;
    float *C;
    bool accumulate;
    /* packed path: columns [n0, n0 + ncols) of C, their B packed into bpack */
    size_t n0, ncols;
    float *bpack;
    size_t m_blocks, n_blocks, n_block_cols;
    /* direct and scalar paths: tasks of task_cols columns each */
    size_t task_cols;
} gemm_job;

/* Element i of a bf16 array: the code is the upper half of the fp32 bits,
 * so widening is exact. */
static inline float bf16_at(const unsigned char *p, size_t i)
{
    uint32_t u = (uint32_t)(p[2 * i] | p[2 * i + 1] << 8) << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float a_at(const gemm_job *j, size_t m, size_t k)
{
    return j->A16 ? bf16_at(j->A16, m * j->lda + k) : j->A[m * j->lda + k];
}

static inline float widen1(uint16_t code)
{
    uint32_t u = (uint32_t)code << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Where output n's weight k sits in the panel layout. */
static inline size_t panel_index(size_t K, size_t n, size_t k)
{
    return (n / PM_GEMM_PANEL) * K * PM_GEMM_PANEL + k * PM_GEMM_PANEL + n % PM_GEMM_PANEL;
}

static inline size_t qblock_bytes(bool nibbles) { return nibbles ? PM_GEMM_Q4BLOCK_BYTES : PM_GEMM_QBLOCK_BYTES; }

/* The code of output n's weight k in compact panels. */
static inline uint16_t qpanel_code(const uint8_t *qp, bool nibbles, size_t K, size_t n, size_t k)
{
    const uint8_t *blk = qp + ((n / PM_GEMM_QGROUP) * (K / 32) + k / 32) * qblock_bytes(nibbles);
    size_t lane = n % PM_GEMM_QGROUP;
    float sc, off;
    memcpy(&sc, blk + 4 * lane, sizeof sc);
    memcpy(&off, blk + 128 + 4 * lane, sizeof off);
    int q;
    if (nibbles) {
        uint8_t byte = blk[256 + (k % 32) * 16 + lane % 16];
        q = lane < 16 ? byte & 0xF : byte >> 4;
    } else {
        q = (int8_t)blk[256 + (k % 32) * 32 + lane];
    }
    return pm_gemm_qcode(sc, q, off);
}

static inline float b_at(const gemm_job *j, size_t n, size_t k)
{
    if (j->Q)
        return widen1(qpanel_code(j->Q, j->nibbles, j->K, n, k));
    if (j->P)
        return widen1(j->P[panel_index(j->K, n, k)]);
    return j->B16 ? bf16_at(j->B16, n * j->ldb + k) : j->B[n * j->ldb + k];
}

/* The definition itself: one fmaf chain per output. Also the whole product
 * on hosts without AVX2/FMA, and the ragged columns of the direct path. */
static void scalar_block(const gemm_job *j, size_t m0, size_t m1, size_t n0, size_t n1)
{
    for (size_t m = m0; m < m1; m++)
        for (size_t n = n0; n < n1; n++) {
            float c = j->accumulate ? j->C[m * j->ldc + n] : 0.0f;
            for (size_t k = 0; k < j->K; k++)
                c = fmaf(a_at(j, m, k), b_at(j, n, k), c);
            j->C[m * j->ldc + n] = c;
        }
}

static void scalar_task(void *ctx, size_t task)
{
    const gemm_job *j = ctx;
    size_t n0 = task * j->task_cols, n1 = n0 + j->task_cols < j->N ? n0 + j->task_cols : j->N;
    scalar_block(j, 0, j->M, n0, n1);
}

#if PM_GEMM_X86

/* Rows r[0..7] (8 floats each) become columns: out[i] = {r[0][i], ..., r[7][i]}. */
PM_AVX2 static inline void transpose8(__m256 r[8])
{
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* B[n][k..k+8] as fp32, widened from bf16 on the bf16 entry. */
PM_AVX2 static inline __m256 load_b8(const gemm_job *j, size_t n, size_t k)
{
    if (j->B16) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(j->B16 + 2 * (n * j->ldb + k)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    return _mm256_loadu_ps(j->B + n * j->ldb + k);
}

/* ---- packed path: B in K-major NR-wide panels, A read in place ---- */

/* Rows k0..k1 of the panel of columns n0.. (cols <= NR valid, the rest zero):
 * dst[k*NR + c] = B[n0+c][k]. k0 is a multiple of 8. */
PM_AVX2 static void pack_b_panel(const gemm_job *j, size_t n0, size_t cols, size_t k0, size_t k1, float *dst)
{
    size_t k = k0;
    if (j->P) {
        /* 16 columns of one panel (n0 is a multiple of 16): a contiguous
         * widen per k, padding columns read as the panel's zeros. */
        const uint16_t *src = j->P + panel_index(j->K, n0, 0);
        for (; k < k1; k++)
            for (size_t h = 0; h < 2; h++) {
                __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(src + k * PM_GEMM_PANEL + 8 * h));
                __m256 w = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
                _mm256_store_ps(dst + k * NR + 8 * h, w);
            }
        if (cols < NR)
            for (k = k0; k < k1; k++)
                for (size_t c = cols; c < NR; c++)
                    dst[k * NR + c] = 0.0f;
        return;
    }
    if (cols == NR) {
        for (; k + 8 <= k1; k += 8)
            for (size_t half = 0; half < 2; half++) {
                __m256 r[8];
                for (size_t i = 0; i < 8; i++)
                    r[i] = load_b8(j, n0 + half * 8 + i, k);
                transpose8(r);
                for (size_t i = 0; i < 8; i++)
                    _mm256_store_ps(dst + (k + i) * NR + half * 8, r[i]);
            }
    }
    for (; k < k1; k++)
        for (size_t c = 0; c < NR; c++)
            dst[k * NR + c] = c < cols ? b_at(j, n0 + c, k) : 0.0f;
}

/* The micro-kernel: a tile of `rows` (<= MR) x 16 outputs stays in registers
 * for kc steps and every lane is one output's chain c = fma(a, b, c), k
 * ascending. c starts from C (load) or +0. a[i] points at row i of A (at the
 * block's first k). rows is a constant in every instantiation below, so the
 * guarded rows vanish at compile time and each accumulator is a register. */
#define ROW_LOAD(i)                                                                                       \
    if (rows > i) {                                                                                       \
        c##i##0 = load ? _mm256_loadu_ps(c + i * ldc) : _mm256_setzero_ps();                            \
        c##i##1 = load ? _mm256_loadu_ps(c + i * ldc + 8) : _mm256_setzero_ps();                        \
    }
#define ROW_FMA(i)                                                                                        \
    if (rows > i) {                                                                                       \
        __m256 ak = _mm256_broadcast_ss(a##i + k);                                                        \
        c##i##0 = _mm256_fmadd_ps(ak, b0, c##i##0);                                                       \
        c##i##1 = _mm256_fmadd_ps(ak, b1, c##i##1);                                                       \
    }
#define ROW_STORE(i)                                                                                      \
    if (rows > i) {                                                                                       \
        _mm256_storeu_ps(c + i * ldc, c##i##0);                                                           \
        _mm256_storeu_ps(c + i * ldc + 8, c##i##1);                                                       \
    }

PM_AVX2 static inline __attribute__((always_inline)) void kernel_rows(size_t rows, size_t kc, const float *const a[MR],
                                                                      const float *b, float *c, size_t ldc, bool load)
{
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
    ROW_LOAD(0) ROW_LOAD(1) ROW_LOAD(2) ROW_LOAD(3) ROW_LOAD(4) ROW_LOAD(5)
    for (size_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        ROW_FMA(0) ROW_FMA(1) ROW_FMA(2) ROW_FMA(3) ROW_FMA(4) ROW_FMA(5)
        b += NR;
    }
    ROW_STORE(0) ROW_STORE(1) ROW_STORE(2) ROW_STORE(3) ROW_STORE(4) ROW_STORE(5)
}

#define KERNEL(r)                                                                                         \
    PM_AVX2 static void kernel_##r##x16(size_t kc, const float *const a[MR], const float *b, float *c,    \
                                        size_t ldc, bool load)                                            \
    {                                                                                                     \
        kernel_rows(r, kc, a, b, c, ldc, load);                                                           \
    }
KERNEL(1)
KERNEL(2)
KERNEL(3)
KERNEL(4)
KERNEL(5)
KERNEL(6)

typedef void (*kernel_fn)(size_t kc, const float *const a[MR], const float *b, float *c, size_t ldc, bool load);
/* By number of rows; index MR is the full tile. */
static const kernel_fn kernels_by_rows[MR + 1] = {NULL,        kernel_1x16, kernel_2x16, kernel_3x16,
                                                  kernel_4x16, kernel_5x16, kernel_6x16};

/* A ragged tile (rows < MR or cols < NR): the kernel runs on a full tile in a
 * local buffer and only the valid part is copied back. Padding rows repeat a
 * valid row of A and padding columns of the packed B are zero; their lanes
 * are dropped, and every valid lane is the same chain as in a full tile. */
PM_AVX2 static void kernel_edge(size_t kc, const float *const a[MR], const float *b, float *c, size_t ldc, bool load,
                                size_t rows, size_t cols)
{
    float tile[MR * NR] = {0};
    if (load)
        for (size_t i = 0; i < rows; i++)
            memcpy(tile + i * NR, c + i * ldc, cols * sizeof(float));
    kernel_6x16(kc, a, b, tile, NR, true);
    for (size_t i = 0; i < rows; i++)
        memcpy(c + i * ldc, tile + i * NR, cols * sizeof(float));
}

PM_AVX2 static void pack_task(void *ctx, size_t task)
{
    const gemm_job *j = ctx;
    size_t c0 = task * NR, cols = j->ncols - c0 < NR ? j->ncols - c0 : NR;
    pack_b_panel(j, j->n0 + c0, cols, 0, j->K, j->bpack + task * j->K * NR);
}

/* Rows [r0, r1) x columns [c0, c1) of the slice: K in KC steps, ascending;
 * between steps the tile goes back to C and is reloaded, continuing the chain.
 * The next tile's C rows are prefetched: the chain must start from C, so the
 * load cannot be deferred behind the multiply-adds. pack: pack each KC block
 * of a B panel just before its first use (it is then still in cache for the
 * kernels, and reading B overlaps the arithmetic). */
PM_AVX2 static void packed_block(const gemm_job *j, size_t r0, size_t r1, size_t c0, size_t c1, bool pack)
{
    const size_t K = j->K, ldc = j->ldc;
    for (size_t k0 = 0; k0 < K; k0 += KC) {
        size_t kc = K - k0 < KC ? K - k0 : KC;
        bool load = j->accumulate || k0 > 0;
        for (size_t cc = c0; cc < c1; cc += NR) {
            size_t cols = c1 - cc < NR ? c1 - cc : NR;
            float *panel = j->bpack + (cc / NR) * K * NR;
            if (pack)
                pack_b_panel(j, j->n0 + cc, cols, k0, k0 + kc, panel);
            const float *bp = panel + k0 * NR;
            for (size_t r = r0; r < r1; r += MR) {
                size_t rows = r1 - r < MR ? r1 - r : MR;
                float *c = j->C + r * ldc + j->n0 + cc;
                const float *a[MR];
                for (size_t i = 0; i < MR; i++)
                    a[i] = j->A + (r + (i < rows ? i : rows - 1)) * j->lda + k0;
                if (load && r + MR < r1) {
                    size_t next_rows = r1 - r - MR < MR ? r1 - r - MR : MR;
                    for (size_t i = 0; i < next_rows; i++) {
                        _mm_prefetch((const char *)(c + (MR + i) * ldc), _MM_HINT_T0);
                        _mm_prefetch((const char *)(c + (MR + i) * ldc + NR - 1), _MM_HINT_T0);
                    }
                }
                if (rows == MR && cols == NR)
                    kernel_6x16(kc, a, bp, c, ldc, load);
                else if (cols == NR)
                    kernels_by_rows[rows](kc, a, bp, c, ldc, load);
                else
                    kernel_edge(kc, a, bp, c, ldc, load, rows, cols);
            }
        }
    }
}

/* Two-phase schedule (few columns): after pack_task has packed all of B,
 * task = one block of MC rows x n_block_cols columns. */
PM_AVX2 static void packed_task(void *ctx, size_t task)
{
    const gemm_job *j = ctx;
    size_t ib = task / j->n_blocks, jb = task % j->n_blocks;
    size_t r0 = ib * MC, r1 = r0 + MC < j->M ? r0 + MC : j->M;
    size_t c0 = jb * j->n_block_cols, c1 = c0 + j->n_block_cols < j->ncols ? c0 + j->n_block_cols : j->ncols;
    packed_block(j, r0, r1, c0, c1, false);
}

/* One-phase schedule (enough columns for every thread): task = one block of
 * columns, all rows; it packs the B panels only it uses (during its first
 * block of rows), so the threads need no barrier between packing and
 * multiplying. */
PM_AVX2 static void column_task(void *ctx, size_t task)
{
    const gemm_job *j = ctx;
    size_t c0 = task * j->n_block_cols, c1 = c0 + j->n_block_cols < j->ncols ? c0 + j->n_block_cols : j->ncols;
    for (size_t r0 = 0; r0 < j->M; r0 += MC)
        packed_block(j, r0, r0 + MC < j->M ? r0 + MC : j->M, c0, c1, r0 == 0);
}

/* ---- direct path (few rows of A): B transposed in registers on the fly ---- */

/* Rows m0..m0+rows (rows <= 2) of C, columns n0..n0+8*halves (halves 1 or 2).
 * Each lane runs its chain over all of K; no packing, B is read once. */
PM_AVX2 static void direct_strip(const gemm_job *j, size_t m0, size_t rows, size_t n0, size_t halves)
{
    const size_t K = j->K;
    const float *a0 = j->A + m0 * j->lda, *a1 = rows > 1 ? a0 + j->lda : a0;
    float *c0 = j->C + m0 * j->ldc + n0, *c1 = rows > 1 ? c0 + j->ldc : c0;
    __m256 acc[2][2];
    for (size_t h = 0; h < 2; h++) {
        acc[0][h] = j->accumulate && h < halves ? _mm256_loadu_ps(c0 + 8 * h) : _mm256_setzero_ps();
        acc[1][h] = j->accumulate && h < halves ? _mm256_loadu_ps(c1 + 8 * h) : _mm256_setzero_ps();
    }
    size_t k = 0;
    for (; k + 8 <= K; k += 8)
        for (size_t h = 0; h < halves; h++) {
            __m256 r[8];
            for (size_t i = 0; i < 8; i++)
                r[i] = load_b8(j, n0 + 8 * h + i, k);
            transpose8(r);
            for (size_t i = 0; i < 8; i++)
                acc[0][h] = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + k + i), r[i], acc[0][h]);
            if (rows > 1)
                for (size_t i = 0; i < 8; i++)
                    acc[1][h] = _mm256_fmadd_ps(_mm256_broadcast_ss(a1 + k + i), r[i], acc[1][h]);
        }
    for (; k < K; k++)
        for (size_t h = 0; h < halves; h++) {
            size_t n = n0 + 8 * h;
            __m256 col = _mm256_setr_ps(b_at(j, n, k), b_at(j, n + 1, k), b_at(j, n + 2, k), b_at(j, n + 3, k),
                                        b_at(j, n + 4, k), b_at(j, n + 5, k), b_at(j, n + 6, k), b_at(j, n + 7, k));
            acc[0][h] = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + k), col, acc[0][h]);
            acc[1][h] = _mm256_fmadd_ps(_mm256_broadcast_ss(a1 + k), col, acc[1][h]);
        }
    for (size_t h = 0; h < halves; h++) {
        _mm256_storeu_ps(c0 + 8 * h, acc[0][h]);
        if (rows > 1)
            _mm256_storeu_ps(c1 + 8 * h, acc[1][h]);
    }
}

/* All M rows (M < PM_GEMM_DIRECT_MAX_M) of C, columns n0..n0+8: each 8x8
 * block of B is transposed once and applied to every row, whose running sums
 * wait in a small local array between blocks (a store and reload of a float
 * is exact, so each lane is still one chain; C itself is not used for this
 * because rows a multiple of 4 KiB apart alias in the load/store unit). */
PM_AVX2 static void direct_columns8(const gemm_job *j, size_t n0)
{
    const size_t K = j->K, lda = j->lda, ldc = j->ldc, M = j->M;
    __m256 sums[PM_GEMM_DIRECT_MAX_M];
    for (size_t m = 0; m < M; m++)
        sums[m] = j->accumulate ? _mm256_loadu_ps(j->C + m * ldc + n0) : _mm256_setzero_ps();
    size_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 r[8];
        for (size_t i = 0; i < 8; i++)
            r[i] = load_b8(j, n0 + i, k);
        transpose8(r);
        const float *a = j->A + k;
        for (size_t m = 0; m < M; m++, a += lda) {
            __m256 acc = sums[m];
            for (size_t i = 0; i < 8; i++)
                acc = _mm256_fmadd_ps(_mm256_broadcast_ss(a + i), r[i], acc);
            sums[m] = acc;
        }
    }
    for (; k < K; k++) {
        __m256 col = _mm256_setr_ps(b_at(j, n0, k), b_at(j, n0 + 1, k), b_at(j, n0 + 2, k), b_at(j, n0 + 3, k),
                                    b_at(j, n0 + 4, k), b_at(j, n0 + 5, k), b_at(j, n0 + 6, k), b_at(j, n0 + 7, k));
        for (size_t m = 0; m < M; m++)
            sums[m] = _mm256_fmadd_ps(_mm256_broadcast_ss(j->A + m * lda + k), col, sums[m]);
    }
    for (size_t m = 0; m < M; m++)
        _mm256_storeu_ps(j->C + m * ldc + n0, sums[m]);
}

PM_AVX2 static void direct_task(void *ctx, size_t task)
{
    const gemm_job *j = ctx;
    size_t n0 = task * j->task_cols, n1 = n0 + j->task_cols < j->N ? n0 + j->task_cols : j->N;
    size_t n = n0;
    if (j->M <= 2) {
        /* one or two rows: the sums stay in registers, two strips of 8 columns
         * give independent chains to hide the multiply-add latency */
        for (; n + 8 <= n1; n += 16) {
            size_t halves = n + 16 <= n1 ? 2 : 1;
            direct_strip(j, 0, j->M, n, halves);
            if (halves == 1) {
                n += 8;
                break;
            }
        }
    } else {
        for (; n + 8 <= n1; n += 8)
            direct_columns8(j, n);
    }
    if (n < n1)
        scalar_block(j, 0, j->M, n, n1);
}

/* ---- panel path (few rows of A, B in the panel layout) ---- */

/* Rows 0..M-1 of C, the 8*V columns of one panel from in-panel column o on
 * (o + 8*V <= PM_GEMM_PANEL): every lane is one output's chain over all of
 * K, each k step one contiguous read of the panel. M and V are constants in
 * every instantiation, so the M*V accumulators are registers. The sums pass
 * through `tile` (exact: a float store and reload), so a chunk that ends
 * inside the panel stores only its valid columns. */
/* The loops over rows and vectors have constant trip counts in every
 * instantiation; fully unrolled, the accumulator array becomes registers. */
#define PM_UNROLL _Pragma("GCC unroll 8")

PM_AVX2 static inline __attribute__((always_inline)) void panel_kernel(const gemm_job *j, int M, int V,
                                                                       const uint16_t *panel, size_t o, size_t n,
                                                                       size_t cols)
{
    const size_t K = j->K;
    float tile[PM_GEMM_DIRECT_MAX_M][64];
    __m256 acc[PM_GEMM_DIRECT_MAX_M][8];
    PM_UNROLL
    for (int m = 0; m < M; m++) {
        if (j->accumulate) {
            memcpy(tile[m], j->C + (size_t)m * j->ldc + n, cols * sizeof(float));
            PM_UNROLL
            for (int v = 0; v < V; v++)
                acc[m][v] = _mm256_loadu_ps(tile[m] + 8 * v);
        } else {
            PM_UNROLL
            for (int v = 0; v < V; v++)
                acc[m][v] = _mm256_setzero_ps();
        }
    }
    const uint16_t *bp = panel + o;
    const float *a = j->A;
    for (size_t k = 0; k < K; k++, bp += PM_GEMM_PANEL) {
        __m256 b[8];
        PM_UNROLL
        for (int v = 0; v < V; v++) {
            __m128i h = _mm_load_si128((const __m128i *)(const void *)(bp + 8 * v));
            b[v] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
        }
        PM_UNROLL
        for (int m = 0; m < M; m++) {
            __m256 ak = _mm256_broadcast_ss(a + (size_t)m * j->lda + k);
            PM_UNROLL
            for (int v = 0; v < V; v++)
                acc[m][v] = _mm256_fmadd_ps(ak, b[v], acc[m][v]);
        }
    }
    PM_UNROLL
    for (int m = 0; m < M; m++) {
        PM_UNROLL
        for (int v = 0; v < V; v++)
            _mm256_storeu_ps(tile[m] + 8 * v, acc[m][v]);
        memcpy(j->C + (size_t)m * j->ldc + n, tile[m], cols * sizeof(float));
    }
}

#define PANEL_KERNEL(m, v)                                                                                 \
    PM_AVX2 static void panel_##m##x##v(const gemm_job *j, const uint16_t *panel, size_t o, size_t n,      \
                                        size_t cols)                                                       \
    {                                                                                                      \
        panel_kernel(j, m, v, panel, o, n, cols);                                                          \
    }
PANEL_KERNEL(1, 8) PANEL_KERNEL(1, 4) PANEL_KERNEL(1, 2) PANEL_KERNEL(1, 1)
PANEL_KERNEL(2, 4) PANEL_KERNEL(2, 2) PANEL_KERNEL(2, 1)
PANEL_KERNEL(3, 4) PANEL_KERNEL(3, 2) PANEL_KERNEL(3, 1)
PANEL_KERNEL(4, 2) PANEL_KERNEL(4, 1) PANEL_KERNEL(5, 2) PANEL_KERNEL(5, 1)
PANEL_KERNEL(6, 2) PANEL_KERNEL(6, 1) PANEL_KERNEL(7, 2) PANEL_KERNEL(7, 1)

typedef void (*panel_fn)(const gemm_job *j, const uint16_t *panel, size_t o, size_t n, size_t cols);
/* [M][log2 V]: the widest V each M keeps in registers (M*V accumulators,
 * V panel vectors and a broadcast: at most 16), narrower ones for edges. */
static const panel_fn panel_kernels[PM_GEMM_DIRECT_MAX_M][4] = {
    {NULL, NULL, NULL, NULL},
    {panel_1x1, panel_1x2, panel_1x4, panel_1x8},
    {panel_2x1, panel_2x2, panel_2x4, NULL},
    {panel_3x1, panel_3x2, panel_3x4, NULL},
    {panel_4x1, panel_4x2, NULL, NULL},
    {panel_5x1, panel_5x2, NULL, NULL},
    {panel_6x1, panel_6x2, NULL, NULL},
    {panel_7x1, panel_7x2, NULL, NULL},
};

/* Columns [n0, n1) (n0 a multiple of 8): the widest kernel that fits the
 * rest of the current panel, then the next. */
PM_AVX2 static void panel_task(void *ctx, size_t task)
{
    const gemm_job *j = ctx;
    size_t n0 = task * j->task_cols, n1 = n0 + j->task_cols < j->N ? n0 + j->task_cols : j->N;
    int widest = j->M == 1 ? 3 : j->M <= 3 ? 2 : 1;
    for (size_t n = n0; n < n1;) {
        size_t o = n % PM_GEMM_PANEL, left = n1 - n;
        size_t room = PM_GEMM_PANEL - o, vecs = ((left < room ? left : room) + 7) / 8;
        int lv = widest;
        while ((size_t)1 << lv > vecs)
            lv--;
        size_t cols = (size_t)8 << lv;
        if (cols > left)
            cols = left;
        const uint16_t *panel = j->P + (n / PM_GEMM_PANEL) * j->K * PM_GEMM_PANEL;
        panel_kernels[j->M][lv](j, panel, o, n, cols);
        n += cols;
    }
}

/* ---- compact panels (M = 1): decode in the lanes, then the same chains ---- */

/* One group of 32 outputs over all of K: per block of 32 k, s and o stay in
 * registers; each weight is fmaf(s, q, o) rounded to bf16 by integer steps
 * (pm_gemm_qcode's arithmetic, lane for lane), then c = fmaf(a, w, c). */
PM_AVX2 static inline __attribute__((always_inline)) void qpanel_kernel(const gemm_job *j, const uint8_t *qp, size_t n,
                                                                        size_t cols, bool nibbles)
{
    const size_t blocks = j->K / 32;
    float tile[PM_GEMM_QGROUP];
    __m256 acc[4];
    if (j->accumulate)
        memcpy(tile, j->C + n, cols * sizeof(float));
    PM_UNROLL
    for (int v = 0; v < 4; v++)
        acc[v] = j->accumulate ? _mm256_loadu_ps(tile + 8 * v) : _mm256_setzero_ps();
    const __m256i half = _mm256_set1_epi32(0x7FFF), one = _mm256_set1_epi32(1);
    const __m256i keep = _mm256_set1_epi32((int)0xFFFF0000u);
    const float *a = j->A;
    const __m256i low4 = _mm256_set1_epi32(0xF);
    const size_t row = nibbles ? 16 : 32; /* code bytes per k */
    for (size_t b = 0; b < blocks; b++, qp += qblock_bytes(nibbles), a += 32) {
        const float *so = (const float *)(const void *)qp;
        const uint8_t *q = qp + 256;
        __m256 sv[4], ov[4];
        PM_UNROLL
        for (int v = 0; v < 4; v++) {
            sv[v] = _mm256_load_ps(so + 8 * v);
            ov[v] = _mm256_load_ps(so + 32 + 8 * v);
        }
        for (size_t kk = 0; kk < 32; kk++, q += row) {
            __m256 ak = _mm256_broadcast_ss(a + kk);
            PM_UNROLL
            for (int v = 0; v < 4; v++) {
                __m256i qi;
                if (nibbles) { /* outputs 0-7, 8-15: low nibbles of bytes 0-7, 8-15; 16-31: the high ones */
                    __m128i q8 = _mm_loadl_epi64((const __m128i *)(const void *)(q + 8 * (v & 1)));
                    qi = _mm256_cvtepu8_epi32(q8);
                    qi = v < 2 ? _mm256_and_si256(qi, low4) : _mm256_srli_epi32(qi, 4);
                } else {
                    __m128i q8 = _mm_loadl_epi64((const __m128i *)(const void *)(q + 8 * v));
                    qi = _mm256_cvtepi8_epi32(q8);
                }
                __m256 w = _mm256_fmadd_ps(_mm256_cvtepi32_ps(qi), sv[v], ov[v]);
                __m256i u = _mm256_castps_si256(w);
                u = _mm256_add_epi32(u, _mm256_add_epi32(half, _mm256_and_si256(_mm256_srli_epi32(u, 16), one)));
                acc[v] = _mm256_fmadd_ps(ak, _mm256_castsi256_ps(_mm256_and_si256(u, keep)), acc[v]);
            }
        }
    }
    PM_UNROLL
    for (int v = 0; v < 4; v++)
        _mm256_storeu_ps(tile + 8 * v, acc[v]);
    memcpy(j->C + n, tile, cols * sizeof(float));
}

PM_AVX2 static void qpanel_group8(const gemm_job *j, const uint8_t *qp, size_t n, size_t cols)
{
    qpanel_kernel(j, qp, n, cols, false);
}

PM_AVX2 static void qpanel_group4(const gemm_job *j, const uint8_t *qp, size_t n, size_t cols)
{
    qpanel_kernel(j, qp, n, cols, true);
}

PM_AVX2 static void qpanel_task(void *ctx, size_t task)
{
    const gemm_job *j = ctx;
    size_t n0 = task * j->task_cols, n1 = n0 + j->task_cols < j->N ? n0 + j->task_cols : j->N;
    size_t group_bytes = j->K / 32 * qblock_bytes(j->nibbles);
    for (size_t n = n0; n < n1; n += PM_GEMM_QGROUP) {
        const uint8_t *qp = j->Q + n / PM_GEMM_QGROUP * group_bytes;
        size_t cols = n1 - n < PM_GEMM_QGROUP ? n1 - n : PM_GEMM_QGROUP;
        if (j->nibbles)
            qpanel_group4(j, qp, n, cols);
        else
            qpanel_group8(j, qp, n, cols);
    }
}

/* Widens bf16 codes to fp32, 8 at a time; returns how many it did. */
PM_AVX2 static size_t widen_avx2(const unsigned char *src, size_t n, float *dst)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(src + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
    }
    return i;
}

#endif /* PM_GEMM_X86 */

#if PM_GEMM_X86
/* Runs the packed path over column slices whose packed B fits the budget.
 * Returns false (nothing written) when the packing buffer cannot be had. */
static bool run_packed(pm_gemm_pool *p, gemm_job *j, bool parallel)
{
    size_t col_slice = BPACK_MAX_FLOATS / (j->K * NR) * NR;
    col_slice = col_slice < NR ? NR : col_slice;
    size_t need = ((j->N < col_slice ? j->N : col_slice) + NR - 1) / NR * NR * j->K;
    float *own = NULL;
    if (!p) {
        if (!(j->bpack = own = alloc_floats(need)))
            return false;
    } else {
        if (p->bpack_cap < need) {
            free(p->bpack);
            p->bpack_cap = 0;
            if (!(p->bpack = alloc_floats(need)))
                return false;
            p->bpack_cap = need;
        }
        j->bpack = p->bpack;
    }
    size_t threads = parallel && p ? p->threads : 1u;
    j->m_blocks = (j->M + MC - 1) / MC;
    for (size_t n0 = 0; n0 < j->N; n0 += col_slice) {
        j->n0 = n0;
        j->ncols = j->N - n0 < col_slice ? j->N - n0 : col_slice;
        size_t panels = (j->ncols + NR - 1) / NR;
        if (threads == 1 || panels >= 2 * threads) {
            size_t n_blocks = threads == 1 ? 1 : (panels < 4 * threads ? panels : 4 * threads);
            j->n_block_cols = (panels + n_blocks - 1) / n_blocks * NR;
            pool_run_held(p, parallel, (j->ncols + j->n_block_cols - 1) / j->n_block_cols, column_task, j);
            continue;
        }
        pool_run_held(p, parallel, panels, pack_task, j);
        /* Enough blocks that every thread stays busy to the end. */
        size_t n_blocks = 1;
        while (j->m_blocks * n_blocks < 4 * threads && panels / (2 * n_blocks) >= 2)
            n_blocks *= 2;
        j->n_block_cols = (panels + n_blocks - 1) / n_blocks * NR;
        j->n_blocks = (j->ncols + j->n_block_cols - 1) / j->n_block_cols;
        pool_run_held(p, parallel, j->m_blocks * j->n_blocks, packed_task, j);
    }
    free(own);
    return true;
}
#endif

/* Widening bf16 A to fp32 (M x K, contiguous), in tasks of WIDEN_ROWS rows. */
enum { WIDEN_ROWS = 16 };

typedef struct widen_job {
    const unsigned char *src;
    size_t lda, M, K;
    float *dst;
    bool simd;
} widen_job;

static void widen_task(void *ctx, size_t task)
{
    const widen_job *w = ctx;
    for (size_t m = task * WIDEN_ROWS; m < w->M && m < (task + 1) * WIDEN_ROWS; m++) {
        const unsigned char *row = w->src + 2 * m * w->lda;
        float *out = w->dst + m * w->K;
        size_t k = 0;
#if PM_GEMM_X86
        if (w->simd)
            k = widen_avx2(row, w->K, out);
#endif
        for (; k < w->K; k++)
            out[k] = bf16_at(row, k);
    }
}

/* Everything after the argument checks, for both entry points. */
static void gemm_run(pm_gemm_pool *p, gemm_job *j)
{
    const size_t M = j->M, N = j->N, K = j->K;
    /* A second product started while this pool is busy runs alone. */
    bool own = p && !atomic_flag_test_and_set_explicit(&p->in_use, memory_order_acquire);
    pm_gemm_pool *pool = own ? p : NULL;
    bool simd = pool ? pool->simd : host_has_avx2_fma();
    size_t macs = M * N * K; /* only compared with a threshold; saturate instead of wrapping */
    if (M > SIZE_MAX / N)
        macs = SIZE_MAX;
    else if (K > SIZE_MAX / (M * N))
        macs = SIZE_MAX;
    bool parallel = pool && pool->threads > 1 && macs >= PARALLEL_MIN_MACS;
    size_t threads = parallel ? pool->threads : 1;

    float *own_a32 = NULL;
    if (j->A16 && M <= SIZE_MAX / sizeof(float) / K) {
        /* The kernels broadcast A from fp32 rows: widen it once, here. When
         * no memory is left, A16 stays and the scalar path reads it. */
        float *a32 = NULL;
        if (!pool)
            a32 = own_a32 = alloc_floats(M * K);
        else if (pool->a32_cap >= M * K)
            a32 = pool->a32;
        else {
            free(pool->a32);
            pool->a32_cap = 0;
            if ((pool->a32 = alloc_floats(M * K)))
                pool->a32_cap = M * K;
            a32 = pool->a32;
        }
        if (a32) {
            widen_job w = {j->A16, j->lda, M, K, a32, simd};
            pool_run_held(pool, parallel, (M + WIDEN_ROWS - 1) / WIDEN_ROWS, widen_task, &w);
            j->A = a32;
            j->lda = K;
            j->A16 = NULL;
        }
    }
    /* Column tasks for the unpacked paths: a multiple of 16, about four per thread. */
    size_t per = (N + 4 * threads - 1) / (4 * threads);
    j->task_cols = per < 16 ? 16 : (per + 15) / 16 * 16;
    size_t col_tasks = (N + j->task_cols - 1) / j->task_cols;
    bool done = false;
#if PM_GEMM_X86
    if (simd && !j->A16 && j->Q) {
        size_t groups = (N + PM_GEMM_QGROUP - 1) / PM_GEMM_QGROUP;
        j->task_cols = (groups + 3 * threads - 1) / (3 * threads) * PM_GEMM_QGROUP;
        pool_run_held(pool, parallel, (N + j->task_cols - 1) / j->task_cols, qpanel_task, j);
        done = true;
    } else if (simd && !j->A16 && j->P && M < PM_GEMM_DIRECT_MAX_M) {
        /* Whole panels per task when there are enough for every thread (a
         * task then streams full cache lines, 64 outputs wide), else 16-column
         * pieces of them. */
        size_t panels = (N + PM_GEMM_PANEL - 1) / PM_GEMM_PANEL;
        if (panels >= threads) {
            size_t per_panels = (panels + 3 * threads - 1) / (3 * threads);
            j->task_cols = per_panels * PM_GEMM_PANEL;
            col_tasks = (N + j->task_cols - 1) / j->task_cols;
        }
        pool_run_held(pool, parallel, col_tasks, panel_task, j);
        done = true;
    } else if (simd && !j->A16 && M < PM_GEMM_DIRECT_MAX_M) {
        pool_run_held(pool, parallel, col_tasks, direct_task, j);
        done = true;
    } else if (simd && !j->A16) {
        done = run_packed(pool, j, parallel);
        if (!done && !j->P) { /* no memory for packing: the direct path needs none */
            pool_run_held(pool, parallel, col_tasks, direct_task, j);
            done = true;
        }
    }
#endif
    if (!done)
        pool_run_held(pool, parallel, col_tasks, scalar_task, j);
    free(own_a32);
    if (own)
        atomic_flag_clear_explicit(&p->in_use, memory_order_release);
}

/* K = 0: the chain is empty. Returns true when nothing is left to do. */
static bool trivial(size_t M, size_t N, size_t K, float *C, size_t ldc, bool accumulate)
{
    if (M == 0 || N == 0)
        return true;
    if (K != 0)
        return false;
    if (!accumulate)
        for (size_t m = 0; m < M; m++)
            for (size_t n = 0; n < N; n++)
                C[m * ldc + n] = 0.0f;
    return true;
}

void pm_gemm_kordered(pm_gemm_pool *p, size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B,
                      size_t ldb, float *C, size_t ldc, bool accumulate)
{
    if (trivial(M, N, K, C, ldc, accumulate))
        return;
    gemm_job j = {.M = M, .N = N, .K = K, .A = A, .B = B, .lda = lda, .ldb = ldb, .ldc = ldc, .C = C,
                  .accumulate = accumulate};
    gemm_run(p, &j);
}

void pm_gemm_kordered_bf16(pm_gemm_pool *p, size_t M, size_t N, size_t K, const void *A, size_t lda, const void *B,
                           size_t ldb, float *C, size_t ldc, bool accumulate)
{
    if (trivial(M, N, K, C, ldc, accumulate))
        return;
    gemm_job j = {.M = M, .N = N, .K = K, .A16 = A, .B16 = B, .lda = lda, .ldb = ldb, .ldc = ldc, .C = C,
                  .accumulate = accumulate};
    gemm_run(p, &j);
}

void pm_gemm_kordered_panel(pm_gemm_pool *p, size_t M, size_t N, size_t K, const void *A, size_t lda,
                            const uint16_t *panels, float *C, size_t ldc, bool accumulate)
{
    if (trivial(M, N, K, C, ldc, accumulate))
        return;
    gemm_job j = {.M = M, .N = N, .K = K, .A16 = A, .P = panels, .lda = lda, .ldc = ldc, .C = C,
                  .accumulate = accumulate};
    gemm_run(p, &j);
}

void pm_gemm_gemv_qpanel(pm_gemm_pool *p, size_t N, size_t K, const void *A, const uint8_t *qp, bool nibbles,
                         float *C, bool accumulate)
{
    if (trivial(1, N, K, C, N, accumulate))
        return;
    gemm_job j = {.M = 1, .N = N, .K = K, .A16 = A, .Q = qp, .nibbles = nibbles, .lda = K, .ldc = N, .C = C,
                  .accumulate = accumulate};
    gemm_run(p, &j);
}

size_t pm_gemm_qpanel_bytes(size_t N, size_t K, bool nibbles)
{
    size_t groups = (N + PM_GEMM_QGROUP - 1) / PM_GEMM_QGROUP, blocks = K / 32, bb = qblock_bytes(nibbles);
    if (K % 32 || (blocks && groups > SIZE_MAX / bb / blocks))
        return 0;
    return groups * blocks * bb;
}

/* The codes of one group's block: tile[kk][lane], the kernel's arithmetic
 * (the same per-lane steps, so expansion and the check agree with it). */
#if PM_GEMM_X86
PM_AVX2 static void qblock_codes_avx2(const uint8_t *blk, bool nibbles, uint16_t tile[32][32])
{
    const __m256i half = _mm256_set1_epi32(0x7FFF), one = _mm256_set1_epi32(1), low4 = _mm256_set1_epi32(0xF);
    const float *so = (const float *)(const void *)blk;
    const uint8_t *q = blk + 256;
    const size_t row = nibbles ? 16 : 32;
    for (size_t kk = 0; kk < 32; kk++, q += row) {
        __m256i c[4];
        for (int v = 0; v < 4; v++) {
            __m256i qi;
            if (nibbles) {
                qi = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(q + 8 * (v & 1))));
                qi = v < 2 ? _mm256_and_si256(qi, low4) : _mm256_srli_epi32(qi, 4);
            } else {
                qi = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(q + 8 * v)));
            }
            __m256 w = _mm256_fmadd_ps(_mm256_cvtepi32_ps(qi), _mm256_loadu_ps(so + 8 * v), _mm256_loadu_ps(so + 32 + 8 * v));
            __m256i u = _mm256_castps_si256(w);
            u = _mm256_add_epi32(u, _mm256_add_epi32(half, _mm256_and_si256(_mm256_srli_epi32(u, 16), one)));
            c[v] = _mm256_srli_epi32(u, 16);
        }
        /* packus interleaves 128-bit halves; the permute puts lanes back in order */
        __m256i lo = _mm256_permute4x64_epi64(_mm256_packus_epi32(c[0], c[1]), 0xD8);
        __m256i hi = _mm256_permute4x64_epi64(_mm256_packus_epi32(c[2], c[3]), 0xD8);
        _mm256_storeu_si256((__m256i *)(void *)tile[kk], lo);
        _mm256_storeu_si256((__m256i *)(void *)(tile[kk] + 16), hi);
    }
}
#endif

static void qblock_codes(const uint8_t *blk, bool nibbles, bool simd, uint16_t tile[32][32])
{
#if PM_GEMM_X86
    if (simd) {
        qblock_codes_avx2(blk, nibbles, tile);
        return;
    }
#endif
    (void)simd;
    for (size_t kk = 0; kk < 32; kk++)
        for (size_t lane = 0; lane < 32; lane++)
            tile[kk][lane] = qpanel_code(blk, nibbles, 32, lane, kk);
}

/* Expansion and the check, one task per group of 32 outputs. */
typedef struct qgroup_job {
    size_t N, K;
    const uint8_t *qp;
    bool nibbles, simd;
    uint16_t *panels;     /* expand: the panel layout */
    const uint16_t *want; /* check: row-major codes */
    atomic_bool differs;
} qgroup_job;

static void qexpand_task(void *ctx, size_t g)
{
    qgroup_job *q = ctx;
    size_t blocks = q->K / 32, bb = qblock_bytes(q->nibbles), n0 = g * PM_GEMM_QGROUP;
    uint16_t tile[32][32];
    uint16_t *dst = q->panels + (n0 / PM_GEMM_PANEL) * q->K * PM_GEMM_PANEL + n0 % PM_GEMM_PANEL;
    for (size_t b = 0; b < blocks; b++) {
        qblock_codes(q->qp + (g * blocks + b) * bb, q->nibbles, q->simd, tile);
        for (size_t kk = 0; kk < 32; kk++)
            memcpy(dst + (b * 32 + kk) * PM_GEMM_PANEL, tile[kk], sizeof tile[kk]); /* lanes past N: code of +0 = 0 */
    }
    /* the panel's second half when no group fills it */
    if (n0 % PM_GEMM_PANEL == 0 && n0 + PM_GEMM_QGROUP >= q->N)
        for (size_t k = 0; k < q->K; k++)
            memset(dst + k * PM_GEMM_PANEL + PM_GEMM_QGROUP, 0, PM_GEMM_QGROUP * sizeof *dst);
}

void pm_gemm_qpanel_expand(pm_gemm_pool *p, size_t N, size_t K, const uint8_t *qp, bool nibbles, uint16_t *panels)
{
    qgroup_job q = {.N = N, .K = K, .qp = qp, .nibbles = nibbles, .simd = host_has_avx2_fma(), .panels = panels};
    atomic_init(&q.differs, false);
    pool_run(p, N * K >= PARALLEL_MIN_MACS, (N + PM_GEMM_QGROUP - 1) / PM_GEMM_QGROUP, qexpand_task, &q);
}

static void qcheck_task(void *ctx, size_t g)
{
    qgroup_job *q = ctx;
    size_t blocks = q->K / 32, bb = qblock_bytes(q->nibbles), n0 = g * PM_GEMM_QGROUP;
    size_t lanes = q->N - n0 < PM_GEMM_QGROUP ? q->N - n0 : PM_GEMM_QGROUP;
    uint16_t tile[32][32];
    for (size_t b = 0; b < blocks && !atomic_load_explicit(&q->differs, memory_order_relaxed); b++) {
        qblock_codes(q->qp + (g * blocks + b) * bb, q->nibbles, q->simd, tile);
        for (size_t lane = 0; lane < lanes; lane++) {
            const uint16_t *want = q->want + (n0 + lane) * q->K + b * 32;
            for (size_t kk = 0; kk < 32; kk++)
                if (tile[kk][lane] != want[kk]) {
                    atomic_store_explicit(&q->differs, true, memory_order_relaxed);
                    return;
                }
        }
    }
}

bool pm_gemm_qpanel_check(pm_gemm_pool *p, size_t N, size_t K, const uint8_t *qp, bool nibbles, const uint16_t *codes)
{
    qgroup_job q = {.N = N, .K = K, .qp = qp, .nibbles = nibbles, .simd = host_has_avx2_fma(), .want = codes};
    atomic_init(&q.differs, false);
    pool_run(p, N * K >= PARALLEL_MIN_MACS, (N + PM_GEMM_QGROUP - 1) / PM_GEMM_QGROUP, qcheck_task, &q);
    return !atomic_load(&q.differs);
}

size_t pm_gemm_panel_elems(size_t N, size_t K)
{
    size_t panels = (N + PM_GEMM_PANEL - 1) / PM_GEMM_PANEL;
    if (K && panels > SIZE_MAX / PM_GEMM_PANEL / K)
        return 0;
    return panels * PM_GEMM_PANEL * K;
}

/* Repacking: one task per panel; a k-row of the panel gathers one code from
 * each of 64 weight rows (the rows are read once each, 64 at a time, so the
 * reads stay in cache lines already fetched for the previous k). */
typedef struct panel_pack_job {
    size_t N, K, ldb;
    const uint16_t *B;
    uint16_t *out;
} panel_pack_job;

static void panel_pack_task(void *ctx, size_t task)
{
    const panel_pack_job *pj = ctx;
    size_t n0 = task * PM_GEMM_PANEL, cols = pj->N - n0 < PM_GEMM_PANEL ? pj->N - n0 : PM_GEMM_PANEL;
    uint16_t *dst = pj->out + task * pj->K * PM_GEMM_PANEL;
    for (size_t k0 = 0; k0 < pj->K; k0 += 64) {
        size_t k1 = k0 + 64 < pj->K ? k0 + 64 : pj->K;
        for (size_t c = 0; c < PM_GEMM_PANEL; c++) {
            const uint16_t *row = pj->B + (n0 + c) * pj->ldb;
            for (size_t k = k0; k < k1; k++)
                dst[k * PM_GEMM_PANEL + c] = c < cols ? row[k] : 0;
        }
    }
}

void pm_gemm_panel_pack(pm_gemm_pool *p, size_t N, size_t K, const uint16_t *B, size_t ldb, uint16_t *panels)
{
    panel_pack_job pj = {N, K, ldb, B, panels};
    size_t count = (N + PM_GEMM_PANEL - 1) / PM_GEMM_PANEL;
    pool_run(p, N * K >= PARALLEL_MIN_MACS, count, panel_pack_task, &pj);
}

void pm_gemm_pool_for(pm_gemm_pool *p, size_t ntasks, void (*fn)(void *ctx, size_t task), void *ctx)
{
    pool_run(p, true, ntasks, fn, ctx);
}
