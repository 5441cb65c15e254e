#include "net/http_chunked.h"

#include <stdbool.h>
#include <string.h>

#include "core/rm_assert.h"
#include "net/http_parse.h"
#include "net/http_request.h"

/* chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF; last-chunk = "0" [ chunk-ext ] CRLF;
 * then trailer fields, each ending in CRLF, and a final CRLF. */
enum http_chunked_state {
    HTTP_CHUNKED_SIZE_FIRST, /* first hex digit of a chunk size */
    HTTP_CHUNKED_SIZE,       /* more hex digits, ';', whitespace or CR */
    HTTP_CHUNKED_SIZE_SPACE, /* whitespace after the size: only more of it or ';' */
    HTTP_CHUNKED_EXTENSION,  /* skipped up to CR */
    HTTP_CHUNKED_SIZE_LF,
    HTTP_CHUNKED_DATA,
    HTTP_CHUNKED_DATA_CR,
    HTTP_CHUNKED_DATA_LF,
    HTTP_CHUNKED_TRAILER_START, /* first byte of a trailer line, or CR of the final CRLF */
    HTTP_CHUNKED_TRAILER_NAME,
    HTTP_CHUNKED_TRAILER_VALUE,
    HTTP_CHUNKED_TRAILER_LF,
    HTTP_CHUNKED_END_LF,
    HTTP_CHUNKED_DONE,
};

_Static_assert(HTTP_CHUNKED_LINE_MAX_BYTES < UINT32_MAX, "line_bytes counts a line");
_Static_assert(HTTP_CHUNKED_SIZE_DIGITS_MAX * 4 == 64, "the size fits a uint64_t");

void http_chunked_init(struct http_chunked *decoder, const struct http_limits *limits)
{
    RM_ASSERT(decoder != NULL);
    RM_ASSERT(limits != NULL);
    memset(decoder, 0, sizeof(*decoder));
    decoder->limits = limits;
    decoder->state = HTTP_CHUNKED_SIZE_FIRST;
}

static uint64_t http_chunked_hex_value(uint8_t byte)
{
    RM_ASSERT(HTTP_PARSE_IS(byte, HTTP_PARSE_HEX));
    uint64_t value = byte <= '9' ? (uint64_t)(byte - '0') : (uint64_t)((byte | 0x20) - 'a' + 10);
    RM_ASSERT(value < 16);
    return value;
}

/* The chunk-size line has ended: start the chunk's data, or the trailer section. */
static int http_chunked_size_done(struct http_chunked *decoder, struct http_error *err)
{
    const struct http_limits *limits = decoder->limits;
    RM_ASSERT(decoder->digits > 0);
    RM_ASSERT(decoder->decoded <= limits->max_body_bytes);
    decoder->line_bytes = 0;
    if (decoder->remaining == 0) {
        decoder->state = HTTP_CHUNKED_TRAILER_START;
        return 0;
    }
    if (decoder->remaining > limits->max_body_bytes - decoder->decoded) {
        return http_parse_fail(err, 413, "Request body is larger than this server accepts");
    }
    if (decoder->overhead > HTTP_CHUNKED_OVERHEAD_MIN_BYTES &&
        decoder->overhead / 4 > decoder->decoded) {
        return http_parse_fail(err, 400,
                               "Chunked body has too much framing overhead; send larger chunks");
    }
    decoder->state = HTTP_CHUNKED_DATA;
    return 0;
}

/* One byte of a chunk-size line, its extensions or the CRLF after chunk data. */
static int http_chunked_step_size(struct http_chunked *decoder, uint8_t byte,
                                  struct http_error *err)
{
    static const char *const not_hex = "Chunk size must be hexadecimal digits";
    static const char *const no_crlf = "Chunk lines must end with CRLF";
    RM_ASSERT(decoder->state < HTTP_CHUNKED_TRAILER_START);
    RM_ASSERT(decoder->state != HTTP_CHUNKED_DATA);
    if (++decoder->line_bytes > HTTP_CHUNKED_LINE_MAX_BYTES) {
        return http_parse_fail(err, 400, "Chunk size line is too long; send shorter extensions");
    }
    bool hex = HTTP_PARSE_IS(byte, HTTP_PARSE_HEX);
    switch (decoder->state) {
    case HTTP_CHUNKED_SIZE_FIRST:
    case HTTP_CHUNKED_SIZE:
        if (hex) {
            if (decoder->digits == HTTP_CHUNKED_SIZE_DIGITS_MAX) {
                return http_parse_fail(err, 400, "Chunk size is too large");
            }
            decoder->remaining = decoder->remaining << 4 | http_chunked_hex_value(byte);
            decoder->digits++;
            decoder->state = HTTP_CHUNKED_SIZE;
            return 0;
        }
        if (decoder->state == HTTP_CHUNKED_SIZE_FIRST) {
            return http_parse_fail(err, 400, not_hex);
        }
        if (byte == ';') {
            decoder->state = HTTP_CHUNKED_EXTENSION;
        } else if (byte == ' ' || byte == '\t') {
            decoder->state = HTTP_CHUNKED_SIZE_SPACE;
        } else if (byte == '\r') {
            decoder->state = HTTP_CHUNKED_SIZE_LF;
        } else {
            return http_parse_fail(err, 400, byte == '\n' ? no_crlf : not_hex);
        }
        return 0;
    case HTTP_CHUNKED_SIZE_SPACE:
        if (byte == ';') {
            decoder->state = HTTP_CHUNKED_EXTENSION;
        } else if (byte != ' ' && byte != '\t') {
            return http_parse_fail(err, 400, "Chunk size may only be followed by ';' or CRLF");
        }
        return 0;
    case HTTP_CHUNKED_EXTENSION:
        if (byte == '\r') {
            decoder->state = HTTP_CHUNKED_SIZE_LF;
        } else if (!HTTP_PARSE_IS(byte, HTTP_PARSE_VALUE)) {
            return http_parse_fail(err, 400, "Chunk extension contains a control character");
        }
        return 0;
    case HTTP_CHUNKED_SIZE_LF:
        return byte == '\n' ? http_chunked_size_done(decoder, err)
                            : http_parse_fail(err, 400, no_crlf);
    default:
        RM_ASSERT(decoder->state == HTTP_CHUNKED_DATA_CR ||
                  decoder->state == HTTP_CHUNKED_DATA_LF);
        if (byte != (decoder->state == HTTP_CHUNKED_DATA_CR ? '\r' : '\n')) {
            return http_parse_fail(err, 400, "Chunk data must be followed by CRLF; check the "
                                             "chunk size");
        }
        if (decoder->state == HTTP_CHUNKED_DATA_CR) {
            decoder->state = HTTP_CHUNKED_DATA_LF;
            return 0;
        }
        /* The next chunk-size line starts after this LF. */
        decoder->state = HTTP_CHUNKED_SIZE_FIRST;
        decoder->digits = 0;
        decoder->line_bytes = 0;
        return 0;
    }
}

/* One byte of the trailer section: the header field rules, with CRLF line ends. Returns 1
 * once the final CRLF is complete. */
static int http_chunked_step_trailer(struct http_chunked *decoder, uint8_t byte,
                                     struct http_error *err)
{
    static const char *const no_crlf = "Chunked body lines must end with CRLF";
    const struct http_limits *limits = decoder->limits;
    RM_ASSERT(decoder->state >= HTTP_CHUNKED_TRAILER_START);
    RM_ASSERT(decoder->state < HTTP_CHUNKED_DONE);
    if (++decoder->line_bytes > limits->max_header_bytes) {
        return http_parse_fail(err, 431, "Trailer section is too large; send smaller trailers");
    }
    switch (decoder->state) {
    case HTTP_CHUNKED_TRAILER_START:
        if (byte == '\r') {
            decoder->state = HTTP_CHUNKED_END_LF;
            return 0;
        }
        if (byte == ' ' || byte == '\t') {
            return http_parse_fail(err, 400, "Trailer lines must not start with whitespace");
        }
        if (!HTTP_PARSE_IS(byte, HTTP_PARSE_TOKEN)) {
            return http_parse_fail(err, 400, "Trailer field name must be a token followed by ':'");
        }
        if (decoder->trailer_count == limits->max_headers) {
            return http_parse_fail(err, 431, "Too many trailer fields; send fewer");
        }
        decoder->trailer_count++;
        decoder->state = HTTP_CHUNKED_TRAILER_NAME;
        return 0;
    case HTTP_CHUNKED_TRAILER_NAME:
        if (byte == ':') {
            decoder->state = HTTP_CHUNKED_TRAILER_VALUE;
        } else if (!HTTP_PARSE_IS(byte, HTTP_PARSE_TOKEN)) {
            return http_parse_fail(err, 400, "Trailer field name must be a token followed by ':'");
        }
        return 0;
    case HTTP_CHUNKED_TRAILER_VALUE:
        if (byte == '\r') {
            decoder->state = HTTP_CHUNKED_TRAILER_LF;
        } else if (!HTTP_PARSE_IS(byte, HTTP_PARSE_VALUE)) {
            return http_parse_fail(err, 400, "Trailer field value contains a control character");
        }
        return 0;
    default:
        RM_ASSERT(decoder->state == HTTP_CHUNKED_TRAILER_LF ||
                  decoder->state == HTTP_CHUNKED_END_LF);
        if (byte != '\n') {
            return http_parse_fail(err, 400, no_crlf);
        }
        bool end = decoder->state == HTTP_CHUNKED_END_LF;
        decoder->state = end ? HTTP_CHUNKED_DONE : HTTP_CHUNKED_TRAILER_START;
        return end ? 1 : 0;
    }
}

int http_chunked_decode(struct http_chunked *decoder, char *buffer, size_t *output,
                        size_t *input, size_t length, struct http_error *err)
{
    RM_ASSERT(decoder->limits != NULL);
    RM_ASSERT(decoder->state != HTTP_CHUNKED_DONE);
    RM_ASSERT(*output <= *input);
    RM_ASSERT(*input <= length);
    size_t in = *input;
    size_t out = *output;
    int result = 0;
    while (in < length && result == 0) {
        if (decoder->state == HTTP_CHUNKED_DATA) {
            /* Data moves in bulk; only framing bytes go through the state machine. */
            size_t available = length - in;
            size_t take = decoder->remaining < available ? (size_t)decoder->remaining : available;
            if (out != in) {
                memmove(buffer + out, buffer + in, take);
            }
            out += take;
            in += take;
            decoder->remaining -= take;
            decoder->decoded += take;
            if (decoder->remaining == 0) {
                decoder->state = HTTP_CHUNKED_DATA_CR;
            }
            continue;
        }
        uint8_t byte = (uint8_t)buffer[in++];
        decoder->overhead++;
        if (decoder->state >= HTTP_CHUNKED_TRAILER_START) {
            result = http_chunked_step_trailer(decoder, byte, err);
        } else {
            result = http_chunked_step_size(decoder, byte, err);
        }
    }
    RM_ASSERT(out <= in);
    RM_ASSERT(result != 0 || in == length);
    *input = in;
    *output = out;
    return result;
}
