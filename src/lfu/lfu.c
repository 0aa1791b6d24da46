/* LFU tables and their bit-exact evaluator. Evaluation uses only fp32
 * compares, adds, multiplies, fmaf (correctly rounded by IEEE 754) and
 * exponent-field bit operations, so every host gives the same bits; the
 * rules are written out in docs/lfu.md and in include/polymorph/lfu.h. */
#include "lfu_internal.h"
#include "polymorph/numerics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ---- */

static const char *const func_names[PM_LFU_FUNC_COUNT] = {
    [PM_LFU_EXP] = "exp",   [PM_LFU_EXP2] = "exp2", [PM_LFU_SIGMOID] = "sigmoid",
    [PM_LFU_TANH] = "tanh", [PM_LFU_SILU] = "silu", [PM_LFU_GELU] = "gelu",
    [PM_LFU_RSQRT] = "rsqrt", [PM_LFU_RECIP] = "recip",
};

const char *pm_lfu_func_name(pm_lfu_func f)
{
    if ((unsigned)f >= PM_LFU_FUNC_COUNT) return NULL;
    return func_names[f];
}

int pm_lfu_func_from_name(const char *name, pm_lfu_func *out)
{
    if (!name) return 0;
    for (int f = 0; f < PM_LFU_FUNC_COUNT; f++) {
        if (strcmp(name, func_names[f]) == 0) {
            if (out) *out = (pm_lfu_func)f;
            return 1;
        }
    }
    return 0;
}

/* ---- fp32 helpers (bit operations only) ---- */

#define QNAN_BITS 0x7fc00000u
#define INF_BITS 0x7f800000u

static float canonical_nan(void) { return pm_f32_from_bits(QNAN_BITS); }

/* 2^k for k in [-126, 127], built from the exponent field. */
static float pow2_normal(int k) { return pm_f32_from_bits((uint32_t)(k + 127) << 23); }

/* y * 2^n. For |y| in [0.5, 2) (every built-in reduction) the result is
 * rounded exactly once, also when it is subnormal: the first product stays
 * normal and exact, the second does the only rounding. */
static float scale_pow2(float y, int n)
{
    if (n > 127) {
        if (n > 254) n = 254;
        return (y * pow2_normal(n - 127)) * pow2_normal(127);
    }
    if (n < -126) {
        if (n < -190) return y * 0.0f; /* |y| * 2^-191 < 2^-150: rounds to a signed zero */
        return (y * pow2_normal(n + 66)) * pow2_normal(-66);
    }
    return y * pow2_normal(n);
}

/* m * 2^n rounded once, for any finite m and integer n (|n| < 2^20): m's
 * own exponent is folded into n, so the only rounding is scale_pow2's (an
 * exponent add and, for a subnormal result, one rounding shift). Zero,
 * infinity and NaN pass through. */
static float ldexp_once(float m, int n);

/* ---- the segment map and polynomial ---- */

/* One uniformly segmented polynomial table as the evaluator latches it:
 * coefficients, segment count, degree and the fp32 map of t. */
typedef struct lfu_sub {
    const float *c;
    uint32_t segments, degree;
    float scale, bias;
} lfu_sub;

/* Everything the evaluator derives from a table once (what a hardware LFU
 * latches at table-load time): the main map and, with a tail, the h and
 * exp sub-tables, which sit after the main segments in coeffs. */
typedef struct lfu_map {
    lfu_sub main, h, e;
} lfu_map;

/* A table with a residual base branch (uniform mode, param[0] = f + 1):
 * the built-in table of f read in place from the ROM, and its map. */
typedef struct lfu_base {
    int on;
    float weight;
    pm_lfu_table table;
    lfu_map map;
} lfu_base;

void pm_lfu_segment_map(uint32_t segments, float lo, float hi, float *scale, float *bias)
{
    float s = (float)segments / (hi - lo);
    *scale = s;
    *bias = -(lo * s);
}

void pm_lfu_uniform_map(const pm_lfu_table *t, float *scale, float *bias)
{
    pm_lfu_segment_map(t->segments, t->x_min, t->x_max, scale, bias);
}

size_t pm_lfu_coeff_count(const pm_lfu_table *t)
{
    if (!t) return 0;
    size_t segs = (size_t)t->segments;
    if (t->tail.kind != PM_LFU_TAIL_NONE) segs += (size_t)t->tail.h_segments + t->tail.e_segments;
    return segs * (t->degree + 1u);
}

static lfu_sub sub_of(const float *c, uint32_t segments, uint32_t degree, float lo, float hi)
{
    lfu_sub u = {c, segments, degree, 0.0f, 0.0f};
    pm_lfu_segment_map(segments, lo, hi, &u.scale, &u.bias);
    return u;
}

static lfu_map map_of(const pm_lfu_table *t)
{
    lfu_map m;
    memset(&m, 0, sizeof m);
    m.main = sub_of(t->coeffs, t->segments, t->degree, t->x_min, t->x_max);
    if (t->tail.kind != PM_LFU_TAIL_NONE) {
        const float *hc = t->coeffs + (size_t)t->segments * (t->degree + 1u);
        const float *ec = hc + (size_t)t->tail.h_segments * (t->degree + 1u);
        m.h = sub_of(hc, t->tail.h_segments, t->degree, t->tail.h_min, t->tail.h_max);
        m.e = sub_of(ec, t->tail.e_segments, t->degree, t->tail.e_min, t->tail.e_max);
    }
    return m;
}

/* p(x) of the segment x falls in (edge segments for x outside the domain,
 * which then extrapolate). t is computed with one rounding from the exact
 * x*scale, so it keeps fp32 accuracy in [0, 1] whatever x's magnitude. */
static float poly_at(const lfu_sub *m, float x)
{
    float u = fmaf(x, m->scale, m->bias);
    uint32_t s;
    if (!(u >= 1.0f)) s = 0;
    else if (u >= (float)m->segments) s = m->segments - 1;
    else s = (uint32_t)u; /* truncation is floor here: u >= 1 */
    float local = fmaf(x, m->scale, m->bias - (float)s);
    const float *c = m->c + (size_t)s * (m->degree + 1u);
    float y = c[m->degree];
    for (int k = (int)m->degree - 1; k >= 0; k--) y = fmaf(y, local, c[k]);
    return y;
}

/* ---- the below-domain tail ---- */

/* Below this z = a*C the result is a signed zero whatever the factor:
 * |[x *] h * p| < 2^129 (an fp32 product), so |y| < 2^(129 - 511) < 2^-150.
 * Above it |z| <= 512 keeps n exact and r within ~2^-15 of [-L/2, L/2]. */
#define TAIL_Z_MIN (-512.0f)

/* y = [x *] h(x) * exp(a(x)) for x < x_min (docs/lfu.md, "Tails"):
 *   a = a_scale * x, or a_scale * (q + q_lo) with q = x*x, q_lo = fmaf(x, x, -q)
 *   (exact: a_scale is a power of two), a_lo = 0 for the linear kind;
 *   n = rne(a*C); r = fmaf(-n, L_hi, a) (exact) + fmaf(-n, L_lo, a_lo) (one rounding);
 *   y = (([x *] h(x)) * e(r)) * 2^n, the power of two applied with one rounding.
 * Folding x and h in before 2^n keeps SiLU's results normal-accurate where
 * e^x alone would already be subnormal. */
static float eval_tail(const pm_lfu_table *t, const lfu_map *m, float x)
{
    const pm_lfu_tail *tl = &t->tail;
    float xh = x < tl->h_min ? tl->h_min : x > tl->h_max ? tl->h_max : x; /* h is clamped */
    float h = poly_at(&m->h, xh);
    int xtimes = tl->form == PM_LFU_FORM_X_TIMES;
    int square = tl->kind == PM_LFU_TAIL_EXP_SQUARE;
    float q = square ? x * x : x;
    float a = tl->a_scale * q;
    float z = a * tl->exp_c;
    if (!(z >= TAIL_Z_MIN)) { /* also x = -inf and an overflowing x*x (z = -inf): a signed zero */
        uint32_t sign = (pm_f32_bits(h) ^ (xtimes ? pm_f32_bits(x) : 0u)) & 0x80000000u;
        return pm_f32_from_bits(sign);
    }
    float a_lo = square ? tl->a_scale * fmaf(x, x, -q) : 0.0f; /* x*x - q exactly (q is finite here) */
    float nf = (z + 0x1.8p23f) - 0x1.8p23f; /* round half even; z in [-512, 0] */
    float r = fmaf(-nf, tl->exp_l_hi, a);
    r = r + fmaf(-nf, tl->exp_l_lo, a_lo);
    float e = poly_at(&m->e, r);
    float f = xtimes ? x * h : h;
    return ldexp_once(f * e, (int)nf);
}

/* ---- uniform mode ---- */

static float eval_uniform(const pm_lfu_table *t, const lfu_map *m, float x)
{
    if (x != x) return canonical_nan();
    float xe = x;
    if (!(x >= t->x_min) || x > t->x_max) {
        int below = x < t->x_min;
        if (below && t->tail.kind != PM_LFU_TAIL_NONE) return eval_tail(t, m, x);
        switch (t->oor) {
        case PM_LFU_OOR_CONST:
            return below ? t->below_value : t->above_value;
        case PM_LFU_OOR_LINEAR: {
            float slope = below ? t->below_slope : t->above_slope;
            float icpt = below ? t->below_value : t->above_value;
            /* slope 0 means the constant, also for infinite x (0*inf would be NaN). */
            return slope == 0.0f ? icpt : fmaf(slope, x, icpt);
        }
        case PM_LFU_OOR_CLAMP:
            xe = below ? t->x_min : t->x_max;
            break;
        default: /* PM_LFU_OOR_EXTEND */
            break;
        }
    }
    float p = poly_at(&m->main, xe);
    return t->form == PM_LFU_FORM_X_TIMES ? xe * p : p;
}

/* ---- exponent mode ---- */

/* y = 2^(x/L): n = rne(x*C), r = x - n*L by a Cody-Waite pair in two fmaf
 * (the first is exact when |n| < 2^8 and L_hi has 24 bits), y = p(r) * 2^n. */
static float eval_exp2(const pm_lfu_table *t, const lfu_map *m, float x)
{
    float z = x * t->param[PM_LFU_PARAM_EXP_C];
    if (z >= 129.0f) return pm_f32_from_bits(INF_BITS); /* p(r)*2^n >= 2^128.5 */
    if (z <= -152.0f) return 0.0f;                     /* below 2^-151: rounds to +0 */
    float nf = (z + 0x1.8p23f) - 0x1.8p23f;           /* round half even, |z| < 2^22 */
    float r = fmaf(-nf, t->param[PM_LFU_PARAM_EXP_L_HI], x);
    r = fmaf(-nf, t->param[PM_LFU_PARAM_EXP_L_LO], r);
    return scale_pow2(poly_at(&m->main, r), (int)nf);
}

/* Unbiased exponent and the mantissa bits of a finite nonzero |x|;
 * subnormals are normalised exactly by a power-of-two multiply. */
static void split(uint32_t abs_bits, int *e, uint32_t *mant)
{
    int adjust = 0;
    if ((abs_bits >> 23) == 0) {
        abs_bits = pm_f32_bits(pm_f32_from_bits(abs_bits) * 0x1p32f);
        adjust = 32;
    }
    *e = (int)(abs_bits >> 23) - 127 - adjust;
    *mant = abs_bits & 0x7fffffu;
}

static float ldexp_once(float m, int n)
{
    uint32_t b = pm_f32_bits(m), a = b & 0x7fffffffu;
    if (a == 0 || a >= INF_BITS) return m;
    int e;
    uint32_t mant;
    split(a, &e, &mant);
    float w = pm_f32_from_bits((b & 0x80000000u) | (127u << 23) | mant); /* +-[1, 2), exact */
    return scale_pow2(w, n + e);
}

static float eval_rsqrt(const pm_lfu_table *t, const lfu_map *m, float x)
{
    (void)t; /* the map holds everything; t is for the common reduction signature */
    uint32_t b = pm_f32_bits(x);
    if (x != x) return canonical_nan();
    if (b == 0x80000000u) return pm_f32_from_bits(0x80000000u | INF_BITS); /* IEEE rSqrt(-0) = -inf */
    if (b >> 31) return canonical_nan();
    if (b == 0) return pm_f32_from_bits(INF_BITS);
    if (b == INF_BITS) return 0.0f;
    int e;
    uint32_t mant;
    split(b, &e, &mant);
    int odd = (e + 256) & 1;       /* e + 256 > 0: parity without signed bit tricks */
    int k = (e + 256 - odd) / 2 - 128; /* x = w * 4^k, w = m * 2^odd in [1, 4) */
    float w = pm_f32_from_bits(((uint32_t)(127 + odd) << 23) | mant);
    return scale_pow2(poly_at(&m->main, w), -k);
}

static float eval_recip(const pm_lfu_table *t, const lfu_map *m, float x)
{
    (void)t;
    uint32_t b = pm_f32_bits(x);
    uint32_t sign = b & 0x80000000u, a = b & 0x7fffffffu;
    if (x != x) return canonical_nan();
    if (a == 0) return pm_f32_from_bits(sign | INF_BITS);
    if (a == INF_BITS) return pm_f32_from_bits(sign);
    int e;
    uint32_t mant;
    split(a, &e, &mant);
    float w = pm_f32_from_bits((127u << 23) | mant);
    float y = scale_pow2(poly_at(&m->main, w), -e);
    return sign ? -y : y;
}

typedef float (*reduction_fn)(const pm_lfu_table *, const lfu_map *, float);
static const reduction_fn reductions[PM_LFU_RED_COUNT] = {
    [PM_LFU_RED_EXP2] = eval_exp2,
    [PM_LFU_RED_RSQRT] = eval_rsqrt,
    [PM_LFU_RED_RECIP] = eval_recip,
};

static float eval_one(const pm_lfu_table *t, const lfu_map *m, float x);

/* A read-only view of a ROM entry as a table (no copy: evaluation only). */
static pm_lfu_table rom_view(pm_lfu_func f)
{
    const pm_lfu_rom_entry *r = &pm_lfu_rom[f];
    pm_lfu_table v;
    memset(&v, 0, sizeof v);
    v.mode = r->mode;
    v.form = r->form;
    v.oor = r->oor;
    v.degree = r->degree;
    v.segments = r->segments;
    v.x_min = r->x_min;
    v.x_max = r->x_max;
    v.below_value = r->below_value;
    v.above_value = r->above_value;
    v.below_slope = r->below_slope;
    v.above_slope = r->above_slope;
    memcpy(v.param, r->param, sizeof v.param);
    v.tail = r->tail;
    v.coeffs = (float *)(uintptr_t)r->coeffs; /* never written through */
    return v;
}

/* The base branch a table asks for; off unless uniform mode names a
 * built-in in param[PM_LFU_PARAM_BASE_FUNC] (ROM tables have no base, so
 * this never recurses). */
static lfu_base base_of(const pm_lfu_table *t)
{
    lfu_base b;
    memset(&b, 0, sizeof b);
    float code = t->param[PM_LFU_PARAM_BASE_FUNC];
    if (t->mode != PM_LFU_MODE_UNIFORM || !(code >= 1.0f && code <= (float)PM_LFU_FUNC_COUNT)) return b;
    b.on = 1;
    b.weight = t->param[PM_LFU_PARAM_BASE_WEIGHT];
    b.table = rom_view((pm_lfu_func)((int)code - 1));
    b.map = map_of(&b.table);
    return b;
}

/* y = fmaf(w_b, base(x), f(x)): one rounding after the base table's own. */
static float eval_with_base(const pm_lfu_table *t, const lfu_map *m, const lfu_base *b, float x)
{
    float y = eval_one(t, m, x);
    if (!b->on) return y;
    y = fmaf(b->weight, eval_one(&b->table, &b->map, x), y);
    return y != y ? canonical_nan() : y;
}

static float eval_one(const pm_lfu_table *t, const lfu_map *m, float x)
{
    float y;
    if (t->mode == PM_LFU_MODE_EXPONENT) {
        if (x != x) return canonical_nan();
        unsigned red = (unsigned)t->param[PM_LFU_PARAM_REDUCTION];
        if (red >= PM_LFU_RED_COUNT) return canonical_nan();
        y = reductions[red](t, m, x);
    } else {
        y = eval_uniform(t, m, x);
    }
    /* NaN bits differ between hosts (x86's default NaN is negative): one NaN. */
    return y != y ? canonical_nan() : y;
}

/* Cheap guards so a table that never went through validation cannot make
 * the evaluator read out of bounds; such a table evaluates to NaN. */
static int evaluable(const pm_lfu_table *t)
{
    if (!t || !t->coeffs || t->segments < 1 || t->segments > PM_LFU_MAX_SEGMENTS || t->degree < 1 ||
        t->degree > PM_LFU_MAX_DEGREE)
        return 0;
    const pm_lfu_tail *tl = &t->tail;
    if (tl->kind != PM_LFU_TAIL_NONE) {
        /* The tail's reduction relies on z = a*C <= 0 (so n fits an int). */
        int decays = tl->kind == PM_LFU_TAIL_EXP_LINEAR ? tl->a_scale > 0.0f && t->x_min <= 0.0f
                                                          : tl->a_scale < 0.0f;
        if (tl->kind >= PM_LFU_TAIL_KIND_COUNT || t->mode != PM_LFU_MODE_UNIFORM || !decays || !(tl->exp_c > 0.0f) ||
            tl->h_segments < 1 || tl->h_segments > PM_LFU_MAX_SEGMENTS || tl->e_segments < 1 ||
            tl->e_segments > PM_LFU_MAX_SEGMENTS)
            return 0;
    }
    if (t->mode == PM_LFU_MODE_EXPONENT) {
        float red = t->param[PM_LFU_PARAM_REDUCTION];
        return red >= 0.0f && red < (float)PM_LFU_RED_COUNT;
    }
    return t->mode == PM_LFU_MODE_UNIFORM;
}

float pm_lfu_eval(const pm_lfu_table *t, float x)
{
    if (!evaluable(t)) return canonical_nan();
    lfu_map m = map_of(t);
    lfu_base b = base_of(t);
    return eval_with_base(t, &m, &b, x);
}

void pm_lfu_eval_array(const pm_lfu_table *t, const float *x, float *y, size_t n)
{
    if (!evaluable(t)) {
        for (size_t i = 0; i < n; i++) y[i] = canonical_nan();
        return;
    }
    lfu_map m = map_of(t); /* what a hardware LFU latches at table-load time */
    lfu_base b = base_of(t);
    for (size_t i = 0; i < n; i++) y[i] = eval_with_base(t, &m, &b, x[i]);
}

/* ---- validation ---- */

static int finite(float v) { return v == v && v - v == 0.0f; }

static int problem(pm_lfu_problem *p, size_t offset, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int problem(pm_lfu_problem *p, size_t offset, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    p->offset = offset;
    p->field = field;
    vsnprintf(p->what, sizeof p->what, fmt, ap);
    va_end(ap);
    return -1;
}

/* Byte offsets of the fields in the PMLF layout (see lfu_serial.c). */
enum {
    OFF_MODE = 6, OFF_FORM = 7, OFF_OOR = 8, OFF_DEGREE = 9, OFF_SEGMENTS = 12, OFF_NAME = 16,
    OFF_X_MIN = 48, OFF_X_MAX = 52, OFF_BELOW_VALUE = 56, OFF_ABOVE_VALUE = 60,
    OFF_BELOW_SLOPE = 64, OFF_ABOVE_SLOPE = 68, OFF_PARAM = 72, OFF_COEFFS = PM_LFU_SERIAL_HEADER_BYTES,
    OFF_TAIL_KIND = 10, OFF_TAIL_FORM = 11, OFF_TAIL_H_SEGMENTS = 108, OFF_TAIL_E_SEGMENTS = 110, OFF_TAIL_FLOATS = 112,
};

static const char *const param_names[8] = {"param[0]", "param[1]", "param[2]", "param[3]",
                                           "param[4]", "param[5]", "param[6]", "param[7]"};

static int check_exponent(const pm_lfu_table *t, pm_lfu_problem *p)
{
    float red = t->param[PM_LFU_PARAM_REDUCTION];
    if (!(red >= 0.0f && red < (float)PM_LFU_RED_COUNT) || red != (float)(int)red)
        return problem(p, OFF_PARAM, "param[0]", "reduction %g is not one of 0..%d", (double)red, PM_LFU_RED_COUNT - 1);
    if (t->form != PM_LFU_FORM_PLAIN) return problem(p, OFF_FORM, "form", "exponent mode needs form plain (0), not %u", (unsigned)t->form);
    if (t->oor != PM_LFU_OOR_CLAMP) return problem(p, OFF_OOR, "oor", "exponent mode needs oor clamp (0), not %u", (unsigned)t->oor);
    const float unused[4] = {t->below_value, t->above_value, t->below_slope, t->above_slope};
    static const char *const unused_names[4] = {"below_value", "above_value", "below_slope", "above_slope"};
    for (int i = 0; i < 4; i++)
        if (unused[i] != 0.0f)
            return problem(p, OFF_BELOW_VALUE + 4u * i, unused_names[i], "unused in exponent mode, must be 0, is %g", (double)unused[i]);
    int used = 1;
    if ((int)red == PM_LFU_RED_EXP2) {
        float c = t->param[PM_LFU_PARAM_EXP_C], hi = t->param[PM_LFU_PARAM_EXP_L_HI], lo = t->param[PM_LFU_PARAM_EXP_L_LO];
        /* C must be L's inverse closely enough that r stays near [-L/2, L/2]. */
        double prod = (double)c * ((double)hi + (double)lo);
        if (c == 0.0f || hi == 0.0f || !(prod > 1.0 - 0x1p-10 && prod < 1.0 + 0x1p-10))
            return problem(p, OFF_PARAM + 4, "param[1]", "C = %g is not 1/L for L = %g", (double)c, (double)hi + (double)lo);
        used = 4;
    } else {
        float want_max = (int)red == PM_LFU_RED_RSQRT ? 4.0f : 2.0f;
        if (t->x_min != 1.0f) return problem(p, OFF_X_MIN, "x_min", "must be 1 for this reduction, is %g", (double)t->x_min);
        if (t->x_max != want_max)
            return problem(p, OFF_X_MAX, "x_max", "must be %g for this reduction, is %g", (double)want_max, (double)t->x_max);
    }
    for (int i = used; i < 8; i++)
        if (t->param[i] != 0.0f)
            return problem(p, OFF_PARAM + 4u * i, param_names[i], "unused, must be 0, is %g", (double)t->param[i]);
    return 0;
}

static int is_pow2(float v)
{
    uint32_t b = pm_f32_bits(v) & 0x7fffffffu;
    return (b & 0x7fffffu) == 0 && (b >> 23) >= 1 && (b >> 23) <= 254;
}

/* The tail block (PMLF bytes 10, 11 and 108..143). */
static int check_tail(const pm_lfu_table *t, pm_lfu_problem *p)
{
    const pm_lfu_tail *tl = &t->tail;
    const float fl[8] = {tl->a_scale, tl->h_min, tl->h_max, tl->e_min, tl->e_max, tl->exp_c, tl->exp_l_hi, tl->exp_l_lo};
    static const char *const fn[8] = {"tail.a_scale", "tail.h_min", "tail.h_max", "tail.e_min",
                                      "tail.e_max", "tail.exp_c", "tail.exp_l_hi", "tail.exp_l_lo"};
    if (tl->kind >= PM_LFU_TAIL_KIND_COUNT)
        return problem(p, OFF_TAIL_KIND, "tail.kind", "%u is not 0 (none), 1 (exp linear) or 2 (exp square)",
                       (unsigned)tl->kind);
    if (tl->kind != PM_LFU_TAIL_NONE && tl->form > PM_LFU_FORM_X_TIMES)
        return problem(p, OFF_TAIL_FORM, "tail.form", "%u is not 0 (plain) or 1 (x-times)", (unsigned)tl->form);
    if (tl->kind == PM_LFU_TAIL_NONE) {
        if (tl->form) return problem(p, OFF_TAIL_FORM, "tail.form", "must be 0 without a tail, is %u", (unsigned)tl->form);
        if (tl->h_segments) return problem(p, OFF_TAIL_H_SEGMENTS, "tail.h_segments", "must be 0 without a tail, is %u", (unsigned)tl->h_segments);
        if (tl->e_segments) return problem(p, OFF_TAIL_E_SEGMENTS, "tail.e_segments", "must be 0 without a tail, is %u", (unsigned)tl->e_segments);
        for (int i = 0; i < 8; i++)
            if (pm_f32_bits(fl[i]) != 0) return problem(p, OFF_TAIL_FLOATS + 4u * i, fn[i], "must be 0 without a tail, is %g", (double)fl[i]);
        return 0;
    }
    if (t->mode != PM_LFU_MODE_UNIFORM) return problem(p, OFF_TAIL_KIND, "tail.kind", "a tail needs uniform mode");
    if (t->below_value != 0.0f) return problem(p, OFF_BELOW_VALUE, "below_value", "unused with a tail, must be 0, is %g", (double)t->below_value);
    if (t->below_slope != 0.0f) return problem(p, OFF_BELOW_SLOPE, "below_slope", "unused with a tail, must be 0, is %g", (double)t->below_slope);
    if (tl->h_segments < 1 || tl->h_segments > PM_LFU_MAX_SEGMENTS)
        return problem(p, OFF_TAIL_H_SEGMENTS, "tail.h_segments", "%u outside 1..%d", (unsigned)tl->h_segments, PM_LFU_MAX_SEGMENTS);
    if (tl->e_segments < 1 || tl->e_segments > PM_LFU_MAX_SEGMENTS)
        return problem(p, OFF_TAIL_E_SEGMENTS, "tail.e_segments", "%u outside 1..%d", (unsigned)tl->e_segments, PM_LFU_MAX_SEGMENTS);
    for (int i = 0; i < 8; i++)
        if (!finite(fl[i])) return problem(p, OFF_TAIL_FLOATS + 4u * i, fn[i], "%g is not finite", (double)fl[i]);
    /* a(x) must fall towards -inf below x_min, so the tail decays and z = a*C <= 0. */
    if (!is_pow2(tl->a_scale)) return problem(p, OFF_TAIL_FLOATS, "tail.a_scale", "%g is not a normal power of two", (double)tl->a_scale);
    if (tl->kind == PM_LFU_TAIL_EXP_LINEAR && !(tl->a_scale > 0.0f && t->x_min <= 0.0f))
        return problem(p, OFF_TAIL_FLOATS, "tail.a_scale", "an exp(a_scale*x) tail needs a_scale > 0 and x_min <= 0 (a = %g, x_min = %g)",
                       (double)tl->a_scale, (double)t->x_min);
    if (tl->kind == PM_LFU_TAIL_EXP_SQUARE && !(tl->a_scale < 0.0f))
        return problem(p, OFF_TAIL_FLOATS, "tail.a_scale", "an exp(a_scale*x^2) tail needs a_scale < 0, is %g", (double)tl->a_scale);
    for (int k = 0; k < 2; k++) {
        float lo = fl[1 + 2 * k], hi = fl[2 + 2 * k], scale, bias;
        uint32_t segs = k ? tl->e_segments : tl->h_segments;
        if (!(lo < hi)) return problem(p, OFF_TAIL_FLOATS + 8u + 8u * k, fn[2 + 2 * k], "%g is not above %g", (double)hi, (double)lo);
        pm_lfu_segment_map(segs, lo, hi, &scale, &bias);
        if (!finite(scale) || scale <= 0.0f || !finite(bias))
            return problem(p, OFF_TAIL_FLOATS + 8u + 8u * k, fn[2 + 2 * k], "domain width %g gives no finite segment map", (double)hi - (double)lo);
    }
    double prod = (double)tl->exp_c * ((double)tl->exp_l_hi + (double)tl->exp_l_lo);
    if (!(tl->exp_c > 0.0f) || !(tl->exp_l_hi > 0.0f) || !(prod > 1.0 - 0x1p-10 && prod < 1.0 + 0x1p-10))
        return problem(p, OFF_TAIL_FLOATS + 20, "tail.exp_c", "C = %g is not 1/L for L = %g (both must be > 0)", (double)tl->exp_c,
                       (double)tl->exp_l_hi + (double)tl->exp_l_lo);
    return 0;
}

int pm_lfu_check(const pm_lfu_table *t, pm_lfu_problem *p)
{
    if (t->mode > PM_LFU_MODE_EXPONENT) return problem(p, OFF_MODE, "mode", "%u is not 0 (uniform) or 1 (exponent)", (unsigned)t->mode);
    if (t->form > PM_LFU_FORM_X_TIMES) return problem(p, OFF_FORM, "form", "%u is not 0 (plain) or 1 (x-times)", (unsigned)t->form);
    if (t->oor > PM_LFU_OOR_EXTEND) return problem(p, OFF_OOR, "oor", "%u is not one of 0..3", (unsigned)t->oor);
    if (t->degree < 1 || t->degree > PM_LFU_MAX_DEGREE)
        return problem(p, OFF_DEGREE, "degree", "%u outside 1..%d", (unsigned)t->degree, PM_LFU_MAX_DEGREE);
    if (t->segments < 1 || t->segments > PM_LFU_MAX_SEGMENTS)
        return problem(p, OFF_SEGMENTS, "segments", "%u outside 1..%d", (unsigned)t->segments, PM_LFU_MAX_SEGMENTS);
    if (memchr(t->name, '\0', sizeof t->name) == NULL)
        return problem(p, OFF_NAME, "name", "not NUL-terminated within %zu bytes", sizeof t->name);
    const float fields[6] = {t->x_min, t->x_max, t->below_value, t->above_value, t->below_slope, t->above_slope};
    static const char *const names[6] = {"x_min", "x_max", "below_value", "above_value", "below_slope", "above_slope"};
    for (int i = 0; i < 6; i++)
        if (!finite(fields[i])) return problem(p, OFF_X_MIN + 4u * i, names[i], "%g is not finite", (double)fields[i]);
    if (!(t->x_min < t->x_max)) return problem(p, OFF_X_MAX, "x_max", "%g is not above x_min %g", (double)t->x_max, (double)t->x_min);
    float scale, bias;
    pm_lfu_uniform_map(t, &scale, &bias);
    if (!finite(scale) || scale <= 0.0f || !finite(bias))
        return problem(p, OFF_X_MAX, "x_max", "domain width %g gives no finite segment map (scale %g)",
                       (double)t->x_max - (double)t->x_min, (double)scale);
    for (int i = 0; i < 8; i++)
        if (!finite(t->param[i])) return problem(p, OFF_PARAM + 4u * i, param_names[i], "%g is not finite", (double)t->param[i]);
    if (t->mode == PM_LFU_MODE_EXPONENT) {
        if (check_exponent(t, p)) return -1;
    } else {
        /* param[0]: base branch function (0 none, f+1 built-in f), param[1]: its weight. */
        float code = t->param[PM_LFU_PARAM_BASE_FUNC];
        if (!(code >= 0.0f && code <= (float)PM_LFU_FUNC_COUNT) || code != (float)(int)code)
            return problem(p, OFF_PARAM, "param[0]", "base function %g is not 0 (none) or 1..%d (built-in + 1)", (double)code,
                           PM_LFU_FUNC_COUNT);
        if (code == 0.0f && t->param[PM_LFU_PARAM_BASE_WEIGHT] != 0.0f)
            return problem(p, OFF_PARAM + 4, "param[1]", "base weight %g without a base function (param[0] = 0)",
                           (double)t->param[PM_LFU_PARAM_BASE_WEIGHT]);
        for (int i = 2; i < 8; i++)
            if (t->param[i] != 0.0f)
                return problem(p, OFF_PARAM + 4u * i, param_names[i], "unused in uniform mode, must be 0, is %g", (double)t->param[i]);
    }
    if (check_tail(t, p)) return -1;
    if (t->coeffs) {
        size_t count = pm_lfu_coeff_count(t);
        for (size_t i = 0; i < count; i++)
            if (!finite(t->coeffs[i]))
                return problem(p, OFF_COEFFS + 4 * i, "coeffs", "coefficient %zu is not finite (%g)", i, (double)t->coeffs[i]);
    }
    return 0;
}

pm_status pm_lfu_table_validate(const pm_lfu_table *t, pm_error *err)
{
    if (!t) return pm_error_set(err, PM_ERR_INVALID, "lfu table: NULL table");
    pm_lfu_problem p;
    if (pm_lfu_check(t, &p))
        return pm_error_set(err, PM_ERR_INVALID, "lfu table '%.32s': %s: %s", memchr(t->name, 0, sizeof t->name) ? t->name : "?",
                            p.field, p.what);
    if (!t->coeffs) return pm_error_set(err, PM_ERR_INVALID, "lfu table '%s': coeffs: NULL coefficient array", t->name);
    return PM_OK;
}

/* ---- ownership ---- */

void pm_lfu_table_free(pm_lfu_table *t)
{
    if (!t) return;
    free(t->coeffs);
    memset(t, 0, sizeof *t);
}

pm_status pm_lfu_table_copy(pm_lfu_table *dst, const pm_lfu_table *src, pm_error *err)
{
    if (!dst || !src) return pm_error_set(err, PM_ERR_INVALID, "lfu table copy: NULL argument");
    pm_status st = pm_lfu_table_validate(src, err);
    if (st != PM_OK) return st;
    size_t count = pm_lfu_coeff_count(src);
    float *c = malloc(count * sizeof *c);
    if (!c) return pm_error_set(err, PM_ERR_NOMEM, "lfu table '%s': no memory for %zu coefficients", src->name, count);
    memcpy(c, src->coeffs, count * sizeof *c);
    *dst = *src;
    dst->coeffs = c;
    return PM_OK;
}

pm_status pm_lfu_builtin(pm_lfu_func f, pm_lfu_table *out, pm_error *err)
{
    if (!out) return pm_error_set(err, PM_ERR_INVALID, "lfu builtin: NULL output table");
    if ((unsigned)f >= PM_LFU_FUNC_COUNT)
        return pm_error_set(err, PM_ERR_INVALID, "lfu builtin: function %d is not one of 0..%d", (int)f, PM_LFU_FUNC_COUNT - 1);
    const pm_lfu_rom_entry *r = &pm_lfu_rom[f];
    pm_lfu_table view;
    memset(&view, 0, sizeof view);
    snprintf(view.name, sizeof view.name, "%s", r->name);
    view.mode = r->mode;
    view.form = r->form;
    view.oor = r->oor;
    view.degree = r->degree;
    view.segments = r->segments;
    view.x_min = r->x_min;
    view.x_max = r->x_max;
    view.below_value = r->below_value;
    view.above_value = r->above_value;
    view.below_slope = r->below_slope;
    view.above_slope = r->above_slope;
    memcpy(view.param, r->param, sizeof view.param);
    view.tail = r->tail;
    view.coeffs = (float *)(uintptr_t)r->coeffs; /* read only by the copy below */
    return pm_lfu_table_copy(out, &view, err);
}
