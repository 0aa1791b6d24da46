/* polymorph bench: placeholder until its issue lands (the verb's owner replaces this file). */
#include "cli.h"

const char pm_cli_bench_help[] = "usage: polymorph bench ...\n(not built yet)\n";

int pm_cli_bench(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return pm_cli_fail("bench", "not built yet");
}
