/* Polymorph models layer: tokenizers built from GGUF metadata. Two models:
 * "gpt2" (byte-level BPE with the model's pre-tokenizer, tokenizer.ggml.pre:
 * smollm, llama3/llama-bpe, gpt2, default) and "llama" (SentencePiece-style
 * BPE over scores with byte fallback). Special (control) tokens in the text
 * are matched literally when parse_special is set. The chat template of the
 * GGUF is recognised by family (ChatML, Llama 2, Llama 3, Zephyr) and
 * rendered exactly as its Jinja source would. See docs/tokenizer.md. */
#ifndef POLYMORPH_TOKENIZER_H
#define POLYMORPH_TOKENIZER_H

#include "polymorph/base.h"
#include "polymorph/gguf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pm_tokenizer pm_tokenizer;

/* Build from tokenizer.ggml.* keys; copies what it needs (g may be closed
 * afterwards). Errors name the key ("tokenizer.ggml.merges[17]: ..."). */
pm_status pm_tokenizer_from_gguf(const pm_gguf *g, pm_tokenizer **out, pm_error *err);
void pm_tokenizer_destroy(pm_tokenizer *t);

uint32_t pm_tokenizer_vocab_size(const pm_tokenizer *t);
int32_t pm_tokenizer_bos(const pm_tokenizer *t); /* -1 when the model has none */
int32_t pm_tokenizer_eos(const pm_tokenizer *t);
/* True for tokens that end a turn or the text (eos, eot, <|im_end|>, ...). */
bool pm_tokenizer_is_eog(const pm_tokenizer *t, int32_t id);
/* Whether encode adds BOS (tokenizer.ggml.add_bos_token, model default). */
bool pm_tokenizer_adds_bos(const pm_tokenizer *t);

/* Encode UTF-8 text of len bytes. add_bos: prepend BOS when the model wants
 * it; parse_special: control tokens written in the text become their ids.
 * *ids is malloc'd (caller frees), *n receives the count. */
pm_status pm_tokenizer_encode(const pm_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                              int32_t **ids, size_t *n, pm_error *err);
/* The bytes of one token as it appears in decoded text (byte-level tokens map
 * back to raw bytes; control tokens give their text only when
 * render_special; the unknown token likewise). Bytes of a multi-byte UTF-8 character may be split across
 * tokens; a streaming caller concatenates. Returns the byte count written
 * (up to cap) or the needed size if larger; -1 for an id out of range. */
long pm_tokenizer_piece(const pm_tokenizer *t, int32_t id, bool render_special, char *buf, size_t cap);
/* Decode a sequence to UTF-8 (malloc'd, NUL-terminated). skip_special drops
 * control tokens; the llama model drops the leading space its encoder adds. */
pm_status pm_tokenizer_decode(const pm_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **text,
                              pm_error *err);

/* Chat: one message. */
typedef struct pm_chat_message {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} pm_chat_message;

/* Render messages with the GGUF's tokenizer.chat_template as Jinja would,
 * with add_generation_prompt. PM_ERR_UNSUPPORTED names the template when its
 * family is not recognised. *text is malloc'd. */
pm_status pm_chat_render(const pm_gguf *g, const pm_chat_message *msgs, size_t n, bool add_generation_prompt,
                         char **text, pm_error *err);

#ifdef __cplusplus
}
#endif
#endif
