/* The chip object: creation from a config, host access to DRAM and SRAM,
 * program loading (decode once into each engine's instruction memory),
 * counters with energy derived from event counts, register read-back. */
#include "sim_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The sizes the simulator itself relies on; the config layer validates the
 * rest. Each message names the config field. */
static pm_status check_config(const pm_config *cfg, pm_error *err)
{
#define NEED(cond, field, what) \
    if (!(cond)) return pm_error_set(err, PM_ERR_CONFIG, "config %s: %s", field, what)
    NEED(cfg->clock_mhz > 0 && isfinite(cfg->clock_mhz), "chip.clock_mhz", "must be a positive number");
    NEED(cfg->engines >= 1 && cfg->engines <= 4096, "chip.engines", "must be 1..4096");
    NEED(cfg->flags <= 256, "chip.flags", "must be 0..256 (the flag operand has 8 bits)");
    NEED(cfg->vector_lanes >= 1 && cfg->vector_lanes <= 65536, "vector.lanes", "must be 1..65536");
    NEED(cfg->lfu_count >= 1, "lfu.count", "must be at least 1");
    NEED(cfg->lfu_slots <= 8, "lfu.slots", "must be 0..8 (the slot operand has 3 bits)");
    NEED(cfg->lfu_load_bytes_per_cycle >= 1, "lfu.load_bytes_per_cycle", "must be at least 1");
    NEED(cfg->sram_bytes >= 1 && cfg->sram_bytes <= ((uint64_t)1 << 40), "sram.bytes", "must be 1 B..1 TiB");
    NEED(cfg->sram_bytes_per_cycle >= 1, "sram.bytes_per_cycle", "must be at least 1");
    NEED(cfg->accum_bytes <= ((uint64_t)1 << 40), "sram.accumulator_bytes", "must be at most 1 TiB");
    NEED(cfg->dram_bytes >= 1 && cfg->dram_bytes <= ((uint64_t)1 << 48), "dram.bytes", "must be 1 B..256 TiB");
    NEED(cfg->dram_gbps > 0 && isfinite(cfg->dram_gbps), "dram.bandwidth_gbps", "must be a positive number");
    NEED(cfg->dram_latency_ns >= 0 && isfinite(cfg->dram_latency_ns), "dram.latency_ns", "must be >= 0");
    NEED(cfg->imem_words >= 1, "control.imem_words", "must be at least 1");
    NEED(cfg->queue_depth >= 1 && cfg->queue_depth <= 4096, "control.queue_depth", "must be 1..4096");
    NEED(cfg->hazard_mode == PM_HAZARD_INTERLOCK || cfg->hazard_mode == PM_HAZARD_REPORT, "control.hazards",
         "must be interlock or report");
#undef NEED
    return PM_OK;
}

static void engine_free(pm_engine *e)
{
    free(e->code);
    free(e->sram);
    free(e->accum);
    if (e->lfu)
        for (uint32_t s = 0; s < e->cfg->lfu_slots; s++)
            if (e->lfu_loaded[s]) pm_lfu_table_free(&e->lfu[s]);
    free(e->lfu);
    free(e->lfu_loaded);
    free(e->fscratch);
    free(e->bscratch);
    for (int u = 0; u < PM_UNIT_COUNT; u++) free(e->unit[u].ring);
    pm_timeline_free(&e->sram_port);
    pm_tensor_free(e);
    pm_fabric_free(e->fabric);
}

void pm_sim_destroy(pm_sim *sim)
{
    if (!sim) return;
    if (sim->engines)
        for (uint32_t i = 0; i < sim->cfg.engines; i++) engine_free(&sim->engines[i]);
    free(sim->engines);
    if (sim->dram_pages)
        for (uint64_t p = 0; p < sim->dram_page_count; p++) free(sim->dram_pages[p]);
    free(sim->dram_pages);
    free(sim->flags);
    free(sim->events);
    free(sim->trace);
    pm_timeline_free(&sim->dram_channel);
    pm_tensor_sim_free(sim);
    free(sim);
}

pm_status pm_sim_create(const pm_config *cfg, pm_sim **out, pm_error *err)
{
    *out = NULL;
    if (!cfg) return pm_error_set(err, PM_ERR_INVALID, "pm_sim_create: no config");
    pm_status st = check_config(cfg, err);
    if (st) return st;
    pm_sim *sim = calloc(1, sizeof *sim);
    if (!sim) return pm_error_set(err, PM_ERR_NOMEM, "out of host memory for the simulator");
    sim->cfg = *cfg;
    cfg = &sim->cfg;
    /* The units of an engine share its SRAM port (docs/simulator.md); tests
     * may turn that off with pm_sim_share_sram_port to isolate one unit. */
    sim->share_sram_port = true;
    const char *shadow = getenv("POLYMORPH_SHADOW"); /* "0": no deferred DMA copies (shadow.c) */
    sim->shadow_on = !(shadow && strcmp(shadow, "0") == 0);
    sim->dram_page_count = (cfg->dram_bytes + PM_DRAM_PAGE_BYTES - 1) >> PM_DRAM_PAGE_SHIFT;
    sim->dram_pages = calloc(sim->dram_page_count, sizeof *sim->dram_pages);
    sim->flags = calloc(cfg->flags ? cfg->flags : 1, sizeof *sim->flags);
    sim->engines = calloc(cfg->engines, sizeof *sim->engines);
    if (!sim->dram_pages || !sim->flags || !sim->engines) goto nomem;
    for (uint32_t i = 0; i < cfg->engines; i++) {
        pm_engine *e = &sim->engines[i];
        e->sim = sim;
        e->cfg = cfg;
        e->id = i;
        e->sram = calloc(1, cfg->sram_bytes);
        e->accum = calloc(cfg->accum_bytes / 4 ? cfg->accum_bytes / 4 : 1, sizeof(float));
        e->lfu = calloc(cfg->lfu_slots ? cfg->lfu_slots : 1, sizeof *e->lfu);
        e->lfu_loaded = calloc(cfg->lfu_slots ? cfg->lfu_slots : 1, sizeof *e->lfu_loaded);
        if (!e->sram || !e->accum || !e->lfu || !e->lfu_loaded) goto nomem;
        for (int u = 0; u < PM_UNIT_COUNT; u++) {
            e->unit[u].ring = calloc(cfg->queue_depth, sizeof *e->unit[u].ring);
            if (!e->unit[u].ring) goto nomem;
        }
    }
    sim->dram_bytes_per_cycle = cfg->dram_gbps * 1000.0 / cfg->clock_mhz;
    sim->dram_latency_cycles = (uint64_t)ceil(cfg->dram_latency_ns * cfg->clock_mhz / 1000.0);
    sim->total.engines = cfg->engines;
    *out = sim;
    return PM_OK;
nomem:
    pm_sim_destroy(sim);
    return pm_error_set(err, PM_ERR_NOMEM, "out of host memory for the simulator (%u engines, %llu B SRAM each)",
                        cfg->engines, (unsigned long long)cfg->sram_bytes);
}

const pm_config *pm_sim_config(const pm_sim *sim) { return &sim->cfg; }

void pm_sim_share_sram_port(pm_sim *sim, bool on) { sim->share_sram_port = on; }

/* ---- host access ---- */

static pm_status dram_check(const pm_sim *sim, uint64_t addr, size_t n, const char *what, pm_error *err)
{
    if (addr > sim->cfg.dram_bytes || n > sim->cfg.dram_bytes - addr)
        return pm_error_set(err, PM_ERR_INVALID, "host DRAM %s [0x%llx, +%zu) is out of bounds (DRAM is 0x%llx bytes)",
                            what, (unsigned long long)addr, n, (unsigned long long)sim->cfg.dram_bytes);
    return PM_OK;
}

pm_status pm_sim_dram_write(pm_sim *sim, uint64_t addr, const void *src, size_t n, pm_error *err)
{
    pm_status st = dram_check(sim, addr, n, "write", err);
    if (!st) st = pm_sim_dram_reserve(sim, addr, n, err);
    if (st) return st;
    pm_sim_dram_copy_in(sim, addr, src, n);
    return PM_OK;
}

pm_status pm_sim_dram_read(pm_sim *sim, uint64_t addr, void *dst, size_t n, pm_error *err)
{
    pm_status st = dram_check(sim, addr, n, "read", err);
    if (st) return st;
    return pm_sim_dram_copy_out(sim, addr, dst, n);
}

static pm_status sram_check(const pm_sim *sim, uint32_t engine, uint64_t addr, size_t n, const char *what,
                            pm_error *err)
{
    if (engine >= sim->cfg.engines)
        return pm_error_set(err, PM_ERR_INVALID, "host SRAM %s: engine %u does not exist (chip has %u)", what,
                            engine, sim->cfg.engines);
    if (addr > sim->cfg.sram_bytes || n > sim->cfg.sram_bytes - addr)
        return pm_error_set(err, PM_ERR_INVALID,
                            "host SRAM %s engine %u [0x%llx, +%zu) is out of bounds (SRAM is 0x%llx bytes)", what,
                            engine, (unsigned long long)addr, n, (unsigned long long)sim->cfg.sram_bytes);
    return PM_OK;
}

pm_status pm_sim_sram_write(pm_sim *sim, uint32_t engine, uint64_t addr, const void *src, size_t n, pm_error *err)
{
    pm_status st = sram_check(sim, engine, addr, n, "write", err);
    if (st) return st;
    if (!n) return PM_OK;
    pm_shadow_touch(&sim->engines[engine], addr, addr + n);
    memcpy(sim->engines[engine].sram + addr, src, n);
    return PM_OK;
}

pm_status pm_sim_sram_read(pm_sim *sim, uint32_t engine, uint64_t addr, void *dst, size_t n, pm_error *err)
{
    pm_status st = sram_check(sim, engine, addr, n, "read", err);
    if (st) return st;
    if (!n) return PM_OK;
    pm_shadow_touch(&sim->engines[engine], addr, addr + n);
    memcpy(dst, sim->engines[engine].sram + addr, n);
    return PM_OK;
}

/* ---- programs ---- */

pm_status pm_sim_load_program(pm_sim *sim, const pm_program *prog, uint64_t engine_mask, pm_error *err)
{
    const pm_config *cfg = &sim->cfg;
    /* The mask covers engines 0..63; mask 0 means every engine, however many. */
    bool every = engine_mask == 0;
    uint64_t all = cfg->engines >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << cfg->engines) - 1);
    if (engine_mask & ~all)
        return pm_error_set(err, PM_ERR_INVALID, "engine mask 0x%llx names engines the chip does not have (%u engines)",
                            (unsigned long long)engine_mask, cfg->engines);
    if (prog->code_count == 0) return pm_error_set(err, PM_ERR_INVALID, "program has no instructions");
    if (prog->code_count > cfg->imem_words)
        return pm_error_set(err, PM_ERR_INVALID,
                            "program has %zu instructions; instruction memory holds %u (control.imem_words)",
                            prog->code_count, cfg->imem_words);
    if (prog->entry >= prog->code_count)
        return pm_error_set(err, PM_ERR_INVALID, "program entry %u is outside its %zu instructions", prog->entry,
                            prog->code_count);
    /* Check everything before changing anything: a failed load leaves the chip as it was. */
    for (size_t s = 0; s < prog->section_count; s++) {
        const pm_section *sec = &prog->sections[s];
        uint64_t limit = sec->mem == PM_MEM_DRAM ? cfg->dram_bytes : sec->mem == PM_MEM_SRAM ? cfg->sram_bytes : 0;
        if (sec->mem == PM_MEM_CODE) continue;
        if (sec->mem != PM_MEM_DRAM && sec->mem != PM_MEM_SRAM)
            return pm_error_set(err, PM_ERR_INVALID, "section %zu: unknown memory kind %d", s, (int)sec->mem);
        if (sec->addr > limit || sec->size > limit - sec->addr)
            return pm_error_set(err, PM_ERR_INVALID, "section %zu: %s [0x%llx, 0x%llx) is out of bounds (%s is 0x%llx bytes)",
                                s, sec->mem == PM_MEM_DRAM ? "DRAM" : "SRAM", (unsigned long long)sec->addr,
                                (unsigned long long)(sec->addr + sec->size), sec->mem == PM_MEM_DRAM ? "DRAM" : "SRAM",
                                (unsigned long long)limit);
    }
    pm_insn *code = malloc(prog->code_count * sizeof *code);
    if (!code) return pm_error_set(err, PM_ERR_NOMEM, "out of host memory for %zu instructions", prog->code_count);
    for (size_t i = 0; i < prog->code_count; i++) {
        pm_status st = pm_decode(prog->code[i], &code[i], err);
        if (!st && !pm_sim_ops[code[i].opcode].exec)
            st = pm_error_set(err, PM_ERR_FORMAT, "opcode 0x%02x has no simulator body", code[i].opcode);
        if (st) {
            free(code);
            pm_error_prefix(err, "program word %zu (0x%016llx): ", i, (unsigned long long)prog->code[i]);
            return st;
        }
    }
    for (size_t s = 0; s < prog->section_count; s++) {
        const pm_section *sec = &prog->sections[s];
        if (sec->mem == PM_MEM_DRAM && sec->size) {
            pm_status st = pm_sim_dram_reserve(sim, sec->addr, sec->size, err);
            if (st) {
                free(code);
                return st;
            }
        }
    }
    /* From here on nothing can fail except per-engine code copies, which are
     * allocated first. */
    uint32_t loaded = 0;
    pm_insn **copies = calloc(cfg->engines, sizeof *copies);
    if (!copies) {
        free(code);
        return pm_error_set(err, PM_ERR_NOMEM, "out of host memory loading the program");
    }
    for (uint32_t i = 0; i < cfg->engines; i++) {
        if (!every && (i >= 64 || !((engine_mask >> i) & 1))) continue;
        copies[i] = loaded++ ? malloc(prog->code_count * sizeof *code) : code;
        if (!copies[i]) {
            for (uint32_t j = 0; j < i; j++)
                if (copies[j] != code) free(copies[j]);
            free(code);
            free(copies);
            return pm_error_set(err, PM_ERR_NOMEM, "out of host memory loading the program");
        }
        if (copies[i] != code) memcpy(copies[i], code, prog->code_count * sizeof *code);
    }
    for (size_t s = 0; s < prog->section_count; s++) {
        const pm_section *sec = &prog->sections[s];
        if (sec->mem == PM_MEM_DRAM && sec->size) pm_sim_dram_copy_in(sim, sec->addr, sec->data, sec->size);
    }
    for (uint32_t i = 0; i < cfg->engines; i++) {
        if (!copies[i]) continue;
        pm_engine *e = &sim->engines[i];
        free(e->code);
        e->code = copies[i];
        e->code_count = (uint32_t)prog->code_count;
        e->entry = prog->entry;
        for (size_t s = 0; s < prog->section_count; s++) {
            const pm_section *sec = &prog->sections[s];
            if (sec->mem != PM_MEM_SRAM || !sec->size) continue;
            pm_shadow_touch(e, sec->addr, sec->addr + sec->size);
            memcpy(e->sram + sec->addr, sec->data, sec->size);
        }
    }
    free(copies);
    if (!loaded) free(code);
    return PM_OK;
}

/* ---- counters ---- */

void pm_sim_counters(const pm_sim *sim, pm_counters *out)
{
    const pm_config *cfg = &sim->cfg;
    const double pj = 1e-12, dram_j = cfg->energy_dram_pj_per_byte * pj, sram_j = cfg->energy_sram_pj_per_byte * pj;
    *out = sim->total;
    out->engines = cfg->engines;
    out->seconds = (double)out->cycles / (cfg->clock_mhz * 1e6);
    /* Energy from event counts (so it is exact and reproducible). Each unit
     * pays for its own events (the control core for issuing every
     * instruction) and for the memory bytes its instructions moved: a DMA
     * load pays the DRAM read and the SRAM write, a vector op its SRAM reads
     * and writes, lw/sw their SRAM word. The memories' view sums the same
     * bytes per memory, so both views add up to the same total. */
    const double compute[PM_UNIT_COUNT] = {
        [PM_UNIT_CTRL] = (double)out->instructions * cfg->energy_ctrl_pj_per_insn * pj,
        [PM_UNIT_VEC] = (double)out->vector_elems * cfg->energy_vector_pj_per_elem * pj,
        [PM_UNIT_LFU] = (double)out->lfu_evals * cfg->energy_lfu_pj_per_eval * pj,
        [PM_UNIT_TENSOR] = (double)out->tensor_macs * cfg->energy_tensor_pj_per_mac * pj,
    };
    out->compute_energy_j = 0;
    double units = 0;
    for (int u = 0; u < PM_UNIT_COUNT; u++) {
        pm_unit_counters *uc = &out->unit[u];
        uc->compute_energy_j = compute[u];
        uc->memory_energy_j = (double)uc->dram_bytes * dram_j + (double)uc->sram_bytes * sram_j;
        uc->energy_j = uc->compute_energy_j + uc->memory_energy_j;
        out->compute_energy_j += uc->compute_energy_j;
        units += uc->energy_j;
    }
    out->dram_energy_j = (double)(out->dram_read_bytes + out->dram_write_bytes) * dram_j;
    out->sram_energy_j = (double)(out->sram_read_bytes + out->sram_write_bytes) * sram_j;
    out->static_energy_j = cfg->static_power_w * out->seconds;
    out->energy_j = units + out->static_energy_j;
}

void pm_sim_reset_counters(pm_sim *sim)
{
    memset(&sim->total, 0, sizeof sim->total);
    sim->total.engines = sim->cfg.engines;
}

pm_status pm_sim_reg_read(const pm_sim *sim, uint32_t engine, unsigned reg, int64_t *value, pm_error *err)
{
    if (engine >= sim->cfg.engines)
        return pm_error_set(err, PM_ERR_INVALID, "engine %u does not exist (chip has %u)", engine, sim->cfg.engines);
    if (reg >= PM_NUM_REGS) return pm_error_set(err, PM_ERR_INVALID, "register r%u does not exist", reg);
    *value = sim->engines[engine].regs[reg];
    return PM_OK;
}
