/* KAN networks: construction with pykan's initialisation, the batch forward
 * pass and the exact backward pass (analytic gradients of the loss, with
 * pykan's L1/entropy/coefficient regularisation), all in double precision. */
#include "kan_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- random numbers: splitmix64, one state per caller ---- */

void pm_kan_rng_seed(pm_kan_rng *r, uint64_t seed) { r->state = seed ^ 0x6a09e667f3bcc909ull; }

uint64_t pm_kan_rng_next(pm_kan_rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double pm_kan_rng_uniform(pm_kan_rng *r) { return (double)(pm_kan_rng_next(r) >> 11) * 0x1p-53; }

/* ---- construction ---- */

void pm_kan_init_defaults(pm_kan_init *o)
{
    memset(o, 0, sizeof *o);
    o->grid = 5;
    o->order = 3;
    o->grid_min = -1.0;
    o->grid_max = 1.0;
    o->noise_scale = 0.5;
    o->base_mu = 0.0;
    o->base_sigma = 1.0;
    o->sp_scale = 1.0;
    o->seed = 0;
}

static size_t layer_param_count(uint32_t in, uint32_t out, uint32_t grid, uint32_t order)
{
    return (size_t)in * out * (pm_kan_basis_count(grid, order) + 2u);
}

void pm_kan_bind(pm_kan *net)
{
    size_t off = 0;
    for (uint32_t l = 0; l < net->depth; l++) {
        pm_kan_layer *L = &net->layer[l];
        size_t edges = (size_t)L->in * L->out;
        L->param_offset = off;
        L->coef = net->params + off;
        L->scale_base = L->coef + edges * pm_kan_basis_count(L->grid, L->order);
        L->scale_sp = L->scale_base + edges;
        off += layer_param_count(L->in, L->out, L->grid, L->order);
    }
}

/* Uniform knots over [lo, hi] with `order` more of the same width each side. */
static void uniform_knots(double *t, uint32_t grid, uint32_t order, double lo, double hi)
{
    double h = (hi - lo) / grid;
    for (uint32_t j = 0; j < pm_kan_knot_count(grid, order); j++) t[j] = lo + ((double)j - (double)order) * h;
}

/* Allocates the knots and params of a network of this shape (zeroed). */
pm_status pm_kan_allocate(pm_kan *net, uint32_t depth, const uint32_t *width, const uint32_t *grid, uint32_t order,
                          pm_error *err)
{
    memset(net, 0, sizeof *net);
    if (depth < 1 || depth > PM_KAN_MAX_LAYERS)
        return pm_error_set(err, PM_ERR_INVALID, "kan: %u layers, must be 1..%d", depth, PM_KAN_MAX_LAYERS);
    if (order < 1 || order > PM_KAN_MAX_ORDER)
        return pm_error_set(err, PM_ERR_INVALID, "kan: spline order %u, must be 1..%d", order, PM_KAN_MAX_ORDER);
    size_t params = 0;
    for (uint32_t l = 0; l <= depth; l++)
        if (width[l] < 1 || width[l] > PM_KAN_MAX_WIDTH)
            return pm_error_set(err, PM_ERR_INVALID, "kan: width[%u] = %u, must be 1..%d", l, width[l], PM_KAN_MAX_WIDTH);
    for (uint32_t l = 0; l < depth; l++) {
        if (grid[l] < 1 || grid[l] > PM_KAN_MAX_GRID)
            return pm_error_set(err, PM_ERR_INVALID, "kan: layer %u grid %u, must be 1..%d", l, grid[l], PM_KAN_MAX_GRID);
        params += layer_param_count(width[l], width[l + 1], grid[l], order);
    }
    net->depth = depth;
    memcpy(net->width, width, (depth + 1) * sizeof *width);
    net->params = calloc(params ? params : 1, sizeof *net->params);
    net->param_count = params;
    if (!net->params) return pm_error_set(err, PM_ERR_NOMEM, "kan: no memory for %zu parameters", params);
    for (uint32_t l = 0; l < depth; l++) {
        pm_kan_layer *L = &net->layer[l];
        L->in = width[l];
        L->out = width[l + 1];
        L->grid = grid[l];
        L->order = order;
        L->knots = calloc((size_t)L->in * pm_kan_knot_count(L->grid, order), sizeof *L->knots);
        if (!L->knots) {
            pm_kan_free(net);
            return pm_error_set(err, PM_ERR_NOMEM, "kan: no memory for layer %u knots", l);
        }
    }
    pm_kan_bind(net);
    return PM_OK;
}

void pm_kan_free(pm_kan *net)
{
    if (!net) return;
    for (uint32_t l = 0; l < net->depth && l < PM_KAN_MAX_LAYERS; l++) free(net->layer[l].knots);
    free(net->params);
    memset(net, 0, sizeof *net);
}

pm_status pm_kan_create(pm_kan *net, uint32_t depth, const uint32_t *width, const pm_kan_init *o, pm_error *err)
{
    if (!net || !width) return pm_error_set(err, PM_ERR_INVALID, "kan create: NULL argument");
    pm_kan_init def;
    if (!o) {
        pm_kan_init_defaults(&def);
        o = &def;
    }
    if (!(o->grid_min < o->grid_max) || o->grid_max - o->grid_min != o->grid_max - o->grid_min)
        return pm_error_set(err, PM_ERR_INVALID, "kan create: grid range [%g, %g] is empty", o->grid_min, o->grid_max);
    uint32_t grids[PM_KAN_MAX_LAYERS];
    for (uint32_t l = 0; l < PM_KAN_MAX_LAYERS; l++) grids[l] = o->grid;
    pm_status st = pm_kan_allocate(net, depth, width, grids, o->order, err);
    if (st) return st;
    pm_kan_rng rng;
    pm_kan_rng_seed(&rng, o->seed);
    for (uint32_t l = 0; l < depth; l++) {
        pm_kan_layer *L = &net->layer[l];
        uint32_t G = L->grid, k = L->order, nk = pm_kan_knot_count(G, k), nb = pm_kan_basis_count(G, k);
        for (uint32_t i = 0; i < L->in; i++) uniform_knots(L->knots + (size_t)i * nk, G, k, o->grid_min, o->grid_max);
        /* pykan: noise (u - 1/2) * noise_scale / G at the G+1 grid points,
         * fitted into coefficients by least squares. */
        double xs[PM_KAN_MAX_GRID + 1], ys[PM_KAN_MAX_GRID + 1];
        for (uint32_t g = 0; g <= G; g++) xs[g] = L->knots[k + g];
        double inv_sqrt_in = 1.0 / sqrt((double)L->in);
        for (uint32_t i = 0; i < L->in; i++)
            for (uint32_t j = 0; j < L->out; j++) {
                for (uint32_t g = 0; g <= G; g++) ys[g] = (pm_kan_rng_uniform(&rng) - 0.5) * o->noise_scale / G;
                /* The last grid point sits on t_{G+k}, inside [t_0, t_{G+2k}). */
                st = pm_kan_curve2coef(L->knots + (size_t)i * nk, G, k, xs, ys, G + 1,
                                       L->coef + ((size_t)i * L->out + j) * nb, err);
                if (st) {
                    pm_kan_free(net);
                    return st;
                }
                size_t e = (size_t)i * L->out + j;
                L->scale_base[e] = (o->base_mu + o->base_sigma * (2.0 * pm_kan_rng_uniform(&rng) - 1.0)) * inv_sqrt_in;
                L->scale_sp[e] = o->sp_scale * inv_sqrt_in;
            }
    }
    return PM_OK;
}

pm_status pm_kan_copy(pm_kan *dst, const pm_kan *src, pm_error *err)
{
    if (!dst || !src) return pm_error_set(err, PM_ERR_INVALID, "kan copy: NULL argument");
    uint32_t grids[PM_KAN_MAX_LAYERS];
    for (uint32_t l = 0; l < src->depth; l++) grids[l] = src->layer[l].grid;
    pm_status st = pm_kan_allocate(dst, src->depth, src->width, grids, src->layer[0].order, err);
    if (st) return st;
    memcpy(dst->params, src->params, src->param_count * sizeof *src->params);
    for (uint32_t l = 0; l < src->depth; l++)
        memcpy(dst->layer[l].knots, src->layer[l].knots,
               (size_t)src->layer[l].in * pm_kan_knot_count(src->layer[l].grid, src->layer[l].order) * sizeof(double));
    return PM_OK;
}

size_t pm_kan_spline_params(const pm_kan *net)
{
    size_t n = 0;
    for (uint32_t l = 0; l < net->depth; l++) {
        const pm_kan_layer *L = &net->layer[l];
        n += (size_t)L->in * L->out * pm_kan_basis_count(L->grid, L->order);
    }
    return n;
}

/* ---- forward ---- */

/* phi_ij(x) for one edge; dphi (may be NULL) gets d phi / d x. */
static double edge_eval(const pm_kan_layer *L, uint32_t i, uint32_t j, double x, double *dphi)
{
    uint32_t nk = pm_kan_knot_count(L->grid, L->order), nb = pm_kan_basis_count(L->grid, L->order);
    size_t e = (size_t)i * L->out + j;
    const double *c = L->coef + e * nb;
    double B[PM_KAN_MAX_ORDER + 1], dB[PM_KAN_MAX_ORDER + 1], spline = 0.0, dspline = 0.0;
    int first;
    if (pm_kan_basis_local(L->knots + (size_t)i * nk, L->grid, L->order, x, &first, B, dphi ? dB : NULL))
        for (uint32_t m = 0; m <= L->order; m++) {
            int idx = first + (int)m;
            if (idx < 0 || idx >= (int)nb) continue;
            spline += c[idx] * B[m];
            if (dphi) dspline += c[idx] * dB[m];
        }
    if (dphi) *dphi = L->scale_base[e] * pm_kan_silu_grad(x) + L->scale_sp[e] * dspline;
    return L->scale_base[e] * pm_kan_silu(x) + L->scale_sp[e] * spline;
}

static pm_status check_net(const pm_kan *net, const char *what, pm_error *err)
{
    if (!net || !net->params || net->depth < 1 || net->depth > PM_KAN_MAX_LAYERS)
        return pm_error_set(err, PM_ERR_INVALID, "kan %s: no network", what);
    return PM_OK;
}

static size_t max_width(const pm_kan *net)
{
    size_t w = 0;
    for (uint32_t l = 0; l <= net->depth; l++)
        if (net->width[l] > w) w = net->width[l];
    return w;
}

pm_status pm_kan_forward(const pm_kan *net, const double *x, size_t n, double *y, pm_error *err)
{
    pm_status st = check_net(net, "forward", err);
    if (st) return st;
    if (n && (!x || !y)) return pm_error_set(err, PM_ERR_INVALID, "kan forward: NULL data");
    size_t w = max_width(net);
    double *a = malloc(2 * w * sizeof *a);
    if (!a) return pm_error_set(err, PM_ERR_NOMEM, "kan forward: no memory");
    for (size_t s = 0; s < n; s++) {
        double *cur = a, *next = a + w;
        memcpy(cur, x + s * net->width[0], net->width[0] * sizeof *cur);
        for (uint32_t l = 0; l < net->depth; l++) {
            const pm_kan_layer *L = &net->layer[l];
            for (uint32_t j = 0; j < L->out; j++) next[j] = 0.0;
            for (uint32_t i = 0; i < L->in; i++)
                for (uint32_t j = 0; j < L->out; j++) next[j] += edge_eval(L, i, j, cur[i], NULL);
            double *tmp = cur;
            cur = next;
            next = tmp;
        }
        memcpy(y + s * net->width[net->depth], cur, net->width[net->depth] * sizeof *cur);
    }
    free(a);
    return PM_OK;
}

pm_status pm_kan_rmse(const pm_kan *net, const double *x, const double *y, size_t n, double *rmse, pm_error *err)
{
    pm_status st = check_net(net, "rmse", err);
    if (st) return st;
    size_t outs = net->width[net->depth];
    double *p = malloc((n * outs + 1) * sizeof *p);
    if (!p) return pm_error_set(err, PM_ERR_NOMEM, "kan rmse: no memory");
    st = pm_kan_forward(net, x, n, p, err);
    double sum = 0.0;
    for (size_t i = 0; !st && i < n * outs; i++) sum += (p[i] - y[i]) * (p[i] - y[i]);
    free(p);
    if (!st) *rmse = n ? sqrt(sum / (double)(n * outs)) : 0.0;
    return st;
}

/* ---- edge scores and regularisation ---- */

/* acts[l] holds every layer's input activations, [n][width[l]]. */
/* phi_ij(x) for every output j of input i: the same arithmetic as edge_eval
 * edge by edge, with the B-spline basis (shared by input i's edges: they
 * have one grid) and SiLU computed once. */
static void input_edges(const pm_kan_layer *L, uint32_t i, double x, double *phi)
{
    uint32_t nk = pm_kan_knot_count(L->grid, L->order), nb = pm_kan_basis_count(L->grid, L->order);
    double B[PM_KAN_MAX_ORDER + 1];
    int first;
    int inside = pm_kan_basis_local(L->knots + (size_t)i * nk, L->grid, L->order, x, &first, B, NULL);
    double silu = pm_kan_silu(x);
    for (uint32_t j = 0; j < L->out; j++) {
        size_t e = (size_t)i * L->out + j;
        const double *c = L->coef + e * nb;
        double spline = 0.0;
        if (inside)
            for (uint32_t m = 0; m <= L->order; m++) {
                int idx = first + (int)m;
                if (idx < 0 || idx >= (int)nb) continue;
                spline += c[idx] * B[m];
            }
        phi[j] = L->scale_base[e] * silu + L->scale_sp[e] * spline;
    }
}

static pm_status forward_acts(const pm_kan *net, const double *x, size_t n, double **acts, pm_error *err)
{
    size_t total = 0;
    for (uint32_t l = 0; l <= net->depth; l++) total += n * net->width[l];
    double *buf = malloc((total + 1) * sizeof *buf);
    if (!buf) return pm_error_set(err, PM_ERR_NOMEM, "kan: no memory for %zu activations", total);
    memcpy(buf, x, n * net->width[0] * sizeof *buf);
    double *cur = buf;
    for (uint32_t l = 0; l < net->depth; l++) {
        const pm_kan_layer *L = &net->layer[l];
        double *next = cur + n * L->in;
        double phi[PM_KAN_MAX_WIDTH];
        for (size_t s = 0; s < n; s++) {
            double *o = next + s * L->out;
            for (uint32_t j = 0; j < L->out; j++) o[j] = 0.0;
            for (uint32_t i = 0; i < L->in; i++) {
                input_edges(L, i, cur[s * L->in + i], phi);
                for (uint32_t j = 0; j < L->out; j++) o[j] += phi[j];
            }
        }
        cur = next;
    }
    *acts = buf;
    return PM_OK;
}

pm_status pm_kan_edge_scores(const pm_kan *net, const double *x, size_t n, double *scores, pm_error *err)
{
    pm_status st = check_net(net, "edge scores", err);
    if (st) return st;
    double *acts;
    if ((st = forward_acts(net, x, n, &acts, err))) return st;
    const double *cur = acts;
    for (uint32_t l = 0; l < net->depth; l++) {
        const pm_kan_layer *L = &net->layer[l];
        for (uint32_t i = 0; i < L->in; i++)
            for (uint32_t j = 0; j < L->out; j++) {
                double sum = 0.0;
                for (size_t s = 0; s < n; s++) sum += fabs(edge_eval(L, i, j, cur[s * L->in + i], NULL));
                scores[(size_t)i * L->out + j] = n ? sum / (double)n : 0.0;
            }
        scores += (size_t)L->in * L->out;
        cur += n * L->in;
    }
    free(acts);
    return PM_OK;
}

/* d reg / d A_ij for one layer's scores A (l1 + entropy parts), and the
 * layer's reg value. */
static double act_reg(const pm_kan_reg *r, const double *A, size_t edges, double *dA)
{
    double total = 0.0;
    for (size_t e = 0; e < edges; e++) total += A[e];
    double entropy = 0.0;
    if (total > 0.0)
        for (size_t e = 0; e < edges; e++) {
            double p = A[e] / total;
            if (p > 0.0) entropy -= p * log(p);
        }
    for (size_t e = 0; e < edges; e++) {
        double d = r->lamb_l1;
        if (total > 0.0 && A[e] > 0.0) d += r->lamb_entropy * (-log(A[e] / total) - entropy) / total;
        dA[e] = d;
    }
    return r->lamb_l1 * total + r->lamb_entropy * entropy;
}

static double sign_of(double v) { return v > 0.0 ? 1.0 : v < 0.0 ? -1.0 : 0.0; }

/* ---- loss and exact gradient ---- */

pm_status pm_kan_loss_grad(const pm_kan *net, const double *x, const double *target, size_t n, const pm_kan_reg *reg,
                           double *loss, double *grad, pm_error *err)
{
    pm_status st = check_net(net, "loss", err);
    if (st) return st;
    if (!n || !x || !target) return pm_error_set(err, PM_ERR_INVALID, "kan loss: empty batch");
    int use_act_reg = reg && reg->lamb != 0.0 && (reg->lamb_l1 != 0.0 || reg->lamb_entropy != 0.0);
    double *acts;
    if ((st = forward_acts(net, x, n, &acts, err))) return st;
    size_t offs[PM_KAN_MAX_LAYERS + 1];
    offs[0] = 0;
    for (uint32_t l = 0; l < net->depth; l++) offs[l + 1] = offs[l] + n * net->width[l];
    uint32_t L_last = net->depth;
    size_t outs = net->width[L_last];
    const double *pred = acts + offs[L_last];
    double mse = 0.0;
    for (size_t i = 0; i < n * outs; i++) mse += (pred[i] - target[i]) * (pred[i] - target[i]);
    mse /= (double)(n * outs);
    double total = mse;

    size_t w = max_width(net);
    double *gy = NULL, *gx = NULL, *dA = NULL, *A = NULL;
    size_t max_edges = 0;
    for (uint32_t l = 0; l < net->depth; l++)
        if ((size_t)net->width[l] * net->width[l + 1] > max_edges) max_edges = (size_t)net->width[l] * net->width[l + 1];
    gy = calloc(n * w + 1, sizeof *gy);
    gx = calloc(n * w + 1, sizeof *gx);
    A = calloc(2 * max_edges + 1, sizeof *A);
    if (!gy || !gx || !A) {
        free(acts);
        free(gy);
        free(gx);
        free(A);
        return pm_error_set(err, PM_ERR_NOMEM, "kan loss: no memory for gradients");
    }
    dA = A + max_edges;
    if (grad) memset(grad, 0, net->param_count * sizeof *grad);
    for (size_t i = 0; i < n * outs; i++) gy[i] = 2.0 * (pred[i] - target[i]) / (double)(n * outs);

    /* Coefficient regularisation: value always, gradient when wanted. */
    if (reg && reg->lamb != 0.0 && (reg->lamb_coef != 0.0 || reg->lamb_coefdiff != 0.0)) {
        for (uint32_t l = 0; l < net->depth; l++) {
            const pm_kan_layer *L = &net->layer[l];
            size_t nb = pm_kan_basis_count(L->grid, L->order), edges = (size_t)L->in * L->out;
            double *g = grad ? grad + L->param_offset : NULL;
            for (size_t e = 0; e < edges; e++) {
                const double *c = L->coef + e * nb;
                for (size_t m = 0; m < nb; m++) {
                    total += reg->lamb * reg->lamb_coef * fabs(c[m]);
                    if (g) g[e * nb + m] += reg->lamb * reg->lamb_coef * sign_of(c[m]);
                    if (m + 1 < nb) {
                        double d = c[m + 1] - c[m];
                        total += reg->lamb * reg->lamb_coefdiff * fabs(d);
                        if (g) {
                            g[e * nb + m + 1] += reg->lamb * reg->lamb_coefdiff * sign_of(d);
                            g[e * nb + m] -= reg->lamb * reg->lamb_coefdiff * sign_of(d);
                        }
                    }
                }
            }
        }
    }

    if (reg && reg->lamb_smooth != 0.0) {
        for (uint32_t l = 0; l < net->depth; l++) {
            const pm_kan_layer *L = &net->layer[l];
            size_t nb = pm_kan_basis_count(L->grid, L->order), edges = (size_t)L->in * L->out;
            double D[PM_KAN_MAX_ORDER + 2];
            uint32_t d = pm_kan_difference(L->order, D);
            double *gc = grad ? grad + L->param_offset : NULL, *gs = gc ? gc + edges * nb + edges : NULL;
            for (size_t e = 0; e < edges; e++) {
                const double *c = L->coef + e * nb;
                double ws = L->scale_sp[e], sum = 0.0;
                for (size_t m = 0; m + d < nb; m++) {
                    double diff = 0.0;
                    for (uint32_t q = 0; q <= d; q++) diff += D[q] * c[m + q];
                    sum += diff * diff;
                    if (gc)
                        for (uint32_t q = 0; q <= d; q++) gc[e * nb + m + q] += 2.0 * reg->lamb_smooth * ws * ws * diff * D[q];
                }
                total += reg->lamb_smooth * ws * ws * sum;
                if (gs) gs[e] += 2.0 * reg->lamb_smooth * ws * sum;
            }
        }
    }

    /* Backward, last layer first. gphi_ij(s) = gy[s][j] + lamb*dA_ij*sign(phi)/n. */
    for (uint32_t l = net->depth; l-- > 0;) {
        const pm_kan_layer *L = &net->layer[l];
        const double *xin = acts + offs[l];
        size_t nb = pm_kan_basis_count(L->grid, L->order), nk = pm_kan_knot_count(L->grid, L->order);
        size_t edges = (size_t)L->in * L->out;
        if (use_act_reg) {
            for (uint32_t i = 0; i < L->in; i++)
                for (uint32_t j = 0; j < L->out; j++) {
                    double sum = 0.0;
                    for (size_t s = 0; s < n; s++) sum += fabs(edge_eval(L, i, j, xin[s * L->in + i], NULL));
                    A[(size_t)i * L->out + j] = sum / (double)n;
                }
            total += reg->lamb * act_reg(reg, A, edges, dA);
        }
        memset(gx, 0, n * L->in * sizeof *gx);
        double *gc = grad ? grad + L->param_offset : NULL;
        double *gb = gc ? gc + edges * nb : NULL, *gs = gb ? gb + edges : NULL;
        for (size_t s = 0; s < n; s++)
            for (uint32_t i = 0; i < L->in; i++) {
                double xv = xin[s * L->in + i];
                double B[PM_KAN_MAX_ORDER + 1], dB[PM_KAN_MAX_ORDER + 1];
                int first;
                int inside = pm_kan_basis_local(L->knots + i * nk, L->grid, L->order, xv, &first, B, dB);
                double silu = pm_kan_silu(xv), dsilu = pm_kan_silu_grad(xv);
                for (uint32_t j = 0; j < L->out; j++) {
                    size_t e = (size_t)i * L->out + j;
                    const double *c = L->coef + e * nb;
                    double spline = 0.0, dspline = 0.0;
                    if (inside)
                        for (uint32_t m = 0; m <= L->order; m++) {
                            int idx = first + (int)m;
                            if (idx < 0 || idx >= (int)nb) continue;
                            spline += c[idx] * B[m];
                            dspline += c[idx] * dB[m];
                        }
                    double g = gy[s * L->out + j];
                    if (use_act_reg) {
                        double phi = L->scale_base[e] * silu + L->scale_sp[e] * spline;
                        g += reg->lamb * dA[e] * sign_of(phi) / (double)n;
                    }
                    if (g == 0.0) continue;
                    if (gc) {
                        gb[e] += g * silu;
                        gs[e] += g * spline;
                        if (inside)
                            for (uint32_t m = 0; m <= L->order; m++) {
                                int idx = first + (int)m;
                                if (idx >= 0 && idx < (int)nb) gc[e * nb + (size_t)idx] += g * L->scale_sp[e] * B[m];
                            }
                    }
                    gx[s * L->in + i] += g * (L->scale_base[e] * dsilu + L->scale_sp[e] * dspline);
                }
            }
        double *tmp = gy;
        gy = gx;
        gx = tmp;
    }
    free(acts);
    free(gy);
    free(gx);
    free(A);
    *loss = total;
    return PM_OK;
}
