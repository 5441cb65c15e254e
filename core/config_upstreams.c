/* The configuration of what the engine calls out to: "tls", "resilience", "endpoints" (LLM
 * endpoints with their API keys) and "tools" (of kind http, agent or c), with the circuit
 * breakers of both. Whether a tool's agent exists is checked in config_agents.c. Parsed with
 * the machinery of config_parser.h, so errors read like every other config error. */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config_parser.h"
#include "core/rm_assert.h"
#include "net/url.h"

#define CONFIG_HOUR_MS 3600000
#define CONFIG_CONNECTIONS_MAX 100000
#define CONFIG_RPM_MAX 100000000ull     /* a limit above any provider's tier */
#define CONFIG_TPM_MAX 1000000000000ull /* likewise, for tokens */
/* A tool that declares no parameters takes an object, as function calling requires. */
#define CONFIG_TOOL_PARAMETERS_DEFAULT "{\"type\":\"object\"}"

_Static_assert(sizeof(CONFIG_TOOL_PARAMETERS_DEFAULT) <= CONFIG_SCHEMA_JSON_MAX, "fits");

static const char *const config_tool_kinds[] = {"http", "agent", "c"};
_Static_assert(CONFIG_TOOL_HTTP == 0 && CONFIG_TOOL_AGENT == 1 && CONFIG_TOOL_C == 2,
               "config_tool_kinds[] follows the enum");

static const struct config_breaker config_breaker_default = {
    .window = CONFIG_WINDOW_COUNT,
    .window_calls = 20,
    .window_ms = 10000,
    .min_calls = 10,
    .failure_percent = 50,
    .slow_call_ms = 0,
    .slow_percent = 100,
    .open_ms = 5000,
    .probes = 3,
};

void config_upstreams_defaults(struct config *config)
{
    RM_ASSERT(config != NULL);
    RM_ASSERT(config->endpoint_count == 0 && config->tool_count == 0);
    config->tls.ca_file[0] = '\0';
    config->resilience.reconcile_ms = 10;
}

/* Every slot, counted or not: an endpoint that failed half-way was never counted. */
void config_upstreams_wipe(struct config *config)
{
    RM_ASSERT(config != NULL);
    RM_ASSERT(config->endpoint_count <= CONFIG_ENDPOINTS_MAX);
    for (uint32_t i = 0; i < CONFIG_ENDPOINTS_MAX; i++) {
        for (uint32_t k = 0; k < CONFIG_KEYS_MAX; k++) {
            struct config_key *key = &config->endpoints[i].keys[k];
            explicit_bzero(key->secret, sizeof(key->secret));
            key->secret_set = false;
        }
    }
}

static void config_endpoint_defaults(struct config_endpoint *endpoint, const char *name,
                                     size_t length)
{
    RM_ASSERT(length < sizeof(endpoint->name));
    RM_ASSERT(name != NULL);
    memset(endpoint, 0, sizeof(*endpoint));
    memcpy(endpoint->name, name, length + 1);
    endpoint->max_in_flight = 64;
    endpoint->max_queue = 10000;
    endpoint->max_connections = 256;
    endpoint->connect_timeout_ms = 5000;
    endpoint->first_byte_timeout_ms = 60000;
    endpoint->timeout_ms = 120000;
    endpoint->max_response_bytes = 8 * CONFIG_MIB;
    endpoint->retry = (struct config_retry){.max_attempts = 3, .base_ms = 100, .max_ms = 5000};
    endpoint->breaker = config_breaker_default;
}

static void config_tool_defaults(struct config_tool *tool, const char *name, size_t length)
{
    RM_ASSERT(length < sizeof(tool->name));
    RM_ASSERT(name != NULL);
    memset(tool, 0, sizeof(*tool));
    memcpy(tool->name, name, length + 1);
    tool->timeout_ms = 10000;
    tool->connect_timeout_ms = 2000;
    tool->max_connections = 256;
    tool->max_response_bytes = CONFIG_MIB;
    tool->breaker = config_breaker_default;
    tool->retry = (struct config_retry){.max_attempts = 1, .base_ms = 50, .max_ms = 1000};
    tool->fallback_kind = CONFIG_FALLBACK_NONE;
    tool->kind = CONFIG_TOOL_HTTP;
    memcpy(tool->parameters, CONFIG_TOOL_PARAMETERS_DEFAULT,
           sizeof(CONFIG_TOOL_PARAMETERS_DEFAULT));
}

/* The object being parsed, when the parser's base is known to be one. base_size tells them
 * apart: each parser below is listed only in the table of its own kind of object. */
static struct config_endpoint *config_endpoint_of(const struct config_parser *parser)
{
    RM_ASSERT(parser->base != NULL);
    RM_ASSERT(parser->base_size == sizeof(struct config_endpoint));
    return parser->base;
}

static struct config_key *config_key_of(const struct config_parser *parser)
{
    RM_ASSERT(parser->base != NULL);
    RM_ASSERT(parser->base_size == sizeof(struct config_key));
    return parser->base;
}

static struct config_tool *config_tool_of(const struct config_parser *parser)
{
    RM_ASSERT(parser->base != NULL);
    RM_ASSERT(parser->base_size == sizeof(struct config_tool));
    return parser->base;
}

/* ---- tls and resilience ---- */

static int config_parse_ca_file(struct config_parser *parser, json_t *value,
                                const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_ca_file);
    RM_ASSERT(parser->depth == 2);
    char path[CONFIG_PATH_MAX];
    if (config_parse_text(parser, value, path, sizeof(path), false, "a non-empty path") != 0) {
        return -1;
    }
    /* Checked now so that a wrong path is reported with the config's file and line, not when
     * the first https upstream is set up. */
    struct stat status;
    int problem = stat(path, &status) != 0   ? errno
                  : !S_ISREG(status.st_mode) ? EINVAL
                  : access(path, R_OK) != 0  ? errno
                                             : 0;
    char echo[CONFIG_ECHO_MAX + 4];
    config_echo(echo, sizeof(echo), path);
    if (problem == EINVAL) {
        return config_fail(parser, "%s: not a regular file (want a PEM bundle of CA "
                                   "certificates)",
                           echo);
    }
    if (problem != 0) {
        return config_fail(parser, "%s: cannot read: %s", echo, strerror(problem));
    }
    memcpy(parser->config->tls.ca_file, path, strlen(path) + 1);
    return 0;
}

int config_parse_tls(struct config_parser *parser, json_t *value,
                     const struct config_field *field)
{
    static const struct config_field fields[] = {
        {"ca_file", config_parse_ca_file, 0, 0, 0},
    };
    RM_ASSERT(field->parse == config_parse_tls);
    RM_ASSERT(parser->depth == 1);
    return config_parse_object(parser, value, fields, RM_ARRAY_LENGTH(fields));
}

int config_parse_resilience(struct config_parser *parser, json_t *value,
                            const struct config_field *field)
{
    static const struct config_field fields[] = {
        {"reconcile_ms", config_parse_u32, offsetof(struct config, resilience.reconcile_ms), 1,
         1000},
    };
    RM_ASSERT(field->parse == config_parse_resilience);
    RM_ASSERT(parser->depth == 1);
    return config_parse_object(parser, value, fields, RM_ARRAY_LENGTH(fields));
}

/* ---- values shared by endpoints and tools ---- */

static int config_parse_url(struct config_parser *parser, json_t *value,
                            const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_url);
    char *url = config_field_target(parser, field, CONFIG_URL_MAX);
    if (!json_is_string(value)) {
        return config_fail(parser, "must be a URL http[s]://host[:port][/path] (got %s)",
                           config_type_name(value));
    }
    const char *text = json_string_value(value);
    size_t length = json_string_length(value);
    if (length >= CONFIG_URL_MAX) {
        return config_fail(parser, "must be a URL shorter than %d bytes (got %zu bytes)",
                           CONFIG_URL_MAX, length);
    }
    char quoted[CONFIG_QUOTE_MAX];
    config_quote(quoted, sizeof(quoted), text);
    if (strncmp(text, "http://", 7) != 0 && strncmp(text, "https://", 8) != 0) {
        return config_fail(parser, "must start with http:// or https:// (got %s)", quoted);
    }
    if (!config_visible(text, length)) {
        return config_fail(parser, "must not hold spaces, control or non-ASCII bytes; "
                                   "percent-encode them (got %s)",
                           quoted);
    }
    struct url parsed;
    char problem[URL_ERROR_BYTES];
    if (url_parse(text, &parsed, problem, sizeof(problem)) != 0) {
        return config_fail(parser, "%s", problem);
    }
    memcpy(url, text, length + 1);
    return 0;
}

static int config_parse_window(struct config_parser *parser, json_t *value,
                               const struct config_field *field)
{
    static const char *const names[] = {"count", "time"};
    _Static_assert(CONFIG_WINDOW_COUNT == 0 && CONFIG_WINDOW_TIME == 1, "names[] follows enum");
    RM_ASSERT(field->parse == config_parse_window);
    enum config_window *window = config_field_target(parser, field, sizeof(*window));
    size_t index = 0;
    if (config_parse_choice(parser, value, names, RM_ARRAY_LENGTH(names), &index) != 0) {
        return -1;
    }
    RM_ASSERT(index < RM_ARRAY_LENGTH(names));
    *window = (enum config_window)index;
    return 0;
}

#define CONFIG_BREAKER(field, minimum, maximum)                                               \
    {#field, config_parse_u32, offsetof(struct config_breaker, field), minimum, maximum}

static int config_parse_breaker(struct config_parser *parser, json_t *value,
                                const struct config_field *field)
{
    static const struct config_field fields[] = {
        {"window", config_parse_window, offsetof(struct config_breaker, window), 0, 0},
        CONFIG_BREAKER(window_calls, 1, 100000),
        CONFIG_BREAKER(window_ms, 100, CONFIG_HOUR_MS),
        CONFIG_BREAKER(min_calls, 1, 100000),
        CONFIG_BREAKER(failure_percent, 1, 100),
        CONFIG_BREAKER(slow_call_ms, 0, CONFIG_HOUR_MS),
        CONFIG_BREAKER(slow_percent, 1, 100),
        CONFIG_BREAKER(open_ms, 1, CONFIG_HOUR_MS),
        CONFIG_BREAKER(probes, 1, 1000),
    };
    RM_ASSERT(field->parse == config_parse_breaker);
    /* min_calls may exceed a count window's window_calls: such a breaker never opens, which
     * is how a config keeps one endpoint's or tool's breaker out of the way. */
    struct config_breaker *breaker = config_field_target(parser, field, sizeof(*breaker));
    return config_parse_object_at(parser, value, fields, RM_ARRAY_LENGTH(fields), breaker,
                                  sizeof(*breaker));
}

/* The backoff grows from base_ms and is capped at max_ms, so a larger first step is a
 * mistake. The error goes to whichever of the two keys the file sets. */
static int config_check_retry(struct config_parser *parser, json_t *value,
                              const struct config_retry *retry)
{
    RM_ASSERT(json_is_object(value));
    RM_ASSERT(retry->max_attempts >= 1);
    if (retry->base_ms <= retry->max_ms) {
        return 0;
    }
    if (json_object_get(value, "base_ms") != NULL) {
        return config_fail_key(parser, "base_ms",
                               "must be at most max_ms (%" PRIu32 ") (got %" PRIu32 ")",
                               retry->max_ms, retry->base_ms);
    }
    return config_fail_key(parser, "max_ms",
                           "must be at least base_ms (%" PRIu32 ", its default); set base_ms "
                           "as well (got %" PRIu32 ")",
                           retry->base_ms, retry->max_ms);
}

static int config_parse_retry(struct config_parser *parser, json_t *value,
                              const struct config_field *field)
{
    static const struct config_field fields[] = {
        {"max_attempts", config_parse_u32, offsetof(struct config_retry, max_attempts), 1, 10},
        {"base_ms", config_parse_u32, offsetof(struct config_retry, base_ms), 1, 60000},
        {"max_ms", config_parse_u32, offsetof(struct config_retry, max_ms), 1, 600000},
    };
    RM_ASSERT(field->parse == config_parse_retry);
    struct config_retry *retry = config_field_target(parser, field, sizeof(*retry));
    if (config_parse_object_at(parser, value, fields, RM_ARRAY_LENGTH(fields), retry,
                               sizeof(*retry)) != 0) {
        return -1;
    }
    return config_check_retry(parser, value, retry);
}

/* ---- endpoints: keys ---- */

static int config_parse_key_name(struct config_parser *parser, json_t *value,
                                 const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_key_name);
    struct config_key *key = config_key_of(parser);
    if (!json_is_string(value)) {
        return config_fail(parser, "must be a name of " CONFIG_NAME_RULE " (got %s)",
                           config_type_name(value));
    }
    const char *name = json_string_value(value);
    size_t length = json_string_length(value);
    if (!config_name_valid(name, length)) {
        char quoted[CONFIG_QUOTE_MAX];
        config_quote(quoted, sizeof(quoted), name);
        return config_fail(parser, "must be a name of " CONFIG_NAME_RULE " (got %s)", quoted);
    }
    memcpy(key->name, name, length + 1);
    return 0;
}

static int config_parse_key_env(struct config_parser *parser, json_t *value,
                                const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_key_env);
    struct config_key *key = config_key_of(parser);
    const struct config_secret secret = {key->secret, &key->secret_set, true};
    return config_secret_from_env(parser, value, &secret);
}

static int config_parse_key_file(struct config_parser *parser, json_t *value,
                                 const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_key_file);
    struct config_key *key = config_key_of(parser);
    const struct config_secret secret = {key->secret, &key->secret_set, true};
    return config_secret_from_file(parser, value, &secret);
}

/* Refuses what is wrong with a key object as a whole before any secret is read: a secret
 * written into the config itself, or two sources for one key. */
static int config_check_key_sources(struct config_parser *parser, json_t *item)
{
    static const char *const literals[] = {"secret", "api_key", "key", "token"};
    RM_ASSERT(parser->depth > 0);
    RM_ASSERT(parser->path[parser->depth - 1] == NULL);
    if (!json_is_object(item)) {
        return 0;
    }
    for (size_t i = 0; i < RM_ARRAY_LENGTH(literals); i++) {
        if (json_object_get(item, literals[i]) != NULL) {
            return config_fail_key(parser, literals[i],
                                   "secrets are not allowed in the config file; set env (an "
                                   "environment variable) or file (a file) instead");
        }
    }
    if (json_object_get(item, "env") != NULL && json_object_get(item, "file") != NULL) {
        return config_fail_key(parser, "file", "cannot be set together with env; a key has "
                                               "one secret");
    }
    return 0;
}

static int config_parse_key(struct config_parser *parser, json_t *item,
                            struct config_endpoint *endpoint, uint32_t index)
{
    static const struct config_field fields[] = {
        {"name", config_parse_key_name, 0, 0, 0},
        {"env", config_parse_key_env, 0, 0, 0},
        {"file", config_parse_key_file, 0, 0, 0},
        {"rpm", config_parse_u64, offsetof(struct config_key, rpm), 0, CONFIG_RPM_MAX},
        {"tpm", config_parse_u64, offsetof(struct config_key, tpm), 0, CONFIG_TPM_MAX},
    };
    RM_ASSERT(index < CONFIG_KEYS_MAX);
    RM_ASSERT(index == endpoint->key_count);
    struct config_key *key = &endpoint->keys[index];
    if (config_check_key_sources(parser, item) != 0 ||
        config_parse_object_at(parser, item, fields, RM_ARRAY_LENGTH(fields), key,
                               sizeof(*key)) != 0) {
        return -1;
    }
    if (key->name[0] == '\0') {
        return config_fail(parser, "missing \"name\" (the key's label in metrics)");
    }
    for (uint32_t i = 0; i < index; i++) {
        if (strcmp(endpoint->keys[i].name, key->name) == 0) {
            return config_fail_key(parser, "name",
                                   "duplicate key name in this endpoint (got \"%s\")",
                                   key->name);
        }
    }
    return 0;
}

static int config_parse_keys(struct config_parser *parser, json_t *value,
                             const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_keys);
    struct config_endpoint *endpoint = config_endpoint_of(parser);
    if (!json_is_array(value)) {
        return config_fail(parser, "must be an array of keys like {\"name\": \"k1\", \"env\": "
                                   "\"VARIABLE\"} (got %s)",
                           config_type_name(value));
    }
    size_t count = json_array_size(value);
    if (count == 0) {
        return config_fail(parser, "needs at least one key; use {\"name\": \"local\"} for an "
                                   "endpoint without authentication");
    }
    if (count > CONFIG_KEYS_MAX) {
        return config_fail(parser, "at most %d keys (got %zu)", CONFIG_KEYS_MAX, count);
    }
    for (uint32_t i = 0; i < count; i++) {
        config_path_push_index(parser, i);
        int result = config_parse_key(parser, json_array_get(value, i), endpoint, i);
        config_path_pop(parser);
        if (result != 0) {
            return -1;
        }
        endpoint->key_count = i + 1;
    }
    return 0;
}

/* ---- endpoints: models and fallbacks ---- */

static int config_parse_model(struct config_parser *parser, json_t *value,
                              struct config_endpoint *endpoint)
{
    RM_ASSERT(endpoint->model_count < CONFIG_MODELS_MAX);
    RM_ASSERT(parser->path[parser->depth - 1] == NULL);
    char *model = endpoint->models[endpoint->model_count];
    if (!json_is_string(value)) {
        return config_fail(parser, "must be a model name (got %s)", config_type_name(value));
    }
    size_t length = json_string_length(value);
    char quoted[CONFIG_QUOTE_MAX];
    config_quote(quoted, sizeof(quoted), json_string_value(value));
    if (length == 0 || length >= CONFIG_NAME_MAX ||
        !config_visible(json_string_value(value), length)) {
        return config_fail(parser, "must be a model name of 1 to %d visible ASCII characters "
                                   "(got %s)",
                           CONFIG_NAME_MAX - 1, quoted);
    }
    for (uint32_t i = 0; i < endpoint->model_count; i++) {
        if (strcmp(endpoint->models[i], json_string_value(value)) == 0) {
            return config_fail(parser, "duplicate model in this endpoint (got %s)", quoted);
        }
    }
    memcpy(model, json_string_value(value), length + 1);
    return 0;
}

static int config_parse_models(struct config_parser *parser, json_t *value,
                               const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_models);
    struct config_endpoint *endpoint = config_endpoint_of(parser);
    if (!json_is_array(value)) {
        return config_fail(parser, "must be an array of model names (got %s)",
                           config_type_name(value));
    }
    if (json_array_size(value) > CONFIG_MODELS_MAX) {
        return config_fail(parser, "at most %d models (got %zu)", CONFIG_MODELS_MAX,
                           json_array_size(value));
    }
    for (uint32_t i = 0; i < json_array_size(value); i++) {
        config_path_push_index(parser, i);
        int result = config_parse_model(parser, json_array_get(value, i), endpoint);
        config_path_pop(parser);
        if (result != 0) {
            return -1;
        }
        endpoint->model_count = i + 1;
    }
    return 0;
}

/* Whether the name is another endpoint's is checked once every endpoint is known
 * (config_check_fallbacks): a fallback may be defined after the endpoint that names it. */
static int config_parse_fallback(struct config_parser *parser, json_t *value,
                                 struct config_endpoint *endpoint)
{
    RM_ASSERT(endpoint->fallback_count < CONFIG_FALLBACKS_MAX);
    RM_ASSERT(parser->path[parser->depth - 1] == NULL);
    if (!json_is_string(value)) {
        return config_fail(parser, "must be an endpoint name (got %s)", config_type_name(value));
    }
    const char *name = json_string_value(value);
    size_t length = json_string_length(value);
    char quoted[CONFIG_QUOTE_MAX];
    config_quote(quoted, sizeof(quoted), name);
    if (!config_name_valid(name, length)) {
        return config_fail(parser, "no endpoint is named %s", quoted);
    }
    if (strcmp(name, endpoint->name) == 0) {
        return config_fail(parser, "an endpoint cannot fall back to itself (got %s)", quoted);
    }
    for (uint32_t i = 0; i < endpoint->fallback_count; i++) {
        if (strcmp(endpoint->fallbacks[i], name) == 0) {
            return config_fail(parser, "duplicate fallback (got %s)", quoted);
        }
    }
    memcpy(endpoint->fallbacks[endpoint->fallback_count], name, length + 1);
    return 0;
}

static int config_parse_fallbacks(struct config_parser *parser, json_t *value,
                                  const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_fallbacks);
    struct config_endpoint *endpoint = config_endpoint_of(parser);
    if (!json_is_array(value)) {
        return config_fail(parser, "must be an array of endpoint names (got %s)",
                           config_type_name(value));
    }
    if (json_array_size(value) > CONFIG_FALLBACKS_MAX) {
        return config_fail(parser, "at most %d fallbacks (got %zu)", CONFIG_FALLBACKS_MAX,
                           json_array_size(value));
    }
    for (uint32_t i = 0; i < json_array_size(value); i++) {
        config_path_push_index(parser, i);
        int result = config_parse_fallback(parser, json_array_get(value, i), endpoint);
        config_path_pop(parser);
        if (result != 0) {
            return -1;
        }
        endpoint->fallback_count = i + 1;
    }
    return 0;
}

static bool config_endpoint_exists(const struct config *config, const char *name)
{
    RM_ASSERT(name != NULL);
    RM_ASSERT(config->endpoint_count <= CONFIG_ENDPOINTS_MAX);
    for (uint32_t i = 0; i < config->endpoint_count; i++) {
        if (strcmp(config->endpoints[i].name, name) == 0) {
            return true;
        }
    }
    return false;
}

static int config_check_fallbacks(struct config_parser *parser)
{
    const struct config *config = parser->config;
    RM_ASSERT(parser->depth == 1);
    for (uint32_t i = 0; i < config->endpoint_count; i++) {
        const struct config_endpoint *endpoint = &config->endpoints[i];
        for (uint32_t f = 0; f < endpoint->fallback_count; f++) {
            if (config_endpoint_exists(config, endpoint->fallbacks[f])) {
                continue;
            }
            config_path_push(parser, endpoint->name);
            config_path_push(parser, "fallbacks");
            config_path_push_index(parser, f);
            int result = config_fail(parser, "no endpoint is named \"%s\"",
                                     endpoint->fallbacks[f]);
            config_path_pop(parser);
            config_path_pop(parser);
            config_path_pop(parser);
            return result;
        }
    }
    return 0;
}

/* ---- endpoints ---- */

#define CONFIG_ENDPOINT(field, parse, minimum, maximum)                                       \
    {#field, parse, offsetof(struct config_endpoint, field), minimum, maximum}

static int config_parse_endpoint(struct config_parser *parser, json_t *value, const char *name,
                                 size_t name_length, uint32_t index)
{
    static const struct config_field fields[] = {
        CONFIG_ENDPOINT(url, config_parse_url, 0, 0),
        CONFIG_ENDPOINT(models, config_parse_models, 0, 0),
        CONFIG_ENDPOINT(keys, config_parse_keys, 0, 0),
        CONFIG_ENDPOINT(max_in_flight, config_parse_u32, 1, 100000),
        CONFIG_ENDPOINT(max_queue, config_parse_u32, 0, 1000000),
        CONFIG_ENDPOINT(max_connections, config_parse_u32, 1, CONFIG_CONNECTIONS_MAX),
        CONFIG_ENDPOINT(connect_timeout_ms, config_parse_u32, 1, CONFIG_HOUR_MS),
        CONFIG_ENDPOINT(first_byte_timeout_ms, config_parse_u32, 1, CONFIG_HOUR_MS),
        CONFIG_ENDPOINT(timeout_ms, config_parse_u32, 1, CONFIG_HOUR_MS),
        CONFIG_ENDPOINT(max_response_bytes, config_parse_u64, 1024, CONFIG_GIB),
        CONFIG_ENDPOINT(retry, config_parse_retry, 0, 0),
        CONFIG_ENDPOINT(fallbacks, config_parse_fallbacks, 0, 0),
        CONFIG_ENDPOINT(breaker, config_parse_breaker, 0, 0),
    };
    RM_ASSERT(index < CONFIG_ENDPOINTS_MAX);
    RM_ASSERT(parser->depth == 2);
    struct config_endpoint *endpoint = &parser->config->endpoints[index];
    config_endpoint_defaults(endpoint, name, name_length);
    if (config_parse_object_at(parser, value, fields, RM_ARRAY_LENGTH(fields), endpoint,
                               sizeof(*endpoint)) != 0) {
        return -1;
    }
    if (endpoint->url[0] == '\0') {
        return config_fail(parser, "missing \"url\" (the endpoint's base URL)");
    }
    if (endpoint->key_count == 0) {
        return config_fail(parser, "missing \"keys\" (at least one; {\"name\": \"local\"} for "
                                   "an endpoint without authentication)");
    }
    return 0;
}

int config_parse_endpoints(struct config_parser *parser, json_t *value,
                           const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_endpoints);
    RM_ASSERT(parser->depth == 1);
    struct config *config = parser->config;
    if (config_parse_named(parser, value, "endpoint", CONFIG_ENDPOINTS_MAX,
                           config_parse_endpoint, &config->endpoint_count) != 0) {
        return -1;
    }
    return config_check_fallbacks(parser);
}

/* ---- tools ---- */

static int config_parse_tool_fallback(struct config_parser *parser, json_t *value,
                                      const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_tool_fallback);
    struct config_tool *tool = config_tool_of(parser);
    size_t length = config_json_compact(value, tool->fallback, sizeof(tool->fallback));
    if (length == 0 || length >= sizeof(tool->fallback)) {
        return config_fail(parser, "must be a JSON value of at most %d bytes in compact form "
                                   "(got %zu bytes)",
                           CONFIG_FALLBACK_JSON_MAX - 1, length);
    }
    tool->fallback_kind = CONFIG_FALLBACK_VALUE;
    return 0;
}

static int config_parse_tool_fallback_error(struct config_parser *parser, json_t *value,
                                            const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_tool_fallback_error);
    struct config_tool *tool = config_tool_of(parser);
    if (config_parse_text(parser, value, tool->fallback, sizeof(tool->fallback), false,
                          "a non-empty error message") != 0) {
        return -1;
    }
    tool->fallback_kind = CONFIG_FALLBACK_ERROR;
    return 0;
}

static int config_parse_tool_kind(struct config_parser *parser, json_t *value,
                                  const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_tool_kind);
    struct config_tool *tool = config_tool_of(parser);
    size_t index = 0;
    if (config_parse_choice(parser, value, config_tool_kinds, RM_ARRAY_LENGTH(config_tool_kinds),
                            &index) != 0) {
        return -1;
    }
    RM_ASSERT(index < RM_ARRAY_LENGTH(config_tool_kinds));
    tool->kind = (enum config_tool_kind)index;
    return 0;
}

static int config_parse_tool_agent(struct config_parser *parser, json_t *value,
                                   const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_tool_agent);
    RM_ASSERT(parser->depth == 3);
    struct config_tool *tool = config_tool_of(parser);
    return config_parse_reference(parser, value, "agent", tool->agent);
}

static int config_parse_tool_description(struct config_parser *parser, json_t *value,
                                         const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_tool_description);
    RM_ASSERT(parser->depth == 3);
    struct config_tool *tool = config_tool_of(parser);
    return config_parse_text(parser, value, tool->description, sizeof(tool->description), true,
                             "a string");
}

/* The schema goes to the LLM as the function's "parameters" unchanged; the engine does not
 * validate arguments against it, so only its form and size are checked here. */
static int config_parse_tool_parameters(struct config_parser *parser, json_t *value,
                                        const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_tool_parameters);
    RM_ASSERT(parser->depth == 3);
    struct config_tool *tool = config_tool_of(parser);
    if (!json_is_object(value)) {
        return config_fail(parser, "must be a JSON schema object like {\"type\": \"object\", "
                                   "\"properties\": {...}} (got %s)",
                           config_type_name(value));
    }
    size_t length = config_json_compact(value, tool->parameters, sizeof(tool->parameters));
    if (length == 0 || length >= sizeof(tool->parameters)) {
        return config_fail(parser, "must be a JSON schema of at most %d bytes in compact form "
                                   "(got %zu bytes)",
                           CONFIG_SCHEMA_JSON_MAX - 1, length);
    }
    return 0;
}

/* What the kind requires and forbids, once every key of the tool is known (keys come in any
 * order). A key that belongs to another kind is reported first: {"agent": "a"} without
 * "kind" more likely lacks "kind": "agent" than a url. */
static int config_check_tool_kind(struct config_parser *parser, json_t *value,
                                  const struct config_tool *tool)
{
    RM_ASSERT(json_is_object(value));
    RM_ASSERT(tool->kind < RM_ARRAY_LENGTH(config_tool_kinds));
    const char *kind = config_tool_kinds[tool->kind];
    if (tool->kind != CONFIG_TOOL_HTTP && json_object_get(value, "url") != NULL) {
        return config_fail_key(parser, "url", "is only for tools of kind \"http\" (this tool's "
                                              "kind is \"%s\")",
                               kind);
    }
    if (tool->kind != CONFIG_TOOL_AGENT && json_object_get(value, "agent") != NULL) {
        return config_fail_key(parser, "agent", "is only for tools of kind \"agent\" (this "
                                                "tool's kind is \"%s\")",
                               kind);
    }
    if (tool->kind != CONFIG_TOOL_HTTP && json_object_get(value, "retry") != NULL) {
        return config_fail_key(parser, "retry", "is only for tools of kind \"http\" (this "
                                                "tool's kind is \"%s\")",
                               kind);
    }
    if (tool->fallback_on_error && tool->fallback_kind != CONFIG_FALLBACK_VALUE) {
        return config_fail_key(parser, "fallback_on_error", "needs a \"fallback\" value to "
                                                            "answer with");
    }
    if (tool->kind == CONFIG_TOOL_HTTP && tool->url[0] == '\0') {
        return config_fail(parser, "missing \"url\" (where the tool's arguments are POSTed)");
    }
    if (tool->kind == CONFIG_TOOL_AGENT && tool->agent[0] == '\0') {
        return config_fail(parser, "missing \"agent\" (the agent that a tool of kind "
                                   "\"agent\" invokes)");
    }
    return 0;
}

#define CONFIG_TOOL(field, parse, minimum, maximum)                                           \
    {#field, parse, offsetof(struct config_tool, field), minimum, maximum}

static int config_parse_tool(struct config_parser *parser, json_t *value, const char *name,
                             size_t name_length, uint32_t index)
{
    static const struct config_field fields[] = {
        CONFIG_TOOL(kind, config_parse_tool_kind, 0, 0),
        CONFIG_TOOL(url, config_parse_url, 0, 0),
        CONFIG_TOOL(agent, config_parse_tool_agent, 0, 0),
        CONFIG_TOOL(description, config_parse_tool_description, 0, 0),
        CONFIG_TOOL(parameters, config_parse_tool_parameters, 0, 0),
        CONFIG_TOOL(timeout_ms, config_parse_u32, 1, CONFIG_HOUR_MS),
        CONFIG_TOOL(connect_timeout_ms, config_parse_u32, 1, CONFIG_HOUR_MS),
        CONFIG_TOOL(max_connections, config_parse_u32, 1, CONFIG_CONNECTIONS_MAX),
        CONFIG_TOOL(max_response_bytes, config_parse_u64, 1024, CONFIG_GIB),
        CONFIG_TOOL(breaker, config_parse_breaker, 0, 0),
        CONFIG_TOOL(retry, config_parse_retry, 0, 0),
        CONFIG_TOOL(fallback, config_parse_tool_fallback, 0, 0),
        {"fallback_error", config_parse_tool_fallback_error, 0, 0, 0},
        CONFIG_TOOL(fallback_on_error, config_parse_bool, 0, 0),
    };
    RM_ASSERT(index < CONFIG_TOOLS_MAX);
    RM_ASSERT(parser->depth == 2);
    struct config_tool *tool = &parser->config->tools[index];
    config_tool_defaults(tool, name, name_length);
    if (json_is_object(value) && json_object_get(value, "fallback") != NULL &&
        json_object_get(value, "fallback_error") != NULL) {
        return config_fail_key(parser, "fallback_error", "cannot be set together with "
                                                         "fallback; a tool has one fallback");
    }
    if (config_parse_object_at(parser, value, fields, RM_ARRAY_LENGTH(fields), tool,
                               sizeof(*tool)) != 0) {
        return -1;
    }
    return config_check_tool_kind(parser, value, tool);
}

int config_parse_tools(struct config_parser *parser, json_t *value,
                       const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_tools);
    RM_ASSERT(parser->depth == 1);
    return config_parse_named(parser, value, "tool", CONFIG_TOOLS_MAX, config_parse_tool,
                              &parser->config->tool_count);
}
