#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/http_chunked.h"
#include "net/http_parse.h"
#include "net/http_request.h"

/* Small limits so that every boundary is cheap to reach. */
static const struct http_limits test_http_limits = {
    .max_uri_bytes = 64,
    .max_header_bytes = 512,
    .max_headers = 8,
    .max_body_bytes = 1024,
};

#define TEST_HTTP_TRANSCRIPT_MAX (256 * 1024)

/* What a stream framed into: one line per request, then how the stream ended. Comparing
 * transcripts checks that every way of cutting the stream into pieces gives the same result. */
struct test_http_transcript {
    char text[TEST_HTTP_TRANSCRIPT_MAX];
    size_t length;
    int requests;
    int status; /* 0 when the stream ended needing more bytes */
};

static struct test_http_transcript test_http_reference;
static struct test_http_transcript test_http_other;

static void test_http_add(struct test_http_transcript *transcript, const char *format, ...)
{
    va_list arguments;
    va_start(arguments, format);
    size_t room = sizeof(transcript->text) - transcript->length;
    int written = vsnprintf(transcript->text + transcript->length, room, format, arguments);
    va_end(arguments);
    cr_assert(written >= 0 && (size_t)written < room, "transcript overflow");
    transcript->length += (size_t)written;
}

static void test_http_add_request(struct test_http_transcript *transcript,
                                  const struct http_request *request)
{
    test_http_add(transcript, "%.*s(%d) %.*s path=%.*s query=%.*s v1.%d ka=%d ec=%d ch=%d",
                  (int)request->method_name.length, request->method_name.base, request->method,
                  (int)request->target.length, request->target.base, (int)request->path.length,
                  request->path.base, (int)request->query.length, request->query.base,
                  request->version_minor, request->keep_alive, request->expect_continue,
                  request->chunked);
    if (request->has_content_length) {
        test_http_add(transcript, " cl=%llu", (unsigned long long)request->content_length);
    }
    for (uint32_t i = 0; i < request->header_count; i++) {
        const struct http_header *header = &request->headers[i];
        test_http_add(transcript, " [%.*s:%.*s]", (int)header->name.length, header->name.base,
                      (int)header->value.length, header->value.base);
    }
    test_http_add(transcript, " body=%.*s\n", (int)request->body.length, request->body.base);
}

/* Frames text fed as a first piece of `first` bytes, then pieces of `step` bytes, taking
 * every request as soon as it is complete. */
static void test_http_run(const struct http_limits *limits, const char *text, size_t length,
                          size_t first, size_t step, struct test_http_transcript *transcript)
{
    struct http_reader reader;
    http_reader_init(&reader, limits);
    transcript->length = 0;
    transcript->requests = 0;
    transcript->status = 0;
    transcript->text[0] = '\0';
    size_t fed = 0;
    while (transcript->status == 0) {
        size_t piece = fed == 0 ? first : step;
        piece = piece < length - fed ? piece : length - fed;
        struct http_error err = {0, NULL};
        if (piece > 0 && http_reader_feed(&reader, text + fed, piece, &err) != 0) {
            transcript->status = err.status;
            test_http_add(transcript, "error %d: %s\n", err.status, err.message);
            break;
        }
        fed += piece;
        for (;;) {
            struct http_request *request = NULL;
            int result = http_reader_next(&reader, &request, &err);
            if (result == 0) {
                break;
            }
            if (result < 0) {
                transcript->status = err.status;
                test_http_add(transcript, "error %d: %s\n", err.status, err.message);
                break;
            }
            test_http_add_request(transcript, request);
            transcript->requests++;
            http_reader_consume(&reader);
        }
        if (fed == length) {
            break;
        }
    }
    if (transcript->status == 0) {
        test_http_add(transcript, "more state=%d\n", http_reader_state(&reader));
    }
    http_reader_free(&reader);
}

/* Frames the stream at once, at every two-piece split, byte by byte and in a few other piece
 * sizes; all must agree. Leaves the one-shot transcript in test_http_reference. */
static void test_http_check_splits(const struct http_limits *limits, const char *text,
                                   size_t length)
{
    struct test_http_transcript *reference = &test_http_reference;
    struct test_http_transcript *other = &test_http_other;
    test_http_run(limits, text, length, length, length, reference);
    for (size_t cut = 1; cut < length; cut++) {
        test_http_run(limits, text, length, cut, length, other);
        cr_assert_str_eq(other->text, reference->text, "split at %zu of:\n%.*s", cut,
                         (int)length, text);
    }
    static const size_t steps[] = {1, 2, 3, 7, 16, 61};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        test_http_run(limits, text, length, steps[i], steps[i], other);
        cr_assert_str_eq(other->text, reference->text, "pieces of %zu of:\n%.*s", steps[i],
                         (int)length, text);
    }
}

/* Checks the exact transcript of a stream (and that every split agrees). */
static void test_http_expect(const char *text, const char *expected)
{
    test_http_check_splits(&test_http_limits, text, strlen(text));
    cr_assert_str_eq(test_http_reference.text, expected, "for:\n%s", text);
}

static void test_http_expect_status_with(const struct http_limits *limits, const char *text,
                                         size_t length, int status)
{
    test_http_check_splits(limits, text, length);
    cr_assert_eq(test_http_reference.status, status, "for:\n%.*s\ngot:\n%s", (int)length, text,
                 test_http_reference.text);
}

/* The stream must fail with `status` after framing `requests` requests. */
static void test_http_expect_status(const char *text, int requests, int status)
{
    test_http_expect_status_with(&test_http_limits, text, strlen(text), status);
    cr_assert_eq(test_http_reference.requests, requests, "for:\n%s\ngot:\n%s", text,
                 test_http_reference.text);
}

/* One reader for tests that drive it step by step. */
static struct http_reader test_http_reader;

static void test_http_setup(void) { http_reader_init(&test_http_reader, &test_http_limits); }
static void test_http_teardown(void) { http_reader_free(&test_http_reader); }

static void test_http_feed(const char *text)
{
    struct http_error err = {0, NULL};
    int result = http_reader_feed(&test_http_reader, text, strlen(text), &err);
    cr_assert_eq(result, 0, "feed failed: %d %s", err.status, err.message);
}

static struct http_request *test_http_next(void)
{
    struct http_request *request = NULL;
    struct http_error err = {0, NULL};
    int result = http_reader_next(&test_http_reader, &request, &err);
    cr_assert_eq(result, 1, "next: %d (%d %s)", result, err.status, err.message);
    cr_assert_not_null(request);
    return request;
}

static void test_http_next_none(void)
{
    struct http_request *request = NULL;
    struct http_error err = {0, NULL};
    cr_assert_eq(http_reader_next(&test_http_reader, &request, &err), 0);
    cr_assert_null(request);
}

static bool test_http_slice_eq(struct http_slice slice, const char *text)
{
    return slice.length == strlen(text) && memcmp(slice.base, text, slice.length) == 0;
}

#define TEST_HTTP_SLICE_EQ(slice, text)                                                        \
    cr_assert(test_http_slice_eq((slice), (text)), "got '%.*s', want '%s'",                  \
              (int)(slice).length, (slice).base, (text))

/* Builds "GET /<target of n bytes> HTTP/1.1\r\nHost: h\r\n\r\n" into out. */
static size_t test_http_long_target(char *out, size_t capacity, size_t target_bytes)
{
    size_t length = (size_t)snprintf(out, capacity, "GET /");
    for (size_t i = 1; i < target_bytes; i++) {
        out[length++] = (char)('a' + i % 26);
    }
    length += (size_t)snprintf(out + length, capacity - length, " HTTP/1.1\r\nHost: h\r\n\r\n");
    cr_assert(length < capacity);
    return length;
}

/* ---- request line ---- */

TestSuite(http_request_line);

Test(http_request_line, simple_get)
{
    test_http_expect("GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n",
                     "GET(1) /index.html path=/index.html query= v1.1 ka=1 ec=0 ch=0 "
                     "[Host:example.com] body=\n"
                     "more state=0\n");
}

Test(http_request_line, methods_map_to_enum)
{
    static const struct {
        const char *name;
        enum http_method method;
    } cases[] = {
        {"GET", HTTP_METHOD_GET},         {"HEAD", HTTP_METHOD_HEAD},
        {"POST", HTTP_METHOD_POST},       {"PUT", HTTP_METHOD_PUT},
        {"DELETE", HTTP_METHOD_DELETE},   {"OPTIONS", HTTP_METHOD_OPTIONS},
        {"PATCH", HTTP_METHOD_PATCH},     {"get", HTTP_METHOD_OTHER},
        {"PROPFIND", HTTP_METHOD_OTHER},  {"GETS", HTTP_METHOD_OTHER},
        {"X-Custom!#$%&'*+.^_`|~1", HTTP_METHOD_OTHER},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "%s / HTTP/1.1\r\nHost: a\r\n\r\n", cases[i].name);
        struct http_reader reader;
        http_reader_init(&reader, &test_http_limits);
        struct http_error err = {0, NULL};
        struct http_request *request = NULL;
        cr_assert_eq(http_reader_feed(&reader, text, strlen(text), &err), 0);
        cr_assert_eq(http_reader_next(&reader, &request, &err), 1, "%s", cases[i].name);
        cr_assert_eq(request->method, cases[i].method, "%s", cases[i].name);
        TEST_HTTP_SLICE_EQ(request->method_name, cases[i].name);
        http_reader_free(&reader);
    }
}

Test(http_request_line, method_length_limit)
{
    char text[128];
    snprintf(text, sizeof(text), "%.*s / HTTP/1.1\r\nHost: a\r\n\r\n",
             HTTP_PARSE_METHOD_MAX_BYTES, "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMNOP");
    test_http_expect_status(text, 1, 0);
    snprintf(text, sizeof(text), "%.*s / HTTP/1.1\r\nHost: a\r\n\r\n",
             HTTP_PARSE_METHOD_MAX_BYTES + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMNOP");
    test_http_expect_status(text, 0, 501);
    /* Found before the rest of the line arrives, once max_uri_bytes bytes are in. */
    char endless[80];
    memset(endless, 'M', sizeof(endless));
    test_http_expect_status_with(&test_http_limits, endless, 64, 0);
    test_http_expect_status_with(&test_http_limits, endless, 65, 501);
}

Test(http_request_line, bad_methods)
{
    test_http_expect_status(" / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("G\x80T / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400);
}

Test(http_request_line, query_is_split_off)
{
    test_http_expect("GET /a/b?x=1&y HTTP/1.1\r\nHost: a\r\n\r\n"
                     "GET /?  HTTP/1.1\r\nHost: a\r\n\r\n",
                     "GET(1) /a/b?x=1&y path=/a/b query=x=1&y v1.1 ka=1 ec=0 ch=0 [Host:a] "
                     "body=\n"
                     "error 400: Request line must end with HTTP/1.1 or HTTP/1.0\n");
    test_http_expect("GET /? HTTP/1.1\r\nHost: a\r\n\r\nGET /p?q?r HTTP/1.1\r\nHost: a\r\n\r\n",
                     "GET(1) /? path=/ query= v1.1 ka=1 ec=0 ch=0 [Host:a] body=\n"
                     "GET(1) /p?q?r path=/p query=q?r v1.1 ka=1 ec=0 ch=0 [Host:a] body=\n"
                     "more state=0\n");
}

Test(http_request_line, asterisk_only_for_options)
{
    test_http_expect("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
                     "OPTIONS(6) * path=* query= v1.1 ka=1 ec=0 ch=0 [Host:a] body=\n"
                     "more state=0\n");
    test_http_expect_status("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400);
}

Test(http_request_line, absolute_form_path_extracted)
{
    test_http_expect("GET http://example.com/p/q?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"
                     "GET HTTPS://Example.com HTTP/1.1\r\nHost: e\r\n\r\n"
                     "GET http://h:8080?z HTTP/1.1\r\nHost: e\r\n\r\n",
                     "GET(1) http://example.com/p/q?x=1 path=/p/q query=x=1 v1.1 ka=1 ec=0 "
                     "ch=0 [Host:example.com] body=\n"
                     "GET(1) HTTPS://Example.com path=/ query= v1.1 ka=1 ec=0 ch=0 [Host:e] "
                     "body=\n"
                     "GET(1) http://h:8080?z path=/ query=z v1.1 ka=1 ec=0 ch=0 [Host:e] "
                     "body=\n"
                     "more state=0\n");
}

Test(http_request_line, bad_targets)
{
    test_http_expect_status("GET http:// HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET http:///p HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET http://user@h/ HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET ftp://h/ HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n", 0, 400);
    test_http_expect_status("GET index.html HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET /\r\n\r\n", 0, 400);
}

Test(http_request_line, control_byte_found_at_every_offset)
{
    /* Long targets go through the 16-byte scan: a bad byte anywhere must be found. */
    for (size_t offset = 1; offset < 60; offset++) {
        char text[160];
        size_t length = test_http_long_target(text, sizeof(text), 60);
        text[4 + offset] = '\x1f';
        test_http_expect_status_with(&test_http_limits, text, length, 400);
        cr_assert_eq(test_http_reference.requests, 0);
        text[4 + offset] = '\xff';
        test_http_expect_status_with(&test_http_limits, text, length, 400);
        text[4 + offset] = '~';
        test_http_expect_status_with(&test_http_limits, text, length, 0);
        cr_assert_eq(test_http_reference.requests, 1);
    }
}

Test(http_request_line, uri_limit_exact_and_one_past)
{
    char text[256];
    size_t length = test_http_long_target(text, sizeof(text), 64);
    test_http_expect_status_with(&test_http_limits, text, length, 0);
    cr_assert_eq(test_http_reference.requests, 1);
    length = test_http_long_target(text, sizeof(text), 65);
    test_http_expect_status_with(&test_http_limits, text, length, 414);
    cr_assert_eq(test_http_reference.requests, 0);
}

Test(http_request_line, uri_limit_found_before_line_ends)
{
    char text[256];
    test_http_long_target(text, sizeof(text), 65);
    /* "GET " + 65 target bytes, nothing after: already a 414. */
    test_http_expect_status_with(&test_http_limits, text, 4 + 65, 414);
    /* 64 target bytes and no more yet: still waiting. */
    test_http_expect_status_with(&test_http_limits, text, 4 + 64, 0);
    cr_assert(strstr(test_http_reference.text, "more state=1") != NULL);
}

Test(http_request_line, versions)
{
    test_http_expect("GET / HTTP/1.0\r\n\r\n",
                     "GET(1) / path=/ query= v1.0 ka=0 ec=0 ch=0 body=\nmore state=0\n");
    test_http_expect_status("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 0, 505);
    test_http_expect_status("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 0, 505);
    test_http_expect_status("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 0, 505);
    test_http_expect_status("GET / HTTP/3\r\nHost: a\r\n\r\n", 0, 505);
    test_http_expect_status("GET / HTTP/2\nHost: a\r\n\r\n", 0, 505);
    test_http_expect_status("GET / HTTP/1.10\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET / HTTP/11\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET / http/1.1\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET / HTTP/1.\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET / HTTP/\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET / HTTPS/1.1\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET / HTTP/1.1\rHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET / HTTP/2.0\rX", 0, 400);
}

Test(http_request_line, bare_lf_line_ends)
{
    test_http_expect("GET /a HTTP/1.1\nHost: a\n\nGET /b HTTP/1.1\r\nHost: b\n\r\n",
                     "GET(1) /a path=/a query= v1.1 ka=1 ec=0 ch=0 [Host:a] body=\n"
                     "GET(1) /b path=/b query= v1.1 ka=1 ec=0 ch=0 [Host:b] body=\n"
                     "more state=0\n");
}

Test(http_request_line, leading_empty_lines)
{
    test_http_expect("\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
                     "GET(1) / path=/ query= v1.1 ka=1 ec=0 ch=0 [Host:a] body=\n"
                     "more state=0\n");
    test_http_expect_status("\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400);
    test_http_expect_status("\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400);
}

/* ---- header fields ---- */

TestSuite(http_headers);

Test(http_headers, values_trimmed_and_kept_in_order)
{
    test_http_expect("GET / HTTP/1.1\r\nHost:a\r\nX-One:  \t spaced value \t \r\nX-Empty:\r\n"
                     "X-Blank:   \r\nX-Tab:\tin\tside\r\nX-Obs: caf\xc3\xa9\r\n\r\n",
                     "GET(1) / path=/ query= v1.1 ka=1 ec=0 ch=0 [Host:a] "
                     "[X-One:spaced value] [X-Empty:] [X-Blank:] [X-Tab:in\tside] "
                     "[X-Obs:caf\xc3\xa9] body=\nmore state=0\n");
}

Test(http_headers, lookup_is_case_insensitive, .init = test_http_setup,
     .fini = test_http_teardown)
{
    test_http_feed("GET / HTTP/1.1\r\nHost: a\r\nX-Request-ID: 42\r\ncontent-TYPE: text/x\r\n\r\n");
    struct http_request *request = test_http_next();
    const struct http_slice *value = http_request_header(request, "x-request-id");
    cr_assert_not_null(value);
    TEST_HTTP_SLICE_EQ(*value, "42");
    value = http_request_header(request, "Content-Type");
    cr_assert_not_null(value);
    TEST_HTTP_SLICE_EQ(*value, "text/x");
    cr_assert_null(http_request_header(request, "X-Request"));
    cr_assert_null(http_request_header(request, "Content-Length"));
    cr_assert_eq(request->header_count, 3);
}

Test(http_headers, malformed_fields)
{
    test_http_expect_status("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 0, 400);
    test_http_expect_status("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", 0, 400);
    test_http_expect_status("GET / HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n", 0, 400);
    test_http_expect_status("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 0, 400);
    test_http_expect_status("GET / HTTP/1.1\r\nHost: a\r\nX: v\r\n\r\r\n", 0, 400);
    test_http_expect_status("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 0, 400);
}

Test(http_headers, obs_fold_refused)
{
    test_http_expect_status("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", 0, 400);
    test_http_expect_status("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", 0, 400);
    test_http_expect_status("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 0, 400);
}

Test(http_headers, control_bytes_in_values)
{
    test_http_expect_status("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01z\r\n\r\n", 0, 400);
    test_http_expect_status("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fz\r\n\r\n", 0, 400);
    test_http_expect_status("GET / HTTP/1.1\r\nHost: a\r\nX: a\x00z\r\n\r\n", 0, 0);
    /* The NUL above ends the C string: the head is incomplete, so check it with a length. */
    static const char with_nul[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0z\r\n\r\n";
    test_http_expect_status_with(&test_http_limits, with_nul, sizeof(with_nul) - 1, 400);
}

Test(http_headers, control_byte_found_at_every_offset)
{
    for (size_t offset = 0; offset < 48; offset++) {
        char text[128];
        int length = snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: h\r\nX: %s\r\n\r\n",
                              "0123456789abcdef0123456789abcdef0123456789abcdef");
        size_t value = strlen("GET / HTTP/1.1\r\nHost: h\r\nX: ");
        text[value + offset] = '\x0b';
        test_http_expect_status_with(&test_http_limits, text, (size_t)length, 400);
        text[value + offset] = '\t';
        test_http_expect_status_with(&test_http_limits, text, (size_t)length, 0);
        cr_assert_eq(test_http_reference.requests, 1);
    }
}

Test(http_headers, count_limit_exact_and_one_past)
{
    char text[512];
    size_t length = (size_t)snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 1; i < 8; i++) {
        length += (size_t)snprintf(text + length, sizeof(text) - length, "X-%d: v\r\n", i);
    }
    snprintf(text + length, sizeof(text) - length, "\r\n");
    test_http_expect_status(text, 1, 0);
    cr_assert(strstr(test_http_reference.text, "[X-7:v] body=") != NULL);
    snprintf(text + length, sizeof(text) - length, "X-8: v\r\n\r\n");
    test_http_expect_status(text, 0, 431);
}

Test(http_headers, count_capped_by_hard_maximum)
{
    static const struct http_limits wide = {
        .max_uri_bytes = 64, .max_header_bytes = 8192, .max_headers = HTTP_HEADERS_MAX,
        .max_body_bytes = 16};
    static char text[8192];
    size_t length = (size_t)snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 1; i < HTTP_HEADERS_MAX; i++) {
        length += (size_t)snprintf(text + length, sizeof(text) - length, "X%d: v\r\n", i);
    }
    size_t fields_end = length;
    length += (size_t)snprintf(text + length, sizeof(text) - length, "\r\n");
    struct test_http_transcript *transcript = &test_http_reference;
    test_http_run(&wide, text, length, length, length, transcript);
    cr_assert_eq(transcript->requests, 1, "%.300s", transcript->text);
    cr_assert(strstr(transcript->text, "[X127:v] body=\n") != NULL);
    length = fields_end + (size_t)snprintf(text + fields_end, 32, "X128: v\r\n\r\n");
    test_http_run(&wide, text, length, length, length, transcript);
    cr_assert_str_eq(transcript->text, "error 431: Too many header fields; send fewer\n");
}

Test(http_headers, section_size_exact_and_one_past)
{
    char text[600];
    size_t length = (size_t)snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    size_t filler = 512 - length - 4;
    memset(text + length, 'v', filler);
    length += filler;
    memcpy(text + length, "\r\n\r\n", 4);
    length += 4;
    cr_assert_eq(length, 512);
    test_http_expect_status_with(&test_http_limits, text, length, 0);
    cr_assert_eq(test_http_reference.requests, 1);
    memmove(text + length - 3, text + length - 4, 4);
    text[length - 4] = 'v';
    test_http_expect_status_with(&test_http_limits, text, length + 1, 431);
    cr_assert_eq(test_http_reference.requests, 0);
}

Test(http_headers, section_size_found_before_it_ends)
{
    char text[600];
    size_t length = (size_t)snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(text + length, 'v', sizeof(text) - length);
    test_http_expect_status_with(&test_http_limits, text, 512, 0);
    cr_assert(strstr(test_http_reference.text, "more state=1") != NULL);
    test_http_expect_status_with(&test_http_limits, text, 513, 431);
}

Test(http_headers, host_rules)
{
    test_http_expect_status("GET / HTTP/1.1\r\n\r\n", 0, 400);
    test_http_expect_status("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 0, 400);
    test_http_expect_status("GET / HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n", 0, 400);
    test_http_expect_status("GET / HTTP/1.0\r\n\r\n", 1, 0);
    test_http_expect("GET / HTTP/1.1\r\nHost:\r\n\r\n",
                     "GET(1) / path=/ query= v1.1 ka=1 ec=0 ch=0 [Host:] body=\n"
                     "more state=0\n");
}

/* ---- framing ---- */

TestSuite(http_framing);

Test(http_framing, content_length_body)
{
    test_http_expect("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
                     "PUT /q HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
                     "POST /r HTTP/1.1\r\nHost: a\r\nContent-Length:  007 \r\n\r\nabcdefg",
                     "POST(3) /p path=/p query= v1.1 ka=1 ec=0 ch=0 cl=5 [Host:a] "
                     "[Content-Length:5] body=hello\n"
                     "PUT(4) /q path=/q query= v1.1 ka=1 ec=0 ch=0 cl=0 [Host:a] "
                     "[Content-Length:0] body=\n"
                     "POST(3) /r path=/r query= v1.1 ka=1 ec=0 ch=0 cl=7 [Host:a] "
                     "[Content-Length:007] body=abcdefg\n"
                     "more state=0\n");
}

Test(http_framing, content_length_malformed)
{
    static const char *const values[] = {
        "+5", "-1", "5 5", "5,5", "5, 5", "", "0x5", "5a", "1.0", "18446744073709551616",
        "99999999999999999999999",
    };
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text),
                 "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %s\r\n\r\nhello", values[i]);
        test_http_expect_status(text, 0, 400);
    }
    test_http_expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615"
                            "\r\n\r\n",
                            0, 413);
}

Test(http_framing, content_length_duplicates_refused)
{
    test_http_expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                            "Content-Length: 5\r\n\r\nhello",
                            0, 400);
    test_http_expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                            "content-length: 6\r\n\r\nhello!",
                            0, 400);
}

Test(http_framing, body_limit_exact_and_one_past)
{
    static char text[2048];
    int header = snprintf(text, sizeof(text),
                          "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\n\r\n");
    memset(text + header, 'b', 1024);
    test_http_expect_status_with(&test_http_limits, text, (size_t)header + 1024, 0);
    cr_assert_eq(test_http_reference.requests, 1);
    header = snprintf(text, sizeof(text),
                      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\n\r\n");
    test_http_expect_status_with(&test_http_limits, text, (size_t)header, 413);
}

Test(http_framing, body_limit_refused_before_body, .init = test_http_setup,
     .fini = test_http_teardown)
{
    struct http_error err = {0, NULL};
    const char *head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\n\r\n";
    cr_assert_eq(http_reader_feed(&test_http_reader, head, strlen(head), &err), -1);
    cr_assert_eq(err.status, 413);
    cr_assert_str_eq(err.message, "Request body is larger than this server accepts");
    /* The error sticks. */
    struct http_request *request = NULL;
    struct http_error again = {0, NULL};
    cr_assert_eq(http_reader_next(&test_http_reader, &request, &again), -1);
    cr_assert_eq(again.status, 413);
    cr_assert_eq(http_reader_feed(&test_http_reader, "x", 1, &again), -1);
    cr_assert_eq(again.status, 413);
}

Test(http_framing, transfer_encoding_rules)
{
    test_http_expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                            "Content-Length: 3\r\n\r\n0\r\n\r\n",
                            0, 400);
    test_http_expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                            0, 400);
    test_http_expect_status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0,
                            400);
    test_http_expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                            0, 400);
    static const char *const unsupported[] = {
        "gzip", "gzip, chunked", "chunked, gzip", "identity", "chunked,", "", "chunkedx",
        "chunked;q=1",
    };
    for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text),
                 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: %s\r\n\r\n0\r\n\r\n",
                 unsupported[i]);
        test_http_expect_status(text, 0, 501);
    }
    test_http_expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED \r\n\r\n"
                            "0\r\n\r\n",
                            1, 0);
}

Test(http_framing, error_messages_tell_what_to_do)
{
    test_http_expect("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                     "Content-Length: 3\r\n\r\n",
                     "error 400: Content-Length and Transfer-Encoding together are not "
                     "allowed; send one\n");
    test_http_expect("GET / HTTP/1.1\r\nX: 1\r\n\r\n",
                     "error 400: HTTP/1.1 requests need a Host header\n");
    test_http_expect("GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n",
                     "error 417: Only Expect: 100-continue is supported\n");
}

Test(http_framing, connection_and_keep_alive)
{
    test_http_expect("GET /1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                     "GET /2 HTTP/1.0\r\n\r\n"
                     "GET /3 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
                     "GET /4 HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
                     "GET /5 HTTP/1.1\r\nHost: a\r\nConnection: Upgrade,  CLOSE ,x\r\n\r\n"
                     "GET /6 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
                     "GET /7 HTTP/1.0\r\nConnection: upgrade\r\nConnection: ,keep-alive,\r\n\r\n"
                     "GET /8 HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n",
                     "GET(1) /1 path=/1 query= v1.1 ka=0 ec=0 ch=0 [Host:a] [Connection:close] "
                     "body=\n"
                     "GET(1) /2 path=/2 query= v1.0 ka=0 ec=0 ch=0 body=\n"
                     "GET(1) /3 path=/3 query= v1.0 ka=1 ec=0 ch=0 [Connection:Keep-Alive] "
                     "body=\n"
                     "GET(1) /4 path=/4 query= v1.0 ka=0 ec=0 ch=0 "
                     "[Connection:keep-alive, close] body=\n"
                     "GET(1) /5 path=/5 query= v1.1 ka=0 ec=0 ch=0 [Host:a] "
                     "[Connection:Upgrade,  CLOSE ,x] body=\n"
                     "GET(1) /6 path=/6 query= v1.1 ka=1 ec=0 ch=0 [Host:a] "
                     "[Connection:keep-alive] body=\n"
                     "GET(1) /7 path=/7 query= v1.0 ka=1 ec=0 ch=0 [Connection:upgrade] "
                     "[Connection:,keep-alive,] body=\n"
                     "GET(1) /8 path=/8 query= v1.1 ka=1 ec=0 ch=0 [Host:a] "
                     "[Connection:closed] body=\n"
                     "more state=0\n");
}

Test(http_framing, expect_rules)
{
    test_http_expect("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 2"
                     "\r\n\r\nok"
                     "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"
                     "POST / HTTP/1.0\r\nExpect: anything\r\nContent-Length: 2\r\n\r\nok",
                     "POST(3) / path=/ query= v1.1 ka=1 ec=1 ch=0 cl=2 [Host:a] "
                     "[Expect:100-Continue] [Content-Length:2] body=ok\n"
                     "POST(3) / path=/ query= v1.0 ka=0 ec=0 ch=0 cl=2 [Expect:100-continue] "
                     "[Content-Length:2] body=ok\n"
                     "POST(3) / path=/ query= v1.0 ka=0 ec=0 ch=0 cl=2 [Expect:anything] "
                     "[Content-Length:2] body=ok\n"
                     "more state=0\n");
    test_http_expect_status("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n\r\n", 0,
                            417);
    test_http_expect_status("GET / HTTP/1.1\r\nHost: a\r\nExpect:\r\n\r\n", 0, 417);
    /* Smuggling checks come first, the 413 before the 417. */
    test_http_expect_status("POST / HTTP/1.1\r\nHost: a\r\nExpect: x\r\nContent-Length: 5000"
                            "\r\n\r\n",
                            0, 413);
}

Test(http_framing, no_framing_means_empty_body)
{
    test_http_expect("POST /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
                     "POST(3) /a path=/a query= v1.1 ka=1 ec=0 ch=0 [Host:a] body=\n"
                     "GET(1) /b path=/b query= v1.1 ka=1 ec=0 ch=0 [Host:a] body=\n"
                     "more state=0\n");
}

/* ---- chunked bodies ---- */

TestSuite(http_chunked);

#define TEST_HTTP_CHUNKED_HEAD "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
#define TEST_HTTP_CHUNKED_LINE                                                                 \
    "POST(3) /c path=/c query= v1.1 ka=1 ec=0 ch=1 [Host:a] [Transfer-Encoding:chunked] body="

Test(http_chunked, decoded_in_place)
{
    test_http_expect(TEST_HTTP_CHUNKED_HEAD "5\r\nhello\r\n1\r\n,\r\nA\r\n 012345678\r\n"
                                            "000\r\n\r\n"
                                            "GET /n HTTP/1.1\r\nHost: a\r\n\r\n",
                     TEST_HTTP_CHUNKED_LINE "hello, 012345678\n"
                     "GET(1) /n path=/n query= v1.1 ka=1 ec=0 ch=0 [Host:a] body=\n"
                     "more state=0\n");
}

Test(http_chunked, empty_body)
{
    test_http_expect(TEST_HTTP_CHUNKED_HEAD "0\r\n\r\n",
                     TEST_HTTP_CHUNKED_LINE "\nmore state=0\n");
}

Test(http_chunked, extensions_and_trailers)
{
    test_http_expect(TEST_HTTP_CHUNKED_HEAD "3;name=value\r\nabc\r\n"
                                            "2 ; a=\"q s\";b\t\r\nde\r\n"
                                            "1;\x80\r\nf\r\n"
                                            "0;last\r\nX-Trailer: v\r\nY:\t w \r\n\r\n",
                     TEST_HTTP_CHUNKED_LINE "abcdef\nmore state=0\n");
}

Test(http_chunked, size_errors)
{
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "\r\nhello\r\n0\r\n\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "g\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "5g\r\nhello\r\n0\r\n\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "-5\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "+5\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "0x5\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD " 5\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "5 \r\nhello\r\n0\r\n\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "5 x\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "00000000000000000\r\n\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "10000000000000000\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "0000000000000001\r\nx\r\n0\r\n\r\n", 1, 0);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "ffffffffffffffff\r\n", 0, 413);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "5;a\x01\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "5;a\nhello\r\n0\r\n\r\n", 0, 400);
}

Test(http_chunked, crlf_required)
{
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "5\nhello\r\n0\r\n\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "5\rhello\r\n0\r\n\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "5\r\nhelloX\r\n0\r\n\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "5\r\nhello\n0\r\n\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "5\r\nhello\rX0\r\n\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "0\r\n\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "0\r\n\rX", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "0\r\nX: y\n\r\n", 0, 400);
    test_http_expect("POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhelloX\r\n",
                     "error 400: Chunk data must be followed by CRLF; check the chunk size\n");
}

Test(http_chunked, trailer_errors)
{
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "0\r\nX: a\r\n folded\r\n\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "0\r\n X: a\r\n\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "0\r\nX : a\r\n\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "0\r\nNoColon\r\n\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "0\r\n: v\r\n\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "0\r\nX: a\x01\r\n\r\n", 0, 400);
    test_http_expect_status(TEST_HTTP_CHUNKED_HEAD "0\r\nX: a\x7f\r\n\r\n", 0, 400);
}

Test(http_chunked, trailer_limits)
{
    char text[1024];
    size_t length = (size_t)snprintf(text, sizeof(text), TEST_HTTP_CHUNKED_HEAD "0\r\n");
    for (int i = 0; i < 8; i++) {
        length += (size_t)snprintf(text + length, sizeof(text) - length, "T%d: v\r\n", i);
    }
    snprintf(text + length, sizeof(text) - length, "\r\n");
    test_http_expect_status(text, 1, 0);
    snprintf(text + length, sizeof(text) - length, "T8: v\r\n\r\n");
    test_http_expect_status(text, 0, 431);
    /* The trailer section, final CRLF included, may be max_header_bytes long. */
    length = (size_t)snprintf(text, sizeof(text), TEST_HTTP_CHUNKED_HEAD "0\r\nT: ");
    size_t trailer_start = length - 3;
    size_t filler = 512 - 3 - 4;
    memset(text + length, 'v', filler);
    length += filler;
    memcpy(text + length, "\r\n\r\n", 4);
    length += 4;
    cr_assert_eq(length - trailer_start, 512);
    test_http_expect_status_with(&test_http_limits, text, length, 0);
    cr_assert_eq(test_http_reference.requests, 1);
    memcpy(text + length - 4, "v\r\n\r\n", 5);
    test_http_expect_status_with(&test_http_limits, text, length + 1, 431);
}

Test(http_chunked, body_limit_exact_and_one_past)
{
    static char text[4096];
    size_t length = (size_t)snprintf(text, sizeof(text), TEST_HTTP_CHUNKED_HEAD "200\r\n");
    memset(text + length, 'x', 512);
    length += 512;
    length += (size_t)snprintf(text + length, sizeof(text) - length, "\r\n1ff\r\n");
    memset(text + length, 'y', 511);
    length += 511;
    size_t before_last = length;
    length += (size_t)snprintf(text + length, sizeof(text) - length, "\r\n1\r\nz\r\n0\r\n\r\n");
    test_http_expect_status_with(&test_http_limits, text, length, 0);
    cr_assert_eq(test_http_reference.requests, 1);
    cr_assert(strstr(test_http_reference.text, "yyyz\n") != NULL);
    length = before_last;
    length += (size_t)snprintf(text + length, sizeof(text) - length, "\r\n2\r\nzz\r\n0\r\n\r\n");
    test_http_expect_status_with(&test_http_limits, text, length, 413);
    cr_assert_eq(test_http_reference.requests, 0);
}

Test(http_chunked, line_limit_exact_and_one_past)
{
    static char text[8192];
    size_t length = (size_t)snprintf(text, sizeof(text), TEST_HTTP_CHUNKED_HEAD "1;");
    size_t line_start = length - 2;
    size_t filler = HTTP_CHUNKED_LINE_MAX_BYTES - 2 - 2;
    memset(text + length, 'e', filler);
    length += filler;
    length += (size_t)snprintf(text + length, sizeof(text) - length, "\r\nq\r\n0\r\n\r\n");
    cr_assert_eq(length - line_start - strlen("q\r\n0\r\n\r\n"), HTTP_CHUNKED_LINE_MAX_BYTES);
    struct test_http_transcript *transcript = &test_http_reference;
    test_http_run(&test_http_limits, text, length, length, length, transcript);
    cr_assert_eq(transcript->requests, 1, "%s", transcript->text);
    test_http_run(&test_http_limits, text, length, 1, 1, transcript);
    cr_assert_eq(transcript->requests, 1, "%s", transcript->text);
    memmove(text + line_start + 3, text + line_start + 2, length - line_start - 2);
    text[line_start + 2] = 'e';
    test_http_run(&test_http_limits, text, length + 1, length + 1, length, transcript);
    cr_assert_eq(transcript->status, 400, "%s", transcript->text);
    cr_assert_str_eq(transcript->text,
                     "error 400: Chunk size line is too long; send shorter extensions\n");
}

Test(http_chunked, overhead_bound)
{
    static const struct http_limits roomy = {
        .max_uri_bytes = 64, .max_header_bytes = 512, .max_headers = 8,
        .max_body_bytes = 1 << 20};
    static char text[256 * 1024];
    size_t length = (size_t)snprintf(text, sizeof(text), TEST_HTTP_CHUNKED_HEAD);
    while (length + 16 < sizeof(text)) {
        memcpy(text + length, "1\r\nx\r\n", 6);
        length += 6;
    }
    struct test_http_transcript *transcript = &test_http_reference;
    test_http_run(&roomy, text, length, length, length, transcript);
    cr_assert_str_eq(transcript->text, "error 400: Chunked body has too much framing overhead; "
                                       "send larger chunks\n");
    test_http_run(&roomy, text, length, 4096, 4096, &test_http_other);
    cr_assert_str_eq(test_http_other.text, transcript->text);
    /* Chunks of 8 bytes cost 5 framing bytes each: well within the bound. */
    length = (size_t)snprintf(text, sizeof(text), TEST_HTTP_CHUNKED_HEAD);
    for (int i = 0; i < 100000 / 8; i++) {
        memcpy(text + length, "8\r\nabcdefgh\r\n", 13);
        length += 13;
    }
    memcpy(text + length, "0\r\n\r\n", 5);
    length += 5;
    test_http_run(&roomy, text, length, 1000, 1000, transcript);
    cr_assert_eq(transcript->requests, 1, "%.200s", transcript->text);
}

Test(http_chunked, decoder_offsets)
{
    struct http_chunked decoder;
    http_chunked_init(&decoder, &test_http_limits);
    char buffer[] = "3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\nNEXT";
    size_t output = 0;
    size_t input = 0;
    struct http_error err = {0, NULL};
    cr_assert_eq(http_chunked_decode(&decoder, buffer, &output, &input, 5, &err), 0);
    cr_assert_eq(input, 5);
    cr_assert_eq(output, 2);
    cr_assert_eq(memcmp(buffer, "ab", 2), 0);
    size_t length = strlen(buffer);
    cr_assert_eq(http_chunked_decode(&decoder, buffer, &output, &input, length, &err), 1);
    cr_assert_eq(output, 5);
    cr_assert_eq(memcmp(buffer, "abcde", 5), 0);
    cr_assert_eq(input, length - 4);
    cr_assert_str_eq(buffer + input, "NEXT");
}

/* ---- the reader ---- */

TestSuite(http_reader, .init = test_http_setup, .fini = test_http_teardown);

Test(http_reader, pipelined_requests_one_at_a_time)
{
    cr_assert_eq(http_reader_state(&test_http_reader), HTTP_READER_IDLE);
    test_http_feed("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                   "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz"
                   "POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "2\r\nab\r\n0\r\n\r\n"
                   "GET /4 HTTP/1.1\r\nHo");
    struct http_request *request = test_http_next();
    TEST_HTTP_SLICE_EQ(request->path, "/1");
    cr_assert_eq(http_reader_state(&test_http_reader), HTTP_READER_HEADERS);
    /* Asking again before consume gives the same request. */
    cr_assert_eq(test_http_next(), request);
    TEST_HTTP_SLICE_EQ(request->path, "/1");
    http_reader_consume(&test_http_reader);
    request = test_http_next();
    TEST_HTTP_SLICE_EQ(request->path, "/2");
    TEST_HTTP_SLICE_EQ(request->body, "xyz");
    http_reader_consume(&test_http_reader);
    request = test_http_next();
    TEST_HTTP_SLICE_EQ(request->path, "/3");
    TEST_HTTP_SLICE_EQ(request->body, "ab");
    cr_assert(request->chunked);
    cr_assert(!request->has_content_length);
    http_reader_consume(&test_http_reader);
    test_http_next_none();
    cr_assert_eq(http_reader_state(&test_http_reader), HTTP_READER_HEADERS);
    test_http_feed("st: a\r\n\r\n");
    request = test_http_next();
    TEST_HTTP_SLICE_EQ(request->path, "/4");
    http_reader_consume(&test_http_reader);
    test_http_next_none();
    cr_assert_eq(http_reader_state(&test_http_reader), HTTP_READER_IDLE);
}

Test(http_reader, states)
{
    test_http_feed("POST / HTTP/1.1\r\n");
    cr_assert_eq(http_reader_state(&test_http_reader), HTTP_READER_HEADERS);
    test_http_feed("Host: a\r\nContent-Length: 4\r\n\r\n");
    test_http_next_none();
    cr_assert_eq(http_reader_state(&test_http_reader), HTTP_READER_BODY);
    test_http_feed("ab");
    test_http_next_none();
    cr_assert_eq(http_reader_state(&test_http_reader), HTTP_READER_BODY);
    test_http_feed("cd");
    struct http_request *request = test_http_next();
    TEST_HTTP_SLICE_EQ(request->body, "abcd");
    cr_assert_eq(http_reader_state(&test_http_reader), HTTP_READER_IDLE);
    http_reader_consume(&test_http_reader);
    cr_assert_eq(http_reader_state(&test_http_reader), HTTP_READER_IDLE);
}

Test(http_reader, continue_once_when_body_awaited)
{
    test_http_feed("PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                   "Content-Length: 3\r\n\r\n");
    test_http_next_none();
    cr_assert(http_reader_take_continue(&test_http_reader));
    cr_assert(!http_reader_take_continue(&test_http_reader));
    test_http_feed("a");
    cr_assert(!http_reader_take_continue(&test_http_reader));
    test_http_feed("bc");
    struct http_request *request = test_http_next();
    cr_assert(request->expect_continue);
    TEST_HTTP_SLICE_EQ(request->body, "abc");
    cr_assert(!http_reader_take_continue(&test_http_reader));
}

Test(http_reader, continue_not_sent_when_body_already_here)
{
    test_http_feed("PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                   "Content-Length: 3\r\n\r\na");
    test_http_next_none();
    cr_assert(!http_reader_take_continue(&test_http_reader));
}

Test(http_reader, continue_not_sent_without_body)
{
    test_http_feed("PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                   "Content-Length: 0\r\n\r\n");
    cr_assert(!http_reader_take_continue(&test_http_reader));
    struct http_request *request = test_http_next();
    cr_assert(request->expect_continue);
    cr_assert(!http_reader_take_continue(&test_http_reader));
}

Test(http_reader, continue_for_chunked_and_pipelined)
{
    test_http_feed("GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
                   "POST /b HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n");
    cr_assert(!http_reader_take_continue(&test_http_reader));
    test_http_next();
    http_reader_consume(&test_http_reader);
    test_http_next_none();
    cr_assert(http_reader_take_continue(&test_http_reader));
    cr_assert(!http_reader_take_continue(&test_http_reader));
    test_http_feed("1\r\nz\r\n0\r\n\r\n");
    struct http_request *request = test_http_next();
    TEST_HTTP_SLICE_EQ(request->body, "z");
}

Test(http_reader, continue_byte_by_byte)
{
    const char *text = "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                       "Content-Length: 2\r\n\r\nhi";
    size_t length = strlen(text);
    int taken = 0;
    size_t taken_at = 0;
    for (size_t i = 0; i < length; i++) {
        struct http_error err = {0, NULL};
        cr_assert_eq(http_reader_feed(&test_http_reader, text + i, 1, &err), 0);
        struct http_request *request = NULL;
        int result = http_reader_next(&test_http_reader, &request, &err);
        if (http_reader_take_continue(&test_http_reader)) {
            taken++;
            taken_at = i + 1;
        }
        cr_assert_eq(result, i + 1 == length ? 1 : 0);
    }
    cr_assert_eq(taken, 1);
    cr_assert_eq(taken_at, length - 2);
}

Test(http_reader, handed_out_request_survives_more_input)
{
    test_http_feed("POST /keep?me HTTP/1.1\r\nHost: a\r\nX-Long: ");
    char value[300];
    memset(value, 'L', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    test_http_feed(value);
    test_http_feed("\r\nContent-Length: 5\r\n\r\nhello");
    struct http_request *request = test_http_next();
    const char *path = request->path.base;
    /* Enough pipelined input to outgrow the buffer while the request is handed out. */
    static char more[16 * 1024];
    size_t length = 0;
    size_t sent = 0;
    while (length + 64 < sizeof(more)) {
        length += (size_t)snprintf(more + length, sizeof(more) - length,
                                   "GET /n%zu HTTP/1.1\r\nHost: b\r\n\r\n", length);
        sent++;
    }
    struct http_error err = {0, NULL};
    for (size_t fed = 0; fed < length; fed += 1000) {
        size_t piece = length - fed < 1000 ? length - fed : 1000;
        cr_assert_eq(http_reader_feed(&test_http_reader, more + fed, piece, &err), 0);
    }
    cr_assert_eq(request->path.base, path);
    TEST_HTTP_SLICE_EQ(request->path, "/keep");
    TEST_HTTP_SLICE_EQ(request->query, "me");
    TEST_HTTP_SLICE_EQ(request->body, "hello");
    TEST_HTTP_SLICE_EQ(request->headers[1].value, value);
    cr_assert_eq(test_http_next(), request);
    http_reader_consume(&test_http_reader);
    size_t count = 0;
    for (;;) {
        struct http_request *next = NULL;
        int result = http_reader_next(&test_http_reader, &next, &err);
        cr_assert_geq(result, 0);
        if (result == 0) {
            break;
        }
        cr_assert_eq(memcmp(next->path.base, "/n", 2), 0);
        count++;
        http_reader_consume(&test_http_reader);
    }
    cr_assert_eq(count, sent);
    cr_assert_gt(count, 400);
    cr_assert_eq(http_reader_state(&test_http_reader), HTTP_READER_IDLE);
}

Test(http_reader, pipelining_bounded_behind_unconsumed_request)
{
    test_http_feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    test_http_next();
    static char more[4096];
    memset(more, 'x', sizeof(more));
    struct http_error err = {0, NULL};
    size_t fed = 0;
    int result = 0;
    while (result == 0 && fed < 4 * 1024 * 1024) {
        result = http_reader_feed(&test_http_reader, more, sizeof(more), &err);
        fed += sizeof(more);
    }
    cr_assert_eq(result, -1);
    cr_assert_eq(err.status, 429);
    size_t ceiling = 512 + 1024 + HTTP_READER_SLACK_BYTES;
    cr_assert_geq(fed, ceiling);
    cr_assert_leq(fed, ceiling + 2 * sizeof(more));
}

Test(http_reader, compaction_at_the_ceiling)
{
    /* Fill the buffer to its ceiling without taking requests, take one, then feed more: the
     * consumed prefix is smaller than the live bytes, so only compaction makes room. */
    static char text[80 * 1024];
    size_t ceiling = 512 + 1024 + HTTP_READER_SLACK_BYTES;
    size_t length = (size_t)snprintf(text, sizeof(text),
                                     "POST /first HTTP/1.1\r\nHost: a\r\nContent-Length: 900"
                                     "\r\n\r\n");
    memset(text + length, 'p', 900);
    length += 900;
    int sent = 0;
    while (length + 100 < ceiling) {
        length += (size_t)snprintf(text + length, sizeof(text) - length,
                                   "GET /g%05d HTTP/1.1\r\nHost: a\r\n\r\n", sent++);
    }
    struct http_error err = {0, NULL};
    cr_assert_eq(http_reader_feed(&test_http_reader, text, length, &err), 0, "%s", err.message);
    struct http_request *request = test_http_next();
    TEST_HTTP_SLICE_EQ(request->path, "/first");
    cr_assert_eq(request->body.length, 900);
    http_reader_consume(&test_http_reader);
    size_t more = length;
    while (length < more + 800) {
        length += (size_t)snprintf(text + length, sizeof(text) - length,
                                   "GET /g%05d HTTP/1.1\r\nHost: a\r\n\r\n", sent++);
    }
    cr_assert_eq(http_reader_feed(&test_http_reader, text + more, length - more, &err), 0, "%s",
                 err.message);
    for (int i = 0; i < sent; i++) {
        char path[16];
        snprintf(path, sizeof(path), "/g%05d", i);
        request = test_http_next();
        TEST_HTTP_SLICE_EQ(request->path, path);
        http_reader_consume(&test_http_reader);
    }
    test_http_next_none();
    cr_assert_eq(http_reader_state(&test_http_reader), HTTP_READER_IDLE);
}

Test(http_reader, large_body_byte_by_byte)
{
    static char text[2048];
    int header = snprintf(text, sizeof(text),
                          "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\n\r\n");
    for (int i = 0; i < 1024; i++) {
        text[header + i] = (char)('a' + i % 26);
    }
    struct http_error err = {0, NULL};
    for (int i = 0; i < header + 1024; i++) {
        cr_assert_eq(http_reader_feed(&test_http_reader, text + i, 1, &err), 0);
    }
    struct http_request *request = test_http_next();
    cr_assert_eq(request->body.length, 1024);
    cr_assert_eq(memcmp(request->body.base, text + header, 1024), 0);
    cr_assert_eq(request->content_length, 1024);
    TEST_HTTP_SLICE_EQ(request->headers[1].value, "1024");
}

Test(http_reader, many_small_requests_in_odd_pieces)
{
    static char text[64 * 1024];
    size_t length = 0;
    int sent = 0;
    while (length + 128 < sizeof(text)) {
        length += (size_t)snprintf(text + length, sizeof(text) - length,
                                   "POST /%d HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n%02d",
                                   sent, sent % 100);
        sent++;
    }
    struct test_http_transcript *transcript = &test_http_reference;
    test_http_run(&test_http_limits, text, length, 333, 1237, transcript);
    cr_assert_eq(transcript->requests, sent);
    test_http_run(&test_http_limits, text, length, length, length, &test_http_other);
    cr_assert_str_eq(test_http_other.text, transcript->text);
}

Test(http_reader, empty_lines_between_requests)
{
    test_http_feed("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx\r\n");
    test_http_next();
    /* A CRLF after a body is not the start of a request: the connection is idle. */
    cr_assert_eq(http_reader_state(&test_http_reader), HTTP_READER_IDLE);
    http_reader_consume(&test_http_reader);
    test_http_next_none();
    cr_assert_eq(http_reader_state(&test_http_reader), HTTP_READER_IDLE);
    test_http_feed("\r\n");
    test_http_next_none();
    cr_assert_eq(http_reader_state(&test_http_reader), HTTP_READER_IDLE);
    test_http_feed("G");
    cr_assert_eq(http_reader_state(&test_http_reader), HTTP_READER_HEADERS);
    test_http_feed("ET /after HTTP/1.1\r\nHost: a\r\n\r\n");
    struct http_request *request = test_http_next();
    TEST_HTTP_SLICE_EQ(request->path, "/after");
}

Test(http_reader, feed_nothing)
{
    struct http_error err = {0, NULL};
    cr_assert_eq(http_reader_feed(&test_http_reader, NULL, 0, &err), 0);
    test_http_next_none();
    cr_assert_eq(http_reader_state(&test_http_reader), HTTP_READER_IDLE);
}

Test(http_reader, slow_headers_are_not_reparsed)
{
    /* A head sent a byte at a time must still frame (the end-of-head search is
     * incremental); the 16 KiB head here would cost ~10^8 steps if each byte reparsed. */
    static const struct http_limits big = {
        .max_uri_bytes = 8192, .max_header_bytes = 65536, .max_headers = 64,
        .max_body_bytes = 16};
    static char text[70000];
    size_t length = (size_t)snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(text + length, 'v', 60000);
    length += 60000;
    length += (size_t)snprintf(text + length, sizeof(text) - length, "\r\n\r\n");
    struct http_reader reader;
    http_reader_init(&reader, &big);
    struct http_error err = {0, NULL};
    for (size_t i = 0; i < length; i++) {
        cr_assert_eq(http_reader_feed(&reader, text + i, 1, &err), 0);
    }
    struct http_request *request = NULL;
    cr_assert_eq(http_reader_next(&reader, &request, &err), 1);
    cr_assert_eq(request->headers[1].value.length, 60000);
    http_reader_free(&reader);
}

Test(http_reader, every_split_of_valid_streams)
{
    static const char *const streams[] = {
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
        TEST_HTTP_CHUNKED_HEAD "4;x=y\r\nwiki\r\n5\r\npedia\r\n0\r\nT: v\r\n\r\n",
        ("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.1\r\nHost: b\r\n\r\n"
         "DELETE /c HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n"),
        "PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
        "\r\nOPTIONS * HTTP/1.1\nHost: a\n\n",
        "GET http://h/x?y HTTP/1.1\r\nHost: h\r\nA:1\r\nB: 2 \r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(streams) / sizeof(streams[0]); i++) {
        test_http_check_splits(&test_http_limits, streams[i], strlen(streams[i]));
        cr_assert_eq(test_http_reference.status, 0, "%s", test_http_reference.text);
        cr_assert(test_http_reference.requests >= 1);
        cr_assert(strstr(test_http_reference.text, "more state=0") != NULL);
    }
}

Test(http_reader, head_errors_wait_for_the_end_of_the_head)
{
    /* A bad field in an unfinished head is reported when the head ends, so that the answer
     * does not depend on how the stream was cut into reads. */
    test_http_feed("GET / HTTP/1.1\r\nBad Name: x\r\n");
    test_http_next_none();
    cr_assert_eq(http_reader_state(&test_http_reader), HTTP_READER_HEADERS);
    struct http_error err = {0, NULL};
    cr_assert_eq(http_reader_feed(&test_http_reader, "\r\n", 2, &err), -1);
    cr_assert_eq(err.status, 400);
    cr_assert_str_eq(err.message, "Whitespace before ':' in a header field is not allowed");
}

Test(http_reader, bare_cr_refused_at_once)
{
    struct http_error err = {0, NULL};
    const char *text = "GET / HTTP/1.1\r\nHost: a\rX";
    cr_assert_eq(http_reader_feed(&test_http_reader, text, strlen(text), &err), -1);
    cr_assert_eq(err.status, 400);
    cr_assert_str_eq(err.message, "A CR must be followed by LF; end lines with CRLF");
}

Test(http_reader, errors_after_valid_requests)
{
    test_http_expect_status("GET /ok HTTP/1.1\r\nHost: a\r\n\r\nGET /bad HTTP/9.9\r\n\r\n", 1,
                            505);
    test_http_expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nokGARBAGE\r\n"
                            "\r\n",
                            1, 400);
}

/* ---- the parser alone ---- */

TestSuite(http_parse);

Test(http_parse, prefixes_are_partial)
{
    const char *text = "POST /x?y HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nX:  v \r\n\r\n";
    size_t length = strlen(text);
    struct http_request request;
    struct http_error err = {0, NULL};
    for (size_t cut = 0; cut < length; cut++) {
        cr_assert_eq(http_parse_request(text, cut, &test_http_limits, &request, &err),
                     HTTP_PARSE_PARTIAL, "at %zu", cut);
    }
    cr_assert_eq(http_parse_request(text, length, &test_http_limits, &request, &err),
                 (int)length);
    cr_assert_eq(request.header_count, 3);
    TEST_HTTP_SLICE_EQ(request.headers[2].value, "v");
    cr_assert_eq(request.body.base, text + length);
    cr_assert_eq(request.body.length, 0);
}

Test(http_parse, request_line_alone)
{
    const char *text = "GET /p HTTP/1.0\r\nrest";
    struct http_request request;
    struct http_error err = {0, NULL};
    cr_assert_eq(http_parse_request_line(text, strlen(text), &test_http_limits, &request, &err),
                 17);
    cr_assert_eq(request.version_minor, 0);
    cr_assert_eq(http_parse_request_line(text, 16, &test_http_limits, &request, &err),
                 HTTP_PARSE_PARTIAL);
    cr_assert_eq(http_parse_request_line("GET /p HTTP/1.0\r\r", 17, &test_http_limits, &request,
                                         &err),
                 HTTP_PARSE_INVALID);
    cr_assert_eq(err.status, 400);
    cr_assert_str_eq(err.message, "A CR must be followed by LF; end lines with CRLF");
}

/* ---- status reasons ---- */

TestSuite(http_status);

Test(http_status, reasons)
{
    static const int used[] = {100, 200, 201, 202, 204, 301, 304, 400, 401, 403, 404, 405, 408,
                               409, 411, 412, 413, 414, 415, 417, 422, 428, 429, 431, 500, 501,
                               502, 503, 504, 505};
    for (size_t i = 0; i < sizeof(used) / sizeof(used[0]); i++) {
        cr_assert_str_neq(http_status_reason(used[i]), "Unknown", "%d", used[i]);
    }
    cr_assert_str_eq(http_status_reason(200), "OK");
    cr_assert_str_eq(http_status_reason(413), "Content Too Large");
    cr_assert_str_eq(http_status_reason(417), "Expectation Failed");
    cr_assert_str_eq(http_status_reason(431), "Request Header Fields Too Large");
    cr_assert_str_eq(http_status_reason(505), "HTTP Version Not Supported");
    cr_assert_str_eq(http_status_reason(299), "Unknown");
    cr_assert_str_eq(http_status_reason(0), "Unknown");
    cr_assert_str_eq(http_status_reason(-1), "Unknown");
}
