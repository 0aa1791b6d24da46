/* Numerics layer internals: the element conversions as static inline bit
 * manipulation, so the array encoders (format.c, blocks.c, gguf.c, kquants.c) inline them
 * on the hot path; scalar.c wraps them as the public pm_f32_to_* functions.
 * Every rule here is documented per format in docs/numerics.md. */
#ifndef POLYMORPH_NUMERICS_INTERNAL_H
#define POLYMORPH_NUMERICS_INTERNAL_H

#include "polymorph/numerics.h"

#include <stdint.h>
#include <string.h>

#define PM_F32_SIGN 0x80000000u
#define PM_F32_ABS 0x7fffffffu
#define PM_F32_INF 0x7f800000u
#define PM_F32_QNAN 0x7fc00000u

/* Shift v right by s (1..31) with round-to-nearest, ties to even. */
static inline uint32_t pm_num_rne_shift(uint32_t v, int s)
{
    /* Adding half - 1, plus 1 more when the kept LSB is odd, carries exactly
     * when the dropped bits are above half or at half with an odd LSB.
     * Callers keep v < 2^31, so the sum cannot wrap. */
    return (v + ((1u << (s - 1)) - 1u) + ((v >> s) & 1u)) >> s;
}

/* Round a finite fp32 magnitude (bits without sign) to a small float with
 * mbits mantissa bits and exponent bias `bias`, RNE, subnormals included.
 * The result may lie past the format's largest finite code: overflow policy
 * belongs to the caller. Carries out of the mantissa land in the exponent,
 * which is exactly the next binade, so one integer add does the rounding. */
static inline uint32_t pm_num_round_minifloat(uint32_t mag, int mbits, int bias)
{
    int exp_field = (int)(mag >> 23);
    uint32_t sig = mag & 0x7fffffu;
    int unbiased = exp_field ? exp_field - 127 : -126;
    int emin = 1 - bias;
    int shift = 23 - mbits;
    if (exp_field)
        sig |= 0x800000u;
    if (sig == 0)
        return 0;
    if (unbiased >= emin) {
        uint32_t t = ((uint32_t)(unbiased + bias) << 23) | (sig & 0x7fffffu);
        return pm_num_rne_shift(t, shift);
    }
    /* Target subnormal: sig < 2^24, so a shift of 25 or more is below half an ulp. */
    shift += emin - unbiased;
    if (shift >= 25)
        return 0;
    return pm_num_rne_shift(sig, shift);
}

/* Decode a finite small-float magnitude code back to fp32 bits (exact). */
static inline uint32_t pm_num_minifloat_bits(uint32_t code, int mbits, int bias)
{
    uint32_t e = code >> mbits;
    uint32_t m = code & ((1u << mbits) - 1u);
    if (e == 0) {
        /* m * 2^(1 - bias - mbits): an exact product of small powers of two */
        float unit = pm_f32_from_bits((uint32_t)(127 + 1 - bias - mbits) << 23);
        return pm_f32_bits((float)m * unit);
    }
    return ((e - (uint32_t)bias + 127u) << 23) | (m << (23 - mbits));
}

/* ---- bf16: matches ml_dtypes.bfloat16 (NaN -> sign | 0x7fc0) ---- */
static inline uint16_t pm_num_f32_to_bf16(float x)
{
    uint32_t u = pm_f32_bits(x);
    if ((u & PM_F32_ABS) > PM_F32_INF)
        return (uint16_t)(((u >> 16) & 0x8000u) | 0x7fc0u);
    /* RNE on the low 16 bits; the carry rolls finite maxima into inf (IEEE). */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static inline float pm_num_bf16_to_f32(uint16_t h)
{
    return pm_f32_from_bits((uint32_t)h << 16);
}

/* ---- f16 (IEEE binary16): matches numpy.float16 for all non-signalling input ---- */
static inline uint16_t pm_num_f32_to_f16(float x)
{
    uint32_t u = pm_f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t mag = u & PM_F32_ABS;
    if (mag > PM_F32_INF) /* NaN: keep the top payload bits, force quiet */
        return (uint16_t)(sign | 0x7e00u | ((mag & 0x7fffffu) >> 13));
    if (mag == PM_F32_INF)
        return (uint16_t)(sign | 0x7c00u);
    uint32_t code = pm_num_round_minifloat(mag, 10, 15);
    if (code > 0x7c00u)
        code = 0x7c00u;
    return (uint16_t)(sign | code);
}
static inline float pm_num_f16_to_f32(uint16_t h)
{
    uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    uint32_t mag = h & 0x7fffu;
    if (mag >= 0x7c00u) /* inf or NaN: payload widened as is */
        return pm_f32_from_bits(sign | PM_F32_INF | ((mag & 0x3ffu) << 13));
    return pm_f32_from_bits(sign | pm_num_minifloat_bits(mag, 10, 15));
}

/* ---- OCP fp8 E4M3 "fn": no inf; overflow, inf and NaN -> NaN (sign kept), as ml_dtypes ---- */
static inline uint8_t pm_num_f32_to_e4m3(float x)
{
    uint32_t u = pm_f32_bits(x);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
    uint32_t mag = u & PM_F32_ABS;
    if (mag >= PM_F32_INF)
        return (uint8_t)(sign | 0x7fu);
    uint32_t code = pm_num_round_minifloat(mag, 3, 7);
    if (code > 0x7fu)
        code = 0x7fu;
    return (uint8_t)(sign | code);
}
/* Saturating variant for scales and MX elements: |x| > 448 -> +-448. */
static inline uint8_t pm_num_f32_to_e4m3_sat(float x)
{
    uint32_t u = pm_f32_bits(x);
    if ((u & PM_F32_ABS) > 0x43e00000u && (u & PM_F32_ABS) <= PM_F32_INF)
        return (uint8_t)(((u >> 24) & 0x80u) | 0x7eu);
    return pm_num_f32_to_e4m3(x);
}
static inline float pm_num_e4m3_to_f32(uint8_t c)
{
    uint32_t sign = ((uint32_t)c & 0x80u) << 24;
    if ((c & 0x7fu) == 0x7fu)
        return pm_f32_from_bits(sign | PM_F32_QNAN);
    return pm_f32_from_bits(sign | pm_num_minifloat_bits(c & 0x7fu, 3, 7));
}

/* ---- OCP fp8 E5M2: IEEE-like, overflow -> inf, NaN -> sign | 0x7e, as ml_dtypes ---- */
static inline uint8_t pm_num_f32_to_e5m2(float x)
{
    uint32_t u = pm_f32_bits(x);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
    uint32_t mag = u & PM_F32_ABS;
    if (mag > PM_F32_INF)
        return (uint8_t)(sign | 0x7eu);
    if (mag == PM_F32_INF)
        return (uint8_t)(sign | 0x7cu);
    uint32_t code = pm_num_round_minifloat(mag, 2, 15);
    if (code > 0x7cu)
        code = 0x7cu;
    return (uint8_t)(sign | code);
}
static inline float pm_num_e5m2_to_f32(uint8_t c)
{
    uint32_t sign = ((uint32_t)c & 0x80u) << 24;
    uint32_t mag = c & 0x7fu;
    if (mag == 0x7cu)
        return pm_f32_from_bits(sign | PM_F32_INF);
    if (mag > 0x7cu) /* every NaN code decodes to the canonical quiet NaN (ml_dtypes) */
        return pm_f32_from_bits(sign | PM_F32_QNAN);
    return pm_f32_from_bits(sign | pm_num_minifloat_bits(mag, 2, 15));
}

/* ---- OCP fp4 E2M1: no inf/NaN; overflow and inf saturate to +-6; NaN -> zero
 * with the sign bit flipped (+NaN -> 0x8, -NaN -> 0x0), exactly what ml_dtypes
 * float4_e2m1fn does. ---- */
static inline uint8_t pm_num_f32_to_e2m1(float x)
{
    uint32_t u = pm_f32_bits(x);
    uint8_t sign = (uint8_t)((u >> 28) & 0x8u);
    uint32_t mag = u & PM_F32_ABS;
    if (mag > PM_F32_INF)
        return (uint8_t)(sign ^ 0x8u);
    if (mag == PM_F32_INF)
        return (uint8_t)(sign | 0x7u);
    uint32_t code = pm_num_round_minifloat(mag, 1, 1);
    if (code > 0x7u)
        code = 0x7u;
    return (uint8_t)(sign | code);
}
static inline float pm_num_e2m1_to_f32(uint8_t c)
{
    uint32_t sign = ((uint32_t)c & 0x8u) << 28;
    return pm_f32_from_bits(sign | pm_num_minifloat_bits(c & 0x7u, 1, 1));
}

/* ---- integers: RNE, saturating, NaN -> 0 ---- */
/* Round |x| < 2^22 to the nearest integer, ties to even: adding 1.5*2^23
 * leaves no fraction bits, so the FPU's own RNE does the work (no libm). */
static inline float pm_num_rint_small(float x)
{
    const float magic = 12582912.0f;
    return (x + magic) - magic;
}
static inline int pm_num_f32_to_int_sat(float x, int lo, int hi)
{
    if (x != x)
        return 0;
    if (x >= (float)hi)
        return hi;
    if (x <= (float)lo)
        return lo;
    return (int)pm_num_rint_small(x);
}

/* ---- E8M0 scale codes ---- */
/* 2^e as fp32 for e in [-127, 127] (2^-127 is an fp32 subnormal, still exact). */
static inline float pm_num_pow2(int e)
{
    if (e >= -126)
        return pm_f32_from_bits((uint32_t)(e + 127) << 23);
    return pm_f32_from_bits(0x00400000u >> (-127 - e));
}
static inline float pm_num_e8m0_to_f32(uint8_t c)
{
    if (c == 0xffu)
        return pm_f32_from_bits(PM_F32_QNAN);
    return pm_num_pow2((int)c - 127);
}

/* ---- packing helpers: two 4-bit codes per byte, element 2i in the low nibble ---- */
static inline uint8_t pm_num_nibble(const uint8_t *packed, size_t i)
{
    return (uint8_t)((packed[i >> 1] >> ((i & 1u) * 4u)) & 0xfu);
}
static inline int pm_num_int4_value(uint8_t nibble)
{
    return (int)(nibble & 0x7u) - (int)(nibble & 0x8u);
}
static inline void pm_num_store_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline uint16_t pm_num_load_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline void pm_num_store_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t pm_num_load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Block codecs (blocks.c, gguf.c). Each handles n elements, n already
 * validated as a whole number of blocks; dst/src are the packed buffer
 * (including the tensor header for NVFP4/IF4). */
void pm_num_encode_mxfp4(const float *src, size_t n, uint8_t *dst);
void pm_num_decode_mxfp4(const uint8_t *src, size_t n, float *dst);
void pm_num_encode_mxfp8(const float *src, size_t n, uint8_t *dst);
void pm_num_decode_mxfp8(const uint8_t *src, size_t n, float *dst);
void pm_num_encode_mxint8(const float *src, size_t n, uint8_t *dst);
void pm_num_decode_mxint8(const uint8_t *src, size_t n, float *dst);
void pm_num_encode_nvfp4(const float *src, size_t n, uint8_t *dst);
void pm_num_decode_nvfp4(const uint8_t *src, size_t n, float *dst);
void pm_num_encode_if4(const float *src, size_t n, uint8_t *dst);
void pm_num_decode_if4(const uint8_t *src, size_t n, float *dst);
void pm_num_encode_int4b(const float *src, size_t n, uint8_t *dst);
void pm_num_decode_int4b(const uint8_t *src, size_t n, float *dst);
void pm_num_encode_q4_0(const float *src, size_t n, uint8_t *dst);
void pm_num_decode_q4_0(const uint8_t *src, size_t n, float *dst);
void pm_num_encode_q4_1(const float *src, size_t n, uint8_t *dst);
void pm_num_decode_q4_1(const uint8_t *src, size_t n, float *dst);
void pm_num_encode_q8_0(const float *src, size_t n, uint8_t *dst);
void pm_num_decode_q8_0(const uint8_t *src, size_t n, float *dst);
void pm_num_encode_q4_k(const float *src, size_t n, uint8_t *dst); /* kquants.c */
void pm_num_decode_q4_k(const uint8_t *src, size_t n, float *dst);
void pm_num_encode_q6_k(const float *src, size_t n, uint8_t *dst);
void pm_num_decode_q6_k(const uint8_t *src, size_t n, float *dst);

#endif
