/* The MLP baseline (include/polymorph/mlp.h): forward and backward passes
 * over fixed-size chunks of samples (memory does not grow with the data set),
 * Adam and L-BFGS. Kept apart from the KAN code on purpose: a baseline must
 * share nothing with the model it is compared against except the data. */
#include "polymorph/mlp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Samples processed together; bounds the workspace to a few hundred rows. */
#define MLP_CHUNK 256

/* ---- names ---- */

static const char *const act_names[PM_MLP_ACT_COUNT] = {"silu", "relu", "tanh"};
static const char *const loss_names[PM_MLP_LOSS_COUNT] = {"mse", "ce"};
static const char *const opt_names[PM_MLP_OPT_COUNT] = {"adam", "lbfgs"};

static int name_index(const char *const *names, int count, const char *name)
{
    for (int i = 0; name && i < count; i++)
        if (strcmp(names[i], name) == 0) return i;
    return -1;
}

const char *pm_mlp_act_name(pm_mlp_act a) { return (unsigned)a < PM_MLP_ACT_COUNT ? act_names[a] : "?"; }
const char *pm_mlp_loss_name(pm_mlp_loss l) { return (unsigned)l < PM_MLP_LOSS_COUNT ? loss_names[l] : "?"; }
const char *pm_mlp_optimizer_name(pm_mlp_optimizer o) { return (unsigned)o < PM_MLP_OPT_COUNT ? opt_names[o] : "?"; }

int pm_mlp_act_from_name(const char *name, pm_mlp_act *out)
{
    int i = name_index(act_names, PM_MLP_ACT_COUNT, name);
    if (i < 0) return 0;
    *out = (pm_mlp_act)i;
    return 1;
}

int pm_mlp_loss_from_name(const char *name, pm_mlp_loss *out)
{
    int i = name_index(loss_names, PM_MLP_LOSS_COUNT, name);
    if (i < 0) return 0;
    *out = (pm_mlp_loss)i;
    return 1;
}

int pm_mlp_optimizer_from_name(const char *name, pm_mlp_optimizer *out)
{
    int i = name_index(opt_names, PM_MLP_OPT_COUNT, name);
    if (i < 0) return 0;
    *out = (pm_mlp_optimizer)i;
    return 1;
}

/* ---- activations: value and derivative from the pre-activation ---- */

static double act_value(pm_mlp_act a, double z)
{
    switch (a) {
    case PM_MLP_ACT_SILU: return z / (1.0 + exp(-z));
    case PM_MLP_ACT_RELU: return z > 0 ? z : 0.0;
    default: return tanh(z);
    }
}

static double act_slope(pm_mlp_act a, double z)
{
    switch (a) {
    case PM_MLP_ACT_SILU: {
        double s = 1.0 / (1.0 + exp(-z));
        return s * (1.0 + z * (1.0 - s));
    }
    case PM_MLP_ACT_RELU: return z > 0 ? 1.0 : 0.0;
    default: {
        double t = tanh(z);
        return 1.0 - t * t;
    }
    }
}

/* ---- shape, parameters, initialisation ---- */

static int shape_valid(const uint32_t *widths, uint32_t count)
{
    if (!widths || count < 2 || count > PM_MLP_MAX_LAYERS + 1) return 0;
    for (uint32_t i = 0; i < count; i++)
        if (widths[i] == 0 || widths[i] > PM_MLP_MAX_WIDTH) return 0;
    return 1;
}

size_t pm_mlp_param_count_for(const uint32_t *widths, uint32_t count)
{
    if (!shape_valid(widths, count)) return 0;
    size_t total = 0;
    for (uint32_t l = 0; l + 1 < count; l++) total += (size_t)widths[l + 1] * ((size_t)widths[l] + 1);
    return total;
}

size_t pm_mlp_weight_offset(const pm_mlp *m, uint32_t layer)
{
    size_t off = 0;
    for (uint32_t l = 0; l < layer && l < m->layers; l++) off += (size_t)m->widths[l + 1] * ((size_t)m->widths[l] + 1);
    return off;
}

size_t pm_mlp_bias_offset(const pm_mlp *m, uint32_t layer)
{
    return pm_mlp_weight_offset(m, layer) + (size_t)m->widths[layer + 1] * m->widths[layer];
}

/* splitmix64: a tiny, well-mixed generator; the state lives with the caller. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_unit(uint64_t *state) { return (double)(rng_next(state) >> 11) * 0x1.0p-53; }

pm_status pm_mlp_init(pm_mlp *m, const uint32_t *widths, uint32_t count, pm_mlp_act act, uint64_t seed,
                      pm_error *err)
{
    memset(m, 0, sizeof *m);
    if (!shape_valid(widths, count))
        return pm_error_set(err, PM_ERR_INVALID,
                            "mlp: a shape needs 2 to %d widths, each 1 to %d", PM_MLP_MAX_LAYERS + 1, PM_MLP_MAX_WIDTH);
    if ((unsigned)act >= PM_MLP_ACT_COUNT) return pm_error_set(err, PM_ERR_INVALID, "mlp: unknown activation %d", (int)act);
    m->layers = count - 1;
    memcpy(m->widths, widths, count * sizeof widths[0]);
    m->act = act;
    m->param_count = pm_mlp_param_count_for(widths, count);
    m->params = malloc(m->param_count * sizeof *m->params);
    if (!m->params) return pm_error_set(err, PM_ERR_NOMEM, "mlp: no memory for %zu parameters", m->param_count);
    uint64_t state = seed;
    double *p = m->params;
    for (uint32_t l = 0; l < m->layers; l++) {
        double bound = 1.0 / sqrt((double)widths[l]);
        size_t n = (size_t)widths[l + 1] * (widths[l] + 1);
        for (size_t i = 0; i < n; i++) *p++ = (2.0 * rng_unit(&state) - 1.0) * bound;
    }
    return PM_OK;
}

void pm_mlp_free(pm_mlp *m)
{
    if (!m) return;
    free(m->params);
    m->params = NULL;
}

/* ---- workspace: activations of one chunk ---- */

typedef struct mlp_work {
    double *a[PM_MLP_MAX_LAYERS + 1]; /* a[0] inputs, a[l] post-activation (a[layers] = output) */
    double *z[PM_MLP_MAX_LAYERS + 1]; /* pre-activations, l >= 1 */
    double *delta, *delta_prev;       /* dLoss/dz of the layer being processed and the one below */
    double *block;
} mlp_work;

static pm_status work_init(mlp_work *w, const pm_mlp *m, pm_error *err)
{
    memset(w, 0, sizeof *w);
    size_t widest = 0, total = 0;
    for (uint32_t l = 0; l <= m->layers; l++) {
        if (m->widths[l] > widest) widest = m->widths[l];
        total += (size_t)m->widths[l] * (l ? 2 : 1);
    }
    total += 2 * widest;
    w->block = malloc(total * MLP_CHUNK * sizeof(double));
    if (!w->block) return pm_error_set(err, PM_ERR_NOMEM, "mlp: no memory for the training workspace");
    double *p = w->block;
    for (uint32_t l = 0; l <= m->layers; l++) {
        w->a[l] = p;
        p += (size_t)m->widths[l] * MLP_CHUNK;
        if (l) {
            w->z[l] = p;
            p += (size_t)m->widths[l] * MLP_CHUNK;
        }
    }
    w->delta = p;
    w->delta_prev = p + widest * MLP_CHUNK;
    return PM_OK;
}

static void work_free(mlp_work *w) { free(w->block); }

/* Forward pass of rows samples already copied into w->a[0]. */
static void forward_chunk(const pm_mlp *m, mlp_work *w, size_t rows)
{
    for (uint32_t l = 0; l < m->layers; l++) {
        uint32_t in = m->widths[l], out = m->widths[l + 1];
        const double *W = m->params + pm_mlp_weight_offset(m, l);
        const double *b = W + (size_t)out * in;
        int last = l + 1 == m->layers;
        for (size_t s = 0; s < rows; s++) {
            const double *a = w->a[l] + s * in;
            double *z = w->z[l + 1] + s * out, *y = w->a[l + 1] + s * out;
            for (uint32_t o = 0; o < out; o++) {
                const double *row = W + (size_t)o * in;
                double acc = b[o];
                for (uint32_t i = 0; i < in; i++) acc += row[i] * a[i];
                z[o] = acc;
                y[o] = last ? acc : act_value(m->act, acc);
            }
        }
    }
}

/* Loss of one sample from its outputs y, and (scaled by scale) dLoss/dy in dy. */
static double sample_loss(pm_mlp_loss loss, const double *y, uint32_t outs, const double *target, uint32_t label,
                          double scale, double *dy)
{
    double sum = 0;
    if (loss == PM_MLP_LOSS_MSE) {
        for (uint32_t o = 0; o < outs; o++) {
            double d = y[o] - target[o];
            sum += d * d;
            if (dy) dy[o] = 2.0 * d * scale;
        }
        return sum;
    }
    double top = y[0];
    for (uint32_t o = 1; o < outs; o++)
        if (y[o] > top) top = y[o];
    for (uint32_t o = 0; o < outs; o++) sum += exp(y[o] - top);
    double log_z = top + log(sum);
    if (dy)
        for (uint32_t o = 0; o < outs; o++) dy[o] = (exp(y[o] - log_z) - (o == label ? 1.0 : 0.0)) * scale;
    return log_z - y[label];
}

/* Accumulates the gradient of the chunk whose output deltas are in w->delta. */
static void backward_chunk(const pm_mlp *m, mlp_work *w, size_t rows, double *grad)
{
    for (uint32_t l = m->layers; l-- > 0;) {
        uint32_t in = m->widths[l], out = m->widths[l + 1];
        size_t woff = pm_mlp_weight_offset(m, l);
        const double *W = m->params + woff;
        double *gW = grad + woff, *gb = gW + (size_t)out * in;
        for (size_t s = 0; s < rows; s++) {
            const double *d = w->delta + s * out, *a = w->a[l] + s * in;
            for (uint32_t o = 0; o < out; o++) {
                double *grow = gW + (size_t)o * in;
                for (uint32_t i = 0; i < in; i++) grow[i] += d[o] * a[i];
                gb[o] += d[o];
            }
        }
        if (l == 0) break;
        /* delta of the layer below: through W, then through the activation's slope */
        for (size_t s = 0; s < rows; s++) {
            const double *d = w->delta + s * out, *z = w->z[l] + s * in;
            double *dp = w->delta_prev + s * in;
            for (uint32_t i = 0; i < in; i++) dp[i] = 0;
            for (uint32_t o = 0; o < out; o++) {
                const double *row = W + (size_t)o * in;
                for (uint32_t i = 0; i < in; i++) dp[i] += d[o] * row[i];
            }
            for (uint32_t i = 0; i < in; i++) dp[i] *= act_slope(m->act, z[i]);
        }
        double *t = w->delta;
        w->delta = w->delta_prev;
        w->delta_prev = t;
    }
}

static pm_status check_data(const pm_mlp *m, pm_mlp_loss loss, const pm_mlp_data *data, const char *what,
                            pm_error *err)
{
    if (!data || !data->x || data->n == 0) return pm_error_set(err, PM_ERR_INVALID, "mlp: %s set is empty", what);
    if ((unsigned)loss >= PM_MLP_LOSS_COUNT) return pm_error_set(err, PM_ERR_INVALID, "mlp: unknown loss %d", (int)loss);
    uint32_t outs = m->widths[m->layers];
    if (loss == PM_MLP_LOSS_MSE && !data->targets)
        return pm_error_set(err, PM_ERR_INVALID, "mlp: %s set has no regression targets (MSE loss)", what);
    if (loss == PM_MLP_LOSS_SOFTMAX_CE) {
        if (!data->labels) return pm_error_set(err, PM_ERR_INVALID, "mlp: %s set has no class labels (cross-entropy)", what);
        for (size_t s = 0; s < data->n; s++)
            if (data->labels[s] >= outs)
                return pm_error_set(err, PM_ERR_INVALID, "mlp: %s sample %zu has label %u, but the network has %u outputs",
                                    what, s, data->labels[s], outs);
    }
    return PM_OK;
}

/* Loss (and gradient) over the samples idx[0..count) (all samples if idx is NULL). */
static double loss_grad_work(const pm_mlp *m, mlp_work *w, pm_mlp_loss loss, const pm_mlp_data *data,
                             const size_t *idx, size_t count, double *grad)
{
    uint32_t ins = m->widths[0], outs = m->widths[m->layers];
    double scale = loss == PM_MLP_LOSS_MSE ? 1.0 / ((double)count * outs) : 1.0 / (double)count;
    double total = 0;
    if (grad) memset(grad, 0, m->param_count * sizeof *grad);
    for (size_t start = 0; start < count; start += MLP_CHUNK) {
        size_t rows = count - start < MLP_CHUNK ? count - start : MLP_CHUNK;
        for (size_t s = 0; s < rows; s++) {
            size_t k = idx ? idx[start + s] : start + s;
            memcpy(w->a[0] + s * ins, data->x + k * ins, ins * sizeof(double));
        }
        forward_chunk(m, w, rows);
        for (size_t s = 0; s < rows; s++) {
            size_t k = idx ? idx[start + s] : start + s;
            const double *target = data->targets ? data->targets + k * outs : NULL;
            uint32_t label = data->labels ? data->labels[k] : 0;
            total += sample_loss(loss, w->a[m->layers] + s * outs, outs, target, label, scale,
                                 grad ? w->delta + s * outs : NULL);
        }
        if (grad) backward_chunk(m, w, rows, grad);
    }
    return total * scale;
}

pm_status pm_mlp_loss_grad(const pm_mlp *m, pm_mlp_loss loss, const pm_mlp_data *data, double *loss_out,
                           double *grad, pm_error *err)
{
    pm_status st = check_data(m, loss, data, "training", err);
    if (st != PM_OK) return st;
    mlp_work w;
    if ((st = work_init(&w, m, err)) != PM_OK) return st;
    double l = loss_grad_work(m, &w, loss, data, NULL, data->n, grad);
    work_free(&w);
    if (loss_out) *loss_out = l;
    return PM_OK;
}

/* ---- inference and metrics ---- */

pm_status pm_mlp_forward(const pm_mlp *m, const double *x, size_t n, double *y, pm_error *err)
{
    mlp_work w;
    pm_status st = work_init(&w, m, err);
    if (st != PM_OK) return st;
    uint32_t ins = m->widths[0], outs = m->widths[m->layers];
    for (size_t start = 0; start < n; start += MLP_CHUNK) {
        size_t rows = n - start < MLP_CHUNK ? n - start : MLP_CHUNK;
        memcpy(w.a[0], x + start * ins, rows * ins * sizeof(double));
        forward_chunk(m, &w, rows);
        memcpy(y + start * outs, w.a[m->layers], rows * outs * sizeof(double));
    }
    work_free(&w);
    return PM_OK;
}

/* Outputs of the whole set, one allocation the caller frees. */
static pm_status outputs_of(const pm_mlp *m, const pm_mlp_data *data, double **y, pm_error *err)
{
    *y = malloc(data->n * m->widths[m->layers] * sizeof(double));
    if (!*y) return pm_error_set(err, PM_ERR_NOMEM, "mlp: no memory for %zu outputs", data->n);
    pm_status st = pm_mlp_forward(m, data->x, data->n, *y, err);
    if (st != PM_OK) free(*y);
    return st;
}

pm_status pm_mlp_rmse(const pm_mlp *m, const pm_mlp_data *data, double *rmse, pm_error *err)
{
    pm_status st = check_data(m, PM_MLP_LOSS_MSE, data, "test", err);
    double *y;
    if (st != PM_OK || (st = outputs_of(m, data, &y, err)) != PM_OK) return st;
    size_t count = data->n * m->widths[m->layers];
    double sum = 0;
    for (size_t i = 0; i < count; i++) sum += (y[i] - data->targets[i]) * (y[i] - data->targets[i]);
    free(y);
    *rmse = sqrt(sum / (double)count);
    return PM_OK;
}

pm_status pm_mlp_accuracy(const pm_mlp *m, const pm_mlp_data *data, double *accuracy, pm_error *err)
{
    pm_status st = check_data(m, PM_MLP_LOSS_SOFTMAX_CE, data, "test", err);
    double *y;
    if (st != PM_OK || (st = outputs_of(m, data, &y, err)) != PM_OK) return st;
    uint32_t outs = m->widths[m->layers];
    size_t right = 0;
    for (size_t s = 0; s < data->n; s++) {
        const double *row = y + s * outs;
        uint32_t best = 0;
        for (uint32_t o = 1; o < outs; o++)
            if (row[o] > row[best]) best = o;
        right += best == data->labels[s];
    }
    free(y);
    *accuracy = (double)right / (double)data->n;
    return PM_OK;
}

/* ---- training ---- */

void pm_mlp_train_opts_default(pm_mlp_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->loss = PM_MLP_LOSS_MSE;
    o->optimizer = PM_MLP_OPT_ADAM;
    o->steps = 1000;
    o->learning_rate = 1e-3;
}

typedef struct trainer {
    pm_mlp *m;
    const pm_mlp_train_opts *o;
    const pm_mlp_data *train, *test;
    mlp_work work;
    double *grad;
    uint32_t steps_done;  /* optimiser steps taken; the final report must describe them */
    pm_mlp_progress last;
} trainer;

/* Fills last with the full-set loss and the test metric; nonzero = stop asked. */
static int report(trainer *t, uint32_t step, pm_error *err, pm_status *st)
{
    t->last.step = step;
    t->last.train_loss = loss_grad_work(t->m, &t->work, t->o->loss, t->train, NULL, t->train->n, NULL);
    t->last.test_metric = NAN;
    if (t->test) {
        *st = t->o->loss == PM_MLP_LOSS_MSE ? pm_mlp_rmse(t->m, t->test, &t->last.test_metric, err)
                                            : pm_mlp_accuracy(t->m, t->test, &t->last.test_metric, err);
        if (*st != PM_OK) return 1;
    }
    return t->o->progress ? t->o->progress(&t->last, t->o->user) : 0;
}

static int due(const pm_mlp_train_opts *o, uint32_t step)
{
    return step == o->steps || (o->report_every && step % o->report_every == 0);
}

static pm_status diverged(pm_error *err, const char *opt, uint32_t step)
{
    return pm_error_set(err, PM_ERR_INVALID, "mlp: %s training diverged at step %u (loss is not finite); lower the learning rate",
                        opt, step);
}

static pm_status train_adam(trainer *t, pm_error *err)
{
    const pm_mlp_train_opts *o = t->o;
    size_t np = t->m->param_count, n = t->train->n;
    size_t batch = o->batch && o->batch < n ? o->batch : n;
    double *mom = calloc(2 * np, sizeof(double));
    size_t *order = malloc(n * sizeof(size_t));
    pm_status st = PM_OK;
    if (!mom || !order) {
        st = pm_error_set(err, PM_ERR_NOMEM, "mlp: no memory for Adam's state");
        goto done;
    }
    double *vel = mom + np;
    for (size_t i = 0; i < n; i++) order[i] = i;
    uint64_t rng = o->seed;
    size_t cursor = n; /* forces a shuffle before the first minibatch */
    const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    double beta1_t = 1, beta2_t = 1;
    for (uint32_t step = 1; step <= o->steps; step++) {
        const size_t *idx = NULL;
        if (batch < n) {
            if (cursor + batch > n) {
                for (size_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
                    size_t j = (size_t)(rng_next(&rng) % (i + 1)), tmp = order[i];
                    order[i] = order[j];
                    order[j] = tmp;
                }
                cursor = 0;
            }
            idx = order + cursor;
            cursor += batch;
        }
        double loss = loss_grad_work(t->m, &t->work, o->loss, t->train, idx, batch, t->grad);
        if (!isfinite(loss)) {
            st = diverged(err, "Adam", step);
            goto done;
        }
        t->steps_done = step;
        beta1_t *= beta1;
        beta2_t *= beta2;
        for (size_t i = 0; i < np; i++) {
            double g = t->grad[i];
            mom[i] = beta1 * mom[i] + (1 - beta1) * g;
            vel[i] = beta2 * vel[i] + (1 - beta2) * g * g;
            double mhat = mom[i] / (1 - beta1_t), vhat = vel[i] / (1 - beta2_t);
            t->m->params[i] -= o->learning_rate * mhat / (sqrt(vhat) + eps);
        }
        if (due(o, step) && report(t, step, err, &st)) break;
    }
done:
    free(mom);
    free(order);
    return st;
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* L-BFGS (Nocedal & Wright, algorithm 7.4) with a backtracking Armijo line
 * search; full batch, so every step sees the same loss surface. */
static pm_status train_lbfgs(trainer *t, pm_error *err)
{
    const pm_mlp_train_opts *o = t->o;
    size_t np = t->m->param_count;
    uint32_t hist = o->history ? o->history : 10;
    double *block = malloc((2 * (size_t)hist + 4) * np * sizeof(double));
    double *rho = malloc(hist * sizeof(double)), *alpha = malloc(hist * sizeof(double));
    pm_status st = PM_OK;
    if (!block || !rho || !alpha) {
        st = pm_error_set(err, PM_ERR_NOMEM, "mlp: no memory for L-BFGS's history");
        goto done;
    }
    double *S = block, *Y = S + hist * np, *dir = Y + hist * np, *x0 = dir + np, *g0 = x0 + np, *g = g0 + np;
    double *p = t->m->params;
    uint32_t stored = 0, head = 0; /* ring buffer of (s, y) pairs; head = next slot */
    double loss = loss_grad_work(t->m, &t->work, o->loss, t->train, NULL, t->train->n, g);
    if (!isfinite(loss)) {
        st = diverged(err, "L-BFGS", 0);
        goto done;
    }
    for (uint32_t step = 1; step <= o->steps; step++) {
        /* two-loop recursion: dir = -H g */
        for (size_t i = 0; i < np; i++) dir[i] = -g[i];
        for (uint32_t k = 0; k < stored; k++) {
            uint32_t j = (head + hist - 1 - k) % hist;
            alpha[j] = rho[j] * dot(S + j * np, dir, np);
            for (size_t i = 0; i < np; i++) dir[i] -= alpha[j] * Y[j * np + i];
        }
        double gamma = 1;
        if (stored) {
            uint32_t j = (head + hist - 1) % hist;
            gamma = dot(S + j * np, Y + j * np, np) / dot(Y + j * np, Y + j * np, np);
        }
        for (size_t i = 0; i < np; i++) dir[i] *= gamma;
        for (uint32_t k = stored; k-- > 0;) {
            uint32_t j = (head + hist - 1 - k) % hist;
            double beta = rho[j] * dot(Y + j * np, dir, np);
            for (size_t i = 0; i < np; i++) dir[i] += (alpha[j] - beta) * S[j * np + i];
        }
        double slope = dot(g, dir, np);
        if (!(slope < 0)) { /* not a descent direction: forget the curvature and go downhill */
            stored = 0;
            for (size_t i = 0; i < np; i++) dir[i] = -g[i];
            slope = dot(g, dir, np);
        }
        if (slope == 0) break; /* gradient is exactly zero: a stationary point */
        double step_len = o->learning_rate;
        if (!stored) { /* first step: scale so the move is at most learning_rate in L1 */
            double l1 = 0;
            for (size_t i = 0; i < np; i++) l1 += fabs(g[i]);
            if (l1 > 1) step_len /= l1;
        }
        memcpy(x0, p, np * sizeof *p);
        memcpy(g0, g, np * sizeof *g);
        double loss0 = loss, trial = NAN;
        int accepted = 0;
        for (int tries = 0; tries < 40; tries++, step_len *= 0.5) {
            for (size_t i = 0; i < np; i++) p[i] = x0[i] + step_len * dir[i];
            trial = loss_grad_work(t->m, &t->work, o->loss, t->train, NULL, t->train->n, g);
            if (isfinite(trial) && trial <= loss0 + 1e-4 * step_len * slope) {
                accepted = 1;
                break;
            }
        }
        if (!accepted) { /* no decrease along dir at any scale: converged to rounding */
            memcpy(p, x0, np * sizeof *p);
            break;
        }
        loss = trial;
        t->steps_done = step;
        double *s_new = S + (size_t)head * np, *y_new = Y + (size_t)head * np;
        for (size_t i = 0; i < np; i++) {
            s_new[i] = p[i] - x0[i];
            y_new[i] = g[i] - g0[i];
        }
        double sy = dot(s_new, y_new, np);
        if (sy > 1e-12 * dot(y_new, y_new, np) && sy > 0) { /* keep only pairs with positive curvature */
            rho[head] = 1.0 / sy;
            head = (head + 1) % hist;
            if (stored < hist) stored++;
        }
        if (due(o, step) && report(t, step, err, &st)) break;
    }
done:
    free(block);
    free(rho);
    free(alpha);
    return st;
}

static pm_status check_finite(const pm_mlp *m, const pm_mlp_data *d, const char *what, pm_error *err)
{
    uint32_t ins = m->widths[0], outs = m->widths[m->layers];
    for (size_t s = 0; s < d->n; s++) {
        for (uint32_t i = 0; i < ins; i++)
            if (!isfinite(d->x[s * ins + i]))
                return pm_error_set(err, PM_ERR_INVALID, "mlp: %s sample %zu, input %u is not finite", what, s, i);
        for (uint32_t o = 0; d->targets && o < outs; o++)
            if (!isfinite(d->targets[s * outs + o]))
                return pm_error_set(err, PM_ERR_INVALID, "mlp: %s sample %zu, target %u is not finite", what, s, o);
    }
    return PM_OK;
}

pm_status pm_mlp_train(pm_mlp *m, const pm_mlp_train_opts *opts, const pm_mlp_data *train, const pm_mlp_data *test,
                       pm_mlp_progress *final_out, pm_error *err)
{
    pm_status st;
    if ((unsigned)opts->optimizer >= PM_MLP_OPT_COUNT)
        return pm_error_set(err, PM_ERR_INVALID, "mlp: unknown optimizer %d", (int)opts->optimizer);
    if (!(opts->learning_rate > 0) || !isfinite(opts->learning_rate))
        return pm_error_set(err, PM_ERR_INVALID, "mlp: learning rate must be a positive number");
    if ((st = check_data(m, opts->loss, train, "training", err)) != PM_OK) return st;
    if ((st = check_finite(m, train, "training", err)) != PM_OK) return st;
    if (test) {
        if ((st = check_data(m, opts->loss, test, "test", err)) != PM_OK) return st;
        if ((st = check_finite(m, test, "test", err)) != PM_OK) return st;
    }
    trainer t = {.m = m, .o = opts, .train = train, .test = test};
    if ((st = work_init(&t.work, m, err)) != PM_OK) return st;
    t.grad = malloc(m->param_count * sizeof(double));
    if (!t.grad) {
        work_free(&t.work);
        return pm_error_set(err, PM_ERR_NOMEM, "mlp: no memory for the gradient");
    }
    t.last.step = 0;
    t.last.train_loss = NAN;
    t.last.test_metric = NAN;
    st = opts->optimizer == PM_MLP_OPT_ADAM ? train_adam(&t, err) : train_lbfgs(&t, err);
    if (st == PM_OK && (t.last.step != t.steps_done || isnan(t.last.train_loss))) report(&t, t.steps_done, err, &st);
    free(t.grad);
    work_free(&t.work);
    if (st == PM_OK && final_out) *final_out = t.last;
    return st;
}
