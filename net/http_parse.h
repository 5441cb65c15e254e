#ifndef RM_HTTP_PARSE_H
#define RM_HTTP_PARSE_H

/* The stateless HTTP/1.x request-head parser, in the manner of picohttpparser: it allocates
 * nothing, keeps no state between calls and fills slices pointing into the caller's buffer.
 * Functions return the number of bytes parsed, HTTP_PARSE_PARTIAL when the bytes so far are a
 * valid prefix, or HTTP_PARSE_INVALID with a `struct http_error`.
 *
 * Errors are found left to right and depend only on the bytes before the point of failure, so
 * feeding a stream in any pieces gives the same answer as feeding it at once. Limits are
 * enforced on incomplete input too: a target longer than max_uri_bytes is a 414 as soon as
 * that many target bytes are seen, and a head without its end in the first max_header_bytes
 * is a 431. */

#include <stddef.h>
#include <stdint.h>

#include "net/http_request.h"

#define HTTP_PARSE_PARTIAL (-2)
#define HTTP_PARSE_INVALID (-1)
#define HTTP_PARSE_METHOD_MAX_BYTES 32 /* longer methods are not ours: 501 */
#define HTTP_PARSE_EMPTY_LINES_MAX 2   /* ignored before a request line (RFC 9112 2.2) */
#define HTTP_PARSE_HEADER_BYTES_CEILING (1u << 24) /* so that head lengths fit an int */

/* Byte classes, a bit each, in http_parse_classes. */
#define HTTP_PARSE_TOKEN 1u  /* tchar (RFC 9110 5.6.2) */
#define HTTP_PARSE_TARGET 2u /* visible ASCII: allowed in a request-target */
#define HTTP_PARSE_VALUE 4u  /* SP, HTAB, visible ASCII, obs-text: allowed in a field value */
#define HTTP_PARSE_HEX 8u

extern const uint8_t http_parse_classes[256];
#define HTTP_PARSE_IS(byte, class) ((http_parse_classes[(uint8_t)(byte)] & (class)) != 0)

/* Fills *err and returns HTTP_PARSE_INVALID. */
int http_parse_fail(struct http_error *err, int status, const char *message);

/* Skips the empty lines some clients send after a body (RFC 9112 2.2), but at most
 * HTTP_PARSE_EMPTY_LINES_MAX of them. Returns 0 with *position (which must be 0 on entry) at
 * the first byte that is neither CR nor LF. */
int http_parse_empty_lines(const char *buffer, size_t length, size_t *position,
                           struct http_error *err);

/* Parses the request line at the start of buffer (after at most HTTP_PARSE_EMPTY_LINES_MAX
 * empty lines) into method, method_name, target, path, query and version_minor. Returns the
 * bytes up to and including its line end. */
int http_parse_request_line(const char *buffer, size_t length, const struct http_limits *limits,
                            struct http_request *request, struct http_error *err);

/* Parses a whole request head: the request line, the header fields and the empty line, then
 * interprets the fields that frame the request (Host, Content-Length, Transfer-Encoding,
 * Connection, Expect). Returns the head's length; request->body is left empty at its end.
 * Only the first max_header_bytes of buffer are looked at. */
int http_parse_request(const char *buffer, size_t length, const struct http_limits *limits,
                       struct http_request *request, struct http_error *err);

#endif
