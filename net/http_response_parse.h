#ifndef RM_HTTP_RESPONSE_PARSE_H
#define RM_HTTP_RESPONSE_PARSE_H

/* The client side of HTTP/1.x framing: a stateless parser for a response's status line and
 * header fields (picohttpparser style: no allocation, no state between calls, slices into the
 * caller's buffer) and an incremental body decoder for Content-Length, chunked and
 * read-until-close bodies.
 *
 * Upstream bytes are untrusted. Every malformed or oversized input is a returned error with a
 * message; nothing here asserts on input. Errors are found left to right and depend only on the
 * bytes before the point of failure, so a stream fed in any pieces gives the same answer as the
 * stream fed at once. Errors use `struct http_error` with status 502 (the gateway's answer to
 * an upstream that broke the protocol). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/http_chunked.h"
#include "net/http_request.h"

#define HTTP_RESPONSE_PARSE_PARTIAL (-2)
#define HTTP_RESPONSE_PARSE_INVALID (-1)
#define HTTP_RESPONSE_PARSE_STATUS 502

struct http_response_limits {
    uint32_t max_status_line_bytes; /* "HTTP/1.1 200 OK" with its line end */
    uint32_t max_header_bytes;      /* status line, fields and the empty line */
    uint32_t max_headers;           /* at most HTTP_HEADERS_MAX */
    uint64_t max_body_bytes;        /* declared or decoded */
};

enum http_response_framing {
    HTTP_RESPONSE_FRAMING_NONE,    /* HEAD, 1xx, 204, 304: no body whatever the fields say */
    HTTP_RESPONSE_FRAMING_LENGTH,  /* Content-Length */
    HTTP_RESPONSE_FRAMING_CHUNKED, /* Transfer-Encoding: chunked */
    HTTP_RESPONSE_FRAMING_CLOSE,   /* neither: the body ends when the server closes */
};

struct http_response_parsed {
    int status;        /* 100..999 */
    int version_minor; /* 0 or 1 */
    struct http_slice reason;
    struct http_header headers[HTTP_HEADERS_MAX];
    uint32_t header_count;
    enum http_response_framing framing;
    uint64_t content_length; /* with FRAMING_LENGTH */
    bool keep_alive;         /* the connection may carry another request after this body */
    bool event_stream;       /* Content-Type: text/event-stream */
};

/* Parses a response head at the start of buffer. `no_body` is set for responses to HEAD.
 * Returns the head's length (status line through the empty line), PARTIAL while the bytes
 * are a valid prefix, or INVALID with err filled. Only the first max_header_bytes are looked at:
 * a head that has not ended by then is an error. */
int http_response_parse_head(const char *buffer, size_t length,
                             const struct http_response_limits *limits, bool no_body,
                             struct http_response_parsed *response, struct http_error *err);

/* A header's value by case-insensitive name, or NULL. */
const struct http_slice *http_response_parse_header(const struct http_response_parsed *response,
                                                    const char *name);

/* The body decoder of one response. All fields are private. */
struct http_response_body {
    struct http_limits chunked_limits;
    struct http_chunked chunked;
    enum http_response_framing framing;
    uint64_t max_body_bytes;
    uint64_t remaining; /* FRAMING_LENGTH: bytes still to come */
    uint64_t decoded;
    bool done;
};

void http_response_body_init(struct http_response_body *body,
                             const struct http_response_parsed *response,
                             const struct http_response_limits *limits);

/* Decodes data[0, length) in place: the body's bytes end up in data[0, *decoded) (chunk
 * framing is removed), *consumed tells how many input bytes belonged to this body. Returns 1
 * once the body is complete (bytes from *consumed on are not part of it), 0 when every byte
 * was used and more are needed, INVALID with err filled. */
int http_response_body_decode(struct http_response_body *body, char *data, size_t length,
                              size_t *consumed, size_t *decoded, struct http_error *err);

/* The server closed the connection. Returns 1 when that ends the body (read-until-close, or a
 * body that had already ended), INVALID with err filled when the body was cut short. */
int http_response_body_eof(struct http_response_body *body, struct http_error *err);

bool http_response_body_done(const struct http_response_body *body);

#endif
