/* Polymorph engine configuration (part of the sim layer): one struct that
 * describes a chip, parsed from a small INI-style text format. Each preset is
 * one file under configs/, compiled into the binary at build time so the
 * file stays the single source of truth. */
#ifndef POLYMORPH_CONFIG_H
#define POLYMORPH_CONFIG_H

#include "polymorph/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pm_dataflow {
    PM_DATAFLOW_OUTPUT_STATIONARY = 0, /* "os" */
    PM_DATAFLOW_WEIGHT_STATIONARY = 1, /* "ws" */
} pm_dataflow;

typedef enum pm_hazard_mode {
    PM_HAZARD_INTERLOCK = 0, /* "interlock": units stall on overlapping in-flight addresses */
    PM_HAZARD_REPORT = 1,    /* "report": no interlock; a missing fence stops the run with a hazard */
} pm_hazard_mode;

#define PM_CONFIG_NAME_MAX 64
#define PM_CONFIG_TEXT_MAX 256

typedef struct pm_config {
    char name[PM_CONFIG_NAME_MAX];
    char description[PM_CONFIG_TEXT_MAX];

    /* [chip] */
    double clock_mhz;            /* chip.clock_mhz */
    uint32_t engines;            /* chip.engines */
    uint32_t flags;              /* chip.flags: synchronisation flags shared by the engines */
    double tdp_w;                /* chip.tdp_w: rated total power (for reports; 0 = unknown) */

    /* [tensor] (used by the tensor-unit issue) */
    uint32_t tensor_rows;        /* tensor.rows */
    uint32_t tensor_cols;        /* tensor.cols */
    pm_dataflow tensor_dataflow; /* tensor.dataflow = os | ws */
    uint32_t tensor_weight_load_rows; /* tensor.weight_load_rows: weight-stationary preload rate,
                                         array rows of weights written per cycle (1..rows) */

    /* [vector] */
    uint32_t vector_lanes;          /* vector.lanes */
    uint32_t vector_latency_cycles; /* vector.latency_cycles: pipeline fill */

    /* [lfu] */
    uint32_t lfu_count;          /* lfu.count: LFUs per engine (normally = lanes) */
    uint32_t lfu_slots;          /* lfu.slots: resident tables, 1..8 */
    uint32_t lfu_latency_cycles; /* lfu.latency_cycles: pipeline depth */
    uint32_t lfu_load_bytes_per_cycle; /* lfu.load_bytes_per_cycle: table load rate */

    /* [sram] per engine */
    uint64_t sram_bytes;          /* sram.bytes */
    uint32_t sram_banks;          /* sram.banks */
    uint32_t sram_bytes_per_cycle;/* sram.bytes_per_cycle: total port bandwidth */
    uint64_t accum_bytes;         /* sram.accumulator_bytes: fp32 accumulator memory */

    /* [dram] shared by the engines */
    uint64_t dram_bytes;       /* dram.bytes */
    double dram_gbps;          /* dram.bandwidth_gbps: GB/s (1e9 bytes per second) */
    double dram_latency_ns;    /* dram.latency_ns */

    /* [control] per engine */
    uint32_t imem_words;       /* control.imem_words: instruction memory capacity */
    uint32_t queue_depth;      /* control.queue_depth: instructions queued per unit */
    uint64_t watchdog_instructions; /* control.watchdog_instructions: runaway-loop limit */
    pm_hazard_mode hazard_mode;     /* control.hazards = interlock | report */

    /* [energy] */
    double energy_dram_pj_per_byte;   /* energy.dram_pj_per_byte */
    double energy_sram_pj_per_byte;   /* energy.sram_pj_per_byte */
    double energy_vector_pj_per_elem; /* energy.vector_pj_per_elem */
    double energy_lfu_pj_per_eval;    /* energy.lfu_pj_per_eval */
    double energy_ctrl_pj_per_insn;   /* energy.ctrl_pj_per_insn */
    double energy_tensor_pj_per_mac;  /* energy.tensor_pj_per_mac */
    double static_power_w;            /* energy.static_w: leakage + clock tree, whole chip */

    /* [fabric] LFU fabric beside each engine (docs/fabric.md): KAN networks
     * mapped edge by edge onto LFUs chained by fp32 adders. A fabric
     * activation costs energy.lfu_pj_per_eval, like a lane LFU's. */
    uint32_t fabric_lfus;                 /* fabric.lfus: LFUs in each engine's fabric; 0 = no fabric */
    uint32_t fabric_adder_latency_cycles; /* fabric.adder_latency_cycles: one fp32 add in the chain */
} pm_config;

/* Parse config text. Keys not set keep the values already in *cfg, so a file
 * may start from a preset with `base = edge`. Unknown sections or keys, bad
 * numbers and impossible values are errors naming source:line and the field. */
pm_status pm_config_parse(const char *source_name, const char *text, pm_config *cfg, pm_error *err);
pm_status pm_config_load_file(const char *path, pm_config *cfg, pm_error *err);
pm_status pm_config_preset(const char *name, pm_config *cfg, pm_error *err);
/* NULL-terminated list of preset names. */
const char *const *pm_config_preset_names(void);
/* Consistency checks (also run by parse): names the offending field. */
pm_status pm_config_validate(const pm_config *cfg, pm_error *err);
/* Canonical text form (parseable back to the same struct). Caller frees. */
char *pm_config_to_text(const pm_config *cfg);

/* Derived figures used by reports and the roofline. */
double pm_config_dram_bytes_per_cycle(const pm_config *cfg);
double pm_config_peak_tensor_flops(const pm_config *cfg); /* 2*rows*cols*clock*engines */

/* Every field unset (NaN / all-ones sentinels), the state a file without
 * `base` is parsed from, so a value the file forgets is reported by validate. */
void pm_config_init_unset(pm_config *cfg);
/* Field-by-field equality (names, every value; two unset fields are equal). */
bool pm_config_equal(const pm_config *a, const pm_config *b);
/* Watts with every unit busy every cycle on every engine: rows*cols MACs,
 * all vector lanes, all LFUs, the full SRAM port, one control instruction,
 * DRAM at full bandwidth, every fabric LFU of every engine (fabric.lfus),
 * plus static_w. The presets set tdp_w from it. */
double pm_config_full_activity_power_w(const pm_config *cfg);
/* LFU fabric figures (docs/fabric.md). A fabric activation is one LFU
 * evaluation plus the fp32 add that chains it into its node's sum; it is
 * worth PM_FABRIC_FLOP_EQ_PER_ACTIVATION FLOP-equivalents: the FP32
 * operations the same evaluation costs on an FPU (segment map 1 FMA, local
 * coordinate 1 FMA, degree-3 Horner 3 FMAs, FMA = 2 FLOPs; the add = 1). */
#define PM_FABRIC_FLOP_EQ_PER_ACTIVATION 11.0
/* Watts one fabric LFU draws when it activates every cycle:
 * energy.lfu_pj_per_eval x clock. */
double pm_config_fabric_lfu_power_w(const pm_config *cfg);
/* All fabric LFUs of the chip activating every cycle: lfus x engines x the above. */
double pm_config_fabric_power_w(const pm_config *cfg);
/* Peak FLOP-equivalents per second of the fabric, and per watt of
 * pm_config_fabric_power_w (0 when the config has no fabric). */
double pm_config_fabric_peak_flops(const pm_config *cfg);
double pm_config_fabric_peak_flops_per_w(const pm_config *cfg);

/* Longest accepted config line in bytes (without its newline). */
#define PM_CONFIG_LINE_MAX 1024

#ifdef __cplusplus
}
#endif
#endif
