/* The gateway routes: POST /v1/chat/completions through the LLM queue of the endpoint that
 * serves the model, and POST /v1/tools/{tool} through the tool's breaker.
 *
 * "stream": true is streamed through as OpenAI does it: the upstream's events are passed on
 * as they arrive ("data: {...}\n\n" ... "data: [DONE]\n\n"). Until the first event nothing
 * is sent, so a call that fails before it gets the usual JSON error; one that breaks off
 * after it gets a last "data: {"error":{...}}" event. */

#include <errno.h>
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
/* Events up to this size are framed on the stack; larger ones in a heap buffer. */
#define API_GATEWAY_EVENT_STACK_BYTES 4096

struct api_gateway_chat {
    struct http_exchange *exchange;
    bool stream;    /* the request asked for "stream": true */
    bool streaming; /* the streamed answer has begun */
    struct llm_call call;
};

/* What the gateway reads from a chat request. */
struct api_gateway_chat_request {
    char model[CONFIG_NAME_MAX];
    uint64_t max_tokens; /* 0: not given */
    bool stream;
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

#define API_GATEWAY_CHAT_HEADERS 4

/* The headers of an answer from an endpoint: which endpoint and key served it, after how
 * many attempts. `attempts` holds the number's text (16 bytes). */
static void api_gateway_chat_headers(const struct llm_call *call,
                                     struct http_response_header *headers, char *attempts)
{
    const struct upstream_endpoint *endpoint =
        &call->core->set->endpoints[call->endpoint_used];
    RM_ASSERT(call->attempts >= 1);
    RM_ASSERT(call->key_used < endpoint->config->key_count);
    snprintf(attempts, 16, "%u", call->attempts);
    headers[0] = (struct http_response_header){"Ringmaster-Endpoint", endpoint->config->name};
    headers[1] = (struct http_response_header){"Ringmaster-Key",
                                               endpoint->config->keys[call->key_used].name};
    headers[2] = (struct http_response_header){"Ringmaster-Attempts", attempts};
    headers[3] = (struct http_response_header){"Cache-Control", "no-cache"};
}

/* Starts the streamed answer once; the headers are the attempt's that streams. */
static int api_gateway_stream_begin(struct api_gateway_chat *chat)
{
    if (chat->streaming) {
        return 0;
    }
    struct http_response_header headers[API_GATEWAY_CHAT_HEADERS];
    char attempts[16];
    api_gateway_chat_headers(&chat->call, headers, attempts);
    chat->streaming = true; /* from here on the stream must be ended, whatever happens */
    return http_exchange_stream_begin(chat->exchange, 200, "text/event-stream", headers,
                                      API_GATEWAY_CHAT_HEADERS);
}

/* Frames `data` as one event: "data: " before each of its lines, a blank line after. */
static size_t api_gateway_event_frame(char *frame, const char *data, size_t length)
{
    size_t used = 0;
    memcpy(frame, "data: ", 6);
    used += 6;
    for (size_t i = 0; i < length; i++) {
        if (data[i] == '\n') {
            memcpy(frame + used, "\ndata: ", 7);
            used += 7;
        } else {
            frame[used++] = data[i];
        }
    }
    memcpy(frame + used, "\n\n", 2);
    return used + 2;
}

/* Writes one event to the stream; the stream's error when it is gone. */
static int api_gateway_event_write(struct http_exchange *exchange, const char *data,
                                   size_t length)
{
    size_t lines = 0;
    for (const char *at = memchr(data, '\n', length); at != NULL;
         at = memchr(at + 1, '\n', length - (size_t)(at + 1 - data))) {
        lines++;
    }
    size_t size = length + 6 * lines + 8;
    char stack[API_GATEWAY_EVENT_STACK_BYTES];
    char *frame = size <= sizeof(stack) ? stack : rm_malloc(size);
    if (frame == NULL) {
        return -ENOMEM;
    }
    size_t framed = api_gateway_event_frame(frame, data, length);
    RM_ASSERT(framed == size);
    int result = http_exchange_stream_write(exchange, frame, framed);
    if (frame != stack) {
        rm_free(frame);
    }
    return result;
}

/* An event of the upstream's stream: passed on at once. A client that went away (or could
 * not keep up) ends the call: nobody would read the rest. */
static void api_gateway_chat_event(struct llm_call *call, const char *data, size_t length)
{
    struct api_gateway_chat *chat = call->context;
    RM_ASSERT(chat->stream);
    RM_ASSERT(&chat->call == call);
    int result = api_gateway_stream_begin(chat);
    if (result == 0) {
        result = api_gateway_event_write(chat->exchange, data, length);
    }
    if (result != 0) {
        llm_cancel(call);
        http_exchange_stream_end(chat->exchange);
        rm_free(chat);
    }
}

/* The end of a streamed answer: after a failure a last event says what happened. */
static void api_gateway_stream_finish(struct api_gateway_chat *chat)
{
    const struct llm_call *call = &chat->call;
    if (call->outcome != LLM_OK) {
        json_t *text = json_string(call->error);
        char *message = json_dumps(text, JSON_ENCODE_ANY);
        char event[LLM_ERROR_MAX + 128];
        int length = snprintf(event, sizeof(event),
                              "{\"error\":{\"type\":\"upstream_failed\",\"message\":%s}}",
                              message != NULL ? message : "\"\"");
        rm_free(message);
        json_decref(text);
        RM_ASSERT(length > 0);
        size_t used = (size_t)length < sizeof(event) ? (size_t)length : sizeof(event) - 1;
        api_gateway_event_write(chat->exchange, event, used);
    }
    http_exchange_stream_end(chat->exchange);
}

static void api_gateway_chat_done(struct llm_call *call)
{
    struct api_gateway_chat *chat = call->context;
    bool empty_stream = chat->stream && call->outcome == LLM_OK && call->response_body == NULL;
    if (chat->streaming || empty_stream) {
        api_gateway_stream_begin(chat); /* an event stream without events: begun here */
        api_gateway_stream_finish(chat);
        rm_free(chat);
        return;
    }
    struct http_response_header headers[API_GATEWAY_CHAT_HEADERS];
    char attempts[16];
    switch (call->outcome) {
    case LLM_OK:
    case LLM_UPSTREAM_ERROR:
        api_gateway_chat_headers(call, headers, attempts);
        /* Without the last header: Cache-Control is for the event stream. */
        http_exchange_respond(chat->exchange, call->status, "application/json", headers,
                              API_GATEWAY_CHAT_HEADERS - 1, call->response_body,
                              call->response_length);
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

/* The model, the completion budget and the streaming of a chat request; NULL or what is
 * wrong. */
static const char *api_gateway_chat_parse(const struct http_slice *body,
                                          struct api_gateway_chat_request *chat)
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
               json_string_length(name) >= sizeof(chat->model)) {
        problem = "\"model\" must be a non-empty string of at most 63 bytes";
    } else if (!json_is_array(messages) || json_array_size(messages) == 0) {
        problem = "\"messages\" must be a non-empty array";
    } else {
        memcpy(chat->model, json_string_value(name), json_string_length(name) + 1);
        chat->max_tokens = json_is_integer(limit) && json_integer_value(limit) > 0
                               ? (uint64_t)json_integer_value(limit)
                               : 0;
        chat->stream = json_is_true(json_object_get(root, "stream"));
    }
    json_decref(root);
    return problem;
}

void api_gateway_chat(struct api_context *api, struct http_exchange *exchange)
{
    const struct http_request *request = http_exchange_request(exchange);
    struct api_gateway_chat_request parsed = {0};
    const char *problem = api_gateway_chat_parse(&request->body, &parsed);
    if (problem != NULL) {
        http_exchange_respond_error(exchange, 400, "invalid_request_error", problem);
        return;
    }
    int endpoint =
        upstream_endpoint_for_model(api->upstreams, parsed.model, strlen(parsed.model));
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
    chat->stream = parsed.stream;
    chat->call.endpoint = (uint32_t)endpoint;
    chat->call.body = request->body.base;
    chat->call.body_length = request->body.length;
    chat->call.estimated_tokens = llm_estimate_tokens(request->body.length, parsed.max_tokens);
    chat->call.on_complete = api_gateway_chat_done;
    chat->call.on_event = parsed.stream ? api_gateway_chat_event : NULL;
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
