/* Outbound client benchmark: the engine's http_client (net/http_client.h) driven on a real
 * reactor group against one upstream, the way the engine's proxy path uses it.
 *
 *   keepalive  (default) every reactor keeps `connections` requests in flight over as many
 *              pooled keep-alive connections; throughput and latency of the request path
 *   --handshakes full|resumed
 *              every request on a fresh connection (max_idle 0: nothing is pooled), so each
 *              https request is one TLS handshake; reports handshakes per second
 *
 * Full handshakes: the client's session cache (64 entries per client, keyed by host) cannot be
 * cleared or bypassed through the public API, and a client cannot be recreated per connection
 * (each http_client_create adds a reactor tick hook for good, REACTOR_HOOKS_MAX in all). So
 * `full` is measured against a server that issues no session ids (nginx ssl_session_cache
 * off): the client then never holds a session to offer and sends exactly the ClientHello of a
 * client without a cache. The mode is checked, not assumed: the run fails when the handshake
 * counters (tls_handshakes_total) disagree with it.
 *
 * Each request is re-issued from its callback until `seconds` have passed; requests that end
 * after the deadline are not counted. Output: one line of key=value pairs. */

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_samples.h"
#include "core/alloc.h"
#include "core/metrics.h"
#include "core/reactor.h"
#include "core/rm_assert.h"
#include "net/http_client.h"
#include "net/tls_trust.h"

#define CLIENT_BENCH_UPSTREAM "bench"
#define CLIENT_BENCH_SECONDS_MAX 60u
#define CLIENT_BENCH_SAMPLES_MAX (1u << 22) /* latencies kept per reactor; later ones dropped */
#define CLIENT_BENCH_QUEUE_DEPTH 512u       /* as the engine's */
#define CLIENT_BENCH_DRAIN_MS 5000u
#define CLIENT_BENCH_BODY_MAX (64u * 1024)
#define CLIENT_BENCH_DEFAULT_PATH "/v1/chat/completions"

static_assert(HTTP_CLIENT_CONNECTIONS_MAX <= HTTP_CLIENT_QUEUE_MAX,
              "every request in flight must fit the upstream's queue");

/* The first turn of a tool-calling chat, as bench/mock_ceiling.sh posts it. */
static const char client_bench_default_body[] =
    "{\"model\":\"gpt-mock\",\"messages\":[{\"role\":\"user\",\"content\":\"What is the weather "
    "in Paris?\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"search\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"query\":{\"type\":\"string\"}}}}}]}";


enum client_bench_mode {
    CLIENT_BENCH_KEEPALIVE,
    CLIENT_BENCH_FULL,
    CLIENT_BENCH_RESUMED,
};

struct client_bench_options {
    enum client_bench_mode mode;
    const char *mode_name;
    const char *url;
    const char *ca_file;   /* NULL: the system bundle (https only) */
    const char *get_path;  /* NULL: POST the body to CLIENT_BENCH_DEFAULT_PATH */
    const char *body_file; /* NULL: client_bench_default_body */
    uint32_t reactors;
    uint32_t connections; /* requests in flight per reactor */
    uint32_t seconds;
    bool pin;
};

struct client_bench_reactor;

struct client_bench_slot {
    struct http_client_request request;
    struct client_bench_reactor *owner;
    uint64_t issued_ns;
};

struct client_bench_reactor {
    struct client_bench *bench;
    struct http_client *client;
    struct client_bench_slot *slots;
    uint64_t *samples_ns;
    uint32_t sample_count;
    uint32_t active; /* slots with a request in flight */
    int upstream;
    uint64_t started_ns;
    uint64_t deadline_ns;
    uint64_t cpu_started_ns;
    uint64_t cpu_used_ns;
    uint64_t completed; /* requests that ended before the deadline, any outcome */
    uint64_t outcomes[HTTP_CLIENT_OUTCOME_COUNT];
    struct http_client_upstream_stats stats;
    char first_error[HTTP_CLIENT_ERROR_BYTES];
};

struct client_bench {
    struct client_bench_options options;
    struct tls_trust trust;
    struct metrics_registry *metrics;
    struct reactor_group *group;
    char *body;
    size_t body_length;
    struct http_client_header headers[3];
    uint32_t header_count;
    uint32_t reactors_done; /* atomic: the last reactor to finish stops the group */
    struct client_bench_reactor reactors[REACTOR_MAX];
};

static void client_bench_usage(FILE *out)
{
    fprintf(out,
            "usage: client-bench URL [options]\n"
            "Drives the engine's HTTP client against URL (http[s]://host:port) and prints one\n"
            "line of key=value results. Default: POST %s with a small chat body over\n"
            "keep-alive connections.\n"
            "options:\n"
            "  --reactors N          reactors, one client each (default 1)\n"
            "  --connections C       requests in flight per reactor (default 64, at most %u)\n"
            "  --seconds D           measured run time (default 5, at most %u)\n"
            "  --get PATH            GET PATH instead of posting the body\n"
            "  --body-file FILE      the POST body (default: a one-tool chat, %zu bytes)\n"
            "  --ca FILE             trust anchors for https (default: the system bundle)\n"
            "  --handshakes MODE     full | resumed: one request per fresh connection (https);\n"
            "                        full needs a server that issues no session ids, resumed\n"
            "                        one that resumes; the run fails when the counts disagree\n"
            "  --no-pin              do not pin reactors to CPUs\n"
            "exit status: 0 all requests succeeded, 1 some failed, 2 usage or setup error\n",
            CLIENT_BENCH_DEFAULT_PATH, HTTP_CLIENT_CONNECTIONS_MAX, CLIENT_BENCH_SECONDS_MAX,
            sizeof(client_bench_default_body) - 1);
}

static int client_bench_number(const char *text, uint64_t low, uint64_t high, uint32_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value < low ||
        value > high) {
        return -1;
    }
    *out = (uint32_t)value;
    return 0;
}

static int client_bench_mode_parse(const char *name, struct client_bench_options *options)
{
    if (strcmp(name, "full") == 0) {
        options->mode = CLIENT_BENCH_FULL;
    } else if (strcmp(name, "resumed") == 0) {
        options->mode = CLIENT_BENCH_RESUMED;
    } else {
        return -1;
    }
    options->mode_name = name;
    return 0;
}

/* One option with a value; returns -1 when the value is out of range. */
static int client_bench_option(int option, const char *text,
                               struct client_bench_options *options)
{
    switch (option) {
    case 'r':
        return client_bench_number(text, 1, REACTOR_MAX, &options->reactors);
    case 'c':
        return client_bench_number(text, 1, HTTP_CLIENT_CONNECTIONS_MAX,
                                   &options->connections);
    case 's':
        return client_bench_number(text, 1, CLIENT_BENCH_SECONDS_MAX, &options->seconds);
    case 'g':
        options->get_path = text;
        return text[0] == '/' ? 0 : -1;
    case 'b':
        options->body_file = text;
        return 0;
    case 'a':
        options->ca_file = text;
        return 0;
    default:
        RM_ASSERT(option == 'H');
        return client_bench_mode_parse(text, options);
    }
}

static int client_bench_check(const struct client_bench_options *options)
{
    bool https = strncmp(options->url, "https://", 8) == 0;
    if (!https && strncmp(options->url, "http://", 7) != 0) {
        fprintf(stderr, "client-bench: URL must start with http:// or https://: %s\n",
                options->url);
        return -1;
    }
    if (options->mode != CLIENT_BENCH_KEEPALIVE && !https) {
        fprintf(stderr, "client-bench: --handshakes needs an https:// URL\n");
        return -1;
    }
    if (options->get_path != NULL && options->body_file != NULL) {
        fprintf(stderr, "client-bench: --get sends no body; drop --body-file\n");
        return -1;
    }
    return 0;
}

static int client_bench_parse(int argc, char **argv, struct client_bench_options *options)
{
    static const struct option long_options[] = {
        {"reactors", required_argument, NULL, 'r'},
        {"connections", required_argument, NULL, 'c'},
        {"seconds", required_argument, NULL, 's'},
        {"get", required_argument, NULL, 'g'},
        {"body-file", required_argument, NULL, 'b'},
        {"ca", required_argument, NULL, 'a'},
        {"handshakes", required_argument, NULL, 'H'},
        {"no-pin", no_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *options = (struct client_bench_options){
        .mode = CLIENT_BENCH_KEEPALIVE, .mode_name = "keepalive", .reactors = 1,
        .connections = 64, .seconds = 5, .pin = true};
    int option;
    while ((option = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        if (option == 'n') {
            options->pin = false;
        } else if (option == 'h' || option == '?') {
            client_bench_usage(option == 'h' ? stdout : stderr);
            return -1;
        } else if (client_bench_option(option, optarg, options) != 0) {
            fprintf(stderr, "client-bench: invalid value '%s' for %s\n", optarg,
                    argv[optind - 1]);
            client_bench_usage(stderr);
            return -1;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "client-bench: %s\n", optind == argc ? "the URL is missing"
                                                             : "more than one URL given");
        client_bench_usage(stderr);
        return -1;
    }
    options->url = argv[optind];
    return client_bench_check(options);
}

/* CPU time of the calling thread: on a shared machine, wall time also counts the time other
 * processes held the core. */
static uint64_t client_bench_thread_cpu_ns(void)
{
    struct timespec now;
    int result = clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    RM_ASSERT(result == 0);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

static void client_bench_on_complete(struct http_client_request *request,
                                     const struct http_client_response *response);

/* Starts the slot's next request; a refusal at the call ends the slot. */
static bool client_bench_issue(struct client_bench_slot *slot)
{
    struct client_bench_reactor *self = slot->owner;
    const struct client_bench_options *options = &self->bench->options;
    struct http_client_request *request = &slot->request;
    memset(request, 0, sizeof(*request));
    request->upstream = (uint32_t)self->upstream;
    request->method = options->get_path != NULL ? "GET" : "POST";
    request->path = options->get_path != NULL ? options->get_path : CLIENT_BENCH_DEFAULT_PATH;
    request->headers = self->bench->headers;
    request->header_count = self->bench->header_count;
    if (options->get_path == NULL) {
        request->body = self->bench->body;
        request->body_length = self->bench->body_length;
    }
    request->on_complete = client_bench_on_complete;
    request->context = slot;
    slot->issued_ns = reactor_clock_ns();
    if (http_client_send(self->client, request) == 0) {
        return true;
    }
    self->outcomes[HTTP_CLIENT_REJECTED]++;
    if (self->first_error[0] == '\0') {
        snprintf(self->first_error, sizeof(self->first_error), "%s", request->error);
    }
    return false;
}

/* A slot stopped issuing; the reactor that retires its last slot of the whole group stops
 * the group. */
static void client_bench_slot_done(struct client_bench_reactor *self)
{
    RM_ASSERT(self->active > 0);
    RM_ASSERT(self->active <= self->bench->options.connections);
    if (--self->active > 0) {
        return;
    }
    self->cpu_used_ns = client_bench_thread_cpu_ns() - self->cpu_started_ns;
    self->stats = http_client_stats(self->client, (uint32_t)self->upstream);
    struct client_bench *bench = self->bench;
    uint32_t done = __atomic_add_fetch(&bench->reactors_done, 1, __ATOMIC_ACQ_REL);
    RM_ASSERT(done <= bench->options.reactors);
    if (done == bench->options.reactors) {
        reactor_group_stop(bench->group);
    }
}

static void client_bench_on_complete(struct http_client_request *request,
                                     const struct http_client_response *response)
{
    struct client_bench_slot *slot = request->context;
    struct client_bench_reactor *self = slot->owner;
    RM_ASSERT(request == &slot->request);
    RM_ASSERT(response->outcome < HTTP_CLIENT_OUTCOME_COUNT);
    uint64_t now_ns = reactor_clock_ns();
    if (now_ns <= self->deadline_ns) {
        self->completed++;
        self->outcomes[response->outcome]++;
        if (self->sample_count < CLIENT_BENCH_SAMPLES_MAX) {
            self->samples_ns[self->sample_count++] = now_ns - slot->issued_ns;
        }
    }
    if (response->outcome != HTTP_CLIENT_OK && self->first_error[0] == '\0' &&
        response->error[0] != '\0') {
        snprintf(self->first_error, sizeof(self->first_error), "%s", response->error);
    } else if (response->outcome != HTTP_CLIENT_OK && self->first_error[0] == '\0') {
        snprintf(self->first_error, sizeof(self->first_error), "HTTP status %d",
                 response->status);
    }
    if (now_ns >= self->deadline_ns || !client_bench_issue(slot)) {
        client_bench_slot_done(self);
    }
}

static struct http_client_upstream_config
client_bench_upstream_config(const struct client_bench_options *options)
{
    uint32_t connections = options->connections;
    return (struct http_client_upstream_config){
        .name = CLIENT_BENCH_UPSTREAM,
        .url = options->url,
        .max_connections = connections,
        .max_idle = options->mode == CLIENT_BENCH_KEEPALIVE ? connections : 0,
        .max_queued = connections,
        .idle_timeout_ms = 60000,
        .connect_timeout_ms = 5000,
        .first_byte_timeout_ms = 10000,
        .total_timeout_ms = 15000,
        .tls_timeout_ms = 0,
        .limits = {.max_status_line_bytes = 256, .max_header_bytes = 16384,
                   .max_headers = 64, .max_body_bytes = 1 << 20},
        .max_event_bytes = 4096,
    };
}

static int client_bench_setup(struct reactor *reactor, void *context)
{
    struct client_bench *bench = context;
    struct client_bench_reactor *self = &bench->reactors[reactor_index(reactor)];
    RM_ASSERT(reactor_index(reactor) < bench->options.reactors);
    struct http_client_options client_options = {
        .trust = bench->trust.count > 0 ? &bench->trust : NULL};
    int result = http_client_create(reactor, bench->metrics, &client_options, &self->client);
    if (result != 0) {
        fprintf(stderr, "client-bench: http_client_create: %s\n", strerror(-result));
        return result;
    }
    struct http_client_upstream_config config = client_bench_upstream_config(&bench->options);
    char error[512];
    self->upstream = http_client_add_upstream(self->client, &config, error, sizeof(error));
    if (self->upstream < 0) {
        fprintf(stderr, "client-bench: %s\n", error);
        return self->upstream;
    }
    self->started_ns = reactor_clock_ns();
    self->deadline_ns = self->started_ns + (uint64_t)bench->options.seconds * 1000000000ull;
    self->cpu_started_ns = client_bench_thread_cpu_ns();
    for (uint32_t i = 0; i < bench->options.connections; i++) {
        self->active++;
        if (!client_bench_issue(&self->slots[i])) {
            client_bench_slot_done(self);
        }
    }
    return 0;
}

static void client_bench_teardown(struct reactor *reactor, void *context)
{
    struct client_bench *bench = context;
    http_client_destroy(bench->reactors[reactor_index(reactor)].client);
}

static bool client_bench_busy(struct reactor *reactor, void *context)
{
    struct client_bench *bench = context;
    const struct client_bench_reactor *self = &bench->reactors[reactor_index(reactor)];
    return self->client != NULL && http_client_busy(self->client);
}

static int client_bench_read_body(struct client_bench *bench)
{
    const char *path = bench->options.body_file;
    bench->body = rm_malloc(CLIENT_BENCH_BODY_MAX);
    if (bench->body == NULL) {
        fprintf(stderr, "client-bench: out of memory\n");
        return -1;
    }
    if (path == NULL) {
        bench->body_length = sizeof(client_bench_default_body) - 1;
        memcpy(bench->body, client_bench_default_body, bench->body_length);
        return 0;
    }
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        fprintf(stderr, "client-bench: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    bench->body_length = fread(bench->body, 1, CLIENT_BENCH_BODY_MAX, file);
    bool failed = ferror(file) != 0;
    bool too_long = !failed && fgetc(file) != EOF;
    fclose(file);
    if (failed || too_long || bench->body_length == 0) {
        fprintf(stderr, "client-bench: %s: %s\n", path,
                failed ? "read error" : too_long ? "longer than 64 KiB" : "empty");
        return -1;
    }
    return 0;
}

/* A request re-issued from its callback waits in the upstream's queue, and the pool hands
 * the connection that just finished to a waiting request even with max_idle 0; so the
 * handshake modes ask the server to close instead. */
static void client_bench_headers(struct client_bench *bench)
{
    const struct client_bench_options *options = &bench->options;
    uint32_t count = 0;
    if (options->mode != CLIENT_BENCH_KEEPALIVE) {
        bench->headers[count++] = (struct http_client_header){"Connection", "close"};
    }
    if (options->get_path == NULL) {
        bench->headers[count++] =
            (struct http_client_header){"Content-Type", "application/json"};
        bench->headers[count++] = (struct http_client_header){"Authorization", "Bearer bench"};
    }
    RM_ASSERT(count <= RM_ARRAY_LENGTH(bench->headers));
    bench->header_count = count;
}

static int client_bench_prepare(struct client_bench *bench)
{
    const struct client_bench_options *options = &bench->options;
    client_bench_headers(bench);
    if (client_bench_read_body(bench) != 0) {
        return -1;
    }
    if (strncmp(options->url, "https://", 8) == 0) {
        char error[TLS_TRUST_ERROR_MAX];
        if (tls_trust_load(&bench->trust, options->ca_file, error) != 0) {
            fprintf(stderr, "client-bench: %s\n", error);
            return -1;
        }
    }
    for (uint32_t i = 0; i < options->reactors; i++) {
        struct client_bench_reactor *self = &bench->reactors[i];
        self->bench = bench;
        self->slots = rm_calloc(options->connections, sizeof(*self->slots));
        /* Not zeroed: only the first sample_count entries are ever read, and zeroing 32 MiB
         * would add to the process's CPU time, which bench/client_vs_mock.sh reports. */
        self->samples_ns = rm_malloc(CLIENT_BENCH_SAMPLES_MAX * sizeof(*self->samples_ns));
        if (self->slots == NULL || self->samples_ns == NULL) {
            fprintf(stderr, "client-bench: out of memory\n");
            return -1;
        }
        for (uint32_t s = 0; s < options->connections; s++) {
            self->slots[s].owner = self;
        }
    }
    bench->metrics = metrics_create(options->reactors);
    if (bench->metrics == NULL) {
        fprintf(stderr, "client-bench: out of memory\n");
        return -1;
    }
    return 0;
}

static void client_bench_free(struct client_bench *bench)
{
    for (uint32_t i = 0; i < bench->options.reactors; i++) {
        rm_free(bench->reactors[i].slots);
        rm_free(bench->reactors[i].samples_ns);
    }
    if (bench->metrics != NULL) {
        metrics_destroy(bench->metrics);
    }
    tls_trust_free(&bench->trust);
    rm_free(bench->body);
}

static int client_bench_run(struct client_bench *bench)
{
    struct reactor_group_config config = {
        .reactors = bench->options.reactors,
        .pin = bench->options.pin,
        .queue_depth = CLIENT_BENCH_QUEUE_DEPTH,
        .setup = client_bench_setup,
        .teardown = client_bench_teardown,
        .busy = client_bench_busy,
        .context = bench,
        .drain_timeout_ms = CLIENT_BENCH_DRAIN_MS,
    };
    int result = reactor_group_create(&config, &bench->group);
    if (result != 0) {
        fprintf(stderr, "client-bench: reactor_group_create: %s\n", strerror(-result));
        return -1;
    }
    result = reactor_group_start(bench->group);
    if (result != 0) {
        fprintf(stderr, "client-bench: the reactors did not start: %s\n", strerror(-result));
        reactor_group_stop(bench->group);
    }
    reactor_group_join(bench->group);
    reactor_group_destroy(bench->group);
    bench->group = NULL;
    return result != 0 ? -1 : 0;
}

/* Every reactor's samples, merged and sorted, into the first reactor's array. */
static uint32_t client_bench_merge_samples(struct client_bench *bench, uint64_t **out)
{
    struct client_bench_reactor *first = &bench->reactors[0];
    uint32_t count = first->sample_count;
    for (uint32_t i = 1; i < bench->options.reactors; i++) {
        const struct client_bench_reactor *self = &bench->reactors[i];
        count = bench_samples_append(first->samples_ns, count, CLIENT_BENCH_SAMPLES_MAX,
                                     self->samples_ns, self->sample_count);
    }
    bench_samples_sort(first->samples_ns, count);
    *out = first->samples_ns;
    return count;
}

/* The upstream's tls_handshakes_total{kind} summed over the reactors (0 for plain http). */
static uint64_t client_bench_handshakes(struct client_bench *bench, const char *kind)
{
    int family = metrics_family(bench->metrics, "tls_handshakes_total",
                                "TLS handshakes with upstreams, full or resumed.",
                                METRICS_COUNTER);
    RM_ASSERT(family >= 0);
    char labels[METRICS_LABELS_MAX];
    snprintf(labels, sizeof(labels), "upstream=\"%s\",kind=\"%s\"", CLIENT_BENCH_UPSTREAM, kind);
    int series = metrics_series(bench->metrics, family, labels);
    RM_ASSERT(series >= 0);
    int64_t value = metrics_value(bench->metrics, series);
    RM_ASSERT(value >= 0);
    return (uint64_t)value;
}

/* Whether the handshakes seen match the mode: full wants no resumption at all; resumed wants
 * every handshake after each connection slot's first one resumed. */
static bool client_bench_mode_holds(const struct client_bench *bench, uint64_t full,
                                    uint64_t resumed)
{
    const struct client_bench_options *options = &bench->options;
    uint64_t first_round = (uint64_t)options->connections * options->reactors;
    if (options->mode == CLIENT_BENCH_FULL && resumed > 0) {
        fprintf(stderr, "client-bench: the server resumed %llu sessions in mode full; point it "
                "at a listener that issues no session ids (nginx ssl_session_cache off)\n",
                (unsigned long long)resumed);
        return false;
    }
    if (options->mode == CLIENT_BENCH_RESUMED && full > first_round) {
        fprintf(stderr, "client-bench: %llu full handshakes in mode resumed (at most %llu "
                "expected, one per connection slot); the server did not resume sessions\n",
                (unsigned long long)full, (unsigned long long)first_round);
        return false;
    }
    return true;
}

struct client_bench_totals {
    uint64_t completed;
    uint64_t outcomes[HTTP_CLIENT_OUTCOME_COUNT];
    uint64_t opened;
    uint64_t reused;
    double window_s;
    double cpu_s;
    const char *first_error;
};

static struct client_bench_totals client_bench_sum(const struct client_bench *bench)
{
    struct client_bench_totals totals = {.first_error = ""};
    for (uint32_t i = 0; i < bench->options.reactors; i++) {
        const struct client_bench_reactor *self = &bench->reactors[i];
        totals.completed += self->completed;
        for (int outcome = 0; outcome < HTTP_CLIENT_OUTCOME_COUNT; outcome++) {
            totals.outcomes[outcome] += self->outcomes[outcome];
        }
        totals.opened += self->stats.connections_opened;
        totals.reused += self->stats.connections_reused;
        totals.window_s += (double)(self->deadline_ns - self->started_ns) / 1e9;
        totals.cpu_s += (double)self->cpu_used_ns / 1e9;
        if (totals.first_error[0] == '\0') {
            totals.first_error = self->first_error;
        }
    }
    totals.window_s /= bench->options.reactors; /* every reactor runs the same window */
    return totals;
}

static int client_bench_report(struct client_bench *bench)
{
    const struct client_bench_options *options = &bench->options;
    struct client_bench_totals totals = client_bench_sum(bench);
    uint64_t full = client_bench_handshakes(bench, "full");
    uint64_t resumed = client_bench_handshakes(bench, "resumed");
    uint64_t *samples = NULL;
    uint32_t count = client_bench_merge_samples(bench, &samples);
    uint64_t ok = totals.outcomes[HTTP_CLIENT_OK];
    double rate = (double)totals.completed / totals.window_s;
    printf("mode=%s url=%s reactors=%u connections=%u seconds=%.2f requests=%llu "
           "requests_per_s=%.0f handshakes_per_s=%.0f p50_us=%.1f p99_us=%.1f samples=%u",
           options->mode_name, options->url, options->reactors, options->connections,
           totals.window_s, (unsigned long long)totals.completed, rate,
           options->mode == CLIENT_BENCH_KEEPALIVE ? 0.0 : rate,
           bench_samples_percentile_us(samples, count, 0.50),
           bench_samples_percentile_us(samples, count, 0.99), count);
    for (int outcome = 0; outcome < HTTP_CLIENT_OUTCOME_COUNT; outcome++) {
        printf(" %s=%llu", http_client_outcome_name((enum http_client_outcome)outcome),
               (unsigned long long)totals.outcomes[outcome]);
    }
    printf(" connections_opened=%llu connections_reused=%llu handshakes_full=%llu "
           "handshakes_resumed=%llu reactor_cpu_s=%.2f cpu_us_per_request=%.1f\n",
           (unsigned long long)totals.opened, (unsigned long long)totals.reused,
           (unsigned long long)full, (unsigned long long)resumed, totals.cpu_s,
           totals.completed > 0 ? totals.cpu_s * 1e6 / (double)totals.completed : 0.0);
    bool mode_holds = options->mode == CLIENT_BENCH_KEEPALIVE ||
                      client_bench_mode_holds(bench, full, resumed);
    if (ok != totals.completed || totals.outcomes[HTTP_CLIENT_REJECTED] > 0) {
        fprintf(stderr, "client-bench: %llu of %llu requests failed; first: %s\n",
                (unsigned long long)(totals.completed - ok), (unsigned long long)totals.completed,
                totals.first_error);
        return 1;
    }
    return ok > 0 && mode_holds ? 0 : 1;
}

int main(int argc, char **argv)
{
    static struct client_bench bench;
    if (client_bench_parse(argc, argv, &bench.options) != 0) {
        return 2;
    }
    int status = 2;
    if (client_bench_prepare(&bench) == 0 && client_bench_run(&bench) == 0) {
        status = client_bench_report(&bench);
    }
    client_bench_free(&bench);
    return status;
}
