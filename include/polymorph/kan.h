/* Polymorph KAN layer: Kolmogorov-Arnold networks trained in C (double
 * precision, pykan's semantics) and exported edge by edge to LFU tables, so
 * a KAN runs on the engine's LFUs. docs/kan.md has the definitions, the
 * training recipe, the file formats and measured accuracy. */
#ifndef POLYMORPH_KAN_H
#define POLYMORPH_KAN_H

#include "polymorph/base.h"
#include "polymorph/lfu.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PM_KAN_MAX_LAYERS 16
#define PM_KAN_MAX_WIDTH 4096
#define PM_KAN_MAX_GRID 1024
#define PM_KAN_MAX_ORDER 3 /* the LFU's polynomial degree bounds the spline order */
/* Non-uniform grids (grid_eps < 1) put their knots on a uniform lattice of
 * this many cells per mean grid interval, so they still export exactly. */
#define PM_KAN_LATTICE 4

/* ---- deterministic random numbers (no global state) ---- */
typedef struct pm_kan_rng {
    uint64_t state;
} pm_kan_rng;

void pm_kan_rng_seed(pm_kan_rng *r, uint64_t seed);
uint64_t pm_kan_rng_next(pm_kan_rng *r);
double pm_kan_rng_uniform(pm_kan_rng *r); /* [0, 1), 53 random bits */

/* ---- B-splines ----
 * An extended knot vector of a grid of G intervals and order k has
 * G + 2k + 1 knots t_0..t_{G+2k}; the G + k basis functions B_0..B_{G+k-1}
 * (Cox-de Boor, half-open intervals [t_j, t_{j+1})) are zero outside
 * [t_0, t_{G+2k}). pm_kan_bspline_basis writes all G + k values at x. */
pm_status pm_kan_bspline_basis(const double *knots, uint32_t grid, uint32_t order, double x, double *out,
                               pm_error *err);

/* ---- the network ----
 * Edge (i -> j) of a layer with `in` inputs and `out` outputs:
 *   phi_ij(x) = scale_base[i][j] * silu(x) + scale_sp[i][j] * sum_m coef[i][j][m] * B_m(x)
 * on input i's knots; node j of the next layer is y_j = sum_i phi_ij(x_i).
 * All trainable numbers of a network live in one array, `params`, layer
 * after layer, each layer as coef[in][out][G+k], then scale_base[in][out],
 * then scale_sp[in][out]; gradients use the same layout. */
typedef struct pm_kan_layer {
    uint32_t in, out;
    uint32_t grid, order; /* G, k */
    double *knots;        /* [in][G + 2k + 1], owned by the network */
    double *coef;         /* views into pm_kan.params */
    double *scale_base;
    double *scale_sp;
    size_t param_offset;  /* where this layer starts in params */
} pm_kan_layer;

typedef struct pm_kan {
    uint32_t depth;                          /* number of layers L */
    uint32_t width[PM_KAN_MAX_LAYERS + 1];   /* n0 (inputs) .. nL (outputs) */
    pm_kan_layer layer[PM_KAN_MAX_LAYERS];
    double *params;
    size_t param_count;
} pm_kan;

typedef struct pm_kan_init {
    uint32_t grid;           /* G, default 5 */
    uint32_t order;          /* k, default 3 */
    double grid_min, grid_max; /* initial grid range, default [-1, 1] */
    double noise_scale;      /* spline coefficient noise, default 0.5 (pykan) */
    double base_mu, base_sigma; /* scale_base = (mu + sigma*(2u-1)) / sqrt(in), default 0, 1 */
    double sp_scale;         /* scale_sp = sp_scale / sqrt(in), default 1 */
    uint64_t seed;
} pm_kan_init;

void pm_kan_init_defaults(pm_kan_init *o);
pm_status pm_kan_create(pm_kan *net, uint32_t depth, const uint32_t *width, const pm_kan_init *o, pm_error *err);
void pm_kan_free(pm_kan *net);
pm_status pm_kan_copy(pm_kan *dst, const pm_kan *src, pm_error *err);
/* Number of trainable numbers pykan counts as the network's size:
 * sum over edges of (G + k) coefficients (the scales are not counted). */
size_t pm_kan_spline_params(const pm_kan *net);

/* Forward pass of a batch: x is [n][width[0]], y is [n][width[depth]]. */
pm_status pm_kan_forward(const pm_kan *net, const double *x, size_t n, double *y, pm_error *err);

/* ---- training ---- */

/* Regularisation (pykan's definitions; all 0 = off): with A_ij = mean over
 * the batch of |phi_ij| per edge, per layer l1 = sum A, entropy = -sum p log p
 * (p = A / sum A); coef = sum |c|; coefdiff = sum |c_{m+1} - c_m|:
 *   reg = lamb_l1*l1 + lamb_entropy*entropy + lamb_coef*coef + lamb_coefdiff*coefdiff
 * summed over layers; loss = mse + lamb * reg. */
typedef struct pm_kan_reg {
    double lamb, lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff;
    /* Not pykan: a P-spline term, added as is (not times lamb):
     * lamb_smooth * sum over edges and m of (scale_sp * Delta^{k+1} c_m)^2, the
     * (k+1)-th coefficient difference, which is ~0 on any smooth function
     * (its null space is the polynomials of degree k). Off by default (0,
     * pykan's objective); a small weight decides only the coefficients the
     * data leaves (almost) free: they continue the last determined piece. */
    double lamb_smooth;
} pm_kan_reg;

/* mse = mean over samples and outputs of (y - target)^2 (+ lamb*reg); grad
 * (param_count values, may be NULL) gets d loss / d params, exactly. */
pm_status pm_kan_loss_grad(const pm_kan *net, const double *x, const double *target, size_t n, const pm_kan_reg *reg,
                           double *loss, double *grad, pm_error *err);

typedef enum pm_kan_optimizer { PM_KAN_LBFGS = 0, PM_KAN_ADAM = 1 } pm_kan_optimizer;

typedef void (*pm_kan_progress_fn)(void *user, uint32_t step, double loss, double train_rmse, double test_rmse);

typedef struct pm_kan_train_opts {
    pm_kan_optimizer optimizer;
    uint32_t steps;           /* optimiser iterations */
    double lr;                /* Adam step (default 1e-2); L-BFGS initial step (default 1) */
    uint32_t history;         /* L-BFGS memory, default 10 */
    uint32_t lbfgs_iters;     /* L-BFGS iterations per step (pykan/torch max_iter), default 20 */
    pm_kan_reg reg;
    uint32_t grid_update_every; /* update grids from samples every this many steps (0: never) */
    uint32_t grid_update_stop;  /* ... while step < this */
    double grid_eps;          /* 1 = uniform grid over the samples' range (default), 0 = quantiles;
                               * non-uniform knots are snapped to a lattice (PM_KAN_LATTICE) */
    double grid_margin;       /* the grid range is the samples' [min, max] widened by this
                               * fraction of its width each side (default 0, as pykan) */
    uint32_t log_every;       /* progress callback period (0: never) */
    pm_kan_progress_fn progress;
    void *progress_user;
    const double *test_x, *test_y; /* optional test set for the progress line */
    size_t test_n;
} pm_kan_train_opts;

void pm_kan_train_defaults(pm_kan_train_opts *o);
/* Trains in place; *final_loss (may be NULL) is the last loss. */
pm_status pm_kan_train(pm_kan *net, const double *x, const double *y, size_t n, const pm_kan_train_opts *o,
                       double *final_loss, pm_error *err);

/* Root mean square error over every output of a batch. */
pm_status pm_kan_rmse(const pm_kan *net, const double *x, const double *y, size_t n, double *rmse, pm_error *err);

/* Grid update from samples (pykan update_grid_from_samples): each layer's
 * per-input grid becomes grid_eps*uniform + (1-grid_eps)*quantile grid of
 * the layer's inputs over the batch; for hidden layers the range also covers
 * what the layer sees on a lattice over the training inputs' bounding box
 * (docs/kan.md); the range [min, max] is widened by `margin` times its width
 * each side (pykan: 0), then extended by k knots of the mean interval each
 * side; the coefficients are refitted by least squares so every edge keeps
 * its function on the samples. */
pm_status pm_kan_update_grid(pm_kan *net, const double *x, size_t n, double grid_eps, double margin, pm_error *err);

/* Grid extension G -> new_grid (pykan refine / curve2coef): same ranges,
 * new knots from the samples as above, coefficients by least squares on the
 * samples plus dense points over each old grid's range. */
pm_status pm_kan_extend_grid(pm_kan *net, uint32_t new_grid, const double *x, size_t n, double grid_eps,
                             double margin, pm_error *err);

/* Edge attribution A_ij (mean |phi_ij| over the batch), [in][out] per layer,
 * written layer after layer into scores (sum over layers of in*out values). */
pm_status pm_kan_edge_scores(const pm_kan *net, const double *x, size_t n, double *scores, pm_error *err);

/* Pruning (pykan prune_node): a hidden node survives when its largest
 * incoming and largest outgoing edge score are both above threshold
 * (pykan: 1e-2). Builds a new, smaller network in *out. */
pm_status pm_kan_prune(const pm_kan *net, const double *x, size_t n, double threshold, pm_kan *out, pm_error *err);

/* ---- double-precision network files ("PMKT") ----
 * Little-endian: "PMKT", u16 version 1, u16 0, u32 depth, u32 width[depth+1],
 * per layer u32 grid, u32 order, then f64 knots, coef, scale_base, scale_sp. */
pm_status pm_kan_save(const pm_kan *net, uint8_t **data, size_t *len, pm_error *err);
pm_status pm_kan_load(const uint8_t *data, size_t len, pm_kan *out, pm_error *err);

/* ---- export to LFU tables ----
 * Edge (i -> j) of layer l becomes one uniform-mode pm_lfu_table over its
 * extended grid [t_0, t_{G+2k}] with G + 2k segments of degree k: the
 * spline (scale_sp folded in) converted exactly to per-segment polynomials
 * in the LFU's local coordinate, coefficients rounded once to fp32; oor
 * const 0 (the spline is 0 outside its knots); the base branch as the LFU's
 * built-in SiLU times scale_base (lfu.h PM_LFU_PARAM_BASE_*). A uniform grid
 * gives G + 2k segments; a snapped non-uniform one (grid_eps < 1) gives
 * (G + 2k) * PM_KAN_LATTICE, one per lattice cell; knots on no such lattice
 * are refused (PM_ERR_UNSUPPORTED). */
typedef struct pm_kan_lfu_net {
    uint32_t depth;
    uint32_t width[PM_KAN_MAX_LAYERS + 1];
    pm_lfu_table *edges; /* all edges, layer by layer, each layer input-major: edge (i -> j) at i*out + j */
    size_t edge_count;
} pm_kan_lfu_net;

pm_status pm_kan_export(const pm_kan *net, pm_kan_lfu_net *out, pm_error *err);
void pm_kan_lfu_net_free(pm_kan_lfu_net *n);
/* Edge (i -> j) of layer l, or NULL if out of range. */
const pm_lfu_table *pm_kan_lfu_edge(const pm_kan_lfu_net *n, uint32_t layer, uint32_t i, uint32_t j);

/* Host inference from the exported tables, the order the engine uses too:
 * for each layer, for each output j, acc = phi_0j(x_0), then acc = acc +
 * phi_ij(x_i) for i = 1, 2, ... ascending (fp32 adds), each phi_ij the
 * table's pm_lfu_eval(x_i) in fp32. x is [n][width[0]], y [n][width[depth]]. */
pm_status pm_kan_lfu_forward(const pm_kan_lfu_net *net, const float *x, size_t n, float *y, pm_error *err);

/* Exported network files ("PMKN"): little-endian "PMKN", u16 version 1,
 * u16 0, u32 depth, u32 width[depth+1], then every edge in the order of
 * `edges` as u32 byte length + a PMLF image of exactly that length. The
 * reader checks everything and names the byte offset of a problem. */
pm_status pm_kan_lfu_net_save(const pm_kan_lfu_net *n, uint8_t **data, size_t *len, pm_error *err);
pm_status pm_kan_lfu_net_load(const uint8_t *data, size_t len, pm_kan_lfu_net *out, pm_error *err);

/* ---- a small multivariate expression language for data sets ----
 * Variables x, y, z, w (also x1..x4), numbers, pi, e, + - * / ^ (right
 * associative, above unary minus), parentheses, and exp log sqrt sin cos
 * tan tanh erf abs. Errors name the column: "col 7: unknown function". */
typedef struct pm_kan_expr pm_kan_expr;
pm_status pm_kan_expr_parse(const char *text, pm_kan_expr **out, uint32_t *vars_used, pm_error *err);
double pm_kan_expr_eval(const pm_kan_expr *e, const double *vars);
void pm_kan_expr_free(pm_kan_expr *e);

#ifdef __cplusplus
}
#endif
#endif
