/* LFU fabric bodies: `fab.cfg` maps a serialized KAN network (PMFN) onto the
 * fabric, one resident table per edge; `fab.run` streams samples through it.
 * Data is read from SRAM once, flows through LFUs and the adder chains, and
 * is written once; the sums run in the host inference order (docs/fabric.md). */
#include "sim_internal.h"

#include <stdlib.h>
#include <string.h>

/* Layer buffers hold at most this many values per block of samples. */
#define FABRIC_BLOCK_VALUES ((uint64_t)1 << 18)

struct pm_fabric {
    pm_fabric_net net;
    uint64_t edges;
    uint32_t max_width;
    uint64_t fold;    /* passes per sample: ceil(edges / fabric.lfus) */
    uint64_t latency; /* first sample in to last output out */
};

void pm_fabric_free(struct pm_fabric *f)
{
    if (!f) return;
    pm_fabric_net_free(&f->net);
    free(f);
}

/* Each layer: an LFU pass, then the chain of widths[l] - 1 adds that keeps
 * the ascending input order (a tree would reorder the fp32 sum). */
static uint64_t network_latency(const pm_config *cfg, const pm_fabric_net *net)
{
    uint64_t cycles = 0;
    for (uint32_t l = 0; l < net->layers; l++)
        cycles += cfg->lfu_latency_cycles + (uint64_t)(net->widths[l] - 1) * cfg->fabric_adder_latency_cycles;
    return cycles;
}

static pm_status need_fabric(const pm_engine *e, pm_error *err)
{
    if (e->cfg->fabric_lfus == 0)
        return pm_sim_fault(err, "this config has no LFU fabric (fabric.lfus = 0; see the lfu-rev presets)");
    return PM_OK;
}

/* fab.cfg r: the PMFN network at SRAM[r] */
pm_status pm_exec_FABCFG(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    pm_status st = need_fabric(e, err);
    if (st) return st;
    unsigned reg = (unsigned)in->op[0] & 31;
    int64_t addr = e->regs[reg];
    uint64_t size = e->cfg->sram_bytes;
    if (addr < 0 || (uint64_t)addr >= size)
        return pm_sim_fault(err, "fabric network address 0x%llx (r%u) is outside SRAM (0x%llx bytes)",
                            (unsigned long long)addr, reg, (unsigned long long)size);
    struct pm_fabric *f = calloc(1, sizeof *f);
    if (!f) return pm_sim_fault(err, "out of host memory for the fabric");
    size_t used = 0;
    pm_shadow_touch(e, (uint64_t)addr, size); /* how far the network reads is known only after */
    if ((st = pm_fabric_net_deserialize(e->sram + addr, (size_t)(size - (uint64_t)addr), &f->net, &used, err))) {
        free(f);
        pm_error_prefix(err, "malformed fabric network at SRAM 0x%llx: ", (unsigned long long)addr);
        err->status = PM_ERR_FAULT;
        return PM_ERR_FAULT;
    }
    f->edges = pm_fabric_net_edge_count(&f->net);
    for (uint32_t l = 0; l <= f->net.layers; l++)
        if (f->net.widths[l] > f->max_width) f->max_width = f->net.widths[l];
    f->fold = pm_ceil_div(f->edges, e->cfg->fabric_lfus);
    f->latency = network_latency(e->cfg, &f->net);
    pm_fabric_free(e->fabric);
    e->fabric = f;
    /* The tables stream into the fabric at the LFU load rate. */
    pm_cost_range(c, PM_RANGE_SRAM, false, (uint64_t)addr, (uint64_t)addr + used);
    c->sram_read_bytes = used;
    c->stream_cycles = pm_ceil_div(used, e->cfg->lfu_load_bytes_per_cycle);
    return PM_OK;
}

/* One layer over n samples held feature-major (x[i*n + b]): y[j*n + b] =
 * edge(j,0)(x_0) + edge(j,1)(x_1) + ... in fp32, left to right. */
static void layer_forward(const pm_fabric_net *net, uint32_t l, const float *x, float *y, float *t, uint64_t n)
{
    uint32_t in = net->widths[l], out = net->widths[l + 1];
    const pm_lfu_table *edge = &net->edges[pm_fabric_net_edge_index(net, l, 0, 0)];
    for (uint32_t j = 0; j < out; j++, edge += in) {
        float *acc = y + (uint64_t)j * n;
        pm_lfu_eval_array(&edge[0], x, acc, (size_t)n);
        for (uint32_t i = 1; i < in; i++) {
            pm_lfu_eval_array(&edge[i], x + (uint64_t)i * n, t, (size_t)n);
            for (uint64_t b = 0; b < n; b++) acc[b] = acc[b] + t[b];
        }
    }
}

/* fab.run.T d, a, n */
pm_status pm_exec_FABRUN(pm_engine *e, const pm_insn *in, pm_cost *c, pm_error *err)
{
    pm_format fmt;
    uint64_t n;
    pm_status st = need_fabric(e, err);
    if (!st) st = pm_format_operand(in->op[0], "fab.run", true, &fmt, err);
    if (!st) st = pm_count_operand(e, in->op[3], "n", &n, err);
    if (st) return st;
    struct pm_fabric *f = e->fabric;
    if (!f) return pm_sim_fault(err, "the fabric holds no network (load one with fab.cfg)");
    const pm_fabric_net *net = &f->net;
    uint32_t w_in = net->widths[0], w_out = net->widths[net->layers];
    c->latency_cycles = f->latency;
    if (n == 0) return PM_OK;
    uint64_t elem = fmt == PM_FMT_F32 ? 4 : 2;
    uint64_t in_bytes = n * w_in * elem, out_bytes = n * w_out * elem, soff, doff;
    if ((st = pm_sram_operand(e, in->op[2], in_bytes, false, c, &soff, err))) return st;
    if ((st = pm_sram_operand(e, in->op[1], out_bytes, true, c, &doff, err))) return st;
    /* Host scratch: every input decoded (all inputs are read before any
     * output is written, so d may overlap a), every output, and for a block
     * of samples two feature-major layer buffers and one edge's column. The
     * block bounds the layer buffers whatever the widths. */
    uint64_t block = FABRIC_BLOCK_VALUES / f->max_width;
    if (block < 1) block = 1;
    if (block > n) block = n;
    uint64_t wide = block * f->max_width;
    float *buf;
    uint8_t *bytes;
    if ((st = pm_scratch_floats(e, (size_t)(n * w_in + n * w_out + 2 * wide + block), &buf, err))) return st;
    if ((st = pm_scratch_bytes(e, (size_t)out_bytes, &bytes, err))) return st;
    float *x = buf, *y = x + n * w_in, *cur0 = y + n * w_out, *next0 = cur0 + wide, *col = next0 + wide;
    if ((st = pm_format_decode(fmt, e->sram + soff, (size_t)(n * w_in), x, err))) return st;
    for (uint64_t b0 = 0; b0 < n; b0 += block) {
        uint64_t m = n - b0 < block ? n - b0 : block;
        float *cur = cur0, *next = next0;
        for (uint64_t b = 0; b < m; b++)
            for (uint32_t i = 0; i < w_in; i++) cur[(uint64_t)i * m + b] = x[(b0 + b) * w_in + i];
        for (uint32_t l = 0; l < net->layers; l++) {
            layer_forward(net, l, cur, next, col, m);
            float *swap = cur;
            cur = next;
            next = swap;
        }
        for (uint64_t b = 0; b < m; b++)
            for (uint32_t j = 0; j < w_out; j++) y[(b0 + b) * w_out + j] = cur[(uint64_t)j * m + b];
    }
    if ((st = pm_format_encode(fmt, y, (size_t)(n * w_out), bytes, err))) return st;
    memcpy(e->sram + doff, bytes, (size_t)out_bytes);
    pm_post_increment(e, in->op[2], in_bytes);
    pm_post_increment(e, in->op[1], out_bytes);
    /* Pipelined: a sample per cycle when every edge has its own LFU; with
     * more edges than LFUs each sample takes `fold` passes. */
    c->stream_cycles = n * f->fold;
    c->lfu_evals = n * f->edges;
    return PM_OK;
}
