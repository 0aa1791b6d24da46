/* Simulator tests: every instruction's functional result against a plain C
 * computation, and the timing model against its documented formulas
 * (docs/simulator.md). Programs are written in assembly and assembled with
 * pm_assemble; inputs go in through the host memory API. */
#define _POSIX_C_SOURCE 200809L
#include "polymorph/config.h"
#include "polymorph/isa.h"
#include "polymorph/lfu.h"
#include "polymorph/numerics.h"
#include "polymorph/sim.h"
#include "harness_sim.h"
#include "test.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- harness ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) { return pm_test_xorshift(&rng_state); }
static float rndf(float lo, float hi) { return lo + (hi - lo) * (float)(rnd() & 0xFFFFFF) / (float)0x1000000; }

/* Assemble, load on every engine, run. */
static pm_status run_opts(pm_sim *sim, const char *src, const pm_run_options *opts, pm_error *err)
{
    pm_program prog;
    pm_program_init(&prog);
    pm_status st = pm_assemble("test.pasm", src, &prog, err);
    if (st) {
        fprintf(stderr, "assembly failed: %s\n%s\n", err->message, src);
        pm_program_free(&prog);
        return st;
    }
    st = pm_sim_load_program(sim, &prog, 0, err);
    pm_program_free(&prog);
    if (st) return st;
    return pm_sim_run(sim, opts, err);
}
static pm_status run(pm_sim *sim, const char *src, pm_error *err) { return run_opts(sim, src, NULL, err); }

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    static char buf[4][8192];
    static int k;
    char *b = buf[k++ & 3];
    va_list ap;
    va_start(ap, f);
    vsnprintf(b, sizeof buf[0], f, ap);
    va_end(ap);
    return b;
}

static int64_t reg(pm_sim *sim, uint32_t e, unsigned r)
{
    int64_t v = 0;
    pm_sim_reg_read(sim, e, r, &v, NULL);
    return v;
}

static uint64_t cycles(pm_sim *sim)
{
    pm_counters c;
    pm_sim_counters(sim, &c);
    return c.cycles;
}

static uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }
static uint64_t max2(uint64_t a, uint64_t b) { return a > b ? a : b; }

/* Independent RNE float -> bf16 for finite values (the oracle for bf16 stores). */
static uint16_t ref_bf16(float x)
{
    uint32_t u = pm_f32_bits(x);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static size_t esize(pm_format f) { return f == PM_FMT_F32 ? 4 : 2; }

/* Reference store of fp32 results in f (f32 exact, bf16 by ref_bf16, f16 by
 * the numerics layer's scalar converter). */
static void ref_store(pm_format f, const float *x, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        if (f == PM_FMT_F32) memcpy(out + 4 * i, &x[i], 4);
        else {
            uint16_t h = f == PM_FMT_BF16 ? ref_bf16(x[i]) : pm_f32_to_f16(x[i]);
            memcpy(out + 2 * i, &h, 2);
        }
    }
}
static void ref_load(pm_format f, const uint8_t *in, size_t n, float *x)
{
    for (size_t i = 0; i < n; i++) {
        if (f == PM_FMT_F32) memcpy(&x[i], in + 4 * i, 4);
        else {
            uint16_t h;
            memcpy(&h, in + 2 * i, 2);
            x[i] = f == PM_FMT_BF16 ? pm_f32_from_bits((uint32_t)h << 16) : pm_f16_to_f32(h);
        }
    }
}

/* Random values stored in format f into SRAM at addr; returns the stored fp32 values. */
static void put_random(pm_sim *sim, pm_format f, uint64_t addr, size_t n, float *vals, float lo, float hi)
{
    float *raw = malloc(n * sizeof *raw);
    uint8_t *bytes = malloc(n * 4);
    if (!raw || !bytes || n == 0) exit(2);
    for (size_t i = 0; i < n; i++) raw[i] = rndf(lo, hi);
    ref_store(f, raw, n, bytes);
    ref_load(f, bytes, n, vals);
    pm_sim_sram_write(sim, 0, addr, bytes, n * esize(f), NULL);
    free(raw);
    free(bytes);
}

static const char *fname(pm_format f) { return pm_format_get(f)->name; }

/* ---- scalar core ---- */

TEST(test_alu)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    pm_status st = run(sim,
                       "li r1, -7\n li r2, 3\n li r3, 0x7fffffffffff\n"
                       "add r4, r1, r2\n sub r5, r1, r2\n mul r6, r3, r3\n and r7, r1, r2\n or r8, r1, r2\n"
                       "xor r9, r1, r2\n shl r10, r1, r2\n shr r11, r1, r2\n sra r12, r1, r2\n slt r13, r1, r2\n"
                       "sltu r14, r1, r2\n min r15, r1, r2\n max r16, r1, r2\n addi r17, r1, 100\n muli r18, r1, -3\n"
                       "andi r19, r1, 0xff\n shli r20, r2, 62\n shri r21, r1, 60\n add r0, r2, r2\n"
                       "shl r22, r2, r1\n halt\n",
                       &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    int64_t a = -7, b = 3, c = 0x7fffffffffffll;
    uint64_t ua = (uint64_t)a;
    CHECK(reg(sim, 0, 4) == a + b);
    CHECK(reg(sim, 0, 5) == a - b);
    CHECK(reg(sim, 0, 6) == (int64_t)((uint64_t)c * (uint64_t)c));
    CHECK(reg(sim, 0, 7) == (a & b));
    CHECK(reg(sim, 0, 8) == (a | b));
    CHECK(reg(sim, 0, 9) == (a ^ b));
    CHECK(reg(sim, 0, 10) == (int64_t)(ua << 3));
    CHECK(reg(sim, 0, 11) == (int64_t)(ua >> 3));
    CHECK(reg(sim, 0, 12) == -1); /* -7 >> 3 arithmetic */
    CHECK(reg(sim, 0, 13) == 1);
    CHECK(reg(sim, 0, 14) == 0); /* unsigned: 0xfff..9 > 3 */
    CHECK(reg(sim, 0, 15) == -7);
    CHECK(reg(sim, 0, 16) == 3);
    CHECK(reg(sim, 0, 17) == 93);
    CHECK(reg(sim, 0, 18) == 21);
    CHECK(reg(sim, 0, 19) == (a & 0xff));
    CHECK(reg(sim, 0, 20) == (int64_t)((uint64_t)3 << 62));
    CHECK(reg(sim, 0, 21) == (int64_t)(ua >> 60));
    CHECK(reg(sim, 0, 0) == 0);
    CHECK(reg(sim, 0, 22) == (int64_t)((uint64_t)3 << ((uint64_t)a & 63)));
    pm_sim_destroy(sim);
}

TEST(test_lw_sw)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    pm_status st = run(sim, "li r1, 0x100\n li r2, -5\n sw r2, r1, 8\n lw r3, r1, 8\n li r4, 0x80000000\n"
                            "sw r4, r1, 12\n lw r5, r1, 12\n halt\n",
                       &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    CHECK(reg(sim, 0, 3) == -5);
    CHECK(reg(sim, 0, 5) == (int64_t)INT32_MIN); /* sign-extended */
    uint8_t w[4];
    pm_sim_sram_read(sim, 0, 0x108, w, 4, NULL);
    CHECK(w[0] == 0xFB && w[1] == 0xFF && w[2] == 0xFF && w[3] == 0xFF); /* little-endian */

    st = run(sim, "li r1, 0x102\n lw r3, r1, 0\n halt\n", &err);
    CHECK(st == PM_ERR_FAULT);
    CHECK_MSG(strcmp(err.message, "engine 0 pc 0x1 (lw): lw address 0x102 is not 4-byte aligned") == 0, "%s",
              err.message);
    st = run(sim, "li r1, 0x200000\n nop\n sw r1, r1, -2\n halt\n", &err);
    CHECK(st == PM_ERR_FAULT);
    CHECK_MSG(strcmp(err.message, "engine 0 pc 0x2 (sw): SRAM write [0x1ffffe, 0x200002) (r1 + -2) is out of "
                                  "bounds (SRAM is 0x200000 bytes)") == 0,
              "%s", err.message);
    pm_sim_destroy(sim);
}

TEST(test_branches_loops_csrr)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    /* sum 1..10 with a counted loop; branches of each kind; csrr values */
    pm_status st = run(sim,
                       "        li r1, 10\n li r2, 0\n"
                       "top:    add r2, r2, r1\n loop r1, top\n"
                       "        li r3, 5\n li r4, 7\n li r10, 0\n"
                       "        beq r3, r4, bad\n bne r3, r4, ok1\n jmp bad\n"
                       "ok1:    blt r4, r3, bad\n blt r3, r4, ok2\n jmp bad\n"
                       "ok2:    bge r3, r4, bad\n bge r4, r3, ok3\n jmp bad\n"
                       "ok3:    beq r3, r3, ok4\n jmp bad\n"
                       "ok4:    li r10, 1\n csrr r11, engine_id\n csrr r12, engines\n csrr r13, lanes\n"
                       "        csrr r14, cycle\n jmp done\n"
                       "bad:    li r10, 2\n"
                       "done:   halt\n",
                       &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    CHECK(reg(sim, 0, 2) == 55);
    CHECK(reg(sim, 0, 1) == 0);
    CHECK(reg(sim, 0, 10) == 1);
    CHECK(reg(sim, 0, 11) == 0);
    CHECK(reg(sim, 0, 12) == 1);
    CHECK(reg(sim, 0, 13) == 32);
    /* cycle: 2 li + 10 x (add, loop) with no loop bubble = 22; 3 li -> 25;
     * beq (not taken) 25, bne taken 26 (+1 bubble) -> blt 28, blt taken 29 ->
     * bge 31, bge taken 32 -> beq taken 34 -> li 36, csrr 37, 38, 39, csrr cycle at 40 */
    CHECK_MSG(reg(sim, 0, 14) == 40, "cycle = %lld", (long long)reg(sim, 0, 14));

    /* a branch past the end of the program faults (encoded by hand: the assembler rejects it) */
    pm_program prog;
    pm_program_init(&prog);
    pm_insn in[2] = {{.opcode = PM_OP_JMP, .op = {1000}}, {.opcode = PM_OP_HALT}};
    uint64_t words[2];
    CHECK(pm_encode(&in[0], &words[0], &err) == PM_OK);
    CHECK(pm_encode(&in[1], &words[1], &err) == PM_OK);
    prog.code = words;
    prog.code_count = 2;
    CHECK(pm_sim_load_program(sim, &prog, 0, &err) == PM_OK);
    CHECK(pm_sim_run(sim, NULL, &err) == PM_ERR_FAULT);
    CHECK_MSG(strcmp(err.message, "engine 0 pc 0x0 (jmp): branch target 1000 is outside the program (2 "
                                  "instructions)") == 0,
              "%s", err.message);
    /* running off the end without halt */
    in[1].opcode = PM_OP_NOP;
    in[0] = (pm_insn){.opcode = PM_OP_NOP};
    pm_encode(&in[0], &words[0], &err);
    pm_encode(&in[1], &words[1], &err);
    CHECK(pm_sim_load_program(sim, &prog, 0, &err) == PM_OK);
    CHECK(pm_sim_run(sim, NULL, &err) == PM_ERR_FAULT);
    CHECK_MSG(strstr(err.message, "engine 0 pc 0x2 (end of program): ran past the last instruction") != NULL, "%s",
              err.message);
    pm_sim_destroy(sim);
}

/* ---- vector unit ---- */

enum { OP_ADD, OP_SUB, OP_MUL, OP_MAX, OP_MIN, OP_CMPGT, OP_COUNT };
static const char *const op_names[OP_COUNT] = {"vadd", "vsub", "vmul", "vmax", "vmin", "vcmpgt"};

static float ref_maxnum(float a, float b)
{
    if (isnan(a)) return b;
    if (isnan(b)) return a;
    if (a == 0 && b == 0) return signbit(a) ? b : a;
    return a > b ? a : b;
}
static float ref_minnum(float a, float b)
{
    if (isnan(a)) return b;
    if (isnan(b)) return a;
    if (a == 0 && b == 0) return signbit(a) ? a : b;
    return a < b ? a : b;
}
static float ref_op(int op, float a, float b)
{
    switch (op) {
    case OP_ADD: return a + b;
    case OP_SUB: return a - b;
    case OP_MUL: return a * b;
    case OP_MAX: return ref_maxnum(a, b);
    case OP_MIN: return ref_minnum(a, b);
    default: return a > b ? 1.0f : 0.0f;
    }
}

#define SA 0x0
#define SB 0x60000
#define SC 0xC0000
#define SD 0x120000

TEST(test_vec_binary_random)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    const pm_format fmts[3] = {PM_FMT_F32, PM_FMT_BF16, PM_FMT_F16};
    float *a = malloc(70000 * sizeof *a), *b = malloc(70000 * sizeof *b), *r = malloc(70000 * sizeof *r);
    uint8_t *want = malloc(70000 * 4), *got = malloc(70000 * 4);
    for (int op = 0; op < OP_COUNT; op++)
        for (int fi = 0; fi < 3; fi++)
            for (int trial = 0; trial < 3; trial++) {
                pm_format f = fmts[fi];
                size_t n = trial == 0 ? 1 + rnd() % 31 : trial == 1 ? 33 + rnd() % 3000 : 20001;
                put_random(sim, f, SA, n, a, -100, 100);
                put_random(sim, f, SB, n, b, -100, 100);
                if (trial == 2) b[7] = a[7]; /* equal operands for vcmpgt/vmax */
                if (trial == 2) ref_store(f, b, n, want), pm_sim_sram_write(sim, 0, SB, want, n * esize(f), NULL);
                for (size_t i = 0; i < n; i++) r[i] = ref_op(op, a[i], b[i]);
                ref_store(f, r, n, want);
                pm_status st = run(sim,
                                   fmt("li r1, %d\n li r2, %d\n li r3, %d\n li r4, %zu\n %s.%s r3+, r1+, r2, r4\n halt\n",
                                       SA, SB, SC, n, op_names[op], fname(f)),
                                   &err);
                CHECK_MSG(st == PM_OK, "%s", err.message);
                pm_sim_sram_read(sim, 0, SC, got, n * esize(f), NULL);
                CHECK_MSG(memcmp(got, want, n * esize(f)) == 0, "%s.%s n=%zu", op_names[op], fname(f), n);
                /* post-increment by the bytes each operand covered; r2 has no '+' */
                CHECK(reg(sim, 0, 1) == (int64_t)(SA + n * esize(f)));
                CHECK(reg(sim, 0, 2) == SB);
                CHECK(reg(sim, 0, 3) == (int64_t)(SC + n * esize(f)));
            }
    free(a), free(b), free(r), free(want), free(got);
    pm_sim_destroy(sim);
}

TEST(test_vec_special_values)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    /* maxNum/minNum: a NaN loses to a number; +0 beats -0 for max */
    float a[6] = {NAN, 1.0f, NAN, -0.0f, 0.0f, -3.0f};
    float b[6] = {2.0f, NAN, NAN, 0.0f, -0.0f, INFINITY};
    pm_sim_sram_write(sim, 0, SA, a, sizeof a, NULL);
    pm_sim_sram_write(sim, 0, SB, b, sizeof b, NULL);
    pm_status st = run(sim, "li r1, 0\n li r2, 0x60000\n li r3, 0xC0000\n li r4, 6\n li r5, 0x120000\n"
                            "vmax.f32 r3, r1, r2, r4\n vmin.f32 r5, r1, r2, r4\n halt\n",
                       &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    float mx[6], mn[6];
    pm_sim_sram_read(sim, 0, SC, mx, sizeof mx, NULL);
    pm_sim_sram_read(sim, 0, SD, mn, sizeof mn, NULL);
    CHECK(mx[0] == 2.0f && mx[1] == 1.0f && isnan(mx[2]));
    CHECK(mx[3] == 0 && !signbit(mx[3]) && mx[4] == 0 && !signbit(mx[4]));
    CHECK(mx[5] == INFINITY);
    CHECK(mn[0] == 2.0f && mn[1] == 1.0f && isnan(mn[2]));
    CHECK(mn[3] == 0 && signbit(mn[3]) && mn[4] == 0 && signbit(mn[4]));
    CHECK(mn[5] == -3.0f);

    /* bf16 rounding: 1 + 2^-8 is a tie between 1 and 1+2^-7 -> even (1.0);
     * 1 + 3*2^-9 rounds up */
    float x[2] = {1.0f, 1.0f}, y[2] = {0x1p-8f, 0x3p-9f};
    uint16_t xb[2], yb[2], out[2];
    for (int i = 0; i < 2; i++) xb[i] = ref_bf16(x[i]), yb[i] = (uint16_t)(pm_f32_bits(y[i]) >> 16);
    pm_sim_sram_write(sim, 0, SA, xb, sizeof xb, NULL);
    pm_sim_sram_write(sim, 0, SB, yb, sizeof yb, NULL);
    st = run(sim, "li r1, 0\n li r2, 0x60000\n li r3, 0xC0000\n li r4, 2\n vadd.bf16 r3, r1, r2, r4\n halt\n", &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    pm_sim_sram_read(sim, 0, SC, out, sizeof out, NULL);
    CHECK_MSG(out[0] == 0x3F80, "0x%04x", out[0]);
    CHECK_MSG(out[1] == 0x3F81, "0x%04x", out[1]);

    /* unsupported element formats fault with the format's name */
    st = run(sim, "li r4, 2\n vadd.e4m3 r3, r1, r2, r4\n halt\n", &err);
    CHECK(st == PM_ERR_FAULT);
    CHECK_MSG(strncmp(err.message, "engine 0 pc 0x1 (vadd): format e4m3 not supported by vadd", 57) == 0, "%s",
              err.message);
    /* n = 0 is a no-op (even with an out-of-range address); negative n faults */
    st = run(sim, "li r1, -1\n vadd.f32 r1, r1, r1, r0\n halt\n", &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    st = run(sim, "li r4, -3\n vadd.f32 r3, r1, r2, r4\n halt\n", &err);
    CHECK(st == PM_ERR_FAULT);
    CHECK_MSG(strcmp(err.message, "engine 0 pc 0x1 (vadd): n = -3 (r4) is negative") == 0, "%s", err.message);
    pm_sim_destroy(sim);
}

TEST(test_vec_fma_scalar_sel_mov)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    const pm_format fmts[3] = {PM_FMT_F32, PM_FMT_BF16, PM_FMT_F16};
    size_t n = 1000 + rnd() % 100;
    float *a = malloc(n * 4), *b = malloc(n * 4), *c = malloc(n * 4), *r = malloc(n * 4);
    uint8_t *want = malloc(n * 4), *got = malloc(n * 4);
    float s = 1.7f;
    for (int fi = 0; fi < 3; fi++) {
        pm_format f = fmts[fi];
        put_random(sim, f, SA, n, a, -4, 4);
        put_random(sim, f, SB, n, b, -4, 4);
        put_random(sim, f, SC, n, c, -4, 4);
        for (size_t i = 0; i < n; i += 3) c[i] = 0; /* selector zeros */
        ref_store(f, c, n, want);
        pm_sim_sram_write(sim, 0, SC, want, n * esize(f), NULL);
        struct {
            const char *src;
            int kind;
        } cases[] = {
            {"vfma.%s r5, r1, r2, r3, r4", 0}, {"vsel.%s r5, r3, r1, r2, r4", 1}, {"vadds.%s r5, r1, r6, r4", 2},
            {"vmuls.%s r5, r1, r6, r4", 3},    {"vmaxs.%s r5, r1, r6, r4", 4},    {"vbcast.%s r5, r6, r4", 5},
            {"vmov.%s r5, r1, r4", 6},
        };
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            for (size_t i = 0; i < n; i++) {
                switch (cases[k].kind) {
                case 0: r[i] = fmaf(a[i], b[i], c[i]); break;
                case 1: r[i] = c[i] != 0 ? a[i] : b[i]; break;
                case 2: r[i] = a[i] + s; break;
                case 3: r[i] = a[i] * s; break;
                case 4: r[i] = ref_maxnum(a[i], s); break;
                case 5: r[i] = s; break;
                default: r[i] = a[i]; break;
                }
            }
            ref_store(f, r, n, want);
            char line[128];
            snprintf(line, sizeof line, cases[k].src, fname(f));
            pm_status st = run(sim,
                               fmt("li r1, %d\n li r2, %d\n li r3, %d\n li r4, %zu\n li r5, %d\n li r6, %u\n %s\n halt\n",
                                   SA, SB, SC, n, SD, pm_f32_bits(s), line),
                               &err);
            CHECK_MSG(st == PM_OK, "%s", err.message);
            pm_sim_sram_read(sim, 0, SD, got, n * esize(f), NULL);
            CHECK_MSG(memcmp(got, want, n * esize(f)) == 0, "%s", line);
        }
    }
    /* vfma rounds once: (1+2^-12)^2 - (1+2^-11) = 2^-24, lost by mul-then-add */
    float fa = 1.0f + 0x1p-12f, fc = -(1.0f + 0x1p-11f), res;
    pm_sim_sram_write(sim, 0, SA, &fa, 4, NULL);
    pm_sim_sram_write(sim, 0, SC, &fc, 4, NULL);
    pm_status st = run(sim, "li r1, 0\n li r3, 0xC0000\n li r4, 1\n li r5, 0x120000\n vfma.f32 r5, r1, r1, r3, r4\n halt\n",
                       &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    pm_sim_sram_read(sim, 0, SD, &res, 4, NULL);
    CHECK_MSG(res == 0x1p-24f, "%a", res);
    free(a), free(b), free(c), free(r), free(want), free(got);
    pm_sim_destroy(sim);
}

/* The documented reduction order, written out independently: lane l sums
 * elements l, l+L, ... from -0.0; partials padded to a power of two with
 * -0.0 and folded in halves. */
static float ref_redsum(const float *x, size_t n, unsigned lanes)
{
    unsigned w = 1;
    while (w < lanes) w <<= 1;
    float p[256];
    for (unsigned l = 0; l < w; l++) {
        p[l] = -0.0f;
        if (l < lanes)
            for (size_t j = l; j < n; j += lanes) p[l] += x[j];
    }
    for (; w > 1; w >>= 1)
        for (unsigned i = 0; i < w / 2; i++) p[i] = p[i] + p[i + w / 2];
    return p[0];
}

TEST(test_vec_reductions)
{
    const unsigned lane_configs[3] = {32, 1, 12};
    for (int lc = 0; lc < 3; lc++) {
        pm_config cfg = edge();
        cfg.vector_lanes = lane_configs[lc];
        pm_sim *sim = make_sim(&cfg);
        pm_error err;
        size_t n = 77 + rnd() % 200, rows = 5;
        float *x = malloc(n * rows * 4), want[5], got[5];
        put_random(sim, PM_FMT_F32, SA, n * rows, x, -1000, 1000);
        x[3] = 1e30f; /* cancellation makes the order visible */
        x[3 + 32] = -1e30f;
        pm_sim_sram_write(sim, 0, SA, x, n * rows * 4, NULL);
        pm_status st = run(sim, fmt("li r1, 0\n li r2, %d\n li r3, %zu\n li r4, %zu\n vredsum.f32 r2, r1, r3, r4\n"
                                    "li r5, %d\n vredmax.f32 r5, r1, r3, r4\n halt\n",
                                    SC, n, rows, SD),
                           &err);
        CHECK_MSG(st == PM_OK, "%s", err.message);
        pm_sim_sram_read(sim, 0, SC, got, sizeof got, NULL);
        for (size_t r = 0; r < rows; r++) want[r] = ref_redsum(x + r * n, n, cfg.vector_lanes);
        CHECK_MSG(memcmp(got, want, sizeof got) == 0, "lanes %u: %g vs %g", cfg.vector_lanes, got[0], want[0]);
        pm_sim_sram_read(sim, 0, SD, got, sizeof got, NULL);
        for (size_t r = 0; r < rows; r++) {
            float m = -INFINITY;
            for (size_t j = 0; j < n; j++) m = x[r * n + j] > m ? x[r * n + j] : m;
            CHECK(got[r] == m);
        }
        free(x);
        pm_sim_destroy(sim);
    }
    /* with 32 lanes, 1e30 (lane 3) and -1e30 (lane 3 again, 32 later) cancel
     * inside the lane: the sum keeps the small terms; with 1 lane the
     * sequential sum loses them. The order is part of the result. */
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = 1.0f;
    x[3] = 1e30f, x[35] = -1e30f;
    CHECK(ref_redsum(x, 64, 32) == 62.0f);
    CHECK(ref_redsum(x, 64, 1) == 28.0f);

    /* vredmax: NaN loses; a row of NaNs gives NaN; bf16 store */
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    float y[8] = {NAN, -5, NAN, -2, NAN, NAN, NAN, NAN}, m[2];
    pm_sim_sram_write(sim, 0, SA, y, sizeof y, NULL);
    pm_status st = run(sim, "li r1, 0\n li r2, 0xC0000\n li r3, 4\n li r4, 2\n vredmax.f32 r2, r1, r3, r4\n halt\n",
                       &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    pm_sim_sram_read(sim, 0, SC, m, sizeof m, NULL);
    CHECK(m[0] == -2.0f);
    CHECK(isnan(m[1]));
    pm_sim_destroy(sim);
}

TEST(test_vec_row_broadcast)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    const pm_format fmts[2] = {PM_FMT_F32, PM_FMT_BF16};
    const char *ops[3] = {"vaddr", "vsubr", "vmulr"};
    size_t n = 45, rows = 7;
    float a[45 * 7], b[7], r[45 * 7];
    uint8_t want[45 * 7 * 4], got[45 * 7 * 4];
    for (int fi = 0; fi < 2; fi++)
        for (int op = 0; op < 3; op++) {
            pm_format f = fmts[fi];
            put_random(sim, f, SA, n * rows, a, -10, 10);
            put_random(sim, f, SB, rows, b, -10, 10);
            for (size_t i = 0; i < n * rows; i++)
                r[i] = op == 0 ? a[i] + b[i / n] : op == 1 ? a[i] - b[i / n] : a[i] * b[i / n];
            ref_store(f, r, n * rows, want);
            pm_status st = run(sim,
                               fmt("li r1, %d\n li r2, %d\n li r3, %d\n li r4, %zu\n li r5, %zu\n"
                                   "%s.%s r3, r1, r2+, r4, r5\n halt\n",
                                   SA, SB, SC, n, rows, ops[op], fname(f)),
                               &err);
            CHECK_MSG(st == PM_OK, "%s", err.message);
            pm_sim_sram_read(sim, 0, SC, got, n * rows * esize(f), NULL);
            CHECK_MSG(memcmp(got, want, n * rows * esize(f)) == 0, "%s.%s", ops[op], fname(f));
            CHECK(reg(sim, 0, 2) == (int64_t)(SB + rows * esize(f))); /* b covers one element per row */
        }
    pm_sim_destroy(sim);
}

TEST(test_vcvt)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    const pm_format dsts[] = {PM_FMT_BF16, PM_FMT_F16, PM_FMT_E4M3, PM_FMT_E5M2, PM_FMT_E2M1,
                              PM_FMT_INT8, PM_FMT_INT4, PM_FMT_MXFP4, PM_FMT_MXFP8, PM_FMT_Q8_0};
    size_t n = 256;
    float x[256], back[256], want_back[256];
    for (size_t i = 0; i < n; i++) x[i] = rndf(-6, 6);
    pm_sim_sram_write(sim, 0, SA, x, sizeof x, NULL);
    for (size_t k = 0; k < sizeof dsts / sizeof dsts[0]; k++) {
        pm_format f = dsts[k];
        size_t bytes;
        CHECK(pm_format_bytes(f, n, &bytes));
        uint8_t *want = malloc(bytes), *got = malloc(bytes);
        CHECK(pm_format_encode(f, x, n, want, &err) == PM_OK);
        CHECK(pm_format_decode(f, want, n, want_back, &err) == PM_OK);
        pm_status st = run(sim,
                           fmt("li r1, %d\n li r2, %d\n li r3, %d\n li r4, %zu\n vcvt.%s.f32 r2+, r1, r4\n"
                               "li r2, %d\n vcvt.f32.%s r3, r2, r4\n halt\n",
                               SA, SB, SC, n, fname(f), SB, fname(f)),
                           &err);
        CHECK_MSG(st == PM_OK, "%s", err.message);
        pm_sim_sram_read(sim, 0, SB, got, bytes, NULL);
        CHECK_MSG(memcmp(got, want, bytes) == 0, "vcvt to %s", fname(f));
        pm_sim_sram_read(sim, 0, SC, back, sizeof back, NULL);
        CHECK_MSG(memcmp(back, want_back, sizeof back) == 0, "vcvt from %s", fname(f));
        free(want), free(got);
    }
    /* block formats need whole blocks */
    pm_status st = run(sim, "li r4, 48\n vcvt.mxfp4.f32 r2, r1, r4\n halt\n", &err);
    CHECK(st == PM_ERR_FAULT);
    CHECK_MSG(strcmp(err.message, "engine 0 pc 0x1 (vcvt): n = 48 is not a whole number of mxfp4 storage units (32 "
                                  "elements each)") == 0,
              "%s", err.message);
    st = run(sim, "li r4, 3\n vcvt.f32.int4 r2, r1, r4\n halt\n", &err);
    CHECK(st == PM_ERR_FAULT);
    CHECK_MSG(strstr(err.message, "not a whole number of int4 storage units (2 elements each)") != NULL, "%s",
              err.message);
    pm_sim_destroy(sim);
}

/* ---- LFU ---- */

TEST(test_lfu)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    size_t n = 300;
    float x[300], y[300], want[300];
    for (size_t i = 0; i < n; i++) x[i] = rndf(-8, 8);
    pm_sim_sram_write(sim, 0, SA, x, sizeof x, NULL);
    pm_lfu_table t;
    CHECK(pm_lfu_builtin(PM_LFU_SIGMOID, &t, &err) == PM_OK);
    for (size_t i = 0; i < n; i++) want[i] = pm_lfu_eval(&t, x[i]);
    pm_status st = run(sim, "li r1, 0\n li r2, 0xC0000\n li r4, 300\n lfu.cfg 2, sigmoid\n lfu.f32 2, r2, r1, r4\n"
                            "li r3, 0x120000\n lfu.bf16 2, r3, r5, r0\n halt\n",
                       &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    pm_sim_sram_read(sim, 0, SC, y, sizeof y, NULL);
    CHECK(memcmp(y, want, sizeof y) == 0);

    /* lfu.ld from a serialized table in SRAM, evaluated in bf16 */
    pm_lfu_table t2;
    CHECK(pm_lfu_builtin(PM_LFU_TANH, &t2, &err) == PM_OK);
    size_t size = pm_lfu_table_serialized_size(&t2), written;
    uint8_t *ser = malloc(size);
    CHECK(pm_lfu_table_serialize(&t2, ser, size, &written, &err) == PM_OK);
    pm_sim_sram_write(sim, 0, 0x180000, ser, written, NULL);
    uint16_t xb[300], yb[300], wb[300];
    float xs[300];
    for (size_t i = 0; i < n; i++) xb[i] = ref_bf16(x[i]), xs[i] = pm_bf16_to_f32(xb[i]);
    for (size_t i = 0; i < n; i++) wb[i] = ref_bf16(pm_lfu_eval(&t2, xs[i]));
    pm_sim_sram_write(sim, 0, SA, xb, sizeof xb, NULL);
    st = run(sim, "li r1, 0\n li r2, 0xC0000\n li r4, 300\n li r5, 0x180000\n lfu.ld 0, r5\n lfu.bf16 0, r2, r1+, r4\n"
                  "halt\n",
             &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    pm_sim_sram_read(sim, 0, SC, yb, sizeof yb, NULL);
    CHECK(memcmp(yb, wb, sizeof yb) == 0);
    CHECK(reg(sim, 0, 1) == 600);
    pm_counters c;
    pm_sim_counters(sim, &c);
    CHECK(c.lfu_evals == 600);

    /* faults: slot beyond the config, empty slot (a fresh chip), malformed table */
    st = run(sim, "lfu.cfg 5, exp\n halt\n", &err);
    CHECK(st == PM_ERR_FAULT);
    CHECK_MSG(strcmp(err.message, "engine 0 pc 0x0 (lfu.cfg): LFU slot 5 does not exist (the config has 4 slots)") ==
                  0,
              "%s", err.message);
    pm_sim *fresh = make_sim(&cfg);
    st = run(fresh, "li r4, 4\n lfu.f32 1, r2, r1, r4\n halt\n", &err);
    CHECK(st == PM_ERR_FAULT);
    CHECK_MSG(strcmp(err.message,
                     "engine 0 pc 0x1 (lfu): LFU slot 1 is empty (load it with lfu.cfg or lfu.ld)") == 0,
              "%s", err.message);
    ser[0] ^= 0xFF; /* break the magic */
    pm_sim_sram_write(fresh, 0, 0x100, ser, written, NULL);
    st = run(fresh, "li r5, 0x100\n lfu.ld 3, r5\n halt\n", &err);
    CHECK(st == PM_ERR_FAULT);
    CHECK_MSG(strncmp(err.message, "engine 0 pc 0x1 (lfu.ld): malformed LFU table at SRAM 0x100: ", 61) == 0, "%s",
              err.message);
    pm_sim_destroy(fresh);
    free(ser);
    pm_lfu_table_free(&t);
    pm_lfu_table_free(&t2);
    pm_sim_destroy(sim);
}

/* ---- DMA ---- */

static void ref_strided(uint8_t *dst, const uint8_t *src, int64_t rb, int64_t rows, int64_t planes, int64_t drs,
                        int64_t dps, int64_t srs, int64_t sps)
{
    for (int64_t p = 0; p < planes; p++)
        for (int64_t r = 0; r < rows; r++) memcpy(dst + p * dps + r * drs, src + p * sps + r * srs, (size_t)rb);
}

TEST(test_dma_shapes)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    static uint8_t dram[65536], sram[65536], want[65536];
    for (size_t i = 0; i < sizeof dram; i++) dram[i] = (uint8_t)rnd();
    const uint64_t DBASE = 0x10000000; /* well inside the 4 GiB, in untouched pages before the write */
    CHECK(pm_sim_dram_write(sim, DBASE, dram, sizeof dram, &err) == PM_OK);
    struct {
        int64_t rb, rows, planes, drs, dps, srs, sps;
    } shapes[] = {
        {4096, 1, 1, 0, 0, 0, 0},         /* 1-D */
        {40, 9, 1, 100, 0, 48, 0},        /* 2-D, strided on both sides */
        {24, 3, 4, 100, 1000, 32, 128},   /* 3-D */
        {16, 4, 2, 16, 64, 20, 90},       /* contiguous in DRAM, strided in SRAM */
        {8, 5, 1, -16, 0, 8, 0},          /* negative DRAM row stride */
    };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int64_t rb = shapes[k].rb, rows = shapes[k].rows, planes = shapes[k].planes;
        int64_t drs = shapes[k].drs, dps = shapes[k].dps, srs = shapes[k].srs, sps = shapes[k].sps;
        int64_t dram_off = drs < 0 ? 4096 : 64; /* start so every row is inside the buffer */
        memset(sram, 0, sizeof sram);
        pm_sim_sram_write(sim, 0, 0, sram, sizeof sram, NULL);
        memset(want, 0, sizeof want);
        ref_strided(want + 256, dram + dram_off, rb, rows, planes, srs, sps, drs, dps);
        pm_status st = run(sim,
                           fmt("li r1, %lld\n li r2, %lld\n li r3, %lld\n dma.shape r1, r2, r3\n"
                               "li r4, %lld\n li r5, %lld\n li r6, %lld\n li r7, %lld\n dma.stride r4, r5, r6, r7\n"
                               "li r10, 256\n li r11, %llu\n dma.ld r10+, r11+\n halt\n",
                               (long long)rb, (long long)rows, (long long)planes, (long long)drs, (long long)dps,
                               (long long)srs, (long long)sps, (unsigned long long)(DBASE + (uint64_t)dram_off)),
                           &err);
        CHECK_MSG(st == PM_OK, "shape %zu: %s", k, err.message);
        pm_sim_sram_read(sim, 0, 0, sram, sizeof sram, NULL);
        CHECK_MSG(memcmp(sram, want, sizeof sram) == 0, "dma.ld shape %zu", k);
        CHECK(reg(sim, 0, 10) == 256 + rb * rows * planes);
        CHECK(reg(sim, 0, 11) == (int64_t)(DBASE + (uint64_t)dram_off) + rb * rows * planes);

        /* store the same shape back to a zeroed DRAM area (strides swapped roles) */
        const uint64_t OUT = 0x20000000;
        static uint8_t zero[65536], got[65536], want_out[65536];
        pm_sim_dram_write(sim, OUT, zero, sizeof zero, NULL);
        memset(want_out, 0, sizeof want_out);
        ref_strided(want_out + dram_off, sram + 256, rb, rows, planes, drs, dps, srs, sps);
        st = run(sim,
                 fmt("li r1, %lld\n li r2, %lld\n li r3, %lld\n dma.shape r1, r2, r3\n"
                     "li r4, %lld\n li r5, %lld\n li r6, %lld\n li r7, %lld\n dma.stride r4, r5, r6, r7\n"
                     "li r10, 256\n li r11, %llu\n dma.st r11, r10\n halt\n",
                     (long long)rb, (long long)rows, (long long)planes, (long long)drs, (long long)dps, (long long)srs,
                     (long long)sps, (unsigned long long)(OUT + (uint64_t)dram_off)),
                 &err);
        CHECK_MSG(st == PM_OK, "shape %zu: %s", k, err.message);
        pm_sim_dram_read(sim, OUT, got, sizeof got, NULL);
        CHECK_MSG(memcmp(got, want_out, sizeof got) == 0, "dma.st shape %zu", k);
    }
    pm_sim_destroy(sim);
}

TEST(test_dma_faults)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    uint8_t marker[64];
    memset(marker, 0xAB, sizeof marker);
    pm_sim_sram_write(sim, 0, 0x1FFFC0, marker, sizeof marker, NULL);
    /* 2 rows of 64 at SRAM 0x1FFFC0 with row stride 64: the second row is past the end */
    pm_status st = run(sim, "li r1, 64\n li r2, 2\n li r3, 1\n dma.shape r1, r2, r3\n li r4, 64\n"
                            "dma.stride r4, r0, r4, r0\n li r10, 0x1FFFC0\n li r11, 0\n dma.ld r10+, r11\n halt\n",
                       &err);
    CHECK(st == PM_ERR_FAULT);
    CHECK_MSG(strcmp(err.message, "engine 0 pc 0x8 (dma.ld): SRAM write [0x1fffc0, 0x200040) is out of bounds (SRAM "
                                  "is 0x200000 bytes)") == 0,
              "%s", err.message);
    uint8_t back[64];
    pm_sim_sram_read(sim, 0, 0x1FFFC0, back, sizeof back, NULL);
    CHECK(memcmp(back, marker, sizeof back) == 0); /* nothing copied */
    CHECK(reg(sim, 0, 10) == 0x1FFFC0);           /* no post-increment */
    /* DRAM */
    st = run(sim, "li r1, 4096\n li r2, 1\n dma.shape r1, r2, r2\n li r10, 0\n li r11, 0xFFFFF800\n"
                  "dma.st r11, r10\n halt\n",
             &err);
    CHECK(st == PM_ERR_FAULT);
    CHECK_MSG(strcmp(err.message, "engine 0 pc 0x5 (dma.st): DRAM write [0xfffff800, 0x100000800) is out of bounds "
                                  "(DRAM is 0x100000000 bytes)") == 0,
              "%s", err.message);
    /* zero-size shape */
    st = run(sim, "dma.ld r1, r2\n halt\n", &err);
    CHECK(st == PM_ERR_FAULT);
    CHECK_MSG(strstr(err.message, "engine 0 pc 0x0 (dma.ld): DMA shape is empty") != NULL, "%s", err.message);
    /* host access is bounds-checked too */
    CHECK(pm_sim_dram_read(sim, cfg.dram_bytes - 2, back, 4, &err) == PM_ERR_INVALID);
    CHECK(pm_sim_sram_write(sim, 0, cfg.sram_bytes, back, 1, &err) == PM_ERR_INVALID);
    CHECK(pm_sim_sram_write(sim, 1, 0, back, 1, &err) == PM_ERR_INVALID);
    pm_sim_destroy(sim);
}

TEST(test_sparse_dram)
{
    pm_config cfg = edge();
    cfg.dram_bytes = (uint64_t)100 << 30; /* datacenter-sized: only touched pages exist */
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    uint8_t buf[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, got[32];
    uint64_t top = cfg.dram_bytes - 8; /* straddles nothing; last 8 bytes */
    CHECK(pm_sim_dram_write(sim, top, buf, 8, &err) == PM_OK);
    uint64_t cross = ((uint64_t)7 << 20) - 8; /* crosses a page boundary */
    CHECK(pm_sim_dram_write(sim, cross, buf, 16, &err) == PM_OK);
    CHECK(pm_sim_dram_read(sim, cross - 8, got, 32, &err) == PM_OK);
    CHECK(got[0] == 0 && got[7] == 0 && memcmp(got + 8, buf, 16) == 0 && got[24] == 0);
    CHECK(pm_sim_dram_read(sim, top, got, 8, &err) == PM_OK && memcmp(got, buf, 8) == 0);
    CHECK(pm_sim_dram_read(sim, (uint64_t)50 << 30, got, 32, &err) == PM_OK);
    for (int i = 0; i < 32; i++) CHECK(got[i] == 0);
    pm_sim_destroy(sim);
}

/* ---- loading ---- */

TEST(test_load_errors)
{
    pm_config cfg = edge();
    cfg.imem_words = 4;
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    pm_program prog;
    pm_program_init(&prog);
    CHECK(pm_assemble("t.pasm", "nop\n nop\n nop\n nop\n halt\n", &prog, &err) == PM_OK);
    CHECK(pm_sim_load_program(sim, &prog, 0, &err) == PM_ERR_INVALID);
    CHECK_MSG(strcmp(err.message, "program has 5 instructions; instruction memory holds 4 (control.imem_words)") == 0,
              "%s", err.message);
    prog.code_count = 3;
    prog.code[1] = 0xEE; /* no such opcode */
    CHECK(pm_sim_load_program(sim, &prog, 0, &err) != PM_OK);
    CHECK_MSG(strncmp(err.message, "program word 1 (0x00000000000000ee): ", 37) == 0, "%s", err.message);
    CHECK(pm_sim_load_program(sim, &prog, 2, &err) == PM_ERR_INVALID); /* engine 1 does not exist */
    CHECK(pm_sim_run(sim, NULL, &err) == PM_ERR_INVALID);             /* nothing loaded */
    pm_program_free(&prog);
    pm_sim_destroy(sim);
}

/* ---- timing ---- */

static uint64_t vec_cycles(const pm_config *cfg, uint64_t n, uint64_t sram_bytes)
{
    return cfg->vector_latency_cycles + max2(ceil_div(n, cfg->vector_lanes), ceil_div(sram_bytes, cfg->sram_bytes_per_cycle));
}

/* Byte-by-byte oracle for the SRAM banks: bank(a) = (a / w) % banks with
 * w = bytes_per_cycle / banks; the busiest bank's bytes / w, rounded up. */
static uint64_t bank_oracle(const pm_config *cfg, int n, const uint64_t *addr, const uint64_t *len)
{
    static uint64_t count[256];
    uint64_t w = cfg->sram_bytes_per_cycle / cfg->sram_banks, most = 0;
    memset(count, 0, sizeof count);
    for (int k = 0; k < n; k++)
        for (uint64_t a = addr[k]; a < addr[k] + len[k]; a++) count[(a / w) % cfg->sram_banks]++;
    for (uint32_t b = 0; b < cfg->sram_banks; b++) most = max2(most, count[b]);
    return ceil_div(most, w);
}

TEST(test_timing_vector)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    const struct {
        const char *f;
        uint64_t n, esz;
    } cases[] = {{"f32", 1000, 4}, {"bf16", 1000, 2}, {"f32", 5, 4}, {"bf16", 100000, 2}};
    for (size_t k = 0; k < 4; k++) {
        pm_sim_reset_counters(sim);
        pm_status st = run(sim, fmt("li r1, 0\n li r2, 0x60000\n li r3, 0xC0000\n li r4, %llu\n"
                                    "vadd.%s r3, r1, r2, r4\n halt\n",
                                    (unsigned long long)cases[k].n, cases[k].f),
                           &err);
        CHECK_MSG(st == PM_OK, "%s", err.message);
        /* vadd issues at cycle 4 after four li. Its three operands start at
         * multiples of 256, so the same banks: for n = 5 f32 (20 B each)
         * bank 0 holds 3 x 16 B = 48 B, 3 cycles where the port alone would
         * give 1. Each long operand alone is balanced; together their
         * partial last periods pile up in the low banks, at most one cycle
         * per extra operand: f32 n = 1000 (4000 B = 15 x 256 + 160) puts
         * 3 x (15 x 16 + 16) = 768 B in bank 0, 48 cycles against 47. */
        uint64_t bytes = cases[k].n * cases[k].esz, addr[3] = {0, 0x60000, 0xC0000}, len[3] = {bytes, bytes, bytes};
        uint64_t banked = bank_oracle(&cfg, 3, addr, len), port = ceil_div(3 * bytes, cfg.sram_bytes_per_cycle);
        CHECK(banked >= port && banked <= port + 2);
        if (cases[k].n == 5) CHECK(banked == 3);
        if (cases[k].n == 1000 && cases[k].esz == 4) CHECK(banked == 48 && port == 47);
        uint64_t want = 4 + max2(vec_cycles(&cfg, cases[k].n, 3 * bytes), cfg.vector_latency_cycles + banked);
        CHECK_MSG(cycles(sim) == want, "vadd.%s n=%llu: %llu cycles, want %llu", cases[k].f,
                  (unsigned long long)cases[k].n, (unsigned long long)cycles(sim), (unsigned long long)want);
    }
    /* row ops: rows * ceil(n / lanes) */
    pm_sim_reset_counters(sim);
    pm_status st = run(sim, "li r1, 0\n li r3, 0xC0000\n li r4, 33\n li r5, 10\n vredsum.bf16 r3, r1, r4, r5\n halt\n",
                       &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    CHECK(cycles(sim) == 4 + cfg.vector_latency_cycles + 10 * 2);
    /* LFU: latency + ceil(n / lfu_count); the table load first */
    pm_sim_reset_counters(sim);
    st = run(sim, "lfu.cfg 0, exp\n li r4, 1000\n lfu.f32 0, r3, r1, r4\n halt\n", &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    pm_lfu_table t;
    pm_lfu_builtin(PM_LFU_EXP, &t, &err);
    uint64_t load = ceil_div(pm_lfu_table_serialized_size(&t), cfg.lfu_load_bytes_per_cycle);
    pm_lfu_table_free(&t);
    uint64_t lfu = cfg.lfu_latency_cycles + max2(ceil_div(1000, cfg.lfu_count), ceil_div(8000, cfg.sram_bytes_per_cycle));
    CHECK_MSG(cycles(sim) == max2(2, load) + lfu, "%llu vs %llu", (unsigned long long)cycles(sim),
              (unsigned long long)(max2(2, load) + lfu));
    pm_counters c;
    pm_sim_counters(sim, &c);
    CHECK(c.unit[PM_UNIT_LFU].instructions == 2);
    pm_sim_destroy(sim);
}

static double dram_bpc(const pm_config *cfg) { return cfg->dram_gbps * 1000.0 / cfg->clock_mhz; }
static uint64_t dram_lat(const pm_config *cfg) { return (uint64_t)ceil(cfg->dram_latency_ns * cfg->clock_mhz / 1000.0); }

TEST(test_timing_dma)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    pm_status st = run(sim, "li r1, 16384\n li r2, 1\n dma.shape r1, r2, r2\n li r3, 0\n li r4, 0\n dma.ld r3, r4\n"
                            "halt\n",
                       &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    uint64_t xfer = (uint64_t)ceil(16384 / dram_bpc(&cfg));
    CHECK_MSG(cycles(sim) == 5 + dram_lat(&cfg) + xfer, "%llu", (unsigned long long)cycles(sim));
    pm_counters c;
    pm_sim_counters(sim, &c);
    CHECK(c.dram_read_bytes == 16384 && c.sram_write_bytes == 16384);
    CHECK(c.unit[PM_UNIT_DMA_LD].busy_cycles == dram_lat(&cfg) + xfer);

    /* a strided transfer of 8-byte rows is charged one 64-byte burst per row */
    pm_sim_reset_counters(sim);
    st = run(sim, "li r1, 8\n li r2, 100\n li r3, 1\n dma.shape r1, r2, r3\n li r5, 256\n li r6, 8\n"
                  "dma.stride r5, r0, r6, r0\n li r10, 0\n li r11, 0\n dma.ld r10, r11\n halt\n",
             &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    CHECK_MSG(cycles(sim) == 9 + dram_lat(&cfg) + (uint64_t)ceil(100 * 64 / dram_bpc(&cfg)), "%llu",
              (unsigned long long)cycles(sim));

    /* DMA and vector work on disjoint buffers overlap: less than the sum */
    const char *both = "li r1, 16384\n li r2, 1\n dma.shape r1, r2, r2\n li r3, 0x100000\n li r4, 0\n"
                       "li r5, 0\n li r6, 0x10000\n li r7, 4096\n li r8, 0x20000\n"
                       "dma.ld r3, r4\n vadd.f32 r8, r5, r6, r7\n halt\n";
    pm_sim_reset_counters(sim);
    st = run(sim, both, &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    uint64_t dma = dram_lat(&cfg) + xfer, vec = vec_cycles(&cfg, 4096, 3 * 4096 * 4);
    CHECK_MSG(cycles(sim) == 9 + max2(dma, 1 + vec), "%llu", (unsigned long long)cycles(sim));
    CHECK(cycles(sim) < 9 + dma + vec);
    pm_sim_destroy(sim);
}

TEST(test_timing_queue_full)
{
    for (int depth = 2; depth <= 16; depth += 14) {
        pm_config cfg = edge();
        cfg.queue_depth = (uint32_t)depth;
        pm_sim *sim = make_sim(&cfg);
        pm_error err;
        pm_status st = run(sim, "li r1, 0\n li r2, 0x10000\n li r3, 0x20000\n li r4, 4096\n"
                                "vadd.f32 r3, r1, r2, r4\n vadd.f32 r3, r1, r2, r4\n vadd.f32 r3, r1, r2, r4\n"
                                "csrr r9, cycle\n halt\n",
                           &err);
        CHECK_MSG(st == PM_OK, "%s", err.message);
        uint64_t S = vec_cycles(&cfg, 4096, 3 * 4096 * 4) - cfg.vector_latency_cycles;
        /* depth 2: the third vadd waits until the first finishes (4 + S + L) */
        int64_t want = depth == 2 ? (int64_t)(4 + S + cfg.vector_latency_cycles + 1) : 7;
        CHECK_MSG(reg(sim, 0, 9) == want, "depth %d: %lld, want %lld", depth, (long long)reg(sim, 0, 9),
                  (long long)want);
        pm_counters c;
        pm_sim_counters(sim, &c);
        CHECK(depth == 2 ? c.stall_cycles == (uint64_t)want - 7 : c.stall_cycles == 0);
        /* pipelined: three back-to-back streams plus one pipeline drain */
        CHECK(c.cycles == 4 + 3 * S + cfg.vector_latency_cycles);
        pm_sim_destroy(sim);
    }
}

/* dma.ld into SRAM 0 (16 KiB), then a vadd reading either that buffer or a disjoint one */
static const char *hazard_prog(bool overlap, bool fence)
{
    return fmt("li r1, 16384\n li r2, 1\n dma.shape r1, r2, r2\n li r3, 0\n li r4, 0\n dma.ld r3, r4\n"
               "%s li r5, %d\n li r6, 0x40000\n li r7, 1024\n li r8, 0x80000\n vadd.f32 r8, r5, r6, r7\n halt\n",
               fence ? "fence dma.ld\n" : "", overlap ? 0x100 : 0x20000);
}

TEST(test_hazards)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    uint64_t dma_finish = 5 + dram_lat(&cfg) + (uint64_t)ceil(16384 / dram_bpc(&cfg));
    uint64_t vec = vec_cycles(&cfg, 1024, 12 * 1024);
    /* interlock: the overlapping vadd starts when the load finishes */
    CHECK(run(sim, hazard_prog(true, false), &err) == PM_OK);
    CHECK_MSG(cycles(sim) == dma_finish + vec, "%llu", (unsigned long long)cycles(sim));
    pm_sim_reset_counters(sim);
    CHECK(run(sim, hazard_prog(false, false), &err) == PM_OK);
    CHECK_MSG(cycles(sim) == dma_finish, "%llu", (unsigned long long)cycles(sim)); /* vadd hidden under the load */

    /* report mode: the missing fence is an error naming both instructions and the range */
    cfg.hazard_mode = PM_HAZARD_REPORT;
    pm_sim *rep = make_sim(&cfg);
    pm_status st = run(rep, hazard_prog(true, false), &err);
    CHECK(st == PM_ERR_HAZARD);
    CHECK_MSG(strstr(err.message, "engine 0 pc 0xa (vadd): hazard: reads SRAM [0x100, 0x1100) that pc 0x5 (dma.ld) "
                                  "on dma.ld writes") != NULL,
              "%s", err.message);
    CHECK(run(rep, hazard_prog(false, false), &err) == PM_OK);
    st = run(rep, hazard_prog(true, true), &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    pm_sim_reset_counters(rep);
    CHECK(run(rep, hazard_prog(true, true), &err) == PM_OK);
    /* the fence stalls issue until the load finishes; four li later the vadd issues */
    CHECK_MSG(cycles(rep) == dma_finish + 5 + vec, "%llu", (unsigned long long)cycles(rep));

    /* a store from the scalar core into a buffer a DMA is still writing */
    st = run(rep, "li r1, 4096\n li r2, 1\n dma.shape r1, r2, r2\n dma.ld r0, r0\n li r5, 7\n sw r5, r0, 8\n halt\n",
             &err);
    CHECK(st == PM_ERR_HAZARD);
    CHECK_MSG(strstr(err.message, "(sw): hazard: writes SRAM [0x8, 0xc)") != NULL, "%s", err.message);
    /* lw waits for the pending write in both modes (no error) and sees the data */
    uint32_t word = 0xDEADBEEF;
    pm_sim_dram_write(rep, 8, &word, 4, NULL);
    st = run(rep, "li r1, 4096\n li r2, 1\n dma.shape r1, r2, r2\n dma.ld r0, r0\n lw r5, r0, 8\n csrr r6, cycle\n"
                  "halt\n",
             &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    CHECK(reg(rep, 0, 5) == (int64_t)(int32_t)0xDEADBEEF);
    CHECK(reg(rep, 0, 6) == (int64_t)(3 + dram_lat(&cfg) + (uint64_t)ceil(4096 / dram_bpc(&cfg)) + 1));
    pm_sim_destroy(rep);
    pm_sim_destroy(sim);
}

TEST(test_hazard_war_and_fault_atomicity)
{
    /* WAR across units: a vadd reads buffer 0x0 (64 KiB of f32) while a later
     * dma.ld overwrites it. Interlock: the load waits for the vadd to finish;
     * report: a hazard naming the write. */
    const char *src = "li r1, 16384\n li r2, 1\n dma.shape r1, r2, r2\n li r4, 16384\n li r5, 0x40000\n"
                      "vmov.f32 r5, r0, r4\n dma.ld r0, r0\n halt\n";
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    CHECK(run(sim, src, &err) == PM_OK);
    uint64_t vec = vec_cycles(&cfg, 16384, 2 * 16384 * 4);
    uint64_t xfer = max2((uint64_t)ceil(16384 / dram_bpc(&cfg)), 16384 / cfg.sram_bytes_per_cycle);
    CHECK_MSG(cycles(sim) == 5 + vec + dram_lat(&cfg) + xfer, "%llu", (unsigned long long)cycles(sim));
    cfg.hazard_mode = PM_HAZARD_REPORT;
    pm_sim *rep = make_sim(&cfg);
    CHECK(run(rep, src, &err) == PM_ERR_HAZARD);
    CHECK_MSG(strstr(err.message, "engine 0 pc 0x6 (dma.ld): hazard: writes SRAM [0x0, 0x4000) that pc 0x5 (vmov) on "
                                  "vec reads") != NULL,
              "%s", err.message);
    pm_sim_destroy(rep);

    /* a vector op whose second source is out of bounds writes nothing */
    uint8_t marker[64], back[64];
    memset(marker, 0x5A, sizeof marker);
    pm_sim_sram_write(sim, 0, 0x1000, marker, sizeof marker, NULL);
    pm_status st = run(sim, "li r1, 0\n li r2, 0x1FFFF0\n li r3, 0x1000\n li r4, 16\n vadd.f32 r3+, r1+, r2, r4\n halt\n",
                       &err);
    CHECK(st == PM_ERR_FAULT);
    CHECK_MSG(strcmp(err.message, "engine 0 pc 0x4 (vadd): SRAM read [0x1ffff0, 0x200030) through r2 is out of "
                                  "bounds (SRAM is 0x200000 bytes)") == 0,
              "%s", err.message);
    pm_sim_sram_read(sim, 0, 0x1000, back, sizeof back, NULL);
    CHECK(memcmp(back, marker, sizeof back) == 0);
    CHECK(reg(sim, 0, 1) == 0 && reg(sim, 0, 3) == 0x1000); /* no post-increment either */
    pm_sim_destroy(sim);
}

TEST(test_multi_engine_dram_contention)
{
    const char *src = "li r1, 65536\n li r2, 1\n dma.shape r1, r2, r2\n csrr r3, engine_id\n li r4, 0x100000\n"
                      "mul r4, r4, r3\n dma.ld r0, r4\n halt\n";
    pm_config one = edge(), two = edge();
    two.engines = 2;
    pm_sim *s1 = make_sim(&one), *s2 = make_sim(&two);
    pm_error err;
    CHECK(run(s1, src, &err) == PM_OK);
    CHECK(run(s2, src, &err) == PM_OK);
    uint64_t xfer = (uint64_t)ceil(65536 / dram_bpc(&one));
    CHECK(cycles(s1) == 6 + dram_lat(&one) + xfer);
    /* both issue at cycle 6; engine 1 gets the channel after engine 0 */
    CHECK_MSG(cycles(s2) == 6 + dram_lat(&one) + 2 * xfer, "%llu", (unsigned long long)cycles(s2));
    pm_counters c;
    pm_sim_counters(s2, &c);
    CHECK(c.dram_read_bytes == 2 * 65536);
    CHECK(c.engines == 2);
    pm_sim_destroy(s1);
    pm_sim_destroy(s2);
}

static const char *producer_consumer =
    "        li r1, 4096\n li r2, 1\n dma.shape r1, r2, r2\n li r3, 1024\n"
    "        csrr r4, engine_id\n bne r4, r0, consumer\n"
    "        li r10, 0\n li r11, 0x10000\n dma.ld r0, r10\n fence dma.ld\n"
    "        vmul.f32 r0, r0, r0, r3\n fence vec\n dma.st r11, r0\n csrr r20, cycle\n flag.set 3, 1\n halt\n"
    "consumer:\n"
    "        flag.wait 3, 1\n csrr r20, cycle\n li r10, 0x10000\n li r11, 0x20000\n dma.ld r0, r10\n fence dma.ld\n"
    "        li r6, 0x3f800000\n vadds.f32 r0, r0, r6, r3\n fence vec\n dma.st r11, r0\n halt\n";

TEST(test_flags_producer_consumer)
{
    pm_config cfg = edge();
    cfg.engines = 2;
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    float x[1024], y[1024];
    for (int i = 0; i < 1024; i++) x[i] = rndf(-3, 3);
    pm_sim_dram_write(sim, 0, x, sizeof x, NULL);
    pm_status st = run(sim, producer_consumer, &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    pm_sim_dram_read(sim, 0x20000, y, sizeof y, NULL);
    for (int i = 0; i < 1024; i++) CHECK(y[i] == x[i] * x[i] + 1.0f);
    /* the consumer passed its wait only after the producer's store finished */
    uint64_t store_done = (uint64_t)reg(sim, 0, 20) - 1 + dram_lat(&cfg) + (uint64_t)ceil(4096 / dram_bpc(&cfg));
    CHECK_MSG((uint64_t)reg(sim, 1, 20) >= store_done, "%lld vs %llu", (long long)reg(sim, 1, 20),
              (unsigned long long)store_done);
    /* without the flag the consumer would have read zeros: check the wait is
     * what made the difference by running the consumer alone */
    pm_sim_destroy(sim);
}

TEST(test_deadlock_and_watchdog)
{
    pm_config cfg = edge();
    cfg.engines = 2;
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    /* each engine waits for the other's flag before setting its own */
    pm_status st = run(sim, "csrr r1, engine_id\n bne r1, r0, e1\n flag.wait 1, 1\n flag.set 0, 1\n halt\n"
                            "e1: flag.wait 0, 1\n flag.set 1, 1\n halt\n",
                       &err);
    CHECK(st == PM_ERR_FAULT);
    const char *want = "engine 0 pc 0x2 (flag.wait): flag wait can never be satisfied: flag 1 is 0, waiting for >= 1";
    CHECK_MSG(strncmp(err.message, want, strlen(want)) == 0, "%s", err.message);
    /* a wait that a later flag.add satisfies is fine; flag.waitr compares with a register */
    st = run(sim, "csrr r1, engine_id\n bne r1, r0, e1\n li r5, 2\n flag.waitr 7, r5\n halt\n"
                  "e1: flag.add 7, 1\n nop\n flag.add 7, 1\n halt\n",
             &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    /* flag index beyond the config */
    st = run(sim, "flag.set 40, 1\n halt\n", &err);
    CHECK(st == PM_ERR_FAULT);
    CHECK_MSG(strcmp(err.message, "engine 0 pc 0x0 (flag.set): flag 40 is out of range (chip has 32 flags)") == 0,
              "%s", err.message);
    pm_sim_destroy(sim);

    cfg = edge();
    sim = make_sim(&cfg);
    pm_run_options opts = {.max_instructions = 1000};
    st = run_opts(sim, "li r1, 1\n top: add r2, r2, r1\n jmp top\n", &opts, &err);
    CHECK(st == PM_ERR_FAULT);
    CHECK_MSG(strcmp(err.message, "engine 0 pc 0x2 (jmp): watchdog: 1000 instructions without halt") == 0, "%s",
              err.message);
    pm_sim_destroy(sim);
}

TEST(test_determinism_and_counters)
{
    pm_config cfg = edge();
    cfg.engines = 2;
    float x[1024];
    for (int i = 0; i < 1024; i++) x[i] = rndf(-3, 3);
    pm_counters c[2];
    uint8_t out[2][4096], sram[2][8192];
    for (int k = 0; k < 2; k++) {
        pm_sim *sim = make_sim(&cfg);
        pm_error err;
        pm_sim_dram_write(sim, 0, x, sizeof x, NULL);
        CHECK(run(sim, producer_consumer, &err) == PM_OK);
        pm_sim_counters(sim, &c[k]);
        pm_sim_dram_read(sim, 0x20000, out[k], 4096, NULL);
        pm_sim_sram_read(sim, 1, 0, sram[k], 8192, NULL);
        pm_sim_destroy(sim);
    }
    CHECK(memcmp(out[0], out[1], sizeof out[0]) == 0);
    CHECK(memcmp(sram[0], sram[1], sizeof sram[0]) == 0);
    CHECK(c[0].cycles == c[1].cycles && c[0].instructions == c[1].instructions);
    CHECK(c[0].stall_cycles == c[1].stall_cycles && c[0].energy_j == c[1].energy_j);
    for (int u = 0; u < PM_UNIT_COUNT; u++) CHECK(c[0].unit[u].busy_cycles == c[1].unit[u].busy_cycles);

    /* energy is the documented sum of per-event energies and static power */
    const pm_counters *k = &c[0];
    double pj = 1e-12;
    CHECK(k->dram_read_bytes == 2 * 4096 && k->dram_write_bytes == 2 * 4096);
    CHECK(k->vector_elems == 2 * 1024);
    CHECK(fabs(k->dram_energy_j - 4 * 4096 * cfg.energy_dram_pj_per_byte * pj) < 1e-18);
    CHECK(fabs(k->sram_energy_j - (double)(k->sram_read_bytes + k->sram_write_bytes) * cfg.energy_sram_pj_per_byte * pj) <
          1e-18);
    CHECK(fabs(k->unit[PM_UNIT_VEC].compute_energy_j - 2048 * cfg.energy_vector_pj_per_elem * pj) < 1e-18);
    CHECK(fabs(k->unit[PM_UNIT_CTRL].compute_energy_j - (double)k->instructions * cfg.energy_ctrl_pj_per_insn * pj) <
          1e-18);
    CHECK(fabs(k->seconds - (double)k->cycles / (cfg.clock_mhz * 1e6)) < 1e-15);
    CHECK(fabs(k->static_energy_j - cfg.static_power_w * k->seconds) < 1e-18);
    double by_memory = k->dram_energy_j + k->sram_energy_j + k->compute_energy_j + k->static_energy_j;
    double by_unit = k->static_energy_j;
    for (int u = 0; u < PM_UNIT_COUNT; u++) by_unit += k->unit[u].energy_j;
    CHECK(fabs(k->energy_j - by_memory) <= 1e-12 * k->energy_j);
    CHECK(fabs(k->energy_j - by_unit) <= 1e-12 * k->energy_j);
    /* counters accumulate over runs and reset on request */
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    CHECK(run(sim, producer_consumer, &err) == PM_OK);
    CHECK(run(sim, producer_consumer, &err) == PM_OK);
    pm_counters twice;
    pm_sim_counters(sim, &twice);
    CHECK(twice.cycles == 2 * c[0].cycles && twice.instructions == 2 * c[0].instructions);
    pm_sim_reset_counters(sim);
    pm_sim_counters(sim, &twice);
    CHECK(twice.cycles == 0 && twice.instructions == 0 && twice.energy_j == 0);
    pm_sim_destroy(sim);
}

/* Every unit's energy is its own events plus the memory bytes its
 * instructions moved; the memories' view adds up the same joules. */
TEST(test_energy_per_unit)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    pm_status st = run(sim,
                       "li r1, 4096\n li r2, 1\n dma.shape r1, r2, r2\n"
                       "dma.ld r0, r0\n"                      /* DRAM 4096 read, SRAM 4096 written */
                       "li r3, 1024\n li r4, 0x10000\n"
                       "vadd.f32 r4, r0, r0, r3\n"            /* SRAM 8192 read, 4096 written */
                       "lfu.cfg 0, exp\n li r5, 0x20000\n"
                       "lfu.f32 0, r5, r4, r3\n"              /* SRAM 4096 read, 4096 written */
                       "li r6, 0x100000\n dma.st r6, r5\n"    /* SRAM 4096 read, DRAM 4096 written */
                       "li r7, 77\n li r9, 0x30000\n sw r7, r9, 0\n lw r8, r9, 0\n" /* SRAM 4 + 4 */
                       "halt\n",
                       &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    pm_counters c;
    pm_sim_counters(sim, &c);
    const struct {
        pm_unit u;
        uint64_t dram, sram;
        double compute_pj;
    } want[] = {
        {PM_UNIT_CTRL, 0, 8, (double)c.instructions * cfg.energy_ctrl_pj_per_insn},
        {PM_UNIT_DMA_LD, 4096, 4096, 0},
        {PM_UNIT_DMA_ST, 4096, 4096, 0},
        {PM_UNIT_VEC, 0, 12288, 1024 * cfg.energy_vector_pj_per_elem},
        {PM_UNIT_LFU, 0, 8192, 1024 * cfg.energy_lfu_pj_per_eval},
        {PM_UNIT_TENSOR, 0, 0, 0},
    };
    uint64_t dram = 0, sram = 0;
    double units = 0;
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        const pm_unit_counters *uc = &c.unit[want[k].u];
        CHECK_MSG(uc->dram_bytes == want[k].dram && uc->sram_bytes == want[k].sram, "unit %d: %llu / %llu bytes",
                  (int)want[k].u, (unsigned long long)uc->dram_bytes, (unsigned long long)uc->sram_bytes);
        double pj = want[k].compute_pj + (double)want[k].dram * cfg.energy_dram_pj_per_byte +
                    (double)want[k].sram * cfg.energy_sram_pj_per_byte;
        CHECK_MSG(fabs(uc->energy_j - pj * 1e-12) <= 1e-12 * pj * 1e-12, "unit %d: %g J, want %g", (int)want[k].u,
                  uc->energy_j, pj * 1e-12);
        CHECK(fabs(uc->compute_energy_j - want[k].compute_pj * 1e-12) <= 1e-24 + 1e-12 * uc->compute_energy_j);
        CHECK(fabs(uc->energy_j - uc->compute_energy_j - uc->memory_energy_j) <= 1e-12 * uc->energy_j);
        dram += uc->dram_bytes;
        sram += uc->sram_bytes;
        units += uc->energy_j;
    }
    /* the DMA units carry the traffic they cause */
    CHECK(c.unit[PM_UNIT_DMA_LD].energy_j > 0 && c.unit[PM_UNIT_DMA_ST].energy_j > 0);
    /* both views of the same joules */
    CHECK(dram == c.dram_read_bytes + c.dram_write_bytes && sram == c.sram_read_bytes + c.sram_write_bytes);
    CHECK(c.static_energy_j > 0);
    CHECK(fabs(units + c.static_energy_j - c.energy_j) <= 1e-12 * c.energy_j);
    CHECK(fabs(c.dram_energy_j + c.sram_energy_j + c.compute_energy_j + c.static_energy_j - c.energy_j) <=
          1e-12 * c.energy_j);
    pm_sim_destroy(sim);
}

/* The DRAM channel is a calendar: a transfer takes the earliest free channel
 * cycles at or after its start, so one issued later but ready earlier is not
 * queued behind an older transfer that waits for a dependency. (The old
 * model granted the channel in issue order with a single next-free cycle.) */
static const char *arbitration_prog(uint64_t load_bytes)
{
    return fmt("li r1, 2048\n li r2, 1\n li r3, 0x40000\n li r4, 0x10000\n"
               "vredsum.bf16 r3, r4, r2, r1\n"      /* 4: 2048 rows of 1 */
               "li r5, 4096\n dma.shape r5, r2, r2\n li r6, 0x100000\n"
               "dma.st r6, r3\n"                    /* 8: stores the sums: waits for the vredsum */
               "li r7, 0x80000\n li r8, %llu\n dma.shape r8, r2, r2\n"
               "dma.ld r7, r0\n"                    /* 12: independent load */
               "halt\n",
               (unsigned long long)load_bytes);
}

TEST(test_dram_arbitration)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    /* edge: 51.2 B/cycle, 100-cycle latency, 256 B/cycle SRAM port, 32 lanes.
     * vredsum (issue 4): 2048 cycles of lanes, 8192 SRAM bytes at 4 B/cycle
     *   (8192 / 2048) on the port; free 2052, finish 2052 + 4 = 2056.
     * dma.st (issue 8) reads the sums: starts at 2056; 4096 B = 80 channel
     *   cycles [2056, 2136); port at 52 B/cycle for 79 cycles; finish 2136 + 100 = 2236.
     * dma.ld of 4 KiB (issue 12): channel [12, 92) is free: finish 92 + 100 = 192,
     *   hidden under the store: the run ends at 2236 (halt at 13).
     *   The old issue-order channel put it at [2136, 2216): 2316 cycles. */
    CHECK(run(sim, arbitration_prog(4096), &err) == PM_OK);
    pm_counters c;
    pm_sim_counters(sim, &c);
    CHECK_MSG(c.cycles == 2236, "%llu", (unsigned long long)c.cycles);
    CHECK_MSG(c.unit[PM_UNIT_DMA_LD].busy_cycles == 192 - 12, "%llu",
              (unsigned long long)c.unit[PM_UNIT_DMA_LD].busy_cycles);
    CHECK(c.unit[PM_UNIT_DMA_ST].busy_cycles == 2236 - 2056);
    /* dma.ld of 128 KiB: 2560 channel cycles; 2044 fit in [12, 2056), the
     * other 516 follow the store: [2136, 2652); finish 2752 (old: 2136 +
     * 2560 + 100 = 4796). Its port share (52 B/cycle) never binds. */
    pm_sim_reset_counters(sim);
    CHECK(run(sim, arbitration_prog(131072), &err) == PM_OK);
    CHECK_MSG(cycles(sim) == 2752, "%llu", (unsigned long long)cycles(sim));
    pm_sim_destroy(sim);

    /* Across engines: engine 0's delayed store does not hold up engine 1.
     * Engine 1: csrr 0, taken bne 1 (bubble), li 3, loop 4..23, li 24, li 25,
     * dma.shape 26, li 27, dma.ld 28: channel [28, 108), finish 208; the
     * fence issues at 208, csrr at 209. Engine 0 runs the store two cycles later
     * than above (channel [2058, 2138)); the old model queued engine 1's load
     * behind it: 2138 + 80 + 100 = 2318. */
    cfg.engines = 2;
    sim = make_sim(&cfg);
    CHECK(run(sim,
              "csrr r9, engine_id\n bne r9, r0, other\n"
              "li r1, 2048\n li r2, 1\n li r3, 0x40000\n li r4, 0x10000\n vredsum.bf16 r3, r4, r2, r1\n"
              "li r5, 4096\n dma.shape r5, r2, r2\n li r6, 0x100000\n dma.st r6, r3\n halt\n"
              "other: li r9, 20\n w: loop r9, w\n li r5, 4096\n li r2, 1\n dma.shape r5, r2, r2\n li r7, 0x200000\n"
              "dma.ld r0, r7\n fence dma.ld\n csrr r20, cycle\n halt\n",
              &err) == PM_OK);
    CHECK_MSG(reg(sim, 1, 20) == 209, "%lld", (long long)reg(sim, 1, 20));
    CHECK_MSG(cycles(sim) == 2238, "%llu", (unsigned long long)cycles(sim));
    pm_sim_destroy(sim);
}

/* The SRAM port (sram.bytes_per_cycle) is shared by an engine's units: a
 * port-bound vector op streaming next to a DMA gets what the DMA leaves. */
TEST(test_sram_port_contention)
{
    pm_config cfg = edge();
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    pm_sim_share_sram_port(sim, true);
    const char *src = "li r1, 65536\n li r2, 1\n dma.shape r1, r2, r2\n li r3, 0x100000\n"
                      "%s"
                      "li r4, 4096\n li r5, 0x40000\n li r6, 0x50000\n li r7, 0x60000\n"
                      "vadd.f32 r7, r5, r6, r4\n fence vec\n csrr r20, cycle\n halt\n";
    /* csrr reads the vadd's finish + 1 (the fence issues at the finish).
     * Alone: vadd issues at 8 (no dma.ld: 4 + 4 li), 4096 f32 = 128 lane
     * cycles but 49152 SRAM bytes = 192 port cycles: finish 8 + 192 + 4 = 204. */
    CHECK(run(sim, fmt(src, ""), &err) == PM_OK);
    CHECK_MSG(reg(sim, 0, 20) == 204 + 1, "%lld", (long long)reg(sim, 0, 20));
    /* With a 64 KiB dma.ld (issue 4, disjoint buffers): 1280 channel cycles,
     * so its SRAM writes take ceil(65536 / 1280) = 52 B of the port per
     * cycle from 4 on. The vadd (issue 9) gets 256 - 52 = 204 B/cycle:
     * ceil(49152 / 204) = 241 cycles, finish 9 + 241 + 4 = 254. */
    CHECK(run(sim, fmt(src, "dma.ld r0, r3\n"), &err) == PM_OK);
    CHECK_MSG(reg(sim, 0, 20) == 254 + 1, "%lld", (long long)reg(sim, 0, 20));
    /* unshared (the default), the vadd sees an idle port, as if alone */
    pm_sim_share_sram_port(sim, false);
    CHECK(run(sim, fmt(src, "dma.ld r0, r3\n"), &err) == PM_OK);
    CHECK_MSG(reg(sim, 0, 20) == 9 + 192 + 4 + 1, "%lld", (long long)reg(sim, 0, 20));
    pm_sim_share_sram_port(sim, true);
    /* A vector op that is not port-bound is not slowed: vadd.bf16 needs
     * 6 B x 32 lanes = 192 B/cycle, and 204 are left. 4096 / 32 = 128 cycles. */
    CHECK(run(sim, fmt("li r1, 65536\n li r2, 1\n dma.shape r1, r2, r2\n li r3, 0x100000\n dma.ld r0, r3\n"
                       "li r4, 4096\n li r5, 0x40000\n li r6, 0x50000\n li r7, 0x60000\n"
                       "vadd.bf16 r7, r5, r6, r4\n fence vec\n csrr r20, cycle\n halt\n"),
              &err) == PM_OK);
    CHECK_MSG(reg(sim, 0, 20) == 9 + 128 + 4 + 1, "%lld", (long long)reg(sim, 0, 20));
    pm_sim_destroy(sim);
}

/* SRAM banks (docs/simulator.md): an instruction's port time is bounded by
 * its busiest bank. Edge: 256 B/cycle, 16 banks of w = 16 B. DRAM is made
 * so fast (1e6 B/cycle) that every transfer below holds the channel one
 * cycle, so a DMA's time is its SRAM side: free = dstart + port. */
static uint64_t bank_dma(pm_sim *sim, const pm_config *cfg, uint64_t row_bytes, uint64_t rows, uint64_t sram_stride, bool store)
{
    pm_error err;
    /* dma.shape at 3, dma.stride at 6, dma.{ld,st} issues at 8, halt at 9 */
    pm_status st = run(sim,
                       fmt("li r1, %llu\n li r2, %llu\n li r3, 1\n dma.shape r1, r2, r3\n li r5, %llu\n"
                           "li r6, %llu\n dma.stride r5, r0, r6, r0\n li r10, 0x100000\n %s\n halt\n",
                           (unsigned long long)row_bytes, (unsigned long long)rows, (unsigned long long)row_bytes,
                           (unsigned long long)sram_stride, store ? "dma.st r10, r0" : "dma.ld r0, r10"),
                       &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    pm_counters c;
    pm_sim_counters(sim, &c);
    pm_sim_reset_counters(sim);
    return c.cycles - 8 - dram_lat(cfg); /* the transfer's stream (free - start) */
}

TEST(test_sram_banks)
{
    pm_config cfg = edge();
    cfg.dram_gbps = 1e6;
    pm_sim *sim = make_sim(&cfg);
    /* Contiguous, 4096 B: ceil(4096 / 256) = 16 cycles, the plain port. */
    CHECK(bank_dma(sim, &cfg, 4096, 1, 4096, false) == 16);
    /* The same bytes as 1024 rows of 4 B, one row per 256 B of SRAM: every
     * row is in bank 0 (a = 256 r, (a / 16) % 16 = 0), which holds all
     * 4096 B at 16 B/cycle = 256 cycles, 16 = banks times the contiguous. */
    uint64_t one_bank = bank_dma(sim, &cfg, 4, 1024, 256, false);
    CHECK_MSG(one_bank == 256, "%llu", (unsigned long long)one_bank);
    CHECK(bank_dma(sim, &cfg, 4, 1024, 256, true) == 256); /* stores read SRAM the same way */
    /* SRAM stride 64: banks 0, 4, 8, 12, 256 rows = 1024 B each: 64 cycles. */
    CHECK(bank_dma(sim, &cfg, 4, 1024, 64, false) == 64);
    /* Strides that spread the rows over all 16 banks are as fast as
     * contiguous: stride 16 (bank r % 16) and 272 (bank 17 r % 16 = r % 16):
     * 64 rows = 256 B per bank, 16 cycles. */
    CHECK(bank_dma(sim, &cfg, 4, 1024, 16, false) == 16);
    CHECK(bank_dma(sim, &cfg, 4, 1024, 272, false) == 16);
    /* Against the byte oracle for a few ragged shapes. */
    static const uint64_t shapes[][3] = {{20, 100, 300}, {3, 500, 1000}, {48, 40, 4096}, {100, 7, 100}};
    for (size_t k = 0; k < 4; k++) {
        uint64_t addr[500], len[500], rows = shapes[k][1];
        for (uint64_t r = 0; r < rows; r++) addr[r] = r * shapes[k][2], len[r] = shapes[k][0];
        uint64_t want = max2(1, max2(ceil_div(rows * shapes[k][0], 256), bank_oracle(&cfg, (int)rows, addr, len)));
        uint64_t got = bank_dma(sim, &cfg, shapes[k][0], rows, shapes[k][2], false);
        CHECK_MSG(got == want, "shape %zu: %llu, want %llu", k, (unsigned long long)got, (unsigned long long)want);
    }

    /* Held back by one bank, the DMA takes only 4096 / 256 = 16 B of the
     * shared port per cycle, over [8, 264): a port-bound vadd.f32 (4096
     * elements, 49152 B, 192 cycles alone) issued at 13 gets the other
     * 240 B/cycle: ceil(49152 / 240) = 205 cycles, finish 13 + 205 + 4 = 222;
     * csrr after the fence reads 223. (That the vadd also uses bank 0 is not
     * modelled: banks bound each instruction; units share only the port.) */
    pm_sim_share_sram_port(sim, true);
    pm_error err;
    CHECK(run(sim, "li r1, 4\n li r2, 1024\n li r3, 1\n dma.shape r1, r2, r3\n li r5, 4\n li r6, 256\n"
                   "dma.stride r5, r0, r6, r0\n li r10, 0x100000\n dma.ld r0, r10\n"
                   "li r11, 4096\n li r12, 0x40000\n li r13, 0x50000\n li r14, 0x60000\n"
                   "vadd.f32 r14, r12, r13, r11\n fence vec\n csrr r20, cycle\n halt\n",
              &err) == PM_OK);
    CHECK_MSG(reg(sim, 0, 20) == 223, "%lld", (long long)reg(sim, 0, 20));
    pm_sim_destroy(sim);

    /* One bank: the port alone, whatever the stride. */
    cfg.sram_banks = 1;
    sim = make_sim(&cfg);
    CHECK(bank_dma(sim, &cfg, 4, 1024, 256, false) == 16);
    CHECK(bank_dma(sim, &cfg, 4096, 1, 4096, false) == 16);
    pm_sim_destroy(sim);

    /* Vector ops (32 lanes): vadd.f32 n = 16 has three 64 B operands. At
     * 0, 0x100, 0x200 they share banks 0..3: 3 x 16 B = 48 B each, 3
     * cycles. At 0, 0x140, 0x280 they sit in banks 0..3, 4..7, 8..11: 16 B
     * each, 1 cycle = ceil(192 / 256) = the lane cycles ceil(16 / 32). */
    cfg = edge();
    sim = make_sim(&cfg);
    const char *vp = "li r1, %d\n li r2, %d\n li r3, %d\n li r4, 16\n vadd.f32 r3, r1, r2, r4\n halt\n";
    CHECK(run(sim, fmt(vp, 0, 0x100, 0x200), &err) == PM_OK);
    CHECK_MSG(cycles(sim) == 4 + 3 + cfg.vector_latency_cycles, "%llu", (unsigned long long)cycles(sim));
    pm_sim_reset_counters(sim);
    CHECK(run(sim, fmt(vp, 0, 0x140, 0x280), &err) == PM_OK);
    CHECK_MSG(cycles(sim) == 4 + 1 + cfg.vector_latency_cycles, "%llu", (unsigned long long)cycles(sim));
    pm_sim_destroy(sim);
}

/* Report mode names the conflicting instruction that finishes last (the one
 * a fence would wait for), not the oldest or the first found. */
TEST(test_hazard_names_latest_finisher)
{
    pm_config cfg = edge();
    cfg.hazard_mode = PM_HAZARD_REPORT;
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    /* pc 3 dma.ld writes SRAM [0x0, 0x40): 2 channel cycles, finish 3 + 2 + 100 = 105.
     * pc 7 vmov writes [0x40, 0x10040): 16384 f32 = 512 lane cycles and 512
     *   port cycles, finish 7 + 512 + 4 = 523.
     * pc 0xb dma.st reads [0x0, 0x80) at cycle 11 while both are in flight:
     *   the older dma.ld (also the first unit scanned) finishes first. */
    pm_status st = run(sim,
                       "li r1, 64\n li r2, 1\n dma.shape r1, r2, r2\n dma.ld r0, r0\n"
                       "li r3, 16384\n li r4, 0x40\n li r6, 0x100000\n vmov.f32 r4, r6, r3\n"
                       "li r1, 128\n dma.shape r1, r2, r2\n li r7, 0x200000\n dma.st r7, r0\n halt\n",
                       &err);
    CHECK(st == PM_ERR_HAZARD);
    CHECK_MSG(strcmp(err.message, "engine 0 pc 0xb (dma.st): hazard: reads SRAM [0x40, 0x80) that pc 0x7 (vmov) on "
                                  "vec writes; it finishes at cycle 523 but this instruction on dma.st starts at cycle "
                                  "11 (missing fence)") == 0,
              "%s", err.message);
    /* A scalar store into a word two units are still reading: pc 4 dma.st
     * reads [0x0, 0x40) (finish 4 + 2 + 100 = 106), pc 7 vmov reads
     * [0x0, 0x10000) (finish 523). */
    st = run(sim,
             "li r1, 64\n li r2, 1\n dma.shape r1, r2, r2\n li r7, 0x200000\n dma.st r7, r0\n"
             "li r3, 16384\n li r4, 0x40000\n vmov.f32 r4, r0, r3\n sw r3, r0, 8\n halt\n",
             &err);
    CHECK(st == PM_ERR_HAZARD);
    CHECK_MSG(strcmp(err.message, "engine 0 pc 0x8 (sw): hazard: writes SRAM [0x8, 0xc) that pc 0x7 (vmov) on vec "
                                  "reads; it finishes at cycle 523 but this instruction on ctrl starts at cycle 8 "
                                  "(missing fence)") == 0,
              "%s", err.message);
    pm_sim_destroy(sim);
}

/* ---- trace ---- */

/* A minimal JSON validator: enough to know the file parses. */
static const char *json_value(const char *p);
static const char *json_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
    return p;
}
static const char *json_string(const char *p)
{
    if (*p++ != '"') return NULL;
    while (*p && *p != '"') {
        if ((unsigned char)*p < 0x20) return NULL;
        if (*p == '\\') p++;
        if (*p) p++;
    }
    return *p == '"' ? p + 1 : NULL;
}
static const char *json_value(const char *p)
{
    p = json_ws(p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = json_ws(p + 1);
        if (*p == close) return p + 1;
        for (;;) {
            if (close == '}') {
                if (!(p = json_string(json_ws(p)))) return NULL;
                p = json_ws(p);
                if (*p++ != ':') return NULL;
            }
            if (!(p = json_value(p))) return NULL;
            p = json_ws(p);
            if (*p == ',') p++;
            else if (*p == close) return p + 1;
            else return NULL;
        }
    }
    if (*p == '"') return json_string(p);
    if (!strncmp(p, "true", 4) || !strncmp(p, "null", 4)) return p + 4;
    if (!strncmp(p, "false", 5)) return p + 5;
    char *end;
    strtod(p, &end);
    return end == p ? NULL : end;
}

static size_t count(const char *s, const char *needle)
{
    size_t k = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++) k++;
    return k;
}

TEST(test_trace)
{
    pm_config cfg = edge();
    cfg.engines = 2;
    pm_sim *sim = make_sim(&cfg);
    pm_error err;
    char path[] = "/tmp/pm_sim_traceXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    unlink(path);
    pm_run_options opts = {.trace_path = path};
    pm_status st = run_opts(sim, fmt("mark 42\n%s", producer_consumer), &opts, &err);
    CHECK_MSG(st == PM_OK, "%s", err.message);
    uint8_t *text;
    size_t len;
    CHECK(pm_read_file(path, &text, &len, &err) == PM_OK);
    const char *end = json_value((const char *)text);
    CHECK(end && *json_ws(end) == '\0');
    pm_counters c;
    pm_sim_counters(sim, &c);
    uint64_t unit_insns = 0;
    for (int u = PM_UNIT_DMA_LD; u < PM_UNIT_COUNT; u++) unit_insns += c.unit[u].instructions;
    CHECK(count((char *)text, "\"cat\":\"vec\"") == c.unit[PM_UNIT_VEC].instructions);
    CHECK(count((char *)text, "\"ph\":\"X\"") - count((char *)text, "\"cat\":\"stall\"") == unit_insns);
    CHECK(count((char *)text, "\"ph\":\"i\"") == 2); /* mark 42 on both engines */
    CHECK(strstr((char *)text, "\"name\":\"mark 42\"") != NULL);
    CHECK(count((char *)text, "\"process_name\"") == 2);
    CHECK(strstr((char *)text, "\"ts\":") != NULL && strstr((char *)text, "\"dur\":") != NULL);
    free(text);
    unlink(path);

    /* a faulting run still writes the whole trace, and says how it ended */
    st = run_opts(sim, "li r1, 16\n li r2, 1\n dma.shape r1, r2, r2\n dma.ld r0, r0\n flag.set 99, 1\n halt\n", &opts,
                  &err);
    CHECK(st == PM_ERR_FAULT);
    CHECK(strstr(err.message, "flag 99 is out of range") != NULL); /* the fault, not a trace message */
    CHECK(pm_read_file(path, &text, &len, &err) == PM_OK);
    end = json_value((const char *)text);
    CHECK(end && *json_ws(end) == '\0');
    CHECK(strstr((char *)text, "\"run_status\":\"engine fault\"") != NULL);
    CHECK(count((char *)text, "\"cat\":\"dma.ld\"") == 2);
    free(text);
    unlink(path);

    /* an unwritable path: the run reports it and leaves no file */
    pm_run_options bad = {.trace_path = "/nonexistent-dir/trace.json"};
    st = run_opts(sim, "halt\n", &bad, &err);
    CHECK(st == PM_ERR_IO);
    CHECK(access("/nonexistent-dir/trace.json", F_OK) != 0);
    pm_sim_destroy(sim);
}

TEST(test_independent_sims)
{
    /* two chips in one process share nothing */
    pm_config cfg = edge();
    pm_sim *a = make_sim(&cfg), *b = make_sim(&cfg);
    pm_error err;
    uint32_t v = 1234;
    pm_sim_dram_write(a, 64, &v, 4, NULL);
    CHECK(run(a, "li r1, 5\n halt\n", &err) == PM_OK);
    CHECK(run(b, "li r1, 9\n nop\n halt\n", &err) == PM_OK);
    uint32_t w = 7;
    pm_sim_dram_read(b, 64, &w, 4, NULL);
    CHECK(w == 0);
    CHECK(reg(a, 0, 1) == 5 && reg(b, 0, 1) == 9);
    CHECK(cycles(a) == 2 && cycles(b) == 3);
    pm_sim_destroy(a);
    pm_sim_destroy(b);
}

int main(void)
{
    RUN(test_alu);
    RUN(test_lw_sw);
    RUN(test_branches_loops_csrr);
    RUN(test_vec_binary_random);
    RUN(test_vec_special_values);
    RUN(test_vec_fma_scalar_sel_mov);
    RUN(test_vec_reductions);
    RUN(test_vec_row_broadcast);
    RUN(test_vcvt);
    RUN(test_lfu);
    RUN(test_dma_shapes);
    RUN(test_dma_faults);
    RUN(test_sparse_dram);
    RUN(test_load_errors);
    RUN(test_timing_vector);
    RUN(test_timing_dma);
    RUN(test_timing_queue_full);
    RUN(test_hazards);
    RUN(test_hazard_war_and_fault_atomicity);
    RUN(test_multi_engine_dram_contention);
    RUN(test_flags_producer_consumer);
    RUN(test_deadlock_and_watchdog);
    RUN(test_determinism_and_counters);
    RUN(test_energy_per_unit);
    RUN(test_dram_arbitration);
    RUN(test_sram_port_contention);
    RUN(test_sram_banks);
    RUN(test_hazard_names_latest_finisher);
    RUN(test_trace);
    RUN(test_independent_sims);
    return TEST_SUMMARY();
}
