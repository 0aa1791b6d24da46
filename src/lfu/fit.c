/* Fitting univariate functions into LFU tables (docs/fit.md): per-segment
 * polynomials fitted in double in the evaluator's own local coordinate,
 * rounded to fp32, optionally re-tuned; the error measured by running the
 * produced table through pm_lfu_eval against the double reference; and the
 * search for the smallest table that meets an error target. */
#include "polymorph/fit.h"
#include "polymorph/numerics.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PI_D 3.14159265358979323846
#define LN2_D 0.69314718055994530942

/* Fit nodes per segment: Chebyshev nodes of the first kind on [0, 1] plus
 * both ends, so the fitted error is controlled where segments join. */
#define NODES 48
#define FIT_POINTS (NODES + 2)
#define LAWSON_ITERS 40
/* Re-tuning: interior samples per segment and the most +-1 ulp steps taken
 * per coefficient and pass. */
#define RETUNE_SAMPLES 65
#define RETUNE_PASSES 3
#define RETUNE_STEPS 8

static const char *const method_names[PM_FIT_METHOD_COUNT] = {"minimax", "lsq"};
static const char *const reduction_names[PM_LFU_RED_COUNT] = {"exp2", "rsqrt", "recip"};

static const char *const objective_names[PM_FIT_OBJECTIVE_COUNT] = {"abs", "rel"};

const char *pm_fit_method_name(pm_fit_method m) { return (unsigned)m < PM_FIT_METHOD_COUNT ? method_names[m] : NULL; }
const char *pm_fit_objective_name(pm_fit_objective o)
{
    return (unsigned)o < PM_FIT_OBJECTIVE_COUNT ? objective_names[o] : NULL;
}
const char *pm_fit_reduction_name(unsigned r) { return r < PM_LFU_RED_COUNT ? reduction_names[r] : NULL; }

void pm_fit_options_default(pm_fit_options *o)
{
    memset(o, 0, sizeof *o);
    o->segments = 16;
    o->degree = 3;
    o->mode = PM_LFU_MODE_UNIFORM;
    o->form = PM_LFU_FORM_PLAIN;
    o->oor = PM_LFU_OOR_CLAMP;
    o->method = PM_FIT_MINIMAX;
    o->retune = 0;
}

/* ---- the function being fitted ---- */

typedef struct target {
    pm_fit_fn f;
    void *ctx;
    int xtimes; /* fit p = f(x)/x itself: y = x*p then has p's relative error, also near 0 */
    int relative; /* minimise p's relative error (PM_FIT_REL) instead of its absolute error */
} target;

/* A tiny offset standing in for x = 0 in f(x)/x: its square is still a
 * normal double, so x^2/x and the like keep their limits. */
#define XTIMES_ZERO 1e-150

/* What p must approximate at x. */
static double target_value(const target *tg, double x)
{
    if (!tg->xtimes) return tg->f(tg->ctx, x);
    if (x == 0.0) return 0.5 * (tg->f(tg->ctx, XTIMES_ZERO) / XTIMES_ZERO + tg->f(tg->ctx, -XTIMES_ZERO) / -XTIMES_ZERO);
    return tg->f(tg->ctx, x) / x;
}

static pm_status not_finite(pm_error *err, const char *what, double x, double v)
{
    return pm_error_set(err, PM_ERR_INVALID, "%s is %s at x = %.9g: choose a domain where f is finite and within fp32", what,
                        v != v ? "not a number" : isinf(v) ? "infinite" : "beyond the fp32 range", x);
}

static int fp32_finite(double v) { return v == v && fabs(v) <= FLT_MAX; }

/* ---- one segment ---- */

typedef struct seg_data {
    double t[FIT_POINTS], g[FIT_POINTS], w[FIT_POINTS], v[FIT_POINTS]; /* local t, target, error weight, Lawson weight */
} seg_data;

/* Solves the n x n system a*c = b (n <= 4), Gaussian elimination with
 * partial pivoting; -1 when singular. */
static int solve(int n, double a[4][4], double b[4], double c[4])
{
    for (int col = 0; col < n; col++) {
        int piv = col;
        for (int r = col + 1; r < n; r++)
            if (fabs(a[r][col]) > fabs(a[piv][col])) piv = r;
        if (a[piv][col] == 0.0) return -1;
        for (int k = 0; k < n; k++) {
            double tmp = a[col][k];
            a[col][k] = a[piv][k];
            a[piv][k] = tmp;
        }
        double tb = b[col];
        b[col] = b[piv];
        b[piv] = tb;
        for (int r = col + 1; r < n; r++) {
            double m = a[r][col] / a[col][col];
            for (int k = col; k < n; k++) a[r][k] -= m * a[col][k];
            b[r] -= m * b[col];
        }
    }
    for (int r = n - 1; r >= 0; r--) {
        double s = b[r];
        for (int k = r + 1; k < n; k++) s -= a[r][k] * c[k];
        c[r] = s / a[r][r];
    }
    return 0;
}

/* Weighted least squares for c[first..degree] with c[0..first-1] fixed:
 * minimises sum_j v_j * (w_j * (p(t_j) - g_j))^2. */
static int lsq(const seg_data *d, int degree, int first, double c[4])
{
    int n = degree - first + 1;
    double a[4][4] = {{0}}, b[4] = {0}, x[4] = {0};
    for (int j = 0; j < FIT_POINTS; j++) {
        double basis[4], fixed = 0.0, tp = 1.0;
        for (int k = 0; k <= degree; k++, tp *= d->t[j]) {
            if (k < first) fixed += c[k] * tp;
            else basis[k - first] = tp;
        }
        double wt = d->v[j] * d->w[j] * d->w[j];
        for (int r = 0; r < n; r++) {
            for (int q = 0; q < n; q++) a[r][q] += wt * basis[r] * basis[q];
            b[r] += wt * basis[r] * (d->g[j] - fixed);
        }
    }
    if (solve(n, a, b, x)) return -1;
    for (int k = 0; k < n; k++) c[first + k] = x[k];
    return 0;
}

static double poly(const double c[4], int degree, double t)
{
    double y = c[degree];
    for (int k = degree - 1; k >= 0; k--) y = y * t + c[k];
    return y;
}

/* x of local coordinate t in a segment: the evaluator computes
 * t = fmaf(x, scale, c_off) with c_off = bias - s in fp32, so x = (t - c_off)/scale. */
static double x_of_t(double t, float scale, float c_off) { return (t - (double)c_off) / (double)scale; }

/* Fits one segment's polynomial (in t) and rounds it to fp32, refitting the
 * higher coefficients after each rounding so they absorb its error. */
static pm_status fit_segment(const target *tg, int degree, pm_fit_method method, float scale, float c_off, float out[4],
                             pm_error *err)
{
    seg_data d;
    for (int j = 0; j < FIT_POINTS; j++) {
        double t = j == 0 ? 0.0 : j == FIT_POINTS - 1 ? 1.0 : 0.5 - 0.5 * cos(PI_D * (j - 0.5) / NODES);
        double x = x_of_t(t, scale, c_off);
        d.t[j] = t;
        d.g[j] = target_value(tg, x);
        d.w[j] = 1.0;
        d.v[j] = 1.0 / FIT_POINTS;
        if (!fp32_finite(d.g[j])) return not_finite(err, tg->xtimes ? "f(x)/x" : "f(x)", x, d.g[j]);
    }
    double c[4] = {0}, best[4], best_err = INFINITY, scale_g = 0.0;
    for (int j = 0; j < FIT_POINTS; j++) scale_g = fmax(scale_g, fabs(d.g[j]));
    /* Relative error: weight 1/|g|, floored (a root inside the segment would
     * otherwise take all the weight); a zero exactly at the segment's start
     * (log at 1) is pinned, c0 = 0, so the result there is exact. */
    int first = 0;
    if (tg->relative && scale_g > 0.0) {
        for (int j = 0; j < FIT_POINTS; j++) d.w[j] = 1.0 / fmax(fabs(d.g[j]), scale_g * 0x1p-20);
        if (d.g[0] == 0.0) {
            first = 1;
            d.w[0] = 0.0;
        }
        scale_g = 1.0;
    }
    if (lsq(&d, degree, first, c)) return pm_error_set(err, PM_ERR_INVALID, "fit: singular system (segment too narrow)");
    /* Lawson: reweighting by the residual drives the weighted L2 fit towards
     * the L-infinity (minimax) one. Three guards keep it from degrading:
     * it stops once the residual is far below fp32's resolution (an exact
     * fit leaves only rounding noise, which would steer the weights
     * anywhere), no weight falls below 1e-9 of the largest (the system stays
     * well determined), and the best iterate on the nodes is kept. */
    for (int it = 0; it <= LAWSON_ITERS; it++) {
        double worst = 0.0;
        for (int j = 0; j < FIT_POINTS; j++) worst = fmax(worst, d.w[j] * fabs(poly(c, degree, d.t[j]) - d.g[j]));
        if (worst < best_err) {
            best_err = worst;
            memcpy(best, c, sizeof best);
        }
        if (method != PM_FIT_MINIMAX || it == LAWSON_ITERS || worst <= 0x1p-45 * scale_g) break;
        double sum = 0.0, top = 0.0;
        for (int j = 0; j < FIT_POINTS; j++) {
            d.v[j] *= d.w[j] * fabs(poly(c, degree, d.t[j]) - d.g[j]);
            top = fmax(top, d.v[j]);
        }
        if (!(top > 0.0)) break;
        for (int j = 0; j < FIT_POINTS; j++) {
            d.v[j] = fmax(d.v[j], top * 1e-9);
            sum += d.v[j];
        }
        for (int j = 0; j < FIT_POINTS; j++) d.v[j] /= sum;
        if (lsq(&d, degree, first, c)) break;
    }
    memcpy(c, best, sizeof best);
    for (int k = first; k <= degree; k++) {
        if (!fp32_finite(c[k])) return pm_error_set(err, PM_ERR_INVALID, "fit: coefficient %d (%g) exceeds the fp32 range", k, c[k]);
        c[k] = (float)c[k];
        if (k < degree && lsq(&d, degree, k + 1, c)) break;
    }
    for (int k = 0; k <= degree; k++) out[k] = (float)c[k];
    return PM_OK;
}

/* ---- exponent mode: which reduction f obeys ---- */

static int close_rel(double a, double b)
{
    return a == b || fabs(a - b) <= 1e-9 * fmax(fabs(a), fabs(b));
}

#define PROBES 9

static double probe_x(const pm_fit_options *o, int i) { return o->x_min + (o->x_max - o->x_min) * i / (PROBES - 1); }

/* f(2x) = f(x)/2 and f(-x) = -f(x): f = c/x. */
static int obeys_recip(const target *tg, const pm_fit_options *o)
{
    for (int i = 0; i < PROBES; i++) {
        double x = probe_x(o, i);
        if (x == 0.0) continue;
        double y = tg->f(tg->ctx, x);
        if (!isfinite(y) || y == 0.0 || !close_rel(tg->f(tg->ctx, 2 * x), y / 2) || !close_rel(tg->f(tg->ctx, -x), -y))
            return 0;
    }
    return 1;
}

/* f(4x) = f(x)/2 for x > 0: f = c/sqrt(x). */
static int obeys_rsqrt(const target *tg, const pm_fit_options *o)
{
    if (!(o->x_min > 0.0)) return 0;
    for (int i = 0; i < PROBES; i++) {
        double x = probe_x(o, i), y = tg->f(tg->ctx, x);
        if (!isfinite(y) || y == 0.0 || !close_rel(tg->f(tg->ctx, 4 * x), y / 2)) return 0;
    }
    return 1;
}

/* f(x + L) = 2 f(x) for one L: f = c * 2^(x/L). Returns L or 0. */
static double exp2_period(const target *tg, const pm_fit_options *o)
{
    double x0 = o->x_min, y0 = tg->f(tg->ctx, x0), r = tg->f(tg->ctx, x0 + 1.0) / y0;
    if (!isfinite(y0) || y0 == 0.0 || !(r > 0.0) || r == 1.0 || !isfinite(r)) return 0.0;
    double L = LN2_D / log(r);
    for (int i = 0; i < PROBES; i++) {
        double x = probe_x(o, i), y = tg->f(tg->ctx, x);
        if (!isfinite(y) || !close_rel(tg->f(tg->ctx, x + L), 2 * y)) return 0.0;
    }
    return L;
}

/* Fills the exponent-mode fields of t (reduction, constants, reduced domain). */
static pm_status choose_reduction(const target *tg, const pm_fit_options *o, pm_lfu_table *t, pm_error *err)
{
    if (obeys_recip(tg, o)) {
        t->param[PM_LFU_PARAM_REDUCTION] = PM_LFU_RED_RECIP;
        t->x_min = 1.0f;
        t->x_max = 2.0f;
        return PM_OK;
    }
    if (obeys_rsqrt(tg, o)) {
        t->param[PM_LFU_PARAM_REDUCTION] = PM_LFU_RED_RSQRT;
        t->x_min = 1.0f;
        t->x_max = 4.0f;
        return PM_OK;
    }
    double L = exp2_period(tg, o);
    if (L != 0.0 && isfinite(L) && fabs(L) > 1e-30 && fabs(L) < 1e30) {
        float hi = (float)L, lo = (float)(L - (double)hi), half = (float)(0.5625 * fabs(L));
        t->param[PM_LFU_PARAM_REDUCTION] = PM_LFU_RED_EXP2;
        t->param[PM_LFU_PARAM_EXP_C] = (float)(1.0 / L);
        t->param[PM_LFU_PARAM_EXP_L_HI] = hi;
        t->param[PM_LFU_PARAM_EXP_L_LO] = lo;
        /* r = x - n*L lies in [-L/2, L/2] up to C's rounding; the margin keeps
         * the edge segments from extrapolating. */
        t->x_min = -half;
        t->x_max = half;
        return PM_OK;
    }
    return pm_error_set(err, PM_ERR_INVALID,
                        "exponent mode: f obeys none of the reductions on [%g, %g]: f(x+L) = 2 f(x) (c*2^(x/L), exp2), "
                        "f(4x) = f(x)/2 for x > 0 (c/sqrt(x), rsqrt), f(2x) = f(x)/2 with f odd (c/x, recip); use --mode uniform",
                        o->x_min, o->x_max);
}

/* ---- re-tuning the rounded coefficients ---- */

typedef struct retune_seg {
    float x[RETUNE_SAMPLES];
    double ref[RETUNE_SAMPLES], w[RETUNE_SAMPLES];
    int n;
} retune_seg;

static double seg_error(const pm_lfu_table *t, const retune_seg *rs)
{
    double worst = 0.0;
    for (int k = 0; k < rs->n; k++) {
        double e = fabs((double)pm_lfu_eval(t, rs->x[k]) - rs->ref[k]) * rs->w[k];
        if (!(e <= worst)) worst = e; /* NaN counts as worst */
    }
    return worst;
}

/* Greedy coordinate search: step each coefficient of segment s by one ulp
 * while the segment's maximum error over interior samples (evaluated bit for
 * bit by pm_lfu_eval) falls. Rounding the coefficients one by one leaves a
 * few tenths of an ulp on the table that this recovers. */
static void retune_segment(pm_lfu_table *t, uint32_t s, const retune_seg *rs)
{
    if (rs->n == 0) return;
    float *c = t->coeffs + (size_t)s * (t->degree + 1u);
    double best = seg_error(t, rs);
    for (int pass = 0; pass < RETUNE_PASSES; pass++) {
        int improved = 0;
        for (int k = 0; k <= t->degree; k++) {
            for (int dir = -1; dir <= 1; dir += 2) {
                for (int step = 0; step < RETUNE_STEPS; step++) {
                    float old = c[k];
                    c[k] = nextafterf(old, dir > 0 ? FLT_MAX : -FLT_MAX);
                    double e = seg_error(t, rs);
                    if (e < best) {
                        best = e;
                        improved = 1;
                    } else {
                        c[k] = old;
                        break;
                    }
                }
            }
        }
        if (!improved) break;
    }
}

/* The error re-tuning reduces is the fit's: y's absolute error, in x-times
 * form p's (|y - f| / |x|), for the relative objective |y - f| / |f|. */
static pm_status retune(pm_lfu_table *t, const target *plain, int relative, pm_error *err)
{
    int xtimes = t->form == PM_LFU_FORM_X_TIMES;
    float scale, bias;
    pm_lfu_uniform_map(t, &scale, &bias);
    retune_seg rs;
    for (uint32_t s = 0; s < t->segments; s++) {
        float c_off = bias - (float)s;
        rs.n = 0;
        for (int k = 0; k < RETUNE_SAMPLES; k++) {
            float x = (float)x_of_t(0.002 + 0.996 * k / (RETUNE_SAMPLES - 1), scale, c_off);
            if (!(x >= t->x_min && x <= t->x_max) || (rs.n && x == rs.x[rs.n - 1]) || (xtimes && x == 0.0f)) continue;
            double y = target_value(plain, x);
            if (!fp32_finite(y)) return not_finite(err, "f(x)", x, y);
            if (relative && y == 0.0) continue;
            rs.x[rs.n] = x;
            rs.ref[rs.n] = y;
            rs.w[rs.n] = relative ? 1.0 / fabs(y) : xtimes ? 1.0 / fabs((double)x) : 1.0;
            rs.n++;
        }
        retune_segment(t, s, &rs);
    }
    return PM_OK;
}

/* ---- the table ---- */

static pm_status check_options(const pm_fit_options *o, pm_error *err)
{
    if (!(isfinite(o->x_min) && isfinite(o->x_max) && o->x_min < o->x_max))
        return pm_error_set(err, PM_ERR_INVALID, "domain [%g, %g]: needs finite A < B", o->x_min, o->x_max);
    if (!(fabs(o->x_min) <= FLT_MAX && fabs(o->x_max) <= FLT_MAX) || !((float)o->x_min < (float)o->x_max))
        return pm_error_set(err, PM_ERR_INVALID, "domain [%g, %g]: its ends are not distinct finite fp32 values", o->x_min,
                            o->x_max);
    if (o->segments < 1 || o->segments > PM_LFU_MAX_SEGMENTS)
        return pm_error_set(err, PM_ERR_INVALID, "segments %u outside 1..%d", (unsigned)o->segments, PM_LFU_MAX_SEGMENTS);
    if (o->degree < 1 || o->degree > PM_LFU_MAX_DEGREE)
        return pm_error_set(err, PM_ERR_INVALID, "degree %u outside 1..%d", (unsigned)o->degree, PM_LFU_MAX_DEGREE);
    if (o->mode > PM_LFU_MODE_EXPONENT) return pm_error_set(err, PM_ERR_INVALID, "mode %u is not uniform or exponent", (unsigned)o->mode);
    if (o->form > PM_LFU_FORM_X_TIMES) return pm_error_set(err, PM_ERR_INVALID, "form %u is not plain or x-times", (unsigned)o->form);
    if (o->oor > PM_LFU_OOR_EXTEND) return pm_error_set(err, PM_ERR_INVALID, "out-of-range policy %u is not 0..3", (unsigned)o->oor);
    if (o->objective >= PM_FIT_OBJECTIVE_COUNT)
        return pm_error_set(err, PM_ERR_INVALID, "objective %u is not abs or rel", (unsigned)o->objective);
    if (o->method >= PM_FIT_METHOD_COUNT) return pm_error_set(err, PM_ERR_INVALID, "method %u is not minimax or lsq", (unsigned)o->method);
    if (o->mode == PM_LFU_MODE_EXPONENT && o->form != PM_LFU_FORM_PLAIN)
        return pm_error_set(err, PM_ERR_INVALID, "exponent mode needs form plain (the reductions scale p, not x*p)");
    if (o->mode == PM_LFU_MODE_EXPONENT && o->oor != PM_LFU_OOR_CLAMP)
        return pm_error_set(err, PM_ERR_INVALID, "exponent mode covers every x by its reduction: the out-of-range policy must be clamp");
    return PM_OK;
}

/* The out-of-range fields: constants f(ends), or tangent lines at the ends. */
static pm_status fill_oor(const target *plain, pm_lfu_table *t, pm_error *err)
{
    if (t->oor != PM_LFU_OOR_CONST && t->oor != PM_LFU_OOR_LINEAR) return PM_OK;
    double ends[2] = {t->x_min, t->x_max};
    for (int i = 0; i < 2; i++) {
        double y = plain->f(plain->ctx, ends[i]);
        if (!fp32_finite(y)) return not_finite(err, "f(x)", ends[i], y);
        float value = (float)y, slope = 0.0f;
        if (t->oor == PM_LFU_OOR_LINEAR) {
            double h = fmax(fabs(ends[i]), 1.0) * 1e-6, d = (plain->f(plain->ctx, ends[i] + h) - plain->f(plain->ctx, ends[i] - h)) / (2 * h);
            if (!fp32_finite(d)) return not_finite(err, "f'(x)", ends[i], d);
            slope = (float)d;
            value = (float)(y - d * ends[i]); /* y = slope*x + intercept */
            if (!fp32_finite(y - d * ends[i])) return not_finite(err, "the tangent's intercept", ends[i], y - d * ends[i]);
        }
        if (i == 0) t->below_value = value, t->below_slope = slope;
        else t->above_value = value, t->above_slope = slope;
    }
    return PM_OK;
}

pm_status pm_fit_table(pm_fit_fn f, void *ctx, const pm_fit_options *o, pm_lfu_table *out, pm_error *err)
{
    if (!f || !o || !out) return pm_error_set(err, PM_ERR_INVALID, "fit: NULL argument");
    memset(out, 0, sizeof *out);
    pm_status st = check_options(o, err);
    if (st) return st;
    pm_lfu_table t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", o->name ? o->name : "fit");
    t.mode = o->mode;
    t.form = o->form;
    t.oor = o->oor;
    t.degree = o->degree;
    t.segments = o->segments;
    t.x_min = (float)o->x_min;
    t.x_max = (float)o->x_max;
    target tg = {f, ctx, o->form == PM_LFU_FORM_X_TIMES, o->objective == PM_FIT_REL}, plain = {f, ctx, 0, 0};
    if (tg.xtimes && t.x_min <= 0.0f && t.x_max >= 0.0f) {
        double y0 = f(ctx, 0.0);
        if (y0 != 0.0)
            return pm_error_set(err, PM_ERR_INVALID, "x-times form: f(0) = %g, but y = x*p(x) is 0 at x = 0 (use form plain)", y0);
    }
    if (o->mode == PM_LFU_MODE_EXPONENT && (st = choose_reduction(&plain, o, &t, err))) return st;
    if ((st = fill_oor(&plain, &t, err))) return st;
    t.coeffs = calloc(pm_lfu_coeff_count(&t), sizeof *t.coeffs);
    if (!t.coeffs) return pm_error_set(err, PM_ERR_NOMEM, "fit: no memory for %zu coefficients", pm_lfu_coeff_count(&t));
    float scale, bias;
    pm_lfu_uniform_map(&t, &scale, &bias);
    if (!(isfinite(scale) && scale > 0.0f && isfinite(bias))) {
        free(t.coeffs);
        return pm_error_set(err, PM_ERR_INVALID, "domain [%g, %g] with %u segments gives no finite fp32 segment map", (double)t.x_min,
                            (double)t.x_max, (unsigned)t.segments);
    }
    for (uint32_t s = 0; s < t.segments && st == PM_OK; s++)
        st = fit_segment(&tg, t.degree, (pm_fit_method)o->method, scale, bias - (float)s, t.coeffs + (size_t)s * (t.degree + 1u), err);
    if (st == PM_OK && o->retune && t.mode == PM_LFU_MODE_UNIFORM) st = retune(&t, &plain, o->objective == PM_FIT_REL, err);
    if (st == PM_OK) st = pm_lfu_table_validate(&t, err);
    if (st) {
        free(t.coeffs);
        return st;
    }
    *out = t;
    return PM_OK;
}

/* ---- measurement ---- */

struct pm_fit_sweep {
    pm_fit_fn f;
    void *ctx;
    float x_min, x_max;
    size_t n;
    float *x;    /* increasing */
    double *ref; /* f(x) */
    int exhaustive;
};

static int64_t key32(float x)
{
    uint32_t b = pm_f32_bits(x);
    return (b >> 31) ? -(int64_t)(b & 0x7fffffffu) : (int64_t)b;
}

static float from_key32(int64_t k) { return pm_f32_from_bits(k < 0 ? 0x80000000u | (uint32_t)(-k) : (uint32_t)k); }

static int64_t key16(uint16_t h) { return (h >> 15) ? -(int64_t)(h & 0x7fffu) : (int64_t)h; }

/* A double rounded once to bf16 (RNE; subnormals and overflow included). */
static uint16_t bf16_of_double(double v)
{
    uint16_t sign = signbit(v) ? 0x8000u : 0u;
    double a = fabs(v);
    if (a == 0.0) return sign;
    if (isinf(a)) return sign | 0x7f80u;
    int e;
    frexp(a, &e); /* a in [2^(e-1), 2^e): 8 significant bits means a quantum of 2^(e-8) */
    int q = e - 8 < -133 ? -133 : e - 8;
    double r = ldexp(nearbyint(ldexp(a, -q)), q);
    if (r >= 0x1p128) return sign | 0x7f80u;
    return (uint16_t)(sign | (pm_f32_bits((float)r) >> 16));
}

void pm_fit_sweep_destroy(pm_fit_sweep *s)
{
    if (!s) return;
    free(s->x);
    free(s->ref);
    free(s);
}

pm_status pm_fit_sweep_create(pm_fit_fn f, void *ctx, double x_min, double x_max, pm_fit_sweep **out, pm_error *err)
{
    if (!f || !out) return pm_error_set(err, PM_ERR_INVALID, "fit sweep: NULL argument");
    *out = NULL;
    if (!(fabs(x_min) <= FLT_MAX && fabs(x_max) <= FLT_MAX && (float)x_min < (float)x_max))
        return pm_error_set(err, PM_ERR_INVALID, "domain [%g, %g]: needs finite fp32 ends A < B", x_min, x_max);
    pm_fit_sweep *s = calloc(1, sizeof *s);
    if (!s) return pm_error_set(err, PM_ERR_NOMEM, "fit sweep: no memory");
    s->f = f;
    s->ctx = ctx;
    s->x_min = (float)x_min;
    s->x_max = (float)x_max;
    int64_t k0 = key32(s->x_min), k1 = key32(s->x_max);
    uint64_t all = (uint64_t)(k1 - k0) + 1;
    s->exhaustive = all <= PM_FIT_EXHAUSTIVE_MAX;
    size_t cap = s->exhaustive ? (size_t)all : (size_t)PM_FIT_SWEEP_UNIFORM + PM_FIT_SWEEP_BITS + 1;
    s->x = malloc(cap * sizeof *s->x);
    s->ref = malloc(cap * sizeof *s->ref);
    if (!s->x || !s->ref) {
        pm_fit_sweep_destroy(s);
        return pm_error_set(err, PM_ERR_NOMEM, "fit sweep: no memory for %zu points", cap);
    }
    if (s->exhaustive) {
        for (int64_t k = k0; k <= k1; k++) s->x[s->n++] = from_key32(k);
    } else {
        /* Merge the evenly spaced x and the evenly spaced bit patterns into
         * one increasing list without duplicates. */
        const double a = s->x_min, b = s->x_max;
        size_t i = 0, j = 0;
        while (i < PM_FIT_SWEEP_UNIFORM || j < PM_FIT_SWEEP_BITS) {
            float xu = i < PM_FIT_SWEEP_UNIFORM ? (float)(a + (b - a) * ((double)i / (PM_FIT_SWEEP_UNIFORM - 1))) : INFINITY;
            float xb = j < PM_FIT_SWEEP_BITS ? from_key32(k0 + (int64_t)((double)(k1 - k0) * ((double)j / (PM_FIT_SWEEP_BITS - 1))))
                                             : INFINITY;
            if (i == PM_FIT_SWEEP_UNIFORM - 1) xu = s->x_max;
            float next = key32(xu) <= key32(xb) ? xu : xb;
            if (key32(xu) <= key32(xb)) i++;
            else j++;
            if (!(s->n && key32(s->x[s->n - 1]) >= key32(next))) s->x[s->n++] = next;
        }
        /* Zero, where x-times forms and poles live, is always measured. */
        if (k0 < 0 && k1 > 0) {
            size_t at = 0;
            while (key32(s->x[at]) < 0) at++;
            if (key32(s->x[at]) != 0) {
                memmove(s->x + at + 1, s->x + at, (s->n - at) * sizeof *s->x);
                s->x[at] = 0.0f;
                s->n++;
            }
        }
    }
    for (size_t i = 0; i < s->n; i++) {
        double y = f(ctx, s->x[i]);
        if (!fp32_finite(y)) {
            pm_status st = not_finite(err, "f(x)", s->x[i], y);
            pm_fit_sweep_destroy(s);
            return st;
        }
        s->ref[i] = y;
    }
    *out = s;
    return PM_OK;
}

typedef struct accum {
    pm_fit_report *r;
    int first;
} accum;

static void account(accum *a, float x, float y, double ref)
{
    pm_fit_report *r = a->r;
    int64_t d32 = y != y ? INT64_MAX / 4 : llabs(key32(y) - key32((float)ref));
    int64_t d16 = y != y ? INT64_MAX / 4 : llabs(key16(pm_f32_to_bf16(y)) - key16(bf16_of_double(ref)));
    double ae = y != y ? INFINITY : fabs((double)y - ref);
    if (a->first || d32 > r->max_ulp_fp32 || (d32 == r->max_ulp_fp32 && x < r->worst_x_fp32)) r->max_ulp_fp32 = d32, r->worst_x_fp32 = x;
    if (a->first || d16 > r->max_ulp_bf16 || (d16 == r->max_ulp_bf16 && x < r->worst_x_bf16)) r->max_ulp_bf16 = d16, r->worst_x_bf16 = x;
    if (a->first || ae > r->max_abs_err || (ae == r->max_abs_err && x < r->worst_x_abs)) r->max_abs_err = ae, r->worst_x_abs = x;
    a->first = 0;
    r->points++;
}

#define CHUNK 4096

pm_status pm_fit_measure(const pm_fit_sweep *s, const pm_lfu_table *t, pm_fit_report *r, pm_error *err)
{
    if (!s || !t || !r) return pm_error_set(err, PM_ERR_INVALID, "fit measure: NULL argument");
    pm_status st = pm_lfu_table_validate(t, err);
    if (st) return st;
    memset(r, 0, sizeof *r);
    r->x_min = s->x_min;
    r->x_max = s->x_max;
    r->exhaustive = s->exhaustive;
    r->bytes = pm_lfu_table_serialized_size(t);
    accum a = {r, 1};
    float y[CHUNK];
    for (size_t i = 0; i < s->n; i += CHUNK) {
        size_t m = s->n - i < CHUNK ? s->n - i : CHUNK;
        pm_lfu_eval_array(t, s->x + i, y, m);
        for (size_t k = 0; k < m; k++) account(&a, s->x[i + k], y[k], s->ref[i + k]);
    }
    if (s->exhaustive || t->mode != PM_LFU_MODE_UNIFORM) return PM_OK;
    /* Every segment boundary and two neighbours each side: where a
     * segment's polynomial is used furthest from its fit. */
    float scale, bias;
    pm_lfu_uniform_map(t, &scale, &bias);
    for (uint32_t b = 1; b < t->segments; b++) {
        float xb = (float)(((double)b - (double)bias) / (double)scale);
        xb = nextafterf(nextafterf(xb, -INFINITY), -INFINITY);
        for (int k = 0; k < 5; k++, xb = nextafterf(xb, INFINITY)) {
            if (!(xb >= s->x_min && xb <= s->x_max)) continue;
            double ref = s->f(s->ctx, xb);
            if (!fp32_finite(ref)) return not_finite(err, "f(x)", xb, ref);
            account(&a, xb, pm_lfu_eval(t, xb), ref);
        }
    }
    return PM_OK;
}

/* ---- targets and the search ---- */

pm_status pm_fit_parse_eps(const char *text, pm_fit_eps *out, pm_error *err)
{
    if (!text || !out) return pm_error_set(err, PM_ERR_INVALID, "eps: NULL argument");
    char *end;
    double v = strtod(text, &end);
    int ulps = 0;
    if (end != text && (strcmp(end, "ulp") == 0 || strcmp(end, "ulps") == 0)) ulps = 1;
    else if (end == text || *end)
        return pm_error_set(err, PM_ERR_INVALID, "eps '%.64s': expected an absolute error such as 1e-4 or fp32 ulps such as 2ulp", text);
    if (!isfinite(v) || (ulps ? v < 0.0 : !(v > 0.0)))
        return pm_error_set(err, PM_ERR_INVALID, "eps '%.64s': must be %s", text, ulps ? "a finite number of ulps >= 0" : "finite and > 0");
    out->value = v;
    out->in_ulps = ulps;
    return PM_OK;
}

int pm_fit_meets(const pm_fit_report *r, const pm_fit_eps *e)
{
    return e->in_ulps ? (double)r->max_ulp_fp32 <= e->value : r->max_abs_err <= e->value;
}

/* Fits with `segments` and measures; *meets says whether eps holds. */
static pm_status try_fit(pm_fit_fn f, void *ctx, const pm_fit_options *base, const pm_fit_sweep *sw, const pm_fit_eps *eps,
                         uint8_t degree, uint32_t segments, int *meets, pm_fit_report *r, pm_error *err)
{
    pm_fit_options o = *base;
    o.degree = degree;
    o.segments = segments;
    pm_lfu_table t;
    pm_status st = pm_fit_table(f, ctx, &o, &t, err);
    if (st) return st;
    st = pm_fit_measure(sw, &t, r, err);
    pm_lfu_table_free(&t);
    if (st) return st;
    *meets = pm_fit_meets(r, eps);
    return PM_OK;
}

/* The fewest segments meeting eps for one degree (0 when none does). */
static pm_status search_degree(pm_fit_fn f, void *ctx, const pm_fit_options *o, const pm_fit_sweep *sw, const pm_fit_eps *eps,
                               uint8_t degree, uint32_t *found, pm_error *err)
{
    pm_fit_report r;
    uint32_t fail = 0, hit = 0;
    int meets = 0;
    for (uint32_t g = 1; g <= PM_LFU_MAX_SEGMENTS; g *= 2) {
        pm_status st = try_fit(f, ctx, o, sw, eps, degree, g, &meets, &r, err);
        if (st) return st;
        if (meets) {
            hit = g;
            break;
        }
        fail = g;
    }
    if (!hit) {
        *found = 0;
        return PM_OK;
    }
    while (hit - fail > 1) { /* invariant: fail misses (or is 0), hit meets */
        uint32_t mid = fail + (hit - fail) / 2;
        pm_status st = try_fit(f, ctx, o, sw, eps, degree, mid, &meets, &r, err);
        if (st) return st;
        if (meets) hit = mid;
        else fail = mid;
    }
    *found = hit;
    return PM_OK;
}

pm_status pm_fit_search(pm_fit_fn f, void *ctx, const pm_fit_options *o, const pm_fit_eps *eps, pm_lfu_table *out,
                        pm_fit_report *r, pm_fit_trial trials[3], pm_error *err)
{
    if (!f || !o || !eps || !out || !r) return pm_error_set(err, PM_ERR_INVALID, "fit search: NULL argument");
    memset(out, 0, sizeof *out);
    if (o->degree > PM_LFU_MAX_DEGREE)
        return pm_error_set(err, PM_ERR_INVALID, "degree %u outside 1..%d", (unsigned)o->degree, PM_LFU_MAX_DEGREE);
    pm_fit_options probe = *o;
    probe.segments = 1;
    probe.degree = o->degree ? o->degree : 1;
    pm_status st = check_options(&probe, err);
    if (st) return st;
    pm_fit_sweep *sw;
    if ((st = pm_fit_sweep_create(f, ctx, o->x_min, o->x_max, &sw, err))) return st;
    /* No fp32 result is closer to f(x) than f(x) rounded to fp32: an
     * absolute target below that gap can never be met, whatever the table. */
    if (!eps->in_ulps) {
        double gap = 0.0;
        float at = 0.0f;
        for (size_t i = 0; i < sw->n; i++) {
            double g = fabs(sw->ref[i] - (double)(float)sw->ref[i]);
            if (g > gap) gap = g, at = sw->x[i];
        }
        if (eps->value < gap) {
            pm_fit_sweep_destroy(sw);
            return pm_error_set(err, PM_ERR_INVALID,
                                "eps %g is below fp32's own resolution here: f(%.9g) is %g away from its nearest fp32 value "
                                "(use a target in ulps, such as 1ulp)",
                                eps->value, (double)at, gap);
        }
    }
    uint8_t first = o->degree ? o->degree : 1, last = o->degree ? o->degree : PM_LFU_MAX_DEGREE;
    uint8_t best_degree = 0;
    uint32_t best_segments = 0;
    size_t best_bytes = 0;
    if (trials) memset(trials, 0, 3 * sizeof *trials);
    for (uint8_t d = first; d <= last && st == PM_OK; d++) {
        uint32_t g;
        st = search_degree(f, ctx, o, sw, eps, d, &g, err);
        if (st) break;
        size_t bytes = g ? PM_LFU_SERIAL_HEADER_BYTES + (size_t)g * (d + 1u) * sizeof(float) : 0;
        if (trials) trials[d - 1] = (pm_fit_trial){d, g, bytes};
        if (g && (!best_degree || bytes < best_bytes)) best_degree = d, best_segments = g, best_bytes = bytes;
    }
    if (st == PM_OK && !best_degree)
        st = pm_error_set(err, PM_ERR_INVALID, "no table up to %d segments (degree %s) meets eps %g%s", PM_LFU_MAX_SEGMENTS,
                          o->degree ? (o->degree == 1 ? "1" : o->degree == 2 ? "2" : "3") : "1..3", eps->value,
                          eps->in_ulps ? " ulp" : "");
    if (st == PM_OK) {
        pm_fit_options fin = *o;
        fin.degree = best_degree;
        fin.segments = best_segments;
        st = pm_fit_table(f, ctx, &fin, out, err);
        if (st == PM_OK && (st = pm_fit_measure(sw, out, r, err))) pm_lfu_table_free(out);
    }
    pm_fit_sweep_destroy(sw);
    return st;
}
