/* main.c: the demo model on a Cortex-M4 through libspark.a. Prints one JSON line per
 * sampler setting over semihosting (the same fields as the host example, equal to
 * `spark-sim generate --json`'s token_ids and logits_digest) and exits with 0, or with
 * the failing spark_status_t. */
#include <stdint.h>
#include <stdio.h>

#include "spark.h"
#include "spark_demo.h"

#ifndef SPARK_ARENA_BYTES
#error "define SPARK_ARENA_BYTES: the host example prints it (generate MODEL --arena-size)"
#endif

extern const uint8_t spark_model_blob[], spark_model_blob_end[];
extern void initialise_monitor_handles(void);

static uint8_t arena[SPARK_ARENA_BYTES];
static spark_model_t model;
static spark_session_t session;
static spark_sampler_t sampler;
static spark_demo_result result;

static const char *const PROMPT = "Once upon a time";

static int run(const spark_sampler_config_t *cfg) {
    spark_status_t st = spark_session_init(&session, &model, arena, sizeof arena, 0);
    if (st == SPARK_OK) st = spark_sampler_init(&sampler, cfg);
    if (st == SPARK_OK) st = spark_demo_generate(&model, &session, &sampler, PROMPT, 1, 64, &result);
    if (st != SPARK_OK) {
        printf("error: %s\n", spark_status_str((int32_t)st));
        return (int)st;
    }
    spark_demo_print_json(stdout, PROMPT, cfg, &result);
    return 0;
}

int main(void) {
    initialise_monitor_handles();
    spark_status_t st = spark_model_open(&model, spark_model_blob, (size_t)(spark_model_blob_end - spark_model_blob));
    if (st != SPARK_OK) {
        printf("error: cannot open the model: %s\n", spark_status_str((int32_t)st));
        return (int)st;
    }
    size_t need;
    st = spark_arena_size(&model, 0, &need);
    if (st != SPARK_OK || need > sizeof arena) {
        printf("error: the arena holds %u bytes, the model needs %u\n", (unsigned)sizeof arena, (unsigned)need);
        return 1;
    }
    const spark_sampler_config_t greedy = {0.0f, 1.0f, 0}, sampled = {0.8f, 0.9f, 5};
    int rc = run(&greedy);
    if (rc == 0) rc = run(&sampled);
    fflush(stdout);
    return rc;
}
