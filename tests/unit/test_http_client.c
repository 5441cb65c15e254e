/* The outbound client on a real reactor, against real local servers: the engine itself (for
 * keep-alive reuse) and small raw-socket servers in a thread that answer with scripted bytes
 * (bad responses, slow or silent servers, event streams, chunked bodies). */

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/metrics.h"
#include "core/reactor.h"
#include "net/http_client.h"
#include "tests/support.h"

#define TEST_CLIENT_REQUESTS_MAX 64

struct test_client_result {
    bool done;
    enum http_client_outcome outcome;
    int status;
    char body[4096];
    char error[HTTP_CLIENT_ERROR_BYTES];
    char events[4096];
    int event_count;
};

struct test_client_scenario {
    struct reactor_group *group;
    struct metrics_registry *metrics;
    struct http_client *client;
    struct http_client_upstream_config config;
    char url[128];
    uint32_t request_count;
    bool chain; /* send request i+1 from the on_complete of request i */
    bool stream;
    const char *path;
    struct http_client_request requests[TEST_CLIENT_REQUESTS_MAX];
    struct test_client_result results[TEST_CLIENT_REQUESTS_MAX];
    int send_results[TEST_CLIENT_REQUESTS_MAX];
    uint32_t completed;
    uint32_t expected;
    struct http_client_upstream_stats stats;
    int upstream_id;
    char add_error[256];
    char metrics_text[65536];
};

static struct test_client_scenario scenario;

static void test_client_finish_one(void)
{
    scenario.completed++;
    if (scenario.completed == scenario.expected) {
        scenario.stats = http_client_stats(scenario.client, 0);
        reactor_group_stop(scenario.group);
    }
}

static void test_client_on_event(struct http_client_request *request,
                                 const struct sse_event *event)
{
    struct test_client_result *result = request->context;
    size_t length = strlen(result->events);
    snprintf(result->events + length, sizeof(result->events) - length, "[%s:%s]", event->type,
             event->data);
    result->event_count++;
}

static void test_client_send(uint32_t index);

static void test_client_on_complete(struct http_client_request *request,
                                    const struct http_client_response *response)
{
    struct test_client_result *result = request->context;
    result->done = true;
    result->outcome = response->outcome;
    result->status = response->status;
    snprintf(result->error, sizeof(result->error), "%s", response->error);
    if (response->body != NULL) {
        snprintf(result->body, sizeof(result->body), "%.*s", (int)response->body_length,
                 response->body);
    }
    uint32_t index = (uint32_t)(result - scenario.results);
    if (scenario.chain && index + 1 < scenario.request_count) {
        test_client_send(index + 1);
    }
    test_client_finish_one();
}

static void test_client_send(uint32_t index)
{
    struct http_client_request *request = &scenario.requests[index];
    memset(request, 0, sizeof(*request));
    request->upstream = (uint32_t)scenario.upstream_id;
    request->method = "GET";
    request->path = scenario.path;
    request->on_complete = test_client_on_complete;
    request->on_event = scenario.stream ? test_client_on_event : NULL;
    request->context = &scenario.results[index];
    scenario.send_results[index] = http_client_send(scenario.client, request);
    if (scenario.send_results[index] != 0) {
        memcpy(scenario.results[index].error, request->error, sizeof(request->error));
        test_client_finish_one();
    }
}

static int test_client_setup(struct reactor *reactor, void *context)
{
    (void)context;
    cr_assert_eq(http_client_create(reactor, scenario.metrics, NULL, &scenario.client), 0);
    scenario.config.url = scenario.url;
    scenario.upstream_id = http_client_add_upstream(scenario.client, &scenario.config,
                                                    scenario.add_error,
                                                    sizeof(scenario.add_error));
    cr_assert_eq(scenario.upstream_id, 0, "%s", scenario.add_error);
    uint32_t first = scenario.chain ? 1 : scenario.request_count;
    for (uint32_t i = 0; i < first; i++) {
        test_client_send(i);
    }
    return 0;
}

static void test_client_teardown(struct reactor *reactor, void *context)
{
    (void)reactor;
    (void)context;
    http_client_destroy(scenario.client);
}

static bool test_client_busy(struct reactor *reactor, void *context)
{
    (void)reactor;
    (void)context;
    return http_client_busy(scenario.client);
}

static void test_client_prepare(uint16_t port, uint32_t requests)
{
    memset(&scenario, 0, sizeof(scenario));
    snprintf(scenario.url, sizeof(scenario.url), "http://127.0.0.1:%u", (unsigned)port);
    scenario.config = (struct http_client_upstream_config){
        .name = "test-up",
        .max_connections = 4,
        .max_idle = 4,
        .max_queued = 16,
        .idle_timeout_ms = 5000,
        .connect_timeout_ms = 2000,
        .first_byte_timeout_ms = 2000,
        .total_timeout_ms = 8000,
        .limits = {.max_status_line_bytes = 256, .max_header_bytes = 8192, .max_headers = 64,
                   .max_body_bytes = 1 << 20},
        .max_event_bytes = 4096,
    };
    scenario.request_count = requests;
    scenario.expected = requests;
    scenario.path = "/";
}

static void test_client_run(void)
{
    scenario.metrics = metrics_create(1);
    cr_assert_not_null(scenario.metrics);
    struct reactor_group_config config = {
        .reactors = 1, .queue_depth = 64, .setup = test_client_setup,
        .teardown = test_client_teardown, .busy = test_client_busy, .drain_timeout_ms = 2000};
    cr_assert_eq(reactor_group_create(&config, &scenario.group), 0);
    cr_assert_eq(reactor_group_start(scenario.group), 0);
    reactor_group_join(scenario.group);
    reactor_group_destroy(scenario.group);
    char *text = NULL;
    size_t length = metrics_render(scenario.metrics, &text);
    cr_assert_not_null(text);
    snprintf(scenario.metrics_text, sizeof(scenario.metrics_text), "%.*s", (int)length, text);
    rm_free(text);
    metrics_destroy(scenario.metrics);
    cr_assert_eq(scenario.completed, scenario.expected);
}

/* ---- a scripted raw server ---- */

struct test_server {
    int listen_fd;
    uint16_t port;
    pthread_t thread;
    const char *responses[TEST_CLIENT_REQUESTS_MAX]; /* one per request, in order */
    uint32_t response_count;
    bool close_after_each;
    bool silent; /* read requests, never answer */
    uint32_t accepted;
};

static bool test_server_read_head(int fd)
{
    char buffer[8192];
    size_t length = 0;
    while (length < sizeof(buffer) - 1) {
        ssize_t got = recv(fd, buffer + length, sizeof(buffer) - 1 - length, 0);
        if (got <= 0) {
            return false;
        }
        length += (size_t)got;
        buffer[length] = '\0';
        if (strstr(buffer, "\r\n\r\n") != NULL) {
            return true;
        }
    }
    return false;
}

static void *test_server_main(void *context)
{
    struct test_server *server = context;
    uint32_t answered = 0;
    while (answered < server->response_count || (server->silent && server->accepted == 0)) {
        int fd = accept(server->listen_fd, NULL, NULL);
        if (fd < 0) {
            return NULL;
        }
        server->accepted++;
        struct timeval timeout = {.tv_sec = 5};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
        while (test_server_read_head(fd)) {
            if (server->silent) {
                char byte;
                (void)recv(fd, &byte, 1, 0); /* until the client gives up and closes */
                break;
            }
            const char *response = server->responses[answered++];
            (void)send(fd, response, strlen(response), MSG_NOSIGNAL);
            if (server->close_after_each || answered == server->response_count) {
                break;
            }
        }
        close(fd);
    }
    return NULL;
}

static void test_server_start(struct test_server *server)
{
    server->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(server->listen_fd, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    cr_assert_eq(bind(server->listen_fd, (struct sockaddr *)&address, sizeof(address)), 0);
    cr_assert_eq(listen(server->listen_fd, 16), 0);
    socklen_t length = sizeof(address);
    getsockname(server->listen_fd, (struct sockaddr *)&address, &length);
    server->port = ntohs(address.sin_port);
    cr_assert_eq(pthread_create(&server->thread, NULL, test_server_main, server), 0);
}

static void test_server_stop(struct test_server *server)
{
    shutdown(server->listen_fd, SHUT_RDWR);
    pthread_join(server->thread, NULL);
    close(server->listen_fd);
}

/* Runs one request against a server answering `response`; returns its result. */
static struct test_client_result *test_client_against(const char *response, bool silent)
{
    static struct test_server server;
    memset(&server, 0, sizeof(server));
    server.responses[0] = response;
    server.response_count = silent ? 0 : 1;
    server.silent = silent;
    test_server_start(&server);
    test_client_prepare(server.port, 1);
    scenario.config.first_byte_timeout_ms = 300;
    test_client_run();
    test_server_stop(&server);
    return &scenario.results[0];
}

Test(http_client, keep_alive_reuses_the_connection_to_the_engine)
{
    struct test_engine engine;
    test_engine_start(&engine, 1, "");
    test_client_prepare(engine.port, 2);
    scenario.chain = true;
    scenario.path = "/healthz";
    test_client_run();
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(scenario.results[i].outcome, HTTP_CLIENT_OK, "%s", scenario.results[i].error);
        cr_assert_eq(scenario.results[i].status, 200);
    }
    cr_assert_eq(scenario.stats.connections_opened, 1);
    cr_assert_eq(scenario.stats.connections_reused, 1);
    cr_assert_not_null(strstr(scenario.metrics_text, "ringmaster_upstream_requests_total{"
                                                     "upstream=\"test-up\",outcome=\"ok\"} 2"),
                       "%s", scenario.metrics_text);
    cr_assert_not_null(strstr(scenario.metrics_text, "ringmaster_upstream_connect_seconds_count{"
                                                     "upstream=\"test-up\"} 1"));
    test_engine_stop(&engine);
}

Test(http_client, chunked_body_is_decoded)
{
    struct test_client_result *result = test_client_against(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        "6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n", false);
    cr_assert_eq(result->outcome, HTTP_CLIENT_OK, "%s", result->error);
    cr_assert_str_eq(result->body, "hello world");
}

Test(http_client, server_errors_are_http_errors_with_body)
{
    struct test_client_result *result = test_client_against(
        "HTTP/1.1 503 Busy\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy", false);
    cr_assert_eq(result->outcome, HTTP_CLIENT_HTTP_ERROR);
    cr_assert_eq(result->status, 503);
    cr_assert_str_eq(result->body, "busy");
}

Test(http_client, event_stream_is_delivered_incrementally)
{
    struct test_server server = {0};
    server.responses[0] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n"
                          "d\r\ndata: {\"a\":1}\r\n"
                          "2\r\n\n\n\r\n"
                          "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n";
    server.response_count = 1;
    test_server_start(&server);
    test_client_prepare(server.port, 1);
    scenario.stream = true;
    test_client_run();
    test_server_stop(&server);
    struct test_client_result *result = &scenario.results[0];
    cr_assert_eq(result->outcome, HTTP_CLIENT_OK, "%s", result->error);
    cr_assert_str_eq(result->events, "[message:{\"a\":1}][message:[DONE]]");
    cr_assert_eq(result->event_count, 2);
}

Test(http_client, malformed_responses_fail_with_protocol_errors)
{
    const char *cases[][2] = {
        {"HTTP/1.1 2OO OK\r\n\r\n", "malformed status line"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "hexadecimal"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nabc",
         "before the whole Content-Length body"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct test_client_result *result = test_client_against(cases[i][0], false);
        cr_assert_eq(result->outcome, HTTP_CLIENT_PROTOCOL_ERROR, "case %zu: %s", i,
                     result->error);
        cr_assert_not_null(strstr(result->error, cases[i][1]), "case %zu: %s", i, result->error);
        cr_assert_not_null(strstr(result->error, "upstream test-up (127.0.0.1:"));
    }
}

Test(http_client, oversized_headers_fail)
{
    static char response[16384];
    int length = snprintf(response, sizeof(response), "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(response + length, 'a', 9000);
    snprintf(response + length + 9000, sizeof(response) - (size_t)length - 9000,
             "\r\nContent-Length: 0\r\n\r\n");
    struct test_client_result *result = test_client_against(response, false);
    cr_assert_eq(result->outcome, HTTP_CLIENT_PROTOCOL_ERROR, "%s", result->error);
    cr_assert_not_null(strstr(result->error, "max_header_bytes"), "%s", result->error);
}

Test(http_client, a_silent_server_hits_the_first_byte_timeout)
{
    struct test_client_result *result = test_client_against(NULL, true);
    cr_assert_eq(result->outcome, HTTP_CLIENT_TIMEOUT, "%s", result->error);
    cr_assert_not_null(strstr(result->error, "no first byte within 300 ms"), "%s",
                       result->error);
}

Test(http_client, a_refused_connection_is_a_connect_error)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&address, sizeof(address)), 0);
    socklen_t length = sizeof(address);
    getsockname(fd, (struct sockaddr *)&address, &length);
    test_client_prepare(ntohs(address.sin_port), 1);
    test_client_run();
    close(fd);
    struct test_client_result *result = &scenario.results[0];
    cr_assert_eq(result->outcome, HTTP_CLIENT_CONNECT_ERROR, "%s", result->error);
    cr_assert_not_null(strstr(result->error, "Connection refused"), "%s", result->error);
}

Test(http_client, pool_limit_queues_then_rejects)
{
    struct test_server server = {0};
    for (int i = 0; i < 2; i++) {
        server.responses[i] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    }
    server.response_count = 2;
    test_server_start(&server);
    test_client_prepare(server.port, 3);
    scenario.config.max_connections = 1;
    scenario.config.max_idle = 1;
    scenario.config.max_queued = 1;
    test_client_run();
    test_server_stop(&server);
    cr_assert_eq(scenario.send_results[0], 0);
    cr_assert_eq(scenario.send_results[1], 0);
    cr_assert_eq(scenario.send_results[2], -EBUSY);
    cr_assert_not_null(strstr(scenario.results[2].error, "retry later"));
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(scenario.results[i].outcome, HTTP_CLIENT_OK, "%s", scenario.results[i].error);
        cr_assert_str_eq(scenario.results[i].body, "ok");
    }
    cr_assert_eq(scenario.stats.connections_opened, 1);
    cr_assert_eq(scenario.stats.connections_reused, 1);
}

/* Queued requests take the parked connection at once, so its idle poll is cancelled while the
 * next response may already be complete: the cancelled poll's late completion must neither
 * close the healthy connection nor trip over a newly armed poll. */
Test(http_client, back_to_back_queued_requests_share_one_connection)
{
    struct test_engine engine;
    test_engine_start(&engine, 1, "");
    for (int round = 0; round < 30; round++) {
        test_client_prepare(engine.port, TEST_CLIENT_REQUESTS_MAX);
        scenario.config.max_connections = 1;
        scenario.config.max_idle = 1;
        scenario.config.max_queued = TEST_CLIENT_REQUESTS_MAX;
        scenario.path = "/healthz";
        test_client_run();
        for (int i = 0; i < TEST_CLIENT_REQUESTS_MAX; i++) {
            cr_assert_eq(scenario.results[i].outcome, HTTP_CLIENT_OK, "round %d request %d: %s",
                         round, i, scenario.results[i].error);
        }
        cr_assert_eq(scenario.stats.connections_opened, 1, "round %d", round);
    }
    test_engine_stop(&engine);
}
