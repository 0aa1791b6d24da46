/* The LLM linear emitter (pm_emit_linear, its prefetch, pm_ref_linear) and
 * the LLM program basics (pm_llm_kernels_check, the LFU prologue): random
 * shapes in every weight format on a simulated edge device, bit-exact
 * against pm_ref_linear and against an independent decode-round-fmaf loop
 * in this file; chains of linears on one scratch; the prefetch; the errors;
 * and the SmolLM2-135M decode chain's DRAM roofline fraction. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "polymorph/llm_kernels.h"
#include "polymorph/runtime.h"
#include "harness_sim.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static float rng_float(uint64_t *s, float lo, float hi)
{
    return lo + (hi - lo) * (float)(pm_test_xorshift(s) * (1.0 / 4294967296.0));
}

static uint32_t rng_range(uint64_t *s, uint32_t lo, uint32_t hi)
{
    return lo + pm_test_xorshift(s) % (hi - lo + 1);
}

/* Smallest K step of a weight format (a block, or two 4-bit codes). */
static uint32_t k_granule(pm_format f)
{
    const pm_format_info *fi = pm_format_get(f);
    if (fi->block_elems > 1) return fi->block_elems;
    return fi->elem_bits < 8 ? 2 : 1;
}

/* The oracle of this file: weights decoded (pm_format_decode) and rounded to
 * bf16, one fmaf chain from +0 per output in k order (docs/tensor.md), then
 * rounded to y_fmt. Written from the spec, not from the kernels' code. */
static int oracle_linear(const pm_linear_desc *d, const uint16_t *x, const void *w, void *y)
{
    size_t NK = (size_t)d->N * d->K;
    float *wf = malloc(NK * sizeof *wf);
    pm_error err;
    if (!wf || pm_format_decode(d->w_fmt, w, NK, wf, &err)) {
        free(wf);
        return -1;
    }
    for (size_t i = 0; i < NK; i++) wf[i] = pm_bf16_to_f32(pm_f32_to_bf16(wf[i]));
    for (size_t m = 0; m < d->M; m++)
        for (size_t n = 0; n < d->N; n++) {
            float c = 0.0f;
            for (size_t k = 0; k < d->K; k++) c = fmaf(pm_bf16_to_f32(x[m * d->K + k]), wf[n * d->K + k], c);
            if (d->y_fmt == PM_FMT_F32) ((float *)y)[m * d->N + n] = c;
            else ((uint16_t *)y)[m * d->N + n] = pm_f32_to_bf16(c);
        }
    free(wf);
    return 0;
}

static size_t y_bytes_of(const pm_linear_desc *d)
{
    return (size_t)d->M * d->N * (d->y_fmt == PM_FMT_F32 ? 4 : 2);
}

static void *random_weights(const pm_linear_desc *d, uint64_t *s, size_t *bytes)
{
    size_t NK = (size_t)d->N * d->K;
    float *wf = malloc(NK * sizeof *wf);
    pm_error err;
    if (!wf || !pm_format_bytes(d->w_fmt, NK, bytes)) {
        free(wf);
        return NULL;
    }
    void *w = malloc(*bytes);
    for (size_t i = 0; w && i < NK; i++) wf[i] = rng_float(s, -1.5f, 1.5f);
    if (w && pm_format_encode(d->w_fmt, wf, NK, w, &err)) {
        free(w);
        w = NULL;
    }
    free(wf);
    return w;
}

/* Finish b with halt, load and run it on dev; returns the run's cycles
 * (0 with a failed CHECK). */
static uint64_t run_builder(pm_device *dev, pm_builder *b, const char *what)
{
    pm_error err;
    pm_program prog;
    pm_program_init(&prog);
    pm_builder_emit(b, PM_OP_HALT, 0, 0, 0, 0, 0, 0);
    pm_counters before, after;
    pm_device_counters(dev, &before);
    uint64_t cycles = 0;
    if (pm_builder_finish(b, &prog, &err) || pm_device_load(dev, &prog, 0, &err) || pm_device_run(dev, NULL, &err))
        CHECK_MSG(0, "%s: %s", what, err.message);
    else {
        pm_device_counters(dev, &after);
        cycles = after.cycles - before.cycles;
    }
    pm_program_free(&prog);
    return cycles;
}

/* ---- random shapes, every weight format ---- */

/* One linear on a fresh edge device: device Y must equal pm_ref_linear and
 * the oracle byte for byte. */
static void check_one(const pm_config *cfg, pm_linear_desc *d, uint64_t seed)
{
    char what[256];
    snprintf(what, sizeof what, "linear M=%u N=%u K=%u w=%s y=%s scratch=%llu seed=%llu", d->M, d->N, d->K,
             pm_format_get(d->w_fmt)->name, pm_format_get(d->y_fmt)->name, (unsigned long long)d->scratch_bytes,
             (unsigned long long)seed);
    uint64_t s = seed;
    size_t MK = (size_t)d->M * d->K, yb = y_bytes_of(d), wb = 0;
    uint16_t *x = malloc(MK * 2);
    void *w = random_weights(d, &s, &wb);
    uint8_t *y = malloc(yb), *ref = malloc(yb), *orc = malloc(yb);
    pm_device *dev = NULL;
    pm_builder *b = NULL;
    pm_error err;
    if (!x || !w || !y || !ref || !orc) {
        CHECK_MSG(0, "%s: set-up failed", what);
        goto done;
    }
    for (size_t i = 0; i < MK; i++) x[i] = pm_f32_to_bf16(rng_float(&s, -2, 2));
    if (pm_device_open(cfg, &dev, &err) || pm_device_alloc(dev, wb + 64, 64, &d->w_dram, &err) ||
        pm_builder_create(&b, &err)) {
        CHECK_MSG(0, "%s: %s", what, err.message);
        goto done;
    }
    d->w_dram += 4 * (seed % 3); /* sometimes off a burst boundary */
    pm_device_write(dev, d->w_dram, w, wb, &err);
    pm_device_sram_write(dev, 0, d->x_sram, x, MK * 2, &err);
    if (pm_emit_linear(b, cfg, d, &err)) {
        CHECK_MSG(0, "%s: %s", what, err.message);
        goto done;
    }
    if (!run_builder(dev, b, what)) goto done;
    pm_device_sram_read(dev, 0, d->y_sram, y, yb, &err);
    CHECK_MSG(pm_ref_linear(d, x, w, ref, &err) == PM_OK, "%s: %s", what, err.message);
    CHECK_MSG(oracle_linear(d, x, w, orc) == 0, "%s: oracle failed", what);
    size_t bad = yb;
    for (size_t i = 0; i < yb && bad == yb; i++)
        if (y[i] != ref[i] || ref[i] != orc[i]) bad = i;
    CHECK_MSG(bad == yb, "%s: Y byte %zu: device 0x%02x, pm_ref_linear 0x%02x, oracle 0x%02x", what, bad,
              bad < yb ? y[bad] : 0, bad < yb ? ref[bad] : 0, bad < yb ? orc[bad] : 0);
    pm_counters cnt;
    pm_device_counters(dev, &cnt);
    CHECK_MSG(cnt.tensor_macs == (uint64_t)d->M * d->N * d->K, "%s: tensor_macs %llu", what,
              (unsigned long long)cnt.tensor_macs);
    /* Every weight byte is read from DRAM exactly once (the NVFP4/IF4 header once per slot). */
    uint64_t hdr = pm_format_get(d->w_fmt)->header_bytes;
    CHECK_MSG(cnt.dram_read_bytes == wb + hdr, "%s: %llu DRAM bytes read, weights are %zu", what,
              (unsigned long long)cnt.dram_read_bytes, wb);
done:
    pm_builder_destroy(b);
    pm_device_close(dev);
    free(x), free(w), free(y), free(ref), free(orc);
}

/* Places X, Y and the scratch at random, disjoint, 4-byte aligned SRAM
 * offsets (the scratch sometimes just large enough, so tiles are few rows
 * and many). */
static void place(const pm_config *cfg, pm_linear_desc *d, uint64_t *s)
{
    uint64_t xb = (uint64_t)d->M * d->K * 2, yb = y_bytes_of(d);
    size_t row = 0;
    pm_format_bytes(d->w_fmt, d->K, &row);
    uint64_t min_rows = d->N < 32 ? d->N : 32;
    uint64_t min_scr = 0;
    pm_error err;
    if (pm_linear_scratch_bytes(cfg, d, &min_scr, NULL, &err)) min_scr = 2 * (row * min_rows + 64);
    uint64_t scr = rng_range(s, 0, 1) ? min_scr : min_scr + rng_range(s, 0, 200000);
    uint64_t base = 4 * rng_range(s, 0, 64);
    d->x_sram = base;
    d->y_sram = (d->x_sram + xb + 4 * rng_range(s, 0, 64) + 3) / 4 * 4;
    d->scratch_sram = (d->y_sram + yb + 4 * rng_range(s, 0, 64) + 3) / 4 * 4;
    if (d->scratch_sram + scr > cfg->sram_bytes) scr = cfg->sram_bytes - d->scratch_sram;
    d->scratch_bytes = scr;
}

TEST(test_linear_random_formats)
{
    pm_config cfg = edge();
    static const uint32_t Ms[] = {1, 2, 3, 7, 16, 33, 64};
    uint64_t s = 0x11ea5eedULL;
    for (int f = 0; f < PM_FMT_COUNT; f++) {
        uint32_t g = k_granule((pm_format)f);
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
            pm_linear_desc d;
            memset(&d, 0, sizeof d);
            d.M = Ms[mi];
            d.N = rng_range(&s, 1, mi % 2 ? 300 : 90);
            d.K = g * rng_range(&s, 1, (g >= 256 ? 512 : 300) / g + 1);
            d.w_fmt = (pm_format)f;
            d.y_fmt = rng_range(&s, 0, 1) ? PM_FMT_F32 : PM_FMT_BF16;
            place(&cfg, &d, &s);
            check_one(&cfg, &d, s);
        }
    }
}

/* Small engines (R x C arrays from 2 x 16 to 8 x 8, preload rates, an
 * accumulator of a few tiles, so M splits into blocks per tile, and a small
 * SRAM) and the datacenter preset: the planner's figures all come from the
 * config, and the bits must not change. */
TEST(test_linear_other_engines)
{
    static const uint32_t shapes[][2] = {{4, 8}, {8, 4}, {8, 8}, {2, 16}};
    static const pm_format fmts[] = {PM_FMT_BF16, PM_FMT_Q4_1, PM_FMT_Q8_0, PM_FMT_INT4, PM_FMT_NVFP4, PM_FMT_E4M3};
    uint64_t s = 0x0e11a5ULL;
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++)
        for (int i = 0; i < 6; i++) {
            pm_config cfg = edge();
            pm_error err;
            uint32_t R = shapes[c][0], C = shapes[c][1];
            cfg.tensor_rows = R, cfg.tensor_cols = C;
            cfg.tensor_weight_load_rows = rng_range(&s, 1, R);
            cfg.sram_bytes = 256 * 1024;
            cfg.accum_bytes = 4ull * R * C * rng_range(&s, 2, 12);
            CHECK_MSG(pm_config_validate(&cfg, &err) == PM_OK, "%s", err.message);
            pm_linear_desc d;
            memset(&d, 0, sizeof d);
            d.M = rng_range(&s, 1, 40);
            d.N = rng_range(&s, 1, 150);
            d.w_fmt = fmts[(c + (size_t)i) % (sizeof fmts / sizeof fmts[0])];
            d.K = k_granule(d.w_fmt) * rng_range(&s, 1, 160 / k_granule(d.w_fmt) + 1);
            d.y_fmt = i % 2 ? PM_FMT_BF16 : PM_FMT_F32;
            place(&cfg, &d, &s);
            check_one(&cfg, &d, s);
        }
    pm_config dc;
    pm_error err;
    CHECK(pm_config_preset("datacenter", &dc, &err) == PM_OK);
    dc.engines = 1;
    static const uint32_t dcases[][3] = {{1, 1000, 512}, {64, 300, 256}, {7, 2048, 128}};
    for (size_t i = 0; i < sizeof dcases / sizeof dcases[0]; i++) {
        pm_linear_desc d = {.M = dcases[i][0], .N = dcases[i][1], .K = dcases[i][2], .w_fmt = PM_FMT_Q4_1,
                            .y_fmt = PM_FMT_F32, .x_sram = 0, .y_sram = 0x100000, .scratch_sram = 0x400000,
                            .scratch_bytes = 0x400000};
        check_one(&dc, &d, s + i);
    }
}

/* The shapes of SmolLM2's linears (scaled down in N for speed) at the
 * prefill row counts, Q4_1 and Q8_0, plus M past the accumulator's M block
 * (several tensor ops per tile). */
TEST(test_linear_model_shapes)
{
    pm_config cfg = edge();
    struct { uint32_t M, N, K; pm_format f; } cases[] = {
        {1, 960, 576, PM_FMT_Q4_1},  {1, 1536, 576, PM_FMT_Q4_1}, {1, 576, 1536, PM_FMT_Q4_1},
        {16, 960, 576, PM_FMT_Q4_1}, {64, 576, 576, PM_FMT_Q4_1}, {33, 320, 1536, PM_FMT_Q4_1},
        {1, 4096, 576, PM_FMT_Q8_0}, {64, 512, 576, PM_FMT_Q8_0}, {1100, 40, 64, PM_FMT_BF16},
    };
    uint64_t s = 0xabcdef12ULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pm_linear_desc d;
        memset(&d, 0, sizeof d);
        d.M = cases[i].M, d.N = cases[i].N, d.K = cases[i].K, d.w_fmt = cases[i].f;
        d.y_fmt = i % 2 ? PM_FMT_BF16 : PM_FMT_F32;
        d.x_sram = 0;
        d.y_sram = pm_test_xorshift(&s) % 2 ? 0x60000 : 0x60100;
        d.scratch_sram = 0x100000;
        d.scratch_bytes = i % 3 == 0 || d.M > 64 ? 0x100000 : 0x20000;
        check_one(&cfg, &d, s);
    }
}

/* ---- chains on one scratch ---- */

/* linear -> vcvt f32 to bf16 -> linear -> linear (bf16 Y straight into the
 * next X), all four on one scratch: the interlock orders every buffer
 * reuse; the result equals the host chain of references. */
TEST(test_linear_chain)
{
    pm_config cfg = edge();
    uint64_t s = 0x5eed0c4aULL;
    static const uint32_t Ms[] = {1, 3, 16};
    for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
        uint32_t M = Ms[mi], K0 = 192, N1 = 320, N2 = 256, N3 = 96;
        pm_format wf[3] = {PM_FMT_Q4_1, PM_FMT_Q8_0, (pm_format)(mi % 2 ? PM_FMT_IF4 : PM_FMT_BF16)};
        pm_linear_desc d[3];
        memset(d, 0, sizeof d);
        uint64_t x0 = 0, y1 = 0x10000, x2 = 0x30000, y2 = 0x40000, y3 = 0x50000, scr = 0x80000;
        d[0] = (pm_linear_desc){.M = M, .N = N1, .K = K0, .w_fmt = wf[0], .x_sram = x0, .y_sram = y1,
                                .y_fmt = PM_FMT_F32, .scratch_sram = scr, .scratch_bytes = 0x10000};
        d[1] = (pm_linear_desc){.M = M, .N = N2, .K = N1, .w_fmt = wf[1], .x_sram = x2, .y_sram = y2,
                                .y_fmt = PM_FMT_BF16, .scratch_sram = scr, .scratch_bytes = 0x10000};
        d[2] = (pm_linear_desc){.M = M, .N = N3, .K = N2, .w_fmt = wf[2], .x_sram = y2, .y_sram = y3,
                                .y_fmt = PM_FMT_F32, .scratch_sram = scr, .scratch_bytes = 0x10000};
        void *w[3] = {0};
        size_t wb[3];
        pm_device *dev = NULL;
        pm_builder *b = NULL;
        pm_error err;
        uint16_t *x = malloc((size_t)M * K0 * 2), *x2h = malloc((size_t)M * N1 * 2), *y2h = malloc((size_t)M * N2 * 2);
        float *y1h = malloc((size_t)M * N1 * 4), *y3h = malloc((size_t)M * N3 * 4), *y3d = malloc((size_t)M * N3 * 4);
        CHECK(pm_device_open(&cfg, &dev, &err) == PM_OK && pm_builder_create(&b, &err) == PM_OK);
        for (int i = 0; i < 3; i++) {
            w[i] = random_weights(&d[i], &s, &wb[i]);
            CHECK(w[i] && pm_device_alloc(dev, wb[i], 64, &d[i].w_dram, &err) == PM_OK);
            pm_device_write(dev, d[i].w_dram, w[i], wb[i], &err);
        }
        for (size_t i = 0; i < (size_t)M * K0; i++) x[i] = pm_f32_to_bf16(rng_float(&s, -1, 1));
        pm_device_sram_write(dev, 0, x0, x, (size_t)M * K0 * 2, &err);
        CHECK(pm_emit_linear(b, &cfg, &d[0], &err) == PM_OK);
        pm_builder_emit(b, PM_OP_LI, 7, (int64_t)x2, 0, 0, 0, 0);
        pm_builder_emit(b, PM_OP_LI, 8, (int64_t)y1, 0, 0, 0, 0);
        pm_builder_emit(b, PM_OP_LI, 9, (int64_t)M * N1, 0, 0, 0, 0);
        pm_builder_emit(b, PM_OP_VCVT, PM_FMT_BF16, PM_FMT_F32, 7, 8, 9, 0);
        CHECK(pm_emit_linear(b, &cfg, &d[1], &err) == PM_OK);
        CHECK(pm_emit_linear(b, &cfg, &d[2], &err) == PM_OK);
        char what[96];
        snprintf(what, sizeof what, "chain M=%u", M);
        CHECK(run_builder(dev, b, what) > 0);
        pm_device_sram_read(dev, 0, y3, y3d, (size_t)M * N3 * 4, &err);
        CHECK(pm_ref_linear(&d[0], x, w[0], y1h, &err) == PM_OK);
        pm_f32_to_bf16_array(y1h, (size_t)M * N1, x2h);
        CHECK(pm_ref_linear(&d[1], x2h, w[1], y2h, &err) == PM_OK);
        CHECK(pm_ref_linear(&d[2], y2h, w[2], y3h, &err) == PM_OK);
        CHECK_MSG(memcmp(y3d, y3h, (size_t)M * N3 * 4) == 0, "%s: the chain's Y differs from the host chain", what);
        for (int i = 0; i < 3; i++) free(w[i]);
        free(x), free(x2h), free(y2h), free(y1h), free(y3h), free(y3d);
        pm_builder_destroy(b);
        pm_device_close(dev);
    }
}

/* ---- prefetch ---- */

/* Vector work that touches none of the linear's memory: `reps` vadds over
 * n f32 at `at` (about reps * n / lanes cycles). */
static void emit_vector_work(pm_builder *b, uint64_t at, uint32_t n, int reps)
{
    pm_builder_emit(b, PM_OP_LI, 7, (int64_t)at, 0, 0, 0, 0);
    pm_builder_emit(b, PM_OP_LI, 8, (int64_t)n, 0, 0, 0, 0);
    for (int i = 0; i < reps; i++) pm_builder_emit(b, PM_OP_VADD, PM_FMT_F32, 7, 7, 7, 8, 0);
}

/* The same linear after vector work, once plain and once with its first
 * tiles prefetched before the vector work: the same Y bits, fewer cycles. */
TEST(test_linear_prefetch)
{
    pm_config cfg = edge();
    uint64_t s = 0x9ef3c4ULL;
    static const struct { uint32_t M, N, K; pm_format f; } cases[] = {
        {1, 960, 576, PM_FMT_Q4_1}, {8, 576, 576, PM_FMT_Q8_0}, {1, 200, 128, PM_FMT_NVFP4}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        pm_linear_desc d = {.M = cases[c].M, .N = cases[c].N, .K = cases[c].K, .w_fmt = cases[c].f,
                            .x_sram = 0, .y_sram = 0x20000, .y_fmt = PM_FMT_F32, .scratch_sram = 0x80000,
                            .scratch_bytes = 0x10000};
        size_t wb, MK = (size_t)d.M * d.K, yb = y_bytes_of(&d);
        void *w = random_weights(&d, &s, &wb);
        uint16_t *x = malloc(MK * 2);
        uint8_t *y[2] = {malloc(yb), malloc(yb)}, *ref = malloc(yb);
        for (size_t i = 0; i < MK; i++) x[i] = pm_f32_to_bf16(rng_float(&s, -1, 1));
        uint64_t cycles[2] = {0, 0};
        pm_error err;
        for (int pre = 0; pre < 2; pre++) {
            pm_device *dev = NULL;
            pm_builder *b = NULL;
            CHECK(pm_device_open(&cfg, &dev, &err) == PM_OK && pm_builder_create(&b, &err) == PM_OK);
            CHECK(pm_device_alloc(dev, wb, 64, &d.w_dram, &err) == PM_OK);
            pm_device_write(dev, d.w_dram, w, wb, &err);
            pm_device_sram_write(dev, 0, d.x_sram, x, MK * 2, &err);
            d.prefetched = false;
            if (pre) {
                CHECK(pm_emit_linear_prefetch(b, &cfg, &d, &err) == PM_OK);
                d.prefetched = true;
            }
            emit_vector_work(b, 0x40000, 4096, 4);
            CHECK_MSG(pm_emit_linear(b, &cfg, &d, &err) == PM_OK, "%s", err.message);
            cycles[pre] = run_builder(dev, b, pre ? "prefetched" : "plain");
            pm_device_sram_read(dev, 0, d.y_sram, y[pre], yb, &err);
            pm_builder_destroy(b);
            pm_device_close(dev);
        }
        CHECK(pm_ref_linear(&d, x, w, ref, &err) == PM_OK);
        CHECK_MSG(memcmp(y[0], ref, yb) == 0 && memcmp(y[1], ref, yb) == 0, "case %zu: Y differs", c);
        CHECK_MSG(cycles[1] > 0 && cycles[1] < cycles[0], "case %zu: prefetched %llu cycles, plain %llu", c,
                  (unsigned long long)cycles[1], (unsigned long long)cycles[0]);
        free(w), free(x), free(y[0]), free(y[1]), free(ref);
    }
}

/* ---- errors ---- */

/* The emitter refuses d naming `needle`; so does the prefetch unless the
 * problem is in X or Y only (it moves weights alone: xy_only). */
static void expect_error_of(const pm_config *cfg, const pm_linear_desc *d, const char *needle, bool xy_only)
{
    pm_builder *b = NULL;
    pm_error err = {0};
    CHECK(pm_builder_create(&b, &err) == PM_OK);
    pm_status st = pm_emit_linear(b, cfg, d, &err);
    CHECK_MSG(st != PM_OK && strstr(err.message, needle) != NULL, "want \"%s\", got status %d: %s", needle, (int)st,
              err.message);
    CHECK(pm_builder_pc(b) == 0); /* nothing emitted on error */
    st = pm_emit_linear_prefetch(b, cfg, d, &err);
    if (xy_only)
        CHECK_MSG(st == PM_OK, "prefetch refuses a problem of X/Y (%s): %s", needle, err.message);
    else {
        CHECK_MSG(st != PM_OK && strstr(err.message, needle) != NULL, "prefetch: want \"%s\", got: %s", needle,
                  err.message);
        CHECK(pm_builder_pc(b) == 0);
    }
    pm_builder_destroy(b);
}

static void expect_error(const pm_config *cfg, const pm_linear_desc *d, const char *needle)
{
    expect_error_of(cfg, d, needle, false);
}

TEST(test_linear_errors)
{
    pm_config cfg = edge();
    pm_linear_desc ok = {.M = 4, .N = 96, .K = 128, .w_fmt = PM_FMT_Q4_1, .w_dram = 0x1000, .x_sram = 0,
                         .y_sram = 0x1000, .y_fmt = PM_FMT_F32, .scratch_sram = 0x4000, .scratch_bytes = 0x8000};
    pm_builder *b = NULL;
    pm_error err;
    CHECK(pm_builder_create(&b, &err) == PM_OK);
    CHECK_MSG(pm_emit_linear(b, &cfg, &ok, &err) == PM_OK, "%s", err.message);
    pm_builder_destroy(b);

    pm_linear_desc d = ok;
    d.M = 0, expect_error(&cfg, &d, "linear: M = 0");
    d = ok, d.N = 0, expect_error(&cfg, &d, "linear: N = 0");
    d = ok, d.K = 0, expect_error(&cfg, &d, "linear: K = 0");
    d = ok, d.K = 48, expect_error(&cfg, &d, "K = 48 is not a whole number of q4_1");
    d = ok, d.w_fmt = PM_FMT_INT4, d.K = 127, expect_error(&cfg, &d, "K = 127");
    d = ok, d.w_fmt = (pm_format)99, expect_error(&cfg, &d, "w_fmt 99");
    d = ok, d.y_fmt = PM_FMT_E4M3, expect_error(&cfg, &d, "y_fmt = e4m3");
    d = ok, d.scratch_bytes = 4000, expect_error(&cfg, &d, "scratch_bytes = 4000 is too small");
    d = ok, d.scratch_bytes = 4000, expect_error(&cfg, &d, "and their output staging need 5632 bytes");
    d = ok, d.x_sram = cfg.sram_bytes - 100, expect_error_of(&cfg, &d, "x_sram", true);
    d = ok, d.y_sram = cfg.sram_bytes - 4, expect_error_of(&cfg, &d, "y_sram", true);
    d = ok, d.scratch_sram = cfg.sram_bytes - 0x1000, expect_error(&cfg, &d, "scratch_sram");
    d = ok, d.w_dram = cfg.dram_bytes - 100, expect_error(&cfg, &d, "w_dram");
    d = ok, d.y_sram = 0x100, expect_error_of(&cfg, &d, "x_sram [0x0, 0x400) overlaps y_sram", true);
    d = ok, d.scratch_sram = 0x1400, expect_error_of(&cfg, &d, "y_sram [0x1000, 0x1600) overlaps scratch_sram", true);
    d = ok, d.scratch_sram = 0x200, expect_error_of(&cfg, &d, "overlaps scratch_sram", true);
    pm_config rep = cfg;
    rep.hazard_mode = PM_HAZARD_REPORT;
    expect_error(&rep, &ok, "control.hazards");

    /* The reference shares the shape rules. */
    uint16_t x[4];
    float y[4];
    uint8_t w[64];
    d = ok, d.K = 48;
    CHECK(pm_ref_linear(&d, x, w, y, &err) == PM_ERR_INVALID && strstr(err.message, "K = 48"));
    d = ok, d.y_fmt = PM_FMT_MXFP4;
    CHECK(pm_ref_linear(&d, x, w, y, &err) == PM_ERR_INVALID && strstr(err.message, "y_fmt = mxfp4"));
}

/* pm_linear_scratch_bytes: the emitter accepts exactly min_bytes and refuses
 * one byte less (naming that figure); with full_bytes a long-K GEMV (SmolLM2's
 * down projection) keeps up with DRAM, with min_bytes it waits on the array. */
TEST(test_linear_scratch_bytes)
{
    pm_config cfg = edge();
    pm_error err;
    uint64_t s = 0x5c7a7c4ULL;
    for (int i = 0; i < 40; i++) {
        static const uint32_t Ms[] = {1, 2, 7, 33, 64, 1100};
        pm_linear_desc d = {.M = Ms[i % 6], .N = rng_range(&s, 1, 700), .w_fmt = (pm_format)(i % PM_FMT_COUNT),
                            .y_fmt = i % 3 ? PM_FMT_F32 : PM_FMT_BF16, .x_sram = 0};
        d.K = k_granule(d.w_fmt) * rng_range(&s, 1, 8);
        uint64_t mn = 0, full = 0;
        CHECK_MSG(pm_linear_scratch_bytes(&cfg, &d, &mn, &full, &err) == PM_OK, "%s", err.message);
        CHECK(mn > 0 && full >= mn);
        d.y_sram = (uint64_t)d.M * d.K * 2 + 256;
        d.scratch_sram = (d.y_sram + (uint64_t)d.M * d.N * 4 + 255) / 256 * 256;
        if (d.scratch_sram + full > cfg.sram_bytes) continue;
        pm_builder *b = NULL;
        CHECK(pm_builder_create(&b, &err) == PM_OK);
        d.scratch_bytes = mn;
        CHECK_MSG(pm_emit_linear(b, &cfg, &d, &err) == PM_OK, "M=%u N=%u K=%u %s min %llu: %s", d.M, d.N, d.K,
                  pm_format_get(d.w_fmt)->name, (unsigned long long)mn, err.message);
        d.scratch_bytes = full;
        CHECK_MSG(pm_emit_linear(b, &cfg, &d, &err) == PM_OK, "full %llu: %s", (unsigned long long)full, err.message);
        d.scratch_bytes = mn - 1;
        char want[64];
        snprintf(want, sizeof want, "need %llu bytes", (unsigned long long)mn);
        CHECK_MSG(pm_emit_linear(b, &cfg, &d, &err) != PM_OK && strstr(err.message, want), "M=%u N=%u K=%u %s: %s",
                  d.M, d.N, d.K, pm_format_get(d.w_fmt)->name, err.message);
        pm_builder_destroy(b);
    }

    pm_linear_desc d = {.M = 1, .N = 576, .K = 1536, .w_fmt = PM_FMT_Q4_1, .w_dram = 0x1000, .x_sram = 0,
                        .y_sram = 0x1000, .y_fmt = PM_FMT_F32, .scratch_sram = 0x10000};
    uint64_t mn = 0, full = 0, cycles[2] = {0, 0};
    CHECK(pm_linear_scratch_bytes(&cfg, &d, &mn, &full, &err) == PM_OK);
    for (int i = 0; i < 2; i++) {
        pm_device *dev = NULL;
        pm_builder *b = NULL;
        CHECK(pm_device_open(&cfg, &dev, &err) == PM_OK && pm_builder_create(&b, &err) == PM_OK);
        d.scratch_bytes = i ? full : mn;
        CHECK(pm_emit_linear(b, &cfg, &d, &err) == PM_OK);
        cycles[i] = run_builder(dev, b, "down projection");
        pm_builder_destroy(b);
        pm_device_close(dev);
    }
    size_t wb = 0;
    pm_format_bytes(d.w_fmt, (size_t)d.N * d.K, &wb);
    double dram = (double)wb / pm_config_dram_bytes_per_cycle(&cfg);
    /* One linear alone also pays its last tile's multiply after the stream. */
    CHECK_MSG(cycles[1] > 0 && dram / (double)cycles[1] > 0.85 && cycles[1] < cycles[0],
              "down projection: %llu cycles with full_bytes = %llu, %llu with min_bytes = %llu, DRAM %.0f",
              (unsigned long long)cycles[1], (unsigned long long)full, (unsigned long long)cycles[0],
              (unsigned long long)mn, dram);
}

/* ---- the program basics ---- */

TEST(test_llm_kernels_check)
{
    pm_config cfg = edge();
    pm_error err;
    CHECK(pm_llm_kernels_check(&cfg, &err) == PM_OK);
    pm_config c = cfg;
    c.hazard_mode = PM_HAZARD_REPORT;
    CHECK(pm_llm_kernels_check(&c, &err) == PM_ERR_CONFIG && strstr(err.message, "control.hazards"));
    c = cfg, c.lfu_slots = 3;
    CHECK(pm_llm_kernels_check(&c, &err) == PM_ERR_CONFIG && strstr(err.message, "lfu.slots = 3"));
    c = cfg, c.accum_bytes = 128;
    CHECK(pm_llm_kernels_check(&c, &err) == PM_ERR_CONFIG && strstr(err.message, "sram.accumulator_bytes"));
}

/* The prologue loads exp, silu, rsqrt, recip into slots 0..3: a program
 * running lfu through each slot after it gives the built-in tables' values. */
TEST(test_llm_prologue)
{
    pm_config cfg = edge();
    pm_error err;
    pm_device *dev = NULL;
    pm_builder *b = NULL;
    CHECK(pm_device_open(&cfg, &dev, &err) == PM_OK && pm_builder_create(&b, &err) == PM_OK);
    float in[32];
    for (int i = 0; i < 32; i++) in[i] = 0.25f + 0.125f * (float)i;
    pm_device_sram_write(dev, 0, 0, in, sizeof in, &err);
    pm_emit_llm_prologue(b);
    pm_builder_emit(b, PM_OP_LI, 1, 0, 0, 0, 0, 0);
    pm_builder_emit(b, PM_OP_LI, 3, 32, 0, 0, 0, 0);
    for (int slot = 0; slot < PM_LLM_SLOTS; slot++) {
        pm_builder_emit(b, PM_OP_LI, 2, 0x1000 + 0x100 * slot, 0, 0, 0, 0);
        pm_builder_emit(b, PM_OP_LFU, PM_FMT_F32, slot, 2, 1, 3, 0);
    }
    CHECK(run_builder(dev, b, "prologue") > 0);
    static const pm_lfu_func want[PM_LLM_SLOTS] = {PM_LFU_EXP, PM_LFU_SILU, PM_LFU_RSQRT, PM_LFU_RECIP};
    for (int slot = 0; slot < PM_LLM_SLOTS; slot++) {
        float out[32], ref[32];
        pm_device_sram_read(dev, 0, 0x1000 + 0x100 * (uint64_t)slot, out, sizeof out, &err);
        pm_lfu_table t;
        memset(&t, 0, sizeof t);
        CHECK(pm_lfu_builtin(want[slot], &t, &err) == PM_OK);
        pm_lfu_eval_array(&t, in, ref, 32);
        pm_lfu_table_free(&t);
        CHECK_MSG(memcmp(out, ref, sizeof out) == 0, "slot %d does not hold %s", slot, pm_lfu_func_name(want[slot]));
    }
    pm_builder_destroy(b);
    pm_device_close(dev);
}

/* ---- the SmolLM2-135M decode chain against the DRAM roofline ----
 * One program per layer, as the model runner builds them: the layer's four
 * linears (QKV fused 960x576, O 576x576, gate+up fused 3072x576 Q4_1, down
 * 576x1536 Q4_1) on one scratch, M = 1, x 30, then the tied head (49152x576
 * Q8_0). The weights are the DRAM's zero pages (their values do not change a
 * cycle). Simulated cycles against the weight bytes at the DRAM bandwidth. */
TEST(test_linear_decode_roofline)
{
    pm_config cfg = edge();
    pm_error err;
    pm_device *dev = NULL;
    CHECK(pm_device_open(&cfg, &dev, &err) == PM_OK);
    if (!dev) return;
    static const struct { uint32_t N, K; pm_format f; } lin[4] = {
        {960, 576, PM_FMT_Q4_1}, {576, 576, PM_FMT_Q4_1}, {3072, 576, PM_FMT_Q4_1}, {576, 1536, PM_FMT_Q4_1}};
    const uint64_t scratch = 0x100000, scratch_bytes = 0x40000; /* 256 KiB of the 2 MiB */
    uint64_t dram = 0x1000, weight_bytes = 0, cycles = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int layer = 0; layer <= 30; layer++) {
        pm_builder *b = NULL;
        CHECK(pm_builder_create(&b, &err) == PM_OK);
        for (int i = 0; i < (layer < 30 ? 4 : 1); i++) {
            pm_linear_desc d = {.M = 1, .N = lin[i].N, .K = lin[i].K, .w_fmt = lin[i].f, .x_sram = 0,
                                .y_sram = 0x10000, .y_fmt = PM_FMT_F32, .scratch_sram = scratch,
                                .scratch_bytes = scratch_bytes};
            if (layer == 30) d.N = 49152, d.w_fmt = PM_FMT_Q8_0, d.y_sram = 0x8000;
            size_t wb = 0;
            pm_format_bytes(d.w_fmt, (size_t)d.N * d.K, &wb);
            d.w_dram = dram;
            dram += (wb + 63) / 64 * 64;
            weight_bytes += wb;
            CHECK_MSG(pm_emit_linear(b, &cfg, &d, &err) == PM_OK, "%s", err.message);
        }
        cycles += run_builder(dev, b, layer < 30 ? "layer" : "head");
        pm_builder_destroy(b);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ideal = (double)weight_bytes / pm_config_dram_bytes_per_cycle(&cfg);
    double frac = ideal / (double)cycles;
    double wall = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("decode chain: %llu weight bytes, %llu cycles, roofline %.0f cycles: fraction %.4f; host %.3f s\n",
           (unsigned long long)weight_bytes, (unsigned long long)cycles, ideal, frac, wall);
    CHECK_MSG(frac >= 0.95, "decode chain at %.4f of the DRAM roofline", frac);
    pm_device_close(dev);
}

int main(void)
{
    RUN(test_linear_errors);
    RUN(test_linear_scratch_bytes);
    RUN(test_llm_kernels_check);
    RUN(test_llm_prologue);
    RUN(test_linear_random_formats);
    RUN(test_linear_model_shapes);
    RUN(test_linear_other_engines);
    RUN(test_linear_chain);
    RUN(test_linear_prefetch);
    RUN(test_linear_decode_roofline);
    return TEST_SUMMARY();
}
