/* Polymorph models layer: the pre-tokenizers of byte-level BPE models, the
 * regexes of GPT-2, SmolLM (every number character on its own, then GPT-2)
 * and Llama 3 written out by hand over code points, so no regex engine is
 * needed. Each matcher returns the end of the match at a position, trying the
 * pattern's alternatives in order exactly as a backtracking regex would. */
#include "tok_internal.h"

/* ---- Unicode helpers ---- */

int pm_tok_cp_class(uint32_t cp)
{
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return PM_TOK_LETTER;
        return cp >= '0' && cp <= '9' ? PM_TOK_NUMBER : PM_TOK_OTHER;
    }
    size_t lo = 0, hi = pm_tok_cp_range_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < pm_tok_cp_ranges[mid].lo) hi = mid;
        else if (cp > pm_tok_cp_ranges[mid].hi) lo = mid + 1;
        else return pm_tok_cp_ranges[mid].klass;
    }
    return PM_TOK_OTHER;
}

bool pm_tok_cp_is_space(uint32_t cp)
{
    /* White_Space: what the Oniguruma \s of Hugging Face tokenizers matches
     * (U+001C..U+001F and U+200B are not in it). */
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

size_t pm_tok_utf8_next(const uint8_t *s, size_t len, uint32_t *cp)
{
    uint8_t c = s[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        n = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        *cp = 0xFFFD;
        return 1;
    }
    if (n > len) {
        *cp = 0xFFFD;
        return 1;
    }
    for (size_t k = 1; k < n; k++) {
        if ((s[k] & 0xC0) != 0x80) {
            *cp = 0xFFFD;
            return 1;
        }
        v = (v << 6) | (s[k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = 0xFFFD;
        return 1;
    }
    *cp = v;
    return n;
}

/* ---- Character kinds as the patterns see them ---- */

enum { K_END, K_SPACE, K_LETTER, K_NUMBER, K_OTHER };

typedef struct text {
    const uint8_t *s;
    size_t len;
} text;

/* Kind and code point of the character at byte i; *next is where it ends. */
static int kind_at(const text *x, size_t i, uint32_t *cp, size_t *next)
{
    if (i >= x->len) {
        *cp = 0;
        *next = i;
        return K_END;
    }
    *next = i + pm_tok_utf8_next(x->s + i, x->len - i, cp);
    if (pm_tok_cp_is_space(*cp)) return K_SPACE;
    int k = pm_tok_cp_class(*cp);
    return k == PM_TOK_LETTER ? K_LETTER : k == PM_TOK_NUMBER ? K_NUMBER : K_OTHER;
}

/* End of the run of characters of kind k starting at i (at most max chars). */
static size_t run_of(const text *x, size_t i, int k, size_t max)
{
    uint32_t cp;
    size_t next, count = 0;
    while (count < max && kind_at(x, i, &cp, &next) == k) i = next, count++;
    return i;
}

/* The ASCII letter a contraction compares, folded when case-insensitive:
 * Unicode case folding maps only U+017F (long s) onto one of them. */
static uint32_t contraction_letter(const text *x, size_t *i, bool any_case)
{
    uint32_t cp;
    size_t next;
    kind_at(x, *i, &cp, &next);
    *i = next;
    if (any_case && cp >= 'A' && cp <= 'Z') cp += 32;
    if (any_case && cp == 0x17F) cp = 's';
    return cp;
}

/* 's 't 're 've 'm 'll 'd at i (which holds '\''); 0 when none. */
static size_t contraction(const text *x, size_t i, bool any_case)
{
    size_t j = i + 1;
    uint32_t a = contraction_letter(x, &j, any_case);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return j;
    size_t k = j;
    uint32_t b = contraction_letter(x, &k, any_case);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return k;
    return 0;
}

/* \s+(?!\S)|\s+ at i (a space): the whole run at the end of the text;
 * otherwise the run less its last character when that leaves one or more (the
 * last one joins the word after it), else the single character. */
static size_t space_run(const text *x, size_t i)
{
    uint32_t cp;
    size_t next, end = i, last = i, count = 0;
    while (kind_at(x, end, &cp, &next) == K_SPACE) last = end, end = next, count++;
    if (end == x->len || count < 2) return end;
    return last;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t match_gpt2(const text *x, size_t i)
{
    uint32_t cp, cp1;
    size_t next, next1;
    int k = kind_at(x, i, &cp, &next);
    if (cp == '\'') {
        size_t e = contraction(x, i, false);
        if (e) return e;
    }
    size_t j = i;
    if (cp == ' ') {
        int k1 = kind_at(x, next, &cp1, &next1);
        if (k1 != K_SPACE && k1 != K_END) j = next, k = k1;
    }
    if (k == K_LETTER || k == K_NUMBER || k == K_OTHER) return run_of(x, j, k, SIZE_MAX);
    return space_run(x, i);
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t match_llama3(const text *x, size_t i)
{
    uint32_t cp, cp1;
    size_t next, next1;
    int k = kind_at(x, i, &cp, &next);
    if (cp == '\'') {
        size_t e = contraction(x, i, true);
        if (e) return e;
    }
    if (k == K_LETTER) return run_of(x, i, K_LETTER, SIZE_MAX);
    int k1 = kind_at(x, next, &cp1, &next1);
    if (k != K_NUMBER && cp != '\r' && cp != '\n' && k1 == K_LETTER) return run_of(x, next, K_LETTER, SIZE_MAX);
    if (k == K_NUMBER) return run_of(x, i, K_NUMBER, 3);
    size_t j = i;
    if (cp == ' ' && k1 == K_OTHER) j = next, k = K_OTHER;
    if (k == K_OTHER) {
        size_t e = run_of(x, j, K_OTHER, SIZE_MAX);
        while (e < x->len && (x->s[e] == '\r' || x->s[e] == '\n')) e++;
        return e;
    }
    /* a space: \s*[\r\n]+ ends after the run's last line break, if it has one */
    size_t end = i, after_break = 0;
    while (kind_at(x, end, &cp, &next) == K_SPACE) {
        if (cp == '\r' || cp == '\n') after_break = next;
        end = next;
    }
    if (after_break) return after_break;
    return space_run(x, i);
}

static void split_with(size_t (*match)(const text *, size_t), const uint8_t *s, size_t len, size_t base,
                       pm_tok_emit emit, void *ctx)
{
    text x = {s, len};
    size_t i = 0;
    while (i < len) {
        size_t e = match(&x, i);
        if (e <= i) e = i + 1; /* cannot happen; guarantees progress */
        emit(ctx, base + i, e - i);
        i = e;
    }
}

void pm_tok_pretokenize(pm_tok_pre pre, const uint8_t *s, size_t len, pm_tok_emit emit, void *ctx)
{
    if (pre == PM_TOK_PRE_LLAMA3) {
        split_with(match_llama3, s, len, 0, emit, ctx);
        return;
    }
    if (pre == PM_TOK_PRE_GPT2) {
        split_with(match_gpt2, s, len, 0, emit, ctx);
        return;
    }
    /* SmolLM: every number character is a piece of its own; the text between
     * them is split with the GPT-2 pattern. */
    text x = {s, len};
    size_t seg = 0, i = 0;
    while (i < len) {
        uint32_t cp;
        size_t next;
        if (kind_at(&x, i, &cp, &next) == K_NUMBER) {
            split_with(match_gpt2, s + seg, i - seg, seg, emit, ctx);
            emit(ctx, i, next - i);
            seg = next;
        }
        i = next;
    }
    split_with(match_gpt2, s + seg, len - seg, seg, emit, ctx);
}
