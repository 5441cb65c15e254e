/* The response head parser and body decoder: every framing, every error class, and the same
 * result whatever pieces the stream arrives in. */

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "net/http_response_parse.h"

static const struct http_response_limits test_response_limits = {
    .max_status_line_bytes = 64,
    .max_header_bytes = 512,
    .max_headers = 8,
    .max_body_bytes = 1024,
};

/* What a stream framed into, as text: "status framing keep-alive body" per response, then
 * the ending ("partial", "eof", or the error message). */
struct test_response_transcript {
    char text[8192];
    size_t length;
};

static void test_response_add(struct test_response_transcript *transcript, const char *text,
                              size_t length)
{
    cr_assert(transcript->length + length < sizeof(transcript->text));
    memcpy(transcript->text + transcript->length, text, length);
    transcript->length += length;
    transcript->text[transcript->length] = '\0';
}

struct test_response_framer {
    char work[8192];
    size_t start;
    size_t have;
    size_t body_start; /* transcript length where the current body began */
    bool in_body;
    bool no_body;
    struct http_response_parsed response;
    struct http_response_body body;
};

static struct test_response_framer test_response_framer;

/* Frames what is buffered; false once the stream failed (the error is in the transcript). */
static bool test_response_drain(struct test_response_framer *framer,
                                struct test_response_transcript *transcript)
{
    for (;;) {
        struct http_error err = {0, NULL};
        char *data = framer->work + framer->start;
        size_t available = framer->have - framer->start;
        if (!framer->in_body) {
            int head = http_response_parse_head(data, available, &test_response_limits,
                                                framer->no_body, &framer->response, &err);
            if (head == HTTP_RESPONSE_PARSE_PARTIAL) {
                return true;
            }
            if (head < 0) {
                cr_assert_eq(err.status, 502);
                test_response_add(transcript, err.message, strlen(err.message));
                return false;
            }
            char line[128];
            int n = snprintf(line, sizeof(line), "%d f%d ka%d es%d [", framer->response.status,
                             (int)framer->response.framing, framer->response.keep_alive,
                             framer->response.event_stream);
            test_response_add(transcript, line, (size_t)n);
            framer->body_start = transcript->length;
            framer->start += (size_t)head;
            http_response_body_init(&framer->body, &framer->response, &test_response_limits);
            framer->in_body = true;
            continue;
        }
        if (!http_response_body_done(&framer->body)) {
            size_t consumed = 0;
            size_t decoded = 0;
            int result = http_response_body_decode(&framer->body, data, available, &consumed,
                                                   &decoded, &err);
            if (result < 0) {
                /* A failed body is dropped whole, however much of it was decoded. */
                transcript->length = framer->body_start;
                test_response_add(transcript, err.message, strlen(err.message));
                return false;
            }
            test_response_add(transcript, data, decoded);
            framer->start += consumed;
            if (result == 0) {
                return true;
            }
        }
        test_response_add(transcript, "]\n", 2);
        framer->in_body = false;
        if (framer->start == framer->have) {
            return true;
        }
    }
}

/* Frames stream fed `step` bytes at a time (0: all at once). */
static void test_response_frame(const char *stream, size_t length, size_t step, bool no_body,
                                struct test_response_transcript *transcript)
{
    struct test_response_framer *framer = &test_response_framer;
    cr_assert(length < sizeof(framer->work));
    memset(framer, 0, sizeof(*framer));
    framer->no_body = no_body;
    transcript->length = 0;
    while (framer->have < length) {
        size_t left = length - framer->have;
        size_t piece = step == 0 || step > left ? left : step;
        memcpy(framer->work + framer->have, stream + framer->have, piece);
        framer->have += piece;
        if (!test_response_drain(framer, transcript)) {
            return;
        }
    }
    const char *ending = "partial";
    if (framer->in_body) {
        struct http_error err = {0, NULL};
        ending = http_response_body_eof(&framer->body, &err) == 1 ? "eof]" : err.message;
        if (ending == err.message) {
            transcript->length = framer->body_start;
        }
    }
    test_response_add(transcript, ending, strlen(ending));
}

/* Frames the stream whole, then byte by byte and in pieces of 2..7, and checks they agree;
 * returns the whole-stream transcript. */
static const char *test_response_check(const char *stream, bool no_body)
{
    static struct test_response_transcript whole;
    static struct test_response_transcript other;
    size_t length = strlen(stream);
    test_response_frame(stream, length, 0, no_body, &whole);
    for (size_t step = 1; step < 8; step++) {
        test_response_frame(stream, length, step, no_body, &other);
        cr_assert_str_eq(other.text, whole.text, "step %zu differs: %s", step, stream);
    }
    return whole.text;
}

Test(http_response, content_length_body_and_keep_alive)
{
    const char *text = test_response_check("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
                                           "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno",
                                           false);
    cr_assert_str_eq(text, "200 f1 ka1 es0 [hello]\n404 f1 ka1 es0 [no]\npartial");
}

Test(http_response, chunked_body_with_extensions_and_trailers)
{
    const char *text = test_response_check(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Sum: 1\r\n\r\n", false);
    cr_assert_str_eq(text, "200 f2 ka1 es0 [hello world]\npartial");
}

Test(http_response, body_until_close_and_http10)
{
    const char *text = test_response_check("HTTP/1.0 200 OK\r\n\r\nall of it", false);
    cr_assert_str_eq(text, "200 f3 ka0 es0 [all of iteof]");
    text = test_response_check("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
                               "Content-Length: 1\r\n\r\nx", false);
    cr_assert_str_eq(text, "200 f1 ka1 es0 [x]\npartial");
    text = test_response_check("HTTP/1.1 200 OK\r\nConnection: Keep-Alive, close\r\n"
                               "Content-Length: 1\r\n\r\nx", false);
    cr_assert_str_eq(text, "200 f1 ka0 es0 [x]\npartial");
}

Test(http_response, no_body_statuses_head_and_interim)
{
    const char *text = test_response_check("HTTP/1.1 100 Continue\r\n\r\n"
                                           "HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n"
                                           "HTTP/1.1 304 Not Modified\r\n\r\n", false);
    cr_assert_str_eq(text, "100 f0 ka1 es0 []\n204 f0 ka1 es0 []\n304 f0 ka1 es0 []\npartial");
    text = test_response_check("HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n", true);
    cr_assert_str_eq(text, "200 f0 ka1 es0 []\npartial");
}

Test(http_response, event_stream_and_bare_lf_lines)
{
    const char *text = test_response_check("HTTP/1.1 200 OK\nContent-Type: Text/Event-Stream; "
                                           "charset=utf-8\nContent-Length: 2\n\nab", false);
    cr_assert_str_eq(text, "200 f1 ka1 es1 [ab]\npartial");
    struct http_response_parsed response;
    struct http_error err = {0, NULL};
    const char *head = "HTTP/1.1 200 \r\nX-A:  padded  \r\n\r\n";
    cr_assert_eq(http_response_parse_head(head, strlen(head), &test_response_limits, false,
                                          &response, &err), (int)strlen(head));
    cr_assert_eq(response.reason.length, 0);
    const struct http_slice *value = http_response_parse_header(&response, "x-a");
    cr_assert_not_null(value);
    cr_assert_eq(value->length, 6);
    cr_assert_eq(memcmp(value->base, "padded", 6), 0);
}

Test(http_response, malformed_status_lines)
{
    const char *cases[] = {"HTTP/2.0 200 OK\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n",
                           "HTTP/1.1 2000 OK\r\n\r\n", "http/1.1 200 OK\r\n\r\n",
                           "HTTP/1.1 200 O\x01K\r\n\r\n", "HTTP/1.1 099 Low\r\n\r\n",
                           "HTTP/1.1 200 OK\rX\n\r\n", "SSH-2.0-OpenSSH\r\n"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *text = test_response_check(cases[i], false);
        cr_assert(strncmp(text, "upstream sent", 13) == 0, "case %zu: %s", i, text);
    }
}

Test(http_response, malformed_and_conflicting_headers)
{
    const char *cases[][2] = {
        {"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "not a token"},
        {"HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n", "folded"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", "not a decimal"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "conflicting"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "both"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "Transfer-Encoding"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1025\r\n\r\n", "max_body_bytes"},
        {"HTTP/1.1 200 OK\r\nX: a\x7f\r\n\r\n", "control character"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *text = test_response_check(cases[i][0], false);
        cr_assert_not_null(strstr(text, cases[i][1]), "case %zu: %s", i, text);
    }
}

Test(http_response, limits_on_status_line_header_bytes_and_count)
{
    char stream[2048];
    snprintf(stream, sizeof(stream), "HTTP/1.1 200 %070d\r\n\r\n", 0);
    cr_assert_not_null(strstr(test_response_check(stream, false), "max_status_line_bytes"));
    int length = snprintf(stream, sizeof(stream), "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 9; i++) {
        length += snprintf(stream + length, sizeof(stream) - (size_t)length, "X-%d: 1\r\n", i);
    }
    snprintf(stream + length, sizeof(stream) - (size_t)length, "\r\n");
    cr_assert_not_null(strstr(test_response_check(stream, false), "max_headers"));
    snprintf(stream, sizeof(stream), "HTTP/1.1 200 OK\r\nX-Big: %0600d\r\n\r\n", 0);
    cr_assert_not_null(strstr(test_response_check(stream, false), "max_header_bytes"));
}

Test(http_response, bad_chunking_and_truncated_bodies)
{
    const char *cases[][2] = {
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "hexadecimal"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", "CRLF"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n", "CRLF"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n401\r\n", "max_body_bytes"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab", "chunked body"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "whole Content-Length"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *text = test_response_check(cases[i][0], false);
        cr_assert_not_null(strstr(text, cases[i][1]), "case %zu: %s", i, text);
    }
    char big[1400];
    int length = snprintf(big, sizeof(big), "HTTP/1.0 200 OK\r\n\r\n");
    memset(big + length, 'b', 1100);
    big[length + 1100] = '\0';
    cr_assert_not_null(strstr(test_response_check(big, false), "max_body_bytes"));
}
