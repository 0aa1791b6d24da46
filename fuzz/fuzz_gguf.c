/* libFuzzer target: the GGUF reader over arbitrary bytes. Whatever it
 * accepts must be safe to walk completely: every key, every string of every
 * string array, every numeric element, the typed getters, the name look-ups
 * (which must find the same entry), and dequantising every small tensor,
 * with every pointer it hands out inside the input. */
#include "polymorph/gguf.h"

#include <stdlib.h>
#include <string.h>

static void inside(const uint8_t *base, size_t size, const void *p, uint64_t n)
{
    const uint8_t *q = p;
    if (n == 0)
        return;
    if (!q || q < base || (uint64_t)(q - base) > size || n > size - (uint64_t)(q - base))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pm_gguf *g = NULL;
    pm_error err;
    if (pm_gguf_open_memory(data, size, "fuzz", &g, &err) != PM_OK) {
        if (g || err.status == PM_OK || !memchr(err.message, 0, sizeof err.message))
            abort();
        return 0;
    }
    volatile unsigned sink = 0;
    for (size_t i = 0; i < pm_gguf_kv_count(g); i++) {
        const pm_gguf_kv *kv = pm_gguf_kv_at(g, i);
        inside(data, size, kv->key.ptr, kv->key.len);
        char key[256];
        if (kv->key.len < sizeof key && !memchr(kv->key.ptr, 0, kv->key.len)) {
            memcpy(key, kv->key.ptr, kv->key.len);
            key[kv->key.len] = 0;
            if (pm_gguf_find(g, key) != kv)
                abort();
            uint64_t u;
            float f;
            bool b;
            pm_gguf_str s;
            pm_gguf_type et;
            uint64_t n;
            const pm_gguf_kv *a;
            (void)pm_gguf_get_u64(g, key, &u, &err);
            (void)pm_gguf_get_f32(g, key, &f, &err);
            (void)pm_gguf_get_bool(g, key, &b, &err);
            if (pm_gguf_get_str(g, key, &s, &err) == PM_OK)
                inside(data, size, s.ptr, s.len);
            if (pm_gguf_get_array(g, key, &et, &n, &a, &err) == PM_OK && (a != kv || n != kv->arr_n))
                abort();
        }
        if (kv->type != PM_GGUF_ARRAY)
            continue;
        for (uint64_t j = 0; j < kv->arr_n; j++) {
            if (kv->arr_type == PM_GGUF_STRING) {
                pm_gguf_str s = pm_gguf_kv_string(kv, j);
                inside(data, size, s.ptr, s.len);
                if (s.len)
                    sink += (unsigned char)s.ptr[s.len - 1];
            } else {
                double v = pm_gguf_kv_number(kv, j);
                sink += v == v;
            }
        }
    }
    for (size_t i = 0; i < pm_gguf_tensor_count(g); i++) {
        const pm_gguf_tensor *t = pm_gguf_tensor_at(g, i);
        inside(data, size, t->name.ptr, t->name.len);
        inside(data, size, t->data, t->bytes);
        char name[256];
        if (t->name.len < sizeof name && !memchr(t->name.ptr, 0, t->name.len)) {
            memcpy(name, t->name.ptr, t->name.len);
            name[t->name.len] = 0;
            if (pm_gguf_tensor_find(g, name) != t)
                abort();
        }
        uint64_t n = pm_gguf_tensor_elems(t);
        if (n > (1u << 16))
            continue;
        float *out = malloc((size_t)n * sizeof *out);
        if (!out)
            continue;
        if (pm_gguf_tensor_to_f32(t, out, &err) != PM_OK)
            abort(); /* an accepted tensor always decodes */
        sink += out[n - 1] == out[n - 1];
        free(out);
    }
    (void)sink;
    pm_gguf_close(g);
    return 0;
}
