/* GGUF reader tests: a small valid file built in memory (its field offsets
 * recorded as it is written), then a table of corruptions, each expected to
 * fail with PM_ERR_FORMAT naming the field and its byte offset; every
 * truncation of the file; and the accessors on the valid file. */
#define _POSIX_C_SOURCE 200809L

#include "test.h"

#include "polymorph/gguf.h"

#include <fcntl.h>
#include <math.h>
#include <unistd.h>

/* ---- building the file ---- */

typedef struct buf {
    uint8_t data[4096];
    size_t len;
} buf;

static size_t put(buf *b, const void *p, size_t n)
{
    size_t at = b->len;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return at;
}
static size_t put32(buf *b, uint32_t v)
{
    uint8_t p[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return put(b, p, 4);
}
static size_t put64(buf *b, uint64_t v)
{
    size_t at = put32(b, (uint32_t)v);
    put32(b, (uint32_t)(v >> 32));
    return at;
}
static size_t putstr(buf *b, const char *s)
{
    size_t at = put64(b, strlen(s));
    put(b, s, strlen(s));
    return at;
}
static void patch32(buf *b, size_t at, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b->data[at + (size_t)i] = (uint8_t)(v >> (8 * i));
}
static void patch64(buf *b, size_t at, uint64_t v)
{
    patch32(b, at, (uint32_t)v);
    patch32(b, at + 4, (uint32_t)(v >> 32));
}

/* Byte offsets of the fields the corruptions aim at. */
typedef struct layout {
    size_t version, n_tensors, n_kv;
    size_t key[6], vtype[6], value[6]; /* kv i: its key length, type, and value (or array element type) */
    size_t arr_n;                      /* kv 3 (a.arr) element count */
    size_t tinfo[2], ndims[2], ne[2][2], ttype[2], toff[2];
    size_t data_start;
} layout;

enum { N_KV = 6 };
static const float b_values[4] = {1.5f, -2.0f, 0.25f, 1e30f};

/* kvs: general.alignment=32 (U32), a.str="hello", a.flag=true, a.arr=["x","yz"],
 * a.nums=I16[1,-2,3], a.nest=ARRAY[ARRAY U8[7], ARRAY U8[]];
 * tensors: w Q8_0 [32, 2] at 0, b F32 [4] at 96. */
static void build(buf *b, layout *L)
{
    memset(b, 0, sizeof *b);
    memset(L, 0, sizeof *L);
    put(b, "GGUF", 4);
    L->version = put32(b, 3);
    L->n_tensors = put64(b, 2);
    L->n_kv = put64(b, N_KV);

    L->key[0] = putstr(b, "general.alignment");
    L->vtype[0] = put32(b, PM_GGUF_U32);
    L->value[0] = put32(b, 32);

    L->key[1] = putstr(b, "a.str");
    L->vtype[1] = put32(b, PM_GGUF_STRING);
    L->value[1] = putstr(b, "hello");

    L->key[2] = putstr(b, "a.flag");
    L->vtype[2] = put32(b, PM_GGUF_BOOL);
    L->value[2] = put(b, "\x01", 1);

    L->key[3] = putstr(b, "a.arr");
    L->vtype[3] = put32(b, PM_GGUF_ARRAY);
    L->value[3] = put32(b, PM_GGUF_STRING);
    L->arr_n = put64(b, 2);
    putstr(b, "x");
    putstr(b, "yz");

    L->key[4] = putstr(b, "a.nums");
    L->vtype[4] = put32(b, PM_GGUF_ARRAY);
    L->value[4] = put32(b, PM_GGUF_I16);
    put64(b, 3);
    put(b, "\x01\x00\xfe\xff\x03\x00", 6);

    L->key[5] = putstr(b, "a.nest");
    L->vtype[5] = put32(b, PM_GGUF_ARRAY);
    L->value[5] = put32(b, PM_GGUF_ARRAY);
    put64(b, 2);
    put32(b, PM_GGUF_U8);
    put64(b, 1);
    put(b, "\x07", 1);
    put32(b, PM_GGUF_U8);
    put64(b, 0);

    static const char *const names[2] = {"w", "b"};
    static const uint64_t ne[2][2] = {{32, 2}, {4, 1}};
    static const uint32_t ndims[2] = {2, 1}, types[2] = {PM_GGML_Q8_0, PM_GGML_F32};
    static const uint64_t offs[2] = {0, 96};
    for (int t = 0; t < 2; t++) {
        L->tinfo[t] = putstr(b, names[t]);
        L->ndims[t] = put32(b, ndims[t]);
        for (uint32_t d = 0; d < ndims[t]; d++)
            L->ne[t][d] = put64(b, ne[t][d]);
        L->ttype[t] = put32(b, types[t]);
        L->toff[t] = put64(b, offs[t]);
    }
    while (b->len % 32)
        b->data[b->len++] = 0;
    L->data_start = b->len;
    float w[64];
    for (int i = 0; i < 64; i++)
        w[i] = (float)(i - 20) * 0.125f;
    pm_error err = {0};
    CHECK(pm_format_encode(PM_FMT_Q8_0, w, 64, b->data + b->len, &err) == PM_OK);
    b->len += 68;
    while (b->len % 32)
        b->data[b->len++] = 0;
    CHECK(b->len == L->data_start + 96);
    put(b, b_values, sizeof b_values); /* the host is little-endian on every machine this runs on */
}

/* Open a copy of exactly len bytes (so a sanitizer sees any over-read). */
static pm_status open_copy(const buf *b, size_t len, pm_gguf **g, pm_error *err)
{
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, b->data, len);
    pm_status st = pm_gguf_open_memory(copy, len, "t.gguf", g, err);
    if (st == PM_OK) {
        /* walk everything while the copy is alive */
        for (size_t i = 0; i < pm_gguf_tensor_count(*g); i++) {
            const pm_gguf_tensor *t = pm_gguf_tensor_at(*g, i);
            float out[64];
            if (pm_gguf_tensor_elems(t) <= 64)
                CHECK(pm_gguf_tensor_to_f32(t, out, err) == PM_OK);
        }
        pm_gguf_close(*g);
        *g = NULL;
    }
    free(copy);
    return st;
}

TEST(valid_file_and_accessors)
{
    buf b;
    layout L;
    build(&b, &L);
    pm_gguf *g = NULL;
    pm_error err = {0};
    CHECK_MSG(pm_gguf_open_memory(b.data, b.len, "t.gguf", &g, &err) == PM_OK, "%s", err.message);
    if (!g)
        return;
    CHECK(pm_gguf_version(g) == 3);
    CHECK(pm_gguf_kv_count(g) == N_KV && pm_gguf_tensor_count(g) == 2);
    CHECK(pm_gguf_kv_at(g, N_KV) == NULL && pm_gguf_tensor_at(g, 2) == NULL);
    const pm_gguf_kv *kv = pm_gguf_find(g, "a.str");
    CHECK(kv && kv->type == PM_GGUF_STRING && kv->offset == L.key[1]);
    CHECK(pm_gguf_find(g, "a.st") == NULL && pm_gguf_find(g, "nope") == NULL);

    uint32_t u32 = 0;
    uint64_t u64 = 0;
    CHECK(pm_gguf_get_u32(g, "general.alignment", &u32, &err) == PM_OK && u32 == 32);
    CHECK(pm_gguf_get_u64(g, "general.alignment", &u64, &err) == PM_OK && u64 == 32);
    pm_gguf_str s;
    CHECK(pm_gguf_get_str(g, "a.str", &s, &err) == PM_OK && s.len == 5 && !memcmp(s.ptr, "hello", 5));
    bool flag = false;
    CHECK(pm_gguf_get_bool(g, "a.flag", &flag, &err) == PM_OK && flag);
    CHECK(pm_gguf_get_u32(g, "missing", &u32, &err) == PM_ERR_INVALID && strstr(err.message, "'missing'"));
    CHECK(pm_gguf_get_u32(g, "a.str", &u32, &err) == PM_ERR_FORMAT && strstr(err.message, "type STRING"));
    float f;
    CHECK(pm_gguf_get_f32(g, "a.flag", &f, &err) == PM_ERR_FORMAT && strstr(err.message, "a.flag"));

    pm_gguf_type et;
    uint64_t n;
    const pm_gguf_kv *arr;
    CHECK(pm_gguf_get_array(g, "a.arr", &et, &n, &arr, &err) == PM_OK && et == PM_GGUF_STRING && n == 2);
    pm_gguf_str e0 = pm_gguf_kv_string(arr, 0), e1 = pm_gguf_kv_string(arr, 1), e2 = pm_gguf_kv_string(arr, 2);
    CHECK(e0.len == 1 && e0.ptr[0] == 'x' && e1.len == 2 && !memcmp(e1.ptr, "yz", 2) && e2.ptr == NULL);
    CHECK(pm_gguf_get_array(g, "a.str", &et, &n, &arr, &err) == PM_ERR_FORMAT);
    CHECK(pm_gguf_get_array(g, "a.nums", &et, &n, &arr, &err) == PM_OK && et == PM_GGUF_I16 && n == 3);
    CHECK(pm_gguf_kv_number(arr, 0) == 1.0 && pm_gguf_kv_number(arr, 1) == -2.0 && pm_gguf_kv_number(arr, 2) == 3.0);
    CHECK(isnan(pm_gguf_kv_number(arr, 3)));
    CHECK(pm_gguf_get_array(g, "a.nest", &et, &n, &arr, &err) == PM_OK && et == PM_GGUF_ARRAY && n == 2);
    CHECK(isnan(pm_gguf_kv_number(arr, 0)) && pm_gguf_kv_string(arr, 0).ptr == NULL);

    const pm_gguf_tensor *w = pm_gguf_tensor_find(g, "w"), *bt = pm_gguf_tensor_find(g, "b");
    CHECK(w && bt && pm_gguf_tensor_find(g, "x") == NULL);
    if (w && bt) {
        CHECK(w->format == PM_FMT_Q8_0 && w->n_dims == 2 && w->ne[0] == 32 && w->ne[1] == 2 && w->bytes == 68);
        CHECK(w->offset == L.data_start && bt->offset == L.data_start + 96 && bt->format == PM_FMT_F32);
        CHECK(pm_gguf_tensor_elems(w) == 64 && pm_gguf_tensor_elems(bt) == 4);
        float got[64], want[64];
        CHECK(pm_gguf_tensor_to_f32(w, got, &err) == PM_OK);
        CHECK(pm_format_decode(PM_FMT_Q8_0, b.data + L.data_start, 64, want, &err) == PM_OK);
        CHECK(memcmp(got, want, sizeof got) == 0);
        CHECK(pm_gguf_tensor_to_f32(bt, got, &err) == PM_OK && memcmp(got, b_values, sizeof b_values) == 0);
    }
    CHECK(!strcmp(pm_ggml_type_name(PM_GGML_Q6_K), "Q6_K") && !strcmp(pm_ggml_type_name(99), "?"));
    CHECK(!strcmp(pm_gguf_type_name(PM_GGUF_F64), "FLOAT64"));
    pm_gguf_close(g);
    pm_gguf_close(NULL);
}

/* ---- the corruption table ---- */

typedef enum field_ref {
    F_ABS, F_VERSION, F_NTENSORS, F_NKV, F_KEY, F_VTYPE, F_VALUE, F_ARRN, F_TINFO, F_NDIMS, F_NE, F_TTYPE, F_TOFF
} field_ref;

typedef struct corruption {
    const char *what;
    field_ref where;
    int i, j;        /* kv or tensor index, dimension */
    int width;       /* 4 or 8: patch a u32 or u64; 1: one byte */
    uint64_t value;
    field_ref at;    /* the byte offset the message must name */
    int at_i, at_j;
    const char *expect; /* substring of the message */
} corruption;

static size_t where(const layout *L, field_ref f, int i, int j)
{
    switch (f) {
    case F_VERSION: return L->version;
    case F_NTENSORS: return L->n_tensors;
    case F_NKV: return L->n_kv;
    case F_KEY: return L->key[i];
    case F_VTYPE: return L->vtype[i];
    case F_VALUE: return L->value[i];
    case F_ARRN: return L->arr_n;
    case F_TINFO: return L->tinfo[i];
    case F_NDIMS: return L->ndims[i];
    case F_NE: return L->ne[i][j];
    case F_TTYPE: return L->ttype[i];
    case F_TOFF: return L->toff[i];
    default: return (size_t)i;
    }
}

static const corruption corruptions[] = {
    {"bad magic", F_ABS, 0, 0, 1, 'X', F_ABS, 0, 0, "magic"},
    {"version 2", F_VERSION, 0, 0, 4, 2, F_VERSION, 0, 0, "version: GGUF version 2 is not supported"},
    {"version 1", F_VERSION, 0, 0, 4, 1, F_VERSION, 0, 0, "GGUF version 1 is not supported"},
    {"version 4", F_VERSION, 0, 0, 4, 4, F_VERSION, 0, 0, "version 4 is unknown"},
    {"big-endian", F_VERSION, 0, 0, 4, 0x03000000u, F_VERSION, 0, 0, "big-endian"},
    {"huge tensor count", F_NTENSORS, 0, 0, 8, 1ull << 60, F_NTENSORS, 0, 0, "tensor_count"},
    {"huge kv count", F_NKV, 0, 0, 8, 1ull << 60, F_NKV, 0, 0, "kv_count"},
    {"tensor count too big by one", F_NTENSORS, 0, 0, 8, 3, F_ABS, -4, 0, "tensor 2 name"},
    {"huge key length", F_KEY, 1, 0, 8, 1ull << 62, F_KEY, 1, 0, "kv 1 key: string length"},
    {"key over the cap", F_KEY, 1, 0, 8, 70000, F_KEY, 1, 0, "exceeds the cap"},
    {"key past the end", F_KEY, 1, 0, 8, 4000, F_KEY, 1, 0, "runs past the end"},
    {"empty key", F_KEY, 1, 0, 8, 0, F_KEY, 1, 0, "empty key"},
    {"huge string value", F_VALUE, 1, 0, 8, 1ull << 40, F_VALUE, 1, 0, "kv 1 'a.str' value: string length"},
    {"bad value type", F_VTYPE, 1, 0, 4, 13, F_VTYPE, 1, 0, "value type 13 is not a GGUF value type"},
    {"bad bool", F_VALUE, 2, 0, 1, 2, F_VALUE, 2, 0, "bool value is 2"},
    {"bad array type", F_VALUE, 3, 0, 4, 99, F_VALUE, 3, 0, "array element type 99"},
    {"huge array count", F_ARRN, 0, 0, 8, 1ull << 61, F_ARRN, 0, 0, "'a.arr': array of"},
    {"string element past the end", F_ABS, -5, 0, 8, 5000, F_ABS, -5, 0, "kv 3 'a.arr' element 1: string length"},
    {"nested array bad type", F_ABS, -1, 0, 4, 77, F_ABS, -1, 0, "array element type 77"},
    {"duplicate key", F_ABS, -2, 0, 1, 's', F_KEY, 3, 0, "duplicate key (first at byte"},
    {"bad alignment 48", F_VALUE, 0, 0, 4, 48, F_VALUE, 0, 0, "alignment 48 is not a power of two"},
    {"alignment 0", F_VALUE, 0, 0, 4, 0, F_VALUE, 0, 0, "alignment 0"},
    {"alignment not u32", F_VTYPE, 0, 0, 4, PM_GGUF_I32, F_KEY, 0, 0, "type INT32, expected UINT32"},
    {"n_dims 0", F_NDIMS, 0, 0, 4, 0, F_NDIMS, 0, 0, "tensor 'w': n_dims 0 is not in 1..4"},
    {"n_dims 5", F_NDIMS, 0, 0, 4, 5, F_NDIMS, 0, 0, "n_dims 5"},
    {"zero dim", F_NE, 0, 1, 8, 0, F_NE, 0, 1, "ne[1] is 0"},
    {"overflowing dims", F_NE, 0, 1, 8, 1ull << 62, F_NE, 0, 1, "ne[1] = 4611686018427387904 overflows"},
    {"dim above int64", F_NE, 0, 0, 8, 1ull << 63, F_NE, 0, 0, "ne[0]"},
    {"unknown ggml type", F_TTYPE, 0, 0, 4, 99, F_TTYPE, 0, 0, "ggml type 99 is unknown"},
    {"unsupported ggml type", F_TTYPE, 0, 0, 4, 7, F_TTYPE, 0, 0, "ggml type 7 (Q5_1) is not supported"},
    {"ne[0] not a block multiple", F_NE, 0, 0, 8, 16, F_TINFO, 0, 0, "ne[0] = 16 is not a multiple"},
    {"misaligned offset", F_TOFF, 1, 0, 8, 100, F_TINFO, 1, 0, "data offset 100 is not a multiple"},
    {"tensor past EOF", F_TOFF, 1, 0, 8, 128, F_TINFO, 1, 0, "runs past the end of the file"},
    {"offset near 2^64", F_TOFF, 1, 0, 8, ~(uint64_t)31, F_TINFO, 1, 0, "runs past the end"},
    {"overlapping tensors", F_TOFF, 1, 0, 8, 32, F_TINFO, 1, 0, "data overlaps tensor 'w'"},
    {"duplicate tensor name", F_ABS, -3, 0, 1, 'w', F_TINFO, 1, 0, "duplicate tensor name"},
    {"empty tensor name", F_TINFO, 1, 0, 8, 0, F_TINFO, 1, 0, "empty tensor name"},
};

/* Special absolute positions (F_ABS with a negative index). */
static size_t abs_pos(const layout *L, int i)
{
    switch (i) {
    case -1: return L->value[5] + 12;  /* a.nest: first inner array's element type */
    case -2: return L->key[3] + 8 + 2; /* "a.arr" -> "a.str" (the test patches three bytes) */
    case -3: return L->tinfo[1] + 8;   /* "b" -> "w" */
    case -4: return L->toff[1] + 8;    /* just after the tensor infos */
    case -5: return L->arr_n + 8 + 9;  /* a.arr's second string length ("x" took 8 + 1) */
    default: return (size_t)i;
    }
}

TEST(corruption_table)
{
    for (size_t c = 0; c < sizeof corruptions / sizeof corruptions[0]; c++) {
        const corruption *k = &corruptions[c];
        buf b;
        layout L;
        build(&b, &L);
        size_t pos = k->where == F_ABS ? abs_pos(&L, k->i) : where(&L, k->where, k->i, k->j);
        if (k->width == 8)
            patch64(&b, pos, k->value);
        else if (k->width == 4)
            patch32(&b, pos, (uint32_t)k->value);
        else
            b.data[pos] = (uint8_t)k->value;
        if (k->i == -2) { /* "a.arr" -> "a.str": two more bytes */
            b.data[pos + 1] = 't';
            b.data[pos + 2] = 'r';
        }
        size_t at = k->at == F_ABS ? abs_pos(&L, k->at_i) : where(&L, k->at, k->at_i, k->at_j);
        pm_gguf *g = NULL;
        pm_error err = {0};
        pm_status st = open_copy(&b, b.len, &g, &err);
        char want_at[64];
        snprintf(want_at, sizeof want_at, "t.gguf: byte %zu: ", at);
        CHECK_MSG(st == PM_ERR_FORMAT, "%s: status %d (%s)", k->what, (int)st, err.message);
        CHECK_MSG(strstr(err.message, want_at) == err.message, "%s: '%s' does not start with '%s'", k->what,
                  err.message, want_at);
        CHECK_MSG(strstr(err.message, k->expect) != NULL, "%s: '%s' lacks '%s'", k->what, err.message, k->expect);
        CHECK_MSG(strchr(err.message, '\n') == NULL, "%s: message spans lines", k->what);
    }
}

TEST(every_truncation_fails)
{
    buf b;
    layout L;
    build(&b, &L);
    for (size_t len = 0; len < b.len; len++) {
        pm_gguf *g = NULL;
        pm_error err = {0};
        pm_status st = open_copy(&b, len, &g, &err);
        CHECK_MSG(st == PM_ERR_FORMAT && strstr(err.message, "t.gguf: byte "), "length %zu: %d %s", len, (int)st,
                  err.message);
    }
    pm_gguf *g = NULL;
    pm_error err = {0};
    CHECK(open_copy(&b, b.len, &g, &err) == PM_OK);
}

TEST(tensor_count_zero_with_no_data_section)
{
    /* a header with no kvs and no tensors is a valid (empty) file */
    buf b = {{0}, 0};
    put(&b, "GGUF", 4);
    put32(&b, 3);
    put64(&b, 0);
    put64(&b, 0);
    pm_gguf *g = NULL;
    pm_error err = {0};
    CHECK_MSG(open_copy(&b, b.len, &g, &err) == PM_OK, "%s", err.message);
}

TEST(open_from_file)
{
    buf b;
    layout L;
    build(&b, &L);
    char path[] = "/tmp/pm_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, b.data, b.len) == (ssize_t)b.len);
    close(fd);
    pm_gguf *g = NULL;
    pm_error err = {0};
    CHECK_MSG(pm_gguf_open(path, &g, &err) == PM_OK, "%s", err.message);
    const pm_gguf_tensor *t = g ? pm_gguf_tensor_find(g, "b") : NULL;
    float v[4];
    CHECK(t && pm_gguf_tensor_to_f32(t, v, &err) == PM_OK && v[3] == 1e30f);
    pm_gguf_close(g);
    /* a corrupted file on disk: the message names the path */
    b.data[L.version] = 2;
    fd = open(path, O_WRONLY | O_TRUNC);
    CHECK(fd >= 0 && write(fd, b.data, b.len) == (ssize_t)b.len);
    close(fd);
    g = NULL;
    CHECK(pm_gguf_open(path, &g, &err) == PM_ERR_FORMAT && g == NULL);
    CHECK(strstr(err.message, path) == err.message && strstr(err.message, ": byte 4: version: "));
    unlink(path);
    CHECK(pm_gguf_open(path, &g, &err) == PM_ERR_IO && strstr(err.message, "cannot open"));
    CHECK(pm_gguf_open("/tmp", &g, &err) != PM_OK);
    CHECK(pm_gguf_open_memory(NULL, 0, "empty", &g, &err) == PM_ERR_FORMAT && strstr(err.message, "empty: byte 0"));
}

int main(void)
{
    RUN(valid_file_and_accessors);
    RUN(corruption_table);
    RUN(every_truncation_fails);
    RUN(tensor_count_zero_with_no_data_section);
    RUN(open_from_file);
    return TEST_SUMMARY();
}
