/* The scheduler and timing model. Engines are advanced in simulated-time
 * order (smallest next issue cycle first, ties by engine id); each engine's
 * control core issues in order, executes every instruction functionally at
 * issue, and the timing model places unit instructions on their units
 * (queues, memory dependencies, shared DRAM channel). See docs/simulator.md. */
#include "sim_internal.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *mnemonic(uint8_t opcode)
{
    const char *m = pm_sim_ops[opcode].mnemonic;
    return m ? m : "?";
}

static const char *mem_name(uint8_t mem)
{
    return mem == PM_RANGE_DRAM ? "DRAM" : mem == PM_RANGE_SRAM ? "SRAM" : "accumulator";
}

static inline uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

/* Prefix a body's cause with where it happened. */
static pm_status engine_fault(const pm_engine *e, pm_error *err)
{
    pm_error_prefix(err, "engine %u pc 0x%x (%s): ", e->id, e->pc, mnemonic(e->code[e->pc].opcode));
    return err->status;
}

/* ---- run-state reset ---- */

static void engine_begin_run(pm_engine *e)
{
    memset(e->regs, 0, sizeof e->regs);
    e->dma_row_bytes = e->dma_rows = e->dma_planes = 0;
    e->dma_dram_row_stride = e->dma_dram_plane_stride = 0;
    e->dma_sram_row_stride = e->dma_sram_plane_stride = 0;
    e->pc = e->entry;
    e->t = 0;
    e->done_cycle = 0;
    e->retired = 0;
    e->state = e->code ? PM_ENGINE_RUNNING : PM_ENGINE_IDLE;
    for (int u = 0; u < PM_UNIT_COUNT; u++) {
        e->unit[u].free_cycle = e->unit[u].drain_cycle = e->unit[u].lane_free = e->unit[u].fold_end = 0;
        e->unit[u].head = e->unit[u].count = 0;
    }
    pm_timeline_clear(&e->sram_port, e->cfg->sram_bytes_per_cycle);
    pm_tensor_reset(e);
}

static uint64_t engine_drain(const pm_engine *e)
{
    uint64_t d = 0;
    for (int u = 0; u < PM_UNIT_COUNT; u++) d = max_u64(d, e->unit[u].drain_cycle);
    return d;
}

static void stall(pm_sim *sim, pm_engine *e, uint8_t opcode, uint64_t from, uint64_t to)
{
    if (to <= from) return;
    sim->total.stall_cycles += to - from;
    pm_trace_record(sim, PM_TRACE_STALL, e->id, PM_UNIT_CTRL, opcode, e->pc, from, to - from, 0);
}

/* ---- chip flags: writes are events at their release cycle ---- */

static void flags_apply(pm_sim *sim, uint64_t t)
{
    while (sim->event_head < sim->event_count && sim->events[sim->event_head].time <= t) {
        const pm_flag_event *ev = &sim->events[sim->event_head++];
        if (ev->add) sim->flags[ev->flag] = (int64_t)((uint64_t)sim->flags[ev->flag] + (uint64_t)ev->value);
        else sim->flags[ev->flag] = ev->value;
    }
}

static bool flags_next(const pm_sim *sim, uint32_t flag, uint64_t *time)
{
    for (size_t i = sim->event_head; i < sim->event_count; i++)
        if (sim->events[i].flag == flag) {
            *time = sim->events[i].time;
            return true;
        }
    return false;
}

static pm_status flags_post(pm_sim *sim, uint64_t time, uint32_t flag, bool add, int64_t value, pm_error *err)
{
    if (sim->event_head) { /* reclaim applied events */
        memmove(sim->events, sim->events + sim->event_head,
                (sim->event_count - sim->event_head) * sizeof *sim->events);
        sim->event_count -= sim->event_head;
        sim->event_head = 0;
    }
    if (sim->event_count == sim->event_cap) {
        size_t cap = sim->event_cap ? sim->event_cap * 2 : 64;
        pm_flag_event *p = realloc(sim->events, cap * sizeof *p);
        if (!p) return pm_error_set(err, PM_ERR_NOMEM, "out of host memory for flag events");
        sim->events = p;
        sim->event_cap = cap;
    }
    size_t i = sim->event_count; /* keep (time, seq) order; posts are mostly in time order */
    while (i > 0 && sim->events[i - 1].time > time) i--;
    memmove(sim->events + i + 1, sim->events + i, (sim->event_count - i) * sizeof *sim->events);
    sim->events[i] = (pm_flag_event){time, sim->event_seq++, flag, add, value};
    sim->event_count++;
    /* Engines blocked on this flag may now be satisfied at `time`: let them look. */
    for (uint32_t k = 0; k < sim->cfg.engines; k++) {
        pm_engine *w = &sim->engines[k];
        if (w->state != PM_ENGINE_BLOCKED || w->wait_flag != flag) continue;
        w->state = PM_ENGINE_RUNNING;
        stall(sim, w, w->code[w->pc].opcode, w->t, time);
        w->t = max_u64(w->t, time);
    }
    sim->resched = true;
    return PM_OK;
}

/* ---- memory dependencies ---- */

typedef struct pm_overlap {
    pm_range earlier, later; /* the two accesses, clipped to their overlap */
} pm_overlap;

/* Does the in-flight instruction f conflict with the new one? raw_only: only
 * "f writes what the new one reads" counts (a unit's own in-order pipeline
 * resolves WAR and WAW by itself). */
static bool conflicts(const pm_inflight *f, const pm_cost *c, bool raw_only, pm_overlap *ov)
{
    for (int i = 0; i < f->range_count; i++)
        for (int j = 0; j < c->range_count; j++) {
            const pm_range *a = &f->range[i], *b = &c->range[j];
            if (a->mem != b->mem || a->hi <= b->lo || b->hi <= a->lo) continue;
            if (raw_only ? !(a->write && !b->write) : !(a->write || b->write)) continue;
            if (ov) {
                ov->earlier = *a;
                ov->later = *b;
                ov->earlier.lo = ov->later.lo = a->lo > b->lo ? a->lo : b->lo;
                ov->earlier.hi = ov->later.hi = a->hi < b->hi ? a->hi : b->hi;
            }
            return true;
        }
    return false;
}

static pm_status hazard(const pm_engine *e, pm_unit unit, const pm_insn *in, pm_unit other, const pm_inflight *f,
                        const pm_overlap *ov, uint64_t start, pm_error *err)
{
    return pm_error_set(err, PM_ERR_HAZARD,
                        "engine %u pc 0x%x (%s): hazard: %s %s [0x%llx, 0x%llx) that pc 0x%x (%s) on %s %s; it "
                        "finishes at cycle %llu but this instruction on %s starts at cycle %llu (missing fence)",
                        e->id, e->pc, mnemonic(in->opcode), ov->later.write ? "writes" : "reads",
                        mem_name(ov->later.mem), (unsigned long long)ov->later.lo, (unsigned long long)ov->later.hi,
                        f->pc, mnemonic(f->opcode), pm_unit_name((pm_unit)(other)), ov->earlier.write ? "writes" : "reads",
                        (unsigned long long)f->finish, pm_unit_name((pm_unit)(unit)), (unsigned long long)start);
}

#define FOR_INFLIGHT(e, u, f)                                                           \
    for (int u = PM_UNIT_CTRL + 1; u < PM_UNIT_COUNT; u++)                              \
        for (uint32_t k_ = 0; k_ < (e)->unit[u].count; k_++)                            \
            for (const pm_inflight *f = &(e)->unit[u].ring[((e)->unit[u].head + k_) % depth]; f; f = NULL)

static void account(pm_sim *sim, pm_engine *e, pm_unit unit, const pm_cost *c)
{
    pm_counters *t = &sim->total;
    t->instructions++;
    t->unit[unit].instructions++;
    /* Memory traffic is charged to the unit whose instruction moved it. */
    t->unit[unit].dram_bytes += c->dram_read_bytes + c->dram_write_bytes;
    t->unit[unit].sram_bytes += c->sram_read_bytes + c->sram_write_bytes;
    t->dram_read_bytes += c->dram_read_bytes;
    t->dram_write_bytes += c->dram_write_bytes;
    t->sram_read_bytes += c->sram_read_bytes;
    t->sram_write_bytes += c->sram_write_bytes;
    t->vector_elems += c->vector_elems;
    t->lfu_evals += c->lfu_evals;
    t->tensor_macs += c->tensor_macs;
    e->retired++;
    e->pc = c->next_pc;
}

/* ---- unit instructions ---- */

/* Cycles the instruction's busiest SRAM bank needs. DMA bodies count their
 * rows and the tensor unit its operand re-reads; every other unit's SRAM
 * ranges are exactly its contiguous operands. */
static uint64_t bank_cycles(const pm_config *cfg, pm_unit unit, const pm_cost *c)
{
    if (unit == PM_UNIT_DMA_LD || unit == PM_UNIT_DMA_ST || unit == PM_UNIT_TENSOR) return c->sram_bank_cycles;
    if (cfg->sram_banks <= 1) return pm_ceil_div(c->sram_read_bytes + c->sram_write_bytes, cfg->sram_bytes_per_cycle);
    pm_banks b;
    pm_banks_init(&b, cfg);
    for (int i = 0; i < c->range_count; i++)
        if (c->range[i].mem == PM_RANGE_SRAM) pm_banks_add(&b, c->range[i].lo, c->range[i].hi - c->range[i].lo);
    return pm_banks_cycles(&b);
}

/* Port rate of a request the banks hold back: when the busiest bank needs
 * more cycles than the port's width alone, the instruction cannot take more
 * than bytes / bank_cycles per cycle on average, and leaves the rest of the
 * port to the other units. */
static uint64_t bank_rate(uint64_t rate, uint64_t bytes, uint64_t banked, uint64_t bytes_per_cycle)
{
    if (banked <= pm_ceil_div(bytes, bytes_per_cycle)) return rate;
    uint64_t r = pm_ceil_div(bytes, banked);
    return r < rate ? r : rate;
}

static pm_status issue_unit(pm_sim *sim, pm_engine *e, const pm_insn *in, pm_unit unit, const pm_cost *c,
                            pm_error *err)
{
    const pm_config *cfg = &sim->cfg;
    const uint32_t depth = cfg->queue_depth;
    pm_unit_state *us = &e->unit[unit];
    uint64_t issue = e->t;

    /* Forget instructions that have finished; a full queue stalls issue until
     * its oldest instruction finishes. */
    while (us->count && us->ring[us->head].finish <= issue) us->head = (us->head + 1) % depth, us->count--;
    if (us->count == depth) {
        uint64_t w = us->ring[us->head].finish;
        stall(sim, e, in->opcode, issue, w);
        issue = w;
        while (us->count && us->ring[us->head].finish <= issue) us->head = (us->head + 1) % depth, us->count--;
    }

    /* The tensor unit has two in-order lanes: the array and the epilogue
     * (tout drains one accumulator tile while the array fills another). */
    uint64_t *lane_free = unit == PM_UNIT_TENSOR && c->tensor_lane ? &us->lane_free : &us->free_cycle;
    uint64_t start = max_u64(issue, *lane_free);
    if (unit == PM_UNIT_TENSOR) start = max_u64(start, pm_tensor_array_ready(cfg, us, c));
    bool interlock = cfg->hazard_mode == PM_HAZARD_INTERLOCK;
    if (c->range_count) {
        FOR_INFLIGHT(e, u, f)
        {
            if (f->finish <= start) continue;
            bool same = u == (int)unit;
            /* A unit's own in-order pipeline orders its WAR and WAW, except
             * across the tensor unit's two lanes. */
            bool raw_only = same && unit != PM_UNIT_TENSOR;
            if ((same || interlock) && conflicts(f, c, raw_only, NULL)) {
                uint64_t ready = f->finish;
                if (same && unit == PM_UNIT_TENSOR && !pm_tensor_chain_ready(cfg, f, c, &ready)) ready = f->finish;
                start = max_u64(start, ready);
            }
        }
        if (!interlock) {
            /* Name the conflicting instruction that finishes last: the one a
             * fence would have to wait for. */
            const pm_inflight *worst = NULL;
            int worst_unit = 0;
            pm_overlap ov, worst_ov;
            FOR_INFLIGHT(e, u, f)
            {
                if (u != (int)unit && f->finish > start && (!worst || f->finish > worst->finish) &&
                    conflicts(f, c, false, &ov))
                    worst = f, worst_unit = u, worst_ov = ov;
            }
            if (worst) return hazard(e, unit, in, (pm_unit)worst_unit, worst, &worst_ov, start, err);
        }
    }

    /* Bandwidth: nothing issued from now on can start before this issue
     * cycle (engines are advanced in issue-time order), so earlier calendar
     * spans are history. */
    pm_timeline_forget(&sim->dram_channel, e->t);
    pm_timeline_forget(&e->sram_port, e->t);
    /* Unshared, every instruction sees an idle port: bounded by its width only. */
    if (!sim->share_sram_port) pm_timeline_clear(&e->sram_port, cfg->sram_bytes_per_cycle);
    uint64_t sram_bytes = c->sram_read_bytes + c->sram_write_bytes;
    uint64_t banked = bank_cycles(cfg, unit, c), bpc = cfg->sram_bytes_per_cycle;
    uint64_t free_cycle, finish, from, port_end;
    pm_status st;
    if (unit == PM_UNIT_DMA_LD || unit == PM_UNIT_DMA_ST) {
        /* The DRAM channel is shared by every engine: a transfer holds it for
         * chan cycles, the earliest free ones at or after its start (split
         * around older transfers if need be). Its SRAM side streams at the
         * channel's pace from the channel start on, sharing the engine's SRAM
         * port. Latency overlaps later transfers (requests pipeline). */
        uint64_t chan = (uint64_t)ceil((double)c->dram_channel_bytes / sim->dram_bytes_per_cycle);
        uint64_t dstart, dend;
        if ((st = pm_timeline_take(&sim->dram_channel, start, chan, 1, &dstart, &dend, err))) return st;
        uint64_t rate = bank_rate(pm_ceil_div(sram_bytes, max_u64(chan, 1)), sram_bytes, banked, bpc);
        if ((st = pm_timeline_take(&e->sram_port, dstart, sram_bytes, rate, &from, &port_end, err))) return st;
        if (sram_bytes) port_end = max_u64(port_end, from + banked); /* the busiest bank's cycles */
        free_cycle = max_u64(max_u64(dend, port_end), dstart + 1);
        finish = free_cycle + sim->dram_latency_cycles;
    } else {
        /* Pipelined unit: busy for its compute stream, its SRAM bytes
         * streaming through the engine's port at the pace the compute allows
         * (or the port's full width), results after the pipeline depth; the
         * next instruction's stream may start while this one drains. */
        uint64_t compute = c->stream_cycles;
        uint64_t rate = bank_rate(pm_ceil_div(sram_bytes, max_u64(compute, 1)), sram_bytes, banked, bpc);
        if ((st = pm_timeline_take(&e->sram_port, start, sram_bytes, rate, &from, &port_end, err))) return st;
        if (sram_bytes) port_end = max_u64(port_end, from + banked);
        free_cycle = max_u64(max_u64(start + compute, port_end), start + 1);
        finish = free_cycle + c->latency_cycles;
    }

    pm_inflight *slot = &us->ring[(us->head + us->count) % depth];
    us->count++;
    slot->start = start;
    slot->finish = finish;
    slot->pc = e->pc;
    slot->opcode = in->opcode;
    slot->range_count = c->range_count;
    memcpy(slot->range, c->range, c->range_count * sizeof *c->range);
    slot->chain = c->chain;
    if (c->chain.kind && c->chain.folds) /* the folds as they ran: the SRAM port may have spaced them out */
        slot->chain.period = max_u64(c->chain.period, pm_ceil_div(free_cycle - start, c->chain.folds));
    if (unit == PM_UNIT_TENSOR) pm_tensor_array_placed(us, c, start, free_cycle);

    /* Busy cycles: the union of [start, finish) over the unit's instructions. */
    from = max_u64(start, us->drain_cycle);
    if (finish > from) sim->total.unit[unit].busy_cycles += finish - from;
    *lane_free = free_cycle;
    us->drain_cycle = max_u64(us->drain_cycle, finish);
    pm_trace_record(sim, PM_TRACE_UNIT, e->id, (uint8_t)unit, in->opcode, e->pc, start, finish - start, 0);

    account(sim, e, unit, c);
    sim->total.unit[PM_UNIT_CTRL].busy_cycles++; /* the issue slot */
    e->t = issue + 1;
    return PM_OK;
}

/* ---- control-core instructions ---- */

static pm_status complete_ctrl(pm_sim *sim, pm_engine *e, const pm_insn *in, const pm_cost *c, pm_error *err)
{
    const pm_config *cfg = &sim->cfg;
    const uint32_t depth = cfg->queue_depth;
    uint64_t t = e->t;
    switch (c->sync) {
    case PM_SYNC_NONE:
        if (c->range_count) {
            /* lw/sw: the scalar core interlocks its loads against pending
             * writes in both modes; a store conflicting with in-flight work is
             * interlocked, or reported in report mode. */
            uint64_t w = t;
            const pm_inflight *worst = NULL; /* report mode: the latest-finishing conflict */
            int worst_unit = 0;
            pm_overlap ov, worst_ov;
            FOR_INFLIGHT(e, u, f)
            {
                if (f->finish <= t) continue;
                if (conflicts(f, c, true, NULL)) w = max_u64(w, f->finish);
                else if (conflicts(f, c, false, &ov)) {
                    if (cfg->hazard_mode != PM_HAZARD_REPORT) w = max_u64(w, f->finish);
                    else if (!worst || f->finish > worst->finish) worst = f, worst_unit = u, worst_ov = ov;
                }
            }
            if (worst) return hazard(e, PM_UNIT_CTRL, in, (pm_unit)worst_unit, worst, &worst_ov, t, err);
            stall(sim, e, in->opcode, t, w);
            t = w;
        }
        break;
    case PM_SYNC_FENCE: {
        uint64_t w = t;
        for (int u = 0; u < PM_UNIT_COUNT; u++)
            if ((c->sync_mask >> u) & 1) w = max_u64(w, e->unit[u].drain_cycle);
        stall(sim, e, in->opcode, t, w);
        t = w;
        break;
    }
    case PM_SYNC_FLAG_WAIT: {
        flags_apply(sim, t);
        if (sim->flags[c->sync_flag] >= c->sync_value) break;
        uint64_t next;
        e->wait_flag = c->sync_flag;
        if (flags_next(sim, c->sync_flag, &next)) {
            stall(sim, e, in->opcode, t, next);
            e->t = next; /* look again when that write lands */
        } else {
            e->state = PM_ENGINE_BLOCKED;
            sim->resched = true;
        }
        return PM_OK; /* not retired yet */
    }
    case PM_SYNC_FLAG_SET:
    case PM_SYNC_FLAG_ADD: {
        /* Release: the write lands once every earlier instruction of this
         * engine has finished, and never in the cycle it issues. */
        uint64_t when = max_u64(t + 1, engine_drain(e));
        pm_status st = flags_post(sim, when, c->sync_flag, c->sync == PM_SYNC_FLAG_ADD, c->sync_value, err);
        if (st) return st;
        break;
    }
    case PM_SYNC_MARK:
        pm_trace_record(sim, PM_TRACE_MARK, e->id, PM_UNIT_CTRL, in->opcode, e->pc, t, 0, c->sync_value);
        break;
    case PM_SYNC_HALT:
        e->state = PM_ENGINE_HALTED;
        e->done_cycle = max_u64(t + 1, engine_drain(e));
        sim->resched = true;
        break;
    }
    account(sim, e, PM_UNIT_CTRL, c);
    sim->total.unit[PM_UNIT_CTRL].busy_cycles++;
    e->t = t + 1 + (c->branch_taken ? 1 : 0);
    return PM_OK;
}

static pm_status step(pm_sim *sim, pm_engine *e, uint64_t max_instructions, pm_error *err)
{
    if (e->pc >= e->code_count)
        return pm_error_set(err, PM_ERR_FAULT, "engine %u pc 0x%x (end of program): ran past the last instruction "
                                               "(%u instruction%s) without halt",
                            e->id, e->pc, e->code_count, e->code_count == 1 ? "" : "s");
    if (e->retired >= max_instructions) {
        pm_sim_fault(err, "watchdog: %llu instruction%s without halt", (unsigned long long)max_instructions,
                     max_instructions == 1 ? "" : "s");
        return engine_fault(e, err);
    }
    const pm_insn *in = &e->code[e->pc];
    const pm_op_meta *m = &pm_sim_ops[in->opcode];
    pm_cost c;
    memset(&c, 0, offsetof(pm_cost, range)); /* the ranges are valid only up to range_count */
    c.next_pc = e->pc + 1;
    pm_status st = m->exec(e, in, &c, err);
    e->regs[0] = 0;
    if (st) return engine_fault(e, err);
    if (m->unit == PM_UNIT_CTRL) return complete_ctrl(sim, e, in, &c, err);
    return issue_unit(sim, e, in, m->unit, &c, err);
}

static pm_status deadlock(pm_sim *sim, pm_error *err)
{
    for (uint32_t k = 0; k < sim->cfg.engines; k++) {
        pm_engine *e = &sim->engines[k];
        if (e->state != PM_ENGINE_BLOCKED) continue;
        const pm_insn *in = &e->code[e->pc];
        int64_t want = in->opcode == PM_OP_FWAITR ? e->regs[in->op[1] & 31] : in->op[1];
        return pm_error_set(err, PM_ERR_FAULT,
                            "engine %u pc 0x%x (%s): flag wait can never be satisfied: flag %u is %lld, waiting for "
                            ">= %lld, and every other engine has halted or is waiting (cycle %llu)",
                            e->id, e->pc, mnemonic(in->opcode), e->wait_flag, (long long)sim->flags[e->wait_flag],
                            (long long)want, (unsigned long long)e->t);
    }
    return PM_OK;
}

static pm_status schedule(pm_sim *sim, uint64_t max_instructions, pm_error *err)
{
    for (;;) {
        pm_engine *best = NULL, *second = NULL;
        for (uint32_t k = 0; k < sim->cfg.engines; k++) {
            pm_engine *e = &sim->engines[k];
            if (e->state != PM_ENGINE_RUNNING) continue;
            if (!best || e->t < best->t) second = best, best = e;
            else if (!second || e->t < second->t) second = e;
        }
        if (!best) {
            flags_apply(sim, UINT64_MAX);
            return deadlock(sim, err);
        }
        /* Run the earliest engine until it passes the next one (or something
         * changes the schedule: a flag write, a block, a halt). */
        sim->resched = false;
        uint64_t limit = second ? second->t : UINT64_MAX;
        uint32_t limit_id = second ? second->id : UINT32_MAX;
        do {
            pm_status st = step(sim, best, max_instructions, err);
            if (st) return st;
        } while (best->state == PM_ENGINE_RUNNING && !sim->resched &&
                 (best->t < limit || (best->t == limit && best->id < limit_id)));
    }
}

pm_status pm_sim_run(pm_sim *sim, const pm_run_options *opts, pm_error *err)
{
    pm_error local;
    pm_error_clear(&local);
    const pm_config *cfg = &sim->cfg;
    uint64_t max_instructions = opts && opts->max_instructions ? opts->max_instructions : cfg->watchdog_instructions;
    if (!max_instructions) max_instructions = UINT64_MAX;

    bool any = false;
    for (uint32_t k = 0; k < cfg->engines; k++) {
        engine_begin_run(&sim->engines[k]);
        any |= sim->engines[k].state == PM_ENGINE_RUNNING;
    }
    if (!any) return pm_error_set(err, PM_ERR_INVALID, "pm_sim_run: no engine has a program loaded");
    memset(sim->flags, 0, (cfg->flags ? cfg->flags : 1) * sizeof *sim->flags);
    sim->event_head = sim->event_count = 0;
    pm_timeline_clear(&sim->dram_channel, 1); /* one transfer at a time */
    sim->tracing = opts && opts->trace_path;
    sim->trace_count = 0;
    sim->trace_dropped = 0;

    pm_status st = schedule(sim, max_instructions, &local);

    uint64_t end = 0;
    for (uint32_t k = 0; k < cfg->engines; k++) {
        const pm_engine *e = &sim->engines[k];
        if (e->state == PM_ENGINE_IDLE) continue;
        end = max_u64(end, e->state == PM_ENGINE_HALTED ? e->done_cycle : max_u64(e->t, engine_drain(e)));
    }
    sim->total.cycles += end;

    if (sim->tracing) {
        pm_error terr;
        pm_error_clear(&terr);
        pm_status tst = pm_trace_write(sim, opts->trace_path, st, &terr);
        if (tst && !st) {
            st = tst;
            local = terr;
        }
        sim->tracing = false;
    }
    if (st && err) *err = local;
    return st;
}
