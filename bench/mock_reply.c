/* Answers, now or later. A delayed answer (latency, or a hang) is copied into one of the
 * core's fixed pending slots and an io_uring timeout is armed; its completion sends it. The
 * reactor never sleeps, so thousands of slow answers cost one slot each and nothing else.
 * A hang is an answer held for max_hang_ms: if the client gives up first, the server drops
 * the late answer and frees the connection then. */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "bench/mock.h"
#include "core/alloc.h"
#include "core/rm_assert.h"

int mock_reply_init(struct mock_core *core)
{
    RM_ASSERT(core->pending == NULL);
    RM_ASSERT(core->mock != NULL);
    core->pending = rm_calloc(MOCK_PENDING_MAX, sizeof(*core->pending));
    if (core->pending == NULL) {
        return -ENOMEM;
    }
    core->free_pending = NULL;
    for (uint32_t i = MOCK_PENDING_MAX; i-- > 0;) {
        core->pending[i].core = core;
        core->pending[i].next_free = core->free_pending;
        core->free_pending = &core->pending[i];
    }
    return 0;
}

/* At teardown the ring is gone: answers still pending are dropped with their connections. */
void mock_reply_free(struct mock_core *core)
{
    RM_ASSERT(core != NULL);
    if (core->pending == NULL) {
        return;
    }
    for (uint32_t i = 0; i < MOCK_PENDING_MAX; i++) {
        struct mock_pending *pending = &core->pending[i];
        if (pending->active && pending->response.body_owned) {
            rm_free(pending->response.body);
        }
        if (pending->active && pending->response.holds_slot) {
            mock_limits_release(core->mock);
        }
    }
    rm_free(core->pending);
    core->pending = NULL;
}

void mock_reply_header(struct mock_response *response, const char *name, const char *format, ...)
{
    RM_ASSERT(response->header_count < MOCK_RESPONSE_HEADERS_MAX);
    RM_ASSERT(name != NULL);
    size_t index = response->header_count++;
    response->names[index] = name;
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(response->values[index], MOCK_HEADER_VALUE_MAX, format, arguments);
    va_end(arguments);
}

static void mock_reply_send(struct mock_core *core, struct http_exchange *exchange,
                            struct mock_response *response)
{
    RM_ASSERT(response->status >= 200 && response->status <= 599);
    RM_ASSERT(response->header_count <= MOCK_RESPONSE_HEADERS_MAX);
    struct http_response_header headers[MOCK_RESPONSE_HEADERS_MAX];
    for (size_t i = 0; i < response->header_count; i++) {
        headers[i] = (struct http_response_header){response->names[i], response->values[i]};
    }
    http_exchange_respond(exchange, response->status, response->content_type, headers,
                          response->header_count, response->body, response->body_length);
    if (response->body_owned) {
        rm_free(response->body);
        response->body = NULL;
    }
    if (response->holds_slot) {
        mock_limits_release(core->mock);
        response->holds_slot = false;
    }
}

static void mock_reply_on_timeout(struct reactor_op *op, int result, uint32_t flags)
{
    (void)flags;
    struct mock_pending *pending = op->context;
    struct mock_core *core = pending->core;
    RM_ASSERT(pending->active);
    RM_ASSERT(result == -ETIME || result == -ECANCELED || result == 0);
    mock_reply_send(core, pending->exchange, &pending->response);
    pending->active = false;
    pending->exchange = NULL;
    pending->next_free = core->free_pending;
    core->free_pending = pending;
}

void mock_reply(struct mock_core *core, struct http_exchange *exchange,
                struct mock_response *response, uint32_t delay_ms)
{
    RM_ASSERT(!response->body_owned);
    RM_ASSERT(delay_ms <= MOCK_LATENCY_MS_MAX);
    struct mock_pending *pending = core->free_pending;
    if (delay_ms == 0 || pending == NULL || reactor_group_stopping(core->mock->group)) {
        if (delay_ms != 0) {
            mock_stats_add(core, MOCK_COUNT_OVERLOADED, 1); /* answered early: no slot */
        }
        mock_reply_send(core, exchange, response);
        return;
    }
    char *body = rm_malloc(response->body_length + 1);
    if (body == NULL) {
        mock_reply_send(core, exchange, response);
        return;
    }
    memcpy(body, response->body, response->body_length);
    core->free_pending = pending->next_free;
    pending->response = *response;
    pending->response.body = body;
    pending->response.body_owned = true;
    pending->exchange = exchange;
    pending->active = true;
    pending->op = (struct reactor_op){mock_reply_on_timeout, pending};
    pending->timeout.tv_sec = delay_ms / 1000;
    pending->timeout.tv_nsec = (long long)(delay_ms % 1000) * 1000000;
    struct io_uring_sqe *sqe = reactor_sqe(core->reactor, &pending->op);
    io_uring_prep_timeout(sqe, &pending->timeout, 0, 0);
}

/* OpenAI's error shape: {"error":{"message","type","param","code"}}, built in scratch. */
void mock_reply_error_body(struct mock_core *core, struct mock_response *response, int status,
                           const char *type, const char *code, const char *message)
{
    RM_ASSERT(status >= 400);
    RM_ASSERT(type != NULL && message != NULL);
    struct mock_json *json = &core->scratch;
    mock_json_reset(json);
    mock_json_text(json, "{\"error\":{\"message\":");
    mock_json_string(json, message, strlen(message));
    mock_json_format(json, ",\"type\":\"%s\",\"param\":null,\"code\":", type);
    if (code != NULL) {
        mock_json_format(json, "\"%s\"}}", code);
    } else {
        mock_json_text(json, "null}}");
    }
    RM_ASSERT(!json->overflow);
    response->status = status;
    response->content_type = "application/json";
    response->body = json->data;
    response->body_length = json->length;
    response->body_owned = false;
}

void mock_reply_error(struct mock_core *core, struct http_exchange *exchange, int status,
                      const char *type, const char *code, const char *message)
{
    struct mock_response response = {0};
    mock_reply_error_body(core, &response, status, type, code, message);
    mock_reply(core, exchange, &response, 0);
}

void mock_reply_flush(struct mock_core *core)
{
    RM_ASSERT(core->reactor == reactor_current());
    RM_ASSERT(core->pending != NULL);
    for (uint32_t i = 0; i < MOCK_PENDING_MAX; i++) {
        struct mock_pending *pending = &core->pending[i];
        if (pending->active) {
            struct io_uring_sqe *sqe = reactor_sqe(core->reactor, NULL);
            io_uring_prep_timeout_remove(sqe, (uint64_t)(uintptr_t)&pending->op, 0);
        }
    }
}

int mock_reply_key(struct mock_core *core, const struct http_request *request)
{
    RM_ASSERT(request != NULL);
    const struct http_slice *value = http_request_header(request, "authorization");
    const char *key = "";
    size_t length = 0;
    if (value != NULL && value->length > 7 && strncasecmp(value->base, "Bearer ", 7) == 0) {
        key = value->base + 7;
        length = value->length - 7;
    }
    if (length >= MOCK_NAME_MAX) {
        return MOCK_NAMES_MAX;
    }
    int index = mock_names_find(&core->mock->keys, key, length);
    return index < 0 ? MOCK_NAMES_MAX : index;
}
