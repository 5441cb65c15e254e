#ifndef RM_HTTP_CHUNKED_H
#define RM_HTTP_CHUNKED_H

/* Incremental decoder for the chunked transfer coding (RFC 9112 section 7.1). It decodes in
 * place: chunk data is moved down over the framing bytes, so the decoded body ends up
 * contiguous right after the request headers. Every byte is consumed as it arrives (framing
 * bytes only change the decoder's state), so the caller never keeps a partial line around and
 * may move the buffer between calls.
 *
 * Strictness, because lenient chunk parsing is a known request-smuggling vector: every line of
 * the chunked body must end with CRLF (RFC 9112 section 2.2 lets recipients accept a bare LF
 * only in the start line and header fields), the size is 1 to 16 hex digits, whitespace is
 * accepted only before a ';' extension, and trailer fields follow the header field rules. */

#include <stddef.h>
#include <stdint.h>

struct http_limits;
struct http_error;

#define HTTP_CHUNKED_LINE_MAX_BYTES 4096 /* chunk-size line with its extensions and CRLF */
#define HTTP_CHUNKED_SIZE_DIGITS_MAX 16  /* 64 bits of hex */
/* Framing overhead is refused once it passes this many bytes and 4 times the decoded data,
 * as h2o does: it bounds the work a client can cause per body byte (tiny chunks). */
#define HTTP_CHUNKED_OVERHEAD_MIN_BYTES (100 * 1024)

struct http_chunked {
    const struct http_limits *limits;
    uint64_t remaining;     /* data bytes left in the current chunk */
    uint64_t decoded;       /* data bytes decoded so far */
    uint64_t overhead;      /* framing bytes so far */
    uint32_t line_bytes;    /* of the current chunk-size line, or of the whole trailer section */
    uint32_t trailer_count;
    uint8_t digits;
    uint8_t state;
};

void http_chunked_init(struct http_chunked *decoder, const struct http_limits *limits);

/* Decodes buffer[*input .. length): data bytes move down to buffer + *output, and both offsets
 * advance. Returns 1 when the last chunk and the trailer section have ended (*input is then
 * just past the body, and the bytes after it belong to the next request), 0 when every byte
 * was used and more are needed, -1 with err filled when the body is invalid (400, 413 for a
 * body over max_body_bytes, 431 for a trailer section over max_header_bytes or with more
 * than max_headers fields). */
int http_chunked_decode(struct http_chunked *decoder, char *buffer, size_t *output,
                        size_t *input, size_t length, struct http_error *err);

#endif
