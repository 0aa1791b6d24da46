/* Numerics layer: the format table (names, sizes, codecs) and the array
 * entry points pm_format_encode/decode that the quantiser, the model loader
 * and the simulator call. One row per pm_format; the element formats' array
 * loops live here, the block formats' in blocks.c, gguf.c and kquants.c. */
#include "numerics_internal.h"

#include <string.h>

#include <ctype.h>
#include <stdio.h>

typedef void (*encode_fn)(const float *src, size_t n, uint8_t *dst);
typedef void (*decode_fn)(const uint8_t *src, size_t n, float *dst);

/* ---- element formats: plain loops over the inline scalar conversions ---- */

/* fp32 storage is the host's own float on a little-endian host: one memcpy
 * (the simulator's f32 vector ops spend their time here). */
static void enc_f32(const float *s, size_t n, uint8_t *d)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(d, s, n * sizeof *s);
#else
    for (size_t i = 0; i < n; i++)
        pm_num_store_le32(d + 4 * i, pm_f32_bits(s[i]));
#endif
}
static void dec_f32(const uint8_t *s, size_t n, float *d)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(d, s, n * sizeof *d);
#else
    for (size_t i = 0; i < n; i++)
        d[i] = pm_f32_from_bits(pm_num_load_le32(s + 4 * i));
#endif
}
static void enc_bf16(const float *s, size_t n, uint8_t *d)
{
    for (size_t i = 0; i < n; i++)
        pm_num_store_le16(d + 2 * i, pm_num_f32_to_bf16(s[i]));
}
static void dec_bf16(const uint8_t *s, size_t n, float *d)
{
    for (size_t i = 0; i < n; i++)
        d[i] = pm_num_bf16_to_f32(pm_num_load_le16(s + 2 * i));
}
static void enc_f16(const float *s, size_t n, uint8_t *d)
{
    for (size_t i = 0; i < n; i++)
        pm_num_store_le16(d + 2 * i, pm_num_f32_to_f16(s[i]));
}
static void dec_f16(const uint8_t *s, size_t n, float *d)
{
    for (size_t i = 0; i < n; i++)
        d[i] = pm_num_f16_to_f32(pm_num_load_le16(s + 2 * i));
}
static void enc_e4m3(const float *s, size_t n, uint8_t *d)
{
    for (size_t i = 0; i < n; i++)
        d[i] = pm_num_f32_to_e4m3(s[i]);
}
static void dec_e4m3(const uint8_t *s, size_t n, float *d)
{
    for (size_t i = 0; i < n; i++)
        d[i] = pm_num_e4m3_to_f32(s[i]);
}
static void enc_e5m2(const float *s, size_t n, uint8_t *d)
{
    for (size_t i = 0; i < n; i++)
        d[i] = pm_num_f32_to_e5m2(s[i]);
}
static void dec_e5m2(const uint8_t *s, size_t n, float *d)
{
    for (size_t i = 0; i < n; i++)
        d[i] = pm_num_e5m2_to_f32(s[i]);
}
static void enc_e2m1(const float *s, size_t n, uint8_t *d)
{
    for (size_t i = 0; i < n; i += 2)
        d[i / 2] = (uint8_t)(pm_num_f32_to_e2m1(s[i]) | (pm_num_f32_to_e2m1(s[i + 1]) << 4));
}
static void dec_e2m1(const uint8_t *s, size_t n, float *d)
{
    for (size_t i = 0; i < n; i++)
        d[i] = pm_num_e2m1_to_f32(pm_num_nibble(s, i));
}
static void enc_int8(const float *s, size_t n, uint8_t *d)
{
    for (size_t i = 0; i < n; i++)
        d[i] = (uint8_t)(int8_t)pm_num_f32_to_int_sat(s[i], -128, 127);
}
static void dec_int8(const uint8_t *s, size_t n, float *d)
{
    for (size_t i = 0; i < n; i++)
        d[i] = (float)(int8_t)s[i];
}
static void enc_int4(const float *s, size_t n, uint8_t *d)
{
    for (size_t i = 0; i < n; i += 2) {
        int lo = pm_num_f32_to_int_sat(s[i], -8, 7), hi = pm_num_f32_to_int_sat(s[i + 1], -8, 7);
        d[i / 2] = (uint8_t)((lo & 0xf) | ((hi & 0xf) << 4));
    }
}
static void dec_int4(const uint8_t *s, size_t n, float *d)
{
    for (size_t i = 0; i < n; i++)
        d[i] = (float)pm_num_int4_value(pm_num_nibble(s, i));
}

/* ---- the table: order follows enum pm_format ---- */

typedef struct format_row {
    pm_format_info info;
    encode_fn encode;
    decode_fn decode;
} format_row;

#define ROW(fmt, nm, desc, be, bb, hb, bits, isf, isb, enc, dec) \
    [fmt] = {{fmt, nm, desc, be, bb, hb, bits, isf, isb}, enc, dec}

static const format_row format_rows[PM_FMT_COUNT] = {
    ROW(PM_FMT_F32, "f32", "IEEE binary32", 1, 4, 0, 32, true, false, enc_f32, dec_f32),
    ROW(PM_FMT_BF16, "bf16", "bfloat16, RNE from fp32", 1, 2, 0, 16, true, false, enc_bf16, dec_bf16),
    ROW(PM_FMT_F16, "f16", "IEEE binary16, RNE from fp32", 1, 2, 0, 16, true, false, enc_f16, dec_f16),
    ROW(PM_FMT_E4M3, "e4m3", "OCP fp8 E4M3fn (max 448, no inf)", 1, 1, 0, 8, true, false, enc_e4m3, dec_e4m3),
    ROW(PM_FMT_E5M2, "e5m2", "OCP fp8 E5M2 (max 57344, inf/NaN)", 1, 1, 0, 8, true, false, enc_e5m2, dec_e5m2),
    ROW(PM_FMT_E2M1, "e2m1", "OCP fp4 E2M1 (max 6), 2 per byte", 1, 1, 0, 4, true, false, enc_e2m1, dec_e2m1),
    ROW(PM_FMT_INT8, "int8", "signed 8-bit integer, RNE, saturating", 1, 1, 0, 8, false, false, enc_int8, dec_int8),
    ROW(PM_FMT_INT4, "int4", "signed 4-bit integer [-8,7], RNE, saturating, 2 per byte", 1, 1, 0, 4, false,
        false, enc_int4, dec_int4),
    ROW(PM_FMT_MXFP4, "mxfp4", "OCP MX: 32 x E2M1 + E8M0 scale", 32, 17, 0, 4, true, true,
        pm_num_encode_mxfp4, pm_num_decode_mxfp4),
    ROW(PM_FMT_MXFP8, "mxfp8", "OCP MX: 32 x E4M3 + E8M0 scale", 32, 33, 0, 8, true, true,
        pm_num_encode_mxfp8, pm_num_decode_mxfp8),
    ROW(PM_FMT_MXINT8, "mxint8", "OCP MX: 32 x int8 (2^-6 units) + E8M0 scale", 32, 33, 0, 8, false, true,
        pm_num_encode_mxint8, pm_num_decode_mxint8),
    ROW(PM_FMT_NVFP4, "nvfp4", "16 x E2M1 + E4M3 block scale + fp32 tensor scale", 16, 9, 4, 4, true, true,
        pm_num_encode_nvfp4, pm_num_decode_nvfp4),
    ROW(PM_FMT_IF4, "if4", "16 x (E2M1 or INT4, per block) + E4M3 scale (sign = INT4) + fp32 tensor scale",
        16, 9, 4, 4, false, true, pm_num_encode_if4, pm_num_decode_if4),
    ROW(PM_FMT_INT4B, "int4b", "32 x int4 + bf16 scale", 32, 18, 0, 4, false, true, pm_num_encode_int4b,
        pm_num_decode_int4b),
    ROW(PM_FMT_Q4_0, "q4_0", "GGUF Q4_0: 32 x 4-bit + f16 d", 32, 18, 0, 4, false, true, pm_num_encode_q4_0,
        pm_num_decode_q4_0),
    ROW(PM_FMT_Q4_1, "q4_1", "GGUF Q4_1: 32 x 4-bit + f16 d, m", 32, 20, 0, 4, false, true,
        pm_num_encode_q4_1, pm_num_decode_q4_1),
    ROW(PM_FMT_Q8_0, "q8_0", "GGUF Q8_0: 32 x int8 + f16 d", 32, 34, 0, 8, false, true, pm_num_encode_q8_0,
        pm_num_decode_q8_0),
    ROW(PM_FMT_Q4_K, "q4_k", "GGUF Q4_K: 256 x 4-bit + f16 d, dmin + 8 x 6-bit scale, min", 256, 144, 0, 4, false,
        true, pm_num_encode_q4_k, pm_num_decode_q4_k),
    ROW(PM_FMT_Q6_K, "q6_k", "GGUF Q6_K: 256 x 6-bit + 16 x int8 scale + f16 d", 256, 210, 0, 6, false, true,
        pm_num_encode_q6_k, pm_num_decode_q6_k),
};

const pm_format_info *pm_format_get(pm_format format)
{
    if ((unsigned)format >= PM_FMT_COUNT)
        return NULL;
    return &format_rows[format].info;
}

bool pm_format_from_name(const char *name, pm_format *out)
{
    if (!name)
        return false;
    for (int f = 0; f < PM_FMT_COUNT; f++) {
        const char *a = name, *b = format_rows[f].info.name;
        while (*a && *b && tolower((unsigned char)*a) == *b) {
            a++;
            b++;
        }
        if (*a == '\0' && *b == '\0') {
            if (out)
                *out = (pm_format)f;
            return true;
        }
    }
    return false;
}

/* Why n is unusable for the format, or NULL when it is fine. */
static const char *size_problem(const pm_format_info *fi, size_t n, char *buf, size_t len)
{
    if (fi->is_block && n % fi->block_elems != 0) {
        snprintf(buf, len, "n=%zu is not a whole number of %u-element blocks", n, fi->block_elems);
        return buf;
    }
    if (!fi->is_block && fi->elem_bits == 4 && n % 2 != 0) {
        snprintf(buf, len, "n=%zu is odd; %s packs two 4-bit codes per byte", n, fi->name);
        return buf;
    }
    return NULL;
}

bool pm_format_bytes(pm_format format, size_t n, size_t *bytes)
{
    const pm_format_info *fi = pm_format_get(format);
    char why[128];
    if (!fi || size_problem(fi, n, why, sizeof why))
        return false;
    size_t units = fi->is_block ? n / fi->block_elems : (fi->elem_bits == 4 ? n / 2 : n);
    if (units > (SIZE_MAX - fi->header_bytes) / fi->block_bytes)
        return false;
    if (bytes)
        *bytes = fi->header_bytes + units * fi->block_bytes;
    return true;
}

/* Shared argument checks for encode/decode; names the call and the problem. */
static pm_status check_call(const char *what, bool decoding, pm_format format, const void *src, size_t n,
                            const void *dst, pm_error *err)
{
    const pm_format_info *fi = pm_format_get(format);
    char why[128];
    size_t bytes;
    if (!fi)
        return pm_error_set(err, PM_ERR_INVALID, "%s: format %d is not a pm_format (0..%d)", what, (int)format,
                            PM_FMT_COUNT - 1);
    if (size_problem(fi, n, why, sizeof why))
        return pm_error_set(err, PM_ERR_INVALID, "%s(%s): %s", what, fi->name, why);
    if (!pm_format_bytes(format, n, &bytes))
        return pm_error_set(err, PM_ERR_INVALID, "%s(%s): n=%zu overflows the byte count", what, fi->name, n);
    /* the packed side holds `bytes` (n == 0 still has the tensor header), the fp32 side n */
    size_t src_len = decoding ? bytes : n, dst_len = decoding ? n : bytes;
    if ((src_len > 0 && !src) || (dst_len > 0 && !dst))
        return pm_error_set(err, PM_ERR_INVALID, "%s(%s): NULL %s buffer for n=%zu", what, fi->name,
                            (src_len > 0 && !src) ? "source" : "destination", n);
    return PM_OK;
}

pm_status pm_format_encode(pm_format format, const float *src, size_t n, void *dst, pm_error *err)
{
    pm_status st = check_call("pm_format_encode", false, format, src, n, dst, err);
    if (st != PM_OK)
        return st;
    format_rows[format].encode(src, n, (uint8_t *)dst);
    return PM_OK;
}

pm_status pm_format_decode(pm_format format, const void *src, size_t n, float *dst, pm_error *err)
{
    pm_status st = check_call("pm_format_decode", true, format, src, n, dst, err);
    if (st != PM_OK)
        return st;
    if (n == 0)
        return PM_OK;
    format_rows[format].decode((const uint8_t *)src, n, dst);
    return PM_OK;
}
