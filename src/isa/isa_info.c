/* Instruction metadata generated from include/polymorph/isa_table.h: the row
 * array, opcode and mnemonic lookup, and the names of units, control registers
 * and operand kinds. Everything else in the ISA layer reads rows from here. */
#include "polymorph/isa.h"
#include "polymorph/lfu.h"

#include <string.h>
#include <strings.h>

/* Row indices in table order, so the opcode map below can name them. */
enum {
#define PM_INSN(id, opc, mn, unit, ops, doc) PM_ROW_##id,
#include "polymorph/isa_table.h"
#undef PM_INSN
    PM_ROW_COUNT
};

/* Leading 't' operands of an operand string literal (rows have at most two);
 * the literal is padded so indexing an empty operand list stays in bounds. */
#define PM_LEADING_FORMATS(ops) (((ops "--")[0] == 't') + ((ops "--")[0] == 't' && (ops "--")[1] == 't'))

static const pm_insn_info insn_rows[PM_ROW_COUNT] = {
#define PM_INSN(id, opc, mn, unit, ops, doc) \
    {opc, #id, mn, PM_UNIT_##unit, ops, doc, (int)(sizeof(ops) - 1), PM_LEADING_FORMATS(ops)},
#include "polymorph/isa_table.h"
#undef PM_INSN
};

/* opcode -> row index + 1 (0: no row). A repeated opcode in the table is an
 * overridden initializer, which -Wextra (-Woverride-init) turns into a build
 * error under -Werror; the unit test checks uniqueness too. */
static const unsigned char row_for_opcode[256] = {
#define PM_INSN(id, opc, mn, unit, ops, doc) [opc] = PM_ROW_##id + 1,
#include "polymorph/isa_table.h"
#undef PM_INSN
};

const pm_insn_info *pm_insn_info_for_opcode(unsigned opcode)
{
    if (opcode > 255 || row_for_opcode[opcode] == 0) return NULL;
    return &insn_rows[row_for_opcode[opcode] - 1];
}

const pm_insn_info *pm_insn_info_for_mnemonic(const char *mnemonic)
{
    if (!mnemonic) return NULL;
    for (size_t i = 0; i < PM_ROW_COUNT; i++)
        if (strcasecmp(insn_rows[i].mnemonic, mnemonic) == 0) return &insn_rows[i];
    return NULL;
}

const pm_insn_info *pm_insn_info_table(size_t *count)
{
    if (count) *count = PM_ROW_COUNT;
    return insn_rows;
}

static const char *const unit_names[PM_UNIT_COUNT] = {
    [PM_UNIT_CTRL] = "ctrl",     [PM_UNIT_DMA_LD] = "dma.ld", [PM_UNIT_DMA_ST] = "dma.st",
    [PM_UNIT_VEC] = "vec",       [PM_UNIT_LFU] = "lfu",       [PM_UNIT_TENSOR] = "tensor",
};

const char *pm_unit_name(pm_unit u)
{
    return (unsigned)u < PM_UNIT_COUNT ? unit_names[u] : "?";
}

bool pm_unit_from_name(const char *name, pm_unit *out)
{
    for (unsigned u = 0; u < PM_UNIT_COUNT; u++)
        if (strcasecmp(unit_names[u], name) == 0) {
            *out = (pm_unit)u;
            return true;
        }
    return false;
}

static const char *const csr_names[PM_CSR_COUNT] = {
    [PM_CSR_ENGINE_ID] = "engine_id",
    [PM_CSR_ENGINES] = "engines",
    [PM_CSR_LANES] = "lanes",
    [PM_CSR_CYCLE] = "cycle",
};

const char *pm_csr_name(pm_csr c)
{
    return (unsigned)c < PM_CSR_COUNT ? csr_names[c] : "?";
}

bool pm_csr_from_name(const char *name, pm_csr *out)
{
    for (unsigned c = 0; c < PM_CSR_COUNT; c++)
        if (strcasecmp(csr_names[c], name) == 0) {
            *out = (pm_csr)c;
            return true;
        }
    return false;
}

/* Width in bits and value range of each operand kind, indexed by its letter. */
typedef struct operand_kind_info {
    unsigned char bits;
    int64_t min, max;
} operand_kind_info;

static const operand_kind_info operand_kinds[128] = {
    [PM_OPK_FORMAT] = {5, 0, PM_FMT_COUNT - 1},
    [PM_OPK_REG] = {5, 0, PM_NUM_REGS - 1},
    [PM_OPK_AREG] = {6, 0, (PM_NUM_REGS - 1) | PM_AREG_INC},
    [PM_OPK_IMM32] = {32, INT32_MIN, INT32_MAX},
    [PM_OPK_IMM48] = {48, -((int64_t)1 << 47), ((int64_t)1 << 47) - 1},
    [PM_OPK_LABEL] = {32, 0, UINT32_MAX},
    [PM_OPK_LFUFUNC] = {5, 0, PM_LFU_FUNC_COUNT - 1},
    [PM_OPK_SLOT] = {3, 0, 7},
    [PM_OPK_UNITMASK] = {8, 0, PM_UNIT_MASK_ALL},
    [PM_OPK_FLAG] = {8, 0, 255},
    [PM_OPK_CSR] = {8, 0, PM_CSR_COUNT - 1},
};

unsigned pm_operand_bits(char kind)
{
    return (unsigned char)kind < 128 ? operand_kinds[(unsigned char)kind].bits : 0;
}

bool pm_operand_range(char kind, int64_t *min, int64_t *max)
{
    if (pm_operand_bits(kind) == 0) return false;
    *min = operand_kinds[(unsigned char)kind].min;
    *max = operand_kinds[(unsigned char)kind].max;
    return true;
}
