/* MLP baseline tests: parameter layout, deterministic init, a forward pass
 * against hand arithmetic, the analytic gradient against central finite
 * differences for every activation and loss, and training that learns
 * (regression with Adam and L-BFGS, a classification task). */
#include "polymorph/mlp.h"
#include "test.h"

#include <math.h>

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 11;
}

static double uniform(uint64_t *s, double lo, double hi) { return lo + (hi - lo) * (double)lcg(s) * 0x1.0p-53; }

TEST(param_count_and_layout)
{
    uint32_t w[] = {2, 3, 1};
    CHECK(pm_mlp_param_count_for(w, 3) == 3 * 2 + 3 + 1 * 3 + 1);
    uint32_t digits[] = {64, 20, 10};
    CHECK(pm_mlp_param_count_for(digits, 3) == 64 * 20 + 20 + 20 * 10 + 10);
    uint32_t zero[] = {2, 0, 1};
    CHECK(pm_mlp_param_count_for(zero, 3) == 0);
    CHECK(pm_mlp_param_count_for(w, 1) == 0);
    pm_mlp m;
    CHECK(pm_mlp_init(&m, w, 3, PM_MLP_ACT_SILU, 1, NULL) == PM_OK);
    CHECK(m.param_count == 13);
    CHECK(pm_mlp_weight_offset(&m, 0) == 0);
    CHECK(pm_mlp_bias_offset(&m, 0) == 6);
    CHECK(pm_mlp_weight_offset(&m, 1) == 9);
    CHECK(pm_mlp_bias_offset(&m, 1) == 12);
    pm_mlp_free(&m);
}

TEST(init_is_seeded_and_bounded)
{
    uint32_t w[] = {16, 8, 4};
    pm_mlp a, b, c;
    CHECK(pm_mlp_init(&a, w, 3, PM_MLP_ACT_TANH, 42, NULL) == PM_OK);
    CHECK(pm_mlp_init(&b, w, 3, PM_MLP_ACT_TANH, 42, NULL) == PM_OK);
    CHECK(pm_mlp_init(&c, w, 3, PM_MLP_ACT_TANH, 43, NULL) == PM_OK);
    CHECK(memcmp(a.params, b.params, a.param_count * sizeof(double)) == 0);
    CHECK(memcmp(a.params, c.params, a.param_count * sizeof(double)) != 0);
    double lo = 0, hi = 0;
    for (size_t i = pm_mlp_weight_offset(&a, 0); i < pm_mlp_weight_offset(&a, 1); i++) {
        CHECK(fabs(a.params[i]) <= 0.25); /* 1/sqrt(16) */
        lo = fmin(lo, a.params[i]);
        hi = fmax(hi, a.params[i]);
    }
    CHECK(lo < -0.2 && hi > 0.2); /* spread over the whole range, not a constant */
    pm_mlp_free(&a);
    pm_mlp_free(&b);
    pm_mlp_free(&c);
}

TEST(rejects_bad_input)
{
    pm_mlp m;
    pm_error err = {0};
    uint32_t bad[] = {2, 0, 1};
    CHECK(pm_mlp_init(&m, bad, 3, PM_MLP_ACT_RELU, 0, &err) == PM_ERR_INVALID);
    CHECK(strstr(err.message, "widths") != NULL);
    uint32_t w[] = {2, 4, 3};
    CHECK(pm_mlp_init(&m, w, 3, PM_MLP_ACT_RELU, 0, &err) == PM_OK);
    double x[4] = {0, 1, 2, 3};
    uint32_t labels[2] = {1, 3};
    pm_mlp_data d = {.x = x, .labels = labels, .n = 2};
    double loss;
    CHECK(pm_mlp_loss_grad(&m, PM_MLP_LOSS_SOFTMAX_CE, &d, &loss, NULL, &err) == PM_ERR_INVALID);
    CHECK_MSG(strstr(err.message, "sample 1 has label 3") != NULL, "%s", err.message);
    CHECK(pm_mlp_loss_grad(&m, PM_MLP_LOSS_MSE, &d, &loss, NULL, &err) == PM_ERR_INVALID);
    CHECK(strstr(err.message, "no regression targets") != NULL);
    labels[1] = 2;
    x[3] = NAN;
    pm_mlp_train_opts o;
    pm_mlp_train_opts_default(&o);
    o.loss = PM_MLP_LOSS_SOFTMAX_CE;
    CHECK(pm_mlp_train(&m, &o, &d, NULL, NULL, &err) == PM_ERR_INVALID);
    CHECK_MSG(strstr(err.message, "sample 1, input 1 is not finite") != NULL, "%s", err.message);
    x[3] = 3;
    o.learning_rate = 0;
    CHECK(pm_mlp_train(&m, &o, &d, NULL, NULL, &err) == PM_ERR_INVALID);
    pm_mlp_free(&m);
}

/* Checks a 2-2-1 tanh network against arithmetic written out by hand. */
TEST(forward_matches_hand_arithmetic)
{
    uint32_t w[] = {2, 2, 1};
    pm_mlp m;
    CHECK(pm_mlp_init(&m, w, 3, PM_MLP_ACT_TANH, 0, NULL) == PM_OK);
    const double p[9] = {0.5, -1.0, 0.25, 2.0, /* W1 */ 0.1, -0.2, /* b1 */ 1.5, -0.5, /* W2 */ 0.3 /* b2 */};
    memcpy(m.params, p, sizeof p);
    double x[2] = {0.7, -0.4}, y;
    CHECK(pm_mlp_forward(&m, x, 1, &y, NULL) == PM_OK);
    double h0 = tanh(0.5 * 0.7 - 1.0 * -0.4 + 0.1), h1 = tanh(0.25 * 0.7 + 2.0 * -0.4 - 0.2);
    double want = 1.5 * h0 - 0.5 * h1 + 0.3;
    CHECK_MSG(fabs(y - want) < 1e-15, "%.17g vs %.17g", y, want);
    pm_mlp_free(&m);
}

/* Central differences in double with step 1e-6 are good to ~1e-9 relative;
 * an indexing or sign error in the backward pass shows up as O(1). */
static void gradient_check(pm_mlp_act act, pm_mlp_loss loss, size_t n)
{
    uint32_t w[] = {3, 5, 4, 2};
    pm_mlp m;
    CHECK(pm_mlp_init(&m, w, 4, act, 7 + act, NULL) == PM_OK);
    uint64_t s = 99;
    double *x = malloc(n * 3 * sizeof(double)), *t = malloc(n * 2 * sizeof(double));
    uint32_t *labels = malloc(n * sizeof(uint32_t));
    for (size_t i = 0; i < n * 3; i++) x[i] = uniform(&s, -2, 2);
    for (size_t i = 0; i < n * 2; i++) t[i] = uniform(&s, -1, 1);
    for (size_t i = 0; i < n; i++) labels[i] = (uint32_t)(lcg(&s) % 2);
    pm_mlp_data d = {.x = x, .targets = t, .labels = labels, .n = n};
    double *g = malloc(m.param_count * sizeof(double));
    double l0;
    CHECK(pm_mlp_loss_grad(&m, loss, &d, &l0, g, NULL) == PM_OK);
    double worst = 0;
    for (size_t i = 0; i < m.param_count; i++) {
        double keep = m.params[i], h = 1e-6, up, down;
        m.params[i] = keep + h;
        pm_mlp_loss_grad(&m, loss, &d, &up, NULL, NULL);
        m.params[i] = keep - h;
        pm_mlp_loss_grad(&m, loss, &d, &down, NULL, NULL);
        m.params[i] = keep;
        double fd = (up - down) / (2 * h);
        double rel = fabs(fd - g[i]) / fmax(1e-4, fabs(fd) + fabs(g[i]));
        if (rel > worst) worst = rel;
    }
    CHECK_MSG(worst < 1e-6, "%s/%s: worst relative gradient error %.3g", pm_mlp_act_name(act), pm_mlp_loss_name(loss),
              worst);
    free(x);
    free(t);
    free(labels);
    free(g);
    pm_mlp_free(&m);
}

TEST(gradient_matches_finite_differences)
{
    for (int a = 0; a < PM_MLP_ACT_COUNT; a++)
        for (int l = 0; l < PM_MLP_LOSS_COUNT; l++) gradient_check((pm_mlp_act)a, (pm_mlp_loss)l, 7);
    /* more samples than one chunk, so the accumulation across chunks is covered */
    gradient_check(PM_MLP_ACT_SILU, PM_MLP_LOSS_MSE, 600);
}

/* y = sin(pi x) on [-1, 1]: 200 training and 200 test points. */
static void sine_data(double *x, double *y, size_t n, uint64_t seed)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        x[i] = uniform(&s, -1, 1);
        y[i] = sin(3.14159265358979323846 * x[i]);
    }
}

static int count_calls(const pm_mlp_progress *p, void *user)
{
    (void)p;
    ++*(int *)user;
    return 0;
}

static double train_sine(pm_mlp_optimizer opt, uint32_t steps, double lr, size_t batch, int *calls,
                         double *first_params)
{
    double xtr[200], ytr[200], xte[200], yte[200];
    sine_data(xtr, ytr, 200, 1);
    sine_data(xte, yte, 200, 2);
    pm_mlp_data train = {.x = xtr, .targets = ytr, .n = 200}, test = {.x = xte, .targets = yte, .n = 200};
    uint32_t w[] = {1, 16, 1};
    pm_mlp m;
    CHECK(pm_mlp_init(&m, w, 3, PM_MLP_ACT_TANH, 5, NULL) == PM_OK);
    double before;
    CHECK(pm_mlp_rmse(&m, &test, &before, NULL) == PM_OK);
    pm_mlp_train_opts o;
    pm_mlp_train_opts_default(&o);
    o.optimizer = opt;
    o.steps = steps;
    o.learning_rate = lr;
    o.batch = batch;
    o.report_every = 100;
    o.progress = count_calls;
    o.user = calls;
    pm_mlp_progress last;
    pm_error err = {0};
    CHECK_MSG(pm_mlp_train(&m, &o, &train, &test, &last, &err) == PM_OK, "%s", err.message);
    double after;
    CHECK(pm_mlp_rmse(&m, &test, &after, NULL) == PM_OK);
    CHECK(last.test_metric == after);
    CHECK(after < before / 10);
    if (first_params) memcpy(first_params, m.params, m.param_count * sizeof(double));
    pm_mlp_free(&m);
    return after;
}

TEST(adam_learns_a_sine)
{
    int calls = 0;
    double rmse = train_sine(PM_MLP_OPT_ADAM, 3000, 1e-2, 0, &calls, NULL);
    CHECK_MSG(rmse < 2e-2, "test RMSE %.3g", rmse);
    CHECK(calls == 30);
}

TEST(minibatch_adam_is_deterministic)
{
    double a[49], b[49];
    int calls = 0;
    double ra = train_sine(PM_MLP_OPT_ADAM, 1500, 1e-2, 32, &calls, a);
    double rb = train_sine(PM_MLP_OPT_ADAM, 1500, 1e-2, 32, &calls, b);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(ra == rb);
    CHECK_MSG(ra < 5e-2, "test RMSE %.3g", ra);
}

TEST(lbfgs_learns_a_sine)
{
    int calls = 0;
    double rmse = train_sine(PM_MLP_OPT_LBFGS, 300, 1.0, 0, &calls, NULL);
    /* L-BFGS reaches far below what Adam gets in ten times the steps */
    CHECK_MSG(rmse < 2e-3, "test RMSE %.3g", rmse);
    CHECK(calls >= 1);
}

/* A [3, 1] network is linear regression: L-BFGS must land on the exact
 * coefficients the data were made from (a convex problem with one answer). */
TEST(lbfgs_solves_linear_regression)
{
    enum { N = 64 };
    double x[N * 3], y[N];
    const double w[3] = {0.75, -1.5, 2.25}, b = -0.5;
    uint64_t s = 21;
    for (size_t i = 0; i < N; i++) {
        for (int j = 0; j < 3; j++) x[3 * i + j] = uniform(&s, -1, 1);
        y[i] = w[0] * x[3 * i] + w[1] * x[3 * i + 1] + w[2] * x[3 * i + 2] + b;
    }
    pm_mlp_data d = {.x = x, .targets = y, .n = N};
    uint32_t widths[] = {3, 1};
    pm_mlp m;
    CHECK(pm_mlp_init(&m, widths, 2, PM_MLP_ACT_SILU, 4, NULL) == PM_OK);
    pm_mlp_train_opts o;
    pm_mlp_train_opts_default(&o);
    o.optimizer = PM_MLP_OPT_LBFGS;
    o.steps = 100;
    o.learning_rate = 1;
    pm_mlp_progress last;
    CHECK(pm_mlp_train(&m, &o, &d, NULL, &last, NULL) == PM_OK);
    for (int j = 0; j < 3; j++) CHECK_MSG(fabs(m.params[j] - w[j]) < 1e-7, "w[%d] = %.17g", j, m.params[j]);
    CHECK_MSG(fabs(m.params[3] - b) < 1e-7, "b = %.17g", m.params[3]);
    CHECK(last.train_loss < 1e-14);
    CHECK(isnan(last.test_metric));
    pm_mlp_free(&m);
}

/* Three Gaussian blobs in 2-D, well separated: an MLP must classify them all. */
TEST(cross_entropy_classifies_blobs)
{
    enum { N = 300 };
    double x[N * 2];
    uint32_t labels[N];
    uint64_t s = 3;
    const double centre[3][2] = {{-2, 0}, {2, 0}, {0, 2.5}};
    for (size_t i = 0; i < N; i++) {
        labels[i] = (uint32_t)(i % 3);
        x[2 * i] = centre[labels[i]][0] + uniform(&s, -0.8, 0.8);
        x[2 * i + 1] = centre[labels[i]][1] + uniform(&s, -0.8, 0.8);
    }
    pm_mlp_data d = {.x = x, .labels = labels, .n = N};
    uint32_t w[] = {2, 8, 3};
    pm_mlp m;
    CHECK(pm_mlp_init(&m, w, 3, PM_MLP_ACT_RELU, 11, NULL) == PM_OK);
    pm_mlp_train_opts o;
    pm_mlp_train_opts_default(&o);
    o.loss = PM_MLP_LOSS_SOFTMAX_CE;
    o.steps = 500;
    o.learning_rate = 1e-2;
    pm_mlp_progress last;
    CHECK(pm_mlp_train(&m, &o, &d, &d, &last, NULL) == PM_OK);
    CHECK_MSG(last.test_metric == 1.0, "accuracy %.3f", last.test_metric);
    CHECK(last.train_loss < 0.05);
    pm_mlp_free(&m);
}

TEST(names_round_trip)
{
    for (int a = 0; a < PM_MLP_ACT_COUNT; a++) {
        pm_mlp_act back;
        CHECK(pm_mlp_act_from_name(pm_mlp_act_name((pm_mlp_act)a), &back) && back == (pm_mlp_act)a);
    }
    for (int l = 0; l < PM_MLP_LOSS_COUNT; l++) {
        pm_mlp_loss back;
        CHECK(pm_mlp_loss_from_name(pm_mlp_loss_name((pm_mlp_loss)l), &back) && back == (pm_mlp_loss)l);
    }
    pm_mlp_optimizer o;
    CHECK(pm_mlp_optimizer_from_name("lbfgs", &o) && o == PM_MLP_OPT_LBFGS);
    CHECK(!pm_mlp_optimizer_from_name("sgd", &o));
}

int main(void)
{
    RUN(param_count_and_layout);
    RUN(init_is_seeded_and_bounded);
    RUN(rejects_bad_input);
    RUN(forward_matches_hand_arithmetic);
    RUN(gradient_matches_finite_differences);
    RUN(adam_learns_a_sine);
    RUN(minibatch_adam_is_deterministic);
    RUN(lbfgs_learns_a_sine);
    RUN(lbfgs_solves_linear_regression);
    RUN(cross_entropy_classifies_blobs);
    RUN(names_round_trip);
    return TEST_SUMMARY();
}
