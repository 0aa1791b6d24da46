/* NumPy .npy files (format versions 1.0, 2.0, 3.0), the host-side format the
 * CLI binds tensors to. Only what a simulator input or output needs: plain
 * little-endian numeric dtypes in C order. Everything else (Fortran order,
 * big-endian, object/structured dtypes, truncated files, a header whose
 * shape disagrees with the data length) is rejected with a precise message. */
#include "cli.h"

#include "polymorph/numerics.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

void pm_npy_free(pm_npy *a)
{
    if (!a) return;
    free(a->data);
    a->data = NULL;
}

/* ---- the header: a Python dict literal ---- */

typedef struct hdr_cursor {
    const char *name; /* file name for messages */
    const char *s;
    size_t len, pos;
    size_t base; /* byte offset of the header text in the file */
    pm_error *err;
} hdr_cursor;

static pm_status hdr_fail(hdr_cursor *c, const char *what)
{
    return pm_error_set(c->err, PM_ERR_FORMAT, "%s: header byte %zu: %s", c->name, c->base + c->pos, what);
}

static void hdr_ws(hdr_cursor *c)
{
    while (c->pos < c->len && (c->s[c->pos] == ' ' || c->s[c->pos] == '\t' || c->s[c->pos] == '\n' ||
                               c->s[c->pos] == '\r'))
        c->pos++;
}

static bool hdr_eat(hdr_cursor *c, char ch)
{
    hdr_ws(c);
    if (c->pos < c->len && c->s[c->pos] == ch) {
        c->pos++;
        return true;
    }
    return false;
}

/* A quoted string ('...' or "...") without escapes, into buf. */
static pm_status hdr_string(hdr_cursor *c, char *buf, size_t cap)
{
    hdr_ws(c);
    if (c->pos >= c->len || (c->s[c->pos] != '\'' && c->s[c->pos] != '"')) return hdr_fail(c, "expected a quoted string");
    char q = c->s[c->pos++];
    size_t n = 0;
    while (c->pos < c->len && c->s[c->pos] != q) {
        if (c->s[c->pos] == '\\') return hdr_fail(c, "escapes in header strings are not supported");
        if (n + 1 >= cap) return hdr_fail(c, "string too long");
        buf[n++] = c->s[c->pos++];
    }
    if (c->pos >= c->len) return hdr_fail(c, "unterminated string");
    c->pos++;
    buf[n] = 0;
    return PM_OK;
}

static pm_status hdr_bool(hdr_cursor *c, bool *out)
{
    hdr_ws(c);
    if (c->len - c->pos >= 4 && memcmp(c->s + c->pos, "True", 4) == 0) {
        c->pos += 4;
        *out = true;
        return PM_OK;
    }
    if (c->len - c->pos >= 5 && memcmp(c->s + c->pos, "False", 5) == 0) {
        c->pos += 5;
        *out = false;
        return PM_OK;
    }
    return hdr_fail(c, "expected True or False");
}

static pm_status hdr_shape(hdr_cursor *c, pm_npy *a)
{
    if (!hdr_eat(c, '(')) return hdr_fail(c, "expected '(' starting the shape tuple");
    a->rank = 0;
    for (;;) {
        if (hdr_eat(c, ')')) break;
        hdr_ws(c);
        if (c->pos >= c->len || c->s[c->pos] < '0' || c->s[c->pos] > '9')
            return hdr_fail(c, "expected a non-negative integer dimension");
        uint64_t v = 0;
        while (c->pos < c->len && c->s[c->pos] >= '0' && c->s[c->pos] <= '9') {
            unsigned d = (unsigned)(c->s[c->pos] - '0');
            if (v > (UINT64_MAX - d) / 10) return hdr_fail(c, "dimension too large");
            v = v * 10 + d;
            c->pos++;
        }
        if (a->rank == PM_NPY_MAX_RANK) return hdr_fail(c, "too many dimensions");
        a->shape[a->rank++] = v;
        if (hdr_eat(c, ',')) continue;
        if (hdr_eat(c, ')')) break;
        return hdr_fail(c, "expected ',' or ')' in the shape tuple");
    }
    return PM_OK;
}

typedef struct dtype_row {
    char code;
    uint32_t bytes;
    const char *name;
} dtype_row;

static const dtype_row dtype_table[] = {
    {'f', 2, "float16"}, {'f', 4, "float32"}, {'f', 8, "float64"}, {'i', 1, "int8"},   {'i', 2, "int16"},
    {'i', 4, "int32"},   {'i', 8, "int64"},   {'u', 1, "uint8"},   {'u', 2, "uint16"}, {'u', 4, "uint32"},
    {'u', 8, "uint64"},  {'b', 1, "bool"},
};

static const dtype_row *dtype_find(char code, uint32_t bytes)
{
    for (size_t i = 0; i < sizeof dtype_table / sizeof dtype_table[0]; i++)
        if (dtype_table[i].code == code && dtype_table[i].bytes == bytes) return &dtype_table[i];
    return NULL;
}

const char *pm_npy_type_name(const pm_npy *a)
{
    const dtype_row *r = dtype_find((char)a->kind, a->item_bytes);
    return r ? r->name : "unknown";
}

static pm_status parse_descr(const char *name, const char *d, pm_npy *a, pm_error *err)
{
    size_t n = strlen(d);
    if (n < 2 || strchr("<>|=", d[0]) == NULL)
        return pm_error_set(err, PM_ERR_UNSUPPORTED, "%s: dtype '%s' is not supported (plain numeric dtypes only)", name,
                            d);
    char code = d[1];
    if (code == 'O') return pm_error_set(err, PM_ERR_UNSUPPORTED, "%s: object arrays are not supported", name);
    char *end = NULL;
    long bytes = n > 2 ? strtol(d + 2, &end, 10) : -1;
    const dtype_row *row = (bytes > 0 && end && *end == 0) ? dtype_find(code, (uint32_t)bytes) : NULL;
    if (!row)
        return pm_error_set(err, PM_ERR_UNSUPPORTED,
                            "%s: dtype '%s' is not supported (floatN, intN, uintN or bool only)", name, d);
    if (d[0] == '>' && bytes > 1)
        return pm_error_set(err, PM_ERR_UNSUPPORTED, "%s: big-endian data ('%s') is not supported; save with '<%s'",
                            name, d, d + 1);
    if (d[0] == '|' && bytes > 1)
        return pm_error_set(err, PM_ERR_FORMAT, "%s: dtype '%s' has no byte order for a %ld-byte type", name, d, bytes);
    /* '=' is native order; this tool reads data as little-endian, so a
     * big-endian host would have to reject it. */
    const uint16_t probe = 1;
    if (d[0] == '=' && bytes > 1 && *(const uint8_t *)&probe != 1)
        return pm_error_set(err, PM_ERR_UNSUPPORTED, "%s: native-order data from a big-endian host", name);
    a->kind = (pm_npy_kind)code;
    a->item_bytes = (uint32_t)bytes;
    snprintf(a->descr, sizeof a->descr, "%s", d);
    return PM_OK;
}

static pm_status parse_header(hdr_cursor *c, pm_npy *a, bool *fortran)
{
    char key[32], descr[32] = {0};
    bool have_descr = false, have_fortran = false, have_shape = false;
    if (!hdr_eat(c, '{')) return hdr_fail(c, "expected '{' starting the header dict");
    for (;;) {
        if (hdr_eat(c, '}')) break;
        pm_status st = hdr_string(c, key, sizeof key);
        if (st != PM_OK) return st;
        if (!hdr_eat(c, ':')) return hdr_fail(c, "expected ':' after a key");
        if (strcmp(key, "descr") == 0 && !have_descr) {
            hdr_ws(c);
            if (c->pos < c->len && c->s[c->pos] == '[')
                return pm_error_set(c->err, PM_ERR_UNSUPPORTED, "%s: structured dtypes are not supported", c->name);
            st = hdr_string(c, descr, sizeof descr);
            have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0 && !have_fortran) {
            st = hdr_bool(c, fortran);
            have_fortran = true;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            st = hdr_shape(c, a);
            have_shape = true;
        } else {
            return hdr_fail(c, "unexpected or repeated key in the header dict");
        }
        if (st != PM_OK) return st;
        if (hdr_eat(c, ',')) continue;
        if (hdr_eat(c, '}')) break;
        return hdr_fail(c, "expected ',' or '}' in the header dict");
    }
    hdr_ws(c);
    if (c->pos != c->len) return hdr_fail(c, "unexpected text after the header dict");
    if (!have_descr || !have_fortran || !have_shape)
        return pm_error_set(c->err, PM_ERR_FORMAT, "%s: header lacks '%s'", c->name,
                            !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
    return parse_descr(c->name, descr, a, c->err);
}

static uint32_t rd_le(const uint8_t *p, unsigned n)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < n; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}

pm_status pm_npy_parse(const char *name, const uint8_t *bytes, size_t len, pm_npy *out, pm_error *err)
{
    memset(out, 0, sizeof *out);
    if (len < 10 || memcmp(bytes, npy_magic, sizeof npy_magic) != 0)
        return pm_error_set(err, PM_ERR_FORMAT, "%s: not a NumPy .npy file (bad magic)", name);
    unsigned major = bytes[6], minor = bytes[7];
    if (major < 1 || major > 3 || minor != 0)
        return pm_error_set(err, PM_ERR_UNSUPPORTED, "%s: .npy format version %u.%u is not supported (1.0-3.0)", name,
                            major, minor);
    size_t len_bytes = major == 1 ? 2 : 4;
    if (len < 8 + len_bytes) return pm_error_set(err, PM_ERR_FORMAT, "%s: truncated in the header length", name);
    size_t hlen = rd_le(bytes + 8, (unsigned)len_bytes);
    size_t hstart = 8 + len_bytes;
    if (hlen > len - hstart)
        return pm_error_set(err, PM_ERR_FORMAT, "%s: header length %zu runs past the end of the file (%zu bytes)", name,
                            hlen, len);
    hdr_cursor c = {name, (const char *)bytes + hstart, hlen, 0, hstart, err};
    bool fortran = false;
    pm_status st = parse_header(&c, out, &fortran);
    if (st != PM_OK) return st;
    if (fortran)
        return pm_error_set(err, PM_ERR_UNSUPPORTED,
                            "%s: fortran_order True is not supported; save a C-order array (np.ascontiguousarray)", name);
    uint64_t count = 1;
    for (uint32_t i = 0; i < out->rank; i++) {
        if (out->shape[i] && count > UINT64_MAX / out->shape[i])
            return pm_error_set(err, PM_ERR_FORMAT, "%s: shape overflows", name);
        count *= out->shape[i];
    }
    size_t have = len - hstart - hlen;
    if (count > (uint64_t)SIZE_MAX / out->item_bytes)
        return pm_error_set(err, PM_ERR_FORMAT, "%s: shape needs more bytes than this host can address", name);
    size_t need = (size_t)count * out->item_bytes;
    if (have < need)
        return pm_error_set(err, PM_ERR_FORMAT, "%s: truncated: the header's shape needs %zu data bytes, the file has %zu",
                            name, need, have);
    if (have > need)
        return pm_error_set(err, PM_ERR_FORMAT,
                            "%s: %zu bytes after the data: the header's shape (%zu bytes) does not match the file", name,
                            have - need, need);
    out->count = count;
    out->data = malloc(need ? need : 1);
    if (!out->data) return pm_error_set(err, PM_ERR_NOMEM, "%s: out of memory", name);
    if (need) memcpy(out->data, bytes + hstart + hlen, need);
    return PM_OK;
}

pm_status pm_npy_load(const char *path, pm_npy *out, pm_error *err)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    memset(out, 0, sizeof *out);
    pm_status st = pm_read_file(path, &bytes, &len, err);
    if (st != PM_OK) return st;
    st = pm_npy_parse(path, bytes, len, out, err);
    free(bytes);
    return st;
}

pm_status pm_npy_build(const char *descr, const uint64_t *shape, uint32_t rank, const void *data, size_t data_bytes,
                       uint8_t **bytes, size_t *len, pm_error *err)
{
    char dict[1024];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (uint32_t i = 0; i < rank && n > 0 && (size_t)n < sizeof dict; i++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%s%" PRIu64, i ? ", " : "", shape[i]);
    if (n > 0 && (size_t)n < sizeof dict)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%s), }", rank == 1 ? "," : "");
    if (n <= 0 || (size_t)n >= sizeof dict - 64) return pm_error_set(err, PM_ERR_INVALID, "npy: header too long");
    /* Version 1.0: 10 bytes of preamble, then the dict padded with spaces and
     * ending in '\n' so the data starts 64-byte aligned. */
    size_t hlen = (size_t)n + 1;
    size_t total_hdr = (10 + hlen + 63) / 64 * 64;
    hlen = total_hdr - 10;
    *len = total_hdr + data_bytes;
    *bytes = malloc(*len ? *len : 1);
    if (!*bytes) return pm_error_set(err, PM_ERR_NOMEM, "npy: out of memory");
    uint8_t *p = *bytes;
    memcpy(p, npy_magic, 6);
    p[6] = 1;
    p[7] = 0;
    p[8] = (uint8_t)(hlen & 0xff);
    p[9] = (uint8_t)(hlen >> 8);
    memcpy(p + 10, dict, (size_t)n);
    memset(p + 10 + n, ' ', hlen - (size_t)n - 1);
    p[total_hdr - 1] = '\n';
    if (data_bytes) memcpy(p + total_hdr, data, data_bytes);
    return PM_OK;
}

static uint64_t rd_le64(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

double pm_npy_get_f64(const pm_npy *a, uint64_t i)
{
    const uint8_t *p = a->data + i * a->item_bytes;
    uint64_t raw = rd_le64(p, a->item_bytes);
    switch (a->kind) {
    case PM_NPY_FLOAT:
        if (a->item_bytes == 2) return pm_f16_to_f32((uint16_t)raw);
        if (a->item_bytes == 4) return pm_f32_from_bits((uint32_t)raw);
        {
            double d;
            memcpy(&d, &raw, sizeof d);
            return d;
        }
    case PM_NPY_INT: {
        bool ok;
        return (double)pm_npy_get_i64(a, i, &ok);
    }
    default: return (double)raw;
    }
}

int64_t pm_npy_get_i64(const pm_npy *a, uint64_t i, bool *in_range)
{
    const uint8_t *p = a->data + i * a->item_bytes;
    uint64_t raw = rd_le64(p, a->item_bytes);
    *in_range = true;
    if (a->kind == PM_NPY_INT) {
        unsigned shift = 64 - 8 * a->item_bytes;
        /* sign-extend by shifting the value to the top and back */
        return (int64_t)(raw << shift) >> shift;
    }
    if (a->kind == PM_NPY_UINT || a->kind == PM_NPY_BOOL) {
        if (raw > INT64_MAX) *in_range = false;
        return (int64_t)raw;
    }
    double d = pm_npy_get_f64(a, i);
    if (!(d >= -9.2e18 && d <= 9.2e18)) *in_range = false;
    return *in_range ? (int64_t)d : 0;
}
