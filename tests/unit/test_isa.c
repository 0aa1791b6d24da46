/* Tests for the ISA core: the table's invariants, encode/decode of every row
 * (hand-packed words as an independent check, random operands for the round
 * trip), decode rejections, and the PMPG program file (round trip, every
 * truncation, random corruption, each validation rule, the canonical order
 * of its tables, and byte-exact dis -> asm round trips of random programs). */
#include "polymorph/isa.h"
#include "polymorph/lfu.h"
#include "test.h"

#include <inttypes.h>
#include <unistd.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

TEST(table_invariants)
{
    size_t n;
    const pm_insn_info *t = pm_insn_info_table(&n);
    CHECK(n >= 60);
    int seen[256] = {0};
    for (size_t i = 0; i < n; i++) {
        unsigned bits = 8;
        int leading_t = 0;
        bool in_t = true;
        CHECK_MSG((int)strlen(t[i].operands) == t[i].operand_count, "%s", t[i].mnemonic);
        CHECK(t[i].operand_count <= PM_MAX_OPERANDS);
        for (const char *k = t[i].operands; *k; k++) {
            CHECK_MSG(pm_operand_bits(*k) > 0, "%s: unknown kind %c", t[i].mnemonic, *k);
            bits += pm_operand_bits(*k);
            if (*k == 't' && in_t) leading_t++;
            else in_t = false;
            if (*k == 't') CHECK_MSG(in_t, "%s: format operand after others", t[i].mnemonic);
        }
        CHECK_MSG(bits <= 64, "%s needs %u bits", t[i].mnemonic, bits);
        CHECK_MSG(leading_t == t[i].format_count, "%s", t[i].mnemonic);
        CHECK_MSG(seen[t[i].opcode]++ == 0, "opcode 0x%02x repeated", t[i].opcode);
        CHECK(pm_insn_info_for_opcode(t[i].opcode) == &t[i]);
        CHECK(pm_insn_info_for_mnemonic(t[i].mnemonic) == &t[i]);
        CHECK((unsigned)t[i].unit < PM_UNIT_COUNT);
        CHECK(t[i].doc && t[i].doc[0]);
        for (size_t j = 0; j < i; j++) CHECK(strcmp(t[i].mnemonic, t[j].mnemonic) != 0);
    }
    CHECK(pm_insn_info_for_mnemonic("VADD") == pm_insn_info_for_opcode(PM_OP_VADD));
    CHECK(pm_insn_info_for_mnemonic("vadd.f32") == NULL);
    CHECK(pm_insn_info_for_opcode(0x2F) == NULL);
    CHECK(pm_insn_info_for_opcode(256) == NULL);
    CHECK(pm_insn_info_for_opcode(PM_OP_VFMA)->format_count == 1);
    CHECK(pm_insn_info_for_opcode(PM_OP_VCVT)->format_count == 2);
    CHECK(pm_insn_info_for_opcode(PM_OP_HALT)->operand_count == 0);
}

TEST(names_and_widths)
{
    static const char *units[] = {"ctrl", "dma.ld", "dma.st", "vec", "lfu", "tensor"};
    for (int u = 0; u < PM_UNIT_COUNT; u++) {
        CHECK(strcmp(pm_unit_name((pm_unit)u), units[u]) == 0);
        pm_unit back;
        CHECK(pm_unit_from_name(units[u], &back) && back == (pm_unit)u);
    }
    static const char *csrs[] = {"engine_id", "engines", "lanes", "cycle"};
    for (int c = 0; c < PM_CSR_COUNT; c++) {
        CHECK(strcmp(pm_csr_name((pm_csr)c), csrs[c]) == 0);
        pm_csr back;
        CHECK(pm_csr_from_name(csrs[c], &back) && back == (pm_csr)c);
    }
    const char *kinds = "traiwlfsmgc";
    const unsigned widths[] = {5, 5, 6, 32, 48, 32, 5, 3, 8, 8, 8};
    for (int k = 0; kinds[k]; k++) CHECK(pm_operand_bits(kinds[k]) == widths[k]);
    CHECK(pm_operand_bits('x') == 0);
    CHECK(pm_operand_bits((char)200) == 0);
    CHECK(PM_UNIT_MASK_ALL == 0x3F);
}

/* Words packed by hand from the layout in isa_table.h. */
TEST(encode_known_words)
{
    pm_error err;
    uint64_t w;
    pm_insn li = {.opcode = PM_OP_LI, .op = {5, -7}};
    CHECK(pm_encode(&li, &w, &err) == PM_OK);
    CHECK(w == (0x02ull | 5ull << 8 | ((uint64_t)-7 & 0xFFFFFFFFFFFFull) << 13));
    pm_insn vadd = {.opcode = PM_OP_VADD, .op = {PM_FMT_BF16, 3 | PM_AREG_INC, 4, 5, 6}};
    CHECK(pm_encode(&vadd, &w, &err) == PM_OK);
    CHECK(w == (0x40ull | 1ull << 8 | 0x23ull << 13 | 4ull << 19 | 5ull << 25 | 6ull << 31));
    pm_insn beq = {.opcode = PM_OP_BEQ, .op = {1, 2, 0xFFFFFFFF}};
    CHECK(pm_encode(&beq, &w, &err) == PM_OK);
    CHECK(w == (0x17ull | 1ull << 8 | 2ull << 13 | 0xFFFFFFFFull << 18));
    pm_insn fset = {.opcode = PM_OP_FSET, .op = {255, INT32_MIN}};
    CHECK(pm_encode(&fset, &w, &err) == PM_OK);
    CHECK(w == (0x81ull | 255ull << 8 | 0x80000000ull << 16));
    pm_insn d;
    CHECK(pm_decode(w, &d, &err) == PM_OK && d.op[1] == INT32_MIN && d.op[0] == 255);
    pm_insn halt = {.opcode = PM_OP_HALT};
    CHECK(pm_encode(&halt, &w, &err) == PM_OK && w == 1);
}

static int64_t random_in(char kind)
{
    int64_t lo, hi;
    pm_operand_range(kind, &lo, &hi);
    uint64_t span = (uint64_t)hi - (uint64_t)lo;
    uint64_t r = rnd();
    switch (rnd() % 4) { /* favour the edges */
    case 0: return lo;
    case 1: return hi;
    default: return (int64_t)((uint64_t)lo + (span == UINT64_MAX ? r : r % (span + 1)));
    }
}

TEST(round_trip_every_row)
{
    size_t n;
    const pm_insn_info *t = pm_insn_info_table(&n);
    pm_error err;
    for (size_t i = 0; i < n; i++)
        for (int iter = 0; iter < 300; iter++) {
            pm_insn a = {.opcode = t[i].opcode};
            for (int k = 0; k < t[i].operand_count; k++) a.op[k] = random_in(t[i].operands[k]);
            uint64_t w;
            if (pm_encode(&a, &w, &err) != PM_OK) {
                CHECK_MSG(0, "%s: %s", t[i].mnemonic, err.message);
                break;
            }
            CHECK((w & 0xFF) == t[i].opcode);
            pm_insn b;
            if (pm_decode(w, &b, &err) != PM_OK) {
                CHECK_MSG(0, "%s: %s", t[i].mnemonic, err.message);
                break;
            }
            CHECK(b.opcode == a.opcode);
            for (int k = 0; k < PM_MAX_OPERANDS; k++) CHECK_MSG(b.op[k] == a.op[k], "%s op %d", t[i].mnemonic, k);
            char text[128];
            CHECK(pm_format_insn(&b, text, sizeof text, &err) == PM_OK);
            CHECK(strncmp(text, t[i].mnemonic, strlen(t[i].mnemonic)) == 0);
        }
}

TEST(encode_rejects_out_of_range)
{
    pm_error err;
    uint64_t w;
    struct { pm_insn insn; const char *needle; } bad[] = {
        {{PM_OP_ADD, {32, 0, 0}}, "operand 1 (register) = 32"},
        {{PM_OP_ADDI, {1, 1, (int64_t)1 << 31}}, "out of range -2147483648..2147483647"},
        {{PM_OP_LI, {1, (int64_t)1 << 47}}, "operand 2"},
        {{PM_OP_JMP, {-1}}, "label"},
        {{PM_OP_LFUCFG, {8, 0}}, "lfu slot"},
        {{PM_OP_LFUCFG, {0, PM_LFU_FUNC_COUNT}}, "lfu function"},
        {{PM_OP_FENCE, {0x40}}, "unit mask"},
        {{PM_OP_CSRR, {1, PM_CSR_COUNT}}, "csr"},
        {{PM_OP_VADD, {PM_FMT_COUNT, 0, 0, 0, 0}}, "format"},
        {{PM_OP_VADD, {0, 64, 0, 0, 0}}, "address register"},
        {{0x2F, {0}}, "unknown opcode 0x2f"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_MSG(pm_encode(&bad[i].insn, &w, &err) == PM_ERR_INVALID, "case %zu", i);
        CHECK_MSG(strstr(err.message, bad[i].needle), "case %zu: %s", i, err.message);
    }
}

TEST(decode_rejects_bad_words)
{
    pm_error err;
    pm_insn d;
    struct { uint64_t word; const char *needle; } bad[] = {
        {0xFF, "unknown opcode 0xff"},
        {0x2F, "unknown opcode"},
        {0x00ull | 1ull << 8, "spare bits 8..63"},
        {0x01ull | 1ull << 63, "spare bits 8..63"},
        {0x40ull | 31ull << 8, "operand 1 (format, bits 8..12) = 31"},
        {0x52ull | 1ull << 8 | 30ull << 13, "operand 2 (format"},
        {0x70ull | 0ull << 8 | 31ull << 11, "lfu function"},
        {0x1Dull | 1ull << 8 | 200ull << 13, "csr"},
        {0x80ull | 0x80ull << 8, "unit mask"},
        {0x1Bull | 1ull << 40, "spare bits 40..63"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_MSG(pm_decode(bad[i].word, &d, &err) == PM_ERR_FORMAT, "case %zu", i);
        CHECK_MSG(strstr(err.message, bad[i].needle), "case %zu: %s", i, err.message);
    }
    /* exhaustive over the opcode byte with zero operands: valid iff a row exists */
    for (unsigned op = 0; op < 256; op++)
        CHECK((pm_decode(op, &d, NULL) == PM_OK) == (pm_insn_info_for_opcode(op) != NULL));
}

/* ---- programs ---- */

static uint64_t enc(pm_insn insn)
{
    uint64_t w = 0;
    pm_encode(&insn, &w, NULL);
    return w;
}

/* A small program owning its memory (freed with pm_program_free). */
static void make_program(pm_program *p)
{
    pm_program_init(p);
    p->code_count = 4;
    p->code = malloc(4 * sizeof *p->code);
    p->code[0] = enc((pm_insn){PM_OP_LI, {1, 42}});
    p->code[1] = enc((pm_insn){PM_OP_VADD, {PM_FMT_F32, 2 | PM_AREG_INC, 3, 4, 1}});
    p->code[2] = enc((pm_insn){PM_OP_JMP, {3}});
    p->code[3] = enc((pm_insn){PM_OP_HALT, {0}});
    p->entry = 1;
    p->section_count = 2;
    p->sections = calloc(2, sizeof *p->sections);
    p->sections[0] = (pm_section){PM_MEM_DRAM, 0x1000, 5, malloc(5)};
    memcpy(p->sections[0].data, "hello", 5);
    p->sections[1] = (pm_section){PM_MEM_SRAM, 0x40, 8, calloc(1, 8)};
    p->sections[1].data[7] = 0xAB;
    p->symbol_count = 3;
    p->symbols = calloc(3, sizeof *p->symbols);
    strcpy(p->symbols[0].name, "start");
    p->symbols[0].mem = PM_MEM_CODE;
    p->symbols[0].addr = 1;
    strcpy(p->symbols[1].name, "greeting");
    p->symbols[1].mem = PM_MEM_DRAM;
    p->symbols[1].addr = 0x1000;
    strcpy(p->symbols[2].name, "x");
    p->symbols[2].mem = PM_MEM_SRAM;
    p->symbols[2].addr = 0x40;
    p->symbols[2].is_tensor = true;
    p->symbols[2].dtype = PM_FMT_BF16;
    p->symbols[2].rank = 2;
    p->symbols[2].shape[0] = 2;
    p->symbols[2].shape[1] = 2;
}

static bool programs_equal(const pm_program *a, const pm_program *b)
{
    if (a->code_count != b->code_count || a->entry != b->entry || a->section_count != b->section_count ||
        a->symbol_count != b->symbol_count)
        return false;
    if (memcmp(a->code, b->code, a->code_count * 8)) return false;
    for (size_t i = 0; i < a->section_count; i++) {
        const pm_section *x = &a->sections[i], *y = &b->sections[i];
        if (x->mem != y->mem || x->addr != y->addr || x->size != y->size || memcmp(x->data, y->data, x->size)) return false;
    }
    for (size_t i = 0; i < a->symbol_count; i++) {
        const pm_symbol *x = &a->symbols[i], *y = &b->symbols[i];
        if (strcmp(x->name, y->name) || x->mem != y->mem || x->addr != y->addr || x->is_tensor != y->is_tensor ||
            x->dtype != y->dtype || x->rank != y->rank || memcmp(x->shape, y->shape, sizeof x->shape))
            return false;
    }
    return true;
}

TEST(program_round_trip)
{
    pm_program p, q;
    make_program(&p);
    pm_error err;
    uint8_t *bytes;
    size_t len;
    CHECK(pm_program_write(&p, &bytes, &len, &err) == PM_OK);
    CHECK(len == 48 + 4 * 8 + 2 * 32 + 3 * 112 + 5 + 8);
    CHECK(memcmp(bytes, "PMPG\x01\x00\x00\x00", 8) == 0);
    CHECK(pm_program_read(bytes, len, &q, &err) == PM_OK);
    CHECK(programs_equal(&p, &q));
    const pm_symbol *s = pm_program_find_symbol(&q, "x");
    CHECK(s && s->is_tensor && s->shape[1] == 2);
    CHECK(pm_program_find_symbol(&q, "nope") == NULL);
    /* files: save is atomic, load validates */
    char path[64];
    snprintf(path, sizeof path, "/tmp/pm_test_isa_%ld.pmp", (long)getpid());
    pm_program r;
    CHECK(pm_program_save_file(&q, path, &err) == PM_OK);
    CHECK(pm_program_load_file(path, &r, &err) == PM_OK);
    CHECK(programs_equal(&p, &r));
    remove(path);
    pm_program_free(&r);
    CHECK(pm_program_load_file(path, &r, &err) == PM_ERR_IO);
    pm_program_free(&r);
    pm_program_free(&q);
    pm_program_free(&p);
    free(bytes);
}

TEST(program_write_refuses_invalid)
{
    pm_program p;
    make_program(&p);
    pm_error err;
    uint8_t *bytes;
    size_t len;
    p.entry = 4;
    CHECK(pm_program_write(&p, &bytes, &len, &err) == PM_ERR_INVALID && strstr(err.message, "entry"));
    p.entry = 0;
    p.sections[1].mem = PM_MEM_DRAM; /* 0x40..0x48 vs 0x1000: no overlap, fine */
    CHECK(pm_program_write(&p, &bytes, &len, &err) == PM_OK);
    free(bytes);
    p.sections[1].addr = 0x1004; /* overlaps 0x1000..0x1005 */
    CHECK(pm_program_write(&p, &bytes, &len, &err) == PM_ERR_INVALID && strstr(err.message, "overlaps"));
    p.sections[1].addr = 0x1005; /* adjacent is fine */
    CHECK(pm_program_write(&p, &bytes, &len, &err) == PM_OK);
    free(bytes);
    strcpy(p.symbols[0].name, "r3"); /* a register spelling can't be read back as a label */
    CHECK(pm_program_write(&p, &bytes, &len, &err) == PM_ERR_INVALID && strstr(err.message, "identifier"));
    strcpy(p.symbols[0].name, "x");
    CHECK(pm_program_write(&p, &bytes, &len, &err) == PM_ERR_INVALID && strstr(err.message, "duplicate"));
    pm_program_free(&p);
    pm_program empty;
    pm_program_init(&empty);
    CHECK(pm_program_write(&empty, &bytes, &len, &err) == PM_ERR_INVALID);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

TEST(program_read_names_the_problem)
{
    pm_program p, q;
    make_program(&p);
    uint8_t *good;
    size_t len;
    pm_error err;
    CHECK(pm_program_write(&p, &good, &len, &err) == PM_OK);
    pm_program_free(&p);
    const size_t code = 48, sec = code + 32, sym = sec + 64, data = sym + 3 * 112;
    uint8_t *b = malloc(len + 8);
    struct { size_t at; int width; uint64_t value; const char *needle; } cases[] = {
        {0, 1, 'X', "byte 0: bad magic"},
        {4, 2, 2, "byte 4: version 2"},
        {6, 2, 1, "byte 6: flags"},
        {8, 4, 4, "byte 8: entry 4"},
        {12, 4, 0, "byte 12: code word count is 0"},
        {12, 4, 0xFFFFFFFF, "byte 24: code"},
        {16, 4, 0x10000000, "byte 32: section table"},
        {20, 4, 1000, "byte 40: symbol table"},
        {24, 8, UINT64_MAX - 3, "byte 24: code at offset"},
        {code + 8, 8, 0xFF, "byte 56: code word 1: decode"},
        {code + 16, 8, 0x1Bull | 1ull << 50, "spare bits"},
        {sec, 4, 2, "section 0: mem kind 2"},
        {sec + 4, 4, 1, "reserved"},
        {sec + 16, 8, 0, "size is 0"},
        {sec + 8, 8, UINT64_MAX, "overflows"},
        {sec + 24, 8, len, "section 0 data at offset"},
        {sec + 24, 8, data + 1, "section 0: data offset 481 is not 480"},
        {sec + 32 + 8, 8, 0x1000 - 4, "overlaps section"}, /* still SRAM: no overlap... see below */
        {sym + 10, 1, 'y', "padding is not zero"},
        {sym, 1, '9', "not a valid identifier"},
        {sym, 1, 0, "not a valid identifier"},
        {sym + 64, 4, 7, "mem kind 7"},
        {sym + 64 + 4, 1, 2, "is_tensor is 2"},
        {sym + 64 + 5, 1, 3, "dtype/rank set on a non-tensor"},
        {sym + 72, 8, 5, "past the end of the code"},
        {sym + 2 * 112 + 64 + 5, 1, 200, "dtype 200"},
        {sym + 2 * 112 + 64 + 6, 1, 0, "rank 0"},
        {sym + 2 * 112 + 64 + 6, 1, 5, "rank 5"},
        {sym + 2 * 112 + 80 + 8, 8, 0, "dimension 1 is zero"},
        {sym + 2 * 112 + 80 + 16, 8, 3, "dimension 2 is set beyond rank"},
        {sym + 2 * 112 + 64 + 4, 1, 0, "dtype/rank set"},
        {sym + 1 * 112, 8, 'x', "duplicate name \"x\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(b, good, len);
        uint8_t *f = b + cases[i].at;
        if (cases[i].width == 1) f[0] = (uint8_t)cases[i].value;
        else if (cases[i].width == 2) f[0] = (uint8_t)cases[i].value, f[1] = (uint8_t)(cases[i].value >> 8);
        else if (cases[i].width == 4) put32(f, (uint32_t)cases[i].value);
        else put64(f, cases[i].value);
        pm_status st = pm_program_read(b, len, &q, &err);
        if (i == 17) { /* moving the SRAM section near DRAM addresses is legal: memories differ */
            CHECK_MSG(st == PM_OK, "%s", err.message);
            pm_program_free(&q);
            continue;
        }
        CHECK_MSG(st == PM_ERR_FORMAT, "case %zu accepted", i);
        CHECK_MSG(strstr(err.message, cases[i].needle), "case %zu: '%s' lacks '%s'", i, err.message, cases[i].needle);
        CHECK(q.code == NULL && q.sections == NULL && q.symbols == NULL);
    }
    /* trailing garbage and a gap between regions */
    memcpy(b, good, len);
    b[len] = 0;
    CHECK(pm_program_read(b, len + 1, &q, &err) == PM_ERR_FORMAT && strstr(err.message, "trailing garbage"));
    memcpy(b, good, len);
    put64(b + sec + 24, data + 1); /* section 0 data moves one byte later: gap, then overlap */
    CHECK(pm_program_read(b, len, &q, &err) == PM_ERR_FORMAT);
    free(b);
    free(good);
}

TEST(program_truncations_and_flips)
{
    pm_program p, q;
    make_program(&p);
    uint8_t *good;
    size_t len;
    pm_error err;
    CHECK(pm_program_write(&p, &good, &len, &err) == PM_OK);
    pm_program_free(&p);
    /* Every truncation is rejected (the regions must tile the whole file).
     * Each prefix is copied to an exact-size buffer so a sanitizer sees any
     * read past the end. */
    for (size_t n = 0; n < len; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, good, n);
        CHECK_MSG(pm_program_read(cut, n, &q, &err) == PM_ERR_FORMAT, "prefix %zu accepted", n);
        CHECK(strstr(err.message, "byte ") != NULL);
        free(cut);
    }
    /* Random corruption: reject cleanly, or accept something that writes
     * back to exactly the same bytes (every accepted file is canonical). */
    uint8_t *b = malloc(len);
    int accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(b, good, len);
        int flips = 1 + (int)(rnd() % 3);
        for (int f = 0; f < flips; f++) b[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
        if (pm_program_read(b, len, &q, &err) != PM_OK) {
            CHECK(strncmp(err.message, "program: byte ", 14) == 0);
            continue;
        }
        accepted++;
        uint8_t *again;
        size_t alen;
        pm_program r;
        CHECK(pm_program_write(&q, &again, &alen, &err) == PM_OK);
        CHECK(alen == len && memcmp(again, b, len) == 0);
        CHECK(pm_program_read(again, alen, &r, &err) == PM_OK);
        CHECK(programs_equal(&q, &r));
        pm_program_free(&r);
        pm_program_free(&q);
        free(again);
    }
    CHECK(accepted > 0); /* flips in data bytes and immediates are legal */
    free(b);
    free(good);
}

/* ---- canonical order ---- */

/* An independent serialiser written from docs/program-format.md: the tables
 * exactly in the order p holds them, the fixed layout, no validation. */
static uint8_t *serialise(const pm_program *p, size_t *len)
{
    size_t n = 48 + 8 * p->code_count + 32 * p->section_count + 112 * p->symbol_count;
    for (size_t i = 0; i < p->section_count; i++) n += p->sections[i].size;
    uint8_t *b = calloc(1, n);
    memcpy(b, "PMPG\x01\x00\x00\x00", 8);
    put32(b + 8, p->entry);
    put32(b + 12, (uint32_t)p->code_count);
    put32(b + 16, (uint32_t)p->section_count);
    put32(b + 20, (uint32_t)p->symbol_count);
    size_t sec = 48 + 8 * p->code_count, sym = sec + 32 * p->section_count, data = sym + 112 * p->symbol_count;
    put64(b + 24, 48);
    put64(b + 32, sec);
    put64(b + 40, sym);
    for (size_t i = 0; i < p->code_count; i++) put64(b + 48 + 8 * i, p->code[i]);
    for (size_t i = 0; i < p->section_count; i++) {
        const pm_section *x = &p->sections[i];
        uint8_t *e = b + sec + 32 * i;
        put32(e, x->mem);
        put64(e + 8, x->addr);
        put64(e + 16, x->size);
        put64(e + 24, data);
        memcpy(b + data, x->data, x->size);
        data += x->size;
    }
    for (size_t i = 0; i < p->symbol_count; i++) {
        const pm_symbol *x = &p->symbols[i];
        uint8_t *e = b + sym + 112 * i;
        memcpy(e, x->name, strlen(x->name));
        put32(e + 64, x->mem);
        if (x->is_tensor) {
            e[68] = 1;
            e[69] = (uint8_t)x->dtype;
            e[70] = (uint8_t)x->rank;
            for (int d = 0; d < PM_TENSOR_MAX_RANK; d++) put64(e + 80 + 8 * d, x->shape[d]);
        }
        put64(e + 72, x->addr);
    }
    *len = n;
    return b;
}

static void add_section(pm_program *p, pm_mem_kind mem, uint64_t addr, uint64_t size)
{
    pm_section *x = &p->sections[p->section_count++];
    *x = (pm_section){mem, addr, size, malloc(size ? size : 1)};
    for (uint64_t i = 0; i < size; i++) x->data[i] = (uint8_t)rnd();
}

static pm_symbol *add_symbol(pm_program *p, const char *name, pm_mem_kind mem, uint64_t addr)
{
    pm_symbol *x = &p->symbols[p->symbol_count++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    x->mem = mem;
    x->addr = addr;
    return x;
}

static void shuffle(void *base, size_t n, size_t size)
{
    char tmp[sizeof(pm_symbol) > sizeof(pm_section) ? sizeof(pm_symbol) : sizeof(pm_section)];
    for (size_t i = n; i > 1; i--) {
        size_t j = rnd() % i;
        char *a = (char *)base + (i - 1) * size, *b = (char *)base + j * size;
        memcpy(tmp, a, size), memcpy(a, b, size), memcpy(b, tmp, size);
    }
}

/* A program whose canonical order is spelled out by hand: ties at one address
 * ordered by name bytewise ('.' < digits < upper case < '_' < lower case, a
 * prefix first), addresses above 2^63 compared unsigned. */
static const char *const canonical_names[] = {"start", "B", "_x", "a", "b", "end", "buf", "bu", "buf.end", "buf_end",
                                              "x", "top", "hi"};
static void make_tied_program(pm_program *p)
{
    pm_program_init(p);
    p->code_count = 4;
    p->code = malloc(4 * sizeof *p->code);
    p->code[0] = enc((pm_insn){PM_OP_LI, {1, 42}});
    p->code[1] = enc((pm_insn){PM_OP_JMP, {2}});
    p->code[2] = enc((pm_insn){PM_OP_NOP, {0}});
    p->code[3] = enc((pm_insn){PM_OP_HALT, {0}});
    p->entry = 2;
    p->sections = calloc(4, sizeof *p->sections);
    add_section(p, PM_MEM_DRAM, 0x0, 3);
    add_section(p, PM_MEM_DRAM, 0x1000, 5);
    add_section(p, PM_MEM_SRAM, 0x40, 8);
    add_section(p, PM_MEM_SRAM, 0x8000000000000000ull, 2);
    p->symbols = calloc(16, sizeof *p->symbols);
    add_symbol(p, "start", PM_MEM_CODE, 0);
    add_symbol(p, "B", PM_MEM_CODE, 2);
    add_symbol(p, "_x", PM_MEM_CODE, 2);
    add_symbol(p, "a", PM_MEM_CODE, 2);
    add_symbol(p, "b", PM_MEM_CODE, 2);
    add_symbol(p, "end", PM_MEM_CODE, 4);
    add_symbol(p, "buf", PM_MEM_DRAM, 0x1000);
    add_symbol(p, "bu", PM_MEM_DRAM, 0x1005);
    add_symbol(p, "buf.end", PM_MEM_DRAM, 0x1005);
    add_symbol(p, "buf_end", PM_MEM_DRAM, 0x1005);
    pm_symbol *x = add_symbol(p, "x", PM_MEM_SRAM, 0x40);
    x->is_tensor = true, x->dtype = PM_FMT_BF16, x->rank = 2, x->shape[0] = 2, x->shape[1] = 2;
    add_symbol(p, "top", PM_MEM_SRAM, 0x7FFFFFFFFFFFFFFFull);
    add_symbol(p, "hi", PM_MEM_SRAM, UINT64_MAX);
}

TEST(program_write_sorts_tables)
{
    pm_program p;
    make_tied_program(&p);
    pm_error err;
    size_t want_len;
    uint8_t *want = serialise(&p, &want_len); /* p is in canonical order as built */
    for (int iter = 0; iter < 50; iter++) {
        shuffle(p.sections, p.section_count, sizeof *p.sections);
        shuffle(p.symbols, p.symbol_count, sizeof *p.symbols);
        pm_symbol before[16];
        memcpy(before, p.symbols, p.symbol_count * sizeof *p.symbols);
        uint8_t *bytes;
        size_t len;
        CHECK_MSG(pm_program_write(&p, &bytes, &len, &err) == PM_OK, "%s", err.message);
        CHECK(len == want_len && memcmp(bytes, want, len) == 0);
        CHECK(memcmp(before, p.symbols, p.symbol_count * sizeof *p.symbols) == 0); /* p untouched */
        pm_program q;
        CHECK(pm_program_read(bytes, len, &q, &err) == PM_OK);
        for (size_t i = 0; i < q.symbol_count; i++) CHECK(strcmp(q.symbols[i].name, canonical_names[i]) == 0);
        CHECK(q.sections[0].addr == 0 && q.sections[1].addr == 0x1000 && q.sections[2].addr == 0x40 &&
              q.sections[3].mem == PM_MEM_SRAM);
        pm_program_free(&q);
        free(bytes);
    }
    pm_program_canonicalize(&p);
    for (size_t i = 0; i < p.symbol_count; i++) CHECK(strcmp(p.symbols[i].name, canonical_names[i]) == 0);
    size_t len;
    uint8_t *again = serialise(&p, &len);
    CHECK(len == want_len && memcmp(again, want, len) == 0);
    free(again);
    free(want);
    pm_program_free(&p);
}

static void expect_rejected(const uint8_t *b, size_t len, const char *message)
{
    pm_program q;
    pm_error err;
    CHECK_MSG(pm_program_read(b, len, &q, &err) == PM_ERR_FORMAT, "accepted; expected %s", message);
    CHECK_MSG(strcmp(err.message, message) == 0, "\n got  %s\n want %s", err.message, message);
}

TEST(program_read_requires_canonical_order)
{
    pm_program p;
    make_program(&p);
    size_t len;
    uint8_t *b = serialise(&p, &len);
    pm_program q;
    pm_error err;
    CHECK_MSG(pm_program_read(b, len, &q, &err) == PM_OK, "%s", err.message);
    pm_program_free(&q);
    free(b);
    /* symbols: sram before dram */
    pm_symbol t = p.symbols[1];
    p.symbols[1] = p.symbols[2], p.symbols[2] = t;
    b = serialise(&p, &len);
    expect_rejected(b, len,
                    "program: byte 368: symbol table entry 2 (\"greeting\", dram 0x1000): out of canonical order (sorts "
                    "before entry 1 (\"x\", sram 0x40); symbols are ordered code, dram, sram, then by address, then by name)");
    free(b);
    p.symbols[2] = p.symbols[1], p.symbols[1] = t;
    /* sections: sram before dram */
    pm_section u = p.sections[0];
    p.sections[0] = p.sections[1], p.sections[1] = u;
    b = serialise(&p, &len);
    expect_rejected(b, len,
                    "program: byte 112: section table entry 1 (dram 0x1000): out of canonical order (sorts before entry 0 "
                    "(sram 0x40); sections are ordered dram, sram, each by address)");
    free(b);
    p.sections[1] = p.sections[0], p.sections[0] = u;
    /* two labels at one address: by name */
    p.symbols[1].mem = PM_MEM_CODE, p.symbols[1].addr = 1;
    strcpy(p.symbols[0].name, "zz");
    b = serialise(&p, &len);
    expect_rejected(b, len,
                    "program: byte 256: symbol table entry 1 (\"greeting\", code 0x1): out of canonical order (sorts "
                    "before entry 0 (\"zz\", code 0x1); symbols are ordered code, dram, sram, then by address, then by name)");
    free(b);
    t = p.symbols[0];
    p.symbols[0] = p.symbols[1], p.symbols[1] = t;
    b = serialise(&p, &len);
    CHECK_MSG(pm_program_read(b, len, &q, &err) == PM_OK, "%s", err.message); /* "greeting" < "zz": canonical */
    pm_program_free(&q);
    /* the layout is fixed too */
    const size_t data = 48 + 32 + 64 + 336;
    uint8_t *c = malloc(len);
    memcpy(c, b, len), put64(c + 24, 56);
    expect_rejected(c, len, "program: byte 24: code offset 56 is not 48 (the code follows the header directly)");
    memcpy(c, b, len), put64(c + 32, 48);
    expect_rejected(c, len, "program: byte 32: section table offset 48 is not 80 (the table follows the code directly)");
    memcpy(c, b, len), put64(c + 40, 80);
    expect_rejected(c, len, "program: byte 40: symbol table offset 80 is not 144 (the table follows the section table directly)");
    memcpy(c, b, len), put64(c + 80 + 24, data + 8), put64(c + 112 + 24, data);
    expect_rejected(c, len, "program: byte 104: section 0: data offset 488 is not 480 (section data follows the symbol "
                            "table, in table order, without gaps)");
    free(c);
    free(b);
    pm_program_free(&p);
}

/* Names from a small alphabet so that ties and shared prefixes are common;
 * none can spell a register (r0..r31, zero). */
static void random_name(char *name, const pm_program *p)
{
    static const char first[] = "abAB_", rest[] = "abA_.0";
    for (;;) {
        size_t n = 1 + rnd() % 4;
        name[0] = first[rnd() % (sizeof first - 1)];
        for (size_t i = 1; i < n; i++) name[i] = rest[rnd() % (sizeof rest - 1)];
        name[n] = 0;
        bool taken = false;
        for (size_t i = 0; i < p->symbol_count; i++) taken |= strcmp(p->symbols[i].name, name) == 0;
        if (!taken) return;
    }
}

/* Random valid programs in random table order: the written file reads back
 * canonical, and dis -> asm -> write reproduces it byte for byte. */
TEST(random_programs_round_trip_bytes)
{
    size_t nrows;
    const pm_insn_info *rows = pm_insn_info_table(&nrows);
    int checked = 0;
    for (int iter = 0; iter < 400; iter++) {
        pm_program p;
        pm_program_init(&p);
        p.code_count = 1 + rnd() % 12;
        p.code = malloc(p.code_count * 8);
        for (size_t i = 0; i < p.code_count; i++) {
            const pm_insn_info *r = &rows[rnd() % nrows];
            pm_insn insn = {.opcode = r->opcode};
            for (int k = 0; k < r->operand_count; k++)
                insn.op[k] = r->operands[k] == PM_OPK_LABEL ? (int64_t)(rnd() % p.code_count) : random_in(r->operands[k]);
            p.code[i] = enc(insn);
        }
        p.entry = (uint32_t)(rnd() % p.code_count);
        p.sections = calloc(8, sizeof *p.sections);
        p.symbols = calloc(32, sizeof *p.symbols);
        uint64_t points[24]; /* section starts and ends: where data labels tie */
        size_t npoints = 0;
        for (int m = 0; m < 2; m++) {
            uint64_t bases[] = {0, rnd() % 4096, 0x8000000000000000ull - 16, UINT64_MAX - 200};
            uint64_t addr = bases[rnd() % 4];
            for (int k = (int)(rnd() % 4); k > 0; k--) {
                uint64_t size = 1 + rnd() % 24;
                add_section(&p, m ? PM_MEM_SRAM : PM_MEM_DRAM, addr, size);
                points[npoints++] = addr, points[npoints++] = addr + size;
                addr += size + (rnd() % 2 ? 0 : rnd() % 16); /* often adjacent */
            }
        }
        for (size_t k = rnd() % 24; k > 0; k--) {
            char name[8];
            random_name(name, &p);
            int kind = (int)(rnd() % 3);
            pm_mem_kind mem = kind == 0 ? PM_MEM_CODE : kind == 1 ? PM_MEM_DRAM : PM_MEM_SRAM;
            uint64_t addr = kind == 0 ? rnd() % (p.code_count + 1)
                            : npoints && rnd() % 2 ? points[rnd() % npoints]
                            : rnd() % 3 ? rnd() % 64 : rnd();
            pm_symbol *sy = add_symbol(&p, name, mem, addr);
            if (kind && rnd() % 3 == 0) {
                sy->is_tensor = true;
                sy->dtype = (pm_format)(rnd() % PM_FMT_COUNT);
                sy->rank = 1 + (uint32_t)(rnd() % PM_TENSOR_MAX_RANK);
                for (uint32_t d = 0; d < sy->rank; d++) sy->shape[d] = 1 + rnd() % 1000;
                if (rnd() % 8 == 0) { /* the largest element count allowed */
                    memset(sy->shape, 0, sizeof sy->shape);
                    sy->rank = 1, sy->shape[0] = (uint64_t)INT64_MAX;
                }
            }
        }
        shuffle(p.sections, p.section_count, sizeof *p.sections);
        shuffle(p.symbols, p.symbol_count, sizeof *p.symbols);
        pm_error err;
        uint8_t *first = NULL, *second = NULL, *third = NULL;
        size_t first_len = 0, second_len = 0, third_len = 0;
        char *text = NULL, *text_unsorted = NULL;
        pm_program q, back, back_unsorted;
        pm_program_init(&q), pm_program_init(&back), pm_program_init(&back_unsorted);
        bool ok = pm_program_write(&p, &first, &first_len, &err) == PM_OK &&
                  pm_program_read(first, first_len, &q, &err) == PM_OK && pm_disassemble(&q, &text, &err) == PM_OK &&
                  pm_assemble("dis.pasm", text, &back, &err) == PM_OK &&
                  pm_program_write(&back, &second, &second_len, &err) == PM_OK &&
                  pm_disassemble(&p, &text_unsorted, &err) == PM_OK &&
                  pm_assemble("dis.pasm", text_unsorted, &back_unsorted, &err) == PM_OK &&
                  pm_program_write(&back_unsorted, &third, &third_len, &err) == PM_OK;
        CHECK_MSG(ok, "iteration %d: %s\n%s", iter, err.message, text ? text : "");
        if (ok) {
            pm_program_canonicalize(&p);
            CHECK_MSG(programs_equal(&p, &q), "iteration %d: read back is not the canonical program", iter);
            CHECK_MSG(programs_equal(&q, &back), "iteration %d: dis -> asm changed the program:\n%s", iter, text);
            CHECK_MSG(first_len == second_len && memcmp(first, second, first_len) == 0,
                      "iteration %d: dis -> asm -> write is not byte-identical:\n%s", iter, text);
            CHECK_MSG(first_len == third_len && memcmp(first, third, first_len) == 0,
                      "iteration %d: disassembling the unsorted program gave another file", iter);
            checked++;
        }
        free(first), free(second), free(third), free(text), free(text_unsorted);
        pm_program_free(&q), pm_program_free(&back), pm_program_free(&back_unsorted), pm_program_free(&p);
        if (!ok) break;
    }
    CHECK(checked == 400);
}

int main(void)
{
    RUN(table_invariants);
    RUN(names_and_widths);
    RUN(encode_known_words);
    RUN(round_trip_every_row);
    RUN(encode_rejects_out_of_range);
    RUN(decode_rejects_bad_words);
    RUN(program_round_trip);
    RUN(program_write_refuses_invalid);
    RUN(program_read_names_the_problem);
    RUN(program_truncations_and_flips);
    RUN(program_write_sorts_tables);
    RUN(program_read_requires_canonical_order);
    RUN(random_programs_round_trip_bytes);
    return TEST_SUMMARY();
}
