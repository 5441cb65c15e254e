/* Circuit breakers through their API: windows, thresholds, the open / half-open / closed
 * cycle with probes shared by cores, stale reports, metrics; and real threads (one per
 * simulated core) hammering one breaker, which is also run under ThreadSanitizer. Time is
 * driven by hand (the API takes now_ns) except in the cross-core suite. */

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/breaker.h"
#include "core/log.h"
#include "core/metrics.h"

#define TEST_CORES 4
#define TEST_RECONCILE_MS 10
#define TEST_MS 1000000ULL
#define TEST_T0 (1000 * TEST_MS)

static struct {
    struct metrics_registry *metrics;
    struct breaker_set *set;
} test;

static void test_breaker_init(void)
{
    /* Every transition logs a line; the threaded test makes thousands. */
    cr_assert_eq(log_open("", CONFIG_LOG_ERROR), 0);
    test.metrics = metrics_create(TEST_CORES);
    cr_assert_not_null(test.metrics);
    test.set = breaker_set_create(TEST_CORES, TEST_RECONCILE_MS, test.metrics);
    cr_assert_not_null(test.set);
}

static void test_breaker_fini(void)
{
    breaker_set_destroy(test.set);
    metrics_destroy(test.metrics);
    cr_assert_eq(log_open("", CONFIG_LOG_INFO), 0);
}

TestSuite(breaker, .init = test_breaker_init, .fini = test_breaker_fini);
TestSuite(crosscore_breaker, .init = test_breaker_init, .fini = test_breaker_fini);

static struct config_breaker test_config(void)
{
    return (struct config_breaker){.window = CONFIG_WINDOW_COUNT,
                                   .window_calls = 20,
                                   .window_ms = 10000,
                                   .min_calls = 10,
                                   .failure_percent = 50,
                                   .slow_call_ms = 0,
                                   .slow_percent = 100,
                                   .open_ms = 1000,
                                   .probes = 3};
}

static uint32_t test_add(const char *name, const struct config_breaker *config)
{
    int id = breaker_add(test.set, "tool", name, config);
    cr_assert_geq(id, 0);
    return (uint32_t)id;
}

static struct breaker_view test_view(uint32_t id)
{
    struct breaker_view view;
    breaker_view(test.set, id, &view);
    return view;
}

/* `count` calls on `core`, each permitted and reported at once. */
static void test_calls(uint32_t core, uint32_t id, uint64_t now_ns, uint32_t count, bool failed,
                       uint64_t duration_ms)
{
    for (uint32_t i = 0; i < count; i++) {
        cr_assert_eq(breaker_acquire(test.set, core, id, now_ns), BREAKER_PERMITTED);
        breaker_release(test.set, core, id, BREAKER_PERMITTED, failed, duration_ms * TEST_MS,
                        now_ns);
    }
}

/* min_calls (10) failures on one core open the breaker without a reconcile. */
static void test_open(uint32_t id, uint64_t now_ns)
{
    test_calls(0, id, now_ns, 10, true, 1);
    cr_assert_eq(test_view(id).state, BREAKER_OPEN);
}

static enum breaker_permit test_acquire(uint32_t core, uint32_t id, uint64_t now_ns)
{
    return breaker_acquire(test.set, core, id, now_ns);
}

static void test_release(uint32_t core, uint32_t id, enum breaker_permit permit, bool failed,
                         uint64_t now_ns)
{
    breaker_release(test.set, core, id, permit, failed, TEST_MS, now_ns);
}

Test(breaker, closed_below_min_calls_even_when_every_call_fails)
{
    struct config_breaker config = test_config();
    uint32_t id = test_add("search", &config);
    test_calls(0, id, TEST_T0, 9, true, 1);
    cr_assert_eq(test_view(id).state, BREAKER_CLOSED);
    breaker_reconcile(test.set, 0, TEST_T0);
    struct breaker_view view = test_view(id);
    cr_assert_eq(view.state, BREAKER_CLOSED);
    cr_assert_eq(view.window_calls, 9);
    cr_assert_eq(view.window_failures, 9);
    cr_assert_eq(view.transitions, 0);
    /* The tenth call, on another core, reaches min_calls only in the window. */
    test_calls(1, id, TEST_T0, 1, true, 1);
    cr_assert_eq(test_view(id).state, BREAKER_CLOSED);
    breaker_reconcile(test.set, 1, TEST_T0 + TEST_RECONCILE_MS * TEST_MS);
    cr_assert_eq(test_view(id).state, BREAKER_OPEN);
}

Test(breaker, opens_at_the_failure_threshold_after_a_reconcile)
{
    struct config_breaker config = test_config();
    uint32_t id = test_add("search", &config);
    test_calls(0, id, TEST_T0, 6, true, 1);
    test_calls(1, id, TEST_T0, 6, false, 1);
    cr_assert_eq(test_view(id).state, BREAKER_CLOSED);
    breaker_reconcile(test.set, 0, TEST_T0); /* publishes and folds core 0's six */
    breaker_reconcile(test.set, 1, TEST_T0); /* publishes; the next fold is a tick away */
    struct breaker_view view = test_view(id);
    cr_assert_eq(view.state, BREAKER_CLOSED);
    cr_assert_eq(view.window_calls, 6);
    uint64_t now = TEST_T0 + TEST_RECONCILE_MS * TEST_MS;
    breaker_reconcile(test.set, 2, now);
    view = test_view(id);
    cr_assert_eq(view.state, BREAKER_OPEN);
    cr_assert_eq(view.window_calls, 12);
    cr_assert_eq(view.window_failures, 6);
    cr_assert_eq(view.opened_at_ns, now);
    cr_assert_eq(view.open_until_ns, now + 1000 * TEST_MS);
    cr_assert_eq(view.transitions, 1);
    for (uint32_t core = 0; core < TEST_CORES; core++) {
        cr_assert_eq(test_acquire(core, id, now), BREAKER_DENIED);
    }
    /* While it is open the window stays the one that opened it. */
    breaker_reconcile(test.set, 3, now + TEST_RECONCILE_MS * TEST_MS);
    view = test_view(id);
    cr_assert_eq(view.state, BREAKER_OPEN);
    cr_assert_eq(view.window_calls, 12);
}

Test(breaker, stays_closed_just_below_the_failure_threshold)
{
    struct config_breaker config = test_config();
    uint32_t id = test_add("search", &config);
    test_calls(0, id, TEST_T0, 5, true, 1);
    test_calls(1, id, TEST_T0, 7, false, 1);
    breaker_reconcile(test.set, 0, TEST_T0);
    breaker_reconcile(test.set, 1, TEST_T0);
    breaker_reconcile(test.set, 2, TEST_T0 + TEST_RECONCILE_MS * TEST_MS);
    struct breaker_view view = test_view(id);
    cr_assert_eq(view.state, BREAKER_CLOSED);
    cr_assert_eq(view.window_calls, 12);
    cr_assert_eq(view.window_failures, 5);
}

Test(breaker, one_cores_burst_opens_it_for_every_core_without_a_reconcile)
{
    struct config_breaker config = test_config();
    uint32_t id = test_add("search", &config);
    /* 18 failures, but no core has min_calls of its own. */
    test_calls(0, id, TEST_T0, 9, true, 1);
    test_calls(1, id, TEST_T0, 9, true, 1);
    cr_assert_eq(test_view(id).state, BREAKER_CLOSED);
    test_calls(2, id, TEST_T0, 9, true, 1);
    cr_assert_eq(test_view(id).state, BREAKER_CLOSED);
    test_calls(3, id, TEST_T0, 5, false, 1);
    test_calls(3, id, TEST_T0, 4, true, 1);
    cr_assert_eq(test_view(id).state, BREAKER_CLOSED); /* 4 of 9 */
    test_calls(2, id, TEST_T0, 1, true, 1);
    cr_assert_eq(test_view(id).state, BREAKER_OPEN);
    for (uint32_t core = 0; core < TEST_CORES; core++) {
        cr_assert_eq(test_acquire(core, id, TEST_T0), BREAKER_DENIED);
    }
}

Test(breaker, a_min_calls_above_a_count_window_never_opens_it)
{
    struct config_breaker config = test_config();
    config.window_calls = 5;
    config.min_calls = 100;
    uint32_t id = test_add("search", &config);
    test_calls(0, id, TEST_T0, 200, true, 1);
    cr_assert_eq(test_view(id).state, BREAKER_CLOSED);
    breaker_reconcile(test.set, 0, TEST_T0);
    struct breaker_view view = test_view(id);
    cr_assert_eq(view.state, BREAKER_CLOSED);
    cr_assert_eq(view.window_calls, 5);
    cr_assert_eq(view.window_failures, 5);
}

Test(breaker, the_slow_call_rate_opens_it)
{
    struct config_breaker config = test_config();
    config.slow_call_ms = 100;
    config.slow_percent = 50;
    config.failure_percent = 100;
    uint32_t id = test_add("search", &config);
    test_calls(0, id, TEST_T0, 10, false, 99);
    breaker_reconcile(test.set, 0, TEST_T0);
    struct breaker_view view = test_view(id);
    cr_assert_eq(view.state, BREAKER_CLOSED);
    cr_assert_eq(view.window_slow, 0);
    test_calls(1, id, TEST_T0, 4, false, 150);
    test_calls(1, id, TEST_T0, 5, false, 1);
    breaker_reconcile(test.set, 1, TEST_T0 + TEST_RECONCILE_MS * TEST_MS);
    view = test_view(id);
    cr_assert_eq(view.state, BREAKER_CLOSED); /* 4 slow of 19 */
    cr_assert_eq(view.window_calls, 19);
    cr_assert_eq(view.window_slow, 4);
    cr_assert_eq(view.window_failures, 0);
    test_calls(1, id, TEST_T0, 4, false, 1);
    test_calls(1, id, TEST_T0, 5, false, 100);
    cr_assert_eq(test_view(id).state, BREAKER_CLOSED); /* 9 calls: below min_calls */
    test_calls(1, id, TEST_T0, 1, false, 1);
    cr_assert_eq(test_view(id).state, BREAKER_OPEN); /* 5 slow of 10 on core 1 */
}

Test(breaker, no_call_is_slow_when_slow_call_ms_is_zero)
{
    struct config_breaker config = test_config();
    config.slow_percent = 1;
    uint32_t id = test_add("search", &config);
    test_calls(0, id, TEST_T0, 20, false, 3600 * 1000);
    breaker_reconcile(test.set, 0, TEST_T0);
    struct breaker_view view = test_view(id);
    cr_assert_eq(view.state, BREAKER_CLOSED);
    cr_assert_eq(view.window_calls, 20);
    cr_assert_eq(view.window_slow, 0);
}

Test(breaker, a_time_window_forgets_old_failures)
{
    struct config_breaker config = test_config();
    config.window = CONFIG_WINDOW_TIME;
    config.window_ms = 1000;
    uint32_t late = test_add("late", &config);
    uint32_t early = test_add("early", &config);
    test_calls(0, late, TEST_T0, 8, true, 1);
    test_calls(0, early, TEST_T0, 8, true, 1);
    breaker_reconcile(test.set, 0, TEST_T0);
    cr_assert_eq(test_view(late).window_calls, 8);
    /* Within window_ms the old failures still count... */
    uint64_t now = TEST_T0 + 900 * TEST_MS;
    test_calls(1, early, now, 4, true, 1);
    breaker_reconcile(test.set, 1, now);
    cr_assert_eq(test_view(early).state, BREAKER_OPEN);
    cr_assert_eq(test_view(late).window_calls, 8);
    /* ...and after it they are gone. */
    now = TEST_T0 + 1100 * TEST_MS;
    test_calls(1, late, now, 4, true, 1);
    breaker_reconcile(test.set, 1, now);
    struct breaker_view view = test_view(late);
    cr_assert_eq(view.state, BREAKER_CLOSED);
    cr_assert_eq(view.window_calls, 4);
    cr_assert_eq(view.window_failures, 4);
    breaker_reconcile(test.set, 1, now + 2000 * TEST_MS);
    cr_assert_eq(test_view(late).window_calls, 0);
}

Test(breaker, a_count_window_keeps_only_the_last_calls)
{
    struct config_breaker config = test_config();
    config.min_calls = 20;
    uint32_t id = test_add("search", &config);
    test_calls(0, id, TEST_T0, 9, true, 1);
    breaker_reconcile(test.set, 0, TEST_T0);
    test_calls(0, id, TEST_T0, 15, false, 1);
    breaker_reconcile(test.set, 0, TEST_T0 + 10 * TEST_MS);
    struct breaker_view view = test_view(id);
    cr_assert_eq(view.state, BREAKER_CLOSED);
    cr_assert_eq(view.window_calls, 20);
    cr_assert_eq(view.window_failures, 5); /* the four oldest failures left the window */
    test_calls(1, id, TEST_T0, 9, true, 1);
    breaker_reconcile(test.set, 1, TEST_T0 + 20 * TEST_MS);
    view = test_view(id);
    cr_assert_eq(view.state, BREAKER_CLOSED); /* 9 of the last 20 */
    cr_assert_eq(view.window_failures, 9);
    test_calls(1, id, TEST_T0, 1, true, 1);
    breaker_reconcile(test.set, 1, TEST_T0 + 30 * TEST_MS);
    view = test_view(id);
    cr_assert_eq(view.state, BREAKER_OPEN); /* 10 of the last 20 */
    cr_assert_eq(view.window_calls, 20);
    cr_assert_eq(view.window_failures, 10);
}

Test(breaker, a_large_count_window_holds_exactly_window_calls)
{
    struct config_breaker config = test_config();
    config.window_calls = 1000; /* buckets of 16 calls */
    config.min_calls = 1000;
    uint32_t id = test_add("search", &config);
    uint64_t now = TEST_T0;
    for (uint32_t round = 0; round < 30; round++) {
        test_calls(round % TEST_CORES, id, now, 37, round % 3 == 0, 1);
        breaker_reconcile(test.set, round % TEST_CORES, now);
        now += TEST_RECONCILE_MS * TEST_MS;
        struct breaker_view view = test_view(id);
        cr_assert_eq(view.window_calls, (round + 1) * 37 < 1000 ? (round + 1) * 37 : 1000);
        cr_assert_leq(view.window_failures, view.window_calls);
    }
    /* The last 1000 calls hold 9 or 10 failing rounds of 37 (333..370). */
    struct breaker_view view = test_view(id);
    cr_assert_geq(view.window_failures, 300);
    cr_assert_leq(view.window_failures, 370);
    cr_assert_eq(view.state, BREAKER_CLOSED);
}

Test(breaker, open_denies_then_gives_exactly_probes_permits_across_cores)
{
    struct config_breaker config = test_config();
    uint32_t id = test_add("search", &config);
    test_open(id, TEST_T0);
    for (uint32_t core = 0; core < TEST_CORES; core++) {
        cr_assert_eq(test_acquire(core, id, TEST_T0 + 999 * TEST_MS), BREAKER_DENIED);
    }
    cr_assert_eq(test_view(id).state, BREAKER_OPEN);
    uint64_t now = TEST_T0 + 1000 * TEST_MS;
    uint32_t probes = 0;
    for (uint32_t round = 0; round < 3; round++) {
        for (uint32_t core = 0; core < TEST_CORES; core++) {
            enum breaker_permit permit = test_acquire(core, id, now);
            cr_assert_neq(permit, BREAKER_PERMITTED);
            probes += permit == BREAKER_PROBE ? 1 : 0;
        }
    }
    cr_assert_eq(probes, 3);
    struct breaker_view view = test_view(id);
    cr_assert_eq(view.state, BREAKER_HALF_OPEN);
    cr_assert_eq(view.probes_left, 0);
    cr_assert_eq(view.transitions, 2);
}

Test(breaker, a_reconcile_makes_it_half_open_when_open_ms_have_passed)
{
    struct config_breaker config = test_config();
    uint32_t id = test_add("search", &config);
    test_open(id, TEST_T0);
    breaker_reconcile(test.set, 2, TEST_T0 + 999 * TEST_MS);
    cr_assert_eq(test_view(id).state, BREAKER_OPEN);
    breaker_reconcile(test.set, 2, TEST_T0 + 1010 * TEST_MS);
    struct breaker_view view = test_view(id);
    cr_assert_eq(view.state, BREAKER_HALF_OPEN);
    cr_assert_eq(view.probes_left, 3);
    cr_assert_eq(view.open_until_ns, 0);
}

Test(breaker, a_probe_failure_reopens_it_at_once)
{
    struct config_breaker config = test_config();
    uint32_t id = test_add("search", &config);
    test_open(id, TEST_T0);
    uint64_t now = TEST_T0 + 1000 * TEST_MS;
    cr_assert_eq(test_acquire(0, id, now), BREAKER_PROBE);
    cr_assert_eq(test_acquire(1, id, now), BREAKER_PROBE);
    test_release(0, id, BREAKER_PROBE, false, now);
    cr_assert_eq(test_view(id).state, BREAKER_HALF_OPEN);
    now += 100 * TEST_MS;
    test_release(1, id, BREAKER_PROBE, true, now);
    struct breaker_view view = test_view(id);
    cr_assert_eq(view.state, BREAKER_OPEN);
    cr_assert_eq(view.opened_at_ns, now);
    cr_assert_eq(view.open_until_ns, now + 1000 * TEST_MS);
    cr_assert_eq(test_acquire(2, id, now + 999 * TEST_MS), BREAKER_DENIED);
    uint32_t probes = 0;
    for (uint32_t core = 0; core < TEST_CORES; core++) {
        probes += test_acquire(core, id, now + 1000 * TEST_MS) == BREAKER_PROBE ? 1 : 0;
    }
    cr_assert_eq(probes, 3); /* a fresh episode, with every permit */
}

Test(breaker, all_probes_succeeding_close_it_with_an_empty_window)
{
    struct config_breaker config = test_config();
    uint32_t id = test_add("search", &config);
    test_calls(1, id, TEST_T0, 5, false, 1);
    breaker_reconcile(test.set, 1, TEST_T0);
    test_calls(1, id, TEST_T0, 3, false, 1);
    breaker_reconcile(test.set, 1, TEST_T0 + 5 * TEST_MS); /* published, not folded */
    test_open(id, TEST_T0 + 5 * TEST_MS);
    cr_assert_eq(test_view(id).window_calls, 5);
    uint64_t now = TEST_T0 + 1005 * TEST_MS;
    for (uint32_t core = 0; core < 3; core++) {
        cr_assert_eq(test_acquire(core, id, now), BREAKER_PROBE);
    }
    for (uint32_t core = 0; core < 3; core++) {
        cr_assert_eq(test_view(id).state, BREAKER_HALF_OPEN);
        test_release(core, id, BREAKER_PROBE, false, now);
    }
    struct breaker_view view = test_view(id);
    cr_assert_eq(view.state, BREAKER_CLOSED);
    cr_assert_eq(view.window_calls, 0);
    cr_assert_eq(view.transitions, 3);
    /* The three calls published before it opened are not in the new window. */
    breaker_reconcile(test.set, 3, now + 10 * TEST_MS);
    cr_assert_eq(test_view(id).window_calls, 0);
    test_calls(2, id, now, 9, true, 1);
    breaker_reconcile(test.set, 2, now + 20 * TEST_MS);
    view = test_view(id);
    cr_assert_eq(view.state, BREAKER_CLOSED);
    cr_assert_eq(view.window_calls, 9);
    cr_assert_eq(view.window_failures, 9);
}

Test(breaker, a_call_permitted_before_it_opened_is_not_a_probe)
{
    struct config_breaker config = test_config();
    uint32_t id = test_add("search", &config);
    for (uint32_t i = 0; i < 11; i++) {
        cr_assert_eq(test_acquire(3, id, TEST_T0), BREAKER_PERMITTED);
    }
    test_open(id, TEST_T0);
    uint64_t now = TEST_T0 + 1000 * TEST_MS;
    for (uint32_t core = 0; core < 3; core++) {
        cr_assert_eq(test_acquire(core, id, now), BREAKER_PROBE);
    }
    for (uint32_t i = 0; i < 10; i++) {
        test_release(3, id, BREAKER_PERMITTED, true, now);
    }
    cr_assert_eq(test_view(id).state, BREAKER_HALF_OPEN); /* their failures do not re-open */
    test_release(0, id, BREAKER_PROBE, false, now);
    test_release(1, id, BREAKER_PROBE, false, now);
    test_release(3, id, BREAKER_PERMITTED, false, now);
    struct breaker_view view = test_view(id);
    cr_assert_eq(view.state, BREAKER_HALF_OPEN); /* its success is not the third */
    cr_assert_eq(view.probes_left, 0);
    test_release(2, id, BREAKER_PROBE, false, now);
    cr_assert_eq(test_view(id).state, BREAKER_CLOSED);
}

Test(breaker, a_probe_from_an_earlier_episode_is_not_counted)
{
    struct config_breaker config = test_config();
    uint32_t id = test_add("search", &config);
    test_open(id, TEST_T0);
    uint64_t now = TEST_T0 + 1000 * TEST_MS;
    cr_assert_eq(test_acquire(0, id, now), BREAKER_PROBE); /* reported late, below */
    cr_assert_eq(test_acquire(1, id, now), BREAKER_PROBE);
    test_release(1, id, BREAKER_PROBE, true, now);
    cr_assert_eq(test_view(id).state, BREAKER_OPEN);
    now += 1000 * TEST_MS;
    /* Core 0 still waits for its earlier probe, so it gets none of this episode. */
    cr_assert_eq(test_acquire(0, id, now), BREAKER_DENIED);
    cr_assert_eq(test_view(id).state, BREAKER_HALF_OPEN);
    for (uint32_t core = 1; core < TEST_CORES; core++) {
        cr_assert_eq(test_acquire(core, id, now), BREAKER_PROBE);
    }
    test_release(1, id, BREAKER_PROBE, false, now);
    test_release(2, id, BREAKER_PROBE, false, now);
    test_release(0, id, BREAKER_PROBE, false, now);
    cr_assert_eq(test_view(id).state, BREAKER_HALF_OPEN); /* the late one is not the third */
    cr_assert_eq(test_acquire(0, id, now), BREAKER_DENIED); /* permits all taken */
    test_release(3, id, BREAKER_PROBE, false, now);
    cr_assert_eq(test_view(id).state, BREAKER_CLOSED);
}

Test(breaker, a_late_probe_failure_does_not_reopen_it)
{
    struct config_breaker config = test_config();
    config.probes = 2;
    uint32_t id = test_add("search", &config);
    test_open(id, TEST_T0);
    uint64_t now = TEST_T0 + 1000 * TEST_MS;
    cr_assert_eq(test_acquire(0, id, now), BREAKER_PROBE); /* reported late, below */
    cr_assert_eq(test_acquire(1, id, now), BREAKER_PROBE);
    test_release(1, id, BREAKER_PROBE, true, now);
    now += 1000 * TEST_MS;
    cr_assert_eq(test_acquire(1, id, now), BREAKER_PROBE);
    cr_assert_eq(test_acquire(2, id, now), BREAKER_PROBE);
    test_release(0, id, BREAKER_PROBE, true, now);
    struct breaker_view view = test_view(id);
    cr_assert_eq(view.state, BREAKER_HALF_OPEN);
    cr_assert_eq(view.transitions, 4);
    test_release(1, id, BREAKER_PROBE, false, now);
    test_release(2, id, BREAKER_PROBE, false, now);
    cr_assert_eq(test_view(id).state, BREAKER_CLOSED);
}

static int test_series(const char *family, enum metrics_type type, const char *labels)
{
    int id = metrics_family(test.metrics, family, "Test lookup.", type);
    cr_assert_geq(id, 0);
    int series = metrics_series(test.metrics, id, labels);
    cr_assert_geq(series, 0);
    return series;
}

struct test_metrics {
    int state;
    int to[3];
};

static void test_metrics_expect(const struct test_metrics *series, int64_t state, int64_t closed,
                                int64_t half_open, int64_t open)
{
    cr_assert_eq(metrics_value(test.metrics, series->state), state);
    cr_assert_eq(metrics_value(test.metrics, series->to[BREAKER_CLOSED]), closed);
    cr_assert_eq(metrics_value(test.metrics, series->to[BREAKER_HALF_OPEN]), half_open);
    cr_assert_eq(metrics_value(test.metrics, series->to[BREAKER_OPEN]), open);
}

Test(breaker, transitions_are_counted_and_the_state_gauge_follows)
{
    struct config_breaker config = test_config();
    uint32_t id = test_add("search", &config);
    cr_assert_eq(breaker_add(test.set, "endpoint", "gpt", &config), 1);
    struct test_metrics series = {
        test_series("breaker_state", METRICS_GAUGE, "kind=\"tool\",name=\"search\"")};
    const char *to[] = {"closed", "half-open", "open"};
    for (uint32_t state = 0; state < 3; state++) {
        char labels[128];
        snprintf(labels, sizeof(labels), "kind=\"tool\",name=\"search\",to=\"%s\"", to[state]);
        series.to[state] = test_series("breaker_transitions_total", METRICS_COUNTER, labels);
    }
    test_metrics_expect(&series, 0, 0, 0, 0);
    test_open(id, TEST_T0); /* on core 0 */
    test_metrics_expect(&series, 2, 0, 0, 1);
    uint64_t now = TEST_T0 + 1000 * TEST_MS;
    cr_assert_eq(test_acquire(1, id, now), BREAKER_PROBE);
    test_metrics_expect(&series, 1, 0, 1, 1);
    test_release(1, id, BREAKER_PROBE, true, now);
    test_metrics_expect(&series, 2, 0, 1, 2);
    now += 1000 * TEST_MS;
    breaker_reconcile(test.set, 2, now);
    test_metrics_expect(&series, 1, 0, 2, 2);
    for (uint32_t core = 1; core < TEST_CORES; core++) {
        cr_assert_eq(test_acquire(core, id, now), BREAKER_PROBE);
        test_release(core, id, BREAKER_PROBE, false, now);
    }
    test_metrics_expect(&series, 0, 1, 2, 2);
    cr_assert_eq(test_view(id).transitions, 5);
    char *text = NULL;
    metrics_render(test.metrics, &text);
    cr_assert_not_null(text);
    cr_assert_not_null(strstr(text, "ringmaster_breaker_transitions_total{kind=\"tool\","
                                    "name=\"search\",to=\"open\"} 2\n"));
    cr_assert_not_null(
        strstr(text, "ringmaster_breaker_state{kind=\"endpoint\",name=\"gpt\"} 0\n"));
    free(text);
}

Test(breaker, add_refuses_more_than_breaker_max_and_views_name_them)
{
    struct config_breaker config = test_config();
    for (uint32_t i = 0; i < BREAKER_MAX; i++) {
        char name[32];
        snprintf(name, sizeof(name), "tool%u", i);
        cr_assert_eq(breaker_add(test.set, i % 2 == 0 ? "tool" : "endpoint", name, &config),
                     (int)i);
    }
    cr_assert_eq(breaker_add(test.set, "tool", "one-too-many", &config), -ENOSPC);
    cr_assert_eq(breaker_count(test.set), BREAKER_MAX);
    struct breaker_view view = test_view(BREAKER_MAX - 1);
    cr_assert_str_eq(view.kind, "endpoint");
    cr_assert_str_eq(view.name, "tool127");
    cr_assert_eq(view.state, BREAKER_CLOSED);
    cr_assert_eq(view.opened_at_ns, 0);
    cr_assert_eq(view.open_until_ns, 0);
    cr_assert_eq(view.probes_left, 0);
    cr_assert_str_eq(breaker_state_name(BREAKER_CLOSED), "closed");
    cr_assert_str_eq(breaker_state_name(BREAKER_HALF_OPEN), "half-open");
    cr_assert_str_eq(breaker_state_name(BREAKER_OPEN), "open");
}

/* Cross-core: one thread per simulated core, real time, open_ms of 1 so that the breaker
 * cycles many times. A probe's episode is known exactly when the generation read before and
 * after the acquire is the same (or the acquire itself made it half-open). */

#define CROSSCORE_THREADS TEST_CORES
#define CROSSCORE_RUN_NS (200 * TEST_MS)
#define CROSSCORE_LIMIT_NS (1500 * TEST_MS) /* a breaker that stops cycling fails here */
#define CROSSCORE_CLOSES_MIN 3
#define CROSSCORE_RECONCILE_EVERY 32
#define CROSSCORE_GENERATIONS 65536

struct crosscore_thread {
    pthread_t thread;
    uint32_t core;
    uint64_t probes;
    uint64_t unattributed;
};

static struct {
    uint32_t id;
    uint64_t start_ns;
    struct test_metrics series;
    uint32_t probes_by_generation[CROSSCORE_GENERATIONS];
    int viewer_stop;
} crosscore;

static uint64_t crosscore_now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec;
}

static uint32_t crosscore_random(uint32_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    return *state;
}

/* Runs for CROSSCORE_RUN_NS and until the breaker has closed CROSSCORE_CLOSES_MIN times
 * (a slow or starved machine still sees full cycles), at most CROSSCORE_LIMIT_NS. */
static bool crosscore_done(uint64_t now_ns)
{
    uint64_t elapsed = now_ns - crosscore.start_ns;
    int64_t closes = metrics_value(test.metrics, crosscore.series.to[BREAKER_CLOSED]);
    return elapsed >= CROSSCORE_LIMIT_NS ||
           (elapsed >= CROSSCORE_RUN_NS && closes >= CROSSCORE_CLOSES_MIN);
}

static void crosscore_attribute(struct crosscore_thread *thread,
                                const struct breaker_view *before,
                                const struct breaker_view *after)
{
    thread->probes++;
    bool same = before->transitions == after->transitions;
    bool made = before->state == BREAKER_OPEN && after->transitions == before->transitions + 1;
    if ((!same && !made) || after->transitions >= CROSSCORE_GENERATIONS) {
        thread->unattributed++;
        return;
    }
    __atomic_fetch_add(&crosscore.probes_by_generation[after->transitions], 1,
                       __ATOMIC_RELAXED);
}

static void crosscore_call(struct crosscore_thread *thread, uint32_t *random, uint64_t now)
{
    struct breaker_view before;
    struct breaker_view after;
    breaker_view(test.set, crosscore.id, &before);
    enum breaker_permit permit = breaker_acquire(test.set, thread->core, crosscore.id, now);
    breaker_view(test.set, crosscore.id, &after);
    if (permit == BREAKER_PROBE) {
        crosscore_attribute(thread, &before, &after);
    }
    if (permit != BREAKER_DENIED) {
        uint32_t roll = crosscore_random(random) % 100;
        bool failed = permit == BREAKER_PROBE ? roll < 25 : roll < 60;
        uint64_t duration = (crosscore_random(random) % 2000) * 1000;
        breaker_release(test.set, thread->core, crosscore.id, permit, failed, duration, now);
    }
}

static void *crosscore_run(void *argument)
{
    struct crosscore_thread *thread = argument;
    uint32_t random = 2463534242u + thread->core * 7919u;
    for (uint64_t i = 0;; i++) {
        uint64_t now = crosscore_now_ns();
        if (i % CROSSCORE_RECONCILE_EVERY == 0) {
            if (crosscore_done(now)) {
                return NULL;
            }
            breaker_reconcile(test.set, thread->core, now);
        }
        crosscore_call(thread, &random, now);
    }
}

/* An admin thread reading views while the cores work. */
static void *crosscore_view(void *argument)
{
    uint64_t bad = 0;
    (void)argument;
    while (!__atomic_load_n(&crosscore.viewer_stop, __ATOMIC_ACQUIRE)) {
        struct breaker_view view;
        breaker_view(test.set, crosscore.id, &view);
        bad += view.state > BREAKER_OPEN || view.probes_left > 3 ? 1 : 0;
        bad += view.state != BREAKER_OPEN && view.open_until_ns != 0 ? 1 : 0;
        bad += view.state != BREAKER_HALF_OPEN && view.probes_left != 0 ? 1 : 0;
    }
    return (void *)(uintptr_t)bad;
}

static struct test_metrics crosscore_series(void)
{
    struct test_metrics series = {
        test_series("breaker_state", METRICS_GAUGE, "kind=\"tool\",name=\"search\"")};
    const char *to[] = {"closed", "half-open", "open"};
    for (uint32_t state = 0; state < 3; state++) {
        char labels[128];
        snprintf(labels, sizeof(labels), "kind=\"tool\",name=\"search\",to=\"%s\"", to[state]);
        series.to[state] = test_series("breaker_transitions_total", METRICS_COUNTER, labels);
    }
    return series;
}

static void crosscore_check(uint64_t probes, uint64_t unattributed, uint32_t probes_max)
{
    uint64_t attributed = 0;
    for (uint32_t generation = 0; generation < CROSSCORE_GENERATIONS; generation++) {
        cr_assert_leq(crosscore.probes_by_generation[generation], probes_max);
        attributed += crosscore.probes_by_generation[generation];
    }
    cr_assert_eq(attributed + unattributed, probes);
    cr_assert_gt(attributed, 0);
    struct breaker_view view = test_view(crosscore.id);
    cr_assert_leq(view.state, BREAKER_OPEN);
    int64_t to[3];
    for (uint32_t state = 0; state < 3; state++) {
        to[state] = metrics_value(test.metrics, crosscore.series.to[state]);
    }
    cr_assert_eq(metrics_value(test.metrics, crosscore.series.state), (int64_t)view.state);
    cr_assert_eq((uint64_t)(to[0] + to[1] + to[2]), view.transitions);
    cr_assert_geq(to[BREAKER_CLOSED], CROSSCORE_CLOSES_MIN);
    cr_assert_geq(to[BREAKER_OPEN], to[BREAKER_HALF_OPEN]);
    cr_assert_geq(to[BREAKER_HALF_OPEN], to[BREAKER_CLOSED]);
    cr_assert_leq(probes, (uint64_t)to[BREAKER_HALF_OPEN] * probes_max);
    cr_log_info("breaker crosscore: %llu transitions, %llu probes (%llu unattributed)",
                (unsigned long long)view.transitions, (unsigned long long)probes,
                (unsigned long long)unattributed);
}

Test(crosscore_breaker, threads_hammering_one_breaker_never_exceed_the_probes)
{
    struct config_breaker config = test_config();
    config.min_calls = 5;
    config.open_ms = 1;
    config.slow_call_ms = 1;
    config.slow_percent = 90;
    memset(&crosscore, 0, sizeof(crosscore));
    crosscore.id = test_add("search", &config);
    crosscore.series = crosscore_series();
    crosscore.start_ns = crosscore_now_ns();
    pthread_t viewer;
    cr_assert_eq(pthread_create(&viewer, NULL, crosscore_view, NULL), 0);
    struct crosscore_thread threads[CROSSCORE_THREADS];
    for (uint32_t core = 0; core < CROSSCORE_THREADS; core++) {
        threads[core] = (struct crosscore_thread){.core = core};
        cr_assert_eq(pthread_create(&threads[core].thread, NULL, crosscore_run, &threads[core]),
                     0);
    }
    uint64_t probes = 0;
    uint64_t unattributed = 0;
    for (uint32_t core = 0; core < CROSSCORE_THREADS; core++) {
        cr_assert_eq(pthread_join(threads[core].thread, NULL), 0);
        probes += threads[core].probes;
        unattributed += threads[core].unattributed;
    }
    __atomic_store_n(&crosscore.viewer_stop, 1, __ATOMIC_RELEASE);
    void *bad = NULL;
    cr_assert_eq(pthread_join(viewer, &bad), 0);
    cr_assert_eq((uintptr_t)bad, 0);
    crosscore_check(probes, unattributed, config.probes);
}
