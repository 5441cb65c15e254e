/* The invocation routes: POST /v1/agents/{agent}/invocations, GET and DELETE
 * /v1/invocations/{id}. They validate on the accepting core, hand the order to the owner core
 * by message and answer when it comes back. They live in core/ because they drive the
 * runtime; net/api.c reaches them through the pointers in struct api_context, so net/ never
 * includes the agent runtime. */

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/invocation.h"
#include "core/invocation_api.h"
#include "core/rm_assert.h"
#include "net/http_server.h"

#define INVOCATION_API_AGENTS "/v1/agents/"
#define INVOCATION_API_SUFFIX "/invocations"
#define INVOCATION_API_LOOKUP "/v1/invocations/"

struct invocation_api_call {
    struct invocation_order order;
    struct http_exchange *exchange;
};

static void invocation_api_reply(struct invocation_order *order)
{
    struct invocation_api_call *call = order->context;
    char seconds[16];
    snprintf(seconds, sizeof(seconds), "%u", order->retry_after_s);
    struct http_response_header retry = {"Retry-After", seconds};
    bool with_retry = order->status == 429 || order->status == 503;
    if (order->body == NULL) {
        http_exchange_respond_error(call->exchange, 503, "out_of_memory", "retry later");
    } else {
        http_exchange_respond(call->exchange, order->status, "application/json",
                              with_retry ? &retry : NULL, with_retry ? 1 : 0, order->body,
                              order->body_length);
    }
    rm_free(order->body);
    rm_free(order->input);
    rm_free(call);
}

static void invocation_api_deliver(struct reactor *target, struct reactor_message *message)
{
    struct invocation_api_call *call = message->pointer;
    invocation_order_run((struct invocation_runtime *)(uintptr_t)message->value, target,
                         &call->order);
}

/* Hands the order to its owner core (possibly this one, through its own mailbox). */
static void invocation_api_send(struct invocation_runtime *runtime, struct invocation_api_call *call,
                                uint32_t owner)
{
    struct reactor *here = http_exchange_reactor(call->exchange);
    call->order.origin = reactor_index(here);
    call->order.reply = invocation_api_reply;
    call->order.context = call;
    struct reactor_message message = {invocation_api_deliver, call,
                                      (uint64_t)(uintptr_t)runtime};
    if (reactor_post(here, owner, &message) != 0) {
        struct http_response_header retry = {"Retry-After", "1"};
        static const char body[] = "{\"error\":{\"type\":\"overloaded\",\"message\":\"the owner "
                                   "core's mailbox is full; retry later\"}}";
        http_exchange_respond(call->exchange, 503, "application/json", &retry, 1, body,
                              sizeof(body) - 1);
        rm_free(call->order.input);
        rm_free(call);
    }
}

static bool invocation_api_name_ok(const char *text, size_t length, size_t max)
{
    if (length == 0 || length > max) {
        return false;
    }
    for (size_t i = 0; i < length; i++) {
        char c = text[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.' || c == ':')) {
            return false;
        }
    }
    return true;
}

/* Fills the order from the body; returns NULL or what is wrong. */
static const char *invocation_api_body(struct invocation_order *order, const struct http_slice *body)
{
    json_t *root = json_loadb(body->base, body->length, 0, NULL);
    const char *problem = NULL;
    json_t *input = json_object_get(root, "input");
    json_t *session = json_object_get(root, "session");
    json_t *wait = json_object_get(root, "wait");
    if (!json_is_object(root)) {
        problem = "the body must be a JSON object: {\"input\": ..., \"session\": \"...\", "
                  "\"wait\": seconds}";
    } else if (input == NULL) {
        problem = "\"input\" is required (any JSON value: the user's message)";
    } else if (session != NULL && (!json_is_string(session) ||
                                   !invocation_api_name_ok(json_string_value(session),
                                                           json_string_length(session),
                                                           INVOCATION_SESSION_MAX))) {
        problem = "\"session\" must be 1 to 128 letters, digits, '_', '-', '.' or ':'";
    } else if (wait != NULL && (!json_is_number(wait) || json_number_value(wait) < 0 ||
                                json_number_value(wait) * 1000 > INVOCATION_WAIT_MS_MAX)) {
        problem = "\"wait\" must be a number of seconds from 0 to 300";
    } else {
        order->input = json_dumps(input, JSON_COMPACT | JSON_ENCODE_ANY);
        order->input_length = order->input != NULL ? strlen(order->input) : 0;
        order->wait_ms = wait != NULL ? (uint64_t)(json_number_value(wait) * 1000) : 0;
        if (session != NULL) {
            memcpy(order->session, json_string_value(session), json_string_length(session) + 1);
        }
        problem = order->input == NULL ? "out of memory reading the input" : NULL;
    }
    json_decref(root);
    return problem;
}

static const char *invocation_api_idempotency(struct invocation_order *order,
                                              const struct http_request *request)
{
    const struct http_slice *key = http_request_header(request, "Idempotency-Key");
    if (key == NULL) {
        return NULL;
    }
    if (key->length == 0 || key->length > INVOCATION_IDEMPOTENCY_MAX) {
        return "Idempotency-Key must be 1 to 128 printable characters";
    }
    for (size_t i = 0; i < key->length; i++) {
        if (key->base[i] <= ' ' || key->base[i] > '~' || key->base[i] == '/') {
            return "Idempotency-Key must be printable, without spaces or '/'";
        }
    }
    memcpy(order->idempotency, key->base, key->length);
    order->idempotency[key->length] = '\0';
    return NULL;
}

void invocation_api_create(void *context, struct http_exchange *exchange)
{
    struct invocation_runtime *runtime = context;
    const struct http_request *request = http_exchange_request(exchange);
    size_t prefix = strlen(INVOCATION_API_AGENTS), suffix = strlen(INVOCATION_API_SUFFIX);
    const char *path = request->path.base;
    size_t length = request->path.length;
    if (length <= prefix + suffix ||
        memcmp(path + length - suffix, INVOCATION_API_SUFFIX, suffix) != 0) {
        http_exchange_respond_error(exchange, 404, "not_found",
                                    "the path is /v1/agents/{agent}/invocations");
        return;
    }
    int agent = invocation_agent_find(runtime, path + prefix, length - prefix - suffix);
    if (agent < 0) {
        http_exchange_respond_error(exchange, 404, "agent_not_found",
                                    "no agent of this name is configured; see \"agents\"");
        return;
    }
    struct invocation_api_call *call = rm_calloc(1, sizeof(*call));
    if (call == NULL) {
        http_exchange_respond_error(exchange, 503, "out_of_memory", "retry later");
        return;
    }
    call->exchange = exchange;
    call->order.kind = INVOCATION_ORDER_CREATE;
    call->order.agent = (uint32_t)agent;
    const char *problem = invocation_api_body(&call->order, &request->body);
    problem = problem != NULL ? problem : invocation_api_idempotency(&call->order, request);
    if (problem != NULL) {
        http_exchange_respond_error(exchange, 400, "invalid_request", problem);
        rm_free(call->order.input);
        rm_free(call);
        return;
    }
    uint32_t here = reactor_index(http_exchange_reactor(exchange));
    invocation_api_send(runtime, call,
                        invocation_owner_of_session(runtime, (uint32_t)agent,
                                                    call->order.session, here));
}

void invocation_api_lookup(void *context, struct http_exchange *exchange)
{
    struct invocation_runtime *runtime = context;
    const struct http_request *request = http_exchange_request(exchange);
    size_t prefix = strlen(INVOCATION_API_LOOKUP);
    const char *id = request->path.base + prefix;
    size_t length = request->path.length - prefix;
    bool valid = length == INVOCATION_ID_BYTES;
    for (size_t i = 0; valid && i < length; i++) {
        valid = (id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f');
    }
    if (!valid) {
        http_exchange_respond_error(exchange, 404, "not_found",
                                    "an invocation id is 16 lowercase hex digits");
        return;
    }
    struct invocation_api_call *call = rm_calloc(1, sizeof(*call));
    if (call == NULL) {
        http_exchange_respond_error(exchange, 503, "out_of_memory", "retry later");
        return;
    }
    call->exchange = exchange;
    call->order.kind = request->method == HTTP_METHOD_DELETE ? INVOCATION_ORDER_CANCEL
                                                             : INVOCATION_ORDER_GET;
    memcpy(call->order.id, id, INVOCATION_ID_BYTES);
    invocation_api_send(runtime, call, invocation_owner_of_id(runtime, call->order.id));
}
