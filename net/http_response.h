#ifndef RM_HTTP_RESPONSE_H
#define RM_HTTP_RESPONSE_H

/* Serialisation of responses into a connection's output buffer. Pipelined responses are
 * appended one after the other and leave in as few sends as possible. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/http_server.h"

#define HTTP_RESPONSE_DATE_BYTES 29 /* "Sun, 06 Nov 1994 08:49:37 GMT" */
#define HTTP_RESPONSE_HEAD_MAX 8192 /* a head longer than this is a programmer error */
#define HTTP_RESPONSE_DECIMAL_MAX 20 /* digits of UINT64_MAX */
#define HTTP_RESPONSE_HEX_MAX 16 /* hex digits of UINT64_MAX */

/* How the body's end is shown: Content-Length (when the status has content), chunks, or the
 * connection's close. */
enum http_framing { HTTP_FRAMING_LENGTH, HTTP_FRAMING_CHUNKED, HTTP_FRAMING_CLOSE };

struct http_output {
    char *data;
    size_t length;
    size_t capacity;
    size_t sent;
};

struct http_response_head {
    int status;
    const char *date; /* HTTP_RESPONSE_DATE_BYTES characters */
    const char *content_type;
    const struct http_response_header *headers;
    size_t header_count;
    size_t body_length; /* HTTP_FRAMING_LENGTH only */
    enum http_framing framing;
    bool keep_alive;
    bool close; /* Connection: close */
    bool omit_body; /* HEAD, or statuses without content */
};

/* Writes the status line and headers, ending with the empty line, into text. Returns the
 * length, or 0 when the head does not fit in `size`. */
size_t http_response_head_write(char *text, size_t size, const struct http_response_head *head);
/* Appends the head (which must fit in HTTP_RESPONSE_HEAD_MAX) and, unless omit_body, the
 * body. Returns 0 or -ENOMEM (the output is then unchanged). */
int http_response_append(struct http_output *output, const struct http_response_head *head,
                         const char *body);
/* Appends the interim "HTTP/1.1 100 Continue" response. */
int http_response_append_continue(struct http_output *output);
/* Formats the IMF-fixdate of `seconds` since the epoch into date (30 bytes, NUL included). */
void http_response_format_date(char *date, long long seconds);
/* Writes value in decimal (at most HTTP_RESPONSE_DECIMAL_MAX digits, no NUL); returns the
 * digit count. */
size_t http_response_decimal(char *dst, uint64_t value);
/* Writes value in lowercase hex (at most HTTP_RESPONSE_HEX_MAX digits, no NUL); returns the
 * digit count. */
size_t http_response_hex(char *dst, uint64_t value);
/* Escapes text as the contents of a JSON string into dst; returns bytes written (< size). */
size_t http_response_json_escape(char *dst, size_t size, const char *text);
void http_output_reset(struct http_output *output);
void http_output_free(struct http_output *output);

#endif
