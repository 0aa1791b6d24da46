/* Numerics layer: the public scalar conversions between fp32 and every
 * element format. The bodies live in numerics_internal.h as static inline
 * bit manipulation so the array encoders inline them; these are the exported
 * entry points the simulator, quantiser and tests call one value at a time. */
#include "numerics_internal.h"

uint16_t pm_f32_to_bf16(float x) { return pm_num_f32_to_bf16(x); }
void pm_f32_to_bf16_array(const float *src, size_t n, uint16_t *dst)
{
    for (size_t i = 0; i < n; i++) dst[i] = pm_num_f32_to_bf16(src[i]);
}
float pm_bf16_to_f32(uint16_t h) { return pm_num_bf16_to_f32(h); }
uint16_t pm_f32_to_f16(float x) { return pm_num_f32_to_f16(x); }
float pm_f16_to_f32(uint16_t h) { return pm_num_f16_to_f32(h); }
uint8_t pm_f32_to_e4m3(float x) { return pm_num_f32_to_e4m3(x); }
float pm_e4m3_to_f32(uint8_t c) { return pm_num_e4m3_to_f32(c); }
uint8_t pm_f32_to_e5m2(float x) { return pm_num_f32_to_e5m2(x); }
float pm_e5m2_to_f32(uint8_t c) { return pm_num_e5m2_to_f32(c); }
uint8_t pm_f32_to_e2m1(float x) { return pm_num_f32_to_e2m1(x); }
float pm_e2m1_to_f32(uint8_t c) { return pm_num_e2m1_to_f32(c); }
int8_t pm_f32_to_int8(float x) { return (int8_t)pm_num_f32_to_int_sat(x, -128, 127); }
int8_t pm_f32_to_int4(float x) { return (int8_t)pm_num_f32_to_int_sat(x, -8, 7); }

/* fp32 -> E8M0 as a general cast, bit-identical to ml_dtypes float8_e8m0fnu:
 * zero, negatives, inf and NaN have no code and give NaN (0xFF); a normal
 * input rounds to the nearer power of two with ties up (mantissa >= 0.5 goes
 * up), past 2^127 gives NaN; fp32 subnormals give 2^-127 up to and including
 * 2^-127 itself and 2^-126 above it. The MX encoders do not use this: they
 * derive block scales with floor(log2 amax) as the OCP spec says. */
uint8_t pm_f32_to_e8m0(float x)
{
    uint32_t u = pm_f32_bits(x);
    if ((u & PM_F32_SIGN) || u == 0 || u >= PM_F32_INF)
        return 0xffu;
    if (u < 0x00800000u)
        return u > 0x00400000u ? 1u : 0u;
    uint32_t code = (u >> 23) + ((u & 0x7fffffu) >= 0x400000u ? 1u : 0u);
    return code > 254u ? 0xffu : (uint8_t)code;
}
float pm_e8m0_to_f32(uint8_t c) { return pm_num_e8m0_to_f32(c); }
