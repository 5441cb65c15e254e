/* The agent's wire format: request bodies (system prompt, history, tools, params), tool
 * definitions from the config, answers parsed from untrusted bytes (every accepted shape and
 * every error), and the tool-result and user message helpers. */

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/agent_messages.h"
#include "core/alloc.h"

static char test_agent_messages_err[AGENT_REPLY_ERROR_MAX];

/* The tests make jansson values of their own: route them through our allocator too. */
__attribute__((constructor)) static void test_agent_messages_init(void) { config_json_init(); }

static int test_agent_messages_parse(const char *body, struct agent_reply *reply)
{
    memset(test_agent_messages_err, 0, sizeof(test_agent_messages_err));
    return agent_messages_parse_reply(body, strlen(body), reply, test_agent_messages_err,
                                      sizeof(test_agent_messages_err));
}

static void test_agent_messages_expect_ok(const char *body, struct agent_reply *reply)
{
    cr_assert_eq(test_agent_messages_parse(body, reply), 0, "rejected %s: %s", body,
                 test_agent_messages_err);
    cr_assert_not_null(reply->message);
    cr_assert(reply->content != NULL || reply->call_count > 0);
}

/* The body must be refused with an error that contains `expected`, and leave the reply empty. */
static void test_agent_messages_expect_error(const char *body, const char *expected)
{
    struct agent_reply reply;
    memset(&reply, 0x5A, sizeof(reply));
    cr_assert_eq(test_agent_messages_parse(body, &reply), -1, "accepted: %s", body);
    cr_assert(strstr(test_agent_messages_err, expected) != NULL, "for %s\n got: %s\nwant: %s",
              body, test_agent_messages_err, expected);
    cr_assert_null(reply.message);
    cr_assert_null(reply.content);
    cr_assert_null(reply.finish_reason);
    cr_assert_eq(reply.call_count, 0);
    for (const char *at = test_agent_messages_err; *at != '\0'; at++) {
        cr_assert((unsigned char)*at >= 0x20, "control character in: %s",
                  test_agent_messages_err);
    }
    agent_reply_free(&reply);
}

/* {"choices":[{"message":MESSAGE,"finish_reason":"stop"}]} around a message. */
static const char *test_agent_messages_wrap(const char *message)
{
    static char body[8192];
    int written = snprintf(body, sizeof(body),
                           "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"choices\":"
                           "[{\"index\":0,\"message\":%s,\"finish_reason\":\"stop\"}]}",
                           message);
    cr_assert(written > 0 && (size_t)written < sizeof(body));
    return body;
}

static json_t *test_agent_messages_load(const char *text)
{
    json_error_t error;
    json_t *value = json_loads(text, 0, &error);
    cr_assert_not_null(value, "not JSON (%s): %s", error.text, text);
    return value;
}

/* The compact dump of a value, compared with the expected text. */
static void test_agent_messages_expect_json(const json_t *value, const char *expected)
{
    char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    cr_assert_not_null(text);
    cr_assert_str_eq(text, expected);
    rm_free(text);
}

static void test_agent_messages_agent(struct config_agent *agent, const char *system,
                                      const char *params)
{
    memset(agent, 0, sizeof(*agent));
    snprintf(agent->name, sizeof(agent->name), "%s", "researcher");
    snprintf(agent->endpoint, sizeof(agent->endpoint), "%s", "openai");
    snprintf(agent->model, sizeof(agent->model), "%s", "gpt-4o-mini");
    snprintf(agent->system, sizeof(agent->system), "%s", system);
    snprintf(agent->params, sizeof(agent->params), "%s", params);
    agent->history_messages = 100;
}

static void test_agent_messages_tool(struct config_tool *tool, const char *name,
                                     const char *description, const char *parameters)
{
    snprintf(tool->name, sizeof(tool->name), "%s", name);
    snprintf(tool->description, sizeof(tool->description), "%s", description);
    snprintf(tool->parameters, sizeof(tool->parameters), "%s", parameters);
}

/* ---- tool definitions ---- */

Test(agent_messages_tools, built_from_the_config_in_the_agents_order)
{
    struct config *config = rm_calloc(1, sizeof(*config));
    cr_assert_not_null(config);
    test_agent_messages_tool(&config->tools[0], "weather", "Current weather for a city",
                             "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":"
                             "\"string\"}},\"required\":[\"city\"]}");
    test_agent_messages_tool(&config->tools[1], "unused", "Not offered", "{\"type\":\"object\"}");
    test_agent_messages_tool(&config->tools[2], "clock", "", "");
    config->tool_count = 3;
    struct config_agent *agent = &config->agents[0];
    test_agent_messages_agent(agent, "", "");
    snprintf(agent->tools[0], sizeof(agent->tools[0]), "%s", "clock");
    snprintf(agent->tools[1], sizeof(agent->tools[1]), "%s", "weather");
    agent->tool_count = 2;
    config->agent_count = 1;
    json_t *tools = agent_messages_tools(config, agent);
    cr_assert_not_null(tools);
    test_agent_messages_expect_json(
        tools, "[{\"type\":\"function\",\"function\":{\"name\":\"clock\",\"parameters\":"
               "{\"type\":\"object\"}}},{\"type\":\"function\",\"function\":{\"name\":"
               "\"weather\",\"description\":\"Current weather for a city\",\"parameters\":"
               "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},"
               "\"required\":[\"city\"]}}}]");
    json_decref(tools);
    rm_free(config);
}

Test(agent_messages_tools, none_when_the_agent_has_no_tools)
{
    struct config *config = rm_calloc(1, sizeof(*config));
    cr_assert_not_null(config);
    test_agent_messages_tool(&config->tools[0], "weather", "", "");
    config->tool_count = 1;
    test_agent_messages_agent(&config->agents[0], "", "");
    cr_assert_null(agent_messages_tools(config, &config->agents[0]));
    rm_free(config);
}

/* ---- request bodies ---- */

Test(agent_messages_request, system_history_fresh_tools_and_params_in_order)
{
    struct config_agent agent;
    test_agent_messages_agent(&agent, "You are terse.",
                              "{\"temperature\":0.5,\"model\":\"evil\",\"max_tokens\":100,"
                              "\"messages\":[],\"tool_choice\":\"auto\"}");
    json_t *tools = test_agent_messages_load("[{\"type\":\"function\",\"function\":{\"name\":"
                                             "\"clock\",\"parameters\":{\"type\":\"object\"}}}]");
    json_t *history = json_array();
    json_array_append_new(history, test_agent_messages_load("{\"role\":\"user\",\"content\":"
                                                            "\"What time is it?\"}"));
    json_array_append_new(history, test_agent_messages_load(
                                       "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":"
                                       "[{\"id\":\"c1\",\"type\":\"function\",\"function\":"
                                       "{\"name\":\"clock\",\"arguments\":\"{}\"}}]}"));
    json_t *fresh = json_array();
    json_array_append_new(fresh, agent_messages_tool_result("c1", "\"12:00\"", 7));
    size_t length = 0;
    char *text = agent_messages_request(&agent, tools, history, fresh, &length);
    cr_assert_not_null(text);
    cr_assert_eq(length, strlen(text));
    cr_assert_str_eq(
        text, "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"system\",\"content\":"
              "\"You are terse.\"},{\"role\":\"user\",\"content\":\"What time is it?\"},"
              "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\","
              "\"type\":\"function\",\"function\":{\"name\":\"clock\",\"arguments\":\"{}\"}}]},"
              "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"\\\"12:00\\\"\"}],"
              "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"clock\","
              "\"parameters\":{\"type\":\"object\"}}}],\"temperature\":0.5,\"max_tokens\":100,"
              "\"tool_choice\":\"auto\"}");
    json_t *parsed = test_agent_messages_load(text);
    cr_assert_eq(json_object_size(parsed), 6);
    cr_assert_eq(json_array_size(json_object_get(parsed, "messages")), 4);
    json_decref(parsed);
    /* The inputs are shared, not consumed. */
    cr_assert_eq(json_array_size(history), 2);
    cr_assert_eq(json_array_size(fresh), 1);
    rm_free(text);
    json_decref(tools);
    json_decref(history);
    json_decref(fresh);
}

Test(agent_messages_request, without_system_tools_params_or_history)
{
    struct config_agent agent;
    test_agent_messages_agent(&agent, "", "");
    json_t *fresh = json_array();
    json_t *input = json_string("hi");
    json_array_append_new(fresh, agent_messages_user(input));
    json_decref(input);
    size_t length = 0;
    char *text = agent_messages_request(&agent, NULL, NULL, fresh, &length);
    cr_assert_not_null(text);
    cr_assert_str_eq(text, "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\","
                           "\"content\":\"hi\"}]}");
    cr_assert_eq(length, strlen(text));
    rm_free(text);
    test_agent_messages_agent(&agent, "", "{}");
    text = agent_messages_request(&agent, NULL, NULL, NULL, &length);
    cr_assert_str_eq(text, "{\"model\":\"gpt-4o-mini\",\"messages\":[]}");
    rm_free(text);
    json_decref(fresh);
}

Test(agent_messages_request, history_before_fresh_after_system)
{
    struct config_agent agent;
    test_agent_messages_agent(&agent, "S", "{\"stream\":false}");
    json_t *history = json_array();
    json_t *fresh = json_array();
    for (int i = 0; i < 3; i++) {
        char word[16];
        snprintf(word, sizeof(word), "h%d", i);
        json_t *input = json_string(word);
        json_array_append_new(history, agent_messages_user(input));
        json_decref(input);
        snprintf(word, sizeof(word), "f%d", i);
        input = json_string(word);
        json_array_append_new(fresh, agent_messages_user(input));
        json_decref(input);
    }
    size_t length = 0;
    char *text = agent_messages_request(&agent, NULL, history, fresh, &length);
    json_t *parsed = test_agent_messages_load(text);
    json_t *messages = json_object_get(parsed, "messages");
    const char *order[] = {"S", "h0", "h1", "h2", "f0", "f1", "f2"};
    cr_assert_eq(json_array_size(messages), 7);
    for (size_t i = 0; i < 7; i++) {
        const json_t *message = json_array_get(messages, i);
        cr_assert_str_eq(json_string_value(json_object_get(message, "content")), order[i]);
        cr_assert_str_eq(json_string_value(json_object_get(message, "role")),
                         i == 0 ? "system" : "user");
    }
    cr_assert(json_is_false(json_object_get(parsed, "stream")));
    cr_assert_null(json_object_get(parsed, "tools"));
    json_decref(parsed);
    rm_free(text);
    json_decref(history);
    json_decref(fresh);
}

/* The roles of the request built from a history of turns (user, assistant with a tool call,
 * tool, assistant) with history_messages set; "" when the request has no such message. */
static void test_agent_messages_window(uint32_t window, const char *expected)
{
    struct config_agent agent;
    test_agent_messages_agent(&agent, "", "{}");
    agent.history_messages = window;
    json_t *history = test_agent_messages_load(
        "[{\"role\":\"user\",\"content\":\"u0\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c0\","
        "\"type\":\"function\",\"function\":{\"name\":\"t\",\"arguments\":\"{}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c0\",\"content\":\"r0\"},"
        "{\"role\":\"assistant\",\"content\":\"a0\"},"
        "{\"role\":\"user\",\"content\":\"u1\"},"
        "{\"role\":\"assistant\",\"content\":\"a1\"}]");
    json_t *fresh = test_agent_messages_load("[{\"role\":\"user\",\"content\":\"u2\"}]");
    size_t length = 0;
    char *text = agent_messages_request(&agent, NULL, history, fresh, &length);
    json_t *parsed = test_agent_messages_load(text);
    char roles[256] = "";
    size_t index;
    json_t *message;
    json_array_foreach(json_object_get(parsed, "messages"), index, message) {
        const char *content = json_string_value(json_object_get(message, "content"));
        strncat(roles, content != NULL ? content : "call", sizeof(roles) - strlen(roles) - 2);
        strcat(roles, " ");
    }
    cr_assert_str_eq(roles, expected, "window %u", window);
    json_decref(parsed);
    rm_free(text);
    json_decref(history);
    json_decref(fresh);
}

Test(agent_messages_request, history_window_starts_at_a_user_message)
{
    test_agent_messages_window(100, "u0 call r0 a0 u1 a1 u2 ");
    test_agent_messages_window(6, "u0 call r0 a0 u1 a1 u2 ");
    /* Five from the end would begin with the tool call's answer: moved on to u1. */
    test_agent_messages_window(5, "u1 a1 u2 ");
    test_agent_messages_window(2, "u1 a1 u2 ");
    test_agent_messages_window(1, "u2 ");
    test_agent_messages_window(0, "u2 ");
}

Test(agent_messages_request, an_answer_goes_back_into_the_history)
{
    struct agent_reply reply;
    test_agent_messages_expect_ok(
        test_agent_messages_wrap("{\"role\":\"assistant\",\"content\":null,\"refusal\":null,"
                                 "\"tool_calls\":[{\"id\":\"call_9\",\"type\":\"function\","
                                 "\"function\":{\"name\":\"clock\",\"arguments\":\"{}\"}}]}"),
        &reply);
    json_t *history = json_array();
    cr_assert_eq(json_array_append(history, reply.message), 0);
    json_array_append_new(history, agent_messages_tool_result(reply.calls[0].id, "noon", 4));
    agent_reply_free(&reply);
    struct config_agent agent;
    test_agent_messages_agent(&agent, "", "");
    size_t length = 0;
    char *text = agent_messages_request(&agent, NULL, history, NULL, &length);
    cr_assert_str_eq(text, "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"assistant\","
                           "\"content\":null,\"tool_calls\":[{\"id\":\"call_9\",\"type\":"
                           "\"function\",\"function\":{\"name\":\"clock\",\"arguments\":"
                           "\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"call_9\","
                           "\"content\":\"noon\"}]}");
    rm_free(text);
    json_decref(history);
}

/* ---- answers ---- */

Test(agent_messages_reply, final_answer_with_usage)
{
    struct agent_reply reply;
    test_agent_messages_expect_ok(
        "{\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion\",\"created\":1700000000,"
        "\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
        "\"assistant\",\"content\":\"Paris.\",\"refusal\":null,\"annotations\":[]},"
        "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":21,"
        "\"completion_tokens\":3,\"total_tokens\":24},\"system_fingerprint\":\"fp_1\"}",
        &reply);
    cr_assert_str_eq(reply.content, "Paris.");
    cr_assert_str_eq(reply.finish_reason, "stop");
    cr_assert_eq(reply.call_count, 0);
    cr_assert_eq(reply.prompt_tokens, 21);
    cr_assert_eq(reply.completion_tokens, 3);
    test_agent_messages_expect_json(reply.message,
                                    "{\"role\":\"assistant\",\"content\":\"Paris.\"}");
    cr_assert_eq(reply.content, json_string_value(json_object_get(reply.message, "content")));
    agent_reply_free(&reply);
    cr_assert_null(reply.message);
    agent_reply_free(&reply);
}

Test(agent_messages_reply, one_tool_call_with_content_null)
{
    struct agent_reply reply;
    test_agent_messages_expect_ok(
        "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,"
        "\"tool_calls\":[{\"id\":\"call_abc\",\"type\":\"function\",\"function\":{\"name\":"
        "\"weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
        "\"finish_reason\":\"tool_calls\"}]}",
        &reply);
    cr_assert_null(reply.content);
    cr_assert_str_eq(reply.finish_reason, "tool_calls");
    cr_assert_eq(reply.call_count, 1);
    cr_assert_str_eq(reply.calls[0].id, "call_abc");
    cr_assert_str_eq(reply.calls[0].name, "weather");
    cr_assert_str_eq(reply.calls[0].arguments, "{\"city\":\"Paris\"}");
    cr_assert_eq(reply.prompt_tokens, 0);
    cr_assert_eq(reply.completion_tokens, 0);
    test_agent_messages_expect_json(
        reply.message, "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":"
                       "\"call_abc\",\"type\":\"function\",\"function\":{\"name\":\"weather\","
                       "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]}");
    agent_reply_free(&reply);
}

Test(agent_messages_reply, three_parallel_tool_calls_point_into_the_message)
{
    struct agent_reply reply;
    test_agent_messages_expect_ok(
        test_agent_messages_wrap(
            "{\"role\":\"assistant\",\"content\":\"Checking.\",\"tool_calls\":["
            "{\"id\":\"a\",\"type\":\"function\",\"function\":{\"name\":\"weather\","
            "\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}},"
            "{\"id\":\"b\",\"function\":{\"name\":\"clock\",\"arguments\":\"\"}},"
            "{\"id\":\"c\",\"type\":null,\"function\":{\"name\":\"search\",\"arguments\":"
            "{\"q\":\"x\",\"n\":2}}}]}"),
        &reply);
    cr_assert_str_eq(reply.content, "Checking.");
    cr_assert_eq(reply.call_count, 3);
    const char *ids[] = {"a", "b", "c"};
    const char *names[] = {"weather", "clock", "search"};
    const char *arguments[] = {"{\"city\":\"Oslo\"}", "", "{\"q\":\"x\",\"n\":2}"};
    const json_t *calls = json_object_get(reply.message, "tool_calls");
    cr_assert_eq(json_array_size(calls), 3);
    for (uint32_t i = 0; i < 3; i++) {
        const json_t *call = json_array_get(calls, i);
        const json_t *function = json_object_get(call, "function");
        cr_assert_str_eq(reply.calls[i].id, ids[i]);
        cr_assert_str_eq(reply.calls[i].name, names[i]);
        cr_assert_str_eq(reply.calls[i].arguments, arguments[i]);
        cr_assert_eq(reply.calls[i].id, json_string_value(json_object_get(call, "id")));
        cr_assert_eq(reply.calls[i].name, json_string_value(json_object_get(function, "name")));
        cr_assert_eq(reply.calls[i].arguments,
                     json_string_value(json_object_get(function, "arguments")));
        cr_assert_str_eq(json_string_value(json_object_get(call, "type")), "function");
        cr_assert_eq(json_object_size(call), 3);
    }
    agent_reply_free(&reply);
}

Test(agent_messages_reply, usage_taken_only_when_it_is_a_count)
{
    static const char *const usages[] = {
        "{\"prompt_tokens\":-1,\"completion_tokens\":\"7\"}",
        "{\"prompt_tokens\":1.5,\"completion_tokens\":null}",
        "{\"prompt_tokens\":1e300,\"completion_tokens\":-0.5}",
        "\"lots\"",
        "null",
    };
    for (size_t i = 0; i < sizeof(usages) / sizeof(usages[0]); i++) {
        char body[512];
        snprintf(body, sizeof(body), "{\"choices\":[{\"message\":{\"content\":\"ok\"}}],"
                                     "\"usage\":%s}", usages[i]);
        struct agent_reply reply;
        test_agent_messages_expect_ok(body, &reply);
        cr_assert_eq(reply.prompt_tokens, 0, "%s", usages[i]);
        cr_assert_eq(reply.completion_tokens, 0, "%s", usages[i]);
        cr_assert_null(reply.finish_reason);
        agent_reply_free(&reply);
    }
    struct agent_reply reply;
    test_agent_messages_expect_ok("{\"choices\":[{\"message\":{\"content\":\"ok\"}}],\"usage\":"
                                  "{\"prompt_tokens\":9223372036854775807,"
                                  "\"completion_tokens\":12.0}}",
                                  &reply);
    cr_assert_eq(reply.prompt_tokens, UINT64_C(9223372036854775807));
    cr_assert_eq(reply.completion_tokens, 12);
    agent_reply_free(&reply);
}

Test(agent_messages_reply, accepted_shapes)
{
    static const char *const bodies[] = {
        /* finish_reason length: the caller decides what a cut answer means */
        "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"Once upon\"},"
        "\"finish_reason\":\"length\"}]}",
        /* an empty final answer is still an answer */
        "{\"choices\":[{\"message\":{\"content\":\"\"}}]}",
        /* tool_calls null or empty: none */
        "{\"choices\":[{\"message\":{\"content\":\"x\",\"tool_calls\":null}}]}",
        "{\"choices\":[{\"message\":{\"content\":\"x\",\"tool_calls\":[]}}]}",
        /* huge numbers and odd types in fields we do not use */
        "{\"created\":1e300,\"choices\":[{\"index\":\"zero\","
        "\"message\":{\"content\":\"x\",\"extra\":[1,{}]},\"finish_reason\":7}]}",
        /* only the first choice counts */
        "{\"choices\":[{\"message\":{\"content\":\"first\"}},\"garbage\"]}",
        /* id of 127 bytes and name of 63 bytes: the largest allowed */
        "{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":\"" /* 127 */
        "iiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiii"
        "iiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiii\",\"function\":{\"name\":\""
        "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn\",\"arguments\":"
        "\"{}\"}}]}}]}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct agent_reply reply;
        test_agent_messages_expect_ok(bodies[i], &reply);
        agent_reply_free(&reply);
    }
}

Test(agent_messages_reply, sixteen_tool_calls_allowed_seventeen_refused)
{
    static char message[4096];
    for (int count = AGENT_TOOL_CALLS_MAX; count <= AGENT_TOOL_CALLS_MAX + 1; count++) {
        size_t used = (size_t)snprintf(message, sizeof(message), "%s",
                                       "{\"content\":null,\"tool_calls\":[");
        for (int i = 0; i < count; i++) {
            used += (size_t)snprintf(message + used, sizeof(message) - used,
                                     "%s{\"id\":\"call_%d\",\"type\":\"function\",\"function\":"
                                     "{\"name\":\"t%d\",\"arguments\":\"{}\"}}",
                                     i == 0 ? "" : ",", i, i);
        }
        snprintf(message + used, sizeof(message) - used, "%s", "]}");
        if (count == AGENT_TOOL_CALLS_MAX) {
            struct agent_reply reply;
            test_agent_messages_expect_ok(test_agent_messages_wrap(message), &reply);
            cr_assert_eq(reply.call_count, AGENT_TOOL_CALLS_MAX);
            cr_assert_str_eq(reply.calls[15].id, "call_15");
            cr_assert_str_eq(reply.calls[15].name, "t15");
            agent_reply_free(&reply);
        } else {
            test_agent_messages_expect_error(test_agent_messages_wrap(message),
                                             "more than 16 tool calls in one answer");
        }
    }
}

Test(agent_messages_reply, not_json)
{
    test_agent_messages_expect_error("{\"choices\":[{\"message\":{\"content\":\"Par",
                                     "the LLM's answer is not JSON at 1:");
    test_agent_messages_expect_error("", "the LLM's answer is not JSON at ");
    test_agent_messages_expect_error("<html>502 Bad Gateway</html>",
                                     "the LLM's answer is not JSON at 1:");
    test_agent_messages_expect_error("{\"choices\":[]} trailing",
                                     "the LLM's answer is not JSON at 1:");
    test_agent_messages_expect_error("{\"a\":\"\x01\x02\xff\"}", "the LLM's answer is not JSON");
    test_agent_messages_expect_error("{\"a\":\"\\u0000\"}", "the LLM's answer is not JSON");
    test_agent_messages_expect_error("{\"choices\":[{\"message\":{\"content\":\"x\"}}],"
                                     "\"n\":1e999}",
                                     "the LLM's answer is not JSON");
    /* jansson refuses integers beyond 64 bits, even in fields we ignore */
    test_agent_messages_expect_error("{\"created\":123456789012345678901234567890,"
                                     "\"choices\":[{\"message\":{\"content\":\"x\"}}]}",
                                     "the LLM's answer is not JSON at 1:");
}

Test(agent_messages_reply, not_an_object)
{
    test_agent_messages_expect_error("[]", "the LLM's answer is not a JSON object");
    test_agent_messages_expect_error("42", "the LLM's answer is not a JSON object");
    test_agent_messages_expect_error("\"Paris.\"", "the LLM's answer is not a JSON object");
    test_agent_messages_expect_error("null", "the LLM's answer is not a JSON object");
}

Test(agent_messages_reply, no_choices_or_no_message)
{
    test_agent_messages_expect_error("{}", "the LLM's answer has no choices");
    test_agent_messages_expect_error("{\"choices\":[]}", "the LLM's answer has no choices");
    test_agent_messages_expect_error("{\"choices\":{\"message\":{}}}",
                                     "the LLM's answer has no choices");
    test_agent_messages_expect_error(
        "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\"}}",
        "the LLM's answer is an error: Rate limit reached");
    test_agent_messages_expect_error("{\"choices\":[\"hi\"]}",
                                     "the LLM's answer has a choice that is not an object");
    test_agent_messages_expect_error("{\"choices\":[{\"text\":\"hi\"}]}",
                                     "the LLM's answer has no message");
    test_agent_messages_expect_error("{\"choices\":[{\"message\":\"hi\"}]}",
                                     "the LLM's answer has no message");
}

Test(agent_messages_reply, wrong_content_or_tool_calls_type)
{
    test_agent_messages_expect_error(test_agent_messages_wrap("{\"content\":42}"),
                                     "has content that is neither text nor null");
    test_agent_messages_expect_error(
        test_agent_messages_wrap("{\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}"),
        "has content that is neither text nor null");
    test_agent_messages_expect_error(
        test_agent_messages_wrap("{\"content\":\"x\",\"tool_calls\":{\"id\":\"a\"}}"),
        "has tool_calls that is not an array");
}

Test(agent_messages_reply, neither_content_nor_tool_calls)
{
    test_agent_messages_expect_error("{\"choices\":[{\"message\":{\"role\":\"assistant\"}}]}",
                                     "the LLM's answer has neither content nor tool calls");
    test_agent_messages_expect_error(
        "{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[]},"
        "\"finish_reason\":\"length\"}]}",
        "the LLM's answer has neither content nor tool calls (finish_reason \"length\")");
    test_agent_messages_expect_error(
        test_agent_messages_wrap("{\"role\":\"assistant\",\"content\":null,\"refusal\":"
                                 "\"I can't help with that.\"}"),
        "the LLM refused: I can't help with that.");
}

Test(agent_messages_reply, bad_tool_calls)
{
    static const char *const cases[][2] = {
        {"[\"call\"]", "tool call 1 is not an object"},
        {"[{\"function\":{\"name\":\"a\",\"arguments\":\"{}\"}}]", "tool call 1 has no id"},
        {"[{\"id\":\"\",\"function\":{\"name\":\"a\",\"arguments\":\"{}\"}}]",
         "tool call 1 has no id"},
        {"[{\"id\":7,\"function\":{\"name\":\"a\",\"arguments\":\"{}\"}}]",
         "tool call 1 has no id"},
        {"[{\"id\":\"" /* 128 bytes */
         "iiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiii"
         "iiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiii\",\"function\":{\"name\":\"a\","
         "\"arguments\":\"{}\"}}]",
         "tool call 1 has an id of 128 bytes (at most 127)"},
        {"[{\"id\":\"a\",\"type\":\"code_interpreter\",\"function\":{\"name\":\"a\","
         "\"arguments\":\"{}\"}}]",
         "tool call 1 is not of type \"function\""},
        {"[{\"id\":\"a\",\"type\":1,\"function\":{\"name\":\"a\",\"arguments\":\"{}\"}}]",
         "tool call 1 is not of type \"function\""},
        {"[{\"id\":\"a\",\"type\":\"function\"}]", "tool call 1 has no function"},
        {"[{\"id\":\"a\",\"function\":\"a\"}]", "tool call 1 has no function"},
        {"[{\"id\":\"a\",\"function\":{\"name\":\"x\",\"arguments\":\"{}\"}},"
         "{\"id\":\"b\",\"function\":{\"arguments\":\"{}\"}}]",
         "tool call 2 has no function name"},
        {"[{\"id\":\"a\",\"function\":{\"name\":\"\",\"arguments\":\"{}\"}}]",
         "tool call 1 has no function name"},
        {"[{\"id\":\"a\",\"function\":{\"name\":[\"x\"],\"arguments\":\"{}\"}}]",
         "tool call 1 has no function name"},
        {"[{\"id\":\"a\",\"function\":{\"name\":\"" /* 64 bytes */
         "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn\",\"arguments\":"
         "\"{}\"}}]",
         "tool call 1 has a function name of 64 bytes (at most 63)"},
        {"[{\"id\":\"a\",\"function\":{\"name\":\"x\"}}]", "tool call 1 has no function arguments"},
        {"[{\"id\":\"a\",\"function\":{\"name\":\"x\",\"arguments\":null}}]",
         "tool call 1 has no function arguments"},
        {"[{\"id\":\"a\",\"function\":{\"name\":\"x\",\"arguments\":[1]}}]",
         "tool call 1 has no function arguments"},
        {"[{\"id\":\"a\",\"function\":{\"name\":\"x\",\"arguments\":\"{}\"}},"
         "{\"id\":\"b\",\"function\":{\"name\":\"y\",\"arguments\":\"{}\"}},"
         "{\"id\":\"a\",\"function\":{\"name\":\"z\",\"arguments\":\"{}\"}}]",
         "tool call 3 repeats the id of tool call 1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char message[1024];
        snprintf(message, sizeof(message), "{\"content\":null,\"tool_calls\":%s}", cases[i][0]);
        test_agent_messages_expect_error(test_agent_messages_wrap(message), cases[i][1]);
    }
}

Test(agent_messages_reply, too_large)
{
    size_t length = AGENT_REPLY_MAX_BYTES + 1;
    char *body = rm_malloc(length);
    cr_assert_not_null(body);
    memset(body, ' ', length);
    struct agent_reply reply;
    cr_assert_eq(agent_messages_parse_reply(body, length, &reply, test_agent_messages_err,
                                            sizeof(test_agent_messages_err)),
                 -1);
    cr_assert_str_eq(test_agent_messages_err, "the LLM's answer is larger than 8388608 bytes");
    cr_assert_null(reply.message);
    rm_free(body);
}

Test(agent_messages_reply, error_messages_are_clean_and_bounded)
{
    /* An upstream error message with control characters, and a small err buffer cutting a
     * multi-byte character: the message stays printable UTF-8. */
    test_agent_messages_expect_error("{\"error\":{\"message\":\"bad\\nkey\\u0007!\"}}",
                                     "the LLM's answer is an error: bad key !");
    char small[36]; /* 30 bytes of text, two 2-byte characters and half of a third */
    struct agent_reply reply;
    const char *body = "{\"error\":{\"message\":\"\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\"}}";
    cr_assert_eq(agent_messages_parse_reply(body, strlen(body), &reply, small, sizeof(small)),
                 -1);
    cr_assert_eq(strlen(small), sizeof(small) - 1);
    cr_assert_eq(small[sizeof(small) - 2], '?');
    json_t *check = json_string(small);
    cr_assert_not_null(check, "not UTF-8: %s", small);
    json_decref(check);
    cr_assert(strncmp(small, "the LLM's answer is an error: ", 30) == 0);
}

/* ---- helpers ---- */

Test(agent_messages_helpers, tool_result)
{
    json_t *message = agent_messages_tool_result("call_1", "{\"temp\":21}", 11);
    test_agent_messages_expect_json(message, "{\"role\":\"tool\",\"tool_call_id\":\"call_1\","
                                             "\"content\":\"{\\\"temp\\\":21}\"}");
    json_decref(message);
    message = agent_messages_tool_result("c", NULL, 0);
    test_agent_messages_expect_json(message,
                                    "{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":\"\"}");
    json_decref(message);
}

Test(agent_messages_helpers, tool_result_repairs_invalid_utf8)
{
    /* A stray continuation byte, a truncated sequence at the end, an overlong '/', a
     * surrogate; the valid é and the NUL byte are kept. */
    const char text[] = "a\x80" "b\xC3\xA9\0c\xC0\xAF\xED\xA0\x80\xE2\x82";
    json_t *message = agent_messages_tool_result("c", text, sizeof(text) - 1);
    cr_assert_not_null(message);
    const json_t *content = json_object_get(message, "content");
    const char expected[] = "a\xEF\xBF\xBD" "b\xC3\xA9\0c\xEF\xBF\xBD\xEF\xBF\xBD"
                            "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD";
    cr_assert_eq(json_string_length(content), sizeof(expected) - 1);
    cr_assert_eq(memcmp(json_string_value(content), expected, sizeof(expected) - 1), 0);
    json_decref(message);
}

Test(agent_messages_helpers, user_message_from_any_json)
{
    static const char *const cases[][2] = {
        {"\"What is the capital of France?\"",
         "{\"role\":\"user\",\"content\":\"What is the capital of France?\"}"},
        {"{\"city\": \"Paris\", \"days\": [1, 2]}",
         "{\"role\":\"user\",\"content\":\"{\\\"city\\\":\\\"Paris\\\",\\\"days\\\":[1,2]}\"}"},
        {"42", "{\"role\":\"user\",\"content\":\"42\"}"},
        {"null", "{\"role\":\"user\",\"content\":\"null\"}"},
        {"\"\"", "{\"role\":\"user\",\"content\":\"\"}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_error_t error;
        json_t *input = json_loads(cases[i][0], JSON_DECODE_ANY, &error);
        cr_assert_not_null(input, "%s", error.text);
        json_t *message = agent_messages_user(input);
        cr_assert_not_null(message);
        test_agent_messages_expect_json(message, cases[i][1]);
        json_decref(message);
        json_decref(input);
    }
}
