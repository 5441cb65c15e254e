#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/metrics.h"

#define TEST_METRICS_PROMTOOL "/usr/bin/promtool"
#define TEST_METRICS_CORES 4
#define TEST_METRICS_ITERATIONS 1000000
#define TEST_METRICS_LATE_SERIES 200

/* The value of the sample whose name and labels are exactly `series` ("name{labels}"), or
 * -1 when the output has no such line. */
static double test_metrics_sample(const char *text, const char *series)
{
    size_t length = strlen(series);
    for (const char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, series, length) == 0 && line[length] == ' ') {
            return strtod(line + length + 1, NULL);
        }
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
    return -1;
}

static char *test_metrics_render(struct metrics_registry *registry)
{
    char *text = NULL;
    size_t length = metrics_render(registry, &text);
    cr_assert_not_null(text);
    cr_assert_eq(strlen(text), length);
    return text;
}

Test(metrics_values, counters_and_gauges_across_cores)
{
    struct metrics_registry *registry = metrics_create(3);
    cr_assert_not_null(registry);
    int requests = metrics_family(registry, "requests_total", "Requests.", METRICS_COUNTER);
    int open = metrics_family(registry, "connections_open", "Open.", METRICS_GAUGE);
    cr_assert_geq(requests, 0);
    cr_assert_geq(open, 0);
    int plain = metrics_series(registry, requests, "");
    int labelled = metrics_series(registry, requests, "code=\"200\"");
    int gauge = metrics_series(registry, open, "");
    for (uint32_t core = 0; core <= 3; core++) {
        metrics_add(registry, core, plain, core + 1);
        metrics_add(registry, core, labelled, 10);
    }
    cr_assert_eq(metrics_value(registry, plain), 1 + 2 + 3 + 4);
    cr_assert_eq(metrics_value(registry, labelled), 40);
    metrics_set(registry, 0, gauge, 5);
    metrics_add(registry, 1, gauge, -2);
    cr_assert_eq(metrics_value(registry, gauge), 3);
    metrics_set(registry, 0, gauge, 0);
    metrics_add(registry, 2, gauge, -5);
    cr_assert_eq(metrics_value(registry, gauge), -7);
    char *text = test_metrics_render(registry);
    cr_assert_eq(test_metrics_sample(text, "ringmaster_requests_total"), 10);
    cr_assert_eq(test_metrics_sample(text, "ringmaster_requests_total{code=\"200\"}"), 40);
    cr_assert_not_null(strstr(text, "\nringmaster_connections_open -7\n"));
    rm_free(text);
    metrics_destroy(registry);
}

Test(metrics_values, registration_dedupes)
{
    struct metrics_registry *registry = metrics_create(1);
    int family = metrics_family(registry, "events_total", "Events.", METRICS_COUNTER);
    cr_assert_eq(metrics_family(registry, "events_total", "Events.", METRICS_COUNTER), family);
    int other = metrics_family(registry, "other_total", "Other.", METRICS_COUNTER);
    cr_assert_neq(other, family);
    int a = metrics_series(registry, family, "kind=\"a\"");
    cr_assert_eq(metrics_series(registry, family, "kind=\"a\""), a);
    cr_assert_neq(metrics_series(registry, family, "kind=\"b\""), a);
    cr_assert_neq(metrics_series(registry, other, "kind=\"a\""), a);
    int histogram = metrics_histogram_family(registry, "wait_seconds", "Wait.", 1000, 1e-9);
    cr_assert_eq(metrics_histogram_family(registry, "wait_seconds", "Wait.", 1000, 1e-9),
                 histogram);
    metrics_destroy(registry);
}

Test(metrics_values, capacity_limits)
{
    struct metrics_registry *registry = metrics_create(0);
    int family = metrics_family(registry, "things_total", "Things.", METRICS_COUNTER);
    char labels[METRICS_LABELS_MAX + 1];
    memset(labels, 'x', sizeof(labels));
    labels[METRICS_LABELS_MAX] = '\0';
    cr_assert_eq(metrics_series(registry, family, labels), -1);
    labels[METRICS_LABELS_MAX - 1] = '\0';
    cr_assert_geq(metrics_series(registry, family, labels), 0);
    /* Histograms use METRICS_BUCKETS + 2 slots each; slots run out before series. */
    int histogram = metrics_histogram_family(registry, "size_bytes", "Sizes.", 1, 1.0);
    int fitting = (METRICS_SLOTS_MAX - 1) / (METRICS_BUCKETS + 2);
    for (int i = 0; i < fitting; i++) {
        char name[32];
        snprintf(name, sizeof(name), "i=\"%d\"", i);
        cr_assert_geq(metrics_series(registry, histogram, name), 0, "series %d", i);
    }
    cr_assert_eq(metrics_series(registry, histogram, "i=\"last\""), -1);
    for (int i = 2; i < METRICS_FAMILIES_MAX; i++) {
        char name[32];
        snprintf(name, sizeof(name), "family_%d_total", i);
        cr_assert_eq(metrics_family(registry, name, "F.", METRICS_COUNTER), i);
    }
    cr_assert_eq(metrics_family(registry, "one_more_total", "F.", METRICS_COUNTER), -1);
    metrics_destroy(registry);
}

Test(metrics_values, series_limit)
{
    struct metrics_registry *registry = metrics_create(1);
    int family = metrics_family(registry, "things_total", "Things.", METRICS_COUNTER);
    for (int i = 0; i < METRICS_SERIES_MAX; i++) {
        char name[32];
        snprintf(name, sizeof(name), "i=\"%d\"", i);
        cr_assert_eq(metrics_series(registry, family, name), i);
    }
    cr_assert_eq(metrics_series(registry, family, "i=\"x\""), -1);
    cr_assert_eq(metrics_series(registry, family, "i=\"7\""), 7);
    metrics_destroy(registry);
}

struct test_metrics_bucket_case {
    uint64_t first_bucket;
    double scale;
    uint64_t value;
    const char *le;
    const char *previous_le;
};

/* One observation per fresh registry: its bucket is the first whose cumulative count is 1. */
Test(metrics_histogram, bucket_boundaries)
{
    /* Rendered bounds are the 1-2-5 steps of each decade; counts stay exact at them. */
    static const struct test_metrics_bucket_case cases[] = {
        {1, 1.0, 0, "1", NULL},
        {1, 1.0, 1, "1", NULL},
        {1, 1.0, 2, "2", "1"},
        {1, 1.0, 9, "10", "5"},
        {1, 1.0, 10, "10", "5"},
        {1, 1.0, 11, "20", "10"},
        {1, 1.0, 20, "20", "10"},
        {1, 1.0, 21, "50", "20"},
        {1, 1.0, 91, "100", "50"},
        {1, 1.0, 100, "100", "50"},
        {1, 1.0, 101, "200", "100"},
        {1, 1.0, 1000, "1000", "500"},
        {1, 1.0, 1001, "2000", "1000"},
        {1, 1.0, 5000000000ull, "5e+09", "2e+09"},
        {1, 1.0, 8999999999ull, "+Inf", "5e+09"},
        {1, 1.0, 9000000001ull, "+Inf", "5e+09"},
        {1, 1.0, UINT64_MAX, "+Inf", "5e+09"},
        {1000, 1e-9, 999, "1e-06", NULL},
        {1000, 1e-9, 1000, "1e-06", NULL},
        {1000, 1e-9, 1001, "2e-06", "1e-06"},
        {1000, 1e-9, 10000, "1e-05", "5e-06"},
        {1000, 1e-9, 10001, "2e-05", "1e-05"},
        {1000, 1e-9, 300000000, "0.5", "0.2"},
        {1000, 1e-9, 9000000000000ull, "+Inf", "5000"},
        {1000, 1e-9, 9000000000001ull, "+Inf", "5000"},
        {5, 0.5, 26, "25", "12.5"},
        /* The largest first bucket: the top bounds' products must not wrap around. */
        {UINT64_MAX / 10000000000ull, 1.0, UINT64_MAX, "+Inf", NULL},
        {UINT64_MAX / 10000000000ull, 1.0, 0, "1.84467441e+09", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct test_metrics_bucket_case *c = &cases[i];
        struct metrics_registry *registry = metrics_create(1);
        int family = metrics_histogram_family(registry, "probe", "Probe.", c->first_bucket,
                                              c->scale);
        int series = metrics_series(registry, family, "");
        metrics_observe(registry, 1, series, c->value);
        cr_assert_eq(metrics_histogram_count(registry, series), 1);
        char *text = test_metrics_render(registry);
        char name[64];
        snprintf(name, sizeof(name), "ringmaster_probe_bucket{le=\"%s\"}", c->le);
        cr_assert_eq(test_metrics_sample(text, name), 1, "case %zu: %s", i, name);
        if (c->previous_le != NULL) {
            snprintf(name, sizeof(name), "ringmaster_probe_bucket{le=\"%s\"}", c->previous_le);
            cr_assert_eq(test_metrics_sample(text, name), 0, "case %zu: %s", i, name);
        }
        cr_assert_eq(test_metrics_sample(text, "ringmaster_probe_count"), 1);
        rm_free(text);
        metrics_destroy(registry);
    }
}

Test(metrics_histogram, every_bound_rendered_in_order)
{
    struct metrics_registry *registry = metrics_create(1);
    int family = metrics_histogram_family(registry, "latency_seconds", "Latency.", 1000, 1e-9);
    int series = metrics_series(registry, family, "route=\"/x\"");
    metrics_observe(registry, 0, series, 1500);
    metrics_observe(registry, 1, series, 2500000);
    metrics_observe(registry, 1, series, 20000000000000ull);
    char *text = test_metrics_render(registry);
    size_t bucket_lines = 0;
    double previous = -1;
    for (const char *line = strstr(text, "_bucket{"); line != NULL;
         line = strstr(line + 1, "_bucket{")) {
        const char *le = strstr(line, "le=\"");
        cr_assert_not_null(le);
        double bound = strncmp(le + 4, "+Inf", 4) == 0 ? 1e300 : strtod(le + 4, NULL);
        cr_assert_gt(bound, previous);
        previous = bound;
        bucket_lines++;
    }
    cr_assert_eq(bucket_lines, METRICS_DECADES * 3 + 1);
    cr_assert_eq(test_metrics_sample(text, "ringmaster_latency_seconds_bucket{route=\"/x\","
                                           "le=\"2e-06\"}"),
                 1);
    cr_assert_eq(test_metrics_sample(text, "ringmaster_latency_seconds_bucket{route=\"/x\","
                                           "le=\"0.005\"}"),
                 2);
    cr_assert_eq(test_metrics_sample(text, "ringmaster_latency_seconds_bucket{route=\"/x\","
                                           "le=\"+Inf\"}"),
                 3);
    cr_assert_not_null(strstr(text, "\nringmaster_latency_seconds_sum{route=\"/x\"} "
                                    "20000.0025015\n"),
                       "%s", text);
    cr_assert_eq(test_metrics_sample(text, "ringmaster_latency_seconds_count{route=\"/x\"}"), 3);
    rm_free(text);
    metrics_destroy(registry);
}

Test(metrics_render, golden_counter_and_gauge)
{
    struct metrics_registry *registry = metrics_create(2);
    int requests = metrics_family(registry, "http_requests_total", "HTTP requests.",
                                  METRICS_COUNTER);
    int unused = metrics_family(registry, "unused_total", "Never has a series.",
                                METRICS_COUNTER);
    int depth = metrics_family(registry, "queue_depth", "Queued \\ items\nby agent.",
                               METRICS_GAUGE);
    cr_assert_geq(unused, 0);
    int ok = metrics_series(registry, requests, "route=\"/healthz\",code=\"200\"");
    int missing = metrics_series(registry, requests, "route=\"/healthz\",code=\"404\"");
    int queue = metrics_series(registry, depth, "");
    metrics_add(registry, 0, ok, 3);
    metrics_add(registry, 2, ok, 4);
    metrics_add(registry, 1, missing, 1);
    metrics_set(registry, 1, queue, -12);
    char *text = test_metrics_render(registry);
    cr_assert_str_eq(text, "# HELP ringmaster_http_requests_total HTTP requests.\n"
                           "# TYPE ringmaster_http_requests_total counter\n"
                           "ringmaster_http_requests_total{route=\"/healthz\",code=\"200\"} 7\n"
                           "ringmaster_http_requests_total{route=\"/healthz\",code=\"404\"} 1\n"
                           "# HELP ringmaster_queue_depth Queued \\\\ items\\nby agent.\n"
                           "# TYPE ringmaster_queue_depth gauge\n"
                           "ringmaster_queue_depth -12\n");
    rm_free(text);
    metrics_destroy(registry);
}

Test(metrics_render, golden_histogram_head_and_tail)
{
    struct metrics_registry *registry = metrics_create(1);
    int family = metrics_histogram_family(registry, "fsync_seconds", "Fsync latency.", 1000,
                                          1e-9);
    int series = metrics_series(registry, family, "");
    metrics_observe(registry, 0, series, 1000);
    metrics_observe(registry, 1, series, 2000);
    char *text = test_metrics_render(registry);
    const char *head = "# HELP ringmaster_fsync_seconds Fsync latency.\n"
                       "# TYPE ringmaster_fsync_seconds histogram\n"
                       "ringmaster_fsync_seconds_bucket{le=\"1e-06\"} 1\n"
                       "ringmaster_fsync_seconds_bucket{le=\"2e-06\"} 2\n"
                       "ringmaster_fsync_seconds_bucket{le=\"5e-06\"} 2\n";
    cr_assert_eq(strncmp(text, head, strlen(head)), 0, "%s", text);
    const char *tail = "ringmaster_fsync_seconds_bucket{le=\"2000\"} 2\n"
                       "ringmaster_fsync_seconds_bucket{le=\"5000\"} 2\n"
                       "ringmaster_fsync_seconds_bucket{le=\"+Inf\"} 2\n"
                       "ringmaster_fsync_seconds_sum 3e-06\n"
                       "ringmaster_fsync_seconds_count 2\n";
    size_t length = strlen(text);
    cr_assert_geq(length, strlen(tail));
    cr_assert_str_eq(text + length - strlen(tail), tail);
    rm_free(text);
    metrics_destroy(registry);
}

Test(metrics_render, empty_registry)
{
    struct metrics_registry *registry = metrics_create(1);
    metrics_family(registry, "nothing_total", "No series.", METRICS_COUNTER);
    char *text = NULL;
    cr_assert_eq(metrics_render(registry, &text), 0);
    cr_assert_not_null(text);
    cr_assert_str_eq(text, "");
    rm_free(text);
    metrics_destroy(registry);
}

Test(metrics_render, label_escape)
{
    char out[64];
    cr_assert_eq(metrics_label_escape(out, sizeof(out), "a\\b\"c\nd", 7), 10);
    cr_assert_str_eq(out, "a\\\\b\\\"c\\nd");
    cr_assert_eq(metrics_label_escape(out, sizeof(out), "plain", 5), 5);
    cr_assert_str_eq(out, "plain");
    cr_assert_eq(metrics_label_escape(out, sizeof(out), "", 0), 0);
    cr_assert_str_eq(out, "");
    cr_assert_eq(metrics_label_escape(out, 4, "abcdef", 6), 3);
    cr_assert_str_eq(out, "abc");
    /* An escape that does not fit whole is left out. */
    cr_assert_eq(metrics_label_escape(out, 4, "ab\"", 3), 2);
    cr_assert_str_eq(out, "ab");
    cr_assert_eq(metrics_label_escape(out, 1, "abc", 3), 0);
    cr_assert_str_eq(out, "");
}

/* A registry with every type, escaped labels and help, checked by Prometheus' own linter. */
Test(metrics_render, promtool_accepts_output)
{
    struct metrics_registry *registry = metrics_create(2);
    int invocations = metrics_family(registry, "invocations_total",
                                     "Invocations by agent and outcome.", METRICS_COUNTER);
    int depth = metrics_family(registry, "queue_depth", "Queued \\ invocations\nper agent.",
                               METRICS_GAUGE);
    int duration = metrics_histogram_family(registry, "invocation_duration_seconds",
                                            "Invocation duration.", 1000, 1e-9);
    int bytes = metrics_histogram_family(registry, "write_size_bytes", "Write sizes.", 1, 1.0);
    metrics_family(registry, "idle_total", "A family without series.", METRICS_COUNTER);
    char value[64];
    char labels[METRICS_LABELS_MAX];
    metrics_label_escape(value, sizeof(value), "we\"ird\\agent\nname", 17);
    snprintf(labels, sizeof(labels), "agent=\"%s\",outcome=\"ok\"", value);
    int weird = metrics_series(registry, invocations, labels);
    int plain = metrics_series(registry, invocations, "agent=\"triage\",outcome=\"error\"");
    int queue = metrics_series(registry, depth, "agent=\"triage\"");
    int latency = metrics_series(registry, duration, "agent=\"triage\"");
    int sizes = metrics_series(registry, bytes, "");
    metrics_add(registry, 0, weird, 5);
    metrics_add(registry, 1, plain, 2);
    metrics_set(registry, 2, queue, -3);
    for (uint64_t v = 1; v < 100000000000ull; v *= 7) {
        metrics_observe(registry, (uint32_t)(v % 3), latency, v);
        metrics_observe(registry, (uint32_t)(v % 3), sizes, v);
    }
    char *text = test_metrics_render(registry);
    if (access(TEST_METRICS_PROMTOOL, X_OK) != 0) {
        rm_free(text);
        metrics_destroy(registry);
        cr_skip_test("promtool is not installed");
    }
    char path[] = "/tmp/rm_test_metrics_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char command[256];
    snprintf(command, sizeof(command), TEST_METRICS_PROMTOOL " check metrics < %s 2>&1", path);
    FILE *promtool = popen(command, "r");
    cr_assert_not_null(promtool);
    char report[1024] = "";
    size_t report_length = fread(report, 1, sizeof(report) - 1, promtool);
    report[report_length] = '\0';
    int status = pclose(promtool);
    unlink(path);
    cr_assert_eq(status, 0, "promtool: %s\n%s", report, text);
    rm_free(text);
    metrics_destroy(registry);
}

/* ---- cross-core ---- */

struct test_metrics_shared {
    struct metrics_registry *registry;
    int counter;
    int histogram;
    int gauge;
    int own_counter[TEST_METRICS_CORES];
    int late_family;
    int writers_done;
};

struct test_metrics_writer {
    pthread_t thread;
    struct test_metrics_shared *shared;
    uint32_t core;
};

static uint64_t test_metrics_observed(uint64_t i) { return (i % 1000) * 997; }

static void *test_metrics_writer_run(void *argument)
{
    struct test_metrics_writer *writer = argument;
    struct test_metrics_shared *shared = writer->shared;
    for (uint64_t i = 0; i < TEST_METRICS_ITERATIONS; i++) {
        metrics_add(shared->registry, writer->core, shared->counter, 1);
        metrics_add(shared->registry, writer->core, shared->own_counter[writer->core], 2);
        metrics_observe(shared->registry, writer->core, shared->histogram,
                        test_metrics_observed(i));
        metrics_set(shared->registry, writer->core, shared->gauge, (int64_t)i);
    }
    return NULL;
}

/* Registers series while the others write and render, to exercise publication. */
static void *test_metrics_registrar_run(void *argument)
{
    struct test_metrics_shared *shared = argument;
    for (int i = 0; i < TEST_METRICS_LATE_SERIES; i++) {
        char labels[32];
        snprintf(labels, sizeof(labels), "n=\"%d\"", i);
        int series = metrics_series(shared->registry, shared->late_family, labels);
        cr_assert_geq(series, 0);
        metrics_add(shared->registry, TEST_METRICS_CORES, series, i);
    }
    return NULL;
}

/* Renders until the writers finish; every render must be internally consistent. */
static void *test_metrics_renderer_run(void *argument)
{
    struct test_metrics_shared *shared = argument;
    double last_count = 0;
    for (int renders = 0;; renders++) {
        bool done = __atomic_load_n(&shared->writers_done, __ATOMIC_ACQUIRE) != 0;
        char *text = NULL;
        metrics_render(shared->registry, &text);
        cr_assert_not_null(text);
        double count = test_metrics_sample(text, "ringmaster_cross_seconds_count");
        cr_assert_eq(count, test_metrics_sample(text, "ringmaster_cross_seconds_bucket"
                                                      "{le=\"+Inf\"}"));
        cr_assert_geq(count, last_count);
        last_count = count;
        rm_free(text);
        if (done && renders > 0) {
            return NULL;
        }
    }
}

static void test_metrics_shared_init(struct test_metrics_shared *shared)
{
    memset(shared, 0, sizeof(*shared));
    shared->registry = metrics_create(TEST_METRICS_CORES);
    cr_assert_not_null(shared->registry);
    struct metrics_registry *registry = shared->registry;
    int counter = metrics_family(registry, "cross_total", "Cross.", METRICS_COUNTER);
    int gauge = metrics_family(registry, "cross_last", "Last.", METRICS_GAUGE);
    int histogram = metrics_histogram_family(registry, "cross_seconds", "Cross.", 1000, 1e-9);
    shared->late_family = metrics_family(registry, "late_total", "Late.", METRICS_COUNTER);
    shared->counter = metrics_series(registry, counter, "");
    shared->gauge = metrics_series(registry, gauge, "");
    shared->histogram = metrics_series(registry, histogram, "");
    for (uint32_t core = 0; core < TEST_METRICS_CORES; core++) {
        char labels[32];
        snprintf(labels, sizeof(labels), "core=\"%u\"", core);
        shared->own_counter[core] = metrics_series(registry, counter, labels);
    }
}

Test(crosscore_metrics, four_writers_exact_while_rendering, .timeout = 240)
{
    struct test_metrics_shared shared;
    test_metrics_shared_init(&shared);
    struct test_metrics_writer writers[TEST_METRICS_CORES];
    pthread_t renderer;
    pthread_t registrar;
    cr_assert_eq(pthread_create(&renderer, NULL, test_metrics_renderer_run, &shared), 0);
    cr_assert_eq(pthread_create(&registrar, NULL, test_metrics_registrar_run, &shared), 0);
    for (uint32_t core = 0; core < TEST_METRICS_CORES; core++) {
        writers[core] = (struct test_metrics_writer){.shared = &shared, .core = core};
        cr_assert_eq(pthread_create(&writers[core].thread, NULL, test_metrics_writer_run,
                                    &writers[core]),
                     0);
    }
    for (uint32_t core = 0; core < TEST_METRICS_CORES; core++) {
        pthread_join(writers[core].thread, NULL);
    }
    __atomic_store_n(&shared.writers_done, 1, __ATOMIC_RELEASE);
    pthread_join(registrar, NULL);
    pthread_join(renderer, NULL);
    struct metrics_registry *registry = shared.registry;
    uint64_t total = (uint64_t)TEST_METRICS_CORES * TEST_METRICS_ITERATIONS;
    cr_assert_eq(metrics_value(registry, shared.counter), (int64_t)total);
    for (uint32_t core = 0; core < TEST_METRICS_CORES; core++) {
        cr_assert_eq(metrics_value(registry, shared.own_counter[core]),
                     2 * TEST_METRICS_ITERATIONS);
    }
    cr_assert_eq(metrics_histogram_count(registry, shared.histogram), total);
    cr_assert_eq(metrics_value(registry, shared.gauge),
                 (int64_t)TEST_METRICS_CORES * (TEST_METRICS_ITERATIONS - 1));
    uint64_t sum = 0;
    for (uint64_t i = 0; i < TEST_METRICS_ITERATIONS; i++) {
        sum += test_metrics_observed(i);
    }
    char *text = test_metrics_render(registry);
    char expected[128];
    snprintf(expected, sizeof(expected), "\nringmaster_cross_seconds_sum %.15g\n",
             (double)(sum * TEST_METRICS_CORES) * 1e-9);
    cr_assert_not_null(strstr(text, expected), "%s", expected);
    cr_assert_eq(test_metrics_sample(text, "ringmaster_cross_seconds_count"), (double)total);
    cr_assert_eq(test_metrics_sample(text, "ringmaster_late_total{n=\"199\"}"), 199);
    rm_free(text);
    metrics_destroy(registry);
}
