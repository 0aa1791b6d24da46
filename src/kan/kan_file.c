/* "PMKT": a trained KAN in double precision (knots and every parameter), what
 * `polymorph kan train -o` writes and `kan eval|export` read. The reader is
 * strict and names the byte offset of the first problem. */
#include "kan_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PMKT_VERSION 1

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static void put_f64(uint8_t *p, double v)
{
    uint64_t b;
    memcpy(&b, &v, 8);
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(b >> (8 * i));
}
static double get_f64(const uint8_t *p)
{
    uint64_t b = 0;
    for (int i = 0; i < 8; i++) b |= (uint64_t)p[i] << (8 * i);
    double v;
    memcpy(&v, &b, 8);
    return v;
}

static size_t header_size(uint32_t depth) { return 12 + 4 * ((size_t)depth + 1) + 8 * (size_t)depth; }

pm_status pm_kan_save(const pm_kan *net, uint8_t **data, size_t *len, pm_error *err)
{
    if (!data || !len) return pm_error_set(err, PM_ERR_INVALID, "PMKT: NULL output");
    *data = NULL;
    *len = 0;
    if (!net || !net->params) return pm_error_set(err, PM_ERR_INVALID, "PMKT: no network");
    size_t values = net->param_count;
    for (uint32_t l = 0; l < net->depth; l++)
        values += (size_t)net->layer[l].in * pm_kan_knot_count(net->layer[l].grid, net->layer[l].order);
    size_t size = header_size(net->depth) + 8 * values;
    uint8_t *b = calloc(size, 1);
    if (!b) return pm_error_set(err, PM_ERR_NOMEM, "PMKT: no memory for %zu bytes", size);
    memcpy(b, "PMKT", 4);
    b[4] = PMKT_VERSION;
    put_u32(b + 8, net->depth);
    for (uint32_t l = 0; l <= net->depth; l++) put_u32(b + 12 + 4 * l, net->width[l]);
    size_t at = 12 + 4 * ((size_t)net->depth + 1);
    for (uint32_t l = 0; l < net->depth; l++, at += 8) {
        put_u32(b + at, net->layer[l].grid);
        put_u32(b + at + 4, net->layer[l].order);
    }
    for (uint32_t l = 0; l < net->depth; l++) {
        const pm_kan_layer *L = &net->layer[l];
        size_t nk = (size_t)L->in * pm_kan_knot_count(L->grid, L->order);
        size_t np = (size_t)L->in * L->out * (pm_kan_basis_count(L->grid, L->order) + 2);
        for (size_t i = 0; i < nk; i++, at += 8) put_f64(b + at, L->knots[i]);
        for (size_t i = 0; i < np; i++, at += 8) put_f64(b + at, net->params[L->param_offset + i]);
    }
    *data = b;
    *len = size;
    return PM_OK;
}

static pm_status bad(pm_error *err, size_t at, const char *field, const char *what)
{
    return pm_error_set(err, PM_ERR_FORMAT, "PMKT byte %zu (%s): %s", at, field, what);
}

pm_status pm_kan_load(const uint8_t *src, size_t len, pm_kan *out, pm_error *err)
{
    if (!out) return pm_error_set(err, PM_ERR_INVALID, "PMKT: NULL output");
    memset(out, 0, sizeof *out);
    char what[160];
    if (!src || len < 12 || memcmp(src, "PMKT", 4) != 0)
        return bad(err, 0, "magic", len >= 4 && src && !memcmp(src, "PMKT", 4) ? "header truncated" : "magic is not \"PMKT\"");
    uint32_t version = (uint32_t)src[4] | ((uint32_t)src[5] << 8);
    if (version != PMKT_VERSION) {
        snprintf(what, sizeof what, "version %u, this build reads %d", version, PMKT_VERSION);
        return bad(err, 4, "version", what);
    }
    if (src[6] || src[7]) return bad(err, 6, "reserved", "must be 0");
    uint32_t depth = get_u32(src + 8);
    if (depth < 1 || depth > PM_KAN_MAX_LAYERS) {
        snprintf(what, sizeof what, "%u layers, must be 1..%d", depth, PM_KAN_MAX_LAYERS);
        return bad(err, 8, "depth", what);
    }
    if (len < header_size(depth)) {
        snprintf(what, sizeof what, "header needs %zu bytes, file has %zu", header_size(depth), len);
        return bad(err, len, "header", what);
    }
    uint32_t width[PM_KAN_MAX_LAYERS + 1], grid[PM_KAN_MAX_LAYERS], order = 0;
    size_t need = header_size(depth);
    for (uint32_t l = 0; l <= depth; l++) {
        width[l] = get_u32(src + 12 + 4 * l);
        if (width[l] < 1 || width[l] > PM_KAN_MAX_WIDTH) {
            snprintf(what, sizeof what, "%u, must be 1..%d", width[l], PM_KAN_MAX_WIDTH);
            return bad(err, 12 + 4 * l, "width", what);
        }
    }
    size_t at = 12 + 4 * ((size_t)depth + 1);
    for (uint32_t l = 0; l < depth; l++, at += 8) {
        grid[l] = get_u32(src + at);
        uint32_t k = get_u32(src + at + 4);
        if (grid[l] < 1 || grid[l] > PM_KAN_MAX_GRID) {
            snprintf(what, sizeof what, "layer %u grid %u, must be 1..%d", l, grid[l], PM_KAN_MAX_GRID);
            return bad(err, at, "grid", what);
        }
        if (k < 1 || k > PM_KAN_MAX_ORDER || (l && k != order)) {
            snprintf(what, sizeof what, "layer %u order %u, must be 1..%d and the same in every layer", l, k, PM_KAN_MAX_ORDER);
            return bad(err, at + 4, "order", what);
        }
        order = k;
        need += 8 * ((size_t)width[l] * pm_kan_knot_count(grid[l], k) +
                     (size_t)width[l] * width[l + 1] * (pm_kan_basis_count(grid[l], k) + 2));
    }
    if (len != need) {
        snprintf(what, sizeof what, "this shape needs exactly %zu bytes, file has %zu", need, len);
        return bad(err, len < need ? len : need, "size", what);
    }
    pm_status st = pm_kan_allocate(out, depth, width, grid, order, err);
    if (st) return st;
    for (uint32_t l = 0; l < depth; l++) {
        pm_kan_layer *L = &out->layer[l];
        uint32_t nk = pm_kan_knot_count(L->grid, L->order);
        for (uint32_t i = 0; i < L->in; i++)
            for (uint32_t m = 0; m < nk; m++, at += 8) {
                double v = get_f64(src + at);
                double prev = m ? L->knots[(size_t)i * nk + m - 1] : -HUGE_VAL;
                if (!(v > prev) || !isfinite(v)) {
                    snprintf(what, sizeof what, "layer %u input %u knot %u = %g is not finite and above the previous knot", l, i, m, v);
                    pm_kan_free(out);
                    return bad(err, at, "knots", what);
                }
                L->knots[(size_t)i * nk + m] = v;
            }
        size_t np = (size_t)L->in * L->out * (pm_kan_basis_count(L->grid, L->order) + 2);
        for (size_t i = 0; i < np; i++, at += 8) {
            double v = get_f64(src + at);
            if (!isfinite(v)) {
                snprintf(what, sizeof what, "layer %u parameter %zu is not finite", l, i);
                pm_kan_free(out);
                return bad(err, at, "params", what);
            }
            out->params[L->param_offset + i] = v;
        }
    }
    return PM_OK;
}
