/* Polymorph LFU layer: Learnable Function Unit tables and their bit-exact
 * evaluator. An LFU computes y = f(x) for a configured f from a table of
 * per-segment polynomials in fp32 (Horner with fused multiply-add), with
 * optional exponent-indexed range reduction and factor forms. The simulator's
 * LFU array calls pm_lfu_eval*; fitting tools (and later KAN export) build
 * tables. No libm call is ever made on the evaluation path. */
#ifndef POLYMORPH_LFU_H
#define POLYMORPH_LFU_H

#include "polymorph/base.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Built-in function tables (the LFU ROM). The order is part of the ISA
 * encoding of `lfu.cfg`: append only. */
typedef enum pm_lfu_func {
    PM_LFU_EXP = 0,
    PM_LFU_EXP2,
    PM_LFU_SIGMOID,
    PM_LFU_TANH,
    PM_LFU_SILU,
    PM_LFU_GELU,   /* exact GELU: x * Phi(x) (erf form) */
    PM_LFU_RSQRT,
    PM_LFU_RECIP,
    PM_LFU_FUNC_COUNT
} pm_lfu_func;

const char *pm_lfu_func_name(pm_lfu_func f);            /* "exp", "sigmoid", ... */
int pm_lfu_func_from_name(const char *name, pm_lfu_func *out); /* 1 on success */

/* How the input maps to a segment. */
typedef enum pm_lfu_mode {
    PM_LFU_MODE_UNIFORM = 0,  /* segment = floor((x - x_min) * segments / (x_max - x_min)) */
    PM_LFU_MODE_EXPONENT = 1, /* range reduction by the fp32 exponent (exp2/log2/rsqrt/recip family) */
} pm_lfu_mode;

/* Factor form applied around the polynomial p. */
typedef enum pm_lfu_form {
    PM_LFU_FORM_PLAIN = 0,   /* y = p(x) */
    PM_LFU_FORM_X_TIMES = 1, /* y = x * p(x): keeps tanh, SiLU, GELU accurate near 0 */
} pm_lfu_form;

/* What happens outside [x_min, x_max] in uniform mode. */
typedef enum pm_lfu_oor {
    PM_LFU_OOR_CLAMP = 0,  /* evaluate the edge segment's polynomial at the clamped x */
    PM_LFU_OOR_CONST = 1,  /* return below_value / above_value */
    PM_LFU_OOR_LINEAR = 2, /* below: below_value*x... see lfu docs: y = slope*x + intercept */
    PM_LFU_OOR_EXTEND = 3, /* evaluate the edge segment's polynomial at x itself */
} pm_lfu_oor;

#define PM_LFU_MAX_DEGREE 3
#define PM_LFU_MAX_SEGMENTS 4096

/* An LFU table. The in-memory struct is owned by its creator; coefficients
 * are stored segment-major: coeffs[s * (degree + 1) + k] is the x^k
 * coefficient of segment s in the segment's local coordinate (see docs/lfu.md).
 * Mode-specific parameters live in `param` (their meaning is documented in
 * src/lfu/ and docs/lfu.md). */
typedef struct pm_lfu_table {
    char name[32];
    uint8_t mode;      /* pm_lfu_mode */
    uint8_t form;      /* pm_lfu_form */
    uint8_t oor;       /* pm_lfu_oor */
    uint8_t degree;    /* 1..3 */
    uint32_t segments; /* 1..PM_LFU_MAX_SEGMENTS */
    float x_min, x_max;
    float below_value, above_value; /* for OOR_CONST (and the slopes for OOR_LINEAR) */
    float below_slope, above_slope;
    float param[8];    /* mode-specific constants (e.g. range-reduction constants) */
    float *coeffs;     /* pm_lfu_coeff_count() fp32 values, owned by the table: the
                        * main segments, then (with a tail) h's, then exp's */
    struct pm_lfu_tail {
        /* Optional below-domain tail of a uniform table (docs/lfu.md, "Tails"):
         * for x < x_min, y = [x *] h(x) * exp(a(x)) with a(x) = a_scale * x^k,
         * k = 1 (PM_LFU_TAIL_EXP_LINEAR) or 2 (PM_LFU_TAIL_EXP_SQUARE). h is a
         * uniform sub-table over [h_min, h_max] (clamped), exp(a) is reduced
         * Cody-Waite style (exp_c, exp_l_hi, exp_l_lo) onto an embedded
         * sub-table over [e_min, e_max]; both use the table's degree; the
         * [x *] factor is the tail's own `form`. All zero when kind is NONE. */
        uint8_t kind;         /* pm_lfu_tail_kind */
        uint8_t form;         /* pm_lfu_form of the tail: plain y = h*e, x-times y = (x*h)*e */
        uint16_t h_segments;  /* 1..PM_LFU_MAX_SEGMENTS */
        uint16_t e_segments;  /* 1..PM_LFU_MAX_SEGMENTS */
        float a_scale;        /* a power of two: > 0 for LINEAR (x_min <= 0), < 0 for SQUARE */
        float h_min, h_max;
        float e_min, e_max;
        float exp_c, exp_l_hi, exp_l_lo; /* n = rne(a*C), r = a - n*(L_hi + L_lo) */
    } tail;
} pm_lfu_table;

typedef struct pm_lfu_tail pm_lfu_tail;

typedef enum pm_lfu_tail_kind {
    PM_LFU_TAIL_NONE = 0,
    PM_LFU_TAIL_EXP_LINEAR = 1, /* a(x) = a_scale * x   (sigmoid, SiLU: e^x) */
    PM_LFU_TAIL_EXP_SQUARE = 2, /* a(x) = a_scale * x^2 (GELU: e^(-x^2/2)), x^2 as an exact hi+lo pair */
    PM_LFU_TAIL_KIND_COUNT
} pm_lfu_tail_kind;

/* Number of fp32 coefficients a table holds:
 * (segments + tail.h_segments + tail.e_segments) * (degree + 1). */
size_t pm_lfu_coeff_count(const pm_lfu_table *t);

void pm_lfu_table_free(pm_lfu_table *t);
pm_status pm_lfu_table_copy(pm_lfu_table *dst, const pm_lfu_table *src, pm_error *err);
/* Check a table is well formed (degree, segments, finite domain, ...). */
pm_status pm_lfu_table_validate(const pm_lfu_table *t, pm_error *err);

/* Build the built-in table for f (the LFU ROM contents). Deterministic. */
pm_status pm_lfu_builtin(pm_lfu_func f, pm_lfu_table *out, pm_error *err);

/* Bit-exact evaluation: identical on every host. */
float pm_lfu_eval(const pm_lfu_table *t, float x);
void pm_lfu_eval_array(const pm_lfu_table *t, const float *x, float *y, size_t n);

/* Binary serialisation (little-endian; magic "PMLF"); what `lfu.ld` reads
 * from SRAM and `polymorph fit -o` writes. pm_lfu_table_deserialize validates
 * everything and never reads past len. */
size_t pm_lfu_table_serialized_size(const pm_lfu_table *t);
pm_status pm_lfu_table_serialize(const pm_lfu_table *t, uint8_t *dst, size_t cap, size_t *written, pm_error *err);
pm_status pm_lfu_table_deserialize(const uint8_t *src, size_t len, pm_lfu_table *out, pm_error *err);

/* ---- Additions (lfu layer): the meaning of param[] and the map every
 * fitter must share. See docs/lfu.md for the full evaluation rules. ----
 *
 * Uniform mode: param[0], param[1] describe the optional base branch
 * (PM_LFU_PARAM_BASE_*, below); param[2..7] are 0 (reserved). The segment map is
 *   scale = (float)segments / (x_max - x_min), bias = -(x_min * scale)  (fp32)
 *   u = fmaf(x, scale, bias); s = clamp(floor(u), 0, segments-1)
 *   t = fmaf(x, scale, bias - (float)s)          (t in [0, 1] inside the domain)
 * and the segment polynomial is c0 + c1*t + c2*t^2 + c3*t^3 (Horner, fmaf).
 *
 * Exponent mode: param[PM_LFU_PARAM_REDUCTION] selects the range reduction
 * (a pm_lfu_reduction value stored as a float); the reduced argument is then
 * looked up with the uniform map above over [x_min, x_max]. Fields a mode
 * does not use (params, out-of-range values/slopes) must be 0, form must be
 * plain and oor clamp. */
typedef enum pm_lfu_reduction {
    PM_LFU_RED_EXP2 = 0,  /* y = 2^(x/L): n = rne(x*C), r = (x - n*L_hi) - n*L_lo, y = p(r) * 2^n */
    PM_LFU_RED_RSQRT = 1, /* x = w * 4^k with w in [1,4): y = p(w) * 2^-k; domain must be [1,4] */
    PM_LFU_RED_RECIP = 2, /* x = +-w * 2^e with w in [1,2): y = +-p(w) * 2^-e; domain must be [1,2] */
    PM_LFU_RED_COUNT
} pm_lfu_reduction;

#define PM_LFU_PARAM_REDUCTION 0 /* exponent mode: pm_lfu_reduction */
#define PM_LFU_PARAM_EXP_C 1     /* PM_LFU_RED_EXP2: C ~ 1/L, only picks n */
#define PM_LFU_PARAM_EXP_L_HI 2  /* PM_LFU_RED_EXP2: L = L_hi + L_lo (Cody-Waite pair) */
#define PM_LFU_PARAM_EXP_L_LO 3

/* Uniform mode's residual base branch (for KAN edges, docs/lfu.md "Base
 * branch"): param[PM_LFU_PARAM_BASE_FUNC] = f + 1 names built-in table f
 * (0: no branch, then param[1] must be 0 too), param[PM_LFU_PARAM_BASE_WEIGHT]
 * = w_b, and the result is
 *   y = fmaf(w_b, pm_lfu_eval(builtin f, x), table(x))
 * where table(x) is everything above (polynomial, form, out-of-range policy,
 * tail). Still PMLF version 2: these were reserved (must-be-zero) fields. */
#define PM_LFU_PARAM_BASE_FUNC 0
#define PM_LFU_PARAM_BASE_WEIGHT 1

/* The uniform segment map of t (scale and bias as defined above). Fitters
 * use it so their local coordinate is bit-for-bit the evaluator's. */
void pm_lfu_uniform_map(const pm_lfu_table *t, float *scale, float *bias);
/* The same map for any (sub-)table of `segments` over [lo, hi]: the tail's
 * h table uses (h_segments, h_min, h_max), its exp table (e_segments, e_min,
 * e_max). */
void pm_lfu_segment_map(uint32_t segments, float lo, float hi, float *scale, float *bias);

/* Serialised layout ("PMLF" version 2, little-endian): a fixed header of
 * PM_LFU_SERIAL_HEADER_BYTES (version 1's 108 bytes plus the 36-byte tail
 * block), then pm_lfu_coeff_count() fp32 coefficients. Only version 2 is
 * read. Deserialisation reads exactly that many bytes; bytes after them are
 * ignored (so lfu.ld may pass the rest of SRAM). */
#define PM_LFU_SERIAL_VERSION 2
#define PM_LFU_SERIAL_HEADER_BYTES 144

#ifdef __cplusplus
}
#endif
#endif
