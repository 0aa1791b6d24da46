/* Tests for the assembler and disassembler: instruction syntax against
 * hand-built encodings, every directive, expressions, forward references,
 * includes, the file:line:col of each class of error, hostile input, and the
 * asm -> write -> read -> dis -> asm identity (including every examples/ program). */
#define _POSIX_C_SOURCE 200809L
#include "polymorph/isa.h"
#include "polymorph/lfu.h"
#include "polymorph/numerics.h"
#include "test.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static pm_program prog;
static pm_error err;

static bool assemble(const char *src)
{
    pm_program_free(&prog);
    if (pm_assemble("t.pasm", src, &prog, &err) == PM_OK) return true;
    fprintf(stderr, "assemble failed: %s\n", err.message);
    return false;
}

static uint64_t enc(pm_insn insn)
{
    uint64_t w = 0;
    if (pm_encode(&insn, &w, &err) != PM_OK) fprintf(stderr, "enc: %s\n", err.message);
    return w;
}

static const pm_symbol *sym(const char *name)
{
    return pm_program_find_symbol(&prog, name);
}

/* The bytes at addr of memory mem, if one section holds them all. */
static const uint8_t *mem_at(pm_mem_kind mem, uint64_t addr, uint64_t n)
{
    for (size_t i = 0; i < prog.section_count; i++) {
        const pm_section *s = &prog.sections[i];
        if (s->mem == mem && addr >= s->addr && addr + n <= s->addr + s->size) return s->data + (addr - s->addr);
    }
    return NULL;
}

TEST(instructions_encode_like_the_table)
{
    CHECK(assemble("start: li r5, -7\n"
                   "  ADD r1, r2, zero ; comment\n"
                   "  vadd.bf16 r1, r3+, r4, r5   # other comment\n"
                   "  vcvt.bf16.f32 r6+, r7, r8\n"
                   "  lfu.f32 2, r1+, r2+, r3\n"
                   "  lfu.cfg 1, sigmoid\n"
                   "  dma.ld r1+, r2\n"
                   "  flag.set 3, 1\n"
                   "  fence dma.ld|vec\n"
                   "  fence all\n"
                   "  csrr r9, engine_id\n"
                   "  loop r4, start\n"
                   "  beq r1, r2, end\n"
                   "  mark 0x10\n"
                   "end: halt\n"));
    uint64_t want[] = {
        enc((pm_insn){PM_OP_LI, {5, -7}}),
        enc((pm_insn){PM_OP_ADD, {1, 2, 0}}),
        enc((pm_insn){PM_OP_VADD, {PM_FMT_BF16, 1, 3 | PM_AREG_INC, 4, 5}}),
        enc((pm_insn){PM_OP_VCVT, {PM_FMT_BF16, PM_FMT_F32, 6 | PM_AREG_INC, 7, 8}}),
        enc((pm_insn){PM_OP_LFU, {PM_FMT_F32, 2, 1 | PM_AREG_INC, 2 | PM_AREG_INC, 3}}),
        enc((pm_insn){PM_OP_LFUCFG, {1, PM_LFU_SIGMOID}}),
        enc((pm_insn){PM_OP_DLD, {1 | PM_AREG_INC, 2}}),
        enc((pm_insn){PM_OP_FSET, {3, 1}}),
        enc((pm_insn){PM_OP_FENCE, {1 << PM_UNIT_DMA_LD | 1 << PM_UNIT_VEC}}),
        enc((pm_insn){PM_OP_FENCE, {PM_UNIT_MASK_ALL}}),
        enc((pm_insn){PM_OP_CSRR, {9, PM_CSR_ENGINE_ID}}),
        enc((pm_insn){PM_OP_LOOP, {4, 0}}),
        enc((pm_insn){PM_OP_BEQ, {1, 2, 14}}),
        enc((pm_insn){PM_OP_MARK, {16}}),
        enc((pm_insn){PM_OP_HALT, {0}}),
    };
    CHECK(prog.code_count == sizeof want / sizeof want[0]);
    for (size_t i = 0; i < prog.code_count && i < sizeof want / sizeof want[0]; i++)
        CHECK_MSG(prog.code[i] == want[i], "word %zu", i);
    const pm_symbol *s = sym("end");
    CHECK(s && s->mem == PM_MEM_CODE && s->addr == 14);
    CHECK(sym("start") && sym("start")->addr == 0);
    CHECK(prog.entry == 0);
}

TEST(expressions)
{
    CHECK(assemble(".equ A, 6\n"
                   "B = A * 7 - 2\n"
                   "li r1, B\n"                      /* 40 */
                   "li r2, (1 + 2) * 3 << 2 | 1\n"   /* 37 */
                   "li r3, -0x10 + 0b101\n"          /* -11 */
                   "li r4, ~0 ^ 0xF0 & 0xFF\n"       /* ~0 ^ 0xF0 = -241 */
                   "li r5, 'a' + '\\n'\n"            /* 107 */
                   "li r6, f32(0.5)\n"
                   "li r7, -7 / 2 + -7 % 3\n"        /* -3 + -1 */
                   "li r8, -16 >> 2\n"               /* arithmetic: -4 */
                   "li r9, C + 1\n"                  /* forward .equ */
                   "C = 100\n"
                   "li r10, 1 << 47 - 1\n"           /* precedence: 1 << 46 */
                   "halt\n"));
    int64_t want[] = {40, 37, -11, ~0 ^ (0xF0 & 0xFF), 'a' + '\n', 0x3F000000, -4, -4, 101, (int64_t)1 << 46};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        pm_insn d;
        CHECK(pm_decode(prog.code[i], &d, &err) == PM_OK);
        CHECK_MSG(d.op[1] == want[i], "li %zu: %lld != %lld", i, (long long)d.op[1], (long long)want[i]);
    }
}

TEST(forward_references)
{
    CHECK(assemble("  jmp later\n"
                   "  li r1, buf\n"
                   "  li r2, buf_end - buf\n"
                   "later: halt\n"
                   ".equ SIZE, buf_end - buf\n"
                   "  .sram 0x200\n"
                   "buf: .word SIZE, later\n"
                   "buf_end:\n"));
    pm_insn d;
    pm_decode(prog.code[0], &d, &err);
    CHECK(d.op[0] == 3);
    pm_decode(prog.code[1], &d, &err);
    CHECK(d.op[1] == 0x200);
    pm_decode(prog.code[2], &d, &err);
    CHECK(d.op[1] == 8);
    const uint8_t *m = mem_at(PM_MEM_SRAM, 0x200, 8);
    CHECK(m && m[0] == 8 && m[4] == 3);
    CHECK(sym("buf_end") && sym("buf_end")->addr == 0x208 && sym("buf_end")->mem == PM_MEM_SRAM);
}

TEST(data_directives)
{
    CHECK(assemble("halt\n"
                   ".dram 0x100\n"
                   "b: .byte 1, -1, 255, 'z'\n"
                   "h: .half 0x1234, -2\n"
                   "w: .word 0xDEADBEEF\n"
                   "d: .dword -1, 0x0102030405060708\n"
                   "f: .f32 1.5, -0.0, 1e-3, inf\n"
                   "g: .f16 1.0, -2.5\n"
                   "k: .bf16 3.0\n"
                   "s: .ascii \"hi\\n\\x41\\\"\"\n"
                   "   .align 8\n"
                   "z: .zero 3\n"
                   "   .org 0x180\n"
                   "e: .byte 7\n"));
    const uint8_t *m = mem_at(PM_MEM_DRAM, 0x100, 0x81);
    CHECK(m != NULL);
    if (!m) return;
    const uint8_t bytes[] = {1, 0xFF, 0xFF, 'z', 0x34, 0x12, 0xFE, 0xFF, 0xEF, 0xBE, 0xAD, 0xDE};
    CHECK(memcmp(m, bytes, sizeof bytes) == 0);
    CHECK(sym("d")->addr == 0x10c);
    for (int i = 0; i < 8; i++) CHECK(m[0xc + i] == 0xFF && m[0x14 + i] == 8 - i);
    float fv[4] = {1.5f, -0.0f, 1e-3f, 0};
    fv[3] = 1.0f / fv[1] * -1.0f; /* +inf without a libm call */
    CHECK(sym("f")->addr == 0x11c);
    CHECK(memcmp(m + 0x1c, fv, 16) == 0);
    uint16_t h1 = pm_f32_to_f16(1.0f), h2 = pm_f32_to_f16(-2.5f), bf = pm_f32_to_bf16(3.0f);
    CHECK(h1 == 0x3C00 && h2 == 0xC100 && bf == 0x4040);
    CHECK(m[0x2c] == 0x00 && m[0x2d] == 0x3C && m[0x2e] == 0x00 && m[0x2f] == 0xC1);
    CHECK(m[0x30] == 0x40 && m[0x31] == 0x40);
    CHECK(sym("s")->addr == 0x132 && memcmp(m + 0x32, "hi\nA\"", 5) == 0);
    CHECK(sym("z")->addr == 0x138); /* aligned up from 0x137 */
    CHECK(sym("e")->addr == 0x180 && m[0x80] == 7);
    CHECK(prog.section_count == 1 && prog.sections[0].size == 0x81);
}

TEST(sections_and_symbols)
{
    CHECK(assemble(".sram 0x40\n"
                   "x: .word 1\n"
                   ".dram\n"              /* default DRAM start 0 */
                   "y: .byte 2\n"
                   ".text\n"
                   "main: halt\n"
                   ".sram\n"              /* continues after x */
                   "x2: .word 3\n"
                   ".dram 0x1000\n"
                   "out:\n"               /* a label with no data: no section */
                   ".tensor x, f32, 1\n"
                   ".tensor out, bf16, 2, 3, 4, 5\n"
                   ".entry main\n"
                   ".reg acc, r7\n"
                   ".text\n"
                   "addi acc, acc, 1\n"));
    CHECK(prog.entry == 0 && prog.code_count == 2);
    CHECK(prog.section_count == 2);
    /* sorted: DRAM first, then SRAM */
    CHECK(prog.sections[0].mem == PM_MEM_DRAM && prog.sections[0].addr == 0 && prog.sections[0].size == 1);
    CHECK(prog.sections[1].mem == PM_MEM_SRAM && prog.sections[1].addr == 0x40 && prog.sections[1].size == 8);
    CHECK(sym("x2")->addr == 0x44);
    const pm_symbol *o = sym("out");
    CHECK(o && o->mem == PM_MEM_DRAM && o->addr == 0x1000 && o->is_tensor && o->dtype == PM_FMT_BF16 && o->rank == 4 &&
          o->shape[3] == 5);
    CHECK(sym("x")->is_tensor && sym("x")->rank == 1 && sym("x")->shape[0] == 1);
    CHECK(sym("acc") == NULL); /* aliases and constants are not symbols */
    pm_insn d;
    pm_decode(prog.code[1], &d, &err);
    CHECK(d.opcode == PM_OP_ADDI && d.op[0] == 7 && d.op[1] == 7 && d.op[2] == 1);
    /* canonical symbol order: code, DRAM, SRAM, each by address */
    const char *order[] = {"main", "y", "out", "x", "x2"};
    CHECK(prog.symbol_count == 5);
    for (size_t i = 0; i < 5 && i < prog.symbol_count; i++) CHECK(strcmp(prog.symbols[i].name, order[i]) == 0);
}

TEST(text_org_align_and_local_labels)
{
    /* empty data directives place nothing (fuzzer regression: NULL data) */
    CHECK(assemble(".dram 0x10\n.zero 0\n.ascii \"\"\n.sram\n.org 0\nnop\n"));
    CHECK(prog.section_count == 0 && prog.code_count == 1);
    CHECK(assemble("jmp .Lhere\n.align 4\n.Lhere: nop\n.org 6\nhalt\n"));
    CHECK(prog.code_count == 7);
    pm_insn d;
    pm_decode(prog.code[0], &d, &err);
    CHECK(d.opcode == PM_OP_JMP && d.op[0] == 4);
    for (int i = 1; i < 6; i++) CHECK(prog.code[i] == 0);
    CHECK(prog.symbol_count == 0); /* .L labels stay local */
}

/* Labels at one address are ordered by name, not by where the source put
 * them; addresses span the whole unsigned 64-bit space of the file format. */
TEST(symbol_ties_and_high_addresses)
{
    CHECK(assemble("zeta: beta: Alpha: _mid: nop\n"
                   "b.2: b_1: b1: halt\n"
                   ".sram 0x8\nsz: sy:\n"
                   ".dram 0xFFFFFFFFFFFFFFF0\ntop: .zero 15\nlast:\n"
                   ".dram 0x8000000000000000\nmid: .byte 1\n"
                   ".dram -32\nneg: .byte 2\n"));
    const char *order[] = {"Alpha", "_mid", "beta", "zeta", "b.2", "b1", "b_1", "mid", "neg", "top", "last", "sy", "sz"};
    CHECK(prog.symbol_count == 13);
    for (size_t i = 0; i < 13 && i < prog.symbol_count; i++)
        CHECK_MSG(strcmp(prog.symbols[i].name, order[i]) == 0, "entry %zu is %s, want %s", i, prog.symbols[i].name, order[i]);
    CHECK(sym("last")->addr == UINT64_MAX && sym("neg")->addr == UINT64_MAX - 31);
    CHECK(prog.section_count == 3 && prog.sections[0].addr == 0x8000000000000000ull &&
          prog.sections[1].addr == UINT64_MAX - 31 && prog.sections[2].addr == UINT64_MAX - 15);
    /* the same program written in another order gives the same file */
    uint8_t *one, *two;
    size_t n1, n2;
    CHECK(pm_program_write(&prog, &one, &n1, &err) == PM_OK);
    CHECK(assemble(".dram -32\nneg: .byte 2\n.dram 0x8000000000000000\nmid: .byte 1\n"
                   ".dram 0xFFFFFFFFFFFFFFF0\ntop: .zero 15\nlast:\n.sram 0x8\nsy: sz:\n"
                   ".text\n_mid: Alpha: zeta: beta: nop\nb1: b_1: b.2: halt\n"));
    CHECK(pm_program_write(&prog, &two, &n2, &err) == PM_OK);
    CHECK(n1 == n2 && memcmp(one, two, n1) == 0);
    free(one);
    free(two);
    /* one byte too many for the address space; the element count bound of the file format */
    CHECK(!assemble("halt\n.dram 0xFFFFFFFFFFFFFFF0\n.zero 16\n"));
    CHECK(strstr(err.message, "data runs past the end of the 64-bit address space"));
    CHECK(assemble("halt\n.dram 0\nx:\n.tensor x, int8, 0x7FFFFFFFFFFFFFFF\n"));
    CHECK(!assemble("halt\n.dram 0\nx:\n.tensor x, int8, 0x4000000000000000, 2\n"));
    CHECK(strstr(err.message, "t.pasm:4:38: tensor element count overflows (more than 2^63 - 1 elements)"));
}

static char tmpdir[64];

static void write_file(const char *rel, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

TEST(includes)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pm_test_asm_%ld", (long)getpid());
    mkdir(tmpdir, 0700);
    char sub[128], path[256];
    snprintf(sub, sizeof sub, "%s/inc", tmpdir);
    mkdir(sub, 0700);
    write_file("main.pasm", ".include \"inc/defs.pasm\"\nli r1, N\n.include \"inc/defs2.pasm\"\nhalt\n");
    write_file("inc/defs.pasm", "N = 5\n.include \"more.pasm\"\n"); /* relative to inc/ */
    write_file("inc/more.pasm", "M = N + 1\n");
    write_file("inc/defs2.pasm", "li r2, M\n");
    snprintf(path, sizeof path, "%s/main.pasm", tmpdir);
    pm_program_free(&prog);
    CHECK(pm_assemble_file(path, &prog, &err) == PM_OK);
    CHECK(prog.code_count == 3);
    pm_insn d;
    pm_decode(prog.code[1], &d, &err);
    CHECK(d.op[1] == 6);
    pm_program_free(&prog);

    write_file("cyc_a.pasm", "nop\n.include \"cyc_b.pasm\"\n");
    write_file("cyc_b.pasm", "nop\n.include \"cyc_a.pasm\"\n");
    snprintf(path, sizeof path, "%s/cyc_a.pasm", tmpdir);
    CHECK(pm_assemble_file(path, &prog, &err) == PM_ERR_PARSE);
    CHECK_MSG(strstr(err.message, "cyc_b.pasm:2:1: include cycle"), "%s", err.message);

    write_file("self.pasm", ".include \"self.pasm\"\n");
    snprintf(path, sizeof path, "%s/self.pasm", tmpdir);
    CHECK(pm_assemble_file(path, &prog, &err) == PM_ERR_PARSE && strstr(err.message, "include cycle"));

    write_file("missing.pasm", "nop\n  .include \"nope.pasm\"\n");
    snprintf(path, sizeof path, "%s/missing.pasm", tmpdir);
    CHECK(pm_assemble_file(path, &prog, &err) == PM_ERR_PARSE);
    CHECK_MSG(strstr(err.message, "missing.pasm:2:3: cannot open include file"), "%s", err.message);

    write_file("bad_inc.pasm", "nop\nfoo r1\n");
    write_file("uses_bad.pasm", ".include \"bad_inc.pasm\"\n");
    snprintf(path, sizeof path, "%s/uses_bad.pasm", tmpdir);
    CHECK(pm_assemble_file(path, &prog, &err) == PM_ERR_PARSE);
    CHECK_MSG(strstr(err.message, "bad_inc.pasm:2:1: unknown instruction 'foo'"), "%s", err.message);

    write_file("dir.pasm", ".include \"inc\"\n");
    snprintf(path, sizeof path, "%s/dir.pasm", tmpdir);
    CHECK(pm_assemble_file(path, &prog, &err) == PM_ERR_PARSE && strstr(err.message, "not a regular file"));

    write_file("nul.pasm", "nop\nhalt ");
    snprintf(path, sizeof path, "%s/nul.pasm", tmpdir);
    FILE *f = fopen(path, "ab");
    fputc(0, f);
    fclose(f);
    CHECK(pm_assemble_file(path, &prog, &err) == PM_ERR_PARSE);
    CHECK_MSG(strstr(err.message, "nul.pasm:2:6: NUL byte"), "%s", err.message);
}

/* A UTF-8 byte-order mark at the start of a file is skipped (it used to be
 * reported as an invisible unexpected character); columns on line 1 count
 * from after it. */
TEST(byte_order_mark_is_skipped)
{
    pm_program plain;
    pm_program_init(&plain);
    CHECK(pm_assemble("t.pasm", "li r1, 5\nhalt\n", &plain, &err) == PM_OK);
    CHECK_MSG(pm_assemble("t.pasm", "\xEF\xBB\xBFli r1, 5\nhalt\n", &prog, &err) == PM_OK, "%s", err.message);
    CHECK(prog.code_count == plain.code_count && prog.code_count == 2 && prog.code[0] == plain.code[0]);
    pm_program_free(&prog);
    pm_program_free(&plain);
    CHECK(pm_assemble("t.pasm", "\xEF\xBB\xBFli r1, r99\n", &prog, &err) == PM_ERR_PARSE);
    CHECK_MSG(strstr(err.message, "t.pasm:1:8: "), "%s", err.message);
}

/* Each class of error: the exact place and message. */
TEST(errors_point_at_the_problem)
{
    struct { const char *src, *want; } cases[] = {
        {"", "t.pasm:1:1: program has no instructions"},
        {"; only a comment\n", "t.pasm:1:1: program has no instructions"},
        {"nop\n  frob r1\n", "t.pasm:2:3: unknown instruction 'frob'"},
        {"vadd r1, r2, r3, r4\n", "t.pasm:1:1: 'vadd' needs 1 format suffix"},
        {"vadd.f32.f32 r1, r2, r3, r4\n", "t.pasm:1:10: 'vadd' takes 1 format suffix, found more"},
        {"vadd.f99 r1, r2, r3, r4\n", "t.pasm:1:6: unknown format 'f99'"},
        {"add r1, r2\n", "t.pasm:1:11: expected ',', found end of line"},
        {"add r1, r2, r3, r4\n", "t.pasm:1:15: too many operands: 'add' takes 3"},
        {"halt r1\n", "t.pasm:1:6: 'halt' takes no operands"},
        {"add r1, r32, r3\n", "t.pasm:1:9: expected a register (r0..r31 or a .reg alias), found 'r32'"},
        {"addi r1, r1, 0x80000000\n", "t.pasm:1:14: immediate (signed 32-bit) 2147483648 is out of range -2147483648..2147483647"},
        {"li r1, 0x800000000000\n", "t.pasm:1:8: immediate (signed 48-bit) 140737488355328 is out of range"},
        {"lfu.cfg 8, exp\n", "t.pasm:1:9: lfu slot 8 is out of range 0..7"},
        {"flag.set 256, 1\nhalt\n", "t.pasm:1:10: flag 256 is out of range 0..255"},
        {"fence 0x40\n", "t.pasm:1:7: unit mask 64 is out of range 0..63"},
        {"csrr r1, 9\n", "t.pasm:1:10: control register 9 is out of range 0..3"},
        {"jmp nowhere\n", "t.pasm:1:5: undefined symbol 'nowhere'"},
        {"jmp 5\n", "t.pasm:1:5: branch target 5 is past the last instruction (1 instructions)"},
        {"a: nop\na: nop\n", "t.pasm:2:1: 'a' is already defined (code label at t.pasm:1)"},
        {"li r1, 1/0\n", "t.pasm:1:9: division by zero"},
        {"li r1, 1 << 64\n", "t.pasm:1:10: shift count 64 is out of range 0..63"},
        {"li r1, 99999999999999999999\n", "t.pasm:1:8: number 99999999999999999999 does not fit in 64 bits"},
        {"li r1, 1.5\n", "t.pasm:1:9: a float literal is only allowed in f32(...)"},
        {"li r1, (1 + 2\n", "t.pasm:1:14: expected ')', found end of line"},
        {"li r1, r2\n", "t.pasm:1:8: expected a value, found register 'r2'"},
        {".dram\n.byte 256\n", "t.pasm:2:7: value 256 is out of range -128..255"},
        {".byte 1\n", "t.pasm:1:1: .byte needs a data section"},
        {".dram 0\n.zero later\nlater: nop\n", "t.pasm:2:7: 'later' must be defined before this line"},
        {".dram 0x10\n.org 0x8\n", "t.pasm:1:1: program has no instructions"},
        {"nop\n.dram 0x10\n.byte 1\n.org 0x8\n", "t.pasm:4:1: .org 0x8 moves backwards (already at 0x11)"},
        {"nop\n.align 3\n", "t.pasm:2:8: .align 3 is not a power of two"},
        {"nop\n.frob 1\n", "t.pasm:2:1: unknown directive '.frob'"},
        {"nop\n.dram 0\n.word 1\n.dram 2\n.byte 1\n", "t.pasm:4:1: dram section 0x2..0x3 overlaps the one at 0x0..0x4"},
        {"nop\n.tensor nope, f32, 4\n", "t.pasm:2:9: undefined label 'nope'"},
        {"x: nop\n.tensor x, f32, 4\n", "t.pasm:2:9: .tensor needs a data label, 'x' is a code label"},
        {".dram\nx: .word 0\n.tensor x, f33, 4\n", "t.pasm:3:12: unknown format 'f33'"},
        {".dram\nx: .word 0\n.tensor x, f32, 0\nnop\n", "t.pasm:3:17: tensor dimension 0 must be at least 1"},
        {"nop\n.entry 3\n", "t.pasm:2:8: entry 3 is not an instruction index"},
        {".dram\nd: .byte 0\n.text\nnop\n.entry d\n", "t.pasm:5:8: .entry needs a code label"},
        {"r3: nop\n", "t.pasm:1:1: 'r3' is a register name and cannot be a label"},
        {".foo: nop\n", "t.pasm:1:1: label names cannot start with '.'"},
        {".reg x, r40\n", "t.pasm:1:9: expected a register"},
        {".reg x, r4\nli x, 1\nli r1, x\n", "t.pasm:3:8: 'x' is a register alias, not a value"},
        {"li r1, 'ab'\n", "t.pasm:1:8: unterminated character literal"},
        {".dram\n.ascii \"abc\n", "t.pasm:2:8: unterminated string"},
        {".dram\n.ascii \"\\q\"\n", "t.pasm:2:9: unknown escape sequence '\\q'"},
        {"nop $\n", "t.pasm:1:5: 'nop' takes no operands"},
        {"@\n", "t.pasm:1:1: expected a label, instruction or directive, found '@'"},
        {"nop\n\x80\n", "t.pasm:2:1: invalid UTF-8 byte (0x80)"},
        {"nop\n\tnop \x01\n", "t.pasm:2:6: control character in source (0x01)"},
        /* a lone CR (old Mac line end) used to surface as a confusing parse error later on the line */
        {"li r1, 5\rhalt\n", "t.pasm:1:9: carriage return without a line feed (0x0d)"},
        {"nop\r\nhalt\r", "t.pasm:2:5: carriage return without a line feed (0x0d)"},
        /* a BOM is skipped only at the very start of a file */
        {"\xEF\xBB\xBFnop\n\xEF\xBB\xBFhalt\n", "t.pasm:2:1: expected a label, instruction or directive"},
        {"li r1, A\nA = B\nB = 1\n", "t.pasm:1:8: 'A' is used before its .equ value is known"},
        {"nop\n.dram\n.zero 0x10000000\n", "t.pasm:3:1: data exceeds the assembler's limit"},
        {"li r1, f32(x)\n", "t.pasm:1:12: expected a number, found 'x'"},
        {"nop\n.include \"\"\n", "t.pasm:2:1: bad include file name"},
        {".org 2000000\n", "t.pasm:1:1: .org 2000000 is past the instruction limit"},
        {"nop\n.align 2048\n.org 0x100000\nnop\n", "t.pasm:4:1: program has more than 1048576 instructions"},
        {"vadd.f32 r1, r2, r3, r4 é\n", "t.pasm:1:25: expected end of line, found 'é'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pm_program_free(&prog);
        pm_status st = pm_assemble("t.pasm", cases[i].src, &prog, &err);
        CHECK_MSG(st == PM_ERR_PARSE, "case %zu (%s) assembled", i, cases[i].want);
        CHECK_MSG(strncmp(err.message, cases[i].want, strlen(cases[i].want)) == 0, "case %zu:\n got:  %s\n want: %s", i,
                  err.message, cases[i].want);
        CHECK(prog.code == NULL && prog.code_count == 0 && prog.sections == NULL && prog.symbols == NULL);
    }
    /* The message carries the source line and a caret under the column. */
    CHECK(pm_assemble("t.pasm", "nop\n  add r1, r2, r99\n", &prog, &err) == PM_ERR_PARSE);
    CHECK_MSG(strcmp(err.message, "t.pasm:2:15: expected a register (r0..r31 or a .reg alias), found 'r99'\n"
                                  "      add r1, r2, r99\n"
                                  "                  ^") == 0,
              "%s", err.message);
}

static char *repeat(const char *piece, size_t times, const char *tail)
{
    size_t n = strlen(piece), t = strlen(tail);
    char *s = malloc(n * times + t + 1);
    for (size_t i = 0; i < times; i++) memcpy(s + i * n, piece, n);
    memcpy(s + n * times, tail, t + 1);
    return s;
}

TEST(hostile_input)
{
    /* deep nesting: a clean error, not a stack overflow */
    char *deep = repeat("(", 200000, "1");
    char *deep_line = malloc(strlen(deep) + 16);
    sprintf(deep_line, "li r1, %s\n", deep);
    CHECK(pm_assemble("t.pasm", deep_line, &prog, &err) == PM_ERR_PARSE && strstr(err.message, "nested too deeply"));
    free(deep);
    free(deep_line);
    char *neg = repeat("-", 200000, "1");
    char *line = malloc(strlen(neg) + 16);
    sprintf(line, "li r1, %s\n", neg);
    CHECK(pm_assemble("t.pasm", line, &prog, &err) == PM_ERR_PARSE && strstr(err.message, "nested too deeply"));
    free(neg);
    free(line);
    /* the documented limit: 128 levels of parentheses or unary operators
     * are fine, 129 are not (each parenthesis used to count twice, so 64
     * was the real limit) */
    const char *pieces[2][2] = {{"(", ")"}, {"-", ""}};
    for (int k = 0; k < 2; k++)
        for (size_t n = 127; n <= 129; n++) {
            char *open_ = repeat(pieces[k][0], n, "1");
            char *close_ = repeat(pieces[k][1], n, "\nhalt\n");
            char *src = malloc(strlen(open_) + strlen(close_) + 16);
            sprintf(src, ".equ A, %s%s", open_, close_);
            pm_status st = pm_assemble("t.pasm", src, &prog, &err);
            CHECK_MSG(n <= 128 ? st == PM_OK : (st == PM_ERR_PARSE && strstr(err.message, "nested too deeply")),
                      "%s x %zu: %s", pieces[k][0], n, err.message);
            pm_program_free(&prog);
            free(open_);
            free(close_);
            free(src);
        }
    /* a 1 MB line: the message stays bounded */
    char *longline = repeat("x", 1 << 20, ": nop\n");
    CHECK(pm_assemble("t.pasm", longline, &prog, &err) == PM_ERR_PARSE && strstr(err.message, "longer than 63"));
    CHECK(strlen(err.message) < 600);
    free(longline);
    char *sum = repeat("1+", 1 << 19, "1\nhalt\n");
    char *li = malloc(strlen(sum) + 16);
    sprintf(li, "li r1, %s", sum);
    CHECK(pm_assemble("t.pasm", li, &prog, &err) == PM_OK);
    pm_insn d;
    pm_decode(prog.code[0], &d, &err);
    CHECK(d.op[1] == (1 << 19) + 1);
    pm_program_free(&prog);
    free(sum);
    free(li);
    /* 100k labels and references: the symbol table is hashed, not scanned */
    size_t n = 100000;
    char *many = malloc(n * 40 + 16);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) at += (size_t)sprintf(many + at, "l%zu: jmp l%zu\n", i, (i * 7919) % n);
    strcpy(many + at, "halt\n");
    CHECK(pm_assemble("t.pasm", many, &prog, &err) == PM_OK);
    CHECK(prog.code_count == n + 1 && prog.symbol_count == n);
    char *dis = NULL;
    CHECK(pm_disassemble(&prog, &dis, &err) == PM_OK);
    pm_program again;
    CHECK(pm_assemble("dis.pasm", dis, &again, &err) == PM_OK);
    CHECK(again.code_count == prog.code_count && memcmp(again.code, prog.code, 8 * prog.code_count) == 0);
    pm_program_free(&again);
    free(dis);
    free(many);
}

/* asm -> write -> read -> dis -> asm -> write must give identical bytes. */
static bool identity(const char *name, const char *src)
{
    pm_program a, b, c;
    uint8_t *bytes_a = NULL, *bytes_c = NULL;
    size_t len_a = 0, len_c = 0;
    char *text = NULL;
    bool ok = false;
    pm_program_init(&b);
    pm_program_init(&c);
    if (pm_assemble(name, src, &a, &err) != PM_OK) {
        fprintf(stderr, "%s: %s\n", name, err.message);
        return false;
    }
    if (pm_program_write(&a, &bytes_a, &len_a, &err) == PM_OK && pm_program_read(bytes_a, len_a, &b, &err) == PM_OK &&
        pm_disassemble(&b, &text, &err) == PM_OK && pm_assemble("dis.pasm", text, &c, &err) == PM_OK &&
        pm_program_write(&c, &bytes_c, &len_c, &err) == PM_OK) {
        ok = len_a == len_c && memcmp(bytes_a, bytes_c, len_a) == 0;
        if (!ok) fprintf(stderr, "%s: disassembly does not reassemble identically:\n%s\n", name, text);
    } else {
        fprintf(stderr, "%s: %s\n%s\n", name, err.message, text ? text : "");
    }
    pm_program_free(&a);
    pm_program_free(&b);
    pm_program_free(&c);
    free(bytes_a);
    free(bytes_c);
    free(text);
    return ok;
}

TEST(disassembly_reassembles_identically)
{
    const char *programs[] = {
        "halt\n",
        "start: li r1, -140737488355328\n li r2, 140737488355327\nloop_top: addi r1, r1, -1\n bne r1, zero, loop_top\n"
        " jmp .Lx\n nop\n.Lx: beq r1, r2, 7\n halt\nend:\n.entry loop_top\n",
        "  vfma.e4m3 r1+, r2, r3+, r4, r5\n  vcvt.mxfp4.bf16 r1, r2, r3\n  lfu.bf16 7, r1, r2+, r3\n"
        "  lfu.cfg 0, gelu\n  lfu.cfg 1, recip\n  lfu.ld 2, r9\n  fence 0\n  fence all\n fence ctrl|tensor\n"
        "  flag.waitr 9, r3\n  flag.wait 1, -5\n  flag.add 2, 7\n  mark -1\n  csrr r1, cycle\n  csrr r2, lanes\n"
        "  dma.shape r1, r2, r3\n  dma.stride r1, r2, r3, r4\n  dma.st r5+, r6+\n  vredsum.f32 r1, r2, r3, r4\n  halt\n",
        "main: halt\n.dram 0x10\na: .byte 1, 2, 3\nb:\n.sram 0x0\nc: .zero 100\n.byte 5\n.zero 20\nd:\n.word 7\ne:\n"
        ".dram 0x20\nf: .f32 1, 2, 3, 4\n.tensor f, f32, 2, 2\n.tensor a, int8, 3\nlast:\n",
        /* several labels at one address, labels past the end of a section, sections adjacent */
        "x: y: z: nop\nhalt\n.dram 0x100\np: q: .byte 1\nr:\n.dram 0x101\ns: .byte 2\n.sram 0x8\nt: u:\n",
    };
    for (size_t i = 0; i < sizeof programs / sizeof programs[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "prog%zu.pasm", i);
        CHECK_MSG(identity(name, programs[i]), "program %zu", i);
    }
    /* every example shipped with the project */
    DIR *dir = opendir("examples");
    int examples = 0;
    struct dirent *e;
    while (dir && (e = readdir(dir))) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".pasm") != 0) continue;
        char path[512];
        snprintf(path, sizeof path, "examples/%s", e->d_name);
        uint8_t *text;
        size_t len;
        if (pm_read_file(path, &text, &len, &err) != PM_OK) continue;
        /* assemble from the file so .include resolves */
        pm_program a;
        if (pm_assemble_file(path, &a, &err) != PM_OK) {
            CHECK_MSG(0, "%s: %s", path, err.message);
        } else {
            pm_program_free(&a);
            CHECK_MSG(identity(path, (const char *)text), "%s", path);
        }
        free(text);
        examples++;
    }
    if (dir) closedir(dir);
    printf("identity checked on %d example(s)\n", examples);
}

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int mem_rank(pm_mem_kind m)
{
    return m == PM_MEM_CODE ? 0 : m == PM_MEM_DRAM ? 1 : 2;
}

static int canonical_cmp(const void *x, const void *y)
{
    const pm_symbol *a = x, *b = y;
    if (mem_rank(a->mem) != mem_rank(b->mem)) return mem_rank(a->mem) < mem_rank(b->mem) ? -1 : 1;
    if (a->addr != b->addr) return a->addr < b->addr ? -1 : 1;
    return strcmp(a->name, b->name); /* ties by name: the file format's canonical order */
}

/* Random programs in the assembler's canonical order: dis -> asm must give
 * them back field for field. */
TEST(random_programs_survive_disassembly)
{
    size_t nrows;
    const pm_insn_info *rows = pm_insn_info_table(&nrows);
    for (int iter = 0; iter < 300; iter++) {
        pm_program p;
        pm_program_init(&p);
        p.code_count = 1 + rnd() % 40;
        p.code = malloc(p.code_count * 8);
        for (size_t i = 0; i < p.code_count; i++) {
            const pm_insn_info *r = &rows[rnd() % nrows];
            pm_insn insn = {.opcode = r->opcode};
            for (int k = 0; k < r->operand_count; k++) {
                int64_t lo, hi;
                pm_operand_range(r->operands[k], &lo, &hi);
                if (r->operands[k] == 'l') hi = (int64_t)p.code_count - 1;
                uint64_t span = (uint64_t)hi - (uint64_t)lo + 1;
                insn.op[k] = (int64_t)((uint64_t)lo + (span ? rnd() % span : rnd()));
            }
            p.code[i] = enc(insn);
        }
        p.entry = (uint32_t)(rnd() % p.code_count);
        p.sections = calloc(8, sizeof *p.sections);
        p.symbols = calloc(64, sizeof *p.symbols);
        for (int m = 0; m < 2; m++) {
            uint64_t addr = rnd() % 64;
            for (int k = (int)(rnd() % 4); k > 0; k--) {
                pm_section *sec = &p.sections[p.section_count++];
                sec->mem = m ? PM_MEM_SRAM : PM_MEM_DRAM;
                sec->addr = addr;
                sec->size = 1 + rnd() % 60;
                sec->data = calloc(1, sec->size);
                for (uint64_t b = 0; b < sec->size; b++) sec->data[b] = rnd() % 3 ? 0 : (uint8_t)rnd();
                addr += sec->size + rnd() % 3 * (rnd() % 40); /* sometimes adjacent */
            }
        }
        size_t nsym = rnd() % 40;
        for (size_t k = 0; k < nsym; k++) {
            pm_symbol *sy = &p.symbols[p.symbol_count++];
            snprintf(sy->name, sizeof sy->name, "s%03zu", k);
            int kind = (int)(rnd() % 3);
            sy->mem = kind == 0 ? PM_MEM_CODE : kind == 1 ? PM_MEM_DRAM : PM_MEM_SRAM;
            sy->addr = kind == 0 ? rnd() % (p.code_count + 1) : rnd() % 300;
            if (kind && rnd() % 4 == 0) {
                sy->is_tensor = true;
                sy->dtype = (pm_format)(rnd() % PM_FMT_COUNT);
                sy->rank = 1 + (uint32_t)(rnd() % PM_TENSOR_MAX_RANK);
                for (uint32_t d = 0; d < sy->rank; d++) sy->shape[d] = 1 + rnd() % 1000;
            }
        }
        qsort(p.symbols, p.symbol_count, sizeof *p.symbols, canonical_cmp);
        char *text = NULL;
        pm_program back;
        pm_program_init(&back);
        bool ok = pm_disassemble(&p, &text, &err) == PM_OK && pm_assemble("dis.pasm", text, &back, &err) == PM_OK;
        CHECK_MSG(ok, "iteration %d: %s", iter, err.message);
        bool same = ok && back.code_count == p.code_count && back.entry == p.entry &&
                    !memcmp(back.code, p.code, 8 * p.code_count) && back.section_count == p.section_count &&
                    back.symbol_count == p.symbol_count;
        for (size_t i = 0; same && i < p.section_count; i++)
            same = back.sections[i].mem == p.sections[i].mem && back.sections[i].addr == p.sections[i].addr &&
                   back.sections[i].size == p.sections[i].size &&
                   !memcmp(back.sections[i].data, p.sections[i].data, p.sections[i].size);
        for (size_t i = 0; same && i < p.symbol_count; i++) {
            const pm_symbol *x = &p.symbols[i], *y = &back.symbols[i];
            same = !strcmp(x->name, y->name) && x->mem == y->mem && x->addr == y->addr && x->is_tensor == y->is_tensor &&
                   x->dtype == y->dtype && x->rank == y->rank && !memcmp(x->shape, y->shape, sizeof x->shape);
        }
        CHECK_MSG(same, "iteration %d differs after dis -> asm:\n%s", iter, text ? text : "");
        free(text);
        pm_program_free(&back);
        pm_program_free(&p);
        if (!same) break;
    }
}

TEST(format_insn_canonical)
{
    char buf[128];
    pm_insn i = {PM_OP_VCVT, {PM_FMT_BF16, PM_FMT_F32, 1 | PM_AREG_INC, 2, 3}};
    CHECK(pm_format_insn(&i, buf, sizeof buf, &err) == PM_OK && strcmp(buf, "vcvt.bf16.f32 r1+, r2, r3") == 0);
    pm_insn j = {PM_OP_BNE, {1, 0, 12}};
    CHECK(pm_format_insn(&j, buf, sizeof buf, &err) == PM_OK && strcmp(buf, "bne r1, r0, L12") == 0);
    pm_insn k = {PM_OP_FENCE, {1 << PM_UNIT_DMA_ST | 1 << PM_UNIT_LFU}};
    CHECK(pm_format_insn(&k, buf, sizeof buf, &err) == PM_OK && strcmp(buf, "fence dma.st|lfu") == 0);
    pm_insn l = {PM_OP_LFUCFG, {3, PM_LFU_SILU}};
    CHECK(pm_format_insn(&l, buf, sizeof buf, &err) == PM_OK && strcmp(buf, "lfu.cfg 3, silu") == 0);
    pm_insn m = {PM_OP_HALT, {0}};
    CHECK(pm_format_insn(&m, buf, sizeof buf, &err) == PM_OK && strcmp(buf, "halt") == 0);
    CHECK(pm_format_insn(&i, buf, 8, &err) == PM_ERR_INVALID);
    pm_insn bad = {PM_OP_ADD, {40, 0, 0}};
    CHECK(pm_format_insn(&bad, buf, sizeof buf, &err) == PM_ERR_INVALID);
}

int main(void)
{
    pm_program_init(&prog);
    RUN(instructions_encode_like_the_table);
    RUN(expressions);
    RUN(forward_references);
    RUN(data_directives);
    RUN(sections_and_symbols);
    RUN(text_org_align_and_local_labels);
    RUN(symbol_ties_and_high_addresses);
    RUN(includes);
    RUN(byte_order_mark_is_skipped);
    RUN(errors_point_at_the_problem);
    RUN(hostile_input);
    RUN(disassembly_reassembles_identically);
    RUN(random_programs_survive_disassembly);
    RUN(format_insn_canonical);
    pm_program_free(&prog);
    return TEST_SUMMARY();
}
