/* tokenize: the models layer's tokenizer and chat template from the command
 * line, for people and for tests/oracle/test_tokenizer.py. Text comes from
 * stdin and results go to stdout; --bench measures encode speed. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "polymorph/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
    "usage: tokenize MODEL.gguf --encode [--bos] [--no-special]   text on stdin -> [ids] (JSON)\n"
    "       tokenize MODEL.gguf --decode [--skip-special]         ids on stdin (JSON array) -> text\n"
    "       tokenize MODEL.gguf --chat [--no-generation-prompt]   [{\"role\":..,\"content\":..}] on stdin -> text\n"
    "       tokenize MODEL.gguf --bench FILE                      encode FILE repeatedly, print tokens/s\n"
    "--encode parses special tokens written in the text unless --no-special;\n"
    "--bos adds BOS when the model asks for it (tokenizer.ggml.add_bos_token).\n";

static int fail(const pm_error *e)
{
    fprintf(stderr, "tokenize: %s\n", e->message);
    return 1;
}

static pm_status read_stdin(char **data, size_t *len, pm_error *err)
{
    uint8_t *d;
    pm_status st = pm_read_file("/dev/stdin", &d, len, err);
    *data = (char *)d;
    return st;
}

/* ---- A minimal JSON reader: arrays of integers, arrays of flat objects of
 * strings; enough for ids and chat messages. ---- */

typedef struct json {
    const char *start, *s, *end;
    pm_error *err;
} json;

static void skip_ws(json *j)
{
    while (j->s < j->end && (*j->s == ' ' || *j->s == '\n' || *j->s == '\r' || *j->s == '\t')) j->s++;
}

static pm_status expect(json *j, char c)
{
    skip_ws(j);
    if (j->s >= j->end || *j->s != c)
        return pm_error_set(j->err, PM_ERR_PARSE, "stdin: byte %zu: expected '%c'", (size_t)(j->s - j->start), c);
    j->s++;
    return PM_OK;
}

static void put_utf8(pm_text *o, unsigned long cp)
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

static pm_status hex4(json *j, unsigned long *v)
{
    *v = 0;
    for (int k = 0; k < 4; k++, j->s++) {
        char c = j->s < j->end ? *j->s : 0;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return pm_error_set(j->err, PM_ERR_PARSE, "stdin: bad \\u escape");
        *v = *v * 16 + (unsigned long)d;
    }
    return PM_OK;
}

static pm_status json_string(json *j, char **out)
{
    pm_status st = expect(j, '"');
    if (st) return st;
    pm_text t = {0};
    pm_text_append(&t, "", 0);
    while (j->s < j->end && *j->s != '"') {
        if (*j->s != '\\') {
            pm_text_append(&t, j->s++, 1);
            continue;
        }
        j->s++;
        char c = j->s < j->end ? *j->s++ : 0;
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *k = c ? strchr(from, c) : NULL;
        if (k) {
            pm_text_append(&t, &to[k - from], 1);
        } else if (c == 'u') {
            unsigned long v, lo;
            if ((st = hex4(j, &v))) break;
            if (v >= 0xD800 && v < 0xDC00 && j->end - j->s >= 6 && j->s[0] == '\\' && j->s[1] == 'u') {
                j->s += 2;
                if ((st = hex4(j, &lo))) break;
                v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
            }
            put_utf8(&t, v);
        } else {
            st = pm_error_set(j->err, PM_ERR_PARSE, "stdin: bad escape '\\%c'", c);
            break;
        }
    }
    if (!st) st = expect(j, '"');
    if (!st && t.failed) st = pm_error_set(j->err, PM_ERR_NOMEM, "out of memory");
    if (st) {
        free(t.data);
        return st;
    }
    *out = t.data;
    return PM_OK;
}

static pm_status json_ids(json *j, int32_t **ids, size_t *n)
{
    size_t cap = 64;
    *n = 0;
    *ids = malloc(cap * sizeof **ids);
    pm_status st = *ids ? expect(j, '[') : pm_error_set(j->err, PM_ERR_NOMEM, "out of memory");
    skip_ws(j);
    if (!st && j->s < j->end && *j->s == ']') return expect(j, ']');
    while (!st) {
        skip_ws(j);
        char *e;
        long v = strtol(j->s, &e, 10);
        if (e == j->s || v < -2147483647L || v > 2147483647L) {
            st = pm_error_set(j->err, PM_ERR_PARSE, "stdin: byte %zu: id %zu is not an integer",
                              (size_t)(j->s - j->start), *n);
            break;
        }
        j->s = e;
        if (*n == cap) {
            int32_t *p = realloc(*ids, (cap *= 2) * sizeof *p);
            if (!p) {
                st = pm_error_set(j->err, PM_ERR_NOMEM, "out of memory");
                break;
            }
            *ids = p;
        }
        (*ids)[(*n)++] = (int32_t)v;
        skip_ws(j);
        if (j->s < j->end && *j->s == ',') j->s++;
        else st = expect(j, ']');
        if (!st && j->s[-1] == ']') return PM_OK;
    }
    free(*ids);
    *ids = NULL;
    return st;
}

static void free_messages(pm_chat_message *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)m[i].role);
        free((char *)m[i].content);
    }
    free(m);
}

static pm_status json_messages(json *j, pm_chat_message **msgs, size_t *n)
{
    *msgs = NULL;
    *n = 0;
    size_t cap = 0;
    pm_status st = expect(j, '[');
    skip_ws(j);
    if (!st && j->s < j->end && *j->s == ']') return expect(j, ']');
    while (!st) {
        if (*n == cap) {
            pm_chat_message *p = realloc(*msgs, (cap = cap ? cap * 2 : 8) * sizeof *p);
            if (!p) {
                st = pm_error_set(j->err, PM_ERR_NOMEM, "out of memory");
                break;
            }
            *msgs = p;
        }
        pm_chat_message *m = &(*msgs)[(*n)++];
        m->role = m->content = NULL;
        if ((st = expect(j, '{'))) break;
        for (;;) {
            char *key = NULL, *val = NULL;
            if ((st = json_string(j, &key)) || (st = expect(j, ':')) || (st = json_string(j, &val))) {
                free(key);
                break;
            }
            const char **slot = !strcmp(key, "role") ? &m->role : !strcmp(key, "content") ? &m->content : NULL;
            free(key);
            if (slot) {
                free((char *)*slot);
                *slot = val;
            } else {
                free(val);
            }
            skip_ws(j);
            if (j->s < j->end && *j->s == ',') {
                j->s++;
                continue;
            }
            st = expect(j, '}');
            break;
        }
        if (st) break;
        if (!m->role || !m->content) {
            st = pm_error_set(j->err, PM_ERR_PARSE, "stdin: message %zu lacks role or content", *n - 1);
            break;
        }
        skip_ws(j);
        if (j->s < j->end && *j->s == ',') j->s++;
        else if (!(st = expect(j, ']'))) return PM_OK;
    }
    free_messages(*msgs, *n);
    *msgs = NULL;
    *n = 0;
    return st;
}

/* ---- Commands ---- */

static int cmd_encode(const pm_tokenizer *t, bool bos, bool special)
{
    pm_error err = {0};
    char *text;
    size_t len, n;
    int32_t *ids;
    if (read_stdin(&text, &len, &err) || pm_tokenizer_encode(t, text, len, bos, special, &ids, &n, &err)) {
        return fail(&err);
    }
    free(text);
    pm_text out = {0};
    pm_text_append(&out, "[", 1);
    for (size_t i = 0; i < n; i++) pm_text_printf(&out, i ? ", %d" : "%d", ids[i]);
    pm_text_append(&out, "]\n", 2);
    free(ids);
    if (out.failed) return fprintf(stderr, "tokenize: out of memory\n"), 1;
    fwrite(out.data, 1, out.len, stdout);
    free(out.data);
    return 0;
}

static int cmd_decode(const pm_tokenizer *t, bool skip)
{
    pm_error err = {0};
    char *text, *dec;
    size_t len, n;
    int32_t *ids;
    if (read_stdin(&text, &len, &err)) return fail(&err);
    json j = {text, text, text + len, &err};
    pm_status st = json_ids(&j, &ids, &n);
    free(text);
    if (st || pm_tokenizer_decode(t, ids, n, skip, &dec, &err)) {
        if (!st) free(ids);
        return fail(&err);
    }
    free(ids);
    fwrite(dec, 1, strlen(dec), stdout);
    free(dec);
    return 0;
}

static int cmd_chat(const pm_gguf *g, bool gen)
{
    pm_error err = {0};
    char *text, *out;
    size_t len, n;
    pm_chat_message *msgs;
    if (read_stdin(&text, &len, &err)) return fail(&err);
    json j = {text, text, text + len, &err};
    pm_status st = json_messages(&j, &msgs, &n);
    free(text);
    if (st) return fail(&err);
    st = pm_chat_render(g, msgs, n, gen, &out, &err);
    free_messages(msgs, n);
    if (st) return fail(&err);
    fwrite(out, 1, strlen(out), stdout);
    free(out);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmd_bench(const pm_tokenizer *t, const char *path)
{
    pm_error err = {0};
    uint8_t *text;
    size_t len, n = 0, runs = 0;
    if (pm_read_file(path, &text, &len, &err)) return fail(&err);
    double start = now_s(), elapsed;
    do {
        int32_t *ids;
        if (pm_tokenizer_encode(t, (const char *)text, len, false, true, &ids, &n, &err)) {
            free(text);
            return fail(&err);
        }
        free(ids);
        runs++;
        elapsed = now_s() - start;
    } while (elapsed < 1.0);
    free(text);
    double per = elapsed / (double)runs;
    printf("%zu bytes -> %zu tokens in %.2f ms: %.0f tokens/s, %.1f MB/s\n", len, n, per * 1e3, (double)n / per,
           (double)len / per / 1e6);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[2], *bench_file = NULL;
    bool bos = false, special = true, skip = false, gen = true;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--bos")) bos = true;
        else if (!strcmp(argv[i], "--no-special")) special = false;
        else if (!strcmp(argv[i], "--skip-special")) skip = true;
        else if (!strcmp(argv[i], "--no-generation-prompt")) gen = false;
        else if (!strcmp(cmd, "--bench") && !bench_file) bench_file = argv[i];
        else {
            fprintf(stderr, "tokenize: unknown option '%s'\n%s", argv[i], usage);
            return 2;
        }
    }
    pm_error err = {0};
    pm_gguf *g;
    if (pm_gguf_open(argv[1], &g, &err)) return fail(&err);
    int rc;
    if (!strcmp(cmd, "--chat")) {
        rc = cmd_chat(g, gen);
        pm_gguf_close(g);
        return rc;
    }
    pm_tokenizer *t;
    pm_status st = pm_tokenizer_from_gguf(g, &t, &err);
    pm_gguf_close(g);
    if (st) return fail(&err);
    if (!strcmp(cmd, "--encode")) rc = cmd_encode(t, bos, special);
    else if (!strcmp(cmd, "--decode")) rc = cmd_decode(t, skip);
    else if (!strcmp(cmd, "--bench") && bench_file) rc = cmd_bench(t, bench_file);
    else {
        fputs(usage, stderr);
        rc = 2;
    }
    pm_tokenizer_destroy(t);
    return rc;
}
