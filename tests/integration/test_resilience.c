/* Breakers, the LLM queue and the gateway routes end to end: an embedded engine with two
 * reactors, ringmaster-mock as the LLM and the tools, curl as the client. The mock's own
 * counters (GET /mock/stats) are the witness of what reached the upstream. */

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support.h"

#define RESILIENCE_OUTPUT_MAX (1024 * 1024)
#define RESILIENCE_ADMIN_TOKEN "admin-token-for-tests"

static char output[RESILIENCE_OUTPUT_MAX];
static char stats[65536];

static const char resilience_chat[] =
    "{\"model\":\"gpt-mock\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}";

static void resilience_init(void)
{
    setenv("RM_TEST_ADMIN_TOKEN", RESILIENCE_ADMIN_TOKEN, 1);
    setenv("RM_TEST_KEY_A", "sk-a", 1);
    setenv("RM_TEST_KEY_B", "sk-b", 1);
    setenv("RM_TEST_KEY_C", "sk-c", 1);
    setenv("RM_TEST_KEY_STORM", "sk-storm", 1);
}

TestSuite(resilience, .init = resilience_init, .timeout = 120);

/* POSTs body with curl (-i: the head is kept); returns the HTTP status. */
static int resilience_post(uint16_t port, const char *path, const char *body)
{
    char command[8192];
    snprintf(command, sizeof(command),
             "curl -s -i -m 30 -H 'Content-Type: application/json' --data-binary '%s' "
             "http://127.0.0.1:%u%s",
             body, port, path);
    cr_assert_eq(test_run(command, output, sizeof(output)), 0, "curl failed: %s", command);
    return test_status(output);
}

static int resilience_get(uint16_t port, const char *path, const char *token)
{
    char command[1024];
    snprintf(command, sizeof(command), "curl -s -i -m 30 %s%s%s http://127.0.0.1:%u%s",
             token != NULL ? "-H 'Authorization: Bearer " : "", token != NULL ? token : "",
             token != NULL ? "'" : "", port, path);
    cr_assert_eq(test_run(command, output, sizeof(output)), 0);
    return test_status(output);
}

static void resilience_mock_stats(const struct test_mock *mock)
{
    char command[256];
    snprintf(command, sizeof(command), "curl -s -m 10 http://127.0.0.1:%u/mock/stats",
             mock->port);
    cr_assert_eq(test_run(command, stats, sizeof(stats)), 0);
}

/* Sends `count` chat requests at once (curl --parallel), keeps the status codes in output
 * (one per line) and returns how many were 200. */
static int resilience_chat_burst(uint16_t port, int count, int parallel, const char *body)
{
    char body_path[] = "/tmp/rm-chat-body-XXXXXX";
    char config_path[] = "/tmp/rm-chat-curl-XXXXXX";
    int body_fd = mkstemp(body_path);
    int config_fd = mkstemp(config_path);
    cr_assert(body_fd >= 0 && config_fd >= 0);
    cr_assert_eq(write(body_fd, body, strlen(body)), (ssize_t)strlen(body));
    close(body_fd);
    FILE *config = fdopen(config_fd, "w");
    for (int i = 0; i < count; i++) {
        fprintf(config, "%surl = \"http://127.0.0.1:%u/v1/chat/completions\"\n"
                "data-binary = \"@%s\"\nheader = \"Content-Type: application/json\"\n"
                "silent\noutput = \"/dev/null\"\nwrite-out = \"%%{http_code}\\n\"\n",
                i > 0 ? "next\n" : "", port, body_path);
    }
    fclose(config);
    char command[512];
    snprintf(command, sizeof(command),
             "curl -s -m 60 -Z --parallel-immediate --parallel-max %d -K %s 2>/dev/null", parallel,
             config_path);
    test_run(command, output, sizeof(output));
    unlink(body_path);
    unlink(config_path);
    return (int)test_count(output, "200\n");
}

static void resilience_engine(struct test_engine *engine, const char *sections)
{
    char extra[8192];
    snprintf(extra, sizeof(extra),
             "\"admin\": {\"token_env\": \"RM_TEST_ADMIN_TOKEN\"}, %s", sections);
    test_engine_start(engine, 2, extra);
}

static const char resilience_tools[] =
    "\"tools\": {"
    " \"slow\": {\"url\": \"http://127.0.0.1:%u/tools/slow\", \"timeout_ms\": 1000,"
    "  \"breaker\": {\"window\": \"count\", \"window_calls\": 10, \"min_calls\": 4,"
    "   \"failure_percent\": 50, \"open_ms\": 5000, \"probes\": 2},"
    "  \"fallback\": {\"status\": \"unavailable\"}},"
    " \"fast\": {\"url\": \"http://127.0.0.1:%u/tools/fast\"},"
    " \"strict\": {\"url\": \"http://127.0.0.1:%u/tools/strict\", \"timeout_ms\": 300,"
    "  \"breaker\": {\"min_calls\": 2, \"open_ms\": 60000}}}";

static long long resilience_tool_calls(const struct test_mock *mock, const char *tool)
{
    resilience_mock_stats(mock);
    char after[64];
    snprintf(after, sizeof(after), "\"tool_calls\":{");
    char name[64];
    snprintf(name, sizeof(name), "%s", tool);
    long long calls = test_json_number(stats, after, name);
    return calls < 0 ? 0 : calls;
}

/* Six calls to the hanging tool at once time out together; meanwhile another tool and
 * /healthz answer (the reactors are not stalled). */
static void resilience_trip_slow_tool(uint16_t port)
{
    char command[1024];
    char order[] = "/tmp/rm-order-XXXXXX";
    int fd = mkstemp(order);
    cr_assert_geq(fd, 0);
    close(fd);
    snprintf(command, sizeof(command),
             "for i in 1 2 3 4 5 6; do (curl -s -o /dev/null -m 30 -d '{}' "
             "http://127.0.0.1:%u/v1/tools/slow; echo slow >>%s) & done; sleep 0.2; "
             "curl -s -f -o /dev/null -m 30 -d '{\"q\":1}' http://127.0.0.1:%u/v1/tools/fast "
             "&& echo fast >>%s; curl -s -f -o /dev/null -m 30 http://127.0.0.1:%u/healthz "
             "&& echo healthz >>%s; wait; cat %s",
             port, order, port, order, port, order, order);
    cr_assert_eq(test_run(command, output, sizeof(output)), 0);
    unlink(order);
    cr_assert_eq(strncmp(output, "fast\nhealthz\n", 13), 0,
                 "the healthy tool and /healthz must answer while the hanging calls wait: %s",
                 output);
    cr_assert_eq(test_count(output, "slow\n"), 6, "%s", output);
}

Test(resilience, hanging_tool_opens_its_breaker_serves_the_fallback_then_heals)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "--tool slow:hang-rate=1 --max-hang-ms 20000");
    struct test_engine engine;
    char sections[2048];
    snprintf(sections, sizeof(sections), resilience_tools, mock.port, mock.port, mock.port);
    resilience_engine(&engine, sections);
    resilience_trip_slow_tool(engine.port);
    usleep(100000); /* a few reconcile ticks */
    cr_assert_eq(resilience_get(engine.port, "/v1/admin/breakers", RESILIENCE_ADMIN_TOKEN),
                 200, "%s", output);
    cr_assert_not_null(strstr(output, "\"name\":\"slow\",\"state\":\"open\""), "%s", output);
    long long before = resilience_tool_calls(&mock, "slow");
    cr_assert_eq(before, 6, "%s", stats);
    /* Well inside open_ms (5 s) even on a loaded machine: a probe would hang for 1 s. */
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(resilience_post(engine.port, "/v1/tools/slow", "{\"q\":2}"), 200, "%s",
                     output);
        cr_assert_not_null(strstr(output, "\r\n\r\n{\"status\":\"unavailable\"}"), "%s", output);
        cr_assert_not_null(strcasestr(output, "Ringmaster-Tool-Outcome: fallback"), "%s",
                           output);
    }
    cr_assert_eq(resilience_tool_calls(&mock, "slow"), before,
                 "no call may reach the tool while its breaker is open: %s", stats);
    cr_assert_eq(resilience_post(engine.port, "/v1/tools/fast", "{\"q\":3}"), 200, "%s", output);
    /* The tool heals: a new mock on the same port without the hang. */
    uint16_t port = mock.port;
    test_mock_stop(&mock);
    test_mock_start(&mock, port, "");
    usleep(5100000); /* past open_ms: the breaker lets probes through */
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(resilience_post(engine.port, "/v1/tools/slow", "{\"q\":4}"), 200, "%s",
                     output);
        cr_assert_not_null(strcasestr(output, "Ringmaster-Tool-Outcome: ok"), "%s", output);
    }
    cr_assert_eq(resilience_tool_calls(&mock, "slow"), 3, "%s", stats);
    usleep(50000);
    cr_assert_eq(resilience_get(engine.port, "/v1/admin/breakers", RESILIENCE_ADMIN_TOKEN),
                 200);
    cr_assert_not_null(strstr(output, "\"name\":\"slow\",\"state\":\"closed\""), "%s", output);
    cr_assert_eq(resilience_get(engine.port, "/metrics", NULL), 200);
    cr_assert_not_null(strstr(output, "ringmaster_tool_calls_total{tool=\"slow\","
                                      "outcome=\"fallback\"} 10\n"), "%s", output);
    cr_assert_not_null(strstr(output, "ringmaster_tool_calls_total{tool=\"slow\","
                                      "outcome=\"timeout\"} 6\n"), "%s", output);
    cr_assert_not_null(strstr(output, "ringmaster_breaker_transitions_total{kind=\"tool\","
                                      "name=\"slow\",to=\"open\"} 1\n"), "%s", output);
    cr_assert_not_null(strstr(output, "ringmaster_breaker_state{kind=\"tool\",name=\"slow\"} "
                                      "0\n"), "%s", output);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

Test(resilience, open_breaker_without_fallback_short_circuits_with_503)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "--tool strict:error-rate=1");
    struct test_engine engine;
    char sections[2048];
    snprintf(sections, sizeof(sections), resilience_tools, mock.port, mock.port, mock.port);
    resilience_engine(&engine, sections);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(resilience_post(engine.port, "/v1/tools/strict", "{}"), 500, "%s", output);
        cr_assert_not_null(strcasestr(output, "Ringmaster-Tool-Outcome: error"), "%s", output);
    }
    usleep(100000);
    cr_assert_eq(resilience_post(engine.port, "/v1/tools/strict", "{}"), 503, "%s", output);
    cr_assert_not_null(strstr(output, "\"type\":\"circuit_open\""), "%s", output);
    cr_assert_not_null(strcasestr(output, "\r\nRetry-After: "), "%s", output);
    cr_assert_eq(resilience_tool_calls(&mock, "strict"), 2, "%s", stats);
    cr_assert_eq(resilience_post(engine.port, "/v1/tools/nope", "{}"), 404, "%s", output);
    cr_assert_eq(resilience_post(engine.port, "/v1/tools/fast", "[1,2]"), 400, "%s", output);
    cr_assert_eq(resilience_post(engine.port, "/v1/tools/fast", "{bad json"), 400, "%s", output);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

static void resilience_endpoint_engine(struct test_engine *engine, const struct test_mock *mock,
                                       const char *endpoint_fields)
{
    char sections[4096];
    snprintf(sections, sizeof(sections),
             "\"endpoints\": {\"mock\": {\"url\": \"http://127.0.0.1:%u/v1\", %s}}", mock->port,
             endpoint_fields);
    resilience_engine(engine, sections);
}

Test(resilience, concurrency_cap_holds_500_calls_at_20_in_flight_with_no_429)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "--max-concurrency 20 --llm-latency fixed:20");
    struct test_engine engine;
    resilience_endpoint_engine(&engine, &mock,
                               "\"keys\": [{\"name\": \"local\"}], \"max_in_flight\": 20");
    int ok = resilience_chat_burst(engine.port, 500, 500, resilience_chat);
    cr_assert_eq(ok, 500, "every call must complete: %s", output);
    resilience_mock_stats(&mock);
    cr_assert_eq(test_json_number(stats, NULL, "chat_completions"), 500, "%s", stats);
    cr_assert_leq(test_json_number(stats, NULL, "in_flight_peak"), 20, "%s", stats);
    cr_assert_geq(test_json_number(stats, NULL, "in_flight_peak"), 2, "%s", stats);
    cr_assert_eq(test_json_number(stats, "\"rejected_429\"", "total"), 0, "%s", stats);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

/* Per key 600 rpm: 10 tokens a second and a burst of 10, so in any 2 s window a key can
 * send at most 10 + 20 = 30 requests: the mock enforces 31 per fixed 2 s window (one more for
 * a tick's share), so a 429 from it means the engine exceeded a limit. */
Test(resilience, three_keys_share_the_load_within_their_rate_limits)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "--rpm 31 --limit-window-ms 2000");
    struct test_engine engine;
    resilience_endpoint_engine(
        &engine, &mock,
        "\"keys\": [{\"name\": \"a\", \"env\": \"RM_TEST_KEY_A\", \"rpm\": 600},"
        " {\"name\": \"b\", \"env\": \"RM_TEST_KEY_B\", \"rpm\": 600},"
        " {\"name\": \"c\", \"env\": \"RM_TEST_KEY_C\", \"rpm\": 600}]");
    int ok = resilience_chat_burst(engine.port, 120, 120, resilience_chat);
    cr_assert_eq(ok, 120, "nothing may fail: %s", output);
    resilience_mock_stats(&mock);
    cr_assert_eq(test_json_number(stats, "\"rejected_429\"", "total"), 0, "%s", stats);
    const char *keys[] = {"\"sk-a\":{", "\"sk-b\":{", "\"sk-c\":{"};
    long long total = 0;
    for (int i = 0; i < 3; i++) {
        long long requests = test_json_number(stats, keys[i], "requests");
        cr_assert_geq(requests, 24, "each key carries a fair share (%s): %s", keys[i], stats);
        total += requests;
    }
    cr_assert_eq(total, 120, "%s", stats);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

Test(resilience, a_429_storm_on_one_key_pauses_it_and_the_others_carry_the_load)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "--storm-key sk-storm --retry-after 30");
    struct test_engine engine;
    resilience_endpoint_engine(
        &engine, &mock,
        "\"keys\": [{\"name\": \"a\", \"env\": \"RM_TEST_KEY_A\"},"
        " {\"name\": \"storm\", \"env\": \"RM_TEST_KEY_STORM\"},"
        " {\"name\": \"c\", \"env\": \"RM_TEST_KEY_C\"}]");
    int ok = resilience_chat_burst(engine.port, 90, 30, resilience_chat);
    cr_assert_eq(ok, 90, "no request may be lost: %s", output);
    resilience_mock_stats(&mock);
    long long storm = test_json_number(stats, "\"sk-storm\":{", "requests");
    long long refused = test_json_number(stats, "\"rejected_429\"", "total");
    cr_assert_geq(storm, 1, "%s", stats);
    cr_assert_eq(refused, storm, "%s", stats);
    cr_assert_lt(storm, 30, "the paused key must not keep getting traffic: %s", stats);
    cr_assert_eq(test_json_number(stats, "\"sk-a\":{", "requests") +
                     test_json_number(stats, "\"sk-c\":{", "requests"),
                 90, "%s", stats);
    cr_assert_eq(resilience_get(engine.port, "/v1/admin/limits", RESILIENCE_ADMIN_TOKEN), 200);
    const char *storm_key = strstr(output, "\"name\":\"storm\"");
    cr_assert_not_null(storm_key, "%s", output);
    cr_assert_gt(test_json_number(storm_key, NULL, "paused_for_ms"), 20000, "%s", output);
    cr_assert_eq(resilience_get(engine.port, "/metrics", NULL), 200);
    cr_assert_not_null(strstr(output, "ringmaster_llm_requests_total{endpoint=\"mock\","
                                      "key=\"storm\",outcome=\"rate_limited\"}"), "%s", output);
    cr_assert_null(strstr(output, "sk-storm"), "a key's secret must never reach /metrics");
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

Test(resilience, server_errors_are_retried_then_the_fallback_endpoint_answers)
{
    struct test_mock failing, healthy;
    test_mock_start(&failing, 0, "--llm-error-rate 1");
    test_mock_start(&healthy, 0, "");
    struct test_engine engine;
    char sections[2048];
    snprintf(sections, sizeof(sections),
             "\"endpoints\": {"
             " \"primary\": {\"url\": \"http://127.0.0.1:%u/v1\", \"keys\": [{\"name\": \"p\"}],"
             "  \"models\": [\"gpt-mock\"], \"fallbacks\": [\"backup\"],"
             "  \"retry\": {\"max_attempts\": 2, \"base_ms\": 10, \"max_ms\": 50},"
             "  \"breaker\": {\"min_calls\": 100}},"
             " \"backup\": {\"url\": \"http://127.0.0.1:%u/v1\", \"keys\": [{\"name\": \"b\"}],"
             "  \"models\": [\"gpt-backup\"]},"
             " \"lonely\": {\"url\": \"http://127.0.0.1:%u/v1\", \"keys\": [{\"name\": \"l\"}],"
             "  \"models\": [\"gpt-lonely\"],"
             "  \"retry\": {\"max_attempts\": 3, \"base_ms\": 10, \"max_ms\": 50}}}",
             failing.port, healthy.port, failing.port);
    resilience_engine(&engine, sections);
    cr_assert_eq(resilience_post(engine.port, "/v1/chat/completions", resilience_chat), 200,
                 "%s", output);
    cr_assert_not_null(strcasestr(output, "Ringmaster-Endpoint: backup"), "%s", output);
    cr_assert_not_null(strcasestr(output, "Ringmaster-Attempts: 3"), "%s", output);
    cr_assert_not_null(strstr(output, "\"model\":\"gpt-backup\""), "the fallback's model: %s",
                       output);
    resilience_mock_stats(&failing);
    cr_assert_eq(test_json_number(stats, NULL, "chat_completions"), 2, "%s", stats);
    const char lonely[] =
        "{\"model\":\"gpt-lonely\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    cr_assert_eq(resilience_post(engine.port, "/v1/chat/completions", lonely), 502, "%s",
                 output);
    cr_assert_not_null(strstr(output, "3 attempts failed and no fallback endpoint is left"),
                       "%s", output);
    test_engine_stop(&engine);
    test_mock_stop(&failing);
    test_mock_stop(&healthy);
}

Test(resilience, bad_requests_full_queues_and_the_admin_token)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "--llm-latency fixed:1000");
    struct test_engine engine;
    resilience_endpoint_engine(&engine, &mock,
                               "\"keys\": [{\"name\": \"k\"}], \"models\": [\"gpt-mock\"],"
                               " \"max_in_flight\": 1, \"max_queue\": 2");
    cr_assert_eq(resilience_post(engine.port, "/v1/chat/completions", "{nope"), 400, "%s",
                 output);
    cr_assert_eq(resilience_post(engine.port, "/v1/chat/completions",
                                 "{\"model\":\"gpt-mock\",\"messages\":[]}"), 400, "%s", output);
    cr_assert_eq(resilience_post(engine.port, "/v1/chat/completions",
                                 "{\"model\":\"other\",\"messages\":[{\"role\":\"user\"}]}"),
                 404, "%s", output);
    int ok = resilience_chat_burst(engine.port, 8, 8, resilience_chat);
    cr_assert_geq(ok, 1, "%s", output);
    cr_assert_geq(test_count(output, "429\n"), 1, "a full queue answers 429: %s", output);
    cr_assert_eq(ok + (int)test_count(output, "429\n"), 8, "%s", output);
    cr_assert_eq(resilience_get(engine.port, "/v1/admin/limits", NULL), 401, "%s", output);
    cr_assert_eq(resilience_get(engine.port, "/v1/admin/limits", "wrong"), 401, "%s", output);
    cr_assert_eq(resilience_get(engine.port, "/v1/admin/nothing", RESILIENCE_ADMIN_TOKEN), 404);
    cr_assert_eq(resilience_get(engine.port, "/v1/admin/queues", RESILIENCE_ADMIN_TOKEN), 200);
    cr_assert_not_null(strstr(output, "\"max_in_flight\":1"), "%s", output);
    cr_assert_eq(resilience_get(engine.port, "/metrics", NULL), 200);
    cr_assert_null(strstr(output, "ringmaster_llm_rejected_total{endpoint=\"mock\"} 0\n"),
                   "%s", output);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

/* Both reactors take calls, share one exact in-flight cap and spend three rate-limited keys
 * whose shares are reconciled every tick: run under ThreadSanitizer by make test-tsan. */
TestSuite(crosscore_resilience, .init = resilience_init, .timeout = 240);

Test(crosscore_resilience, both_cores_share_the_cap_and_the_key_budgets)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "--max-concurrency 5 --llm-latency fixed:5");
    struct test_engine engine;
    resilience_endpoint_engine(
        &engine, &mock,
        "\"max_in_flight\": 5,"
        " \"keys\": [{\"name\": \"a\", \"env\": \"RM_TEST_KEY_A\", \"rpm\": 6000},"
        " {\"name\": \"b\", \"env\": \"RM_TEST_KEY_B\", \"rpm\": 6000, \"tpm\": 6000000},"
        " {\"name\": \"c\", \"env\": \"RM_TEST_KEY_C\", \"tpm\": 6000000}]");
    int ok = resilience_chat_burst(engine.port, 200, 100, resilience_chat);
    cr_assert_eq(ok, 200, "every call must complete: %s", output);
    resilience_mock_stats(&mock);
    cr_assert_leq(test_json_number(stats, NULL, "in_flight_peak"), 5, "%s", stats);
    cr_assert_eq(test_json_number(stats, "\"rejected_429\"", "total"), 0, "%s", stats);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}
