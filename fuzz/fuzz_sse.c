/* libFuzzer target for the text/event-stream parser. The input is 8 bytes that seed where the
 * stream is cut and the event size bound, then the stream. It is parsed three times: at once,
 * in pseudo-random pieces and a byte at a time; the events and the ending must be the same, and
 * every event must respect the bounds. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/sse.h"

#define FUZZ_SSE_INPUT_MAX (64 * 1024)
#define FUZZ_SSE_RECORDS_MAX 8192
#define FUZZ_SSE_SEED_BYTES 8

struct fuzz_sse_outcome {
    uint64_t records[FUZZ_SSE_RECORDS_MAX];
    size_t count;
    int result;
    const char *message;
    uint32_t max_event_bytes;
};

static struct fuzz_sse_outcome fuzz_sse_outcomes[3];

static void fuzz_sse_check(bool condition, const char *what)
{
    if (!condition) {
        fprintf(stderr, "fuzz_sse: %s\n", what);
        abort();
    }
}

static uint64_t fuzz_sse_hash(uint64_t hash, const void *data, size_t length)
{
    const unsigned char *bytes = data;
    for (size_t i = 0; i < length; i++) {
        hash = (hash ^ bytes[i]) * UINT64_C(0x100000001b3);
    }
    return hash;
}

static bool fuzz_sse_on_event(void *context, const struct sse_event *event)
{
    struct fuzz_sse_outcome *outcome = context;
    fuzz_sse_check(event->data_length <= outcome->max_event_bytes, "data over bound");
    fuzz_sse_check(event->type_length <= SSE_EVENT_TYPE_MAX_BYTES, "type over bound");
    fuzz_sse_check(event->id_length <= SSE_ID_MAX_BYTES, "id over bound");
    fuzz_sse_check(event->data[event->data_length] == '\0', "data not terminated");
    fuzz_sse_check(event->type[event->type_length] == '\0', "type not terminated");
    fuzz_sse_check(memchr(event->id, '\0', event->id_length) == NULL, "id with NUL");
    fuzz_sse_check(memchr(event->type, '\n', event->type_length) == NULL, "type with LF");
    uint64_t numbers[4] = {event->data_length, event->type_length, event->id_length,
                           event->has_retry ? event->retry_ms : UINT64_MAX};
    uint64_t hash = fuzz_sse_hash(UINT64_C(0xcbf29ce484222325), numbers, sizeof(numbers));
    hash = fuzz_sse_hash(hash, event->data, event->data_length);
    hash = fuzz_sse_hash(hash, event->type, event->type_length);
    hash = fuzz_sse_hash(hash, event->id, event->id_length);
    fuzz_sse_check(outcome->count < FUZZ_SSE_RECORDS_MAX, "records");
    outcome->records[outcome->count++] = hash;
    return true;
}

static uint64_t fuzz_sse_random(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

static void fuzz_sse_run(const uint8_t *data, size_t size, uint64_t seed, int mode,
                         struct fuzz_sse_outcome *outcome)
{
    struct sse_parser parser;
    outcome->max_event_bytes = 1 + (uint32_t)(seed % 300);
    fuzz_sse_check(sse_parser_init(&parser, outcome->max_event_bytes) == 0, "init");
    outcome->count = 0;
    outcome->result = 0;
    outcome->message = NULL;
    uint64_t random = seed | 1;
    size_t fed = 0;
    while (outcome->result == 0 && fed < size) {
        size_t piece = mode == 2 ? 1 : size - fed;
        if (mode == 1) {
            uint64_t draw = fuzz_sse_random(&random);
            size_t bound = draw % 3 == 0 ? 1 : (draw % 3 == 1 ? 16 : 512);
            piece = 1 + (size_t)((draw >> 8) % bound);
            piece = piece < size - fed ? piece : size - fed;
        }
        const char *message = NULL;
        outcome->result = sse_parser_feed(&parser, (const char *)data + fed, piece,
                                          fuzz_sse_on_event, outcome, &message);
        fuzz_sse_check(outcome->result == 0 || outcome->result == -1, "result");
        fuzz_sse_check((outcome->result == -1) == (message != NULL), "message on error only");
        outcome->message = message;
        fed += piece;
    }
    sse_parser_free(&parser);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < FUZZ_SSE_SEED_BYTES || size - FUZZ_SSE_SEED_BYTES > FUZZ_SSE_INPUT_MAX) {
        return 0;
    }
    uint64_t seed = 0;
    memcpy(&seed, data, sizeof(seed));
    const uint8_t *stream = data + FUZZ_SSE_SEED_BYTES;
    size_t length = size - FUZZ_SSE_SEED_BYTES;
    for (int mode = 0; mode < 3; mode++) {
        fuzz_sse_run(stream, length, seed, mode, &fuzz_sse_outcomes[mode]);
    }
    for (int run = 1; run < 3; run++) {
        const struct fuzz_sse_outcome *whole = &fuzz_sse_outcomes[0];
        const struct fuzz_sse_outcome *other = &fuzz_sse_outcomes[run];
        fuzz_sse_check(whole->count == other->count, "event count differs by split");
        for (size_t i = 0; i < whole->count; i++) {
            fuzz_sse_check(whole->records[i] == other->records[i], "event differs by split");
        }
        fuzz_sse_check(whole->result == other->result, "result differs by split");
        fuzz_sse_check(whole->message == other->message, "error differs by split");
    }
    return 0;
}
