/* The tensor unit's cycle-by-cycle reference model: every processing element
 * and every register of the array, one clock edge at a time, for small
 * shapes. Slow and literal on purpose: the tests hold the fast model
 * (exec_tensor.c) to its output bits and cycle counts (docs/tensor.md). */
#include "polymorph/numerics.h"
#include "polymorph/sim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* An operand or partial sum travelling through the array. */
typedef struct tok {
    bool v;
    uint32_t tile; /* fold (os) or weight tile (ws) it belongs to */
    uint32_t m, k; /* output row (ws), or k index (os) */
    float x;
} tok;

/* An output-stationary PE: two accumulators (fold f uses c[f % 2], so fold
 * f+1 computes while fold f waits to be copied out) and one register of its
 * column's output shift chain. */
typedef struct os_pe {
    tok a, b;
    float c[2];
    bool held[2]; /* c[] holds a finished sum not yet copied to the chain */
    tok out;      /* output chain register; m/k hold the output's row/column */
    bool out_we;  /* a real output (not padding of a ragged fold) */
} os_pe;

typedef struct ws_pe {
    tok a, p;          /* operand passing right, partial sum passing down */
    bool w_full, s_full;
    uint32_t w_tile, s_tile;
    bool w_has, s_has; /* weight present (false: padding of a ragged tile, the sum passes) */
    float w, s;        /* active weight and shadow weight */
} ws_pe;

typedef struct model {
    const pm_systolic_problem *p;
    pm_systolic_result *res;
    pm_error *err;
    uint32_t R, C;
    uint64_t t;
    uint32_t reads, writes; /* accumulator port use in the current cycle */
    uint64_t last_write;
} model;

static float bf16(uint16_t h) { return pm_f32_from_bits((uint32_t)h << 16); }

static pm_status broken(model *md, uint32_t i, uint32_t j, const char *what)
{
    return pm_error_set(md->err, PM_ERR_INVALID, "cycle model: PE(%u,%u) cycle %llu: %s", i, j,
                        (unsigned long long)md->t, what);
}

static void end_cycle(model *md)
{
    if (md->reads > md->res->max_acc_reads) md->res->max_acc_reads = md->reads;
    if (md->writes > md->res->max_acc_writes) md->res->max_acc_writes = md->writes;
    md->reads = md->writes = 0;
}

/* ---- output-stationary ---- */

/* Fold g (over all chained instructions) enters row i (column j) at cycle
 * start[g] + i (+ j) + k, k < klen[g]. */
static pm_status os_feed(model *md, uint32_t lane, uint32_t folds, const uint64_t *start, const uint32_t *klen,
                         uint32_t *fold, uint32_t *k, bool *any)
{
    *any = false;
    if (md->t < lane) return PM_OK;
    uint64_t u = md->t - lane;
    for (uint32_t g = 0; g < folds; g++) {
        if (u < start[g] || u - start[g] >= klen[g]) continue;
        if (*any) return broken(md, lane, lane, "two folds' operands enter the same edge register");
        *any = true;
        *fold = g;
        *k = (uint32_t)(u - start[g]);
    }
    return PM_OK;
}

static pm_status run_os(model *md, os_pe *pe)
{
    const pm_systolic_problem *p = md->p;
    const uint32_t R = md->R, C = md->C;
    const uint32_t fm = (p->m + R - 1) / R, fn = (p->n + C - 1) / C, folds = fm * fn;
    const uint32_t insns = 1 + p->repeat, all = folds * insns;
    const uint64_t outputs = (uint64_t)all * R * C;
    uint32_t *shifting = calloc(C, sizeof *shifting), *version = calloc((size_t)p->m * p->n, sizeof *version);
    uint32_t *klen = malloc(all * sizeof *klen), *koff = malloc(all * sizeof *koff);
    uint64_t *start = malloc(all * sizeof *start), *written_at = calloc((size_t)p->m * p->n, sizeof *written_at);
    pm_status st = PM_OK;
    if (!shifting || !version || !klen || !koff || !start || !written_at) {
        st = pm_error_set(md->err, PM_ERR_NOMEM, "cycle model: out of memory");
        goto out;
    }
    /* The controller: an instruction's folds every max(K, R) cycles; a
     * chained one after its predecessor's folds and when the first row of
     * each of its folds will find the sum it continues written. */
    uint64_t prev_start = 0, prev_per = 0, prev_k = 0;
    for (uint32_t q = 0, k0 = 0; q < insns; q++) {
        uint32_t kq = p->chunks ? p->chunks[q] : p->k;
        int64_t per = (int64_t)(kq > R ? kq : R) + p->period_delta;
        if (per < 1 || kq < 1 || (p->chunks && k0 + kq > p->k)) {
            st = pm_error_set(md->err, PM_ERR_INVALID, "cycle model: chunk %u (K %u, period %lld)", q, kq,
                              (long long)per);
            goto out;
        }
        uint64_t s0 = 0;
        if (q) {
            /* The array: the previous fold's outputs need R cycles in the
             * output chain before this instruction's first fold (K cycles
             * after it starts) copies its own in. */
            uint64_t last = prev_start + (folds - 1) * prev_per, drain = kq < R ? R - kq : 0;
            s0 = prev_start + folds * prev_per;
            if (last + prev_k + drain > s0) s0 = last + prev_k + drain;
            uint64_t spread = prev_per > (uint64_t)per ? (folds - 1) * (prev_per - (uint64_t)per) : 0;
            int64_t wait = (int64_t)(prev_start + prev_k + 2 * (uint64_t)R - 1 + spread) + p->chain_delta;
            if (wait > (int64_t)s0) s0 = (uint64_t)wait;
        }
        for (uint32_t f = 0; f < folds; f++) {
            start[q * folds + f] = s0 + f * (uint64_t)per;
            klen[q * folds + f] = kq;
            koff[q * folds + f] = p->chunks ? k0 : 0;
        }
        prev_start = s0, prev_per = (uint64_t)per, prev_k = kq;
        if (p->chunks) k0 += kq;
        if (p->chunks && q == insns - 1 && k0 != p->k) {
            st = pm_error_set(md->err, PM_ERR_INVALID, "cycle model: chunks sum to %u, not k = %u", k0, p->k);
            goto out;
        }
    }
    uint64_t written = 0;
    for (md->t = 0; written < outputs && !st; md->t++) {
        /* 1. Output chains: the bottom register leaves into the accumulator
         * write port, the rest move down one row. */
        for (uint32_t j = 0; j < C; j++) {
            if (!shifting[j]) continue;
            os_pe *bot = &pe[(R - 1) * C + j];
            if (bot->out.v) {
                if (bot->out_we) {
                    size_t e = (size_t)bot->out.m * p->n + bot->out.k;
                    p->acc[e] = bot->out.x;
                    version[e]++;
                    written_at[e] = md->t;
                    md->writes++;
                }
                written++;
                md->last_write = md->t;
            }
            for (uint32_t i = R - 1; i > 0; i--) {
                pe[i * C + j].out = pe[(i - 1) * C + j].out;
                pe[i * C + j].out_we = pe[(i - 1) * C + j].out_we;
            }
            pe[j].out.v = false;
            shifting[j]--;
        }
        /* 2. Operands move one PE right (A) and down (B); the edges take the
         * skewed inputs of the fold being streamed. */
        for (uint32_t i = 0; i < R && !st; i++)
            for (uint32_t j = C; j-- > 0;) {
                if (j) {
                    pe[i * C + j].a = pe[i * C + j - 1].a;
                    continue;
                }
                uint32_t g = 0, k = 0;
                bool any;
                if ((st = os_feed(md, i, all, start, klen, &g, &k, &any))) break;
                uint32_t m = (g % folds / fn) * R + i;
                float x = any && m < p->m ? bf16(p->a[(size_t)m * p->k + koff[g] + k]) : 0.0f;
                pe[i * C].a = (tok){any, g, m, k, x};
            }
        for (uint32_t j = 0; j < C && !st; j++)
            for (uint32_t i = R; i-- > 0;) {
                if (i) {
                    pe[i * C + j].b = pe[(i - 1) * C + j].b;
                    continue;
                }
                uint32_t g = 0, k = 0;
                bool any;
                if ((st = os_feed(md, j, all, start, klen, &g, &k, &any))) break;
                uint32_t n = (g % folds % fn) * C + j;
                float x = any && n < p->n ? bf16(p->b[(size_t)n * p->k + koff[g] + k]) : 0.0f;
                pe[j].b = (tok){any, g, n, k, x};
            }
        /* 3. Every PE with both operands does one MAC in k order; the first
         * starts from +0 (tmm) or the accumulator word read over its
         * column's bus (tmma), which must hold the previous instruction's sum. */
        for (uint32_t i = 0; i < R && !st; i++)
            for (uint32_t j = 0; j < C && !st; j++) {
                os_pe *q = &pe[i * C + j];
                if (!q->a.v && !q->b.v) continue;
                if (q->a.v != q->b.v || q->a.tile != q->b.tile || q->a.k != q->b.k) {
                    st = broken(md, i, j, "A and B operands of different folds or k meet");
                    break;
                }
                uint32_t buf = q->a.tile & 1, m = q->a.m, n = q->b.m, insn = q->a.tile / folds;
                if (q->a.k == 0) {
                    if (q->held[buf]) {
                        st = broken(md, i, j, "accumulator reused before its previous fold was copied out");
                        break;
                    }
                    float init = 0.0f;
                    if ((p->accumulate || insn) && m < p->m && n < p->n) {
                        size_t e = (size_t)m * p->n + n;
                        if (version[e] != insn || (insn && written_at[e] >= md->t)) {
                            st = broken(md, i, j, "accumulator read before the previous instruction wrote it");
                            break;
                        }
                        init = p->acc[e];
                        md->reads++;
                    }
                    q->c[buf] = init;
                }
                q->c[buf] = fmaf(q->a.x, q->b.x, q->c[buf]);
                if (q->a.k + 1 < klen[q->a.tile]) continue;
                q->held[buf] = true;
                if (i < R - 1) continue;
                /* The column's last row is done: copy all R sums into the
                 * output chain at this edge (it must have drained). */
                for (uint32_t r = 0; r < R; r++) {
                    os_pe *s = &pe[r * C + j];
                    if (s->out.v || !s->held[buf]) {
                        st = broken(md, r, j, s->out.v ? "output chain still holds the previous fold"
                                                       : "column copied before this PE finished");
                        break;
                    }
                    uint32_t mr = (q->a.tile % folds / fn) * R + r;
                    s->out = (tok){true, q->a.tile, mr, n, s->c[buf]};
                    s->out_we = mr < p->m && n < p->n;
                    s->held[buf] = false;
                }
                shifting[j] = R;
            }
        end_cycle(md);
    }
out:
    free(shifting);
    free(version);
    free(klen);
    free(koff);
    free(start);
    free(written_at);
    return st;
}

/* ---- weight-stationary ---- */

static pm_status run_ws(model *md, ws_pe *pe)
{
    const pm_systolic_problem *p = md->p;
    const uint32_t R = md->R, C = md->C, L = p->weight_load_rows;
    const uint32_t kt = (p->k + R - 1) / R, nt = (p->n + C - 1) / C, tiles = kt * nt;
    const uint64_t preload = (R + L - 1) / L, gap = p->m > preload ? p->m : preload;
    /* The controller: tile t (K tile t / nt outer, column block t % nt inner)
     * starts streaming at S[t]: after the previous tile's rows and preload,
     * and, for a later K tile, R + 1 cycles after the previous K tile of the
     * same column block started (its sums need R cycles down the array and
     * one to be written before they are read again). */
    uint64_t *S = malloc(tiles * sizeof *S);
    uint32_t *version = calloc((size_t)p->m * p->n, sizeof *version);
    uint64_t *written_at = calloc((size_t)p->m * p->n, sizeof *written_at);
    pm_status st = PM_OK;
    if (!S || !version || !written_at) {
        st = pm_error_set(md->err, PM_ERR_NOMEM, "cycle model: out of memory");
        goto out;
    }
    for (uint32_t t = 0; t < tiles; t++) {
        S[t] = t ? S[t - 1] + gap : preload;
        if (t >= nt) {
            int64_t wait = (int64_t)S[t - nt] + R + 1 + p->period_delta;
            if (wait > (int64_t)S[t]) S[t] = (uint64_t)wait;
        }
    }
    const uint64_t outputs = (uint64_t)tiles * p->m * C;
    uint64_t written = 0;
    for (md->t = 0; written < outputs && !st; md->t++) {
        const uint64_t now = md->t;
        /* 1. Write stage: the sums the bottom row produced last cycle go
         * into the accumulator memory (readable from the next cycle on). */
        for (uint32_t j = 0; j < C; j++) {
            tok *w = &pe[(R - 1) * C + j].p;
            if (!w->v) continue;
            uint32_t n = (w->tile % nt) * C + j;
            if (n < p->n) {
                size_t e = (size_t)w->m * p->n + n;
                p->acc[e] = w->x;
                version[e]++;
                written_at[e] = now;
                md->writes++;
            }
            written++;
            md->last_write = now;
            w->v = false;
        }
        /* 2. Shadow to active when a tile's first row reaches the PE. */
        for (uint32_t i = 0; i < R && !st; i++)
            for (uint32_t j = 0; j < C; j++) {
                ws_pe *q = &pe[i * C + j];
                for (uint32_t t = 0; t < tiles; t++) {
                    if (S[t] + i + j != now) continue;
                    if (!q->s_full || q->s_tile != t) {
                        st = broken(md, i, j, "weight tile not preloaded when its first row arrives");
                        break;
                    }
                    q->w_full = true, q->w_tile = t, q->w_has = q->s_has, q->w = q->s;
                    q->s_full = false;
                }
                if (st) break;
            }
        /* 3. Operands move right, partial sums down; the edges take row m of
         * A (skewed by row i) and the sum entering column j. */
        for (uint32_t i = 0; i < R && !st; i++) {
            for (uint32_t j = C - 1; j > 0; j--) pe[i * C + j].a = pe[i * C + j - 1].a;
            tok in = {0};
            for (uint32_t t = 0; t < tiles; t++) {
                if (now < S[t] + i || now - S[t] - i >= p->m) continue;
                uint32_t m = (uint32_t)(now - S[t] - i), k = (t / nt) * R + i;
                in = (tok){true, t, m, k, k < p->k ? bf16(p->a[(size_t)m * p->k + k]) : 0.0f};
            }
            pe[i * C].a = in;
        }
        for (uint32_t j = 0; j < C && !st; j++) {
            for (uint32_t i = R - 1; i > 0; i--) pe[i * C + j].p = pe[(i - 1) * C + j].p;
            tok in = {0};
            for (uint32_t t = 0; t < tiles && !st; t++) {
                if (now < S[t] + j || now - S[t] - j >= p->m) continue;
                uint32_t m = (uint32_t)(now - S[t] - j), n = (t % nt) * C + j, k_tile = t / nt;
                in = (tok){true, t, m, 0, 0.0f};
                if (n >= p->n || (k_tile == 0 && !p->accumulate)) continue;
                size_t e = (size_t)m * p->n + n;
                if (version[e] != k_tile || (k_tile && written_at[e] >= now))
                    st = broken(md, 0, j, "partial sum read before the previous K tile wrote it");
                in.x = p->acc[e];
                md->reads++;
            }
            pe[j].p = in;
        }
        /* 4. MACs: sum = fma(a, w, sum) in k order down the column; a row
         * without a weight (ragged K tile) passes the sum unchanged. */
        for (uint32_t i = 0; i < R && !st; i++)
            for (uint32_t j = 0; j < C; j++) {
                ws_pe *q = &pe[i * C + j];
                if (!q->a.v && !q->p.v) continue;
                if (q->a.v != q->p.v || q->a.tile != q->p.tile || q->a.m != q->p.m || !q->w_full ||
                    q->w_tile != q->a.tile) {
                    st = broken(md, i, j, "operand, partial sum and weight of different tiles or rows meet");
                    break;
                }
                if (q->w_has) q->p.x = fmaf(q->a.x, q->w, q->p.x);
            }
        /* 5. Preload: tile t+1's weights are written into the shadows while
         * tile t streams, L rows a cycle, skewed like the data (row i,
         * column j at S[t] + i / L + i + j; tile 0 before S[0]). */
        for (uint32_t i = 0; i < R && !st; i++)
            for (uint32_t j = 0; j < C; j++) {
                ws_pe *q = &pe[i * C + j];
                for (uint32_t t = 0; t < tiles; t++) {
                    uint64_t base = t ? S[t - 1] : S[0] - preload;
                    if (base + i / L + i + j != now) continue;
                    if (q->s_full) {
                        st = broken(md, i, j, "shadow weight overwritten before it was used");
                        break;
                    }
                    uint32_t k = (t / nt) * R + i, n = (t % nt) * C + j;
                    q->s_full = true, q->s_tile = t, q->s_has = k < p->k && n < p->n;
                    q->s = q->s_has ? bf16(p->b[(size_t)n * p->k + k]) : 0.0f;
                }
                if (st) break;
            }
        end_cycle(md);
    }
out:
    free(S);
    free(version);
    free(written_at);
    return st;
}

pm_status pm_systolic_cycle_run(const pm_systolic_problem *p, pm_systolic_result *out, pm_error *err)
{
    memset(out, 0, sizeof *out);
    if (!p || !p->a || !p->b || !p->acc)
        return pm_error_set(err, PM_ERR_INVALID, "cycle model: missing operand");
    if (p->rows < 1 || p->rows > 64 || p->cols < 1 || p->cols > 64)
        return pm_error_set(err, PM_ERR_INVALID, "cycle model: array %u x %u (1..64 each)", p->rows, p->cols);
    if (p->m < 1 || p->n < 1 || p->k < 1 || p->m > 4096 || p->n > 4096 || p->k > 4096)
        return pm_error_set(err, PM_ERR_INVALID, "cycle model: shape %u x %u x %u (1..4096 each)", p->m, p->n, p->k);
    if (p->repeat > 64 || (p->repeat && p->dataflow == PM_DATAFLOW_WEIGHT_STATIONARY))
        return pm_error_set(err, PM_ERR_INVALID, "cycle model: repeat %u (os only, at most 64)", p->repeat);
    if (p->dataflow == PM_DATAFLOW_WEIGHT_STATIONARY && (p->weight_load_rows < 1 || p->weight_load_rows > p->rows))
        return pm_error_set(err, PM_ERR_INVALID, "cycle model: weight_load_rows %u (1..rows)", p->weight_load_rows);
    model md = {p, out, err, p->rows, p->cols, 0, 0, 0, 0};
    size_t pes = (size_t)p->rows * p->cols;
    void *pe = calloc(pes, p->dataflow == PM_DATAFLOW_WEIGHT_STATIONARY ? sizeof(ws_pe) : sizeof(os_pe));
    if (!pe) return pm_error_set(err, PM_ERR_NOMEM, "cycle model: out of memory");
    pm_status st = p->dataflow == PM_DATAFLOW_WEIGHT_STATIONARY ? run_ws(&md, pe) : run_os(&md, pe);
    free(pe);
    if (!st) out->cycles = md.last_write + 1;
    return st;
}
