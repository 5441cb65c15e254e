#include "net/http_parse.h"

#include <stdbool.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "core/rm_assert.h"

/* Bit 1: tchar, 2: visible ASCII, 4: field-value byte, 8: hex digit (see http_parse.h). */
const uint8_t http_parse_classes[256] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  4,  0,  0,  0,  0,  0,  0,
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    4,  7,  6,  7,  7,  7,  7,  7,  6,  6,  7,  7,  6,  7,  7,  6,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 6,  6,  6,  6,  6,  6,
    6,  15, 15, 15, 15, 15, 15, 7,  7,  7,  7,  7,  7,  7,  7,  7,
    7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  6,  6,  6,  7,  7,
    7,  15, 15, 15, 15, 15, 15, 7,  7,  7,  7,  7,  7,  7,  7,  7,
    7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  6,  7,  6,  7,  0,
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,
};

/* What the framing fields said, gathered over all header fields before deciding. */
struct http_parse_framing {
    const struct http_slice *transfer_encoding;
    uint32_t host_count;
    bool expect_continue;
    bool expect_other;
    bool connection_close;
    bool connection_keep_alive;
};

int http_parse_fail(struct http_error *err, int status, const char *message)
{
    RM_ASSERT(status >= 400 && status <= 599);
    RM_ASSERT(message != NULL);
    err->status = status;
    err->message = message;
    return HTTP_PARSE_INVALID;
}

/* The first position in [position, end) whose byte may not appear in a request-target (a
 * control, space, DEL or non-ASCII byte), or end. Targets can be long, so 16 bytes at a time. */
static inline size_t http_parse_scan_target(const char *buffer, size_t position, size_t end)
{
    RM_ASSERT(position <= end);
#ifdef __SSE2__
    const __m128i space = _mm_set1_epi8(0x20);
    const __m128i del = _mm_set1_epi8(0x7F);
    while (end - position >= 16) {
        __m128i bytes = _mm_loadu_si128((const __m128i *)(const void *)(buffer + position));
        __m128i low = _mm_cmpeq_epi8(_mm_min_epu8(bytes, space), bytes);
        __m128i high = _mm_cmpeq_epi8(_mm_max_epu8(bytes, del), bytes);
        unsigned mask = (unsigned)_mm_movemask_epi8(_mm_or_si128(low, high));
        if (mask != 0) {
            return position + (size_t)__builtin_ctz(mask);
        }
        position += 16;
    }
#endif
    while (position < end && HTTP_PARSE_IS(buffer[position], HTTP_PARSE_TARGET)) {
        position++;
    }
    RM_ASSERT(position <= end);
    return position;
}

/* The first position in [position, end) whose byte may not appear in a field value (a
 * control byte other than HTAB, or DEL; CR and LF included), or end. */
static inline size_t http_parse_scan_value(const char *buffer, size_t position, size_t end)
{
    RM_ASSERT(position <= end);
#ifdef __SSE2__
    const __m128i control = _mm_set1_epi8(0x1F);
    const __m128i tab = _mm_set1_epi8('\t');
    const __m128i del = _mm_set1_epi8(0x7F);
    while (end - position >= 16) {
        __m128i bytes = _mm_loadu_si128((const __m128i *)(const void *)(buffer + position));
        __m128i low = _mm_cmpeq_epi8(_mm_min_epu8(bytes, control), bytes);
        low = _mm_andnot_si128(_mm_cmpeq_epi8(bytes, tab), low);
        __m128i bad = _mm_or_si128(low, _mm_cmpeq_epi8(bytes, del));
        unsigned mask = (unsigned)_mm_movemask_epi8(bad);
        if (mask != 0) {
            return position + (size_t)__builtin_ctz(mask);
        }
        position += 16;
    }
#endif
    while (position < end && HTTP_PARSE_IS(buffer[position], HTTP_PARSE_VALUE)) {
        position++;
    }
    RM_ASSERT(position <= end);
    return position;
}

/* Compares `length` bytes against a lowercase literal, ignoring the case of ASCII letters. */
static bool http_parse_equal_lower(const char *base, const char *literal, size_t length)
{
    RM_ASSERT(base != NULL);
    RM_ASSERT(literal != NULL);
    for (size_t i = 0; i < length; i++) {
        char byte = base[i];
        if (byte >= 'A' && byte <= 'Z') {
            byte = (char)(byte | 0x20);
        }
        if (byte != literal[i]) {
            return false;
        }
    }
    return true;
}

static bool http_parse_slice_is(const struct http_slice *slice, const char *literal,
                                size_t length)
{
    return slice->length == length && http_parse_equal_lower(slice->base, literal, length);
}

/* Consumes the line end at *position, which holds CR or LF: CRLF, or a bare LF (RFC 9112
 * section 2.2 lets recipients accept it). A CR followed by anything else is refused. */
static int http_parse_line_end(const char *buffer, size_t length, size_t *position,
                               struct http_error *err)
{
    size_t at = *position;
    RM_ASSERT(at < length);
    RM_ASSERT(buffer[at] == '\r' || buffer[at] == '\n');
    if (buffer[at] == '\r') {
        if (at + 1 == length) {
            return HTTP_PARSE_PARTIAL;
        }
        if (buffer[at + 1] != '\n') {
            return http_parse_fail(err, 400, "A CR must be followed by LF; end lines with CRLF");
        }
        at++;
    }
    *position = at + 1;
    return 0;
}

int http_parse_empty_lines(const char *buffer, size_t length, size_t *position,
                           struct http_error *err)
{
    RM_ASSERT(*position == 0);
    RM_ASSERT(buffer != NULL || length == 0);
    for (uint32_t lines = 0;; lines++) {
        if (*position == length) {
            return HTTP_PARSE_PARTIAL;
        }
        char byte = buffer[*position];
        if (byte != '\r' && byte != '\n') {
            return 0;
        }
        if (lines == HTTP_PARSE_EMPTY_LINES_MAX) {
            return http_parse_fail(err, 400, "Too many empty lines before the request line");
        }
        int result = http_parse_line_end(buffer, length, position, err);
        if (result != 0) {
            return result;
        }
    }
}

static enum http_method http_parse_method_lookup(const char *name, size_t length)
{
    RM_ASSERT(name != NULL);
    RM_ASSERT(length > 0);
    switch (length) {
    case 3:
        if (memcmp(name, "GET", 3) == 0) {
            return HTTP_METHOD_GET;
        }
        return memcmp(name, "PUT", 3) == 0 ? HTTP_METHOD_PUT : HTTP_METHOD_OTHER;
    case 4:
        if (memcmp(name, "POST", 4) == 0) {
            return HTTP_METHOD_POST;
        }
        return memcmp(name, "HEAD", 4) == 0 ? HTTP_METHOD_HEAD : HTTP_METHOD_OTHER;
    case 5:
        return memcmp(name, "PATCH", 5) == 0 ? HTTP_METHOD_PATCH : HTTP_METHOD_OTHER;
    case 6:
        return memcmp(name, "DELETE", 6) == 0 ? HTTP_METHOD_DELETE : HTTP_METHOD_OTHER;
    case 7:
        return memcmp(name, "OPTIONS", 7) == 0 ? HTTP_METHOD_OPTIONS : HTTP_METHOD_OTHER;
    default:
        return HTTP_METHOD_OTHER;
    }
}

/* method SP: a case-sensitive token (RFC 9110 9.1), then exactly one space. */
static int http_parse_method(const char *buffer, size_t length, size_t *position,
                             struct http_request *request, struct http_error *err)
{
    size_t start = *position;
    size_t at = start;
    RM_ASSERT(start < length);
    while (at < length && HTTP_PARSE_IS(buffer[at], HTTP_PARSE_TOKEN)) {
        if (at - start == HTTP_PARSE_METHOD_MAX_BYTES) {
            return http_parse_fail(err, 501, "Method is not implemented by this server");
        }
        at++;
    }
    if (at == length) {
        return HTTP_PARSE_PARTIAL;
    }
    if (at == start || buffer[at] != ' ') {
        return http_parse_fail(err, 400,
                               "Request line must be: METHOD SP target SP HTTP/1.1 CRLF");
    }
    request->method_name = (struct http_slice){buffer + start, at - start};
    request->method = http_parse_method_lookup(buffer + start, at - start);
    *position = at + 1;
    RM_ASSERT(*position <= length);
    return 0;
}

static void http_parse_split_query(struct http_request *request, const char *origin,
                                   size_t length)
{
    RM_ASSERT(length > 0);
    RM_ASSERT(origin[0] == '/');
    const char *mark = memchr(origin, '?', length);
    if (mark == NULL) {
        request->path = (struct http_slice){origin, length};
        request->query = (struct http_slice){origin + length, 0};
        return;
    }
    size_t path_length = (size_t)(mark - origin);
    request->path = (struct http_slice){origin, path_length};
    request->query = (struct http_slice){mark + 1, length - path_length - 1};
}

/* "http://host/path?query" (RFC 9112 3.2.2: servers must accept it). The path is extracted;
 * the authority is not used, and user information in it is refused (RFC 9110 4.2.4). */
static int http_parse_absolute_form(struct http_request *request, struct http_error *err)
{
    const char *uri = request->target.base;
    size_t length = request->target.length;
    size_t at = 0;
    RM_ASSERT(uri != NULL);
    RM_ASSERT(length > 0);
    if (length >= 7 && http_parse_equal_lower(uri, "http://", 7)) {
        at = 7;
    } else if (length >= 8 && http_parse_equal_lower(uri, "https://", 8)) {
        at = 8;
    } else {
        return http_parse_fail(err, 400, "Request target must be a path starting with '/'");
    }
    size_t authority = at;
    while (at < length && uri[at] != '/' && uri[at] != '?') {
        if (uri[at] == '@') {
            return http_parse_fail(err, 400, "Request target must not contain user information");
        }
        at++;
    }
    if (at == authority) {
        return http_parse_fail(err, 400, "Request target URI has no host");
    }
    if (at < length && uri[at] == '/') {
        http_parse_split_query(request, uri + at, length - at);
        return 0;
    }
    /* No path: the origin-form equivalent is "/" (RFC 9112 3.2.1). */
    request->path = (struct http_slice){"/", 1};
    request->query = at == length ? (struct http_slice){uri + length, 0}
                                  : (struct http_slice){uri + at + 1, length - at - 1};
    return 0;
}

static int http_parse_target_form(struct http_request *request, struct http_error *err)
{
    const struct http_slice *target = &request->target;
    RM_ASSERT(target->length > 0);
    RM_ASSERT(target->base != NULL);
    if (target->base[0] == '/') {
        http_parse_split_query(request, target->base, target->length);
        return 0;
    }
    if (target->base[0] == '*' && target->length == 1) {
        if (request->method != HTTP_METHOD_OPTIONS) {
            return http_parse_fail(err, 400, "Request target '*' is only allowed with OPTIONS");
        }
        request->path = *target;
        request->query = (struct http_slice){target->base + 1, 0};
        return 0;
    }
    return http_parse_absolute_form(request, err);
}

/* request-target SP. Visible ASCII only: clients percent-encode everything else. The length
 * is checked while scanning, so an endless target is a 414 before its end arrives. */
static int http_parse_target(const char *buffer, size_t length, size_t *position,
                             const struct http_limits *limits, struct http_request *request,
                             struct http_error *err)
{
    size_t start = *position;
    RM_ASSERT(start <= length);
    RM_ASSERT(limits->max_uri_bytes > 0);
    size_t bound = length - start > limits->max_uri_bytes ? start + limits->max_uri_bytes + 1
                                                          : length;
    size_t at = http_parse_scan_target(buffer, start, bound);
    if (at - start > limits->max_uri_bytes) {
        return http_parse_fail(err, 414, "Request target is too long; use a shorter URI");
    }
    if (at == length) {
        return HTTP_PARSE_PARTIAL;
    }
    if (buffer[at] != ' ') {
        return http_parse_fail(err, 400,
                               "Request target has a space or a byte that must be "
                               "percent-encoded");
    }
    if (at == start) {
        return http_parse_fail(err, 400, "Request target is empty; send a path like '/'");
    }
    request->target = (struct http_slice){buffer + start, at - start};
    *position = at + 1;
    return http_parse_target_form(request, err);
}

/* "HTTP/" DIGIT "." DIGIT, then the line end. A well-formed version other than 1.0 or 1.1
 * (also "HTTP/2" or "HTTP/3" without a minor digit) is a 505, anything else a 400. */
static int http_parse_version(const char *buffer, size_t length, size_t *position,
                              struct http_request *request, struct http_error *err)
{
    static const char prefix[] = "HTTP/";
    static const char *const malformed = "Request line must end with HTTP/1.1 or HTTP/1.0";
    size_t at = *position;
    RM_ASSERT(at <= length);
    for (size_t i = 0; i < sizeof(prefix) - 1; i++, at++) {
        if (at == length) {
            return HTTP_PARSE_PARTIAL;
        }
        if (buffer[at] != prefix[i]) {
            return http_parse_fail(err, 400, malformed);
        }
    }
    if (at == length) {
        return HTTP_PARSE_PARTIAL;
    }
    if (buffer[at] < '0' || buffer[at] > '9') {
        return http_parse_fail(err, 400, malformed);
    }
    int major = buffer[at++] - '0';
    int minor = -1;
    if (at < length && buffer[at] == '.') {
        at++;
        if (at == length) {
            return HTTP_PARSE_PARTIAL;
        }
        if (buffer[at] < '0' || buffer[at] > '9') {
            return http_parse_fail(err, 400, malformed);
        }
        minor = buffer[at++] - '0';
    }
    if (at == length) {
        return HTTP_PARSE_PARTIAL;
    }
    if (buffer[at] != '\r' && buffer[at] != '\n') {
        return http_parse_fail(err, 400, malformed);
    }
    int result = http_parse_line_end(buffer, length, &at, err);
    if (result != 0) {
        return result;
    }
    if (major != 1 || (minor != 0 && minor != 1)) {
        return http_parse_fail(err, 505, "HTTP version is not supported; use HTTP/1.1");
    }
    RM_ASSERT(at <= length);
    request->version_minor = minor;
    *position = at;
    return 0;
}

int http_parse_request_line(const char *buffer, size_t length, const struct http_limits *limits,
                            struct http_request *request, struct http_error *err)
{
    RM_ASSERT(buffer != NULL || length == 0);
    RM_ASSERT(limits->max_uri_bytes <= HTTP_PARSE_HEADER_BYTES_CEILING);
    size_t position = 0;
    int result = http_parse_empty_lines(buffer, length, &position, err);
    if (result == 0) {
        result = http_parse_method(buffer, length, &position, request, err);
    }
    if (result == 0) {
        result = http_parse_target(buffer, length, &position, limits, request, err);
    }
    if (result == 0) {
        result = http_parse_version(buffer, length, &position, request, err);
    }
    if (result != 0) {
        return result;
    }
    /* The line is bounded by its parts' limits, so its length fits an int. */
    RM_ASSERT(position <= length);
    RM_ASSERT(position <= 2 * (size_t)HTTP_PARSE_HEADER_BYTES_CEILING);
    return (int)position;
}

/* field-name ":" OWS field-value OWS line-end. OWS around the value is trimmed. */
static int http_parse_field(const char *buffer, size_t length, size_t *position,
                            struct http_header *header, struct http_error *err)
{
    size_t start = *position;
    size_t at = start;
    RM_ASSERT(start < length);
    RM_ASSERT(header != NULL);
    while (at < length && HTTP_PARSE_IS(buffer[at], HTTP_PARSE_TOKEN)) {
        at++;
    }
    if (at == length) {
        return HTTP_PARSE_PARTIAL;
    }
    if (buffer[at] != ':' || at == start) {
        if (at > start && (buffer[at] == ' ' || buffer[at] == '\t')) {
            return http_parse_fail(err, 400,
                                   "Whitespace before ':' in a header field is not allowed");
        }
        return http_parse_fail(err, 400, "Header field name must be a token followed by ':'");
    }
    header->name = (struct http_slice){buffer + start, at - start};
    at++;
    while (at < length && (buffer[at] == ' ' || buffer[at] == '\t')) {
        at++;
    }
    size_t value = at;
    at = http_parse_scan_value(buffer, at, length);
    if (at == length) {
        return HTTP_PARSE_PARTIAL;
    }
    if (buffer[at] != '\r' && buffer[at] != '\n') {
        return http_parse_fail(err, 400, "Header field value contains a control character");
    }
    size_t end = at;
    while (end > value && (buffer[end - 1] == ' ' || buffer[end - 1] == '\t')) {
        end--;
    }
    header->value = (struct http_slice){buffer + value, end - value};
    int result = http_parse_line_end(buffer, length, &at, err);
    if (result == 0) {
        *position = at;
    }
    return result;
}

static int http_parse_fields(const char *buffer, size_t length, size_t *position,
                             const struct http_limits *limits, struct http_request *request,
                             struct http_error *err)
{
    RM_ASSERT(limits->max_headers <= HTTP_HEADERS_MAX);
    RM_ASSERT(*position <= length);
    size_t at = *position;
    uint32_t count = 0;
    for (;;) {
        if (at == length) {
            return HTTP_PARSE_PARTIAL;
        }
        if (buffer[at] == '\r' || buffer[at] == '\n') {
            break;
        }
        if (buffer[at] == ' ' || buffer[at] == '\t') {
            return http_parse_fail(err, 400,
                                   "Header lines must not start with whitespace (obsolete "
                                   "line folding); send each field on one line");
        }
        if (count == limits->max_headers) {
            return http_parse_fail(err, 431, "Too many header fields; send fewer");
        }
        int result = http_parse_field(buffer, length, &at, &request->headers[count], err);
        if (result != 0) {
            return result;
        }
        count++;
    }
    int result = http_parse_line_end(buffer, length, &at, err);
    if (result != 0) {
        return result;
    }
    request->header_count = count;
    *position = at;
    return 0;
}

/* 1*DIGIT and nothing else: no sign, no spaces, no list (RFC 9112 6.3 lets a recipient
 * accept a list of equal values; refusing it leaves no room for disagreement). */
static int http_parse_content_length(const struct http_slice *value, uint64_t *content_length,
                                     struct http_error *err)
{
    RM_ASSERT(value->base != NULL);
    RM_ASSERT(content_length != NULL);
    if (value->length == 0) {
        return http_parse_fail(err, 400, "Content-Length is empty; send a decimal number");
    }
    uint64_t total = 0;
    for (size_t i = 0; i < value->length; i++) {
        char byte = value->base[i];
        if (byte < '0' || byte > '9') {
            return http_parse_fail(err, 400,
                                   "Content-Length must be one decimal number (no sign, "
                                   "spaces or list)");
        }
        uint64_t digit = (uint64_t)(byte - '0');
        if (total > (UINT64_MAX - digit) / 10) {
            return http_parse_fail(err, 400, "Content-Length is too large");
        }
        total = total * 10 + digit;
    }
    *content_length = total;
    return 0;
}

/* A comma-separated list of connection options; only close and keep-alive matter here. */
static void http_parse_connection(const struct http_slice *value,
                                  struct http_parse_framing *framing)
{
    const char *base = value->base;
    size_t at = 0;
    RM_ASSERT(base != NULL);
    while (at < value->length) {
        while (at < value->length && (base[at] == ',' || base[at] == ' ' || base[at] == '\t')) {
            at++;
        }
        size_t option = at;
        while (at < value->length && base[at] != ',') {
            at++;
        }
        size_t end = at;
        while (end > option && (base[end - 1] == ' ' || base[end - 1] == '\t')) {
            end--;
        }
        if (end - option == 5 && http_parse_equal_lower(base + option, "close", 5)) {
            framing->connection_close = true;
        } else if (end - option == 10 && http_parse_equal_lower(base + option, "keep-alive", 10)) {
            framing->connection_keep_alive = true;
        }
    }
    RM_ASSERT(at == value->length);
}

static int http_parse_framing_field(const struct http_header *header,
                                    struct http_parse_framing *framing,
                                    struct http_request *request, struct http_error *err)
{
    const struct http_slice *name = &header->name;
    const struct http_slice *value = &header->value;
    RM_ASSERT(name->length > 0);
    RM_ASSERT(value->base != NULL);
    if (http_parse_slice_is(name, "host", 4)) {
        if (++framing->host_count > 1) {
            return http_parse_fail(err, 400, "More than one Host header; send exactly one");
        }
    } else if (http_parse_slice_is(name, "content-length", 14)) {
        if (request->has_content_length) {
            return http_parse_fail(err, 400,
                                   "Several Content-Length headers; send exactly one");
        }
        request->has_content_length = true;
        return http_parse_content_length(value, &request->content_length, err);
    } else if (http_parse_slice_is(name, "transfer-encoding", 17)) {
        if (framing->transfer_encoding != NULL) {
            return http_parse_fail(err, 400,
                                   "Several Transfer-Encoding headers; send exactly one");
        }
        framing->transfer_encoding = value;
    } else if (http_parse_slice_is(name, "connection", 10)) {
        http_parse_connection(value, framing);
    } else if (http_parse_slice_is(name, "expect", 6)) {
        if (http_parse_slice_is(value, "100-continue", 12)) {
            framing->expect_continue = true;
        } else {
            framing->expect_other = true;
        }
    }
    return 0;
}

/* Decides the framing once every field is known. Order: missing Host, then the checks that
 * guard against smuggling, then what the server cannot do (501, 413, 417). */
static int http_parse_framing_check(struct http_request *request,
                                    const struct http_parse_framing *framing,
                                    const struct http_limits *limits, struct http_error *err)
{
    bool http11 = request->version_minor == 1;
    RM_ASSERT(request->version_minor == 0 || request->version_minor == 1);
    RM_ASSERT(framing->host_count <= 1);
    if (http11 && framing->host_count == 0) {
        return http_parse_fail(err, 400, "HTTP/1.1 requests need a Host header");
    }
    if (framing->transfer_encoding != NULL) {
        if (!http11) {
            return http_parse_fail(err, 400,
                                   "Transfer-Encoding is not allowed in HTTP/1.0; send "
                                   "Content-Length");
        }
        if (request->has_content_length) {
            return http_parse_fail(err, 400,
                                   "Content-Length and Transfer-Encoding together are not "
                                   "allowed; send one");
        }
        if (!http_parse_slice_is(framing->transfer_encoding, "chunked", 7)) {
            return http_parse_fail(err, 501, "Only Transfer-Encoding: chunked is supported");
        }
        request->chunked = true;
    }
    if (request->content_length > limits->max_body_bytes) {
        return http_parse_fail(err, 413, "Request body is larger than this server accepts");
    }
    /* RFC 9110 10.1.1: a server must ignore an expectation in an HTTP/1.0 request. */
    if (http11 && framing->expect_other) {
        return http_parse_fail(err, 417, "Only Expect: 100-continue is supported");
    }
    request->expect_continue = http11 && framing->expect_continue;
    request->keep_alive = http11 ? !framing->connection_close
                                 : framing->connection_keep_alive && !framing->connection_close;
    return 0;
}

static int http_parse_framing(struct http_request *request, const struct http_limits *limits,
                              struct http_error *err)
{
    struct http_parse_framing framing = {.transfer_encoding = NULL};
    RM_ASSERT(request->header_count <= limits->max_headers);
    RM_ASSERT(limits->max_headers <= HTTP_HEADERS_MAX);
    request->keep_alive = false;
    request->expect_continue = false;
    request->chunked = false;
    request->has_content_length = false;
    request->content_length = 0;
    for (uint32_t i = 0; i < request->header_count; i++) {
        int result = http_parse_framing_field(&request->headers[i], &framing, request, err);
        if (result != 0) {
            return result;
        }
    }
    return http_parse_framing_check(request, &framing, limits, err);
}

int http_parse_request(const char *buffer, size_t length, const struct http_limits *limits,
                       struct http_request *request, struct http_error *err)
{
    RM_ASSERT(limits->max_header_bytes > 0);
    RM_ASSERT(limits->max_header_bytes <= HTTP_PARSE_HEADER_BYTES_CEILING);
    /* Only the first max_header_bytes can hold a valid head, so nothing past them is read. */
    size_t window = length < limits->max_header_bytes ? length : limits->max_header_bytes;
    int result = http_parse_request_line(buffer, window, limits, request, err);
    size_t position = result > 0 ? (size_t)result : 0;
    if (result > 0) {
        result = http_parse_fields(buffer, window, &position, limits, request, err);
    }
    if (result == HTTP_PARSE_PARTIAL && length > window) {
        return http_parse_fail(err, 431,
                               "Request header section is too large; send smaller headers");
    }
    if (result == 0) {
        result = http_parse_framing(request, limits, err);
    }
    if (result != 0) {
        return result;
    }
    RM_ASSERT(position <= window);
    request->body = (struct http_slice){buffer + position, 0};
    return (int)position;
}
