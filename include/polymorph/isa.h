/* Polymorph ISA layer: instruction metadata generated from isa_table.h,
 * encode/decode, the program container (file format), assembler and
 * disassembler. Knows nothing of the simulator. */
#ifndef POLYMORPH_ISA_H
#define POLYMORPH_ISA_H

#include "polymorph/base.h"
#include "polymorph/numerics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Units an instruction is dispatched to. The order is the bit order of the
 * `m` (unit mask) operand. */
typedef enum pm_unit {
    PM_UNIT_CTRL = 0, /* scalar control core (executes at issue) */
    PM_UNIT_DMA_LD,   /* DRAM -> SRAM engine */
    PM_UNIT_DMA_ST,   /* SRAM -> DRAM engine */
    PM_UNIT_VEC,      /* vector unit */
    PM_UNIT_LFU,      /* LFU array */
    PM_UNIT_TENSOR,   /* systolic tensor unit (instructions arrive later) */
    PM_UNIT_COUNT
} pm_unit;

const char *pm_unit_name(pm_unit u); /* "ctrl", "dma.ld", "dma.st", "vec", "lfu", "tensor" */
bool pm_unit_from_name(const char *name, pm_unit *out); /* case-insensitive */
/* Unit mask operands (`m`): bit u is unit u; `all` names every unit. Bits at
 * or above PM_UNIT_COUNT are invalid (rejected by encode and decode). */
#define PM_UNIT_MASK_ALL ((1u << PM_UNIT_COUNT) - 1u)

/* Control registers readable with csrr. */
typedef enum pm_csr {
    PM_CSR_ENGINE_ID = 0,
    PM_CSR_ENGINES,
    PM_CSR_LANES,
    PM_CSR_CYCLE,
    PM_CSR_COUNT
} pm_csr;
const char *pm_csr_name(pm_csr c);
bool pm_csr_from_name(const char *name, pm_csr *out); /* case-insensitive */

typedef enum pm_opcode {
#define PM_INSN(id, opc, mn, unit, ops, doc) PM_OP_##id = opc,
#include "polymorph/isa_table.h"
#undef PM_INSN
} pm_opcode;

#define PM_MAX_OPERANDS 6
#define PM_NUM_REGS 32

typedef enum pm_operand_kind {
    PM_OPK_FORMAT = 't',
    PM_OPK_REG = 'r',
    PM_OPK_AREG = 'a',
    PM_OPK_IMM32 = 'i',
    PM_OPK_IMM48 = 'w',
    PM_OPK_LABEL = 'l',
    PM_OPK_LFUFUNC = 'f',
    PM_OPK_SLOT = 's',
    PM_OPK_UNITMASK = 'm',
    PM_OPK_FLAG = 'g',
    PM_OPK_CSR = 'c',
} pm_operand_kind;

/* Bit width of an operand kind in the encoding (0 for an unknown kind). */
unsigned pm_operand_bits(char kind);
/* Values an operand of this kind may hold in pm_insn.op (for 'a': register
 * plus PM_AREG_INC). False for an unknown kind. */
bool pm_operand_range(char kind, int64_t *min, int64_t *max);

typedef struct pm_insn_info {
    uint8_t opcode;
    const char *id;       /* "VADD" */
    const char *mnemonic; /* "vadd" */
    pm_unit unit;
    const char *operands; /* kinds, one letter each, e.g. "taaar" */
    const char *doc;
    int operand_count;
    int format_count;     /* leading 't' operands, written as mnemonic suffixes */
} pm_insn_info;

/* NULL for an opcode no row defines. */
const pm_insn_info *pm_insn_info_for_opcode(unsigned opcode);
/* Lookup by mnemonic without suffixes ("vadd", "dma.ld"). */
const pm_insn_info *pm_insn_info_for_mnemonic(const char *mnemonic);
/* All rows in table order, for docs and tests. */
const pm_insn_info *pm_insn_info_table(size_t *count);

/* A decoded instruction. Operand values: registers 0..31; for 'a' operands
 * the register is in op[k] and post-increment in the bit PM_AREG_INC; formats
 * are pm_format values; immediates sign-extended; labels absolute indices. */
#define PM_AREG_INC 0x20
typedef struct pm_insn {
    uint8_t opcode;
    int64_t op[PM_MAX_OPERANDS];
} pm_insn;

pm_status pm_encode(const pm_insn *insn, uint64_t *word, pm_error *err);
/* Rejects unknown opcodes, out-of-range fields and non-zero spare bits. */
pm_status pm_decode(uint64_t word, pm_insn *insn, pm_error *err);

/* ---- programs ---- */

typedef enum pm_mem_kind {
    PM_MEM_DRAM = 0,
    PM_MEM_SRAM = 1,
    PM_MEM_CODE = 2, /* symbols only: a code label; addr is an instruction index */
} pm_mem_kind;

/* A data section placed at a fixed address of a memory. SRAM sections are
 * loaded into every engine that runs the program. */
typedef struct pm_section {
    pm_mem_kind mem;
    uint64_t addr;
    uint64_t size;
    uint8_t *data; /* size bytes, owned by the program */
} pm_section;

#define PM_SYMBOL_NAME_MAX 64
#define PM_TENSOR_MAX_RANK 4

/* A named location. With is_tensor set it also declares a dtype and shape so
 * host tools can bind inputs and outputs to it (`polymorph sim --input x=..`). */
typedef struct pm_symbol {
    char name[PM_SYMBOL_NAME_MAX];
    pm_mem_kind mem;
    uint64_t addr;
    bool is_tensor;
    pm_format dtype;
    uint32_t rank;
    uint64_t shape[PM_TENSOR_MAX_RANK];
} pm_symbol;

typedef struct pm_program {
    uint64_t *code; /* encoded instruction words */
    size_t code_count;
    uint32_t entry; /* instruction index */
    pm_section *sections;
    size_t section_count;
    pm_symbol *symbols;
    size_t symbol_count;
} pm_program;

void pm_program_init(pm_program *p);
void pm_program_free(pm_program *p);
const pm_symbol *pm_program_find_symbol(const pm_program *p, const char *name);

/* Sorts p's sections and symbols in place into the canonical order of
 * docs/program-format.md: sections by memory (DRAM, then SRAM), then
 * address; symbols code labels, then DRAM, then SRAM, each by address, ties
 * by name (bytewise). This is the order pm_assemble builds and
 * pm_program_read returns. */
void pm_program_canonicalize(pm_program *p);

/* Program file ("PMPG"): header with magic, version, entry and a section
 * table; see docs/program-format.md. pm_program_read validates everything
 * (magic, version, counts, the fixed layout, sizes against len, every code
 * word decodes, entry in range, symbol names terminated, both tables in
 * canonical order) and names the byte offset of the first problem, so every
 * file it accepts is exactly the bytes pm_program_write makes of the result.
 * pm_program_write writes the tables in canonical order whatever order p
 * holds them in (p itself is not changed). */
pm_status pm_program_read(const uint8_t *bytes, size_t len, pm_program *out, pm_error *err);
pm_status pm_program_write(const pm_program *p, uint8_t **bytes, size_t *len, pm_error *err);
pm_status pm_program_load_file(const char *path, pm_program *out, pm_error *err);
pm_status pm_program_save_file(const pm_program *p, const char *path, pm_error *err);

/* Assembler. source_name is used in messages ("file:line:col: message" plus
 * the offending line); `.include "x"` is resolved relative to the including
 * file's directory (depth and expansion counts are bounded). */
pm_status pm_assemble(const char *source_name, const char *text, pm_program *out, pm_error *err);
pm_status pm_assemble_file(const char *path, pm_program *out, pm_error *err);

/* Disassembler: text that pm_assemble turns back into the identical program
 * (code, sections, symbols, entry). Caller frees *text. */
pm_status pm_disassemble(const pm_program *p, char **text, pm_error *err);
/* One instruction in canonical assembly syntax (labels as "L<index>"). */
pm_status pm_format_insn(const pm_insn *insn, char *buf, size_t cap, pm_error *err);

#ifdef __cplusplus
}
#endif
#endif
