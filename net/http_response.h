#ifndef RM_HTTP_RESPONSE_H
#define RM_HTTP_RESPONSE_H

/* Serialisation of responses into a connection's output buffer. Pipelined responses are
 * appended one after the other and leave in as few sends as possible. */

#include <stdbool.h>
#include <stddef.h>

#include "net/http_server.h"

#define HTTP_RESPONSE_DATE_BYTES 29 /* "Sun, 06 Nov 1994 08:49:37 GMT" */

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
    size_t body_length;
    bool keep_alive;
    bool close; /* Connection: close */
    bool omit_body; /* HEAD, or statuses without content */
};

/* Appends the status line, headers and (unless omit_body) the body. Returns 0 or -ENOMEM
 * (the output is then unchanged). */
int http_response_append(struct http_output *output, const struct http_response_head *head,
                         const char *body);
/* Appends the interim "HTTP/1.1 100 Continue" response. */
int http_response_append_continue(struct http_output *output);
/* Formats the IMF-fixdate of `seconds` since the epoch into date (30 bytes, NUL included). */
void http_response_format_date(char *date, long long seconds);
/* Escapes text as the contents of a JSON string into dst; returns bytes written (< size). */
size_t http_response_json_escape(char *dst, size_t size, const char *text);
void http_output_reset(struct http_output *output);
void http_output_free(struct http_output *output);

#endif
