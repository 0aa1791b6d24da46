/* KAN inference around the builders: the host reference (one sample at a
 * time, the order the engine must match) and a one-call device run used by
 * the CLI and tests. */
#include "polymorph/kan_kernels.h"
#include "polymorph/runtime.h"

#include <stdlib.h>
#include <string.h>

pm_status pm_kan_ref_forward(const pm_fabric_net *net, const float *x, size_t batch, float *y, pm_error *err)
{
    pm_status st = pm_fabric_net_validate(net, err);
    if (st) return st;
    uint32_t wmax = 0;
    for (uint32_t l = 0; l <= net->layers; l++)
        if (net->widths[l] > wmax) wmax = net->widths[l];
    float *a = malloc(2 * (size_t)wmax * sizeof *a);
    if (!a) return pm_error_set(err, PM_ERR_NOMEM, "kan reference: out of memory");
    uint32_t w_in = net->widths[0], w_out = net->widths[net->layers];
    for (size_t s = 0; s < batch; s++) {
        float *cur = a, *next = a + wmax;
        memcpy(cur, x + s * w_in, w_in * sizeof *cur);
        for (uint32_t l = 0; l < net->layers; l++) {
            uint32_t in = net->widths[l];
            for (uint32_t j = 0; j < net->widths[l + 1]; j++) {
                const pm_lfu_table *edge = &net->edges[pm_fabric_net_edge_index(net, l, j, 0)];
                float acc = pm_lfu_eval(&edge[0], cur[0]);
                for (uint32_t i = 1; i < in; i++) acc = acc + pm_lfu_eval(&edge[i], cur[i]);
                next[j] = acc;
            }
            float *t = cur;
            cur = next;
            next = t;
        }
        memcpy(y + s * w_out, cur, w_out * sizeof *cur);
    }
    free(a);
    return PM_OK;
}

pm_status pm_kan_run_device(const pm_config *cfg, const pm_fabric_net *net, pm_kan_mode mode, const float *x,
                            size_t batch, float *y, pm_counters *counters, pm_error *err)
{
    pm_status st = pm_fabric_net_validate(net, err);
    if (st) return st;
    uint64_t x_bytes = (uint64_t)batch * net->widths[0] * 4, y_bytes = (uint64_t)batch * net->widths[net->layers] * 4;
    pm_device *dev = NULL;
    if ((st = pm_device_open(cfg, &dev, err))) return st;
    pm_kan_desc d = {.mode = mode, .batch = batch};
    pm_program prog;
    pm_program_init(&prog);
    st = pm_device_alloc(dev, x_bytes, 64, &d.x_addr, err);
    if (!st) st = pm_device_alloc(dev, y_bytes, 64, &d.y_addr, err);
    if (!st) st = pm_kernel_kan(cfg, net, &d, &prog, err);
    if (!st) st = pm_device_write(dev, d.x_addr, x, (size_t)x_bytes, err);
    if (!st) st = pm_device_load(dev, &prog, 1, err);
    if (!st) {
        pm_device_reset_counters(dev);
        pm_run_options opts = {0};
        st = pm_device_run(dev, &opts, err);
    }
    if (!st) st = pm_device_read(dev, d.y_addr, y, (size_t)y_bytes, err);
    if (!st && counters) pm_device_counters(dev, counters);
    pm_program_free(&prog);
    pm_device_close(dev);
    return st;
}
