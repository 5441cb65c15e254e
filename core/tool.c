/* Tool calls through the tool's breaker. */

#include <stdio.h>
#include <string.h>

#include "core/breaker.h"
#include "core/metrics.h"
#include "core/rm_assert.h"
#include "core/tool.h"

static const char tool_circuit_open[] = "circuit open";

static void tool_count(struct tool_call *call, uint64_t now_ns)
{
    struct upstream_core *core = call->core;
    struct upstream_tool *tool = &core->set->tools[call->tool];
    call->duration_ns = now_ns - call->start_ns;
    metrics_add(core->set->metrics, core->core, tool->calls[call->outcome], 1);
    metrics_observe(core->set->metrics, core->core, tool->duration, call->duration_ns);
}

/* The configured fallback value as the answer. */
static void tool_fallback_value(struct tool_call *call, const struct config_tool *config)
{
    RM_ASSERT(config->fallback_kind == CONFIG_FALLBACK_VALUE);
    call->outcome = TOOL_FALLBACK;
    call->result = config->fallback;
    call->result_length = strlen(config->fallback);
    call->error[0] = '\0';
}

/* Breaker open: the fallback value, or an error, without touching the upstream. */
static void tool_short_circuit(struct tool_call *call, uint64_t now_ns)
{
    const struct upstream_tool *tool = &call->core->set->tools[call->tool];
    const struct config_tool *config = tool->config;
    struct breaker_view view;
    breaker_view(call->core->set->breakers, (uint32_t)tool->breaker, &view);
    call->retry_after_ms = view.open_until_ns > now_ns
                               ? (view.open_until_ns - now_ns + 999999) / 1000000
                               : 1;
    call->status = 0;
    if (config->fallback_kind == CONFIG_FALLBACK_VALUE) {
        tool_fallback_value(call, config);
        return;
    }
    call->outcome = TOOL_SHORT_CIRCUITED;
    call->result = NULL;
    call->result_length = 0;
    snprintf(call->error, sizeof(call->error), "tool %s: %.240s", config->name,
             config->fallback_kind == CONFIG_FALLBACK_ERROR ? config->fallback
                                                            : tool_circuit_open);
}

static void tool_backoff_push(struct tool_call *call, uint64_t now_ns)
{
    struct upstream_core *core = call->core;
    const struct upstream_tool *tool = &core->set->tools[call->tool];
    RM_ASSERT(!call->backing_off);
    call->due_ns = now_ns + upstream_backoff_ns(core, &tool->config->retry, call->attempts);
    call->backing_off = true;
    call->backoff_previous = NULL;
    call->backoff_next = core->tool_backoff;
    if (core->tool_backoff != NULL) {
        core->tool_backoff->backoff_previous = call;
    }
    core->tool_backoff = call;
}

static void tool_backoff_remove(struct tool_call *call)
{
    RM_ASSERT(call->backing_off);
    if (call->backoff_previous != NULL) {
        call->backoff_previous->backoff_next = call->backoff_next;
    } else {
        call->core->tool_backoff = call->backoff_next;
    }
    if (call->backoff_next != NULL) {
        call->backoff_next->backoff_previous = call->backoff_previous;
    }
    call->backing_off = false;
}

/* Fills outcome, status, result and error from an attempt's response; returns whether the
 * upstream failed (a breaker failure, worth another attempt). */
static bool tool_read_response(struct tool_call *call, const struct http_client_response *response)
{
    const struct upstream_tool *tool = &call->core->set->tools[call->tool];
    call->status = response->status;
    call->result = response->body;
    call->result_length = response->body_length;
    call->error[0] = '\0';
    bool answered = response->outcome == HTTP_CLIENT_OK ||
                    response->outcome == HTTP_CLIENT_HTTP_ERROR;
    if (answered && response->status >= 200 && response->status < 300) {
        call->outcome = TOOL_OK;
        return false;
    }
    call->outcome = response->outcome == HTTP_CLIENT_TIMEOUT ? TOOL_TIMEOUT : TOOL_ERROR;
    if (answered) {
        snprintf(call->error, sizeof(call->error), "tool %s answered %d", tool->config->name,
                 response->status);
    } else {
        snprintf(call->error, sizeof(call->error), "%.300s", response->error);
    }
    return !answered || response->status == 429 || response->status >= 500;
}

static void tool_finish(struct tool_call *call, uint64_t now_ns)
{
    struct upstream_core *core = call->core;
    tool_count(call, now_ns);
    RM_ASSERT(core->active > 0);
    core->active--;
    call->on_complete(call);
}

static void tool_complete_http(struct http_client_request *request,
                               const struct http_client_response *response)
{
    struct tool_call *call = request->context;
    struct upstream_core *core = call->core;
    const struct upstream_tool *tool = &core->set->tools[call->tool];
    uint64_t now = reactor_now_ns(core->reactor);
    bool failed = tool_read_response(call, response);
    breaker_release(core->set->breakers, core->core, (uint32_t)tool->breaker,
                    (enum breaker_permit)call->permit, failed, now - call->attempt_start_ns, now);
    if (failed && call->attempts < tool->config->retry.max_attempts) {
        metrics_add(core->set->metrics, core->core, tool->retries, 1);
        tool_backoff_push(call, now);
        return;
    }
    if (failed && tool->config->fallback_on_error) {
        tool_fallback_value(call, tool->config);
    }
    tool_finish(call, now);
}

/* One attempt through the breaker. Returns 0 when it went out, 1 when the call completed at
 * once (breaker open, or the client refused it) with its results filled and counted. */
static int tool_attempt(struct tool_call *call, uint64_t now_ns)
{
    struct upstream_core *core = call->core;
    const struct upstream_tool *tool = &core->set->tools[call->tool];
    enum breaker_permit permit =
        breaker_acquire(core->set->breakers, core->core, (uint32_t)tool->breaker, now_ns);
    if (permit == BREAKER_DENIED) {
        tool_short_circuit(call, now_ns);
        tool_count(call, now_ns);
        return 1;
    }
    call->permit = (int)permit;
    call->attempt_start_ns = now_ns;
    call->attempts++;
    call->headers[0] = (struct http_client_header){"Content-Type", "application/json"};
    call->request = (struct http_client_request){
        .upstream = core->tool_upstream[call->tool],
        .method = "POST",
        .path = "",
        .headers = call->headers,
        .header_count = 1,
        .body = call->arguments,
        .body_length = call->arguments_length,
        .on_complete = tool_complete_http,
        .context = call,
    };
    if (http_client_send(core->client, &call->request) != 0) {
        breaker_release(core->set->breakers, core->core, (uint32_t)tool->breaker, permit, true,
                        0, now_ns);
        call->outcome = TOOL_ERROR;
        call->status = 0;
        call->result = NULL;
        call->result_length = 0;
        snprintf(call->error, sizeof(call->error), "%.300s", call->request.error);
        tool_count(call, now_ns);
        return 1;
    }
    return 0;
}

int tool_call_start(struct upstream_core *core, struct tool_call *call)
{
    RM_ASSERT(core != NULL && call != NULL && call->on_complete != NULL);
    RM_ASSERT(call->tool < core->set->tool_count);
    uint64_t now = reactor_now_ns(core->reactor);
    call->core = core;
    call->start_ns = now;
    call->attempts = 0;
    call->retry_after_ms = 0;
    call->backing_off = false;
    if (tool_attempt(call, now) != 0) {
        return 1;
    }
    core->active++;
    return 0;
}

void tool_pump_backoff(struct upstream_core *core, uint64_t now_ns)
{
    struct tool_call *call = core->tool_backoff;
    while (call != NULL) {
        struct tool_call *next = call->backoff_next;
        if (call->due_ns <= now_ns) {
            tool_backoff_remove(call);
            if (tool_attempt(call, now_ns) != 0) {
                RM_ASSERT(core->active > 0);
                core->active--;
                call->on_complete(call);
            }
        }
        call = next;
    }
}

void tool_call_cancel(struct tool_call *call)
{
    struct upstream_core *core = call->core;
    RM_ASSERT(core->active > 0);
    core->active--;
    if (call->backing_off) {
        tool_backoff_remove(call); /* its permit went back when the attempt failed */
        return;
    }
    const struct upstream_tool *tool = &core->set->tools[call->tool];
    http_client_cancel(&call->request);
    uint64_t now = reactor_now_ns(core->reactor);
    /* A probe permit must come back or the breaker would stay half-open. */
    breaker_release(core->set->breakers, core->core, (uint32_t)tool->breaker,
                    (enum breaker_permit)call->permit, false, now - call->attempt_start_ns, now);
}
