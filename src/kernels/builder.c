/* The program builder every kernel emits through: instructions go through
 * pm_encode (so a kernel can only emit what the ISA table defines), labels
 * may be referenced before they are bound, and the first error sticks so a
 * builder can emit a whole kernel and check once at the end. */
#include "polymorph/kernels.h"

#include <stdlib.h>
#include <string.h>

typedef struct pm_fixup {
    size_t insn;   /* index of the instruction holding the reference */
    int operand;   /* operand slot */
    uint32_t label;
} pm_fixup;

struct pm_builder {
    pm_insn *insns;
    size_t count, cap;
    int64_t *labels; /* bound pc per label, -1 while unbound */
    size_t label_count, label_cap;
    pm_fixup *fixups;
    size_t fixup_count, fixup_cap;
    pm_error err; /* first error; status PM_OK while none */
};

/* Grow *p (elements of size elem) so index `need` fits; false when out of memory. */
static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need < *cap) return true;
    size_t n = *cap ? *cap * 2 : 64;
    while (n <= need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return false;
    *p = q;
    *cap = n;
    return true;
}

pm_status pm_builder_create(pm_builder **out, pm_error *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return pm_error_set(err, PM_ERR_NOMEM, "builder: out of memory");
    return PM_OK;
}

void pm_builder_destroy(pm_builder *b)
{
    if (!b) return;
    free(b->insns);
    free(b->labels);
    free(b->fixups);
    free(b);
}

static bool failed(const pm_builder *b)
{
    return b->err.status != PM_OK;
}

uint32_t pm_builder_label(pm_builder *b)
{
    if (failed(b)) return 0;
    if (!grow((void **)&b->labels, &b->label_cap, b->label_count, sizeof *b->labels)) {
        pm_error_set(&b->err, PM_ERR_NOMEM, "builder: out of memory (labels)");
        return 0;
    }
    b->labels[b->label_count] = -1;
    return (uint32_t)b->label_count++;
}

void pm_builder_bind(pm_builder *b, uint32_t label)
{
    if (failed(b)) return;
    if (label >= b->label_count || b->labels[label] >= 0) {
        pm_error_set(&b->err, PM_ERR_INVALID, "builder: label %u is unknown or bound twice", label);
        return;
    }
    b->labels[label] = (int64_t)b->count;
}

int64_t pm_builder_ref(uint32_t label)
{
    return -1 - (int64_t)label;
}

void pm_builder_emit(pm_builder *b, pm_opcode op, int64_t o0, int64_t o1, int64_t o2, int64_t o3, int64_t o4,
                     int64_t o5)
{
    if (failed(b)) return;
    const pm_insn_info *info = pm_insn_info_for_opcode((unsigned)op);
    if (!info) {
        pm_error_set(&b->err, PM_ERR_INVALID, "builder: instruction %zu: unknown opcode 0x%02x", b->count,
                     (unsigned)op);
        return;
    }
    if (!grow((void **)&b->insns, &b->cap, b->count, sizeof *b->insns)) {
        pm_error_set(&b->err, PM_ERR_NOMEM, "builder: out of memory (%zu instructions)", b->count);
        return;
    }
    pm_insn in = {.opcode = (uint8_t)op, .op = {o0, o1, o2, o3, o4, o5}};
    for (int k = 0; k < info->operand_count; k++) {
        if (info->operands[k] != PM_OPK_LABEL || in.op[k] >= 0) continue;
        /* A label reference: encode-check with pc 0, patch at finish. */
        uint32_t label = (uint32_t)(-1 - in.op[k]);
        if (label >= b->label_count) {
            pm_error_set(&b->err, PM_ERR_INVALID, "builder: instruction %zu (%s) names unknown label %u", b->count,
                         info->mnemonic, label);
            return;
        }
        if (!grow((void **)&b->fixups, &b->fixup_cap, b->fixup_count, sizeof *b->fixups)) {
            pm_error_set(&b->err, PM_ERR_NOMEM, "builder: out of memory (fixups)");
            return;
        }
        b->fixups[b->fixup_count++] = (pm_fixup){b->count, k, label};
        in.op[k] = 0;
    }
    uint64_t word;
    pm_error e;
    if (pm_encode(&in, &word, &e) != PM_OK) {
        pm_error_set(&b->err, e.status, "builder: instruction %zu: %s", b->count, e.message);
        return;
    }
    b->insns[b->count++] = in;
}

uint32_t pm_builder_pc(const pm_builder *b)
{
    return (uint32_t)b->count;
}

pm_status pm_builder_status(const pm_builder *b, pm_error *err)
{
    if (failed(b)) return pm_error_set(err, b->err.status, "%s", b->err.message);
    return PM_OK;
}

pm_status pm_builder_finish(pm_builder *b, pm_program *out, pm_error *err)
{
    if (failed(b)) return pm_error_set(err, b->err.status, "%s", b->err.message);
    for (size_t i = 0; i < b->fixup_count; i++) {
        const pm_fixup *f = &b->fixups[i];
        if (b->labels[f->label] < 0)
            return pm_error_set(err, PM_ERR_INVALID, "builder: instruction %zu uses label %u, which is never bound",
                                f->insn, f->label);
        b->insns[f->insn].op[f->operand] = b->labels[f->label];
    }
    uint64_t *code = malloc((b->count ? b->count : 1) * sizeof *code);
    if (!code) return pm_error_set(err, PM_ERR_NOMEM, "builder: out of memory (%zu instructions)", b->count);
    for (size_t i = 0; i < b->count; i++) {
        pm_status st = pm_encode(&b->insns[i], &code[i], err);
        if (st) {
            free(code);
            pm_error_prefix(err, "builder: instruction %zu: ", i);
            return st;
        }
    }
    free(out->code);
    out->code = code;
    out->code_count = b->count;
    out->entry = 0;
    return PM_OK;
}
