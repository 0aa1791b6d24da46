/* pm_kernel_matmul: tiled, double-buffered GEMM / GEMV programs for the
 * tensor unit. A planner picks tile sizes from the config (SRAM, accumulator
 * memory, array size) with a small cost model; the work becomes a list of
 * steps (one tmm/tmma each, the DMA loads it needs, and at the end of an
 * output tile a tout and a store), which one emitter turns into straight-line
 * code with the loads of step s+1 issued before the tensor op of step s (and
 * a loop over pairs of M blocks when the unrolled code would be too long). */
#include "kernels_internal.h"

#include <stdlib.h>
#include <string.h>

/* Registers the generated code uses (r0 reads as zero). */
enum {
    R_ROWB = 1, R_ROWS, R_ONE, R_DSTR, R_SSTR, R_SADDR, R_DADDR,
    R_M, R_N, R_K, R_ACC, R_A, R_B, R_BIAS, R_SCALE, R_MODE, R_OUT,
    R_XJ = 18, R_WJ,
    R_ID = 20, R_TMP, R_XB, R_YB, R_CNT, R_WI, R_YI, R_BI, R_CNT2, R_YJ, R_CNT3,
};

#define ALIGN_SRAM 256u /* buffers start on a port-width boundary: their rows spread over every bank */

/* Address classes: inside a loop, addresses of a class that moves from one
 * iteration to the next (X and Y with the M block; W, Y and the bias with
 * the N tile) are emitted as `li; add` of the class's offset register. */
enum { BASE_ABS = 0, BASE_X, BASE_Y, BASE_W, BASE_BIAS, BASE_COUNT };

typedef struct dma_desc {
    bool load;
    uint64_t sram, dram, row_bytes, rows;
    int64_t dram_stride, sram_stride;
    int base;
} dma_desc;

#define STEP_MAX_LOADS 3

typedef struct step {
    uint32_t m, n, k;
    uint64_t acc, a, b;
    bool accumulate; /* tmma: continue the sums of the previous k chunk */
    dma_desc loads[STEP_MAX_LOADS];
    int load_count;
    bool tile_end; /* after the op: tout to out_sram, then the store */
    uint64_t out_sram, bias_sram;
    dma_desc store;
} step;

/* Tile sizes and the SRAM / accumulator layout one engine uses. */
typedef struct plan {
    uint32_t tm, tn, tk;
    bool a_resident; /* the whole K of an M block stays in SRAM and serves every N tile */
    int dataflow;    /* tshape imm: 1 os, 2 ws */
    bool ramp;       /* K chunks of the first and last tile ramp up and down (GEMV) */
    uint32_t k_ramp; /* the smallest ramp chunk */
    uint64_t a_buf[2], b_buf[2], out_buf[2], bias_sram, acc_tile[2];
    double est_cycles;
} plan;

/* One engine's share of one batch entry: rows [m_begin, m_end) of X and Y,
 * rows [n_begin, n_end) of W (columns of Y). */
typedef struct job {
    uint32_t batch, m_begin, m_end, n_begin, n_end;
} job;

/* Everything fixed for one kernel: formats, strides, sizes. */
typedef struct shape_info {
    const pm_matmul_desc *d;
    uint32_t w_hdr;          /* tensor-scale header bytes of the weight format */
    uint64_t w_row;          /* bytes of one weight row (K elements) */
    uint64_t y_row;          /* bytes of one output row (N elements) */
    uint32_t k_gran, n_gran; /* K chunk and N tile granules (storage units, array columns) */
    uint64_t x_bytes, w_bytes, y_bytes;
} shape_info;

static uint64_t round_up(uint64_t v, uint64_t g)
{
    return (v + g - 1) / g * g;
}

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
    return (a + b - 1) / b;
}

static uint64_t gcd64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b, b = t;
    }
    return a;
}

/* Bytes of n elements without the per-tensor header (NVFP4/IF4's fp32
 * scale), which the kernels place once in front of each chunk. */
static uint64_t fmt_bytes(pm_format f, uint64_t n)
{
    size_t b = 0;
    pm_format_bytes(f, (size_t)n, &b); /* callers only ask for whole storage units */
    return b - pm_format_get(f)->header_bytes;
}

/* Smallest element count that is a whole number of storage units. */
static uint32_t fmt_granule(pm_format f)
{
    const pm_format_info *fi = pm_format_get(f);
    if (fi->block_elems > 1) return fi->block_elems;
    return fi->elem_bits < 8 ? 2 : 1;
}

/* ---- emitter: straight-line code with cached register values ---- */

typedef struct emitter {
    pm_builder *b;
    const pm_config *cfg;
    const pm_matmul_desc *d;
    bool fences; /* report mode: explicit fences stand in for the interlock */
    int64_t rowb, rows, dstr, sstr; /* DMA descriptor state, -1 unknown */
    int64_t tm, tn, tk, tdf;        /* tshape state */
    int64_t bias, mode;             /* tepi state */
    bool lfu_fenced;
    /* Pipeline state: the tile whose tout is due after the next op, and the
     * tile whose store is due at the next step (step indices, -1 none). */
    int64_t tout_due, store_due;
    int offset_reg[BASE_COUNT]; /* register holding the class's loop offset; 0: none */
    /* Loop structure of the steps (emit_steps): the outer loop over pairs of
     * M blocks and, per M block, the inner loop over pairs of N tiles. */
    const size_t *tile_start; /* first step of each tile */
    size_t tile_count, tiles_per_block;
    size_t job_steps, pair_steps; /* steps of a job and of a pair of full M blocks */
    uint64_t loop_pairs;          /* pairs of full M blocks in a job */
} emitter;

static void emit(emitter *e, pm_opcode op, int64_t a, int64_t b, int64_t c, int64_t d)
{
    pm_builder_emit(e->b, op, a, b, c, d, 0, 0);
}

static void li(emitter *e, int reg, int64_t v)
{
    emit(e, PM_OP_LI, reg, v, 0, 0);
}

/* Forget what the registers hold (at a loop head or after a loop). */
static void emitter_forget(emitter *e)
{
    e->rowb = e->rows = e->dstr = e->sstr = -1;
    e->tm = e->tn = e->tk = e->tdf = -1;
    e->bias = e->mode = -1;
}

static void emitter_reset(emitter *e)
{
    emitter_forget(e);
    e->lfu_fenced = false;
    e->tout_due = e->store_due = -1;
    memset(e->offset_reg, 0, sizeof e->offset_reg);
    e->tile_start = NULL;
    e->tile_count = e->tiles_per_block = 0;
}

/* reg = addr of class c, plus the class's loop offset inside a loop. */
static void emit_addr(emitter *e, int reg, int c, uint64_t addr)
{
    li(e, reg, (int64_t)addr);
    if (e->offset_reg[c]) emit(e, PM_OP_ADD, reg, reg, e->offset_reg[c], 0);
}

static void emit_dma(emitter *e, const dma_desc *m)
{
    if ((int64_t)m->row_bytes != e->rowb || (int64_t)m->rows != e->rows) {
        if ((int64_t)m->row_bytes != e->rowb) li(e, R_ROWB, (int64_t)m->row_bytes);
        if ((int64_t)m->rows != e->rows) li(e, R_ROWS, (int64_t)m->rows);
        emit(e, PM_OP_DSHAPE, R_ROWB, R_ROWS, R_ONE, 0);
        e->rowb = (int64_t)m->row_bytes, e->rows = (int64_t)m->rows;
    }
    /* Strides only matter for more than one row. */
    if (m->rows > 1 && (m->dram_stride != e->dstr || m->sram_stride != e->sstr)) {
        if (m->dram_stride != e->dstr) li(e, R_DSTR, m->dram_stride);
        if (m->sram_stride != e->sstr) li(e, R_SSTR, m->sram_stride);
        emit(e, PM_OP_DSTRIDE, R_DSTR, 0, R_SSTR, 0);
        e->dstr = m->dram_stride, e->sstr = m->sram_stride;
    }
    li(e, R_SADDR, (int64_t)m->sram);
    emit_addr(e, R_DADDR, m->base, m->dram);
    if (m->load) emit(e, PM_OP_DLD, R_SADDR, R_DADDR, 0, 0);
    else emit(e, PM_OP_DST, R_DADDR, R_SADDR, 0, 0);
}

static void emit_tshape(emitter *e, uint32_t m, uint32_t n, uint32_t k, int df)
{
    if (m == e->tm && n == e->tn && k == e->tk && df == e->tdf) return;
    if (m != e->tm) li(e, R_M, m);
    if (n != e->tn) li(e, R_N, n);
    if (k != e->tk) li(e, R_K, k);
    emit(e, PM_OP_TSHAPE, R_M, R_N, R_K, df);
    e->tm = m, e->tn = n, e->tk = k, e->tdf = df;
}

static const unsigned FENCE_PIPE = (1u << PM_UNIT_DMA_LD) | (1u << PM_UNIT_DMA_ST) | (1u << PM_UNIT_TENSOR);

static void emit_epilogue_state(emitter *e, uint64_t bias_sram)
{
    const pm_matmul_desc *d = e->d;
    int64_t mode = (d->has_bias ? 1 : 0) | (d->has_scale ? 2 : 0) | (d->has_act ? 4 : 0); /* slot 0: bits 4..6 = 0 */
    int64_t bias = d->has_bias ? (int64_t)bias_sram : 0;
    if (d->has_act && !e->lfu_fenced) {
        /* lfu.cfg writes the slot the epilogue reads; wait for it once. */
        emit(e, PM_OP_FENCE, 1u << PM_UNIT_LFU, 0, 0, 0);
        e->lfu_fenced = true;
    }
    if (mode == e->mode && bias == e->bias) return;
    if (e->mode < 0) li(e, R_SCALE, (int64_t)pm_f32_bits(d->has_scale ? d->scale : 1.0f));
    if (d->has_bias) emit_addr(e, R_BIAS, BASE_BIAS, (uint64_t)bias);
    else li(e, R_BIAS, 0);
    li(e, R_MODE, mode);
    emit(e, PM_OP_TEPI, R_BIAS, R_SCALE, R_MODE, 0);
    e->mode = mode, e->bias = bias;
}

static void emit_tout(emitter *e, const step *st, int df)
{
    emit_tshape(e, st->m, st->n, st->k, df);
    emit_epilogue_state(e, st->bias_sram);
    li(e, R_ACC, (int64_t)st->acc);
    li(e, R_OUT, (int64_t)st->out_sram);
    emit(e, PM_OP_TOUT, e->d->out_fmt, R_OUT, R_ACC, 0);
}

/* The double-buffered pipeline. The loads of step s+1 go out before the
 * tensor op of step s. A tile's tout goes out after the first op of the
 * next tile (two accumulator tiles alternate), so it never waits for its
 * own tile's last results to drain through the array: the array is busy
 * with the next tile meanwhile. A tile's store goes out in the step after
 * its tout.
 *
 * Under control.hazards = report each step starts with a fence on dma.ld,
 * dma.st and tensor, which makes exactly the hazards the interlock would
 * resolve impossible: load(s) and op(s-1) are done before op(s) reads
 * load(s)'s buffer and load(s+1) overwrites op(s-1)'s; a tout is done before
 * its store reads the output buffer; store(t-2) is done before tout(t)
 * rewrites its buffer (at least one fence lies between them). Under
 * interlock the scoreboard does the same waiting without stalling issue, so
 * no fences are emitted. */
static void emit_step(emitter *e, const step *steps, size_t count, size_t s, int df)
{
    const step *st = &steps[s];
    if (e->fences) emit(e, PM_OP_FENCE, FENCE_PIPE, 0, 0, 0);
    if (e->store_due >= 0) emit_dma(e, &steps[e->store_due].store), e->store_due = -1;
    if (s + 1 < count)
        for (int i = 0; i < steps[s + 1].load_count; i++) emit_dma(e, &steps[s + 1].loads[i]);
    emit_tshape(e, st->m, st->n, st->k, df);
    li(e, R_ACC, (int64_t)st->acc);
    li(e, R_A, (int64_t)st->a);
    li(e, R_B, (int64_t)st->b);
    emit(e, st->accumulate ? PM_OP_TMMA : PM_OP_TMM, e->d->w_fmt, R_ACC, R_A, R_B);
    if (e->tout_due >= 0) {
        emit_tout(e, &steps[e->tout_due], df);
        e->store_due = e->tout_due;
        e->tout_due = -1;
    }
    if (st->tile_end) e->tout_due = (int64_t)s;
}

/* After the last step: the last tout and the stores still due. */
static void emit_drain(emitter *e, const step *steps, int df)
{
    if (e->tout_due >= 0) {
        if (e->store_due >= 0) {
            if (e->fences) emit(e, PM_OP_FENCE, FENCE_PIPE, 0, 0, 0);
            emit_dma(e, &steps[e->store_due].store);
        }
        emit_tout(e, &steps[e->tout_due], df);
        e->store_due = e->tout_due;
        e->tout_due = -1;
    }
    if (e->store_due >= 0) {
        if (e->fences) emit(e, PM_OP_FENCE, FENCE_PIPE, 0, 0, 0);
        emit_dma(e, &steps[e->store_due].store);
        e->store_due = -1;
    }
}

/* Do steps [s, s + periods * period) repeat with a constant address shift
 * per class from one period to the next? Fills delta[] (bytes per period). */
static bool dma_match(const dma_desc *a, const dma_desc *b, int64_t *delta)
{
    if (a->load != b->load || a->sram != b->sram || a->row_bytes != b->row_bytes || a->rows != b->rows ||
        a->dram_stride != b->dram_stride || a->sram_stride != b->sram_stride || a->base != b->base)
        return false;
    int64_t dd = (int64_t)(b->dram - a->dram);
    if (a->base == BASE_ABS) return dd == 0;
    if (delta[a->base] == INT64_MIN) delta[a->base] = dd;
    return delta[a->base] == dd;
}

static bool periodic(const step *steps, size_t s, size_t period, uint64_t periods, int64_t *delta)
{
    for (int c = 0; c < BASE_COUNT; c++) delta[c] = INT64_MIN;
    for (uint64_t i = s + period; i < s + periods * period; i++) {
        const step *a = &steps[i - period], *b = &steps[i];
        if (a->m != b->m || a->n != b->n || a->k != b->k || a->acc != b->acc || a->a != b->a || a->b != b->b ||
            a->accumulate != b->accumulate || a->load_count != b->load_count || a->tile_end != b->tile_end)
            return false;
        for (int l = 0; l < a->load_count; l++)
            if (!dma_match(&a->loads[l], &b->loads[l], delta)) return false;
        if (a->tile_end) {
            if (a->out_sram != b->out_sram || !dma_match(&a->store, &b->store, delta)) return false;
            int64_t db = (int64_t)(b->bias_sram - a->bias_sram);
            if (delta[BASE_BIAS] == INT64_MIN) delta[BASE_BIAS] = db;
            if (delta[BASE_BIAS] != db) return false;
        }
    }
    for (int c = 0; c < BASE_COUNT; c++)
        if (delta[c] == INT64_MIN) delta[c] = 0;
    return true;
}

static void emit_range(emitter *e, const step *steps, size_t count, size_t from, size_t to, int df);
static void emit_jobs(emitter *e, const step *steps, size_t count, size_t from, size_t to, int df);

/* Steps [s, s + periods * period) repeat (periodic()): period 0 is emitted
 * as is, periods 1 .. periods-2 as one loop body, the caller goes on with
 * the last period. The body is emitted from period 1 with every moving
 * class's address plus an offset register that starts at 0 and grows by the
 * class's delta per iteration; the pipeline state at the body's end is its
 * state at the start shifted by one period, so the same code is right for
 * every iteration. Returns the step to continue from. */
static size_t emit_loop(emitter *e, const step *steps, size_t count, size_t s, size_t period, uint64_t periods,
                        const int64_t *delta, const int *regs, int counter, int df, bool of_jobs)
{
    /* A period of whole jobs may itself hold loops over M blocks. */
    void (*body)(emitter *, const step *, size_t, size_t, size_t, int) = of_jobs ? emit_jobs : emit_range;
    body(e, steps, count, s, s + period, df);
    int saved[BASE_COUNT];
    memcpy(saved, e->offset_reg, sizeof saved);
    for (int c = 1; c < BASE_COUNT; c++) {
        if (!delta[c]) continue;
        /* Start from the enclosing loop's offset of the class, if any. */
        if (saved[c]) emit(e, PM_OP_ADD, regs[c], saved[c], 0, 0);
        else li(e, regs[c], 0);
        e->offset_reg[c] = regs[c];
    }
    uint64_t iters = periods - 2;
    li(e, counter, (int64_t)iters);
    uint32_t head = pm_builder_label(e->b);
    pm_builder_bind(e->b, head);
    emitter_forget(e);
    body(e, steps, count, s + period, s + 2 * period, df);
    for (int c = 1; c < BASE_COUNT; c++) {
        if (!delta[c]) continue;
        li(e, R_TMP, delta[c]);
        emit(e, PM_OP_ADD, regs[c], regs[c], R_TMP, 0);
    }
    pm_builder_emit(e->b, PM_OP_LOOP, counter, pm_builder_ref(head), 0, 0, 0, 0);
    memcpy(e->offset_reg, saved, sizeof saved);
    emitter_forget(e);
    size_t shift = (size_t)(iters - 1) * period;
    if (e->tout_due >= 0) e->tout_due += (int64_t)shift;
    if (e->store_due >= 0) e->store_due += (int64_t)shift;
    return s + 2 * period + shift;
}

/* Steps [from, to) of one M block or less: the pairs of N tiles 1 .. T-2 of
 * an M block (tile 0 carries the block's X loads, tile T-1 the next block's)
 * run as a loop when there are at least four pairs. */
static void emit_range(emitter *e, const step *steps, size_t count, size_t from, size_t to, int df)
{
    size_t T = e->tiles_per_block;
    static const int inner_regs[BASE_COUNT] = {0, 0, R_YI, R_WI, R_BI};
    for (size_t s = from; s < to;) {
        if (e->tile_start && T >= 10) {
            /* Is s the first step of tile 1 of an M block? (binary search) */
            size_t lo = 0, hi = e->tile_count;
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (e->tile_start[mid] < s) lo = mid + 1;
                else hi = mid;
            }
            size_t t = lo;
            if (t + 2 < e->tile_count && e->tile_start[t] == s && t % T == 1) {
                size_t period = e->tile_start[t + 2] - e->tile_start[t];
                uint64_t periods = (T - 2) / 2;
                int64_t delta[BASE_COUNT];
                if (s + periods * period <= to && periodic(steps, s, period, periods, delta) && !delta[BASE_X]) {
                    s = emit_loop(e, steps, count, s, period, periods, delta, inner_regs, R_CNT2, df, false);
                    continue;
                }
            }
        }
        emit_step(e, steps, count, s, df);
        s++;
    }
}

/* Jobs [from, to) (whole jobs): in each, when its steps form at least four
 * pairs of full M blocks that repeat with X and Y shifted, pairs
 * 1 .. loop_pairs-2 run as a loop (emit_loop); inside every M block the
 * middle N tiles may loop too (emit_range). */
static void emit_jobs(emitter *e, const step *steps, size_t count, size_t from, size_t to, int df)
{
    static const int mblock_regs[BASE_COUNT] = {0, R_XB, R_YB, 0, 0};
    for (size_t s = from; s < to;) {
        size_t end = s + e->job_steps;
        int64_t delta[BASE_COUNT];
        if (e->loop_pairs >= 4 && s + e->loop_pairs * e->pair_steps <= end &&
            periodic(steps, s, e->pair_steps, e->loop_pairs, delta) && !delta[BASE_W] && !delta[BASE_BIAS])
            s = emit_loop(e, steps, count, s, e->pair_steps, e->loop_pairs, delta, mblock_regs, R_CNT, df, false);
        emit_range(e, steps, count, s, end, df);
        s = end;
    }
}

/* Emits all `count` steps of an engine (its jobs of e->job_steps steps).
 * With at least eight jobs that repeat pair by pair (batch strides), pairs
 * 1 .. P-2 of jobs run as a loop around the loops inside each job. */
static void emit_steps(emitter *e, const step *steps, size_t count, int df, size_t jobs)
{
    static const int job_regs[BASE_COUNT] = {0, R_XJ, R_YJ, R_WJ, 0};
    for (int i = 0; count && i < steps[0].load_count; i++) emit_dma(e, &steps[0].loads[i]);
    size_t s = 0;
    int64_t delta[BASE_COUNT];
    uint64_t job_pairs = jobs / 2;
    if (job_pairs >= 4 && periodic(steps, 0, 2 * e->job_steps, job_pairs, delta) && !delta[BASE_BIAS])
        s = emit_loop(e, steps, count, 0, 2 * e->job_steps, job_pairs, delta, job_regs, R_CNT3, df, true);
    emit_jobs(e, steps, count, s, count, df);
    emit_drain(e, steps, df);
}

/* ---- steps of one engine's jobs ---- */

typedef struct step_list {
    step *v;
    size_t count, cap;
} step_list;

static step *push_step(step_list *l)
{
    if (l->count == l->cap) {
        size_t n = l->cap ? l->cap * 2 : 64;
        step *q = realloc(l->v, n * sizeof *q);
        if (!q) return NULL;
        l->v = q, l->cap = n;
    }
    step *s = &l->v[l->count++];
    memset(s, 0, sizeof *s);
    return s;
}

static void add_load(step *s, uint64_t sram, uint64_t dram, uint64_t row_bytes, uint64_t rows, uint64_t dram_stride,
                     uint64_t sram_stride, int base)
{
    /* Rows that are contiguous on both sides move as one row. */
    if (rows > 1 && dram_stride == row_bytes && sram_stride == row_bytes) row_bytes *= rows, rows = 1;
    s->loads[s->load_count++] = (dma_desc){true, sram, dram, row_bytes, rows, (int64_t)dram_stride,
                                           (int64_t)sram_stride, base};
}

/* Width of the N tile that starts at n0 of N. */
static uint32_t tile_width(const plan *p, uint32_t n0, uint32_t N)
{
    return N - n0 < p->tn ? N - n0 : p->tn;
}

/* Length of the K chunk at k0. With the ramp (GEMV) the first tile's chunks
 * grow g, 2g, 4g, ... up to tk and the last tile's halve towards the end,
 * so the first load and the last tensor op, which nothing can overlap, are
 * small while the middle streams in large chunks. (Only for M = 1: the x
 * row is then the same bytes whatever the chunking.) */
static uint32_t chunk_len(const plan *p, uint32_t k0, uint32_t K, bool first_tile, bool last_tile)
{
    uint64_t w = p->tk, r = K - k0, g = p->k_ramp;
    if (p->ramp && first_tile && k0 + g < w) w = k0 + g;
    if (p->ramp && last_tile) {
        uint64_t half = r / 2 / g * g;
        if (half < g) half = g;
        if (half < w) w = half;
    }
    return (uint32_t)(w < r ? w : r);
}

/* Counters that alternate double buffers across every job of an engine. */
typedef struct cursor {
    uint64_t steps, tiles, mblocks;
} cursor;

static pm_status job_steps(const shape_info *si, const plan *p, const job *j, cursor *cur, step_list *out,
                           pm_error *err)
{
    const pm_matmul_desc *d = si->d;
    uint32_t K = d->K, N = j->n_end - j->n_begin;
    uint64_t x = d->x_addr + (uint64_t)j->batch * d->x_batch_stride;
    uint64_t w = d->w_addr + (uint64_t)j->batch * d->w_batch_stride;
    uint64_t y = d->y_addr + (uint64_t)j->batch * d->y_batch_stride;
    for (uint32_t m0 = j->m_begin; m0 < j->m_end; m0 += p->tm) {
        uint32_t mi = j->m_end - m0 < p->tm ? j->m_end - m0 : p->tm;
        uint64_t ablk = p->a_buf[cur->mblocks++ % 2];
        for (uint32_t n0 = 0, nj; n0 < N; n0 += nj) {
            nj = tile_width(p, n0, N);
            uint64_t t = cur->tiles++;
            for (uint32_t k0 = 0, kc; k0 < K; k0 += kc) {
                kc = chunk_len(p, k0, K, n0 == 0, n0 + nj == N);
                uint64_t sb = cur->steps++ % 2;
                step *s = push_step(out);
                if (!s) return pm_error_set(err, PM_ERR_NOMEM, "matmul: out of memory for the step list");
                s->m = mi, s->n = nj, s->k = kc;
                s->acc = p->acc_tile[t % 2];
                s->accumulate = k0 > 0;
                if (p->a_resident) {
                    /* The M block's K chunks, each mi x kc packed, one after another;
                     * loaded with the first N tile, reused by the others. */
                    s->a = ablk + (uint64_t)k0 * mi * 2;
                    if (n0 == 0)
                        add_load(s, s->a, x + ((uint64_t)m0 * K + k0) * 2, (uint64_t)kc * 2, mi, (uint64_t)K * 2,
                                 (uint64_t)kc * 2, BASE_X);
                } else {
                    s->a = p->a_buf[sb];
                    add_load(s, s->a, x + ((uint64_t)m0 * K + k0) * 2, (uint64_t)kc * 2, mi, (uint64_t)K * 2,
                             (uint64_t)kc * 2, BASE_X);
                }
                s->b = p->b_buf[sb];
                if (si->w_hdr) add_load(s, s->b, w, si->w_hdr, 1, si->w_hdr, si->w_hdr, BASE_ABS);
                uint64_t kc_bytes = fmt_bytes(d->w_fmt, kc);
                add_load(s, s->b + si->w_hdr,
                         w + si->w_hdr + (uint64_t)(j->n_begin + n0) * si->w_row + fmt_bytes(d->w_fmt, k0), kc_bytes,
                         nj, si->w_row, kc_bytes, BASE_W);
                if (k0 + kc == K) {
                    s->tile_end = true;
                    s->out_sram = p->out_buf[t % 2];
                    s->bias_sram = p->bias_sram + (uint64_t)(j->n_begin + n0) * 4;
                    uint64_t ob = fmt_bytes(d->out_fmt, nj);
                    uint64_t rb = ob, rows = mi;
                    if (rows > 1 && ob == si->y_row) rb *= rows, rows = 1;
                    s->store = (dma_desc){false, s->out_sram,
                                          y + (uint64_t)m0 * si->y_row + fmt_bytes(d->out_fmt, j->n_begin + n0), rb,
                                          rows, (int64_t)si->y_row, (int64_t)ob, BASE_Y};
                }
            }
        }
    }
    return PM_OK;
}

/* ---- planner ---- */

/* Cycles of one tensor op per docs/tensor.md (fast model), for the cost
 * model: *stream until the array takes the next op, *total until the
 * results are in the accumulator. */
static void op_cycles(const pm_config *cfg, int df, uint64_t m, uint64_t n, uint64_t k, double *stream, double *total)
{
    uint64_t R = cfg->tensor_rows, C = cfg->tensor_cols;
    if (df == 1) {
        uint64_t folds = ceil_div(m, R) * ceil_div(n, C);
        *stream = (double)(folds * (k > R ? k : R));
        *total = *stream + (double)((R + C - 2) + R);
        return;
    }
    /* Weight tiles every max(M, preload) cycles, K tile outer; a K tile's
     * sums of a column block enter R + 1 cycles after the previous K tile's. */
    uint64_t pre = ceil_div(R, cfg->tensor_weight_load_rows), ntiles = ceil_div(n, C);
    uint64_t gap = m > pre ? m : pre, row = ntiles * gap > R + 1 ? ntiles * gap : R + 1;
    uint64_t last = pre + (ceil_div(k, R) - 1) * row + (ntiles - 1) * gap;
    *stream = (double)(last + gap);
    *total = (double)(last + m + R + C - 1);
}

typedef struct budget {
    uint64_t a, b, out, bias;
} budget;

static budget plan_budget(const shape_info *si, uint32_t tm, uint32_t tn, uint32_t tk, bool a_resident)
{
    const pm_matmul_desc *d = si->d;
    budget u;
    u.a = round_up((uint64_t)tm * (a_resident ? d->K : tk) * 2, ALIGN_SRAM);
    u.b = round_up(si->w_hdr + (uint64_t)tn * fmt_bytes(d->w_fmt, tk), ALIGN_SRAM);
    u.out = round_up((uint64_t)tm * fmt_bytes(d->out_fmt, tn), ALIGN_SRAM);
    u.bias = d->has_bias ? round_up((uint64_t)d->N * 4, ALIGN_SRAM) : 0;
    return u;
}

/* M blocks and N tiles per block whose code is emitted for one job: all but
 * three pairs of full M blocks run as a loop when there are four, and all
 * but about eight N tiles of a block when there are ten (emit_steps,
 * emit_range). */
static uint64_t emitted_mblocks(uint64_t m_job, uint64_t tm)
{
    uint64_t blocks = ceil_div(m_job, tm), pairs = m_job / tm / 2;
    return pairs >= 4 ? blocks - 2 * (pairs - 3) : blocks;
}

/* Jobs whose code is emitted: all but three pairs loop when there are four. */
static uint64_t emitted_jobs(uint64_t jobs)
{
    uint64_t pairs = jobs / 2;
    return pairs >= 4 ? jobs - 2 * (pairs - 3) : jobs;
}

static uint64_t emitted_ntiles(uint64_t n_job, uint64_t tn)
{
    uint64_t tiles = ceil_div(n_job, tn);
    return tiles >= 10 ? 8 : tiles;
}

/* DRAM channel bytes of `rows` runs of row_bytes (one run when contiguous),
 * counting whole 64-byte bursts and one extra for an unaligned start. */
static double dram_run_bytes(uint64_t rows, uint64_t row_bytes, bool contiguous, bool aligned)
{
    if (contiguous) row_bytes *= rows, rows = 1;
    return (double)rows * (double)((row_bytes + 63) / 64 + (row_bytes % 64 || !aligned ? 1 : 0)) * 64;
}

/* Estimated cycles of one engine running `jobs` jobs of width n_job: a
 * small replay of the step pipeline the emitter produces (loads of step s+1
 * behind those of step s and behind op s-1, which last read their buffer; op
 * s behind its loads' DRAM latency and behind op s-1; under hazards = report
 * a step starts only when the previous one has drained). It decides between
 * tilings, so it only has to rank them the way the simulator would. */
static double plan_cost(const pm_config *cfg, const shape_info *si, const plan *p, uint32_t m_job, uint32_t n_job,
                        uint32_t jobs, uint64_t *insns)
{
    const pm_matmul_desc *d = si->d;
    uint32_t K = d->K;
    double bpc = pm_config_dram_bytes_per_cycle(cfg) / (d->engines > 1 ? d->engines : 1);
    double lat = cfg->dram_latency_ns * cfg->clock_mhz / 1000.0;
    bool report = cfg->hazard_mode == PM_HAZARD_REPORT;
    double load_free = 0, op_end_prev = 0, op_end_prev2 = 0, op_free = 0, store_fin = 0, step_end = 0;
    double tout_free = 0, tout_end[2] = {0, 0}; /* tout runs on the epilogue lane beside the array */
    double steps = 0, tiles = 0, mblocks = 0;
    bool first = true;
    for (uint32_t m0 = 0; m0 < m_job; m0 += p->tm) {
        uint32_t mi = m_job - m0 < p->tm ? m_job - m0 : p->tm;
        mblocks++;
        for (uint32_t n0 = 0, nj; n0 < n_job; n0 += nj) {
            nj = tile_width(p, n0, n_job);
            int parity = (int)tiles % 2;
            tiles++;
            for (uint32_t k0 = 0, kc; k0 < K; k0 += kc) {
                kc = chunk_len(p, k0, K, n0 == 0, n0 + nj == n_job);
                /* DRAM moves 64-byte bursts per contiguous run: short strided rows cost more. */
                uint64_t wk = fmt_bytes(d->w_fmt, kc);
                bool w_aligned = (d->w_addr + si->w_hdr) % 64 == 0 && si->w_row % 64 == 0 && wk % 64 == 0;
                bool x_aligned = d->x_addr % 64 == 0 && (uint64_t)K * 2 % 64 == 0 && (uint64_t)kc * 2 % 64 == 0;
                double bytes = (si->w_hdr ? 64 : 0) + dram_run_bytes(nj, wk, kc == K, w_aligned);
                if (!p->a_resident || n0 == 0) bytes += dram_run_bytes(mi, (uint64_t)kc * 2, kc == K, x_aligned);
                /* This step's loads: behind the previous loads and behind op s-2, the
                 * last reader of the buffer they fill. */
                double ls = report ? step_end : (load_free > op_end_prev2 ? load_free : op_end_prev2);
                if (first) ls = 0;
                load_free = ls + bytes / bpc;
                double load_fin = load_free + lat;
                double stream, total;
                op_cycles(cfg, p->dataflow, mi, nj, kc, &stream, &total);
                double os = load_fin > op_free ? load_fin : op_free;
                /* A weight-stationary tmma waits for the sums it continues. */
                if (k0 > 0 && p->dataflow == 2 && os < op_end_prev) os = op_end_prev;
                /* The first op of a tile rewrites the accumulator tile that the tout
                 * of two tiles ago reads. */
                if (k0 == 0 && os < tout_end[parity]) os = tout_end[parity];
                if (report && os < step_end) os = step_end;
                op_free = os + stream;
                op_end_prev2 = op_end_prev;
                op_end_prev = os + total;
                if (k0 + kc == K) {
                    double ts = op_end_prev > tout_free ? op_end_prev : tout_free;
                    tout_free = ts + (double)ceil_div((uint64_t)mi * nj, cfg->tensor_cols);
                    tout_end[parity] = tout_free + 2;
                    double sb = (double)mi * fmt_bytes(d->out_fmt, nj);
                    double ss = tout_end[parity] > store_fin ? tout_end[parity] : store_fin;
                    store_fin = ss + sb / bpc + lat;
                }
                step_end = op_end_prev > load_fin ? op_end_prev : load_fin;
                first = false;
                steps++;
            }
        }
    }
    double end = op_end_prev > store_fin ? op_end_prev : store_fin;
    double per_step = 16, per_tile = 12; /* issue slots of the generated code */
    double unrolled = (double)emitted_mblocks(m_job, p->tm) / mblocks *
                      (double)emitted_ntiles(n_job, p->tn) / (double)ceil_div(n_job, p->tn);
    *insns = (uint64_t)((steps * per_step + tiles * per_tile + mblocks * 8) * unrolled * (double)emitted_jobs(jobs)) + 64;
    return end * jobs + steps * jobs;
}

/* The smallest K chunk of the GEMV ramp: at least an array's rows, and at
 * least 512 bytes of each weight row, because a chunk's rows are strided in
 * DRAM and each costs whole 64-byte bursts (an IF4 row of 32 weights is 18
 * bytes but moves 64 or 128). 512 measured best for IF4, Q4_0 and Q4_1. */
static uint32_t ramp_chunk(const pm_config *cfg, const shape_info *si)
{
    uint64_t unit = fmt_bytes(si->d->w_fmt, si->k_gran);
    uint64_t g = ceil_div(512, unit) * si->k_gran;
    if (g < cfg->tensor_rows) g = cfg->tensor_rows;
    return (uint32_t)round_up(g, si->k_gran);
}

#define PLAN_TIE 0.01

static pm_status choose_plan(const pm_config *cfg, const shape_info *si, uint32_t m_job, uint32_t n_job,
                             uint32_t jobs, uint32_t engines, plan *best, pm_error *err)
{
    const pm_matmul_desc *d = si->d;
    uint32_t R = cfg->tensor_rows;
    /* Dataflows to try (tshape imm: 1 os, 2 ws). GEMV streams weight-stationary. */
    int dfs[2] = {1, 2}, ndf = 2;
    if (d->M == 1) dfs[0] = 2, ndf = 1;
    else if (!d->dataflow_auto)
        dfs[0] = (d->dataflow_from_config ? cfg->tensor_dataflow : d->dataflow) == PM_DATAFLOW_WEIGHT_STATIONARY ? 2 : 1,
        ndf = 1;
    uint64_t m_cap = d->M == 1 ? 1 : round_up(m_job, R);
    uint64_t n_cap = round_up(n_job, si->n_gran);
    bool found = false;
    uint64_t best_insns = 0, best_ops = 0;
    for (uint64_t tm = d->M == 1 ? 1 : R;; tm = tm * 2 > m_cap ? m_cap : tm * 2) {
        for (uint64_t tn = si->n_gran;; tn = tn * 2 > n_cap ? n_cap : tn * 2) {
            if (2 * tm * tn * 4 <= cfg->accum_bytes) {
                for (uint32_t div = 1; div <= 4096; div = div < 4 ? div + 1 : div * 2) {
                    uint64_t tk = round_up(ceil_div(d->K, div), si->k_gran);
                    if (tk > d->K) tk = d->K;
                    if (div > 1 && tk == d->K) continue;
                    /* Short chunks cost more than the replay sees (issue order, queue
                     * windows): keep K chunks at least 4 array rows long. */
                    if (tk < d->K && tk < 4ull * R) break;
                    for (int cand = 0; cand < 2 * ndf; cand++) {
                        int res = 1 - cand / ndf, df = dfs[cand % ndf];
                        if (!res && (d->M == 1 || tk == d->K)) continue; /* streaming A only helps with chunks */
                        budget u = plan_budget(si, (uint32_t)tm, (uint32_t)tn, (uint32_t)tk, res);
                        if (2 * (u.a + u.b + u.out) + u.bias > cfg->sram_bytes) continue;
                        plan p = {.tm = (uint32_t)tm, .tn = (uint32_t)tn, .tk = (uint32_t)tk, .a_resident = res,
                                  .dataflow = df, .ramp = d->M == 1,
                                  .k_ramp = ramp_chunk(cfg, si)};
                        /* Tilings whose unrolled program cannot fit the instruction memory
                         * are not replayed (their step count is what makes them slow to
                         * cost); the smallest of them is kept only while nothing fits. */
                        uint64_t quick = (emitted_mblocks(m_job, tm) * emitted_ntiles(n_job, tn) *
                                          (ceil_div(d->K, tk) * 16 + 12)) *
                                         emitted_jobs(jobs) * engines;
                        if (quick > cfg->imem_words) {
                            if (!found || (best_insns > cfg->imem_words && quick < best_insns)) {
                                p.est_cycles = 1e300;
                                *best = p, best_insns = quick, found = true;
                            }
                            continue;
                        }
                        uint64_t insns;
                        p.est_cycles = plan_cost(cfg, si, &p, m_job, n_job, jobs, &insns);
                        insns *= engines;
                        bool fits = insns <= cfg->imem_words;
                        /* Among tilings within 0.2% of the fastest, the one with fewer
                         * tensor ops wins: longer ops, fewer accumulator round trips, and
                         * a simulator that spends its time in the matmuls themselves. */
                        uint64_t ops = ceil_div(m_job, tm) * ceil_div(n_job, tn) * ceil_div(d->K, tk);
                        bool same_fit = fits == (best_insns <= cfg->imem_words);
                        bool faster = p.est_cycles < best->est_cycles * (1.0 - PLAN_TIE);
                        bool tied = p.est_cycles <= best->est_cycles * (1.0 + PLAN_TIE) && ops < best_ops;
                        bool better = !found || (fits && best_insns > cfg->imem_words) || (same_fit && (faster || tied));
                        if (better) *best = p, best_insns = insns, best_ops = ops, found = true;
                    }
                    if (tk <= si->k_gran) break;
                }
            }
            if (tn >= n_cap) break;
        }
        if (tm >= m_cap) break;
    }
    if (!found)
        return pm_error_set(err, PM_ERR_CONFIG,
                            "matmul M=%u N=%u K=%u: no tiling fits sram.bytes = %llu and sram.accumulator_bytes = "
                            "%llu (even %u x %u output tiles with %u-element K chunks)",
                            d->M, d->N, d->K, (unsigned long long)cfg->sram_bytes,
                            (unsigned long long)cfg->accum_bytes, d->M == 1 ? 1 : R, si->n_gran, si->k_gran);
    budget u = plan_budget(si, best->tm, best->tn, best->tk, best->a_resident);
    uint64_t at = 0;
    best->a_buf[0] = at, at += u.a;
    best->a_buf[1] = at, at += u.a;
    best->b_buf[0] = at, at += u.b;
    best->b_buf[1] = at, at += u.b;
    best->out_buf[0] = at, at += u.out;
    best->out_buf[1] = at, at += u.out;
    best->bias_sram = at;
    best->acc_tile[0] = 0;
    best->acc_tile[1] = (uint64_t)best->tm * best->tn * 4;
    return PM_OK;
}

/* ---- the kernel ---- */

static pm_status check_range(const char *what, uint64_t addr, uint64_t stride, uint32_t batch, uint64_t bytes,
                             uint64_t dram_bytes, pm_error *err)
{
    /* Checked piece by piece so no product or sum can wrap around. */
    if (addr > dram_bytes || bytes > dram_bytes - addr ||
        (batch > 1 && stride > (dram_bytes - addr - bytes) / (batch - 1)))
        return pm_error_set(err, PM_ERR_INVALID,
                            "matmul: %s at 0x%llx (%llu bytes, batch %u, batch stride %llu) does not fit in DRAM "
                            "(0x%llx bytes)",
                            what, (unsigned long long)addr, (unsigned long long)bytes, batch,
                            (unsigned long long)stride, (unsigned long long)dram_bytes);
    return PM_OK;
}

/* Everything the program and the public plan share: validation, the split
 * over engines and the chosen tiling. */
typedef struct prepared {
    shape_info si;
    uint32_t engines, m_share, n_share;
    bool split_batch, split_m;
    plan p;
} prepared;

static pm_status prepare(const pm_config *cfg, const pm_matmul_desc *d, prepared *pr, pm_error *err)
{
    memset(pr, 0, sizeof *pr);
    shape_info *sip = &pr->si;
    sip->d = d;
    pm_status st = pm_matmul_check(d, &sip->x_bytes, &sip->w_bytes, &sip->y_bytes, err);
    if (st) return st;
    if (!cfg) return pm_error_set(err, PM_ERR_INVALID, "matmul: no config");
    shape_info si = *sip;
    uint32_t engines = d->engines ? d->engines : 1;
    if (engines > cfg->engines)
        return pm_error_set(err, PM_ERR_INVALID, "matmul: engines = %u but the config has chip.engines = %u", engines,
                            cfg->engines);
    if (engines > 1 && d->sync_flag >= cfg->flags)
        return pm_error_set(err, PM_ERR_INVALID, "matmul: sync_flag %u is not below chip.flags = %u", d->sync_flag,
                            cfg->flags);
    if ((st = check_range("x", d->x_addr, d->x_batch_stride, d->batch, si.x_bytes, cfg->dram_bytes, err)) ||
        (st = check_range("w", d->w_addr, d->w_batch_stride, d->batch, si.w_bytes, cfg->dram_bytes, err)) ||
        (st = check_range("y", d->y_addr, d->y_batch_stride, d->batch, si.y_bytes, cfg->dram_bytes, err)))
        return st;
    if (d->has_bias && (st = check_range("bias", d->bias_addr, 0, 1, (uint64_t)d->N * 4, cfg->dram_bytes, err)))
        return st;
    si.w_hdr = pm_format_get(d->w_fmt)->header_bytes;
    si.w_row = fmt_bytes(d->w_fmt, d->K);
    si.y_row = fmt_bytes(d->out_fmt, d->N);
    si.k_gran = fmt_granule(d->w_fmt);
    uint64_t og = fmt_granule(d->out_fmt);
    si.n_gran = (uint32_t)(cfg->tensor_cols / gcd64(cfg->tensor_cols, og) * og);

    /* Work split: whole batch entries when there are enough; else ranges of
     * N, or (GEMM) ranges of M when the planner expects that to be faster:
     * an N split makes every engine read all of X, an M split all of W. */
    bool split_batch = engines > 1 && d->batch >= engines;
    uint32_t n_share = split_batch || engines == 1 ? d->N : (uint32_t)round_up(ceil_div(d->N, engines), si.n_gran);
    uint32_t jobs_per_engine = split_batch ? (uint32_t)ceil_div(d->batch, engines) : d->batch;
    plan p = {0};
    if ((st = choose_plan(cfg, &si, d->M, n_share, jobs_per_engine, engines, &p, err))) return st;
    pr->m_share = d->M, pr->n_share = n_share;
    if (engines > 1 && !split_batch && d->M > 1) {
        uint32_t m_share = (uint32_t)round_up(ceil_div(d->M, engines), cfg->tensor_rows);
        plan pm = {0};
        pm_error ignored;
        if (choose_plan(cfg, &si, m_share, d->N, jobs_per_engine, engines, &pm, &ignored) == PM_OK &&
            pm.est_cycles < p.est_cycles) {
            p = pm;
            pr->split_m = true, pr->m_share = m_share, pr->n_share = d->N;
        }
    }
    pr->si = si;
    pr->engines = engines;
    pr->split_batch = split_batch;
    pr->p = p;
    return PM_OK;
}

pm_status pm_matmul_plan_get(const pm_config *cfg, const pm_matmul_desc *d, pm_matmul_plan *out, pm_error *err)
{
    prepared pr;
    pm_status st = prepare(cfg, d, &pr, err);
    if (st) return st;
    memset(out, 0, sizeof *out);
    out->tile_m = pr.p.tm, out->tile_n = pr.p.tn, out->tile_k = pr.p.tk;
    out->a_resident = pr.p.a_resident;
    out->ramp = pr.p.ramp;
    out->dataflow = pr.p.dataflow == 2 ? PM_DATAFLOW_WEIGHT_STATIONARY : PM_DATAFLOW_OUTPUT_STATIONARY;
    out->engines = pr.engines;
    out->split_batch = pr.split_batch;
    out->split_m = pr.split_m;
    out->est_cycles = pr.p.est_cycles;
    return PM_OK;
}

pm_status pm_kernel_matmul(const pm_config *cfg, const pm_matmul_desc *d, pm_program *out, pm_error *err)
{
    prepared pr;
    if (!out) return pm_error_set(err, PM_ERR_INVALID, "matmul: no output program");
    pm_status st = prepare(cfg, d, &pr, err);
    if (st) return st;
    const shape_info si = pr.si;
    const plan p = pr.p;
    uint32_t engines = pr.engines;
    if (engines > 64) return pm_error_set(err, PM_ERR_INVALID, "matmul: engines = %u is more than 64", engines);

    pm_builder *b;
    if ((st = pm_builder_create(&b, err))) return st;
    emitter e = {.b = b, .cfg = cfg, .d = d, .fences = cfg->hazard_mode == PM_HAZARD_REPORT};
    step_list steps = {0};
    if (d->has_act) pm_builder_emit(b, PM_OP_LFUCFG, 0, d->act, 0, 0, 0, 0);
    uint32_t labels[64 + 1]; /* chip.engines is at most 64 (config rules) */
    if (cfg->engines > 1) {
        /* One program for every engine: each jumps to its own share; engines
         * beyond the split (the runtime loads all by default) halt at once. */
        pm_builder_emit(b, PM_OP_CSRR, R_ID, PM_CSR_ENGINE_ID, 0, 0, 0, 0);
        uint32_t go = pm_builder_label(b);
        li(&e, R_TMP, engines);
        pm_builder_emit(b, PM_OP_BLT, R_ID, R_TMP, pm_builder_ref(go), 0, 0, 0);
        pm_builder_emit(b, PM_OP_HALT, 0, 0, 0, 0, 0, 0);
        pm_builder_bind(b, go);
        for (uint32_t k = 1; k < engines; k++) {
            labels[k] = pm_builder_label(b);
            li(&e, R_TMP, k);
            pm_builder_emit(b, PM_OP_BEQ, R_ID, R_TMP, pm_builder_ref(labels[k]), 0, 0, 0);
        }
    }
    for (uint32_t eng = 0; eng < engines && !st; eng++) {
        if (eng > 0) pm_builder_bind(b, labels[eng]);
        emitter_reset(&e);
        li(&e, R_ONE, 1);
        cursor cur = {0};
        steps.count = 0;
        uint32_t jobs = 0;
        job last = {0};
        for (uint32_t bi = 0; bi < d->batch && !st; bi++) {
            job j = {bi, 0, d->M, 0, d->N};
            if (pr.split_batch) {
                if (bi % engines != eng) continue;
            } else if (engines > 1 && pr.split_m) {
                uint64_t lo = (uint64_t)eng * pr.m_share, hi = lo + pr.m_share;
                if (lo >= d->M) continue;
                j.m_begin = (uint32_t)lo, j.m_end = (uint32_t)(hi < d->M ? hi : d->M);
            } else if (engines > 1) {
                uint64_t lo = (uint64_t)eng * pr.n_share, hi = lo + pr.n_share;
                if (lo >= d->N) continue;
                j.n_begin = (uint32_t)lo, j.n_end = (uint32_t)(hi < d->N ? hi : d->N);
            }
            st = job_steps(&si, &p, &j, &cur, &steps, err);
            jobs++, last = j;
        }
        if (st) break;
        /* Every job of an engine has the same shape: its full M blocks repeat
         * pair by pair, so all but three pairs can run as a loop (emit_steps). */
        uint64_t loop_pairs = 0;
        size_t pair_steps = 0;
        if (jobs) {
            size_t per_block = 0;
            uint32_t n_job = last.n_end - last.n_begin;
            for (uint32_t n0 = 0, nj; n0 < n_job; n0 += nj) {
                nj = tile_width(&p, n0, n_job);
                for (uint32_t k0 = 0, kc; k0 < d->K; k0 += kc, per_block++)
                    kc = chunk_len(&p, k0, d->K, n0 == 0, n0 + nj == n_job);
            }
            loop_pairs = (last.m_end - last.m_begin) / p.tm / 2;
            pair_steps = 2 * per_block;
        }
        /* Where each tile starts, for the loop over N tiles. */
        size_t *tile_start = NULL, tiles = 0;
        if (steps.count) {
            tile_start = malloc(steps.count * sizeof *tile_start);
            if (!tile_start) {
                st = pm_error_set(err, PM_ERR_NOMEM, "matmul: out of memory for the tile table");
                break;
            }
            for (size_t i = 0; i < steps.count; i++)
                if (i == 0 || steps.v[i - 1].tile_end) tile_start[tiles++] = i;
            e.tile_start = tile_start, e.tile_count = tiles;
            e.tiles_per_block = ceil_div(last.n_end - last.n_begin, p.tn);
        }
        if (d->has_bias && steps.count) {
            /* The bias vector travels once, ahead of the pipeline. */
            dma_desc bias = {true, p.bias_sram, d->bias_addr, (uint64_t)d->N * 4, 1, 0, 0, BASE_ABS};
            emit_dma(&e, &bias);
        }
        e.job_steps = jobs ? steps.count / jobs : 0;
        e.pair_steps = pair_steps, e.loop_pairs = loop_pairs;
        emit_steps(&e, steps.v, steps.count, p.dataflow, jobs);
        free(tile_start);
        e.tile_start = NULL;
        if (engines > 1) {
            pm_builder_emit(b, PM_OP_FADD, d->sync_flag, 1, 0, 0, 0, 0);
            if (eng == 0) {
                /* Engine 0 ends only after every engine's results are in DRAM,
                 * then puts the flag back to 0 so the program can run again. */
                pm_builder_emit(b, PM_OP_FWAIT, d->sync_flag, engines, 0, 0, 0, 0);
                pm_builder_emit(b, PM_OP_FADD, d->sync_flag, -(int64_t)engines, 0, 0, 0, 0);
            }
        }
        pm_builder_emit(b, PM_OP_HALT, 0, 0, 0, 0, 0, 0);
    }
    free(steps.v);
    if (!st) {
        if (pm_builder_pc(b) > cfg->imem_words)
            st = pm_error_set(err, PM_ERR_CONFIG,
                              "matmul M=%u N=%u K=%u batch %u: the program has %u instructions; control.imem_words "
                              "holds %u",
                              d->M, d->N, d->K, d->batch, pm_builder_pc(b), cfg->imem_words);
        else
            st = pm_builder_finish(b, out, err);
    }
    pm_builder_destroy(b);
    return st;
}
