#ifndef RM_TOOL_H
#define RM_TOOL_H

/* Tool calls through the tool's circuit breaker: the JSON arguments are POSTed to the tool's
 * URL. While the breaker is open a call completes at once, without touching the upstream,
 * with the tool's fallback value (TOOL_FALLBACK) or a "circuit open" error
 * (TOOL_SHORT_CIRCUITED). Timeouts, refused connections, malformed answers, 429 and 5xx count
 * as breaker failures; other 4xx answers are the arguments' fault and do not. A failed
 * attempt is tried again after a jittered backoff while the tool's retry.max_attempts allows
 * (timeout_ms is per attempt); when the last attempt failed and the tool has
 * fallback_on_error, the fallback value answers (TOOL_FALLBACK). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/upstream.h"
#include "net/http_client.h"

#define TOOL_ERROR_MAX 320

struct tool_call;
typedef void (*tool_complete_function)(struct tool_call *call);

struct tool_call {
    /* Filled by the caller; arguments must stay valid until the call completes. */
    uint32_t tool;
    const char *arguments;
    size_t arguments_length;
    tool_complete_function on_complete;
    void *context;
    /* Results, valid during on_complete (or after tool_call_start returned 1). */
    enum tool_outcome outcome;
    int status;          /* the tool's HTTP status; 0 without an answer */
    const char *result;  /* the answer's body, or the fallback value (JSON) */
    size_t result_length;
    uint64_t duration_ns;    /* from the start of the first attempt */
    uint32_t attempts;       /* attempts that went out */
    uint64_t retry_after_ms; /* short-circuited: until the breaker lets probes through */
    char error[TOOL_ERROR_MAX];
    /* Private to tool.c. */
    struct upstream_core *core;
    int permit;
    uint64_t start_ns;
    uint64_t attempt_start_ns;
    uint64_t due_ns; /* backing off: the next attempt's time */
    bool backing_off;
    struct tool_call *backoff_previous;
    struct tool_call *backoff_next;
    struct http_client_header headers[1];
    struct http_client_request request;
};

/* Starts a call. Returns 0 when it went out (on_complete runs later), or 1 when it completed
 * at once (breaker open, or the client refused it): the results are filled and no callback
 * runs. */
int tool_call_start(struct upstream_core *core, struct tool_call *call);
/* Withdraws a call that went out and has not completed; no callback runs afterwards. */
void tool_call_cancel(struct tool_call *call);
/* From the upstream tick: sends the retries that are due. */
void tool_pump_backoff(struct upstream_core *core, uint64_t now_ns);

#endif
