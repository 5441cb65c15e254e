/* The HTTP server end to end: a real engine on loopback, real curl and wrk, and raw sockets
 * for the hostile inputs no well-behaved client sends. */

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support.h"

#define RESPONSE_MAX 65536

static struct test_engine engine;
static char response[RESPONSE_MAX];

static void http_engine_default(void) { test_engine_start(&engine, 2, ""); }
static void http_engine_teardown(void) { test_engine_stop(&engine); }

TestSuite(http_server, .init = http_engine_default, .fini = http_engine_teardown);

static int curl(const char *arguments, const char *path, char *output, size_t capacity)
{
    char command[1024];
    snprintf(command, sizeof(command), "curl -s -m 5 %s http://127.0.0.1:%u%s", arguments,
             engine.port, path);
    return test_run(command, output, capacity);
}

Test(http_server, healthz_with_curl)
{
    cr_assert_eq(curl("-w '\\n%{http_code}'", "/healthz", response, sizeof(response)), 0);
    cr_assert_str_eq(response, "{\"status\":\"ok\"}\n200");
    cr_assert_eq(curl("-w '%{http_code}' -o /dev/null", "/readyz", response, sizeof(response)),
                 0);
    cr_assert_str_eq(response, "200");
}

Test(http_server, unknown_path_is_json_404_and_wrong_method_405)
{
    cr_assert_eq(curl("-i", "/v1/nothing-here", response, sizeof(response)), 0);
    cr_assert_eq(test_status(response), 404);
    cr_assert_not_null(strstr(response, "Content-Type: application/json"));
    cr_assert_not_null(strstr(response, "{\"error\":{\"type\":\"not_found\""));
    cr_assert_eq(curl("-i -X POST -d x=1", "/healthz", response, sizeof(response)), 0);
    cr_assert_eq(test_status(response), 405);
    cr_assert_not_null(strstr(response, "Allow: GET, HEAD"));
}

Test(http_server, head_has_length_but_no_body)
{
    int fd = test_connect(engine.port);
    test_send_text(fd, "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\n"
                       "Host: x\r\nConnection: close\r\n\r\n");
    test_read_all(fd, response, sizeof(response));
    close(fd);
    cr_assert_eq(test_count(response, "HTTP/1.1 200 OK"), 2);
    cr_assert_eq(test_count(response, "Content-Length: 15"), 2);
    cr_assert_eq(test_count(response, "{\"status\":\"ok\"}"), 1, "%s", response);
}

Test(http_server, pipelined_responses_keep_request_order)
{
    int fd = test_connect(engine.port);
    test_send_text(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n"
                       "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                       "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    test_read_all(fd, response, sizeof(response));
    close(fd);
    const char *first = strstr(response, "HTTP/1.1 200");
    const char *second = strstr(response, "HTTP/1.1 404");
    const char *third = strstr(response, "HTTP/1.1 405");
    const char *fourth = strstr(third != NULL ? third : response, "HTTP/1.1 200");
    cr_assert(first != NULL && second != NULL && third != NULL && fourth != NULL, "%s",
              response);
    cr_assert(first < second && second < third && third < fourth);
    cr_assert_not_null(strstr(fourth, "Connection: close"));
}

Test(http_server, keep_alive_serves_many_requests_on_one_connection)
{
    int fd = test_connect(engine.port);
    for (int i = 0; i < 50; i++) {
        test_send_text(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        cr_assert_gt(test_read_response(fd, response, sizeof(response)), 0);
        cr_assert_eq(test_status(response), 200);
    }
    close(fd);
}

Test(http_server, http10_closes_unless_keep_alive)
{
    int fd = test_connect(engine.port);
    test_send_text(fd, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    cr_assert_gt(test_read_response(fd, response, sizeof(response)), 0);
    cr_assert_not_null(strstr(response, "Connection: keep-alive"));
    test_send_text(fd, "GET /healthz HTTP/1.0\r\n\r\n");
    cr_assert_gt(test_read_response(fd, response, sizeof(response)), 0);
    cr_assert_not_null(strstr(response, "Connection: close"));
    cr_assert(test_peer_closed(fd));
    close(fd);
}

Test(http_server, chunked_body_is_framed_and_next_request_served)
{
    int fd = test_connect(engine.port);
    test_send_text(fd, "POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: y\r\n\r\n"
                       "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_gt(test_read_response(fd, response, sizeof(response)), 0);
    cr_assert_eq(test_status(response), 405);
    cr_assert_gt(test_read_response(fd, response, sizeof(response)), 0);
    cr_assert_eq(test_status(response), 200);
    close(fd);
}

Test(http_server, expect_100_continue)
{
    int fd = test_connect(engine.port);
    test_send_text(fd, "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                       "Expect: 100-continue\r\n\r\n");
    char interim[64];
    ssize_t got = recv(fd, interim, 25, MSG_WAITALL);
    cr_assert_eq(got, 25);
    cr_assert_eq(memcmp(interim, "HTTP/1.1 100 Continue\r\n\r\n", 25), 0);
    test_send_text(fd, "body");
    cr_assert_gt(test_read_response(fd, response, sizeof(response)), 0);
    cr_assert_eq(test_status(response), 405);
    close(fd);
}

/* Sends raw bytes and expects `status` followed by the server closing the connection. */
static void expect_rejected(const char *request, size_t length, int status)
{
    int fd = test_connect(engine.port);
    test_send(fd, request, length);
    cr_assert_gt(test_read_response(fd, response, sizeof(response)), 0, "no answer to %.60s",
                 request);
    cr_assert_eq(test_status(response), status, "for %.60s got %s", request, response);
    cr_assert_not_null(strstr(response, "Connection: close"));
    cr_assert_not_null(strstr(response, "{\"error\":{\"type\":\"invalid_request\""));
    cr_assert(test_peer_closed(fd), "connection left open after %d", status);
    close(fd);
}

static void expect_rejected_text(const char *request, int status)
{
    expect_rejected(request, strlen(request), status);
}

Test(http_server, malformed_requests_get_400_and_close)
{
    expect_rejected_text("GARBAGE\r\n\r\n", 400);
    expect_rejected_text("GET /healthz HTTP/1.1\r\nHost x\r\n\r\n", 400);
    expect_rejected_text("GET /healthz HTTP/1.1\r\n\r\n", 400); /* no Host in 1.1 */
    expect_rejected_text("GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n", 400);
    expect_rejected_text("GET /he lthz HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

Test(http_server, smuggling_attempts_are_rejected)
{
    expect_rejected_text("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                         400);
    expect_rejected_text("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                         "Content-Length: 3\r\n\r\nabc",
                         400);
    expect_rejected_text("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                         "Content-Length: 4\r\n\r\nabcd",
                         400);
    expect_rejected_text("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400);
    expect_rejected_text("POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "zz\r\nhello\r\n0\r\n\r\n",
                         400);
    expect_rejected_text("POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
                         501);
}

Test(http_server, version_and_size_limits)
{
    expect_rejected_text("GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505);
    static char long_uri[20000];
    int length = snprintf(long_uri, sizeof(long_uri), "GET /");
    memset(long_uri + length, 'a', 10000);
    strcpy(long_uri + length + 10000, " HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_rejected_text(long_uri, 414);
    static char big_header[40000];
    length = snprintf(big_header, sizeof(big_header), "GET /healthz HTTP/1.1\r\nHost: x\r\nX: ");
    memset(big_header + length, 'b', 30000);
    strcpy(big_header + length + 30000, "\r\n\r\n");
    expect_rejected_text(big_header, 431);
    static char many_headers[8192];
    length = snprintf(many_headers, sizeof(many_headers), "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 100; i++) {
        length += snprintf(many_headers + length, sizeof(many_headers) - (size_t)length,
                           "X-%d: y\r\n", i);
    }
    strcpy(many_headers + length, "\r\n");
    expect_rejected_text(many_headers, 431);
    expect_rejected_text("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
                         413);
}

Test(http_server, metrics_count_requests_by_route_and_code)
{
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(curl("-o /dev/null", "/healthz", response, sizeof(response)), 0);
    }
    cr_assert_eq(curl("-o /dev/null", "/nope", response, sizeof(response)), 0);
    cr_assert_eq(curl("", "/metrics", response, sizeof(response)), 0);
    cr_assert_not_null(
        strstr(response, "ringmaster_http_requests_total{route=\"/healthz\",code=\"200\"} 3\n"),
        "%s", response);
    cr_assert_not_null(
        strstr(response, "ringmaster_http_requests_total{route=\"unmatched\",code=\"404\"} 1\n"));
    cr_assert_not_null(strstr(response, "ringmaster_http_connections_open 1\n"));
    cr_assert_not_null(strstr(response, "# TYPE ringmaster_http_request_duration_seconds "
                                        "histogram"));
    char command[256];
    snprintf(command, sizeof(command),
             "curl -s -m 5 http://127.0.0.1:%u/metrics | promtool check metrics 2>&1; echo rc=$?",
             engine.port);
    test_run(command, response, sizeof(response));
    cr_assert_not_null(strstr(response, "rc=0"), "promtool: %s", response);
}

Test(http_server, wrk_load_gets_only_successes)
{
    char command[256];
    snprintf(command, sizeof(command),
             "wrk -t2 -c64 -d1s --timeout 5s http://127.0.0.1:%u/healthz 2>&1", engine.port);
    cr_assert_eq(test_run(command, response, sizeof(response)), 0, "%s", response);
    cr_assert_null(strstr(response, "Non-2xx"), "%s", response);
    cr_assert_null(strstr(response, "Socket errors"), "%s", response);
    unsigned long long requests = 0;
    const char *line = strstr(response, " requests in ");
    cr_assert_not_null(line, "%s", response);
    while (line > response && line[-1] >= '0' && line[-1] <= '9') {
        line--;
    }
    requests = strtoull(line, NULL, 10);
    cr_assert_gt(requests, 1000, "%s", response);
}
