/* The agent runtime end to end: invocations over HTTP (curl) against an engine whose LLM and
 * tools are ringmaster-mock; the mock's counters witness every call that reached it. */

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/ringmaster.h"
#include "tests/support.h"

#define INVOKE_OUTPUT_MAX (1024 * 1024)

static char output[INVOKE_OUTPUT_MAX];
static char stats[65536];

TestSuite(invocations, .timeout = 180);

/* The agents every test uses, wired to the mock on `port`. */
static void invoke_sections(char *out, size_t size, unsigned port, const char *agent_extra)
{
    snprintf(out, size,
             "\"endpoints\": {\"mock\": {\"url\": \"http://127.0.0.1:%u/v1\","
             " \"keys\": [{\"name\": \"local\"}], \"retry\": {\"max_attempts\": 1}}},"
             "\"tools\": {"
             " \"weather\": {\"url\": \"http://127.0.0.1:%u/tools/weather\","
             "  \"description\": \"The weather in a city\", \"parameters\": {\"type\": \"object\","
             "  \"properties\": {\"city\": {\"type\": \"string\"}}}},"
             " \"research\": {\"kind\": \"agent\", \"agent\": \"researcher\","
             "  \"description\": \"Ask the research agent\"}},"
             "\"agents\": {"
             " \"assistant\": {\"endpoint\": \"mock\", \"model\": \"gpt-mock\","
             "  \"system\": \"You are helpful.\", \"tools\": [\"weather\"] %s},"
             " \"boss\": {\"endpoint\": \"mock\", \"model\": \"gpt-mock\", \"tools\": [\"research\"]},"
             " \"researcher\": {\"endpoint\": \"mock\", \"model\": \"gpt-mock\"}}",
             port, port, agent_extra);
}

static void invoke_start(struct test_engine *engine, struct test_mock *mock, const char *flags,
                         const char *agent_extra)
{
    test_mock_start(mock, 0, flags);
    char sections[8192];
    invoke_sections(sections, sizeof(sections), mock->port, agent_extra);
    test_engine_start(engine, 2, sections);
}

static int invoke_post(uint16_t port, const char *agent, const char *body, const char *headers)
{
    char command[4096];
    snprintf(command, sizeof(command),
             "curl -s -i -m 60 %s -H 'Content-Type: application/json' --data-binary '%s' "
             "http://127.0.0.1:%u/v1/agents/%s/invocations",
             headers, body, port, agent);
    cr_assert_eq(test_run(command, output, sizeof(output)), 0, "%s", command);
    return test_status(output);
}

static int invoke_request(uint16_t port, const char *method, const char *path)
{
    char command[512];
    snprintf(command, sizeof(command), "curl -s -i -m 60 -X %s http://127.0.0.1:%u%s", method,
             port, path);
    cr_assert_eq(test_run(command, output, sizeof(output)), 0);
    return test_status(output);
}

static void invoke_mock_stats(uint16_t port)
{
    char command[256];
    snprintf(command, sizeof(command), "curl -s -m 10 http://127.0.0.1:%u/mock/stats", port);
    cr_assert_eq(test_run(command, stats, sizeof(stats)), 0);
}

/* The "id" of the JSON answer in output. */
static void invoke_id(char id[17])
{
    const char *at = strstr(output, "\"id\":\"");
    cr_assert_not_null(at, "%s", output);
    memcpy(id, at + 6, 16);
    id[16] = '\0';
}

/* Polls GET until the invocation is no longer queued or running (30 s at most). */
static void invoke_await(uint16_t port, const char *id)
{
    char path[64];
    snprintf(path, sizeof(path), "/v1/invocations/%.16s", id);
    for (int i = 0; i < 600; i++) {
        cr_assert_eq(invoke_request(port, "GET", path), 200, "%s", output);
        if (strstr(output, "\"status\":\"queued\"") == NULL &&
            strstr(output, "\"status\":\"running\"") == NULL) {
            return;
        }
        usleep(50000);
    }
    cr_assert_fail("invocation %s did not finish: %s", id, output);
}

Test(invocations, three_steps_llm_tool_llm_with_wait_and_get)
{
    struct test_engine engine;
    struct test_mock mock;
    invoke_start(&engine, &mock, "", "");
    cr_assert_eq(invoke_post(engine.port, "assistant",
                             "{\"input\": \"weather in Paris?\", \"wait\": 30}", ""), 200, "%s",
                 output);
    cr_assert_not_null(strstr(output, "\"status\":\"completed\""), "%s", output);
    cr_assert_eq(test_count(output, "\"kind\":\"llm\""), 2, "%s", output);
    cr_assert_eq(test_count(output, "\"kind\":\"tool\",\"target\":\"weather\""), 1, "%s", output);
    cr_assert_not_null(strstr(output, "\"result\":\"This is the mock"), "%s", output);
    char id[17];
    invoke_id(id);
    char path[64];
    snprintf(path, sizeof(path), "/v1/invocations/%.16s", id);
    cr_assert_eq(invoke_request(engine.port, "GET", path), 200, "%s", output);
    cr_assert_not_null(strstr(output, "\"status\":\"completed\""), "%s", output);
    invoke_mock_stats(mock.port);
    cr_assert_eq(test_json_number(stats, NULL, "chat_completions"), 2, "%s", stats);
    cr_assert_eq(test_json_number(stats, NULL, "tools"), 1, "%s", stats);
    cr_assert_eq(invoke_request(engine.port, "GET", "/metrics"), 200);
    cr_assert_not_null(strstr(output, "ringmaster_invocations_total{agent=\"assistant\","
                                      "outcome=\"completed\"} 1\n"), "%s", output);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

Test(invocations, parallel_tool_calls_and_a_sub_agent)
{
    struct test_engine engine;
    struct test_mock mock;
    invoke_start(&engine, &mock, "--tool-calls 3", "");
    cr_assert_eq(invoke_post(engine.port, "assistant", "{\"input\": \"three cities\", "
                             "\"wait\": 30}", ""), 200, "%s", output);
    cr_assert_eq(test_count(output, "\"kind\":\"tool\",\"target\":\"weather\""), 3, "%s",
                 output);
    invoke_mock_stats(mock.port);
    cr_assert_eq(test_json_number(stats, NULL, "tools"), 3, "%s", stats);
    cr_assert_eq(invoke_post(engine.port, "boss", "{\"input\": \"find out\", \"wait\": 30}", ""),
                 200, "%s", output);
    cr_assert_not_null(strstr(output, "\"status\":\"completed\""), "%s", output);
    cr_assert_eq(test_count(output, "\"kind\":\"tool\",\"target\":\"research\""), 3, "%s",
                 output);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

Test(invocations, max_steps_and_deadline_fail_with_a_clear_error)
{
    struct test_engine engine;
    struct test_mock mock;
    invoke_start(&engine, &mock, "--tool weather:latency=fixed:3000",
                 ", \"max_steps\": 1, \"deadline_ms\": 1000");
    cr_assert_eq(invoke_post(engine.port, "assistant", "{\"input\": \"x\", \"wait\": 30}", ""),
                 200, "%s", output);
    cr_assert_not_null(strstr(output, "\"status\":\"failed\""), "%s", output);
    cr_assert_not_null(strstr(output, "deadline"), "%s", output);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
    invoke_start(&engine, &mock, "", ", \"max_steps\": 1");
    cr_assert_eq(invoke_post(engine.port, "assistant", "{\"input\": \"x\", \"wait\": 30}", ""),
                 200, "%s", output);
    cr_assert_not_null(strstr(output, "\"status\":\"failed\""), "%s", output);
    cr_assert_not_null(strstr(output, "max_steps (1) reached"), "%s", output);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

Test(invocations, cancel_a_running_invocation)
{
    struct test_engine engine;
    struct test_mock mock;
    invoke_start(&engine, &mock, "--llm-latency fixed:5000", "");
    cr_assert_eq(invoke_post(engine.port, "assistant", "{\"input\": \"slow\"}", ""), 202, "%s",
                 output);
    char id[17];
    invoke_id(id);
    usleep(200000);
    char path[64];
    snprintf(path, sizeof(path), "/v1/invocations/%.16s", id);
    cr_assert_eq(invoke_request(engine.port, "DELETE", path), 200, "%s", output);
    cr_assert_not_null(strstr(output, "\"status\":\"cancelled\""), "%s", output);
    cr_assert_eq(invoke_request(engine.port, "DELETE", path), 409, "%s", output);
    cr_assert_eq(invoke_request(engine.port, "GET", "/v1/invocations/0123456789abcdef"), 404);
    cr_assert_eq(invoke_request(engine.port, "GET", "/v1/invocations/nothex"), 404);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

Test(invocations, bad_input_and_unknown_agents)
{
    struct test_engine engine;
    struct test_mock mock;
    invoke_start(&engine, &mock, "", "");
    cr_assert_eq(invoke_post(engine.port, "nobody", "{\"input\": 1}", ""), 404, "%s", output);
    cr_assert_eq(invoke_post(engine.port, "assistant", "{\"inputs\": 1}", ""), 400, "%s", output);
    cr_assert_eq(invoke_post(engine.port, "assistant", "[1]", ""), 400, "%s", output);
    cr_assert_eq(invoke_post(engine.port, "assistant", "{\"input\": 1, \"wait\": -1}", ""), 400);
    cr_assert_eq(invoke_post(engine.port, "assistant", "{\"input\": 1, \"session\": \"a b\"}",
                             ""), 400, "%s", output);
    cr_assert_eq(invoke_request(engine.port, "GET", "/v1/agents/assistant/invocations"), 405);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

Test(invocations, the_same_idempotency_key_gives_the_same_invocation)
{
    struct test_engine engine;
    struct test_mock mock;
    invoke_start(&engine, &mock, "", "");
    const char *key = "-H 'Idempotency-Key: order-42'";
    cr_assert_eq(invoke_post(engine.port, "assistant", "{\"input\": \"x\", \"wait\": 30}", key),
                 200, "%s", output);
    char first[17];
    invoke_id(first);
    cr_assert_eq(invoke_post(engine.port, "assistant", "{\"input\": \"x\", \"wait\": 30}", key),
                 200, "%s", output);
    char second[17];
    invoke_id(second);
    cr_assert_str_eq(first, second);
    invoke_mock_stats(mock.port);
    cr_assert_eq(test_json_number(stats, NULL, "chat_completions"), 2, "one run only: %s",
                 stats);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

Test(invocations, a_full_queue_answers_429_and_loses_nothing_accepted)
{
    struct test_engine engine;
    struct test_mock mock;
    invoke_start(&engine, &mock, "--llm-latency fixed:300",
                 ", \"max_concurrent\": 1, \"max_queue\": 2");
    char ids[8][17];
    int accepted = 0, refused = 0;
    for (int i = 0; i < 8; i++) {
        int status = invoke_post(engine.port, "assistant", "{\"input\": \"q\"}", "");
        if (status == 202) {
            invoke_id(ids[accepted++]);
        } else {
            cr_assert_eq(status, 429, "%s", output);
            cr_assert_not_null(strcasestr(output, "\r\nRetry-After: "), "%s", output);
            refused++;
        }
    }
    cr_assert_geq(accepted, 3, "one running and two queued at least");
    cr_assert_geq(refused, 1);
    for (int i = 0; i < accepted; i++) {
        invoke_await(engine.port, ids[i]);
        cr_assert_not_null(strstr(output, "\"status\":\"completed\""), "%s", output);
    }
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

Test(invocations, fifty_concurrent_invocations_on_one_session_keep_every_message_once)
{
    struct test_engine engine;
    struct test_mock mock;
    invoke_start(&engine, &mock, "", "");
    char command[1024];
    snprintf(command, sizeof(command),
             "seq 1 50 | xargs -P 50 -I N curl -s -o /dev/null -w '%%{http_code}\\n' -m 120 "
             "-H 'Content-Type: application/json' --data-binary "
             "'{\"input\": \"message-N-end\", \"session\": \"shared\", \"wait\": 100}' "
             "http://127.0.0.1:%u/v1/agents/assistant/invocations",
             engine.port);
    cr_assert_eq(test_run(command, output, sizeof(output)), 0);
    cr_assert_eq(test_count(output, "200\n"), 50, "%s", output);
    cr_assert_eq(invoke_request(engine.port, "GET", "/v1/state/sessions/assistant%2Fshared"),
                 200);
    for (int i = 1; i <= 50; i++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "\"content\":\"message-%d-end\"", i);
        cr_assert_eq(test_count(output, needle), 1, "message %d must be in the history once",
                     i);
    }
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

/* A tool of kind "c": the embedding program's function, registered before the start. */
static int invoke_c_lookup(void *context, const char *arguments, size_t length, char **result,
                           size_t *result_length)
{
    int *calls = context;
    __atomic_add_fetch(calls, 1, __ATOMIC_RELAXED);
    char text[256];
    int size = snprintf(text, sizeof(text), "{\"looked_up\": %.*s}", (int)length, arguments);
    *result = malloc((size_t)size + 1);
    memcpy(*result, text, (size_t)size + 1);
    *result_length = (size_t)size;
    return 0;
}

Test(invocations, a_c_tool_registered_through_the_embedding_api)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "");
    char data_dir[] = "/tmp/rm-ctool-XXXXXX";
    cr_assert_not_null(mkdtemp(data_dir));
    char json[2048];
    snprintf(json, sizeof(json),
             "{\"listen\": \"127.0.0.1:0\", \"threads\": 2, \"data_dir\": \"%s\","
             " \"log\": {\"level\": \"warn\"},"
             " \"endpoints\": {\"mock\": {\"url\": \"http://127.0.0.1:%u/v1\","
             "  \"keys\": [{\"name\": \"local\"}]}},"
             " \"tools\": {\"lookup\": {\"kind\": \"c\"}, \"unregistered\": {\"kind\": \"c\"}},"
             " \"agents\": {\"a\": {\"endpoint\": \"mock\", \"model\": \"m\","
             "  \"tools\": [\"lookup\"]}}}",
             data_dir, mock.port);
    struct rm_engine *engine = NULL;
    char err[512] = "";
    cr_assert_eq(rm_engine_create_json(json, &engine, err, sizeof(err)), 0, "%s", err);
    static int calls;
    cr_assert_eq(rm_engine_register_tool(engine, "lookup", invoke_c_lookup, &calls), 0);
    cr_assert_eq(rm_engine_register_tool(engine, "nothing", invoke_c_lookup, &calls), -ENOENT);
    cr_assert_eq(rm_engine_start(engine, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(invoke_post(rm_engine_port(engine), "a", "{\"input\": \"x\", \"wait\": 30}",
                             ""), 200, "%s", output);
    cr_assert_not_null(strstr(output, "\"kind\":\"tool\",\"target\":\"lookup\""), "%s",
                       output);
    cr_assert_not_null(strstr(output, "\"status\":\"completed\""), "%s", output);
    cr_assert_eq(__atomic_load_n(&calls, __ATOMIC_RELAXED), 1);
    rm_engine_stop(engine);
    rm_engine_wait(engine);
    rm_engine_destroy(engine);
    test_mock_stop(&mock);
    char command[128];
    snprintf(command, sizeof(command), "rm -rf '%s'", data_dir);
    cr_assert_eq(system(command), 0);
}

/* Orders cross between the reactors (a session's owner is rarely the accepting core), the
 * agents' engine-wide counters are shared, and both cores run invocations: under TSan. */
TestSuite(crosscore_invocations, .timeout = 240);

Test(crosscore_invocations, sessions_owned_by_both_cores_take_orders_from_both)
{
    struct test_engine engine;
    struct test_mock mock;
    invoke_start(&engine, &mock, "", ", \"max_concurrent\": 4");
    char command[1024];
    snprintf(command, sizeof(command),
             "seq 1 40 | xargs -P 20 -I N sh -c 'curl -s -o /dev/null -w \"%%{http_code}\\n\" "
             "-m 120 --data-binary \"{\\\"input\\\": \\\"q N\\\", \\\"session\\\": "
             "\\\"s$((N %% 8))\\\", \\\"wait\\\": 100}\" "
             "http://127.0.0.1:%u/v1/agents/assistant/invocations'",
             engine.port);
    cr_assert_eq(test_run(command, output, sizeof(output)), 0);
    cr_assert_eq(test_count(output, "200\n"), 40, "%s", output);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}
