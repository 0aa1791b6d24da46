/* The disassembler: a pm_program back to assembly text that pm_assemble
 * turns into the identical program (code, entry, sections, symbols, tensor
 * declarations). Operand syntax comes from the table rows, like the
 * assembler's, so the two cannot drift apart. */
#define _POSIX_C_SOURCE 200809L
#include "isa_internal.h"
#include "polymorph/lfu.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- one instruction ---- */

typedef struct label_namer {
    const char *(*name)(const void *ctx, uint64_t index, char *scratch, size_t cap);
    const void *ctx;
} label_namer;

static const char *plain_label(const void *ctx, uint64_t index, char *scratch, size_t cap)
{
    (void)ctx;
    snprintf(scratch, cap, "L%" PRIu64, index);
    return scratch;
}

/* Appends to buf at *at; false when it did not fit. */
static bool put(char *buf, size_t cap, size_t *at, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bool put(char *buf, size_t cap, size_t *at, const char *fmt, ...)
{
    if (*at >= cap) return false;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *at, cap - *at, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *at) return false;
    *at += (size_t)n;
    return true;
}

static bool put_mask(char *buf, size_t cap, size_t *at, int64_t mask)
{
    if (mask == PM_UNIT_MASK_ALL) return put(buf, cap, at, "all");
    if (mask == 0) return put(buf, cap, at, "0");
    bool first = true;
    for (unsigned u = 0; u < PM_UNIT_COUNT; u++)
        if (mask & ((int64_t)1 << u)) {
            if (!put(buf, cap, at, "%s%s", first ? "" : "|", pm_unit_name((pm_unit)u))) return false;
            first = false;
        }
    return true;
}

static pm_status format_insn(const pm_insn *insn, char *buf, size_t cap, label_namer labels, pm_error *err)
{
    uint64_t word;
    pm_status st = pm_encode(insn, &word, err); /* validates every operand */
    if (st) return st;
    const pm_insn_info *info = pm_insn_info_for_opcode(insn->opcode);
    size_t at = 0;
    bool ok = put(buf, cap, &at, "%s", info->mnemonic);
    for (int k = 0; ok && k < info->format_count; k++) {
        const pm_format_info *f = pm_format_get((pm_format)insn->op[k]);
        ok = f && put(buf, cap, &at, ".%s", f->name);
    }
    for (int k = info->format_count; ok && k < info->operand_count; k++) {
        int64_t v = insn->op[k];
        ok = put(buf, cap, &at, "%s", k == info->format_count ? " " : ", ");
        if (!ok) break;
        char scratch[32];
        switch (info->operands[k]) {
        case PM_OPK_REG: ok = put(buf, cap, &at, "r%d", (int)v); break;
        case PM_OPK_AREG: ok = put(buf, cap, &at, "r%d%s", (int)(v & (PM_AREG_INC - 1)), v & PM_AREG_INC ? "+" : ""); break;
        case PM_OPK_LABEL: ok = put(buf, cap, &at, "%s", labels.name(labels.ctx, (uint64_t)v, scratch, sizeof scratch)); break;
        case PM_OPK_LFUFUNC: ok = put(buf, cap, &at, "%s", pm_lfu_func_name((pm_lfu_func)v)); break;
        case PM_OPK_UNITMASK: ok = put_mask(buf, cap, &at, v); break;
        case PM_OPK_CSR: ok = put(buf, cap, &at, "%s", pm_csr_name((pm_csr)v)); break;
        default: ok = put(buf, cap, &at, "%" PRId64, v); break;
        }
    }
    if (!ok) return pm_error_set(err, PM_ERR_INVALID, "format %s: buffer of %zu bytes is too small", info->mnemonic, cap);
    return PM_OK;
}

pm_status pm_format_insn(const pm_insn *insn, char *buf, size_t cap, pm_error *err)
{
    return format_insn(insn, buf, cap, (label_namer){plain_label, NULL}, err);
}

/* ---- whole programs ---- */

typedef struct dis_ctx {
    const pm_program *p;
    size_t *code_first; /* per code index (0..code_count): first symbol index in code_syms, or SIZE_MAX */
    size_t *code_syms;  /* code symbol indices in canonical order (address, then name) */
    size_t code_sym_count;
    uint8_t *is_target; /* per code index: some branch goes there */
} dis_ctx;

static const char *code_label(const void *ctx, uint64_t index, char *scratch, size_t cap)
{
    const dis_ctx *d = ctx;
    if (index <= d->p->code_count && d->code_first[index] != SIZE_MAX)
        return d->p->symbols[d->code_syms[d->code_first[index]]].name;
    snprintf(scratch, cap, ".L%" PRIu64, index); /* local label: never exported */
    return scratch;
}

static void emit_code_labels(pm_text *t, const dis_ctx *d, size_t index)
{
    size_t k = d->code_first[index];
    bool any = false;
    for (; k != SIZE_MAX && k < d->code_sym_count && d->p->symbols[d->code_syms[k]].addr == index; k++) {
        pm_text_printf(t, "%s:\n", d->p->symbols[d->code_syms[k]].name);
        any = true;
    }
    if (!any && index < d->p->code_count && d->is_target[index]) pm_text_printf(t, ".L%zu:\n", index);
}

/* Symbols are printed in the file format's canonical order (memory, address,
 * name), the order the assembler gives the table back in whatever order p
 * holds it; table position only separates entries a valid program cannot
 * have (two of one name). */
static int data_sym_cmp(const pm_program *p, size_t a, size_t b)
{
    int c = pm_isa_symbol_cmp(&p->symbols[a], &p->symbols[b]);
    if (c) return c;
    return a < b ? -1 : a > b;
}

static void merge_sort(size_t *idx, size_t *tmp, size_t n, const pm_program *p)
{
    if (n < 2) return;
    size_t h = n / 2, i = 0, j = h, k = 0;
    merge_sort(idx, tmp, h, p);
    merge_sort(idx + h, tmp, n - h, p);
    while (i < h && j < n) tmp[k++] = data_sym_cmp(p, idx[j], idx[i]) < 0 ? idx[j++] : idx[i++];
    while (i < h) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, n * sizeof *idx);
}

static const char *mem_directive(pm_mem_kind m)
{
    return m == PM_MEM_SRAM ? ".sram" : ".dram";
}

/* Bytes [from, to) of a section as .zero / .byte rows. */
static void emit_bytes(pm_text *t, const uint8_t *data, uint64_t from, uint64_t to)
{
    uint64_t pos = from;
    while (pos < to) {
        uint64_t z = pos;
        while (z < to && data[z] == 0) z++;
        if (z - pos >= 16) {
            pm_text_printf(t, "    .zero %" PRIu64 "\n", z - pos);
            pos = z;
            continue;
        }
        pm_text_printf(t, "    .byte ");
        uint64_t n = 0;
        while (pos < to && n < 16) {
            if (n && data[pos] == 0) { /* stop before a long zero run */
                uint64_t r = pos;
                while (r < to && r - pos < 16 && data[r] == 0) r++;
                if (r - pos >= 16) break;
            }
            pm_text_printf(t, "%s0x%02x", n ? ", " : "", data[pos]);
            pos++, n++;
        }
        pm_text_printf(t, "\n");
    }
}

pm_status pm_disassemble(const pm_program *p, char **out, pm_error *err)
{
    *out = NULL;
    if (p->code_count == 0) return pm_error_set(err, PM_ERR_INVALID, "disassemble: program has no instructions");
    if (p->entry >= p->code_count)
        return pm_error_set(err, PM_ERR_INVALID, "disassemble: entry %" PRIu32 " is past the code", p->entry);
    dis_ctx d = {.p = p};
    size_t nsym = p->symbol_count;
    d.code_first = malloc((p->code_count + 1) * sizeof *d.code_first);
    d.code_syms = malloc((nsym ? nsym : 1) * sizeof *d.code_syms);
    d.is_target = calloc(p->code_count, 1);
    size_t *data_syms = malloc((nsym ? nsym : 1) * sizeof *data_syms);
    size_t *tmp = malloc((nsym ? nsym : 1) * sizeof *tmp);
    uint8_t *printed = calloc(nsym ? nsym : 1, 1);
    pm_text t = {0};
    pm_status st = PM_OK;
    if (!d.code_first || !d.code_syms || !d.is_target || !data_syms || !tmp || !printed) {
        st = pm_error_set(err, PM_ERR_NOMEM, "disassemble: out of memory");
        goto done;
    }
    size_t ndata = 0;
    for (size_t i = 0; i < nsym; i++) {
        const pm_symbol *s = &p->symbols[i];
        if (!pm_isa_name_valid(s->name, strnlen(s->name, PM_SYMBOL_NAME_MAX))) {
            st = pm_error_set(err, PM_ERR_INVALID, "disassemble: symbol %zu has an invalid name", i);
            goto done;
        }
        if (s->mem != PM_MEM_CODE && s->mem != PM_MEM_DRAM && s->mem != PM_MEM_SRAM) {
            st = pm_error_set(err, PM_ERR_INVALID, "disassemble: symbol %s has a bad memory kind", s->name);
            goto done;
        }
        if (s->mem == PM_MEM_CODE) {
            if (s->addr > p->code_count) {
                st = pm_error_set(err, PM_ERR_INVALID, "disassemble: code label %s is past the code", s->name);
                goto done;
            }
            d.code_syms[d.code_sym_count++] = i;
        } else {
            data_syms[ndata++] = i;
        }
    }
    merge_sort(d.code_syms, tmp, d.code_sym_count, p);
    merge_sort(data_syms, tmp, ndata, p);
    for (size_t i = 0; i <= p->code_count; i++) d.code_first[i] = SIZE_MAX;
    for (size_t k = d.code_sym_count; k-- > 0;) d.code_first[p->symbols[d.code_syms[k]].addr] = k;

    /* Branch targets without a name get a local .L label. */
    for (size_t i = 0; i < p->code_count; i++) {
        pm_insn insn;
        if ((st = pm_decode(p->code[i], &insn, err))) {
            pm_error_prefix(err, "disassemble: word %zu: ", i);
            goto done;
        }
        const pm_insn_info *info = pm_insn_info_for_opcode(insn.opcode);
        for (int k = 0; k < info->operand_count; k++)
            if (info->operands[k] == PM_OPK_LABEL) {
                if ((uint64_t)insn.op[k] >= p->code_count) {
                    st = pm_error_set(err, PM_ERR_INVALID, "disassemble: word %zu branches to %" PRId64 ", past the code", i, insn.op[k]);
                    goto done;
                }
                d.is_target[insn.op[k]] = 1;
            }
    }

    pm_text_printf(&t, "; Polymorph program: %zu instructions, %zu sections, %zu symbols\n.text\n", p->code_count,
         p->section_count, nsym);
    label_namer namer = {code_label, &d};
    for (size_t i = 0; i < p->code_count; i++) {
        emit_code_labels(&t, &d, i);
        pm_insn insn;
        pm_decode(p->code[i], &insn, NULL);
        char line[256];
        if ((st = format_insn(&insn, line, sizeof line, namer, err))) goto done;
        pm_text_printf(&t, "    %s\n", line);
    }
    emit_code_labels(&t, &d, p->code_count);
    if (d.code_first[p->entry] != SIZE_MAX) pm_text_printf(&t, ".entry %s\n", p->symbols[d.code_syms[d.code_first[p->entry]]].name);
    else pm_text_printf(&t, ".entry %" PRIu32 "\n", p->entry);

    /* Data sections in program order, labels at their addresses. */
    for (size_t si = 0; si < p->section_count; si++) {
        const pm_section *sec = &p->sections[si];
        if (sec->mem != PM_MEM_DRAM && sec->mem != PM_MEM_SRAM) {
            st = pm_error_set(err, PM_ERR_INVALID, "disassemble: section %zu has a bad memory kind", si);
            goto done;
        }
        pm_text_printf(&t, "\n%s 0x%" PRIx64 "\n", mem_directive(sec->mem), sec->addr);
        /* first data symbol of this memory at or after the section start */
        size_t lo = 0, hi = ndata;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            const pm_symbol *m = &p->symbols[data_syms[mid]];
            if (m->mem < sec->mem || (m->mem == sec->mem && m->addr < sec->addr)) lo = mid + 1;
            else hi = mid;
        }
        uint64_t pos = 0;
        for (size_t k = lo; k < ndata; k++) {
            const pm_symbol *s = &p->symbols[data_syms[k]];
            if (s->mem != sec->mem || s->addr - sec->addr >= sec->size) break;
            uint64_t off = s->addr - sec->addr;
            emit_bytes(&t, sec->data, pos, off);
            pos = off;
            pm_text_printf(&t, "%s:\n", s->name);
            printed[data_syms[k]] = 1;
        }
        emit_bytes(&t, sec->data, pos, sec->size);
    }
    /* Labels outside every section (e.g. an output buffer, or the end of one). */
    for (size_t k = 0; k < ndata; k++) {
        const pm_symbol *s = &p->symbols[data_syms[k]];
        if (printed[data_syms[k]]) continue;
        pm_text_printf(&t, "\n%s 0x%" PRIx64 "\n%s:\n", mem_directive(s->mem), s->addr, s->name);
    }
    bool heading = false;
    for (size_t i = 0; i < nsym; i++) {
        const pm_symbol *s = &p->symbols[i];
        if (!s->is_tensor) continue;
        const pm_format_info *f = pm_format_get(s->dtype);
        if (!f || s->rank < 1 || s->rank > PM_TENSOR_MAX_RANK || s->mem == PM_MEM_CODE) {
            st = pm_error_set(err, PM_ERR_INVALID, "disassemble: tensor %s has a bad dtype, rank or memory", s->name);
            goto done;
        }
        if (!heading) pm_text_printf(&t, "\n");
        heading = true;
        pm_text_printf(&t, ".tensor %s, %s", s->name, f->name);
        for (uint32_t r = 0; r < s->rank; r++) pm_text_printf(&t, ", %" PRIu64, s->shape[r]);
        pm_text_printf(&t, "\n");
    }
    if (t.failed) {
        st = pm_error_set(err, PM_ERR_NOMEM, "disassemble: out of memory");
        goto done;
    }
    *out = t.data;
    t.data = NULL;
done:
    free(d.code_first);
    free(d.code_syms);
    free(d.is_target);
    free(data_syms);
    free(tmp);
    free(printed);
    free(t.data);
    return st;
}
