/* K-quant numerics (Q4_K, Q6_K): hand-built super-blocks whose every field
 * is set from ggml's layout description (scale/min bit packing, nibble and
 * high-bit order), decoded and compared with values computed here from that
 * description; sizes; and the encoders' round trip. The bit-exact comparison
 * with gguf-py lives in tests/oracle/test_numerics_kquants.py. */
#include "test.h"

#include "polymorph/numerics.h"

#include <math.h>

TEST(sizes_and_names)
{
    size_t b = 0;
    CHECK(pm_format_bytes(PM_FMT_Q4_K, 512, &b) && b == 288);
    CHECK(pm_format_bytes(PM_FMT_Q6_K, 256, &b) && b == 210);
    CHECK(!pm_format_bytes(PM_FMT_Q4_K, 32, &b) && !pm_format_bytes(PM_FMT_Q6_K, 300, &b));
    pm_format f;
    CHECK(pm_format_from_name("Q4_K", &f) && f == PM_FMT_Q4_K);
    CHECK(pm_format_from_name("q6_k", &f) && f == PM_FMT_Q6_K);
    CHECK(pm_format_get(PM_FMT_Q4_K)->block_elems == 256 && pm_format_get(PM_FMT_Q6_K)->block_bytes == 210);
    CHECK(PM_FMT_Q4_K == 17 && PM_FMT_Q6_K == 18); /* appended: the ISA encodes these numbers */
}

TEST(q4_k_layout)
{
    /* scales and mins with high bits set for the upper four (they live in bytes 0-7's top bits) */
    static const uint8_t sc[8] = {1, 2, 63, 4, 42, 17, 33, 60}, mn[8] = {0, 5, 9, 63, 48, 3, 53, 31};
    uint8_t blk[144] = {0};
    blk[0] = 0x00, blk[1] = 0x3c; /* d = 1.0 */
    blk[2] = 0x00, blk[3] = 0x38; /* dmin = 0.5 */
    uint8_t *s = blk + 4;
    for (int k = 0; k < 4; k++) {
        s[k] = (uint8_t)((sc[k] & 63) | ((sc[k + 4] >> 4) << 6));
        s[k + 4] = (uint8_t)((mn[k] & 63) | ((mn[k + 4] >> 4) << 6));
        s[k + 8] = (uint8_t)((sc[k + 4] & 15) | ((mn[k + 4] & 15) << 4));
    }
    for (int c = 0; c < 4; c++)
        for (int i = 0; i < 32; i++)
            blk[16 + 32 * c + i] = (uint8_t)((i & 15) | (((i + c) & 15) << 4));
    float out[256];
    pm_error err = {0};
    CHECK(pm_format_decode(PM_FMT_Q4_K, blk, 256, out, &err) == PM_OK);
    for (int e = 0; e < 256; e++) {
        int j = e / 32, c = j / 2, i = e % 32;
        int q = (j % 2 == 0) ? (i & 15) : ((i + c) & 15);
        float want = (1.0f * (float)sc[j]) * (float)q - 0.5f * (float)mn[j];
        CHECK_MSG(out[e] == want, "element %d: %g, want %g", e, out[e], want);
    }
}

TEST(q6_k_layout)
{
    uint8_t blk[210] = {0};
    int q[256];
    for (int e = 0; e < 256; e++)
        q[e] = (e * 7 + 3) % 64;
    for (int e = 0; e < 256; e++) {
        int h = e / 128, r = (e % 128) / 32, l = e % 32;
        blk[64 * h + 32 * (r % 2) + l] |= (uint8_t)((q[e] & 15) << (r < 2 ? 0 : 4));
        blk[128 + 32 * h + l] |= (uint8_t)((q[e] >> 4) << (2 * r));
    }
    for (int j = 0; j < 16; j++)
        blk[192 + j] = (uint8_t)(int8_t)(j * 9 - 70);
    blk[208] = 0x00, blk[209] = 0x34; /* d = 0.25 */
    float out[256];
    pm_error err = {0};
    CHECK(pm_format_decode(PM_FMT_Q6_K, blk, 256, out, &err) == PM_OK);
    for (int e = 0; e < 256; e++) {
        float want = (0.25f * (float)(e / 16 * 9 - 70)) * (float)(q[e] - 32);
        CHECK_MSG(out[e] == want, "element %d: %g, want %g", e, out[e], want);
    }
}

TEST(round_trip)
{
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    enum { N = 4096 };
    static float x[N], y[N];
    static uint8_t buf[N / 256 * 210];
    for (int i = 0; i < N; i++) /* roughly normal: sum of uniforms */
        x[i] = ((float)(pm_test_xorshift(&rng) % 1000) + (float)(pm_test_xorshift(&rng) % 1000) - 1000.0f) * 1e-4f;
    static const pm_format fmts[2] = {PM_FMT_Q4_K, PM_FMT_Q6_K};
    static const double max_rel_rms[2] = {0.11, 0.032};
    for (int f = 0; f < 2; f++) {
        pm_error err = {0};
        CHECK(pm_format_encode(fmts[f], x, N, buf, &err) == PM_OK);
        CHECK(pm_format_decode(fmts[f], buf, N, y, &err) == PM_OK);
        double se = 0, sx = 0;
        for (int i = 0; i < N; i++) {
            se += (double)(y[i] - x[i]) * (y[i] - x[i]);
            sx += (double)x[i] * x[i];
        }
        CHECK_MSG(sqrt(se / sx) < max_rel_rms[f], "format %d: relative rms %g", (int)fmts[f], sqrt(se / sx));
        /* all zeros stay zeros */
        float z[256] = {0}, back[256];
        CHECK(pm_format_encode(fmts[f], z, 256, buf, &err) == PM_OK);
        CHECK(pm_format_decode(fmts[f], buf, 256, back, &err) == PM_OK);
        for (int i = 0; i < 256; i++)
            CHECK(back[i] == 0.0f);
        /* random fp32 bit patterns (NaN, inf, subnormal, huge): defined, no UB (run under SAN) */
        static float bits[N];
        for (int i = 0; i < N; i++)
            bits[i] = pm_f32_from_bits(pm_test_xorshift(&rng) ^ (pm_test_xorshift(&rng) << 16));
        CHECK(pm_format_encode(fmts[f], bits, N, buf, &err) == PM_OK);
        CHECK(pm_format_decode(fmts[f], buf, N, y, &err) == PM_OK);
        /* non-finite input: no crash, and the decode is defined */
        z[7] = NAN;
        z[9] = INFINITY;
        CHECK(pm_format_encode(fmts[f], z, 256, buf, &err) == PM_OK);
        CHECK(pm_format_decode(fmts[f], buf, 256, back, &err) == PM_OK);
    }
}

int main(void)
{
    RUN(sizes_and_names);
    RUN(q4_k_layout);
    RUN(q6_k_layout);
    RUN(round_trip);
    return TEST_SUMMARY();
}
