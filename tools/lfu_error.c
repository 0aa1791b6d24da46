/* lfu_error: measures every built-in LFU table against a correctly rounded
 * reference and prints a Markdown table (the one in docs/lfu.md).
 *   usage: lfu_error [--quick]      (--quick: 16x fewer strided samples, same dense windows)
 * Reference: the long double libm function (expl, exp2l, tanhl, erfcl, sqrtl,
 * 64-bit significand) rounded once to fp32 / bf16 (RNE). Errors are the
 * distance in representable values (ulps) between the LFU result (rounded
 * RNE to bf16 for the bf16 column) and that correctly rounded reference,
 * plus the absolute and relative error against the long double value itself
 * (relative error over results whose rounded value is normal).
 * Rows sample every k-th bit pattern of a range plus every pattern of a
 * dense window; the sigmoid/SiLU/GELU tail windows hold every input with a
 * nonzero result, so the tails are measured exhaustively. A second table
 * gives each function's maxima over normal results and over subnormal-or-
 * zero results; a third GELU's tail in bands of 2. */
#include "polymorph/lfu.h"
#include "polymorph/numerics.h"
#include "lfu_reference.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


/* Which samples of a range a row counts, by the correctly rounded fp32
 * result; SPLIT prints normal and subnormal-or-zero results as two lines. */
enum { KEEP_ALL, KEEP_NORMAL, KEEP_SUBNORMAL, SPLIT };

typedef struct row_spec {
    const char *what;   /* the row's domain, in words */
    float lo, hi;       /* x range, inclusive (sampled by bit pattern) */
    float lo2, hi2;     /* optional second range (lo2 < hi2), e.g. negative x */
    int keep;
    float dense_lo, dense_hi; /* every pattern in [dense_lo, dense_hi) too (empty if equal) */
    const char *what_sub; /* SPLIT: the second line's domain */
    int bands;            /* 1: also fill the GELU tail band table */
} row_spec;

typedef struct func_spec {
    pm_lfu_func func;
    row_spec rows[3];
} func_spec;

/* Just below -16 and -2: the tails start where the main tables end. */
#define BELOW_16 (-0x1.000002p4f)
#define BELOW_2 (-0x1.000002p1f)

/* The dense windows of the tail rows hold every input whose result is not
 * zero (sigmoid(x) rounds to +0 below -103.98, SiLU below -108.5, GELU
 * below -14.5), so over the tails the table is exhaustive, not sampled. */
static const func_spec funcs[] = {
    {PM_LFU_EXP,
     {{"x in [-88, 89], normal results", -88.0f, 89.0f, 0, 0, KEEP_NORMAL, 1.0f, 2.0f, NULL, 0},
      {"x in [-104, -87], subnormal results", -104.0f, -87.0f, 0, 0, KEEP_SUBNORMAL, -100.0f, -96.0f, NULL, 0}}},
    {PM_LFU_EXP2,
     {{"x in [-127, 129], normal results", -127.0f, 129.0f, 0, 0, KEEP_NORMAL, 1.0f, 2.0f, NULL, 0},
      {"x in [-151, -125], subnormal results", -151.0f, -125.0f, 0, 0, KEEP_SUBNORMAL, -140.0f, -136.0f, NULL, 0}}},
    {PM_LFU_SIGMOID,
     {{"x >= -16 (main table, all finite)", -16.0f, FLT_MAX, 0, 0, KEEP_ALL, -8.0f, -4.0f, NULL, 0},
      {"x < -16 (tail), normal results", -FLT_MAX, BELOW_16, 0, 0, SPLIT, -104.0f, -16.0f,
       "x < -16 (tail), subnormal or zero results", 0}}},
    {PM_LFU_TANH,
     {{"all finite x", -FLT_MAX, FLT_MAX, 0, 0, KEEP_ALL, 0.5f, 1.0f, NULL, 0}}},
    {PM_LFU_SILU,
     {{"x >= -16 (main table, all finite)", -16.0f, FLT_MAX, 0, 0, KEEP_ALL, -8.0f, -4.0f, NULL, 0},
      {"x < -16 (tail), normal results", -FLT_MAX, BELOW_16, 0, 0, SPLIT, -112.0f, -16.0f,
       "x < -16 (tail), subnormal or zero results", 0}}},
    {PM_LFU_GELU,
     {{"x >= -2 (main table, all finite)", -2.0f, FLT_MAX, 0, 0, KEEP_ALL, -2.0f, -1.0f, NULL, 0},
      {"x < -2 (tail), normal results", -FLT_MAX, BELOW_2, 0, 0, SPLIT, -16.0f, -2.0f,
       "x < -2 (tail), subnormal or zero results", 1}}},
    {PM_LFU_RSQRT,
     {{"all finite x > 0 (subnormal x too)", FLT_TRUE_MIN, FLT_MAX, 0, 0, KEEP_ALL, 1.0f, 4.0f, NULL, 0}}},
    {PM_LFU_RECIP,
     {{"finite x != 0, normal results", FLT_TRUE_MIN, FLT_MAX, -FLT_MAX, -FLT_TRUE_MIN, KEEP_NORMAL, 1.0f, 2.0f, NULL, 0},
      {"abs(x) > 2^126, subnormal results", 0x1p126f, FLT_MAX, -FLT_MAX, -0x1p126f, KEEP_SUBNORMAL, 0, 0, NULL, 0}}},
};

/* ---- orderings and roundings ---- */

/* Keys, ulp distances and the bf16 rounding of the reference:
 * tools/lfu_reference.h, shared with tests/unit/test_lfu.c. */

/* ---- measuring ---- */

typedef struct stats {
    uint64_t samples;
    int64_t ulp32, ulp16;
    long double abs_err, rel_err;
    float worst32, worst16, worst_abs;
} stats;

/* Result classes, by the correctly rounded fp32 result. */
enum { CLS_NORMAL, CLS_SUB, CLS_INF, CLS_COUNT };

#define BANDS 7 /* GELU's tail in bands of 2: [-4, -2) ... [-16, -14) */

typedef struct meter {
    const pm_lfu_table *t;
    pm_lfu_func func;
    stats cls[CLS_COUNT];
    stats *bands; /* GELU tail bands, or NULL */
} meter;

static void merge(stats *into, const stats *s)
{
    into->samples += s->samples;
    if (s->ulp32 > into->ulp32) into->ulp32 = s->ulp32, into->worst32 = s->worst32;
    if (s->ulp16 > into->ulp16) into->ulp16 = s->ulp16, into->worst16 = s->worst16;
    if (s->abs_err > into->abs_err) into->abs_err = s->abs_err, into->worst_abs = s->worst_abs;
    if (s->rel_err > into->rel_err) into->rel_err = s->rel_err;
}

static void account(stats *st, float x, float y, long double r, float rf)
{
    st->samples++;
    int64_t d32 = pm_ref_ulp32(y, rf);
    int64_t d16 = pm_ref_ulp16(y, r);
    long double ae = isinf(r) && y == r ? 0.0L : fabsl((long double)y - r);
    if (d32 > st->ulp32) st->ulp32 = d32, st->worst32 = x;
    if (d16 > st->ulp16) st->ulp16 = d16, st->worst16 = x;
    if (ae > st->abs_err) st->abs_err = ae, st->worst_abs = x;
    if (fabsf(rf) >= FLT_MIN && !isinf(rf) && ae / fabsl(r) > st->rel_err) st->rel_err = ae / fabsl(r);
}

#define CHUNK 4096

static void measure_keys(meter *mt, int64_t k0, int64_t k1, int64_t stride)
{
    float xs[CHUNK], ys[CHUNK];
    int64_t k = k0;
    while (k <= k1) {
        size_t n = 0;
        for (; n < CHUNK && k <= k1; n++, k += stride) xs[n] = pm_ref_from_key32(k);
        pm_lfu_eval_array(mt->t, xs, ys, n);
        for (size_t i = 0; i < n; i++) {
            long double r = pm_ref_eval(mt->func, (long double)xs[i]);
            float rf = (float)r, a = fabsf(rf);
            int c = a > FLT_MAX ? CLS_INF : a >= FLT_MIN ? CLS_NORMAL : CLS_SUB;
            account(&mt->cls[c], xs[i], ys[i], r, rf);
            if (mt->bands && xs[i] < -2.0f && xs[i] >= -16.0f) account(&mt->bands[(int)((-xs[i] - 2.0f) / 2.0f)], xs[i], ys[i], r, rf);
        }
    }
}

/* Every stride-th pattern of [lo, hi] (stride odd, about `target` samples). */
static void measure_range(meter *mt, float lo, float hi, int64_t target)
{
    int64_t k0 = pm_ref_key32(lo), k1 = pm_ref_key32(hi);
    int64_t stride = (k1 - k0 + 1) / target;
    if (stride < 1) stride = 1;
    stride |= 1;
    measure_keys(mt, k0, k1, stride);
    if (((k1 - k0) % stride) != 0) measure_keys(mt, k1, k1, 1); /* the far end too */
}

static double now_s(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void print_row(const char *name, const char *what, const stats *st)
{
    printf("| %s | %s | %llu | %lld | %lld | %.3Le | %.3Le | %a |\n", name, what, (unsigned long long)st->samples,
           (long long)st->ulp32, (long long)st->ulp16, st->abs_err, st->rel_err, (double)st->worst32);
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    if (argc > 1 && !quick) {
        fprintf(stderr, "usage: lfu_error [--quick]\n");
        return 2;
    }
    const int64_t target = quick ? (1 << 18) : (1 << 22);
    enum { NF = sizeof funcs / sizeof funcs[0] };
    stats total[NF][CLS_COUNT], bands[BANDS];
    memset(total, 0, sizeof total);
    memset(bands, 0, sizeof bands);
    double t_start = now_s();
    printf("| function | domain | samples | max ulp fp32 | max ulp bf16 | max abs error | max rel error (normal results) | worst x (fp32 ulp) |\n");
    printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for (size_t f = 0; f < NF; f++) {
        const func_spec *fs = &funcs[f];
        pm_lfu_table table;
        pm_error err;
        if (pm_lfu_builtin(fs->func, &table, &err) != PM_OK) {
            fprintf(stderr, "lfu_error: %s\n", err.message);
            return 1;
        }
        double t0 = now_s();
        for (int r = 0; r < 3 && fs->rows[r].what; r++) {
            const row_spec *rs = &fs->rows[r];
            meter mt;
            memset(&mt, 0, sizeof mt);
            mt.t = &table;
            mt.func = fs->func;
            mt.bands = rs->bands ? bands : NULL;
            measure_range(&mt, rs->lo, rs->hi, target);
            if (rs->lo2 < rs->hi2) measure_range(&mt, rs->lo2, rs->hi2, target);
            if (rs->dense_lo < rs->dense_hi) measure_keys(&mt, pm_ref_key32(rs->dense_lo), pm_ref_key32(rs->dense_hi) - 1, 1);
            /* A row shows the classes it keeps; SPLIT rows show normal (and
             * overflowing) results and subnormal-or-zero results apart. */
            stats shown[2];
            memset(shown, 0, sizeof shown);
            for (int c = 0; c < CLS_COUNT; c++) {
                int keep = rs->keep == KEEP_ALL || (rs->keep == KEEP_NORMAL && c == CLS_NORMAL) ||
                           (rs->keep == KEEP_SUBNORMAL && c == CLS_SUB) || rs->keep == SPLIT;
                if (!keep) continue;
                merge(&shown[rs->keep == SPLIT && c == CLS_SUB], &mt.cls[c]);
                merge(&total[f][c], &mt.cls[c]);
            }
            print_row(table.name, rs->what, &shown[0]);
            if (rs->keep == SPLIT) print_row(table.name, rs->what_sub, &shown[1]);
        }
        fprintf(stderr, "%-8s %.1f s\n", table.name, now_s() - t0);
        pm_lfu_table_free(&table);
    }

    printf("\n| function | normal results: samples | max ulp fp32 | max ulp bf16 | subnormal or zero results: samples | max ulp fp32 | max ulp bf16 | max abs error |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (size_t f = 0; f < NF; f++) {
        const stats *n = &total[f][CLS_NORMAL], *u = &total[f][CLS_SUB];
        printf("| %s | %llu | %lld | %lld | %llu | %lld | %lld | %.3Le |\n", pm_lfu_func_name(funcs[f].func),
               (unsigned long long)n->samples, (long long)n->ulp32, (long long)n->ulp16, (unsigned long long)u->samples,
               (long long)u->ulp32, (long long)u->ulp16, u->abs_err);
    }

    printf("\n| gelu, every fp32 x in | max ulp fp32 | max ulp bf16 | max abs error |\n| --- | ---: | ---: | ---: |\n");
    for (int b = 0; b < BANDS; b++)
        printf("| [%d, %d) | %lld | %lld | %.3Le |\n", -4 - 2 * b, -2 - 2 * b, (long long)bands[b].ulp32,
               (long long)bands[b].ulp16, bands[b].abs_err);
    printf("\nmeasured in %.1f s (%s sampling)\n", now_s() - t_start, quick ? "quick" : "full");
    return 0;
}
