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

/* Host threads the simulator may use for its functional matmuls (0 = one per
 * online CPU, the default). Never changes a result bit or a cycle count. */
void pm_device_set_threads(pm_device *dev, unsigned threads);

void pm_device_counters(const pm_device *dev, pm_counters *out);
void pm_device_reset_counters(pm_device *dev);

/* ---- address-range allocator ----
 * The first-fit allocator behind pm_device_alloc, public so that other
 * layers (kernel builders placing SRAM buffers, tests) can use the same
 * logic. It manages [base, base + size); blocks are kept sorted by address,
 * so freeing coalesces by construction. A reserved block (pm_allocator_reserve)
 * is placed at a fixed address and carries a non-zero owner tag; it can only
 * be released with pm_allocator_release_tag, never with pm_allocator_free. */
typedef struct pm_allocator pm_allocator;

pm_status pm_allocator_create(uint64_t base, uint64_t size, pm_allocator **out, pm_error *err);
void pm_allocator_destroy(pm_allocator *a);
/* align: a power of two; 0 means 64. bytes must be > 0. */
pm_status pm_allocator_alloc(pm_allocator *a, uint64_t bytes, uint64_t align, uint64_t *addr, pm_error *err);
/* addr must be the start of a live allocation (double free and unknown
 * addresses are errors naming the address). */
pm_status pm_allocator_free(pm_allocator *a, uint64_t addr, pm_error *err);
/* Reserve exactly [addr, addr + bytes) for owner tag (non-zero); fails,
 * naming the colliding block, when any part is already in use. */
pm_status pm_allocator_reserve(pm_allocator *a, uint64_t addr, uint64_t bytes, uint32_t tag, pm_error *err);
/* Release every reservation carrying tag; returns how many were released. */
size_t pm_allocator_release_tag(pm_allocator *a, uint32_t tag);
/* Bytes in live allocations and reservations, and their count. */
uint64_t pm_allocator_used_bytes(const pm_allocator *a);
size_t pm_allocator_block_count(const pm_allocator *a);
/* Largest request (align 1) that would succeed now. */
uint64_t pm_allocator_largest_free(const pm_allocator *a);

#ifdef __cplusplus
}
#endif
#endif
