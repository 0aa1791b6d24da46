/* pm_gemm_kordered (and its bf16-operand twin) against the spec's own loop
 * (one fmaf chain per output, k ascending): every output bit must match for
 * ragged shapes, strided operands, special values, accumulate on/off and any
 * thread count. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include "test.h"

#include "../../src/sim/gemm_fast.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* xorshift64*: reproducible operands without global state. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* A bf16 value held in fp32: random sign, exponent within 2^+-20, 7-bit mantissa. */
static float rand_bf16(uint64_t *s)
{
    uint64_t r = rng_next(s);
    uint32_t sign = (uint32_t)(r & 1), exp = 127 - 20 + (uint32_t)((r >> 1) % 41), mant = (uint32_t)((r >> 8) & 0x7F);
    return from_bits(sign << 31 | exp << 23 | mant << 16);
}

/* Mostly ordinary values, with zeros of both signs, bf16 subnormals, the
 * smallest normals and huge values whose products overflow. */
static float rand_special(uint64_t *s)
{
    uint64_t r = rng_next(s);
    uint32_t sign = (uint32_t)(r & 1) << 31, mant = (uint32_t)((r >> 8) & 0x7F) << 16;
    switch ((r >> 20) % 8) {
    case 0: return from_bits(sign);                                     /* +-0 */
    case 1: return from_bits(sign | (mant ? mant : 1u << 16));         /* subnormal */
    case 2: return from_bits(sign | 1u << 23 | mant);                   /* tiny normal */
    case 3: return from_bits(sign | (uint32_t)(240 + (r >> 30) % 14) << 23 | mant); /* huge */
    default: return rand_bf16(s);
    }
}

static void fill(float *x, size_t n, uint64_t *s, bool special)
{
    for (size_t i = 0; i < n; i++)
        x[i] = special ? rand_special(s) : rand_bf16(s);
}

/* The definition, written independently of the library. */
static void reference(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb, float *C,
                      size_t ldc, bool accumulate)
{
    for (size_t m = 0; m < M; m++)
        for (size_t n = 0; n < N; n++) {
            float c = accumulate ? C[m * ldc + n] : 0.0f;
            for (size_t k = 0; k < K; k++)
                c = fmaf(A[m * lda + k], B[n * ldb + k], c);
            C[m * ldc + n] = c;
        }
}

typedef struct shape {
    size_t M, N, K, lda, ldb, ldc;
    bool accumulate, special;
} shape;

#define POOLS 5
static const unsigned pool_threads[POOLS] = {1, 2, 3, 5, 0};

/* The operands are bf16 values held in fp32: their codes for the bf16 entry,
 * little-endian, one byte off any alignment. */
static unsigned char *bf16_codes(const float *x, size_t n)
{
    unsigned char *buf = malloc(2 * n + 1);
    if (!buf)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = to_bits(x[i]);
        buf[1 + 2 * i] = (unsigned char)(u >> 16);
        buf[2 + 2 * i] = (unsigned char)(u >> 24);
    }
    return buf;
}

/* Runs one shape on every pool (and on no pool), through both entry points,
 * and compares every element of C, the padding between rows included (it
 * must be left alone). Returns the number of mismatching elements. */
static size_t check_shape(pm_gemm_pool *const pools[POOLS], const shape *sh, uint64_t *s)
{
    size_t asz = sh->M ? (sh->M - 1) * sh->lda + sh->K : 0, bsz = sh->N ? (sh->N - 1) * sh->ldb + sh->K : 0;
    size_t csz = sh->M * sh->ldc;
    float *A = malloc((asz + 1) * sizeof *A), *B = malloc((bsz + 1) * sizeof *B);
    float *C0 = malloc((csz + 1) * sizeof *C0), *want = malloc((csz + 1) * sizeof *want);
    float *got = malloc((csz + 1) * sizeof *got);
    unsigned char *A16 = NULL, *B16 = NULL;
    size_t bad = 0;
    if (!A || !B || !C0 || !want || !got) {
        CHECK_MSG(0, "out of memory for %zux%zux%zu", sh->M, sh->N, sh->K);
        bad = 1;
        goto out;
    }
    fill(A, asz, s, sh->special);
    fill(B, bsz, s, sh->special);
    fill(C0, csz, s, sh->special);
    memcpy(want, C0, csz * sizeof *want);
    reference(sh->M, sh->N, sh->K, A, sh->lda, B, sh->ldb, want, sh->ldc, sh->accumulate);
    A16 = bf16_codes(A, asz);
    B16 = bf16_codes(B, bsz);
    if (!A16 || !B16) {
        CHECK_MSG(0, "out of memory for %zux%zux%zu", sh->M, sh->N, sh->K);
        bad = 1;
        goto out;
    }
    /* The panel entry: B repacked (its layout checked here against the
     * definition in gemm_fast.h), then the same product. */
    size_t pelems = pm_gemm_panel_elems(sh->N, sh->K);
    uint16_t *B16a = malloc((bsz + 1) * sizeof *B16a), *panels = aligned_alloc(64, (pelems * 2 + 64) & ~(size_t)63);
    if (!B16a || !panels) {
        CHECK_MSG(0, "out of memory for %zux%zux%zu", sh->M, sh->N, sh->K);
        free(B16a), free(panels);
        bad = 1;
        goto out;
    }
    for (size_t i = 0; i < bsz; i++)
        B16a[i] = (uint16_t)(to_bits(B[i]) >> 16);
    memset(panels, 0xA5, pelems * 2);
    pm_gemm_panel_pack(pools[1], sh->N, sh->K, B16a, sh->ldb, panels);
    for (size_t n = 0; n < (sh->N + 63) / 64 * 64; n++)
        for (size_t k = 0; k < sh->K; k++) {
            uint16_t want_code = n < sh->N ? B16a[n * sh->ldb + k] : 0;
            if (panels[(n / 64) * sh->K * 64 + k * 64 + n % 64] != want_code) {
                if (bad < 3)
                    fprintf(stderr, "  panel %zux%zu: (n %zu, k %zu) misplaced\n", sh->N, sh->K, n, k);
                bad++;
            }
        }
    for (int bf16 = 0; bf16 < 3; bf16++)
        for (int pi = -1; pi < POOLS; pi++) {
            pm_gemm_pool *pool = pi < 0 ? NULL : pools[pi];
            memcpy(got, C0, csz * sizeof *got);
            if (bf16 == 2)
                pm_gemm_kordered_panel(pool, sh->M, sh->N, sh->K, A16 + 1, sh->lda, panels, got, sh->ldc,
                                       sh->accumulate);
            else if (bf16)
                pm_gemm_kordered_bf16(pool, sh->M, sh->N, sh->K, A16 + 1, sh->lda, B16 + 1, sh->ldb, got, sh->ldc,
                                      sh->accumulate);
            else
                pm_gemm_kordered(pool, sh->M, sh->N, sh->K, A, sh->lda, B, sh->ldb, got, sh->ldc, sh->accumulate);
            for (size_t i = 0; i < csz; i++)
                if (to_bits(got[i]) != to_bits(want[i])) {
                    if (bad < 3)
                        fprintf(stderr,
                                "  %s %zux%zux%zu lda %zu ldb %zu ldc %zu acc %d special %d threads %u: C[%zu][%zu] = "
                                "%08x, want %08x\n",
                                bf16 == 2 ? "panel" : bf16 ? "bf16" : "fp32", sh->M, sh->N, sh->K, sh->lda, sh->ldb, sh->ldc,
                                sh->accumulate, sh->special, pi < 0 ? 1u : pm_gemm_pool_threads(pool), i / sh->ldc,
                                i % sh->ldc, to_bits(got[i]), to_bits(want[i]));
                    bad++;
                }
        }
    free(B16a), free(panels);
out:
    free(A), free(B), free(C0), free(want), free(got), free(A16), free(B16);
    return bad;
}

static void make_pools(pm_gemm_pool *pools[POOLS])
{
    for (int i = 0; i < POOLS; i++) {
        pm_error err = {0};
        pools[i] = NULL;
        CHECK_MSG(pm_gemm_pool_create(pool_threads[i], &pools[i], &err) == PM_OK, "%s", err.message);
    }
}

static void free_pools(pm_gemm_pool *pools[POOLS])
{
    for (int i = 0; i < POOLS; i++)
        pm_gemm_pool_destroy(pools[i]);
}

TEST(test_pool_threads)
{
    pm_gemm_pool *p = NULL;
    pm_error err = {0};
    CHECK(pm_gemm_pool_create(3, &p, &err) == PM_OK);
    CHECK(pm_gemm_pool_threads(p) == 3);
    pm_gemm_pool_destroy(p);
    CHECK(pm_gemm_pool_create(0, &p, &err) == PM_OK);
    CHECK(pm_gemm_pool_threads(p) >= 1);
    pm_gemm_pool_destroy(p);
    CHECK(pm_gemm_pool_create(100000, &p, &err) == PM_ERR_INVALID);
    CHECK(p == NULL);
    CHECK(strstr(err.message, "100000") != NULL);
    CHECK(pm_gemm_pool_threads(NULL) == 1);
    pm_gemm_pool_destroy(NULL);
}

/* Every (M, N, K) in 1..70 is reachable; shapes are drawn so the tile edges
 * (MR = 6, NR = 16, 8-wide transposes) are crossed in all combinations. */
TEST(test_ragged_random)
{
    pm_gemm_pool *pools[POOLS];
    make_pools(pools);
    uint64_t s = 0x9E3779B97F4A7C15ULL;
    size_t bad = 0;
    for (int t = 0; t < 400 && bad == 0; t++) {
        shape sh = {.M = 1 + rng_next(&s) % 70, .N = 1 + rng_next(&s) % 70, .K = 1 + rng_next(&s) % 70};
        sh.lda = sh.K + (t % 3 ? 0 : rng_next(&s) % 9);
        sh.ldb = sh.K + (t % 4 ? 0 : rng_next(&s) % 9);
        sh.ldc = sh.N + (t % 5 ? 0 : rng_next(&s) % 9);
        sh.accumulate = t % 2;
        sh.special = t % 7 == 3;
        bad += check_shape(pools, &sh, &s);
    }
    CHECK_MSG(bad == 0, "%zu mismatching outputs", bad);
    free_pools(pools);
}

/* The panel path's shapes: M < 8 (one to seven rows share each panel read),
 * N across the 64-output panels and the 8/16/32/64-column kernels that finish
 * a task inside one, K short and long. */
TEST(test_panel_small_m)
{
    pm_gemm_pool *pools[POOLS];
    make_pools(pools);
    uint64_t s = 0x5EED5EEDULL;
    static const size_t widths[] = {1, 7, 8, 9, 16, 24, 40, 63, 64, 65, 120, 192, 200, 576, 1000};
    size_t bad = 0;
    for (size_t w = 0; w < sizeof widths / sizeof widths[0] && bad == 0; w++)
        for (size_t M = 1; M < 8 && bad == 0; M++) {
            shape sh = {.M = M, .N = widths[w], .K = 1 + rng_next(&s) % 300};
            sh.lda = sh.K + (M % 2 ? 0 : 3);
            sh.ldb = sh.K + (w % 3 ? 0 : 5);
            sh.ldc = sh.N + (w % 2 ? 0 : 7);
            sh.accumulate = (M + w) % 2;
            sh.special = w % 4 == 1;
            bad += check_shape(pools, &sh, &s);
        }
    CHECK_MSG(bad == 0, "%zu mismatching outputs", bad);
    free_pools(pools);
}

/* Compact panels (int8 and 4-bit codes) against the definition: each weight's code is
 * pm_gemm_qcode(s, q, o) (fmaf, then round to nearest even), and the product
 * is the one fmaf chain per output over those codes. Scales and offsets run
 * from subnormal to overflowing, with zeros of both signs; N crosses the
 * 32-output groups. The M > 1 route expands them into the panel layout. */
static float rand_scale(uint64_t *s)
{
    uint64_t r = rng_next(s);
    uint32_t sign = (uint32_t)(r & 1) << 31, mant = (uint32_t)(r >> 9) & 0x7FFFFF;
    switch ((r >> 40) % 8) {
    case 0: return from_bits(sign);                                           /* +-0 */
    case 1: return from_bits(sign | mant);                                    /* subnormal */
    case 2: return from_bits(sign | (uint32_t)(250 + (r >> 50) % 4) << 23 | mant); /* q*s may overflow */
    default: return from_bits(sign | (uint32_t)(110 + (r >> 50) % 30) << 23 | mant);
    }
}

TEST(test_compact_panels)
{
    pm_gemm_pool *pools[POOLS];
    make_pools(pools);
    uint64_t s = 0xC0FFEEULL;
    size_t bad = 0;
    static const size_t Ns[] = {1, 31, 32, 33, 100, 576};
    for (size_t t = 0; t < 48 && bad == 0; t++) {
        bool nib = t >= 24; /* 4-bit codes */
        size_t N = Ns[t % 6], K = 32 * (1 + rng_next(&s) % 20), blocks = K / 32;
        size_t bytes = pm_gemm_qpanel_bytes(N, K, nib), bb = nib ? PM_GEMM_Q4BLOCK_BYTES : PM_GEMM_QBLOCK_BYTES;
        uint8_t *qp = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        uint16_t *codes = malloc(N * K * sizeof *codes);
        float *A = malloc(K * sizeof *A), *Bf = malloc(N * K * sizeof *Bf), *C0 = malloc(N * sizeof *C0);
        float *want = malloc(N * sizeof *want), *got = malloc(N * sizeof *got);
        unsigned char *A16 = NULL;
        uint16_t *panels = aligned_alloc(64, (pm_gemm_panel_elems(N, K) * 2 + 63) & ~(size_t)63);
        if (!qp || !codes || !A || !Bf || !C0 || !want || !got || !panels) {
            CHECK_MSG(0, "out of memory");
            bad = 1;
            goto next;
        }
        memset(qp, 0, bytes);
        for (size_t n = 0; n < N; n++)
            for (size_t b = 0; b < blocks; b++) {
                uint8_t *blk = qp + ((n / 32) * blocks + b) * bb;
                float sc = rand_scale(&s), off = t % 3 == 0 ? -0.0f : rand_scale(&s);
                memcpy(blk + 4 * (n % 32), &sc, 4);
                memcpy(blk + 128 + 4 * (n % 32), &off, 4);
                for (size_t i = 0; i < 32; i++) {
                    int8_t q = (int8_t)(rng_next(&s) & (nib ? 0xF : 0xFF));
                    if (nib) /* output j: byte j % 16 of the k row, low nibble for j < 16 */
                        blk[256 + i * 16 + n % 16] |= (uint8_t)(n % 32 < 16 ? q : q << 4);
                    else
                        blk[256 + i * 32 + n % 32] = (uint8_t)q;
                    uint16_t c = pm_gemm_qcode(sc, q, off);
                    codes[n * K + b * 32 + i] = c;
                    Bf[n * K + b * 32 + i] = from_bits((uint32_t)c << 16);
                }
            }
        /* the code itself: round to nearest even of the fmaf result */
        for (size_t n = 0; n < N && bad < 3; n++) {
            const uint8_t *blk = qp + (n / 32) * blocks * bb;
            float sc, off;
            memcpy(&sc, blk + 4 * (n % 32), 4);
            memcpy(&off, blk + 128 + 4 * (n % 32), 4);
            int q0 = nib ? (n % 32 < 16 ? blk[256 + n % 16] & 0xF : blk[256 + n % 16] >> 4) : (int8_t)blk[256 + n % 32];
            float w = fmaf(sc, (float)q0, off);
            uint32_t u = to_bits(w), lo = u & 0xFFFF, hi = u >> 16;
            uint32_t rne = lo > 0x8000 || (lo == 0x8000 && (hi & 1)) ? hi + 1 : hi;
            if (w == w && codes[n * K] != (uint16_t)rne)
                bad++, fprintf(stderr, "  qcode(%08x) = %04x, want %04x\n", u, codes[n * K], rne);
        }
        fill(A, K, &s, false);
        fill(C0, N, &s, false);
        A16 = bf16_codes(A, K);
        if (!A16) {
            bad = 1;
            goto next;
        }
        bool acc = t % 2;
        memcpy(want, C0, N * sizeof *want);
        reference(1, N, K, A, K, Bf, K, want, N, acc);
        for (int pi = -1; pi < POOLS; pi++) {
            pm_gemm_pool *pool = pi < 0 ? NULL : pools[pi];
            memcpy(got, C0, N * sizeof *got);
            pm_gemm_gemv_qpanel(pool, N, K, A16 + 1, qp, nib, got, acc);
            for (size_t n = 0; n < N; n++)
                if (to_bits(got[n]) != to_bits(want[n])) {
                    if (bad < 3)
                        fprintf(stderr, "  compact%s N %zu K %zu: C[%zu] = %08x, want %08x\n", nib ? " 4-bit" : "", N, K,
                                n, to_bits(got[n]), to_bits(want[n]));
                    bad++;
                }
        }
        /* the check accepts these codes and notices any one changed */
        for (int pi = -1; pi < POOLS; pi++) {
            pm_gemm_pool *pool = pi < 0 ? NULL : pools[pi];
            size_t at = rng_next(&s) % (N * K);
            CHECK(pm_gemm_qpanel_check(pool, N, K, qp, nib, codes));
            codes[at] ^= 1;
            CHECK(!pm_gemm_qpanel_check(pool, N, K, qp, nib, codes));
            codes[at] ^= 1;
        }
        pm_gemm_qpanel_expand(pools[1], N, K, qp, nib, panels);
        for (size_t n = 0; n < (N + 63) / 64 * 64; n++)
            for (size_t k = 0; k < K; k++)
                if (panels[(n / 64) * K * 64 + k * 64 + n % 64] != (n < N ? codes[n * K + k] : 0)) {
                    if (bad < 3)
                        fprintf(stderr, "  expand N %zu K %zu: (n %zu, k %zu) wrong\n", N, K, n, k);
                    bad++;
                }
    next:
        free(qp), free(codes), free(A), free(Bf), free(C0), free(want), free(got), free(A16), free(panels);
    }
    CHECK_MSG(bad == 0, "%zu mismatches", bad);
    free_pools(pools);
}

/* Sizes across the blocking boundaries (K > KC = 256, M > MC = 144) and above
 * the threading threshold, plus thin products on the direct path. */
TEST(test_large_shapes)
{
    static const shape shapes[] = {
        {257, 129, 300, 300, 300, 129, false, false},
        {257, 129, 300, 311, 305, 140, true, false},
        {145, 200, 513, 513, 513, 200, true, true},
        {300, 47, 257, 257, 260, 50, false, false},
        {1, 4096, 513, 513, 513, 4096, false, false},
        {1, 1000, 1023, 1030, 1025, 1000, true, true},
        {2, 333, 700, 700, 701, 333, true, false},
        {3, 517, 1000, 1000, 1000, 520, false, false},
        {4, 256, 1024, 1024, 1024, 256, true, false},
        {7, 1033, 129, 129, 129, 1033, false, true},
        {64, 64, 2048, 2048, 2048, 64, false, false},
    };
    pm_gemm_pool *pools[POOLS];
    make_pools(pools);
    uint64_t s = 12345;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        CHECK_MSG(check_shape(pools, &shapes[i], &s) == 0, "shape %zu", i);
    free_pools(pools);
}

/* K so long that the packed copies of B and of A are built in column and in
 * row slices. */
TEST(test_packing_slices)
{
    static const shape shapes[] = {
        {7, 240, 70001, 70001, 70003, 240, true, false},
        {150, 20, 70001, 70002, 70001, 21, false, false},
    };
    pm_gemm_pool *pools[POOLS];
    make_pools(pools);
    uint64_t s = 777;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        CHECK_MSG(check_shape(pools, &shapes[i], &s) == 0, "shape %zu", i);
    free_pools(pools);
}

/* Sign of zero: (-x)*(+0) + (+0) is +0, and a chain of -0 products from a -0
 * start stays -0; a fresh product starts from +0, never -0. */
TEST(test_signed_zero)
{
    pm_gemm_pool *p = NULL;
    pm_error err = {0};
    CHECK(pm_gemm_pool_create(2, &p, &err) == PM_OK);
    float A[2 * 3] = {-1.0f, 2.0f, -3.0f, 0.0f, -0.0f, 0.0f};
    float B[17 * 3];
    for (size_t i = 0; i < 17 * 3; i++)
        B[i] = i % 2 ? -0.0f : 0.0f;
    float C[2 * 17];
    for (size_t i = 0; i < 2 * 17; i++)
        C[i] = -0.0f;
    float want[2 * 17];
    memcpy(want, C, sizeof C);
    reference(2, 17, 3, A, 3, B, 3, want, 17, true);
    pm_gemm_kordered(p, 2, 17, 3, A, 3, B, 3, C, 17, true);
    for (size_t i = 0; i < 2 * 17; i++)
        CHECK_MSG(to_bits(C[i]) == to_bits(want[i]), "C[%zu] = %08x, want %08x", i, to_bits(C[i]), to_bits(want[i]));
    reference(2, 17, 3, A, 3, B, 3, want, 17, false);
    pm_gemm_kordered(p, 2, 17, 3, A, 3, B, 3, C, 17, false);
    for (size_t i = 0; i < 2 * 17; i++)
        CHECK_MSG(to_bits(C[i]) == to_bits(want[i]) && to_bits(C[i]) == 0, "C[%zu] = %08x", i, to_bits(C[i]));
    pm_gemm_pool_destroy(p);
}

/* K = 0: the chain is empty, so C is +0 (or unchanged when accumulating);
 * M or N = 0 writes nothing. */
TEST(test_empty_dimensions)
{
    pm_gemm_pool *p = NULL;
    pm_error err = {0};
    CHECK(pm_gemm_pool_create(2, &p, &err) == PM_OK);
    float A[4] = {1, 2, 3, 4}, B[4] = {1, 2, 3, 4}, C[6] = {-0.0f, 5, 6, 7, 8, 9};
    pm_gemm_kordered(p, 2, 3, 0, A, 2, B, 2, C, 3, true);
    CHECK(to_bits(C[0]) == 0x80000000u && C[1] == 5 && C[5] == 9);
    pm_gemm_kordered(p, 2, 3, 0, A, 2, B, 2, C, 3, false);
    for (int i = 0; i < 6; i++)
        CHECK(to_bits(C[i]) == 0);
    C[0] = 42;
    pm_gemm_kordered(p, 0, 3, 2, A, 2, B, 2, C, 3, false);
    pm_gemm_kordered(p, 2, 0, 2, A, 2, B, 2, C, 3, false);
    CHECK(C[0] == 42);
    pm_gemm_pool_destroy(p);
}

/* Infinities and NaNs propagate as in the scalar chain (x86 FMA and fmaf give
 * the same default NaN for inf - inf and inf * 0). */
TEST(test_non_finite)
{
    float A[3 * 20], B[17 * 20], C[3 * 17], want[3 * 17];
    uint64_t s = 99;
    for (size_t i = 0; i < 3 * 20; i++)
        A[i] = rng_next(&s) % 11 == 0 ? (rng_next(&s) % 2 ? INFINITY : -INFINITY) : rand_bf16(&s);
    for (size_t i = 0; i < 17 * 20; i++)
        B[i] = rng_next(&s) % 13 == 0 ? 0.0f : rand_special(&s);
    for (size_t i = 0; i < 3 * 17; i++)
        C[i] = want[i] = rand_bf16(&s);
    reference(3, 17, 20, A, 20, B, 20, want, 17, true);
    pm_gemm_kordered(NULL, 3, 17, 20, A, 20, B, 20, C, 17, true);
    size_t nans = 0;
    for (size_t i = 0; i < 3 * 17; i++) {
        nans += isnan(want[i]);
        CHECK_MSG(to_bits(C[i]) == to_bits(want[i]), "C[%zu] = %08x, want %08x", i, to_bits(C[i]), to_bits(want[i]));
    }
    CHECK(nans > 0); /* the case exercises NaN creation at all */
    unsigned char *A16 = bf16_codes(A, 3 * 20), *B16 = bf16_codes(B, 17 * 20);
    CHECK(A16 && B16);
    if (A16 && B16) {
        for (size_t i = 0; i < 3 * 17; i++)
            C[i] = want[i];
        reference(3, 17, 20, A, 20, B, 20, want, 17, true);
        pm_gemm_kordered_bf16(NULL, 3, 17, 20, A16 + 1, 20, B16 + 1, 20, C, 17, true);
        for (size_t i = 0; i < 3 * 17; i++)
            CHECK_MSG(to_bits(C[i]) == to_bits(want[i]), "bf16 C[%zu] = %08x, want %08x", i, to_bits(C[i]),
                      to_bits(want[i]));
    }
    free(A16), free(B16);
}

/* Two products on one pool at once: the second runs alone, both exact. */
/* ---- the pool's hand-off ---------------------------------------------- */

/* Sleeps for `us` microseconds (0: returns at once). */
static void sleep_us(unsigned us)
{
    struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L};
    if (us)
        nanosleep(&ts, NULL);
}

typedef struct count_job {
    unsigned runs[64];
    unsigned task_sleep_us; /* how long every task takes (0: no time at all) */
    pthread_t caller;
    bool on_worker[64]; /* whether the task ran on another thread than the caller */
} count_job;

static void count_task(void *ctx, size_t task)
{
    count_job *c = ctx;
    c->runs[task]++; /* tasks own disjoint entries */
    c->on_worker[task] = !pthread_equal(pthread_self(), c->caller);
    sleep_us(c->task_sleep_us);
}

/* Every task of every job runs exactly once and is finished when the call
 * returns, whether the workers are polling (jobs back to back), asleep (a
 * pause longer than their polling window before the job) or slower than the
 * caller's own polling (tasks that sleep, so the caller sleeps too). */
TEST(test_pool_tasks_once)
{
    uint64_t s = 0xA11CE5ULL;
    size_t bad = 0;
    for (unsigned threads = 2; threads <= 4; threads++) {
        pm_gemm_pool *p = NULL;
        pm_error err = {0};
        CHECK(pm_gemm_pool_create(threads, &p, &err) == PM_OK);
        for (int job = 0; job < 6000 && p; job++) {
            count_job c = {.task_sleep_us = 0};
            size_t ntasks = 2 + rng_next(&s) % 63;
            unsigned kind = (unsigned)(rng_next(&s) % 64);
            if (kind == 0)
                sleep_us(300 + (unsigned)(rng_next(&s) % 2000)); /* workers fall asleep */
            else if (kind == 1)
                c.task_sleep_us = 400; /* the caller outwaits its polling */
            else if (kind < 8)
                sleep_us((unsigned)(rng_next(&s) % 100)); /* a gap inside the polling window */
            if (c.task_sleep_us)
                ntasks = 2 + ntasks % (2 * threads);
            pm_gemm_pool_for(p, ntasks, count_task, &c);
            for (size_t i = 0; i < 64; i++)
                if (c.runs[i] != (i < ntasks)) {
                    if (bad < 3)
                        fprintf(stderr, "  %u threads, job %d of %zu tasks: task %zu ran %u times\n", threads, job,
                                ntasks, i, c.runs[i]);
                    bad++;
                }
        }
        pm_gemm_pool_destroy(p);
    }
    CHECK_MSG(bad == 0, "%zu tasks run other than once", bad);
}

/* Compact 4-bit panels of N x K with random scales, offsets and codes. */
static uint8_t *random_q4_panels(size_t N, size_t K, uint64_t *s)
{
    size_t bytes = pm_gemm_qpanel_bytes(N, K, true);
    uint8_t *qp = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!qp)
        return NULL;
    for (size_t at = 0; at < bytes; at += PM_GEMM_Q4BLOCK_BYTES) {
        for (size_t lane = 0; lane < 64; lane++) {
            float v = rand_bf16(s); /* 32 scales, then 32 offsets */
            memcpy(qp + at + 4 * lane, &v, 4);
        }
        for (size_t i = 256; i < PM_GEMM_Q4BLOCK_BYTES; i++)
            qp[at + i] = (uint8_t)rng_next(s);
    }
    return qp;
}

/* A decode token's traffic in miniature: thousands of GEMVs of 160 outputs
 * (the tile size SmolLM2's programs use: 5 groups of 32, a few microseconds
 * each) and small products near the threading threshold, issued back to back
 * and with pauses, each on a pool of 1-4 threads in turn, against the same
 * product on the calling thread alone. Pools are also torn down and made
 * again between rounds (as a simulator does when its thread count changes). */
TEST(test_many_tiny_products)
{
    enum { SETS = 4, NQ = 160 };
    static const size_t Ks[SETS] = {576, 1536, 64, 416};
    uint64_t s = 0x7111EULL;
    uint8_t *qp[SETS] = {0};
    unsigned char *A16[SETS] = {0};
    float want[SETS][NQ], C0[NQ], got[NQ];
    float *A = malloc(3 * 700 * sizeof *A), *B = malloc(96 * 700 * sizeof *B), *want_small = malloc(3 * 96 * sizeof *want_small);
    size_t bad = 0;
    bool ok = A && B && want_small;
    fill(C0, NQ, &s, false);
    for (int i = 0; i < SETS && ok; i++) {
        fill(A, Ks[i], &s, false);
        qp[i] = random_q4_panels(NQ, Ks[i], &s);
        A16[i] = bf16_codes(A, Ks[i]);
        ok = qp[i] && A16[i];
        if (ok) {
            memcpy(want[i], C0, sizeof C0);
            pm_gemm_gemv_qpanel(NULL, NQ, Ks[i], A16[i] + 1, qp[i], true, want[i], i % 2);
        }
    }
    /* 3 x 96 x 700 = 201600 multiply-adds: threaded, ragged edges */
    if (ok) {
        fill(A, 3 * 700, &s, false);
        fill(B, 96 * 700, &s, false);
        reference(3, 96, 700, A, 700, B, 700, want_small, 96, false);
    }
    CHECK_MSG(ok, "out of memory");
    for (int round = 0; round < 3 && ok; round++) {
        pm_gemm_pool *pools[4] = {0};
        for (unsigned i = 0; i < 4; i++) {
            pm_error err = {0};
            CHECK_MSG(pm_gemm_pool_create(i + 1, &pools[i], &err) == PM_OK, "%s", err.message);
        }
        for (int op = 0; op < 3000; op++) {
            pm_gemm_pool *pool = pools[(op + round) % 4];
            if (op % 97 == 0)
                sleep_us(op % 2 ? 50 : 600);
            if (op % 10 == 9) {
                float small[3 * 96];
                pm_gemm_kordered(pool, 3, 96, 700, A, 700, B, 700, small, 96, false);
                for (size_t n = 0; n < 3 * 96; n++)
                    bad += to_bits(small[n]) != to_bits(want_small[n]);
                continue;
            }
            int i = op % SETS;
            memcpy(got, C0, sizeof got);
            pm_gemm_gemv_qpanel(pool, NQ, Ks[i], A16[i] + 1, qp[i], true, got, i % 2);
            for (size_t n = 0; n < NQ; n++)
                if (to_bits(got[n]) != to_bits(want[i][n])) {
                    if (bad < 3)
                        fprintf(stderr, "  op %d, K %zu, %u threads: C[%zu] = %08x, want %08x\n", op, Ks[i],
                                pm_gemm_pool_threads(pool), n, to_bits(got[n]), to_bits(want[i][n]));
                    bad++;
                }
        }
        for (int i = 0; i < 4; i++)
            pm_gemm_pool_destroy(pools[i]);
    }
    CHECK_MSG(bad == 0, "%zu mismatching outputs", bad);
    for (int i = 0; i < SETS; i++)
        free(qp[i]), free(A16[i]);
    free(A), free(B), free(want_small);
}

/* An idle pool sleeps: its workers poll for a fraction of a millisecond after
 * a job, then use no CPU until the next one (a pool that kept polling would
 * burn a core per worker while the simulator waits for its host). */
TEST(test_idle_pool_sleeps)
{
    pm_gemm_pool *p = NULL;
    pm_error err = {0};
    CHECK(pm_gemm_pool_worker_cpu_ns(NULL) == 0);
    CHECK(pm_gemm_pool_create(3, &p, &err) == PM_OK);
    if (!p)
        return;
    count_job c = {.task_sleep_us = 0};
    for (int i = 0; i < 50; i++)
        pm_gemm_pool_for(p, 16, count_task, &c);
    sleep_us(50000); /* well past the polling window, even on a busy host */
    uint64_t before = pm_gemm_pool_worker_cpu_ns(p);
    sleep_us(300000);
    uint64_t used = pm_gemm_pool_worker_cpu_ns(p) - before;
    CHECK_MSG(used < 15000000u, "2 idle workers used %.1f ms of CPU in 300 ms", used / 1e6);
    /* and they still wake for work: the caller alone would take 40 ms */
    c = (count_job){.task_sleep_us = 1000, .caller = pthread_self()};
    pm_gemm_pool_for(p, 40, count_task, &c);
    size_t on_workers = 0;
    for (size_t i = 0; i < 40; i++) {
        CHECK(c.runs[i] == 1);
        on_workers += c.on_worker[i];
    }
    CHECK_MSG(on_workers > 0, "no worker woke for a job after the pool sat idle");
    pm_gemm_pool_destroy(p);
}

typedef struct concurrent_arg {
    pm_gemm_pool *pool;
    uint64_t seed;
    size_t bad;
} concurrent_arg;

static void *concurrent_body(void *arg)
{
    concurrent_arg *c = arg;
    pm_gemm_pool *pools[POOLS] = {c->pool, c->pool, c->pool, c->pool, c->pool};
    for (int i = 0; i < 3; i++) {
        shape sh = {.M = 100 + i, .N = 90, .K = 200, .lda = 200, .ldb = 200, .ldc = 90, .accumulate = i % 2};
        c->bad += check_shape(pools, &sh, &c->seed);
    }
    return NULL;
}

TEST(test_concurrent_callers)
{
    pm_gemm_pool *p = NULL;
    pm_error err = {0};
    CHECK(pm_gemm_pool_create(2, &p, &err) == PM_OK);
    concurrent_arg args[2] = {{p, 1, 0}, {p, 2, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&t[i], NULL, concurrent_body, &args[i]) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK(args[0].bad == 0 && args[1].bad == 0);
    pm_gemm_pool_destroy(p);
}

int main(void)
{
    RUN(test_pool_threads);
    RUN(test_ragged_random);
    RUN(test_panel_small_m);
    RUN(test_compact_panels);
    RUN(test_large_shapes);
    RUN(test_packing_slices);
    RUN(test_signed_zero);
    RUN(test_empty_dimensions);
    RUN(test_non_finite);
    RUN(test_concurrent_callers);
    RUN(test_pool_tasks_once);
    RUN(test_many_tiny_products);
    RUN(test_idle_pool_sleeps);
    return TEST_SUMMARY();
}
