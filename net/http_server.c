#include "net/http_server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/metrics.h"
#include "core/reactor.h"
#include "core/rm_assert.h"
#include "core/timer.h"
#include "net/bufring.h"
#include "net/http_response.h"

/* Past this much unsent output a connection stops taking pipelined requests until the
 * client reads, so one client cannot make the server buffer without bound. */
#define HTTP_OUTPUT_HIGH_WATER (256 * 1024)
/* After an error response the server half-closes and keeps reading (and discarding) for a
 * while, so the client reads the response instead of a reset (lingering close). */
#define HTTP_LINGER_MS 2000
#define HTTP_BUFFER_GROUP 1
#define HTTP_STATUS_SLOTS 600
#define HTTP_ROUTES_MAX 64
#define HTTP_OUTPUT_INITIAL_BYTES 4096
#define HTTP_CONTINUE_BYTES 32 /* "HTTP/1.1 100 Continue\r\n\r\n" and some */
/* A send that completed past this offset, and past half the output, moves the unsent rest to
 * the front: a stream whose client keeps up reuses its buffer instead of growing it, and
 * every byte moves at most once per byte sent. */
#define HTTP_OUTPUT_COMPACT_BYTES (64 * 1024)

/* Before a stream starts the output holds less than the high-water mark plus one head, so a
 * stream always has room for its first chunks. */
_Static_assert(HTTP_STREAM_UNSENT_MAX >= 2 * (HTTP_OUTPUT_HIGH_WATER + HTTP_RESPONSE_HEAD_MAX),
               "a stream must not fail on what was queued before it");

enum http_conn_state { HTTP_CONN_FREE, HTTP_CONN_OPEN, HTTP_CONN_LINGER, HTTP_CONN_CLOSING };
enum http_timer_kind { HTTP_TIMER_NONE, HTTP_TIMER_HEADER, HTTP_TIMER_BODY, HTTP_TIMER_IDLE,
                       HTTP_TIMER_LINGER };

struct http_exchange {
    struct http_conn *conn;
    struct http_request *request;
    uint32_t route;
    uint64_t start_ns;
    int stream_status;     /* counted in the metrics when the stream ends */
    bool streaming;        /* between http_exchange_stream_begin and _end */
    bool stream_chunked;   /* else delimited by the close (HTTP/1.0) */
    bool stream_omit_body; /* HEAD */
};

struct http_conn {
    struct http_server *server;
    int fd;
    enum http_conn_state state;
    enum http_timer_kind timer_kind;
    bool recv_armed;
    bool send_in_flight;
    bool close_after_send;
    bool exchange_active;
    bool processing;
    struct reactor_op recv_op;
    struct reactor_op send_op;
    struct reactor_op close_op;
    struct http_reader reader;
    struct http_output output;
    /* The buffer a send in flight reads from, when the output had to move meanwhile. */
    char *retired_output;
    struct timer_entry timer;
    struct http_exchange exchange;
    struct http_conn *next_free;
};

struct http_metrics {
    int requests;  /* family */
    int duration;  /* family */
    int open;      /* series */
    int accepted;  /* series */
    int rejected;  /* series */
    int duration_series[HTTP_ROUTES_MAX];
    int16_t request_series[HTTP_ROUTES_MAX][HTTP_STATUS_SLOTS];
};

struct http_server {
    struct reactor *reactor;
    struct http_server_config config;
    int listen_fd;
    bool accepting;
    bool accept_rearm;
    struct reactor_op accept_op;
    struct bufring bufring;
    struct http_conn *conns;
    struct http_conn *free_list;
    uint32_t open_count;
    uint32_t active_exchanges;
    struct timer_queue header_queue;
    struct timer_queue body_queue;
    struct timer_queue idle_queue;
    struct timer_queue linger_queue;
    long long date_seconds;
    char date[HTTP_RESPONSE_DATE_BYTES + 1];
    struct http_metrics metrics;
};

static void http_conn_process(struct http_conn *conn);
static void http_conn_close(struct http_conn *conn);
static void http_conn_flush(struct http_conn *conn);
static void http_conn_arm_recv(struct http_conn *conn);
static int http_conn_reserve(struct http_conn *conn, size_t extra);

static struct http_conn *http_conn_of_op(struct reactor_op *op) { return op->context; }

static uint32_t http_server_core(const struct http_server *server)
{
    return reactor_index(server->reactor);
}

/* ---- metrics ---- */

static int http_metrics_init(struct http_server *server)
{
    struct metrics_registry *registry = server->config.metrics;
    struct http_metrics *metrics = &server->metrics;
    RM_ASSERT(server->config.route_count <= HTTP_ROUTES_MAX);
    metrics->requests = metrics_family(registry, "http_requests_total",
                                       "HTTP requests answered, by route and status code.",
                                       METRICS_COUNTER);
    metrics->duration = metrics_histogram_family(
        registry, "http_request_duration_seconds",
        "Time from a request's complete headers to its queued response.", 1000, 1e-9);
    int connections = metrics_family(registry, "http_connections_open",
                                     "Client connections currently open.", METRICS_GAUGE);
    int accepted = metrics_family(registry, "http_connections_accepted_total",
                                  "Client connections accepted.", METRICS_COUNTER);
    int rejected = metrics_family(
        registry, "http_connections_rejected_total",
        "Client connections closed at once because limits.max_connections was reached.",
        METRICS_COUNTER);
    if (metrics->requests < 0 || metrics->duration < 0 || connections < 0 || accepted < 0 ||
        rejected < 0) {
        return -ENOSPC;
    }
    metrics->open = metrics_series(registry, connections, "");
    metrics->accepted = metrics_series(registry, accepted, "");
    metrics->rejected = metrics_series(registry, rejected, "");
    for (uint32_t route = 0; route < server->config.route_count; route++) {
        char labels[METRICS_LABELS_MAX];
        snprintf(labels, sizeof(labels), "route=\"%s\"", server->config.route_names[route]);
        metrics->duration_series[route] = metrics_series(registry, metrics->duration, labels);
    }
    memset(metrics->request_series, 0xff, sizeof(metrics->request_series));
    return metrics->open < 0 || metrics->accepted < 0 || metrics->rejected < 0 ? -ENOSPC : 0;
}

/* Series for (route, status) are registered the first time the pair is seen, so the output
 * lists only what happened; the per-core cache keeps the registry's mutex off the hot path. */
static void http_metrics_count(struct http_server *server, uint32_t route, int status,
                               uint64_t duration_ns)
{
    RM_ASSERT(route < server->config.route_count);
    RM_ASSERT(status >= 100 && status < HTTP_STATUS_SLOTS);
    struct http_metrics *metrics = &server->metrics;
    struct metrics_registry *registry = server->config.metrics;
    int series = metrics->request_series[route][status];
    if (series < 0) {
        char labels[METRICS_LABELS_MAX];
        snprintf(labels, sizeof(labels), "route=\"%s\",code=\"%d\"",
                 server->config.route_names[route], status);
        series = metrics_series(registry, metrics->requests, labels);
        metrics->request_series[route][status] = (int16_t)series;
    }
    uint32_t core = http_server_core(server);
    if (series >= 0) {
        metrics_add(registry, core, series, 1);
    }
    if (metrics->duration_series[route] >= 0) {
        metrics_observe(registry, core, metrics->duration_series[route], duration_ns);
    }
}

/* ---- timers ---- */

static void http_conn_timer_set(struct http_conn *conn, enum http_timer_kind kind)
{
    struct http_server *server = conn->server;
    if (kind == conn->timer_kind && kind != HTTP_TIMER_IDLE) {
        return; /* header and body timeouts bound the whole phase, not the gaps in it */
    }
    conn->timer_kind = kind;
    uint64_t now_ns = reactor_now_ns(server->reactor);
    switch (kind) {
    case HTTP_TIMER_NONE: timer_cancel(&conn->timer); break;
    case HTTP_TIMER_HEADER: timer_arm(&server->header_queue, &conn->timer, now_ns); break;
    case HTTP_TIMER_BODY: timer_arm(&server->body_queue, &conn->timer, now_ns); break;
    case HTTP_TIMER_IDLE: timer_arm(&server->idle_queue, &conn->timer, now_ns); break;
    case HTTP_TIMER_LINGER: timer_arm(&server->linger_queue, &conn->timer, now_ns); break;
    }
}

static void http_conn_timer_update(struct http_conn *conn)
{
    if (conn->state != HTTP_CONN_OPEN) {
        return;
    }
    if (conn->exchange_active) {
        http_conn_timer_set(conn, HTTP_TIMER_NONE);
        return;
    }
    if (conn->output.sent < conn->output.length) {
        /* A client that does not read its responses is idle as far as we are concerned. */
        http_conn_timer_set(conn, HTTP_TIMER_IDLE);
        return;
    }
    switch (http_reader_state(&conn->reader)) {
    case HTTP_READER_IDLE: http_conn_timer_set(conn, HTTP_TIMER_IDLE); break;
    case HTTP_READER_HEADERS: http_conn_timer_set(conn, HTTP_TIMER_HEADER); break;
    case HTTP_READER_BODY: http_conn_timer_set(conn, HTTP_TIMER_BODY); break;
    }
}

/* Makes the connection's exchange the active one, for `request` (NULL: no request reached a
 * handler). */
static void http_conn_open_exchange(struct http_conn *conn, struct http_request *request)
{
    RM_ASSERT(!conn->exchange_active);
    RM_ASSERT(conn->state == HTTP_CONN_OPEN);
    conn->exchange = (struct http_exchange){
        .conn = conn,
        .request = request,
        .start_ns = reactor_now_ns(conn->server->reactor),
    };
    conn->exchange_active = true;
    conn->server->active_exchanges++;
}

/* Answers a request that never reached a handler (unframeable input, a timeout) and
 * closes: after such an error the connection's framing cannot be trusted. */
static void http_conn_fail(struct http_conn *conn, int status, const char *type,
                           const char *message)
{
    RM_ASSERT(status >= 400);
    http_conn_open_exchange(conn, NULL);
    conn->close_after_send = true;
    http_exchange_respond_error(&conn->exchange, status, type, message);
}

static void http_conn_timer_expired(struct timer_entry *entry)
{
    struct http_conn *conn = (struct http_conn *)((char *)entry - offsetof(struct http_conn, timer));
    RM_ASSERT(conn->state == HTTP_CONN_OPEN || conn->state == HTTP_CONN_LINGER);
    enum http_timer_kind kind = conn->timer_kind;
    conn->timer_kind = HTTP_TIMER_NONE;
    if (kind == HTTP_TIMER_HEADER || kind == HTTP_TIMER_BODY) {
        RM_ASSERT(!conn->exchange_active);
        /* The request is abandoned; answer it so the client knows why, then close. */
        http_conn_fail(conn, 408, "request_timeout",
                       kind == HTTP_TIMER_HEADER
                           ? "request headers not received in time; "
                             "send the whole request promptly"
                           : "request body not received in time; send the whole body promptly");
        return;
    }
    http_conn_close(conn);
}

/* ---- connection life cycle ---- */

static void http_conn_release_if_done(struct http_conn *conn)
{
    struct http_server *server = conn->server;
    if (conn->state != HTTP_CONN_CLOSING || conn->recv_armed || conn->send_in_flight ||
        conn->exchange_active || conn->fd < 0) {
        return;
    }
    struct io_uring_sqe *sqe = reactor_sqe(server->reactor, &conn->close_op);
    io_uring_prep_close(sqe, conn->fd);
    conn->fd = -1;
}

static void http_conn_on_close(struct reactor_op *op, int result, uint32_t flags)
{
    (void)result;
    (void)flags;
    struct http_conn *conn = http_conn_of_op(op);
    struct http_server *server = conn->server;
    RM_ASSERT(conn->state == HTTP_CONN_CLOSING);
    RM_ASSERT(server->open_count > 0);
    RM_ASSERT(!conn->send_in_flight);
    http_reader_free(&conn->reader);
    http_output_free(&conn->output);
    rm_free(conn->retired_output);
    conn->retired_output = NULL;
    conn->state = HTTP_CONN_FREE;
    conn->next_free = server->free_list;
    server->free_list = conn;
    server->open_count--;
    metrics_add(server->config.metrics, http_server_core(server), server->metrics.open, -1);
}

static void http_conn_close(struct http_conn *conn)
{
    if (conn->state == HTTP_CONN_CLOSING || conn->state == HTTP_CONN_FREE) {
        return;
    }
    conn->state = HTTP_CONN_CLOSING;
    timer_cancel(&conn->timer);
    conn->timer_kind = HTTP_TIMER_NONE;
    if (conn->recv_armed) {
        struct io_uring_sqe *sqe = reactor_sqe(conn->server->reactor, NULL);
        io_uring_prep_cancel(sqe, &conn->recv_op, 0);
    }
    http_conn_release_if_done(conn);
}

/* Half-closes after the last response and discards input until the client closes or the
 * linger time passes. */
static void http_conn_linger(struct http_conn *conn)
{
    RM_ASSERT(conn->state == HTTP_CONN_OPEN);
    RM_ASSERT(!conn->send_in_flight);
    conn->state = HTTP_CONN_LINGER;
    struct io_uring_sqe *sqe = reactor_sqe(conn->server->reactor, NULL);
    io_uring_prep_shutdown(sqe, conn->fd, SHUT_WR);
    conn->timer_kind = HTTP_TIMER_NONE;
    http_conn_timer_set(conn, HTTP_TIMER_LINGER);
    if (!conn->recv_armed) {
        http_conn_close(conn);
    }
}

/* Moves the unsent rest of the output to the front; only while no send is in flight. */
static void http_conn_compact(struct http_conn *conn)
{
    struct http_output *output = &conn->output;
    RM_ASSERT(!conn->send_in_flight);
    RM_ASSERT(output->sent < output->length);
    size_t unsent = output->length - output->sent;
    if (output->sent < HTTP_OUTPUT_COMPACT_BYTES || output->sent < unsent) {
        return;
    }
    memmove(output->data, output->data + output->sent, unsent);
    output->length = unsent;
    output->sent = 0;
}

static void http_conn_on_send(struct reactor_op *op, int result, uint32_t flags)
{
    (void)flags;
    struct http_conn *conn = http_conn_of_op(op);
    RM_ASSERT(conn->send_in_flight);
    conn->send_in_flight = false;
    rm_free(conn->retired_output); /* the send that read from it is over */
    conn->retired_output = NULL;
    if (result <= 0 || conn->state == HTTP_CONN_CLOSING) {
        http_conn_close(conn);
        http_conn_release_if_done(conn);
        return;
    }
    conn->output.sent += (size_t)result;
    RM_ASSERT(conn->output.sent <= conn->output.length);
    if (conn->output.sent == conn->output.length) {
        http_output_reset(&conn->output);
        http_conn_process(conn); /* requests held back by the high-water mark */
    } else {
        http_conn_compact(conn);
    }
    http_conn_flush(conn);
}

static void http_conn_flush(struct http_conn *conn)
{
    if (conn->state != HTTP_CONN_OPEN || conn->send_in_flight) {
        return;
    }
    struct http_output *output = &conn->output;
    if (output->sent < output->length) {
        struct io_uring_sqe *sqe = reactor_sqe(conn->server->reactor, &conn->send_op);
        io_uring_prep_send(sqe, conn->fd, output->data + output->sent,
                           output->length - output->sent, MSG_NOSIGNAL);
        conn->send_in_flight = true;
        http_conn_timer_update(conn);
        return;
    }
    if (conn->close_after_send && !conn->exchange_active) {
        http_conn_linger(conn);
        return;
    }
    http_conn_timer_update(conn);
}

static void http_conn_receive(struct http_conn *conn, const char *data, size_t length)
{
    if (conn->state != HTTP_CONN_OPEN || conn->close_after_send) {
        return; /* lingering, or the connection is finished: input is discarded */
    }
    struct http_error error = {0};
    if (http_reader_feed(&conn->reader, data, length, &error) != 0) {
        if (conn->exchange_active) {
            return; /* the reader keeps the error: it is answered after the current answer */
        }
        http_conn_fail(conn, error.status, "invalid_request", error.message);
        return;
    }
    http_conn_process(conn);
}

static void http_conn_on_recv(struct reactor_op *op, int result, uint32_t flags)
{
    struct http_conn *conn = http_conn_of_op(op);
    struct http_server *server = conn->server;
    RM_ASSERT(conn->recv_armed);
    if (!(flags & IORING_CQE_F_MORE)) {
        conn->recv_armed = false;
    }
    if (result > 0) {
        RM_ASSERT(flags & IORING_CQE_F_BUFFER);
        uint16_t id = (uint16_t)(flags >> IORING_CQE_BUFFER_SHIFT);
        http_conn_receive(conn, bufring_buffer(&server->bufring, id), (size_t)result);
        bufring_recycle(&server->bufring, id);
    } else if (result == 0 || result != -ENOBUFS) {
        /* End of stream or a socket error. An answer still being computed is dropped
         * when it arrives; the connection is released then. */
        http_conn_close(conn);
    }
    if (conn->state == HTTP_CONN_CLOSING) {
        if (conn->recv_armed) {
            return;
        }
        http_conn_release_if_done(conn);
        return;
    }
    if (!conn->recv_armed) {
        http_conn_arm_recv(conn);
    }
}

static void http_conn_arm_recv(struct http_conn *conn)
{
    RM_ASSERT(!conn->recv_armed);
    RM_ASSERT(conn->fd >= 0);
    struct io_uring_sqe *sqe = reactor_sqe(conn->server->reactor, &conn->recv_op);
    io_uring_prep_recv_multishot(sqe, conn->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = HTTP_BUFFER_GROUP;
    conn->recv_armed = true;
}

static void http_conn_open(struct http_server *server, int fd)
{
    struct http_conn *conn = server->free_list;
    uint32_t core = http_server_core(server);
    if (conn == NULL || !server->accepting) {
        close(fd); /* a socket close never blocks */
        metrics_add(server->config.metrics, core, server->metrics.rejected, 1);
        return;
    }
    RM_ASSERT(conn->state == HTTP_CONN_FREE);
    server->free_list = conn->next_free;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    conn->fd = fd;
    conn->state = HTTP_CONN_OPEN;
    conn->timer_kind = HTTP_TIMER_NONE;
    conn->recv_armed = false;
    conn->send_in_flight = false;
    conn->close_after_send = false;
    conn->exchange_active = false;
    conn->processing = false;
    conn->retired_output = NULL;
    http_reader_init(&conn->reader, &server->config.limits);
    memset(&conn->output, 0, sizeof(conn->output));
    server->open_count++;
    metrics_add(server->config.metrics, core, server->metrics.open, 1);
    metrics_add(server->config.metrics, core, server->metrics.accepted, 1);
    http_conn_arm_recv(conn);
    http_conn_timer_update(conn);
}

static void http_server_arm_accept(struct http_server *server)
{
    struct io_uring_sqe *sqe = reactor_sqe(server->reactor, &server->accept_op);
    io_uring_prep_multishot_accept(sqe, server->listen_fd, NULL, NULL,
                                   SOCK_NONBLOCK | SOCK_CLOEXEC);
}

static void http_server_on_accept(struct reactor_op *op, int result, uint32_t flags)
{
    struct http_server *server = op->context;
    if (result >= 0) {
        http_conn_open(server, result);
    }
    if (!(flags & IORING_CQE_F_MORE)) {
        /* Multishot accept ends on errors such as EMFILE; the next tick re-arms it, which
         * keeps serving once descriptors free up without spinning on the error. */
        server->accept_rearm = true;
    }
}

/* ---- requests ---- */

static bool http_conn_can_take_request(const struct http_conn *conn)
{
    return conn->state == HTTP_CONN_OPEN && !conn->exchange_active &&
           !conn->close_after_send && conn->output.length < HTTP_OUTPUT_HIGH_WATER;
}

static void http_conn_start_exchange(struct http_conn *conn, struct http_request *request)
{
    struct http_server *server = conn->server;
    RM_ASSERT(request != NULL);
    http_conn_open_exchange(conn, request);
    /* Each request starts its own header/body phases. */
    http_conn_timer_set(conn, HTTP_TIMER_NONE);
    if (!server->accepting) {
        conn->close_after_send = true; /* draining: this is the connection's last answer */
    }
    server->config.route(server->config.route_context, &conn->exchange);
}

static void http_conn_process(struct http_conn *conn)
{
    if (conn->processing) {
        return; /* an answer given inside a handler: the loop below picks up from there */
    }
    conn->processing = true;
    while (http_conn_can_take_request(conn)) {
        struct http_request *request = NULL;
        struct http_error error = {0};
        int result = http_reader_next(&conn->reader, &request, &error);
        if (result == 0) {
            if (http_reader_take_continue(&conn->reader) &&
                (http_conn_reserve(conn, HTTP_CONTINUE_BYTES) != 0 ||
                 http_response_append_continue(&conn->output) != 0)) {
                http_conn_close(conn);
            }
            break;
        }
        if (result < 0) {
            http_conn_fail(conn, error.status, "invalid_request", error.message);
            break;
        }
        http_conn_start_exchange(conn, request);
    }
    conn->processing = false;
    http_conn_flush(conn);
}

const struct http_request *http_exchange_request(const struct http_exchange *exchange)
{
    RM_ASSERT(exchange->conn->exchange_active);
    return exchange->request;
}

struct reactor *http_exchange_reactor(const struct http_exchange *exchange)
{
    return exchange->conn->server->reactor;
}

void http_exchange_set_route(struct http_exchange *exchange, uint32_t route)
{
    RM_ASSERT(route < exchange->conn->server->config.route_count);
    exchange->route = route;
}

static void http_server_refresh_date(struct http_server *server)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME_COARSE, &now);
    if (now.tv_sec != server->date_seconds) {
        server->date_seconds = now.tv_sec;
        http_response_format_date(server->date, now.tv_sec);
    }
}

/* Makes room for `extra` more output bytes. A send in flight reads from the buffer (the
 * kernel may retry it later from the same address), so a buffer that must move then is kept
 * until that send completes instead of being freed. Returns 0 or -ENOMEM. */
static int http_conn_reserve(struct http_conn *conn, size_t extra)
{
    struct http_output *output = &conn->output;
    RM_ASSERT(output->length <= output->capacity);
    if (output->capacity - output->length >= extra) {
        return 0;
    }
    size_t capacity = output->capacity == 0 ? HTTP_OUTPUT_INITIAL_BYTES : output->capacity;
    while (capacity - output->length < extra) {
        capacity *= 2;
    }
    char *data = rm_malloc(capacity);
    if (data == NULL) {
        return -ENOMEM;
    }
    if (output->length > 0) {
        memcpy(data, output->data, output->length);
    }
    if (conn->send_in_flight && conn->retired_output == NULL) {
        conn->retired_output = output->data;
    } else {
        rm_free(output->data); /* no send reads from it: one in flight reads the retired one */
    }
    output->data = data;
    output->capacity = capacity;
    RM_ASSERT(output->capacity - output->length >= extra);
    return 0;
}

/* Copies bytes into room made by http_conn_reserve. */
static void http_conn_put(struct http_conn *conn, const char *data, size_t length)
{
    struct http_output *output = &conn->output;
    RM_ASSERT(output->capacity - output->length >= length);
    if (length > 0) {
        memcpy(output->data + output->length, data, length);
        output->length += length;
    }
}

/* Completes the exchange (metrics, the request's bytes released). Returns false when the
 * connection is no longer open: the client left while the answer was computed, and the
 * answer is dropped. */
static bool http_exchange_finish(struct http_exchange *exchange, int status)
{
    struct http_conn *conn = exchange->conn;
    struct http_server *server = conn->server;
    RM_ASSERT(conn->exchange_active);
    RM_ASSERT(!exchange->streaming);
    conn->exchange_active = false;
    RM_ASSERT(server->active_exchanges > 0);
    server->active_exchanges--;
    http_metrics_count(server, exchange->route, status,
                       reactor_clock_ns() - exchange->start_ns);
    if (exchange->request != NULL) {
        http_reader_consume(&conn->reader);
    }
    if (conn->state != HTTP_CONN_OPEN) {
        http_conn_release_if_done(conn);
        return false;
    }
    return true;
}

void http_exchange_respond(struct http_exchange *exchange, int status, const char *content_type,
                           const struct http_response_header *headers, size_t header_count,
                           const char *body, size_t body_length)
{
    struct http_conn *conn = exchange->conn;
    RM_ASSERT(conn->exchange_active);
    RM_ASSERT(status >= 200 && status <= 599);
    const struct http_request *request = exchange->request;
    bool keep_alive = request != NULL && request->keep_alive && !conn->close_after_send;
    struct http_response_head head = {
        .status = status,
        .date = conn->server->date,
        .content_type = content_type,
        .headers = headers,
        .header_count = header_count,
        .body_length = body_length,
        .keep_alive = keep_alive && request->version_minor == 0,
        .close = !keep_alive,
        .omit_body = request != NULL && request->method == HTTP_METHOD_HEAD,
    };
    if (!keep_alive) {
        conn->close_after_send = true;
    }
    if (!http_exchange_finish(exchange, status)) {
        return;
    }
    /* With a send in flight the room is made here, so that http_response_append never moves
     * the buffer that send reads from. */
    bool reserved = !conn->send_in_flight ||
                    http_conn_reserve(conn, HTTP_RESPONSE_HEAD_MAX + body_length) == 0;
    if (!reserved || http_response_append(&conn->output, &head, body) != 0) {
        http_conn_close(conn);
        return;
    }
    http_conn_process(conn);
}

/* An error's type is a short identifier chosen by the code; the message may be longer and is
 * cut (as escaped text) at HTTP_ERROR_MESSAGE_MAX bytes. */
#define HTTP_ERROR_TYPE_MAX 64
#define HTTP_ERROR_MESSAGE_MAX 1023

void http_exchange_respond_error(struct http_exchange *exchange, int status, const char *type,
                                 const char *message)
{
    static const char start[] = "{\"error\":{\"type\":\"";
    static const char middle[] = "\",\"message\":\"";
    static const char end[] = "\"}}";
    RM_ASSERT(status >= 400);
    RM_ASSERT(type != NULL && message != NULL);
    size_t type_length = strlen(type);
    RM_ASSERT(type_length <= HTTP_ERROR_TYPE_MAX);
    char body[sizeof(start) + HTTP_ERROR_TYPE_MAX + sizeof(middle) + HTTP_ERROR_MESSAGE_MAX +
              sizeof(end)];
    size_t length = 0;
    memcpy(body, start, sizeof(start) - 1);
    length += sizeof(start) - 1;
    memcpy(body + length, type, type_length);
    length += type_length;
    memcpy(body + length, middle, sizeof(middle) - 1);
    length += sizeof(middle) - 1;
    length += http_response_json_escape(body + length, HTTP_ERROR_MESSAGE_MAX + 1, message);
    memcpy(body + length, end, sizeof(end) - 1);
    length += sizeof(end) - 1;
    RM_ASSERT(length < sizeof(body));
    http_exchange_respond(exchange, status, "application/json", NULL, 0, body, length);
}

/* ---- streamed responses ---- */

/* Fails a stream whose client does not keep up: the connection closes at once, and a send
 * stuck on the full socket is cancelled so the connection can be released. */
static void http_conn_abort(struct http_conn *conn)
{
    RM_ASSERT(conn->state == HTTP_CONN_OPEN);
    http_conn_close(conn);
    if (conn->send_in_flight) {
        struct io_uring_sqe *sqe = reactor_sqe(conn->server->reactor, NULL);
        io_uring_prep_cancel(sqe, &conn->send_op, 0);
    }
}

int http_exchange_stream_begin(struct http_exchange *exchange, int status,
                               const char *content_type,
                               const struct http_response_header *headers,
                               size_t header_count)
{
    struct http_conn *conn = exchange->conn;
    const struct http_request *request = exchange->request;
    RM_ASSERT(conn->exchange_active);
    RM_ASSERT(!exchange->streaming);
    RM_ASSERT(status >= 200 && status <= 599);
    RM_ASSERT(status != 204 && status != 304);
    RM_ASSERT(request != NULL);
    exchange->streaming = true;
    exchange->stream_status = status;
    exchange->stream_chunked = request->version_minor >= 1;
    exchange->stream_omit_body = request->method == HTTP_METHOD_HEAD;
    bool keep_alive = exchange->stream_chunked && request->keep_alive && !conn->close_after_send;
    if (!keep_alive) {
        conn->close_after_send = true;
    }
    if (conn->state != HTTP_CONN_OPEN) {
        return -EPIPE;
    }
    struct http_response_head head = {
        .status = status,
        .date = conn->server->date,
        .content_type = content_type,
        .headers = headers,
        .header_count = header_count,
        .framing = exchange->stream_chunked ? HTTP_FRAMING_CHUNKED : HTTP_FRAMING_CLOSE,
        .close = !keep_alive,
    };
    char text[HTTP_RESPONSE_HEAD_MAX];
    size_t length = http_response_head_write(text, sizeof(text), &head);
    if (length == 0 || http_conn_reserve(conn, length) != 0) {
        http_conn_abort(conn);
        return -ENOMEM;
    }
    http_conn_put(conn, text, length);
    http_conn_flush(conn);
    return 0;
}

int http_exchange_stream_write(struct http_exchange *exchange, const char *data, size_t length)
{
    struct http_conn *conn = exchange->conn;
    RM_ASSERT(conn->exchange_active);
    RM_ASSERT(exchange->streaming);
    RM_ASSERT(data != NULL || length == 0);
    if (conn->state != HTTP_CONN_OPEN) {
        return -EPIPE;
    }
    if (length == 0 || exchange->stream_omit_body) {
        return 0; /* an empty chunk would end the body */
    }
    char size_line[HTTP_RESPONSE_HEX_MAX + 2];
    size_t prefix = 0;
    if (exchange->stream_chunked) {
        prefix = http_response_hex(size_line, length);
        memcpy(size_line + prefix, "\r\n", 2);
        prefix += 2;
    }
    size_t suffix = exchange->stream_chunked ? 2 : 0;
    size_t unsent = conn->output.length - conn->output.sent;
    if (length > HTTP_STREAM_UNSENT_MAX || unsent + prefix + length + suffix >
                                               HTTP_STREAM_UNSENT_MAX) {
        http_conn_abort(conn);
        return -ENOBUFS;
    }
    if (http_conn_reserve(conn, prefix + length + suffix) != 0) {
        http_conn_abort(conn);
        return -ENOMEM;
    }
    http_conn_put(conn, size_line, prefix);
    http_conn_put(conn, data, length);
    http_conn_put(conn, "\r\n", suffix);
    http_conn_flush(conn);
    return 0;
}

void http_exchange_stream_end(struct http_exchange *exchange)
{
    static const char last_chunk[] = "0\r\n\r\n";
    struct http_conn *conn = exchange->conn;
    RM_ASSERT(conn->exchange_active);
    RM_ASSERT(exchange->streaming);
    exchange->streaming = false;
    if (!http_exchange_finish(exchange, exchange->stream_status)) {
        return;
    }
    if (exchange->stream_chunked && !exchange->stream_omit_body) {
        if (http_conn_reserve(conn, sizeof(last_chunk) - 1) != 0) {
            http_conn_close(conn);
            return;
        }
        http_conn_put(conn, last_chunk, sizeof(last_chunk) - 1);
    }
    http_conn_process(conn); /* the next pipelined request, then the send */
}

/* ---- server ---- */

static void http_server_tick(struct reactor *reactor, void *context)
{
    struct http_server *server = context;
    RM_ASSERT(server->reactor == reactor);
    uint64_t now_ns = reactor_now_ns(reactor);
    http_server_refresh_date(server);
    if (server->accept_rearm && server->accepting) {
        server->accept_rearm = false;
        http_server_arm_accept(server);
    }
    timer_queue_expire(&server->header_queue, now_ns);
    timer_queue_expire(&server->body_queue, now_ns);
    timer_queue_expire(&server->idle_queue, now_ns);
    timer_queue_expire(&server->linger_queue, now_ns);
}

static int http_server_init_conns(struct http_server *server)
{
    uint32_t count = server->config.max_connections;
    server->conns = rm_calloc(count, sizeof(*server->conns));
    if (server->conns == NULL) {
        return -ENOMEM;
    }
    for (uint32_t i = count; i-- > 0;) {
        struct http_conn *conn = &server->conns[i];
        conn->server = server;
        conn->fd = -1;
        conn->state = HTTP_CONN_FREE;
        conn->recv_op = (struct reactor_op){http_conn_on_recv, conn};
        conn->send_op = (struct reactor_op){http_conn_on_send, conn};
        conn->close_op = (struct reactor_op){http_conn_on_close, conn};
        timer_entry_init(&conn->timer, http_conn_timer_expired);
        conn->next_free = server->free_list;
        server->free_list = conn;
    }
    return 0;
}

int http_server_create(struct reactor *reactor, int listen_fd,
                       const struct http_server_config *config, struct http_server **out)
{
    RM_ASSERT(reactor == reactor_current());
    RM_ASSERT(config->route != NULL && config->route_count >= 1);
    RM_ASSERT(config->max_connections >= 1);
    struct http_server *server = rm_calloc(1, sizeof(*server));
    if (server == NULL) {
        return -ENOMEM;
    }
    server->reactor = reactor;
    server->config = *config;
    server->listen_fd = listen_fd;
    server->accepting = true;
    server->accept_op = (struct reactor_op){http_server_on_accept, server};
    timer_queue_init(&server->header_queue, (uint64_t)config->header_timeout_ms * 1000000ull);
    timer_queue_init(&server->body_queue, (uint64_t)config->body_timeout_ms * 1000000ull);
    timer_queue_init(&server->idle_queue, (uint64_t)config->idle_timeout_ms * 1000000ull);
    timer_queue_init(&server->linger_queue, (uint64_t)HTTP_LINGER_MS * 1000000ull);
    server->date_seconds = -1;
    http_server_refresh_date(server);
    int result = http_metrics_init(server);
    if (result == 0) {
        result = http_server_init_conns(server);
    }
    if (result == 0) {
        result = bufring_init(&server->bufring, reactor_ring(reactor), HTTP_BUFFER_GROUP);
    }
    if (result != 0) {
        rm_free(server->conns);
        rm_free(server);
        return result;
    }
    reactor_hook_add(reactor, (struct reactor_hook){http_server_tick, server});
    http_server_arm_accept(server);
    *out = server;
    return 0;
}

void http_server_stop_accepting(struct http_server *server)
{
    RM_ASSERT(server->reactor == reactor_current());
    if (!server->accepting) {
        return;
    }
    server->accepting = false;
    struct io_uring_sqe *sqe = reactor_sqe(server->reactor, NULL);
    io_uring_prep_cancel(sqe, &server->accept_op, 0);
    for (uint32_t i = 0; i < server->config.max_connections; i++) {
        struct http_conn *conn = &server->conns[i];
        if (conn->state != HTTP_CONN_OPEN) {
            continue;
        }
        bool idle = !conn->exchange_active && conn->output.sent == conn->output.length &&
                    http_reader_state(&conn->reader) == HTTP_READER_IDLE;
        if (idle) {
            http_conn_close(conn);
        } else if (conn->exchange_active || conn->output.sent < conn->output.length) {
            conn->close_after_send = true;
        }
    }
}

bool http_server_busy(const struct http_server *server) { return server->open_count > 0; }

struct http_server_stats http_server_stats(const struct http_server *server)
{
    return (struct http_server_stats){server->open_count, server->active_exchanges};
}

void http_server_destroy(struct http_server *server)
{
    if (server == NULL) {
        return;
    }
    RM_ASSERT(server->reactor == reactor_current());
    for (uint32_t i = 0; i < server->config.max_connections; i++) {
        struct http_conn *conn = &server->conns[i];
        if (conn->state != HTTP_CONN_FREE) {
            if (conn->fd >= 0) {
                close(conn->fd);
            }
            http_reader_free(&conn->reader);
            http_output_free(&conn->output);
            rm_free(conn->retired_output);
        }
    }
    bufring_free(&server->bufring, reactor_ring(server->reactor));
    rm_free(server->conns);
    rm_free(server);
}
