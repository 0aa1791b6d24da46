/* KAN inference programs: the lanes schedule (per edge lfu.ld + lfu over the
 * chunk + vadd into the node's sum) and the fabric schedule (fab.cfg once,
 * fab.run per chunk). Both read each sample from DRAM once and write each
 * output once, and sum every node in ascending input order, so they equal
 * pm_kan_ref_forward bit for bit (docs/fabric.md). */
#include "polymorph/kan_kernels.h"
#include "polymorph/kernels.h"

#include <stdlib.h>
#include <string.h>

/* Registers of both schedules. */
enum {
    R_X = 1,      /* DRAM address of the chunk's first sample */
    R_Y = 2,      /* DRAM address of the chunk's first output */
    R_LEFT = 3,   /* samples still to do */
    R_CHUNK = 4,  /* samples per chunk */
    R_N = 5,      /* samples in this chunk */
    R_STRIDE = 6, /* lanes: bytes of one feature's column in SRAM (n * 4) */
    R_FOUR = 7,
    R_ONE = 8,
    R_IN = 9,     /* lanes: walks the input columns (post-increment) */
    R_NODE = 10,  /* lanes: the output column being summed */
    R_TABLE = 11, /* SRAM address of a table / the network */
    R_TMP0 = 12,  /* lanes: two edge-value columns, alternating */
    R_TMP1 = 13,
    R_A = 14,
    R_B = 15,
    R_S0 = 16,
    R_S1 = 17,
    R_COUNT = 18, /* lanes: pairs of edges left in a node's loop */
};

#define AREG_INC PM_AREG_INC
#define MASK(u) (1u << (u))

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

const char *pm_kan_mode_name(pm_kan_mode m)
{
    return m == PM_KAN_MODE_FABRIC ? "fabric" : m == PM_KAN_MODE_LANES ? "lanes" : "?";
}

int pm_kan_mode_from_name(const char *name, pm_kan_mode *out)
{
    if (strcmp(name, "lanes") == 0) *out = PM_KAN_MODE_LANES;
    else if (strcmp(name, "fabric") == 0) *out = PM_KAN_MODE_FABRIC;
    else return 0;
    return 1;
}

/* ---- shared pieces ---- */

typedef struct kan_emit {
    pm_builder *b;
    bool fence; /* hazards = report: fence each producer before its consumer */
} kan_emit;

static void emit(kan_emit *k, pm_opcode op, int64_t a, int64_t b, int64_t c, int64_t d, int64_t e)
{
    pm_builder_emit(k->b, op, a, b, c, d, e, 0);
}

static void li(kan_emit *k, int reg, int64_t v)
{
    emit(k, PM_OP_LI, reg, v, 0, 0, 0);
}

static void fence(kan_emit *k, unsigned mask)
{
    if (k->fence) emit(k, PM_OP_FENCE, mask, 0, 0, 0, 0);
}

/* DMA of n samples of `width` fp32 features between DRAM (sample-major,
 * contiguous) and SRAM. transpose: SRAM holds them feature-major, one
 * column of n per feature (the lanes schedule); else sample-major. */
static void dma_samples(kan_emit *k, bool load, uint32_t width, bool transpose, int sram_reg, int dram_reg)
{
    if (transpose) {
        li(k, R_S0, width);
        emit(k, PM_OP_DSHAPE, R_FOUR, R_S0, R_N, 0, 0); /* 4-byte rows: features; planes: samples */
        li(k, R_S1, (int64_t)width * 4);
        emit(k, PM_OP_DSTRIDE, R_FOUR, R_S1, R_STRIDE, R_FOUR, 0);
    } else {
        li(k, R_S0, (int64_t)width * 4);
        emit(k, PM_OP_MUL, R_S1, R_N, R_S0, 0, 0);
        emit(k, PM_OP_DSHAPE, R_S1, R_ONE, R_ONE, 0, 0);
        emit(k, PM_OP_DSTRIDE, R_S1, R_S1, R_S1, R_S1, 0);
    }
    if (load) {
        emit(k, PM_OP_DLD, sram_reg, dram_reg, 0, 0, 0);
        fence(k, MASK(PM_UNIT_DMA_LD));
    } else {
        emit(k, PM_OP_DST, dram_reg, sram_reg, 0, 0, 0);
        fence(k, MASK(PM_UNIT_DMA_ST));
    }
}

/* The chunk loop around `body`: n = min(left, chunk); body; advance the
 * DRAM pointers by n samples; left -= n; repeat while left != 0. */
typedef void (*body_fn)(kan_emit *k, const void *ctx);

static void chunk_loop(kan_emit *k, const pm_fabric_net *net, const pm_kan_desc *d, uint64_t chunk, body_fn body,
                       const void *ctx)
{
    uint32_t w_in = net->widths[0], w_out = net->widths[net->layers];
    li(k, R_X, (int64_t)d->x_addr);
    li(k, R_Y, (int64_t)d->y_addr);
    li(k, R_LEFT, (int64_t)d->batch);
    li(k, R_CHUNK, (int64_t)chunk);
    li(k, R_FOUR, 4);
    li(k, R_ONE, 1);
    uint32_t top = pm_builder_pc(k->b);
    emit(k, PM_OP_MIN, R_N, R_LEFT, R_CHUNK, 0, 0);
    emit(k, PM_OP_SHLI, R_STRIDE, R_N, 2, 0, 0);
    body(k, ctx);
    li(k, R_S0, (int64_t)w_in * 4);
    emit(k, PM_OP_MUL, R_S1, R_N, R_S0, 0, 0);
    emit(k, PM_OP_ADD, R_X, R_X, R_S1, 0, 0);
    li(k, R_S0, (int64_t)w_out * 4);
    emit(k, PM_OP_MUL, R_S1, R_N, R_S0, 0, 0);
    emit(k, PM_OP_ADD, R_Y, R_Y, R_S1, 0, 0);
    emit(k, PM_OP_SUB, R_LEFT, R_LEFT, R_N, 0, 0);
    emit(k, PM_OP_BNE, R_LEFT, 0, top, 0, 0);
    emit(k, PM_OP_HALT, 0, 0, 0, 0, 0);
}

/* ---- lanes schedule ---- */

typedef struct lanes_ctx {
    const pm_fabric_net *net;
    const uint64_t *table_addr; /* per edge */
    uint64_t buf[2];            /* ping-pong layer buffers */
    uint32_t slots;
} lanes_ctx;

/* One edge of the node in R_NODE: its table (address in R_TABLE) into
 * `slot`, evaluated over the input column at R_IN (which moves on to the
 * next column), into the node directly (first edge) or into `tmp` and
 * added to the node. */
static void lanes_edge(kan_emit *k, int slot, bool first, int tmp)
{
    emit(k, PM_OP_LFULD, slot, R_TABLE, 0, 0, 0);
    int dst = first ? R_NODE : tmp;
    emit(k, PM_OP_LFU, PM_FMT_F32, slot, dst, R_IN | AREG_INC, R_N);
    fence(k, MASK(PM_UNIT_LFU));
    if (!first) {
        pm_builder_emit(k->b, PM_OP_VADD, PM_FMT_F32, R_NODE, R_NODE, tmp, R_N, 0);
        fence(k, MASK(PM_UNIT_VEC));
    }
}

/* The byte step between a node's consecutive tables, or 0 when they are
 * not evenly spaced (then every edge loads its address itself). */
static int64_t table_step(const uint64_t *addr, uint32_t in)
{
    if (in < 2) return 0;
    int64_t step = (int64_t)(addr[1] - addr[0]);
    for (uint32_t i = 2; i < in; i++)
        if ((int64_t)(addr[i] - addr[i - 1]) != step) return 0;
    return step;
}

/* A node: the first edge writes the node's column; the others go through
 * two alternating columns so an edge's lfu overlaps the previous vadd. With
 * evenly spaced tables (an exported KAN's layer: one table size) the edges
 * after the first run as a counted loop of pairs, so the code does not
 * grow with the layer's width; otherwise they are unrolled. */
static void lanes_node(kan_emit *k, const uint64_t *addr, uint32_t in, uint32_t slots)
{
    int64_t step = table_step(addr, in);
    li(k, R_TABLE, (int64_t)addr[0]);
    lanes_edge(k, 0, true, 0);
    if (step == 0 || in < 4) {
        for (uint32_t i = 1; i < in; i++) {
            li(k, R_TABLE, (int64_t)addr[i]);
            lanes_edge(k, (int)(i % slots), false, i % 2 ? R_TMP1 : R_TMP0);
        }
        return;
    }
    uint32_t rest = in - 1;
    if (rest % 2) {
        emit(k, PM_OP_ADDI, R_TABLE, R_TABLE, step, 0, 0);
        lanes_edge(k, slots > 1 ? 1 : 0, false, R_TMP1);
    }
    li(k, R_COUNT, rest / 2);
    uint32_t top = pm_builder_pc(k->b);
    emit(k, PM_OP_ADDI, R_TABLE, R_TABLE, step, 0, 0);
    lanes_edge(k, 0, false, R_TMP0);
    emit(k, PM_OP_ADDI, R_TABLE, R_TABLE, step, 0, 0);
    lanes_edge(k, slots > 1 ? 1 : 0, false, R_TMP1);
    emit(k, PM_OP_LOOP, R_COUNT, top, 0, 0, 0);
}

static void lanes_body(kan_emit *k, const void *p)
{
    const lanes_ctx *c = p;
    const pm_fabric_net *net = c->net;
    li(k, R_A, (int64_t)c->buf[0]);
    dma_samples(k, true, net->widths[0], true, R_A, R_X);
    uint64_t edge = 0;
    for (uint32_t l = 0; l < net->layers; l++) {
        uint64_t in_buf = c->buf[l % 2], out_buf = c->buf[(l + 1) % 2];
        uint32_t in = net->widths[l];
        li(k, R_B, (int64_t)in_buf);
        li(k, R_NODE, (int64_t)out_buf);
        for (uint32_t j = 0; j < net->widths[l + 1]; j++, edge += in) {
            emit(k, PM_OP_ADD, R_IN, R_B, 0, 0, 0);
            lanes_node(k, c->table_addr + edge, in, c->slots);
            emit(k, PM_OP_ADD, R_NODE, R_NODE, R_STRIDE, 0, 0);
        }
    }
    li(k, R_A, (int64_t)c->buf[net->layers % 2]);
    dma_samples(k, false, net->widths[net->layers], true, R_A, R_Y);
}

/* ---- fabric schedule ---- */

typedef struct fabric_ctx {
    const pm_fabric_net *net;
    uint64_t x_buf, y_buf;
} fabric_ctx;

static void fabric_body(kan_emit *k, const void *p)
{
    const fabric_ctx *c = p;
    li(k, R_A, (int64_t)c->x_buf);
    dma_samples(k, true, c->net->widths[0], false, R_A, R_X);
    li(k, R_B, (int64_t)c->y_buf);
    emit(k, PM_OP_FABRUN, PM_FMT_F32, R_B, R_A, R_N, 0);
    fence(k, MASK(PM_UNIT_LFU));
    dma_samples(k, false, c->net->widths[c->net->layers], false, R_B, R_Y);
}

/* ---- the builder ---- */

static uint32_t max_width(const pm_fabric_net *net)
{
    uint32_t w = 0;
    for (uint32_t l = 0; l <= net->layers; l++)
        if (net->widths[l] > w) w = net->widths[l];
    return w;
}

/* Samples per chunk: what `per_sample` bytes each leave room for after
 * `used` bytes of SRAM, capped by the request and the batch. */
static pm_status pick_chunk(const pm_config *cfg, const pm_kan_desc *d, uint64_t used, uint64_t per_sample,
                            const char *what, uint64_t *chunk, pm_error *err)
{
    uint64_t room = used < cfg->sram_bytes ? (cfg->sram_bytes - used) / per_sample : 0;
    if (room == 0)
        return pm_error_set(err, PM_ERR_INVALID,
                            "kan %s: the network takes %llu bytes of SRAM and one sample %llu more; the config's "
                            "sram.bytes is %llu",
                            what, (unsigned long long)used, (unsigned long long)per_sample,
                            (unsigned long long)cfg->sram_bytes);
    uint64_t c = d->chunk ? d->chunk : room;
    if (c > room)
        return pm_error_set(err, PM_ERR_INVALID, "kan %s: chunk of %llu samples does not fit SRAM (at most %llu)",
                            what, (unsigned long long)c, (unsigned long long)room);
    *chunk = c < d->batch ? c : d->batch;
    return PM_OK;
}

static pm_status add_symbols(pm_program *p, const pm_fabric_net *net, const pm_kan_desc *d, pm_error *err)
{
    p->symbols = calloc(2, sizeof *p->symbols);
    if (!p->symbols) return pm_error_set(err, PM_ERR_NOMEM, "kan: out of memory");
    p->symbol_count = 2;
    const char *names[2] = {"x", "y"};
    uint64_t addrs[2] = {d->x_addr, d->y_addr}, widths[2] = {net->widths[0], net->widths[net->layers]};
    for (int s = 0; s < 2; s++) {
        pm_symbol *sym = &p->symbols[s];
        strcpy(sym->name, names[s]);
        sym->mem = PM_MEM_DRAM;
        sym->addr = addrs[s];
        sym->is_tensor = true;
        sym->dtype = PM_FMT_F32;
        sym->rank = 2;
        sym->shape[0] = d->batch;
        sym->shape[1] = widths[s];
    }
    return PM_OK;
}

/* The SRAM image: the lanes schedule's tables one after another (each
 * 64-byte aligned), or the fabric's PMFN network. */
static pm_status sram_image(const pm_fabric_net *net, pm_kan_mode mode, uint8_t **image, uint64_t *size,
                            uint64_t **table_addr, pm_error *err)
{
    if (mode == PM_KAN_MODE_FABRIC) {
        size_t len;
        pm_status st = pm_fabric_net_serialize(net, image, &len, err);
        *size = len;
        return st;
    }
    uint64_t edges = pm_fabric_net_edge_count(net), total = 0;
    uint64_t *addr = malloc((size_t)edges * sizeof *addr);
    if (!addr) return pm_error_set(err, PM_ERR_NOMEM, "kan: out of memory");
    for (uint64_t k = 0; k < edges; k++) {
        addr[k] = total;
        total = align_up(total + pm_lfu_table_serialized_size(&net->edges[k]), 64);
    }
    uint8_t *buf = calloc(1, (size_t)total);
    if (!buf) {
        free(addr);
        return pm_error_set(err, PM_ERR_NOMEM, "kan: out of memory for %llu bytes of tables", (unsigned long long)total);
    }
    for (uint64_t k = 0; k < edges; k++) {
        size_t written;
        pm_status st = pm_lfu_table_serialize(&net->edges[k], buf + addr[k], (size_t)(total - addr[k]), &written, err);
        if (st) {
            free(addr);
            free(buf);
            return st;
        }
    }
    *image = buf;
    *size = total;
    *table_addr = addr;
    return PM_OK;
}

pm_status pm_kernel_kan(const pm_config *cfg, const pm_fabric_net *net, const pm_kan_desc *d, pm_program *out,
                        pm_error *err)
{
    pm_status st = pm_fabric_net_validate(net, err);
    if (st) return st;
    if (d->mode != PM_KAN_MODE_LANES && d->mode != PM_KAN_MODE_FABRIC)
        return pm_error_set(err, PM_ERR_INVALID, "kan: unknown mode %d", (int)d->mode);
    const char *what = pm_kan_mode_name(d->mode);
    if (d->batch == 0) return pm_error_set(err, PM_ERR_INVALID, "kan %s: batch is 0", what);
    if (d->mode == PM_KAN_MODE_FABRIC && cfg->fabric_lfus == 0)
        return pm_error_set(err, PM_ERR_INVALID,
                            "kan fabric: config %s has no LFU fabric (fabric.lfus = 0); use an lfu-rev preset", cfg->name);
    uint32_t w_in = net->widths[0], w_out = net->widths[net->layers], wmax = max_width(net);
    uint64_t x_bytes = d->batch * w_in * 4, y_bytes = d->batch * w_out * 4;
    if (d->x_addr > cfg->dram_bytes || x_bytes > cfg->dram_bytes - d->x_addr || d->y_addr > cfg->dram_bytes ||
        y_bytes > cfg->dram_bytes - d->y_addr)
        return pm_error_set(err, PM_ERR_INVALID, "kan %s: x or y of %llu samples does not fit DRAM at 0x%llx / 0x%llx",
                            what, (unsigned long long)d->batch, (unsigned long long)d->x_addr,
                            (unsigned long long)d->y_addr);

    uint8_t *image = NULL;
    uint64_t image_bytes = 0, *table_addr = NULL;
    if ((st = sram_image(net, d->mode, &image, &image_bytes, &table_addr, err))) return st;
    uint64_t base = align_up(image_bytes, 64), chunk = 0;
    kan_emit k = {.fence = cfg->hazard_mode == PM_HAZARD_REPORT};
    lanes_ctx lc = {.net = net, .table_addr = table_addr, .slots = cfg->lfu_slots};
    fabric_ctx fc = {.net = net};
    if (d->mode == PM_KAN_MODE_LANES) {
        /* two layer buffers of the widest layer, two edge columns */
        st = pick_chunk(cfg, d, base + 64 * 4, 4ull * (2ull * wmax + 2), what, &chunk, err);
        if (!st) {
            lc.buf[0] = base;
            lc.buf[1] = align_up(base + 4ull * wmax * chunk, 64);
        }
    } else {
        st = pick_chunk(cfg, d, base + 64, 4ull * (w_in + w_out), what, &chunk, err);
        fc.x_buf = base;
        fc.y_buf = align_up(base + 4ull * w_in * chunk, 64);
    }
    if (!st) st = pm_builder_create(&k.b, err);
    if (st) {
        free(image);
        free(table_addr);
        return st;
    }
    if (d->mode == PM_KAN_MODE_LANES) {
        uint64_t tmp0 = align_up(lc.buf[1] + 4ull * wmax * chunk, 64);
        li(&k, R_TMP0, (int64_t)tmp0);
        li(&k, R_TMP1, (int64_t)align_up(tmp0 + 4 * chunk, 64));
        chunk_loop(&k, net, d, chunk, lanes_body, &lc);
    } else {
        li(&k, R_TABLE, 0);
        emit(&k, PM_OP_FABCFG, R_TABLE, 0, 0, 0, 0);
        chunk_loop(&k, net, d, chunk, fabric_body, &fc);
    }
    free(table_addr);
    pm_program_init(out);
    st = pm_builder_finish(k.b, out, err);
    pm_builder_destroy(k.b);
    if (!st && out->code_count > cfg->imem_words)
        st = pm_error_set(err, PM_ERR_INVALID,
                          "kan %s: the program has %zu instructions, more than control.imem_words (%u)", what,
                          out->code_count, cfg->imem_words);
    if (!st && !(out->sections = calloc(1, sizeof *out->sections)))
        st = pm_error_set(err, PM_ERR_NOMEM, "kan: out of memory");
    if (st) {
        free(image);
        pm_program_free(out);
        return st;
    }
    out->section_count = 1;
    out->sections[0] = (pm_section){.mem = PM_MEM_SRAM, .addr = 0, .size = image_bytes, .data = image};
    if ((st = add_symbols(out, net, d, err))) {
        pm_program_free(out);
        return st;
    }
    pm_program_canonicalize(out);
    return PM_OK;
}
