#ifndef RM_HTTP_REQUEST_H
#define RM_HTTP_REQUEST_H

/* A parsed HTTP/1.x request and the incremental per-connection reader that frames requests
 * out of a byte stream (request line, headers, Content-Length or chunked body), enforcing the
 * limits. Pointers in `struct http_request` point into the reader's buffer and stay valid
 * until `http_reader_consume()`. Nothing here does I/O. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/http_chunked.h"

#define HTTP_HEADERS_MAX 128 /* hard ceiling; the configured limit may be lower */
#define HTTP_READER_INITIAL_BYTES 4096
#define HTTP_READER_SLACK_BYTES (64 * 1024) /* pipelined look-ahead beyond the limits */

enum http_method {
    HTTP_METHOD_OTHER,
    HTTP_METHOD_GET,
    HTTP_METHOD_HEAD,
    HTTP_METHOD_POST,
    HTTP_METHOD_PUT,
    HTTP_METHOD_DELETE,
    HTTP_METHOD_OPTIONS,
    HTTP_METHOD_PATCH,
};

struct http_slice {
    const char *base;
    size_t length;
};

struct http_header {
    struct http_slice name;
    struct http_slice value;
};

/* Request targets are origin-form ("/path?query"), "*" (OPTIONS only) or absolute-form
 * ("http://host/path?query", scheme http or https). For absolute-form, `target` keeps the URI
 * as sent while `path` and `query` are extracted from it (`path` is "/" when the URI has none);
 * the Host header is still required for HTTP/1.1. Authority-form (CONNECT) is refused (400). */
struct http_request {
    enum http_method method;
    struct http_slice method_name;
    struct http_slice target; /* as sent */
    struct http_slice path;   /* origin-form target up to '?' */
    struct http_slice query;  /* after '?', may be empty */
    int version_minor;        /* 0 or 1 */
    struct http_header headers[HTTP_HEADERS_MAX];
    uint32_t header_count;
    bool keep_alive;       /* after Connection header and version defaults */
    bool expect_continue;  /* Expect: 100-continue (ignored in HTTP/1.0, as RFC 9110 says) */
    bool chunked;          /* Transfer-Encoding: chunked */
    bool has_content_length;
    uint64_t content_length; /* as declared; 0 without Content-Length (chunked included) */
    struct http_slice body; /* decoded body (chunked bodies are de-chunked in place) */
};

struct http_limits {
    uint32_t max_uri_bytes;     /* request-target length; longer: 414 */
    uint32_t max_header_bytes;  /* request line plus headers; larger: 431 */
    uint32_t max_headers;       /* header count; more: 431 */
    uint64_t max_body_bytes;    /* declared or decoded body; larger: 413 */
};

/* Why a request was refused: the status to answer and a message for the client. After an
 * error the connection's framing is unsure, so the server answers and closes. */
struct http_error {
    int status;
    const char *message;
};

enum http_reader_state {
    HTTP_READER_IDLE,    /* no bytes of a next request buffered */
    HTTP_READER_HEADERS, /* part of a request line or headers buffered */
    HTTP_READER_BODY,    /* headers complete, body incomplete */
};

/* All fields are private to http_reader.c. The offsets from `consumed` to `body_length` count
 * from `start`, so that moving the live bytes down only changes `start` and `length`. */
struct http_reader {
    const struct http_limits *limits;
    char *buffer;
    size_t capacity;
    size_t length;        /* bytes buffered, from buffer[0] */
    size_t start;         /* where the current request begins */
    size_t consumed;      /* bytes of the current complete request (headers + framed body) */
    size_t header_length; /* > 0 once the current request's headers are parsed */
    size_t scanned;       /* header bytes already searched for the end of the header section */
    size_t body_output;   /* chunked: end of the decoded body */
    size_t body_input;    /* chunked: next encoded byte */
    size_t body_length;   /* once complete */
    char *retired;        /* old buffer still holding a handed-out request, freed on consume */
    struct http_chunked chunked;
    struct http_error error; /* sticky: status 0 until the stream turns out invalid */
    struct http_request request;
    bool line_checked;    /* the request line is complete and valid */
    bool head_moved;      /* the buffer moved after the headers were parsed */
    bool complete;        /* the whole current request is buffered */
    bool returned;        /* handed out by http_reader_next, not consumed yet */
    bool continue_pending;
};

/* Returns a header's value or NULL; name compared case-insensitively. */
const struct http_slice *http_request_header(const struct http_request *request,
                                             const char *name);

void http_reader_init(struct http_reader *reader, const struct http_limits *limits);
void http_reader_free(struct http_reader *reader);

/* Appends bytes read from the socket and frames as far as it can. Returns 0, or -1 with err
 * filled when the buffered bytes can never form a valid request within the limits (the same
 * error http_reader_next then reports), when more than HTTP_READER_SLACK_BYTES of pipelined
 * input waits behind a request nobody consumed (429), or when memory runs out (503). Feeding
 * while a request is handed out is fine: that request's bytes do not move.
 * The buffer starts at HTTP_READER_INITIAL_BYTES, doubles, and never exceeds
 * max_header_bytes + max_body_bytes + HTTP_READER_SLACK_BYTES. */
int http_reader_feed(struct http_reader *reader, const char *data, size_t length,
                     struct http_error *err);

/* Frames the next request. Returns 1 and fills *request (valid until consume) when a whole
 * request with its body is buffered; 0 when more bytes are needed; -1 with err filled when
 * the request is invalid (the connection must then be closed after the error response). */
int http_reader_next(struct http_reader *reader, struct http_request **request,
                     struct http_error *err);

/* Drops the bytes of the request last returned by http_reader_next. Calling next again before
 * consume returns the same request. */
void http_reader_consume(struct http_reader *reader);

/* True once, right after the headers of a request with `Expect: 100-continue` are complete
 * and its body (chunked, or Content-Length > 0) has not started to arrive: the server then
 * sends "100 Continue". False when the client sent body bytes without waiting. */
bool http_reader_take_continue(struct http_reader *reader);

/* While a complete request waits for consume, the state describes the bytes after it. */
enum http_reader_state http_reader_state(const struct http_reader *reader);

const char *http_status_reason(int status);

#endif
