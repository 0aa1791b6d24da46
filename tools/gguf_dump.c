/* gguf_dump: a GGUF file's header as JSON (version, every key/value, every
 * tensor's name, type, shape, offset and size), or one tensor dequantised
 * to an fp32 .npy. A thin front end over the models layer's reader; its
 * output is what tests/oracle/test_gguf.py compares with gguf-py. */
#include "polymorph/gguf.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: gguf_dump FILE [--full]\n"
    "       gguf_dump FILE --tensor NAME --npy OUT.npy\n"
    "Prints the header as JSON; arrays longer than 64 elements are cut to their\n"
    "first 64 values unless --full. --tensor writes that tensor dequantised to\n"
    "fp32 with the shape reversed from ggml's ne (as numpy and gguf-py show it).\n";

enum { SHORT_ARRAY = 64 };

static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t ld64(const uint8_t *p)
{
    return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32);
}

/* Length of the valid UTF-8 sequence at s (0 when the bytes are not one). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < least[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0; /* overlong, out of range, or a surrogate */
    return len;
}

/* A JSON string; bytes that are not UTF-8 become U+FFFD, one per byte. */
static void json_str(const char *p, uint64_t n)
{
    const unsigned char *s = (const unsigned char *)p;
    putchar('"');
    for (uint64_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c == '"' || c == '\\') {
            printf("\\%c", c);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            printf("\\u%04x", c);
            i++;
        } else {
            size_t len = utf8_len(s + i, n - i);
            if (len == 0) {
                fputs("\\ufffd", stdout);
                i++;
            } else {
                fwrite(s + i, 1, len, stdout);
                i += len;
            }
        }
    }
    putchar('"');
}

/* JSON has no NaN or infinities: those print as the strings "nan", "inf", "-inf". */
static void json_float(double v, int digits)
{
    if (v != v)
        fputs("\"nan\"", stdout);
    else if (isinf(v))
        fputs(v < 0 ? "\"-inf\"" : "\"inf\"", stdout);
    else if (v == 0 && signbit(v))
        fputs("-0.0", stdout); /* "%g" gives "-0", which JSON readers take as the integer 0 */
    else
        printf("%.*g", digits, v);
}

static const uint8_t scalar_bytes[PM_GGUF_TYPE_COUNT] = {
    [PM_GGUF_U8] = 1,  [PM_GGUF_I8] = 1,  [PM_GGUF_U16] = 2,  [PM_GGUF_I16] = 2, [PM_GGUF_U32] = 4,
    [PM_GGUF_I32] = 4, [PM_GGUF_F32] = 4, [PM_GGUF_BOOL] = 1, [PM_GGUF_U64] = 8, [PM_GGUF_I64] = 8,
    [PM_GGUF_F64] = 8,
};

/* The end of the value at p (already validated by the reader). */
static const uint8_t *skip_value(const uint8_t *p, pm_gguf_type t)
{
    if (t == PM_GGUF_STRING)
        return p + 8 + ld64(p);
    if (t != PM_GGUF_ARRAY)
        return p + scalar_bytes[t];
    pm_gguf_type et = (pm_gguf_type)ld32(p);
    uint64_t n = ld64(p + 4);
    p += 12;
    if (et != PM_GGUF_STRING && et != PM_GGUF_ARRAY)
        return p + n * scalar_bytes[et];
    for (uint64_t i = 0; i < n; i++)
        p = skip_value(p, et);
    return p;
}

/* One value at *p (already validated by the reader), advancing *p. Arrays
 * print at most `limit` values (all of them when limit is 0) and are always
 * walked to their end. */
static void print_value(const uint8_t **p, pm_gguf_type t, uint64_t limit)
{
    const uint8_t *q = *p;
    switch (t) {
    case PM_GGUF_U8: printf("%u", q[0]); break;
    case PM_GGUF_I8: printf("%d", (int8_t)q[0]); break;
    case PM_GGUF_U16: printf("%u", (unsigned)(q[0] | (q[1] << 8))); break;
    case PM_GGUF_I16: printf("%d", (int16_t)(uint16_t)(q[0] | (q[1] << 8))); break;
    case PM_GGUF_U32: printf("%" PRIu32, ld32(q)); break;
    case PM_GGUF_I32: printf("%" PRId32, (int32_t)ld32(q)); break;
    case PM_GGUF_U64: printf("%" PRIu64, ld64(q)); break;
    case PM_GGUF_I64: printf("%" PRId64, (int64_t)ld64(q)); break;
    case PM_GGUF_BOOL: fputs(q[0] ? "true" : "false", stdout); break;
    case PM_GGUF_F32: {
        uint32_t b = ld32(q);
        float f;
        memcpy(&f, &b, 4);
        json_float(f, 9);
        break;
    }
    case PM_GGUF_F64: {
        uint64_t b = ld64(q);
        double d;
        memcpy(&d, &b, 8);
        json_float(d, 17);
        break;
    }
    case PM_GGUF_STRING: {
        uint64_t n = ld64(q);
        json_str((const char *)q + 8, n);
        *p = q + 8 + n;
        return;
    }
    case PM_GGUF_ARRAY: {
        pm_gguf_type et = (pm_gguf_type)ld32(q);
        uint64_t n = ld64(q + 4);
        const uint8_t *e = q + 12;
        printf("{\"type\": \"%s\", \"n\": %" PRIu64 ", \"values\": [", pm_gguf_type_name(et), n);
        for (uint64_t i = 0; i < n; i++) {
            if (limit && i >= limit) {
                e = skip_value(e, et);
                continue;
            }
            fputs(i ? ", " : "", stdout);
            print_value(&e, et, limit);
        }
        printf("]%s}", limit && n > limit ? ", \"truncated\": true" : "");
        *p = e;
        return;
    }
    default: break;
    }
    *p = q + scalar_bytes[t];
}

static void print_kv(const pm_gguf_kv *kv, uint64_t limit)
{
    fputs("{\"key\": ", stdout);
    json_str(kv->key.ptr, kv->key.len);
    printf(", \"type\": \"%s\", \"offset\": %" PRIu64 ", ", pm_gguf_type_name(kv->type), kv->offset);
    if (kv->type == PM_GGUF_ARRAY) {
        printf("\"elem_type\": \"%s\", \"n\": %" PRIu64 ", \"values\": [", pm_gguf_type_name(kv->arr_type),
               kv->arr_n);
        const uint8_t *e = kv->data;
        uint64_t shown = limit && kv->arr_n > limit ? limit : kv->arr_n;
        for (uint64_t i = 0; i < shown; i++) {
            fputs(i ? ", " : "", stdout);
            if (kv->arr_type == PM_GGUF_STRING) {
                pm_gguf_str s = pm_gguf_kv_string(kv, i); /* the reader's O(1) index */
                json_str(s.ptr, s.len);
            } else {
                print_value(&e, kv->arr_type, limit);
            }
        }
        printf("]%s}", shown < kv->arr_n ? ", \"truncated\": true" : "");
        return;
    }
    fputs("\"value\": ", stdout);
    const uint8_t *p = kv->data;
    print_value(&p, kv->type, limit);
    putchar('}');
}

static void print_tensor(const pm_gguf_tensor *t)
{
    fputs("{\"name\": ", stdout);
    json_str(t->name.ptr, t->name.len);
    printf(", \"type\": \"%s\", \"ggml_type\": %" PRIu32 ", \"ne\": [", pm_ggml_type_name(t->ggml_type), t->ggml_type);
    for (uint32_t d = 0; d < t->n_dims; d++)
        printf("%s%" PRIu64, d ? ", " : "", t->ne[d]);
    printf("], \"offset\": %" PRIu64 ", \"bytes\": %" PRIu64 "}", t->offset, t->bytes);
}

static int dump_json(const pm_gguf *g, bool full)
{
    printf("{\"version\": %" PRIu32 ",\n \"kv\": [", pm_gguf_version(g));
    for (size_t i = 0; i < pm_gguf_kv_count(g); i++) {
        fputs(i ? ",\n  " : "\n  ", stdout);
        print_kv(pm_gguf_kv_at(g, i), full ? 0 : SHORT_ARRAY);
    }
    fputs("],\n \"tensors\": [", stdout);
    for (size_t i = 0; i < pm_gguf_tensor_count(g); i++) {
        fputs(i ? ",\n  " : "\n  ", stdout);
        print_tensor(pm_gguf_tensor_at(g, i));
    }
    fputs("]}\n", stdout);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "gguf_dump: writing the JSON failed\n");
        return 1;
    }
    return 0;
}

/* An fp32 .npy (format 1.0) of the tensor, shape ne reversed. */
static int dump_npy(const pm_gguf *g, const char *name, const char *out)
{
    pm_error err = {0};
    const pm_gguf_tensor *t = pm_gguf_tensor_find(g, name);
    if (!t) {
        fprintf(stderr, "gguf_dump: no tensor named '%s'\n", name);
        return 1;
    }
    uint64_t n = pm_gguf_tensor_elems(t);
    char header[256];
    int len = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (uint32_t d = t->n_dims; d-- > 0;)
        len += snprintf(header + len, sizeof header - (size_t)len, "%" PRIu64 "%s", t->ne[d],
                        (t->n_dims == 1 || d > 0) ? ", " : "");
    len += snprintf(header + len, sizeof header - (size_t)len, "), }");
    /* pad with spaces so magic + lengths + header + '\n' is a multiple of 64 */
    size_t total = 10 + (size_t)len + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)len + pad + 1;
    if (n > (SIZE_MAX - 10 - hlen) / 4) {
        fprintf(stderr, "gguf_dump: tensor '%s' is too large to dequantise here\n", name);
        return 1;
    }
    size_t bytes = 10 + hlen + (size_t)n * 4;
    uint8_t *buf = malloc(bytes);
    if (!buf) {
        fprintf(stderr, "gguf_dump: no memory for %zu bytes\n", bytes);
        return 1;
    }
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)(hlen & 0xff);
    buf[9] = (uint8_t)(hlen >> 8);
    memcpy(buf + 10, header, (size_t)len);
    memset(buf + 10 + len, ' ', pad);
    buf[10 + hlen - 1] = '\n';
    float *dst = malloc(n ? (size_t)n * sizeof *dst : 1);
    pm_status st = dst ? pm_gguf_tensor_to_f32(t, dst, &err) : pm_error_set(&err, PM_ERR_NOMEM, "no memory");
    if (st == PM_OK) {
        for (uint64_t i = 0; i < n; i++) { /* .npy '<f4' is little-endian */
            uint32_t u;
            memcpy(&u, &dst[i], 4);
            for (int k = 0; k < 4; k++)
                buf[10 + hlen + 4 * i + (uint64_t)k] = (uint8_t)(u >> (8 * k));
        }
        st = pm_write_file_atomic(out, buf, bytes, &err);
    }
    free(dst);
    free(buf);
    if (st != PM_OK) {
        fprintf(stderr, "gguf_dump: %s\n", err.message);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *file = NULL, *tensor = NULL, *npy = NULL;
    bool full = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--full"))
            full = true;
        else if (!strcmp(argv[i], "--tensor") && i + 1 < argc)
            tensor = argv[++i];
        else if (!strcmp(argv[i], "--npy") && i + 1 < argc)
            npy = argv[++i];
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (argv[i][0] != '-' && !file)
            file = argv[i];
        else {
            fprintf(stderr, "gguf_dump: unexpected argument '%s'\n%s", argv[i], usage);
            return 2;
        }
    }
    if (!file || (!tensor) != (!npy)) {
        fputs(usage, stderr);
        return 2;
    }
    pm_error err = {0};
    pm_gguf *g = NULL;
    if (pm_gguf_open(file, &g, &err) != PM_OK) {
        fprintf(stderr, "gguf_dump: %s\n", err.message);
        return 1;
    }
    int rc = tensor ? dump_npy(g, tensor, npy) : dump_json(g, full);
    pm_gguf_close(g);
    return rc;
}
