/* LFU fabric networks: the container a KAN network is mapped onto the fabric
 * from (layer widths plus one LFU table per edge) and its serialized form
 * "PMFN", which `fab.cfg` reads from SRAM and the kernel builders write.
 * The reader trusts nothing: every count and length is checked against len. */
#include "polymorph/sim.h"

#include <stdlib.h>
#include <string.h>

#define PMFN_MAGIC "PMFN"
/* magic, version, layers; then layers + 1 widths; then per edge a u32 length
 * and that many bytes of PMLF table */
#define PMFN_FIXED_BYTES 12u

uint64_t pm_fabric_net_edge_count(const pm_fabric_net *net)
{
    if (!net || net->layers < 1 || net->layers > PM_FABRIC_MAX_LAYERS) return 0;
    uint64_t edges = 0;
    for (uint32_t l = 0; l < net->layers; l++) {
        uint32_t in = net->widths[l], out = net->widths[l + 1];
        if (in < 1 || in > PM_FABRIC_MAX_WIDTH || out < 1 || out > PM_FABRIC_MAX_WIDTH) return 0;
        edges += (uint64_t)in * out;
    }
    return edges;
}

uint64_t pm_fabric_net_edge_index(const pm_fabric_net *net, uint32_t l, uint32_t j, uint32_t i)
{
    uint64_t base = 0;
    for (uint32_t k = 0; k < l; k++) base += (uint64_t)net->widths[k] * net->widths[k + 1];
    return base + (uint64_t)j * net->widths[l] + i;
}

static pm_status check_shape(const pm_fabric_net *net, uint64_t *edges, pm_error *err)
{
    if (net->layers < 1 || net->layers > PM_FABRIC_MAX_LAYERS)
        return pm_error_set(err, PM_ERR_INVALID, "fabric network: %u layers (must be 1..%u)", net->layers,
                            PM_FABRIC_MAX_LAYERS);
    for (uint32_t l = 0; l <= net->layers; l++)
        if (net->widths[l] < 1 || net->widths[l] > PM_FABRIC_MAX_WIDTH)
            return pm_error_set(err, PM_ERR_INVALID, "fabric network: width %u of layer boundary %u (must be 1..%u)",
                                net->widths[l], l, PM_FABRIC_MAX_WIDTH);
    *edges = pm_fabric_net_edge_count(net);
    if (*edges > PM_FABRIC_MAX_EDGES)
        return pm_error_set(err, PM_ERR_INVALID, "fabric network: %llu edges (at most %u)",
                            (unsigned long long)*edges, PM_FABRIC_MAX_EDGES);
    return PM_OK;
}

/* Layer, output and input of edge index k, for messages. */
static void edge_place(const pm_fabric_net *net, uint64_t k, uint32_t *l, uint32_t *j, uint32_t *i)
{
    uint32_t layer = 0;
    while (layer + 1 < net->layers && k >= (uint64_t)net->widths[layer] * net->widths[layer + 1]) {
        k -= (uint64_t)net->widths[layer] * net->widths[layer + 1];
        layer++;
    }
    *l = layer;
    *j = (uint32_t)(k / net->widths[layer]);
    *i = (uint32_t)(k % net->widths[layer]);
}

pm_status pm_fabric_net_validate(const pm_fabric_net *net, pm_error *err)
{
    if (!net) return pm_error_set(err, PM_ERR_INVALID, "fabric network: NULL");
    uint64_t edges;
    pm_status st = check_shape(net, &edges, err);
    if (st) return st;
    if (!net->edges) return pm_error_set(err, PM_ERR_INVALID, "fabric network: no edge tables");
    for (uint64_t k = 0; k < edges; k++)
        if ((st = pm_lfu_table_validate(&net->edges[k], err))) {
            uint32_t l, j, i;
            edge_place(net, k, &l, &j, &i);
            pm_error_prefix(err, "fabric network: edge (layer %u, out %u, in %u): ", l, j, i);
            return st;
        }
    return PM_OK;
}

void pm_fabric_net_free(pm_fabric_net *net)
{
    if (!net || !net->edges) return;
    uint64_t edges = pm_fabric_net_edge_count(net);
    for (uint64_t k = 0; k < edges; k++) pm_lfu_table_free(&net->edges[k]);
    free(net->edges);
    net->edges = NULL;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int b = 0; b < 4; b++) p[b] = (uint8_t)(v >> (8 * b));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

pm_status pm_fabric_net_serialize(const pm_fabric_net *net, uint8_t **bytes, size_t *len, pm_error *err)
{
    pm_status st = pm_fabric_net_validate(net, err);
    if (st) return st;
    uint64_t edges = pm_fabric_net_edge_count(net);
    size_t total = PMFN_FIXED_BYTES + 4u * (net->layers + 1);
    for (uint64_t k = 0; k < edges; k++) total += 4 + pm_lfu_table_serialized_size(&net->edges[k]);
    uint8_t *buf = malloc(total);
    if (!buf) return pm_error_set(err, PM_ERR_NOMEM, "fabric network: out of memory for %zu bytes", total);
    memcpy(buf, PMFN_MAGIC, 4);
    put_u32(buf + 4, PM_FABRIC_SERIAL_VERSION);
    put_u32(buf + 8, net->layers);
    size_t at = PMFN_FIXED_BYTES;
    for (uint32_t l = 0; l <= net->layers; l++, at += 4) put_u32(buf + at, net->widths[l]);
    for (uint64_t k = 0; k < edges; k++) {
        size_t size = pm_lfu_table_serialized_size(&net->edges[k]), written = 0;
        put_u32(buf + at, (uint32_t)size);
        if ((st = pm_lfu_table_serialize(&net->edges[k], buf + at + 4, total - at - 4, &written, err))) {
            free(buf);
            return st;
        }
        at += 4 + written;
    }
    *bytes = buf;
    *len = at;
    return PM_OK;
}

pm_status pm_fabric_net_deserialize(const uint8_t *src, size_t len, pm_fabric_net *out, size_t *used,
                                    pm_error *err)
{
    memset(out, 0, sizeof *out);
    if (len < PMFN_FIXED_BYTES)
        return pm_error_set(err, PM_ERR_FORMAT, "PMFN: %zu bytes, shorter than the %u-byte header", len,
                            PMFN_FIXED_BYTES);
    if (memcmp(src, PMFN_MAGIC, 4) != 0) return pm_error_set(err, PM_ERR_FORMAT, "PMFN: byte 0: bad magic");
    uint32_t version = get_u32(src + 4), layers = get_u32(src + 8);
    if (version != PM_FABRIC_SERIAL_VERSION)
        return pm_error_set(err, PM_ERR_FORMAT, "PMFN: byte 4: version %u (this build reads %u)", version,
                            PM_FABRIC_SERIAL_VERSION);
    if (layers < 1 || layers > PM_FABRIC_MAX_LAYERS)
        return pm_error_set(err, PM_ERR_FORMAT, "PMFN: byte 8: %u layers (must be 1..%u)", layers,
                            PM_FABRIC_MAX_LAYERS);
    size_t at = PMFN_FIXED_BYTES;
    if (len - at < 4u * (layers + 1))
        return pm_error_set(err, PM_ERR_FORMAT, "PMFN: byte %zu: truncated layer widths", at);
    pm_fabric_net net = {.layers = layers};
    for (uint32_t l = 0; l <= layers; l++, at += 4) net.widths[l] = get_u32(src + at);
    uint64_t edges;
    pm_status st = check_shape(&net, &edges, err);
    if (st) {
        err->status = PM_ERR_FORMAT;
        pm_error_prefix(err, "PMFN: byte %u: ", PMFN_FIXED_BYTES);
        return PM_ERR_FORMAT;
    }
    /* Every edge takes at least its length word and a PMLF header: a
     * header that claims more edges than the bytes can hold is refused
     * before anything is allocated for them. */
    if ((len - at) / (4 + PM_LFU_SERIAL_HEADER_BYTES) < edges)
        return pm_error_set(err, PM_ERR_FORMAT, "PMFN: byte %zu: %llu edges cannot fit in the %zu bytes that remain",
                            at, (unsigned long long)edges, len - at);
    net.edges = calloc((size_t)edges, sizeof *net.edges);
    if (!net.edges) return pm_error_set(err, PM_ERR_NOMEM, "PMFN: out of memory for %llu edges", (unsigned long long)edges);
    for (uint64_t k = 0; k < edges; k++) {
        if (len - at < 4) {
            st = pm_error_set(err, PM_ERR_FORMAT, "PMFN: byte %zu: truncated before edge %llu of %llu", at,
                              (unsigned long long)k, (unsigned long long)edges);
            break;
        }
        uint32_t size = get_u32(src + at);
        if (size > len - at - 4) {
            st = pm_error_set(err, PM_ERR_FORMAT, "PMFN: byte %zu: edge %llu claims %u bytes, %zu remain", at,
                              (unsigned long long)k, size, len - at - 4);
            break;
        }
        if ((st = pm_lfu_table_deserialize(src + at + 4, size, &net.edges[k], err))) {
            pm_error_prefix(err, "PMFN: byte %zu: edge %llu: ", at + 4, (unsigned long long)k);
            err->status = st = PM_ERR_FORMAT;
            break;
        }
        if (pm_lfu_table_serialized_size(&net.edges[k]) != size) {
            st = pm_error_set(err, PM_ERR_FORMAT, "PMFN: byte %zu: edge %llu: length %u but its table is %zu bytes",
                              at, (unsigned long long)k, size, pm_lfu_table_serialized_size(&net.edges[k]));
            pm_lfu_table_free(&net.edges[k]);
            break;
        }
        at += 4 + size;
    }
    if (st) {
        pm_fabric_net_free(&net);
        return st;
    }
    *out = net;
    if (used) *used = at;
    return PM_OK;
}
