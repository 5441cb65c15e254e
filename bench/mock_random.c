/* The mock's randomness: one splitmix64 stream per core, seeded from the configured seed and
 * the core index, so a run with the same seed, threads and request order draws the same
 * latencies and faults. No shared state: the cores never contend for it. */

#include <math.h>

#include "bench/mock.h"
#include "core/rm_assert.h"

void mock_random_seed(struct mock_core *core, uint64_t seed)
{
    RM_ASSERT(core != NULL);
    RM_ASSERT(core->index < REACTOR_MAX);
    core->random_state = seed ^ ((uint64_t)(core->index + 1) * 0x9E3779B97F4A7C15ull);
}

static uint64_t mock_random_next(struct mock_core *core)
{
    uint64_t z = (core->random_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
double mock_random_unit(struct mock_core *core)
{
    double unit = (double)(mock_random_next(core) >> 11) * 0x1.0p-53;
    RM_ASSERT(unit >= 0.0);
    RM_ASSERT(unit < 1.0);
    return unit;
}

uint32_t mock_random_latency_ms(struct mock_core *core, const struct mock_latency *latency)
{
    RM_ASSERT(latency->first_ms <= MOCK_LATENCY_MS_MAX);
    RM_ASSERT(latency->second_ms <= MOCK_LATENCY_MS_MAX);
    switch (latency->kind) {
    case MOCK_LATENCY_FIXED:
        return latency->first_ms;
    case MOCK_LATENCY_UNIFORM: {
        uint32_t span = latency->second_ms - latency->first_ms;
        return latency->first_ms + (uint32_t)(mock_random_unit(core) * (double)(span + 1));
    }
    case MOCK_LATENCY_EXPONENTIAL: {
        double sample = -(double)latency->first_ms * log(1.0 - mock_random_unit(core));
        double cap = (double)latency->second_ms;
        return (uint32_t)(sample < cap ? sample : cap);
    }
    }
    RM_ASSERT(!"unknown latency kind");
    return 0;
}

/* One draw decides both faults, so error_rate + hang_rate partition [0, 1). */
enum mock_fault mock_random_fault(struct mock_core *core, const struct mock_faults *faults)
{
    RM_ASSERT(faults->error_rate >= 0.0 && faults->hang_rate >= 0.0);
    RM_ASSERT(faults->error_rate + faults->hang_rate <= 1.0 + 1e-9);
    if (faults->error_rate == 0.0 && faults->hang_rate == 0.0) {
        return MOCK_FAULT_NONE;
    }
    double draw = mock_random_unit(core);
    if (draw < faults->error_rate) {
        return MOCK_FAULT_ERROR;
    }
    return draw < faults->error_rate + faults->hang_rate ? MOCK_FAULT_HANG : MOCK_FAULT_NONE;
}
