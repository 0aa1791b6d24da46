/* Polymorph kernel library, LLM part: emitters that APPEND the instructions of
 * one transformer step to a pm_builder, so a model runner can compose a whole
 * layer into one program (compiled once, run for every token). Activations
 * stay in SRAM between emitters (addresses named *_sram are SRAM byte
 * addresses of engine 0); weights, the RoPE table and the KV cache live in
 * DRAM. The kernels know nothing of GGUF or of any model.
 *
 * Conventions every emitter follows:
 * - it sets every register, DMA shape/stride and tensor shape/epilogue it
 *   uses (it may clobber r1..r31); nothing passes between emitters except
 *   memory;
 * - ordering between emitters comes from the hazard interlock
 *   (control.hazards = interlock; pm_llm_kernels_check refuses `report`);
 * - each emitter uses only its own scratch range, so unrelated emitters'
 *   work can overlap;
 * - nonlinear functions go through the LFU slots loaded by
 *   pm_emit_llm_prologue (PM_LLM_SLOT_*);
 * - every emitter has a plain C reference (pm_ref_*) computing the same
 *   bits on the host, used by the tests;
 * - errors name the emitter and the field ("rmsnorm: D = 0").
 * See docs/llm-kernels.md. */
#ifndef POLYMORPH_LLM_KERNELS_H
#define POLYMORPH_LLM_KERNELS_H

#include "polymorph/base.h"
#include "polymorph/config.h"
#include "polymorph/isa.h"
#include "polymorph/kernels.h"
#include "polymorph/lfu.h"
#include "polymorph/numerics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* LFU slots the LLM programs use (the config needs lfu.slots >= 4). */
enum {
    PM_LLM_SLOT_EXP = 0,
    PM_LLM_SLOT_SILU = 1,
    PM_LLM_SLOT_RSQRT = 2,
    PM_LLM_SLOT_RECIP = 3,
    PM_LLM_SLOTS = 4
};

/* The config can run LLM programs: interlock hazards, >= 4 LFU slots. */
pm_status pm_llm_kernels_check(const pm_config *cfg, pm_error *err);
/* lfu.cfg of the four slots; emit once at the start of every program. */
void pm_emit_llm_prologue(pm_builder *b);

/* ---- linear: Y = X x W^T, weights streamed from DRAM ----
 * X: M x K bf16 in SRAM (row-major). W: N x K in w_fmt in DRAM (GGUF
 * layout, one row of K per output). Y: M x N in y_fmt (f32 or bf16) in SRAM.
 * Sums follow the tensor unit (docs/tensor.md): fp32 fmaf in k order from +0.
 * Weights pass through scratch (double-buffered tiles); M == 1 streams them
 * weight-stationary, each weight read from DRAM once. */
typedef struct pm_linear_desc {
    uint32_t M, N, K;
    pm_format w_fmt;
    uint64_t w_dram;
    uint64_t x_sram;
    uint64_t y_sram;
    pm_format y_fmt;
    uint64_t scratch_sram, scratch_bytes;
    bool prefetched; /* pm_emit_linear_prefetch already issued the first tiles */
} pm_linear_desc;

pm_status pm_emit_linear(pm_builder *b, const pm_config *cfg, const pm_linear_desc *d, pm_error *err);
/* Issue the DMA of the first weight tiles now, so they overlap the vector work
 * emitted between this call and pm_emit_linear (same desc, prefetched = true). */
pm_status pm_emit_linear_prefetch(pm_builder *b, const pm_config *cfg, const pm_linear_desc *d, pm_error *err);
/* Scratch bytes for d on cfg (only the shape, formats and config matter):
 * *min_bytes the least pm_emit_linear accepts; *full_bytes enough for tiles
 * wide enough that the array keeps up with DRAM (M == 1: five array column
 * blocks on edge; smaller tiles make a long-K GEMV wait on the array).
 * Either pointer may be NULL. See docs/llm-kernels.md. */
pm_status pm_linear_scratch_bytes(const pm_config *cfg, const pm_linear_desc *d, uint64_t *min_bytes,
                                  uint64_t *full_bytes, pm_error *err);
/* Host reference: x M*K bf16 codes, w encoded, y M*N in y_fmt. */
pm_status pm_ref_linear(const pm_linear_desc *d, const uint16_t *x, const void *w, void *y, pm_error *err);

/* ---- embedding gather ----
 * For i < M: x[i][:] = decode(emb row ids[i]) as f32, where ids are int32 at
 * ids_sram, emb is vocab x D in emb_fmt at emb_dram. ids must be < vocab
 * (the host checks; a bad id faults on the DMA bounds). */
pm_status pm_emit_embed(pm_builder *b, const pm_config *cfg, uint32_t M, uint32_t D, pm_format emb_fmt,
                        uint64_t emb_dram, uint32_t vocab, uint64_t ids_sram, uint64_t x_sram, uint64_t scratch_sram,
                        uint64_t scratch_bytes, pm_error *err);
pm_status pm_ref_embed(uint32_t M, uint32_t D, pm_format emb_fmt, const void *emb, const int32_t *ids, float *x,
                       pm_error *err);

/* ---- RMSNorm ----
 * y[i] = x[i] * rsqrt(mean(x[i]^2) + eps) * w, x f32 M x D in SRAM, w f32 D
 * in DRAM (loaded into scratch), y M x D in y_fmt (f32 or bf16) in SRAM. */
pm_status pm_emit_rmsnorm(pm_builder *b, const pm_config *cfg, uint32_t M, uint32_t D, uint64_t x_sram,
                          uint64_t w_dram, float eps, uint64_t y_sram, pm_format y_fmt, uint64_t scratch_sram,
                          uint64_t scratch_bytes, pm_error *err);
pm_status pm_ref_rmsnorm(uint32_t M, uint32_t D, const float *x, const float *w, float eps, void *y, pm_format y_fmt,
                         pm_error *err);

/* ---- RoPE (rotate-half layout) ----
 * x: f32 in SRAM, M rows of row_elems, the heads to rotate at x_sram + row
 * start: n_heads heads of head_dim. Within a head the first half holds the
 * even features and the second half the odd features of the GGUF layout
 * (the runner permutes the Q and K weight rows with pm_rope_permute_rows), so
 * out_lo = lo*cos - hi*sin, out_hi = lo*sin + hi*cos, in place.
 * Row i is at position pos0 + i, pos0 the uint32 at pos_sram. table_dram:
 * f32 [max_ctx][head_dim/2] cos, then [max_ctx][head_dim/2] sin. */
pm_status pm_emit_rope(pm_builder *b, const pm_config *cfg, uint32_t M, uint32_t n_heads, uint32_t head_dim,
                       uint64_t x_sram, uint32_t row_elems, uint64_t pos_sram, uint64_t table_dram, uint32_t max_ctx,
                       uint64_t scratch_sram, uint64_t scratch_bytes, pm_error *err);
/* Host: the table for theta_i = base^(-2i/head_dim) (times 1/freq_factors[i]
 * when freq_factors is non-NULL, Llama 3 style), computed in double, stored
 * f32; table holds 2 * max_ctx * head_dim/2 floats. */
void pm_rope_table(float base, uint32_t head_dim, uint32_t max_ctx, const float *freq_factors, float *table);
/* Host: row permutation of a GGUF Q or K weight (n_heads*head_dim rows) into
 * the rotate-half layout: new row h*hd + j takes old row h*hd + 2j (j < hd/2)
 * and h*hd + 2(j-hd/2)+1 (j >= hd/2). perm[new] = old. */
void pm_rope_permute_rows(uint32_t n_heads, uint32_t head_dim, uint32_t *perm);
pm_status pm_ref_rope(uint32_t M, uint32_t n_heads, uint32_t head_dim, float *x, uint32_t row_elems, uint32_t pos0,
                      const float *table, uint32_t max_ctx, pm_error *err);

/* ---- attention with a KV cache (causal, grouped-query) ----
 * Row i of the chunk (position pos0 + i, pos0 the uint32 at pos_sram) first
 * stores its k and v into the caches, then attends to positions 0..pos0+i.
 * Prefill (M > 1) is tiled flash-style with an online softmax; decode (M ==
 * 1) groups the n_heads/n_kv_heads query heads sharing a KV head. exp and the
 * reciprocal go through the LFUs. pos0 + M must not exceed max_ctx (the
 * emitted code does not check; the host does). */
typedef struct pm_attn_desc {
    uint32_t M;
    uint32_t n_heads, n_kv_heads, head_dim;
    uint32_t max_ctx;
    uint64_t qkv_sram;       /* f32 rows [q n_heads*hd | k n_kv*hd | v n_kv*hd], rope applied */
    uint32_t qkv_row_elems;  /* row stride in elements (>= (n_heads + 2 n_kv) * hd) */
    uint64_t kcache_dram;    /* bf16 [n_kv][max_ctx][hd] */
    uint64_t vcache_dram;    /* bf16 [n_kv][hd][max_ctx] (transposed: rows are B for P x V) */
    uint64_t pos_sram;
    uint64_t out_sram;       /* [M][n_heads*hd] in out_fmt */
    pm_format out_fmt;       /* bf16 or f32 */
    float scale;             /* usually 1/sqrt(hd) */
    uint64_t scratch_sram, scratch_bytes;
} pm_attn_desc;

pm_status pm_emit_attention(pm_builder *b, const pm_config *cfg, const pm_attn_desc *d, pm_error *err);
/* Bytes of scratch the emitter needs for this desc on this config. */
pm_status pm_attention_scratch_bytes(const pm_config *cfg, const pm_attn_desc *d, uint64_t *bytes, pm_error *err);
/* Host reference over host copies of the caches (updated in place, same
 * layouts), pos0 given directly. */
pm_status pm_ref_attention(const pm_attn_desc *d, const float *qkv, uint16_t *kcache, uint16_t *vcache, uint32_t pos0,
                           void *out, pm_error *err);

/* ---- SwiGLU ----
 * gu: f32 M rows of [gate F | up F] in SRAM; y[i][j] = silu(gate) * up in
 * y_fmt (bf16 or f32), M x F. */
pm_status pm_emit_swiglu(pm_builder *b, const pm_config *cfg, uint32_t M, uint32_t F, uint64_t gu_sram,
                         uint64_t y_sram, pm_format y_fmt, uint64_t scratch_sram, uint64_t scratch_bytes,
                         pm_error *err);
pm_status pm_ref_swiglu(uint32_t M, uint32_t F, const float *gu, void *y, pm_format y_fmt, pm_error *err);

/* ---- residual add: d = a + b, n f32 elements in SRAM ---- */
pm_status pm_emit_add(pm_builder *b, const pm_config *cfg, uint64_t n, uint64_t a_sram, uint64_t b_sram,
                      uint64_t d_sram, pm_error *err);

/* ---- top-k on device ----
 * x: n f32 in SRAM. Writes k records {int32 id, f32 value} at out_sram,
 * largest value first; ties go to the lower id; NaN never wins. k == 1 is
 * argmax. */
pm_status pm_emit_topk(pm_builder *b, const pm_config *cfg, uint32_t n, uint64_t x_sram, uint32_t k,
                       uint64_t out_sram, uint64_t scratch_sram, uint64_t scratch_bytes, pm_error *err);
pm_status pm_ref_topk(uint32_t n, const float *x, uint32_t k, int32_t *ids, float *vals, pm_error *err);
/* Scratch bytes pm_emit_topk needs for n elements. */
uint64_t pm_topk_scratch_bytes(uint32_t n, uint32_t k);

#ifdef __cplusplus
}
#endif
#endif
