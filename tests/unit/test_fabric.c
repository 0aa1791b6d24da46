/* LFU fabric tests: the PMFN network format (round trip, every truncation,
 * corruptions), fab.cfg/fab.run in the simulator against a per-sample
 * reference written here, the timing model (pipelining, folding, latency),
 * counters and energy, and the faults a bad program gets. */
#include "polymorph/config.h"
#include "polymorph/isa.h"
#include "polymorph/numerics.h"
#include "polymorph/sim.h"
#include "harness_fabric.h"
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) { return pm_test_xorshift(&rng_state); }
static float rndf(float lo, float hi) { return lo + (hi - lo) * (float)(rnd() % 1000000) / 1e6f; }

static void random_net(pm_fabric_net *net, uint32_t layers, const uint32_t *widths)
{
    pm_test_random_net(&rng_state, net, layers, widths);
}

/* The order the fabric must keep, written out for one sample. */
static void reference(const pm_fabric_net *net, const float *x, float *y)
{
    static float a[4096], b[4096];
    memcpy(a, x, net->widths[0] * sizeof *a);
    const pm_lfu_table *edge = net->edges;
    for (uint32_t l = 0; l < net->layers; l++) {
        for (uint32_t j = 0; j < net->widths[l + 1]; j++) {
            float s = pm_lfu_eval(edge++, a[0]);
            for (uint32_t i = 1; i < net->widths[l]; i++) s += pm_lfu_eval(edge++, a[i]);
            b[j] = s;
        }
        memcpy(a, b, net->widths[l + 1] * sizeof *a);
    }
    memcpy(y, a, net->widths[net->layers] * sizeof *y);
}

static bool fabric_config(pm_config *cfg, uint32_t lfus)
{
    pm_error err;
    if (pm_config_preset("lfu-rev0.4.1", cfg, &err) != PM_OK) {
        fprintf(stderr, "%s\n", err.message);
        return false;
    }
    if (lfus) cfg->fabric_lfus = lfus;
    return true;
}

TEST(test_serial_roundtrip)
{
    static const uint32_t w[] = {3, 4, 2};
    pm_fabric_net net, back;
    random_net(&net, 2, w);
    pm_error err;
    uint8_t *bytes = NULL, *again = NULL;
    size_t len = 0, len2 = 0, used = 0;
    CHECK_MSG(pm_fabric_net_serialize(&net, &bytes, &len, &err) == PM_OK, "%s", err.message);
    CHECK(pm_fabric_net_deserialize(bytes, len, &back, &used, &err) == PM_OK && used == len);
    CHECK(back.layers == 2 && back.widths[0] == 3 && back.widths[1] == 4 && back.widths[2] == 2);
    for (uint64_t k = 0; k < pm_fabric_net_edge_count(&net); k++)
        for (float x = -4; x <= 4; x += 0.37f) {
            float p = pm_lfu_eval(&net.edges[k], x), q = pm_lfu_eval(&back.edges[k], x);
            CHECK(memcmp(&p, &q, 4) == 0);
        }
    CHECK(pm_fabric_net_serialize(&back, &again, &len2, &err) == PM_OK && len2 == len &&
          memcmp(bytes, again, len) == 0);
    /* trailing bytes are ignored, and reported through `used` */
    uint8_t *longer = calloc(1, len + 7);
    memcpy(longer, bytes, len);
    pm_fabric_net third;
    CHECK(pm_fabric_net_deserialize(longer, len + 7, &third, &used, &err) == PM_OK && used == len);
    pm_fabric_net_free(&third);
    free(longer);
    free(again);
    free(bytes);
    pm_fabric_net_free(&back);
    pm_fabric_net_free(&net);
}

TEST(test_serial_rejects)
{
    static const uint32_t w[] = {2, 3, 1};
    pm_fabric_net net, back;
    random_net(&net, 2, w);
    pm_error err;
    uint8_t *bytes = NULL;
    size_t len = 0;
    CHECK(pm_fabric_net_serialize(&net, &bytes, &len, &err) == PM_OK);
    /* every truncation is an error, never a crash or a read past the end */
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *part = malloc(cut ? cut : 1);
        memcpy(part, bytes, cut);
        CHECK_MSG(pm_fabric_net_deserialize(part, cut, &back, NULL, &err) == PM_ERR_FORMAT, "cut %zu", cut);
        free(part);
    }
    uint8_t *bad = malloc(len);
    memcpy(bad, bytes, len);
    bad[0] = 'X';
    CHECK(pm_fabric_net_deserialize(bad, len, &back, NULL, &err) == PM_ERR_FORMAT && strstr(err.message, "magic"));
    memcpy(bad, bytes, len);
    bad[4] = 9;
    CHECK(pm_fabric_net_deserialize(bad, len, &back, NULL, &err) == PM_ERR_FORMAT && strstr(err.message, "version"));
    memcpy(bad, bytes, len);
    bad[8] = 0;
    CHECK(pm_fabric_net_deserialize(bad, len, &back, NULL, &err) == PM_ERR_FORMAT && strstr(err.message, "layers"));
    memcpy(bad, bytes, len);
    bad[12] = 0; /* width 0 */
    CHECK(pm_fabric_net_deserialize(bad, len, &back, NULL, &err) == PM_ERR_FORMAT && strstr(err.message, "width"));
    memcpy(bad, bytes, len);
    bad[24] ^= 1; /* first edge's length no longer matches its table */
    CHECK(pm_fabric_net_deserialize(bad, len, &back, NULL, &err) == PM_ERR_FORMAT && strstr(err.message, "byte 24"));
    /* random corruption: accepted or refused, never a crash */
    for (int trial = 0; trial < 300; trial++) {
        memcpy(bad, bytes, len);
        for (int f = 0; f < 3; f++) bad[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
        if (pm_fabric_net_deserialize(bad, len, &back, NULL, &err) == PM_OK) pm_fabric_net_free(&back);
    }
    /* validate names the edge */
    net.edges[4].degree = 7;
    CHECK(pm_fabric_net_validate(&net, &err) != PM_OK && strstr(err.message, "layer 0, out 2, in 0"));
    net.edges[4].degree = 1;
    free(bad);
    free(bytes);
    pm_fabric_net_free(&net);
}

/* Run fab.cfg + fab.run.FMT on n samples already in SRAM. */
#define NET_AT 0
#define X_AT 0x40000
#define Y_AT 0x80000

static pm_status run_fabric(pm_sim *sim, const pm_fabric_net *net, const char *fmt, uint64_t n, pm_error *err)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    pm_status st = net ? pm_fabric_net_serialize(net, &bytes, &len, err) : PM_OK;
    if (!st && net) st = pm_sim_sram_write(sim, 0, NET_AT, bytes, len, err);
    free(bytes);
    if (st) return st;
    char text[512];
    snprintf(text, sizeof text,
             "li r1, %d\nfab.cfg r1\nli r2, %d\nli r3, %d\nli r4, %llu\nfab.run.%s r3, r2, r4\nhalt\n", NET_AT, X_AT,
             Y_AT, (unsigned long long)n, fmt);
    pm_program p;
    if ((st = pm_assemble("t.pasm", text, &p, err))) return st;
    st = pm_sim_load_program(sim, &p, 0, err);
    if (!st) st = pm_sim_run(sim, NULL, err);
    pm_program_free(&p);
    return st;
}

TEST(test_fab_run_matches_reference)
{
    pm_config cfg;
    if (!fabric_config(&cfg, 0)) {
        CHECK(0);
        return;
    }
    static const uint32_t shapes[][4] = {{1, 1, 0, 0}, {2, 5, 1, 0}, {4, 3, 3, 2}, {3, 1, 2, 0}};
    static const uint32_t layers[] = {1, 2, 3, 2};
    for (int s = 0; s < 4; s++) {
        pm_fabric_net net;
        random_net(&net, layers[s], shapes[s]);
        pm_sim *sim;
        pm_error err;
        CHECK(pm_sim_create(&cfg, &sim, &err) == PM_OK);
        uint32_t w_in = net.widths[0], w_out = net.widths[net.layers];
        enum { N = 37 };
        float x[N * 4], y[N * 4], want[4];
        for (int k = 0; k < N * 4; k++) x[k] = rndf(-4, 4);
        x[0] = -0.0f;
        CHECK(pm_sim_sram_write(sim, 0, X_AT, x, N * w_in * 4, &err) == PM_OK);
        CHECK_MSG(run_fabric(sim, &net, "f32", N, &err) == PM_OK, "%s", err.message);
        CHECK(pm_sim_sram_read(sim, 0, Y_AT, y, N * w_out * 4, &err) == PM_OK);
        for (int b = 0; b < N; b++) {
            reference(&net, x + b * w_in, want);
            CHECK_MSG(memcmp(want, y + b * w_out, w_out * 4) == 0, "shape %d sample %d: %a vs %a", s, b, want[0],
                      y[b * w_out]);
        }
        pm_counters c;
        pm_sim_counters(sim, &c);
        CHECK(c.lfu_evals == N * pm_fabric_net_edge_count(&net));
        size_t len;
        uint8_t *bytes;
        pm_fabric_net_serialize(&net, &bytes, &len, &err);
        free(bytes);
        /* read once (the network, the samples), written once (the outputs) */
        CHECK(c.sram_read_bytes == len + (uint64_t)N * w_in * 4);
        CHECK(c.sram_write_bytes == (uint64_t)N * w_out * 4);
        CHECK(c.unit[PM_UNIT_VEC].instructions == 0);
        double want_j = (double)c.lfu_evals * cfg.energy_lfu_pj_per_eval * 1e-12;
        CHECK(fabs(c.unit[PM_UNIT_LFU].compute_energy_j - want_j) <= 1e-12 * want_j + 1e-30);
        pm_sim_destroy(sim);
        pm_fabric_net_free(&net);
    }
}

TEST(test_fab_run_bf16)
{
    pm_config cfg;
    if (!fabric_config(&cfg, 0)) return;
    static const uint32_t w[] = {3, 2, 2};
    pm_fabric_net net;
    random_net(&net, 2, w);
    pm_sim *sim;
    pm_error err;
    CHECK(pm_sim_create(&cfg, &sim, &err) == PM_OK);
    enum { N = 9 };
    float x[N * 3], xr[N * 3], want[N * 2];
    uint16_t xb[N * 3], yb[N * 2], wantb[N * 2];
    for (int k = 0; k < N * 3; k++) x[k] = rndf(-2, 2);
    CHECK(pm_format_encode(PM_FMT_BF16, x, N * 3, xb, &err) == PM_OK);
    CHECK(pm_format_decode(PM_FMT_BF16, xb, N * 3, xr, &err) == PM_OK);
    for (int b = 0; b < N; b++) reference(&net, xr + b * 3, want + b * 2);
    CHECK(pm_format_encode(PM_FMT_BF16, want, N * 2, wantb, &err) == PM_OK);
    CHECK(pm_sim_sram_write(sim, 0, X_AT, xb, sizeof xb, &err) == PM_OK);
    CHECK_MSG(run_fabric(sim, &net, "bf16", N, &err) == PM_OK, "%s", err.message);
    CHECK(pm_sim_sram_read(sim, 0, Y_AT, yb, sizeof yb, &err) == PM_OK);
    CHECK(memcmp(yb, wantb, sizeof yb) == 0);
    pm_sim_destroy(sim);
    pm_fabric_net_free(&net);
}

TEST(test_fab_run_blocks_and_in_place)
{
    /* a wide hidden layer makes the simulator work in blocks of samples;
     * the outputs overwrite the inputs (d == a) */
    pm_config cfg;
    if (!fabric_config(&cfg, 0)) return;
    static const uint32_t w[] = {2, 600, 1}; /* blocks of 436 samples */
    pm_fabric_net net;
    random_net(&net, 2, w);
    pm_sim *sim;
    pm_error err;
    CHECK(pm_sim_create(&cfg, &sim, &err) == PM_OK);
    enum { N = 1000 };
    static float x[N * 2], y[N], want[N];
    for (int k = 0; k < N * 2; k++) x[k] = rndf(-3, 3);
    for (int b = 0; b < N; b++) reference(&net, x + 2 * b, want + b);
    uint8_t *bytes;
    size_t len;
    CHECK(pm_fabric_net_serialize(&net, &bytes, &len, &err) == PM_OK);
    CHECK(pm_sim_sram_write(sim, 0, 0, bytes, len, &err) == PM_OK);
    free(bytes);
    uint64_t at = (len + 63) / 64 * 64;
    CHECK(pm_sim_sram_write(sim, 0, at, x, sizeof x, &err) == PM_OK);
    char text[256];
    snprintf(text, sizeof text, "li r1, 0\nfab.cfg r1\nli r2, %llu\nli r4, %d\nfab.run.f32 r2, r2, r4\nhalt\n",
             (unsigned long long)at, N);
    pm_program p;
    CHECK(pm_assemble("t", text, &p, &err) == PM_OK);
    CHECK(pm_sim_load_program(sim, &p, 0, &err) == PM_OK);
    CHECK_MSG(pm_sim_run(sim, NULL, &err) == PM_OK, "%s", err.message);
    CHECK(pm_sim_sram_read(sim, 0, at, y, sizeof y, &err) == PM_OK);
    CHECK(memcmp(y, want, sizeof y) == 0);
    pm_program_free(&p);
    pm_sim_destroy(sim);
    pm_fabric_net_free(&net);
}

TEST(test_serial_refuses_impossible_counts_early)
{
    /* a 12-byte header that claims 65536 x 65536 edges... capped, and one
     * that claims 2^21 edges in 40 bytes: refused without allocating them */
    uint8_t buf[40] = {'P', 'M', 'F', 'N', 1, 0, 0, 0, 1, 0, 0, 0, 0, 8, 0, 0, 0, 2, 0, 0};
    pm_fabric_net net;
    pm_error err;
    CHECK(pm_fabric_net_deserialize(buf, sizeof buf, &net, NULL, &err) == PM_ERR_FORMAT &&
          strstr(err.message, "cannot fit"));
}

/* Cycles of one fab.run of n samples on cfg with a fabric of `lfus` LFUs
 * (0: the preset's). */
static uint64_t run_cycles_cfg(pm_config cfg, const pm_fabric_net *net, uint32_t lfus, uint64_t n)
{
    if (lfus) cfg.fabric_lfus = lfus;
    pm_sim *sim;
    pm_error err;
    if (pm_sim_create(&cfg, &sim, &err) != PM_OK) return 0;
    pm_counters c = {0};
    if (run_fabric(sim, net, "f32", n, &err) == PM_OK) pm_sim_counters(sim, &c);
    else fprintf(stderr, "%s\n", err.message);
    pm_sim_destroy(sim);
    return c.cycles;
}

static uint64_t run_cycles(const pm_fabric_net *net, uint32_t lfus, uint64_t n)
{
    pm_config cfg;
    if (!fabric_config(&cfg, 0)) return 0;
    return run_cycles_cfg(cfg, net, lfus, n);
}

TEST(test_timing_pipelined_and_folded)
{
    static const uint32_t w[] = {4, 6, 3};
    pm_fabric_net net;
    random_net(&net, 2, w);
    uint64_t edges = pm_fabric_net_edge_count(&net); /* 42 */
    /* one sample per cycle once the pipe is full: 1000 more samples cost
     * 1000 more cycles, whatever the latency */
    uint64_t a = run_cycles(&net, 0, 1000), b = run_cycles(&net, 0, 2000);
    CHECK_MSG(a && b - a == 1000, "%llu %llu", (unsigned long long)a, (unsigned long long)b);
    /* fewer LFUs than edges: ceil(edges / lfus) passes per sample */
    uint64_t f1 = run_cycles(&net, (uint32_t)edges, 2000), f2 = run_cycles(&net, (uint32_t)(edges / 2), 2000),
             f3 = run_cycles(&net, (uint32_t)(edges / 2 - 1), 2000), f42 = run_cycles(&net, 1, 2000);
    CHECK_MSG(f2 - f1 == 2000, "%llu %llu", (unsigned long long)f1, (unsigned long long)f2);
    CHECK(f3 - f1 == 4000);
    CHECK(f42 - f1 == 2000 * (edges - 1));
    /* latency: per layer, the LFU pipeline then (inputs - 1) chained adds */
    pm_config cfg, slow;
    CHECK(fabric_config(&cfg, 0));
    slow = cfg;
    slow.fabric_adder_latency_cycles += 10;
    CHECK(run_cycles_cfg(slow, &net, 0, 1) - run_cycles_cfg(cfg, &net, 0, 1) == (3 + 5) * 10);
    slow = cfg;
    slow.lfu_latency_cycles += 7;
    CHECK(run_cycles_cfg(slow, &net, 0, 1) - run_cycles_cfg(cfg, &net, 0, 1) == 2 * 7);
    pm_fabric_net_free(&net);
}

TEST(test_faults)
{
    pm_config cfg;
    if (!fabric_config(&cfg, 0)) return;
    pm_sim *sim;
    pm_error err;
    static const uint32_t w[] = {2, 2};
    pm_fabric_net net;
    random_net(&net, 1, w);
    /* fab.run before any fab.cfg */
    CHECK(pm_sim_create(&cfg, &sim, &err) == PM_OK);
    pm_program p;
    CHECK(pm_assemble("t", "li r4, 1\nfab.run.f32 r3, r2, r4\nhalt\n", &p, &err) == PM_OK);
    CHECK(pm_sim_load_program(sim, &p, 0, &err) == PM_OK);
    CHECK(pm_sim_run(sim, NULL, &err) == PM_ERR_FAULT && strstr(err.message, "holds no network") &&
          strstr(err.message, "fab.run"));
    pm_program_free(&p);
    pm_sim_destroy(sim);
    /* a malformed network in SRAM */
    CHECK(pm_sim_create(&cfg, &sim, &err) == PM_OK);
    CHECK(pm_sim_sram_write(sim, 0, NET_AT, "PMFNjunk", 8, &err) == PM_OK);
    CHECK(run_fabric(sim, NULL, "f32", 1, &err) == PM_ERR_FAULT && strstr(err.message, "malformed fabric network"));
    pm_sim_destroy(sim);
    /* samples running off the end of SRAM */
    CHECK(pm_sim_create(&cfg, &sim, &err) == PM_OK);
    CHECK(run_fabric(sim, &net, "f32", cfg.sram_bytes / 8, &err) == PM_ERR_FAULT);
    pm_sim_destroy(sim);
    /* a format the fabric does not take */
    CHECK(pm_sim_create(&cfg, &sim, &err) == PM_OK);
    CHECK(run_fabric(sim, &net, "int8", 1, &err) == PM_ERR_FAULT && strstr(err.message, "not supported"));
    pm_sim_destroy(sim);
    /* a config without a fabric */
    pm_config edge;
    CHECK(pm_config_preset("edge", &edge, &err) == PM_OK && edge.fabric_lfus == 0);
    CHECK(pm_sim_create(&edge, &sim, &err) == PM_OK);
    CHECK(run_fabric(sim, &net, "f32", 1, &err) == PM_ERR_FAULT && strstr(err.message, "no LFU fabric"));
    pm_sim_destroy(sim);
    pm_fabric_net_free(&net);
}

TEST(test_preset_figures)
{
    /* The figures docs/fabric.md and tests/oracle/test_fabric_presets.py
     * check against the litepaper, computed from the preset here too. */
    pm_config cfg;
    if (!fabric_config(&cfg, 0)) return;
    CHECK(fabs(pm_config_fabric_lfu_power_w(&cfg) - 127e-6) < 127e-6 * 1e-6);
    CHECK(fabs(pm_config_fabric_power_w(&cfg) - 400.0) < 400.0 * 1e-4);
    CHECK(fabs(pm_config_fabric_peak_flops_per_w(&cfg) - 2.3e12) < 2.3e12 * 1e-6);
    pm_config edge;
    pm_error err;
    CHECK(pm_config_preset("edge", &edge, &err) == PM_OK && pm_config_fabric_peak_flops_per_w(&edge) == 0.0);
}

int main(void)
{
    RUN(test_serial_roundtrip);
    RUN(test_serial_rejects);
    RUN(test_fab_run_matches_reference);
    RUN(test_fab_run_bf16);
    RUN(test_fab_run_blocks_and_in_place);
    RUN(test_serial_refuses_impossible_counts_early);
    RUN(test_timing_pipelined_and_folded);
    RUN(test_faults);
    RUN(test_preset_figures);
    return TEST_SUMMARY();
}
