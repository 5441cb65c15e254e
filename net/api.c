#include "net/api.h"

#include <string.h>

#include "core/alloc.h"
#include "core/metrics.h"
#include "core/rm_assert.h"
#include "net/api_admin.h"
#include "net/api_gateway.h"
#include "net/api_state.h"

#define API_METHOD_BIT(method) (1u << (method))
#define API_READ_METHODS (API_METHOD_BIT(HTTP_METHOD_GET) | API_METHOD_BIT(HTTP_METHOD_HEAD))

typedef void (*api_handler)(struct api_context *context, struct http_exchange *exchange);

struct api_route_entry {
    const char *path; /* exact, or a prefix when it ends with '/' */
    enum api_route route;
    uint32_t methods;
    const char *allow; /* the Allow header for 405 */
    api_handler handler;
};

const char *const api_route_names[API_ROUTE_COUNT] = {
    [API_ROUTE_UNMATCHED] = "unmatched",
    [API_ROUTE_HEALTHZ] = "/healthz",
    [API_ROUTE_READYZ] = "/readyz",
    [API_ROUTE_METRICS] = "/metrics",
    [API_ROUTE_STATE] = "/v1/state/{ns}/{key}",
    [API_ROUTE_CHAT] = "/v1/chat/completions",
    [API_ROUTE_TOOLS] = "/v1/tools/{tool}",
    [API_ROUTE_ADMIN] = "/v1/admin/{view}",
    [API_ROUTE_INVOKE] = "/v1/agents/{agent}/invocations",
    [API_ROUTE_INVOCATION] = "/v1/invocations/{id}",
};

static void api_healthz(struct api_context *context, struct http_exchange *exchange)
{
    (void)context;
    static const char body[] = "{\"status\":\"ok\"}";
    http_exchange_respond(exchange, 200, "application/json", NULL, 0, body, sizeof(body) - 1);
}

static void api_readyz(struct api_context *context, struct http_exchange *exchange)
{
    RM_ASSERT(context->ready != NULL);
    if (__atomic_load_n(context->ready, __ATOMIC_RELAXED)) {
        static const char body[] = "{\"status\":\"ready\"}";
        http_exchange_respond(exchange, 200, "application/json", NULL, 0, body,
                              sizeof(body) - 1);
        return;
    }
    static const struct http_response_header retry[] = {{"Retry-After", "1"}};
    static const char body[] = "{\"status\":\"not_ready\"}";
    http_exchange_respond(exchange, 503, "application/json", retry, 1, body, sizeof(body) - 1);
}

static void api_metrics(struct api_context *context, struct http_exchange *exchange)
{
    RM_ASSERT(context->metrics != NULL);
    char *text = NULL;
    size_t length = metrics_render(context->metrics, &text);
    if (text == NULL) {
        http_exchange_respond_error(exchange, 503, "out_of_memory",
                                    "metrics could not be rendered; retry later");
        return;
    }
    http_exchange_respond(exchange, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, 0,
                          text, length);
    rm_free(text);
}

static void api_invoke(struct api_context *context, struct http_exchange *exchange)
{
    if (context->invoke == NULL) {
        http_exchange_respond_error(exchange, 404, "not_found", "no agent runtime");
        return;
    }
    context->invoke(context->runtime, exchange);
}

static void api_invocation(struct api_context *context, struct http_exchange *exchange)
{
    if (context->invocation == NULL) {
        http_exchange_respond_error(exchange, 404, "not_found", "no agent runtime");
        return;
    }
    context->invocation(context->runtime, exchange);
}

static const struct api_route_entry api_routes[] = {
    {"/healthz", API_ROUTE_HEALTHZ, API_READ_METHODS, "GET, HEAD", api_healthz},
    {"/readyz", API_ROUTE_READYZ, API_READ_METHODS, "GET, HEAD", api_readyz},
    {"/metrics", API_ROUTE_METRICS, API_READ_METHODS, "GET, HEAD", api_metrics},
    {"/v1/state/", API_ROUTE_STATE,
     API_READ_METHODS | API_METHOD_BIT(HTTP_METHOD_PUT) | API_METHOD_BIT(HTTP_METHOD_DELETE),
     "GET, HEAD, PUT, DELETE", api_state_handle},
    {"/v1/chat/completions", API_ROUTE_CHAT, API_METHOD_BIT(HTTP_METHOD_POST), "POST",
     api_gateway_chat},
    {"/v1/tools/", API_ROUTE_TOOLS, API_METHOD_BIT(HTTP_METHOD_POST), "POST", api_gateway_tool},
    {"/v1/admin/", API_ROUTE_ADMIN, API_READ_METHODS, "GET, HEAD", api_admin_handle},
    {"/v1/agents/", API_ROUTE_INVOKE, API_METHOD_BIT(HTTP_METHOD_POST), "POST", api_invoke},
    {"/v1/invocations/", API_ROUTE_INVOCATION,
     API_READ_METHODS | API_METHOD_BIT(HTTP_METHOD_DELETE), "GET, HEAD, DELETE",
     api_invocation},
};

static const char api_method_not_allowed[] =
    "{\"error\":{\"type\":\"method_not_allowed\","
    "\"message\":\"this path does not support that method; see the Allow header\"}}";

static bool api_path_matches(const struct http_slice *path, const char *pattern)
{
    size_t length = strlen(pattern);
    RM_ASSERT(length > 0);
    if (pattern[length - 1] == '/') {
        return path->length >= length && memcmp(path->base, pattern, length) == 0;
    }
    return path->length == length && memcmp(path->base, pattern, length) == 0;
}

void api_route(void *context, struct http_exchange *exchange)
{
    struct api_context *api = context;
    const struct http_request *request = http_exchange_request(exchange);
    RM_ASSERT(api != NULL);
    RM_ASSERT(request != NULL);
    for (size_t i = 0; i < RM_ARRAY_LENGTH(api_routes); i++) {
        const struct api_route_entry *entry = &api_routes[i];
        if (!api_path_matches(&request->path, entry->path)) {
            continue;
        }
        http_exchange_set_route(exchange, entry->route);
        if (!(entry->methods & API_METHOD_BIT(request->method))) {
            struct http_response_header allow = {"Allow", entry->allow};
            http_exchange_respond(exchange, 405, "application/json", &allow, 1,
                                  api_method_not_allowed, sizeof(api_method_not_allowed) - 1);
            return;
        }
        entry->handler(api, exchange);
        return;
    }
    http_exchange_respond_error(exchange, 404, "not_found",
                                "no such endpoint; see the README for the API");
}
