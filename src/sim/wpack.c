/* Compact panels for the decoded-weight cache (gemm_fast.h): GGUF's Q8_0,
 * Q4_0 and Q4_1 keep an int8 (Q4_1: 4-bit) code and a per-block scale and
 * offset, so a cached GEMV streams 1.25 (0.75) bytes per weight instead of
 * bf16's 2. Every
 * weight is checked against the decoder's own bf16 code before the panels
 * are used; a block that does not reproduce (a NaN scale, say) keeps the
 * plain bf16 panels instead. */
#include "wcache.h"

#include "gemm_fast.h"

#include <string.h>

/* One block of 32 weights of one output row: s, o and the 32 codes, as the
 * format's decoder computes them (numerics/gguf.c): Q8_0 d*q, Q4_0 d*(q-8),
 * Q4_1 d*q + m; -0 as the offset keeps d*q's sign of zero (x + -0 = x). */
typedef void (*block_fn)(const uint8_t *src, float *s, float *o, int8_t q[32]);

static void q8_0_block(const uint8_t *src, float *s, float *o, int8_t q[32])
{
    *s = pm_f16_to_f32((uint16_t)(src[0] | src[1] << 8));
    *o = -0.0f;
    memcpy(q, src + 2, 32);
}

static void q4_0_block(const uint8_t *src, float *s, float *o, int8_t q[32])
{
    *s = pm_f16_to_f32((uint16_t)(src[0] | src[1] << 8));
    *o = -0.0f;
    for (int i = 0; i < 16; i++) { /* low nibbles are weights 0..15, high ones 16..31 */
        q[i] = (int8_t)((src[2 + i] & 0xF) - 8);
        q[16 + i] = (int8_t)((src[2 + i] >> 4) - 8);
    }
}

static void q4_1_block(const uint8_t *src, float *s, float *o, int8_t q[32])
{
    *s = pm_f16_to_f32((uint16_t)(src[0] | src[1] << 8));
    *o = pm_f16_to_f32((uint16_t)(src[2] | src[3] << 8));
    for (int i = 0; i < 16; i++) {
        q[i] = (int8_t)(src[4 + i] & 0xF);
        q[16 + i] = (int8_t)(src[4 + i] >> 4);
    }
}

/* nibbles: every q is in 0..15, so codes take half a byte. */
static const struct {
    pm_format format;
    block_fn block;
    size_t block_bytes;
    bool nibbles;
} compact_formats[] = {
    {PM_FMT_Q8_0, q8_0_block, 34, false},
    {PM_FMT_Q4_0, q4_0_block, 18, false},
    {PM_FMT_Q4_1, q4_1_block, 20, true},
};

uint64_t pm_wpack_bytes(uint32_t format, uint64_t n, uint64_t k, bool *nibbles)
{
    for (size_t i = 0; i < sizeof compact_formats / sizeof compact_formats[0]; i++)
        if ((uint32_t)compact_formats[i].format == format) {
            *nibbles = compact_formats[i].nibbles;
            return pm_gemm_qpanel_bytes((size_t)n, (size_t)k, *nibbles);
        }
    return 0;
}

bool pm_wpack_build(pm_gemm_pool *pool, uint32_t format, const uint8_t *src, uint64_t n, uint64_t k,
                    const uint16_t *codes, uint8_t *out)
{
    const size_t count = sizeof compact_formats / sizeof compact_formats[0];
    size_t f = 0;
    while (f < count && (uint32_t)compact_formats[f].format != format) f++;
    if (f == count || k % 32) return false;
    size_t blocks = (size_t)k / 32, row_bytes = blocks * compact_formats[f].block_bytes;
    size_t groups = ((size_t)n + PM_GEMM_QGROUP - 1) / PM_GEMM_QGROUP;
    bool nib = compact_formats[f].nibbles;
    size_t bb = nib ? PM_GEMM_Q4BLOCK_BYTES : PM_GEMM_QBLOCK_BYTES;
    memset(out, 0, groups * blocks * bb); /* lanes past N: s = o = q = 0 */
    for (size_t r = 0; r < n; r++)
        for (size_t b = 0; b < blocks; b++) {
            float s, o;
            int8_t q[32];
            compact_formats[f].block(src + r * row_bytes + b * compact_formats[f].block_bytes, &s, &o, q);
            uint8_t *blk = out + ((r / PM_GEMM_QGROUP) * blocks + b) * bb;
            size_t lane = r % PM_GEMM_QGROUP;
            for (int i = 0; i < 32; i++) {
                if (nib) /* output `lane` of row i: byte lane % 16, low nibble for lanes < 16 */
                    blk[256 + (size_t)i * 16 + lane % 16] |= (uint8_t)(lane < 16 ? q[i] : q[i] << 4);
                else
                    blk[256 + (size_t)i * 32 + lane] = (uint8_t)q[i];
            }
            memcpy(blk + 4 * lane, &s, sizeof s);
            memcpy(blk + 128 + 4 * lane, &o, sizeof o);
        }
    /* Every weight, as the kernel will compute it, against the decoder. */
    return pm_gemm_qpanel_check(pool, (size_t)n, (size_t)k, out, nib, codes);
}
