/* The LLM linear layer Y = X x W^T: X and Y stay in SRAM, W streams from
 * DRAM through two scratch slots in tiles of whole weight rows (all of K,
 * so every tile is one contiguous DMA), each multiplied weight-stationary as
 * soon as it lands while the next one loads; for M > 1 a staging tile in the
 * scratch takes each op's outputs on their way into Y's rows. See
 * docs/llm-kernels.md. */
#include "kernels_internal.h"
#include "llm_internal.h"

#include <string.h>

/* A weight tile of at least this many bytes: small enough that the first
 * load (when not prefetched) and the last tile's multiply, which nothing in
 * the linear overlaps, stay short; large enough that the per-tile
 * instructions are few. 16 KiB is ~320 cycles of edge's DRAM channel. */
#define TILE_TARGET_BYTES (16u * 1024u)

/* Registers the emitted code keeps across the helpers (r1..r6 are theirs). */
enum {
    R_W = PM_LLM_RFIRST_FREE, /* DRAM address of the next tile to load (post-incremented) */
    R_Y,                      /* SRAM address of the current tile's first Y column */
    R_SLOT0, R_SLOT1,         /* B operands: the two slots */
    R_ROWS0, R_ROWS1,         /* where each slot's rows land (after a tensor-scale header) */
    R_ACC0, R_ACC1,           /* the two accumulator tiles */
    R_X,                      /* A of the current M block */
    R_D, R_A,                 /* tout destination and accumulator row, row by row */
    R_YSTRIDE,                /* bytes of one Y row */
    R_ROWCNT, R_PAIRCNT,      /* loop counters */
    R_TM, R_TN, R_TK, R_ONE, R_TBYTES,
};

/* tshape imm: weight-stationary for every M (a GEMV streams at the preload
 * rate; from M = 8 every array row is busy, and a ragged M wastes nothing). */
#define TILE_DATAFLOW_WS 2
/* Slots and the staging tile start on 64-byte boundaries (contiguous SRAM
 * ranges spread over the banks whatever their alignment; this only keeps
 * the sizes round). */
#define SLOT_ALIGN 64u

typedef struct lin_plan {
    const pm_linear_desc *d;
    uint64_t w_hdr;      /* per-tensor header (NVFP4/IF4 scale), copied in front of each slot */
    uint64_t w_row;      /* bytes of one weight row (K elements, no header) */
    uint64_t w_bytes;    /* the whole encoded tensor */
    uint64_t x_bytes, y_bytes, y_elem;
    uint32_t tn, tiles;  /* rows per tile (the last may be fewer), tile count (even when possible) */
    uint32_t mb;         /* rows of X per tensor op (M blocks fit the accumulator) */
    uint64_t slot[2], acc[2];
    uint64_t staging;    /* M > 1: one op's outputs before they go to Y row by row */
} lin_plan;

static uint32_t tile_rows(const lin_plan *p, uint32_t t)
{
    uint32_t n0 = t * p->tn;
    return p->d->N - n0 < p->tn ? p->d->N - n0 : p->tn;
}

/* Shape and format rules shared by the emitter and the reference. */
static pm_status check_desc(const pm_linear_desc *d, lin_plan *p, pm_error *err)
{
    if (!d) return pm_error_set(err, PM_ERR_INVALID, "linear: no descriptor");
    if (d->M == 0) return pm_error_set(err, PM_ERR_INVALID, "linear: M = 0");
    if (d->N == 0) return pm_error_set(err, PM_ERR_INVALID, "linear: N = 0");
    if (d->K == 0) return pm_error_set(err, PM_ERR_INVALID, "linear: K = 0");
    const pm_format_info *wi = pm_format_get(d->w_fmt);
    if (!wi) return pm_error_set(err, PM_ERR_INVALID, "linear: w_fmt %d is not a format", (int)d->w_fmt);
    if (d->y_fmt != PM_FMT_F32 && d->y_fmt != PM_FMT_BF16) {
        const pm_format_info *yi = pm_format_get(d->y_fmt);
        return pm_error_set(err, PM_ERR_INVALID, "linear: y_fmt = %s; must be f32 or bf16",
                            yi ? yi->name : "(not a format)");
    }
    size_t row;
    if (!pm_format_bytes(d->w_fmt, d->K, &row))
        return pm_error_set(err, PM_ERR_INVALID, "linear: K = %u is not a whole number of %s storage units (%u elements)",
                            d->K, wi->name, wi->block_elems > 1 ? wi->block_elems : 2);
    pm_matmul_desc md;
    pm_matmul_desc_init(&md, d->M, d->N, d->K, d->w_fmt, d->y_fmt);
    pm_status st = pm_matmul_check(&md, &p->x_bytes, &p->w_bytes, &p->y_bytes, err);
    if (st) {
        pm_error_prefix(err, "linear: ");
        return st;
    }
    p->d = d;
    p->w_hdr = wi->header_bytes;
    p->w_row = row - wi->header_bytes;
    p->y_elem = d->y_fmt == PM_FMT_F32 ? 4 : 2;
    return PM_OK;
}

/* Rows per tile and tile count. Tiles alternate between the two slots, and
 * the count is made even when the rows allow it, so a linear always starts
 * in slot 0 and ends in slot 1: the next linear on the same scratch loads
 * its first tile into the slot whose last reader finished a tile earlier,
 * and the weight stream runs on across the boundary. */
/* Rows of a full-speed tile. Weight-stationary, a K tile's sums re-enter
 * the array R + 1 cycles after the previous K tile's (docs/tensor.md, "the
 * K-tile wait"); the column blocks of one tile, G = max(M, preload) cycles
 * each, hide it only when there are enough of them. Fewer rows leave a GEMV
 * waiting on the array instead of on DRAM. */
static uint64_t target_rows(const pm_config *cfg, const lin_plan *p)
{
    uint32_t g = cfg->tensor_cols, R = cfg->tensor_rows;
    uint64_t preload = pm_llm_ceil_div(R, cfg->tensor_weight_load_rows);
    uint64_t G = p->mb > preload ? p->mb : preload;
    uint64_t target = pm_llm_ceil_div(R + 1, G) * g;
    if (target < TILE_TARGET_BYTES / p->w_row) target = TILE_TARGET_BYTES / p->w_row;
    return pm_llm_round_up(target, g);
}

static void choose_tiles(const pm_config *cfg, lin_plan *p, uint32_t cap)
{
    uint32_t N = p->d->N, g = cfg->tensor_cols;
    uint64_t target = target_rows(cfg, p);
    uint32_t tn0 = cap < target ? cap : (uint32_t)target;
    if (N <= tn0) {
        /* Two tiles (one per slot) when N allows it. */
        p->tn = N > 1 ? (uint32_t)pm_llm_ceil_div(N, 2) : 1;
        p->tiles = (uint32_t)pm_llm_ceil_div(N, p->tn);
        return;
    }
    /* The array-width multiple nearest tn0 (larger first) that gives an
     * even tile count; tn0 itself when none does. */
    p->tn = tn0;
    p->tiles = (uint32_t)pm_llm_ceil_div(N, tn0);
    if (tn0 % g) return;
    for (uint32_t step = 0; step <= tn0 / g; step++) {
        uint64_t up = (uint64_t)tn0 + (uint64_t)step * g, down = (uint64_t)tn0 - (uint64_t)step * g;
        if (up <= cap && pm_llm_ceil_div(N, up) % 2 == 0) {
            p->tn = (uint32_t)up;
            break;
        }
        if (down >= g && pm_llm_ceil_div(N, down) % 2 == 0) {
            p->tn = (uint32_t)down;
            break;
        }
    }
    p->tiles = (uint32_t)pm_llm_ceil_div(N, p->tn);
}

/* Everything the emitter needs to know from the config: ranges, slots,
 * accumulator tiles, tiling. Errors name the descriptor field. */
/* Rows of the smallest tile the emitter accepts: an array width, or half
 * of a narrower N (two tiles, one per slot). */
static uint64_t smallest_tile(const pm_config *cfg, const pm_linear_desc *d)
{
    return d->N > cfg->tensor_cols ? cfg->tensor_cols : (d->N + 1) / 2;
}

/* M blocks: as many rows per tensor op as leave room for two accumulator
 * tiles of at least one array width each. Returns the bytes of one
 * accumulator tile's half of the memory. */
static uint64_t plan_m_blocks(const pm_config *cfg, lin_plan *p)
{
    uint64_t half_acc = cfg->accum_bytes / 2 / 4 * 4;
    uint64_t mb = half_acc / (4ull * cfg->tensor_cols);
    p->mb = p->d->M < mb ? p->d->M : (uint32_t)mb;
    return half_acc;
}

/* with_xy: the prefetch moves only weights, so it checks only W and the
 * scratch (a runner may prefetch before it knows where Y goes). */
static pm_status plan_linear(const pm_config *cfg, const pm_linear_desc *d, bool with_xy, lin_plan *p, pm_error *err)
{
    memset(p, 0, sizeof *p);
    if (!cfg) return pm_error_set(err, PM_ERR_INVALID, "linear: no config");
    pm_status st = check_desc(d, p, err);
    if (st) return st;
    if ((st = pm_llm_kernels_check(cfg, err))) return st;
    if ((st = pm_llm_check_sram(cfg, "linear", "scratch_sram", d->scratch_sram, d->scratch_bytes, err)) ||
        (st = pm_llm_check_dram(cfg, "linear", "w_dram", d->w_dram, p->w_bytes, err)))
        return st;
    if (with_xy &&
        ((st = pm_llm_check_sram(cfg, "linear", "x_sram", d->x_sram, p->x_bytes, err)) ||
         (st = pm_llm_check_sram(cfg, "linear", "y_sram", d->y_sram, p->y_bytes, err)) ||
         (st = pm_llm_check_disjoint("linear", "x_sram", d->x_sram, p->x_bytes, "y_sram", d->y_sram, p->y_bytes,
                                     err)) ||
         (st = pm_llm_check_disjoint("linear", "x_sram", d->x_sram, p->x_bytes, "scratch_sram", d->scratch_sram,
                                     d->scratch_bytes, err)) ||
         (st = pm_llm_check_disjoint("linear", "y_sram", d->y_sram, p->y_bytes, "scratch_sram", d->scratch_sram,
                                     d->scratch_bytes, err))))
        return st;

    uint32_t g = cfg->tensor_cols;
    uint64_t half_acc = plan_m_blocks(cfg, p);
    uint64_t acc_cap = half_acc / (4ull * p->mb);

    /* The scratch: two slots, each the tensor-scale header (if any) then
     * whole rows, and for M > 1 a staging tile (one tensor op's M x n
     * outputs, copied row by row into Y by the vector unit). The staging
     * size follows from the tile, the tile from the slots: a second pass
     * shrinks the slots when the first pass's tile leaves no room. */
    uint64_t min_rows = smallest_tile(cfg, d), slot_bytes = 0, staging = 0;
    uint64_t min_staging = d->M > 1 ? pm_llm_round_up(p->mb * min_rows * p->y_elem, SLOT_ALIGN) : 0;
    for (int pass = 0;; pass++) {
        uint64_t avail = d->scratch_bytes > staging ? d->scratch_bytes - staging : 0;
        slot_bytes = avail / 2;
        slot_bytes = slot_bytes / SLOT_ALIGN * SLOT_ALIGN;
        uint64_t rows_fit = slot_bytes > p->w_hdr ? (slot_bytes - p->w_hdr) / p->w_row : 0;
        if (rows_fit < min_rows && staging > min_staging) {
            /* The first pass's tile leaves too little: the smallest tile. */
            staging = min_staging;
            continue;
        }
        if (rows_fit < min_rows) {
            uint64_t need = 2 * pm_llm_round_up(p->w_hdr + min_rows * p->w_row, SLOT_ALIGN) + min_staging;
            return pm_error_set(err, PM_ERR_INVALID,
                                "linear: scratch_bytes = %llu is too small: two weight tiles of %llu rows of K = %u "
                                "%s%s need %llu bytes",
                                (unsigned long long)d->scratch_bytes, (unsigned long long)min_rows, d->K,
                                pm_format_get(d->w_fmt)->name, d->M > 1 ? " and their output staging" : "",
                                (unsigned long long)need);
        }
        uint64_t cap = rows_fit;
        if (cap > acc_cap) cap = acc_cap;
        if (cap > d->N) cap = d->N;
        if (staging && cap > staging / (p->mb * p->y_elem)) cap = staging / (p->mb * p->y_elem);
        if (cap >= g) cap = cap / g * g;
        choose_tiles(cfg, p, (uint32_t)cap);
        if (d->M == 1) break;
        uint64_t need = pm_llm_round_up((uint64_t)p->mb * p->tn * p->y_elem, SLOT_ALIGN);
        if (2 * slot_bytes + need <= d->scratch_bytes) {
            staging = need;
            break;
        }
        if (pass >= 3) return pm_error_set(err, PM_ERR_INVALID, "linear: no tiling fits scratch_bytes = %llu",
                                           (unsigned long long)d->scratch_bytes);
        staging = need;
    }
    p->staging = d->scratch_sram + 2 * slot_bytes;
    p->slot[0] = d->scratch_sram;
    p->slot[1] = d->scratch_sram + slot_bytes;
    p->acc[0] = 0;
    p->acc[1] = half_acc;
    return PM_OK;
}

/* ---- emission ---- */

static void emit(pm_builder *b, pm_opcode op, int64_t a, int64_t c, int64_t e, int64_t f)
{
    pm_builder_emit(b, op, a, c, e, f, 0, 0);
}

static uint64_t tile_bytes(const lin_plan *p, uint32_t t)
{
    return (uint64_t)tile_rows(p, t) * p->w_row;
}

static uint64_t tile_dram(const lin_plan *p, uint32_t t)
{
    return p->d->w_dram + p->w_hdr + (uint64_t)t * p->tn * p->w_row;
}

/* The loads that start the stream: the tensor-scale header into each slot
 * (NVFP4/IF4) and tiles 0 and 1. pm_emit_linear_prefetch issues exactly
 * these. */
static void emit_first_loads(pm_builder *b, const lin_plan *p)
{
    if (p->w_hdr) {
        pm_llm_dma_ld(b, p->slot[0], p->d->w_dram, p->w_hdr);
        pm_llm_dma_ld(b, p->slot[1], p->d->w_dram, p->w_hdr);
    }
    for (uint32_t t = 0; t < 2 && t < p->tiles; t++)
        pm_llm_dma_ld(b, p->slot[t % 2] + p->w_hdr, tile_dram(p, t), tile_bytes(p, t));
}

/* Emitted-code state the step emitter caches (tshape and DMA row bytes),
 * forgotten at loop heads. */
typedef struct lin_emit {
    pm_builder *b;
    const lin_plan *p;
    int64_t tm, tn;     /* tshape M, N in effect (-1 unknown) */
    int64_t dma_row;    /* dma.shape row bytes in effect (-1 unknown) */
    uint32_t op_parity; /* accumulator tile of the next tensor op */
    /* The op whose rows of Y are still to be written (its touts go out
     * after the next op's tmm, see emit_step). */
    bool pending;
    uint32_t pend_m0, pend_mi, pend_n;
    int pend_acc;
    bool pend_tile_end; /* the tile's last M block: advance R_Y after it */
} lin_emit;

static void set_tshape(lin_emit *e, uint32_t m, uint32_t n)
{
    if (e->tm == m && e->tn == n) return;
    if (e->tm != m) pm_llm_li(e->b, R_TM, m);
    if (e->tn != n) pm_llm_li(e->b, R_TN, n);
    emit(e->b, PM_OP_TSHAPE, R_TM, R_TN, R_TK, TILE_DATAFLOW_WS);
    e->tm = m, e->tn = n;
}

/* The pending op's rows of Y. R_Y holds its tile's first column. */
static void emit_pending_touts(lin_emit *e)
{
    if (!e->pending) return;
    pm_builder *b = e->b;
    const lin_plan *p = e->p;
    const pm_linear_desc *d = p->d;
    uint32_t n = e->pend_n;
    e->pending = false;
    if (d->M == 1) {
        /* One row: the tile's outputs are contiguous in Y. */
        set_tshape(e, 1, n);
        emit(b, PM_OP_TOUT, d->y_fmt, R_Y | PM_AREG_INC, e->pend_acc, 0);
        return;
    }
    /* The op's mi x n outputs with one tout into the staging tile, then
     * row by row into Y (rows N apart) on the vector unit: a tout per row
     * would fill the tensor unit's queue and hold the next tmm's issue
     * until this one's array drains. */
    set_tshape(e, e->pend_mi, n);
    pm_llm_li(b, R_A, p->staging);
    emit(b, PM_OP_TOUT, d->y_fmt, R_A, e->pend_acc, 0);
    pm_llm_li(b, R_D, (uint64_t)e->pend_m0 * d->N * p->y_elem);
    emit(b, PM_OP_ADD, R_D, R_D, R_Y, 0);
    pm_llm_li(b, R_ROWCNT, e->pend_mi);
    uint32_t head = pm_builder_label(b);
    pm_builder_bind(b, head);
    emit(b, PM_OP_VMOV, d->y_fmt, R_D, R_A | PM_AREG_INC, R_TN);
    emit(b, PM_OP_ADD, R_D, R_D, R_YSTRIDE, 0);
    emit(b, PM_OP_LOOP, R_ROWCNT, pm_builder_ref(head), 0, 0);
    if (e->pend_tile_end) emit(b, PM_OP_ADDI, R_Y, R_Y, (int64_t)n * (int64_t)p->y_elem, 0);
}

/* The load of tile t + 2 into tile t's slot, after tile t's last tmm (the
 * interlock holds it until the multiplies have read the slot). */
static void emit_next_load(lin_emit *e, uint32_t t)
{
    const lin_plan *p = e->p;
    if (t + 2 >= p->tiles) return;
    uint64_t bytes = tile_bytes(p, t + 2);
    if ((int64_t)bytes != e->dma_row) {
        pm_llm_li(e->b, R_TBYTES, bytes);
        emit(e->b, PM_OP_DSHAPE, R_TBYTES, R_ONE, R_ONE, 0);
        e->dma_row = (int64_t)bytes;
    }
    emit(e->b, PM_OP_DLD, t % 2 ? R_ROWS1 : R_ROWS0, R_W | PM_AREG_INC, 0, 0);
}

/* Tile t: one tmm per M block, then the load of tile t + 2 into the slot
 * this tile just used (the interlock holds it until the multiplies have
 * read the slot). Each op's touts go out after the next op's tmm: the two
 * use different accumulator tiles, and the control core, which stalls when
 * the tensor unit's queue is full of touts waiting for their tmm, has by
 * then already issued the next multiply. Depends only on the slot parity and
 * the tile widths, so pairs of full tiles repeat as a loop. */
static void emit_step(lin_emit *e, uint32_t t)
{
    pm_builder *b = e->b;
    const lin_plan *p = e->p;
    const pm_linear_desc *d = p->d;
    uint32_t n = tile_rows(p, t), s = t % 2;
    for (uint32_t m0 = 0; m0 < d->M; m0 += p->mb) {
        uint32_t mi = d->M - m0 < p->mb ? d->M - m0 : p->mb;
        int acc = e->op_parity++ % 2 ? R_ACC1 : R_ACC0;
        set_tshape(e, mi, n);
        if (d->M > p->mb) pm_llm_li(b, R_X, d->x_sram + (uint64_t)m0 * d->K * 2);
        emit(b, PM_OP_TMM, d->w_fmt, acc, R_X, s ? R_SLOT1 : R_SLOT0);
        /* The load goes out before the touts: a row-by-row tout sequence
         * longer than the tensor queue stalls issue until this tmm ends. */
        if (m0 + mi == d->M) emit_next_load(e, t);
        emit_pending_touts(e);
        e->pending = true;
        e->pend_m0 = m0, e->pend_mi = mi, e->pend_n = n, e->pend_acc = acc;
        e->pend_tile_end = m0 + mi == d->M;
    }
}

static void emit_linear(pm_builder *b, const lin_plan *p)
{
    const pm_linear_desc *d = p->d;
    if (!d->prefetched) emit_first_loads(b, p);
    pm_llm_tepi_none(b);
    pm_llm_li(b, R_W, tile_dram(p, 2 < p->tiles ? 2 : 0));
    pm_llm_li(b, R_Y, d->y_sram);
    pm_llm_li(b, R_SLOT0, p->slot[0]);
    pm_llm_li(b, R_SLOT1, p->slot[1]);
    pm_llm_li(b, R_ROWS0, p->slot[0] + p->w_hdr);
    pm_llm_li(b, R_ROWS1, p->slot[1] + p->w_hdr);
    pm_llm_li(b, R_ACC0, p->acc[0]);
    pm_llm_li(b, R_ACC1, p->acc[1]);
    pm_llm_li(b, R_X, d->x_sram);
    pm_llm_li(b, R_YSTRIDE, (uint64_t)d->N * p->y_elem);
    pm_llm_li(b, R_TK, d->K);
    pm_llm_li(b, R_ONE, 1);
    lin_emit e = {.b = b, .p = p, .tm = -1, .tn = -1, .dma_row = -1};

    /* Steps whose tile and whose load of tile t + 2 are both full repeat
     * with the same code; pairs of them (one per slot) run as a loop. */
    uint32_t T = p->tiles, full = 0;
    while (full < T && full + 2 < T && tile_rows(p, full + 2) == p->tn) full++;
    uint32_t pairs = full / 2, t = 0;
    if (pairs >= 3) {
        /* The first pair straight, the rest as a loop. Its body sets the
         * tensor and DMA shapes itself (nothing cached is known at its head),
         * and the pending touts it starts and ends with are those of a full
         * tile. */
        emit_step(&e, 0), emit_step(&e, 1);
        pm_llm_li(b, R_PAIRCNT, pairs - 1);
        uint32_t head = pm_builder_label(b);
        pm_builder_bind(b, head);
        e.tm = e.tn = e.dma_row = -1;
        /* Two tiles make an even number of tensor ops: the body starts on
         * accumulator tile 0 in every iteration. */
        emit_step(&e, 2), emit_step(&e, 3);
        emit(b, PM_OP_LOOP, R_PAIRCNT, pm_builder_ref(head), 0, 0);
        t = 2 * pairs;
    }
    for (; t < T; t++) emit_step(&e, t);
    emit_pending_touts(&e);
}

pm_status pm_emit_linear(pm_builder *b, const pm_config *cfg, const pm_linear_desc *d, pm_error *err)
{
    lin_plan p;
    pm_status st = plan_linear(cfg, d, true, &p, err);
    if (st) return st;
    emit_linear(b, &p);
    return pm_builder_status(b, err);
}

pm_status pm_emit_linear_prefetch(pm_builder *b, const pm_config *cfg, const pm_linear_desc *d, pm_error *err)
{
    lin_plan p;
    pm_status st = plan_linear(cfg, d, false, &p, err);
    if (st) return st;
    emit_first_loads(b, &p);
    return pm_builder_status(b, err);
}

pm_status pm_linear_scratch_bytes(const pm_config *cfg, const pm_linear_desc *d, uint64_t *min_bytes,
                                  uint64_t *full_bytes, pm_error *err)
{
    lin_plan p;
    memset(&p, 0, sizeof p);
    if (!cfg) return pm_error_set(err, PM_ERR_INVALID, "linear: no config");
    pm_status st = check_desc(d, &p, err);
    if (st) return st;
    if ((st = pm_llm_kernels_check(cfg, err))) return st;
    uint64_t half_acc = plan_m_blocks(cfg, &p), g = cfg->tensor_cols;
    uint64_t min_rows = smallest_tile(cfg, d), full_rows = target_rows(cfg, &p);
    uint64_t acc_rows = half_acc / (4ull * p.mb) / g * g;
    if (full_rows > acc_rows) full_rows = acc_rows;
    if (full_rows > d->N) full_rows = d->N;
    if (full_rows < min_rows) full_rows = min_rows;
    uint64_t rows[2] = {min_rows, full_rows}, bytes[2];
    for (int i = 0; i < 2; i++) {
        bytes[i] = 2 * pm_llm_round_up(p.w_hdr + rows[i] * p.w_row, SLOT_ALIGN);
        if (d->M > 1) bytes[i] += pm_llm_round_up(p.mb * rows[i] * p.y_elem, SLOT_ALIGN);
    }
    if (min_bytes) *min_bytes = bytes[0];
    if (full_bytes) *full_bytes = bytes[1];
    return PM_OK;
}

pm_status pm_ref_linear(const pm_linear_desc *d, const uint16_t *x, const void *w, void *y, pm_error *err)
{
    lin_plan p;
    pm_status st = check_desc(d, &p, err);
    if (st) return st;
    if (!x || !w || !y) return pm_error_set(err, PM_ERR_INVALID, "linear: missing x, w or y buffer");
    pm_matmul_desc md;
    pm_matmul_desc_init(&md, d->M, d->N, d->K, d->w_fmt, d->y_fmt);
    return pm_ref_matmul(&md, x, w, NULL, y, err);
}
