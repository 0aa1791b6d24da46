/* Polymorph models layer: Llama-family language models from GGUF, run on the
 * simulated engine. pm_llm_open reads the graph from the GGUF metadata,
 * uploads the weights to device DRAM (in the model's own formats or in a
 * chosen device format), and compiles the prefill and decode programs once;
 * every token then runs those programs instruction by instruction on the
 * simulator. Sampling happens on the host. See docs/models.md. */
#ifndef POLYMORPH_LLM_H
#define POLYMORPH_LLM_H

#include "polymorph/base.h"
#include "polymorph/config.h"
#include "polymorph/gguf.h"
#include "polymorph/numerics.h"
#include "polymorph/runtime.h"
#include "polymorph/sim.h"
#include "polymorph/tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The graph read from the metadata (llama.* keys, or <arch>.* for another
 * Llama-family architecture name). */
typedef struct pm_llm_info {
    char arch[32];
    char name[128];
    uint32_t n_layers, d_model, d_ff, n_heads, n_kv_heads, head_dim, vocab, ctx_train;
    float rope_base, norm_eps;
    bool tied_output;      /* output.weight absent: token_embd is reused */
    uint64_t weight_bytes; /* device bytes of all weights as uploaded */
    uint64_t param_count;
} pm_llm_info;

typedef struct pm_llm_options {
    bool wfmt_native;      /* true: keep each tensor's own format (default) */
    pm_format wfmt;        /* else: re-encode every matrix to this format */
    uint32_t max_ctx;      /* 0: min(ctx_train, 2048) */
    uint32_t prefill_chunk;/* 0: chosen from SRAM size */
    unsigned threads;      /* host threads of the simulator; 0 = all cores */
} pm_llm_options;

void pm_llm_options_init(pm_llm_options *o);

typedef struct pm_llm pm_llm;

pm_status pm_llm_open(const pm_config *cfg, const char *gguf_path, const pm_llm_options *opts, pm_llm **out,
                      pm_error *err);
void pm_llm_close(pm_llm *m);

const pm_llm_info *pm_llm_get_info(const pm_llm *m);
const pm_tokenizer *pm_llm_tokenizer(const pm_llm *m);
const pm_gguf *pm_llm_gguf(const pm_llm *m);
pm_device *pm_llm_device(pm_llm *m);

/* Forget the context (position 0). */
void pm_llm_reset(pm_llm *m);
uint32_t pm_llm_position(const pm_llm *m);
/* Run tokens through the prefill programs (chunks), appending to the context;
 * afterwards the last token's logits and top-k are available. */
pm_status pm_llm_prefill(pm_llm *m, const int32_t *tokens, size_t n, pm_error *err);
/* One decode step: token at the current position. */
pm_status pm_llm_decode(pm_llm *m, int32_t token, pm_error *err);
/* The last step's logits (vocab floats, read back from device SRAM). */
pm_status pm_llm_logits(pm_llm *m, float *out, pm_error *err);
/* The last step's device top-k (k <= PM_LLM_TOPK_MAX), largest first. */
enum { PM_LLM_TOPK_MAX = 64 };
pm_status pm_llm_topk(pm_llm *m, uint32_t k, int32_t *ids, float *vals, pm_error *err);
/* Set how many candidates the device top-k produces (1 = argmax only;
 * rebuilds the small top-k program). */
pm_status pm_llm_set_topk(pm_llm *m, uint32_t k, pm_error *err);

/* Figures of what ran: per phase (prefill, decode). */
typedef struct pm_llm_phase_stats {
    uint64_t tokens;
    uint64_t cycles;          /* simulated engine cycles */
    double seconds_sim;       /* cycles at the modelled clock */
    double seconds_wall;      /* host time spent in the simulator */
    double energy_j;
    uint64_t dram_bytes;      /* read + written */
    double unit_busy[8];      /* busy cycles per pm unit (as pm_counters) */
} pm_llm_phase_stats;
void pm_llm_stats(const pm_llm *m, pm_llm_phase_stats *prefill, pm_llm_phase_stats *decode);
/* DRAM bytes one decode step must move at least (all weights + the KV cache
 * read at position pos): the roofline's numerator. */
uint64_t pm_llm_decode_min_bytes(const pm_llm *m, uint32_t pos);

/* Added by the runner (docs/models.md): the usable context (positions), the
 * prefill chunk (rows per prefill program), the number of layer programs of
 * a pass, a Chrome trace of the next decode step (program i of the step
 * writes path, then path.1, path.2, ...; NULL cancels), and the host wall
 * seconds spent loading programs, running them and writing the param block. */
uint32_t pm_llm_max_ctx(const pm_llm *m);
uint32_t pm_llm_prefill_chunk(const pm_llm *m);
uint32_t pm_llm_program_count(const pm_llm *m, bool prefill);
pm_status pm_llm_set_trace(pm_llm *m, const char *path, pm_error *err);
void pm_llm_host_times(const pm_llm *m, double *load_s, double *run_s, double *io_s);

/* Host sampling: greedy when temperature <= 0; else softmax(v / T) over the
 * candidates, cut to top_p mass (top_k bounds the candidates), drawn with a
 * seeded generator. */
typedef struct pm_sampler {
    float temperature;
    uint32_t top_k;
    float top_p;
    uint64_t state; /* xorshift state from the seed */
} pm_sampler;
void pm_sampler_init(pm_sampler *s, float temperature, uint32_t top_k, float top_p, uint64_t seed);
int32_t pm_sampler_pick(pm_sampler *s, const int32_t *ids, const float *vals, uint32_t n);

#ifdef __cplusplus
}
#endif
#endif
