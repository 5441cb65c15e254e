#ifndef RM_STORE_STATS_H
#define RM_STORE_STATS_H

/* The store's Prometheus series. Each reactor writes only its own core's slot, so the hot
 * path is a relaxed store; a NULL registry (embedding without metrics) makes every call a
 * no-op. */

#include <stdbool.h>
#include <stdint.h>

#include "core/rm_assert.h"
#include "store/store.h"

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

/* Operation latencies are observed for one operation in this many of each kind (reads,
 * writes): a histogram observation per operation cost more than a tenth of a write. The help
 * texts say so; the operation counters stay exact. */
#define STORE_STATS_LATENCY_SAMPLE_EVERY 16u

enum store_stats_latency { STORE_STATS_READ_LATENCY, STORE_STATS_WRITE_LATENCY };

/* One reactor's finished operations since its last flush (owner-only): counted here per
 * operation and added to the registry's counters once per tick by store_stats_flush. */
struct store_stats_tally {
    uint64_t operations[STORE_STATS_OPERATIONS][STORE_STATS_RESULTS];
    uint32_t latency_countdown[2]; /* per enum store_stats_latency; 0: observe the next */
};

struct store_stats {
    struct metrics_registry *registry;
    int operations[STORE_STATS_OPERATIONS][STORE_STATS_RESULTS];
    int read_latency;
    int write_latency;
    int fsync_latency;
    int batch_records;
    int bytes_written;
    int prefilled_bytes;
    int direct_writes;
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
/* Counts one finished operation in the tally: its kind and a store status or negative
 * errno. Inline, as the next one: both run for every operation. */
static inline void store_stats_count(struct store_stats_tally *tally,
                                     enum store_stats_operation operation, int status)
{
    RM_ASSERT(operation < STORE_STATS_OPERATIONS);
    enum store_stats_result result = STORE_STATS_ERROR;
    if (status == STORE_OK) {
        result = STORE_STATS_OK;
    } else if (status == STORE_CONFLICT) {
        result = STORE_STATS_CONFLICT;
    } else if (status == STORE_NOT_FOUND) {
        result = STORE_STATS_NOT_FOUND;
    }
    tally->operations[operation][result]++;
}

/* Whether this operation's latency is one of the sampled ones (see above). */
static inline bool store_stats_latency_sampled(struct store_stats_tally *tally,
                                               enum store_stats_latency latency)
{
    RM_ASSERT(tally->latency_countdown[latency] < STORE_STATS_LATENCY_SAMPLE_EVERY);
    if (tally->latency_countdown[latency] > 0) {
        tally->latency_countdown[latency]--;
        return false;
    }
    tally->latency_countdown[latency] = STORE_STATS_LATENCY_SAMPLE_EVERY - 1;
    return true;
}
/* Adds the tally to core's counters and empties it. */
void store_stats_flush(const struct store_stats *stats, uint32_t core,
                       struct store_stats_tally *tally);

#endif
