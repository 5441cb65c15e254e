#ifndef RM_BENCH_MOCK_H
#define RM_BENCH_MOCK_H

/* ringmaster-mock: an OpenAI-compatible LLM and a set of HTTP tools that stand in for real
 * providers in tests and benchmarks. It runs on the project's own reactors and HTTP server,
 * one reactor per core, and injects what real upstreams do to a client: latency, 429s from
 * concurrency and per-key rate limits, 500s and hangs. Everything a request touches on the
 * hot path is per core except two things that must be exact across cores, as providers'
 * are: the in-flight count (one atomic) and the per-key rate windows (one CAS word each). */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/reactor.h"
#include "net/http_server.h"

#define MOCK_HOST_MAX 64
#define MOCK_NAME_MAX 96 /* an API key or a tool name, NUL included */
#define MOCK_NAMES_MAX 256 /* distinct keys (or tools) tracked; later ones count as "other" */
#define MOCK_TOOL_RULES_MAX 32
#define MOCK_PENDING_MAX 16384 /* delayed or hanging answers per core */
#define MOCK_BODY_MAX (1024 * 1024)
#define MOCK_TEXT_MAX (512 * 1024)
#define MOCK_STATS_BODY_MAX (256 * 1024)
#define MOCK_RESPONSE_HEADERS_MAX 8
#define MOCK_HEADER_VALUE_MAX 40
#define MOCK_ERROR_MAX 512
#define MOCK_TOOL_CALLS_MAX 16
#define MOCK_COMPLETION_TOKENS_MAX 65536
#define MOCK_LATENCY_MS_MAX 3600000u
#define MOCK_QUEUE_DEPTH 1024

enum mock_latency_kind { MOCK_LATENCY_FIXED, MOCK_LATENCY_UNIFORM, MOCK_LATENCY_EXPONENTIAL };

/* fixed: first_ms; uniform: first_ms..second_ms; exponential: mean first_ms, capped at
 * second_ms. */
struct mock_latency {
    enum mock_latency_kind kind;
    uint32_t first_ms;
    uint32_t second_ms;
};

struct mock_faults {
    struct mock_latency latency;
    double error_rate;
    double hang_rate;
};

/* A tool's own faults; what it does not set comes from the defaults for all tools. */
struct mock_tool_rule {
    char name[MOCK_NAME_MAX];
    struct mock_faults faults;
    bool latency_set;
    bool error_rate_set;
    bool hang_rate_set;
};

struct mock_config {
    char host[MOCK_HOST_MAX];
    uint16_t port;
    uint32_t threads; /* 0: one per online core */
    uint64_t seed;
    struct mock_faults llm;
    struct mock_faults tool;
    struct mock_tool_rule rules[MOCK_TOOL_RULES_MAX];
    uint32_t rule_count;
    uint32_t max_concurrency; /* LLM requests in flight; 0: unlimited */
    uint32_t retry_after_s;   /* Retry-After of concurrency 429s */
    uint64_t requests_per_window; /* per API key; 0: unlimited */
    uint64_t tokens_per_window;   /* per API key; 0: unlimited */
    uint32_t window_ms;           /* 60000: the limits are per minute */
    uint32_t max_hang_ms;
    uint32_t tool_calls;          /* calls in a tool-calling answer */
    uint32_t completion_tokens;   /* size of a final answer */
    uint32_t max_connections;
    uint64_t max_body_bytes;
    char storm_key[MOCK_NAME_MAX]; /* every request with this API key gets a 429 */
};

/* Counters, one array per core, written only by that core. */
enum mock_counter {
    MOCK_COUNT_CHAT,
    MOCK_COUNT_TOOLS,
    MOCK_COUNT_STATS,
    MOCK_COUNT_RESET,
    MOCK_COUNT_OTHER,
    MOCK_COUNT_429_CONCURRENCY,
    MOCK_COUNT_429_REQUESTS,
    MOCK_COUNT_429_TOKENS,
    MOCK_COUNT_ERRORS_LLM,
    MOCK_COUNT_ERRORS_TOOLS,
    MOCK_COUNT_HANGS_LLM,
    MOCK_COUNT_HANGS_TOOLS,
    MOCK_COUNT_BAD_REQUESTS,
    MOCK_COUNT_OVERLOADED,
    MOCK_COUNT_PROMPT_TOKENS,
    MOCK_COUNT_COMPLETION_TOKENS,
    MOCK_COUNT_STREAMS,
    MOCK_COUNT_TOOL_CALLS_ISSUED,
    MOCK_COUNT_FINAL_ANSWERS,
    /* MOCK_NAMES_MAX + 1 slots each: one per key (tool) entry, the last for "other" */
    MOCK_COUNT_KEY_REQUESTS,
    MOCK_COUNT_KEY_TOKENS = MOCK_COUNT_KEY_REQUESTS + MOCK_NAMES_MAX + 1,
    MOCK_COUNT_TOOL_CALLS = MOCK_COUNT_KEY_TOKENS + MOCK_NAMES_MAX + 1,
    MOCK_COUNT_TOTAL = MOCK_COUNT_TOOL_CALLS + MOCK_NAMES_MAX + 1,
};

/* A growable-free output buffer: fixed capacity, sticky overflow flag. */
struct mock_json {
    char *data;
    size_t length;
    size_t capacity;
    bool overflow;
};

/* An answer, built at once and sent now or after a delay. Header values live in `values`
 * so that the struct can be copied into a pending slot. */
struct mock_response {
    int status;
    const char *content_type;
    char *body;
    size_t body_length;
    bool body_owned; /* rm_malloc'd (a delayed answer); else it points into scratch */
    bool holds_slot; /* counted in the global in-flight number until sent */
    size_t header_count;
    const char *names[MOCK_RESPONSE_HEADERS_MAX];
    char values[MOCK_RESPONSE_HEADERS_MAX][MOCK_HEADER_VALUE_MAX];
};

struct mock;

struct mock_pending {
    struct reactor_op op;
    struct __kernel_timespec timeout;
    struct mock_core *core;
    struct http_exchange *exchange;
    struct mock_response response;
    struct mock_pending *next_free;
    bool active;
};

struct mock_core {
    struct mock *mock;
    struct reactor *reactor;
    struct http_server *server;
    uint32_t index;
    uint64_t random_state;
    uint64_t sequence;
    uint64_t *counters;
    struct mock_pending *pending;
    struct mock_pending *free_pending;
    struct mock_json scratch;
    struct mock_json text; /* tool arguments and answer content, before escaping */
};

/* A fixed open-addressed table of names (API keys, tool names), shared by every core.
 * Insertion claims a slot with a CAS on the hash; each key's rate windows live beside it. */
struct mock_name_entry {
    uint64_t hash;  /* 0: free */
    uint32_t ready; /* the text is written */
    uint32_t length;
    char text[MOCK_NAME_MAX];
    uint64_t request_window; /* (window id << 40) | used, CAS-updated */
    uint64_t token_window;
};

struct mock_names {
    struct mock_name_entry entries[MOCK_NAMES_MAX];
};

struct mock {
    struct mock_config config;
    struct metrics_registry *metrics;
    struct reactor_group *group;
    int listen_fds[REACTOR_MAX];
    uint16_t port;
    uint32_t threads;
    struct http_server_config server_config;
    struct mock_core cores[REACTOR_MAX];
    uint64_t start_ns; /* rate windows count from here, so the first one is a whole window */
    uint32_t in_flight; /* admitted LLM requests not yet answered, all cores */
    uint32_t in_flight_peak; /* the most in_flight has been since start or reset */
    struct mock_names keys;
    struct mock_names tools;
    pthread_mutex_t stats_lock; /* /mock/stats and /mock/reset only, never the hot path */
    uint64_t baseline[MOCK_COUNT_TOTAL];
};

/* mock_config.c */
void mock_config_defaults(struct mock_config *config);
/* Parses argv (a --config FILE is read first, flags then override it). Returns 0, 1 when
 * --help was printed, or -1 with err filled. */
int mock_config_parse(struct mock_config *config, int argc, char **argv, char *err,
                      size_t err_length);
int mock_latency_parse(struct mock_latency *latency, const char *text, char *err,
                       size_t err_length);
const struct mock_faults *mock_config_tool_faults(const struct mock_config *config,
                                                  const char *name, size_t length);
void mock_config_usage(void);

/* mock_random.c */
enum mock_fault { MOCK_FAULT_NONE, MOCK_FAULT_ERROR, MOCK_FAULT_HANG };
enum mock_fault mock_random_fault(struct mock_core *core, const struct mock_faults *faults);
void mock_random_seed(struct mock_core *core, uint64_t seed);
double mock_random_unit(struct mock_core *core);
uint32_t mock_random_latency_ms(struct mock_core *core, const struct mock_latency *latency);

/* mock_json.c */
int mock_json_init(struct mock_json *json, size_t capacity);
void mock_json_free(struct mock_json *json);
void mock_json_reset(struct mock_json *json);
void mock_json_raw(struct mock_json *json, const char *text, size_t length);
void mock_json_text(struct mock_json *json, const char *text);
void mock_json_string(struct mock_json *json, const char *text, size_t length);
void mock_json_format(struct mock_json *json, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* mock_names.c */
/* Returns the entry index of name (inserting it), or -1 when the table is full. */
int mock_names_find(struct mock_names *names, const char *name, size_t length);

/* mock_limits.c */
struct mock_rate {
    bool limited;    /* any per-key limit configured: the x-ratelimit-* headers apply */
    bool refused;
    bool refused_tokens;
    uint64_t remaining_requests;
    uint64_t remaining_tokens;
    uint64_t reset_ms;
};
bool mock_limits_acquire(struct mock *mock);
void mock_limits_release(struct mock *mock);
/* True when the request carries --storm-key's API key. */
bool mock_limits_storm(const struct mock *mock, const struct http_request *request);
struct mock_rate mock_limits_charge(struct mock *mock, int key, uint64_t tokens, uint64_t now_ns);
void mock_limits_reset(struct mock *mock);
void mock_limits_headers(const struct mock *mock, const struct mock_rate *rate,
                         struct mock_response *response);

/* mock_stats.c */
void mock_stats_add(struct mock_core *core, uint32_t counter, uint64_t amount);
void mock_stats_serve(struct mock *mock, struct mock_core *core, struct http_exchange *exchange);
void mock_stats_reset(struct mock *mock, struct mock_core *core, struct http_exchange *exchange);

/* mock_reply.c */
int mock_reply_init(struct mock_core *core);
void mock_reply_free(struct mock_core *core);
void mock_reply_header(struct mock_response *response, const char *name, const char *format,
                       ...) __attribute__((format(printf, 3, 4)));
/* Sends now (delay 0) or after delay_ms; a hang is a delay of max_hang_ms. */
void mock_reply(struct mock_core *core, struct http_exchange *exchange,
                struct mock_response *response, uint32_t delay_ms);
void mock_reply_error_body(struct mock_core *core, struct mock_response *response, int status,
                           const char *type, const char *code, const char *message);
void mock_reply_error(struct mock_core *core, struct http_exchange *exchange, int status,
                      const char *type, const char *code, const char *message);
/* Answers every delayed exchange at once (the server is stopping). */
void mock_reply_flush(struct mock_core *core);
/* Key index of the request's bearer token, or MOCK_NAMES_MAX for "other". */
int mock_reply_key(struct mock_core *core, const struct http_request *request);

/* mock_llm.c, mock_tools.c */
void mock_llm_handle(struct mock_core *core, struct http_exchange *exchange);
void mock_tools_handle(struct mock_core *core, struct http_exchange *exchange, const char *name,
                       size_t length);

#endif
