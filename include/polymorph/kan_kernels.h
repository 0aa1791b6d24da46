/* Polymorph KAN inference kernels (kernel layer): program builders that run
 * a KAN network, exported edge by edge to LFU tables, on the simulated
 * engine, either on the vector lanes' LFU array or on the LFU fabric, plus
 * the host reference they must equal bit for bit. See docs/fabric.md. */
#ifndef POLYMORPH_KAN_KERNELS_H
#define POLYMORPH_KAN_KERNELS_H

#include "polymorph/base.h"
#include "polymorph/config.h"
#include "polymorph/isa.h"
#include "polymorph/sim.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where a KAN runs. */
typedef enum pm_kan_mode {
    PM_KAN_MODE_LANES = 0,  /* per edge: lfu.ld its table, lfu over the batch, vadd into the node */
    PM_KAN_MODE_FABRIC = 1, /* fab.cfg the whole network once, fab.run the batch */
} pm_kan_mode;

const char *pm_kan_mode_name(pm_kan_mode m); /* "lanes", "fabric" */
int pm_kan_mode_from_name(const char *name, pm_kan_mode *out); /* 1 on success */

/* The KAN layer's export (include/polymorph/kan.h). */
typedef struct pm_kan_lfu_net pm_kan_lfu_net;

/* The network as the engine holds it (pm_fabric_net, sim.h) from the KAN
 * layer's export: tables are copied and reordered from the export's
 * input-major (i*out + j) to the fabric's output-major (j*in + i) order.
 * Free with pm_fabric_net_free. */
pm_status pm_kan_net_from_export(const pm_kan_lfu_net *src, pm_fabric_net *out, pm_error *err);

/* Host reference: for every sample, every layer, every output j: acc =
 * edge(l,j,0)(x_0), then acc = acc + edge(l,j,i)(x_i) for i ascending, fp32,
 * each edge by pm_lfu_eval. x is [batch][widths[0]] fp32, y
 * [batch][widths[layers]]. */
pm_status pm_kan_ref_forward(const pm_fabric_net *net, const float *x, size_t batch, float *y, pm_error *err);

/* A KAN inference program. Input X is [batch][widths[0]] fp32 row-major in
 * DRAM at x_addr, output Y [batch][widths[layers]] fp32 at y_addr. The
 * network's tables travel in an SRAM data section of the program; samples
 * are processed in chunks that fit the SRAM, each chunk loaded by DMA once
 * and stored once. Errors name what does not fit (SRAM, instruction
 * memory, no fabric in the config). */
typedef struct pm_kan_desc {
    pm_kan_mode mode;
    uint64_t batch;
    uint64_t x_addr, y_addr;
    uint64_t chunk; /* samples per chunk; 0 = as many as the SRAM holds */
} pm_kan_desc;

pm_status pm_kernel_kan(const pm_config *cfg, const pm_fabric_net *net, const pm_kan_desc *d, pm_program *out,
                        pm_error *err);

/* Open a device for cfg, run the KAN program on x and read y back;
 * counters (optional) receive the run's counters. */
pm_status pm_kan_run_device(const pm_config *cfg, const pm_fabric_net *net, pm_kan_mode mode, const float *x,
                            size_t batch, float *y, pm_counters *counters, pm_error *err);

#ifdef __cplusplus
}
#endif
#endif
