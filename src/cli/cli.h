/* Private interface of the polymorph command-line tool: the verb table, a
 * small option parser shared by every verb, error reporting in the one
 * "polymorph <verb>: <message>" form, and the NumPy .npy reader/writer. */
#ifndef POLYMORPH_CLI_H
#define POLYMORPH_CLI_H

#include "polymorph/runtime.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PM_CLI_VERSION "0.1.0"

/* Exit statuses: 0 success, 1 any user-visible failure. */
#define PM_EXIT_OK 0
#define PM_EXIT_FAIL 1

typedef struct pm_cli_verb {
    const char *name;
    const char *summary; /* one line for `polymorph --help` */
    const char *help;    /* full text for `polymorph help VERB` and `VERB --help` */
    int (*run)(int argc, char **argv); /* argv[0] is the verb */
} pm_cli_verb;

const pm_cli_verb *pm_cli_verbs(size_t *count);
const pm_cli_verb *pm_cli_find_verb(const char *name);

int pm_cli_asm(int argc, char **argv);
int pm_cli_dis(int argc, char **argv);
int pm_cli_sim(int argc, char **argv);
int pm_cli_presets(int argc, char **argv);
int pm_cli_bench(int argc, char **argv);
int pm_cli_fit(int argc, char **argv);
int pm_cli_kan(int argc, char **argv);
/* `polymorph kan run`: KAN inference on the simulated engine (cmd_kan_run.c);
 * argv[0] is "run". */
int pm_cli_kan_run(int argc, char **argv);
/* `polymorph run`: a GGUF language model on the simulated engine (cmd_run.c). */
int pm_cli_run(int argc, char **argv);

extern const char pm_cli_asm_help[];
extern const char pm_cli_dis_help[];
extern const char pm_cli_sim_help[];
extern const char pm_cli_presets_help[];
extern const char pm_cli_bench_help[];
extern const char pm_cli_fit_help[];
extern const char pm_cli_kan_help[];
extern const char pm_cli_run_help[];

/* Prints "polymorph <verb>: <message>" on stderr and returns PM_EXIT_FAIL. */
int pm_cli_fail(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same, with the message from a pm_error. */
int pm_cli_fail_err(const char *verb, const pm_error *err);

/* ---- JSON output (json.c) ---- */
/* A JSON string literal: quotes, backslashes and control characters escaped. */
void pm_cli_json_string(FILE *f, const char *s);
/* A number that reads back to the same double; JSON has no inf/NaN, so a
 * missing or non-finite figure is written as null. */
void pm_cli_json_number(FILE *f, double v);

/* ---- option parsing ----
 * Options are described by a table; "--name value", "--name=value" and the
 * short alias ("-o value") are accepted; "--" ends options. Every other
 * argument is positional. Repeatable options collect every value. */
typedef struct pm_cli_option {
    const char *name;  /* "output" for --output */
    char short_name;   /* 'o' for -o, 0 for none */
    bool takes_value;
    bool repeatable;
} pm_cli_option;

#define PM_CLI_MAX_VALUES 64
#define PM_CLI_MAX_POSITIONAL 8
#define PM_CLI_MAX_OPTIONS 32 /* options in one verb's table (pm_cli_parse refuses more) */

typedef struct pm_cli_parsed {
    /* per option (same index as the table): how often given and the values */
    int given[PM_CLI_MAX_OPTIONS];
    const char *values[PM_CLI_MAX_OPTIONS][PM_CLI_MAX_VALUES];
    const char *positional[PM_CLI_MAX_POSITIONAL];
    int positional_count;
    bool help;
} pm_cli_parsed;

/* Returns true on success; on failure prints the error (naming the verb)
 * and returns false. --help/-h is always accepted and sets help. */
bool pm_cli_parse(const char *verb, int argc, char **argv, const pm_cli_option *opts, size_t opt_count,
                  pm_cli_parsed *out);

/* Value of option i (the last one given), or NULL. */
const char *pm_cli_value(const pm_cli_parsed *p, size_t i);

/* ---- NumPy .npy files ---- */

typedef enum pm_npy_kind { PM_NPY_FLOAT = 'f', PM_NPY_INT = 'i', PM_NPY_UINT = 'u', PM_NPY_BOOL = 'b' } pm_npy_kind;

#define PM_NPY_MAX_RANK 32

typedef struct pm_npy {
    pm_npy_kind kind;
    uint32_t item_bytes; /* 1, 2, 4 or 8 */
    uint32_t rank;
    uint64_t shape[PM_NPY_MAX_RANK];
    uint64_t count;      /* product of shape (1 for rank 0) */
    uint8_t *data;       /* count * item_bytes bytes, little-endian, C order */
    char descr[32];      /* as written in the header, for messages: "<f4" */
} pm_npy;

void pm_npy_free(pm_npy *a);
/* Parses a whole .npy file image; name is used in messages. */
pm_status pm_npy_parse(const char *name, const uint8_t *bytes, size_t len, pm_npy *out, pm_error *err);
pm_status pm_npy_load(const char *path, pm_npy *out, pm_error *err);
/* Serialises a version 1.0 .npy image (descr "<f4", "|i1", ...). Caller frees. */
pm_status pm_npy_build(const char *descr, const uint64_t *shape, uint32_t rank, const void *data, size_t data_bytes,
                       uint8_t **bytes, size_t *len, pm_error *err);
/* Element i as a double / as an int64 (integers exactly; floats by value). */
double pm_npy_get_f64(const pm_npy *a, uint64_t i);
int64_t pm_npy_get_i64(const pm_npy *a, uint64_t i, bool *in_range);
/* Human name of the dtype: "float32", "int8", ... */
const char *pm_npy_type_name(const pm_npy *a);

#endif
