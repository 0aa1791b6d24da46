/* polymorph asm: assemble a .pasm source into a .pmp program file. The
 * output is written atomically and only when assembly succeeded. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char pm_cli_asm_help[] =
    "usage: polymorph asm IN.pasm [-o OUT.pmp]\n"
    "\n"
    "Assemble IN.pasm into a program file. Errors name file:line:col.\n"
    "\n"
    "options:\n"
    "  -o, --output FILE   program file to write (default: IN with its .pasm\n"
    "                      extension replaced by .pmp, or .pmp appended)\n"
    "  -h, --help          show this help\n"
    "\n"
    "example:\n"
    "  polymorph asm examples/softmax.pasm -o softmax.pmp\n";

enum { OPT_OUTPUT };
static const pm_cli_option asm_options[] = {
    [OPT_OUTPUT] = {"output", 'o', true, false},
};

/* IN.pasm -> IN.pmp; any other name gets .pmp appended. Caller frees. */
static char *default_output(const char *in)
{
    size_t n = strlen(in);
    const char *ext = ".pasm";
    size_t e = strlen(ext);
    size_t stem = (n > e && strcmp(in + n - e, ext) == 0) ? n - e : n;
    char *out = malloc(stem + 5);
    if (!out) return NULL;
    memcpy(out, in, stem);
    memcpy(out + stem, ".pmp", 5);
    return out;
}

int pm_cli_asm(int argc, char **argv)
{
    pm_cli_parsed p;
    if (!pm_cli_parse("asm", argc, argv, asm_options, sizeof asm_options / sizeof asm_options[0], &p))
        return PM_EXIT_FAIL;
    if (p.help) {
        fputs(pm_cli_asm_help, stdout);
        return PM_EXIT_OK;
    }
    if (p.positional_count == 0) return pm_cli_fail("asm", "missing input file");
    if (p.positional_count > 1) return pm_cli_fail("asm", "expected one input file, got %d", p.positional_count);
    const char *in = p.positional[0];
    char *out = pm_cli_value(&p, OPT_OUTPUT) ? NULL : default_output(in);
    const char *out_path = out ? out : pm_cli_value(&p, OPT_OUTPUT);
    if (!out_path) return pm_cli_fail("asm", "out of memory");

    pm_error err = {0};
    pm_program prog;
    pm_program_init(&prog);
    uint8_t *bytes = NULL;
    size_t len = 0;
    pm_status st = pm_assemble_file(in, &prog, &err);
    if (st == PM_OK) st = pm_program_write(&prog, &bytes, &len, &err);
    if (st == PM_OK) st = pm_write_file_atomic(out_path, bytes, len, &err);
    int rc = st == PM_OK ? PM_EXIT_OK : pm_cli_fail_err("asm", &err);
    free(bytes);
    free(out);
    pm_program_free(&prog);
    return rc;
}
