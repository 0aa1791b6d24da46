/* Polymorph kernel library: C builders that emit ISA programs for the
 * engine (through the instruction table's encoder), each with a plain C
 * reference that computes the same bits on the host. Builders know the
 * config (array size, SRAM, accumulator, engines) but nothing of models.
 * See docs/kernels.md. */
#ifndef POLYMORPH_KERNELS_H
#define POLYMORPH_KERNELS_H

#include "polymorph/base.h"
#include "polymorph/config.h"
#include "polymorph/isa.h"
#include "polymorph/lfu.h"
#include "polymorph/numerics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- matrix multiply: Y[b] = epilogue(X[b] x W[b]^T) ----
 * X: M x K bf16, row-major, in DRAM at x_addr (+ b * x_batch_stride bytes).
 * W: N x K in w_fmt (one row of K weights per output, as GGUF stores them),
 *    one encoded tensor at w_addr (+ b * w_batch_stride); block formats need
 *    K to be a whole number of blocks.
 * Y: M x N in out_fmt (f32, bf16, f16, ...; no NVFP4/IF4) at y_addr
 *    (+ b * y_batch_stride).
 * Sums are fp32 in k order from +0 (docs/tensor.md), so the result does not
 * depend on the tiling, the dataflow or the number of engines.
 * Epilogue, in this order: v = acc * scale (if has_scale); v += bias[n]
 * (fp32 in DRAM at bias_addr, one vector for every batch entry, if has_bias);
 * v = f(v) through the LFU table of built-in act (if has_act, LFU slot 0);
 * then rounded to out_fmt. M == 1 always runs weight-stationary. */
typedef struct pm_matmul_desc {
    uint32_t M, N, K;
    uint32_t batch;          /* 1 for a plain matmul */
    pm_format w_fmt;
    pm_format out_fmt;
    uint64_t x_addr, w_addr, y_addr, bias_addr;
    uint64_t x_batch_stride, w_batch_stride, y_batch_stride; /* bytes; 0 for batch 1 */
    bool has_scale, has_bias, has_act;
    float scale;
    pm_lfu_func act;
    uint32_t engines;        /* engines to split across (1..cfg engines), flags sync; 0 = 1 */
    pm_dataflow dataflow;    /* requested array dataflow */
    bool dataflow_from_config; /* true: use cfg->tensor_dataflow instead of .dataflow */
    bool dataflow_auto;      /* true: the planner picks os or ws (whichever it expects faster;
                                a ragged M such as 33 rows wastes most of an os fold); init: false */
    uint32_t sync_flag;      /* chip flag used to join the engines (engines > 1); init: 0 */
} pm_matmul_desc;

/* Fill d with a plain single-engine matmul of the given shape and formats,
 * no epilogue, dataflow from the config, batch 1, addresses 0. */
void pm_matmul_desc_init(pm_matmul_desc *d, uint32_t M, uint32_t N, uint32_t K, pm_format w_fmt, pm_format out_fmt);

/* Emit a program computing d on a chip configured by cfg. Tiles are sized to
 * the SRAM and accumulator memory and double-buffered so DMA hides behind the
 * array; M == 1 selects the streaming GEMV schedule (weight-stationary,
 * weights read from DRAM exactly once). The program ends with halt; for
 * engines > 1 each engine takes a share of the batch, of M or of N, and
 * engine 0 waits on flags for the others. Under control.hazards = report
 * the program carries the fences the interlock would otherwise provide.
 * Errors name the field (shape, format, address range) that cannot be
 * honoured. See docs/kernels.md. */
pm_status pm_kernel_matmul(const pm_config *cfg, const pm_matmul_desc *d, pm_program *out, pm_error *err);

/* The tiling pm_kernel_matmul would choose (for reports, benchmarks, docs). */
typedef struct pm_matmul_plan {
    uint32_t tile_m, tile_n, tile_k; /* output tile and K chunk (the last ones may be ragged) */
    bool a_resident;   /* an M block's whole K stays in SRAM and serves every N tile */
    bool ramp;         /* GEMV: K chunks of the first and last N tile grow and shrink */
    pm_dataflow dataflow;
    uint32_t engines;
    bool split_batch;  /* engines take whole batch entries */
    bool split_m;      /* else engines take ranges of M (else ranges of N) */
    double est_cycles; /* the planner's own estimate, for ranking tilings */
} pm_matmul_plan;

pm_status pm_matmul_plan_get(const pm_config *cfg, const pm_matmul_desc *d, pm_matmul_plan *out, pm_error *err);

/* The plain C reference: the same bits the engine produces. x is M*K bf16
 * codes per batch, w the encoded weights per batch, bias N floats (or NULL),
 * y receives M*N values in out_fmt per batch (pm_format_bytes of M*N). */
pm_status pm_ref_matmul(const pm_matmul_desc *d, const uint16_t *x, const void *w, const float *bias, void *y,
                        pm_error *err);

/* Bytes of each operand of one batch entry (for allocation). */
pm_status pm_matmul_sizes(const pm_matmul_desc *d, uint64_t *x_bytes, uint64_t *w_bytes, uint64_t *y_bytes,
                          pm_error *err);

/* ---- a small program builder used by every kernel ----
 * Instructions are appended through pm_encode, so a kernel can only emit
 * what the instruction table defines. Labels are forward-resolvable. */
typedef struct pm_builder pm_builder;

pm_status pm_builder_create(pm_builder **out, pm_error *err);
void pm_builder_destroy(pm_builder *b);
/* Append one instruction: opcode and up to PM_MAX_OPERANDS operands in table
 * order (formats first). The first error sticks and is returned by finish. */
void pm_builder_emit(pm_builder *b, pm_opcode op, int64_t o0, int64_t o1, int64_t o2, int64_t o3, int64_t o4,
                     int64_t o5);
/* Current instruction index (a label's value). */
uint32_t pm_builder_pc(const pm_builder *b);
/* Labels: pm_builder_label makes a new unbound label, pm_builder_bind binds
 * it to the current pc, and pm_builder_ref(label) is the operand value to
 * pass for a label ('l') operand before or after binding; finish patches the
 * references and fails on a label never bound. */
uint32_t pm_builder_label(pm_builder *b);
void pm_builder_bind(pm_builder *b, uint32_t label);
int64_t pm_builder_ref(uint32_t label);
/* The sticky error so far (PM_OK when none). */
pm_status pm_builder_status(const pm_builder *b, pm_error *err);
/* Move the finished code into out (sections and symbols untouched). */
pm_status pm_builder_finish(pm_builder *b, pm_program *out, pm_error *err);

#ifdef __cplusplus
}
#endif
#endif
