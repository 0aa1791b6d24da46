/* libFuzzer target for the readers the LFU/KAN side added: the first byte
 * picks the parser, the rest is its input. Each must reject malformed input
 * with a message and never crash; what one accepts must write back and
 * re-read (files) or evaluate (expressions).
 *   0: polymorph fit's expression language      1: the KAN data-set language
 *   2: PMKT (trained KAN)  3: PMKN (exported KAN)  4: PMFN (fabric network) */
#include "polymorph/fit.h"
#include "polymorph/kan.h"
#include "polymorph/sim.h"

#include <stdlib.h>
#include <string.h>

static void expr_fit(const char *text)
{
    pm_expr *e = NULL;
    pm_error err;
    if (pm_expr_parse(text, &e, &err) == PM_OK) {
        (void)pm_expr_eval(e, 0.5);
        pm_expr_free(e);
    }
}

static void expr_kan(const char *text)
{
    pm_kan_expr *e = NULL;
    uint32_t used = 0;
    pm_error err;
    if (pm_kan_expr_parse(text, &e, &used, &err) == PM_OK) {
        double v[4] = {0.25, -0.5, 0.75, 1.0};
        (void)pm_kan_expr_eval(e, v);
        pm_kan_expr_free(e);
    }
}

static void pmkt(const uint8_t *d, size_t n)
{
    pm_kan net;
    memset(&net, 0, sizeof net);
    pm_error err;
    if (pm_kan_load(d, n, &net, &err) != PM_OK) return;
    uint8_t *out = NULL;
    size_t len = 0;
    if (pm_kan_save(&net, &out, &len, &err) != PM_OK) abort();
    pm_kan again;
    memset(&again, 0, sizeof again);
    if (pm_kan_load(out, len, &again, &err) != PM_OK) abort();
    pm_kan_free(&again);
    free(out);
    pm_kan_free(&net);
}

static void pmkn(const uint8_t *d, size_t n)
{
    pm_kan_lfu_net net;
    memset(&net, 0, sizeof net);
    pm_error err;
    if (pm_kan_lfu_net_load(d, n, &net, &err) != PM_OK) return;
    uint8_t *out = NULL;
    size_t len = 0;
    if (pm_kan_lfu_net_save(&net, &out, &len, &err) != PM_OK) abort();
    pm_kan_lfu_net again;
    memset(&again, 0, sizeof again);
    if (pm_kan_lfu_net_load(out, len, &again, &err) != PM_OK) abort();
    pm_kan_lfu_net_free(&again);
    free(out);
    pm_kan_lfu_net_free(&net);
}

static void pmfn(const uint8_t *d, size_t n)
{
    pm_fabric_net net;
    memset(&net, 0, sizeof net);
    pm_error err;
    size_t used = 0;
    if (pm_fabric_net_deserialize(d, n, &net, &used, &err) != PM_OK) return;
    if (used > n) abort();
    uint8_t *out = NULL;
    size_t len = 0;
    if (pm_fabric_net_serialize(&net, &out, &len, &err) != PM_OK) abort();
    pm_fabric_net again;
    memset(&again, 0, sizeof again);
    if (pm_fabric_net_deserialize(out, len, &again, NULL, &err) != PM_OK) abort();
    pm_fabric_net_free(&again);
    free(out);
    pm_fabric_net_free(&net);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    switch (data[0] % 5) {
    case 0:
    case 1: {
        char *text = malloc(n + 1);
        if (!text) return 0;
        memcpy(text, d, n);
        text[n] = '\0';
        if (data[0] % 5 == 0) expr_fit(text);
        else expr_kan(text);
        free(text);
        break;
    }
    case 2: pmkt(d, n); break;
    case 3: pmkn(d, n); break;
    default: pmfn(d, n); break;
    }
    return 0;
}
