/* generate.c: generate text with a .spark model through libspark.a.
 *
 *   generate MODEL.spark [--prompt TEXT] [-n N] [--temperature T] [--top-p P] [--seed S]
 *            [--no-bos] [--json] [--arena-size]
 *
 * With --json it prints one line whose token_ids and logits_digest equal those of
 * `spark-sim generate --json` for the same model, prompt and settings. --arena-size prints
 * the arena bytes a session over the model's full context needs, and exits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spark.h"
#include "spark_demo.h"

static int fail(const char *what, spark_status_t st) {
    fprintf(stderr, "generate: %s: %s\n", what, spark_status_str((int32_t)st));
    return 1;
}

int main(int argc, char **argv) {
    const char *path = NULL, *prompt = "";
    size_t n_tokens = 64;
    int json = 0, bos = 1, arena_only = 0;
    spark_sampler_config_t cfg = {0.0f, 1.0f, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--no-bos")) bos = 0;
        else if (!strcmp(a, "--arena-size")) arena_only = 1;
        else if (!strcmp(a, "--prompt") && v) prompt = argv[++i];
        else if ((!strcmp(a, "-n") || !strcmp(a, "--tokens")) && v) n_tokens = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--temperature") && v) cfg.temperature = strtof(argv[++i], NULL);
        else if (!strcmp(a, "--top-p") && v) cfg.top_p = strtof(argv[++i], NULL);
        else if (!strcmp(a, "--seed") && v) cfg.seed = strtoull(argv[++i], NULL, 10);
        else if (a[0] != '-' && !path) path = a;
        else {
            fprintf(stderr, "usage: %s MODEL.spark [--prompt TEXT] [-n N] [--temperature T] [--top-p P] "
                            "[--seed S] [--no-bos] [--json] [--arena-size]\n", argv[0]);
            return 2;
        }
    }
    if (!path || n_tokens == 0) {
        fprintf(stderr, "generate: give a model file and -n >= 1\n");
        return 2;
    }

    /* The model blob: read into memory aligned to SPARK_MODEL_ALIGN. */
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return 1; }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    size_t cap = ((size_t)len + SPARK_MODEL_ALIGN - 1) / SPARK_MODEL_ALIGN * SPARK_MODEL_ALIGN;
    uint8_t *blob = aligned_alloc(SPARK_MODEL_ALIGN, cap ? cap : SPARK_MODEL_ALIGN);
    if (!blob || fread(blob, 1, (size_t)len, f) != (size_t)len) { perror(path); return 1; }
    fclose(f);

    spark_model_t model;
    spark_status_t st = spark_model_open(&model, blob, (size_t)len);
    if (st != SPARK_OK) return fail("cannot open the model", st);
    size_t arena_len;
    st = spark_arena_size(&model, 0, &arena_len);
    if (st != SPARK_OK) return fail("arena size", st);
    if (arena_only) {
        printf("%zu\n", arena_len);
        return 0;
    }
    uint8_t *arena = malloc(arena_len);
    if (!arena) { perror("arena"); return 1; }
    spark_session_t session = {0};
    st = spark_session_init(&session, &model, arena, arena_len, 0);
    if (st != SPARK_OK) return fail("session", st);
    spark_sampler_t sampler;
    st = spark_sampler_init(&sampler, &cfg);
    if (st != SPARK_OK) return fail("sampler settings", st);

    static spark_demo_result r;
    st = spark_demo_generate(&model, &session, &sampler, prompt, bos, n_tokens, &r);
    if (st != SPARK_OK) return fail("generation", st);
    if (json) {
        spark_demo_print_json(stdout, prompt, &cfg, &r);
    } else {
        size_t n_bytes;
        st = spark_decode(&model, r.token_ids, r.n_tokens, NULL, 0, &n_bytes);
        if (st != SPARK_OK && st != SPARK_E_BUFFER_TOO_SMALL) return fail("decode", st);
        char *text = malloc(n_bytes + 1);
        if (!text) return 1;
        st = spark_decode(&model, r.token_ids, r.n_tokens, (uint8_t *)text, n_bytes, &n_bytes);
        if (st != SPARK_OK) return fail("decode", st);
        text[n_bytes] = 0;
        printf("%s%s\n", prompt, text);
        fprintf(stderr, "[%zu tokens, stop: %s, logits digest %016llx]\n", r.n_tokens, r.stop,
                (unsigned long long)r.digest);
        free(text);
    }
    free(arena);
    free(blob);
    return 0;
}
