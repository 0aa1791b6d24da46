/* KAN inference on the simulated engine: the lanes schedule (edge preset)
 * and the fabric schedule (lfu-rev0.4.1) against a per-sample reference
 * written here and against the KAN layer's own host inference of a trained,
 * exported network (pm_kan_lfu_forward), bit for bit; chunking, both hazard
 * modes, counters, and the errors a builder reports. */
#include "polymorph/kan.h"
#include "polymorph/kan_kernels.h"
#include "polymorph/runtime.h"
#include "harness_fabric.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint32_t rnd(void) { return pm_test_xorshift(&rng_state); }
static float rndf(float lo, float hi) { return lo + (hi - lo) * (float)(rnd() % 1000000) / 1e6f; }

static void random_net(pm_fabric_net *net, uint32_t layers, const uint32_t *widths)
{
    pm_test_random_net(&rng_state, net, layers, widths);
}

/* Every edge the same table shape (an exported KAN's layer): the lanes
 * builder loops over a node's edges instead of unrolling them. */
static void uniform_net(pm_fabric_net *net, uint32_t layers, const uint32_t *widths)
{
    random_net(net, layers, widths);
    for (uint64_t k = 0; k < pm_fabric_net_edge_count(net); k++) {
        pm_lfu_table *t = &net->edges[k];
        pm_lfu_table_free(t);
        memset(t, 0, sizeof *t);
        t->degree = 3;
        t->segments = 8;
        t->x_min = rndf(-2, -1);
        t->x_max = rndf(1, 2);
        t->oor = PM_LFU_OOR_EXTEND;
        t->coeffs = malloc(32 * sizeof *t->coeffs);
        for (int c = 0; c < 32; c++) t->coeffs[c] = rndf(-0.5f, 0.5f);
    }
}

/* Per sample, per node: first edge's value, then each further edge added
 * in ascending input order, in fp32. */
static void reference(const pm_fabric_net *net, const float *x, size_t batch, float *y)
{
    uint32_t w_in = net->widths[0], w_out = net->widths[net->layers];
    for (size_t s = 0; s < batch; s++) {
        float a[64], b[64];
        memcpy(a, x + s * w_in, w_in * sizeof *a);
        const pm_lfu_table *edge = net->edges;
        for (uint32_t l = 0; l < net->layers; l++) {
            for (uint32_t j = 0; j < net->widths[l + 1]; j++) {
                float acc = pm_lfu_eval(edge++, a[0]);
                for (uint32_t i = 1; i < net->widths[l]; i++) acc += pm_lfu_eval(edge++, a[i]);
                b[j] = acc;
            }
            memcpy(a, b, net->widths[l + 1] * sizeof *a);
        }
        memcpy(y + s * w_out, a, w_out * sizeof *y);
    }
}

static bool preset(const char *name, pm_config *cfg)
{
    pm_error err;
    if (pm_config_preset(name, cfg, &err) == PM_OK) return true;
    fprintf(stderr, "%s\n", err.message);
    return false;
}

static int diff_count(const float *a, const float *b, size_t n)
{
    int bad = 0;
    for (size_t k = 0; k < n; k++) bad += memcmp(&a[k], &b[k], 4) != 0;
    return bad;
}

/* Both schedules on one network: same bits as the reference. */
static void check_both_modes(const pm_fabric_net *net, size_t batch, pm_hazard_mode hazards)
{
    pm_config lanes_cfg, fabric_cfg;
    if (!preset("edge", &lanes_cfg) || !preset("lfu-rev0.4.1", &fabric_cfg)) {
        CHECK(0);
        return;
    }
    lanes_cfg.hazard_mode = fabric_cfg.hazard_mode = hazards;
    uint32_t w_in = net->widths[0], w_out = net->widths[net->layers];
    float *x = malloc(batch * w_in * 4), *want = malloc(batch * w_out * 4), *got = malloc(batch * w_out * 4),
          *ref = malloc(batch * w_out * 4);
    for (size_t k = 0; k < batch * w_in; k++) x[k] = rndf(-3, 3);
    reference(net, x, batch, want);
    pm_error err;
    CHECK(pm_kan_ref_forward(net, x, batch, ref, &err) == PM_OK);
    CHECK(diff_count(want, ref, batch * w_out) == 0);
    uint64_t edges = pm_fabric_net_edge_count(net);
    for (int m = 0; m < 2; m++) {
        pm_counters c;
        memset(got, 0xff, batch * w_out * 4);
        pm_status st = pm_kan_run_device(m ? &fabric_cfg : &lanes_cfg, net, m ? PM_KAN_MODE_FABRIC : PM_KAN_MODE_LANES,
                                         x, batch, got, &c, &err);
        CHECK_MSG(st == PM_OK, "%s: %s", m ? "fabric" : "lanes", err.message);
        int bad = diff_count(want, got, batch * w_out);
        CHECK_MSG(bad == 0, "%s, hazards %d, batch %zu: %d of %zu outputs differ", m ? "fabric" : "lanes",
                  (int)hazards, batch, bad, batch * w_out);
        CHECK(c.lfu_evals == batch * edges);
        /* each sample read from DRAM once, each output written once */
        CHECK_MSG(c.dram_write_bytes == batch * w_out * 4, "%llu", (unsigned long long)c.dram_write_bytes);
        CHECK(c.dram_read_bytes == batch * w_in * 4);
        /* lanes: one vadd per edge beyond each node's first */
        uint64_t nodes = 0;
        for (uint32_t l = 0; l < net->layers; l++) nodes += net->widths[l + 1];
        CHECK(c.vector_elems == (m ? 0 : batch * (edges - nodes)));
    }
    free(x);
    free(want);
    free(got);
    free(ref);
}

TEST(test_random_networks)
{
    static const uint32_t shapes[][4] = {{1, 1}, {2, 3, 1}, {3, 5, 4, 2}, {4, 1, 3}, {5, 2}};
    static const uint32_t layers[] = {1, 2, 3, 2, 1};
    static const size_t batches[] = {1, 7, 33, 100, 64};
    for (int s = 0; s < 5; s++) {
        pm_fabric_net net;
        random_net(&net, layers[s], shapes[s]);
        check_both_modes(&net, batches[s], PM_HAZARD_INTERLOCK);
        pm_fabric_net_free(&net);
    }
}

TEST(test_uniform_tables_loop)
{
    /* inputs 5 (4 more edges: pairs only), 4 (3: one, then a pair), 6 (5) */
    static const uint32_t w[] = {5, 4, 6, 1};
    pm_fabric_net net;
    uniform_net(&net, 3, w);
    check_both_modes(&net, 50, PM_HAZARD_INTERLOCK);
    check_both_modes(&net, 19, PM_HAZARD_REPORT);
    pm_fabric_net_free(&net);
    /* the code does not grow with the width: a 64-64-10 network is a few
     * instructions per node, not per edge */
    static const uint32_t big[] = {64, 64, 10};
    uniform_net(&net, 2, big);
    pm_config edge;
    CHECK(preset("edge", &edge));
    pm_kan_desc d = {.mode = PM_KAN_MODE_LANES, .batch = 100, .x_addr = 0, .y_addr = 1 << 20};
    pm_program p;
    pm_error err;
    CHECK_MSG(pm_kernel_kan(&edge, &net, &d, &p, &err) == PM_OK, "%s", err.message);
    CHECK_MSG(p.code_count < 2000 && p.code_count <= edge.imem_words, "%zu instructions", p.code_count); /* unrolled: ~4 per edge, 18 944 */
    pm_program_free(&p);
    check_both_modes(&net, 40, PM_HAZARD_INTERLOCK);
    pm_fabric_net_free(&net);
}

TEST(test_report_hazards_need_no_interlock)
{
    /* with hazards = report the builders fence every producer: no hazard
     * is reported, and the bits are the same */
    static const uint32_t w[] = {3, 4, 2};
    pm_fabric_net net;
    random_net(&net, 2, w);
    check_both_modes(&net, 45, PM_HAZARD_REPORT);
    pm_fabric_net_free(&net);
}

/* Build with a forced chunk and run: the chunk loop's last, shorter chunk. */
static void run_chunked(const pm_config *cfg, const pm_fabric_net *net, pm_kan_mode mode, uint64_t chunk,
                        const float *x, size_t batch, float *y, pm_error *err, pm_status *st)
{
    pm_device *dev;
    *st = pm_device_open(cfg, &dev, err);
    if (*st) return;
    pm_kan_desc d = {.mode = mode, .batch = batch, .chunk = chunk, .x_addr = 0x1000, .y_addr = 0x100000};
    pm_program p;
    *st = pm_kernel_kan(cfg, net, &d, &p, err);
    if (!*st) {
        *st = pm_device_write(dev, d.x_addr, x, batch * net->widths[0] * 4, err);
        if (!*st) *st = pm_device_load(dev, &p, 1, err);
        if (!*st) *st = pm_device_run(dev, NULL, err);
        if (!*st) *st = pm_device_read(dev, d.y_addr, y, batch * net->widths[net->layers] * 4, err);
        pm_program_free(&p);
    }
    pm_device_close(dev);
}

TEST(test_chunks)
{
    static const uint32_t w[] = {3, 2, 2};
    pm_fabric_net net;
    random_net(&net, 2, w);
    enum { B = 23 };
    float x[B * 3], want[B * 2], got[B * 2];
    for (int k = 0; k < B * 3; k++) x[k] = rndf(-2, 2);
    reference(&net, x, B, want);
    pm_config lanes_cfg, fabric_cfg;
    CHECK(preset("edge", &lanes_cfg) && preset("lfu-rev0.4.1", &fabric_cfg));
    static const uint64_t chunks[] = {1, 4, 5, 22, 23};
    for (int c = 0; c < 5; c++)
        for (int m = 0; m < 2; m++) {
            pm_error err;
            pm_status st;
            memset(got, 0, sizeof got);
            run_chunked(m ? &fabric_cfg : &lanes_cfg, &net, m ? PM_KAN_MODE_FABRIC : PM_KAN_MODE_LANES, chunks[c], x,
                        B, got, &err, &st);
            CHECK_MSG(st == PM_OK, "%s", err.message);
            CHECK_MSG(diff_count(want, got, B * 2) == 0, "mode %d chunk %llu", m, (unsigned long long)chunks[c]);
        }
    pm_fabric_net_free(&net);
}

TEST(test_trained_network_matches_kan_layer)
{
    /* a small KAN trained on x*y, exported to LFU tables by the KAN layer;
     * its own host inference is the oracle */
    pm_kan kan;
    pm_kan_init init;
    pm_kan_init_defaults(&init);
    init.grid = 5;
    init.seed = 7;
    static const uint32_t width[] = {2, 3, 1};
    pm_error err;
    if (pm_kan_create(&kan, 2, width, &init, &err) != PM_OK) {
        CHECK_MSG(0, "%s", err.message);
        return;
    }
    enum { N = 200 };
    double xs[N * 2], ys[N];
    for (int k = 0; k < N; k++) {
        xs[2 * k] = rndf(-1, 1);
        xs[2 * k + 1] = rndf(-1, 1);
        ys[k] = xs[2 * k] * xs[2 * k + 1];
    }
    pm_kan_train_opts o;
    pm_kan_train_defaults(&o);
    o.steps = 20;
    CHECK_MSG(pm_kan_train(&kan, xs, ys, N, &o, NULL, &err) == PM_OK, "%s", err.message);
    pm_kan_lfu_net exported;
    CHECK_MSG(pm_kan_export(&kan, &exported, &err) == PM_OK, "%s", err.message);
    pm_fabric_net net;
    CHECK_MSG(pm_kan_net_from_export(&exported, &net, &err) == PM_OK, "%s", err.message);
    float x[N * 2], want[N], got[N];
    for (int k = 0; k < N * 2; k++) x[k] = (float)xs[k];
    x[0] = 1.5f; /* outside the grid too */
    x[1] = -2.0f;
    CHECK(pm_kan_lfu_forward(&exported, x, N, want, &err) == PM_OK);
    pm_config cfgs[2];
    CHECK(preset("edge", &cfgs[0]) && preset("lfu-rev0.4.1", &cfgs[1]));
    for (int m = 0; m < 2; m++) {
        memset(got, 0, sizeof got);
        CHECK_MSG(pm_kan_run_device(&cfgs[m], &net, m ? PM_KAN_MODE_FABRIC : PM_KAN_MODE_LANES, x, N, got, NULL,
                                    &err) == PM_OK,
                  "%s", err.message);
        CHECK_MSG(diff_count(want, got, N) == 0, "mode %d: %a vs %a", m, want[0], got[0]);
    }
    /* and the trained net is a real fit, not a constant */
    double se = 0;
    for (int k = 2; k < N; k++) se += (got[k] - ys[k]) * (got[k] - ys[k]);
    CHECK_MSG(se / (N - 2) < 1e-2, "mse %g", se / (N - 2));
    pm_fabric_net_free(&net);
    pm_kan_lfu_net_free(&exported);
    pm_kan_free(&kan);
}

TEST(test_errors)
{
    static const uint32_t w[] = {2, 2};
    pm_fabric_net net;
    random_net(&net, 1, w);
    pm_config edge, fab;
    CHECK(preset("edge", &edge) && preset("lfu-rev0.4.1", &fab));
    pm_error err;
    pm_program p;
    pm_kan_desc d = {.mode = PM_KAN_MODE_FABRIC, .batch = 4, .x_addr = 0, .y_addr = 4096};
    CHECK(pm_kernel_kan(&edge, &net, &d, &p, &err) == PM_ERR_INVALID && strstr(err.message, "fabric.lfus = 0"));
    d.batch = 0;
    CHECK(pm_kernel_kan(&fab, &net, &d, &p, &err) == PM_ERR_INVALID && strstr(err.message, "batch is 0"));
    d.batch = 4;
    d.y_addr = edge.dram_bytes - 8;
    CHECK(pm_kernel_kan(&fab, &net, &d, &p, &err) == PM_ERR_INVALID && strstr(err.message, "does not fit DRAM"));
    d.y_addr = 4096;
    d.mode = PM_KAN_MODE_LANES;
    d.chunk = edge.sram_bytes;
    CHECK(pm_kernel_kan(&edge, &net, &d, &p, &err) == PM_ERR_INVALID && strstr(err.message, "does not fit SRAM"));
    d.chunk = 0;
    pm_config tiny = edge;
    tiny.imem_words = 16;
    CHECK(pm_kernel_kan(&tiny, &net, &d, &p, &err) == PM_ERR_INVALID && strstr(err.message, "imem_words"));
    tiny = edge;
    tiny.sram_bytes = 4096;
    tiny.sram_bytes_per_cycle = 256;
    pm_fabric_net big;
    static const uint32_t wb[] = {8, 8};
    random_net(&big, 1, wb);
    CHECK(pm_kernel_kan(&tiny, &big, &d, &p, &err) == PM_ERR_INVALID && strstr(err.message, "sram.bytes"));
    net.edges[0].degree = 9;
    CHECK(pm_kernel_kan(&edge, &net, &d, &p, &err) != PM_OK && strstr(err.message, "layer 0, out 0, in 0"));
    net.edges[0].degree = 1;
    pm_kan_mode m;
    CHECK(pm_kan_mode_from_name("fabric", &m) && m == PM_KAN_MODE_FABRIC && !pm_kan_mode_from_name("tensor", &m));
    pm_fabric_net_free(&big);
    pm_fabric_net_free(&net);
}

int main(void)
{
    RUN(test_random_networks);
    RUN(test_uniform_tables_loop);
    RUN(test_report_hazards_need_no_interlock);
    RUN(test_chunks);
    RUN(test_trained_network_matches_kan_layer);
    RUN(test_errors);
    return TEST_SUMMARY();
}
