/* Expression language tests (src/lfu/expr.c): values against the same
 * formula written in C, precedence and associativity, every error path with
 * its exact column, and hostile inputs (length, nesting, bytes). The values
 * against Python's math module are in tests/oracle/test_fit_oracle.py. */
#include "polymorph/fit.h"
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double eval_at(const char *text, double x)
{
    pm_expr *e = NULL;
    pm_error err = {0};
    if (pm_expr_parse(text, &e, &err) != PM_OK) {
        fprintf(stderr, "parse '%s' failed: %s\n", text, err.message);
        return NAN;
    }
    double y = pm_expr_eval(e, x);
    pm_expr_free(e);
    return y;
}

/* Expected: exactly the same double operations in C. */
static int same(double a, double b) { return (a != a && b != b) || a == b; }

TEST(test_values)
{
    const double xs[] = {-3.5, -1.0, -0.25, 0.0, 0.3, 1.0, 2.0, 7.25};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        double x = xs[i];
        CHECK(same(eval_at("x", x), x));
        CHECK(same(eval_at("exp(x)", x), exp(x)));
        CHECK(same(eval_at("log(x)", x), log(x)));
        CHECK(same(eval_at("sqrt(x)", x), sqrt(x)));
        CHECK(same(eval_at("sin(10*x)", x), sin(10 * x)));
        CHECK(same(eval_at("cos(x)+tan(x)", x), cos(x) + tan(x)));
        CHECK(same(eval_at("tanh(x)*erf(x)-erfc(x)", x), tanh(x) * erf(x) - erfc(x)));
        CHECK(same(eval_at("abs(x)", x), fabs(x)));
        CHECK(same(eval_at("atan(x)/sinh(x)", x), atan(x) / sinh(x)));
        CHECK(same(eval_at("cosh(x)", x), cosh(x)));
        CHECK(same(eval_at("log2(x)+log10(x)", x), log2(x) + log10(x)));
        CHECK(same(eval_at("exp2(x)", x), exp2(x)));
        CHECK(same(eval_at("sigmoid(x)", x), 1.0 / (1.0 + exp(-x))));
        CHECK(same(eval_at("silu(x)", x), x / (1.0 + exp(-x))));
        CHECK(same(eval_at("gelu(x)", x), 0.5 * x * erfc(-x * 0.70710678118654752440)));
        CHECK(same(eval_at("min(x, 1)", x), x < 1 ? x : 1));
        CHECK(same(eval_at("max(x,0)^2", x), pow(x > 0 ? x : 0, 2)));
        CHECK(same(eval_at("pow(2, x)", x), pow(2, x)));
        CHECK(same(eval_at("sin(1/(x+1.1))", x), sin(1 / (x + 1.1))));
        CHECK(same(eval_at("exp(-x^2/2)", x), exp(-pow(x, 2) / 2)));
    }
    CHECK(eval_at("pi", 0) == 3.14159265358979323846);
    CHECK(eval_at("e", 0) == 2.71828182845904523536);
    CHECK(eval_at("1e3 + 2.5E-1 + .5 + 3.", 0) == 1000.0 + 0.25 + 0.5 + 3.0);
    CHECK(eval_at("  x\t+ 1 ", 2) == 3.0);
    CHECK(isnan(eval_at("min(x, 1)", NAN)));
}

TEST(test_precedence)
{
    CHECK(eval_at("-x^2", 3) == -9);        /* -(x^2), as in Python */
    CHECK(eval_at("(-x)^2", 3) == 9);
    CHECK(eval_at("2^3^2", 0) == 512);      /* right associative: 2^(3^2) */
    CHECK(eval_at("2**3**2", 0) == 512);
    CHECK(eval_at("2^-1", 0) == 0.5);       /* the exponent may carry a sign */
    CHECK(eval_at("2^-x^2", 1) == 0.5);     /* 2^(-(x^2)) */
    CHECK(eval_at("1 + 2 * 3", 0) == 7);
    CHECK(eval_at("(1 + 2) * 3", 0) == 9);
    CHECK(eval_at("8 / 4 / 2", 0) == 1);    /* left associative */
    CHECK(eval_at("8 - 4 - 2", 0) == 2);
    CHECK(eval_at("2 * 3 ^ 2", 0) == 18);
    CHECK(eval_at("--x", 2) == 2);
    CHECK(eval_at("+x - -x", 2) == 4);
    CHECK(eval_at("-2 * -3", 0) == 6);
    CHECK(eval_at("2*x^2", 3) == 18);
}

/* Parses text, expects failure with this exact first line. */
static void expect_error(const char *text, const char *first_line)
{
    pm_expr *e = NULL;
    pm_error err = {0};
    pm_status st = pm_expr_parse(text, &e, &err);
    CHECK_MSG(st == PM_ERR_PARSE && e == NULL, "'%s' parsed", text);
    char line[PM_ERROR_MESSAGE_MAX];
    snprintf(line, sizeof line, "%s", err.message);
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    CHECK_MSG(strcmp(line, first_line) == 0, "'%s': got '%s', want '%s'", text, line, first_line);
    /* The context lines: the text and a caret under the column. */
    CHECK_MSG(nl && strchr(nl + 1, '\n') && strchr(nl + 1, '^'), "'%s': no caret in '%s'", text, err.message);
}

TEST(test_errors)
{
    expect_error("", "expr:1:1: empty expression");
    expect_error("   ", "expr:1:4: empty expression");
    expect_error("x +", "expr:1:4: expected a number, x, a name or '(' but found end of input");
    expect_error("x + )", "expr:1:5: expected a number, x, a name or '(' but found ')'");
    expect_error("(x + 1", "expr:1:7: expected ')' to close the '(' at column 1 but found end of input");
    expect_error("x y", "expr:1:3: unexpected 'y' after a complete expression");
    expect_error("2 3", "expr:1:3: unexpected '3' after a complete expression");
    expect_error("x $ 1", "expr:1:3: unexpected '$' after a complete expression");
    expect_error("$", "expr:1:1: expected a number, x, a name or '(' but found '$'");
    expect_error("\x01", "expr:1:1: expected a number, x, a name or '(' but found byte 0x01");
    expect_error("foo(x)",
                 "expr:1:1: unknown name 'foo' (the variable is x; constants pi, e; functions exp log sqrt sin cos tan "
                 "tanh erf erfc abs atan sinh cosh log2 log10 exp2 sigmoid silu gelu min max pow)");
    expect_error("sin x", "expr:1:1: 'sin' is a function: write sin(...)");
    expect_error("1 + sin", "expr:1:5: 'sin' is a function: write sin(...)");
    expect_error("min(x)", "expr:1:1: 'min' takes 2 arguments, got 1");
    expect_error("exp(x, 1)", "expr:1:1: 'exp' takes 1 argument, got 2");
    expect_error("exp()", "expr:1:1: 'exp' takes 1 argument, got 0");
    expect_error("max(1, 2", "expr:1:9: expected ',' or ')' in the arguments of 'max' but found end of input");
    expect_error("1e", "expr:1:1: malformed number '1e': the exponent has no digits");
    expect_error("2.5e+x", "expr:1:1: malformed number '2.5e+': the exponent has no digits");
    expect_error(".", "expr:1:1: malformed number '.': no digits");
    expect_error("1e999", "expr:1:1: number '1e999' is too large for a double");
    expect_error("x ^", "expr:1:4: expected a number, x, a name or '(' but found end of input");
    expect_error("x * * x", "expr:1:5: expected a number, x, a name or '(' but found '*'");
}

TEST(test_bounds)
{
    /* Nesting: 64 levels parse, deeper ones fail cleanly (no stack overflow). */
    char buf[PM_EXPR_MAX_CHARS + 64];
    size_t n = 0;
    for (int i = 0; i < 40; i++) buf[n++] = '(';
    buf[n++] = 'x';
    for (int i = 0; i < 40; i++) buf[n++] = ')';
    buf[n] = 0;
    CHECK(eval_at(buf, 5) == 5);
    n = 0;
    for (int i = 0; i < 2000; i++) buf[n++] = '(';
    buf[n] = 0;
    pm_expr *e = NULL;
    pm_error err = {0};
    CHECK(pm_expr_parse(buf, &e, &err) == PM_ERR_PARSE && strstr(err.message, "nesting deeper than 64 levels"));
    memset(buf, '-', 3000);
    strcpy(buf + 3000, "x");
    CHECK(pm_expr_parse(buf, &e, &err) == PM_ERR_PARSE && strstr(err.message, "nesting deeper than 64 levels"));
    n = 0;
    for (int i = 0; i < 30; i++) buf[n++] = 'x', buf[n++] = '^';
    buf[n++] = 'x';
    buf[n] = 0;
    CHECK(pm_expr_parse(buf, &e, &err) == PM_OK);
    pm_expr_free(e);
    /* Length: PM_EXPR_MAX_CHARS characters are fine, one more is not. */
    memset(buf, ' ', PM_EXPR_MAX_CHARS);
    buf[0] = 'x';
    buf[PM_EXPR_MAX_CHARS] = 0;
    CHECK(pm_expr_parse(buf, &e, &err) == PM_OK);
    pm_expr_free(e);
    buf[PM_EXPR_MAX_CHARS] = ' ';
    buf[PM_EXPR_MAX_CHARS + 1] = 0;
    CHECK(pm_expr_parse(buf, &e, &err) == PM_ERR_PARSE &&
          strncmp(err.message, "expr:1:4097: expression longer than 4096 characters", 51) == 0);
    /* A long flat sum needs only two pending values. */
    n = 0;
    for (int i = 0; i < 1000; i++) n += (size_t)snprintf(buf + n, sizeof buf - n, "x+");
    buf[n++] = '1';
    buf[n] = 0;
    CHECK(eval_at(buf, 1) == 1001);
    /* Every byte value as a one-character expression: no crash, digits and x parse. */
    for (int c = 1; c < 256; c++) {
        char s[2] = {(char)c, 0};
        pm_status st = pm_expr_parse(s, &e, &err);
        int ok = (c >= '0' && c <= '9') || c == 'x' || c == 'e' || c == ' ' || c == '\t';
        if (c == ' ' || c == '\t') ok = 0; /* blank: empty expression */
        CHECK_MSG((st == PM_OK) == ok, "byte %d", c);
        if (st == PM_OK) pm_expr_free(e);
    }
    CHECK(pm_expr_parse(NULL, &e, &err) == PM_ERR_INVALID);
    CHECK(pm_expr_parse("x", NULL, &err) == PM_ERR_INVALID);
    CHECK(isnan(pm_expr_eval(NULL, 1.0)));
}

/* Random token soup: every string either parses or fails with an expr:1:COL
 * message whose column lies within the text (plus one for end of input). */
TEST(test_fuzz)
{
    static const char *const toks[] = {"x", "1", "2.5", "e", "pi", "+", "-", "*", "/", "^", "**", "(", ")", ",",
                                       "sin(", "min(", "max(", " ", "1e", "abs", "exp(", "$", ".5"};
    uint64_t s = 0x243F6A8885A308D3ull;
    char buf[256];
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = 0;
        int len = 1 + (int)(s % 12);
        for (int k = 0; k < len; k++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            const char *t = toks[s % (sizeof toks / sizeof toks[0])];
            size_t tl = strlen(t);
            if (n + tl + 1 >= sizeof buf) break;
            memcpy(buf + n, t, tl);
            n += tl;
        }
        buf[n] = 0;
        pm_expr *e = NULL;
        pm_error err = {0};
        pm_status st = pm_expr_parse(buf, &e, &err);
        if (st == PM_OK) {
            (void)pm_expr_eval(e, 0.5);
            pm_expr_free(e);
            continue;
        }
        unsigned col = 0;
        CHECK_MSG(sscanf(err.message, "expr:1:%u:", &col) == 1 && col >= 1 && col <= n + 1, "'%s': %s", buf, err.message);
    }
}

int main(void)
{
    RUN(test_values);
    RUN(test_precedence);
    RUN(test_errors);
    RUN(test_bounds);
    RUN(test_fuzz);
    return TEST_SUMMARY();
}
