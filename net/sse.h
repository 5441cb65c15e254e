#ifndef RM_SSE_H
#define RM_SSE_H

/* Incremental parser for text/event-stream (the WHATWG HTML "server-sent events" format), as
 * LLM APIs stream their answers: "data: {...}\n\n" ... "data: [DONE]\n\n".
 *
 * Bytes are fed as they arrive, in any pieces; an event is delivered as soon as the empty line
 * that ends it arrives. Lines end in CRLF, LF or CR (a CRLF split across feeds counts once).
 * Fields: data (lines joined with LF), event (the type; "message" when absent), id (kept for
 * later events, as the format says; ignored when it contains NUL), retry (digits only); lines
 * starting with ':' are comments; other fields are ignored. A leading UTF-8 BOM is skipped.
 *
 * Bounds: the data of one event is at most max_event_bytes, the event type
 * SSE_EVENT_TYPE_MAX_BYTES and the id SSE_ID_MAX_BYTES; more is an error (the stream is
 * untrusted). The buffer is allocated once at init; feeding allocates nothing. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SSE_EVENT_TYPE_MAX_BYTES 64
#define SSE_ID_MAX_BYTES 256
#define SSE_FIELD_NAME_MAX_BYTES 8 /* longer names are none of ours: ignored */
#define SSE_EVENT_MAX_BYTES_CEILING (16u * 1024 * 1024)

struct sse_event {
    const char *type; /* NUL-terminated, "message" by default; may contain NUL bytes */
    size_t type_length;
    const char *data; /* NUL-terminated; may contain NUL bytes from the stream */
    size_t data_length;
    const char *id; /* NUL-terminated last event id, "" when none */
    size_t id_length;
    bool has_retry;
    uint64_t retry_ms;
};

/* Returns true to go on, false to stop parsing (sse_parser_feed then returns SSE_STOPPED). The
 * event's pointers are valid only during the call. */
typedef bool (*sse_event_function)(void *context, const struct sse_event *event);

#define SSE_STOPPED 1

/* All fields are private to sse.c. */
struct sse_parser {
    char *data; /* max_event_bytes + 1 */
    uint32_t max_event_bytes;
    uint32_t data_length;
    uint32_t type_length;
    uint32_t id_length;
    uint32_t pending_id_length;
    uint8_t name_length;
    uint8_t state;
    uint8_t field;
    bool after_cr;
    bool has_data;
    uint8_t bom_bytes;
    bool retry_valid;
    bool retry_digits;
    bool has_retry;
    bool id_has_nul;
    uint64_t retry_value;
    uint64_t retry_ms;
    char name[SSE_FIELD_NAME_MAX_BYTES];
    char type[SSE_EVENT_TYPE_MAX_BYTES + 1];
    char id[SSE_ID_MAX_BYTES + 1];
    char pending_id[SSE_ID_MAX_BYTES + 1];
};

/* Returns 0 or -ENOMEM. max_event_bytes: 1 .. SSE_EVENT_MAX_BYTES_CEILING. */
int sse_parser_init(struct sse_parser *parser, uint32_t max_event_bytes);
/* Forgets everything fed so far (a new stream), keeping the buffer. */
void sse_parser_reset(struct sse_parser *parser);
void sse_parser_free(struct sse_parser *parser);

/* Parses bytes, calling on_event for each complete event. Returns 0, SSE_STOPPED when a
 * callback asked to stop, or -1 with *error set to a static message when the stream broke a
 * bound (the parser must then be reset before further use). */
int sse_parser_feed(struct sse_parser *parser, const char *bytes, size_t length,
                    sse_event_function on_event, void *context, const char **error);

#endif
