/* Unit tests for the numerics layer: known values and special cases of every
 * scalar conversion, code round trips, nibble packing order, block layouts,
 * the size/argument validation messages, and buffer bounds. The bit-exact
 * sweeps against ml_dtypes/numpy/gguf live in tests/oracle/test_numerics_oracle.py. */
#include "polymorph/numerics.h"
#include "test.h"

#include <math.h>

static float f(uint32_t bits) { return pm_f32_from_bits(bits); }
static bool same_bits(float a, float b) { return pm_f32_bits(a) == pm_f32_bits(b); }

/* Encode n values into a buffer with guard bytes after the reported size; checks
 * the guard and returns the status. */
static pm_status encode_guarded(pm_format fmt, const float *x, size_t n, uint8_t *out, size_t cap, pm_error *err)
{
    size_t bytes = 0;
    if (!pm_format_bytes(fmt, n, &bytes) || bytes + 8 > cap)
        return PM_ERR_INVALID;
    memset(out, 0xA5, bytes + 8);
    pm_status st = pm_format_encode(fmt, x, n, out, err);
    for (size_t i = bytes; i < bytes + 8; i++)
        CHECK_MSG(out[i] == 0xA5, "format %d wrote past %zu bytes", (int)fmt, bytes);
    return st;
}

TEST(bf16_known_values)
{
    CHECK(pm_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(pm_f32_to_bf16(-2.0f) == 0xc000);
    CHECK(pm_f32_to_bf16(f(0x3f808000)) == 0x3f80); /* tie, even stays */
    CHECK(pm_f32_to_bf16(f(0x3f818000)) == 0x3f82); /* tie, odd rounds up */
    CHECK(pm_f32_to_bf16(f(0x3f808001)) == 0x3f81);
    CHECK(pm_f32_to_bf16(f(0x7f7fffff)) == 0x7f80); /* FLT_MAX rounds to inf */
    CHECK(pm_f32_to_bf16(f(0x00008000)) == 0x0000); /* subnormal tie to even zero */
    CHECK(pm_f32_to_bf16(f(0x7f800001)) == 0x7fc0); /* NaN -> quiet, payload dropped */
    CHECK(pm_f32_to_bf16(f(0xffc00001)) == 0xffc0);
    CHECK(same_bits(pm_bf16_to_f32(0xbf80), -1.0f));
}

TEST(f16_known_values)
{
    CHECK(pm_f32_to_f16(1.0f) == 0x3c00);
    CHECK(pm_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(pm_f32_to_f16(65519.99f) == 0x7bff);
    CHECK(pm_f32_to_f16(65520.0f) == 0x7c00); /* the overflow tie goes to inf (even) */
    CHECK(pm_f32_to_f16(-INFINITY) == 0xfc00);
    CHECK(pm_f32_to_f16(ldexpf(1.0f, -24)) == 0x0001); /* smallest subnormal */
    CHECK(pm_f32_to_f16(ldexpf(1.0f, -25)) == 0x0000); /* half of it: tie to even zero */
    CHECK(pm_f32_to_f16(ldexpf(3.0f, -25)) == 0x0002); /* 1.5 units: tie to even 2 */
    CHECK(pm_f32_to_f16(f(0x7fc00000)) == 0x7e00);
    CHECK(pm_f32_to_f16(f(0x7f800001)) == 0x7e00); /* signalling NaN is quieted */
    CHECK(same_bits(pm_f16_to_f32(0x0001), ldexpf(1.0f, -24)));
    CHECK(same_bits(pm_f16_to_f32(0x7c01), f(0x7f802000))); /* payload widened as is */
}

TEST(fp8_known_values)
{
    CHECK(pm_f32_to_e4m3(448.0f) == 0x7e);
    CHECK(pm_f32_to_e4m3(464.0f) == 0x7e); /* tie between 448 and (NaN slot) 480 */
    CHECK(pm_f32_to_e4m3(464.5f) == 0x7f); /* overflow -> NaN, as ml_dtypes */
    CHECK(pm_f32_to_e4m3(-INFINITY) == 0xff);
    CHECK(pm_f32_to_e4m3(NAN) == 0x7f);
    CHECK(pm_f32_to_e4m3(ldexpf(1.0f, -9)) == 0x01);
    CHECK(pm_f32_to_e4m3(ldexpf(1.0f, -10)) == 0x00);
    CHECK(pm_f32_to_e4m3(-0.0f) == 0x80);
    CHECK(isnan(pm_e4m3_to_f32(0x7f)) && isnan(pm_e4m3_to_f32(0xff)));
    CHECK(pm_e4m3_to_f32(0x7e) == 448.0f && pm_e4m3_to_f32(0xfe) == -448.0f);

    CHECK(pm_f32_to_e5m2(57344.0f) == 0x7b);
    CHECK(pm_f32_to_e5m2(61439.0f) == 0x7b);
    CHECK(pm_f32_to_e5m2(61440.0f) == 0x7c); /* overflow tie -> inf */
    CHECK(pm_f32_to_e5m2(-NAN) == 0xfe);
    CHECK(pm_f32_to_e5m2(INFINITY) == 0x7c);
    CHECK(isinf(pm_e5m2_to_f32(0xfc)) && pm_e5m2_to_f32(0xfc) < 0);
    CHECK(same_bits(pm_e5m2_to_f32(0x7d), f(0x7fc00000)));
    CHECK(pm_e5m2_to_f32(0x01) == ldexpf(1.0f, -16));
}

TEST(e2m1_values_and_ties)
{
    static const float grid[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    for (uint8_t c = 0; c < 16; c++) {
        float v = (c & 8) ? -grid[c & 7] : grid[c & 7];
        CHECK_MSG(same_bits(pm_e2m1_to_f32(c), v), "code %u", c);
        CHECK(pm_f32_to_e2m1(v) == c);
    }
    CHECK(pm_f32_to_e2m1(0.25f) == 0x0);  /* tie 0 | 0.5 -> even 0 */
    CHECK(pm_f32_to_e2m1(0.75f) == 0x2);  /* tie 0.5 | 1 -> even 1.0 */
    CHECK(pm_f32_to_e2m1(2.5f) == 0x4);   /* tie 2 | 3 -> even 2 */
    CHECK(pm_f32_to_e2m1(5.0f) == 0x6);   /* tie 4 | 6 -> even 4 */
    CHECK(pm_f32_to_e2m1(100.0f) == 0x7); /* saturates */
    CHECK(pm_f32_to_e2m1(-INFINITY) == 0xf);
    CHECK(pm_f32_to_e2m1(NAN) == 0x8);  /* ml_dtypes: NaN -> zero, sign flipped */
    CHECK(pm_f32_to_e2m1(-NAN) == 0x0);
}

TEST(int_and_e8m0_known_values)
{
    CHECK(pm_f32_to_int8(2.5f) == 2 && pm_f32_to_int8(3.5f) == 4 && pm_f32_to_int8(-2.5f) == -2);
    CHECK(pm_f32_to_int8(127.5f) == 127 && pm_f32_to_int8(-1e30f) == -128 && pm_f32_to_int8(NAN) == 0);
    CHECK(pm_f32_to_int8(-0.4f) == 0 && pm_f32_to_int8(INFINITY) == 127);
    CHECK(pm_f32_to_int4(7.5f) == 7 && pm_f32_to_int4(-8.5f) == -8 && pm_f32_to_int4(-7.5f) == -8);
    CHECK(pm_f32_to_int4(0.5f) == 0 && pm_f32_to_int4(1.5f) == 2 && pm_f32_to_int4(NAN) == 0);

    CHECK(pm_f32_to_e8m0(1.0f) == 127 && pm_f32_to_e8m0(1.5f) == 128 && pm_f32_to_e8m0(1.49f) == 127);
    CHECK(pm_f32_to_e8m0(0.0f) == 0xff && pm_f32_to_e8m0(-4.0f) == 0xff && pm_f32_to_e8m0(NAN) == 0xff);
    CHECK(pm_f32_to_e8m0(ldexpf(1.0f, 127)) == 254 && pm_f32_to_e8m0(ldexpf(1.5f, 127)) == 0xff);
    CHECK(pm_f32_to_e8m0(ldexpf(1.0f, -127)) == 0);
    CHECK(pm_e8m0_to_f32(0) == ldexpf(1.0f, -127) && pm_e8m0_to_f32(254) == ldexpf(1.0f, 127));
    CHECK(isnan(pm_e8m0_to_f32(0xff)));
}

/* decode -> encode returns the code for every non-NaN code of every element format. */
TEST(element_code_round_trips)
{
    for (uint32_t c = 0; c < 65536; c++) {
        float b = pm_bf16_to_f32((uint16_t)c), h = pm_f16_to_f32((uint16_t)c);
        if (!isnan(b))
            CHECK_MSG(pm_f32_to_bf16(b) == c, "bf16 %04x", c);
        if (!isnan(h))
            CHECK_MSG(pm_f32_to_f16(h) == c, "f16 %04x", c);
    }
    for (uint32_t c = 0; c < 256; c++) {
        float a = pm_e4m3_to_f32((uint8_t)c), e = pm_e5m2_to_f32((uint8_t)c), s = pm_e8m0_to_f32((uint8_t)c);
        if (!isnan(a))
            CHECK_MSG(pm_f32_to_e4m3(a) == c, "e4m3 %02x", c);
        if (!isnan(e))
            CHECK_MSG(pm_f32_to_e5m2(e) == c, "e5m2 %02x", c);
        if (!isnan(s))
            CHECK_MSG(pm_f32_to_e8m0(s) == c, "e8m0 %02x", c);
        CHECK(pm_f32_to_int8((float)(int8_t)c) == (int8_t)c);
    }
}

TEST(nibble_packing_order)
{
    float x[4] = {1.0f, -2.0f, 6.0f, 0.5f};
    uint8_t out[16];
    pm_error err = {0};
    CHECK(encode_guarded(PM_FMT_E2M1, x, 4, out, sizeof out, &err) == PM_OK);
    CHECK(out[0] == 0xC2 && out[1] == 0x17); /* element 0 in the low nibble */
    float y[4] = {3.0f, -1.0f, -8.0f, 7.0f};
    CHECK(encode_guarded(PM_FMT_INT4, y, 4, out, sizeof out, &err) == PM_OK);
    CHECK(out[0] == 0xF3 && out[1] == 0x78);
    float back[4];
    CHECK(pm_format_decode(PM_FMT_INT4, out, 4, back, &err) == PM_OK);
    for (int i = 0; i < 4; i++)
        CHECK(back[i] == y[i]);
}

TEST(format_table_and_sizes)
{
    for (int i = 0; i < PM_FMT_COUNT; i++) {
        const pm_format_info *fi = pm_format_get((pm_format)i);
        pm_format back = PM_FMT_COUNT;
        CHECK(fi && fi->format == (pm_format)i && fi->name && fi->description);
        CHECK(pm_format_from_name(fi->name, &back) && back == (pm_format)i);
    }
    pm_format f = PM_FMT_F32;
    CHECK(pm_format_from_name("MXFP4", &f) && f == PM_FMT_MXFP4);
    CHECK(pm_format_from_name("Q8_0", &f) && f == PM_FMT_Q8_0);
    CHECK(!pm_format_from_name("mxfp", &f) && !pm_format_from_name("", &f) && !pm_format_from_name(NULL, &f));
    CHECK(pm_format_get(PM_FMT_COUNT) == NULL && pm_format_get((pm_format)-1) == NULL);
    CHECK(pm_format_get(PM_FMT_NVFP4)->header_bytes == 4 && pm_format_get(PM_FMT_IF4)->header_bytes == 4);

    size_t bytes = 0;
    CHECK(pm_format_bytes(PM_FMT_MXFP4, 64, &bytes) && bytes == 34);
    CHECK(pm_format_bytes(PM_FMT_NVFP4, 32, &bytes) && bytes == 22);
    CHECK(pm_format_bytes(PM_FMT_NVFP4, 0, &bytes) && bytes == 4);
    CHECK(pm_format_bytes(PM_FMT_Q4_1, 32, &bytes) && bytes == 20);
    CHECK(pm_format_bytes(PM_FMT_E2M1, 10, &bytes) && bytes == 5);
    CHECK(pm_format_bytes(PM_FMT_F32, 3, &bytes) && bytes == 12);
    CHECK(!pm_format_bytes(PM_FMT_MXFP4, 33, &bytes));
    CHECK(!pm_format_bytes(PM_FMT_INT4, 3, &bytes));
    CHECK(!pm_format_bytes(PM_FMT_Q8_0, 16, &bytes));
    CHECK(!pm_format_bytes(PM_FMT_F32, SIZE_MAX, &bytes));
    CHECK(!pm_format_bytes(PM_FMT_COUNT, 2, &bytes));
}

TEST(validation_errors_name_the_problem)
{
    float x[64] = {0};
    uint8_t out[128];
    pm_error err = {0};
    CHECK(pm_format_encode(PM_FMT_MXFP4, x, 33, out, &err) == PM_ERR_INVALID);
    CHECK_MSG(strstr(err.message, "mxfp4") && strstr(err.message, "n=33") && strstr(err.message, "32-element"),
              "%s", err.message);
    CHECK(pm_format_decode(PM_FMT_IF4, out, 8, x, &err) == PM_ERR_INVALID);
    CHECK_MSG(strstr(err.message, "pm_format_decode(if4)") && strstr(err.message, "16-element"), "%s",
              err.message);
    CHECK(pm_format_encode(PM_FMT_E2M1, x, 3, out, &err) == PM_ERR_INVALID);
    CHECK_MSG(strstr(err.message, "odd"), "%s", err.message);
    CHECK(pm_format_encode((pm_format)99, x, 2, out, &err) == PM_ERR_INVALID);
    CHECK_MSG(strstr(err.message, "99"), "%s", err.message);
    CHECK(pm_format_encode(PM_FMT_BF16, NULL, 2, out, &err) == PM_ERR_INVALID);
    CHECK_MSG(strstr(err.message, "source"), "%s", err.message);
    CHECK(pm_format_decode(PM_FMT_BF16, out, 2, NULL, &err) == PM_ERR_INVALID);
    CHECK_MSG(strstr(err.message, "destination"), "%s", err.message);
    CHECK(pm_format_encode(PM_FMT_Q4_0, x, 0, NULL, NULL) == PM_OK);      /* nothing to do */
    CHECK(pm_format_encode(PM_FMT_NVFP4, NULL, 0, out, &err) == PM_OK);   /* header only */
    CHECK(same_bits(pm_f32_from_bits((uint32_t)out[0] | (uint32_t)out[1] << 8 | (uint32_t)out[2] << 16 |
                                     (uint32_t)out[3] << 24), 1.0f));
}

/* Values on the format's grid survive encode/decode exactly. */
TEST(block_round_trips_on_grid)
{
    float x[64], y[64];
    uint8_t buf[256];
    pm_error err = {0};
    for (int i = 0; i < 64; i++) /* e4m3-exact values times a power of two, max 448 */
        x[i] = ldexpf(i == 5 ? 56.0f : (float)((i % 15) - 7) * 0.125f, 3 + i / 32);
    CHECK(encode_guarded(PM_FMT_MXFP8, x, 64, buf, sizeof buf, &err) == PM_OK);
    CHECK(pm_format_decode(PM_FMT_MXFP8, buf, 64, y, &err) == PM_OK);
    for (int i = 0; i < 64; i++)
        CHECK_MSG(x[i] == y[i], "mxfp8 %d: %g -> %g", i, x[i], y[i]);

    for (int i = 0; i < 32; i++) /* multiples of 1/127 of the block max */
        x[i] = (float)((i * 37) % 255 - 127);
    CHECK(encode_guarded(PM_FMT_Q8_0, x, 32, buf, sizeof buf, &err) == PM_OK);
    CHECK(buf[0] == 0x00 && buf[1] == 0x3c); /* d = 127/127 = 1.0 as f16 */
    CHECK(pm_format_decode(PM_FMT_Q8_0, buf, 32, y, &err) == PM_OK);
    for (int i = 0; i < 32; i++)
        CHECK(x[i] == y[i]);

    for (int i = 0; i < 32; i++) /* int4 grid scaled by 7 -> bf16 scale 1.0 */
        x[i] = (float)((i % 15) - 7);
    CHECK(encode_guarded(PM_FMT_INT4B, x, 32, buf, sizeof buf, &err) == PM_OK);
    CHECK(buf[0] == 0x80 && buf[1] == 0x3f);
    CHECK(pm_format_decode(PM_FMT_INT4B, buf, 32, y, &err) == PM_OK);
    for (int i = 0; i < 32; i++)
        CHECK(x[i] == y[i]);
}

TEST(gguf_q4_layout)
{
    float x[32], y[32];
    uint8_t buf[64];
    pm_error err = {0};
    for (int i = 0; i < 32; i++)
        x[i] = (float)(i % 16) - 8.0f; /* largest |x| is -8 at i = 0: d = -8 / -8 = 1 */
    CHECK(encode_guarded(PM_FMT_Q4_0, x, 32, buf, sizeof buf, &err) == PM_OK);
    CHECK(buf[0] == 0x00 && buf[1] == 0x3c);
    for (int j = 0; j < 16; j++) /* element j low nibble, j + 16 high nibble; q = x + 8 */
        CHECK_MSG(buf[2 + j] == (uint8_t)(j | (j << 4)), "byte %d = %02x", j, buf[2 + j]);
    CHECK(pm_format_decode(PM_FMT_Q4_0, buf, 32, y, &err) == PM_OK);
    for (int i = 0; i < 32; i++)
        CHECK(x[i] == y[i]);

    for (int i = 0; i < 32; i++)
        x[i] = i < 16 ? 2.0f + (float)i : 2.0f; /* min 2, max 17: d = 1, m = 2 */
    CHECK(encode_guarded(PM_FMT_Q4_1, x, 32, buf, sizeof buf, &err) == PM_OK);
    CHECK(buf[0] == 0x00 && buf[1] == 0x3c && buf[2] == 0x00 && buf[3] == 0x40);
    CHECK(buf[4] == 0x00 && buf[5] == 0x01 && buf[19] == 0x0f);
    CHECK(pm_format_decode(PM_FMT_Q4_1, buf, 32, y, &err) == PM_OK);
    for (int i = 0; i < 32; i++)
        CHECK(x[i] == y[i]);
}

TEST(mx_scale_and_specials)
{
    float x[32] = {0}, y[32];
    uint8_t buf[64];
    pm_error err = {0};
    CHECK(encode_guarded(PM_FMT_MXFP4, x, 32, buf, sizeof buf, &err) == PM_OK);
    CHECK(buf[0] == 0); /* all zero: the smallest scale, 2^-127 */
    x[0] = 6.0f;       /* floor(log2 6) - 2 = 0: scale 2^0 */
    x[1] = -0.25f;     /* tie 0 | 0.5 -> 0, sign kept */
    x[2] = 5.0f;       /* tie 4 | 6 -> 4 */
    CHECK(encode_guarded(PM_FMT_MXFP4, x, 32, buf, sizeof buf, &err) == PM_OK);
    CHECK(buf[0] == 127 && buf[1] == 0x87 && buf[2] == 0x06);
    x[0] = 7.9f; /* still scale 2^0, saturates to 6 */
    CHECK(encode_guarded(PM_FMT_MXFP4, x, 32, buf, sizeof buf, &err) == PM_OK);
    CHECK(buf[0] == 127 && (buf[1] & 0xf) == 0x7);

    x[5] = NAN; /* a NaN anywhere: the scale is NaN and the whole block decodes NaN */
    CHECK(encode_guarded(PM_FMT_MXINT8, x, 32, buf, sizeof buf, &err) == PM_OK);
    CHECK(buf[0] == 0xff);
    CHECK(pm_format_decode(PM_FMT_MXINT8, buf, 32, y, &err) == PM_OK);
    for (int i = 0; i < 32; i++)
        CHECK(isnan(y[i]));

    for (int i = 0; i < 32; i++)
        x[i] = 1.984375f * ((i & 1) ? -1.0f : 1.0f); /* 127/64 fits the int8 grid at scale 2^0 */
    x[3] = -1.99999f;                                   /* rounds to -128/64 but saturates to -127 */
    CHECK(encode_guarded(PM_FMT_MXINT8, x, 32, buf, sizeof buf, &err) == PM_OK);
    CHECK(buf[0] == 127 && buf[1] == 127 && buf[2] == (uint8_t)-127 && buf[4] == (uint8_t)-127);
}

TEST(if4_picks_lower_error)
{
    float x[32], y[32];
    uint8_t buf[64];
    pm_error err = {0};
    for (int i = 0; i < 16; i++) /* uniform integers: INT4 is exact, FP4 is not (5 is off its grid) */
        x[i] = (float)((i % 15) - 7);
    for (int i = 16; i < 32; i++) /* FP4 grid values at max 6: FP4 exact */
        x[i] = (float)((i % 2) ? -1 : 1) * (float)((i % 8) < 4 ? 6 : 3);
    CHECK(encode_guarded(PM_FMT_IF4, x, 32, buf, sizeof buf, &err) == PM_OK);
    CHECK_MSG((buf[4] & 0x80) && !(buf[13] & 0x80), "flags %02x %02x", buf[4], buf[13]);
    CHECK(pm_format_decode(PM_FMT_IF4, buf, 32, y, &err) == PM_OK);
    for (int i = 0; i < 16; i++) /* tensor scale 7/2688 times block scale 384: exact to one rounding */
        CHECK_MSG(fabsf(x[i] - y[i]) <= 1e-5f * 7.0f, "if4 %d: %g -> %g", i, x[i], y[i]);
    /* NVFP4 of the same data never sets the flag bit */
    CHECK(encode_guarded(PM_FMT_NVFP4, x, 32, buf, sizeof buf, &err) == PM_OK);
    CHECK(!(buf[4] & 0x80) && !(buf[13] & 0x80));
}

int main(void)
{
    RUN(bf16_known_values);
    RUN(f16_known_values);
    RUN(fp8_known_values);
    RUN(e2m1_values_and_ties);
    RUN(int_and_e8m0_known_values);
    RUN(element_code_round_trips);
    RUN(nibble_packing_order);
    RUN(format_table_and_sizes);
    RUN(validation_errors_name_the_problem);
    RUN(block_round_trips_on_grid);
    RUN(gguf_q4_layout);
    RUN(mx_scale_and_specials);
    RUN(if4_picks_lower_error);
    return TEST_SUMMARY();
}
