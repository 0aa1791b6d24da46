/* LFU layer tests: built-in tables against a long double reference with the
 * ulp bounds documented in docs/lfu.md (measured by tools/lfu_error), special
 * values, the documented segment map and out-of-range policies, PMLF round
 * trips and malformed-input handling. */
#include "polymorph/lfu.h"
#include "polymorph/numerics.h"
#include "lfu_reference.h"
#include "test.h"

#include <float.h>
#include <math.h>
#include <stdint.h>

/* ---- references and distances (tools/lfu_reference.h, shared with tools/lfu_error) ---- */

static int64_t ulp32(float y, long double ref) { return pm_ref_ulp32(y, (float)ref); }
static int64_t ulp16(float y, long double ref) { return pm_ref_ulp16(y, ref); }

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd32(void) { return pm_test_xorshift(&rng_state); }

/* A float in [lo, hi]: half the draws uniform in bit pattern (every binade),
 * half uniform in value. */
static float draw(float lo, float hi)
{
    if (rnd32() & 1) {
        int64_t k0 = pm_ref_key32(lo), k1 = pm_ref_key32(hi);
        int64_t k = k0 + (int64_t)(((uint64_t)rnd32() << 32 | rnd32()) % (uint64_t)(k1 - k0 + 1));
        return pm_ref_from_key32(k);
    }
    float u = (float)((double)rnd32() / 4294967296.0);
    float x = lo + (hi - lo) * u;
    return x < lo ? lo : x > hi ? hi : x;
}

static pm_lfu_table builtin(pm_lfu_func f)
{
    pm_lfu_table t;
    pm_error err;
    pm_status st = pm_lfu_builtin(f, &t, &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    return t;
}

/* ---- accuracy: the bounds are the measured ones in docs/lfu.md ---- */

/* Which samples a case counts, by the correctly rounded fp32 result. */
enum { ALL = 0, NORMAL = 1, SUBNORMAL_OR_ZERO = 2 };

typedef struct accuracy_case {
    pm_lfu_func func;
    float lo, hi;
    int keep;
    int64_t max_ulp32, max_ulp16;
} accuracy_case;

static const accuracy_case accuracy[] = {
    {PM_LFU_EXP, -88.0f, 89.0f, NORMAL, 1, 1},
    {PM_LFU_EXP, -104.0f, -87.0f, ALL, 1, 1}, /* subnormal results */
    {PM_LFU_EXP2, -127.0f, 129.0f, NORMAL, 1, 1},
    {PM_LFU_EXP2, -151.0f, -125.0f, ALL, 1, 1},
    /* sigmoid, SiLU, GELU: the whole real line; the tails (x < -16, x < -2)
     * are exhaustively measured in docs/lfu.md, so their bounds are maxima
     * over every input, not over a sample. */
    {PM_LFU_SIGMOID, -FLT_MAX, FLT_MAX, NORMAL, 2, 1},
    {PM_LFU_SIGMOID, -16.0f, 16.0f, ALL, 2, 1},
    {PM_LFU_SIGMOID, -88.0f, -16.0f, NORMAL, 2, 1},           /* tail */
    {PM_LFU_SIGMOID, -FLT_MAX, -86.0f, SUBNORMAL_OR_ZERO, 1, 1}, /* tail */
    {PM_LFU_SIGMOID, -106.0f, -86.0f, SUBNORMAL_OR_ZERO, 1, 1},
    {PM_LFU_TANH, -FLT_MAX, FLT_MAX, ALL, 2, 1},
    {PM_LFU_TANH, -10.0f, 10.0f, ALL, 2, 1},
    {PM_LFU_SILU, -FLT_MAX, FLT_MAX, NORMAL, 3, 1},
    {PM_LFU_SILU, -16.0f, 16.0f, ALL, 3, 1},
    {PM_LFU_SILU, -93.0f, -16.0f, NORMAL, 3, 1},
    {PM_LFU_SILU, -FLT_MAX, -90.0f, SUBNORMAL_OR_ZERO, 1, 1},
    {PM_LFU_SILU, -111.0f, -90.0f, SUBNORMAL_OR_ZERO, 1, 1},
    {PM_LFU_SILU, -0x1p-124f, 0x1p-124f, SUBNORMAL_OR_ZERO, 1, 1}, /* x-times form at tiny x */
    {PM_LFU_GELU, -FLT_MAX, FLT_MAX, NORMAL, 3, 1},
    {PM_LFU_GELU, -2.0f, 6.0f, ALL, 2, 1},
    {PM_LFU_GELU, -2.0f, FLT_MAX, ALL, 2, 1},
    {PM_LFU_GELU, -14.0f, -2.0f, NORMAL, 3, 1},                 /* tail: the Gaussian */
    {PM_LFU_GELU, -FLT_MAX, -12.5f, SUBNORMAL_OR_ZERO, 2, 1},
    {PM_LFU_GELU, -15.0f, -12.5f, SUBNORMAL_OR_ZERO, 2, 1},
    {PM_LFU_RSQRT, FLT_TRUE_MIN, FLT_MAX, ALL, 1, 1},
    {PM_LFU_RECIP, FLT_TRUE_MIN, FLT_MAX, ALL, 1, 1},
    {PM_LFU_RECIP, -FLT_MAX, -FLT_TRUE_MIN, ALL, 1, 1},
};

TEST(test_builtin_accuracy)
{
    for (size_t c = 0; c < sizeof accuracy / sizeof accuracy[0]; c++) {
        const accuracy_case *ac = &accuracy[c];
        pm_lfu_table t = builtin(ac->func);
        int64_t worst32 = 0, worst16 = 0, kept = 0;
        float at32 = 0, at16 = 0;
        for (int i = 0; i < 60000; i++) {
            float x = draw(ac->lo, ac->hi);
            long double r = pm_ref_eval(ac->func, x);
            float rf = (float)r;
            int normal = fabsf(rf) >= FLT_MIN && fabsf(rf) <= FLT_MAX;
            if ((ac->keep == NORMAL && !normal) || (ac->keep == SUBNORMAL_OR_ZERO && fabsf(rf) >= FLT_MIN)) continue;
            kept++;
            float y = pm_lfu_eval(&t, x);
            int64_t d32 = ulp32(y, r), d16 = ulp16(y, r);
            if (d32 > worst32) worst32 = d32, at32 = x;
            if (d16 > worst16) worst16 = d16, at16 = x;
        }
        CHECK_MSG(kept >= 5000, "%s on [%g, %g]: only %lld samples kept", t.name, (double)ac->lo, (double)ac->hi, (long long)kept);
        CHECK_MSG(worst32 <= ac->max_ulp32, "%s on [%g, %g]: %lld fp32 ulp at x = %a (bound %lld)", t.name,
                  (double)ac->lo, (double)ac->hi, (long long)worst32, (double)at32, (long long)ac->max_ulp32);
        CHECK_MSG(worst16 <= ac->max_ulp16, "%s on [%g, %g]: %lld bf16 ulp at x = %a (bound %lld)", t.name,
                  (double)ac->lo, (double)ac->hi, (long long)worst16, (double)at16, (long long)ac->max_ulp16);
        pm_lfu_table_free(&t);
    }
}

/* The tails beyond the normal range: subnormal results within the measured
 * absolute error (about one subnormal ulp), and far enough out an exact
 * signed zero where the true value is below half the smallest subnormal. */
TEST(test_builtin_tails)
{
    static const struct {
        pm_lfu_func f;
        float lo, hi;        /* results subnormal or zero here */
        long double max_abs; /* measured by tools/lfu_error (exhaustive over the tails), last digit rounded up */
        float zero_below;    /* every x below gives exactly zero_bits */
        uint32_t zero_bits;
    } tails[] = {
        {PM_LFU_SIGMOID, -104.0f, -87.4f, 1.411e-45L, -104.0f, 0x00000000u},
        {PM_LFU_SILU, -109.0f, -91.9f, 1.963e-45L, -109.0f, 0x80000000u},
        {PM_LFU_GELU, -14.6f, -13.2f, 2.438e-45L, -14.6f, 0x80000000u},
    };
    for (size_t c = 0; c < sizeof tails / sizeof tails[0]; c++) {
        pm_lfu_table t = builtin(tails[c].f);
        long double worst = 0.0L;
        int zeros_ok = 1;
        for (int i = 0; i < 20000; i++) {
            float x = draw(tails[c].lo, tails[c].hi);
            long double e = fabsl((long double)pm_lfu_eval(&t, x) - pm_ref_eval(tails[c].f, x));
            if (e > worst) worst = e;
            float z = draw(-FLT_MAX, tails[c].zero_below);
            zeros_ok &= pm_f32_bits(pm_lfu_eval(&t, z)) == tails[c].zero_bits && fabsl(pm_ref_eval(tails[c].f, z)) < 0x1p-150L;
        }
        CHECK_MSG(worst <= tails[c].max_abs, "%s tail: abs error %Lg > %Lg", t.name, worst, tails[c].max_abs);
        CHECK_MSG(zeros_ok, "%s below %g is not the signed zero %08x", t.name, (double)tails[c].zero_below, tails[c].zero_bits);
        pm_lfu_table_free(&t);
    }
}

/* ---- special values ---- */

static uint32_t bits_of(pm_lfu_table *t, float x) { return pm_f32_bits(pm_lfu_eval(t, x)); }

TEST(test_special_values)
{
    const float inf = INFINITY;
    pm_lfu_table t[PM_LFU_FUNC_COUNT];
    for (int f = 0; f < PM_LFU_FUNC_COUNT; f++) t[f] = builtin((pm_lfu_func)f);

    /* NaN in: one canonical quiet NaN out, whatever the payload or sign. */
    const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xffbfffffu, 0x7fc12345u};
    for (int f = 0; f < PM_LFU_FUNC_COUNT; f++)
        for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++)
            CHECK_MSG(bits_of(&t[f], pm_f32_from_bits(nans[i])) == 0x7fc00000u, "%s(nan %08x)", t[f].name, nans[i]);

    pm_lfu_table *e = &t[PM_LFU_EXP], *e2 = &t[PM_LFU_EXP2];
    CHECK(pm_lfu_eval(e, 0.0f) == 1.0f && pm_lfu_eval(e, -0.0f) == 1.0f);
    CHECK(pm_lfu_eval(e, inf) == inf && bits_of(e, -inf) == 0);
    CHECK(pm_lfu_eval(e, 89.0f) == inf && pm_lfu_eval(e, 88.8f) == inf && pm_lfu_eval(e, 88.7f) < inf);
    CHECK(bits_of(e, -104.0f) == 0 && bits_of(e, -200.0f) == 0);
    CHECK(pm_lfu_eval(e, -103.0f) > 0.0f); /* e^-103 is a subnormal, not zero */
    for (int k = -149; k <= 127; k++) { /* integer powers of two are exact */
        float want = k < -126 ? pm_f32_from_bits(1u << (k + 149)) : pm_f32_from_bits((uint32_t)(k + 127) << 23);
        CHECK_MSG(pm_lfu_eval(e2, (float)k) == want, "exp2(%d)", k);
    }
    CHECK(pm_lfu_eval(e2, 128.0f) == inf && bits_of(e2, -150.0f) == 0 && pm_lfu_eval(e2, -149.5f) == FLT_TRUE_MIN);
    CHECK(pm_lfu_eval(e2, inf) == inf && bits_of(e2, -inf) == 0);

    pm_lfu_table *rs = &t[PM_LFU_RSQRT];
    CHECK(pm_lfu_eval(rs, 0.0f) == inf);
    CHECK(pm_lfu_eval(rs, -0.0f) == -inf); /* IEEE 754 rSqrt(-0) */
    CHECK(bits_of(rs, -1.0f) == 0x7fc00000u && bits_of(rs, -inf) == 0x7fc00000u && bits_of(rs, -FLT_TRUE_MIN) == 0x7fc00000u);
    CHECK(bits_of(rs, inf) == 0);
    for (int k = -74; k <= 63; k++) { /* rsqrt(4^k) = 2^-k exactly */
        float x = k < -63 ? pm_f32_from_bits(1u << (2 * k + 149)) : pm_f32_from_bits((uint32_t)(2 * k + 127) << 23);
        CHECK_MSG(pm_lfu_eval(rs, x) == pm_f32_from_bits((uint32_t)(-k + 127) << 23), "rsqrt(4^%d)", k);
    }
    CHECK(pm_lfu_eval(rs, FLT_TRUE_MIN) == 0x1.6a09e6p+74f); /* 2^74.5, correctly rounded */

    pm_lfu_table *rc = &t[PM_LFU_RECIP];
    CHECK(pm_lfu_eval(rc, 0.0f) == inf && pm_lfu_eval(rc, -0.0f) == -inf);
    CHECK(bits_of(rc, inf) == 0 && bits_of(rc, -inf) == 0x80000000u);
    for (int k = -127; k <= 126; k++) {
        float x = k < -126 ? pm_f32_from_bits(1u << (k + 149)) : pm_f32_from_bits((uint32_t)(k + 127) << 23);
        CHECK_MSG(pm_lfu_eval(rc, x) == pm_f32_from_bits((uint32_t)(-k + 127) << 23), "recip(2^%d)", k);
        CHECK_MSG(pm_lfu_eval(rc, -x) == -pm_f32_from_bits((uint32_t)(-k + 127) << 23), "recip(-2^%d)", k);
    }
    CHECK(pm_lfu_eval(rc, 0x1p127f) == 0x1p-127f); /* subnormal result, exact */
    CHECK(pm_lfu_eval(rc, 0x1p-128f) == inf && pm_lfu_eval(rc, -FLT_TRUE_MIN) == -inf);

    pm_lfu_table *sg = &t[PM_LFU_SIGMOID], *th = &t[PM_LFU_TANH], *si = &t[PM_LFU_SILU], *ge = &t[PM_LFU_GELU];
    CHECK(pm_lfu_eval(sg, 0.0f) == 0.5f && pm_lfu_eval(sg, inf) == 1.0f && bits_of(sg, -inf) == 0);
    CHECK(pm_lfu_eval(th, inf) == 1.0f && pm_lfu_eval(th, -inf) == -1.0f);
    CHECK(bits_of(th, 0.0f) == 0 && bits_of(th, -0.0f) == 0x80000000u);
    CHECK(pm_lfu_eval(th, 1e-30f) == 1e-30f && pm_lfu_eval(th, -FLT_TRUE_MIN) == -FLT_TRUE_MIN); /* x-times form */
    /* SiLU and GELU approach 0 from below as x -> -inf: -0 (the sign of the
     * rounded tiny negative value), never the NaN of -inf * 0. */
    CHECK(pm_lfu_eval(si, inf) == inf && bits_of(si, -inf) == 0x80000000u && pm_lfu_eval(si, 1e-30f) == 0.5e-30f);
    CHECK(pm_lfu_eval(ge, inf) == inf && bits_of(ge, -inf) == 0x80000000u && pm_lfu_eval(ge, 1e-30f) == 0.5e-30f);
    CHECK(pm_lfu_eval(si, 100.0f) == 100.0f && pm_lfu_eval(ge, 100.0f) == 100.0f);
    /* Largest finite values: the limits, through the tails' underflow path below. */
    CHECK(pm_lfu_eval(sg, FLT_MAX) == 1.0f && bits_of(sg, -FLT_MAX) == 0);
    CHECK(pm_lfu_eval(si, FLT_MAX) == FLT_MAX && bits_of(si, -FLT_MAX) == 0x80000000u);
    CHECK(pm_lfu_eval(ge, FLT_MAX) == FLT_MAX && bits_of(ge, -FLT_MAX) == 0x80000000u);
    CHECK(bits_of(ge, -0x1p64f) == 0x80000000u); /* x*x overflows fp32: still -0 */
    /* Signed zeros and the smallest subnormals. sigmoid(0) = 0.5 exactly;
     * x-times forms keep the sign of a zero x. silu(+-2^-149) and
     * gelu(+-2^-149) are x * 0.5 = a tie at 2^-150, rounded to even: +-0
     * (the true +|value| is a hair above the tie: one subnormal ulp off, the
     * documented worst case for subnormal results). */
    CHECK(pm_lfu_eval(sg, -0.0f) == 0.5f && pm_lfu_eval(sg, FLT_TRUE_MIN) == 0.5f && pm_lfu_eval(sg, -FLT_TRUE_MIN) == 0.5f);
    CHECK(bits_of(si, 0.0f) == 0 && bits_of(si, -0.0f) == 0x80000000u);
    CHECK(bits_of(ge, 0.0f) == 0 && bits_of(ge, -0.0f) == 0x80000000u);
    CHECK(bits_of(si, FLT_TRUE_MIN) == 0 && bits_of(si, -FLT_TRUE_MIN) == 0x80000000u);
    CHECK(bits_of(ge, FLT_TRUE_MIN) == 0 && bits_of(ge, -FLT_TRUE_MIN) == 0x80000000u);
    CHECK(pm_lfu_eval(si, 2 * FLT_TRUE_MIN) == FLT_TRUE_MIN && pm_lfu_eval(ge, -4 * FLT_TRUE_MIN) == -2 * FLT_TRUE_MIN);
    /* Tail boundaries: the last inputs with a nonzero result, and the first zero. */
    CHECK(pm_lfu_eval(sg, -103.0f) > 0.0f && pm_lfu_eval(si, -108.0f) < 0.0f && pm_lfu_eval(ge, -14.3f) < 0.0f);
    CHECK(bits_of(sg, -104.0f) == 0 && bits_of(si, -109.0f) == 0x80000000u && bits_of(ge, -14.4f) == 0x80000000u);
    for (int f = 0; f < PM_LFU_FUNC_COUNT; f++) pm_lfu_table_free(&t[f]);
}

/* ---- the documented map, forms and out-of-range policies ---- */

/* y = 2x + 1 on [-3, 5] in 4 segments of degree 1 (width 2): c0 = f(left end),
 * c1 = 2 * width. Every operation below is exact, so results are exact. */
static pm_lfu_table line_table(uint8_t oor, uint8_t form)
{
    static float coeffs[8];
    pm_lfu_table t;
    memset(&t, 0, sizeof t);
    strcpy(t.name, "line");
    t.mode = PM_LFU_MODE_UNIFORM;
    t.form = form;
    t.oor = oor;
    t.degree = 1;
    t.segments = 4;
    t.x_min = -3.0f;
    t.x_max = 5.0f;
    for (int s = 0; s < 4; s++) {
        coeffs[2 * s] = 2.0f * (-3.0f + 2.0f * s) + 1.0f;
        coeffs[2 * s + 1] = 4.0f;
    }
    t.coeffs = coeffs;
    return t;
}

TEST(test_uniform_map_and_policies)
{
    pm_error err;
    pm_lfu_table t = line_table(PM_LFU_OOR_EXTEND, PM_LFU_FORM_PLAIN);
    CHECK_MSG(pm_lfu_table_validate(&t, &err) == PM_OK, "%s", err.message);
    float scale, bias;
    pm_lfu_uniform_map(&t, &scale, &bias);
    CHECK(scale == 0.5f && bias == 1.5f);
    for (float x = -3.0f; x <= 5.0f; x += 0.125f) CHECK_MSG(pm_lfu_eval(&t, x) == 2.0f * x + 1.0f, "x = %g", (double)x);
    CHECK(pm_lfu_eval(&t, -7.0f) == -13.0f && pm_lfu_eval(&t, 9.0f) == 19.0f); /* extend: the edge line */

    t.oor = PM_LFU_OOR_CLAMP;
    CHECK(pm_lfu_eval(&t, -7.0f) == -5.0f && pm_lfu_eval(&t, 9.0f) == 11.0f);
    CHECK(pm_lfu_eval(&t, -INFINITY) == -5.0f && pm_lfu_eval(&t, INFINITY) == 11.0f);

    t.oor = PM_LFU_OOR_CONST;
    t.below_value = -42.0f;
    t.above_value = 42.0f;
    CHECK(pm_lfu_eval(&t, -3.5f) == -42.0f && pm_lfu_eval(&t, 5.5f) == 42.0f && pm_lfu_eval(&t, 5.0f) == 11.0f);

    t.oor = PM_LFU_OOR_LINEAR; /* y = slope * x + value; slope 0 gives the value even at infinity */
    t.below_slope = 0.0f;
    t.above_slope = 3.0f;
    CHECK(pm_lfu_eval(&t, -4.0f) == -42.0f && pm_lfu_eval(&t, -INFINITY) == -42.0f);
    CHECK(pm_lfu_eval(&t, 6.0f) == 60.0f && pm_lfu_eval(&t, INFINITY) == INFINITY);

    pm_lfu_table xt = line_table(PM_LFU_OOR_CLAMP, PM_LFU_FORM_X_TIMES); /* y = x * (2x + 1) */
    for (float x = -3.0f; x <= 5.0f; x += 0.25f) CHECK(pm_lfu_eval(&xt, x) == x * (2.0f * x + 1.0f));
    CHECK(pm_lfu_eval(&xt, 7.0f) == 5.0f * 11.0f); /* clamp applies to the factor too */
}

/* A hand-made tail with exactly known results: exp2 base (C = 1, L = 1, so
 * n = rne(a) and r = a - n), degree 1, one segment per sub-table.
 *   main: y = 0 on [0, 1];  h(x) = h0 (constant);  e(r) = e0 + e1*r on [0, 1]
 * (bias 0, so t = r exactly). */
static pm_lfu_table tail_table(uint8_t kind, uint8_t form, float a_scale, float h0, float e0, float e1)
{
    static float coeffs[6];
    pm_lfu_table t;
    memset(&t, 0, sizeof t);
    strcpy(t.name, "tail");
    t.mode = PM_LFU_MODE_UNIFORM;
    t.oor = PM_LFU_OOR_CONST;
    t.degree = 1;
    t.segments = 1;
    t.x_min = 0.0f;
    t.x_max = 1.0f;
    const float c[6] = {0, 0, h0, 0, e0, e1};
    memcpy(coeffs, c, sizeof c);
    t.coeffs = coeffs;
    t.tail = (pm_lfu_tail){.kind = kind, .form = form, .h_segments = 1, .e_segments = 1, .a_scale = a_scale,
                           .h_min = -4.0f, .h_max = 0.0f, .e_min = 0.0f, .e_max = 1.0f,
                           .exp_c = 1.0f, .exp_l_hi = 1.0f, .exp_l_lo = 0.0f};
    return t;
}

TEST(test_tail_datapath)
{
    pm_error err;
    /* y = 1.5 * 2^rne(x): the power of two is applied with one rounding. */
    pm_lfu_table t = tail_table(PM_LFU_TAIL_EXP_LINEAR, PM_LFU_FORM_PLAIN, 1.0f, 1.5f, 1.0f, 0.0f);
    CHECK_MSG(pm_lfu_table_validate(&t, &err) == PM_OK, "%s", err.message);
    CHECK(pm_lfu_coeff_count(&t) == 6);
    CHECK(pm_lfu_eval(&t, -3.0f) == 0.1875f && pm_lfu_eval(&t, -2.5f) == 0.375f); /* rne(-2.5) = -2 */
    CHECK(pm_lfu_eval(&t, -126.0f) == 1.5f * 0x1p-126f);
    CHECK(pm_lfu_eval(&t, -149.0f) == 2 * FLT_TRUE_MIN); /* 1.5 subnormal ulps: tie to even */
    CHECK(pm_lfu_eval(&t, -150.0f) == FLT_TRUE_MIN);     /* 0.75 ulp */
    CHECK(bits_of(&t, -151.0f) == 0 && bits_of(&t, -1e30f) == 0 && bits_of(&t, -INFINITY) == 0);
    CHECK(pm_lfu_eval(&t, 0.0f) == 0.0f && pm_lfu_eval(&t, 2.0f) == 0.0f); /* main table and oor above */

    /* x-times: y = (x * 1.5) * 2^n, x folded in before the power of two. */
    t = tail_table(PM_LFU_TAIL_EXP_LINEAR, PM_LFU_FORM_X_TIMES, 1.0f, 1.5f, 1.0f, 0.0f);
    CHECK(pm_lfu_eval(&t, -3.0f) == -0.5625f && pm_lfu_eval(&t, -140.0f) == -210.0f * 0x1p-140f);
    CHECK(bits_of(&t, -INFINITY) == 0x80000000u && bits_of(&t, -200.0f) == 0x80000000u);

    /* Square kind with e(r) = r: y = r * 2^n exposes the reduced argument,
     * r = fl(x*x*a_scale - n) rounded once from the exact x^2 (hi + lo). */
    t = tail_table(PM_LFU_TAIL_EXP_SQUARE, PM_LFU_FORM_PLAIN, -0.5f, 1.0f, 0.0f, 1.0f);
    CHECK_MSG(pm_lfu_table_validate(&t, &err) == PM_OK, "%s", err.message);
    int exact = 1, visible = 0;
    for (int32_t k = -3000; k <= 3000; k++) { /* x within 3000 ulps of -sqrt(2): n = -1, |r| tiny */
        float x = pm_f32_from_bits((uint32_t)((int32_t)pm_f32_bits(-0x1.6a09e6p0f) + k));
        long double r = 1.0L - (long double)x * x / 2; /* exact in long double */
        float want = (float)r * 0.5f;
        exact &= pm_lfu_eval(&t, x) == want;
        visible |= (float)r != (float)(1.0L - (long double)(x * x) / 2); /* the lo part mattered */
    }
    CHECK(exact && visible);
    CHECK(pm_lfu_eval(&t, -2.0f) == 0.0f && pm_lfu_eval(&t, -3.0f) == -0.5f * 0x1p-4f); /* r = 0; r = -0.5, n = -4 */
    CHECK(bits_of(&t, -0x1p70f) == 0 && bits_of(&t, -FLT_MAX) == 0); /* x*x overflows: +0 (h > 0, plain) */

    /* Validation of the tail block. */
    pm_lfu_table g = tail_table(PM_LFU_TAIL_EXP_LINEAR, PM_LFU_FORM_PLAIN, 1.0f, 1.5f, 1.0f, 0.0f), b;
    b = g; b.tail.kind = 3; CHECK(pm_lfu_table_validate(&b, &err) != PM_OK && strstr(err.message, "tail.kind"));
    b = g; b.tail.form = 2; CHECK(pm_lfu_table_validate(&b, &err) != PM_OK && strstr(err.message, "tail.form"));
    b = g; b.tail.h_segments = 0; CHECK(pm_lfu_table_validate(&b, &err) != PM_OK && strstr(err.message, "tail.h_segments"));
    b = g; b.tail.e_segments = PM_LFU_MAX_SEGMENTS + 1; CHECK(pm_lfu_table_validate(&b, &err) != PM_OK && strstr(err.message, "tail.e_segments"));
    b = g; b.tail.a_scale = 3.0f; CHECK(pm_lfu_table_validate(&b, &err) != PM_OK && strstr(err.message, "power of two"));
    b = g; b.tail.a_scale = -1.0f; CHECK(pm_lfu_table_validate(&b, &err) != PM_OK && strstr(err.message, "tail.a_scale"));
    b = g; b.x_min = 0.5f; CHECK(pm_lfu_table_validate(&b, &err) != PM_OK && strstr(err.message, "tail.a_scale")); /* x_min > 0 */
    b = g; b.tail.kind = PM_LFU_TAIL_EXP_SQUARE; CHECK(pm_lfu_table_validate(&b, &err) != PM_OK && strstr(err.message, "a_scale < 0"));
    b = g; b.tail.h_max = -5.0f; CHECK(pm_lfu_table_validate(&b, &err) != PM_OK && strstr(err.message, "tail.h_max"));
    b = g; b.tail.e_min = NAN; CHECK(pm_lfu_table_validate(&b, &err) != PM_OK && strstr(err.message, "tail.e_min"));
    b = g; b.tail.exp_c = 2.0f; CHECK(pm_lfu_table_validate(&b, &err) != PM_OK && strstr(err.message, "tail.exp_c"));
    b = g; b.below_value = 1.0f; CHECK(pm_lfu_table_validate(&b, &err) != PM_OK && strstr(err.message, "below_value"));
    b = g; b.mode = PM_LFU_MODE_EXPONENT; b.oor = 0; CHECK(pm_lfu_table_validate(&b, &err) != PM_OK);
    b = g; b.tail.kind = PM_LFU_TAIL_NONE; CHECK(pm_lfu_table_validate(&b, &err) != PM_OK && strstr(err.message, "without a tail"));
    /* An unvalidated table whose tail would not decay never reaches the reduction: NaN. */
    b = g; b.tail.a_scale = -1.0f; CHECK(bits_of(&b, -3.0f) == 0x7fc00000u);
    b = g; b.tail.h_segments = 0; CHECK(bits_of(&b, -3.0f) == 0x7fc00000u);
}

/* Segment starts (t = 0) return c0 exactly, and the ROM pins c0 to the
 * correctly rounded value: so sigmoid at x = -16 + k/8 is correctly rounded. */
TEST(test_segment_starts_exact)
{
    pm_lfu_table t = builtin(PM_LFU_SIGMOID);
    for (uint32_t s = 0; s < t.segments; s++) {
        float x = -16.0f + (float)s / 8.0f;
        CHECK_MSG(pm_lfu_eval(&t, x) == t.coeffs[s * 4], "segment %u", s);
        CHECK_MSG(ulp32(pm_lfu_eval(&t, x), pm_ref_eval(PM_LFU_SIGMOID, x)) == 0, "sigmoid(%g)", (double)x);
    }
    pm_lfu_table_free(&t);
}

TEST(test_eval_array_matches_scalar)
{
    enum { N = 5000 };
    static float x[N], y[N];
    for (int f = 0; f < PM_LFU_FUNC_COUNT; f++) {
        pm_lfu_table t = builtin((pm_lfu_func)f);
        for (int i = 0; i < N; i++) x[i] = pm_f32_from_bits(rnd32() ^ (uint32_t)rnd32() << 16);
        x[0] = 0.0f;
        x[1] = -INFINITY;
        pm_lfu_eval_array(&t, x, y, N);
        int same = 1;
        for (int i = 0; i < N; i++) same &= pm_f32_bits(y[i]) == pm_f32_bits(pm_lfu_eval(&t, x[i]));
        CHECK_MSG(same, "%s", t.name);
        pm_lfu_table_free(&t);
    }
}

/* ---- validation ---- */

TEST(test_validate_rejects)
{
    pm_error err;
    pm_lfu_table good = line_table(PM_LFU_OOR_CLAMP, PM_LFU_FORM_PLAIN);
    CHECK(pm_lfu_table_validate(&good, &err) == PM_OK);
    pm_lfu_table t;
    t = good; t.degree = 0; CHECK(pm_lfu_table_validate(&t, &err) == PM_ERR_INVALID && strstr(err.message, "degree"));
    t = good; t.degree = 4; CHECK(pm_lfu_table_validate(&t, &err) != PM_OK);
    t = good; t.segments = 0; CHECK(pm_lfu_table_validate(&t, &err) != PM_OK && strstr(err.message, "segments"));
    t = good; t.segments = PM_LFU_MAX_SEGMENTS + 1; CHECK(pm_lfu_table_validate(&t, &err) != PM_OK);
    t = good; t.x_max = t.x_min; CHECK(pm_lfu_table_validate(&t, &err) != PM_OK && strstr(err.message, "x_max"));
    t = good; t.x_min = -INFINITY; CHECK(pm_lfu_table_validate(&t, &err) != PM_OK && strstr(err.message, "x_min"));
    t = good; t.x_min = -FLT_MAX; t.x_max = FLT_MAX; CHECK(pm_lfu_table_validate(&t, &err) != PM_OK); /* width overflows */
    t = good; t.above_slope = NAN; CHECK(pm_lfu_table_validate(&t, &err) != PM_OK && strstr(err.message, "above_slope"));
    t = good; t.param[5] = 1.0f; CHECK(pm_lfu_table_validate(&t, &err) != PM_OK && strstr(err.message, "param[5]"));
    t = good; t.mode = 2; CHECK(pm_lfu_table_validate(&t, &err) != PM_OK);
    t = good; t.oor = 4; CHECK(pm_lfu_table_validate(&t, &err) != PM_OK);
    t = good; memset(t.name, 'a', sizeof t.name); CHECK(pm_lfu_table_validate(&t, &err) != PM_OK && strstr(err.message, "name"));
    t = good; t.coeffs = NULL; CHECK(pm_lfu_table_validate(&t, &err) != PM_OK);
    float bad_coeffs[8];
    memcpy(bad_coeffs, good.coeffs, sizeof bad_coeffs);
    bad_coeffs[5] = INFINITY;
    t = good; t.coeffs = bad_coeffs; CHECK(pm_lfu_table_validate(&t, &err) != PM_OK && strstr(err.message, "coefficient 5"));
    /* An invalid table never crashes the evaluator: NaN out. */
    t = good; t.degree = 9; CHECK(pm_f32_bits(pm_lfu_eval(&t, 1.0f)) == 0x7fc00000u);

    pm_lfu_table r = builtin(PM_LFU_RSQRT);
    t = r; t.x_max = 3.0f; CHECK(pm_lfu_table_validate(&t, &err) != PM_OK && strstr(err.message, "x_max"));
    t = r; t.param[0] = 7.0f; CHECK(pm_lfu_table_validate(&t, &err) != PM_OK && strstr(err.message, "reduction"));
    t = r; t.form = PM_LFU_FORM_X_TIMES; CHECK(pm_lfu_table_validate(&t, &err) != PM_OK);
    pm_lfu_table_free(&r);
    pm_lfu_table e = builtin(PM_LFU_EXP);
    t = e; t.param[PM_LFU_PARAM_EXP_C] = 1.0f; CHECK(pm_lfu_table_validate(&t, &err) != PM_OK && strstr(err.message, "param[1]"));
    pm_lfu_table_free(&e);

    CHECK(pm_lfu_builtin(PM_LFU_FUNC_COUNT, &t, &err) == PM_ERR_INVALID);
}

TEST(test_names)
{
    static const char *const names[] = {"exp", "exp2", "sigmoid", "tanh", "silu", "gelu", "rsqrt", "recip"};
    for (int f = 0; f < PM_LFU_FUNC_COUNT; f++) {
        pm_lfu_func g;
        CHECK(strcmp(pm_lfu_func_name((pm_lfu_func)f), names[f]) == 0);
        CHECK(pm_lfu_func_from_name(names[f], &g) == 1 && g == (pm_lfu_func)f);
        pm_lfu_table t = builtin((pm_lfu_func)f);
        CHECK(strcmp(t.name, names[f]) == 0);
        pm_lfu_table_free(&t);
    }
    pm_lfu_func g;
    CHECK(pm_lfu_func_from_name("Exp", &g) == 0 && pm_lfu_func_from_name("", &g) == 0 && pm_lfu_func_from_name(NULL, &g) == 0);
    CHECK(pm_lfu_func_name(PM_LFU_FUNC_COUNT) == NULL);
}

/* ---- serialisation ---- */

static uint8_t *serialize(const pm_lfu_table *t, size_t *len)
{
    pm_error err;
    *len = pm_lfu_table_serialized_size(t);
    uint8_t *buf = malloc(*len);
    size_t written = 0;
    CHECK_MSG(pm_lfu_table_serialize(t, buf, *len, &written, &err) == PM_OK, "%s", err.message);
    CHECK(written == *len);
    return buf;
}

static int same_table(const pm_lfu_table *a, const pm_lfu_table *b)
{
    if (memcmp(a->name, b->name, sizeof a->name) || a->mode != b->mode || a->form != b->form || a->oor != b->oor ||
        a->degree != b->degree || a->segments != b->segments)
        return 0;
    const float fa[6] = {a->x_min, a->x_max, a->below_value, a->above_value, a->below_slope, a->above_slope};
    const float fb[6] = {b->x_min, b->x_max, b->below_value, b->above_value, b->below_slope, b->above_slope};
    if (memcmp(fa, fb, sizeof fa) || memcmp(a->param, b->param, sizeof a->param)) return 0;
    const pm_lfu_tail *ta = &a->tail, *tb = &b->tail;
    if (ta->kind != tb->kind || ta->form != tb->form || ta->h_segments != tb->h_segments || ta->e_segments != tb->e_segments)
        return 0;
    const float ga[8] = {ta->a_scale, ta->h_min, ta->h_max, ta->e_min, ta->e_max, ta->exp_c, ta->exp_l_hi, ta->exp_l_lo};
    const float gb[8] = {tb->a_scale, tb->h_min, tb->h_max, tb->e_min, tb->e_max, tb->exp_c, tb->exp_l_hi, tb->exp_l_lo};
    if (memcmp(ga, gb, sizeof ga)) return 0;
    return memcmp(a->coeffs, b->coeffs, sizeof(float) * pm_lfu_coeff_count(a)) == 0;
}

TEST(test_serialize_roundtrip)
{
    pm_error err;
    for (int f = 0; f <= PM_LFU_FUNC_COUNT; f++) {
        pm_lfu_table t = f < PM_LFU_FUNC_COUNT ? builtin((pm_lfu_func)f) : line_table(PM_LFU_OOR_LINEAR, PM_LFU_FORM_X_TIMES);
        size_t len;
        uint8_t *buf = serialize(&t, &len);
        CHECK(len == PM_LFU_SERIAL_HEADER_BYTES + 4 * pm_lfu_coeff_count(&t));
        CHECK(memcmp(buf, "PMLF", 4) == 0 && buf[4] == PM_LFU_SERIAL_VERSION && buf[5] == 0);
        pm_lfu_table back;
        CHECK_MSG(pm_lfu_table_deserialize(buf, len, &back, &err) == PM_OK, "%s", err.message);
        CHECK(same_table(&t, &back));
        int same = 1;
        for (int i = 0; i < 20000; i++) {
            float x = pm_f32_from_bits(rnd32() ^ (uint32_t)rnd32() << 16);
            same &= pm_f32_bits(pm_lfu_eval(&t, x)) == pm_f32_bits(pm_lfu_eval(&back, x));
        }
        CHECK_MSG(same, "%s evaluates differently after a round trip", t.name);
        pm_lfu_table_free(&back);
        /* Bytes after the table are ignored (lfu.ld passes the rest of SRAM). */
        uint8_t *longer = calloc(len + 64, 1);
        memcpy(longer, buf, len);
        memset(longer + len, 0xAB, 64);
        CHECK(pm_lfu_table_deserialize(longer, len + 64, &back, &err) == PM_OK && same_table(&t, &back));
        pm_lfu_table_free(&back);
        free(longer);
        /* Too small a destination: an error, nothing claimed written. */
        size_t written = 99;
        CHECK(pm_lfu_table_serialize(&t, buf, len - 1, &written, &err) == PM_ERR_INVALID && written == 0);
        free(buf);
        if (f < PM_LFU_FUNC_COUNT) pm_lfu_table_free(&t);
    }
}

TEST(test_deserialize_truncated)
{
    pm_error err;
    pm_lfu_table t = builtin(PM_LFU_GELU), back;
    size_t len;
    uint8_t *buf = serialize(&t, &len);
    for (size_t n = 0; n < len; n++) {
        uint8_t *cut = malloc(n ? n : 1); /* exactly n bytes, so a sanitizer sees any over-read */
        memcpy(cut, buf, n);
        pm_status st = pm_lfu_table_deserialize(cut, n, &back, &err);
        CHECK_MSG(st == PM_ERR_FORMAT && strstr(err.message, "PMLF byte"), "length %zu: %s", n, err.message);
        CHECK(back.coeffs == NULL);
        free(cut);
    }
    free(buf);
    pm_lfu_table_free(&t);
}

static void expect_offset(const uint8_t *buf, size_t len, size_t at, uint8_t value, const char *want)
{
    pm_error err;
    pm_lfu_table back;
    uint8_t *copy = malloc(len);
    memcpy(copy, buf, len);
    copy[at] = value;
    CHECK_MSG(pm_lfu_table_deserialize(copy, len, &back, &err) == PM_ERR_FORMAT && strstr(err.message, want),
              "byte %zu = %u: '%s' lacks '%s'", at, value, err.message, want);
    free(copy);
}

TEST(test_deserialize_names_offset)
{
    pm_lfu_table t = builtin(PM_LFU_EXP);
    size_t len;
    uint8_t *buf = serialize(&t, &len);
    expect_offset(buf, len, 0, 'X', "byte 0 (magic)");
    expect_offset(buf, len, 4, 1, "byte 4 (version)"); /* a version 1 image: refused */
    expect_offset(buf, len, 4, 3, "byte 4 (version)");
    expect_offset(buf, len, 6, 5, "byte 6 (mode)");
    expect_offset(buf, len, 9, 0, "byte 9 (degree)");
    expect_offset(buf, len, 10, 3, "byte 10 (tail.kind)");
    expect_offset(buf, len, 10, 1, "byte 10 (tail.kind)");            /* a tail needs uniform mode */
    expect_offset(buf, len, 11, 1, "byte 11 (tail.form)");            /* no tail: must be 0 */
    expect_offset(buf, len, 108, 1, "byte 108 (tail.h_segments)");    /* no tail: must be 0 */
    expect_offset(buf, len, 110, 1, "byte 110 (tail.e_segments)");
    expect_offset(buf, len, 143, 0x3f, "byte 140 (tail.exp_l_lo)");
    expect_offset(buf, len, 14, 1, "byte 12 (segments)");          /* 65560 segments */
    expect_offset(buf, len, 51, 0x7f, "byte 48 (x_min)");          /* x_min becomes NaN-ish/huge */
    expect_offset(buf, len, 60 + 3, 0x3f, "byte 60 (above_value)"); /* unused in exponent mode */
    expect_offset(buf, len, 72 + 2, 0x20, "byte 72 (param[0])");   /* reduction 2^-149*k: not an integer */
    expect_offset(buf, len, 104, 1, "byte 104 (coeff_count)");
    expect_offset(buf, len, 144 + 4 * 5 + 3, 0x7f, "byte 164 (coeffs)"); /* coefficient 5 becomes NaN */
    free(buf);
    pm_lfu_table_free(&t);

    /* A table with a tail (GELU: main 128 segments, h 128, exp 24). */
    t = builtin(PM_LFU_GELU);
    buf = serialize(&t, &len);
    CHECK(len == 144 + 4 * 4 * (128 + 128 + 24) && buf[10] == PM_LFU_TAIL_EXP_SQUARE && buf[11] == PM_LFU_FORM_PLAIN);
    expect_offset(buf, len, 10, 3, "byte 10 (tail.kind)");
    expect_offset(buf, len, 11, 2, "byte 11 (tail.form)");
    expect_offset(buf, len, 108, 0, "byte 108 (tail.h_segments)");   /* 128 -> 0 */
    expect_offset(buf, len, 109, 0x10, "byte 108 (tail.h_segments)"); /* 4224 > 4096 */
    expect_offset(buf, len, 110, 0, "byte 110 (tail.e_segments)");
    expect_offset(buf, len, 115, 0x3f, "byte 112 (tail.a_scale)");    /* -0.5 -> +0.5: no decay */
    expect_offset(buf, len, 114, 0x01, "byte 112 (tail.a_scale)");    /* not a power of two */
    expect_offset(buf, len, 116 + 3, 0x7f, "byte 116 (tail.h_min)");   /* NaN */
    expect_offset(buf, len, 120 + 3, 0xc2, "byte 120 (tail.h_max)");   /* below h_min */
    expect_offset(buf, len, 135, 0x40, "byte 132 (tail.exp_c)");      /* C no longer 1/L */
    expect_offset(buf, len, 104, 0, "byte 104 (coeff_count)");
    expect_offset(buf, len, 56 + 3, 0x3f, "byte 56 (below_value)");   /* unused with a tail */
    free(buf);
    pm_lfu_table_free(&t);
}

TEST(test_deserialize_random_flips)
{
    pm_error err;
    int rejected = 0, accepted = 0;
    for (int f = 0; f < PM_LFU_FUNC_COUNT; f++) {
        pm_lfu_table t = builtin((pm_lfu_func)f);
        size_t len;
        uint8_t *buf = serialize(&t, &len);
        for (int trial = 0; trial < 400; trial++) {
            uint8_t *copy = malloc(len);
            memcpy(copy, buf, len);
            int flips = 1 + (int)(rnd32() % 3);
            for (int k = 0; k < flips; k++) {
                /* Mostly the header, where the structure lives. */
                size_t at = (rnd32() & 1) ? rnd32() % PM_LFU_SERIAL_HEADER_BYTES : rnd32() % len;
                copy[at] ^= (uint8_t)(1u << (rnd32() % 8));
            }
            pm_lfu_table back;
            pm_status st = pm_lfu_table_deserialize(copy, len, &back, &err);
            if (st == PM_OK) {
                accepted++;
                CHECK_MSG(pm_lfu_table_validate(&back, &err) == PM_OK, "%s", err.message);
                for (int i = 0; i < 64; i++) (void)pm_lfu_eval(&back, pm_f32_from_bits(rnd32()));
                pm_lfu_table_free(&back);
            } else {
                rejected++;
                CHECK(st == PM_ERR_FORMAT && back.coeffs == NULL && strstr(err.message, "PMLF byte"));
            }
            free(copy);
        }
        free(buf);
        pm_lfu_table_free(&t);
    }
    CHECK(rejected > 0 && accepted > 0); /* both paths were exercised */
}

TEST(test_copy)
{
    pm_error err;
    pm_lfu_table a = builtin(PM_LFU_TANH), b;
    CHECK(pm_lfu_table_copy(&b, &a, &err) == PM_OK);
    CHECK(b.coeffs != a.coeffs && same_table(&a, &b));
    pm_lfu_table_free(&a);
    CHECK(a.coeffs == NULL && a.segments == 0);
    CHECK(pm_lfu_eval(&b, 0.5f) == pm_lfu_eval(&b, 0.5f) && pm_lfu_eval(&b, 0.5f) > 0.46f);
    pm_lfu_table_free(&b);
    pm_lfu_table_free(NULL);
}

int main(void)
{
    RUN(test_names);
    RUN(test_builtin_accuracy);
    RUN(test_builtin_tails);
    RUN(test_special_values);
    RUN(test_uniform_map_and_policies);
    RUN(test_tail_datapath);
    RUN(test_segment_starts_exact);
    RUN(test_eval_array_matches_scalar);
    RUN(test_validate_rejects);
    RUN(test_serialize_roundtrip);
    RUN(test_deserialize_truncated);
    RUN(test_deserialize_names_offset);
    RUN(test_deserialize_random_flips);
    RUN(test_copy);
    return TEST_SUMMARY();
}
