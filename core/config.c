#include "core/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/config_parser.h"
#include "core/rm_assert.h"

/* A config is a few kilobytes (tens with long prompts and schemas); the bound keeps a wrong
 * path (a log file, a device) from being read whole into memory. */
#define CONFIG_FILE_BYTES_MAX (1024 * 1024)

static pthread_once_t config_json_once = PTHREAD_ONCE_INIT;

static void *config_json_malloc(size_t size) { return rm_malloc(size); }

static void config_json_free(void *pointer) { rm_free(pointer); }

static void config_json_install(void)
{
    json_set_alloc_funcs(config_json_malloc, config_json_free);
}

void config_json_init(void)
{
    RM_ASSERT(pthread_once(&config_json_once, config_json_install) == 0);
}

void config_defaults(struct config *config)
{
    RM_ASSERT(config != NULL);
    memset(config, 0, sizeof(*config));
    snprintf(config->source, sizeof(config->source), "%s", "<default>");
    snprintf(config->listen_host, sizeof(config->listen_host), "%s", "127.0.0.1");
    config->listen_port = 8080;
    config->threads = 0;
    snprintf(config->data_dir, sizeof(config->data_dir), "%s", "./ringmaster-data");
    config->limits = (struct config_limits){
        .max_connections = 10000,
        .max_uri_bytes = 8192,
        .max_header_bytes = 16384,
        .max_headers = 64,
        .max_body_bytes = CONFIG_MIB,
        .header_timeout_ms = 10000,
        .body_timeout_ms = 30000,
        .idle_timeout_ms = 60000,
        .drain_timeout_ms = 10000,
        .max_value_bytes = CONFIG_MIB,
        .max_invocations = 1000000,
    };
    config->durability.default_mode = CONFIG_DURABILITY_SYNC;
    config->durability.flush_interval_ms = 5;
    config->durability.namespace_count = 0;
    config->store.segment_bytes = 64 * CONFIG_MIB;
    config->store.cache_bytes = 256 * CONFIG_MIB;
    config->store.compact_dead_percent = 50;
    config->store.require_precondition = true;
    config->log.level = CONFIG_LOG_INFO;
    config->admin.token_set = false;
    config_upstreams_defaults(config);
    RM_ASSERT(config->limits.max_uri_bytes <= config->limits.max_header_bytes);
}


static int config_parse_durability_mode(struct config_parser *parser, json_t *value,
                                        enum config_durability *mode)
{
    static const char *const names[] = {"sync", "async"};
    _Static_assert(CONFIG_DURABILITY_SYNC == 0 && CONFIG_DURABILITY_ASYNC == 1, "names[]");
    size_t index = 0;
    if (config_parse_choice(parser, value, names, RM_ARRAY_LENGTH(names), &index) != 0) {
        return -1;
    }
    RM_ASSERT(index < RM_ARRAY_LENGTH(names));
    *mode = index == 0 ? CONFIG_DURABILITY_SYNC : CONFIG_DURABILITY_ASYNC;
    return 0;
}

/* ---- listen ---- */

/* Accepts an IPv4 literal, "[IPv6 literal]" or "localhost"; stores IPv6 without brackets. */
static bool config_listen_host(struct config *config, const char *host, size_t length)
{
    RM_ASSERT(host != NULL);
    RM_ASSERT(sizeof(config->listen_host) == CONFIG_HOST_MAX);
    char bare[CONFIG_HOST_MAX];
    bool bracketed = length >= 2 && host[0] == '[' && host[length - 1] == ']';
    size_t bare_length = bracketed ? length - 2 : length;
    if (bare_length == 0 || bare_length >= sizeof(bare)) {
        return false;
    }
    memcpy(bare, host + (bracketed ? 1 : 0), bare_length);
    bare[bare_length] = '\0';
    unsigned char address[sizeof(struct in6_addr)];
    bool valid = bracketed ? inet_pton(AF_INET6, bare, address) == 1
                           : strcmp(bare, "localhost") == 0 ||
                                 inet_pton(AF_INET, bare, address) == 1;
    if (valid) {
        memcpy(config->listen_host, bare, bare_length + 1);
    }
    return valid;
}

/* Decimal digits only, 0..65535: port 0 asks the kernel for an ephemeral port. */
static bool config_listen_port(const char *text, size_t length, uint16_t *port)
{
    RM_ASSERT(text != NULL);
    RM_ASSERT(port != NULL);
    if (length == 0 || length > 5) {
        return false;
    }
    uint32_t value = 0;
    for (size_t i = 0; i < length; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return false;
        }
        value = value * 10 + (uint32_t)(text[i] - '0');
    }
    if (value > UINT16_MAX) {
        return false;
    }
    *port = (uint16_t)value;
    return true;
}

static int config_parse_listen(struct config_parser *parser, json_t *value,
                               const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_listen);
    RM_ASSERT(parser->depth == 1);
    if (!json_is_string(value)) {
        return config_fail(parser, "must be a string \"host:port\" (got %s)",
                           config_type_name(value));
    }
    const char *text = json_string_value(value);
    size_t length = json_string_length(value);
    const char *colon = memrchr(text, ':', length);
    char echo[CONFIG_ECHO_MAX + 4];
    config_echo(echo, sizeof(echo), text);
    if (colon == NULL) {
        return config_fail(parser, "must be \"host:port\" (got \"%s\")", echo);
    }
    size_t host_length = (size_t)(colon - text);
    if (!config_listen_host(parser->config, text, host_length)) {
        return config_fail(parser,
                           "host must be an IPv4 address, [IPv6 address] or localhost "
                           "(got \"%s\")",
                           echo);
    }
    if (!config_listen_port(colon + 1, length - host_length - 1, &parser->config->listen_port)) {
        return config_fail(parser, "port must be a number from 0 to 65535 (got \"%s\")", echo);
    }
    return 0;
}

/* ---- top-level scalars ---- */

static int config_parse_data_dir(struct config_parser *parser, json_t *value,
                                 const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_data_dir);
    RM_ASSERT(parser->depth == 1);
    struct config *config = parser->config;
    return config_parse_text(parser, value, config->data_dir, sizeof(config->data_dir), false,
                             "a non-empty path");
}

static int config_parse_log_level(struct config_parser *parser, json_t *value,
                                  const struct config_field *field)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    _Static_assert(CONFIG_LOG_DEBUG == 0 && CONFIG_LOG_ERROR == 3, "names[] follows the enum");
    RM_ASSERT(field->parse == config_parse_log_level);
    size_t index = 0;
    if (config_parse_choice(parser, value, names, RM_ARRAY_LENGTH(names), &index) != 0) {
        return -1;
    }
    RM_ASSERT(index < RM_ARRAY_LENGTH(names));
    parser->config->log.level = (enum config_log_level)index;
    return 0;
}

static int config_parse_log_file(struct config_parser *parser, json_t *value,
                                 const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_log_file);
    RM_ASSERT(parser->depth == 2);
    struct config *config = parser->config;
    return config_parse_text(parser, value, config->log.file, sizeof(config->log.file), true,
                             "a path (empty for stderr)");
}

static int config_parse_log(struct config_parser *parser, json_t *value,
                            const struct config_field *field)
{
    static const struct config_field fields[] = {
        {"level", config_parse_log_level, 0, 0, 0},
        {"file", config_parse_log_file, 0, 0, 0},
    };
    RM_ASSERT(field->parse == config_parse_log);
    RM_ASSERT(parser->depth == 1);
    return config_parse_object(parser, value, fields, RM_ARRAY_LENGTH(fields));
}

/* ---- limits ---- */

#define CONFIG_LIMIT(field, minimum, maximum, parse)                                          \
    {#field, parse, offsetof(struct config, limits.field), minimum, maximum}

static int config_parse_limits(struct config_parser *parser, json_t *value,
                               const struct config_field *field)
{
    static const struct config_field fields[] = {
        CONFIG_LIMIT(max_connections, 1, 1000000, config_parse_u32),
        CONFIG_LIMIT(max_uri_bytes, 64, 1048576, config_parse_u32),
        CONFIG_LIMIT(max_header_bytes, 1024, 1048576, config_parse_u32),
        CONFIG_LIMIT(max_headers, 1, 128, config_parse_u32),
        CONFIG_LIMIT(max_body_bytes, 0, CONFIG_GIB, config_parse_u64),
        CONFIG_LIMIT(header_timeout_ms, 1, 3600000, config_parse_u32),
        CONFIG_LIMIT(body_timeout_ms, 1, 3600000, config_parse_u32),
        CONFIG_LIMIT(idle_timeout_ms, 1, 3600000, config_parse_u32),
        CONFIG_LIMIT(drain_timeout_ms, 1, 3600000, config_parse_u32),
        CONFIG_LIMIT(max_value_bytes, 1, 64 * CONFIG_MIB, config_parse_u32),
        CONFIG_LIMIT(max_invocations, 1, 100000000, config_parse_u32),
    };
    RM_ASSERT(field->parse == config_parse_limits);
    RM_ASSERT(parser->depth == 1);
    if (config_parse_object(parser, value, fields, RM_ARRAY_LENGTH(fields)) != 0) {
        return -1;
    }
    const struct config_limits *limits = &parser->config->limits;
    if (limits->max_uri_bytes <= limits->max_header_bytes) {
        return 0;
    }
    /* The request line is part of the header block, so it cannot be allowed more room. The
     * error goes to whichever of the two keys the file sets. */
    int result;
    if (json_object_get(value, "max_uri_bytes") != NULL) {
        config_path_push(parser, "max_uri_bytes");
        result = config_fail(parser,
                             "must be an integer between 64 and limits.max_header_bytes (%" PRIu32
                             ") (got %" PRIu32 ")",
                             limits->max_header_bytes, limits->max_uri_bytes);
    } else {
        config_path_push(parser, "max_header_bytes");
        result = config_fail(parser,
                             "must be at least limits.max_uri_bytes (%" PRIu32
                             ", its default); set limits.max_uri_bytes as well",
                             limits->max_uri_bytes);
    }
    config_path_pop(parser);
    return result;
}

/* ---- durability ---- */

static int config_parse_namespaces(struct config_parser *parser, json_t *value,
                                   const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_namespaces);
    RM_ASSERT(parser->depth == 2);
    struct config_durability_section *durability = &parser->config->durability;
    if (!json_is_object(value)) {
        return config_fail(parser, "must be an object of \"namespace\": \"sync\" or \"async\" "
                                   "(got %s)",
                           config_type_name(value));
    }
    if (json_object_size(value) > CONFIG_NAMESPACES_MAX) {
        return config_fail(parser, "at most %d namespaces (got %zu)", CONFIG_NAMESPACES_MAX,
                           json_object_size(value));
    }
    durability->namespace_count = 0;
    const char *name;
    json_t *mode;
    json_object_foreach(value, name, mode) {
        RM_ASSERT(durability->namespace_count < CONFIG_NAMESPACES_MAX);
        struct config_namespace_durability *entry =
            &durability->namespaces[durability->namespace_count];
        config_path_push(parser, name);
        size_t length = strlen(name);
        int result = 0;
        if (!config_name_valid(name, length)) {
            result = config_fail(parser, "namespace names are 1 to %d characters of A-Z a-z "
                                         "0-9 _ . -",
                                 CONFIG_NAME_MAX - 1);
        } else {
            result = config_parse_durability_mode(parser, mode, &entry->mode);
        }
        config_path_pop(parser);
        if (result != 0) {
            return -1;
        }
        memcpy(entry->name, name, length + 1);
        durability->namespace_count++;
    }
    return 0;
}

static int config_parse_durability_default(struct config_parser *parser, json_t *value,
                                           const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_durability_default);
    RM_ASSERT(parser->depth == 2);
    return config_parse_durability_mode(parser, value, &parser->config->durability.default_mode);
}

static int config_parse_durability(struct config_parser *parser, json_t *value,
                                   const struct config_field *field)
{
    static const struct config_field fields[] = {
        {"default", config_parse_durability_default, 0, 0, 0},
        {"flush_interval_ms", config_parse_u32,
         offsetof(struct config, durability.flush_interval_ms), 1, 10000},
        {"namespaces", config_parse_namespaces, 0, 0, 0},
    };
    RM_ASSERT(field->parse == config_parse_durability);
    RM_ASSERT(parser->depth == 1);
    return config_parse_object(parser, value, fields, RM_ARRAY_LENGTH(fields));
}

/* ---- store ---- */

static int config_parse_require_precondition(struct config_parser *parser, json_t *value,
                                             const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_require_precondition);
    RM_ASSERT(parser->depth == 2);
    if (!json_is_boolean(value)) {
        return config_fail(parser, "must be true or false (got %s)", config_type_name(value));
    }
    parser->config->store.require_precondition = json_is_true(value);
    return 0;
}

static int config_parse_store(struct config_parser *parser, json_t *value,
                              const struct config_field *field)
{
    static const struct config_field fields[] = {
        {"segment_bytes", config_parse_u64, offsetof(struct config, store.segment_bytes),
         CONFIG_MIB, 4 * CONFIG_GIB},
        {"cache_bytes", config_parse_u64, offsetof(struct config, store.cache_bytes), CONFIG_MIB,
         CONFIG_TIB},
        {"compact_dead_percent", config_parse_u32,
         offsetof(struct config, store.compact_dead_percent), 1, 99},
        {"require_precondition", config_parse_require_precondition, 0, 0, 0},
    };
    RM_ASSERT(field->parse == config_parse_store);
    RM_ASSERT(parser->depth == 1);
    return config_parse_object(parser, value, fields, RM_ARRAY_LENGTH(fields));
}

/* ---- admin ---- */

static int config_parse_token_env(struct config_parser *parser, json_t *value,
                                  const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_token_env);
    RM_ASSERT(parser->depth == 2);
    struct config *config = parser->config;
    const struct config_secret secret = {config->admin.token, &config->admin.token_set, false};
    return config_secret_from_env(parser, value, &secret);
}

static int config_parse_token_file(struct config_parser *parser, json_t *value,
                                   const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_token_file);
    RM_ASSERT(parser->depth == 2);
    struct config *config = parser->config;
    const struct config_secret secret = {config->admin.token, &config->admin.token_set, false};
    return config_secret_from_file(parser, value, &secret);
}

static int config_parse_admin(struct config_parser *parser, json_t *value,
                              const struct config_field *field)
{
    static const struct config_field fields[] = {
        {"token_env", config_parse_token_env, 0, 0, 0},
        {"token_file", config_parse_token_file, 0, 0, 0},
    };
    RM_ASSERT(field->parse == config_parse_admin);
    RM_ASSERT(parser->depth == 1);
    if (json_is_object(value) && json_object_get(value, "token") != NULL) {
        config_path_push(parser, "token");
        int result = config_fail(parser, "secrets are not allowed in the config file; set "
                                         "admin.token_env (an environment variable) or "
                                         "admin.token_file (a file) instead");
        config_path_pop(parser);
        return result;
    }
    if (config_parse_object(parser, value, fields, RM_ARRAY_LENGTH(fields)) != 0) {
        return -1;
    }
    size_t given = (json_object_get(value, "token_env") != NULL ? 1u : 0u) +
                   (json_object_get(value, "token_file") != NULL ? 1u : 0u);
    if (given != 1) {
        return config_fail(parser, "set exactly one of token_env and token_file (got %zu)",
                           given);
    }
    return 0;
}

/* ---- root ---- */

static int config_parse_root(struct config_parser *parser, json_t *root)
{
    static const struct config_field fields[] = {
        {"listen", config_parse_listen, 0, 0, 0},
        {"threads", config_parse_u32, offsetof(struct config, threads), 0, 64},
        {"data_dir", config_parse_data_dir, 0, 0, 0},
        {"limits", config_parse_limits, 0, 0, 0},
        {"durability", config_parse_durability, 0, 0, 0},
        {"store", config_parse_store, 0, 0, 0},
        {"log", config_parse_log, 0, 0, 0},
        {"tls", config_parse_tls, 0, 0, 0},
        {"resilience", config_parse_resilience, 0, 0, 0},
        {"endpoints", config_parse_endpoints, 0, 0, 0},
        {"tools", config_parse_tools, 0, 0, 0},
        {"agents", config_parse_agents, 0, 0, 0},
        {"admin", config_parse_admin, 0, 0, 0},
    };
    RM_ASSERT(root != NULL);
    RM_ASSERT(parser->depth == 0);
    if (!json_is_object(root)) {
        return config_fail(parser, "must be an object (got %s)", config_type_name(root));
    }
    return config_parse_object(parser, root, fields, RM_ARRAY_LENGTH(fields));
}

int config_parse(struct config *config, const char *source, const char *text, size_t length,
                 char *err, size_t err_length)
{
    RM_ASSERT(config != NULL && source != NULL);
    RM_ASSERT(text != NULL || length == 0);
    RM_ASSERT(err != NULL && err_length > 0);
    config_json_init();
    config_defaults(config);
    snprintf(config->source, sizeof(config->source), "%s", source);
    err[0] = '\0';
    json_error_t error;
    json_t *root = json_loadb(length > 0 ? text : "", length, JSON_REJECT_DUPLICATES, &error);
    if (root == NULL) {
        snprintf(err, err_length, "%s:%d:%d: %s", source, error.line, error.column, error.text);
        return -1;
    }
    struct config_parser parser = {
        .config = config,
        .source = source,
        .text = text,
        .length = length,
        .err = err,
        .err_length = err_length,
        .base = config,
        .base_size = sizeof(*config),
        .depth = 0,
    };
    int result = config_parse_root(&parser, root);
    if (result == 0) {
        result = config_check_references(&parser);
    }
    json_decref(root);
    RM_ASSERT(parser.depth == 0);
    if (result != 0) {
        /* A config that failed is not used, but its secrets must not outlive it either. */
        explicit_bzero(config->admin.token, sizeof(config->admin.token));
        config->admin.token_set = false;
        config_upstreams_wipe(config);
    }
    return result;
}

int config_load(struct config *config, const char *path, char *err, size_t err_length)
{
    RM_ASSERT(config != NULL && path != NULL);
    RM_ASSERT(err != NULL && err_length > 0);
    config_defaults(config);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, err_length, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    /* One byte over the limit tells a file at the limit from a larger one. */
    char *text = rm_malloc(CONFIG_FILE_BYTES_MAX + 1);
    if (text == NULL) {
        close(fd);
        snprintf(err, err_length, "%s: cannot read: %s", path, strerror(ENOMEM));
        return -1;
    }
    size_t length = 0;
    int read_error = 0;
    while (length <= CONFIG_FILE_BYTES_MAX) {
        ssize_t got = read(fd, text + length, CONFIG_FILE_BYTES_MAX + 1 - length);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            read_error = got < 0 ? errno : 0;
            break;
        }
        length += (size_t)got;
    }
    close(fd);
    int result = -1;
    if (read_error != 0) {
        snprintf(err, err_length, "%s: cannot read: %s", path, strerror(read_error));
    } else if (length > CONFIG_FILE_BYTES_MAX) {
        snprintf(err, err_length, "%s: larger than the limit for a config file (%d bytes)", path,
                 CONFIG_FILE_BYTES_MAX);
    } else {
        result = config_parse(config, path, text, length, err, err_length);
    }
    rm_free(text);
    return result;
}

enum config_durability config_durability_of(const struct config *config, const char *ns,
                                            size_t ns_length)
{
    RM_ASSERT(config != NULL);
    RM_ASSERT(ns != NULL || ns_length == 0);
    RM_ASSERT(config->durability.namespace_count <= CONFIG_NAMESPACES_MAX);
    for (uint32_t i = 0; i < config->durability.namespace_count; i++) {
        const struct config_namespace_durability *entry = &config->durability.namespaces[i];
        if (strnlen(entry->name, CONFIG_NAME_MAX) == ns_length &&
            memcmp(entry->name, ns, ns_length) == 0) {
            return entry->mode;
        }
    }
    return config->durability.default_mode;
}
