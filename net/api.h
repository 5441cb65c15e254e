#ifndef RM_API_H
#define RM_API_H

/* The HTTP API's routing table and its handlers. Route ids double as metric labels. */

#include <stdbool.h>
#include <stdint.h>

#include "net/http_server.h"

enum api_route {
    API_ROUTE_UNMATCHED, /* also requests refused before routing */
    API_ROUTE_HEALTHZ,
    API_ROUTE_READYZ,
    API_ROUTE_METRICS,
    API_ROUTE_STATE,
    API_ROUTE_CHAT,
    API_ROUTE_TOOLS,
    API_ROUTE_ADMIN,
    API_ROUTE_INVOKE,
    API_ROUTE_INVOCATION,
    API_ROUTE_COUNT,
};

struct store;
struct upstream_set;

struct api_context {
    struct metrics_registry *metrics;
    struct store *store;
    uint64_t max_value_bytes;
    bool require_precondition; /* 428 for writes without If-Match / If-None-Match */
    /* Set once the engine has recovered and accepts work; cleared when it starts draining.
     * Read with relaxed atomics. */
    const int *ready;
    struct upstream_set *upstreams;
    const char *admin_token; /* NULL: the admin API is off */
    /* The agent runtime's routes (core/invocation_api.h), so that net/ does not include the
     * runtime; NULL answers 404. */
    void (*invoke)(void *runtime, struct http_exchange *exchange);
    void (*invocation)(void *runtime, struct http_exchange *exchange);
    void *runtime;
};

extern const char *const api_route_names[API_ROUTE_COUNT];

/* The http_route_function of the server; context is a struct api_context. */
void api_route(void *context, struct http_exchange *exchange);

#endif
