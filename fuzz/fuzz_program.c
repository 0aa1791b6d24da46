/* libFuzzer target: the program loader validates every byte of a program
 * file; anything it accepts must write back and re-read identically. */
#include "polymorph/isa.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pm_program prog;
    pm_program_init(&prog);
    pm_error err;
    if (pm_program_read(data, size, &prog, &err) == PM_OK) {
        uint8_t *bytes = NULL;
        size_t len = 0;
        if (pm_program_write(&prog, &bytes, &len, &err) == PM_OK) {
            pm_program again;
            pm_program_init(&again);
            if (pm_program_read(bytes, len, &again, &err) != PM_OK) abort();
            pm_program_free(&again);
        }
        free(bytes);
    }
    pm_program_free(&prog);
    return 0;
}
