/* KAN export: every edge becomes one LFU table (the spline converted exactly
 * to per-segment polynomials in the LFU's local coordinate, SiLU base branch
 * by the LFU's base parameters), host inference from those tables in the
 * engine's order, and the "PMKN" file of an exported network. */
#include "kan_internal.h"
#include "polymorph/numerics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Pieces of the cardinal B-spline of order k (knots 0..k+1): piece[q][c] is
 * the t^c coefficient of N_{0,k}(q + t), t in [0, 1). Built by running the
 * Cox-de Boor recursion on polynomials in t. */
static void cardinal_pieces(uint32_t k, double piece[PM_KAN_MAX_ORDER + 1][PM_KAN_MAX_ORDER + 1])
{
    for (uint32_t q = 0; q <= k; q++) {
        double N[PM_KAN_MAX_ORDER + 2][PM_KAN_MAX_ORDER + 1]; /* N[j] = poly of N_{j,p} on this piece */
        memset(N, 0, sizeof N);
        N[q][0] = 1.0;
        for (uint32_t p = 1; p <= k; p++) {
            double next[PM_KAN_MAX_ORDER + 2][PM_KAN_MAX_ORDER + 1];
            memset(next, 0, sizeof next);
            for (uint32_t j = 0; j + p <= k; j++) {
                /* (u - j)/p * N_{j,p-1} + (j + p + 1 - u)/p * N_{j+1,p-1}, u = q + t */
                double a0 = ((double)q - j) / p, a1 = 1.0 / p;
                double b0 = ((double)j + p + 1 - q) / p, b1 = -1.0 / p;
                for (uint32_t c = 0; c < p; c++) {
                    next[j][c] += a0 * N[j][c] + b0 * N[j + 1][c];
                    next[j][c + 1] += a1 * N[j][c] + b1 * N[j + 1][c];
                }
            }
            memcpy(N, next, sizeof N);
        }
        for (uint32_t c = 0; c <= k; c++) piece[q][c] = N[0][c];
    }
}

/* True when every knot is within 1e-6 cells of t_0 + integer * cell for the
 * lattice of `cells` cells over [t_0, t_last]. */
static int on_lattice(const double *t, uint32_t count, uint32_t cells)
{
    double cell = (t[count - 1] - t[0]) / cells;
    if (!(cell > 0.0)) return 0;
    for (uint32_t j = 0; j < count; j++) {
        double q = (t[j] - t[0]) / cell;
        if (fabs(q - floor(q + 0.5)) > 1e-6) return 0;
    }
    return 1;
}

/* The number of uniform LFU segments an input's knots need: G + 2k for a
 * uniform grid, (G + 2k) * PM_KAN_LATTICE for a snapped non-uniform one
 * (knots on that lattice, extension knots PM_KAN_LATTICE cells apart), 0
 * for anything else. */
static uint32_t lattice_cells(const double *t, uint32_t grid, uint32_t order)
{
    uint32_t count = pm_kan_knot_count(grid, order), base = grid + 2 * order;
    if (on_lattice(t, count, base)) return base;
    if ((uint64_t)base * PM_KAN_LATTICE <= PM_LFU_MAX_SEGMENTS && on_lattice(t, count, base * PM_KAN_LATTICE))
        return base * PM_KAN_LATTICE;
    return 0;
}

/* Coefficients (in the cell's local t in [0, 1)) of the spline part of edge
 * e on lattice cell [x0, x0 + cell): the spline is one polynomial of degree
 * k there, so interpolating it at k+1 interior points recovers it (to double
 * rounding). */
static void cell_poly(const pm_kan_layer *L, const double *t, size_t e, double x0, double cell, double *out)
{
    uint32_t k = L->order, nb = pm_kan_basis_count(L->grid, k);
    double V[PM_KAN_MAX_ORDER + 1][PM_KAN_MAX_ORDER + 2];
    for (uint32_t i = 0; i <= k; i++) {
        double u = ((double)i + 0.5) / (k + 1), B[PM_KAN_MAX_ORDER + 1], y = 0.0, p = 1.0;
        int first;
        if (pm_kan_basis_local(t, L->grid, k, x0 + u * cell, &first, B, NULL))
            for (uint32_t m = 0; m <= k; m++) {
                int idx = first + (int)m;
                if (idx >= 0 && idx < (int)nb) y += L->coef[e * nb + (size_t)idx] * B[m];
            }
        for (uint32_t d = 0; d <= k; d++, p *= u) V[i][d] = p;
        V[i][k + 1] = L->scale_sp[e] * y;
    }
    for (uint32_t c = 0; c <= k; c++) { /* Gauss-Jordan with partial pivoting */
        uint32_t piv = c;
        for (uint32_t r = c + 1; r <= k; r++)
            if (fabs(V[r][c]) > fabs(V[piv][c])) piv = r;
        for (uint32_t d = 0; d <= k + 1; d++) {
            double tmp = V[c][d];
            V[c][d] = V[piv][d];
            V[piv][d] = tmp;
        }
        for (uint32_t r = 0; r <= k; r++) {
            if (r == c) continue;
            double f = V[r][c] / V[c][c];
            for (uint32_t d = c; d <= k + 1; d++) V[r][d] -= f * V[c][d];
        }
    }
    for (uint32_t d = 0; d <= k; d++) out[d] = V[d][k + 1] / V[d][d];
}

static pm_status export_edge(const pm_kan_layer *L, uint32_t l, uint32_t i, uint32_t j, pm_lfu_table *out, pm_error *err)
{
    uint32_t G = L->grid, k = L->order, nk = pm_kan_knot_count(G, k), nb = pm_kan_basis_count(G, k);
    const double *t = L->knots + (size_t)i * nk;
    size_t e = (size_t)i * L->out + j;
    uint32_t segs = lattice_cells(t, G, k);
    if (!segs)
        return pm_error_set(err, PM_ERR_UNSUPPORTED,
                            "kan export: layer %u input %u: knots are not on a uniform lattice of at most %d cells, which "
                            "the LFU's uniform segment map needs", l, i, PM_LFU_MAX_SEGMENTS);
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "kan l%u e%u-%u", l % 100u, i % 10000u, j % 10000u); /* l < 16, i, j < 4096 */
    out->mode = PM_LFU_MODE_UNIFORM;
    out->form = PM_LFU_FORM_PLAIN;
    out->oor = PM_LFU_OOR_CONST; /* the spline is 0 outside its knots; only the base branch remains */
    out->degree = (uint8_t)k;
    out->segments = segs;
    out->x_min = (float)t[0];
    out->x_max = (float)t[nk - 1];
    out->param[PM_LFU_PARAM_BASE_FUNC] = (float)(PM_LFU_SILU + 1);
    out->param[PM_LFU_PARAM_BASE_WEIGHT] = (float)L->scale_base[e];
    out->coeffs = calloc((size_t)segs * (k + 1), sizeof *out->coeffs);
    if (!out->coeffs) return pm_error_set(err, PM_ERR_NOMEM, "kan export: no memory for %u segments", segs);
    double piece[PM_KAN_MAX_ORDER + 1][PM_KAN_MAX_ORDER + 1];
    cardinal_pieces(k, piece);
    const double *c = L->coef + e * nb;
    for (uint32_t s = 0; segs != G + 2 * k && s < segs; s++) { /* a snapped non-uniform grid */
        double poly[PM_KAN_MAX_ORDER + 1], cell = (t[nk - 1] - t[0]) / segs;
        cell_poly(L, t, e, t[0] + s * cell, cell, poly);
        for (uint32_t d = 0; d <= k; d++) out->coeffs[(size_t)s * (k + 1) + d] = (float)poly[d];
    }
    for (uint32_t s = 0; segs == G + 2 * k && s < segs; s++) {
        /* uniform: segment s = [t_s, t_{s+1}) carries B_{s-k}..B_s; B_i there is piece s - i */
        double poly[PM_KAN_MAX_ORDER + 1] = {0};
        for (uint32_t q = 0; q <= k; q++) {
            int idx = (int)s - (int)q;
            if (idx < 0 || idx >= (int)nb) continue;
            for (uint32_t d = 0; d <= k; d++) poly[d] += c[idx] * piece[q][d];
        }
        for (uint32_t d = 0; d <= k; d++) out->coeffs[(size_t)s * (k + 1) + d] = (float)(L->scale_sp[e] * poly[d]);
    }
    pm_status st = pm_lfu_table_validate(out, err);
    if (st) {
        pm_error_prefix(err, "kan export: layer %u edge %u->%u: ", l, i, j);
        pm_lfu_table_free(out);
    }
    return st;
}

void pm_kan_lfu_net_free(pm_kan_lfu_net *n)
{
    if (!n) return;
    for (size_t e = 0; e < n->edge_count; e++) pm_lfu_table_free(&n->edges[e]);
    free(n->edges);
    memset(n, 0, sizeof *n);
}

static size_t edge_total(uint32_t depth, const uint32_t *width)
{
    size_t total = 0;
    for (uint32_t l = 0; l < depth; l++) total += (size_t)width[l] * width[l + 1];
    return total;
}

pm_status pm_kan_export(const pm_kan *net, pm_kan_lfu_net *out, pm_error *err)
{
    if (!out) return pm_error_set(err, PM_ERR_INVALID, "kan export: NULL output");
    memset(out, 0, sizeof *out);
    if (!net || !net->params) return pm_error_set(err, PM_ERR_INVALID, "kan export: no network");
    size_t total = edge_total(net->depth, net->width);
    out->edges = calloc(total, sizeof *out->edges);
    if (!out->edges) return pm_error_set(err, PM_ERR_NOMEM, "kan export: no memory for %zu edges", total);
    out->depth = net->depth;
    memcpy(out->width, net->width, sizeof out->width);
    for (uint32_t l = 0; l < net->depth; l++) {
        const pm_kan_layer *L = &net->layer[l];
        for (uint32_t i = 0; i < L->in; i++)
            for (uint32_t j = 0; j < L->out; j++) {
                pm_status st = export_edge(L, l, i, j, &out->edges[out->edge_count], err);
                if (st) {
                    pm_kan_lfu_net_free(out);
                    return st;
                }
                out->edge_count++;
            }
    }
    return PM_OK;
}

const pm_lfu_table *pm_kan_lfu_edge(const pm_kan_lfu_net *n, uint32_t layer, uint32_t i, uint32_t j)
{
    if (!n || layer >= n->depth || i >= n->width[layer] || j >= n->width[layer + 1]) return NULL;
    size_t at = edge_total(layer, n->width) + (size_t)i * n->width[layer + 1] + j;
    return at < n->edge_count ? &n->edges[at] : NULL;
}

pm_status pm_kan_lfu_forward(const pm_kan_lfu_net *net, const float *x, size_t n, float *y, pm_error *err)
{
    if (!net || !net->edges || net->depth < 1 || net->depth > PM_KAN_MAX_LAYERS ||
        net->edge_count != edge_total(net->depth, net->width))
        return pm_error_set(err, PM_ERR_INVALID, "kan lfu forward: no exported network");
    if (n && (!x || !y)) return pm_error_set(err, PM_ERR_INVALID, "kan lfu forward: NULL data");
    uint32_t w = 0;
    for (uint32_t l = 0; l <= net->depth; l++) w = net->width[l] > w ? net->width[l] : w;
    float *buf = malloc(2 * (size_t)w * sizeof *buf);
    if (!buf) return pm_error_set(err, PM_ERR_NOMEM, "kan lfu forward: no memory");
    for (size_t s = 0; s < n; s++) {
        float *cur = buf, *next = buf + w;
        memcpy(cur, x + s * net->width[0], net->width[0] * sizeof *cur);
        for (uint32_t l = 0; l < net->depth; l++) {
            uint32_t in = net->width[l], out = net->width[l + 1];
            for (uint32_t j = 0; j < out; j++) {
                /* the documented order: edge 0's value, then + edge i for i ascending */
                float acc = pm_lfu_eval(pm_kan_lfu_edge(net, l, 0, j), cur[0]);
                for (uint32_t i = 1; i < in; i++) acc = acc + pm_lfu_eval(pm_kan_lfu_edge(net, l, i, j), cur[i]);
                next[j] = acc;
            }
            float *tmp = cur;
            cur = next;
            next = tmp;
        }
        memcpy(y + s * net->width[net->depth], cur, net->width[net->depth] * sizeof *cur);
    }
    free(buf);
    return PM_OK;
}

/* ---- PMKN files ---- */

static void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

#define PMKN_VERSION 1

pm_status pm_kan_lfu_net_save(const pm_kan_lfu_net *n, uint8_t **data, size_t *len, pm_error *err)
{
    if (!data || !len) return pm_error_set(err, PM_ERR_INVALID, "PMKN: NULL output");
    *data = NULL;
    *len = 0;
    if (!n || !n->edges || n->depth < 1 || n->depth > PM_KAN_MAX_LAYERS || n->edge_count != edge_total(n->depth, n->width))
        return pm_error_set(err, PM_ERR_INVALID, "PMKN: no exported network");
    size_t size = 12 + 4 * ((size_t)n->depth + 1);
    for (size_t e = 0; e < n->edge_count; e++) {
        pm_status st = pm_lfu_table_validate(&n->edges[e], err);
        if (st) return st;
        size += 4 + pm_lfu_table_serialized_size(&n->edges[e]);
    }
    uint8_t *b = calloc(size, 1);
    if (!b) return pm_error_set(err, PM_ERR_NOMEM, "PMKN: no memory for %zu bytes", size);
    memcpy(b, "PMKN", 4);
    put_u16(b + 4, PMKN_VERSION);
    put_u32(b + 8, n->depth);
    for (uint32_t l = 0; l <= n->depth; l++) put_u32(b + 12 + 4 * l, n->width[l]);
    size_t at = 12 + 4 * ((size_t)n->depth + 1);
    for (size_t e = 0; e < n->edge_count; e++) {
        size_t w, t = pm_lfu_table_serialized_size(&n->edges[e]);
        put_u32(b + at, (uint32_t)t);
        pm_status st = pm_lfu_table_serialize(&n->edges[e], b + at + 4, t, &w, err);
        if (st) {
            free(b);
            return st;
        }
        at += 4 + t;
    }
    *data = b;
    *len = size;
    return PM_OK;
}

pm_status pm_kan_lfu_net_load(const uint8_t *src, size_t len, pm_kan_lfu_net *out, pm_error *err)
{
    if (!out) return pm_error_set(err, PM_ERR_INVALID, "PMKN: NULL output");
    memset(out, 0, sizeof *out);
    if (!src && len) return pm_error_set(err, PM_ERR_INVALID, "PMKN: NULL buffer");
    if (len < 12 || memcmp(src, "PMKN", 4) != 0)
        return pm_error_set(err, PM_ERR_FORMAT, "PMKN byte 0 (magic): %s",
                            len < 4 ? "file shorter than the 4-byte magic" : len < 12 && !memcmp(src, "PMKN", 4) ? "header truncated" : "magic is not \"PMKN\"");
    uint32_t version = (uint32_t)src[4] | ((uint32_t)src[5] << 8);
    if (version != PMKN_VERSION)
        return pm_error_set(err, PM_ERR_FORMAT, "PMKN byte 4 (version): version %u, this build reads %d", version, PMKN_VERSION);
    if (src[6] || src[7]) return pm_error_set(err, PM_ERR_FORMAT, "PMKN byte 6 (reserved): must be 0");
    uint32_t depth = get_u32(src + 8);
    if (depth < 1 || depth > PM_KAN_MAX_LAYERS)
        return pm_error_set(err, PM_ERR_FORMAT, "PMKN byte 8 (depth): %u layers, must be 1..%d", depth, PM_KAN_MAX_LAYERS);
    size_t at = 12 + 4 * ((size_t)depth + 1);
    if (len < at) return pm_error_set(err, PM_ERR_FORMAT, "PMKN byte %zu (width): file ends inside the widths (needs %zu bytes)", len, at);
    out->depth = depth;
    for (uint32_t l = 0; l <= depth; l++) {
        uint32_t w = get_u32(src + 12 + 4 * l);
        if (w < 1 || w > PM_KAN_MAX_WIDTH) {
            memset(out, 0, sizeof *out);
            return pm_error_set(err, PM_ERR_FORMAT, "PMKN byte %u (width[%u]): %u, must be 1..%d", 12 + 4 * l, l, w, PM_KAN_MAX_WIDTH);
        }
        out->width[l] = w;
    }
    size_t total = edge_total(depth, out->width);
    /* Each edge takes at least 4 + 144 bytes: bound the allocation by the file. */
    if (total > (len - at) / (4 + PM_LFU_SERIAL_HEADER_BYTES)) {
        size_t need = total * (4 + PM_LFU_SERIAL_HEADER_BYTES);
        memset(out, 0, sizeof *out);
        return pm_error_set(err, PM_ERR_FORMAT, "PMKN byte %zu (edges): %zu edges need at least %zu more bytes, file has %zu", at,
                            total, need, len - at);
    }
    out->edges = calloc(total, sizeof *out->edges);
    if (!out->edges) {
        memset(out, 0, sizeof *out);
        return pm_error_set(err, PM_ERR_NOMEM, "PMKN: no memory for %zu edges", total);
    }
    uint32_t l = 0, i = 0, j = 0;
    for (size_t e = 0; e < total; e++) {
        pm_status st = PM_OK;
        if (len - at < 4) {
            st = pm_error_set(err, PM_ERR_FORMAT, "PMKN byte %zu (layer %u edge %u->%u): file ends before the edge's length", at, l, i, j);
        } else {
            uint32_t size = get_u32(src + at);
            if (size > len - at - 4) {
                st = pm_error_set(err, PM_ERR_FORMAT, "PMKN byte %zu (layer %u edge %u->%u): length %u runs past the end of the file (%zu bytes left)",
                                  at, l, i, j, size, len - at - 4);
            } else if ((st = pm_lfu_table_deserialize(src + at + 4, size, &out->edges[e], err))) {
                pm_error_prefix(err, "PMKN byte %zu (layer %u edge %u->%u, a PMLF image; offsets below are inside it): ", at + 4, l, i, j);
            } else if (pm_lfu_table_serialized_size(&out->edges[e]) != size) {
                st = pm_error_set(err, PM_ERR_FORMAT, "PMKN byte %zu (layer %u edge %u->%u): length %u, but its PMLF image is %zu bytes", at,
                                  l, i, j, size, pm_lfu_table_serialized_size(&out->edges[e]));
                pm_lfu_table_free(&out->edges[e]);
            }
            if (!st) at += 4 + (size_t)size;
        }
        if (st) {
            pm_kan_lfu_net_free(out);
            return st;
        }
        out->edge_count++;
        if (++j == out->width[l + 1]) {
            j = 0;
            if (++i == out->width[l]) i = 0, l++;
        }
    }
    if (at != len) {
        pm_kan_lfu_net_free(out);
        return pm_error_set(err, PM_ERR_FORMAT, "PMKN byte %zu (end): %zu bytes after the last edge", at, len - at);
    }
    return PM_OK;
}
