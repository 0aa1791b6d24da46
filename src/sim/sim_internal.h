/* Simulator internals shared by the src/sim files: the chip and engine state,
 * the per-instruction cost record every exec body fills, and the helpers the
 * bodies use (bounds checks, operand spans, scratch buffers, faults).
 * Nothing here is public API; see docs/simulator.md for the model. */
#ifndef POLYMORPH_SIM_INTERNAL_H
#define POLYMORPH_SIM_INTERNAL_H

#include "polymorph/lfu.h"
#include "polymorph/numerics.h"
#include "polymorph/sim.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PM_HIDDEN __attribute__((visibility("hidden")))

/* DRAM is sparse: fixed pages allocated on first write, zeros until then. */
#define PM_DRAM_PAGE_SHIFT 20
#define PM_DRAM_PAGE_BYTES ((uint64_t)1 << PM_DRAM_PAGE_SHIFT)

/* Memory kinds in address ranges (hazards): DRAM and SRAM reuse pm_mem_kind. */
#define PM_RANGE_DRAM ((uint8_t)PM_MEM_DRAM)
#define PM_RANGE_SRAM ((uint8_t)PM_MEM_SRAM)
#define PM_RANGE_ACCUM ((uint8_t)3)

#define PM_COST_MAX_RANGES 5
/* Element counts above this are rejected before any size arithmetic. */
#define PM_MAX_COUNT ((int64_t)1 << 40)
/* Trace recording stops after this many events (the file says so). */
#define PM_TRACE_MAX_EVENTS ((size_t)1 << 20)

typedef struct pm_range {
    uint8_t mem;   /* PM_RANGE_* */
    uint8_t write; /* 1 = written by the instruction, 0 = read */
    uint64_t lo, hi; /* [lo, hi) bytes */
} pm_range;

/* What the control core must do besides plain issue. */
enum pm_sync_kind {
    PM_SYNC_NONE = 0,
    PM_SYNC_HALT,
    PM_SYNC_FENCE,
    PM_SYNC_FLAG_WAIT,
    PM_SYNC_FLAG_SET,
    PM_SYNC_FLAG_ADD,
    PM_SYNC_MARK,
};

/* An output-stationary tmm/tmma's accumulator tile and fold schedule
 * (exec_tensor.c), so that a tmma continuing the same tile may start once
 * the sums it reads first are written, not when the whole tile has drained
 * (docs/tensor.md, "Chained tmma"). kind 0: not such an instruction. */
typedef struct pm_acc_chain {
    uint8_t kind;   /* 1 = os matmul, 2 = ws matmul */
    uint8_t reads;  /* continues the sums (tmma) */
    uint64_t acc_lo, m, n;
    uint64_t folds, period, k;
} pm_acc_chain;

/* Filled by an exec body: its functional effect is already done; this says
 * what it costs and what it touched, for the timing model and counters. */
typedef struct pm_cost {
    /* compute-bound cycles the unit is occupied; the scheduler adds the SRAM
     * port (sram_read_bytes + sram_write_bytes) and enforces >= 1 */
    uint64_t stream_cycles;
    uint64_t latency_cycles; /* pipeline depth: results visible this much after the stream ends */
    uint64_t dram_channel_bytes; /* DMA: bytes charged on the shared DRAM channel (bursts) */
    /* DMA and tensor: cycles its busiest SRAM bank needs (sim_banks.c).
     * Other units leave it 0: their SRAM ranges are exactly their contiguous
     * operands, and the scheduler counts the banks from those. */
    uint64_t sram_bank_cycles;
    uint64_t dram_read_bytes, dram_write_bytes;
    uint64_t sram_read_bytes, sram_write_bytes;
    uint64_t vector_elems, lfu_evals;
    uint64_t tensor_macs; /* useful multiply-accumulates of a tensor instruction */
    uint32_t next_pc;  /* preset to pc + 1 */
    bool branch_taken; /* a taken branch costs one bubble cycle (not `loop`) */
    uint8_t sync;      /* enum pm_sync_kind */
    uint32_t sync_mask;  /* fence: unit mask */
    uint32_t sync_flag;  /* flag index */
    int64_t sync_value;  /* flag value / mark id */
    pm_acc_chain chain;  /* tensor: accumulator chaining */
    uint8_t tensor_lane; /* tensor: 0 = the array (tmm, tmma), 1 = the epilogue datapath (tout) */
    uint8_t range_count;
    pm_range range[PM_COST_MAX_RANGES];
} pm_cost;

/* One instruction in a unit's window: issued, not known to have finished. */
typedef struct pm_inflight {
    uint64_t start, finish;
    uint32_t pc;
    uint8_t opcode;
    uint8_t range_count;
    pm_range range[PM_COST_MAX_RANGES];
    pm_acc_chain chain; /* period as run (stretched when the SRAM port bound it) */
} pm_inflight;

/* A shared bandwidth resource (the chip's DRAM channel, an engine's SRAM
 * port) as a calendar: sorted, disjoint [lo, hi) spans of cycles in
 * busy[head, count), each with the units per cycle already granted (cycles
 * not covered have none granted). A request takes, from its start on, up to
 * its rate of what each cycle has left until its amount is served; what was
 * granted earlier is never taken back (older instructions have priority). */
typedef struct pm_span {
    uint64_t lo, hi, used;
} pm_span;

typedef struct pm_timeline {
    uint64_t capacity; /* units per cycle */
    pm_span *busy;
    size_t head, count, cap;
    pm_span *scratch; /* the spans a request rewrites, reused */
    size_t scratch_cap;
} pm_timeline;

typedef struct pm_unit_state {
    uint64_t free_cycle;  /* earliest start of the unit's next instruction */
    uint64_t lane_free;   /* tensor: the same for the epilogue datapath (free_cycle: the array) */
    uint64_t fold_end;    /* tensor: last os fold's start + K of the latest os matmul (output chain) */
    uint64_t drain_cycle; /* when everything issued to it has finished */
    pm_inflight *ring;    /* queue_depth entries, oldest at head */
    uint32_t head, count;
} pm_unit_state;

enum pm_engine_state {
    PM_ENGINE_IDLE = 0, /* no program, or not part of this run */
    PM_ENGINE_RUNNING,
    PM_ENGINE_BLOCKED,  /* flag wait with nothing pending that could satisfy it */
    PM_ENGINE_HALTED,
};

typedef struct pm_sim pm_sim;

/* One DMA descriptor as issued: byte 0 of each side, the shape, the strides. */
typedef struct pm_dma_desc {
    int64_t sram, dram;
    int64_t row_bytes, rows, planes;
    int64_t sram_row_stride, sram_plane_stride, dram_row_stride, dram_plane_stride;
} pm_dma_desc;

/* A dma.ld whose host copy is deferred (shadow.c): the SRAM bytes it wrote
 * are, for every observer, those of its DRAM source, copied the moment
 * anything else touches SRAM [sram_lo, sram_hi) or writes DRAM [dram_lo,
 * dram_hi) (docs/simulator.md, "Deferred weight copies"). */
typedef struct pm_shadow {
    pm_dma_desc d;
    uint64_t sram_lo, sram_hi, dram_lo, dram_hi; /* extents (the SRAM one may have gaps) */
} pm_shadow;

/* Live shadows per engine: the weight double buffer needs two; a new one
 * beyond this copies the oldest first. */
#define PM_SHADOW_MAX 8

typedef struct pm_shadow_stats {
    uint64_t deferred, deferred_bytes; /* loads whose copy was deferred */
    uint64_t copied, copied_bytes;     /* ... and later copied after all */
    uint64_t dropped;                  /* ... overwritten whole before anything read them */
    uint64_t trimmed;                  /* ... overwritten in part: the rest stays deferred */
} pm_shadow_stats;

typedef struct pm_engine {
    pm_sim *sim;
    const pm_config *cfg;
    uint32_t id;

    /* instruction memory (decoded at load time) */
    pm_insn *code;
    uint32_t code_count;
    uint32_t entry;

    /* architectural state */
    int64_t regs[PM_NUM_REGS];
    uint8_t *sram;
    float *accum; /* accum_bytes / 4 fp32 words, for the tensor unit */
    pm_lfu_table *lfu;
    bool *lfu_loaded;
    int64_t dma_row_bytes, dma_rows, dma_planes;
    int64_t dma_dram_row_stride, dma_dram_plane_stride;
    int64_t dma_sram_row_stride, dma_sram_plane_stride;

    /* scratch for the functional kernels, grown on demand, never per insn */
    float *fscratch;
    size_t fscratch_cap;
    uint8_t *bscratch;
    size_t bscratch_cap;

    /* run state */
    uint8_t state;
    uint32_t pc;
    uint64_t t;        /* next issue cycle */
    uint64_t done_cycle;
    uint64_t retired;
    uint32_t wait_flag;
    pm_unit_state unit[PM_UNIT_COUNT];
    pm_timeline sram_port; /* the engine's SRAM port, shared by its units */
    struct pm_tensor_state *tensor; /* tensor unit state (exec_tensor.c); NULL until first use */
    struct pm_fabric *fabric; /* LFU fabric state (exec_fabric.c); NULL until fab.cfg */

    /* deferred DMA copies, pairwise disjoint in SRAM; kept across runs */
    pm_shadow shadow[PM_SHADOW_MAX];
    uint32_t shadow_count;
    uint64_t shadow_lo, shadow_hi; /* union of their SRAM extents, for the one-compare check */
} pm_engine;

typedef struct pm_flag_event {
    uint64_t time, seq;
    uint32_t flag;
    uint8_t add; /* 1 = add, 0 = set */
    int64_t value;
} pm_flag_event;

enum pm_trace_kind { PM_TRACE_UNIT = 0, PM_TRACE_STALL, PM_TRACE_MARK };

typedef struct pm_trace_event {
    uint64_t start, dur;
    int64_t id; /* mark id */
    uint32_t pc;
    uint16_t engine;
    uint8_t unit, kind, opcode;
} pm_trace_event;

struct pm_sim {
    pm_config cfg;

    uint8_t **dram_pages;
    uint64_t dram_page_count;

    int64_t *flags;
    pm_flag_event *events; /* pending flag writes, sorted by (time, seq) */
    size_t event_head, event_count, event_cap;
    uint64_t event_seq;
    bool resched;

    pm_engine *engines;

    /* timing constants derived from the config */
    double dram_bytes_per_cycle;
    uint64_t dram_latency_cycles;
    pm_timeline dram_channel; /* shared by every engine */
    bool share_sram_port;     /* units of an engine compete for its SRAM port */
    struct pm_gemm_pool *gemm_pool; /* host threads of the tensor unit's matmul, created on first use */
    unsigned gemm_threads;          /* pm_sim_set_threads; 0 = one per online CPU */

    pm_counters total; /* integer counts; energies computed on read */

    bool shadow_on;        /* POLYMORPH_SHADOW=0 at pm_sim_create: every DMA copies at once */
    uint32_t shadow_live;  /* shadows on all engines, for the DRAM-write check */
    pm_shadow_stats shadow_stats;

    /* trace of the current run */
    bool tracing;
    pm_trace_event *trace;
    size_t trace_count, trace_cap;
    uint64_t trace_dropped;
};

/* ---- dispatch (generated from isa_table.h) ---- */
typedef pm_status (*pm_exec_fn)(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err);
#define PM_INSN(id, opc, mn, unit, ops, doc) \
    PM_HIDDEN pm_status pm_exec_##id(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err);
#include "polymorph/isa_table.h"
#undef PM_INSN

typedef struct pm_op_meta {
    const char *mnemonic; /* NULL: no row */
    pm_unit unit;
    pm_exec_fn exec;
} pm_op_meta;
PM_HIDDEN extern const pm_op_meta pm_sim_ops[256];

/* ---- helpers (sim_mem.c) ---- */
/* A fault cause; the scheduler prefixes "engine E pc 0xP (mn): ". */
PM_HIDDEN pm_status pm_sim_fault(pm_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
PM_HIDDEN pm_status pm_sim_dram_copy_out(const pm_sim *sim, uint64_t addr, void *dst, size_t n);
/* Allocates every page of [addr, addr+n) (so a later copy cannot fail half way). */
PM_HIDDEN pm_status pm_sim_dram_reserve(pm_sim *sim, uint64_t addr, uint64_t n, pm_error *err);
PM_HIDDEN void pm_sim_dram_copy_in(pm_sim *sim, uint64_t addr, const void *src, size_t n); /* pages reserved */

/* Register value of an 'a' operand and whether it post-increments. */
static inline unsigned pm_areg(int64_t op) { return (unsigned)(op & 31); }
static inline bool pm_areg_inc(int64_t op) { return (op & PM_AREG_INC) != 0; }

/* Bounds-check an SRAM access of `bytes` at the address in the operand's
 * register, record its range in the cost, return the offset. */
PM_HIDDEN pm_status pm_sram_operand(pm_engine *e, int64_t op, uint64_t bytes, bool write, pm_cost *c,
                                    uint64_t *offset, pm_error *err);
PM_HIDDEN void pm_post_increment(pm_engine *e, int64_t op, uint64_t bytes);
/* Element count from a register: fault when negative or absurd. */
PM_HIDDEN pm_status pm_count_operand(const pm_engine *e, int64_t reg, const char *what, uint64_t *n,
                                     pm_error *err);
PM_HIDDEN pm_status pm_format_operand(int64_t op, const char *mnemonic, bool arith_only, pm_format *f,
                                      pm_error *err);
PM_HIDDEN void pm_cost_range(pm_cost *c, uint8_t mem, bool write, uint64_t lo, uint64_t hi);
PM_HIDDEN pm_status pm_scratch_floats(pm_engine *e, size_t n, float **out, pm_error *err);
PM_HIDDEN pm_status pm_scratch_bytes(pm_engine *e, size_t n, uint8_t **out, pm_error *err);
static inline uint64_t pm_ceil_div(uint64_t a, uint64_t b) { return b ? (a + b - 1) / b : a; }

/* ---- deferred DMA copies (shadow.c) ---- */
/* The host copy of a dma.ld (in slices on the matmul threads when large). */
PM_HIDDEN void pm_dma_load_copy(pm_engine *e, const pm_dma_desc *d);
/* A dma.ld with this descriptor and these extents is about to write SRAM:
 * shadows under it are dropped (a contiguous load covering one whole) or
 * copied; then the load is deferred when `defer`, else copied now. */
PM_HIDDEN void pm_shadow_load(pm_engine *e, const pm_dma_desc *d, uint64_t slo, uint64_t shi, uint64_t dlo,
                              uint64_t dhi, bool sram_contiguous, bool defer);
/* Copy every shadow of the engine overlapping SRAM [lo, hi) / of any engine
 * whose DRAM source overlaps [lo, hi). The inline checks are the fast path. */
PM_HIDDEN void pm_shadow_copy_sram(pm_engine *e, uint64_t lo, uint64_t hi);
PM_HIDDEN void pm_shadow_copy_dram(pm_sim *sim, uint64_t lo, uint64_t hi);
static inline void pm_shadow_touch(pm_engine *e, uint64_t lo, uint64_t hi)
{
    if (e->shadow_count && lo < e->shadow_hi && e->shadow_lo < hi) pm_shadow_copy_sram(e, lo, hi);
}
static inline void pm_shadow_dram_touch(pm_sim *sim, uint64_t lo, uint64_t hi)
{
    if (sim->shadow_live) pm_shadow_copy_dram(sim, lo, hi);
}
/* For tests: what the shadows did on this simulator. */
PM_HIDDEN void pm_sim_shadow_stats(const pm_sim *sim, pm_shadow_stats *out);
/* pm_sram_operand for the B operand of tmm/tmma: does not copy shadows (a
 * cache hit never reads the bytes; the caller copies on a miss). */
PM_HIDDEN pm_status pm_sram_operand_deferred(pm_engine *e, int64_t op, uint64_t bytes, pm_cost *c,
                                             uint64_t *offset, pm_error *err);

/* ---- bandwidth calendars (sim_timeline.c) ---- */
/* Empty the calendar (a new run) and set its capacity in units per cycle. */
PM_HIDDEN void pm_timeline_clear(pm_timeline *tl, uint64_t capacity);
PM_HIDDEN void pm_timeline_free(pm_timeline *tl);
/* Drop spans that end at or before `cycle`: no later request can start before it. */
PM_HIDDEN void pm_timeline_forget(pm_timeline *tl, uint64_t cycle);
/* Serve `amount` units at up to `rate` units per cycle (1..capacity), from
 * cycle `at` on, out of what earlier requests left. *first is the first cycle
 * that served some, *end one past the last (amount 0: both `at`). */
PM_HIDDEN pm_status pm_timeline_take(pm_timeline *tl, uint64_t at, uint64_t amount, uint64_t rate, uint64_t *first,
                                     uint64_t *end, pm_error *err);

/* ---- SRAM banks (sim_banks.c) ---- */
#define PM_MAX_SRAM_BANKS 256u /* the config's upper bound for sram.banks */

/* Bytes per bank of a set of contiguous ranges, kept as difference arrays so
 * adding a range is O(1) and reading the busiest bank O(banks). */
typedef struct pm_banks {
    uint32_t banks;
    uint64_t width;  /* bytes per bank per cycle = sram.bytes_per_cycle / sram.banks */
    uint64_t period; /* banks * width: the interleave repeats every this many bytes */
    uint64_t rounds; /* whole periods covered: width bytes in every bank each */
    int64_t step[PM_MAX_SRAM_BANKS + 1]; /* prefix-summed over banks */
    int64_t part[PM_MAX_SRAM_BANKS];     /* one bank only */
} pm_banks;

PM_HIDDEN void pm_banks_init(pm_banks *b, const pm_config *cfg);
PM_HIDDEN void pm_banks_add(pm_banks *b, uint64_t addr, uint64_t bytes);
/* The most bytes any one bank holds. */
PM_HIDDEN uint64_t pm_banks_busiest(const pm_banks *b);
/* Cycles the busiest bank needs: ceil(busiest / width); 0 when empty. */
PM_HIDDEN uint64_t pm_banks_cycles(const pm_banks *b);
/* Bytes in each bank (bytes[0 .. banks)), for callers that weigh several sets. */
PM_HIDDEN void pm_banks_per_bank(const pm_banks *b, uint64_t *bytes);

/* ---- LFU fabric (exec_fabric.c) ---- */
PM_HIDDEN void pm_fabric_free(struct pm_fabric *f);

/* ---- tensor unit (exec_tensor.c) ---- */
PM_HIDDEN void pm_tensor_reset(pm_engine *e); /* a new run: no shape, no epilogue */
PM_HIDDEN void pm_tensor_free(pm_engine *e);
PM_HIDDEN void pm_tensor_sim_free(pm_sim *sim); /* the host thread pool */
/* Earliest start of tensor instruction `next` as far as the earlier tensor
 * instruction `prev` (whose writes it reads) is concerned; false when only
 * prev's finish will do. */
PM_HIDDEN bool pm_tensor_chain_ready(const pm_config *cfg, const pm_inflight *prev, const pm_cost *next,
                                     uint64_t *ready);
/* Earliest start of an os matmul on the array after the previous os one
 * (its last fold's outputs must leave the output chain first), and the
 * record of an os matmul just placed at [start, free). */
PM_HIDDEN uint64_t pm_tensor_array_ready(const pm_config *cfg, const pm_unit_state *us, const pm_cost *c);
PM_HIDDEN void pm_tensor_array_placed(pm_unit_state *us, const pm_cost *c, uint64_t start, uint64_t free_cycle);

/* ---- trace (sim_trace.c) ---- */
PM_HIDDEN void pm_trace_record(pm_sim *sim, uint8_t kind, uint32_t engine, uint8_t unit, uint8_t opcode,
                               uint32_t pc, uint64_t start, uint64_t dur, int64_t id);
PM_HIDDEN pm_status pm_trace_write(pm_sim *sim, const char *path, pm_status run_status, pm_error *err);

#endif
