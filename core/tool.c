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
        call->outcome = TOOL_FALLBACK;
        call->result = config->fallback;
        call->result_length = strlen(config->fallback);
        call->error[0] = '\0';
        return;
    }
    call->outcome = TOOL_SHORT_CIRCUITED;
    call->result = NULL;
    call->result_length = 0;
    snprintf(call->error, sizeof(call->error), "tool %s: %.240s", config->name,
             config->fallback_kind == CONFIG_FALLBACK_ERROR ? config->fallback
                                                            : tool_circuit_open);
}

static void tool_complete_http(struct http_client_request *request,
                               const struct http_client_response *response)
{
    struct tool_call *call = request->context;
    struct upstream_core *core = call->core;
    const struct upstream_tool *tool = &core->set->tools[call->tool];
    uint64_t now = reactor_now_ns(core->reactor);
    call->status = response->status;
    call->result = response->body;
    call->result_length = response->body_length;
    call->error[0] = '\0';
    bool answered = response->outcome == HTTP_CLIENT_OK ||
                    response->outcome == HTTP_CLIENT_HTTP_ERROR;
    if (answered && response->status >= 200 && response->status < 300) {
        call->outcome = TOOL_OK;
    } else {
        call->outcome = response->outcome == HTTP_CLIENT_TIMEOUT ? TOOL_TIMEOUT : TOOL_ERROR;
        if (answered) {
            snprintf(call->error, sizeof(call->error), "tool %s answered %d",
                     tool->config->name, response->status);
        } else {
            snprintf(call->error, sizeof(call->error), "%.300s", response->error);
        }
    }
    bool failed = !answered || response->status == 429 || response->status >= 500;
    breaker_release(core->set->breakers, core->core, (uint32_t)tool->breaker,
                    (enum breaker_permit)call->permit, failed, now - call->start_ns, now);
    tool_count(call, now);
    RM_ASSERT(core->active > 0);
    core->active--;
    call->on_complete(call);
}

int tool_call_start(struct upstream_core *core, struct tool_call *call)
{
    RM_ASSERT(core != NULL && call != NULL && call->on_complete != NULL);
    RM_ASSERT(call->tool < core->set->tool_count);
    const struct upstream_tool *tool = &core->set->tools[call->tool];
    uint64_t now = reactor_now_ns(core->reactor);
    call->core = core;
    call->start_ns = now;
    call->retry_after_ms = 0;
    enum breaker_permit permit =
        breaker_acquire(core->set->breakers, core->core, (uint32_t)tool->breaker, now);
    if (permit == BREAKER_DENIED) {
        tool_short_circuit(call, now);
        tool_count(call, now);
        return 1;
    }
    call->permit = (int)permit;
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
    core->active++;
    if (http_client_send(core->client, &call->request) != 0) {
        core->active--;
        breaker_release(core->set->breakers, core->core, (uint32_t)tool->breaker, permit, true,
                        0, now);
        call->outcome = TOOL_ERROR;
        call->status = 0;
        call->result = NULL;
        call->result_length = 0;
        snprintf(call->error, sizeof(call->error), "%.300s", call->request.error);
        tool_count(call, now);
        return 1;
    }
    return 0;
}

void tool_call_cancel(struct tool_call *call)
{
    struct upstream_core *core = call->core;
    const struct upstream_tool *tool = &core->set->tools[call->tool];
    http_client_cancel(&call->request);
    uint64_t now = reactor_now_ns(core->reactor);
    /* A probe permit must come back or the breaker would stay half-open. */
    breaker_release(core->set->breakers, core->core, (uint32_t)tool->breaker,
                    (enum breaker_permit)call->permit, false, now - call->start_ns, now);
    RM_ASSERT(core->active > 0);
    core->active--;
}
