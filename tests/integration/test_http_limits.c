/* Slow clients and connection limits, on engines configured with short timeouts. */

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/support.h"

static char response[65536];

Test(http_limits, slow_headers_get_408_then_close)
{
    struct test_engine engine;
    test_engine_start(&engine, 1, "\"limits\": {\"header_timeout_ms\": 300}");
    int fd = test_connect(engine.port);
    test_send_text(fd, "GET /healthz HTTP/1.1\r\nHo");
    cr_assert_gt(test_read_response(fd, response, sizeof(response)), 0);
    cr_assert_eq(test_status(response), 408);
    cr_assert(test_peer_closed(fd));
    close(fd);
    test_engine_stop(&engine);
}

Test(http_limits, slow_body_gets_408_then_close)
{
    struct test_engine engine;
    test_engine_start(&engine, 1, "\"limits\": {\"body_timeout_ms\": 300}");
    int fd = test_connect(engine.port);
    test_send_text(fd, "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
    cr_assert_gt(test_read_response(fd, response, sizeof(response)), 0);
    cr_assert_eq(test_status(response), 408);
    cr_assert(test_peer_closed(fd));
    close(fd);
    test_engine_stop(&engine);
}

Test(http_limits, idle_keep_alive_connection_is_closed)
{
    struct test_engine engine;
    test_engine_start(&engine, 1, "\"limits\": {\"idle_timeout_ms\": 300}");
    int fd = test_connect(engine.port);
    test_send_text(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_gt(test_read_response(fd, response, sizeof(response)), 0);
    cr_assert_eq(test_status(response), 200);
    cr_assert(test_peer_closed(fd)); /* closed silently after 300 ms of idleness */
    close(fd);
    test_engine_stop(&engine);
}

Test(http_limits, connections_beyond_the_limit_are_closed_and_counted)
{
    struct test_engine engine;
    test_engine_start(&engine, 1, "\"limits\": {\"max_connections\": 2}");
    int first = test_connect(engine.port);
    int second = test_connect(engine.port);
    test_send_text(first, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_gt(test_read_response(first, response, sizeof(response)), 0);
    test_send_text(second, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_gt(test_read_response(second, response, sizeof(response)), 0);
    int third = test_connect(engine.port);
    cr_assert(test_peer_closed(third));
    close(third);
    test_send_text(first, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_gt(test_read_response(first, response, sizeof(response)), 0);
    cr_assert_not_null(strstr(response, "ringmaster_http_connections_rejected_total 1\n"), "%s",
                       response);
    close(first);
    close(second);
    test_engine_stop(&engine);
}

Test(http_limits, small_body_limit_gives_413)
{
    struct test_engine engine;
    test_engine_start(&engine, 1, "\"limits\": {\"max_body_bytes\": 16}");
    int fd = test_connect(engine.port);
    test_send_text(fd, "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n");
    cr_assert_gt(test_read_response(fd, response, sizeof(response)), 0);
    cr_assert_eq(test_status(response), 413);
    cr_assert(test_peer_closed(fd));
    close(fd);
    fd = test_connect(engine.port);
    test_send_text(fd, "POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "10\r\n0123456789abcdef\r\n1\r\nx\r\n0\r\n\r\n");
    cr_assert_gt(test_read_response(fd, response, sizeof(response)), 0);
    cr_assert_eq(test_status(response), 413);
    close(fd);
    test_engine_stop(&engine);
}
