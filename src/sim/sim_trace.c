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

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...)
{
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n + 1;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->failed = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

/* A JSON string body: quotes, backslashes and control characters escaped. */
static void put_json_string(sbuf *b, const char *s)
{
    put(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') put(b, "\\%c", ch);
        else if (ch < 0x20) put(b, "\\u%04x", ch);
        else put(b, "%c", ch);
    }
    put(b, "\"");
}

pm_status pm_trace_write(pm_sim *sim, const char *path, pm_status run_status, pm_error *err)
{
    static const char *const unit_names[PM_UNIT_COUNT] = {"ctrl", "dma.ld", "dma.st", "vec", "lfu", "tensor"};
    const pm_config *cfg = &sim->cfg;
    /* Timestamps are microseconds: cycles / clock_mhz. */
    const double us_per_cycle = 1.0 / cfg->clock_mhz;
    sbuf b = {.p = malloc(1 << 16), .cap = 1 << 16};
    if (!b.p) return pm_error_set(err, PM_ERR_NOMEM, "out of host memory writing trace %s", path);
    b.p[0] = '\0';
    put(&b, "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"config\":");
    put_json_string(&b, cfg->name);
    put(&b, ",\"clock_mhz\":%.17g,\"engines\":%u,\"events\":%zu,\"events_dropped\":%llu,\"run_status\":", cfg->clock_mhz,
        cfg->engines, sim->trace_count, (unsigned long long)sim->trace_dropped);
    put_json_string(&b, pm_status_name(run_status));
    if (sim->trace_dropped)
        put(&b, ",\"note\":\"recording stopped after %zu events; later events are not in this file\"",
            sim->trace_count);
    put(&b, "},\n\"traceEvents\":[\n");
    bool first = true;
    for (uint32_t e = 0; e < cfg->engines; e++) {
        if (sim->engines[e].state == PM_ENGINE_IDLE) continue;
        put(&b, "%s{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%u,\"args\":{\"name\":\"engine %u\"}}",
            first ? "" : ",\n", e, e);
        first = false;
        for (int u = 0; u < PM_UNIT_COUNT; u++)
            put(&b, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%u,\"tid\":%d,\"args\":{\"name\":\"%s\"}}", e, u,
                unit_names[u]);
    }
    for (size_t i = 0; i < sim->trace_count; i++) {
        const pm_trace_event *ev = &sim->trace[i];
        const char *mn = pm_sim_ops[ev->opcode].mnemonic ? pm_sim_ops[ev->opcode].mnemonic : "?";
        double ts = (double)ev->start * us_per_cycle, dur = (double)ev->dur * us_per_cycle;
        put(&b, "%s", first ? "" : ",\n");
        first = false;
        switch (ev->kind) {
        case PM_TRACE_UNIT:
            put(&b,
                "{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\",\"pid\":%u,\"tid\":%u,\"ts\":%.6f,\"dur\":%.6f,"
                "\"args\":{\"pc\":%u,\"start_cycle\":%llu,\"cycles\":%llu}}",
                mn, unit_names[ev->unit], ev->engine, ev->unit, ts, dur, ev->pc, (unsigned long long)ev->start,
                (unsigned long long)ev->dur);
            break;
        case PM_TRACE_STALL:
            put(&b,
                "{\"name\":\"stall (%s)\",\"cat\":\"stall\",\"ph\":\"X\",\"pid\":%u,\"tid\":0,\"ts\":%.6f,\"dur\":%.6f,"
                "\"args\":{\"pc\":%u,\"start_cycle\":%llu,\"cycles\":%llu}}",
                mn, ev->engine, ts, dur, ev->pc, (unsigned long long)ev->start, (unsigned long long)ev->dur);
            break;
        default:
            put(&b,
                "{\"name\":\"mark %lld\",\"cat\":\"mark\",\"ph\":\"i\",\"s\":\"t\",\"pid\":%u,\"tid\":0,\"ts\":%.6f,"
                "\"args\":{\"id\":%lld,\"pc\":%u,\"cycle\":%llu}}",
                (long long)ev->id, ev->engine, ts, (long long)ev->id, ev->pc, (unsigned long long)ev->start);
            break;
        }
    }
    put(&b, "\n]}\n");
    pm_status st = b.failed ? pm_error_set(err, PM_ERR_NOMEM, "out of host memory writing trace %s", path)
                            : pm_write_file_atomic(path, b.p, b.len, err);
    free(b.p);
    return st;
}
