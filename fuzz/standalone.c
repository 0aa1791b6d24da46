/* Replays files through a fuzz target without libFuzzer, so every crash the
 * fuzzer ever found stays a regression test in the normal (gcc) build. */
#include "polymorph/base.h"

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        uint8_t *data;
        size_t len;
        pm_error err;
        if (pm_read_file(argv[i], &data, &len, &err) != PM_OK) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
        LLVMFuzzerTestOneInput(data, len);
        free(data);
    }
    return 0;
}
