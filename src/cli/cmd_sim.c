/* polymorph sim: run a program on a simulated chip. Binds .npy files to the
 * program's `.tensor` symbols (inputs before the run, outputs after it),
 * then prints the run's counters as a table or one JSON object. Everything
 * that can be checked before the run (config, program, every binding) is
 * checked first; output files are written only after a successful run. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include "polymorph/numerics.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char pm_cli_sim_help[] =
    "usage: polymorph sim PROGRAM [options]\n"
    "\n"
    "Run PROGRAM (a .pmp program file, or assembly source in any other file,\n"
    "assembled on the fly) on every engine of a simulated chip, then print\n"
    "the counters: cycles, simulated time, instructions, per-unit busy cycles,\n"
    "utilisation and energy, memory traffic, total energy and wall time.\n"
    "\n"
    "options:\n"
    "  --preset NAME            chip preset (default: edge; see polymorph presets)\n"
    "  --config FILE            chip config file (may start with `base = PRESET`)\n"
    "  --input NAME=FILE.npy    before the run, write the array into the tensor\n"
    "                           NAME declared with .tensor (repeatable). Float\n"
    "                           arrays feed float and block formats (rounded to\n"
    "                           fp32, then encoded); integer arrays feed int8/int4.\n"
    "                           The shape must equal the declared shape.\n"
    "  --output NAME=FILE.npy   after a successful run, save tensor NAME (float32\n"
    "                           for float and block formats, int8 for integer\n"
    "                           formats; repeatable)\n"
    "  --trace FILE             write a Chrome/Perfetto trace of the run\n"
    "  --json                   print the counters as one JSON object\n"
    "  --max-instructions N     watchdog: stop after N instructions (default:\n"
    "                           the config's control.watchdog_instructions)\n"
    "  -h, --help               show this help\n"
    "\n"
    "Tensors in SRAM are written into the SRAM of every engine and read back\n"
    "from engine 0.\n"
    "\n"
    "example:\n"
    "  polymorph sim examples/vector_add.pasm --preset edge \\\n"
    "      --input a=a.npy --input b=b.npy --output c=c.npy --json\n";

enum { OPT_PRESET, OPT_CONFIG, OPT_INPUT, OPT_OUTPUT, OPT_TRACE, OPT_JSON, OPT_MAX_INSNS, OPT_COUNT };
static const pm_cli_option sim_options[OPT_COUNT] = {
    [OPT_PRESET] = {"preset", 0, true, false},   [OPT_CONFIG] = {"config", 0, true, false},
    [OPT_INPUT] = {"input", 0, true, true},      [OPT_OUTPUT] = {"output", 0, true, true},
    [OPT_TRACE] = {"trace", 0, true, false},     [OPT_JSON] = {"json", 0, false, false},
    [OPT_MAX_INSNS] = {"max-instructions", 0, true, false},
};

/* One --input or --output: the tensor it names and the bytes that go to or
 * came from the device. */
typedef struct binding {
    char name[PM_SYMBOL_NAME_MAX];
    const char *path;
    const pm_symbol *sym;
    uint64_t elems;
    size_t device_bytes;
    uint8_t *bytes; /* inputs: device image; outputs: the .npy image */
    size_t len;
} binding;

typedef struct sim_job {
    pm_config cfg;
    pm_program prog;
    const char *program_path;
    binding inputs[PM_CLI_MAX_VALUES], outputs[PM_CLI_MAX_VALUES];
    int input_count, output_count;
    pm_run_options opts;
    bool json;
} sim_job;

/* ---- program and tensors ---- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static pm_status load_program(const char *path, pm_program *prog, pm_error *err)
{
    if (ends_with(path, ".pmp")) return pm_program_load_file(path, prog, err);
    return pm_assemble_file(path, prog, err);
}

static void tensor_names(const pm_program *prog, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < prog->symbol_count && n + 1 < cap; i++) {
        if (!prog->symbols[i].is_tensor) continue;
        int w = snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", prog->symbols[i].name);
        if (w < 0) break;
        n += (size_t)w;
    }
    if (n >= cap) n = cap - 1;
    if (!buf[0]) snprintf(buf, cap, "none declared");
}

static void shape_text(const uint64_t *shape, uint32_t rank, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "(");
    for (uint32_t i = 0; i < rank && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRIu64, i ? ", " : "", shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "%s)", rank == 1 ? "," : "");
}

/* Integer storage formats (int8, int4) take and give integer arrays; every
 * float and block format takes float arrays and gives float32. */
static bool is_integer_format(const pm_format_info *fi) { return !fi->is_float && !fi->is_block; }

/* Parses "NAME=FILE", finds the tensor and its device footprint, and checks
 * that footprint against the chip's memory before anything is allocated for
 * it (a declared shape may be far larger than any memory). */
static pm_status resolve_binding(const pm_config *cfg, const pm_program *prog, const char *spec, const char *what,
                                 binding *b, pm_error *err)
{
    memset(b, 0, sizeof *b);
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || !eq[1])
        return pm_error_set(err, PM_ERR_INVALID, "--%s '%s': expected NAME=FILE.npy", what, spec);
    size_t n = (size_t)(eq - spec);
    if (n >= sizeof b->name) return pm_error_set(err, PM_ERR_INVALID, "--%s: tensor name too long", what);
    memcpy(b->name, spec, n);
    b->name[n] = 0;
    b->path = eq + 1;
    b->sym = pm_program_find_symbol(prog, b->name);
    if (!b->sym || !b->sym->is_tensor) {
        char names[512];
        tensor_names(prog, names, sizeof names);
        return pm_error_set(err, PM_ERR_INVALID, "--%s %s: the program %s (its tensors: %s)", what, b->name,
                            b->sym ? "declares this symbol without .tensor" : "has no tensor of that name", names);
    }
    if (b->sym->mem != PM_MEM_DRAM && b->sym->mem != PM_MEM_SRAM)
        return pm_error_set(err, PM_ERR_INVALID, "--%s %s: a code label is not a tensor", what, b->name);
    const pm_format_info *fi = pm_format_get(b->sym->dtype);
    if (!fi) return pm_error_set(err, PM_ERR_INVALID, "--%s %s: tensor has an unknown dtype %d", what, b->name, (int)b->sym->dtype);
    b->elems = 1;
    for (uint32_t i = 0; i < b->sym->rank; i++) {
        if (b->sym->shape[i] && b->elems > UINT64_MAX / b->sym->shape[i])
            return pm_error_set(err, PM_ERR_INVALID, "--%s %s: tensor shape overflows", what, b->name);
        b->elems *= b->sym->shape[i];
    }
    if (b->elems > SIZE_MAX / sizeof(float) || !pm_format_bytes(b->sym->dtype, (size_t)b->elems, &b->device_bytes))
        return pm_error_set(err, PM_ERR_INVALID, "--%s %s: %" PRIu64 " elements do not fill whole %s blocks", what,
                            b->name, b->elems, fi->name);
    bool dram = b->sym->mem == PM_MEM_DRAM;
    uint64_t size = dram ? cfg->dram_bytes : cfg->sram_bytes;
    if (b->sym->addr > size || b->device_bytes > size - b->sym->addr)
        return pm_error_set(err, PM_ERR_INVALID,
                            "--%s %s: the tensor (%s at 0x%" PRIx64 ", %zu bytes) does not fit in %s (%" PRIu64
                            " bytes on %s)",
                            what, b->name, dram ? "DRAM" : "SRAM", b->sym->addr, b->device_bytes, dram ? "DRAM" : "SRAM",
                            size, cfg->name);
    return PM_OK;
}

/* The .npy array -> the tensor's storage bytes, with every check a user
 * could trip named precisely. */
static pm_status encode_input(binding *b, const pm_npy *a, pm_error *err)
{
    const pm_symbol *s = b->sym;
    const pm_format_info *fi = pm_format_get(s->dtype);
    char want[128], got[128];
    shape_text(s->shape, s->rank, want, sizeof want);
    shape_text(a->shape, a->rank, got, sizeof got);
    bool same = a->rank == s->rank;
    for (uint32_t i = 0; same && i < s->rank; i++) same = a->shape[i] == s->shape[i];
    if (!same)
        return pm_error_set(err, PM_ERR_INVALID, "--input %s: %s has shape %s, the tensor is %s %s", b->name, b->path,
                            got, fi->name, want);
    bool want_int = is_integer_format(fi);
    bool have_int = a->kind == PM_NPY_INT || a->kind == PM_NPY_UINT;
    if (a->kind == PM_NPY_BOOL || want_int != have_int)
        return pm_error_set(err, PM_ERR_INVALID, "--input %s: %s holds %s, the tensor is %s and needs %s", b->name,
                            b->path, pm_npy_type_name(a), fi->name, want_int ? "an integer array" : "a float array");
    b->len = b->device_bytes;
    b->bytes = malloc(b->len ? b->len : 1);
    if (!b->bytes) return pm_error_set(err, PM_ERR_NOMEM, "--input %s: out of memory", b->name);
    if (s->dtype == PM_FMT_F32 && a->kind == PM_NPY_FLOAT && a->item_bytes == 4) {
        memcpy(b->bytes, a->data, b->len); /* bit for bit, NaN payloads included */
        return PM_OK;
    }
    float *f = malloc((size_t)b->elems * sizeof *f + 1);
    if (!f) return pm_error_set(err, PM_ERR_NOMEM, "--input %s: out of memory", b->name);
    /* Integer formats: range-check against the format (int4 holds -8..7). */
    int64_t lo = s->dtype == PM_FMT_INT4 ? -8 : -128, hi = s->dtype == PM_FMT_INT4 ? 7 : 127;
    for (uint64_t i = 0; i < b->elems; i++) {
        if (want_int) {
            bool ok;
            int64_t v = pm_npy_get_i64(a, i, &ok);
            if (!ok || v < lo || v > hi) {
                free(f);
                return pm_error_set(err, PM_ERR_INVALID, "--input %s: %s element %" PRIu64 " does not fit %s (%" PRId64
                                    "..%" PRId64 ")",
                                    b->name, b->path, i, fi->name, lo, hi);
            }
            f[i] = (float)v;
        } else {
            f[i] = (float)pm_npy_get_f64(a, i); /* fp32 is the compute format: round there first */
        }
    }
    pm_status st = pm_format_encode(s->dtype, f, (size_t)b->elems, b->bytes, err);
    free(f);
    if (st != PM_OK) pm_error_prefix(err, "--input %s: ", b->name);
    return st;
}

static pm_status prepare_input(sim_job *job, const char *spec, binding *b, pm_error *err)
{
    pm_status st = resolve_binding(&job->cfg, &job->prog, spec, "input", b, err);
    if (st != PM_OK) return st;
    for (int i = 0; i < job->input_count; i++)
        if (strcmp(job->inputs[i].name, b->name) == 0)
            return pm_error_set(err, PM_ERR_INVALID, "--input %s: tensor bound twice", b->name);
    pm_npy a;
    st = pm_npy_load(b->path, &a, err);
    if (st == PM_OK) st = encode_input(b, &a, err);
    pm_npy_free(&a);
    return st;
}

/* Device bytes of tensor b -> a .npy image in memory. */
static pm_status capture_output(pm_device *dev, binding *b, pm_error *err)
{
    const pm_format_info *fi = pm_format_get(b->sym->dtype);
    /* raw holds the device bytes, then (integer formats) one int8 per element */
    size_t raw_cap = b->device_bytes > b->elems ? b->device_bytes : (size_t)b->elems;
    uint8_t *raw = malloc(raw_cap ? raw_cap : 1);
    float *f = malloc((size_t)b->elems * sizeof *f + 1);
    pm_status st = (raw && f) ? PM_OK : pm_error_set(err, PM_ERR_NOMEM, "--output %s: out of memory", b->name);
    if (st == PM_OK) {
        if (b->sym->mem == PM_MEM_DRAM) st = pm_device_read(dev, b->sym->addr, raw, b->device_bytes, err);
        else st = pm_device_sram_read(dev, 0, b->sym->addr, raw, b->device_bytes, err);
    }
    if (st == PM_OK) st = pm_format_decode(b->sym->dtype, raw, (size_t)b->elems, f, err);
    if (st == PM_OK && is_integer_format(fi)) {
        /* int8/int4 values decode exactly to small integers: store as int8 */
        for (uint64_t i = 0; i < b->elems; i++) raw[i] = (uint8_t)(int8_t)f[i];
        st = pm_npy_build("|i1", b->sym->shape, b->sym->rank, raw, (size_t)b->elems, &b->bytes, &b->len, err);
    } else if (st == PM_OK) {
        st = pm_npy_build("<f4", b->sym->shape, b->sym->rank, f, (size_t)b->elems * sizeof *f, &b->bytes, &b->len,
                          err);
    }
    if (st != PM_OK && err && strncmp(err->message, "--output", 8) != 0) pm_error_prefix(err, "--output %s: ", b->name);
    free(raw);
    free(f);
    return st;
}

/* ---- counters ---- */

static double utilisation(const pm_counters *c, uint64_t busy)
{
    /* busy cycles are summed over engines, so the denominator is engine-cycles */
    double denom = (double)c->cycles * (double)(c->engines ? c->engines : 1);
    return denom > 0 ? (double)busy / denom : 0.0;
}

static void print_json(const sim_job *job, const pm_counters *c, double wall_s)
{
    FILE *f = stdout;
    fputs("{\"program\": ", f);
    pm_cli_json_string(f, job->program_path);
    fputs(", \"config\": ", f);
    pm_cli_json_string(f, job->cfg.name);
    fprintf(f, ", \"engines\": %u, \"clock_mhz\": ", c->engines);
    pm_cli_json_number(f, job->cfg.clock_mhz);
    fprintf(f, ", \"cycles\": %" PRIu64 ", \"seconds\": ", c->cycles);
    pm_cli_json_number(f, c->seconds);
    fprintf(f, ", \"instructions\": %" PRIu64 ", \"stall_cycles\": %" PRIu64 ", \"units\": {", c->instructions,
            c->stall_cycles);
    for (int u = 0; u < PM_UNIT_COUNT; u++) {
        const pm_unit_counters *uc = &c->unit[u];
        fprintf(f, "%s\"%s\": {\"instructions\": %" PRIu64 ", \"busy_cycles\": %" PRIu64 ", \"utilisation\": ",
                u ? ", " : "", pm_unit_name((pm_unit)u), uc->instructions, uc->busy_cycles);
        pm_cli_json_number(f, utilisation(c, uc->busy_cycles));
        fprintf(f, ", \"dram_bytes\": %" PRIu64 ", \"sram_bytes\": %" PRIu64, uc->dram_bytes, uc->sram_bytes);
        fputs(", \"compute_energy_j\": ", f);
        pm_cli_json_number(f, uc->compute_energy_j);
        fputs(", \"memory_energy_j\": ", f);
        pm_cli_json_number(f, uc->memory_energy_j);
        fputs(", \"energy_j\": ", f);
        pm_cli_json_number(f, uc->energy_j);
        fputc('}', f);
    }
    fprintf(f,
            "}, \"dram_read_bytes\": %" PRIu64 ", \"dram_write_bytes\": %" PRIu64 ", \"sram_read_bytes\": %" PRIu64
            ", \"sram_write_bytes\": %" PRIu64 ", \"vector_elems\": %" PRIu64 ", \"lfu_evals\": %" PRIu64
            ", \"tensor_macs\": %" PRIu64,
            c->dram_read_bytes, c->dram_write_bytes, c->sram_read_bytes, c->sram_write_bytes, c->vector_elems,
            c->lfu_evals, c->tensor_macs);
    const struct { const char *key; double v; } tail[] = {
        {"compute_energy_j", c->compute_energy_j}, {"dram_energy_j", c->dram_energy_j},
        {"sram_energy_j", c->sram_energy_j},
        {"static_energy_j", c->static_energy_j}, {"energy_j", c->energy_j}, {"wall_s", wall_s},
    };
    for (size_t i = 0; i < sizeof tail / sizeof tail[0]; i++) {
        fprintf(f, ", \"%s\": ", tail[i].key);
        pm_cli_json_number(f, tail[i].v);
    }
    fputs("}\n", f);
}

/* 1.234 us, 5.6 ms ...: simulated time in the unit a reader expects. */
static void time_text(double s, char *buf, size_t cap)
{
    static const struct { double scale; const char *unit; } units[] = {
        {1, "s"}, {1e-3, "ms"}, {1e-6, "us"}, {1e-9, "ns"},
    };
    size_t i = 0;
    while (i + 1 < sizeof units / sizeof units[0] && s < units[i].scale) i++;
    snprintf(buf, cap, "%.4g %s", s / units[i].scale, units[i].unit);
}

static void print_table(const sim_job *job, const pm_counters *c, double wall_s)
{
    char t[64];
    time_text(c->seconds, t, sizeof t);
    printf("%s on %s (%u engine%s, %g MHz)\n", job->program_path, job->cfg.name, c->engines,
           c->engines == 1 ? "" : "s", job->cfg.clock_mhz);
    printf("  %-18s %" PRIu64 "\n", "cycles", c->cycles);
    printf("  %-18s %s\n", "simulated time", t);
    printf("  %-18s %" PRIu64 "\n", "instructions", c->instructions);
    printf("  %-18s %" PRIu64 "\n", "stall cycles", c->stall_cycles);
    /* a unit's energy: its own events plus the DRAM/SRAM bytes it moved */
    printf("\n  %-8s %14s %14s %12s %14s %14s %14s\n", "unit", "instructions", "busy cycles", "utilisation",
           "DRAM bytes", "SRAM bytes", "energy (J)");
    for (int u = 0; u < PM_UNIT_COUNT; u++) {
        const pm_unit_counters *uc = &c->unit[u];
        printf("  %-8s %14" PRIu64 " %14" PRIu64 " %11.1f%% %14" PRIu64 " %14" PRIu64 " %14.4g\n",
               pm_unit_name((pm_unit)u), uc->instructions, uc->busy_cycles, 100.0 * utilisation(c, uc->busy_cycles),
               uc->dram_bytes, uc->sram_bytes, uc->energy_j);
    }
    printf("\n  %-18s %" PRIu64 " bytes\n", "DRAM read", c->dram_read_bytes);
    printf("  %-18s %" PRIu64 " bytes\n", "DRAM write", c->dram_write_bytes);
    printf("  %-18s %" PRIu64 " bytes\n", "SRAM read", c->sram_read_bytes);
    printf("  %-18s %" PRIu64 " bytes\n", "SRAM write", c->sram_write_bytes);
    printf("  %-18s %" PRIu64 "\n", "vector elements", c->vector_elems);
    printf("  %-18s %" PRIu64 "\n", "LFU evaluations", c->lfu_evals);
    printf("  %-18s %" PRIu64 "\n", "tensor MACs", c->tensor_macs);
    printf("\n  %-18s %.4g J\n", "energy compute", c->compute_energy_j);
    printf("  %-18s %.4g J\n", "energy DRAM", c->dram_energy_j);
    printf("  %-18s %.4g J\n", "energy SRAM", c->sram_energy_j);
    printf("  %-18s %.4g J\n", "energy static", c->static_energy_j);
    printf("  %-18s %.4g J\n", "energy total", c->energy_j);
    printf("\n  %-18s %.4g s\n", "sim wall time", wall_s);
}

/* ---- the verb ---- */

static pm_status parse_count(const char *text, uint64_t *out, pm_error *err)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = (text[0] >= '0' && text[0] <= '9') ? strtoull(text, &end, 10) : 0;
    if (!end || *end || errno || v == 0)
        return pm_error_set(err, PM_ERR_INVALID, "--max-instructions '%s': expected a positive integer", text);
    *out = v;
    return PM_OK;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Everything checkable before the run: config, program, bindings. */
static pm_status prepare(sim_job *job, const pm_cli_parsed *p, pm_error *err)
{
    const char *preset = pm_cli_value(p, OPT_PRESET), *config = pm_cli_value(p, OPT_CONFIG);
    if (preset && config) return pm_error_set(err, PM_ERR_INVALID, "give --preset or --config, not both");
    pm_status st = config ? pm_config_load_file(config, &job->cfg, err)
                          : pm_config_preset(preset ? preset : "edge", &job->cfg, err);
    if (st != PM_OK) return st;
    if (pm_cli_value(p, OPT_MAX_INSNS)) {
        st = parse_count(pm_cli_value(p, OPT_MAX_INSNS), &job->opts.max_instructions, err);
        if (st != PM_OK) return st;
    }
    job->opts.trace_path = pm_cli_value(p, OPT_TRACE);
    job->json = p->given[OPT_JSON] > 0;
    st = load_program(job->program_path, &job->prog, err);
    if (st != PM_OK) return st;
    for (int i = 0; i < p->given[OPT_INPUT]; i++) {
        st = prepare_input(job, p->values[OPT_INPUT][i], &job->inputs[job->input_count], err);
        job->input_count++; /* counted even on failure so its buffer is freed */
        if (st != PM_OK) return st;
    }
    for (int i = 0; i < p->given[OPT_OUTPUT]; i++) {
        st = resolve_binding(&job->cfg, &job->prog, p->values[OPT_OUTPUT][i], "output", &job->outputs[job->output_count],
                             err);
        job->output_count++;
        if (st != PM_OK) return st;
        /* Two results into one file would silently keep only the last. */
        const binding *b = &job->outputs[i];
        for (int k = 0; k < i; k++)
            if (strcmp(job->outputs[k].path, b->path) == 0)
                return pm_error_set(err, PM_ERR_INVALID, "--output %s: %s is also the file of --output %s (a file named twice)",
                                    b->name, b->path, job->outputs[k].name);
        if (job->opts.trace_path && strcmp(job->opts.trace_path, b->path) == 0)
            return pm_error_set(err, PM_ERR_INVALID, "--output %s: %s is also the --trace file (a file named twice)",
                                b->name, b->path);
    }
    return PM_OK;
}

static pm_status write_inputs(pm_device *dev, const sim_job *job, pm_error *err)
{
    for (int i = 0; i < job->input_count; i++) {
        const binding *b = &job->inputs[i];
        pm_status st = PM_OK;
        if (b->sym->mem == PM_MEM_DRAM) st = pm_device_write(dev, b->sym->addr, b->bytes, b->len, err);
        for (uint32_t e = 0; b->sym->mem == PM_MEM_SRAM && e < job->cfg.engines && st == PM_OK; e++)
            st = pm_device_sram_write(dev, e, b->sym->addr, b->bytes, b->len, err);
        if (st != PM_OK) {
            pm_error_prefix(err, "--input %s: ", b->name);
            return st;
        }
    }
    return PM_OK;
}

static pm_status execute(sim_job *job, pm_counters *counters, double *wall_s, pm_error *err)
{
    pm_device *dev = NULL;
    pm_status st = pm_device_open(&job->cfg, &dev, err);
    if (st == PM_OK) st = pm_device_load(dev, &job->prog, 0, err);
    if (st == PM_OK) st = write_inputs(dev, job, err);
    if (st == PM_OK) {
        pm_device_reset_counters(dev);
        double t0 = now_s();
        st = pm_device_run(dev, &job->opts, err);
        *wall_s = now_s() - t0;
    }
    for (int i = 0; i < job->output_count && st == PM_OK; i++) st = capture_output(dev, &job->outputs[i], err);
    if (st == PM_OK) pm_device_counters(dev, counters);
    pm_device_close(dev);
    return st;
}

static void job_free(sim_job *job)
{
    for (int i = 0; i < job->input_count; i++) free(job->inputs[i].bytes);
    for (int i = 0; i < job->output_count; i++) free(job->outputs[i].bytes);
    pm_program_free(&job->prog);
}

int pm_cli_sim(int argc, char **argv)
{
    pm_cli_parsed p;
    if (!pm_cli_parse("sim", argc, argv, sim_options, OPT_COUNT, &p)) return PM_EXIT_FAIL;
    if (p.help) {
        fputs(pm_cli_sim_help, stdout);
        return PM_EXIT_OK;
    }
    if (p.positional_count == 0) return pm_cli_fail("sim", "missing program file");
    if (p.positional_count > 1) return pm_cli_fail("sim", "expected one program file, got %d", p.positional_count);

    sim_job *job = calloc(1, sizeof *job);
    if (!job) return pm_cli_fail("sim", "out of memory");
    pm_program_init(&job->prog);
    job->program_path = p.positional[0];
    pm_error err = {0};
    pm_counters counters;
    memset(&counters, 0, sizeof counters);
    double wall_s = 0;
    pm_status st = prepare(job, &p, &err);
    if (st == PM_OK) st = execute(job, &counters, &wall_s, &err);
    /* Outputs only after a successful run, all or none: one unwritable
     * destination leaves none of the others behind. */
    if (st == PM_OK && job->output_count > 0) {
        const char *paths[PM_CLI_MAX_VALUES];
        const void *data[PM_CLI_MAX_VALUES];
        size_t lens[PM_CLI_MAX_VALUES];
        for (int i = 0; i < job->output_count; i++) {
            paths[i] = job->outputs[i].path;
            data[i] = job->outputs[i].bytes;
            lens[i] = job->outputs[i].len;
        }
        st = pm_write_files_atomic((size_t)job->output_count, paths, data, lens, &err);
    }
    int rc = PM_EXIT_OK;
    if (st != PM_OK) rc = pm_cli_fail_err("sim", &err);
    else if (job->json) print_json(job, &counters, wall_s);
    else print_table(job, &counters, wall_s);
    if (rc == PM_EXIT_OK && fflush(stdout) != 0) rc = pm_cli_fail("sim", "cannot write to standard output");
    job_free(job);
    free(job);
    return rc;
}
