/* polymorph kan run: KAN inference on the simulated engine, on the vector
 * lanes' LFU array or on the LFU fabric, with its cycles, energy per
 * inference and a bit-for-bit comparison against host inference from the
 * same exported tables. The work is kan_kernels.h; this file is argv. */
#include "cli.h"
#include "polymorph/kan.h"
#include "polymorph/kan_kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char verb[] = "kan run";

enum { OPT_INPUT, OPT_PRESET, OPT_CONFIG, OPT_MODE, OPT_OUTPUT, OPT_JSON, OPT_COUNT };
static const pm_cli_option options[OPT_COUNT] = {
    [OPT_INPUT] = {"input", 'i', true, false},   [OPT_PRESET] = {"preset", 0, true, false},
    [OPT_CONFIG] = {"config", 0, true, false},   [OPT_MODE] = {"mode", 0, true, false},
    [OPT_OUTPUT] = {"output", 'o', true, false}, [OPT_JSON] = {"json", 0, false, false},
};

static const char help[] =
    "usage: polymorph kan run NETWORK --input X.npy [--preset P | --config F] [--mode lanes|fabric]\n"
    "                         [--output Y.npy] [--json]\n"
    "\n"
    "Runs an exported KAN (NETWORK: a .pmkn file from `polymorph kan export`, or a\n"
    "PMFN fabric image) on the simulated engine and checks the outputs against host\n"
    "inference from the same LFU tables, bit for bit.\n"
    "\n"
    "  --input X.npy     samples, float32 (or float64, rounded to float32),\n"
    "                    shape [n, inputs] or [inputs]\n"
    "  --preset NAME     chip preset (default: edge; lfu-rev0.4.1 has an LFU fabric)\n"
    "  --config FILE     chip config file\n"
    "  --mode M          lanes: the vector lanes' LFU array, one edge table at a time;\n"
    "                    fabric: the whole network on the LFU fabric (needs fabric.lfus > 0).\n"
    "                    Default: fabric when the config has one, else lanes\n"
    "  --output Y.npy    outputs, float32 [n, outputs]\n"
    "  --json            one JSON object: outputs shape, cycles, seconds, energy_j,\n"
    "                    energy_per_inference_j, lfu_evals, bit_exact, ...\n"
    "\n"
    "Exit status 1 when anything fails, including outputs that differ from host\n"
    "inference (a simulator bug: the numbers are printed first).\n";

typedef struct run_job {
    const char *net_path, *input_path, *output_path;
    pm_config cfg;
    pm_kan_mode mode;
    pm_fabric_net net;
    pm_kan_lfu_net exported; /* when NETWORK is a .pmkn: the KAN layer's own host inference is the reference */
    bool have_export;
    float *x, *y, *ref;
    uint64_t n;
    pm_counters counters;
} run_job;

static void job_free(run_job *j)
{
    pm_fabric_net_free(&j->net);
    if (j->have_export) pm_kan_lfu_net_free(&j->exported);
    free(j->x);
    free(j->y);
    free(j->ref);
}

static pm_status load_network(run_job *j, pm_error *err)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    pm_status st = pm_read_file(j->net_path, &bytes, &len, err);
    if (st) return st;
    if (len >= 4 && memcmp(bytes, "PMKN", 4) == 0) {
        st = pm_kan_lfu_net_load(bytes, len, &j->exported, err);
        if (!st) {
            j->have_export = true;
            st = pm_kan_net_from_export(&j->exported, &j->net, err);
        }
    } else if (len >= 4 && memcmp(bytes, "PMFN", 4) == 0) {
        size_t used = 0;
        st = pm_fabric_net_deserialize(bytes, len, &j->net, &used, err);
        if (!st && used != len) {
            st = pm_error_set(err, PM_ERR_FORMAT, "byte %zu: %zu bytes after the network", used, len - used);
            pm_fabric_net_free(&j->net);
        }
    } else {
        st = pm_error_set(err, PM_ERR_FORMAT, "byte 0: not a KAN network (expected magic PMKN or PMFN)");
    }
    free(bytes);
    if (st) pm_error_prefix(err, "%s: ", j->net_path);
    return st;
}

static pm_status load_input(run_job *j, pm_error *err)
{
    pm_npy a;
    pm_status st = pm_npy_load(j->input_path, &a, err);
    if (st) return st;
    uint32_t w_in = j->net.widths[0];
    if (a.kind != PM_NPY_FLOAT || (a.item_bytes != 4 && a.item_bytes != 8))
        st = pm_error_set(err, PM_ERR_INVALID, "%s: %s samples; expected float32 or float64", j->input_path,
                          pm_npy_type_name(&a));
    else if (!((a.rank == 2 && a.shape[1] == w_in) || (a.rank == 1 && a.shape[0] == w_in)))
        st = pm_error_set(err, PM_ERR_INVALID, "%s: shape does not fit the network's %u inputs (expected [n, %u] or [%u])",
                          j->input_path, w_in, w_in, w_in);
    else if (a.count == 0)
        st = pm_error_set(err, PM_ERR_INVALID, "%s: no samples", j->input_path);
    if (!st) {
        j->n = a.count / w_in;
        j->x = malloc(a.count * sizeof *j->x);
        if (!j->x) st = pm_error_set(err, PM_ERR_NOMEM, "out of memory for %llu samples", (unsigned long long)j->n);
        for (uint64_t k = 0; !st && k < a.count; k++) j->x[k] = (float)pm_npy_get_f64(&a, k);
    }
    pm_npy_free(&a);
    return st;
}

static pm_status prepare(run_job *j, const pm_cli_parsed *p, pm_error *err)
{
    const char *preset = pm_cli_value(p, OPT_PRESET), *config = pm_cli_value(p, OPT_CONFIG);
    const char *mode = pm_cli_value(p, OPT_MODE);
    if (preset && config) return pm_error_set(err, PM_ERR_INVALID, "give --preset or --config, not both");
    pm_status st = config ? pm_config_load_file(config, &j->cfg, err)
                          : pm_config_preset(preset ? preset : "edge", &j->cfg, err);
    if (st) return st;
    j->mode = j->cfg.fabric_lfus ? PM_KAN_MODE_FABRIC : PM_KAN_MODE_LANES;
    if (mode && !pm_kan_mode_from_name(mode, &j->mode))
        return pm_error_set(err, PM_ERR_INVALID, "--mode %s: expected lanes or fabric", mode);
    if (j->mode == PM_KAN_MODE_FABRIC && j->cfg.fabric_lfus == 0)
        return pm_error_set(err, PM_ERR_INVALID,
                            "--mode fabric: config %s has no LFU fabric (fabric.lfus = 0); try --preset lfu-rev0.4.1",
                            j->cfg.name);
    if ((st = load_network(j, err)) || (st = load_input(j, err))) return st;
    uint64_t outs = j->n * j->net.widths[j->net.layers];
    j->y = malloc(outs * sizeof *j->y);
    j->ref = malloc(outs * sizeof *j->ref);
    if (!j->y || !j->ref) return pm_error_set(err, PM_ERR_NOMEM, "out of memory for %llu outputs", (unsigned long long)outs);
    return PM_OK;
}

static void report(const run_job *j, bool json, uint64_t mismatches, double max_abs)
{
    const pm_counters *c = &j->counters;
    uint32_t w_out = j->net.widths[j->net.layers];
    uint64_t edges = pm_fabric_net_edge_count(&j->net);
    const char *oracle = j->have_export ? "pm_kan_lfu_forward" : "pm_kan_ref_forward";
    double per = c->energy_j / (double)j->n;
    if (json) {
        FILE *f = stdout;
        fputs("{\"network\": ", f);
        pm_cli_json_string(f, j->net_path);
        fputs(", \"config\": ", f);
        pm_cli_json_string(f, j->cfg.name);
        fprintf(f, ", \"mode\": \"%s\", \"samples\": %llu, \"inputs\": %u, \"outputs\": %u, \"layers\": %u, "
                   "\"edges\": %llu",
                pm_kan_mode_name(j->mode), (unsigned long long)j->n, j->net.widths[0], w_out, j->net.layers,
                (unsigned long long)edges);
        fprintf(f, ", \"cycles\": %llu, \"seconds\": ", (unsigned long long)c->cycles);
        pm_cli_json_number(f, c->seconds);
        fputs(", \"energy_j\": ", f);
        pm_cli_json_number(f, c->energy_j);
        fputs(", \"energy_per_inference_j\": ", f);
        pm_cli_json_number(f, per);
        fputs(", \"lfu_energy_j\": ", f);
        pm_cli_json_number(f, c->unit[PM_UNIT_LFU].energy_j);
        fprintf(f, ", \"lfu_evals\": %llu, \"lfu_evals_per_inference\": %llu, \"dram_bytes\": %llu, \"sram_bytes\": %llu",
                (unsigned long long)c->lfu_evals, (unsigned long long)edges,
                (unsigned long long)(c->dram_read_bytes + c->dram_write_bytes),
                (unsigned long long)(c->sram_read_bytes + c->sram_write_bytes));
        fprintf(f, ", \"host_reference\": \"%s\", \"bit_exact\": %s, \"mismatches\": %llu, \"max_abs_diff\": ", oracle,
                mismatches ? "false" : "true", (unsigned long long)mismatches);
        pm_cli_json_number(f, max_abs);
        fputs(", \"output\": ", f);
        if (j->output_path) pm_cli_json_string(f, j->output_path);
        else fputs("null", f);
        fputs(", \"outputs_shape\": [", f);
        fprintf(f, "%llu, %u]}\n", (unsigned long long)j->n, w_out);
        return;
    }
    printf("kan run: %s on %s (%s), %llu samples, %u layers, %llu edges\n", j->net_path, j->cfg.name,
           pm_kan_mode_name(j->mode), (unsigned long long)j->n, j->net.layers, (unsigned long long)edges);
    printf("  cycles                 %llu (%.6g s at %g MHz)\n", (unsigned long long)c->cycles, c->seconds,
           j->cfg.clock_mhz);
    printf("  energy                 %.6g J (%.6g J per inference; LFUs %.6g J)\n", c->energy_j, per,
           c->unit[PM_UNIT_LFU].energy_j);
    printf("  lfu evaluations        %llu (%llu per inference)\n", (unsigned long long)c->lfu_evals,
           (unsigned long long)edges);
    printf("  DRAM bytes             %llu\n", (unsigned long long)(c->dram_read_bytes + c->dram_write_bytes));
    printf("  vs host (%s)  %s", oracle, mismatches ? "DIFFERENT" : "bit-exact");
    if (mismatches) printf(": %llu outputs differ, max |diff| %.6g", (unsigned long long)mismatches, max_abs);
    putchar('\n');
    if (j->output_path) printf("  outputs                %s [%llu, %u] float32\n", j->output_path,
                               (unsigned long long)j->n, w_out);
}

int pm_cli_kan_run(int argc, char **argv)
{
    pm_cli_parsed p;
    if (!pm_cli_parse(verb, argc, argv, options, OPT_COUNT, &p)) return PM_EXIT_FAIL;
    if (p.help) return fputs(help, stdout), PM_EXIT_OK;
    if (p.positional_count != 1) return pm_cli_fail(verb, "expected one NETWORK file (see polymorph kan run --help)");
    run_job j;
    memset(&j, 0, sizeof j);
    j.net_path = p.positional[0];
    j.input_path = pm_cli_value(&p, OPT_INPUT);
    j.output_path = pm_cli_value(&p, OPT_OUTPUT);
    if (!j.input_path) return pm_cli_fail(verb, "--input X.npy is required");
    pm_error err;
    pm_error_clear(&err);
    pm_status st = prepare(&j, &p, &err);
    if (!st) st = pm_kan_run_device(&j.cfg, &j.net, j.mode, j.x, (size_t)j.n, j.y, &j.counters, &err);
    if (!st)
        st = j.have_export ? pm_kan_lfu_forward(&j.exported, j.x, (size_t)j.n, j.ref, &err)
                           : pm_kan_ref_forward(&j.net, j.x, (size_t)j.n, j.ref, &err);
    uint8_t *npy = NULL;
    size_t npy_len = 0;
    uint64_t outs = j.n * j.net.widths[j.net.layers];
    if (!st && j.output_path) {
        uint64_t shape[2] = {j.n, j.net.widths[j.net.layers]};
        st = pm_npy_build("<f4", shape, 2, j.y, (size_t)outs * 4, &npy, &npy_len, &err);
        if (!st) st = pm_write_file_atomic(j.output_path, npy, npy_len, &err);
        free(npy);
    }
    if (st) {
        job_free(&j);
        return pm_cli_fail_err(verb, &err);
    }
    uint64_t mismatches = 0;
    double max_abs = 0;
    for (uint64_t k = 0; k < outs; k++)
        if (memcmp(&j.y[k], &j.ref[k], 4) != 0) {
            mismatches++;
            double d = fabs((double)j.y[k] - (double)j.ref[k]);
            if (!(d <= max_abs)) max_abs = d;
        }
    report(&j, pm_cli_value(&p, OPT_JSON) != NULL || p.given[OPT_JSON], mismatches, max_abs);
    job_free(&j);
    if (fflush(stdout) != 0 || ferror(stdout)) return pm_cli_fail(verb, "cannot write standard output");
    if (mismatches) return pm_cli_fail(verb, "%llu outputs differ from host inference", (unsigned long long)mismatches);
    return PM_EXIT_OK;
}
