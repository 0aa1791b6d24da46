/* The LLM's vector-unit kernels: embedding gather, RMSNorm, RoPE (rotate-half
 * layout), SwiGLU, residual add and top-k, each an emitter that appends its
 * instructions to a program plus a host reference computing the same bits.
 * Rows are processed in chunks that fit the caller's scratch range. */
#include "llm_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Sums and maxima reduce in groups of this many elements (see sum32). */
#define GROUP 32u
/* Words the top-k descent compares per loop trip (divides GROUP). */
#define SCAN_UNROLL 4
/* The NaN written by top-k for a missing record and as the mask of found entries. */
#define QNAN_BITS 0x7fc00000u

/* ---- small emit helpers (registers r7.. are ours; llm_internal's helpers use r1..r6) ---- */

static void emit(pm_builder *b, pm_opcode op, int64_t o0, int64_t o1, int64_t o2, int64_t o3, int64_t o4,
                 int64_t o5)
{
    pm_builder_emit(b, op, o0, o1, o2, o3, o4, o5);
}

static void li(pm_builder *b, int reg, uint64_t v)
{
    pm_llm_li(b, reg, v);
}

static int64_t inc(int reg)
{
    return reg | PM_AREG_INC;
}

static uint64_t align_up(uint64_t v)
{
    return pm_llm_round_up(v, PM_LLM_ALIGN);
}

static pm_status prologue_checks(const pm_config *cfg, const char *who, pm_error *err)
{
    pm_status st = pm_llm_kernels_check(cfg, err);
    if (st) pm_error_prefix(err, "%s: ", who);
    return st;
}

static pm_status need_scratch(const char *who, uint64_t need, uint64_t have, const char *what, pm_error *err)
{
    return pm_error_set(err, PM_ERR_INVALID, "%s: scratch_bytes = %llu; %s needs at least %llu", who,
                        (unsigned long long)have, what, (unsigned long long)need);
}

static bool arith_format(pm_format f)
{
    return f == PM_FMT_F32 || f == PM_FMT_BF16 || f == PM_FMT_F16;
}

static uint64_t esize(pm_format f)
{
    return f == PM_FMT_F32 ? 4 : 2;
}

/* ---- the canonical sum: groups of 32, each a pairwise tree ----
 * tree32 is exactly what `vredsum` computes for one row of n <= 32 elements
 * on 32 lanes: the values (padded with -0, the identity) folded pairwise,
 * p[i] += p[i + w/2] for w = 32, 16, ..., 2. Wider units (lanes >= 32) fold
 * the extra identities first, which changes nothing, and 16 lanes start by
 * adding x[l] + x[l+16], which is the first fold; so on any such unit one
 * vredsum per group gives these bits. A longer row is summed as groups of
 * 32 (the last one ragged), then the group sums the same way. */
static float tree32(const float *v, uint32_t n)
{
    float p[GROUP];
    for (uint32_t l = 0; l < GROUP; l++) p[l] = l < n ? -0.0f + v[l] : -0.0f;
    for (uint32_t w = GROUP; w > 1; w /= 2)
        for (uint32_t i = 0; i < w / 2; i++) p[i] = p[i] + p[i + w / 2];
    return p[0];
}

/* Overwrites v with the partial sums. */
static float sum32(float *v, uint32_t n)
{
    while (n > GROUP) {
        uint32_t groups = (uint32_t)pm_llm_ceil_div(n, GROUP);
        for (uint32_t g = 0; g < groups; g++) {
            uint32_t len = n - g * GROUP < GROUP ? n - g * GROUP : GROUP;
            v[g] = tree32(v + (uint64_t)g * GROUP, len);
        }
        n = groups;
    }
    return tree32(v, n);
}

/* The vector unit reproduces tree32 (see above) with >= 32 lanes or 16. */
static pm_status check_sum_lanes(const pm_config *cfg, const char *who, pm_error *err)
{
    if (cfg->vector_lanes >= GROUP || cfg->vector_lanes == GROUP / 2) return PM_OK;
    return pm_error_set(err, PM_ERR_UNSUPPORTED,
                        "%s: vector.lanes = %u; the row sums follow 32-element pairwise trees, which a vredsum "
                        "reproduces with 16 or at least 32 lanes",
                        who, cfg->vector_lanes);
}

/* Levels of the group reduction of a row of n: counts[0] = n, counts[i+1] =
 * ceil(counts[i] / 32), ending at 1. Returns the number of levels after 0. */
#define MAX_LEVELS 8
static uint32_t reduce_levels(uint64_t n, uint64_t counts[MAX_LEVELS + 1])
{
    uint32_t l = 0;
    counts[0] = n;
    while (counts[l] > 1 && l < MAX_LEVELS) {
        counts[l + 1] = pm_llm_ceil_div(counts[l], GROUP);
        l++;
    }
    return l;
}

/* One level of row reductions: R rows of `n` elements at src become R rows
 * of ceil(n/32) group results at dst (vredsum or vredmax). Uniform rows are
 * one instruction; a ragged last group costs two per row, in a loop. */
static void emit_reduce_level(pm_builder *b, pm_opcode op, uint64_t dst, uint64_t src, uint64_t n, uint64_t rows)
{
    uint64_t full = n / GROUP, tail = n % GROUP;
    enum { RD = 7, RA, RN, RROWS, RN2, RONE, RC };
    li(b, RD, dst);
    li(b, RA, src);
    if (n <= GROUP || tail == 0) {
        li(b, RN, n <= GROUP ? n : GROUP);
        li(b, RROWS, n <= GROUP ? rows : rows * full);
        emit(b, op, PM_FMT_F32, RD, RA, RN, RROWS, 0);
        return;
    }
    li(b, RN, GROUP);
    li(b, RROWS, full);
    li(b, RN2, tail);
    li(b, RONE, 1);
    li(b, RC, rows);
    uint32_t top = pm_builder_label(b);
    pm_builder_bind(b, top);
    emit(b, op, PM_FMT_F32, inc(RD), inc(RA), RN, RROWS, 0);
    emit(b, op, PM_FMT_F32, inc(RD), inc(RA), RN2, RONE, 0);
    emit(b, PM_OP_LOOP, RC, pm_builder_ref(top), 0, 0, 0, 0);
}

/* ======================= embedding gather ======================= */

/* Rows in flight: each has its own scratch slot, so the DMA of later rows
 * overlaps the conversion of earlier ones (the interlock orders slot reuse). */
#define EMBED_MAX_SLOTS 16u

pm_status pm_emit_embed(pm_builder *b, const pm_config *cfg, uint32_t M, uint32_t D, pm_format emb_fmt,
                        uint64_t emb_dram, uint32_t vocab, uint64_t ids_sram, uint64_t x_sram, uint64_t scratch_sram,
                        uint64_t scratch_bytes, pm_error *err)
{
    const char *who = "embed";
    pm_status st = prologue_checks(cfg, who, err);
    if (st) return st;
    if (M == 0 || D == 0 || vocab == 0)
        return pm_error_set(err, PM_ERR_INVALID, "%s: M = %u, D = %u, vocab = %u; each must be positive", who, M, D,
                            vocab);
    const pm_format_info *fi = pm_format_get(emb_fmt);
    size_t row_bytes;
    if (!fi || !pm_format_bytes(emb_fmt, D, &row_bytes))
        return pm_error_set(err, PM_ERR_INVALID, "%s: D = %u is not a whole number of %s storage units", who, D,
                            fi ? fi->name : "(unknown format)");
    /* A per-tensor header (NVFP4, IF4) is stored once for the whole matrix:
     * a row alone cannot be decoded. */
    if (fi->header_bytes)
        return pm_error_set(err, PM_ERR_UNSUPPORTED,
                            "%s: emb_fmt %s keeps one tensor scale for the whole matrix; rows cannot be gathered "
                            "one by one (store the embedding in a format without a tensor header)",
                            who, fi->name);
    if (ids_sram % 4)
        return pm_error_set(err, PM_ERR_INVALID, "%s: ids_sram = 0x%llx is not 4-byte aligned", who,
                            (unsigned long long)ids_sram);
    uint64_t x_bytes = (uint64_t)M * D * 4;
    if ((st = pm_llm_check_dram(cfg, who, "emb_dram", emb_dram, (uint64_t)vocab * row_bytes, err)) ||
        (st = pm_llm_check_sram(cfg, who, "ids_sram", ids_sram, (uint64_t)M * 4, err)) ||
        (st = pm_llm_check_sram(cfg, who, "x_sram", x_sram, x_bytes, err)) ||
        (st = pm_llm_check_sram(cfg, who, "scratch", scratch_sram, scratch_bytes, err)) ||
        (st = pm_llm_check_disjoint(who, "scratch", scratch_sram, scratch_bytes, "x_sram", x_sram, x_bytes, err)) ||
        (st = pm_llm_check_disjoint(who, "scratch", scratch_sram, scratch_bytes, "ids_sram", ids_sram,
                                    (uint64_t)M * 4, err)) ||
        (st = pm_llm_check_disjoint(who, "x_sram", x_sram, x_bytes, "ids_sram", ids_sram, (uint64_t)M * 4, err)))
        return st;
    uint64_t slot_bytes = align_up(row_bytes);
    uint64_t slots = scratch_bytes / slot_bytes;
    if (slots == 0 && scratch_bytes >= row_bytes) slots = 1;
    if (slots == 0) return need_scratch(who, row_bytes, scratch_bytes, "one embedding row", err);
    if (slots > EMBED_MAX_SLOTS) slots = EMBED_MAX_SLOTS;
    if (slots > M) slots = M;

    /* r7 ids pointer, r8 x pointer (post-incremented by vcvt), r9 emb base,
     * r10 vocab, r11 D, r12 id, r13 bad-id mask, r14 row address, r15 slot,
     * r16 loop count. */
    enum { RIDS = 7, RX, REMB, RVOC, RD, RID, RBAD, RADDR, RSLOT, RC };
    li(b, PM_LLM_RT0, row_bytes);
    li(b, PM_LLM_RT1, 1);
    emit(b, PM_OP_DSHAPE, PM_LLM_RT0, PM_LLM_RT1, PM_LLM_RT1, 0, 0, 0);
    emit(b, PM_OP_DSTRIDE, 0, 0, 0, 0, 0, 0);
    li(b, RIDS, ids_sram);
    li(b, RX, x_sram);
    li(b, REMB, emb_dram);
    li(b, RVOC, vocab);
    li(b, RD, D);
    /* One row: an id outside [0, vocab) ORs all ones into the address, so
     * the DMA faults on its bounds instead of reading another row. */
    uint64_t groups = M / slots, rest = M % slots;
    for (int pass = 0; pass < 2; pass++) {
        uint64_t count = pass == 0 ? slots : rest;
        if (count == 0 || (pass == 0 && groups == 0)) continue;
        uint32_t top = 0;
        if (pass == 0) {
            li(b, RC, groups);
            top = pm_builder_label(b);
            pm_builder_bind(b, top);
        }
        for (uint64_t s = 0; s < count; s++) {
            emit(b, PM_OP_LW, RID, RIDS, (int64_t)(4 * s), 0, 0, 0);
            emit(b, PM_OP_SLTU, RBAD, RID, RVOC, 0, 0, 0);
            emit(b, PM_OP_ADDI, RBAD, RBAD, -1, 0, 0, 0);
            emit(b, PM_OP_MULI, RADDR, RID, (int64_t)row_bytes, 0, 0, 0);
            emit(b, PM_OP_ADD, RADDR, RADDR, REMB, 0, 0, 0);
            emit(b, PM_OP_OR, RADDR, RADDR, RBAD, 0, 0, 0);
            li(b, RSLOT, scratch_sram + s * slot_bytes);
            emit(b, PM_OP_DLD, RSLOT, RADDR, 0, 0, 0, 0);
            emit(b, PM_OP_VCVT, PM_FMT_F32, emb_fmt, inc(RX), RSLOT, RD, 0);
        }
        emit(b, PM_OP_ADDI, RIDS, RIDS, (int64_t)(4 * count), 0, 0, 0);
        if (pass == 0) emit(b, PM_OP_LOOP, RC, pm_builder_ref(top), 0, 0, 0, 0);
    }
    return pm_builder_status(b, err);
}

pm_status pm_ref_embed(uint32_t M, uint32_t D, pm_format emb_fmt, const void *emb, const int32_t *ids, float *x,
                       pm_error *err)
{
    size_t row_bytes;
    const pm_format_info *fi = pm_format_get(emb_fmt);
    if (M == 0 || D == 0 || !fi || fi->header_bytes || !pm_format_bytes(emb_fmt, D, &row_bytes))
        return pm_error_set(err, PM_ERR_INVALID, "embed: M = %u, D = %u do not fit the embedding format", M, D);
    for (uint32_t i = 0; i < M; i++) {
        if (ids[i] < 0) return pm_error_set(err, PM_ERR_INVALID, "embed: ids[%u] = %d is negative", i, ids[i]);
        const uint8_t *row = (const uint8_t *)emb + (uint64_t)ids[i] * row_bytes;
        pm_status st = pm_format_decode(emb_fmt, row, D, x + (uint64_t)i * D, err);
        if (st) return st;
    }
    return PM_OK;
}

/* ======================= RMSNorm ======================= */

/* Scratch of an R-row chunk: w, the squares, then each reduction level. */
typedef struct rms_plan {
    uint64_t w, sq, level[MAX_LEVELS + 1];
    uint64_t counts[MAX_LEVELS + 1];
    uint32_t levels;
    uint64_t bytes;
} rms_plan;

static void rms_layout(uint32_t D, uint64_t R, uint64_t base, rms_plan *p)
{
    p->levels = reduce_levels(D, p->counts);
    uint64_t off = 0;
    p->w = base + off;
    off += align_up((uint64_t)D * 4);
    p->sq = base + off;
    off += align_up(R * D * 4);
    p->level[0] = p->sq;
    for (uint32_t l = 1; l <= p->levels; l++) {
        p->level[l] = base + off;
        off += align_up(R * p->counts[l] * 4);
    }
    if (p->levels == 0) { /* D == 1: the square is its own sum */
        p->level[0] = p->sq;
    }
    p->bytes = off;
}

pm_status pm_emit_rmsnorm(pm_builder *b, const pm_config *cfg, uint32_t M, uint32_t D, uint64_t x_sram,
                          uint64_t w_dram, float eps, uint64_t y_sram, pm_format y_fmt, uint64_t scratch_sram,
                          uint64_t scratch_bytes, pm_error *err)
{
    const char *who = "rmsnorm";
    pm_status st = prologue_checks(cfg, who, err);
    if (!st) st = check_sum_lanes(cfg, who, err);
    if (st) return st;
    if (M == 0 || D == 0)
        return pm_error_set(err, PM_ERR_INVALID, "%s: M = %u, D = %u; both must be positive", who, M, D);
    if (!arith_format(y_fmt))
        return pm_error_set(err, PM_ERR_INVALID, "%s: y_fmt must be f32, bf16 or f16", who);
    if (!isfinite(eps)) return pm_error_set(err, PM_ERR_INVALID, "%s: eps is not finite", who);
    uint64_t x_bytes = (uint64_t)M * D * 4, y_bytes = (uint64_t)M * D * esize(y_fmt);
    if ((st = pm_llm_check_sram(cfg, who, "x_sram", x_sram, x_bytes, err)) ||
        (st = pm_llm_check_sram(cfg, who, "y_sram", y_sram, y_bytes, err)) ||
        (st = pm_llm_check_dram(cfg, who, "w_dram", w_dram, (uint64_t)D * 4, err)) ||
        (st = pm_llm_check_sram(cfg, who, "scratch", scratch_sram, scratch_bytes, err)) ||
        (st = pm_llm_check_disjoint(who, "scratch", scratch_sram, scratch_bytes, "x_sram", x_sram, x_bytes, err)) ||
        (st = pm_llm_check_disjoint(who, "scratch", scratch_sram, scratch_bytes, "y_sram", y_sram, y_bytes, err)))
        return st;
    /* y may alias x exactly (in place, f32); a partial overlap would let one
     * chunk's output clobber a later chunk's input. */
    if (!(y_sram == x_sram && y_fmt == PM_FMT_F32) &&
        (st = pm_llm_check_disjoint(who, "y_sram", y_sram, y_bytes, "x_sram", x_sram, x_bytes, err)))
        return st;
    uint64_t R = M;
    rms_plan plan;
    for (;;) {
        rms_layout(D, R, scratch_sram, &plan);
        if (plan.bytes <= scratch_bytes) break;
        if (R == 1) return need_scratch(who, plan.bytes, scratch_bytes, "one row", err);
        R = R > 2 ? R * scratch_bytes / plan.bytes : 1;
        if (R == 0) R = 1;
    }

    /* w once; then per chunk: squares, group sums, mean, + eps, rsqrt (LFU),
     * x * r per row, * w per row, and the conversion to y_fmt. */
    pm_llm_dma_ld(b, plan.w, w_dram, (uint64_t)D * 4);
    float inv_d = 1.0f / (float)D;
    enum { RX = 7, RY, RT, RW, RD, RR, RS, RC };
    for (uint64_t r0 = 0; r0 < M; r0 += R) {
        uint64_t rows = M - r0 < R ? M - r0 : R;
        uint64_t x = x_sram + r0 * D * 4;
        uint64_t sums = plan.level[plan.levels];
        pm_llm_vbin(b, PM_OP_VMUL, PM_FMT_F32, plan.sq, x, x, rows * D);
        for (uint32_t l = 0; l < plan.levels; l++)
            emit_reduce_level(b, PM_OP_VREDSUM, plan.level[l + 1], plan.level[l], plan.counts[l], rows);
        pm_llm_vscalar(b, PM_OP_VMULS, PM_FMT_F32, sums, sums, inv_d, rows);
        pm_llm_vscalar(b, PM_OP_VADDS, PM_FMT_F32, sums, sums, eps, rows);
        li(b, RS, sums);
        li(b, RR, rows);
        emit(b, PM_OP_LFU, PM_FMT_F32, PM_LLM_SLOT_RSQRT, RS, RS, RR, 0);
        /* t = x * r into the squares' buffer (or straight into y when f32). */
        uint64_t t = y_fmt == PM_FMT_F32 ? y_sram + r0 * D * 4 : plan.sq;
        li(b, RT, t);
        li(b, RX, x);
        li(b, RD, D);
        emit(b, PM_OP_VMULR, PM_FMT_F32, RT, RX, RS, RD, RR);
        li(b, RW, plan.w);
        li(b, RC, rows);
        uint32_t top = pm_builder_label(b);
        pm_builder_bind(b, top);
        emit(b, PM_OP_VMUL, PM_FMT_F32, inc(RT), RT, RW, RD, 0);
        emit(b, PM_OP_LOOP, RC, pm_builder_ref(top), 0, 0, 0, 0);
        if (y_fmt != PM_FMT_F32) pm_llm_vcvt(b, y_fmt, PM_FMT_F32, y_sram + r0 * D * esize(y_fmt), plan.sq, rows * D);
    }
    return pm_builder_status(b, err);
}

static pm_status builtin(pm_lfu_func f, pm_lfu_table *t, pm_error *err)
{
    memset(t, 0, sizeof *t);
    return pm_lfu_builtin(f, t, err);
}

pm_status pm_ref_rmsnorm(uint32_t M, uint32_t D, const float *x, const float *w, float eps, void *y, pm_format y_fmt,
                         pm_error *err)
{
    if (M == 0 || D == 0 || !arith_format(y_fmt))
        return pm_error_set(err, PM_ERR_INVALID, "rmsnorm: M = %u, D = %u, y_fmt must be f32, bf16 or f16", M, D);
    float *buf = malloc((size_t)D * 2 * sizeof *buf);
    if (!buf) return pm_error_set(err, PM_ERR_NOMEM, "rmsnorm: out of host memory");
    pm_lfu_table rsqrt;
    pm_status st = builtin(PM_LFU_RSQRT, &rsqrt, err);
    float inv_d = 1.0f / (float)D;
    float *sq = buf, *out = buf + D;
    for (uint32_t i = 0; i < M && !st; i++) {
        const float *xr = x + (uint64_t)i * D;
        for (uint32_t j = 0; j < D; j++) sq[j] = xr[j] * xr[j];
        float s = sum32(sq, D);
        s = s * inv_d;
        s = s + eps;
        float r = pm_lfu_eval(&rsqrt, s);
        for (uint32_t j = 0; j < D; j++) {
            float t = xr[j] * r;
            out[j] = t * w[j];
        }
        st = pm_format_encode(y_fmt, out, D, (uint8_t *)y + (uint64_t)i * D * esize(y_fmt), err);
    }
    pm_lfu_table_free(&rsqrt);
    free(buf);
    return st;
}

/* ======================= RoPE ======================= */

/* Scratch of an R-row chunk: cos rows, sin rows (one strided DMA), -sin rows,
 * and the two products of one head half. */
typedef struct rope_plan {
    uint64_t cos, sin, nsin, t[4], stride, bytes;
} rope_plan;

static void rope_layout(uint32_t half, uint64_t R, uint64_t base, rope_plan *p)
{
    p->stride = align_up(R * half * 4);
    p->cos = base;
    p->sin = base + p->stride;
    p->nsin = base + 2 * p->stride;
    for (int i = 0; i < 4; i++) p->t[i] = base + 3 * p->stride + (uint64_t)i * align_up((uint64_t)half * 4);
    p->bytes = 3 * p->stride + 4 * align_up((uint64_t)half * 4);
}

/* Registers of the rope loops. */
enum { RPOS = 7, RBAD, RTAB, RROW, RA, RB, RCOS, RSIN, RNSIN, RT1, RT2, RH, RHEADS, RROWS, RTMP, RA2, RB2, RT3, RT4 };

/* `heads` heads (1 or 2) whose lo halves RA (RA2) and hi halves RB (RB2)
 * point at: lo' = fma(lo, cos, hi * -sin), hi' = fma(hi, cos, lo * sin).
 * All products first, then the fmas: with two heads the first fma's
 * products are done by the time it starts (no stall on the pipeline). */
static void emit_rope_heads(pm_builder *b, int heads)
{
    static const int lo[2] = {RA, RA2}, hi[2] = {RB, RB2}, t1[2] = {RT1, RT3}, t2[2] = {RT2, RT4};
    for (int h = 0; h < heads; h++) {
        emit(b, PM_OP_VMUL, PM_FMT_F32, t1[h], hi[h], RNSIN, RH, 0);
        emit(b, PM_OP_VMUL, PM_FMT_F32, t2[h], lo[h], RSIN, RH, 0);
    }
    for (int h = 0; h < heads; h++) {
        emit(b, PM_OP_VFMA, PM_FMT_F32, lo[h], lo[h], RCOS, t1[h], RH);
        emit(b, PM_OP_VFMA, PM_FMT_F32, hi[h], hi[h], RCOS, t2[h], RH);
    }
}

pm_status pm_emit_rope(pm_builder *b, const pm_config *cfg, uint32_t M, uint32_t n_heads, uint32_t head_dim,
                       uint64_t x_sram, uint32_t row_elems, uint64_t pos_sram, uint64_t table_dram, uint32_t max_ctx,
                       uint64_t scratch_sram, uint64_t scratch_bytes, pm_error *err)
{
    const char *who = "rope";
    pm_status st = prologue_checks(cfg, who, err);
    if (st) return st;
    if (M == 0 || n_heads == 0 || head_dim == 0 || max_ctx == 0)
        return pm_error_set(err, PM_ERR_INVALID, "%s: M = %u, n_heads = %u, head_dim = %u, max_ctx = %u; each must "
                            "be positive", who, M, n_heads, head_dim, max_ctx);
    if (head_dim % 2)
        return pm_error_set(err, PM_ERR_INVALID, "%s: head_dim = %u is odd (rotations take pairs)", who, head_dim);
    if (M > max_ctx)
        return pm_error_set(err, PM_ERR_INVALID, "%s: M = %u rows exceed max_ctx = %u", who, M, max_ctx);
    if ((uint64_t)n_heads * head_dim > row_elems)
        return pm_error_set(err, PM_ERR_INVALID, "%s: row_elems = %u is less than n_heads x head_dim = %llu", who,
                            row_elems, (unsigned long long)n_heads * head_dim);
    if (pos_sram % 4)
        return pm_error_set(err, PM_ERR_INVALID, "%s: pos_sram = 0x%llx is not 4-byte aligned", who,
                            (unsigned long long)pos_sram);
    uint32_t half = head_dim / 2;
    uint64_t x_bytes = ((uint64_t)(M - 1) * row_elems + (uint64_t)n_heads * head_dim) * 4;
    uint64_t table_bytes = 2ull * max_ctx * half * 4;
    if ((st = pm_llm_check_sram(cfg, who, "x_sram", x_sram, x_bytes, err)) ||
        (st = pm_llm_check_sram(cfg, who, "pos_sram", pos_sram, 4, err)) ||
        (st = pm_llm_check_dram(cfg, who, "table_dram", table_dram, table_bytes, err)) ||
        (st = pm_llm_check_sram(cfg, who, "scratch", scratch_sram, scratch_bytes, err)) ||
        (st = pm_llm_check_disjoint(who, "scratch", scratch_sram, scratch_bytes, "x_sram", x_sram, x_bytes, err)) ||
        (st = pm_llm_check_disjoint(who, "scratch", scratch_sram, scratch_bytes, "pos_sram", pos_sram, 4, err)))
        return st;
    uint64_t R = M;
    rope_plan plan;
    for (;;) {
        rope_layout(half, R, scratch_sram, &plan);
        if (plan.bytes <= scratch_bytes) break;
        if (R == 1) return need_scratch(who, plan.bytes, scratch_bytes, "one row", err);
        R--;
    }

    /* r7 pos0, then the address of the first cos row; an out-of-table
     * position (pos0 + M > max_ctx) ORs all ones into it so the DMA faults
     * on its bounds instead of reading sin rows as cos. */
    li(b, RTMP, pos_sram);
    emit(b, PM_OP_LW, RPOS, RTMP, 0, 0, 0, 0);
    /* lw sign-extends; pos0 is unsigned, so zero-extend before adding M */
    emit(b, PM_OP_SHLI, RPOS, RPOS, 32, 0, 0, 0);
    emit(b, PM_OP_SHRI, RPOS, RPOS, 32, 0, 0, 0);
    emit(b, PM_OP_ADDI, RBAD, RPOS, M, 0, 0, 0);
    li(b, RTMP, max_ctx);
    emit(b, PM_OP_SLTU, RBAD, RTMP, RBAD, 0, 0, 0);
    emit(b, PM_OP_SUB, RBAD, 0, RBAD, 0, 0, 0);
    emit(b, PM_OP_MULI, RTAB, RPOS, (int64_t)half * 4, 0, 0, 0);
    li(b, RTMP, table_dram);
    emit(b, PM_OP_ADD, RTAB, RTAB, RTMP, 0, 0, 0);
    emit(b, PM_OP_OR, RTAB, RTAB, RBAD, 0, 0, 0);
    li(b, RT1, plan.t[0]);
    li(b, RT2, plan.t[1]);
    li(b, RT3, plan.t[2]);
    li(b, RT4, plan.t[3]);
    li(b, RH, half);
    uint64_t shaped = 0;
    for (uint64_t r0 = 0; r0 < M; r0 += R) {
        uint64_t rows = M - r0 < R ? M - r0 : R;
        if (rows != shaped) {
            /* cos and sin rows of `rows` positions: two DRAM rows max_ctx
             * apart, landing plan.stride apart in scratch. */
            li(b, PM_LLM_RT0, rows * half * 4);
            li(b, PM_LLM_RT1, 2);
            li(b, PM_LLM_RT2, 1);
            emit(b, PM_OP_DSHAPE, PM_LLM_RT0, PM_LLM_RT1, PM_LLM_RT2, 0, 0, 0);
            li(b, PM_LLM_RT0, (uint64_t)max_ctx * half * 4);
            li(b, PM_LLM_RT1, plan.stride);
            emit(b, PM_OP_DSTRIDE, PM_LLM_RT0, 0, PM_LLM_RT1, 0, 0, 0);
            shaped = rows;
        }
        li(b, RCOS, plan.cos);
        emit(b, PM_OP_DLD, RCOS, RTAB, 0, 0, 0, 0);
        emit(b, PM_OP_ADDI, RTAB, RTAB, (int64_t)(rows * half * 4), 0, 0, 0);
        pm_llm_vscalar(b, PM_OP_VMULS, PM_FMT_F32, plan.nsin, plan.sin, -1.0f, rows * half);
        li(b, RSIN, plan.sin);
        li(b, RNSIN, plan.nsin);
        li(b, RROW, x_sram + r0 * row_elems * 4);
        li(b, RROWS, rows);
        /* rows x (pairs of heads, then the odd head) */
        uint32_t outer = pm_builder_label(b), inner = pm_builder_label(b);
        int64_t hd4 = (int64_t)head_dim * 4;
        pm_builder_bind(b, outer);
        emit(b, PM_OP_ADDI, RA, RROW, 0, 0, 0, 0);
        emit(b, PM_OP_ADDI, RB, RROW, (int64_t)half * 4, 0, 0, 0);
        if (n_heads >= 2) {
            emit(b, PM_OP_ADDI, RA2, RA, hd4, 0, 0, 0);
            emit(b, PM_OP_ADDI, RB2, RB, hd4, 0, 0, 0);
            li(b, RHEADS, n_heads / 2);
            pm_builder_bind(b, inner);
            emit_rope_heads(b, 2);
            emit(b, PM_OP_ADDI, RA, RA, 2 * hd4, 0, 0, 0);
            emit(b, PM_OP_ADDI, RB, RB, 2 * hd4, 0, 0, 0);
            emit(b, PM_OP_ADDI, RA2, RA2, 2 * hd4, 0, 0, 0);
            emit(b, PM_OP_ADDI, RB2, RB2, 2 * hd4, 0, 0, 0);
            emit(b, PM_OP_LOOP, RHEADS, pm_builder_ref(inner), 0, 0, 0, 0);
        }
        if (n_heads % 2) emit_rope_heads(b, 1);
        emit(b, PM_OP_ADDI, RROW, RROW, (int64_t)row_elems * 4, 0, 0, 0);
        emit(b, PM_OP_ADDI, RCOS, RCOS, (int64_t)half * 4, 0, 0, 0);
        emit(b, PM_OP_ADDI, RSIN, RSIN, (int64_t)half * 4, 0, 0, 0);
        emit(b, PM_OP_ADDI, RNSIN, RNSIN, (int64_t)half * 4, 0, 0, 0);
        emit(b, PM_OP_LOOP, RROWS, pm_builder_ref(outer), 0, 0, 0, 0);
    }
    return pm_builder_status(b, err);
}

void pm_rope_table(float base, uint32_t head_dim, uint32_t max_ctx, const float *freq_factors, float *table)
{
    uint32_t half = head_dim / 2;
    float *sin_part = table + (uint64_t)max_ctx * half;
    for (uint32_t i = 0; i < half; i++) {
        double theta = pow((double)base, -2.0 * (double)i / (double)head_dim);
        if (freq_factors) theta /= (double)freq_factors[i];
        for (uint32_t p = 0; p < max_ctx; p++) {
            double a = (double)p * theta;
            table[(uint64_t)p * half + i] = (float)cos(a);
            sin_part[(uint64_t)p * half + i] = (float)sin(a);
        }
    }
}

void pm_rope_permute_rows(uint32_t n_heads, uint32_t head_dim, uint32_t *perm)
{
    uint32_t half = head_dim / 2;
    for (uint32_t h = 0; h < n_heads; h++)
        for (uint32_t j = 0; j < head_dim; j++)
            perm[h * head_dim + j] = h * head_dim + (j < half ? 2 * j : 2 * (j - half) + 1);
}

pm_status pm_ref_rope(uint32_t M, uint32_t n_heads, uint32_t head_dim, float *x, uint32_t row_elems, uint32_t pos0,
                      const float *table, uint32_t max_ctx, pm_error *err)
{
    if (M == 0 || n_heads == 0 || head_dim == 0 || head_dim % 2 || (uint64_t)n_heads * head_dim > row_elems)
        return pm_error_set(err, PM_ERR_INVALID, "rope: bad shape (M = %u, n_heads = %u, head_dim = %u, row_elems = "
                            "%u)", M, n_heads, head_dim, row_elems);
    if ((uint64_t)pos0 + M > max_ctx)
        return pm_error_set(err, PM_ERR_INVALID, "rope: positions %u..%u exceed max_ctx = %u", pos0, pos0 + M - 1,
                            max_ctx);
    uint32_t half = head_dim / 2;
    for (uint32_t i = 0; i < M; i++) {
        const float *c = table + (uint64_t)(pos0 + i) * half;
        const float *s = table + ((uint64_t)max_ctx + pos0 + i) * half;
        for (uint32_t h = 0; h < n_heads; h++) {
            float *lo = x + (uint64_t)i * row_elems + (uint64_t)h * head_dim, *hi = lo + half;
            for (uint32_t j = 0; j < half; j++) {
                float t1 = hi[j] * -s[j], t2 = lo[j] * s[j];
                float l = fmaf(lo[j], c[j], t1), u = fmaf(hi[j], c[j], t2);
                lo[j] = l;
                hi[j] = u;
            }
        }
    }
    return PM_OK;
}

/* ======================= SwiGLU ======================= */

pm_status pm_emit_swiglu(pm_builder *b, const pm_config *cfg, uint32_t M, uint32_t F, uint64_t gu_sram,
                         uint64_t y_sram, pm_format y_fmt, uint64_t scratch_sram, uint64_t scratch_bytes,
                         pm_error *err)
{
    const char *who = "swiglu";
    pm_status st = prologue_checks(cfg, who, err);
    if (st) return st;
    if (M == 0 || F == 0)
        return pm_error_set(err, PM_ERR_INVALID, "%s: M = %u, F = %u; both must be positive", who, M, F);
    if (!arith_format(y_fmt))
        return pm_error_set(err, PM_ERR_INVALID, "%s: y_fmt must be f32, bf16 or f16", who);
    uint64_t gu_bytes = (uint64_t)M * 2 * F * 4, y_bytes = (uint64_t)M * F * esize(y_fmt);
    bool direct = y_fmt == PM_FMT_F32;
    uint64_t row = (uint64_t)F * 4;
    if ((st = pm_llm_check_sram(cfg, who, "gu_sram", gu_sram, gu_bytes, err)) ||
        (st = pm_llm_check_sram(cfg, who, "y_sram", y_sram, y_bytes, err)) ||
        (st = pm_llm_check_disjoint(who, "y_sram", y_sram, y_bytes, "gu_sram", gu_sram, gu_bytes, err)))
        return st;
    if (!direct) {
        if ((st = pm_llm_check_sram(cfg, who, "scratch", scratch_sram, scratch_bytes, err)) ||
            (st = pm_llm_check_disjoint(who, "scratch", scratch_sram, scratch_bytes, "gu_sram", gu_sram, gu_bytes,
                                        err)) ||
            (st = pm_llm_check_disjoint(who, "scratch", scratch_sram, scratch_bytes, "y_sram", y_sram, y_bytes, err)))
            return st;
        if (scratch_bytes < row) return need_scratch(who, row, scratch_bytes, "one f32 row", err);
    }
    uint64_t R = direct ? M : scratch_bytes / row;
    if (R > M) R = M;

    /* Per row: silu(gate) through the LFU into t, then t * up. The LFU of
     * row i+1 overlaps the vector unit's multiply of row i. */
    enum { RG = 7, RTW, RTR, RF, RC };
    li(b, RF, F);
    for (uint64_t r0 = 0; r0 < M; r0 += R) {
        uint64_t rows = M - r0 < R ? M - r0 : R;
        uint64_t t = direct ? y_sram + r0 * row : scratch_sram;
        li(b, RG, gu_sram + r0 * 2 * row);
        li(b, RTW, t);
        li(b, RTR, t);
        li(b, RC, rows);
        uint32_t top = pm_builder_label(b);
        pm_builder_bind(b, top);
        emit(b, PM_OP_LFU, PM_FMT_F32, PM_LLM_SLOT_SILU, inc(RTW), inc(RG), RF, 0);
        emit(b, PM_OP_VMUL, PM_FMT_F32, inc(RTR), RTR, inc(RG), RF, 0);
        emit(b, PM_OP_LOOP, RC, pm_builder_ref(top), 0, 0, 0, 0);
        if (!direct) pm_llm_vcvt(b, y_fmt, PM_FMT_F32, y_sram + r0 * F * esize(y_fmt), t, rows * F);
    }
    return pm_builder_status(b, err);
}

pm_status pm_ref_swiglu(uint32_t M, uint32_t F, const float *gu, void *y, pm_format y_fmt, pm_error *err)
{
    if (M == 0 || F == 0 || !arith_format(y_fmt))
        return pm_error_set(err, PM_ERR_INVALID, "swiglu: M = %u, F = %u, y_fmt must be f32, bf16 or f16", M, F);
    float *out = malloc((size_t)F * sizeof *out);
    if (!out) return pm_error_set(err, PM_ERR_NOMEM, "swiglu: out of host memory");
    pm_lfu_table silu;
    pm_status st = builtin(PM_LFU_SILU, &silu, err);
    for (uint32_t i = 0; i < M && !st; i++) {
        const float *g = gu + (uint64_t)i * 2 * F, *u = g + F;
        for (uint32_t j = 0; j < F; j++) out[j] = pm_lfu_eval(&silu, g[j]) * u[j];
        st = pm_format_encode(y_fmt, out, F, (uint8_t *)y + (uint64_t)i * F * esize(y_fmt), err);
    }
    pm_lfu_table_free(&silu);
    free(out);
    return st;
}

/* ======================= residual add ======================= */

pm_status pm_emit_add(pm_builder *b, const pm_config *cfg, uint64_t n, uint64_t a_sram, uint64_t b_sram,
                      uint64_t d_sram, pm_error *err)
{
    const char *who = "add";
    pm_status st = prologue_checks(cfg, who, err);
    if (st) return st;
    if (n == 0) return pm_error_set(err, PM_ERR_INVALID, "%s: n = 0", who);
    if ((st = pm_llm_check_sram(cfg, who, "a_sram", a_sram, n * 4, err)) ||
        (st = pm_llm_check_sram(cfg, who, "b_sram", b_sram, n * 4, err)) ||
        (st = pm_llm_check_sram(cfg, who, "d_sram", d_sram, n * 4, err)))
        return st;
    /* One instruction: n lives in a register (up to 2^40), and the SRAM
     * check above bounds it far below that. */
    pm_llm_vbin(b, PM_OP_VADD, PM_FMT_F32, d_sram, a_sram, b_sram, n);
    return pm_builder_status(b, err);
}

/* ======================= top-k ======================= */

/* Group maxima: level 0 is x, level l+1 holds the maxima of level l's
 * groups of 32, up to one value. Each level starts 64-byte aligned. */
typedef struct topk_plan {
    uint64_t counts[MAX_LEVELS + 1];
    uint64_t level[MAX_LEVELS + 1];
    uint32_t levels;
    uint64_t bytes;
} topk_plan;

static void topk_layout(uint32_t n, uint64_t x_sram, uint64_t base, topk_plan *p)
{
    p->levels = reduce_levels(n, p->counts);
    p->level[0] = x_sram;
    uint64_t off = 0;
    for (uint32_t l = 1; l <= p->levels; l++) {
        p->level[l] = base + off;
        off += pm_llm_round_up(p->counts[l] * 4, 64);
    }
    p->bytes = off;
}

uint64_t pm_topk_scratch_bytes(uint32_t n, uint32_t k)
{
    (void)k; /* the records go to out_sram; masking happens in x itself */
    topk_plan p;
    topk_layout(n, 0, 0, &p);
    return p.bytes;
}

pm_status pm_emit_topk(pm_builder *b, const pm_config *cfg, uint32_t n, uint64_t x_sram, uint32_t k,
                       uint64_t out_sram, uint64_t scratch_sram, uint64_t scratch_bytes, pm_error *err)
{
    const char *who = "topk";
    pm_status st = prologue_checks(cfg, who, err);
    if (st) return st;
    if (n == 0 || k == 0 || k > n)
        return pm_error_set(err, PM_ERR_INVALID, "%s: n = %u, k = %u; need 1 <= k <= n", who, n, k);
    if (x_sram % 4 || out_sram % 4)
        return pm_error_set(err, PM_ERR_INVALID, "%s: x_sram = 0x%llx and out_sram = 0x%llx must be 4-byte aligned",
                            who, (unsigned long long)x_sram, (unsigned long long)out_sram);
    topk_plan p;
    topk_layout(n, x_sram, scratch_sram, &p);
    if (p.levels >= MAX_LEVELS)
        return pm_error_set(err, PM_ERR_INVALID, "%s: n = %u is too large", who, n);
    uint64_t x_bytes = (uint64_t)n * 4, out_bytes = (uint64_t)k * 8;
    if ((st = pm_llm_check_sram(cfg, who, "x_sram", x_sram, x_bytes, err)) ||
        (st = pm_llm_check_sram(cfg, who, "out_sram", out_sram, out_bytes, err)) ||
        (st = pm_llm_check_disjoint(who, "out_sram", out_sram, out_bytes, "x_sram", x_sram, x_bytes, err)))
        return st;
    if (p.bytes) {
        if (scratch_bytes < p.bytes) return need_scratch(who, p.bytes, scratch_bytes, "the group maxima", err);
        if ((st = pm_llm_check_sram(cfg, who, "scratch", scratch_sram, p.bytes, err)) ||
            (st = pm_llm_check_disjoint(who, "scratch", scratch_sram, p.bytes, "x_sram", x_sram, x_bytes, err)) ||
            (st = pm_llm_check_disjoint(who, "scratch", scratch_sram, p.bytes, "out_sram", out_sram, out_bytes, err)))
            return st;
    }

    /* 1. Group maxima up to the top: one pass over x (n/lanes cycles), the
     *    rest is small. */
    for (uint32_t l = 0; l < p.levels; l++)
        emit_reduce_level(b, PM_OP_VREDMAX, p.level[l + 1], p.level[l], p.counts[l], 1);

    /* 2. Per record: m = the top value; unless it is NaN (nothing but NaN
     *    left), descend: at each level scan the group under the previous
     *    level's hit for the first word equal to m (bitwise: maxNum returns
     *    one of its inputs, and the first hit is the lowest index, so ties go
     *    to the lower id). For k > 1 the winner is then masked with NaN in x
     *    and the group maxima above it are recomputed; x is restored at the
     *    end. */
    enum { RJ0 = 7 };                       /* r7..r14: the hit at each level (levels <= 8) */
    enum { RM = 16, RT, RP, RBASE, RC, RV, ROUT, RK, RX, RONE, R32, RCNT, RNAN };
    uint32_t L = p.levels;
    li(b, ROUT, out_sram);
    li(b, RK, k);
    li(b, RX, x_sram);
    li(b, RONE, 1);
    li(b, R32, GROUP);
    li(b, RNAN, QNAN_BITS);
    uint32_t k_top = pm_builder_label(b), k_end = pm_builder_label(b), no_winner = pm_builder_label(b);
    pm_builder_bind(b, k_top);
    li(b, RT, p.level[L]);
    emit(b, PM_OP_LW, RM, RT, 0, 0, 0, 0);
    emit(b, PM_OP_ANDI, RT, RM, 0x7fffffff, 0, 0, 0);
    li(b, RV, 0x7f800000);
    emit(b, PM_OP_SLTU, RT, RV, RT, 0, 0, 0);
    emit(b, PM_OP_BNE, RT, 0, pm_builder_ref(no_winner), 0, 0, 0);
    for (uint32_t l = L; l-- > 0;) {
        /* the group of level l under hit J[l+1] (J[L] = 0) */
        int parent = l + 1 == L ? 0 : RJ0 + (int)l + 1;
        emit(b, PM_OP_MULI, RP, parent, GROUP * 4, 0, 0, 0);
        li(b, RBASE, p.level[l]);
        emit(b, PM_OP_ADD, RP, RP, RBASE, 0, 0, 0);
        /* Four words per trip (2.5 issue slots a word instead of 4); a hit
         * at word w of the trip lands on the add chain that moves RP to it.
         * Words are read only up to the hit, never past the group. */
        li(b, RC, GROUP / SCAN_UNROLL);
        uint32_t scan = pm_builder_label(b), at[SCAN_UNROLL];
        pm_builder_bind(b, scan);
        for (int w = 0; w < SCAN_UNROLL; w++) {
            at[w] = pm_builder_label(b);
            emit(b, PM_OP_LW, RV, RP, 4 * w, 0, 0, 0);
            emit(b, PM_OP_BEQ, RV, RM, pm_builder_ref(at[w]), 0, 0, 0);
        }
        emit(b, PM_OP_ADDI, RP, RP, 4 * SCAN_UNROLL, 0, 0, 0);
        emit(b, PM_OP_LOOP, RC, pm_builder_ref(scan), 0, 0, 0, 0);
        emit(b, PM_OP_JMP, pm_builder_ref(no_winner), 0, 0, 0, 0, 0); /* unreachable: the max is in its group */
        for (int w = SCAN_UNROLL - 1; w > 0; w--) {
            pm_builder_bind(b, at[w]);
            emit(b, PM_OP_ADDI, RP, RP, 4, 0, 0, 0);
        }
        pm_builder_bind(b, at[0]);
        emit(b, PM_OP_SUB, RJ0 + (int)l, RP, RBASE, 0, 0, 0);
        emit(b, PM_OP_SHRI, RJ0 + (int)l, RJ0 + (int)l, 2, 0, 0, 0);
    }
    int rid = L ? RJ0 : 0; /* n == 1: the only element */
    emit(b, PM_OP_SW, rid, ROUT, 0, 0, 0, 0);
    emit(b, PM_OP_SW, RM, ROUT, 4, 0, 0, 0);
    emit(b, PM_OP_ADDI, ROUT, ROUT, 8, 0, 0, 0);
    if (k > 1) {
        emit(b, PM_OP_SHLI, RT, rid, 2, 0, 0, 0);
        emit(b, PM_OP_ADD, RT, RT, RX, 0, 0, 0);
        emit(b, PM_OP_SW, RNAN, RT, 0, 0, 0, 0);
        for (uint32_t l = 0; l < L; l++) {
            /* the maximum of group J[l+1] of level l, rewritten at level l+1 */
            int grp = l + 1 == L ? 0 : RJ0 + (int)l + 1;
            emit(b, PM_OP_MULI, RT, grp, GROUP, 0, 0, 0);
            li(b, RCNT, p.counts[l]);
            emit(b, PM_OP_SUB, RCNT, RCNT, RT, 0, 0, 0);
            emit(b, PM_OP_MIN, RCNT, RCNT, R32, 0, 0, 0);
            emit(b, PM_OP_MULI, RP, grp, GROUP * 4, 0, 0, 0);
            li(b, RBASE, p.level[l]);
            emit(b, PM_OP_ADD, RP, RP, RBASE, 0, 0, 0);
            emit(b, PM_OP_SHLI, RV, grp, 2, 0, 0, 0);
            li(b, RBASE, p.level[l + 1]);
            emit(b, PM_OP_ADD, RV, RV, RBASE, 0, 0, 0);
            emit(b, PM_OP_VREDMAX, PM_FMT_F32, RV, RP, RCNT, RONE, 0);
        }
    }
    emit(b, PM_OP_JMP, pm_builder_ref(k_end), 0, 0, 0, 0, 0);
    pm_builder_bind(b, no_winner);
    li(b, RT, (uint64_t)-1);
    emit(b, PM_OP_SW, RT, ROUT, 0, 0, 0, 0);
    emit(b, PM_OP_SW, RNAN, ROUT, 4, 0, 0, 0);
    emit(b, PM_OP_ADDI, ROUT, ROUT, 8, 0, 0, 0);
    pm_builder_bind(b, k_end);
    emit(b, PM_OP_LOOP, RK, pm_builder_ref(k_top), 0, 0, 0, 0);

    /* 3. Put the winners' values back into x. */
    if (k > 1) {
        li(b, ROUT, out_sram);
        li(b, RK, k);
        uint32_t top = pm_builder_label(b), skip = pm_builder_label(b);
        pm_builder_bind(b, top);
        emit(b, PM_OP_LW, RT, ROUT, 0, 0, 0, 0);
        emit(b, PM_OP_BLT, RT, 0, pm_builder_ref(skip), 0, 0, 0);
        emit(b, PM_OP_LW, RV, ROUT, 4, 0, 0, 0);
        emit(b, PM_OP_SHLI, RT, RT, 2, 0, 0, 0);
        emit(b, PM_OP_ADD, RT, RT, RX, 0, 0, 0);
        emit(b, PM_OP_SW, RV, RT, 0, 0, 0, 0);
        pm_builder_bind(b, skip);
        emit(b, PM_OP_ADDI, ROUT, ROUT, 8, 0, 0, 0);
        emit(b, PM_OP_LOOP, RK, pm_builder_ref(top), 0, 0, 0, 0);
    }
    return pm_builder_status(b, err);
}

/* The order top-k ranks by: larger first, +0 above -0 (as maxNum), NaN never. */
static bool ranks_above(float a, float b)
{
    if (a > b) return true;
    return a == 0.0f && b == 0.0f && !signbit(a) && signbit(b);
}

pm_status pm_ref_topk(uint32_t n, const float *x, uint32_t k, int32_t *ids, float *vals, pm_error *err)
{
    if (n == 0 || k == 0 || k > n)
        return pm_error_set(err, PM_ERR_INVALID, "topk: n = %u, k = %u; need 1 <= k <= n", n, k);
    uint8_t *taken = calloc(n, 1);
    if (!taken) return pm_error_set(err, PM_ERR_NOMEM, "topk: out of host memory");
    for (uint32_t r = 0; r < k; r++) {
        int64_t best = -1;
        for (uint32_t i = 0; i < n; i++) {
            if (taken[i] || isnan(x[i])) continue;
            if (best < 0 || ranks_above(x[i], x[best])) best = i;
        }
        if (best < 0) {
            ids[r] = -1;
            vals[r] = pm_f32_from_bits(QNAN_BITS);
        } else {
            taken[best] = 1;
            ids[r] = (int32_t)best;
            vals[r] = x[best];
        }
    }
    free(taken);
    return PM_OK;
}
