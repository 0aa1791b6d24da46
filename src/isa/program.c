/* The program container and its file format ("PMPG", docs/program-format.md).
 * The reader trusts nothing: every count, offset and field is checked against
 * the buffer before use, and the first problem is reported with its byte
 * offset. The layout is fixed and both tables are in one canonical order,
 * so an accepted file is exactly what the writer makes of its program. The
 * writer re-reads what it produced, so it can never emit a file the reader
 * rejects. */
#include "isa_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_BYTES 48u
#define SECTION_ENTRY_BYTES 32u
#define SYMBOL_ENTRY_BYTES 112u
#define FORMAT_VERSION 1u

/* ---- small helpers ---- */

void pm_program_init(pm_program *p)
{
    memset(p, 0, sizeof *p);
}

void pm_program_free(pm_program *p)
{
    if (!p) return;
    free(p->code);
    for (size_t i = 0; i < p->section_count; i++) free(p->sections[i].data);
    free(p->sections);
    free(p->symbols);
    pm_program_init(p);
}

const pm_symbol *pm_program_find_symbol(const pm_program *p, const char *name)
{
    for (size_t i = 0; i < p->symbol_count; i++)
        if (strcmp(p->symbols[i].name, name) == 0) return &p->symbols[i];
    return NULL;
}

bool pm_isa_name_is_register(const char *name, size_t len, int *reg)
{
    if (len == 4 && memcmp(name, "zero", 4) == 0) {
        if (reg) *reg = 0;
        return true;
    }
    if (len < 2 || len > 3 || (name[0] != 'r' && name[0] != 'R')) return false;
    int v = 0;
    for (size_t i = 1; i < len; i++) {
        if (name[i] < '0' || name[i] > '9') return false;
        v = v * 10 + (name[i] - '0');
    }
    if ((len == 3 && name[1] == '0') || v >= PM_NUM_REGS) return false; /* r05 is a name, not a register */
    if (reg) *reg = v;
    return true;
}

static bool is_ident_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

bool pm_isa_name_valid(const char *name, size_t len)
{
    if (len == 0 || len >= PM_SYMBOL_NAME_MAX || !is_ident_start(name[0])) return false;
    for (size_t i = 1; i < len; i++) {
        char c = name[i];
        if (!is_ident_start(c) && !(c >= '0' && c <= '9') && c != '.') return false;
    }
    return !pm_isa_name_is_register(name, len, NULL);
}

int pm_isa_mem_rank(pm_mem_kind mem)
{
    return mem == PM_MEM_CODE ? 0 : mem == PM_MEM_DRAM ? 1 : 2;
}

static const char *mem_name(pm_mem_kind m)
{
    return m == PM_MEM_DRAM ? "dram" : m == PM_MEM_SRAM ? "sram" : m == PM_MEM_CODE ? "code" : "?";
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void wr64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

/* ---- reader ---- */

/* offset + count * unit must lie inside the file; no arithmetic may wrap. */
static pm_status check_range(uint64_t offset, uint64_t count, uint64_t unit, size_t len, size_t field_at,
                             const char *what, pm_error *err)
{
    if (count > UINT64_MAX / unit)
        return pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: %s size overflows", field_at, what);
    uint64_t size = count * unit;
    if (offset > len || size > len - offset)
        return pm_error_set(err, PM_ERR_FORMAT,
                            "program: byte %zu: %s at offset %" PRIu64 " (%" PRIu64 " bytes) runs past the end of the %zu-byte file",
                            field_at, what, offset, size, len);
    return PM_OK;
}

/* ---- canonical order (docs/program-format.md, "Canonical order") ---- */

int pm_isa_section_cmp(const pm_section *x, const pm_section *y)
{
    if (x->mem != y->mem) return x->mem < y->mem ? -1 : 1;
    return x->addr < y->addr ? -1 : x->addr > y->addr;
}

int pm_isa_symbol_cmp(const pm_symbol *x, const pm_symbol *y)
{
    int rx = pm_isa_mem_rank(x->mem), ry = pm_isa_mem_rank(y->mem);
    if (rx != ry) return rx < ry ? -1 : 1;
    if (x->addr != y->addr) return x->addr < y->addr ? -1 : 1;
    return strncmp(x->name, y->name, PM_SYMBOL_NAME_MAX); /* strncmp compares bytes as unsigned char */
}

static int section_qsort_cmp(const void *a, const void *b) { return pm_isa_section_cmp(a, b); }
static int symbol_qsort_cmp(const void *a, const void *b) { return pm_isa_symbol_cmp(a, b); }

void pm_program_canonicalize(pm_program *p)
{
    /* Both orders are total on a valid program (sections of one memory do
     * not share an address, names are unique), so qsort's instability cannot
     * show. */
    if (p->section_count > 1) qsort(p->sections, p->section_count, sizeof *p->sections, section_qsort_cmp);
    if (p->symbol_count > 1) qsort(p->symbols, p->symbol_count, sizeof *p->symbols, symbol_qsort_cmp);
}

/* Duplicate-name search: symbols by name, then by table position, so the
 * first pair of a group names the earliest repeat. */
static int symbol_ptr_name_cmp(const void *a, const void *b)
{
    const pm_symbol *x = *(const pm_symbol *const *)a, *y = *(const pm_symbol *const *)b;
    int c = strncmp(x->name, y->name, PM_SYMBOL_NAME_MAX);
    if (c) return c;
    return x < y ? -1 : x > y;
}

static void describe_symbol(char *buf, size_t cap, const pm_symbol *s)
{
    snprintf(buf, cap, "\"%s\", %s 0x%" PRIx64, s->name, mem_name(s->mem), s->addr);
}

static pm_status read_symbol(const uint8_t *e, size_t at, size_t index, uint32_t code_count, pm_symbol *sym,
                             pm_error *err)
{
    const char *name = (const char *)e;
    const uint8_t *nul = memchr(e, 0, PM_SYMBOL_NAME_MAX);
    if (!nul)
        return pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: symbol %zu name is not NUL-terminated", at, index);
    size_t nlen = (size_t)(nul - e);
    if (!pm_isa_name_valid(name, nlen))
        return pm_error_set(err, PM_ERR_FORMAT,
                            "program: byte %zu: symbol %zu name \"%.*s\" is not a valid identifier", at, index,
                            (int)nlen, name);
    for (size_t i = nlen; i < PM_SYMBOL_NAME_MAX; i++)
        if (e[i] != 0)
            return pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: symbol %zu name padding is not zero",
                                at + i, index);
    memcpy(sym->name, name, nlen + 1);
    size_t o = PM_SYMBOL_NAME_MAX;
    uint32_t mem = rd32(e + o);
    if (mem != PM_MEM_DRAM && mem != PM_MEM_SRAM && mem != PM_MEM_CODE)
        return pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: symbol %s: mem kind %" PRIu32 " is not dram (0), sram (1) or code (2)",
                            at + o, sym->name, mem);
    uint8_t is_tensor = e[o + 4], dtype = e[o + 5], rank = e[o + 6], reserved = e[o + 7];
    sym->mem = (pm_mem_kind)mem;
    sym->addr = rd64(e + o + 8);
    for (int d = 0; d < PM_TENSOR_MAX_RANK; d++) sym->shape[d] = rd64(e + o + 16 + 8 * d);
    if (reserved)
        return pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: symbol %s: reserved byte is not zero", at + o + 7, sym->name);
    if (mem == PM_MEM_CODE && sym->addr > code_count)
        return pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: symbol %s: code address %" PRIu64 " is past the end of the code (%" PRIu32 " words)",
                            at + o + 8, sym->name, sym->addr, code_count);
    if (is_tensor > 1)
        return pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: symbol %s: is_tensor is %u, not 0 or 1", at + o + 4, sym->name, is_tensor);
    sym->is_tensor = is_tensor;
    if (!is_tensor) {
        if (dtype || rank)
            return pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: symbol %s: dtype/rank set on a non-tensor symbol", at + o + 5, sym->name);
        for (int d = 0; d < PM_TENSOR_MAX_RANK; d++)
            if (sym->shape[d])
                return pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: symbol %s: shape set on a non-tensor symbol",
                                    at + o + 16 + 8 * (size_t)d, sym->name);
        return PM_OK;
    }
    if (mem == PM_MEM_CODE)
        return pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: symbol %s: a code label cannot be a tensor", at + o + 4, sym->name);
    if (dtype >= PM_FMT_COUNT)
        return pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: symbol %s: tensor dtype %u is not a known format", at + o + 5, sym->name, dtype);
    if (rank < 1 || rank > PM_TENSOR_MAX_RANK)
        return pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: symbol %s: tensor rank %u is not 1..%d", at + o + 6, sym->name, rank, PM_TENSOR_MAX_RANK);
    sym->dtype = (pm_format)dtype;
    sym->rank = rank;
    uint64_t elems = 1;
    for (int d = 0; d < PM_TENSOR_MAX_RANK; d++) {
        size_t fo = at + o + 16 + 8 * (size_t)d;
        if (d < rank && sym->shape[d] == 0)
            return pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: symbol %s: tensor dimension %d is zero", fo, sym->name, d);
        if (d >= rank && sym->shape[d] != 0)
            return pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: symbol %s: tensor dimension %d is set beyond rank %u", fo, sym->name, d, rank);
        if (d < rank) {
            /* At most 2^63 - 1 elements: the assembler's values are signed 64-bit. */
            if (elems > (uint64_t)INT64_MAX / sym->shape[d])
                return pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: symbol %s: tensor element count overflows (more than 2^63 - 1 elements)", fo, sym->name);
            elems *= sym->shape[d];
        }
    }
    return PM_OK;
}

pm_status pm_program_read(const uint8_t *bytes, size_t len, pm_program *out, pm_error *err)
{
    pm_program_init(out);
    if (!bytes && len) return pm_error_set(err, PM_ERR_INVALID, "program: no buffer");
    if (len < HEADER_BYTES)
        return pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: truncated header (%zu bytes, need %u)", len, len, HEADER_BYTES);
    if (memcmp(bytes, "PMPG", 4) != 0)
        return pm_error_set(err, PM_ERR_FORMAT, "program: byte 0: bad magic (not a Polymorph program file)");
    uint16_t version = rd16(bytes + 4), flags = rd16(bytes + 6);
    if (version != FORMAT_VERSION)
        return pm_error_set(err, PM_ERR_FORMAT, "program: byte 4: version %u is not supported (expected %u)", version, FORMAT_VERSION);
    if (flags != 0) return pm_error_set(err, PM_ERR_FORMAT, "program: byte 6: flags 0x%04x are not zero", flags);
    uint32_t entry = rd32(bytes + 8), code_count = rd32(bytes + 12);
    uint32_t section_count = rd32(bytes + 16), symbol_count = rd32(bytes + 20);
    uint64_t code_off = rd64(bytes + 24), sec_off = rd64(bytes + 32), sym_off = rd64(bytes + 40);
    if (code_count == 0) return pm_error_set(err, PM_ERR_FORMAT, "program: byte 12: code word count is 0 (an empty program is invalid)");
    if (entry >= code_count)
        return pm_error_set(err, PM_ERR_FORMAT, "program: byte 8: entry %" PRIu32 " is not below the code word count %" PRIu32, entry, code_count);
    pm_status st;
    if ((st = check_range(code_off, code_count, 8, len, 24, "code", err))) return st;
    if ((st = check_range(sec_off, section_count, SECTION_ENTRY_BYTES, len, 32, "section table", err))) return st;
    if ((st = check_range(sym_off, symbol_count, SYMBOL_ENTRY_BYTES, len, 40, "symbol table", err))) return st;

    /* The layout is fixed: header, code, section table, symbol table, then
     * each section's data in table order, with no gap and nothing after.
     * Every byte of a valid file is thus decided by the program it holds. */
    if (code_off != HEADER_BYTES)
        return pm_error_set(err, PM_ERR_FORMAT, "program: byte 24: code offset %" PRIu64 " is not %u (the code follows the header directly)",
                            code_off, HEADER_BYTES);
    uint64_t want = code_off + (uint64_t)code_count * 8;
    if (sec_off != want)
        return pm_error_set(err, PM_ERR_FORMAT, "program: byte 32: section table offset %" PRIu64 " is not %" PRIu64 " (the table follows the code directly)",
                            sec_off, want);
    want = sec_off + (uint64_t)section_count * SECTION_ENTRY_BYTES;
    if (sym_off != want)
        return pm_error_set(err, PM_ERR_FORMAT, "program: byte 40: symbol table offset %" PRIu64 " is not %" PRIu64 " (the table follows the section table directly)",
                            sym_off, want);
    uint64_t data_pos = sym_off + (uint64_t)symbol_count * SYMBOL_ENTRY_BYTES;

    /* Every table is in bounds, so the counts are bounded by len. */
    out->code = malloc((size_t)code_count * sizeof *out->code);
    out->sections = calloc(section_count ? section_count : 1, sizeof *out->sections);
    out->symbols = calloc(symbol_count ? symbol_count : 1, sizeof *out->symbols);
    const pm_symbol **by_name = malloc((symbol_count ? symbol_count : 1) * sizeof *by_name);
    if (!out->code || !out->sections || !out->symbols || !by_name) {
        st = pm_error_set(err, PM_ERR_NOMEM, "program: out of memory");
        goto fail;
    }
    out->entry = entry;
    out->code_count = code_count;

    for (uint32_t i = 0; i < code_count; i++) {
        size_t at = (size_t)code_off + 8 * (size_t)i;
        uint64_t word = rd64(bytes + at);
        pm_insn insn;
        pm_error derr;
        if (pm_decode(word, &insn, &derr) != PM_OK) {
            st = pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: code word %" PRIu32 ": %s", at, i, derr.message);
            goto fail;
        }
        out->code[i] = word;
    }

    for (uint32_t i = 0; i < section_count; i++) {
        size_t at = (size_t)sec_off + SECTION_ENTRY_BYTES * (size_t)i;
        const uint8_t *e = bytes + at;
        uint32_t mem = rd32(e), reserved = rd32(e + 4);
        uint64_t addr = rd64(e + 8), size = rd64(e + 16), data_off = rd64(e + 24);
        if (mem != PM_MEM_DRAM && mem != PM_MEM_SRAM) {
            st = pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: section %" PRIu32 ": mem kind %" PRIu32 " is not dram (0) or sram (1)", at, i, mem);
            goto fail;
        }
        if (reserved) {
            st = pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: section %" PRIu32 ": reserved field is not zero", at + 4, i);
            goto fail;
        }
        if (size == 0) {
            st = pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: section %" PRIu32 ": size is 0", at + 16, i);
            goto fail;
        }
        if (addr > UINT64_MAX - size) {
            st = pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: section %" PRIu32 ": address 0x%" PRIx64 " + size %" PRIu64 " overflows",
                              at + 8, i, addr, size);
            goto fail;
        }
        char what[48];
        snprintf(what, sizeof what, "section %" PRIu32 " data", i);
        if ((st = check_range(data_off, size, 1, len, at + 24, what, err))) goto fail;
        if (data_off != data_pos) {
            st = pm_error_set(err, PM_ERR_FORMAT,
                              "program: byte %zu: section %" PRIu32 ": data offset %" PRIu64 " is not %" PRIu64
                              " (section data follows the symbol table, in table order, without gaps)",
                              at + 24, i, data_off, data_pos);
            goto fail;
        }
        data_pos += size;
        pm_section *s = &out->sections[i];
        s->mem = (pm_mem_kind)mem;
        s->addr = addr;
        s->size = size;
        if (i > 0) {
            /* Sorted, so only neighbours can overlap; equal starts overlap. */
            const pm_section *prev = &out->sections[i - 1];
            if (pm_isa_section_cmp(s, prev) < 0) {
                st = pm_error_set(err, PM_ERR_FORMAT,
                                  "program: byte %zu: section table entry %" PRIu32 " (%s 0x%" PRIx64 "): out of canonical order (sorts before entry %" PRIu32
                                  " (%s 0x%" PRIx64 "); sections are ordered dram, sram, each by address)",
                                  at, i, mem_name(s->mem), s->addr, i - 1, mem_name(prev->mem), prev->addr);
                goto fail;
            }
            if (prev->mem == s->mem && s->addr < prev->addr + prev->size) {
                st = pm_error_set(err, PM_ERR_FORMAT,
                                  "program: byte %zu: section %" PRIu32 " (%s 0x%" PRIx64 "..0x%" PRIx64 ") overlaps section %" PRIu32 " (%s 0x%" PRIx64 "..0x%" PRIx64 ")",
                                  at + 8, i, mem_name(s->mem), s->addr, s->addr + s->size, i - 1, mem_name(prev->mem), prev->addr,
                                  prev->addr + prev->size);
                goto fail;
            }
        }
        s->data = malloc((size_t)size);
        if (!s->data) {
            st = pm_error_set(err, PM_ERR_NOMEM, "program: out of memory");
            goto fail;
        }
        memcpy(s->data, bytes + data_off, (size_t)size);
        out->section_count = i + 1;
    }

    for (uint32_t i = 0; i < symbol_count; i++) {
        size_t at = (size_t)sym_off + SYMBOL_ENTRY_BYTES * (size_t)i;
        if ((st = read_symbol(bytes + at, at, i, code_count, &out->symbols[i], err))) goto fail;
        out->symbol_count = i + 1;
        if (i > 0 && pm_isa_symbol_cmp(&out->symbols[i], &out->symbols[i - 1]) < 0) {
            char here[96], prev[96];
            describe_symbol(here, sizeof here, &out->symbols[i]);
            describe_symbol(prev, sizeof prev, &out->symbols[i - 1]);
            st = pm_error_set(err, PM_ERR_FORMAT,
                              "program: byte %zu: symbol table entry %" PRIu32 " (%s): out of canonical order (sorts before entry %" PRIu32
                              " (%s); symbols are ordered code, dram, sram, then by address, then by name)",
                              at, i, here, i - 1, prev);
            goto fail;
        }
    }
    for (size_t i = 0; i < symbol_count; i++) by_name[i] = &out->symbols[i];
    if (symbol_count > 1) qsort(by_name, symbol_count, sizeof *by_name, symbol_ptr_name_cmp);
    size_t dup = SIZE_MAX;
    for (size_t k = 1; k < symbol_count; k++)
        if (strcmp(by_name[k - 1]->name, by_name[k]->name) == 0 && (size_t)(by_name[k] - out->symbols) < dup)
            dup = (size_t)(by_name[k] - out->symbols);
    if (dup != SIZE_MAX) {
        st = pm_error_set(err, PM_ERR_FORMAT, "program: byte %zu: symbol %zu: duplicate name \"%s\"",
                          (size_t)sym_off + SYMBOL_ENTRY_BYTES * dup, dup, out->symbols[dup].name);
        goto fail;
    }

    if (data_pos != len) {
        st = pm_error_set(err, PM_ERR_FORMAT, "program: byte %" PRIu64 ": %" PRIu64 " bytes of trailing garbage", data_pos,
                          (uint64_t)len - data_pos);
        goto fail;
    }
    free(by_name);
    return PM_OK;
fail:
    free(by_name);
    pm_program_free(out);
    return st;
}

/* ---- writer ---- */

/* Writes the tables in canonical order whatever order p holds them in, so a
 * program built in C is stored exactly as the assembler would store it. */
pm_status pm_program_write(const pm_program *p, uint8_t **bytes, size_t *len, pm_error *err)
{
    *bytes = NULL;
    *len = 0;
    if (p->code_count == 0) return pm_error_set(err, PM_ERR_INVALID, "program write: no instructions (an empty program is invalid)");
    if (p->code_count > UINT32_MAX || p->section_count > UINT32_MAX || p->symbol_count > UINT32_MAX)
        return pm_error_set(err, PM_ERR_INVALID, "program write: too many code words, sections or symbols");
    uint64_t total = HEADER_BYTES + (uint64_t)p->code_count * 8 + (uint64_t)p->section_count * SECTION_ENTRY_BYTES +
                     (uint64_t)p->symbol_count * SYMBOL_ENTRY_BYTES;
    for (size_t i = 0; i < p->section_count; i++) {
        if (p->sections[i].size > SIZE_MAX - total)
            return pm_error_set(err, PM_ERR_INVALID, "program write: section %zu is too large", i);
        total += p->sections[i].size;
    }
    if (total > SIZE_MAX) return pm_error_set(err, PM_ERR_INVALID, "program write: program too large");
    /* Checked before sorting: the order compares names. */
    for (size_t i = 0; i < p->symbol_count; i++) {
        const pm_symbol *s = &p->symbols[i];
        if (!memchr(s->name, 0, PM_SYMBOL_NAME_MAX) || (s->is_tensor && (unsigned)s->dtype >= PM_FMT_COUNT))
            return pm_error_set(err, PM_ERR_INVALID, "program write: symbol %zu: %s", i,
                                !memchr(s->name, 0, PM_SYMBOL_NAME_MAX) ? "name is not NUL-terminated"
                                                                        : "tensor dtype is not a known format");
    }
    /* Shallow copies of the tables, sorted; the caller's program is untouched. */
    pm_program sorted = *p;
    sorted.sections = malloc((p->section_count ? p->section_count : 1) * sizeof *sorted.sections);
    sorted.symbols = malloc((p->symbol_count ? p->symbol_count : 1) * sizeof *sorted.symbols);
    uint8_t *b = calloc(1, (size_t)total);
    if (!sorted.sections || !sorted.symbols || !b) {
        free(sorted.sections), free(sorted.symbols), free(b);
        return pm_error_set(err, PM_ERR_NOMEM, "program write: out of memory");
    }
    if (p->section_count) memcpy(sorted.sections, p->sections, p->section_count * sizeof *sorted.sections);
    if (p->symbol_count) memcpy(sorted.symbols, p->symbols, p->symbol_count * sizeof *sorted.symbols);
    pm_program_canonicalize(&sorted);

    uint64_t code_off = HEADER_BYTES;
    uint64_t sec_off = code_off + (uint64_t)p->code_count * 8;
    uint64_t sym_off = sec_off + (uint64_t)p->section_count * SECTION_ENTRY_BYTES;
    uint64_t data_off = sym_off + (uint64_t)p->symbol_count * SYMBOL_ENTRY_BYTES;
    memcpy(b, "PMPG", 4);
    wr16(b + 4, FORMAT_VERSION);
    wr16(b + 6, 0);
    wr32(b + 8, p->entry);
    wr32(b + 12, (uint32_t)p->code_count);
    wr32(b + 16, (uint32_t)p->section_count);
    wr32(b + 20, (uint32_t)p->symbol_count);
    wr64(b + 24, code_off);
    wr64(b + 32, sec_off);
    wr64(b + 40, sym_off);
    for (size_t i = 0; i < p->code_count; i++) wr64(b + code_off + 8 * i, p->code[i]);
    for (size_t i = 0; i < sorted.section_count; i++) {
        const pm_section *s = &sorted.sections[i];
        uint8_t *e = b + sec_off + SECTION_ENTRY_BYTES * i;
        wr32(e, (uint32_t)s->mem);
        wr64(e + 8, s->addr);
        wr64(e + 16, s->size);
        wr64(e + 24, data_off);
        if (s->size) memcpy(b + data_off, s->data, (size_t)s->size);
        data_off += s->size;
    }
    for (size_t i = 0; i < sorted.symbol_count; i++) {
        const pm_symbol *s = &sorted.symbols[i];
        uint8_t *e = b + sym_off + SYMBOL_ENTRY_BYTES * i;
        memcpy(e, s->name, strlen(s->name));
        size_t o = PM_SYMBOL_NAME_MAX;
        wr32(e + o, (uint32_t)s->mem);
        e[o + 4] = s->is_tensor;
        e[o + 5] = s->is_tensor ? (uint8_t)s->dtype : 0;
        e[o + 6] = s->is_tensor ? (uint8_t)(s->rank > 255 ? 255 : s->rank) : 0;
        wr64(e + o + 8, s->addr);
        for (int d = 0; d < PM_TENSOR_MAX_RANK; d++) wr64(e + o + 16 + 8 * d, s->is_tensor ? s->shape[d] : 0);
    }
    free(sorted.sections);
    free(sorted.symbols);
    /* Validate by reading back: the writer and reader share one definition
     * of a well-formed program. */
    pm_program check;
    pm_error rerr;
    if (pm_program_read(b, (size_t)total, &check, &rerr) != PM_OK) {
        free(b);
        return pm_error_set(err, PM_ERR_INVALID, "program write: invalid program: %s", rerr.message);
    }
    pm_program_free(&check);
    *bytes = b;
    *len = (size_t)total;
    return PM_OK;
}

pm_status pm_program_load_file(const char *path, pm_program *out, pm_error *err)
{
    pm_program_init(out);
    uint8_t *data;
    size_t len;
    pm_status st = pm_read_file(path, &data, &len, err);
    if (st) return st;
    st = pm_program_read(data, len, out, err);
    free(data);
    if (st) pm_error_prefix(err, "%s: ", path);
    return st;
}

pm_status pm_program_save_file(const pm_program *p, const char *path, pm_error *err)
{
    uint8_t *bytes;
    size_t len;
    pm_status st = pm_program_write(p, &bytes, &len, err);
    if (st) {
        pm_error_prefix(err, "%s: ", path);
        return st;
    }
    st = pm_write_file_atomic(path, bytes, len, err);
    free(bytes);
    return st;
}
