/* mlp_train: trains the MLP baseline (polymorph/mlp.h) on .npy or .csv data
 * and reports train/test metrics and wall time, as text or one JSON object.
 * The KAN benchmarks (bench/) call it beside `polymorph kan train`; with
 * --match-params it picks the hidden width whose parameter count is closest
 * to a KAN's, so the two models are compared at equal size. */
#include "polymorph/mlp.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
    "usage: mlp_train --train-x FILE --train-y FILE [--test-x FILE --test-y FILE]\n"
    "                 (--shape W0,W1,...,WL | --hidden H[,H...] | --match-params N [--depth D])\n"
    "                 [--act silu|relu|tanh] [--loss mse|ce] [--opt adam|lbfgs] [--steps N] [--lr R]\n"
    "                 (--lr default: 1e-3 for adam, 1 for lbfgs)\n"
    "                 [--batch B] [--history M] [--seed S] [--report-every N] [--predict-out FILE.npy] [--json]\n"
    "Data: .npy (C order, little-endian ints or floats) or .csv (one sample per line).\n"
    "x is n x inputs; y is n x outputs for --loss mse, or n class labels for --loss ce.\n"
    "--hidden and --match-params take the input and output widths from the data\n"
    "(outputs = number of classes for ce); --match-params N uses D hidden layers\n"
    "(default 1) of one width chosen so the parameter count is closest to N.\n"
    "--predict-out writes the test set's outputs (n x outputs, float64).\n";

/* ---- a matrix of doubles read from .npy or .csv ---- */

typedef struct matrix {
    double *v;
    size_t rows, cols;
} matrix;

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mlp_train: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

typedef struct npy_type {
    char code[3]; /* "f4", "i8", ... */
    size_t size;
} npy_type;

static const npy_type npy_types[] = {{"f4", 4}, {"f8", 8}, {"i1", 1}, {"i2", 2}, {"i4", 4}, {"i8", 8},
                                    {"u1", 1}, {"u2", 2}, {"u4", 4}, {"u8", 8}, {"b1", 1}};

static double npy_value(const char *code, const uint8_t *p)
{
    /* files are little-endian by contract; assemble the bits explicitly */
    uint64_t bits = 0;
    size_t size = (size_t)(code[1] - '0');
    for (size_t i = 0; i < size; i++) bits |= (uint64_t)p[i] << (8 * i);
    if (code[0] == 'f') {
        if (size == 4) {
            uint32_t b32 = (uint32_t)bits;
            float f;
            memcpy(&f, &b32, 4);
            return f;
        }
        double d;
        memcpy(&d, &bits, 8);
        return d;
    }
    if (code[0] == 'i') {
        int shift = (int)(64 - 8 * size);
        return (double)((int64_t)(bits << shift) >> shift);
    }
    return (double)bits;
}

/* Text after key in the header dict, or NULL. */
static const char *npy_field(const char *hdr, const char *key)
{
    const char *p = strstr(hdr, key);
    if (!p) return NULL;
    p += strlen(key);
    while (*p == ' ' || *p == '\'' || *p == '"') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

static int npy_parse(const char *path, const uint8_t *b, size_t len, matrix *out)
{
    static const uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (len < 10 || memcmp(b, magic, 6) != 0) return fail("%s: byte 0: not a .npy file (no \\x93NUMPY magic)", path);
    size_t hlen, start;
    if (b[6] == 1) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
        start = 10;
    } else if ((b[6] == 2 || b[6] == 3) && len >= 12) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        start = 12;
    } else {
        return fail("%s: byte 6: unsupported .npy format version %u", path, b[6]);
    }
    if (hlen > len - start) return fail("%s: byte %zu: header of %zu bytes runs past the end of the file", path, start, hlen);
    char *hdr = malloc(hlen + 1);
    if (!hdr) return fail("%s: out of memory", path);
    memcpy(hdr, b + start, hlen);
    hdr[hlen] = 0;
    int rc = 1;
    const char *descr = npy_field(hdr, "descr"), *fortran = npy_field(hdr, "fortran_order"), *shape = npy_field(hdr, "shape");
    if (!descr || !fortran || !shape) {
        fail("%s: byte %zu: header lacks descr, fortran_order or shape", path, start);
        goto out;
    }
    if (*descr == '\'' || *descr == '"') descr++;
    if (descr[0] != '<' && descr[0] != '|') {
        fail("%s: byte %zu: only little-endian data is read (descr starts with '%c')", path, start, descr[0]);
        goto out;
    }
    const npy_type *type = NULL;
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (strncmp(descr + 1, npy_types[i].code, 2) == 0 && (descr[3] == '\'' || descr[3] == '"')) type = &npy_types[i];
    if (!type) {
        fail("%s: byte %zu: unsupported dtype '%.8s' (ints, uints, bools, float32, float64)", path, start, descr);
        goto out;
    }
    if (strncmp(fortran, "False", 5) != 0) {
        fail("%s: byte %zu: Fortran-order arrays are not read; save with np.ascontiguousarray", path, start);
        goto out;
    }
    if (*shape != '(') {
        fail("%s: byte %zu: shape is not a tuple", path, start);
        goto out;
    }
    size_t dims[2] = {1, 1}, rank = 0;
    const char *p = shape + 1;
    for (;;) {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ')') break;
        if (!isdigit((unsigned char)*p) || rank == 2) {
            fail("%s: byte %zu: shape must be (n,) or (n, d) of integers", path, start);
            goto out;
        }
        errno = 0;
        char *end;
        unsigned long long d = strtoull(p, &end, 10);
        if (errno || d > ((size_t)1 << 40)) {
            fail("%s: byte %zu: dimension too large", path, start);
            goto out;
        }
        dims[rank++] = (size_t)d;
        p = end;
    }
    if (rank == 0) {
        fail("%s: byte %zu: a scalar is not a data set", path, start);
        goto out;
    }
    size_t count = dims[0] * dims[1], data_at = start + hlen;
    if (dims[1] && count / dims[1] != dims[0]) {
        fail("%s: byte %zu: shape overflows", path, start);
        goto out;
    }
    if ((len - data_at) / type->size < count || (len - data_at) != count * type->size) {
        fail("%s: byte %zu: shape (%zu, %zu) needs %zu data bytes, the file has %zu", path, data_at, dims[0], dims[1],
             count * type->size, len - data_at);
        goto out;
    }
    out->rows = dims[0];
    out->cols = rank == 1 ? 1 : dims[1];
    out->v = malloc((count ? count : 1) * sizeof(double));
    if (!out->v) {
        fail("%s: out of memory for %zu values", path, count);
        goto out;
    }
    char code[3] = {type->code[0] == 'b' ? 'u' : type->code[0], type->code[1], 0};
    for (size_t i = 0; i < count; i++) out->v[i] = npy_value(code, b + data_at + i * type->size);
    rc = 0;
out:
    free(hdr);
    return rc;
}

/* CSV: numbers separated by commas (or spaces); a first line that is not
 * numeric is taken as a header and skipped. */
static int csv_parse(const char *path, const char *text, matrix *out)
{
    size_t cap = 1024, count = 0, cols = 0, rows = 0;
    double *v = malloc(cap * sizeof(double));
    if (!v) return fail("%s: out of memory", path);
    const char *line = text;
    for (size_t lineno = 1; *line; lineno++) {
        const char *eol = strchr(line, '\n');
        if (!eol) eol = line + strlen(line);
        const char *p = line;
        size_t here = 0;
        int bad = 0;
        while (p < eol) {
            while (p < eol && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
            if (p == eol) break;
            char *end;
            double d = strtod(p, &end);
            if (end == p || end > eol) {
                bad = 1;
                break;
            }
            if (count == cap) {
                double *nv = realloc(v, 2 * cap * sizeof(double));
                if (!nv) {
                    free(v);
                    return fail("%s: out of memory", path);
                }
                v = nv;
                cap *= 2;
            }
            v[count++] = d;
            here++;
            p = end;
            while (p < eol && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
            if (p < eol && *p == ',') p++;
        }
        if (bad) {
            if (lineno == 1 && rows == 0) { /* header */
                count = 0;
                line = *eol ? eol + 1 : eol;
                continue;
            }
            free(v);
            return fail("%s:%zu:%zu: not a number", path, lineno, (size_t)(p - line) + 1);
        }
        if (here) {
            if (cols && here != cols) {
                free(v);
                return fail("%s:%zu: %zu values, earlier lines have %zu", path, lineno, here, cols);
            }
            cols = here;
            rows++;
        }
        line = *eol ? eol + 1 : eol;
    }
    if (!rows) {
        free(v);
        return fail("%s: no data rows", path);
    }
    out->v = v;
    out->rows = rows;
    out->cols = cols;
    return 0;
}

static int load_matrix(const char *path, matrix *out)
{
    uint8_t *bytes;
    size_t len;
    pm_error err = {0};
    if (pm_read_file(path, &bytes, &len, &err) != PM_OK) return fail("%s", err.message);
    size_t n = strlen(path);
    int rc = n >= 4 && strcmp(path + n - 4, ".npy") == 0 ? npy_parse(path, bytes, len, out)
                                                         : csv_parse(path, (const char *)bytes, out);
    free(bytes);
    return rc;
}

/* ---- options ---- */

typedef struct opts {
    const char *train_x, *train_y, *test_x, *test_y, *predict_out;
    uint32_t shape[PM_MLP_MAX_LAYERS + 1], shape_count;   /* --shape */
    uint32_t hidden[PM_MLP_MAX_LAYERS], hidden_count;     /* --hidden */
    uint64_t match_params;
    uint32_t depth;
    pm_mlp_act act;
    uint64_t seed;
    int json, lr_given;
    pm_mlp_train_opts train;
} opts;

static int parse_u64(const char *flag, const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s || !isdigit((unsigned char)*s)) return fail("%s needs a non-negative integer, got '%s'", flag, s ? s : "");
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max) return fail("%s: '%s' is not an integer in 0..%" PRIu64, flag, s, max);
    *out = v;
    return 0;
}

static int parse_list(const char *flag, const char *s, uint32_t *out, uint32_t cap, uint32_t *count)
{
    *count = 0;
    while (s && *s) {
        uint64_t v;
        char buf[32];
        size_t n = strcspn(s, ",");
        if (n == 0 || n >= sizeof buf) return fail("%s: bad list '%s'", flag, s);
        memcpy(buf, s, n);
        buf[n] = 0;
        if (parse_u64(flag, buf, PM_MLP_MAX_WIDTH, &v)) return 1;
        if (v == 0) return fail("%s: widths must be at least 1", flag);
        if (*count == cap) return fail("%s: at most %u entries", flag, cap);
        out[(*count)++] = (uint32_t)v;
        s += n;
        if (*s == ',') s++;
    }
    if (!*count) return fail("%s needs a comma-separated list of widths", flag);
    return 0;
}

static int parse_args(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    o->depth = 1;
    o->act = PM_MLP_ACT_SILU;
    pm_mlp_train_opts_default(&o->train);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            o->json = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            exit(0);
        }
        if (i + 1 >= argc) return fail("%s needs a value (see --help)", a);
        const char *v = argv[++i];
        uint64_t u;
        if (strcmp(a, "--train-x") == 0) o->train_x = v;
        else if (strcmp(a, "--train-y") == 0) o->train_y = v;
        else if (strcmp(a, "--test-x") == 0) o->test_x = v;
        else if (strcmp(a, "--test-y") == 0) o->test_y = v;
        else if (strcmp(a, "--predict-out") == 0) o->predict_out = v;
        else if (strcmp(a, "--shape") == 0) {
            if (parse_list(a, v, o->shape, PM_MLP_MAX_LAYERS + 1, &o->shape_count)) return 1;
        } else if (strcmp(a, "--hidden") == 0) {
            if (parse_list(a, v, o->hidden, PM_MLP_MAX_LAYERS - 1, &o->hidden_count)) return 1;
        } else if (strcmp(a, "--match-params") == 0) {
            if (parse_u64(a, v, (uint64_t)1 << 40, &o->match_params)) return 1;
            if (!o->match_params) return fail("--match-params must be positive");
        } else if (strcmp(a, "--depth") == 0) {
            if (parse_u64(a, v, PM_MLP_MAX_LAYERS - 1, &u)) return 1;
            if (!u) return fail("--depth must be at least 1 hidden layer");
            o->depth = (uint32_t)u;
        } else if (strcmp(a, "--act") == 0) {
            if (!pm_mlp_act_from_name(v, &o->act)) return fail("--act: unknown activation '%s' (silu, relu, tanh)", v);
        } else if (strcmp(a, "--loss") == 0) {
            if (!pm_mlp_loss_from_name(v, &o->train.loss)) return fail("--loss: unknown loss '%s' (mse, ce)", v);
        } else if (strcmp(a, "--opt") == 0) {
            if (!pm_mlp_optimizer_from_name(v, &o->train.optimizer)) return fail("--opt: unknown optimizer '%s' (adam, lbfgs)", v);
        } else if (strcmp(a, "--steps") == 0) {
            if (parse_u64(a, v, UINT32_MAX, &u)) return 1;
            o->train.steps = (uint32_t)u;
        } else if (strcmp(a, "--report-every") == 0) {
            if (parse_u64(a, v, UINT32_MAX, &u)) return 1;
            o->train.report_every = (uint32_t)u;
        } else if (strcmp(a, "--history") == 0) {
            if (parse_u64(a, v, 1000, &u)) return 1;
            o->train.history = (uint32_t)u;
        } else if (strcmp(a, "--batch") == 0) {
            if (parse_u64(a, v, SIZE_MAX, &u)) return 1;
            o->train.batch = (size_t)u;
        } else if (strcmp(a, "--seed") == 0) {
            if (parse_u64(a, v, UINT64_MAX, &o->seed)) return 1;
            o->train.seed = o->seed;
        } else if (strcmp(a, "--lr") == 0) {
            char *end;
            o->train.learning_rate = strtod(v, &end);
            if (end == v || *end || !(o->train.learning_rate > 0) || !isfinite(o->train.learning_rate))
                return fail("--lr needs a positive number, got '%s'", v);
            o->lr_given = 1;
        } else {
            return fail("unknown option '%s' (see --help)", a);
        }
    }
    /* L-BFGS's step is a fraction of a quasi-Newton step: 1 is its natural scale */
    if (!o->lr_given && o->train.optimizer == PM_MLP_OPT_LBFGS) o->train.learning_rate = 1.0;
    if (!o->train_x || !o->train_y) return fail("--train-x and --train-y are required (see --help)");
    if (!o->test_x != !o->test_y) return fail("--test-x and --test-y go together");
    if (o->predict_out && !o->test_x) return fail("--predict-out needs test data");
    if ((o->shape_count != 0) + (o->hidden_count != 0) + (o->match_params != 0) != 1)
        return fail("give exactly one of --shape, --hidden and --match-params");
    if (o->shape_count == 1) return fail("--shape needs at least an input and an output width");
    return 0;
}

/* ---- data ---- */

typedef struct dataset {
    matrix x, y;
    uint32_t *labels;
    pm_mlp_data d;
} dataset;

static void dataset_free(dataset *s)
{
    free(s->x.v);
    free(s->y.v);
    free(s->labels);
}

static int load_set(const char *xp, const char *yp, pm_mlp_loss loss, dataset *s)
{
    memset(s, 0, sizeof *s);
    if (load_matrix(xp, &s->x) || load_matrix(yp, &s->y)) return 1;
    if (s->x.rows != s->y.rows) return fail("%s has %zu samples but %s has %zu", xp, s->x.rows, yp, s->y.rows);
    if (!s->x.rows) return fail("%s: no samples", xp);
    s->d.x = s->x.v;
    s->d.n = s->x.rows;
    if (loss == PM_MLP_LOSS_MSE) {
        s->d.targets = s->y.v;
        return 0;
    }
    if (s->y.cols != 1) return fail("%s: cross-entropy needs one class label per sample, not %zu columns", yp, s->y.cols);
    s->labels = malloc(s->y.rows * sizeof(uint32_t));
    if (!s->labels) return fail("out of memory");
    for (size_t i = 0; i < s->y.rows; i++) {
        double v = s->y.v[i];
        if (!(v >= 0 && v < PM_MLP_MAX_WIDTH) || v != floor(v))
            return fail("%s: sample %zu: label %g is not a class index", yp, i, v);
        s->labels[i] = (uint32_t)v;
    }
    s->d.labels = s->labels;
    return 0;
}

static uint32_t class_count(const dataset *s)
{
    uint32_t top = 0;
    for (size_t i = 0; i < s->d.n; i++)
        if (s->labels[i] > top) top = s->labels[i];
    return top + 1;
}

/* The hidden width w (1..PM_MLP_MAX_WIDTH) whose count is nearest target;
 * the count grows with w, so a binary search finds the crossing. */
static uint32_t width_for_params(uint32_t in, uint32_t out, uint32_t depth, uint64_t target)
{
    uint32_t shape[PM_MLP_MAX_LAYERS + 1];
    uint32_t lo = 1, hi = PM_MLP_MAX_WIDTH;
    shape[0] = in;
    shape[depth + 1] = out;
    for (;;) {
        uint32_t mid = lo + (hi - lo) / 2;
        for (uint32_t l = 1; l <= depth; l++) shape[l] = mid;
        if (lo == hi) break;
        if (pm_mlp_param_count_for(shape, depth + 2) < target) lo = mid + 1;
        else hi = mid;
    }
    /* lo is the first width reaching target; the one below may be closer */
    for (uint32_t l = 1; l <= depth; l++) shape[l] = lo;
    uint64_t above = pm_mlp_param_count_for(shape, depth + 2);
    if (lo == 1) return lo;
    for (uint32_t l = 1; l <= depth; l++) shape[l] = lo - 1;
    uint64_t below = pm_mlp_param_count_for(shape, depth + 2);
    return target - below <= above - target ? lo - 1 : lo;
}

/* ---- progress and output ---- */

typedef struct progress_ctx {
    int json;
    pm_mlp_loss loss;
} progress_ctx;

static int print_progress(const pm_mlp_progress *p, void *user)
{
    const progress_ctx *c = user;
    fprintf(stderr, "step %u  loss %.6g", p->step, p->train_loss);
    if (!isnan(p->test_metric))
        fprintf(stderr, "  test %s %.6g", c->loss == PM_MLP_LOSS_MSE ? "rmse" : "accuracy", p->test_metric);
    fputc('\n', stderr);
    return 0;
}

static double now_seconds(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void print_shape(const pm_mlp *m)
{
    for (uint32_t l = 0; l <= m->layers; l++) printf("%s%u", l ? "," : "", m->widths[l]);
}

static int write_predictions(const char *path, const pm_mlp *m, const dataset *test)
{
    uint32_t outs = m->widths[m->layers];
    size_t count = test->d.n * outs;
    char header[128];
    int hl = snprintf(header, sizeof header, "{'descr': '<f8', 'fortran_order': False, 'shape': (%zu, %u), }", test->d.n,
                      outs);
    size_t pad = 64 - (10 + (size_t)hl + 1) % 64; /* header + newline to a multiple of 64 bytes */
    size_t hlen = (size_t)hl + pad + 1, total = 10 + hlen + count * 8;
    uint8_t *buf = malloc(total);
    double *y = malloc(count * sizeof(double));
    pm_error err = {0};
    int rc = 1;
    if (!buf || !y) {
        fail("out of memory for predictions");
        goto out;
    }
    if (pm_mlp_forward(m, test->d.x, test->d.n, y, &err) != PM_OK) {
        fail("%s", err.message);
        goto out;
    }
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)(hlen & 0xff);
    buf[9] = (uint8_t)(hlen >> 8);
    memcpy(buf + 10, header, (size_t)hl);
    memset(buf + 10 + hl, ' ', pad);
    buf[10 + hlen - 1] = '\n';
    for (size_t i = 0; i < count; i++) {
        uint64_t bits;
        memcpy(&bits, &y[i], 8);
        for (int k = 0; k < 8; k++) buf[10 + hlen + i * 8 + k] = (uint8_t)(bits >> (8 * k));
    }
    if (pm_write_file_atomic(path, buf, total, &err) != PM_OK) {
        fail("%s", err.message);
        goto out;
    }
    rc = 0;
out:
    free(buf);
    free(y);
    return rc;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse_args(argc, argv, &o)) return 1;
    dataset train, test;
    memset(&test, 0, sizeof test);
    int rc = 1;
    pm_mlp m = {0};
    pm_error err = {0};
    if (load_set(o.train_x, o.train_y, o.train.loss, &train)) goto out;
    if (o.test_x && load_set(o.test_x, o.test_y, o.train.loss, &test)) goto out;
    uint32_t in = (uint32_t)(train.x.cols > PM_MLP_MAX_WIDTH ? 0 : train.x.cols);
    uint32_t out = o.train.loss == PM_MLP_LOSS_MSE ? (uint32_t)(train.y.cols > PM_MLP_MAX_WIDTH ? 0 : train.y.cols)
                                                   : class_count(&train);
    if (!in || !out) {
        fail("%s: data width out of range", o.train_x);
        goto out;
    }
    if (o.test_x && test.x.cols != train.x.cols) {
        fail("%s has %zu inputs per sample, the training set %zu", o.test_x, test.x.cols, train.x.cols);
        goto out;
    }
    if (o.test_x && o.train.loss == PM_MLP_LOSS_MSE && test.y.cols != train.y.cols) {
        fail("%s has %zu targets per sample, the training set %zu", o.test_y, test.y.cols, train.y.cols);
        goto out;
    }
    uint32_t shape[PM_MLP_MAX_LAYERS + 1], count;
    if (o.shape_count) {
        memcpy(shape, o.shape, sizeof shape);
        count = o.shape_count;
        if (shape[0] != in) {
            fail("--shape starts with %u inputs, the data has %u", shape[0], in);
            goto out;
        }
        if (o.train.loss == PM_MLP_LOSS_MSE && shape[count - 1] != out) {
            fail("--shape ends with %u outputs, the data has %u targets", shape[count - 1], out);
            goto out;
        }
    } else {
        uint32_t depth = o.hidden_count ? o.hidden_count : o.depth;
        shape[0] = in;
        for (uint32_t l = 0; l < depth; l++)
            shape[l + 1] = o.hidden_count ? o.hidden[l] : width_for_params(in, out, depth, o.match_params);
        shape[depth + 1] = out;
        count = depth + 2;
    }
    if (pm_mlp_init(&m, shape, count, o.act, o.seed, &err) != PM_OK) {
        fail("%s", err.message);
        goto out;
    }
    progress_ctx pc = {o.json, o.train.loss};
    o.train.progress = o.train.report_every ? print_progress : NULL;
    o.train.user = &pc;
    pm_mlp_progress last;
    double t0 = now_seconds();
    if (pm_mlp_train(&m, &o.train, &train.d, o.test_x ? &test.d : NULL, &last, &err) != PM_OK) {
        fail("%s", err.message);
        goto out;
    }
    double seconds = now_seconds() - t0;
    double train_metric;
    pm_status st = o.train.loss == PM_MLP_LOSS_MSE ? pm_mlp_rmse(&m, &train.d, &train_metric, &err)
                                                   : pm_mlp_accuracy(&m, &train.d, &train_metric, &err);
    if (st != PM_OK) {
        fail("%s", err.message);
        goto out;
    }
    if (o.predict_out && write_predictions(o.predict_out, &m, &test)) goto out;
    const char *metric = o.train.loss == PM_MLP_LOSS_MSE ? "rmse" : "accuracy";
    if (o.json) {
        printf("{\"shape\": [");
        print_shape(&m);
        printf("], \"params\": %zu, \"act\": \"%s\", \"loss\": \"%s\", \"optimizer\": \"%s\", \"steps\": %u, "
               "\"learning_rate\": %.17g, \"batch\": %zu, \"seed\": %" PRIu64 ", \"train_loss\": %.17g, "
               "\"train_%s\": %.17g",
               m.param_count, pm_mlp_act_name(m.act), pm_mlp_loss_name(o.train.loss),
               pm_mlp_optimizer_name(o.train.optimizer), last.step, o.train.learning_rate, o.train.batch, o.seed,
               last.train_loss, metric, train_metric);
        if (o.test_x) printf(", \"test_%s\": %.17g", metric, last.test_metric);
        printf(", \"train_seconds\": %.6f}\n", seconds);
    } else {
        printf("shape ");
        print_shape(&m);
        printf("  params %zu  act %s  %s, %u steps\n", m.param_count, pm_mlp_act_name(m.act),
               pm_mlp_optimizer_name(o.train.optimizer), last.step);
        printf("train loss %.6g  train %s %.6g", last.train_loss, metric, train_metric);
        if (o.test_x) printf("  test %s %.6g", metric, last.test_metric);
        printf("\ntraining took %.3f s\n", seconds);
    }
    rc = fflush(stdout) != 0 || ferror(stdout);
    if (rc) fail("could not write standard output");
out:
    pm_mlp_free(&m);
    dataset_free(&train);
    dataset_free(&test);
    return rc;
}
