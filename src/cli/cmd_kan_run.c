/* polymorph kan run: placeholder until KAN inference on the engine lands (its owner replaces this file). */
#include "cli.h"

int pm_cli_kan_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return pm_cli_fail("kan run", "not built yet");
}
