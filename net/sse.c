#include "net/sse.h"

#include <errno.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rm_assert.h"

enum sse_state {
    SSE_STATE_BOM,         /* before the first byte of the stream: a BOM may come */
    SSE_STATE_LINE_START,
    SSE_STATE_NAME,        /* field name */
    SSE_STATE_VALUE_START, /* right after ':': one space is dropped */
    SSE_STATE_VALUE,
    SSE_STATE_IGNORE,      /* a comment or a field we do not use, up to the line end */
    SSE_STATE_FAILED,
};

enum sse_field { SSE_FIELD_OTHER, SSE_FIELD_DATA, SSE_FIELD_EVENT, SSE_FIELD_ID, SSE_FIELD_RETRY };

#define SSE_RETRY_MS_MAX (UINT64_C(1) << 40) /* larger retry values saturate */

static const unsigned char sse_bom[3] = {0xef, 0xbb, 0xbf};

int sse_parser_init(struct sse_parser *parser, uint32_t max_event_bytes)
{
    RM_ASSERT(max_event_bytes >= 1);
    RM_ASSERT(max_event_bytes <= SSE_EVENT_MAX_BYTES_CEILING);
    memset(parser, 0, sizeof(*parser));
    parser->data = rm_malloc((size_t)max_event_bytes + 1);
    if (parser->data == NULL) {
        return -ENOMEM;
    }
    parser->max_event_bytes = max_event_bytes;
    sse_parser_reset(parser);
    return 0;
}

void sse_parser_reset(struct sse_parser *parser)
{
    RM_ASSERT(parser->data != NULL);
    RM_ASSERT(parser->max_event_bytes >= 1);
    char *data = parser->data;
    uint32_t max_event_bytes = parser->max_event_bytes;
    memset(parser, 0, sizeof(*parser));
    parser->data = data;
    parser->max_event_bytes = max_event_bytes;
    parser->state = SSE_STATE_BOM;
}

void sse_parser_free(struct sse_parser *parser)
{
    RM_ASSERT(parser != NULL);
    rm_free(parser->data);
    parser->data = NULL;
}

static int sse_parser_fail(struct sse_parser *parser, const char **error, const char *message)
{
    RM_ASSERT(message != NULL);
    RM_ASSERT(error != NULL);
    parser->state = SSE_STATE_FAILED;
    *error = message;
    return -1;
}

/* The field name is complete (at ':' or at the line end). */
static void sse_parser_field_start(struct sse_parser *parser)
{
    RM_ASSERT(parser->state == SSE_STATE_NAME);
    RM_ASSERT(parser->name_length <= SSE_FIELD_NAME_MAX_BYTES);
    static const struct { const char *name; enum sse_field field; } fields[] = {
        {"data", SSE_FIELD_DATA}, {"event", SSE_FIELD_EVENT},
        {"id", SSE_FIELD_ID},     {"retry", SSE_FIELD_RETRY},
    };
    parser->field = SSE_FIELD_OTHER;
    for (size_t i = 0; i < RM_ARRAY_LENGTH(fields); i++) {
        size_t length = strlen(fields[i].name);
        if (parser->name_length == length && memcmp(parser->name, fields[i].name, length) == 0) {
            parser->field = (uint8_t)fields[i].field;
        }
    }
    switch (parser->field) {
    case SSE_FIELD_EVENT: parser->type_length = 0; break;
    case SSE_FIELD_ID:
        parser->pending_id_length = 0;
        parser->id_has_nul = false;
        break;
    case SSE_FIELD_RETRY:
        parser->retry_value = 0;
        parser->retry_valid = true;
        parser->retry_digits = false;
        break;
    default: break;
    }
}

/* Appends a run of value bytes (no CR or LF) to the current field. */
static int sse_parser_value(struct sse_parser *parser, const char *bytes, size_t length,
                            const char **error)
{
    RM_ASSERT(parser->state == SSE_STATE_VALUE);
    RM_ASSERT(memchr(bytes, '\n', length) == NULL);
    switch (parser->field) {
    case SSE_FIELD_DATA:
        if (length > parser->max_event_bytes - parser->data_length) {
            return sse_parser_fail(parser, error, "SSE event data is larger than the limit "
                                                  "(max_event_bytes)");
        }
        memcpy(parser->data + parser->data_length, bytes, length);
        parser->data_length += (uint32_t)length;
        return 0;
    case SSE_FIELD_EVENT:
        if (length > SSE_EVENT_TYPE_MAX_BYTES - parser->type_length) {
            return sse_parser_fail(parser, error, "SSE event type is longer than 64 bytes");
        }
        memcpy(parser->type + parser->type_length, bytes, length);
        parser->type_length += (uint32_t)length;
        return 0;
    case SSE_FIELD_ID:
        if (length > SSE_ID_MAX_BYTES - parser->pending_id_length) {
            return sse_parser_fail(parser, error, "SSE event id is longer than 256 bytes");
        }
        memcpy(parser->pending_id + parser->pending_id_length, bytes, length);
        parser->pending_id_length += (uint32_t)length;
        parser->id_has_nul = parser->id_has_nul || memchr(bytes, '\0', length) != NULL;
        return 0;
    case SSE_FIELD_RETRY:
        for (size_t i = 0; i < length; i++) {
            bool digit = bytes[i] >= '0' && bytes[i] <= '9';
            parser->retry_valid = parser->retry_valid && digit;
            parser->retry_digits = true;
            if (digit && parser->retry_value < SSE_RETRY_MS_MAX) {
                parser->retry_value = parser->retry_value * 10 + (uint64_t)(bytes[i] - '0');
            }
        }
        return 0;
    default: return 0;
    }
}

static bool sse_parser_dispatch(struct sse_parser *parser, sse_event_function on_event,
                                void *context)
{
    RM_ASSERT(parser->data_length <= parser->max_event_bytes);
    RM_ASSERT(parser->type_length <= SSE_EVENT_TYPE_MAX_BYTES);
    bool go_on = true;
    if (parser->has_data) {
        parser->data[parser->data_length] = '\0';
        parser->type[parser->type_length] = '\0';
        parser->id[parser->id_length] = '\0';
        bool typed = parser->type_length > 0;
        struct sse_event event = {
            .type = typed ? parser->type : "message",
            .type_length = typed ? parser->type_length : 7,
            .data = parser->data,
            .data_length = parser->data_length,
            .id = parser->id,
            .id_length = parser->id_length,
            .has_retry = parser->has_retry,
            .retry_ms = parser->retry_ms,
        };
        go_on = on_event(context, &event);
    }
    parser->has_data = false;
    parser->data_length = 0;
    parser->type_length = 0;
    return go_on;
}

/* The field's name is complete and its value begins (possibly empty). */
static int sse_parser_begin_value(struct sse_parser *parser, const char **error)
{
    RM_ASSERT(parser->state == SSE_STATE_NAME);
    RM_ASSERT(parser->data_length <= parser->max_event_bytes);
    sse_parser_field_start(parser);
    if (parser->field != SSE_FIELD_DATA) {
        return 0;
    }
    if (parser->has_data) {
        /* Data lines are joined with LF, and the LF counts against the bound. */
        if (parser->data_length == parser->max_event_bytes) {
            return sse_parser_fail(parser, error, "SSE event data is larger than the limit "
                                                  "(max_event_bytes)");
        }
        parser->data[parser->data_length++] = '\n';
    }
    parser->has_data = true;
    return 0;
}

/* A line ended: finish its field, or dispatch the event at an empty line. */
static int sse_parser_line_end(struct sse_parser *parser, sse_event_function on_event,
                               void *context, const char **error)
{
    RM_ASSERT(parser->state != SSE_STATE_FAILED);
    RM_ASSERT(parser->state != SSE_STATE_BOM);
    enum sse_state state = parser->state;
    if (state == SSE_STATE_LINE_START) {
        return sse_parser_dispatch(parser, on_event, context) ? 0 : SSE_STOPPED;
    }
    if (state == SSE_STATE_NAME && sse_parser_begin_value(parser, error) != 0) {
        return -1;
    }
    parser->state = SSE_STATE_LINE_START;
    if (state == SSE_STATE_IGNORE) {
        return 0;
    }
    if (parser->field == SSE_FIELD_ID && !parser->id_has_nul) {
        memcpy(parser->id, parser->pending_id, parser->pending_id_length);
        parser->id_length = parser->pending_id_length;
    } else if (parser->field == SSE_FIELD_RETRY && parser->retry_valid &&
               parser->retry_digits) {
        parser->has_retry = true;
        parser->retry_ms = parser->retry_value;
    }
    return 0;
}

/* One byte at a line start or in a field name (never CR or LF). */
static int sse_parser_step(struct sse_parser *parser, char byte, const char **error)
{
    RM_ASSERT(byte != '\r' && byte != '\n');
    RM_ASSERT(parser->state == SSE_STATE_LINE_START || parser->state == SSE_STATE_NAME);
    if (parser->state == SSE_STATE_LINE_START) {
        parser->name_length = 0;
        parser->state = byte == ':' ? SSE_STATE_IGNORE : SSE_STATE_NAME;
        if (byte == ':') {
            return 0;
        }
    }
    if (byte != ':') {
        /* Names longer than ours are kept cut short: they can no longer match. */
        if (parser->name_length < SSE_FIELD_NAME_MAX_BYTES) {
            parser->name[parser->name_length++] = byte;
        }
        return 0;
    }
    if (sse_parser_begin_value(parser, error) != 0) {
        return -1;
    }
    parser->state = parser->field == SSE_FIELD_OTHER ? SSE_STATE_IGNORE : SSE_STATE_VALUE_START;
    return 0;
}

static size_t sse_parser_span(const char *bytes, size_t length)
{
    size_t run = 0;
    while (run < length && bytes[run] != '\r' && bytes[run] != '\n') {
        run++;
    }
    return run;
}

/* Matches a UTF-8 BOM at the stream's start. Returns whether the byte was part of it; on a
 * mismatch the bytes matched so far are replayed as the start of a field name. */
static bool sse_parser_bom(struct sse_parser *parser, char byte)
{
    RM_ASSERT(parser->state == SSE_STATE_BOM);
    RM_ASSERT(parser->bom_bytes < sizeof(sse_bom));
    if ((unsigned char)byte == sse_bom[parser->bom_bytes]) {
        parser->bom_bytes++;
        if (parser->bom_bytes == sizeof(sse_bom)) {
            parser->state = SSE_STATE_LINE_START;
        }
        return true;
    }
    parser->state = SSE_STATE_LINE_START;
    for (uint8_t i = 0; i < parser->bom_bytes; i++) {
        const char *ignored = NULL;
        int result = sse_parser_step(parser, (char)sse_bom[i], &ignored);
        RM_ASSERT(result == 0);
    }
    return false;
}

int sse_parser_feed(struct sse_parser *parser, const char *bytes, size_t length,
                    sse_event_function on_event, void *context, const char **error)
{
    RM_ASSERT(parser->state != SSE_STATE_FAILED);
    RM_ASSERT(on_event != NULL);
    size_t i = 0;
    while (i < length) {
        char byte = bytes[i];
        if (parser->state == SSE_STATE_BOM && sse_parser_bom(parser, byte)) {
            i++;
            continue;
        }
        if (parser->after_cr) {
            parser->after_cr = false;
            if (byte == '\n') {
                i++;
                continue; /* the LF of a CRLF */
            }
        }
        int result = 0;
        if (byte == '\r' || byte == '\n') {
            parser->after_cr = byte == '\r';
            i++;
            result = sse_parser_line_end(parser, on_event, context, error);
        } else if (parser->state == SSE_STATE_VALUE || parser->state == SSE_STATE_IGNORE) {
            size_t run = sse_parser_span(bytes + i, length - i);
            if (parser->state == SSE_STATE_VALUE) {
                result = sse_parser_value(parser, bytes + i, run, error);
            }
            i += run;
        } else if (parser->state == SSE_STATE_VALUE_START) {
            parser->state = SSE_STATE_VALUE;
            i += byte == ' ' ? 1 : 0;
        } else {
            result = sse_parser_step(parser, byte, error);
            i++;
        }
        if (result != 0) {
            return result;
        }
    }
    return 0;
}
