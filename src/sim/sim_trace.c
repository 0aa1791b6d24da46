/* Chrome/Perfetto trace of a run: events are recorded in memory (bounded)
 * while the run goes, then written once as trace-event JSON with
 * pm_write_file_atomic, so a trace file is either complete or absent. */
#include "sim_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pm_trace_record(pm_sim *sim, uint8_t kind, uint32_t engine, uint8_t unit, uint8_t opcode, uint32_t pc,
                     uint64_t start, uint64_t dur, int64_t id)
{
    if (!sim->tracing) return;
    if (sim->trace_count == sim->trace_cap) {
        size_t cap = sim->trace_cap ? sim->trace_cap * 2 : 4096;
        if (cap > PM_TRACE_MAX_EVENTS) cap = PM_TRACE_MAX_EVENTS;
        pm_trace_event *p = cap > sim->trace_cap ? realloc(sim->trace, cap * sizeof *p) : NULL;
        if (!p) { /* at the cap (or out of host memory): count what is lost */
            sim->trace_dropped++;
            return;
        }
        sim->trace = p;
        sim->trace_cap = cap;
    }
    sim->trace[sim->trace_count++] =
        (pm_trace_event){.start = start, .dur = dur, .id = id, .pc = pc, .engine = (uint16_t)engine,
                         .unit = unit, .kind = kind, .opcode = opcode};
}

/* A JSON string body: quotes, backslashes and control characters escaped. */
static void put_json_string(pm_text *b, const char *s)
{
    pm_text_printf(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') pm_text_printf(b, "\\%c", ch);
        else if (ch < 0x20) pm_text_printf(b, "\\u%04x", ch);
        else pm_text_printf(b, "%c", ch);
    }
    pm_text_printf(b, "\"");
}

pm_status pm_trace_write(pm_sim *sim, const char *path, pm_status run_status, pm_error *err)
{
    const pm_config *cfg = &sim->cfg;
    /* Timestamps are microseconds: cycles / clock_mhz. */
    const double us_per_cycle = 1.0 / cfg->clock_mhz;
    pm_text b = {0};
    pm_text_printf(&b, "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"config\":");
    put_json_string(&b, cfg->name);
    pm_text_printf(&b, ",\"clock_mhz\":%.17g,\"engines\":%u,\"events\":%zu,\"events_dropped\":%llu,\"run_status\":", cfg->clock_mhz,
        cfg->engines, sim->trace_count, (unsigned long long)sim->trace_dropped);
    put_json_string(&b, pm_status_name(run_status));
    if (sim->trace_dropped)
        pm_text_printf(&b, ",\"note\":\"recording stopped after %zu events; later events are not in this file\"",
            sim->trace_count);
    pm_text_printf(&b, "},\n\"traceEvents\":[\n");
    bool first = true;
    for (uint32_t e = 0; e < cfg->engines; e++) {
        if (sim->engines[e].state == PM_ENGINE_IDLE) continue;
        pm_text_printf(&b, "%s{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%u,\"args\":{\"name\":\"engine %u\"}}",
            first ? "" : ",\n", e, e);
        first = false;
        for (int u = 0; u < PM_UNIT_COUNT; u++)
            pm_text_printf(&b, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%u,\"tid\":%d,\"args\":{\"name\":\"%s\"}}", e, u,
                pm_unit_name((pm_unit)(u)));
    }
    for (size_t i = 0; i < sim->trace_count; i++) {
        const pm_trace_event *ev = &sim->trace[i];
        const char *mn = pm_sim_ops[ev->opcode].mnemonic ? pm_sim_ops[ev->opcode].mnemonic : "?";
        double ts = (double)ev->start * us_per_cycle, dur = (double)ev->dur * us_per_cycle;
        pm_text_printf(&b, "%s", first ? "" : ",\n");
        first = false;
        switch (ev->kind) {
        case PM_TRACE_UNIT:
            pm_text_printf(&b,
                "{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\",\"pid\":%u,\"tid\":%u,\"ts\":%.6f,\"dur\":%.6f,"
                "\"args\":{\"pc\":%u,\"start_cycle\":%llu,\"cycles\":%llu}}",
                mn, pm_unit_name((pm_unit)(ev->unit)), ev->engine, ev->unit, ts, dur, ev->pc, (unsigned long long)ev->start,
                (unsigned long long)ev->dur);
            break;
        case PM_TRACE_STALL:
            pm_text_printf(&b,
                "{\"name\":\"stall (%s)\",\"cat\":\"stall\",\"ph\":\"X\",\"pid\":%u,\"tid\":0,\"ts\":%.6f,\"dur\":%.6f,"
                "\"args\":{\"pc\":%u,\"start_cycle\":%llu,\"cycles\":%llu}}",
                mn, ev->engine, ts, dur, ev->pc, (unsigned long long)ev->start, (unsigned long long)ev->dur);
            break;
        default:
            pm_text_printf(&b,
                "{\"name\":\"mark %lld\",\"cat\":\"mark\",\"ph\":\"i\",\"s\":\"t\",\"pid\":%u,\"tid\":0,\"ts\":%.6f,"
                "\"args\":{\"id\":%lld,\"pc\":%u,\"cycle\":%llu}}",
                (long long)ev->id, ev->engine, ts, (long long)ev->id, ev->pc, (unsigned long long)ev->start);
            break;
        }
    }
    pm_text_printf(&b, "\n]}\n");
    pm_status st = b.failed ? pm_error_set(err, PM_ERR_NOMEM, "out of host memory writing trace %s", path)
                            : pm_write_file_atomic(path, b.data, b.len, err);
    free(b.data);
    return st;
}
