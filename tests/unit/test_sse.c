/* The text/event-stream parser: LLM-style streams, every field, every line ending, and the
 * same events whatever pieces the bytes arrive in. */

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "net/sse.h"

struct test_sse_log {
    char text[16384];
    size_t length;
    int events;
    int stop_after; /* 0: never stop */
};

static bool test_sse_on_event(void *context, const struct sse_event *event)
{
    struct test_sse_log *log = context;
    int written = snprintf(log->text + log->length, sizeof(log->text) - log->length,
                           "<%s|%s|%s|%lld>", event->type, event->data, event->id,
                           event->has_retry ? (long long)event->retry_ms : -1LL);
    cr_assert(written > 0 && (size_t)written < sizeof(log->text) - log->length);
    log->length += (size_t)written;
    log->events++;
    return log->stop_after == 0 || log->events < log->stop_after;
}

/* Parses the stream with pieces of `first` bytes then `step` bytes; returns the result. */
static int test_sse_run(const char *stream, size_t length, size_t first, size_t step,
                        uint32_t max_event_bytes, struct test_sse_log *log, const char **error)
{
    struct sse_parser parser;
    cr_assert_eq(sse_parser_init(&parser, max_event_bytes), 0);
    log->length = 0;
    log->events = 0;
    log->text[0] = '\0';
    size_t fed = 0;
    int result = 0;
    while (result == 0 && fed < length) {
        size_t piece = fed == 0 ? first : step;
        piece = piece < length - fed ? piece : length - fed;
        result = sse_parser_feed(&parser, stream + fed, piece, test_sse_on_event, log, error);
        fed += piece;
    }
    sse_parser_free(&parser);
    return result;
}

/* Parses whole, byte by byte and split at every position; all must agree. */
static const char *test_sse_check(const char *stream, uint32_t max_event_bytes)
{
    static struct test_sse_log whole;
    static struct test_sse_log other;
    size_t length = strlen(stream);
    const char *error = NULL;
    const char *other_error = NULL;
    int result = test_sse_run(stream, length, length, length, max_event_bytes, &whole, &error);
    for (size_t split = 1; split < length; split++) {
        int again = test_sse_run(stream, length, split, length, max_event_bytes, &other,
                                 &other_error);
        cr_assert_eq(again, result, "split at %zu", split);
        cr_assert_str_eq(other.text, whole.text, "split at %zu", split);
    }
    int again = test_sse_run(stream, length, 1, 1, max_event_bytes, &other, &other_error);
    cr_assert_eq(again, result);
    cr_assert_str_eq(other.text, whole.text);
    if (result < 0) {
        return error;
    }
    return whole.text;
}

Test(sse, openai_stream_with_done_marker)
{
    const char *text = test_sse_check(
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n"
        "data: [DONE]\n\n", 4096);
    cr_assert_str_eq(text, "<message|{\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}||-1>"
                           "<message|{\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}||-1>"
                           "<message|[DONE]||-1>");
}

Test(sse, multi_line_data_event_type_id_and_retry)
{
    const char *text = test_sse_check("event: update\nid: 42\nretry: 2500\ndata: one\n"
                                      "data:two\ndata\n\ndata: next\n\n", 4096);
    cr_assert_str_eq(text, "<update|one\ntwo\n|42|2500><message|next|42|2500>");
}

Test(sse, comments_unknown_fields_and_empty_events)
{
    const char *text = test_sse_check(": keep-alive\nfoo: bar\nevent: lonely\n\n"
                                      "verylongfieldname: x\ndata:  two spaces\n\n", 4096);
    cr_assert_str_eq(text, "<message| two spaces||-1>");
}

Test(sse, crlf_and_cr_line_endings)
{
    /* A BOM is skipped only at the start of the stream; later it is part of a field name. */
    const char *text = test_sse_check("data: a\r\ndata: b\r\n\r\ndata: c\rdata: d\r\r"
                                      "\xef\xbb\xbf" "data: e\n\n", 4096);
    cr_assert_str_eq(text, "<message|a\nb||-1><message|c\nd||-1>");
    text = test_sse_check("\xef\xbb\xbf" "data: bom\r\n\r\n", 4096);
    cr_assert_str_eq(text, "<message|bom||-1>");
}

Test(sse, invalid_retry_and_id_with_nul_are_ignored)
{
    const char *text = test_sse_check("retry: 12x\nid: keep\ndata: a\n\nretry:\ndata: b\n\n",
                                      4096);
    cr_assert_str_eq(text, "<message|a|keep|-1><message|b|keep|-1>");
    struct test_sse_log log = {.stop_after = 0};
    const char *error = NULL;
    const char stream[] = "id: 1\ndata: a\n\nid: x\0y\ndata: b\n\n";
    cr_assert_eq(test_sse_run(stream, sizeof(stream) - 1, 3, 3, 64, &log, &error), 0);
    cr_assert_str_eq(log.text, "<message|a|1|-1><message|b|1|-1>");
}

Test(sse, bounds_are_errors)
{
    const char *error = test_sse_check("data: 0123456789\n\n", 8);
    cr_assert_not_null(strstr(error, "max_event_bytes"));
    error = test_sse_check("data: 0123\ndata: 4567\n\n", 8);
    cr_assert_not_null(strstr(error, "max_event_bytes"));
    char stream[512];
    snprintf(stream, sizeof(stream), "event: %070d\ndata: x\n\n", 0);
    cr_assert_not_null(strstr(test_sse_check(stream, 64), "event type"));
    snprintf(stream, sizeof(stream), "id: %0300d\ndata: x\n\n", 0);
    cr_assert_not_null(strstr(test_sse_check(stream, 64), "id"));
    cr_assert_str_eq(test_sse_check("data: 01234567\n\n", 8), "<message|01234567||-1>");
}

Test(sse, a_callback_can_stop_the_stream)
{
    struct test_sse_log log = {.stop_after = 1};
    const char *error = NULL;
    const char *stream = "data: a\n\ndata: b\n\n";
    cr_assert_eq(test_sse_run(stream, strlen(stream), 100, 100, 64, &log, &error), SSE_STOPPED);
    cr_assert_eq(log.events, 1);
}
