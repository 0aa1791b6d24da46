/* The fast tensor model against the cycle-by-cycle PE model (systolic_cycle.c):
 * random shapes, ragged ones included, several array configs, both
 * dataflows, tmm and tmma. Output bits must be identical and the fast
 * model's cycles (the tensor unit's busy cycles for the one instruction,
 * measured through the simulator) exactly equal to the cycle model's. The
 * model also shows that the fold period and the ws K-tile wait are minimal:
 * one cycle less breaks the array's own rules. */
#define _POSIX_C_SOURCE 200809L
#include "polymorph/config.h"
#include "polymorph/isa.h"
#include "polymorph/numerics.h"
#include "polymorph/sim.h"
#include "test.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) { return pm_test_xorshift(&rng_state); }
static float rndf(float lo, float hi) { return lo + (hi - lo) * (float)(rnd() & 0xFFFFFF) / (float)0x1000000; }

enum { SA = 0x0, SB = 0x40000, SD = 0x80000 };

typedef struct outcome {
    uint64_t cycles;
    pm_status st;
} outcome;

static pm_status run_src(pm_sim *sim, const char *src)
{
    pm_program prog;
    pm_error err;
    pm_program_init(&prog);
    pm_status st = pm_assemble("cycle.pasm", src, &prog, &err);
    if (!st) st = pm_sim_load_program(sim, &prog, 0, &err);
    if (!st) st = pm_sim_run(sim, NULL, &err);
    if (st) fprintf(stderr, "%s\n%s\n", err.message, src);
    pm_program_free(&prog);
    return st;
}

/* One tmm/tmma in the simulator, alone in its run: its cycles are the tensor
 * unit's busy cycles of that run. For tmma, an earlier run sets the
 * accumulator to acc_init (bf16-exact values, no zeros) with a tmm of the
 * identity: acc[i][j] = sum_k I[i][k] * B'[j][k], B'[j][i] = acc_init[i][j],
 * exact because every other term adds an exact zero product. A later run
 * copies the accumulator out with tout.f32. */
static outcome run_fast(const pm_config *cfg, const pm_systolic_problem *p, const void *w_enc, pm_format w,
                        size_t w_bytes, const float *acc_init, float *acc)
{
    outcome o = {0, PM_OK};
    pm_sim *sim = NULL;
    if ((o.st = pm_sim_create(cfg, &sim, NULL))) return o;
    pm_sim_share_sram_port(sim, false);
    char src[1024];
    if (acc_init) {
        uint16_t *eye = calloc((size_t)p->m * p->m, 2), *bt = malloc((size_t)p->n * p->m * 2);
        for (uint32_t i = 0; i < p->m; i++) eye[(size_t)i * p->m + i] = 0x3F80;
        for (uint32_t i = 0; i < p->m; i++)
            for (uint32_t j = 0; j < p->n; j++)
                bt[(size_t)j * p->m + i] = (uint16_t)(pm_f32_bits(acc_init[(size_t)i * p->n + j]) >> 16);
        pm_sim_sram_write(sim, 0, SA, eye, (size_t)p->m * p->m * 2, NULL);
        pm_sim_sram_write(sim, 0, SB, bt, (size_t)p->n * p->m * 2, NULL);
        free(eye);
        free(bt);
        snprintf(src, sizeof src,
                 "li r1, %u\nli r2, %u\ntshape r1, r2, r1, 1\nli r4, 0\nli r5, %d\nli r6, %d\n"
                 "tmm.bf16 r4, r5, r6\nhalt\n",
                 p->m, p->n, SA, SB);
        if ((o.st = run_src(sim, src))) goto out;
    }
    pm_sim_sram_write(sim, 0, SA, p->a, (size_t)p->m * p->k * 2, NULL);
    pm_sim_sram_write(sim, 0, SB, w_enc, w_bytes, NULL);
    pm_sim_reset_counters(sim);
    snprintf(src, sizeof src,
             "li r1, %u\nli r2, %u\nli r3, %u\ntshape r1, r2, r3, %d\n"
             "li r4, 0\nli r5, %d\nli r6, %d\n%s.%s r4, r5, r6\nhalt\n",
             p->m, p->n, p->k, p->dataflow == PM_DATAFLOW_WEIGHT_STATIONARY ? 2 : 1, SA, SB,
             p->accumulate ? "tmma" : "tmm", pm_format_get(w)->name);
    if ((o.st = run_src(sim, src))) goto out;
    pm_counters c;
    pm_sim_counters(sim, &c);
    o.cycles = c.unit[PM_UNIT_TENSOR].busy_cycles;
    snprintf(src, sizeof src, "li r1, %u\nli r2, %u\ntshape r1, r2, r2, 0\nli r4, 0\nli r7, %d\n"
             "tout.f32 r7, r4\nhalt\n", p->m, p->n, SD);
    if ((o.st = run_src(sim, src))) goto out;
    pm_sim_sram_read(sim, 0, SD, acc, (size_t)p->m * p->n * 4, NULL);
out:
    pm_sim_destroy(sim);
    return o;
}

static pm_config base_config(uint32_t R, uint32_t C, uint32_t L)
{
    pm_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (pm_config_preset("edge", &cfg, NULL)) exit(2);
    cfg.tensor_rows = R;
    cfg.tensor_cols = C;
    cfg.tensor_weight_load_rows = L;
    cfg.sram_bytes_per_cycle = 1u << 24; /* the array, not the port, is measured */
    cfg.sram_banks = 1;
    return cfg;
}

static int compared, exact;

static void one_case(uint32_t R, uint32_t C, uint32_t L, pm_dataflow df, uint32_t m, uint32_t n, uint32_t k,
                     bool accumulate, pm_format w)
{
    pm_config cfg = base_config(R, C, L);
    size_t w_bytes = 0;
    CHECK(pm_format_bytes(w, (size_t)n * k, &w_bytes));
    uint16_t *a = malloc((size_t)m * k * 2), *b = malloc((size_t)n * k * 2);
    float *wx = malloc((size_t)n * k * 4), *acc0 = malloc((size_t)m * n * 4);
    float *slow = malloc((size_t)m * n * 4), *fast = malloc((size_t)m * n * 4);
    uint8_t *enc = malloc(w_bytes + 4);
    for (size_t i = 0; i < (size_t)m * k; i++) a[i] = pm_f32_to_bf16(rndf(-2, 2));
    for (size_t i = 0; i < (size_t)n * k; i++) wx[i] = rndf(-2, 2);
    CHECK(pm_format_encode(w, wx, (size_t)n * k, enc, NULL) == PM_OK);
    CHECK(pm_format_decode(w, enc, (size_t)n * k, wx, NULL) == PM_OK);
    for (size_t i = 0; i < (size_t)n * k; i++) b[i] = pm_f32_to_bf16(wx[i]);
    for (size_t i = 0; i < (size_t)m * n; i++) acc0[i] = pm_bf16_to_f32(pm_f32_to_bf16(rndf(0.5f, 4) * (rnd() & 1 ? 1 : -1)));
    memcpy(slow, acc0, (size_t)m * n * 4);

    pm_systolic_problem p = {R, C, L, df, m, n, k, accumulate, a, b, slow, 0, 0, 0, NULL};
    pm_systolic_result r;
    pm_error err;
    pm_status st = pm_systolic_cycle_run(&p, &r, &err);
    CHECK_MSG(st == PM_OK, "cycle model: %s", err.message);
    outcome o = run_fast(&cfg, &p, enc, w, w_bytes, accumulate ? acc0 : NULL, fast);
    CHECK(o.st == PM_OK);
    const char *dfn = df == PM_DATAFLOW_WEIGHT_STATIONARY ? "ws" : "os";
    for (size_t i = 0; i < (size_t)m * n && !st; i++)
        if (pm_f32_bits(slow[i]) != pm_f32_bits(fast[i])) {
            CHECK_MSG(0, "%s R%u C%u L%u %ux%ux%u %s: element %zu fast %a cycle model %a", dfn, R, C, L, m, n, k,
                      accumulate ? "tmma" : "tmm", i, (double)fast[i], (double)slow[i]);
            break;
        }
    if (!st && !o.st) {
        compared++;
        exact += o.cycles == r.cycles;
        double rel = fabs((double)o.cycles - (double)r.cycles) / (double)r.cycles;
        CHECK_MSG(o.cycles == r.cycles, "%s R%u C%u L%u %ux%ux%u %s: fast %llu cycles, cycle model %llu (%.2f%%)",
                  dfn, R, C, L, m, n, k, accumulate ? "tmma" : "tmm", (unsigned long long)o.cycles,
                  (unsigned long long)r.cycles, 100 * rel);
        CHECK(r.max_acc_reads <= C && r.max_acc_writes <= C); /* the accumulator port: C words a cycle */
    }
    free(a), free(b), free(wx), free(acc0), free(slow), free(fast), free(enc);
}

TEST(random_shapes_both_dataflows)
{
    static const pm_format formats[] = {PM_FMT_BF16, PM_FMT_INT8, PM_FMT_E4M3, PM_FMT_F32};
    for (int trial = 0; trial < 160; trial++) {
        uint32_t R = 2 + rnd() % 7, C = 2 + rnd() % 7;
        uint32_t choices[3] = {1, 2 < R ? 2 : R, R}, L = choices[rnd() % 3];
        pm_dataflow df = (trial / 8) % 2 ? PM_DATAFLOW_WEIGHT_STATIONARY : PM_DATAFLOW_OUTPUT_STATIONARY;
        uint32_t m, n, k;
        switch (trial % 8) {
        case 0: m = 1, n = 1 + rnd() % 20, k = 1 + rnd() % 20; break;  /* GEMV */
        case 1: m = 1 + rnd() % 20, n = 1 + rnd() % 20, k = 1 + rnd() % (R > 1 ? R - 1 : 1); break; /* K < R */
        case 2: m = R * (1 + rnd() % 3), n = C * (1 + rnd() % 3), k = R * (1 + rnd() % 3); break; /* whole tiles */
        default: m = 1 + rnd() % 25, n = 1 + rnd() % 25, k = 1 + rnd() % 30; break; /* ragged */
        }
        one_case(R, C, L, df, m, n, k, (trial / 2) % 3 == 0, formats[trial % 4]);
    }
    printf("cycle model: %d instructions compared, %d with exactly equal cycles\n", compared, exact);
}

TEST(block_weight_format)
{
    one_case(4, 4, 2, PM_DATAFLOW_OUTPUT_STATIONARY, 5, 6, 64, false, PM_FMT_Q4_0);
    one_case(4, 4, 2, PM_DATAFLOW_WEIGHT_STATIONARY, 5, 6, 64, true, PM_FMT_MXFP4);
    one_case(3, 5, 3, PM_DATAFLOW_WEIGHT_STATIONARY, 2, 7, 32, false, PM_FMT_NVFP4);
}

/* The schedule is as tight as the array allows: one cycle less per fold (os)
 * or on the K-tile wait (ws) makes the cycle model report the register it
 * would overwrite or the partial sum it would read too early. */
TEST(schedule_is_minimal)
{
    uint16_t a[64 * 64], b[64 * 64];
    float acc[64 * 64];
    for (size_t i = 0; i < 64 * 64; i++) a[i] = b[i] = 0x3F80;
    const struct {
        uint32_t R, C, L, m, n, k;
        pm_dataflow df;
    } cases[] = {
        {4, 4, 1, 8, 8, 9, PM_DATAFLOW_OUTPUT_STATIONARY},  /* K > R: the feed itself overlaps */
        {6, 3, 1, 12, 6, 2, PM_DATAFLOW_OUTPUT_STATIONARY}, /* K < R: the output chain has not drained */
        {4, 4, 1, 1, 4, 12, PM_DATAFLOW_WEIGHT_STATIONARY}, /* M = 1: the K-tile wait binds */
        {5, 3, 5, 2, 3, 20, PM_DATAFLOW_WEIGHT_STATIONARY},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        pm_systolic_problem p = {cases[c].R, cases[c].C, cases[c].L, cases[c].df, cases[c].m, cases[c].n,
                                 cases[c].k, false, a, b, acc, 0, 0, 0, NULL};
        pm_systolic_result r;
        pm_error err;
        CHECK_MSG(pm_systolic_cycle_run(&p, &r, &err) == PM_OK, "case %zu: %s", c, err.message);
        p.period_delta = -1;
        pm_status st = pm_systolic_cycle_run(&p, &r, &err);
        CHECK_MSG(st == PM_ERR_INVALID, "case %zu: one cycle less still works", c);
        if (st) CHECK_MSG(strstr(err.message, "cycle model: PE(") != NULL, "%s", err.message);
    }
}

/* tmm then `repeat` tmma on the same tile, back to back in one run: a
 * chained tmma starts when the first sums it reads are written (K + 2R - 1 after
 * its predecessor started) or when the array is free, whichever is later.
 * The cycle model runs the same chain and checks every accumulator read. */
static void chain_case(uint32_t R, uint32_t C, uint32_t m, uint32_t n, uint32_t k, uint32_t repeat)
{
    pm_config cfg = base_config(R, C, 1);
    uint16_t *a = malloc((size_t)m * k * 2), *b = malloc((size_t)n * k * 2);
    float *slow = calloc((size_t)m * n, 4), *fast = malloc((size_t)m * n * 4);
    for (size_t i = 0; i < (size_t)m * k; i++) a[i] = pm_f32_to_bf16(rndf(-2, 2));
    for (size_t i = 0; i < (size_t)n * k; i++) b[i] = pm_f32_to_bf16(rndf(-2, 2));
    pm_systolic_problem p = {R, C, 1, PM_DATAFLOW_OUTPUT_STATIONARY, m, n, k, false, a, b, slow, 0, repeat, 0, NULL};
    pm_systolic_result r;
    pm_error err;
    pm_status st = pm_systolic_cycle_run(&p, &r, &err);
    CHECK_MSG(st == PM_OK, "cycle model: %s", err.message);

    pm_sim *sim = NULL;
    CHECK(pm_sim_create(&cfg, &sim, NULL) == PM_OK);
    if (!sim) return;
    pm_sim_share_sram_port(sim, false);
    pm_sim_sram_write(sim, 0, SA, a, (size_t)m * k * 2, NULL);
    pm_sim_sram_write(sim, 0, SB, b, (size_t)n * k * 2, NULL);
    char src[512];
    snprintf(src, sizeof src,
             "li r1, %u\nli r2, %u\nli r3, %u\ntshape r1, r2, r3, 1\nli r4, 0\nli r5, %d\nli r6, %d\nli r9, %u\n"
             "tmm.bf16 r4, r5, r6\nagain: tmma.bf16 r4, r5, r6\nloop r9, again\nhalt\n",
             m, n, k, SA, SB, repeat);
    CHECK(run_src(sim, src) == PM_OK);
    pm_counters c;
    pm_sim_counters(sim, &c);
    uint64_t busy = c.unit[PM_UNIT_TENSOR].busy_cycles;
    snprintf(src, sizeof src, "li r1, %u\nli r2, %u\ntshape r1, r2, r2, 0\nli r4, 0\nli r7, %d\n"
             "tout.f32 r7, r4\nhalt\n", m, n, SD);
    CHECK(run_src(sim, src) == PM_OK);
    pm_sim_sram_read(sim, 0, SD, fast, (size_t)m * n * 4, NULL);
    pm_sim_destroy(sim);
    CHECK_MSG(memcmp(slow, fast, (size_t)m * n * 4) == 0, "chain R%u C%u %ux%ux%u x%u: bits differ", R, C, m, n, k,
              repeat + 1);
    if (!st)
        CHECK_MSG(busy == r.cycles, "chain R%u C%u %ux%ux%u x%u: fast %llu cycles, cycle model %llu", R, C, m, n, k,
                  repeat + 1, (unsigned long long)busy, (unsigned long long)r.cycles);
    /* When the wait binds, one cycle less reads a sum before it is written. */
    uint64_t folds = (uint64_t)((m + R - 1) / R) * ((n + C - 1) / C), per = k > R ? k : R;
    if (folds * per < k + 2ull * R - 1) {
        p.chain_delta = -1;
        memset(slow, 0, (size_t)m * n * 4);
        CHECK_MSG(pm_systolic_cycle_run(&p, &r, &err) == PM_ERR_INVALID, "chain R%u C%u %ux%ux%u: wait not minimal",
                  R, C, m, n, k);
    }
    free(a), free(b), free(slow), free(fast);
}

TEST(chained_tmma)
{
    chain_case(4, 4, 4, 4, 4, 3);   /* one fold: waits K + 2R - 1 */
    chain_case(4, 4, 8, 4, 4, 2);   /* two folds of R: still waits */
    chain_case(3, 5, 2, 9, 10, 2);  /* K > R */
    chain_case(4, 3, 9, 7, 2, 3);   /* K < R, ragged: back to back */
    for (int t = 0; t < 30; t++)
        chain_case(2 + rnd() % 7, 2 + rnd() % 7, 1 + rnd() % 20, 1 + rnd() % 20, 1 + rnd() % 20, 1 + rnd() % 3);
}

/* K-chunked accumulation: tmm over the first chunk of k, tmma over the
 * rest, each on its packed slice of A and B, back to back. The bits equal one
 * tmm over all of k (the order is k ascending either way) and the cycles
 * the cycle model's, including chunks of different lengths (a longer fold
 * period before a shorter one delays the chain by the spread of the folds). */
static void chunk_case(uint32_t R, uint32_t C, uint32_t m, uint32_t n, const uint32_t *chunks, uint32_t count)
{
    uint32_t k = 0;
    for (uint32_t q = 0; q < count; q++) k += chunks[q];
    pm_config cfg = base_config(R, C, 1);
    uint16_t *a = malloc((size_t)m * k * 2), *b = malloc((size_t)n * k * 2), *slice = malloc((size_t)(m + n) * k * 2);
    float *slow = calloc((size_t)m * n, 4), *whole = calloc((size_t)m * n, 4), *fast = malloc((size_t)m * n * 4);
    for (size_t i = 0; i < (size_t)m * k; i++) a[i] = pm_f32_to_bf16(rndf(-2, 2));
    for (size_t i = 0; i < (size_t)n * k; i++) b[i] = pm_f32_to_bf16(rndf(-2, 2));
    pm_systolic_problem p = {R, C, 1, PM_DATAFLOW_OUTPUT_STATIONARY, m, n, k, false, a, b, slow, 0, count - 1, 0, chunks};
    pm_systolic_result r, r1;
    pm_error err;
    pm_status st = pm_systolic_cycle_run(&p, &r, &err);
    CHECK_MSG(st == PM_OK, "cycle model: %s", err.message);
    pm_systolic_problem one = {R, C, 1, PM_DATAFLOW_OUTPUT_STATIONARY, m, n, k, false, a, b, whole, 0, 0, 0, NULL};
    CHECK(pm_systolic_cycle_run(&one, &r1, &err) == PM_OK);
    CHECK_MSG(memcmp(slow, whole, (size_t)m * n * 4) == 0, "chunked sums differ from one tmm");

    pm_sim *sim = NULL;
    CHECK(pm_sim_create(&cfg, &sim, NULL) == PM_OK);
    if (!sim) return;
    pm_sim_share_sram_port(sim, false);
    char src[8192];
    int len = snprintf(src, sizeof src, "li r1, %u\nli r2, %u\nli r4, 0\nli r5, %d\nli r6, %d\n", m, n, SA, SB);
    uint64_t aoff = SA, boff = SB;
    for (uint32_t q = 0, k0 = 0; q < count; k0 += chunks[q], q++) {
        for (uint32_t i = 0; i < m; i++) memcpy(slice + (size_t)i * chunks[q], a + (size_t)i * k + k0, chunks[q] * 2);
        pm_sim_sram_write(sim, 0, aoff, slice, (size_t)m * chunks[q] * 2, NULL);
        for (uint32_t j = 0; j < n; j++) memcpy(slice + (size_t)j * chunks[q], b + (size_t)j * k + k0, chunks[q] * 2);
        pm_sim_sram_write(sim, 0, boff, slice, (size_t)n * chunks[q] * 2, NULL);
        aoff += (uint64_t)m * chunks[q] * 2, boff += (uint64_t)n * chunks[q] * 2;
        len += snprintf(src + len, sizeof src - (size_t)len, "li r3, %u\ntshape r1, r2, r3, 1\n%s.bf16 r4, r5+, r6+\n",
                        chunks[q], q ? "tmma" : "tmm");
    }
    snprintf(src + len, sizeof src - (size_t)len, "halt\n");
    CHECK(run_src(sim, src) == PM_OK);
    pm_counters c;
    pm_sim_counters(sim, &c);
    uint64_t busy = c.unit[PM_UNIT_TENSOR].busy_cycles;
    snprintf(src, sizeof src, "li r1, %u\nli r2, %u\ntshape r1, r2, r2, 0\nli r4, 0\nli r7, %d\n"
             "tout.f32 r7, r4\nhalt\n", m, n, SD);
    CHECK(run_src(sim, src) == PM_OK);
    pm_sim_sram_read(sim, 0, SD, fast, (size_t)m * n * 4, NULL);
    pm_sim_destroy(sim);
    CHECK_MSG(memcmp(slow, fast, (size_t)m * n * 4) == 0, "chunks R%u C%u %ux%u: bits differ", R, C, m, n);
    if (!st)
        CHECK_MSG(busy == r.cycles, "chunks R%u C%u %ux%ux%u (%u chunks): fast %llu cycles, cycle model %llu", R, C,
                  m, n, k, count, (unsigned long long)busy, (unsigned long long)r.cycles);
    free(a), free(b), free(slice), free(slow), free(whole), free(fast);
}

TEST(k_chunked_accumulation)
{
    const uint32_t even[4] = {8, 8, 8, 8}, ragged[3] = {12, 12, 5}, shrinking[3] = {20, 3, 1}, growing[3] = {2, 9, 30};
    chunk_case(4, 4, 4, 4, even, 4);      /* one fold: every tmma waits */
    chunk_case(4, 4, 12, 8, even, 4);     /* six folds: back to back */
    chunk_case(4, 3, 9, 7, ragged, 3);    /* the last chunk shorter: the spread decides */
    chunk_case(5, 4, 11, 9, shrinking, 3);
    chunk_case(3, 6, 7, 13, growing, 3);
    for (int t = 0; t < 20; t++) {
        uint32_t chunks[4], count = 2 + rnd() % 3;
        for (uint32_t q = 0; q < count; q++) chunks[q] = 1 + rnd() % 24;
        chunk_case(2 + rnd() % 7, 2 + rnd() % 7, 1 + rnd() % 24, 1 + rnd() % 24, chunks, count);
    }
}

TEST(bad_problems_are_refused)
{
    uint16_t a[4] = {0}, b[4] = {0};
    float acc[4];
    pm_systolic_problem p = {0, 2, 1, PM_DATAFLOW_OUTPUT_STATIONARY, 2, 2, 1, false, a, b, acc, 0, 0, 0, NULL};
    pm_systolic_result r;
    pm_error err;
    CHECK(pm_systolic_cycle_run(&p, &r, &err) == PM_ERR_INVALID);
    p.rows = 2, p.m = 0;
    CHECK(pm_systolic_cycle_run(&p, &r, &err) == PM_ERR_INVALID);
    p.m = 2, p.dataflow = PM_DATAFLOW_WEIGHT_STATIONARY, p.weight_load_rows = 3;
    CHECK(pm_systolic_cycle_run(&p, &r, &err) == PM_ERR_INVALID);
    p.weight_load_rows = 2, p.a = NULL;
    CHECK(pm_systolic_cycle_run(&p, &r, &err) == PM_ERR_INVALID);
}

int main(void)
{
    RUN(random_shapes_both_dataflows);
    RUN(block_weight_format);
    RUN(schedule_is_minimal);
    RUN(chained_tmma);
    RUN(k_chunked_accumulation);
    RUN(bad_problems_are_refused);
    return TEST_SUMMARY();
}
