/* polymorph dis: disassemble a .pmp program file. The text re-assembles to
 * the identical program (pm_disassemble's contract), so asm -> dis -> asm is
 * a byte-for-byte round trip. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char pm_cli_dis_help[] =
    "usage: polymorph dis IN.pmp [-o OUT.pasm]\n"
    "\n"
    "Disassemble a program file into assembly that assembles back to the\n"
    "identical program (code, data sections, symbols, tensors, entry).\n"
    "\n"
    "options:\n"
    "  -o, --output FILE   write the assembly to FILE (default: standard output)\n"
    "  -h, --help          show this help\n"
    "\n"
    "example:\n"
    "  polymorph dis softmax.pmp -o softmax_again.pasm\n";

enum { OPT_OUTPUT };
static const pm_cli_option dis_options[] = {
    [OPT_OUTPUT] = {"output", 'o', true, false},
};

int pm_cli_dis(int argc, char **argv)
{
    pm_cli_parsed p;
    if (!pm_cli_parse("dis", argc, argv, dis_options, sizeof dis_options / sizeof dis_options[0], &p))
        return PM_EXIT_FAIL;
    if (p.help) {
        fputs(pm_cli_dis_help, stdout);
        return PM_EXIT_OK;
    }
    if (p.positional_count == 0) return pm_cli_fail("dis", "missing program file");
    if (p.positional_count > 1) return pm_cli_fail("dis", "expected one program file, got %d", p.positional_count);
    pm_error err = {0};
    pm_program prog;
    pm_program_init(&prog);
    char *text = NULL;
    pm_status st = pm_program_load_file(p.positional[0], &prog, &err);
    if (st == PM_OK) st = pm_disassemble(&prog, &text, &err);
    const char *out = pm_cli_value(&p, OPT_OUTPUT);
    if (st == PM_OK && out) st = pm_write_file_atomic(out, text, strlen(text), &err);
    int rc = PM_EXIT_OK;
    if (st != PM_OK) rc = pm_cli_fail_err("dis", &err);
    else if (!out && (fputs(text, stdout) == EOF || fflush(stdout) != 0))
        rc = pm_cli_fail("dis", "cannot write to standard output");
    free(text);
    pm_program_free(&prog);
    return rc;
}
