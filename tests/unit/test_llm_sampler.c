/* The host sampler (src/models/sampler.c): greedy choice and ties, the drawn
 * distribution against softmax(v / T) computed here independently (a
 * chi-square bound with a fixed seed and many draws), the top-k and top-p
 * cuts, and seeded reproducibility. */
#include "polymorph/llm.h"
#include "test.h"

#include <math.h>

enum { DRAWS = 200000 };

/* Chi-square statistic of observed counts against probabilities p (n bins). */
static double chi_square(const uint64_t *count, const double *p, uint32_t n, uint64_t draws)
{
    double x2 = 0;
    for (uint32_t i = 0; i < n; i++) {
        double e = p[i] * (double)draws;
        x2 += ((double)count[i] - e) * ((double)count[i] - e) / e;
    }
    return x2;
}

/* Draw `draws` picks and count them per candidate position (ids are 100+i). */
static void draw_counts(pm_sampler *s, const int32_t *ids, const float *vals, uint32_t n, uint64_t draws,
                        uint64_t *count)
{
    memset(count, 0, sizeof *count * n);
    for (uint64_t d = 0; d < draws; d++) {
        int32_t id = pm_sampler_pick(s, ids, vals, n);
        for (uint32_t i = 0; i < n; i++)
            if (ids[i] == id) count[i]++;
    }
}

TEST(test_greedy)
{
    pm_sampler s;
    pm_sampler_init(&s, 0.0f, 40, 0.9f, 1);
    const int32_t ids[4] = {7, 3, 9, 1};
    const float vals[4] = {1.0f, 2.5f, -1.0f, 0.0f};
    CHECK(pm_sampler_pick(&s, ids, vals, 4) == 3);
    /* Ties go to the lower id whatever the order; NaN never wins. */
    const int32_t tie_ids[3] = {12, 5, 8};
    const float tie_vals[3] = {2.0f, 2.0f, 1.0f};
    CHECK(pm_sampler_pick(&s, tie_ids, tie_vals, 3) == 5);
    const float nan_vals[3] = {NAN, 1.0f, 3.0f};
    CHECK(pm_sampler_pick(&s, tie_ids, nan_vals, 3) == 8);
    /* A negative temperature is greedy too. */
    pm_sampler_init(&s, -1.0f, 0, 1.0f, 1);
    CHECK(pm_sampler_pick(&s, ids, vals, 4) == 3);
    CHECK(pm_sampler_pick(&s, ids, vals, 0) == -1);
}

TEST(test_k1)
{
    /* One candidate, or top_k = 1: always the best, at any temperature. */
    const int32_t ids[3] = {40, 41, 42};
    const float vals[3] = {0.5f, 0.4f, 0.3f};
    pm_sampler s;
    pm_sampler_init(&s, 5.0f, 0, 1.0f, 3);
    for (int i = 0; i < 1000; i++) CHECK(pm_sampler_pick(&s, ids, vals, 1) == 40);
    pm_sampler_init(&s, 5.0f, 1, 1.0f, 3);
    for (int i = 0; i < 1000; i++) CHECK(pm_sampler_pick(&s, ids, vals, 3) == 40);
}

TEST(test_distribution)
{
    const int32_t ids[5] = {100, 101, 102, 103, 104};
    const float vals[5] = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f};
    const float temps[3] = {0.7f, 1.0f, 2.5f};
    for (int t = 0; t < 3; t++) {
        double p[5], z = 0;
        for (int i = 0; i < 5; i++) z += p[i] = exp((double)vals[i] / (double)temps[t]);
        for (int i = 0; i < 5; i++) p[i] /= z;
        pm_sampler s;
        pm_sampler_init(&s, temps[t], 0, 1.0f, 0x5EEDu + (uint64_t)t);
        uint64_t count[5];
        draw_counts(&s, ids, vals, 5, DRAWS, count);
        double x2 = chi_square(count, p, 5, DRAWS);
        /* 4 degrees of freedom: P(X2 > 18.47) = 0.001. */
        CHECK_MSG(x2 < 18.47, "T = %g: chi-square %.2f (counts %llu %llu %llu %llu %llu)", (double)temps[t], x2,
                  (unsigned long long)count[0], (unsigned long long)count[1], (unsigned long long)count[2],
                  (unsigned long long)count[3], (unsigned long long)count[4]);
        /* The wrong temperature must be caught by the same bound. */
        double q[5], zq = 0;
        for (int i = 0; i < 5; i++) zq += q[i] = exp((double)vals[i] / ((double)temps[t] * 1.15));
        for (int i = 0; i < 5; i++) q[i] /= zq;
        CHECK(chi_square(count, q, 5, DRAWS) > 18.47);
    }
}

TEST(test_top_k)
{
    const int32_t ids[5] = {100, 101, 102, 103, 104};
    const float vals[5] = {1.0f, 0.9f, 0.8f, 0.7f, 0.6f};
    pm_sampler s;
    pm_sampler_init(&s, 1.0f, 2, 1.0f, 11);
    uint64_t count[5];
    draw_counts(&s, ids, vals, 5, DRAWS, count);
    CHECK(count[2] == 0 && count[3] == 0 && count[4] == 0);
    double p[2] = {1.0 / (1.0 + exp(-0.1)), 0};
    p[1] = 1.0 - p[0];
    CHECK_MSG(chi_square(count, p, 2, DRAWS) < 10.83, "top-k 2: %llu %llu", (unsigned long long)count[0],
              (unsigned long long)count[1]); /* 1 dof, P = 0.001 */
}

TEST(test_top_p_boundary)
{
    /* Masses 0.5, 0.3, 0.2 at T = 1. */
    const int32_t ids[3] = {100, 101, 102};
    const float vals[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    struct {
        float top_p;
        uint32_t keep;
    } cases[] = {{0.49f, 1}, {0.51f, 2}, {0.79f, 2}, {0.81f, 3}, {1.0f, 3}, {0.0f, 3}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        pm_sampler s;
        pm_sampler_init(&s, 1.0f, 0, cases[c].top_p, 21 + c);
        uint64_t count[3];
        draw_counts(&s, ids, vals, 3, DRAWS / 4, count);
        uint32_t seen = 0;
        for (int i = 0; i < 3; i++) seen += count[i] > 0;
        CHECK_MSG(seen == cases[c].keep, "top_p %g kept %u candidates, expected %u", (double)cases[c].top_p, seen,
                  cases[c].keep);
        for (uint32_t i = cases[c].keep; i < 3; i++) CHECK(count[i] == 0);
        if (cases[c].keep == 2) {
            /* Renormalised over the kept mass: 0.5 / 0.8 and 0.3 / 0.8. */
            double p[2] = {0.625, 0.375};
            CHECK(chi_square(count, p, 2, DRAWS / 4) < 10.83);
        }
    }
}

TEST(test_ties)
{
    /* Equal values draw equally often; a top-p cut inside a run of equal
     * values keeps the whole run, so the result does not depend on their order. */
    const int32_t ids[4] = {100, 101, 102, 103};
    const float vals[4] = {1.0f, 1.0f, 1.0f, 0.0f};
    pm_sampler s;
    pm_sampler_init(&s, 1.0f, 0, 1.0f, 31);
    uint64_t count[4];
    draw_counts(&s, ids, vals, 4, DRAWS, count);
    double e = exp(1.0), z = 3 * e + 1;
    double p[4] = {e / z, e / z, e / z, 1 / z};
    CHECK_MSG(chi_square(count, p, 4, DRAWS) < 16.27, "ties: %llu %llu %llu %llu", (unsigned long long)count[0],
              (unsigned long long)count[1], (unsigned long long)count[2], (unsigned long long)count[3]); /* 3 dof */
    pm_sampler_init(&s, 1.0f, 0, 0.2f, 32);
    draw_counts(&s, ids, vals, 4, DRAWS / 4, count);
    CHECK(count[0] > 0 && count[1] > 0 && count[2] > 0 && count[3] == 0);
}

TEST(test_seeded)
{
    const int32_t ids[6] = {1, 2, 3, 4, 5, 6};
    const float vals[6] = {0.3f, 0.2f, 0.1f, 0.0f, -0.1f, -0.2f};
    pm_sampler a, b, c;
    pm_sampler_init(&a, 1.0f, 0, 0.95f, 42);
    pm_sampler_init(&b, 1.0f, 0, 0.95f, 42);
    pm_sampler_init(&c, 1.0f, 0, 0.95f, 43);
    int same_ab = 1, same_ac = 1;
    for (int i = 0; i < 200; i++) {
        int32_t x = pm_sampler_pick(&a, ids, vals, 6), y = pm_sampler_pick(&b, ids, vals, 6),
                z = pm_sampler_pick(&c, ids, vals, 6);
        same_ab &= x == y;
        same_ac &= x == z;
    }
    CHECK(same_ab);
    CHECK(!same_ac);
    /* Seed 0 is a valid seed (the state is mixed, never zero). */
    pm_sampler_init(&a, 1.0f, 0, 1.0f, 0);
    CHECK(a.state != 0);
    uint64_t count[6];
    draw_counts(&a, ids, vals, 6, 6000, count);
    for (int i = 0; i < 6; i++) CHECK(count[i] > 0);
}

int main(void)
{
    RUN(test_greedy);
    RUN(test_k1);
    RUN(test_distribution);
    RUN(test_top_k);
    RUN(test_top_p_boundary);
    RUN(test_ties);
    RUN(test_seeded);
    return TEST_SUMMARY();
}
