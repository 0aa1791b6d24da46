/* polymorph kan: train, evaluate and export Kolmogorov-Arnold networks
 * (src/kan), and the KAN paper's toy benchmark with grid extension.
 * `kan run` (inference on the simulated engine) lives in cmd_kan_run.c. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "cli.h"
#include "polymorph/kan.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char pm_cli_kan_help[] =
    "usage: polymorph kan train (--data X.npy --targets Y.npy | --data D.csv | --function EXPR) --shape N0,..,NL [options]\n"
    "       polymorph kan eval MODEL (--data ... | --function EXPR) [--json] [-o PRED.npy]\n"
    "       polymorph kan export MODEL.pmkt -o NET.pmkn [--json]\n"
    "       polymorph kan toy --function EXPR --shape N0,..,NL --grids G1,G2,.. [options]\n"
    "       polymorph kan run NET.pmkn --input X.npy ...   (inference on the simulated engine)\n"
    "\n"
    "KANs with pykan's semantics (SiLU base + B-spline edges), trained in double\n"
    "precision and exported edge by edge to LFU tables (docs/kan.md).\n"
    "\n"
    "data:\n"
    "  --data FILE            X as .npy [n, d] (with --targets Y.npy [n] or [n, out]), or a\n"
    "                         .csv whose last `out` columns are the targets\n"
    "  --targets FILE         Y as .npy\n"
    "  --test-data FILE       a test set (same forms); --test-targets FILE\n"
    "  --function EXPR        y = EXPR of x, y, z, w (or x1..x4), e.g. 'exp(sin(pi*x)+y^2)':\n"
    "                         --samples N points uniform on --domain A,B (default 1000 on\n"
    "                         -1,1) for training and as many (next seed) for testing\n"
    "model and training:\n"
    "  --shape N0,N1,..,NL    widths, inputs first (train, toy)\n"
    "  --grid G               grid intervals (train; default 5)\n"
    "  --grids G1,G2,..       toy: train at G1, then extend the grid to G2, ... by least squares\n"
    "  --order K              spline order 1..3 (default 3)\n"
    "  --steps N              optimiser steps per grid (default 100; toy 200)\n"
    "  --optimizer lbfgs|adam (default lbfgs; lr 1 for lbfgs, 0.01 for adam)\n"
    "  --lr R                 learning rate\n"
    "  --seed S               initialisation and data seed (default 0)\n"
    "  --reg lamb=L,l1=A,entropy=B,coef=C,coefdiff=D   regularisation (default off)\n"
    "  --grid-eps E           1 = uniform grids (train default), 0 = quantiles, between: a mix\n"
    "                         (toy default 0.5); non-uniform knots snap to a lattice of 4\n"
    "                         cells per interval, so export stays exact\n"
    "  --smooth L             weight of the P-spline term on every edge's (k+1)-th\n"
    "                         coefficient differences (default 0: pykan's objective)\n"
    "  --grid-margin M        grids span the samples' range widened by M of its width\n"
    "                         each side (default 0, as pykan)\n"
    "  --grid-update EVERY,STOP  grid update from samples every EVERY steps while\n"
    "                         step < STOP (default 10,50; toy 5,30; 0 = never)\n"
    "  --restarts R           train R initialisations (seeds S*1000+r) for 20 steps, keep\n"
    "                         the lowest training loss, then train it (default: train 1, toy 8)\n"
    "  --prune T              after training, drop hidden nodes whose in/out scores <= T\n"
    "  --log-every N          progress line period on stderr (default 10), --quiet: none\n"
    "output:\n"
    "  -o, --output FILE      train/toy: the model (.pmkt); export: the network (.pmkn);\n"
    "                         eval: the predictions (.npy)\n"
    "  --export FILE          train/toy: also the exported LFU network (.pmkn)\n"
    "  --json                 one JSON object on stdout\n";

/* ---- options: one table for every sub-command, each row says where it applies ---- */

enum { SUB_TRAIN = 1, SUB_EVAL = 2, SUB_EXPORT = 4, SUB_TOY = 8 };

typedef struct kan_opt {
    const char *name;
    char short_name;
    int takes_value;
    int subs;
} kan_opt;

enum {
    O_DATA, O_TARGETS, O_TEST_DATA, O_TEST_TARGETS, O_FUNCTION, O_SAMPLES, O_DOMAIN, O_SHAPE, O_GRID, O_GRIDS,
    O_ORDER, O_STEPS, O_OPTIMIZER, O_LR, O_SEED, O_REG, O_GRID_EPS, O_GRID_UPDATE, O_PRUNE, O_OUTPUT, O_EXPORT,
    O_JSON, O_QUIET, O_LOG_EVERY, O_RESTARTS, O_GRID_MARGIN, O_SMOOTH, O_COUNT
};

static const kan_opt kan_opts[O_COUNT] = {
    [O_DATA] = {"data", 0, 1, SUB_TRAIN | SUB_EVAL},
    [O_TARGETS] = {"targets", 0, 1, SUB_TRAIN | SUB_EVAL},
    [O_TEST_DATA] = {"test-data", 0, 1, SUB_TRAIN},
    [O_TEST_TARGETS] = {"test-targets", 0, 1, SUB_TRAIN},
    [O_FUNCTION] = {"function", 0, 1, SUB_TRAIN | SUB_EVAL | SUB_TOY},
    [O_SAMPLES] = {"samples", 0, 1, SUB_TRAIN | SUB_EVAL | SUB_TOY},
    [O_DOMAIN] = {"domain", 0, 1, SUB_TRAIN | SUB_EVAL | SUB_TOY},
    [O_SHAPE] = {"shape", 0, 1, SUB_TRAIN | SUB_TOY},
    [O_GRID] = {"grid", 0, 1, SUB_TRAIN},
    [O_GRIDS] = {"grids", 0, 1, SUB_TOY},
    [O_ORDER] = {"order", 0, 1, SUB_TRAIN | SUB_TOY},
    [O_STEPS] = {"steps", 0, 1, SUB_TRAIN | SUB_TOY},
    [O_OPTIMIZER] = {"optimizer", 0, 1, SUB_TRAIN | SUB_TOY},
    [O_LR] = {"lr", 0, 1, SUB_TRAIN | SUB_TOY},
    [O_SEED] = {"seed", 0, 1, SUB_TRAIN | SUB_EVAL | SUB_TOY},
    [O_REG] = {"reg", 0, 1, SUB_TRAIN | SUB_TOY},
    [O_GRID_EPS] = {"grid-eps", 0, 1, SUB_TRAIN | SUB_TOY},
    [O_GRID_UPDATE] = {"grid-update", 0, 1, SUB_TRAIN | SUB_TOY},
    [O_PRUNE] = {"prune", 0, 1, SUB_TRAIN},
    [O_OUTPUT] = {"output", 'o', 1, SUB_TRAIN | SUB_EVAL | SUB_EXPORT | SUB_TOY},
    [O_EXPORT] = {"export", 0, 1, SUB_TRAIN | SUB_TOY},
    [O_JSON] = {"json", 0, 0, SUB_TRAIN | SUB_EVAL | SUB_EXPORT | SUB_TOY},
    [O_QUIET] = {"quiet", 'q', 0, SUB_TRAIN | SUB_TOY},
    [O_LOG_EVERY] = {"log-every", 0, 1, SUB_TRAIN | SUB_TOY},
    [O_RESTARTS] = {"restarts", 0, 1, SUB_TRAIN | SUB_TOY},
    [O_GRID_MARGIN] = {"grid-margin", 0, 1, SUB_TRAIN | SUB_TOY},
    [O_SMOOTH] = {"smooth", 0, 1, SUB_TRAIN | SUB_TOY},
};

typedef struct kan_args {
    const char *verb; /* "kan train", ... for messages */
    const char *value[O_COUNT];
    int given[O_COUNT];
    const char *positional[4];
    int positional_count;
    int help;
} kan_args;

static int parse_args(const char *verb, int sub, int argc, char **argv, kan_args *a)
{
    memset(a, 0, sizeof *a);
    a->verb = verb;
    int done = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (done || arg[0] != '-' || arg[1] == 0) {
            if (a->positional_count == 4) return pm_cli_fail(verb, "too many arguments (at '%s')", arg), 0;
            a->positional[a->positional_count++] = arg;
            continue;
        }
        if (!strcmp(arg, "--")) {
            done = 1;
            continue;
        }
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            a->help = 1;
            continue;
        }
        int k = -1;
        const char *inline_value = NULL;
        for (int o = 0; o < O_COUNT && k < 0; o++) {
            const kan_opt *ko = &kan_opts[o];
            if (arg[1] == '-') {
                size_t n = strlen(ko->name);
                if (!strncmp(arg + 2, ko->name, n) && (arg[2 + n] == 0 || arg[2 + n] == '=')) {
                    k = o;
                    if (arg[2 + n] == '=') inline_value = arg + 3 + n;
                }
            } else if (ko->short_name && arg[1] == ko->short_name && arg[2] == 0) {
                k = o;
            }
        }
        if (k < 0) return pm_cli_fail(verb, "unknown option '%s' (see polymorph help kan)", arg), 0;
        if (!(kan_opts[k].subs & sub)) return pm_cli_fail(verb, "option --%s does not apply here", kan_opts[k].name), 0;
        if (a->given[k]) return pm_cli_fail(verb, "option --%s given more than once", kan_opts[k].name), 0;
        const char *value = NULL;
        if (kan_opts[k].takes_value) {
            if (inline_value) value = inline_value;
            else if (i + 1 < argc) value = argv[++i];
            else return pm_cli_fail(verb, "option --%s needs a value", kan_opts[k].name), 0;
        } else if (inline_value) {
            return pm_cli_fail(verb, "option --%s takes no value", kan_opts[k].name), 0;
        }
        a->given[k] = 1;
        a->value[k] = value;
    }
    return 1;
}

/* ---- number parsing with messages that name the option ---- */

static int get_u32(const kan_args *a, int o, uint32_t def, uint32_t lo, uint32_t hi, uint32_t *out)
{
    *out = def;
    if (!a->given[o]) return 1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(a->value[o], &end, 10);
    if (end == a->value[o] || *end || errno || a->value[o][0] == '-' || v < lo || v > hi)
        return pm_cli_fail(a->verb, "--%s '%s': expected an integer in %u..%u", kan_opts[o].name, a->value[o], lo, hi), 0;
    *out = (uint32_t)v;
    return 1;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

static int get_double(const kan_args *a, int o, double def, double lo, double hi, double *out)
{
    *out = def;
    if (!a->given[o]) return 1;
    double v;
    if (!parse_double(a->value[o], &v) || v < lo || v > hi)
        return pm_cli_fail(a->verb, "--%s '%s': expected a number in [%g, %g]", kan_opts[o].name, a->value[o], lo, hi), 0;
    *out = v;
    return 1;
}

/* "a,b,c" of integers lo..hi; returns the count or 0 after reporting. */
static uint32_t get_list(const kan_args *a, int o, uint32_t *out, uint32_t max, uint32_t lo, uint32_t hi)
{
    const char *s = a->value[o];
    uint32_t n = 0;
    while (1) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || errno || *s == '-' || v < lo || v > hi || (*end && *end != ',') || n == max) {
            pm_cli_fail(a->verb, "--%s '%s': expected up to %u comma-separated integers in %u..%u", kan_opts[o].name,
                        a->value[o], max, lo, hi);
            return 0;
        }
        out[n++] = (uint32_t)v;
        if (!*end) return n;
        s = end + 1;
    }
}

/* ---- data sets ---- */

typedef struct dataset {
    double *x, *y;
    size_t n;
    uint32_t in, out;
} dataset;

static void dataset_free(dataset *d)
{
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}

static pm_status npy_matrix(const char *path, double **out, size_t *rows, uint32_t *cols, pm_error *err)
{
    pm_npy a;
    pm_status st = pm_npy_load(path, &a, err);
    if (st) return st;
    if (a.kind != PM_NPY_FLOAT && a.kind != PM_NPY_INT && a.kind != PM_NPY_UINT) {
        pm_npy_free(&a);
        return pm_error_set(err, PM_ERR_INVALID, "%s: %s data, expected numbers", path, pm_npy_type_name(&a));
    }
    if (a.rank < 1 || a.rank > 2 || a.shape[0] == 0 || (a.rank == 2 && (a.shape[1] == 0 || a.shape[1] > PM_KAN_MAX_WIDTH))) {
        pm_npy_free(&a);
        return pm_error_set(err, PM_ERR_INVALID, "%s: expected a non-empty [n] or [n, d] array (d <= %d), got rank %u", path,
                            PM_KAN_MAX_WIDTH, a.rank);
    }
    *rows = a.shape[0];
    *cols = a.rank == 2 ? (uint32_t)a.shape[1] : 1;
    *out = malloc(a.count * sizeof **out);
    if (!*out) {
        pm_npy_free(&a);
        return pm_error_set(err, PM_ERR_NOMEM, "%s: no memory", path);
    }
    for (uint64_t i = 0; i < a.count; i++) {
        double v = pm_npy_get_f64(&a, i);
        if (!isfinite(v)) {
            free(*out);
            *out = NULL;
            pm_npy_free(&a);
            return pm_error_set(err, PM_ERR_INVALID, "%s: element %llu is not finite", path, (unsigned long long)i);
        }
        (*out)[i] = v;
    }
    pm_npy_free(&a);
    return PM_OK;
}

/* CSV: one sample per line, comma-separated numbers; blank lines and lines
 * starting with '#' are skipped; the last `outs` columns are the targets. */
static pm_status csv_load(const char *path, uint32_t outs, dataset *d, pm_error *err)
{
    uint8_t *text;
    size_t len;
    pm_status st = pm_read_file(path, &text, &len, err);
    if (st) return st;
    size_t cap = 0, count = 0, cols = 0, line = 0;
    double *vals = NULL;
    char *p = (char *)text;
    while (*p && !st) {
        line++;
        char *eol = strchr(p, '\n');
        if (eol) *eol = 0;
        char *s = p;
        while (*s == ' ' || *s == '\t' || *s == '\r') s++;
        if (*s && *s != '#') {
            size_t c = 0;
            while (!st) {
                char *end;
                errno = 0;
                double v = strtod(s, &end);
                if (end == s || errno || !isfinite(v)) {
                    st = pm_error_set(err, PM_ERR_PARSE, "%s:%zu:%d: expected a finite number", path, line, (int)(s - p) + 1);
                    break;
                }
                if (count == cap) {
                    cap = cap ? 2 * cap : 1024;
                    double *n = realloc(vals, cap * sizeof *n);
                    if (!n) {
                        st = pm_error_set(err, PM_ERR_NOMEM, "%s: no memory", path);
                        break;
                    }
                    vals = n;
                }
                vals[count++] = v;
                c++;
                while (*end == ' ' || *end == '\t' || *end == '\r') end++;
                if (*end == ',') s = end + 1;
                else if (!*end) break;
                else st = pm_error_set(err, PM_ERR_PARSE, "%s:%zu:%d: expected ',' or the end of the line", path, line, (int)(end - p) + 1);
            }
            if (!st && cols && c != cols)
                st = pm_error_set(err, PM_ERR_PARSE, "%s:%zu:1: %zu columns, the first row has %zu", path, line, c, cols);
            cols = c;
        }
        p = eol ? eol + 1 : p + strlen(p);
    }
    free(text);
    if (!st && (count == 0 || cols <= outs))
        st = pm_error_set(err, PM_ERR_PARSE, "%s: needs rows of more than %u columns (inputs, then %u target%s)", path, outs, outs,
                          outs == 1 ? "" : "s");
    if (!st && cols - outs > PM_KAN_MAX_WIDTH) st = pm_error_set(err, PM_ERR_PARSE, "%s: %zu columns is too many", path, cols);
    if (!st) {
        d->n = count / cols;
        d->in = (uint32_t)(cols - outs);
        d->out = outs;
        d->x = malloc(d->n * d->in * sizeof *d->x);
        d->y = malloc(d->n * outs * sizeof *d->y);
        if (!d->x || !d->y) st = pm_error_set(err, PM_ERR_NOMEM, "%s: no memory", path);
        for (size_t r = 0; !st && r < d->n; r++) {
            memcpy(d->x + r * d->in, vals + r * cols, d->in * sizeof *vals);
            memcpy(d->y + r * outs, vals + r * cols + d->in, outs * sizeof *vals);
        }
    }
    free(vals);
    if (st) dataset_free(d);
    return st;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* X (and Y) from files; `outs` is the expected target width (0: any). */
static pm_status load_files(const char *xpath, const char *ypath, uint32_t outs, dataset *d, pm_error *err)
{
    memset(d, 0, sizeof *d);
    if (ends_with(xpath, ".csv")) {
        if (ypath) return pm_error_set(err, PM_ERR_INVALID, "%s: a .csv holds the targets itself; drop --targets", xpath);
        return csv_load(xpath, outs ? outs : 1, d, err);
    }
    if (!ypath) return pm_error_set(err, PM_ERR_INVALID, "%s: .npy inputs need --targets Y.npy (or use a .csv)", xpath);
    size_t ny;
    pm_status st = npy_matrix(xpath, &d->x, &d->n, &d->in, err);
    if (!st) st = npy_matrix(ypath, &d->y, &ny, &d->out, err);
    if (!st && ny != d->n) st = pm_error_set(err, PM_ERR_INVALID, "%s has %zu rows but %s has %zu", xpath, d->n, ypath, ny);
    if (!st && outs && d->out != outs)
        st = pm_error_set(err, PM_ERR_INVALID, "%s: %u target columns, the network has %u outputs", ypath, d->out, outs);
    if (st) dataset_free(d);
    return st;
}

static pm_status function_data(const pm_kan_expr *e, uint32_t in, size_t n, double lo, double hi, uint64_t seed,
                               dataset *d, pm_error *err)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    d->in = in;
    d->out = 1;
    d->x = malloc(n * in * sizeof *d->x);
    d->y = malloc(n * sizeof *d->y);
    if (!d->x || !d->y) {
        dataset_free(d);
        return pm_error_set(err, PM_ERR_NOMEM, "kan: no memory for %zu samples", n);
    }
    pm_kan_rng rng;
    pm_kan_rng_seed(&rng, seed);
    for (size_t s = 0; s < n; s++) {
        double v[4] = {0, 0, 0, 0};
        for (uint32_t i = 0; i < in; i++) d->x[s * in + i] = v[i < 4 ? i : 3] = lo + (hi - lo) * pm_kan_rng_uniform(&rng);
        d->y[s] = pm_kan_expr_eval(e, v);
        if (!isfinite(d->y[s])) {
            dataset_free(d);
            return pm_error_set(err, PM_ERR_INVALID, "--function: not finite at sample %zu (x = %g)", s, v[0]);
        }
    }
    return PM_OK;
}

/* The train and test sets a command asks for. need_in/need_out: the
 * network's widths when known (0: take them from the data). */
typedef struct data_request {
    const kan_args *a;
    uint32_t need_in, need_out;
    uint64_t seed;
} data_request;

static int get_data(const data_request *r, dataset *train, dataset *test, pm_error *err)
{
    const kan_args *a = r->a;
    memset(train, 0, sizeof *train);
    if (test) memset(test, 0, sizeof *test);
    if (a->given[O_FUNCTION] == a->given[O_DATA])
        return pm_cli_fail(a->verb, "give exactly one of --data and --function"), 0;
    if (a->given[O_FUNCTION]) {
        if (a->given[O_TARGETS] || a->given[O_TEST_DATA] || a->given[O_TEST_TARGETS])
            return pm_cli_fail(a->verb, "--function makes its own data; drop --targets/--test-data"), 0;
        pm_kan_expr *e;
        uint32_t used;
        if (pm_kan_expr_parse(a->value[O_FUNCTION], &e, &used, err)) return pm_cli_fail_err(a->verb, err), 0;
        uint32_t vars = 0;
        while (used >> vars) vars++;
        uint32_t in = r->need_in ? r->need_in : (vars ? vars : 1);
        if (vars > in) {
            pm_kan_expr_free(e);
            return pm_cli_fail(a->verb, "--function uses %u variables but the network has %u inputs", vars, in), 0;
        }
        if (r->need_out > 1) {
            pm_kan_expr_free(e);
            return pm_cli_fail(a->verb, "--function gives one output; the network has %u", r->need_out), 0;
        }
        uint32_t samples;
        double dom[2] = {-1.0, 1.0};
        if (!get_u32(a, O_SAMPLES, 1000, 2, 10000000, &samples)) return pm_kan_expr_free(e), 0;
        if (a->given[O_DOMAIN]) {
            char *end;
            dom[0] = strtod(a->value[O_DOMAIN], &end);
            int ok = *end == ',' && parse_double(end + 1, &dom[1]) && isfinite(dom[0]) && dom[0] < dom[1];
            if (!ok) {
                pm_kan_expr_free(e);
                return pm_cli_fail(a->verb, "--domain '%s': expected A,B with A < B", a->value[O_DOMAIN]), 0;
            }
        }
        pm_status st = function_data(e, in, samples, dom[0], dom[1], r->seed * 2 + 1, train, err);
        if (!st && test) st = function_data(e, in, samples, dom[0], dom[1], r->seed * 2 + 2, test, err);
        pm_kan_expr_free(e);
        if (st) {
            dataset_free(train);
            return pm_cli_fail_err(a->verb, err), 0;
        }
        return 1;
    }
    if (a->given[O_SAMPLES] || a->given[O_DOMAIN]) return pm_cli_fail(a->verb, "--samples and --domain go with --function"), 0;
    if (load_files(a->value[O_DATA], a->value[O_TARGETS], r->need_out, train, err)) return pm_cli_fail_err(a->verb, err), 0;
    if (test && a->given[O_TEST_DATA]) {
        if (load_files(a->value[O_TEST_DATA], a->value[O_TEST_TARGETS], train->out, test, err)) {
            dataset_free(train);
            return pm_cli_fail_err(a->verb, err), 0;
        }
    } else if (a->given[O_TEST_TARGETS]) {
        dataset_free(train);
        return pm_cli_fail(a->verb, "--test-targets needs --test-data"), 0;
    }
    if ((r->need_in && train->in != r->need_in) || (test && test->n && test->in != train->in)) {
        pm_cli_fail(a->verb, "the data has %u input columns, the network has %u", test && test->n && test->in != train->in ? test->in : train->in,
                    r->need_in ? r->need_in : train->in);
        dataset_free(train);
        dataset_free(test);
        return 0;
    }
    return 1;
}

/* ---- training options shared by train and toy ---- */

typedef struct progress_ctx {
    const char *verb;
    uint32_t grid, steps;
} progress_ctx;

static void print_progress(void *user, uint32_t step, double loss, double train, double test)
{
    const progress_ctx *p = user;
    fprintf(stderr, "%s: grid %u step %u/%u loss %.4e train_rmse %.4e test_rmse %.4e\n", p->verb, p->grid, step, p->steps,
            loss, train, test);
}

/* default_update: the grid-update period and stop when --grid-update is not
 * given (train: the library's 10,50; toy: 5,30 as the KAN paper's toy runs,
 * stop_grid_update_step = 30). */
static int train_options(const kan_args *a, uint32_t default_steps, const uint32_t default_update[2], double default_eps,
                         pm_kan_train_opts *o, progress_ctx *pc)
{
    pm_kan_train_defaults(o);
    if (default_update) {
        o->grid_update_every = default_update[0];
        o->grid_update_stop = default_update[1];
    }
    if (!get_u32(a, O_STEPS, default_steps, 0, 100000000, &o->steps)) return 0;
    if (a->given[O_OPTIMIZER]) {
        if (!strcmp(a->value[O_OPTIMIZER], "lbfgs")) o->optimizer = PM_KAN_LBFGS;
        else if (!strcmp(a->value[O_OPTIMIZER], "adam")) o->optimizer = PM_KAN_ADAM;
        else return pm_cli_fail(a->verb, "--optimizer '%s': expected lbfgs or adam", a->value[O_OPTIMIZER]), 0;
    }
    if (!get_double(a, O_LR, o->optimizer == PM_KAN_ADAM ? 1e-2 : 1.0, 1e-12, 1e6, &o->lr)) return 0;
    if (!get_double(a, O_GRID_EPS, default_eps, 0.0, 1.0, &o->grid_eps)) return 0;
    if (!get_double(a, O_GRID_MARGIN, 0.0, 0.0, 10.0, &o->grid_margin)) return 0;
    if (!get_double(a, O_SMOOTH, 0.0, 0.0, 1e6, &o->reg.lamb_smooth)) return 0;
    if (a->given[O_GRID_UPDATE]) {
        uint32_t v[2];
        uint32_t n = get_list(a, O_GRID_UPDATE, v, 2, 0, 100000000);
        if (!n) return 0;
        o->grid_update_every = v[0];
        o->grid_update_stop = n == 2 ? v[1] : (v[0] ? 0xffffffffu : 0);
    }
    if (a->given[O_REG]) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", a->value[O_REG]);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            char *eq = strchr(tok, '=');
            double v;
            double *dst = NULL;
            if (eq) {
                *eq = 0;
                if (!strcmp(tok, "lamb")) dst = &o->reg.lamb;
                else if (!strcmp(tok, "l1")) dst = &o->reg.lamb_l1;
                else if (!strcmp(tok, "entropy")) dst = &o->reg.lamb_entropy;
                else if (!strcmp(tok, "coef")) dst = &o->reg.lamb_coef;
                else if (!strcmp(tok, "coefdiff")) dst = &o->reg.lamb_coefdiff;
            }
            if (!dst || !parse_double(eq + 1, &v) || v < 0.0)
                return pm_cli_fail(a->verb, "--reg '%s': expected lamb=,l1=,entropy=,coef=,coefdiff= with values >= 0", a->value[O_REG]), 0;
            *dst = v;
        }
    }
    uint32_t log_every;
    if (!get_u32(a, O_LOG_EVERY, 10, 1, 100000000, &log_every)) return 0;
    if (!a->given[O_QUIET]) {
        o->log_every = log_every;
        o->progress = print_progress;
        o->progress_user = pc;
    }
    pc->verb = a->verb;
    pc->steps = o->steps;
    return 1;
}

static int get_shape(const kan_args *a, uint32_t *width, uint32_t *depth)
{
    if (!a->given[O_SHAPE]) return pm_cli_fail(a->verb, "--shape N0,..,NL is required"), 0;
    uint32_t n = get_list(a, O_SHAPE, width, PM_KAN_MAX_LAYERS + 1, 1, PM_KAN_MAX_WIDTH);
    if (!n) return 0;
    if (n < 2) return pm_cli_fail(a->verb, "--shape '%s': needs at least two widths (inputs and outputs)", a->value[O_SHAPE]), 0;
    *depth = n - 1;
    return 1;
}

/* ---- results ---- */

static void json_widths(const uint32_t *w, uint32_t depth)
{
    printf("[");
    for (uint32_t l = 0; l <= depth; l++) printf("%s%u", l ? ", " : "", w[l]);
    printf("]");
}

/* fp32 host inference from the exported tables: RMSE against targets. */
static pm_status lfu_rmse(const pm_kan_lfu_net *net, const dataset *d, double *rmse, pm_error *err)
{
    size_t outs = net->width[net->depth];
    float *x = malloc(d->n * d->in * sizeof *x + 1), *y = malloc(d->n * outs * sizeof *y + 1);
    pm_status st = !x || !y ? pm_error_set(err, PM_ERR_NOMEM, "kan: no memory") : PM_OK;
    for (size_t i = 0; !st && i < d->n * d->in; i++) x[i] = (float)d->x[i];
    if (!st) st = pm_kan_lfu_forward(net, x, d->n, y, err);
    double sum = 0.0;
    for (size_t i = 0; !st && i < d->n * outs; i++) sum += ((double)y[i] - d->y[i]) * ((double)y[i] - d->y[i]);
    if (!st) *rmse = sqrt(sum / (double)(d->n * outs));
    free(x);
    free(y);
    return st;
}

/* Writes the model (-o) and the exported network (--export), all or none. */
static pm_status write_outputs(const kan_args *a, const pm_kan *net, pm_error *err)
{
    const char *paths[2];
    const void *data[2];
    size_t lens[2], count = 0;
    uint8_t *model = NULL, *exported = NULL;
    pm_status st = PM_OK;
    if (a->given[O_OUTPUT]) {
        st = pm_kan_save(net, &model, &lens[count], err);
        paths[count] = a->value[O_OUTPUT];
        data[count++] = model;
    }
    if (!st && a->given[O_EXPORT]) {
        pm_kan_lfu_net lnet;
        st = pm_kan_export(net, &lnet, err);
        if (!st) {
            st = pm_kan_lfu_net_save(&lnet, &exported, &lens[count], err);
            pm_kan_lfu_net_free(&lnet);
        }
        paths[count] = a->value[O_EXPORT];
        data[count++] = exported;
    }
    if (!st && count) st = pm_write_files_atomic(count, paths, data, lens, err);
    free(model);
    free(exported);
    return st;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0->tv_nsec);
}

/* Several initialisations trained briefly; the one with the lowest
 * training loss is kept (selection never looks at the test set). KAN
 * training from pykan's initialisation is bimodal on some problems: a run
 * either finds the function or folds the hidden layer into a poor local
 * minimum (docs/kan.md), and a short trial tells them apart. */
static pm_status create_best(uint32_t depth, const uint32_t *width, const pm_kan_init *init, uint32_t restarts,
                             const dataset *train, const pm_kan_train_opts *o, pm_kan *out, pm_error *err)
{
    pm_kan_init in = *init;
    if (restarts <= 1) return pm_kan_create(out, depth, width, &in, err);
    pm_kan_train_opts trial = *o;
    trial.steps = o->steps < 20 ? o->steps : 20;
    trial.progress = NULL;
    double best = HUGE_VAL;
    memset(out, 0, sizeof *out);
    for (uint32_t r = 0; r < restarts; r++) {
        pm_kan cand;
        double loss = HUGE_VAL;
        in.seed = init->seed * 1000 + r;
        pm_status st = pm_kan_create(&cand, depth, width, &in, err);
        if (!st) st = pm_kan_train(&cand, train->x, train->y, train->n, &trial, &loss, err);
        if (st) {
            pm_kan_free(&cand);
            pm_kan_free(out);
            return st;
        }
        if (loss < best || !out->params) {
            best = loss;
            pm_kan_free(out);
            *out = cand;
        } else {
            pm_kan_free(&cand);
        }
    }
    return PM_OK;
}

/* ---- kan train ---- */

static int cmd_train(int argc, char **argv)
{
    kan_args a;
    if (!parse_args("kan train", SUB_TRAIN, argc, argv, &a)) return PM_EXIT_FAIL;
    if (a.help) return fputs(pm_cli_kan_help, stdout), PM_EXIT_OK;
    if (a.positional_count) return pm_cli_fail(a.verb, "unexpected argument '%s'", a.positional[0]);
    uint32_t width[PM_KAN_MAX_LAYERS + 1], depth, seed32, grid, order, restarts;
    uint64_t seed;
    pm_kan_train_opts o;
    progress_ctx pc;
    double prune = -1.0;
    if (!get_shape(&a, width, &depth) || !get_u32(&a, O_GRID, 5, 1, PM_KAN_MAX_GRID, &grid) ||
        !get_u32(&a, O_ORDER, 3, 1, PM_KAN_MAX_ORDER, &order) || !get_u32(&a, O_SEED, 0, 0, 0xffffffffu, &seed32) ||
        !train_options(&a, 100, NULL, 1.0, &o, &pc) || !get_double(&a, O_PRUNE, -1.0, 0.0, 1e300, &prune) ||
        !get_u32(&a, O_RESTARTS, 1, 1, 1000, &restarts))
        return PM_EXIT_FAIL;
    seed = seed32;
    pc.grid = grid;
    pm_error err = {0};
    dataset train, test;
    data_request req = {&a, width[0], width[depth], seed};
    if (!get_data(&req, &train, &test, &err)) return PM_EXIT_FAIL;
    pm_kan_init init;
    pm_kan_init_defaults(&init);
    init.grid = grid;
    init.order = order;
    init.seed = seed;
    pm_kan net = {0}, pruned = {0};
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    o.test_x = test.x;
    o.test_y = test.y;
    o.test_n = test.n;
    double loss = 0.0, train_rmse = 0.0, test_rmse = NAN, lfu_test = NAN;
    pm_status st = create_best(depth, width, &init, restarts, &train, &o, &net, &err);
    if (!st) st = pm_kan_train(&net, train.x, train.y, train.n, &o, &loss, &err);
    if (!st && prune >= 0.0) {
        st = pm_kan_prune(&net, train.x, train.n, prune, &pruned, &err);
        if (!st) {
            pm_kan_free(&net);
            net = pruned;
        }
    }
    double seconds = seconds_since(&t0);
    if (!st) st = pm_kan_rmse(&net, train.x, train.y, train.n, &train_rmse, &err);
    if (!st && test.n) st = pm_kan_rmse(&net, test.x, test.y, test.n, &test_rmse, &err);
    if (!st && test.n) {
        pm_kan_lfu_net lnet;
        if (!(st = pm_kan_export(&net, &lnet, &err))) {
            st = lfu_rmse(&lnet, &test, &lfu_test, &err);
            pm_kan_lfu_net_free(&lnet);
        }
    }
    if (!st) st = write_outputs(&a, &net, &err);
    if (st) {
        pm_kan_free(&net);
        dataset_free(&train);
        dataset_free(&test);
        return pm_cli_fail_err(a.verb, &err);
    }
    if (a.given[O_JSON]) {
        printf("{\"shape\": ");
        json_widths(net.width, net.depth);
        printf(", \"grid\": %u, \"order\": %u, \"steps\": %u, \"optimizer\": \"%s\", \"seed\": %u, \"train_samples\": %zu, "
               "\"test_samples\": %zu, \"loss\": %.9g, \"train_rmse\": %.9g, ",
               grid, order, o.steps, o.optimizer == PM_KAN_ADAM ? "adam" : "lbfgs", seed32, train.n, test.n, loss, train_rmse);
        if (test.n) printf("\"test_rmse\": %.9g, ", test_rmse);
        if (test.n && isfinite(lfu_test)) printf("\"lfu_test_rmse\": %.9g, ", lfu_test);
        printf("\"params\": %zu, \"seconds\": %.3f}\n", pm_kan_spline_params(&net), seconds);
    } else {
        printf("shape ");
        for (uint32_t l = 0; l <= net.depth; l++) printf("%s%u", l ? "," : "", net.width[l]);
        printf("  grid %u  steps %u  train_rmse %.4e", grid, o.steps, train_rmse);
        if (test.n) printf("  test_rmse %.4e", test_rmse);
        if (test.n && isfinite(lfu_test)) printf("  lfu_test_rmse %.4e", lfu_test);
        printf("  params %zu  %.2f s\n", pm_kan_spline_params(&net), seconds);
    }
    pm_kan_free(&net);
    dataset_free(&train);
    dataset_free(&test);
    return PM_EXIT_OK;
}

/* ---- kan toy: train across a list of grids with grid extension ---- */

static int cmd_toy(int argc, char **argv)
{
    kan_args a;
    if (!parse_args("kan toy", SUB_TOY, argc, argv, &a)) return PM_EXIT_FAIL;
    if (a.help) return fputs(pm_cli_kan_help, stdout), PM_EXIT_OK;
    if (a.positional_count) return pm_cli_fail(a.verb, "unexpected argument '%s'", a.positional[0]);
    if (!a.given[O_FUNCTION]) return pm_cli_fail(a.verb, "--function EXPR is required");
    if (!a.given[O_GRIDS]) return pm_cli_fail(a.verb, "--grids G1,G2,.. is required");
    uint32_t width[PM_KAN_MAX_LAYERS + 1], depth, grids[32], ngrids, seed32, order, restarts;
    pm_kan_train_opts o;
    progress_ctx pc;
    if (!get_shape(&a, width, &depth) || !(ngrids = get_list(&a, O_GRIDS, grids, 32, 1, PM_KAN_MAX_GRID)) ||
        !get_u32(&a, O_ORDER, 3, 1, PM_KAN_MAX_ORDER, &order) || !get_u32(&a, O_SEED, 0, 0, 0xffffffffu, &seed32) ||
        !train_options(&a, 200, (const uint32_t[2]){5, 30}, 0.5, &o, &pc) || !get_u32(&a, O_RESTARTS, 8, 1, 1000, &restarts))
        return PM_EXIT_FAIL;
    pm_error err = {0};
    dataset train, test;
    data_request req = {&a, width[0], width[depth], seed32};
    if (!get_data(&req, &train, &test, &err)) return PM_EXIT_FAIL;
    o.test_x = test.x;
    o.test_y = test.y;
    o.test_n = test.n;
    pm_kan_init init;
    pm_kan_init_defaults(&init);
    init.grid = grids[0];
    init.order = order;
    init.seed = seed32;
    pm_kan net = {0};
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double results[32][4];
    size_t params[32];
    pm_status st = create_best(depth, width, &init, restarts, &train, &o, &net, &err);
    for (uint32_t g = 0; g < ngrids && !st; g++) {
        pc.grid = grids[g];
        if (g) st = pm_kan_extend_grid(&net, grids[g], train.x, train.n, o.grid_eps, o.grid_margin, &err);
        if (!st) st = pm_kan_train(&net, train.x, train.y, train.n, &o, NULL, &err);
        if (!st) st = pm_kan_rmse(&net, train.x, train.y, train.n, &results[g][0], &err);
        if (!st) st = pm_kan_rmse(&net, test.x, test.y, test.n, &results[g][1], &err);
        pm_kan_lfu_net lnet;
        if (!st && !(st = pm_kan_export(&net, &lnet, &err))) {
            st = lfu_rmse(&lnet, &test, &results[g][2], &err);
            pm_kan_lfu_net_free(&lnet);
        }
        results[g][3] = seconds_since(&t0);
        params[g] = pm_kan_spline_params(&net);
    }
    if (!st) st = write_outputs(&a, &net, &err);
    pm_kan_free(&net);
    if (st) {
        dataset_free(&train);
        dataset_free(&test);
        return pm_cli_fail_err(a.verb, &err);
    }
    if (a.given[O_JSON]) {
        printf("{\"function\": \"");
        for (const char *c = a.value[O_FUNCTION]; *c; c++) {
            if (*c == '"' || *c == '\\') putchar('\\');
            if ((unsigned char)*c >= 0x20) putchar(*c);
        }
        printf("\", \"shape\": ");
        json_widths(width, depth);
        printf(", \"order\": %u, \"steps\": %u, \"restarts\": %u, \"optimizer\": \"%s\", \"seed\": %u, \"train_samples\": %zu, "
               "\"test_samples\": %zu, \"grids\": [",
               order, o.steps, restarts, o.optimizer == PM_KAN_ADAM ? "adam" : "lbfgs", seed32, train.n, test.n);
        for (uint32_t g = 0; g < ngrids; g++)
            printf("%s{\"grid\": %u, \"train_rmse\": %.9g, \"test_rmse\": %.9g, \"lfu_test_rmse\": %.9g, \"params\": %zu, "
                   "\"seconds\": %.3f}",
                   g ? ", " : "", grids[g], results[g][0], results[g][1], results[g][2], params[g], results[g][3]);
        printf("]}\n");
    } else {
        printf("%6s %14s %14s %16s %8s %9s\n", "grid", "train_rmse", "test_rmse", "lfu_test_rmse", "params", "seconds");
        for (uint32_t g = 0; g < ngrids; g++)
            printf("%6u %14.4e %14.4e %16.4e %8zu %9.2f\n", grids[g], results[g][0], results[g][1], results[g][2], params[g],
                   results[g][3]);
    }
    dataset_free(&train);
    dataset_free(&test);
    return PM_EXIT_OK;
}

/* ---- kan eval / export ---- */

/* A model file: PMKT (double) or PMKN (exported), by its magic. */
typedef struct model {
    int exported;
    pm_kan net;
    pm_kan_lfu_net lnet;
} model;

static pm_status load_model(const char *path, model *m, pm_error *err)
{
    memset(m, 0, sizeof *m);
    uint8_t *data;
    size_t len;
    pm_status st = pm_read_file(path, &data, &len, err);
    if (st) return st;
    if (len >= 4 && !memcmp(data, "PMKN", 4)) {
        m->exported = 1;
        st = pm_kan_lfu_net_load(data, len, &m->lnet, err);
    } else if (len < 4 || memcmp(data, "PMKT", 4)) {
        st = pm_error_set(err, PM_ERR_FORMAT, "byte 0 (magic): neither \"PMKT\" (a trained network) nor \"PMKN\" (an exported one)");
    } else {
        st = pm_kan_load(data, len, &m->net, err);
    }
    free(data);
    if (st) pm_error_prefix(err, "%s: ", path);
    return st;
}

static void model_free(model *m)
{
    pm_kan_free(&m->net);
    pm_kan_lfu_net_free(&m->lnet);
}

static int cmd_eval(int argc, char **argv)
{
    kan_args a;
    if (!parse_args("kan eval", SUB_EVAL, argc, argv, &a)) return PM_EXIT_FAIL;
    if (a.help) return fputs(pm_cli_kan_help, stdout), PM_EXIT_OK;
    if (a.positional_count != 1) return pm_cli_fail(a.verb, "expected one MODEL file (.pmkt or .pmkn)");
    uint32_t seed32;
    if (!get_u32(&a, O_SEED, 0, 0, 0xffffffffu, &seed32)) return PM_EXIT_FAIL;
    pm_error err = {0};
    model m;
    if (load_model(a.positional[0], &m, &err)) return pm_cli_fail_err(a.verb, &err);
    const uint32_t *w = m.exported ? m.lnet.width : m.net.width;
    uint32_t depth = m.exported ? m.lnet.depth : m.net.depth;
    dataset d;
    /* With --function, evaluate on the test set train would have used (seed + 1). */
    data_request req = {&a, w[0], w[depth], seed32};
    dataset train;
    if (!get_data(&req, &train, a.given[O_FUNCTION] ? &d : NULL, &err)) {
        model_free(&m);
        return PM_EXIT_FAIL;
    }
    if (!a.given[O_FUNCTION]) d = train, memset(&train, 0, sizeof train);
    dataset_free(&train);
    size_t outs = w[depth];
    double *pred = malloc(d.n * outs * sizeof *pred + 1);
    pm_status st = pred ? PM_OK : pm_error_set(&err, PM_ERR_NOMEM, "kan eval: no memory");
    if (!st && m.exported) {
        float *xf = malloc(d.n * d.in * sizeof *xf + 1), *yf = malloc(d.n * outs * sizeof *yf + 1);
        st = xf && yf ? PM_OK : pm_error_set(&err, PM_ERR_NOMEM, "kan eval: no memory");
        for (size_t i = 0; !st && i < d.n * d.in; i++) xf[i] = (float)d.x[i];
        if (!st) st = pm_kan_lfu_forward(&m.lnet, xf, d.n, yf, &err);
        for (size_t i = 0; !st && i < d.n * outs; i++) pred[i] = yf[i];
        free(xf);
        free(yf);
    } else if (!st) {
        st = pm_kan_forward(&m.net, d.x, d.n, pred, &err);
    }
    double sum = 0.0, maxerr = 0.0;
    for (size_t i = 0; !st && i < d.n * outs; i++) {
        double e = fabs(pred[i] - d.y[i]);
        sum += e * e;
        maxerr = fmax(maxerr, e);
    }
    if (!st && a.given[O_OUTPUT]) {
        uint8_t *bytes;
        size_t len;
        uint64_t shape[2] = {d.n, outs};
        float *f = malloc(d.n * outs * sizeof *f + 1);
        st = f ? PM_OK : pm_error_set(&err, PM_ERR_NOMEM, "kan eval: no memory");
        for (size_t i = 0; !st && i < d.n * outs; i++) f[i] = (float)pred[i];
        if (!st && !(st = pm_npy_build("<f4", shape, 2, f, d.n * outs * sizeof *f, &bytes, &len, &err))) {
            st = pm_write_file_atomic(a.value[O_OUTPUT], bytes, len, &err);
            free(bytes);
        }
        free(f);
    }
    free(pred);
    model_free(&m);
    size_t n = d.n;
    dataset_free(&d);
    if (st) return pm_cli_fail_err(a.verb, &err);
    double rmse = sqrt(sum / (double)(n * outs));
    const char *kind = m.exported ? "lfu-fp32" : "double";
    if (a.given[O_JSON])
        printf("{\"model\": \"%s\", \"samples\": %zu, \"rmse\": %.9g, \"max_abs_err\": %.9g}\n", kind, n, rmse, maxerr);
    else
        printf("%s model  samples %zu  rmse %.4e  max_abs_err %.4e\n", kind, n, rmse, maxerr);
    return PM_EXIT_OK;
}

static int cmd_export(int argc, char **argv)
{
    kan_args a;
    if (!parse_args("kan export", SUB_EXPORT, argc, argv, &a)) return PM_EXIT_FAIL;
    if (a.help) return fputs(pm_cli_kan_help, stdout), PM_EXIT_OK;
    if (a.positional_count != 1) return pm_cli_fail(a.verb, "expected one MODEL.pmkt file");
    if (!a.given[O_OUTPUT]) return pm_cli_fail(a.verb, "-o NET.pmkn is required");
    pm_error err = {0};
    model m;
    if (load_model(a.positional[0], &m, &err)) return pm_cli_fail_err(a.verb, &err);
    if (m.exported) {
        model_free(&m);
        return pm_cli_fail(a.verb, "%s is already an exported network (PMKN)", a.positional[0]);
    }
    pm_kan_lfu_net lnet;
    uint8_t *bytes = NULL;
    size_t len = 0;
    pm_status st = pm_kan_export(&m.net, &lnet, &err);
    if (!st) {
        st = pm_kan_lfu_net_save(&lnet, &bytes, &len, &err);
        if (!st) st = pm_write_file_atomic(a.value[O_OUTPUT], bytes, len, &err);
    }
    size_t edges = st ? 0 : lnet.edge_count;
    if (!st) pm_kan_lfu_net_free(&lnet);
    free(bytes);
    if (st) {
        model_free(&m);
        return pm_cli_fail_err(a.verb, &err);
    }
    if (a.given[O_JSON]) {
        printf("{\"shape\": ");
        json_widths(m.net.width, m.net.depth);
        printf(", \"edges\": %zu, \"bytes\": %zu}\n", edges, len);
    } else {
        printf("%s: %zu edges, %zu bytes\n", a.value[O_OUTPUT], edges, len);
    }
    model_free(&m);
    return PM_EXIT_OK;
}

/* ---- dispatch ---- */

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} subs[] = {{"train", cmd_train}, {"eval", cmd_eval}, {"export", cmd_export}, {"toy", cmd_toy}, {"run", pm_cli_kan_run}};

int pm_cli_kan(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        if (argc < 2) {
            fputs(pm_cli_kan_help, stderr);
            return PM_EXIT_FAIL;
        }
        fputs(pm_cli_kan_help, stdout);
        return PM_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++)
        if (!strcmp(argv[1], subs[i].name)) return subs[i].run(argc - 1, argv + 1);
    return pm_cli_fail("kan", "unknown sub-command '%s' (train, eval, export, toy, run)", argv[1]);
}
