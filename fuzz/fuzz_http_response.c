/* libFuzzer target for the response head parser and the body decoder (Content-Length,
 * chunked, until close). The input is 8 bytes that seed where the stream is cut into reads,
 * 1 byte of flags (bit 0: the request was HEAD), then a connection's byte stream holding one
 * or more responses. The stream is framed three times, as a client reads it: at once, in
 * pseudo-random pieces, and a byte at a time; every run must yield the same heads, the same
 * decoded bodies and the same ending. Limits are small so that every limit is reached. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/http_response_parse.h"

#define FUZZ_HTTP_RESPONSE_INPUT_MAX (32 * 1024)
#define FUZZ_HTTP_RESPONSE_RECORDS_MAX 1024
#define FUZZ_HTTP_RESPONSE_PREFIX_BYTES 9

static const struct http_response_limits fuzz_http_response_limits = {
    .max_status_line_bytes = 64,
    .max_header_bytes = 300,
    .max_headers = 6,
    .max_body_bytes = 400,
};

enum fuzz_http_response_mode {
    FUZZ_HTTP_RESPONSE_WHOLE,
    FUZZ_HTTP_RESPONSE_RANDOM,
    FUZZ_HTTP_RESPONSE_BYTES,
};

struct fuzz_http_response_outcome {
    uint64_t records[FUZZ_HTTP_RESPONSE_RECORDS_MAX];
    size_t count;
    int ending; /* 0 partial head, 1 body cut by EOF accepted, 2 error */
    const char *message;
};

struct fuzz_http_response_run {
    char work[FUZZ_HTTP_RESPONSE_INPUT_MAX];
    size_t start;
    size_t length;
    bool in_body;
    bool no_body;
    uint64_t body_hash;
    struct http_response_parsed response;
    struct http_response_body body;
};

static struct fuzz_http_response_outcome fuzz_http_response_outcomes[3];
static struct fuzz_http_response_run fuzz_http_response_state;

static void fuzz_http_response_check(bool condition, const char *what)
{
    if (!condition) {
        fprintf(stderr, "fuzz_http_response: %s\n", what);
        abort();
    }
}

static uint64_t fuzz_http_response_hash(uint64_t hash, const void *data, size_t length)
{
    const unsigned char *bytes = data;
    for (size_t i = 0; i < length; i++) {
        hash = (hash ^ bytes[i]) * UINT64_C(0x100000001b3);
    }
    return hash;
}

static uint64_t fuzz_http_response_digest(const struct http_response_parsed *response)
{
    const struct http_response_limits *limits = &fuzz_http_response_limits;
    fuzz_http_response_check(response->status >= 100 && response->status <= 999, "status");
    fuzz_http_response_check(response->header_count <= limits->max_headers, "header count");
    fuzz_http_response_check(response->framing != HTTP_RESPONSE_FRAMING_CLOSE ||
                                 !response->keep_alive,
                             "keep-alive with a body delimited by close");
    fuzz_http_response_check(response->content_length <= limits->max_body_bytes, "length");
    uint64_t fields[5] = {(uint64_t)response->status, (uint64_t)response->version_minor,
                          (uint64_t)response->framing, response->content_length,
                          (uint64_t)response->keep_alive << 1 | response->event_stream};
    uint64_t hash = fuzz_http_response_hash(UINT64_C(0xcbf29ce484222325), fields, sizeof(fields));
    hash = fuzz_http_response_hash(hash, response->reason.base, response->reason.length);
    for (uint32_t i = 0; i < response->header_count; i++) {
        const struct http_header *header = &response->headers[i];
        hash = fuzz_http_response_hash(hash, header->name.base, header->name.length);
        hash = fuzz_http_response_hash(hash, ":", 1);
        hash = fuzz_http_response_hash(hash, header->value.base, header->value.length);
    }
    return hash;
}

static void fuzz_http_response_record(struct fuzz_http_response_outcome *outcome, uint64_t value)
{
    fuzz_http_response_check(outcome->count < FUZZ_HTTP_RESPONSE_RECORDS_MAX, "records");
    outcome->records[outcome->count++] = value;
}

static bool fuzz_http_response_fail(struct fuzz_http_response_outcome *outcome,
                                    const struct http_error *err)
{
    fuzz_http_response_check(err->status == HTTP_RESPONSE_PARSE_STATUS, "error status");
    fuzz_http_response_check(err->message != NULL && err->message[0] != '\0', "message");
    outcome->ending = 2;
    outcome->message = err->message;
    return false;
}

/* Frames as much of the buffered bytes as possible; false once the stream failed. */
static bool fuzz_http_response_drain(struct fuzz_http_response_run *run,
                                     struct fuzz_http_response_outcome *outcome)
{
    for (;;) {
        struct http_error err = {0, NULL};
        char *data = run->work + run->start;
        size_t available = run->length - run->start;
        if (!run->in_body) {
            int head = http_response_parse_head(data, available, &fuzz_http_response_limits,
                                                run->no_body, &run->response, &err);
            if (head == HTTP_RESPONSE_PARSE_PARTIAL) {
                return true;
            }
            if (head < 0) {
                return fuzz_http_response_fail(outcome, &err);
            }
            fuzz_http_response_check((size_t)head <= available, "head past the bytes");
            fuzz_http_response_record(outcome, fuzz_http_response_digest(&run->response));
            run->start += (size_t)head;
            http_response_body_init(&run->body, &run->response, &fuzz_http_response_limits);
            run->in_body = true;
            run->body_hash = UINT64_C(0xcbf29ce484222325);
            continue;
        }
        if (!http_response_body_done(&run->body)) {
            size_t consumed = 0;
            size_t decoded = 0;
            int result = http_response_body_decode(&run->body, data, available, &consumed,
                                                   &decoded, &err);
            if (result < 0) {
                return fuzz_http_response_fail(outcome, &err);
            }
            fuzz_http_response_check(decoded <= consumed && consumed <= available, "decode");
            run->body_hash = fuzz_http_response_hash(run->body_hash, data, decoded);
            run->start += consumed;
            if (result == 0) {
                return true;
            }
        }
        fuzz_http_response_record(outcome, run->body_hash);
        run->in_body = false;
        if (run->start == run->length) {
            return true;
        }
    }
}

static uint64_t fuzz_http_response_random(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

static void fuzz_http_response_run(const uint8_t *data, size_t size, uint64_t seed,
                                   bool no_body, enum fuzz_http_response_mode mode,
                                   struct fuzz_http_response_outcome *outcome)
{
    struct fuzz_http_response_run *run = &fuzz_http_response_state;
    run->start = 0;
    run->length = 0;
    run->in_body = false;
    run->no_body = no_body;
    outcome->count = 0;
    outcome->ending = 0;
    outcome->message = NULL;
    uint64_t random = seed | 1;
    bool alive = true;
    while (alive && run->length < size) {
        size_t piece = mode == FUZZ_HTTP_RESPONSE_BYTES ? 1 : size - run->length;
        if (mode == FUZZ_HTTP_RESPONSE_RANDOM) {
            uint64_t draw = fuzz_http_response_random(&random);
            size_t bound = draw % 3 == 0 ? 1 : (draw % 3 == 1 ? 16 : 512);
            piece = 1 + (size_t)((draw >> 8) % bound);
            piece = piece < size - run->length ? piece : size - run->length;
        }
        memcpy(run->work + run->length, data + run->length, piece);
        run->length += piece;
        alive = fuzz_http_response_drain(run, outcome);
    }
    if (alive && run->in_body) {
        struct http_error err = {0, NULL};
        if (http_response_body_eof(&run->body, &err) < 0) {
            fuzz_http_response_fail(outcome, &err);
        } else {
            fuzz_http_response_record(outcome, run->body_hash);
            outcome->ending = 1;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < FUZZ_HTTP_RESPONSE_PREFIX_BYTES ||
        size - FUZZ_HTTP_RESPONSE_PREFIX_BYTES > FUZZ_HTTP_RESPONSE_INPUT_MAX) {
        return 0;
    }
    uint64_t seed = 0;
    memcpy(&seed, data, sizeof(seed));
    bool no_body = (data[8] & 1) != 0;
    const uint8_t *stream = data + FUZZ_HTTP_RESPONSE_PREFIX_BYTES;
    size_t length = size - FUZZ_HTTP_RESPONSE_PREFIX_BYTES;
    struct fuzz_http_response_outcome *outcomes = fuzz_http_response_outcomes;
    for (int mode = 0; mode < 3; mode++) {
        fuzz_http_response_run(stream, length, seed, no_body, (enum fuzz_http_response_mode)mode,
                               &outcomes[mode]);
    }
    for (int run = 1; run < 3; run++) {
        const struct fuzz_http_response_outcome *whole = &outcomes[0];
        const struct fuzz_http_response_outcome *other = &outcomes[run];
        fuzz_http_response_check(whole->count == other->count, "record count differs by split");
        for (size_t i = 0; i < whole->count; i++) {
            fuzz_http_response_check(whole->records[i] == other->records[i],
                                     "record differs by split");
        }
        fuzz_http_response_check(whole->ending == other->ending, "ending differs by split");
        fuzz_http_response_check(whole->message == other->message, "error differs by split");
    }
    return 0;
}
