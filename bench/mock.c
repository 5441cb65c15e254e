/* ringmaster-mock: main, and the wiring of reactors, listeners, HTTP servers and routes.
 * The pattern is the engine's: one SO_REUSEPORT listener and one HTTP server per reactor,
 * per-core state created on each reactor's own thread, signals on the main thread. */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "bench/mock.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/metrics.h"
#include "core/rm_assert.h"
#include "net/listener.h"

enum mock_route { MOCK_ROUTE_OTHER, MOCK_ROUTE_CHAT, MOCK_ROUTE_TOOLS, MOCK_ROUTE_STATS,
                  MOCK_ROUTE_RESET, MOCK_ROUTE_COUNT };
static const char *const mock_route_names[MOCK_ROUTE_COUNT] = {
    "other", "/v1/chat/completions", "/tools/{name}", "/mock/stats", "/mock/reset"};

static bool mock_path_is(const struct http_slice *path, const char *text)
{
    size_t length = strlen(text);
    return path->length == length && memcmp(path->base, text, length) == 0;
}

static void mock_route(void *context, struct http_exchange *exchange)
{
    struct mock *mock = context;
    uint32_t index = reactor_index(http_exchange_reactor(exchange));
    RM_ASSERT(index < mock->threads);
    struct mock_core *core = &mock->cores[index];
    const struct http_request *request = http_exchange_request(exchange);
    const struct http_slice *path = &request->path;
    static const char tools[] = "/tools/";
    if (mock_path_is(path, "/v1/chat/completions")) {
        http_exchange_set_route(exchange, MOCK_ROUTE_CHAT);
        mock_llm_handle(core, exchange);
    } else if (path->length >= sizeof(tools) - 1 &&
               memcmp(path->base, tools, sizeof(tools) - 1) == 0) {
        http_exchange_set_route(exchange, MOCK_ROUTE_TOOLS);
        mock_tools_handle(core, exchange, path->base + sizeof(tools) - 1,
                          path->length - (sizeof(tools) - 1));
    } else if (mock_path_is(path, "/mock/stats") && request->method == HTTP_METHOD_GET) {
        http_exchange_set_route(exchange, MOCK_ROUTE_STATS);
        mock_stats_serve(mock, core, exchange);
    } else if (mock_path_is(path, "/mock/reset") && request->method == HTTP_METHOD_POST) {
        http_exchange_set_route(exchange, MOCK_ROUTE_RESET);
        mock_stats_reset(mock, core, exchange);
    } else {
        mock_stats_add(core, MOCK_COUNT_OTHER, 1);
        mock_reply_error(core, exchange, 404, "invalid_request_error", NULL,
                         "unknown route: POST /v1/chat/completions, POST /tools/{name}, "
                         "GET /mock/stats, POST /mock/reset");
    }
}

static void mock_core_free(struct mock_core *core)
{
    mock_reply_free(core);
    mock_json_free(&core->scratch);
    mock_json_free(&core->text);
}

static int mock_reactor_setup(struct reactor *reactor, void *context)
{
    struct mock *mock = context;
    uint32_t index = reactor_index(reactor);
    RM_ASSERT(index < mock->threads);
    RM_ASSERT(mock->listen_fds[index] >= 0);
    struct mock_core *core = &mock->cores[index];
    core->mock = mock;
    core->reactor = reactor;
    core->index = index;
    mock_random_seed(core, mock->config.seed);
    int result = -ENOMEM;
    if (mock_json_init(&core->scratch, MOCK_BODY_MAX) == 0 &&
        mock_json_init(&core->text, MOCK_TEXT_MAX) == 0 && mock_reply_init(core) == 0) {
        result = http_server_create(reactor, mock->listen_fds[index], &mock->server_config,
                                    &core->server);
    }
    if (result != 0) {
        mock_core_free(core);
    }
    return result;
}

/* Stopping: answer every delayed request now (hangs included), so the drain is quick. */
static void mock_reactor_stopping(struct reactor *reactor, void *context)
{
    struct mock *mock = context;
    struct mock_core *core = &mock->cores[reactor_index(reactor)];
    RM_ASSERT(core->reactor == reactor);
    http_server_stop_accepting(core->server);
    mock_reply_flush(core);
}

static bool mock_reactor_busy(struct reactor *reactor, void *context)
{
    struct mock *mock = context;
    return http_server_busy(mock->cores[reactor_index(reactor)].server);
}

static void mock_reactor_teardown(struct reactor *reactor, void *context)
{
    struct mock *mock = context;
    struct mock_core *core = &mock->cores[reactor_index(reactor)];
    RM_ASSERT(core->reactor == reactor);
    http_server_destroy(core->server);
    core->server = NULL;
    mock_core_free(core);
}

static uint32_t mock_thread_count(const struct mock_config *config)
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

static void mock_server_config(struct mock *mock)
{
    struct http_server_config *server = &mock->server_config;
    RM_ASSERT(mock->threads >= 1);
    server->limits.max_uri_bytes = 8192;
    server->limits.max_header_bytes = 65536;
    server->limits.max_headers = 100;
    server->limits.max_body_bytes = mock->config.max_body_bytes;
    server->max_connections = (mock->config.max_connections + mock->threads - 1) / mock->threads;
    /* Clients of a mock may be as slow as the hangs it serves: long timeouts. */
    server->header_timeout_ms = 30000;
    server->body_timeout_ms = 60000;
    server->idle_timeout_ms = 600000;
    server->metrics = mock->metrics;
    server->route = mock_route;
    server->route_context = mock;
    server->route_names = mock_route_names;
    server->route_count = MOCK_ROUTE_COUNT;
}

static void mock_destroy(struct mock *mock)
{
    if (mock == NULL) {
        return;
    }
    if (mock->group != NULL) {
        reactor_group_stop(mock->group);
        reactor_group_join(mock->group);
        reactor_group_destroy(mock->group);
    }
    listener_close(mock->listen_fds, mock->threads);
    for (uint32_t i = 0; i < mock->threads; i++) {
        rm_free(mock->cores[i].counters);
    }
    metrics_destroy(mock->metrics);
    pthread_mutex_destroy(&mock->stats_lock);
    rm_free(mock);
}

static int mock_create(const struct mock_config *config, struct mock **out, char *err,
                       size_t err_length)
{
    struct mock *mock = rm_calloc(1, sizeof(*mock));
    if (mock == NULL) {
        snprintf(err, err_length, "out of memory");
        return -ENOMEM;
    }
    mock->config = *config;
    mock->threads = mock_thread_count(config);
    mock->start_ns = reactor_clock_ns();
    pthread_mutex_init(&mock->stats_lock, NULL);
    for (uint32_t i = 0; i < REACTOR_MAX; i++) {
        mock->listen_fds[i] = -1;
    }
    *out = mock;
    mock->metrics = metrics_create(mock->threads);
    for (uint32_t i = 0; i < mock->threads && mock->metrics != NULL; i++) {
        mock->cores[i].counters = rm_calloc(MOCK_COUNT_TOTAL, sizeof(uint64_t));
        if (mock->cores[i].counters == NULL) {
            break;
        }
    }
    if (mock->metrics == NULL || mock->cores[mock->threads - 1].counters == NULL) {
        snprintf(err, err_length, "out of memory");
        return -ENOMEM;
    }
    return listener_open(config->host, config->port, mock->threads, mock->listen_fds,
                         &mock->port, err, err_length);
}

static int mock_start(struct mock *mock, char *err, size_t err_length)
{
    RM_ASSERT(mock->group == NULL);
    mock_server_config(mock);
    struct reactor_group_config group_config = {
        .reactors = mock->threads,
        .pin = true,
        .queue_depth = MOCK_QUEUE_DEPTH,
        .setup = mock_reactor_setup,
        .teardown = mock_reactor_teardown,
        .busy = mock_reactor_busy,
        .stopping = mock_reactor_stopping,
        .context = mock,
        .drain_timeout_ms = 2000,
    };
    int result = reactor_group_create(&group_config, &mock->group);
    if (result == 0) {
        result = reactor_group_start(mock->group);
    }
    if (result != 0) {
        snprintf(err, err_length, "starting %u reactors failed: %s", mock->threads,
                 strerror(-result));
    }
    return result;
}

/* Blocks the stop signals (the reactors inherit the mask) and returns a signalfd. */
static int mock_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGPIPE);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) {
        return -1;
    }
    return signalfd(-1, &set, SFD_CLOEXEC);
}

static void mock_wait_for_stop(int signal_fd)
{
    RM_ASSERT(signal_fd >= 0);
    for (;;) {
        struct signalfd_siginfo info;
        ssize_t got = read(signal_fd, &info, sizeof(info));
        if (got == (ssize_t)sizeof(info)) {
            if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) {
                return;
            }
            continue;
        }
        if (got < 0 && errno == EINTR) {
            continue;
        }
        fprintf(stderr, "ringmaster-mock: reading signals failed (%s); stopping\n",
                strerror(errno));
        return;
    }
}

int main(int argc, char **argv)
{
    static struct mock_config config;
    char err[MOCK_ERROR_MAX] = "";
    int parsed = mock_config_parse(&config, argc, argv, err, sizeof(err));
    if (parsed != 0) {
        if (parsed < 0) {
            fprintf(stderr, "ringmaster-mock: %s\n", err);
        }
        return parsed < 0 ? 2 : 0;
    }
    config_json_init();
    int signal_fd = mock_signals();
    struct mock *mock = NULL;
    int result = signal_fd < 0 ? -errno : mock_create(&config, &mock, err, sizeof(err));
    if (result == 0) {
        result = mock_start(mock, err, sizeof(err));
    }
    if (result != 0) {
        fprintf(stderr, "ringmaster-mock: %s\n", err[0] != '\0' ? err : strerror(-result));
        mock_destroy(mock);
        if (signal_fd >= 0) {
            close(signal_fd);
        }
        return 1;
    }
    fprintf(stderr, "ringmaster-mock listening on port %u with %u reactors\n", mock->port,
            mock->threads);
    mock_wait_for_stop(signal_fd);
    close(signal_fd);
    mock_destroy(mock);
    return 0;
}
