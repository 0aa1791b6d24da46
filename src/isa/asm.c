/* The assembler: Polymorph assembly text (docs/assembly.md) to a pm_program.
 * Two passes over the same lines: pass 1 lays the program out and defines
 * every label, pass 2 evaluates operands (forward references resolved) and
 * emits. Instruction syntax comes from the table rows; the first error stops
 * the run with "file:line:col: message", the source line and a caret. */
#define _POSIX_C_SOURCE 200809L
#define _XOPEN_SOURCE 700
#include "isa_internal.h"
#include "polymorph/lfu.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* Limits that keep hostile input cheap: everything is linear in the input. */
#define ASM_MAX_DATA_BYTES ((uint64_t)64 << 20)  /* all data sections together */
#define ASM_MAX_CODE_WORDS ((uint64_t)1 << 20)   /* assembled by hand; builders emit more */
#define ASM_MAX_INCLUDE_DEPTH 16
#define ASM_MAX_INCLUDES 1000                     /* .include expansions per pass */
#define ASM_MAX_SOURCE_BYTES ((uint64_t)64 << 20) /* one include file */
#define ASM_MAX_EXPR_DEPTH 128

/* ---- state ---- */

typedef struct src_file {
    char *path;     /* as given / resolved, for messages */
    char *identity; /* realpath when the file exists, else path: cycle detection */
    char *text;
    size_t len;
} src_file;

typedef enum sym_kind { SYM_CODE = 1, SYM_DATA, SYM_EQU, SYM_REG } sym_kind;

typedef struct asm_sym {
    char name[PM_SYMBOL_NAME_MAX];
    uint8_t kind;  /* sym_kind */
    uint8_t mem;   /* pm_mem_kind for labels */
    bool known;    /* value available (an .equ of a forward reference waits for pass 2) */
    bool local;    /* .L names: usable, never exported */
    int64_t value;
    uint32_t file, line;
    bool is_tensor;
    pm_format dtype;
    uint32_t rank;
    uint64_t shape[PM_TENSOR_MAX_RANK];
} asm_sym;

typedef struct chunk {
    pm_mem_kind mem;
    uint64_t addr, size, cap;
    uint8_t *data;
    uint32_t file, line, col;
} chunk;

/* The line being parsed. */
typedef struct scan {
    const char *line, *end, *p; /* line start, end (no newline), cursor */
    uint32_t file, lineno;
} scan;

typedef struct asm_ctx {
    pm_error *err;
    int pass;
    src_file *files;
    size_t file_count, file_cap;
    uint32_t include_stack[ASM_MAX_INCLUDE_DEPTH + 1];
    int include_depth;
    size_t includes_this_pass;

    asm_sym *syms;
    size_t sym_count, sym_cap;
    uint32_t *hash; /* index + 1, 0 = empty */
    size_t hash_cap;

    uint64_t *code;
    size_t code_count, code_cap;
    size_t pass1_code_count;
    chunk *chunks;
    size_t chunk_count, chunk_cap;
    long cur;             /* -1: .text, else chunk index */
    long last_chunk[2];   /* per memory, for `.dram` / `.sram` without an address */
    uint64_t data_total;

    bool have_entry;
    int64_t entry;
} asm_ctx;

/* ---- errors ---- */

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when invalid. */
static int utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    if (c < 0x80) return 1;
    int n;
    unsigned min;
    if (c >= 0xC2 && c <= 0xDF) n = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, min = 0x10000;
    else return 0;
    if (end - p < n) return 0;
    unsigned v = c & (0x7F >> n);
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (p[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    return n;
}

/* Columns count characters, not bytes (1-based). */
static unsigned column_of(const char *line, const char *pos)
{
    unsigned col = 1;
    const unsigned char *p = (const unsigned char *)line, *e = (const unsigned char *)pos;
    while (p < e) {
        int n = utf8_len(p, e);
        p += n ? n : 1;
        col++;
    }
    return col;
}

/* Appends a printable rendering of [from, to) to buf: control bytes and
 * invalid UTF-8 become '?', so a message is always clean text. */
static size_t render(char *buf, size_t cap, size_t at, const char *from, const char *to)
{
    const unsigned char *p = (const unsigned char *)from, *e = (const unsigned char *)to;
    while (p < e && at + 5 < cap) {
        int n = utf8_len(p, e);
        if (n == 0 || (n == 1 && (*p < 0x20 || *p == 0x7F))) {
            buf[at++] = *p == '\t' ? ' ' : '?';
            p++;
        } else {
            memcpy(buf + at, p, (size_t)n);
            at += (size_t)n;
            p += n;
        }
    }
    buf[at] = 0;
    return at;
}

#define SHOW_BEFORE 60
#define SHOW_AFTER 60

static pm_status fail_at(asm_ctx *a, const scan *s, const char *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static pm_status fail_at(asm_ctx *a, const scan *s, const char *pos, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (pos < s->line) pos = s->line;
    if (pos > s->end) pos = s->end;
    unsigned col = column_of(s->line, pos);
    /* Show a window of the line around the column, cut at character starts. */
    const char *from = pos - s->line > SHOW_BEFORE ? pos - SHOW_BEFORE : s->line;
    while (from > s->line && ((unsigned char)*from & 0xC0) == 0x80) from--;
    const char *to = s->end - pos > SHOW_AFTER ? pos + SHOW_AFTER : s->end;
    while (to < s->end && ((unsigned char)*to & 0xC0) == 0x80) to++;
    static const char ellipsis[] = "...";
    char shown[512];
    size_t n = 0;
    if (from > s->line) n = render(shown, sizeof shown, n, ellipsis, ellipsis + 3);
    unsigned caret = column_of(from, pos) - 1 + (from > s->line ? 3 : 0);
    n = render(shown, sizeof shown, n, from, to);
    if (to < s->end) render(shown, sizeof shown, n, ellipsis, ellipsis + 3);
    char carets[SHOW_BEFORE + 8];
    if (caret > SHOW_BEFORE + 4) caret = SHOW_BEFORE + 4;
    memset(carets, ' ', caret);
    carets[caret] = '^';
    carets[caret + 1] = 0;
    const char *path = a->files[s->file].path;
    return pm_error_set(a->err, PM_ERR_PARSE, "%s:%" PRIu32 ":%u: %s\n    %s\n    %s", path, s->lineno, col, msg, shown,
                        carets);
}

/* ---- lexing ---- */

static bool is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '.';
}
static bool is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

static void skip_ws(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\r')) s->p++;
}

static bool at_stmt_end(scan *s)
{
    skip_ws(s);
    return s->p >= s->end || *s->p == ';' || *s->p == '#';
}

/* A name token: [A-Za-z_.][A-Za-z0-9_.]*. Returns its length (0 if none). */
static size_t peek_name(const scan *s)
{
    const char *q = s->p;
    if (q >= s->end || !is_name_start(*q)) return 0;
    while (q < s->end && is_name_char(*q)) q++;
    return (size_t)(q - s->p);
}

static pm_status describe_unexpected(asm_ctx *a, scan *s, const char *what)
{
    if (s->p >= s->end || *s->p == ';' || *s->p == '#') return fail_at(a, s, s->p, "expected %s, found end of line", what);
    char shown[16];
    const unsigned char *p = (const unsigned char *)s->p;
    int n = utf8_len(p, (const unsigned char *)s->end);
    render(shown, sizeof shown, 0, s->p, s->p + (n ? n : 1));
    return fail_at(a, s, s->p, "expected %s, found '%s'", what, shown);
}

static pm_status expect_char(asm_ctx *a, scan *s, char c, const char *what)
{
    skip_ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return PM_OK;
    }
    return describe_unexpected(a, s, what);
}

/* Copy a name into a bounded buffer, rejecting over-long names. */
static pm_status take_name(asm_ctx *a, scan *s, size_t n, char out[PM_SYMBOL_NAME_MAX])
{
    if (n >= PM_SYMBOL_NAME_MAX)
        return fail_at(a, s, s->p, "name '%.20s...' is longer than %d characters", s->p, PM_SYMBOL_NAME_MAX - 1);
    memcpy(out, s->p, n);
    out[n] = 0;
    s->p += n;
    return PM_OK;
}

/* ---- symbols ---- */

static uint64_t name_hash(const char *name)
{
    uint64_t h = 1469598103934665603ull;
    for (; *name; name++) h = (h ^ (unsigned char)*name) * 1099511628211ull;
    return h;
}

static asm_sym *sym_find(asm_ctx *a, const char *name)
{
    if (!a->hash_cap) return NULL;
    size_t mask = a->hash_cap - 1;
    for (size_t i = name_hash(name) & mask;; i = (i + 1) & mask) {
        uint32_t k = a->hash[i];
        if (!k) return NULL;
        if (strcmp(a->syms[k - 1].name, name) == 0) return &a->syms[k - 1];
    }
}

static pm_status sym_add(asm_ctx *a, const char *name, asm_sym **out)
{
    if (a->sym_count + 1 > a->hash_cap / 2) {
        size_t ncap = a->hash_cap ? a->hash_cap * 2 : 256;
        uint32_t *nh = calloc(ncap, sizeof *nh);
        if (!nh) return pm_error_set(a->err, PM_ERR_NOMEM, "assembler: out of memory");
        for (size_t k = 0; k < a->sym_count; k++) {
            size_t i = name_hash(a->syms[k].name) & (ncap - 1);
            while (nh[i]) i = (i + 1) & (ncap - 1);
            nh[i] = (uint32_t)(k + 1);
        }
        free(a->hash);
        a->hash = nh;
        a->hash_cap = ncap;
    }
    if (a->sym_count == a->sym_cap) {
        size_t ncap = a->sym_cap ? a->sym_cap * 2 : 64;
        asm_sym *ns = realloc(a->syms, ncap * sizeof *ns);
        if (!ns) return pm_error_set(a->err, PM_ERR_NOMEM, "assembler: out of memory");
        a->syms = ns;
        a->sym_cap = ncap;
    }
    asm_sym *sym = &a->syms[a->sym_count];
    memset(sym, 0, sizeof *sym);
    snprintf(sym->name, sizeof sym->name, "%s", name);
    size_t i = name_hash(name) & (a->hash_cap - 1);
    while (a->hash[i]) i = (i + 1) & (a->hash_cap - 1);
    a->hash[i] = (uint32_t)(a->sym_count + 1);
    a->sym_count++;
    *out = sym;
    return PM_OK;
}

static const char *sym_kind_name(const asm_sym *sym)
{
    switch (sym->kind) {
    case SYM_CODE: return "code label";
    case SYM_DATA: return "data label";
    case SYM_EQU: return "constant";
    default: return "register alias";
    }
}

/* Define a new name in pass 1 (pass 2 finds it already there). */
static pm_status define(asm_ctx *a, scan *s, const char *at, const char *name, sym_kind kind, asm_sym **out)
{
    asm_sym *old = sym_find(a, name);
    if (a->pass == 2) {
        *out = old;
        return PM_OK;
    }
    if (old)
        return fail_at(a, s, at, "'%s' is already defined (%s at %s:%" PRIu32 ")", name, sym_kind_name(old),
                       a->files[old->file].path, old->line);
    if (pm_isa_name_is_register(name, strlen(name), NULL))
        return fail_at(a, s, at, "'%s' is a register name and cannot be redefined", name);
    pm_status st = sym_add(a, name, out);
    if (st) return st;
    (*out)->kind = (uint8_t)kind;
    (*out)->file = s->file;
    (*out)->line = s->lineno;
    (*out)->local = name[0] == '.';
    return PM_OK;
}

/* ---- expressions ---- */

typedef struct expr {
    asm_ctx *a;
    scan *s;
    char kind;       /* operand kind whose names resolve first: 'f', 'm', 'c' (0: none) */
    bool must_know;  /* layout-affecting: every name must already have a value */
    bool unresolved; /* pass 1: a forward reference was seen; the value is a placeholder */
    int depth;
} expr;

static pm_status parse_or(expr *e, int64_t *v);

static pm_status parse_float_literal(asm_ctx *a, scan *s, double *out, float *outf)
{
    skip_ws(s);
    const char *q = s->p, *start = s->p;
    if (q < s->end && (*q == '-' || *q == '+')) q++;
    size_t rest = (size_t)(s->end - q);
    if (rest >= 3 && (strncasecmp(q, "inf", 3) == 0 || strncasecmp(q, "nan", 3) == 0) &&
        (rest == 3 || !is_name_char(q[3]))) {
        q += 3;
    } else {
        const char *digits = q;
        while (q < s->end && *q >= '0' && *q <= '9') q++;
        if (q < s->end && *q == '.') q++;
        while (q < s->end && *q >= '0' && *q <= '9') q++;
        if (q == digits || (q == digits + 1 && *digits == '.')) return describe_unexpected(a, s, "a number");
        if (q < s->end && (*q == 'e' || *q == 'E')) {
            const char *x = q + 1;
            if (x < s->end && (*x == '+' || *x == '-')) x++;
            const char *xd = x;
            while (x < s->end && *x >= '0' && *x <= '9') x++;
            if (x == xd) return fail_at(a, s, q, "exponent has no digits");
            q = x;
        }
        if (q < s->end && is_name_char(*q)) return fail_at(a, s, q, "unexpected character in a number");
    }
    char buf[80];
    if ((size_t)(q - start) >= sizeof buf) return fail_at(a, s, start, "number literal is too long");
    memcpy(buf, start, (size_t)(q - start));
    buf[q - start] = 0;
    if (out) *out = strtod(buf, NULL);
    if (outf) *outf = strtof(buf, NULL); /* direct to fp32: no double rounding */
    s->p = q;
    return PM_OK;
}

static pm_status parse_char_escape(asm_ctx *a, scan *s, unsigned *out)
{
    /* s->p is just after a backslash */
    if (s->p >= s->end) return fail_at(a, s, s->p, "unfinished escape sequence");
    char c = *s->p++;
    static const char from[] = "ntr0\\'\"", to[] = "\n\t\r\0\\'\"";
    const char *k = memchr(from, c, sizeof from - 1);
    if (k) {
        *out = (unsigned char)to[k - from];
        return PM_OK;
    }
    if (c == 'x') {
        unsigned v = 0;
        int n = 0;
        while (n < 2 && s->p < s->end) {
            char h = *s->p;
            int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
            if (d < 0) break;
            v = v * 16 + (unsigned)d;
            s->p++;
            n++;
        }
        if (n == 0) return fail_at(a, s, s->p, "\\x needs hex digits");
        *out = v;
        return PM_OK;
    }
    return fail_at(a, s, s->p - 2, "unknown escape sequence '\\%c'", c >= 0x20 && c < 0x7F ? c : '?');
}

static pm_status parse_number(expr *e, int64_t *v)
{
    scan *s = e->s;
    const char *start = s->p, *q = s->p;
    unsigned base = 10;
    if (q + 1 < s->end && q[0] == '0' && (q[1] == 'x' || q[1] == 'X')) base = 16, q += 2;
    else if (q + 1 < s->end && q[0] == '0' && (q[1] == 'b' || q[1] == 'B')) base = 2, q += 2;
    const char *digits = q;
    uint64_t acc = 0;
    bool overflow = false;
    for (; q < s->end; q++) {
        char c = *q;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0 || (unsigned)d >= base) break;
        if (acc > (UINT64_MAX - (unsigned)d) / base) overflow = true;
        acc = acc * base + (unsigned)d;
    }
    if (q == digits) return fail_at(e->a, s, start, "number has no digits");
    if (q < s->end && (is_name_char(*q)))
        return fail_at(e->a, s, q, *q == '.' || *q == 'e' || *q == 'E'
                                       ? "a float literal is only allowed in f32(...) and .f32/.f16/.bf16"
                                       : "unexpected character in a number");
    if (overflow) return fail_at(e->a, s, start, "number %.*s does not fit in 64 bits", (int)(q - start > 40 ? 40 : q - start), start);
    s->p = q;
    *v = (int64_t)acc; /* two's complement bit pattern for values above INT64_MAX */
    return PM_OK;
}

/* A name inside an expression: operand-kind names first, then symbols. */
static pm_status resolve_name(expr *e, const char *at, const char *name, int64_t *v)
{
    asm_ctx *a = e->a;
    if (e->kind == PM_OPK_UNITMASK) {
        if (strcasecmp(name, "all") == 0) {
            *v = PM_UNIT_MASK_ALL;
            return PM_OK;
        }
        pm_unit u;
        if (pm_unit_from_name(name, &u)) {
            *v = (int64_t)1 << u;
            return PM_OK;
        }
    } else if (e->kind == PM_OPK_CSR) {
        pm_csr c;
        if (pm_csr_from_name(name, &c)) {
            *v = c;
            return PM_OK;
        }
    } else if (e->kind == PM_OPK_LFUFUNC) {
        pm_lfu_func f;
        if (pm_lfu_func_from_name(name, &f)) {
            *v = f;
            return PM_OK;
        }
    }
    asm_sym *sym = sym_find(a, name);
    if (sym && sym->kind == SYM_REG)
        return fail_at(a, e->s, at, "'%s' is a register alias, not a value", name);
    if (sym && sym->known) {
        *v = sym->value;
        return PM_OK;
    }
    *v = 0;
    if (e->must_know)
        return fail_at(a, e->s, at, "'%s' must be defined before this line (it decides the program's layout)", name);
    if (a->pass == 1) {
        e->unresolved = true;
        return PM_OK;
    }
    if (sym) return fail_at(a, e->s, at, "'%s' is used before its .equ value is known (it depends on a later label)", name);
    if (pm_isa_name_is_register(name, strlen(name), NULL)) return fail_at(a, e->s, at, "expected a value, found register '%s'", name);
    return fail_at(a, e->s, at, "undefined symbol '%s'", name);
}

static pm_status parse_primary(expr *e, int64_t *v)
{
    scan *s = e->s;
    asm_ctx *a = e->a;
    skip_ws(s);
    if (s->p >= s->end) return describe_unexpected(a, s, "a value");
    char c = *s->p;
    if (c >= '0' && c <= '9') return parse_number(e, v);
    if (c == '(') {
        /* each parenthesis is one nesting level (as is each unary operator) */
        if (++e->depth > ASM_MAX_EXPR_DEPTH) return fail_at(a, s, s->p, "expression is nested too deeply");
        s->p++;
        pm_status st = parse_or(e, v);
        e->depth--;
        if (st) return st;
        return expect_char(a, s, ')', "')'");
    }
    if (c == '\'') {
        const char *start = s->p++;
        if (s->p >= s->end) return fail_at(a, s, start, "unterminated character literal");
        unsigned ch;
        if (*s->p == '\\') {
            s->p++;
            pm_status st = parse_char_escape(a, s, &ch);
            if (st) return st;
        } else if ((unsigned char)*s->p >= 0x80 || *s->p == '\'') {
            return fail_at(a, s, s->p, "a character literal holds one ASCII character or an escape");
        } else {
            ch = (unsigned char)*s->p++;
        }
        if (s->p >= s->end || *s->p != '\'') return fail_at(a, s, start, "unterminated character literal");
        s->p++;
        *v = ch;
        return PM_OK;
    }
    size_t n = peek_name(s);
    if (n == 0) return describe_unexpected(a, s, "a value");
    const char *at = s->p;
    char name[PM_SYMBOL_NAME_MAX];
    pm_status st = take_name(a, s, n, name);
    if (st) return st;
    skip_ws(s);
    if (s->p < s->end && *s->p == '(' && strcasecmp(name, "f32") == 0) {
        s->p++;
        float f;
        if ((st = parse_float_literal(a, s, NULL, &f))) return st;
        if ((st = expect_char(a, s, ')', "')' after the f32 literal"))) return st;
        *v = (int64_t)pm_f32_bits(f);
        return PM_OK;
    }
    return resolve_name(e, at, name, v);
}

static pm_status parse_unary(expr *e, int64_t *v)
{
    scan *s = e->s;
    skip_ws(s);
    if (s->p < s->end && (*s->p == '-' || *s->p == '~' || *s->p == '+')) {
        char op = *s->p;
        if (++e->depth > ASM_MAX_EXPR_DEPTH) return fail_at(e->a, s, s->p, "expression is nested too deeply");
        s->p++;
        pm_status st = parse_unary(e, v);
        e->depth--;
        if (st) return st;
        if (op == '-') *v = (int64_t)(0 - (uint64_t)*v);
        else if (op == '~') *v = ~*v;
        return PM_OK;
    }
    return parse_primary(e, v);
}

/* Binary operators by precedence level, loosest first (C's order). */
typedef enum binop { OP_OR, OP_XOR, OP_AND, OP_SHL, OP_SHR, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD } binop;

static int match_op(scan *s, int level, binop *op)
{
    skip_ws(s);
    if (s->p >= s->end) return 0;
    char c = *s->p, d = s->p + 1 < s->end ? s->p[1] : 0;
    switch (level) {
    case 0: if (c == '|') { *op = OP_OR; return 1; } break;
    case 1: if (c == '^') { *op = OP_XOR; return 1; } break;
    case 2: if (c == '&') { *op = OP_AND; return 1; } break;
    case 3:
        if (c == '<' && d == '<') { *op = OP_SHL; return 2; }
        if (c == '>' && d == '>') { *op = OP_SHR; return 2; }
        break;
    case 4:
        if (c == '+') { *op = OP_ADD; return 1; }
        if (c == '-') { *op = OP_SUB; return 1; }
        break;
    case 5:
        if (c == '*') { *op = OP_MUL; return 1; }
        if (c == '/') { *op = OP_DIV; return 1; }
        if (c == '%') { *op = OP_MOD; return 1; }
        break;
    }
    return 0;
}

/* 64-bit two's complement arithmetic, wrapping, never undefined. */
static pm_status apply(expr *e, const char *at, binop op, int64_t x, int64_t y, int64_t *r)
{
    uint64_t ux = (uint64_t)x, uy = (uint64_t)y;
    switch (op) {
    case OP_OR: *r = (int64_t)(ux | uy); break;
    case OP_XOR: *r = (int64_t)(ux ^ uy); break;
    case OP_AND: *r = (int64_t)(ux & uy); break;
    case OP_ADD: *r = (int64_t)(ux + uy); break;
    case OP_SUB: *r = (int64_t)(ux - uy); break;
    case OP_MUL: *r = (int64_t)(ux * uy); break;
    case OP_SHL:
    case OP_SHR:
        if (y < 0 || y > 63) {
            if (e->unresolved) { *r = 0; break; }
            return fail_at(e->a, e->s, at, "shift count %" PRId64 " is out of range 0..63", y);
        }
        if (op == OP_SHL) *r = (int64_t)(ux << y);
        else *r = x < 0 ? (int64_t)~(~ux >> y) : (int64_t)(ux >> y); /* arithmetic */
        break;
    case OP_DIV:
    case OP_MOD:
        if (y == 0) {
            if (e->unresolved) { *r = 0; break; }
            return fail_at(e->a, e->s, at, "division by zero");
        }
        if (x == INT64_MIN && y == -1) *r = op == OP_DIV ? INT64_MIN : 0;
        else *r = op == OP_DIV ? x / y : x % y;
        break;
    }
    return PM_OK;
}

static pm_status parse_level(expr *e, int level, int64_t *v)
{
    pm_status st = level == 5 ? parse_unary(e, v) : parse_level(e, level + 1, v);
    if (st) return st;
    binop op;
    int len;
    while ((len = match_op(e->s, level, &op)) != 0) {
        const char *at = e->s->p;
        e->s->p += len;
        int64_t rhs;
        st = level == 5 ? parse_unary(e, &rhs) : parse_level(e, level + 1, &rhs);
        if (st) return st;
        if ((st = apply(e, at, op, *v, rhs, v))) return st;
    }
    return PM_OK;
}

static pm_status parse_or(expr *e, int64_t *v) { return parse_level(e, 0, v); }

/* Evaluate one expression. *unresolved (may be NULL) reports a pass-1
 * placeholder; with must_know every name must already have a value. */
static pm_status eval(asm_ctx *a, scan *s, char kind, bool must_know, int64_t *v, bool *unresolved)
{
    expr e = {a, s, kind, must_know, false, 0};
    pm_status st = parse_or(&e, v);
    if (unresolved) *unresolved = e.unresolved;
    return st;
}

static pm_status check_range(asm_ctx *a, scan *s, const char *at, int64_t v, int64_t lo, int64_t hi, const char *what)
{
    if (v >= lo && v <= hi) return PM_OK;
    return fail_at(a, s, at, "%s %" PRId64 " is out of range %" PRId64 "..%" PRId64, what, v, lo, hi);
}

/* ---- output ---- */

static pm_status emit_word(asm_ctx *a, scan *s, uint64_t word)
{
    if (a->code_count >= ASM_MAX_CODE_WORDS)
        return fail_at(a, s, s->line, "program has more than %" PRIu64 " instructions", ASM_MAX_CODE_WORDS);
    if (a->pass == 2) {
        if (a->code_count == a->code_cap) {
            size_t ncap = a->code_cap ? a->code_cap * 2 : 256;
            uint64_t *nc = realloc(a->code, ncap * sizeof *nc);
            if (!nc) return pm_error_set(a->err, PM_ERR_NOMEM, "assembler: out of memory");
            a->code = nc;
            a->code_cap = ncap;
        }
        a->code[a->code_count] = word;
    }
    a->code_count++;
    return PM_OK;
}

/* Appends n bytes (NULL: zeros) to the current data section. */
static pm_status emit_bytes(asm_ctx *a, scan *s, const char *at, const void *bytes, uint64_t n)
{
    chunk *c = &a->chunks[a->cur];
    if (n == 0) return PM_OK;
    if (n > ASM_MAX_DATA_BYTES - a->data_total)
        return fail_at(a, s, at, "data exceeds the assembler's limit of %" PRIu64 " bytes", ASM_MAX_DATA_BYTES);
    if (n > UINT64_MAX - c->addr - c->size)
        return fail_at(a, s, at, "data runs past the end of the 64-bit address space");
    if (c->size + n > c->cap) {
        uint64_t ncap = c->cap ? c->cap : 64;
        while (ncap < c->size + n) ncap *= 2;
        uint8_t *nd = realloc(c->data, (size_t)ncap);
        if (!nd) return pm_error_set(a->err, PM_ERR_NOMEM, "assembler: out of memory");
        c->data = nd;
        c->cap = ncap;
    }
    if (bytes) memcpy(c->data + c->size, bytes, (size_t)n);
    else memset(c->data + c->size, 0, (size_t)n);
    c->size += n;
    a->data_total += n;
    return PM_OK;
}

static pm_status open_chunk(asm_ctx *a, scan *s, const char *at, pm_mem_kind mem, uint64_t addr)
{
    if (a->chunk_count == a->chunk_cap) {
        size_t ncap = a->chunk_cap ? a->chunk_cap * 2 : 16;
        chunk *nc = realloc(a->chunks, ncap * sizeof *nc);
        if (!nc) return pm_error_set(a->err, PM_ERR_NOMEM, "assembler: out of memory");
        a->chunks = nc;
        a->chunk_cap = ncap;
    }
    chunk *c = &a->chunks[a->chunk_count];
    memset(c, 0, sizeof *c);
    c->mem = mem;
    c->addr = addr;
    c->file = s->file;
    c->line = s->lineno;
    c->col = column_of(s->line, at);
    a->cur = (long)a->chunk_count;
    a->last_chunk[mem] = a->cur;
    a->chunk_count++;
    return PM_OK;
}

/* ---- instructions ---- */

static pm_status parse_register(asm_ctx *a, scan *s, int *reg)
{
    skip_ws(s);
    size_t n = peek_name(s);
    if (n == 0) return describe_unexpected(a, s, "a register (r0..r31)");
    if (pm_isa_name_is_register(s->p, n, reg)) {
        s->p += n;
        return PM_OK;
    }
    const char *at = s->p;
    char name[PM_SYMBOL_NAME_MAX];
    pm_status st = take_name(a, s, n, name);
    if (st) return st;
    asm_sym *sym = sym_find(a, name);
    if (sym && sym->kind == SYM_REG) {
        *reg = (int)sym->value;
        return PM_OK;
    }
    return fail_at(a, s, at, "expected a register (r0..r31 or a .reg alias), found '%s'", name);
}

static pm_status parse_operand(asm_ctx *a, scan *s, const pm_insn_info *info, int k, int64_t *out)
{
    char kind = info->operands[k];
    skip_ws(s);
    const char *at = s->p;
    pm_status st;
    if (kind == PM_OPK_REG || kind == PM_OPK_AREG) {
        int reg;
        if ((st = parse_register(a, s, &reg))) return st;
        *out = reg;
        if (kind == PM_OPK_AREG) {
            skip_ws(s);
            if (s->p < s->end && *s->p == '+') {
                s->p++;
                *out |= PM_AREG_INC;
            }
        }
        return PM_OK;
    }
    int64_t v;
    bool unresolved;
    if ((st = eval(a, s, kind, false, &v, &unresolved))) return st;
    *out = v;
    if (unresolved) return PM_OK; /* range-checked in pass 2 */
    int64_t lo, hi;
    pm_operand_range(kind, &lo, &hi);
    static const char *const what[128] = {
        [PM_OPK_IMM32] = "immediate (signed 32-bit)", [PM_OPK_IMM48] = "immediate (signed 48-bit)",
        [PM_OPK_LABEL] = "label", [PM_OPK_LFUFUNC] = "lfu function", [PM_OPK_SLOT] = "lfu slot",
        [PM_OPK_UNITMASK] = "unit mask", [PM_OPK_FLAG] = "flag", [PM_OPK_CSR] = "control register",
    };
    if ((st = check_range(a, s, at, v, lo, hi, what[(unsigned char)kind]))) return st;
    if (kind == PM_OPK_LABEL && a->pass == 2 && (uint64_t)v >= a->pass1_code_count)
        return fail_at(a, s, at, "branch target %" PRId64 " is past the last instruction (%zu instructions)", v,
                       a->pass1_code_count);
    return PM_OK;
}

static pm_status parse_instruction(asm_ctx *a, scan *s, size_t n)
{
    const char *at = s->p;
    if (n >= 64) return fail_at(a, s, at, "unknown instruction '%.20s...'", at);
    char word[64];
    for (size_t i = 0; i < n; i++) word[i] = (char)(at[i] >= 'A' && at[i] <= 'Z' ? at[i] - 'A' + 'a' : at[i]);
    word[n] = 0;
    s->p += n;
    /* The longest dotted prefix that is a mnemonic; the rest are formats. */
    const pm_insn_info *info = NULL;
    size_t mlen = n;
    for (;;) {
        char saved = word[mlen];
        word[mlen] = 0;
        info = pm_insn_info_for_mnemonic(word);
        word[mlen] = saved;
        if (info) break;
        while (mlen > 0 && word[mlen - 1] != '.') mlen--;
        if (mlen <= 1) break;
        mlen--; /* drop the last dotted part and try again */
    }
    if (!info) return fail_at(a, s, at, "unknown instruction '%s'", word);
    pm_insn insn = {.opcode = info->opcode};
    int nfmt = 0;
    const char *suffix = word + mlen;
    while (*suffix == '.') {
        const char *sfx = suffix + 1, *next = strchr(sfx, '.');
        size_t len = next ? (size_t)(next - sfx) : strlen(sfx);
        char fname[64];
        memcpy(fname, sfx, len);
        fname[len] = 0;
        pm_format f;
        if (nfmt >= info->format_count)
            return fail_at(a, s, at + (sfx - word), "'%s' takes %d format suffix%s, found more", info->mnemonic,
                           info->format_count, info->format_count == 1 ? "" : "es");
        if (len == 0 || !pm_format_from_name(fname, &f))
            return fail_at(a, s, at + (sfx - word), "unknown format '%s'", fname);
        insn.op[nfmt++] = f;
        suffix = sfx + len;
    }
    if (nfmt < info->format_count)
        return fail_at(a, s, at, "'%s' needs %d format suffix%s (e.g. %s%s), found %d", info->mnemonic,
                       info->format_count, info->format_count == 1 ? "" : "es", info->mnemonic,
                       info->format_count == 1 ? ".f32" : ".bf16.f32", nfmt);
    for (int k = nfmt; k < info->operand_count; k++) {
        pm_status st;
        if (k > nfmt && (st = expect_char(a, s, ',', "','"))) return st;
        if ((st = parse_operand(a, s, info, k, &insn.op[k]))) return st;
    }
    if (!at_stmt_end(s)) {
        if (info->operand_count == nfmt) return fail_at(a, s, s->p, "'%s' takes no operands", info->mnemonic);
        if (*s->p == ',')
            return fail_at(a, s, s->p, "too many operands: '%s' takes %d", info->mnemonic, info->operand_count - nfmt);
        return describe_unexpected(a, s, "end of line");
    }
    uint64_t w = 0;
    if (a->pass == 2) {
        pm_error eerr;
        if (pm_encode(&insn, &w, &eerr)) return fail_at(a, s, at, "%s", eerr.message);
    }
    return emit_word(a, s, w);
}

/* ---- directives ---- */

static pm_status parse_string(asm_ctx *a, scan *s, char *buf, size_t cap, size_t *len)
{
    skip_ws(s);
    if (s->p >= s->end || *s->p != '"') return describe_unexpected(a, s, "a string in double quotes");
    const char *start = s->p++;
    size_t n = 0;
    while (s->p < s->end && *s->p != '"') {
        unsigned c;
        if (*s->p == '\\') {
            s->p++;
            pm_status st = parse_char_escape(a, s, &c);
            if (st) return st;
        } else {
            c = (unsigned char)*s->p++;
        }
        if (n + 1 >= cap) return fail_at(a, s, start, "string is longer than %zu bytes", cap - 1);
        buf[n++] = (char)c;
    }
    if (s->p >= s->end) return fail_at(a, s, start, "unterminated string");
    s->p++;
    buf[n] = 0;
    *len = n;
    return PM_OK;
}

static pm_status need_data(asm_ctx *a, scan *s, const char *at, const char *dir)
{
    if (a->cur >= 0) return PM_OK;
    return fail_at(a, s, at, "%s needs a data section (.dram or .sram), not .text", dir);
}

/* Pads the current section (zeros) or the code (nop) up to target. */
static pm_status pad_to(asm_ctx *a, scan *s, const char *at, uint64_t target, const char *dir)
{
    if (a->cur < 0) {
        if (target < a->code_count)
            return fail_at(a, s, at, "%s %" PRIu64 " moves backwards (already at instruction %zu)", dir, target, a->code_count);
        if (target > ASM_MAX_CODE_WORDS)
            return fail_at(a, s, at, "%s %" PRIu64 " is past the instruction limit", dir, target);
        while (a->code_count < target) {
            pm_status st = emit_word(a, s, PM_OP_NOP);
            if (st) return st;
        }
        return PM_OK;
    }
    chunk *c = &a->chunks[a->cur];
    uint64_t here = c->addr + c->size;
    if (c->size == 0 && !strcmp(dir, ".org")) {
        c->addr = target; /* an empty section simply starts there */
        return PM_OK;
    }
    if (target < here)
        return fail_at(a, s, at, "%s 0x%" PRIx64 " moves backwards (already at 0x%" PRIx64 ")", dir, target, here);
    return emit_bytes(a, s, at, NULL, target - here);
}

static pm_status dir_data_int(asm_ctx *a, scan *s, const char *at, const char *dir, unsigned bytes)
{
    pm_status st;
    if ((st = need_data(a, s, at, dir))) return st;
    int64_t lo = bytes == 8 ? INT64_MIN : -((int64_t)1 << (8 * bytes - 1));
    int64_t hi = bytes == 8 ? INT64_MAX : (int64_t)(((uint64_t)1 << (8 * bytes)) - 1);
    do {
        skip_ws(s);
        const char *vat = s->p;
        int64_t v;
        bool unresolved;
        if ((st = eval(a, s, 0, false, &v, &unresolved))) return st;
        if (!unresolved && bytes < 8 && (st = check_range(a, s, vat, v, lo, hi, "value"))) return st;
        uint8_t b[8];
        for (unsigned i = 0; i < bytes; i++) b[i] = (uint8_t)((uint64_t)v >> (8 * i));
        if ((st = emit_bytes(a, s, vat, b, bytes))) return st;
        skip_ws(s);
    } while (s->p < s->end && *s->p == ',' && s->p++);
    return PM_OK;
}

static pm_status dir_data_float(asm_ctx *a, scan *s, const char *at, const char *dir, pm_format fmt)
{
    pm_status st;
    if ((st = need_data(a, s, at, dir))) return st;
    do {
        skip_ws(s);
        const char *vat = s->p;
        float f;
        if ((st = parse_float_literal(a, s, NULL, &f))) return st;
        uint8_t b[4];
        size_t nbytes = fmt == PM_FMT_F32 ? 4 : 2;
        pm_error ferr;
        if (pm_format_encode(fmt, &f, 1, b, &ferr)) return fail_at(a, s, vat, "%s", ferr.message);
        if ((st = emit_bytes(a, s, vat, b, nbytes))) return st;
        skip_ws(s);
    } while (s->p < s->end && *s->p == ',' && s->p++);
    return PM_OK;
}

/* Evaluates a layout expression that must be known now and be >= 0. */
static pm_status eval_layout(asm_ctx *a, scan *s, uint64_t *out, const char *what)
{
    skip_ws(s);
    const char *at = s->p;
    int64_t v;
    pm_status st = eval(a, s, 0, true, &v, NULL);
    if (st) return st;
    if (v < 0) return fail_at(a, s, at, "%s %" PRId64 " is negative", what, v);
    *out = (uint64_t)v;
    return PM_OK;
}

/* Evaluates an address that must be known now. Addresses span the whole
 * unsigned 64-bit space a program file allows, so the value's 64-bit pattern
 * is the address (0xFFFFFFFFFFFFFFF0 and -16 name the same one); otherwise a
 * file with a section near the top of memory could not be disassembled. */
static pm_status eval_address(asm_ctx *a, scan *s, uint64_t *out)
{
    skip_ws(s);
    int64_t v;
    pm_status st = eval(a, s, 0, true, &v, NULL);
    if (st) return st;
    *out = (uint64_t)v;
    return PM_OK;
}

static pm_status dir_section(asm_ctx *a, scan *s, const char *at, pm_mem_kind mem)
{
    if (at_stmt_end(s)) {
        long last = a->last_chunk[mem];
        if (last >= 0) {
            a->cur = last; /* continue where that memory's last section ended */
            return PM_OK;
        }
        return open_chunk(a, s, at, mem, 0);
    }
    uint64_t addr;
    pm_status st = eval_address(a, s, &addr);
    if (st) return st;
    return open_chunk(a, s, at, mem, addr);
}

static pm_status dir_include(asm_ctx *a, scan *s, const char *at);
static pm_status dir_tensor(asm_ctx *a, scan *s, const char *at);

static pm_status dir_equ(asm_ctx *a, scan *s, const char *name_at, const char *name)
{
    asm_sym *sym;
    pm_status st;
    if (name[0] == '.') return fail_at(a, s, name_at, "constant names cannot start with '.'");
    if ((st = define(a, s, name_at, name, SYM_EQU, &sym))) return st;
    if (a->pass == 2 && sym->known) {
        int64_t ignored;
        return eval(a, s, 0, false, &ignored, NULL); /* consume; value fixed in pass 1 */
    }
    int64_t v;
    bool unresolved;
    if ((st = eval(a, s, 0, false, &v, &unresolved))) return st;
    if (!unresolved) {
        sym->value = v;
        sym->known = true;
    }
    return PM_OK;
}

static pm_status dir_reg(asm_ctx *a, scan *s)
{
    skip_ws(s);
    size_t n = peek_name(s);
    if (n == 0) return describe_unexpected(a, s, "an alias name");
    const char *at = s->p;
    char name[PM_SYMBOL_NAME_MAX];
    pm_status st;
    if ((st = take_name(a, s, n, name))) return st;
    if (name[0] == '.') return fail_at(a, s, at, "alias names cannot start with '.'");
    if ((st = expect_char(a, s, ',', "','"))) return st;
    int reg;
    if ((st = parse_register(a, s, &reg))) return st;
    asm_sym *sym;
    if ((st = define(a, s, at, name, SYM_REG, &sym))) return st;
    sym->value = reg;
    sym->known = true;
    return PM_OK;
}

static pm_status dir_entry(asm_ctx *a, scan *s)
{
    skip_ws(s);
    const char *at = s->p;
    int64_t v;
    bool unresolved;
    pm_status st = eval(a, s, 0, false, &v, &unresolved);
    if (st) return st;
    if (a->pass == 1) {
        if (a->have_entry) return fail_at(a, s, at, ".entry is given twice");
        a->have_entry = true;
        return PM_OK;
    }
    size_t n = peek_name(&(scan){at, s->end, at, 0, 0});
    asm_sym *sym = NULL;
    if (n && n < PM_SYMBOL_NAME_MAX) {
        char name[PM_SYMBOL_NAME_MAX];
        memcpy(name, at, n);
        name[n] = 0;
        sym = sym_find(a, name);
    }
    if (sym && sym->kind == SYM_DATA) return fail_at(a, s, at, ".entry needs a code label, '%s' is a data label", sym->name);
    if (v < 0 || (uint64_t)v >= a->pass1_code_count)
        return fail_at(a, s, at, "entry %" PRId64 " is not an instruction index (the program has %zu)", v, a->pass1_code_count);
    a->entry = v;
    return PM_OK;
}

typedef pm_status (*dir_fn)(asm_ctx *a, scan *s, const char *at);

static pm_status d_text(asm_ctx *a, scan *s, const char *at) { (void)s, (void)at; a->cur = -1; return PM_OK; }
static pm_status d_dram(asm_ctx *a, scan *s, const char *at) { return dir_section(a, s, at, PM_MEM_DRAM); }
static pm_status d_sram(asm_ctx *a, scan *s, const char *at) { return dir_section(a, s, at, PM_MEM_SRAM); }
static pm_status d_byte(asm_ctx *a, scan *s, const char *at) { return dir_data_int(a, s, at, ".byte", 1); }
static pm_status d_half(asm_ctx *a, scan *s, const char *at) { return dir_data_int(a, s, at, ".half", 2); }
static pm_status d_word(asm_ctx *a, scan *s, const char *at) { return dir_data_int(a, s, at, ".word", 4); }
static pm_status d_dword(asm_ctx *a, scan *s, const char *at) { return dir_data_int(a, s, at, ".dword", 8); }
static pm_status d_f32(asm_ctx *a, scan *s, const char *at) { return dir_data_float(a, s, at, ".f32", PM_FMT_F32); }
static pm_status d_f16(asm_ctx *a, scan *s, const char *at) { return dir_data_float(a, s, at, ".f16", PM_FMT_F16); }
static pm_status d_bf16(asm_ctx *a, scan *s, const char *at) { return dir_data_float(a, s, at, ".bf16", PM_FMT_BF16); }
static pm_status d_reg(asm_ctx *a, scan *s, const char *at) { (void)at; return dir_reg(a, s); }
static pm_status d_entry(asm_ctx *a, scan *s, const char *at) { (void)at; return dir_entry(a, s); }

static pm_status d_zero(asm_ctx *a, scan *s, const char *at)
{
    pm_status st;
    uint64_t n;
    if ((st = need_data(a, s, at, ".zero")) || (st = eval_layout(a, s, &n, "size"))) return st;
    return emit_bytes(a, s, at, NULL, n);
}

static pm_status d_org(asm_ctx *a, scan *s, const char *at)
{
    uint64_t target;
    pm_status st = eval_address(a, s, &target);
    return st ? st : pad_to(a, s, at, target, ".org");
}

static pm_status d_align(asm_ctx *a, scan *s, const char *at)
{
    skip_ws(s);
    const char *vat = s->p;
    uint64_t n;
    pm_status st = eval_layout(a, s, &n, "alignment");
    if (st) return st;
    if (n == 0 || (n & (n - 1)) || n > ((uint64_t)1 << 20))
        return fail_at(a, s, vat, ".align %" PRIu64 " is not a power of two in 1..%d", n, 1 << 20);
    uint64_t here = a->cur < 0 ? a->code_count : a->chunks[a->cur].addr + a->chunks[a->cur].size;
    uint64_t target = (here + n - 1) & ~(n - 1);
    if (target < here) return fail_at(a, s, vat, ".align runs past the end of the address space");
    return pad_to(a, s, at, target, ".align");
}

static pm_status d_ascii(asm_ctx *a, scan *s, const char *at)
{
    pm_status st;
    if ((st = need_data(a, s, at, ".ascii"))) return st;
    char buf[4096];
    size_t len;
    if ((st = parse_string(a, s, buf, sizeof buf, &len))) return st;
    return emit_bytes(a, s, at, buf, len);
}

static const struct directive {
    const char *name;
    dir_fn fn;
} directives[] = {
    {".text", d_text},   {".dram", d_dram},       {".sram", d_sram},   {".org", d_org},     {".align", d_align},
    {".byte", d_byte},   {".half", d_half},       {".word", d_word},   {".dword", d_dword}, {".f32", d_f32},
    {".f16", d_f16},     {".bf16", d_bf16},       {".zero", d_zero},   {".ascii", d_ascii}, {".tensor", dir_tensor},
    {".entry", d_entry}, {".include", dir_include}, {".reg", d_reg},
};

static pm_status parse_directive(asm_ctx *a, scan *s, size_t n)
{
    const char *at = s->p;
    for (size_t i = 0; i < sizeof directives / sizeof directives[0]; i++) {
        const char *name = directives[i].name;
        if (strlen(name) == n && strncasecmp(name, at, n) == 0) {
            s->p += n;
            pm_status st = directives[i].fn(a, s, at);
            if (st) return st;
            if (!at_stmt_end(s)) return describe_unexpected(a, s, "end of line");
            return PM_OK;
        }
    }
    if (n == 4 && strncasecmp(at, ".equ", 4) == 0) {
        s->p += n;
        skip_ws(s);
        size_t m = peek_name(s);
        if (m == 0) return describe_unexpected(a, s, "a constant name");
        const char *name_at = s->p;
        char name[PM_SYMBOL_NAME_MAX];
        pm_status st;
        if ((st = take_name(a, s, m, name)) || (st = expect_char(a, s, ',', "','")) ||
            (st = dir_equ(a, s, name_at, name)))
            return st;
        if (!at_stmt_end(s)) return describe_unexpected(a, s, "end of line");
        return PM_OK;
    }
    return fail_at(a, s, at, "unknown directive '%.*s'", (int)(n > 40 ? 40 : n), at);
}

static pm_status dir_tensor(asm_ctx *a, scan *s, const char *at)
{
    (void)at;
    skip_ws(s);
    size_t n = peek_name(s);
    if (n == 0) return describe_unexpected(a, s, "a data label name");
    const char *name_at = s->p;
    char name[PM_SYMBOL_NAME_MAX];
    pm_status st;
    if ((st = take_name(a, s, n, name)) || (st = expect_char(a, s, ',', "','"))) return st;
    skip_ws(s);
    size_t m = peek_name(s);
    if (m == 0) return describe_unexpected(a, s, "a format name (f32, bf16, ...)");
    const char *fmt_at = s->p;
    char fname[PM_SYMBOL_NAME_MAX];
    if ((st = take_name(a, s, m, fname))) return st;
    pm_format fmt;
    if (!pm_format_from_name(fname, &fmt)) return fail_at(a, s, fmt_at, "unknown format '%s'", fname);
    uint64_t shape[PM_TENSOR_MAX_RANK] = {0};
    uint32_t rank = 0;
    uint64_t elems = 1;
    while (s->p < s->end && (skip_ws(s), s->p < s->end && *s->p == ',')) {
        s->p++;
        skip_ws(s);
        const char *dat = s->p;
        if (rank == PM_TENSOR_MAX_RANK) return fail_at(a, s, dat, "a tensor has at most %d dimensions", PM_TENSOR_MAX_RANK);
        int64_t d;
        bool unresolved;
        if ((st = eval(a, s, 0, false, &d, &unresolved))) return st;
        if (a->pass == 2 && d < 1) return fail_at(a, s, dat, "tensor dimension %" PRId64 " must be at least 1", d);
        if (a->pass == 2 && elems > (uint64_t)INT64_MAX / (uint64_t)d)
            return fail_at(a, s, dat, "tensor element count overflows (more than 2^63 - 1 elements)");
        if (a->pass == 2) elems *= (uint64_t)d;
        shape[rank++] = (uint64_t)d;
    }
    if (rank == 0) return describe_unexpected(a, s, "',' and the tensor's dimensions");
    if (a->pass == 1) return PM_OK;
    asm_sym *sym = sym_find(a, name);
    if (!sym) return fail_at(a, s, name_at, "undefined label '%s'", name);
    if (sym->kind != SYM_DATA || sym->local)
        return fail_at(a, s, name_at, ".tensor needs a data label, '%s' is a %s", name,
                       sym->local ? "local label" : sym_kind_name(sym));
    if (sym->is_tensor) return fail_at(a, s, name_at, "'%s' is already declared as a tensor", name);
    sym->is_tensor = true;
    sym->dtype = fmt;
    sym->rank = rank;
    memcpy(sym->shape, shape, sizeof shape);
    return PM_OK;
}

/* ---- lines and files ---- */

static pm_status assemble_file_lines(asm_ctx *a, uint32_t file);

static pm_status parse_label(asm_ctx *a, scan *s, const char *at, const char *name)
{
    if (pm_isa_name_is_register(name, strlen(name), NULL))
        return fail_at(a, s, at, "'%s' is a register name and cannot be a label", name);
    if (name[0] == '.' && (name[1] != 'L' || name[2] == 0))
        return fail_at(a, s, at, "label names cannot start with '.' (except .L local labels)");
    if (!name[0] || (name[0] != '.' && !pm_isa_name_valid(name, strlen(name))))
        return fail_at(a, s, at, "'%s' is not a valid label name", name);
    bool code = a->cur < 0;
    asm_sym *sym;
    pm_status st = define(a, s, at, name, code ? SYM_CODE : SYM_DATA, &sym);
    if (st) return st;
    int64_t value = code ? (int64_t)a->code_count : (int64_t)(a->chunks[a->cur].addr + a->chunks[a->cur].size);
    pm_mem_kind mem = code ? PM_MEM_CODE : a->chunks[a->cur].mem;
    if (a->pass == 1) {
        sym->value = value;
        sym->mem = (uint8_t)mem;
        sym->known = true;
    } else if (sym->value != value || sym->mem != mem) {
        return fail_at(a, s, at, "internal error: label '%s' moved between passes", name);
    }
    return PM_OK;
}

static pm_status parse_line(asm_ctx *a, scan *s)
{
    for (;;) {
        if (at_stmt_end(s)) return PM_OK;
        size_t n = peek_name(s);
        if (n == 0) return describe_unexpected(a, s, "a label, instruction or directive");
        const char *at = s->p;
        const char *after = at + n;
        while (after < s->end && (*after == ' ' || *after == '\t')) after++;
        if (after < s->end && *after == ':') {
            char name[PM_SYMBOL_NAME_MAX];
            pm_status st = take_name(a, s, n, name);
            if (st) return st;
            s->p = after + 1;
            if ((st = parse_label(a, s, at, name))) return st;
            continue; /* a statement may follow on the same line */
        }
        if (after < s->end && *after == '=' && (after + 1 >= s->end || after[1] != '=')) {
            char name[PM_SYMBOL_NAME_MAX];
            pm_status st = take_name(a, s, n, name);
            if (st) return st;
            s->p = after + 1;
            if ((st = dir_equ(a, s, at, name))) return st;
            return at_stmt_end(s) ? PM_OK : describe_unexpected(a, s, "end of line");
        }
        if (*at == '.') return parse_directive(a, s, n);
        return parse_instruction(a, s, n);
    }
}

/* Rejects NUL bytes, control characters and invalid UTF-8 before parsing. */
static pm_status check_text(asm_ctx *a, uint32_t file)
{
    const src_file *f = &a->files[file];
    const unsigned char *p = (const unsigned char *)f->text, *end = p + f->len;
    const char *line = f->text;
    uint32_t lineno = 1;
    while (p < end) {
        unsigned c = *p;
        if (c == '\n') {
            p++;
            line = (const char *)p;
            lineno++;
            continue;
        }
        int n = utf8_len(p, end);
        const char *why = NULL;
        if (c == 0) why = "NUL byte in source";
        else if (n == 0) why = "invalid UTF-8 byte";
        else if (c == '\r' && (p + 1 == end || p[1] != '\n')) why = "carriage return without a line feed";
        else if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7F) why = "control character in source";
        if (why) {
            const char *le = memchr(line, '\n', (size_t)(end - (const unsigned char *)line));
            scan s = {line, le ? le : (const char *)end, (const char *)p, file, lineno};
            return fail_at(a, &s, (const char *)p, "%s (0x%02x)", why, c);
        }
        p += n;
    }
    return PM_OK;
}

static pm_status assemble_file_lines(asm_ctx *a, uint32_t file)
{
    pm_status st;
    if (a->pass == 1 && (st = check_text(a, file))) return st;
    const char *p = a->files[file].text, *end = p + a->files[file].len;
    /* A UTF-8 byte-order mark (editors on Windows write one) is not text. */
    if (end - p >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3;
    uint32_t lineno = 0;
    while (p < end || lineno == 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        lineno++;
        scan s = {p, le, p, file, lineno};
        if ((st = parse_line(a, &s))) return st;
        if (!nl) break;
        p = nl + 1;
    }
    return PM_OK;
}

static char *dup_range(const char *p, size_t n)
{
    char *r = malloc(n + 1);
    if (r) {
        memcpy(r, p, n);
        r[n] = 0;
    }
    return r;
}

static pm_status add_file(asm_ctx *a, char *path, char *identity, char *text, size_t len, uint32_t *index)
{
    if (a->file_count == a->file_cap) {
        size_t ncap = a->file_cap ? a->file_cap * 2 : 8;
        src_file *nf = realloc(a->files, ncap * sizeof *nf);
        if (!nf) {
            free(path), free(identity), free(text);
            return pm_error_set(a->err, PM_ERR_NOMEM, "assembler: out of memory");
        }
        a->files = nf;
        a->file_cap = ncap;
    }
    a->files[a->file_count] = (src_file){path, identity, text, len};
    *index = (uint32_t)a->file_count++;
    return PM_OK;
}

static pm_status dir_include(asm_ctx *a, scan *s, const char *at)
{
    char name[1024];
    size_t len;
    pm_status st;
    if ((st = parse_string(a, s, name, sizeof name, &len))) return st;
    if (!at_stmt_end(s)) return describe_unexpected(a, s, "end of line");
    if (len == 0 || memchr(name, 0, len)) return fail_at(a, s, at, "bad include file name");
    if (a->include_depth >= ASM_MAX_INCLUDE_DEPTH)
        return fail_at(a, s, at, "includes nested more than %d deep", ASM_MAX_INCLUDE_DEPTH);
    if (++a->includes_this_pass > ASM_MAX_INCLUDES)
        return fail_at(a, s, at, "more than %d .include expansions", ASM_MAX_INCLUDES);
    /* Resolve relative to the including file's directory. */
    const char *from = a->files[s->file].path;
    const char *slash = strrchr(from, '/');
    size_t dirlen = name[0] == '/' || !slash ? 0 : (size_t)(slash - from) + 1;
    char *path = malloc(dirlen + len + 1);
    if (!path) return pm_error_set(a->err, PM_ERR_NOMEM, "assembler: out of memory");
    memcpy(path, from, dirlen);
    memcpy(path + dirlen, name, len + 1);
    char *real = realpath(path, NULL);
    char *identity = real ? real : dup_range(path, strlen(path));
    if (!identity) {
        free(path);
        return pm_error_set(a->err, PM_ERR_NOMEM, "assembler: out of memory");
    }
    for (int d = 0; d <= a->include_depth; d++)
        if (strcmp(a->files[a->include_stack[d]].identity, identity) == 0) {
            st = fail_at(a, s, at, "include cycle: '%s' is already being assembled", name);
            free(path), free(identity);
            return st;
        }
    uint32_t index = UINT32_MAX;
    for (size_t i = 0; i < a->file_count; i++)
        if (strcmp(a->files[i].identity, identity) == 0) index = (uint32_t)i;
    if (index == UINT32_MAX) {
        struct stat sb;
        if (stat(path, &sb) != 0) {
            st = fail_at(a, s, at, "cannot open include file '%s': %s", path, strerror(errno));
            free(path), free(identity);
            return st;
        }
        if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > ASM_MAX_SOURCE_BYTES) {
            st = fail_at(a, s, at, "include file '%s' is not a regular file of at most %" PRIu64 " bytes", path,
                         ASM_MAX_SOURCE_BYTES);
            free(path), free(identity);
            return st;
        }
        uint8_t *text;
        size_t tlen;
        pm_error rerr;
        if (pm_read_file(path, &text, &tlen, &rerr) != PM_OK) {
            st = fail_at(a, s, at, "cannot read include file: %s", rerr.message);
            free(path), free(identity);
            return st;
        }
        if ((st = add_file(a, path, identity, (char *)text, tlen, &index))) return st;
    } else {
        free(path), free(identity);
    }
    a->include_stack[++a->include_depth] = index;
    st = assemble_file_lines(a, index);
    a->include_depth--;
    return st;
}

/* ---- driver ---- */

static void reset_layout(asm_ctx *a)
{
    for (size_t i = 0; i < a->chunk_count; i++) free(a->chunks[i].data);
    a->chunk_count = 0;
    a->code_count = 0;
    a->cur = -1;
    a->last_chunk[0] = a->last_chunk[1] = -1;
    a->data_total = 0;
    a->includes_this_pass = 0;
    a->include_depth = 0;
}

static void ctx_free(asm_ctx *a)
{
    reset_layout(a);
    for (size_t i = 0; i < a->file_count; i++) {
        free(a->files[i].path);
        free(a->files[i].identity);
        free(a->files[i].text);
    }
    free(a->files);
    free(a->chunks);
    free(a->syms);
    free(a->hash);
    free(a->code);
}

static int chunk_cmp(const void *x, const void *y)
{
    const chunk *p = x, *q = y;
    if (p->mem != q->mem) return p->mem < q->mem ? -1 : 1;
    return p->addr < q->addr ? -1 : p->addr > q->addr;
}

/* Error at a recorded place (file, line, column) after parsing finished. */
static pm_status fail_recorded(asm_ctx *a, uint32_t file, uint32_t line, unsigned col, const char *msg)
{
    const src_file *f = &a->files[file];
    const char *p = f->text, *end = p + f->len;
    for (uint32_t l = 1; l < line && p < end; l++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    const char *le = memchr(p, '\n', (size_t)(end - p));
    scan s = {p, le ? le : end, p, file, line};
    const char *pos = p;
    for (unsigned c = 1; c < col && pos < s.end; c++) {
        int n = utf8_len((const unsigned char *)pos, (const unsigned char *)s.end);
        pos += n ? n : 1;
    }
    return fail_at(a, &s, pos, "%s", msg);
}

static pm_status build_program(asm_ctx *a, pm_program *out)
{
    if (a->code_count == 0) return fail_recorded(a, 0, 1, 1, "program has no instructions (an empty program is invalid)");
    /* Sections: drop empty ones, order by memory and address, refuse overlap. */
    size_t kept = 0;
    for (size_t i = 0; i < a->chunk_count; i++) {
        if (a->chunks[i].size == 0) {
            free(a->chunks[i].data);
            continue;
        }
        a->chunks[kept++] = a->chunks[i];
    }
    a->chunk_count = kept;
    if (kept > 1) qsort(a->chunks, kept, sizeof *a->chunks, chunk_cmp);
    for (size_t i = 1; i < kept; i++) {
        const chunk *p = &a->chunks[i - 1], *q = &a->chunks[i];
        if (p->mem == q->mem && q->addr < p->addr + p->size) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s section 0x%" PRIx64 "..0x%" PRIx64 " overlaps the one at 0x%" PRIx64 "..0x%" PRIx64 " (%s:%" PRIu32 ")",
                     q->mem == PM_MEM_DRAM ? "dram" : "sram", q->addr, q->addr + q->size, p->addr, p->addr + p->size,
                     a->files[p->file].path, p->line);
            return fail_recorded(a, q->file, q->line, q->col, msg);
        }
    }
    pm_program_init(out);
    out->code = a->code;
    out->code_count = a->code_count;
    a->code = NULL;
    a->code_cap = 0;
    out->entry = (uint32_t)a->entry;
    out->sections = calloc(kept ? kept : 1, sizeof *out->sections);
    size_t nsym = 0;
    for (size_t i = 0; i < a->sym_count; i++)
        nsym += (a->syms[i].kind == SYM_CODE || a->syms[i].kind == SYM_DATA) && !a->syms[i].local;
    out->symbols = calloc(nsym ? nsym : 1, sizeof *out->symbols);
    if (!out->sections || !out->symbols) {
        pm_program_free(out);
        return pm_error_set(a->err, PM_ERR_NOMEM, "assembler: out of memory");
    }
    for (size_t i = 0; i < kept; i++) {
        chunk *c = &a->chunks[i];
        out->sections[i] = (pm_section){c->mem, c->addr, c->size, c->data};
        c->data = NULL;
    }
    a->chunk_count = 0;
    out->section_count = kept;
    for (size_t i = 0; i < a->sym_count; i++) {
        const asm_sym *s = &a->syms[i];
        if ((s->kind != SYM_CODE && s->kind != SYM_DATA) || s->local) continue;
        pm_symbol *o = &out->symbols[out->symbol_count++];
        memcpy(o->name, s->name, sizeof o->name);
        o->mem = (pm_mem_kind)s->mem;
        o->addr = (uint64_t)s->value;
        o->is_tensor = s->is_tensor;
        if (s->is_tensor) {
            o->dtype = s->dtype;
            o->rank = s->rank;
            memcpy(o->shape, s->shape, sizeof o->shape);
        }
    }
    /* The file format's canonical order (ties between labels at one address
     * by name), so the table never depends on the order of the source. */
    pm_program_canonicalize(out);
    return PM_OK;
}

static pm_status assemble_text(const char *source_name, char *text, size_t len, pm_program *out, pm_error *err)
{
    pm_program_init(out);
    asm_ctx a;
    memset(&a, 0, sizeof a);
    a.err = err;
    a.cur = -1;
    a.last_chunk[0] = a.last_chunk[1] = -1;
    char *path = dup_range(source_name, strlen(source_name));
    char *real = path ? realpath(path, NULL) : NULL;
    char *identity = real ? real : dup_range(source_name, strlen(source_name));
    uint32_t index;
    pm_status st;
    if (!path || !identity) {
        free(path), free(identity), free(text);
        return pm_error_set(err, PM_ERR_NOMEM, "assembler: out of memory");
    }
    if ((st = add_file(&a, path, identity, text, len, &index))) goto done;
    for (a.pass = 1; a.pass <= 2; a.pass++) {
        reset_layout(&a);
        a.include_stack[0] = 0;
        if ((st = assemble_file_lines(&a, 0))) goto done;
        if (a.pass == 1) a.pass1_code_count = a.code_count;
    }
    st = build_program(&a, out);
done:
    ctx_free(&a);
    if (st) pm_program_free(out);
    return st;
}

pm_status pm_assemble(const char *source_name, const char *text, pm_program *out, pm_error *err)
{
    pm_program_init(out);
    if (!source_name) source_name = "<input>";
    if (!text) return pm_error_set(err, PM_ERR_INVALID, "%s: no source text", source_name);
    size_t len = strlen(text);
    char *copy = dup_range(text, len);
    if (!copy) return pm_error_set(err, PM_ERR_NOMEM, "assembler: out of memory");
    return assemble_text(source_name, copy, len, out, err);
}

pm_status pm_assemble_file(const char *path, pm_program *out, pm_error *err)
{
    pm_program_init(out);
    uint8_t *text;
    size_t len;
    pm_status st = pm_read_file(path, &text, &len, err);
    if (st) return st;
    return assemble_text(path, (char *)text, len, out, err);
}
