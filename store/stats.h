#ifndef RM_STORE_STATS_H
#define RM_STORE_STATS_H

/* The store's Prometheus series. Each reactor writes only its own core's slot, so the hot
 * path is a relaxed store; a NULL registry (embedding without metrics) makes every call a
 * no-op. */

#include <stdint.h>

struct metrics_registry;

enum store_stats_operation {
    STORE_STATS_GET,
    STORE_STATS_PUT,
    STORE_STATS_DELETE,
    STORE_STATS_SCAN,
    STORE_STATS_OPERATIONS,
};

enum store_stats_result {
    STORE_STATS_OK,
    STORE_STATS_CONFLICT,
    STORE_STATS_NOT_FOUND,
    STORE_STATS_ERROR,
    STORE_STATS_RESULTS,
};

enum store_stats_gauge { STORE_STATS_LIVE_BYTES, STORE_STATS_DEAD_BYTES, STORE_STATS_SEGMENTS };

struct store_stats {
    struct metrics_registry *registry;
    int operations[STORE_STATS_OPERATIONS][STORE_STATS_RESULTS];
    int read_latency;
    int write_latency;
    int fsync_latency;
    int batch_records;
    int bytes_written;
    int prefilled_bytes;
    int gauges[3];
    int compactions;
    int recovery_seconds;
    int records_recovered;
    int bytes_truncated;
};

void store_stats_init(struct store_stats *stats, struct metrics_registry *registry);
void store_stats_add(const struct store_stats *stats, uint32_t core, int series, int64_t delta);
void store_stats_set(const struct store_stats *stats, uint32_t core, int series, int64_t value);
void store_stats_observe(const struct store_stats *stats, uint32_t core, int series,
                         uint64_t value);
/* Counts one finished operation: its kind and a store status or negative errno. */
void store_stats_operation(const struct store_stats *stats, uint32_t core,
                           enum store_stats_operation operation, int status);

#endif
