/* The admin views. They read the shared breaker, bucket and queue state with atomics, so any
 * core can answer them; JSON is built with jansson since these are not hot paths. */

#include <jansson.h>
#include <string.h>
#include <strings.h>

#include <ck_pr.h>

#include "core/alloc.h"
#include "core/breaker.h"
#include "core/bucket.h"
#include "core/rm_assert.h"
#include "core/upstream.h"
#include "net/api_admin.h"

#define API_ADMIN_PREFIX "/v1/admin/"

/* Compares in time independent of where the first difference is. */
static bool api_admin_token_matches(const char *expected, const struct http_slice *given)
{
    size_t length = strlen(expected);
    unsigned char difference = given->length != length;
    for (size_t i = 0; i < length; i++) {
        unsigned char other = i < given->length ? (unsigned char)given->base[i] : 0;
        difference |= (unsigned char)expected[i] ^ other;
    }
    return difference == 0;
}

static bool api_admin_authorized(const struct api_context *api, const struct http_request *request)
{
    const struct http_slice *header = http_request_header(request, "Authorization");
    static const char bearer[] = "Bearer ";
    if (header == NULL || header->length < sizeof(bearer) - 1 ||
        strncasecmp(header->base, bearer, sizeof(bearer) - 1) != 0) {
        return false;
    }
    struct http_slice token = {header->base + sizeof(bearer) - 1,
                               header->length - (sizeof(bearer) - 1)};
    return api_admin_token_matches(api->admin_token, &token);
}

static double api_admin_ms_until(uint64_t until_ns, uint64_t now_ns)
{
    return until_ns > now_ns ? (double)(until_ns - now_ns) / 1e6 : 0.0;
}

static json_t *api_admin_breakers(const struct upstream_set *set, uint64_t now_ns)
{
    json_t *list = json_array();
    for (uint32_t i = 0; i < breaker_count(set->breakers); i++) {
        struct breaker_view view;
        breaker_view(set->breakers, i, &view);
        json_array_append_new(list, json_pack(
            "{s:s, s:s, s:s, s:I, s:I, s:I, s:f, s:I, s:I}", "kind", view.kind, "name",
            view.name, "state", breaker_state_name(view.state), "window_calls",
            (json_int_t)view.window_calls, "window_failures", (json_int_t)view.window_failures,
            "window_slow", (json_int_t)view.window_slow, "open_for_ms",
            api_admin_ms_until(view.open_until_ns, now_ns), "probes_left",
            (json_int_t)view.probes_left, "transitions", (json_int_t)view.transitions));
    }
    return json_pack("{s:o}", "breakers", list);
}

static json_t *api_admin_bucket(const struct upstream_set *set, int id, uint64_t now_ns)
{
    struct bucket_view view;
    bucket_view(set->buckets, (uint32_t)id, &view);
    if (view.per_minute == 0) {
        return json_pack("{s:b, s:f}", "unlimited", 1, "paused_for_ms",
                         api_admin_ms_until(view.paused_until_ns, now_ns));
    }
    return json_pack("{s:I, s:I, s:I, s:f, s:I}", "per_minute", (json_int_t)view.per_minute,
                     "burst", (json_int_t)view.burst, "available", (json_int_t)view.available,
                     "paused_for_ms", api_admin_ms_until(view.paused_until_ns, now_ns),
                     "spent", (json_int_t)view.spent);
}

static json_t *api_admin_endpoint(const struct upstream_set *set,
                                  const struct upstream_endpoint *endpoint, uint64_t now_ns,
                                  bool keys)
{
    const struct upstream_endpoint_shared *shared = &endpoint->shared;
    json_t *object = json_pack(
        "{s:s, s:I, s:I, s:I, s:I, s:I}", "name", endpoint->config->name, "in_flight",
        (json_int_t)ck_pr_load_32((uint32_t *)&shared->in_flight), "max_in_flight",
        (json_int_t)endpoint->config->max_in_flight, "queued",
        (json_int_t)ck_pr_load_32((uint32_t *)&shared->queued), "max_queue",
        (json_int_t)endpoint->config->max_queue, "drain_per_second",
        (json_int_t)ck_pr_load_64((uint64_t *)&shared->drain_per_second));
    if (keys) {
        json_t *list = json_array();
        for (uint32_t k = 0; k < endpoint->config->key_count; k++) {
            const struct upstream_key *key = &endpoint->keys[k];
            json_array_append_new(list, json_pack("{s:s, s:o, s:o}", "name",
                                                  key->config->name, "requests",
                                                  api_admin_bucket(set, key->rpm_bucket, now_ns),
                                                  "tokens",
                                                  api_admin_bucket(set, key->tpm_bucket, now_ns)));
        }
        json_object_set_new(object, "keys", list);
    }
    return object;
}

static json_t *api_admin_endpoints(const struct upstream_set *set, uint64_t now_ns, bool keys)
{
    json_t *list = json_array();
    for (uint32_t i = 0; i < set->endpoint_count; i++) {
        json_array_append_new(list, api_admin_endpoint(set, &set->endpoints[i], now_ns, keys));
    }
    return json_pack("{s:o}", "endpoints", list);
}

void api_admin_handle(struct api_context *api, struct http_exchange *exchange)
{
    const struct http_request *request = http_exchange_request(exchange);
    if (api->admin_token == NULL) {
        http_exchange_respond_error(exchange, 404, "admin_disabled",
                                    "the admin API is off; set admin.token_env or "
                                    "admin.token_file in the config");
        return;
    }
    if (!api_admin_authorized(api, request)) {
        struct http_response_header challenge = {"WWW-Authenticate", "Bearer"};
        static const char body[] = "{\"error\":{\"type\":\"unauthorized\",\"message\":"
                                   "\"send Authorization: Bearer <the admin token>\"}}";
        http_exchange_respond(exchange, 401, "application/json", &challenge, 1, body,
                              sizeof(body) - 1);
        return;
    }
    size_t prefix = strlen(API_ADMIN_PREFIX);
    const char *view = request->path.base + prefix;
    size_t length = request->path.length - prefix;
    uint64_t now = reactor_clock_ns();
    json_t *body = NULL;
    if (length == 8 && memcmp(view, "breakers", 8) == 0) {
        body = api_admin_breakers(api->upstreams, now);
    } else if (length == 6 && memcmp(view, "limits", 6) == 0) {
        body = api_admin_endpoints(api->upstreams, now, true);
    } else if (length == 6 && memcmp(view, "queues", 6) == 0) {
        body = api_admin_endpoints(api->upstreams, now, false);
    } else {
        http_exchange_respond_error(exchange, 404, "not_found",
                                    "admin views are /v1/admin/breakers, /v1/admin/limits and "
                                    "/v1/admin/queues");
        return;
    }
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        http_exchange_respond_error(exchange, 503, "out_of_memory", "retry later");
        return;
    }
    http_exchange_respond(exchange, 200, "application/json", NULL, 0, text, strlen(text));
    rm_free(text);
}
