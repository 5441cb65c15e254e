/* Closed-loop state benchmark client: N connections driven by one epoll thread, each with one
 * request in flight, doing compare-and-swap writes (or reads) on keys of its own, against
 * Ringmaster's HTTP state API or against Redis with the usual Lua CAS script (EVALSHA). The
 * same client code drives both, so the client's own cost is the same on each side, and one
 * thread with non-blocking sockets keeps that cost low enough for the server to saturate.
 *
 * usage: state-bench http|redis HOST PORT cas|get CONNECTIONS SECONDS [SHA]
 * prints: ops/s, p50, p99, p999 (microseconds) and the error count. */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BENCH_CONNECTIONS_MAX 1024
#define BENCH_KEYS_PER_CONNECTION 16
#define BENCH_SAMPLES_MAX (1u << 22)
#define BENCH_BUFFER_BYTES 8192

struct bench_config {
    bool redis;
    bool cas;
    const char *host;
    uint16_t port;
    uint32_t connections;
    uint32_t seconds;
    const char *sha;
};

struct bench_worker {
    const struct bench_config *config;
    uint32_t index;
    uint64_t operations;
    uint64_t errors;
    uint64_t versions[BENCH_KEYS_PER_CONNECTION];
    uint32_t *samples_us;
    uint32_t sample_count;
    uint32_t sample_capacity;
    int fd;
    uint64_t started_ns;
    char buffer[BENCH_BUFFER_BYTES];
    size_t buffered;
};

static int bench_stop;

static uint64_t bench_now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

static int bench_connect(const struct bench_config *config)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(config->port)};
    inet_pton(AF_INET, config->host, &address.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0) {
        fprintf(stderr, "state-bench: connect %s:%u: %s\n", config->host, config->port,
                strerror(errno));
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static bool bench_send(int fd, const char *data, size_t length)
{
    while (length > 0) {
        ssize_t sent = send(fd, data, length, MSG_NOSIGNAL);
        if (sent <= 0) {
            return false;
        }
        data += sent;
        length -= (size_t)sent;
    }
    return true;
}

static void bench_consume(struct bench_worker *worker, size_t length)
{
    memmove(worker->buffer, worker->buffer + length, worker->buffered - length);
    worker->buffered -= length;
}

static size_t bench_http_complete(const char *buffer, size_t length)
{
    const char *end = memmem(buffer, length, "\r\n\r\n", 4);
    if (end == NULL) {
        return 0;
    }
    const char *field = memmem(buffer, (size_t)(end - buffer), "Content-Length: ", 16);
    size_t body = field != NULL ? strtoull(field + 16, NULL, 10) : 0;
    size_t total = (size_t)(end + 4 - buffer) + body;
    return total <= length ? total : 0;
}

/* One RESP reply: a simple line (+ - :) or a bulk string ($n). */
static size_t bench_redis_complete(const char *buffer, size_t length)
{
    const char *line_end = memmem(buffer, length, "\r\n", 2);
    if (line_end == NULL) {
        return 0;
    }
    size_t head = (size_t)(line_end + 2 - buffer);
    if (buffer[0] != '$') {
        return head;
    }
    long bulk = strtol(buffer + 1, NULL, 10);
    size_t total = bulk < 0 ? head : head + (size_t)bulk + 2;
    return total <= length ? total : 0;
}

static const char bench_value[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static int bench_http_request(struct bench_worker *worker, uint32_t key, char *request)
{
    const struct bench_config *config = worker->config;
    if (!config->cas) {
        return sprintf(request, "GET /v1/state/bench/c%u-k%u HTTP/1.1\r\nHost: b\r\n\r\n",
                       worker->index, key);
    }
    char precondition[64];
    if (worker->versions[key] == 0) {
        strcpy(precondition, "If-None-Match: *");
    } else {
        sprintf(precondition, "If-Match: \"%llu\"", (unsigned long long)worker->versions[key]);
    }
    return sprintf(request,
                   "PUT /v1/state/bench/c%u-k%u HTTP/1.1\r\nHost: b\r\n%s\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   worker->index, key, precondition, sizeof(bench_value) - 1, bench_value);
}

static bool bench_http_reply(struct bench_worker *worker, uint32_t key, const char *reply)
{
    int status = atoi(reply + 9);
    if (!worker->config->cas) {
        return status == 200 || status == 404;
    }
    const char *etag = strstr(reply, "ETag: \"");
    if ((status != 200 && status != 201) || etag == NULL) {
        return false;
    }
    worker->versions[key] = strtoull(etag + 7, NULL, 10);
    return true;
}

static int bench_redis_request(struct bench_worker *worker, uint32_t key, char *request)
{
    char name[64], expected[32];
    int name_length = sprintf(name, "bench:c%u-k%u", worker->index, key);
    if (!worker->config->cas) {
        return sprintf(request, "*3\r\n$4\r\nHGET\r\n$%d\r\n%s\r\n$1\r\nd\r\n", name_length,
                       name);
    }
    int expected_length = sprintf(expected, "%llu", (unsigned long long)worker->versions[key]);
    return sprintf(request,
                   "*6\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$1\r\n1\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                   "$%zu\r\n%s\r\n",
                   worker->config->sha, name_length, name, expected_length, expected,
                   sizeof(bench_value) - 1, bench_value);
}

static bool bench_redis_reply(struct bench_worker *worker, uint32_t key, const char *reply)
{
    if (!worker->config->cas) {
        return reply[0] == '$';
    }
    if (reply[0] != ':' || reply[1] == '-') {
        return false; /* an error, or a conflict (negative current version) */
    }
    worker->versions[key] = strtoull(reply + 1, NULL, 10);
    return true;
}

static void bench_sample(struct bench_worker *worker, uint64_t started_ns)
{
    uint64_t elapsed_us = (bench_now_ns() - started_ns) / 1000;
    if (worker->sample_count < worker->sample_capacity) {
        worker->samples_us[worker->sample_count++] =
            elapsed_us > UINT32_MAX ? UINT32_MAX : (uint32_t)elapsed_us;
    }
}

/* Sends the connection's next request; false when the socket failed. */
static bool bench_issue(struct bench_worker *worker)
{
    const struct bench_config *config = worker->config;
    char request[1024];
    uint32_t key = (uint32_t)(worker->operations + worker->errors) % BENCH_KEYS_PER_CONNECTION;
    int length = config->redis ? bench_redis_request(worker, key, request)
                               : bench_http_request(worker, key, request);
    worker->started_ns = bench_now_ns();
    return bench_send(worker->fd, request, (size_t)length);
}

/* Reads what arrived; on a whole reply, accounts it and issues the next request. Returns
 * false when the connection is finished (error or stop). */
static bool bench_on_readable(struct bench_worker *worker)
{
    const struct bench_config *config = worker->config;
    ssize_t got = recv(worker->fd, worker->buffer + worker->buffered,
                       sizeof(worker->buffer) - worker->buffered, 0);
    if (got <= 0) {
        return got < 0 && errno == EAGAIN;
    }
    worker->buffered += (size_t)got;
    size_t length = config->redis ? bench_redis_complete(worker->buffer, worker->buffered)
                                  : bench_http_complete(worker->buffer, worker->buffered);
    if (length == 0) {
        return worker->buffered < sizeof(worker->buffer);
    }
    uint32_t key = (uint32_t)(worker->operations + worker->errors) % BENCH_KEYS_PER_CONNECTION;
    worker->buffer[length - 1] = '\0';
    bool ok = config->redis ? bench_redis_reply(worker, key, worker->buffer)
                            : bench_http_reply(worker, key, worker->buffer);
    bench_consume(worker, length);
    bench_sample(worker, worker->started_ns);
    worker->operations += ok;
    worker->errors += !ok;
    return !bench_stop && bench_issue(worker);
}

static void bench_run(struct bench_worker *workers, const struct bench_config *config)
{
    int epoll_fd = epoll_create1(0);
    for (uint32_t i = 0; i < config->connections; i++) {
        workers[i].fd = bench_connect(config);
        struct epoll_event event = {.events = EPOLLIN, .data.ptr = &workers[i]};
        epoll_ctl(epoll_fd, EPOLL_CTL_ADD, workers[i].fd, &event);
        fcntl(workers[i].fd, F_SETFL, O_NONBLOCK);
        if (!bench_issue(&workers[i])) {
            workers[i].errors++;
        }
    }
    uint64_t deadline_ns = bench_now_ns() + (uint64_t)config->seconds * 1000000000ull;
    struct epoll_event events[BENCH_CONNECTIONS_MAX];
    while (bench_now_ns() < deadline_ns) {
        int ready = epoll_wait(epoll_fd, events, BENCH_CONNECTIONS_MAX, 100);
        for (int i = 0; i < ready; i++) {
            struct bench_worker *worker = events[i].data.ptr;
            if (!bench_on_readable(worker)) {
                worker->errors++;
                epoll_ctl(epoll_fd, EPOLL_CTL_DEL, worker->fd, NULL);
            }
        }
    }
    bench_stop = 1;
    for (uint32_t i = 0; i < config->connections; i++) {
        close(workers[i].fd);
    }
    close(epoll_fd);
}

static int bench_compare(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void bench_report(struct bench_worker *workers, const struct bench_config *config,
                         double elapsed_s)
{
    uint64_t operations = 0, errors = 0, count = 0;
    for (uint32_t i = 0; i < config->connections; i++) {
        operations += workers[i].operations;
        errors += workers[i].errors;
        count += workers[i].sample_count;
    }
    uint32_t *all = malloc(count * sizeof(uint32_t) + 1);
    uint64_t at = 0;
    for (uint32_t i = 0; i < config->connections; i++) {
        memcpy(all + at, workers[i].samples_us, workers[i].sample_count * sizeof(uint32_t));
        at += workers[i].sample_count;
    }
    qsort(all, count, sizeof(uint32_t), bench_compare);
    uint32_t p50 = count ? all[count / 2] : 0;
    uint32_t p99 = count ? all[count * 99 / 100] : 0;
    uint32_t p999 = count ? all[count * 999 / 1000] : 0;
    printf("%.0f %u %u %u %llu\n", (double)operations / elapsed_s, p50, p99, p999,
           (unsigned long long)errors);
    free(all);
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: state-bench http|redis HOST PORT cas|get CONNECTIONS SECONDS "
                        "[SHA]\nprints: ops/s p50_us p99_us p999_us errors\n");
        return 2;
    }
    struct bench_config config = {
        .redis = strcmp(argv[1], "redis") == 0,
        .host = argv[2],
        .port = (uint16_t)atoi(argv[3]),
        .cas = strcmp(argv[4], "cas") == 0,
        .connections = (uint32_t)atoi(argv[5]),
        .seconds = (uint32_t)atoi(argv[6]),
        .sha = argc > 7 ? argv[7] : "",
    };
    if (config.connections == 0 || config.connections > BENCH_CONNECTIONS_MAX ||
        (config.redis && config.cas && strlen(config.sha) != 40)) {
        fprintf(stderr, "state-bench: 1..%d connections; redis cas needs the script SHA\n",
                BENCH_CONNECTIONS_MAX);
        return 2;
    }
    static struct bench_worker workers[BENCH_CONNECTIONS_MAX];
    for (uint32_t i = 0; i < config.connections; i++) {
        workers[i].config = &config;
        workers[i].index = i;
        workers[i].sample_capacity = BENCH_SAMPLES_MAX / config.connections;
        workers[i].samples_us = malloc(workers[i].sample_capacity * sizeof(uint32_t));
    }
    uint64_t started_ns = bench_now_ns();
    bench_run(workers, &config);
    bench_report(workers, &config, (double)(bench_now_ns() - started_ns) / 1e9);
    return 0;
}
