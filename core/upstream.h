#ifndef RM_UPSTREAM_H
#define RM_UPSTREAM_H

/* The engine's upstreams: the LLM endpoints and tools of the config, their breakers and
 * token buckets (engine-wide, reconciled across cores), and each reactor's side of them (its
 * HTTP client with one upstream per endpoint and tool, its LLM queues). core/llm.c and
 * core/tool.c make the calls; this file builds and ticks what they share.
 *
 * Ownership: the set is created on the main thread before the reactors start and destroyed
 * after they stop; a reactor opens its `upstream_core` in its setup callback, uses it only on
 * its own thread, and closes it in teardown. Fields marked shared are read and written with
 * ck_pr atomics from every core. */

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/reactor.h"
#include "net/tls_trust.h"

#define UPSTREAM_AUTHORIZATION_MAX (CONFIG_SECRET_MAX + 16)
#define UPSTREAM_DRAIN_PERIOD_NS 1000000000ull

struct metrics_registry;
struct breaker_set;
struct bucket_set;
struct dns;
struct http_client;
struct llm_call;
struct tool_call;

enum llm_attempt_outcome {
    LLM_ATTEMPT_OK,
    LLM_ATTEMPT_RATE_LIMITED, /* 429 */
    LLM_ATTEMPT_CLIENT_ERROR, /* other 4xx: not retried */
    LLM_ATTEMPT_SERVER_ERROR, /* 5xx */
    LLM_ATTEMPT_TIMEOUT,
    LLM_ATTEMPT_CONNECTION_ERROR, /* connect, TLS or a malformed response */
    LLM_ATTEMPT_OUTCOME_COUNT,
};

enum tool_outcome {
    TOOL_OK,
    TOOL_ERROR,           /* an error answer, a refused connection or a malformed response */
    TOOL_TIMEOUT,
    TOOL_FALLBACK,        /* breaker open (or failed, fallback_on_error): the fallback value */
    TOOL_SHORT_CIRCUITED, /* breaker open: an error at once (fallback_error or none) */
    TOOL_OUTCOME_COUNT,
};

struct upstream_key {
    const struct config_key *config;
    int rpm_bucket;
    int tpm_bucket;
    char authorization[UPSTREAM_AUTHORIZATION_MAX]; /* "Bearer ..." or "" */
    int requests[LLM_ATTEMPT_OUTCOME_COUNT];        /* metric series */
};

/* Engine-wide counters of one endpoint, on their own cache line. */
struct upstream_endpoint_shared {
    uint32_t in_flight;       /* exact cap: taken with CAS below max_in_flight */
    uint32_t queued;          /* waiting calls on every core (max_queue bounds it) */
    uint64_t completed;       /* calls answered, for the drain rate */
    uint64_t drain_per_second; /* completions over the last period, set by core 0 */
    uint64_t drain_mark;      /* `completed` at the start of the period */
    uint64_t drain_at_ns;
} __attribute__((aligned(64)));

struct upstream_endpoint {
    const struct config_endpoint *config;
    int breaker;
    uint32_t fallbacks[CONFIG_FALLBACKS_MAX]; /* endpoint indexes */
    struct upstream_key keys[CONFIG_KEYS_MAX];
    struct upstream_endpoint_shared shared;
    int queue_depth;   /* metric series (gauges, per core) */
    int in_flight;
    int queue_wait;    /* histogram */
    int tokens_prompt; /* counters */
    int tokens_completion;
    int retries;
    int fallbacks_taken;
    int rejected;
    int breaker_open;
};

struct upstream_tool {
    const struct config_tool *config;
    int breaker;
    int calls[TOOL_OUTCOME_COUNT];
    int duration; /* histogram */
    int retries;
};

struct upstream_set {
    const struct config *config; /* borrowed; outlives the set */
    uint32_t cores;
    struct metrics_registry *metrics;
    struct breaker_set *breakers;
    struct bucket_set *buckets;
    struct tls_trust trust;
    bool trust_loaded;
    struct dns *dns;
    uint32_t endpoint_count;
    struct upstream_endpoint endpoints[CONFIG_ENDPOINTS_MAX];
    uint32_t tool_count;
    struct upstream_tool tools[CONFIG_TOOLS_MAX];
};

/* A per-core FIFO of LLM calls of one endpoint. */
struct upstream_lane {
    struct llm_call *head;
    struct llm_call *tail;
    uint32_t count;
};

struct upstream_core {
    struct upstream_set *set;
    struct reactor *reactor;
    uint32_t core;
    struct http_client *client;
    uint32_t endpoint_upstream[CONFIG_ENDPOINTS_MAX]; /* http_client upstream ids */
    uint32_t tool_upstream[CONFIG_TOOLS_MAX];
    struct upstream_lane waiting[CONFIG_ENDPOINTS_MAX]; /* ready to go, in order */
    struct upstream_lane backoff;                       /* waiting for a retry time */
    struct tool_call *tool_backoff;                     /* tool calls waiting for a retry */
    uint32_t key_cursor[CONFIG_ENDPOINTS_MAX];          /* rotates keys of equal budget */
    uint32_t active;  /* calls accepted and not completed (llm and tool) */
    uint64_t random;  /* xorshift state for backoff jitter */
};

/* Builds breakers, buckets, trust anchors (when an https URL is configured) and the resolver
 * (when a URL names a host) for `config`. Returns 0 or a negative errno with err filled. */
int upstream_set_create(const struct config *config, uint32_t cores,
                        struct metrics_registry *metrics, struct upstream_set **out, char *err,
                        size_t err_length);
void upstream_set_destroy(struct upstream_set *set);

/* In the reactor's setup: its HTTP client, one upstream per endpoint and tool, the tick
 * hook (reconciliation, queue pumping, retries). Stored in REACTOR_SLOT_UPSTREAM. */
int upstream_core_open(struct upstream_set *set, struct reactor *reactor);
/* True while calls are queued or in flight on this core. */
bool upstream_core_busy(const struct reactor *reactor);
/* In the reactor's teardown. */
void upstream_core_close(struct reactor *reactor);
struct upstream_core *upstream_core_of(const struct reactor *reactor);

int upstream_endpoint_find(const struct upstream_set *set, const char *name, size_t length);
int upstream_tool_find(const struct upstream_set *set, const char *name, size_t length);
/* The endpoint serving `model`: the first that lists it, else the first that lists none. */
int upstream_endpoint_for_model(const struct upstream_set *set, const char *model,
                                size_t length);
const char *upstream_tool_outcome_name(enum tool_outcome outcome);
/* The wait before attempt `attempt + 1`: exponential from base_ms, capped at max_ms, with
 * jitter over its upper half so that calls which failed together spread out. */
uint64_t upstream_backoff_ns(struct upstream_core *core, const struct config_retry *retry,
                             uint32_t attempt);

#endif
