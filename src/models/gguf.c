/* Models layer: the strict GGUF v3 reader. One pass over the header checks
 * every length, count, type and extent against the bytes that are really
 * there before it is used or allocated for; string arrays are indexed and
 * keys/tensor names hashed at open so later look-ups are O(1). Validation
 * rules, caps and the error format are in docs/gguf.md. */
#define _POSIX_C_SOURCE 200809L

#include "polymorph/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Caps (docs/gguf.md): generous for real models, small enough that a
 * corrupted length is refused with a clear message. */
#define KEY_MAX ((uint64_t)65535)          /* metadata key bytes */
#define NAME_MAX_BYTES ((uint64_t)4096)    /* tensor name bytes */
#define STRING_MAX ((uint64_t)1 << 30)     /* one string value: 1 GiB */
#define ARRAY_DEPTH_MAX 8                  /* arrays of arrays, nested */
#define DEFAULT_ALIGNMENT 32u

/* A kv as stored: the public part first, so a pm_gguf_kv pointer handed out
 * by this reader leads back to its string index. */
typedef struct kv_entry {
    pm_gguf_kv kv;
    const uint8_t **strings; /* STRING arrays: where each element's u64 length lies */
} kv_entry;

struct pm_gguf {
    const uint8_t *base;
    uint64_t len;
    void *map;        /* mmap'd region, or NULL */
    uint8_t *owned;   /* pm_read_file buffer when mmap failed, or NULL */
    char *name;
    uint32_t version;
    size_t n_kv, n_tensors;
    kv_entry *kvs;
    pm_gguf_tensor *tensors;
    /* open-addressing hash tables of indices+1 (0 = empty), power-of-two sizes */
    uint32_t *kv_hash, *t_hash;
    size_t kv_hash_size, t_hash_size;
};

/* ---- little-endian loads (the file is little-endian whatever the host) ---- */

static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t ld64(const uint8_t *p)
{
    return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32);
}

/* ---- the cursor: every read checks the remaining bytes first ---- */

typedef struct reader {
    const uint8_t *p;
    uint64_t len, pos;
    const char *name;
    pm_error *err;
    char field[320]; /* what is being read: "kv 3 'general.name' value" */
} reader;

static pm_status fail_at(reader *r, uint64_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static pm_status fail_at(reader *r, uint64_t at, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    pm_status st = pm_error_set(r->err, PM_ERR_FORMAT, "%s: byte %" PRIu64 ": %s: %s", r->name, at, r->field, what);
    if (r->err) /* keys and names are file bytes: keep the message on one line */
        for (char *c = r->err->message; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                *c = '?';
    return st;
}

static void set_field(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_field(reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->field, sizeof r->field, fmt, ap);
    va_end(ap);
}

static pm_status need(reader *r, uint64_t n, const char *what)
{
    if (n > r->len - r->pos)
        return fail_at(r, r->pos, "%s needs %" PRIu64 " bytes, only %" PRIu64 " left in the file", what, n,
                       r->len - r->pos);
    return PM_OK;
}

static pm_status rd_u32(reader *r, const char *what, uint32_t *v)
{
    pm_status st = need(r, 4, what);
    if (st != PM_OK)
        return st;
    *v = ld32(r->p + r->pos);
    r->pos += 4;
    return PM_OK;
}

static pm_status rd_u64(reader *r, const char *what, uint64_t *v)
{
    pm_status st = need(r, 8, what);
    if (st != PM_OK)
        return st;
    *v = ld64(r->p + r->pos);
    r->pos += 8;
    return PM_OK;
}

/* A string: u64 length then bytes, at most cap bytes (and what is left). */
static pm_status rd_str(reader *r, uint64_t cap, pm_gguf_str *out)
{
    uint64_t at = r->pos, n;
    pm_status st = rd_u64(r, "string length", &n);
    if (st != PM_OK)
        return st;
    if (n > cap)
        return fail_at(r, at, "string length %" PRIu64 " exceeds the cap of %" PRIu64 " bytes", n, cap);
    if (n > r->len - r->pos)
        return fail_at(r, at, "string length %" PRIu64 " runs past the end of the file (%" PRIu64 " bytes left)", n,
                       r->len - r->pos);
    out->ptr = (const char *)(r->p + r->pos);
    out->len = n;
    r->pos += n;
    return PM_OK;
}

/* ---- value types ---- */

static const uint8_t scalar_size[PM_GGUF_TYPE_COUNT] = {
    [PM_GGUF_U8] = 1,  [PM_GGUF_I8] = 1,  [PM_GGUF_U16] = 2,  [PM_GGUF_I16] = 2, [PM_GGUF_U32] = 4,
    [PM_GGUF_I32] = 4, [PM_GGUF_F32] = 4, [PM_GGUF_BOOL] = 1, [PM_GGUF_U64] = 8, [PM_GGUF_I64] = 8,
    [PM_GGUF_F64] = 8,
};

static const char *const gguf_type_names[PM_GGUF_TYPE_COUNT] = {
    [PM_GGUF_U8] = "UINT8",    [PM_GGUF_I8] = "INT8",     [PM_GGUF_U16] = "UINT16",   [PM_GGUF_I16] = "INT16",
    [PM_GGUF_U32] = "UINT32",  [PM_GGUF_I32] = "INT32",   [PM_GGUF_F32] = "FLOAT32",  [PM_GGUF_BOOL] = "BOOL",
    [PM_GGUF_STRING] = "STRING", [PM_GGUF_ARRAY] = "ARRAY", [PM_GGUF_U64] = "UINT64", [PM_GGUF_I64] = "INT64",
    [PM_GGUF_F64] = "FLOAT64",
};

const char *pm_gguf_type_name(pm_gguf_type t)
{
    return ((unsigned)t < PM_GGUF_TYPE_COUNT) ? gguf_type_names[t] : "?";
}

/* The fewest bytes one value of type t can occupy (for count checks). */
static uint64_t min_value_bytes(pm_gguf_type t)
{
    if (t == PM_GGUF_STRING)
        return 8;
    if (t == PM_GGUF_ARRAY)
        return 12;
    return scalar_size[t];
}

static pm_status check_type(reader *r, uint64_t at, uint32_t t, const char *what)
{
    if (t >= PM_GGUF_TYPE_COUNT)
        return fail_at(r, at, "%s %" PRIu32 " is not a GGUF value type (0..%d)", what, t, PM_GGUF_TYPE_COUNT - 1);
    return PM_OK;
}

static pm_status skip_value(reader *r, pm_gguf_type t, int depth);

/* Array body after its element type and count: checks the count against the
 * remaining bytes before walking (so a huge count fails at once). */
static pm_status skip_array_elems(reader *r, uint64_t count_at, pm_gguf_type et, uint64_t n, int depth)
{
    uint64_t minb = min_value_bytes(et);
    if (n > (r->len - r->pos) / minb)
        return fail_at(r, count_at,
                       "array of %" PRIu64 " %s needs at least %" PRIu64 " bytes each, only %" PRIu64 " left", n,
                       pm_gguf_type_name(et), minb, r->len - r->pos);
    if (et != PM_GGUF_STRING && et != PM_GGUF_ARRAY) {
        if (et == PM_GGUF_BOOL) {
            for (uint64_t i = 0; i < n; i++)
                if (r->p[r->pos + i] > 1)
                    return fail_at(r, r->pos + i, "bool element %" PRIu64 " is %u, not 0 or 1", i,
                                   r->p[r->pos + i]);
        }
        r->pos += n * minb;
        return PM_OK;
    }
    for (uint64_t i = 0; i < n; i++) {
        pm_status st = skip_value(r, et, depth);
        if (st != PM_OK)
            return st;
    }
    return PM_OK;
}

static pm_status skip_value(reader *r, pm_gguf_type t, int depth)
{
    pm_status st;
    if (t == PM_GGUF_STRING) {
        pm_gguf_str s;
        return rd_str(r, STRING_MAX, &s);
    }
    if (t == PM_GGUF_ARRAY) {
        uint64_t at = r->pos, n;
        uint32_t et;
        if (depth >= ARRAY_DEPTH_MAX)
            return fail_at(r, at, "arrays nested deeper than %d", ARRAY_DEPTH_MAX);
        if ((st = rd_u32(r, "array element type", &et)) != PM_OK || (st = check_type(r, at, et, "array element type")))
            return st;
        uint64_t count_at = r->pos;
        if ((st = rd_u64(r, "array count", &n)) != PM_OK)
            return st;
        return skip_array_elems(r, count_at, (pm_gguf_type)et, n, depth + 1);
    }
    if ((st = need(r, scalar_size[t], pm_gguf_type_name(t))) != PM_OK)
        return st;
    if (t == PM_GGUF_BOOL && r->p[r->pos] > 1)
        return fail_at(r, r->pos, "bool value is %u, not 0 or 1", r->p[r->pos]);
    r->pos += scalar_size[t];
    return PM_OK;
}

/* ---- hashing of keys and names ---- */

static uint64_t hash_bytes(const char *s, uint64_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (uint64_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static bool str_eq(pm_gguf_str a, const char *b, uint64_t blen)
{
    return a.len == blen && memcmp(a.ptr, b, blen) == 0;
}

static size_t table_size(size_t n)
{
    size_t s = 16;
    while (s < 2 * n)
        s *= 2;
    return s;
}

/* Index (0-based) of the entry named key, or SIZE_MAX; str_of gives entry i's name. */
typedef pm_gguf_str (*name_fn)(const pm_gguf *g, size_t i);
static pm_gguf_str kv_name(const pm_gguf *g, size_t i)
{
    return g->kvs[i].kv.key;
}
static pm_gguf_str t_name(const pm_gguf *g, size_t i)
{
    return g->tensors[i].name;
}

static size_t hash_find(const pm_gguf *g, const uint32_t *tab, size_t size, name_fn nm, const char *key,
                        uint64_t klen)
{
    if (!tab)
        return SIZE_MAX;
    size_t mask = size - 1, h = (size_t)hash_bytes(key, klen) & mask;
    while (tab[h]) {
        if (str_eq(nm(g, tab[h] - 1), key, klen))
            return tab[h] - 1;
        h = (h + 1) & mask;
    }
    return SIZE_MAX;
}

/* Insert entry i; returns the index of an earlier entry with the same name, or SIZE_MAX. */
static size_t hash_insert(const pm_gguf *g, uint32_t *tab, size_t size, name_fn nm, size_t i)
{
    pm_gguf_str s = nm(g, i);
    size_t mask = size - 1, h = (size_t)hash_bytes(s.ptr, s.len) & mask;
    while (tab[h]) {
        if (str_eq(nm(g, tab[h] - 1), s.ptr, s.len))
            return tab[h] - 1;
        h = (h + 1) & mask;
    }
    tab[h] = (uint32_t)(i + 1);
    return SIZE_MAX;
}

/* ---- ggml types ---- */

typedef struct ggml_row {
    const char *name;
    bool supported;
    pm_format format;
} ggml_row;

/* Every type ggml numbers (for messages); the supported ones map to a pm_format. */
static const ggml_row ggml_rows[] = {
    [0] = {"F32", true, PM_FMT_F32},    [1] = {"F16", true, PM_FMT_F16},     [2] = {"Q4_0", true, PM_FMT_Q4_0},
    [3] = {"Q4_1", true, PM_FMT_Q4_1},  [6] = {"Q5_0", false, 0},            [7] = {"Q5_1", false, 0},
    [8] = {"Q8_0", true, PM_FMT_Q8_0},  [9] = {"Q8_1", false, 0},            [10] = {"Q2_K", false, 0},
    [11] = {"Q3_K", false, 0},          [12] = {"Q4_K", true, PM_FMT_Q4_K},  [13] = {"Q5_K", false, 0},
    [14] = {"Q6_K", true, PM_FMT_Q6_K}, [15] = {"Q8_K", false, 0},           [16] = {"IQ2_XXS", false, 0},
    [17] = {"IQ2_XS", false, 0},        [18] = {"IQ3_XXS", false, 0},        [19] = {"IQ1_S", false, 0},
    [20] = {"IQ4_NL", false, 0},        [21] = {"IQ3_S", false, 0},          [22] = {"IQ2_S", false, 0},
    [23] = {"IQ4_XS", false, 0},        [24] = {"I8", false, 0},             [25] = {"I16", false, 0},
    [26] = {"I32", false, 0},           [27] = {"I64", false, 0},            [28] = {"F64", false, 0},
    [29] = {"IQ1_M", false, 0},         [30] = {"BF16", true, PM_FMT_BF16},  [34] = {"TQ1_0", false, 0},
    [35] = {"TQ2_0", false, 0},         [39] = {"MXFP4", false, 0},
};
#define GGML_ROWS (sizeof ggml_rows / sizeof ggml_rows[0])

const char *pm_ggml_type_name(uint32_t t)
{
    return (t < GGML_ROWS && ggml_rows[t].name) ? ggml_rows[t].name : "?";
}

/* ---- checked arithmetic ---- */

static bool mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a && b > UINT64_MAX / a)
        return false;
    *out = a * b;
    return true;
}

/* ---- open ---- */

static pm_status parse_kvs(pm_gguf *g, reader *r)
{
    pm_status st;
    for (size_t i = 0; i < g->n_kv; i++) {
        kv_entry *e = &g->kvs[i];
        pm_gguf_kv *kv = &e->kv;
        kv->offset = r->pos;
        set_field(r, "kv %zu key", i);
        if ((st = rd_str(r, KEY_MAX, &kv->key)) != PM_OK)
            return st;
        if (kv->key.len == 0)
            return fail_at(r, kv->offset, "empty key");
        set_field(r, "kv %zu '%.*s'", i, (int)(kv->key.len > 200 ? 200 : kv->key.len), kv->key.ptr);
        uint64_t at = r->pos;
        uint32_t t;
        if ((st = rd_u32(r, "value type", &t)) != PM_OK || (st = check_type(r, at, t, "value type")) != PM_OK)
            return st;
        kv->type = (pm_gguf_type)t;
        if (t == PM_GGUF_ARRAY) {
            uint32_t et;
            uint64_t n;
            at = r->pos;
            if ((st = rd_u32(r, "array element type", &et)) != PM_OK ||
                (st = check_type(r, at, et, "array element type")) != PM_OK)
                return st;
            uint64_t count_at = r->pos;
            if ((st = rd_u64(r, "array count", &n)) != PM_OK)
                return st;
            kv->arr_type = (pm_gguf_type)et;
            kv->arr_n = n;
            kv->data = r->p + r->pos;
            if (et == PM_GGUF_STRING) {
                /* count checked against the bytes before the index is allocated */
                if (n > (r->len - r->pos) / 8)
                    return fail_at(r, count_at, "array of %" PRIu64 " STRING needs at least 8 bytes each, only %"
                                   PRIu64 " left", n, r->len - r->pos);
                e->strings = malloc((size_t)(n ? n : 1) * sizeof *e->strings);
                if (!e->strings)
                    return pm_error_set(r->err, PM_ERR_NOMEM, "%s: %s: no memory for %" PRIu64 " string offsets",
                                        r->name, r->field, n);
                for (uint64_t j = 0; j < n; j++) {
                    pm_gguf_str s;
                    e->strings[j] = r->p + r->pos;
                    set_field(r, "kv %zu '%.*s' element %" PRIu64, i,
                              (int)(kv->key.len > 200 ? 200 : kv->key.len), kv->key.ptr, j);
                    if ((st = rd_str(r, STRING_MAX, &s)) != PM_OK)
                        return st;
                }
            } else if ((st = skip_array_elems(r, count_at, (pm_gguf_type)et, n, 1)) != PM_OK) {
                return st;
            }
        } else {
            kv->data = r->p + r->pos;
            set_field(r, "kv %zu '%.*s' value", i, (int)(kv->key.len > 200 ? 200 : kv->key.len), kv->key.ptr);
            if ((st = skip_value(r, kv->type, 0)) != PM_OK)
                return st;
        }
        size_t dup = hash_insert(g, g->kv_hash, g->kv_hash_size, kv_name, i);
        if (dup != SIZE_MAX) {
            set_field(r, "kv %zu '%.*s'", i, (int)(kv->key.len > 200 ? 200 : kv->key.len), kv->key.ptr);
            return fail_at(r, kv->offset, "duplicate key (first at byte %" PRIu64 ")", g->kvs[dup].kv.offset);
        }
    }
    return PM_OK;
}

static pm_status parse_tensor_info(pm_gguf *g, reader *r, size_t i, uint64_t *rel_offset, uint64_t *info_at)
{
    pm_status st;
    pm_gguf_tensor *t = &g->tensors[i];
    uint64_t at = r->pos;
    *info_at = at;
    set_field(r, "tensor %zu name", i);
    if ((st = rd_str(r, NAME_MAX_BYTES, &t->name)) != PM_OK)
        return st;
    if (t->name.len == 0)
        return fail_at(r, at, "empty tensor name");
    set_field(r, "tensor '%.*s'", (int)(t->name.len > 200 ? 200 : t->name.len), t->name.ptr);
    at = r->pos;
    if ((st = rd_u32(r, "n_dims", &t->n_dims)) != PM_OK)
        return st;
    if (t->n_dims < 1 || t->n_dims > 4)
        return fail_at(r, at, "n_dims %" PRIu32 " is not in 1..4", t->n_dims);
    uint64_t elems = 1;
    for (uint32_t d = 0; d < 4; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        at = r->pos;
        if ((st = rd_u64(r, "ne", &t->ne[d])) != PM_OK)
            return st;
        if (t->ne[d] == 0)
            return fail_at(r, at, "ne[%" PRIu32 "] is 0", d);
        if (t->ne[d] > (uint64_t)INT64_MAX || !mul_ok(elems, t->ne[d], &elems) || elems > (uint64_t)INT64_MAX)
            return fail_at(r, at, "ne[%" PRIu32 "] = %" PRIu64 " overflows the element count", d, t->ne[d]);
    }
    at = r->pos;
    if ((st = rd_u32(r, "ggml type", &t->ggml_type)) != PM_OK)
        return st;
    if (t->ggml_type >= GGML_ROWS || !ggml_rows[t->ggml_type].name)
        return fail_at(r, at, "ggml type %" PRIu32 " is unknown", t->ggml_type);
    if (!ggml_rows[t->ggml_type].supported)
        return fail_at(r, at, "ggml type %" PRIu32 " (%s) is not supported (F32 F16 BF16 Q4_0 Q4_1 Q8_0 Q4_K Q6_K)",
                       t->ggml_type, ggml_rows[t->ggml_type].name);
    t->format = ggml_rows[t->ggml_type].format;
    const pm_format_info *fi = pm_format_get(t->format);
    if (t->ne[0] % fi->block_elems != 0)
        return fail_at(r, *info_at, "ne[0] = %" PRIu64 " is not a multiple of the %s block of %u", t->ne[0],
                       ggml_rows[t->ggml_type].name, fi->block_elems);
    uint64_t bytes = t->ne[0] / fi->block_elems * fi->block_bytes;
    for (uint32_t d = 1; d < 4; d++)
        if (!mul_ok(bytes, t->ne[d], &bytes))
            return fail_at(r, *info_at, "byte size overflows 64 bits");
    t->bytes = bytes;
    at = r->pos;
    if ((st = rd_u64(r, "offset", rel_offset)) != PM_OK)
        return st;
    return PM_OK;
}

typedef struct extent {
    uint64_t start, end;
    size_t index;
} extent;

static int extent_cmp(const void *a, const void *b)
{
    const extent *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->index < y->index ? -1 : (x->index > y->index);
}

/* Data section: tensors placed after the aligned end of the infos, each
 * aligned, inside the file, and not overlapping another tensor. */
static pm_status place_tensors(pm_gguf *g, reader *r, const uint64_t *rel, const uint64_t *info_at,
                               uint32_t alignment)
{
    uint64_t data_start = r->pos + (alignment - r->pos % alignment) % alignment;
    extent *ex = NULL;
    if (g->n_tensors) {
        ex = malloc(g->n_tensors * sizeof *ex);
        if (!ex)
            return pm_error_set(r->err, PM_ERR_NOMEM, "%s: no memory for %zu tensor extents", r->name, g->n_tensors);
    }
    pm_status st = PM_OK;
    for (size_t i = 0; i < g->n_tensors && st == PM_OK; i++) {
        pm_gguf_tensor *t = &g->tensors[i];
        set_field(r, "tensor '%.*s' offset", (int)(t->name.len > 200 ? 200 : t->name.len), t->name.ptr);
        uint64_t at = info_at[i];
        if (rel[i] % alignment != 0)
            st = fail_at(r, at, "data offset %" PRIu64 " is not a multiple of the alignment %" PRIu32, rel[i],
                         alignment);
        else if (data_start > r->len || rel[i] > r->len - data_start || t->bytes > r->len - data_start - rel[i])
            st = fail_at(r, at, "data [%" PRIu64 ", +%" PRIu64 ") at file byte %" PRIu64 " runs past the end of the "
                         "file (%" PRIu64 " bytes)", rel[i], t->bytes, data_start + (rel[i] < r->len ? rel[i] : 0),
                         r->len);
        else {
            t->offset = data_start + rel[i];
            t->data = g->base + t->offset;
            ex[i] = (extent){t->offset, t->offset + t->bytes, i};
        }
    }
    if (st == PM_OK && g->n_tensors > 1) {
        qsort(ex, g->n_tensors, sizeof *ex, extent_cmp);
        for (size_t k = 1; k < g->n_tensors && st == PM_OK; k++)
            if (ex[k].start < ex[k - 1].end) {
                const pm_gguf_tensor *a = &g->tensors[ex[k - 1].index], *b = &g->tensors[ex[k].index];
                set_field(r, "tensor '%.*s' offset", (int)(b->name.len > 200 ? 200 : b->name.len), b->name.ptr);
                st = fail_at(r, info_at[ex[k].index], "data overlaps tensor '%.*s' (file bytes %" PRIu64 "..%" PRIu64
                             ")", (int)(a->name.len > 200 ? 200 : a->name.len), a->name.ptr, ex[k - 1].start,
                             ex[k - 1].end);
            }
    }
    free(ex);
    return st;
}

/* general.alignment: a UINT32 power of two when present. */
static pm_status find_alignment(pm_gguf *g, reader *r, uint32_t *alignment)
{
    *alignment = DEFAULT_ALIGNMENT;
    size_t i = hash_find(g, g->kv_hash, g->kv_hash_size, kv_name, "general.alignment", 17);
    if (i == SIZE_MAX)
        return PM_OK;
    const pm_gguf_kv *kv = &g->kvs[i].kv;
    set_field(r, "kv %zu 'general.alignment'", i);
    if (kv->type != PM_GGUF_U32)
        return fail_at(r, kv->offset, "type %s, expected UINT32", pm_gguf_type_name(kv->type));
    uint32_t a = ld32(kv->data);
    if (a == 0 || (a & (a - 1)) != 0)
        return fail_at(r, (uint64_t)(kv->data - g->base), "alignment %" PRIu32 " is not a power of two", a);
    *alignment = a;
    return PM_OK;
}

static pm_status parse(pm_gguf *g, pm_error *err)
{
    reader r = {g->base, g->len, 0, g->name, err, "header"};
    uint64_t n_t, n_kv;
    uint32_t magic, version;
    pm_status st;
    set_field(&r, "magic");
    if ((st = rd_u32(&r, "magic", &magic)) != PM_OK)
        return st;
    if (magic != 0x46554747u)
        return fail_at(&r, 0, "%02x %02x %02x %02x is not \"GGUF\"", g->base[0], g->base[1], g->base[2], g->base[3]);
    set_field(&r, "version");
    if ((st = rd_u32(&r, "version", &version)) != PM_OK)
        return st;
    if (version == 1 || version == 2)
        return fail_at(&r, 4, "GGUF version %" PRIu32 " is not supported (only version 3; re-convert the model)",
                       version);
    if (version != 3)
        return fail_at(&r, 4, "version %" PRIu32 " is unknown%s (only version 3)", version,
                       (version & 0xffff) == 0 ? " (a big-endian file?)" : "");
    g->version = version;
    set_field(&r, "tensor_count");
    if ((st = rd_u64(&r, "tensor_count", &n_t)) != PM_OK)
        return st;
    set_field(&r, "kv_count");
    if ((st = rd_u64(&r, "kv_count", &n_kv)) != PM_OK)
        return st;
    /* Before any allocation: each kv takes >= 13 bytes (8 key length, 1 key
     * byte, 4 type; values >= 1 more, ignored here), each tensor info >= 33. */
    uint64_t left = r.len - r.pos;
    if (n_kv > left / 13) {
        set_field(&r, "kv_count");
        return fail_at(&r, 16, "%" PRIu64 " kvs cannot fit in the %" PRIu64 " bytes left", n_kv, left);
    }
    if (n_t > left / 33 || n_kv * 13 + n_t * 33 > left) {
        set_field(&r, "tensor_count");
        return fail_at(&r, 8, "%" PRIu64 " tensor infos (and %" PRIu64 " kvs) cannot fit in the %" PRIu64
                       " bytes left", n_t, n_kv, left);
    }
    if (n_kv >= UINT32_MAX || n_t >= UINT32_MAX) { /* the hash tables hold 32-bit indices */
        set_field(&r, n_kv >= UINT32_MAX ? "kv_count" : "tensor_count");
        return fail_at(&r, n_kv >= UINT32_MAX ? 16 : 8, "more than 2^32 - 2 entries");
    }
    g->n_kv = (size_t)n_kv;
    g->n_tensors = (size_t)n_t;
    g->kv_hash_size = table_size(g->n_kv);
    g->t_hash_size = table_size(g->n_tensors);
    g->kvs = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kvs);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    g->kv_hash = calloc(g->kv_hash_size, sizeof *g->kv_hash);
    g->t_hash = calloc(g->t_hash_size, sizeof *g->t_hash);
    uint64_t *rel = malloc((g->n_tensors ? g->n_tensors : 1) * 2 * sizeof *rel);
    if (!g->kvs || !g->tensors || !g->kv_hash || !g->t_hash || !rel) {
        free(rel);
        return pm_error_set(err, PM_ERR_NOMEM, "%s: no memory for %zu kvs and %zu tensors", g->name, g->n_kv,
                            g->n_tensors);
    }
    uint64_t *info_at = rel + g->n_tensors;
    if ((st = parse_kvs(g, &r)) != PM_OK)
        goto done;
    uint32_t alignment;
    if ((st = find_alignment(g, &r, &alignment)) != PM_OK)
        goto done;
    for (size_t i = 0; i < g->n_tensors; i++) {
        if ((st = parse_tensor_info(g, &r, i, &rel[i], &info_at[i])) != PM_OK)
            goto done;
        size_t dup = hash_insert(g, g->t_hash, g->t_hash_size, t_name, i);
        if (dup != SIZE_MAX) {
            st = fail_at(&r, info_at[i], "duplicate tensor name (first at byte %" PRIu64 ")", info_at[dup]);
            goto done;
        }
    }
    st = place_tensors(g, &r, rel, info_at, alignment);
done:
    free(rel);
    return st;
}

static pm_status open_common(pm_gguf *g, pm_gguf **out, pm_error *err)
{
    pm_status st = parse(g, err);
    if (st != PM_OK) {
        pm_gguf_close(g);
        return st;
    }
    *out = g;
    return PM_OK;
}

static pm_gguf *new_gguf(const char *name, pm_error *err)
{
    pm_gguf *g = calloc(1, sizeof *g);
    size_t n = strlen(name);
    if (g)
        g->name = malloc(n + 1);
    if (!g || !g->name) {
        free(g);
        pm_error_set(err, PM_ERR_NOMEM, "%s: no memory for the reader", name);
        return NULL;
    }
    memcpy(g->name, name, n + 1);
    return g;
}

pm_status pm_gguf_open_memory(const void *data, size_t len, const char *name, pm_gguf **out, pm_error *err)
{
    if (!out || (!data && len))
        return pm_error_set(err, PM_ERR_INVALID, "pm_gguf_open_memory: NULL %s", out ? "data" : "out");
    *out = NULL;
    pm_gguf *g = new_gguf(name ? name : "<memory>", err);
    if (!g)
        return PM_ERR_NOMEM;
    static const uint8_t empty[1] = {0};
    g->base = data ? data : empty;
    g->len = len;
    return open_common(g, out, err);
}

pm_status pm_gguf_open(const char *path, pm_gguf **out, pm_error *err)
{
    if (!path || !out)
        return pm_error_set(err, PM_ERR_INVALID, "pm_gguf_open: NULL %s", path ? "out" : "path");
    *out = NULL;
    pm_gguf *g = new_gguf(path, err);
    if (!g)
        return PM_ERR_NOMEM;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        pm_error_set(err, PM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        pm_gguf_close(g);
        return PM_ERR_IO;
    }
    struct stat sb;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 && (uint64_t)sb.st_size <= SIZE_MAX) {
        void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED) {
            g->map = m;
            g->base = m;
            g->len = (uint64_t)sb.st_size;
        }
    }
    close(fd);
    if (!g->map) { /* not mappable (a pipe, an empty file, no mmap): read it */
        size_t n = 0;
        pm_status st = pm_read_file(path, &g->owned, &n, err);
        if (st != PM_OK) {
            pm_gguf_close(g);
            return st;
        }
        g->base = g->owned;
        g->len = n;
    }
    return open_common(g, out, err);
}

void pm_gguf_close(pm_gguf *g)
{
    if (!g)
        return;
    if (g->kvs)
        for (size_t i = 0; i < g->n_kv; i++)
            free(g->kvs[i].strings);
    free(g->kvs);
    free(g->tensors);
    free(g->kv_hash);
    free(g->t_hash);
    if (g->map)
        munmap(g->map, (size_t)g->len);
    free(g->owned);
    free(g->name);
    free(g);
}

/* ---- queries ---- */

uint32_t pm_gguf_version(const pm_gguf *g)
{
    return g ? g->version : 0;
}

size_t pm_gguf_kv_count(const pm_gguf *g)
{
    return g ? g->n_kv : 0;
}

const pm_gguf_kv *pm_gguf_kv_at(const pm_gguf *g, size_t i)
{
    return (g && i < g->n_kv) ? &g->kvs[i].kv : NULL;
}

const pm_gguf_kv *pm_gguf_find(const pm_gguf *g, const char *key)
{
    if (!g || !key)
        return NULL;
    size_t i = hash_find(g, g->kv_hash, g->kv_hash_size, kv_name, key, strlen(key));
    return i == SIZE_MAX ? NULL : &g->kvs[i].kv;
}

size_t pm_gguf_tensor_count(const pm_gguf *g)
{
    return g ? g->n_tensors : 0;
}

const pm_gguf_tensor *pm_gguf_tensor_at(const pm_gguf *g, size_t i)
{
    return (g && i < g->n_tensors) ? &g->tensors[i] : NULL;
}

const pm_gguf_tensor *pm_gguf_tensor_find(const pm_gguf *g, const char *name)
{
    if (!g || !name)
        return NULL;
    size_t i = hash_find(g, g->t_hash, g->t_hash_size, t_name, name, strlen(name));
    return i == SIZE_MAX ? NULL : &g->tensors[i];
}

uint64_t pm_gguf_tensor_elems(const pm_gguf_tensor *t)
{
    if (!t)
        return 0;
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; /* checked at open */
}

pm_status pm_gguf_tensor_to_f32(const pm_gguf_tensor *t, float *dst, pm_error *err)
{
    if (!t || !dst)
        return pm_error_set(err, PM_ERR_INVALID, "pm_gguf_tensor_to_f32: NULL %s", t ? "dst" : "tensor");
    uint64_t n = pm_gguf_tensor_elems(t);
    if (n > SIZE_MAX / sizeof(float))
        return pm_error_set(err, PM_ERR_INVALID, "tensor '%.*s': %" PRIu64 " elements do not fit in memory",
                            (int)t->name.len, t->name.ptr, n);
    pm_status st = pm_format_decode(t->format, t->data, (size_t)n, dst, err);
    if (st != PM_OK)
        pm_error_prefix(err, "tensor '%.*s': ", (int)t->name.len, t->name.ptr);
    return st;
}

/* ---- typed getters ---- */

/* Value of a scalar integer kv as (negative?, magnitude); false for other types. */
static bool int_value(const pm_gguf_kv *kv, bool *neg, uint64_t *mag)
{
    const uint8_t *p = kv->data;
    int64_t s;
    *neg = false;
    switch (kv->type) {
    case PM_GGUF_U8: *mag = p[0]; return true;
    case PM_GGUF_U16: *mag = (uint64_t)(p[0] | (p[1] << 8)); return true;
    case PM_GGUF_U32: *mag = ld32(p); return true;
    case PM_GGUF_U64: *mag = ld64(p); return true;
    case PM_GGUF_I8: s = (int8_t)p[0]; break;
    case PM_GGUF_I16: s = (int16_t)(uint16_t)(p[0] | (p[1] << 8)); break;
    case PM_GGUF_I32: s = (int32_t)ld32(p); break;
    case PM_GGUF_I64: s = (int64_t)ld64(p); break;
    default: return false;
    }
    *neg = s < 0;
    *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    return true;
}

static pm_status lookup(const pm_gguf *g, const char *key, const pm_gguf_kv **kv, pm_error *err)
{
    *kv = pm_gguf_find(g, key);
    if (!*kv)
        return pm_error_set(err, PM_ERR_INVALID, "%s: key '%s' is absent", g ? g->name : "<null>", key ? key : "");
    return PM_OK;
}

static pm_status wrong_type(const pm_gguf *g, const pm_gguf_kv *kv, const char *key, const char *want, pm_error *err)
{
    return pm_error_set(err, PM_ERR_FORMAT, "%s: byte %" PRIu64 ": kv '%s': type %s, expected %s", g->name,
                        kv->offset, key, pm_gguf_type_name(kv->type), want);
}

pm_status pm_gguf_get_u64(const pm_gguf *g, const char *key, uint64_t *out, pm_error *err)
{
    const pm_gguf_kv *kv;
    pm_status st = lookup(g, key, &kv, err);
    bool neg;
    uint64_t mag;
    if (st != PM_OK)
        return st;
    if (!int_value(kv, &neg, &mag))
        return wrong_type(g, kv, key, "an integer", err);
    if (neg)
        return pm_error_set(err, PM_ERR_FORMAT, "%s: byte %" PRIu64 ": kv '%s': value -%" PRIu64 " is negative",
                            g->name, kv->offset, key, mag);
    *out = mag;
    return PM_OK;
}

pm_status pm_gguf_get_u32(const pm_gguf *g, const char *key, uint32_t *out, pm_error *err)
{
    uint64_t v;
    pm_status st = pm_gguf_get_u64(g, key, &v, err);
    if (st != PM_OK)
        return st;
    if (v > UINT32_MAX)
        return pm_error_set(err, PM_ERR_FORMAT, "%s: byte %" PRIu64 ": kv '%s': value %" PRIu64
                            " does not fit 32 bits", g->name, pm_gguf_find(g, key)->offset, key, v);
    *out = (uint32_t)v;
    return PM_OK;
}

pm_status pm_gguf_get_f32(const pm_gguf *g, const char *key, float *out, pm_error *err)
{
    const pm_gguf_kv *kv;
    pm_status st = lookup(g, key, &kv, err);
    if (st != PM_OK)
        return st;
    if (kv->type == PM_GGUF_F32) {
        uint32_t u = ld32(kv->data);
        memcpy(out, &u, 4);
    } else if (kv->type == PM_GGUF_F64) {
        uint64_t u = ld64(kv->data);
        double d;
        memcpy(&d, &u, 8);
        *out = (float)d;
    } else {
        return wrong_type(g, kv, key, "FLOAT32 or FLOAT64", err);
    }
    return PM_OK;
}

pm_status pm_gguf_get_bool(const pm_gguf *g, const char *key, bool *out, pm_error *err)
{
    const pm_gguf_kv *kv;
    pm_status st = lookup(g, key, &kv, err);
    if (st != PM_OK)
        return st;
    if (kv->type != PM_GGUF_BOOL)
        return wrong_type(g, kv, key, "BOOL", err);
    *out = kv->data[0] != 0;
    return PM_OK;
}

pm_status pm_gguf_get_str(const pm_gguf *g, const char *key, pm_gguf_str *out, pm_error *err)
{
    const pm_gguf_kv *kv;
    pm_status st = lookup(g, key, &kv, err);
    if (st != PM_OK)
        return st;
    if (kv->type != PM_GGUF_STRING)
        return wrong_type(g, kv, key, "STRING", err);
    out->len = ld64(kv->data);
    out->ptr = (const char *)kv->data + 8;
    return PM_OK;
}

pm_status pm_gguf_get_array(const pm_gguf *g, const char *key, pm_gguf_type *elem, uint64_t *n,
                            const pm_gguf_kv **kvp, pm_error *err)
{
    const pm_gguf_kv *kv;
    pm_status st = lookup(g, key, &kv, err);
    if (st != PM_OK)
        return st;
    if (kv->type != PM_GGUF_ARRAY)
        return wrong_type(g, kv, key, "ARRAY", err);
    if (elem)
        *elem = kv->arr_type;
    if (n)
        *n = kv->arr_n;
    if (kvp)
        *kvp = kv;
    return PM_OK;
}

pm_gguf_str pm_gguf_kv_string(const pm_gguf_kv *kv, uint64_t i)
{
    pm_gguf_str s = {NULL, 0};
    if (!kv)
        return s;
    if (kv->type == PM_GGUF_STRING && i == 0) {
        s.len = ld64(kv->data);
        s.ptr = (const char *)kv->data + 8;
        return s;
    }
    if (kv->type != PM_GGUF_ARRAY || kv->arr_type != PM_GGUF_STRING || i >= kv->arr_n)
        return s;
    const kv_entry *e = (const kv_entry *)(const void *)kv; /* the kv is the first member of its entry */
    s.len = ld64(e->strings[i]);
    s.ptr = (const char *)e->strings[i] + 8;
    return s;
}

/* Element i of a numeric array (or the value of a numeric scalar, i = 0), widened to double. */
static double number_at(pm_gguf_type t, const uint8_t *p)
{
    uint64_t u;
    switch (t) {
    case PM_GGUF_U8: return p[0];
    case PM_GGUF_I8: return (int8_t)p[0];
    case PM_GGUF_U16: return (uint16_t)(p[0] | (p[1] << 8));
    case PM_GGUF_I16: return (int16_t)(uint16_t)(p[0] | (p[1] << 8));
    case PM_GGUF_U32: return ld32(p);
    case PM_GGUF_I32: return (int32_t)ld32(p);
    case PM_GGUF_U64: return (double)ld64(p);
    case PM_GGUF_I64: return (double)(int64_t)ld64(p);
    case PM_GGUF_BOOL: return p[0];
    case PM_GGUF_F32: {
        uint32_t b = ld32(p);
        float f;
        memcpy(&f, &b, 4);
        return f;
    }
    case PM_GGUF_F64: {
        double d;
        u = ld64(p);
        memcpy(&d, &u, 8);
        return d;
    }
    default: return NAN;
    }
}

double pm_gguf_kv_number(const pm_gguf_kv *kv, uint64_t i)
{
    if (!kv)
        return NAN;
    if (kv->type != PM_GGUF_ARRAY)
        return (i == 0 && kv->type != PM_GGUF_STRING) ? number_at(kv->type, kv->data) : NAN;
    if (i >= kv->arr_n || kv->arr_type == PM_GGUF_STRING || kv->arr_type == PM_GGUF_ARRAY)
        return NAN;
    return number_at(kv->arr_type, kv->data + i * scalar_size[kv->arr_type]);
}
