/* The Llama-family model runner: the graph from GGUF metadata, the weights
 * uploaded to device DRAM, the SRAM plan, and the decode/prefill/head
 * programs compiled once at open and run for every token. The kernels come
 * from llm_kernels.h; this file only composes them. See docs/models.md. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "polymorph/llm.h"
#include "polymorph/llm_kernels.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- structures ---- */

/* One weight matrix in DRAM: N rows of K in fmt (GGUF layout). */
typedef struct llm_matrix {
    pm_format fmt;
    uint64_t dram;
    uint32_t N, K;
    uint64_t bytes;
} llm_matrix;

/* A layer's projections. Q|K|V (and gate|up) are one fused matrix when their
 * formats match, else up to three matrices whose outputs land side by side. */
typedef struct llm_layer {
    uint64_t attn_norm, ffn_norm;
    llm_matrix qkv[3];
    uint32_t n_qkv;
    llm_matrix o;
    llm_matrix gu[2];
    uint32_t n_gu;
    llm_matrix down;
    uint64_t kcache, vcache;
} llm_layer;

/* Engine 0's SRAM: one region per activation, one scratch range per emitter
 * kind (two for linears, so the next linear's weights can stream in while
 * the current one still reads its own). Sized for `chunk` rows; decode uses
 * the first row of each. */
typedef struct llm_sram_plan {
    uint32_t chunk;
    uint64_t pos, ids, x, xn, qkv, attn, o, gu, act, tmp, zero, logits, topk;
    uint64_t vec_scratch, vec_bytes, attn_scratch, attn_bytes, lin_scratch[2], lin_bytes;
    uint64_t used;
} llm_sram_plan;

typedef struct llm_pass {
    pm_program *progs;
    uint32_t count;
    uint32_t M;
} llm_pass;

struct pm_llm {
    pm_config cfg;
    pm_llm_options opts;
    pm_llm_info info;
    pm_gguf *gguf;
    pm_tokenizer *tok;
    pm_device *dev;

    llm_layer *layers;
    llm_matrix embd, out; /* out.dram == embd.dram when tied */
    uint64_t out_norm, rope_table;
    uint32_t max_ctx, kv_ctx; /* usable context; cache rows (max_ctx + chunk) */
    uint32_t q_dim, kv_dim, qkv_dim;
    bool need_tmp;            /* some projection is not fused: outputs go through tmp */

    llm_sram_plan sp;
    llm_pass decode, prefill;
    pm_program *heads; /* one per row of a chunk: the last valid row's hidden state */
    pm_program topk_prog;
    uint32_t topk;
    unsigned prefetch_mask; /* which linears get pm_emit_linear_prefetch (PF_*) */

    uint32_t pos;
    bool have_logits;
    pm_llm_phase_stats st[2]; /* 0 prefill, 1 decode */
    double wall_load, wall_run, wall_io;
    char *trace_path; /* the next decode step's trace, then cleared */
};

enum { PHASE_PREFILL = 0, PHASE_DECODE = 1 };
enum { PF_QKV = 1, PF_O = 2, PF_GU = 4, PF_DOWN = 8, PF_HEAD = 16 };

void pm_llm_options_init(pm_llm_options *o)
{
    memset(o, 0, sizeof *o);
    o->wfmt_native = true;
    o->wfmt = PM_FMT_BF16;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- graph from metadata ---- */

/* Architectures whose keys and tensors follow llama.cpp's llama graph
 * exactly (RMSNorm, rotate-pairs RoPE, GQA, SwiGLU). Others (granite's
 * scaling keys, qwen2's biases, gemma's norms) change the maths, so they are
 * refused rather than run wrongly. */
static const char *const llama_family[] = {"llama"};

static pm_status key_u32(const pm_gguf *g, const char *arch, const char *suffix, bool required, uint32_t dflt,
                         uint32_t *out, pm_error *err)
{
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    pm_error e2 = {0};
    pm_status st = pm_gguf_get_u32(g, key, out, &e2);
    if (st == PM_ERR_INVALID && !pm_gguf_find(g, key)) {
        if (required) return pm_error_set(err, PM_ERR_FORMAT, "model: metadata key '%s' is missing", key);
        *out = dflt;
        return PM_OK;
    }
    if (st != PM_OK) {
        if (err) *err = e2;
        pm_error_prefix(err, "model: ");
    }
    return st;
}

static pm_status key_f32(const pm_gguf *g, const char *arch, const char *suffix, bool required, float dflt,
                         float *out, pm_error *err)
{
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (!pm_gguf_find(g, key)) {
        if (required) return pm_error_set(err, PM_ERR_FORMAT, "model: metadata key '%s' is missing", key);
        *out = dflt;
        return PM_OK;
    }
    pm_status st = pm_gguf_get_f32(g, key, out, err);
    if (st != PM_OK) pm_error_prefix(err, "model: ");
    return st;
}

static void str_copy(char *dst, size_t cap, pm_gguf_str s)
{
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(dst, s.ptr, n);
    dst[n] = 0;
}

static pm_status read_graph(const pm_gguf *g, pm_llm_info *in, pm_error *err)
{
    memset(in, 0, sizeof *in);
    pm_gguf_str s;
    if (pm_gguf_get_str(g, "general.architecture", &s, err) != PM_OK) {
        pm_error_prefix(err, "model: ");
        return err ? err->status : PM_ERR_FORMAT;
    }
    str_copy(in->arch, sizeof in->arch, s);
    bool known = false;
    for (size_t i = 0; i < sizeof llama_family / sizeof llama_family[0]; i++)
        known |= strcmp(in->arch, llama_family[i]) == 0 && s.len == strlen(llama_family[i]);
    if (!known)
        return pm_error_set(err, PM_ERR_UNSUPPORTED,
                            "model: general.architecture = '%s' is not supported (the runner implements the "
                            "llama graph: 'llama')",
                            in->arch);
    if (pm_gguf_find(g, "general.name") && pm_gguf_get_str(g, "general.name", &s, NULL) == PM_OK)
        str_copy(in->name, sizeof in->name, s);
    else
        snprintf(in->name, sizeof in->name, "%s", in->arch);
    const char *a = in->arch;
    pm_status st = PM_OK;
    if (!st) st = key_u32(g, a, "block_count", true, 0, &in->n_layers, err);
    if (!st) st = key_u32(g, a, "embedding_length", true, 0, &in->d_model, err);
    if (!st) st = key_u32(g, a, "feed_forward_length", true, 0, &in->d_ff, err);
    if (!st) st = key_u32(g, a, "attention.head_count", true, 0, &in->n_heads, err);
    if (!st) st = key_u32(g, a, "attention.head_count_kv", false, in->n_heads, &in->n_kv_heads, err);
    if (!st) st = key_u32(g, a, "context_length", false, 2048, &in->ctx_train, err);
    if (!st) st = key_f32(g, a, "rope.freq_base", false, 10000.0f, &in->rope_base, err);
    if (!st) st = key_f32(g, a, "attention.layer_norm_rms_epsilon", true, 0, &in->norm_eps, err);
    if (st) return st;
    if (in->n_layers == 0 || in->d_model == 0 || in->d_ff == 0 || in->n_heads == 0 || in->n_kv_heads == 0)
        return pm_error_set(err, PM_ERR_FORMAT,
                            "model: %s.block_count, embedding_length, feed_forward_length, attention.head_count "
                            "and head_count_kv must be non-zero (got %u, %u, %u, %u, %u)",
                            a, in->n_layers, in->d_model, in->d_ff, in->n_heads, in->n_kv_heads);
    if (in->n_heads % in->n_kv_heads)
        return pm_error_set(err, PM_ERR_FORMAT, "model: %s.attention.head_count %u is not a multiple of head_count_kv %u",
                            a, in->n_heads, in->n_kv_heads);
    uint32_t hd_default = in->d_model / in->n_heads;
    if (!st) st = key_u32(g, a, "attention.key_length", false, hd_default, &in->head_dim, err);
    uint32_t vlen = 0;
    if (!st) st = key_u32(g, a, "attention.value_length", false, in->head_dim, &vlen, err);
    if (st) return st;
    if (vlen != in->head_dim)
        return pm_error_set(err, PM_ERR_UNSUPPORTED, "model: %s.attention.value_length %u differs from key_length %u", a,
                            vlen, in->head_dim);
    if (in->head_dim == 0 || in->head_dim % 2)
        return pm_error_set(err, PM_ERR_FORMAT, "model: head dimension %u must be even and non-zero", in->head_dim);
    uint32_t rope_dims = 0;
    if ((st = key_u32(g, a, "rope.dimension_count", false, in->head_dim, &rope_dims, err))) return st;
    if (rope_dims != in->head_dim)
        return pm_error_set(err, PM_ERR_UNSUPPORTED,
                            "model: %s.rope.dimension_count = %u: partial RoPE is not supported (head_dim %u)", a,
                            rope_dims, in->head_dim);
    if (!(in->norm_eps > 0) || !isfinite(in->rope_base) || !(in->rope_base > 0))
        return pm_error_set(err, PM_ERR_FORMAT, "model: rms epsilon %g / rope.freq_base %g out of range",
                            (double)in->norm_eps, (double)in->rope_base);
    const pm_gguf_tensor *emb = pm_gguf_tensor_find(g, "token_embd.weight");
    if (!emb) return pm_error_set(err, PM_ERR_FORMAT, "model: tensor 'token_embd.weight' is missing");
    if (emb->n_dims != 2 || emb->ne[0] != in->d_model || emb->ne[1] == 0 || emb->ne[1] > INT32_MAX)
        return pm_error_set(err, PM_ERR_FORMAT, "model: tensor 'token_embd.weight' has shape [%" PRIu64 ", %" PRIu64
                            "], expected [%u, vocab]",
                            emb->ne[0], emb->ne[1], in->d_model);
    in->vocab = (uint32_t)emb->ne[1];
    in->tied_output = pm_gguf_tensor_find(g, "output.weight") == NULL;
    for (size_t i = 0; i < pm_gguf_tensor_count(g); i++) in->param_count += pm_gguf_tensor_elems(pm_gguf_tensor_at(g, i));
    return PM_OK;
}

/* A tensor that must exist with exactly shape [ne0] or [ne0, ne1]. */
static pm_status need_tensor(const pm_gguf *g, const char *name, uint64_t ne0, uint64_t ne1,
                             const pm_gguf_tensor **out, pm_error *err)
{
    const pm_gguf_tensor *t = pm_gguf_tensor_find(g, name);
    if (!t) return pm_error_set(err, PM_ERR_FORMAT, "model: tensor '%s' is missing", name);
    bool ok = ne1 ? (t->n_dims == 2 && t->ne[0] == ne0 && t->ne[1] == ne1)
                  : (t->n_dims == 1 && t->ne[0] == ne0);
    if (!ok) {
        char got[96];
        int k = snprintf(got, sizeof got, "[%" PRIu64, t->ne[0]);
        for (uint32_t d = 1; d < t->n_dims && d < 4 && k > 0 && (size_t)k < sizeof got; d++)
            k += snprintf(got + k, sizeof got - (size_t)k, ", %" PRIu64, t->ne[d]);
        if (k > 0 && (size_t)k < sizeof got) snprintf(got + k, sizeof got - (size_t)k, "]");
        if (ne1)
            return pm_error_set(err, PM_ERR_FORMAT, "model: tensor '%s' has shape %s, expected [%" PRIu64 ", %" PRIu64 "]",
                                name, got, ne0, ne1);
        return pm_error_set(err, PM_ERR_FORMAT, "model: tensor '%s' has shape %s, expected [%" PRIu64 "]", name, got,
                            ne0);
    }
    *out = t;
    return PM_OK;
}

/* ---- weight upload ---- */

/* The GGUF tensors of one layer, shapes checked. */
typedef struct layer_src {
    const pm_gguf_tensor *attn_norm, *q, *k, *v, *o, *ffn_norm, *gate, *up, *down;
} layer_src;

static pm_status layer_tensors(const pm_gguf *g, const pm_llm_info *in, uint32_t l, layer_src *s, pm_error *err)
{
    char name[96];
    uint32_t D = in->d_model, F = in->d_ff, qd = in->n_heads * in->head_dim, kvd = in->n_kv_heads * in->head_dim;
    struct {
        const char *suffix;
        uint64_t ne0, ne1;
        const pm_gguf_tensor **dst;
    } want[] = {
        {"attn_norm", D, 0, &s->attn_norm}, {"attn_q", D, qd, &s->q},       {"attn_k", D, kvd, &s->k},
        {"attn_v", D, kvd, &s->v},          {"attn_output", qd, D, &s->o},  {"ffn_norm", D, 0, &s->ffn_norm},
        {"ffn_gate", D, F, &s->gate},       {"ffn_up", D, F, &s->up},       {"ffn_down", F, D, &s->down},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        snprintf(name, sizeof name, "blk.%u.%s.weight", l, want[i].suffix);
        pm_status st = need_tensor(g, name, want[i].ne0, want[i].ne1, want[i].dst, err);
        if (st) return st;
    }
    return PM_OK;
}

static pm_status check_tensors(const pm_gguf *g, const pm_llm_info *in, pm_error *err)
{
    const pm_gguf_tensor *t;
    pm_status st = need_tensor(g, "output_norm.weight", in->d_model, 0, &t, err);
    if (!st && !in->tied_output) st = need_tensor(g, "output.weight", in->d_model, in->vocab, &t, err);
    if (!st && pm_gguf_tensor_find(g, "rope_freqs.weight"))
        st = need_tensor(g, "rope_freqs.weight", in->head_dim / 2, 0, &t, err);
    layer_src s;
    for (uint32_t l = 0; l < in->n_layers && !st; l++) st = layer_tensors(g, in, l, &s, err);
    return st;
}

static pm_format device_format(const pm_llm *m, const pm_gguf_tensor *t)
{
    return m->opts.wfmt_native ? t->format : m->opts.wfmt;
}

/* Bytes of N rows of K in fmt; fails naming the tensor when a block does not
 * divide K (a row must be a whole number of blocks to be addressable). */
static pm_status matrix_bytes(pm_format fmt, uint64_t N, uint64_t K, const char *tname, uint64_t *bytes,
                              pm_error *err)
{
    size_t row = 0, all = 0;
    const pm_format_info *fi = pm_format_get(fmt);
    if (!fi || !pm_format_bytes(fmt, (size_t)K, &row) || !pm_format_bytes(fmt, (size_t)(N * K), &all))
        return pm_error_set(err, PM_ERR_UNSUPPORTED,
                            "model: tensor '%s': rows of %" PRIu64 " elements are not a whole number of %s blocks (%u)",
                            tname, K, fi ? fi->name : "?", fi ? fi->block_elems : 0);
    *bytes = all;
    return PM_OK;
}

/* Fuse tensors ts[0..n) (same K) into one device matrix of their rows in
 * order; rows of tensor i are permuted into the rotate-half layout when
 * rope_heads[i] > 0. Native: raw row bytes move (a row of a block format is
 * whole blocks). Re-encoded: dequantised, permuted and concatenated in f32,
 * then encoded once. */
static pm_status upload_matrix_as(pm_llm *m, const pm_gguf_tensor *const *ts, const uint32_t *rope_heads, uint32_t n,
                                  bool native, llm_matrix *out, pm_error *err)
{
    uint32_t K = (uint32_t)ts[0]->ne[0], N = 0;
    for (uint32_t i = 0; i < n; i++) N += (uint32_t)ts[i]->ne[1];
    pm_format fmt = native ? ts[0]->format : m->opts.wfmt;
    char tname[64];
    str_copy(tname, sizeof tname, ts[0]->name);
    uint64_t bytes;
    pm_status st = matrix_bytes(fmt, N, K, tname, &bytes, err);
    if (st) return st;
    uint8_t *buf = malloc(bytes ? bytes : 1);
    uint32_t *perm = malloc(sizeof *perm * (m->info.n_heads + 1) * m->info.head_dim);
    float *f = NULL, *tmp = NULL;
    if (!buf || !perm) {
        st = pm_error_set(err, PM_ERR_NOMEM, "model: out of host memory uploading '%s'", tname);
        goto done;
    }
    if (native) {
        size_t row = 0;
        pm_format_bytes(fmt, K, &row);
        uint64_t at = 0;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t rows = (uint32_t)ts[i]->ne[1];
            if ((uint64_t)rows * row != ts[i]->bytes) {
                st = pm_error_set(err, PM_ERR_FORMAT, "model: tensor '%.*s' holds %" PRIu64 " bytes, expected %" PRIu64,
                                  (int)ts[i]->name.len, ts[i]->name.ptr, ts[i]->bytes, (uint64_t)rows * row);
                goto done;
            }
            if (rope_heads[i]) pm_rope_permute_rows(rope_heads[i], m->info.head_dim, perm);
            for (uint32_t r = 0; r < rows; r++)
                memcpy(buf + at + (uint64_t)r * row, ts[i]->data + (uint64_t)(rope_heads[i] ? perm[r] : r) * row, row);
            at += (uint64_t)rows * row;
        }
    } else {
        f = malloc(sizeof *f * (size_t)N * K);
        if (!f) {
            st = pm_error_set(err, PM_ERR_NOMEM, "model: out of host memory re-encoding '%s'", tname);
            goto done;
        }
        uint64_t at = 0;
        for (uint32_t i = 0; i < n && !st; i++) {
            uint32_t rows = (uint32_t)ts[i]->ne[1];
            float *dst = f + at;
            if (rope_heads[i]) {
                tmp = malloc(sizeof *tmp * (size_t)rows * K);
                if (!tmp) {
                    st = pm_error_set(err, PM_ERR_NOMEM, "model: out of host memory re-encoding '%s'", tname);
                    break;
                }
                dst = tmp;
            }
            st = pm_gguf_tensor_to_f32(ts[i], dst, err);
            if (!st && rope_heads[i]) {
                pm_rope_permute_rows(rope_heads[i], m->info.head_dim, perm);
                for (uint32_t r = 0; r < rows; r++) memcpy(f + at + (size_t)r * K, tmp + (size_t)perm[r] * K, sizeof *f * K);
            }
            free(tmp);
            tmp = NULL;
            at += (uint64_t)rows * K;
        }
        if (!st) st = pm_format_encode(fmt, f, (size_t)N * K, buf, err);
        if (st) {
            pm_error_prefix(err, "model: tensor '%s': ", tname);
            goto done;
        }
    }
    out->fmt = fmt;
    out->N = N;
    out->K = K;
    out->bytes = bytes;
    st = pm_device_alloc(m->dev, bytes, 64, &out->dram, err);
    if (!st) st = pm_device_write(m->dev, out->dram, buf, bytes, err);
    if (st) pm_error_prefix(err, "model: tensor '%s': ", tname);
    m->info.weight_bytes += bytes;
done:
    free(buf);
    free(perm);
    free(f);
    return st;
}

static pm_status upload_matrix(pm_llm *m, const pm_gguf_tensor *const *ts, const uint32_t *rope_heads, uint32_t n,
                               llm_matrix *out, pm_error *err)
{
    return upload_matrix_as(m, ts, rope_heads, n, m->opts.wfmt_native, out, err);
}

/* The embedding gather reads single rows, which a format with a per-tensor
 * header (NVFP4, IF4: one fp32 scale for the whole matrix) cannot give; the
 * gather then reads token_embd in its own GGUF format, and a tied output
 * projection gets a re-encoded copy of its own. */
static bool gather_needs_native(const pm_llm *m)
{
    const pm_format_info *fi = pm_format_get(m->opts.wfmt);
    return !m->opts.wfmt_native && fi && fi->header_bytes > 0;
}

static pm_status upload_f32(pm_llm *m, const pm_gguf_tensor *t, uint64_t *addr, pm_error *err)
{
    uint64_t n = pm_gguf_tensor_elems(t);
    float *f = malloc(sizeof *f * (n ? n : 1));
    if (!f) return pm_error_set(err, PM_ERR_NOMEM, "model: out of host memory");
    pm_status st = pm_gguf_tensor_to_f32(t, f, err);
    if (!st) st = pm_device_alloc(m->dev, n * 4, 64, addr, err);
    if (!st) st = pm_device_write(m->dev, *addr, f, n * 4, err);
    if (st) pm_error_prefix(err, "model: tensor '%.*s': ", (int)t->name.len, t->name.ptr);
    m->info.weight_bytes += n * 4;
    free(f);
    return st;
}

/* Device DRAM the model needs, computed before anything is allocated so a
 * config that is too small gets one message with the whole figure. */
static pm_status dram_need(const pm_llm *m, const layer_src *src, const pm_gguf_tensor *emb,
                           const pm_gguf_tensor *outw, uint64_t *weights, uint64_t *kv, uint64_t *table,
                           pm_error *err)
{
    const pm_llm_info *in = &m->info;
    uint64_t w = 0, b;
    pm_status st;
#define ADD(t)                                                                                   \
    do {                                                                                         \
        char nm_[64];                                                                            \
        str_copy(nm_, sizeof nm_, (t)->name);                                                    \
        if ((st = matrix_bytes(device_format(m, (t)), (t)->ne[1], (t)->ne[0], nm_, &b, err))) return st; \
        w += (b + 63) & ~(uint64_t)63;                                                           \
    } while (0)
    ADD(emb);
    if (outw) ADD(outw);
    else if (gather_needs_native(m)) w += emb->bytes; /* the gather's native copy beside the re-encoded one */
    for (uint32_t l = 0; l < in->n_layers; l++) {
        const layer_src *s = &src[l];
        ADD(s->q);
        ADD(s->k);
        ADD(s->v);
        ADD(s->o);
        ADD(s->gate);
        ADD(s->up);
        ADD(s->down);
        w += 2 * (((uint64_t)in->d_model * 4 + 63) & ~(uint64_t)63);
    }
#undef ADD
    w += ((uint64_t)in->d_model * 4 + 63) & ~(uint64_t)63;
    *weights = w;
    *kv = (uint64_t)in->n_layers * 2 * (((uint64_t)in->n_kv_heads * m->kv_ctx * in->head_dim * 2 + 63) & ~(uint64_t)63);
    *table = (uint64_t)m->kv_ctx * in->head_dim * 4;
    return PM_OK;
}

static pm_status upload_all(pm_llm *m, pm_error *err)
{
    const pm_llm_info *in = &m->info;
    const pm_gguf *g = m->gguf;
    pm_status st = PM_OK;
    layer_src *src = calloc(in->n_layers, sizeof *src);
    m->layers = calloc(in->n_layers, sizeof *m->layers);
    if (!src || !m->layers) {
        free(src);
        return pm_error_set(err, PM_ERR_NOMEM, "model: out of host memory");
    }
    const pm_gguf_tensor *emb = NULL, *outw = NULL, *onorm = NULL, *freqs;
    st = need_tensor(g, "token_embd.weight", in->d_model, in->vocab, &emb, err);
    if (!st && !in->tied_output) st = need_tensor(g, "output.weight", in->d_model, in->vocab, &outw, err);
    if (!st) st = need_tensor(g, "output_norm.weight", in->d_model, 0, &onorm, err);
    for (uint32_t l = 0; l < in->n_layers && !st; l++) st = layer_tensors(g, in, l, &src[l], err);
    freqs = pm_gguf_tensor_find(g, "rope_freqs.weight");
    if (!st && freqs) st = need_tensor(g, "rope_freqs.weight", in->head_dim / 2, 0, &freqs, err);
    uint64_t wb = 0, kvb = 0, tb = 0;
    if (!st) st = dram_need(m, src, emb, outw, &wb, &kvb, &tb, err);
    if (!st && wb + kvb + tb > m->cfg.dram_bytes)
        st = pm_error_set(err, PM_ERR_CONFIG,
                          "model: needs %.1f MiB of device DRAM (weights %.1f MiB, KV cache %.1f MiB for %u "
                          "positions, RoPE table %.1f MiB); dram.bytes is %.1f MiB",
                          (double)(wb + kvb + tb) / 1048576.0, (double)wb / 1048576.0, (double)kvb / 1048576.0,
                          m->kv_ctx, (double)tb / 1048576.0, (double)m->cfg.dram_bytes / 1048576.0);
    if (!st) {
        const pm_gguf_tensor *e[1] = {emb};
        const uint32_t none[3] = {0, 0, 0};
        bool split = gather_needs_native(m);
        st = upload_matrix_as(m, e, none, 1, m->opts.wfmt_native || split, &m->embd, err);
        if (!st && (outw || split)) {
            e[0] = outw ? outw : emb;
            st = upload_matrix(m, e, none, 1, &m->out, err);
        } else if (!st) {
            m->out = m->embd;
        }
    }
    if (!st) st = upload_f32(m, onorm, &m->out_norm, err);
    for (uint32_t l = 0; l < in->n_layers && !st; l++) {
        layer_src *s = &src[l];
        llm_layer *L = &m->layers[l];
        st = upload_f32(m, s->attn_norm, &L->attn_norm, err);
        if (!st) st = upload_f32(m, s->ffn_norm, &L->ffn_norm, err);
        const pm_gguf_tensor *qkv[3] = {s->q, s->k, s->v};
        const uint32_t heads[3] = {in->n_heads, in->n_kv_heads, 0};
        if (!st && device_format(m, s->q) == device_format(m, s->k) && device_format(m, s->k) == device_format(m, s->v)) {
            L->n_qkv = 1;
            st = upload_matrix(m, qkv, heads, 3, &L->qkv[0], err);
        } else {
            L->n_qkv = 3;
            for (uint32_t i = 0; i < 3 && !st; i++) st = upload_matrix(m, &qkv[i], &heads[i], 1, &L->qkv[i], err);
        }
        const uint32_t none[2] = {0, 0};
        if (!st) st = upload_matrix(m, &s->o, none, 1, &L->o, err);
        const pm_gguf_tensor *gu[2] = {s->gate, s->up};
        if (!st && device_format(m, s->gate) == device_format(m, s->up)) {
            L->n_gu = 1;
            st = upload_matrix(m, gu, none, 2, &L->gu[0], err);
        } else {
            L->n_gu = 2;
            for (uint32_t i = 0; i < 2 && !st; i++) st = upload_matrix(m, &gu[i], none, 1, &L->gu[i], err);
        }
        if (!st) st = upload_matrix(m, &s->down, none, 1, &L->down, err);
        if (L->n_qkv > 1 || L->n_gu > 1) m->need_tmp = true;
    }
    /* The KV caches after every weight: the only DRAM written per token then
     * lies outside the weights' address range, which keeps the simulator's
     * decoded-weight cache from checking its entries on every K/V store. */
    uint64_t cache = (uint64_t)in->n_kv_heads * m->kv_ctx * in->head_dim * 2;
    for (uint32_t l = 0; l < in->n_layers && !st; l++) {
        st = pm_device_alloc(m->dev, cache, 64, &m->layers[l].kcache, err);
        if (!st) st = pm_device_alloc(m->dev, cache, 64, &m->layers[l].vcache, err);
    }
    /* The RoPE table: a per-model constant, computed once on the host. */
    float *table = NULL, *ff = NULL;
    if (!st) {
        table = malloc(tb);
        if (freqs) ff = malloc(sizeof *ff * in->head_dim / 2);
        if (!table || (freqs && !ff)) st = pm_error_set(err, PM_ERR_NOMEM, "model: out of host memory");
    }
    if (!st && freqs) st = pm_gguf_tensor_to_f32(freqs, ff, err);
    if (!st) {
        pm_rope_table(in->rope_base, in->head_dim, m->kv_ctx, ff, table);
        st = pm_device_alloc(m->dev, tb, 64, &m->rope_table, err);
        if (!st) st = pm_device_write(m->dev, m->rope_table, table, tb, err);
    }
    free(table);
    free(ff);
    free(src);
    return st;
}

/* ---- SRAM plan ---- */

static pm_status place(pm_allocator *a, uint64_t bytes, const char *what, uint64_t *addr, uint64_t sram,
                       uint32_t chunk, pm_error *err)
{
    pm_error e2 = {0};
    if (pm_allocator_alloc(a, bytes ? bytes : 64, 64, addr, &e2) == PM_OK) return PM_OK;
    return pm_error_set(err, PM_ERR_CONFIG,
                        "model: SRAM plan for %u rows: %s (%" PRIu64 " bytes) does not fit in sram.bytes = %" PRIu64
                        " (%" PRIu64 " bytes still free)",
                        chunk, what, bytes, sram, pm_allocator_largest_free(a));
}

/* Lay out engine 0's SRAM for `chunk` rows. The linear scratch ranges get
 * what is left (halved), at least min_lin each. */
static pm_status plan_sram(pm_llm *m, uint32_t chunk, uint64_t min_lin, llm_sram_plan *sp, pm_error *err)
{
    const pm_llm_info *in = &m->info;
    uint64_t S = m->cfg.sram_bytes, M = chunk, D = in->d_model, F = in->d_ff;
    memset(sp, 0, sizeof *sp);
    sp->chunk = chunk;
    pm_allocator *a = NULL;
    pm_status st = pm_allocator_create(0, S, &a, err);
    if (st) return st;
    uint64_t tmp_elems = 0;
    if (m->need_tmp) {
        tmp_elems = m->q_dim > F ? m->q_dim : F;
    }
    pm_attn_desc ad;
    memset(&ad, 0, sizeof ad);
    ad.n_heads = in->n_heads;
    ad.n_kv_heads = in->n_kv_heads;
    ad.head_dim = in->head_dim;
    ad.max_ctx = m->kv_ctx;
    ad.qkv_row_elems = m->qkv_dim;
    ad.out_fmt = PM_FMT_BF16;
    ad.scale = 1.0f / sqrtf((float)in->head_dim);
    uint64_t attn_bytes = 0, b1 = 0;
    ad.M = chunk;
    st = pm_attention_scratch_bytes(&m->cfg, &ad, &attn_bytes, err);
    ad.M = 1;
    if (!st) st = pm_attention_scratch_bytes(&m->cfg, &ad, &b1, err);
    if (st) {
        pm_allocator_destroy(a);
        return st;
    }
    if (b1 > attn_bytes) attn_bytes = b1;
    uint64_t vec = pm_topk_scratch_bytes(in->vocab, PM_LLM_TOPK_MAX);
    uint64_t vec_min = 16 * D * 4 > 65536 ? 16 * D * 4 : 65536;
    if (vec < vec_min) vec = vec_min;
    struct {
        const char *what;
        uint64_t bytes;
        uint64_t *addr;
    } regions[] = {
        {"param block (position, token ids)", 64, &sp->pos},
        {"token ids", M * 4, &sp->ids},
        {"residual stream x (f32)", M * D * 4, &sp->x},
        {"normed x (bf16)", M * D * 2, &sp->xn},
        {"q|k|v (f32)", M * m->qkv_dim * 4, &sp->qkv},
        {"attention output (bf16)", M * m->q_dim * 2, &sp->attn},
        {"projection output (f32)", M * D * 4, &sp->o},
        {"gate|up (f32)", M * 2 * F * 4, &sp->gu},
        {"swiglu output (bf16)", M * F * 2, &sp->act},
        {"unfused projection staging (f32)", M * tmp_elems * 4, &sp->tmp},
        {"zeros for row copies (f32)", tmp_elems * 4, &sp->zero},
        {"logits (f32)", (uint64_t)in->vocab * 4, &sp->logits},
        {"top-k records", PM_LLM_TOPK_MAX * 8, &sp->topk},
        {"vector scratch", vec, &sp->vec_scratch},
        {"attention scratch", attn_bytes, &sp->attn_scratch},
    };
    for (size_t i = 0; i < sizeof regions / sizeof regions[0] && !st; i++)
        st = place(a, regions[i].bytes, regions[i].what, regions[i].addr, S, chunk, err);
    sp->vec_bytes = vec;
    sp->attn_bytes = attn_bytes;
    if (!st) {
        uint64_t lin = (pm_allocator_largest_free(a) / 2) & ~(uint64_t)63;
        if (lin > ((uint64_t)8 << 20)) lin = (uint64_t)8 << 20;
        if (lin < min_lin)
            st = pm_error_set(err, PM_ERR_CONFIG,
                              "model: SRAM plan for %u rows: two linear scratch ranges of %" PRIu64
                              " bytes do not fit in sram.bytes = %" PRIu64 " (%" PRIu64 " bytes left)",
                              chunk, min_lin, S, pm_allocator_largest_free(a));
        sp->lin_bytes = lin;
        if (!st) st = place(a, lin, "linear scratch A", &sp->lin_scratch[0], S, chunk, err);
        if (!st) st = place(a, lin, "linear scratch B", &sp->lin_scratch[1], S, chunk, err);
    }
    sp->used = pm_allocator_used_bytes(a);
    pm_allocator_destroy(a);
    return st;
}

/* The largest power-of-two chunk (<= 64) whose plan leaves each linear at
 * least an eighth of the SRAM (so weight tiles stay large); 1 row must fit. */
static pm_status choose_plan(pm_llm *m, pm_error *err)
{
    uint64_t min_lin = m->cfg.sram_bytes / 8;
    if (min_lin < 16384) min_lin = 16384;
    uint32_t want = m->opts.prefill_chunk;
    if (want) return plan_sram(m, want, min_lin / 4, &m->sp, err);
    for (uint32_t c = 64; c > 1; c /= 2)
        if (plan_sram(m, c, min_lin, &m->sp, NULL) == PM_OK) return PM_OK;
    return plan_sram(m, 1, min_lin / 4, &m->sp, err);
}

/* ---- programs ---- */

static void linear_desc(const pm_llm *m, const llm_matrix *w, uint32_t M, uint64_t x, uint64_t y, int slot,
                        pm_format y_fmt, pm_linear_desc *d)
{
    memset(d, 0, sizeof *d);
    d->M = M;
    d->N = w->N;
    d->K = w->K;
    d->w_fmt = w->fmt;
    d->w_dram = w->dram;
    d->x_sram = x;
    d->y_sram = y;
    d->y_fmt = y_fmt;
    d->scratch_sram = m->sp.lin_scratch[slot];
    d->scratch_bytes = m->sp.lin_bytes;
}

/* Y rows of row_elems f32 at dst from n matrices side by side. A single
 * matrix writes directly; several write row 0 directly when M == 1, else go
 * through tmp and are copied row by row (x + 0 is x exactly). The first
 * matrix's weights were prefetched into `slot`. */
static pm_status emit_projection(pm_llm *m, pm_builder *b, const llm_matrix *w, uint32_t n, uint32_t M, uint64_t x,
                                 uint64_t dst, uint32_t row_elems, int slot, bool prefetched, pm_error *err)
{
    uint64_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        bool direct = n == 1 || M == 1;
        pm_linear_desc d;
        linear_desc(m, &w[i], M, x, direct ? dst + off * 4 : m->sp.tmp, slot, PM_FMT_F32, &d);
        d.prefetched = prefetched && i == 0;
        pm_status st = pm_emit_linear(b, &m->cfg, &d, err);
        if (st) return st;
        if (!direct)
            for (uint32_t r = 0; r < M && !st; r++)
                st = pm_emit_add(b, &m->cfg, w[i].N, m->sp.tmp + (uint64_t)r * w[i].N * 4, m->sp.zero,
                                 dst + ((uint64_t)r * row_elems + off) * 4, err);
        if (st) return st;
        off += w[i].N;
    }
    return PM_OK;
}

/* The first linear of emit_projection(w, n, ..., dst), its desc exactly;
 * nothing when `which` is not in the runner's prefetch mask. */
static pm_status prefetch(pm_llm *m, pm_builder *b, unsigned which, const llm_matrix *w, uint32_t n, uint32_t M,
                          uint64_t x, uint64_t dst, int slot, pm_error *err)
{
    if (!(m->prefetch_mask & which)) return PM_OK;
    pm_linear_desc d;
    linear_desc(m, w, M, x, (n == 1 || M == 1) ? dst : m->sp.tmp, slot, PM_FMT_F32, &d);
    return pm_emit_linear_prefetch(b, &m->cfg, &d, err);
}

static pm_status emit_layer(pm_llm *m, pm_builder *b, uint32_t l, uint32_t M, pm_error *err)
{
    const pm_llm_info *in = &m->info;
    const llm_layer *L = &m->layers[l];
    const llm_sram_plan *sp = &m->sp;
    const pm_config *cfg = &m->cfg;
    uint32_t D = in->d_model, F = in->d_ff;
    pm_status st = prefetch(m, b, PF_QKV, &L->qkv[0], L->n_qkv, M, sp->xn, sp->qkv, 0, err);
    if (!st) st = pm_emit_rmsnorm(b, cfg, M, D, sp->x, L->attn_norm, in->norm_eps, sp->xn, PM_FMT_BF16, sp->vec_scratch,
                                  sp->vec_bytes, err);
    if (!st) st = emit_projection(m, b, L->qkv, L->n_qkv, M, sp->xn, sp->qkv, m->qkv_dim, 0, m->prefetch_mask & PF_QKV, err);
    if (!st) st = prefetch(m, b, PF_O, &L->o, 1, M, sp->attn, sp->o, 1, err);
    /* q and k heads are contiguous in the row: one rotation covers both. */
    if (!st) st = pm_emit_rope(b, cfg, M, in->n_heads + in->n_kv_heads, in->head_dim, sp->qkv, m->qkv_dim, sp->pos,
                               m->rope_table, m->kv_ctx, sp->vec_scratch, sp->vec_bytes, err);
    if (!st) {
        pm_attn_desc ad = {
            .M = M,
            .n_heads = in->n_heads,
            .n_kv_heads = in->n_kv_heads,
            .head_dim = in->head_dim,
            .max_ctx = m->kv_ctx,
            .qkv_sram = sp->qkv,
            .qkv_row_elems = m->qkv_dim,
            .kcache_dram = L->kcache,
            .vcache_dram = L->vcache,
            .pos_sram = sp->pos,
            .out_sram = sp->attn,
            .out_fmt = PM_FMT_BF16,
            .scale = 1.0f / sqrtf((float)in->head_dim),
            .scratch_sram = sp->attn_scratch,
            .scratch_bytes = sp->attn_bytes,
        };
        st = pm_emit_attention(b, cfg, &ad, err);
    }
    if (!st) st = emit_projection(m, b, &L->o, 1, M, sp->attn, sp->o, D, 1, m->prefetch_mask & PF_O, err);
    if (!st) st = pm_emit_add(b, cfg, (uint64_t)M * D, sp->x, sp->o, sp->x, err);
    if (!st) st = prefetch(m, b, PF_GU, &L->gu[0], L->n_gu, M, sp->xn, sp->gu, 0, err);
    if (!st) st = pm_emit_rmsnorm(b, cfg, M, D, sp->x, L->ffn_norm, in->norm_eps, sp->xn, PM_FMT_BF16, sp->vec_scratch,
                                  sp->vec_bytes, err);
    if (!st) st = emit_projection(m, b, L->gu, L->n_gu, M, sp->xn, sp->gu, 2 * F, 0, m->prefetch_mask & PF_GU, err);
    if (!st) st = prefetch(m, b, PF_DOWN, &L->down, 1, M, sp->act, sp->o, 1, err);
    if (!st) st = pm_emit_swiglu(b, cfg, M, F, sp->gu, sp->act, PM_FMT_BF16, sp->vec_scratch, sp->vec_bytes, err);
    if (!st) st = emit_projection(m, b, &L->down, 1, M, sp->act, sp->o, D, 1, m->prefetch_mask & PF_DOWN, err);
    if (!st) st = pm_emit_add(b, cfg, (uint64_t)M * D, sp->x, sp->o, sp->x, err);
    if (st) pm_error_prefix(err, "model: layer %u (%u rows): ", l, M);
    return st;
}

static pm_status finish_program(pm_builder *b, pm_program *out, pm_error *err)
{
    pm_builder_emit(b, PM_OP_HALT, 0, 0, 0, 0, 0, 0);
    pm_program_init(out);
    pm_status st = pm_builder_finish(b, out, err);
    pm_builder_destroy(b);
    return st;
}

/* Layers [first, first + count) for M rows in one program; the embedding
 * gather opens the program holding layer 0. */
static pm_status build_group(pm_llm *m, uint32_t first, uint32_t count, uint32_t M, pm_program *out, pm_error *err)
{
    pm_builder *b = NULL;
    pm_status st = pm_builder_create(&b, err);
    if (st) return st;
    pm_emit_llm_prologue(b);
    if (first == 0)
        st = pm_emit_embed(b, &m->cfg, M, m->info.d_model, m->embd.fmt, m->embd.dram, m->info.vocab, m->sp.ids, m->sp.x,
                           m->sp.vec_scratch, m->sp.vec_bytes, err);
    if (st) pm_error_prefix(err, "model: embedding: ");
    for (uint32_t l = first; l < first + count && !st; l++) st = emit_layer(m, b, l, M, err);
    if (st) {
        pm_builder_destroy(b);
        return st;
    }
    return finish_program(b, out, err);
}

/* As many layers per program as the instruction memory holds: fewer
 * programs means fewer loads and weights prefetched across layer ends. */
static pm_status build_pass(pm_llm *m, uint32_t M, llm_pass *pass, pm_error *err)
{
    uint32_t L = m->info.n_layers, imem = m->cfg.imem_words;
    pass->M = M;
    pass->count = 0;
    pass->progs = calloc(L, sizeof *pass->progs);
    if (!pass->progs) return pm_error_set(err, PM_ERR_NOMEM, "model: out of host memory");
    uint32_t g = L;
    for (uint32_t start = 0; start < L;) {
        if (g > L - start) g = L - start;
        pm_program p;
        pm_status st = build_group(m, start, g, M, &p, err);
        if (st) return st;
        if (p.code_count > imem) {
            size_t words = p.code_count;
            pm_program_free(&p);
            if (g == 1)
                return pm_error_set(err, PM_ERR_CONFIG,
                                    "model: layer %u for %u rows needs %zu instructions; control.imem_words is %u",
                                    start, M, words, imem);
            uint32_t shrink = (uint32_t)((uint64_t)g * imem / words);
            g = shrink >= g ? g - 1 : shrink ? shrink : 1;
            continue;
        }
        pass->progs[pass->count++] = p;
        start += g;
    }
    return PM_OK;
}

static void free_pass(llm_pass *pass)
{
    for (uint32_t i = 0; i < pass->count; i++) pm_program_free(&pass->progs[i]);
    free(pass->progs);
    memset(pass, 0, sizeof *pass);
}

/* Final norm of row `row` and the output projection to f32 logits. */
static pm_status build_head(pm_llm *m, uint32_t row, pm_program *out, pm_error *err)
{
    const llm_sram_plan *sp = &m->sp;
    pm_builder *b = NULL;
    pm_status st = pm_builder_create(&b, err);
    if (st) return st;
    pm_emit_llm_prologue(b);
    uint32_t D = m->info.d_model;
    st = prefetch(m, b, PF_HEAD, &m->out, 1, 1, sp->xn, sp->logits, 0, err);
    if (!st) st = pm_emit_rmsnorm(b, &m->cfg, 1, D, sp->x + (uint64_t)row * D * 4, m->out_norm, m->info.norm_eps, sp->xn,
                                  PM_FMT_BF16, sp->vec_scratch, sp->vec_bytes, err);
    if (!st) {
        pm_linear_desc d;
        linear_desc(m, &m->out, 1, sp->xn, sp->logits, 0, PM_FMT_F32, &d);
        d.prefetched = (m->prefetch_mask & PF_HEAD) != 0;
        st = pm_emit_linear(b, &m->cfg, &d, err);
    }
    if (st) {
        pm_error_prefix(err, "model: head: ");
        pm_builder_destroy(b);
        return st;
    }
    return finish_program(b, out, err);
}

/* Device top-k over the logits, a program of its own: it stores its records
 * with `sw`, and the simulator's decoded-weight cache sits out any program
 * that does, which would re-decode the whole output matrix every token. */
static pm_status build_topk(pm_llm *m, pm_program *out, pm_error *err)
{
    pm_builder *b = NULL;
    pm_status st = pm_builder_create(&b, err);
    if (st) return st;
    st = pm_emit_topk(b, &m->cfg, m->info.vocab, m->sp.logits, m->topk, m->sp.topk, m->sp.vec_scratch,
                      m->sp.vec_bytes, err);
    if (st) {
        pm_error_prefix(err, "model: top-k: ");
        pm_builder_destroy(b);
        return st;
    }
    return finish_program(b, out, err);
}

static void free_heads(pm_llm *m)
{
    if (!m->heads) return;
    for (uint32_t i = 0; i < m->sp.chunk; i++) pm_program_free(&m->heads[i]);
}

/* Head for row `row`, built on first use (a prefill's last valid row may be
 * any row of the chunk). */
static pm_status head_program(pm_llm *m, uint32_t row, const pm_program **out, pm_error *err)
{
    pm_program *p = &m->heads[row];
    if (!p->code_count) {
        pm_status st = build_head(m, row, p, err);
        if (st) return st;
    }
    *out = p;
    return PM_OK;
}

/* ---- open / close ---- */

pm_status pm_llm_open(const pm_config *cfg, const char *gguf_path, const pm_llm_options *opts, pm_llm **out,
                      pm_error *err)
{
    *out = NULL;
    if (!cfg || !gguf_path) return pm_error_set(err, PM_ERR_INVALID, "model: no config or model path given");
    pm_status st = pm_llm_kernels_check(cfg, err);
    if (st) return st;
    pm_llm *m = calloc(1, sizeof *m);
    if (!m) return pm_error_set(err, PM_ERR_NOMEM, "model: out of host memory");
    m->cfg = *cfg;
    if (opts) m->opts = *opts;
    else pm_llm_options_init(&m->opts);
    m->topk = 40;
    /* Measured on edge, SmolLM2, 12 teacher-forced tokens: decode at 0.936
     * of the roofline with all five prefetches, 0.955 with O and down only,
     * 0.962 with none; prefill 9.09 vs 9.04 ms. The DMA-load unit is in
     * order, so a prefetch makes the vector work between (RMSNorm weights,
     * attention's K/V) wait behind two weight tiles (docs/llm-kernels.md,
     * "Prefetch"); two linears on alternating scratch ranges already stream
     * back to back. So none, until the kernels change that. */
    m->prefetch_mask = 0;
    st = pm_gguf_open(gguf_path, &m->gguf, err);
    if (!st) st = read_graph(m->gguf, &m->info, err);
    if (st) goto fail;
    pm_llm_info *in = &m->info;
    if (!m->opts.wfmt_native && !pm_format_get(m->opts.wfmt)) {
        st = pm_error_set(err, PM_ERR_INVALID, "model: weight format %d is not a format", (int)m->opts.wfmt);
        goto fail;
    }
    m->q_dim = in->n_heads * in->head_dim;
    m->kv_dim = in->n_kv_heads * in->head_dim;
    m->qkv_dim = m->q_dim + 2 * m->kv_dim;
    m->max_ctx = m->opts.max_ctx ? m->opts.max_ctx : (in->ctx_train < 2048 ? in->ctx_train : 2048);
    if (m->max_ctx == 0) {
        st = pm_error_set(err, PM_ERR_INVALID, "model: context length 0");
        goto fail;
    }
    /* Every tensor's presence and shape first: a malformed graph is named
     * before anything else is built. */
    st = check_tensors(m->gguf, in, err);
    if (st) goto fail;
    st = pm_tokenizer_from_gguf(m->gguf, &m->tok, err);
    if (st) goto fail;
    if (pm_tokenizer_vocab_size(m->tok) > in->vocab) {
        st = pm_error_set(err, PM_ERR_FORMAT, "model: the tokenizer has %u tokens but token_embd.weight only %u rows",
                          pm_tokenizer_vocab_size(m->tok), in->vocab);
        goto fail;
    }
    /* The SRAM plan depends on fusion, known from the formats before the
     * upload; kv_ctx on the chunk. A first plan with the largest chunk fixes
     * kv_ctx, then the upload. */
    for (uint32_t l = 0; l < in->n_layers; l++) {
        char nq[64], nk[64], nv[64], ng[64], nu[64];
        snprintf(nq, sizeof nq, "blk.%u.attn_q.weight", l);
        snprintf(nk, sizeof nk, "blk.%u.attn_k.weight", l);
        snprintf(nv, sizeof nv, "blk.%u.attn_v.weight", l);
        snprintf(ng, sizeof ng, "blk.%u.ffn_gate.weight", l);
        snprintf(nu, sizeof nu, "blk.%u.ffn_up.weight", l);
        const pm_gguf_tensor *q = pm_gguf_tensor_find(m->gguf, nq), *k = pm_gguf_tensor_find(m->gguf, nk),
                             *v = pm_gguf_tensor_find(m->gguf, nv), *gt = pm_gguf_tensor_find(m->gguf, ng),
                             *up = pm_gguf_tensor_find(m->gguf, nu);
        if (q && k && v && (device_format(m, q) != device_format(m, k) || device_format(m, k) != device_format(m, v)))
            m->need_tmp = true;
        if (gt && up && device_format(m, gt) != device_format(m, up)) m->need_tmp = true;
    }
    m->kv_ctx = m->max_ctx + 64; /* provisional for the attention scratch query */
    st = choose_plan(m, err);
    if (st) goto fail;
    m->kv_ctx = m->max_ctx + m->sp.chunk;
    st = plan_sram(m, m->sp.chunk, 0, &m->sp, err); /* same chunk, exact cache length */
    if (st) goto fail;
    st = pm_device_open(cfg, &m->dev, err);
    if (st) goto fail;
    pm_device_set_threads(m->dev, m->opts.threads);
    st = upload_all(m, err);
    if (st) goto fail;
    m->heads = calloc(m->sp.chunk, sizeof *m->heads);
    if (!m->heads) {
        st = pm_error_set(err, PM_ERR_NOMEM, "model: out of host memory");
        goto fail;
    }
    st = build_pass(m, 1, &m->decode, err);
    if (!st && m->sp.chunk > 1) st = build_pass(m, m->sp.chunk, &m->prefill, err);
    const pm_program *h;
    if (!st) st = head_program(m, 0, &h, err);
    if (!st) st = build_topk(m, &m->topk_prog, err);
    if (st) goto fail;
    *out = m;
    return PM_OK;
fail:
    pm_llm_close(m);
    return st;
}

void pm_llm_close(pm_llm *m)
{
    if (!m) return;
    free_pass(&m->decode);
    free_pass(&m->prefill);
    free_heads(m);
    free(m->heads);
    pm_program_free(&m->topk_prog);
    free(m->layers);
    free(m->trace_path);
    pm_device_close(m->dev);
    pm_tokenizer_destroy(m->tok);
    pm_gguf_close(m->gguf);
    free(m);
}

const pm_llm_info *pm_llm_get_info(const pm_llm *m) { return &m->info; }
const pm_tokenizer *pm_llm_tokenizer(const pm_llm *m) { return m->tok; }
const pm_gguf *pm_llm_gguf(const pm_llm *m) { return m->gguf; }
pm_device *pm_llm_device(pm_llm *m) { return m->dev; }

void pm_llm_reset(pm_llm *m)
{
    m->pos = 0;
    m->have_logits = false;
}

uint32_t pm_llm_position(const pm_llm *m) { return m->pos; }

uint32_t pm_llm_max_ctx(const pm_llm *m) { return m->max_ctx; }
uint32_t pm_llm_prefill_chunk(const pm_llm *m) { return m->sp.chunk; }
uint32_t pm_llm_program_count(const pm_llm *m, bool prefill) { return prefill ? m->prefill.count : m->decode.count; }

pm_status pm_llm_set_trace(pm_llm *m, const char *path, pm_error *err)
{
    free(m->trace_path);
    m->trace_path = NULL;
    if (!path) return PM_OK;
    m->trace_path = malloc(strlen(path) + 1);
    if (!m->trace_path) return pm_error_set(err, PM_ERR_NOMEM, "model: out of host memory");
    strcpy(m->trace_path, path);
    return PM_OK;
}

void pm_llm_host_times(const pm_llm *m, double *load_s, double *run_s, double *io_s)
{
    *load_s = m->wall_load;
    *run_s = m->wall_run;
    *io_s = m->wall_io;
}

/* ---- running ---- */

static pm_status run_program(pm_llm *m, const pm_program *p, const char *trace, pm_error *err)
{
    double t0 = now_s();
    pm_status st = pm_device_load(m->dev, p, 1, err);
    double t1 = now_s();
    if (!st) {
        pm_run_options ro = {0, trace};
        st = pm_device_run(m->dev, &ro, err);
    }
    double t2 = now_s();
    m->wall_load += t1 - t0;
    m->wall_run += t2 - t1;
    return st;
}

static pm_status write_params(pm_llm *m, uint32_t pos0, const int32_t *ids, uint32_t n, uint32_t rows, pm_error *err)
{
    double t0 = now_s();
    int32_t buf[64];
    pm_status st = pm_device_sram_write(m->dev, 0, m->sp.pos, &pos0, 4, err);
    for (uint32_t at = 0; at < rows && !st; at += 64) {
        uint32_t k = rows - at < 64 ? rows - at : 64;
        for (uint32_t i = 0; i < k; i++) buf[i] = ids[at + i < n ? at + i : n - 1]; /* padding repeats the last id */
        st = pm_device_sram_write(m->dev, 0, m->sp.ids + (uint64_t)at * 4, buf, (size_t)k * 4, err);
    }
    m->wall_io += now_s() - t0;
    return st;
}

/* Host seconds spent in simulator calls so far (loads, runs, param-block
 * writes): the phases' wall time, which leaves out building a head program
 * on first use. */
static double sim_wall(const pm_llm *m) { return m->wall_load + m->wall_run + m->wall_io; }

static void add_phase(pm_llm *m, int phase, const pm_counters *c0, const pm_counters *c1, double wall, uint64_t tokens)
{
    pm_llm_phase_stats *s = &m->st[phase];
    s->tokens += tokens;
    s->cycles += c1->cycles - c0->cycles;
    s->seconds_sim += c1->seconds - c0->seconds;
    s->seconds_wall += wall;
    s->energy_j += c1->energy_j - c0->energy_j;
    s->dram_bytes += (c1->dram_read_bytes - c0->dram_read_bytes) + (c1->dram_write_bytes - c0->dram_write_bytes);
    for (int u = 0; u < PM_UNIT_COUNT && u < 8; u++)
        s->unit_busy[u] += (double)(c1->unit[u].busy_cycles - c0->unit[u].busy_cycles);
}

static pm_status check_ids(const pm_llm *m, const int32_t *ids, size_t n, pm_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= m->info.vocab)
            return pm_error_set(err, PM_ERR_INVALID, "model: token %zu is id %d, outside the vocabulary (0..%u)", i,
                                ids[i], m->info.vocab - 1);
    return PM_OK;
}

/* One pass (all layer programs) over `rows` valid rows at the current
 * position, then the head on the last valid row. */
static pm_status run_pass(pm_llm *m, const llm_pass *pass, const int32_t *ids, uint32_t rows, bool head,
                          const char *trace, pm_error *err)
{
    pm_status st = write_params(m, m->pos, ids, rows, pass->M, err);
    char *name = NULL;
    if (trace) {
        name = malloc(strlen(trace) + 16);
        if (!name) return pm_error_set(err, PM_ERR_NOMEM, "model: out of host memory");
    }
    for (uint32_t i = 0; i < pass->count && !st; i++) {
        if (name) {
            if (i == 0) strcpy(name, trace);
            else sprintf(name, "%s.%u", trace, i);
        }
        st = run_program(m, &pass->progs[i], name, err);
    }
    if (!st && head) {
        const pm_program *h;
        st = head_program(m, rows - 1, &h, err);
        if (!st) {
            if (name) sprintf(name, "%s.%u", trace, pass->count);
            st = run_program(m, h, name, err);
        }
        if (!st) {
            if (name) sprintf(name, "%s.%u", trace, pass->count + 1);
            st = run_program(m, &m->topk_prog, name, err);
        }
    }
    free(name);
    if (st) pm_error_prefix(err, "model: position %u: ", m->pos);
    return st;
}

pm_status pm_llm_prefill(pm_llm *m, const int32_t *tokens, size_t n, pm_error *err)
{
    if (n == 0) return pm_error_set(err, PM_ERR_INVALID, "model: prefill of 0 tokens");
    pm_status st = check_ids(m, tokens, n, err);
    if (st) return st;
    if (n > m->max_ctx - m->pos)
        return pm_error_set(err, PM_ERR_INVALID, "model: %zu tokens at position %u exceed the context of %u", n, m->pos,
                            m->max_ctx);
    pm_counters c0, c1;
    pm_device_counters(m->dev, &c0);
    double t0 = sim_wall(m);
    m->have_logits = false;
    for (size_t done = 0; done < n && !st;) {
        size_t left = n - done;
        /* A lone token (or a chip planned for one row) runs the decode programs. */
        const llm_pass *pass = (left == 1 || m->prefill.count == 0) ? &m->decode : &m->prefill;
        uint32_t rows = (uint32_t)(left < pass->M ? left : pass->M);
        st = run_pass(m, pass, tokens + done, rows, done + rows == n, NULL, err);
        if (!st) {
            m->pos += rows;
            done += rows;
        }
    }
    double t1 = sim_wall(m);
    pm_device_counters(m->dev, &c1);
    add_phase(m, PHASE_PREFILL, &c0, &c1, t1 - t0, n);
    if (!st) m->have_logits = true;
    return st;
}

pm_status pm_llm_decode(pm_llm *m, int32_t token, pm_error *err)
{
    pm_status st = check_ids(m, &token, 1, err);
    if (st) return st;
    if (m->pos >= m->max_ctx)
        return pm_error_set(err, PM_ERR_INVALID, "model: the context of %u positions is full", m->max_ctx);
    pm_counters c0, c1;
    pm_device_counters(m->dev, &c0);
    double t0 = sim_wall(m);
    m->have_logits = false;
    st = run_pass(m, &m->decode, &token, 1, true, m->trace_path, err);
    double t1 = sim_wall(m);
    pm_device_counters(m->dev, &c1);
    add_phase(m, PHASE_DECODE, &c0, &c1, t1 - t0, 1);
    free(m->trace_path);
    m->trace_path = NULL;
    if (st) return st;
    m->pos++;
    m->have_logits = true;
    return PM_OK;
}

pm_status pm_llm_logits(pm_llm *m, float *out, pm_error *err)
{
    if (!m->have_logits) return pm_error_set(err, PM_ERR_INVALID, "model: no logits yet (run prefill or decode)");
    return pm_device_sram_read(m->dev, 0, m->sp.logits, out, (size_t)m->info.vocab * 4, err);
}

pm_status pm_llm_topk(pm_llm *m, uint32_t k, int32_t *ids, float *vals, pm_error *err)
{
    if (!m->have_logits) return pm_error_set(err, PM_ERR_INVALID, "model: no top-k yet (run prefill or decode)");
    if (k == 0 || k > m->topk)
        return pm_error_set(err, PM_ERR_INVALID, "model: top-k %u asked, the device computes %u (pm_llm_set_topk)", k,
                            m->topk);
    uint8_t rec[PM_LLM_TOPK_MAX * 8];
    pm_status st = pm_device_sram_read(m->dev, 0, m->sp.topk, rec, (size_t)k * 8, err);
    if (st) return st;
    for (uint32_t i = 0; i < k; i++) {
        memcpy(&ids[i], rec + 8 * i, 4);
        memcpy(&vals[i], rec + 8 * i + 4, 4);
    }
    return PM_OK;
}

pm_status pm_llm_set_topk(pm_llm *m, uint32_t k, pm_error *err)
{
    if (k == 0 || k > PM_LLM_TOPK_MAX || k > m->info.vocab)
        return pm_error_set(err, PM_ERR_INVALID, "model: top-k %u outside 1..%u", k,
                            m->info.vocab < PM_LLM_TOPK_MAX ? m->info.vocab : PM_LLM_TOPK_MAX);
    if (k == m->topk) return PM_OK;
    uint32_t old = m->topk;
    m->topk = k;
    pm_program p;
    pm_status st = build_topk(m, &p, err);
    if (st) {
        m->topk = old;
        return st;
    }
    pm_program_free(&m->topk_prog);
    m->topk_prog = p;
    m->have_logits = false; /* the records in SRAM are for the old k */
    return PM_OK;
}

void pm_llm_stats(const pm_llm *m, pm_llm_phase_stats *prefill, pm_llm_phase_stats *decode)
{
    if (prefill) *prefill = m->st[PHASE_PREFILL];
    if (decode) *decode = m->st[PHASE_DECODE];
}

static uint64_t row_bytes(const llm_matrix *w)
{
    return w->N ? w->bytes / w->N : 0;
}

uint64_t pm_llm_decode_min_bytes(const pm_llm *m, uint32_t pos)
{
    const pm_llm_info *in = &m->info;
    uint64_t b = m->out.bytes + row_bytes(&m->embd) + (uint64_t)in->d_model * 4;
    for (uint32_t l = 0; l < in->n_layers; l++) {
        const llm_layer *L = &m->layers[l];
        for (uint32_t i = 0; i < L->n_qkv; i++) b += L->qkv[i].bytes;
        for (uint32_t i = 0; i < L->n_gu; i++) b += L->gu[i].bytes;
        b += L->o.bytes + L->down.bytes + 2 * (uint64_t)in->d_model * 4;
    }
    /* K and V of positions 0..pos, bf16, every layer. */
    b += (uint64_t)in->n_layers * 2 * m->kv_dim * 2 * ((uint64_t)pos + 1);
    return b;
}
