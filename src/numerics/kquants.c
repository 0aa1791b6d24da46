/* Numerics layer: GGUF's K-quant super-block formats Q4_K and Q6_K (256
 * elements), byte for byte as ggml lays them out. Decoding is fp32 in the
 * operation order of the gguf package's numpy reference (gguf/quants.py), so
 * it is bit-identical to gguf.quants.dequantize; the encoders are our own
 * per-sub-block scale searches (the package has none), see docs/numerics.md. */
#include "numerics_internal.h"

enum { QK_K = 256, Q4K_BYTES = 144, Q6K_BYTES = 210, Q4K_SUB = 32, Q6K_SUB = 16 };

/* ---- Q4_K: [f16 d][f16 dmin][12 bytes of 6-bit scales/mins][128 bytes of nibbles] ---- */

/* The 12-byte scale field holds eight 6-bit scales and eight 6-bit mins:
 * bytes 0-3 the low 6 bits of scales 0-3 (top 2 bits: high bits of scales
 * 4-7), bytes 4-7 likewise for the mins, bytes 8-11 the low 4 bits of scale
 * 4+j (low nibble) and min 4+j (high nibble). */
static void q4k_unpack_scales(const uint8_t *s, uint8_t *sc, uint8_t *mn)
{
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 0x3fu;
        mn[j] = s[4 + j] & 0x3fu;
        sc[4 + j] = (uint8_t)((s[8 + j] & 0x0fu) | ((s[j] >> 2) & 0x30u));
        mn[4 + j] = (uint8_t)((s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30u));
    }
}

static void q4k_pack_scales(uint8_t *s, const uint8_t *sc, const uint8_t *mn)
{
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)(sc[j] | ((sc[4 + j] & 0x30u) << 2));
        s[4 + j] = (uint8_t)(mn[j] | ((mn[4 + j] & 0x30u) << 2));
        s[8 + j] = (uint8_t)((sc[4 + j] & 0x0fu) | ((mn[4 + j] & 0x0fu) << 4));
    }
}

/* x = (d*sc[j]) * q - (dmin*m[j]); sub-block 2c is the low nibbles of bytes
 * 32c..32c+31, sub-block 2c+1 their high nibbles. */
void pm_num_decode_q4_k(const uint8_t *src, size_t n, float *dst)
{
    for (size_t b = 0; b < n; b += QK_K, src += Q4K_BYTES) {
        float d = pm_num_f16_to_f32(pm_num_load_le16(src));
        float dmin = pm_num_f16_to_f32(pm_num_load_le16(src + 2));
        uint8_t sc[8], mn[8];
        q4k_unpack_scales(src + 4, sc, mn);
        const uint8_t *qs = src + 16;
        for (int c = 0; c < 4; c++) {
            float d0 = d * (float)sc[2 * c], m0 = dmin * (float)mn[2 * c];
            float d1 = d * (float)sc[2 * c + 1], m1 = dmin * (float)mn[2 * c + 1];
            float *lo = dst + b + 64 * (size_t)c, *hi = lo + 32;
            const uint8_t *q = qs + 32 * c;
            for (int i = 0; i < 32; i++) {
                lo[i] = d0 * (float)(q[i] & 0xfu) - m0;
                hi[i] = d1 * (float)(q[i] >> 4) - m1;
            }
        }
    }
}

/* Squared error of quantising x[0..n) to q in [0, qmax] with x ~ s*q + m. */
static float affine_error(const float *x, int n, float s, float m, int qmax)
{
    float e = 0.0f;
    float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (int i = 0; i < n; i++) {
        int q = pm_num_f32_to_int_sat((x[i] - m) * inv, 0, qmax);
        float r = s * (float)q + m - x[i];
        e += r * r;
    }
    return e;
}

/* One 32-element sub-block: scale s >= 0 and offset m <= 0 with x ~ s*q + m,
 * q in [0, 15]. Starts from the min/max fit and tries nearby step sizes,
 * each refitted by least squares on its own q (m kept <= 0 because Q4_K
 * stores the offset as a non-negative count of dmin); the lowest squared
 * error wins, ties to the earlier candidate so the result is deterministic. */
static void q4k_fit_sub(const float *x, float *scale, float *offset)
{
    float lo = 0.0f, hi = x[0];
    for (int i = 0; i < Q4K_SUB; i++) {
        if (x[i] < lo)
            lo = x[i];
        if (x[i] > hi)
            hi = x[i];
    }
    if (hi < lo)
        hi = lo;
    float best_s = (hi - lo) / 15.0f, best_m = lo;
    if (!(best_s > 0.0f) || best_s != best_s) { /* constant, or non-finite input */
        *scale = best_s == best_s ? best_s : 0.0f;
        *offset = best_m;
        return;
    }
    float best_e = affine_error(x, Q4K_SUB, best_s, best_m, 15);
    for (int step = -8; step <= 8; step++) {
        float s0 = (hi - lo) / (15.0f + 0.1f * (float)step);
        if (!(s0 > 0.0f))
            continue;
        /* least squares for s, m over the q this step size assigns */
        float sq = 0.0f, sqq = 0.0f, sx = 0.0f, sqx = 0.0f, inv = 1.0f / s0;
        for (int i = 0; i < Q4K_SUB; i++) {
            float q = (float)pm_num_f32_to_int_sat((x[i] - lo) * inv, 0, 15);
            sq += q;
            sqq += q * q;
            sx += x[i];
            sqx += q * x[i];
        }
        float det = (float)Q4K_SUB * sqq - sq * sq;
        if (!(det > 0.0f))
            continue;
        float s = ((float)Q4K_SUB * sqx - sq * sx) / det;
        float m = (sqq * sx - sq * sqx) / det;
        if (m > 0.0f) { /* offset must stay <= 0: refit s alone with m = 0 */
            m = 0.0f;
            s = sqq > 0.0f ? sqx / sqq : 0.0f;
        }
        if (!(s > 0.0f))
            continue;
        float e = affine_error(x, Q4K_SUB, s, m, 15);
        if (e < best_e) {
            best_e = e;
            best_s = s;
            best_m = m;
        }
    }
    *scale = best_s;
    *offset = best_m;
}

/* Round v / unit to a 6-bit code (0 when unit is 0 or not finite). */
static uint8_t code6(float v, float unit)
{
    if (!(unit > 0.0f) || unit != unit)
        return 0;
    return (uint8_t)pm_num_f32_to_int_sat(v / unit, 0, 63);
}

void pm_num_encode_q4_k(const float *src, size_t n, uint8_t *dst)
{
    for (size_t b = 0; b < n; b += QK_K, dst += Q4K_BYTES) {
        const float *x = src + b;
        float s[8], m[8], smax = 0.0f, mmax = 0.0f;
        for (int j = 0; j < 8; j++) {
            q4k_fit_sub(x + Q4K_SUB * j, &s[j], &m[j]);
            if (s[j] > smax || s[j] != s[j])
                smax = s[j];
            if (-m[j] > mmax || m[j] != m[j])
                mmax = -m[j];
        }
        /* super-block units: the largest sub-block scale / offset is code 63 */
        uint16_t dh = pm_num_f32_to_f16(smax / 63.0f), mh = pm_num_f32_to_f16(mmax / 63.0f);
        float d = pm_num_f16_to_f32(dh), dmin = pm_num_f16_to_f32(mh);
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++) {
            sc[j] = code6(s[j], d);
            mn[j] = code6(-m[j], dmin);
        }
        pm_num_store_le16(dst, dh);
        pm_num_store_le16(dst + 2, mh);
        q4k_pack_scales(dst + 4, sc, mn);
        /* the nibbles against the scales as the decoder will see them */
        uint8_t *qs = dst + 16;
        for (int c = 0; c < 4; c++) {
            uint8_t q[2][32];
            for (int h = 0; h < 2; h++) {
                int j = 2 * c + h;
                float ds = d * (float)sc[j], dm = dmin * (float)mn[j];
                float inv = ds > 0.0f ? 1.0f / ds : 0.0f;
                for (int i = 0; i < 32; i++)
                    q[h][i] = (uint8_t)pm_num_f32_to_int_sat((x[32 * j + i] + dm) * inv, 0, 15);
            }
            for (int i = 0; i < 32; i++)
                qs[32 * c + i] = (uint8_t)(q[0][i] | (q[1][i] << 4));
        }
    }
}

/* ---- Q6_K: [128 bytes ql][64 bytes qh][16 int8 scales][f16 d] ---- */

/* Element e = 128h + 32r + l (half h, row r 0..3, lane l 0..31): its low 4
 * bits are the low nibble of ql[64h + 32r + l] for r < 2, else the high
 * nibble of ql[64h + 32(r-2) + l]; its top 2 bits are bits 2r..2r+1 of
 * qh[32h + l]; x = (d * scale[e / 16]) * (q - 32). */
void pm_num_decode_q6_k(const uint8_t *src, size_t n, float *dst)
{
    for (size_t b = 0; b < n; b += QK_K, src += Q6K_BYTES) {
        const uint8_t *ql = src, *qh = src + 128;
        const int8_t *scales = (const int8_t *)(src + 192);
        float d = pm_num_f16_to_f32(pm_num_load_le16(src + 208));
        float ds[16];
        for (int j = 0; j < 16; j++)
            ds[j] = d * (float)scales[j];
        for (int h = 0; h < 2; h++) {
            for (int r = 0; r < 4; r++) {
                const uint8_t *l4 = ql + 64 * h + 32 * (r & 1);
                int shift = (r >> 1) * 4;
                float *out = dst + b + 128 * (size_t)h + 32 * (size_t)r;
                const float *sd = ds + 8 * h + 2 * r;
                for (int l = 0; l < 32; l++) {
                    int q = ((l4[l] >> shift) & 0xf) | (((qh[32 * h + l] >> (2 * r)) & 3) << 4);
                    out[l] = sd[l >> 4] * (float)(q - 32);
                }
            }
        }
    }
}

/* One 16-element sub-block: the signed value of largest magnitude maps to
 * q = -32 (the wider end of [-32, 31]); a few nearby divisors are tried and
 * the lowest squared error wins (ties: the first). */
static float q6k_fit_sub(const float *x)
{
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < Q6K_SUB; i++) {
        float a = x[i] < 0.0f ? -x[i] : x[i];
        if (a > amax || a != a) {
            amax = a;
            vmax = x[i];
        }
    }
    if (!(amax > 0.0f) || amax != amax || amax > 3.0e38f)
        return amax == 0.0f ? 0.0f : vmax / -32.0f;
    float best_s = vmax / -32.0f, best_e = -1.0f;
    for (int step = -6; step <= 6; step++) {
        float s = vmax / (-32.0f + 0.25f * (float)step);
        float inv = 1.0f / s, e = 0.0f;
        for (int i = 0; i < Q6K_SUB; i++) {
            float r = s * (float)pm_num_f32_to_int_sat(x[i] * inv, -32, 31) - x[i];
            e += r * r;
        }
        if (best_e < 0.0f || e < best_e) {
            best_e = e;
            best_s = s;
        }
    }
    return best_s;
}

void pm_num_encode_q6_k(const float *src, size_t n, uint8_t *dst)
{
    for (size_t b = 0; b < n; b += QK_K, dst += Q6K_BYTES) {
        const float *x = src + b;
        float s[16], smax = 0.0f, amax = 0.0f;
        for (int j = 0; j < 16; j++) {
            s[j] = q6k_fit_sub(x + Q6K_SUB * j);
            float a = s[j] < 0.0f ? -s[j] : s[j];
            if (a > amax || a != a) {
                amax = a;
                smax = s[j];
            }
        }
        /* the sub-block scale of largest magnitude becomes the int8 code -128 */
        uint16_t dh = pm_num_f32_to_f16(smax / -128.0f);
        float d = pm_num_f16_to_f32(dh);
        int8_t sc[16];
        for (int j = 0; j < 16; j++)
            sc[j] = (d != 0.0f && d == d) ? (int8_t)pm_num_f32_to_int_sat(s[j] / d, -128, 127) : 0;
        uint8_t *ql = dst, *qh = dst + 128;
        memset(dst, 0, 192);
        for (int e = 0; e < QK_K; e++) {
            float ds = d * (float)sc[e / 16];
            int q = (ds != 0.0f && ds == ds) ? pm_num_f32_to_int_sat(x[e] / ds, -32, 31) + 32 : 32;
            int h = e / 128, r = (e % 128) / 32, l = e % 32;
            ql[64 * h + 32 * (r & 1) + l] |= (uint8_t)((q & 0xf) << ((r >> 1) * 4));
            qh[32 * h + l] |= (uint8_t)((q >> 4) << (2 * r));
        }
        for (int j = 0; j < 16; j++)
            dst[192 + j] = (uint8_t)sc[j];
        pm_num_store_le16(dst + 208, dh);
    }
}
