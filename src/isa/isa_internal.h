/* Private helpers shared by the ISA layer's files (program container,
 * assembler, disassembler); not part of the public API. */
#ifndef POLYMORPH_ISA_INTERNAL_H
#define POLYMORPH_ISA_INTERNAL_H

#include "polymorph/isa.h"

#include <stdbool.h>

/* A symbol name the assembler can read back: [A-Za-z_][A-Za-z0-9_.]*, shorter
 * than PM_SYMBOL_NAME_MAX, and not a register spelling (r0..r31, zero). */
bool pm_isa_name_valid(const char *name, size_t len);
bool pm_isa_name_is_register(const char *name, size_t len, int *reg);

/* Sort order of symbols in an assembled program: code labels, then DRAM, then
 * SRAM, each by address; the disassembler prints them in this order. */
int pm_isa_mem_rank(pm_mem_kind mem);

#endif
