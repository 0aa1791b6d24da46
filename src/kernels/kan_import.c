/* The KAN layer's export (pm_kan_lfu_net, input-major edges) as the
 * network the engine holds (pm_fabric_net, output-major edges): the tables
 * are copied, never re-fitted, so both evaluate to the same bits. */
#include "polymorph/kan.h"
#include "polymorph/kan_kernels.h"

#include <stdlib.h>
#include <string.h>

pm_status pm_kan_net_from_export(const pm_kan_lfu_net *src, pm_fabric_net *out, pm_error *err)
{
    memset(out, 0, sizeof *out);
    if (!src || src->depth < 1 || src->depth > PM_FABRIC_MAX_LAYERS || !src->edges)
        return pm_error_set(err, PM_ERR_INVALID, "kan export: empty or too deep network");
    pm_fabric_net net = {.layers = src->depth};
    for (uint32_t l = 0; l <= src->depth; l++) net.widths[l] = src->width[l];
    uint64_t edges = pm_fabric_net_edge_count(&net);
    if (edges == 0 || edges != src->edge_count)
        return pm_error_set(err, PM_ERR_INVALID, "kan export: %zu edges for widths that need %llu", src->edge_count,
                            (unsigned long long)edges);
    if (edges > PM_FABRIC_MAX_EDGES)
        return pm_error_set(err, PM_ERR_INVALID, "kan export: %llu edges (the fabric format holds at most %u)",
                            (unsigned long long)edges, PM_FABRIC_MAX_EDGES);
    net.edges = calloc((size_t)edges, sizeof *net.edges);
    if (!net.edges) return pm_error_set(err, PM_ERR_NOMEM, "kan export: out of memory");
    uint64_t base = 0;
    pm_status st = PM_OK;
    for (uint32_t l = 0; l < net.layers && !st; l++) {
        uint32_t in = net.widths[l], outw = net.widths[l + 1];
        /* export: edge (i -> j) at i*out + j; fabric: j*in + i */
        for (uint32_t i = 0; i < in && !st; i++)
            for (uint32_t j = 0; j < outw && !st; j++)
                st = pm_lfu_table_copy(&net.edges[base + (uint64_t)j * in + i], &src->edges[base + (uint64_t)i * outw + j],
                                       err);
        base += (uint64_t)in * outw;
    }
    if (!st) st = pm_fabric_net_validate(&net, err);
    if (st) {
        pm_fabric_net_free(&net);
        return st;
    }
    *out = net;
    return PM_OK;
}
