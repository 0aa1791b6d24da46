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

/* The canonical order of a program's tables (docs/program-format.md), which
 * pm_program_write writes, pm_program_read requires and pm_assemble builds:
 * sections by memory (DRAM, SRAM), then address; symbols by memory rank
 * (code 0, DRAM 1, SRAM 2), then address, then name bytewise. strcmp-like. */
int pm_isa_mem_rank(pm_mem_kind mem);
int pm_isa_section_cmp(const pm_section *a, const pm_section *b);
int pm_isa_symbol_cmp(const pm_symbol *a, const pm_symbol *b);

#endif
