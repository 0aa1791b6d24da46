/* The simulator's SRAM bank counter (src/sim/sim_banks.c: closed-form bytes
 * per bank of contiguous ranges) against a byte-by-byte oracle that applies
 * the interleave bank(a) = (a / width) % banks to every address. */
#include "../../src/sim/sim_internal.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(uint64_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (rng_state >> 11) % n;
}

static pm_config cfg_of(uint32_t banks, uint32_t bytes_per_cycle)
{
    pm_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.sram_banks = banks;
    cfg.sram_bytes_per_cycle = bytes_per_cycle;
    return cfg;
}

TEST(test_banks_against_oracle)
{
    static const uint32_t shapes[][2] = {{1, 1}, {1, 256}, {16, 256}, {4, 32}, {32, 2048}, {256, 256}, {8, 8}, {2, 6}};
    uint64_t count[256];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        pm_config cfg = cfg_of(shapes[s][0], shapes[s][1]);
        uint64_t w = shapes[s][1] / shapes[s][0];
        for (int trial = 0; trial < 300; trial++) {
            pm_banks b;
            pm_banks_init(&b, &cfg);
            memset(count, 0, sizeof count);
            int ranges = 1 + (int)rnd(6);
            for (int k = 0; k < ranges; k++) {
                uint64_t addr = rnd(20000), len = rnd(k == 0 ? 9000 : 300);
                pm_banks_add(&b, addr, len);
                for (uint64_t a = addr; a < addr + len; a++) count[(a / w) % shapes[s][0]]++;
            }
            uint64_t most = 0;
            for (uint32_t k = 0; k < shapes[s][0]; k++)
                if (count[k] > most) most = count[k];
            CHECK_MSG(pm_banks_busiest(&b) == most, "banks %u width %llu trial %d: %llu, want %llu", shapes[s][0],
                      (unsigned long long)w, trial, (unsigned long long)pm_banks_busiest(&b),
                      (unsigned long long)most);
            CHECK(pm_banks_cycles(&b) == (most + w - 1) / w);
        }
    }
}

/* One contiguous range is balanced: its busiest bank needs exactly
 * ceil(bytes / bytes_per_cycle) cycles, whatever its alignment (each bank
 * holds width bytes per whole period, and a partial period of r < period
 * bytes puts at most width of them in any one bank). */
TEST(test_banks_contiguous_is_port)
{
    pm_config cfg = cfg_of(16, 256);
    for (uint64_t addr = 0; addr < 600; addr += 7)
        for (uint64_t len = 1; len < 2000; len += 13) {
            pm_banks b;
            pm_banks_init(&b, &cfg);
            pm_banks_add(&b, addr, len);
            CHECK_MSG(pm_banks_cycles(&b) == (len + 255) / 256, "[%llu, +%llu)", (unsigned long long)addr,
                      (unsigned long long)len);
        }
    /* empty: no cycles */
    pm_banks b;
    pm_banks_init(&b, &cfg);
    pm_banks_add(&b, 100, 0);
    CHECK(pm_banks_busiest(&b) == 0 && pm_banks_cycles(&b) == 0);
    /* 4-byte rows one period apart all land in bank 0: 1024 rows = 4096 B = 256 cycles of a 16 B bank */
    for (uint64_t r = 0; r < 1024; r++) pm_banks_add(&b, r * 256, 4);
    CHECK(pm_banks_busiest(&b) == 4096 && pm_banks_cycles(&b) == 256);
}

int main(void)
{
    RUN(test_banks_against_oracle);
    RUN(test_banks_contiguous_is_port);
    return TEST_SUMMARY();
}
