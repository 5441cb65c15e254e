/* libFuzzer target for the HTTP/1.x request reader. The input is a whole connection's byte
 * stream, preceded by 8 bytes that seed where the stream is cut into reads. The stream is
 * framed three times: fed at once, fed in pseudo-random pieces (sometimes while a request is
 * still handed out, as a server does while it answers), and fed a byte at a time. All runs
 * must produce the same requests and end the same way; each request must satisfy the framing
 * invariants, and "100 Continue" must come once per request that waits for it. Any difference
 * aborts. Limits are small so that 413, 414 and 431 are reached. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/http_request.h"

#define FUZZ_HTTP_REQUEST_INPUT_MAX (32 * 1024) /* well under the reader's ceiling */
#define FUZZ_HTTP_REQUEST_RECORDS_MAX 4096
#define FUZZ_HTTP_REQUEST_SEED_BYTES 8

static const struct http_limits fuzz_http_request_limits = {
    .max_uri_bytes = 48,
    .max_header_bytes = 256,
    .max_headers = 6,
    .max_body_bytes = 300,
};

enum fuzz_http_request_mode {
    FUZZ_HTTP_REQUEST_WHOLE,
    FUZZ_HTTP_REQUEST_RANDOM,
    FUZZ_HTTP_REQUEST_BYTES,
};

struct fuzz_http_request_outcome {
    uint64_t records[FUZZ_HTTP_REQUEST_RECORDS_MAX];
    size_t count;
    size_t continues;          /* true answers of http_reader_take_continue */
    size_t continues_expected; /* framed requests that announced a body with 100-continue */
    int status; /* 0: the stream ended needing more bytes */
    const char *message;
};

static struct fuzz_http_request_outcome fuzz_http_request_outcomes[3];

static void fuzz_http_request_check(bool condition, const char *what)
{
    if (!condition) {
        fprintf(stderr, "fuzz_http_request: %s\n", what);
        abort();
    }
}

static uint64_t fuzz_http_request_hash(uint64_t hash, const void *data, size_t length)
{
    const unsigned char *bytes = data;
    for (size_t i = 0; i < length; i++) {
        hash = (hash ^ bytes[i]) * UINT64_C(0x100000001b3);
    }
    return hash;
}

static uint64_t fuzz_http_request_hash_slice(uint64_t hash, struct http_slice slice)
{
    hash = fuzz_http_request_hash(hash, &slice.length, sizeof(slice.length));
    return fuzz_http_request_hash(hash, slice.base, slice.length);
}

/* Checks the framing invariants and returns a digest of everything the request says. Reading
 * every slice also lets AddressSanitizer catch a slice left pointing at moved bytes. */
static uint64_t fuzz_http_request_digest(const struct http_request *request)
{
    const struct http_limits *limits = &fuzz_http_request_limits;
    fuzz_http_request_check(request->version_minor == 0 || request->version_minor == 1,
                            "version");
    fuzz_http_request_check(!(request->chunked && request->has_content_length),
                            "chunked with Content-Length");
    fuzz_http_request_check(!request->has_content_length ||
                                request->body.length == request->content_length,
                            "body length differs from Content-Length");
    fuzz_http_request_check(request->has_content_length || request->chunked ||
                                request->body.length == 0,
                            "body without framing");
    fuzz_http_request_check(request->body.length <= limits->max_body_bytes, "body over limit");
    fuzz_http_request_check(request->header_count <= limits->max_headers, "too many headers");
    fuzz_http_request_check(request->target.length <= limits->max_uri_bytes, "target over limit");
    fuzz_http_request_check(request->path.length > 0, "empty path");
    fuzz_http_request_check(request->path.base[0] == '/' || request->path.base[0] == '*',
                            "path form");
    fuzz_http_request_check(!request->expect_continue || request->version_minor == 1,
                            "expectation in HTTP/1.0");
    uint64_t flags = (uint64_t)request->method | (uint64_t)request->version_minor << 8 |
                     (uint64_t)request->keep_alive << 9 |
                     (uint64_t)request->expect_continue << 10 | (uint64_t)request->chunked << 11;
    uint64_t hash = fuzz_http_request_hash(UINT64_C(0xcbf29ce484222325), &flags, sizeof(flags));
    hash = fuzz_http_request_hash(hash, &request->content_length, sizeof(request->content_length));
    hash = fuzz_http_request_hash_slice(hash, request->method_name);
    hash = fuzz_http_request_hash_slice(hash, request->target);
    hash = fuzz_http_request_hash_slice(hash, request->path);
    hash = fuzz_http_request_hash_slice(hash, request->query);
    for (uint32_t i = 0; i < request->header_count; i++) {
        hash = fuzz_http_request_hash_slice(hash, request->headers[i].name);
        hash = fuzz_http_request_hash_slice(hash, request->headers[i].value);
    }
    return fuzz_http_request_hash_slice(hash, request->body);
}

static void fuzz_http_request_fail(struct fuzz_http_request_outcome *outcome,
                                   const struct http_error *err)
{
    fuzz_http_request_check(err->status >= 400 && err->status <= 599, "error status");
    fuzz_http_request_check(err->message != NULL && err->message[0] != '\0', "error message");
    outcome->status = err->status;
    outcome->message = err->message;
}

static uint64_t fuzz_http_request_random(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* Takes every complete request. With `random` set, sometimes feeds the next piece while a
 * request is handed out, and checks that the request did not change. Returns false once the
 * stream failed. */
static bool fuzz_http_request_drain(struct http_reader *reader,
                                    struct fuzz_http_request_outcome *outcome,
                                    uint64_t *random, const uint8_t *data, size_t size,
                                    size_t *fed, size_t *consumed)
{
    for (;;) {
        struct http_request *request = NULL;
        struct http_error err = {0, NULL};
        int result = http_reader_next(reader, &request, &err);
        if (result == 0) {
            if (http_reader_take_continue(reader)) {
                fuzz_http_request_check(http_reader_state(reader) == HTTP_READER_BODY,
                                        "100 Continue outside the body state");
                outcome->continues++;
            }
            return true;
        }
        if (result < 0) {
            fuzz_http_request_fail(outcome, &err);
            return false;
        }
        uint64_t digest = fuzz_http_request_digest(request);
        fuzz_http_request_check(outcome->count < FUZZ_HTTP_REQUEST_RECORDS_MAX, "records");
        outcome->records[outcome->count++] = digest;
        if (request->expect_continue && (request->chunked || request->content_length > 0)) {
            outcome->continues_expected++;
        }
        if (random != NULL && *fed < size && fuzz_http_request_random(random) % 4 == 0) {
            size_t piece = 1 + (size_t)(fuzz_http_request_random(random) % 97);
            piece = piece < size - *fed ? piece : size - *fed;
            if (http_reader_feed(reader, (const char *)data + *fed, piece, &err) != 0) {
                fuzz_http_request_fail(outcome, &err);
                return false;
            }
            *fed += piece;
            fuzz_http_request_check(fuzz_http_request_digest(request) == digest,
                                    "handed-out request changed under feed");
        }
        *consumed += reader->consumed;
        fuzz_http_request_check(*consumed <= *fed, "consumed more than fed");
        http_reader_consume(reader);
    }
}

static void fuzz_http_request_run(const uint8_t *data, size_t size, uint64_t seed,
                                  enum fuzz_http_request_mode mode,
                                  struct fuzz_http_request_outcome *outcome)
{
    struct http_reader reader;
    http_reader_init(&reader, &fuzz_http_request_limits);
    outcome->count = 0;
    outcome->continues = 0;
    outcome->continues_expected = 0;
    outcome->status = 0;
    outcome->message = NULL;
    uint64_t random = seed | 1;
    bool random_mode = mode == FUZZ_HTTP_REQUEST_RANDOM;
    size_t fed = 0;
    size_t consumed = 0;
    bool alive = true;
    while (alive && fed < size) {
        size_t piece = mode == FUZZ_HTTP_REQUEST_BYTES ? 1 : size - fed;
        if (random_mode) {
            uint64_t draw = fuzz_http_request_random(&random);
            size_t bound = draw % 3 == 0 ? 1 : (draw % 3 == 1 ? 16 : 512);
            piece = 1 + (size_t)((draw >> 8) % bound);
            piece = piece < size - fed ? piece : size - fed;
        }
        struct http_error err = {0, NULL};
        if (http_reader_feed(&reader, (const char *)data + fed, piece, &err) != 0) {
            fuzz_http_request_fail(outcome, &err);
            alive = false;
            break;
        }
        fed += piece;
        alive = fuzz_http_request_drain(&reader, outcome, random_mode ? &random : NULL, data,
                                        size, &fed, &consumed);
    }
    fuzz_http_request_check(alive == (outcome->status == 0), "outcome status");
    http_reader_free(&reader);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < FUZZ_HTTP_REQUEST_SEED_BYTES || size > FUZZ_HTTP_REQUEST_INPUT_MAX) {
        return 0;
    }
    uint64_t seed = 0;
    memcpy(&seed, data, sizeof(seed));
    const uint8_t *stream = data + FUZZ_HTTP_REQUEST_SEED_BYTES;
    size_t length = size - FUZZ_HTTP_REQUEST_SEED_BYTES;
    struct fuzz_http_request_outcome *outcomes = fuzz_http_request_outcomes;
    fuzz_http_request_run(stream, length, seed, FUZZ_HTTP_REQUEST_WHOLE, &outcomes[0]);
    fuzz_http_request_run(stream, length, seed, FUZZ_HTTP_REQUEST_RANDOM, &outcomes[1]);
    fuzz_http_request_run(stream, length, seed, FUZZ_HTTP_REQUEST_BYTES, &outcomes[2]);
    for (int run = 1; run < 3; run++) {
        const struct fuzz_http_request_outcome *whole = &outcomes[0];
        const struct fuzz_http_request_outcome *other = &outcomes[run];
        fuzz_http_request_check(whole->count == other->count, "request count differs by split");
        for (size_t i = 0; i < whole->count; i++) {
            fuzz_http_request_check(whole->records[i] == other->records[i],
                                    "request differs by split");
        }
        fuzz_http_request_check(whole->status == other->status, "final status differs by split");
        fuzz_http_request_check(whole->message == other->message,
                                "error message differs by split");
    }
    /* Fed a byte at a time, every head completes before its body starts: each request that
     * announced a body with 100-continue gets it, plus perhaps one whose body never ended. */
    const struct fuzz_http_request_outcome *bytes = &outcomes[2];
    fuzz_http_request_check(bytes->continues >= bytes->continues_expected &&
                                bytes->continues <= bytes->continues_expected + 1,
                            "100 Continue count");
    return 0;
}
