/* Kernel library tests: the program builder (labels, sticky errors), the
 * matmul reference against hand-computed sums, descriptor errors, and the
 * matmul programs run on simulated devices (edge, fpga, tiny custom configs
 * that force many ragged tiles; several weight formats, batch, epilogue,
 * 1/2/4 engines, hazards interlock and report): outputs must equal
 * pm_ref_matmul bit for bit. */
#include "polymorph/kernels.h"
#include "polymorph/runtime.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: every failure reproduces from its seed. */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static float rng_float(uint64_t *s, float lo, float hi)
{
    return lo + (hi - lo) * (float)((rng_next(s) >> 40) * (1.0 / 16777216.0));
}

static uint32_t rng_range(uint64_t *s, uint32_t lo, uint32_t hi)
{
    return lo + (uint32_t)(rng_next(s) % (hi - lo + 1));
}

/* ---- builder ---- */

TEST(test_builder_labels)
{
    pm_builder *b;
    pm_error err;
    CHECK(pm_builder_create(&b, &err) == PM_OK);
    uint32_t fwd = pm_builder_label(b), back = pm_builder_label(b);
    pm_builder_bind(b, back);
    pm_builder_emit(b, PM_OP_LI, 1, 5, 0, 0, 0, 0);
    pm_builder_emit(b, PM_OP_BEQ, 1, 0, pm_builder_ref(fwd), 0, 0, 0);
    pm_builder_emit(b, PM_OP_JMP, pm_builder_ref(back), 0, 0, 0, 0, 0);
    pm_builder_bind(b, fwd);
    CHECK(pm_builder_pc(b) == 3);
    pm_builder_emit(b, PM_OP_HALT, 0, 0, 0, 0, 0, 0);
    pm_program p;
    pm_program_init(&p);
    CHECK(pm_builder_finish(b, &p, &err) == PM_OK);
    CHECK(p.code_count == 4);
    pm_insn in;
    CHECK(pm_decode(p.code[1], &in, &err) == PM_OK && in.opcode == PM_OP_BEQ && in.op[2] == 3);
    CHECK(pm_decode(p.code[2], &in, &err) == PM_OK && in.opcode == PM_OP_JMP && in.op[0] == 0);
    pm_program_free(&p);
    pm_builder_destroy(b);
}

TEST(test_builder_errors_stick)
{
    pm_builder *b;
    pm_error err;
    CHECK(pm_builder_create(&b, &err) == PM_OK);
    pm_builder_emit(b, PM_OP_LI, 1, 5, 0, 0, 0, 0);
    pm_builder_emit(b, PM_OP_ADD, 40, 0, 0, 0, 0, 0); /* register 40 does not exist */
    pm_builder_emit(b, PM_OP_HALT, 0, 0, 0, 0, 0, 0);
    CHECK(pm_builder_status(b, &err) == PM_ERR_INVALID);
    CHECK_MSG(strstr(err.message, "instruction 1") != NULL, "%s", err.message);
    pm_program p;
    pm_program_init(&p);
    CHECK(pm_builder_finish(b, &p, &err) == PM_ERR_INVALID);
    CHECK(p.code_count == 0);
    pm_builder_destroy(b);

    CHECK(pm_builder_create(&b, &err) == PM_OK);
    uint32_t never = pm_builder_label(b);
    pm_builder_emit(b, PM_OP_JMP, pm_builder_ref(never), 0, 0, 0, 0, 0);
    CHECK(pm_builder_finish(b, &p, &err) == PM_ERR_INVALID);
    CHECK_MSG(strstr(err.message, "never bound") != NULL, "%s", err.message);
    pm_builder_emit(b, PM_OP_JMP, pm_builder_ref(7), 0, 0, 0, 0, 0); /* unknown label */
    CHECK(pm_builder_status(b, &err) == PM_ERR_INVALID);
    pm_builder_destroy(b);
    pm_program_free(&p);
}

/* ---- reference ---- */

TEST(test_ref_hand_computed)
{
    /* X = [[1, 2, 3], [-1, 0.5, 4]], W = [[1, 1, 1], [2, 0, -1]] (bf16 exact).
     * Y = X W^T = [[6, -1], [3.5, -6]]; with scale 2, bias [1, -1], f32 out. */
    pm_matmul_desc d;
    pm_matmul_desc_init(&d, 2, 2, 3, PM_FMT_F32, PM_FMT_F32);
    float xf[6] = {1, 2, 3, -1, 0.5f, 4}, w[6] = {1, 1, 1, 2, 0, -1}, bias[2] = {1, -1}, y[4];
    uint16_t x[6];
    for (int i = 0; i < 6; i++) x[i] = pm_f32_to_bf16(xf[i]);
    pm_error err;
    CHECK(pm_ref_matmul(&d, x, w, NULL, y, &err) == PM_OK);
    CHECK(y[0] == 6 && y[1] == -1 && y[2] == 3.5f && y[3] == -6);
    d.has_scale = true, d.scale = 2, d.has_bias = true;
    CHECK(pm_ref_matmul(&d, x, w, bias, y, &err) == PM_OK);
    CHECK(y[0] == 13 && y[1] == -3 && y[2] == 8 && y[3] == -13);
    /* Weights go through bf16: 1 + 2^-10 rounds to 1 before the product. */
    w[0] = 1.0f + 0x1p-10f;
    d.has_scale = false, d.has_bias = false;
    CHECK(pm_ref_matmul(&d, x, w, NULL, y, &err) == PM_OK);
    CHECK(y[0] == 6);
    /* Sums are sequential fp32 from +0: 2^24 + 1 + 1 stays 2^24 (each +1 rounds away),
     * where a pairwise sum would give 2^24 + 2. */
    pm_matmul_desc_init(&d, 1, 1, 3, PM_FMT_F32, PM_FMT_F32);
    float xs[3] = {0x1p24f, 1, 1}, ws[3] = {1, 1, 1};
    for (int i = 0; i < 3; i++) x[i] = pm_f32_to_bf16(xs[i]);
    CHECK(pm_ref_matmul(&d, x, ws, NULL, y, &err) == PM_OK);
    CHECK(y[0] == 0x1p24f);
}

TEST(test_desc_errors)
{
    pm_config cfg;
    pm_error err;
    CHECK(pm_config_preset("edge", &cfg, &err) == PM_OK);
    pm_matmul_desc d;
    pm_program p;
    pm_program_init(&p);
    pm_matmul_desc_init(&d, 0, 4, 4, PM_FMT_BF16, PM_FMT_F32);
    CHECK(pm_kernel_matmul(&cfg, &d, &p, &err) == PM_ERR_INVALID);
    CHECK_MSG(strstr(err.message, "M=0") != NULL, "%s", err.message);
    pm_matmul_desc_init(&d, 4, 4, 48, PM_FMT_Q4_0, PM_FMT_F32);
    CHECK(pm_kernel_matmul(&cfg, &d, &p, &err) == PM_ERR_INVALID);
    CHECK_MSG(strstr(err.message, "K=48") != NULL && strstr(err.message, "q4_0"), "%s", err.message);
    pm_matmul_desc_init(&d, 4, 4, 32, PM_FMT_BF16, PM_FMT_NVFP4);
    CHECK(pm_kernel_matmul(&cfg, &d, &p, &err) == PM_ERR_UNSUPPORTED);
    pm_matmul_desc_init(&d, 4, 4, 32, PM_FMT_BF16, PM_FMT_F32);
    d.engines = 2;
    CHECK(pm_kernel_matmul(&cfg, &d, &p, &err) == PM_ERR_INVALID);
    CHECK_MSG(strstr(err.message, "chip.engines") != NULL, "%s", err.message);
    d.engines = 1;
    d.y_addr = cfg.dram_bytes - 8;
    CHECK(pm_kernel_matmul(&cfg, &d, &p, &err) == PM_ERR_INVALID);
    CHECK_MSG(strstr(err.message, "y at 0x") != NULL, "%s", err.message);
    d.y_addr = 0;
    /* A batch stride whose product with the batch would wrap 64 bits. */
    d.batch = 5;
    d.x_batch_stride = UINT64_MAX / 4;
    CHECK(pm_kernel_matmul(&cfg, &d, &p, &err) == PM_ERR_INVALID);
    CHECK_MSG(strstr(err.message, "x at 0x") != NULL, "%s", err.message);
    d.batch = 1, d.x_batch_stride = 0;
    /* A config whose SRAM cannot hold even the smallest tiles. */
    cfg.sram_bytes = 256;
    cfg.sram_bytes_per_cycle = 256;
    cfg.sram_banks = 1;
    pm_matmul_desc_init(&d, 64, 64, 4096, PM_FMT_BF16, PM_FMT_F32);
    CHECK(pm_kernel_matmul(&cfg, &d, &p, &err) == PM_ERR_CONFIG);
    CHECK_MSG(strstr(err.message, "sram.bytes") != NULL, "%s", err.message);
    CHECK(p.code_count == 0);
    pm_program_free(&p);
}

/* ---- end to end ---- */

typedef struct mm_case {
    uint32_t M, N, K, batch, engines;
    pm_format w_fmt, out_fmt;
    bool scale, bias, act;
    pm_lfu_func func;
    int dataflow; /* -1 config, else pm_dataflow */
} mm_case;

/* Runs one case on a fresh device and compares with the reference; returns
 * the simulated cycles (0 on failure). */
static uint64_t run_case(const pm_config *cfg, const mm_case *c, uint64_t seed, pm_counters *counters_out)
{
    char what[256];
    snprintf(what, sizeof what, "%s M=%u N=%u K=%u batch=%u engines=%u w=%s out=%s%s%s%s hazards=%s seed=%llu",
             cfg->name, c->M, c->N, c->K, c->batch, c->engines, pm_format_get(c->w_fmt)->name,
             pm_format_get(c->out_fmt)->name, c->scale ? " scale" : "", c->bias ? " bias" : "",
             c->act ? " act" : "", cfg->hazard_mode == PM_HAZARD_REPORT ? "report" : "interlock",
             (unsigned long long)seed);
    pm_matmul_desc d;
    pm_matmul_desc_init(&d, c->M, c->N, c->K, c->w_fmt, c->out_fmt);
    d.batch = c->batch;
    d.engines = c->engines;
    d.has_scale = c->scale, d.scale = 0.75f;
    d.has_bias = c->bias;
    d.has_act = c->act, d.act = c->func;
    if (c->dataflow >= 0) d.dataflow_from_config = false, d.dataflow = (pm_dataflow)c->dataflow;
    pm_error err;
    uint64_t xb, wb, yb, cycles = 0;
    if (pm_matmul_sizes(&d, &xb, &wb, &yb, &err) != PM_OK) {
        CHECK_MSG(0, "%s: %s", what, err.message);
        return 0;
    }
    size_t B = c->batch, MK = (size_t)c->M * c->K, NK = (size_t)c->N * c->K;
    uint16_t *x = malloc(B * MK * 2);
    uint8_t *w = malloc(B * wb), *y = malloc(B * yb), *ref = malloc(B * yb);
    float *wf = malloc(NK * sizeof *wf), *bias = malloc(c->N * sizeof *bias);
    pm_device *dev = NULL;
    pm_program prog;
    pm_program_init(&prog);
    if (!x || !w || !y || !ref || !wf || !bias) {
        CHECK_MSG(0, "%s: out of memory", what);
        goto done;
    }
    uint64_t s = seed;
    for (size_t i = 0; i < B * MK; i++) x[i] = pm_f32_to_bf16(rng_float(&s, -2, 2));
    for (size_t bi = 0; bi < B; bi++) {
        for (size_t i = 0; i < NK; i++) wf[i] = rng_float(&s, -1.5f, 1.5f);
        if (pm_format_encode(c->w_fmt, wf, NK, w + bi * wb, &err) != PM_OK) {
            CHECK_MSG(0, "%s: %s", what, err.message);
            goto done;
        }
    }
    for (uint32_t n = 0; n < c->N; n++) bias[n] = rng_float(&s, -3, 3);
    if (pm_device_open(cfg, &dev, &err) != PM_OK) {
        CHECK_MSG(0, "%s: %s", what, err.message);
        goto done;
    }
    /* Batch entries are laid out with gaps, so the strides are exercised. */
    uint64_t xs = (xb + 100) & ~(uint64_t)1, ws = wb + 36, ys = yb + 68;
    d.x_batch_stride = B > 1 ? xs : 0, d.w_batch_stride = B > 1 ? ws : 0, d.y_batch_stride = B > 1 ? ys : 0;
    if (pm_device_alloc(dev, xs * B, 64, &d.x_addr, &err) || pm_device_alloc(dev, ws * B + 4, 64, &d.w_addr, &err) ||
        pm_device_alloc(dev, ys * B, 64, &d.y_addr, &err) || pm_device_alloc(dev, c->N * 4, 64, &d.bias_addr, &err)) {
        CHECK_MSG(0, "%s: %s", what, err.message);
        goto done;
    }
    d.w_addr += 4; /* weights off a burst boundary */
    for (size_t bi = 0; bi < B; bi++) {
        pm_device_write(dev, d.x_addr + bi * xs, x + bi * MK, MK * 2, &err);
        pm_device_write(dev, d.w_addr + bi * ws, w + bi * wb, wb, &err);
    }
    pm_device_write(dev, d.bias_addr, bias, c->N * 4, &err);
    if (pm_kernel_matmul(cfg, &d, &prog, &err) != PM_OK || pm_device_load(dev, &prog, 0, &err) != PM_OK ||
        pm_device_run(dev, NULL, &err) != PM_OK) {
        CHECK_MSG(0, "%s: %s", what, err.message);
        goto done;
    }
    for (size_t bi = 0; bi < B; bi++) pm_device_read(dev, d.y_addr + bi * ys, y + bi * yb, yb, &err);
    if (pm_ref_matmul(&d, x, w, bias, ref, &err) != PM_OK) {
        CHECK_MSG(0, "%s: %s", what, err.message);
        goto done;
    }
    size_t first = B * yb;
    for (size_t i = 0; i < B * yb; i++)
        if (y[i] != ref[i]) {
            first = i;
            break;
        }
    CHECK_MSG(first == B * yb, "%s: output byte %zu differs (engine 0x%02x, reference 0x%02x)", what, first,
              first < B * yb ? y[first] : 0, first < B * yb ? ref[first] : 0);
    pm_counters cnt;
    pm_device_counters(dev, &cnt);
    CHECK_MSG(cnt.tensor_macs == (uint64_t)c->M * c->N * c->K * c->batch, "%s: tensor_macs %llu", what,
              (unsigned long long)cnt.tensor_macs);
    if (counters_out) *counters_out = cnt;
    cycles = cnt.cycles;
done:
    pm_program_free(&prog);
    pm_device_close(dev);
    free(x), free(w), free(y), free(ref), free(wf), free(bias);
    return cycles;
}

/* A small engine: R x C array, tiny SRAM and accumulator, so even small
 * shapes need many tiles, K chunks and ragged edges. */
static void tiny_config(pm_config *cfg, uint32_t R, uint32_t C, uint64_t sram, uint64_t accum, uint32_t engines)
{
    pm_error err;
    pm_config_preset("edge", cfg, &err);
    snprintf(cfg->name, sizeof cfg->name, "tiny%ux%u", R, C);
    cfg->tensor_rows = R, cfg->tensor_cols = C;
    if (cfg->tensor_weight_load_rows > R) cfg->tensor_weight_load_rows = R;
    cfg->sram_bytes = sram;
    cfg->sram_bytes_per_cycle = 64;
    cfg->sram_banks = 4;
    cfg->accum_bytes = accum;
    cfg->engines = engines;
    cfg->vector_lanes = cfg->lfu_count = 4;
    CHECK_MSG(pm_config_validate(cfg, &err) == PM_OK, "%s", err.message);
}

static const pm_format weight_formats[] = {PM_FMT_BF16, PM_FMT_F32,  PM_FMT_E4M3, PM_FMT_INT8, PM_FMT_E2M1,
                                           PM_FMT_INT4, PM_FMT_MXFP4, PM_FMT_NVFP4, PM_FMT_IF4, PM_FMT_Q4_0,
                                           PM_FMT_Q4_1, PM_FMT_Q8_0, PM_FMT_MXINT8, PM_FMT_INT4B};

static uint32_t k_multiple(pm_format f)
{
    const pm_format_info *fi = pm_format_get(f);
    return fi->block_elems > 1 ? fi->block_elems : fi->elem_bits < 8 ? 2 : 1;
}

TEST(test_matmul_edge_shapes)
{
    pm_config cfg;
    pm_error err;
    CHECK(pm_config_preset("edge", &cfg, &err) == PM_OK);
    mm_case cases[] = {
        {64, 64, 64, 1, 1, PM_FMT_BF16, PM_FMT_F32, false, false, false, PM_LFU_SILU, -1},
        {37, 45, 70, 1, 1, PM_FMT_BF16, PM_FMT_F32, false, false, false, PM_LFU_SILU, -1},
        {130, 33, 96, 1, 1, PM_FMT_Q8_0, PM_FMT_BF16, false, false, false, PM_LFU_SILU, -1},
        {1, 300, 128, 1, 1, PM_FMT_IF4, PM_FMT_F32, false, false, false, PM_LFU_SILU, -1},
        {1, 77, 64, 1, 1, PM_FMT_Q4_1, PM_FMT_F16, false, false, false, PM_LFU_SILU, -1},
        {40, 70, 64, 1, 1, PM_FMT_NVFP4, PM_FMT_F32, true, true, true, PM_LFU_GELU, -1},
        {33, 40, 50, 1, 1, PM_FMT_BF16, PM_FMT_F32, false, false, false, PM_LFU_SILU, PM_DATAFLOW_WEIGHT_STATIONARY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cfg, &cases[i], 100 + i, NULL);
}

TEST(test_matmul_tiny_random)
{
    uint64_t s = 0x5eed;
    for (int it = 0; it < 40; it++) {
        pm_config cfg;
        uint32_t R = rng_range(&s, 0, 1) ? 4 : 8, C = rng_range(&s, 0, 1) ? 4 : 8;
        uint64_t sram = rng_range(&s, 0, 1) ? 8192 : 32768;
        tiny_config(&cfg, R, C, sram, 4ull * R * C * rng_range(&s, 2, 8), 1);
        cfg.hazard_mode = it % 2 ? PM_HAZARD_REPORT : PM_HAZARD_INTERLOCK;
        mm_case c = {0};
        c.w_fmt = weight_formats[rng_range(&s, 0, sizeof weight_formats / sizeof weight_formats[0] - 1)];
        uint32_t km = k_multiple(c.w_fmt);
        c.M = rng_range(&s, 0, 3) == 0 ? 1 : rng_range(&s, 1, 40);
        c.N = rng_range(&s, 1, 40);
        c.K = km * rng_range(&s, 1, km >= 16 ? 4 : 50);
        c.batch = rng_range(&s, 0, 3) == 0 ? rng_range(&s, 2, 3) : 1;
        c.engines = 1;
        static const pm_format outs[] = {PM_FMT_F32, PM_FMT_BF16, PM_FMT_F16, PM_FMT_E4M3};
        c.out_fmt = outs[rng_range(&s, 0, 3)];
        c.scale = rng_range(&s, 0, 3) == 0;
        c.bias = rng_range(&s, 0, 3) == 0;
        c.act = rng_range(&s, 0, 3) == 0;
        c.func = rng_range(&s, 0, 1) ? PM_LFU_SILU : PM_LFU_SIGMOID;
        c.dataflow = (int)rng_range(&s, 0, 2) - 1;
        run_case(&cfg, &c, 1000 + it, NULL);
    }
}

TEST(test_matmul_every_weight_format)
{
    pm_config cfg;
    tiny_config(&cfg, 4, 8, 16384, 1024, 1);
    for (size_t i = 0; i < sizeof weight_formats / sizeof weight_formats[0]; i++) {
        mm_case c = {13, 21, 64, 1, 1, weight_formats[i], PM_FMT_F32, false, false, false, PM_LFU_SILU, -1};
        run_case(&cfg, &c, 7 + i, NULL);
        c.M = 1;
        run_case(&cfg, &c, 70 + i, NULL);
    }
}

TEST(test_matmul_epilogue)
{
    pm_config cfg;
    tiny_config(&cfg, 8, 8, 32768, 2048, 1);
    static const pm_lfu_func funcs[] = {PM_LFU_SILU, PM_LFU_GELU, PM_LFU_SIGMOID, PM_LFU_TANH};
    for (int i = 0; i < 4; i++)
        for (int hz = 0; hz < 2; hz++) {
            cfg.hazard_mode = hz ? PM_HAZARD_REPORT : PM_HAZARD_INTERLOCK;
            mm_case c = {19, 26, 48, 1, 1, PM_FMT_BF16, PM_FMT_BF16, i % 2 == 0, i < 3, true, funcs[i], -1};
            run_case(&cfg, &c, 300 + i, NULL);
        }
    /* Outputs in 8- and 4-bit element formats and a block format (N whole blocks per row). */
    static const pm_format outs[] = {PM_FMT_INT8, PM_FMT_E5M2, PM_FMT_E2M1, PM_FMT_INT4, PM_FMT_MXFP8, PM_FMT_Q8_0};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        mm_case c = {11, 64, 40, 1, 1, PM_FMT_BF16, outs[i], true, true, false, PM_LFU_SILU, -1};
        run_case(&cfg, &c, 320 + i, NULL);
        c.M = 1, c.N = 96;
        run_case(&cfg, &c, 330 + i, NULL);
    }
}

TEST(test_matmul_engines)
{
    for (uint32_t engines = 1; engines <= 4; engines *= 2)
        for (int hz = 0; hz < 2; hz++) {
            pm_config cfg;
            tiny_config(&cfg, 4, 4, 16384, 512, 4);
            cfg.hazard_mode = hz ? PM_HAZARD_REPORT : PM_HAZARD_INTERLOCK;
            mm_case split_n = {21, 50, 40, 1, engines, PM_FMT_Q8_0, PM_FMT_F32, false, true, false, PM_LFU_SILU, -1};
            split_n.K = 64;
            run_case(&cfg, &split_n, 500 + engines, NULL);
            mm_case split_batch = {9, 12, 16, 5, engines, PM_FMT_BF16, PM_FMT_BF16, true, false, false, PM_LFU_SILU,
                                   -1};
            run_case(&cfg, &split_batch, 600 + engines, NULL);
            mm_case gemv = {1, 90, 64, 1, engines, PM_FMT_Q4_1, PM_FMT_F32, false, false, false, PM_LFU_SILU, -1};
            run_case(&cfg, &gemv, 700 + engines, NULL);
            /* Fewer batch entries than engines: each entry is split. */
            mm_case few = {13, 36, 32, 2, engines, PM_FMT_Q4_0, PM_FMT_BF16, false, true, false, PM_LFU_SILU, -1};
            run_case(&cfg, &few, 750 + engines, NULL);
        }
}

TEST(test_matmul_engine_splits)
{
    /* Tall-and-narrow work is split by M, short-and-wide by N; both paths run
     * against the reference (the plan says which one was taken). */
    for (int hz = 0; hz < 2; hz++) {
        pm_config cfg;
        tiny_config(&cfg, 4, 4, 16384, 512, 4);
        cfg.hazard_mode = hz ? PM_HAZARD_REPORT : PM_HAZARD_INTERLOCK;
        pm_matmul_desc d;
        pm_matmul_plan plan;
        pm_error err;
        pm_matmul_desc_init(&d, 90, 8, 48, PM_FMT_BF16, PM_FMT_F32);
        d.engines = 4;
        CHECK(pm_matmul_plan_get(&cfg, &d, &plan, &err) == PM_OK && plan.split_m && !plan.split_batch);
        mm_case tall = {90, 8, 48, 1, 4, PM_FMT_BF16, PM_FMT_F32, false, true, false, PM_LFU_SILU, -1};
        run_case(&cfg, &tall, 800, NULL);
        pm_matmul_desc_init(&d, 4, 96, 48, PM_FMT_BF16, PM_FMT_F32);
        d.engines = 4;
        CHECK(pm_matmul_plan_get(&cfg, &d, &plan, &err) == PM_OK && !plan.split_m && !plan.split_batch);
        mm_case wide = {4, 96, 48, 1, 4, PM_FMT_BF16, PM_FMT_F32, true, false, false, PM_LFU_SILU, -1};
        run_case(&cfg, &wide, 801, NULL);
    }
}

/* Number of loop instructions in the program built for c. */
static int program_loops(const pm_config *cfg, const mm_case *c)
{
    pm_matmul_desc d;
    pm_matmul_desc_init(&d, c->M, c->N, c->K, c->w_fmt, c->out_fmt);
    d.engines = c->engines;
    d.batch = c->batch;
    pm_program p;
    pm_program_init(&p);
    pm_error err;
    int found = 0;
    if (pm_kernel_matmul(cfg, &d, &p, &err) == PM_OK)
        for (size_t i = 0; i < p.code_count; i++) {
            pm_insn in;
            if (pm_decode(p.code[i], &in, &err) == PM_OK && in.opcode == PM_OP_LOOP) found++;
        }
    pm_program_free(&p);
    return found;
}

TEST(test_matmul_loop_over_m_blocks)
{
    /* Many M blocks: the middle pairs run as one loop body with X/Y
     * addresses relative to base registers. */
    for (int hz = 0; hz < 2; hz++) {
        pm_config cfg;
        tiny_config(&cfg, 4, 4, 8192, 256, 2);
        cfg.hazard_mode = hz ? PM_HAZARD_REPORT : PM_HAZARD_INTERLOCK;
        mm_case c = {157, 20, 40, 1, 1, PM_FMT_BF16, PM_FMT_F32, false, true, false, PM_LFU_SILU, -1};
        CHECK(program_loops(&cfg, &c) >= 1);
        run_case(&cfg, &c, 850 + hz, NULL);
        mm_case q = {203, 12, 64, 1, 2, PM_FMT_Q8_0, PM_FMT_BF16, true, false, false, PM_LFU_SILU, -1};
        CHECK(program_loops(&cfg, &q) >= 2); /* one per engine */
        run_case(&cfg, &q, 860 + hz, NULL);
        /* Many N tiles: the middle tiles of each M block loop too, nested in
         * the loop over M blocks; bias addresses move with the tiles. */
        mm_case wide = {157, 150, 40, 1, 1, PM_FMT_BF16, PM_FMT_BF16, true, true, false, PM_LFU_SILU, -1};
        CHECK(program_loops(&cfg, &wide) >= 4);
        run_case(&cfg, &wide, 865 + hz, NULL);
        mm_case gemv = {1, 1000, 64, 1, 1, PM_FMT_Q4_1, PM_FMT_F32, false, true, false, PM_LFU_SILU, -1};
        CHECK(program_loops(&cfg, &gemv) >= 1);
        run_case(&cfg, &gemv, 868 + hz, NULL);
        mm_case gemv_if4 = {1, 900, 96, 1, 2, PM_FMT_IF4, PM_FMT_BF16, true, false, false, PM_LFU_SILU, -1};
        CHECK(program_loops(&cfg, &gemv_if4) >= 2);
        run_case(&cfg, &gemv_if4, 869 + hz, NULL);
        /* Each batch entry loops on its own. */
        mm_case batched = {90, 130, 32, 3, 1, PM_FMT_Q4_0, PM_FMT_F32, false, true, false, PM_LFU_SILU, -1};
        CHECK(program_loops(&cfg, &batched) >= 3);
        run_case(&cfg, &batched, 875 + hz, NULL);
        /* Many batch entries: pairs of entries loop, around the loops inside
         * each entry (three levels: entries, M blocks, N tiles). */
        mm_case many = {5, 12, 32, 11, 1, PM_FMT_BF16, PM_FMT_BF16, true, false, false, PM_LFU_SILU, -1};
        CHECK(program_loops(&cfg, &many) >= 1);
        run_case(&cfg, &many, 877 + hz, NULL);
        mm_case deep = {90, 130, 32, 16, 1, PM_FMT_Q8_0, PM_FMT_F32, false, true, false, PM_LFU_SILU, -1};
        CHECK(program_loops(&cfg, &deep) >= 3);
        run_case(&cfg, &deep, 879 + hz, NULL);
    }
    /* A shape too large to unroll into edge's instruction memory. */
    pm_config edge;
    pm_error err;
    CHECK(pm_config_preset("edge", &edge, &err) == PM_OK);
    mm_case big = {4096, 256, 256, 1, 1, PM_FMT_BF16, PM_FMT_BF16, false, false, false, PM_LFU_SILU, -1};
    CHECK(program_loops(&edge, &big) >= 1);
    run_case(&edge, &big, 870, NULL);
}

TEST(test_matmul_hazard_modes_agree)
{
    /* The same shape under interlock and report: identical bits, and the
     * report program (fences) is never faster than the interlocked one. */
    pm_config cfg;
    tiny_config(&cfg, 8, 8, 16384, 1024, 1);
    mm_case c = {30, 30, 96, 1, 1, PM_FMT_BF16, PM_FMT_F32, false, false, false, PM_LFU_SILU, -1};
    uint64_t inter = run_case(&cfg, &c, 42, NULL);
    cfg.hazard_mode = PM_HAZARD_REPORT;
    uint64_t report = run_case(&cfg, &c, 42, NULL);
    CHECK_MSG(inter > 0 && report >= inter, "interlock %llu cycles, report %llu", (unsigned long long)inter,
              (unsigned long long)report);
}

TEST(test_matmul_dataflow_auto)
{
    /* 33 rows fill two output-stationary folds of 32, the second with one
     * row; weight-stationary streams the 33 rows once per weight tile. With
     * dataflow_auto the planner picks ws here, and the run is faster than
     * the config's os, with the same bits. */
    pm_config cfg;
    pm_error err;
    CHECK(pm_config_preset("edge", &cfg, &err) == PM_OK);
    pm_matmul_desc d;
    pm_matmul_desc_init(&d, 33, 512, 512, PM_FMT_BF16, PM_FMT_F32);
    d.dataflow_auto = true;
    pm_matmul_plan plan;
    CHECK(pm_matmul_plan_get(&cfg, &d, &plan, &err) == PM_OK);
    CHECK(plan.dataflow == PM_DATAFLOW_WEIGHT_STATIONARY);
    mm_case os = {33, 512, 512, 1, 1, PM_FMT_BF16, PM_FMT_F32, false, false, false, PM_LFU_SILU, -1};
    mm_case ws = os;
    ws.dataflow = PM_DATAFLOW_WEIGHT_STATIONARY;
    uint64_t c_os = run_case(&cfg, &os, 41, NULL), c_ws = run_case(&cfg, &ws, 41, NULL);
    CHECK_MSG(c_ws > 0 && c_ws < c_os, "os %llu cycles, ws %llu", (unsigned long long)c_os, (unsigned long long)c_ws);
}

TEST(test_matmul_fences_are_needed)
{
    /* The interlocked program has no fences; run on a chip that reports
     * hazards instead of interlocking, it must be caught. So the fences of
     * the report program are what makes it correct there. */
    pm_config inter, report;
    tiny_config(&inter, 4, 4, 16384, 512, 1);
    report = inter;
    report.hazard_mode = PM_HAZARD_REPORT;
    pm_matmul_desc d;
    pm_matmul_desc_init(&d, 24, 24, 64, PM_FMT_BF16, PM_FMT_F32);
    d.w_addr = 1 << 16, d.y_addr = 1 << 17;
    pm_error err;
    pm_program p;
    pm_program_init(&p);
    pm_device *dev;
    CHECK(pm_kernel_matmul(&inter, &d, &p, &err) == PM_OK);
    CHECK(pm_device_open(&report, &dev, &err) == PM_OK);
    CHECK(pm_device_load(dev, &p, 0, &err) == PM_OK);
    pm_status st = pm_device_run(dev, NULL, &err);
    CHECK_MSG(st == PM_ERR_HAZARD, "%s", st ? err.message : "ran without a hazard");
    pm_device_close(dev);
    pm_program_free(&p);
}

TEST(test_matmul_fpga)
{
    pm_config cfg;
    pm_error err;
    CHECK(pm_config_preset("fpga", &cfg, &err) == PM_OK);
    mm_case a = {50, 70, 96, 1, 1, PM_FMT_Q4_0, PM_FMT_F32, false, true, false, PM_LFU_SILU, -1};
    run_case(&cfg, &a, 900, NULL);
    mm_case b = {1, 256, 256, 1, 1, PM_FMT_IF4, PM_FMT_BF16, false, false, false, PM_LFU_SILU, -1};
    run_case(&cfg, &b, 901, NULL);
}

int main(void)
{
    RUN(test_builder_labels);
    RUN(test_builder_errors_stick);
    RUN(test_ref_hand_computed);
    RUN(test_desc_errors);
    RUN(test_matmul_edge_shapes);
    RUN(test_matmul_tiny_random);
    RUN(test_matmul_every_weight_format);
    RUN(test_matmul_epilogue);
    RUN(test_matmul_engines);
    RUN(test_matmul_engine_splits);
    RUN(test_matmul_loop_over_m_blocks);
    RUN(test_matmul_hazard_modes_agree);
    RUN(test_matmul_dataflow_auto);
    RUN(test_matmul_fences_are_needed);
    RUN(test_matmul_fpga);
    return TEST_SUMMARY();
}
