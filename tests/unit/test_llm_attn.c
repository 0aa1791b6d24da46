/* Attention with a KV cache on the simulated engine against pm_ref_attention,
 * bit for bit: outputs and both caches, for decode and prefill chunks at
 * positions around the tile edges, one decode program reused across
 * positions, and the emitter's refusals. Prints the cycle counts docs quote. */
#include "polymorph/llm_kernels.h"
#include "polymorph/sim.h"

#include "harness_sim.h"
#include "test.h"

#include <math.h>

/* The emitter's keys per tile (docs/llm-kernels.md): the largest power of
 * two <= 128 whose K tile for every KV head fits 32 KiB, at least 16, at
 * most max_ctx. */
static uint32_t tile_keys(uint32_t KV, uint32_t hd, uint32_t max_ctx)
{
    uint32_t T = 128;
    while (T > 16 && (uint64_t)KV * T * hd * 2 > 32768) T /= 2;
    return T < max_ctx ? T : max_ctx;
}

typedef struct attn_case {
    uint32_t H, KV, hd, M, max_ctx, pos0;
    pm_format fmt;
    uint32_t pad; /* extra elements at the end of each q|k|v row */
} attn_case;

/* A device and the host mirror of everything attention reads and writes. */
typedef struct rig {
    pm_config cfg;
    pm_sim *sim;
    pm_attn_desc d;
    float *qkv;
    uint16_t *kc, *vc;
    uint8_t *out_dev, *out_ref;
    size_t qkv_elems, cache_elems, out_bytes;
    pm_program prog;
} rig;

static float urand(uint64_t *s, float amp)
{
    return amp * ((float)(pm_test_xorshift(s) & 0xffffff) / 8388608.0f - 1.0f);
}

static pm_config test_cfg(void)
{
    pm_config cfg = edge();
    cfg.sram_bytes = 16u << 20; /* room for the (32, 8, 128) x 64-row chunks */
    return cfg;
}

/* Layout: pos at 0, then qkv, out, scratch in SRAM; K and V caches in DRAM. */
static bool rig_init(rig *r, const pm_config *cfg, const attn_case *k)
{
    memset(r, 0, sizeof *r);
    r->cfg = *cfg;
    pm_attn_desc *d = &r->d;
    d->M = k->M;
    d->n_heads = k->H;
    d->n_kv_heads = k->KV;
    d->head_dim = k->hd;
    d->max_ctx = k->max_ctx;
    d->qkv_row_elems = (k->H + 2 * k->KV) * k->hd + k->pad;
    d->out_fmt = k->fmt;
    d->scale = 1.0f / sqrtf((float)k->hd);
    d->pos_sram = 0;
    d->qkv_sram = 256;
    r->qkv_elems = (size_t)k->M * d->qkv_row_elems;
    r->out_bytes = (size_t)k->M * k->H * k->hd * (k->fmt == PM_FMT_F32 ? 4 : 2);
    d->out_sram = (d->qkv_sram + r->qkv_elems * 4 + 255) / 256 * 256;
    d->scratch_sram = (d->out_sram + r->out_bytes + 255) / 256 * 256;
    pm_error err;
    if (pm_attention_scratch_bytes(cfg, d, &d->scratch_bytes, &err)) {
        fprintf(stderr, "scratch bytes: %s\n", err.message);
        return false;
    }
    r->cache_elems = (size_t)k->KV * k->max_ctx * k->hd;
    d->kcache_dram = 1u << 20;
    d->vcache_dram = d->kcache_dram + (r->cache_elems * 2 + 4095) / 4096 * 4096;
    r->qkv = malloc(r->qkv_elems * sizeof(float));
    r->kc = malloc(r->cache_elems * 2);
    r->vc = malloc(r->cache_elems * 2);
    r->out_dev = malloc(r->out_bytes);
    r->out_ref = malloc(r->out_bytes);
    if (!r->qkv || !r->kc || !r->vc || !r->out_dev || !r->out_ref) return false;
    r->sim = make_sim(cfg);
    pm_sim_set_threads(r->sim, 1);

    pm_builder *b = NULL;
    pm_program_init(&r->prog);
    if (pm_builder_create(&b, &err)) return false;
    pm_emit_llm_prologue(b);
    pm_status st = pm_emit_attention(b, cfg, d, &err);
    pm_builder_emit(b, PM_OP_HALT, 0, 0, 0, 0, 0, 0);
    if (!st) st = pm_builder_finish(b, &r->prog, &err);
    pm_builder_destroy(b);
    if (!st) st = pm_sim_load_program(r->sim, &r->prog, 1, &err);
    if (st) {
        fprintf(stderr, "build/load: %s\n", err.message);
        return false;
    }
    return true;
}

static void rig_free(rig *r)
{
    pm_program_free(&r->prog);
    pm_sim_destroy(r->sim);
    free(r->qkv);
    free(r->kc);
    free(r->vc);
    free(r->out_dev);
    free(r->out_ref);
}

/* Random caches (finite values everywhere, so a stray read would show) on
 * both sides. */
static bool rig_fill_caches(rig *r, uint64_t *seed)
{
    for (size_t i = 0; i < r->cache_elems; i++) {
        r->kc[i] = pm_f32_to_bf16(urand(seed, 2.0f));
        r->vc[i] = pm_f32_to_bf16(urand(seed, 3.0f));
    }
    pm_error err;
    return !pm_sim_dram_write(r->sim, r->d.kcache_dram, r->kc, r->cache_elems * 2, &err) &&
           !pm_sim_dram_write(r->sim, r->d.vcache_dram, r->vc, r->cache_elems * 2, &err);
}

/* One chunk at pos0 on both sides; true when outputs and caches agree bit
 * for bit. */
static bool rig_step(rig *r, uint32_t pos0, uint64_t *seed, uint64_t *cycles)
{
    for (size_t i = 0; i < r->qkv_elems; i++) r->qkv[i] = urand(seed, 2.0f);
    pm_error err;
    uint32_t pos = pos0;
    if (pm_sim_sram_write(r->sim, 0, r->d.qkv_sram, r->qkv, r->qkv_elems * 4, &err) ||
        pm_sim_sram_write(r->sim, 0, r->d.pos_sram, &pos, 4, &err)) {
        fprintf(stderr, "write: %s\n", err.message);
        return false;
    }
    pm_sim_reset_counters(r->sim);
    if (pm_sim_run(r->sim, NULL, &err)) {
        fprintf(stderr, "run at pos %u: %s\n", pos0, err.message);
        return false;
    }
    pm_counters cn;
    pm_sim_counters(r->sim, &cn);
    if (cycles) *cycles = cn.cycles;
    if (pm_ref_attention(&r->d, r->qkv, r->kc, r->vc, pos0, r->out_ref, &err)) {
        fprintf(stderr, "ref: %s\n", err.message);
        return false;
    }
    uint16_t *kd = malloc(r->cache_elems * 2), *vd = malloc(r->cache_elems * 2);
    bool ok = kd && vd && !pm_sim_sram_read(r->sim, 0, r->d.out_sram, r->out_dev, r->out_bytes, &err) &&
              !pm_sim_dram_read(r->sim, r->d.kcache_dram, kd, r->cache_elems * 2, &err) &&
              !pm_sim_dram_read(r->sim, r->d.vcache_dram, vd, r->cache_elems * 2, &err);
    if (ok && memcmp(r->out_dev, r->out_ref, r->out_bytes)) {
        size_t i = 0;
        while (r->out_dev[i] == r->out_ref[i]) i++;
        fprintf(stderr, "pos %u: output differs first at byte %zu of %zu\n", pos0, i, r->out_bytes);
        ok = false;
    }
    if (ok && memcmp(kd, r->kc, r->cache_elems * 2)) {
        fprintf(stderr, "pos %u: K cache differs\n", pos0);
        ok = false;
    }
    if (ok && memcmp(vd, r->vc, r->cache_elems * 2)) {
        fprintf(stderr, "pos %u: V cache differs\n", pos0);
        ok = false;
    }
    free(kd);
    free(vd);
    return ok;
}

static bool run_case(const pm_config *cfg, const attn_case *k, uint64_t *seed)
{
    rig r;
    bool ok = rig_init(&r, cfg, k) && rig_fill_caches(&r, seed) && rig_step(&r, k->pos0, seed, NULL);
    if (!ok)
        fprintf(stderr, "case H %u KV %u hd %u M %u max_ctx %u pos0 %u %s pad %u failed\n", k->H, k->KV, k->hd, k->M,
                k->max_ctx, k->pos0, k->fmt == PM_FMT_F32 ? "f32" : "bf16", k->pad);
    rig_free(&r);
    return ok;
}

/* Head configs x chunk sizes x positions at and around the tile edges. */
TEST(test_device_matches_reference)
{
    pm_config cfg = test_cfg();
    static const uint32_t heads[][3] = {{9, 3, 64}, {4, 4, 32}, {8, 1, 64}, {32, 8, 128}};
    static const uint32_t Ms[] = {1, 2, 17, 64};
    uint64_t seed = 0x5eed0a77e7u;
    const uint32_t max_ctx = 300;
    int n = 0;
    for (size_t h = 0; h < sizeof heads / sizeof heads[0]; h++)
        for (size_t m = 0; m < sizeof Ms / sizeof Ms[0]; m++) {
            uint32_t M = Ms[m], T = tile_keys(heads[h][1], heads[h][2], max_ctx);
            uint32_t pos[] = {0, 1, T - 1, T, T + 1, pm_test_xorshift(&seed) % (max_ctx - M + 1)};
            for (size_t p = 0; p < sizeof pos / sizeof pos[0]; p++) {
                attn_case k = {heads[h][0], heads[h][1], heads[h][2], M, max_ctx, pos[p],
                               (n & 1) ? PM_FMT_F32 : PM_FMT_BF16, (n % 3 == 2) ? 5u : 0u};
                n++;
                CHECK(run_case(&cfg, &k, &seed));
            }
        }
}

/* The chunk fills the cache to the last position; a tiny context (fewer
 * keys than a tile). */
TEST(test_edges_of_the_cache)
{
    pm_config cfg = test_cfg();
    uint64_t seed = 77;
    attn_case full = {9, 3, 64, 17, 200, 183, PM_FMT_F32, 0};
    CHECK(run_case(&cfg, &full, &seed));
    attn_case last = {9, 3, 64, 1, 200, 199, PM_FMT_BF16, 0};
    CHECK(run_case(&cfg, &last, &seed));
    attn_case tiny = {4, 2, 16, 5, 8, 3, PM_FMT_F32, 3};
    CHECK(run_case(&cfg, &tiny, &seed));
    attn_case whole = {6, 2, 32, 150, 150, 0, PM_FMT_BF16, 0}; /* two static tiles, three blocks */
    CHECK(run_case(&cfg, &whole, &seed));
}

/* A prefill, then decode steps across a tile edge, each program built once
 * and run again with only the position and the q|k|v rows changed. */
TEST(test_one_program_for_every_position)
{
    pm_config cfg = test_cfg();
    uint64_t seed = 4242;
    attn_case pre = {9, 3, 64, 40, 512, 0, PM_FMT_BF16, 0};
    attn_case dec = pre;
    dec.M = 1;
    rig rp, rd;
    bool ok = rig_init(&rp, &cfg, &pre) && rig_fill_caches(&rp, &seed) && rig_step(&rp, 0, &seed, NULL);
    CHECK(ok);
    /* the decode rig shares the prefill's caches: copy them over */
    ok = ok && rig_init(&rd, &cfg, &dec);
    if (ok) {
        memcpy(rd.kc, rp.kc, rp.cache_elems * 2);
        memcpy(rd.vc, rp.vc, rp.cache_elems * 2);
        pm_error err;
        ok = !pm_sim_dram_write(rd.sim, rd.d.kcache_dram, rd.kc, rd.cache_elems * 2, &err) &&
             !pm_sim_dram_write(rd.sim, rd.d.vcache_dram, rd.vc, rd.cache_elems * 2, &err);
        uint32_t T = tile_keys(dec.KV, dec.hd, dec.max_ctx); /* 64: the steps cross two tile edges */
        for (uint32_t pos = 40; ok && pos < 2 * T + 3; pos++) ok = rig_step(&rd, pos, &seed, NULL);
        CHECK(ok);
        rig_free(&rd);
    }
    /* a second prefill chunk at a later position over the same program */
    if (ok) ok = rig_step(&rp, 300, &seed, NULL) && rig_step(&rp, 41, &seed, NULL);
    CHECK(ok);
    rig_free(&rp);
}

static pm_status emit_err(const pm_config *cfg, const pm_attn_desc *d, pm_error *err)
{
    pm_builder *b = NULL;
    if (pm_builder_create(&b, err)) return PM_ERR_NOMEM;
    pm_status st = pm_emit_attention(b, cfg, d, err);
    pm_builder_destroy(b);
    return st;
}

TEST(test_refusals)
{
    pm_config cfg = edge();
    pm_attn_desc d = {.M = 4, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64, .max_ctx = 256, .qkv_sram = 256,
                      .qkv_row_elems = 15 * 64, .kcache_dram = 1u << 20, .vcache_dram = 2u << 20, .pos_sram = 0,
                      .out_sram = 64u << 10, .out_fmt = PM_FMT_BF16, .scale = 0.125f, .scratch_sram = 128u << 10};
    pm_error err;
    uint64_t need = 0;
    CHECK(pm_attention_scratch_bytes(&cfg, &d, &need, &err) == PM_OK && need > 0);
    d.scratch_bytes = need;
    CHECK(emit_err(&cfg, &d, &err) == PM_OK);

    d.scratch_bytes = need - 1;
    CHECK(emit_err(&cfg, &d, &err) == PM_ERR_INVALID && strstr(err.message, "scratch_bytes"));
    d.scratch_bytes = need;

    pm_attn_desc bad = d;
    bad.n_kv_heads = 2;
    CHECK(emit_err(&cfg, &bad, &err) == PM_ERR_INVALID && strstr(err.message, "not a multiple of n_kv_heads"));
    CHECK(pm_attention_scratch_bytes(&cfg, &bad, &need, &err) == PM_ERR_INVALID);

    bad = d;
    bad.M = 64; /* blocks of 16 positions x 3 heads: two sets of 48 x 2048 output tiles overflow 256 KiB */
    bad.head_dim = 2048;
    bad.qkv_row_elems = 15 * 2048;
    CHECK(pm_attention_scratch_bytes(&cfg, &bad, &need, &err) == PM_ERR_INVALID && strstr(err.message, "head_dim"));
    bad.head_dim = 5000;
    CHECK(emit_err(&cfg, &bad, &err) == PM_ERR_INVALID && strstr(err.message, "head_dim = 5000"));

    bad = d;
    bad.qkv_row_elems = 15 * 64 - 1;
    CHECK(emit_err(&cfg, &bad, &err) == PM_ERR_INVALID && strstr(err.message, "qkv_row_elems"));
    bad = d;
    bad.M = 300;
    CHECK(emit_err(&cfg, &bad, &err) == PM_ERR_INVALID && strstr(err.message, "max_ctx"));
    bad = d;
    bad.out_fmt = PM_FMT_F16;
    CHECK(emit_err(&cfg, &bad, &err) == PM_ERR_INVALID && strstr(err.message, "out_fmt"));
    bad = d;
    bad.out_sram = d.qkv_sram + 64; /* output over the q|k|v rows */
    CHECK(emit_err(&cfg, &bad, &err) == PM_ERR_INVALID && strstr(err.message, "overlaps"));
    bad = d;
    bad.scratch_sram = cfg.sram_bytes - 64;
    CHECK(emit_err(&cfg, &bad, &err) == PM_ERR_INVALID && strstr(err.message, "outside SRAM"));
    bad = d;
    bad.vcache_dram = d.kcache_dram + 1024;
    CHECK(emit_err(&cfg, &bad, &err) == PM_ERR_INVALID && strstr(err.message, "kcache"));

    pm_config rep = cfg;
    rep.hazard_mode = PM_HAZARD_REPORT;
    CHECK(emit_err(&rep, &d, &err) == PM_ERR_CONFIG);

    /* the reference refuses a chunk past the end of the cache */
    float qkv[15 * 64] = {0};
    uint16_t out[9 * 64];
    pm_attn_desc one = d;
    one.M = 1;
    CHECK(pm_ref_attention(&one, qkv, NULL, NULL, 256, out, &err) == PM_ERR_INVALID &&
          strstr(err.message, "max_ctx"));
}

/* Cycle counts of the SmolLM2-135M shape on the unmodified edge preset
 * (docs/llm-kernels.md quotes them); decode at a short context must stay a
 * small part of a layer's ~44 us weight stream. */
TEST(test_timing_smollm2)
{
    pm_config cfg = edge();
    uint64_t seed = 99, cycles = 0;
    static const uint32_t positions[] = {10, 100, 1000, 2000};
    for (size_t i = 0; i < sizeof positions / sizeof positions[0]; i++) {
        attn_case k = {9, 3, 64, 1, 2048, positions[i], PM_FMT_BF16, 0};
        rig r;
        bool ok = rig_init(&r, &cfg, &k) && rig_fill_caches(&r, &seed) && rig_step(&r, k.pos0, &seed, &cycles);
        CHECK(ok);
        printf("  attention decode (9, 3, 64) at pos %4u: %7llu cycles (%.2f us at %.0f MHz)\n", k.pos0,
               (unsigned long long)cycles, (double)cycles / cfg.clock_mhz, cfg.clock_mhz);
        if (positions[i] == 10) CHECK(cycles < 8000);
        rig_free(&r);
    }
    attn_case pre = {9, 3, 64, 64, 2048, 0, PM_FMT_BF16, 0};
    rig r;
    bool ok = rig_init(&r, &cfg, &pre) && rig_fill_caches(&r, &seed) && rig_step(&r, 0, &seed, &cycles);
    CHECK(ok);
    printf("  attention prefill (9, 3, 64), 64 rows at pos 0: %7llu cycles (%.2f us)\n", (unsigned long long)cycles,
           (double)cycles / cfg.clock_mhz);
    rig_free(&r);
}

int main(void)
{
    RUN(test_refusals);
    RUN(test_edges_of_the_cache);
    RUN(test_one_program_for_every_position);
    RUN(test_device_matches_reference);
    RUN(test_timing_smollm2);
    return TEST_SUMMARY();
}
