/* The tensor unit's decoded-weight cache and the deferred DMA copies that
 * ride on it (shadow.c) must be invisible: every scenario runs on three
 * simulators, one with the cache and deferred copies, one with the cache
 * only, one with neither, and their SRAM, DRAM and counters must agree bit
 * for bit after every run. The scenarios are the ways a cached decode or a
 * deferred copy could go stale: SRAM tiles read or overwritten in part by
 * vector ops, lw/sw, dma.st or the host, DRAM weights rewritten by dma.st,
 * by the host or by another engine, 2-D DMA tiles and operands inside a
 * larger load. The stats show the cache and the deferral were used. */
#define _POSIX_C_SOURCE 200809L /* setenv, strdup */
#include "test.h"

#include "../../src/sim/sim_internal.h"
#include "harness_sim.h"
#include "polymorph/isa.h"
#include "polymorph/kernels.h"
#include "polymorph/numerics.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

/* on: cache and deferred copies; mid: the cache, every copy at once; off:
 * neither. (The simulator reads POLYMORPH_SHADOW once, at creation; the
 * flag is set here directly so the environment cannot change the test.) */
typedef struct pair {
    pm_config cfg;
    pm_sim *on, *mid, *off;
} pair;

static pair make_pair(const pm_config *cfg)
{
    pair p = {*cfg, make_sim(cfg), make_sim(cfg), make_sim(cfg)};
    pm_sim_set_wcache_mb(p.on, 64);
    pm_sim_set_wcache_mb(p.mid, 64);
    pm_sim_set_wcache_mb(p.off, 0);
    p.on->shadow_on = true;
    p.mid->shadow_on = false;
    p.off->shadow_on = false;
    pm_sim_set_threads(p.on, 2);
    pm_sim_set_threads(p.mid, 2);
    pm_sim_set_threads(p.off, 2);
    return p;
}

static void free_pair(pair *p)
{
    pm_sim_destroy(p->on);
    pm_sim_destroy(p->mid);
    pm_sim_destroy(p->off);
}

static void dram_write(pair *p, uint64_t addr, const void *src, size_t n)
{
    pm_error err;
    pm_sim *sims[3] = {p->on, p->mid, p->off};
    for (int i = 0; i < 3; i++) CHECK(pm_sim_dram_write(sims[i], addr, src, n, &err) == PM_OK);
}

static void sram_write(pair *p, uint32_t engine, uint64_t addr, const void *src, size_t n)
{
    pm_error err;
    pm_sim *sims[3] = {p->on, p->mid, p->off};
    for (int i = 0; i < 3; i++) CHECK(pm_sim_sram_write(sims[i], engine, addr, src, n, &err) == PM_OK);
}

static void load_and_run(pair *p, const pm_program *prog)
{
    pm_error err;
    pm_sim *sims[3] = {p->on, p->mid, p->off};
    for (int i = 0; i < 3; i++) {
        CHECK_MSG(pm_sim_load_program(sims[i], prog, 0, &err) == PM_OK, "%s", err.message);
        CHECK_MSG(pm_sim_run(sims[i], NULL, &err) == PM_OK, "%s", err.message);
    }
}

static bool same_counters(const pm_counters *a, const pm_counters *b)
{
    bool same = a->cycles == b->cycles && a->instructions == b->instructions && a->engines == b->engines &&
                a->dram_read_bytes == b->dram_read_bytes && a->dram_write_bytes == b->dram_write_bytes &&
                a->sram_read_bytes == b->sram_read_bytes && a->sram_write_bytes == b->sram_write_bytes &&
                a->vector_elems == b->vector_elems && a->lfu_evals == b->lfu_evals &&
                a->tensor_macs == b->tensor_macs && a->stall_cycles == b->stall_cycles &&
                memcmp(&a->energy_j, &b->energy_j, sizeof a->energy_j) == 0;
    for (int u = 0; u < PM_UNIT_COUNT; u++)
        same = same && a->unit[u].instructions == b->unit[u].instructions &&
               a->unit[u].busy_cycles == b->unit[u].busy_cycles && a->unit[u].dram_bytes == b->unit[u].dram_bytes &&
               a->unit[u].sram_bytes == b->unit[u].sram_bytes;
    return same;
}

/* DRAM [0, dram_span) and the counters of `a` against `b`. */
static void check_dram_counters(pm_sim *x, pm_sim *y, uint64_t dram_span, const char *what, const char *who)
{
    pm_error err;
    uint8_t *a = malloc(dram_span ? dram_span : 1), *b = malloc(dram_span ? dram_span : 1);
    if (!a || !b) {
        CHECK_MSG(0, "out of memory");
        free(a), free(b);
        return;
    }
    CHECK(pm_sim_dram_read(x, 0, a, (size_t)dram_span, &err) == PM_OK);
    CHECK(pm_sim_dram_read(y, 0, b, (size_t)dram_span, &err) == PM_OK);
    CHECK_MSG(memcmp(a, b, (size_t)dram_span) == 0, "%s: DRAM differs (%s)", what, who);
    pm_counters ca, cb;
    pm_sim_counters(x, &ca);
    pm_sim_counters(y, &cb);
    CHECK_MSG(same_counters(&ca, &cb), "%s: counters differ (%s; cycles %llu vs %llu)", what, who,
              (unsigned long long)ca.cycles, (unsigned long long)cb.cycles);
    free(a), free(b);
}

/* Every engine's whole SRAM (read by the host: shadows are copied in). */
static void check_sram(pm_sim *x, pm_sim *y, const pm_config *cfg, const char *what, const char *who)
{
    pm_error err;
    size_t sram = (size_t)cfg->sram_bytes;
    uint8_t *a = malloc(sram), *b = malloc(sram);
    if (!a || !b) {
        CHECK_MSG(0, "out of memory");
        free(a), free(b);
        return;
    }
    for (uint32_t e = 0; e < cfg->engines; e++) {
        CHECK(pm_sim_sram_read(x, e, 0, a, sram, &err) == PM_OK);
        CHECK(pm_sim_sram_read(y, e, 0, b, sram, &err) == PM_OK);
        if (memcmp(a, b, sram)) {
            size_t i = 0;
            while (a[i] == b[i]) i++;
            CHECK_MSG(0, "%s: engine %u SRAM differs first at 0x%zx (%s: 0x%02x vs 0x%02x)", what, e, i, who, a[i],
                      b[i]);
        }
    }
    free(a), free(b);
}

/* DRAM and counters first (reading them copies no shadow), then every
 * engine's whole SRAM, each simulator against the one with neither. */
static void check_same(pair *p, uint64_t dram_span, const char *what)
{
    check_dram_counters(p->on, p->off, dram_span, what, "cache and deferred copies vs neither");
    check_dram_counters(p->mid, p->off, dram_span, what, "cache vs neither");
    check_sram(p->on, p->off, &p->cfg, what, "cache and deferred copies vs neither");
    check_sram(p->mid, p->off, &p->cfg, what, "cache vs neither");
}

static pm_shadow_stats shadows(const pm_sim *sim)
{
    pm_shadow_stats s;
    pm_sim_shadow_stats(sim, &s);
    return s;
}

static pm_wcache_stats stats(const pm_sim *sim)
{
    pm_wcache_stats s;
    pm_sim_wcache_stats(sim, &s);
    return s;
}

/* Encoded random weights (values in [-r, r)), a different draw per seed. */
static void *random_weights(pm_format f, size_t n, uint64_t seed, size_t *bytes)
{
    float *v = malloc(n * sizeof *v);
    pm_error err;
    void *out = NULL;
    if (v && pm_format_bytes(f, n, bytes) && (out = malloc(*bytes))) {
        uint64_t s = seed | 1;
        for (size_t i = 0; i < n; i++) v[i] = (float)((int)(pm_test_xorshift(&s) % 2001) - 1000) / 500.0f;
        if (pm_format_encode(f, v, n, out, &err)) {
            free(out);
            out = NULL;
        }
    }
    free(v);
    CHECK_MSG(out != NULL, "cannot encode %zu weights as %s", n, pm_format_get(f)->name);
    return out;
}

/* ---- the kernel library's matmul, every weight format ---- */

typedef struct mm_case {
    uint32_t M, N, K;
    pm_format w;
} mm_case;

static void run_matmul_case(const mm_case *mc)
{
    pm_config cfg = edge();
    pair p = make_pair(&cfg);
    pm_matmul_desc d;
    pm_matmul_desc_init(&d, mc->M, mc->N, mc->K, mc->w, PM_FMT_F32);
    size_t wbytes, xbytes = (size_t)mc->M * mc->K * 2, ybytes = (size_t)mc->M * mc->N * 4;
    void *w1 = random_weights(mc->w, (size_t)mc->N * mc->K, 11 + mc->w, &wbytes);
    void *w2 = random_weights(mc->w, (size_t)mc->N * mc->K, 97 + mc->w, &wbytes);
    uint16_t *x = malloc(xbytes);
    float *y = malloc(ybytes), *want = malloc(ybytes);
    pm_program prog;
    pm_program_init(&prog);
    pm_error err;
    if (!w1 || !w2 || !x || !y || !want) goto out;
    uint64_t s = 5;
    for (size_t i = 0; i < xbytes / 2; i++)
        x[i] = pm_f32_to_bf16((float)((int)(pm_test_xorshift(&s) % 200) - 100) / 64.0f);
    d.x_addr = 0;
    d.w_addr = (xbytes + 4095) & ~(uint64_t)4095;
    d.y_addr = (d.w_addr + wbytes + 4095) & ~(uint64_t)4095;
    uint64_t span = d.y_addr + ybytes;
    if (pm_kernel_matmul(&cfg, &d, &prog, &err)) {
        CHECK_MSG(0, "%s", err.message);
        goto out;
    }
    dram_write(&p, d.x_addr, x, xbytes);
    /* the same bytes three times (seen, kept, used), then new ones, then back */
    const void *weights[6] = {w1, w1, w1, w2, w2, w1};
    for (int run = 0; run < 6; run++) {
        dram_write(&p, d.w_addr, weights[run], wbytes);
        load_and_run(&p, &prog);
        char what[96];
        snprintf(what, sizeof what, "%ux%ux%u %s run %d", mc->M, mc->N, mc->K, pm_format_get(mc->w)->name, run);
        check_same(&p, span, what);
        /* and the bits are the tensor unit's, by the library's reference */
        CHECK(pm_sim_dram_read(p.on, d.y_addr, y, ybytes, &err) == PM_OK);
        CHECK(pm_ref_matmul(&d, x, weights[run], NULL, want, &err) == PM_OK);
        CHECK_MSG(memcmp(y, want, ybytes) == 0, "%s: differs from pm_ref_matmul", what);
    }
    pm_wcache_stats on = stats(p.on), off = stats(p.off);
    CHECK_MSG(on.fills > 0 && on.hits > 0, "%s %ux%ux%u: the cache was not used (fills %llu, hits %llu)",
              pm_format_get(mc->w)->name, mc->M, mc->N, mc->K, (unsigned long long)on.fills,
              (unsigned long long)on.hits);
    CHECK_MSG(on.dropped > 0, "new weights in DRAM dropped nothing");
    /* GGUF's legacy formats reproduce as compact panels (1.25 bytes a weight) */
    bool compactable = mc->w == PM_FMT_Q8_0 || mc->w == PM_FMT_Q4_0 || mc->w == PM_FMT_Q4_1;
    CHECK_MSG(compactable ? on.compact == on.fills : on.compact == 0, "%s: %llu of %llu fills compact",
              pm_format_get(mc->w)->name, (unsigned long long)on.compact, (unsigned long long)on.fills);
    CHECK(off.hits == 0 && off.fills == 0 && off.entries == 0);
    /* the weight loads of the runs after the fill were deferred */
    CHECK_MSG(shadows(p.on).deferred > 0, "%s %ux%ux%u: no load was deferred", pm_format_get(mc->w)->name, mc->M,
              mc->N, mc->K);
    CHECK(shadows(p.mid).deferred == 0 && shadows(p.off).deferred == 0);
out:
    pm_program_free(&prog);
    free(w1), free(w2), free(x), free(y), free(want);
    free_pair(&p);
}

TEST(test_matmul_formats)
{
    static const pm_format formats[] = {PM_FMT_Q4_1, PM_FMT_Q8_0, PM_FMT_BF16, PM_FMT_Q4_0, PM_FMT_IF4,
                                        PM_FMT_NVFP4, PM_FMT_MXFP4, PM_FMT_INT4B, PM_FMT_INT4, PM_FMT_E4M3};
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        mm_case c = {1, 200, 128, formats[i]};
        run_matmul_case(&c);
    }
}

/* GEMV with K long enough for K-chunked (2-D DMA) tiles, a few rows (the
 * panel kernel's M > 1), and prefill-sized M (the packed path). */
TEST(test_matmul_shapes)
{
    static const mm_case cases[] = {
        {1, 96, 4096, PM_FMT_Q4_1}, {1, 576, 1536, PM_FMT_Q8_0}, {3, 130, 96, PM_FMT_Q4_1},
        {7, 64, 256, PM_FMT_BF16},  {16, 70, 64, PM_FMT_Q4_1},   {40, 192, 576, PM_FMT_Q8_0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_matmul_case(&cases[i]);
}

/* ---- hand-written programs: partial overwrites and moving sources ---- */

enum {
    K = 64,
    N = 64,
    ROW = 68,          /* Q8_0: two blocks of 34 bytes per row of 64 */
    WB = N * ROW,      /* one matrix */
    W_DRAM = 0x10000,  /* W, then W' right after it */
    WNEW_DRAM = 0x20000,
    SPAN = 0x30000,
    SX = 0x0,
    SW = 0x1000,
    SW2 = 0x4000,
    SJ = 0x8000,
    SY = 0x10000,      /* result i at SY + i * 0x400 */
};

static bool assemble(const char *text, pm_program *prog)
{
    pm_error err;
    pm_program_init(prog);
    if (pm_assemble("test_wcache", text, prog, &err)) {
        CHECK_MSG(0, "%s", err.message);
        return false;
    }
    return true;
}

/* Shared set-up: x, W and W' (adjacent), and a third matrix elsewhere. */
static void put_operands(pair *p, uint64_t seed)
{
    size_t bytes;
    uint16_t x[K];
    uint64_t s = seed;
    for (int i = 0; i < K; i++) x[i] = pm_f32_to_bf16((float)((int)(pm_test_xorshift(&s) % 100) - 50) / 32.0f);
    dram_write(p, 0, x, sizeof x);
    for (int i = 0; i < 3; i++) {
        void *w = random_weights(PM_FMT_Q8_0, (size_t)N * K, seed + 1 + (uint64_t)i, &bytes);
        if (!w) return;
        CHECK(bytes == WB);
        dram_write(p, i == 2 ? WNEW_DRAM : W_DRAM + (uint64_t)i * WB, w, bytes);
        free(w);
    }
}

/* tmm (rows N, K as the last tshape set) of x by the weights at SRAM `reg`,
 * then the result to SY + slot * 0x400. */
#define TMM_OUT(reg, slot)                                                     \
    "  tmm.q8_0 r6, r20, " reg "\n  fence tensor\n  li r22, " #slot " * 0x400 + 0x10000\n" \
    "  tout.f32 r22, r6\n  fence tensor\n"

static const char *invalidation_program =
    "  li r2, 1\n  li r0, 0\n"
    "  li r1, 128\n  dma.shape r1, r2, r2\n  li r10, 0\n  li r20, 0x0\n  dma.ld r20, r10\n  fence dma.ld\n"
    /* W and W' in one load */
    "  li r1, 8704\n  dma.shape r1, r2, r2\n  li r11, 0x10000\n  li r21, 0x1000\n  dma.ld r21, r11\n  fence dma.ld\n"
    "  li r3, 1\n  li r4, 64\n  li r5, 64\n  tshape r3, r4, r5, 2\n  li r6, 0\n"
    TMM_OUT("r21", 0)
    /* W' sits inside the same load */
    "  li r23, 0x1000 + 4352\n" TMM_OUT("r23", 1)
    /* ten bf16 of x over part of W's SRAM copy (the vector unit writes it) */
    "  li r24, 0x1000 + 100\n  li r7, 10\n  vmov.bf16 r24, r20, r7\n  fence vec\n"
    TMM_OUT("r21", 2) TMM_OUT("r23", 3)
    /* W alone, elsewhere in SRAM: the same DRAM bytes */
    "  li r1, 4352\n  dma.shape r1, r2, r2\n  li r25, 0x4000\n  dma.ld r25, r11\n  fence dma.ld\n"
    TMM_OUT("r25", 4)
    /* new bytes stored over W in DRAM; SRAM 0x4000 keeps the old ones */
    "  li r26, 0x8000\n  li r12, 0x20000\n  dma.ld r26, r12\n  fence dma.ld\n  dma.st r11, r26\n  fence dma.st\n"
    TMM_OUT("r25", 5) TMM_OUT("r25", 11) /* twice: a second sighting fills */
    "  dma.ld r21, r11\n  fence dma.ld\n" TMM_OUT("r21", 6)
    /* 2-D: the first block of every row, then the second, K = 32 each */
    "  li r1, 34\n  li r8, 64\n  dma.shape r1, r8, r2\n  li r9, 68\n  li r13, 0\n  li r14, 34\n"
    "  dma.stride r9, r13, r14, r13\n  dma.ld r21, r11\n  fence dma.ld\n"
    "  li r5, 32\n  tshape r3, r4, r5, 2\n  tmm.q8_0 r6, r20, r21\n  fence tensor\n"
    "  li r15, 0x10000 + 34\n  dma.ld r25, r15\n  fence dma.ld\n  li r27, 64\n  tmma.q8_0 r6, r27, r25\n"
    "  fence tensor\n  li r22, 7 * 0x400 + 0x10000\n  tout.f32 r22, r6\n  fence tensor\n"
    /* rows 32..63 of the first 2-D tile: a strided DRAM origin */
    "  li r4, 32\n  tshape r3, r4, r5, 2\n  li r28, 0x1000 + 32 * 34\n" TMM_OUT("r28", 8)
    /* the first 2176 bytes of W contiguous, read as 64 rows of one block:
     * the same DRAM start, size and shape as the 2-D tile, other bytes */
    "  li r1, 2176\n  dma.shape r1, r2, r2\n  dma.ld r25, r11\n  fence dma.ld\n  li r4, 64\n"
    "  tshape r3, r4, r5, 2\n" TMM_OUT("r21", 9) TMM_OUT("r25", 10)
    "  halt\n";

TEST(test_invalidation_program)
{
    pm_config cfg = edge();
    pair p = make_pair(&cfg);
    pm_program prog;
    if (!assemble(invalidation_program, &prog)) {
        free_pair(&p);
        return;
    }
    put_operands(&p, 100);
    load_and_run(&p, &prog);
    check_same(&p, SPAN, "first run");
    pm_wcache_stats s1 = stats(p.on);
    CHECK_MSG(s1.fills >= 1, "fills %llu", (unsigned long long)s1.fills); /* W is loaded twice in the run */
    /* The program stored W'' over W: run it again as it is (cached from the
     * first run), then with the original W put back by the host. */
    load_and_run(&p, &prog);
    check_same(&p, SPAN, "second run");
    put_operands(&p, 100);
    load_and_run(&p, &prog);
    check_same(&p, SPAN, "third run, W restored");
    pm_wcache_stats s3 = stats(p.on);
    CHECK(s3.hits > s1.hits);
    CHECK(s3.dropped > 0);
    pm_program_free(&prog);
    free_pair(&p);
}

/* The host rewrites a weight tile in SRAM between runs; the next program
 * multiplies by what SRAM holds without loading it again. */
TEST(test_host_sram_write_between_runs)
{
    pm_config cfg = edge();
    pair p = make_pair(&cfg);
    pm_program load_prog, reuse_prog;
    const char *load_text = "  li r2, 1\n  li r1, 128\n  dma.shape r1, r2, r2\n  li r10, 0\n  li r20, 0x0\n"
                            "  dma.ld r20, r10\n  li r1, 4352\n  dma.shape r1, r2, r2\n  li r11, 0x10000\n"
                            "  li r21, 0x1000\n  dma.ld r21, r11\n  fence dma.ld\n"
                            "  li r3, 1\n  li r4, 64\n  li r5, 64\n  tshape r3, r4, r5, 2\n  li r6, 0\n" TMM_OUT("r21", 0)
                            "  halt\n";
    const char *reuse_text = "  li r20, 0x0\n  li r21, 0x1000\n  li r3, 1\n  li r4, 64\n  li r5, 64\n"
                             "  tshape r3, r4, r5, 2\n  li r6, 0\n" TMM_OUT("r21", 1) "  halt\n";
    if (assemble(load_text, &load_prog) && assemble(reuse_text, &reuse_prog)) {
        put_operands(&p, 200);
        load_and_run(&p, &load_prog);
        check_same(&p, SPAN, "load");
        load_and_run(&p, &reuse_prog);
        check_same(&p, SPAN, "reuse, SRAM untouched");
        size_t bytes;
        void *other = random_weights(PM_FMT_Q8_0, (size_t)N * K, 999, &bytes);
        if (other) {
            sram_write(&p, 0, SW + 64, (const uint8_t *)other + 64, 256); /* part of the tile */
            load_and_run(&p, &reuse_prog);
            check_same(&p, SPAN, "reuse after a host SRAM write");
            free(other);
        }
        for (int again = 0; again < 2; again++) {
            load_and_run(&p, &load_prog);
            check_same(&p, SPAN, "load again");
        }
        CHECK(stats(p.on).hits > 0);
    }
    pm_program_free(&load_prog);
    pm_program_free(&reuse_prog);
    free_pair(&p);
}

/* `sw` writes SRAM without passing the cache: such programs run uncached. */
TEST(test_sw_program)
{
    pm_config cfg = edge();
    pair p = make_pair(&cfg);
    pm_program prog;
    const char *text = "  li r2, 1\n  li r1, 128\n  dma.shape r1, r2, r2\n  li r10, 0\n  li r20, 0x0\n"
                       "  dma.ld r20, r10\n  li r1, 4352\n  dma.shape r1, r2, r2\n  li r11, 0x10000\n"
                       "  li r21, 0x1000\n  dma.ld r21, r11\n  fence dma.ld\n"
                       "  li r3, 1\n  li r4, 64\n  li r5, 64\n  tshape r3, r4, r5, 2\n  li r6, 0\n" TMM_OUT("r21", 0)
                       "  li r9, 0x7f7f7f7f\n  sw r9, r21, 8\n" TMM_OUT("r21", 1) "  halt\n";
    if (assemble(text, &prog)) {
        put_operands(&p, 300);
        for (int run = 0; run < 2; run++) {
            load_and_run(&p, &prog);
            check_same(&p, SPAN, "sw program");
        }
        CHECK(stats(p.on).fills == 0);
    }
    pm_program_free(&prog);
    free_pair(&p);
}

/* Engine 1 stores new weights over the DRAM engine 0 multiplies by, between
 * engine 0's two loads of them (flags order the engines). */
TEST(test_two_engines)
{
    pm_config cfg = edge();
    cfg.engines = 2;
    pair p = make_pair(&cfg);
    pm_program prog;
    const char *text =
        "  li r2, 1\n  li r0, 0\n  csrr r4, engine_id\n  beq r4, r0, first\n"
        /* engine 1: wait, then W <- the third matrix */
        "  flag.wait 0, 1\n  li r1, 4352\n  dma.shape r1, r2, r2\n  li r12, 0x20000\n  li r26, 0x8000\n"
        "  dma.ld r26, r12\n  fence dma.ld\n  li r11, 0x10000\n  dma.st r11, r26\n  fence dma.st\n"
        "  flag.set 1, 1\n  halt\n"
        "first:\n"
        "  li r1, 128\n  dma.shape r1, r2, r2\n  li r10, 0\n  li r20, 0x0\n  dma.ld r20, r10\n"
        "  li r1, 4352\n  dma.shape r1, r2, r2\n  li r11, 0x10000\n  li r21, 0x1000\n  dma.ld r21, r11\n"
        "  fence dma.ld\n  li r3, 1\n  li r4, 64\n  li r5, 64\n  tshape r3, r4, r5, 2\n  li r6, 0\n"
        TMM_OUT("r21", 0)
        "  flag.set 0, 1\n  flag.wait 1, 1\n  dma.ld r21, r11\n  fence dma.ld\n" TMM_OUT("r21", 1) "  halt\n";
    if (assemble(text, &prog)) {
        for (int run = 0; run < 3; run++) {
            put_operands(&p, 400 + (uint64_t)(run == 2));
            load_and_run(&p, &prog);
            check_same(&p, SPAN, "two engines");
        }
        CHECK(stats(p.on).misses > 0);
    }
    pm_program_free(&prog);
    free_pair(&p);
}

/* A budget smaller than the weights: what fits is kept, the rest decoded
 * every time, bits unchanged; 0 turns the cache off and empties it. */
TEST(test_budget)
{
    pm_config cfg = edge();
    pair p = make_pair(&cfg);
    pm_sim_set_wcache_mb(p.on, 1);
    pm_matmul_desc d;
    pm_matmul_desc_init(&d, 1, 4096, 576, PM_FMT_Q4_1, PM_FMT_F32);
    size_t wbytes;
    void *w = random_weights(PM_FMT_Q4_1, (size_t)4096 * 576, 7, &wbytes);
    uint16_t x[576];
    for (int i = 0; i < 576; i++) x[i] = pm_f32_to_bf16((float)(i % 13) / 8.0f - 0.75f);
    pm_program prog;
    pm_program_init(&prog);
    pm_error err;
    d.x_addr = 0;
    d.w_addr = 4096;
    d.y_addr = (4096 + wbytes + 4095) & ~(uint64_t)4095;
    if (w && pm_kernel_matmul(&cfg, &d, &prog, &err) == PM_OK) {
        dram_write(&p, 0, x, sizeof x);
        dram_write(&p, d.w_addr, w, wbytes);
        for (int run = 0; run < 2; run++) {
            load_and_run(&p, &prog);
            check_same(&p, d.y_addr + 4096 * 4, "1 MiB budget");
        }
        pm_wcache_stats s = stats(p.on);
        CHECK(s.bytes <= ((uint64_t)1 << 20) && s.bytes > 0);
        CHECK(s.misses > s.fills); /* some tiles did not fit */
        pm_sim_set_wcache_mb(p.on, 0);
        CHECK(stats(p.on).entries == 0 && stats(p.on).bytes == 0);
        load_and_run(&p, &prog);
        check_same(&p, d.y_addr + 4096 * 4, "cache off");
    }
    pm_program_free(&prog);
    free(w);
    free_pair(&p);
}

/* Large loads are copied in slices on the host threads once the tensor unit
 * has started them: SRAM must hold exactly the DRAM bytes, for a 1-D load,
 * a 2-D load (rows at a stride, planes continuing them) and one whose SRAM
 * rows are strided (copied row by row). */
TEST(test_large_loads)
{
    pm_config cfg = edge();
    pair p = make_pair(&cfg);
    enum { BYTES = 3 << 18, SRC = 0x100000 };
    uint8_t *src = malloc(2 * BYTES), *got = malloc(BYTES), *want = malloc(BYTES);
    pm_program prog;
    pm_program_init(&prog);
    /* a tmm first (it starts the host threads), then the loads */
    const char *text =
        "  li r3, 1\n  li r4, 64\n  li r5, 64\n  tshape r3, r4, r5, 2\n  li r6, 0\n  li r20, 0\n  li r21, 0x1000\n"
        "  tmm.q8_0 r6, r20, r21\n  fence tensor\n"
        "  li r2, 1\n  li r1, 786432\n  dma.shape r1, r2, r2\n  li r10, 0x100000\n  li r11, 0\n  dma.ld r11, r10\n"
        "  fence dma.ld\n  li r12, 0x100000\n  dma.st r12, r11\n  fence dma.st\n"
        /* 2-D: 3072 rows of 100 bytes, 256 apart in DRAM, two planes, into SRAM 0x0 */
        "  li r1, 100\n  li r7, 3072\n  li r8, 2\n  dma.shape r1, r7, r8\n  li r9, 256\n  li r13, 786432\n"
        "  li r14, 100\n  li r15, 307200\n  dma.stride r9, r13, r14, r15\n  dma.ld r11, r10\n  fence dma.ld\n"
        "  halt\n";
    if (src && got && want && assemble(text, &prog)) {
        uint64_t s = 77;
        for (size_t i = 0; i < 2 * BYTES; i++) src[i] = (uint8_t)pm_test_xorshift(&s);
        dram_write(&p, SRC, src, 2 * BYTES);
        load_and_run(&p, &prog);
        pm_error err;
        /* the 1-D load went back out unchanged: DRAM is its own source */
        CHECK(pm_sim_dram_read(p.on, SRC, got, BYTES, &err) == PM_OK);
        CHECK(memcmp(got, src, BYTES) == 0);
        for (size_t pl = 0; pl < 2; pl++)
            for (size_t r = 0; r < 3072; r++)
                memcpy(want + (pl * 3072 + r) * 100, src + pl * 786432 + r * 256, 100);
        CHECK(pm_sim_sram_read(p.on, 0, 0, got, 2 * 3072 * 100, &err) == PM_OK);
        CHECK_MSG(memcmp(got, want, 2 * 3072 * 100) == 0, "2-D load: SRAM differs from its DRAM rows");
        check_same(&p, SRC + 2 * BYTES, "large loads");
    }
    pm_program_free(&prog);
    free(src), free(got), free(want);
    free_pair(&p);
}

/* More distinct weight tiles than the cache keeps markers for (4096): the
 * markers are forgotten and sighting continues; bits as without the cache. */
TEST(test_many_keys)
{
    pm_config cfg = edge();
    pair p = make_pair(&cfg);
    enum { TILES = 4500, TILE = 34 }; /* one Q8_0 row of 32 each */
    size_t cap = 64 * (size_t)TILES * 2 + 1024, len = 0;
    char *text = malloc(cap);
    uint8_t *w = malloc((size_t)TILES * TILE);
    pm_program prog;
    pm_program_init(&prog);
    if (text && w) {
        uint64_t s = 9;
        for (size_t i = 0; i < (size_t)TILES * TILE; i++) w[i] = (uint8_t)pm_test_xorshift(&s);
        for (size_t i = 0; i < TILES; i++) w[i * TILE + 1] &= 0x3B; /* finite f16 scales */
        uint16_t x[32];
        for (int i = 0; i < 32; i++) x[i] = pm_f32_to_bf16((float)(i - 16) / 8.0f);
        dram_write(&p, 0, x, sizeof x);
        dram_write(&p, 0x100000, w, (size_t)TILES * TILE);
        len += (size_t)snprintf(text + len, cap - len,
                                "  li r2, 1\n  li r1, 64\n  dma.shape r1, r2, r2\n  li r10, 0\n  li r20, 0\n"
                                "  dma.ld r20, r10\n  li r1, %d\n  dma.shape r1, r2, r2\n  li r11, 0x100000\n"
                                "  li r21, 0x1000\n  dma.ld r21, r11\n  fence dma.ld\n  li r3, 1\n  li r5, 32\n"
                                "  tshape r3, r3, r5, 2\n  li r6, 0\n",
                                TILES * TILE);
        for (int t = 0; t < TILES; t++)
            len += (size_t)snprintf(text + len, cap - len, "  li r21, %d\n  tmma.q8_0 r6, r20, r21\n",
                                    0x1000 + t * TILE);
        snprintf(text + len, cap - len, "  fence tensor\n  li r22, 0x40000\n  tout.f32 r22, r6\n  fence tensor\n  halt\n");
        if (assemble(text, &prog)) {
            for (int run = 0; run < 3; run++) {
                load_and_run(&p, &prog);
                check_same(&p, 0x100000 + (uint64_t)TILES * TILE, "many keys");
            }
            pm_wcache_stats st = stats(p.on);
            CHECK_MSG(st.fills > 0 && st.hits > 0, "fills %llu hits %llu", (unsigned long long)st.fills,
                      (unsigned long long)st.hits);
        }
    }
    pm_program_free(&prog);
    free(text), free(w);
    free_pair(&p);
}


/* ---- deferred copies: every way to touch a shadowed tile ---- */

/* x to SRAM 0, W (DRAM 0x10000) to SRAM 0x1000, multiplied twice (the
 * second sighting fills the cache), the third matrix over it (so stale
 * bytes would show), then W loaded again: that load's copy is deferred.
 * K = N = 64 as tshape leaves it. */
#define SHADOW_W                                                                                          \
    "  li r2, 1\n  li r1, 128\n  dma.shape r1, r2, r2\n  li r10, 0\n  li r20, 0x0\n  dma.ld r20, r10\n" \
    "  li r1, 4352\n  dma.shape r1, r2, r2\n  li r11, 0x10000\n  li r21, 0x1000\n  dma.ld r21, r11\n"  \
    "  fence dma.ld\n  li r3, 1\n  li r4, 64\n  li r5, 64\n  tshape r3, r4, r5, 2\n  li r6, 0\n"        \
    "  tmm.q8_0 r6, r20, r21\n  fence tensor\n  tmm.q8_0 r6, r20, r21\n  fence tensor\n"               \
    "  li r12, 0x20000\n  dma.ld r21, r12\n  fence dma.ld\n  dma.ld r21, r11\n  fence dma.ld\n"

typedef struct shadow_case {
    const char *name, *text;
    int runs;
    bool copies; /* the action must copy a deferred tile (else it may) */
    int uncopied; /* 1: must drop one uncopied, 2: must keep part of one deferred */
} shadow_case;

static void run_shadow_case(const shadow_case *sc)
{
    pm_config cfg = edge();
    pair p = make_pair(&cfg);
    pm_program prog;
    if (!assemble(sc->text, &prog)) {
        free_pair(&p);
        return;
    }
    put_operands(&p, 500);
    for (int run = 0; run < sc->runs; run++) {
        load_and_run(&p, &prog);
        char what[96];
        snprintf(what, sizeof what, "%s, run %d", sc->name, run);
        check_same(&p, SPAN, what);
    }
    pm_shadow_stats on = shadows(p.on);
    CHECK_MSG(on.deferred > 0, "%s: nothing deferred", sc->name);
    CHECK_MSG(!sc->copies || on.copied > 0, "%s: no deferred copy was made", sc->name);
    CHECK_MSG(sc->uncopied != 1 || on.dropped > 0, "%s: no deferred copy was dropped", sc->name);
    CHECK_MSG(sc->uncopied != 2 || on.trimmed > 0, "%s: no deferred copy was trimmed", sc->name);
    CHECK(shadows(p.mid).deferred == 0);
    pm_program_free(&prog);
    free_pair(&p);
}

TEST(test_shadow_touches)
{
    static const shadow_case cases[] = {
        /* the tmm hits: W's bytes stay uncopied until the host reads SRAM */
        {"tmm hit", SHADOW_W TMM_OUT("r21", 0) "  halt\n", 2, true, 0},
        {"vector read", SHADOW_W "  li r24, 0x8000\n  li r7, 100\n  vmov.bf16 r24, r21, r7\n  fence vec\n"
                        TMM_OUT("r21", 0) "  halt\n", 2, true, 0},
        {"vector write", SHADOW_W "  li r24, 0x1000 + 300\n  li r7, 10\n  vmov.bf16 r24, r20, r7\n  fence vec\n"
                         TMM_OUT("r21", 0) "  halt\n", 2, true, 0},
        /* 128 bytes of x over part of the tile, then the whole tile again */
        {"partial load over", SHADOW_W "  li r1, 128\n  dma.shape r1, r2, r2\n  li r24, 0x1000 + 200\n"
                              "  dma.ld r24, r10\n  fence dma.ld\n" TMM_OUT("r21", 0)
                              "  li r1, 4352\n  dma.shape r1, r2, r2\n  dma.ld r21, r11\n  fence dma.ld\n"
                              TMM_OUT("r21", 1) "  halt\n", 2, true, 0},
        /* a load over the whole tile drops it uncopied */
        {"whole load over", SHADOW_W "  li r12, 0x20000\n  dma.ld r21, r12\n  fence dma.ld\n" TMM_OUT("r21", 0)
                            "  halt\n", 2, false, 1},
        /* smaller loads over the head or the tail: the rest stays deferred,
         * then a vector op or a tmm (a miss: SRAM changed) reads it */
        {"load over the head", SHADOW_W "  li r1, 1000\n  dma.shape r1, r2, r2\n  li r12, 0x20000\n"
                               "  dma.ld r21, r12\n  fence dma.ld\n  li r24, 0x8000\n  li r25, 0x1000 + 2000\n"
                               "  li r7, 300\n  vmov.bf16 r24, r25, r7\n  fence vec\n" TMM_OUT("r21", 0) "  halt\n",
         2, true, 2},
        {"load over the tail", SHADOW_W "  li r1, 1000\n  dma.shape r1, r2, r2\n  li r12, 0x20000\n"
                               "  li r25, 0x1000 + 3352\n  dma.ld r25, r12\n  fence dma.ld\n" TMM_OUT("r21", 0)
                               "  halt\n", 2, true, 2},
        /* both: the middle stays deferred until the host reads it */
        {"loads over both ends", SHADOW_W "  li r1, 1000\n  dma.shape r1, r2, r2\n  li r12, 0x20000\n"
                                 "  li r25, 0x1000 + 3352\n  dma.ld r25, r12\n  dma.ld r21, r12\n  fence dma.ld\n"
                                 "  halt\n", 2, true, 2},
        {"dma.st from it", SHADOW_W "  li r12, 0x28000\n  dma.st r12, r21\n  fence dma.st\n" TMM_OUT("r21", 0)
                           "  halt\n", 2, true, 0},
        /* new bytes stored over W's DRAM while its copy is deferred: SRAM
         * keeps the old ones, and the tmm (a miss now) decodes those */
        {"dma.st over the source", SHADOW_W "  li r12, 0x20000\n  li r26, 0x8000\n  dma.ld r26, r12\n"
                                   "  fence dma.ld\n  dma.st r11, r26\n  fence dma.st\n" TMM_OUT("r21", 0)
                                   TMM_OUT("r21", 1) "  halt\n", 3, true, 0},
        /* lw of a tile word picks where x is stored: stale bytes store elsewhere */
        {"lw", SHADOW_W "  lw r9, r21, 8\n  andi r9, r9, 0x3fc\n  addi r9, r9, 0x28000\n  li r1, 128\n"
               "  dma.shape r1, r2, r2\n  dma.st r9, r20\n  fence dma.st\n" TMM_OUT("r21", 0) "  halt\n", 2, true, 0},
        /* same bytes, another shape: a miss copies the tile, then decodes it */
        {"tmm miss", SHADOW_W "  li r4, 128\n  li r5, 32\n  tshape r3, r4, r5, 2\n" TMM_OUT("r21", 0) "  halt\n",
         1, true, 0},
        /* the bias of tout read from the tile */
        {"tout bias", SHADOW_W "  li r22, 1\n  tepi r21, r0, r22\n" TMM_OUT("r21", 0) "  halt\n", 2, true, 0},
        /* tout writing into the tile */
        {"tout over", SHADOW_W "  tmm.q8_0 r6, r20, r21\n  fence tensor\n  li r22, 0x1000 + 64\n"
                      "  tout.f32 r22, r6\n  fence tensor\n" TMM_OUT("r21", 1) "  halt\n", 2, true, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_shadow_case(&cases[i]);
}

/* 2-D tiles: the first Q8_0 block of every row of W (K = 32), sighted twice,
 * loaded again (deferred), read by the vector unit; then a load with strided
 * SRAM rows (gaps between them) deferred and read back by the host. */
TEST(test_shadow_2d)
{
    static const char *text =
        "  li r2, 1\n  li r1, 64\n  dma.shape r1, r2, r2\n  li r10, 0\n  li r20, 0x0\n  dma.ld r20, r10\n"
        "  li r1, 34\n  li r8, 64\n  dma.shape r1, r8, r2\n  li r9, 68\n  li r13, 0\n  li r14, 34\n"
        "  dma.stride r9, r13, r14, r13\n  li r11, 0x10000\n  li r21, 0x1000\n  dma.ld r21, r11\n  fence dma.ld\n"
        "  li r3, 1\n  li r4, 64\n  li r5, 32\n  tshape r3, r4, r5, 2\n  li r6, 0\n"
        "  tmm.q8_0 r6, r20, r21\n  fence tensor\n  tmm.q8_0 r6, r20, r21\n  fence tensor\n"
        "  dma.ld r21, r11\n  fence dma.ld\n" TMM_OUT("r21", 0)
        "  li r24, 0x8000\n  li r7, 500\n  vmov.bf16 r24, r21, r7\n  fence vec\n"
        /* the same rows into SRAM 100 bytes apart: a 2-D SRAM side */
        "  li r14, 100\n  dma.stride r9, r13, r14, r13\n  li r25, 0x4000\n  dma.ld r25, r11\n  fence dma.ld\n"
        "  halt\n";
    pm_config cfg = edge();
    pair p = make_pair(&cfg);
    pm_program prog;
    if (assemble(text, &prog)) {
        put_operands(&p, 600);
        for (int run = 0; run < 3; run++) {
            load_and_run(&p, &prog);
            /* the counters before the host looks, then everything */
            check_dram_counters(p.on, p.off, SPAN, "2-D", "cache and deferred copies vs neither");
            check_same(&p, SPAN, "2-D");
        }
        pm_shadow_stats s = shadows(p.on);
        CHECK_MSG(s.deferred >= 3 && s.copied >= 2, "deferred %llu copied %llu", (unsigned long long)s.deferred,
                  (unsigned long long)s.copied);
    }
    pm_program_free(&prog);
    free_pair(&p);
}

/* A shadow left at the end of a run stays (SRAM keeps its contents): the
 * host reads it, writes into it or over its DRAM source, and later programs
 * read it with lw and write it with sw (a program with sw runs without the
 * cache) or multiply by it without loading it again. */
TEST(test_shadow_across_runs)
{
    pm_config cfg = edge();
    pm_program load_prog, reuse_prog, lw_prog, sram_sec_prog, dram_sec_prog;
    const char *load_text = SHADOW_W TMM_OUT("r21", 0) "  halt\n";
    const char *reuse_text = "  li r20, 0x0\n  li r21, 0x1000\n  li r3, 1\n  li r4, 64\n  li r5, 64\n"
                             "  tshape r3, r4, r5, 2\n  li r6, 0\n" TMM_OUT("r21", 1) "  halt\n";
    const char *lw_text = "  li r21, 0x1000\n  li r9, 0x5a5a5a5a\n  sw r9, r21, 16\n  lw r9, r21, 12\n"
                          "  sw r9, r0, 0x8000\n  lw r9, r21, 4000\n  sw r9, r0, 0x8004\n  halt\n";
    /* data sections of a program: bytes into the tile, bytes over its source */
    const char *sram_sec_text = "  halt\n.sram 0x1000 + 200\n  .word 0x01020304, 0x05060708\n";
    const char *dram_sec_text = "  li r20, 0x0\n  li r21, 0x1000\n  li r3, 1\n  li r4, 64\n  li r5, 64\n"
                                "  tshape r3, r4, r5, 2\n  li r6, 0\n" TMM_OUT("r21", 1) "  halt\n"
                                ".dram 0x10000 + 300\n  .word 0x11121314, 0x15161718\n";
    if (!assemble(load_text, &load_prog) || !assemble(reuse_text, &reuse_prog) || !assemble(lw_text, &lw_prog) ||
        !assemble(sram_sec_text, &sram_sec_prog) || !assemble(dram_sec_text, &dram_sec_prog))
        return;
    for (int variant = 0; variant < 7; variant++) {
        pair p = make_pair(&cfg);
        put_operands(&p, 700);
        for (int run = 0; run < 2; run++) load_and_run(&p, &load_prog);
        check_dram_counters(p.on, p.off, SPAN, "across runs", "cache and deferred copies vs neither");
        CHECK_MSG(p.on->engines[0].shadow_count > 0, "variant %d: no shadow left after the run", variant);
        uint64_t copied = shadows(p.on).copied;
        const char *what = "host SRAM read";
        if (variant == 1) {
            /* new bytes over W's DRAM: SRAM keeps the old ones */
            size_t bytes;
            void *w = random_weights(PM_FMT_Q8_0, (size_t)N * K, 4242, &bytes);
            if (w) dram_write(&p, W_DRAM, w, bytes);
            free(w);
            load_and_run(&p, &reuse_prog);
            what = "host DRAM write over the source, then reuse";
        } else if (variant == 2) {
            load_and_run(&p, &lw_prog);
            what = "lw in the next program";
        } else if (variant == 3) {
            load_and_run(&p, &reuse_prog); /* no record in a new run: a miss copies */
            what = "reuse without a load";
        } else if (variant == 4) {
            static const uint8_t ones[40] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                             1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
            sram_write(&p, 0, SW + 100, ones, sizeof ones);
            what = "host SRAM write into the tile";
        } else if (variant == 5) {
            load_and_run(&p, &sram_sec_prog);
            what = "program SRAM section into the tile";
        } else if (variant == 6) {
            load_and_run(&p, &dram_sec_prog);
            what = "program DRAM section over the source";
        }
        if (variant) check_dram_counters(p.on, p.off, SPAN, what, "cache and deferred copies vs neither");
        CHECK_MSG(shadows(p.on).copied > copied || variant == 0, "%s: no copy", what);
        check_same(&p, SPAN, what);
        CHECK(p.on->engines[0].shadow_count == 0);
        free_pair(&p);
    }
    pm_program_free(&load_prog);
    pm_program_free(&reuse_prog);
    pm_program_free(&lw_prog);
    pm_program_free(&sram_sec_prog);
    pm_program_free(&dram_sec_prog);
}

/* Engine 1 stores new weights over W's DRAM while engine 0's copy of W is
 * deferred; engine 0 then multiplies by its SRAM tile without loading it
 * again (the old bytes). */
TEST(test_shadow_two_engines)
{
    pm_config cfg = edge();
    cfg.engines = 2;
    pair p = make_pair(&cfg);
    pm_program prog;
    const char *text =
        "  li r2, 1\n  li r0, 0\n  csrr r4, engine_id\n  beq r4, r0, first\n"
        "  flag.wait 0, 1\n  li r1, 4352\n  dma.shape r1, r2, r2\n  li r12, 0x20000\n  li r26, 0x8000\n"
        "  dma.ld r26, r12\n  fence dma.ld\n  li r11, 0x10000\n  dma.st r11, r26\n  fence dma.st\n"
        "  flag.set 1, 1\n  halt\n"
        "first:\n" SHADOW_W TMM_OUT("r21", 0) "  flag.set 0, 1\n  flag.wait 1, 1\n" TMM_OUT("r21", 1) "  halt\n";
    if (assemble(text, &prog)) {
        for (int run = 0; run < 3; run++) {
            put_operands(&p, 800);
            load_and_run(&p, &prog);
            check_same(&p, SPAN, "two engines, deferred");
        }
        CHECK(shadows(p.on).deferred > 0 && shadows(p.on).copied > 0);
    }
    pm_program_free(&prog);
    free_pair(&p);
}

/* POLYMORPH_SHADOW=0 turns deferral off for simulators created after it. */
TEST(test_shadow_env)
{
    pm_config cfg = edge();
    const char *old = getenv("POLYMORPH_SHADOW");
    char *saved = old ? strdup(old) : NULL;
    setenv("POLYMORPH_SHADOW", "0", 1);
    pm_sim *a = make_sim(&cfg);
    setenv("POLYMORPH_SHADOW", "1", 1);
    pm_sim *b = make_sim(&cfg);
    if (saved) setenv("POLYMORPH_SHADOW", saved, 1);
    else unsetenv("POLYMORPH_SHADOW");
    CHECK(!a->shadow_on && b->shadow_on);
    pm_sim_destroy(a);
    pm_sim_destroy(b);
    free(saved);
}

int main(void)
{
    RUN(test_matmul_formats);
    RUN(test_matmul_shapes);
    RUN(test_invalidation_program);
    RUN(test_host_sram_write_between_runs);
    RUN(test_sw_program);
    RUN(test_two_engines);
    RUN(test_budget);
    RUN(test_large_loads);
    RUN(test_many_keys);
    RUN(test_shadow_touches);
    RUN(test_shadow_2d);
    RUN(test_shadow_across_runs);
    RUN(test_shadow_two_engines);
    RUN(test_shadow_env);
    return TEST_SUMMARY();
}
