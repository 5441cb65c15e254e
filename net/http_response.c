#include "net/http_response.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/rm_assert.h"

#define HTTP_OUTPUT_INITIAL_BYTES 4096

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

/* A head being written. Bytes past `size` are counted but not written, so that an overflow
 * shows once, at the end, and says how much room the head needs. */
struct http_head_text {
    char *data;
    size_t size;
    size_t used;
};

/* Inline, so that the many pieces of constant length become plain stores. */
static inline void http_head_put(struct http_head_text *text, const char *bytes, size_t length)
{
    RM_ASSERT(bytes != NULL || length == 0);
    RM_ASSERT(text->data != NULL);
    if (text->used <= text->size && length <= text->size - text->used) {
        memcpy(text->data + text->used, bytes, length);
    }
    text->used += length;
}

static inline void http_head_put_string(struct http_head_text *text, const char *string)
{
    RM_ASSERT(string != NULL);
    http_head_put(text, string, strlen(string));
}

/* "HTTP/1.1 200 OK\r\nServer: ringmaster\r\nDate: ...\r\n" */
static void http_head_put_start(struct http_head_text *text, const struct http_response_head *head)
{
    static const char server_date[] = "\r\nServer: ringmaster\r\nDate: ";
    RM_ASSERT(head->status >= 100 && head->status <= 599);
    RM_ASSERT(head->date != NULL && head->date[HTTP_RESPONSE_DATE_BYTES] == '\0');
    char status[] = "HTTP/1.1 000 ";
    status[9] = (char)('0' + head->status / 100);
    status[10] = (char)('0' + head->status / 10 % 10);
    status[11] = (char)('0' + head->status % 10);
    http_head_put(text, status, sizeof(status) - 1);
    http_head_put_string(text, http_status_reason(head->status));
    http_head_put(text, server_date, sizeof(server_date) - 1);
    http_head_put(text, head->date, HTTP_RESPONSE_DATE_BYTES);
    http_head_put(text, "\r\n", 2);
}

static void http_head_put_field(struct http_head_text *text, const char *name, const char *value)
{
    RM_ASSERT(name != NULL && value != NULL);
    http_head_put_string(text, name);
    http_head_put(text, ": ", 2);
    http_head_put_string(text, value);
    http_head_put(text, "\r\n", 2);
}

/* Content-Type and the body's framing; a status without content gets neither. */
static void http_head_put_body_fields(struct http_head_text *text,
                                      const struct http_response_head *head)
{
    static const char type_name[] = "Content-Type: ";
    static const char length_name[] = "Content-Length: ";
    static const char chunked[] = "Transfer-Encoding: chunked\r\n";
    bool has_content = head->status >= 200 && head->status != 204 && head->status != 304;
    RM_ASSERT(has_content || head->framing == HTTP_FRAMING_LENGTH);
    if (!has_content) {
        return;
    }
    if (head->content_type != NULL) {
        http_head_put(text, type_name, sizeof(type_name) - 1);
        http_head_put_string(text, head->content_type);
        http_head_put(text, "\r\n", 2);
    }
    if (head->framing == HTTP_FRAMING_LENGTH) {
        char digits[HTTP_RESPONSE_DECIMAL_MAX];
        http_head_put(text, length_name, sizeof(length_name) - 1);
        http_head_put(text, digits, http_response_decimal(digits, head->body_length));
        http_head_put(text, "\r\n", 2);
    } else if (head->framing == HTTP_FRAMING_CHUNKED) {
        http_head_put(text, chunked, sizeof(chunked) - 1);
    }
}

/* Writes what fits in `size` bytes at data; returns the head's whole length. */
static size_t http_head_write(char *data, size_t size, const struct http_response_head *head)
{
    RM_ASSERT(data != NULL);
    RM_ASSERT(head->headers != NULL || head->header_count == 0);
    struct http_head_text text = {data, size, 0};
    http_head_put_start(&text, head);
    for (size_t i = 0; i < head->header_count; i++) {
        http_head_put_field(&text, head->headers[i].name, head->headers[i].value);
    }
    http_head_put_body_fields(&text, head);
    if (head->close) {
        http_head_put(&text, "Connection: close\r\n\r\n", 21);
    } else if (head->keep_alive) {
        http_head_put(&text, "Connection: keep-alive\r\n\r\n", 26);
    } else {
        http_head_put(&text, "\r\n", 2);
    }
    return text.used;
}

size_t http_response_head_write(char *data, size_t size, const struct http_response_head *head)
{
    RM_ASSERT(size > 0);
    size_t length = http_head_write(data, size, head);
    return length < size ? length : 0;
}

/* The head goes straight into the output's free room. Only when it did not fit there is it
 * written again, after the room is made; when just the body did not fit, realloc keeps the
 * head's bytes. */
int http_response_append(struct http_output *output, const struct http_response_head *head,
                         const char *body)
{
    RM_ASSERT(head->framing == HTTP_FRAMING_LENGTH);
    size_t body_length = head->omit_body ? 0 : head->body_length;
    if (output->data == NULL && http_output_reserve(output, HTTP_OUTPUT_INITIAL_BYTES) != 0) {
        return -ENOMEM;
    }
    size_t room = output->capacity - output->length;
    size_t head_length = http_head_write(output->data + output->length, room, head);
    RM_ASSERT(head_length < HTTP_RESPONSE_HEAD_MAX);
    if (head_length + body_length > room) {
        if (http_output_reserve(output, head_length + body_length) != 0) {
            return -ENOMEM;
        }
        if (head_length > room) {
            http_head_write(output->data + output->length, head_length, head);
        }
    }
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

/* The digit count comes first so that digits are written in place, last to first; the
 * divisions are by constants, which compile to multiplications. */
size_t http_response_decimal(char *dst, uint64_t value)
{
    size_t count = 1;
    for (uint64_t rest = value / 10; rest != 0; rest /= 10) {
        count++;
    }
    RM_ASSERT(count <= HTTP_RESPONSE_DECIMAL_MAX);
    for (size_t i = count; i-- > 0; value /= 10) {
        dst[i] = (char)('0' + value % 10);
    }
    RM_ASSERT(value == 0);
    return count;
}

size_t http_response_hex(char *dst, uint64_t value)
{
    static const char hex_digits[] = "0123456789abcdef";
    size_t bits = value == 0 ? 1 : 64 - (size_t)__builtin_clzll(value);
    size_t count = (bits + 3) / 4;
    RM_ASSERT(count >= 1 && count <= HTTP_RESPONSE_HEX_MAX);
    for (size_t i = count; i-- > 0; value >>= 4) {
        dst[i] = hex_digits[value & 0xf];
    }
    return count;
}

size_t http_response_json_escape(char *dst, size_t size, const char *text)
{
    RM_ASSERT(size >= 1);
    size_t used = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        char escaped[6] = {(char)*p};
        size_t length = 1;
        if (*p == '"' || *p == '\\') {
            escaped[0] = '\\';
            escaped[1] = (char)*p;
            length = 2;
        } else if (*p < 0x20) {
            memcpy(escaped, "\\u00", 4);
            escaped[4] = (char)('0' + (*p >> 4));
            http_response_hex(&escaped[5], *p & 0xfu);
            length = 6;
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
