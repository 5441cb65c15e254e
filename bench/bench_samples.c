#include "bench/bench_samples.h"

#include <stdlib.h>
#include <string.h>

#include "core/rm_assert.h"

static int bench_samples_compare(const void *left, const void *right)
{
    uint64_t a = *(const uint64_t *)left;
    uint64_t b = *(const uint64_t *)right;
    return (a > b) - (a < b);
}

uint32_t bench_samples_append(uint64_t *into, uint32_t count, uint32_t capacity,
                              const uint64_t *from, uint32_t from_count)
{
    RM_ASSERT(count <= capacity);
    uint32_t take = from_count < capacity - count ? from_count : capacity - count;
    memcpy(into + count, from, take * sizeof(uint64_t));
    return count + take;
}

void bench_samples_sort(uint64_t *samples, uint32_t count)
{
    qsort(samples, count, sizeof(uint64_t), bench_samples_compare);
}

double bench_samples_percentile_us(const uint64_t *sorted, uint32_t count, double rank)
{
    if (count == 0) {
        return 0.0;
    }
    uint32_t at = (uint32_t)(rank * (count - 1));
    RM_ASSERT(at < count);
    return (double)sorted[at] / 1000.0;
}
