/* Polymorph MLP: a plain multilayer perceptron trained on the host, the
 * equal-parameter baseline every KAN benchmark is measured against. Dense
 * layers with one hidden activation (SiLU, ReLU, tanh), a linear output,
 * MSE or softmax cross-entropy, Adam; double precision throughout. */
#ifndef POLYMORPH_MLP_H
#define POLYMORPH_MLP_H

#include "polymorph/base.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* At most this many dense layers (widths has one more entry). */
#define PM_MLP_MAX_LAYERS 16
/* Widest layer accepted; keeps every size computation far from overflow. */
#define PM_MLP_MAX_WIDTH 65536

typedef enum pm_mlp_act {
    PM_MLP_ACT_SILU = 0, /* x * sigmoid(x), the activation of a KAN's base branch */
    PM_MLP_ACT_RELU,
    PM_MLP_ACT_TANH,
    PM_MLP_ACT_COUNT
} pm_mlp_act;

typedef enum pm_mlp_loss {
    PM_MLP_LOSS_MSE = 0,     /* mean over samples and outputs of (y - t)^2 */
    PM_MLP_LOSS_SOFTMAX_CE,  /* mean over samples of -log softmax(y)[label] */
    PM_MLP_LOSS_COUNT
} pm_mlp_loss;

typedef enum pm_mlp_optimizer {
    PM_MLP_OPT_ADAM = 0,
    PM_MLP_OPT_LBFGS, /* full batch; see pm_mlp_train */
    PM_MLP_OPT_COUNT
} pm_mlp_optimizer;

const char *pm_mlp_act_name(pm_mlp_act a);                 /* "silu", "relu", "tanh" */
int pm_mlp_act_from_name(const char *name, pm_mlp_act *out); /* 1 on success */
const char *pm_mlp_loss_name(pm_mlp_loss l);               /* "mse", "ce" */
int pm_mlp_loss_from_name(const char *name, pm_mlp_loss *out);
const char *pm_mlp_optimizer_name(pm_mlp_optimizer o);     /* "adam", "lbfgs" */
int pm_mlp_optimizer_from_name(const char *name, pm_mlp_optimizer *out);

/* A network widths[0] -> widths[1] -> ... -> widths[layers]. Every parameter
 * lives in one allocation, layer by layer: the weights W[out][in] (row-major)
 * then the biases b[out]. The activation follows every layer but the last. */
typedef struct pm_mlp {
    uint32_t layers;
    uint32_t widths[PM_MLP_MAX_LAYERS + 1];
    pm_mlp_act act;
    size_t param_count;
    double *params;
} pm_mlp;

/* Weights and biases of widths (count entries, count - 1 layers); 0 when the
 * shape is invalid. The figure the benchmarks match a KAN's count against. */
size_t pm_mlp_param_count_for(const uint32_t *widths, uint32_t count);

/* Deterministic initialisation from seed: every weight and bias uniform in
 * +-1/sqrt(fan_in) (PyTorch's nn.Linear default). Same seed, same bits. */
pm_status pm_mlp_init(pm_mlp *m, const uint32_t *widths, uint32_t count, pm_mlp_act act, uint64_t seed,
                      pm_error *err);
void pm_mlp_free(pm_mlp *m);

/* Offset of layer l's weights and biases inside params. */
size_t pm_mlp_weight_offset(const pm_mlp *m, uint32_t layer);
size_t pm_mlp_bias_offset(const pm_mlp *m, uint32_t layer);

/* n samples, x row-major n x widths[0], y row-major n x widths[layers]. */
pm_status pm_mlp_forward(const pm_mlp *m, const double *x, size_t n, double *y, pm_error *err);

/* A data set: n samples of inputs x (n x widths[0]). For MSE, targets
 * (n x outputs); for cross-entropy, labels (n entries, each < outputs). */
typedef struct pm_mlp_data {
    const double *x;
    const double *targets;
    const uint32_t *labels;
    size_t n;
} pm_mlp_data;

/* Loss of the whole data set and, when grad is non-NULL, its exact gradient
 * with respect to every parameter (grad has param_count entries, laid out
 * like params). */
pm_status pm_mlp_loss_grad(const pm_mlp *m, pm_mlp_loss loss, const pm_mlp_data *data, double *loss_out,
                           double *grad, pm_error *err);

/* Test metrics: root mean squared error over all outputs (MSE data), and the
 * fraction of samples whose largest output is the label (labelled data). */
pm_status pm_mlp_rmse(const pm_mlp *m, const pm_mlp_data *data, double *rmse, pm_error *err);
pm_status pm_mlp_accuracy(const pm_mlp *m, const pm_mlp_data *data, double *accuracy, pm_error *err);

typedef struct pm_mlp_progress {
    uint32_t step;        /* steps done so far */
    double train_loss;    /* loss on the whole training set */
    double test_metric;   /* RMSE (MSE loss) or accuracy (cross-entropy); NaN without test data */
} pm_mlp_progress;

/* Called every report_every steps and after the last; return nonzero to stop. */
typedef int (*pm_mlp_progress_fn)(const pm_mlp_progress *p, void *user);

typedef struct pm_mlp_train_opts {
    pm_mlp_loss loss;
    pm_mlp_optimizer optimizer;
    uint32_t steps;        /* Adam: parameter updates; L-BFGS: iterations */
    double learning_rate;  /* Adam step size; L-BFGS initial step (1 is usual) */
    size_t batch;          /* Adam minibatch size; 0 = full batch. L-BFGS is always full batch */
    uint32_t history;      /* L-BFGS memory (pairs kept); 0 = 10 */
    uint64_t seed;         /* minibatch order */
    uint32_t report_every; /* 0 = only at the end */
    pm_mlp_progress_fn progress;
    void *user;
} pm_mlp_train_opts;

/* Defaults: MSE, Adam, 1000 steps, lr 1e-3, full batch, seed 0. */
void pm_mlp_train_opts_default(pm_mlp_train_opts *o);

/* Trains m in place on train; test (may be NULL) is only evaluated for
 * progress. Fails (and says at which step) if the loss stops being finite. */
pm_status pm_mlp_train(pm_mlp *m, const pm_mlp_train_opts *opts, const pm_mlp_data *train, const pm_mlp_data *test,
                       pm_mlp_progress *final_out, pm_error *err);

#ifdef __cplusplus
}
#endif
#endif
