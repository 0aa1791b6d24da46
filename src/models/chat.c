/* Polymorph models layer: chat templates. A GGUF carries its template as
 * Jinja source (tokenizer.chat_template); rather than embed a Jinja engine we
 * recognise the template family by a distinctive marker and render that
 * family's logic here, checked against jinja2 on the same template in
 * tests/oracle/test_tokenizer.py. Template-specific text (ChatML's default
 * system turn, as SmolLM2 writes it) is read from the template itself. */
#include "polymorph/tokenizer.h"

#include <stdlib.h>
#include <string.h>

typedef struct chat_ctx {
    const pm_gguf *g;
    pm_gguf_str tmpl;
    const pm_chat_message *msgs;
    size_t n;
    bool gen;
    pm_text out;
    pm_error *err;
} chat_ctx;

static bool role_is(const pm_chat_message *m, const char *role)
{
    return m->role && strcmp(m->role, role) == 0;
}

static void put(chat_ctx *c, const char *s) { pm_text_append(&c->out, s, strlen(s)); }

static const char *find_in(pm_gguf_str hay, const char *needle)
{
    size_t n = strlen(needle);
    for (uint64_t i = 0; n && i + n <= hay.len; i++)
        if (memcmp(hay.ptr + i, needle, n) == 0) return hay.ptr + i;
    return NULL;
}

/* Python's str.isspace, which Jinja's trim and str.strip() use. */
static bool py_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/* Decode the UTF-8 character ending just before s+len, or starting at s. */
static size_t utf8_len_at(const unsigned char *s, size_t len, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    if (n > len) n = 1;
    uint32_t v = n == 1 ? c : n == 2 ? (c & 0x1Fu) : n == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (size_t k = 1; k < n; k++) {
        if ((s[k] & 0xC0) != 0x80) {
            *cp = 0xFFFD;
            return 1;
        }
        v = v << 6 | (s[k] & 0x3Fu);
    }
    *cp = v;
    return n;
}

/* Append content with Python whitespace stripped from both ends. */
static void put_stripped(chat_ctx *c, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s), start = 0, end = 0;
    bool seen = false;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_len_at(p + i, len - i, &cp);
        if (!py_space(cp)) {
            if (!seen) start = i;
            seen = true;
            end = i + n;
        }
        i += n;
    }
    if (seen) pm_text_append(&c->out, s + start, end - start);
}

/* The text of a token id stored under key (bos/eos), "" when absent. */
static pm_gguf_str token_text(const pm_gguf *g, const char *key)
{
    pm_gguf_str none = {"", 0};
    uint32_t id;
    pm_gguf_type elem;
    uint64_t n;
    const pm_gguf_kv *kv;
    if (!pm_gguf_find(g, key) || pm_gguf_get_u32(g, key, &id, NULL)) return none;
    if (pm_gguf_get_array(g, "tokenizer.ggml.tokens", &elem, &n, &kv, NULL) || elem != PM_GGUF_STRING || id >= n)
        return none;
    return pm_gguf_kv_string(kv, id);
}

/* A Jinja string literal ('...' or "...") starting at p: append its value. */
static bool put_literal(chat_ctx *c, const char *p, const char *end)
{
    char q = *p++;
    while (p < end && *p != q) {
        if (*p == '\\' && p + 1 < end) {
            static const char from[] = "ntr\\'\"0", to[] = "\n\t\r\\'\"\0";
            const char *k = memchr(from, p[1], sizeof from - 1);
            if (!k) return false;
            pm_text_append(&c->out, &to[k - from], 1);
            p += 2;
        } else {
            pm_text_append(&c->out, p++, 1);
        }
    }
    return p < end;
}

/* ---- ChatML: <|im_start|>role\ncontent<|im_end|>\n ---- */

static pm_status render_chatml(chat_ctx *c)
{
    /* SmolLM2's template opens with a default system turn when the first
     * message is not a system one; it is the first literal printed under
     * that condition. */
    const char *cond = find_in(c->tmpl, "messages[0]['role'] != 'system'");
    const char *end = c->tmpl.ptr + c->tmpl.len, *lit = NULL;
    if (cond) {
        const char *p = cond;
        while (p + 2 < end && memcmp(p, "{{", 2) != 0) p++;
        p += 2;
        while (p < end && *p == ' ') p++;
        if (p < end && (*p == '\'' || *p == '"')) lit = p;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (i == 0 && lit && !role_is(&c->msgs[0], "system") && !put_literal(c, lit, end))
            return pm_error_set(c->err, PM_ERR_UNSUPPORTED,
                                "tokenizer.chat_template: the default system turn's string literal is not understood");
        put(c, "<|im_start|>");
        put(c, c->msgs[i].role);
        put(c, "\n");
        put(c, c->msgs[i].content);
        put(c, "<|im_end|>\n");
    }
    if (c->gen) put(c, "<|im_start|>assistant\n");
    return PM_OK;
}

/* ---- Llama 3: bos, then <|start_header_id|>role<|end_header_id|>\n\n
 * content|trim <|eot_id|> per message ---- */

static pm_status render_llama3(chat_ctx *c)
{
    pm_gguf_str bos = token_text(c->g, "tokenizer.ggml.bos_token_id");
    for (size_t i = 0; i < c->n; i++) {
        if (i == 0) pm_text_append(&c->out, bos.ptr, bos.len);
        put(c, "<|start_header_id|>");
        put(c, c->msgs[i].role);
        put(c, "<|end_header_id|>\n\n");
        put_stripped(c, c->msgs[i].content);
        put(c, "<|eot_id|>");
    }
    if (c->gen) put(c, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return PM_OK;
}

/* ---- Llama 2: bos[INST] <<SYS>>...<</SYS>> user [/INST] answer eos ---- */

static pm_status render_llama2(chat_ctx *c)
{
    pm_gguf_str bos = token_text(c->g, "tokenizer.ggml.bos_token_id");
    pm_gguf_str eos = token_text(c->g, "tokenizer.ggml.eos_token_id");
    size_t first = c->n && role_is(&c->msgs[0], "system") ? 1 : 0;
    const char *system = first ? c->msgs[0].content : NULL;
    for (size_t i = first; i < c->n; i++) {
        const pm_chat_message *m = &c->msgs[i];
        if (role_is(m, "user") != ((i - first) % 2 == 0))
            return pm_error_set(c->err, PM_ERR_INVALID,
                                "chat message %zu (%s): Conversation roles must alternate user/assistant/user/assistant/...",
                                i, m->role);
        pm_text content = {0};
        if (i == first && system) {
            pm_text_append(&content, "<<SYS>>\n", 8);
            pm_text_append(&content, system, strlen(system));
            pm_text_append(&content, "\n<</SYS>>\n\n", 11);
        }
        pm_text_append(&content, m->content, strlen(m->content));
        if (content.failed) {
            free(content.data);
            return pm_error_set(c->err, PM_ERR_NOMEM, "chat: out of memory");
        }
        if (role_is(m, "user")) {
            pm_text_append(&c->out, bos.ptr, bos.len);
            put(c, "[INST] ");
            put_stripped(c, content.data);
            put(c, " [/INST]");
        } else if (role_is(m, "assistant")) {
            put(c, " ");
            put_stripped(c, content.data);
            put(c, " ");
            pm_text_append(&c->out, eos.ptr, eos.len);
        }
        free(content.data);
    }
    return PM_OK;
}

/* ---- Zephyr: <|role|>\ncontent eos \n, then <|assistant|>\n ---- */

static pm_status render_zephyr(chat_ctx *c)
{
    pm_gguf_str eos = token_text(c->g, "tokenizer.ggml.eos_token_id");
    for (size_t i = 0; i < c->n; i++) {
        const pm_chat_message *m = &c->msgs[i];
        if (role_is(m, "user") || role_is(m, "system") || role_is(m, "assistant")) {
            put(c, "<|");
            put(c, m->role);
            put(c, "|>\n");
            put(c, m->content);
            pm_text_append(&c->out, eos.ptr, eos.len);
            put(c, "\n");
        }
        if (i + 1 == c->n && c->gen) put(c, "<|assistant|>\n");
    }
    return PM_OK;
}

static const struct {
    const char *marker, *name;
    pm_status (*render)(chat_ctx *);
} families[] = {
    {"<|im_start|>", "ChatML", render_chatml},
    {"<|start_header_id|>", "Llama 3", render_llama3},
    {"[INST]", "Llama 2", render_llama2},
    {"<|user|>", "Zephyr", render_zephyr},
};

pm_status pm_chat_render(const pm_gguf *g, const pm_chat_message *msgs, size_t n, bool add_generation_prompt,
                         char **text, pm_error *err)
{
    *text = NULL;
    if (!g || (!msgs && n)) return pm_error_set(err, PM_ERR_INVALID, "pm_chat_render: no GGUF or messages");
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return pm_error_set(err, PM_ERR_INVALID, "chat message %zu: missing role or content", i);
    chat_ctx c = {g, {NULL, 0}, msgs, n, add_generation_prompt, {0}, err};
    if (!pm_gguf_find(g, "tokenizer.chat_template"))
        return pm_error_set(err, PM_ERR_UNSUPPORTED, "tokenizer.chat_template: the model has no chat template");
    pm_status st = pm_gguf_get_str(g, "tokenizer.chat_template", &c.tmpl, err);
    if (st) return st;
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        if (!find_in(c.tmpl, families[f].marker)) continue;
        st = families[f].render(&c);
        pm_text_append(&c.out, "", 0);
        if (!st && (c.out.failed || !c.out.data)) st = pm_error_set(err, PM_ERR_NOMEM, "chat: out of memory");
        if (st) {
            free(c.out.data);
            return st;
        }
        *text = c.out.data;
        return PM_OK;
    }
    return pm_error_set(err, PM_ERR_UNSUPPORTED,
                        "tokenizer.chat_template: template family not recognised (ChatML, Llama 3, Llama 2, Zephyr): "
                        "'%.*s'",
                        (int)(c.tmpl.len > 60 ? 60 : c.tmpl.len), c.tmpl.ptr);
}
