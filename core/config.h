#ifndef RM_CONFIG_H
#define RM_CONFIG_H

/* The engine's configuration: one JSON file validated at start. Every key has a default, so
 * an empty object `{}` is a valid config (the embedded default). Unknown keys, wrong types
 * and out-of-range values are errors that name the file, the line and the key path. Secrets
 * (the admin token) come only from an environment variable or a file named in the config,
 * never from the config text itself. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_PATH_MAX 512
#define CONFIG_HOST_MAX 64
#define CONFIG_SECRET_MAX 256
#define CONFIG_ERROR_MAX 512
#define CONFIG_NAMESPACES_MAX 64
#define CONFIG_NAME_MAX 64
#define CONFIG_URL_MAX 256
#define CONFIG_ENDPOINTS_MAX 16
#define CONFIG_KEYS_MAX 8            /* API keys per endpoint */
#define CONFIG_MODELS_MAX 8          /* models named per endpoint */
#define CONFIG_FALLBACKS_MAX 4       /* fallback endpoints per endpoint */
#define CONFIG_TOOLS_MAX 64
#define CONFIG_FALLBACK_JSON_MAX 2048 /* a tool's fallback value, compact JSON */
#define CONFIG_AGENTS_MAX 64
#define CONFIG_AGENT_TOOLS_MAX 16      /* tools one agent may call */
#define CONFIG_PROMPT_MAX 8192         /* an agent's system prompt */
#define CONFIG_PARAMS_JSON_MAX 1024    /* an agent's model parameters, compact JSON */
#define CONFIG_DESCRIPTION_MAX 512     /* a tool's description for the LLM */
#define CONFIG_SCHEMA_JSON_MAX 4096    /* a tool's JSON schema, compact JSON */

enum config_log_level { CONFIG_LOG_DEBUG, CONFIG_LOG_INFO, CONFIG_LOG_WARN, CONFIG_LOG_ERROR };
enum config_durability { CONFIG_DURABILITY_SYNC, CONFIG_DURABILITY_ASYNC };

struct config_limits {
    uint32_t max_connections;     /* engine-wide; default 10000 */
    uint32_t max_uri_bytes;       /* default 8192 */
    uint32_t max_header_bytes;    /* default 16384 */
    uint32_t max_headers;         /* default 64, at most 128 */
    uint64_t max_body_bytes;      /* default 1 MiB */
    uint32_t header_timeout_ms;   /* default 10000 */
    uint32_t body_timeout_ms;     /* default 30000 */
    uint32_t idle_timeout_ms;     /* keep-alive idle; default 60000 */
    uint32_t drain_timeout_ms;    /* on SIGTERM; default 10000 */
    uint32_t max_value_bytes;     /* store value; default 1 MiB */
    uint32_t max_invocations;     /* queued and running, engine-wide (the memory budget);
                                     default 1000000; beyond it 503 */
};

struct config_namespace_durability {
    char name[CONFIG_NAME_MAX];
    enum config_durability mode;
};

struct config_durability_section {
    enum config_durability default_mode; /* default sync */
    uint32_t flush_interval_ms;          /* async flush bound; default 5 */
    uint32_t namespace_count;
    struct config_namespace_durability namespaces[CONFIG_NAMESPACES_MAX];
};

struct config_store {
    uint64_t segment_bytes;       /* default 64 MiB */
    uint64_t cache_bytes;         /* value cache bound per engine; default 256 MiB */
    uint32_t compact_dead_percent; /* compact sealed segments above this; default 50 */
    bool require_precondition;    /* 428 on unconditional overwrite; default true */
};

enum config_window { CONFIG_WINDOW_COUNT, CONFIG_WINDOW_TIME };

/* A circuit breaker: "breaker": {...} in a tool or an endpoint. */
struct config_breaker {
    enum config_window window; /* "window": "count" (default) or "time" */
    uint32_t window_calls;     /* count window: the last N calls; default 20, 1..100000 */
    uint32_t window_ms;        /* time window; default 10000, 100..3600000 */
    uint32_t min_calls;        /* no decision below this many calls in the window; default 10 */
    uint32_t failure_percent;  /* open at or above this failure rate; default 50, 1..100 */
    uint32_t slow_call_ms;     /* a call at least this slow is slow; default 0 = none is */
    uint32_t slow_percent;     /* open at or above this slow-call rate; default 100, 1..100 */
    uint32_t open_ms;          /* cool-down before probing; default 5000, 1..3600000 */
    uint32_t probes;           /* half-open probes across all cores; default 3, 1..1000 */
};

/* An API key: "keys": [{"name": "k1", "env": "VAR" | "file": "/path", "rpm": N, "tpm": N}].
 * Without env and file the key sends no Authorization header (local endpoints, the mock). */
struct config_key {
    char name[CONFIG_NAME_MAX];  /* metric label; [A-Za-z0-9_.-] */
    char secret[CONFIG_SECRET_MAX];
    bool secret_set;
    uint64_t rpm;                /* requests per minute; 0 = unlimited */
    uint64_t tpm;                /* tokens per minute; 0 = unlimited */
};

struct config_retry {
    uint32_t max_attempts; /* per endpoint, the first included; default 3, 1..10 */
    uint32_t base_ms;      /* first backoff; default 100 */
    uint32_t max_ms;       /* backoff cap; default 5000 */
};

/* An OpenAI-compatible LLM endpoint: "endpoints": {"NAME": {...}}. */
struct config_endpoint {
    char name[CONFIG_NAME_MAX];   /* the object key; [A-Za-z0-9_.-] */
    char url[CONFIG_URL_MAX];     /* base URL, http or https; requests go to url + path */
    uint32_t model_count;         /* "models": models it serves (gateway routing); [] = any */
    char models[CONFIG_MODELS_MAX][CONFIG_NAME_MAX];
    uint32_t key_count;           /* at least 1 */
    struct config_key keys[CONFIG_KEYS_MAX];
    uint32_t max_in_flight;       /* exact, engine-wide; default 64, 1..100000 */
    uint32_t max_queue;           /* waiting requests, engine-wide; default 10000 */
    uint32_t max_connections;     /* per core; default 256 */
    uint32_t connect_timeout_ms;  /* default 5000 */
    uint32_t first_byte_timeout_ms; /* default 60000 */
    uint32_t timeout_ms;          /* whole attempt; default 120000 */
    uint64_t max_response_bytes;  /* default 8 MiB */
    struct config_retry retry;
    uint32_t fallback_count;      /* "fallbacks": other endpoints' names, tried in order */
    char fallbacks[CONFIG_FALLBACKS_MAX][CONFIG_NAME_MAX];
    struct config_breaker breaker;
};

enum config_fallback_kind {
    CONFIG_FALLBACK_NONE,  /* while open, calls fail with a "circuit open" error */
    CONFIG_FALLBACK_VALUE, /* "fallback": any JSON value, returned as the tool's result */
    CONFIG_FALLBACK_ERROR, /* "fallback_error": "text", returned as the tool's error */
};

enum config_tool_kind {
    CONFIG_TOOL_HTTP,  /* "kind": "http" (default): the JSON arguments are POSTed to url */
    CONFIG_TOOL_AGENT, /* "kind": "agent": invokes the agent named by "agent" (a sub-agent) */
    CONFIG_TOOL_C,     /* "kind": "c": a function registered through the embedding API */
};

/* A tool: "tools": {"NAME": {...}}. Breaker and fallback apply to every kind. */
struct config_tool {
    char name[CONFIG_NAME_MAX];
    enum config_tool_kind kind;
    char url[CONFIG_URL_MAX];     /* http: required */
    char agent[CONFIG_NAME_MAX];  /* agent: required, an agent of "agents" */
    char description[CONFIG_DESCRIPTION_MAX]; /* for the LLM; default "" */
    char parameters[CONFIG_SCHEMA_JSON_MAX];  /* JSON schema object, compact; default
                                                 {"type":"object"} */
    uint32_t timeout_ms;          /* whole call; default 10000 */
    uint32_t connect_timeout_ms;  /* default 2000 */
    uint32_t max_connections;     /* per core; default 256 */
    uint64_t max_response_bytes;  /* default 1 MiB */
    struct config_breaker breaker;
    /* http: attempts per call; default 1 (a tool may not be idempotent: retries are opt-in) */
    struct config_retry retry;
    enum config_fallback_kind fallback_kind;
    char fallback[CONFIG_FALLBACK_JSON_MAX]; /* compact JSON value, or the error text */
    bool fallback_on_error; /* the fallback also answers a call whose last attempt failed */
};

/* An agent: "agents": {"NAME": {...}}. */
struct config_agent {
    char name[CONFIG_NAME_MAX];
    char endpoint[CONFIG_NAME_MAX]; /* required: an endpoint of "endpoints" */
    char model[CONFIG_NAME_MAX];    /* required */
    char system[CONFIG_PROMPT_MAX]; /* "system": the system prompt; default "" (none) */
    uint32_t tool_count;            /* "tools": names of "tools" entries */
    char tools[CONFIG_AGENT_TOOLS_MAX][CONFIG_NAME_MAX];
    uint32_t max_steps;       /* LLM calls per invocation; default 8, 1..100 */
    uint32_t deadline_ms;     /* per invocation, from its start; default 300000 */
    uint32_t max_concurrent;  /* running invocations, engine-wide; default 64 */
    uint32_t max_queue;       /* queued invocations, engine-wide; default 10000 */
    uint32_t max_depth;       /* sub-agent nesting below this agent; default 3, 0..8 */
    uint32_t history_messages; /* of a session's history, the latest sent to the LLM; 100 */
    char params[CONFIG_PARAMS_JSON_MAX]; /* "params": an object merged into every LLM request
                                            (temperature, top_p, max_tokens...); default {} */
};

struct config {
    char source[CONFIG_PATH_MAX]; /* file name, or "<default>" / "<string>" */
    /* "listen": "host:port"; default 127.0.0.1:8080. The host is an IPv4 literal, an IPv6
     * literal (written "[::1]:port" in the file, stored without brackets) or "localhost". */
    char listen_host[CONFIG_HOST_MAX];
    uint16_t listen_port;
    uint32_t threads;             /* 0 = one per online core */
    char data_dir[CONFIG_PATH_MAX]; /* default "./ringmaster-data" */
    struct config_limits limits;
    struct config_durability_section durability;
    struct config_store store;
    struct {
        enum config_log_level level; /* default info */
        char file[CONFIG_PATH_MAX];  /* empty = stderr */
    } log;
    struct {
        char ca_file[CONFIG_PATH_MAX]; /* "tls": {"ca_file"}; empty = the system bundle */
    } tls;
    struct {
        uint32_t reconcile_ms; /* "resilience": {"reconcile_ms"}; default 10, 1..1000 */
    } resilience;
    uint32_t endpoint_count;
    struct config_endpoint endpoints[CONFIG_ENDPOINTS_MAX];
    uint32_t tool_count;
    struct config_tool tools[CONFIG_TOOLS_MAX];
    uint32_t agent_count;
    struct config_agent agents[CONFIG_AGENTS_MAX];
    struct {
        /* "admin": {"token_env": "NAME"} or {"token_file": "/path"}; empty = admin API off */
        char token[CONFIG_SECRET_MAX];
        bool token_set;
    } admin;
};

/* Routes jansson's allocations through rm_malloc/rm_free. Idempotent and thread-safe; every
 * module that uses jansson calls it before its first jansson call (config_parse does), so that
 * no jansson value is ever freed by an allocator other than the one that made it. */
void config_json_init(void);

/* Fills *config with every default. */
void config_defaults(struct config *config);

/* Parses and validates JSON text; `source` names it in errors. Returns 0, or -1 with a
 * message in err: "ringmaster.json:12: limits.max_headers: must be an integer between 1 and
 * 128 (got 500)", or "ringmaster.json:3:14: <jansson's text>" for a syntax error. After -1,
 * *config holds no secret (admin.token is wiped). Reads the admin token's variable or file. */
int config_parse(struct config *config, const char *source, const char *text, size_t length,
                 char *err, size_t err_length);

/* Reads the file and parses it. Returns 0 or -1 with err filled (file errors included). */
int config_load(struct config *config, const char *path, char *err, size_t err_length);

/* The durability mode of a namespace. */
enum config_durability config_durability_of(const struct config *config, const char *ns,
                                            size_t ns_length);

#endif
