#ifndef RM_HTTP_SERVER_H
#define RM_HTTP_SERVER_H

/* The HTTP/1.1 server of one reactor: multishot accept on the reactor's own SO_REUSEPORT
 * socket, multishot recv into provided buffers, requests framed by http_reader, responses
 * queued per connection and sent one send at a time (in request order, so pipelining keeps
 * its order), timeouts from fixed-duration timer queues.
 *
 * A handler gets a `struct http_exchange` and answers it with http_exchange_respond, either
 * before returning or later from another callback on the same reactor (asynchronous
 * handlers). Until it is answered the connection reads no further request, and it is not
 * freed even if the client goes away, so the exchange pointer stays valid.
 *
 * A streamed answer (http_exchange_stream_begin, _write..., _end) goes out piece by piece as
 * it is produced, with the same guarantees: the exchange stays valid until _end, which
 * completes it like http_exchange_respond does. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/http_request.h"

struct reactor;
struct metrics_registry;
struct http_server;
struct http_exchange;

typedef void (*http_route_function)(void *context, struct http_exchange *exchange);

struct http_server_config {
    struct http_limits limits;
    uint32_t max_connections; /* this reactor's share */
    uint32_t header_timeout_ms;
    uint32_t body_timeout_ms;
    uint32_t idle_timeout_ms;
    struct metrics_registry *metrics;
    http_route_function route;
    void *route_context;
    /* Route labels for metrics, indexed by the id handlers pass to
     * http_exchange_set_route; index 0 is used for requests that matched no route. */
    const char *const *route_names;
    uint32_t route_count;
};

struct http_response_header {
    const char *name;
    const char *value;
};

struct http_server_stats {
    uint32_t open_connections;
    uint32_t active_exchanges;
};

int http_server_create(struct reactor *reactor, int listen_fd,
                       const struct http_server_config *config, struct http_server **out);
/* Stops accepting and closes idle connections; answers in flight finish with
 * `Connection: close`. */
void http_server_stop_accepting(struct http_server *server);
/* True while any connection of this server is open. */
bool http_server_busy(const struct http_server *server);
struct http_server_stats http_server_stats(const struct http_server *server);
void http_server_destroy(struct http_server *server);

const struct http_request *http_exchange_request(const struct http_exchange *exchange);
struct reactor *http_exchange_reactor(const struct http_exchange *exchange);
void http_exchange_set_route(struct http_exchange *exchange, uint32_t route);

/* Answers the exchange. `headers` (may be NULL) are extra response headers; Content-Length,
 * Date, Server and Connection are added here. For HEAD the body is measured, not sent. */
void http_exchange_respond(struct http_exchange *exchange, int status, const char *content_type,
                           const struct http_response_header *headers, size_t header_count,
                           const char *body, size_t body_length);
/* Answers with {"error":{"type":...,"message":...}} (message JSON-escaped). */
void http_exchange_respond_error(struct http_exchange *exchange, int status, const char *type,
                                 const char *message);

/* Unsent bytes a streamed response may have queued on its connection (its own and those of
 * earlier pipelined answers). A write beyond it fails the stream: the client is not reading,
 * and a stream's producer (an upstream) cannot be slowed down, so the connection is closed
 * rather than buffered without bound. */
#define HTTP_STREAM_UNSENT_MAX (1024 * 1024)

/* Starts a streamed answer: the head goes out at once, without Content-Length; the body is
 * chunked (Transfer-Encoding: chunked), or for an HTTP/1.0 client delimited by closing the
 * connection. `status` is 200..599 but not 204 or 304. Returns 0, or -EPIPE when the client
 * has gone (nothing is sent; the stream must still be ended), or -ENOMEM (the connection is
 * closed). */
int http_exchange_stream_begin(struct http_exchange *exchange, int status,
                               const char *content_type,
                               const struct http_response_header *headers,
                               size_t header_count);
/* Queues `length` bytes (copied) as one chunk behind what is being sent; 0 bytes send
 * nothing. Returns 0, or -EPIPE when the client has gone or the stream has failed (the bytes
 * are dropped), or -ENOBUFS when HTTP_STREAM_UNSENT_MAX would be exceeded or -ENOMEM: then
 * the stream fails and the connection is closed. For HEAD the bytes are dropped (0). */
int http_exchange_stream_write(struct http_exchange *exchange, const char *data, size_t length);
/* Ends the streamed answer (the last chunk) and completes the exchange; the connection goes
 * on with keep-alive and pipelining as after http_exchange_respond. Always called once after
 * http_exchange_stream_begin, whatever the writes returned. */
void http_exchange_stream_end(struct http_exchange *exchange);

#endif
