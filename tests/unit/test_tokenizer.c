/* Tokenizer unit tests: tiny GGUF files built in memory exercise every
 * metadata error (missing tokens, bad merges, array lengths, ids and types
 * out of range, unsupported models), ids out of range in piece/decode, and
 * hand-computed encodings of both models (merges, pre-tokenizer splits,
 * special tokens, byte fallback). The agreement with transformers on real
 * vocabularies is tests/oracle/test_tokenizer.py. */
#include "polymorph/tokenizer.h"
#include "test.h"

#include <stdbool.h>

/* ---- A GGUF writer for metadata-only files ---- */

typedef struct gbuf {
    uint8_t data[1 << 16];
    size_t len;
    uint64_t n_kv;
} gbuf;

static void put(gbuf *b, const void *p, size_t n)
{
    if (b->len + n > sizeof b->data) abort();
    memcpy(b->data + b->len, p, n);
    b->len += n;
}
static void put_u32(gbuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(gbuf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(gbuf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

static void begin(gbuf *b)
{
    b->len = 0;
    b->n_kv = 0;
    put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u64(b, 0); /* tensors */
    put_u64(b, 0); /* kv count, patched by finish */
}

static void kv_head(gbuf *b, const char *key, uint32_t type)
{
    put_str(b, key);
    put_u32(b, type);
    b->n_kv++;
}
static void kv_str(gbuf *b, const char *key, const char *v)
{
    kv_head(b, key, PM_GGUF_STRING);
    put_str(b, v);
}
static void kv_u32(gbuf *b, const char *key, uint32_t v)
{
    kv_head(b, key, PM_GGUF_U32);
    put_u32(b, v);
}
static void kv_bool(gbuf *b, const char *key, bool v)
{
    kv_head(b, key, PM_GGUF_BOOL);
    uint8_t x = v;
    put(b, &x, 1);
}
static void kv_strs(gbuf *b, const char *key, const char *const *v, size_t n)
{
    kv_head(b, key, PM_GGUF_ARRAY);
    put_u32(b, PM_GGUF_STRING);
    put_u64(b, n);
    for (size_t i = 0; i < n; i++) put_str(b, v[i]);
}
static void kv_i32s(gbuf *b, const char *key, const int32_t *v, size_t n)
{
    kv_head(b, key, PM_GGUF_ARRAY);
    put_u32(b, PM_GGUF_I32);
    put_u64(b, n);
    put(b, v, 4 * n);
}
static void kv_f32s(gbuf *b, const char *key, const float *v, size_t n)
{
    kv_head(b, key, PM_GGUF_ARRAY);
    put_u32(b, PM_GGUF_F32);
    put_u64(b, n);
    put(b, v, 4 * n);
}

/* Open the file and build its tokenizer: the status, *t on success. */
static pm_status build(gbuf *b, pm_tokenizer **t, pm_error *err)
{
    memcpy(b->data + 16, &b->n_kv, 8);
    pm_gguf *g;
    *t = NULL;
    pm_status st = pm_gguf_open_memory(b->data, b->len, "mem.gguf", &g, err);
    if (st) {
        fprintf(stderr, "gguf: %s\n", err->message);
        return st;
    }
    st = pm_tokenizer_from_gguf(g, t, err);
    pm_gguf_close(g);
    return st;
}

/* A byte-level vocabulary: a b c Ġ (space) ab Ġab abc <s> <|end|> <|end|>x 1 2 12 */
static const char *const gpt2_tokens[] = {"a", "b", "c", "\xC4\xA0", "ab", ("\xC4\xA0" "ab"), "abc", "<s>",
                                          "<|end|>", "<|end|>x", "1", "2", "12", "\xC4\x8A"};
static const int32_t gpt2_types[] = {1, 1, 1, 1, 1, 1, 1, 3, 3, 4, 1, 1, 1, 1};
static const char *const gpt2_merges[] = {"a b", "\xC4\xA0 ab", "ab c", "1 2"};
enum { N_GPT2 = sizeof gpt2_tokens / sizeof gpt2_tokens[0] };

static void gpt2_file(gbuf *b, const char *pre, size_t n_types, size_t n_merges, const char *const *merges)
{
    begin(b);
    kv_str(b, "tokenizer.ggml.model", "gpt2");
    if (pre) kv_str(b, "tokenizer.ggml.pre", pre);
    kv_strs(b, "tokenizer.ggml.tokens", gpt2_tokens, N_GPT2);
    kv_i32s(b, "tokenizer.ggml.token_type", gpt2_types, n_types);
    kv_strs(b, "tokenizer.ggml.merges", merges, n_merges);
    kv_u32(b, "tokenizer.ggml.bos_token_id", 7);
    kv_u32(b, "tokenizer.ggml.eos_token_id", 8);
}

static bool ids_are(const int32_t *ids, size_t n, const int32_t *want, size_t nw)
{
    if (n != nw) return false;
    for (size_t i = 0; i < n; i++)
        if (ids[i] != want[i]) return false;
    return true;
}

#define ENCODE_IS(t, text, bos, special, ...)                                                             \
    do {                                                                                                  \
        const int32_t want_[] = {__VA_ARGS__};                                                            \
        int32_t *ids_;                                                                                    \
        size_t n_;                                                                                        \
        pm_error e_ = {0};                                                                                \
        CHECK(pm_tokenizer_encode(t, text, strlen(text), bos, special, &ids_, &n_, &e_) == PM_OK);        \
        CHECK_MSG(ids_are(ids_, n_, want_, sizeof want_ / sizeof want_[0]), "encode '%s': %zu ids", text, n_); \
        free(ids_);                                                                                       \
    } while (0)

/* ---- Errors ---- */

TEST(missing_tokens)
{
    gbuf b;
    begin(&b);
    kv_str(&b, "tokenizer.ggml.model", "gpt2");
    pm_tokenizer *t;
    pm_error err = {0};
    CHECK(build(&b, &t, &err) == PM_ERR_INVALID);
    CHECK(t == NULL);
    CHECK_MSG(strstr(err.message, "tokenizer.ggml.tokens") != NULL, "%s", err.message);
}

TEST(missing_model)
{
    gbuf b;
    begin(&b);
    kv_strs(&b, "tokenizer.ggml.tokens", gpt2_tokens, N_GPT2);
    pm_tokenizer *t;
    pm_error err = {0};
    CHECK(build(&b, &t, &err) != PM_OK);
    CHECK_MSG(strstr(err.message, "tokenizer.ggml.model") != NULL, "%s", err.message);
}

TEST(unsupported_model_and_pre)
{
    gbuf b;
    begin(&b);
    kv_str(&b, "tokenizer.ggml.model", "bert");
    kv_strs(&b, "tokenizer.ggml.tokens", gpt2_tokens, N_GPT2);
    pm_tokenizer *t;
    pm_error err = {0};
    CHECK(build(&b, &t, &err) == PM_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.message, "'bert'") != NULL, "%s", err.message);
    gpt2_file(&b, "qwen2", N_GPT2, 4, gpt2_merges);
    CHECK(build(&b, &t, &err) == PM_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.message, "tokenizer.ggml.pre: 'qwen2'") != NULL, "%s", err.message);
}

TEST(types_length_mismatch)
{
    gbuf b;
    gpt2_file(&b, NULL, N_GPT2 - 1, 4, gpt2_merges);
    pm_tokenizer *t;
    pm_error err = {0};
    CHECK(build(&b, &t, &err) == PM_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "tokenizer.ggml.token_type: 13 entries for 14 tokens") != NULL, "%s", err.message);
}

TEST(bad_token_type)
{
    gbuf b;
    begin(&b);
    kv_str(&b, "tokenizer.ggml.model", "gpt2");
    kv_strs(&b, "tokenizer.ggml.tokens", gpt2_tokens, 3);
    const int32_t types[] = {1, 9, 1};
    kv_i32s(&b, "tokenizer.ggml.token_type", types, 3);
    kv_strs(&b, "tokenizer.ggml.merges", gpt2_merges, 0);
    pm_tokenizer *t;
    pm_error err = {0};
    CHECK(build(&b, &t, &err) == PM_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "tokenizer.ggml.token_type[1]: 9") != NULL, "%s", err.message);
}

TEST(merge_errors)
{
    static const struct {
        const char *merge, *message;
    } cases[] = {
        {"a zz", "tokenizer.ggml.merges[1]: unknown token 'zz'"},
        {"q b", "tokenizer.ggml.merges[1]: unknown token 'q'"},
        {"ab", "tokenizer.ggml.merges[1]: 'ab' is not two tokens"},
        {"a b c", "tokenizer.ggml.merges[1]: 'a b c' is not two tokens"},
        {"b a", "tokenizer.ggml.merges[1]: the merged token 'ba' is not in the vocab"},
        {"", "tokenizer.ggml.merges[1]: '' is not two tokens"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *merges[] = {"a b", cases[i].merge};
        gbuf b;
        gpt2_file(&b, NULL, N_GPT2, 2, merges);
        pm_tokenizer *t;
        pm_error err = {0};
        CHECK(build(&b, &t, &err) == PM_ERR_FORMAT);
        CHECK_MSG(strstr(err.message, cases[i].message) != NULL, "%s", err.message);
    }
}

TEST(missing_merges)
{
    gbuf b;
    begin(&b);
    kv_str(&b, "tokenizer.ggml.model", "gpt2");
    kv_strs(&b, "tokenizer.ggml.tokens", gpt2_tokens, N_GPT2);
    pm_tokenizer *t;
    pm_error err = {0};
    CHECK(build(&b, &t, &err) != PM_OK);
    CHECK_MSG(strstr(err.message, "tokenizer.ggml.merges") != NULL, "%s", err.message);
}

TEST(special_id_out_of_range)
{
    gbuf b;
    gpt2_file(&b, NULL, N_GPT2, 4, gpt2_merges);
    kv_u32(&b, "tokenizer.ggml.eot_token_id", N_GPT2);
    pm_tokenizer *t;
    pm_error err = {0};
    CHECK(build(&b, &t, &err) == PM_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "tokenizer.ggml.eot_token_id: token id 14 is out of range") != NULL, "%s",
              err.message);
}

TEST(wrong_value_types)
{
    gbuf b;
    begin(&b);
    kv_str(&b, "tokenizer.ggml.model", "gpt2");
    kv_i32s(&b, "tokenizer.ggml.tokens", gpt2_types, 3);
    pm_tokenizer *t;
    pm_error err = {0};
    CHECK(build(&b, &t, &err) == PM_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "tokenizer.ggml.tokens: elements are") != NULL, "%s", err.message);
    begin(&b);
    kv_str(&b, "tokenizer.ggml.model", "gpt2");
    kv_strs(&b, "tokenizer.ggml.tokens", gpt2_tokens, N_GPT2);
    kv_strs(&b, "tokenizer.ggml.token_type", gpt2_tokens, N_GPT2);
    CHECK(build(&b, &t, &err) == PM_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "tokenizer.ggml.token_type: elements are") != NULL, "%s", err.message);
}

/* ---- The gpt2 model ---- */

TEST(gpt2_encode_decode)
{
    gbuf b;
    gpt2_file(&b, "smollm", N_GPT2, 4, gpt2_merges);
    pm_tokenizer *t;
    pm_error err = {0};
    CHECK(build(&b, &t, &err) == PM_OK);
    if (!t) return;
    CHECK(pm_tokenizer_vocab_size(t) == N_GPT2);
    CHECK(pm_tokenizer_bos(t) == 7 && pm_tokenizer_eos(t) == 8);
    CHECK(!pm_tokenizer_adds_bos(t)); /* gpt2 default */
    CHECK(pm_tokenizer_is_eog(t, 8) && !pm_tokenizer_is_eog(t, 7) && !pm_tokenizer_is_eog(t, 99));
    /* "ab ab abc": pre-tokens ab | Ġab | Ġabc; Ġabc has no merge past Ġab c */
    ENCODE_IS(t, "ab ab abc", false, true, 4, 5, 5, 2);
    ENCODE_IS(t, "abc", true, true, 6); /* add_bos asked, the model does not want it */
    /* smollm: digits one by one, so "12" never merges */
    ENCODE_IS(t, "12", false, true, 10, 11);
    /* special tokens: control only with parse_special, user-defined always,
     * longest first ("<|end|>x" over "<|end|>") */
    ENCODE_IS(t, "a<s>b", false, true, 0, 7, 1);
    ENCODE_IS(t, "<|end|>xa<|end|>", false, true, 9, 0, 8);
    ENCODE_IS(t, "<|end|>", false, false);
    ENCODE_IS(t, "", false, true);

    const int32_t ids[] = {4, 5, 7, 3, 8};
    char *text;
    CHECK(pm_tokenizer_decode(t, ids, 5, false, &text, &err) == PM_OK);
    CHECK(text && strcmp(text, "ab ab<s> <|end|>") == 0);
    free(text);
    CHECK(pm_tokenizer_decode(t, ids, 5, true, &text, &err) == PM_OK);
    CHECK(text && strcmp(text, "ab ab ") == 0);
    free(text);
    CHECK(pm_tokenizer_decode(t, ids, 0, false, &text, &err) == PM_OK);
    CHECK(text && text[0] == '\0');
    free(text);

    char buf[8];
    CHECK(pm_tokenizer_piece(t, 5, false, buf, sizeof buf) == 3 && memcmp(buf, " ab", 3) == 0);
    CHECK(pm_tokenizer_piece(t, 8, false, buf, sizeof buf) == 0);
    CHECK(pm_tokenizer_piece(t, 8, true, buf, 2) == 7); /* too small: the size needed */
    CHECK(pm_tokenizer_piece(t, 13, true, buf, sizeof buf) == 1 && buf[0] == '\n');
    pm_tokenizer_destroy(t);
}

TEST(ids_out_of_range)
{
    gbuf b;
    gpt2_file(&b, NULL, N_GPT2, 4, gpt2_merges);
    pm_tokenizer *t;
    pm_error err = {0};
    CHECK(build(&b, &t, &err) == PM_OK);
    if (!t) return;
    char buf[8];
    CHECK(pm_tokenizer_piece(t, N_GPT2, true, buf, sizeof buf) == -1);
    CHECK(pm_tokenizer_piece(t, -1, true, buf, sizeof buf) == -1);
    const int32_t ids[] = {0, 1, N_GPT2};
    char *text = (char *)1;
    CHECK(pm_tokenizer_decode(t, ids, 3, false, &text, &err) == PM_ERR_INVALID);
    CHECK(text == NULL);
    CHECK_MSG(strstr(err.message, "id 14 at position 2 is out of range (vocab 14)") != NULL, "%s", err.message);
    const int32_t neg[] = {-5};
    CHECK(pm_tokenizer_decode(t, neg, 1, false, &text, &err) == PM_ERR_INVALID);
    pm_tokenizer_destroy(t);
}

TEST(gpt2_invalid_utf8_and_missing_bytes)
{
    gbuf b;
    gpt2_file(&b, NULL, N_GPT2, 4, gpt2_merges);
    pm_tokenizer *t;
    pm_error err = {0};
    CHECK(build(&b, &t, &err) == PM_OK);
    if (!t) return;
    /* bytes without a token (no unknown token in this vocab) are dropped
     * rather than crash; invalid UTF-8 still splits */
    ENCODE_IS(t, "a\xff\xfe b", false, true, 0, 3, 1);
    ENCODE_IS(t, "zz", false, true);
    pm_tokenizer_destroy(t);
}

/* Byte-level BPE is lossless: with a token for every byte, random bytes
 * (invalid UTF-8 included) encode and their pieces concatenate back to the
 * input, under every pre-tokenizer. */
TEST(gpt2_random_bytes_round_trip)
{
    static char texts[260][4];
    static const char *tokens[260];
    int shifted = 0;
    for (int byte = 0; byte < 256; byte++) {
        /* GPT-2's map: printable Latin-1 stands for itself, the rest from U+0100 */
        bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
        uint32_t cp = printable ? (uint32_t)byte : 256u + (uint32_t)shifted++;
        if (cp < 0x80) texts[byte][0] = (char)cp;
        else texts[byte][0] = (char)(0xC0 | cp >> 6), texts[byte][1] = (char)(0x80 | (cp & 0x3F));
        tokens[byte] = texts[byte];
    }
    tokens[256] = "aa"; /* merges over the mapped texts of 'a' and ' ' */
    tokens[257] = ("\xC4\xA0" "a");
    tokens[258] = ("\xC4\xA0" "aa");
    tokens[259] = "aaaa";
    const char *merges[] = {"a a", "\xC4\xA0 a", ("\xC4\xA0" "a a"), "aa aa"};
    static const char *const pres[] = {"gpt2", "smollm", "llama-bpe"};
    uint64_t rng = 0x5eed;
    for (size_t p = 0; p < 3; p++) {
        gbuf b;
        begin(&b);
        kv_str(&b, "tokenizer.ggml.model", "gpt2");
        kv_str(&b, "tokenizer.ggml.pre", pres[p]);
        kv_strs(&b, "tokenizer.ggml.tokens", tokens, 260);
        kv_strs(&b, "tokenizer.ggml.merges", merges, 4);
        pm_tokenizer *t;
        pm_error err = {0};
        CHECK(build(&b, &t, &err) == PM_OK);
        if (!t) return;
        /* rank 0 "a a" merges leftmost pairs first (Ġ aa aa a), "Ġ aa" is no
         * merge, then "aa aa": Ġ aaaa a */
        ENCODE_IS(t, " aaaaa", false, true, ' ', 259, 'a');
        for (int round = 0; round < 200; round++) {
            char text[300], back[300];
            size_t len = pm_test_xorshift(&rng) % 300, n, got = 0;
            for (size_t i = 0; i < len; i++) {
                uint32_t r = pm_test_xorshift(&rng);
                text[i] = (char)((r & 3) == 0 ? ' ' : (r & 3) == 1 ? 'a' : (int)(r >> 8));
            }
            int32_t *ids;
            CHECK(pm_tokenizer_encode(t, text, len, false, true, &ids, &n, &err) == PM_OK);
            for (size_t i = 0; i < n && got <= len; i++) {
                long k = pm_tokenizer_piece(t, ids[i], true, back + got, sizeof back - got);
                CHECK(k > 0);
                got += k > 0 ? (size_t)k : 0;
            }
            CHECK_MSG(got == len && memcmp(back, text, len) == 0, "pre %s round %d", pres[p], round);
            free(ids);
        }
        pm_tokenizer_destroy(t);
    }
}

/* ---- The llama (SentencePiece) model ---- */

static const char *const spm_tokens[] = {
    "<unk>", "<s>", "</s>", "<0x41>", "<0xC3>", "<0xA9>", "\xE2\x96\x81", "a", "b", ("\xE2\x96\x81" "a"), "ab",
    ("\xE2\x96\x81" "ab"), "<|im_end|>"};
static const float spm_scores[] = {0, 0, 0, 0, 0, 0, -10, -11, -12, -1, -2, -3, 0};
static const int32_t spm_types[] = {2, 3, 3, 6, 6, 6, 1, 1, 1, 1, 1, 1, 3};
enum { N_SPM = sizeof spm_tokens / sizeof spm_tokens[0] };

TEST(spm_encode_decode)
{
    gbuf b;
    begin(&b);
    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_strs(&b, "tokenizer.ggml.tokens", spm_tokens, N_SPM);
    kv_f32s(&b, "tokenizer.ggml.scores", spm_scores, N_SPM);
    kv_i32s(&b, "tokenizer.ggml.token_type", spm_types, N_SPM);
    pm_tokenizer *t;
    pm_error err = {0};
    CHECK(build(&b, &t, &err) == PM_OK);
    if (!t) return;
    CHECK(pm_tokenizer_adds_bos(t) && pm_tokenizer_bos(t) == 1 && pm_tokenizer_eos(t) == 2);
    CHECK(pm_tokenizer_is_eog(t, 2) && pm_tokenizer_is_eog(t, 12));
    /* "ab" is ▁ab: ▁a (score -1) merges before ab (-2), then ▁a + b */
    ENCODE_IS(t, "ab", true, true, 1, 11);
    /* "ba": ▁ and b do not merge, a stays */
    ENCODE_IS(t, "ba", false, true, 6, 8, 7);
    /* "é" is not a piece: its bytes' tokens; "A" likewise */
    ENCODE_IS(t, "\xC3\xA9" "A", false, true, 6, 4, 5, 3);
    /* a byte without a <0xXX> token is unknown; a run of them is one <unk> */
    ENCODE_IS(t, "zz a", false, true, 6, 0, 9);
    /* each fragment after a special token gets the space prefix */
    ENCODE_IS(t, "a<|im_end|>a", false, true, 9, 12, 9);

    const int32_t ids[] = {1, 9, 8, 6, 4, 5, 3, 0};
    char *text;
    CHECK(pm_tokenizer_decode(t, ids, 8, true, &text, &err) == PM_OK);
    CHECK_MSG(text && strcmp(text, "ab \xC3\xA9" "A") == 0, "%s", text);
    free(text);
    CHECK(pm_tokenizer_decode(t, ids, 8, false, &text, &err) == PM_OK);
    CHECK_MSG(text && strcmp(text, "<s> ab \xC3\xA9" "A<unk>") == 0, "%s", text);
    free(text);
    /* a lone lead byte is not UTF-8: one U+FFFD per byte of the run */
    const int32_t bad[] = {9, 4, 3};
    CHECK(pm_tokenizer_decode(t, bad, 3, false, &text, &err) == PM_OK);
    CHECK_MSG(text && strcmp(text, "a\xEF\xBF\xBD\xEF\xBF\xBD") == 0, "%s", text);
    free(text);
    char buf[8];
    CHECK(pm_tokenizer_piece(t, 9, false, buf, sizeof buf) == 2 && memcmp(buf, " a", 2) == 0);
    CHECK(pm_tokenizer_piece(t, 4, false, buf, sizeof buf) == 1 && (uint8_t)buf[0] == 0xC3);
    pm_tokenizer_destroy(t);
}

/* Decoding any id sequence gives valid UTF-8, in both models. */
static bool valid_utf8(const char *s)
{
    const uint8_t *p = (const uint8_t *)s;
    while (*p) {
        int n = *p < 0x80 ? 1 : (*p & 0xE0) == 0xC0 ? 2 : (*p & 0xF0) == 0xE0 ? 3 : (*p & 0xF8) == 0xF0 ? 4 : 0;
        if (!n || (n == 2 && *p < 0xC2)) return false;
        uint32_t cp = n == 1 ? *p : (uint32_t)(*p & (0x7F >> n));
        for (int k = 1; k < n; k++) {
            if ((p[k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (p[k] & 0x3F);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        p += n;
    }
    return true;
}

TEST(decode_random_ids_is_utf8)
{
    gbuf b;
    pm_tokenizer *t[2];
    pm_error err = {0};
    begin(&b);
    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_strs(&b, "tokenizer.ggml.tokens", spm_tokens, N_SPM);
    kv_f32s(&b, "tokenizer.ggml.scores", spm_scores, N_SPM);
    kv_i32s(&b, "tokenizer.ggml.token_type", spm_types, N_SPM);
    CHECK(build(&b, &t[0], &err) == PM_OK);
    /* byte-level tokens for the bytes a, 0xC3 (a lead byte), 0xA9 (a
     * continuation byte), space: most random sequences are invalid UTF-8 */
    static const char *const bytes_vocab[] = {"a", "\xC3\x83", "\xC2\xA9", "\xC4\xA0"};
    begin(&b);
    kv_str(&b, "tokenizer.ggml.model", "gpt2");
    kv_strs(&b, "tokenizer.ggml.tokens", bytes_vocab, 4);
    kv_strs(&b, "tokenizer.ggml.merges", gpt2_merges, 0);
    CHECK(build(&b, &t[1], &err) == PM_OK);
    if (!t[0] || !t[1]) return;
    uint64_t rng = 77;
    for (int round = 0; round < 2000; round++) {
        pm_tokenizer *tk = t[round & 1];
        int32_t ids[12];
        size_t n = pm_test_xorshift(&rng) % 12;
        for (size_t i = 0; i < n; i++) ids[i] = (int32_t)(pm_test_xorshift(&rng) % pm_tokenizer_vocab_size(tk));
        char *text;
        CHECK(pm_tokenizer_decode(tk, ids, n, round & 2, &text, &err) == PM_OK);
        CHECK_MSG(text && valid_utf8(text), "round %d", round);
        free(text);
    }
    pm_tokenizer_destroy(t[0]);
    pm_tokenizer_destroy(t[1]);
}

TEST(spm_without_space_prefix)
{
    gbuf b;
    begin(&b);
    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_strs(&b, "tokenizer.ggml.tokens", spm_tokens, N_SPM);
    kv_f32s(&b, "tokenizer.ggml.scores", spm_scores, N_SPM);
    kv_i32s(&b, "tokenizer.ggml.token_type", spm_types, N_SPM);
    kv_bool(&b, "tokenizer.ggml.add_space_prefix", false);
    kv_bool(&b, "tokenizer.ggml.add_bos_token", false);
    pm_tokenizer *t;
    pm_error err = {0};
    CHECK(build(&b, &t, &err) == PM_OK);
    if (!t) return;
    CHECK(!pm_tokenizer_adds_bos(t));
    ENCODE_IS(t, "ab ab", true, true, 10, 11);
    const int32_t ids[] = {9, 10};
    char *text;
    CHECK(pm_tokenizer_decode(t, ids, 2, false, &text, &err) == PM_OK);
    CHECK_MSG(text && strcmp(text, " aab") == 0, "%s", text); /* no leading space dropped */
    free(text);
    pm_tokenizer_destroy(t);
}

/* ---- Chat ---- */

static pm_status chat(const char *tmpl, const pm_chat_message *m, size_t n, char **text, pm_error *err)
{
    gbuf b;
    gpt2_file(&b, NULL, N_GPT2, 4, gpt2_merges);
    if (tmpl) kv_str(&b, "tokenizer.chat_template", tmpl);
    memcpy(b.data + 16, &b.n_kv, 8);
    pm_gguf *g;
    pm_status st = pm_gguf_open_memory(b.data, b.len, "mem.gguf", &g, err);
    if (st) return st;
    st = pm_chat_render(g, m, n, true, text, err);
    pm_gguf_close(g);
    return st;
}

TEST(chat_templates)
{
    const pm_chat_message user[] = {{"user", "hi"}};
    char *text;
    pm_error err = {0};
    /* a ChatML default system turn is read from the template, escapes and all */
    const char *tmpl = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                       "{{ '<|im_start|>system\\nIt\\'s \"me\"<|im_end|>\\n' }}{% endif %}"
                       "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
                       "{% endfor %}";
    CHECK(chat(tmpl, user, 1, &text, &err) == PM_OK);
    CHECK_MSG(text && strcmp(text, "<|im_start|>system\nIt's \"me\"<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                                   "<|im_start|>assistant\n") == 0,
              "%s", text);
    free(text);
    /* an unterminated literal is refused, not read past the template */
    CHECK(chat("<|im_start|> messages[0]['role'] != 'system' {{ 'abc", user, 1, &text, &err) == PM_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.message, "default system turn") != NULL, "%s", err.message);
    CHECK(chat(NULL, user, 1, &text, &err) == PM_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.message, "no chat template") != NULL, "%s", err.message);
    CHECK(chat("{{ unknown }}", user, 1, &text, &err) == PM_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.message, "'{{ unknown }}'") != NULL, "%s", err.message);
    const pm_chat_message bad[] = {{"user", "a"}, {NULL, "b"}};
    CHECK(chat(tmpl, bad, 2, &text, &err) == PM_ERR_INVALID);
    CHECK_MSG(strstr(err.message, "chat message 1") != NULL, "%s", err.message);
    /* Llama 2: roles must alternate, as the template's raise_exception says */
    const pm_chat_message twice[] = {{"user", "a"}, {"user", "b"}};
    CHECK(chat("[INST]", twice, 2, &text, &err) == PM_ERR_INVALID);
    CHECK_MSG(strstr(err.message, "must alternate") != NULL, "%s", err.message);
}

int main(void)
{
    RUN(missing_tokens);
    RUN(missing_model);
    RUN(unsupported_model_and_pre);
    RUN(types_length_mismatch);
    RUN(bad_token_type);
    RUN(merge_errors);
    RUN(missing_merges);
    RUN(special_id_out_of_range);
    RUN(wrong_value_types);
    RUN(gpt2_encode_decode);
    RUN(ids_out_of_range);
    RUN(gpt2_invalid_utf8_and_missing_bytes);
    RUN(gpt2_random_bytes_round_trip);
    RUN(spm_encode_decode);
    RUN(spm_without_space_prefix);
    RUN(decode_random_ids_is_utf8);
    RUN(chat_templates);
    return TEST_SUMMARY();
}
