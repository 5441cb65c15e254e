#ifndef RM_HTTP_CLIENT_H
#define RM_HTTP_CLIENT_H

/* The outbound HTTP/1.1 client of one reactor, with a keep-alive connection pool per upstream.
 *
 * Threading: one `struct http_client` per reactor, created on that reactor's thread (in the
 * group's setup callback) and used only from it; every call below must be made on the owner
 * reactor. Register the same upstreams in the same order on every reactor, so an upstream id
 * means the same upstream everywhere.
 *
 * I/O: all through the reactor's io_uring (connect, send, recv, poll, close); nothing blocks.
 * Connect and the first response byte are bounded with linked timeouts (IOSQE_IO_LINK +
 * link_timeout); the total time of a request and the idle time of pooled connections with the
 * reactor's fixed-duration timer queues.
 *
 * HTTPS: an https:// upstream's connections each own a BearSSL client (net/tls.h, ~33 KB,
 * allocated when the connection opens and freed when it closes). Ciphertext moves with one
 * send and one recv in flight per connection; the handshake is bounded by tls_timeout_ms and,
 * once it is done, the first response byte by first_byte_timeout_ms (both timer queues, since
 * a handshake spans several reads). Sessions are resumed through this client's own cache. A
 * server that closes without close_notify truncates the response: a body framed by the close
 * then fails with HTTP_CLIENT_PROTOCOL_ERROR.
 *
 * Names: an upstream host that is not an IP literal or localhost is resolved through
 * net/dns.h before each new connection (dns caches answers); connects try the answers in
 * order, at most DNS_ADDRESSES_MAX of them.
 *
 * Pools: an upstream has at most max_connections connections on this reactor. A request takes
 * an idle connection (most recently used first), or opens a new one, or waits in a FIFO of at
 * most max_queued requests; beyond that http_client_send refuses it at once. A connection
 * returns to the pool only after a complete response that allows keep-alive, and is closed
 * after idle_timeout_ms or when the pool already holds max_idle idle connections. A pooled
 * connection that the server closes is noticed (poll) and dropped.
 *
 * Responses: status, headers and body (Content-Length, chunked or until close), within the
 * upstream's limits. When the response is text/event-stream with a 2xx status and the request
 * has on_event, events are delivered to on_event as they arrive and the body is not kept.
 * Upstream bytes are untrusted: every malformed, oversized or truncated response fails the
 * request with outcome HTTP_CLIENT_PROTOCOL_ERROR and a message naming the upstream.
 *
 * Lifetimes: a `struct http_client_request` is owned by the caller, who must keep it (and the
 * strings, headers and body it points to) alive and unmoved from http_client_send until its
 * on_complete runs or http_client_cancel returns. on_complete runs exactly once per accepted
 * request, never from inside http_client_send. The response passed to callbacks (head, body,
 * event) is valid only during the call. Callbacks may call http_client_send and
 * http_client_cancel. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/timer.h"
#include "net/http_response_parse.h"
#include "net/sse.h"
#include "net/tls_trust.h"

#define HTTP_CLIENT_UPSTREAMS_MAX 64
#define HTTP_CLIENT_CONNECTIONS_MAX 4096 /* per upstream and reactor */
#define HTTP_CLIENT_QUEUE_MAX 65536      /* waiting requests per upstream and reactor */
#define HTTP_CLIENT_NAME_MAX_BYTES 64
#define HTTP_CLIENT_ERROR_BYTES 640
#define HTTP_CLIENT_HEADERS_MAX 64       /* caller headers per request */
#define HTTP_CLIENT_REQUEST_MAX_BYTES (64u * 1024 * 1024) /* request head plus body */
#define HTTP_CLIENT_TLS_TIMEOUT_MS_DEFAULT 10000

struct reactor;
struct metrics_registry;
struct dns;
struct http_client;
struct http_client_conn;

enum http_client_outcome {
    HTTP_CLIENT_OK,             /* a complete response with status < 400 */
    HTTP_CLIENT_HTTP_ERROR,     /* a complete response with status >= 400 */
    HTTP_CLIENT_TIMEOUT,        /* connect, TLS handshake, first byte or total */
    HTTP_CLIENT_CONNECT_ERROR,  /* unresolvable, refused, unreachable, reset before a byte */
    HTTP_CLIENT_TLS_ERROR,      /* https: handshake, certificate or record layer failure */
    HTTP_CLIENT_PROTOCOL_ERROR, /* malformed, oversized or truncated response */
    HTTP_CLIENT_REJECTED,       /* the upstream's wait queue was full (from http_client_send) */
    HTTP_CLIENT_CANCELLED,      /* counted in metrics only; no callback runs */
    HTTP_CLIENT_OUTCOME_COUNT,
};

struct http_client_upstream_config {
    const char *name; /* metric label and error prefix, [A-Za-z0-9_.-], < NAME_MAX_BYTES */
    const char *url;  /* http[s]://host[:port][/prefix] */
    uint32_t max_connections;
    uint32_t max_idle;
    uint32_t max_queued;
    uint32_t idle_timeout_ms;
    uint32_t connect_timeout_ms;
    uint32_t first_byte_timeout_ms; /* from the request's send to the first response byte */
    uint32_t total_timeout_ms;      /* from http_client_send to the end of the response */
    uint32_t tls_timeout_ms;        /* https: connect to handshake done; 0: the default */
    struct http_response_limits limits;
    uint32_t max_event_bytes;       /* data of one SSE event */
};

struct http_client_header {
    const char *name;
    const char *value;
};

struct http_client_response {
    enum http_client_outcome outcome;
    int status;                              /* 0 without a response */
    const struct http_response_parsed *head; /* NULL without a response */
    const char *body;                        /* NULL when streamed to on_event or absent */
    size_t body_length;
    const char *error; /* "" on success; else "upstream NAME (HOST:PORT): what happened" */
};

struct http_client_request;
typedef void (*http_client_event_function)(struct http_client_request *request,
                                           const struct sse_event *event);
typedef void (*http_client_complete_function)(struct http_client_request *request,
                                              const struct http_client_response *response);

struct http_client_request {
    /* Filled by the caller. */
    uint32_t upstream;
    const char *method;   /* a token: GET, POST, ... */
    const char *path;     /* starts with '/', appended to the upstream's path prefix; or ""
                           * for the prefix itself ("/" when it is empty) */
    const struct http_client_header *headers;
    uint32_t header_count;
    const char *body;     /* may be NULL when body_length is 0 */
    size_t body_length;   /* sent with Content-Length (always for POST, PUT and PATCH) */
    http_client_event_function on_event;       /* optional */
    http_client_complete_function on_complete; /* required */
    void *context;
    /* Private to http_client.c. */
    struct http_client *client;
    struct http_client_conn *conn;
    struct http_client_request *queue_previous;
    struct http_client_request *queue_next;
    struct timer_entry total_timer;
    uint64_t start_ns;
    uint8_t state;
    char error[HTTP_CLIENT_ERROR_BYTES];
};

struct http_client_upstream_stats {
    uint64_t connections_opened; /* connects started */
    uint64_t connections_reused; /* requests that went out on a pooled connection */
    uint32_t open;               /* connections, connecting ones included */
    uint32_t idle;
    uint32_t queued;
};

/* What the client borrows from the caller; both must outlive the client. */
struct http_client_options {
    /* Trust anchors for https upstreams, loaded on the main thread (tls_trust_load) and
     * shared read-only by every core. NULL: https upstreams are refused. */
    const struct tls_trust *trust;
    /* The resolver, attached to this reactor (dns_reactor_attach). NULL: host names other
     * than localhost are refused. */
    struct dns *dns;
};

/* Creates this reactor's client. Metrics are registered in `metrics`, written as this
 * reactor's core. `options` may be NULL (plain http to IP literals and localhost only).
 * Returns 0 or -ENOMEM / -ENOSPC (metrics registry full). */
int http_client_create(struct reactor *reactor, struct metrics_registry *metrics,
                       const struct http_client_options *options, struct http_client **out);

/* Registers an upstream; returns its id (>= 0), or -EINVAL with a message in err (bad URL,
 * bad name, a limit out of range, a host name without a resolver, an https URL without trust
 * anchors), -ENOSPC (HTTP_CLIENT_UPSTREAMS_MAX reached) or -ENOMEM. */
int http_client_add_upstream(struct http_client *client,
                             const struct http_client_upstream_config *config, char *err,
                             size_t err_size);

/* Starts a request. Returns 0 when accepted (on_complete will run), or -EBUSY when the
 * upstream's queue is full, or -EINVAL when a header name or value is not valid HTTP (CR, LF,
 * NUL, a name that is not a token) or the request is larger than HTTP_CLIENT_REQUEST_MAX_BYTES;
 * then request->error says why and no callback runs. */
int http_client_send(struct http_client *client, struct http_client_request *request);

/* Withdraws an accepted request whose on_complete has not run: no callback runs afterwards
 * and the caller may reuse the request at once. A request on a connection closes that
 * connection (its response can no longer be framed). A no-op for a request not in flight. */
void http_client_cancel(struct http_client_request *request);

/* True while any request is queued or in flight, or a connection is still closing. */
bool http_client_busy(const struct http_client *client);
struct http_client_upstream_stats http_client_stats(const struct http_client *client,
                                                    uint32_t upstream);
const char *http_client_outcome_name(enum http_client_outcome outcome);

/* Closes every connection at once (plain close(2)) and frees the client; requests still in
 * flight get no callback. For the reactor's teardown, after its loop has stopped. */
void http_client_destroy(struct http_client *client);

#endif
