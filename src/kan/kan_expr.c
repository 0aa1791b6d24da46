/* A small multivariate expression language for KAN data sets
 * (`polymorph kan ... --function 'exp(sin(pi*x)+y^2)'`): recursive-descent
 * parsing into a postfix program, evaluated in double precision. */
#include "kan_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef enum op_kind { OP_NUM, OP_VAR, OP_NEG, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW, OP_FUNC } op_kind;

typedef double (*func1)(double);

typedef struct op {
    op_kind kind;
    double value;
    int var;
    func1 fn;
} op;

struct pm_kan_expr {
    op *ops;
    size_t count, cap;
};

static double f_abs(double v) { return fabs(v); }

static const struct {
    const char *name;
    func1 fn;
} funcs[] = {{"exp", exp}, {"log", log},   {"sqrt", sqrt}, {"sin", sin}, {"cos", cos},
             {"tan", tan}, {"tanh", tanh}, {"erf", erf},   {"abs", f_abs}};

static const struct {
    const char *name;
    int var;
} vars[] = {{"x", 0}, {"y", 1}, {"z", 2}, {"w", 3}, {"x1", 0}, {"x2", 1}, {"x3", 2}, {"x4", 3}};

typedef struct parser {
    const char *text, *p;
    pm_kan_expr *e;
    uint32_t used;
    pm_error *err;
    int depth;
} parser;

static pm_status fail(parser *ps, const char *what)
{
    return pm_error_set(ps->err, PM_ERR_PARSE, "expression col %d: %s", (int)(ps->p - ps->text) + 1, what);
}

static pm_status emit(parser *ps, op o)
{
    pm_kan_expr *e = ps->e;
    if (e->count == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 16;
        op *n = realloc(e->ops, cap * sizeof *n);
        if (!n) return pm_error_set(ps->err, PM_ERR_NOMEM, "expression: no memory");
        e->ops = n;
        e->cap = cap;
    }
    e->ops[e->count++] = o;
    return PM_OK;
}

static void skip(parser *ps)
{
    while (isspace((unsigned char)*ps->p)) ps->p++;
}

static pm_status expr(parser *ps);

static pm_status primary(parser *ps)
{
    skip(ps);
    if (++ps->depth > 100) return fail(ps, "nested too deeply");
    pm_status st = PM_OK;
    const char *c = ps->p;
    if (*c == '(') {
        ps->p++;
        if ((st = expr(ps))) return st;
        skip(ps);
        if (*ps->p != ')') return fail(ps, "expected ')'");
        ps->p++;
    } else if (isdigit((unsigned char)*c) || *c == '.') {
        char *end;
        double v = strtod(c, &end);
        if (end == c) return fail(ps, "bad number");
        ps->p = end;
        st = emit(ps, (op){OP_NUM, v, 0, NULL});
    } else if (isalpha((unsigned char)*c)) {
        const char *s = c;
        while (isalnum((unsigned char)*ps->p) || *ps->p == '_') ps->p++;
        size_t n = (size_t)(ps->p - s);
        char name[16];
        if (n >= sizeof name) {
            ps->p = s;
            return fail(ps, "name too long");
        }
        memcpy(name, s, n);
        name[n] = 0;
        for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
            if (!strcmp(name, vars[i].name)) {
                ps->used |= 1u << vars[i].var;
                ps->depth--;
                return emit(ps, (op){OP_VAR, 0.0, vars[i].var, NULL});
            }
        if (!strcmp(name, "pi") || !strcmp(name, "e")) {
            ps->depth--;
            return emit(ps, (op){OP_NUM, name[0] == 'p' ? 3.14159265358979323846 : 2.71828182845904523536, 0, NULL});
        }
        for (size_t i = 0; i < sizeof funcs / sizeof *funcs; i++)
            if (!strcmp(name, funcs[i].name)) {
                skip(ps);
                if (*ps->p != '(') return fail(ps, "expected '(' after a function name");
                ps->p++;
                if ((st = expr(ps))) return st;
                skip(ps);
                if (*ps->p != ')') return fail(ps, "expected ')'");
                ps->p++;
                ps->depth--;
                return emit(ps, (op){OP_FUNC, 0.0, 0, funcs[i].fn});
            }
        ps->p = s;
        return fail(ps, "unknown name (variables x y z w or x1..x4; functions exp log sqrt sin cos tan tanh erf abs)");
    } else {
        return fail(ps, *c ? "unexpected character" : "unexpected end of expression");
    }
    ps->depth--;
    return st;
}

/* power := primary ['^' unary]  (right associative, binds tighter than unary minus) */
static pm_status unary(parser *ps);
static pm_status power(parser *ps)
{
    pm_status st = primary(ps);
    if (st) return st;
    skip(ps);
    if (*ps->p == '^') {
        ps->p++;
        if (++ps->depth > 100) return fail(ps, "nested too deeply");
        st = unary(ps);
        ps->depth--;
        if (st) return st;
        return emit(ps, (op){OP_POW, 0.0, 0, NULL});
    }
    return PM_OK;
}

static pm_status unary(parser *ps)
{
    skip(ps);
    if (*ps->p == '-' || *ps->p == '+') {
        int neg = *ps->p == '-';
        ps->p++;
        if (++ps->depth > 100) return fail(ps, "nested too deeply");
        pm_status st = unary(ps);
        ps->depth--;
        if (st || !neg) return st;
        return emit(ps, (op){OP_NEG, 0.0, 0, NULL});
    }
    return power(ps);
}

static pm_status term(parser *ps)
{
    pm_status st = unary(ps);
    for (skip(ps); !st && (*ps->p == '*' || *ps->p == '/'); skip(ps)) {
        op_kind k = *ps->p == '*' ? OP_MUL : OP_DIV;
        ps->p++;
        if (!(st = unary(ps))) st = emit(ps, (op){k, 0.0, 0, NULL});
    }
    return st;
}

static pm_status expr(parser *ps)
{
    pm_status st = term(ps);
    for (skip(ps); !st && (*ps->p == '+' || *ps->p == '-'); skip(ps)) {
        op_kind k = *ps->p == '+' ? OP_ADD : OP_SUB;
        ps->p++;
        if (!(st = term(ps))) st = emit(ps, (op){k, 0.0, 0, NULL});
    }
    return st;
}

pm_status pm_kan_expr_parse(const char *text, pm_kan_expr **out, uint32_t *vars_used, pm_error *err)
{
    if (!out) return pm_error_set(err, PM_ERR_INVALID, "expression: NULL output");
    *out = NULL;
    if (!text) return pm_error_set(err, PM_ERR_INVALID, "expression: NULL text");
    pm_kan_expr *e = calloc(1, sizeof *e);
    if (!e) return pm_error_set(err, PM_ERR_NOMEM, "expression: no memory");
    parser ps = {text, text, e, 0, err, 0};
    pm_status st = expr(&ps);
    skip(&ps);
    if (!st && *ps.p) st = fail(&ps, *ps.p == ')' ? "unbalanced ')'" : "unexpected text after the expression");
    if (st) {
        pm_kan_expr_free(e);
        return st;
    }
    if (vars_used) *vars_used = ps.used;
    *out = e;
    return PM_OK;
}

double pm_kan_expr_eval(const pm_kan_expr *e, const double *v)
{
    double stack[1024]; /* parse depth <= 100 keeps a few values per level */
    size_t sp = 0;
    for (size_t i = 0; i < e->count; i++) {
        const op *o = &e->ops[i];
        switch (o->kind) {
        case OP_NUM: stack[sp++] = o->value; break;
        case OP_VAR: stack[sp++] = v[o->var]; break;
        case OP_NEG: stack[sp - 1] = -stack[sp - 1]; break;
        case OP_FUNC: stack[sp - 1] = o->fn(stack[sp - 1]); break;
        default: {
            double b = stack[--sp], a = stack[sp - 1];
            stack[sp - 1] = o->kind == OP_ADD ? a + b : o->kind == OP_SUB ? a - b : o->kind == OP_MUL ? a * b
                          : o->kind == OP_DIV ? a / b : pow(a, b);
        }
        }
        if (sp >= sizeof stack / sizeof *stack) return NAN; /* deeper than any parse allows */
    }
    return sp ? stack[sp - 1] : NAN;
}

void pm_kan_expr_free(pm_kan_expr *e)
{
    if (!e) return;
    free(e->ops);
    free(e);
}
