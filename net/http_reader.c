#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "core/alloc.h"
#include "core/rm_assert.h"
#include "net/http_chunked.h"
#include "net/http_parse.h"
#include "net/http_request.h"

/* Bodies beyond a terabyte are a configuration mistake; the bound keeps size sums exact. */
#define HTTP_READER_BODY_BYTES_CEILING (UINT64_C(1) << 40)

_Static_assert(sizeof(size_t) >= sizeof(uint64_t), "body offsets are size_t");
_Static_assert(RM_IS_POWER_OF_TWO(HTTP_READER_INITIAL_BYTES), "the buffer doubles");
_Static_assert(HTTP_READER_SLACK_BYTES >= HTTP_CHUNKED_LINE_MAX_BYTES, "room for framing");

static size_t http_reader_ceiling(const struct http_limits *limits)
{
    return (size_t)limits->max_header_bytes + (size_t)limits->max_body_bytes +
           HTTP_READER_SLACK_BYTES;
}

static void http_reader_reset_request(struct http_reader *reader)
{
    reader->consumed = 0;
    reader->header_length = 0;
    reader->scanned = 0;
    reader->body_output = 0;
    reader->body_input = 0;
    reader->body_length = 0;
    reader->line_checked = false;
    reader->head_moved = false;
    reader->complete = false;
    reader->returned = false;
    reader->continue_pending = false;
}

void http_reader_init(struct http_reader *reader, const struct http_limits *limits)
{
    RM_ASSERT(limits != NULL);
    RM_ASSERT(limits->max_headers >= 1);
    RM_ASSERT(limits->max_headers <= HTTP_HEADERS_MAX);
    RM_ASSERT(limits->max_uri_bytes >= 1);
    RM_ASSERT(limits->max_uri_bytes <= HTTP_PARSE_HEADER_BYTES_CEILING);
    RM_ASSERT(limits->max_header_bytes >= 1);
    RM_ASSERT(limits->max_header_bytes <= HTTP_PARSE_HEADER_BYTES_CEILING);
    RM_ASSERT(limits->max_body_bytes <= HTTP_READER_BODY_BYTES_CEILING);
    reader->limits = limits;
    reader->buffer = NULL;
    reader->capacity = 0;
    reader->length = 0;
    reader->start = 0;
    reader->retired = NULL;
    reader->error = (struct http_error){0, NULL};
    http_reader_reset_request(reader);
}

void http_reader_free(struct http_reader *reader)
{
    RM_ASSERT(reader->limits != NULL);
    RM_ASSERT(reader->buffer != NULL || reader->capacity == 0);
    rm_free(reader->buffer);
    rm_free(reader->retired);
    reader->buffer = NULL;
    reader->retired = NULL;
    reader->capacity = 0;
    reader->length = 0;
    reader->start = 0;
}

static int http_reader_fail(struct http_reader *reader, int status, const char *message)
{
    RM_ASSERT(reader->error.status == 0);
    RM_ASSERT(status == 429 || status == 503);
    return http_parse_fail(&reader->error, status, message);
}

/* The first CR or LF in [position, end), or end. */
static inline size_t http_reader_find_line_byte(const char *head, size_t position, size_t end)
{
    RM_ASSERT(position <= end);
#ifdef __SSE2__
    const __m128i carriage_return = _mm_set1_epi8('\r');
    const __m128i line_feed = _mm_set1_epi8('\n');
    while (end - position >= 16) {
        __m128i bytes = _mm_loadu_si128((const __m128i *)(const void *)(head + position));
        __m128i found = _mm_or_si128(_mm_cmpeq_epi8(bytes, carriage_return),
                                     _mm_cmpeq_epi8(bytes, line_feed));
        unsigned mask = (unsigned)_mm_movemask_epi8(found);
        if (mask != 0) {
            return position + (size_t)__builtin_ctz(mask);
        }
        position += 16;
    }
#endif
    while (position < end && head[position] != '\r' && head[position] != '\n') {
        position++;
    }
    RM_ASSERT(position <= end);
    return position;
}

/* Whether parsing the head now gives a final answer: it holds an empty line after a LF (the
 * end of the header section, since leading empty lines are gone) or a CR not followed by LF
 * (an error). The parser never reads past the first such place, so the answer depends only on
 * the bytes before it, however the stream was cut. Only bytes not searched before are
 * searched, so a client sending its head a byte at a time costs O(n), not O(n^2)
 * (picohttpparser's last_len countermeasure against slowloris). */
static bool http_reader_head_ended(struct http_reader *reader, const char *head,
                                   size_t available)
{
    size_t at = reader->scanned;
    RM_ASSERT(at <= available);
    RM_ASSERT(reader->header_length == 0);
    for (;;) {
        at = http_reader_find_line_byte(head, at, available);
        if (at == available) {
            reader->scanned = available;
            return false;
        }
        size_t next = at + 1;
        if (head[at] == '\n' && next < available && head[next] == '\r') {
            next++;
        }
        if (next == available) {
            reader->scanned = at; /* the deciding byte has not arrived: look again */
            return false;
        }
        bool bare_cr = head[next - 1] == '\r' && head[next] != '\n';
        if (bare_cr || (head[at] == '\n' && head[next] == '\n')) {
            reader->scanned = at + 1;
            return true;
        }
        at++;
    }
}

static int http_reader_head_parsed(struct http_reader *reader, size_t header_length,
                                   size_t available)
{
    const struct http_request *request = &reader->request;
    RM_ASSERT(header_length > 0);
    RM_ASSERT(header_length <= available);
    reader->header_length = header_length;
    reader->body_output = header_length;
    reader->body_input = header_length;
    if (request->chunked) {
        http_chunked_init(&reader->chunked, reader->limits);
    }
    bool body_expected = request->chunked || request->content_length > 0;
    reader->continue_pending =
        request->expect_continue && body_expected && available == header_length;
    return 1;
}

/* Parses the head at the first look, since usually the whole head came in one read; later
 * looks parse only once the head ended (see http_reader_head_ended). An error is final only if
 * the head ended or is over max_header_bytes: otherwise whether the error is seen would
 * depend on how the stream was cut, since later looks do not parse partial heads. Returns 1
 * when parsed, 0 when more bytes are needed, -1 on error. */
static int http_reader_parse_head(struct http_reader *reader, const char *head,
                                  size_t available)
{
    const struct http_limits *limits = reader->limits;
    RM_ASSERT(reader->header_length == 0);
    RM_ASSERT(available > 0);
    bool first = reader->scanned == 0;
    bool over = available > limits->max_header_bytes;
    if (!first && !over && !http_reader_head_ended(reader, head, available)) {
        return 0;
    }
    struct http_error err = {0, NULL};
    int result = http_parse_request(head, available, limits, &reader->request, &err);
    if (result > 0) {
        return http_reader_head_parsed(reader, (size_t)result, available);
    }
    if (result == HTTP_PARSE_INVALID) {
        if (!first || over || http_reader_head_ended(reader, head, available)) {
            reader->error = err;
            return -1;
        }
        return 0;
    }
    RM_ASSERT(first);
    RM_ASSERT(!over);
    /* A valid prefix: only its last two bytes can start a line end still to come. */
    reader->scanned = available - (available < 2 ? available : 2);
    return 0;
}

/* Frames the head: drops leading empty lines, parses, and on incomplete input checks the
 * request line's limits once they can have been passed. */
static int http_reader_frame_head(struct http_reader *reader)
{
    const struct http_limits *limits = reader->limits;
    RM_ASSERT(reader->header_length == 0);
    RM_ASSERT(!reader->complete);
    if (reader->scanned == 0) {
        /* Empty lines before a request are dropped whole, never half. */
        size_t skipped = 0;
        int result = http_parse_empty_lines(reader->buffer + reader->start,
                                            reader->length - reader->start, &skipped,
                                            &reader->error);
        if (result != 0) {
            return result == HTTP_PARSE_PARTIAL ? 0 : -1;
        }
        reader->start += skipped;
    }
    const char *head = reader->buffer + reader->start;
    size_t available = reader->length - reader->start;
    int result = http_reader_parse_head(reader, head, available);
    if (result != 0) {
        return result;
    }
    /* A request line without its end can be known to be too long (414, 501) once more than
     * max_uri_bytes are here; a few bytes later it is complete or invalid. */
    if (!reader->line_checked && available > limits->max_uri_bytes) {
        result = http_parse_request_line(head, available, limits, &reader->request,
                                         &reader->error);
        if (result == HTTP_PARSE_INVALID) {
            return -1;
        }
        reader->line_checked = result > 0;
    }
    return 0;
}

static int http_reader_complete(struct http_reader *reader, size_t body_length, size_t consumed)
{
    RM_ASSERT(consumed >= reader->header_length + body_length);
    RM_ASSERT(reader->start + consumed <= reader->length);
    reader->body_length = body_length;
    reader->consumed = consumed;
    reader->complete = true;
    reader->continue_pending = false;
    return 1;
}

static int http_reader_frame_chunked(struct http_reader *reader, size_t available)
{
    size_t output = reader->body_output;
    size_t input = reader->body_input;
    RM_ASSERT(reader->request.chunked);
    RM_ASSERT(output <= input);
    int result = http_chunked_decode(&reader->chunked, reader->buffer + reader->start, &output,
                                     &input, available, &reader->error);
    if (result < 0) {
        return -1;
    }
    if (result == 0) {
        /* Every byte was decoded: the framing bytes are dropped from the buffer. */
        RM_ASSERT(input == available);
        reader->length = reader->start + output;
        reader->body_output = output;
        reader->body_input = output;
        return 0;
    }
    reader->body_output = output;
    reader->body_input = input;
    return http_reader_complete(reader, output - reader->header_length, input);
}

/* Requests without Content-Length or Transfer-Encoding have no body (RFC 9112 6.3). */
static int http_reader_frame_body(struct http_reader *reader)
{
    const struct http_request *request = &reader->request;
    size_t available = reader->length - reader->start;
    size_t header_length = reader->header_length;
    RM_ASSERT(header_length > 0);
    RM_ASSERT(available >= header_length);
    if (available > header_length) {
        reader->continue_pending = false; /* the client did not wait for 100 Continue */
    }
    if (request->chunked) {
        return http_reader_frame_chunked(reader, available);
    }
    if (available - header_length < request->content_length) {
        return 0;
    }
    size_t body_length = (size_t)request->content_length;
    return http_reader_complete(reader, body_length, header_length + body_length);
}

/* Frames as far as the buffered bytes allow. 1: the current request is complete. */
static int http_reader_advance(struct http_reader *reader)
{
    RM_ASSERT(reader->error.status == 0);
    RM_ASSERT(reader->start <= reader->length);
    if (reader->complete) {
        return 1;
    }
    if (reader->header_length == 0) {
        int result = http_reader_frame_head(reader);
        if (result <= 0) {
            return result;
        }
    }
    return http_reader_frame_body(reader);
}

/* The capacity to grow to: doubling from the current one until `needed` fits, at most the
 * ceiling. */
static size_t http_reader_grown(size_t capacity, size_t needed, size_t ceiling)
{
    RM_ASSERT(ceiling >= HTTP_READER_INITIAL_BYTES);
    RM_ASSERT(capacity <= ceiling);
    size_t grown = capacity < HTTP_READER_INITIAL_BYTES ? HTTP_READER_INITIAL_BYTES : capacity;
    while (grown < needed && grown < ceiling) {
        grown *= 2;
    }
    return grown < ceiling ? grown : ceiling;
}

/* Moves the live bytes to the front. The head's slices then point at old places. */
static void http_reader_compact(struct http_reader *reader)
{
    size_t live = reader->length - reader->start;
    RM_ASSERT(!reader->returned || reader->retired != NULL);
    RM_ASSERT(reader->start > 0);
    memmove(reader->buffer, reader->buffer + reader->start, live);
    reader->start = 0;
    reader->length = live;
    if (reader->header_length > 0) {
        reader->head_moved = true;
    }
}

/* A handed-out request must stay where it is until consume: the bytes after it go to a new
 * buffer, and the old one is kept ("retired") until then. */
static int http_reader_relocate(struct http_reader *reader, size_t wanted)
{
    size_t next = reader->start + reader->consumed;
    size_t lookahead = reader->length - next;
    RM_ASSERT(reader->complete);
    RM_ASSERT(reader->retired == NULL);
    size_t capacity = http_reader_grown(0, lookahead + wanted, http_reader_ceiling(reader->limits));
    char *fresh = rm_malloc(capacity);
    if (fresh == NULL) {
        return http_reader_fail(reader, 503, "Server is out of memory; retry later");
    }
    memcpy(fresh, reader->buffer + next, lookahead);
    reader->retired = reader->buffer;
    reader->buffer = fresh;
    reader->capacity = capacity;
    reader->start = 0;
    reader->length = lookahead;
    return 0;
}

/* Makes room for `wanted` more bytes if the limits allow, else for as many as they do.
 * Compacting only when the consumed prefix is at least as large as the live bytes keeps the
 * copying linear in the bytes fed. */
static int http_reader_reserve(struct http_reader *reader, size_t wanted)
{
    RM_ASSERT(wanted > 0);
    RM_ASSERT(reader->length <= reader->capacity);
    if (reader->capacity - reader->length >= wanted) {
        return 0;
    }
    if (reader->returned && reader->retired == NULL) {
        return http_reader_relocate(reader, wanted);
    }
    size_t live = reader->length - reader->start;
    if (reader->start > 0 && reader->start >= live) {
        http_reader_compact(reader);
        if (reader->capacity - reader->length >= wanted) {
            return 0;
        }
    }
    size_t ceiling = http_reader_ceiling(reader->limits);
    if (reader->capacity < ceiling) {
        size_t capacity = http_reader_grown(reader->capacity, reader->length + wanted, ceiling);
        char *grown = rm_realloc(reader->buffer, capacity);
        if (grown == NULL) {
            return http_reader_fail(reader, 503, "Server is out of memory; retry later");
        }
        reader->buffer = grown;
        reader->capacity = capacity;
        if (reader->header_length > 0) {
            reader->head_moved = true;
        }
    }
    if (reader->capacity - reader->length < wanted && reader->start > 0) {
        http_reader_compact(reader);
    }
    return 0;
}

int http_reader_feed(struct http_reader *reader, const char *data, size_t length,
                     struct http_error *err)
{
    RM_ASSERT(reader->limits != NULL);
    RM_ASSERT(data != NULL || length == 0);
    /* Bytes go in by pieces that fit: framing each piece frees the room that chunk framing
     * took, so a valid request always fits under the ceiling. */
    while (length > 0 && reader->error.status == 0) {
        if (http_reader_reserve(reader, length) != 0) {
            break;
        }
        size_t room = reader->capacity - reader->length;
        if (room == 0) {
            /* Only pipelined requests behind an unconsumed one can fill the ceiling. */
            RM_ASSERT(reader->complete);
            http_reader_fail(reader, 429,
                             "Too many pipelined requests; wait for responses before sending "
                             "more");
            break;
        }
        size_t piece = length < room ? length : room;
        memcpy(reader->buffer + reader->length, data, piece);
        reader->length += piece;
        data += piece;
        length -= piece;
        http_reader_advance(reader);
    }
    if (reader->error.status != 0) {
        *err = reader->error;
        return -1;
    }
    return 0;
}

int http_reader_next(struct http_reader *reader, struct http_request **request,
                     struct http_error *err)
{
    RM_ASSERT(reader->limits != NULL);
    RM_ASSERT(request != NULL);
    if (reader->error.status != 0 || http_reader_advance(reader) < 0) {
        *err = reader->error;
        return -1;
    }
    if (!reader->complete) {
        return 0;
    }
    if (!reader->returned) {
        const char *head = reader->buffer + reader->start;
        if (reader->head_moved) {
            struct http_error unused;
            int result = http_parse_request(head, reader->header_length, reader->limits,
                                            &reader->request, &unused);
            RM_ASSERT(result == (int)reader->header_length);
            reader->head_moved = false;
        }
        reader->request.body = (struct http_slice){head + reader->header_length,
                                                   reader->body_length};
        reader->returned = true;
    }
    *request = &reader->request;
    return 1;
}

void http_reader_consume(struct http_reader *reader)
{
    RM_ASSERT(reader->returned);
    RM_ASSERT(reader->complete);
    if (reader->retired != NULL) {
        /* The bytes after the request were moved to the front of the new buffer. */
        rm_free(reader->retired);
        reader->retired = NULL;
    } else {
        reader->start += reader->consumed;
    }
    RM_ASSERT(reader->start <= reader->length);
    if (reader->start == reader->length) {
        reader->start = 0;
        reader->length = 0;
    }
    http_reader_reset_request(reader);
}

bool http_reader_take_continue(struct http_reader *reader)
{
    RM_ASSERT(reader->limits != NULL);
    bool pending = reader->continue_pending;
    if (pending) {
        RM_ASSERT(reader->header_length > 0);
        RM_ASSERT(!reader->complete);
    }
    reader->continue_pending = false;
    return pending;
}

/* Bytes from `next` on: only empty lines (which are dropped, not a request) count as idle. */
static enum http_reader_state http_reader_pending(const struct http_reader *reader, size_t next)
{
    RM_ASSERT(next <= reader->length);
    RM_ASSERT(reader->header_length == 0 || reader->complete);
    size_t end = reader->length - next > 2 * HTTP_PARSE_EMPTY_LINES_MAX
                     ? next + 2 * HTTP_PARSE_EMPTY_LINES_MAX + 1
                     : reader->length;
    for (size_t at = next; at < end; at++) {
        if (reader->buffer[at] != '\r' && reader->buffer[at] != '\n') {
            return HTTP_READER_HEADERS;
        }
    }
    return end == reader->length ? HTTP_READER_IDLE : HTTP_READER_HEADERS;
}

enum http_reader_state http_reader_state(const struct http_reader *reader)
{
    RM_ASSERT(reader->limits != NULL);
    RM_ASSERT(reader->start <= reader->length);
    if (reader->complete) {
        size_t next = reader->retired != NULL ? reader->start : reader->start + reader->consumed;
        return http_reader_pending(reader, next);
    }
    if (reader->header_length > 0) {
        return HTTP_READER_BODY;
    }
    return http_reader_pending(reader, reader->start);
}

const struct http_slice *http_request_header(const struct http_request *request,
                                             const char *name)
{
    RM_ASSERT(request->header_count <= HTTP_HEADERS_MAX);
    RM_ASSERT(name != NULL);
    size_t length = strlen(name);
    for (uint32_t i = 0; i < request->header_count; i++) {
        const struct http_header *header = &request->headers[i];
        if (header->name.length != length) {
            continue;
        }
        size_t at = 0;
        while (at < length) {
            char left = header->name.base[at];
            char right = name[at];
            left = (char)(left >= 'A' && left <= 'Z' ? left | 0x20 : left);
            right = (char)(right >= 'A' && right <= 'Z' ? right | 0x20 : right);
            if (left != right) {
                break;
            }
            at++;
        }
        if (at == length) {
            return &header->value;
        }
    }
    return NULL;
}

const char *http_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}
