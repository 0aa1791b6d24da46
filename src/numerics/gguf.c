/* Numerics layer: GGUF's legacy block formats Q4_0, Q4_1 and Q8_0, byte for
 * byte as ggml lays them out and rounded operation for operation like the
 * gguf package's numpy reference (gguf/quants.py), so imported models decode
 * to the same fp32 values llama.cpp sees. All arithmetic is fp32, in the
 * reference's order; see docs/numerics.md for the degenerate-input choices. */
#include "numerics_internal.h"

enum { QK = 32 };

/* (float -> uint8 after trunc) for the 4-bit paths: the reference truncates a
 * value that is in [0, 16.5] for any finite block; a NaN or out-of-range value
 * (only from inf/NaN input or a subnormal scale) saturates, NaN to 0. */
static uint8_t trunc_clip15(float v)
{
    if (!(v >= 0.0f))
        return 0;
    if (v >= 15.0f)
        return 15;
    return (uint8_t)(int)v;
}

/* ggml's q4 layout: element j in the low nibble of byte j, j+16 in the high. */
static void pack_q4(uint8_t *qs, const uint8_t *q)
{
    for (int j = 0; j < QK / 2; j++)
        qs[j] = (uint8_t)(q[j] | (q[j + QK / 2] << 4));
}

/* Q4_0: [f16 d][16 bytes]; d = (signed value of largest |x|) / -8, x = d*(q-8). */
void pm_num_encode_q4_0(const float *src, size_t n, uint8_t *dst)
{
    for (size_t b = 0; b < n; b += QK, dst += 18) {
        const float *x = src + b;
        /* first index of the largest |x|, like numpy argmax (NaN wins first) */
        int imax = 0;
        float best = x[0] < 0.0f ? -x[0] : x[0];
        for (int i = 1; i < QK && best == best; i++) {
            float a = x[i] < 0.0f ? -x[i] : x[i];
            if (a > best || a != a) {
                best = a;
                imax = i;
            }
        }
        float d = x[imax] / -8.0f;
        float id = d == 0.0f ? 0.0f : 1.0f / d;
        uint8_t q[QK];
        for (int i = 0; i < QK; i++)
            q[i] = trunc_clip15(x[i] * id + 8.5f);
        pm_num_store_le16(dst, pm_num_f32_to_f16(d));
        pack_q4(dst + 2, q);
    }
}

void pm_num_decode_q4_0(const uint8_t *src, size_t n, float *dst)
{
    for (size_t b = 0; b < n; b += QK, src += 18) {
        float d = pm_num_f16_to_f32(pm_num_load_le16(src));
        const uint8_t *qs = src + 2;
        float *lo = dst + b, *hi = dst + b + QK / 2; /* ggml order: low nibbles, then high */
        for (int i = 0; i < QK / 2; i++) { /* straight-line, so the compiler can vectorise it */
            lo[i] = d * (float)((int)(qs[i] & 0xfu) - 8);
            hi[i] = d * (float)((int)(qs[i] >> 4) - 8);
        }
    }
}

/* Q4_1: [f16 d][f16 m][16 bytes]; d = (max - min) / 15, m = min, x = d*q + m. */
void pm_num_encode_q4_1(const float *src, size_t n, uint8_t *dst)
{
    for (size_t b = 0; b < n; b += QK, dst += 20) {
        const float *x = src + b;
        float lo = x[0], hi = x[0];
        for (int i = 1; i < QK; i++) { /* NaN propagates, as np.max/np.min */
            if (x[i] != x[i] || lo != lo) {
                lo = hi = pm_f32_from_bits(PM_F32_QNAN);
                continue;
            }
            if (x[i] < lo)
                lo = x[i];
            if (x[i] > hi)
                hi = x[i];
        }
        float d = (hi - lo) / 15.0f;
        float id = d == 0.0f ? 0.0f : 1.0f / d;
        uint8_t q[QK];
        for (int i = 0; i < QK; i++)
            q[i] = trunc_clip15((x[i] - lo) * id + 0.5f);
        pm_num_store_le16(dst, pm_num_f32_to_f16(d));
        pm_num_store_le16(dst + 2, pm_num_f32_to_f16(lo));
        pack_q4(dst + 4, q);
    }
}

void pm_num_decode_q4_1(const uint8_t *src, size_t n, float *dst)
{
    for (size_t b = 0; b < n; b += QK, src += 20) {
        float d = pm_num_f16_to_f32(pm_num_load_le16(src));
        float m = pm_num_f16_to_f32(pm_num_load_le16(src + 2));
        const uint8_t *qs = src + 4;
        float *lo = dst + b, *hi = dst + b + QK / 2;
        for (int i = 0; i < QK / 2; i++) {
            lo[i] = d * (float)(qs[i] & 0xfu) + m;
            hi[i] = d * (float)(qs[i] >> 4) + m;
        }
    }
}

/* Round half away from zero, as the reference's np_roundf (and C roundf):
 * floor(|v|) + floor(2 * frac). |v| < 2^22 here; NaN -> 0, saturating at 127. */
static int8_t round_away_q8(float v)
{
    if (v != v)
        return 0;
    float a = v < 0.0f ? -v : v;
    if (a >= 127.0f)
        return (int8_t)(v < 0.0f ? -127 : 127);
    float fl = (float)(int)a;
    int r = (int)fl + (2.0f * (a - fl) >= 1.0f ? 1 : 0);
    return (int8_t)(v < 0.0f ? -r : r);
}

/* Q8_0: [f16 d][32 int8]; d = amax / 127, x = q*d. */
void pm_num_encode_q8_0(const float *src, size_t n, uint8_t *dst)
{
    for (size_t b = 0; b < n; b += QK, dst += 34) {
        const float *x = src + b;
        float amax = 0.0f;
        for (int i = 0; i < QK; i++) {
            float a = x[i] < 0.0f ? -x[i] : x[i];
            if (a > amax || a != a)
                amax = a;
            if (amax != amax)
                break;
        }
        float d = amax / 127.0f;
        float id = d == 0.0f ? 0.0f : 1.0f / d;
        pm_num_store_le16(dst, pm_num_f32_to_f16(d));
        for (int i = 0; i < QK; i++)
            dst[2 + i] = (uint8_t)round_away_q8(x[i] * id);
    }
}

void pm_num_decode_q8_0(const uint8_t *src, size_t n, float *dst)
{
    for (size_t b = 0; b < n; b += QK, src += 34) {
        float d = pm_num_f16_to_f32(pm_num_load_le16(src));
        for (int i = 0; i < QK; i++)
            dst[b + (size_t)i] = (float)(int8_t)src[2 + i] * d;
    }
}
