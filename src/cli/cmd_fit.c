/* polymorph fit: placeholder until its issue lands (the verb's owner replaces this file). */
#include "cli.h"

const char pm_cli_fit_help[] = "usage: polymorph fit ...\n(not built yet)\n";

int pm_cli_fit(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return pm_cli_fail("fit", "not built yet");
}
