#include "net/http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/metrics.h"
#include "core/reactor.h"
#include "core/rm_assert.h"
#include "net/dns.h"
#include "net/http_parse.h"
#include "net/tls.h"
#include "net/url.h"

#define HTTP_CLIENT_BUFFER_INITIAL_BYTES (16 * 1024)
#define HTTP_CLIENT_READ_MIN_BYTES 4096 /* grow the buffer when less room is left */
#define HTTP_CLIENT_AUTHORITY_BYTES (URL_HOST_MAX_BYTES + 16)
#define HTTP_CLIENT_NS_PER_MS UINT64_C(1000000)

enum http_client_request_state { HTTP_CLIENT_REQUEST_FREE, HTTP_CLIENT_REQUEST_QUEUED,
                                 HTTP_CLIENT_REQUEST_ACTIVE };
enum http_client_conn_state { HTTP_CLIENT_CONN_FREE, HTTP_CLIENT_CONN_CONNECTING,
                              HTTP_CLIENT_CONN_ACTIVE, HTTP_CLIENT_CONN_IDLE,
                              HTTP_CLIENT_CONN_CLOSING };

struct http_client_upstream;

struct http_client_conn {
    struct http_client_upstream *upstream;
    struct http_client_request *request;
    struct http_client_conn *next; /* free list or idle stack */
    int fd;
    enum http_client_conn_state state;
    bool connect_in_flight;
    bool send_in_flight;
    bool recv_in_flight;
    bool poll_in_flight;
    bool poll_stale;
    bool received_any; /* a byte of the current response arrived */
    bool reused;
    bool in_body;
    bool streaming; /* body goes to the SSE parser */
    bool sse_ready;
    bool close_in_flight;
    bool resolving;  /* a dns_resolve answer is pending */
    bool tls_ready;  /* https: the handshake is done and counted */
    struct tls_conn *tls; /* https only: from the slot's open to its close */
    struct timer_entry tls_timer; /* https: the handshake, then the first response byte */
    uint64_t tls_start_ns;
    uint32_t address_index;
    uint32_t address_count; /* resolved answers; 0: the upstream's literal address */
    struct sockaddr_storage addresses[DNS_ADDRESSES_MAX];
    socklen_t address_lengths[DNS_ADDRESSES_MAX];
    struct dns_request dns_request;
    struct reactor_op connect_op;
    struct reactor_op send_op;
    struct reactor_op recv_op;
    struct reactor_op poll_op;
    struct reactor_op close_op;
    struct __kernel_timespec link_timeout;
    struct timer_entry idle_timer;
    uint64_t connect_start_ns;
    char *output;
    size_t output_length;
    size_t output_sent;
    size_t output_capacity;
    char *input;
    size_t input_length;
    size_t input_capacity;
    size_t head_length;
    size_t body_kept; /* decoded body bytes after the head */
    struct http_response_parsed head;
    struct http_response_body body;
    struct sse_parser sse;
};

struct http_client_upstream_metrics {
    int requests[HTTP_CLIENT_OUTCOME_COUNT];
    int connect_seconds;
    int response_seconds;
    int idle;
    int busy;
    int tls_handshakes[2]; /* full, resumed */
    int tls_handshake_seconds;
    int tls_failures[TLS_ERROR_COUNT];
};

struct http_client_upstream {
    struct http_client *client;
    struct http_client_upstream_config config;
    char name[HTTP_CLIENT_NAME_MAX_BYTES];
    char authority[HTTP_CLIENT_AUTHORITY_BYTES];
    char label[HTTP_CLIENT_NAME_MAX_BYTES + HTTP_CLIENT_AUTHORITY_BYTES + 16];
    struct url url;
    bool resolve; /* the host is a name: look it up before each connect */
    struct sockaddr_storage address;
    socklen_t address_length;
    struct http_client_conn *conns;
    struct http_client_conn *free_list;
    struct http_client_conn *idle_stack;
    uint32_t open;
    uint32_t idle;
    struct http_client_request *queue_head;
    struct http_client_request *queue_tail;
    uint32_t queued;
    struct timer_queue total_queue;
    struct timer_queue idle_queue;
    struct timer_queue tls_queue;        /* https handshakes */
    struct timer_queue first_byte_queue; /* https first bytes */
    struct http_client_upstream_metrics metrics;
    struct http_client_upstream_stats stats;
};

struct http_client {
    struct reactor *reactor;
    struct metrics_registry *registry;
    uint32_t core;
    uint32_t delivering; /* callbacks running: dispatch waits until they return */
    bool dispatch_pending;
    uint32_t in_flight;  /* requests queued or active */
    uint32_t closing;    /* connections with a close under way */
    uint32_t upstream_count;
    const struct tls_trust *trust;
    struct dns *dns;
    struct tls_session_cache sessions; /* this core's, for resumption */
    struct http_client_upstream upstreams[HTTP_CLIENT_UPSTREAMS_MAX];
};

static const char *const http_client_outcome_names[HTTP_CLIENT_OUTCOME_COUNT] = {
    "ok", "http_error", "timeout", "connect_error", "tls_error", "protocol_error",
    "rejected", "cancelled",
};

static void http_client_conn_close(struct http_client_conn *conn);
static void http_client_conn_start(struct http_client_conn *conn);
static void http_client_dispatch(struct http_client_upstream *upstream);
static void http_client_conn_arm_recv(struct http_client_conn *conn);
static void http_client_settle(struct http_client *client);
static size_t http_client_input_limit(const struct http_client_upstream *upstream);
static void http_client_tls_advance(struct http_client_conn *conn);
static void http_client_tls_on_recv(struct http_client_conn *conn, int result);

const char *http_client_outcome_name(enum http_client_outcome outcome)
{
    RM_ASSERT(outcome < HTTP_CLIENT_OUTCOME_COUNT);
    RM_ASSERT(http_client_outcome_names[outcome] != NULL);
    return http_client_outcome_names[outcome];
}

/* ---- metrics ---- */

static void http_client_pool_gauges(struct http_client_upstream *upstream)
{
    struct http_client *client = upstream->client;
    RM_ASSERT(upstream->idle <= upstream->open);
    RM_ASSERT(upstream->open <= upstream->config.max_connections);
    struct http_client_upstream_metrics *metrics = &upstream->metrics;
    metrics_set(client->registry, client->core, metrics->idle, upstream->idle);
    metrics_set(client->registry, client->core, metrics->busy, upstream->open - upstream->idle);
}

static int http_client_metrics_init(struct http_client_upstream *upstream)
{
    struct metrics_registry *registry = upstream->client->registry;
    struct http_client_upstream_metrics *metrics = &upstream->metrics;
    int requests = metrics_family(registry, "upstream_requests_total",
                                  "Requests to upstreams, by upstream and outcome.",
                                  METRICS_COUNTER);
    int connect = metrics_histogram_family(registry, "upstream_connect_seconds",
                                           "Time to establish a TCP connection to an upstream.",
                                           1000, 1e-9);
    int response = metrics_histogram_family(
        registry, "upstream_response_seconds",
        "Time from sending a request to the end of its response, per upstream.", 1000, 1e-9);
    int pool = metrics_family(registry, "upstream_pool_connections",
                              "Pooled upstream connections on this engine, by state.",
                              METRICS_GAUGE);
    if (requests < 0 || connect < 0 || response < 0 || pool < 0) {
        return -ENOSPC;
    }
    char labels[METRICS_LABELS_MAX];
    int failed = 0;
    for (int outcome = 0; outcome < HTTP_CLIENT_OUTCOME_COUNT; outcome++) {
        snprintf(labels, sizeof(labels), "upstream=\"%s\",outcome=\"%s\"", upstream->name,
                 http_client_outcome_names[outcome]);
        metrics->requests[outcome] = metrics_series(registry, requests, labels);
        failed |= metrics->requests[outcome] < 0;
    }
    snprintf(labels, sizeof(labels), "upstream=\"%s\"", upstream->name);
    metrics->connect_seconds = metrics_series(registry, connect, labels);
    metrics->response_seconds = metrics_series(registry, response, labels);
    snprintf(labels, sizeof(labels), "upstream=\"%s\",state=\"idle\"", upstream->name);
    metrics->idle = metrics_series(registry, pool, labels);
    snprintf(labels, sizeof(labels), "upstream=\"%s\",state=\"busy\"", upstream->name);
    metrics->busy = metrics_series(registry, pool, labels);
    failed |= metrics->connect_seconds < 0 || metrics->response_seconds < 0;
    failed |= metrics->idle < 0 || metrics->busy < 0;
    return failed ? -ENOSPC : 0;
}

/* Handshakes and failures exist only for https upstreams. */
static int http_client_tls_metrics_init(struct http_client_upstream *upstream)
{
    struct metrics_registry *registry = upstream->client->registry;
    struct http_client_upstream_metrics *metrics = &upstream->metrics;
    RM_ASSERT(upstream->url.tls);
    RM_ASSERT(registry != NULL);
    int handshakes = metrics_family(registry, "tls_handshakes_total",
                                    "TLS handshakes with upstreams, full or resumed.",
                                    METRICS_COUNTER);
    int seconds = metrics_histogram_family(
        registry, "upstream_tls_handshake_seconds",
        "Time from TCP connect to the end of the TLS handshake, per upstream.", 1000, 1e-9);
    int failures = metrics_family(registry, "tls_failures_total",
                                  "TLS connections to upstreams that failed, by reason.",
                                  METRICS_COUNTER);
    if (handshakes < 0 || seconds < 0 || failures < 0) {
        return -ENOSPC;
    }
    char labels[METRICS_LABELS_MAX];
    static const char *const kinds[2] = {"full", "resumed"};
    int failed = 0;
    for (int kind = 0; kind < 2; kind++) {
        snprintf(labels, sizeof(labels), "upstream=\"%s\",kind=\"%s\"", upstream->name,
                 kinds[kind]);
        metrics->tls_handshakes[kind] = metrics_series(registry, handshakes, labels);
        failed |= metrics->tls_handshakes[kind] < 0;
    }
    metrics->tls_failures[TLS_ERROR_NONE] = -1;
    for (int reason = TLS_ERROR_NONE + 1; reason < TLS_ERROR_COUNT; reason++) {
        snprintf(labels, sizeof(labels), "upstream=\"%s\",reason=\"%s\"", upstream->name,
                 tls_error_name((enum tls_error)reason));
        metrics->tls_failures[reason] = metrics_series(registry, failures, labels);
        failed |= metrics->tls_failures[reason] < 0;
    }
    snprintf(labels, sizeof(labels), "upstream=\"%s\"", upstream->name);
    metrics->tls_handshake_seconds = metrics_series(registry, seconds, labels);
    failed |= metrics->tls_handshake_seconds < 0;
    return failed ? -ENOSPC : 0;
}

static void http_client_count(struct http_client_upstream *upstream,
                              enum http_client_outcome outcome)
{
    struct http_client *client = upstream->client;
    RM_ASSERT(outcome < HTTP_CLIENT_OUTCOME_COUNT);
    RM_ASSERT(upstream->metrics.requests[outcome] >= 0);
    metrics_add(client->registry, client->core, upstream->metrics.requests[outcome], 1);
}

/* ---- requests ---- */

static struct http_client_upstream *http_client_upstream_of(struct http_client_request *request)
{
    RM_ASSERT(request->client != NULL);
    RM_ASSERT(request->upstream < request->client->upstream_count);
    return &request->client->upstreams[request->upstream];
}

static void http_client_queue_remove(struct http_client_upstream *upstream,
                                     struct http_client_request *request)
{
    RM_ASSERT(request->state == HTTP_CLIENT_REQUEST_QUEUED);
    RM_ASSERT(upstream->queued > 0);
    if (request->queue_previous != NULL) {
        request->queue_previous->queue_next = request->queue_next;
    } else {
        upstream->queue_head = request->queue_next;
    }
    if (request->queue_next != NULL) {
        request->queue_next->queue_previous = request->queue_previous;
    } else {
        upstream->queue_tail = request->queue_previous;
    }
    request->queue_previous = NULL;
    request->queue_next = NULL;
    upstream->queued--;
}

/* Runs at the end of every entry point (completion, timer, send): requests queued while
 * callbacks ran, or waiting for a connection that just freed up, go out now. Dispatching
 * here, and never from inside a callback, keeps the call graph free of cycles. */
static void http_client_settle(struct http_client *client)
{
    RM_ASSERT(client->upstream_count <= HTTP_CLIENT_UPSTREAMS_MAX);
    if (client->delivering > 0 || !client->dispatch_pending) {
        return;
    }
    client->dispatch_pending = false;
    for (uint32_t i = 0; i < client->upstream_count; i++) {
        if (client->upstreams[i].queue_head != NULL) {
            http_client_dispatch(&client->upstreams[i]);
        }
    }
}

/* Ends a request: detaches it, counts it and runs on_complete. Requests sent from the
 * callback are dispatched after it returns, once the connection has been put back. */
static void http_client_finish(struct http_client_request *request,
                               const struct http_client_response *response)
{
    struct http_client_upstream *upstream = http_client_upstream_of(request);
    struct http_client *client = upstream->client;
    RM_ASSERT(request->state != HTTP_CLIENT_REQUEST_FREE);
    RM_ASSERT(response->outcome < HTTP_CLIENT_REJECTED);
    if (request->state == HTTP_CLIENT_REQUEST_QUEUED) {
        http_client_queue_remove(upstream, request);
    }
    if (request->conn != NULL) {
        request->conn->request = NULL;
        request->conn = NULL;
    }
    timer_cancel(&request->total_timer);
    request->state = HTTP_CLIENT_REQUEST_FREE;
    RM_ASSERT(client->in_flight > 0);
    client->in_flight--;
    http_client_count(upstream, response->outcome);
    if (response->outcome == HTTP_CLIENT_OK || response->outcome == HTTP_CLIENT_HTTP_ERROR) {
        metrics_observe(client->registry, client->core, upstream->metrics.response_seconds,
                        reactor_clock_ns() - request->start_ns);
    }
    client->delivering++;
    request->on_complete(request, response);
    client->delivering--;
    client->dispatch_pending = true;
}

/* Fails a request with a message "upstream NAME (HOST:PORT): <what>". */
static void http_client_fail(struct http_client_request *request,
                             enum http_client_outcome outcome, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void http_client_fail(struct http_client_request *request,
                             enum http_client_outcome outcome, const char *format, ...)
{
    struct http_client_upstream *upstream = http_client_upstream_of(request);
    RM_ASSERT(outcome != HTTP_CLIENT_OK && outcome != HTTP_CLIENT_HTTP_ERROR);
    RM_ASSERT(format != NULL);
    int prefix = snprintf(request->error, sizeof(request->error), "%s: ", upstream->label);
    RM_ASSERT(prefix > 0 && (size_t)prefix < sizeof(request->error));
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(request->error + prefix, sizeof(request->error) - (size_t)prefix, format,
              arguments);
    va_end(arguments);
    struct http_client_response response = {.outcome = outcome, .error = request->error};
    http_client_finish(request, &response);
}

static void http_client_total_expired(struct timer_entry *entry)
{
    struct http_client_request *request =
        (struct http_client_request *)((char *)entry -
                                       offsetof(struct http_client_request, total_timer));
    struct http_client_upstream *upstream = http_client_upstream_of(request);
    RM_ASSERT(request->state != HTTP_CLIENT_REQUEST_FREE);
    struct http_client_conn *conn = request->conn;
    if (conn != NULL) {
        conn->request = NULL;
        request->conn = NULL;
        http_client_conn_close(conn); /* its response can no longer be framed */
    }
    http_client_fail(request, HTTP_CLIENT_TIMEOUT, "no complete response within %u ms",
                     upstream->config.total_timeout_ms);
    http_client_settle(upstream->client);
}

/* ---- connection life cycle ---- */

static struct http_client_conn *http_client_conn_of(struct reactor_op *op)
{
    struct http_client_conn *conn = op->context;
    RM_ASSERT(conn != NULL);
    RM_ASSERT(conn->state != HTTP_CLIENT_CONN_FREE);
    return conn;
}

static struct reactor *http_client_reactor(const struct http_client_conn *conn)
{
    return conn->upstream->client->reactor;
}

/* Two SQEs joined by IOSQE_IO_LINK must reach the kernel in one submission. */
static void http_client_reserve_link(struct reactor *reactor)
{
    struct io_uring *ring = reactor_ring(reactor);
    RM_ASSERT(ring != NULL);
    for (int attempt = 0; io_uring_sq_space_left(ring) < 2; attempt++) {
        RM_ASSERT(attempt < 1000);
        io_uring_submit(ring);
    }
}

/* Returns a closed connection's slot to the free list, with its TLS state wiped. */
static void http_client_conn_free(struct http_client_conn *conn)
{
    struct http_client_upstream *upstream = conn->upstream;
    RM_ASSERT(conn->state == HTTP_CLIENT_CONN_CLOSING);
    RM_ASSERT(upstream->open > 0 && upstream->client->closing > 0);
    RM_ASSERT(!conn->resolving && conn->fd < 0);
    if (conn->tls != NULL) {
        tls_conn_destroy(conn->tls);
        rm_free(conn->tls);
        conn->tls = NULL;
    }
    conn->tls_ready = false;
    conn->close_in_flight = false;
    conn->state = HTTP_CLIENT_CONN_FREE;
    conn->next = upstream->free_list;
    upstream->free_list = conn;
    upstream->open--;
    upstream->client->closing--;
    http_client_pool_gauges(upstream);
    upstream->client->dispatch_pending = true; /* a slot is free for a waiting request */
}

/* A connection without a socket (it failed before one was made, or while resolving) has
 * nothing to close and frees its slot at once. */
static void http_client_conn_release_if_done(struct http_client_conn *conn)
{
    RM_ASSERT(conn->state == HTTP_CLIENT_CONN_CLOSING);
    RM_ASSERT(conn->request == NULL);
    if (conn->connect_in_flight || conn->send_in_flight || conn->recv_in_flight ||
        conn->poll_in_flight || conn->close_in_flight) {
        return;
    }
    if (conn->fd < 0) {
        http_client_conn_free(conn);
        return;
    }
    struct io_uring_sqe *sqe = reactor_sqe(http_client_reactor(conn), &conn->close_op);
    io_uring_prep_close(sqe, conn->fd);
    conn->fd = -1;
    conn->close_in_flight = true;
}

static void http_client_conn_on_close(struct reactor_op *op, int result, uint32_t flags)
{
    (void)result;
    (void)flags;
    struct http_client_conn *conn = http_client_conn_of(op);
    struct http_client *client = conn->upstream->client;
    RM_ASSERT(conn->close_in_flight);
    RM_ASSERT(conn->state == HTTP_CLIENT_CONN_CLOSING);
    conn->close_in_flight = false;
    http_client_conn_free(conn);
    http_client_settle(client);
}

static void http_client_conn_cancel(struct http_client_conn *conn, struct reactor_op *op)
{
    struct io_uring_sqe *sqe = reactor_sqe(http_client_reactor(conn), NULL);
    io_uring_prep_cancel(sqe, op, 0);
}

static void http_client_idle_remove(struct http_client_conn *conn)
{
    struct http_client_upstream *upstream = conn->upstream;
    RM_ASSERT(conn->state == HTTP_CLIENT_CONN_IDLE);
    RM_ASSERT(upstream->idle > 0);
    struct http_client_conn **link = &upstream->idle_stack;
    while (*link != conn) {
        RM_ASSERT(*link != NULL);
        link = &(*link)->next;
    }
    *link = conn->next;
    conn->next = NULL;
    upstream->idle--;
    timer_cancel(&conn->idle_timer);
}

/* Closes the connection once every operation on it has returned. The request, if any, must
 * have been detached (failed or finished) by the caller. */
static void http_client_conn_close(struct http_client_conn *conn)
{
    RM_ASSERT(conn->request == NULL);
    if (conn->state == HTTP_CLIENT_CONN_CLOSING || conn->state == HTTP_CLIENT_CONN_FREE) {
        return;
    }
    if (conn->state == HTTP_CLIENT_CONN_IDLE) {
        http_client_idle_remove(conn);
    }
    conn->state = HTTP_CLIENT_CONN_CLOSING;
    conn->upstream->client->closing++;
    http_client_pool_gauges(conn->upstream);
    timer_cancel(&conn->tls_timer);
    if (conn->resolving) {
        dns_cancel(conn->upstream->client->dns, &conn->dns_request);
        conn->resolving = false;
    }
    if (conn->connect_in_flight) {
        http_client_conn_cancel(conn, &conn->connect_op);
    }
    if (conn->send_in_flight) {
        http_client_conn_cancel(conn, &conn->send_op);
    }
    if (conn->recv_in_flight) {
        http_client_conn_cancel(conn, &conn->recv_op);
    }
    if (conn->poll_in_flight) {
        http_client_conn_cancel(conn, &conn->poll_op);
    }
    http_client_conn_release_if_done(conn);
}

/* Detaches the connection's request and fails it, then closes the connection. */
static void http_client_conn_fail(struct http_client_conn *conn,
                                  enum http_client_outcome outcome, const char *message)
{
    RM_ASSERT(message != NULL);
    struct http_client_request *request = conn->request;
    RM_ASSERT(request != NULL);
    conn->request = NULL;
    request->conn = NULL;
    http_client_conn_close(conn);
    http_client_fail(request, outcome, "%s", message);
}

static void http_client_idle_expired(struct timer_entry *entry)
{
    struct http_client_conn *conn =
        (struct http_client_conn *)((char *)entry - offsetof(struct http_client_conn,
                                                              idle_timer));
    RM_ASSERT(conn->state == HTTP_CLIENT_CONN_IDLE);
    http_client_conn_close(conn);
}


static void http_client_conn_on_poll(struct reactor_op *op, int result, uint32_t flags)
{
    (void)result;
    (void)flags;
    struct http_client_conn *conn = http_client_conn_of(op);
    RM_ASSERT(conn->poll_in_flight);
    conn->poll_in_flight = false;
    if (conn->poll_stale && conn->state == HTTP_CLIENT_CONN_IDLE) {
        conn->poll_stale = false;
        struct io_uring_sqe *sqe = reactor_sqe(conn->upstream->client->reactor, &conn->poll_op);
        io_uring_prep_poll_add(sqe, conn->fd, POLLIN | POLLRDHUP);
        conn->poll_in_flight = true;
        return;
    }
    conn->poll_stale = false;
    if (conn->state == HTTP_CLIENT_CONN_IDLE) {
        /* An idle connection became readable: the server closed it (or sent bytes nobody
         * asked for); either way it cannot carry a request. */
        http_client_conn_close(conn);
    } else if (conn->state == HTTP_CLIENT_CONN_CLOSING) {
        http_client_conn_release_if_done(conn);
    }
}

/* After a complete response: back to the pool, or closed when the pool is full. */
static void http_client_conn_park(struct http_client_conn *conn)
{
    struct http_client_upstream *upstream = conn->upstream;
    RM_ASSERT(conn->state == HTTP_CLIENT_CONN_ACTIVE);
    RM_ASSERT(conn->request == NULL);
    if (upstream->idle >= upstream->config.max_idle && upstream->queue_head == NULL) {
        http_client_conn_close(conn);
        return;
    }
    timer_cancel(&conn->tls_timer);
    conn->state = HTTP_CLIENT_CONN_IDLE;
    conn->next = upstream->idle_stack;
    upstream->idle_stack = conn;
    upstream->idle++;
    timer_arm(&upstream->idle_queue, &conn->idle_timer,
              reactor_now_ns(upstream->client->reactor));
    if (conn->poll_in_flight) {
        /* The poll cancelled at dispatch has not completed yet: arm again when it does. */
        conn->poll_stale = true;
    } else {
        struct io_uring_sqe *sqe = reactor_sqe(upstream->client->reactor, &conn->poll_op);
        io_uring_prep_poll_add(sqe, conn->fd, POLLIN | POLLRDHUP);
        conn->poll_in_flight = true;
    }
    http_client_pool_gauges(upstream);
}

/* ---- connecting ---- */

static void http_client_conn_dial(struct http_client_conn *conn);

/* Another resolved address remains after a failed connect: the next one is tried. */
static bool http_client_conn_try_next(struct http_client_conn *conn, int result)
{
    RM_ASSERT(conn->state == HTTP_CLIENT_CONN_CONNECTING);
    RM_ASSERT(conn->address_count <= DNS_ADDRESSES_MAX);
    if (result >= 0 || result == -ECANCELED || conn->address_index + 1 >= conn->address_count) {
        return false;
    }
    /* The socket never connected and has no operation left, so close(2) has nothing to flush
     * and returns at once; a new socket is needed since the next address may be IPv6. */
    close(conn->fd);
    conn->fd = -1;
    conn->address_index++;
    http_client_conn_dial(conn);
    return true;
}

static void http_client_conn_on_connect(struct reactor_op *op, int result, uint32_t flags)
{
    (void)flags;
    struct http_client_conn *conn = http_client_conn_of(op);
    struct http_client_upstream *upstream = conn->upstream;
    RM_ASSERT(conn->connect_in_flight);
    conn->connect_in_flight = false;
    if (conn->state == HTTP_CLIENT_CONN_CLOSING) {
        http_client_conn_release_if_done(conn);
        return;
    }
    RM_ASSERT(conn->state == HTTP_CLIENT_CONN_CONNECTING);
    char message[HTTP_CLIENT_ERROR_BYTES];
    if (http_client_conn_try_next(conn, result)) {
        http_client_settle(upstream->client);
        return;
    }
    if (result == -ECANCELED) {
        /* Only the linked timeout cancels a connect that we did not close ourselves. */
        snprintf(message, sizeof(message), "no connection within %u ms",
                 upstream->config.connect_timeout_ms);
        http_client_conn_fail(conn, HTTP_CLIENT_TIMEOUT, message);
        http_client_settle(upstream->client);
        return;
    }
    if (result < 0) {
        snprintf(message, sizeof(message), "connect failed: %s; check that the upstream is up",
                 strerror(-result));
        http_client_conn_fail(conn, HTTP_CLIENT_CONNECT_ERROR, message);
        http_client_settle(upstream->client);
        return;
    }
    struct http_client *client = upstream->client;
    uint64_t now_ns = reactor_clock_ns();
    metrics_observe(client->registry, client->core, upstream->metrics.connect_seconds,
                    now_ns - conn->connect_start_ns);
    if (conn->tls != NULL) {
        conn->tls_start_ns = now_ns;
        timer_arm(&upstream->tls_queue, &conn->tls_timer, reactor_now_ns(client->reactor));
    }
    conn->state = HTTP_CLIENT_CONN_ACTIVE;
    http_client_conn_start(conn);
    http_client_settle(client);
}

static void http_client_conn_connect(struct http_client_conn *conn,
                                     const struct sockaddr_storage *address, socklen_t length)
{
    struct http_client_upstream *upstream = conn->upstream;
    struct reactor *reactor = upstream->client->reactor;
    RM_ASSERT(conn->state == HTTP_CLIENT_CONN_CONNECTING);
    RM_ASSERT(conn->fd >= 0);
    conn->connect_start_ns = reactor_clock_ns();
    uint64_t timeout_ns = (uint64_t)upstream->config.connect_timeout_ms * HTTP_CLIENT_NS_PER_MS;
    conn->link_timeout.tv_sec = (long long)(timeout_ns / 1000000000u);
    conn->link_timeout.tv_nsec = (long long)(timeout_ns % 1000000000u);
    http_client_reserve_link(reactor);
    struct io_uring_sqe *sqe = reactor_sqe(reactor, &conn->connect_op);
    io_uring_prep_connect(sqe, conn->fd, (const struct sockaddr *)address, length);
    sqe->flags |= IOSQE_IO_LINK;
    sqe = reactor_sqe(reactor, NULL);
    io_uring_prep_link_timeout(sqe, &conn->link_timeout, 0);
    conn->connect_in_flight = true;
    upstream->stats.connections_opened++;
}

/* Opens a socket for the current address (the literal one, or the resolved one at
 * address_index) and starts connecting. */
static void http_client_conn_dial(struct http_client_conn *conn)
{
    struct http_client_upstream *upstream = conn->upstream;
    RM_ASSERT(conn->state == HTTP_CLIENT_CONN_CONNECTING);
    RM_ASSERT(conn->fd < 0 && conn->request != NULL);
    const struct sockaddr_storage *address = &upstream->address;
    socklen_t length = upstream->address_length;
    if (conn->address_count > 0) {
        RM_ASSERT(conn->address_index < conn->address_count);
        address = &conn->addresses[conn->address_index];
        length = conn->address_lengths[conn->address_index];
    }
    int fd = socket(address->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        char message[HTTP_CLIENT_ERROR_BYTES];
        snprintf(message, sizeof(message), "socket failed: %s; raise the descriptor limit",
                 strerror(errno));
        http_client_conn_fail(conn, HTTP_CLIENT_CONNECT_ERROR, message);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    conn->fd = fd;
    http_client_conn_connect(conn, address, length);
}

static void http_client_conn_on_resolve(struct dns_request *request,
                                        const struct dns_result *result, void *context)
{
    struct http_client_conn *conn = context;
    struct http_client *client = conn->upstream->client;
    RM_ASSERT(request == &conn->dns_request);
    RM_ASSERT(conn->resolving && conn->state == HTTP_CLIENT_CONN_CONNECTING);
    conn->resolving = false;
    if (result->error != 0) {
        http_client_conn_fail(conn, HTTP_CLIENT_CONNECT_ERROR, result->message);
        http_client_settle(client);
        return;
    }
    RM_ASSERT(result->count >= 1 && result->count <= DNS_ADDRESSES_MAX);
    conn->address_count = result->count;
    for (uint32_t i = 0; i < result->count; i++) {
        conn->addresses[i] = result->addresses[i];
        conn->address_lengths[i] = result->lengths[i];
    }
    http_client_conn_dial(conn);
    http_client_settle(client);
}

static void http_client_conn_resolve(struct http_client_conn *conn)
{
    struct http_client_upstream *upstream = conn->upstream;
    struct http_client *client = upstream->client;
    RM_ASSERT(upstream->resolve && client->dns != NULL);
    RM_ASSERT(!conn->resolving);
    int result = dns_resolve(client->dns, client->reactor, upstream->url.host,
                             upstream->url.port, &conn->dns_request, http_client_conn_on_resolve,
                             conn);
    if (result != 0) {
        http_client_conn_fail(conn, HTTP_CLIENT_CONNECT_ERROR,
                              result == -EAGAIN
                                  ? "every name lookup slot is busy; retry later or raise the "
                                    "resolver's queue depth"
                                  : "the host name cannot be resolved (empty or too long)");
        return;
    }
    conn->resolving = true;
}

/* An https connection gets its BearSSL client before it connects; returns false (request
 * failed) when it cannot have one. */
static bool http_client_tls_create(struct http_client_upstream *upstream,
                                   struct http_client_conn *conn,
                                   struct http_client_request *request)
{
    struct http_client *client = upstream->client;
    RM_ASSERT(conn->tls == NULL);
    RM_ASSERT(client->trust != NULL);
    struct tls_conn *tls = rm_malloc(sizeof(*tls));
    if (tls == NULL) {
        http_client_fail(request, HTTP_CLIENT_CONNECT_ERROR, "out of memory for TLS state");
        return false;
    }
    int result = tls_conn_init(tls, client->trust, &client->sessions, upstream->url.host);
    if (result != 0) {
        http_client_fail(request, result == -ENOMEM ? HTTP_CLIENT_CONNECT_ERROR
                                                    : HTTP_CLIENT_TLS_ERROR,
                         "%s", tls_conn_error_message(tls));
        rm_free(tls);
        return false;
    }
    conn->tls = tls;
    conn->tls_ready = false;
    return true;
}

/* Takes a free slot and starts connecting (or resolving) for `request`. */
static void http_client_conn_open(struct http_client_upstream *upstream,
                                  struct http_client_request *request)
{
    struct http_client_conn *conn = upstream->free_list;
    RM_ASSERT(conn != NULL && conn->state == HTTP_CLIENT_CONN_FREE);
    RM_ASSERT(request->state == HTTP_CLIENT_REQUEST_QUEUED);
    http_client_queue_remove(upstream, request);
    request->state = HTTP_CLIENT_REQUEST_ACTIVE;
    if (upstream->url.tls && !http_client_tls_create(upstream, conn, request)) {
        return;
    }
    upstream->free_list = conn->next;
    conn->next = NULL;
    conn->fd = -1;
    conn->state = HTTP_CLIENT_CONN_CONNECTING;
    conn->reused = false;
    conn->address_index = 0;
    conn->address_count = 0;
    conn->request = request;
    request->conn = conn;
    upstream->open++;
    http_client_pool_gauges(upstream);
    if (upstream->resolve) {
        http_client_conn_resolve(conn);
    } else {
        http_client_conn_dial(conn);
    }
}

/* Gives waiting requests idle connections, or new ones while the pool has room. */
static void http_client_dispatch(struct http_client_upstream *upstream)
{
    RM_ASSERT(upstream->client->delivering == 0);
    RM_ASSERT(upstream->open <= upstream->config.max_connections);
    while (upstream->queue_head != NULL) {
        struct http_client_request *request = upstream->queue_head;
        struct http_client_conn *conn = upstream->idle_stack;
        if (conn != NULL) {
            http_client_idle_remove(conn);
            if (conn->poll_in_flight) {
                http_client_conn_cancel(conn, &conn->poll_op);
            }
            http_client_queue_remove(upstream, request);
            request->state = HTTP_CLIENT_REQUEST_ACTIVE;
            conn->state = HTTP_CLIENT_CONN_ACTIVE;
            conn->reused = true;
            conn->request = request;
            request->conn = conn;
            upstream->stats.connections_reused++;
            http_client_pool_gauges(upstream);
            http_client_conn_start(conn);
        } else if (upstream->free_list != NULL) {
            http_client_conn_open(upstream, request);
        } else {
            return;
        }
    }
}

/* ---- sending ---- */

static bool http_client_method_has_body(const char *method)
{
    return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
           strcmp(method, "PATCH") == 0;
}

static size_t http_client_request_bytes(const struct http_client_upstream *upstream,
                                        const struct http_client_request *request)
{
    RM_ASSERT(request->header_count <= HTTP_CLIENT_HEADERS_MAX);
    RM_ASSERT(request->method != NULL && request->path != NULL);
    size_t bytes = strlen(request->method) + strlen(upstream->url.path) + strlen(request->path) +
                   strlen(upstream->authority) + 64;
    for (uint32_t i = 0; i < request->header_count; i++) {
        bytes += strlen(request->headers[i].name) + strlen(request->headers[i].value) + 4;
    }
    return bytes + request->body_length;
}

static void http_client_append(char *output, size_t capacity, size_t *length,
                              const char *first, const char *second, const char *third)
{
    const char *parts[3] = {first, second, third};
    for (int i = 0; i < 3; i++) {
        size_t part = strlen(parts[i]);
        RM_ASSERT(*length + part <= capacity);
        memcpy(output + *length, parts[i], part);
        *length += part;
    }
}

/* Serialises the request into the connection's output buffer (sized by http_client_send). */
static void http_client_conn_build(struct http_client_conn *conn)
{
    struct http_client_upstream *upstream = conn->upstream;
    const struct http_client_request *request = conn->request;
    size_t capacity = conn->output_capacity;
    size_t length = 0;
    RM_ASSERT(http_client_request_bytes(upstream, request) <= capacity);
    http_client_append(conn->output, capacity, &length, request->method, " ",
                       upstream->url.path);
    bool root = request->path[0] == '\0' && upstream->url.path[0] == '\0';
    http_client_append(conn->output, capacity, &length, root ? "/" : request->path,
                       " HTTP/1.1\r\nHost: ", upstream->authority);
    for (uint32_t i = 0; i < request->header_count; i++) {
        http_client_append(conn->output, capacity, &length, "\r\n", request->headers[i].name,
                           ": ");
        http_client_append(conn->output, capacity, &length, request->headers[i].value, "", "");
    }
    if (request->body_length > 0 || http_client_method_has_body(request->method)) {
        char number[32];
        snprintf(number, sizeof(number), "%zu", request->body_length);
        http_client_append(conn->output, capacity, &length, "\r\nContent-Length: ", number, "");
    }
    http_client_append(conn->output, capacity, &length, "\r\n\r\n", "", "");
    RM_ASSERT(length + request->body_length <= capacity);
    if (request->body_length > 0) {
        memcpy(conn->output + length, request->body, request->body_length);
    }
    conn->output_length = length + request->body_length;
    conn->output_sent = 0;
}

static void http_client_conn_flush(struct http_client_conn *conn)
{
    RM_ASSERT(!conn->send_in_flight);
    RM_ASSERT(conn->output_sent < conn->output_length);
    struct io_uring_sqe *sqe = reactor_sqe(http_client_reactor(conn), &conn->send_op);
    io_uring_prep_send(sqe, conn->fd, conn->output + conn->output_sent,
                       conn->output_length - conn->output_sent, MSG_NOSIGNAL);
    conn->send_in_flight = true;
}

static void http_client_conn_on_send(struct reactor_op *op, int result, uint32_t flags)
{
    (void)flags;
    struct http_client_conn *conn = http_client_conn_of(op);
    RM_ASSERT(conn->send_in_flight);
    conn->send_in_flight = false;
    if (conn->state == HTTP_CLIENT_CONN_CLOSING) {
        http_client_conn_release_if_done(conn);
        return;
    }
    RM_ASSERT(conn->state == HTTP_CLIENT_CONN_ACTIVE);
    if (result > 0 && conn->tls != NULL) {
        tls_conn_send_ack(conn->tls, (size_t)result);
        if (conn->request != NULL) {
            http_client_tls_advance(conn);
        } else {
            http_client_conn_close(conn);
        }
        http_client_settle(conn->upstream->client);
        return;
    }
    if (result <= 0) {
        if (conn->request != NULL) {
            char message[HTTP_CLIENT_ERROR_BYTES];
            snprintf(message, sizeof(message), "sending the request failed: %s",
                     result == 0 ? "connection closed" : strerror(-result));
            http_client_conn_fail(conn, HTTP_CLIENT_CONNECT_ERROR, message);
        } else {
            http_client_conn_close(conn);
        }
        http_client_settle(conn->upstream->client);
        return;
    }
    conn->output_sent += (size_t)result;
    RM_ASSERT(conn->output_sent <= conn->output_length);
    if (conn->output_sent < conn->output_length && conn->request != NULL) {
        http_client_conn_flush(conn);
    }
}

/* Sizes the output buffer for the request and allocates the input buffer on first use; the
 * buffers then stay with the connection slot. */
static bool http_client_conn_buffers(struct http_client_conn *conn)
{
    size_t needed = http_client_request_bytes(conn->upstream, conn->request);
    RM_ASSERT(needed <= HTTP_CLIENT_REQUEST_MAX_BYTES);
    RM_ASSERT(conn->input_length == 0);
    if (needed > conn->output_capacity) {
        char *output = rm_realloc(conn->output, needed);
        if (output == NULL) {
            return false;
        }
        conn->output = output;
        conn->output_capacity = needed;
    }
    if (conn->input == NULL) {
        size_t limit = http_client_input_limit(conn->upstream);
        size_t capacity = limit < HTTP_CLIENT_BUFFER_INITIAL_BYTES
                              ? limit : HTTP_CLIENT_BUFFER_INITIAL_BYTES;
        conn->input = rm_malloc(capacity);
        if (conn->input == NULL) {
            return false;
        }
        conn->input_capacity = capacity;
    }
    return true;
}

/* The connection is ready and owns a request: send it and wait for the first byte. */
static void http_client_conn_start(struct http_client_conn *conn)
{
    RM_ASSERT(conn->state == HTTP_CLIENT_CONN_ACTIVE);
    RM_ASSERT(conn->request != NULL);
    conn->input_length = 0;
    conn->head_length = 0;
    conn->body_kept = 0;
    conn->in_body = false;
    conn->streaming = false;
    conn->received_any = false;
    if (!http_client_conn_buffers(conn)) {
        http_client_conn_fail(conn, HTTP_CLIENT_CONNECT_ERROR,
                              "out of memory for the connection's buffers");
        return;
    }
    http_client_conn_build(conn);
    if (conn->tls != NULL) {
        http_client_tls_advance(conn); /* handshake first, unless the connection is reused */
        return;
    }
    http_client_conn_flush(conn);
    http_client_conn_arm_recv(conn);
}

/* ---- receiving ---- */

static size_t http_client_input_limit(const struct http_client_upstream *upstream)
{
    const struct http_response_limits *limits = &upstream->config.limits;
    return (size_t)limits->max_header_bytes + (size_t)limits->max_body_bytes +
           HTTP_CLIENT_BUFFER_INITIAL_BYTES;
}

/* Makes room for the next read; false when the buffer is at its limit (or memory ran out). */
static bool http_client_input_room(struct http_client_conn *conn)
{
    size_t limit = http_client_input_limit(conn->upstream);
    RM_ASSERT(conn->input_length <= conn->input_capacity);
    if (conn->input_capacity - conn->input_length >= HTTP_CLIENT_READ_MIN_BYTES ||
        (conn->input_capacity == limit && conn->input_length < limit)) {
        return true;
    }
    if (conn->input_capacity >= limit) {
        return false;
    }
    size_t capacity = conn->input_capacity * 2;
    capacity = capacity < limit ? capacity : limit;
    char *input = rm_realloc(conn->input, capacity);
    if (input == NULL) {
        return false;
    }
    conn->input = input;
    conn->input_capacity = capacity;
    return true;
}

static void http_client_conn_arm_recv(struct http_client_conn *conn)
{
    struct reactor *reactor = http_client_reactor(conn);
    RM_ASSERT(!conn->recv_in_flight);
    RM_ASSERT(conn->input_length < conn->input_capacity);
    bool first = !conn->received_any;
    if (first) {
        uint64_t timeout_ns =
            (uint64_t)conn->upstream->config.first_byte_timeout_ms * HTTP_CLIENT_NS_PER_MS;
        conn->link_timeout.tv_sec = (long long)(timeout_ns / 1000000000u);
        conn->link_timeout.tv_nsec = (long long)(timeout_ns % 1000000000u);
        http_client_reserve_link(reactor);
    }
    struct io_uring_sqe *sqe = reactor_sqe(reactor, &conn->recv_op);
    io_uring_prep_recv(sqe, conn->fd, conn->input + conn->input_length,
                       conn->input_capacity - conn->input_length, 0);
    conn->recv_in_flight = true;
    if (first) {
        sqe->flags |= IOSQE_IO_LINK;
        sqe = reactor_sqe(reactor, NULL);
        io_uring_prep_link_timeout(sqe, &conn->link_timeout, 0);
    }
}

static void http_client_conn_protocol_error(struct http_client_conn *conn, const char *message)
{
    char text[HTTP_CLIENT_ERROR_BYTES];
    RM_ASSERT(message != NULL);
    RM_ASSERT(conn->request != NULL);
    snprintf(text, sizeof(text), "%s", message);
    http_client_conn_fail(conn, HTTP_CLIENT_PROTOCOL_ERROR, text);
}

/* The whole response is in: deliver it, then pool or close the connection. */
static void http_client_conn_complete(struct http_client_conn *conn, bool extra_bytes)
{
    struct http_client_upstream *upstream = conn->upstream;
    struct http_client_request *request = conn->request;
    RM_ASSERT(request != NULL);
    RM_ASSERT(conn->in_body);
    struct http_error err = {0, NULL};
    /* The buffer may have moved since the head was parsed; parse it again for fresh slices. */
    int head = http_response_parse_head(conn->input, conn->head_length, &upstream->config.limits,
                                        strcmp(request->method, "HEAD") == 0, &conn->head, &err);
    RM_ASSERT(head == (int)conn->head_length);
    bool reusable = conn->head.keep_alive && !extra_bytes && !conn->send_in_flight &&
                    conn->output_sent == conn->output_length;
    size_t pending = 0;
    if (conn->tls != NULL &&
        (tls_conn_closed(conn->tls) || tls_conn_read_buf(conn->tls, &pending) != NULL ||
         tls_conn_send_buf(conn->tls, &pending) != NULL)) {
        reusable = false; /* the engine holds bytes beyond this response, or is closed */
    }
    struct http_client_response response = {
        .outcome = conn->head.status >= 400 ? HTTP_CLIENT_HTTP_ERROR : HTTP_CLIENT_OK,
        .status = conn->head.status,
        .head = &conn->head,
        .body = conn->streaming ? NULL : conn->input + conn->head_length,
        .body_length = conn->streaming ? 0 : conn->body_kept,
        .error = "",
    };
    conn->in_body = false;
    http_client_finish(request, &response);
    RM_ASSERT(conn->request == NULL);
    if (conn->state != HTTP_CLIENT_CONN_ACTIVE) {
        return;
    }
    if (reusable && !conn->recv_in_flight) {
        http_client_conn_park(conn);
    } else {
        http_client_conn_close(conn);
    }
}

static bool http_client_on_sse(void *context, const struct sse_event *event)
{
    struct http_client_conn *conn = context;
    struct http_client_request *request = conn->request;
    RM_ASSERT(request != NULL && request->on_event != NULL);
    RM_ASSERT(conn->streaming);
    struct http_client *client = conn->upstream->client;
    client->delivering++;
    request->on_event(request, event);
    client->delivering--;
    client->dispatch_pending = true;
    return conn->request == request; /* cancelled from the callback: stop */
}

/* Hands decoded body bytes to the SSE parser or keeps them. Returns false when the request
 * ended (failed or cancelled) meanwhile. */
static bool http_client_conn_body_bytes(struct http_client_conn *conn, char *data,
                                        size_t decoded)
{
    RM_ASSERT(conn->in_body);
    RM_ASSERT(data >= conn->input + conn->head_length);
    if (!conn->streaming) {
        conn->body_kept += decoded;
        return true;
    }
    const char *error = NULL;
    int result = sse_parser_feed(&conn->sse, data, decoded, http_client_on_sse, conn, &error);
    if (result == SSE_STOPPED || conn->request == NULL) {
        return false;
    }
    if (result < 0) {
        http_client_conn_protocol_error(conn, error);
        return false;
    }
    return true;
}

/* Decodes the raw body bytes after the kept ones. Returns false when the request ended. */
static bool http_client_conn_body(struct http_client_conn *conn)
{
    size_t start = conn->head_length + conn->body_kept;
    char *data = conn->input + start;
    size_t available = conn->input_length - start;
    RM_ASSERT(conn->input_length >= start);
    if (http_response_body_done(&conn->body)) {
        http_client_conn_complete(conn, available > 0);
        return false;
    }
    if (available == 0) {
        return true;
    }
    size_t consumed = 0;
    size_t decoded = 0;
    struct http_error err = {0, NULL};
    int result = http_response_body_decode(&conn->body, data, available, &consumed, &decoded,
                                           &err);
    if (result < 0) {
        http_client_conn_protocol_error(conn, err.message);
        return false;
    }
    /* The undecoded rest moves down behind the decoded bytes (streamed bytes are dropped). */
    size_t kept = conn->streaming ? 0 : decoded;
    if (!http_client_conn_body_bytes(conn, data, decoded)) {
        return false;
    }
    memmove(data + kept, data + consumed, available - consumed);
    conn->input_length -= consumed - kept;
    if (result == 1) {
        http_client_conn_complete(conn, available > consumed);
        return false;
    }
    return true;
}

/* Parses the head once it is complete; interim 1xx responses are skipped. Returns false when
 * more bytes are needed or the request ended. */
static bool http_client_conn_head(struct http_client_conn *conn)
{
    struct http_client_upstream *upstream = conn->upstream;
    struct http_client_request *request = conn->request;
    RM_ASSERT(!conn->in_body);
    RM_ASSERT(request != NULL);
    for (;;) {
        struct http_error err = {0, NULL};
        int head = http_response_parse_head(conn->input, conn->input_length,
                                            &upstream->config.limits,
                                            strcmp(request->method, "HEAD") == 0, &conn->head,
                                            &err);
        if (head == HTTP_RESPONSE_PARSE_PARTIAL) {
            return false;
        }
        if (head < 0 || conn->head.status == 101) {
            http_client_conn_protocol_error(
                conn, head < 0 ? err.message : "upstream switched protocols (101) unasked");
            return false;
        }
        if (conn->head.status >= 200) {
            conn->head_length = (size_t)head;
            break;
        }
        memmove(conn->input, conn->input + head, conn->input_length - (size_t)head);
        conn->input_length -= (size_t)head;
    }
    http_response_body_init(&conn->body, &conn->head, &upstream->config.limits);
    conn->in_body = true;
    conn->streaming = conn->head.event_stream && request->on_event != NULL &&
                      conn->head.status < 300;
    if (conn->streaming && !conn->sse_ready) {
        if (sse_parser_init(&conn->sse, upstream->config.max_event_bytes) != 0) {
            http_client_conn_protocol_error(conn, "out of memory for the event stream parser");
            return false;
        }
        conn->sse_ready = true;
    } else if (conn->streaming) {
        sse_parser_reset(&conn->sse);
    }
    return true;
}

static void http_client_conn_eof(struct http_client_conn *conn, int result)
{
    RM_ASSERT(conn->request != NULL);
    RM_ASSERT(result <= 0);
    char message[HTTP_CLIENT_ERROR_BYTES];
    if (result == -ECANCELED) {
        snprintf(message, sizeof(message), "no first byte within %u ms",
                 conn->upstream->config.first_byte_timeout_ms);
        http_client_conn_fail(conn, HTTP_CLIENT_TIMEOUT, message);
        return;
    }
    if (conn->in_body) {
        struct http_error err = {0, NULL};
        if (result == 0 && http_response_body_eof(&conn->body, &err) == 1) {
            http_client_conn_complete(conn, false);
            return;
        }
        snprintf(message, sizeof(message), "%s", result == 0 ? err.message : strerror(-result));
        http_client_conn_fail(conn, HTTP_CLIENT_PROTOCOL_ERROR, message);
        return;
    }
    snprintf(message, sizeof(message), "connection %s before a complete response head%s",
             result == 0 ? "closed" : strerror(-result),
             conn->reused ? " (on a reused keep-alive connection)" : "");
    http_client_conn_fail(conn, conn->received_any ? HTTP_CLIENT_PROTOCOL_ERROR
                                                   : HTTP_CLIENT_CONNECT_ERROR, message);
}

/* Parses `length` new bytes at the end of the input. Returns true when the response needs
 * more bytes and the input has room for them; false when the request ended. */
static bool http_client_conn_absorb(struct http_client_conn *conn, size_t length)
{
    RM_ASSERT(conn->request != NULL);
    RM_ASSERT(length > 0);
    conn->input_length += length;
    conn->received_any = true;
    if (!conn->in_body && !http_client_conn_head(conn)) {
        if (conn->request == NULL || conn->state != HTTP_CLIENT_CONN_ACTIVE) {
            return false;
        }
        if (!http_client_input_room(conn)) {
            http_client_conn_protocol_error(conn, "response head does not fit the buffer");
            return false;
        }
        return true;
    }
    if (!http_client_conn_body(conn)) {
        return false;
    }
    if (!http_client_input_room(conn)) {
        http_client_conn_protocol_error(conn, "upstream sent a body larger than "
                                              "limits.max_body_bytes");
        return false;
    }
    return true;
}

static void http_client_conn_receive(struct http_client_conn *conn, size_t length)
{
    RM_ASSERT(conn->tls == NULL);
    RM_ASSERT(conn->state == HTTP_CLIENT_CONN_ACTIVE);
    if (http_client_conn_absorb(conn, length)) {
        http_client_conn_arm_recv(conn);
    }
}

static void http_client_conn_on_recv(struct reactor_op *op, int result, uint32_t flags)
{
    (void)flags;
    struct http_client_conn *conn = http_client_conn_of(op);
    struct http_client *client = conn->upstream->client;
    RM_ASSERT(conn->recv_in_flight);
    conn->recv_in_flight = false;
    if (conn->state == HTTP_CLIENT_CONN_CLOSING) {
        http_client_conn_release_if_done(conn);
    } else if (conn->request == NULL) {
        http_client_conn_close(conn); /* a response finished while this read was pending */
    } else if (conn->tls != NULL) {
        http_client_tls_on_recv(conn, result);
    } else if (result <= 0) {
        http_client_conn_eof(conn, result);
    } else {
        http_client_conn_receive(conn, (size_t)result);
    }
    http_client_settle(client);
}

/* ---- https ---- */

static struct http_client_conn *http_client_tls_conn_of(struct timer_entry *entry)
{
    struct http_client_conn *conn =
        (struct http_client_conn *)((char *)entry - offsetof(struct http_client_conn,
                                                              tls_timer));
    RM_ASSERT(conn->tls != NULL);
    RM_ASSERT(conn->state == HTTP_CLIENT_CONN_ACTIVE);
    return conn;
}

/* The handshake (armed at connect) or, once it is done, the first response byte (armed when
 * the request is sealed) took too long. */
static void http_client_tls_expired(struct timer_entry *entry)
{
    struct http_client_conn *conn = http_client_tls_conn_of(entry);
    struct http_client_upstream *upstream = conn->upstream;
    RM_ASSERT(conn->request != NULL);
    RM_ASSERT(!timer_armed(entry));
    char message[HTTP_CLIENT_ERROR_BYTES];
    if (conn->tls_ready) {
        snprintf(message, sizeof(message), "no first byte within %u ms",
                 upstream->config.first_byte_timeout_ms);
    } else {
        snprintf(message, sizeof(message), "TLS handshake not done within %u ms",
                 upstream->config.tls_timeout_ms);
    }
    http_client_conn_fail(conn, HTTP_CLIENT_TIMEOUT, message);
}

/* Fails the request with the engine's message (it names the host and what to do). */
static void http_client_tls_failed(struct http_client_conn *conn, enum http_client_outcome outcome)
{
    struct http_client_upstream *upstream = conn->upstream;
    struct http_client *client = upstream->client;
    enum tls_error error = tls_conn_error(conn->tls);
    RM_ASSERT(error != TLS_ERROR_NONE && error < TLS_ERROR_COUNT);
    RM_ASSERT(conn->request != NULL);
    metrics_add(client->registry, client->core, upstream->metrics.tls_failures[error], 1);
    char message[HTTP_CLIENT_ERROR_BYTES];
    snprintf(message, sizeof(message), "%s", tls_conn_error_message(conn->tls));
    http_client_conn_fail(conn, outcome, message);
}

static void http_client_tls_established(struct http_client_conn *conn)
{
    struct http_client_upstream *upstream = conn->upstream;
    struct http_client *client = upstream->client;
    RM_ASSERT(!conn->tls_ready);
    RM_ASSERT(tls_conn_handshake_done(conn->tls));
    conn->tls_ready = true;
    timer_cancel(&conn->tls_timer);
    int kind = tls_conn_resumed(conn->tls) ? 1 : 0;
    metrics_add(client->registry, client->core, upstream->metrics.tls_handshakes[kind], 1);
    metrics_observe(client->registry, client->core, upstream->metrics.tls_handshake_seconds,
                    reactor_clock_ns() - conn->tls_start_ns);
}

/* Hands the unsent request bytes to the engine; once all are in, seals the last record and
 * starts waiting for the first response byte. */
static void http_client_tls_write(struct http_client_conn *conn)
{
    RM_ASSERT(conn->tls_ready);
    RM_ASSERT(conn->output_sent <= conn->output_length);
    bool wrote = false;
    while (conn->output_sent < conn->output_length) {
        size_t room = 0;
        unsigned char *target = tls_conn_write_buf(conn->tls, &room);
        if (target == NULL) {
            return; /* the engine's buffer is full: the next send ack makes room */
        }
        size_t left = conn->output_length - conn->output_sent;
        size_t taken = left < room ? left : room;
        memcpy(target, conn->output + conn->output_sent, taken);
        tls_conn_write_ack(conn->tls, taken);
        conn->output_sent += taken;
        wrote = true;
    }
    if (wrote) {
        tls_conn_flush(conn->tls);
        if (!conn->received_any) {
            struct http_client_upstream *upstream = conn->upstream;
            timer_arm(&upstream->first_byte_queue, &conn->tls_timer,
                      reactor_now_ns(upstream->client->reactor));
        }
    }
}

/* Moves decrypted bytes into the input and parses them. Returns false when the request
 * ended (response complete, or failed). */
static bool http_client_tls_read(struct http_client_conn *conn)
{
    RM_ASSERT(conn->tls_ready);
    RM_ASSERT(conn->request != NULL);
    /* Each pass takes at least one byte of one record, so the loop ends with the record. */
    for (;;) {
        size_t ready = 0;
        unsigned char *source = tls_conn_read_buf(conn->tls, &ready);
        if (source == NULL) {
            return true;
        }
        RM_ASSERT(conn->input_length < conn->input_capacity);
        size_t room = conn->input_capacity - conn->input_length;
        size_t taken = ready < room ? ready : room;
        memcpy(conn->input + conn->input_length, source, taken);
        tls_conn_read_ack(conn->tls, taken);
        timer_cancel(&conn->tls_timer);
        if (!http_client_conn_absorb(conn, taken)) {
            return false;
        }
    }
}

/* Keeps one send of pending ciphertext and one recv for the next record in flight. */
static void http_client_tls_pump(struct http_client_conn *conn)
{
    struct reactor *reactor = http_client_reactor(conn);
    RM_ASSERT(conn->state == HTTP_CLIENT_CONN_ACTIVE);
    RM_ASSERT(conn->fd >= 0);
    size_t length = 0;
    if (!conn->send_in_flight) {
        unsigned char *bytes = tls_conn_send_buf(conn->tls, &length);
        if (bytes != NULL) {
            struct io_uring_sqe *sqe = reactor_sqe(reactor, &conn->send_op);
            io_uring_prep_send(sqe, conn->fd, bytes, length, MSG_NOSIGNAL);
            conn->send_in_flight = true;
        }
    }
    if (!conn->recv_in_flight) {
        unsigned char *bytes = tls_conn_recv_buf(conn->tls, &length);
        if (bytes != NULL) {
            struct io_uring_sqe *sqe = reactor_sqe(reactor, &conn->recv_op);
            io_uring_prep_recv(sqe, conn->fd, bytes, length, 0);
            conn->recv_in_flight = true;
        }
    }
}

/* Runs after every event on an https connection: notices failures and the end of the
 * handshake, moves plaintext both ways, then re-arms the transport. */
static void http_client_tls_advance(struct http_client_conn *conn)
{
    struct tls_conn *tls = conn->tls;
    RM_ASSERT(conn->state == HTTP_CLIENT_CONN_ACTIVE);
    RM_ASSERT(conn->request != NULL);
    if (tls_conn_error(tls) != TLS_ERROR_NONE) {
        http_client_tls_failed(conn, HTTP_CLIENT_TLS_ERROR);
        return;
    }
    if (!conn->tls_ready && tls_conn_handshake_done(tls)) {
        http_client_tls_established(conn);
    }
    if (conn->tls_ready) {
        http_client_tls_write(conn);
        if (!http_client_tls_read(conn)) {
            return;
        }
        if (tls_conn_error(tls) != TLS_ERROR_NONE) {
            http_client_tls_failed(conn, HTTP_CLIENT_TLS_ERROR);
            return;
        }
        if (tls_conn_closed(tls)) {
            http_client_conn_eof(conn, 0); /* close_notify: an orderly end of the stream */
            return;
        }
    }
    http_client_tls_pump(conn);
}

/* The transport ended. Before the handshake that is a TLS failure; after it, a close without
 * close_notify may have cut the response, so a body framed by the close is refused. */
static void http_client_tls_eof(struct http_client_conn *conn, int result)
{
    RM_ASSERT(result <= 0);
    RM_ASSERT(conn->request != NULL);
    tls_conn_recv_eof(conn->tls);
    enum tls_error error = tls_conn_error(conn->tls);
    if (error != TLS_ERROR_NONE && (error != TLS_ERROR_TRUNCATED || conn->in_body)) {
        http_client_tls_failed(conn, conn->tls_ready ? HTTP_CLIENT_PROTOCOL_ERROR
                                                     : HTTP_CLIENT_TLS_ERROR);
        return;
    }
    http_client_conn_eof(conn, result < 0 ? result : 0);
}

static void http_client_tls_on_recv(struct http_client_conn *conn, int result)
{
    RM_ASSERT(conn->state == HTTP_CLIENT_CONN_ACTIVE);
    RM_ASSERT(conn->request != NULL);
    if (result <= 0) {
        http_client_tls_eof(conn, result);
        return;
    }
    tls_conn_recv_ack(conn->tls, (size_t)result);
    http_client_tls_advance(conn);
}

/* ---- the client ---- */

static void http_client_tick(struct reactor *reactor, void *context)
{
    struct http_client *client = context;
    RM_ASSERT(client->reactor == reactor);
    uint64_t now_ns = reactor_now_ns(reactor);
    for (uint32_t i = 0; i < client->upstream_count; i++) {
        timer_queue_expire(&client->upstreams[i].total_queue, now_ns);
        timer_queue_expire(&client->upstreams[i].idle_queue, now_ns);
        timer_queue_expire(&client->upstreams[i].tls_queue, now_ns);
        timer_queue_expire(&client->upstreams[i].first_byte_queue, now_ns);
    }
    http_client_settle(client);
}

int http_client_create(struct reactor *reactor, struct metrics_registry *metrics,
                       const struct http_client_options *options, struct http_client **out)
{
    RM_ASSERT(reactor == reactor_current());
    RM_ASSERT(metrics != NULL && out != NULL);
    struct http_client *client = rm_calloc(1, sizeof(*client));
    if (client == NULL) {
        return -ENOMEM;
    }
    client->reactor = reactor;
    client->registry = metrics;
    client->core = reactor_index(reactor);
    client->trust = options != NULL ? options->trust : NULL;
    client->dns = options != NULL ? options->dns : NULL;
    tls_session_init(&client->sessions); /* owned by this reactor's thread from here on */
    reactor_hook_add(reactor, (struct reactor_hook){http_client_tick, client});
    *out = client;
    return 0;
}

static const char *http_client_check_config(const struct http_client_upstream_config *config)
{
    RM_ASSERT(config != NULL);
    RM_ASSERT(config->name != NULL && config->url != NULL);
    size_t length = strlen(config->name);
    if (length == 0 || length >= HTTP_CLIENT_NAME_MAX_BYTES ||
        strspn(config->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
            length) {
        return "the upstream name must be 1 to 63 letters, digits, '_', '.' or '-'";
    }
    if (config->max_connections == 0 || config->max_connections > HTTP_CLIENT_CONNECTIONS_MAX ||
        config->max_idle > config->max_connections || config->max_queued > HTTP_CLIENT_QUEUE_MAX) {
        return "max_connections must be 1..4096, max_idle at most max_connections and "
               "max_queued at most 65536";
    }
    if (config->connect_timeout_ms == 0 || config->first_byte_timeout_ms == 0 ||
        config->total_timeout_ms == 0 || config->idle_timeout_ms == 0) {
        return "every timeout must be at least 1 ms";
    }
    const struct http_response_limits *limits = &config->limits;
    if (limits->max_status_line_bytes < 16 ||
        limits->max_status_line_bytes > limits->max_header_bytes ||
        limits->max_header_bytes > HTTP_PARSE_HEADER_BYTES_CEILING || limits->max_headers == 0 ||
        limits->max_headers > HTTP_HEADERS_MAX || limits->max_body_bytes > (1ull << 32) ||
        config->max_event_bytes == 0 || config->max_event_bytes > SSE_EVENT_MAX_BYTES_CEILING) {
        return "response limits out of range (status line 16..header bytes, header bytes up to "
               "16 MiB, 1..128 headers, body up to 4 GiB, event bytes 1..16 MiB)";
    }
    return NULL;
}

/* IP literals and localhost are used as they are; names need the resolver. */
static const char *http_client_address(struct http_client_upstream *upstream)
{
    struct url *url = &upstream->url;
    RM_ASSERT(url->host[0] != '\0');
    RM_ASSERT(url->port != 0);
    memset(&upstream->address, 0, sizeof(upstream->address));
    if (url->ipv6) {
        struct sockaddr_in6 *address = (struct sockaddr_in6 *)&upstream->address;
        address->sin6_family = AF_INET6;
        address->sin6_port = htons(url->port);
        upstream->address_length = sizeof(*address);
        return inet_pton(AF_INET6, url->host, &address->sin6_addr) == 1
                   ? NULL
                   : "the IPv6 literal is not a valid address";
    }
    struct sockaddr_in *address = (struct sockaddr_in *)&upstream->address;
    address->sin_family = AF_INET;
    address->sin_port = htons(url->port);
    upstream->address_length = sizeof(*address);
    const char *host = strcmp(url->host, "localhost") == 0 ? "127.0.0.1" : url->host;
    if (inet_pton(AF_INET, host, &address->sin_addr) == 1) {
        return NULL;
    }
    upstream->resolve = true;
    return upstream->client->dns != NULL
               ? NULL
               : "the host is a name and this client has no resolver; use an IP literal or "
                 "localhost, or create the client with a dns resolver";
}

static int http_client_upstream_init(struct http_client_upstream *upstream, char *err,
                                     size_t err_size)
{
    const struct http_client_upstream_config *config = &upstream->config;
    RM_ASSERT(config->max_connections >= 1);
    RM_ASSERT(upstream->conns == NULL);
    const char *problem = http_client_address(upstream);
    if (problem != NULL) {
        snprintf(err, err_size, "upstream %s: %s", upstream->name, problem);
        return -EINVAL;
    }
    url_authority(&upstream->url, upstream->authority, sizeof(upstream->authority));
    char label[sizeof(upstream->label)];
    snprintf(label, sizeof(label), "upstream %s (%s%s%s:%u)", upstream->name,
             upstream->url.ipv6 ? "[" : "", upstream->url.host, upstream->url.ipv6 ? "]" : "",
             (unsigned)upstream->url.port);
    memcpy(upstream->label, label, sizeof(label));
    timer_queue_init(&upstream->total_queue,
                     (uint64_t)config->total_timeout_ms * HTTP_CLIENT_NS_PER_MS);
    timer_queue_init(&upstream->idle_queue,
                     (uint64_t)config->idle_timeout_ms * HTTP_CLIENT_NS_PER_MS);
    timer_queue_init(&upstream->tls_queue,
                     (uint64_t)config->tls_timeout_ms * HTTP_CLIENT_NS_PER_MS);
    timer_queue_init(&upstream->first_byte_queue,
                     (uint64_t)config->first_byte_timeout_ms * HTTP_CLIENT_NS_PER_MS);
    upstream->conns = rm_calloc(config->max_connections, sizeof(*upstream->conns));
    if (upstream->conns == NULL) {
        snprintf(err, err_size, "upstream %s: out of memory for its connections", upstream->name);
        return -ENOMEM;
    }
    for (uint32_t i = config->max_connections; i-- > 0;) {
        struct http_client_conn *conn = &upstream->conns[i];
        conn->upstream = upstream;
        conn->fd = -1;
        conn->connect_op = (struct reactor_op){http_client_conn_on_connect, conn};
        conn->send_op = (struct reactor_op){http_client_conn_on_send, conn};
        conn->recv_op = (struct reactor_op){http_client_conn_on_recv, conn};
        conn->poll_op = (struct reactor_op){http_client_conn_on_poll, conn};
        conn->close_op = (struct reactor_op){http_client_conn_on_close, conn};
        timer_entry_init(&conn->idle_timer, http_client_idle_expired);
        timer_entry_init(&conn->tls_timer, http_client_tls_expired);
        conn->next = upstream->free_list;
        upstream->free_list = conn;
    }
    return 0;
}

int http_client_add_upstream(struct http_client *client,
                             const struct http_client_upstream_config *config, char *err,
                             size_t err_size)
{
    RM_ASSERT(client->reactor == reactor_current());
    RM_ASSERT(err != NULL && err_size > 0);
    if (client->upstream_count == HTTP_CLIENT_UPSTREAMS_MAX) {
        snprintf(err, err_size, "too many upstreams (at most %d)", HTTP_CLIENT_UPSTREAMS_MAX);
        return -ENOSPC;
    }
    const char *problem = http_client_check_config(config);
    if (problem != NULL) {
        snprintf(err, err_size, "upstream %s: %s", config->name, problem);
        return -EINVAL;
    }
    struct http_client_upstream *upstream = &client->upstreams[client->upstream_count];
    memset(upstream, 0, sizeof(*upstream));
    upstream->client = client;
    upstream->config = *config;
    snprintf(upstream->name, sizeof(upstream->name), "%s", config->name);
    upstream->config.name = upstream->name;
    upstream->config.url = NULL; /* the caller's string need not outlive this call */
    char url_error[URL_ERROR_BYTES * 2];
    if (url_parse(config->url, &upstream->url, url_error, sizeof(url_error)) != 0) {
        snprintf(err, err_size, "upstream %s: %s", upstream->name, url_error);
        return -EINVAL;
    }
    if (upstream->url.tls && client->trust == NULL) {
        snprintf(err, err_size, "upstream %s: an https URL needs trust anchors and this client "
                 "has none; configure a CA bundle (tls.ca_file) or use an http:// URL",
                 upstream->name);
        return -EINVAL;
    }
    if (upstream->config.tls_timeout_ms == 0) {
        upstream->config.tls_timeout_ms = HTTP_CLIENT_TLS_TIMEOUT_MS_DEFAULT;
    }
    int result = http_client_upstream_init(upstream, err, err_size);
    if (result == 0 && (http_client_metrics_init(upstream) != 0 ||
                        (upstream->url.tls && http_client_tls_metrics_init(upstream) != 0))) {
        snprintf(err, err_size, "upstream %s: the metrics registry is full", upstream->name);
        result = -ENOSPC;
    }
    if (result != 0) {
        rm_free(upstream->conns);
        upstream->conns = NULL;
        return result;
    }
    http_client_pool_gauges(upstream);
    return (int)client->upstream_count++;
}

static const char *http_client_check_request(const struct http_client_upstream *upstream,
                                             const struct http_client_request *request)
{
    RM_ASSERT(request->header_count <= HTTP_CLIENT_HEADERS_MAX);
    /* An empty path asks for the upstream URL's own path (a tool's full URL), "/" if none. */
    RM_ASSERT(request->path != NULL && (request->path[0] == '/' || request->path[0] == '\0'));
    for (const char *cursor = request->method; *cursor != '\0'; cursor++) {
        RM_ASSERT(HTTP_PARSE_IS(*cursor, HTTP_PARSE_TOKEN));
    }
    for (const char *cursor = request->path; *cursor != '\0'; cursor++) {
        if (!HTTP_PARSE_IS(*cursor, HTTP_PARSE_TARGET)) {
            return "the request path has a space or control character; percent-encode it";
        }
    }
    for (uint32_t i = 0; i < request->header_count; i++) {
        const char *name = request->headers[i].name;
        const char *value = request->headers[i].value;
        size_t name_length = strlen(name);
        if (name_length == 0 || strspn(name, "!#$%&'*+-.^_`|~0123456789"
                                             "abcdefghijklmnopqrstuvwxyz"
                                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != name_length) {
            return "a request header name is not a token";
        }
        for (const char *cursor = value; *cursor != '\0'; cursor++) {
            if (!HTTP_PARSE_IS(*cursor, HTTP_PARSE_VALUE)) {
                return "a request header value has a CR, LF or control character";
            }
        }
    }
    if (http_client_request_bytes(upstream, request) > HTTP_CLIENT_REQUEST_MAX_BYTES) {
        return "the request is larger than 64 MiB";
    }
    return NULL;
}

int http_client_send(struct http_client *client, struct http_client_request *request)
{
    RM_ASSERT(client->reactor == reactor_current());
    RM_ASSERT(request->upstream < client->upstream_count);
    RM_ASSERT(request->on_complete != NULL && request->method != NULL);
    RM_ASSERT(request->state == HTTP_CLIENT_REQUEST_FREE);
    struct http_client_upstream *upstream = &client->upstreams[request->upstream];
    request->client = client;
    request->conn = NULL;
    request->error[0] = '\0';
    const char *problem = http_client_check_request(upstream, request);
    if (problem != NULL) {
        snprintf(request->error, sizeof(request->error), "%s: %s", upstream->label, problem);
        return -EINVAL;
    }
    bool must_wait = upstream->queue_head != NULL ||
                     (upstream->idle_stack == NULL && upstream->free_list == NULL);
    if (must_wait && upstream->queued >= upstream->config.max_queued) {
        snprintf(request->error, sizeof(request->error),
                 "%s: all %u connections are busy and %u requests already wait; retry later",
                 upstream->label, upstream->config.max_connections, upstream->queued);
        http_client_count(upstream, HTTP_CLIENT_REJECTED);
        return -EBUSY;
    }
    request->state = HTTP_CLIENT_REQUEST_QUEUED;
    request->start_ns = reactor_clock_ns();
    request->queue_next = NULL;
    request->queue_previous = upstream->queue_tail;
    if (upstream->queue_tail != NULL) {
        upstream->queue_tail->queue_next = request;
    } else {
        upstream->queue_head = request;
    }
    upstream->queue_tail = request;
    upstream->queued++;
    client->in_flight++;
    timer_entry_init(&request->total_timer, http_client_total_expired);
    timer_arm(&upstream->total_queue, &request->total_timer, reactor_now_ns(client->reactor));
    client->dispatch_pending = true;
    http_client_settle(client);
    return 0;
}

void http_client_cancel(struct http_client_request *request)
{
    if (request->state == HTTP_CLIENT_REQUEST_FREE) {
        return;
    }
    struct http_client_upstream *upstream = http_client_upstream_of(request);
    struct http_client *client = upstream->client;
    RM_ASSERT(client->reactor == reactor_current());
    RM_ASSERT(client->in_flight > 0);
    if (request->state == HTTP_CLIENT_REQUEST_QUEUED) {
        http_client_queue_remove(upstream, request);
    }
    struct http_client_conn *conn = request->conn;
    if (conn != NULL) {
        conn->request = NULL;
        request->conn = NULL;
        http_client_conn_close(conn);
    }
    timer_cancel(&request->total_timer);
    request->state = HTTP_CLIENT_REQUEST_FREE;
    client->in_flight--;
    http_client_count(upstream, HTTP_CLIENT_CANCELLED);
}

bool http_client_busy(const struct http_client *client)
{
    RM_ASSERT(client != NULL);
    return client->in_flight > 0 || client->closing > 0;
}

struct http_client_upstream_stats http_client_stats(const struct http_client *client,
                                                    uint32_t upstream)
{
    RM_ASSERT(upstream < client->upstream_count);
    const struct http_client_upstream *entry = &client->upstreams[upstream];
    struct http_client_upstream_stats stats = entry->stats;
    stats.open = entry->open;
    stats.idle = entry->idle;
    stats.queued = entry->queued;
    return stats;
}

void http_client_destroy(struct http_client *client)
{
    if (client == NULL) {
        return;
    }
    RM_ASSERT(client->reactor == reactor_current());
    for (uint32_t i = 0; i < client->upstream_count; i++) {
        struct http_client_upstream *upstream = &client->upstreams[i];
        for (uint32_t c = 0; c < upstream->config.max_connections; c++) {
            struct http_client_conn *conn = &upstream->conns[c];
            if (conn->fd >= 0) {
                close(conn->fd);
            }
            if (conn->resolving) {
                dns_cancel(client->dns, &conn->dns_request);
            }
            if (conn->tls != NULL) {
                tls_conn_destroy(conn->tls);
                rm_free(conn->tls);
            }
            if (conn->sse_ready) {
                sse_parser_free(&conn->sse);
            }
            rm_free(conn->input);
            rm_free(conn->output);
        }
        rm_free(upstream->conns);
    }
    tls_session_clear(&client->sessions); /* master secrets */
    rm_free(client);
}
