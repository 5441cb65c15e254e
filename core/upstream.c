/* The engine's upstreams: what the LLM queue and the tool calls share, built from the config,
 * and each reactor's client and tick. */

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <ck_pr.h>

#include "core/alloc.h"
#include "core/breaker.h"
#include "core/bucket.h"
#include "core/llm.h"
#include "core/metrics.h"
#include "core/rm_assert.h"
#include "core/tool.h"
#include "core/upstream.h"
#include "net/dns.h"
#include "net/http_client.h"
#include "net/url.h"

#define UPSTREAM_CLIENT_MAX_QUEUED 65536
#define UPSTREAM_IDLE_TIMEOUT_MS 60000

static const char *const upstream_attempt_names[LLM_ATTEMPT_OUTCOME_COUNT] = {
    "ok", "rate_limited", "client_error", "server_error", "timeout", "connection_error",
};

static const char *const upstream_tool_names[TOOL_OUTCOME_COUNT] = {
    "ok", "error", "timeout", "fallback", "short_circuited",
};

const char *upstream_tool_outcome_name(enum tool_outcome outcome)
{
    RM_ASSERT(outcome < TOOL_OUTCOME_COUNT);
    return upstream_tool_names[outcome];
}

static int upstream_series(struct metrics_registry *metrics, int family, const char *format,
                           const char *first, const char *second, const char *third)
{
    char labels[METRICS_LABELS_MAX];
    snprintf(labels, sizeof(labels), format, first, second, third);
    return family < 0 ? -1 : metrics_series(metrics, family, labels);
}

struct upstream_families {
    int requests, depth, in_flight, wait, tokens, retries, fallbacks, rejected, breaker_open;
    int tool_calls, tool_duration, tool_retries;
};

static void upstream_families_register(struct metrics_registry *m, struct upstream_families *f)
{
    f->requests = metrics_family(m, "llm_requests_total",
                                 "LLM attempts by endpoint, key name and outcome.",
                                 METRICS_COUNTER);
    f->depth = metrics_family(m, "llm_queue_depth", "LLM calls waiting, by endpoint.",
                              METRICS_GAUGE);
    f->in_flight = metrics_family(m, "llm_in_flight", "LLM requests in flight, by endpoint.",
                                  METRICS_GAUGE);
    f->wait = metrics_histogram_family(m, "llm_queue_wait_seconds",
                                       "Time LLM calls waited for a slot and a budget.", 1000,
                                       1e-9);
    f->tokens = metrics_family(m, "llm_tokens_total", "LLM tokens by endpoint and kind.",
                               METRICS_COUNTER);
    f->retries = metrics_family(m, "llm_retries_total", "LLM attempts after the first.",
                                METRICS_COUNTER);
    f->fallbacks = metrics_family(m, "llm_fallbacks_total",
                                  "LLM calls moved to a fallback endpoint, by the endpoint left.",
                                  METRICS_COUNTER);
    f->rejected = metrics_family(m, "llm_rejected_total",
                                 "LLM calls refused because the endpoint's queue was full.",
                                 METRICS_COUNTER);
    f->breaker_open = metrics_family(m, "llm_short_circuited_total",
                                     "LLM attempts skipped because the endpoint's breaker was "
                                     "open.", METRICS_COUNTER);
    f->tool_calls = metrics_family(m, "tool_calls_total", "Tool calls by tool and outcome.",
                                   METRICS_COUNTER);
    f->tool_retries = metrics_family(m, "tool_retries_total",
                                     "Tool attempts after the first (retry.max_attempts > 1).",
                                     METRICS_COUNTER);
    f->tool_duration = metrics_histogram_family(m, "tool_call_duration_seconds",
                                                "Tool call duration, fallbacks included.", 1000,
                                                1e-9);
}

static int upstream_key_init(struct upstream_set *set, struct upstream_endpoint *endpoint,
                             uint32_t index, const struct upstream_families *f)
{
    struct upstream_key *key = &endpoint->keys[index];
    key->config = &endpoint->config->keys[index];
    key->rpm_bucket = bucket_add(set->buckets, key->config->rpm, 0);
    key->tpm_bucket = bucket_add(set->buckets, key->config->tpm, 0);
    if (key->rpm_bucket < 0 || key->tpm_bucket < 0) {
        return -ENOSPC;
    }
    if (key->config->secret_set) {
        snprintf(key->authorization, sizeof(key->authorization), "Bearer %s",
                 key->config->secret);
    }
    for (uint32_t o = 0; o < LLM_ATTEMPT_OUTCOME_COUNT; o++) {
        key->requests[o] = upstream_series(set->metrics, f->requests,
                                           "endpoint=\"%s\",key=\"%s\",outcome=\"%s\"",
                                           endpoint->config->name, key->config->name,
                                           upstream_attempt_names[o]);
        if (key->requests[o] < 0) {
            return -ENOSPC;
        }
    }
    return 0;
}

static int upstream_endpoint_metrics(struct upstream_set *set, struct upstream_endpoint *e,
                                     const struct upstream_families *f)
{
    const char *name = e->config->name;
    const char *one = "endpoint=\"%s\"";
    e->queue_depth = upstream_series(set->metrics, f->depth, one, name, NULL, NULL);
    e->in_flight = upstream_series(set->metrics, f->in_flight, one, name, NULL, NULL);
    e->queue_wait = upstream_series(set->metrics, f->wait, one, name, NULL, NULL);
    e->retries = upstream_series(set->metrics, f->retries, one, name, NULL, NULL);
    e->fallbacks_taken = upstream_series(set->metrics, f->fallbacks, one, name, NULL, NULL);
    e->rejected = upstream_series(set->metrics, f->rejected, one, name, NULL, NULL);
    e->breaker_open = upstream_series(set->metrics, f->breaker_open, one, name, NULL, NULL);
    e->tokens_prompt = upstream_series(set->metrics, f->tokens,
                                       "endpoint=\"%s\",kind=\"%s\"", name, "prompt", NULL);
    e->tokens_completion = upstream_series(set->metrics, f->tokens,
                                           "endpoint=\"%s\",kind=\"%s\"", name, "completion",
                                           NULL);
    int all[] = {e->queue_depth, e->in_flight, e->queue_wait, e->retries, e->fallbacks_taken,
                 e->rejected, e->breaker_open, e->tokens_prompt, e->tokens_completion};
    for (size_t i = 0; i < RM_ARRAY_LENGTH(all); i++) {
        if (all[i] < 0) {
            return -ENOSPC;
        }
    }
    return 0;
}

static int upstream_endpoint_init(struct upstream_set *set, uint32_t index,
                                  const struct upstream_families *f)
{
    struct upstream_endpoint *endpoint = &set->endpoints[index];
    endpoint->config = &set->config->endpoints[index];
    endpoint->breaker = breaker_add(set->breakers, "endpoint", endpoint->config->name,
                                    &endpoint->config->breaker);
    if (endpoint->breaker < 0) {
        return -ENOSPC;
    }
    for (uint32_t i = 0; i < endpoint->config->fallback_count; i++) {
        const char *name = endpoint->config->fallbacks[i];
        int found = upstream_endpoint_find(set, name, strlen(name));
        RM_ASSERT(found >= 0); /* config.c checked the names */
        endpoint->fallbacks[i] = (uint32_t)found;
    }
    for (uint32_t i = 0; i < endpoint->config->key_count; i++) {
        int result = upstream_key_init(set, endpoint, i, f);
        if (result != 0) {
            return result;
        }
    }
    return upstream_endpoint_metrics(set, endpoint, f);
}

static int upstream_tool_init(struct upstream_set *set, uint32_t index,
                              const struct upstream_families *f)
{
    struct upstream_tool *tool = &set->tools[index];
    tool->config = &set->config->tools[index];
    tool->breaker = breaker_add(set->breakers, "tool", tool->config->name,
                                &tool->config->breaker);
    if (tool->breaker < 0) {
        return -ENOSPC;
    }
    for (uint32_t o = 0; o < TOOL_OUTCOME_COUNT; o++) {
        tool->calls[o] = upstream_series(set->metrics, f->tool_calls,
                                         "tool=\"%s\",outcome=\"%s\"", tool->config->name,
                                         upstream_tool_names[o], NULL);
        if (tool->calls[o] < 0) {
            return -ENOSPC;
        }
    }
    tool->duration = upstream_series(set->metrics, f->tool_duration, "tool=\"%s\"",
                                     tool->config->name, NULL, NULL);
    tool->retries = upstream_series(set->metrics, f->tool_retries, "tool=\"%s\"",
                                    tool->config->name, NULL, NULL);
    return tool->duration < 0 || tool->retries < 0 ? -ENOSPC : 0;
}

/* Trust anchors are loaded only when some URL is https, and the resolver started only when
 * some URL names a host, so a config without upstreams costs nothing. */
static int upstream_network_init(struct upstream_set *set, char *err, size_t err_length)
{
    bool tls = false, names = false;
    const struct config *config = set->config;
    for (uint32_t i = 0; i < config->endpoint_count + config->tool_count; i++) {
        const struct config_tool *tool =
            i < config->endpoint_count ? NULL : &config->tools[i - config->endpoint_count];
        if (tool != NULL && tool->kind != CONFIG_TOOL_HTTP) {
            continue; /* agent and C tools have no URL */
        }
        const char *text = tool == NULL ? config->endpoints[i].url : tool->url;
        struct url url;
        char problem[URL_ERROR_BYTES];
        if (url_parse(text, &url, problem, sizeof(problem)) != 0) {
            snprintf(err, err_length, "upstream URL %s: %s", text, problem);
            return -EINVAL;
        }
        tls |= url.tls;
        names |= strcmp(url.host, "localhost") != 0 && strspn(url.host, "0123456789.") !=
                 strlen(url.host) && !url.ipv6;
    }
    if (tls) {
        char problem[TLS_TRUST_ERROR_MAX];
        if (tls_trust_load(&set->trust, config->tls.ca_file, problem) != 0) {
            snprintf(err, err_length, "tls.ca_file: %s", problem);
            return -EINVAL;
        }
        set->trust_loaded = true;
    }
    if (names) {
        struct dns_config dns = {.reactors = set->cores};
        int result = dns_create(&dns, &set->dns);
        if (result != 0) {
            snprintf(err, err_length, "starting the resolver failed: %s", strerror(-result));
            return result;
        }
    }
    return 0;
}

int upstream_set_create(const struct config *config, uint32_t cores,
                        struct metrics_registry *metrics, struct upstream_set **out, char *err,
                        size_t err_length)
{
    struct upstream_set *set = rm_calloc(1, sizeof(*set));
    if (set == NULL) {
        snprintf(err, err_length, "out of memory creating the upstreams");
        return -ENOMEM;
    }
    set->config = config;
    set->cores = cores;
    set->metrics = metrics;
    set->endpoint_count = config->endpoint_count;
    set->tool_count = config->tool_count;
    set->breakers = breaker_set_create(cores, config->resilience.reconcile_ms, metrics);
    set->buckets = bucket_set_create(cores, config->resilience.reconcile_ms);
    int result = set->breakers == NULL || set->buckets == NULL ? -ENOMEM : 0;
    struct upstream_families families;
    upstream_families_register(metrics, &families);
    for (uint32_t i = 0; result == 0 && i < set->endpoint_count; i++) {
        result = upstream_endpoint_init(set, i, &families);
    }
    for (uint32_t i = 0; result == 0 && i < set->tool_count; i++) {
        result = upstream_tool_init(set, i, &families);
    }
    if (result != 0) {
        snprintf(err, err_length, "out of memory or metrics space for %u endpoints and %u "
                 "tools", set->endpoint_count, set->tool_count);
    } else {
        result = upstream_network_init(set, err, err_length);
    }
    if (result != 0) {
        upstream_set_destroy(set);
        return result;
    }
    *out = set;
    return 0;
}

void upstream_set_destroy(struct upstream_set *set)
{
    if (set == NULL) {
        return;
    }
    if (set->dns != NULL) {
        dns_destroy(set->dns);
    }
    if (set->trust_loaded) {
        tls_trust_free(&set->trust);
    }
    breaker_set_destroy(set->breakers);
    bucket_set_destroy(set->buckets);
    explicit_bzero(set->endpoints, sizeof(set->endpoints)); /* the Authorization values */
    rm_free(set);
}

int upstream_endpoint_find(const struct upstream_set *set, const char *name, size_t length)
{
    for (uint32_t i = 0; i < set->config->endpoint_count; i++) {
        const char *candidate = set->config->endpoints[i].name;
        if (strlen(candidate) == length && memcmp(candidate, name, length) == 0) {
            return (int)i;
        }
    }
    return -1;
}

int upstream_tool_find(const struct upstream_set *set, const char *name, size_t length)
{
    for (uint32_t i = 0; i < set->tool_count; i++) {
        const char *candidate = set->tools[i].config->name;
        if (strlen(candidate) == length && memcmp(candidate, name, length) == 0) {
            return (int)i;
        }
    }
    return -1;
}

int upstream_endpoint_for_model(const struct upstream_set *set, const char *model,
                                size_t length)
{
    int any = -1;
    for (uint32_t i = 0; i < set->endpoint_count; i++) {
        const struct config_endpoint *config = set->endpoints[i].config;
        if (config->model_count == 0 && any < 0) {
            any = (int)i;
        }
        for (uint32_t m = 0; m < config->model_count; m++) {
            if (strlen(config->models[m]) == length &&
                memcmp(config->models[m], model, length) == 0) {
                return (int)i;
            }
        }
    }
    return any;
}

static struct http_client_upstream_config upstream_client_config(const char *name,
                                                                 const char *url,
                                                                 uint32_t max_connections,
                                                                 uint32_t connect_ms,
                                                                 uint32_t total_ms,
                                                                 uint64_t max_body)
{
    return (struct http_client_upstream_config){
        .name = name,
        .url = url,
        .max_connections = max_connections,
        .max_idle = max_connections,
        .max_queued = UPSTREAM_CLIENT_MAX_QUEUED,
        .idle_timeout_ms = UPSTREAM_IDLE_TIMEOUT_MS,
        .connect_timeout_ms = connect_ms,
        .first_byte_timeout_ms = total_ms,
        .total_timeout_ms = total_ms,
        .limits = {.max_status_line_bytes = 1024, .max_header_bytes = 65536,
                   .max_headers = 100, .max_body_bytes = max_body},
        .max_event_bytes = 1024 * 1024,
    };
}

static int upstream_core_register(struct upstream_core *core, char *err, size_t err_length)
{
    const struct upstream_set *set = core->set;
    for (uint32_t i = 0; i < set->endpoint_count; i++) {
        const struct config_endpoint *e = set->endpoints[i].config;
        struct http_client_upstream_config config = upstream_client_config(
            e->name, e->url, e->max_connections, e->connect_timeout_ms, e->timeout_ms,
            e->max_response_bytes);
        config.first_byte_timeout_ms = e->first_byte_timeout_ms;
        int id = http_client_add_upstream(core->client, &config, err, err_length);
        if (id < 0) {
            return id;
        }
        core->endpoint_upstream[i] = (uint32_t)id;
    }
    for (uint32_t i = 0; i < set->tool_count; i++) {
        const struct config_tool *t = set->tools[i].config;
        if (t->kind != CONFIG_TOOL_HTTP) {
            core->tool_upstream[i] = UINT32_MAX; /* no HTTP client upstream behind it */
            continue;
        }
        struct http_client_upstream_config config = upstream_client_config(
            t->name, t->url, t->max_connections, t->connect_timeout_ms, t->timeout_ms,
            t->max_response_bytes);
        int id = http_client_add_upstream(core->client, &config, err, err_length);
        if (id < 0) {
            return id;
        }
        core->tool_upstream[i] = (uint32_t)id;
    }
    return 0;
}

/* Core 0 measures each endpoint's drain rate once a period, for Retry-After estimates. */
static void upstream_drain_rates(struct upstream_set *set, uint64_t now_ns)
{
    for (uint32_t i = 0; i < set->endpoint_count; i++) {
        struct upstream_endpoint_shared *shared = &set->endpoints[i].shared;
        uint64_t since = ck_pr_load_64(&shared->drain_at_ns);
        if (now_ns - since < UPSTREAM_DRAIN_PERIOD_NS) {
            continue;
        }
        uint64_t completed = ck_pr_load_64(&shared->completed);
        uint64_t per_second = (completed - ck_pr_load_64(&shared->drain_mark)) *
                              1000000000ull / (now_ns - since);
        ck_pr_store_64(&shared->drain_per_second, per_second);
        ck_pr_store_64(&shared->drain_mark, completed);
        ck_pr_store_64(&shared->drain_at_ns, now_ns);
    }
}

static uint64_t upstream_random(struct upstream_core *core)
{
    uint64_t x = core->random;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    core->random = x;
    return x;
}

uint64_t upstream_backoff_ns(struct upstream_core *core, const struct config_retry *retry,
                             uint32_t attempt)
{
    uint64_t ms = retry->base_ms;
    for (uint32_t i = 1; i < attempt && ms < retry->max_ms; i++) {
        ms *= 2;
    }
    ms = ms > retry->max_ms ? retry->max_ms : ms;
    uint64_t half = ms / 2;
    return (half + upstream_random(core) % (ms - half + 1)) * 1000000ull;
}

static void upstream_tick(struct reactor *reactor, void *context)
{
    struct upstream_core *core = context;
    uint64_t now = reactor_now_ns(reactor);
    breaker_reconcile(core->set->breakers, core->core, now);
    bucket_reconcile(core->set->buckets, core->core, now);
    if (core->core == 0) {
        upstream_drain_rates(core->set, now);
    }
    llm_pump_all(core, now);
    tool_pump_backoff(core, now);
}

int upstream_core_open(struct upstream_set *set, struct reactor *reactor)
{
    struct upstream_core *core = rm_calloc(1, sizeof(*core));
    if (core == NULL) {
        return -ENOMEM;
    }
    core->set = set;
    core->reactor = reactor;
    core->core = reactor_index(reactor);
    core->random = 0x9e3779b97f4a7c15ull ^ ((uint64_t)core->core << 32) ^ reactor_clock_ns();
    struct http_client_options options = {
        .trust = set->trust_loaded ? &set->trust : NULL,
        .dns = set->dns,
    };
    int result = set->dns != NULL ? dns_reactor_attach(set->dns, reactor) : 0;
    if (result == 0) {
        result = http_client_create(reactor, set->metrics, &options, &core->client);
    }
    char err[256];
    if (result == 0 && upstream_core_register(core, err, sizeof(err)) != 0) {
        result = -EINVAL; /* config.c and upstream_network_init validated every URL */
    }
    if (result != 0) {
        if (core->client != NULL) {
            http_client_destroy(core->client);
        }
        rm_free(core);
        return result;
    }
    reactor_slot_set(reactor, REACTOR_SLOT_UPSTREAM, core);
    reactor_hook_add(reactor, (struct reactor_hook){upstream_tick, core});
    return 0;
}

struct upstream_core *upstream_core_of(const struct reactor *reactor)
{
    return reactor_slot_get(reactor, REACTOR_SLOT_UPSTREAM);
}

bool upstream_core_busy(const struct reactor *reactor)
{
    const struct upstream_core *core = upstream_core_of(reactor);
    return core != NULL && (core->active > 0 || http_client_busy(core->client));
}

void upstream_core_close(struct reactor *reactor)
{
    struct upstream_core *core = upstream_core_of(reactor);
    if (core == NULL) {
        return;
    }
    http_client_destroy(core->client);
    reactor_slot_set(reactor, REACTOR_SLOT_UPSTREAM, NULL);
    rm_free(core);
}
