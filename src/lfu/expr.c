/* The math-expression language of `polymorph fit`: a recursive-descent
 * parser (bounded length and nesting, so hostile input cannot exhaust the
 * stack) that compiles to a postfix program, evaluated in double with libm.
 * Host-side only: this is the reference a table is fitted to, not datapath. */
#include "polymorph/fit.h"

#include <ctype.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the function table ---- */

static double f_sigmoid(double v) { return 1.0 / (1.0 + exp(-v)); }
static double f_silu(double v) { return v / (1.0 + exp(-v)); }
static double f_gelu(double v) { return 0.5 * v * erfc(-v * 0.70710678118654752440); }
static double f_min(double a, double b) { return a != a || b != b ? NAN : a < b ? a : b; }
static double f_max(double a, double b) { return a != a || b != b ? NAN : a > b ? a : b; }

typedef struct expr_func {
    const char *name;
    int arity;
    double (*one)(double);
    double (*two)(double, double);
} expr_func;

static const expr_func funcs[] = {
    {"exp", 1, exp, NULL},         {"log", 1, log, NULL},       {"sqrt", 1, sqrt, NULL},
    {"sin", 1, sin, NULL},         {"cos", 1, cos, NULL},       {"tan", 1, tan, NULL},
    {"tanh", 1, tanh, NULL},       {"erf", 1, erf, NULL},       {"erfc", 1, erfc, NULL},
    {"abs", 1, fabs, NULL},        {"atan", 1, atan, NULL},     {"sinh", 1, sinh, NULL},
    {"cosh", 1, cosh, NULL},       {"log2", 1, log2, NULL},     {"log10", 1, log10, NULL},
    {"exp2", 1, exp2, NULL},       {"sigmoid", 1, f_sigmoid, NULL}, {"silu", 1, f_silu, NULL},
    {"gelu", 1, f_gelu, NULL},     {"min", 2, NULL, f_min},     {"max", 2, NULL, f_max},
    {"pow", 2, NULL, pow},
};
#define FUNC_COUNT (sizeof funcs / sizeof funcs[0])

/* ---- the compiled program ---- */

typedef enum op_kind { OP_CONST, OP_X, OP_NEG, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW, OP_CALL } op_kind;

typedef struct expr_op {
    uint8_t kind;  /* op_kind */
    uint8_t func;  /* OP_CALL: index into funcs */
    double value;  /* OP_CONST */
} expr_op;

/* The postfix program never needs a deeper stack than this: the parser
 * tracks the depth and rejects expressions beyond it. */
#define EXPR_STACK 128

struct pm_expr {
    size_t count;
    expr_op ops[];
};

/* ---- parser ---- */

typedef struct parser {
    const char *text;
    size_t pos, len;
    int depth;           /* recursion depth, bounded by PM_EXPR_MAX_DEPTH */
    int stack, max_stack;
    expr_op *ops;
    size_t count, cap;
    pm_error *err;
    int failed;
} parser;

/* "expr:1:COL: message" then the text and a caret under COL. */
static pm_status fail_at(parser *p, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static pm_status fail_at(parser *p, size_t pos, const char *fmt, ...)
{
    if (p->failed) return PM_ERR_PARSE;
    p->failed = 1;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Show at most 160 characters of context around the column; non-printable
     * bytes are shown as '?' so the caret stays aligned. */
    size_t from = pos > 80 ? pos - 80 : 0, to = from + 160 < p->len ? from + 160 : p->len;
    char line[168], caret[168];
    size_t n = 0;
    for (size_t i = from; i < to; i++, n++) {
        unsigned char c = (unsigned char)p->text[i];
        line[n] = isprint(c) ? (char)c : '?';
        caret[n] = ' ';
    }
    line[n] = 0;
    size_t at = pos - from;
    if (at > n) at = n;
    caret[at] = '^';
    caret[at + 1] = 0;
    pm_error_set(p->err, PM_ERR_PARSE, "expr:1:%zu: %s\n%s\n%s", pos + 1, msg, line, caret);
    return PM_ERR_PARSE;
}

static void emit(parser *p, uint8_t kind, uint8_t func, double value, int stack_delta, size_t pos)
{
    if (p->failed) return;
    if (p->count == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 32;
        expr_op *n = realloc(p->ops, cap * sizeof *n);
        if (!n) {
            p->failed = 1;
            pm_error_set(p->err, PM_ERR_NOMEM, "expr: no memory for %zu operations", cap);
            return;
        }
        p->ops = n;
        p->cap = cap;
    }
    p->ops[p->count++] = (expr_op){kind, func, value};
    p->stack += stack_delta;
    if (p->stack > p->max_stack) p->max_stack = p->stack;
    if (p->stack > EXPR_STACK) fail_at(p, pos, "expression needs more than %d pending values; simplify it", EXPR_STACK);
}

static void skip_space(parser *p)
{
    while (p->pos < p->len && (p->text[p->pos] == ' ' || p->text[p->pos] == '\t')) p->pos++;
}

static int peek(parser *p)
{
    skip_space(p);
    return p->pos < p->len ? (unsigned char)p->text[p->pos] : 0;
}

/* What stands at pos, for messages: "end of input", "')'", "'foo'". */
static void describe(parser *p, char *buf, size_t cap)
{
    skip_space(p);
    if (p->pos >= p->len) {
        snprintf(buf, cap, "end of input");
        return;
    }
    unsigned char c = (unsigned char)p->text[p->pos];
    if (isalpha(c) || c == '_') {
        size_t e = p->pos;
        while (e < p->len && (isalnum((unsigned char)p->text[e]) || p->text[e] == '_')) e++;
        snprintf(buf, cap, "'%.*s'", (int)(e - p->pos > 40 ? 40 : e - p->pos), p->text + p->pos);
    } else if (isprint(c)) {
        snprintf(buf, cap, "'%c'", c);
    } else {
        snprintf(buf, cap, "byte 0x%02x", c);
    }
}

static void parse_sum(parser *p);

static void parse_number(parser *p)
{
    size_t start = p->pos, i = p->pos;
    while (i < p->len && isdigit((unsigned char)p->text[i])) i++;
    if (i < p->len && p->text[i] == '.') {
        i++;
        while (i < p->len && isdigit((unsigned char)p->text[i])) i++;
    }
    if (i - start == 1 && p->text[start] == '.') {
        fail_at(p, start, "malformed number '.': no digits");
        return;
    }
    if (i < p->len && (p->text[i] == 'e' || p->text[i] == 'E')) {
        size_t j = i + 1;
        if (j < p->len && (p->text[j] == '+' || p->text[j] == '-')) j++;
        if (j >= p->len || !isdigit((unsigned char)p->text[j])) {
            fail_at(p, start, "malformed number '%.*s': the exponent has no digits", (int)(j - start > 40 ? 40 : j - start),
                    p->text + start);
            return;
        }
        while (j < p->len && isdigit((unsigned char)p->text[j])) j++;
        i = j;
    }
    char buf[128];
    if (i - start >= sizeof buf) {
        fail_at(p, start, "number longer than %zu characters", sizeof buf - 1);
        return;
    }
    memcpy(buf, p->text + start, i - start);
    buf[i - start] = 0;
    double v = strtod(buf, NULL);
    if (!isfinite(v)) {
        fail_at(p, start, "number '%s' is too large for a double", buf);
        return;
    }
    p->pos = i;
    emit(p, OP_CONST, 0, v, 1, start);
}

static void parse_call(parser *p, size_t name_pos, size_t name_len, unsigned fi)
{
    const expr_func *fn = &funcs[fi];
    p->pos++; /* '(' */
    int args = 0;
    if (peek(p) != ')') {
        for (;;) {
            parse_sum(p);
            if (p->failed) return;
            args++;
            if (peek(p) != ',') break;
            p->pos++;
        }
    }
    if (peek(p) != ')') {
        char what[64];
        describe(p, what, sizeof what);
        fail_at(p, p->pos, "expected ',' or ')' in the arguments of '%.*s' but found %s", (int)name_len, p->text + name_pos,
                what);
        return;
    }
    if (args != fn->arity) {
        fail_at(p, name_pos, "'%s' takes %d argument%s, got %d", fn->name, fn->arity, fn->arity == 1 ? "" : "s", args);
        return;
    }
    p->pos++;
    emit(p, OP_CALL, (uint8_t)fi, 0.0, fn->arity == 2 ? -1 : 0, name_pos);
}

static void parse_name(parser *p)
{
    size_t start = p->pos, i = p->pos;
    while (i < p->len && (isalnum((unsigned char)p->text[i]) || p->text[i] == '_')) i++;
    size_t n = i - start;
    p->pos = i;
    const char *s = p->text + start;
    if (n == 1 && s[0] == 'x') {
        emit(p, OP_X, 0, 0.0, 1, start);
        return;
    }
    if (n == 2 && memcmp(s, "pi", 2) == 0) {
        emit(p, OP_CONST, 0, 3.14159265358979323846, 1, start);
        return;
    }
    if (n == 1 && s[0] == 'e') {
        emit(p, OP_CONST, 0, 2.71828182845904523536, 1, start);
        return;
    }
    for (unsigned fi = 0; fi < FUNC_COUNT; fi++) {
        if (strlen(funcs[fi].name) == n && memcmp(funcs[fi].name, s, n) == 0) {
            if (peek(p) != '(') {
                fail_at(p, start, "'%s' is a function: write %s(...)", funcs[fi].name, funcs[fi].name);
                return;
            }
            parse_call(p, start, n, fi);
            return;
        }
    }
    fail_at(p, start, "unknown name '%.*s' (the variable is x; constants pi, e; functions exp log sqrt sin cos tan tanh "
                      "erf erfc abs atan sinh cosh log2 log10 exp2 sigmoid silu gelu min max pow)",
            (int)(n > 40 ? 40 : n), s);
}

static void parse_primary(parser *p)
{
    int c = peek(p);
    if (isdigit(c) || c == '.') {
        parse_number(p);
    } else if (isalpha(c) || c == '_') {
        parse_name(p);
    } else if (c == '(') {
        size_t open = p->pos++;
        parse_sum(p);
        if (p->failed) return;
        if (peek(p) != ')') {
            char what[64];
            describe(p, what, sizeof what);
            fail_at(p, p->pos, "expected ')' to close the '(' at column %zu but found %s", open + 1, what);
            return;
        }
        p->pos++;
    } else {
        char what[64];
        describe(p, what, sizeof what);
        fail_at(p, p->pos, "expected a number, x, a name or '(' but found %s", what);
    }
}

static int at_power(parser *p)
{
    int c = peek(p);
    return c == '^' || (c == '*' && p->pos + 1 < p->len && p->text[p->pos + 1] == '*');
}

static void parse_unary(parser *p);

/* power := primary [('^' | '**') unary]: the exponent is itself a unary,
 * which makes ^ right-associative and lets 2^-x parse, as in Python. */
static void parse_power(parser *p)
{
    parse_primary(p);
    if (p->failed || !at_power(p)) return;
    size_t op = p->pos;
    p->pos += p->text[p->pos] == '^' ? 1 : 2;
    parse_unary(p);
    emit(p, OP_POW, 0, 0.0, -1, op);
}

static void parse_unary(parser *p)
{
    if (++p->depth > PM_EXPR_MAX_DEPTH) {
        fail_at(p, p->pos, "nesting deeper than %d levels", PM_EXPR_MAX_DEPTH);
        return;
    }
    int c = peek(p);
    if (c == '-' || c == '+') {
        size_t op = p->pos++;
        parse_unary(p);
        if (c == '-') emit(p, OP_NEG, 0, 0.0, 0, op);
    } else {
        parse_power(p);
    }
    p->depth--;
}

static void parse_term(parser *p)
{
    parse_unary(p);
    for (;;) {
        int c = peek(p);
        if (p->failed || !(c == '*' || c == '/') || at_power(p)) return;
        size_t op = p->pos++;
        parse_unary(p);
        emit(p, c == '*' ? OP_MUL : OP_DIV, 0, 0.0, -1, op);
    }
}

/* Every cycle of the recursion (parentheses, arguments, exponents, signs)
 * passes through parse_unary, which alone bounds the depth. */
static void parse_sum(parser *p)
{
    parse_term(p);
    for (;;) {
        int c = peek(p);
        if (p->failed || !(c == '+' || c == '-')) break;
        size_t op = p->pos++;
        parse_term(p);
        emit(p, c == '+' ? OP_ADD : OP_SUB, 0, 0.0, -1, op);
    }
}

pm_status pm_expr_parse(const char *text, pm_expr **out, pm_error *err)
{
    if (!out) return pm_error_set(err, PM_ERR_INVALID, "expr: NULL output");
    *out = NULL;
    if (!text) return pm_error_set(err, PM_ERR_INVALID, "expr: NULL text");
    parser p = {0};
    p.text = text;
    p.err = err;
    while (p.len <= PM_EXPR_MAX_CHARS && text[p.len]) p.len++; /* strnlen is not C11 */
    if (p.len > PM_EXPR_MAX_CHARS) {
        p.len = PM_EXPR_MAX_CHARS;
        return fail_at(&p, PM_EXPR_MAX_CHARS, "expression longer than %d characters", PM_EXPR_MAX_CHARS);
    }
    if (peek(&p) == 0 && p.pos >= p.len) return fail_at(&p, p.pos, "empty expression");
    parse_sum(&p);
    if (!p.failed && peek(&p) != 0) {
        char what[64];
        describe(&p, what, sizeof what);
        fail_at(&p, p.pos, "unexpected %s after a complete expression", what);
    }
    if (p.failed) {
        free(p.ops);
        return err ? err->status : PM_ERR_PARSE;
    }
    pm_expr *e = malloc(sizeof *e + p.count * sizeof e->ops[0]);
    if (!e) {
        free(p.ops);
        return pm_error_set(err, PM_ERR_NOMEM, "expr: no memory for %zu operations", p.count);
    }
    e->count = p.count;
    memcpy(e->ops, p.ops, p.count * sizeof e->ops[0]);
    free(p.ops);
    *out = e;
    return PM_OK;
}

void pm_expr_free(pm_expr *e) { free(e); }

/* ---- evaluation ---- */

double pm_expr_eval(const pm_expr *e, double x)
{
    if (!e) return NAN;
    double st[EXPR_STACK + 1];
    int sp = 0;
    for (size_t i = 0; i < e->count; i++) {
        const expr_op *o = &e->ops[i];
        switch ((op_kind)o->kind) {
        case OP_CONST: st[sp++] = o->value; break;
        case OP_X: st[sp++] = x; break;
        case OP_NEG: st[sp - 1] = -st[sp - 1]; break;
        case OP_ADD: sp--; st[sp - 1] += st[sp]; break;
        case OP_SUB: sp--; st[sp - 1] -= st[sp]; break;
        case OP_MUL: sp--; st[sp - 1] *= st[sp]; break;
        case OP_DIV: sp--; st[sp - 1] /= st[sp]; break;
        case OP_POW: sp--; st[sp - 1] = pow(st[sp - 1], st[sp]); break;
        case OP_CALL: {
            const expr_func *fn = &funcs[o->func];
            if (fn->arity == 2) {
                sp--;
                st[sp - 1] = fn->two(st[sp - 1], st[sp]);
            } else {
                st[sp - 1] = fn->one(st[sp - 1]);
            }
            break;
        }
        }
    }
    return sp == 1 ? st[0] : NAN;
}

double pm_expr_fn(void *ctx, double x) { return pm_expr_eval((const pm_expr *)ctx, x); }
