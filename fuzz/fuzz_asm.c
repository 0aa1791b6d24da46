/* libFuzzer target: the assembler turns any byte string into either a program
 * or a clean error, never a crash, hang or leak; and every program it builds
 * survives the whole tool chain: write -> read -> disassemble -> assemble ->
 * write gives the identical file. */
#include "polymorph/isa.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    pm_program prog, read_back, again;
    pm_error err;
    if (pm_assemble("fuzz.pasm", text, &prog, &err) != PM_OK) {
        free(text);
        return 0;
    }
    uint8_t *first = NULL, *second = NULL;
    size_t first_len = 0, second_len = 0;
    char *dis = NULL;
    if (pm_program_write(&prog, &first, &first_len, &err) != PM_OK) abort();
    if (pm_program_read(first, first_len, &read_back, &err) != PM_OK) abort();
    if (pm_disassemble(&read_back, &dis, &err) != PM_OK) abort();
    if (pm_assemble("fuzz-dis.pasm", dis, &again, &err) != PM_OK) abort();
    if (pm_program_write(&again, &second, &second_len, &err) != PM_OK) abort();
    if (first_len != second_len || memcmp(first, second, first_len) != 0) abort();
    free(first);
    free(second);
    free(dis);
    pm_program_free(&again);
    pm_program_free(&read_back);
    pm_program_free(&prog);
    free(text);
    return 0;
}
