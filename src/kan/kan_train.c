/* KAN training: L-BFGS with a strong-Wolfe line search (pykan's optimiser,
 * history 10) and Adam over the network's one parameter array, grid updates
 * from sample quantiles, grid extension by least squares, and pruning. */
#include "kan_internal.h"

#include <stdlib.h>
#include <string.h>

void pm_kan_train_defaults(pm_kan_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->optimizer = PM_KAN_LBFGS;
    o->steps = 100;
    o->lr = 1.0;
    o->history = 10;
    o->lbfgs_iters = 20;
    o->grid_update_every = 10;
    o->grid_update_stop = 50;
    o->grid_eps = 1.0;
    o->grid_margin = 0.0;
}

/* ---- grids from samples ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* New knots for one input from its sorted samples: grid_eps * uniform +
 * (1 - grid_eps) * quantiles over [min, max], then `order` knots each side
 * spaced by the mean interval (pykan extend_grid). */
static void knots_from_samples(const double *sorted, size_t n, uint32_t grid, uint32_t order, double eps, double margin,
                               const double *box, double *t)
{
    double lo = sorted[0], hi = sorted[n - 1];
    if (box) { /* the activations' range over the inputs' bounding box */
        lo = fmin(lo, box[0]);
        hi = fmax(hi, box[1]);
    }
    if (!(hi - lo > 1e-12 * (1.0 + fabs(lo)))) { /* a constant input: a unit interval around it */
        lo -= 0.5;
        hi += 0.5;
        eps = 1.0;
    }
    double pad = margin * (hi - lo);
    lo -= pad;
    hi += pad;
    /* A non-uniform grid is snapped onto a lattice of PM_KAN_LATTICE cells per
     * mean interval, so the spline stays one polynomial per lattice cell and
     * exports exactly to a uniform LFU table (docs/kan.md). */
    double cell = (hi - lo) / ((double)grid * PM_KAN_LATTICE);
    uint32_t cells = grid * PM_KAN_LATTICE, prev = 0;
    for (uint32_t g = 0; g <= grid; g++) {
        double uni = g == grid ? hi : lo + (hi - lo) * g / grid;
        double ada = sorted[(size_t)((double)g * (double)(n - 1) / grid + 0.5)];
        if (g == 0 || g == grid) ada = g ? hi : lo;
        if (eps == 1.0) {
            t[order + g] = uni;
            continue;
        }
        double v = eps * uni + (1.0 - eps) * ada;
        double r = floor((v - lo) / cell + 0.5);
        uint32_t idx = r < 0.0 ? 0 : r > (double)cells ? cells : (uint32_t)r;
        if (g == 0) idx = 0;
        if (g && idx <= prev) idx = prev + 1;               /* strictly increasing */
        if (idx > cells - (grid - g)) idx = cells - (grid - g); /* room for the rest */
        prev = idx;
        t[order + g] = g == grid ? hi : lo + idx * cell;
    }
    double h = (t[order + grid] - t[order]) / grid;
    for (uint32_t m = 1; m <= order; m++) {
        t[order - m] = t[order] - m * h;
        t[order + grid + m] = t[order + grid] + m * h;
    }
}

/* Spline part of edge e (no scale) at x on the layer's current knots. */
static double spline_part(const pm_kan_layer *L, uint32_t i, size_t e, double x)
{
    uint32_t nk = pm_kan_knot_count(L->grid, L->order), nb = pm_kan_basis_count(L->grid, L->order);
    double B[PM_KAN_MAX_ORDER + 1], v = 0.0;
    int first;
    if (!pm_kan_basis_local(L->knots + (size_t)i * nk, L->grid, L->order, x, &first, B, NULL)) return 0.0;
    for (uint32_t m = 0; m <= L->order; m++) {
        int idx = first + (int)m;
        if (idx >= 0 && idx < (int)nb) v += L->coef[e * nb + (size_t)idx] * B[m];
    }
    return v;
}

/* Inputs of layer `layer` for the batch, [n][in]. */
static pm_status layer_inputs(const pm_kan *net, uint32_t layer, const double *x, size_t n, double **out, pm_error *err)
{
    if (layer == 0) {
        *out = malloc(n * net->width[0] * sizeof **out + 1);
        if (!*out) return pm_error_set(err, PM_ERR_NOMEM, "kan grid: no memory");
        memcpy(*out, x, n * net->width[0] * sizeof **out);
        return PM_OK;
    }
    pm_kan head = *net; /* the first `layer` layers, sharing storage */
    head.depth = layer;
    *out = malloc(n * net->width[layer] * sizeof **out + 1);
    if (!*out) return pm_error_set(err, PM_ERR_NOMEM, "kan grid: no memory");
    pm_status st = pm_kan_forward(&head, x, n, *out, err);
    if (st) free(*out);
    return st;
}

/* Re-grid one layer to `new_grid` intervals from its batch inputs and refit
 * every edge's spline part by least squares on the samples plus `dense`
 * uniform points per new interval over the old inner grid range (so the
 * function is kept where the samples are sparse). */
static pm_status regrid_layer(pm_kan *net, uint32_t l, const double *xin, size_t n, uint32_t new_grid, double eps,
                              double margin, uint32_t dense, const double *box, pm_error *err)
{
    pm_kan_layer *L = &net->layer[l];
    uint32_t k = L->order, old_nk = pm_kan_knot_count(L->grid, k), new_nk = pm_kan_knot_count(new_grid, k);
    uint32_t old_nb = pm_kan_basis_count(L->grid, k), new_nb = pm_kan_basis_count(new_grid, k);
    size_t edges = (size_t)L->in * L->out;
    size_t extra = (size_t)dense * new_grid, pts = n + extra;
    double *knots = malloc((size_t)L->in * new_nk * sizeof *knots);
    double *coef = malloc(edges * new_nb * sizeof *coef);
    double *xs = malloc(pts * sizeof *xs), *ys = malloc(pts * sizeof *ys);
    pm_status st = PM_OK;
    if (!knots || !coef || !xs || !ys) {
        st = pm_error_set(err, PM_ERR_NOMEM, "kan grid: no memory for layer %u", l);
        goto done;
    }
    for (uint32_t i = 0; i < L->in && !st; i++) {
        for (size_t s = 0; s < n; s++) xs[s] = xin[s * L->in + i];
        const double *old_t = L->knots + (size_t)i * old_nk;
        for (size_t s = 0; s < extra; s++) /* midpoints of `extra` cells over the old inner range */
            xs[n + s] = old_t[k] + (old_t[k + L->grid] - old_t[k]) * ((double)s + 0.5) / (double)extra;
        qsort(xs, n, sizeof *xs, cmp_double);
        if (eps < 0.0) /* refit on the current knots */
            memcpy(knots + (size_t)i * new_nk, old_t, new_nk * sizeof *knots);
        else
            knots_from_samples(xs, n, new_grid, k, eps, margin, box ? box + 2 * i : NULL, knots + (size_t)i * new_nk);
        for (uint32_t j = 0; j < L->out && !st; j++) {
            size_t e = (size_t)i * L->out + j;
            for (size_t s = 0; s < pts; s++) ys[s] = spline_part(L, i, e, xs[s]);
            st = pm_kan_curve2coef(knots + (size_t)i * new_nk, new_grid, k, xs, ys, pts, coef + e * new_nb, err);
        }
    }
    if (st) goto done;
    if (new_grid == L->grid) {
        memcpy(L->knots, knots, (size_t)L->in * new_nk * sizeof *knots);
        memcpy(L->coef, coef, edges * new_nb * sizeof *coef);
    } else {
        /* A new parameter array with this layer's coefficient block resized. */
        size_t old_block = edges * old_nb, new_block = edges * new_nb;
        size_t count = net->param_count - old_block + new_block;
        double *p = malloc(count * sizeof *p);
        if (!p) {
            st = pm_error_set(err, PM_ERR_NOMEM, "kan grid: no memory for %zu parameters", count);
            goto done;
        }
        size_t off = L->param_offset;
        memcpy(p, net->params, off * sizeof *p);
        memcpy(p + off, coef, new_block * sizeof *p);
        memcpy(p + off + new_block, net->params + off + old_block, (net->param_count - off - old_block) * sizeof *p);
        free(net->params);
        net->params = p;
        net->param_count = count;
        free(L->knots);
        L->knots = knots;
        knots = NULL;
        L->grid = new_grid;
        pm_kan_bind(net);
    }
done:
    free(knots);
    free(coef);
    free(xs);
    free(ys);
    return st;
}

/* Points spanning the bounding box of the training inputs: a lattice of m
 * points per input (the box's faces included) with m^d <= 4096, or NULL when
 * even 2 per input would be too many (d > 12). Hidden grids then cover what
 * the layer sees anywhere in the box, not only at the training samples: a
 * hidden layer's extremes are often reached in a corner the samples only
 * approach (exp(sin(pi x) + y^2) peaks at y = +-1), and a test point beyond a
 * grid falls onto the basis' ramp down to 0. */
static double *box_points(const double *x, size_t n, uint32_t d, size_t *count)
{
    *count = 0;
    if (d > 12) return NULL;
    uint32_t m = 2;
    for (;;) {
        double c = 1.0;
        for (uint32_t i = 0; i < d; i++) c *= (double)(m + 1);
        if (c > 4096.0) break;
        m++;
    }
    size_t total = 1;
    for (uint32_t i = 0; i < d; i++) total *= m;
    double *p = malloc(total * d * sizeof *p), lo[12], hi[12];
    if (!p) return NULL;
    for (uint32_t i = 0; i < d; i++) {
        lo[i] = hi[i] = x[i];
        for (size_t s = 1; s < n; s++) lo[i] = fmin(lo[i], x[s * d + i]), hi[i] = fmax(hi[i], x[s * d + i]);
    }
    for (size_t q = 0; q < total; q++) {
        size_t r = q;
        for (uint32_t i = 0; i < d; i++, r /= m) p[q * d + i] = lo[i] + (hi[i] - lo[i]) * (double)(r % m) / (m - 1);
    }
    *count = total;
    return p;
}

static pm_status regrid(pm_kan *net, const double *x, size_t n, const uint32_t *new_grid, double eps, double margin,
                        uint32_t dense, pm_error *err)
{
    if (!net || !net->params) return pm_error_set(err, PM_ERR_INVALID, "kan grid: no network");
    if (!x || n < 2) return pm_error_set(err, PM_ERR_INVALID, "kan grid: needs at least 2 samples, got %zu", n);
    if (!(eps >= 0.0 && eps <= 1.0) && eps != -1.0) /* -1: keep the knots (internal) */
        return pm_error_set(err, PM_ERR_INVALID, "kan grid: grid_eps %g outside [0, 1]", eps);
    if (!(margin >= 0.0 && margin <= 10.0)) return pm_error_set(err, PM_ERR_INVALID, "kan grid: margin %g outside [0, 10]", margin);
    size_t nbox;
    double *box = box_points(x, n, net->width[0], &nbox);
    pm_status st = PM_OK;
    /* Layer by layer, each from the inputs the already re-gridded layers give (pykan). */
    for (uint32_t l = 0; l < net->depth && !st; l++) {
        double *xin, *bin = NULL, *range = NULL;
        if ((st = layer_inputs(net, l, x, n, &xin, err))) break;
        uint32_t in = net->width[l];
        if (box && l > 0 && !(st = layer_inputs(net, l, box, nbox, &bin, err))) {
            range = malloc(2 * in * sizeof *range);
            for (uint32_t i = 0; range && i < in; i++) {
                range[2 * i] = range[2 * i + 1] = bin[i];
                for (size_t s = 1; s < nbox; s++)
                    range[2 * i] = fmin(range[2 * i], bin[s * in + i]), range[2 * i + 1] = fmax(range[2 * i + 1], bin[s * in + i]);
            }
        }
        if (!st) st = regrid_layer(net, l, xin, n, new_grid ? new_grid[l] : net->layer[l].grid, eps, margin, dense, range, err);
        free(xin);
        free(bin);
        free(range);
    }
    free(box);
    return st;
}

pm_status pm_kan_update_grid(pm_kan *net, const double *x, size_t n, double grid_eps, double margin, pm_error *err)
{
    return regrid(net, x, n, NULL, grid_eps, margin, 0, err);
}

pm_status pm_kan_extend_grid(pm_kan *net, uint32_t new_grid, const double *x, size_t n, double grid_eps, double margin,
                             pm_error *err)
{
    if (new_grid < 1 || new_grid > PM_KAN_MAX_GRID)
        return pm_error_set(err, PM_ERR_INVALID, "kan grid extension: grid %u outside 1..%d", new_grid, PM_KAN_MAX_GRID);
    uint32_t grids[PM_KAN_MAX_LAYERS];
    for (uint32_t l = 0; l < PM_KAN_MAX_LAYERS; l++) grids[l] = new_grid;
    return regrid(net, x, n, grids, grid_eps, margin, 8, err);
}

/* ---- optimisers ---- */

typedef struct trainer {
    pm_kan *net;
    const double *x, *y;
    size_t n;
    const pm_kan_train_opts *o;
    pm_error *err;
    size_t evals;
} trainer;

static pm_status evaluate(trainer *t, const double *p, double *f, double *g)
{
    if (p != t->net->params) memcpy(t->net->params, p, t->net->param_count * sizeof *p);
    t->evals++;
    return pm_kan_loss_grad(t->net, t->x, t->y, t->n, &t->o->reg, f, g, t->err);
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Minimiser of the cubic through (x1, f1, g1), (x2, f2, g2), kept inside
 * [lo, hi]; bisection when the cubic has no minimum. */
static double cubic_min(double x1, double f1, double g1, double x2, double f2, double g2, double lo, double hi)
{
    double d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    double d2sq = d1 * d1 - g1 * g2;
    if (d2sq >= 0.0) {
        double d2 = sqrt(d2sq) * (x2 >= x1 ? 1.0 : -1.0);
        double m = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2));
        if (m == m) return m < lo ? lo : m > hi ? hi : m;
    }
    return 0.5 * (lo + hi);
}

/* One trial point of the line search: p + a*d, its loss and slope along d. */
typedef struct ls_point {
    double a, f, gd;
} ls_point;

static pm_status ls_eval(trainer *t, const double *p0, const double *d, double a, double *pt, double *gt, ls_point *out)
{
    size_t P = t->net->param_count;
    for (size_t i = 0; i < P; i++) pt[i] = p0[i] + a * d[i];
    pm_status st = evaluate(t, pt, &out->f, gt);
    out->a = a;
    out->gd = dot(gt, d, P);
    if (!st && out->f != out->f) out->f = HUGE_VAL;
    return st;
}

/* Strong-Wolfe line search (Nocedal & Wright, algorithms 3.5 and 3.6, cubic
 * interpolation, c1 = 1e-4, c2 = 0.9). On return p1/g1/f1 hold the best
 * point found (which may be the start, a = 0, if nothing decreased). */
static pm_status strong_wolfe(trainer *t, const double *p0, double f0, const double *g0, const double *d, double a1,
                              double *p1, double *g1, double *f1, double *pt, double *gt)
{
    const double c1 = 1e-4, c2 = 0.9;
    size_t P = t->net->param_count;
    double gd0 = dot(g0, d, P);
    ls_point prev = {0.0, f0, gd0}, cur = prev, lo = prev, hi = prev;
    memcpy(p1, p0, P * sizeof *p1);
    memcpy(g1, g0, P * sizeof *g1);
    *f1 = f0;
    pm_status st;
    int found = 0, bracket = 0;
    double a = a1;
    for (int it = 0; it < 25 && !found && !bracket; it++) {
        if ((st = ls_eval(t, p0, d, a, pt, gt, &cur))) return st;
        if (cur.f < *f1) {
            *f1 = cur.f;
            memcpy(p1, pt, P * sizeof *p1);
            memcpy(g1, gt, P * sizeof *g1);
        }
        if (cur.f > f0 + c1 * a * gd0 || (it > 0 && cur.f >= prev.f)) {
            lo = prev;
            hi = cur;
            bracket = 1;
        } else if (fabs(cur.gd) <= -c2 * gd0) {
            found = 1;
        } else if (cur.gd >= 0.0) {
            lo = cur;
            hi = prev;
            bracket = 1;
        } else {
            double step = cubic_min(prev.a, prev.f, prev.gd, cur.a, cur.f, cur.gd, a + 0.01 * (a - prev.a), a * 10.0);
            prev = cur;
            a = step;
        }
    }
    for (int it = 0; it < 25 && bracket && !found; it++) {
        double left = lo.a < hi.a ? lo.a : hi.a, right = lo.a < hi.a ? hi.a : lo.a, w = right - left;
        if (w * sqrt(dot(d, d, P)) < 1e-30) break;
        a = cubic_min(lo.a, lo.f, lo.gd, hi.a, hi.f, hi.gd, left + 0.1 * w, right - 0.1 * w);
        if ((st = ls_eval(t, p0, d, a, pt, gt, &cur))) return st;
        if (cur.f < *f1) {
            *f1 = cur.f;
            memcpy(p1, pt, P * sizeof *p1);
            memcpy(g1, gt, P * sizeof *g1);
        }
        if (cur.f > f0 + c1 * a * gd0 || cur.f >= lo.f) {
            hi = cur;
        } else {
            if (fabs(cur.gd) <= -c2 * gd0) found = 1;
            else if (cur.gd * (hi.a - lo.a) >= 0.0) hi = lo;
            lo = cur;
        }
    }
    return PM_OK;
}

typedef struct lbfgs_state {
    size_t P, m, count, head;
    double *s, *yv, *rho, *alpha;
} lbfgs_state;

/* d = -H g by the two-loop recursion over the stored pairs. */
static void lbfgs_direction(const lbfgs_state *L, const double *g, double *d)
{
    size_t P = L->P;
    for (size_t i = 0; i < P; i++) d[i] = -g[i];
    if (!L->count) return;
    for (size_t c = 0; c < L->count; c++) {
        size_t k = (L->head + L->m - 1 - c) % L->m;
        double a = L->rho[k] * dot(L->s + k * P, d, P);
        L->alpha[k] = a;
        for (size_t i = 0; i < P; i++) d[i] -= a * L->yv[k * P + i];
    }
    size_t newest = (L->head + L->m - 1) % L->m;
    double gamma = 1.0 / (L->rho[newest] * dot(L->yv + newest * P, L->yv + newest * P, P));
    for (size_t i = 0; i < P; i++) d[i] *= gamma;
    for (size_t c = L->count; c-- > 0;) {
        size_t k = (L->head + L->m - 1 - c) % L->m;
        double b = L->rho[k] * dot(L->yv + k * P, d, P);
        for (size_t i = 0; i < P; i++) d[i] += (L->alpha[k] - b) * L->s[k * P + i];
    }
}

static void progress(trainer *t, uint32_t step, double loss, int force)
{
    const pm_kan_train_opts *o = t->o;
    if (!o->progress || !o->log_every || (!force && step % o->log_every)) return;
    double train = NAN, test = NAN;
    pm_kan_rmse(t->net, t->x, t->y, t->n, &train, NULL);
    if (o->test_x && o->test_n) pm_kan_rmse(t->net, o->test_x, o->test_y, o->test_n, &test, NULL);
    o->progress(o->progress_user, step, loss, train, test);
}

static int grid_due(const pm_kan_train_opts *o, uint32_t step)
{
    return o->grid_update_every && step < o->grid_update_stop && step % o->grid_update_every == 0;
}

/* Vectors sized to the current parameter count (re-gridding can change it). */
typedef struct work {
    size_t P;
    double *g, *d, *p1, *g1, *pt, *gt, *m1, *m2;
} work;

static void work_free(work *w)
{
    double **v[] = {&w->g, &w->d, &w->p1, &w->g1, &w->pt, &w->gt, &w->m1, &w->m2};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        free(*v[i]);
        *v[i] = NULL;
    }
    w->P = 0;
}

static int work_alloc(work *w, size_t P)
{
    work_free(w);
    w->P = P;
    double **v[] = {&w->g, &w->d, &w->p1, &w->g1, &w->pt, &w->gt, &w->m1, &w->m2};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        if (!(*v[i] = calloc(P + 1, sizeof(double)))) return -1;
    return 0;
}

static void lbfgs_free(lbfgs_state *L)
{
    free(L->s);
    free(L->yv);
    free(L->rho);
    free(L->alpha);
    memset(L, 0, sizeof *L);
}

static int lbfgs_alloc(lbfgs_state *L, size_t P, size_t m)
{
    lbfgs_free(L);
    L->P = P;
    L->m = m;
    L->s = calloc(m * P + 1, sizeof(double));
    L->yv = calloc(m * P + 1, sizeof(double));
    L->rho = calloc(m, sizeof(double));
    L->alpha = calloc(m, sizeof(double));
    return L->s && L->yv && L->rho && L->alpha ? 0 : -1;
}

/* One L-BFGS iteration from params (loss f, gradient w->g): direction by
 * the two-loop recursion, strong-Wolfe line search, history update. *stop
 * becomes 1 when the iteration made no progress, 2 at a zero gradient. */
static pm_status lbfgs_iteration(trainer *t, lbfgs_state *L, work *w, double *f, int *stop)
{
    const pm_kan_train_opts *o = t->o;
    pm_kan *net = t->net;
    size_t P = w->P;
    double gmax = 0.0;
    for (size_t i = 0; i < P; i++) gmax = fmax(gmax, fabs(w->g[i]));
    if (gmax == 0.0) {
        *stop = 2;
        return PM_OK;
    }
    lbfgs_direction(L, w->g, w->d);
    if (!(dot(w->g, w->d, P) < 0.0)) { /* not a descent direction: drop the history */
        L->count = 0;
        for (size_t i = 0; i < P; i++) w->d[i] = -w->g[i];
    }
    double a1 = o->lr;
    if (!L->count) { /* no curvature known yet: a step of at most lr in the L1 norm (torch) */
        double l1 = 0.0;
        for (size_t i = 0; i < P; i++) l1 += fabs(w->g[i]);
        a1 = fmin(1.0, 1.0 / l1) * o->lr;
    }
    memcpy(w->m1, net->params, P * sizeof *w->m1); /* the start point */
    double f1;
    pm_status st = strong_wolfe(t, w->m1, *f, w->g, w->d, a1, w->p1, w->g1, &f1, w->pt, w->gt);
    if (st) return st;
    memcpy(net->params, w->p1, P * sizeof *w->p1);
    size_t k = L->head;
    double ys = 0.0;
    for (size_t i = 0; i < P; i++) {
        L->s[k * P + i] = w->p1[i] - w->m1[i];
        L->yv[k * P + i] = w->g1[i] - w->g[i];
        ys += L->s[k * P + i] * L->yv[k * P + i];
    }
    if (ys > 1e-300) { /* keep the pair only with positive curvature */
        L->rho[k] = 1.0 / ys;
        L->head = (L->head + 1) % L->m;
        if (L->count < L->m) L->count++;
    }
    if (!(f1 < *f)) {
        if (!L->count) *stop = 1; /* steepest descent found nothing either */
        L->count = 0;             /* retry once from steepest descent */
    }
    memcpy(w->g, w->g1, P * sizeof *w->g);
    *f = f1;
    return PM_OK;
}

pm_status pm_kan_train(pm_kan *net, const double *x, const double *y, size_t n, const pm_kan_train_opts *o,
                       double *final_loss, pm_error *err)
{
    if (!net || !net->params || !x || !y || !o || !n) return pm_error_set(err, PM_ERR_INVALID, "kan train: missing network, data or options");
    if (o->optimizer != PM_KAN_LBFGS && o->optimizer != PM_KAN_ADAM)
        return pm_error_set(err, PM_ERR_INVALID, "kan train: optimizer %d is not lbfgs (0) or adam (1)", (int)o->optimizer);
    if (!(o->lr > 0.0)) return pm_error_set(err, PM_ERR_INVALID, "kan train: learning rate %g must be > 0", o->lr);
    trainer t = {net, x, y, n, o, err, 0};
    work w = {0};
    lbfgs_state L = {0};
    size_t hist = o->history ? o->history : 10;
    pm_status st = PM_OK;
    double f = 0.0;
    int fresh = 1;
    for (uint32_t step = 0; step < o->steps && !st; step++) {
        if (grid_due(o, step)) {
            if ((st = pm_kan_update_grid(net, x, n, o->grid_eps, o->grid_margin, err))) break;
            fresh = 1;
        }
        if (fresh) { /* (re)start: buffers for the current size, empty history */
            if (work_alloc(&w, net->param_count) || lbfgs_alloc(&L, net->param_count, hist)) {
                st = pm_error_set(err, PM_ERR_NOMEM, "kan train: no memory for optimiser state");
                break;
            }
            if ((st = evaluate(&t, net->params, &f, w.g))) break;
            fresh = 0;
        }
        size_t P = w.P;
        if (o->optimizer == PM_KAN_ADAM) {
            const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
            double c1 = 1.0 - pow(b1, step + 1.0), c2 = 1.0 - pow(b2, step + 1.0);
            for (size_t i = 0; i < P; i++) {
                w.m1[i] = b1 * w.m1[i] + (1.0 - b1) * w.g[i];
                w.m2[i] = b2 * w.m2[i] + (1.0 - b2) * w.g[i] * w.g[i];
                net->params[i] -= o->lr * (w.m1[i] / c1) / (sqrt(w.m2[i] / c2) + eps);
            }
            st = evaluate(&t, net->params, &f, w.g);
        } else {
            /* One pykan/torch L-BFGS step: up to lbfgs_iters iterations and
             * 1.25x as many loss evaluations. */
            size_t budget = t.evals + (size_t)(o->lbfgs_iters ? o->lbfgs_iters : 20) * 5 / 4;
            int stop = 0;
            for (uint32_t it = 0; it < (o->lbfgs_iters ? o->lbfgs_iters : 20) && t.evals < budget && !st && !stop; it++)
                st = lbfgs_iteration(&t, &L, &w, &f, &stop);
            if (stop == 2) {
                progress(&t, step + 1, f, 1);
                break; /* a stationary point: nothing left to do */
            }
        }
        if (!st) progress(&t, step + 1, f, step + 1 == o->steps);
    }
    if (!st && final_loss) *final_loss = f;
    work_free(&w);
    lbfgs_free(&L);
    return st;
}

/* ---- pruning ---- */

pm_status pm_kan_prune(const pm_kan *net, const double *x, size_t n, double threshold, pm_kan *out, pm_error *err)
{
    if (!net || !net->params || !out) return pm_error_set(err, PM_ERR_INVALID, "kan prune: no network");
    size_t total = 0, offs[PM_KAN_MAX_LAYERS];
    for (uint32_t l = 0; l < net->depth; l++) {
        offs[l] = total;
        total += (size_t)net->width[l] * net->width[l + 1];
    }
    double *score = malloc(total * sizeof *score + 1);
    if (!score) return pm_error_set(err, PM_ERR_NOMEM, "kan prune: no memory");
    pm_status st = pm_kan_edge_scores(net, x, n, score, err);
    if (st) {
        free(score);
        return st;
    }
    /* keep[l][j]: node j of layer boundary l survives (inputs and outputs always do). */
    uint32_t *keep[PM_KAN_MAX_LAYERS + 1] = {0}, kept[PM_KAN_MAX_LAYERS + 1];
    for (uint32_t l = 0; l <= net->depth && !st; l++) {
        keep[l] = malloc(net->width[l] * sizeof(uint32_t));
        if (!keep[l]) st = pm_error_set(err, PM_ERR_NOMEM, "kan prune: no memory");
        kept[l] = 0;
        for (uint32_t j = 0; !st && j < net->width[l]; j++) {
            int ok = 1;
            if (l > 0 && l < net->depth) {
                double in = 0.0, outs = 0.0;
                for (uint32_t i = 0; i < net->width[l - 1]; i++) in = fmax(in, score[offs[l - 1] + (size_t)i * net->width[l] + j]);
                for (uint32_t m = 0; m < net->width[l + 1]; m++) outs = fmax(outs, score[offs[l] + (size_t)j * net->width[l + 1] + m]);
                ok = in > threshold && outs > threshold;
            }
            if (ok) keep[l][kept[l]++] = j;
        }
        if (!st && kept[l] == 0) { /* keep the strongest node so the network stays connected */
            double best = -1.0;
            uint32_t bj = 0;
            for (uint32_t j = 0; j < net->width[l]; j++) {
                double s = 0.0;
                for (uint32_t i = 0; i < net->width[l - 1]; i++) s = fmax(s, score[offs[l - 1] + (size_t)i * net->width[l] + j]);
                if (s > best) best = s, bj = j;
            }
            keep[l][kept[l]++] = bj;
        }
    }
    if (!st) {
        uint32_t grids[PM_KAN_MAX_LAYERS];
        for (uint32_t l = 0; l < net->depth; l++) grids[l] = net->layer[l].grid;
        st = pm_kan_allocate(out, net->depth, kept, grids, net->layer[0].order, err);
    }
    for (uint32_t l = 0; !st && l < net->depth; l++) {
        const pm_kan_layer *S = &net->layer[l];
        pm_kan_layer *D = &out->layer[l];
        size_t nk = pm_kan_knot_count(S->grid, S->order), nb = pm_kan_basis_count(S->grid, S->order);
        for (uint32_t a = 0; a < D->in; a++) {
            uint32_t i = keep[l][a];
            memcpy(D->knots + a * nk, S->knots + i * nk, nk * sizeof(double));
            for (uint32_t b = 0; b < D->out; b++) {
                uint32_t j = keep[l + 1][b];
                size_t se = (size_t)i * S->out + j, de = (size_t)a * D->out + b;
                memcpy(D->coef + de * nb, S->coef + se * nb, nb * sizeof(double));
                D->scale_base[de] = S->scale_base[se];
                D->scale_sp[de] = S->scale_sp[se];
            }
        }
    }
    for (uint32_t l = 0; l <= net->depth; l++) free(keep[l]);
    free(score);
    return st;
}
