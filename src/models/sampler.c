/* Host sampling over the device's top-k candidates: greedy, or a seeded draw
 * from softmax(v / T) cut to top_k and then to the top_p mass. Candidates
 * arrive largest first (pm_emit_topk's order); nothing here depends on that
 * except the cut, which sorts its own copy. See docs/models.md. */
#include "polymorph/llm.h"

#include <math.h>
#include <string.h>

/* splitmix64 turns any seed (0 included) into a well-mixed xorshift state. */
static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

void pm_sampler_init(pm_sampler *s, float temperature, uint32_t top_k, float top_p, uint64_t seed)
{
    s->temperature = temperature;
    s->top_k = top_k;
    s->top_p = top_p;
    s->state = splitmix64(seed);
    if (s->state == 0) s->state = 0x2545F4914F6CDD1Dull; /* xorshift must not start at 0 */
}

/* xorshift64* draw, uniform in [0, 1) with 53 bits. */
static double next_uniform(pm_sampler *s)
{
    uint64_t x = s->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->state = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

/* Largest value wins, ties to the lower id; NaN never wins. */
static uint32_t argmax(const int32_t *ids, const float *vals, uint32_t n)
{
    uint32_t best = 0;
    bool have = false;
    for (uint32_t i = 0; i < n; i++) {
        if (isnan(vals[i])) continue;
        if (!have || vals[i] > vals[best] || (vals[i] == vals[best] && ids[i] < ids[best])) best = i;
        have = true;
    }
    return best;
}

int32_t pm_sampler_pick(pm_sampler *s, const int32_t *ids, const float *vals, uint32_t n)
{
    if (n == 0) return -1;
    if (n > PM_LLM_TOPK_MAX) n = PM_LLM_TOPK_MAX;
    if (!(s->temperature > 0) || n == 1) return ids[argmax(ids, vals, n)];
    /* Candidates in order (value descending, id ascending), NaN dropped. */
    uint32_t order[PM_LLM_TOPK_MAX], m = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (isnan(vals[i])) continue;
        uint32_t j = m++;
        while (j > 0 && (vals[order[j - 1]] < vals[i] || (vals[order[j - 1]] == vals[i] && ids[order[j - 1]] > ids[i]))) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    if (m == 0) return ids[0];
    if (s->top_k > 0 && s->top_k < m) m = s->top_k;
    double p[PM_LLM_TOPK_MAX], total = 0;
    double vmax = vals[order[0]];
    for (uint32_t j = 0; j < m; j++) {
        p[j] = exp(((double)vals[order[j]] - vmax) / (double)s->temperature);
        total += p[j];
    }
    /* top_p: the shortest prefix whose mass reaches top_p (at least one);
     * equal candidates at the boundary stay together, so the cut never
     * depends on the order of ties. */
    if (s->top_p > 0 && s->top_p < 1) {
        double cum = 0;
        uint32_t keep = m;
        for (uint32_t j = 0; j < m; j++) {
            cum += p[j] / total;
            if (cum >= (double)s->top_p) {
                keep = j + 1;
                while (keep < m && vals[order[keep]] == vals[order[j]]) keep++;
                break;
            }
        }
        m = keep;
        total = 0;
        for (uint32_t j = 0; j < m; j++) total += p[j];
    }
    double u = next_uniform(s) * total, cum = 0;
    for (uint32_t j = 0; j < m; j++) {
        cum += p[j];
        if (u < cum) return ids[order[j]];
    }
    return ids[order[m - 1]];
}
