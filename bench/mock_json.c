/* A fixed-capacity output buffer for JSON and SSE bodies. Writing past the capacity sets a
 * sticky overflow flag instead of growing, so a huge request cannot make the mock allocate
 * without bound; the caller answers 500 when it sees the flag. */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bench/mock.h"
#include "core/alloc.h"
#include "core/rm_assert.h"

int mock_json_init(struct mock_json *json, size_t capacity)
{
    RM_ASSERT(json != NULL);
    RM_ASSERT(capacity > 0);
    json->data = rm_malloc(capacity);
    json->length = 0;
    json->capacity = capacity;
    json->overflow = false;
    return json->data == NULL ? -1 : 0;
}

void mock_json_free(struct mock_json *json)
{
    RM_ASSERT(json != NULL);
    rm_free(json->data);
    json->data = NULL;
    json->capacity = 0;
}

void mock_json_reset(struct mock_json *json)
{
    RM_ASSERT(json->data != NULL);
    json->length = 0;
    json->overflow = false;
}

void mock_json_raw(struct mock_json *json, const char *text, size_t length)
{
    RM_ASSERT(json->length <= json->capacity);
    if (json->overflow || length > json->capacity - json->length) {
        json->overflow = true;
        return;
    }
    memcpy(json->data + json->length, text, length);
    json->length += length;
}

void mock_json_text(struct mock_json *json, const char *text)
{
    RM_ASSERT(text != NULL);
    mock_json_raw(json, text, strlen(text));
}

/* Escapes what JSON requires (quote, backslash, control bytes); other bytes pass through,
 * so valid UTF-8 stays valid. */
void mock_json_string(struct mock_json *json, const char *text, size_t length)
{
    RM_ASSERT(text != NULL || length == 0);
    mock_json_raw(json, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < length; i++) {
        unsigned char byte = (unsigned char)text[i];
        if (byte >= 0x20 && byte != '"' && byte != '\\') {
            continue;
        }
        mock_json_raw(json, text + run, i - run);
        run = i + 1;
        char escape[8];
        if (byte == '"' || byte == '\\') {
            snprintf(escape, sizeof(escape), "\\%c", byte);
        } else if (byte == '\n') {
            snprintf(escape, sizeof(escape), "\\n");
        } else {
            snprintf(escape, sizeof(escape), "\\u%04x", byte);
        }
        mock_json_text(json, escape);
    }
    mock_json_raw(json, text + run, length - run);
    mock_json_raw(json, "\"", 1);
}

void mock_json_format(struct mock_json *json, const char *format, ...)
{
    RM_ASSERT(format != NULL);
    RM_ASSERT(json->length <= json->capacity);
    if (json->overflow) {
        return;
    }
    size_t room = json->capacity - json->length;
    va_list arguments;
    va_start(arguments, format);
    int written = vsnprintf(json->data + json->length, room, format, arguments);
    va_end(arguments);
    if (written < 0 || (size_t)written >= room) {
        json->overflow = true;
        return;
    }
    json->length += (size_t)written;
}
