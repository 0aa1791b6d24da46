/* polymorph fit: fit a univariate expression into an LFU table, measure the
 * table bit for bit through the evaluator, optionally search the smallest
 * table meeting an error target, and write it as PMLF for `lfu.ld`. The
 * fitting itself lives in the lfu layer (include/polymorph/fit.h). */
#include "cli.h"
#include "polymorph/fit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char pm_cli_fit_help[] =
    "usage: polymorph fit EXPR --domain A,B [--segments G] [--degree D] [--mode uniform|exponent]\n"
    "                     [--form plain|x-times] [--oor clamp|const|linear|extend] [--eps E]\n"
    "                     [--objective abs|rel] [--method minimax|lsq] [--retune] [--name NAME] [--json]\n"
    "                     [-o TABLE.pmlf]\n"
    "\n"
    "Fit y = EXPR(x) over [A, B] into an LFU table of per-segment polynomials\n"
    "with fp32 coefficients, then measure the table through the bit-exact\n"
    "evaluator against EXPR in double rounded once to fp32 and to bf16.\n"
    "\n"
    "EXPR: x, numbers, pi, e, + - * / ^ (or **), parentheses and exp log sqrt\n"
    "sin cos tan tanh erf erfc abs atan sinh cosh log2 log10 exp2 sigmoid silu\n"
    "gelu min(a,b) max(a,b) pow(a,b). -x^2 is -(x^2). An EXPR starting with '-'\n"
    "goes after '--'. A and B may be constant expressions (-pi,pi).\n"
    "\n"
    "options:\n"
    "  --domain A,B       the interval to fit and measure (required)\n"
    "  --segments G       segments, 1..4096 (default 16; chosen by --eps)\n"
    "  --degree D         polynomial degree 1..3 (default 3; --eps without it tries 1..3)\n"
    "  --mode M           uniform (default): equal segments over [A, B];\n"
    "                     exponent: range reduction by the fp32 exponent, for f = c*2^(x/L),\n"
    "                     c/sqrt(x) or c/x (detected from EXPR); [A, B] is then where it is measured\n"
    "  --form F           plain (default) y = p(x); x-times y = x*p(x) (tanh, sin: exact near 0)\n"
    "  --oor P            outside [A, B]: clamp (default), const f(A)/f(B), linear (tangents), extend\n"
    "  --eps E            find the smallest table whose error is at most E: absolute (1e-4)\n"
    "                     or fp32 ulps (2ulp)\n"
    "  --objective O      what each segment's fit minimises: abs (absolute error; the default)\n"
    "                     or rel (relative error, what ulps measure; the default with --eps Nulp)\n"
    "  --method M         minimax (default: Lawson-reweighted least squares) or lsq\n"
    "  --retune           re-tune the rounded fp32 coefficients by greedy +-1 ulp steps (uniform mode)\n"
    "  --name NAME        the table's name (default: fit)\n"
    "  --json             print one JSON object instead of the table\n"
    "  -o, --output FILE  write the table as PMLF (loadable with lfu.ld)\n"
    "  -h, --help         show this help\n"
    "\n"
    "examples:\n"
    "  polymorph fit 'exp(x)' --domain -10,0 --segments 64\n"
    "  polymorph fit 'sin(x)' --domain -pi,pi --form x-times --eps 2ulp --json\n"
    "  polymorph fit 'erf(x)' --domain -4,4 --eps 1e-6 -o erf.pmlf\n";

enum { OPT_DOMAIN, OPT_SEGMENTS, OPT_DEGREE, OPT_MODE, OPT_FORM, OPT_OOR, OPT_EPS, OPT_METHOD, OPT_RETUNE, OPT_NAME,
       OPT_JSON, OPT_OUTPUT, OPT_OBJECTIVE, OPT_COUNT };
static const pm_cli_option fit_options[OPT_COUNT] = {
    [OPT_DOMAIN] = {"domain", 0, true, false},   [OPT_SEGMENTS] = {"segments", 0, true, false},
    [OPT_DEGREE] = {"degree", 0, true, false},   [OPT_MODE] = {"mode", 0, true, false},
    [OPT_FORM] = {"form", 0, true, false},       [OPT_OOR] = {"oor", 0, true, false},
    [OPT_EPS] = {"eps", 0, true, false},         [OPT_METHOD] = {"method", 0, true, false},
    [OPT_RETUNE] = {"retune", 0, false, false}, [OPT_NAME] = {"name", 0, true, false},
    [OPT_JSON] = {"json", 0, false, false},      [OPT_OUTPUT] = {"output", 'o', true, false},
    [OPT_OBJECTIVE] = {"objective", 0, true, false},
};

static const char *const mode_names[] = {"uniform", "exponent"};
static const char *const form_names[] = {"plain", "x-times"};
static const char *const oor_names[] = {"clamp", "const", "linear", "extend"};

/* Index of value in names, or -1 (after printing the error). */
static int pick(const char *option, const char *value, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(value, names[i]) == 0) return i;
    char list[128] = "";
    for (int i = 0; i < n; i++) {
        strcat(list, i ? (i == n - 1 ? " or " : ", ") : "");
        strcat(list, names[i]);
    }
    pm_cli_fail("fit", "--%s '%s': expected %s", option, value, list);
    return -1;
}

static int parse_uint(const char *option, const char *value, unsigned lo, unsigned hi, unsigned *out)
{
    char *end;
    unsigned long v = strtoul(value, &end, 10);
    if (!*value || *end || value[0] == '-' || value[0] == '+' || v < lo || v > hi) {
        pm_cli_fail("fit", "--%s '%s': expected a whole number in %u..%u", option, value, lo, hi);
        return 0;
    }
    *out = (unsigned)v;
    return 1;
}

/* One end of --domain: a constant expression (no x). */
static int domain_end(const char *text, size_t len, double *out)
{
    char buf[256];
    if (len >= sizeof buf) {
        pm_cli_fail("fit", "--domain: an end longer than %zu characters", sizeof buf - 1);
        return 0;
    }
    memcpy(buf, text, len);
    buf[len] = 0;
    pm_expr *e;
    pm_error err = {0};
    if (pm_expr_parse(buf, &e, &err)) {
        pm_error_prefix(&err, "--domain '%s': ", buf);
        pm_cli_fail_err("fit", &err);
        return 0;
    }
    /* A constant gives the same value whatever x is; NaN for x catches x. */
    double v = pm_expr_eval(e, NAN), w = pm_expr_eval(e, 1.0);
    pm_expr_free(e);
    if (!(v == w && isfinite(v))) {
        pm_cli_fail("fit", "--domain '%s': an end must be a finite constant", buf);
        return 0;
    }
    *out = v;
    return 1;
}

static int parse_domain(const char *value, double *a, double *b)
{
    int depth = 0;
    const char *comma = NULL;
    for (const char *c = value; *c; c++) {
        if (*c == '(') depth++;
        else if (*c == ')') depth--;
        else if (*c == ',' && depth == 0) {
            if (comma) return pm_cli_fail("fit", "--domain '%s': expected two ends A,B", value), 0;
            comma = c;
        }
    }
    if (!comma) return pm_cli_fail("fit", "--domain '%s': expected A,B (two ends separated by a comma)", value), 0;
    if (!domain_end(value, (size_t)(comma - value), a) || !domain_end(comma + 1, strlen(comma + 1), b)) return 0;
    if (!(*a < *b)) return pm_cli_fail("fit", "--domain '%s': A (%g) must be below B (%g)", value, *a, *b), 0;
    return 1;
}

/* ---- output ---- */

static void json_string(pm_text *o, const char *s)
{
    pm_text_append(o, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') pm_text_printf(o, "\\%c", c);
        else if (c < 0x20 || c == 0x7f) pm_text_printf(o, "\\u%04x", c);
        else pm_text_append(o, s, 1);
    }
    pm_text_append(o, "\"", 1);
}

static void json_number(pm_text *o, double v)
{
    if (isfinite(v)) pm_text_printf(o, "%.9g", v);
    else pm_text_printf(o, "null");
}

typedef struct fit_result {
    const char *expr, *output;
    const pm_lfu_table *t;
    const pm_fit_report *r;
    const pm_fit_options *o;
    const pm_fit_eps *eps; /* NULL without --eps */
    const pm_fit_trial *trials;
} fit_result;

static void print_json(pm_text *o, const fit_result *f)
{
    const pm_lfu_table *t = f->t;
    const pm_fit_report *r = f->r;
    pm_text_printf(o, "{\"expr\": ");
    json_string(o, f->expr);
    pm_text_printf(o, ", \"domain\": [%.9g, %.9g], \"mode\": \"%s\", \"form\": \"%s\", \"oor\": \"%s\", \"reduction\": ",
                   (double)r->x_min, (double)r->x_max, mode_names[t->mode], form_names[t->form], oor_names[t->oor]);
    if (t->mode == PM_LFU_MODE_EXPONENT) pm_text_printf(o, "\"%s\"", pm_fit_reduction_name((unsigned)t->param[PM_LFU_PARAM_REDUCTION]));
    else pm_text_printf(o, "null");
    pm_text_printf(o, ", \"table_domain\": [%.9g, %.9g], \"segments\": %u, \"degree\": %u, \"bytes\": %zu, \"method\": \"%s\", \"objective\": \"%s\", \"retune\": %s",
                   (double)t->x_min, (double)t->x_max, (unsigned)t->segments, (unsigned)t->degree, r->bytes,
                   pm_fit_method_name((pm_fit_method)f->o->method), pm_fit_objective_name((pm_fit_objective)f->o->objective),
                   f->o->retune && t->mode == PM_LFU_MODE_UNIFORM ? "true" : "false");
    pm_text_printf(o, ", \"max_ulp_fp32\": %lld, \"max_ulp_bf16\": %lld, \"max_abs_err\": ", (long long)r->max_ulp_fp32,
                   (long long)r->max_ulp_bf16);
    json_number(o, r->max_abs_err);
    pm_text_printf(o, ", \"worst_x\": %.9g, \"worst_x_bf16\": %.9g, \"worst_x_abs\": %.9g, \"points\": %llu, \"exhaustive\": %s",
                   (double)r->worst_x_fp32, (double)r->worst_x_bf16, (double)r->worst_x_abs, (unsigned long long)r->points,
                   r->exhaustive ? "true" : "false");
    pm_text_printf(o, ", \"eps\": ");
    if (f->eps) {
        pm_text_printf(o, "{\"value\": ");
        json_number(o, f->eps->value);
        pm_text_printf(o, ", \"unit\": \"%s\"}, \"search\": [", f->eps->in_ulps ? "ulp" : "abs");
        int first = 1;
        for (int d = 0; d < 3; d++) {
            const pm_fit_trial *tr = &f->trials[d];
            if (!tr->degree) continue;
            pm_text_printf(o, "%s{\"degree\": %u, \"segments\": ", first ? "" : ", ", (unsigned)tr->degree);
            if (tr->segments) pm_text_printf(o, "%u, \"bytes\": %zu}", (unsigned)tr->segments, tr->bytes);
            else pm_text_printf(o, "null, \"bytes\": null}");
            first = 0;
        }
        pm_text_printf(o, "]");
    } else {
        pm_text_printf(o, "null");
    }
    pm_text_printf(o, ", \"output\": ");
    if (f->output) json_string(o, f->output);
    else pm_text_printf(o, "null");
    pm_text_printf(o, "}\n");
}

static void print_text(pm_text *o, const fit_result *f)
{
    const pm_lfu_table *t = f->t;
    const pm_fit_report *r = f->r;
    pm_text_printf(o, "fit %s on [%.9g, %.9g]\n", f->expr, (double)r->x_min, (double)r->x_max);
    pm_text_printf(o, "  table      %s mode", mode_names[t->mode]);
    if (t->mode == PM_LFU_MODE_EXPONENT)
        pm_text_printf(o, " (%s reduction, p over [%.9g, %.9g])", pm_fit_reduction_name((unsigned)t->param[PM_LFU_PARAM_REDUCTION]),
                       (double)t->x_min, (double)t->x_max);
    pm_text_printf(o, ", %s form, degree %u, %u segment%s, out of range %s, %zu bytes\n", form_names[t->form],
                   (unsigned)t->degree, (unsigned)t->segments, t->segments == 1 ? "" : "s", oor_names[t->oor], r->bytes);
    pm_text_printf(o, "  method     %s of the %s error in double on Chebyshev nodes, fp32 coefficients%s\n",
                   f->o->method == PM_FIT_MINIMAX ? "minimax (Lawson-reweighted least squares)" : "least squares",
                   f->o->objective == PM_FIT_REL ? "relative" : "absolute",
                   f->o->retune && t->mode == PM_LFU_MODE_UNIFORM ? ", re-tuned by +-1 ulp steps" : "");
    if (f->eps) {
        pm_text_printf(o, "  search     eps %g%s:", f->eps->value, f->eps->in_ulps ? " ulp (fp32)" : " absolute");
        for (int d = 0; d < 3; d++) {
            const pm_fit_trial *tr = &f->trials[d];
            if (!tr->degree) continue;
            if (tr->segments)
                pm_text_printf(o, " degree %u: %u segment%s (%zu bytes);", (unsigned)tr->degree, (unsigned)tr->segments,
                               tr->segments == 1 ? "" : "s", tr->bytes);
            else pm_text_printf(o, " degree %u: none up to %d;", (unsigned)tr->degree, PM_LFU_MAX_SEGMENTS);
        }
        pm_text_printf(o, " smallest: degree %u\n", (unsigned)t->degree);
    }
    pm_text_printf(o, "  measured   %llu inputs%s\n", (unsigned long long)r->points,
                   r->exhaustive ? " (every fp32 in the domain)"
                   : t->mode == PM_LFU_MODE_UNIFORM ? " (evenly spaced in x and in bit pattern, plus segment boundaries)"
                                                    : " (evenly spaced in x and in bit pattern)");
    pm_text_printf(o, "  max error  %lld ulp fp32    at x = %.9g\n", (long long)r->max_ulp_fp32, (double)r->worst_x_fp32);
    pm_text_printf(o, "             %lld ulp bf16    at x = %.9g\n", (long long)r->max_ulp_bf16, (double)r->worst_x_bf16);
    pm_text_printf(o, "             %.3e absolute at x = %.9g\n", r->max_abs_err, (double)r->worst_x_abs);
    if (f->output) pm_text_printf(o, "  wrote      %s\n", f->output);
}

/* ---- the verb ---- */

static int read_options(const pm_cli_parsed *p, pm_fit_options *o, pm_fit_eps *eps, int *has_eps)
{
    pm_fit_options_default(o);
    const char *v;
    unsigned u;
    if (!(v = pm_cli_value(p, OPT_DOMAIN))) return pm_cli_fail("fit", "missing --domain A,B"), 0;
    if (!parse_domain(v, &o->x_min, &o->x_max)) return 0;
    *has_eps = p->given[OPT_EPS] != 0;
    if (*has_eps && p->given[OPT_SEGMENTS]) return pm_cli_fail("fit", "--eps chooses the segment count: drop --segments"), 0;
    if ((v = pm_cli_value(p, OPT_SEGMENTS))) {
        if (!parse_uint("segments", v, 1, PM_LFU_MAX_SEGMENTS, &u)) return 0;
        o->segments = u;
    }
    if ((v = pm_cli_value(p, OPT_DEGREE))) {
        if (!parse_uint("degree", v, 1, PM_LFU_MAX_DEGREE, &u)) return 0;
        o->degree = (uint8_t)u;
    } else if (*has_eps) {
        o->degree = 0;
    }
    int k;
    if ((v = pm_cli_value(p, OPT_MODE))) {
        if ((k = pick("mode", v, mode_names, 2)) < 0) return 0;
        o->mode = (uint8_t)k;
    }
    if ((v = pm_cli_value(p, OPT_FORM))) {
        if ((k = pick("form", v, form_names, 2)) < 0) return 0;
        o->form = (uint8_t)k;
    }
    if ((v = pm_cli_value(p, OPT_OOR))) {
        if ((k = pick("oor", v, oor_names, 4)) < 0) return 0;
        o->oor = (uint8_t)k;
    }
    if ((v = pm_cli_value(p, OPT_METHOD))) {
        static const char *const methods[] = {"minimax", "lsq"};
        if ((k = pick("method", v, methods, 2)) < 0) return 0;
        o->method = (uint8_t)k;
    }
    o->retune = p->given[OPT_RETUNE] != 0;
    o->name = pm_cli_value(p, OPT_NAME);
    if (o->name && strlen(o->name) >= sizeof ((pm_lfu_table *)0)->name)
        return pm_cli_fail("fit", "--name '%s': at most %zu bytes", o->name, sizeof ((pm_lfu_table *)0)->name - 1), 0;
    if ((v = pm_cli_value(p, OPT_EPS))) {
        pm_error err = {0};
        if (pm_fit_parse_eps(v, eps, &err)) return pm_error_prefix(&err, "--"), pm_cli_fail_err("fit", &err), 0;
        o->objective = eps->in_ulps ? PM_FIT_REL : PM_FIT_ABS; /* fit what is measured */
    }
    if ((v = pm_cli_value(p, OPT_OBJECTIVE))) {
        static const char *const objectives[] = {"abs", "rel"};
        if ((k = pick("objective", v, objectives, 2)) < 0) return 0;
        o->objective = (uint8_t)k;
    }
    return 1;
}

static pm_status write_table(const pm_lfu_table *t, const char *path, pm_error *err)
{
    size_t size = pm_lfu_table_serialized_size(t), written = 0;
    uint8_t *buf = malloc(size);
    if (!buf) return pm_error_set(err, PM_ERR_NOMEM, "no memory for a %zu-byte table", size);
    pm_status st = pm_lfu_table_serialize(t, buf, size, &written, err);
    if (st == PM_OK) st = pm_write_file_atomic(path, buf, written, err);
    free(buf);
    return st;
}

int pm_cli_fit(int argc, char **argv)
{
    pm_cli_parsed p;
    if (!pm_cli_parse("fit", argc, argv, fit_options, OPT_COUNT, &p)) return PM_EXIT_FAIL;
    if (p.help) {
        fputs(pm_cli_fit_help, stdout);
        return PM_EXIT_OK;
    }
    if (p.positional_count == 0) return pm_cli_fail("fit", "missing the expression to fit (e.g. 'exp(x)')");
    if (p.positional_count > 1)
        return pm_cli_fail("fit", "expected one expression, got %d arguments (quote the expression)", p.positional_count);
    pm_fit_options o;
    pm_fit_eps eps = {0};
    int has_eps = 0;
    if (!read_options(&p, &o, &eps, &has_eps)) return PM_EXIT_FAIL;
    const char *text = p.positional[0];
    pm_error err = {0};
    pm_expr *e = NULL;
    if (pm_expr_parse(text, &e, &err)) return pm_cli_fail_err("fit", &err);
    pm_lfu_table t;
    memset(&t, 0, sizeof t);
    pm_fit_report r;
    pm_fit_trial trials[3];
    memset(trials, 0, sizeof trials);
    pm_status st;
    if (has_eps) {
        st = pm_fit_search(pm_expr_fn, e, &o, &eps, &t, &r, trials, &err);
    } else {
        pm_fit_sweep *sw = NULL;
        st = pm_fit_table(pm_expr_fn, e, &o, &t, &err);
        if (st == PM_OK) st = pm_fit_sweep_create(pm_expr_fn, e, o.x_min, o.x_max, &sw, &err);
        if (st == PM_OK) st = pm_fit_measure(sw, &t, &r, &err);
        pm_fit_sweep_destroy(sw);
    }
    const char *out = pm_cli_value(&p, OPT_OUTPUT);
    if (st == PM_OK && out) st = write_table(&t, out, &err);
    int rc = PM_EXIT_OK;
    if (st != PM_OK) {
        rc = pm_cli_fail_err("fit", &err);
    } else {
        if (has_eps) o.degree = t.degree;
        fit_result f = {text, out, &t, &r, &o, has_eps ? &eps : NULL, trials};
        pm_text txt = {0};
        if (p.given[OPT_JSON]) print_json(&txt, &f);
        else print_text(&txt, &f);
        if (txt.failed) rc = pm_cli_fail("fit", "out of memory");
        else if (fputs(txt.data, stdout) == EOF || fflush(stdout) != 0) rc = pm_cli_fail("fit", "cannot write to standard output");
        free(txt.data);
    }
    pm_lfu_table_free(&t);
    pm_expr_free(e);
    return rc;
}
