/* Encoding and decoding of one 64-bit instruction word, driven entirely by the
 * operand string of the instruction's table row: operands are packed from bit
 * 8 upward in row order, each with its kind's width (see isa_table.h). */
#include "polymorph/isa.h"

#include <inttypes.h>

/* What each operand kind is called in messages. */
static const char *const kind_labels[128] = {
    [PM_OPK_FORMAT] = "format",     [PM_OPK_REG] = "register",        [PM_OPK_AREG] = "address register",
    [PM_OPK_IMM32] = "immediate",   [PM_OPK_IMM48] = "immediate",     [PM_OPK_LABEL] = "label",
    [PM_OPK_LFUFUNC] = "lfu function", [PM_OPK_SLOT] = "lfu slot",   [PM_OPK_UNITMASK] = "unit mask",
    [PM_OPK_FLAG] = "flag",         [PM_OPK_CSR] = "csr",
};

static const char *kind_label(char kind)
{
    const char *l = (unsigned char)kind < 128 ? kind_labels[(unsigned char)kind] : NULL;
    return l ? l : "operand";
}

pm_status pm_encode(const pm_insn *insn, uint64_t *word, pm_error *err)
{
    const pm_insn_info *info = pm_insn_info_for_opcode(insn->opcode);
    if (!info) return pm_error_set(err, PM_ERR_INVALID, "encode: unknown opcode 0x%02x", insn->opcode);
    uint64_t w = insn->opcode;
    unsigned shift = 8;
    for (int k = 0; k < info->operand_count; k++) {
        char kind = info->operands[k];
        unsigned bits = pm_operand_bits(kind);
        int64_t lo, hi, v = insn->op[k];
        pm_operand_range(kind, &lo, &hi);
        if (v < lo || v > hi)
            return pm_error_set(err, PM_ERR_INVALID,
                                "encode %s: operand %d (%s) = %" PRId64 " is out of range %" PRId64 "..%" PRId64,
                                info->mnemonic, k + 1, kind_label(kind), v, lo, hi);
        uint64_t mask = bits == 64 ? UINT64_MAX : (((uint64_t)1 << bits) - 1);
        w |= ((uint64_t)v & mask) << shift;
        shift += bits;
    }
    *word = w;
    return PM_OK;
}

pm_status pm_decode(uint64_t word, pm_insn *insn, pm_error *err)
{
    unsigned opcode = (unsigned)(word & 0xFF);
    const pm_insn_info *info = pm_insn_info_for_opcode(opcode);
    if (!info)
        return pm_error_set(err, PM_ERR_FORMAT, "decode 0x%016" PRIx64 ": unknown opcode 0x%02x", word, opcode);
    insn->opcode = (uint8_t)opcode;
    for (int k = 0; k < PM_MAX_OPERANDS; k++) insn->op[k] = 0;
    unsigned shift = 8;
    for (int k = 0; k < info->operand_count; k++) {
        char kind = info->operands[k];
        unsigned bits = pm_operand_bits(kind);
        uint64_t raw = (word >> shift) & (((uint64_t)1 << bits) - 1);
        int64_t v;
        if (kind == PM_OPK_IMM32 || kind == PM_OPK_IMM48) {
            uint64_t sign = (uint64_t)1 << (bits - 1);
            v = (int64_t)(raw ^ sign) - (int64_t)sign; /* sign extension without UB */
        } else {
            v = (int64_t)raw;
        }
        int64_t lo, hi;
        pm_operand_range(kind, &lo, &hi);
        if (v < lo || v > hi)
            return pm_error_set(err, PM_ERR_FORMAT,
                                "decode 0x%016" PRIx64 " (%s): operand %d (%s, bits %u..%u) = %" PRId64
                                " is out of range %" PRId64 "..%" PRId64,
                                word, info->mnemonic, k + 1, kind_label(kind), shift, shift + bits - 1, v, lo, hi);
        insn->op[k] = v;
        shift += bits;
    }
    if (shift < 64 && (word >> shift) != 0)
        return pm_error_set(err, PM_ERR_FORMAT, "decode 0x%016" PRIx64 " (%s): spare bits %u..63 are not zero", word,
                            info->mnemonic, shift);
    return PM_OK;
}
