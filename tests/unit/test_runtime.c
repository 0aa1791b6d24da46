/* Runtime tests: the address-range allocator against a simple model (random
 * alloc/free sequences: no overlaps, alignment honoured, first fit, full
 * reuse after freeing everything), its error cases, and the device API
 * (host copies, bounds, program loads reserving DRAM). */
#include "polymorph/runtime.h"
#include "test.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: a fixed generator so every failure reproduces from its seed. */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* ---- the model: live blocks kept sorted by address ---- */
#define MODEL_MAX 512
typedef struct model {
    uint64_t base, size;
    uint64_t addr[MODEL_MAX], len[MODEL_MAX];
    int n;
} model;

static void model_insert(model *m, uint64_t addr, uint64_t len)
{
    int i = m->n;
    while (i > 0 && m->addr[i - 1] > addr) {
        m->addr[i] = m->addr[i - 1];
        m->len[i] = m->len[i - 1];
        i--;
    }
    m->addr[i] = addr;
    m->len[i] = len;
    m->n++;
}

static void model_remove(model *m, int i)
{
    for (int k = i; k + 1 < m->n; k++) {
        m->addr[k] = m->addr[k + 1];
        m->len[k] = m->len[k + 1];
    }
    m->n--;
}

/* Lowest aligned address where len fits, computed independently by
 * scanning candidate addresses gap by gap; false if none. */
static bool model_first_fit(const model *m, uint64_t len, uint64_t align, uint64_t *out)
{
    uint64_t lo = m->base;
    for (int i = 0; i <= m->n; i++) {
        uint64_t hi = i < m->n ? m->addr[i] : m->base + m->size;
        uint64_t start = (lo + align - 1) / align * align;
        if (start >= lo && start <= hi && hi - start >= len) {
            *out = start;
            return true;
        }
        if (i < m->n) lo = m->addr[i] + m->len[i];
    }
    return false;
}

static bool model_consistent(const model *m)
{
    for (int i = 0; i < m->n; i++) {
        if (m->addr[i] < m->base || m->addr[i] + m->len[i] > m->base + m->size) return false;
        if (i + 1 < m->n && m->addr[i] + m->len[i] > m->addr[i + 1]) return false;
    }
    return true;
}

static void property_run(uint64_t seed, uint64_t base, uint64_t size)
{
    pm_allocator *a = NULL;
    pm_error err;
    CHECK(pm_allocator_create(base, size, &a, &err) == PM_OK);
    if (!a) return;
    model m = {.base = base, .size = size, .n = 0};
    uint64_t s = seed;
    int allocs = 0, failures = 0;
    for (int step = 0; step < 4000; step++) {
        bool do_alloc = m.n == 0 || (m.n < MODEL_MAX && rng_next(&s) % 100 < 55);
        if (do_alloc) {
            uint64_t len = 1 + rng_next(&s) % (size / 16);
            if (rng_next(&s) % 8 == 0) len = 1 + rng_next(&s) % 8; /* many tiny blocks too */
            uint64_t align_pick = rng_next(&s) % 9;
            uint64_t align = align_pick == 0 ? 0 : (uint64_t)1 << (align_pick - 1) * 2; /* 0,1,4,..,16384 */
            uint64_t want_align = align ? align : 64;
            uint64_t expect = 0, got = 0;
            bool fits = model_first_fit(&m, len, want_align, &expect);
            pm_status st = pm_allocator_alloc(a, len, align, &got, &err);
            CHECK_MSG((st == PM_OK) == fits, "seed %" PRIu64 " step %d: alloc(%" PRIu64 ", %" PRIu64 ") -> %s, model %s",
                      seed, step, len, align, pm_status_name(st), fits ? "fits" : "no fit");
            if (st == PM_OK && fits) {
                CHECK_MSG(got == expect, "seed %" PRIu64 " step %d: got 0x%" PRIx64 ", first fit is 0x%" PRIx64, seed,
                          step, got, expect);
                CHECK(got % want_align == 0);
                model_insert(&m, got, len);
                allocs++;
            } else if (st != PM_OK) {
                CHECK(st == PM_ERR_NOMEM);
                failures++;
            }
        } else {
            int i = (int)(rng_next(&s) % (uint64_t)m.n);
            CHECK(pm_allocator_free(a, m.addr[i], &err) == PM_OK);
            model_remove(&m, i);
        }
        CHECK(model_consistent(&m));
        CHECK(pm_allocator_block_count(a) == (size_t)m.n);
        uint64_t used = 0;
        for (int i = 0; i < m.n; i++) used += m.len[i];
        CHECK(pm_allocator_used_bytes(a) == used);
        if (pm_test_case_failed) break;
    }
    CHECK(allocs > 100);
    /* Free everything in random order: the whole range must be one block again. */
    while (m.n) {
        int i = (int)(rng_next(&s) % (uint64_t)m.n);
        CHECK(pm_allocator_free(a, m.addr[i], &err) == PM_OK);
        model_remove(&m, i);
    }
    CHECK(pm_allocator_used_bytes(a) == 0);
    CHECK(pm_allocator_largest_free(a) == size);
    uint64_t whole = 0;
    CHECK(pm_allocator_alloc(a, size, 1, &whole, &err) == PM_OK);
    CHECK(whole == base);
    CHECK(pm_allocator_free(a, whole, &err) == PM_OK);
    (void)failures;
    pm_allocator_destroy(a);
}

TEST(allocator_property)
{
    for (uint64_t seed = 1; seed <= 12; seed++) property_run(seed * 0x9E3779B97F4A7C15ULL, 0, 1 << 20);
    property_run(77, 0x1000, 100000);   /* base not aligned to large alignments */
    property_run(78, 0x10003, 65537);   /* odd base and size */
}

TEST(allocator_errors)
{
    pm_allocator *a = NULL;
    pm_error err;
    CHECK(pm_allocator_create(0, 0, &a, &err) == PM_ERR_INVALID);
    CHECK(pm_allocator_create(UINT64_MAX - 10, 100, &a, &err) == PM_ERR_INVALID);
    CHECK(pm_allocator_create(0, 4096, &a, &err) == PM_OK);
    uint64_t x = 0, y = 0;
    CHECK(pm_allocator_alloc(a, 0, 0, &x, &err) == PM_ERR_INVALID);
    CHECK(pm_allocator_alloc(a, 16, 48, &x, &err) == PM_ERR_INVALID);
    CHECK(strstr(err.message, "power of two") != NULL);
    CHECK(pm_allocator_alloc(a, 4097, 1, &x, &err) == PM_ERR_NOMEM);
    CHECK(pm_allocator_alloc(a, UINT64_MAX, 1, &x, &err) == PM_ERR_NOMEM);
    CHECK(pm_allocator_alloc(a, 100, 0, &x, &err) == PM_OK);
    CHECK(x == 0);
    CHECK(pm_allocator_alloc(a, 100, 0, &y, &err) == PM_OK);
    CHECK(y == 128); /* default alignment is 64 */
    /* free: interior address, unknown address, double free */
    CHECK(pm_allocator_free(a, x + 8, &err) == PM_ERR_INVALID);
    CHECK(strstr(err.message, "inside") != NULL);
    CHECK(pm_allocator_free(a, 3000, &err) == PM_ERR_INVALID);
    CHECK(strstr(err.message, "not a live allocation") != NULL);
    CHECK(pm_allocator_free(a, x, &err) == PM_OK);
    CHECK(pm_allocator_free(a, x, &err) == PM_ERR_INVALID);
    CHECK(strstr(err.message, "already freed") != NULL);
    CHECK(pm_allocator_block_count(a) == 1);
    /* the freed hole is reused by the next fitting request (first fit) */
    CHECK(pm_allocator_alloc(a, 64, 64, &x, &err) == PM_OK);
    CHECK(x == 0);
    CHECK(pm_allocator_free(a, x, &err) == PM_OK);
    CHECK(pm_allocator_free(a, y, &err) == PM_OK);
    CHECK(pm_allocator_used_bytes(a) == 0);
    pm_allocator_destroy(a);
}

TEST(allocator_reservations)
{
    pm_allocator *a = NULL;
    pm_error err;
    CHECK(pm_allocator_create(0, 1 << 16, &a, &err) == PM_OK);
    uint64_t x = 0;
    CHECK(pm_allocator_reserve(a, 0, 256, 1, &err) == PM_OK);
    CHECK(pm_allocator_reserve(a, 1024, 256, 1, &err) == PM_OK);
    CHECK(pm_allocator_reserve(a, 100, 10, 0, &err) == PM_ERR_INVALID);        /* tag 0 */
    CHECK(pm_allocator_reserve(a, 200, 100, 2, &err) == PM_ERR_INVALID);       /* overlaps the tail of [0,256) */
    CHECK(strstr(err.message, "collides") != NULL);
    CHECK(pm_allocator_reserve(a, 1000, 100, 2, &err) == PM_ERR_INVALID);      /* overlaps the head of [1024,..) */
    CHECK(pm_allocator_reserve(a, 1 << 16, 1, 2, &err) == PM_ERR_INVALID);     /* outside */
    CHECK(pm_allocator_reserve(a, 65535, 2, 2, &err) == PM_ERR_INVALID);       /* straddles the end */
    CHECK(pm_allocator_reserve(a, UINT64_MAX, 2, 2, &err) == PM_ERR_INVALID);  /* wraps */
    CHECK(pm_allocator_reserve(a, 256, 768, 2, &err) == PM_OK);                /* exactly the gap */
    CHECK(pm_allocator_free(a, 0, &err) == PM_ERR_INVALID);                     /* a reservation, not an allocation */
    CHECK(strstr(err.message, "reserved") != NULL);
    /* allocations go around reservations */
    CHECK(pm_allocator_alloc(a, 64, 64, &x, &err) == PM_OK);
    CHECK(x == 1280);
    CHECK(pm_allocator_reserve(a, 1300, 4, 3, &err) == PM_ERR_INVALID);        /* inside a live allocation */
    CHECK(strstr(err.message, "live allocation") != NULL);
    CHECK(pm_allocator_release_tag(a, 1) == 2);
    CHECK(pm_allocator_release_tag(a, 1) == 0);
    CHECK(pm_allocator_used_bytes(a) == 768 + 64);
    CHECK(pm_allocator_release_tag(a, 2) == 1);
    CHECK(pm_allocator_free(a, x, &err) == PM_OK);
    CHECK(pm_allocator_largest_free(a) == 1 << 16);
    CHECK(pm_allocator_reserve(a, 10, 0, 5, &err) == PM_OK); /* empty: occupies nothing */
    CHECK(pm_allocator_block_count(a) == 0);
    pm_allocator_destroy(a);
}

/* ---- the device ---- */

static pm_device *open_edge(void)
{
    pm_config cfg;
    pm_error err;
    pm_device *dev = NULL;
    CHECK(pm_config_preset("edge", &cfg, &err) == PM_OK);
    CHECK(pm_device_open(&cfg, &dev, &err) == PM_OK);
    return dev;
}

/* A program with one DRAM section at [base, base + bytes): copies its first
 * 64 bytes to base + 64 on the engine. */
static pm_status assemble_copy(uint64_t base, uint64_t bytes, pm_program *prog, pm_error *err)
{
    char text[1024];
    snprintf(text, sizeof text,
             "        .dram 0x%llx\n"
             "buf:    .zero %llu\n"
             "        .tensor buf, f32, %llu\n"
             "        .text\n"
             "        li r1, 64\n"
             "        li r2, 1\n"
             "        dma.shape r1, r2, r2\n"
             "        li r3, buf\n"
             "        li r4, buf + 64\n"
             "        li r5, 0\n"
             "        dma.ld r5, r3\n"
             "        fence dma.ld\n"
             "        dma.st r4, r5\n"
             "        halt\n",
             (unsigned long long)base, (unsigned long long)bytes, (unsigned long long)bytes / 4);
    pm_program_init(prog);
    return pm_assemble("copy.pasm", text, prog, err);
}

TEST(device_memory)
{
    pm_device *dev = open_edge();
    if (!dev) return;
    pm_error err;
    const pm_config *cfg = pm_device_config(dev);
    CHECK(strcmp(cfg->name, "edge") == 0);
    uint64_t a = 0, b = 0;
    CHECK(pm_device_alloc(dev, 1000, 0, &a, &err) == PM_OK);
    CHECK(pm_device_alloc(dev, 1000, 4096, &b, &err) == PM_OK);
    CHECK(a % 64 == 0 && b % 4096 == 0 && (b >= a + 1000 || b + 1000 <= a));
    uint8_t src[1000], dst[1000];
    for (int i = 0; i < 1000; i++) src[i] = (uint8_t)(i * 7 + 1);
    CHECK(pm_device_write(dev, b, src, sizeof src, &err) == PM_OK);
    CHECK(pm_device_read(dev, b, dst, sizeof dst, &err) == PM_OK);
    CHECK(memcmp(src, dst, sizeof src) == 0);
    /* bounds: the last byte is fine, one past is not, nor a wrapping range */
    uint64_t end = cfg->dram_bytes;
    CHECK(pm_device_write(dev, end - 1, src, 1, &err) == PM_OK);
    CHECK(pm_device_write(dev, end - 1, src, 2, &err) == PM_ERR_INVALID);
    CHECK(strstr(err.message, "outside DRAM") != NULL);
    CHECK(pm_device_read(dev, UINT64_MAX - 3, dst, 8, &err) == PM_ERR_INVALID);
    /* SRAM: per engine, the engine index is checked */
    CHECK(pm_device_sram_write(dev, 0, 128, src, 100, &err) == PM_OK);
    CHECK(pm_device_sram_read(dev, 0, 128, dst, 100, &err) == PM_OK);
    CHECK(memcmp(src, dst, 100) == 0);
    CHECK(pm_device_sram_write(dev, 1, 0, src, 4, &err) == PM_ERR_INVALID);
    CHECK(pm_device_sram_read(dev, 0, cfg->sram_bytes - 2, dst, 4, &err) != PM_OK);
    /* free errors pass through with context */
    CHECK(pm_device_free(dev, a + 1, &err) == PM_ERR_INVALID);
    CHECK(pm_device_free(dev, a, &err) == PM_OK);
    CHECK(pm_device_free(dev, a, &err) == PM_ERR_INVALID);
    CHECK(strstr(err.message, "already freed") != NULL);
    CHECK(pm_device_alloc(dev, 0, 0, &a, &err) == PM_ERR_INVALID);
    CHECK(pm_device_alloc(dev, 16, 3, &a, &err) == PM_ERR_INVALID);
    CHECK(pm_device_alloc(dev, cfg->dram_bytes, 1, &a, &err) == PM_ERR_NOMEM);
    CHECK(pm_device_free(dev, b, &err) == PM_OK);
    pm_device_close(dev);
    pm_device_close(NULL);
}

TEST(device_load_reserves_dram)
{
    pm_device *dev = open_edge();
    if (!dev) return;
    pm_error err;
    pm_program prog;
    CHECK(assemble_copy(0x10000, 4096, &prog, &err) == PM_OK);
    /* a live allocation where the program wants its section: the load fails
     * and leaves the allocation alone */
    uint64_t a = 0, b = 0;
    CHECK(pm_device_alloc(dev, 0x20000, 0, &a, &err) == PM_OK);
    CHECK(a == 0);
    CHECK(pm_device_load(dev, &prog, 0, &err) == PM_ERR_INVALID);
    CHECK(strstr(err.message, "collides") != NULL);
    CHECK(pm_device_free(dev, a, &err) == PM_OK);
    /* now it loads, and allocations go around the section */
    CHECK(pm_device_load(dev, &prog, 0, &err) == PM_OK);
    CHECK(pm_device_alloc(dev, 0x20000, 0, &b, &err) == PM_OK);
    CHECK(b >= 0x10000 + 4096);
    CHECK(pm_device_free(dev, 0x10000, &err) == PM_ERR_INVALID); /* a section, not an allocation */
    CHECK(strstr(err.message, "reserved") != NULL);
    /* reloading the same program on the same engines replaces it */
    CHECK(pm_device_load(dev, &prog, 0, &err) == PM_OK);
    CHECK(pm_device_load(dev, &prog, 1, &err) == PM_OK);
    CHECK(pm_device_load(dev, &prog, 2, &err) == PM_ERR_INVALID); /* edge has one engine */
    /* host data in, run, result out; counters pass through */
    float in[16], out[16];
    for (int i = 0; i < 16; i++) in[i] = (float)i * 1.5f - 3.0f;
    CHECK(pm_device_write(dev, 0x10000, in, sizeof in, &err) == PM_OK);
    pm_device_reset_counters(dev);
    CHECK(pm_device_run(dev, NULL, &err) == PM_OK);
    CHECK(pm_device_read(dev, 0x10000 + 64, out, sizeof out, &err) == PM_OK);
    CHECK(memcmp(in, out, sizeof in) == 0);
    pm_counters k;
    pm_device_counters(dev, &k);
    CHECK(k.cycles > 0 && k.instructions > 0);
    CHECK(k.dram_read_bytes == 64 && k.dram_write_bytes == 64);
    pm_device_reset_counters(dev);
    pm_device_counters(dev, &k);
    CHECK(k.cycles == 0 && k.instructions == 0);
    /* a program whose section lies outside DRAM fails to load */
    pm_program far;
    CHECK(assemble_copy(pm_device_config(dev)->dram_bytes - 64, 4096, &far, &err) == PM_OK);
    CHECK(pm_device_load(dev, &far, 0, &err) != PM_OK);
    /* ... and the device still holds the first program's reservation */
    CHECK(pm_device_free(dev, 0x10000, &err) == PM_ERR_INVALID);
    pm_program_free(&far);
    CHECK(pm_device_free(dev, b, &err) == PM_OK);
    pm_program_free(&prog);
    pm_device_close(dev);
}

TEST(device_fault_is_reported)
{
    pm_device *dev = open_edge();
    if (!dev) return;
    pm_error err;
    pm_program prog;
    pm_program_init(&prog);
    CHECK(pm_assemble("loop.pasm", "top: jmp top\n", &prog, &err) == PM_OK);
    CHECK(pm_device_load(dev, &prog, 0, &err) == PM_OK);
    pm_run_options opts = {1000, NULL};
    CHECK(pm_device_run(dev, &opts, &err) == PM_ERR_FAULT);
    CHECK(strstr(err.message, "engine 0") != NULL);
    pm_program_free(&prog);
    pm_device_close(dev);
    pm_config cfg;
    CHECK(pm_config_preset("edge", &cfg, &err) == PM_OK);
    cfg.engines = 0; /* invalid: the sim refuses, open reports it */
    pm_device *bad = NULL;
    CHECK(pm_device_open(&cfg, &bad, &err) != PM_OK);
    CHECK(bad == NULL && err.message[0] != 0);
}

int main(void)
{
    RUN(allocator_property);
    RUN(allocator_errors);
    RUN(allocator_reservations);
    RUN(device_memory);
    RUN(device_load_reserves_dram);
    RUN(device_fault_is_reported);
    return TEST_SUMMARY();
}
