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

/* ---- the segment map and polynomial ---- */

typedef struct lfu_map {
    float scale, bias;
} lfu_map;

void pm_lfu_uniform_map(const pm_lfu_table *t, float *scale, float *bias)
{
    float s = (float)t->segments / (t->x_max - t->x_min);
    *scale = s;
    *bias = -(t->x_min * s);
}

static lfu_map map_of(const pm_lfu_table *t)
{
    lfu_map m;
    pm_lfu_uniform_map(t, &m.scale, &m.bias);
    return m;
}

/* p(x) of the segment x falls in (edge segments for x outside the domain,
 * which then extrapolate). t is computed with one rounding from the exact
 * x*scale, so it keeps fp32 accuracy in [0, 1] whatever x's magnitude. */
static float poly_at(const pm_lfu_table *t, const lfu_map *m, float x)
{
    float u = fmaf(x, m->scale, m->bias);
    uint32_t s;
    if (!(u >= 1.0f)) s = 0;
    else if (u >= (float)t->segments) s = t->segments - 1;
    else s = (uint32_t)u; /* truncation is floor here: u >= 1 */
    float local = fmaf(x, m->scale, m->bias - (float)s);
    const float *c = t->coeffs + (size_t)s * (t->degree + 1u);
    float y = c[t->degree];
    for (int k = (int)t->degree - 1; k >= 0; k--) y = fmaf(y, local, c[k]);
    return y;
}

/* ---- uniform mode ---- */

static float eval_uniform(const pm_lfu_table *t, const lfu_map *m, float x)
{
    if (x != x) return canonical_nan();
    float xe = x;
    if (!(x >= t->x_min) || x > t->x_max) {
        int below = x < t->x_min;
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
    float p = poly_at(t, m, xe);
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
    return scale_pow2(poly_at(t, m, r), (int)nf);
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

static float eval_rsqrt(const pm_lfu_table *t, const lfu_map *m, float x)
{
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
    return scale_pow2(poly_at(t, m, w), -k);
}

static float eval_recip(const pm_lfu_table *t, const lfu_map *m, float x)
{
    uint32_t b = pm_f32_bits(x);
    uint32_t sign = b & 0x80000000u, a = b & 0x7fffffffu;
    if (x != x) return canonical_nan();
    if (a == 0) return pm_f32_from_bits(sign | INF_BITS);
    if (a == INF_BITS) return pm_f32_from_bits(sign);
    int e;
    uint32_t mant;
    split(a, &e, &mant);
    float w = pm_f32_from_bits((127u << 23) | mant);
    float y = scale_pow2(poly_at(t, m, w), -e);
    return sign ? -y : y;
}

typedef float (*reduction_fn)(const pm_lfu_table *, const lfu_map *, float);
static const reduction_fn reductions[PM_LFU_RED_COUNT] = {
    [PM_LFU_RED_EXP2] = eval_exp2,
    [PM_LFU_RED_RSQRT] = eval_rsqrt,
    [PM_LFU_RED_RECIP] = eval_recip,
};

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
    return eval_one(t, &m, x);
}

void pm_lfu_eval_array(const pm_lfu_table *t, const float *x, float *y, size_t n)
{
    if (!evaluable(t)) {
        for (size_t i = 0; i < n; i++) y[i] = canonical_nan();
        return;
    }
    lfu_map m = map_of(t); /* what a hardware LFU latches at table-load time */
    for (size_t i = 0; i < n; i++) y[i] = eval_one(t, &m, x[i]);
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
        for (int i = 0; i < 8; i++)
            if (t->param[i] != 0.0f)
                return problem(p, OFF_PARAM + 4u * i, param_names[i], "unused in uniform mode, must be 0, is %g", (double)t->param[i]);
    }
    if (t->coeffs) {
        size_t count = (size_t)t->segments * (t->degree + 1u);
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
    size_t count = (size_t)src->segments * (src->degree + 1u);
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
    view.coeffs = (float *)(uintptr_t)r->coeffs; /* read only by the copy below */
    return pm_lfu_table_copy(out, &view, err);
}
