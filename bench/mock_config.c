/* The mock's knobs: command-line flags, or a JSON file whose keys are the same flag names
 * (without the dashes), so both go through one validating setter. Flags given after
 * --config override the file. Every error names the flag or the file and key. */

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/mock.h"
#include "core/config.h"
#include "core/rm_assert.h"

#define MOCK_VALUE_MAX 512

void mock_config_defaults(struct mock_config *config)
{
    RM_ASSERT(config != NULL);
    memset(config, 0, sizeof(*config));
    snprintf(config->host, sizeof(config->host), "127.0.0.1");
    config->port = 8089;
    config->seed = 1;
    config->retry_after_s = 1;
    config->window_ms = 60000;
    config->max_hang_ms = 30000;
    config->tool_calls = 1;
    config->completion_tokens = 16;
    config->max_connections = 10000;
    config->max_body_bytes = 4 * 1024 * 1024;
    RM_ASSERT(config->llm.latency.kind == MOCK_LATENCY_FIXED);
}

void mock_config_usage(void)
{
    printf("usage: ringmaster-mock [--config FILE] [flags]\n"
           "\n"
           "An OpenAI-compatible LLM (POST /v1/chat/completions) and HTTP tools\n"
           "(POST /tools/{name}) for tests and benchmarks; GET /mock/stats, POST /mock/reset.\n"
           "Prints 'ringmaster-mock listening on port N' on stderr; SIGTERM or SIGINT stop it.\n"
           "\n"
           "  --listen HOST:PORT         default 127.0.0.1:8089 (port 0: any free port)\n"
           "  --threads N                reactors; 0 = one per core (default)\n"
           "  --seed N                   PRNG seed for latencies and faults (default 1)\n"
           "  --llm-latency SPEC         fixed:MS | uniform:MIN:MAX | exp:MEAN[:MAX] (ms)\n"
           "  --tool-latency SPEC        the same, for every tool\n"
           "  --llm-error-rate R         share of LLM requests answered 500 (0..1)\n"
           "  --llm-hang-rate R          share of LLM requests never answered (0..1)\n"
           "  --tool-error-rate R        --tool-hang-rate R: the same for tools\n"
           "  --tool NAME:K=V[,K=V]      one tool's own latency=SPEC, error-rate=R, hang-rate=R\n"
           "  --max-hang-ms MS           how long a hang holds its request (default 30000)\n"
           "  --max-concurrency N        LLM requests in flight, across all reactors; beyond\n"
           "                             it 429 with Retry-After (default 0: unlimited)\n"
           "  --retry-after S            Retry-After of concurrency and storm 429s (default 1)\n"
           "  --storm-key KEY            answer every request with this API key 429\n"
           "  --rpm N                    requests per minute per API key (0: unlimited)\n"
           "  --tpm N                    tokens per minute per API key (0: unlimited)\n"
           "  --limit-window-ms MS       the rate-limit window (default 60000)\n"
           "  --tool-calls N             calls in a tool-calling answer, 1..%d (default 1)\n"
           "  --completion-tokens N      size of a final answer in tokens (default 16)\n"
           "  --max-connections N        default 10000\n"
           "  --max-body-bytes N         request body limit (default 4194304)\n"
           "\n"
           "A --config FILE is a JSON object with the same names as keys, for example\n"
           "{\"llm-latency\": \"uniform:5:20\", \"rpm\": 600,\n"
           " \"tool\": [\"search:error-rate=0.1\"]}.\n",
           MOCK_TOOL_CALLS_MAX);
}

static int mock_config_number(uint64_t *out, const char *text, uint64_t min, uint64_t max,
                              char *err, size_t err_length)
{
    RM_ASSERT(min <= max);
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (text[0] == '\0' || text[0] == '-' || *end != '\0' || errno != 0 || value < min ||
        value > max) {
        snprintf(err, err_length, "must be an integer between %llu and %llu (got '%s')",
                 (unsigned long long)min, (unsigned long long)max, text);
        return -1;
    }
    *out = value;
    return 0;
}

static int mock_config_rate(double *out, const char *text, char *err, size_t err_length)
{
    char *end = NULL;
    double value = strtod(text, &end);
    if (text[0] == '\0' || *end != '\0' || !(value >= 0.0 && value <= 1.0)) {
        snprintf(err, err_length, "must be a number between 0 and 1 (got '%s')", text);
        return -1;
    }
    *out = value;
    return 0;
}

/* Splits "a:b:c" into at most three fields (in place, in a copy); returns the count or -1. */
static int mock_config_fields(char *copy, size_t capacity, const char *text, char **fields)
{
    if (strlen(text) >= capacity) {
        return -1;
    }
    snprintf(copy, capacity, "%s", text);
    int count = 0;
    char *at = copy;
    for (;;) {
        if (count == 3) {
            return -1;
        }
        fields[count++] = at;
        char *colon = strchr(at, ':');
        if (colon == NULL) {
            return count;
        }
        *colon = '\0';
        at = colon + 1;
    }
}

int mock_latency_parse(struct mock_latency *latency, const char *text, char *err,
                       size_t err_length)
{
    char copy[MOCK_VALUE_MAX];
    char *fields[3] = {NULL, NULL, NULL};
    int count = mock_config_fields(copy, sizeof(copy), text, fields);
    uint64_t first = 0, second = 0;
    const char *usage = "must be fixed:MS, uniform:MIN:MAX or exp:MEAN[:MAX] in milliseconds";
    if (count == 1 && mock_config_number(&first, fields[0], 0, MOCK_LATENCY_MS_MAX, err,
                                         err_length) == 0) {
        *latency = (struct mock_latency){MOCK_LATENCY_FIXED, (uint32_t)first, 0};
        return 0;
    }
    bool ok = false;
    if (count == 2 && strcmp(fields[0], "fixed") == 0) {
        ok = mock_config_number(&first, fields[1], 0, MOCK_LATENCY_MS_MAX, err, err_length) == 0;
        *latency = (struct mock_latency){MOCK_LATENCY_FIXED, (uint32_t)first, 0};
    } else if (count == 3 && strcmp(fields[0], "uniform") == 0) {
        ok = mock_config_number(&first, fields[1], 0, MOCK_LATENCY_MS_MAX, err, err_length) == 0 &&
             mock_config_number(&second, fields[2], first, MOCK_LATENCY_MS_MAX, err,
                                err_length) == 0;
        *latency = (struct mock_latency){MOCK_LATENCY_UNIFORM, (uint32_t)first, (uint32_t)second};
    } else if ((count == 2 || count == 3) && strcmp(fields[0], "exp") == 0) {
        ok = mock_config_number(&first, fields[1], 0, MOCK_LATENCY_MS_MAX, err, err_length) == 0;
        second = first * 20 < MOCK_LATENCY_MS_MAX ? first * 20 : MOCK_LATENCY_MS_MAX;
        ok = ok && (count == 2 || mock_config_number(&second, fields[2], first,
                                                     MOCK_LATENCY_MS_MAX, err, err_length) == 0);
        *latency = (struct mock_latency){MOCK_LATENCY_EXPONENTIAL, (uint32_t)first,
                                         (uint32_t)second};
    } else {
        snprintf(err, err_length, "%s (got '%s')", usage, text);
        return -1;
    }
    RM_ASSERT(ok || err[0] != '\0');
    return ok ? 0 : -1;
}

/* "NAME:latency=SPEC,error-rate=R,hang-rate=R"; the latency SPEC keeps its colons. */
static int mock_config_tool_setting(struct mock_tool_rule *rule, const char *setting,
                                    char *err, size_t err_length)
{
    const char *equals = strchr(setting, '=');
    if (equals == NULL) {
        snprintf(err, err_length, "expected KEY=VALUE, got '%s'", setting);
        return -1;
    }
    size_t key_length = (size_t)(equals - setting);
    const char *value = equals + 1;
    if (key_length == 7 && strncmp(setting, "latency", 7) == 0) {
        rule->latency_set = true;
        return mock_latency_parse(&rule->faults.latency, value, err, err_length);
    }
    if (key_length == 10 && strncmp(setting, "error-rate", 10) == 0) {
        rule->error_rate_set = true;
        return mock_config_rate(&rule->faults.error_rate, value, err, err_length);
    }
    if (key_length == 9 && strncmp(setting, "hang-rate", 9) == 0) {
        rule->hang_rate_set = true;
        return mock_config_rate(&rule->faults.hang_rate, value, err, err_length);
    }
    snprintf(err, err_length, "unknown tool setting '%.*s' (latency, error-rate, hang-rate)",
             (int)key_length, setting);
    return -1;
}

static int mock_config_tool(struct mock_config *config, const char *text, char *err,
                            size_t err_length)
{
    const char *colon = strchr(text, ':');
    size_t name_length = colon == NULL ? 0 : (size_t)(colon - text);
    if (name_length == 0 || name_length >= MOCK_NAME_MAX ||
        config->rule_count == MOCK_TOOL_RULES_MAX) {
        snprintf(err, err_length, "expected NAME:KEY=VALUE[,KEY=VALUE] with a name under %d "
                 "bytes, at most %d tools (got '%s')", MOCK_NAME_MAX, MOCK_TOOL_RULES_MAX, text);
        return -1;
    }
    struct mock_tool_rule *rule = &config->rules[config->rule_count++];
    memset(rule, 0, sizeof(*rule));
    memcpy(rule->name, text, name_length);
    char copy[MOCK_VALUE_MAX];
    if (strlen(colon + 1) >= sizeof(copy)) {
        snprintf(err, err_length, "the settings are too long");
        return -1;
    }
    snprintf(copy, sizeof(copy), "%s", colon + 1);
    char *saved = NULL;
    for (char *setting = strtok_r(copy, ",", &saved); setting != NULL;
         setting = strtok_r(NULL, ",", &saved)) {
        if (mock_config_tool_setting(rule, setting, err, err_length) != 0) {
            return -1;
        }
    }
    return 0;
}

static int mock_config_listen(struct mock_config *config, const char *text, char *err,
                              size_t err_length)
{
    const char *colon = strrchr(text, ':');
    size_t host_length = colon == NULL ? 0 : (size_t)(colon - text);
    uint64_t port = 0;
    if (host_length == 0 || host_length >= sizeof(config->host)) {
        snprintf(err, err_length, "must be HOST:PORT (got '%s')", text);
        return -1;
    }
    if (mock_config_number(&port, colon + 1, 0, 65535, err, err_length) != 0) {
        return -1;
    }
    memcpy(config->host, text, host_length);
    config->host[host_length] = '\0';
    config->port = (uint16_t)port;
    return 0;
}

struct mock_config_integer {
    const char *name;
    size_t offset;
    bool wide; /* uint64_t, else uint32_t */
    uint64_t min;
    uint64_t max;
};

#define MOCK_FIELD(field) offsetof(struct mock_config, field)

static const struct mock_config_integer mock_config_integers[] = {
    {"threads", MOCK_FIELD(threads), false, 0, REACTOR_MAX},
    {"seed", MOCK_FIELD(seed), true, 0, UINT64_MAX},
    {"max-hang-ms", MOCK_FIELD(max_hang_ms), false, 1, MOCK_LATENCY_MS_MAX},
    {"max-concurrency", MOCK_FIELD(max_concurrency), false, 0, 1000000000},
    {"retry-after", MOCK_FIELD(retry_after_s), false, 0, 86400},
    {"rpm", MOCK_FIELD(requests_per_window), true, 0, 1000000000000ull},
    {"tpm", MOCK_FIELD(tokens_per_window), true, 0, 1000000000000ull},
    {"limit-window-ms", MOCK_FIELD(window_ms), false, 1, MOCK_LATENCY_MS_MAX},
    {"tool-calls", MOCK_FIELD(tool_calls), false, 1, MOCK_TOOL_CALLS_MAX},
    {"completion-tokens", MOCK_FIELD(completion_tokens), false, 1, MOCK_COMPLETION_TOKENS_MAX},
    {"max-connections", MOCK_FIELD(max_connections), false, 1, 1000000},
    {"max-body-bytes", MOCK_FIELD(max_body_bytes), true, 1, 64ull * 1024 * 1024},
};

_Static_assert(MOCK_COMPLETION_TOKENS_MAX * 4 < MOCK_TEXT_MAX, "answers fit the text buffer");

static int mock_config_set_integer(struct mock_config *config, const char *name,
                                   const char *value, char *err, size_t err_length)
{
    for (size_t i = 0; i < RM_ARRAY_LENGTH(mock_config_integers); i++) {
        const struct mock_config_integer *integer = &mock_config_integers[i];
        if (strcmp(integer->name, name) != 0) {
            continue;
        }
        uint64_t number = 0;
        if (mock_config_number(&number, value, integer->min, integer->max, err,
                               err_length) != 0) {
            return -1;
        }
        char *field = (char *)config + integer->offset;
        if (integer->wide) {
            memcpy(field, &number, sizeof(uint64_t));
        } else {
            uint32_t narrow = (uint32_t)number;
            memcpy(field, &narrow, sizeof(uint32_t));
        }
        return 0;
    }
    snprintf(err, err_length, "unknown option (see --help)");
    return 1;
}

/* Sets one knob by its flag name (without dashes); err is filled on failure. */
static int mock_config_set(struct mock_config *config, const char *name, const char *value,
                           char *err, size_t err_length)
{
    RM_ASSERT(name != NULL);
    RM_ASSERT(value != NULL);
    if (strcmp(name, "listen") == 0) {
        return mock_config_listen(config, value, err, err_length);
    }
    if (strcmp(name, "llm-latency") == 0 || strcmp(name, "tool-latency") == 0) {
        struct mock_faults *faults = name[0] == 'l' ? &config->llm : &config->tool;
        return mock_latency_parse(&faults->latency, value, err, err_length);
    }
    if (strcmp(name, "llm-error-rate") == 0 || strcmp(name, "tool-error-rate") == 0) {
        struct mock_faults *faults = name[0] == 'l' ? &config->llm : &config->tool;
        return mock_config_rate(&faults->error_rate, value, err, err_length);
    }
    if (strcmp(name, "llm-hang-rate") == 0 || strcmp(name, "tool-hang-rate") == 0) {
        struct mock_faults *faults = name[0] == 'l' ? &config->llm : &config->tool;
        return mock_config_rate(&faults->hang_rate, value, err, err_length);
    }
    if (strcmp(name, "tool") == 0) {
        return mock_config_tool(config, value, err, err_length);
    }
    if (strcmp(name, "storm-key") == 0) {
        if (strlen(value) >= sizeof(config->storm_key)) {
            snprintf(err, err_length, "longer than %zu bytes", sizeof(config->storm_key) - 1);
            return -1;
        }
        snprintf(config->storm_key, sizeof(config->storm_key), "%s", value);
        return 0;
    }
    return mock_config_set_integer(config, name, value, err, err_length) == 0 ? 0 : -1;
}

/* A JSON value as the text a flag would carry: strings as they are, integers and reals
 * printed; anything else is refused. */
static int mock_config_json_text(json_t *value, char *text, size_t capacity)
{
    if (json_is_string(value)) {
        return snprintf(text, capacity, "%s", json_string_value(value)) < (int)capacity ? 0 : -1;
    }
    if (json_is_integer(value)) {
        snprintf(text, capacity, "%lld", (long long)json_integer_value(value));
        return 0;
    }
    if (json_is_real(value)) {
        snprintf(text, capacity, "%.17g", json_real_value(value));
        return 0;
    }
    return -1;
}

static int mock_config_json_member(struct mock_config *config, const char *path, const char *key,
                                   json_t *value, char *err, size_t err_length)
{
    char detail[MOCK_ERROR_MAX] = "";
    char text[MOCK_VALUE_MAX];
    size_t count = json_is_array(value) && strcmp(key, "tool") == 0 ? json_array_size(value) : 1;
    for (size_t i = 0; i < count; i++) {
        json_t *item = json_is_array(value) ? json_array_get(value, i) : value;
        if (mock_config_json_text(item, text, sizeof(text)) != 0) {
            snprintf(err, err_length, "%s: %s: must be a string or a number%s", path, key,
                     strcmp(key, "tool") == 0 ? " (or an array of strings)" : "");
            return -1;
        }
        if (mock_config_set(config, key, text, detail, sizeof(detail)) != 0) {
            snprintf(err, err_length, "%s: %s: %s", path, key, detail);
            return -1;
        }
    }
    return 0;
}

static int mock_config_file(struct mock_config *config, const char *path, char *err,
                            size_t err_length)
{
    config_json_init();
    json_error_t error;
    json_t *root = json_load_file(path, 0, &error);
    if (root == NULL) {
        snprintf(err, err_length, "%s:%d:%d: %s", path, error.line, error.column, error.text);
        return -1;
    }
    if (!json_is_object(root)) {
        snprintf(err, err_length, "%s: must be a JSON object of option names and values", path);
        json_decref(root);
        return -1;
    }
    const char *key;
    json_t *value;
    int result = 0;
    json_object_foreach(root, key, value) {
        if (strcmp(key, "config") == 0 ||
            mock_config_json_member(config, path, key, value, err, err_length) != 0) {
            if (strcmp(key, "config") == 0) {
                snprintf(err, err_length, "%s: config: a file cannot include another", path);
            }
            result = -1;
            break;
        }
    }
    json_decref(root);
    return result;
}

static int mock_config_check_faults(const struct mock_faults *faults, const char *what,
                                    char *err, size_t err_length)
{
    if (faults->error_rate + faults->hang_rate > 1.0 + 1e-9) {
        snprintf(err, err_length, "%s: error rate %g plus hang rate %g exceed 1", what,
                 faults->error_rate, faults->hang_rate);
        return -1;
    }
    return 0;
}

/* Fills what each tool rule left unset from the tool defaults, then checks the rates. */
static int mock_config_finish(struct mock_config *config, char *err, size_t err_length)
{
    RM_ASSERT(config->rule_count <= MOCK_TOOL_RULES_MAX);
    if (mock_config_check_faults(&config->llm, "llm", err, err_length) != 0 ||
        mock_config_check_faults(&config->tool, "tools", err, err_length) != 0) {
        return -1;
    }
    for (uint32_t i = 0; i < config->rule_count; i++) {
        struct mock_tool_rule *rule = &config->rules[i];
        if (!rule->latency_set) {
            rule->faults.latency = config->tool.latency;
        }
        if (!rule->error_rate_set) {
            rule->faults.error_rate = config->tool.error_rate;
        }
        if (!rule->hang_rate_set) {
            rule->faults.hang_rate = config->tool.hang_rate;
        }
        char what[MOCK_NAME_MAX + 16];
        snprintf(what, sizeof(what), "tool %s", rule->name);
        if (mock_config_check_faults(&rule->faults, what, err, err_length) != 0) {
            return -1;
        }
    }
    return 0;
}

int mock_config_parse(struct mock_config *config, int argc, char **argv, char *err,
                      size_t err_length)
{
    RM_ASSERT(argc >= 1);
    RM_ASSERT(err_length > 0);
    mock_config_defaults(config);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            mock_config_usage();
            return 1;
        }
    }
    char detail[MOCK_ERROR_MAX] = "";
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (strncmp(flag, "--", 2) != 0 || i + 1 >= argc) {
            snprintf(err, err_length, "unknown or incomplete argument '%s' (see --help)", flag);
            return -1;
        }
        const char *value = argv[++i];
        if (strcmp(flag, "--config") == 0) {
            if (mock_config_file(config, value, err, err_length) != 0) {
                return -1;
            }
            continue;
        }
        if (mock_config_set(config, flag + 2, value, detail, sizeof(detail)) != 0) {
            snprintf(err, err_length, "%s: %s", flag, detail);
            return -1;
        }
    }
    return mock_config_finish(config, err, err_length);
}

const struct mock_faults *mock_config_tool_faults(const struct mock_config *config,
                                                  const char *name, size_t length)
{
    RM_ASSERT(config->rule_count <= MOCK_TOOL_RULES_MAX);
    RM_ASSERT(name != NULL);
    for (uint32_t i = 0; i < config->rule_count; i++) {
        const struct mock_tool_rule *rule = &config->rules[i];
        if (strlen(rule->name) == length && memcmp(rule->name, name, length) == 0) {
            return &rule->faults;
        }
    }
    return &config->tool;
}
