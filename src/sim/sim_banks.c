/* SRAM banks: byte address a lives in bank (a / w) % banks, w = bank width
 * = sram.bytes_per_cycle / sram.banks, and each bank moves w bytes a cycle.
 * An access pattern's port time is bounded by its busiest bank; this file
 * counts the bytes per bank of a set of contiguous ranges in O(1) per range. */
#include "sim_internal.h"

#include <string.h>

void pm_banks_init(pm_banks *b, const pm_config *cfg)
{
    /* The config guarantees 1 <= banks <= 256 and banks | bytes_per_cycle;
     * clamp anyway so a hand-built config cannot index out of the arrays. */
    uint32_t n = cfg->sram_banks;
    if (n < 1) n = 1;
    if (n > PM_MAX_SRAM_BANKS) n = PM_MAX_SRAM_BANKS;
    uint64_t bpc = cfg->sram_bytes_per_cycle ? cfg->sram_bytes_per_cycle : 1;
    b->banks = n;
    b->width = bpc / n ? bpc / n : 1;
    b->period = b->width * n;
    b->rounds = 0;
    memset(b->step, 0, (n + 1) * sizeof *b->step);
    memset(b->part, 0, n * sizeof *b->part);
}

/* Add (sign +1) or remove (-1) the bytes of [0, x) that lie in one period
 * past its last whole round: banks below x's bank hold w of them each, x's
 * bank holds x % w. */
static void edge(pm_banks *b, uint64_t x, int64_t sign)
{
    uint64_t r = x % b->period, k = r / b->width;
    b->step[0] += sign * (int64_t)b->width;
    b->step[k] -= sign * (int64_t)b->width;
    b->part[k] += sign * (int64_t)(r % b->width);
}

/* Bytes of [0, x) in bank k = (x / period) * w + (the edge terms above), so
 * [a, a + n) is the difference of two such prefixes. */
void pm_banks_add(pm_banks *b, uint64_t addr, uint64_t bytes)
{
    if (!bytes) return;
    uint64_t end = addr + bytes;
    b->rounds += end / b->period - addr / b->period;
    edge(b, end, 1);
    edge(b, addr, -1);
}

void pm_banks_per_bank(const pm_banks *b, uint64_t *bytes)
{
    int64_t run = 0;
    for (uint32_t k = 0; k < b->banks; k++) {
        run += b->step[k];
        int64_t n = (int64_t)(b->rounds * b->width) + run + b->part[k];
        bytes[k] = n > 0 ? (uint64_t)n : 0;
    }
}

uint64_t pm_banks_busiest(const pm_banks *b)
{
    uint64_t bytes[PM_MAX_SRAM_BANKS], most = 0;
    pm_banks_per_bank(b, bytes);
    for (uint32_t k = 0; k < b->banks; k++)
        if (bytes[k] > most) most = bytes[k];
    return most;
}

uint64_t pm_banks_cycles(const pm_banks *b) { return pm_ceil_div(pm_banks_busiest(b), b->width); }
