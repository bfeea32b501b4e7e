/* test_api.c: the C API's contract, from C. Prints "N passed, M failed" and exits non-zero
 * on any failure.
 *
 *   test_api MODEL.spark GREEDY_DIGEST
 *
 * GREEDY_DIGEST is `spark-sim generate --json`'s logits_digest for the prompt
 * "Once upon a time", 64 tokens, greedy. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spark.h"
#include "spark_demo.h"

static int passed, failed;

#define CHECK(cond, what)                                                \
    do {                                                                 \
        if (cond) {                                                      \
            passed++;                                                    \
        } else {                                                         \
            failed++;                                                    \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, what); \
        }                                                                \
    } while (0)

#define EXPECT(call, status) CHECK((call) == (status), #call " == " #status)

static uint8_t *blob;     /* the model, 64-aligned */
static size_t blob_len;
static spark_model_t model; /* opened from blob */
static spark_model_info_t info;

static uint8_t *aligned_copy(const uint8_t *src, size_t len, size_t offset) {
    uint8_t *raw = aligned_alloc(SPARK_MODEL_ALIGN, (len + offset + SPARK_MODEL_ALIGN) / SPARK_MODEL_ALIGN * SPARK_MODEL_ALIGN);
    if (!raw) exit(2);
    memset(raw, 0, (len + offset + SPARK_MODEL_ALIGN) / SPARK_MODEL_ALIGN * SPARK_MODEL_ALIGN);
    memcpy(raw + offset, src, len);
    return raw;
}

static void test_library(void) {
    CHECK(spark_version() && strlen(spark_version()) > 0, "version string");
    for (int s = 0; s <= 19; s++) CHECK(spark_status_str(s) && strcmp(spark_status_str(s), "unknown status") != 0, "status string");
    CHECK(strcmp(spark_status_str(-1), "unknown status") == 0, "unknown negative status");
    CHECK(strcmp(spark_status_str(1000), "unknown status") == 0, "unknown large status");
    CHECK(spark_model_size() == sizeof(spark_model_t), "model size");
    CHECK(spark_session_size() == sizeof(spark_session_t), "session size");
    CHECK(spark_sampler_size() == sizeof(spark_sampler_t), "sampler size");
}

static void test_model_open(void) {
    spark_model_t m;
    EXPECT(spark_model_open(NULL, blob, blob_len), SPARK_E_NULL);
    EXPECT(spark_model_open(&m, NULL, blob_len), SPARK_E_NULL);
    EXPECT(spark_model_info(&m, &info), SPARK_E_NOT_INITIALIZED); /* the failed open left it closed */
    EXPECT(spark_model_info(NULL, &info), SPARK_E_NULL);
    EXPECT(spark_model_open(&model, blob, blob_len), SPARK_OK);
    EXPECT(spark_model_info(&model, NULL), SPARK_E_NULL);
    EXPECT(spark_model_info(&model, &info), SPARK_OK);
    CHECK(info.vocab_size > 0 && info.n_layers > 0 && info.max_seq_len > 0, "model info");
    CHECK(info.has_tokenizer == 1, "demo model has a tokenizer");

    /* Misaligned blob: every offset 1..63 within the required alignment. */
    for (size_t off = 1; off < SPARK_MODEL_ALIGN; off += 7) {
        uint8_t *mis = aligned_copy(blob, blob_len, off);
        EXPECT(spark_model_open(&m, mis + off, blob_len), SPARK_E_MISALIGNED);
        free(mis);
    }

    /* Truncated blobs. */
    size_t cuts[] = {0, 3, 8, 16, 64, 200, 1000, blob_len / 2, blob_len - 64, blob_len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        spark_status_t st = spark_model_open(&m, blob, cuts[i]);
        CHECK(st == SPARK_E_MODEL_TRUNCATED || st == SPARK_E_MODEL_CORRUPT, "truncated blob rejected");
        EXPECT(spark_model_info(&m, &info), SPARK_E_NOT_INITIALIZED);
    }
    /* Bytes after the end of the file are an error too. */
    uint8_t *longer = aligned_copy(blob, blob_len, 0);
    EXPECT(spark_model_open(&m, longer, blob_len + 1), SPARK_E_MODEL_CORRUPT);
    free(longer);

    /* Corrupted blobs: one flipped byte at several offsets. */
    uint8_t *bad = aligned_copy(blob, blob_len, 0);
    size_t offs[] = {0, 1, 3, 4, 5, 8, 12, 20, 40, 100, 300, blob_len / 3, blob_len / 2, blob_len - 100, blob_len - 1};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        bad[offs[i]] ^= 0x5a;
        spark_status_t st = spark_model_open(&m, bad, blob_len);
        CHECK(st == SPARK_E_MODEL_FORMAT || st == SPARK_E_MODEL_CORRUPT || st == SPARK_E_MODEL_TRUNCATED,
              "corrupted blob rejected");
        if (offs[i] == 0) CHECK(st == SPARK_E_MODEL_FORMAT, "bad magic is a format error");
        bad[offs[i]] ^= 0x5a;
    }
    EXPECT(spark_model_open(&m, bad, blob_len), SPARK_OK); /* restored */
    free(bad);
}

static void test_session_init(void) {
    size_t need = 0;
    EXPECT(spark_arena_size(NULL, 0, &need), SPARK_E_NULL);
    EXPECT(spark_arena_size(&model, 0, NULL), SPARK_E_NULL);
    EXPECT(spark_arena_size(&model, info.max_seq_len + 1, &need), SPARK_E_BAD_MAX_SEQ);
    EXPECT(spark_arena_size(&model, 0, &need), SPARK_OK);
    size_t need_full = need;
    EXPECT(spark_arena_size(&model, info.max_seq_len, &need), SPARK_OK);
    CHECK(need == need_full, "max_seq 0 means the full context");
    /* spark_arena_size_threads: 0 and 1 thread are spark_arena_size; more threads, more
     * head slots, up to the head count. */
    size_t need_t = 0, prev = need_full;
    EXPECT(spark_arena_size_threads(NULL, 0, 2, &need_t), SPARK_E_NULL);
    EXPECT(spark_arena_size_threads(&model, 0, 2, NULL), SPARK_E_NULL);
    EXPECT(spark_arena_size_threads(&model, info.max_seq_len + 1, 2, &need_t), SPARK_E_BAD_MAX_SEQ);
    for (uint32_t t = 0; t <= 2; t++) {
        EXPECT(spark_arena_size_threads(&model, 0, t, &need_t), SPARK_OK);
        if (t <= 1) CHECK(need_t == need_full, "0 or 1 thread: spark_arena_size");
        else CHECK(need_t > prev, "a second thread adds a head slot");
        prev = need_t;
    }
    EXPECT(spark_arena_size_threads(&model, 0, 100000, &need_t), SPARK_OK);
    CHECK(need_t >= prev, "slots are capped, never fewer");
    uint8_t *arena = malloc(need + 16);
    const float *logits = NULL;
    size_t n_logits = 0;

    spark_session_t s = {0};
    EXPECT(spark_step(&s, 1, &logits, &n_logits), SPARK_E_NOT_INITIALIZED); /* before init */
    EXPECT(spark_session_reset(&s), SPARK_E_NOT_INITIALIZED);
    EXPECT(spark_step(NULL, 1, &logits, &n_logits), SPARK_E_NULL);
    EXPECT(spark_session_init(NULL, &model, arena, need, 0), SPARK_E_NULL);
    EXPECT(spark_session_init(&s, NULL, arena, need, 0), SPARK_E_NULL);
    EXPECT(spark_session_init(&s, &model, NULL, need, 0), SPARK_E_NULL);
    EXPECT(spark_session_init(&s, &model, arena, need - 1, 0), SPARK_E_ARENA_TOO_SMALL); /* one byte short */
    EXPECT(spark_step(&s, 1, &logits, &n_logits), SPARK_E_NOT_INITIALIZED);              /* after a failed init */
    EXPECT(spark_session_init(&s, &model, arena, need, info.max_seq_len + 1), SPARK_E_BAD_MAX_SEQ);
    /* Any arena alignment works with exactly spark_arena_size bytes. */
    for (size_t off = 0; off < 16; off += 3) {
        EXPECT(spark_session_init(&s, &model, arena + off, need, 0), SPARK_OK);
        EXPECT(spark_step(&s, 1, &logits, &n_logits), SPARK_OK);
    }
    EXPECT(spark_session_init(&s, &model, arena, need, 0), SPARK_OK);
    EXPECT(spark_step(&s, 1, NULL, &n_logits), SPARK_E_NULL);
    EXPECT(spark_step(&s, 1, &logits, NULL), SPARK_E_NULL);
    EXPECT(spark_step(&s, info.vocab_size, &logits, &n_logits), SPARK_E_INVALID_TOKEN);
    EXPECT(spark_step(&s, 0xffffffffu, &logits, &n_logits), SPARK_E_INVALID_TOKEN);
    size_t pos = 99, max_seq = 0;
    EXPECT(spark_session_pos(&s, &pos, &max_seq), SPARK_OK);
    CHECK(pos == 0 && max_seq == info.max_seq_len, "rejected tokens do not advance");
    uint32_t ids[3] = {1, 2, info.vocab_size};
    EXPECT(spark_prefill(&s, ids, 3, &logits, &n_logits), SPARK_E_INVALID_TOKEN);
    EXPECT(spark_prefill(&s, NULL, 3, &logits, &n_logits), SPARK_E_NULL);
    EXPECT(spark_prefill(&s, ids, 0, &logits, &n_logits), SPARK_E_EMPTY_INPUT);
    EXPECT(spark_session_pos(&s, &pos, &max_seq), SPARK_OK);
    CHECK(pos == 0, "prefill validates every id before running any");
    EXPECT(spark_prefill(&s, ids, 2, &logits, &n_logits), SPARK_OK);
    CHECK(logits != NULL && n_logits == info.vocab_size, "prefill logits");
    EXPECT(spark_session_pos(&s, &pos, &max_seq), SPARK_OK);
    CHECK(pos == 2, "prefill advances");
    spark_layer_stats_t st;
    EXPECT(spark_layer_stats(&s, 0, &st), SPARK_OK);
    CHECK(st.tokens == 2 && st.ffn_active_max > 0 && st.attn_queries > 0, "layer stats count");
    EXPECT(spark_layer_stats(&s, info.n_layers, &st), SPARK_E_INVALID_ARGUMENT);
    EXPECT(spark_layer_stats(&s, 0, NULL), SPARK_E_NULL);
    EXPECT(spark_session_reset(&s), SPARK_OK);
    EXPECT(spark_layer_stats(&s, 0, &st), SPARK_OK);
    CHECK(st.tokens == 0, "reset clears the statistics");
    free(arena);

    /* Context full: a session of 4 tokens. */
    EXPECT(spark_arena_size(&model, 4, &need), SPARK_OK);
    CHECK(need < need_full, "a shorter context needs less arena");
    arena = malloc(need);
    EXPECT(spark_session_init(&s, &model, arena, need, 4), SPARK_OK);
    for (uint32_t t = 0; t < 4; t++) EXPECT(spark_step(&s, t + 1, &logits, &n_logits), SPARK_OK);
    EXPECT(spark_step(&s, 1, &logits, &n_logits), SPARK_E_CONTEXT_FULL);
    EXPECT(spark_prefill(&s, ids, 1, &logits, &n_logits), SPARK_E_CONTEXT_FULL);
    EXPECT(spark_session_reset(&s), SPARK_OK);
    EXPECT(spark_prefill(&s, ids, 2, &logits, &n_logits), SPARK_OK);
    free(arena);
}

static void test_tokenizer(void) {
    const char *text = "hello world";
    size_t len = strlen(text), n = 0;
    uint32_t ids[64];
    EXPECT(spark_encode(&model, (const uint8_t *)text, len, true, ids, 3, &n), SPARK_E_BUFFER_TOO_SMALL);
    CHECK(n == len + 1, "encode reports the needed capacity (with BOS)");
    EXPECT(spark_encode(&model, (const uint8_t *)text, len, false, ids, 3, &n), SPARK_E_BUFFER_TOO_SMALL);
    CHECK(n == len, "encode reports the needed capacity");
    EXPECT(spark_encode(&model, NULL, len, false, ids, 64, &n), SPARK_E_NULL);
    EXPECT(spark_encode(&model, (const uint8_t *)text, len, false, NULL, 64, &n), SPARK_E_NULL);
    EXPECT(spark_encode(&model, (const uint8_t *)text, len, false, ids, 64, NULL), SPARK_E_NULL);
    EXPECT(spark_encode(NULL, (const uint8_t *)text, len, false, ids, 64, &n), SPARK_E_NULL);
    EXPECT(spark_encode(&model, (const uint8_t *)text, len, false, ids, 64, &n), SPARK_OK);
    CHECK(n > 0 && n <= len, "encode length");
    size_t nb = 0;
    EXPECT(spark_decode(&model, ids, n, NULL, 0, &nb), SPARK_E_BUFFER_TOO_SMALL);
    CHECK(nb == len, "decode size query");
    char out[64];
    EXPECT(spark_decode(&model, ids, n, (uint8_t *)out, sizeof out, &nb), SPARK_OK);
    CHECK(nb == len && memcmp(out, text, len) == 0, "decode round trip");
    uint32_t bad = info.vocab_size;
    EXPECT(spark_decode(&model, &bad, 1, (uint8_t *)out, sizeof out, &nb), SPARK_E_INVALID_TOKEN);
    EXPECT(spark_decode(&model, ids, n, (uint8_t *)out, sizeof out, NULL), SPARK_E_NULL);
    EXPECT(spark_encode(&model, (const uint8_t *)"", 0, true, ids, 1, &n), SPARK_OK);
    CHECK(n == 1 && ids[0] == info.bos_id, "empty text with BOS");
}

static int stop_after_3(void *user, uint32_t token) {
    size_t *count = user;
    (void)token;
    return ++*count >= 3;
}

static uint32_t collected[256];
static int collect(void *user, uint32_t token) {
    size_t *count = user;
    collected[(*count)++ % 256] = token;
    return 0;
}

static void test_sampling(const char *greedy_digest) {
    spark_sampler_t smp = {0};
    spark_sampler_config_t bad[] = {
        {-1.0f, 1.0f, 0}, {NAN, 1.0f, 0}, {INFINITY, 1.0f, 0}, {-0.001f, 0.9f, 0},
        {0.8f, 0.0f, 0},  {0.8f, -0.1f, 0}, {0.8f, 1.5f, 0}, {0.8f, NAN, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) EXPECT(spark_sampler_init(&smp, &bad[i]), SPARK_E_BAD_SAMPLER);
    EXPECT(spark_sampler_init(NULL, &bad[0]), SPARK_E_NULL);
    EXPECT(spark_sampler_init(&smp, NULL), SPARK_E_NULL);

    size_t need;
    EXPECT(spark_arena_size(&model, 0, &need), SPARK_OK);
    uint8_t *arena = malloc(need);
    spark_session_t s = {0};
    EXPECT(spark_session_init(&s, &model, arena, need, 0), SPARK_OK);
    uint32_t tok;
    EXPECT(spark_sample(&smp, &s, &tok), SPARK_E_NOT_INITIALIZED); /* after a failed sampler init */
    spark_sampler_config_t greedy = {0.0f, 1.0f, 0};
    EXPECT(spark_sampler_init(&smp, &greedy), SPARK_OK);
    EXPECT(spark_sample(&smp, &s, &tok), SPARK_E_NO_LOGITS);
    EXPECT(spark_sample(&smp, &s, NULL), SPARK_E_NULL);

    /* Full greedy run: the digest equals spark-sim's. */
    static spark_demo_result r;
    EXPECT(spark_demo_generate(&model, &s, &smp, "Once upon a time", 1, 64, &r), SPARK_OK);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)r.digest);
    CHECK(strcmp(hex, greedy_digest) == 0, "greedy digest equals spark-sim's");
    if (strcmp(hex, greedy_digest) != 0) fprintf(stderr, "  digest %s, spark-sim %s\n", hex, greedy_digest);

    /* spark_generate draws the same tokens as the step/sample loop (sampled settings). */
    spark_sampler_config_t cfg = {0.8f, 0.9f, 5};
    EXPECT(spark_session_reset(&s), SPARK_OK);
    EXPECT(spark_sampler_init(&smp, &cfg), SPARK_OK);
    EXPECT(spark_demo_generate(&model, &s, &smp, "Once upon a time", 1, 40, &r), SPARK_OK);
    EXPECT(spark_session_reset(&s), SPARK_OK);
    EXPECT(spark_sampler_init(&smp, &cfg), SPARK_OK);
    size_t count = 0, n_gen = 0;
    EXPECT(spark_generate(&s, &smp, r.prompt_ids, r.n_prompt, 40, collect, &count, &n_gen), SPARK_OK);
    CHECK(n_gen == r.n_tokens && count == n_gen && memcmp(collected, r.token_ids, n_gen * 4) == 0,
          "spark_generate equals the step/sample loop");
    /* The callback stops early. */
    EXPECT(spark_session_reset(&s), SPARK_OK);
    count = 0;
    EXPECT(spark_generate(&s, &smp, r.prompt_ids, r.n_prompt, 40, stop_after_3, &count, &n_gen), SPARK_OK);
    CHECK(n_gen == 3 && count == 3, "callback stops generation");
    EXPECT(spark_generate(&s, &smp, NULL, 0, 5, NULL, NULL, NULL), SPARK_E_NULL);
    EXPECT(spark_generate(&s, NULL, NULL, 0, 5, NULL, NULL, &n_gen), SPARK_E_NULL);
    /* Generation stops at the end of the context. */
    size_t ctx = r.n_prompt + 3;
    EXPECT(spark_arena_size(&model, ctx, &need), SPARK_OK);
    uint8_t *small = malloc(need);
    EXPECT(spark_session_init(&s, &model, small, need, ctx), SPARK_OK);
    EXPECT(spark_generate(&s, &smp, r.prompt_ids, r.n_prompt, 100, NULL, NULL, &n_gen), SPARK_OK);
    size_t pos, max_seq;
    EXPECT(spark_session_pos(&s, &pos, &max_seq), SPARK_OK);
    CHECK(pos == ctx && n_gen == 4, "generation stops when the context is full");
    const float *logits;
    size_t n_logits;
    EXPECT(spark_step(&s, 1, &logits, &n_logits), SPARK_E_CONTEXT_FULL);
    free(small);
    free(arena);
}

/* A test executor: per call, `threads` threads (the caller's among them) take chunk
 * indices from a shared counter, so the chunks run concurrently and in whatever order the
 * scheduler gives. Counts the calls and chunks it ran. */
typedef struct {
    int threads;
    atomic_size_t calls, chunks;
} test_pool;

typedef struct {
    atomic_size_t next;
    size_t n;
    spark_run_chunk_fn run;
    void *job;
    test_pool *pool;
} pool_call;

static void *pool_worker(void *arg) {
    pool_call *c = arg;
    for (size_t i; (i = atomic_fetch_add(&c->next, 1)) < c->n;) {
        c->run(c->job, i);
        atomic_fetch_add(&c->pool->chunks, 1);
    }
    return NULL;
}

static void pool_exec(void *ctx, size_t n_chunks, spark_run_chunk_fn run, void *job) {
    test_pool *p = ctx;
    pool_call c = {.n = n_chunks, .run = run, .job = job, .pool = p};
    atomic_init(&c.next, 0);
    atomic_fetch_add(&p->calls, 1);
    pthread_t t[8];
    int k = p->threads - 1;
    for (int i = 0; i < k; i++)
        if (pthread_create(&t[i], NULL, pool_worker, &c) != 0) exit(2);
    pool_worker(&c);
    for (int i = 0; i < k; i++) pthread_join(t[i], NULL);
}

/* Runs the chunks last to first on the caller's thread. */
static void reverse_exec(void *ctx, size_t n_chunks, spark_run_chunk_fn run, void *job) {
    atomic_fetch_add(&((test_pool *)ctx)->calls, 1);
    for (size_t i = n_chunks; i-- > 0;) run(job, i);
}

/* spark_session_set_executor: greedy decoding with 2, 3 and 4 threads, and with the
 * chunks in reverse order, gives spark-sim's digest (over an arena with a head slot for
 * each of 4 threads). */
static void test_executor(const char *greedy_digest) {
    size_t need;
    EXPECT(spark_arena_size_threads(&model, 0, 4, &need), SPARK_OK);
    uint8_t *arena = malloc(need);
    spark_session_t s = {0};
    EXPECT(spark_session_set_executor(NULL, pool_exec, NULL, 2), SPARK_E_NULL);
    EXPECT(spark_session_set_executor(&s, pool_exec, NULL, 2), SPARK_E_NOT_INITIALIZED);
    spark_sampler_t smp = {0};
    spark_sampler_config_t greedy = {0.0f, 1.0f, 0};
    static spark_demo_result r;
    for (int mode = 0; mode < 5; mode++) {
        static test_pool pool;
        pool.threads = mode < 3 ? mode + 2 : 2;
        atomic_init(&pool.calls, 0);
        atomic_init(&pool.chunks, 0);
        EXPECT(spark_session_init(&s, &model, arena, need, 0), SPARK_OK);
        EXPECT(spark_sampler_init(&smp, &greedy), SPARK_OK);
        if (mode < 3) {
            EXPECT(spark_session_set_executor(&s, pool_exec, &pool, (uint32_t)pool.threads), SPARK_OK);
        } else if (mode == 3) {
            EXPECT(spark_session_set_executor(&s, reverse_exec, &pool, 2), SPARK_OK);
        } else { /* set, then back to sequential */
            EXPECT(spark_session_set_executor(&s, pool_exec, &pool, 2), SPARK_OK);
            EXPECT(spark_session_set_executor(&s, NULL, NULL, 0), SPARK_OK);
        }
        EXPECT(spark_demo_generate(&model, &s, &smp, "Once upon a time", 1, 64, &r), SPARK_OK);
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)r.digest);
        CHECK(strcmp(hex, greedy_digest) == 0, "greedy digest with an executor equals spark-sim's");
        if (mode < 4) {
            CHECK(atomic_load(&pool.calls) > 0, "the executor ran products");
        } else {
            CHECK(atomic_load(&pool.calls) == 0, "no executor: sequential");
        }
        if (mode < 3) CHECK(atomic_load(&pool.chunks) > atomic_load(&pool.calls), "several chunks per product");
        printf("executor mode %d (%d threads): %zu products, %zu chunks, digest %s\n", mode, pool.threads,
               (size_t)atomic_load(&pool.calls), (size_t)atomic_load(&pool.chunks), hex);
    }
    free(arena);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.spark GREEDY_DIGEST\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    fseek(f, 0, SEEK_END);
    blob_len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *tmp = malloc(blob_len);
    if (!tmp || fread(tmp, 1, blob_len, f) != blob_len) return 2;
    fclose(f);
    blob = aligned_copy(tmp, blob_len, 0);
    free(tmp);

    test_library();
    test_model_open();
    test_session_init();
    test_tokenizer();
    test_sampling(argv[2]);
    test_executor(argv[2]);
    free(blob);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
