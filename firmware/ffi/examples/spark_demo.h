/* spark_demo.h: the generation loop shared by the host example and the Cortex-M firmware.
 * It does what `spark-sim generate --json` does, through the C API only, and computes the
 * logits digest (FNV-1a-64 over the little-endian bytes of every logit it is given). */
#ifndef SPARK_DEMO_H
#define SPARK_DEMO_H

#include <stdint.h>
#include <stdio.h>
#include "spark.h"

#define SPARK_DEMO_MAX_IDS 1024

typedef struct spark_demo_result {
    uint32_t prompt_ids[SPARK_DEMO_MAX_IDS];
    size_t n_prompt;
    uint32_t token_ids[SPARK_DEMO_MAX_IDS];
    size_t n_tokens;
    uint64_t digest;
    const char *stop; /* "tokens", "eos" or "context_full" */
} spark_demo_result;

/* Encode `prompt` (BOS first when the model has one and `bos` is set), run it token by
 * token, then sample up to `n_tokens` tokens. `model` is opened; `session` and `sampler`
 * are initialised. Returns SPARK_OK or the first failing status. */
spark_status_t spark_demo_generate(const spark_model_t *model, spark_session_t *session, spark_sampler_t *sampler,
                                 const char *prompt, int bos, size_t n_tokens, spark_demo_result *out);

/* Print the JSON line: prompt, seed, temperature, top_p, tokens, token_ids, logits_digest. */
void spark_demo_print_json(FILE *f, const char *prompt, const spark_sampler_config_t *cfg,
                           const spark_demo_result *r);

#endif
