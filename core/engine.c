/* The engine: configuration, reactors, listeners and the per-core services on them. */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/reactor.h"
#include "core/ringmaster.h"
#include "core/rm_assert.h"
#include "core/invocation.h"
#include "core/invocation_api.h"
#include "core/upstream.h"
#include "net/api.h"
#include "net/http_server.h"
#include "net/listener.h"
#include "store/store.h"

#define ENGINE_QUEUE_DEPTH 512

struct engine_metrics {
    int loops;
    int completions;
    int cq_overflows;
    int messages;
};

struct rm_engine {
    struct config config;
    uint32_t threads;
    struct metrics_registry *metrics;
    struct store *store;
    struct upstream_set *upstreams;
    struct invocation_runtime *runtime;
    struct reactor_group *group;
    int listen_fds[REACTOR_MAX];
    uint16_t port;
    int ready;
    int started;
    struct api_context api;
    struct http_server_config server_config;
    struct engine_metrics reactor_metrics;
};

const char *rm_version(void) { return RM_VERSION; }

static uint32_t engine_thread_count(const struct config *config)
{
    if (config->threads != 0) {
        return config->threads;
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1) {
        return 1;
    }
    return online > REACTOR_MAX ? REACTOR_MAX : (uint32_t)online;
}

static int engine_register_metrics(struct rm_engine *engine)
{
    struct metrics_registry *registry = engine->metrics;
    struct {
        const char *name;
        const char *help;
        int *series;
    } counters[] = {
        {"reactor_loops_total", "Reactor loop iterations.", &engine->reactor_metrics.loops},
        {"reactor_completions_total", "io_uring completions dispatched.",
         &engine->reactor_metrics.completions},
        {"reactor_cq_overflows_total", "Ticks on which the completion queue had overflowed.",
         &engine->reactor_metrics.cq_overflows},
        {"reactor_messages_total", "Cross-core messages received.",
         &engine->reactor_metrics.messages},
    };
    for (size_t i = 0; i < RM_ARRAY_LENGTH(counters); i++) {
        int family = metrics_family(registry, counters[i].name, counters[i].help,
                                    METRICS_COUNTER);
        *counters[i].series = family < 0 ? -1 : metrics_series(registry, family, "");
        if (*counters[i].series < 0) {
            return -ENOSPC;
        }
    }
    return 0;
}

static int engine_create(struct config *config, struct rm_engine **out, char *err,
                         size_t err_length)
{
    struct rm_engine *engine = rm_calloc(1, sizeof(*engine));
    if (engine == NULL) {
        snprintf(err, err_length, "out of memory creating the engine");
        return -ENOMEM;
    }
    engine->config = *config;
    engine->threads = engine_thread_count(config);
    for (uint32_t i = 0; i < REACTOR_MAX; i++) {
        engine->listen_fds[i] = -1;
    }
    int result = log_open(config->log.file, config->log.level);
    if (result != 0) {
        snprintf(err, err_length, "log file %s: %s; fix log.file or its directory",
                 config->log.file, strerror(-result));
        rm_free(engine);
        return result;
    }
    engine->metrics = metrics_create(engine->threads);
    if (engine->metrics == NULL || engine_register_metrics(engine) != 0) {
        snprintf(err, err_length, "out of memory creating the metrics registry");
        metrics_destroy(engine->metrics);
        rm_free(engine);
        return -ENOMEM;
    }
    result = store_create(config, engine->threads, engine->metrics, &engine->store);
    if (result != 0) {
        snprintf(err, err_length, "data_dir %s: cannot open the store: %s; check the path "
                 "and its permissions", config->data_dir, strerror(-result));
        metrics_destroy(engine->metrics);
        rm_free(engine);
        return result;
    }
    result = upstream_set_create(&engine->config, engine->threads, engine->metrics,
                                 &engine->upstreams, err, err_length);
    if (result == 0) {
        result = invocation_runtime_create(&engine->config, engine->threads, engine->metrics,
                                           engine->store, engine->upstreams, &engine->runtime,
                                           err, err_length);
    }
    if (result != 0) {
        upstream_set_destroy(engine->upstreams);
        store_destroy(engine->store);
        metrics_destroy(engine->metrics);
        explicit_bzero(&engine->config, sizeof(engine->config));
        rm_free(engine);
        return result;
    }
    *out = engine;
    return 0;
}

int rm_engine_create_file(const char *path, struct rm_engine **out, char *err, size_t err_length)
{
    RM_ASSERT(path != NULL);
    RM_ASSERT(out != NULL);
    struct config *config = rm_malloc(sizeof(*config));
    if (config == NULL) {
        snprintf(err, err_length, "out of memory reading the config");
        return -ENOMEM;
    }
    int result = config_load(config, path, err, err_length) == 0
                     ? engine_create(config, out, err, err_length)
                     : -EINVAL;
    explicit_bzero(config, sizeof(*config)); /* the admin token */
    rm_free(config);
    return result;
}

int rm_engine_create_json(const char *json, struct rm_engine **out, char *err, size_t err_length)
{
    RM_ASSERT(json != NULL);
    RM_ASSERT(out != NULL);
    struct config *config = rm_malloc(sizeof(*config));
    if (config == NULL) {
        snprintf(err, err_length, "out of memory reading the config");
        return -ENOMEM;
    }
    int result = config_parse(config, "<string>", json, strlen(json), err, err_length) == 0
                     ? engine_create(config, out, err, err_length)
                     : -EINVAL;
    explicit_bzero(config, sizeof(*config)); /* the admin token */
    rm_free(config);
    return result;
}

/* Publishes this reactor's loop statistics as its own core's metric slots. */
static void engine_tick(struct reactor *reactor, void *context)
{
    struct rm_engine *engine = context;
    struct reactor_stats stats = reactor_stats_read(reactor);
    uint32_t core = reactor_index(reactor);
    RM_ASSERT(core < engine->threads);
    metrics_set(engine->metrics, core, engine->reactor_metrics.loops, (int64_t)stats.loops);
    metrics_set(engine->metrics, core, engine->reactor_metrics.completions,
                (int64_t)stats.completions);
    metrics_set(engine->metrics, core, engine->reactor_metrics.cq_overflows,
                (int64_t)stats.cq_overflows);
    metrics_set(engine->metrics, core, engine->reactor_metrics.messages,
                (int64_t)stats.messages_received);
}

static int engine_reactor_setup(struct reactor *reactor, void *context)
{
    struct rm_engine *engine = context;
    uint32_t index = reactor_index(reactor);
    RM_ASSERT(index < engine->threads);
    RM_ASSERT(engine->listen_fds[index] >= 0);
    int result = store_shard_open(engine->store, reactor);
    if (result != 0) {
        return result;
    }
    result = upstream_core_open(engine->upstreams, reactor);
    if (result == 0) {
        result = invocation_core_open(engine->runtime, reactor);
        if (result != 0) {
            upstream_core_close(reactor);
        }
    }
    if (result != 0) {
        store_shard_close(engine->store, reactor);
        return result;
    }
    struct http_server *server = NULL;
    result = http_server_create(reactor, engine->listen_fds[index], &engine->server_config,
                                &server);
    if (result != 0) {
        invocation_core_close(engine->runtime, reactor);
        upstream_core_close(reactor);
        store_shard_close(engine->store, reactor);
        return result;
    }
    reactor_slot_set(reactor, REACTOR_SLOT_SERVER, server);
    reactor_hook_add(reactor, (struct reactor_hook){engine_tick, engine});
    return 0;
}

static void engine_reactor_stopping(struct reactor *reactor, void *context)
{
    struct rm_engine *engine = context;
    __atomic_store_n(&engine->ready, 0, __ATOMIC_RELAXED);
    http_server_stop_accepting(reactor_slot_get(reactor, REACTOR_SLOT_SERVER));
}

/* The store counts as busy while it has writes to flush, so a clean stop loses nothing that
 * was acknowledged in async mode. */
static bool engine_reactor_busy(struct reactor *reactor, void *context)
{
    struct rm_engine *engine = context;
    return http_server_busy(reactor_slot_get(reactor, REACTOR_SLOT_SERVER)) ||
           upstream_core_busy(reactor) || invocation_core_busy(engine->runtime, reactor) ||
           store_shard_busy(engine->store, reactor);
}

static void engine_reactor_teardown(struct reactor *reactor, void *context)
{
    struct rm_engine *engine = context;
    http_server_destroy(reactor_slot_get(reactor, REACTOR_SLOT_SERVER));
    reactor_slot_set(reactor, REACTOR_SLOT_SERVER, NULL);
    invocation_core_close(engine->runtime, reactor);
    upstream_core_close(reactor);
    store_shard_close(engine->store, reactor);
}

static void engine_server_config(struct rm_engine *engine)
{
    const struct config_limits *limits = &engine->config.limits;
    struct http_server_config *server = &engine->server_config;
    engine->api.metrics = engine->metrics;
    engine->api.store = engine->store;
    engine->api.max_value_bytes = limits->max_value_bytes;
    engine->api.require_precondition = engine->config.store.require_precondition;
    engine->api.ready = &engine->ready;
    engine->api.upstreams = engine->upstreams;
    engine->api.invoke = invocation_api_create;
    engine->api.invocation = invocation_api_lookup;
    engine->api.runtime = engine->runtime;
    engine->api.admin_token = engine->config.admin.token_set ? engine->config.admin.token : NULL;
    server->limits.max_uri_bytes = limits->max_uri_bytes;
    server->limits.max_header_bytes = limits->max_header_bytes;
    server->limits.max_headers = limits->max_headers;
    server->limits.max_body_bytes = limits->max_body_bytes;
    /* The connection limit is engine-wide; each reactor gets an equal share, rounded up. */
    server->max_connections = (limits->max_connections + engine->threads - 1) / engine->threads;
    server->header_timeout_ms = limits->header_timeout_ms;
    server->body_timeout_ms = limits->body_timeout_ms;
    server->idle_timeout_ms = limits->idle_timeout_ms;
    server->metrics = engine->metrics;
    server->route = api_route;
    server->route_context = &engine->api;
    server->route_names = api_route_names;
    server->route_count = API_ROUTE_COUNT;
}

int rm_engine_start(struct rm_engine *engine, char *err, size_t err_length)
{
    RM_ASSERT(engine != NULL);
    RM_ASSERT(!engine->started);
    int result = listener_open(engine->config.listen_host, engine->config.listen_port,
                               engine->threads, engine->listen_fds, &engine->port, err,
                               err_length);
    if (result != 0) {
        return result;
    }
    engine_server_config(engine);
    struct reactor_group_config group_config = {
        .reactors = engine->threads,
        .pin = true,
        .queue_depth = ENGINE_QUEUE_DEPTH,
        .setup = engine_reactor_setup,
        .teardown = engine_reactor_teardown,
        .busy = engine_reactor_busy,
        .stopping = engine_reactor_stopping,
        .context = engine,
        .drain_timeout_ms = engine->config.limits.drain_timeout_ms,
    };
    result = reactor_group_create(&group_config, &engine->group);
    if (result == 0) {
        result = reactor_group_start(engine->group);
    }
    if (result != 0) {
        snprintf(err, err_length, "starting %u reactors failed: %s", engine->threads,
                 strerror(-result));
        reactor_group_destroy(engine->group);
        engine->group = NULL;
        listener_close(engine->listen_fds, engine->threads);
        return result;
    }
    engine->started = 1;
    __atomic_store_n(&engine->ready, 1, __ATOMIC_RELAXED);
    invocation_runtime_ready(engine->runtime);
    char port[16], threads[16];
    snprintf(port, sizeof(port), "%u", engine->port);
    snprintf(threads, sizeof(threads), "%u", engine->threads);
    log_info("engine started", "listen", engine->config.listen_host, "port", port, "threads",
             threads, "version", RM_VERSION);
    return 0;
}

uint16_t rm_engine_port(const struct rm_engine *engine) { return engine->port; }

uint32_t rm_engine_threads(const struct rm_engine *engine) { return engine->threads; }

void rm_engine_stop(struct rm_engine *engine)
{
    if (engine->group != NULL) {
        reactor_group_stop(engine->group);
    }
}

void rm_engine_wait(struct rm_engine *engine)
{
    RM_ASSERT(engine != NULL);
    if (engine->group == NULL) {
        return;
    }
    reactor_group_join(engine->group);
    if (engine->started) {
        engine->started = 0;
        log_info("engine stopped");
    }
}

int rm_engine_reopen_log(struct rm_engine *engine)
{
    RM_ASSERT(engine != NULL);
    return log_reopen();
}

void rm_engine_destroy(struct rm_engine *engine)
{
    if (engine == NULL) {
        return;
    }
    if (engine->group != NULL) {
        reactor_group_stop(engine->group);
        reactor_group_join(engine->group);
        reactor_group_destroy(engine->group);
    }
    listener_close(engine->listen_fds, engine->threads);
    invocation_runtime_destroy(engine->runtime);
    upstream_set_destroy(engine->upstreams);
    store_destroy(engine->store);
    metrics_destroy(engine->metrics);
    explicit_bzero(&engine->config, sizeof(engine->config)); /* API keys, the admin token */
    rm_free(engine);
}

int rm_engine_register_tool(struct rm_engine *engine, const char *name, rm_tool_function function,
                            void *context)
{
    RM_ASSERT(engine != NULL && name != NULL && function != NULL);
    RM_ASSERT(!engine->started);
    return invocation_runtime_register_tool(engine->runtime, name, function, context);
}
