/* Open-loop HTTP/1.1 load generator. Unlike a closed loop (wrk, state-bench), request i is
 * due at start + i/rate whatever the server does, and its latency is measured from that
 * intended time, so a slow server shows up as queueing instead of as fewer requests
 * (no coordinated omission). One epoll thread drives a lazily grown pool of keep-alive
 * connections, one request in flight on each; a due request waits for a free connection,
 * and that wait is part of its latency. Latencies go into a log-linear histogram (128
 * sub-buckets per power of two: relative error below 1%).
 *
 * usage: openloop --url http://HOST:PORT/PATH --rate R --duration S [options]
 * (openloop --help lists them). {n} in the path, the headers or the body becomes the
 * request's sequence number, {k} becomes n modulo --keys.
 * prints: one line per second on stderr, the final report on stdout (--json: one object). */

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define OPENLOOP_CONNECTIONS_MAX 10000u
#define OPENLOOP_HEADERS_MAX 32u
#define OPENLOOP_HEAD_BYTES_MAX 8192u    /* request line + headers, before expansion */
#define OPENLOOP_BODY_BYTES_MAX 65536u   /* request body template */
#define OPENLOOP_DIGITS_MAX 20u          /* a uint64_t in decimal: what one {n} may become */
#define OPENLOOP_INPUT_BYTES 8192u       /* per connection; a response head must fit */
#define OPENLOOP_EVENTS_MAX 1024u
#define OPENLOOP_READS_PER_EVENT 64u     /* fairness: one busy socket cannot starve the rest */
#define OPENLOOP_STATUS_CODES 1000u
#define OPENLOOP_REQUESTS_MAX (1ull << 32)
#define OPENLOOP_SUB_BITS 7u
#define OPENLOOP_SUB_COUNT (1u << OPENLOOP_SUB_BITS) /* 128: bucket width < 1% of its value */
#define OPENLOOP_EXPONENTS 40u                       /* values up to 2^47 us */
#define OPENLOOP_BUCKETS (OPENLOOP_SUB_COUNT * (OPENLOOP_EXPONENTS + 1))
#define OPENLOOP_NS_PER_S 1000000000ull

_Static_assert(OPENLOOP_INPUT_BYTES >= 1024, "a response head needs room");
_Static_assert(OPENLOOP_SUB_BITS + OPENLOOP_EXPONENTS < 64, "bucket values fit in 64 bits");

/* Always on, like the project's rm_assert: a load generator that lies is worse than none. */
#define openloop_assert(expression)                                                         \
    do {                                                                                    \
        if (!(expression)) {                                                                \
            fprintf(stderr, "openloop: %s:%d: assertion failed: %s\n", __FILE__, __LINE__,  \
                    #expression);                                                           \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

enum openloop_state { OPENLOOP_CLOSED, OPENLOOP_CONNECTING, OPENLOOP_IDLE, OPENLOOP_BUSY };

enum openloop_phase {
    OPENLOOP_PHASE_HEAD,
    OPENLOOP_PHASE_LENGTH,
    OPENLOOP_PHASE_CHUNK_SIZE,
    OPENLOOP_PHASE_CHUNK_DATA,
    OPENLOOP_PHASE_CHUNK_END,
    OPENLOOP_PHASE_TRAILER,
    OPENLOOP_PHASE_UNTIL_CLOSE,
};

enum openloop_parse_result { OPENLOOP_MALFORMED = -1, OPENLOOP_PARTIAL = 0, OPENLOOP_DONE = 1 };

struct openloop_options {
    const char *url;
    const char *method;
    const char *body_path;
    const char *body_text;
    const char *headers[OPENLOOP_HEADERS_MAX];
    uint32_t header_count;
    double rate;
    double duration_s;
    double drain_s;
    uint32_t connections;
    uint64_t keys;
    uint32_t threads;
    bool json;
};

struct openloop_histogram {
    uint64_t counts[OPENLOOP_BUCKETS];
    uint64_t count;
    uint64_t max_us;
};

struct openloop_stats {
    uint64_t sent;
    uint64_t completed;
    uint64_t connect_errors;
    uint64_t malformed;
    uint64_t timeouts;
    uint64_t unsent;
    uint64_t opened;
    uint64_t classes[10];
    uint64_t codes[OPENLOOP_STATUS_CODES];
    struct openloop_histogram total;
    struct openloop_histogram success; /* 2xx answers only: what admitted work waited */
    struct openloop_histogram window;  /* this second only: the running p99 */
};

struct openloop_connection {
    int fd;
    enum openloop_state state;
    enum openloop_phase phase;
    bool writing;     /* EPOLLOUT is armed */
    bool close_after; /* the answer said Connection: close, or is framed by the close */
    int status;
    uint64_t sequence;
    uint64_t intended_ns;
    uint64_t remaining; /* body or chunk bytes still to skip */
    char *output;
    size_t output_length;
    size_t output_sent;
    size_t input_length;
    char input[OPENLOOP_INPUT_BYTES];
};

struct openloop {
    struct openloop_options options;
    struct sockaddr_storage address;
    socklen_t address_length;
    char head[OPENLOOP_HEAD_BYTES_MAX];
    size_t head_length;
    char body[OPENLOOP_BODY_BYTES_MAX];
    size_t body_length;
    bool has_body;
    char *body_scratch;      /* one expanded body, before its length is known */
    size_t request_capacity; /* the largest expanded request */
    int epoll_fd;
    struct openloop_connection *connections;
    uint32_t idle[OPENLOOP_CONNECTIONS_MAX];
    uint32_t idle_count;
    uint32_t closed[OPENLOOP_CONNECTIONS_MAX];
    uint32_t closed_count;
    uint64_t intended; /* rate x duration */
    uint64_t due;      /* requests whose intended start has passed */
    uint64_t assigned; /* requests handed to a connection; [assigned, due) wait */
    uint64_t in_flight;
    uint64_t start_ns;
    uint64_t last_completion_ns;
    struct openloop_stats stats;
};

static uint64_t openloop_now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * OPENLOOP_NS_PER_S + (uint64_t)now.tv_nsec;
}

static void openloop_fatal(const char *message, const char *detail)
{
    fprintf(stderr, "openloop: %s%s%s\n", message, detail ? ": " : "", detail ? detail : "");
    exit(2);
}

/* ---- histogram ---- */

static uint32_t openloop_bucket(uint64_t value_us)
{
    if (value_us < OPENLOOP_SUB_COUNT) {
        return (uint32_t)value_us;
    }
    uint32_t shift = 63u - (uint32_t)__builtin_clzll(value_us) - OPENLOOP_SUB_BITS;
    if (shift >= OPENLOOP_EXPONENTS) {
        return OPENLOOP_BUCKETS - 1;
    }
    uint32_t bucket = (shift + 1) * OPENLOOP_SUB_COUNT + (uint32_t)(value_us >> shift) -
                      OPENLOOP_SUB_COUNT;
    openloop_assert(bucket >= OPENLOOP_SUB_COUNT);
    openloop_assert(bucket < OPENLOOP_BUCKETS);
    return bucket;
}

/* The highest value a bucket holds: percentiles are reported conservatively. */
static uint64_t openloop_bucket_high(uint32_t bucket)
{
    openloop_assert(bucket < OPENLOOP_BUCKETS);
    if (bucket < OPENLOOP_SUB_COUNT) {
        return bucket;
    }
    uint32_t shift = bucket / OPENLOOP_SUB_COUNT - 1;
    uint64_t sub = bucket % OPENLOOP_SUB_COUNT + OPENLOOP_SUB_COUNT;
    return ((sub + 1) << shift) - 1;
}

static void openloop_histogram_add(struct openloop_histogram *histogram, uint64_t value_us)
{
    histogram->counts[openloop_bucket(value_us)]++;
    histogram->count++;
    if (value_us > histogram->max_us) {
        histogram->max_us = value_us;
    }
}

static uint64_t openloop_percentile(const struct openloop_histogram *histogram, double quantile)
{
    openloop_assert(quantile > 0.0 && quantile <= 1.0);
    if (histogram->count == 0) {
        return 0;
    }
    uint64_t target = (uint64_t)(quantile * (double)histogram->count + 0.999999);
    uint64_t seen = 0;
    for (uint32_t bucket = 0; bucket < OPENLOOP_BUCKETS; bucket++) {
        seen += histogram->counts[bucket];
        if (seen >= target) {
            uint64_t high = openloop_bucket_high(bucket);
            return high < histogram->max_us ? high : histogram->max_us;
        }
    }
    return histogram->max_us;
}

/* ---- request building ---- */

/* Copies a template, replacing {n} by the sequence number and {k} by n modulo --keys. The
 * capacity was sized at startup from the number of '{' in the templates. */
static size_t openloop_expand(const char *template, size_t length, uint64_t sequence,
                              uint64_t keys, char *output, size_t capacity)
{
    size_t at = 0;
    for (size_t i = 0; i < length;) {
        char name = i + 2 < length && template[i] == '{' && template[i + 2] == '}'
                        ? template[i + 1] : 0;
        if (name == 'n' || name == 'k') {
            uint64_t value = name == 'n' ? sequence : sequence % keys;
            at += (size_t)snprintf(output + at, capacity - at, "%llu",
                                   (unsigned long long)value);
            i += 3;
        } else {
            output[at++] = template[i++];
        }
        openloop_assert(at < capacity);
    }
    return at;
}

static size_t openloop_build(struct openloop *run, uint64_t sequence, char *output)
{
    const uint64_t keys = run->options.keys;
    size_t body_length = openloop_expand(run->body, run->body_length, sequence, keys,
                                         run->body_scratch, run->request_capacity);
    size_t at = openloop_expand(run->head, run->head_length, sequence, keys, output,
                                run->request_capacity);
    size_t room = run->request_capacity - at;
    int written = run->has_body ? snprintf(output + at, room, "Content-Length: %zu\r\n\r\n",
                                           body_length)
                                : snprintf(output + at, room, "\r\n");
    openloop_assert(written > 0 && (size_t)written + body_length < room);
    at += (size_t)written;
    memcpy(output + at, run->body_scratch, body_length);
    return at + body_length;
}

/* ---- response parsing: frames the answer only, the body is skipped ---- */

static void openloop_consume(struct openloop_connection *connection, size_t length)
{
    openloop_assert(length <= connection->input_length);
    memmove(connection->input, connection->input + length, connection->input_length - length);
    connection->input_length -= length;
}

static bool openloop_header_is(const char *line, size_t length, const char *name)
{
    size_t name_length = strlen(name);
    return length > name_length && strncasecmp(line, name, name_length) == 0;
}

/* Reads the framing headers of one head line; false when a value is invalid. */
static bool openloop_parse_header(struct openloop_connection *connection, const char *line,
                                  size_t length, bool *chunked, int64_t *content_length)
{
    const char *value = memchr(line, ':', length);
    if (value == NULL) {
        return false;
    }
    size_t value_length = length - (size_t)(value + 1 - line);
    char copy[128];
    snprintf(copy, sizeof(copy), "%.*s", (int)value_length, value + 1);
    if (openloop_header_is(line, length, "content-length:")) {
        char *end = NULL;
        unsigned long long parsed = strtoull(copy, &end, 10);
        while (end != NULL && (*end == ' ' || *end == '\t')) {
            end++;
        }
        if (end == copy || end == NULL || *end != '\0' || strchr(copy, '-') != NULL) {
            return false;
        }
        *content_length = (int64_t)parsed;
    } else if (openloop_header_is(line, length, "transfer-encoding:")) {
        *chunked = strcasestr(copy, "chunked") != NULL;
    } else if (openloop_header_is(line, length, "connection:")) {
        connection->close_after = connection->close_after || strcasestr(copy, "close");
    }
    return true;
}

/* Picks the body framing once the head is read (RFC 9112 section 6.3, minus HEAD requests). */
static enum openloop_parse_result openloop_frame(struct openloop_connection *connection,
                                                 bool chunked, int64_t content_length)
{
    int status = connection->status;
    if (status == 204 || status == 304) {
        return OPENLOOP_DONE;
    }
    if (chunked) {
        connection->phase = OPENLOOP_PHASE_CHUNK_SIZE;
    } else if (content_length >= 0) {
        connection->phase = OPENLOOP_PHASE_LENGTH;
        connection->remaining = (uint64_t)content_length;
        if (content_length == 0) {
            return OPENLOOP_DONE;
        }
    } else {
        connection->phase = OPENLOOP_PHASE_UNTIL_CLOSE;
        connection->close_after = true;
    }
    return OPENLOOP_PARTIAL;
}

static enum openloop_parse_result openloop_parse_head(struct openloop_connection *connection)
{
    const char *input = connection->input;
    const char *end = memmem(input, connection->input_length, "\r\n\r\n", 4);
    if (end == NULL) {
        return connection->input_length == OPENLOOP_INPUT_BYTES ? OPENLOOP_MALFORMED
                                                                : OPENLOOP_PARTIAL;
    }
    if (connection->input_length < 12 || memcmp(input, "HTTP/1.", 7) != 0 ||
        !isdigit((unsigned char)input[9]) || !isdigit((unsigned char)input[10]) ||
        !isdigit((unsigned char)input[11]) || input[9] == '0') {
        return OPENLOOP_MALFORMED;
    }
    connection->status = (input[9] - '0') * 100 + (input[10] - '0') * 10 + (input[11] - '0');
    bool chunked = false;
    int64_t content_length = -1;
    /* The status line's CRLF may be the first half of the terminator (no header lines). */
    const char *line = (const char *)memmem(input, (size_t)(end + 2 - input), "\r\n", 2) + 2;
    while (line < end + 2) {
        const char *line_end = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
        if (!openloop_parse_header(connection, line, (size_t)(line_end - line), &chunked,
                                   &content_length)) {
            return OPENLOOP_MALFORMED;
        }
        line = line_end + 2;
    }
    openloop_consume(connection, (size_t)(end + 4 - input));
    if (connection->status < 200) {
        /* An interim answer (100 Continue): the real one follows. */
        connection->close_after = false;
        return OPENLOOP_PARTIAL;
    }
    return openloop_frame(connection, chunked, content_length);
}

/* One line of the chunked framing (a size line or a trailer line); NULL until it is whole. */
static const char *openloop_line(struct openloop_connection *connection, size_t *length)
{
    const char *end = memmem(connection->input, connection->input_length, "\r\n", 2);
    if (end == NULL) {
        return NULL;
    }
    *length = (size_t)(end - connection->input);
    return connection->input;
}

static enum openloop_parse_result openloop_parse_chunk(struct openloop_connection *connection)
{
    size_t length = 0;
    const char *line = openloop_line(connection, &length);
    if (line == NULL) {
        return connection->input_length == OPENLOOP_INPUT_BYTES ? OPENLOOP_MALFORMED
                                                                : OPENLOOP_PARTIAL;
    }
    if (connection->phase == OPENLOOP_PHASE_CHUNK_END || connection->phase ==
        OPENLOOP_PHASE_TRAILER) {
        bool done = connection->phase == OPENLOOP_PHASE_TRAILER && length == 0;
        if (connection->phase == OPENLOOP_PHASE_CHUNK_END && length != 0) {
            return OPENLOOP_MALFORMED;
        }
        openloop_consume(connection, length + 2);
        if (connection->phase == OPENLOOP_PHASE_CHUNK_END) {
            connection->phase = OPENLOOP_PHASE_CHUNK_SIZE;
        }
        return done ? OPENLOOP_DONE : OPENLOOP_PARTIAL;
    }
    if (length == 0 || !isxdigit((unsigned char)line[0]) || length > 64) {
        return OPENLOOP_MALFORMED;
    }
    uint64_t size = strtoull(line, NULL, 16); /* extensions after ';' are ignored */
    openloop_consume(connection, length + 2);
    connection->remaining = size;
    connection->phase = size == 0 ? OPENLOOP_PHASE_TRAILER : OPENLOOP_PHASE_CHUNK_DATA;
    return OPENLOOP_PARTIAL;
}

/* Skips body bytes; true when the counted part is over. */
static bool openloop_skip(struct openloop_connection *connection)
{
    size_t take = connection->input_length;
    if (take > connection->remaining) {
        take = (size_t)connection->remaining;
    }
    openloop_consume(connection, take);
    connection->remaining -= take;
    return connection->remaining == 0;
}

/* Advances the framing over what is buffered. Each step consumes input or returns. */
static enum openloop_parse_result openloop_parse(struct openloop_connection *connection)
{
    for (uint32_t step = 0; step < OPENLOOP_INPUT_BYTES; step++) {
        size_t before = connection->input_length;
        enum openloop_phase phase = connection->phase;
        enum openloop_parse_result result = OPENLOOP_PARTIAL;
        if (phase == OPENLOOP_PHASE_HEAD) {
            result = openloop_parse_head(connection);
        } else if (phase == OPENLOOP_PHASE_LENGTH) {
            return openloop_skip(connection) ? OPENLOOP_DONE : OPENLOOP_PARTIAL;
        } else if (phase == OPENLOOP_PHASE_CHUNK_DATA) {
            if (openloop_skip(connection)) {
                connection->phase = OPENLOOP_PHASE_CHUNK_END;
            }
        } else if (phase == OPENLOOP_PHASE_UNTIL_CLOSE) {
            openloop_consume(connection, connection->input_length);
            return OPENLOOP_PARTIAL;
        } else {
            result = openloop_parse_chunk(connection);
        }
        if (result != OPENLOOP_PARTIAL) {
            return result;
        }
        if (connection->input_length == before && connection->phase == phase) {
            return OPENLOOP_PARTIAL; /* nothing more can be read from what is buffered */
        }
    }
    return OPENLOOP_PARTIAL;
}

/* ---- connections ---- */

static uint64_t openloop_intended_ns(const struct openloop *run, uint64_t sequence)
{
    return run->start_ns + (uint64_t)((double)sequence * 1e9 / run->options.rate);
}

static void openloop_watch(struct openloop *run, struct openloop_connection *connection,
                           int operation, bool writing)
{
    uint32_t events = EPOLLIN | (writing ? EPOLLOUT : 0u);
    struct epoll_event event = {.events = events, .data.ptr = connection};
    if (epoll_ctl(run->epoll_fd, operation, connection->fd, &event) != 0) {
        openloop_fatal("epoll_ctl", strerror(errno));
    }
    connection->writing = writing;
}

static void openloop_release(struct openloop *run, struct openloop_connection *connection)
{
    openloop_assert(connection->fd >= 0);
    openloop_assert(run->closed_count < run->options.connections);
    close(connection->fd); /* also removes it from the epoll set */
    connection->fd = -1;
    connection->state = OPENLOOP_CLOSED;
    connection->input_length = 0;
    run->closed[run->closed_count++] = (uint32_t)(connection - run->connections);
}

/* Closes a connection; the request on it, if any, failed with `error` (a counter). */
static void openloop_close(struct openloop *run, struct openloop_connection *connection,
                           uint64_t *error)
{
    openloop_assert(connection->state != OPENLOOP_CLOSED);
    bool had_request = connection->state == OPENLOOP_BUSY ||
                       connection->state == OPENLOOP_CONNECTING;
    openloop_assert(!had_request || run->in_flight > 0);
    if (had_request) {
        run->in_flight--;
        (*error)++;
    } else if (connection->state == OPENLOOP_IDLE) {
        for (uint32_t i = 0; i < run->idle_count; i++) {
            if (run->idle[i] == (uint32_t)(connection - run->connections)) {
                run->idle[i] = run->idle[--run->idle_count];
                break;
            }
        }
    }
    openloop_release(run, connection);
}

static bool openloop_open(struct openloop *run, struct openloop_connection *connection)
{
    int fd = socket(run->address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&run->address, run->address_length) != 0 &&
        errno != EINPROGRESS) {
        close(fd);
        return false;
    }
    connection->fd = fd;
    connection->state = OPENLOOP_CONNECTING;
    connection->input_length = 0;
    run->stats.opened++;
    openloop_watch(run, connection, EPOLL_CTL_ADD, true);
    return true;
}

/* Writes what is left of the request; false when the socket failed. */
static bool openloop_write(struct openloop *run, struct openloop_connection *connection)
{
    openloop_assert(connection->state == OPENLOOP_BUSY);
    while (connection->output_sent < connection->output_length) {
        ssize_t sent = send(connection->fd, connection->output + connection->output_sent,
                            connection->output_length - connection->output_sent,
                            MSG_NOSIGNAL);
        if (sent < 0 && errno == EAGAIN) {
            if (!connection->writing) {
                openloop_watch(run, connection, EPOLL_CTL_MOD, true);
            }
            return true;
        }
        if (sent <= 0) {
            return false;
        }
        connection->output_sent += (size_t)sent;
    }
    if (connection->writing) {
        openloop_watch(run, connection, EPOLL_CTL_MOD, false);
    }
    run->stats.sent++;
    return true;
}

/* Hands request `sequence` to an idle or a closed connection (which it opens). */
static void openloop_assign(struct openloop *run, struct openloop_connection *connection,
                            uint64_t sequence)
{
    openloop_assert(connection->state == OPENLOOP_IDLE ||
                    connection->state == OPENLOOP_CLOSED);
    connection->sequence = sequence;
    connection->intended_ns = openloop_intended_ns(run, sequence);
    connection->output_length = openloop_build(run, sequence, connection->output);
    connection->output_sent = 0;
    connection->phase = OPENLOOP_PHASE_HEAD;
    connection->status = 0;
    connection->close_after = false;
    run->in_flight++;
    if (connection->state == OPENLOOP_CLOSED) {
        if (!openloop_open(run, connection)) {
            run->in_flight--;
            run->stats.connect_errors++;
            run->closed[run->closed_count++] = (uint32_t)(connection - run->connections);
        }
        return; /* the request goes out once the connect completes */
    }
    connection->state = OPENLOOP_BUSY;
    if (!openloop_write(run, connection)) {
        openloop_close(run, connection, &run->stats.connect_errors);
    }
}

/* Gives waiting requests, oldest first, to idle connections, opening new ones up to the max. */
static void openloop_dispatch(struct openloop *run)
{
    while (run->assigned < run->due) {
        uint32_t index;
        if (run->idle_count > 0) {
            index = run->idle[--run->idle_count];
        } else if (run->closed_count > 0) {
            index = run->closed[--run->closed_count];
        } else {
            return; /* every connection is busy: the request waits, and its latency grows */
        }
        openloop_assign(run, &run->connections[index], run->assigned++);
    }
}

static void openloop_finish(struct openloop *run, struct openloop_connection *connection,
                            uint64_t now_ns)
{
    openloop_assert(connection->state == OPENLOOP_BUSY);
    openloop_assert(connection->status >= 100 && connection->status < 1000);
    uint64_t latency_us = (now_ns - connection->intended_ns) / 1000;
    openloop_histogram_add(&run->stats.total, latency_us);
    openloop_histogram_add(&run->stats.window, latency_us);
    if (connection->status / 100 == 2) {
        openloop_histogram_add(&run->stats.success, latency_us);
    }
    run->stats.codes[connection->status]++;
    run->stats.classes[connection->status / 100]++;
    run->stats.completed++;
    run->last_completion_ns = now_ns;
    run->in_flight--;
    if (connection->close_after || connection->input_length > 0) {
        /* Leftover bytes without a request in flight mean the framing was lost. */
        run->stats.malformed += connection->input_length > 0;
        openloop_release(run, connection);
        return;
    }
    connection->state = OPENLOOP_IDLE;
    run->idle[run->idle_count++] = (uint32_t)(connection - run->connections);
}

static void openloop_on_end_of_stream(struct openloop *run,
                                      struct openloop_connection *connection)
{
    if (connection->state == OPENLOOP_BUSY &&
        connection->phase == OPENLOOP_PHASE_UNTIL_CLOSE) {
        openloop_finish(run, connection, openloop_now_ns());
        if (connection->state == OPENLOOP_CLOSED) {
            return;
        }
    }
    /* Busy: the server dropped the request. Idle: it closed a keep-alive connection. */
    openloop_close(run, connection, &run->stats.connect_errors);
}

static void openloop_on_readable(struct openloop *run, struct openloop_connection *connection)
{
    for (uint32_t read = 0; read < OPENLOOP_READS_PER_EVENT; read++) {
        ssize_t got = recv(connection->fd, connection->input + connection->input_length,
                           OPENLOOP_INPUT_BYTES - connection->input_length, 0);
        if (got < 0 && errno == EAGAIN) {
            return;
        }
        if (got <= 0) {
            openloop_on_end_of_stream(run, connection);
            return;
        }
        connection->input_length += (size_t)got;
        if (connection->state != OPENLOOP_BUSY) {
            openloop_close(run, connection, &run->stats.malformed); /* unasked-for bytes */
            return;
        }
        enum openloop_parse_result result = openloop_parse(connection);
        if (result == OPENLOOP_MALFORMED) {
            openloop_close(run, connection, &run->stats.malformed);
            return;
        }
        if (result == OPENLOOP_DONE) {
            openloop_finish(run, connection, openloop_now_ns());
            return;
        }
    }
}

static void openloop_on_connected(struct openloop *run, struct openloop_connection *connection)
{
    int error = 0;
    socklen_t length = sizeof(error);
    if (getsockopt(connection->fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0) {
        openloop_close(run, connection, &run->stats.connect_errors);
        return;
    }
    connection->state = OPENLOOP_BUSY;
    if (!openloop_write(run, connection)) {
        openloop_close(run, connection, &run->stats.connect_errors);
    }
}

static void openloop_on_event(struct openloop *run, struct openloop_connection *connection,
                              uint32_t events)
{
    if (connection->state == OPENLOOP_CLOSED) {
        return;
    }
    if (connection->state == OPENLOOP_CONNECTING) {
        openloop_on_connected(run, connection);
        return;
    }
    bool unsent = connection->output_sent < connection->output_length;
    if ((events & EPOLLOUT) && connection->state == OPENLOOP_BUSY && unsent &&
        !openloop_write(run, connection)) {
        openloop_close(run, connection, &run->stats.connect_errors);
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        openloop_on_readable(run, connection);
    }
}

/* ---- the run ---- */

static void openloop_tick(struct openloop *run, uint64_t now_ns)
{
    const struct openloop_stats *stats = &run->stats;
    fprintf(stderr,
            "openloop: %5.1fs sent %llu done %llu 2xx %llu 4xx %llu 5xx %llu errors %llu "
            "waiting %llu in-flight %llu conns %llu p99 %llu us\n",
            (double)(now_ns - run->start_ns) / 1e9, (unsigned long long)stats->sent,
            (unsigned long long)stats->completed, (unsigned long long)stats->classes[2],
            (unsigned long long)stats->classes[4], (unsigned long long)stats->classes[5],
            (unsigned long long)(stats->connect_errors + stats->malformed),
            (unsigned long long)(run->due - run->assigned),
            (unsigned long long)run->in_flight,
            (unsigned long long)(run->options.connections - run->closed_count),
            (unsigned long long)openloop_percentile(&stats->window, 0.99));
    memset(&run->stats.window, 0, sizeof(run->stats.window));
}

static void openloop_wait(struct openloop *run, uint64_t now_ns, uint64_t wake_ns)
{
    struct epoll_event events[OPENLOOP_EVENTS_MAX];
    uint64_t wait_ns = wake_ns > now_ns ? wake_ns - now_ns : 0;
    struct timespec timeout = {.tv_sec = (time_t)(wait_ns / OPENLOOP_NS_PER_S),
                               .tv_nsec = (long)(wait_ns % OPENLOOP_NS_PER_S)};
    /* epoll_pwait2: a millisecond timeout is too coarse when requests are 20 us apart. */
    int ready = epoll_pwait2(run->epoll_fd, events, OPENLOOP_EVENTS_MAX, &timeout, NULL);
    if (ready < 0 && errno != EINTR) {
        openloop_fatal("epoll_pwait2", strerror(errno));
    }
    for (int i = 0; i < ready; i++) {
        openloop_on_event(run, events[i].data.ptr, events[i].events);
    }
}

static void openloop_run(struct openloop *run)
{
    run->start_ns = openloop_now_ns();
    uint64_t schedule_end_ns = run->start_ns + (uint64_t)(run->options.duration_s * 1e9);
    uint64_t hard_stop_ns = schedule_end_ns + (uint64_t)(run->options.drain_s * 1e9);
    uint64_t tick_ns = run->start_ns + OPENLOOP_NS_PER_S;
    for (;;) {
        uint64_t now_ns = openloop_now_ns();
        while (run->due < run->intended && openloop_intended_ns(run, run->due) <= now_ns) {
            run->due++;
        }
        openloop_dispatch(run);
        if (now_ns >= tick_ns) {
            openloop_tick(run, now_ns);
            tick_ns += OPENLOOP_NS_PER_S;
        }
        bool idle = run->due == run->intended && run->assigned == run->due &&
                    run->in_flight == 0;
        if (idle || now_ns >= hard_stop_ns) {
            break;
        }
        uint64_t wake_ns = run->due < run->intended ? openloop_intended_ns(run, run->due)
                                                    : hard_stop_ns;
        wake_ns = wake_ns < tick_ns ? wake_ns : tick_ns;
        openloop_wait(run, now_ns, wake_ns < hard_stop_ns ? wake_ns : hard_stop_ns);
    }
    /* The hard stop: whatever did not complete by now timed out, sent or not. */
    run->stats.unsent = run->intended - run->assigned;
    run->stats.timeouts = run->in_flight + run->stats.unsent;
}

/* ---- the report ---- */

static const double openloop_quantiles[] = {0.5, 0.9, 0.99, 0.999};
static const char *const openloop_quantile_names[] = {"p50", "p90", "p99", "p99.9"};

static double openloop_achieved_rate(const struct openloop *run)
{
    double elapsed_s = run->options.duration_s;
    if (run->last_completion_ns > run->start_ns) {
        double last_s = (double)(run->last_completion_ns - run->start_ns) / 1e9;
        elapsed_s = last_s > elapsed_s ? last_s : elapsed_s;
    }
    return (double)run->stats.completed / elapsed_s;
}

static void openloop_print_codes(const struct openloop_stats *stats, bool json)
{
    bool first = true;
    for (uint32_t code = 0; code < OPENLOOP_STATUS_CODES; code++) {
        if (stats->codes[code] == 0) {
            continue;
        }
        printf(json ? "%s\"%u\":%llu" : "%s%u=%llu", first ? "" : (json ? "," : " "), code,
               (unsigned long long)stats->codes[code]);
        first = false;
    }
}

static void openloop_print_latency(const struct openloop_histogram *histogram, bool json)
{
    for (uint32_t i = 0; i < 4; i++) {
        printf(json ? "\"%s\":%llu," : " %s %llu", openloop_quantile_names[i],
               (unsigned long long)openloop_percentile(histogram, openloop_quantiles[i]));
    }
    printf(json ? "\"max\":%llu" : " max %llu", (unsigned long long)histogram->max_us);
}

static void openloop_report_text(const struct openloop *run)
{
    const struct openloop_stats *stats = &run->stats;
    printf("openloop %s %s at %.0f req/s for %.1f s, up to %u connections (%llu opened)\n",
           run->options.method, run->options.url, run->options.rate, run->options.duration_s,
           run->options.connections, (unsigned long long)stats->opened);
    printf("requests: intended %llu, sent %llu, completed %llu, timeouts %llu "
           "(never sent %llu), connection errors %llu, malformed %llu\n",
           (unsigned long long)run->intended, (unsigned long long)stats->sent,
           (unsigned long long)stats->completed, (unsigned long long)stats->timeouts,
           (unsigned long long)stats->unsent, (unsigned long long)stats->connect_errors,
           (unsigned long long)stats->malformed);
    printf("status: 1xx %llu, 2xx %llu, 3xx %llu, 4xx %llu, 5xx %llu; codes: ",
           (unsigned long long)stats->classes[1], (unsigned long long)stats->classes[2],
           (unsigned long long)stats->classes[3], (unsigned long long)stats->classes[4],
           (unsigned long long)stats->classes[5]);
    openloop_print_codes(stats, false);
    printf("\nachieved: %.1f req/s\n", openloop_achieved_rate(run));
    printf("latency us (from intended start):");
    openloop_print_latency(&stats->total, false);
    printf("\nlatency us of 2xx answers:");
    openloop_print_latency(&stats->success, false);
    printf("\n");
}

static void openloop_report_json(const struct openloop *run)
{
    const struct openloop_stats *stats = &run->stats;
    printf("{\"url\":\"%s\",\"method\":\"%s\",\"rate\":%.3f,\"duration_s\":%.3f,"
           "\"connections_max\":%u,\"connections_opened\":%llu,\"intended\":%llu,"
           "\"sent\":%llu,\"completed\":%llu,\"timeouts\":%llu,\"unsent\":%llu,"
           "\"connect_errors\":%llu,\"malformed\":%llu,",
           run->options.url, run->options.method, run->options.rate, run->options.duration_s,
           run->options.connections, (unsigned long long)stats->opened,
           (unsigned long long)run->intended, (unsigned long long)stats->sent,
           (unsigned long long)stats->completed, (unsigned long long)stats->timeouts,
           (unsigned long long)stats->unsent, (unsigned long long)stats->connect_errors,
           (unsigned long long)stats->malformed);
    printf("\"classes\":{\"1xx\":%llu,\"2xx\":%llu,\"3xx\":%llu,\"4xx\":%llu,\"5xx\":%llu},"
           "\"codes\":{", (unsigned long long)stats->classes[1],
           (unsigned long long)stats->classes[2], (unsigned long long)stats->classes[3],
           (unsigned long long)stats->classes[4], (unsigned long long)stats->classes[5]);
    openloop_print_codes(stats, true);
    printf("},\"achieved_rate\":%.1f,\"latency_us\":{", openloop_achieved_rate(run));
    openloop_print_latency(&stats->total, true);
    printf("},\"latency_2xx_us\":{");
    openloop_print_latency(&stats->success, true);
    printf("}}\n");
}

/* ---- setup ---- */

static const char openloop_usage[] =
    "usage: openloop --url http://HOST:PORT/PATH --rate R --duration S [options]\n"
    "  --method M          default GET\n"
    "  --body FILE         request body template (at most 64 KiB)\n"
    "  --body-text TEXT    the same, inline\n"
    "  --header 'K: V'     repeatable (at most 32)\n"
    "  --keys N            {k} is n modulo N (default 1000); {n} is the sequence number\n"
    "  --connections C     keep-alive connections, opened as needed (default 256, max 10000)\n"
    "  --drain S           grace after the schedule; then outstanding requests are timeouts"
    " (default 2)\n"
    "  --threads 1         only 1 is supported\n"
    "  --json              final report as one JSON object\n"
    "{n} and {k} are replaced in the path, the headers and the body. Latencies (us) are\n"
    "measured from each request's intended start: start + n / rate.\n";

static void openloop_parse_url(struct openloop *run, char *path, size_t path_capacity,
                               char *host, size_t host_capacity)
{
    const char *url = run->options.url;
    if (strncmp(url, "http://", 7) != 0) {
        openloop_fatal("only http:// URLs are supported", url);
    }
    const char *authority = url + 7;
    const char *slash = strchr(authority, '/');
    size_t authority_length = slash ? (size_t)(slash - authority) : strlen(authority);
    snprintf(path, path_capacity, "%s", slash ? slash : "/");
    snprintf(host, host_capacity, "%.*s", (int)authority_length, authority);
    char name[256];
    snprintf(name, sizeof(name), "%s", host);
    char *colon = strrchr(name, ':');
    const char *port = "80";
    if (colon != NULL) {
        *colon = '\0';
        port = colon + 1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *found = NULL;
    int error = getaddrinfo(name, port, &hints, &found);
    if (error != 0) {
        openloop_fatal(gai_strerror(error), name);
    }
    memcpy(&run->address, found->ai_addr, found->ai_addrlen);
    run->address_length = found->ai_addrlen;
    freeaddrinfo(found);
}

static void openloop_load_body(struct openloop *run)
{
    const struct openloop_options *options = &run->options;
    if (options->body_text != NULL) {
        run->body_length = strlen(options->body_text);
        if (run->body_length > sizeof(run->body)) {
            openloop_fatal("--body-text is over 64 KiB", NULL);
        }
        memcpy(run->body, options->body_text, run->body_length);
    } else if (options->body_path != NULL) {
        FILE *file = fopen(options->body_path, "rb");
        if (file == NULL) {
            openloop_fatal(options->body_path, strerror(errno));
        }
        run->body_length = fread(run->body, 1, sizeof(run->body), file);
        bool longer = fgetc(file) != EOF;
        fclose(file);
        if (longer) {
            openloop_fatal("--body file is over 64 KiB", options->body_path);
        }
    }
    const char *method = options->method;
    run->has_body = options->body_text != NULL || options->body_path != NULL ||
                    strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                    strcmp(method, "PATCH") == 0;
}

static void openloop_build_head(struct openloop *run)
{
    char path[2048], host[256];
    openloop_parse_url(run, path, sizeof(path), host, sizeof(host));
    size_t capacity = sizeof(run->head), at = 0;
    at += (size_t)snprintf(run->head, capacity, "%s %s HTTP/1.1\r\n", run->options.method, path);
    bool has_host = false;
    for (uint32_t i = 0; i < run->options.header_count; i++) {
        const char *header = run->options.headers[i];
        if (strchr(header, ':') == NULL || strpbrk(header, "\r\n") != NULL) {
            openloop_fatal("a --header must be 'Name: value' on one line", header);
        }
        has_host = has_host || strncasecmp(header, "host:", 5) == 0;
        at += (size_t)snprintf(run->head + at, at < capacity ? capacity - at : 0, "%s\r\n",
                               header);
    }
    if (!has_host) {
        at += (size_t)snprintf(run->head + at, at < capacity ? capacity - at : 0,
                               "Host: %s\r\n", host);
    }
    if (at >= capacity) {
        openloop_fatal("the request line and headers are over 8 KiB", NULL);
    }
    run->head_length = at;
}

/* Sizes every buffer once: each '{' may become OPENLOOP_DIGITS_MAX digits. */
static void openloop_allocate(struct openloop *run)
{
    size_t braces = 0;
    for (size_t i = 0; i < run->head_length; i++) {
        braces += run->head[i] == '{';
    }
    for (size_t i = 0; i < run->body_length; i++) {
        braces += run->body[i] == '{';
    }
    run->request_capacity = run->head_length + run->body_length +
                            braces * OPENLOOP_DIGITS_MAX + 64;
    uint32_t count = run->options.connections;
    run->connections = calloc(count, sizeof(*run->connections));
    char *outputs = calloc(count, run->request_capacity);
    run->body_scratch = malloc(run->request_capacity);
    if (run->connections == NULL || outputs == NULL || run->body_scratch == NULL) {
        openloop_fatal("out of memory", NULL);
    }
    for (uint32_t i = 0; i < count; i++) {
        run->connections[i].fd = -1;
        run->connections[i].output = outputs + (size_t)i * run->request_capacity;
        run->closed[i] = count - 1 - i; /* connection 0 opens first */
    }
    run->closed_count = count;
}

/* 10000 sockets need more than the usual soft limit of 1024 descriptors. */
static void openloop_raise_file_limit(uint32_t connections)
{
    struct rlimit limit;
    getrlimit(RLIMIT_NOFILE, &limit);
    rlim_t needed = (rlim_t)connections + 64;
    if (limit.rlim_cur < needed) {
        limit.rlim_cur = needed < limit.rlim_max ? needed : limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    if (limit.rlim_cur < needed) {
        openloop_fatal("the open files limit (ulimit -n) is below --connections + 64", NULL);
    }
}

static double openloop_number(const char *text, const char *name)
{
    char *end = NULL;
    double value = strtod(text, &end);
    if (end == text || *end != '\0' || !(value >= 0.0)) {
        openloop_fatal("not a non-negative number", name);
    }
    return value;
}

static void openloop_option(struct openloop_options *options, int option, const char *value)
{
    if (option == 'u') {
        options->url = value;
    } else if (option == 'm') {
        options->method = value;
    } else if (option == 'b') {
        options->body_path = value;
    } else if (option == 't') {
        options->body_text = value;
    } else if (option == 'H') {
        if (options->header_count == OPENLOOP_HEADERS_MAX) {
            openloop_fatal("more than 32 --header", NULL);
        }
        options->headers[options->header_count++] = value;
    } else if (option == 'r') {
        options->rate = openloop_number(value, "--rate");
    } else if (option == 'd') {
        options->duration_s = openloop_number(value, "--duration");
    } else if (option == 'D') {
        options->drain_s = openloop_number(value, "--drain");
    } else if (option == 'c') {
        options->connections = (uint32_t)openloop_number(value, "--connections");
    } else if (option == 'k') {
        options->keys = (uint64_t)openloop_number(value, "--keys");
    } else if (option == 'T') {
        options->threads = (uint32_t)openloop_number(value, "--threads");
    } else if (option == 'j') {
        options->json = true;
    } else {
        fputs(openloop_usage, stderr);
        exit(option == 'h' ? 0 : 2);
    }
}

static void openloop_parse_options(struct openloop_options *options, int argc, char **argv)
{
    static const struct option long_options[] = {
        {"url", required_argument, NULL, 'u'},         {"method", required_argument, NULL, 'm'},
        {"body", required_argument, NULL, 'b'},        {"body-text", required_argument, NULL, 't'},
        {"header", required_argument, NULL, 'H'},      {"rate", required_argument, NULL, 'r'},
        {"duration", required_argument, NULL, 'd'},    {"drain", required_argument, NULL, 'D'},
        {"connections", required_argument, NULL, 'c'}, {"keys", required_argument, NULL, 'k'},
        {"threads", required_argument, NULL, 'T'},     {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},              {NULL, 0, NULL, 0},
    };
    *options = (struct openloop_options){.method = "GET", .drain_s = 2.0, .connections = 256,
                                         .keys = 1000, .threads = 1};
    int option;
    while ((option = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        openloop_option(options, option, optarg);
    }
    if (options->url == NULL || options->rate <= 0.0 || options->duration_s <= 0.0) {
        openloop_fatal("--url, --rate and --duration are required (--help)", NULL);
    }
    if (options->connections == 0 || options->connections > OPENLOOP_CONNECTIONS_MAX ||
        options->keys == 0 || options->threads != 1 ||
        (options->body_path != NULL && options->body_text != NULL)) {
        openloop_fatal("--connections 1..10000, --keys >= 1, --threads 1, one body only", NULL);
    }
    if (options->rate * options->duration_s >= (double)OPENLOOP_REQUESTS_MAX) {
        openloop_fatal("rate x duration is over 2^32 requests", NULL);
    }
}

int main(int argc, char **argv)
{
    static struct openloop run; /* large (fixed arrays): static, not on the stack */
    openloop_parse_options(&run.options, argc, argv);
    openloop_raise_file_limit(run.options.connections);
    openloop_load_body(&run);
    openloop_build_head(&run);
    openloop_allocate(&run);
    run.intended = (uint64_t)(run.options.rate * run.options.duration_s);
    run.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (run.epoll_fd < 0) {
        openloop_fatal("epoll_create1", strerror(errno));
    }
    openloop_run(&run);
    openloop_assert(run.stats.completed + run.stats.connect_errors + run.stats.malformed +
                        run.stats.timeouts >= run.intended);
    if (run.options.json) {
        openloop_report_json(&run);
    } else {
        openloop_report_text(&run);
    }
    return 0;
}
