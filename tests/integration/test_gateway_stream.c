/* Streamed answers. The gateway end to end: an embedded engine, ringmaster-mock (which
 * answers "stream": true with an event stream) or a scripted upstream in a thread (which
 * holds its stream open, or breaks it off), curl or a raw socket as the client. And the
 * server's streaming API on its own: a reactor with an http_server whose route streams. */

#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/metrics.h"
#include "core/reactor.h"
#include "net/http_server.h"
#include "net/listener.h"
#include "tests/support.h"

#define STREAM_OUTPUT_MAX (1024 * 1024)

static char output[STREAM_OUTPUT_MAX];
static char stats[65536];

static const char stream_chat[] =
    "{\"model\":\"gpt-mock\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],"
    "\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
static const char plain_chat[] =
    "{\"model\":\"gpt-mock\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}";

TestSuite(gateway_stream, .timeout = 120);

/* ---- helpers ---- */

static void stream_engine(struct test_engine *engine, const char *name, uint16_t port,
                          const char *fields)
{
    char extra[2048];
    snprintf(extra, sizeof(extra),
             "\"endpoints\": {\"%s\": {\"url\": \"http://127.0.0.1:%u/v1\","
             " \"keys\": [{\"name\": \"k\"}], %s}}",
             name, port, fields);
    test_engine_start(engine, 2, extra);
}

/* POSTs a chat body with curl (-i: the head is kept; -N: no buffering); the HTTP status. */
static int stream_post(uint16_t port, const char *flags, const char *body)
{
    char command[4096];
    snprintf(command, sizeof(command),
             "curl -s -i -N -m 30 %s -H 'Content-Type: application/json' --data-binary '%s' "
             "http://127.0.0.1:%u/v1/chat/completions",
             flags, body, port);
    cr_assert_eq(test_run(command, output, sizeof(output)), 0, "curl failed: %s", command);
    return test_status(output);
}

static void stream_mock_stats(const struct test_mock *mock)
{
    char command[256];
    snprintf(command, sizeof(command), "curl -s -m 10 http://127.0.0.1:%u/mock/stats",
             mock->port);
    cr_assert_eq(test_run(command, stats, sizeof(stats)), 0);
}

static bool stream_ends_with(const char *text, const char *suffix)
{
    size_t length = strlen(text);
    size_t suffix_length = strlen(suffix);
    return length >= suffix_length && strcmp(text + length - suffix_length, suffix) == 0;
}

/* Reads from fd (appending at *used) until needle appears or 10 s pass; true when found. */
static bool stream_read_until(int fd, char *buffer, size_t capacity, size_t *used,
                              const char *needle)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (strstr(buffer, needle) == NULL) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec > 10 || *used + 1 >= capacity) {
            return false;
        }
        ssize_t got = recv(fd, buffer + *used, capacity - 1 - *used, 0);
        if (got <= 0) {
            return false;
        }
        *used += (size_t)got;
        buffer[*used] = '\0';
    }
    return true;
}

/* Decodes one chunked body starting at `body` into decoded; returns the first byte after it,
 * or NULL when the framing is wrong. */
static const char *stream_dechunk(const char *body, char *decoded, size_t capacity,
                                  size_t *chunks)
{
    size_t used = 0;
    *chunks = 0;
    for (;;) {
        char *line_end = NULL;
        unsigned long size = strtoul(body, &line_end, 16);
        if (line_end == body || strncmp(line_end, "\r\n", 2) != 0) {
            return NULL;
        }
        body = line_end + 2;
        if (size == 0) {
            decoded[used] = '\0';
            return strncmp(body, "\r\n", 2) == 0 ? body + 2 : NULL;
        }
        if (used + size >= capacity || strlen(body) < size + 2 ||
            strncmp(body + size, "\r\n", 2) != 0) {
            return NULL;
        }
        memcpy(decoded + used, body, size);
        used += size;
        body += size + 2;
        (*chunks)++;
    }
}

static long long stream_metric(const char *text, const char *series)
{
    const char *at = strstr(text, series);
    return at == NULL ? -1 : strtoll(at + strlen(series), NULL, 10);
}

/* ---- a scripted upstream: holds its event stream until released ---- */

struct stream_upstream {
    int listen_fd;
    uint16_t port;
    pthread_t thread;
    const char *head; /* sent at once after the first request */
    const char *rest; /* sent once released; NULL: the connection is closed instead */
    sem_t release;
    atomic_int connections;
    atomic_bool stop;
};

static void stream_upstream_read_request(int fd)
{
    char request[16384];
    size_t used = 0;
    char *end = NULL;
    while (end == NULL && used + 1 < sizeof(request)) {
        ssize_t got = recv(fd, request + used, sizeof(request) - 1 - used, 0);
        if (got <= 0) {
            return;
        }
        used += (size_t)got;
        request[used] = '\0';
        end = strstr(request, "\r\n\r\n");
    }
    const char *length = strcasestr(request, "\r\nContent-Length:");
    size_t body = length == NULL ? 0 : strtoul(length + 17, NULL, 10);
    size_t have = end == NULL ? 0 : used - (size_t)(end + 4 - request);
    while (have < body) {
        ssize_t got = recv(fd, request, sizeof(request), 0);
        if (got <= 0) {
            return;
        }
        have += (size_t)got;
    }
}

static void stream_upstream_serve(struct stream_upstream *upstream, int fd)
{
    static const char refusal[] = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n"
                                  "Connection: close\r\n\r\n{}";
    stream_upstream_read_request(fd);
    if (atomic_fetch_add(&upstream->connections, 1) > 0) {
        test_send(fd, refusal, sizeof(refusal) - 1); /* only the first request is scripted */
        return;
    }
    test_send_text(fd, upstream->head);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 20;
    sem_timedwait(&upstream->release, &deadline);
    if (upstream->rest != NULL) {
        test_send_text(fd, upstream->rest);
    }
}

static void *stream_upstream_main(void *context)
{
    struct stream_upstream *upstream = context;
    while (!atomic_load(&upstream->stop)) {
        struct pollfd ready = {.fd = upstream->listen_fd, .events = POLLIN};
        if (poll(&ready, 1, 50) != 1) {
            continue;
        }
        int fd = accept(upstream->listen_fd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        struct timeval timeout = {.tv_sec = 5};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
        stream_upstream_serve(upstream, fd);
        close(fd);
    }
    return NULL;
}

static void stream_upstream_start(struct stream_upstream *upstream, const char *head,
                                  const char *rest)
{
    memset(upstream, 0, sizeof(*upstream));
    upstream->head = head;
    upstream->rest = rest;
    cr_assert_eq(sem_init(&upstream->release, 0, 0), 0);
    char err[128];
    cr_assert_eq(listener_open("127.0.0.1", 0, 1, &upstream->listen_fd, &upstream->port, err,
                               sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(pthread_create(&upstream->thread, NULL, stream_upstream_main, upstream), 0);
}

static void stream_upstream_stop(struct stream_upstream *upstream)
{
    sem_post(&upstream->release);
    atomic_store(&upstream->stop, true);
    pthread_join(upstream->thread, NULL);
    close(upstream->listen_fd);
    sem_destroy(&upstream->release);
}

#define STREAM_EVENT_HEAD                                                                      \
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" \
    "f\r\ndata: {\"n\":1}\n\n\r\n"

static const char stream_scripted_fields[] =
    "\"models\": [\"gpt-script\"],"
    " \"retry\": {\"max_attempts\": 3, \"base_ms\": 10, \"max_ms\": 50}";

/* ---- the gateway with ringmaster-mock ---- */

Test(gateway_stream, streamed_answer_arrives_as_chunked_events_ending_with_done)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "");
    struct test_engine engine;
    stream_engine(&engine, "mock", mock.port, "\"models\": [\"gpt-mock\"]");
    cr_assert_eq(stream_post(engine.port, "", stream_chat), 200, "%s", output);
    cr_assert_not_null(strcasestr(output, "\r\nContent-Type: text/event-stream\r\n"), "%s",
                       output);
    cr_assert_not_null(strcasestr(output, "\r\nTransfer-Encoding: chunked\r\n"), "%s", output);
    cr_assert_null(strcasestr(output, "\r\nContent-Length:"), "%s", output);
    cr_assert_not_null(strcasestr(output, "\r\nRingmaster-Endpoint: mock\r\n"), "%s", output);
    cr_assert_not_null(strcasestr(output, "\r\nRingmaster-Key: k\r\n"), "%s", output);
    cr_assert_not_null(strcasestr(output, "\r\nRingmaster-Attempts: 1\r\n"), "%s", output);
    const char *body = strstr(output, "\r\n\r\n");
    cr_assert_not_null(body);
    cr_assert_eq(strncmp(body + 4, "data: {", 7), 0, "%s", output);
    cr_assert_geq(test_count(body, "data: {\"id\":"), 4, "several events: %s", output);
    cr_assert_eq(test_count(body, "data: "), test_count(body, "\n\n"), "%s", output);
    cr_assert_not_null(strstr(body, "\"object\":\"chat.completion.chunk\""), "%s", output);
    cr_assert_not_null(strstr(body, "\"usage\":{"), "the include_usage chunk: %s", output);
    cr_assert(stream_ends_with(output, "}\n\ndata: [DONE]\n\n"), "%s", output);
    stream_mock_stats(&mock);
    cr_assert_eq(test_json_number(stats, NULL, "streamed"), 1, "%s", stats);
    /* The usage chunk corrected the key's token count. */
    char command[256];
    snprintf(command, sizeof(command), "curl -s -m 10 http://127.0.0.1:%u/metrics",
             engine.port);
    cr_assert_eq(test_run(command, output, sizeof(output)), 0);
    cr_assert_gt(stream_metric(output, "ringmaster_llm_tokens_total{endpoint=\"mock\","
                                       "kind=\"completion\"} "),
                 0, "%s", output);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

Test(gateway_stream, plain_request_still_gets_one_json_answer)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "");
    struct test_engine engine;
    stream_engine(&engine, "mock", mock.port, "\"models\": [\"gpt-mock\"]");
    cr_assert_eq(stream_post(engine.port, "", plain_chat), 200, "%s", output);
    cr_assert_not_null(strcasestr(output, "\r\nContent-Type: application/json\r\n"), "%s",
                       output);
    cr_assert_not_null(strcasestr(output, "\r\nContent-Length: "), "%s", output);
    cr_assert_null(strcasestr(output, "Transfer-Encoding"), "%s", output);
    cr_assert_null(strcasestr(output, "Cache-Control"), "%s", output);
    cr_assert_not_null(strcasestr(output, "\r\nRingmaster-Endpoint: mock\r\n"), "%s", output);
    cr_assert_not_null(strstr(output, "\"object\":\"chat.completion\""), "%s", output);
    cr_assert_null(strstr(output, "data: "), "%s", output);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

Test(gateway_stream, streamed_then_plain_request_share_one_keep_alive_connection)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "");
    struct test_engine engine;
    stream_engine(&engine, "mock", mock.port, "\"models\": [\"gpt-mock\"]");
    /* curl: two requests one after the other on one connection. */
    char command[4096];
    snprintf(command, sizeof(command),
             "curl -s -i -N -v -m 30 -H 'Content-Type: application/json' --data-binary '%s' "
             "http://127.0.0.1:%u/v1/chat/completions --next -s -i -H 'Content-Type: "
             "application/json' --data-binary '%s' http://127.0.0.1:%u/v1/chat/completions "
             "2>&1",
             stream_chat, engine.port, plain_chat, engine.port);
    cr_assert_eq(test_run(command, output, sizeof(output)), 0, "%s", output);
    cr_assert_not_null(strstr(output, "Re-using existing connection"), "%s", output);
    const char *plain = strstr(output, "data: [DONE]\n\n");
    cr_assert_not_null(plain, "%s", output);
    cr_assert_not_null(strstr(plain, "\"object\":\"chat.completion\""), "%s", output);
    /* Raw bytes: both requests pipelined at once, the answers in order and framed. */
    char requests[4096];
    int length = snprintf(requests, sizeof(requests),
                          "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: "
                          "%zu\r\n\r\n%sPOST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                          "Connection: close\r\nContent-Length: %zu\r\n\r\n%s",
                          strlen(stream_chat), stream_chat, strlen(plain_chat), plain_chat);
    int fd = test_connect(engine.port);
    test_send(fd, requests, (size_t)length);
    size_t read = test_read_all(fd, output, sizeof(output));
    close(fd);
    cr_assert_gt(read, 0);
    cr_assert_eq(strncmp(output, "HTTP/1.1 200 OK\r\n", 17), 0, "%s", output);
    cr_assert_not_null(strcasestr(output, "\r\nTransfer-Encoding: chunked\r\n"), "%s", output);
    static char decoded[STREAM_OUTPUT_MAX];
    size_t chunks = 0;
    const char *next = stream_dechunk(strstr(output, "\r\n\r\n") + 4, decoded,
                                      sizeof(decoded), &chunks);
    cr_assert_not_null(next, "bad chunked framing: %s", output);
    cr_assert_geq(chunks, 4, "one chunk per event: %s", output);
    cr_assert(stream_ends_with(decoded, "data: [DONE]\n\n"), "%s", decoded);
    cr_assert_eq(strncmp(next, "HTTP/1.1 200 OK\r\n", 17), 0, "the second answer: %s", next);
    cr_assert_not_null(strcasestr(next, "\r\nContent-Length: "), "%s", next);
    cr_assert_not_null(strstr(next, "\"object\":\"chat.completion\""), "%s", next);
    stream_mock_stats(&mock);
    cr_assert_eq(test_json_number(stats, NULL, "streamed"), 2, "%s", stats);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

Test(gateway_stream, failing_endpoint_answers_a_streamed_request_with_a_json_error)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "--llm-error-rate 1");
    struct test_engine engine;
    stream_engine(&engine, "mock", mock.port,
                  "\"models\": [\"gpt-mock\"],"
                  " \"retry\": {\"max_attempts\": 2, \"base_ms\": 10, \"max_ms\": 50}");
    cr_assert_eq(stream_post(engine.port, "", stream_chat), 502, "%s", output);
    cr_assert_not_null(strcasestr(output, "\r\nContent-Type: application/json\r\n"), "%s",
                       output);
    cr_assert_null(strcasestr(output, "text/event-stream"), "%s", output);
    cr_assert_null(strstr(output, "data: "), "%s", output);
    cr_assert_not_null(strstr(output, "{\"error\":{\"type\":\"upstream_failed\""), "%s",
                       output);
    cr_assert_not_null(strstr(output, "2 attempts failed"), "%s", output);
    stream_mock_stats(&mock);
    cr_assert_eq(test_json_number(stats, NULL, "chat_completions"), 2, "retried: %s", stats);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

Test(gateway_stream, http10_client_gets_a_stream_delimited_by_the_close)
{
    struct test_mock mock;
    test_mock_start(&mock, 0, "");
    struct test_engine engine;
    stream_engine(&engine, "mock", mock.port, "\"models\": [\"gpt-mock\"]");
    cr_assert_eq(stream_post(engine.port, "--http1.0", stream_chat), 200, "%s", output);
    cr_assert_null(strcasestr(output, "Transfer-Encoding"), "%s", output);
    cr_assert_null(strcasestr(output, "Content-Length"), "%s", output);
    cr_assert_not_null(strcasestr(output, "\r\nConnection: close\r\n"), "%s", output);
    cr_assert_geq(test_count(output, "data: {\"id\":"), 4, "%s", output);
    cr_assert(stream_ends_with(output, "data: [DONE]\n\n"), "%s", output);
    test_engine_stop(&engine);
    test_mock_stop(&mock);
}

/* ---- the gateway with a scripted upstream ---- */

Test(gateway_stream, events_are_passed_on_while_the_upstream_still_streams)
{
    struct stream_upstream upstream;
    stream_upstream_start(&upstream, STREAM_EVENT_HEAD,
                          "f\r\ndata: {\"n\":2}\n\n\r\ne\r\ndata: [DONE]\n\n\r\n0\r\n\r\n");
    struct test_engine engine;
    stream_engine(&engine, "scripted", upstream.port, stream_scripted_fields);
    const char body[] = "{\"model\":\"gpt-script\",\"messages\":[{\"role\":\"user\"}],"
                        "\"stream\":true}";
    char request[1024];
    int length = snprintf(request, sizeof(request),
                          "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close"
                          "\r\nContent-Length: %zu\r\n\r\n%s",
                          strlen(body), body);
    int fd = test_connect(engine.port);
    test_send(fd, request, (size_t)length);
    size_t used = 0;
    output[0] = '\0';
    cr_assert(stream_read_until(fd, output, sizeof(output), &used, "data: {\"n\":1}\n\n"),
              "the first event must arrive while the upstream holds the rest: %s", output);
    cr_assert_null(strstr(output, "[DONE]"), "%s", output);
    cr_assert_not_null(strcasestr(output, "\r\nRingmaster-Endpoint: scripted\r\n"), "%s",
                       output);
    sem_post(&upstream.release);
    size_t rest = test_read_all(fd, output + used, sizeof(output) - used);
    close(fd);
    cr_assert_gt(rest, 0);
    static char decoded[4096];
    size_t chunks = 0;
    const char *after = stream_dechunk(strstr(output, "\r\n\r\n") + 4, decoded,
                                       sizeof(decoded), &chunks);
    cr_assert_not_null(after, "%s", output);
    cr_assert_str_eq(decoded, "data: {\"n\":1}\n\ndata: {\"n\":2}\n\ndata: [DONE]\n\n");
    cr_assert_eq(chunks, 3);
    cr_assert_str_eq(after, "");
    cr_assert_eq(atomic_load(&upstream.connections), 1);
    test_engine_stop(&engine);
    stream_upstream_stop(&upstream);
}

Test(gateway_stream, stream_that_breaks_off_ends_with_an_error_event_and_no_retry)
{
    struct stream_upstream upstream;
    stream_upstream_start(&upstream, STREAM_EVENT_HEAD, NULL); /* then the connection closes */
    sem_post(&upstream.release);
    struct test_engine engine;
    stream_engine(&engine, "scripted", upstream.port, stream_scripted_fields);
    cr_assert_eq(stream_post(engine.port, "",
                             "{\"model\":\"gpt-script\",\"messages\":[{\"role\":\"user\"}],"
                             "\"stream\":true}"),
                 200, "%s", output);
    cr_assert_not_null(strcasestr(output, "\r\nTransfer-Encoding: chunked\r\n"), "%s", output);
    const char *body = strstr(output, "\r\n\r\n");
    cr_assert_not_null(body);
    const char expected[] = "data: {\"n\":1}\n\ndata: {\"error\":{\"type\":\"upstream_failed\","
                            "\"message\":\"the answer broke off after 1 streamed events";
    cr_assert_eq(strncmp(body + 4, expected, sizeof(expected) - 1), 0, "%s", output);
    cr_assert(stream_ends_with(output, "\"}}\n\n"), "%s", output);
    cr_assert_null(strstr(output, "[DONE]"), "%s", output);
    usleep(200000); /* a retry would have reached the upstream by now */
    cr_assert_eq(atomic_load(&upstream.connections), 1);
    /* The engine still serves on: a plain call to the upstream, which now refuses (500). */
    cr_assert_eq(stream_post(engine.port, "",
                             "{\"model\":\"gpt-script\",\"messages\":[{\"role\":\"user\"}]}"),
                 502, "%s", output);
    test_engine_stop(&engine);
    stream_upstream_stop(&upstream);
}

Test(gateway_stream, client_gone_mid_stream_cancels_the_upstream_call)
{
    struct stream_upstream upstream;
    stream_upstream_start(&upstream, STREAM_EVENT_HEAD,
                          "f\r\ndata: {\"n\":2}\n\n\r\ne\r\ndata: [DONE]\n\n\r\n0\r\n\r\n");
    struct test_engine engine;
    stream_engine(&engine, "scripted", upstream.port, stream_scripted_fields);
    const char body[] = "{\"model\":\"gpt-script\",\"messages\":[{\"role\":\"user\"}],"
                        "\"stream\":true}";
    char request[1024];
    int length = snprintf(request, sizeof(request),
                          "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %zu"
                          "\r\n\r\n%s",
                          strlen(body), body);
    int fd = test_connect(engine.port);
    test_send(fd, request, (size_t)length);
    size_t used = 0;
    output[0] = '\0';
    cr_assert(stream_read_until(fd, output, sizeof(output), &used, "data: {\"n\":1}\n\n"),
              "%s", output);
    struct linger abort_close = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof(abort_close));
    close(fd);
    usleep(200000); /* the engine notices the reset */
    sem_post(&upstream.release); /* the next event finds the client gone */
    char command[256];
    snprintf(command, sizeof(command), "curl -s -m 10 http://127.0.0.1:%u/metrics",
             engine.port);
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(test_run(command, output, sizeof(output)), 0);
        if (strstr(output, "outcome=\"cancelled\"} 1\n") != NULL) {
            break;
        }
        usleep(50000);
    }
    cr_assert_not_null(strstr(output, "outcome=\"cancelled\"} 1\n"),
                       "the upstream request is cancelled: %s", output);
    cr_assert_eq(stream_metric(output, "ringmaster_llm_in_flight{endpoint=\"scripted\"} "), 0,
                 "%s", output);
    cr_assert_eq(atomic_load(&upstream.connections), 1);
    test_engine_stop(&engine);
    stream_upstream_stop(&upstream);
}

/* ---- the server's streaming API on its own ---- */

#define SERVER_BIG_CHUNK_BYTES (64 * 1024)
#define SERVER_BIG_CHUNKS 256 /* 16 MiB: far past HTTP_STREAM_UNSENT_MAX */

struct server_scenario {
    struct reactor_group *group;
    struct metrics_registry *metrics;
    struct http_server *server;
    int listen_fd;
    uint16_t port;
    struct http_exchange *big; /* the stream the tick writes */
    uint32_t big_chunks_left;
    char chunk[SERVER_BIG_CHUNK_BYTES];
    atomic_int big_error;
    atomic_bool big_ended;
    atomic_uint open_connections;
};

static struct server_scenario scenario;
static const char *const server_route_names[] = {"none", "stream"};

static void server_route(void *context, struct http_exchange *exchange)
{
    (void)context;
    const struct http_request *request = http_exchange_request(exchange);
    http_exchange_set_route(exchange, 1);
    bool big = request->path.length == 4 && memcmp(request->path.base, "/big", 4) == 0;
    struct http_response_header header = {"X-Stream", big ? "big" : "small"};
    cr_assert_eq(http_exchange_stream_begin(exchange, 200, "text/plain", &header, 1), 0);
    if (big) {
        scenario.big = exchange;
        scenario.big_chunks_left = SERVER_BIG_CHUNKS;
        return;
    }
    /* Written and ended inside the handler: the next pipelined request follows at once. */
    cr_assert_eq(http_exchange_stream_write(exchange, "hello ", 6), 0);
    cr_assert_eq(http_exchange_stream_write(exchange, "", 0), 0);
    cr_assert_eq(http_exchange_stream_write(exchange, "world", 5), 0);
    http_exchange_stream_end(exchange);
}

/* One chunk of the big stream per tick, until it fails or is all written. */
static void server_tick(struct reactor *reactor, void *context)
{
    (void)reactor;
    (void)context;
    atomic_store(&scenario.open_connections, http_server_stats(scenario.server).open_connections);
    if (scenario.big == NULL) {
        return;
    }
    int result = http_exchange_stream_write(scenario.big, scenario.chunk, sizeof(scenario.chunk));
    scenario.big_chunks_left--;
    if (result != 0 || scenario.big_chunks_left == 0) {
        atomic_store(&scenario.big_error, result);
        http_exchange_stream_end(scenario.big);
        scenario.big = NULL;
        atomic_store(&scenario.big_ended, true);
    }
}

static int server_setup(struct reactor *reactor, void *context)
{
    (void)context;
    struct http_server_config config = {
        .limits = {.max_uri_bytes = 1024, .max_header_bytes = 8192, .max_headers = 32,
                   .max_body_bytes = 65536},
        .max_connections = 8,
        .header_timeout_ms = 5000,
        .body_timeout_ms = 5000,
        .idle_timeout_ms = 5000,
        .metrics = scenario.metrics,
        .route = server_route,
        .route_names = server_route_names,
        .route_count = 2,
    };
    int result = http_server_create(reactor, scenario.listen_fd, &config, &scenario.server);
    if (result == 0) {
        reactor_hook_add(reactor, (struct reactor_hook){server_tick, NULL});
    }
    return result;
}

static void server_stopping(struct reactor *reactor, void *context)
{
    (void)reactor;
    (void)context;
    http_server_stop_accepting(scenario.server);
}

static bool server_busy(struct reactor *reactor, void *context)
{
    (void)reactor;
    (void)context;
    return http_server_busy(scenario.server);
}

static void server_teardown(struct reactor *reactor, void *context)
{
    (void)reactor;
    (void)context;
    http_server_destroy(scenario.server);
}

static void server_start(void)
{
    memset(&scenario, 0, sizeof(scenario));
    memset(scenario.chunk, 'x', sizeof(scenario.chunk));
    scenario.metrics = metrics_create(1);
    cr_assert_not_null(scenario.metrics);
    char err[128];
    cr_assert_eq(listener_open("127.0.0.1", 0, 1, &scenario.listen_fd, &scenario.port, err,
                               sizeof(err)),
                 0, "%s", err);
    struct reactor_group_config config = {
        .reactors = 1, .queue_depth = 64, .setup = server_setup, .teardown = server_teardown,
        .busy = server_busy, .stopping = server_stopping, .drain_timeout_ms = 2000};
    cr_assert_eq(reactor_group_create(&config, &scenario.group), 0);
    cr_assert_eq(reactor_group_start(scenario.group), 0);
}

static void server_stop(void)
{
    reactor_group_stop(scenario.group);
    reactor_group_join(scenario.group);
    reactor_group_destroy(scenario.group);
    listener_close(&scenario.listen_fd, 1);
    metrics_destroy(scenario.metrics);
}

TestSuite(http_stream, .timeout = 60);

Test(http_stream, chunked_answers_keep_pipelined_order_and_head_has_no_body)
{
    server_start();
    int fd = test_connect(scenario.port);
    test_send_text(fd, "GET /small HTTP/1.1\r\nHost: x\r\n\r\n"
                       "HEAD /small HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    test_read_all(fd, output, sizeof(output));
    close(fd);
    const char *first = output;
    cr_assert_eq(strncmp(first, "HTTP/1.1 200 OK\r\n", 17), 0, "%s", output);
    const char *body = strstr(first, "\r\n\r\n");
    cr_assert_not_null(body);
    cr_assert_not_null(strstr(first, "\r\nX-Stream: small\r\nContent-Type: text/plain\r\n"
                                     "Transfer-Encoding: chunked\r\n\r\n"),
                       "%s", output);
    const char chunked[] = "6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n";
    cr_assert_eq(strncmp(body + 4, chunked, sizeof(chunked) - 1), 0, "%s", output);
    const char *head = body + 4 + sizeof(chunked) - 1;
    cr_assert_eq(strncmp(head, "HTTP/1.1 200 OK\r\n", 17), 0, "the HEAD answer: %s", output);
    const char *third = strstr(head, "\r\n\r\n") + 4;
    cr_assert_eq(strncmp(third, "HTTP/1.1 200 OK\r\n", 17), 0, "no body after HEAD: %s",
                 output);
    cr_assert_not_null(strstr(third, "\r\nConnection: close\r\n"), "%s", output);
    cr_assert(stream_ends_with(third, chunked), "%s", output);
    server_stop();
}

Test(http_stream, http10_answer_is_delimited_by_the_close)
{
    server_start();
    int fd = test_connect(scenario.port);
    test_send_text(fd, "GET /small HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    test_read_all(fd, output, sizeof(output));
    close(fd);
    cr_assert_eq(strncmp(output, "HTTP/1.1 200 OK\r\n", 17), 0, "%s", output);
    cr_assert_null(strstr(output, "Transfer-Encoding"), "%s", output);
    cr_assert_null(strstr(output, "Content-Length"), "%s", output);
    cr_assert_not_null(strstr(output, "\r\nConnection: close\r\n\r\nhello world"), "%s",
                       output);
    cr_assert(stream_ends_with(output, "\r\n\r\nhello world"), "%s", output);
    server_stop();
}

Test(http_stream, client_that_does_not_read_fails_the_stream_at_the_bound)
{
    server_start();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(scenario.port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&address, sizeof(address)), 0);
    test_send_text(fd, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 0; i < 500 && !atomic_load(&scenario.big_ended); i++) {
        usleep(10000);
    }
    cr_assert(atomic_load(&scenario.big_ended));
    cr_assert_eq(atomic_load(&scenario.big_error), -ENOBUFS,
                 "past HTTP_STREAM_UNSENT_MAX the write fails");
    /* The connection is closed and released although the client never read. */
    for (int i = 0; i < 300 && atomic_load(&scenario.open_connections) > 0; i++) {
        usleep(10000);
    }
    cr_assert_eq(atomic_load(&scenario.open_connections), 0);
    close(fd);
    /* The server goes on serving. */
    fd = test_connect(scenario.port);
    test_send_text(fd, "GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    test_read_all(fd, output, sizeof(output));
    close(fd);
    cr_assert(stream_ends_with(output, "6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"), "%s", output);
    server_stop();
}

Test(http_stream, client_gone_mid_stream_drops_writes_and_end_completes)
{
    server_start();
    int fd = test_connect(scenario.port);
    test_send_text(fd, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    char head[256];
    cr_assert_gt(recv(fd, head, sizeof(head), 0), 0);
    struct linger abort_close = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof(abort_close));
    close(fd); /* a reset */
    for (int i = 0; i < 500 && !atomic_load(&scenario.big_ended); i++) {
        usleep(10000);
    }
    cr_assert(atomic_load(&scenario.big_ended));
    int error = atomic_load(&scenario.big_error);
    cr_assert(error == -EPIPE || error == -ENOBUFS, "%d", error);
    for (int i = 0; i < 300 && atomic_load(&scenario.open_connections) > 0; i++) {
        usleep(10000);
    }
    cr_assert_eq(atomic_load(&scenario.open_connections), 0);
    server_stop();
}

/* Reads until the peer closes into a heap buffer (NUL-terminated); returns its length. */
static size_t server_read_all(int fd, char **text)
{
    size_t capacity = (size_t)SERVER_BIG_CHUNKS * SERVER_BIG_CHUNK_BYTES * 2;
    *text = malloc(capacity);
    cr_assert_not_null(*text);
    size_t used = 0;
    ssize_t got = 0;
    while (used + 1 < capacity && (got = recv(fd, *text + used, capacity - 1 - used, 0)) > 0) {
        used += (size_t)got;
    }
    (*text)[used] = '\0';
    return used;
}

/* The reader holds what a client pipelines behind a stream; a bad request among it, or more
 * than the reader holds, is answered once the stream has ended. */
static void server_pipeline_behind_big(const char *pipelined, size_t length, int status)
{
    server_start();
    int fd = test_connect(scenario.port);
    test_send_text(fd, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    char head[256];
    cr_assert_gt(recv(fd, head, sizeof(head), 0), 0); /* the stream has begun */
    test_send(fd, pipelined, length);
    char *text = NULL;
    size_t total = server_read_all(fd, &text);
    close(fd);
    cr_assert(atomic_load(&scenario.big_ended));
    cr_assert_eq(atomic_load(&scenario.big_error), 0, "the stream is written whole");
    cr_assert_gt(total, (size_t)SERVER_BIG_CHUNKS * SERVER_BIG_CHUNK_BYTES);
    char expected[64];
    snprintf(expected, sizeof(expected), "\r\n0\r\n\r\nHTTP/1.1 %d ", status);
    const char *end = strstr(text, expected);
    cr_assert_not_null(end, "the stream's end, then the %d: %s", status,
                       text + (total > 600 ? total - 600 : 0));
    free(text);
    server_stop();
}

Test(http_stream, bad_request_pipelined_behind_a_stream_is_answered_after_it)
{
    const char bad[] = "GET /small HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n";
    server_pipeline_behind_big(bad, sizeof(bad) - 1, 400);
}

Test(http_stream, too_much_pipelined_behind_a_stream_is_refused_after_it)
{
    size_t length = 256 * 1024;
    char *many = malloc(length);
    cr_assert_not_null(many);
    const char one[] = "GET /small HTTP/1.1\r\nHost: x\r\n\r\n";
    for (size_t at = 0; at < length; at++) {
        many[at] = one[at % (sizeof(one) - 1)];
    }
    server_pipeline_behind_big(many, length, 429);
    free(many);
}
