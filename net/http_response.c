#include "net/http_response.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/rm_assert.h"

#define HTTP_OUTPUT_INITIAL_BYTES 4096
#define HTTP_RESPONSE_HEAD_MAX 8192

static int http_output_reserve(struct http_output *output, size_t extra)
{
    RM_ASSERT(output->length <= output->capacity);
    if (output->capacity - output->length >= extra) {
        return 0;
    }
    size_t capacity = output->capacity == 0 ? HTTP_OUTPUT_INITIAL_BYTES : output->capacity;
    while (capacity - output->length < extra) {
        capacity *= 2;
    }
    char *data = rm_realloc(output->data, capacity);
    if (data == NULL) {
        return -ENOMEM;
    }
    output->data = data;
    output->capacity = capacity;
    return 0;
}

static size_t http_response_head_write(char *head, const struct http_response_head *response)
{
    int length = snprintf(head, HTTP_RESPONSE_HEAD_MAX,
                          "HTTP/1.1 %d %s\r\nServer: ringmaster\r\nDate: %s\r\n",
                          response->status, http_status_reason(response->status),
                          response->date);
    RM_ASSERT(length > 0 && length < HTTP_RESPONSE_HEAD_MAX);
    size_t used = (size_t)length;
    for (size_t i = 0; i < response->header_count; i++) {
        length = snprintf(head + used, HTTP_RESPONSE_HEAD_MAX - used, "%s: %s\r\n",
                          response->headers[i].name, response->headers[i].value);
        RM_ASSERT(length > 0 && (size_t)length < HTTP_RESPONSE_HEAD_MAX - used);
        used += (size_t)length;
    }
    bool has_content = response->status >= 200 && response->status != 204 &&
                       response->status != 304;
    if (response->content_type != NULL && has_content) {
        used += (size_t)snprintf(head + used, HTTP_RESPONSE_HEAD_MAX - used,
                                 "Content-Type: %s\r\n", response->content_type);
    }
    if (has_content) {
        used += (size_t)snprintf(head + used, HTTP_RESPONSE_HEAD_MAX - used,
                                 "Content-Length: %zu\r\n", response->body_length);
    }
    const char *connection = response->close        ? "Connection: close\r\n"
                             : response->keep_alive ? "Connection: keep-alive\r\n"
                                                    : "";
    used += (size_t)snprintf(head + used, HTTP_RESPONSE_HEAD_MAX - used, "%s\r\n", connection);
    RM_ASSERT(used < HTTP_RESPONSE_HEAD_MAX);
    return used;
}

int http_response_append(struct http_output *output, const struct http_response_head *head,
                         const char *body)
{
    RM_ASSERT(head->status >= 100 && head->status <= 599);
    RM_ASSERT(head->date != NULL);
    char text[HTTP_RESPONSE_HEAD_MAX];
    size_t head_length = http_response_head_write(text, head);
    size_t body_length = head->omit_body ? 0 : head->body_length;
    if (http_output_reserve(output, head_length + body_length) != 0) {
        return -ENOMEM;
    }
    memcpy(output->data + output->length, text, head_length);
    output->length += head_length;
    if (body_length > 0) {
        RM_ASSERT(body != NULL);
        memcpy(output->data + output->length, body, body_length);
        output->length += body_length;
    }
    return 0;
}

int http_response_append_continue(struct http_output *output)
{
    static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (http_output_reserve(output, sizeof(continue_line) - 1) != 0) {
        return -ENOMEM;
    }
    memcpy(output->data + output->length, continue_line, sizeof(continue_line) - 1);
    output->length += sizeof(continue_line) - 1;
    return 0;
}

void http_response_format_date(char *date, long long seconds)
{
    time_t when = (time_t)seconds;
    struct tm parts;
    RM_ASSERT(gmtime_r(&when, &parts) != NULL);
    size_t length = strftime(date, HTTP_RESPONSE_DATE_BYTES + 1, "%a, %d %b %Y %H:%M:%S GMT",
                             &parts);
    RM_ASSERT(length == HTTP_RESPONSE_DATE_BYTES);
}

size_t http_response_json_escape(char *dst, size_t size, const char *text)
{
    RM_ASSERT(size >= 1);
    size_t used = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        char escaped[8];
        size_t length = 1;
        escaped[0] = (char)*p;
        if (*p == '"' || *p == '\\') {
            escaped[0] = '\\';
            escaped[1] = (char)*p;
            length = 2;
        } else if (*p < 0x20) {
            length = (size_t)snprintf(escaped, sizeof(escaped), "\\u%04x", *p);
        }
        if (used + length >= size) {
            break;
        }
        memcpy(dst + used, escaped, length);
        used += length;
    }
    dst[used] = '\0';
    RM_ASSERT(used < size);
    return used;
}

void http_output_reset(struct http_output *output)
{
    RM_ASSERT(output->sent == output->length);
    output->length = 0;
    output->sent = 0;
}

void http_output_free(struct http_output *output)
{
    rm_free(output->data);
    output->data = NULL;
    output->length = 0;
    output->capacity = 0;
    output->sent = 0;
}
