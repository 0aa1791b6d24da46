/* libFuzzer target: the assembler must turn any byte string into either a
 * program or a clean error, never a crash, hang or leak. */
#include "polymorph/isa.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    pm_program prog;
    pm_program_init(&prog);
    pm_error err;
    if (pm_assemble("fuzz.pasm", text, &prog, &err) == PM_OK) {
        /* A program that assembled must also survive the round trip. */
        char *dis = NULL;
        if (pm_disassemble(&prog, &dis, &err) == PM_OK) {
            pm_program again;
            pm_program_init(&again);
            if (pm_assemble("fuzz-dis.pasm", dis, &again, &err) != PM_OK) abort();
            pm_program_free(&again);
        }
        free(dis);
    }
    pm_program_free(&prog);
    free(text);
    return 0;
}
