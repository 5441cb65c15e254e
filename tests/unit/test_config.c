#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"

#define TEST_CONFIG_SECRET "s3cret-Value-do-not-print"
#define TEST_CONFIG_ROOT_KEYS                                                                  \
    "listen, threads, data_dir, limits, durability, store, log, tls, resilience, endpoints, "  \
    "tools, agents, admin"

static char test_config_err[CONFIG_ERROR_MAX];

static int test_config_parse(struct config *config, const char *text)
{
    memset(test_config_err, 0, sizeof(test_config_err));
    return config_parse(config, "test.json", text, strlen(text), test_config_err,
                        sizeof(test_config_err));
}

/* Parses text, which must fail, and checks the whole message. */
static void test_config_expect(const char *text, const char *expected)
{
    /* A config is over a megabyte and callers often hold one on the stack already. Each test
     * runs in a process of its own, so a static one is never shared. */
    static struct config config;
    cr_assert_eq(test_config_parse(&config, text), -1, "accepted: %s", text);
    cr_assert_str_eq(test_config_err, expected, "for %s\n got: %s\nwant: %s", text,
                     test_config_err, expected);
}

static void test_config_expect_ok(struct config *config, const char *text)
{
    cr_assert_eq(test_config_parse(config, text), 0, "rejected %s: %s", text, test_config_err);
    cr_assert_str_eq(test_config_err, "");
}

/* Writes content to a fresh temporary file; path receives its name. */
static void test_config_write_file(char *path, size_t path_length, const char *content,
                                   size_t length)
{
    snprintf(path, path_length, "/tmp/rm_test_config_XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, content, length), (ssize_t)length);
    close(fd);
}

/* The repository root, from this file's path, so the example is found from any directory. */
static void test_config_repo_path(char *out, size_t out_length, const char *relative)
{
    const char *self = __FILE__;
    const char *tail = strstr(self, "tests/unit/test_config.c");
    cr_assert_not_null(tail);
    snprintf(out, out_length, "%.*s%s", (int)(tail - self), self, relative);
}

/* ---- defaults ---- */

static void test_config_assert_defaults(const struct config *config)
{
    cr_assert_str_eq(config->listen_host, "127.0.0.1");
    cr_assert_eq(config->listen_port, 8080);
    cr_assert_eq(config->threads, 0);
    cr_assert_str_eq(config->data_dir, "./ringmaster-data");
    cr_assert_eq(config->limits.max_connections, 10000);
    cr_assert_eq(config->limits.max_uri_bytes, 8192);
    cr_assert_eq(config->limits.max_header_bytes, 16384);
    cr_assert_eq(config->limits.max_headers, 64);
    cr_assert_eq(config->limits.max_body_bytes, 1024 * 1024);
    cr_assert_eq(config->limits.header_timeout_ms, 10000);
    cr_assert_eq(config->limits.body_timeout_ms, 30000);
    cr_assert_eq(config->limits.idle_timeout_ms, 60000);
    cr_assert_eq(config->limits.drain_timeout_ms, 10000);
    cr_assert_eq(config->limits.max_value_bytes, 1024 * 1024);
    cr_assert_eq(config->limits.max_invocations, 1000000);
    cr_assert_eq(config->durability.default_mode, CONFIG_DURABILITY_SYNC);
    cr_assert_eq(config->durability.flush_interval_ms, 5);
    cr_assert_eq(config->durability.namespace_count, 0);
    cr_assert_eq(config->store.segment_bytes, 64ull * 1024 * 1024);
    cr_assert_eq(config->store.cache_bytes, 256ull * 1024 * 1024);
    cr_assert_eq(config->store.compact_dead_percent, 50);
    cr_assert(config->store.require_precondition);
    cr_assert_eq(config->log.level, CONFIG_LOG_INFO);
    cr_assert_str_eq(config->log.file, "");
    cr_assert_not(config->admin.token_set);
    cr_assert_str_eq(config->admin.token, "");
    cr_assert_str_eq(config->tls.ca_file, "");
    cr_assert_eq(config->resilience.reconcile_ms, 10);
    cr_assert_eq(config->endpoint_count, 0);
    cr_assert_eq(config->tool_count, 0);
    cr_assert_eq(config->agent_count, 0);
}

Test(config_defaults, defaults_match_header)
{
    struct config config;
    memset(&config, 0xa5, sizeof(config));
    config_defaults(&config);
    test_config_assert_defaults(&config);
    cr_assert_str_eq(config.source, "<default>");
}

Test(config_defaults, empty_object_is_default)
{
    struct config config;
    test_config_expect_ok(&config, "{}");
    test_config_assert_defaults(&config);
    cr_assert_str_eq(config.source, "test.json");
    test_config_expect_ok(&config, " \n\t{ }\n");
    test_config_assert_defaults(&config);
}

Test(config_defaults, example_file_is_default)
{
    char path[1024];
    test_config_repo_path(path, sizeof(path), "examples/ringmaster.json");
    struct config config;
    char err[CONFIG_ERROR_MAX] = "";
    cr_assert_eq(config_load(&config, path, err, sizeof(err)), 0, "%s", err);
    test_config_assert_defaults(&config);
    cr_assert_str_eq(config.source, path);
}

/* ---- every key ---- */

Test(config_keys, top_level)
{
    struct config config;
    test_config_expect_ok(&config, "{\"listen\": \"0.0.0.0:9000\", \"threads\": 64, "
                                   "\"data_dir\": \"/var/lib/ringmaster\"}");
    cr_assert_str_eq(config.listen_host, "0.0.0.0");
    cr_assert_eq(config.listen_port, 9000);
    cr_assert_eq(config.threads, 64);
    cr_assert_str_eq(config.data_dir, "/var/lib/ringmaster");
}

Test(config_keys, limits)
{
    struct config config;
    test_config_expect_ok(&config,
                          "{\"limits\": {\"max_connections\": 1000000, \"max_uri_bytes\": 64,"
                          " \"max_header_bytes\": 1048576, \"max_headers\": 128,"
                          " \"max_body_bytes\": 1073741824, \"header_timeout_ms\": 1,"
                          " \"body_timeout_ms\": 3600000, \"idle_timeout_ms\": 5,"
                          " \"drain_timeout_ms\": 7, \"max_value_bytes\": 67108864,"
                          " \"max_invocations\": 100000000}}");
    const struct config_limits *limits = &config.limits;
    cr_assert_eq(limits->max_connections, 1000000);
    cr_assert_eq(limits->max_uri_bytes, 64);
    cr_assert_eq(limits->max_header_bytes, 1048576);
    cr_assert_eq(limits->max_headers, 128);
    cr_assert_eq(limits->max_body_bytes, 1073741824ull);
    cr_assert_eq(limits->header_timeout_ms, 1);
    cr_assert_eq(limits->body_timeout_ms, 3600000);
    cr_assert_eq(limits->idle_timeout_ms, 5);
    cr_assert_eq(limits->drain_timeout_ms, 7);
    cr_assert_eq(limits->max_value_bytes, 67108864);
    cr_assert_eq(limits->max_invocations, 100000000);
    test_config_expect_ok(&config, "{\"limits\": {\"max_body_bytes\": 0}}");
    cr_assert_eq(config.limits.max_body_bytes, 0);
}

Test(config_keys, durability)
{
    struct config config;
    test_config_expect_ok(&config, "{\"durability\": {\"default\": \"async\", "
                                   "\"flush_interval_ms\": 10000, \"namespaces\": "
                                   "{\"sessions\": \"sync\", \"cache.v-2_x\": \"async\"}}}");
    cr_assert_eq(config.durability.default_mode, CONFIG_DURABILITY_ASYNC);
    cr_assert_eq(config.durability.flush_interval_ms, 10000);
    cr_assert_eq(config.durability.namespace_count, 2);
    cr_assert_str_eq(config.durability.namespaces[0].name, "sessions");
    cr_assert_eq(config_durability_of(&config, "sessions", 8), CONFIG_DURABILITY_SYNC);
    cr_assert_eq(config_durability_of(&config, "cache.v-2_x", 11), CONFIG_DURABILITY_ASYNC);
    cr_assert_eq(config_durability_of(&config, "other", 5), CONFIG_DURABILITY_ASYNC);
    cr_assert_eq(config_durability_of(&config, "sessionsX", 8), CONFIG_DURABILITY_SYNC);
    cr_assert_eq(config_durability_of(&config, "session", 7), CONFIG_DURABILITY_ASYNC);
    cr_assert_eq(config_durability_of(&config, "", 0), CONFIG_DURABILITY_ASYNC);
    cr_assert_eq(config_durability_of(&config, "sessions\0", 9), CONFIG_DURABILITY_ASYNC);
}

Test(config_keys, namespaces_at_limit)
{
    char text[8192];
    size_t used = (size_t)snprintf(text, sizeof(text), "{\"durability\":{\"namespaces\":{");
    for (int i = 0; i < CONFIG_NAMESPACES_MAX; i++) {
        used += (size_t)snprintf(text + used, sizeof(text) - used, "%s\"ns%d\":\"async\"",
                                 i > 0 ? "," : "", i);
    }
    snprintf(text + used, sizeof(text) - used, "}}}");
    struct config config;
    test_config_expect_ok(&config, text);
    cr_assert_eq(config.durability.namespace_count, CONFIG_NAMESPACES_MAX);
    cr_assert_eq(config_durability_of(&config, "ns63", 4), CONFIG_DURABILITY_ASYNC);
    cr_assert_eq(config_durability_of(&config, "ns64", 4), CONFIG_DURABILITY_SYNC);
}

Test(config_keys, store_and_log)
{
    struct config config;
    test_config_expect_ok(&config, "{\"store\": {\"segment_bytes\": 4294967296, "
                                   "\"cache_bytes\": 1099511627776, \"compact_dead_percent\": 99,"
                                   " \"require_precondition\": false},"
                                   " \"log\": {\"level\": \"debug\", \"file\": \"/tmp/x.log\"}}");
    cr_assert_eq(config.store.segment_bytes, 4294967296ull);
    cr_assert_eq(config.store.cache_bytes, 1099511627776ull);
    cr_assert_eq(config.store.compact_dead_percent, 99);
    cr_assert_not(config.store.require_precondition);
    cr_assert_eq(config.log.level, CONFIG_LOG_DEBUG);
    cr_assert_str_eq(config.log.file, "/tmp/x.log");
    test_config_expect_ok(&config, "{\"log\": {\"level\": \"error\", \"file\": \"\"}}");
    cr_assert_eq(config.log.level, CONFIG_LOG_ERROR);
    cr_assert_str_eq(config.log.file, "");
    test_config_expect_ok(&config, "{\"log\": {\"level\": \"warn\"}}");
    cr_assert_eq(config.log.level, CONFIG_LOG_WARN);
}

struct test_config_range {
    const char *section;
    const char *key;
    unsigned long long minimum;
    unsigned long long maximum;
};

/* Every integer key accepts its bounds and rejects one past each, with the same message. */
Test(config_keys, integer_bounds)
{
    static const struct test_config_range ranges[] = {
        {NULL, "threads", 0, 64},
        {"limits", "max_connections", 1, 1000000},
        {"limits", "max_header_bytes", 1024, 1048576},
        {"limits", "max_headers", 1, 128},
        {"limits", "max_body_bytes", 0, 1073741824},
        {"limits", "header_timeout_ms", 1, 3600000},
        {"limits", "body_timeout_ms", 1, 3600000},
        {"limits", "idle_timeout_ms", 1, 3600000},
        {"limits", "drain_timeout_ms", 1, 3600000},
        {"limits", "max_value_bytes", 1, 67108864},
        {"limits", "max_invocations", 1, 100000000},
        {"durability", "flush_interval_ms", 1, 10000},
        {"store", "segment_bytes", 1048576, 4294967296},
        {"store", "cache_bytes", 1048576, 1099511627776},
        {"store", "compact_dead_percent", 1, 99},
        {"resilience", "reconcile_ms", 1, 1000},
    };
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        const struct test_config_range *range = &ranges[i];
        unsigned long long probes[] = {range->minimum, range->maximum, range->minimum - 1,
                                       range->maximum + 1};
        for (size_t p = 0; p < 4; p++) {
            if (p == 2 && range->minimum == 0) {
                continue;
            }
            char text[256];
            char path[96];
            if (range->section == NULL) {
                snprintf(text, sizeof(text), "{\n\"%s\": %llu}", range->key, probes[p]);
                snprintf(path, sizeof(path), "%s", range->key);
            } else {
                /* A small max_uri_bytes keeps max_header_bytes' lower bound reachable. */
                snprintf(text, sizeof(text), "{\"%s\": {%s\n\"%s\": %llu}}", range->section,
                         strcmp(range->section, "limits") == 0 ? "\"max_uri_bytes\": 64," : "",
                         range->key, probes[p]);
                snprintf(path, sizeof(path), "%s.%s", range->section, range->key);
            }
            struct config config;
            if (p < 2) {
                test_config_expect_ok(&config, text);
                continue;
            }
            char expected[CONFIG_ERROR_MAX];
            snprintf(expected, sizeof(expected),
                     "test.json:2: %s: must be an integer between %llu and %llu (got %llu)",
                     path, range->minimum, range->maximum, probes[p]);
            test_config_expect(text, expected);
        }
    }
}

/* ---- errors ---- */

Test(config_errors, unknown_key_names_file_line_and_path)
{
    test_config_expect("{\n  \"limits\": {\n    \"max_connections\": 5,\n"
                       "    \"max_hedaers\": 5\n  }\n}",
                       "test.json:4: limits.max_hedaers: unknown key; known keys: "
                       "max_connections, max_uri_bytes, max_header_bytes, max_headers, "
                       "max_body_bytes, header_timeout_ms, body_timeout_ms, idle_timeout_ms, "
                       "drain_timeout_ms, max_value_bytes, max_invocations");
    test_config_expect("{\"threads\": 1,\n\n \"thread\": 2}",
                       "test.json:3: thread: unknown key; known keys: " TEST_CONFIG_ROOT_KEYS);
    test_config_expect("{\"log\": {\n\"level\": \"info\", \"rotate\": true}}",
                       "test.json:2: log.rotate: unknown key; known keys: level, file");
}

/* The locator must find the key of the path, not an equal key elsewhere in the text. */
Test(config_errors, line_of_nested_key_with_equal_names_elsewhere)
{
    test_config_expect("{\n\"durability\": {\"namespaces\": {\"limits\": \"sync\",\n"
                       "\"store\": \"async\"}},\n"
                       "\"x\": {\"limits\": [\"limits\", {\"limits\": 1}]},\n"
                       "\"limits\": \"limits\",\n\"limits2\": 1}",
                       "test.json:4: x: unknown key; known keys: " TEST_CONFIG_ROOT_KEYS);
    test_config_expect("{\"store\": {\"limits\": 1},\n\"limits\": {\"a\": {\"limits\": 1},\n"
                       "\"max_headers\": 0}}",
                       "test.json:1: store.limits: unknown key; known keys: segment_bytes, "
                       "cache_bytes, compact_dead_percent, require_precondition");
    test_config_expect("{\"data_dir\": \"limits\", \"log\": {\"file\": \"{\\\"limits\\\": 1}\"},\n"
                       "\"lim\\u0069ts\": {\n\"max_headers\": 0}}",
                       "test.json:3: limits.max_headers: must be an integer between 1 and 128 "
                       "(got 0)");
}

Test(config_errors, escaped_and_unicode_keys)
{
    test_config_expect("{\"durability\": {\"namespaces\": {\n\"caf\\u00e9\": \"sync\"}}}",
                       "test.json:2: durability.namespaces.caf\xc3\xa9: namespace names are 1 "
                       "to 63 characters of A-Z a-z 0-9 _ . -");
    test_config_expect("{\"a\\nb\\\"c\\ud83d\\ude00\": 1,\n\"z\": 2}",
                       "test.json:1: a?b\"c\xf0\x9f\x98\x80: unknown key; known keys: "
                       TEST_CONFIG_ROOT_KEYS);
}

Test(config_errors, empty_keys)
{
    test_config_expect("{\n\"\": 1}",
                       "test.json:2: \"\": unknown key; known keys: " TEST_CONFIG_ROOT_KEYS);
    test_config_expect("{\"log\": {\"level\": \"info\",\n\"\": {}}}",
                       "test.json:2: log.\"\": unknown key; known keys: level, file");
}

Test(config_errors, wrong_types)
{
    test_config_expect("{\"threads\": \"4\"}",
                       "test.json:1: threads: must be an integer between 0 and 64 (got a string)");
    test_config_expect("{\"threads\": 4.0}",
                       "test.json:1: threads: must be an integer between 0 and 64 "
                       "(got a real number)");
    test_config_expect("{\"limits\": [1]}",
                       "test.json:1: limits: must be an object (got an array)");
    test_config_expect("{\"listen\": 8080}",
                       "test.json:1: listen: must be a string \"host:port\" (got an integer)");
    test_config_expect("{\"data_dir\": null}",
                       "test.json:1: data_dir: must be a non-empty path (got null)");
    test_config_expect("{\"data_dir\": \"\"}",
                       "test.json:1: data_dir: must be a non-empty path shorter than 512 bytes "
                       "(got 0 bytes)");
    test_config_expect("{\"store\": {\"require_precondition\": 1}}",
                       "test.json:1: store.require_precondition: must be true or false "
                       "(got an integer)");
    test_config_expect("{\"log\": {\"level\": \"verbose\"}}",
                       "test.json:1: log.level: must be one of \"debug\", \"info\", \"warn\", "
                       "\"error\" (got \"verbose\")");
    test_config_expect("{\"durability\": {\"default\": true}}",
                       "test.json:1: durability.default: must be one of \"sync\", \"async\" "
                       "(got true)");
    test_config_expect("[1, 2]", "test.json:1: (root): must be an object (got an array)");
    test_config_expect("\n\n  [\n]", "test.json:3: (root): must be an object (got an array)");
}

Test(config_errors, out_of_range)
{
    test_config_expect("{\n\"limits\": {\n\"max_headers\": 500}}",
                       "test.json:3: limits.max_headers: must be an integer between 1 and 128 "
                       "(got 500)");
    test_config_expect("{\"threads\": -1}",
                       "test.json:1: threads: must be an integer between 0 and 64 (got -1)");
    test_config_expect("{\"store\": {\"compact_dead_percent\": 100}}",
                       "test.json:1: store.compact_dead_percent: must be an integer between 1 and "
                       "99 (got 100)");
    test_config_expect("{\"limits\": {\"max_header_bytes\": 2048,\n\"max_uri_bytes\": 4096}}",
                       "test.json:2: limits.max_uri_bytes: must be an integer between 64 and "
                       "limits.max_header_bytes (2048) (got 4096)");
    test_config_expect("{\"limits\": {\"max_uri_bytes\": 63}}",
                       "test.json:1: limits.max_uri_bytes: must be an integer between 64 and "
                       "1048576 (got 63)");
    test_config_expect("{\"limits\": {\n\"max_header_bytes\": 2048}}",
                       "test.json:2: limits.max_header_bytes: must be at least "
                       "limits.max_uri_bytes (8192, its default); set limits.max_uri_bytes as "
                       "well");
}

Test(config_errors, duplicate_key)
{
    test_config_expect("{\"threads\": 1,\n \"threads\": 2}",
                       "test.json:2:10: duplicate object key near '\"threads\"'");
    test_config_expect("{\"limits\": {\"max_headers\": 1, \"max_headers\": 1}}",
                       "test.json:1:43: duplicate object key near '\"max_headers\"'");
}

Test(config_errors, syntax_error_has_line_and_column)
{
    test_config_expect("{\n  \"threads\": 4,\n  \"data_dir\" \"x\"\n}",
                       "test.json:3:16: ':' expected near '\"x\"'");
    test_config_expect("", "test.json:1:0: '[' or '{' expected near end of file");
    test_config_expect("{} {}", "test.json:1:4: end of file expected near '{'");
    test_config_expect("{\"threads\": 99999999999999999999}",
                       "test.json:1:32: too big integer near '99999999999999999999'");
}

Test(config_errors, namespaces)
{
    test_config_expect("{\"durability\": {\"namespaces\": {\"a b\": \"sync\"}}}",
                       "test.json:1: durability.namespaces.a b: namespace names are 1 to 63 "
                       "characters of A-Z a-z 0-9 _ . -");
    test_config_expect("{\"durability\": {\"namespaces\": {\"\": \"sync\"}}}",
                       "test.json:1: durability.namespaces.\"\": namespace names are 1 to 63 "
                       "characters of A-Z a-z 0-9 _ . -");
    test_config_expect("{\"durability\": {\"namespaces\": {\"ok\": \"fast\"}}}",
                       "test.json:1: durability.namespaces.ok: must be one of \"sync\", "
                       "\"async\" (got \"fast\")");
    test_config_expect("{\"durability\": {\"namespaces\": [\"ok\"]}}",
                       "test.json:1: durability.namespaces: must be an object of "
                       "\"namespace\": \"sync\" or \"async\" (got an array)");
    char text[8192];
    size_t used = (size_t)snprintf(text, sizeof(text), "{\"durability\":{\"namespaces\":{");
    for (int i = 0; i <= CONFIG_NAMESPACES_MAX; i++) {
        used += (size_t)snprintf(text + used, sizeof(text) - used, "%s\"n%d\":\"sync\"",
                                 i > 0 ? "," : "", i);
    }
    snprintf(text + used, sizeof(text) - used, "}}}");
    test_config_expect(text, "test.json:1: durability.namespaces: at most 64 namespaces (got 65)");
}

Test(config_errors, long_key_is_shortened_in_message)
{
    char text[512];
    char key[200];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    snprintf(text, sizeof(text), "{\"%s\": 1}", key);
    struct config config;
    cr_assert_eq(test_config_parse(&config, text), -1);
    char expected[128];
    snprintf(expected, sizeof(expected), "test.json:1: %.64s...: unknown key;", key);
    cr_assert_eq(strncmp(test_config_err, expected, strlen(expected)), 0, "%s",
                 test_config_err);
}

Test(config_errors, small_error_buffer_is_terminated)
{
    struct config config;
    char err[16];
    const char *text = "{\"threads\": 100}";
    cr_assert_eq(config_parse(&config, "test.json", text, strlen(text), err, sizeof(err)), -1);
    cr_assert_str_eq(err, "test.json:1: th");
}

Test(config_errors, load_file_errors)
{
    struct config config;
    char err[CONFIG_ERROR_MAX];
    cr_assert_eq(config_load(&config, "/nonexistent/ringmaster.json", err, sizeof(err)), -1);
    cr_assert_str_eq(err, "/nonexistent/ringmaster.json: cannot open: No such file or directory");
    cr_assert_eq(config_load(&config, "/tmp", err, sizeof(err)), -1);
    cr_assert_str_eq(err, "/tmp: cannot read: Is a directory");
    size_t big_length = 1024 * 1024 + 1;
    char *big = malloc(big_length);
    cr_assert_not_null(big);
    memset(big, ' ', big_length);
    big[0] = '{';
    big[big_length - 1] = '}';
    char path[64];
    test_config_write_file(path, sizeof(path), big, big_length);
    cr_assert_eq(config_load(&config, path, err, sizeof(err)), -1);
    char expected[128];
    snprintf(expected, sizeof(expected),
             "%s: larger than the limit for a config file (1048576 bytes)", path);
    cr_assert_str_eq(err, expected);
    unlink(path);
    /* Exactly at the limit: read whole, so the error is at its very end. */
    test_config_write_file(path, sizeof(path), big, big_length - 1);
    cr_assert_eq(config_load(&config, path, err, sizeof(err)), -1);
    snprintf(expected, sizeof(expected),
             "%s:1:1048576: string or '}' expected near end of file", path);
    cr_assert_str_eq(err, expected);
    unlink(path);
    big[big_length - 2] = '}';
    test_config_write_file(path, sizeof(path), big, big_length - 1);
    cr_assert_eq(config_load(&config, path, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(config.source, path);
    unlink(path);
    free(big);
}

Test(config_errors, load_reports_file_name_and_line)
{
    const char *text = "{\n  \"log\": {\n    \"level\": \"loud\"\n  }\n}\n";
    char path[64];
    test_config_write_file(path, sizeof(path), text, strlen(text));
    struct config config;
    char err[CONFIG_ERROR_MAX];
    cr_assert_eq(config_load(&config, path, err, sizeof(err)), -1);
    char expected[CONFIG_ERROR_MAX];
    snprintf(expected, sizeof(expected),
             "%s:3: log.level: must be one of \"debug\", \"info\", \"warn\", \"error\" "
             "(got \"loud\")",
             path);
    cr_assert_str_eq(err, expected);
    unlink(path);
}

/* ---- admin ---- */

Test(config_admin, token_from_env)
{
    cr_assert_eq(setenv("RM_TEST_ADMIN_TOKEN", TEST_CONFIG_SECRET, 1), 0);
    struct config config;
    test_config_expect_ok(&config, "{\"admin\": {\"token_env\": \"RM_TEST_ADMIN_TOKEN\"}}");
    cr_assert(config.admin.token_set);
    cr_assert_str_eq(config.admin.token, TEST_CONFIG_SECRET);
}

Test(config_admin, token_from_file)
{
    char path[64];
    test_config_write_file(path, sizeof(path), TEST_CONFIG_SECRET "\n", 26);
    char text[256];
    snprintf(text, sizeof(text), "{\"admin\": {\"token_file\": \"%s\"}}", path);
    struct config config;
    test_config_expect_ok(&config, text);
    cr_assert(config.admin.token_set);
    cr_assert_str_eq(config.admin.token, TEST_CONFIG_SECRET);
    unlink(path);
    test_config_write_file(path, sizeof(path), "abc\r\n", 5);
    snprintf(text, sizeof(text), "{\"admin\": {\"token_file\": \"%s\"}}", path);
    test_config_expect_ok(&config, text);
    cr_assert_str_eq(config.admin.token, "abc");
    unlink(path);
    test_config_write_file(path, sizeof(path), "a\n\n", 3);
    snprintf(text, sizeof(text), "{\"admin\": {\"token_file\": \"%s\"}}", path);
    test_config_expect_ok(&config, text);
    cr_assert_str_eq(config.admin.token, "a\n");
    unlink(path);
}

Test(config_admin, literal_token_rejected)
{
    test_config_expect("{\"admin\": {\n\"token\": \"" TEST_CONFIG_SECRET "\"}}",
                       "test.json:2: admin.token: secrets are not allowed in the config file; "
                       "set admin.token_env (an environment variable) or admin.token_file "
                       "(a file) instead");
    cr_assert_null(strstr(test_config_err, TEST_CONFIG_SECRET));
}

Test(config_admin, env_errors_name_variable_only)
{
    unsetenv("RM_TEST_ADMIN_MISSING");
    test_config_expect("{\"admin\": {\"token_env\": \"RM_TEST_ADMIN_MISSING\"}}",
                       "test.json:1: admin.token_env: environment variable RM_TEST_ADMIN_MISSING "
                       "is not set");
    cr_assert_eq(setenv("RM_TEST_ADMIN_EMPTY", "", 1), 0);
    test_config_expect("{\"admin\": {\"token_env\": \"RM_TEST_ADMIN_EMPTY\"}}",
                       "test.json:1: admin.token_env: environment variable RM_TEST_ADMIN_EMPTY "
                       "is empty");
    char secret[400];
    memset(secret, 'Q', sizeof(secret) - 1);
    secret[sizeof(secret) - 1] = '\0';
    cr_assert_eq(setenv("RM_TEST_ADMIN_LONG", secret, 1), 0);
    test_config_expect("{\"admin\": {\"token_env\": \"RM_TEST_ADMIN_LONG\"}}",
                       "test.json:1: admin.token_env: environment variable RM_TEST_ADMIN_LONG "
                       "holds a token longer than the limit (255 bytes)");
    cr_assert_null(strstr(test_config_err, "QQ"));
    test_config_expect("{\"admin\": {\"token_env\": \"A=B\"}}",
                       "test.json:1: admin.token_env: must be the name of an environment "
                       "variable");
}

Test(config_admin, file_errors_name_file_only)
{
    test_config_expect("{\"admin\": {\"token_file\": \"/nonexistent/token\"}}",
                       "test.json:1: admin.token_file: /nonexistent/token: cannot read: No such "
                       "file or directory");
    test_config_expect("{\"admin\": {\"token_file\": \"/tmp\"}}",
                       "test.json:1: admin.token_file: /tmp: not a regular file");
    char path[64];
    char text[256];
    char expected[CONFIG_ERROR_MAX];
    test_config_write_file(path, sizeof(path), "\n", 1);
    snprintf(text, sizeof(text), "{\"admin\": {\"token_file\": \"%s\"}}", path);
    snprintf(expected, sizeof(expected), "test.json:1: admin.token_file: %s: is empty", path);
    test_config_expect(text, expected);
    unlink(path);
    char secret[300];
    memset(secret, 'Z', sizeof(secret));
    test_config_write_file(path, sizeof(path), secret, sizeof(secret));
    snprintf(text, sizeof(text), "{\"admin\": {\"token_file\": \"%s\"}}", path);
    snprintf(expected, sizeof(expected),
             "test.json:1: admin.token_file: %s: holds a token longer than the limit (255 "
             "bytes)",
             path);
    test_config_expect(text, expected);
    cr_assert_null(strstr(test_config_err, "ZZ"));
    unlink(path);
    test_config_write_file(path, sizeof(path), "ab\0cd", 5);
    snprintf(text, sizeof(text), "{\"admin\": {\"token_file\": \"%s\"}}", path);
    snprintf(expected, sizeof(expected), "test.json:1: admin.token_file: %s: holds a NUL byte",
             path);
    test_config_expect(text, expected);
    unlink(path);
}

Test(config_admin, exactly_one_source)
{
    cr_assert_eq(setenv("RM_TEST_ADMIN_TOKEN", TEST_CONFIG_SECRET, 1), 0);
    test_config_expect("{\"admin\": {}}",
                       "test.json:1: admin: set exactly one of token_env and token_file (got 0)");
    test_config_expect("{\"admin\": {\"token_env\": \"RM_TEST_ADMIN_TOKEN\",\n"
                       "\"token_file\": \"/nonexistent\"}}",
                       "test.json:2: admin.token_file: /nonexistent: cannot read: No such file "
                       "or directory");
    test_config_expect("{\"admin\": {\"token_env\": \"RM_TEST_ADMIN_TOKEN\", \"token_env2\": 1}}",
                       "test.json:1: admin.token_env2: unknown key; known keys: token_env, "
                       "token_file");
    test_config_expect("{\"admin\": \"" TEST_CONFIG_SECRET "\"}",
                       "test.json:1: admin: must be an object (got a string)");
}

/* A later error must neither show the token nor leave it in the rejected config. */
Test(config_admin, secret_never_in_errors)
{
    cr_assert_eq(setenv("RM_TEST_ADMIN_TOKEN", TEST_CONFIG_SECRET, 1), 0);
    char path[64];
    test_config_write_file(path, sizeof(path), TEST_CONFIG_SECRET, strlen(TEST_CONFIG_SECRET));
    const char *templates[] = {
        "{\"admin\": {\"token_env\": \"RM_TEST_ADMIN_TOKEN\"}, \"threads\": 99}",
        "{\"admin\": {\"token_file\": \"%s\"}, \"bogus\": 1}",
        "{\"admin\": {\"token_env\": \"RM_TEST_ADMIN_TOKEN\", \"token_file\": \"%s\"}}",
        "{\"admin\": {\"token_file\": \"%s\", \"token\": \"x\"}}",
    };
    for (size_t i = 0; i < sizeof(templates) / sizeof(templates[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), templates[i], path);
        struct config config;
        cr_assert_eq(test_config_parse(&config, text), -1, "%s", text);
        cr_assert_null(strstr(test_config_err, TEST_CONFIG_SECRET), "%s", test_config_err);
        cr_assert_not(config.admin.token_set);
        cr_assert_null(memmem(config.admin.token, sizeof(config.admin.token), "s3cret", 6));
    }
    unlink(path);
}

/* ---- listen ---- */

Test(config_listen, accepted_forms)
{
    struct config config;
    test_config_expect_ok(&config, "{\"listen\": \"10.1.2.3:9000\"}");
    cr_assert_str_eq(config.listen_host, "10.1.2.3");
    cr_assert_eq(config.listen_port, 9000);
    test_config_expect_ok(&config, "{\"listen\": \"[::1]:0\"}");
    cr_assert_str_eq(config.listen_host, "::1");
    cr_assert_eq(config.listen_port, 0);
    test_config_expect_ok(&config, "{\"listen\": \"[2001:db8::8:800:200c:417a]:65535\"}");
    cr_assert_str_eq(config.listen_host, "2001:db8::8:800:200c:417a");
    cr_assert_eq(config.listen_port, 65535);
    test_config_expect_ok(&config, "{\"listen\": \"localhost:80\"}");
    cr_assert_str_eq(config.listen_host, "localhost");
    cr_assert_eq(config.listen_port, 80);
    test_config_expect_ok(&config, "{\"listen\": \"0.0.0.0:00080\"}");
    cr_assert_eq(config.listen_port, 80);
}

Test(config_listen, rejected_forms)
{
    static const char *const bad_hosts[] = {
        "::1:80", "[::1:80", "::1]:80", "example.com:80", "1.2.3:80", "256.1.1.1:80",
        ":80", "[]:80", "[localhost]:80", "[1.2.3.4]:80", " 1.2.3.4:80", "LOCALHOST:80",
    };
    for (size_t i = 0; i < sizeof(bad_hosts) / sizeof(bad_hosts[0]); i++) {
        char text[128];
        char expected[CONFIG_ERROR_MAX];
        snprintf(text, sizeof(text), "{\"listen\": \"%s\"}", bad_hosts[i]);
        snprintf(expected, sizeof(expected),
                 "test.json:1: listen: host must be an IPv4 address, [IPv6 address] or "
                 "localhost (got \"%s\")",
                 bad_hosts[i]);
        test_config_expect(text, expected);
    }
    static const char *const bad_ports[] = {
        "127.0.0.1:65536", "127.0.0.1:", "127.0.0.1:-1", "127.0.0.1:8o", "[::1]:123456",
        "127.0.0.1:+80", "127.0.0.1: 80",
    };
    for (size_t i = 0; i < sizeof(bad_ports) / sizeof(bad_ports[0]); i++) {
        char text[128];
        char expected[CONFIG_ERROR_MAX];
        snprintf(text, sizeof(text), "{\"listen\": \"%s\"}", bad_ports[i]);
        snprintf(expected, sizeof(expected),
                 "test.json:1: listen: port must be a number from 0 to 65535 (got \"%s\")",
                 bad_ports[i]);
        test_config_expect(text, expected);
    }
    test_config_expect("{\"listen\": \"127.0.0.1\"}",
                       "test.json:1: listen: must be \"host:port\" (got \"127.0.0.1\")");
}

/* ---- upstreams: tls, resilience, endpoints, tools ---- */

#define TEST_CONFIG_URL "\"url\": \"http://127.0.0.1:1\""
/* An endpoint "e" that is valid so far; tests add keys and close it with "}}}". */
#define TEST_CONFIG_ENDPOINT                                                                   \
    "{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": [{\"name\": \"k\"}],"
#define TEST_CONFIG_KNOWN_ENDPOINT                                                             \
    "url, models, keys, max_in_flight, max_queue, max_connections, connect_timeout_ms, "       \
    "first_byte_timeout_ms, timeout_ms, max_response_bytes, retry, fallbacks, breaker"

static void test_config_assert_breaker_defaults(const struct config_breaker *breaker)
{
    cr_assert_eq(breaker->window, CONFIG_WINDOW_COUNT);
    cr_assert_eq(breaker->window_calls, 20);
    cr_assert_eq(breaker->window_ms, 10000);
    cr_assert_eq(breaker->min_calls, 10);
    cr_assert_eq(breaker->failure_percent, 50);
    cr_assert_eq(breaker->slow_call_ms, 0);
    cr_assert_eq(breaker->slow_percent, 100);
    cr_assert_eq(breaker->open_ms, 5000);
    cr_assert_eq(breaker->probes, 3);
}

/* Builds {"endpoints": {...}} with `count` endpoints e0, e1, ... into text. */
static void test_config_endpoints_text(char *text, size_t text_length, int count)
{
    size_t used = (size_t)snprintf(text, text_length, "{\"endpoints\": {");
    for (int i = 0; i < count; i++) {
        used += (size_t)snprintf(text + used, text_length - used,
                                 "%s\"e%d\": {" TEST_CONFIG_URL ", \"keys\": [{\"name\": \"k\"}]}",
                                 i > 0 ? "," : "", i);
    }
    snprintf(text + used, text_length - used, "}}");
}

Test(config_upstreams, endpoint_and_tool_defaults)
{
    struct config config;
    test_config_expect_ok(&config, "{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": "
                                   "[{\"name\": \"local\"}]}}, \"tools\": {\"t\": {"
                                   TEST_CONFIG_URL "}}, \"tls\": {}, \"resilience\": {}}");
    cr_assert_str_eq(config.tls.ca_file, "");
    cr_assert_eq(config.resilience.reconcile_ms, 10);
    cr_assert_eq(config.endpoint_count, 1);
    const struct config_endpoint *endpoint = &config.endpoints[0];
    cr_assert_str_eq(endpoint->name, "e");
    cr_assert_str_eq(endpoint->url, "http://127.0.0.1:1");
    cr_assert_eq(endpoint->model_count, 0);
    cr_assert_eq(endpoint->key_count, 1);
    cr_assert_str_eq(endpoint->keys[0].name, "local");
    cr_assert_not(endpoint->keys[0].secret_set);
    cr_assert_str_eq(endpoint->keys[0].secret, "");
    cr_assert_eq(endpoint->keys[0].rpm, 0);
    cr_assert_eq(endpoint->keys[0].tpm, 0);
    cr_assert_eq(endpoint->max_in_flight, 64);
    cr_assert_eq(endpoint->max_queue, 10000);
    cr_assert_eq(endpoint->max_connections, 256);
    cr_assert_eq(endpoint->connect_timeout_ms, 5000);
    cr_assert_eq(endpoint->first_byte_timeout_ms, 60000);
    cr_assert_eq(endpoint->timeout_ms, 120000);
    cr_assert_eq(endpoint->max_response_bytes, 8ull * 1024 * 1024);
    cr_assert_eq(endpoint->retry.max_attempts, 3);
    cr_assert_eq(endpoint->retry.base_ms, 100);
    cr_assert_eq(endpoint->retry.max_ms, 5000);
    cr_assert_eq(endpoint->fallback_count, 0);
    test_config_assert_breaker_defaults(&endpoint->breaker);
    cr_assert_eq(config.tool_count, 1);
    const struct config_tool *tool = &config.tools[0];
    cr_assert_str_eq(tool->name, "t");
    cr_assert_eq(tool->kind, CONFIG_TOOL_HTTP);
    cr_assert_str_eq(tool->url, "http://127.0.0.1:1");
    cr_assert_str_eq(tool->agent, "");
    cr_assert_str_eq(tool->description, "");
    cr_assert_str_eq(tool->parameters, "{\"type\":\"object\"}");
    cr_assert_eq(tool->timeout_ms, 10000);
    cr_assert_eq(tool->connect_timeout_ms, 2000);
    cr_assert_eq(tool->max_connections, 256);
    cr_assert_eq(tool->max_response_bytes, 1024 * 1024);
    test_config_assert_breaker_defaults(&tool->breaker);
    cr_assert_eq(tool->fallback_kind, CONFIG_FALLBACK_NONE);
    cr_assert_str_eq(tool->fallback, "");
    test_config_expect_ok(&config, "{\"endpoints\": {}, \"tools\": {}}");
    cr_assert_eq(config.endpoint_count, 0);
    cr_assert_eq(config.tool_count, 0);
}

static void test_config_full_example(struct config *config, const char *ca_path,
                                     const char *key_path)
{
    char text[4096];
    snprintf(text, sizeof(text),
             "{\"tls\": {\"ca_file\": \"%s\"},\n"
             " \"resilience\": {\"reconcile_ms\": 20},\n"
             " \"endpoints\": {\n"
             "  \"openai\": {\n"
             "   \"url\": \"https://api.openai.com/v1\",\n"
             "   \"models\": [\"gpt-4o\", \"gpt-4o-mini\"],\n"
             "   \"keys\": [{\"name\": \"primary\", \"env\": \"RM_TEST_KEY_ENV\", \"rpm\": 500,"
             " \"tpm\": 200000},\n"
             "            {\"name\": \"backup\", \"file\": \"%s\", \"rpm\": 100}],\n"
             "   \"max_in_flight\": 32, \"max_queue\": 500, \"max_connections\": 16,\n"
             "   \"connect_timeout_ms\": 1000, \"first_byte_timeout_ms\": 20000,\n"
             "   \"timeout_ms\": 60000, \"max_response_bytes\": 4194304,\n"
             "   \"retry\": {\"max_attempts\": 5, \"base_ms\": 50, \"max_ms\": 2000},\n"
             "   \"fallbacks\": [\"local-llm\"],\n"
             "   \"breaker\": {\"window\": \"time\", \"window_calls\": 50, \"window_ms\": 30000,\n"
             "    \"min_calls\": 5, \"failure_percent\": 40, \"slow_call_ms\": 8000,\n"
             "    \"slow_percent\": 80, \"open_ms\": 10000, \"probes\": 2}},\n"
             "  \"local-llm\": {\"url\": \"http://127.0.0.1:8000\", \"keys\": [{\"name\": "
             "\"local\"}]}},\n"
             " \"tools\": {\n"
             "  \"weather\": {\"url\": \"http://127.0.0.1:9000/weather\", \"timeout_ms\": 3000,\n"
             "   \"connect_timeout_ms\": 500, \"max_connections\": 8, \"max_response_bytes\": "
             "65536,\n"
             "   \"breaker\": {\"window_calls\": 100, \"min_calls\": 100, \"open_ms\": 60000},\n"
             "   \"fallback\": {\"temp\": null, \"note\": \"cached\", \"list\": [1, 2.5]}},\n"
             "  \"search\": {\"url\": \"https://search.internal/api\",\n"
             "   \"fallback_error\": \"search is unavailable\"}}}",
             ca_path, key_path);
    test_config_expect_ok(config, text);
}

static void test_config_assert_full_endpoints(const struct config *config)
{
    cr_assert_eq(config->endpoint_count, 2);
    const struct config_endpoint *openai = &config->endpoints[0];
    cr_assert_str_eq(openai->name, "openai");
    cr_assert_str_eq(openai->url, "https://api.openai.com/v1");
    cr_assert_eq(openai->model_count, 2);
    cr_assert_str_eq(openai->models[0], "gpt-4o");
    cr_assert_str_eq(openai->models[1], "gpt-4o-mini");
    cr_assert_eq(openai->key_count, 2);
    cr_assert_str_eq(openai->keys[0].name, "primary");
    cr_assert_eq(openai->keys[0].rpm, 500);
    cr_assert_eq(openai->keys[0].tpm, 200000);
    cr_assert_str_eq(openai->keys[1].name, "backup");
    cr_assert_eq(openai->keys[1].rpm, 100);
    cr_assert_eq(openai->keys[1].tpm, 0);
    cr_assert_eq(openai->max_in_flight, 32);
    cr_assert_eq(openai->max_queue, 500);
    cr_assert_eq(openai->max_connections, 16);
    cr_assert_eq(openai->connect_timeout_ms, 1000);
    cr_assert_eq(openai->first_byte_timeout_ms, 20000);
    cr_assert_eq(openai->timeout_ms, 60000);
    cr_assert_eq(openai->max_response_bytes, 4194304);
    cr_assert_eq(openai->retry.max_attempts, 5);
    cr_assert_eq(openai->retry.base_ms, 50);
    cr_assert_eq(openai->retry.max_ms, 2000);
    cr_assert_eq(openai->fallback_count, 1);
    cr_assert_str_eq(openai->fallbacks[0], "local-llm");
    const struct config_breaker *breaker = &openai->breaker;
    cr_assert_eq(breaker->window, CONFIG_WINDOW_TIME);
    cr_assert_eq(breaker->window_calls, 50);
    cr_assert_eq(breaker->window_ms, 30000);
    cr_assert_eq(breaker->min_calls, 5);
    cr_assert_eq(breaker->failure_percent, 40);
    cr_assert_eq(breaker->slow_call_ms, 8000);
    cr_assert_eq(breaker->slow_percent, 80);
    cr_assert_eq(breaker->open_ms, 10000);
    cr_assert_eq(breaker->probes, 2);
    cr_assert_str_eq(config->endpoints[1].name, "local-llm");
    cr_assert_eq(config->endpoints[1].key_count, 1);
    cr_assert_not(config->endpoints[1].keys[0].secret_set);
}

static void test_config_assert_full_tools(const struct config *config)
{
    cr_assert_eq(config->tool_count, 2);
    const struct config_tool *weather = &config->tools[0];
    cr_assert_str_eq(weather->name, "weather");
    cr_assert_str_eq(weather->url, "http://127.0.0.1:9000/weather");
    cr_assert_eq(weather->timeout_ms, 3000);
    cr_assert_eq(weather->connect_timeout_ms, 500);
    cr_assert_eq(weather->max_connections, 8);
    cr_assert_eq(weather->max_response_bytes, 65536);
    cr_assert_eq(weather->breaker.window, CONFIG_WINDOW_COUNT);
    cr_assert_eq(weather->breaker.window_calls, 100);
    cr_assert_eq(weather->breaker.min_calls, 100);
    cr_assert_eq(weather->breaker.open_ms, 60000);
    cr_assert_eq(weather->breaker.probes, 3);
    cr_assert_eq(weather->fallback_kind, CONFIG_FALLBACK_VALUE);
    cr_assert_str_eq(weather->fallback, "{\"temp\":null,\"note\":\"cached\",\"list\":[1,2.5]}");
    const struct config_tool *search = &config->tools[1];
    cr_assert_str_eq(search->name, "search");
    cr_assert_eq(search->fallback_kind, CONFIG_FALLBACK_ERROR);
    cr_assert_str_eq(search->fallback, "search is unavailable");
    test_config_assert_breaker_defaults(&search->breaker);
}

Test(config_upstreams, full_example)
{
    cr_assert_eq(setenv("RM_TEST_KEY_ENV", TEST_CONFIG_SECRET, 1), 0);
    char ca_path[64];
    char key_path[64];
    test_config_write_file(ca_path, sizeof(ca_path), "not parsed here\n", 16);
    test_config_write_file(key_path, sizeof(key_path), "file-Secret_42\n", 15);
    struct config config;
    test_config_full_example(&config, ca_path, key_path);
    cr_assert_str_eq(config.tls.ca_file, ca_path);
    cr_assert_eq(config.resilience.reconcile_ms, 20);
    test_config_assert_full_endpoints(&config);
    test_config_assert_full_tools(&config);
    unlink(ca_path);
    unlink(key_path);
}

Test(config_upstreams, secrets_from_env_and_file_reach_keys)
{
    cr_assert_eq(setenv("RM_TEST_KEY_ENV", TEST_CONFIG_SECRET, 1), 0);
    char ca_path[64];
    char key_path[64];
    test_config_write_file(ca_path, sizeof(ca_path), "x", 1);
    test_config_write_file(key_path, sizeof(key_path), "file-Secret_42\r\n", 16);
    struct config config;
    test_config_full_example(&config, ca_path, key_path);
    cr_assert(config.endpoints[0].keys[0].secret_set);
    cr_assert_str_eq(config.endpoints[0].keys[0].secret, TEST_CONFIG_SECRET);
    cr_assert(config.endpoints[0].keys[1].secret_set);
    cr_assert_str_eq(config.endpoints[0].keys[1].secret, "file-Secret_42");
    cr_assert_not(config.endpoints[1].keys[0].secret_set);
    unlink(ca_path);
    unlink(key_path);
}

struct test_config_nested_range {
    const char *open;  /* the text before the key, which goes on line 2 */
    const char *close;
    const char *path;  /* of the object that holds the key */
    const char *key;
    unsigned long long minimum;
    unsigned long long maximum;
};

#define TEST_CONFIG_TOOL_BREAKER                                                               \
    "{\"tools\": {\"t\": {" TEST_CONFIG_URL ", \"breaker\": {\"window\": \"time\","

/* Every integer key of an endpoint, a key, a retry, a breaker and a tool accepts its bounds
 * and rejects one past each, reported on the key's own line (arrays included). */
Test(config_upstreams, integer_bounds)
{
    static const char *const key_open = "{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": "
                                        "[{\"name\": \"a\"}, {\"name\": \"k\",";
    static const struct test_config_nested_range ranges[] = {
        {TEST_CONFIG_ENDPOINT, "}}}", "endpoints.e", "max_in_flight", 1, 100000},
        {TEST_CONFIG_ENDPOINT, "}}}", "endpoints.e", "max_queue", 0, 1000000},
        {TEST_CONFIG_ENDPOINT, "}}}", "endpoints.e", "max_connections", 1, 100000},
        {TEST_CONFIG_ENDPOINT, "}}}", "endpoints.e", "connect_timeout_ms", 1, 3600000},
        {TEST_CONFIG_ENDPOINT, "}}}", "endpoints.e", "first_byte_timeout_ms", 1, 3600000},
        {TEST_CONFIG_ENDPOINT, "}}}", "endpoints.e", "timeout_ms", 1, 3600000},
        {TEST_CONFIG_ENDPOINT, "}}}", "endpoints.e", "max_response_bytes", 1024, 1073741824},
        {key_open, "}]}}}", "endpoints.e.keys[1]", "rpm", 0, 100000000},
        {key_open, "}]}}}", "endpoints.e.keys[1]", "tpm", 0, 1000000000000},
        {TEST_CONFIG_ENDPOINT "\"retry\": {\"max_ms\": 600000,", "}}}}", "endpoints.e.retry",
         "max_attempts", 1, 10},
        {TEST_CONFIG_ENDPOINT "\"retry\": {\"max_ms\": 600000,", "}}}}", "endpoints.e.retry",
         "base_ms", 1, 60000},
        {TEST_CONFIG_ENDPOINT "\"retry\": {\"base_ms\": 1,", "}}}}", "endpoints.e.retry",
         "max_ms", 1, 600000},
        {TEST_CONFIG_TOOL_BREAKER, "}}}}", "tools.t.breaker", "window_calls", 1, 100000},
        {TEST_CONFIG_TOOL_BREAKER, "}}}}", "tools.t.breaker", "window_ms", 100, 3600000},
        {TEST_CONFIG_TOOL_BREAKER, "}}}}", "tools.t.breaker", "min_calls", 1, 100000},
        {TEST_CONFIG_TOOL_BREAKER, "}}}}", "tools.t.breaker", "failure_percent", 1, 100},
        {TEST_CONFIG_TOOL_BREAKER, "}}}}", "tools.t.breaker", "slow_call_ms", 0, 3600000},
        {TEST_CONFIG_TOOL_BREAKER, "}}}}", "tools.t.breaker", "slow_percent", 1, 100},
        {TEST_CONFIG_TOOL_BREAKER, "}}}}", "tools.t.breaker", "open_ms", 1, 3600000},
        {TEST_CONFIG_TOOL_BREAKER, "}}}}", "tools.t.breaker", "probes", 1, 1000},
        {"{\"tools\": {\"t\": {" TEST_CONFIG_URL ",", "}}}", "tools.t", "timeout_ms", 1, 3600000},
        {"{\"tools\": {\"t\": {" TEST_CONFIG_URL ",", "}}}", "tools.t", "connect_timeout_ms", 1,
         3600000},
        {"{\"tools\": {\"t\": {" TEST_CONFIG_URL ",", "}}}", "tools.t", "max_connections", 1,
         100000},
        {"{\"tools\": {\"t\": {" TEST_CONFIG_URL ",", "}}}", "tools.t", "max_response_bytes",
         1024, 1073741824},
    };
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        const struct test_config_nested_range *range = &ranges[i];
        unsigned long long probes[] = {range->minimum, range->maximum, range->minimum - 1,
                                       range->maximum + 1};
        for (size_t p = 0; p < 4; p++) {
            if (p == 2 && range->minimum == 0) {
                continue;
            }
            char text[512];
            snprintf(text, sizeof(text), "%s\n\"%s\": %llu%s", range->open, range->key,
                     probes[p], range->close);
            struct config config;
            if (p < 2) {
                test_config_expect_ok(&config, text);
                continue;
            }
            char expected[CONFIG_ERROR_MAX];
            snprintf(expected, sizeof(expected),
                     "test.json:2: %s.%s: must be an integer between %llu and %llu (got %llu)",
                     range->path, range->key, range->minimum, range->maximum, probes[p]);
            test_config_expect(text, expected);
        }
    }
}

Test(config_upstreams, unknown_keys)
{
    test_config_expect("{\"endpoints\": {\n\"e\": {" TEST_CONFIG_URL ",\n\"keys\": [{\"name\": "
                       "\"k\"}],\n\"max_inflight\": 3}}}",
                       "test.json:4: endpoints.e.max_inflight: unknown key; known keys: "
                       TEST_CONFIG_KNOWN_ENDPOINT);
    test_config_expect("{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": [\n"
                       "{\"name\": \"a\"},\n{\"name\": \"b\",\n\"rmp\": 1}]}}}",
                       "test.json:4: endpoints.e.keys[1].rmp: unknown key; known keys: name, "
                       "env, file, rpm, tpm");
    test_config_expect(TEST_CONFIG_ENDPOINT "\"breaker\": {\n\"windows\": \"count\"}}}}",
                       "test.json:2: endpoints.e.breaker.windows: unknown key; known keys: "
                       "window, window_calls, window_ms, min_calls, failure_percent, "
                       "slow_call_ms, slow_percent, open_ms, probes");
    test_config_expect(TEST_CONFIG_ENDPOINT "\"retry\": {\"attempts\": 2}}}}",
                       "test.json:1: endpoints.e.retry.attempts: unknown key; known keys: "
                       "max_attempts, base_ms, max_ms");
    test_config_expect("{\"tools\": {\"t\": {" TEST_CONFIG_URL ",\n\"fallback_value\": 1}}}",
                       "test.json:2: tools.t.fallback_value: unknown key; known keys: kind, url, "
                       "agent, description, parameters, timeout_ms, connect_timeout_ms, "
                       "max_connections, max_response_bytes, breaker, retry, fallback, "
                       "fallback_error, fallback_on_error");
    test_config_expect("{\"tls\": {\"ca\": \"/x\"}}",
                       "test.json:1: tls.ca: unknown key; known keys: ca_file");
    test_config_expect("{\"resilience\": {\"reconcile\": 1}}",
                       "test.json:1: resilience.reconcile: unknown key; known keys: "
                       "reconcile_ms");
}

Test(config_upstreams, bad_window)
{
    test_config_expect("{\"tools\": {\"t\": {" TEST_CONFIG_URL ",\n\"breaker\": {\"window\": "
                       "\"sliding\"}}}}",
                       "test.json:2: tools.t.breaker.window: must be one of \"count\", \"time\" "
                       "(got \"sliding\")");
    test_config_expect(TEST_CONFIG_ENDPOINT "\"breaker\": {\"window\": 1}}}}",
                       "test.json:1: endpoints.e.breaker.window: must be one of \"count\", "
                       "\"time\" (got an integer)");
    test_config_expect(TEST_CONFIG_ENDPOINT "\"breaker\": []}}}",
                       "test.json:1: endpoints.e.breaker: must be an object (got an array)");
}

/* A min_calls no count window reaches is allowed: it keeps that breaker from opening. */
Test(config_upstreams, breaker_min_calls_above_window)
{
    struct config config;
    test_config_expect_ok(&config, "{\"tools\": {\"t\": {" TEST_CONFIG_URL ", \"breaker\": "
                                   "{\"window_calls\": 5, \"min_calls\": 100}}}}");
    cr_assert_eq(config.tools[0].breaker.window, CONFIG_WINDOW_COUNT);
    cr_assert_eq(config.tools[0].breaker.window_calls, 5);
    cr_assert_eq(config.tools[0].breaker.min_calls, 100);
}

Test(config_upstreams, retry_base_within_max)
{
    test_config_expect(TEST_CONFIG_ENDPOINT "\"retry\": {\"max_ms\": 100,\n\"base_ms\": 200}}}}",
                       "test.json:2: endpoints.e.retry.base_ms: must be at most max_ms (100) "
                       "(got 200)");
    test_config_expect(TEST_CONFIG_ENDPOINT "\"retry\": {\n\"max_ms\": 50}}}}",
                       "test.json:2: endpoints.e.retry.max_ms: must be at least base_ms (100, "
                       "its default); set base_ms as well (got 50)");
}

Test(config_upstreams, missing_env_var_names_key_and_variable)
{
    unsetenv("RM_TEST_KEY_MISSING");
    test_config_expect("{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": [{\"name\": "
                       "\"a\"},\n{\"name\": \"b\", \"env\": \"RM_TEST_KEY_MISSING\"}]}}}",
                       "test.json:2: endpoints.e.keys[1].env: environment variable "
                       "RM_TEST_KEY_MISSING is not set");
    cr_assert_eq(setenv("RM_TEST_KEY_EMPTY", "", 1), 0);
    test_config_expect("{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": [{\"name\": "
                       "\"a\", \"env\": \"RM_TEST_KEY_EMPTY\"}]}}}",
                       "test.json:1: endpoints.e.keys[0].env: environment variable "
                       "RM_TEST_KEY_EMPTY is empty");
}

Test(config_upstreams, fallbacks_name_other_endpoints)
{
    test_config_expect("{\"endpoints\": {\n\"a\": {" TEST_CONFIG_URL ", \"keys\": [{\"name\": "
                       "\"k\"}],\n\"fallbacks\": [\"b\",\n\"c\"]},\n\"b\": {" TEST_CONFIG_URL
                       ", \"keys\": [{\"name\": \"k\"}]}}}",
                       "test.json:4: endpoints.a.fallbacks[1]: no endpoint is named \"c\"");
    test_config_expect(TEST_CONFIG_ENDPOINT "\"fallbacks\": [\"e\"]}}}",
                       "test.json:1: endpoints.e.fallbacks[0]: an endpoint cannot fall back to "
                       "itself (got \"e\")");
    test_config_expect("{\"endpoints\": {\"a\": {" TEST_CONFIG_URL ", \"keys\": [{\"name\": "
                       "\"k\"}], \"fallbacks\": [\"b\", \"b\"]}, \"b\": {" TEST_CONFIG_URL
                       ", \"keys\": [{\"name\": \"k\"}]}}}",
                       "test.json:1: endpoints.a.fallbacks[1]: duplicate fallback (got \"b\")");
    test_config_expect(TEST_CONFIG_ENDPOINT "\"fallbacks\": [\"a b\"]}}}",
                       "test.json:1: endpoints.e.fallbacks[0]: no endpoint is named \"a b\"");
    test_config_expect(TEST_CONFIG_ENDPOINT "\"fallbacks\": \"b\"}}}",
                       "test.json:1: endpoints.e.fallbacks: must be an array of endpoint names "
                       "(got a string)");
    test_config_expect(TEST_CONFIG_ENDPOINT "\"fallbacks\": [\"a\", \"b\", \"c\", \"d\", "
                       "\"f\"]}}}",
                       "test.json:1: endpoints.e.fallbacks: at most 4 fallbacks (got 5)");
}

Test(config_upstreams, tool_retry_and_fallback_on_error)
{
    struct config config;
    test_config_expect_ok(&config, "{\"tools\": {\"t\": {" TEST_CONFIG_URL ", \"retry\": "
                                   "{\"max_attempts\": 4, \"base_ms\": 10}, \"fallback\": 1, "
                                   "\"fallback_on_error\": true}, \"u\": {" TEST_CONFIG_URL "}}}");
    cr_assert_eq(config.tools[0].retry.max_attempts, 4);
    cr_assert_eq(config.tools[0].retry.base_ms, 10);
    cr_assert_eq(config.tools[0].retry.max_ms, 1000);
    cr_assert(config.tools[0].fallback_on_error);
    cr_assert_eq(config.tools[1].retry.max_attempts, 1, "tool retries are opt-in");
    cr_assert(!config.tools[1].fallback_on_error);
    test_config_expect("{\"tools\": {\"t\": {" TEST_CONFIG_URL ", \"fallback_on_error\": 1}}}",
                       "test.json:1: tools.t.fallback_on_error: must be true or false (got an "
                       "integer)");
    test_config_expect("{\"tools\": {\"t\": {" TEST_CONFIG_URL ",\n\"fallback_on_error\": "
                       "true}}}",
                       "test.json:2: tools.t.fallback_on_error: needs a \"fallback\" value to "
                       "answer with");
    test_config_expect("{\"tools\": {\"t\": {" TEST_CONFIG_URL ", \"fallback_error\": \"x\", "
                       "\"fallback_on_error\": true}}}",
                       "test.json:1: tools.t.fallback_on_error: needs a \"fallback\" value to "
                       "answer with");
    test_config_expect("{\"tools\": {\"t\": {\"kind\": \"c\",\n\"retry\": {}}}}",
                       "test.json:2: tools.t.retry: is only for tools of kind \"http\" (this "
                       "tool's kind is \"c\")");
    test_config_expect("{\"tools\": {\"t\": {" TEST_CONFIG_URL ", \"retry\": "
                       "{\"max_attempts\": 11}}}}",
                       "test.json:1: tools.t.retry.max_attempts: must be an integer between 1 "
                       "and 10 (got 11)");
}

Test(config_upstreams, fallback_and_fallback_error_exclusive)
{
    test_config_expect("{\"tools\": {\"t\": {" TEST_CONFIG_URL ",\n\"fallback\": {\"a\": 1},\n"
                       "\"fallback_error\": \"down\"}}}",
                       "test.json:3: tools.t.fallback_error: cannot be set together with "
                       "fallback; a tool has one fallback");
    test_config_expect("{\"tools\": {\"t\": {" TEST_CONFIG_URL ", \"fallback_error\": \"\"}}}",
                       "test.json:1: tools.t.fallback_error: must be a non-empty error message "
                       "shorter than 2048 bytes (got 0 bytes)");
    struct config config;
    test_config_expect_ok(&config, "{\"tools\": {\"t\": {" TEST_CONFIG_URL ", \"fallback\": "
                                   "null}, \"u\": {" TEST_CONFIG_URL ", \"fallback\": \"x\"}}}");
    cr_assert_eq(config.tools[0].fallback_kind, CONFIG_FALLBACK_VALUE);
    cr_assert_str_eq(config.tools[0].fallback, "null");
    cr_assert_str_eq(config.tools[1].fallback, "\"x\"");
    /* The limit counts the compact form: 2047 bytes fit, 2048 do not. */
    char text[4096];
    char value[2048];
    memset(value, 'v', sizeof(value));
    value[2045] = '\0';
    snprintf(text, sizeof(text), "{\"tools\": {\"t\": {" TEST_CONFIG_URL ", \"fallback\": "
                                 " \"%s\"}}}", value);
    test_config_expect_ok(&config, text);
    cr_assert_eq(strlen(config.tools[0].fallback), 2047);
    value[2045] = 'v';
    value[2046] = '\0';
    snprintf(text, sizeof(text), "{\"tools\": {\"t\": {" TEST_CONFIG_URL ", \"fallback\": "
                                 " \"%s\"}}}", value);
    test_config_expect(text, "test.json:1: tools.t.fallback: must be a JSON value of at most "
                             "2047 bytes in compact form (got 2048 bytes)");
}

Test(config_upstreams, too_many)
{
    char text[16384];
    test_config_endpoints_text(text, sizeof(text), CONFIG_ENDPOINTS_MAX);
    struct config config;
    test_config_expect_ok(&config, text);
    cr_assert_eq(config.endpoint_count, CONFIG_ENDPOINTS_MAX);
    test_config_endpoints_text(text, sizeof(text), CONFIG_ENDPOINTS_MAX + 1);
    test_config_expect(text, "test.json:1: endpoints: at most 16 endpoints (got 17)");
    size_t used = (size_t)snprintf(text, sizeof(text), "{\"tools\": {");
    for (int i = 0; i <= CONFIG_TOOLS_MAX; i++) {
        used += (size_t)snprintf(text + used, sizeof(text) - used,
                                 "%s\"t%d\": {" TEST_CONFIG_URL "}", i > 0 ? "," : "", i);
    }
    snprintf(text + used, sizeof(text) - used, "}}");
    test_config_expect(text, "test.json:1: tools: at most 64 tools (got 65)");
    used = (size_t)snprintf(text, sizeof(text), "{\"endpoints\": {\"e\": {" TEST_CONFIG_URL
                                                ",\n\"keys\": [");
    for (int i = 0; i <= CONFIG_KEYS_MAX; i++) {
        used += (size_t)snprintf(text + used, sizeof(text) - used, "%s{\"name\": \"k%d\"}",
                                 i > 0 ? "," : "", i);
    }
    snprintf(text + used, sizeof(text) - used, "]}}}");
    test_config_expect(text, "test.json:2: endpoints.e.keys: at most 8 keys (got 9)");
    test_config_expect(TEST_CONFIG_ENDPOINT "\"models\": [\"a\", \"b\", \"c\", \"d\", \"e\", "
                       "\"f\", \"g\", \"h\", \"i\"]}}}",
                       "test.json:1: endpoints.e.models: at most 8 models (got 9)");
}

Test(config_upstreams, bad_urls)
{
    static const char *const bad_schemes[] = {"ftp://x", "HTTP://x", "127.0.0.1:80", "",
                                              "http:/x"};
    for (size_t i = 0; i < sizeof(bad_schemes) / sizeof(bad_schemes[0]); i++) {
        char text[256];
        char expected[CONFIG_ERROR_MAX];
        snprintf(text, sizeof(text), "{\"tools\": {\"t\": {\"url\": \"%s\"}}}", bad_schemes[i]);
        snprintf(expected, sizeof(expected),
                 "test.json:1: tools.t.url: must start with http:// or https:// (got \"%s\")",
                 bad_schemes[i]);
        test_config_expect(text, expected);
    }
    test_config_expect("{\"tools\": {\"t\": {\"url\": \"http://a b/\"}}}",
                       "test.json:1: tools.t.url: must not hold spaces, control or non-ASCII "
                       "bytes; percent-encode them (got \"http://a b/\")");
    test_config_expect("{\"tools\": {\"t\": {\"url\": \"http://a\\r\\nHost: b\"}}}",
                       "test.json:1: tools.t.url: must not hold spaces, control or non-ASCII "
                       "bytes; percent-encode them (got \"http://a??Host: b\")");
    test_config_expect("{\"endpoints\": {\"e\": {\"keys\": [{\"name\": \"k\"}],\n\"url\": "
                       "\"https://host:99999/v1\"}}}",
                       "test.json:2: endpoints.e.url: invalid URL \"https://host:99999/v1\": the "
                       "port must be between 1 and 65535; expected http[s]://host[:port][/path]");
    test_config_expect("{\"tools\": {\"t\": {\"url\": \"http://user@host/\"}}}",
                       "test.json:1: tools.t.url: invalid URL \"http://user@host/\": user "
                       "information is not supported; put credentials in headers; expected "
                       "http[s]://host[:port][/path]");
    test_config_expect("{\"tools\": {\"t\": {\"url\": 80}}}",
                       "test.json:1: tools.t.url: must be a URL http[s]://host[:port][/path] "
                       "(got an integer)");
    char text[512];
    char path[300];
    memset(path, 'p', sizeof(path) - 1);
    path[sizeof(path) - 1] = '\0';
    snprintf(text, sizeof(text), "{\"tools\": {\"t\": {\"url\": \"http://h/%s\"}}}", path);
    test_config_expect(text, "test.json:1: tools.t.url: must be a URL shorter than 256 bytes "
                             "(got 308 bytes)");
    test_config_expect("{\"tools\": {\"t\": {\"timeout_ms\": 5}}}",
                       "test.json:1: tools.t: missing \"url\" (where the tool's arguments are "
                       "POSTed)");
    test_config_expect("{\"endpoints\": {\"e\": {\"keys\": [{\"name\": \"k\"}]}}}",
                       "test.json:1: endpoints.e: missing \"url\" (the endpoint's base URL)");
}

Test(config_upstreams, key_names)
{
    test_config_expect("{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": [\n{\"name\": "
                       "\"k\"},\n{\"name\": \"j\"},\n{\"name\": \"k\", \"rpm\": 5}]}}}",
                       "test.json:4: endpoints.e.keys[2].name: duplicate key name in this "
                       "endpoint (got \"k\")");
    test_config_expect("{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": [{\"name\": "
                       "\"k 1\"}]}}}",
                       "test.json:1: endpoints.e.keys[0].name: must be a name of 1 to 63 "
                       "characters of A-Z a-z 0-9 _ . - (got \"k 1\")");
    test_config_expect("{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": [{\"rpm\": 1}]}}}",
                       "test.json:1: endpoints.e.keys[0]: missing \"name\" (the key's label in "
                       "metrics)");
    test_config_expect("{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": [\"k\"]}}}",
                       "test.json:1: endpoints.e.keys[0]: must be an object (got a string)");
    test_config_expect("{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": []}}}",
                       "test.json:1: endpoints.e.keys: needs at least one key; use {\"name\": "
                       "\"local\"} for an endpoint without authentication");
    test_config_expect("{\"endpoints\": {\"e\": {" TEST_CONFIG_URL "}}}",
                       "test.json:1: endpoints.e: missing \"keys\" (at least one; {\"name\": "
                       "\"local\"} for an endpoint without authentication)");
    test_config_expect("{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": [{\"name\": "
                       "\"k\", \"env\": \"A\",\n\"file\": \"/b\"}]}}}",
                       "test.json:2: endpoints.e.keys[0].file: cannot be set together with env; "
                       "a key has one secret");
}

Test(config_upstreams, item_names_and_models)
{
    test_config_expect("{\"endpoints\": {\n\"open ai\": {}}}",
                       "test.json:2: endpoints.open ai: endpoint names are 1 to 63 characters "
                       "of A-Z a-z 0-9 _ . -");
    test_config_expect("{\"tools\": {\"\": {}}}",
                       "test.json:1: tools.\"\": tool names are 1 to 63 characters of A-Z a-z "
                       "0-9 _ . -");
    test_config_expect("{\"tools\": []}",
                       "test.json:1: tools: must be an object of tools by name (got an array)");
    test_config_expect("{\"endpoints\": {\"e\": 1}}",
                       "test.json:1: endpoints.e: must be an object (got an integer)");
    test_config_expect(TEST_CONFIG_ENDPOINT "\"models\": [\"m,1\",\n\"m,1\"]}}}",
                       "test.json:2: endpoints.e.models[1]: duplicate model in this endpoint "
                       "(got \"m,1\")");
    test_config_expect(TEST_CONFIG_ENDPOINT "\"models\": [\"a\", \"\"]}}}",
                       "test.json:1: endpoints.e.models[1]: must be a model name of 1 to 63 "
                       "visible ASCII characters (got \"\")");
    test_config_expect(TEST_CONFIG_ENDPOINT "\"models\": [[\"a\"]]}}}",
                       "test.json:1: endpoints.e.models[0]: must be a model name (got an "
                       "array)");
    struct config config;
    test_config_expect_ok(&config, TEST_CONFIG_ENDPOINT "\"models\": [\"meta/llama-3:8b\"]}}}");
    cr_assert_eq(config.endpoints[0].model_count, 1);
    cr_assert_str_eq(config.endpoints[0].models[0], "meta/llama-3:8b");
}

Test(config_upstreams, tls_ca_file)
{
    test_config_expect("{\"tls\": {\"ca_file\": \"/nonexistent/ca.pem\"}}",
                       "test.json:1: tls.ca_file: /nonexistent/ca.pem: cannot read: No such file "
                       "or directory");
    test_config_expect("{\"tls\": {\n\"ca_file\": \"/tmp\"}}",
                       "test.json:2: tls.ca_file: /tmp: not a regular file (want a PEM bundle "
                       "of CA certificates)");
    test_config_expect("{\"tls\": {\"ca_file\": \"\"}}",
                       "test.json:1: tls.ca_file: must be a non-empty path shorter than 512 "
                       "bytes (got 0 bytes)");
    test_config_expect("{\"tls\": \"/etc/ssl\"}",
                       "test.json:1: tls: must be an object (got a string)");
}

/* Secrets that would break the Authorization header are refused, without being echoed. */
Test(config_upstreams, secret_must_fit_a_header)
{
    cr_assert_eq(setenv("RM_TEST_KEY_CRLF", TEST_CONFIG_SECRET "\r\nX-Evil: 1", 1), 0);
    test_config_expect("{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": [{\"name\": "
                       "\"k\", \"env\": \"RM_TEST_KEY_CRLF\"}]}}}",
                       "test.json:1: endpoints.e.keys[0].env: environment variable "
                       "RM_TEST_KEY_CRLF holds a space, control or non-ASCII byte, which cannot "
                       "go in an HTTP header");
    char path[64];
    char text[256];
    char expected[CONFIG_ERROR_MAX];
    test_config_write_file(path, sizeof(path), TEST_CONFIG_SECRET " x\n", 28);
    snprintf(text, sizeof(text), "{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": "
                                 "[{\"name\": \"k\", \"file\": \"%s\"}]}}}", path);
    snprintf(expected, sizeof(expected),
             "test.json:1: endpoints.e.keys[0].file: %s: holds a space, control or non-ASCII "
             "byte, which cannot go in an HTTP header",
             path);
    test_config_expect(text, expected);
    unlink(path);
    test_config_expect("{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": [{\"name\": "
                       "\"k\",\n\"api_key\": \"" TEST_CONFIG_SECRET "\"}]}}}",
                       "test.json:2: endpoints.e.keys[0].api_key: secrets are not allowed in "
                       "the config file; set env (an environment variable) or file (a file) "
                       "instead");
}

/* A later error must neither show an API key nor leave one in the rejected config. */
Test(config_upstreams, secret_never_in_errors)
{
    cr_assert_eq(setenv("RM_TEST_KEY_ENV", TEST_CONFIG_SECRET, 1), 0);
    cr_assert_eq(setenv("RM_TEST_KEY_CRLF", TEST_CONFIG_SECRET "\r\n", 1), 0);
    char path[64];
    test_config_write_file(path, sizeof(path), TEST_CONFIG_SECRET, strlen(TEST_CONFIG_SECRET));
    static const char *const templates[] = {
        "{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": [{\"name\": \"a\", \"env\": "
        "\"RM_TEST_KEY_ENV\"}, {\"name\": \"b\", \"file\": \"%s\"}]}}, \"threads\": 99}",
        "{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": [{\"name\": \"a\", \"file\": "
        "\"%s\"}], \"fallbacks\": [\"x\"]}}}",
        "{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": [{\"name\": \"a\", \"file\": "
        "\"%s\"}, {\"name\": \"a\", \"env\": \"RM_TEST_KEY_ENV\"}]}}}",
        "{\"endpoints\": {\"e\": {\"keys\": [{\"name\": \"a\", \"file\": \"%s\"}], \"bogus\": "
        "1}}}",
        "{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": [{\"name\": \"a\", \"file\": "
        "\"%s\"}, {\"name\": \"b\", \"env\": \"RM_TEST_KEY_CRLF\"}]}}}",
        "{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": [{\"name\": \"a\", \"file\": "
        "\"%s\", \"env\": \"RM_TEST_KEY_ENV\"}]}}}",
        "{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": [{\"name\": \"a\", \"file\": "
        "\"%s\"}]}}, \"tools\": {\"t\": {\"breaker\": {\"window\": \"x\"}}}}",
    };
    for (size_t i = 0; i < sizeof(templates) / sizeof(templates[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text), templates[i], path);
        struct config config;
        cr_assert_eq(test_config_parse(&config, text), -1, "%s", text);
        cr_assert_null(strstr(test_config_err, "s3cret"), "%s", test_config_err);
        cr_assert_null(memmem(config.endpoints, sizeof(config.endpoints), "s3cret", 6),
                       "%s", text);
        for (int e = 0; e < CONFIG_ENDPOINTS_MAX; e++) {
            for (int k = 0; k < CONFIG_KEYS_MAX; k++) {
                cr_assert_not(config.endpoints[e].keys[k].secret_set);
            }
        }
    }
    unlink(path);
}

/* The line of an array element is found past commas and brackets inside earlier elements. */
Test(config_upstreams, line_of_array_element)
{
    test_config_expect("{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ",\n\"models\": [\"a,]\", "
                       "\"[b\"],\n\"keys\": [\n{\"name\": \"a\", \"x\": [1, {\"k\": [2, 3]}]},\n"
                       "{\"name\": \"b\",\n\"rpm\": -1}]}}}",
                       "test.json:4: endpoints.e.keys[0].x: unknown key; known keys: name, env, "
                       "file, rpm, tpm");
    test_config_expect("{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ",\n\"models\": [\"a,]\", "
                       "\"[b\"],\n\"keys\": [\n{\"name\": \"a\", \"rpm\": 1, \"tpm\": 2},\n"
                       "{\"name\": \"b\",\n\"rpm\": -1}]}}}",
                       "test.json:6: endpoints.e.keys[1].rpm: must be an integer between 0 and "
                       "100000000 (got -1)");
}

/* ---- agents, and tools of kind agent and c ---- */

/* An endpoint "e" and a tool "t", both valid, for agents to refer to. */
#define TEST_CONFIG_AGENT_UPSTREAMS                                                             \
    "\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": [{\"name\": \"k\"}]}}, "           \
    "\"tools\": {\"t\": {" TEST_CONFIG_URL "}}"
/* An agent "a" that is valid so far; tests add keys and close it with "}}}". */
#define TEST_CONFIG_AGENT                                                                      \
    "{" TEST_CONFIG_AGENT_UPSTREAMS ", \"agents\": {\"a\": {\"endpoint\": \"e\", \"model\": "   \
    "\"m\","
#define TEST_CONFIG_KNOWN_AGENT                                                                \
    "endpoint, model, system, tools, max_steps, deadline_ms, max_concurrent, max_queue, "      \
    "max_depth, history_messages, params"

Test(config_agents, defaults)
{
    struct config config;
    test_config_expect_ok(&config, "{" TEST_CONFIG_AGENT_UPSTREAMS ", \"agents\": {\"a\": "
                                   "{\"endpoint\": \"e\", \"model\": \"m\"}}}");
    cr_assert_eq(config.agent_count, 1);
    const struct config_agent *agent = &config.agents[0];
    cr_assert_str_eq(agent->name, "a");
    cr_assert_str_eq(agent->endpoint, "e");
    cr_assert_str_eq(agent->model, "m");
    cr_assert_str_eq(agent->system, "");
    cr_assert_eq(agent->tool_count, 0);
    cr_assert_eq(agent->max_steps, 8);
    cr_assert_eq(agent->deadline_ms, 300000);
    cr_assert_eq(agent->max_concurrent, 64);
    cr_assert_eq(agent->max_queue, 10000);
    cr_assert_eq(agent->max_depth, 3);
    cr_assert_eq(agent->history_messages, 100);
    cr_assert_str_eq(agent->params, "{}");
    cr_assert_eq(config.tools[0].kind, CONFIG_TOOL_HTTP);
    cr_assert_str_eq(config.tools[0].parameters, "{\"type\":\"object\"}");
    cr_assert_eq(config.limits.max_invocations, 1000000);
    test_config_expect_ok(&config, "{\"agents\": {}}");
    cr_assert_eq(config.agent_count, 0);
}

/* Sections in an order where every reference points forward, and agents that call each other
 * through agent tools (a cycle, which the runtime bounds with max_depth). */
static void test_config_agents_example(struct config *config)
{
    test_config_expect_ok(
        config,
        "{\"agents\": {\n"
        "  \"planner\": {\"endpoint\": \"openai\", \"model\": \"gpt-4o\",\n"
        "   \"system\": \"You plan.\\nStep by step.\",\n"
        "   \"tools\": [\"weather\", \"ask_researcher\", \"lookup\"],\n"
        "   \"max_steps\": 12, \"deadline_ms\": 60000, \"max_concurrent\": 10,\n"
        "   \"max_queue\": 0, \"max_depth\": 2,\n"
        "   \"params\": {\"temperature\": 0.2, \"top_p\": 0.95, \"max_tokens\": 512,\n"
        "    \"stop\": [\"\\n\\n\"]}},\n"
        "  \"researcher\": {\"endpoint\": \"local\", \"model\": \"llama-3:8b\",\n"
        "   \"tools\": [\"ask_planner\"]}},\n"
        " \"tools\": {\n"
        "  \"weather\": {\"url\": \"http://127.0.0.1:9000/weather\",\n"
        "   \"description\": \"Current weather for a city.\",\n"
        "   \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": "
        "\"string\"}},\n"
        "    \"required\": [\"city\"]}},\n"
        "  \"ask_researcher\": {\"kind\": \"agent\", \"agent\": \"researcher\",\n"
        "   \"description\": \"Asks the researcher.\", \"timeout_ms\": 120000,\n"
        "   \"fallback_error\": \"the researcher is unavailable\"},\n"
        "  \"ask_planner\": {\"kind\": \"agent\", \"agent\": \"planner\"},\n"
        "  \"lookup\": {\"kind\": \"c\", \"breaker\": {\"min_calls\": 3}}},\n"
        " \"endpoints\": {\n"
        "  \"openai\": {\"url\": \"https://api.openai.com/v1\", \"keys\": [{\"name\": \"k\"}]},\n"
        "  \"local\": {\"url\": \"http://127.0.0.1:8000\", \"keys\": [{\"name\": \"k\"}]}},\n"
        " \"limits\": {\"max_invocations\": 5000}}");
}

Test(config_agents, full_example)
{
    struct config config;
    test_config_agents_example(&config);
    cr_assert_eq(config.limits.max_invocations, 5000);
    cr_assert_eq(config.agent_count, 2);
    const struct config_agent *planner = &config.agents[0];
    cr_assert_str_eq(planner->name, "planner");
    cr_assert_str_eq(planner->endpoint, "openai");
    cr_assert_str_eq(planner->model, "gpt-4o");
    cr_assert_str_eq(planner->system, "You plan.\nStep by step.");
    cr_assert_eq(planner->tool_count, 3);
    cr_assert_str_eq(planner->tools[0], "weather");
    cr_assert_str_eq(planner->tools[1], "ask_researcher");
    cr_assert_str_eq(planner->tools[2], "lookup");
    cr_assert_eq(planner->max_steps, 12);
    cr_assert_eq(planner->deadline_ms, 60000);
    cr_assert_eq(planner->max_concurrent, 10);
    cr_assert_eq(planner->max_queue, 0);
    cr_assert_eq(planner->max_depth, 2);
    /* Decimals come back as written, not as 0.20000000000000001. */
    cr_assert_str_eq(planner->params, "{\"temperature\":0.2,\"top_p\":0.95,\"max_tokens\":512,"
                                      "\"stop\":[\"\\n\\n\"]}");
    const struct config_agent *researcher = &config.agents[1];
    cr_assert_str_eq(researcher->endpoint, "local");
    cr_assert_str_eq(researcher->model, "llama-3:8b");
    cr_assert_eq(researcher->tool_count, 1);
    cr_assert_str_eq(researcher->tools[0], "ask_planner");
    cr_assert_eq(config.tool_count, 4);
    const struct config_tool *weather = &config.tools[0];
    cr_assert_eq(weather->kind, CONFIG_TOOL_HTTP);
    cr_assert_str_eq(weather->description, "Current weather for a city.");
    cr_assert_str_eq(weather->parameters, "{\"type\":\"object\",\"properties\":{\"city\":"
                                          "{\"type\":\"string\"}},\"required\":[\"city\"]}");
    const struct config_tool *ask = &config.tools[1];
    cr_assert_eq(ask->kind, CONFIG_TOOL_AGENT);
    cr_assert_str_eq(ask->agent, "researcher");
    cr_assert_str_eq(ask->url, "");
    cr_assert_eq(ask->timeout_ms, 120000);
    cr_assert_eq(ask->fallback_kind, CONFIG_FALLBACK_ERROR);
    cr_assert_str_eq(ask->parameters, "{\"type\":\"object\"}");
    cr_assert_eq(config.tools[2].kind, CONFIG_TOOL_AGENT);
    cr_assert_str_eq(config.tools[2].agent, "planner");
    const struct config_tool *lookup = &config.tools[3];
    cr_assert_eq(lookup->kind, CONFIG_TOOL_C);
    cr_assert_str_eq(lookup->url, "");
    cr_assert_str_eq(lookup->agent, "");
    cr_assert_eq(lookup->breaker.min_calls, 3);
}

/* What the brief calls the common case: one agent, its endpoint and tools of each kind. */
Test(config_agents, agent_with_tools_passes)
{
    struct config config;
    test_config_expect_ok(&config,
                          "{\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", \"keys\": [{\"name\": "
                          "\"k\"}]}}, \"tools\": {\"http\": {" TEST_CONFIG_URL "}, \"self\": "
                          "{\"kind\": \"agent\", \"agent\": \"a\"}, \"fn\": {\"kind\": \"c\"}}, "
                          "\"agents\": {\"a\": {\"endpoint\": \"e\", \"model\": \"m\", \"tools\": "
                          "[\"http\", \"self\", \"fn\"]}}}");
    cr_assert_eq(config.agents[0].tool_count, 3);
    cr_assert_str_eq(config.tools[1].agent, "a");
}

Test(config_agents, integer_bounds)
{
    static const struct test_config_nested_range ranges[] = {
        {TEST_CONFIG_AGENT, "}}}", "agents.a", "max_steps", 1, 100},
        {TEST_CONFIG_AGENT, "}}}", "agents.a", "deadline_ms", 1, 86400000},
        {TEST_CONFIG_AGENT, "}}}", "agents.a", "max_concurrent", 1, 1000000},
        {TEST_CONFIG_AGENT, "}}}", "agents.a", "max_queue", 0, 10000000},
        {TEST_CONFIG_AGENT, "}}}", "agents.a", "max_depth", 0, 8},
    };
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        const struct test_config_nested_range *range = &ranges[i];
        unsigned long long probes[] = {range->minimum, range->maximum, range->minimum - 1,
                                       range->maximum + 1};
        for (size_t p = 0; p < 4; p++) {
            if (p == 2 && range->minimum == 0) {
                continue;
            }
            char text[512];
            snprintf(text, sizeof(text), "%s\n\"%s\": %llu%s", range->open, range->key,
                     probes[p], range->close);
            struct config config;
            if (p < 2) {
                test_config_expect_ok(&config, text);
                continue;
            }
            char expected[CONFIG_ERROR_MAX];
            snprintf(expected, sizeof(expected),
                     "test.json:2: %s.%s: must be an integer between %llu and %llu (got %llu)",
                     range->path, range->key, range->minimum, range->maximum, probes[p]);
            test_config_expect(text, expected);
        }
    }
}

/* References are resolved after the whole root, so the section order does not matter, and
 * the error names the line of the referring key. */
Test(config_agents, unknown_endpoint)
{
    test_config_expect("{\"agents\": {\"a\": {\"model\": \"m\",\n\"endpoint\": \"nope\"}},\n"
                       TEST_CONFIG_AGENT_UPSTREAMS "}",
                       "test.json:2: agents.a.endpoint: no endpoint is named \"nope\"");
    test_config_expect("{\"agents\": {\"a\": {\"model\": \"m\", \"endpoint\": \"e\"}}}",
                       "test.json:1: agents.a.endpoint: no endpoint is named \"e\"");
    test_config_expect("{\"agents\": {\"a\": {\"model\": \"m\",\n\"endpoint\": \"a b\"}}}",
                       "test.json:2: agents.a.endpoint: no endpoint is named \"a b\"");
    test_config_expect("{\"agents\": {\"a\": {\"model\": \"m\", \"endpoint\": 1}}}",
                       "test.json:1: agents.a.endpoint: must be the name of an endpoint (got an "
                       "integer)");
}

Test(config_agents, unknown_tool)
{
    test_config_expect("{\"agents\": {\"a\": {\"endpoint\": \"e\", \"model\": \"m\", "
                       "\"tools\": [\"t\",\n\"nope\"]}},\n" TEST_CONFIG_AGENT_UPSTREAMS "}",
                       "test.json:2: agents.a.tools[1]: no tool is named \"nope\"");
    test_config_expect(TEST_CONFIG_AGENT "\"tools\": [\n\"t x\"]}}}",
                       "test.json:2: agents.a.tools[0]: no tool is named \"t x\"");
    test_config_expect(TEST_CONFIG_AGENT "\"tools\": [{}]}}}",
                       "test.json:1: agents.a.tools[0]: must be the name of a tool (got an "
                       "object)");
    test_config_expect(TEST_CONFIG_AGENT "\"tools\": \"t\"}}}",
                       "test.json:1: agents.a.tools: must be an array of tool names (got a "
                       "string)");
}

Test(config_agents, duplicate_tool)
{
    test_config_expect(TEST_CONFIG_AGENT "\"tools\": [\"t\",\n\"t\"]}}}",
                       "test.json:2: agents.a.tools[1]: duplicate tool (got \"t\")");
}

Test(config_agents, too_many_tools)
{
    char text[8192];
    size_t used = (size_t)snprintf(text, sizeof(text), "{\"endpoints\": {\"e\": {"
                                   TEST_CONFIG_URL ", \"keys\": [{\"name\": \"k\"}]}}, "
                                   "\"tools\": {");
    for (int i = 0; i <= CONFIG_AGENT_TOOLS_MAX; i++) {
        used += (size_t)snprintf(text + used, sizeof(text) - used, "%s\"t%d\": {\"kind\": \"c\"}",
                                 i > 0 ? ", " : "", i);
    }
    used += (size_t)snprintf(text + used, sizeof(text) - used, "}, \"agents\": {\"a\": "
                             "{\"endpoint\": \"e\", \"model\": \"m\",\n\"tools\": [");
    size_t list = used;
    for (int i = 0; i < CONFIG_AGENT_TOOLS_MAX; i++) {
        used += (size_t)snprintf(text + used, sizeof(text) - used, "%s\"t%d\"",
                                 i > 0 ? ", " : "", i);
    }
    snprintf(text + used, sizeof(text) - used, "]}}}");
    struct config config;
    test_config_expect_ok(&config, text);
    cr_assert_eq(config.agents[0].tool_count, CONFIG_AGENT_TOOLS_MAX);
    cr_assert_str_eq(config.agents[0].tools[CONFIG_AGENT_TOOLS_MAX - 1], "t15");
    used = list;
    for (int i = 0; i <= CONFIG_AGENT_TOOLS_MAX; i++) {
        used += (size_t)snprintf(text + used, sizeof(text) - used, "%s\"t%d\"",
                                 i > 0 ? ", " : "", i);
    }
    snprintf(text + used, sizeof(text) - used, "]}}}");
    test_config_expect(text, "test.json:2: agents.a.tools: at most 16 tools (got 17)");
}

Test(config_agents, params)
{
    test_config_expect(TEST_CONFIG_AGENT "\n\"params\": [0.2]}}}",
                       "test.json:2: agents.a.params: must be an object of model parameters "
                       "like {\"temperature\": 0.2} (got an array)");
    static const char *const reserved[] = {"model", "messages", "tools", "stream"};
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
        char text[512];
        char expected[CONFIG_ERROR_MAX];
        snprintf(text, sizeof(text), TEST_CONFIG_AGENT "\"params\": {\"temperature\": 1,\n"
                 "\"%s\": true}}}}", reserved[i]);
        snprintf(expected, sizeof(expected), "test.json:2: agents.a.params.%s: is set by the "
                 "engine; params cannot override model, messages, tools or stream",
                 reserved[i]);
        test_config_expect(text, expected);
    }
    /* The limit counts the compact form: {"stop":"v..."} is 11 bytes plus the value. */
    char text[2048];
    char value[1024];
    memset(value, 'v', sizeof(value));
    value[1012] = '\0';
    snprintf(text, sizeof(text), TEST_CONFIG_AGENT "\"params\": { \"stop\" : \"%s\" }}}}", value);
    struct config config;
    test_config_expect_ok(&config, text);
    cr_assert_eq(strlen(config.agents[0].params), 1023);
    /* A double that needs 17 digits keeps them, and then so do the object's other reals. */
    test_config_expect_ok(&config, TEST_CONFIG_AGENT "\"params\": {\"top_p\": 0.5, "
                                   "\"temperature\": 0.30000000000000004}}}}");
    cr_assert_str_eq(config.agents[0].params, "{\"top_p\":0.5,\"temperature\":"
                                              "0.30000000000000004}");
    test_config_expect_ok(&config, TEST_CONFIG_AGENT "\"params\": {\"top_p\": 0.1, "
                                   "\"temperature\": 1e-7, \"n\": 1.0}}}}");
    cr_assert_str_eq(config.agents[0].params, "{\"top_p\":0.1,\"temperature\":1e-7,\"n\":1.0}");
    value[1012] = 'v';
    value[1013] = '\0';
    snprintf(text, sizeof(text), TEST_CONFIG_AGENT "\"params\": {\"stop\": \"%s\"}}}}", value);
    test_config_expect(text, "test.json:1: agents.a.params: must be at most 1023 bytes in compact "
                             "JSON (got 1024 bytes)");
}

Test(config_agents, required_keys_names_and_model)
{
    test_config_expect("{" TEST_CONFIG_AGENT_UPSTREAMS ", \"agents\": {\n\"a\": {\"model\": "
                       "\"m\"}}}",
                       "test.json:2: agents.a: missing \"endpoint\" (the endpoint the agent's "
                       "LLM calls go to)");
    test_config_expect("{" TEST_CONFIG_AGENT_UPSTREAMS ", \"agents\": {\"a\": {\"endpoint\": "
                       "\"e\"}}}",
                       "test.json:1: agents.a: missing \"model\" (the model the agent asks the "
                       "endpoint for)");
    test_config_expect("{\"agents\": {\"a\": {\"endpoint\": \"e\", \"model\": \"gpt 4\"}}}",
                       "test.json:1: agents.a.model: must be a model name of 1 to 63 visible "
                       "ASCII characters (got \"gpt 4\")");
    test_config_expect("{\"agents\": {\n\"a/b\": {}}}",
                       "test.json:2: agents.a/b: agent names are 1 to 63 characters of A-Z a-z "
                       "0-9 _ . -");
    test_config_expect("{\"agents\": [\"a\"]}",
                       "test.json:1: agents: must be an object of agents by name (got an "
                       "array)");
    test_config_expect(TEST_CONFIG_AGENT "\n\"tool\": [\"t\"]}}}",
                       "test.json:2: agents.a.tool: unknown key; known keys: "
                       TEST_CONFIG_KNOWN_AGENT);
    test_config_expect(TEST_CONFIG_AGENT "\"system\": 1}}}",
                       "test.json:1: agents.a.system: must be a string (got an integer)");
    char text[16384];
    char prompt[8193];
    memset(prompt, 'p', sizeof(prompt));
    prompt[8191] = '\0';
    snprintf(text, sizeof(text), TEST_CONFIG_AGENT "\"system\": \"%s\"}}}", prompt);
    struct config config;
    test_config_expect_ok(&config, text);
    cr_assert_eq(strlen(config.agents[0].system), 8191);
    prompt[8191] = 'p';
    prompt[8192] = '\0';
    snprintf(text, sizeof(text), TEST_CONFIG_AGENT "\"system\": \"%s\"}}}", prompt);
    test_config_expect(text, "test.json:1: agents.a.system: must be a string shorter than 8192 "
                             "bytes (got 8192 bytes)");
}

Test(config_agents, too_many_agents)
{
    char text[8192];
    size_t used = (size_t)snprintf(text, sizeof(text), "{\"endpoints\": {\"e\": {"
                                   TEST_CONFIG_URL ", \"keys\": [{\"name\": \"k\"}]}}, "
                                   "\"agents\": {");
    size_t list = used;
    for (int i = 0; i < CONFIG_AGENTS_MAX; i++) {
        used += (size_t)snprintf(text + used, sizeof(text) - used,
                                 "%s\"a%d\": {\"endpoint\": \"e\", \"model\": \"m\"}",
                                 i > 0 ? ", " : "", i);
    }
    snprintf(text + used, sizeof(text) - used, "}}");
    struct config config;
    test_config_expect_ok(&config, text);
    cr_assert_eq(config.agent_count, CONFIG_AGENTS_MAX);
    cr_assert_str_eq(config.agents[CONFIG_AGENTS_MAX - 1].name, "a63");
    used = list;
    for (int i = 0; i <= CONFIG_AGENTS_MAX; i++) {
        used += (size_t)snprintf(text + used, sizeof(text) - used, "%s\"a%d\": {}",
                                 i > 0 ? ", " : "", i);
    }
    snprintf(text + used, sizeof(text) - used, "}}");
    test_config_expect(text, "test.json:1: agents: at most 64 agents (got 65)");
}

Test(config_agents, tool_kinds)
{
    test_config_expect("{\"tools\": {\"t\": {\"kind\": \"agent\",\n\"timeout_ms\": 5}}}",
                       "test.json:1: tools.t: missing \"agent\" (the agent that a tool of kind "
                       "\"agent\" invokes)");
    test_config_expect("{\"tools\": {\"t\": {\"kind\": \"agent\", \"agent\": \"a\",\n"
                       TEST_CONFIG_URL "}}}",
                       "test.json:2: tools.t.url: is only for tools of kind \"http\" (this "
                       "tool's kind is \"agent\")");
    test_config_expect("{\"tools\": {\"t\": {" TEST_CONFIG_URL ",\n\"kind\": \"c\"}}}",
                       "test.json:1: tools.t.url: is only for tools of kind \"http\" (this "
                       "tool's kind is \"c\")");
    test_config_expect("{\"tools\": {\"t\": {\"kind\": \"http\"}}}",
                       "test.json:1: tools.t: missing \"url\" (where the tool's arguments are "
                       "POSTed)");
    test_config_expect("{\"tools\": {\"t\": {\n\"agent\": \"a\"}}}",
                       "test.json:2: tools.t.agent: is only for tools of kind \"agent\" (this "
                       "tool's kind is \"http\")");
    test_config_expect("{\"tools\": {\"t\": {\"kind\": \"c\",\n\"agent\": \"a\"}}}",
                       "test.json:2: tools.t.agent: is only for tools of kind \"agent\" (this "
                       "tool's kind is \"c\")");
    test_config_expect("{\"tools\": {\"t\": {\n\"kind\": \"grpc\"}}}",
                       "test.json:2: tools.t.kind: must be one of \"http\", \"agent\", \"c\" "
                       "(got \"grpc\")");
    test_config_expect("{\"tools\": {\"t\": {\"kind\": \"agent\", \"agent\": \"\"}}}",
                       "test.json:1: tools.t.agent: no agent is named \"\"");
}

Test(config_agents, unknown_agent_in_tool)
{
    test_config_expect("{\"tools\": {\"u\": {\"kind\": \"c\"}, \"t\": {\"kind\": \"agent\",\n"
                       "\"agent\": \"nope\"}},\n\"agents\": {\"a\": {\"endpoint\": \"e\", "
                       "\"model\": \"m\"}},\n\"endpoints\": {\"e\": {" TEST_CONFIG_URL ", "
                       "\"keys\": [{\"name\": \"k\"}]}}}",
                       "test.json:2: tools.t.agent: no agent is named \"nope\"");
    test_config_expect("{\"tools\": {\"t\": {\"kind\": \"agent\", \"agent\": \"a\"}}}",
                       "test.json:1: tools.t.agent: no agent is named \"a\"");
}

Test(config_agents, tool_description_and_parameters)
{
    test_config_expect("{\"tools\": {\"t\": {\"kind\": \"c\",\n\"parameters\": \"object\"}}}",
                       "test.json:2: tools.t.parameters: must be a JSON schema object like "
                       "{\"type\": \"object\", \"properties\": {...}} (got a string)");
    test_config_expect("{\"tools\": {\"t\": {\"kind\": \"c\", \"description\": null}}}",
                       "test.json:1: tools.t.description: must be a string (got null)");
    char text[8192];
    char value[4096];
    memset(value, 'v', sizeof(value));
    value[511] = '\0';
    snprintf(text, sizeof(text), "{\"tools\": {\"t\": {\"kind\": \"c\", \"description\": "
                                 "\"%s\"}}}", value);
    struct config config;
    test_config_expect_ok(&config, text);
    cr_assert_eq(strlen(config.tools[0].description), 511);
    value[511] = 'v';
    value[512] = '\0';
    snprintf(text, sizeof(text), "{\"tools\": {\"t\": {\"kind\": \"c\", \"description\": "
                                 "\"%s\"}}}", value);
    test_config_expect(text, "test.json:1: tools.t.description: must be a string shorter than "
                             "512 bytes (got 512 bytes)");
    /* {"d":"v..."} is 8 bytes plus the value: 4095 bytes fit, 4096 do not. */
    memset(value, 'v', sizeof(value));
    value[4087] = '\0';
    snprintf(text, sizeof(text), "{\"tools\": {\"t\": {\"kind\": \"c\", \"parameters\": "
                                 "{\"d\": \"%s\"}}}}", value);
    test_config_expect_ok(&config, text);
    cr_assert_eq(strlen(config.tools[0].parameters), 4095);
    value[4087] = 'v';
    value[4088] = '\0';
    snprintf(text, sizeof(text), "{\"tools\": {\"t\": {\"kind\": \"c\", \"parameters\": "
                                 "{\"d\": \"%s\"}}}}", value);
    test_config_expect(text, "test.json:1: tools.t.parameters: must be a JSON schema of at most "
                             "4095 bytes in compact form (got 4096 bytes)");
}
