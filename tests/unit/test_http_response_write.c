/* Response serialisation: the exact bytes of heads for every framing and connection mode,
 * appends onto outputs with little or no free room, and the digit and JSON escape writers
 * the hot path uses instead of printf. */

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rm_assert.h"
#include "net/http_response.h"

#define TEST_DATE "Sun, 06 Nov 1994 08:49:37 GMT"
#define TEST_START(status_line)                                                                \
    "HTTP/1.1 " status_line "\r\nServer: ringmaster\r\nDate: " TEST_DATE "\r\n"

static const struct http_response_header test_etag = {"ETag", "\"42\""};

/* Appends to a fresh output and checks the whole text. */
static void test_append_expect(const struct http_response_head *head, const char *body,
                               const char *expected)
{
    struct http_output output = {0};
    cr_assert_eq(http_response_append(&output, head, body), 0);
    cr_assert_eq(output.length, strlen(expected), "%.*s", (int)output.length, output.data);
    cr_assert(memcmp(output.data, expected, output.length) == 0);
    output.sent = output.length;
    http_output_free(&output);
}

Test(http_response_write, keep_alive_head_with_etag_type_and_length)
{
    struct http_response_head head = {
        .status = 200, .date = TEST_DATE, .content_type = "application/json",
        .headers = &test_etag, .header_count = 1, .body_length = 14,
    };
    test_append_expect(&head, "{\"version\":42}",
                       TEST_START("200 OK") "ETag: \"42\"\r\nContent-Type: application/json\r\n"
                                            "Content-Length: 14\r\n\r\n{\"version\":42}");
}

Test(http_response_write, connection_close_and_http10_keep_alive)
{
    struct http_response_head head = {
        .status = 404, .date = TEST_DATE, .content_type = "text/plain", .body_length = 2,
        .close = true,
    };
    test_append_expect(&head, "no",
                       TEST_START("404 Not Found") "Content-Type: text/plain\r\n"
                                                   "Content-Length: 2\r\nConnection: close\r\n"
                                                   "\r\nno");
    head.close = false;
    head.keep_alive = true;
    test_append_expect(&head, "no",
                       TEST_START("404 Not Found") "Content-Type: text/plain\r\n"
                                                   "Content-Length: 2\r\n"
                                                   "Connection: keep-alive\r\n\r\nno");
}

Test(http_response_write, statuses_without_content_and_head_requests)
{
    struct http_response_head head = {
        .status = 204, .date = TEST_DATE, .content_type = "application/json",
    };
    test_append_expect(&head, NULL, TEST_START("204 No Content") "\r\n");
    head.status = 304;
    head.headers = &test_etag;
    head.header_count = 1;
    test_append_expect(&head, NULL, TEST_START("304 Not Modified") "ETag: \"42\"\r\n\r\n");
    head.status = 299;
    head.header_count = 0;
    head.body_length = 5;
    head.omit_body = true;
    test_append_expect(&head, "hello",
                       TEST_START("299 Unknown") "Content-Type: application/json\r\n"
                                                 "Content-Length: 5\r\n\r\n");
}

Test(http_response_write, streamed_heads_chunked_or_delimited_by_the_close)
{
    struct http_response_head head = {
        .status = 200, .date = TEST_DATE, .content_type = "text/event-stream",
        .headers = &test_etag, .header_count = 1, .framing = HTTP_FRAMING_CHUNKED,
    };
    char text[512];
    size_t length = http_response_head_write(text, sizeof(text), &head);
    const char *chunked = TEST_START("200 OK") "ETag: \"42\"\r\nContent-Type: text/event-stream\r\n"
                                               "Transfer-Encoding: chunked\r\n\r\n";
    cr_assert_eq(length, strlen(chunked));
    cr_assert(memcmp(text, chunked, length) == 0);
    head.framing = HTTP_FRAMING_CLOSE;
    head.close = true;
    length = http_response_head_write(text, sizeof(text), &head);
    const char *closing = TEST_START("200 OK") "ETag: \"42\"\r\nContent-Type: text/event-stream\r\n"
                                               "Connection: close\r\n\r\n";
    cr_assert_eq(length, strlen(closing));
    cr_assert(memcmp(text, closing, length) == 0);
    /* Too small a buffer, by one byte or more, gives 0 and never writes past it. */
    cr_assert_eq(http_response_head_write(text, strlen(closing), &head), 0);
    memset(text, 'x', sizeof(text));
    cr_assert_eq(http_response_head_write(text, 10, &head), 0);
    cr_assert_eq(text[10], 'x');
    cr_assert_eq(http_response_head_write(text, strlen(closing) + 1, &head), strlen(closing));
}

/* Every amount of free room, from none to plenty: the appended bytes are the same, and the
 * bytes already queued stay as they were. */
Test(http_response_write, appends_behind_queued_bytes_whatever_the_free_room)
{
    static char body[6000];
    memset(body, 'b', sizeof(body));
    struct http_response_head head = {
        .status = 201, .date = TEST_DATE, .content_type = "application/octet-stream",
        .headers = &test_etag, .header_count = 1,
    };
    const size_t body_lengths[] = {0, 10, 3000, sizeof(body)};
    for (size_t b = 0; b < RM_ARRAY_LENGTH(body_lengths); b++) {
        head.body_length = body_lengths[b];
        struct http_output fresh = {0};
        cr_assert_eq(http_response_append(&fresh, &head, body), 0);
        for (size_t queued = 1; queued <= 4096; queued += 37) {
            struct http_output output = {rm_malloc(4096), queued, 4096, 0};
            cr_assert_not_null(output.data);
            memset(output.data, 'q', queued);
            cr_assert_eq(http_response_append(&output, &head, body), 0);
            cr_assert_eq(output.length, queued + fresh.length);
            for (size_t i = 0; i < queued; i++) {
                cr_assert_eq(output.data[i], 'q', "byte %zu", i);
            }
            cr_assert(memcmp(output.data + queued, fresh.data, fresh.length) == 0, "queued %zu",
                      queued);
            http_output_free(&output);
        }
        http_output_free(&fresh);
    }
}

Test(http_response_write, decimal_and_hex_digits_match_printf)
{
    const uint64_t values[] = {0, 1, 9, 10, 15, 16, 99, 100, 255, 256, 4095, 65535, 1000000,
                               UINT32_MAX, (uint64_t)UINT32_MAX + 1, 12345678901234567890ull,
                               UINT64_MAX};
    for (size_t i = 0; i < RM_ARRAY_LENGTH(values); i++) {
        char expected[32];
        char digits[HTTP_RESPONSE_DECIMAL_MAX];
        int length = snprintf(expected, sizeof(expected), "%llu", (unsigned long long)values[i]);
        cr_assert_eq(http_response_decimal(digits, values[i]), (size_t)length);
        cr_assert(memcmp(digits, expected, (size_t)length) == 0);
        length = snprintf(expected, sizeof(expected), "%llx", (unsigned long long)values[i]);
        cr_assert_eq(http_response_hex(digits, values[i]), (size_t)length);
        cr_assert(memcmp(digits, expected, (size_t)length) == 0);
    }
}

Test(http_response_write, json_escape_quotes_controls_and_cuts_before_an_escape)
{
    char out[64];
    size_t length = http_response_json_escape(out, sizeof(out), "a\"b\\c\n\x01\x1f");
    cr_assert_str_eq(out, "a\\\"b\\\\c\\u000a\\u0001\\u001f");
    cr_assert_eq(length, strlen(out));
    /* "ab" then an escape of 6 bytes: with room for 7 bytes and the NUL only "ab" fits. */
    length = http_response_json_escape(out, 8, "ab\x02z");
    cr_assert_str_eq(out, "ab");
    cr_assert_eq(length, 2);
    cr_assert_eq(http_response_json_escape(out, 1, "abc"), 0);
    cr_assert_str_eq(out, "");
}
