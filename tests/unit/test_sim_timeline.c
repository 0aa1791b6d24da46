/* The simulator's bandwidth calendar (src/sim/sim_timeline.c: the DRAM
 * channel and the SRAM ports) against a brute-force oracle that grants
 * cycle by cycle: random requests of random rates, amounts and start
 * cycles, with history forgotten as time advances. */
#include "../../src/sim/sim_internal.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

#define HORIZON 60000

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(uint64_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (rng_state >> 11) % n;
}

/* The oracle: each cycle from `at` on grants min(rate, what is left of the
 * capacity) until the amount is served (the last cycle's grant is held in
 * full, as the calendar does). */
static void oracle_take(uint64_t *used, uint64_t cap, uint64_t at, uint64_t amount, uint64_t rate, uint64_t *first,
                        uint64_t *end)
{
    if (rate > cap) rate = cap;
    *first = *end = at;
    bool started = false;
    for (uint64_t c = at; amount; c++) {
        uint64_t g = rate < cap - used[c] ? rate : cap - used[c];
        if (!g) continue;
        if (!started) *first = c, started = true;
        used[c] += g;
        amount -= g < amount ? g : amount;
        *end = c + 1;
    }
}

/* Sorted, disjoint, grants in 1..capacity, neighbours that touch differ. */
static bool well_formed(const pm_timeline *tl)
{
    for (size_t k = tl->head; k < tl->count; k++) {
        const pm_span *s = &tl->busy[k];
        if (s->lo >= s->hi || s->used < 1 || s->used > tl->capacity) return false;
        if (k > tl->head) {
            const pm_span *p = s - 1;
            if (p->hi > s->lo || (p->hi == s->lo && p->used == s->used)) return false;
        }
    }
    return true;
}

static uint64_t granted_at(const pm_timeline *tl, uint64_t c)
{
    for (size_t k = tl->head; k < tl->count; k++)
        if (tl->busy[k].lo <= c && c < tl->busy[k].hi) return tl->busy[k].used;
    return 0;
}

TEST(test_calendar_against_oracle)
{
    static const uint64_t caps[] = {1, 3, 256};
    static uint64_t used[HORIZON];
    for (size_t ci = 0; ci < sizeof caps / sizeof caps[0]; ci++) {
        for (int round = 0; round < 20; round++) {
            uint64_t cap = caps[ci];
            pm_timeline tl;
            memset(&tl, 0, sizeof tl);
            pm_timeline_clear(&tl, cap);
            memset(used, 0, sizeof used);
            uint64_t bound = 0;
            bool ok = true;
            for (int r = 0; r < 300 && ok; r++) {
                /* rates beyond the capacity are clamped; each request needs at most
                 * 30 cycles at its own rate, so everything stays inside HORIZON */
                uint64_t at = bound + rnd(400), rate = 1 + rnd(cap + 2);
                uint64_t amount = rnd(4) ? 1 + rnd((rate < cap ? rate : cap) * 30) : 0;
                uint64_t f1, e1, f2, e2;
                pm_error err;
                CHECK(pm_timeline_take(&tl, at, amount, rate, &f1, &e1, &err) == PM_OK);
                oracle_take(used, cap, at, amount, rate, &f2, &e2);
                if (f1 != f2 || e1 != e2 || !well_formed(&tl)) {
                    CHECK_MSG(false, "cap %llu request %d (at %llu, amount %llu, rate %llu): [%llu, %llu) vs oracle "
                                     "[%llu, %llu)",
                              (unsigned long long)cap, r, (unsigned long long)at, (unsigned long long)amount,
                              (unsigned long long)rate, (unsigned long long)f1, (unsigned long long)e1,
                              (unsigned long long)f2, (unsigned long long)e2);
                    ok = false;
                }
                if (rnd(5) == 0) { /* time advances: earlier cycles are history */
                    bound += rnd(300);
                    pm_timeline_forget(&tl, bound);
                }
                if (e2 + 800 >= HORIZON) {
                    CHECK_MSG(false, "the test outgrew its horizon (%llu)", (unsigned long long)e2);
                    ok = false;
                }
            }
            for (uint64_t c = bound; ok && c < HORIZON; c += 1 + rnd(7))
                if (granted_at(&tl, c) != used[c]) {
                    CHECK_MSG(false, "cap %llu: cycle %llu holds %llu, oracle %llu", (unsigned long long)cap,
                              (unsigned long long)c, (unsigned long long)granted_at(&tl, c),
                              (unsigned long long)used[c]);
                    ok = false;
                }
            pm_timeline_free(&tl);
        }
    }
}

TEST(test_calendar_cases)
{
    /* Hand cases on a one-transfer-at-a-time channel (capacity 1). */
    pm_timeline tl;
    memset(&tl, 0, sizeof tl);
    pm_timeline_clear(&tl, 1);
    uint64_t f, e;
    pm_error err;
    CHECK(pm_timeline_take(&tl, 100, 50, 1, &f, &e, &err) == PM_OK && f == 100 && e == 150);
    /* a younger request starting earlier fills the gap before it ... */
    CHECK(pm_timeline_take(&tl, 10, 40, 1, &f, &e, &err) == PM_OK && f == 10 && e == 50);
    /* ... and one that does not fit is split around it: from 20 (busy until 50), 50 cycles in
     * [50, 100), 20 in [150, 170) */
    CHECK(pm_timeline_take(&tl, 20, 70, 1, &f, &e, &err) == PM_OK && f == 50 && e == 170);
    CHECK(tl.count - tl.head == 1 && tl.busy[tl.head].lo == 10 && tl.busy[tl.head].hi == 170);
    CHECK(pm_timeline_take(&tl, 120, 0, 1, &f, &e, &err) == PM_OK && f == 120 && e == 120);
    pm_timeline_forget(&tl, 170);
    CHECK(tl.count == 0);
    pm_timeline_free(&tl);

    /* A port of 256 B/cycle: a DMA at 52 B/cycle leaves 204 for a vector op. */
    pm_timeline_clear(&tl, 256);
    CHECK(pm_timeline_take(&tl, 4, 65536, 52, &f, &e, &err) == PM_OK && f == 4 && e == 4 + 1261);
    CHECK(pm_timeline_take(&tl, 9, 49152, 256, &f, &e, &err) == PM_OK && f == 9 && e == 9 + 241);
    pm_timeline_free(&tl);
}

int main(void)
{
    RUN(test_calendar_against_oracle);
    RUN(test_calendar_cases);
    return TEST_SUMMARY();
}
