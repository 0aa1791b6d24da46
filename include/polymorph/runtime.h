/* Polymorph runtime layer: the driver-like host API. Everything above the
 * simulator (CLI, kernels, models) talks to a device only through this. */
#ifndef POLYMORPH_RUNTIME_H
#define POLYMORPH_RUNTIME_H

#include "polymorph/base.h"
#include "polymorph/config.h"
#include "polymorph/isa.h"
#include "polymorph/sim.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pm_device pm_device;

pm_status pm_device_open(const pm_config *cfg, pm_device **out, pm_error *err);
void pm_device_close(pm_device *dev);
const pm_config *pm_device_config(const pm_device *dev);

/* Device DRAM allocation (first fit, aligned). Regions used by a loaded
 * program's DRAM sections are reserved by pm_device_load. */
pm_status pm_device_alloc(pm_device *dev, uint64_t bytes, uint64_t align, uint64_t *addr, pm_error *err);
pm_status pm_device_free(pm_device *dev, uint64_t addr, pm_error *err);

pm_status pm_device_write(pm_device *dev, uint64_t addr, const void *src, size_t n, pm_error *err);
pm_status pm_device_read(pm_device *dev, uint64_t addr, void *dst, size_t n, pm_error *err);
pm_status pm_device_sram_write(pm_device *dev, uint32_t engine, uint64_t addr, const void *src, size_t n, pm_error *err);
pm_status pm_device_sram_read(pm_device *dev, uint32_t engine, uint64_t addr, void *dst, size_t n, pm_error *err);

/* Load a program on the engines in engine_mask (0 = all). */
pm_status pm_device_load(pm_device *dev, const pm_program *prog, uint64_t engine_mask, pm_error *err);
pm_status pm_device_run(pm_device *dev, const pm_run_options *opts, pm_error *err);

void pm_device_counters(const pm_device *dev, pm_counters *out);
void pm_device_reset_counters(pm_device *dev);

#ifdef __cplusplus
}
#endif
#endif
