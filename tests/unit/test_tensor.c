/* Tensor unit tests: tmm/tmma with every weight format against a plain C
 * reference (decode -> bf16 -> fmaf in k order), the fused epilogue against
 * the LFU layer's evaluator, faults with their messages (and nothing
 * written), determinism across host thread counts, and the timing formulas
 * of docs/tensor.md through the simulator's counters. */
#define _POSIX_C_SOURCE 200809L
#include "polymorph/config.h"
#include "polymorph/isa.h"
#include "polymorph/lfu.h"
#include "polymorph/numerics.h"
#include "polymorph/sim.h"
#include "harness_sim.h"
#include "test.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- harness ---- */

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void) { return pm_test_xorshift(&rng_state); }
static float rndf(float lo, float hi) { return lo + (hi - lo) * (float)(rnd() & 0xFFFFFF) / (float)0x1000000; }

static pm_status run(pm_sim *sim, const char *src, pm_error *err)
{
    pm_program prog;
    pm_program_init(&prog);
    pm_status st = pm_assemble("test.pasm", src, &prog, err);
    if (st) {
        fprintf(stderr, "assembly failed: %s\n%s\n", err->message, src);
        pm_program_free(&prog);
        return st;
    }
    st = pm_sim_load_program(sim, &prog, 0, err);
    pm_program_free(&prog);
    if (st) return st;
    return pm_sim_run(sim, NULL, err);
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    static char buf[4][8192];
    static int k;
    char *b = buf[k++ & 3];
    va_list ap;
    va_start(ap, f);
    vsnprintf(b, sizeof buf[0], f, ap);
    va_end(ap);
    return b;
}

static int64_t reg(pm_sim *sim, unsigned r)
{
    int64_t v = 0;
    pm_sim_reg_read(sim, 0, r, &v, NULL);
    return v;
}

/* Independent RNE float -> bf16 for finite values. */
static uint16_t ref_bf16(float x)
{
    uint32_t u = pm_f32_bits(x);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float bf16_val(uint16_t h) { return pm_f32_from_bits((uint32_t)h << 16); }

/* SRAM layout used by most tests. */
enum { SA = 0x00000, SB = 0x40000, SD = 0x80000, SBIAS = 0xC0000, SD2 = 0xD0000 };

/* A random M x K bf16 matrix into SRAM at SA; values returned as fp32. */
static void put_a(pm_sim *sim, size_t m, size_t k, float *a)
{
    uint16_t *h = malloc(m * k * 2);
    for (size_t i = 0; i < m * k; i++) {
        h[i] = ref_bf16(rndf(-2.0f, 2.0f));
        a[i] = bf16_val(h[i]);
    }
    CHECK(pm_sim_sram_write(sim, 0, SA, h, m * k * 2, NULL) == PM_OK);
    free(h);
}

/* Random N x K weights encoded in w into SRAM at addr; the values the array
 * sees (decoded, rounded to bf16) returned in b. */
static size_t put_w(pm_sim *sim, pm_format w, uint64_t addr, size_t n, size_t k, float *b)
{
    size_t bytes = 0;
    CHECK(pm_format_bytes(w, n * k, &bytes));
    float *x = malloc(n * k * sizeof *x);
    uint8_t *enc = malloc(bytes);
    for (size_t i = 0; i < n * k; i++) x[i] = rndf(-3.0f, 3.0f);
    CHECK(pm_format_encode(w, x, n * k, enc, NULL) == PM_OK);
    CHECK(pm_format_decode(w, enc, n * k, b, NULL) == PM_OK);
    for (size_t i = 0; i < n * k; i++) b[i] = bf16_val(ref_bf16(b[i]));
    CHECK(pm_sim_sram_write(sim, 0, addr, enc, bytes, NULL) == PM_OK);
    free(x);
    free(enc);
    return bytes;
}

/* The definition: c = (acc ? c0 : +0); c = fmaf(a[m][k], b[n][k], c) for k ascending. */
static void ref_mm(size_t m, size_t n, size_t k, const float *a, const float *b, float *c, bool acc)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            float s = acc ? c[i * n + j] : 0.0f;
            for (size_t q = 0; q < k; q++) s = fmaf(a[i * k + q], b[j * k + q], s);
            c[i * n + j] = s;
        }
}

static bool same_bits(const float *x, const float *y, size_t n, size_t *where)
{
    for (size_t i = 0; i < n; i++)
        if (pm_f32_bits(x[i]) != pm_f32_bits(y[i])) {
            *where = i;
            return false;
        }
    return true;
}

static const char *df_name(int df) { return df == 2 ? "ws" : df == 1 ? "os" : "config"; }

/* tshape; tmm.W acc=0 (and tmma.W a second time when twice); tout.f32 to SD. */
static char *mm_program(size_t m, size_t n, size_t k, int df, pm_format w, bool twice, uint64_t b2)
{
    const char *wn = pm_format_get(w)->name;
    return fmt("li r1, %zu\nli r2, %zu\nli r3, %zu\ntshape r1, r2, r3, %d\n"
               "li r4, 0\nli r5, %d\nli r6, %d\ntmm.%s r4, r5, r6\n"
               "%s"
               "li r7, %d\ntout.f32 r7, r4\nhalt\n",
               m, n, k, df, SA, SB, wn,
               twice ? fmt("li r6, %llu\ntmma.%s r4, r5, r6\n", (unsigned long long)b2, wn) : "", SD);
}

/* ---- functional: every weight format, both dataflows, tmm then tmma ---- */

static const pm_format all_formats[] = {
    PM_FMT_F32,   PM_FMT_BF16,   PM_FMT_F16,   PM_FMT_E4M3,  PM_FMT_E5M2,  PM_FMT_E2M1,
    PM_FMT_INT8,  PM_FMT_INT4,   PM_FMT_MXFP4, PM_FMT_MXFP8, PM_FMT_MXINT8, PM_FMT_NVFP4,
    PM_FMT_IF4,   PM_FMT_INT4B,  PM_FMT_Q4_0,  PM_FMT_Q4_1,  PM_FMT_Q8_0,
};

static void check_formats(size_t m, size_t n, size_t k_blocks)
{
    for (size_t fi = 0; fi < sizeof all_formats / sizeof *all_formats; fi++) {
        pm_format w = all_formats[fi];
        const pm_format_info *info = pm_format_get(w);
        size_t k = info->is_block ? k_blocks * info->block_elems : k_blocks * 10 + 2; /* even: 4-bit rows */
        for (int df = 1; df <= 2; df++) {
            pm_config cfg = edge();
            pm_sim *sim = make_sim(&cfg);
            float *a = malloc(m * k * 4), *b = malloc(n * k * 4), *b2 = malloc(n * k * 4);
            float *want = calloc(m * n, 4), *got = malloc(m * n * 4);
            put_a(sim, m, k, a);
            size_t bytes = put_w(sim, w, SB, n, k, b);
            uint64_t at2 = SB + ((bytes + 63) & ~(size_t)63);
            put_w(sim, w, at2, n, k, b2);
            pm_error err;
            pm_status st = run(sim, mm_program(m, n, k, df, w, true, at2), &err);
            CHECK_MSG(st == PM_OK, "%s %s: %s", info->name, df_name(df), err.message);
            ref_mm(m, n, k, a, b, want, false);
            ref_mm(m, n, k, a, b2, want, true);
            CHECK(pm_sim_sram_read(sim, 0, SD, got, m * n * 4, NULL) == PM_OK);
            size_t where = 0;
            CHECK_MSG(same_bits(want, got, m * n, &where), "%s %s %zux%zux%zu: element %zu: %a vs reference %a",
                      info->name, df_name(df), m, n, k, where, (double)got[where], (double)want[where]);
            pm_counters c;
            pm_sim_counters(sim, &c);
            CHECK(c.tensor_macs == 2 * m * n * k);
            CHECK(c.unit[PM_UNIT_TENSOR].instructions == 3);
            free(a), free(b), free(b2), free(want), free(got);
            pm_sim_destroy(sim);
        }
    }
}

TEST(every_weight_format_matches_reference)
{
    check_formats(7, 9, 2);   /* ragged against the 32 x 32 array */
    check_formats(40, 33, 3); /* several folds and weight tiles */
}

TEST(ragged_shapes_random)
{
    for (int trial = 0; trial < 12; trial++) {
        size_t m = 1 + rnd() % 70, n = 1 + rnd() % 70, k = 1 + rnd() % 80;
        int df = 1 + (int)(rnd() % 2);
        pm_config cfg = edge();
        cfg.tensor_rows = 2 + rnd() % 15;
        cfg.tensor_cols = 2 + rnd() % 15;
        cfg.tensor_weight_load_rows = 1 + rnd() % cfg.tensor_rows;
        pm_sim *sim = make_sim(&cfg);
        float *a = malloc(m * k * 4), *b = malloc(n * k * 4), *want = calloc(m * n, 4), *got = malloc(m * n * 4);
        put_a(sim, m, k, a);
        put_w(sim, PM_FMT_BF16, SB, n, k, b);
        pm_error err;
        CHECK_MSG(run(sim, mm_program(m, n, k, df, PM_FMT_BF16, false, 0), &err) == PM_OK, "%s", err.message);
        ref_mm(m, n, k, a, b, want, false);
        CHECK(pm_sim_sram_read(sim, 0, SD, got, m * n * 4, NULL) == PM_OK);
        size_t where = 0;
        CHECK_MSG(same_bits(want, got, m * n, &where), "%zux%zux%zu %s: element %zu", m, n, k, df_name(df), where);
        free(a), free(b), free(want), free(got);
        pm_sim_destroy(sim);
    }
}

/* Products that overflow and sums that cancel: the single rounding of fmaf
 * defines the result, -0 stays -0 where the definition keeps it. */
TEST(special_values_follow_fmaf)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    const size_t m = 2, n = 3, k = 4;
    const float av[8] = {3e38f, 3e38f, -1.0f, 1.0f, -0.0f, -0.0f, 1e-30f, 1e-30f};
    const float bv[12] = {2.0f, -2.0f, 1.0f, 1.0f, 0.0f, 0.0f, 0.0f, 0.0f, 1e-20f, 1e-20f, 1.0f, -1.0f};
    uint16_t ah[8], bh[12];
    float a[8], b[12], want[6], got[6];
    for (int i = 0; i < 8; i++) ah[i] = ref_bf16(av[i]), a[i] = bf16_val(ah[i]);
    for (int i = 0; i < 12; i++) bh[i] = ref_bf16(bv[i]), b[i] = bf16_val(bh[i]);
    pm_sim_sram_write(sim, 0, SA, ah, sizeof ah, NULL);
    pm_sim_sram_write(sim, 0, SB, bh, sizeof bh, NULL);
    pm_error err;
    CHECK(run(sim, mm_program(m, n, k, 0, PM_FMT_BF16, false, 0), &err) == PM_OK);
    ref_mm(m, n, k, a, b, want, false);
    pm_sim_sram_read(sim, 0, SD, got, sizeof got, NULL);
    size_t where = 0;
    CHECK_MSG(same_bits(want, got, 6, &where), "element %zu: %a vs %a", where, (double)got[where],
              (double)want[where]);
    CHECK(isinf(got[0])); /* 3e38 * 2 overflows before -3e38*2 could cancel it */
    pm_sim_destroy(sim);
}

/* ---- epilogue ---- */

TEST(epilogue_scale_bias_activation)
{
    const size_t m = 5, n = 64, k = 32;
    for (int mode = 0; mode < 8; mode++) {
        pm_config cfg = edge();
        pm_sim *sim = make_sim(&cfg);
        float *a = malloc(m * k * 4), *b = malloc(n * k * 4), acc[5 * 64], bias[64], v[5 * 64], y[5 * 64];
        put_a(sim, m, k, a);
        put_w(sim, PM_FMT_Q8_0, SB, n, k, b);
        for (size_t j = 0; j < n; j++) bias[j] = rndf(-1.0f, 1.0f);
        pm_sim_sram_write(sim, 0, SBIAS, bias, sizeof bias, NULL);
        float scale = 0.37f;
        /* Output in bf16 and in mxfp8 (a block format: N is two blocks per row). */
        const pm_format outs[2] = {PM_FMT_BF16, PM_FMT_MXFP8};
        for (int o = 0; o < 2; o++) {
            const char *src = fmt("lfu.cfg 2, silu\nli r1, %zu\nli r2, %zu\nli r3, %zu\ntshape r1, r2, r3, 0\n"
                                  "li r4, 4096\nli r5, %d\nli r6, %d\ntmm.q8_0 r4, r5, r6\n"
                                  "li r8, %d\nli r9, %u\nli r10, %d\ntepi r8, r9, r10\n"
                                  "li r7, %d\ntout.%s r7+, r4\nhalt\n",
                                  m, n, k, SA, SB, SBIAS, pm_f32_bits(scale), mode | (2 << 4), SD,
                                  pm_format_get(outs[o])->name);
            pm_error err;
            CHECK_MSG(run(sim, src, &err) == PM_OK, "mode %d: %s", mode, err.message);
            memset(acc, 0, sizeof acc);
            ref_mm(m, n, k, a, b, acc, false);
            for (size_t i = 0; i < m * n; i++) {
                v[i] = acc[i];
                if (mode & 2) v[i] = v[i] * scale;
                if (mode & 1) v[i] = v[i] + bias[i % n];
            }
            const float *res = v;
            if (mode & 4) {
                pm_lfu_table t;
                memset(&t, 0, sizeof t);
                CHECK(pm_lfu_builtin(PM_LFU_SILU, &t, NULL) == PM_OK);
                pm_lfu_eval_array(&t, v, y, m * n);
                pm_lfu_table_free(&t);
                res = y;
            }
            size_t bytes = 0;
            pm_format_bytes(outs[o], m * n, &bytes);
            uint8_t *want = malloc(bytes), *got = malloc(bytes);
            CHECK(pm_format_encode(outs[o], res, m * n, want, NULL) == PM_OK);
            pm_sim_sram_read(sim, 0, SD, got, bytes, NULL);
            CHECK_MSG(memcmp(want, got, bytes) == 0, "mode %d out %s", mode, pm_format_get(outs[o])->name);
            CHECK(reg(sim, 7) == (int64_t)(SD + bytes)); /* post-increment by the bytes written */
            pm_counters c;
            pm_sim_counters(sim, &c);
            if (o == 1) CHECK(c.lfu_evals == ((mode & 4) ? 2 * m * n : 0));
            free(want), free(got);
        }
        free(a), free(b);
        pm_sim_destroy(sim);
    }
}

/* ---- faults: message names the operand and range; nothing is written ---- */

static void expect_fault(const char *src, const char *needle)
{
    pm_config cfg = edge();
    cfg.accum_bytes = 64 * 1024;
    pm_sim *sim = make_sim(&cfg);
    uint8_t before[256], after[256];
    for (size_t i = 0; i < sizeof before; i++) before[i] = (uint8_t)rnd();
    pm_sim_sram_write(sim, 0, SD, before, sizeof before, NULL);
    pm_error err;
    pm_status st = run(sim, src, &err);
    CHECK_MSG(st == PM_ERR_FAULT, "expected a fault containing '%s' (status %d)\n%s", needle, (int)st, src);
    if (st) CHECK_MSG(strstr(err.message, needle) != NULL, "message '%s' lacks '%s'", err.message, needle);
    pm_sim_sram_read(sim, 0, SD, after, sizeof after, NULL);
    CHECK(memcmp(before, after, sizeof before) == 0);
    pm_sim_destroy(sim);
}

#define SHAPE(m, n, k) "li r1, " #m "\nli r2, " #n "\nli r3, " #k "\ntshape r1, r2, r3, 0\n"

TEST(faults_name_operand_and_range)
{
    expect_fault("li r4, 0\nli r5, 0\nli r6, 0\ntmm.bf16 r4, r5, r6\nhalt\n", "no tensor shape: run tshape first");
    expect_fault(SHAPE(0, 4, 4) "tmm.bf16 r4, r5, r6\nhalt\n", "tensor shape M = 0 (set by tshape) must be positive");
    expect_fault(SHAPE(4, -3, 4) "tmm.bf16 r4, r5, r6\nhalt\n", "tensor shape N = -3");
    expect_fault(SHAPE(4, 4, 4) "li r1, 0\ntshape r1, r1, r1, 3\nhalt\n", "dataflow 3 is not 0 (config), 1 (os) or 2 (ws)");
    expect_fault(SHAPE(2097152, 2097152, 2097152) "tmm.bf16 r4, r5, r6\nhalt\n", "is too large");
    /* accumulator: 64 KiB = 0x10000 bytes; 64 x 64 fp32 at 0x8000 runs past it */
    expect_fault(SHAPE(64, 64, 8) "li r4, 0xe000\nli r5, 0\nli r6, 0x1000\ntmm.bf16 r4, r5, r6\nhalt\n",
                 "operand acc: accumulator write [0xe000, 0x12000) through r4 is out of bounds (accumulator memory is "
                 "0x10000 bytes)");
    expect_fault(SHAPE(4, 4, 8) "li r4, 2\nli r5, 0\nli r6, 0x1000\ntmm.bf16 r4, r5, r6\nhalt\n",
                 "accumulator address 0x2 (r4) is not a multiple of 4");
    expect_fault(SHAPE(4, 4, 8) "li r4, 0\nli r5, 0x1ffff0\nli r6, 0x1000\ntmm.bf16 r4, r5, r6\nhalt\n",
                 "operand a: SRAM read [0x1ffff0, 0x200030) through r5 is out of bounds");
    expect_fault(SHAPE(4, 4, 8) "li r4, 0\nli r5, 0\nli r6, -8\ntmm.int8 r4, r5, r6\nhalt\n",
                 "operand b: SRAM read [0xfffffffffffffff8, 0x18) through r6 is out of bounds");
    expect_fault(SHAPE(4, 4, 48) "li r4, 0\nli r5, 0\nli r6, 0x1000\ntmm.q4_0 r4, r5, r6\nhalt\n",
                 "K = 48 is not a whole number of q4_0 blocks (32 elements)");
    expect_fault(SHAPE(4, 4, 7) "li r4, 0\nli r5, 0\nli r6, 0x1000\ntmm.int4 r4, r5, r6\nhalt\n",
                 "K = 7 is not a whole number of int4 bytes (2 elements)");
    expect_fault(SHAPE(4, 4, 8) "li r4, 0x10000\nli r7, 0x80000\ntout.f32 r7, r4\nhalt\n",
                 "operand acc: accumulator read [0x10000, 0x10040) through r4 is out of bounds");
    expect_fault(SHAPE(4, 40, 8) "li r4, 0\nli r7, 0x80000\ntout.nvfp4 r7, r4\nhalt\n",
                 "N = 40 is not a whole number of nvfp4 blocks (16 elements): every output row");
    expect_fault(SHAPE(4, 4, 8) "li r4, 0\nli r7, 0x1fffff\ntout.f32 r7, r4\nhalt\n",
                 "operand d: SRAM write [0x1fffff, 0x20003f) through r7 is out of bounds");
    expect_fault(SHAPE(4, 4, 8) "li r8, 0x1ffffc\nli r10, 1\ntepi r8, r9, r10\nli r7, 0x80000\ntout.f32 r7, r4\nhalt\n",
                 "bias: SRAM read [0x1ffffc, 0x20000c) (address set by tepi) is out of bounds");
    expect_fault(SHAPE(4, 4, 8) "li r10, 0x34\ntepi r8, r9, r10\nli r7, 0x80000\ntout.f32 r7, r4\nhalt\n",
                 "epilogue LFU slot 3 is empty");
    expect_fault(SHAPE(4, 4, 8) "li r10, 0x74\ntepi r8, r9, r10\nli r7, 0x80000\ntout.f32 r7, r4\nhalt\n",
                 "epilogue LFU slot 7 does not exist (the config has 4 slots)");
    expect_fault("li r10, 8\ntepi r8, r9, r10\nhalt\n", "epilogue mode 0x8 (r10) sets bits other than");
    expect_fault(SHAPE(4, 4, 8) "li r4, 0x10000\nli r5, 0\nli r6, 0x1000\ntmma.bf16 r4, r5, r6\nhalt\n",
                 "engine 0 pc 0x7 (tmma): operand acc: accumulator read [0x10000, 0x10040)");
}

/* A fault leaves the accumulator as it was: a tmm that faults on its B
 * operand after a good tmm does not disturb the good results. */
TEST(fault_writes_nothing_to_accumulator)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    float a[4 * 8], b[4 * 8], want[16] = {0}, got[16];
    put_a(sim, 4, 8, a);
    put_w(sim, PM_FMT_BF16, SB, 4, 8, b);
    pm_error err;
    CHECK(run(sim, fmt(SHAPE(4, 4, 8) "li r4, 0\nli r5, %d\nli r6, %d\ntmm.bf16 r4, r5, r6\nhalt\n", SA, SB), &err) ==
          PM_OK);
    CHECK(run(sim, SHAPE(4, 4, 8) "li r4, 0\nli r5, 0\nli r6, 0x1ffffff\ntmm.bf16 r4, r5, r6\nhalt\n", &err) ==
          PM_ERR_FAULT);
    CHECK(run(sim, fmt(SHAPE(4, 4, 8) "li r4, 0\nli r7, %d\ntout.f32 r7, r4\nhalt\n", SD), &err) == PM_OK);
    ref_mm(4, 4, 8, a, b, want, false);
    pm_sim_sram_read(sim, 0, SD, got, sizeof got, NULL);
    size_t where;
    CHECK(same_bits(want, got, 16, &where));
    pm_sim_destroy(sim);
}

/* ---- determinism across host threads ---- */

TEST(bits_identical_across_thread_counts)
{
    const size_t m = 67, n = 45, k = 96;
    float *ref = malloc(m * n * 4), *got = malloc(m * n * 4);
    for (unsigned threads = 1; threads <= 3; threads++) {
        rng_state = 0x1234567ull; /* the same operands every time */
        pm_config cfg = edge();
        pm_sim *sim = make_sim(&cfg);
        pm_sim_set_threads(sim, threads);
        float *a = malloc(m * k * 4), *b = malloc(n * k * 4);
        put_a(sim, m, k, a);
        put_w(sim, PM_FMT_Q4_1, SB, n, k, b);
        pm_error err;
        CHECK(run(sim, mm_program(m, n, k, 0, PM_FMT_Q4_1, false, 0), &err) == PM_OK);
        pm_sim_sram_read(sim, 0, SD, threads == 1 ? ref : got, m * n * 4, NULL);
        if (threads == 1) {
            float *want = calloc(m * n, 4);
            ref_mm(m, n, k, a, b, want, false);
            size_t where;
            CHECK(same_bits(want, ref, m * n, &where));
            free(want);
        } else {
            CHECK_MSG(memcmp(ref, got, m * n * 4) == 0, "%u threads differ from 1", threads);
        }
        free(a), free(b);
        pm_sim_destroy(sim);
    }
    free(ref), free(got);
}

/* ---- post-increment ---- */

TEST(address_registers_post_increment)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    CHECK(run(sim, SHAPE(3, 64, 32) "li r4, 256\nli r5, 0\nli r6, 0x1000\ntmm.q4_0 r4+, r5+, r6+\nhalt\n", &err) ==
          PM_OK);
    CHECK(reg(sim, 4) == 256 + 3 * 64 * 4);
    CHECK(reg(sim, 5) == 3 * 32 * 2);
    CHECK(reg(sim, 6) == 0x1000 + 64 * 18); /* one Q4_0 block (18 bytes) per row */
    pm_sim_destroy(sim);
}

/* ---- timing (docs/tensor.md) ---- */

typedef struct timing {
    uint64_t busy, cycles, sram_bytes;
} timing;

static timing time_one(pm_config *cfg, size_t m, size_t n, size_t k, int df, bool share)
{
    pm_sim *sim = make_sim(cfg);
    pm_sim_share_sram_port(sim, share);
    pm_error err;
    CHECK(run(sim, fmt("li r1, %zu\nli r2, %zu\nli r3, %zu\ntshape r1, r2, r3, %d\nli r4, 0\nli r5, %d\nli r6, %d\n"
                       "tmm.bf16 r4, r5, r6\nhalt\n",
                       m, n, k, df, SA, SB),
              &err) == PM_OK);
    pm_counters c;
    pm_sim_counters(sim, &c);
    timing t = {c.unit[PM_UNIT_TENSOR].busy_cycles, c.cycles, c.unit[PM_UNIT_TENSOR].sram_bytes};
    pm_sim_destroy(sim);
    return t;
}

static uint64_t cdiv(uint64_t a, uint64_t b) { return (a + b - 1) / b; }
static uint64_t mx(uint64_t a, uint64_t b) { return a > b ? a : b; }

TEST(os_timing_formula)
{
    pm_config cfg = edge();
    cfg.sram_bytes_per_cycle = 1u << 20; /* array-bound */
    cfg.sram_banks = 1;
    const uint64_t R = 32, C = 32;
    const size_t shapes[][3] = {{32, 32, 32}, {64, 96, 128}, {33, 1, 5}, {1, 1, 1}, {100, 70, 300}};
    for (size_t s = 0; s < 5; s++) {
        uint64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        uint64_t folds = cdiv(m, R) * cdiv(n, C), p = mx(k, R);
        uint64_t want = (folds - 1) * p + k + (R + C - 2) + R;
        timing t = time_one(&cfg, m, n, k, 1, true);
        CHECK_MSG(t.busy == want, "os %llux%llux%llu: %llu cycles, formula %llu", (unsigned long long)m,
                  (unsigned long long)n, (unsigned long long)k, (unsigned long long)t.busy,
                  (unsigned long long)want);
        /* A once per column of folds, B once per row of folds */
        CHECK(t.sram_bytes == m * k * 2 * cdiv(n, C) + n * k * 2 * cdiv(m, R));
    }
}

TEST(ws_timing_formula_and_k_tile_wait)
{
    pm_config cfg = edge();
    cfg.sram_bytes_per_cycle = 1u << 20;
    cfg.sram_banks = 1;
    const uint64_t R = 32, C = 32, L = cfg.tensor_weight_load_rows, P = cdiv(R, L);
    const size_t shapes[][3] = {{64, 64, 64}, {1, 32, 128}, {5, 96, 96}, {200, 33, 65}};
    for (size_t s = 0; s < 4; s++) {
        uint64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        uint64_t g = mx(m, P), kt = cdiv(k, R), nt = cdiv(n, C);
        uint64_t last = P + (kt - 1) * mx(nt * g, R + 1) + (nt - 1) * g;
        uint64_t want = last + m + R + C - 1;
        timing t = time_one(&cfg, m, n, k, 2, true);
        CHECK_MSG(t.busy == want, "ws %llux%llux%llu: %llu cycles, formula %llu", (unsigned long long)m,
                  (unsigned long long)n, (unsigned long long)k, (unsigned long long)t.busy,
                  (unsigned long long)want);
        CHECK(t.sram_bytes == m * k * 2 * nt + n * k * 2);
    }
    /* M = 1, one column block: each K tile waits R + 1 cycles for the sums. */
    timing t = time_one(&cfg, 1, 32, 128, 2, true);
    CHECK(t.busy == P + 3 * (R + 1) + 1 + R + C - 1);
}

TEST(sram_port_bounds_the_array)
{
    pm_config cfg = edge();
    cfg.sram_bytes_per_cycle = 16;
    cfg.sram_banks = 1;
    /* GEMV-like: M = 1 streams N x K weights; the port (16 B/cycle) binds. */
    const uint64_t m = 1, n = 256, k = 256;
    timing t = time_one(&cfg, m, n, k, 1, true);
    uint64_t bytes = m * k * 2 * cdiv(n, 32) + n * k * 2 * 1;
    uint64_t port = cdiv(bytes, 16);
    uint64_t folds = 8, p = 256, stream = folds * p, total = (folds - 1) * p + k + 62 + 32;
    CHECK(port > stream);
    CHECK_MSG(t.busy == port + (total - stream), "busy %llu, port %llu + drain %llu", (unsigned long long)t.busy,
              (unsigned long long)port, (unsigned long long)(total - stream));
}

/* tout waits for the tmm that writes its accumulator tile (interlock), and in
 * report mode a tmm reading SRAM a DMA is still writing is a hazard. */
TEST(hazards_on_accumulator_and_sram)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    CHECK(run(sim, SHAPE(64, 64, 64) "li r4, 0\nli r5, 0\nli r6, 0x10000\ntmm.bf16 r4, r5, r6\n"
                                     "li r7, 0x80000\ntout.f32 r7, r4\nhalt\n",
              &err) == PM_OK);
    pm_counters c;
    pm_sim_counters(sim, &c);
    /* tmm: 4 folds of 64 + 64 + 62 + 32 -> 414 cycles; tout starts after it: 4096/32 + 2 */
    uint64_t tmm = 3 * 64 + 64 + 62 + 32, tout = 128 + 2;
    CHECK_MSG(c.unit[PM_UNIT_TENSOR].busy_cycles == tmm + tout, "busy %llu",
              (unsigned long long)c.unit[PM_UNIT_TENSOR].busy_cycles);
    pm_sim_destroy(sim);

    cfg.hazard_mode = PM_HAZARD_REPORT;
    sim = make_sim(&cfg);
    pm_status st = run(sim, "li r1, 4096\nli r2, 1\ndma.shape r1, r2, r2\nli r10, 0\nli r11, 0\ndma.ld r10, r11\n"
                            SHAPE(32, 32, 32) "li r4, 0\nli r5, 0\nli r6, 0x10000\ntmm.bf16 r4, r5, r6\nhalt\n",
                       &err);
    CHECK(st == PM_ERR_HAZARD);
    CHECK_MSG(strstr(err.message, "hazard: reads SRAM [0x0, 0x800)") != NULL, "%s", err.message);
    pm_sim_destroy(sim);

    /* Accumulator WAR across units does not exist (only the tensor unit
     * touches it), but tout after tmm to another tile need not wait. */
    sim = make_sim(&cfg);
    CHECK(run(sim, SHAPE(64, 64, 64) "li r4, 0\nli r5, 0\nli r6, 0x10000\ntmm.bf16 r4, r5, r6\n"
                                     "li r8, 0x8000\nli r7, 0x80000\ntout.f32 r7, r8\nhalt\n",
              &err) == PM_OK);
    pm_sim_counters(sim, &c);
    CHECK(c.unit[PM_UNIT_TENSOR].busy_cycles < tmm + tout);
    pm_sim_destroy(sim);
}

/* tout runs on the epilogue datapath beside the array: the next tile's tmm
 * does not wait for it, but a tmm rewriting the tile tout is still reading
 * does (WAR across the unit's two lanes). 64x64x64 on 32x32: a tmm streams
 * 4 folds x 64 = 256 cycles and finishes after 3*64 + 64 + 62 + 32 = 350;
 * tout takes 128 + 2. The first tmm issues at cycle 9. */
TEST(tout_overlaps_the_array_war_waits)
{
    const struct {
        const char *acc; /* accumulator tile of the second tmm */
        uint64_t end;
    } cases[] = {
        {"0x4000", 265 + 350}, /* another tile: starts when the array is free (9 + 256) */
        {"0", 489 + 350},      /* the tile tout reads ([359, 489)): waits for it */
    };
    for (int k = 0; k < 2; k++) {
        pm_config cfg = edge();
        pm_sim *sim = make_sim(&cfg);
        pm_error err;
        CHECK(run(sim, fmt(SHAPE(64, 64, 64) "li r4, 0\nli r8, %s\nli r5, 0\nli r6, 0x10000\nli r7, 0x80000\n"
                                             "tmm.bf16 r4, r5, r6\ntout.f32 r7, r4\ntmm.bf16 r8, r5, r6\nhalt\n",
                           cases[k].acc),
                  &err) == PM_OK);
        pm_counters c;
        pm_sim_counters(sim, &c);
        CHECK_MSG(c.cycles == cases[k].end, "%s: %llu cycles", cases[k].acc, (unsigned long long)c.cycles);
        CHECK(c.unit[PM_UNIT_TENSOR].busy_cycles == cases[k].end - 9);
        pm_sim_destroy(sim);
    }
}

TEST(energy_counts_macs)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    CHECK(run(sim, SHAPE(16, 32, 64) "li r4, 0\nli r5, 0\nli r6, 0x10000\ntmm.bf16 r4, r5, r6\nhalt\n", &err) == PM_OK);
    pm_counters c;
    pm_sim_counters(sim, &c);
    CHECK(c.tensor_macs == 16 * 32 * 64);
    double want = 16.0 * 32 * 64 * cfg.energy_tensor_pj_per_mac * 1e-12;
    CHECK(fabs(c.unit[PM_UNIT_TENSOR].compute_energy_j - want) <= 1e-9 * want);
    pm_sim_destroy(sim);
}

int main(void)
{
    RUN(every_weight_format_matches_reference);
    RUN(ragged_shapes_random);
    RUN(special_values_follow_fmaf);
    RUN(epilogue_scale_bias_activation);
    RUN(faults_name_operand_and_range);
    RUN(fault_writes_nothing_to_accumulator);
    RUN(bits_identical_across_thread_counts);
    RUN(address_registers_post_increment);
    RUN(os_timing_formula);
    RUN(ws_timing_formula_and_k_tile_wait);
    RUN(sram_port_bounds_the_array);
    RUN(hazards_on_accumulator_and_sram);
    RUN(tout_overlaps_the_array_war_waits);
    RUN(energy_counts_macs);
    return TEST_SUMMARY();
}
