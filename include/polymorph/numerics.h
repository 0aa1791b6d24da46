/* Polymorph numerics layer: every number format the engine stores, defined once.
 * The quantiser, the simulator (vector conversions, later tensor-unit weight
 * decode), the model loader and the tests all go through these functions.
 * Conventions: fp32 is the compute format; every storage format converts from
 * fp32 with its reference rounding (documented per format in docs/numerics.md)
 * and decodes back to fp32 exactly. */
#ifndef POLYMORPH_NUMERICS_H
#define POLYMORPH_NUMERICS_H

#include "polymorph/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The order is part of the ISA encoding (format fields hold these values):
 * append only. */
typedef enum pm_format {
    PM_FMT_F32 = 0,
    PM_FMT_BF16,
    PM_FMT_F16,
    PM_FMT_E4M3,   /* OCP fp8 E4M3 "fn": no inf, NaN = S.1111.111, max 448 */
    PM_FMT_E5M2,   /* OCP fp8 E5M2: IEEE-like, has inf and NaN, max 57344 */
    PM_FMT_E2M1,   /* OCP fp4 E2M1: no inf/NaN, max 6; two codes per byte, low nibble first */
    PM_FMT_INT8,   /* signed 8-bit integer, round-to-nearest-even, saturating */
    PM_FMT_INT4,   /* signed 4-bit integer [-8,7], RNE, saturating; low nibble first */
    PM_FMT_MXFP4,  /* OCP MX: block 32 of E2M1 + E8M0 shared scale */
    PM_FMT_MXFP8,  /* OCP MX: block 32 of E4M3 + E8M0 shared scale */
    PM_FMT_MXINT8, /* OCP MX: block 32 of int8 (fixed point, 2^-6 units) + E8M0 scale */
    PM_FMT_NVFP4,  /* block 16 of E2M1 + E4M3 block scale, fp32 tensor scale header */
    PM_FMT_IF4,    /* block 16, INT4 or E2M1 per block (lower squared error), choice in scale sign bit */
    PM_FMT_INT4B,  /* block 32 of int4 + bf16 scale */
    PM_FMT_Q4_0,   /* GGUF Q4_0: block 32, f16 d, 4-bit q, x = d*(q-8) */
    PM_FMT_Q4_1,   /* GGUF Q4_1: block 32, f16 d and m, x = d*q + m */
    PM_FMT_Q8_0,   /* GGUF Q8_0: block 32, f16 d, int8 q, x = d*q */
    PM_FMT_Q4_K,   /* GGUF Q4_K: block 256, f16 d, dmin, 8 x 6-bit scale/min, x = d*sc*q - dmin*m */
    PM_FMT_Q6_K,   /* GGUF Q6_K: block 256, 16 int8 scales, f16 d, 6-bit q, x = d*sc*(q-32) */
    PM_FMT_COUNT
} pm_format;

typedef struct pm_format_info {
    pm_format format;
    const char *name;        /* assembler / CLI spelling: "f32", "bf16", "e4m3", "mxfp4", "q4_0" ... */
    const char *description; /* one line for docs and --help */
    uint32_t block_elems;    /* 1 for element formats; 16, 32 or 256 for block formats */
    uint32_t block_bytes;    /* bytes per block; for sub-byte element formats, bytes per 2 elements */
    uint32_t header_bytes;   /* per-tensor header (NVFP4, IF4: the fp32 tensor scale), else 0 */
    uint32_t elem_bits;      /* bits of one element code (4, 6, 8, 16, 32) */
    bool is_float;           /* element codes are floating point */
    bool is_block;           /* elements share a stored scale */
} pm_format_info;

const pm_format_info *pm_format_get(pm_format format); /* NULL when out of range */
/* Parses the spelling in pm_format_info.name (case-insensitive). */
bool pm_format_from_name(const char *name, pm_format *out);

/* Storage bytes for n elements. Fails (returns false) when n is not a whole
 * number of blocks for a block format, or not even for a 4-bit element format. */
bool pm_format_bytes(pm_format format, size_t n, size_t *bytes);

/* Quantise n fp32 values into the format's packed storage with its reference
 * rounding. dst must hold pm_format_bytes(format, n). */
pm_status pm_format_encode(pm_format format, const float *src, size_t n, void *dst, pm_error *err);
/* Decode packed storage back to fp32 (exact for every format). */
pm_status pm_format_decode(pm_format format, const void *src, size_t n, float *dst, pm_error *err);

/* Scalar conversions, the building blocks of the above (RNE unless noted). */
uint16_t pm_f32_to_bf16(float x);
/* pm_f32_to_bf16 over an array (the same bits, without a call per element). */
void pm_f32_to_bf16_array(const float *src, size_t n, uint16_t *dst);
float pm_bf16_to_f32(uint16_t h);
uint16_t pm_f32_to_f16(float x);
float pm_f16_to_f32(uint16_t h);
uint8_t pm_f32_to_e4m3(float x);   /* out-of-range finite saturates? see docs/numerics.md */
float pm_e4m3_to_f32(uint8_t c);
uint8_t pm_f32_to_e5m2(float x);
float pm_e5m2_to_f32(uint8_t c);
uint8_t pm_f32_to_e2m1(float x);   /* 4-bit code in the low nibble */
float pm_e2m1_to_f32(uint8_t c);
int8_t pm_f32_to_int8(float x);
int8_t pm_f32_to_int4(float x);    /* value in [-8, 7] */
uint8_t pm_f32_to_e8m0(float x);   /* power-of-two scale code; 0xFF is NaN */
float pm_e8m0_to_f32(uint8_t c);

/* Float <-> bits without aliasing problems. */
static inline uint32_t pm_f32_bits(float x)
{
    union { float f; uint32_t u; } v = {.f = x};
    return v.u;
}
static inline float pm_f32_from_bits(uint32_t u)
{
    union { float f; uint32_t u; } v = {.u = u};
    return v.f;
}

#ifdef __cplusplus
}
#endif
#endif
