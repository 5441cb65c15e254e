/* Tool retries end to end: an embedded engine, ringmaster-mock as the tools (its seeded
 * error and hang rates), curl as the client. The mock's own call counts are the witness of
 * how many attempts reached the tool. */

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support.h"

#define TOOL_RETRY_OUTPUT_MAX (256 * 1024)

static char output[TOOL_RETRY_OUTPUT_MAX];
static char stats[65536];

TestSuite(tool_retry, .timeout = 120);

static int tool_retry_post(uint16_t port, const char *tool)
{
    char command[512];
    snprintf(command, sizeof(command),
             "curl -s -i -m 30 -H 'Content-Type: application/json' -d '{\"q\":1}' "
             "http://127.0.0.1:%u/v1/tools/%s",
             port, tool);
    cr_assert_eq(test_run(command, output, sizeof(output)), 0, "curl failed: %s", command);
    return test_status(output);
}

static long long tool_retry_mock_calls(const struct test_mock *mock, const char *tool)
{
    char command[256];
    snprintf(command, sizeof(command), "curl -s -m 10 http://127.0.0.1:%u/mock/stats",
             mock->port);
    cr_assert_eq(test_run(command, stats, sizeof(stats)), 0);
    long long calls = test_json_number(stats, "\"tool_calls\":{", tool);
    return calls < 0 ? 0 : calls;
}

static long long tool_retry_metric(uint16_t port, const char *series)
{
    char command[256];
    snprintf(command, sizeof(command), "curl -s -m 10 http://127.0.0.1:%u/metrics", port);
    cr_assert_eq(test_run(command, output, sizeof(output)), 0);
    const char *at = strstr(output, series);
    return at != NULL ? strtoll(at + strlen(series), NULL, 10) : -1;
}

/* The breaker would open at these failure rates; min_calls keeps it out of the way. */
static const char tool_retry_sections[] =
    "\"tools\": {"
    " \"flaky\": {\"url\": \"http://127.0.0.1:%u/tools/flaky\", \"timeout_ms\": 200,"
    "  \"retry\": {\"max_attempts\": 10, \"base_ms\": 1, \"max_ms\": 4},"
    "  \"breaker\": {\"min_calls\": 100000}},"
    " \"down\": {\"url\": \"http://127.0.0.1:%u/tools/down\","
    "  \"retry\": {\"max_attempts\": 3, \"base_ms\": 1, \"max_ms\": 4},"
    "  \"breaker\": {\"min_calls\": 100000},"
    "  \"fallback\": {\"status\": \"unavailable\"}, \"fallback_on_error\": true},"
    " \"once\": {\"url\": \"http://127.0.0.1:%u/tools/once\","
    "  \"breaker\": {\"min_calls\": 100000}}}";

static void tool_retry_start(struct test_mock *mock, struct test_engine *engine)
{
    test_mock_start(mock, 0, "--seed 7 --tool flaky:error-rate=0.3,hang-rate=0.2 "
                             "--tool down:error-rate=1 --tool once:error-rate=1 "
                             "--max-hang-ms 5000");
    char sections[2048];
    snprintf(sections, sizeof(sections), tool_retry_sections, mock->port, mock->port,
             mock->port);
    test_engine_start(engine, 2, sections);
}

Test(tool_retry, failed_and_hanging_attempts_are_retried_until_one_answers)
{
    struct test_mock mock;
    struct test_engine engine;
    tool_retry_start(&mock, &engine);
    const int calls = 40;
    for (int i = 0; i < calls; i++) {
        cr_assert_eq(tool_retry_post(engine.port, "flaky"), 200, "%s", output);
        cr_assert_not_null(strcasestr(output, "Ringmaster-Tool-Outcome: ok"), "%s", output);
    }
    long long attempts = tool_retry_mock_calls(&mock, "flaky");
    /* Half the attempts fail: 40 calls without a retry would be ~20 failures. */
    cr_assert_gt(attempts, calls, "no attempt was retried: %s", stats);
    cr_assert_eq(tool_retry_metric(engine.port, "ringmaster_tool_retries_total{tool=\"flaky\"} "),
                 attempts - calls, "every attempt after the first is counted");
    cr_assert_eq(tool_retry_metric(engine.port, "ringmaster_tool_calls_total{tool=\"flaky\","
                                                 "outcome=\"ok\"} "),
                 calls);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

Test(tool_retry, the_last_failure_answers_with_the_fallback_when_fallback_on_error)
{
    struct test_mock mock;
    struct test_engine engine;
    tool_retry_start(&mock, &engine);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(tool_retry_post(engine.port, "down"), 200, "%s", output);
        cr_assert_not_null(strstr(output, "\r\n\r\n{\"status\":\"unavailable\"}"), "%s", output);
        cr_assert_not_null(strcasestr(output, "Ringmaster-Tool-Outcome: fallback"), "%s",
                           output);
    }
    cr_assert_eq(tool_retry_mock_calls(&mock, "down"), 15, "3 attempts per call: %s", stats);
    cr_assert_eq(tool_retry_metric(engine.port, "ringmaster_tool_calls_total{tool=\"down\","
                                                 "outcome=\"fallback\"} "),
                 5);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

Test(tool_retry, without_a_retry_policy_a_failure_is_not_retried)
{
    struct test_mock mock;
    struct test_engine engine;
    tool_retry_start(&mock, &engine);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(tool_retry_post(engine.port, "once"), 500, "%s", output);
        cr_assert_not_null(strcasestr(output, "Ringmaster-Tool-Outcome: error"), "%s", output);
    }
    cr_assert_eq(tool_retry_mock_calls(&mock, "once"), 3, "%s", stats);
    cr_assert_eq(tool_retry_metric(engine.port, "ringmaster_tool_retries_total{tool=\"once\"} "),
                 0);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}
