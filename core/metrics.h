#ifndef RM_METRICS_H
#define RM_METRICS_H

/* Metrics registry: counters, gauges and histograms kept per core and merged when /metrics
 * is scraped, rendered in the Prometheus text format 0.0.4. Every name gets the prefix
 * "ringmaster_".
 *
 * Each core writes only its own slots (single writer, relaxed atomic stores), so the hot
 * path has no shared cache lines and no locks; the scraper sums the cores' slots with
 * relaxed atomic loads. Registration takes a mutex and may happen at any time from any
 * thread (it is rare: at start, or the first time a label combination is seen); registering
 * the same family and labels twice returns the same series.
 *
 * Histograms use fixed log-linear buckets: 1..9 x 10^k of the base unit for k in
 * [0, METRICS_DECADES), plus +Inf. Values are recorded in the family's base unit (for
 * example nanoseconds) and rendered in the display unit (for example seconds) through
 * `scale` (display = value * scale). /metrics shows the 1-2-5 steps of each decade (the counts
 * at those bounds are exact); the finer buckets stay inside for percentile estimates. */

#include <stddef.h>
#include <stdint.h>

#define METRICS_CORES_MAX 64
#define METRICS_SLOTS_MAX 32768 /* uint64 slots per core */
#define METRICS_FAMILIES_MAX 256
#define METRICS_SERIES_MAX 4096
#define METRICS_DECADES 10
#define METRICS_BUCKETS (METRICS_DECADES * 9 + 1)
#define METRICS_LABELS_MAX 256 /* rendered label text, e.g. route="/healthz",code="200" */
#define METRICS_NAME_MAX 96 /* family name without the prefix, NUL included */
#define METRICS_HELP_MAX 256 /* help text, NUL included */

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

struct metrics_registry;

/* cores: how many writers (reactors) there are; core index cores is also valid and is meant
 * for non-reactor threads that write under their own serialization (the main thread). */
struct metrics_registry *metrics_create(uint32_t cores);
void metrics_destroy(struct metrics_registry *registry);

/* Returns a family id (>= 0) or -1 when the registry is full. `name` without the prefix.
 * `scale` is used by histograms only (1.0 elsewhere); `first_bucket` is the value of the
 * lowest bucket in the base unit (e.g. 1000 ns = 1 us). Registering a name again returns the
 * same id (it must have the same type). Programmer errors, asserted: a name that is not
 * [a-zA-Z_:][a-zA-Z0-9_:]* or not shorter than METRICS_NAME_MAX, help text not shorter than
 * METRICS_HELP_MAX, and a counter whose name does not end in "_total" (or another type's
 * that does), as promtool requires. */
int metrics_family(struct metrics_registry *registry, const char *name, const char *help,
                   enum metrics_type type);
int metrics_histogram_family(struct metrics_registry *registry, const char *name,
                             const char *help, uint64_t first_bucket, double scale);

/* Returns a series id (>= 0) or -1 when full (series or slots) or when labels is not
 * shorter than METRICS_LABELS_MAX. `labels` is the rendered label list without braces ("" for
 * none); the caller escapes values (metrics_label_escape helps). */
int metrics_series(struct metrics_registry *registry, int family, const char *labels);

/* Writes for core `core` (the calling reactor's index). A gauge is the sum of its cores'
 * values: metrics_set sets this core's part, metrics_add moves it (negative deltas too). */
void metrics_add(struct metrics_registry *registry, uint32_t core, int series, int64_t delta);
void metrics_set(struct metrics_registry *registry, uint32_t core, int series, int64_t value);
void metrics_observe(struct metrics_registry *registry, uint32_t core, int series,
                     uint64_t value);

/* Sums over cores (for tests and admin views). */
int64_t metrics_value(struct metrics_registry *registry, int series);
uint64_t metrics_histogram_count(struct metrics_registry *registry, int series);

/* Renders every family into a freshly allocated buffer (rm_malloc; free with rm_free).
 * Returns the length; *out is NULL on allocation failure. */
size_t metrics_render(struct metrics_registry *registry, char **out);

/* Escapes a label value (backslash, quote, newline) into dst; returns bytes written, not
 * counting the NUL it always writes. A value that does not fit is cut before an escape. */
size_t metrics_label_escape(char *dst, size_t dst_length, const char *value, size_t length);

#endif
