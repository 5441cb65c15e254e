#ifndef RM_BENCH_SAMPLES_H
#define RM_BENCH_SAMPLES_H

/* Latency samples of the bench clients (client-bench, store-bench): merged from every
 * reactor's array, sorted, read as percentiles. */

#include <stdint.h>

/* Appends up to capacity - count samples of `from` to `into`; returns the new count. */
uint32_t bench_samples_append(uint64_t *into, uint32_t count, uint32_t capacity,
                              const uint64_t *from, uint32_t from_count);
void bench_samples_sort(uint64_t *samples, uint32_t count);
/* The sample at `rank` (0..1) of sorted nanosecond samples, in microseconds; 0 when empty. */
double bench_samples_percentile_us(const uint64_t *sorted, uint32_t count, double rank);

#endif
