#ifndef RM_LLM_H
#define RM_LLM_H

/* LLM calls through an endpoint's queue: an exact engine-wide in-flight cap, per-key token
 * buckets (requests and tokens per minute), the key with the most budget first, retries with
 * jittered exponential backoff, then the endpoint's fallbacks in order, then a clear error.
 *
 * A call waits, in order, in its core's queue for the endpoint until a slot and a key with
 * budget are free: it is held, not refused. Only when the endpoint's queue (all cores
 * together) is at max_queue does llm_submit refuse at once, with a Retry-After estimated
 * from the endpoint's drain rate. A 429 pauses the key for its Retry-After (or
 * x-ratelimit-reset-*) and the call goes back to the head of the queue for another key; 5xx,
 * timeouts and connection errors wait a jittered backoff first. A 4xx other than 429 is the
 * caller's problem and comes back as it is.
 *
 * Tokens: `estimated_tokens` are taken from the key's token bucket before the call and
 * corrected from the response's usage.total_tokens after it.
 *
 * Streaming (optional, on_event set; the body asks for it with "stream": true): the data of
 * each event of a 2xx text/event-stream answer goes to on_event as it arrives, the upstream's
 * final "[DONE]" included. Retries and fallbacks happen only while no event has been
 * delivered; a failure after the first event completes the call with LLM_FAILED (the caller
 * has already passed part of the answer on). The token correction comes from a chunk's
 * "usage" object (OpenAI sends one last with stream_options.include_usage); without it the
 * estimate stands. An answer that is not an event stream completes as without on_event. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/http_client.h"

#define LLM_ERROR_MAX 320
#define LLM_BODY_MAX (16u * 1024 * 1024)

struct upstream_core;

enum llm_outcome {
    LLM_OK,              /* a 2xx answer; response_body holds it */
    LLM_UPSTREAM_ERROR,  /* a 4xx answer other than 429, passed back as it is */
    LLM_FAILED,          /* attempts and fallbacks exhausted; error says what happened */
    LLM_BREAKER_OPEN,    /* every endpoint in the chain had its breaker open */
    LLM_OUTCOME_COUNT,
};

struct llm_call;
typedef void (*llm_complete_function)(struct llm_call *call);
/* One event's data (NUL-terminated, valid only during the call). endpoint_used, key_used and
 * attempts describe the attempt being streamed. The callback may call llm_cancel. */
typedef void (*llm_event_function)(struct llm_call *call, const char *data, size_t length);

struct llm_call {
    /* Filled by the caller; body must stay valid until on_complete runs. */
    uint32_t endpoint;
    const char *body; /* an OpenAI chat completions request */
    size_t body_length;
    uint64_t estimated_tokens; /* 0: estimated from the body's size */
    llm_complete_function on_complete;
    llm_event_function on_event; /* optional: NULL for an answer in one piece */
    void *context;
    /* Results, valid during on_complete. */
    enum llm_outcome outcome;
    int status;                /* of the last attempt; 0 without an answer */
    const char *response_body; /* of the last attempt, valid only during on_complete; NULL
                                * when it was streamed (events > 0) */
    size_t response_length;
    uint64_t prompt_tokens;
    uint64_t completion_tokens;
    uint32_t attempts;         /* every attempt on every endpoint */
    uint32_t endpoint_used;
    uint32_t key_used;
    uint64_t queue_wait_ns;    /* time spent waiting for a slot and a budget */
    uint32_t events;           /* delivered to on_event; the answer was streamed when > 0 */
    char error[LLM_ERROR_MAX];
    /* Private to llm.c. */
    struct upstream_core *core;
    struct llm_call *next;
    struct llm_call *previous;
    uint32_t chain;            /* position in the endpoint's fallback chain (0: itself) */
    uint32_t endpoint_attempts;
    uint32_t key;
    uint64_t tokens_taken;
    uint64_t enqueued_ns;
    uint64_t due_ns;           /* backoff: not before */
    uint64_t sent_ns;
    int permit;                /* enum breaker_permit of the attempt in flight */
    uint8_t state;
    bool usage_seen;           /* a streamed chunk carried the usage */
    char *owned_body;          /* the body rewritten for a fallback's model */
    struct http_client_header headers[2];
    struct http_client_request request;
};

/* Starts a call on this core. Returns 0 (on_complete runs later, never from inside), or
 * -EAGAIN when the endpoint's queue is full: then *retry_after_ms says when to come back and
 * no callback runs. */
int llm_submit(struct upstream_core *core, struct llm_call *call, uint32_t *retry_after_ms);
/* Withdraws an accepted call whose on_complete has not run; no callback runs afterwards. */
void llm_cancel(struct llm_call *call);

/* The tick of the core's LLM queues: retries whose backoff is over, and calls that can go
 * now that slots or budgets were freed elsewhere. Called by upstream.c. */
void llm_pump_all(struct upstream_core *core, uint64_t now_ns);
/* Calls waiting on this core (queued or in backoff). */
uint32_t llm_waiting(const struct upstream_core *core);

/* Tokens a request of this size is charged before its usage is known: ~4 bytes per token
 * of prompt plus the completion budget asked for (max_tokens, or a default). */
uint64_t llm_estimate_tokens(size_t body_length, uint64_t max_tokens);

/* Parses a Retry-After (seconds) or x-ratelimit-reset ("1.5s", "6m0s", "20ms") value; returns
 * milliseconds, or -1 when it is neither. */
int64_t llm_parse_reset(const char *value, size_t length);

#endif
