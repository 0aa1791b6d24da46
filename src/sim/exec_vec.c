/* Vector unit bodies. Every op loads its operands from SRAM into fp32,
 * computes in fp32 and stores with the numerics layer's rounding (RNE). Each
 * op is a descriptor (which operands are sources, rows or scalars) plus a
 * small array kernel, run by one generic body: vec_exec. */
#include "sim_internal.h"

#include <math.h>
#include <string.h>

typedef void (*vkernel)(float *d, float *const src[3], uint64_t n, uint64_t rows, float s, uint32_t lanes,
                        float *partial);

typedef struct vec_desc {
    const char *mnemonic;
    int d;          /* operand index of the destination */
    int nsrc;       /* source arrays, operand indices in src[] */
    int src[3];
    unsigned src_rows_mask; /* bit k: source k holds one element per row */
    bool dst_rows;  /* destination holds one element per row (reductions) */
    int scalar;     /* operand index of an fp32-bits scalar register, or -1 */
    int n, rows;    /* operand indices of the count registers (rows: -1 = 1 row) */
    vkernel kernel;
} vec_desc;

/* IEEE 754 maxNum/minNum: a NaN loses to a number; between zeros +0 is the
 * larger, so the result never depends on operand order. */
static inline float max_num(float a, float b)
{
    if (a != a) return b;
    if (b != b) return a;
    if (a == b) return signbit(a) ? b : a;
    return a > b ? a : b;
}
static inline float min_num(float a, float b)
{
    if (a != a) return b;
    if (b != b) return a;
    if (a == b) return signbit(a) ? a : b;
    return a < b ? a : b;
}

#define ELEMWISE(NAME, EXPR)                                                                        \
    static void NAME(float *d, float *const src[3], uint64_t n, uint64_t rows, float s, uint32_t lanes, \
                     float *partial)                                                                \
    {                                                                                               \
        const float *a = src[0], *b = src[1], *c3 = src[2];                                         \
        (void)a, (void)b, (void)c3, (void)s, (void)lanes, (void)partial;                            \
        for (uint64_t i = 0; i < n * rows; i++) d[i] = (EXPR);                                      \
    }
ELEMWISE(k_add, a[i] + b[i])
ELEMWISE(k_sub, a[i] - b[i])
ELEMWISE(k_mul, a[i] * b[i])
ELEMWISE(k_max, max_num(a[i], b[i]))
ELEMWISE(k_min, min_num(a[i], b[i]))
ELEMWISE(k_fma, fmaf(a[i], b[i], c3[i]))
ELEMWISE(k_adds, a[i] + s)
ELEMWISE(k_muls, a[i] * s)
ELEMWISE(k_maxs, max_num(a[i], s))
ELEMWISE(k_bcast, s)
ELEMWISE(k_mov, a[i])
ELEMWISE(k_cmpgt, a[i] > b[i] ? 1.0f : 0.0f)
ELEMWISE(k_sel, a[i] != 0.0f ? b[i] : c3[i]) /* sources are (c, a, b) */
ELEMWISE(k_addr, a[i] + b[i / n])
ELEMWISE(k_subr, a[i] - b[i / n])
ELEMWISE(k_mulr, a[i] * b[i / n])

/* Row reduction in the order a `lanes`-wide unit computes it: lane l
 * accumulates elements l, l+lanes, l+2*lanes, ... of the row sequentially
 * in fp32; the partials (padded with the identity to a power of two W) are
 * combined by a tree: p[i] = p[i] op p[i + w/2] for i < w/2, w = W, W/2, ..., 2. */
static uint32_t tree_width(uint32_t lanes)
{
    uint32_t w = 1;
    while (w < lanes) w *= 2;
    return w;
}

static float reduce_row(const float *x, uint64_t n, uint32_t lanes, float *p, float identity, bool is_max)
{
    uint32_t w = tree_width(lanes);
    for (uint32_t l = 0; l < w; l++) p[l] = identity;
    uint32_t l = 0;
    for (uint64_t j = 0; j < n; j++) {
        p[l] = is_max ? max_num(p[l], x[j]) : p[l] + x[j];
        if (++l == lanes) l = 0;
    }
    for (; w > 1; w /= 2)
        for (uint32_t i = 0; i < w / 2; i++) p[i] = is_max ? max_num(p[i], p[i + w / 2]) : p[i] + p[i + w / 2];
    return p[0];
}

/* -0.0 is the identity of fp32 addition (-0 + x == x for every x, -0 included). */
static void k_redsum(float *d, float *const src[3], uint64_t n, uint64_t rows, float s, uint32_t lanes, float *p)
{
    (void)s;
    for (uint64_t r = 0; r < rows; r++) d[r] = reduce_row(src[0] + r * n, n, lanes, p, -0.0f, false);
}

/* NaN is the identity of maxNum, so a row of NaNs reduces to NaN. */
static void k_redmax(float *d, float *const src[3], uint64_t n, uint64_t rows, float s, uint32_t lanes, float *p)
{
    (void)s;
    for (uint64_t r = 0; r < rows; r++) d[r] = reduce_row(src[0] + r * n, n, lanes, p, NAN, true);
}

static pm_status vec_exec(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err, const vec_desc *v)
{
    const pm_config *cfg = e->cfg;
    pm_format f;
    uint64_t n, rows = 1;
    pm_status st = pm_format_operand(in->op[0], v->mnemonic, true, &f, err);
    if (!st) st = pm_count_operand(e, in->op[v->n], "n", &n, err);
    if (!st && v->rows >= 0) st = pm_count_operand(e, in->op[v->rows], "rows", &rows, err);
    if (st) return st;
    c->latency_cycles = cfg->vector_latency_cycles;
    if (n == 0 || rows == 0) return PM_OK; /* nothing to do; addresses are not checked */
    if (n > PM_MAX_COUNT / rows)
        return pm_sim_fault(err, "n x rows = %llu x %llu is too large", (unsigned long long)n,
                            (unsigned long long)rows);
    uint64_t elems = n * rows, esize = f == PM_FMT_F32 ? 4 : 2;

    uint64_t off[3] = {0, 0, 0}, cnt[3] = {0, 0, 0}, doff, dcnt = v->dst_rows ? rows : elems;
    for (int k = 0; k < v->nsrc; k++) {
        cnt[k] = (v->src_rows_mask >> k) & 1 ? rows : elems;
        if ((st = pm_sram_operand(e, in->op[v->src[k]], cnt[k] * esize, false, c, &off[k], err))) return st;
    }
    if ((st = pm_sram_operand(e, in->op[v->d], dcnt * esize, true, c, &doff, err))) return st;

    uint32_t w = tree_width(cfg->vector_lanes);
    float *buf;
    uint8_t *bytes;
    if ((st = pm_scratch_floats(e, (size_t)(cnt[0] + cnt[1] + cnt[2] + dcnt + w), &buf, err))) return st;
    if ((st = pm_scratch_bytes(e, (size_t)(dcnt * esize), &bytes, err))) return st;
    float *src[3] = {buf, buf + cnt[0], buf + cnt[0] + cnt[1]};
    float *dst = src[2] + cnt[2], *partial = dst + dcnt;
    for (int k = 0; k < v->nsrc; k++)
        if ((st = pm_format_decode(f, e->sram + off[k], (size_t)cnt[k], src[k], err))) return st;
    float s = v->scalar >= 0 ? pm_f32_from_bits((uint32_t)e->regs[in->op[v->scalar]]) : 0.0f;
    v->kernel(dst, src, n, rows, s, cfg->vector_lanes, partial);
    /* Encode aside, then copy: a failure cannot leave a half-written result,
     * and destinations may overlap sources. */
    if ((st = pm_format_encode(f, dst, (size_t)dcnt, bytes, err))) return st;
    memcpy(e->sram + doff, bytes, (size_t)(dcnt * esize));

    for (int k = 0; k < v->nsrc; k++) pm_post_increment(e, in->op[v->src[k]], cnt[k] * esize);
    pm_post_increment(e, in->op[v->d], dcnt * esize);
    c->stream_cycles = rows * pm_ceil_div(n, cfg->vector_lanes); /* the scheduler adds the SRAM port */
    c->vector_elems = elems;
    return PM_OK;
}

/* One descriptor per row of the table; operand indices follow the row's
 * operand string (index 0 is the format). */
#define VEC_BODY(ID, ...)                                                            \
    pm_status pm_exec_##ID(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err) \
    {                                                                                \
        static const vec_desc desc = __VA_ARGS__;                                    \
        return vec_exec(e, in, c, err, &desc);                                       \
    }

/* taaar: d, a, b, n */
VEC_BODY(VADD, {"vadd", 1, 2, {2, 3, 0}, 0, false, -1, 4, -1, k_add})
VEC_BODY(VSUB, {"vsub", 1, 2, {2, 3, 0}, 0, false, -1, 4, -1, k_sub})
VEC_BODY(VMUL, {"vmul", 1, 2, {2, 3, 0}, 0, false, -1, 4, -1, k_mul})
VEC_BODY(VMAX, {"vmax", 1, 2, {2, 3, 0}, 0, false, -1, 4, -1, k_max})
VEC_BODY(VMIN, {"vmin", 1, 2, {2, 3, 0}, 0, false, -1, 4, -1, k_min})
VEC_BODY(VCMPGT, {"vcmpgt", 1, 2, {2, 3, 0}, 0, false, -1, 4, -1, k_cmpgt})
/* taaaar: d, a, b, c, n  /  vsel d, c, a, b, n */
VEC_BODY(VFMA, {"vfma", 1, 3, {2, 3, 4}, 0, false, -1, 5, -1, k_fma})
VEC_BODY(VSEL, {"vsel", 1, 3, {2, 3, 4}, 0, false, -1, 5, -1, k_sel})
/* taarr: d, a, s, n */
VEC_BODY(VADDS, {"vadds", 1, 1, {2, 0, 0}, 0, false, 3, 4, -1, k_adds})
VEC_BODY(VMULS, {"vmuls", 1, 1, {2, 0, 0}, 0, false, 3, 4, -1, k_muls})
VEC_BODY(VMAXS, {"vmaxs", 1, 1, {2, 0, 0}, 0, false, 3, 4, -1, k_maxs})
/* tarr: d, s, n */
VEC_BODY(VBCAST, {"vbcast", 1, 0, {0, 0, 0}, 0, false, 2, 3, -1, k_bcast})
/* taar: d, a, n */
VEC_BODY(VMOV, {"vmov", 1, 1, {2, 0, 0}, 0, false, -1, 3, -1, k_mov})
/* taarr: d, a, n, rows */
VEC_BODY(VREDSUM, {"vredsum", 1, 1, {2, 0, 0}, 0, true, -1, 3, 4, k_redsum})
VEC_BODY(VREDMAX, {"vredmax", 1, 1, {2, 0, 0}, 0, true, -1, 3, 4, k_redmax})
/* taaarr: d, a, b, n, rows (b holds one element per row) */
VEC_BODY(VADDR, {"vaddr", 1, 2, {2, 3, 0}, 2, false, -1, 4, 5, k_addr})
VEC_BODY(VSUBR, {"vsubr", 1, 2, {2, 3, 0}, 2, false, -1, 4, 5, k_subr})
VEC_BODY(VMULR, {"vmulr", 1, 2, {2, 3, 0}, 2, false, -1, 4, 5, k_mulr})

/* Storage units of a format, for the message when n does not fill them. */
static uint32_t unit_elems(const pm_format_info *fi)
{
    if (fi->block_elems > 1) return fi->block_elems;
    return fi->elem_bits < 8 ? 8 / fi->elem_bits : 1;
}

/* vcvt.DST.SRC d, a, n: any format to any format through fp32. */
pm_status pm_exec_VCVT(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    const pm_config *cfg = e->cfg;
    pm_format fd, fs;
    uint64_t n;
    pm_status st = pm_format_operand(in->op[0], "vcvt", false, &fd, err);
    if (!st) st = pm_format_operand(in->op[1], "vcvt", false, &fs, err);
    if (!st) st = pm_count_operand(e, in->op[4], "n", &n, err);
    if (st) return st;
    c->latency_cycles = cfg->vector_latency_cycles;
    if (n == 0) return PM_OK;
    size_t sbytes, dbytes;
    const pm_format *fmts[2] = {&fs, &fd};
    size_t *sizes[2] = {&sbytes, &dbytes};
    for (int k = 0; k < 2; k++)
        if (!pm_format_bytes(*fmts[k], (size_t)n, sizes[k])) {
            const pm_format_info *fi = pm_format_get(*fmts[k]);
            return pm_sim_fault(err, "n = %llu is not a whole number of %s storage units (%u elements each)",
                                (unsigned long long)n, fi->name, unit_elems(fi));
        }
    uint64_t soff, doff;
    if ((st = pm_sram_operand(e, in->op[3], sbytes, false, c, &soff, err))) return st;
    if ((st = pm_sram_operand(e, in->op[2], dbytes, true, c, &doff, err))) return st;
    float *x;
    uint8_t *bytes;
    if ((st = pm_scratch_floats(e, (size_t)n, &x, err))) return st;
    if ((st = pm_scratch_bytes(e, dbytes, &bytes, err))) return st;
    if ((st = pm_format_decode(fs, e->sram + soff, (size_t)n, x, err))) return st;
    if ((st = pm_format_encode(fd, x, (size_t)n, bytes, err))) return st;
    memcpy(e->sram + doff, bytes, dbytes);
    pm_post_increment(e, in->op[3], sbytes);
    pm_post_increment(e, in->op[2], dbytes);
    c->stream_cycles = pm_ceil_div(n, cfg->vector_lanes);
    c->vector_elems = n;
    return PM_OK;
}
