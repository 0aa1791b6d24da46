/* The correctly rounded reference the LFU is measured against, shared by
 * tools/lfu_error.c (the error table in docs/lfu.md) and tests/unit/test_lfu.c
 * (the bounds that table states), so the two can never measure differently.
 * Host-side measurement only: long double libm here is the oracle, never the
 * datapath. */
#ifndef POLYMORPH_LFU_REFERENCE_H
#define POLYMORPH_LFU_REFERENCE_H

#include "polymorph/lfu.h"
#include "polymorph/numerics.h"

#include <math.h>
#include <stdint.h>

#define PM_REF_SQRT1_2_L 0.707106781186547524400844362104849039L

/* Each built-in function in long double (x87: 64-bit significand). */
static inline long double pm_ref_eval(pm_lfu_func f, long double x)
{
    switch (f) {
    case PM_LFU_EXP: return expl(x);
    case PM_LFU_EXP2: return exp2l(x);
    case PM_LFU_SIGMOID: return 1.0L / (1.0L + expl(-x));
    case PM_LFU_TANH: return tanhl(x);
    case PM_LFU_SILU: return x / (1.0L + expl(-x));
    case PM_LFU_GELU: return x * 0.5L * erfcl(-x * PM_REF_SQRT1_2_L);
    case PM_LFU_RSQRT: return 1.0L / sqrtl(x);
    case PM_LFU_RECIP: return 1.0L / x;
    default: return NAN;
    }
}

/* Monotone integer key of a float's bit pattern: ulp distance = key difference. */
static inline int64_t pm_ref_key32(float x)
{
    uint32_t b = pm_f32_bits(x);
    return (b >> 31) ? -(int64_t)(b & 0x7fffffffu) : (int64_t)b;
}

static inline float pm_ref_from_key32(int64_t k)
{
    return pm_f32_from_bits(k < 0 ? 0x80000000u | (uint32_t)(-k) : (uint32_t)k);
}

static inline int64_t pm_ref_key16(uint16_t h) { return (h >> 15) ? -(int64_t)(h & 0x7fffu) : (int64_t)h; }

/* long double rounded once to bf16 (RNE; subnormals and overflow included). */
static inline uint16_t pm_ref_bf16_of_ld(long double v)
{
    uint16_t sign = signbit(v) ? 0x8000u : 0u;
    long double a = fabsl(v);
    if (a == 0.0L) return sign;
    if (isinf(a)) return sign | 0x7f80u;
    int e;
    frexpl(a, &e); /* a in [2^(e-1), 2^e) */
    int q = e - 8 < -133 ? -133 : e - 8;
    long double r = ldexpl(rintl(ldexpl(a, -q)), q);
    if (r >= 0x1p128L) return sign | 0x7f80u;
    return (uint16_t)(sign | (pm_f32_bits((float)r) >> 16));
}

/* Distances in representable values between an LFU result y and the
 * reference: fp32 against the reference rounded once to fp32 (rf), bf16 as a
 * bf16 store would round y (the numerics layer's RNE) against the reference
 * rounded once to bf16. A NaN y is "infinitely" far. */
#define PM_REF_NAN_DISTANCE (INT64_MAX / 4)

static inline int64_t pm_ref_ulp32(float y, float rf)
{
    if (y != y) return PM_REF_NAN_DISTANCE;
    int64_t d = pm_ref_key32(y) - pm_ref_key32(rf);
    return d < 0 ? -d : d;
}

static inline int64_t pm_ref_ulp16(float y, long double ref)
{
    if (y != y) return PM_REF_NAN_DISTANCE;
    int64_t d = pm_ref_key16(pm_f32_to_bf16(y)) - pm_ref_key16(pm_ref_bf16_of_ld(ref));
    return d < 0 ? -d : d;
}

#endif
