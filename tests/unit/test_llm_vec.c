/* The LLM vector kernels (llm_vec.c): embed, RMSNorm, RoPE, SwiGLU, add and
 * top-k run on a simulated edge engine over random shapes and seeds and must
 * equal their pm_ref_* host references bit for bit; scratch ranges small
 * enough to force row chunks; one RoPE program reused at several positions;
 * top-k with ties, NaN, infinities and signed zeros (x restored afterwards);
 * the errors; and the instruction counts and cycles of the SmolLM2-135M
 * decode shapes. Independent float64 oracles live in
 * tests/oracle/test_llm_vec.py. */
#include "polymorph/llm_kernels.h"
#include "harness_sim.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float rng_float(uint64_t *s, float lo, float hi)
{
    return lo + (hi - lo) * (float)(pm_test_xorshift(s) * (1.0 / 4294967296.0));
}

static uint32_t rng_below(uint64_t *s, uint32_t n)
{
    return pm_test_xorshift(s) % n;
}

/* SRAM layout of the tests (edge: 2 MiB). */
enum {
    A_IN = 0x00000,     /* x / gu / logits: up to 512 KiB */
    A_OUT = 0x80000,    /* y: up to 256 KiB */
    A_POS = 0xC0000,    /* pos0 / ids */
    A_REC = 0xC1000,    /* top-k records */
    A_SCR = 0x100000,   /* scratch: up to 1 MiB */
};
#define D_TABLE 0x1000000ull
#define D_W 0x2000000ull

typedef struct run_stats {
    uint64_t cycles, instructions, code;
} run_stats;

static pm_builder *new_builder(void)
{
    pm_builder *b = NULL;
    pm_error err;
    if (pm_builder_create(&b, &err)) {
        fprintf(stderr, "builder: %s\n", err.message);
        exit(2);
    }
    pm_emit_llm_prologue(b);
    return b;
}

/* Halt, load, run. The program is kept in *prog when given (for reruns). */
static pm_status finish_run(pm_sim *sim, pm_builder *b, pm_program *keep, run_stats *rs, pm_error *err)
{
    pm_builder_emit(b, PM_OP_HALT, 0, 0, 0, 0, 0, 0);
    pm_program prog;
    pm_program_init(&prog);
    pm_status st = pm_builder_finish(b, &prog, err);
    pm_builder_destroy(b);
    if (!st) st = pm_sim_load_program(sim, &prog, 0, err);
    pm_sim_reset_counters(sim);
    if (!st) st = pm_sim_run(sim, NULL, err);
    if (rs) {
        pm_counters c;
        pm_sim_counters(sim, &c);
        rs->cycles = c.cycles;
        rs->instructions = c.instructions;
        rs->code = prog.code_count;
    }
    if (keep && !st) *keep = prog;
    else pm_program_free(&prog);
    return st;
}

static void sram_put(pm_sim *sim, uint64_t addr, const void *src, size_t n)
{
    pm_error err;
    if (pm_sim_sram_write(sim, 0, addr, src, n, &err)) {
        fprintf(stderr, "sram write: %s\n", err.message);
        exit(2);
    }
}

static void sram_get(pm_sim *sim, uint64_t addr, void *dst, size_t n)
{
    pm_error err;
    if (pm_sim_sram_read(sim, 0, addr, dst, n, &err)) {
        fprintf(stderr, "sram read: %s\n", err.message);
        exit(2);
    }
}

static void dram_put(pm_sim *sim, uint64_t addr, const void *src, size_t n)
{
    pm_error err;
    if (pm_sim_dram_write(sim, addr, src, n, &err)) {
        fprintf(stderr, "dram write: %s\n", err.message);
        exit(2);
    }
}

static float *random_floats(uint64_t *s, size_t n, float lo, float hi)
{
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = rng_float(s, lo, hi);
    return v;
}

/* ---------------- embed ---------------- */

static void embed_case(pm_sim *sim, const pm_config *cfg, uint64_t *s, uint32_t M, uint32_t D, pm_format fmt,
                       uint64_t scratch)
{
    uint32_t vocab = 300;
    size_t row;
    CHECK(pm_format_bytes(fmt, D, &row));
    float *src = random_floats(s, (size_t)vocab * D, -2.0f, 2.0f);
    uint8_t *emb = malloc(row * vocab);
    pm_error err;
    CHECK(pm_format_encode(fmt, src, (size_t)vocab * D, emb, &err) == PM_OK);
    dram_put(sim, D_W, emb, row * vocab);
    int32_t *ids = malloc(M * sizeof *ids);
    for (uint32_t i = 0; i < M; i++) ids[i] = (int32_t)rng_below(s, vocab);
    if (M > 1) ids[M - 1] = ids[0]; /* a repeated token */
    ids[0] = (int32_t)(vocab - 1);
    sram_put(sim, A_POS, ids, M * 4);
    pm_builder *b = new_builder();
    pm_status st = pm_emit_embed(b, cfg, M, D, fmt, D_W, vocab, A_POS, A_IN, A_SCR, scratch, &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    if (st) {
        pm_builder_destroy(b);
    } else {
        st = finish_run(sim, b, NULL, NULL, &err);
        CHECK_MSG(st == PM_OK, "M %u D %u %s: %s", M, D, pm_format_get(fmt)->name, err.message);
        float *dev = malloc((size_t)M * D * 4), *ref = malloc((size_t)M * D * 4);
        sram_get(sim, A_IN, dev, (size_t)M * D * 4);
        CHECK(pm_ref_embed(M, D, fmt, emb, ids, ref, &err) == PM_OK);
        CHECK_MSG(!memcmp(dev, ref, (size_t)M * D * 4), "embed M %u D %u %s scratch %llu", M, D,
                  pm_format_get(fmt)->name, (unsigned long long)scratch);
        /* the reference itself: a decoded row is the encoded source row */
        float *dec = malloc((size_t)D * 4);
        CHECK(pm_format_decode(fmt, emb + (size_t)ids[M - 1] * row, D, dec, &err) == PM_OK);
        CHECK(!memcmp(dec, ref + (size_t)(M - 1) * D, (size_t)D * 4));
        free(dec);
        free(dev);
        free(ref);
    }
    free(ids);
    free(emb);
    free(src);
}

TEST(test_embed)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    uint64_t s = 0x1234567;
    static const uint32_t Ms[] = {1, 3, 32, 64};
    static const uint32_t Ds[] = {64, 576};
    static const pm_format fmts[] = {PM_FMT_Q8_0, PM_FMT_Q4_1, PM_FMT_BF16, PM_FMT_F32};
    for (size_t m = 0; m < 4; m++)
        for (size_t d = 0; d < 2; d++)
            for (size_t f = 0; f < 4; f++) {
                /* generous, one slot, two slots */
                uint64_t scratches[3] = {1 << 20, 0, 0};
                size_t row;
                pm_format_bytes(fmts[f], Ds[d], &row);
                scratches[1] = row;
                scratches[2] = 2 * ((row + 255) / 256 * 256);
                for (int k = 0; k < 3; k++) embed_case(sim, &cfg, &s, Ms[m], Ds[d], fmts[f], scratches[k]);
            }
    pm_sim_destroy(sim);
}

TEST(test_embed_bad_id_faults)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    static const int32_t bad[] = {300, -1, 0x7fffffff};
    for (int i = 0; i < 3; i++) {
        int32_t ids[2] = {5, bad[i]};
        sram_put(sim, A_POS, ids, sizeof ids);
        pm_builder *b = new_builder();
        pm_error err;
        CHECK(pm_emit_embed(b, &cfg, 2, 64, PM_FMT_F32, D_W, 300, A_POS, A_IN, A_SCR, 4096, &err) == PM_OK);
        pm_status st = finish_run(sim, b, NULL, NULL, &err);
        CHECK_MSG(st == PM_ERR_FAULT && strstr(err.message, "dma.ld") && strstr(err.message, "DRAM read"),
                  "id %d: %s", bad[i], err.message);
    }
    pm_sim_destroy(sim);
}

/* ---------------- rmsnorm ---------------- */

static void rmsnorm_case(pm_sim *sim, const pm_config *cfg, uint64_t *s, uint32_t M, uint32_t D, pm_format yf,
                         uint64_t scratch, bool in_place)
{
    float *x = random_floats(s, (size_t)M * D, -3.0f, 3.0f);
    float *w = random_floats(s, D, 0.5f, 1.5f);
    float eps = 1e-5f;
    if (D >= 4) x[1] = 0.0f, x[2] = -0.0f;
    sram_put(sim, A_IN, x, (size_t)M * D * 4);
    dram_put(sim, D_W, w, (size_t)D * 4);
    uint64_t y_addr = in_place ? A_IN : A_OUT;
    size_t ybytes = (size_t)M * D * (yf == PM_FMT_F32 ? 4 : 2);
    pm_builder *b = new_builder();
    pm_error err;
    pm_status st = pm_emit_rmsnorm(b, cfg, M, D, A_IN, D_W, eps, y_addr, yf, A_SCR, scratch, &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    if (st) {
        pm_builder_destroy(b);
    } else {
        st = finish_run(sim, b, NULL, NULL, &err);
        CHECK_MSG(st == PM_OK, "%s", err.message);
        uint8_t *dev = malloc(ybytes), *ref = malloc(ybytes);
        sram_get(sim, y_addr, dev, ybytes);
        CHECK(pm_ref_rmsnorm(M, D, x, w, eps, ref, yf, &err) == PM_OK);
        CHECK_MSG(!memcmp(dev, ref, ybytes), "rmsnorm M %u D %u %s scratch %llu lanes %u", M, D,
                  pm_format_get(yf)->name, (unsigned long long)scratch, cfg->vector_lanes);
        free(dev);
        free(ref);
    }
    free(x);
    free(w);
}

TEST(test_rmsnorm)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    uint64_t s = 0xabcdef;
    static const uint32_t Ms[] = {1, 3, 32, 64};
    static const uint32_t Ds[] = {64, 576, 2048, 1, 33, 100, 1000, 1056};
    for (size_t m = 0; m < 4; m++)
        for (size_t d = 0; d < sizeof Ds / sizeof Ds[0]; d++) {
            if ((uint64_t)Ms[m] * Ds[d] > 64 * 1024) continue;
            rmsnorm_case(sim, &cfg, &s, Ms[m], Ds[d], PM_FMT_BF16, 1 << 20, false);
            rmsnorm_case(sim, &cfg, &s, Ms[m], Ds[d], PM_FMT_F32, 1 << 20, false);
            /* a scratch of about 2.5 rows: chunks of 1-2 rows */
            rmsnorm_case(sim, &cfg, &s, Ms[m], Ds[d], PM_FMT_BF16, (uint64_t)Ds[d] * 4 * 2 + 2048 + Ds[d] * 2,
                         false);
            rmsnorm_case(sim, &cfg, &s, Ms[m], Ds[d], PM_FMT_F32, 1 << 20, true);
        }
    pm_sim_destroy(sim);
}

/* The sums follow fixed 32-element trees, so 16, 32 and 64 lanes give the
 * same bits; 8 lanes cannot and are refused. */
TEST(test_rmsnorm_lanes)
{
    uint64_t s = 0x5eed;
    static const uint32_t lanes[] = {16, 64, 48};
    for (int i = 0; i < 3; i++) {
        pm_config cfg = edge();
        cfg.vector_lanes = lanes[i];
        cfg.lfu_count = lanes[i];
        pm_sim *sim = make_sim(&cfg);
        rmsnorm_case(sim, &cfg, &s, 3, 576, PM_FMT_F32, 1 << 20, false);
        rmsnorm_case(sim, &cfg, &s, 2, 1000, PM_FMT_BF16, 1 << 20, false);
        pm_sim_destroy(sim);
    }
    pm_config cfg = edge();
    cfg.vector_lanes = 8;
    pm_builder *b = new_builder();
    pm_error err;
    CHECK(pm_emit_rmsnorm(b, &cfg, 1, 64, A_IN, D_W, 1e-5f, A_OUT, PM_FMT_F32, A_SCR, 1 << 20, &err) ==
          PM_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "vector.lanes = 8") != NULL);
    pm_builder_destroy(b);
}

/* ---------------- rope ---------------- */

static void rope_case(pm_sim *sim, const pm_config *cfg, uint64_t *s, uint32_t M, uint32_t H, uint32_t hd,
                      uint32_t row_elems, uint32_t max_ctx, uint32_t pos0, uint64_t scratch)
{
    uint32_t half = hd / 2;
    float *table = malloc((size_t)2 * max_ctx * half * 4);
    pm_rope_table(10000.0f + (float)rng_below(s, 90000), hd, max_ctx, NULL, table);
    dram_put(sim, D_TABLE, table, (size_t)2 * max_ctx * half * 4);
    size_t n = (size_t)M * row_elems;
    float *x = random_floats(s, n, -4.0f, 4.0f);
    uint64_t xa = A_IN + 64 * rng_below(s, 4); /* every bank phase of the rows */
    sram_put(sim, xa, x, n * 4);
    sram_put(sim, A_POS, &pos0, 4);
    pm_builder *b = new_builder();
    pm_error err;
    pm_status st = pm_emit_rope(b, cfg, M, H, hd, xa, row_elems, A_POS, D_TABLE, max_ctx, A_SCR, scratch, &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    if (st) {
        pm_builder_destroy(b);
    } else {
        st = finish_run(sim, b, NULL, NULL, &err);
        CHECK_MSG(st == PM_OK, "%s", err.message);
        float *dev = malloc(n * 4);
        sram_get(sim, xa, dev, n * 4);
        CHECK(pm_ref_rope(M, H, hd, x, row_elems, pos0, table, max_ctx, &err) == PM_OK);
        CHECK_MSG(!memcmp(dev, x, n * 4), "rope M %u H %u hd %u row %u pos %u/%u scratch %llu x 0x%llx", M, H, hd,
                  row_elems, pos0, max_ctx, (unsigned long long)scratch, (unsigned long long)xa);
        free(dev);
    }
    free(x);
    free(table);
}

TEST(test_rope)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    uint64_t s = 0x77;
    static const uint32_t Ms[] = {1, 3, 32, 64};
    static const uint32_t Hs[] = {1, 3, 9, 12, 32};
    static const uint32_t hds[] = {64, 32, 2, 128};
    for (size_t m = 0; m < 4; m++)
        for (size_t h = 0; h < 5; h++)
            for (size_t d = 0; d < 4; d++) {
                uint32_t M = Ms[m], H = Hs[h], hd = hds[d];
                if ((uint64_t)M * H * hd > 80000) continue;
                uint32_t max_ctx = 200;
                uint32_t row = H * hd + (m % 2 ? 3 * hd : 0); /* q|k then v: a wider row */
                rope_case(sim, &cfg, &s, M, H, hd, row, max_ctx, 0, 1 << 20);
                rope_case(sim, &cfg, &s, M, H, hd, row, max_ctx, max_ctx - M, 1 << 20);
                /* room for one to three rows at a time (a row slot is 256 or 512 bytes) */
                rope_case(sim, &cfg, &s, M, H, hd, row, max_ctx, rng_below(&s, max_ctx - M + 1), 2564);
            }
    pm_sim_destroy(sim);
}

/* One program, several positions: the host writes pos0 and reruns. A
 * position past the table faults instead of reading sin as cos. */
TEST(test_rope_reuse_and_bounds)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    uint32_t M = 1, H = 12, hd = 64, max_ctx = 2048, half = 32;
    float *table = malloc((size_t)2 * max_ctx * half * 4);
    pm_rope_table(100000.0f, hd, max_ctx, NULL, table);
    dram_put(sim, D_TABLE, table, (size_t)2 * max_ctx * half * 4);
    pm_builder *b = new_builder();
    pm_error err;
    CHECK(pm_emit_rope(b, &cfg, M, H, hd, A_IN, 960, A_POS, D_TABLE, max_ctx, A_SCR, 65536, &err) == PM_OK);
    pm_builder_emit(b, PM_OP_HALT, 0, 0, 0, 0, 0, 0);
    pm_program prog;
    pm_program_init(&prog);
    CHECK(pm_builder_finish(b, &prog, &err) == PM_OK);
    pm_builder_destroy(b);
    CHECK(pm_sim_load_program(sim, &prog, 0, &err) == PM_OK);
    uint64_t s = 0x99;
    static const uint32_t positions[] = {0, 1, 7, 1000, 2047};
    for (int i = 0; i < 5; i++) {
        float *x = random_floats(&s, 960, -2.0f, 2.0f);
        sram_put(sim, A_IN, x, 960 * 4);
        sram_put(sim, A_POS, &positions[i], 4);
        CHECK_MSG(pm_sim_run(sim, NULL, &err) == PM_OK, "%s", err.message);
        float dev[960];
        sram_get(sim, A_IN, dev, sizeof dev);
        CHECK(pm_ref_rope(M, H, hd, x, 960, positions[i], table, max_ctx, &err) == PM_OK);
        CHECK_MSG(!memcmp(dev, x, sizeof dev), "pos %u", positions[i]);
        free(x);
    }
    static const uint32_t bad[] = {2048, 0x80000000u, 0xffffffffu};
    for (int i = 0; i < 3; i++) {
        sram_put(sim, A_POS, &bad[i], 4);
        pm_status st = pm_sim_run(sim, NULL, &err);
        CHECK_MSG(st == PM_ERR_FAULT && strstr(err.message, "dma.ld"), "pos %u: status %d: %s", bad[i], (int)st, err.message);
    }
    pm_program_free(&prog);
    free(table);
    pm_sim_destroy(sim);
}

TEST(test_rope_permutation)
{
    uint32_t perm[2 * 8];
    pm_rope_permute_rows(2, 8, perm);
    static const uint32_t want[16] = {0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15};
    CHECK(!memcmp(perm, want, sizeof want));
    /* theta_i = base^(-2i/hd): position 1, pair 1 of hd 4 with base 100 is 1/10 */
    float table[2 * 3 * 2];
    pm_rope_table(100.0f, 4, 3, NULL, table);
    CHECK(table[0] == 1.0f && table[1] == 1.0f && table[6] == 0.0f);
    CHECK(table[3] == (float)cos(0.1) && table[6 + 3] == (float)sin(0.1));
    CHECK(table[4] == (float)cos(2.0) && table[6 + 4] == (float)sin(2.0));
    const float ff[2] = {1.0f, 4.0f};
    pm_rope_table(100.0f, 4, 3, ff, table);
    CHECK(table[3] == (float)cos(0.025) && table[6 + 5] == (float)sin(0.05));
}

/* ---------------- swiglu ---------------- */

static void swiglu_case(pm_sim *sim, const pm_config *cfg, uint64_t *s, uint32_t M, uint32_t F, pm_format yf,
                        uint64_t scratch)
{
    size_t n = (size_t)M * 2 * F;
    float *gu = random_floats(s, n, -8.0f, 8.0f);
    gu[0] = -100.0f, gu[1] = 0.0f;
    sram_put(sim, A_IN, gu, n * 4);
    size_t ybytes = (size_t)M * F * (yf == PM_FMT_F32 ? 4 : 2);
    pm_builder *b = new_builder();
    pm_error err;
    pm_status st = pm_emit_swiglu(b, cfg, M, F, A_IN, A_OUT, yf, A_SCR, scratch, &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    if (st) {
        pm_builder_destroy(b);
    } else {
        st = finish_run(sim, b, NULL, NULL, &err);
        CHECK_MSG(st == PM_OK, "%s", err.message);
        uint8_t *dev = malloc(ybytes), *ref = malloc(ybytes);
        sram_get(sim, A_OUT, dev, ybytes);
        CHECK(pm_ref_swiglu(M, F, gu, ref, yf, &err) == PM_OK);
        CHECK_MSG(!memcmp(dev, ref, ybytes), "swiglu M %u F %u %s scratch %llu", M, F, pm_format_get(yf)->name,
                  (unsigned long long)scratch);
        free(dev);
        free(ref);
    }
    free(gu);
}

TEST(test_swiglu)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    uint64_t s = 0x5151;
    static const uint32_t Ms[] = {1, 3, 32, 64};
    static const uint32_t Fs[] = {1536, 64, 100, 1};
    for (size_t m = 0; m < 4; m++)
        for (size_t f = 0; f < 4; f++) {
            if ((uint64_t)Ms[m] * Fs[f] > 64 * 1024) continue;
            swiglu_case(sim, &cfg, &s, Ms[m], Fs[f], PM_FMT_BF16, 1 << 20);
            swiglu_case(sim, &cfg, &s, Ms[m], Fs[f], PM_FMT_F32, 0);
            swiglu_case(sim, &cfg, &s, Ms[m], Fs[f], PM_FMT_BF16, (uint64_t)Fs[f] * 4 * 2 + 4);
        }
    pm_sim_destroy(sim);
}

/* ---------------- add ---------------- */

TEST(test_add)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    uint64_t s = 0xadd;
    static const uint64_t ns[] = {1, 576, 64 * 576};
    for (int i = 0; i < 3; i++) {
        uint64_t n = ns[i];
        float *a = random_floats(&s, n, -10.0f, 10.0f), *bb = random_floats(&s, n, -10.0f, 10.0f);
        sram_put(sim, A_IN, a, n * 4);
        sram_put(sim, A_OUT, bb, n * 4);
        pm_builder *b = new_builder();
        pm_error err;
        CHECK(pm_emit_add(b, &cfg, n, A_IN, A_OUT, A_IN, &err) == PM_OK); /* in place, as the residual */
        CHECK_MSG(finish_run(sim, b, NULL, NULL, &err) == PM_OK, "%s", err.message);
        float *dev = malloc(n * 4);
        sram_get(sim, A_IN, dev, n * 4);
        int bad = 0;
        for (uint64_t j = 0; j < n; j++) {
            float want = a[j] + bb[j];
            bad += memcmp(&dev[j], &want, 4) != 0;
        }
        CHECK_MSG(bad == 0, "add n %llu: %d differ", (unsigned long long)n, bad);
        free(dev);
        free(a);
        free(bb);
    }
    pm_sim_destroy(sim);
}

/* ---------------- top-k ---------------- */

static void topk_case(pm_sim *sim, const pm_config *cfg, const float *x, uint32_t n, uint32_t k, const char *what)
{
    sram_put(sim, A_IN, x, (size_t)n * 4);
    pm_builder *b = new_builder();
    pm_error err;
    uint64_t scratch = pm_topk_scratch_bytes(n, k);
    pm_status st = pm_emit_topk(b, cfg, n, A_IN, k, A_REC, A_SCR, scratch, &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    if (st) {
        pm_builder_destroy(b);
        return;
    }
    st = finish_run(sim, b, NULL, NULL, &err);
    CHECK_MSG(st == PM_OK, "%s: %s", what, err.message);
    uint32_t rec[2 * 64];
    sram_get(sim, A_REC, rec, (size_t)k * 8);
    int32_t ids[64];
    float vals[64];
    CHECK(pm_ref_topk(n, x, k, ids, vals, &err) == PM_OK);
    int bad = 0;
    for (uint32_t r = 0; r < k; r++)
        bad += (int32_t)rec[2 * r] != ids[r] || rec[2 * r + 1] != pm_f32_bits(vals[r]);
    CHECK_MSG(bad == 0, "topk %s n %u k %u: %d records differ (first: dev %d ref %d)", what, n, k, bad,
              (int32_t)rec[0], ids[0]);
    /* x is restored */
    float *after = malloc((size_t)n * 4);
    sram_get(sim, A_IN, after, (size_t)n * 4);
    CHECK_MSG(!memcmp(after, x, (size_t)n * 4), "topk %s n %u k %u: x changed", what, n, k);
    free(after);
}

TEST(test_topk)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    uint64_t s = 0x70b;
    static const uint32_t ns[] = {1, 5, 31, 32, 33, 1000, 1025, 49152};
    static const uint32_t ks[] = {1, 5, 40, 64};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        uint32_t n = ns[i];
        float *x = malloc((size_t)n * 4);
        for (int kind = 0; kind < 4; kind++) {
            for (uint32_t j = 0; j < n; j++) {
                switch (kind) {
                case 0: x[j] = rng_float(&s, -20.0f, 20.0f); break;
                case 1: x[j] = (float)((int)rng_below(&s, 7) - 3); break;          /* many ties */
                case 2: { /* specials */
                    uint32_t r = rng_below(&s, 10);
                    x[j] = r == 0 ? NAN : r == 1 ? -INFINITY : r == 2 ? 0.0f : r == 3 ? -0.0f
                         : r == 4 ? INFINITY : (float)((int)rng_below(&s, 5) - 2);
                    break;
                }
                default: x[j] = rng_below(&s, 4) == 0 ? -INFINITY : NAN; break;  /* few winners */
                }
            }
            for (size_t kk = 0; kk < 4; kk++)
                if (ks[kk] <= n) {
                    char what[32];
                    snprintf(what, sizeof what, "kind %d", kind);
                    topk_case(sim, &cfg, x, n, ks[kk], what);
                }
        }
        free(x);
    }
    /* all NaN: no winner at all */
    float nans[40];
    for (int j = 0; j < 40; j++) nans[j] = NAN;
    topk_case(sim, &cfg, nans, 40, 3, "all NaN");
    /* +0 ranks above -0, even when -0 comes first */
    float zeros[4] = {-0.0f, -1.0f, 0.0f, -0.0f};
    topk_case(sim, &cfg, zeros, 4, 4, "zeros");
    int32_t ids[4];
    float vals[4];
    pm_error err;
    CHECK(pm_ref_topk(4, zeros, 4, ids, vals, &err) == PM_OK);
    CHECK(ids[0] == 2 && ids[1] == 0 && ids[2] == 3 && ids[3] == 1);
    CHECK(pm_ref_topk(40, nans, 2, ids, vals, &err) == PM_OK);
    CHECK(ids[0] == -1 && isnan(vals[0]));
    pm_sim_destroy(sim);
}

/* ---------------- composition ---------------- */

/* The kernels of a layer in ONE program, every one on the same small
 * scratch range, each consuming the previous one's output; only the
 * interlock orders them. The host chains the references the same way. */
TEST(test_composed_on_shared_scratch)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    uint64_t s = 0xc0c0;
    enum { M = 3, D = 128, H = 2, HD = 64, F = 64, V = 300, CTX = 50 };
    uint64_t scratch = 2048; /* row chunks in rmsnorm and rope */
    /* SRAM: ids, pos, x (f32 M x D), xn (f32), gu (f32 M x 2F), act (f32), records */
    const uint64_t ids_a = A_POS, pos_a = A_POS + 0x100, x_a = A_IN, xn_a = A_IN + 0x4000, gu_a = A_IN + 0x8000,
                   act_a = A_IN + 0xC000;
    float *emb = random_floats(&s, (size_t)V * D, -1.0f, 1.0f);
    float *w = random_floats(&s, D, 0.5f, 1.5f);
    float *table = malloc((size_t)2 * CTX * (HD / 2) * 4);
    pm_rope_table(10000.0f, HD, CTX, NULL, table);
    dram_put(sim, D_W, emb, (size_t)V * D * 4);
    dram_put(sim, D_W + 0x100000, w, (size_t)D * 4);
    dram_put(sim, D_TABLE, table, (size_t)2 * CTX * (HD / 2) * 4);
    int32_t ids[M] = {7, 299, 7};
    uint32_t pos0 = 40;
    sram_put(sim, ids_a, ids, sizeof ids);
    sram_put(sim, pos_a, &pos0, 4);
    float *gu = random_floats(&s, (size_t)M * 2 * F, -4.0f, 4.0f);
    sram_put(sim, gu_a, gu, (size_t)M * 2 * F * 4);

    pm_builder *b = new_builder();
    pm_error err;
    pm_status st = pm_emit_embed(b, &cfg, M, D, PM_FMT_F32, D_W, V, ids_a, x_a, A_SCR, scratch, &err);
    if (!st) st = pm_emit_rmsnorm(b, &cfg, M, D, x_a, D_W + 0x100000, 1e-5f, xn_a, PM_FMT_F32, A_SCR, scratch, &err);
    if (!st) st = pm_emit_rope(b, &cfg, M, H, HD, xn_a, D, pos_a, D_TABLE, CTX, A_SCR, scratch, &err);
    if (!st) st = pm_emit_add(b, &cfg, (uint64_t)M * D, x_a, xn_a, x_a, &err);
    if (!st) st = pm_emit_swiglu(b, &cfg, M, F, gu_a, act_a, PM_FMT_BF16, A_SCR, scratch, &err);
    if (!st) st = pm_emit_topk(b, &cfg, M * D, x_a, 5, A_REC, A_SCR, scratch, &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    if (st) {
        pm_builder_destroy(b);
    } else {
        CHECK_MSG(finish_run(sim, b, NULL, NULL, &err) == PM_OK, "%s", err.message);
        float x[M * D], xn[M * D];
        uint16_t act[M * F];
        int32_t rid[5];
        float rval[5];
        CHECK(pm_ref_embed(M, D, PM_FMT_F32, emb, ids, x, &err) == PM_OK);
        CHECK(pm_ref_rmsnorm(M, D, x, w, 1e-5f, xn, PM_FMT_F32, &err) == PM_OK);
        CHECK(pm_ref_rope(M, H, HD, xn, D, pos0, table, CTX, &err) == PM_OK);
        for (int i = 0; i < M * D; i++) x[i] = x[i] + xn[i];
        CHECK(pm_ref_swiglu(M, F, gu, act, PM_FMT_BF16, &err) == PM_OK);
        CHECK(pm_ref_topk(M * D, x, 5, rid, rval, &err) == PM_OK);
        float dx[M * D], dxn[M * D];
        uint16_t dact[M * F];
        uint32_t rec[10];
        sram_get(sim, x_a, dx, sizeof dx);
        sram_get(sim, xn_a, dxn, sizeof dxn);
        sram_get(sim, act_a, dact, sizeof dact);
        sram_get(sim, A_REC, rec, sizeof rec);
        CHECK(!memcmp(dx, x, sizeof x));
        CHECK(!memcmp(dxn, xn, sizeof xn));
        CHECK(!memcmp(dact, act, sizeof act));
        for (int r = 0; r < 5; r++) CHECK((int32_t)rec[2 * r] == rid[r] && rec[2 * r + 1] == pm_f32_bits(rval[r]));
    }
    free(emb);
    free(w);
    free(table);
    free(gu);
    pm_sim_destroy(sim);
}

/* ---------------- random arguments ---------------- */

/* Random shapes, addresses and scratch sizes, many of them invalid: an
 * emitter either refuses with a message or emits a program that runs (or
 * stops with an engine fault: a bad id or position); nothing crashes, and a
 * refusal emits nothing. */
TEST(test_random_arguments)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    uint64_t s = 0xfeed;
    pm_run_options opts = {.max_instructions = 2000000, .trace_path = NULL};
    int emitted = 0, refused = 0;
    for (int it = 0; it < 300; it++) {
        /* about half of each argument drawn from the valid layout */
        bool wild = rng_below(&s, 4) == 0;
        uint32_t M = 1 + rng_below(&s, wild ? 200 : 40), D = 1 + rng_below(&s, wild ? 5000 : 1200);
        uint64_t a = wild ? (uint64_t)rng_below(&s, 1u << 22) & ~3ull : A_IN;
        uint64_t c = rng_below(&s, 3) == 0 ? (uint64_t)rng_below(&s, 1u << 22) & ~3ull
                     : (it % 6 == 3 || it % 6 == 1) ? A_OUT : A_POS;
        uint64_t scr = rng_below(&s, 3) == 0 ? (uint64_t)rng_below(&s, 1u << 22) & ~3ull : A_SCR;
        uint64_t scr_bytes = rng_below(&s, 2) ? rng_below(&s, 1u << 16) : 1u << 20;
        pm_format f = rng_below(&s, 2) ? (pm_format)rng_below(&s, PM_FMT_COUNT + 1) : PM_FMT_BF16;
        pm_builder *b = new_builder();
        pm_error err;
        pm_status st;
        switch (it % 6) {
        case 0: st = pm_emit_embed(b, &cfg, M, D, f, D_W, 1 + rng_below(&s, 1000), c, a, scr, scr_bytes, &err); break;
        case 1: st = pm_emit_rmsnorm(b, &cfg, M, D, a, D_W, 1e-6f, c, f, scr, scr_bytes, &err); break;
        case 2:
            st = pm_emit_rope(b, &cfg, M, 1 + rng_below(&s, 20), 2 * rng_below(&s, 70), a, D, c, D_TABLE,
                              1 + rng_below(&s, 300), scr, scr_bytes, &err);
            break;
        case 3: st = pm_emit_swiglu(b, &cfg, M, D, a, c, f, scr, scr_bytes, &err); break;
        case 4: st = pm_emit_add(b, &cfg, (uint64_t)M * D, a, c, scr, &err); break;
        default: st = pm_emit_topk(b, &cfg, D * M, a, 1 + rng_below(&s, 70), c, scr, scr_bytes, &err); break;
        }
        if (st) {
            refused++;
            CHECK_MSG(err.message[0] != 0 && pm_builder_pc(b) == PM_LLM_SLOTS, "case %d: %s", it % 6, err.message);
            pm_builder_destroy(b);
            continue;
        }
        emitted++;
        pm_builder_emit(b, PM_OP_HALT, 0, 0, 0, 0, 0, 0);
        pm_program prog;
        pm_program_init(&prog);
        st = pm_builder_finish(b, &prog, &err);
        pm_builder_destroy(b);
        CHECK_MSG(st == PM_OK, "%s", err.message);
        if (!st) st = pm_sim_load_program(sim, &prog, 0, &err);
        if (!st) st = pm_sim_run(sim, &opts, &err);
        CHECK_MSG(st == PM_OK || (st == PM_ERR_FAULT && strstr(err.message, "dma.ld")), "case %d: %s", it % 6,
                  err.message);
        pm_program_free(&prog);
    }
    CHECK_MSG(emitted > 60 && refused > 60, "emitted %d, refused %d", emitted, refused);
    printf("  random arguments: %d programs emitted and run, %d refused\n", emitted, refused);
    pm_sim_destroy(sim);
}

/* ---------------- errors ---------------- */

TEST(test_errors)
{
    pm_config cfg = edge();
    pm_builder *b = new_builder();
    pm_error err;
#define EXPECT_ERR(call, text)                                                              \
    do {                                                                                    \
        pm_status st_ = (call);                                                             \
        CHECK_MSG(st_ != PM_OK && strstr(err.message, text), "%s -> %s", #call, err.message); \
    } while (0)
    EXPECT_ERR(pm_emit_rmsnorm(b, &cfg, 1, 0, A_IN, D_W, 1e-5f, A_OUT, PM_FMT_BF16, A_SCR, 65536, &err),
               "rmsnorm: M = 1, D = 0");
    EXPECT_ERR(pm_emit_rmsnorm(b, &cfg, 1, 576, A_IN, D_W, 1e-5f, A_OUT, PM_FMT_BF16, A_SCR, 100, &err),
               "rmsnorm: scratch_bytes = 100");
    EXPECT_ERR(pm_emit_rmsnorm(b, &cfg, 1, 576, A_IN, D_W, 1e-5f, A_OUT, PM_FMT_Q8_0, A_SCR, 65536, &err),
               "y_fmt");
    EXPECT_ERR(pm_emit_rmsnorm(b, &cfg, 1, 576, 0x1fff00, D_W, 1e-5f, A_OUT, PM_FMT_BF16, A_SCR, 65536, &err),
               "x_sram");
    EXPECT_ERR(pm_emit_rmsnorm(b, &cfg, 4, 576, A_IN, D_W, 1e-5f, A_IN + 4, PM_FMT_F32, A_SCR, 65536, &err),
               "overlaps");
    EXPECT_ERR(pm_emit_rmsnorm(b, &cfg, 1, 576, A_IN, D_W, 1e-5f, A_OUT, PM_FMT_BF16, A_IN, 65536, &err),
               "scratch");
    EXPECT_ERR(pm_emit_rope(b, &cfg, 1, 9, 63, A_IN, 960, A_POS, D_TABLE, 100, A_SCR, 65536, &err),
               "head_dim = 63 is odd");
    EXPECT_ERR(pm_emit_rope(b, &cfg, 1, 16, 64, A_IN, 960, A_POS, D_TABLE, 100, A_SCR, 65536, &err), "row_elems");
    EXPECT_ERR(pm_emit_rope(b, &cfg, 1, 12, 64, A_IN, 960, A_POS, D_TABLE, 100, A_SCR, 100, &err),
               "rope: scratch_bytes = 100");
    EXPECT_ERR(pm_emit_rope(b, &cfg, 1, 12, 64, A_IN, 960, A_POS + 2, D_TABLE, 100, A_SCR, 65536, &err),
               "pos_sram");
    EXPECT_ERR(pm_emit_rope(b, &cfg, 1, 12, 64, A_IN, 960, A_POS, 0xfffffff0ull, 100, A_SCR, 65536, &err),
               "table_dram");
    EXPECT_ERR(pm_emit_rope(b, &cfg, 101, 1, 64, A_IN, 64, A_POS, D_TABLE, 100, A_SCR, 65536, &err), "max_ctx");
    EXPECT_ERR(pm_emit_swiglu(b, &cfg, 1, 1536, A_IN, A_OUT, PM_FMT_BF16, A_SCR, 1000, &err),
               "swiglu: scratch_bytes = 1000");
    EXPECT_ERR(pm_emit_swiglu(b, &cfg, 2, 1536, A_IN, A_IN + 4096, PM_FMT_F32, A_SCR, 0, &err), "overlaps");
    EXPECT_ERR(pm_emit_embed(b, &cfg, 1, 100, PM_FMT_Q8_0, D_W, 10, A_POS, A_IN, A_SCR, 65536, &err),
               "D = 100 is not a whole number of q8_0");
    EXPECT_ERR(pm_emit_embed(b, &cfg, 1, 576, PM_FMT_Q8_0, D_W, 10, A_POS, A_IN, A_SCR, 600, &err),
               "embed: scratch_bytes = 600");
    EXPECT_ERR(pm_emit_embed(b, &cfg, 1, 576, PM_FMT_F32, 0xffff0000ull, 49152, A_POS, A_IN, A_SCR, 65536, &err),
               "emb_dram");
    EXPECT_ERR(pm_emit_embed(b, &cfg, 1, 576, PM_FMT_NVFP4, D_W, 10, A_POS, A_IN, A_SCR, 65536, &err),
               "embed: emb_fmt nvfp4 keeps one tensor scale");
    EXPECT_ERR(pm_emit_add(b, &cfg, 0, A_IN, A_OUT, A_IN, &err), "add: n = 0");
    EXPECT_ERR(pm_emit_add(b, &cfg, 1 << 20, A_IN, A_OUT, A_IN, &err), "outside SRAM");
    EXPECT_ERR(pm_emit_topk(b, &cfg, 10, A_IN, 11, A_REC, A_SCR, 4096, &err), "k = 11");
    EXPECT_ERR(pm_emit_topk(b, &cfg, 49152, A_IN, 1, A_REC, A_SCR, 100, &err), "topk: scratch_bytes = 100");
    EXPECT_ERR(pm_emit_topk(b, &cfg, 49152, A_IN + 2, 1, A_REC, A_SCR, 65536, &err), "aligned");
    pm_config rep = cfg;
    rep.hazard_mode = PM_HAZARD_REPORT;
    EXPECT_ERR(pm_emit_add(b, &rep, 4, A_IN, A_OUT, A_IN, &err), "add: llm kernels: control.hazards");
    CHECK(pm_ref_rope(1, 1, 64, NULL, 64, 99, NULL, 99, &err) == PM_ERR_INVALID);
    CHECK(pm_ref_topk(3, NULL, 4, NULL, NULL, &err) == PM_ERR_INVALID);
    /* nothing above emitted a word: every check comes before the first */
    CHECK(pm_builder_pc(b) == PM_LLM_SLOTS);
    pm_builder_destroy(b);
}

/* ---------------- the decode shapes: instruction counts and cycles ---------------- */

static pm_builder *fenced_builder(void)
{
    pm_builder *b = new_builder();
    pm_builder_emit(b, PM_OP_FENCE, PM_UNIT_MASK_ALL, 0, 0, 0, 0, 0);
    return b;
}

TEST(test_decode_shapes_report)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    uint64_t s = 0xdec0de;
    pm_error err;
    run_stats rs[6];
    const char *names[6] = {"embed (Q8_0, D 576)", "rmsnorm (D 576, bf16 out)", "rope (9+3 heads x 64)",
                            "swiglu (F 1536, bf16 out)", "add (576)", "topk k=1 (n 49152)"};
    uint32_t D = 576, F = 1536, V = 49152;
    float *big = random_floats(&s, (size_t)V, -10.0f, 10.0f);
    int32_t id = 1234;
    uint32_t pos = 100;
    sram_put(sim, A_POS, &id, 4);
    size_t row;
    pm_format_bytes(PM_FMT_Q8_0, D, &row);
    uint8_t *emb = calloc(row, 2000);
    dram_put(sim, D_W, emb, row * 2000);
    free(emb);
    /* Each kernel starts after a fence behind the prologue's four lfu.cfg;
     * prologue + fence + halt alone are subtracted. */
    run_stats base;
    CHECK(finish_run(sim, fenced_builder(), NULL, &base, &err) == PM_OK);
    printf("  (prologue + fence + halt alone: %llu cycles, subtracted)\n", (unsigned long long)base.cycles);
    for (int i = 0; i < 6; i++) {
        pm_builder *b = fenced_builder();
        pm_status st = PM_OK;
        sram_put(sim, A_IN, big, (size_t)V * 4);
        switch (i) {
        case 0: st = pm_emit_embed(b, &cfg, 1, D, PM_FMT_Q8_0, D_W, 2000, A_POS, A_IN, A_SCR, 65536, &err); break;
        case 1: st = pm_emit_rmsnorm(b, &cfg, 1, D, A_IN, D_W, 1e-5f, A_OUT, PM_FMT_BF16, A_SCR, 65536, &err); break;
        case 2:
            sram_put(sim, A_POS, &pos, 4);
            st = pm_emit_rope(b, &cfg, 1, 12, 64, A_IN, 960, A_POS, D_TABLE, 2048, A_SCR, 65536, &err);
            break;
        case 3: st = pm_emit_swiglu(b, &cfg, 1, F, A_IN, A_OUT, PM_FMT_BF16, A_SCR, 65536, &err); break;
        case 4: st = pm_emit_add(b, &cfg, D, A_IN, A_OUT, A_IN, &err); break;
        default: st = pm_emit_topk(b, &cfg, V, A_IN, 1, A_REC, A_SCR, 65536, &err); break;
        }
        CHECK_MSG(st == PM_OK, "%s", err.message);
        if (st) {
            pm_builder_destroy(b);
            continue;
        }
        CHECK_MSG(finish_run(sim, b, NULL, &rs[i], &err) == PM_OK, "%s: %s", names[i], err.message);
        printf("  %-28s %4llu words, %5llu instructions, %6llu cycles\n", names[i],
               (unsigned long long)(rs[i].code - base.code), (unsigned long long)(rs[i].instructions - base.instructions),
               (unsigned long long)(rs[i].cycles - base.cycles));
    }
    /* top-k k = 64 on the same logits, for the cost of the extra records */
    pm_builder *b = fenced_builder();
    CHECK(pm_emit_topk(b, &cfg, V, A_IN, 64, A_REC, A_SCR, 65536, &err) == PM_OK);
    run_stats r64;
    CHECK(finish_run(sim, b, NULL, &r64, &err) == PM_OK);
    printf("  %-28s %4llu words, %5llu instructions, %6llu cycles\n", "topk k=64 (n 49152)",
           (unsigned long long)(r64.code - base.code), (unsigned long long)(r64.instructions - base.instructions),
           (unsigned long long)(r64.cycles - base.cycles));
    /* the prefill chunk of 64 rows with the model runner's 64 KiB vector scratch */
    static const char *pnames[4] = {"embed M=64", "rmsnorm M=64", "rope M=64", "swiglu M=64"};
    int32_t pid[64];
    for (int i = 0; i < 64; i++) pid[i] = i * 31;
    for (int i = 0; i < 4; i++) {
        sram_put(sim, A_IN, big, (size_t)V * 4);
        b = fenced_builder();
        pm_status st;
        switch (i) {
        case 0:
            sram_put(sim, A_POS, pid, sizeof pid);
            st = pm_emit_embed(b, &cfg, 64, D, PM_FMT_Q8_0, D_W, 2000, A_POS, A_IN, A_SCR, 65536, &err);
            break;
        case 1: st = pm_emit_rmsnorm(b, &cfg, 64, D, A_IN, D_W, 1e-5f, A_OUT, PM_FMT_BF16, A_SCR, 65536, &err); break;
        case 2:
            sram_put(sim, A_POS, &pos, 4);
            st = pm_emit_rope(b, &cfg, 64, 12, 64, A_IN, 960, A_POS, D_TABLE, 2048, A_SCR, 65536, &err);
            break;
        default: st = pm_emit_swiglu(b, &cfg, 64, F, A_IN, 0xC2000, PM_FMT_BF16, A_SCR, 65536, &err); break;
        }
        CHECK_MSG(st == PM_OK, "%s", err.message);
        if (st) {
            pm_builder_destroy(b);
            continue;
        }
        run_stats r;
        CHECK_MSG(finish_run(sim, b, NULL, &r, &err) == PM_OK, "%s: %s", pnames[i], err.message);
        printf("  %-28s %4llu words, %5llu instructions, %6llu cycles\n", pnames[i],
               (unsigned long long)(r.code - base.code), (unsigned long long)(r.instructions - base.instructions),
               (unsigned long long)(r.cycles - base.cycles));
    }
    free(big);
    pm_sim_destroy(sim);
}

int main(void)
{
    RUN(test_embed);
    RUN(test_embed_bad_id_faults);
    RUN(test_rmsnorm);
    RUN(test_rmsnorm_lanes);
    RUN(test_rope);
    RUN(test_rope_reuse_and_bounds);
    RUN(test_rope_permutation);
    RUN(test_swiglu);
    RUN(test_add);
    RUN(test_topk);
    RUN(test_composed_on_shared_scratch);
    RUN(test_random_arguments);
    RUN(test_errors);
    RUN(test_decode_shapes_report);
    return TEST_SUMMARY();
}
