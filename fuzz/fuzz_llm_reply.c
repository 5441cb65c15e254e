/* libFuzzer target for the LLM answer parser. The input is the body of a chat completions
 * answer, as an endpoint (or anything pretending to be one) sends it. On success the reply
 * must keep its bounds and its pointers must point into the normalised message; that message,
 * wrapped in an answer again, must parse to the same reply (normalising is idempotent) and
 * must go into a request body. On failure the error must be non-empty printable UTF-8 and the
 * reply empty, and a small error buffer must give the same result. The bytes are also fed to
 * agent_messages_tool_result, which must accept any of them. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/agent_messages.h"
#include "core/alloc.h"

#define FUZZ_LLM_REPLY_INPUT_MAX (64 * 1024)

static void fuzz_llm_reply_check(bool condition, const char *what)
{
    if (!condition) {
        fprintf(stderr, "fuzz_llm_reply: %s\n", what);
        abort();
    }
}

static void fuzz_llm_reply_check_error(const char *err, size_t err_size,
                                       const struct agent_reply *reply)
{
    size_t length = strlen(err);
    fuzz_llm_reply_check(length > 0 && length < err_size, "error length");
    for (size_t i = 0; i < length; i++) {
        fuzz_llm_reply_check((unsigned char)err[i] >= 0x20 && err[i] != 0x7F,
                             "control character in the error");
    }
    json_t *text = json_string(err); /* jansson checks UTF-8 */
    fuzz_llm_reply_check(text != NULL, "error is not UTF-8");
    json_decref(text);
    fuzz_llm_reply_check(reply->message == NULL && reply->call_count == 0, "reply not empty");
    fuzz_llm_reply_check(reply->content == NULL && reply->finish_reason == NULL,
                         "reply pointers after an error");
}

static void fuzz_llm_reply_check_reply(const struct agent_reply *reply)
{
    fuzz_llm_reply_check(reply->call_count <= AGENT_TOOL_CALLS_MAX, "call count");
    fuzz_llm_reply_check(reply->content != NULL || reply->call_count > 0, "empty answer");
    fuzz_llm_reply_check(json_is_object(reply->message), "message");
    const char *role = json_string_value(json_object_get(reply->message, "role"));
    fuzz_llm_reply_check(role != NULL && strcmp(role, "assistant") == 0, "role");
    const json_t *content = json_object_get(reply->message, "content");
    fuzz_llm_reply_check(reply->content == json_string_value(content), "content pointer");
    fuzz_llm_reply_check(reply->content != NULL || json_is_null(content), "content null");
    const json_t *calls = json_object_get(reply->message, "tool_calls");
    fuzz_llm_reply_check(reply->call_count > 0 ? json_array_size(calls) == reply->call_count
                                               : calls == NULL,
                         "tool_calls size");
    fuzz_llm_reply_check(json_object_size(reply->message) == 2 + (calls != NULL), "keys");
    for (uint32_t i = 0; i < reply->call_count; i++) {
        const struct agent_tool_call *call = &reply->calls[i];
        const json_t *normal = json_array_get(calls, i);
        const json_t *function = json_object_get(normal, "function");
        fuzz_llm_reply_check(call->id != NULL && call->id[0] != '\0', "empty id");
        fuzz_llm_reply_check(call->name != NULL && call->name[0] != '\0', "empty name");
        fuzz_llm_reply_check(call->arguments != NULL, "no arguments");
        fuzz_llm_reply_check(strlen(call->id) < AGENT_TOOL_CALL_ID_MAX, "id length");
        fuzz_llm_reply_check(strlen(call->name) < AGENT_TOOL_NAME_MAX, "name length");
        fuzz_llm_reply_check(call->id == json_string_value(json_object_get(normal, "id")),
                             "id pointer");
        fuzz_llm_reply_check(call->name == json_string_value(json_object_get(function, "name")),
                             "name pointer");
        fuzz_llm_reply_check(call->arguments ==
                                 json_string_value(json_object_get(function, "arguments")),
                             "arguments pointer");
        for (uint32_t earlier = 0; earlier < i; earlier++) {
            fuzz_llm_reply_check(strcmp(reply->calls[earlier].id, call->id) != 0, "same id");
        }
    }
}

/* The normalised message in an answer of its own must parse to the same reply. */
static void fuzz_llm_reply_check_again(const struct agent_reply *reply)
{
    json_t *answer = json_pack("{s:[{s:O,s:s?}],s:{s:I,s:I}}", "choices", "message",
                               reply->message, "finish_reason", reply->finish_reason, "usage",
                               "prompt_tokens", (json_int_t)reply->prompt_tokens,
                               "completion_tokens", (json_int_t)reply->completion_tokens);
    fuzz_llm_reply_check(answer != NULL, "wrap");
    char *text = json_dumps(answer, JSON_COMPACT);
    json_decref(answer);
    fuzz_llm_reply_check(text != NULL, "dump");
    struct agent_reply again;
    char err[AGENT_REPLY_ERROR_MAX];
    int result = agent_messages_parse_reply(text, strlen(text), &again, err, sizeof(err));
    rm_free(text);
    fuzz_llm_reply_check(result == 0, "the normalised message does not parse again");
    fuzz_llm_reply_check(json_equal(again.message, reply->message), "message differs");
    fuzz_llm_reply_check(again.call_count == reply->call_count, "call count differs");
    fuzz_llm_reply_check(again.prompt_tokens == reply->prompt_tokens, "tokens differ");
    fuzz_llm_reply_check(again.completion_tokens == reply->completion_tokens, "tokens differ");
    fuzz_llm_reply_check((again.finish_reason == NULL) == (reply->finish_reason == NULL) &&
                             (again.finish_reason == NULL ||
                              strcmp(again.finish_reason, reply->finish_reason) == 0),
                         "finish_reason differs");
    for (uint32_t i = 0; i < again.call_count; i++) {
        fuzz_llm_reply_check(strcmp(again.calls[i].arguments, reply->calls[i].arguments) == 0,
                             "arguments differ");
    }
    agent_reply_free(&again);
}

/* The message goes into the history of the next request. */
static void fuzz_llm_reply_check_request(const struct agent_reply *reply)
{
    static const struct config_agent agent = {
        .model = "fuzz-model", .system = "S", .params = "{}", .history_messages = 100};
    json_t *history = json_array();
    fuzz_llm_reply_check(history != NULL && json_array_append(history, reply->message) == 0,
                         "history");
    size_t length = 0;
    char *body = agent_messages_request(&agent, NULL, history, NULL, &length);
    json_decref(history);
    fuzz_llm_reply_check(body != NULL && length == strlen(body), "request");
    json_t *parsed = json_loadb(body, length, 0, NULL);
    rm_free(body);
    fuzz_llm_reply_check(parsed != NULL, "the request is not JSON");
    const json_t *messages = json_object_get(parsed, "messages");
    fuzz_llm_reply_check(json_array_size(messages) == 2, "request messages");
    fuzz_llm_reply_check(json_equal(json_array_get(messages, 1), reply->message),
                         "message changed in the request");
    json_decref(parsed);
}

static void fuzz_llm_reply_tool_result(const uint8_t *data, size_t size)
{
    json_t *message = agent_messages_tool_result("call_1", (const char *)data, size);
    fuzz_llm_reply_check(message != NULL, "tool result refused");
    const json_t *content = json_object_get(message, "content");
    fuzz_llm_reply_check(json_string_length(content) >= size, "tool result shrank");
    fuzz_llm_reply_check(json_string_length(content) <= size * 3, "tool result grew too much");
    char *text = json_dumps(message, JSON_COMPACT);
    fuzz_llm_reply_check(text != NULL, "tool result does not dump");
    rm_free(text);
    json_decref(message);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_LLM_REPLY_INPUT_MAX) {
        return 0;
    }
    const char *body = (const char *)data;
    struct agent_reply reply;
    char err[AGENT_REPLY_ERROR_MAX];
    int result = agent_messages_parse_reply(body, size, &reply, err, sizeof(err));
    fuzz_llm_reply_check(result == 0 || result == -1, "result");
    /* A small error buffer cuts messages anywhere, characters included. */
    char small[24];
    size_t small_size = 2 + (size > 0 ? data[0] % (sizeof(small) - 2) : 0);
    struct agent_reply other;
    int small_result = agent_messages_parse_reply(body, size, &other, small, small_size);
    fuzz_llm_reply_check(small_result == result, "result depends on the error buffer");
    if (result == 0) {
        fuzz_llm_reply_check_reply(&reply);
        fuzz_llm_reply_check(json_equal(reply.message, other.message), "parses differ");
        fuzz_llm_reply_check_again(&reply);
        fuzz_llm_reply_check_request(&reply);
    } else {
        fuzz_llm_reply_check_error(err, sizeof(err), &reply);
        fuzz_llm_reply_check_error(small, small_size, &other);
        /* The short one is a prefix, but for a cut character at its end turned into '?'. */
        size_t same = strlen(small) > 3 ? strlen(small) - 3 : 0;
        fuzz_llm_reply_check(strncmp(err, small, same) == 0, "errors differ");
    }
    agent_reply_free(&reply);
    agent_reply_free(&other);
    agent_reply_free(&reply);
    fuzz_llm_reply_tool_result(data, size);
    return 0;
}
