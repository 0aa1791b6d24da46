/* gen_lfu_rom: fits the built-in LFU tables in long double and writes
 * src/lfu/lfu_rom.c (coefficients as hex-float literals), so every host
 * builds the same ROM without fitting anything at run time.
 *   usage: gen_lfu_rom OUTPUT.c      (written atomically; a summary goes to stderr)
 * Fit per segment: c0 is pinned to the correctly rounded value at the
 * segment's left end (t = 0); c1..c3 minimise the maximum relative error by
 * weighted least squares on 96 Chebyshev nodes with Lawson reweighting,
 * then are rounded to fp32 one at a time, refitting the rest after each.
 * Tails: the h sub-table is fitted the same way to h = f / exp(a) (no
 * exponential left in it) and the exp sub-table is the exp ROM table's. */
#include "polymorph/lfu.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LN2_L 0.693147180559945309417232121458176568L
#define LOG2E_L 1.44269504088896340735992468100189214L
#define SQRT1_2_L 0.707106781186547524400844362104849039L

/* ---- targets: what p must approximate (the reduced / divided function) ---- */

static long double t_exp(long double r) { return expl(r); }
static long double t_exp2(long double r) { return exp2l(r); }
static long double t_sigmoid(long double x) { return 1.0L / (1.0L + expl(-x)); }
static long double t_tanh_over_x(long double x) { return x == 0.0L ? 1.0L : tanhl(x) / x; }
static long double t_phi(long double x) { return 0.5L * erfcl(-x * SQRT1_2_L); }
/* Tail factors h = f / exp(a) (docs/lfu.md, "Tails"): smooth, bounded, no
 * exponential decay left, so a short uniform table holds them. */
static long double t_sigmoid_over_exp(long double x) { return 1.0L / (1.0L + expl(x)); }
static long double t_gelu_times_gauss(long double x) { return x * 0.5L * erfcl(-x * SQRT1_2_L) * expl(0.5L * x * x); }
static long double t_rsqrt(long double w) { return 1.0L / sqrtl(w); }
static long double t_recip(long double w) { return 1.0L / w; }

typedef struct rom_spec {
    pm_lfu_func func;
    const char *c_name;
    pm_lfu_table shape; /* every field but coeffs (the tail block filled in by add_tail) */
    long double (*target)(long double);
    const char *note;   /* one line in the generated file */
    long double (*h_target)(long double); /* with a tail: what its h table approximates */
} rom_spec;

#define SHAPE(nm, mode_, form_, oor_, segs, lo, hi, bv, av, bs, as, p0, p1, p2, p3) \
    {.name = nm, .mode = mode_, .form = form_, .oor = oor_, .degree = 3, .segments = segs, .x_min = lo,  \
     .x_max = hi, .below_value = bv, .above_value = av, .below_slope = bs, .above_slope = as,            \
     .param = {p0, p1, p2, p3, 0, 0, 0, 0}}

static rom_spec specs[PM_LFU_FUNC_COUNT];

#define GELU_SEGMENTS 128
#define SIGMOID_H_SEGMENTS 8
#define GELU_H_SEGMENTS 128

static void add_tail(rom_spec *sp, uint8_t kind, uint8_t form, float a_scale, uint16_t h_segments, float h_min, float h_max,
                     long double (*h_target)(long double))
{
    pm_lfu_tail *tl = &sp->shape.tail;
    const pm_lfu_table *e = &specs[PM_LFU_EXP].shape;
    tl->kind = kind;
    tl->form = form;
    tl->a_scale = a_scale;
    tl->h_segments = h_segments;
    tl->h_min = h_min;
    tl->h_max = h_max;
    tl->e_segments = (uint16_t)e->segments;
    tl->e_min = e->x_min;
    tl->e_max = e->x_max;
    tl->exp_c = e->param[PM_LFU_PARAM_EXP_C];
    tl->exp_l_hi = e->param[PM_LFU_PARAM_EXP_L_HI];
    tl->exp_l_lo = e->param[PM_LFU_PARAM_EXP_L_LO];
    sp->h_target = h_target;
}

static void define_specs(void)
{
    const float ln2_hi = (float)LN2_L;
    const float ln2_lo = (float)(LN2_L - (long double)ln2_hi);
    const float log2e = (float)LOG2E_L;
    rom_spec s[PM_LFU_FUNC_COUNT] = {
        {PM_LFU_EXP, "exp",
         SHAPE("exp", PM_LFU_MODE_EXPONENT, 0, 0, 24, -0.375f, 0.375f, 0, 0, 0, 0, PM_LFU_RED_EXP2, log2e, ln2_hi, ln2_lo),
         t_exp, "exp(x) = 2^n * p(r), n = rne(x*log2e), r = x - n*ln2 (Cody-Waite pair), p ~ e^r on [-0.375, 0.375]", NULL},
        {PM_LFU_EXP2, "exp2",
         SHAPE("exp2", PM_LFU_MODE_EXPONENT, 0, 0, 32, -0.5f, 0.5f, 0, 0, 0, 0, PM_LFU_RED_EXP2, 1.0f, 1.0f, 0.0f),
         t_exp2, "exp2(x) = 2^n * p(f), n = rne(x), f = x - n exact, p ~ 2^f on [-0.5, 0.5]", NULL},
        {PM_LFU_SIGMOID, "sigmoid",
         SHAPE("sigmoid", PM_LFU_MODE_UNIFORM, PM_LFU_FORM_PLAIN, PM_LFU_OOR_CONST, 256, -16.0f, 16.0f, 0.0f, 1.0f, 0, 0, 0, 0, 0, 0),
         t_sigmoid, "sigmoid(x) = p(x) on [-16, 16]; tail below (h ~ 1/(1+e^x) on [-32, -16], exp(x)), 1 above", NULL},
        {PM_LFU_TANH, "tanh",
         SHAPE("tanh", PM_LFU_MODE_UNIFORM, PM_LFU_FORM_X_TIMES, PM_LFU_OOR_CONST, 256, -10.0f, 10.0f, -1.0f, 1.0f, 0, 0, 0, 0, 0, 0),
         t_tanh_over_x, "tanh(x) = x * p(x), p ~ tanh(x)/x on [-10, 10]; -1 below, 1 above", NULL},
        {PM_LFU_SILU, "silu",
         SHAPE("silu", PM_LFU_MODE_UNIFORM, PM_LFU_FORM_X_TIMES, PM_LFU_OOR_LINEAR, 256, -16.0f, 16.0f, 0.0f, 0.0f, 0.0f, 1.0f, 0, 0, 0, 0),
         t_sigmoid, "silu(x) = x * p(x), p ~ sigmoid(x) on [-16, 16]; tail below (x * h * exp(x), h as sigmoid's), x above", NULL},
        {PM_LFU_GELU, "gelu",
         SHAPE("gelu", PM_LFU_MODE_UNIFORM, PM_LFU_FORM_X_TIMES, PM_LFU_OOR_LINEAR, GELU_SEGMENTS, -2.0f, 6.0f, 0.0f, 0.0f, 0.0f, 1.0f, 0, 0, 0, 0),
         t_phi, "gelu(x) = x * p(x), p ~ Phi(x) = erfc(-x/sqrt2)/2 on [-2, 6]; tail below (h * exp(-x^2/2), h ~ x Phi(x) e^(x^2/2) on [-18, -2]), x above", NULL},
        {PM_LFU_RSQRT, "rsqrt",
         SHAPE("rsqrt", PM_LFU_MODE_EXPONENT, 0, 0, 96, 1.0f, 4.0f, 0, 0, 0, 0, PM_LFU_RED_RSQRT, 0, 0, 0),
         t_rsqrt, "rsqrt(x) = p(w) * 2^-k, x = w * 4^k, w in [1, 4), p ~ 1/sqrt(w)", NULL},
        {PM_LFU_RECIP, "recip",
         SHAPE("recip", PM_LFU_MODE_EXPONENT, 0, 0, 32, 1.0f, 2.0f, 0, 0, 0, 0, PM_LFU_RED_RECIP, 0, 0, 0),
         t_recip, "recip(x) = +-p(w) * 2^-e, |x| = w * 2^e, w in [1, 2), p ~ 1/w", NULL},
    };
    memcpy(specs, s, sizeof specs);
    /* Tails: h over [h_min, h_max] and an exp sub-table shaped like the exp ROM table. */
    add_tail(&specs[PM_LFU_SIGMOID], PM_LFU_TAIL_EXP_LINEAR, PM_LFU_FORM_PLAIN, 1.0f, SIGMOID_H_SEGMENTS, -32.0f, -16.0f, t_sigmoid_over_exp);
    add_tail(&specs[PM_LFU_SILU], PM_LFU_TAIL_EXP_LINEAR, PM_LFU_FORM_X_TIMES, 1.0f, SIGMOID_H_SEGMENTS, -32.0f, -16.0f, t_sigmoid_over_exp);
    add_tail(&specs[PM_LFU_GELU], PM_LFU_TAIL_EXP_SQUARE, PM_LFU_FORM_PLAIN, -0.5f, GELU_H_SEGMENTS, -18.0f, -2.0f,
             t_gelu_times_gauss);
}

/* ---- fitting ---- */

#define NODES 96
#define LAWSON_ITERS 60

/* Solve the n x n system a*x = b (n <= 3) by Gaussian elimination with
 * partial pivoting. Returns -1 if singular. */
static int solve(int n, long double a[3][3], long double b[3], long double x[3])
{
    for (int col = 0; col < n; col++) {
        int piv = col;
        for (int r = col + 1; r < n; r++)
            if (fabsl(a[r][col]) > fabsl(a[piv][col])) piv = r;
        if (a[piv][col] == 0.0L) return -1;
        for (int c = 0; c < n; c++) {
            long double tmp = a[col][c];
            a[col][c] = a[piv][c];
            a[piv][c] = tmp;
        }
        long double tb = b[col];
        b[col] = b[piv];
        b[piv] = tb;
        for (int r = col + 1; r < n; r++) {
            long double f = a[r][col] / a[col][col];
            for (int c = col; c < n; c++) a[r][c] -= f * a[col][c];
            b[r] -= f * b[col];
        }
    }
    for (int r = n - 1; r >= 0; r--) {
        long double s = b[r];
        for (int c = r + 1; c < n; c++) s -= a[r][c] * x[c];
        x[r] = s / a[r][r];
    }
    return 0;
}

typedef struct seg_fit {
    long double t[NODES], g[NODES], v[NODES]; /* nodes, targets, Lawson weights */
} seg_fit;

/* Weighted least squares for coefficients first..degree with the lower ones
 * fixed in c[]; minimises sum v_j * ((p(t_j) - g_j) / g_j)^2. */
static int fit_free(const seg_fit *f, int degree, int first, long double c[4])
{
    int n = degree - first + 1;
    long double a[3][3] = {{0}}, b[3] = {0}, x[3] = {0};
    for (int j = 0; j < NODES; j++) {
        long double fixed = 0.0L, tp = 1.0L;
        for (int k = 0; k < first; k++, tp *= f->t[j]) fixed += c[k] * tp;
        long double w = f->v[j] / (f->g[j] * f->g[j]);
        long double basis[3];
        for (int k = 0; k < n; k++) basis[k] = powl(f->t[j], (long double)(first + k));
        for (int r = 0; r < n; r++) {
            for (int q = 0; q < n; q++) a[r][q] += w * basis[r] * basis[q];
            b[r] += w * basis[r] * (f->g[j] - fixed);
        }
    }
    if (solve(n, a, b, x)) return -1;
    for (int k = 0; k < n; k++) c[first + k] = x[k];
    return 0;
}

static long double poly(const long double c[4], int degree, long double t)
{
    long double y = c[degree];
    for (int k = degree - 1; k >= 0; k--) y = y * t + c[k];
    return y;
}

/* Fit one segment; returns the max relative error of the fp32 coefficients
 * over a dense grid (approximation error only, no evaluation rounding). */
typedef struct sub_spec {
    long double (*target)(long double);
    int degree;
} sub_spec;

static long double fit_segment(const sub_spec *sp, float scale, float bias, uint32_t s, float out[4])
{
    int degree = sp->degree;
    float c_off = bias - (float)s; /* exactly what the evaluator adds */
    seg_fit f;
    for (int j = 0; j < NODES; j++) {
        f.t[j] = 0.5L - 0.5L * cosl(3.14159265358979323846264338327950288L * (j + 0.5L) / NODES);
        f.g[j] = sp->target(((long double)f.t[j] - c_off) / scale);
        f.v[j] = 1.0L / NODES;
    }
    f.t[NODES - 1] = 1.0L; /* the right end joins the next segment */
    f.g[NODES - 1] = sp->target((1.0L - c_off) / scale);
    long double c[4] = {0};
    c[0] = (float)sp->target((0.0L - c_off) / scale);
    for (int it = 0; it < LAWSON_ITERS; it++) {
        if (fit_free(&f, degree, 1, c)) break;
        long double sum = 0.0L;
        for (int j = 0; j < NODES; j++) {
            f.v[j] *= fabsl((poly(c, degree, f.t[j]) - f.g[j]) / f.g[j]) + 1e-30L;
            sum += f.v[j];
        }
        for (int j = 0; j < NODES; j++) f.v[j] /= sum;
    }
    fit_free(&f, degree, 1, c);
    for (int k = 1; k <= degree; k++) { /* round one, refit the rest */
        c[k] = (float)c[k];
        if (k < degree) fit_free(&f, degree, k + 1, c);
    }
    long double worst = 0.0L;
    for (int k = 0; k <= degree; k++) out[k] = (float)c[k];
    for (int j = 0; j <= 1024; j++) {
        long double t = j / 1024.0L, g = sp->target((t - c_off) / scale);
        long double e = fabsl((poly(c, degree, t) - g) / g);
        if (e > worst) worst = e;
    }
    return worst;
}

/* ---- output ---- */

static const char *hexf(float v, char buf[32])
{
    if (v == 0.0f) snprintf(buf, 32, "%s0x0p+0f", signbit(v) ? "-" : "");
    else snprintf(buf, 32, "%af", (double)v);
    return buf;
}

/* Fit and emit the segments of one (sub-)table; report its worst relative
 * approximation error on stderr. */
static void emit_sub(pm_text *o, const char *name, const char *part, long double (*target)(long double), int degree,
                     uint32_t segments, float lo, float hi)
{
    sub_spec ss = {target, degree};
    float scale, bias;
    char b[4][32];
    pm_lfu_segment_map(segments, lo, hi, &scale, &bias);
    long double worst = 0.0L;
    for (uint32_t s = 0; s < segments; s++) {
        float c[4];
        long double e = fit_segment(&ss, scale, bias, s, c);
        if (e > worst) worst = e;
        pm_text_printf(o, "   ");
        for (int k = 0; k <= degree; k++) pm_text_printf(o, " %s,", hexf(c[k], b[k]));
        pm_text_printf(o, "\n");
    }
    fprintf(stderr, "%-8s%-7s %4u segments, degree %d: max relative approximation error %.3Le (%.3Lf ulp at 2^-24)\n", name,
            part, segments, degree, worst, worst * 16777216.0L);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_lfu_rom OUTPUT.c\n");
        return 2;
    }
    define_specs();
    pm_text o = {0};
    char b[8][32];
    pm_text_printf(&o, "/* Polymorph LFU ROM: the built-in function tables.\n"
             " * GENERATED by tools/gen_lfu_rom.c; do not edit. Regenerate with\n"
             " *   make BUILD=build build/tools/gen_lfu_rom && build/tools/gen_lfu_rom src/lfu/lfu_rom.c\n"
             " * Cubic per segment in t in [0, 1]; c0 pinned to the correctly rounded value at t = 0,\n"
             " * c1..c3 minimax in relative error (weighted least squares, Lawson iterations),\n"
             " * fitted in long double, rounded to fp32 one coefficient at a time. A table with a\n"
             " * below-domain tail (sigmoid, silu, gelu) holds its h and exp sub-tables after the main\n"
             " * segments, fitted the same way (docs/lfu.md, \"Tails\"). */\n"
             "#include \"lfu_internal.h\"\n\n");
    int bad = 0;
    /* Each table's coefficients are fitted into their own text first; a table
     * whose coefficients come out identical to an earlier one's (SiLU is x
     * times sigmoid's polynomial, with sigmoid's tail) uses that array
     * instead of a second copy. */
    pm_text bodies[PM_LFU_FUNC_COUNT] = {{0}};
    int array_of[PM_LFU_FUNC_COUNT];
    for (int i = 0; i < PM_LFU_FUNC_COUNT; i++) {
        const rom_spec *sp = &specs[i];
        const pm_lfu_table *sh = &sp->shape;
        pm_text *body = &bodies[i];
        emit_sub(body, sp->c_name, "", sp->target, sh->degree, sh->segments, sh->x_min, sh->x_max);
        if (sh->tail.kind != PM_LFU_TAIL_NONE) {
            pm_text_printf(body, "    /* tail h(x) on [%g, %g] */\n", (double)sh->tail.h_min, (double)sh->tail.h_max);
            emit_sub(body, sp->c_name, " tail h", sp->h_target, sh->degree, sh->tail.h_segments, sh->tail.h_min, sh->tail.h_max);
            pm_text_printf(body, "    /* tail exp(r) on [%g, %g] */\n", (double)sh->tail.e_min, (double)sh->tail.e_max);
            emit_sub(body, sp->c_name, " tail e", t_exp, sh->degree, sh->tail.e_segments, sh->tail.e_min, sh->tail.e_max);
        }
        array_of[i] = i;
        for (int j = 0; j < i; j++)
            if (array_of[j] == j && bodies[j].len == body->len && memcmp(bodies[j].data, body->data, body->len) == 0 &&
                pm_lfu_coeff_count(&specs[j].shape) == pm_lfu_coeff_count(sh)) {
                array_of[i] = j;
                break;
            }
        if (array_of[i] != i) {
            pm_text_printf(&o, "/* %s */\n/* %s uses %s_coeffs: its fitted coefficients are identical. */\n\n", sp->note,
                 sp->c_name, specs[array_of[i]].c_name);
            continue;
        }
        pm_text_printf(&o, "/* %s */\nstatic const float %s_coeffs[%zu] = {\n", sp->note, sp->c_name, pm_lfu_coeff_count(sh));
        pm_text_append(&o, body->data ? body->data : "", body->len);
        pm_text_printf(&o, "};\n\n");
    }
    for (int i = 0; i < PM_LFU_FUNC_COUNT; i++) free(bodies[i].data);
    pm_text_printf(&o, "const pm_lfu_rom_entry pm_lfu_rom[PM_LFU_FUNC_COUNT] = {\n");
    for (int i = 0; i < PM_LFU_FUNC_COUNT; i++) {
        const pm_lfu_table *t = &specs[i].shape;
        pm_text_printf(&o, "    [%d] = {\"%s\", %u, %u, %u, %u, %u, %s, %s, %s, %s, %s, %s,\n            {", (int)specs[i].func, t->name,
             (unsigned)t->mode, (unsigned)t->form, (unsigned)t->oor, (unsigned)t->degree, (unsigned)t->segments,
             hexf(t->x_min, b[0]), hexf(t->x_max, b[1]), hexf(t->below_value, b[2]), hexf(t->above_value, b[3]),
             hexf(t->below_slope, b[4]), hexf(t->above_slope, b[5]));
        for (int k = 0; k < 8; k++) pm_text_printf(&o, "%s%s", k ? ", " : "", hexf(t->param[k], b[0]));
        pm_text_printf(&o, "},\n            %s_coeffs", specs[array_of[i]].c_name);
        const pm_lfu_tail *tl = &t->tail;
        pm_text_printf(&o, ",\n            {%u, %u, %u, %u, %s, %s, %s, %s, %s, %s, %s, %s}", (unsigned)tl->kind, (unsigned)tl->form,
             (unsigned)tl->h_segments, (unsigned)tl->e_segments, hexf(tl->a_scale, b[0]), hexf(tl->h_min, b[1]),
             hexf(tl->h_max, b[2]), hexf(tl->e_min, b[3]), hexf(tl->e_max, b[4]), hexf(tl->exp_c, b[5]),
             hexf(tl->exp_l_hi, b[6]), hexf(tl->exp_l_lo, b[7]));
        pm_text_printf(&o, "},\n");
    }
    pm_text_printf(&o, "};\n");
    pm_error err;
    if (o.failed) {
        fprintf(stderr, "gen_lfu_rom: out of memory\n");
        bad = 1;
    } else if (pm_write_file_atomic(argv[1], o.data, o.len, &err) != PM_OK) {
        fprintf(stderr, "gen_lfu_rom: %s\n", err.message);
        bad = 1;
    }
    free(o.data);
    return bad;
}
