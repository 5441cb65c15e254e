/* The gateway routes: POST /v1/chat/completions through the LLM queue of the endpoint that
 * serves the model, and POST /v1/tools/{tool} through the tool's breaker. */

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/llm.h"
#include "core/rm_assert.h"
#include "core/tool.h"
#include "core/upstream.h"
#include "net/api_gateway.h"

#define API_GATEWAY_TOOL_PREFIX "/v1/tools/"

struct api_gateway_chat {
    struct http_exchange *exchange;
    struct llm_call call;
};

struct api_gateway_tool {
    struct http_exchange *exchange;
    struct tool_call call;
};

static struct upstream_core *api_gateway_core(struct http_exchange *exchange)
{
    struct upstream_core *core = upstream_core_of(http_exchange_reactor(exchange));
    RM_ASSERT(core != NULL);
    return core;
}

static void api_gateway_retry_after(struct http_exchange *exchange, int status,
                                    const char *type, const char *message, uint64_t ms)
{
    char seconds[24];
    snprintf(seconds, sizeof(seconds), "%llu", (unsigned long long)((ms + 999) / 1000));
    char body[LLM_ERROR_MAX + 128];
    json_t *text = json_string(message);
    char *escaped = json_dumps(text, JSON_ENCODE_ANY);
    int length = snprintf(body, sizeof(body), "{\"error\":{\"type\":\"%s\",\"message\":%s}}",
                          type, escaped != NULL ? escaped : "\"\"");
    rm_free(escaped);
    json_decref(text);
    struct http_response_header header = {"Retry-After", seconds};
    http_exchange_respond(exchange, status, "application/json", &header, 1, body,
                          (size_t)length < sizeof(body) ? (size_t)length : sizeof(body) - 1);
}

static void api_gateway_chat_done(struct llm_call *call)
{
    struct api_gateway_chat *chat = call->context;
    const struct upstream_endpoint *endpoint =
        &call->core->set->endpoints[call->endpoint_used];
    char attempts[16];
    snprintf(attempts, sizeof(attempts), "%u", call->attempts);
    struct http_response_header headers[] = {
        {"Ringmaster-Endpoint", endpoint->config->name},
        {"Ringmaster-Key", endpoint->config->keys[call->key].name},
        {"Ringmaster-Attempts", attempts},
    };
    switch (call->outcome) {
    case LLM_OK:
    case LLM_UPSTREAM_ERROR:
        http_exchange_respond(chat->exchange, call->status, "application/json", headers, 3,
                              call->response_body, call->response_length);
        break;
    case LLM_BREAKER_OPEN:
        api_gateway_retry_after(chat->exchange, 503, "circuit_open", call->error, 1000);
        break;
    default:
        http_exchange_respond_error(chat->exchange, 502, "upstream_failed", call->error);
        break;
    }
    rm_free(chat);
}

/* The model and the completion budget of a chat request; NULL or what is wrong. */
static const char *api_gateway_chat_parse(const struct http_slice *body, char *model,
                                          size_t model_size, uint64_t *max_tokens)
{
    json_t *root = json_loadb(body->base, body->length, 0, NULL);
    const char *problem = NULL;
    json_t *name = json_object_get(root, "model");
    json_t *messages = json_object_get(root, "messages");
    json_t *limit = json_object_get(root, "max_completion_tokens");
    limit = limit != NULL ? limit : json_object_get(root, "max_tokens");
    if (!json_is_object(root)) {
        problem = "the body must be a JSON object (an OpenAI chat completions request)";
    } else if (!json_is_string(name) || json_string_length(name) == 0 ||
               json_string_length(name) >= model_size) {
        problem = "\"model\" must be a non-empty string of at most 63 bytes";
    } else if (!json_is_array(messages) || json_array_size(messages) == 0) {
        problem = "\"messages\" must be a non-empty array";
    } else if (json_is_true(json_object_get(root, "stream"))) {
        problem = "\"stream\": true is not supported by this gateway yet; send it without";
    } else {
        memcpy(model, json_string_value(name), json_string_length(name) + 1);
        *max_tokens = json_is_integer(limit) && json_integer_value(limit) > 0
                          ? (uint64_t)json_integer_value(limit)
                          : 0;
    }
    json_decref(root);
    return problem;
}

void api_gateway_chat(struct api_context *api, struct http_exchange *exchange)
{
    const struct http_request *request = http_exchange_request(exchange);
    char model[CONFIG_NAME_MAX];
    uint64_t max_tokens = 0;
    const char *problem =
        api_gateway_chat_parse(&request->body, model, sizeof(model), &max_tokens);
    if (problem != NULL) {
        http_exchange_respond_error(exchange, 400, "invalid_request_error", problem);
        return;
    }
    int endpoint = upstream_endpoint_for_model(api->upstreams, model, strlen(model));
    if (endpoint < 0) {
        http_exchange_respond_error(exchange, 404, "model_not_found",
                                    "no configured endpoint serves this model; add it to an "
                                    "endpoint's \"models\"");
        return;
    }
    struct api_gateway_chat *chat = rm_calloc(1, sizeof(*chat));
    if (chat == NULL) {
        http_exchange_respond_error(exchange, 503, "out_of_memory", "retry later");
        return;
    }
    chat->exchange = exchange;
    chat->call.endpoint = (uint32_t)endpoint;
    chat->call.body = request->body.base;
    chat->call.body_length = request->body.length;
    chat->call.estimated_tokens = llm_estimate_tokens(request->body.length, max_tokens);
    chat->call.on_complete = api_gateway_chat_done;
    chat->call.context = chat;
    uint32_t retry_after_ms = 0;
    if (llm_submit(api_gateway_core(exchange), &chat->call, &retry_after_ms) != 0) {
        api_gateway_retry_after(exchange, 429, "queue_full", chat->call.error, retry_after_ms);
        rm_free(chat);
    }
}

static void api_gateway_tool_respond(struct http_exchange *exchange, struct tool_call *call)
{
    struct http_response_header outcome = {"Ringmaster-Tool-Outcome",
                                           upstream_tool_outcome_name(call->outcome)};
    switch (call->outcome) {
    case TOOL_OK:
    case TOOL_FALLBACK:
        http_exchange_respond(exchange, 200, "application/json", &outcome, 1, call->result,
                              call->result_length);
        return;
    case TOOL_SHORT_CIRCUITED:
        api_gateway_retry_after(exchange, 503, "circuit_open", call->error,
                                call->retry_after_ms);
        return;
    case TOOL_TIMEOUT:
        http_exchange_respond_error(exchange, 504, "tool_timeout", call->error);
        return;
    default:
        if (call->status >= 400) {
            http_exchange_respond(exchange, call->status, "application/json", &outcome, 1,
                                  call->result, call->result_length);
        } else {
            http_exchange_respond_error(exchange, 502, "tool_failed", call->error);
        }
        return;
    }
}

static void api_gateway_tool_done(struct tool_call *call)
{
    struct api_gateway_tool *tool = call->context;
    api_gateway_tool_respond(tool->exchange, call);
    rm_free(tool);
}

void api_gateway_tool(struct api_context *api, struct http_exchange *exchange)
{
    const struct http_request *request = http_exchange_request(exchange);
    size_t prefix = strlen(API_GATEWAY_TOOL_PREFIX);
    RM_ASSERT(request->path.length >= prefix);
    int index = upstream_tool_find(api->upstreams, request->path.base + prefix,
                                   request->path.length - prefix);
    if (index < 0) {
        http_exchange_respond_error(exchange, 404, "tool_not_found",
                                    "no tool of this name is configured; see \"tools\"");
        return;
    }
    json_t *arguments = json_loadb(request->body.base, request->body.length, 0, NULL);
    bool valid = json_is_object(arguments);
    json_decref(arguments);
    if (!valid) {
        http_exchange_respond_error(exchange, 400, "invalid_arguments",
                                    "the body must be the tool's arguments as a JSON object");
        return;
    }
    struct api_gateway_tool *tool = rm_calloc(1, sizeof(*tool));
    if (tool == NULL) {
        http_exchange_respond_error(exchange, 503, "out_of_memory", "retry later");
        return;
    }
    tool->exchange = exchange;
    tool->call.tool = (uint32_t)index;
    tool->call.arguments = request->body.base;
    tool->call.arguments_length = request->body.length;
    tool->call.on_complete = api_gateway_tool_done;
    tool->call.context = tool;
    if (tool_call_start(api_gateway_core(exchange), &tool->call) != 0) {
        api_gateway_tool_respond(exchange, &tool->call);
        rm_free(tool);
    }
}
