/* The device: a driver-like handle around one simulated chip. Only this file
 * calls pm_sim_*; the CLI, kernels and models see a device, its DRAM
 * allocator, host copies, program loads, runs and counters. */
#include "polymorph/runtime.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* One program load that still owns DRAM: the engines it runs on and the
 * DRAM ranges its sections occupy (kept so a failed reload can restore them). */
typedef struct pm_load_record {
    uint32_t tag;
    uint64_t engine_mask;
    uint64_t *ranges; /* pairs (addr, size) */
    size_t range_count;
} pm_load_record;

struct pm_device {
    pm_config cfg;
    pm_sim *sim;
    pm_allocator *dram;
    pm_load_record *loads;
    size_t load_count;
    uint32_t next_tag;
};

pm_status pm_device_open(const pm_config *cfg, pm_device **out, pm_error *err)
{
    *out = NULL;
    if (!cfg) return pm_error_set(err, PM_ERR_INVALID, "device: no configuration given");
    /* The config layer's rules, not only what the simulator can represent:
     * a struct built in code gets the same field-named checks as a file. */
    pm_status vst = pm_config_validate(cfg, err);
    if (vst != PM_OK) {
        pm_error_prefix(err, "device: ");
        return vst;
    }
    pm_device *dev = calloc(1, sizeof *dev);
    if (!dev) return pm_error_set(err, PM_ERR_NOMEM, "device: out of memory");
    dev->cfg = *cfg;
    dev->next_tag = 1;
    pm_status st = pm_sim_create(cfg, &dev->sim, err);
    if (st == PM_OK) st = pm_allocator_create(0, cfg->dram_bytes, &dev->dram, err);
    if (st != PM_OK) {
        pm_device_close(dev);
        return st;
    }
    *out = dev;
    return PM_OK;
}

static void free_loads(pm_device *dev)
{
    for (size_t i = 0; i < dev->load_count; i++) free(dev->loads[i].ranges);
    free(dev->loads);
    dev->loads = NULL;
    dev->load_count = 0;
}

void pm_device_close(pm_device *dev)
{
    if (!dev) return;
    free_loads(dev);
    pm_allocator_destroy(dev->dram);
    pm_sim_destroy(dev->sim);
    free(dev);
}

const pm_config *pm_device_config(const pm_device *dev) { return &dev->cfg; }

pm_status pm_device_alloc(pm_device *dev, uint64_t bytes, uint64_t align, uint64_t *addr, pm_error *err)
{
    pm_status st = pm_allocator_alloc(dev->dram, bytes, align, addr, err);
    if (st != PM_OK) pm_error_prefix(err, "device DRAM ");
    return st;
}

pm_status pm_device_free(pm_device *dev, uint64_t addr, pm_error *err)
{
    pm_status st = pm_allocator_free(dev->dram, addr, err);
    if (st != PM_OK) pm_error_prefix(err, "device DRAM ");
    return st;
}

/* [addr, addr + n) inside [0, limit), written so nothing wraps. */
static bool in_range(uint64_t addr, size_t n, uint64_t limit)
{
    return addr <= limit && (uint64_t)n <= limit - addr;
}

static pm_status check_dram(const pm_device *dev, const char *what, uint64_t addr, size_t n, pm_error *err)
{
    if (in_range(addr, n, dev->cfg.dram_bytes)) return PM_OK;
    return pm_error_set(err, PM_ERR_INVALID,
                        "device %s: [0x%" PRIx64 ", +%zu bytes) lies outside DRAM (0x%" PRIx64 " bytes)", what,
                        addr, n, dev->cfg.dram_bytes);
}

/* SRAM bounds are the sim's to define (it may map the accumulator memory
 * beside the scratchpad), so the runtime checks only the engine index and
 * leaves the address check to pm_sim_sram_*. */
static pm_status check_engine(const pm_device *dev, const char *what, uint32_t engine, pm_error *err)
{
    if (engine < dev->cfg.engines) return PM_OK;
    return pm_error_set(err, PM_ERR_INVALID, "device %s: engine %u does not exist (the chip has %u)", what,
                        engine, dev->cfg.engines);
}

pm_status pm_device_write(pm_device *dev, uint64_t addr, const void *src, size_t n, pm_error *err)
{
    pm_status st = check_dram(dev, "write", addr, n, err);
    return st != PM_OK ? st : pm_sim_dram_write(dev->sim, addr, src, n, err);
}

pm_status pm_device_read(pm_device *dev, uint64_t addr, void *dst, size_t n, pm_error *err)
{
    pm_status st = check_dram(dev, "read", addr, n, err);
    return st != PM_OK ? st : pm_sim_dram_read(dev->sim, addr, dst, n, err);
}

pm_status pm_device_sram_write(pm_device *dev, uint32_t engine, uint64_t addr, const void *src, size_t n,
                               pm_error *err)
{
    pm_status st = check_engine(dev, "SRAM write", engine, err);
    return st != PM_OK ? st : pm_sim_sram_write(dev->sim, engine, addr, src, n, err);
}

pm_status pm_device_sram_read(pm_device *dev, uint32_t engine, uint64_t addr, void *dst, size_t n, pm_error *err)
{
    pm_status st = check_engine(dev, "SRAM read", engine, err);
    return st != PM_OK ? st : pm_sim_sram_read(dev->sim, engine, addr, dst, n, err);
}

/* ---- program loads and their DRAM reservations ----
 * A load on engine mask M replaces every earlier load whose engines all lie
 * in M (that program is gone from the chip, so its DRAM sections are freed);
 * an earlier load that keeps some engines keeps its DRAM. The new program's
 * DRAM sections are then reserved; a collision with a live allocation or
 * another program undoes everything and leaves the device as it was. */

static uint64_t all_engines_mask(const pm_device *dev)
{
    return dev->cfg.engines >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << dev->cfg.engines) - 1;
}

static pm_status reserve_ranges(pm_device *dev, const pm_load_record *r, pm_error *err)
{
    for (size_t k = 0; k < r->range_count; k++) {
        pm_status st = pm_allocator_reserve(dev->dram, r->ranges[2 * k], r->ranges[2 * k + 1], r->tag, err);
        if (st != PM_OK) {
            pm_allocator_release_tag(dev->dram, r->tag);
            return st;
        }
    }
    return PM_OK;
}

static pm_status record_for_program(const pm_program *prog, uint32_t tag, uint64_t mask, pm_load_record *r,
                                    pm_error *err)
{
    memset(r, 0, sizeof *r);
    r->tag = tag;
    r->engine_mask = mask;
    size_t n = 0;
    for (size_t i = 0; i < prog->section_count; i++)
        if (prog->sections[i].mem == PM_MEM_DRAM && prog->sections[i].size) n++;
    if (n == 0) return PM_OK;
    r->ranges = malloc(2 * n * sizeof *r->ranges);
    if (!r->ranges) return pm_error_set(err, PM_ERR_NOMEM, "load: out of memory");
    for (size_t i = 0; i < prog->section_count; i++) {
        const pm_section *s = &prog->sections[i];
        if (s->mem != PM_MEM_DRAM || !s->size) continue;
        r->ranges[2 * r->range_count] = s->addr;
        r->ranges[2 * r->range_count + 1] = s->size;
        r->range_count++;
    }
    return PM_OK;
}

pm_status pm_device_load(pm_device *dev, const pm_program *prog, uint64_t engine_mask, pm_error *err)
{
    uint64_t all = all_engines_mask(dev);
    if (engine_mask == 0) engine_mask = all;
    if (engine_mask & ~all)
        return pm_error_set(err, PM_ERR_INVALID, "load: engine mask 0x%" PRIx64 " names engines the chip lacks (%u engines)",
                            engine_mask, dev->cfg.engines);

    pm_load_record fresh;
    pm_status st = record_for_program(prog, dev->next_tag, engine_mask, &fresh, err);
    if (st != PM_OK) return st;
    pm_load_record *grown = realloc(dev->loads, (dev->load_count + 1) * sizeof *grown);
    if (!grown) {
        free(fresh.ranges);
        return pm_error_set(err, PM_ERR_NOMEM, "load: out of memory");
    }
    dev->loads = grown;

    /* Release the loads this one replaces, then try to reserve. */
    for (size_t i = 0; i < dev->load_count; i++)
        if ((dev->loads[i].engine_mask & ~engine_mask) == 0) pm_allocator_release_tag(dev->dram, dev->loads[i].tag);
    st = reserve_ranges(dev, &fresh, err);
    if (st == PM_OK) {
        st = pm_sim_load_program(dev->sim, prog, engine_mask, err);
        if (st != PM_OK) pm_allocator_release_tag(dev->dram, fresh.tag);
    } else {
        pm_error_prefix(err, "load: program DRAM section ");
    }
    if (st != PM_OK) {
        /* Undo: the replaced loads get their ranges back (they cannot collide:
         * nothing else was placed while they were released). */
        for (size_t i = 0; i < dev->load_count; i++)
            if ((dev->loads[i].engine_mask & ~engine_mask) == 0) reserve_ranges(dev, &dev->loads[i], NULL);
        free(fresh.ranges);
        return st;
    }

    /* Commit: drop replaced records, shrink the masks of the others. */
    size_t kept = 0;
    for (size_t i = 0; i < dev->load_count; i++) {
        pm_load_record r = dev->loads[i];
        r.engine_mask &= ~engine_mask;
        if (r.engine_mask == 0) free(r.ranges);
        else dev->loads[kept++] = r;
    }
    dev->loads[kept++] = fresh;
    dev->load_count = kept;
    dev->next_tag++;
    if (dev->next_tag == 0) dev->next_tag = 1;
    return PM_OK;
}

pm_status pm_device_run(pm_device *dev, const pm_run_options *opts, pm_error *err)
{
    pm_run_options defaults = {0, NULL};
    return pm_sim_run(dev->sim, opts ? opts : &defaults, err);
}

void pm_device_counters(const pm_device *dev, pm_counters *out) { pm_sim_counters(dev->sim, out); }

void pm_device_reset_counters(pm_device *dev) { pm_sim_reset_counters(dev->sim); }

void pm_device_set_threads(pm_device *dev, unsigned threads)
{
    pm_sim_set_threads(dev->sim, threads);
}
