/* The matmul descriptor's rules and its plain C reference: weights decoded to
 * fp32 and rounded to bf16, one fmaf chain per output from +0 in k order,
 * then scale, bias, the built-in LFU table and the output format's rounding,
 * exactly as docs/tensor.md defines the engine's datapath. */
#include "kernels_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void pm_matmul_desc_init(pm_matmul_desc *d, uint32_t M, uint32_t N, uint32_t K, pm_format w_fmt, pm_format out_fmt)
{
    memset(d, 0, sizeof *d);
    d->M = M, d->N = N, d->K = K;
    d->batch = 1;
    d->w_fmt = w_fmt;
    d->out_fmt = out_fmt;
    d->scale = 1.0f;
    d->act = PM_LFU_SILU;
    d->engines = 1;
    d->dataflow = PM_DATAFLOW_OUTPUT_STATIONARY;
    d->dataflow_from_config = true;
}

pm_status pm_matmul_check(const pm_matmul_desc *d, uint64_t *x_bytes, uint64_t *w_bytes, uint64_t *y_bytes,
                          pm_error *err)
{
    if (!d) return pm_error_set(err, PM_ERR_INVALID, "matmul: no descriptor");
    if (d->M == 0 || d->N == 0 || d->K == 0)
        return pm_error_set(err, PM_ERR_INVALID, "matmul: shape M=%u N=%u K=%u has a zero dimension", d->M, d->N,
                            d->K);
    if (d->batch == 0) return pm_error_set(err, PM_ERR_INVALID, "matmul: batch is 0 (use 1 for a plain matmul)");
    const pm_format_info *wi = pm_format_get(d->w_fmt), *yi = pm_format_get(d->out_fmt);
    if (!wi) return pm_error_set(err, PM_ERR_INVALID, "matmul: w_fmt %d is not a format", (int)d->w_fmt);
    if (!yi) return pm_error_set(err, PM_ERR_INVALID, "matmul: out_fmt %d is not a format", (int)d->out_fmt);
    size_t row_bytes;
    /* Every weight row must start on a block (and on a byte), because the
     * kernels cut the weight tensor into rows and K chunks. */
    if (!pm_format_bytes(d->w_fmt, d->K, &row_bytes))
        return pm_error_set(err, PM_ERR_INVALID, "matmul: K=%u is not a whole number of %s storage units (%u elements)",
                            d->K, wi->name, wi->block_elems > 1 ? wi->block_elems : 2);
    if (yi->header_bytes)
        return pm_error_set(err, PM_ERR_UNSUPPORTED,
                            "matmul: out_fmt %s has a per-tensor header; the engine writes outputs tile by tile",
                            yi->name);
    size_t yrow;
    if (!pm_format_bytes(d->out_fmt, d->N, &yrow))
        return pm_error_set(err, PM_ERR_INVALID,
                            "matmul: N=%u is not a whole number of out_fmt %s storage units (%u elements)", d->N,
                            yi->name, yi->block_elems > 1 ? yi->block_elems : 2);
    if (d->has_act && (unsigned)d->act >= PM_LFU_FUNC_COUNT)
        return pm_error_set(err, PM_ERR_INVALID, "matmul: act %d is not a built-in LFU function", (int)d->act);
    /* Products below 2^48 bytes keep every DRAM address computation exact. */
    size_t all_w;
    if (!pm_format_bytes(d->w_fmt, (size_t)d->N * d->K, &all_w))
        return pm_error_set(err, PM_ERR_INVALID, "matmul: N*K is not a whole number of %s storage units", wi->name);
    uint64_t xb = (uint64_t)d->M * d->K * 2, wb = all_w, yb = (uint64_t)yrow * d->M;
    if (xb >> 47 || wb >> 47 || yb >> 47)
        return pm_error_set(err, PM_ERR_INVALID, "matmul: shape M=%u N=%u K=%u is too large", d->M, d->N, d->K);
    if (x_bytes) *x_bytes = xb;
    if (w_bytes) *w_bytes = wb;
    if (y_bytes) *y_bytes = yb;
    return PM_OK;
}

pm_status pm_matmul_sizes(const pm_matmul_desc *d, uint64_t *x_bytes, uint64_t *w_bytes, uint64_t *y_bytes,
                          pm_error *err)
{
    return pm_matmul_check(d, x_bytes, w_bytes, y_bytes, err);
}

pm_status pm_ref_matmul(const pm_matmul_desc *d, const uint16_t *x, const void *w, const float *bias, void *y,
                        pm_error *err)
{
    uint64_t xb, wb, yb;
    pm_status st = pm_matmul_check(d, &xb, &wb, &yb, err);
    if (st) return st;
    if (!x || !w || !y || (d->has_bias && !bias))
        return pm_error_set(err, PM_ERR_INVALID, "ref matmul: missing x, w, y or bias buffer");
    size_t M = d->M, N = d->N, K = d->K;
    float *wf = malloc(N * K * sizeof *wf), *acc = malloc(M * N * sizeof *acc), *xf = malloc(M * K * sizeof *xf);
    pm_lfu_table table;
    memset(&table, 0, sizeof table);
    bool have_table = false;
    if (!wf || !acc || !xf) {
        st = pm_error_set(err, PM_ERR_NOMEM, "ref matmul: out of memory for M=%zu N=%zu K=%zu", M, N, K);
        goto done;
    }
    if (d->has_act) {
        if ((st = pm_lfu_builtin(d->act, &table, err))) goto done;
        have_table = true;
    }
    for (uint32_t b = 0; b < d->batch; b++) {
        const uint16_t *xa = x + (size_t)b * M * K;
        const uint8_t *wa = (const uint8_t *)w + (size_t)b * wb;
        uint8_t *ya = (uint8_t *)y + (size_t)b * yb;
        if ((st = pm_format_decode(d->w_fmt, wa, N * K, wf, err))) goto done;
        /* Weights enter the array as bf16 (docs/tensor.md). */
        for (size_t i = 0; i < N * K; i++) wf[i] = pm_bf16_to_f32(pm_f32_to_bf16(wf[i]));
        for (size_t i = 0; i < M * K; i++) xf[i] = pm_bf16_to_f32(xa[i]);
        for (size_t m = 0; m < M; m++)
            for (size_t n = 0; n < N; n++) {
                const float *ar = xf + m * K, *br = wf + n * K;
                float c = 0.0f;
                for (size_t k = 0; k < K; k++) c = fmaf(ar[k], br[k], c);
                if (d->has_scale) c = c * d->scale;
                if (d->has_bias) c = c + bias[n];
                if (d->has_act) c = pm_lfu_eval(&table, c);
                acc[m * N + n] = c;
            }
        if ((st = pm_format_encode(d->out_fmt, acc, M * N, ya, err))) goto done;
    }
done:
    if (have_table) pm_lfu_table_free(&table);
    free(wf);
    free(acc);
    free(xf);
    return st;
}
