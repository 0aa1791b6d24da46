/* Private helpers shared by the LLM emitters (llm_*.c): loading any 64-bit
 * value into a register, contiguous and 2-D DMA, vector ops with n in a
 * register, the tensor shape/epilogue reset, and the SRAM range checks every
 * emitter applies to its descriptor. Owned by the linear part; see
 * docs/llm-kernels.md. */
#ifndef POLYMORPH_LLM_INTERNAL_H
#define POLYMORPH_LLM_INTERNAL_H

#include "polymorph/llm_kernels.h"

#include <stdbool.h>
#include <stdint.h>

/* The helpers below clobber only r1..r6 (PM_LLM_RT0..PM_LLM_RT5), so an
 * emitter keeps its own loop counters and pointers in r7..r31 across them. */
enum {
    PM_LLM_RT0 = 1, PM_LLM_RT1, PM_LLM_RT2, PM_LLM_RT3, PM_LLM_RT4, PM_LLM_RT5,
    PM_LLM_RFIRST_FREE = 7 /* first register the helpers never touch */
};

/* SRAM buffers that start on a port-width boundary spread over every bank. */
#define PM_LLM_ALIGN 256u

static inline uint64_t pm_llm_round_up(uint64_t v, uint64_t g)
{
    return (v + g - 1) / g * g;
}

static inline uint64_t pm_llm_ceil_div(uint64_t a, uint64_t b)
{
    return (a + b - 1) / b;
}

/* reg = value for any 64-bit value (one li when it fits the signed 48-bit
 * immediate, else li/shli/li/add through PM_LLM_RT5; reg must not be RT5
 * then). */
void pm_llm_li(pm_builder *b, int reg, uint64_t value);

/* DRAM -> SRAM (load) or SRAM -> DRAM (store) of `rows` rows of row_bytes,
 * rows dram_stride / sram_stride bytes apart (ignored for one row); sets the
 * DMA shape (planes 1) and strides itself. Uses RT0..RT5. */
void pm_llm_dma(pm_builder *b, bool load, uint64_t sram, uint64_t dram, uint64_t row_bytes, uint64_t rows,
                int64_t dram_stride, int64_t sram_stride);
/* Contiguous transfer of `bytes` (one row). */
void pm_llm_dma_ld(pm_builder *b, uint64_t sram, uint64_t dram, uint64_t bytes);
void pm_llm_dma_st(pm_builder *b, uint64_t dram, uint64_t sram, uint64_t bytes);

/* Vector ops with addresses and n loaded into RT0..RT4 first.
 * pm_llm_vbin: any "taaar" row (vadd, vsub, vmul, vmax, vmin, vcmpgt):
 *   d[i] = a[i] op bsrc[i], n elements of fmt.
 * pm_llm_vmov: d = a. pm_llm_vcvt: d (dst) = a (src), n elements.
 * pm_llm_vscalar: any "taarr" row (vadds, vmuls, vmaxs): d = a op s, s the
 *   fp32 value given (its bits in a register). */
void pm_llm_vbin(pm_builder *b, pm_opcode op, pm_format fmt, uint64_t d, uint64_t a, uint64_t bsrc, uint64_t n);
void pm_llm_vmov(pm_builder *b, pm_format fmt, uint64_t d, uint64_t a, uint64_t n);
void pm_llm_vcvt(pm_builder *b, pm_format dst, pm_format src, uint64_t d, uint64_t a, uint64_t n);
void pm_llm_vscalar(pm_builder *b, pm_opcode op, pm_format fmt, uint64_t d, uint64_t a, float s, uint64_t n);

/* tshape M, N, K with the dataflow imm (0 config, 1 os, 2 ws), through
 * RT0..RT2; pm_llm_tepi_none: epilogue off (bias 0, scale 1, mode 0). */
void pm_llm_tshape(pm_builder *b, uint64_t m, uint64_t n, uint64_t k, int dataflow);
void pm_llm_tepi_none(pm_builder *b);

/* [addr, addr + bytes) lies in one engine's SRAM; else an error
 * "<who>: <field> [a, b) is outside SRAM (0x... bytes)". bytes may be 0. */
pm_status pm_llm_check_sram(const pm_config *cfg, const char *who, const char *field, uint64_t addr, uint64_t bytes,
                            pm_error *err);
/* [addr, addr + bytes) lies in DRAM, same message shape. */
pm_status pm_llm_check_dram(const pm_config *cfg, const char *who, const char *field, uint64_t addr, uint64_t bytes,
                            pm_error *err);
/* Two non-empty ranges overlap. */
bool pm_llm_overlap(uint64_t a, uint64_t a_bytes, uint64_t b, uint64_t b_bytes);
/* Error "<who>: <fa> [..) overlaps <fb> [..)" when they overlap, else PM_OK. */
pm_status pm_llm_check_disjoint(const char *who, const char *fa, uint64_t a, uint64_t a_bytes, const char *fb,
                                uint64_t b, uint64_t b_bytes, pm_error *err);

#endif
