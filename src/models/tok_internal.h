/* Polymorph models layer: the tokenizer's private structures, shared by
 * tokenizer.c (vocabulary, special tokens, public API), tok_bpe.c (the merge
 * loop of both models) and tok_pretok.c (the hand-written pre-tokenizer
 * regexes over Unicode categories from unicode_tables.c). */
#ifndef POLYMORPH_TOK_INTERNAL_H
#define POLYMORPH_TOK_INTERNAL_H

#include "polymorph/tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Unicode categories (generated table) ---- */
enum { PM_TOK_OTHER = 0, PM_TOK_LETTER = 1, PM_TOK_NUMBER = 2 };

typedef struct pm_tok_cp_range {
    uint32_t lo, hi;
    uint8_t klass;
} pm_tok_cp_range;

extern const pm_tok_cp_range pm_tok_cp_ranges[];
extern const size_t pm_tok_cp_range_count;

int pm_tok_cp_class(uint32_t cp);   /* PM_TOK_LETTER / NUMBER / OTHER */
bool pm_tok_cp_is_space(uint32_t cp); /* the Unicode White_Space property (regex \s) */

/* Decode one UTF-8 character at s[0..len): returns its length in bytes (1..4)
 * and the code point; an invalid or truncated sequence counts as one byte
 * with cp = 0xFFFD (so splitting never loses bytes). */
size_t pm_tok_utf8_next(const uint8_t *s, size_t len, uint32_t *cp);

/* ---- The tokenizer ---- */
typedef enum pm_tok_model { PM_TOK_MODEL_GPT2, PM_TOK_MODEL_LLAMA } pm_tok_model;
typedef enum pm_tok_pre { PM_TOK_PRE_GPT2, PM_TOK_PRE_SMOLLM, PM_TOK_PRE_LLAMA3 } pm_tok_pre;

/* GGUF token types. */
enum {
    PM_TOK_TYPE_NORMAL = 1,
    PM_TOK_TYPE_UNKNOWN = 2,
    PM_TOK_TYPE_CONTROL = 3,
    PM_TOK_TYPE_USER_DEFINED = 4,
    PM_TOK_TYPE_UNUSED = 5,
    PM_TOK_TYPE_BYTE = 6,
};

typedef struct pm_tok_entry {
    uint32_t text_off, text_len;   /* the token as written in the vocab */
    uint32_t bytes_off, bytes_len; /* what it decodes to (byte-level mapped back, U+2581 -> ' ') */
    float score;
    int32_t type;
} pm_tok_entry;

/* Open-addressing hash slots: vocab text -> id (the hash's high half kept
 * as a tag, so a probe rarely touches the text), merge pair -> rank. */
typedef struct pm_tok_vocab_slot {
    int32_t id;
    uint32_t tag;
} pm_tok_vocab_slot;

typedef struct pm_tok_pair_slot {
    int32_t left, right; /* -1: empty */
    int32_t rank, result;
} pm_tok_pair_slot;

struct pm_tokenizer {
    pm_tok_model model;
    pm_tok_pre pre;
    uint32_t n_vocab;
    pm_tok_entry *tok;
    char *arena; /* all token texts and byte strings */
    size_t arena_len;

    pm_tok_vocab_slot *vocab_slots; /* by text; size vocab_cap (power of two), id -1 empty */
    uint32_t vocab_cap;
    pm_tok_pair_slot *pair_slots; /* gpt2 merges; size pair_cap */
    uint32_t pair_cap;
    int32_t byte_token[256]; /* gpt2: the single-byte token; llama: <0xXX>; -1 none */

    int32_t *specials; /* ids matched literally in text, longest text first */
    size_t n_specials;

    int32_t bos, eos, eot, unk;
    bool add_bos, add_space_prefix;
    bool *eog; /* per id */
};

/* Id of a vocab text, or -1. */
int32_t pm_tok_lookup(const pm_tokenizer *t, const char *s, size_t len);
/* Merge pair rank (gpt2): true and *rank, *result when (left, right) merge. */
bool pm_tok_pair(const pm_tokenizer *t, int32_t left, int32_t right, int32_t *rank, int32_t *result);

/* A growing id list. */
typedef struct pm_tok_ids {
    int32_t *v;
    size_t n, cap;
    bool failed;
} pm_tok_ids;
void pm_tok_ids_push(pm_tok_ids *ids, int32_t id);

/* Split text into pre-tokens: calls emit(ctx, start, len) for each piece in
 * order (pieces cover the text exactly). */
typedef void (*pm_tok_emit)(void *ctx, size_t start, size_t len);
void pm_tok_pretokenize(pm_tok_pre pre, const uint8_t *s, size_t len, pm_tok_emit emit, void *ctx);

/* Scratch for the merge loop, reused across words of one encode call. */
typedef struct pm_tok_scratch {
    void *sym, *heap;
    size_t sym_cap, heap_cap;
    bool failed;
} pm_tok_scratch;
void pm_tok_scratch_free(pm_tok_scratch *s);

/* Byte-level BPE of one pre-token (raw bytes), appending ids. */
void pm_tok_bpe_word(const pm_tokenizer *t, pm_tok_scratch *sc, const uint8_t *s, size_t len, pm_tok_ids *out);
/* SentencePiece-style merge of one segment (already escaped: ' ' -> U+2581),
 * appending ids, with byte fallback for pieces not in the vocab. */
void pm_tok_spm_segment(const pm_tokenizer *t, pm_tok_scratch *sc, const uint8_t *s, size_t len, pm_tok_ids *out);

#endif
