/* polymorph bench: runs a kernel on a simulated chip and puts its figures
 * beside the roofline of that chip and beside the host CPU (OpenBLAS). The
 * simulated output is checked against the kernel's C reference bit for bit;
 * a mismatch is a failure (exit 1), whatever the timings say. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include "bench_native.h"
#include "polymorph/kernels.h"
#include "polymorph/numerics.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char pm_cli_bench_help[] =
    "usage: polymorph bench gemm M N K [options]\n"
    "       polymorph bench gemv K N [options]      (the same with M = 1)\n"
    "\n"
    "Benchmark Y = X x W^T on a simulated chip: X is M x K bf16, W is N x K in\n"
    "the weight format (one row of K weights per output, as GGUF stores them),\n"
    "Y is M x N. Random inputs are written to device DRAM, the program comes\n"
    "from the matmul kernel builder, and the simulated Y is compared bit for\n"
    "bit with the builder's C reference (exit 1 when they differ). The same\n"
    "product is then timed on the host with OpenBLAS sgemm (fp32, same values).\n"
    "\n"
    "options:\n"
    "  --wfmt FORMAT      weight format (default bf16; any numerics format, e.g.\n"
    "                     int8, e4m3, mxfp4, nvfp4, if4, q4_0, q4_1, q8_0)\n"
    "  --ofmt FORMAT      output format (default f32)\n"
    "  --preset NAME      chip preset (default: edge; see polymorph presets)\n"
    "  --config FILE      chip config file (may start with `base = PRESET`)\n"
    "  --engines N        run on N engines (sets chip.engines; default: the\n"
    "                     config's); the work is split across them\n"
    "  --dataflow os|ws   array dataflow (default: the config's tensor.dataflow;\n"
    "                     M = 1 always runs the weight-stationary GEMV schedule)\n"
    "  --threads T        host threads of the simulator and of OpenBLAS\n"
    "                     (default: one per CPU); never changes a result\n"
    "  --seed S           seed of the random inputs (default 1)\n"
    "  --repeat R         load and run R times on one device (and OpenBLAS at\n"
    "                     least 3 times), report the best\n"
    "                     wall time (default 5); cycles and Y must agree every\n"
    "                     time. The first run pays the simulator's one-time\n"
    "                     set-up (threads, buffers); use R >= 3 for timings\n"
    "  --no-native        skip the OpenBLAS comparison (native figures null)\n"
    "  --json             print one JSON object instead of the table\n"
    "  -h, --help         show this help\n"
    "\n"
    "figures (docs/bench.md defines each):\n"
    "  utilization        2MNK / (cycles x 2 x rows x cols x engines)\n"
    "  roofline_fraction  max(compute-bound time, DRAM-bound time) / simulated\n"
    "                     time; DRAM-bound time = DRAM bytes moved / bandwidth\n"
    "  bound              the larger of the two bounds: compute or dram\n"
    "  sim_wall_s         host seconds of program load + simulated run\n"
    "  native_wall_s      host seconds of OpenBLAS sgemm (best of --repeat,\n"
    "                     at least 3, after a warm-up call)\n"
    "  sim_vs_native      native_wall_s / sim_wall_s (throughput ratio)\n"
    "\n"
    "example:\n"
    "  polymorph bench gemm 1024 1024 1024 --preset edge --json\n"
    "  polymorph bench gemv 4096 4096 --wfmt q4_1\n";

enum {
    OPT_WFMT,
    OPT_OFMT,
    OPT_PRESET,
    OPT_CONFIG,
    OPT_ENGINES,
    OPT_DATAFLOW,
    OPT_THREADS,
    OPT_SEED,
    OPT_REPEAT,
    OPT_NO_NATIVE,
    OPT_JSON,
    OPT_COUNT
};
static const pm_cli_option bench_options[OPT_COUNT] = {
    [OPT_WFMT] = {"wfmt", 0, true, false},        [OPT_OFMT] = {"ofmt", 0, true, false},
    [OPT_PRESET] = {"preset", 0, true, false},    [OPT_CONFIG] = {"config", 0, true, false},
    [OPT_ENGINES] = {"engines", 0, true, false},  [OPT_DATAFLOW] = {"dataflow", 0, true, false},
    [OPT_THREADS] = {"threads", 0, true, false},  [OPT_SEED] = {"seed", 0, true, false},
    [OPT_REPEAT] = {"repeat", 0, true, false},    [OPT_NO_NATIVE] = {"no-native", 0, false, false},
    [OPT_JSON] = {"json", 0, false, false},
};

/* Largest dimension accepted: the host buffers and OpenBLAS's int arguments
 * must hold every operand. */
#define BENCH_DIM_MAX (1u << 20)
#define BENCH_ELEMS_MAX (1ull << 31)

typedef struct bench_job {
    pm_config cfg;
    const char *kernel; /* "gemm" or "gemv" */
    uint32_t M, N, K;
    pm_format wfmt, ofmt;
    bool dataflow_given;
    pm_dataflow dataflow;
    unsigned threads; /* 0 = the simulator's and OpenBLAS's default */
    uint64_t seed;
    unsigned repeat;
    bool native, json;
} bench_job;

typedef struct bench_result {
    pm_counters counters;
    size_t program_words;
    double sim_wall_s;
    double build_wall_s; /* pm_kernel_matmul: emitting the program (not part of sim_wall_s) */
    bool bit_exact;
    uint64_t mismatched_bytes;
    uint64_t compulsory_dram_bytes; /* X + W read once, Y written once */
    bool native_ok;
    char native_why[256];
    double native_wall_s, native_median_s;
    double native_max_abs_diff; /* |OpenBLAS - simulated| over Y: a sanity check, not a bit test */
} bench_result;

/* The host buffers of one benchmark: inputs, the simulated and the
 * reference output, all in the engine's storage formats. */
typedef struct bench_data {
    uint64_t x_bytes, w_bytes, y_bytes;
    uint16_t *x;
    uint8_t *w;
    uint8_t *y_sim, *y_ref;
} bench_data;

/* ---- arguments ---- */

static pm_status parse_u64(const char *what, const char *text, uint64_t min, uint64_t max, uint64_t *out,
                           pm_error *err)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = (text[0] >= '0' && text[0] <= '9') ? strtoull(text, &end, 10) : 0;
    if (!end || *end || errno || v < min || v > max)
        return pm_error_set(err, PM_ERR_INVALID, "%s '%s': expected an integer in [%" PRIu64 ", %" PRIu64 "]", what,
                            text, min, max);
    *out = v;
    return PM_OK;
}

static pm_status parse_dim(const char *name, const char *text, uint32_t *out, pm_error *err)
{
    uint64_t v;
    pm_status st = parse_u64(name, text, 1, BENCH_DIM_MAX, &v, err);
    if (st == PM_OK) *out = (uint32_t)v;
    return st;
}

static pm_status parse_format(const char *opt, const char *text, pm_format *out, pm_error *err)
{
    if (pm_format_from_name(text, out)) return PM_OK;
    char names[512];
    size_t n = 0;
    for (int f = 0; f < PM_FMT_COUNT && n < sizeof names; f++)
        n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", f ? ", " : "", pm_format_get((pm_format)f)->name);
    return pm_error_set(err, PM_ERR_INVALID, "--%s '%s': unknown format (one of %s)", opt, text, names);
}

/* Shape: `gemm M N K` or `gemv K N`. */
static pm_status parse_shape(bench_job *job, const pm_cli_parsed *p, pm_error *err)
{
    if (p->positional_count == 0)
        return pm_error_set(err, PM_ERR_INVALID, "missing kernel: expected gemm M N K or gemv K N");
    job->kernel = p->positional[0];
    const char *const *a = p->positional + 1;
    int n = p->positional_count - 1;
    pm_status st;
    if (strcmp(job->kernel, "gemm") == 0) {
        if (n != 3) return pm_error_set(err, PM_ERR_INVALID, "gemm takes M N K, got %d number%s", n, n == 1 ? "" : "s");
        st = parse_dim("M", a[0], &job->M, err);
        if (st == PM_OK) st = parse_dim("N", a[1], &job->N, err);
        if (st == PM_OK) st = parse_dim("K", a[2], &job->K, err);
    } else if (strcmp(job->kernel, "gemv") == 0) {
        if (n != 2) return pm_error_set(err, PM_ERR_INVALID, "gemv takes K N, got %d number%s", n, n == 1 ? "" : "s");
        job->M = 1;
        st = parse_dim("K", a[0], &job->K, err);
        if (st == PM_OK) st = parse_dim("N", a[1], &job->N, err);
    } else {
        return pm_error_set(err, PM_ERR_INVALID, "unknown kernel '%s' (gemm or gemv)", job->kernel);
    }
    if (st != PM_OK) return st;
    const uint64_t M = job->M, N = job->N, K = job->K;
    if (M * K > BENCH_ELEMS_MAX || N * K > BENCH_ELEMS_MAX || M * N > BENCH_ELEMS_MAX)
        return pm_error_set(err, PM_ERR_INVALID, "shape %" PRIu64 " x %" PRIu64 " x %" PRIu64
                            ": an operand has more than 2^31 elements", M, N, K);
    return PM_OK;
}

static pm_status parse_job(bench_job *job, const pm_cli_parsed *p, pm_error *err)
{
    pm_status st = parse_shape(job, p, err);
    if (st != PM_OK) return st;
    job->wfmt = PM_FMT_BF16;
    job->ofmt = PM_FMT_F32;
    if (pm_cli_value(p, OPT_WFMT) && (st = parse_format("wfmt", pm_cli_value(p, OPT_WFMT), &job->wfmt, err)) != PM_OK)
        return st;
    if (pm_cli_value(p, OPT_OFMT) && (st = parse_format("ofmt", pm_cli_value(p, OPT_OFMT), &job->ofmt, err)) != PM_OK)
        return st;

    const char *preset = pm_cli_value(p, OPT_PRESET), *config = pm_cli_value(p, OPT_CONFIG);
    if (preset && config) return pm_error_set(err, PM_ERR_INVALID, "give --preset or --config, not both");
    st = config ? pm_config_load_file(config, &job->cfg, err) : pm_config_preset(preset ? preset : "edge", &job->cfg, err);
    if (st != PM_OK) return st;

    uint64_t v;
    if (pm_cli_value(p, OPT_ENGINES)) {
        if ((st = parse_u64("--engines", pm_cli_value(p, OPT_ENGINES), 1, 64, &v, err)) != PM_OK) return st;
        /* A chip of exactly N engines, all used: the peak counts them all. */
        job->cfg.engines = (uint32_t)v;
        if ((st = pm_config_validate(&job->cfg, err)) != PM_OK) {
            pm_error_prefix(err, "--engines %" PRIu64 ": ", v);
            return st;
        }
    }
    const char *df = pm_cli_value(p, OPT_DATAFLOW);
    if (df) {
        static const struct { const char *name; pm_dataflow flow; } flows[] = {
            {"os", PM_DATAFLOW_OUTPUT_STATIONARY}, {"ws", PM_DATAFLOW_WEIGHT_STATIONARY}};
        size_t i = 0;
        while (i < sizeof flows / sizeof flows[0] && strcmp(flows[i].name, df) != 0) i++;
        if (i == sizeof flows / sizeof flows[0])
            return pm_error_set(err, PM_ERR_INVALID, "--dataflow '%s': expected os or ws", df);
        job->dataflow_given = true;
        job->dataflow = flows[i].flow;
    }
    if (pm_cli_value(p, OPT_THREADS)) {
        if ((st = parse_u64("--threads", pm_cli_value(p, OPT_THREADS), 1, 256, &v, err)) != PM_OK) return st;
        job->threads = (unsigned)v;
    }
    job->seed = 1;
    if (pm_cli_value(p, OPT_SEED) &&
        (st = parse_u64("--seed", pm_cli_value(p, OPT_SEED), 0, UINT64_MAX, &job->seed, err)) != PM_OK)
        return st;
    job->repeat = 5;
    if (pm_cli_value(p, OPT_REPEAT)) {
        if ((st = parse_u64("--repeat", pm_cli_value(p, OPT_REPEAT), 1, 100, &v, err)) != PM_OK) return st;
        job->repeat = (unsigned)v;
    }
    job->native = p->given[OPT_NO_NATIVE] == 0;
    job->json = p->given[OPT_JSON] > 0;
    return PM_OK;
}

static void describe(const bench_job *job, pm_matmul_desc *d)
{
    pm_matmul_desc_init(d, job->M, job->N, job->K, job->wfmt, job->ofmt);
    d->engines = job->cfg.engines;
    d->dataflow_from_config = !job->dataflow_given;
    d->dataflow = job->dataflow_given ? job->dataflow : job->cfg.tensor_dataflow;
}

/* ---- inputs ---- */

/* splitmix64: a seeded stream, so the same --seed gives the same inputs on
 * every host. */
typedef struct bench_rng {
    uint64_t state;
} bench_rng;

static uint64_t rng_next(bench_rng *r)
{
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1) with 24 random bits. */
static float rng_unit(bench_rng *r) { return (float)((double)(rng_next(r) >> 40) * 0x1p-23 - 1.0); }

/* Plain integer weight formats have no scale: spread the values over the
 * format's range so the product is not all zeros and ones. */
static float weight_range(pm_format f)
{
    const pm_format_info *fi = pm_format_get(f);
    if (fi->is_float || fi->is_block) return 1.0f;
    return fi->elem_bits == 4 ? 7.0f : 127.0f;
}

static void data_free(bench_data *h)
{
    free(h->x);
    free(h->w);
    free(h->y_sim);
    free(h->y_ref);
    memset(h, 0, sizeof *h);
}

static pm_status make_inputs(const bench_job *job, const pm_matmul_desc *d, bench_data *h, pm_error *err)
{
    pm_status st = pm_matmul_sizes(d, &h->x_bytes, &h->w_bytes, &h->y_bytes, err);
    if (st != PM_OK) return st;
    size_t wn = (size_t)job->N * job->K;
    float *wf = malloc(wn * sizeof *wf);
    h->x = malloc(h->x_bytes);
    h->w = malloc(h->w_bytes);
    h->y_sim = malloc(h->y_bytes);
    h->y_ref = malloc(h->y_bytes);
    if (!wf || !h->x || !h->w || !h->y_sim || !h->y_ref) {
        free(wf);
        return pm_error_set(err, PM_ERR_NOMEM, "out of memory for the operands");
    }
    bench_rng rng = {job->seed};
    for (size_t i = 0; i < (size_t)job->M * job->K; i++) h->x[i] = pm_f32_to_bf16(rng_unit(&rng));
    float range = weight_range(job->wfmt);
    for (size_t i = 0; i < wn; i++) wf[i] = range * rng_unit(&rng);
    st = pm_format_encode(job->wfmt, wf, wn, h->w, err);
    free(wf);
    if (st != PM_OK) pm_error_prefix(err, "encoding the weights as %s: ", pm_format_get(job->wfmt)->name);
    return st;
}

/* ---- the simulated run ---- */

/* The simulator's host threads (0 = its default, one per CPU). */
static pm_status apply_threads(pm_device *dev, unsigned threads, pm_error *err)
{
    (void)err;
    if (threads) pm_device_set_threads(dev, threads);
    return PM_OK;
}

/* One device for every repeat, as a user keeps a device open: allocate the
 * operands and emit the program for their addresses once; each repeat
 * rewrites the inputs, then times load + run. The first repeat also pays
 * the simulator's one-time set-up (its matmul threads, scratch buffers),
 * so --repeat > 1 reports the steady state. */
static pm_status simulate(const bench_job *job, bench_data *h, bench_result *res, pm_error *err)
{
    pm_device *dev = NULL;
    pm_program prog;
    pm_program_init(&prog);
    pm_matmul_desc d;
    describe(job, &d);
    pm_status st = pm_device_open(&job->cfg, &dev, err);
    if (st == PM_OK) st = apply_threads(dev, job->threads, err);
    if (st == PM_OK) st = pm_device_alloc(dev, h->x_bytes, 64, &d.x_addr, err);
    if (st == PM_OK) st = pm_device_alloc(dev, h->w_bytes, 64, &d.w_addr, err);
    if (st == PM_OK) st = pm_device_alloc(dev, h->y_bytes, 64, &d.y_addr, err);
    if (st == PM_OK) {
        double t0 = pm_bench_now_s();
        st = pm_kernel_matmul(&job->cfg, &d, &prog, err);
        res->build_wall_s = pm_bench_now_s() - t0;
        if (st != PM_OK) pm_error_prefix(err, "kernel: ");
    }
    for (unsigned r = 0; st == PM_OK && r < job->repeat; r++) {
        st = pm_device_write(dev, d.x_addr, h->x, h->x_bytes, err);
        if (st == PM_OK) st = pm_device_write(dev, d.w_addr, h->w, h->w_bytes, err);
        if (st != PM_OK) break;
        pm_run_options opts = {0};
        double t0 = pm_bench_now_s();
        st = pm_device_load(dev, &prog, 0, err);
        if (st == PM_OK) {
            pm_device_reset_counters(dev);
            st = pm_device_run(dev, &opts, err);
        }
        double wall_s = pm_bench_now_s() - t0;
        if (st != PM_OK) {
            pm_error_prefix(err, "simulated run: ");
            break;
        }
        pm_counters k;
        pm_device_counters(dev, &k);
        /* Same inputs, same config: same cycles, every time (principle 2). */
        if (r > 0 && k.cycles != res->counters.cycles) {
            st = pm_error_set(err, PM_ERR_FAULT,
                              "run %u took %" PRIu64 " cycles, run 1 took %" PRIu64 " (the simulator is not deterministic)",
                              r + 1, k.cycles, res->counters.cycles);
            break;
        }
        if (r == 0 || wall_s < res->sim_wall_s) res->sim_wall_s = wall_s;
        res->counters = k;
        res->program_words = prog.code_count;
        /* Each run's output is checked: a later run must not differ from the first. */
        st = pm_device_read(dev, d.y_addr, r == 0 ? h->y_sim : h->y_ref, h->y_bytes, err);
        if (st == PM_OK && r > 0 && memcmp(h->y_sim, h->y_ref, h->y_bytes) != 0)
            st = pm_error_set(err, PM_ERR_FAULT, "run %u wrote a different Y than run 1 on the same inputs", r + 1);
    }
    pm_program_free(&prog);
    pm_device_close(dev);
    return st;
}

static pm_status check_reference(const bench_job *job, const bench_data *h, bench_result *res, pm_error *err)
{
    pm_matmul_desc d;
    describe(job, &d);
    pm_status st = pm_ref_matmul(&d, h->x, h->w, NULL, h->y_ref, err);
    if (st != PM_OK) {
        pm_error_prefix(err, "reference: ");
        return st;
    }
    res->mismatched_bytes = 0;
    for (uint64_t i = 0; i < h->y_bytes; i++) res->mismatched_bytes += h->y_sim[i] != h->y_ref[i];
    res->bit_exact = res->mismatched_bytes == 0;
    res->compulsory_dram_bytes = h->x_bytes + h->w_bytes + h->y_bytes;
    return PM_OK;
}

/* ---- the native run ---- */

/* OpenBLAS gets the values the array multiplies: X's bf16 values and the
 * decoded weights rounded to bf16, both held in fp32. */
/* OpenBLAS is timed as often as the simulator (--repeat, at least 3), after
 * a warm-up call: both sides report their best. */
static int native_reps(const bench_job *job) { return job->repeat > 3 ? (int)job->repeat : 3; }

static pm_status native_operands(const bench_job *job, const bench_data *h, float *a, float *b, pm_error *err)
{
    for (size_t i = 0; i < (size_t)job->M * job->K; i++) a[i] = pm_bf16_to_f32(h->x[i]);
    size_t wn = (size_t)job->N * job->K;
    pm_status st = pm_format_decode(job->wfmt, h->w, wn, b, err);
    for (size_t i = 0; st == PM_OK && i < wn; i++) b[i] = pm_bf16_to_f32(pm_f32_to_bf16(b[i]));
    return st;
}

static pm_status run_native(const bench_job *job, const bench_data *h, bench_result *res, pm_error *err)
{
    res->native_ok = false;
    if (!job->native) {
        snprintf(res->native_why, sizeof res->native_why, "skipped (--no-native)");
        return PM_OK;
    }
    pm_bench_native *lib = pm_bench_native_open(res->native_why, sizeof res->native_why);
    if (!lib) return PM_OK;
    size_t mk = (size_t)job->M * job->K, nk = (size_t)job->N * job->K, mn = (size_t)job->M * job->N;
    float *a = malloc(mk * sizeof *a), *b = malloc(nk * sizeof *b), *c = malloc(mn * sizeof *c);
    float *sim = malloc(mn * sizeof *sim);
    pm_status st = (a && b && c && sim) ? PM_OK : pm_error_set(err, PM_ERR_NOMEM, "out of memory for the native run");
    if (st == PM_OK) st = native_operands(job, h, a, b, err);
    if (st == PM_OK) st = pm_format_decode(job->ofmt, h->y_sim, mn, sim, err);
    if (st == PM_OK) {
        pm_bench_native_set_threads(lib, job->threads);
        res->native_wall_s = pm_bench_native_sgemm(lib, (int)job->M, (int)job->N, (int)job->K, a, b, c,
                                                   native_reps(job), &res->native_median_s);
        res->native_ok = true;
        double worst = 0;
        for (size_t i = 0; i < mn; i++) {
            double diff = fabs((double)c[i] - (double)sim[i]);
            if (!(diff <= worst)) worst = diff; /* NaN propagates as the worst */
        }
        res->native_max_abs_diff = worst;
    }
    free(a);
    free(b);
    free(c);
    free(sim);
    pm_bench_native_close(lib);
    return st;
}

/* ---- figures ---- */

typedef struct bench_figures {
    double flops, peak_flops, utilization;
    double compute_bound_s, dram_bound_s, roofline_fraction;
    const char *bound;
    uint64_t dram_bytes;
    double sim_vs_native; /* NaN when there is no native figure */
} bench_figures;

static bench_figures figures(const bench_job *job, const bench_result *res)
{
    const pm_config *cfg = &job->cfg;
    const pm_counters *c = &res->counters;
    bench_figures f;
    f.flops = 2.0 * job->M * job->N * (double)job->K;
    double macs_per_cycle = (double)cfg->tensor_rows * cfg->tensor_cols * cfg->engines;
    f.peak_flops = 2.0 * macs_per_cycle * cfg->clock_mhz * 1e6;
    f.utilization = c->cycles ? f.flops / ((double)c->cycles * 2.0 * macs_per_cycle) : NAN;
    f.dram_bytes = c->dram_read_bytes + c->dram_write_bytes;
    f.compute_bound_s = f.flops / f.peak_flops;
    f.dram_bound_s = (double)f.dram_bytes / (cfg->dram_gbps * 1e9);
    f.bound = f.compute_bound_s >= f.dram_bound_s ? "compute" : "dram";
    double tight = f.compute_bound_s >= f.dram_bound_s ? f.compute_bound_s : f.dram_bound_s;
    f.roofline_fraction = c->seconds > 0 ? tight / c->seconds : NAN;
    f.sim_vs_native = res->native_ok && res->sim_wall_s > 0 ? res->native_wall_s / res->sim_wall_s : NAN;
    return f;
}

/* ---- output ---- */

static const char *dataflow_name(pm_dataflow d) { return d == PM_DATAFLOW_WEIGHT_STATIONARY ? "ws" : "os"; }

/* The dataflow the program runs: the requested one, except that M = 1 takes
 * the kernel library's streaming GEMV schedule, weight-stationary by
 * definition (kernels.h). */
static pm_dataflow effective_dataflow(const bench_job *job)
{
    if (job->M == 1) return PM_DATAFLOW_WEIGHT_STATIONARY;
    return job->dataflow_given ? job->dataflow : job->cfg.tensor_dataflow;
}

static void print_json(const bench_job *job, const bench_result *res, const bench_figures *fig)
{
    FILE *f = stdout;
    const pm_counters *c = &res->counters;
    fputs("{\"kernel\": ", f);
    pm_cli_json_string(f, job->kernel);
    fprintf(f, ", \"M\": %u, \"N\": %u, \"K\": %u, \"wfmt\": \"%s\", \"ofmt\": \"%s\", \"preset\": ", job->M, job->N,
            job->K, pm_format_get(job->wfmt)->name, pm_format_get(job->ofmt)->name);
    pm_cli_json_string(f, job->cfg.name);
    fprintf(f, ", \"engines\": %u, \"rows\": %u, \"cols\": %u, \"weight_load_rows\": %u, \"dataflow\": \"%s\""
            ", \"clock_mhz\": ",
            job->cfg.engines, job->cfg.tensor_rows, job->cfg.tensor_cols, job->cfg.tensor_weight_load_rows,
            dataflow_name(effective_dataflow(job)));
    pm_cli_json_number(f, job->cfg.clock_mhz);
    fputs(", \"dram_gbps\": ", f);
    pm_cli_json_number(f, job->cfg.dram_gbps);
    fputs(", \"threads\": ", f);
    if (job->threads) fprintf(f, "%u", job->threads);
    else fputs("null", f);
    fprintf(f, ", \"seed\": %" PRIu64 ", \"cycles\": %" PRIu64 ", \"seconds\": ", job->seed, c->cycles);
    pm_cli_json_number(f, c->seconds);
    const struct { const char *key; double v; } nums[] = {
        {"flops", fig->flops},
        {"peak_flops", fig->peak_flops},
        {"utilization", fig->utilization},
        {"compute_bound_s", fig->compute_bound_s},
        {"dram_bound_s", fig->dram_bound_s},
        {"roofline_fraction", fig->roofline_fraction},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        fprintf(f, ", \"%s\": ", nums[i].key);
        pm_cli_json_number(f, nums[i].v);
    }
    fprintf(f, ", \"bound\": \"%s\", \"dram_bytes\": %" PRIu64 ", \"dram_read_bytes\": %" PRIu64
            ", \"dram_write_bytes\": %" PRIu64 ", \"compulsory_dram_bytes\": %" PRIu64 ", \"tensor_macs\": %" PRIu64
            ", \"instructions\": %" PRIu64 ", \"program_words\": %zu, \"energy_j\": ",
            fig->bound, fig->dram_bytes, c->dram_read_bytes, c->dram_write_bytes, res->compulsory_dram_bytes,
            c->tensor_macs, c->instructions, res->program_words);
    pm_cli_json_number(f, c->energy_j);
    /* The array's own share of the run (docs/bench.md, "SCALE-Sim"): cycles
     * minus these is time the tensor unit waited for DMA or control. */
    fprintf(f, ", \"tensor_instructions\": %" PRIu64 ", \"tensor_busy_cycles\": %" PRIu64,
            c->unit[PM_UNIT_TENSOR].instructions, c->unit[PM_UNIT_TENSOR].busy_cycles);
    fputs(", \"sim_wall_s\": ", f);
    pm_cli_json_number(f, res->sim_wall_s);
    fputs(", \"build_wall_s\": ", f);
    pm_cli_json_number(f, res->build_wall_s);
    fputs(", \"native_wall_s\": ", f);
    pm_cli_json_number(f, res->native_ok ? res->native_wall_s : NAN);
    fputs(", \"native_median_s\": ", f);
    pm_cli_json_number(f, res->native_ok ? res->native_median_s : NAN);
    fputs(", \"sim_vs_native\": ", f);
    pm_cli_json_number(f, fig->sim_vs_native);
    fputs(", \"native_library\": ", f);
    if (res->native_ok) pm_cli_json_string(f, "libopenblas.so.0");
    else fputs("null", f);
    fputs(", \"native_note\": ", f);
    if (res->native_ok) fputs("null", f);
    else pm_cli_json_string(f, res->native_why);
    fputs(", \"native_max_abs_diff\": ", f);
    pm_cli_json_number(f, res->native_ok ? res->native_max_abs_diff : NAN);
    fprintf(f, ", \"bit_exact\": %s, \"mismatched_bytes\": %" PRIu64 "}\n", res->bit_exact ? "true" : "false",
            res->mismatched_bytes);
}

/* 1.234 us, 5.6 ms ...: a time in the unit a reader expects. */
static void time_text(double s, char *buf, size_t cap)
{
    static const struct { double scale; const char *unit; } units[] = {
        {1, "s"}, {1e-3, "ms"}, {1e-6, "us"}, {1e-9, "ns"},
    };
    size_t i = 0;
    while (i + 1 < sizeof units / sizeof units[0] && s < units[i].scale) i++;
    snprintf(buf, cap, "%.4g %s", s / units[i].scale, units[i].unit);
}

static void print_table(const bench_job *job, const bench_result *res, const bench_figures *fig)
{
    const pm_config *cfg = &job->cfg;
    const pm_counters *c = &res->counters;
    char t[64], tc[64], td[64];
    printf("bench %s: M=%u N=%u K=%u, weights %s, output %s\n", job->kernel, job->M, job->N, job->K,
           pm_format_get(job->wfmt)->name, pm_format_get(job->ofmt)->name);
    printf("chip %s: %u engine%s of %ux%u (%s), %g MHz, DRAM %g GB/s\n\n", cfg->name, cfg->engines,
           cfg->engines == 1 ? "" : "s", cfg->tensor_rows, cfg->tensor_cols,
           dataflow_name(effective_dataflow(job)), cfg->clock_mhz, cfg->dram_gbps);
    time_text(c->seconds, t, sizeof t);
    time_text(fig->compute_bound_s, tc, sizeof tc);
    time_text(fig->dram_bound_s, td, sizeof td);
    printf("  %-20s %" PRIu64 "\n", "cycles", c->cycles);
    printf("  %-20s %s\n", "simulated time", t);
    printf("  %-20s %.4f  (%.4g of %.4g TFLOP/s peak)\n", "utilization", fig->utilization,
           fig->flops / c->seconds / 1e12, fig->peak_flops / 1e12);
    printf("  %-20s %.4f  (bound: %s; compute %s, DRAM %s)\n", "roofline fraction", fig->roofline_fraction,
           fig->bound, tc, td);
    printf("  %-20s %" PRIu64 "  (compulsory %" PRIu64 ")\n", "DRAM bytes", fig->dram_bytes,
           res->compulsory_dram_bytes);
    printf("  %-20s %.4g J\n", "energy", c->energy_j);
    printf("  %-20s %s\n", "bit exact", res->bit_exact ? "yes" : "NO");
    if (!res->bit_exact) printf("  %-20s %" PRIu64 "\n", "mismatched bytes", res->mismatched_bytes);
    printf("\n  %-20s %.4g s  (%.4g GFLOP/s of host; load + run)\n", "sim wall time", res->sim_wall_s,
           fig->flops / res->sim_wall_s / 1e9);
    printf("  %-20s %.4g s  (pm_kernel_matmul, not in sim wall time)\n", "program build", res->build_wall_s);
    if (res->native_ok) {
        printf("  %-20s %.4g s  (%.4g GFLOP/s, OpenBLAS sgemm, best of %d)\n", "native wall time",
               res->native_wall_s, fig->flops / res->native_wall_s / 1e9, native_reps(job));
        printf("  %-20s %.4f\n", "sim vs native", fig->sim_vs_native);
    } else {
        printf("  %-20s n/a: %s\n", "native wall time", res->native_why);
    }
}

/* ---- the verb ---- */

int pm_cli_bench(int argc, char **argv)
{
    pm_cli_parsed p;
    if (!pm_cli_parse("bench", argc, argv, bench_options, OPT_COUNT, &p)) return PM_EXIT_FAIL;
    if (p.help) {
        fputs(pm_cli_bench_help, stdout);
        return PM_EXIT_OK;
    }
    bench_job *job = calloc(1, sizeof *job);
    bench_result *res = calloc(1, sizeof *res);
    bench_data h = {0};
    if (!job || !res) {
        free(job);
        free(res);
        return pm_cli_fail("bench", "out of memory");
    }
    pm_error err = {0};
    pm_status st = parse_job(job, &p, &err);
    pm_matmul_desc d;
    if (st == PM_OK) {
        describe(job, &d);
        st = make_inputs(job, &d, &h, &err);
    }
    if (st == PM_OK) st = simulate(job, &h, res, &err);
    if (st == PM_OK) st = check_reference(job, &h, res, &err);
    if (st == PM_OK) st = run_native(job, &h, res, &err);
    int rc = PM_EXIT_OK;
    if (st != PM_OK) {
        rc = pm_cli_fail_err("bench", &err);
    } else {
        bench_figures fig = figures(job, res);
        if (!res->native_ok && job->native)
            fprintf(stderr, "polymorph bench: note: no native figure: %s\n", res->native_why);
        if (job->json) print_json(job, res, &fig);
        else print_table(job, res, &fig);
        if (fflush(stdout) != 0) rc = pm_cli_fail("bench", "cannot write to standard output");
        else if (!res->bit_exact)
            rc = pm_cli_fail("bench", "the simulated output differs from the reference in %" PRIu64 " bytes",
                             res->mismatched_bytes);
    }
    data_free(&h);
    free(job);
    free(res);
    return rc;
}
