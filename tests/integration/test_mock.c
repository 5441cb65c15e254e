/* ringmaster-mock, the stand-in LLM and tools, driven by a real client (curl): the
 * tool-calling conversation, SSE, the limits it enforces, injected faults and its counters.
 * Every test starts its own mock on a free port and stops (and waits for) it. */

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support.h"

#define MOCK_TEST_OUTPUT_MAX 65536

static char output[MOCK_TEST_OUTPUT_MAX];

static const char mock_tools_body[] =
    "{\"model\":\"gpt-mock\",\"messages\":[{\"role\":\"user\",\"content\":\"weather in Paris\"}],"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"weather\",\"parameters\":"
    "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
    "\"days\":{\"type\":\"integer\"}}}}}]";

/* POSTs body to path with curl (-i: status line and headers kept); returns curl's status. */
static int mock_post(const struct test_mock *process, const char *path, const char *key,
                     const char *body)
{
    char command[4096];
    snprintf(command, sizeof(command),
             "curl -s -i -m 10 -H 'Content-Type: application/json' %s%s%s "
             "--data-binary '%s' http://127.0.0.1:%u%s",
             key != NULL ? "-H 'Authorization: Bearer " : "", key != NULL ? key : "",
             key != NULL ? "'" : "", body, process->port, path);
    return test_run(command, output, sizeof(output));
}

static void mock_get_stats(const struct test_mock *process)
{
    char command[256];
    snprintf(command, sizeof(command), "curl -s -m 10 http://127.0.0.1:%u/mock/stats",
             process->port);
    cr_assert_eq(test_run(command, output, sizeof(output)), 0);
}

Test(mock_llm, tool_calls_first_then_final_answer_after_a_tool_message)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "");
    char body[2048];
    snprintf(body, sizeof(body), "%s}", mock_tools_body);
    cr_assert_eq(mock_post(&mock, "/v1/chat/completions", "k1", body), 0);
    cr_assert_eq(test_status(output), 200, "%s", output);
    cr_assert_not_null(strstr(output, "\"finish_reason\":\"tool_calls\""), "%s", output);
    cr_assert_not_null(strstr(output, "\"name\":\"weather\""), "%s", output);
    cr_assert_not_null(strstr(output, "\\\"city\\\":\\\"weather in Paris\\\""), "%s", output);
    cr_assert_not_null(strstr(output, "\\\"days\\\":1"), "%s", output);
    cr_assert_not_null(strstr(output, "\"prompt_tokens\":"), "%s", output);
    cr_assert_not_null(strstr(output, "\"id\":\"chatcmpl-"), "%s", output);
    const char final[] =
        "{\"model\":\"gpt-mock\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":"
        "\"function\",\"function\":{\"name\":\"weather\",\"arguments\":\"{}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"sunny\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"weather\"}}]}";
    cr_assert_eq(mock_post(&mock, "/v1/chat/completions", "k1", final), 0);
    cr_assert_eq(test_status(output), 200, "%s", output);
    cr_assert_not_null(strstr(output, "\"finish_reason\":\"stop\""), "%s", output);
    cr_assert_not_null(strstr(output, "\"content\":\"This is the mock"), "%s", output);
    cr_assert_null(strstr(output, "\"tool_calls\""), "%s", output);
    cr_assert_eq(mock_post(&mock, "/v1/chat/completions", "k1", "{\"model\":1}"), 0);
    cr_assert_eq(test_status(output), 400, "%s", output);
    test_mock_stop(&mock);
}

Test(mock_llm, stream_true_answers_server_sent_events_ending_in_done)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "--completion-tokens 64");
    const char body[] = "{\"model\":\"gpt-mock\",\"stream\":true,\"stream_options\":"
                        "{\"include_usage\":true},\"messages\":[{\"role\":\"user\","
                        "\"content\":\"hi\"}]}";
    cr_assert_eq(mock_post(&mock, "/v1/chat/completions", NULL, body), 0);
    cr_assert_eq(test_status(output), 200, "%s", output);
    cr_assert_not_null(strcasestr(output, "content-type: text/event-stream"), "%s", output);
    cr_assert_geq(test_count(output, "data: {\"id\":\"chatcmpl-"), 5, "%s", output);
    cr_assert_geq(test_count(output, "\"delta\":{\"content\":"), 3, "%s", output);
    cr_assert_not_null(strstr(output, "\"finish_reason\":\"stop\""), "%s", output);
    cr_assert_not_null(strstr(output, "\"usage\":{\"prompt_tokens\":"), "%s", output);
    size_t length = strlen(output);
    cr_assert_geq(length, 14);
    cr_assert_str_eq(output + length - 14, "data: [DONE]\n\n", "%s", output);
    test_mock_stop(&mock);
}

Test(mock_limits, concurrency_beyond_the_limit_gets_429_with_retry_after)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "--llm-latency fixed:1500 --max-concurrency 2 --retry-after 3");
    char command[4096];
    const char body[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    snprintf(command, sizeof(command),
             "hold() { curl -s -o /dev/null -w '%%{http_code}\\n' -m 10 --data-binary '%s' "
             "http://127.0.0.1:%u/v1/chat/completions; }; hold & hold & sleep 0.5; "
             "curl -s -i -m 10 --data-binary '%s' http://127.0.0.1:%u/v1/chat/completions; "
             "echo; wait",
             body, mock.port, body, mock.port);
    cr_assert_eq(test_run(command, output, sizeof(output)), 0);
    cr_assert_eq(test_status(output), 429, "%s", output);
    cr_assert_not_null(strcasestr(output, "\r\nretry-after: 3\r\n"), "%s", output);
    cr_assert_not_null(strstr(output, "\"type\":\"rate_limit_error\""), "%s", output);
    cr_assert_not_null(strstr(output, "\"code\":\"rate_limit_exceeded\""), "%s", output);
    cr_assert_eq(test_count(output, "\n200"), 2, "%s", output);
    mock_get_stats(&mock);
    cr_assert_not_null(strstr(output, "\"concurrency\":1,"), "%s", output);
    cr_assert_not_null(strstr(output, "\"in_flight\":0"), "%s", output);
    test_mock_stop(&mock);
}

Test(mock_limits, requests_per_minute_headers_count_down_then_429)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "--rpm 3 --tpm 1000000 --limit-window-ms 600000");
    const char body[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    const char *remaining[] = {"2", "1", "0"};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(mock_post(&mock, "/v1/chat/completions", "rk", body), 0);
        cr_assert_eq(test_status(output), 200, "%s", output);
        char header[96];
        snprintf(header, sizeof(header), "\r\nx-ratelimit-remaining-requests: %s\r\n",
                 remaining[i]);
        cr_assert_not_null(strcasestr(output, header), "%s", output);
        cr_assert_not_null(strcasestr(output, "\r\nx-ratelimit-limit-requests: 3\r\n"));
        cr_assert_not_null(strcasestr(output, "\r\nx-ratelimit-reset-requests: "));
        cr_assert_not_null(strcasestr(output, "\r\nx-ratelimit-limit-tokens: 1000000\r\n"));
        cr_assert_not_null(strcasestr(output, "\r\nx-ratelimit-remaining-tokens: "));
    }
    cr_assert_eq(mock_post(&mock, "/v1/chat/completions", "rk", body), 0);
    cr_assert_eq(test_status(output), 429, "%s", output);
    cr_assert_not_null(strcasestr(output, "\r\nretry-after: "), "%s", output);
    cr_assert_not_null(strstr(output, "\"code\":\"rate_limit_exceeded\""), "%s", output);
    cr_assert_eq(mock_post(&mock, "/v1/chat/completions", "other-key", body), 0);
    cr_assert_eq(test_status(output), 200, "another key has its own budget: %s", output);
    test_mock_stop(&mock);
}

Test(mock_faults, error_rate_one_answers_500_for_llm_and_tools)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "--llm-error-rate 1 --tool-error-rate 1 --seed 7");
    const char body[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(mock_post(&mock, "/v1/chat/completions", NULL, body), 0);
        cr_assert_eq(test_status(output), 500, "%s", output);
        cr_assert_not_null(strstr(output, "\"type\":\"server_error\""), "%s", output);
        cr_assert_eq(mock_post(&mock, "/tools/search", NULL, "{\"q\":1}"), 0);
        cr_assert_eq(test_status(output), 500, "%s", output);
    }
    mock_get_stats(&mock);
    cr_assert_not_null(strstr(output, "\"errors_injected\":{\"llm\":3,\"tools\":3}"), "%s",
                       output);
    test_mock_stop(&mock);
}

Test(mock_faults, hang_rate_one_holds_until_the_client_times_out)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "--llm-hang-rate 1 --max-hang-ms 20000 --tool fast:latency=fixed:0");
    char command[1024];
    snprintf(command, sizeof(command),
             "curl -s -o /dev/null -w '%%{http_code}' -m 1 --data-binary "
             "'{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}' "
             "http://127.0.0.1:%u/v1/chat/completions",
             mock.port);
    cr_assert_eq(test_run(command, output, sizeof(output)), 28, "curl must time out: %s",
                 output);
    cr_assert_eq(mock_post(&mock, "/tools/fast", NULL, "{\"q\":1}"), 0);
    cr_assert_eq(test_status(output), 200, "tools do not hang: %s", output);
    cr_assert_not_null(strstr(output, "\"arguments\":{\"q\":1}"), "%s", output);
    cr_assert_not_null(strstr(output, "\"result\":"), "%s", output);
    mock_get_stats(&mock);
    cr_assert_not_null(strstr(output, "\"hangs\":{\"llm\":1,\"tools\":0}"), "%s", output);
    test_mock_stop(&mock);
}

Test(mock_stats, counts_per_api_key_and_tool_and_reset_zeroes_them)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "");
    const char body[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    cr_assert_eq(mock_post(&mock, "/v1/chat/completions", "alpha", body), 0);
    cr_assert_eq(mock_post(&mock, "/v1/chat/completions", "alpha", body), 0);
    cr_assert_eq(mock_post(&mock, "/v1/chat/completions", "beta", body), 0);
    cr_assert_eq(mock_post(&mock, "/tools/search", NULL, "{}"), 0);
    cr_assert_eq(mock_post(&mock, "/tools/search", NULL, "{}"), 0);
    cr_assert_eq(mock_post(&mock, "/tools/fetch", NULL, "{}"), 0);
    mock_get_stats(&mock);
    cr_assert_not_null(strstr(output, "\"chat_completions\":3,\"tools\":3"), "%s", output);
    cr_assert_not_null(strstr(output, "\"alpha\":{\"requests\":2,\"tokens\":"), "%s", output);
    cr_assert_not_null(strstr(output, "\"beta\":{\"requests\":1,\"tokens\":"), "%s", output);
    cr_assert_not_null(strstr(output, "\"search\":2"), "%s", output);
    cr_assert_not_null(strstr(output, "\"fetch\":1"), "%s", output);
    cr_assert_not_null(strstr(output, "\"final\":3"), "%s", output);
    cr_assert_eq(mock_post(&mock, "/mock/reset", NULL, ""), 0);
    cr_assert_eq(test_status(output), 200, "%s", output);
    mock_get_stats(&mock);
    cr_assert_not_null(strstr(output, "\"chat_completions\":0,\"tools\":0"), "%s", output);
    cr_assert_not_null(strstr(output, "\"api_keys\":{}"), "%s", output);
    cr_assert_not_null(strstr(output, "\"tool_calls\":{}"), "%s", output);
    cr_assert_not_null(strstr(output, "\"tokens\":{\"prompt\":0,"), "%s", output);
    test_mock_stop(&mock);
}
