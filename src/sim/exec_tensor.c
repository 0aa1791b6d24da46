/* Tensor unit bodies (docs/tensor.md): tshape and tepi set state at issue;
 * tmm/tmma multiply bf16 A by weights B decoded from any storage format into
 * the fp32 accumulator memory through the ordered host kernel (gemm_fast.h);
 * tout writes an accumulator tile through the epilogue. Each body checks
 * every operand before it changes anything, then reports the array timing. */
#include "sim_internal.h"

#include "gemm_fast.h"
#include "wcache.h"

#include <stdlib.h>
#include <string.h>

struct pm_tensor_state {
    bool shaped;
    int64_t m, n, k;       /* as the registers held them at tshape (checked at use) */
    uint8_t dataflow;      /* tshape imm: 0 config, 1 os, 2 ws */
    int64_t bias_addr;     /* tepi */
    uint32_t scale_bits;
    uint32_t mode;
    float *b;              /* decoded weights (fp32), grown, never per instruction */
    uint16_t *b16;         /* the same rounded to bf16 codes: what enters the array */
    size_t b_cap, b16_cap;
    pm_wcache *wc;         /* decoded weights kept across instructions and runs (wcache.h) */
};

enum { EPI_BIAS = 1, EPI_SCALE = 2, EPI_ACT = 4, EPI_SLOT_SHIFT = 4, EPI_KNOWN = 0x77 };

void pm_tensor_reset(pm_engine *e)
{
    if (!e->tensor) return;
    struct pm_tensor_state *t = e->tensor;
    t->shaped = false;
    t->m = t->n = t->k = 0;
    t->dataflow = 0;
    t->bias_addr = 0;
    t->scale_bits = 0;
    t->mode = 0;
    if (t->wc) pm_wcache_run_begin(t->wc, e);
}

void pm_tensor_free(pm_engine *e)
{
    if (!e->tensor) return;
    free(e->tensor->b);
    free(e->tensor->b16);
    pm_wcache_destroy(e->tensor->wc);
    free(e->tensor);
    e->tensor = NULL;
}

void pm_tensor_sim_free(pm_sim *sim)
{
    pm_gemm_pool_destroy(sim->gemm_pool);
    sim->gemm_pool = NULL;
}

void pm_sim_set_threads(pm_sim *sim, unsigned threads)
{
    if (sim->gemm_pool && threads == sim->gemm_threads) return;
    pm_tensor_sim_free(sim); /* the next matmul starts a pool of the new size */
    sim->gemm_threads = threads;
}

static pm_status state(pm_engine *e, struct pm_tensor_state **out, pm_error *err)
{
    if (!e->tensor) {
        if (!(e->tensor = calloc(1, sizeof *e->tensor)))
            return pm_error_set(err, PM_ERR_NOMEM, "out of host memory for the tensor unit state");
        /* Without a cache (no memory) the unit decodes every time. The state
         * may be born mid-run, so the cache starts the run here. */
        if ((e->tensor->wc = pm_wcache_create())) pm_wcache_run_begin(e->tensor->wc, e);
    }
    *out = e->tensor;
    return PM_OK;
}

pm_wcache *pm_tensor_wcache(pm_engine *e, bool create)
{
    struct pm_tensor_state *t = e->tensor;
    pm_error ignored;
    if (!t && (!create || state(e, &t, &ignored))) return NULL;
    return t->wc;
}

void pm_sim_wcache_stats(const pm_sim *sim, pm_wcache_stats *out)
{
    memset(out, 0, sizeof *out);
    for (uint32_t i = 0; i < sim->cfg.engines; i++)
        if (sim->engines[i].tensor && sim->engines[i].tensor->wc) pm_wcache_add_stats(sim->engines[i].tensor->wc, out);
}

void pm_sim_set_wcache_mb(pm_sim *sim, uint64_t mb)
{
    uint64_t bytes = mb > ((uint64_t)1 << 40) ? (uint64_t)1 << 60 : mb << 20;
    for (uint32_t i = 0; i < sim->cfg.engines; i++) {
        pm_wcache *wc = pm_tensor_wcache(&sim->engines[i], true);
        if (wc) pm_wcache_set_budget(wc, bytes);
    }
}

static pm_status grow(void **buf, size_t *cap, size_t n, size_t elem, pm_error *err)
{
    if (n <= *cap) return PM_OK;
    size_t c = *cap ? *cap : 4096;
    while (c < n) c *= 2;
    void *p = realloc(*buf, c * elem);
    if (!p) return pm_error_set(err, PM_ERR_NOMEM, "out of host memory for %zu tensor operand elements", n);
    *buf = p;
    *cap = c;
    return PM_OK;
}

/* ---- control-core state: tshape, tepi ---- */

pm_status pm_exec_TSHAPE(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    (void)c;
    if (in->op[3] < 0 || in->op[3] > 2)
        return pm_sim_fault(err, "dataflow %lld is not 0 (config), 1 (os) or 2 (ws)", (long long)in->op[3]);
    struct pm_tensor_state *t = NULL;
    pm_status st = state(e, &t, err);
    if (st) return st;
    t->m = e->regs[in->op[0] & 31];
    t->n = e->regs[in->op[1] & 31];
    t->k = e->regs[in->op[2] & 31];
    t->dataflow = (uint8_t)in->op[3];
    t->shaped = true;
    return PM_OK;
}

pm_status pm_exec_TEPI(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    (void)c;
    int64_t mode = e->regs[in->op[2] & 31];
    if (mode < 0 || (mode & ~(int64_t)EPI_KNOWN))
        return pm_sim_fault(err, "epilogue mode 0x%llx (r%u) sets bits other than 0-2 (bias, scale, activation) "
                                 "and 4-6 (LFU slot)",
                            (unsigned long long)mode, (unsigned)(in->op[2] & 31));
    struct pm_tensor_state *t = NULL;
    pm_status st = state(e, &t, err);
    if (st) return st;
    t->bias_addr = e->regs[in->op[0] & 31];
    t->scale_bits = (uint32_t)e->regs[in->op[1] & 31];
    t->mode = (uint32_t)mode;
    return PM_OK;
}

/* ---- operands ---- */

typedef struct shape {
    uint64_t m, n, k;
    bool ws;
} shape;

/* The shape set by tshape, checked now that an instruction uses it: every
 * dimension positive and every operand's element count representable. */
static pm_status get_shape(pm_engine *e, bool need_k, shape *s, pm_error *err)
{
    const struct pm_tensor_state *t = e->tensor;
    if (!t || !t->shaped) return pm_sim_fault(err, "no tensor shape: run tshape first");
    const int64_t dims[3] = {t->m, t->n, t->k};
    const char *names = "MNK";
    for (int d = 0; d < (need_k ? 3 : 2); d++) {
        if (dims[d] <= 0)
            return pm_sim_fault(err, "tensor shape %c = %lld (set by tshape) must be positive", names[d],
                                (long long)dims[d]);
        if (dims[d] > PM_MAX_COUNT)
            return pm_sim_fault(err, "tensor shape %c = %lld (set by tshape) is too large", names[d],
                                (long long)dims[d]);
    }
    s->m = (uint64_t)t->m;
    s->n = (uint64_t)t->n;
    s->k = need_k ? (uint64_t)t->k : 1;
    /* Each operand (A: m*k, B: n*k, acc: m*n) must be countable. */
    if (s->m > PM_MAX_COUNT / s->n || s->m > PM_MAX_COUNT / s->k || s->n > PM_MAX_COUNT / s->k)
        return pm_sim_fault(err, "tensor shape M x N x K = %llu x %llu x %llu (set by tshape) is too large",
                            (unsigned long long)s->m, (unsigned long long)s->n, (unsigned long long)s->k);
    int df = t->dataflow ? t->dataflow - 1 : (int)e->cfg->tensor_dataflow;
    s->ws = df == PM_DATAFLOW_WEIGHT_STATIONARY;
    return PM_OK;
}

/* Elements that make one whole storage unit of a row: a block, or the two
 * codes of a byte for 4-bit element formats, so every row starts on one. */
static uint32_t row_unit(const pm_format_info *fi)
{
    if (fi->is_block) return fi->block_elems;
    return fi->elem_bits < 8 ? 8 / fi->elem_bits : 1;
}

static pm_status row_format(pm_format f, uint64_t per_row, uint64_t rows, const char *dim, const char *what,
                            uint64_t *bytes, pm_error *err)
{
    const pm_format_info *fi = pm_format_get(f);
    uint32_t unit = row_unit(fi);
    size_t b;
    if (per_row % unit || !pm_format_bytes(f, (size_t)(per_row * rows), &b))
        return pm_sim_fault(err, "%s = %llu is not a whole number of %s %s (%u elements): every %s row must start "
                                 "on one",
                            dim, (unsigned long long)per_row, fi->name, fi->is_block ? "blocks" : "bytes", unit,
                            what);
    *bytes = b;
    return PM_OK;
}

/* Bounds-check an accumulator tile at the byte address in the operand's
 * register; the accumulator memory holds fp32 words. */
static pm_status acc_operand(pm_engine *e, int64_t op, uint64_t bytes, bool write, pm_cost *c, uint64_t *word,
                             pm_error *err)
{
    unsigned reg = pm_areg(op);
    int64_t addr = e->regs[reg];
    uint64_t size = e->cfg->accum_bytes;
    if (addr < 0 || (uint64_t)addr > size || bytes > size - (uint64_t)addr)
        return pm_sim_fault(err, "operand acc: accumulator %s [0x%llx, 0x%llx) through r%u is out of bounds "
                                 "(accumulator memory is 0x%llx bytes)",
                            write ? "write" : "read", (unsigned long long)addr,
                            (unsigned long long)((uint64_t)addr + bytes), reg, (unsigned long long)size);
    if (addr % 4)
        return pm_sim_fault(err, "operand acc: accumulator address 0x%llx (r%u) is not a multiple of 4 (fp32 words)",
                            (unsigned long long)addr, reg);
    pm_cost_range(c, PM_RANGE_ACCUM, write, (uint64_t)addr, (uint64_t)addr + bytes);
    *word = (uint64_t)addr / 4;
    return PM_OK;
}

/* deferred: the B operand, whose shadowed bytes (shadow.c) are copied only
 * if the cache misses. */
static pm_status sram_named(pm_engine *e, int64_t op, const char *name, uint64_t bytes, bool write, bool deferred,
                            pm_cost *c, uint64_t *off, pm_error *err)
{
    pm_status st = deferred ? pm_sram_operand_deferred(e, op, bytes, c, off, err)
                            : pm_sram_operand(e, op, bytes, write, c, off, err);
    if (st) pm_error_prefix(err, "operand %s: ", name);
    return st;
}

/* SRAM port cycles of the busiest bank when each operand range is read
 * `times` times (the array re-reads A and B per pass, docs/tensor.md). */
static uint64_t banked_cycles(const pm_config *cfg, const uint64_t lo[], const uint64_t bytes[],
                              const uint64_t times[], int count)
{
    uint64_t total[PM_MAX_SRAM_BANKS] = {0}, per[PM_MAX_SRAM_BANKS];
    pm_banks b;
    for (int i = 0; i < count; i++) {
        if (!bytes[i] || !times[i]) continue;
        pm_banks_init(&b, cfg);
        pm_banks_add(&b, lo[i], bytes[i]);
        pm_banks_per_bank(&b, per);
        for (uint32_t k = 0; k < b.banks; k++) total[k] += per[k] * times[i];
    }
    pm_banks_init(&b, cfg);
    uint64_t most = 0;
    for (uint32_t k = 0; k < b.banks; k++)
        if (total[k] > most) most = total[k];
    return pm_ceil_div(most, b.width);
}

/* ---- timing (docs/tensor.md, "Timing"; checked against systolic_cycle.c) ---- */

/* Array cycles of one tmm/tmma: `stream` until the array can take the next
 * instruction's operands, `total` until the last result is in the
 * accumulator memory. */
static void array_cycles(const pm_config *cfg, const shape *s, uint64_t *stream, uint64_t *total)
{
    const uint64_t R = cfg->tensor_rows, C = cfg->tensor_cols;
    if (!s->ws) {
        /* Folds of R x C outputs follow each other every max(K, R) cycles;
         * the last one needs K cycles of MACs, the skew R + C - 2, and R
         * cycles to shift its results out. */
        uint64_t folds = pm_ceil_div(s->m, R) * pm_ceil_div(s->n, C), period = s->k > R ? s->k : R;
        *stream = folds * period;
        *total = (folds - 1) * period + s->k + (R + C - 2) + R;
        return;
    }
    /* Weight tiles R (k) x C (n), K tile outer: a tile every max(M, preload)
     * cycles, and a K tile's sums of a column block may enter only R + 1
     * cycles after the previous K tile's entered (they need R cycles down the
     * array and one to be written). */
    uint64_t L = cfg->tensor_weight_load_rows ? cfg->tensor_weight_load_rows : 1;
    uint64_t preload = pm_ceil_div(R, L), gap = s->m > preload ? s->m : preload;
    uint64_t kt = pm_ceil_div(s->k, R), nt = pm_ceil_div(s->n, C);
    uint64_t row = nt * gap > R + 1 ? nt * gap : R + 1;
    uint64_t last = preload + (kt - 1) * row + (nt - 1) * gap;
    *stream = last + gap;
    *total = last + s->m + R + C - 1;
}

/* ---- tmm / tmma ---- */

/* Weights to bf16 codes on the matmul threads, in slices of whole rows
 * (block formats: a row is whole blocks, so every slice decodes on its own).
 * NVFP4/IF4 carry one tensor scale in front of all rows: decoded in one go. */
typedef struct decode_job {
    pm_format w;
    const uint8_t *src;
    size_t rows, k, rows_per_task, row_bytes;
    float *f32;
    uint16_t *b16;
    pm_status status; /* first failure (never expected: the operand was checked) */
} decode_job;

static void decode_task(void *ctx, size_t task)
{
    decode_job *j = ctx;
    size_t r0 = task * j->rows_per_task, r1 = r0 + j->rows_per_task > j->rows ? j->rows : r0 + j->rows_per_task;
    size_t n = (r1 - r0) * j->k;
    pm_error err;
    if (pm_format_decode(j->w, j->src + r0 * j->row_bytes, n, j->f32 + r0 * j->k, &err)) {
        j->status = err.status;
        return;
    }
    pm_f32_to_bf16_array(j->f32 + r0 * j->k, n, j->b16 + r0 * j->k);
}

static pm_status decode_weights(pm_sim *sim, pm_format w, const uint8_t *src, size_t rows, size_t k,
                                struct pm_tensor_state *t, pm_error *err)
{
    const pm_format_info *fi = pm_format_get(w);
    size_t row_bytes = 0;
    decode_job j = {w, src, rows, k, rows, 0, t->b, t->b16, PM_OK};
    if (fi && fi->header_bytes == 0 && pm_format_bytes(w, k, &row_bytes)) {
        j.row_bytes = row_bytes;
        j.rows_per_task = rows / 16 ? rows / 16 : 1; /* ~16 slices: work for every thread */
    }
    size_t tasks = (rows + j.rows_per_task - 1) / j.rows_per_task;
    pm_gemm_pool_for(rows * k >= (1u << 16) ? sim->gemm_pool : NULL, tasks, decode_task, &j);
    if (j.status) return pm_error_set(err, j.status, "tensor: weight decode failed");
    return PM_OK;
}

static pm_status matmul(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err, bool accumulate)
{
    const pm_config *cfg = e->cfg;
    const char *mn = accumulate ? "tmma" : "tmm";
    pm_format w;
    shape s;
    pm_status st = pm_format_operand(in->op[0], mn, false, &w, err);
    if (!st) st = get_shape(e, true, &s, err);
    if (st) return st;
    uint64_t b_bytes, acc_word, a_off, b_off;
    if ((st = row_format(w, s.k, s.n, "K", "weight", &b_bytes, err))) return st;
    uint64_t a_bytes = s.m * s.k * 2, acc_bytes = s.m * s.n * 4;
    if ((st = sram_named(e, in->op[2], "a", a_bytes, false, false, c, &a_off, err))) return st;
    if ((st = sram_named(e, in->op[3], "b", b_bytes, false, true, c, &b_off, err))) return st;
    if (accumulate && (st = acc_operand(e, in->op[1], acc_bytes, false, c, &acc_word, err))) return st;
    if ((st = acc_operand(e, in->op[1], acc_bytes, true, c, &acc_word, err))) return st;

    /* A is bf16 already; the weights decode exactly to fp32 and round to
     * bf16 on their way into the array. The kernel takes bf16 codes straight
     * from SRAM (bf16 weights need no copy at all), or the panels the cache
     * holds for these bytes: the same codes in another layout. */
    const void *bp = e->sram + b_off;
    pm_sim *sim = e->sim;
    struct pm_tensor_state *t = e->tensor;
    if (!sim->gemm_pool && (st = pm_gemm_pool_create(sim->gemm_threads, &sim->gemm_pool, err))) return st;
    const void *cached = NULL;
    int kind = PM_WCACHE_PANELS;
    pm_wcache_key key;
    bool cacheable = false;
    if (t->wc && (w != PM_FMT_BF16 || b_off % 2 == 0))
        cached = pm_wcache_lookup(t->wc, b_off, b_bytes, (uint32_t)w, s.n, s.k, &kind, &key, &cacheable);
    /* Only a hit leaves B's SRAM bytes unread: anything else needs them in. */
    if (!cached) pm_shadow_touch(e, b_off, b_off + b_bytes);
    if (!cached && w != PM_FMT_BF16) {
        size_t nk = (size_t)(s.n * s.k);
        if ((st = grow((void **)&t->b, &t->b_cap, nk, sizeof *t->b, err)) ||
            (st = grow((void **)&t->b16, &t->b16_cap, nk, sizeof *t->b16, err)))
            return st;
        if ((st = decode_weights(sim, w, e->sram + b_off, (size_t)s.n, (size_t)s.k, t, err))) return st;
        bp = t->b16;
    }
    if (!cached && cacheable) {
        /* Compact panels where the format has them and they reproduce every
         * decoded code; bf16 panels otherwise. */
        bool nibbles = false;
        uint64_t qbytes = pm_wcache_compact_allowed(t->wc) ? pm_wpack_bytes((uint32_t)w, s.n, s.k, &nibbles) : 0;
        void *fresh = pm_wcache_alloc(qbytes);
        kind = nibbles ? PM_WCACHE_COMPACT4 : PM_WCACHE_COMPACT;
        if (fresh && pm_wpack_build(sim->gemm_pool, (uint32_t)w, e->sram + b_off, s.n, s.k, t->b16, fresh))
            cached = pm_wcache_insert(t->wc, &key, kind, fresh, qbytes);
        else
            free(fresh);
        if (!cached) {
            uint64_t pbytes = 2 * (uint64_t)pm_gemm_panel_elems((size_t)s.n, (size_t)s.k);
            if ((fresh = pm_wcache_alloc(pbytes)))
                pm_gemm_panel_pack(sim->gemm_pool, (size_t)s.n, (size_t)s.k, bp, (size_t)s.k, fresh);
            cached = pm_wcache_insert(t->wc, &key, kind = PM_WCACHE_PANELS, fresh, pbytes); /* NULL: no room */
        }
    }
    const void *a = e->sram + a_off;
    float *acc = e->accum + acc_word;
    bool nib = kind == PM_WCACHE_COMPACT4;
    if (cached && kind != PM_WCACHE_PANELS && s.m == 1) {
        pm_gemm_gemv_qpanel(sim->gemm_pool, (size_t)s.n, (size_t)s.k, a, cached, nib, acc, accumulate);
    } else if (cached) {
        const uint16_t *panels = cached;
        if (kind != PM_WCACHE_PANELS) { /* M > 1: their codes in the panel layout, in scratch */
            size_t elems = pm_gemm_panel_elems((size_t)s.n, (size_t)s.k);
            if ((st = grow((void **)&t->b16, &t->b16_cap, elems, sizeof *t->b16, err))) return st;
            pm_gemm_qpanel_expand(sim->gemm_pool, (size_t)s.n, (size_t)s.k, cached, nib, t->b16);
            panels = t->b16;
        }
        pm_gemm_kordered_panel(sim->gemm_pool, (size_t)s.m, (size_t)s.n, (size_t)s.k, a, (size_t)s.k, panels, acc,
                               (size_t)s.n, accumulate);
    } else {
        pm_gemm_kordered_bf16(sim->gemm_pool, (size_t)s.m, (size_t)s.n, (size_t)s.k, a, (size_t)s.k, bp, (size_t)s.k,
                              acc, (size_t)s.n, accumulate);
    }

    pm_post_increment(e, in->op[2], a_bytes);
    pm_post_increment(e, in->op[3], b_bytes);
    pm_post_increment(e, in->op[1], acc_bytes);

    /* A passes once per column of folds (os) or per weight tile column (ws);
     * B once per row of folds (os) or once (ws). */
    uint64_t total, a_times = pm_ceil_div(s.n, cfg->tensor_cols);
    uint64_t b_times = s.ws ? 1 : pm_ceil_div(s.m, cfg->tensor_rows);
    array_cycles(cfg, &s, &c->stream_cycles, &total);
    c->latency_cycles = total - c->stream_cycles;
    c->sram_read_bytes = a_bytes * a_times + b_bytes * b_times;
    const uint64_t lo[2] = {a_off, b_off}, sizes[2] = {a_bytes, b_bytes}, times[2] = {a_times, b_times};
    c->sram_bank_cycles = banked_cycles(cfg, lo, sizes, times, 2);
    c->tensor_macs = s.m * s.n * s.k;
    uint64_t folds = pm_ceil_div(s.m, cfg->tensor_rows) * pm_ceil_div(s.n, cfg->tensor_cols);
    c->chain = (pm_acc_chain){s.ws ? 2 : 1, accumulate, acc_word * 4, s.m, s.n,
                              folds, c->stream_cycles / folds, s.k};
    return PM_OK;
}

/* Back-to-back os matmuls: the first fold of the next one copies its sums
 * into the output chains K2 cycles after it starts, and the previous
 * instruction's last fold (started at T, K1 long) holds the chains for R
 * cycles after T + K1. So the next starts at T + K1 + max(0, R - K2) at the
 * earliest; within one instruction max(K, R) per fold already ensures it. */
uint64_t pm_tensor_array_ready(const pm_config *cfg, const pm_unit_state *us, const pm_cost *c)
{
    if (c->chain.kind != 1 || !us->fold_end) return 0;
    uint64_t R = cfg->tensor_rows;
    return us->fold_end + (c->chain.k < R ? R - c->chain.k : 0);
}

void pm_tensor_array_placed(pm_unit_state *us, const pm_cost *c, uint64_t start, uint64_t free_cycle)
{
    if (c->tensor_lane || c->chain.kind != 1) return; /* ws does not use the output chains */
    uint64_t period = c->chain.period, ran = pm_ceil_div(free_cycle - start, c->chain.folds);
    if (ran > period) period = ran; /* the SRAM port spaced the folds out */
    us->fold_end = free_cycle - period + c->chain.k;
}

/* Chained tmma (os after os, same tile and shape, so the same fold order):
 * fold f of `next` reads output (i, j) of its fold at s2 + f*P2 + i + j; fold
 * f of `prev` wrote it at s1 + f*P1 + K1 + 2R - 2 + j - i (row R-1 leaves
 * its column's chain first). Reading a cycle after the write for every f, i
 * and j needs s2 >= s1 + K1 + 2R - 1 + max over f of f*(P1 - P2): the first
 * row of each fold, not the whole tile, decides. systolic_cycle.c runs
 * such chains and checks every read against its scoreboard. */
bool pm_tensor_chain_ready(const pm_config *cfg, const pm_inflight *prev, const pm_cost *next, uint64_t *ready)
{
    const pm_acc_chain *a = &prev->chain, *b = &next->chain;
    /* Two matmuls conflict only through the accumulator (neither writes
     * SRAM); when the later one does not read it, the array's in-order
     * pipeline writes each word in order. */
    if (a->kind && b->kind && !b->reads) {
        *ready = 0;
        return true;
    }
    if (a->kind != 1 || b->kind != 1 || !b->reads || a->acc_lo != b->acc_lo || a->m != b->m || a->n != b->n)
        return false;
    uint64_t spread = a->period > b->period ? (a->folds - 1) * (a->period - b->period) : 0;
    *ready = prev->start + a->k + 2 * (uint64_t)cfg->tensor_rows - 1 + spread;
    return true;
}

pm_status pm_exec_TMM(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    return matmul(e, in, c, err, false);
}

pm_status pm_exec_TMMA(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    return matmul(e, in, c, err, true);
}

/* ---- tout ---- */

pm_status pm_exec_TOUT(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    const pm_config *cfg = e->cfg;
    pm_format f;
    shape s;
    pm_status st = pm_format_operand(in->op[0], "tout", false, &f, err);
    if (!st) st = get_shape(e, false, &s, err);
    if (st) return st;
    const struct pm_tensor_state *t = e->tensor;
    uint64_t d_bytes, acc_word, d_off, elems = s.m * s.n;
    if ((st = row_format(f, s.n, s.m, "N", "output", &d_bytes, err))) return st;
    if ((st = acc_operand(e, in->op[2], elems * 4, false, c, &acc_word, err))) return st;
    if ((st = sram_named(e, in->op[1], "d", d_bytes, true, false, c, &d_off, err))) return st;
    uint64_t bias_bytes = (t->mode & EPI_BIAS) ? s.n * 4 : 0, size = cfg->sram_bytes;
    if (bias_bytes) {
        if (t->bias_addr < 0 || (uint64_t)t->bias_addr > size || bias_bytes > size - (uint64_t)t->bias_addr)
            return pm_sim_fault(err, "bias: SRAM read [0x%llx, 0x%llx) (address set by tepi) is out of bounds (SRAM "
                                     "is 0x%llx bytes)",
                                (unsigned long long)t->bias_addr,
                                (unsigned long long)((uint64_t)t->bias_addr + bias_bytes), (unsigned long long)size);
        pm_cost_range(c, PM_RANGE_SRAM, false, (uint64_t)t->bias_addr, (uint64_t)t->bias_addr + bias_bytes);
        c->sram_read_bytes += bias_bytes;
    }
    bool act = (t->mode & EPI_ACT) != 0;
    unsigned slot = (t->mode >> EPI_SLOT_SHIFT) & 7;
    if (act && slot >= cfg->lfu_slots)
        return pm_sim_fault(err, "epilogue LFU slot %u does not exist (the config has %u slots)", slot, cfg->lfu_slots);
    if (act && !e->lfu_loaded[slot])
        return pm_sim_fault(err, "epilogue LFU slot %u is empty (load it with lfu.cfg or lfu.ld)", slot);

    float *v;
    uint8_t *bytes;
    if ((st = pm_scratch_floats(e, (size_t)(2 * elems + s.n), &v, err))) return st;
    if ((st = pm_scratch_bytes(e, (size_t)d_bytes, &bytes, err))) return st;
    float *y = v + elems, *bias = y + elems;
    memcpy(v, e->accum + acc_word, (size_t)elems * sizeof *v);
    if (t->mode & EPI_SCALE) {
        float scale = pm_f32_from_bits(t->scale_bits);
        for (uint64_t i = 0; i < elems; i++) v[i] = v[i] * scale;
    }
    if (bias_bytes) {
        pm_shadow_touch(e, (uint64_t)t->bias_addr, (uint64_t)t->bias_addr + bias_bytes);
        if ((st = pm_format_decode(PM_FMT_F32, e->sram + t->bias_addr, (size_t)s.n, bias, err))) return st;
        for (uint64_t r = 0; r < s.m; r++)
            for (uint64_t j = 0; j < s.n; j++) v[r * s.n + j] = v[r * s.n + j] + bias[j];
    }
    if (act) {
        pm_lfu_eval_array(&e->lfu[slot], v, y, (size_t)elems);
        v = y;
    }
    /* Encode aside, then copy: a failure leaves SRAM untouched. */
    if ((st = pm_format_encode(f, v, (size_t)elems, bytes, err))) return st;
    memcpy(e->sram + d_off, bytes, (size_t)d_bytes);
    pm_post_increment(e, in->op[1], d_bytes);
    pm_post_increment(e, in->op[2], elems * 4);

    /* C values a cycle leave the accumulator memory through the epilogue. */
    c->stream_cycles = pm_ceil_div(elems, cfg->tensor_cols);
    c->latency_cycles = act ? cfg->lfu_latency_cycles : 2;
    c->lfu_evals = act ? elems : 0;
    c->tensor_lane = 1; /* the epilogue datapath, beside the array */
    uint64_t lo[2] = {d_off, (uint64_t)t->bias_addr}, sizes[2] = {d_bytes, bias_bytes}, times[2] = {1, 1};
    c->sram_bank_cycles = banked_cycles(cfg, lo, sizes, times, 2);
    return PM_OK;
}
