/* polymorph run: a language model generating text on the simulated engine.
 * The model work is llm.h (programs compiled once, run per token); this file
 * is argv, the prompt, the streamed text and the figures table / JSON. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "cli.h"
#include "polymorph/llm.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char verb[] = "run";

enum {
    OPT_MODEL, OPT_PROMPT, OPT_CHAT, OPT_TOKENS, OPT_PRESET, OPT_CONFIG, OPT_WFMT, OPT_SEED, OPT_TEMP,
    OPT_TOPK, OPT_TOPP, OPT_THREADS, OPT_MAXCTX, OPT_TRACE, OPT_JSON, OPT_TEACHER, OPT_LOGITS, OPT_COUNT
};
static const pm_cli_option options[OPT_COUNT] = {
    [OPT_MODEL] = {"model", 'm', true, false},      [OPT_PROMPT] = {"prompt", 'p', true, false},
    [OPT_CHAT] = {"chat", 0, false, false},         [OPT_TOKENS] = {"tokens", 'n', true, false},
    [OPT_PRESET] = {"preset", 0, true, false},      [OPT_CONFIG] = {"config", 0, true, false},
    [OPT_WFMT] = {"wfmt", 0, true, false},          [OPT_SEED] = {"seed", 0, true, false},
    [OPT_TEMP] = {"temperature", 0, true, false},   [OPT_TOPK] = {"top-k", 0, true, false},
    [OPT_TOPP] = {"top-p", 0, true, false},         [OPT_THREADS] = {"threads", 0, true, false},
    [OPT_MAXCTX] = {"max-ctx", 0, true, false},     [OPT_TRACE] = {"trace", 0, true, false},
    [OPT_JSON] = {"json", 0, false, false},         [OPT_TEACHER] = {"teacher-force", 0, false, false},
    [OPT_LOGITS] = {"logits", 0, true, false},
};

#define DEFAULT_MODEL_FILE "SmolLM2-135M-Instruct.Q4_1.gguf"
#define DEFAULT_QUESTION "What is the capital of France?"

const char pm_cli_run_help[] =
    "usage: polymorph run [--model F] [--prompt T] [--chat] [-n N] [--preset P | --config F]\n"
    "                     [--wfmt F] [--seed S] [--temperature T] [--top-k K] [--top-p P]\n"
    "                     [--threads N] [--max-ctx N] [--trace F] [--json]\n"
    "                     [--teacher-force] [--logits F.npy]\n"
    "\n"
    "Runs a Llama-family GGUF language model on the simulated engine: every layer of\n"
    "every token is computed instruction by instruction. The text streams as it is\n"
    "generated; then a table of the figures a hardware team needs (docs/models.md).\n"
    "\n"
    "  --model F, -m F      a GGUF file (default: SmolLM2-135M-Instruct Q4_1 in the\n"
    "                       cache, $POLYMORPH_CACHE, else $XDG_CACHE_HOME/polymorph,\n"
    "                       else ~/.cache/polymorph; fetch it once with `make model`)\n"
    "  --prompt T, -p T     the prompt (default: \"" DEFAULT_QUESTION "\" as a chat)\n"
    "  --chat               wrap the prompt in the model's chat template (as the user\n"
    "                       turn); on by default only for the default prompt\n"
    "  --tokens N, -n N     generate at most N tokens (default 64); generation also\n"
    "                       stops at an end-of-generation token or a full context\n"
    "  --preset P           chip preset (default: edge); --config F: a chip config file\n"
    "  --wfmt F             device weight format: native (default: each tensor's own\n"
    "                       GGUF quantisation) or a format to re-encode every matrix to\n"
    "                       (bf16, if4, nvfp4, mxfp4, int4b, q8_0, ...)\n"
    "  --temperature T      0 (default) is greedy; > 0 samples softmax(logits / T)\n"
    "  --top-k K            candidates the device top-k returns for sampling (default\n"
    "                       40, at most 64)\n"
    "  --top-p P            keep the smallest set of candidates with mass >= P (default 0.95)\n"
    "  --seed S             the sampler's seed (default 1)\n"
    "  --threads N          host threads of the simulator (default: all cores; never\n"
    "                       changes a result or a cycle)\n"
    "  --max-ctx N          context positions (default: min(the model's, 2048))\n"
    "  --trace F            Chrome trace of the first decode step: its first program\n"
    "                       to F, the following ones to F.1, F.2, ... (open in\n"
    "                       ui.perfetto.dev)\n"
    "  --json               print one JSON object instead of the text and the table\n"
    "  --teacher-force      feed the prompt, tokenised without a chat template, one\n"
    "                       token at a time through the decode programs; nothing is\n"
    "                       generated; reports the device's argmax after each token\n"
    "  --logits F.npy       write every step's logits, float32 [steps, vocab]\n"
    "\n"
    "Figures: simulated time to first token (the prefill, whose last step yields the\n"
    "first token), decode tokens/s at the modelled clock, the DRAM roofline (weights +\n"
    "KV cache bytes per step over dram.bandwidth_gbps) and the fraction of it reached,\n"
    "simulator speed (tokens per wall second), energy and DRAM bytes per decoded token,\n"
    "and each unit's utilisation (busy cycles / cycles) during decode.\n"
    "\n"
    "example:\n"
    "  polymorph run --chat --prompt \"What is the capital of France?\"\n"
    "  polymorph run --prompt \"Once upon a time\" -n 40 --temperature 0.8 --seed 7\n";

/* ---- option values ---- */

static bool parse_u64(const char *opt, const char *text, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = (text[0] >= '0' && text[0] <= '9') ? strtoull(text, &end, 10) : 0;
    if (!end || *end || errno || v < lo || v > hi) {
        pm_cli_fail(verb, "--%s: '%s' is not an integer in %llu..%llu", opt, text, (unsigned long long)lo,
                    (unsigned long long)hi);
        return false;
    }
    *out = v;
    return true;
}

static bool parse_f(const char *opt, const char *text, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || errno || !(v >= lo && v <= hi)) {
        pm_cli_fail(verb, "--%s: '%s' is not a number in %g..%g", opt, text, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

/* The fetch script's cache path (tools/fetch_model.sh computes the same). */
static char *default_model_path(void)
{
    const char *cache = getenv("POLYMORPH_CACHE"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    pm_text t = {0};
    if (cache && *cache) pm_text_printf(&t, "%s/%s", cache, DEFAULT_MODEL_FILE);
    else if (xdg && *xdg) pm_text_printf(&t, "%s/polymorph/%s", xdg, DEFAULT_MODEL_FILE);
    else pm_text_printf(&t, "%s/.cache/polymorph/%s", home ? home : ".", DEFAULT_MODEL_FILE);
    if (t.failed) {
        free(t.data);
        return NULL;
    }
    return t.data;
}

/* ---- streaming text ---- */

/* Pieces may end inside a UTF-8 character; the tail of an incomplete
 * character waits for the next piece so the terminal never sees half. */
typedef struct stream_out {
    bool on, started;
    unsigned char pending[8];
    size_t npending;
} stream_out;

static size_t utf8_complete_prefix(const unsigned char *s, size_t n)
{
    /* Look back at most 3 bytes for a lead byte whose sequence is cut. */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = s[n - back];
        if ((c & 0xC0) == 0x80) continue; /* continuation */
        size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
        return need > back ? n - back : n;
    }
    return n;
}

static void stream_piece(stream_out *so, const char *piece, size_t len)
{
    if (!so->on) return;
    unsigned char buf[264];
    size_t n = so->npending;
    memcpy(buf, so->pending, n);
    size_t take = len < sizeof buf - n ? len : sizeof buf - n;
    memcpy(buf + n, piece, take);
    n += take;
    size_t ok = utf8_complete_prefix(buf, n);
    fwrite(buf, 1, ok, stdout);
    fflush(stdout);
    so->npending = n - ok;
    memcpy(so->pending, buf + ok, so->npending);
}

static void stream_end(stream_out *so)
{
    if (!so->on || !so->started) return;
    fwrite(so->pending, 1, so->npending, stdout);
    so->npending = 0;
    fputc('\n', stdout);
    fflush(stdout);
}

/* ---- the job ---- */

typedef struct run_job {
    pm_config cfg;
    const char *preset_name;
    const char *wfmt_name;
    char *model_path;
    const char *prompt;
    bool chat, json, teacher;
    uint64_t max_tokens, seed;
    double temperature, top_p; /* as given (the sampler takes them as float) */
    uint32_t top_k;
    const char *trace_path, *logits_path;
    pm_llm_options lo;

    pm_llm *m;
    int32_t *prompt_ids;
    size_t n_prompt;
    int32_t *gen_ids;
    size_t n_gen;
    int32_t *predicted; /* teacher forcing: the device argmax after each token */
    float *logits;      /* steps x vocab when --logits */
    size_t n_steps;
    pm_text text;
    const char *stop;
    double roofline_s; /* sum over decode steps of min bytes / bandwidth */
    uint64_t decode_steps;
} run_job;

static void job_free(run_job *j)
{
    pm_llm_close(j->m);
    free(j->model_path);
    free(j->prompt_ids);
    free(j->gen_ids);
    free(j->predicted);
    free(j->logits);
    free(j->text.data);
}

static bool parse_job(int argc, char **argv, run_job *j)
{
    pm_cli_parsed p;
    if (!pm_cli_parse(verb, argc, argv, options, OPT_COUNT, &p)) return false;
    if (p.help) {
        fputs(pm_cli_run_help, stdout);
        j->stop = "help";
        return true;
    }
    if (p.positional_count) {
        pm_cli_fail(verb, "unexpected argument '%s' (the prompt goes after --prompt)", p.positional[0]);
        return false;
    }
    pm_error err = {0};
    const char *preset = pm_cli_value(&p, OPT_PRESET), *config = pm_cli_value(&p, OPT_CONFIG);
    if (preset && config) {
        pm_cli_fail(verb, "--preset and --config exclude each other");
        return false;
    }
    pm_status st = config ? pm_config_load_file(config, &j->cfg, &err)
                          : pm_config_preset(preset ? preset : "edge", &j->cfg, &err);
    if (st) {
        pm_cli_fail_err(verb, &err);
        return false;
    }
    j->preset_name = config ? config : preset ? preset : "edge";
    pm_llm_options_init(&j->lo);
    j->wfmt_name = pm_cli_value(&p, OPT_WFMT);
    if (j->wfmt_name && strcmp(j->wfmt_name, "native") != 0) {
        if (!pm_format_from_name(j->wfmt_name, &j->lo.wfmt)) {
            pm_cli_fail(verb, "--wfmt: unknown format '%s' (native, bf16, f16, if4, nvfp4, mxfp4, int4b, q4_0, q8_0, ...)",
                        j->wfmt_name);
            return false;
        }
        j->lo.wfmt_native = false;
    }
    if (!j->wfmt_name) j->wfmt_name = "native";
    uint64_t v;
    j->max_tokens = 64;
    if (pm_cli_value(&p, OPT_TOKENS) && !parse_u64("tokens", pm_cli_value(&p, OPT_TOKENS), 0, 1000000, &j->max_tokens))
        return false;
    j->seed = 1;
    if (pm_cli_value(&p, OPT_SEED) && !parse_u64("seed", pm_cli_value(&p, OPT_SEED), 0, UINT64_MAX, &j->seed)) return false;
    j->top_k = 40;
    if (pm_cli_value(&p, OPT_TOPK)) {
        if (!parse_u64("top-k", pm_cli_value(&p, OPT_TOPK), 1, PM_LLM_TOPK_MAX, &v)) return false;
        j->top_k = (uint32_t)v;
    }
    j->temperature = 0;
    if (pm_cli_value(&p, OPT_TEMP) && !parse_f("temperature", pm_cli_value(&p, OPT_TEMP), 0, 100, &j->temperature))
        return false;
    j->top_p = 0.95;
    if (pm_cli_value(&p, OPT_TOPP) && !parse_f("top-p", pm_cli_value(&p, OPT_TOPP), 0, 1, &j->top_p)) return false;
    if (pm_cli_value(&p, OPT_THREADS)) {
        if (!parse_u64("threads", pm_cli_value(&p, OPT_THREADS), 1, 1024, &v)) return false;
        j->lo.threads = (unsigned)v;
    }
    if (pm_cli_value(&p, OPT_MAXCTX)) {
        if (!parse_u64("max-ctx", pm_cli_value(&p, OPT_MAXCTX), 1, 1u << 20, &v)) return false;
        j->lo.max_ctx = (uint32_t)v;
    }
    j->trace_path = pm_cli_value(&p, OPT_TRACE);
    j->logits_path = pm_cli_value(&p, OPT_LOGITS);
    j->json = p.given[OPT_JSON] > 0;
    j->teacher = p.given[OPT_TEACHER] > 0;
    j->prompt = pm_cli_value(&p, OPT_PROMPT);
    j->chat = p.given[OPT_CHAT] > 0;
    if (j->teacher && j->chat) {
        pm_cli_fail(verb, "--teacher-force feeds the text without a chat template; drop --chat");
        return false;
    }
    if (!j->prompt) {
        if (j->teacher) {
            pm_cli_fail(verb, "--teacher-force needs --prompt (the text to feed)");
            return false;
        }
        j->prompt = DEFAULT_QUESTION;
        j->chat = true;
    }
    const char *model = pm_cli_value(&p, OPT_MODEL);
    if (model) {
        j->model_path = malloc(strlen(model) + 1);
        if (j->model_path) strcpy(j->model_path, model);
    } else {
        j->model_path = default_model_path();
    }
    if (!j->model_path) {
        pm_cli_fail(verb, "out of memory");
        return false;
    }
    struct stat sb;
    if (!model && stat(j->model_path, &sb) != 0) {
        pm_cli_fail(verb,
                    "no model at %s: fetch it once with `make model` (or sh tools/fetch_model.sh), or pass "
                    "--model /path/to/model.gguf",
                    j->model_path);
        return false;
    }
    return true;
}

/* Prompt tokens: raw text (BOS when the model wants one), or the chat
 * template's text with its control tokens parsed. */
static pm_status tokenize_prompt(run_job *j, pm_error *err)
{
    const pm_tokenizer *tok = pm_llm_tokenizer(j->m);
    if (!j->chat)
        return pm_tokenizer_encode(tok, j->prompt, strlen(j->prompt), pm_tokenizer_adds_bos(tok), false, &j->prompt_ids,
                                   &j->n_prompt, err);
    pm_chat_message msg = {"user", j->prompt};
    char *text = NULL;
    pm_status st = pm_chat_render(pm_llm_gguf(j->m), &msg, 1, true, &text, err);
    if (!st) st = pm_tokenizer_encode(tok, text, strlen(text), false, true, &j->prompt_ids, &j->n_prompt, err);
    free(text);
    if (st) return st;
    /* A template that writes BOS itself must not get a second one. */
    int32_t bos = pm_tokenizer_bos(tok);
    if (pm_tokenizer_adds_bos(tok) && bos >= 0 && (j->n_prompt == 0 || j->prompt_ids[0] != bos)) {
        int32_t *ids = realloc(j->prompt_ids, sizeof *ids * (j->n_prompt + 1));
        if (!ids) return pm_error_set(err, PM_ERR_NOMEM, "out of memory");
        memmove(ids + 1, ids, sizeof *ids * j->n_prompt);
        ids[0] = bos;
        j->prompt_ids = ids;
        j->n_prompt++;
    }
    return PM_OK;
}

static pm_status keep_logits(run_job *j, pm_error *err)
{
    if (!j->logits_path) return PM_OK;
    uint32_t V = pm_llm_get_info(j->m)->vocab;
    float *l = realloc(j->logits, sizeof *l * V * (j->n_steps + 1));
    if (!l) return pm_error_set(err, PM_ERR_NOMEM, "out of memory for the logits of %zu steps", j->n_steps + 1);
    j->logits = l;
    pm_status st = pm_llm_logits(j->m, l + (size_t)V * j->n_steps, err);
    if (!st) j->n_steps++;
    return st;
}

static pm_status decode_step(run_job *j, int32_t token, pm_error *err)
{
    uint32_t pos = pm_llm_position(j->m);
    j->roofline_s += (double)pm_llm_decode_min_bytes(j->m, pos) / (j->cfg.dram_gbps * 1e9);
    j->decode_steps++;
    return pm_llm_decode(j->m, token, err);
}

static pm_status teacher_force(run_job *j, pm_error *err)
{
    j->predicted = malloc(sizeof *j->predicted * (j->n_prompt ? j->n_prompt : 1));
    if (!j->predicted) return pm_error_set(err, PM_ERR_NOMEM, "out of memory");
    pm_status st = PM_OK;
    if (j->trace_path) st = pm_llm_set_trace(j->m, j->trace_path, err);
    for (size_t i = 0; i < j->n_prompt && !st; i++) {
        st = decode_step(j, j->prompt_ids[i], err);
        float v;
        if (!st) st = pm_llm_topk(j->m, 1, &j->predicted[i], &v, err);
        if (!st) st = keep_logits(j, err);
    }
    j->stop = "teacher-force";
    return st;
}

static pm_status generate(run_job *j, stream_out *so, pm_error *err)
{
    const pm_tokenizer *tok = pm_llm_tokenizer(j->m);
    uint32_t kdev = j->temperature > 0 ? j->top_k : 1;
    pm_status st = pm_llm_set_topk(j->m, kdev, err);
    if (!st) st = pm_llm_prefill(j->m, j->prompt_ids, j->n_prompt, err);
    if (st) return st;
    j->gen_ids = malloc(sizeof *j->gen_ids * (j->max_tokens ? j->max_tokens : 1));
    if (!j->gen_ids) return pm_error_set(err, PM_ERR_NOMEM, "out of memory");
    if (j->trace_path) st = pm_llm_set_trace(j->m, j->trace_path, err);
    pm_sampler s;
    pm_sampler_init(&s, (float)j->temperature, j->top_k, (float)j->top_p, j->seed);
    j->stop = "length";
    while (!st && j->n_gen < j->max_tokens) {
        int32_t ids[PM_LLM_TOPK_MAX];
        float vals[PM_LLM_TOPK_MAX];
        st = pm_llm_topk(j->m, kdev, ids, vals, err);
        if (!st) st = keep_logits(j, err);
        if (st) break;
        int32_t next = pm_sampler_pick(&s, ids, vals, kdev);
        if (pm_tokenizer_is_eog(tok, next)) {
            j->stop = "end of generation";
            break;
        }
        j->gen_ids[j->n_gen++] = next;
        char piece[256];
        long len = pm_tokenizer_piece(tok, next, false, piece, sizeof piece);
        if (len > (long)sizeof piece) len = sizeof piece; /* a single token longer than 256 bytes is cut */
        if (len > 0) {
            pm_text_append(&j->text, piece, (size_t)len);
            stream_piece(so, piece, (size_t)len);
        }
        if (j->n_gen == j->max_tokens) break;
        if (pm_llm_position(j->m) >= pm_llm_max_ctx(j->m)) {
            j->stop = "context full";
            break;
        }
        st = decode_step(j, next, err);
    }
    if (j->text.failed) return pm_error_set(err, PM_ERR_NOMEM, "out of memory for the generated text");
    return st;
}

/* ---- figures ---- */

typedef struct figures {
    pm_llm_phase_stats pre, dec;
    double ttft_s, decode_tok_s, roofline_tok_s, roofline_fraction, wall_tok_s, prefill_wall_tok_s;
    double energy_j_per_token, dram_bytes_per_token;
    double util[PM_UNIT_COUNT];
} figures;

static double ratio(double a, double b) { return b > 0 ? a / b : NAN; }

static void compute_figures(const run_job *j, figures *f)
{
    pm_llm_stats(j->m, &f->pre, &f->dec);
    f->ttft_s = f->pre.tokens ? f->pre.seconds_sim : NAN;
    f->decode_tok_s = ratio((double)f->dec.tokens, f->dec.seconds_sim);
    f->roofline_tok_s = ratio((double)j->decode_steps, j->roofline_s);
    f->roofline_fraction = ratio(j->roofline_s, f->dec.seconds_sim);
    f->wall_tok_s = ratio((double)f->dec.tokens, f->dec.seconds_wall);
    f->prefill_wall_tok_s = ratio((double)f->pre.tokens, f->pre.seconds_wall);
    f->energy_j_per_token = ratio(f->dec.energy_j, (double)f->dec.tokens);
    f->dram_bytes_per_token = ratio((double)f->dec.dram_bytes, (double)f->dec.tokens);
    for (int u = 0; u < PM_UNIT_COUNT; u++)
        f->util[u] = ratio(f->dec.unit_busy[u], (double)f->dec.cycles * (double)j->cfg.engines);
}

static void print_table(const run_job *j, const figures *f)
{
    const pm_llm_info *in = pm_llm_get_info(j->m);
    double load_s, run_s, io_s;
    pm_llm_host_times(j->m, &load_s, &run_s, &io_s);
    printf("\n%s (%s, %u layers, %.1f M parameters, %.1f MiB of weights as %s) on %s\n", in->name, in->arch,
           in->n_layers, (double)in->param_count / 1e6, (double)in->weight_bytes / 1048576.0, j->wfmt_name,
           j->preset_name);
    printf("  %-28s %zu\n", "prompt tokens", j->n_prompt);
    printf("  %-28s %zu (stop: %s)\n", "generated tokens", j->teacher ? (size_t)0 : j->n_gen, j->stop);
    printf("  %-28s %.3f ms (simulated, %u-token prefill at %.0f MHz)\n", "time to first token", f->ttft_s * 1e3,
           (unsigned)f->pre.tokens, j->cfg.clock_mhz);
    printf("  %-28s %.1f tok/s (simulated)\n", "decode", f->decode_tok_s);
    printf("  %-28s %.1f tok/s; decode reaches %.3f of it\n", "DRAM roofline (decode)", f->roofline_tok_s,
           f->roofline_fraction);
    printf("  %-28s %.2f tok/s decode, %.2f tok/s prefill (host wall time)\n", "simulator speed", f->wall_tok_s,
           f->prefill_wall_tok_s);
    printf("  %-28s %.3f mJ (decode)\n", "energy per token", f->energy_j_per_token * 1e3);
    printf("  %-28s %.2f MB (decode)\n", "DRAM bytes per token", f->dram_bytes_per_token / 1e6);
    printf("  %-28s", "utilisation (decode)");
    for (int u = 0; u < PM_UNIT_COUNT; u++) printf(" %s %.3f", pm_unit_name((pm_unit)u), f->util[u]);
    printf("\n  %-28s load %.3f s, run %.3f s, param writes %.3f s\n", "host time in the simulator", load_s, run_s,
           io_s);
}

static void json_ids(FILE *o, const int32_t *ids, size_t n)
{
    fputc('[', o);
    for (size_t i = 0; i < n; i++) fprintf(o, "%s%d", i ? ", " : "", ids[i]);
    fputc(']', o);
}

static void json_num(FILE *o, const char *key, double v, bool comma)
{
    fprintf(o, "  \"%s\": ", key);
    pm_cli_json_number(o, v);
    fputs(comma ? ",\n" : "\n", o);
}

static void print_json(const run_job *j, const figures *f)
{
    FILE *o = stdout;
    const pm_llm_info *in = pm_llm_get_info(j->m);
    double load_s, run_s, io_s;
    pm_llm_host_times(j->m, &load_s, &run_s, &io_s);
    fputs("{\n  \"text\": ", o);
    pm_cli_json_string(o, j->text.data ? j->text.data : "");
    fprintf(o, ",\n  \"prompt_tokens\": %zu,\n  \"generated_tokens\": %zu,\n  \"prompt_ids\": ", j->n_prompt, j->n_gen);
    json_ids(o, j->prompt_ids, j->n_prompt);
    fputs(",\n  \"generated_ids\": ", o);
    json_ids(o, j->gen_ids, j->n_gen);
    if (j->teacher) {
        fputs(",\n  \"predicted_ids\": ", o);
        json_ids(o, j->predicted, j->n_prompt);
    }
    fputs(",\n  \"stop\": ", o);
    pm_cli_json_string(o, j->stop);
    fputs(",\n", o);
    json_num(o, "ttft_s", f->ttft_s, true);
    json_num(o, "prefill_s", f->pre.seconds_sim, true);
    json_num(o, "decode_s", f->dec.seconds_sim, true);
    json_num(o, "decode_tokens", (double)f->dec.tokens, true);
    json_num(o, "decode_tok_s", f->decode_tok_s, true);
    json_num(o, "roofline_tok_s", f->roofline_tok_s, true);
    json_num(o, "roofline_fraction", f->roofline_fraction, true);
    json_num(o, "wall_tok_s", f->wall_tok_s, true);
    json_num(o, "prefill_wall_tok_s", f->prefill_wall_tok_s, true);
    json_num(o, "energy_j_per_token", f->energy_j_per_token, true);
    json_num(o, "dram_bytes_per_token", f->dram_bytes_per_token, true);
    json_num(o, "decode_cycles", (double)f->dec.cycles, true);
    json_num(o, "prefill_cycles", (double)f->pre.cycles, true);
    fputs("  \"utilization\": {", o);
    for (int u = 0; u < PM_UNIT_COUNT; u++) {
        fprintf(o, "%s\"%s\": ", u ? ", " : "", pm_unit_name((pm_unit)u));
        pm_cli_json_number(o, f->util[u]);
    }
    fputs("},\n  \"host_s\": {\"load\": ", o);
    pm_cli_json_number(o, load_s);
    fputs(", \"run\": ", o);
    pm_cli_json_number(o, run_s);
    fputs(", \"param_writes\": ", o);
    pm_cli_json_number(o, io_s);
    fputs("},\n  \"model\": {\"path\": ", o);
    pm_cli_json_string(o, j->model_path);
    fputs(", \"name\": ", o);
    pm_cli_json_string(o, in->name);
    fputs(", \"arch\": ", o);
    pm_cli_json_string(o, in->arch);
    fprintf(o,
            ", \"n_layers\": %u, \"d_model\": %u, \"d_ff\": %u, \"n_heads\": %u, \"n_kv_heads\": %u, "
            "\"head_dim\": %u, \"vocab\": %u, \"ctx_train\": %u, \"tied_output\": %s, \"param_count\": %llu, "
            "\"weight_bytes\": %llu, \"max_ctx\": %u, \"prefill_chunk\": %u, \"decode_programs\": %u, "
            "\"prefill_programs\": %u},\n",
            in->n_layers, in->d_model, in->d_ff, in->n_heads, in->n_kv_heads, in->head_dim, in->vocab, in->ctx_train,
            in->tied_output ? "true" : "false", (unsigned long long)in->param_count,
            (unsigned long long)in->weight_bytes, pm_llm_max_ctx(j->m), pm_llm_prefill_chunk(j->m),
            pm_llm_program_count(j->m, false), pm_llm_program_count(j->m, true));
    fputs("  \"preset\": ", o);
    pm_cli_json_string(o, j->preset_name);
    fputs(",\n  \"wfmt\": ", o);
    pm_cli_json_string(o, j->wfmt_name);
    fprintf(o, ",\n  \"chat\": %s,\n  \"teacher_force\": %s,\n  \"seed\": %llu,\n", j->chat ? "true" : "false",
            j->teacher ? "true" : "false", (unsigned long long)j->seed);
    json_num(o, "temperature", j->temperature, true);
    json_num(o, "top_k", j->top_k, true);
    json_num(o, "top_p", j->top_p, false);
    fputs("}\n", o);
}

static pm_status write_logits(const run_job *j, pm_error *err)
{
    if (!j->logits_path) return PM_OK;
    uint64_t shape[2] = {j->n_steps, pm_llm_get_info(j->m)->vocab};
    uint8_t *bytes = NULL;
    size_t len = 0;
    pm_status st = pm_npy_build("<f4", shape, 2, j->logits ? (const void *)j->logits : (const void *)"",
                                sizeof(float) * shape[0] * shape[1], &bytes, &len, err);
    if (!st) st = pm_write_file_atomic(j->logits_path, bytes, len, err);
    free(bytes);
    return st;
}

int pm_cli_run(int argc, char **argv)
{
    run_job j;
    memset(&j, 0, sizeof j);
    if (!parse_job(argc, argv, &j)) {
        job_free(&j);
        return PM_EXIT_FAIL;
    }
    if (j.stop && strcmp(j.stop, "help") == 0) {
        job_free(&j);
        return PM_EXIT_OK;
    }
    pm_error err = {0};
    pm_status st = pm_llm_open(&j.cfg, j.model_path, &j.lo, &j.m, &err);
    if (!st) st = tokenize_prompt(&j, &err);
    if (!st && j.n_prompt > pm_llm_max_ctx(j.m))
        st = pm_error_set(&err, PM_ERR_INVALID, "the prompt is %zu tokens; the context holds %u (--max-ctx)", j.n_prompt,
                          pm_llm_max_ctx(j.m));
    if (!st && j.n_prompt == 0) st = pm_error_set(&err, PM_ERR_INVALID, "the prompt encodes to no tokens");
    stream_out so = {.on = !j.json && !j.teacher};
    if (!st && so.on) {
        /* The prompt first, so the answer reads in context. */
        fputs(j.prompt, stdout);
        fputs(j.chat ? "\n" : "", stdout);
        fflush(stdout);
        so.started = true;
    }
    if (!st) st = j.teacher ? teacher_force(&j, &err) : generate(&j, &so, &err);
    stream_end(&so);
    if (!st) st = write_logits(&j, &err);
    if (st) {
        int rc = pm_cli_fail_err(verb, &err);
        job_free(&j);
        return rc;
    }
    figures f;
    compute_figures(&j, &f);
    if (j.json) print_json(&j, &f);
    else print_table(&j, &f);
    job_free(&j);
    return PM_EXIT_OK;
}
