/* POST /v1/chat/completions. A conversation with no "tool" message after its last "user"
 * message gets an assistant message that calls the request's tools (with arguments made from
 * each tool's parameter schema); once tool results are in, it gets a final answer. So every
 * new user turn of a session's history calls the tools again, as a real model would. Token counts follow the usual
 * rule of thumb (4 bytes a token), and the request passes the provider's limits first. */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench/mock_llm.h"
#include "core/rm_assert.h"

#define MOCK_PROPERTIES_MAX 16
#define MOCK_USER_TEXT_MAX 200
#define MOCK_MESSAGES_MAX 100000

static const char *mock_llm_string(json_t *object, const char *key, size_t *length)
{
    json_t *value = json_object_get(object, key);
    if (!json_is_string(value)) {
        *length = 0;
        return NULL;
    }
    *length = json_string_length(value);
    return json_string_value(value);
}

/* Counts the tool results after the last user message and remembers that message's text;
 * -1 when messages is malformed. */
static int mock_llm_messages(struct mock_chat *chat, json_t *messages, const char **error)
{
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        *error = "'messages' must be a non-empty array";
        return -1;
    }
    size_t count = json_array_size(messages);
    if (count > MOCK_MESSAGES_MAX) {
        *error = "'messages' has too many entries";
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        size_t length = 0;
        const char *role = mock_llm_string(json_array_get(messages, i), "role", &length);
        if (role == NULL) {
            *error = "every message needs a string 'role'";
            return -1;
        }
        if (strcmp(role, "tool") == 0) {
            chat->tool_results++;
        } else if (strcmp(role, "user") == 0) {
            const char *text = mock_llm_string(json_array_get(messages, i), "content", &length);
            chat->user_text = text != NULL ? text : "";
            chat->user_text_length = text != NULL ? length : 0;
            chat->tool_results = 0;
        }
    }
    return 0;
}

static int mock_llm_parse(struct mock_chat *chat, const struct http_request *request,
                          const char **error)
{
    json_error_t parse_error;
    chat->root = json_loadb(request->body.base, request->body.length, 0, &parse_error);
    if (!json_is_object(chat->root)) {
        *error = "the body must be a JSON object (an OpenAI chat completion request)";
        return -1;
    }
    chat->model = mock_llm_string(chat->root, "model", &chat->model_length);
    if (chat->model == NULL) {
        *error = "'model' must be a string";
        return -1;
    }
    chat->user_text = "";
    if (mock_llm_messages(chat, json_object_get(chat->root, "messages"), error) != 0) {
        return -1;
    }
    chat->stream = json_is_true(json_object_get(chat->root, "stream"));
    json_t *options = json_object_get(chat->root, "stream_options");
    chat->include_usage = json_is_true(json_object_get(options, "include_usage"));
    json_t *tools = json_object_get(chat->root, "tools");
    if (tools != NULL && !json_is_array(tools)) {
        *error = "'tools' must be an array";
        return -1;
    }
    return 0;
}

/* A short prefix of the user's text, cut between UTF-8 characters. */
static size_t mock_llm_user_prefix(const struct mock_chat *chat)
{
    size_t length = chat->user_text_length;
    if (length <= MOCK_USER_TEXT_MAX) {
        return length;
    }
    length = MOCK_USER_TEXT_MAX;
    while (length > 0 && ((unsigned char)chat->user_text[length] & 0xC0) == 0x80) {
        length--;
    }
    return length;
}

static void mock_llm_argument_value(struct mock_json *text, const struct mock_chat *chat,
                                    json_t *schema)
{
    size_t type_length = 0;
    const char *type = mock_llm_string(schema, "type", &type_length);
    if (type == NULL || strcmp(type, "string") == 0) {
        mock_json_string(text, chat->user_text, mock_llm_user_prefix(chat));
    } else if (strcmp(type, "integer") == 0 || strcmp(type, "number") == 0) {
        mock_json_text(text, "1");
    } else if (strcmp(type, "boolean") == 0) {
        mock_json_text(text, "true");
    } else if (strcmp(type, "array") == 0) {
        mock_json_text(text, "[]");
    } else if (strcmp(type, "object") == 0) {
        mock_json_text(text, "{}");
    } else {
        mock_json_text(text, "null");
    }
}

/* Arguments as JSON text: one value per schema property (up to MOCK_PROPERTIES_MAX), or
 * {"input": <user text>} for a tool without a schema. */
static void mock_llm_arguments(struct mock_json *text, const struct mock_chat *chat,
                               json_t *function)
{
    json_t *properties = json_object_get(json_object_get(function, "parameters"), "properties");
    mock_json_text(text, "{");
    if (!json_is_object(properties) || json_object_size(properties) == 0) {
        mock_json_text(text, "\"input\":");
        mock_json_string(text, chat->user_text, mock_llm_user_prefix(chat));
        mock_json_text(text, "}");
        return;
    }
    const char *key;
    json_t *schema;
    uint32_t written = 0;
    json_object_foreach(properties, key, schema) {
        if (written == MOCK_PROPERTIES_MAX) {
            break;
        }
        mock_json_text(text, written++ == 0 ? "" : ",");
        mock_json_string(text, key, strlen(key));
        mock_json_text(text, ":");
        mock_llm_argument_value(text, chat, schema);
    }
    mock_json_text(text, "}");
}

static int mock_llm_plan_calls(struct mock_core *core, struct mock_chat *chat, json_t *tools,
                               const char **error)
{
    struct mock_json *text = &core->text;
    size_t tool_count = json_array_size(tools);
    uint32_t count = core->mock->config.tool_calls;
    RM_ASSERT(tool_count > 0);
    RM_ASSERT(count >= 1 && count <= MOCK_TOOL_CALLS_MAX);
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < count; i++) {
        json_t *function = json_object_get(json_array_get(tools, i % tool_count), "function");
        struct mock_call *call = &chat->calls[i];
        call->name = mock_llm_string(function, "name", &call->name_length);
        if (call->name == NULL) {
            *error = "every entry of 'tools' needs a string 'function.name'";
            return -1;
        }
        call->arguments_start = text->length;
        mock_llm_arguments(text, chat, function);
        call->arguments_length = text->length - call->arguments_start;
        bytes += call->name_length + call->arguments_length;
    }
    chat->call_count = count;
    chat->completion_tokens = bytes / 4 + count;
    return 0;
}

static void mock_llm_plan_answer(struct mock_core *core, struct mock_chat *chat)
{
    static const char words[] = " The quick brown fox jumps over the lazy dog.";
    struct mock_json *text = &core->text;
    size_t target = (size_t)core->mock->config.completion_tokens * 4;
    RM_ASSERT(target <= MOCK_TEXT_MAX);
    mock_json_format(text, "This is the mock's final answer, written after %u tool result%s.",
                     chat->tool_results, chat->tool_results == 1 ? "" : "s");
    while (text->length < target && !text->overflow) {
        size_t left = target - text->length;
        mock_json_raw(text, words, left < sizeof(words) - 1 ? left : sizeof(words) - 1);
    }
    chat->call_count = 0;
    chat->content_length = text->length;
    chat->completion_tokens = text->length / 4 > 0 ? text->length / 4 : 1;
}

static int mock_llm_plan(struct mock_core *core, struct mock_chat *chat, const char **error)
{
    json_t *tools = json_object_get(chat->root, "tools");
    mock_json_reset(&core->text);
    if (chat->tool_results == 0 && json_array_size(tools) > 0) {
        if (mock_llm_plan_calls(core, chat, tools, error) != 0) {
            return -1;
        }
    } else {
        mock_llm_plan_answer(core, chat);
    }
    if (core->text.overflow) {
        *error = "the answer to this request would exceed the mock's size limit";
        return -1;
    }
    return 0;
}

static void mock_llm_refuse_concurrency(struct mock_core *core, struct http_exchange *exchange)
{
    struct mock_response response = {0};
    mock_reply_error_body(core, &response, 429, "rate_limit_error", "rate_limit_exceeded",
                          "Rate limit reached: too many concurrent requests. "
                          "Retry after the delay in Retry-After.");
    mock_reply_header(&response, "retry-after", "%u", core->mock->config.retry_after_s);
    mock_stats_add(core, MOCK_COUNT_429_CONCURRENCY, 1);
    mock_reply(core, exchange, &response, 0);
}

static void mock_llm_refuse_rate(struct mock_core *core, struct http_exchange *exchange,
                                 const struct mock_rate *rate)
{
    struct mock_response response = {0};
    mock_reply_error_body(core, &response, 429, "rate_limit_error", "rate_limit_exceeded",
                          rate->refused_tokens
                              ? "Rate limit reached for tokens per minute on this API key."
                              : "Rate limit reached for requests per minute on this API key.");
    mock_reply_header(&response, "retry-after", "%llu",
                      (unsigned long long)((rate->reset_ms + 999) / 1000));
    mock_limits_headers(core->mock, rate, &response);
    mock_stats_add(core, rate->refused_tokens ? MOCK_COUNT_429_TOKENS : MOCK_COUNT_429_REQUESTS,
                   1);
    mock_reply(core, exchange, &response, 0);
}

static void mock_llm_account(struct mock_core *core, const struct mock_chat *chat, int key)
{
    RM_ASSERT(key >= 0 && key <= MOCK_NAMES_MAX);
    RM_ASSERT(chat->prompt_tokens > 0);
    mock_stats_add(core, MOCK_COUNT_PROMPT_TOKENS, chat->prompt_tokens);
    mock_stats_add(core, MOCK_COUNT_COMPLETION_TOKENS, chat->completion_tokens);
    mock_stats_add(core, MOCK_COUNT_KEY_TOKENS + (uint32_t)key,
                   chat->prompt_tokens + chat->completion_tokens);
    mock_stats_add(core, chat->call_count > 0 ? MOCK_COUNT_TOOL_CALLS_ISSUED
                                              : MOCK_COUNT_FINAL_ANSWERS,
                   chat->call_count > 0 ? chat->call_count : 1);
    if (chat->stream) {
        mock_stats_add(core, MOCK_COUNT_STREAMS, 1);
    }
}

/* The answer the dice pick: the body already in scratch, an injected 500, or a hang (an
 * answer held for max_hang_ms). Every one holds its in-flight slot until sent. */
static void mock_llm_answer(struct mock_core *core, struct http_exchange *exchange,
                            const struct mock_chat *chat, const struct mock_rate *rate, int key)
{
    const struct mock_config *config = &core->mock->config;
    struct mock_response response = {0};
    enum mock_fault fault = mock_random_fault(core, &config->llm);
    uint32_t delay_ms = mock_random_latency_ms(core, &config->llm.latency);
    if (fault == MOCK_FAULT_ERROR) {
        mock_reply_error_body(core, &response, 500, "server_error", NULL,
                              "The server had an error while processing your request "
                              "(injected by ringmaster-mock).");
        mock_stats_add(core, MOCK_COUNT_ERRORS_LLM, 1);
    } else if (fault == MOCK_FAULT_HANG) {
        mock_reply_error_body(core, &response, 504, "timeout", NULL,
                              "ringmaster-mock held this request for max_hang_ms (a hang).");
        mock_stats_add(core, MOCK_COUNT_HANGS_LLM, 1);
        delay_ms = config->max_hang_ms;
    } else {
        response.status = 200;
        response.content_type = chat->stream ? "text/event-stream" : "application/json";
        response.body = core->scratch.data;
        response.body_length = core->scratch.length;
        if (chat->stream) {
            mock_reply_header(&response, "cache-control", "no-cache");
        }
        mock_llm_account(core, chat, key);
    }
    mock_limits_headers(core->mock, rate, &response);
    response.holds_slot = true;
    mock_reply(core, exchange, &response, delay_ms);
}

static void mock_llm_refuse_storm(struct mock_core *core, struct http_exchange *exchange)
{
    struct mock_response response = {0};
    mock_reply_error_body(core, &response, 429, "rate_limit_error", "rate_limit_exceeded",
                          "Rate limit reached for this API key (--storm-key).");
    mock_reply_header(&response, "retry-after", "%u", core->mock->config.retry_after_s);
    mock_stats_add(core, MOCK_COUNT_429_REQUESTS, 1);
    mock_reply(core, exchange, &response, 0);
}

static void mock_llm_admit(struct mock_core *core, struct http_exchange *exchange,
                           struct mock_chat *chat, int key)
{
    if (mock_limits_storm(core->mock, http_exchange_request(exchange))) {
        mock_llm_refuse_storm(core, exchange);
        return;
    }
    if (!mock_limits_acquire(core->mock)) {
        mock_llm_refuse_concurrency(core, exchange);
        return;
    }
    mock_llm_body(core, chat);
    if (core->scratch.overflow) {
        mock_limits_release(core->mock);
        mock_reply_error(core, exchange, 500, "server_error", NULL,
                         "the answer would exceed the mock's body size limit");
        return;
    }
    uint64_t tokens = chat->prompt_tokens + chat->completion_tokens;
    struct mock_rate rate =
        mock_limits_charge(core->mock, key, tokens, reactor_now_ns(core->reactor));
    if (rate.refused) {
        mock_limits_release(core->mock);
        mock_llm_refuse_rate(core, exchange, &rate);
        return;
    }
    mock_llm_answer(core, exchange, chat, &rate, key);
}

void mock_llm_handle(struct mock_core *core, struct http_exchange *exchange)
{
    RM_ASSERT(core->reactor == reactor_current());
    const struct http_request *request = http_exchange_request(exchange);
    RM_ASSERT(request != NULL);
    int key = mock_reply_key(core, request);
    mock_stats_add(core, MOCK_COUNT_CHAT, 1);
    mock_stats_add(core, MOCK_COUNT_KEY_REQUESTS + (uint32_t)key, 1);
    if (request->method != HTTP_METHOD_POST) {
        mock_stats_add(core, MOCK_COUNT_BAD_REQUESTS, 1);
        mock_reply_error(core, exchange, 405, "invalid_request_error", NULL,
                         "use POST for /v1/chat/completions");
        return;
    }
    struct mock_chat chat = {0};
    const char *error = NULL;
    if (mock_llm_parse(&chat, request, &error) != 0 || mock_llm_plan(core, &chat, &error) != 0) {
        mock_stats_add(core, MOCK_COUNT_BAD_REQUESTS, 1);
        mock_reply_error(core, exchange, 400, "invalid_request_error", NULL, error);
        json_decref(chat.root);
        return;
    }
    chat.prompt_tokens = request->body.length / 4 > 0 ? request->body.length / 4 : 1;
    chat.sequence = ++core->sequence;
    chat.created = (long long)time(NULL);
    mock_llm_admit(core, exchange, &chat, key);
    json_decref(chat.root);
}
