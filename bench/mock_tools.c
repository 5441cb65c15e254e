/* POST /tools/{name}: a tool that echoes its JSON arguments and adds a result, after the
 * tool's latency, or fails (500) or hangs as its fault rates say. Per-tool rules override
 * the defaults for all tools. */

#include <jansson.h>
#include <string.h>

#include "bench/mock.h"
#include "core/rm_assert.h"

static bool mock_tools_name_valid(const char *name, size_t length)
{
    if (length == 0 || length >= MOCK_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < length; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.';
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* The body must be JSON (or empty: no arguments); it is echoed byte for byte. */
static bool mock_tools_body_valid(const struct http_slice *body)
{
    if (body->length == 0) {
        return true;
    }
    json_error_t error;
    json_t *root = json_loadb(body->base, body->length, JSON_DECODE_ANY, &error);
    json_decref(root);
    return root != NULL;
}

static void mock_tools_result(struct mock_core *core, struct mock_response *response,
                              const char *name, size_t length, const struct http_slice *body)
{
    struct mock_json *json = &core->scratch;
    mock_json_reset(json);
    mock_json_text(json, "{\"tool\":");
    mock_json_string(json, name, length);
    mock_json_text(json, ",\"arguments\":");
    if (body->length == 0) {
        mock_json_text(json, "null");
    } else {
        mock_json_raw(json, body->base, body->length);
    }
    struct mock_json *text = &core->text;
    mock_json_reset(text);
    mock_json_format(text, "mock result %llu of tool ", (unsigned long long)++core->sequence);
    mock_json_raw(text, name, length);
    mock_json_text(json, ",\"result\":");
    mock_json_string(json, text->data, text->length);
    mock_json_text(json, ",\"ok\":true}");
    response->status = 200;
    response->content_type = "application/json";
    response->body = json->data;
    response->body_length = json->length;
}

void mock_tools_handle(struct mock_core *core, struct http_exchange *exchange, const char *name,
                       size_t length)
{
    RM_ASSERT(core->reactor == reactor_current());
    const struct http_request *request = http_exchange_request(exchange);
    RM_ASSERT(request != NULL);
    mock_stats_add(core, MOCK_COUNT_TOOLS, 1);
    if (!mock_tools_name_valid(name, length)) {
        mock_stats_add(core, MOCK_COUNT_BAD_REQUESTS, 1);
        mock_reply_error(core, exchange, 404, "invalid_request_error", NULL,
                         "tool names are 1 to 95 bytes of [A-Za-z0-9_.-]");
        return;
    }
    int tool = mock_names_find(&core->mock->tools, name, length);
    mock_stats_add(core, MOCK_COUNT_TOOL_CALLS + (uint32_t)(tool < 0 ? MOCK_NAMES_MAX : tool), 1);
    if (request->method != HTTP_METHOD_POST || !mock_tools_body_valid(&request->body)) {
        mock_stats_add(core, MOCK_COUNT_BAD_REQUESTS, 1);
        mock_reply_error(core, exchange, 400, "invalid_request_error", NULL,
                         "POST the tool's arguments as a JSON body");
        return;
    }
    const struct mock_faults *faults = mock_config_tool_faults(&core->mock->config, name, length);
    struct mock_response response = {0};
    enum mock_fault fault = mock_random_fault(core, faults);
    uint32_t delay_ms = mock_random_latency_ms(core, &faults->latency);
    if (fault == MOCK_FAULT_ERROR) {
        mock_reply_error_body(core, &response, 500, "tool_error", NULL,
                              "the tool failed (injected by ringmaster-mock)");
        mock_stats_add(core, MOCK_COUNT_ERRORS_TOOLS, 1);
    } else if (fault == MOCK_FAULT_HANG) {
        mock_reply_error_body(core, &response, 504, "timeout", NULL,
                              "ringmaster-mock held this request for max_hang_ms (a hang).");
        mock_stats_add(core, MOCK_COUNT_HANGS_TOOLS, 1);
        delay_ms = core->mock->config.max_hang_ms;
    } else {
        mock_tools_result(core, &response, name, length, &request->body);
    }
    if (core->scratch.overflow) {
        mock_reply_error(core, exchange, 500, "server_error", NULL,
                         "the tool's answer would exceed the mock's body size limit");
        return;
    }
    mock_reply(core, exchange, &response, delay_ms);
}
