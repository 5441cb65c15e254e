#include "net/http_response_parse.h"

#include <string.h>
#include <strings.h>

#include "core/rm_assert.h"
#include "net/http_parse.h"

#define PARTIAL HTTP_RESPONSE_PARSE_PARTIAL
#define INVALID HTTP_RESPONSE_PARSE_INVALID
#define HTTP_RESPONSE_PARSE_LENGTH_DIGITS_MAX 19 /* fits a uint64_t without overflow */

_Static_assert(HTTP_RESPONSE_PARSE_PARTIAL != HTTP_RESPONSE_PARSE_INVALID, "distinct codes");

static int http_response_parse_fail(struct http_error *err, const char *message)
{
    RM_ASSERT(err != NULL);
    RM_ASSERT(message != NULL);
    return http_parse_fail(err, HTTP_RESPONSE_PARSE_STATUS, message);
}

/* After a CR: LF ends the line (returns the position after it); anything else is invalid. */
static int http_response_parse_line_end(const char *buffer, size_t length, size_t position,
                                        struct http_error *err)
{
    RM_ASSERT(position <= length);
    RM_ASSERT(position > 0 && buffer[position - 1] == '\r');
    if (position == length) {
        return PARTIAL;
    }
    if (buffer[position] != '\n') {
        return http_response_parse_fail(err, "upstream sent a CR not followed by LF");
    }
    return (int)position + 1;
}

/* "HTTP/1.x", SP, three digits, then optionally SP and a reason phrase, then CRLF or LF. */
static int http_response_parse_status_line(const char *buffer, size_t length,
                                           struct http_response_parsed *response,
                                           struct http_error *err)
{
    static const char prefix[] = "HTTP/1.";
    static const char *const bad = "upstream sent a malformed status line; expected "
                                   "\"HTTP/1.x NNN reason\"";
    RM_ASSERT(response != NULL);
    RM_ASSERT(length <= HTTP_PARSE_HEADER_BYTES_CEILING);
    size_t position = 0;
    for (; position < sizeof(prefix) - 1; position++) {
        if (position == length) {
            return PARTIAL;
        }
        if (buffer[position] != prefix[position]) {
            return http_response_parse_fail(err, bad);
        }
    }
    /* The minor version digit, a space and three status digits. */
    int values[2] = {0, 0};
    for (size_t i = 0; i < 5; i++, position++) {
        if (position == length) {
            return PARTIAL;
        }
        char byte = buffer[position];
        bool digit = byte >= '0' && byte <= '9';
        if (i == 1 ? byte != ' ' : !digit) {
            return http_response_parse_fail(err, bad);
        }
        if (i != 1) {
            values[i == 0 ? 0 : 1] = values[i == 0 ? 0 : 1] * 10 + (byte - '0');
        }
    }
    if (values[0] > 1 || values[1] < 100) {
        return http_response_parse_fail(
            err, values[0] > 1 ? "upstream sent an HTTP version other than 1.0 or 1.1"
                               : "upstream sent a status code below 100");
    }
    response->version_minor = values[0];
    response->status = values[1];
    if (position == length) {
        return PARTIAL;
    }
    size_t reason = position;
    if (buffer[position] == ' ') {
        reason = ++position;
        while (position < length && HTTP_PARSE_IS(buffer[position], HTTP_PARSE_VALUE)) {
            position++;
        }
    }
    if (position == length) {
        return PARTIAL;
    }
    response->reason = (struct http_slice){buffer + reason, position - reason};
    if (buffer[position] == '\n') {
        return (int)position + 1;
    }
    if (buffer[position] != '\r') {
        return http_response_parse_fail(err, bad);
    }
    return http_response_parse_line_end(buffer, length, position + 1, err);
}

/* One header field line at buffer[position]. Returns the position after it, or 0 with
 * *end set when this is the empty line that ends the head (position after it in *end). */
static int http_response_parse_field(const char *buffer, size_t length, size_t position,
                                     struct http_header *header, struct http_error *err)
{
    RM_ASSERT(position < length);
    RM_ASSERT(header != NULL);
    size_t name = position;
    while (position < length && HTTP_PARSE_IS(buffer[position], HTTP_PARSE_TOKEN)) {
        position++;
    }
    if (position == length) {
        return PARTIAL;
    }
    if (buffer[position] != ':' || position == name) {
        return http_response_parse_fail(
            err, buffer[name] == ' ' || buffer[name] == '\t'
                     ? "upstream sent a folded header line (obsolete line folding)"
                     : "upstream sent a header field name that is not a token followed by ':'");
    }
    header->name = (struct http_slice){buffer + name, position - name};
    position++;
    while (position < length && (buffer[position] == ' ' || buffer[position] == '\t')) {
        position++;
    }
    size_t value = position;
    while (position < length && HTTP_PARSE_IS(buffer[position], HTTP_PARSE_VALUE)) {
        position++;
    }
    if (position == length) {
        return PARTIAL;
    }
    size_t value_end = position;
    while (value_end > value && (buffer[value_end - 1] == ' ' || buffer[value_end - 1] == '\t')) {
        value_end--;
    }
    header->value = (struct http_slice){buffer + value, value_end - value};
    if (buffer[position] == '\n') {
        return (int)position + 1;
    }
    if (buffer[position] != '\r') {
        return http_response_parse_fail(err, "upstream sent a control character in a header");
    }
    return http_response_parse_line_end(buffer, length, position + 1, err);
}

static int http_response_parse_fields(const char *buffer, size_t length, size_t position,
                                      const struct http_response_limits *limits,
                                      struct http_response_parsed *response,
                                      struct http_error *err)
{
    RM_ASSERT(limits->max_headers <= HTTP_HEADERS_MAX);
    RM_ASSERT(response->header_count == 0);
    for (;;) {
        if (position == length) {
            return PARTIAL;
        }
        if (buffer[position] == '\n') {
            return (int)position + 1;
        }
        if (buffer[position] == '\r') {
            return http_response_parse_line_end(buffer, length, position + 1, err);
        }
        if (response->header_count == limits->max_headers) {
            return http_response_parse_fail(err, "upstream sent more header fields than "
                                                 "limits.max_headers allows");
        }
        struct http_header *header = &response->headers[response->header_count];
        int next = http_response_parse_field(buffer, length, position, header, err);
        if (next < 0) {
            return next;
        }
        response->header_count++;
        position = (size_t)next;
    }
}

static bool http_response_parse_equals(struct http_slice slice, const char *text)
{
    size_t length = strlen(text);
    return slice.length == length && strncasecmp(slice.base, text, length) == 0;
}

static const char *http_response_parse_length(struct http_slice value, uint64_t *out)
{
    if (value.length == 0 || value.length > HTTP_RESPONSE_PARSE_LENGTH_DIGITS_MAX) {
        return "upstream sent a Content-Length that is empty or longer than 19 digits";
    }
    uint64_t number = 0;
    for (size_t i = 0; i < value.length; i++) {
        if (value.base[i] < '0' || value.base[i] > '9') {
            return "upstream sent a Content-Length that is not a decimal number";
        }
        number = number * 10 + (uint64_t)(value.base[i] - '0');
    }
    *out = number;
    return NULL;
}

/* Connection is a comma-separated token list; only "close" and "keep-alive" matter. */
static void http_response_parse_connection(struct http_slice value, bool *close, bool *keep)
{
    size_t start = 0;
    for (size_t i = 0; i <= value.length; i++) {
        if (i < value.length && value.base[i] != ',') {
            continue;
        }
        struct http_slice token = {value.base + start, i - start};
        while (token.length > 0 && (token.base[0] == ' ' || token.base[0] == '\t')) {
            token.base++;
            token.length--;
        }
        while (token.length > 0 &&
               (token.base[token.length - 1] == ' ' || token.base[token.length - 1] == '\t')) {
            token.length--;
        }
        *close = *close || http_response_parse_equals(token, "close");
        *keep = *keep || http_response_parse_equals(token, "keep-alive");
        start = i + 1;
    }
}

static bool http_response_parse_is_event_stream(struct http_slice value)
{
    static const char type[] = "text/event-stream";
    size_t length = sizeof(type) - 1;
    if (value.length < length || strncasecmp(value.base, type, length) != 0) {
        return false;
    }
    return value.length == length || value.base[length] == ';' || value.base[length] == ' ' ||
           value.base[length] == '\t';
}

struct http_response_parse_fields_seen {
    uint32_t lengths;
    uint32_t encodings;
    bool chunked;
    bool close;
    bool keep;
};

static const char *http_response_parse_scan(struct http_response_parsed *response,
                                            struct http_response_parse_fields_seen *seen)
{
    RM_ASSERT(response->header_count <= HTTP_HEADERS_MAX);
    RM_ASSERT(seen->lengths == 0);
    for (uint32_t i = 0; i < response->header_count; i++) {
        const struct http_header *header = &response->headers[i];
        if (http_response_parse_equals(header->name, "content-length")) {
            uint64_t value = 0;
            const char *problem = http_response_parse_length(header->value, &value);
            if (problem != NULL) {
                return problem;
            }
            if (seen->lengths++ > 0 && value != response->content_length) {
                return "upstream sent conflicting Content-Length fields";
            }
            response->content_length = value;
        } else if (http_response_parse_equals(header->name, "transfer-encoding")) {
            seen->encodings++;
            seen->chunked = http_response_parse_equals(header->value, "chunked");
            if (!seen->chunked || seen->encodings > 1) {
                return "upstream sent a Transfer-Encoding other than a single \"chunked\"";
            }
        } else if (http_response_parse_equals(header->name, "connection")) {
            http_response_parse_connection(header->value, &seen->close, &seen->keep);
        } else if (http_response_parse_equals(header->name, "content-type")) {
            response->event_stream = http_response_parse_is_event_stream(header->value);
        }
    }
    return NULL;
}

/* Decides the body framing and persistence (RFC 9112 sections 6.3 and 9.3). */
static int http_response_parse_framing(struct http_response_parsed *response,
                                       const struct http_response_limits *limits, bool no_body,
                                       struct http_error *err)
{
    RM_ASSERT(response->status >= 100);
    RM_ASSERT(response->status <= 999);
    struct http_response_parse_fields_seen seen = {0};
    const char *problem = http_response_parse_scan(response, &seen);
    if (problem == NULL && seen.chunked && seen.lengths > 0) {
        /* RFC 9112 6.3: both at once may be a response-splitting attempt. */
        problem = "upstream sent both Transfer-Encoding and Content-Length";
    }
    if (problem != NULL) {
        return http_response_parse_fail(err, problem);
    }
    int status = response->status;
    if (no_body || status < 200 || status == 204 || status == 304) {
        response->framing = HTTP_RESPONSE_FRAMING_NONE;
        response->content_length = 0;
    } else if (seen.chunked) {
        response->framing = HTTP_RESPONSE_FRAMING_CHUNKED;
    } else if (seen.lengths > 0) {
        response->framing = HTTP_RESPONSE_FRAMING_LENGTH;
        if (response->content_length > limits->max_body_bytes) {
            return http_response_parse_fail(err, "upstream declared a Content-Length larger "
                                                 "than limits.max_body_bytes");
        }
    } else {
        response->framing = HTTP_RESPONSE_FRAMING_CLOSE;
    }
    bool persistent = response->version_minor == 1 ? !seen.close : seen.keep && !seen.close;
    response->keep_alive = persistent && response->framing != HTTP_RESPONSE_FRAMING_CLOSE;
    return 0;
}

int http_response_parse_head(const char *buffer, size_t length,
                             const struct http_response_limits *limits, bool no_body,
                             struct http_response_parsed *response, struct http_error *err)
{
    RM_ASSERT(limits->max_status_line_bytes <= limits->max_header_bytes);
    RM_ASSERT(limits->max_header_bytes <= HTTP_PARSE_HEADER_BYTES_CEILING);
    response->header_count = 0;
    response->content_length = 0;
    response->event_stream = false;
    size_t line_scan = length < limits->max_status_line_bytes ? length
                                                              : limits->max_status_line_bytes;
    int line = http_response_parse_status_line(buffer, line_scan, response, err);
    if (line == PARTIAL && length >= limits->max_status_line_bytes) {
        return http_response_parse_fail(err, "upstream sent a status line longer than "
                                             "limits.max_status_line_bytes");
    }
    if (line < 0) {
        return line;
    }
    size_t scan = length < limits->max_header_bytes ? length : limits->max_header_bytes;
    int head = http_response_parse_fields(buffer, scan, (size_t)line, limits, response, err);
    if (head == PARTIAL && length >= limits->max_header_bytes) {
        return http_response_parse_fail(err, "upstream sent a header section larger than "
                                             "limits.max_header_bytes");
    }
    if (head < 0) {
        return head;
    }
    int framing = http_response_parse_framing(response, limits, no_body, err);
    return framing < 0 ? framing : head;
}

const struct http_slice *http_response_parse_header(const struct http_response_parsed *response,
                                                    const char *name)
{
    RM_ASSERT(name != NULL);
    RM_ASSERT(response->header_count <= HTTP_HEADERS_MAX);
    for (uint32_t i = 0; i < response->header_count; i++) {
        if (http_response_parse_equals(response->headers[i].name, name)) {
            return &response->headers[i].value;
        }
    }
    return NULL;
}

void http_response_body_init(struct http_response_body *body,
                             const struct http_response_parsed *response,
                             const struct http_response_limits *limits)
{
    RM_ASSERT(body != NULL);
    RM_ASSERT(response->framing != HTTP_RESPONSE_FRAMING_LENGTH ||
              response->content_length <= limits->max_body_bytes);
    memset(body, 0, sizeof(*body));
    body->framing = response->framing;
    body->max_body_bytes = limits->max_body_bytes;
    body->remaining = response->content_length;
    body->chunked_limits = (struct http_limits){
        .max_header_bytes = limits->max_header_bytes,
        .max_headers = limits->max_headers,
        .max_body_bytes = limits->max_body_bytes,
    };
    http_chunked_init(&body->chunked, &body->chunked_limits);
    body->done = body->framing == HTTP_RESPONSE_FRAMING_NONE ||
                 (body->framing == HTTP_RESPONSE_FRAMING_LENGTH && body->remaining == 0);
}

/* The chunked decoder words its errors for a server reading a request; say it for a client. */
static int http_response_body_chunked(struct http_response_body *body, char *data,
                                      size_t length, size_t *consumed, size_t *decoded,
                                      struct http_error *err)
{
    RM_ASSERT(body->framing == HTTP_RESPONSE_FRAMING_CHUNKED);
    RM_ASSERT(body->chunked.limits == &body->chunked_limits);
    size_t input = 0;
    size_t output = 0;
    struct http_error chunk_error = {0, NULL};
    int result = http_chunked_decode(&body->chunked, data, &output, &input, length, &chunk_error);
    *consumed = input;
    *decoded = output;
    body->decoded += output;
    if (result >= 0) {
        body->done = result == 1;
        return result;
    }
    if (chunk_error.status == 413) {
        return http_response_parse_fail(err, "upstream sent a chunked body larger than "
                                             "limits.max_body_bytes");
    }
    if (chunk_error.status == 431) {
        return http_response_parse_fail(err, "upstream sent a chunked trailer section over "
                                             "the header limits");
    }
    return http_response_parse_fail(err, chunk_error.message);
}

int http_response_body_decode(struct http_response_body *body, char *data, size_t length,
                              size_t *consumed, size_t *decoded, struct http_error *err)
{
    RM_ASSERT(!body->done);
    RM_ASSERT(body->decoded <= body->max_body_bytes);
    switch (body->framing) {
    case HTTP_RESPONSE_FRAMING_CHUNKED:
        return http_response_body_chunked(body, data, length, consumed, decoded, err);
    case HTTP_RESPONSE_FRAMING_LENGTH: {
        size_t take = body->remaining < length ? (size_t)body->remaining : length;
        body->remaining -= take;
        body->decoded += take;
        *consumed = take;
        *decoded = take;
        body->done = body->remaining == 0;
        return body->done ? 1 : 0;
    }
    default:
        RM_ASSERT(body->framing == HTTP_RESPONSE_FRAMING_CLOSE);
        if (length > body->max_body_bytes - body->decoded) {
            return http_response_parse_fail(err, "upstream sent a body larger than "
                                                 "limits.max_body_bytes");
        }
        body->decoded += length;
        *consumed = length;
        *decoded = length;
        return 0;
    }
}

int http_response_body_eof(struct http_response_body *body, struct http_error *err)
{
    RM_ASSERT(body != NULL);
    RM_ASSERT(err != NULL);
    if (body->done || body->framing == HTTP_RESPONSE_FRAMING_CLOSE) {
        body->done = true;
        return 1;
    }
    return http_response_parse_fail(
        err, body->framing == HTTP_RESPONSE_FRAMING_CHUNKED
                 ? "upstream closed the connection in the middle of a chunked body"
                 : "upstream closed the connection before the whole Content-Length body");
}

bool http_response_body_done(const struct http_response_body *body) { return body->done; }
