/* Fitting tests (src/lfu/fit.c): the error falls with the segment count at
 * the rate the degree promises, in both modes and both forms; the --eps
 * search returns a table that meets the target while one segment fewer
 * does not; the measurement agrees with a direct sweep; a fitted table
 * survives PMLF and `lfu.ld` on the simulator bit for bit; bad input fails
 * with a message naming the place. */
#include "polymorph/config.h"
#include "polymorph/fit.h"
#include "polymorph/isa.h"
#include "polymorph/lfu.h"
#include "polymorph/numerics.h"
#include "polymorph/sim.h"
#include "test.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double f_exp(void *ctx, double x) { (void)ctx; return exp(x); }
static double f_sin3(void *ctx, double x) { (void)ctx; return sin(3 * x); }
static double f_tanh(void *ctx, double x) { (void)ctx; return tanh(x); }
static double f_log(void *ctx, double x) { (void)ctx; return log(x); }
static double f_recip(void *ctx, double x) { (void)ctx; return 1.0 / x; }
static double f_rsqrt(void *ctx, double x) { (void)ctx; return 2.0 / sqrt(x); }
static double f_logabs(void *ctx, double x) { (void)ctx; return log(fabs(x)); }
static double f_abs(void *ctx, double x) { (void)ctx; return fabs(x - 0.3); }
static double f_abs0(void *ctx, double x) { (void)ctx; return fabs(x); }
static double f_quad(void *ctx, double x) { (void)ctx; return x > 0.3 ? (x - 0.3) * (x - 0.3) : 0.0; }

static pm_fit_options opts(double a, double b, uint32_t segments, uint8_t degree)
{
    pm_fit_options o;
    pm_fit_options_default(&o);
    o.x_min = a;
    o.x_max = b;
    o.segments = segments;
    o.degree = degree;
    return o;
}

/* Fit and measure in one step; the table is returned for further checks. */
static pm_status fit_measure(pm_fit_fn f, const pm_fit_options *o, pm_lfu_table *t, pm_fit_report *r, pm_error *err)
{
    pm_status st = pm_fit_table(f, NULL, o, t, err);
    if (st) return st;
    pm_fit_sweep *sw = NULL;
    st = pm_fit_sweep_create(f, NULL, o->x_min, o->x_max, &sw, err);
    if (st == PM_OK) st = pm_fit_measure(sw, t, r, err);
    pm_fit_sweep_destroy(sw);
    return st;
}

static double abs_err(pm_fit_fn f, pm_fit_options o)
{
    pm_lfu_table t;
    pm_fit_report r;
    pm_error err = {0};
    if (fit_measure(f, &o, &t, &r, &err)) {
        fprintf(stderr, "fit failed: %s\n", err.message);
        return NAN;
    }
    pm_lfu_table_free(&t);
    return r.max_abs_err;
}

/* Halving the segment width divides a smooth function's error by about
 * 2^(D+1) while the approximation error dominates (well above fp32's). */
TEST(test_convergence_rate)
{
    for (uint8_t d = 1; d <= 3; d++) {
        uint32_t g0 = d == 1 ? 16 : d == 2 ? 8 : 4;
        for (int mode_method = 0; mode_method < 2; mode_method++) {
            double prev = NAN;
            for (uint32_t g = g0; g <= g0 * 4; g *= 2) {
                pm_fit_options o = opts(-1.0, 2.0, g, d);
                o.method = mode_method ? PM_FIT_LSQ : PM_FIT_MINIMAX;
                double e = abs_err(f_sin3, o);
                CHECK_MSG(e > 1e-5, "degree %u, %u segments: error %g is near the fp32 floor; the rate test needs larger", d, g, e);
                if (prev == prev) {
                    double rate = log2(prev / e);
                    CHECK_MSG(fabs(rate - (d + 1)) < 0.35, "degree %u, %u segments: rate %.2f, want %d", d, g, rate, d + 1);
                }
                prev = e;
            }
        }
    }
}

/* Minimax (Lawson) beats least squares in the maximum error it targets. The
 * gap is small (about 4% here): least squares on Chebyshev nodes is already
 * near-minimax for smooth functions. */
TEST(test_minimax_beats_lsq)
{
    for (uint8_t d = 1; d <= 3; d++) {
        pm_fit_options o = opts(-1.0, 2.0, 8, d);
        double mm = abs_err(f_sin3, o);
        o.method = PM_FIT_LSQ;
        double ls = abs_err(f_sin3, o);
        CHECK_MSG(mm < 0.99 * ls, "degree %u: minimax %g, lsq %g", d, mm, ls);
    }
}

/* A kink inside a segment caps the rate at 1 whatever the degree. */
TEST(test_kink_rate)
{
    double e1 = abs_err(f_abs, opts(-1.0, 1.0, 16, 3)), e2 = abs_err(f_abs, opts(-1.0, 1.0, 64, 3));
    double rate = log2(e1 / e2) / 2;
    CHECK_MSG(rate > 0.8 && rate < 1.3, "kink rate %.2f", rate);
}

/* Pieces a segment's polynomial represents exactly (|x| with the kink on a
 * boundary, a quadratic for D >= 2) come out at fp32 rounding level for every
 * segment count; the minimax iteration once degraded them to 1e-5 by
 * chasing rounding noise. */
TEST(test_exact_pieces)
{
    for (uint32_t g = 2; g <= 1024; g *= 2)
        for (uint8_t d = 1; d <= 3; d++) {
            double e = abs_err(f_abs0, opts(-1.0, 1.0, g, d));
            CHECK_MSG(e <= 0x1p-24, "|x|, %u segments, degree %u: %g", g, d, e);
        }
    double e = abs_err(f_quad, opts(0.3, 1.0, 512, 2));
    CHECK_MSG(e <= 0x1p-24, "quadratic: %g", e);
}

/* The relative objective follows ulps: log on [1, 2] is exact at its zero
 * (pinned) and a few ulps elsewhere, where the absolute fit is off by
 * hundreds of millions of ulps next to x = 1. */
TEST(test_relative_objective)
{
    pm_fit_options o = opts(1.0, 2.0, 32, 3);
    pm_lfu_table t;
    pm_fit_report r;
    pm_error err = {0};
    CHECK(fit_measure(f_log, &o, &t, &r, &err) == PM_OK);
    CHECK_MSG(r.max_ulp_fp32 > 1000000, "abs objective: %lld ulp", (long long)r.max_ulp_fp32);
    pm_lfu_table_free(&t);
    o.objective = PM_FIT_REL;
    CHECK(fit_measure(f_log, &o, &t, &r, &err) == PM_OK);
    CHECK_MSG(r.max_ulp_fp32 <= 8, "rel objective: %lld ulp at %g", (long long)r.max_ulp_fp32, (double)r.worst_x_fp32);
    CHECK(pm_lfu_eval(&t, 1.0f) == 0.0f && t.coeffs[0] == 0.0f);
    pm_lfu_table_free(&t);
    o.objective = PM_FIT_OBJECTIVE_COUNT;
    CHECK(pm_fit_table(f_log, NULL, &o, &t, &err) == PM_ERR_INVALID && strstr(err.message, "objective 2 is not abs or rel"));
}

/* x-times form keeps tanh accurate in ulps down to tiny x; plain cannot. */
TEST(test_xtimes_tanh)
{
    pm_fit_options o = opts(-4.0, 4.0, 64, 3);
    o.form = PM_LFU_FORM_X_TIMES;
    pm_lfu_table t;
    pm_fit_report r;
    pm_error err = {0};
    CHECK_MSG(fit_measure(f_tanh, &o, &t, &r, &err) == PM_OK, "%s", err.message);
    CHECK_MSG(r.max_ulp_fp32 <= 8, "x-times tanh: %lld ulp at %g", (long long)r.max_ulp_fp32, (double)r.worst_x_fp32);
    CHECK(r.max_ulp_bf16 <= 1);
    CHECK(pm_lfu_eval(&t, 1e-30f) != 0.0f && fabsf(pm_lfu_eval(&t, 1e-30f) - 1e-30f) <= 2e-36f);
    pm_lfu_table_free(&t);
    o.form = PM_LFU_FORM_PLAIN;
    CHECK(fit_measure(f_tanh, &o, &t, &r, &err) == PM_OK);
    CHECK_MSG(r.max_ulp_fp32 > 1000, "plain tanh near 0: only %lld ulp", (long long)r.max_ulp_fp32);
    pm_lfu_table_free(&t);
}

/* Exponent mode: the reduction is detected from f and the error in ulps is
 * flat over a huge range; more segments never hurt. */
TEST(test_exponent_mode)
{
    struct { pm_fit_fn f; double a, b; pm_lfu_reduction red; } cases[] = {
        {f_exp, -80.0, 80.0, PM_LFU_RED_EXP2},
        {f_recip, -1e6, -1e-6, PM_LFU_RED_RECIP},
        {f_rsqrt, 1e-6, 1e6, PM_LFU_RED_RSQRT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t prev = INT64_MAX;
        for (uint32_t g = 2; g <= 32; g *= 4) {
            pm_fit_options o = opts(cases[i].a, cases[i].b, g, 3);
            o.mode = PM_LFU_MODE_EXPONENT;
            pm_lfu_table t;
            pm_fit_report r;
            pm_error err = {0};
            CHECK_MSG(fit_measure(cases[i].f, &o, &t, &r, &err) == PM_OK, "%s", err.message);
            CHECK(t.param[PM_LFU_PARAM_REDUCTION] == (float)cases[i].red);
            CHECK_MSG(r.max_ulp_fp32 <= prev, "case %zu: %u segments: %lld ulp after %lld", i, g, (long long)r.max_ulp_fp32,
                      (long long)prev);
            prev = r.max_ulp_fp32;
            pm_lfu_table_free(&t);
        }
        /* The polynomial's own rounding (its value in [1, 2]) plus the fit. */
        CHECK_MSG(prev <= 3, "case %zu: 32 segments: %lld ulp", i, (long long)prev);
    }
}

/* Exponent mode converges at the degree's rate too: the error in ulps is
 * the relative error of p on the reduced domain. */
TEST(test_exponent_mode_rate)
{
    for (uint8_t d = 1; d <= 3; d++) {
        /* cubics reach a few ulps by 4 segments: one step is all they show */
        uint32_t g0 = d == 1 ? 4 : 1, g1 = d == 1 ? 16 : d == 2 ? 4 : 2;
        double prev = NAN;
        for (uint32_t g = g0; g <= g1; g *= 2) {
            pm_fit_options o = opts(-20.0, 20.0, g, d);
            o.mode = PM_LFU_MODE_EXPONENT;
            pm_lfu_table t;
            pm_fit_report r;
            pm_error err = {0};
            CHECK_MSG(fit_measure(f_exp, &o, &t, &r, &err) == PM_OK, "%s", err.message);
            pm_lfu_table_free(&t);
            double e = (double)r.max_ulp_fp32;
            CHECK_MSG(e > 100, "degree %u, %u segments: %g ulp is too close to rounding for a rate", d, g, e);
            if (prev == prev) {
                double rate = log2(prev / e);
                CHECK_MSG(fabs(rate - (d + 1)) < 0.35, "degree %u, %u segments: rate %.2f, want %d", d, g, rate, d + 1);
            }
            prev = e;
        }
    }
}

/* The search: the result meets eps, one segment fewer does not. */
TEST(test_eps_search)
{
    const pm_fit_eps targets[] = {{1e-5, 0}, {3.0, 1}};
    for (size_t k = 0; k < 2; k++) {
        pm_fit_options o = opts(-2.0, 1.0, 1, 2);
        pm_lfu_table t;
        pm_fit_report r;
        pm_fit_trial trials[3];
        pm_error err = {0};
        CHECK_MSG(pm_fit_search(f_exp, NULL, &o, &targets[k], &t, &r, trials, &err) == PM_OK, "%s", err.message);
        CHECK(pm_fit_meets(&r, &targets[k]));
        CHECK(trials[1].degree == 2 && trials[1].segments == t.segments && trials[0].degree == 0);
        CHECK(r.bytes == pm_lfu_table_serialized_size(&t));
        CHECK(t.segments > 1);
        pm_fit_report r2;
        pm_lfu_table t2;
        o.segments = t.segments - 1;
        CHECK(fit_measure(f_exp, &o, &t2, &r2, &err) == PM_OK);
        CHECK_MSG(!pm_fit_meets(&r2, &targets[k]), "%u segments already meet eps", o.segments);
        pm_lfu_table_free(&t2);
        pm_lfu_table_free(&t);
    }
    /* Any degree: the smallest in bytes of the three per-degree winners. */
    pm_fit_options o = opts(-2.0, 1.0, 1, 0);
    pm_fit_eps eps = {1e-6, 0};
    pm_lfu_table t;
    pm_fit_report r;
    pm_fit_trial tr[3];
    pm_error err = {0};
    CHECK(pm_fit_search(f_exp, NULL, &o, &eps, &t, &r, tr, &err) == PM_OK);
    for (int d = 0; d < 3; d++) CHECK(tr[d].degree == d + 1 && tr[d].segments > 0 && tr[d].bytes >= r.bytes);
    CHECK(r.bytes == tr[t.degree - 1].bytes);
    pm_lfu_table_free(&t);
    /* Unreachable by any table: below the gap between f and fp32 itself. */
    o = opts(-10.0, 10.0, 1, 0);
    eps.value = 1e-6;
    CHECK(pm_fit_search(f_exp, NULL, &o, &eps, &t, &r, tr, &err) == PM_ERR_INVALID);
    CHECK_MSG(strstr(err.message, "eps 1e-06 is below fp32's own resolution here: f(") != NULL, "%s", err.message);
    /* Unreachable: a kink inside a segment at 1e-5 absolute with degree 1
     * (the error falls only as 1/G: about 1e-4 at 4096 segments). */
    o = opts(-1.0, 1.0, 1, 1);
    eps.value = 1e-5;
    CHECK(pm_fit_search(f_abs, NULL, &o, &eps, &t, &r, tr, &err) == PM_ERR_INVALID);
    CHECK_MSG(strcmp(err.message, "no table up to 4096 segments (degree 1) meets eps 1e-05") == 0, "%s", err.message);
}

/* The report against a direct computation over every fp32 of a narrow domain. */
TEST(test_measure_exhaustive)
{
    pm_fit_options o = opts(1.0, 1.0625, 4, 2);
    pm_lfu_table t;
    pm_fit_report r;
    pm_error err = {0};
    CHECK(fit_measure(f_log, &o, &t, &r, &err) == PM_OK);
    CHECK(r.exhaustive && r.points == (1u << 19) + 1); /* [1, 1.0625]: 2^19 steps of 2^-23 */
    int64_t worst = 0;
    double worst_abs = 0.0;
    for (float x = 1.0f; x <= 1.0625f; x = nextafterf(x, 2.0f)) {
        float y = pm_lfu_eval(&t, x), ref = (float)log((double)x);
        int64_t d = (int64_t)pm_f32_bits(y) - (int64_t)pm_f32_bits(ref);
        if (llabs(d) > worst) worst = llabs(d);
        double a = fabs((double)y - log((double)x));
        if (a > worst_abs) worst_abs = a;
    }
    CHECK(r.max_ulp_fp32 == worst);
    CHECK(r.max_abs_err == worst_abs);
    CHECK(fabs((double)pm_lfu_eval(&t, r.worst_x_abs) - log(r.worst_x_abs)) == worst_abs);
    pm_lfu_table_free(&t);
}

/* PMLF round trip and `lfu.ld` on the simulator: bit for bit pm_lfu_eval. */
TEST(test_table_in_simulator)
{
    pm_fit_options o = opts(-3.0, 3.0, 40, 3);
    o.form = PM_LFU_FORM_X_TIMES;
    o.oor = PM_LFU_OOR_LINEAR;
    pm_lfu_table t, back;
    pm_error err = {0};
    CHECK(pm_fit_table(f_tanh, NULL, &o, &t, &err) == PM_OK);
    size_t size = pm_lfu_table_serialized_size(&t), written = 0;
    uint8_t *ser = malloc(size);
    CHECK(ser && pm_lfu_table_serialize(&t, ser, size, &written, &err) == PM_OK && written == size);
    CHECK(pm_lfu_table_deserialize(ser, written, &back, &err) == PM_OK);
    enum { N = 512 };
    float x[N], want[N], got[N];
    for (int i = 0; i < N; i++) x[i] = -5.0f + 10.0f * (float)i / (N - 1); /* past both ends: the linear policy */
    for (int i = 0; i < N; i++) want[i] = pm_lfu_eval(&t, x[i]), got[i] = pm_lfu_eval(&back, x[i]);
    CHECK(memcmp(want, got, sizeof want) == 0);
    pm_config cfg;
    memset(&cfg, 0, sizeof cfg);
    pm_sim *sim = NULL;
    pm_program prog;
    pm_program_init(&prog);
    CHECK(pm_config_preset("edge", &cfg, &err) == PM_OK);
    CHECK(pm_sim_create(&cfg, &sim, &err) == PM_OK);
    CHECK(pm_sim_sram_write(sim, 0, 0x0, x, sizeof x, &err) == PM_OK);
    CHECK(pm_sim_sram_write(sim, 0, 0x100000, ser, written, &err) == PM_OK);
    const char *src = "li r1, 0\n li r2, 0x40000\n li r4, 512\n li r5, 0x100000\n lfu.ld 1, r5\n lfu.f32 1, r2, r1, r4\n halt\n";
    CHECK_MSG(pm_assemble("fit.pasm", src, &prog, &err) == PM_OK, "%s", err.message);
    CHECK(pm_sim_load_program(sim, &prog, 0, &err) == PM_OK);
    CHECK_MSG(pm_sim_run(sim, NULL, &err) == PM_OK, "%s", err.message);
    memset(got, 0, sizeof got);
    CHECK(pm_sim_sram_read(sim, 0, 0x40000, got, sizeof got, &err) == PM_OK);
    CHECK(memcmp(want, got, sizeof want) == 0);
    pm_program_free(&prog);
    pm_sim_destroy(sim);
    free(ser);
    pm_lfu_table_free(&back);
    pm_lfu_table_free(&t);
}

/* Out-of-range policies take f at the ends (const) or its tangents (linear). */
TEST(test_oor)
{
    pm_fit_options o = opts(-1.0, 1.0, 8, 3);
    pm_lfu_table t;
    pm_error err = {0};
    o.oor = PM_LFU_OOR_CONST;
    CHECK(pm_fit_table(f_exp, NULL, &o, &t, &err) == PM_OK);
    CHECK(t.below_value == (float)exp(-1.0) && t.above_value == (float)exp(1.0));
    CHECK(pm_lfu_eval(&t, 50.0f) == (float)exp(1.0));
    pm_lfu_table_free(&t);
    o.oor = PM_LFU_OOR_LINEAR;
    CHECK(pm_fit_table(f_exp, NULL, &o, &t, &err) == PM_OK);
    CHECK(fabs(t.above_slope - exp(1.0)) < 1e-5 && fabs(pm_lfu_eval(&t, 2.0f) - 2 * exp(1.0)) < 1e-4);
    pm_lfu_table_free(&t);
    o.oor = PM_LFU_OOR_CLAMP;
    CHECK(pm_fit_table(f_exp, NULL, &o, &t, &err) == PM_OK);
    CHECK(pm_lfu_eval(&t, 50.0f) == pm_lfu_eval(&t, 1.0f));
    pm_lfu_table_free(&t);
}

static void expect_fail(pm_fit_fn f, pm_fit_options o, const char *want)
{
    pm_lfu_table t;
    pm_error err = {0};
    pm_status st = pm_fit_table(f, NULL, &o, &t, &err);
    CHECK_MSG(st != PM_OK && strstr(err.message, want), "want '%s', got '%s'", want, err.message);
    CHECK(t.coeffs == NULL);
}

TEST(test_errors)
{
    expect_fail(f_log, opts(-1.0, 1.0, 4, 3), "f(x) is not a number at x = ");
    pm_fit_sweep *sw = NULL;
    pm_error serr = {0};
    CHECK(pm_fit_sweep_create(f_logabs, NULL, -1.0, 1.0, &sw, &serr) == PM_ERR_INVALID && sw == NULL);
    CHECK_MSG(strcmp(serr.message, "f(x) is infinite at x = 0: choose a domain where f is finite and within fp32") == 0, "%s",
              serr.message);
    expect_fail(f_exp, opts(0.0, 200.0, 4, 3), "beyond the fp32 range");
    expect_fail(f_recip, opts(-1.0, 1.0, 4, 3), "f(x) is infinite at x = 0: choose a domain");
    expect_fail(f_exp, opts(1.0, 1.0, 4, 3), "domain [1, 1]: needs finite A < B");
    expect_fail(f_exp, opts(1.0, 1.0 + 1e-12, 4, 3), "its ends are not distinct finite fp32 values");
    expect_fail(f_exp, opts(0.0, 1.0, 0, 3), "segments 0 outside 1..4096");
    expect_fail(f_exp, opts(0.0, 1.0, 4097, 3), "segments 4097 outside 1..4096");
    expect_fail(f_exp, opts(0.0, 1.0, 4, 4), "degree 4 outside 1..3");
    pm_fit_options o = opts(-1.0, 1.0, 4, 3);
    o.form = PM_LFU_FORM_X_TIMES;
    expect_fail(f_exp, o, "x-times form: f(0) = 1, but y = x*p(x) is 0 at x = 0");
    o = opts(-3.0, 3.0, 4, 3);
    o.mode = PM_LFU_MODE_EXPONENT;
    expect_fail(f_sin3, o, "exponent mode: f obeys none of the reductions on [-3, 3]");
    o.form = PM_LFU_FORM_X_TIMES;
    expect_fail(f_exp, o, "exponent mode needs form plain");
    pm_fit_eps eps;
    pm_error err = {0};
    CHECK(pm_fit_parse_eps("1e-4", &eps, &err) == PM_OK && eps.value == 1e-4 && !eps.in_ulps);
    CHECK(pm_fit_parse_eps("2ulp", &eps, &err) == PM_OK && eps.value == 2 && eps.in_ulps);
    CHECK(pm_fit_parse_eps("0.5ulps", &eps, &err) == PM_OK && eps.value == 0.5 && eps.in_ulps);
    CHECK(pm_fit_parse_eps("0", &eps, &err) == PM_ERR_INVALID && strstr(err.message, "finite and > 0"));
    CHECK(pm_fit_parse_eps("-1ulp", &eps, &err) == PM_ERR_INVALID);
    CHECK(pm_fit_parse_eps("2 ulp", &eps, &err) == PM_ERR_INVALID && strstr(err.message, "expected an absolute error"));
    CHECK(pm_fit_parse_eps("ulp", &eps, &err) == PM_ERR_INVALID);
    CHECK(pm_fit_parse_eps("", &eps, &err) == PM_ERR_INVALID);
    CHECK(pm_fit_parse_eps("inf", &eps, &err) == PM_ERR_INVALID);
}

int main(void)
{
    RUN(test_convergence_rate);
    RUN(test_minimax_beats_lsq);
    RUN(test_kink_rate);
    RUN(test_exact_pieces);
    RUN(test_relative_objective);
    RUN(test_xtimes_tanh);
    RUN(test_exponent_mode);
    RUN(test_exponent_mode_rate);
    RUN(test_eps_search);
    RUN(test_measure_exhaustive);
    RUN(test_table_in_simulator);
    RUN(test_oor);
    RUN(test_errors);
    return TEST_SUMMARY();
}
