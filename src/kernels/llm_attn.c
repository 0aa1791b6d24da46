/* Attention with a KV cache (causal, grouped-query) as engine code, and its
 * host reference with the same operation order and roundings. One emitter
 * serves decode (M == 1) and prefill (M > 1); the program reads the position
 * from SRAM, so it is built once and reused for every token. */
#include "llm_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the plan: tiling and scratch layout, a function of the desc only ----
 * The tile sizes decide the bits (online softmax rescales at tile edges), so
 * they never depend on the config: pm_ref_attention has none. */

enum {
    ATTN_TILE_KEYS_MAX = 128,   /* keys per KV tile at most ... */
    ATTN_TILE_KEYS_MIN = 16,    /* ... and at least (fewer only when max_ctx is) */
    ATTN_SET_K_BYTES = 32768,   /* one tile of K for every KV head stays within this */
    ATTN_BLOCK_ROWS = 192       /* query rows (positions x all heads) per block */
};

typedef struct attn_plan {
    uint32_t G;       /* query heads per KV head */
    uint32_t T;       /* keys per tile */
    uint32_t Mb;      /* query positions per block (the last block may be smaller) */
    uint32_t blocks;
    uint32_t Rh;      /* rows per KV head of the largest block: Mb * G */
    uint32_t RT;      /* rows of the largest block, every head: Mb * n_heads */
    uint32_t a_extra; /* chunk keys in the dynamic phase: 1 for decode, 0 for prefill */
    /* SRAM scratch, offsets from scratch_sram */
    uint64_t q, kv, ones, set[2], s, p, pv, lt, m, mnew, mt, alpha, total;
    uint64_t o[2], l[2], rl[2]; /* even and odd blocks, so one block's output
                                   pass can wait until the next has started */
    uint64_t set_v; /* V^T tiles within a set, after the K tiles */
    /* accumulator memory: per KV head, S, PV and l tiles */
    uint64_t acc_head, a_s, a_o, a_l, acc_total;
} attn_plan;
static uint64_t take(uint64_t *cursor, uint64_t bytes)
{
    uint64_t at = *cursor;
    *cursor = pm_llm_round_up(at + bytes, PM_LLM_ALIGN);
    return at;
}

/* Checks that need no config; messages name the field. */
static pm_status attn_check(const pm_attn_desc *d, pm_error *err)
{
    if (d->M == 0) return pm_error_set(err, PM_ERR_INVALID, "attention: M = 0");
    if (d->n_heads == 0 || d->n_kv_heads == 0)
        return pm_error_set(err, PM_ERR_INVALID, "attention: n_heads = %u, n_kv_heads = %u; both must be positive",
                            d->n_heads, d->n_kv_heads);
    if (d->n_heads % d->n_kv_heads)
        return pm_error_set(err, PM_ERR_INVALID, "attention: n_heads = %u is not a multiple of n_kv_heads = %u",
                            d->n_heads, d->n_kv_heads);
    if (d->head_dim == 0 || d->head_dim > 4096)
        return pm_error_set(err, PM_ERR_INVALID, "attention: head_dim = %u (1..4096)", d->head_dim);
    if (d->max_ctx == 0 || d->M > d->max_ctx)
        return pm_error_set(err, PM_ERR_INVALID, "attention: max_ctx = %u cannot hold a chunk of M = %u rows",
                            d->max_ctx, d->M);
    uint64_t used = ((uint64_t)d->n_heads + 2ull * d->n_kv_heads) * d->head_dim;
    if (d->qkv_row_elems < used)
        return pm_error_set(err, PM_ERR_INVALID,
                            "attention: qkv_row_elems = %u is shorter than the q|k|v row ((%u + 2 x %u) x %u = %llu)",
                            d->qkv_row_elems, d->n_heads, d->n_kv_heads, d->head_dim, (unsigned long long)used);
    if (d->out_fmt != PM_FMT_F32 && d->out_fmt != PM_FMT_BF16)
        return pm_error_set(err, PM_ERR_INVALID, "attention: out_fmt %d is not f32 or bf16", (int)d->out_fmt);
    if (!isfinite(d->scale)) return pm_error_set(err, PM_ERR_INVALID, "attention: scale is not finite");
    return PM_OK;
}

static void attn_plan_make(const pm_attn_desc *d, attn_plan *p)
{
    memset(p, 0, sizeof *p);
    uint64_t hd = d->head_dim, H = d->n_heads, KV = d->n_kv_heads;
    p->G = (uint32_t)(H / KV);
    uint32_t T = ATTN_TILE_KEYS_MAX;
    while (T > ATTN_TILE_KEYS_MIN && KV * T * hd * 2 > ATTN_SET_K_BYTES) T /= 2;
    p->T = d->max_ctx < T ? d->max_ctx : T;
    uint64_t mb = ATTN_BLOCK_ROWS / H;
    if (mb == 0) mb = 1;
    p->blocks = (uint32_t)pm_llm_ceil_div(d->M, mb);
    p->Mb = (uint32_t)pm_llm_ceil_div(d->M, p->blocks); /* balanced blocks */
    p->Rh = p->Mb * p->G;
    p->RT = (uint32_t)(p->Mb * H);
    p->a_extra = d->M == 1 ? 1 : 0;

    uint64_t Tk = p->T, R = p->RT, c = 0;
    p->q = take(&c, (uint64_t)d->M * H * hd * 2); /* block b at b * Mb * H * hd * 2 */
    p->kv = take(&c, (uint64_t)d->M * 2 * KV * hd * 2);
    p->ones = take(&c, Tk * 2);
    p->set_v = pm_llm_round_up(KV * Tk * hd * 2, PM_LLM_ALIGN);
    p->set[0] = take(&c, p->set_v + KV * hd * Tk * 2);
    p->set[1] = take(&c, p->set_v + KV * hd * Tk * 2);
    p->s = take(&c, R * Tk * 4);
    p->p = take(&c, R * Tk * 2);
    p->pv = take(&c, R * hd * 4);
    p->lt = take(&c, R * 4);
    for (int k = 0; k < (p->blocks > 1 ? 2 : 1); k++) {
        p->o[k] = take(&c, R * hd * 4);
        p->l[k] = take(&c, R * 4);
        p->rl[k] = take(&c, R * 4);
    }
    if (p->blocks == 1) p->o[1] = p->o[0], p->l[1] = p->l[0], p->rl[1] = p->rl[0];
    p->m = take(&c, R * 4);
    p->mnew = take(&c, R * 4);
    p->mt = take(&c, R * 4);
    p->alpha = take(&c, R * 4);
    p->total = c;

    uint64_t Rh = p->Rh, a = 0;
    p->a_s = a, a += Rh * Tk * 4;
    p->a_o = a, a += Rh * hd * 4;
    p->a_l = a, a += pm_llm_round_up(Rh * 4, 64);
    p->acc_head = a;
    p->acc_total = KV * a;
}

static pm_status attn_cfg_check(const pm_config *cfg, const pm_attn_desc *d, const attn_plan *p, pm_error *err)
{
    pm_status st = pm_llm_kernels_check(cfg, err);
    if (st) return st;
    if (p->acc_total > cfg->accum_bytes)
        return pm_error_set(err, PM_ERR_INVALID,
                            "attention: head_dim = %u does not fit: score (%u x %u) and output (%u x %u) tiles of %u "
                            "KV heads need %llu accumulator bytes, sram.accumulator_bytes = %llu",
                            d->head_dim, p->Rh, p->T, p->Rh, d->head_dim, d->n_kv_heads,
                            (unsigned long long)p->acc_total,
                            (unsigned long long)cfg->accum_bytes);
    return PM_OK;
}

pm_status pm_attention_scratch_bytes(const pm_config *cfg, const pm_attn_desc *d, uint64_t *bytes, pm_error *err)
{
    pm_status st = attn_check(d, err);
    if (st) return st;
    attn_plan p;
    attn_plan_make(d, &p);
    if ((st = attn_cfg_check(cfg, d, &p, err))) return st;
    *bytes = p.total;
    return PM_OK;
}

/* ---- the host reference ----
 * Operation order (the device's, see docs/llm-kernels.md):
 *  1. k and v of row i rounded to bf16 into the caches at position pos0 + i.
 *  2. Per block of Mb positions, per KV head: A = the block's G query heads
 *     as rows (position-major), q rounded to bf16; m = -inf. (The device
 *     runs a block's KV heads side by side; every row's arithmetic is the
 *     same.)
 *  3. Tiles of T keys: the dynamic phase covers keys [0, pos0 + a_extra),
 *     the static phase the chunk's own keys pos0 + j, j < M (prefill), up to
 *     the block's last row, with keys j > i set to -inf in row i. Per tile:
 *     s = fl(fmaf-chain_d(q, k) * scale); mt = max s (maxNum); mn = max(m, mt);
 *     alpha = exp(m - mn); p = exp(s - mn); pb = bf16(p);
 *     pv = fmaf-chain_j(pb, v); lt = fmaf-chain_j(pb, 1);
 *     O = O * alpha; O = O + pv; l = fmaf(l, alpha, lt); m = mn; on a
 *     block's first tile simply O = pv, l = lt.
 *     (fmaf chains start from +0 and run in ascending index: the tensor unit.)
 *  4. out = O * recip(l), rounded to out_fmt. exp and recip are the LFU
 *     built-ins. */

/* IEEE maxNum as the vector unit computes it (a NaN loses; +0 > -0). */
static float max_num(float a, float b)
{
    if (a != a) return b;
    if (b != b) return a;
    if (a == b) return signbit(a) ? b : a;
    return a > b ? a : b;
}

static float bf16_round(float x)
{
    uint16_t h;
    pm_format_encode(PM_FMT_BF16, &x, 1, &h, NULL);
    return pm_bf16_to_f32(h);
}

typedef struct ref_ctx {
    const pm_attn_desc *d;
    const attn_plan *p;
    const uint16_t *kc, *vc; /* this KV head's cache planes */
    const pm_lfu_table *exp_t;
    float *q, *s, *pb, *o, *l, *m;
} ref_ctx;

/* One tile of n keys starting at cache position k0 for R rows; nz (or NULL)
 * gives each row's count of visible keys in the tile. */
static void ref_tile(const ref_ctx *c, uint32_t R, uint32_t k0, uint32_t n, const uint32_t *nz, bool first)
{
    const pm_attn_desc *d = c->d;
    uint32_t hd = d->head_dim;
    for (uint32_t r = 0; r < R; r++) {
        float *s = c->s + (size_t)r * n, *pb = c->pb + (size_t)r * n;
        for (uint32_t j = 0; j < n; j++) {
            const uint16_t *k = c->kc + (size_t)(k0 + j) * hd;
            float acc = 0.0f;
            for (uint32_t e = 0; e < hd; e++) acc = fmaf(c->q[(size_t)r * hd + e], pm_bf16_to_f32(k[e]), acc);
            s[j] = acc * d->scale;
        }
        if (nz)
            for (uint32_t j = nz[r]; j < n; j++) s[j] = -INFINITY;
        float mt = NAN;
        for (uint32_t j = 0; j < n; j++) mt = max_num(mt, s[j]);
        float mn = max_num(c->m[r], mt);
        float alpha = pm_lfu_eval(c->exp_t, c->m[r] - mn);
        for (uint32_t j = 0; j < n; j++) pb[j] = bf16_round(pm_lfu_eval(c->exp_t, s[j] - mn));
        float lt = 0.0f;
        for (uint32_t j = 0; j < n; j++) lt = fmaf(pb[j], 1.0f, lt);
        float *o = c->o + (size_t)r * hd;
        for (uint32_t e = 0; e < hd; e++) {
            const uint16_t *v = c->vc + (size_t)e * d->max_ctx + k0;
            float pv = 0.0f;
            for (uint32_t j = 0; j < n; j++) pv = fmaf(pb[j], pm_bf16_to_f32(v[j]), pv);
            if (first) {
                o[e] = pv;
            } else {
                o[e] = o[e] * alpha;
                o[e] = o[e] + pv;
            }
        }
        c->l[r] = first ? lt : fmaf(c->l[r], alpha, lt);
        c->m[r] = mn;
    }
}

/* Visible keys of row i (block position) in the static tile starting at
 * chunk key jb with nb keys: keys jb + jj with jb + jj <= i. */
static uint32_t visible(uint32_t i, uint32_t jb, uint32_t nb)
{
    if (i < jb) return 0;
    return i - jb + 1 < nb ? i - jb + 1 : nb;
}

pm_status pm_ref_attention(const pm_attn_desc *d, const float *qkv, uint16_t *kcache, uint16_t *vcache, uint32_t pos0,
                           void *out, pm_error *err)
{
    pm_status st = attn_check(d, err);
    if (st) return st;
    if ((uint64_t)pos0 + d->M > d->max_ctx)
        return pm_error_set(err, PM_ERR_INVALID, "attention: pos0 %u + M %u exceeds max_ctx = %u", pos0, d->M,
                            d->max_ctx);
    attn_plan p;
    attn_plan_make(d, &p);
    uint32_t H = d->n_heads, KV = d->n_kv_heads, hd = d->head_dim, G = p.G, T = p.T, row = d->qkv_row_elems;

    /* 1. the new rows into the caches */
    for (uint32_t i = 0; i < d->M; i++)
        for (uint32_t h = 0; h < KV; h++) {
            const float *k = qkv + (size_t)i * row + (size_t)(H + h) * hd;
            const float *v = qkv + (size_t)i * row + (size_t)(H + KV + h) * hd;
            pm_format_encode(PM_FMT_BF16, k, hd, kcache + ((size_t)h * d->max_ctx + pos0 + i) * hd, NULL);
            for (uint32_t e = 0; e < hd; e++)
                pm_format_encode(PM_FMT_BF16, &v[e], 1, vcache + ((size_t)h * hd + e) * d->max_ctx + pos0 + i, NULL);
        }

    pm_lfu_table exp_t, recip_t;
    memset(&exp_t, 0, sizeof exp_t);
    memset(&recip_t, 0, sizeof recip_t);
    if ((st = pm_lfu_builtin(PM_LFU_EXP, &exp_t, err))) return st;
    if ((st = pm_lfu_builtin(PM_LFU_RECIP, &recip_t, err))) {
        pm_lfu_table_free(&exp_t);
        return st;
    }
    size_t R = p.Rh;
    float *buf = malloc(sizeof(float) * (R * hd * 2 + R * T * 2 + R * 2));
    uint32_t *nz = malloc(sizeof(uint32_t) * R);
    if (!buf || !nz) {
        free(buf);
        free(nz);
        pm_lfu_table_free(&exp_t);
        pm_lfu_table_free(&recip_t);
        return pm_error_set(err, PM_ERR_NOMEM, "attention reference: out of memory");
    }
    ref_ctx c = {.d = d, .p = &p, .exp_t = &exp_t};
    c.q = buf;
    c.o = c.q + R * hd;
    c.s = c.o + R * hd;
    c.pb = c.s + R * T;
    c.l = c.pb + R * T;
    c.m = c.l + R;

    for (uint32_t b = 0; b < p.blocks; b++) {
        uint32_t i0 = b * p.Mb, mb = d->M - i0 < p.Mb ? d->M - i0 : p.Mb, rows = mb * G;
        for (uint32_t h = 0; h < KV; h++) {
            c.kc = kcache + (size_t)h * d->max_ctx * hd;
            c.vc = vcache + (size_t)h * hd * d->max_ctx;
            for (uint32_t r = 0; r < rows; r++) {
                const float *q = qkv + (size_t)(i0 + r / G) * row + (size_t)(h * G + r % G) * hd;
                for (uint32_t e = 0; e < hd; e++) c.q[(size_t)r * hd + e] = bf16_round(q[e]);
                for (uint32_t e = 0; e < hd; e++) c.o[(size_t)r * hd + e] = 0.0f;
                c.l[r] = 0.0f;
                c.m[r] = -INFINITY;
            }
            uint32_t la = pos0 + p.a_extra;
            bool first = true;
            for (uint32_t t0 = 0; t0 < la; t0 += T, first = false)
                ref_tile(&c, rows, t0, la - t0 < T ? la - t0 : T, NULL, first);
            if (d->M > 1)
                for (uint32_t jb = 0; jb < d->M && jb <= i0 + mb - 1; jb += T) {
                    uint32_t nb = d->M - jb < T ? d->M - jb : T;
                    for (uint32_t r = 0; r < rows; r++) nz[r] = visible(i0 + r / G, jb, nb);
                    ref_tile(&c, rows, pos0 + jb, nb, nz, first);
                    first = false;
                }
            for (uint32_t r = 0; r < rows; r++) {
                float rl = pm_lfu_eval(&recip_t, c.l[r]);
                size_t at = (size_t)(i0 + r / G) * H * hd + (size_t)(h * G + r % G) * hd;
                for (uint32_t e = 0; e < hd; e++) {
                    float y = c.o[(size_t)r * hd + e] * rl;
                    if (d->out_fmt == PM_FMT_F32) ((float *)out)[at + e] = y;
                    else pm_format_encode(PM_FMT_BF16, &y, 1, (uint16_t *)out + at + e, NULL);
                }
            }
        }
    }
    free(buf);
    free(nz);
    pm_lfu_table_free(&exp_t);
    pm_lfu_table_free(&recip_t);
    return PM_OK;
}

/* ---- the emitter ----
 * Registers: r1..r6 belong to the llm_internal.h helpers; the attention
 * keeps its state in r7..r23 and uses r24..r31 as temporaries. */
enum {
    R_POS = PM_LLM_RFIRST_FREE, /* pos0 */
    R_SETS,                     /* current K|V^T tile set (SRAM) */
    R_SWS,                      /* set0 ^ set1, to alternate with one xor */
    R_REM,                      /* keys left in the dynamic phase */
    R_KPTR, R_VPTR,             /* DRAM address of the next tile's keys (head 0) */
    R_N,                        /* keys in this tile */
    R_NINF, R_SCALE, R_TWO,     /* -inf bits, scale bits, epilogue mode "scale" */
    R_FIRST,                    /* 1 on a block's first tile: O and l start as PV and lt */
    X0 = 24, X1, X2, X3, X4, X5, X6, X7
};

typedef struct emit_ctx {
    pm_builder *b;
    const pm_config *cfg;
    const pm_attn_desc *d;
    const attn_plan *p;
    uint64_t base;     /* scratch_sram */
    uint64_t q, o, l, rl; /* this block's query rows and state (SRAM) */
} emit_ctx;

static void emit6(const emit_ctx *c, pm_opcode op, const int64_t *o)
{
    pm_builder_emit(c->b, op, o[0], o[1], o[2], o[3], o[4], o[5]);
}
#define EM(c, OP, ...) emit6((c), PM_OP_##OP, (const int64_t[PM_MAX_OPERANDS]){__VA_ARGS__})
#define INC(r) ((r) | PM_AREG_INC)

static void li(const emit_ctx *c, int reg, uint64_t v)
{
    pm_llm_li(c->b, reg, v);
}

static void addi(const emit_ctx *c, int rd, int ra, int64_t v)
{
    if (v >= INT32_MIN && v <= INT32_MAX) {
        EM(c, ADDI, rd, ra, v);
        return;
    }
    pm_llm_li(c->b, PM_LLM_RT4, (uint64_t)v);
    EM(c, ADD, rd, ra, PM_LLM_RT4);
}

/* tshape imm for an M x N x K matmul: the dataflow the array finishes
 * first (docs/tensor.md timing; the bits do not depend on it). */
static int pick_dataflow(const pm_config *cfg, uint64_t M, uint64_t N, uint64_t K)
{
    uint64_t R = cfg->tensor_rows, C = cfg->tensor_cols, L = cfg->tensor_weight_load_rows ? cfg->tensor_weight_load_rows : 1;
    uint64_t os = pm_llm_ceil_div(M, R) * pm_llm_ceil_div(N, C) * (K > R ? K : R);
    uint64_t P = pm_llm_ceil_div(R, L), G = M > P ? M : P, KT = pm_llm_ceil_div(K, R), NT = pm_llm_ceil_div(N, C);
    uint64_t wait = NT * G > R + 1 ? NT * G : R + 1;
    uint64_t ws = P + (KT - 1) * wait + NT * G;
    return ws < os ? 2 : 1;
}

/* The causal mask of a static tile, the same for every KV head: per head,
 * rows of the first `full` positions see none of its keys, the next `part`
 * positions see nz_first, nz_first + 1, ... keys, the `rest` see them all.
 * Writes -inf over the hidden scores in S (X5), row after row, so the
 * destination pointer just runs forward. */
typedef struct tile_mask {
    uint32_t full, part, rest, nz_first, nb;
} tile_mask;

static void emit_mask(const emit_ctx *c, const tile_mask *mk)
{
    uint32_t G = c->p->G;
    EM(c, ADD, X0, X5, 0);
    li(c, X7, c->d->n_kv_heads);
    uint32_t head = pm_builder_label(c->b);
    pm_builder_bind(c->b, head);
    if (mk->full) {
        li(c, X3, mk->nb);
        li(c, X4, mk->full);
        uint32_t top = pm_builder_label(c->b);
        pm_builder_bind(c->b, top);
        for (uint32_t g = 0; g < G; g++) EM(c, VBCAST, PM_FMT_F32, INC(X0), R_NINF, X3);
        EM(c, LOOP, X4, pm_builder_ref(top));
    }
    if (mk->part) {
        li(c, X6, (uint64_t)mk->nz_first * 4);
        li(c, X3, mk->nb - mk->nz_first);
        li(c, X4, mk->part);
        uint32_t top = pm_builder_label(c->b);
        pm_builder_bind(c->b, top);
        for (uint32_t g = 0; g < G; g++) {
            EM(c, ADD, X0, X0, X6);
            EM(c, VBCAST, PM_FMT_F32, INC(X0), R_NINF, X3);
        }
        EM(c, ADDI, X6, X6, 4);
        EM(c, ADDI, X3, X3, -1);
        EM(c, LOOP, X4, pm_builder_ref(top));
    }
    if (mk->rest) addi(c, X0, X0, (int64_t)((uint64_t)mk->rest * G * mk->nb * 4));
    EM(c, LOOP, X7, pm_builder_ref(head));
}

/* One tile of R_N keys for every head of the block (mb positions): load K
 * and V^T of all KV heads (one DMA each), S = Q K^T * scale per KV head,
 * the mask, the online softmax over all rows at once, PV and l per KV head,
 * O and l updated; then switch the K|V^T set. */
static void emit_tile(const emit_ctx *c, uint32_t mb, const tile_mask *mk)
{
    const attn_plan *p = c->p;
    const pm_attn_desc *d = c->d;
    uint64_t hd = d->head_dim, KV = d->n_kv_heads, base = c->base, Rh = (uint64_t)mb * p->G, RT = Rh * KV;
    int df_s = pick_dataflow(c->cfg, Rh, p->T, hd), df_pv = pick_dataflow(c->cfg, Rh, hd, p->T);
    int df_l = pick_dataflow(c->cfg, Rh, 1, p->T);

    /* K: every head's N keys (contiguous in its plane) into T-key slots. */
    EM(c, MULI, X0, R_N, (int64_t)(hd * 2));
    li(c, X1, 1);
    li(c, X2, KV);
    EM(c, DSHAPE, X0, X1, X2);
    li(c, X3, (uint64_t)d->max_ctx * hd * 2);
    li(c, X4, (uint64_t)p->T * hd * 2);
    EM(c, DSTRIDE, X0, X3, X0, X4);
    EM(c, DLD, R_SETS, R_KPTR);
    EM(c, ADD, R_KPTR, R_KPTR, X0);
    /* V^T: the kv*hd cache rows are max_ctx apart across heads too, so one
     * 2-D DMA packs them as [kv][hd][N]. */
    EM(c, ADD, X0, R_N, R_N);
    li(c, X2, KV * hd);
    EM(c, DSHAPE, X0, X2, X1);
    li(c, X3, (uint64_t)d->max_ctx * 2);
    EM(c, DSTRIDE, X3, 0, X0, 0);
    addi(c, X2, R_SETS, (int64_t)p->set_v);
    EM(c, DLD, X2, R_VPTR);
    EM(c, ADD, R_VPTR, R_VPTR, X0);

    /* S_h = (Q_h K_h^T) * scale, f32 [kv][Rh][N] */
    li(c, X1, Rh);
    li(c, X3, hd);
    EM(c, TSHAPE, X1, R_N, X3, df_s);
    EM(c, TEPI, 0, R_SCALE, R_TWO);
    EM(c, MULI, X6, R_N, (int64_t)(Rh * 4));
    li(c, X5, base + p->s);
    EM(c, ADD, X7, X5, 0);
    for (uint64_t h = 0; h < KV; h++) {
        li(c, X0, h * p->acc_head + p->a_s);
        li(c, X2, c->q + h * Rh * hd * 2);
        addi(c, X4, R_SETS, (int64_t)(h * p->T * hd * 2));
        EM(c, TMM, PM_FMT_BF16, X0, X2, X4);
        EM(c, TOUT, PM_FMT_F32, INC(X7), X0);
    }
    if (mk) emit_mask(c, mk);

    /* mn = max(m, rowmax S); alpha = exp(m - mn); P = bf16(exp(S - mn)) */
    li(c, X1, RT);
    li(c, X6, base + p->mt);
    EM(c, VREDMAX, PM_FMT_F32, X6, X5, R_N, X1);
    li(c, X7, base + p->mnew);
    li(c, X0, base + p->m);
    EM(c, VMAX, PM_FMT_F32, X7, X0, X6, X1);
    li(c, X2, base + p->alpha);
    EM(c, VSUB, PM_FMT_F32, X2, X0, X7, X1);
    EM(c, LFU, PM_FMT_F32, PM_LLM_SLOT_EXP, X2, X2, X1);
    EM(c, VSUBR, PM_FMT_F32, X5, X5, X7, R_N, X1);
    EM(c, MUL, X3, R_N, X1);
    EM(c, LFU, PM_FMT_F32, PM_LLM_SLOT_EXP, X5, X5, X3);
    li(c, X4, base + p->p);
    EM(c, VCVT, PM_FMT_BF16, PM_FMT_F32, X4, X5, X3);

    /* PV_h = P_h V_h (Rh x hd) and lt_h = P_h 1 (Rh): the row sums in k
     * order on the array, so they do not depend on the vector lane count. */
    li(c, X1, Rh);
    li(c, X6, hd);
    EM(c, TSHAPE, X1, X6, R_N, df_pv);
    EM(c, TEPI, 0, R_SCALE, 0);
    EM(c, MULI, X5, R_N, (int64_t)(Rh * 2)); /* P_h stride */
    EM(c, MULI, X6, R_N, (int64_t)(hd * 2)); /* V_h stride */
    EM(c, ADD, X3, X4, 0);
    addi(c, X7, R_SETS, (int64_t)p->set_v);
    /* on the first tile PV and lt land in O and l directly */
    uint32_t later = pm_builder_label(c->b), dst_set = pm_builder_label(c->b);
    li(c, X2, base + p->pv);
    EM(c, BEQ, R_FIRST, 0, pm_builder_ref(later));
    li(c, X2, c->o);
    pm_builder_bind(c->b, later);
    for (uint64_t h = 0; h < KV; h++) {
        li(c, X0, h * p->acc_head + p->a_o);
        EM(c, TMM, PM_FMT_BF16, X0, X3, X7);
        EM(c, TOUT, PM_FMT_F32, INC(X2), X0);
        EM(c, ADD, X3, X3, X5);
        EM(c, ADD, X7, X7, X6);
    }
    li(c, X6, 1);
    EM(c, TSHAPE, X1, X6, R_N, df_l);
    li(c, X6, base + p->ones);
    EM(c, ADD, X3, X4, 0);
    li(c, X2, base + p->lt);
    EM(c, BEQ, R_FIRST, 0, pm_builder_ref(dst_set));
    li(c, X2, c->l);
    pm_builder_bind(c->b, dst_set);
    for (uint64_t h = 0; h < KV; h++) {
        li(c, X0, h * p->acc_head + p->a_l);
        EM(c, TMM, PM_FMT_BF16, X0, X3, X6);
        EM(c, TOUT, PM_FMT_F32, INC(X2), X0);
        EM(c, ADD, X3, X3, X5);
    }

    /* O = O * alpha + PV; l = fmaf(l, alpha, lt) (after the first tile);
     * m = mn (all rows) */
    uint32_t first = pm_builder_label(c->b);
    li(c, X1, RT);
    EM(c, BNE, R_FIRST, 0, pm_builder_ref(first));
    li(c, X2, base + p->alpha);
    li(c, X0, c->o);
    li(c, X3, hd);
    EM(c, VMULR, PM_FMT_F32, X0, X0, X2, X3, X1);
    li(c, X3, RT * hd);
    li(c, X7, base + p->pv);
    EM(c, VADD, PM_FMT_F32, X0, X0, X7, X3);
    li(c, X0, c->l);
    li(c, X6, base + p->lt);
    EM(c, VFMA, PM_FMT_F32, X0, X0, X2, X6, X1);
    pm_builder_bind(c->b, first);
    EM(c, ADD, R_FIRST, 0, 0);
    li(c, X0, base + p->m);
    li(c, X7, base + p->mnew);
    EM(c, VMOV, PM_FMT_F32, X0, X7, X1);
    EM(c, XOR, R_SETS, R_SETS, R_SWS);
}

/* Every address the program touches lies where the desc says, and what it
 * writes overlaps nothing it reads. */
static pm_status attn_check_ranges(const pm_config *cfg, const pm_attn_desc *d, const attn_plan *p, pm_error *err)
{
    static const char *who = "attention";
    uint64_t hd = d->head_dim, H = d->n_heads, KV = d->n_kv_heads;
    uint64_t qkv_bytes = ((uint64_t)(d->M - 1) * d->qkv_row_elems + (H + 2 * KV) * hd) * 4;
    uint64_t out_bytes = (uint64_t)d->M * H * hd * (d->out_fmt == PM_FMT_F32 ? 4 : 2);
    uint64_t cache_bytes = KV * d->max_ctx * hd * 2;
    if (d->scratch_bytes < p->total)
        return pm_error_set(err, PM_ERR_INVALID, "attention: scratch_bytes = %llu, this desc needs %llu",
                            (unsigned long long)d->scratch_bytes, (unsigned long long)p->total);
    if (d->pos_sram % 4)
        return pm_error_set(err, PM_ERR_INVALID, "attention: pos_sram 0x%llx is not 4-byte aligned",
                            (unsigned long long)d->pos_sram);
    pm_status st = pm_llm_check_sram(cfg, who, "qkv_sram", d->qkv_sram, qkv_bytes, err);
    if (!st) st = pm_llm_check_sram(cfg, who, "out_sram", d->out_sram, out_bytes, err);
    if (!st) st = pm_llm_check_sram(cfg, who, "pos_sram", d->pos_sram, 4, err);
    if (!st) st = pm_llm_check_sram(cfg, who, "scratch_sram", d->scratch_sram, p->total, err);
    if (!st) st = pm_llm_check_dram(cfg, who, "kcache_dram", d->kcache_dram, cache_bytes, err);
    if (!st) st = pm_llm_check_dram(cfg, who, "vcache_dram", d->vcache_dram, cache_bytes, err);
    if (!st) st = pm_llm_check_disjoint(who, "scratch", d->scratch_sram, p->total, "qkv", d->qkv_sram, qkv_bytes, err);
    if (!st) st = pm_llm_check_disjoint(who, "scratch", d->scratch_sram, p->total, "out", d->out_sram, out_bytes, err);
    if (!st) st = pm_llm_check_disjoint(who, "scratch", d->scratch_sram, p->total, "pos", d->pos_sram, 4, err);
    if (!st) st = pm_llm_check_disjoint(who, "out", d->out_sram, out_bytes, "qkv", d->qkv_sram, qkv_bytes, err);
    if (!st) st = pm_llm_check_disjoint(who, "out", d->out_sram, out_bytes, "pos", d->pos_sram, 4, err);
    if (!st)
        st = pm_llm_check_disjoint(who, "kcache", d->kcache_dram, cache_bytes, "vcache", d->vcache_dram, cache_bytes,
                                   err);
    return st;
}

/* q|k|v rows -> bf16: `n` elements at element offset `col` of rows
 * [i0, i0 + rows), packed one after another at dst; per head group when
 * heads > 1 (each group `n` wide, groups `n` apart in the row). */
static void emit_rows_to_bf16(const emit_ctx *c, uint64_t dst, uint32_t i0, uint32_t rows, uint64_t col, uint64_t n,
                              uint32_t groups)
{
    const pm_attn_desc *d = c->d;
    uint64_t row = d->qkv_row_elems;
    li(c, X0, dst);
    li(c, X1, d->qkv_sram + ((uint64_t)i0 * row + col) * 4);
    if (rows == 1) { /* one row: the groups are contiguous already */
        li(c, X2, n * groups);
        EM(c, VCVT, PM_FMT_BF16, PM_FMT_F32, X0, X1, X2);
        return;
    }
    li(c, X2, n);
    li(c, X3, groups);
    uint32_t htop = pm_builder_label(c->b), itop = pm_builder_label(c->b);
    pm_builder_bind(c->b, htop);
    li(c, X4, rows);
    pm_builder_bind(c->b, itop);
    EM(c, VCVT, PM_FMT_BF16, PM_FMT_F32, INC(X0), INC(X1), X2);
    addi(c, X1, X1, (int64_t)((row - n) * 4));
    EM(c, LOOP, X4, pm_builder_ref(itop));
    addi(c, X1, X1, (int64_t)(n * 4) - (int64_t)((uint64_t)rows * row * 4));
    EM(c, LOOP, X3, pm_builder_ref(htop));
}

/* The chunk's k and v into the caches at pos0: K [kv][pos][hd] is one 3-D
 * DMA (planes = heads); V^T [kv][hd][pos] is one DMA of 2-byte rows whose
 * planes are the kv*hd feature columns: in both SRAM and the cache a column
 * is one fixed stride from the next, so no transpose pass is needed. */
static void emit_cache_store(const emit_ctx *c)
{
    const pm_attn_desc *d = c->d;
    const attn_plan *p = c->p;
    uint64_t hd = d->head_dim, KV = d->n_kv_heads, kvrow = 2 * KV * hd * 2;
    emit_rows_to_bf16(c, c->base + p->kv, 0, d->M, (uint64_t)d->n_heads * hd, 2 * KV * hd, 1);
    li(c, X0, hd * 2);
    li(c, X1, d->M);
    li(c, X2, KV);
    EM(c, DSHAPE, X0, X1, X2);
    li(c, X4, (uint64_t)d->max_ctx * hd * 2);
    li(c, X5, kvrow);
    EM(c, DSTRIDE, X0, X4, X5, X0);
    EM(c, MULI, X7, R_POS, (int64_t)(hd * 2));
    li(c, X3, d->kcache_dram);
    EM(c, ADD, X7, X7, X3);
    li(c, X6, c->base + p->kv);
    EM(c, DST, X7, X6);

    li(c, X2, KV * hd);
    EM(c, DSHAPE, R_TWO, X1, X2);
    li(c, X4, (uint64_t)d->max_ctx * 2);
    EM(c, DSTRIDE, R_TWO, X4, X5, R_TWO);
    EM(c, ADD, X7, R_POS, R_POS);
    li(c, X3, d->vcache_dram);
    EM(c, ADD, X7, X7, X3);
    li(c, X6, c->base + p->kv + KV * hd * 2);
    EM(c, DST, X7, X6);
}

/* out = O * recip(l) in out_fmt. O rows are [kv][position][g]; a
 * position's G heads of one KV head are contiguous in its output row. */
static void emit_final(const emit_ctx *c, uint32_t i0, uint32_t mb)
{
    const pm_attn_desc *d = c->d;
    const attn_plan *p = c->p;
    uint64_t hd = d->head_dim, G = p->G, H = d->n_heads, RT = (uint64_t)mb * H;
    uint64_t esz = d->out_fmt == PM_FMT_F32 ? 4 : 2;
    li(c, X0, c->rl);
    li(c, X1, c->l);
    li(c, X2, RT);
    EM(c, LFU, PM_FMT_F32, PM_LLM_SLOT_RECIP, X0, X1, X2);
    li(c, X4, c->o);
    li(c, X3, d->out_sram + (uint64_t)i0 * H * hd * esz);
    li(c, X6, d->n_kv_heads);
    li(c, X5, hd);
    if (d->out_fmt == PM_FMT_BF16) {
        EM(c, VMULR, PM_FMT_F32, X4, X4, X0, X5, X2);
        li(c, X5, G * hd);
    } else {
        li(c, X2, G);
    }
    uint32_t head = pm_builder_label(c->b), top = pm_builder_label(c->b);
    pm_builder_bind(c->b, head);
    li(c, X7, mb);
    pm_builder_bind(c->b, top);
    if (d->out_fmt == PM_FMT_F32) EM(c, VMULR, PM_FMT_F32, INC(X3), INC(X4), INC(X0), X5, X2);
    else EM(c, VCVT, PM_FMT_BF16, PM_FMT_F32, INC(X3), INC(X4), X5);
    addi(c, X3, X3, (int64_t)((H - G) * hd * esz));
    EM(c, LOOP, X7, pm_builder_ref(top));
    addi(c, X3, X3, (int64_t)(G * hd * esz) - (int64_t)((uint64_t)mb * H * hd * esz));
    EM(c, LOOP, X6, pm_builder_ref(head));
}

/* One block of mb positions starting at i0, every head at once. */
static void emit_block_tiles(const emit_ctx *c, uint32_t i0, uint32_t mb)
{
    const pm_attn_desc *d = c->d;
    const attn_plan *p = c->p;
    uint64_t RT = (uint64_t)mb * d->n_heads;
    /* m = -inf; O and l start on the first tile */
    li(c, R_FIRST, 1);
    li(c, X1, RT);
    li(c, X0, c->base + p->m);
    EM(c, VBCAST, PM_FMT_F32, X0, R_NINF, X1);

    /* dynamic phase: keys [0, pos0 + a_extra) in tiles of T, the last ragged */
    uint32_t skip_a = pm_builder_label(c->b), top_a = pm_builder_label(c->b);
    li(c, R_KPTR, d->kcache_dram);
    li(c, R_VPTR, d->vcache_dram);
    EM(c, ADDI, R_REM, R_POS, (int64_t)p->a_extra);
    EM(c, BEQ, R_REM, 0, pm_builder_ref(skip_a));
    pm_builder_bind(c->b, top_a);
    li(c, X0, p->T);
    EM(c, MIN, R_N, R_REM, X0);
    emit_tile(c, mb, NULL);
    EM(c, SUB, R_REM, R_REM, R_N);
    EM(c, BNE, R_REM, 0, pm_builder_ref(top_a));
    pm_builder_bind(c->b, skip_a);

    /* static phase (prefill): the chunk's own keys, causal on the diagonal;
     * KPTR and VPTR now point at position pos0 */
    if (d->M > 1)
        for (uint32_t jb = 0; jb < d->M && jb <= i0 + mb - 1; jb += p->T) {
            uint32_t nb = d->M - jb < p->T ? d->M - jb : p->T;
            /* positions i < jb see nothing; jb <= i < jb + nb - 1 see i - jb + 1 */
            uint32_t full_end = jb < i0 ? i0 : (jb < i0 + mb ? jb : i0 + mb);
            uint32_t part_end = jb + nb - 1 < i0 + mb ? jb + nb - 1 : i0 + mb;
            if (part_end < full_end) part_end = full_end;
            tile_mask mk = {full_end - i0, part_end - full_end, i0 + mb - part_end, 0, nb};
            mk.nz_first = mk.part ? visible(full_end, jb, nb) : 0;
            li(c, R_N, nb);
            emit_tile(c, mb, mk.full || mk.part ? &mk : NULL);
        }
}

pm_status pm_emit_attention(pm_builder *b, const pm_config *cfg, const pm_attn_desc *d, pm_error *err)
{
    pm_status st = attn_check(d, err);
    if (st) return st;
    attn_plan p;
    attn_plan_make(d, &p);
    if ((st = attn_cfg_check(cfg, d, &p, err))) return st;
    if ((st = attn_check_ranges(cfg, d, &p, err))) return st;
    emit_ctx c = {b, cfg, d, &p, d->scratch_sram, 0, 0, 0, 0};

    li(&c, X0, d->pos_sram);
    EM(&c, LW, R_POS, X0, 0);
    li(&c, R_NINF, 0xff800000u);
    li(&c, R_SCALE, pm_f32_bits(d->scale));
    li(&c, R_TWO, 2);
    li(&c, X0, c.base + p.ones);
    li(&c, X1, pm_f32_bits(1.0f));
    li(&c, X2, p.T);
    EM(&c, VBCAST, PM_FMT_BF16, X0, X1, X2);
    emit_cache_store(&c);
    uint64_t s0 = c.base + p.set[0], s1 = c.base + p.set[1];
    li(&c, R_SETS, s0);
    li(&c, R_SWS, s0 ^ s1);
    /* Every block's queries first, while the DMA stores run; then each
     * block's tiles, its output pass emitted after the next block's tiles,
     * so the long run of small output ops never holds back the next loads
     * in the vector queue. */
    emit_ctx cb[2];
    for (uint32_t blk = 0; blk < p.blocks; blk++) {
        uint32_t i0 = blk * p.Mb, mb = d->M - i0 < p.Mb ? d->M - i0 : p.Mb;
        emit_rows_to_bf16(&c, c.base + p.q + (uint64_t)i0 * d->n_heads * d->head_dim * 2, i0, mb, 0,
                          (uint64_t)p.G * d->head_dim, d->n_kv_heads);
    }
    for (uint32_t blk = 0; blk <= p.blocks; blk++) {
        if (blk < p.blocks) {
            uint32_t i0 = blk * p.Mb, mb = d->M - i0 < p.Mb ? d->M - i0 : p.Mb;
            emit_ctx *e = &cb[blk % 2];
            *e = c;
            e->q = c.base + p.q + (uint64_t)i0 * d->n_heads * d->head_dim * 2;
            e->o = c.base + p.o[blk % 2];
            e->l = c.base + p.l[blk % 2];
            e->rl = c.base + p.rl[blk % 2];
            emit_block_tiles(e, i0, mb);
        }
        if (blk >= 1) {
            uint32_t i0 = (blk - 1) * p.Mb, mb = d->M - i0 < p.Mb ? d->M - i0 : p.Mb;
            emit_final(&cb[(blk - 1) % 2], i0, mb);
        }
    }
    return pm_builder_status(b, err);
}
