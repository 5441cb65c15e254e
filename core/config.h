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
