/* polymorph kan: placeholder until its issue lands (the verb's owner replaces this file). */
#include "cli.h"

const char pm_cli_kan_help[] = "usage: polymorph kan ...\n(not built yet)\n";

int pm_cli_kan(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return pm_cli_fail("kan", "not built yet");
}
