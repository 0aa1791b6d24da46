/* Test harness shared by the fabric and KAN-engine tests: random LFU edge
 * tables and random fabric networks, drawn from the caller's generator
 * state (test.h's xorshift), so each test keeps its own seed. */
#ifndef POLYMORPH_HARNESS_FABRIC_H
#define POLYMORPH_HARNESS_FABRIC_H

#include "polymorph/lfu.h"
#include "polymorph/sim.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline float pm_test_rndf(uint64_t *s, float lo, float hi)
{
    return lo + (hi - lo) * (float)(pm_test_xorshift(s) % 1000000) / 1e6f;
}

/* A random edge: a uniform table of random degree, segments, domain, form and
 * out-of-range policy, a KAN base branch now and then, or a built-in (tails,
 * exponent mode). */
static inline void pm_test_random_table(uint64_t *s, pm_lfu_table *t)
{
    pm_error err;
    if (pm_test_xorshift(s) % 5 == 0) {
        static const pm_lfu_func funcs[] = {PM_LFU_SILU, PM_LFU_TANH, PM_LFU_SIGMOID, PM_LFU_EXP, PM_LFU_GELU};
        if (pm_lfu_builtin(funcs[pm_test_xorshift(s) % 5], t, &err) == PM_OK) return;
    }
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "edge");
    t->mode = PM_LFU_MODE_UNIFORM;
    t->form = pm_test_xorshift(s) % 2 ? PM_LFU_FORM_X_TIMES : PM_LFU_FORM_PLAIN;
    t->degree = (uint8_t)(1 + pm_test_xorshift(s) % 3);
    t->segments = 1 + pm_test_xorshift(s) % 12;
    t->x_min = pm_test_rndf(s, -3, -0.5f);
    t->x_max = pm_test_rndf(s, 0.5f, 3);
    static const uint8_t oor[] = {PM_LFU_OOR_CLAMP, PM_LFU_OOR_CONST, PM_LFU_OOR_EXTEND};
    t->oor = oor[pm_test_xorshift(s) % 3];
    if (t->oor == PM_LFU_OOR_CONST) {
        t->below_value = pm_test_rndf(s, -1, 1);
        t->above_value = pm_test_rndf(s, -1, 1);
    }
    if (pm_test_xorshift(s) % 3 == 0) { /* a KAN edge's residual base branch: y = w_b * silu(x) + p(x) */
        t->param[PM_LFU_PARAM_BASE_FUNC] = (float)(PM_LFU_SILU + 1);
        t->param[PM_LFU_PARAM_BASE_WEIGHT] = pm_test_rndf(s, -1, 1);
    }
    size_t n = (size_t)t->segments * (t->degree + 1u);
    t->coeffs = malloc(n * sizeof *t->coeffs);
    for (size_t k = 0; k < n; k++) t->coeffs[k] = pm_test_rndf(s, -1, 1);
}

static inline void pm_test_random_net(uint64_t *s, pm_fabric_net *net, uint32_t layers, const uint32_t *widths)
{
    memset(net, 0, sizeof *net);
    net->layers = layers;
    for (uint32_t l = 0; l <= layers; l++) net->widths[l] = widths[l];
    uint64_t edges = pm_fabric_net_edge_count(net);
    net->edges = calloc((size_t)edges, sizeof *net->edges);
    for (uint64_t k = 0; k < edges; k++) pm_test_random_table(s, &net->edges[k]);
}

#endif
