/* Polymorph models layer: the merge loop shared by both tokenizer models.
 * A word starts as symbols (bytes for byte-level BPE, UTF-8 characters for
 * the SentencePiece-style model); the best adjacent pair (lowest merge rank,
 * or highest score of the merged piece; leftmost on ties) is merged until no
 * pair is left. A heap of candidate pairs, checked lazily when popped, keeps a
 * word of n symbols at O(n log n), so long runs without spaces stay fast. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct sym {
    size_t start, len; /* bytes of the word this symbol covers */
    int32_t id;        /* vocab id, -1 when the text is not a token */
    int32_t prev, next;
} sym;

typedef struct cand {
    double key;   /* smaller merges first */
    size_t start; /* ties: leftmost first */
    int32_t left, right;
    size_t total; /* left.len + right.len when pushed: a changed symbol makes it stale */
    int32_t result;
} cand;

static bool cand_before(const cand *a, const cand *b)
{
    return a->key < b->key || (a->key == b->key && a->start < b->start);
}

typedef struct merger {
    const pm_tokenizer *t;
    pm_tok_scratch *sc;
    const uint8_t *s;
    sym *sy;
    cand *heap;
    size_t n_heap;
} merger;

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

void pm_tok_scratch_free(pm_tok_scratch *s)
{
    free(s->sym);
    free(s->heap);
    memset(s, 0, sizeof *s);
}

static void heap_push(merger *m, cand c)
{
    if (!grow(&m->sc->heap, &m->sc->heap_cap, m->n_heap + 1, sizeof(cand))) {
        m->sc->failed = true;
        return;
    }
    m->heap = m->sc->heap;
    size_t i = m->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_before(&c, &m->heap[parent])) break;
        m->heap[i] = m->heap[parent];
        i = parent;
    }
    m->heap[i] = c;
}

static cand heap_pop(merger *m)
{
    cand top = m->heap[0], last = m->heap[--m->n_heap];
    size_t i = 0, n = m->n_heap;
    for (;;) {
        size_t l = 2 * i + 1, best = i;
        const cand *bc = &last;
        if (l < n && cand_before(&m->heap[l], bc)) best = l, bc = &m->heap[l];
        if (l + 1 < n && cand_before(&m->heap[l + 1], bc)) best = l + 1;
        if (best == i) break;
        m->heap[i] = m->heap[best];
        i = best;
    }
    if (n) m->heap[i] = last;
    return top;
}

/* Push the pair (l, r) if the model merges it. */
static void try_pair(merger *m, int32_t l, int32_t r)
{
    if (l < 0 || r < 0) return;
    const sym *a = &m->sy[l], *b = &m->sy[r];
    cand c = {0, a->start, l, r, a->len + b->len, -1};
    if (m->t->model == PM_TOK_MODEL_GPT2) {
        int32_t rank;
        if (a->id < 0 || b->id < 0 || !pm_tok_pair(m->t, a->id, b->id, &rank, &c.result)) return;
        c.key = rank;
    } else {
        if (a->id < 0 || b->id < 0) return;
        c.result = pm_tok_lookup(m->t, (const char *)m->s + a->start, a->len + b->len);
        if (c.result < 0) return;
        c.key = -(double)m->t->tok[c.result].score;
    }
    heap_push(m, c);
}

/* Merge until no pair is left; symbols are m->sy[0..n), linked in order. */
static void merge_all(merger *m, size_t n)
{
    m->n_heap = 0;
    for (size_t i = 0; i + 1 < n; i++) try_pair(m, (int32_t)i, (int32_t)(i + 1));
    while (m->n_heap) {
        cand c = heap_pop(m);
        sym *a = &m->sy[c.left], *b = &m->sy[c.right];
        if (a->len == 0 || b->len == 0 || a->next != c.right || a->len + b->len != c.total) continue;
        a->len += b->len;
        a->id = c.result;
        a->next = b->next;
        if (b->next >= 0) m->sy[b->next].prev = c.left;
        b->len = 0;
        try_pair(m, a->prev, c.left);
        try_pair(m, c.left, a->next);
    }
}

static bool start_word(merger *m, size_t len)
{
    if (!grow(&m->sc->sym, &m->sc->sym_cap, len, sizeof(sym))) {
        m->sc->failed = true;
        return false;
    }
    m->sy = m->sc->sym;
    m->heap = m->sc->heap;
    return true;
}

void pm_tok_bpe_word(const pm_tokenizer *t, pm_tok_scratch *sc, const uint8_t *s, size_t len, pm_tok_ids *out)
{
    merger m = {t, sc, s, NULL, NULL, 0};
    if (len == 0 || !start_word(&m, len)) return;
    for (size_t i = 0; i < len; i++)
        m.sy[i] = (sym){i, 1, t->byte_token[s[i]], (int32_t)i - 1, i + 1 < len ? (int32_t)i + 1 : -1};
    merge_all(&m, len);
    /* a byte without a token is unknown, a run of them one unknown (as
     * transformers' GGUF tokenizers fuse them), or dropped without one */
    bool last_unk = false;
    for (int32_t i = 0; i >= 0; i = m.sy[i].next) {
        if (m.sy[i].id >= 0) pm_tok_ids_push(out, m.sy[i].id);
        else if (!last_unk && t->unk >= 0) pm_tok_ids_push(out, t->unk);
        last_unk = m.sy[i].id < 0;
    }
}

void pm_tok_spm_segment(const pm_tokenizer *t, pm_tok_scratch *sc, const uint8_t *s, size_t len, pm_tok_ids *out)
{
    merger m = {t, sc, s, NULL, NULL, 0};
    if (len == 0 || !start_word(&m, len)) return;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t cl = pm_tok_utf8_next(s + i, len - i, &cp);
        m.sy[n] = (sym){i, cl, pm_tok_lookup(t, (const char *)s + i, cl), (int32_t)n - 1, -1};
        if (n) m.sy[n - 1].next = (int32_t)n;
        n++;
        i += cl;
    }
    merge_all(&m, n);
    /* Pieces not in the vocab fall back to their bytes' <0xXX> tokens; a byte
     * without one is unknown, and a run of unknowns is one unknown token. */
    bool last_unk = false;
    for (int32_t i = 0; i >= 0; i = m.sy[i].next) {
        if (m.sy[i].id >= 0) {
            pm_tok_ids_push(out, m.sy[i].id);
            last_unk = false;
            continue;
        }
        for (size_t k = 0; k < m.sy[i].len; k++) {
            int32_t id = t->byte_token[s[m.sy[i].start + k]];
            if (id >= 0) {
                pm_tok_ids_push(out, id);
                last_unk = false;
            } else if (!last_unk && t->unk >= 0) {
                pm_tok_ids_push(out, t->unk);
                last_unk = true;
            }
        }
    }
}
