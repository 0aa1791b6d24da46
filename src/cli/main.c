/* polymorph: the command-line front end. main() only dispatches to one verb
 * (one file each); this file also holds the option parser and the error
 * reporting every verb shares, so all verbs behave alike. */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char main_usage[] =
    "usage: polymorph <verb> [options] [arguments]\n"
    "       polymorph --help | --version | help VERB\n"
    "\n"
    "Polymorph: a pre-silicon AI accelerator: assembler, disassembler and simulator.\n"
    "\n"
    "verbs:\n";

static const char main_footer[] =
    "\n"
    "Every verb accepts --help. Exit status: 0 on success, 1 on any error\n"
    "(the message is printed on stderr as \"polymorph <verb>: <message>\").\n"
    "\n"
    "example:\n"
    "  polymorph asm examples/vector_add.pasm -o vector_add.pmp\n"
    "  polymorph sim vector_add.pmp --preset edge --input a=a.npy --input b=b.npy --output c=c.npy\n";

static const pm_cli_verb verbs[] = {
    {"asm", "assemble a .pasm source into a .pmp program file", pm_cli_asm_help, pm_cli_asm},
    {"dis", "disassemble a .pmp program file into assembly", pm_cli_dis_help, pm_cli_dis},
    {"sim", "run a program on a simulated chip and print its counters", pm_cli_sim_help, pm_cli_sim},
    {"presets", "list the built-in chip presets, or print one as config text", pm_cli_presets_help, pm_cli_presets},
    {"bench", "benchmark a kernel on a simulated chip beside its roofline and the host", pm_cli_bench_help, pm_cli_bench},
    {"fit", "fit a univariate function into an LFU table and report its error", pm_cli_fit_help, pm_cli_fit},
    {"run", "generate text with a GGUF language model on a simulated chip, with its figures", pm_cli_run_help, pm_cli_run},
    {"kan", "train, evaluate, export and run Kolmogorov-Arnold networks on LFUs", pm_cli_kan_help, pm_cli_kan},
};

const pm_cli_verb *pm_cli_verbs(size_t *count)
{
    *count = sizeof verbs / sizeof verbs[0];
    return verbs;
}

const pm_cli_verb *pm_cli_find_verb(const char *name)
{
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(verbs[i].name, name) == 0) return &verbs[i];
    return NULL;
}

int pm_cli_fail(const char *verb, const char *fmt, ...)
{
    char msg[PM_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* The reason is always one line, "polymorph VERB: message", so scripts can
     * rely on its shape. A message with context (an assembly error shows the
     * offending source line and a caret) follows it with that context,
     * every context line indented, as compilers do. */
    char *nl = strchr(msg, '\n');
    if (nl) *nl = 0;
    fprintf(stderr, "polymorph%s%s: %s\n", verb ? " " : "", verb ? verb : "", msg);
    for (char *line = nl ? nl + 1 : NULL; line && *line;) {
        char *next = strchr(line, '\n');
        if (next) *next = 0;
        fprintf(stderr, "    %s\n", line);
        line = next ? next + 1 : NULL;
    }
    return PM_EXIT_FAIL;
}

int pm_cli_fail_err(const char *verb, const pm_error *err)
{
    return pm_cli_fail(verb, "%s", err->message[0] ? err->message : pm_status_name(err->status));
}

/* ---- options ---- */

static int find_long(const pm_cli_option *opts, size_t n, const char *name, size_t name_len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(opts[i].name) == name_len && strncmp(opts[i].name, name, name_len) == 0) return (int)i;
    return -1;
}

static int find_short(const pm_cli_option *opts, size_t n, char c)
{
    for (size_t i = 0; i < n; i++)
        if (opts[i].short_name && opts[i].short_name == c) return (int)i;
    return -1;
}

bool pm_cli_parse(const char *verb, int argc, char **argv, const pm_cli_option *opts, size_t opt_count,
                  pm_cli_parsed *out)
{
    memset(out, 0, sizeof *out);
    if (opt_count > PM_CLI_MAX_OPTIONS) {
        pm_cli_fail(verb, "internal: %zu options in the table, at most %d", opt_count, PM_CLI_MAX_OPTIONS);
        return false;
    }
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (options_done || arg[0] != '-' || arg[1] == 0) {
            if (out->positional_count == PM_CLI_MAX_POSITIONAL) {
                pm_cli_fail(verb, "too many arguments (at '%s')", arg);
                return false;
            }
            out->positional[out->positional_count++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            out->help = true;
            continue;
        }
        int k;
        const char *inline_value = NULL;
        if (arg[1] == '-') {
            const char *name = arg + 2;
            const char *eq = strchr(name, '=');
            k = find_long(opts, opt_count, name, eq ? (size_t)(eq - name) : strlen(name));
            if (eq) inline_value = eq + 1;
        } else {
            k = arg[2] == 0 ? find_short(opts, opt_count, arg[1]) : -1;
        }
        if (k < 0) {
            pm_cli_fail(verb, "unknown option '%s' (see polymorph help %s)", arg, verb);
            return false;
        }
        const pm_cli_option *o = &opts[k];
        const char *value = NULL;
        if (o->takes_value) {
            if (inline_value) value = inline_value;
            else if (i + 1 < argc) value = argv[++i];
            else {
                pm_cli_fail(verb, "option --%s needs a value", o->name);
                return false;
            }
        } else if (inline_value) {
            pm_cli_fail(verb, "option --%s takes no value", o->name);
            return false;
        }
        if (out->given[k] && !o->repeatable) {
            pm_cli_fail(verb, "option --%s given more than once", o->name);
            return false;
        }
        if (out->given[k] == PM_CLI_MAX_VALUES) {
            pm_cli_fail(verb, "option --%s given more than %d times", o->name, PM_CLI_MAX_VALUES);
            return false;
        }
        out->values[k][out->given[k]++] = value;
    }
    return true;
}

const char *pm_cli_value(const pm_cli_parsed *p, size_t i)
{
    return p->given[i] ? p->values[i][p->given[i] - 1] : NULL;
}

/* ---- top level ---- */

static void print_usage(FILE *f)
{
    fputs(main_usage, f);
    size_t n;
    const pm_cli_verb *v = pm_cli_verbs(&n);
    for (size_t i = 0; i < n; i++) fprintf(f, "  %-9s %s\n", v[i].name, v[i].summary);
    fprintf(f, "  %-9s %s\n", "help", "show the help of one verb: polymorph help VERB");
    fputs(main_footer, f);
}

static int help_verb(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stdout);
        return PM_EXIT_OK;
    }
    if (argc > 2) return pm_cli_fail("help", "takes one verb, got %d arguments", argc - 1);
    if (strcmp(argv[1], "help") == 0) {
        print_usage(stdout);
        return PM_EXIT_OK;
    }
    const pm_cli_verb *v = pm_cli_find_verb(argv[1]);
    if (!v) return pm_cli_fail("help", "unknown verb '%s' (polymorph --help lists them)", argv[1]);
    fputs(v->help, stdout);
    return PM_EXIT_OK;
}

/* Help, version and preset text go to standard output like every result: a
 * write that fails there (a full disk, a closed pipe) must not exit 0. */
static int finish(int argc, char **argv, int rc)
{
    if ((fflush(stdout) != 0 || ferror(stdout)) && rc == PM_EXIT_OK) {
        const char *verb = argc > 1 && (pm_cli_find_verb(argv[1]) || strcmp(argv[1], "help") == 0) ? argv[1] : NULL;
        return pm_cli_fail(verb, "cannot write to standard output");
    }
    return rc;
}

static int dispatch(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return PM_EXIT_FAIL;
    }
    const char *first = argv[1];
    if (strcmp(first, "--help") == 0 || strcmp(first, "-h") == 0) {
        print_usage(stdout);
        return PM_EXIT_OK;
    }
    if (strcmp(first, "--version") == 0) {
        printf("polymorph %s\n", PM_CLI_VERSION);
        return PM_EXIT_OK;
    }
    if (strcmp(first, "help") == 0) return help_verb(argc - 1, argv + 1);
    const pm_cli_verb *v = pm_cli_find_verb(first);
    if (!v) {
        if (first[0] == '-') return pm_cli_fail(NULL, "unknown option '%s' (polymorph --help lists the verbs)", first);
        return pm_cli_fail(NULL, "unknown verb '%s' (polymorph --help lists the verbs)", first);
    }
    return v->run(argc - 1, argv + 1);
}

int main(int argc, char **argv) { return finish(argc, argv, dispatch(argc, argv)); }
