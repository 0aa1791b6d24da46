/* libFuzzer target: the program loader validates every byte of a program
 * file, and every file it accepts is canonical: disassembling it, assembling
 * the text and writing the result gives back exactly the input bytes. */
#include "polymorph/isa.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The one documented exception: a file may hold a branch past the code (the
 * simulator then faults naming the instruction), which the disassembler
 * refuses to print because the assembler would refuse to read it. */
static bool branches_past_code(const pm_program *p)
{
    for (size_t i = 0; i < p->code_count; i++) {
        pm_insn insn;
        if (pm_decode(p->code[i], &insn, NULL) != PM_OK) abort(); /* the loader let a bad word through */
        const pm_insn_info *info = pm_insn_info_for_opcode(insn.opcode);
        for (int k = 0; k < info->operand_count; k++)
            if (info->operands[k] == PM_OPK_LABEL && (uint64_t)insn.op[k] >= p->code_count) return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pm_program prog;
    pm_error err;
    if (pm_program_read(data, size, &prog, &err) != PM_OK) return 0;
    /* write -> identical bytes */
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (pm_program_write(&prog, &bytes, &len, &err) != PM_OK) abort();
    if (len != size || memcmp(bytes, data, size) != 0) abort();
    free(bytes);
    /* dis -> asm -> write -> identical bytes */
    char *text = NULL;
    pm_status st = pm_disassemble(&prog, &text, &err);
    if (branches_past_code(&prog)) {
        if (st == PM_OK) abort();
    } else {
        if (st != PM_OK) abort();
        pm_program again;
        if (pm_assemble("fuzz-dis.pasm", text, &again, &err) != PM_OK) abort();
        if (pm_program_write(&again, &bytes, &len, &err) != PM_OK) abort();
        if (len != size || memcmp(bytes, data, size) != 0) abort();
        free(bytes);
        pm_program_free(&again);
    }
    free(text);
    pm_program_free(&prog);
    return 0;
}
