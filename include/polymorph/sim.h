/* Polymorph simulator layer: a chip of engines that executes programs
 * bit-exactly (functional model) while a timing model computes when each unit
 * starts and finishes each instruction. Faults stop the run with the engine,
 * instruction address and cause; the host never crashes. */
#ifndef POLYMORPH_SIM_H
#define POLYMORPH_SIM_H

#include "polymorph/base.h"
#include "polymorph/config.h"
#include "polymorph/isa.h"
#include "polymorph/lfu.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pm_sim pm_sim;

typedef struct pm_run_options {
    uint64_t max_instructions; /* watchdog per run; 0 = config's watchdog_instructions */
    const char *trace_path;    /* Chrome/Perfetto trace JSON written here when non-NULL */
} pm_run_options;

typedef struct pm_unit_counters {
    uint64_t instructions;
    uint64_t busy_cycles;  /* summed over engines */
    double energy_j;       /* compute_energy_j + the memory traffic its instructions caused */
    uint64_t dram_bytes;   /* DRAM bytes its instructions read + wrote */
    uint64_t sram_bytes;   /* SRAM bytes its instructions read + wrote */
    double compute_energy_j; /* its own events (issue, elements, evaluations, MACs) */
    double memory_energy_j;  /* dram_bytes and sram_bytes at the memories' pJ/byte */
} pm_unit_counters;

typedef struct pm_counters {
    uint64_t cycles;       /* simulated cycles of all runs so far (each run: until the last unit drains) */
    double seconds;        /* cycles / clock */
    uint64_t instructions; /* retired instructions, all engines */
    uint32_t engines;
    pm_unit_counters unit[PM_UNIT_COUNT];
    uint64_t dram_read_bytes, dram_write_bytes;
    uint64_t sram_read_bytes, sram_write_bytes;
    uint64_t vector_elems;     /* elements processed by the vector unit */
    uint64_t lfu_evals;        /* LFU evaluations */
    uint64_t tensor_macs;
    uint64_t stall_cycles;     /* issue stalls (queues full, fences, flags, interlocks) */
    double dram_energy_j, sram_energy_j, static_energy_j;
    double energy_j;           /* total: sum of unit[].energy_j + static
                                  = compute_energy_j + dram + sram + static */
    double compute_energy_j;   /* sum of unit[].compute_energy_j */
} pm_counters;

pm_status pm_sim_create(const pm_config *cfg, pm_sim **out, pm_error *err);
void pm_sim_destroy(pm_sim *sim);
const pm_config *pm_sim_config(const pm_sim *sim);

/* Host access to device memories; every access is bounds-checked. */
pm_status pm_sim_dram_write(pm_sim *sim, uint64_t addr, const void *src, size_t n, pm_error *err);
pm_status pm_sim_dram_read(pm_sim *sim, uint64_t addr, void *dst, size_t n, pm_error *err);
pm_status pm_sim_sram_write(pm_sim *sim, uint32_t engine, uint64_t addr, const void *src, size_t n, pm_error *err);
pm_status pm_sim_sram_read(pm_sim *sim, uint32_t engine, uint64_t addr, void *dst, size_t n, pm_error *err);

/* Load a program into the engines in engine_mask (bit e = engine e; 0 = all):
 * code into each engine's instruction memory, SRAM sections into each
 * engine's SRAM, DRAM sections into DRAM. Engines not in the mask stay idle. */
pm_status pm_sim_load_program(pm_sim *sim, const pm_program *prog, uint64_t engine_mask, pm_error *err);

/* Run every loaded engine from its entry until all halt. On a fault the
 * message reads "engine E pc 0xADDR (mnemonic): cause". Functional state
 * changes already made by instructions before the fault remain. */
pm_status pm_sim_run(pm_sim *sim, const pm_run_options *opts, pm_error *err);

/* SRAM port sharing (docs/simulator.md, "SRAM port"): when on, an engine's
 * units compete for its sram.bytes_per_cycle (a DMA streaming next to a
 * port-bound vector op slows it; the default); when off, each instruction
 * is bounded by the port on its own, as if it had it alone. Applies to the
 * following runs. */
void pm_sim_share_sram_port(pm_sim *sim, bool on);

void pm_sim_counters(const pm_sim *sim, pm_counters *out);
void pm_sim_reset_counters(pm_sim *sim);

/* Scalar register file of an engine after a run (tests, debugging). */
pm_status pm_sim_reg_read(const pm_sim *sim, uint32_t engine, unsigned reg, int64_t *value, pm_error *err);

/* Host threads the tensor unit's functional matmul may use (0 = one per
 * online CPU, the default). Results are bit-identical for every count. */
void pm_sim_set_threads(pm_sim *sim, unsigned threads);

/* ---- the decoded-weight cache (docs/simulator.md, "Decoded-weight cache") ----
 * A host speed-up only: weights a DMA copied unchanged from DRAM are decoded
 * and repacked for the functional matmul once per content, not once per
 * tmm/tmma. Bits, cycles and counters are identical with it on or off. */
typedef struct pm_wcache_stats {
    uint64_t hits;    /* tmm/tmma whose weights came from the cache */
    uint64_t misses;  /* tmm/tmma whose weights were decoded (then kept when fills grew) */
    uint64_t fills;   /* decoded weights kept */
    uint64_t dropped; /* kept weights dropped because their DRAM bytes changed */
    uint64_t compact; /* fills kept as 1.25-byte compact panels (Q8_0, Q4_0, Q4_1) */
    uint64_t entries, bytes; /* held now, all engines */
} pm_wcache_stats;
void pm_sim_wcache_stats(const pm_sim *sim, pm_wcache_stats *out);
/* Budget per engine in MiB (0 = off), instead of POLYMORPH_WCACHE_MB (default
 * 2048); a smaller budget drops what is held. */
void pm_sim_set_wcache_mb(pm_sim *sim, uint64_t mb);

/* ---- tensor unit: the cycle-by-cycle reference model (src/sim/systolic_cycle.c) ----
 * A slow, literal simulation of every processing element every cycle (docs/
 * tensor.md, "Cycle model"), for small shapes: the tests check that the fast
 * model's bits equal these and its cycles match. One tmm/tmma instruction. */
typedef struct pm_systolic_problem {
    uint32_t rows, cols;         /* array R x C */
    uint32_t weight_load_rows;   /* ws: weight rows preloaded per cycle (1..rows) */
    pm_dataflow dataflow;
    uint32_t m, n, k;            /* acc[m x n] (+)= A[m x k] x B[n x k]^T */
    bool accumulate;             /* tmma: sums continue from acc */
    const uint16_t *a;           /* m x k bf16 codes, row-major */
    const uint16_t *b;           /* n x k bf16 codes (weights already rounded to bf16) */
    float *acc;                  /* m x n fp32, read when accumulate; written */
    /* Tests only, 0 normally: added to the os fold period max(k, rows) or to
     * the ws K-tile wait (rows + 1). A negative value must make the model
     * report the collision or read-before-write it causes. */
    int32_t period_delta;
    /* os only: run 1 + repeat instructions on the same tile, each later one
     * a tmma continuing the sums, started as the fast model chains them:
     * after the previous one's folds, and at least K + 2R - 1 cycles after
     * its start (more when its fold period is longer; plus chain_delta,
     * tests only). chunks NULL: each repeats all of A and B. Otherwise
     * chunks[q] (summing to k) is instruction q's share of k: it multiplies
     * columns [k0, k0 + chunks[q]) of A and B (K-chunked accumulation). */
    uint32_t repeat;
    int32_t chain_delta;
    const uint32_t *chunks;
} pm_systolic_problem;

typedef struct pm_systolic_result {
    uint64_t cycles;             /* first operand in (cycle 0) to last accumulator write, inclusive */
    uint32_t max_acc_reads;      /* most accumulator reads in one cycle (<= cols) */
    uint32_t max_acc_writes;     /* most accumulator writes in one cycle (<= cols) */
} pm_systolic_result;

/* Fails (PM_ERR_INVALID) on a bad problem or, naming the PE and cycle, when
 * the micro-architecture's own rules are broken (a register overwritten
 * while still needed, a partial sum read before it was written). */
pm_status pm_systolic_cycle_run(const pm_systolic_problem *p, pm_systolic_result *out, pm_error *err);

/* ---- LFU fabric networks (src/sim/fabric_net.c, docs/fabric.md) ----
 * A KAN network as the fabric holds it: layer l maps widths[l] inputs to
 * widths[l+1] outputs; output j of layer l is the fp32 sum, in ascending
 * input order, of edge(l, j, i)(x_i), starting from edge(l, j, 0)'s value.
 * edges holds every edge's LFU table in (l, j, i) order. `fab.cfg` reads the
 * serialized form ("PMFN") from SRAM; kernel builders write it. */
#define PM_FABRIC_MAX_LAYERS 16
#define PM_FABRIC_MAX_WIDTH 65536u
#define PM_FABRIC_MAX_EDGES (1u << 22)
#define PM_FABRIC_SERIAL_VERSION 1

typedef struct pm_fabric_net {
    uint32_t layers;                              /* 1..PM_FABRIC_MAX_LAYERS */
    uint32_t widths[PM_FABRIC_MAX_LAYERS + 1];    /* each 1..PM_FABRIC_MAX_WIDTH */
    pm_lfu_table *edges;                          /* pm_fabric_net_edge_count() tables */
} pm_fabric_net;

/* Edges of the network (0 when the shape is invalid). */
uint64_t pm_fabric_net_edge_count(const pm_fabric_net *net);
/* Index of edge (l, j, i) in edges[]. */
uint64_t pm_fabric_net_edge_index(const pm_fabric_net *net, uint32_t l, uint32_t j, uint32_t i);
/* Shape and every table (names the layer and edge of a bad one). */
pm_status pm_fabric_net_validate(const pm_fabric_net *net, pm_error *err);
/* Frees the tables and the edge array (the struct itself is the caller's). */
void pm_fabric_net_free(pm_fabric_net *net);
/* Serialized form: see docs/fabric.md. serialize allocates *bytes (free()). */
pm_status pm_fabric_net_serialize(const pm_fabric_net *net, uint8_t **bytes, size_t *len, pm_error *err);
/* Validates everything, never reads past len; *used (optional) receives the
 * bytes the network occupies. Errors name the byte offset. */
pm_status pm_fabric_net_deserialize(const uint8_t *src, size_t len, pm_fabric_net *out, size_t *used,
                                    pm_error *err);

#ifdef __cplusplus
}
#endif
#endif
