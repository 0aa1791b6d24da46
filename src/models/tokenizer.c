/* Polymorph models layer: tokenizers built from GGUF tokenizer.ggml.* keys.
 * This file holds the vocabulary (hash of token texts, merge ranks, what each
 * token decodes to), the literal matching of special tokens, and the public
 * encode/decode API; the merge loop is in tok_bpe.c and the pre-tokenizer
 * regexes in tok_pretok.c. docs/tokenizer.md explains the choices. */
#include "tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Small helpers ---- */

static uint64_t hash_bytes(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t hash_pair(int32_t a, int32_t b)
{
    uint64_t h = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 31);
}

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t c = 16;
    while (c < n) c *= 2;
    return c;
}

void pm_tok_ids_push(pm_tok_ids *ids, int32_t id)
{
    if (ids->failed) return;
    if (ids->n == ids->cap) {
        size_t c = ids->cap ? ids->cap * 2 : 256;
        int32_t *v = realloc(ids->v, c * sizeof *v);
        if (!v) {
            ids->failed = true;
            return;
        }
        ids->v = v;
        ids->cap = c;
    }
    ids->v[ids->n++] = id;
}

static void put_utf8(pm_text *o, uint32_t cp)
{
    char b[4];
    size_t n;
    if (cp < 0x80) b[0] = (char)cp, n = 1;
    else if (cp < 0x800) b[0] = (char)(0xC0 | cp >> 6), b[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    else if (cp < 0x10000)
        b[0] = (char)(0xE0 | cp >> 12), b[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), b[2] = (char)(0x80 | (cp & 0x3F)),
        n = 3;
    else
        b[0] = (char)(0xF0 | cp >> 18), b[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), b[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    pm_text_append(o, b, n);
}

/* GPT-2's byte <-> character map: printable Latin-1 bytes stand for
 * themselves, the other 68 bytes for U+0100.. in byte order, so every token
 * text is printable. */
static uint32_t byte_to_cp(uint8_t b)
{
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE)) return b;
    uint32_t n = 0;
    for (uint32_t c = 0; c < b; c++)
        if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE))) n++;
    return 256 + n;
}

/* ---- Lookups ---- */

int32_t pm_tok_lookup(const pm_tokenizer *t, const char *s, size_t len)
{
    uint64_t h = hash_bytes(s, len);
    uint32_t mask = t->vocab_cap - 1, tag = (uint32_t)(h >> 32);
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        const pm_tok_vocab_slot *slot = &t->vocab_slots[i];
        if (slot->id < 0) return -1;
        if (slot->tag != tag) continue;
        const pm_tok_entry *e = &t->tok[slot->id];
        if (e->text_len == len && memcmp(t->arena + e->text_off, s, len) == 0) return slot->id;
    }
}

bool pm_tok_pair(const pm_tokenizer *t, int32_t left, int32_t right, int32_t *rank, int32_t *result)
{
    if (!t->pair_cap) return false;
    uint32_t mask = t->pair_cap - 1;
    for (uint32_t i = (uint32_t)hash_pair(left, right) & mask;; i = (i + 1) & mask) {
        const pm_tok_pair_slot *p = &t->pair_slots[i];
        if (p->left < 0) return false;
        if (p->left == left && p->right == right) {
            *rank = p->rank;
            *result = p->result;
            return true;
        }
    }
}

/* ---- Building from GGUF ---- */

static const char *const eog_names[] = {"<|im_end|>", "<|eot_id|>", "<|end|>", "</s>", "<|endoftext|>", "<|eom_id|>"};

typedef struct builder {
    pm_tokenizer *t;
    pm_text arena;
    pm_error *err;
} builder;

static uint32_t arena_add(builder *b, const void *p, size_t n)
{
    uint32_t off = (uint32_t)b->arena.len;
    pm_text_append(&b->arena, p, n);
    return off;
}

/* An optional integer key: absent keeps *out; present must be a valid id. */
static pm_status optional_id(const pm_gguf *g, const char *key, uint32_t n_vocab, int32_t *out, pm_error *err)
{
    if (!pm_gguf_find(g, key)) return PM_OK;
    uint32_t v;
    pm_status st = pm_gguf_get_u32(g, key, &v, err);
    if (st) return st;
    if (v >= n_vocab)
        return pm_error_set(err, PM_ERR_FORMAT, "%s: token id %u is out of range (vocab %u)", key, v, n_vocab);
    *out = (int32_t)v;
    return PM_OK;
}

static pm_status optional_bool(const pm_gguf *g, const char *key, bool *out, pm_error *err)
{
    return pm_gguf_find(g, key) ? pm_gguf_get_bool(g, key, out, err) : PM_OK;
}

/* An optional per-token array: numeric, one element per token. */
static pm_status token_array(const pm_gguf *g, const char *key, uint32_t n_vocab, const pm_gguf_kv **kv,
                             pm_error *err)
{
    *kv = NULL;
    if (!pm_gguf_find(g, key)) return PM_OK;
    pm_gguf_type elem;
    uint64_t n;
    pm_status st = pm_gguf_get_array(g, key, &elem, &n, kv, err);
    if (st) return st;
    if (elem == PM_GGUF_STRING || elem == PM_GGUF_ARRAY || elem == PM_GGUF_BOOL)
        return pm_error_set(err, PM_ERR_FORMAT, "%s: elements are %s, expected numbers", key, pm_gguf_type_name(elem));
    if (n != n_vocab)
        return pm_error_set(err, PM_ERR_FORMAT, "%s: %llu entries for %u tokens", key, (unsigned long long)n, n_vocab);
    return PM_OK;
}

/* What a token decodes to. gpt2: normal and user-defined tokens map back
 * through the byte map (a text with a character outside it stays as written,
 * as Hugging Face's ByteLevel decoder does); llama: <0xXX> byte tokens are the
 * byte, U+2581 is a space. Control tokens are their text. */
static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static void token_bytes(builder *b, const char *s, size_t len, int32_t type, const int16_t *cp_to_byte)
{
    pm_tokenizer *t = b->t;
    if (type == PM_TOK_TYPE_CONTROL) {
        arena_add(b, s, len);
        return;
    }
    if (t->model == PM_TOK_MODEL_GPT2) {
        size_t start = b->arena.len;
        for (size_t i = 0; i < len;) {
            uint32_t cp;
            i += pm_tok_utf8_next((const uint8_t *)s + i, len - i, &cp);
            if (cp >= 324 || cp_to_byte[cp] < 0) {
                b->arena.len = start; /* not byte-level text: keep it verbatim */
                arena_add(b, s, len);
                return;
            }
            char byte = (char)(uint8_t)cp_to_byte[cp];
            pm_text_append(&b->arena, &byte, 1);
        }
        return;
    }
    if (len == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' && hex_digit(s[3]) >= 0 && hex_digit(s[4]) >= 0) {
        char byte = (char)(uint8_t)(hex_digit(s[3]) * 16 + hex_digit(s[4]));
        pm_text_append(&b->arena, &byte, 1);
        return;
    }
    for (size_t i = 0; i < len; i++) {
        if (i + 3 <= len && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
            pm_text_append(&b->arena, " ", 1);
            i += 2;
        } else {
            pm_text_append(&b->arena, s + i, 1);
        }
    }
}

static pm_status read_model(const pm_gguf *g, pm_tokenizer *t, pm_error *err)
{
    pm_gguf_str s;
    pm_status st = pm_gguf_get_str(g, "tokenizer.ggml.model", &s, err);
    if (st) return st;
    if (s.len == 4 && memcmp(s.ptr, "gpt2", 4) == 0) t->model = PM_TOK_MODEL_GPT2;
    else if (s.len == 5 && memcmp(s.ptr, "llama", 5) == 0) t->model = PM_TOK_MODEL_LLAMA;
    else
        return pm_error_set(err, PM_ERR_UNSUPPORTED, "tokenizer.ggml.model: '%.*s' is not supported (gpt2, llama)",
                            (int)(s.len > 64 ? 64 : s.len), s.ptr);
    t->pre = PM_TOK_PRE_GPT2;
    if (t->model == PM_TOK_MODEL_GPT2 && pm_gguf_find(g, "tokenizer.ggml.pre")) {
        st = pm_gguf_get_str(g, "tokenizer.ggml.pre", &s, err);
        if (st) return st;
        /* Names of the same three patterns, grouped as llama.cpp groups them. */
        static const struct { const char *name; pm_tok_pre pre; } pres[] = {
            {"default", PM_TOK_PRE_GPT2},      {"gpt2", PM_TOK_PRE_GPT2},        {"gpt-2", PM_TOK_PRE_GPT2},
            {"mpt", PM_TOK_PRE_GPT2},          {"olmo", PM_TOK_PRE_GPT2},        {"jais", PM_TOK_PRE_GPT2},
            {"smollm", PM_TOK_PRE_SMOLLM},     {"starcoder", PM_TOK_PRE_SMOLLM}, {"refact", PM_TOK_PRE_SMOLLM},
            {"command-r", PM_TOK_PRE_SMOLLM},  {"codeshell", PM_TOK_PRE_SMOLLM}, {"exaone", PM_TOK_PRE_SMOLLM},
            {"llama-bpe", PM_TOK_PRE_LLAMA3},  {"llama3", PM_TOK_PRE_LLAMA3},    {"llama-v3", PM_TOK_PRE_LLAMA3},
            {"dbrx", PM_TOK_PRE_LLAMA3},       {"smaug-bpe", PM_TOK_PRE_LLAMA3},
        };
        size_t i;
        for (i = 0; i < sizeof pres / sizeof pres[0]; i++)
            if (strlen(pres[i].name) == s.len && memcmp(pres[i].name, s.ptr, s.len) == 0) break;
        if (i == sizeof pres / sizeof pres[0])
            return pm_error_set(err, PM_ERR_UNSUPPORTED,
                                "tokenizer.ggml.pre: '%.*s' is not supported (gpt2, smollm, llama-bpe and their aliases)",
                                (int)(s.len > 64 ? 64 : s.len), s.ptr);
        t->pre = pres[i].pre;
    }
    return PM_OK;
}

static pm_status read_vocab(const pm_gguf *g, builder *b)
{
    pm_tokenizer *t = b->t;
    pm_error *err = b->err;
    pm_gguf_type elem;
    uint64_t n;
    const pm_gguf_kv *tokens, *types, *scores;
    pm_status st = pm_gguf_get_array(g, "tokenizer.ggml.tokens", &elem, &n, &tokens, err);
    if (st) return st;
    if (elem != PM_GGUF_STRING)
        return pm_error_set(err, PM_ERR_FORMAT, "tokenizer.ggml.tokens: elements are %s, expected strings",
                            pm_gguf_type_name(elem));
    if (n == 0 || n > INT32_MAX / 2)
        return pm_error_set(err, PM_ERR_FORMAT, "tokenizer.ggml.tokens: %llu tokens", (unsigned long long)n);
    t->n_vocab = (uint32_t)n;
    if ((st = token_array(g, "tokenizer.ggml.token_type", t->n_vocab, &types, err))) return st;
    if ((st = token_array(g, "tokenizer.ggml.scores", t->n_vocab, &scores, err))) return st;

    t->tok = calloc(n, sizeof *t->tok);
    t->eog = calloc(n, sizeof *t->eog);
    t->vocab_cap = pow2_at_least(2 * n);
    t->vocab_slots = malloc(t->vocab_cap * sizeof *t->vocab_slots);
    if (!t->tok || !t->eog || !t->vocab_slots) return pm_error_set(err, PM_ERR_NOMEM, "tokenizer: out of memory");
    memset(t->vocab_slots, 0xFF, t->vocab_cap * sizeof *t->vocab_slots);

    int16_t cp_to_byte[324];
    for (int c = 0; c < 324; c++) cp_to_byte[c] = -1;
    for (int byte = 0; byte < 256; byte++) cp_to_byte[byte_to_cp((uint8_t)byte)] = (int16_t)byte;

    for (uint32_t i = 0; i < t->n_vocab; i++) {
        pm_gguf_str s = pm_gguf_kv_string(tokens, i);
        pm_tok_entry *e = &t->tok[i];
        if (s.len > UINT32_MAX / 4 || b->arena.len > UINT32_MAX / 2)
            return pm_error_set(err, PM_ERR_FORMAT, "tokenizer.ggml.tokens[%u]: %llu bytes", i,
                                (unsigned long long)s.len);
        e->type = PM_TOK_TYPE_NORMAL;
        if (types) {
            double v = pm_gguf_kv_number(types, i);
            if (!(v >= 1 && v <= 6))
                return pm_error_set(err, PM_ERR_FORMAT, "tokenizer.ggml.token_type[%u]: %g is not a token type (1..6)",
                                    i, v);
            e->type = (int32_t)v;
        }
        e->score = scores ? (float)pm_gguf_kv_number(scores, i) : 0.0f;
        e->text_off = arena_add(b, s.ptr, s.len);
        e->text_len = (uint32_t)s.len;
        e->bytes_off = (uint32_t)b->arena.len;
        token_bytes(b, s.ptr, s.len, e->type, cp_to_byte);
        e->bytes_len = (uint32_t)(b->arena.len - e->bytes_off);
        if (b->arena.failed) return pm_error_set(err, PM_ERR_NOMEM, "tokenizer: out of memory");
    }
    t->arena = b->arena.data;
    t->arena_len = b->arena.len;
    /* The hash points at texts in the arena; a repeated text resolves to its
     * last id, as Hugging Face's and llama.cpp's vocab maps do. */
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        const pm_tok_entry *e = &t->tok[i];
        uint64_t full = hash_bytes(t->arena + e->text_off, e->text_len);
        uint32_t mask = t->vocab_cap - 1, h = (uint32_t)full & mask, tag = (uint32_t)(full >> 32);
        for (;; h = (h + 1) & mask) {
            const pm_tok_vocab_slot *slot = &t->vocab_slots[h];
            if (slot->id < 0) break;
            const pm_tok_entry *o = &t->tok[slot->id];
            if (slot->tag == tag && o->text_len == e->text_len &&
                memcmp(t->arena + o->text_off, t->arena + e->text_off, e->text_len) == 0)
                break;
        }
        t->vocab_slots[h] = (pm_tok_vocab_slot){(int32_t)i, tag};
    }
    return PM_OK;
}

static pm_status read_merges(const pm_gguf *g, pm_tokenizer *t, pm_error *err)
{
    pm_gguf_type elem;
    uint64_t n;
    const pm_gguf_kv *kv;
    pm_status st = pm_gguf_get_array(g, "tokenizer.ggml.merges", &elem, &n, &kv, err);
    if (st) return st;
    if (elem != PM_GGUF_STRING)
        return pm_error_set(err, PM_ERR_FORMAT, "tokenizer.ggml.merges: elements are %s, expected strings",
                            pm_gguf_type_name(elem));
    if (n > INT32_MAX / 4)
        return pm_error_set(err, PM_ERR_FORMAT, "tokenizer.ggml.merges: %llu merges", (unsigned long long)n);
    t->pair_cap = pow2_at_least(2 * n);
    t->pair_slots = malloc(t->pair_cap * sizeof *t->pair_slots);
    char *joined = NULL;
    size_t joined_cap = 0;
    if (!t->pair_slots) return pm_error_set(err, PM_ERR_NOMEM, "tokenizer: out of memory");
    for (uint32_t i = 0; i < t->pair_cap; i++) t->pair_slots[i] = (pm_tok_pair_slot){-1, -1, 0, 0};
    for (uint64_t r = 0; r < n; r++) {
        pm_gguf_str s = pm_gguf_kv_string(kv, r);
        const char *sp = s.len ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        if (!sp || sp == s.ptr + s.len - 1 || memchr(sp + 1, ' ', (size_t)(s.ptr + s.len - sp - 1))) {
            free(joined);
            return pm_error_set(err, PM_ERR_FORMAT,
                                "tokenizer.ggml.merges[%llu]: '%.*s' is not two tokens separated by one space",
                                (unsigned long long)r, (int)(s.len > 64 ? 64 : s.len), s.ptr);
        }
        size_t la = (size_t)(sp - s.ptr), lb = s.len - la - 1;
        int32_t a = pm_tok_lookup(t, s.ptr, la), bb = pm_tok_lookup(t, sp + 1, lb);
        if (a < 0 || bb < 0) {
            free(joined);
            const char *bad = a < 0 ? s.ptr : sp + 1;
            size_t bl = a < 0 ? la : lb;
            return pm_error_set(err, PM_ERR_FORMAT, "tokenizer.ggml.merges[%llu]: unknown token '%.*s'",
                                (unsigned long long)r, (int)(bl > 64 ? 64 : bl), bad);
        }
        if (la + lb > joined_cap) {
            char *j = realloc(joined, la + lb + 64);
            if (!j) {
                free(joined);
                return pm_error_set(err, PM_ERR_NOMEM, "tokenizer: out of memory");
            }
            joined = j;
            joined_cap = la + lb + 64;
        }
        memcpy(joined, s.ptr, la);
        memcpy(joined + la, sp + 1, lb);
        int32_t result = pm_tok_lookup(t, joined, la + lb);
        if (result < 0) {
            pm_error_set(err, PM_ERR_FORMAT, "tokenizer.ggml.merges[%llu]: the merged token '%.*s' is not in the vocab",
                         (unsigned long long)r, (int)(la + lb > 64 ? 64 : la + lb), joined);
            free(joined);
            return PM_ERR_FORMAT;
        }
        uint32_t mask = t->pair_cap - 1, h = (uint32_t)hash_pair(a, bb) & mask;
        while (t->pair_slots[h].left >= 0 && !(t->pair_slots[h].left == a && t->pair_slots[h].right == bb))
            h = (h + 1) & mask;
        if (t->pair_slots[h].left < 0) /* a repeated merge keeps its first (best) rank */
            t->pair_slots[h] = (pm_tok_pair_slot){a, bb, (int32_t)r, result};
    }
    free(joined);
    return PM_OK;
}

static int special_cmp(int32_t a, int32_t b, const pm_tokenizer *t);

/* Specials sorted longest first (ties by id) so the first match at a position
 * is the longest, as Hugging Face's leftmost-longest matcher picks. */
static pm_status collect_specials(pm_tokenizer *t, pm_error *err)
{
    size_t n = 0;
    for (uint32_t i = 0; i < t->n_vocab; i++)
        if ((t->tok[i].type == PM_TOK_TYPE_CONTROL || t->tok[i].type == PM_TOK_TYPE_USER_DEFINED) &&
            t->tok[i].text_len > 0)
            n++;
    t->specials = malloc((n ? n : 1) * sizeof *t->specials);
    if (!t->specials) return pm_error_set(err, PM_ERR_NOMEM, "tokenizer: out of memory");
    for (uint32_t i = 0; i < t->n_vocab; i++)
        if ((t->tok[i].type == PM_TOK_TYPE_CONTROL || t->tok[i].type == PM_TOK_TYPE_USER_DEFINED) &&
            t->tok[i].text_len > 0)
            t->specials[t->n_specials++] = (int32_t)i;
    /* insertion sort: a handful to a few hundred entries, once */
    for (size_t i = 1; i < n; i++) {
        int32_t v = t->specials[i];
        size_t j = i;
        while (j > 0 && special_cmp(v, t->specials[j - 1], t) < 0) {
            t->specials[j] = t->specials[j - 1];
            j--;
        }
        t->specials[j] = v;
    }
    return PM_OK;
}

static int special_cmp(int32_t a, int32_t b, const pm_tokenizer *t)
{
    if (t->tok[a].text_len != t->tok[b].text_len) return t->tok[a].text_len > t->tok[b].text_len ? -1 : 1;
    return a < b ? -1 : a > b;
}

pm_status pm_tokenizer_from_gguf(const pm_gguf *g, pm_tokenizer **out, pm_error *err)
{
    *out = NULL;
    if (!g) return pm_error_set(err, PM_ERR_INVALID, "pm_tokenizer_from_gguf: no GGUF");
    pm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return pm_error_set(err, PM_ERR_NOMEM, "tokenizer: out of memory");
    builder b = {t, {0}, err};
    pm_status st = read_model(g, t, err);
    if (!st) st = read_vocab(g, &b);
    if (st) {
        free(b.arena.data);
        t->arena = NULL;
        pm_tokenizer_destroy(t);
        return st;
    }
    bool llama = t->model == PM_TOK_MODEL_LLAMA;
    /* Defaults where the keys are absent: what llama.cpp assumes per model. */
    t->bos = llama ? 1 : -1;
    t->eos = llama ? 2 : -1;
    t->unk = llama ? 0 : -1;
    t->eot = -1;
    t->add_bos = llama;
    t->add_space_prefix = llama;
    int32_t eom = -1;
    if (llama && t->n_vocab < 3) t->bos = t->eos = t->unk = -1;
    if (!st) st = optional_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos, err);
    if (!st) st = optional_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos, err);
    if (!st) st = optional_id(g, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot, err);
    if (!st) st = optional_id(g, "tokenizer.ggml.eom_token_id", t->n_vocab, &eom, err);
    if (!st) st = optional_id(g, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk, err);
    if (!st) st = optional_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err);
    if (!st) st = optional_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err);
    if (!st && !llama) st = read_merges(g, t, err);
    if (!st) st = collect_specials(t, err);
    if (st) {
        pm_tokenizer_destroy(t);
        return st;
    }
    for (int byte = 0; byte < 256; byte++) {
        char name[8];
        size_t n;
        if (llama) n = (size_t)snprintf(name, sizeof name, "<0x%02X>", byte);
        else {
            pm_text one = {0};
            put_utf8(&one, byte_to_cp((uint8_t)byte));
            n = one.failed ? 0 : one.len;
            if (n) memcpy(name, one.data, n);
            free(one.data);
        }
        t->byte_token[byte] = n ? pm_tok_lookup(t, name, n) : -1;
    }
    if (t->eos >= 0) t->eog[t->eos] = true;
    if (t->eot >= 0) t->eog[t->eot] = true;
    if (eom >= 0) t->eog[eom] = true;
    for (size_t i = 0; i < sizeof eog_names / sizeof eog_names[0]; i++) {
        int32_t id = pm_tok_lookup(t, eog_names[i], strlen(eog_names[i]));
        if (id >= 0 && t->tok[id].type == PM_TOK_TYPE_CONTROL) t->eog[id] = true;
    }
    *out = t;
    return PM_OK;
}

void pm_tokenizer_destroy(pm_tokenizer *t)
{
    if (!t) return;
    free(t->tok);
    free(t->eog);
    free(t->arena);
    free(t->vocab_slots);
    free(t->pair_slots);
    free(t->specials);
    free(t);
}

uint32_t pm_tokenizer_vocab_size(const pm_tokenizer *t) { return t->n_vocab; }
int32_t pm_tokenizer_bos(const pm_tokenizer *t) { return t->bos; }
int32_t pm_tokenizer_eos(const pm_tokenizer *t) { return t->eos; }
bool pm_tokenizer_adds_bos(const pm_tokenizer *t) { return t->add_bos && t->bos >= 0; }
bool pm_tokenizer_is_eog(const pm_tokenizer *t, int32_t id)
{
    return id >= 0 && (uint32_t)id < t->n_vocab && t->eog[id];
}

/* ---- Encode ---- */

typedef struct encoder {
    const pm_tokenizer *t;
    const uint8_t *text;
    pm_tok_scratch sc;
    pm_tok_ids ids;
    pm_text buf; /* llama: the escaped fragment */
} encoder;

static void emit_word(void *ctx, size_t start, size_t len)
{
    encoder *e = ctx;
    pm_tok_bpe_word(e->t, &e->sc, e->text + start, len, &e->ids);
}

/* One run of ordinary text between special tokens. */
static void encode_fragment(encoder *e, size_t start, size_t len)
{
    if (len == 0) return;
    const pm_tokenizer *t = e->t;
    if (t->model == PM_TOK_MODEL_GPT2) {
        const uint8_t *saved = e->text;
        e->text = saved + start;
        pm_tok_pretokenize(t->pre, e->text, len, emit_word, e);
        e->text = saved;
        return;
    }
    /* SentencePiece: a leading space (add_space_prefix) on every fragment,
     * spaces written as U+2581, the whole fragment merged as one word. */
    e->buf.len = 0;
    if (t->add_space_prefix) pm_text_append(&e->buf, "\xE2\x96\x81", 3);
    const uint8_t *s = e->text + start;
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != ' ') continue;
        pm_text_append(&e->buf, (const char *)s + run, i - run);
        pm_text_append(&e->buf, "\xE2\x96\x81", 3);
        run = i + 1;
    }
    pm_text_append(&e->buf, (const char *)s + run, len - run);
    if (e->buf.failed) {
        e->ids.failed = true;
        return;
    }
    pm_tok_spm_segment(t, &e->sc, (const uint8_t *)e->buf.data, e->buf.len, &e->ids);
}

/* The special token written at text[i], or -1. */
static int32_t special_at(const pm_tokenizer *t, const uint8_t *s, size_t len, size_t i, bool parse_special)
{
    for (size_t k = 0; k < t->n_specials; k++) {
        const pm_tok_entry *e = &t->tok[t->specials[k]];
        if (e->text_len > len - i || (uint8_t)t->arena[e->text_off] != s[i]) continue;
        if (!parse_special && e->type == PM_TOK_TYPE_CONTROL) continue;
        if (memcmp(t->arena + e->text_off, s + i, e->text_len) == 0) return t->specials[k];
    }
    return -1;
}

pm_status pm_tokenizer_encode(const pm_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                              int32_t **ids, size_t *n, pm_error *err)
{
    *ids = NULL;
    *n = 0;
    if (!t || (!text && len)) return pm_error_set(err, PM_ERR_INVALID, "pm_tokenizer_encode: no tokenizer or text");
    encoder e = {t, (const uint8_t *)text, {0}, {0}, {0}};
    if (add_bos && pm_tokenizer_adds_bos(t)) pm_tok_ids_push(&e.ids, t->bos);
    /* Is any special token possibly present? A first-byte filter keeps the
     * scan cheap for vocabularies with hundreds of reserved tokens. */
    bool first[256] = {false};
    for (size_t k = 0; k < t->n_specials; k++) first[(uint8_t)t->arena[t->tok[t->specials[k]].text_off]] = true;
    size_t frag = 0;
    for (size_t i = 0; i < len; i++) {
        if (!first[(uint8_t)text[i]]) continue;
        int32_t id = special_at(t, e.text, len, i, parse_special);
        if (id < 0) continue;
        encode_fragment(&e, frag, i - frag);
        pm_tok_ids_push(&e.ids, id);
        frag = i + t->tok[id].text_len;
        i = frag - 1;
    }
    encode_fragment(&e, frag, len - frag);
    pm_tok_scratch_free(&e.sc);
    free(e.buf.data);
    if (e.ids.failed || e.sc.failed) {
        free(e.ids.v);
        return pm_error_set(err, PM_ERR_NOMEM, "pm_tokenizer_encode: out of memory (%zu bytes of text)", len);
    }
    *ids = e.ids.v ? e.ids.v : malloc(sizeof(int32_t));
    if (!*ids) return pm_error_set(err, PM_ERR_NOMEM, "pm_tokenizer_encode: out of memory");
    *n = e.ids.n;
    return PM_OK;
}

/* ---- Decode ---- */

/* Tokens a reader does not see: control tokens and the unknown token (the
 * ones Hugging Face's skip_special_tokens drops). */
static bool is_special(const pm_tok_entry *e)
{
    return e->type == PM_TOK_TYPE_CONTROL || e->type == PM_TOK_TYPE_UNKNOWN;
}

long pm_tokenizer_piece(const pm_tokenizer *t, int32_t id, bool render_special, char *buf, size_t cap)
{
    if (!t || id < 0 || (uint32_t)id >= t->n_vocab) return -1;
    const pm_tok_entry *e = &t->tok[id];
    if (is_special(e) && !render_special) return 0;
    if (e->bytes_len <= cap && buf) memcpy(buf, t->arena + e->bytes_off, e->bytes_len);
    return (long)e->bytes_len;
}

/* Length of the longest prefix of s that starts a valid UTF-8 character (the
 * "maximal subpart" one U+FFFD replaces), and whether it is complete. */
static size_t utf8_valid_prefix(const uint8_t *s, size_t len, bool *complete)
{
    uint8_t c = s[0];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    *complete = false;
    if (c < 0x80) {
        *complete = true;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 1;
    size_t k = 1;
    for (; k < need && k < len; k++) {
        uint8_t lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
        if (s[k] < lo_k || s[k] > hi_k) return k;
    }
    *complete = k == need;
    return k;
}

/* Append bytes as valid UTF-8, each maximal invalid subpart becoming one
 * U+FFFD (Rust's from_utf8_lossy, which Hugging Face's ByteLevel decoder uses). */
static void append_lossy(pm_text *o, const uint8_t *s, size_t len)
{
    size_t i = 0, run = 0;
    while (i < len) {
        bool complete;
        size_t k = utf8_valid_prefix(s + i, len - i, &complete);
        if (complete) {
            i += k;
            continue;
        }
        pm_text_append(o, (const char *)s + run, i - run);
        pm_text_append(o, "\xEF\xBF\xBD", 3);
        i += k;
        run = i;
    }
    pm_text_append(o, (const char *)s + run, len - run);
}

static bool is_valid_utf8(const uint8_t *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        bool complete;
        i += utf8_valid_prefix(s + i, len - i, &complete);
        if (!complete) return false;
    }
    return true;
}

pm_status pm_tokenizer_decode(const pm_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **text,
                              pm_error *err)
{
    *text = NULL;
    if (!t || (!ids && n)) return pm_error_set(err, PM_ERR_INVALID, "pm_tokenizer_decode: no tokenizer or ids");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= t->n_vocab)
            return pm_error_set(err, PM_ERR_INVALID, "pm_tokenizer_decode: id %d at position %zu is out of range (vocab %u)",
                                ids[i], i, t->n_vocab);
    pm_text raw = {0}, out = {0};
    for (size_t i = 0; i < n; i++) {
        const pm_tok_entry *e = &t->tok[ids[i]];
        if (skip_special && is_special(e)) continue;
        if (t->model == PM_TOK_MODEL_GPT2) {
            pm_text_append(&raw, t->arena + e->bytes_off, e->bytes_len);
            continue;
        }
        /* llama: a run of <0xXX> tokens is its bytes when they are valid
         * UTF-8, else one U+FFFD per byte (Hugging Face's ByteFallback). */
        if (e->type == PM_TOK_TYPE_BYTE) {
            size_t start = raw.len;
            size_t j = i;
            /* skipped tokens are gone before this step, so a run goes on past them */
            for (; j < n; j++) {
                const pm_tok_entry *ej = &t->tok[ids[j]];
                if (skip_special && is_special(ej)) continue;
                if (ej->type != PM_TOK_TYPE_BYTE) break;
                pm_text_append(&raw, t->arena + ej->bytes_off, ej->bytes_len);
            }
            if (!raw.failed && !is_valid_utf8((const uint8_t *)raw.data + start, raw.len - start)) {
                size_t bytes = raw.len - start;
                raw.len = start;
                for (size_t k = 0; k < bytes; k++) pm_text_append(&raw, "\xEF\xBF\xBD", 3);
            }
            i = j - 1;
            continue;
        }
        pm_text_append(&raw, t->arena + e->bytes_off, e->bytes_len);
    }
    size_t skip = 0;
    if (t->model == PM_TOK_MODEL_LLAMA && t->add_space_prefix && raw.len && raw.data[0] == ' ') skip = 1;
    append_lossy(&out, (const uint8_t *)(raw.data ? raw.data + skip : ""), raw.len - skip);
    pm_text_append(&out, "", 0);
    free(raw.data);
    if (raw.failed || out.failed || !out.data) {
        free(out.data);
        return pm_error_set(err, PM_ERR_NOMEM, "pm_tokenizer_decode: out of memory (%zu ids)", n);
    }
    *text = out.data;
    return PM_OK;
}
