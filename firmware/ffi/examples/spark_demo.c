/* spark_demo.c: see spark_demo.h. */
#include "spark_demo.h"

#include <string.h>

static void fnv_f32(uint64_t *h, const float *xs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &xs[i], sizeof bits);
        for (int b = 0; b < 4; b++) { /* little-endian byte order, whatever the host's */
            *h ^= (bits >> (8 * b)) & 0xffu;
            *h *= 0x00000100000001b3ull;
        }
    }
}

spark_status_t spark_demo_generate(const spark_model_t *model, spark_session_t *session, spark_sampler_t *sampler,
                                 const char *prompt, int bos, size_t n_tokens, spark_demo_result *out) {
    spark_model_info_t info;
    spark_status_t st = spark_model_info(model, &info);
    if (st != SPARK_OK) return st;
    out->digest = 0xcbf29ce484222325ull;
    out->n_prompt = 0;
    out->n_tokens = 0;
    out->stop = "tokens";
    size_t len = strlen(prompt);
    int add_bos = bos && info.bos_id != SPARK_NO_TOKEN;
    if (len + 1 > SPARK_DEMO_MAX_IDS) return SPARK_E_BUFFER_TOO_SMALL;
    st = spark_encode(model, (const uint8_t *)prompt, len, add_bos, out->prompt_ids, SPARK_DEMO_MAX_IDS,
                      &out->n_prompt);
    if (st != SPARK_OK) return st;
    if (out->n_prompt == 0) return SPARK_E_EMPTY_INPUT;
    if (n_tokens > SPARK_DEMO_MAX_IDS) n_tokens = SPARK_DEMO_MAX_IDS;

    const float *logits;
    size_t n_logits;
    for (size_t i = 0; i < out->n_prompt; i++) {
        st = spark_step(session, out->prompt_ids[i], &logits, &n_logits);
        if (st != SPARK_OK) return st;
        fnv_f32(&out->digest, logits, n_logits);
    }
    for (;;) {
        uint32_t next;
        st = spark_sample(sampler, session, &next);
        if (st != SPARK_OK) return st;
        out->token_ids[out->n_tokens++] = next;
        if (next == info.eos_id) { out->stop = "eos"; break; }
        if (out->n_tokens >= n_tokens) break;
        size_t pos, max_seq;
        st = spark_session_pos(session, &pos, &max_seq);
        if (st != SPARK_OK) return st;
        if (pos >= max_seq) { out->stop = "context_full"; break; }
        st = spark_step(session, next, &logits, &n_logits);
        if (st != SPARK_OK) return st;
        fnv_f32(&out->digest, logits, n_logits);
    }
    return SPARK_OK;
}

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

void spark_demo_print_json(FILE *f, const char *prompt, const spark_sampler_config_t *cfg,
                           const spark_demo_result *r) {
    fprintf(f, "{\"prompt\": ");
    json_string(f, prompt);
    fprintf(f, ", \"seed\": %llu, \"temperature\": %g, \"top_p\": %g, \"tokens\": %u, \"token_ids\": [",
            (unsigned long long)cfg->seed, (double)cfg->temperature, (double)cfg->top_p, (unsigned)r->n_tokens);
    for (size_t i = 0; i < r->n_tokens; i++) fprintf(f, "%s%u", i ? ", " : "", (unsigned)r->token_ids[i]);
    fprintf(f, "], \"stop\": \"%s\", \"logits_digest\": \"%016llx\"}\n", r->stop, (unsigned long long)r->digest);
}
