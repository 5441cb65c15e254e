#include "store/stats.h"

#include <stdio.h>
#include <string.h>

#include "core/metrics.h"
#include "core/rm_assert.h"
#include "store/store.h"

static const char *const store_stats_operation_names[STORE_STATS_OPERATIONS] = {
    "get", "put", "delete", "scan"};
static const char *const store_stats_result_names[STORE_STATS_RESULTS] = {
    "ok", "conflict", "not_found", "error"};

static int store_stats_series(struct metrics_registry *registry, const char *name,
                              const char *help, enum metrics_type type)
{
    int family = metrics_family(registry, name, help, type);
    return family < 0 ? -1 : metrics_series(registry, family, "");
}

static int store_stats_seconds(struct metrics_registry *registry, const char *name,
                               const char *help, uint64_t first_bucket_ns)
{
    int family = metrics_histogram_family(registry, name, help, first_bucket_ns, 1e-9);
    return family < 0 ? -1 : metrics_series(registry, family, "");
}

static void store_stats_init_operations(struct store_stats *stats)
{
    int family = metrics_family(stats->registry, "state_operations_total",
                                "State store operations by operation and result.",
                                METRICS_COUNTER);
    for (int operation = 0; operation < STORE_STATS_OPERATIONS; operation++) {
        for (int result = 0; result < STORE_STATS_RESULTS; result++) {
            char labels[64];
            int length = snprintf(labels, sizeof(labels), "op=\"%s\",result=\"%s\"",
                                  store_stats_operation_names[operation],
                                  store_stats_result_names[result]);
            RM_ASSERT(length > 0 && (size_t)length < sizeof(labels));
            stats->operations[operation][result] =
                family < 0 ? -1 : metrics_series(stats->registry, family, labels);
        }
    }
}

_Static_assert(STORE_STATS_LATENCY_SAMPLE_EVERY == 16, "the latency help texts name the rate");

void store_stats_init(struct store_stats *stats, struct metrics_registry *registry)
{
    RM_ASSERT(stats != NULL);
    memset(stats, 0xff, sizeof(*stats)); /* every series -1: not registered */
    stats->registry = registry;
    if (registry == NULL) {
        return;
    }
    store_stats_init_operations(stats);
    struct metrics_registry *r = registry;
    stats->read_latency = store_stats_seconds(
        r, "state_read_latency_seconds",
        "State reads, call to callback; one read in 16 is observed.", 1000);
    stats->write_latency = store_stats_seconds(
        r, "state_write_latency_seconds",
        "State writes, call to acknowledgement; one write in 16 is observed.", 1000);
    stats->fsync_latency = store_stats_seconds(
        r, "store_fsync_latency_seconds",
        "Group-commit fdatasync latency (from the write when linked behind it).", 1000);
    stats->recovery_seconds = store_stats_seconds(r, "store_recovery_seconds",
                                                  "Shard recovery time at start.", 100000);
    int family = metrics_histogram_family(r, "store_commit_batch_records",
                                          "Records per group-commit batch.", 1, 1.0);
    stats->batch_records = family < 0 ? -1 : metrics_series(r, family, "");
    stats->bytes_written = store_stats_series(r, "store_bytes_written_total",
                                              "Bytes appended to segments.", METRICS_COUNTER);
    stats->prefilled_bytes = store_stats_series(
        r, "store_prefilled_bytes_total",
        "Zero bytes written ahead of the active segment's end (store/prefill.h).",
        METRICS_COUNTER);
    stats->direct_writes = store_stats_series(
        r, "store_direct_writes_total",
        "Group-commit writes sent with O_DIRECT, past the page cache (store/direct.h).",
        METRICS_COUNTER);
    stats->gauges[STORE_STATS_LIVE_BYTES] = store_stats_series(
        r, "store_live_bytes", "Segment bytes the index points at.", METRICS_GAUGE);
    stats->gauges[STORE_STATS_DEAD_BYTES] = store_stats_series(
        r, "store_dead_bytes", "Segment bytes awaiting compaction.", METRICS_GAUGE);
    stats->gauges[STORE_STATS_SEGMENTS] =
        store_stats_series(r, "store_segments", "Segment files.", METRICS_GAUGE);
    stats->compactions = store_stats_series(r, "store_compactions_total",
                                            "Segments compacted away.", METRICS_COUNTER);
    stats->records_recovered = store_stats_series(r, "store_records_recovered_total",
                                                  "Records read at recovery.", METRICS_COUNTER);
    stats->bytes_truncated = store_stats_series(
        r, "store_bytes_truncated_total", "Torn or corrupt bytes cut at recovery.",
        METRICS_COUNTER);
}

void store_stats_add(const struct store_stats *stats, uint32_t core, int series, int64_t delta)
{
    RM_ASSERT(stats != NULL);
    if (stats->registry != NULL && series >= 0) {
        metrics_add(stats->registry, core, series, delta);
    }
}

void store_stats_set(const struct store_stats *stats, uint32_t core, int series, int64_t value)
{
    RM_ASSERT(stats != NULL);
    if (stats->registry != NULL && series >= 0) {
        metrics_set(stats->registry, core, series, value);
    }
}

void store_stats_observe(const struct store_stats *stats, uint32_t core, int series,
                         uint64_t value)
{
    RM_ASSERT(stats != NULL);
    if (stats->registry != NULL && series >= 0) {
        metrics_observe(stats->registry, core, series, value);
    }
}

void store_stats_flush(const struct store_stats *stats, uint32_t core,
                       struct store_stats_tally *tally)
{
    RM_ASSERT(stats != NULL);
    RM_ASSERT(tally != NULL);
    for (int operation = 0; operation < STORE_STATS_OPERATIONS; operation++) {
        for (int result = 0; result < STORE_STATS_RESULTS; result++) {
            uint64_t count = tally->operations[operation][result];
            if (count > 0) {
                store_stats_add(stats, core, stats->operations[operation][result],
                                (int64_t)count);
                tally->operations[operation][result] = 0;
            }
        }
    }
}
