/* Polymorph LFU fitting: a small math-expression language for univariate
 * functions, a per-segment polynomial fitter that produces pm_lfu_table
 * values, and the error measurement of a table against a double-precision
 * reference (what `polymorph fit` and the KAN export build on). Host side
 * only: fitting and the reference use libm in double; the datapath never does. */
#ifndef POLYMORPH_FIT_H
#define POLYMORPH_FIT_H

#include "polymorph/base.h"
#include "polymorph/lfu.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- expressions (src/lfu/expr.c) ----
 * x, numbers (1, 2.5, 1e-3, .5), pi, e, + - * / ^ (also **; right
 * associative; unary minus binds looser than ^ as in Python: -x^2 = -(x^2)),
 * parentheses and the functions exp log sqrt sin cos tan tanh erf erfc abs
 * atan sinh cosh log2 log10 exp2 sigmoid silu gelu (one argument) and min
 * max pow (two). Errors read "expr:1:COL: message" followed by the text and
 * a caret line. Inputs are bounded (length, nesting), so any string is safe. */
#define PM_EXPR_MAX_CHARS 4096
#define PM_EXPR_MAX_DEPTH 64

typedef struct pm_expr pm_expr;

pm_status pm_expr_parse(const char *text, pm_expr **out, pm_error *err);
void pm_expr_free(pm_expr *e);
/* f(x) in double (libm); NaN where f is undefined (log of a negative...). */
double pm_expr_eval(const pm_expr *e, double x);
/* pm_expr_eval with the signature of pm_fit_fn (ctx is a pm_expr). */
double pm_expr_fn(void *ctx, double x);

/* ---- fitting (src/lfu/fit.c) ---- */

/* The function to fit: any double -> double map with its context. */
typedef double (*pm_fit_fn)(void *ctx, double x);

typedef enum pm_fit_method {
    PM_FIT_MINIMAX = 0, /* Lawson iteratively reweighted least squares: minimax absolute error */
    PM_FIT_LSQ = 1,     /* plain least squares on the Chebyshev nodes (the baseline) */
    PM_FIT_METHOD_COUNT
} pm_fit_method;

/* What the per-segment fit minimises (the maximum of). */
typedef enum pm_fit_objective {
    PM_FIT_ABS = 0, /* |p - g|: absolute error (of y; of p = f/x in x-times form) */
    PM_FIT_REL = 1, /* |p - g| / |g|: relative error, what ulps measure; a zero of g at a
                     * segment's start is pinned exactly */
    PM_FIT_OBJECTIVE_COUNT
} pm_fit_objective;

typedef struct pm_fit_options {
    double x_min, x_max; /* the domain; rounded to the nearest fp32 for the table */
    uint32_t segments;   /* 1..PM_LFU_MAX_SEGMENTS (pm_fit_search chooses it) */
    uint8_t degree;      /* 1..3; 0 lets pm_fit_search try 1, 2 and 3 */
    uint8_t mode;        /* pm_lfu_mode; exponent mode detects the reduction from f */
    uint8_t form;        /* pm_lfu_form (uniform mode only) */
    uint8_t oor;         /* pm_lfu_oor (uniform mode only) */
    uint8_t method;      /* pm_fit_method */
    uint8_t retune;      /* 1: greedy +-1 ulp re-tuning of the rounded coefficients (uniform mode) */
    uint8_t objective;   /* pm_fit_objective */
    const char *name;    /* the table's name (truncated to 31 bytes); NULL: "fit" */
} pm_fit_options;

/* Defaults: uniform, plain, clamp, minimax, absolute objective, no re-tuning,
 * degree 3, 16 segments. */
void pm_fit_options_default(pm_fit_options *o);

/* Fits f into a new table (the caller frees it with pm_lfu_table_free). Fails
 * with a message naming x when f is not finite (or too large for fp32) at a
 * point the fit needs, and in exponent mode when f has none of the
 * reductions' scaling laws. */
pm_status pm_fit_table(pm_fit_fn f, void *ctx, const pm_fit_options *o, pm_lfu_table *out, pm_error *err);

/* ---- measurement ----
 * A sweep holds the inputs and the double reference f(x) of a domain,
 * computed once, so many candidate tables can be measured cheaply. Inputs:
 * every fp32 in [x_min, x_max] when there are at most PM_FIT_EXHAUSTIVE_MAX,
 * else PM_FIT_SWEEP_UNIFORM points evenly spaced in x plus
 * PM_FIT_SWEEP_BITS points evenly spaced in bit pattern (dense near 0) and
 * x = 0 when the domain holds it;
 * pm_fit_measure adds every segment boundary of the table and its two
 * neighbours on each side (uniform mode). */
#define PM_FIT_EXHAUSTIVE_MAX (1u << 22)
#define PM_FIT_SWEEP_UNIFORM (1u << 20)
#define PM_FIT_SWEEP_BITS (1u << 18)

typedef struct pm_fit_sweep pm_fit_sweep;

pm_status pm_fit_sweep_create(pm_fit_fn f, void *ctx, double x_min, double x_max, pm_fit_sweep **out, pm_error *err);
void pm_fit_sweep_destroy(pm_fit_sweep *s);

/* The error of a table over a sweep: fp32 ulps against f(x) rounded once to
 * fp32; bf16 ulps of the result rounded (RNE) to bf16 against f(x) rounded
 * once to bf16; absolute error |y - f(x)| in double; the x of each maximum
 * (the first such x in increasing order). */
typedef struct pm_fit_report {
    int64_t max_ulp_fp32, max_ulp_bf16;
    double max_abs_err;
    float worst_x_fp32, worst_x_bf16, worst_x_abs;
    float x_min, x_max;  /* the fp32 domain measured */
    uint64_t points;     /* inputs measured */
    int exhaustive;      /* 1: every fp32 in the domain */
    size_t bytes;        /* serialized PMLF size of the table */
} pm_fit_report;

pm_status pm_fit_measure(const pm_fit_sweep *s, const pm_lfu_table *t, pm_fit_report *r, pm_error *err);

/* ---- error targets and the smallest table meeting one ---- */

typedef struct pm_fit_eps {
    double value;
    int in_ulps; /* 1: value is fp32 ulps ("2ulp"); 0: absolute error ("1e-4") */
} pm_fit_eps;

/* "1e-4" (absolute, > 0) or "2ulp" / "2ulps" / "0.5ulp" (fp32 ulps, >= 0). */
pm_status pm_fit_parse_eps(const char *text, pm_fit_eps *out, pm_error *err);
int pm_fit_meets(const pm_fit_report *r, const pm_fit_eps *e);

/* One step of a search, for progress reports and the CLI's summary. */
typedef struct pm_fit_trial {
    uint8_t degree;
    uint32_t segments; /* the smallest that met the target; 0: none up to PM_LFU_MAX_SEGMENTS */
    size_t bytes;
} pm_fit_trial;

/* The smallest table (fewest segments for its degree; with o->degree 0 the
 * smallest in bytes over degrees 1..3, ties to the lower degree) whose
 * measurement meets eps: segments double from 1 until the target is met,
 * then bisection between the last failure and the first success, so the
 * returned table meets eps and the one with one segment fewer does not.
 * trials (optional, 3 entries) receives the per-degree results. Fails with
 * PM_ERR_INVALID when no table up to PM_LFU_MAX_SEGMENTS meets eps. */
pm_status pm_fit_search(pm_fit_fn f, void *ctx, const pm_fit_options *o, const pm_fit_eps *eps, pm_lfu_table *out,
                        pm_fit_report *r, pm_fit_trial trials[3], pm_error *err);

const char *pm_fit_method_name(pm_fit_method m);             /* "minimax", "lsq" */
const char *pm_fit_objective_name(pm_fit_objective o);       /* "abs", "rel" */
const char *pm_fit_reduction_name(unsigned reduction);       /* "exp2", "rsqrt", "recip" */

#ifdef __cplusplus
}
#endif
#endif
