/* Numerics layer: block formats with a stored scale: OCP MX (MXFP4, MXFP8,
 * MXINT8), NVFP4, IF4 and INT4B. Byte layouts, scale rules, rounding order
 * and the NaN/Inf policy are spelled out in docs/numerics.md; the oracle
 * tests re-derive every byte in numpy from that description. */
#include "numerics_internal.h"

/* ===================================================================== */
/* Shared helpers                                                        */
/* ===================================================================== */

/* Largest finite magnitude (as fp32 bits) in x[0..n); *nonfinite is set when
 * any element is inf or NaN. Bits of non-negative floats order like values. */
static uint32_t amax_bits(const float *x, size_t n, bool *nonfinite)
{
    uint32_t amax = 0;
    bool bad = false;
    for (size_t i = 0; i < n; i++) {
        uint32_t mag = pm_f32_bits(x[i]) & PM_F32_ABS;
        if (mag >= PM_F32_INF)
            bad = true;
        else if (mag > amax)
            amax = mag;
    }
    if (nonfinite)
        *nonfinite = bad;
    return amax;
}

/* floor(log2(v)) of a finite non-zero fp32 magnitude, from its bits. */
static int floor_log2_bits(uint32_t mag)
{
    uint32_t e = mag >> 23;
    if (e)
        return (int)e - 127;
    /* subnormal: value = mag * 2^-149 */
    int top = 31 - __builtin_clz(mag);
    return top - 149;
}

static void put_nibble(uint8_t *packed, size_t i, uint8_t code)
{
    if (i & 1u)
        packed[i >> 1] = (uint8_t)(packed[i >> 1] | (code << 4));
    else
        packed[i >> 1] = (uint8_t)(code & 0xfu);
}

/* ===================================================================== */
/* OCP MX: [E8M0 scale][32 element codes]                                */
/* ===================================================================== */

enum { MX_BLOCK = 32 };

typedef enum mx_elem { MX_E2M1, MX_E4M3, MX_INT8 } mx_elem;

/* emax_elem of the OCP MX spec v1.0, table 1: exponent of the largest normal. */
static const int mx_emax[] = {[MX_E2M1] = 2, [MX_E4M3] = 8, [MX_INT8] = 0};

/* Shared scale exponent: floor(log2(amax)) - emax_elem, clamped below to the
 * E8M0 minimum -127 (amax == 0 is log2 = -inf, so it clamps to -127 too). It
 * never exceeds 127 for finite fp32 input. */
static int mx_scale_exp(uint32_t amax, mx_elem elem)
{
    if (amax == 0)
        return -127;
    int s = floor_log2_bits(amax) - mx_emax[elem];
    return s < -127 ? -127 : s;
}

static void mx_encode(const float *src, size_t n, uint8_t *dst, mx_elem elem)
{
    size_t code_bytes = elem == MX_E2M1 ? MX_BLOCK / 2 : MX_BLOCK;
    for (size_t b = 0; b < n; b += MX_BLOCK, dst += 1 + code_bytes) {
        const float *x = src + b;
        uint8_t *codes = dst + 1;
        bool nonfinite;
        uint32_t amax = amax_bits(x, MX_BLOCK, &nonfinite);
        if (nonfinite) {
            /* A NaN or Inf makes the whole block NaN: scale NaN, codes zero. */
            dst[0] = 0xffu;
            memset(codes, 0, code_bytes);
            continue;
        }
        int s = mx_scale_exp(amax, elem);
        dst[0] = (uint8_t)(s + 127);
        /* x / 2^s as a product with an exact power of two: exact unless the
         * result is an fp32 subnormal, which every element format rounds to
         * zero anyway, so this is a single rounding of the exact quotient. */
        float inv = pm_num_pow2(-s);
        for (size_t i = 0; i < MX_BLOCK; i++) {
            float v = x[i] * inv;
            switch (elem) {
            case MX_E2M1:
                put_nibble(codes, i, pm_num_f32_to_e2m1(v)); /* saturates at 6 */
                break;
            case MX_E4M3:
                codes[i] = pm_num_f32_to_e4m3_sat(v);
                break;
            case MX_INT8:
                /* 2's complement with 6 fraction bits; symmetric saturation. */
                codes[i] = (uint8_t)(int8_t)pm_num_f32_to_int_sat(v * 64.0f, -127, 127);
                break;
            }
        }
    }
}

static void mx_decode(const uint8_t *src, size_t n, float *dst, mx_elem elem)
{
    size_t code_bytes = elem == MX_E2M1 ? MX_BLOCK / 2 : MX_BLOCK;
    for (size_t b = 0; b < n; b += MX_BLOCK, src += 1 + code_bytes) {
        const uint8_t *codes = src + 1;
        float *y = dst + b;
        if (src[0] == 0xffu) {
            for (size_t i = 0; i < MX_BLOCK; i++)
                y[i] = pm_f32_from_bits(PM_F32_QNAN);
            continue;
        }
        float scale = pm_num_e8m0_to_f32(src[0]);
        for (size_t i = 0; i < MX_BLOCK; i++) {
            float v;
            switch (elem) {
            case MX_E2M1: v = pm_num_e2m1_to_f32(pm_num_nibble(codes, i)); break;
            case MX_E4M3: v = pm_num_e4m3_to_f32(codes[i]); break;
            default: v = (float)(int8_t)codes[i] * 0.015625f; break;
            }
            y[i] = v * scale; /* one IEEE product: exact unless fp32-subnormal */
        }
    }
}

void pm_num_encode_mxfp4(const float *src, size_t n, uint8_t *dst) { mx_encode(src, n, dst, MX_E2M1); }
void pm_num_decode_mxfp4(const uint8_t *src, size_t n, float *dst) { mx_decode(src, n, dst, MX_E2M1); }
void pm_num_encode_mxfp8(const float *src, size_t n, uint8_t *dst) { mx_encode(src, n, dst, MX_E4M3); }
void pm_num_decode_mxfp8(const uint8_t *src, size_t n, float *dst) { mx_decode(src, n, dst, MX_E4M3); }
void pm_num_encode_mxint8(const float *src, size_t n, uint8_t *dst) { mx_encode(src, n, dst, MX_INT8); }
void pm_num_decode_mxint8(const uint8_t *src, size_t n, float *dst) { mx_decode(src, n, dst, MX_INT8); }

/* ===================================================================== */
/* NVFP4 and IF4: [fp32 tensor scale] then per 16: [E4M3 scale][8 bytes] */
/* ===================================================================== */

enum { FP4_BLOCK = 16, FP4_BLOCK_BYTES = 9 };

/* Tensor scale: amax over the finite values / (448 * 6), so the largest block
 * scale lands at E4M3's max 448; 1.0 when that is zero (all-zero tensor or an
 * amax so small the quotient underflows). */
static float tensor_scale(const float *src, size_t n)
{
    float g = pm_f32_from_bits(amax_bits(src, n, NULL)) / 2688.0f;
    return g == 0.0f ? 1.0f : g;
}

/* Quantise one block with element grid `as_int4` (INT4 [-7,7]) or E2M1, block
 * scale from amax/elem_max; writes codes, returns the E4M3 scale code and the
 * squared error of the decoded block against x (summed in double, element
 * order 0..15, so the choice is deterministic). */
static uint8_t fp4_block_encode(const float *x, uint32_t amax, float g, bool as_int4, uint8_t *codes,
                                double *sq_err)
{
    float elem_max = as_int4 ? 7.0f : 6.0f;
    uint8_t scode = pm_num_f32_to_e4m3_sat(pm_f32_from_bits(amax) / elem_max / g);
    float sdec = pm_num_e4m3_to_f32(scode);
    float denom = sdec * g;
    double err = 0.0;
    memset(codes, 0, FP4_BLOCK / 2);
    for (size_t i = 0; i < FP4_BLOCK; i++) {
        uint8_t code = 0;
        float elem = 0.0f;
        if (denom != 0.0f) { /* a zero block scale encodes every element as +0 */
            float v = x[i] / denom;
            if (as_int4) {
                int q = pm_num_f32_to_int_sat(v, -7, 7);
                code = (uint8_t)(q & 0xf);
                elem = (float)q;
            } else {
                code = pm_num_f32_to_e2m1(v);
                elem = pm_num_e2m1_to_f32(code);
            }
        }
        put_nibble(codes, i, code);
        double d = (double)x[i] - (double)((elem * sdec) * g);
        err += d * d;
    }
    *sq_err = err;
    return scode;
}

static void fp4_encode(const float *src, size_t n, uint8_t *dst, bool adaptive)
{
    float g = tensor_scale(src, n);
    pm_num_store_le32(dst, pm_f32_bits(g));
    dst += 4;
    for (size_t b = 0; b < n; b += FP4_BLOCK, dst += FP4_BLOCK_BYTES) {
        const float *x = src + b;
        bool nonfinite;
        uint32_t amax = amax_bits(x, FP4_BLOCK, &nonfinite);
        if (nonfinite) {
            dst[0] = 0x7fu; /* NaN scale: the whole block decodes to NaN */
            memset(dst + 1, 0, FP4_BLOCK / 2);
            continue;
        }
        double err_fp4, err_int4;
        dst[0] = fp4_block_encode(x, amax, g, false, dst + 1, &err_fp4);
        if (!adaptive)
            continue;
        uint8_t int_codes[FP4_BLOCK / 2];
        uint8_t int_scale = fp4_block_encode(x, amax, g, true, int_codes, &err_int4);
        if (err_int4 < err_fp4) { /* ties keep FP4 */
            dst[0] = (uint8_t)(int_scale | 0x80u);
            memcpy(dst + 1, int_codes, sizeof int_codes);
        }
    }
}

static void fp4_decode(const uint8_t *src, size_t n, float *dst, bool adaptive)
{
    float g = pm_f32_from_bits(pm_num_load_le32(src));
    src += 4;
    for (size_t b = 0; b < n; b += FP4_BLOCK, src += FP4_BLOCK_BYTES) {
        float *y = dst + b;
        uint8_t scode = src[0];
        bool as_int4 = adaptive && (scode & 0x80u);
        if (adaptive)
            scode &= 0x7fu; /* IF4: the sign bit is the INT4 flag, not a sign */
        float sdec = pm_num_e4m3_to_f32(scode);
        for (size_t i = 0; i < FP4_BLOCK; i++) {
            uint8_t c = pm_num_nibble(src + 1, i);
            float elem = as_int4 ? (float)pm_num_int4_value(c) : pm_num_e2m1_to_f32(c);
            /* (elem * scale) is exact (at most 5 significant bits); times g rounds once */
            y[i] = (elem * sdec) * g;
        }
    }
}

void pm_num_encode_nvfp4(const float *src, size_t n, uint8_t *dst) { fp4_encode(src, n, dst, false); }
void pm_num_decode_nvfp4(const uint8_t *src, size_t n, float *dst) { fp4_decode(src, n, dst, false); }
void pm_num_encode_if4(const float *src, size_t n, uint8_t *dst) { fp4_encode(src, n, dst, true); }
void pm_num_decode_if4(const uint8_t *src, size_t n, float *dst) { fp4_decode(src, n, dst, true); }

/* ===================================================================== */
/* INT4B: [bf16 scale, little-endian][16 bytes of int4 codes]            */
/* ===================================================================== */

enum { INT4B_BLOCK = 32, INT4B_BLOCK_BYTES = 18 };

void pm_num_encode_int4b(const float *src, size_t n, uint8_t *dst)
{
    for (size_t b = 0; b < n; b += INT4B_BLOCK, dst += INT4B_BLOCK_BYTES) {
        const float *x = src + b;
        uint8_t *codes = dst + 2;
        bool nonfinite;
        uint32_t amax = amax_bits(x, INT4B_BLOCK, &nonfinite);
        memset(codes, 0, INT4B_BLOCK / 2);
        if (nonfinite) {
            pm_num_store_le16(dst, 0x7fc0u); /* NaN scale, codes zero */
            continue;
        }
        uint16_t scale = pm_num_f32_to_bf16(pm_f32_from_bits(amax) / 7.0f);
        pm_num_store_le16(dst, scale);
        float sdec = pm_num_bf16_to_f32(scale);
        if (sdec == 0.0f)
            continue;
        for (size_t i = 0; i < INT4B_BLOCK; i++)
            put_nibble(codes, i, (uint8_t)(pm_num_f32_to_int_sat(x[i] / sdec, -8, 7) & 0xf));
    }
}

void pm_num_decode_int4b(const uint8_t *src, size_t n, float *dst)
{
    for (size_t b = 0; b < n; b += INT4B_BLOCK, src += INT4B_BLOCK_BYTES) {
        float sdec = pm_num_bf16_to_f32(pm_num_load_le16(src));
        for (size_t i = 0; i < INT4B_BLOCK; i++)
            dst[b + i] = (float)pm_num_int4_value(pm_num_nibble(src + 2, i)) * sdec;
    }
}
