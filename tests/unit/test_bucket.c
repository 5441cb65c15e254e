/* Token buckets through their header, on a clock driven by hand: the burst, the refill rate
 * and its fractional carry, shares given back and topped up at reconcile, takes straight from
 * the pool (and an early refill) between ticks, corrections and debt, pauses, oversize takes,
 * the view. crosscore_bucket runs real threads, one per core, and checks that tokens are
 * conserved exactly; it also runs under ThreadSanitizer (make test-tsan). */

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "core/bucket.h"

#define MS 1000000ull
#define SECOND 1000000000ull
#define T0 (1000 * SECOND) /* any monotonic reading */

static struct bucket_set *bucket_test_set(uint32_t cores, uint32_t reconcile_ms)
{
    struct bucket_set *set = bucket_set_create(cores, reconcile_ms);
    cr_assert_not_null(set);
    return set;
}

static int bucket_test_add(struct bucket_set *set, uint64_t per_minute, uint64_t burst)
{
    int id = bucket_add(set, per_minute, burst);
    cr_assert_geq(id, 0);
    return id;
}

/* Takes one token at a time until refused; returns how many it got. */
static uint64_t bucket_test_drain(struct bucket_set *set, uint32_t core, int id, uint64_t now)
{
    uint64_t taken = 0;
    while (taken < 1000000 && bucket_take(set, core, (uint32_t)id, 1, now)) {
        taken++;
    }
    return taken;
}

static void bucket_test_reconcile_all(struct bucket_set *set, uint32_t cores, uint64_t now)
{
    for (uint32_t core = 0; core < cores; core++) {
        bucket_reconcile(set, core, now);
    }
}

static struct bucket_view bucket_test_view(struct bucket_set *set, int id)
{
    struct bucket_view view;
    bucket_view(set, (uint32_t)id, &view);
    return view;
}

Test(bucket, unlimited_always_takes)
{
    struct bucket_set *set = bucket_test_set(2, 10);
    int id = bucket_test_add(set, 0, 0);
    for (uint32_t i = 0; i < 1000; i++) {
        cr_assert(bucket_take(set, i % 2, (uint32_t)id, 1000000, T0));
    }
    bucket_reconcile(set, 0, T0 + 10 * MS);
    cr_assert(bucket_take(set, 0, (uint32_t)id, 1ull << 40, T0 + 10 * MS));
    cr_assert_eq(bucket_available(set, 1, (uint32_t)id, T0), INT64_MAX);
    cr_assert_eq(bucket_wait_ns(set, 1, (uint32_t)id, 1ull << 40, T0), 0);
    struct bucket_view view = bucket_test_view(set, id);
    cr_assert_eq(view.per_minute, 0);
    cr_assert_eq(view.available, INT64_MAX);
    cr_assert_eq(view.spent, 1000 * 1000000ull + (1ull << 40));
    bucket_set_destroy(set);
}

Test(bucket, new_bucket_holds_burst_and_refuses_beyond)
{
    struct bucket_set *set = bucket_test_set(1, 10);
    int id = bucket_test_add(set, 600, 20);
    cr_assert_eq(bucket_test_view(set, id).available, 20);
    cr_assert_eq(bucket_test_drain(set, 0, id, T0), 20);
    cr_assert_not(bucket_take(set, 0, (uint32_t)id, 1, T0));
    struct bucket_view view = bucket_test_view(set, id);
    cr_assert_eq(view.available, 0);
    cr_assert_eq(view.spent, 20);
    /* burst 0 is one second's worth, at least 1. */
    cr_assert_eq(bucket_test_view(set, bucket_test_add(set, 600, 0)).burst, 10);
    cr_assert_eq(bucket_test_view(set, bucket_test_add(set, 600, 0)).available, 10);
    cr_assert_eq(bucket_test_view(set, bucket_test_add(set, 30, 0)).burst, 1);
    bucket_set_destroy(set);
}

Test(bucket, add_refuses_beyond_the_limit)
{
    struct bucket_set *set = bucket_test_set(1, 10);
    for (int i = 0; i < BUCKET_MAX; i++) {
        cr_assert_eq(bucket_add(set, 60, 1), i);
    }
    cr_assert_eq(bucket_add(set, 60, 1), -ENOSPC);
    bucket_reconcile(set, 0, T0);
    cr_assert(bucket_take(set, 0, BUCKET_MAX - 1, 1, T0));
    bucket_set_destroy(set);
}

Test(bucket, refills_at_the_rate)
{
    struct bucket_set *set = bucket_test_set(1, 10);
    int id = bucket_test_add(set, 600, 10); /* 10 per second: one per 100 ms */
    bucket_reconcile(set, 0, T0);
    cr_assert_eq(bucket_test_drain(set, 0, id, T0), 10);
    cr_assert_not(bucket_take(set, 0, (uint32_t)id, 1, T0 + 100 * MS - 1));
    cr_assert(bucket_take(set, 0, (uint32_t)id, 1, T0 + 100 * MS));
    cr_assert_not(bucket_take(set, 0, (uint32_t)id, 1, T0 + 100 * MS));
    cr_assert_eq(bucket_available(set, 0, (uint32_t)id, T0 + SECOND), 9);
    cr_assert_eq(bucket_test_drain(set, 0, id, T0 + SECOND), 9);
    /* Ticks every 10 ms for 2.5 s: 25 tokens, with no take in between. */
    for (uint64_t t = T0 + SECOND; t <= T0 + 3500 * MS; t += 10 * MS) {
        bucket_reconcile(set, 0, t);
    }
    cr_assert_eq(bucket_test_drain(set, 0, id, T0 + 3500 * MS), 10); /* capped at burst */
    struct bucket_view view = bucket_test_view(set, id);
    cr_assert_eq(view.spent, 30);
    cr_assert_eq(view.available, 0);
    bucket_set_destroy(set);
}

Test(bucket, fractional_refill_is_carried)
{
    struct bucket_set *set = bucket_test_set(1, 10);
    int id = bucket_test_add(set, 1, 1); /* one token a minute, refilled in tiny steps */
    bucket_reconcile(set, 0, T0);
    cr_assert(bucket_take(set, 0, (uint32_t)id, 1, T0));
    const uint64_t step = 7919 * 1000; /* 7.919 ms, unrelated to the tick */
    uint64_t got = 0;
    for (uint64_t t = T0 + step; t < T0 + 600 * SECOND; t += step) {
        bucket_reconcile(set, 0, t);
        if (bucket_take(set, 0, (uint32_t)id, 1, t)) {
            got++;
            /* The n-th token comes at the first step at or after n minutes. */
            cr_assert_geq(t - T0, got * 60 * SECOND);
            cr_assert_lt(t - step - T0, got * 60 * SECOND);
        }
    }
    cr_assert_eq(got, 9);
    cr_assert(bucket_take(set, 0, (uint32_t)id, 1, T0 + 600 * SECOND));
    bucket_set_destroy(set);
}

Test(bucket, refill_does_not_drift_over_an_hour)
{
    struct bucket_set *set = bucket_test_set(1, 10);
    int id = bucket_test_add(set, 7, 1000); /* 60 s / 7 is no whole number of ns */
    bucket_reconcile(set, 0, T0);
    cr_assert_eq(bucket_test_drain(set, 0, id, T0), 1000);
    uint64_t t = T0;
    uint64_t state = 12345;
    while (t < T0 + 3600 * SECOND) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        t += 1 + (state >> 33) % (23 * MS); /* irregular steps, 11.5 ms on average */
        t = t < T0 + 3600 * SECOND ? t : T0 + 3600 * SECOND;
        bucket_reconcile(set, 0, t);
    }
    cr_assert_eq(bucket_available(set, 0, (uint32_t)id, t), 7 * 60);
    cr_assert_eq(bucket_available(set, 0, (uint32_t)id, t + 60 * SECOND / 7), 7 * 60);
    cr_assert_eq(bucket_available(set, 0, (uint32_t)id, t + 60 * SECOND / 7 + 1), 7 * 60 + 1);
    bucket_set_destroy(set);
}

Test(bucket, idle_share_is_given_back_at_reconcile)
{
    struct bucket_set *set = bucket_test_set(2, 10);
    int id = bucket_test_add(set, 1, 100); /* no refill to speak of within a second */
    bucket_test_reconcile_all(set, 2, T0);
    cr_assert(bucket_take(set, 1, (uint32_t)id, 30, T0));
    bucket_reconcile(set, 1, T0 + 10 * MS); /* demand 30: core 1 keeps a share of 30 */
    cr_assert_eq(bucket_available(set, 1, (uint32_t)id, T0 + 10 * MS), 30 + 40);
    cr_assert_eq(bucket_test_drain(set, 0, id, T0 + 10 * MS), 40);
    cr_assert_eq(bucket_test_view(set, id).available, 30);
    bucket_reconcile(set, 1, T0 + 20 * MS); /* idle for a tick: the share goes back */
    cr_assert_eq(bucket_available(set, 1, (uint32_t)id, T0 + 20 * MS), 30);
    cr_assert_eq(bucket_test_drain(set, 0, id, T0 + 20 * MS), 30);
    struct bucket_view view = bucket_test_view(set, id);
    cr_assert_eq(view.available, 0);
    cr_assert_eq(view.spent, 100);
    bucket_set_destroy(set);
}

Test(bucket, empty_share_takes_from_the_pool_between_ticks)
{
    struct bucket_set *set = bucket_test_set(2, 1000); /* ticks a second apart */
    int id = bucket_test_add(set, 600, 10);
    bucket_test_reconcile_all(set, 2, T0);
    cr_assert(bucket_take(set, 0, (uint32_t)id, 4, T0));
    bucket_reconcile(set, 0, T0 + SECOND); /* refill capped at 10; share 4, pool 6 */
    cr_assert_eq(bucket_available(set, 0, (uint32_t)id, T0 + SECOND), 10);
    cr_assert(bucket_take(set, 0, (uint32_t)id, 3, T0 + SECOND));
    cr_assert(bucket_take(set, 0, (uint32_t)id, 3, T0 + SECOND)); /* 1 from the share */
    cr_assert(bucket_take(set, 1, (uint32_t)id, 4, T0 + SECOND));
    cr_assert_not(bucket_take(set, 0, (uint32_t)id, 1, T0 + SECOND));
    /* The next tick is at T0 + 2 s; a take that the refill due by now pays runs it. */
    cr_assert_not(bucket_take(set, 1, (uint32_t)id, 2, T0 + SECOND + 100 * MS));
    cr_assert(bucket_take(set, 1, (uint32_t)id, 2, T0 + SECOND + 200 * MS));
    cr_assert(bucket_take(set, 0, (uint32_t)id, 1, T0 + SECOND + 300 * MS));
    cr_assert_not(bucket_take(set, 0, (uint32_t)id, 1, T0 + SECOND + 300 * MS));
    cr_assert_eq(bucket_test_view(set, id).spent, 4 + 3 + 3 + 4 + 2 + 1);
    bucket_set_destroy(set);
}

Test(bucket, negative_adjust_gives_back)
{
    struct bucket_set *set = bucket_test_set(1, 10);
    int id = bucket_test_add(set, 600, 10);
    bucket_reconcile(set, 0, T0);
    cr_assert_eq(bucket_test_drain(set, 0, id, T0), 10);
    bucket_adjust(set, 0, (uint32_t)id, -4);
    cr_assert_eq(bucket_available(set, 0, (uint32_t)id, T0), 4);
    cr_assert_eq(bucket_test_view(set, id).available, 4);
    cr_assert(bucket_take(set, 0, (uint32_t)id, 4, T0));
    cr_assert_not(bucket_take(set, 0, (uint32_t)id, 1, T0));
    cr_assert_eq(bucket_test_view(set, id).spent, 10);
    bucket_set_destroy(set);
}

Test(bucket, positive_adjust_is_debt_that_blocks_until_repaid)
{
    struct bucket_set *set = bucket_test_set(1, 10);
    int id = bucket_test_add(set, 600, 10);
    bucket_reconcile(set, 0, T0);
    cr_assert(bucket_take(set, 0, (uint32_t)id, 5, T0));
    bucket_adjust(set, 0, (uint32_t)id, 8);
    struct bucket_view view = bucket_test_view(set, id);
    cr_assert_eq(view.available, -3);
    cr_assert_eq(view.spent, 13);
    cr_assert_eq(bucket_available(set, 0, (uint32_t)id, T0), -3);
    cr_assert_not(bucket_take(set, 0, (uint32_t)id, 1, T0));
    cr_assert_eq(bucket_wait_ns(set, 0, (uint32_t)id, 1, T0), 400 * MS);
    cr_assert_not(bucket_take(set, 0, (uint32_t)id, 1, T0 + 300 * MS));
    cr_assert(bucket_take(set, 0, (uint32_t)id, 1, T0 + 400 * MS));
    cr_assert_not(bucket_take(set, 0, (uint32_t)id, 1, T0 + 400 * MS));
    view = bucket_test_view(set, id);
    cr_assert_eq(view.available, 0);
    cr_assert_eq(view.spent, 14);
    bucket_set_destroy(set);
}

Test(bucket, debt_is_repaid_at_reconcile)
{
    struct bucket_set *set = bucket_test_set(2, 10);
    int id = bucket_test_add(set, 1, 10);
    bucket_test_reconcile_all(set, 2, T0);
    bucket_adjust(set, 1, (uint32_t)id, 4); /* core 1 spent 4 it never took */
    bucket_reconcile(set, 1, T0 + 10 * MS);
    cr_assert_eq(bucket_available(set, 1, (uint32_t)id, T0 + 10 * MS), 6);
    bucket_reconcile(set, 1, T0 + 20 * MS); /* demand 0: holds nothing, owes nothing */
    cr_assert_eq(bucket_test_drain(set, 0, id, T0 + 20 * MS), 6);
    cr_assert_eq(bucket_test_view(set, id).available, 0);
    bucket_set_destroy(set);
}

Test(bucket, available_and_wait)
{
    struct bucket_set *set = bucket_test_set(1, 10);
    int id = bucket_test_add(set, 600, 10);
    bucket_reconcile(set, 0, T0);
    cr_assert_eq(bucket_available(set, 0, (uint32_t)id, T0), 10);
    cr_assert_eq(bucket_wait_ns(set, 0, (uint32_t)id, 10, T0), 0);
    cr_assert_eq(bucket_wait_ns(set, 0, (uint32_t)id, 11, T0), 0); /* above burst, full */
    cr_assert_eq(bucket_test_drain(set, 0, id, T0), 10);
    cr_assert_eq(bucket_available(set, 0, (uint32_t)id, T0), 0);
    cr_assert_eq(bucket_wait_ns(set, 0, (uint32_t)id, 1, T0), 100 * MS);
    cr_assert_eq(bucket_wait_ns(set, 0, (uint32_t)id, 3, T0), 300 * MS);
    cr_assert_eq(bucket_wait_ns(set, 0, (uint32_t)id, 25, T0), SECOND); /* until full */
    cr_assert_eq(bucket_wait_ns(set, 0, (uint32_t)id, 1, T0 + 30 * MS), 70 * MS);
    cr_assert_eq(bucket_available(set, 0, (uint32_t)id, T0 + 30 * MS), 0);
    bucket_reconcile(set, 0, T0 + 50 * MS); /* half a token carried */
    cr_assert_eq(bucket_wait_ns(set, 0, (uint32_t)id, 1, T0 + 50 * MS), 50 * MS);
    cr_assert_eq(bucket_wait_ns(set, 0, (uint32_t)id, 2, T0 + 60 * MS), 140 * MS);
    cr_assert_eq(bucket_available(set, 0, (uint32_t)id, T0 + 100 * MS), 1);
    cr_assert_eq(bucket_wait_ns(set, 0, (uint32_t)id, 1, T0 + 100 * MS), 0);
    cr_assert_eq(bucket_available(set, 0, (uint32_t)id, T0 + 60 * SECOND), 10);
    bucket_set_destroy(set);
}

Test(bucket, pause_refuses_then_refill_restarts_from_zero)
{
    struct bucket_set *set = bucket_test_set(1, 10);
    int id = bucket_test_add(set, 600, 10);
    bucket_reconcile(set, 0, T0);
    cr_assert(bucket_take(set, 0, (uint32_t)id, 3, T0));
    bucket_reconcile(set, 0, T0 + 50 * MS); /* half a token carried */
    uint64_t until = T0 + SECOND;
    bucket_pause(set, 0, (uint32_t)id, until);
    cr_assert_not(bucket_take(set, 0, (uint32_t)id, 1, T0 + 50 * MS));
    cr_assert_eq(bucket_available(set, 0, (uint32_t)id, T0 + 50 * MS), 0);
    cr_assert_eq(bucket_wait_ns(set, 0, (uint32_t)id, 1, T0 + 50 * MS), 950 * MS + 100 * MS);
    struct bucket_view view = bucket_test_view(set, id);
    cr_assert_eq(view.paused_until_ns, until);
    cr_assert_eq(view.available, 0);
    for (uint64_t t = T0 + 60 * MS; t < until; t += 10 * MS) {
        bucket_reconcile(set, 0, t);
        cr_assert_not(bucket_take(set, 0, (uint32_t)id, 1, t));
    }
    cr_assert_not(bucket_take(set, 0, (uint32_t)id, 1, until - 1));
    bucket_reconcile(set, 0, until);
    view = bucket_test_view(set, id);
    cr_assert_eq(view.paused_until_ns, 0);
    cr_assert_eq(view.available, 0); /* nothing for the time paused */
    cr_assert_not(bucket_take(set, 0, (uint32_t)id, 1, until + 60 * MS)); /* no old carry */
    cr_assert(bucket_take(set, 0, (uint32_t)id, 1, until + 100 * MS));
    cr_assert_not(bucket_take(set, 0, (uint32_t)id, 1, until + 100 * MS));
    cr_assert_eq(bucket_test_view(set, id).spent, 4);
    bucket_set_destroy(set);
}

Test(bucket, pause_empties_other_cores_shares_at_their_reconcile)
{
    struct bucket_set *set = bucket_test_set(2, 10);
    int id = bucket_test_add(set, 1, 100);
    bucket_test_reconcile_all(set, 2, T0);
    cr_assert(bucket_take(set, 0, (uint32_t)id, 5, T0));
    cr_assert(bucket_take(set, 1, (uint32_t)id, 20, T0));
    bucket_test_reconcile_all(set, 2, T0 + 10 * MS); /* shares 5 and 20, pool 50 */
    cr_assert_eq(bucket_test_view(set, id).available, 75);
    bucket_pause(set, 0, (uint32_t)id, T0 + SECOND);
    cr_assert_eq(bucket_test_view(set, id).available, 20); /* core 1's, until it reconciles */
    cr_assert_not(bucket_take(set, 1, (uint32_t)id, 1, T0 + 10 * MS));
    cr_assert_eq(bucket_available(set, 1, (uint32_t)id, T0 + 10 * MS), 0);
    bucket_reconcile(set, 1, T0 + 20 * MS);
    cr_assert_eq(bucket_test_view(set, id).available, 0);
    bucket_test_reconcile_all(set, 2, T0 + SECOND);
    cr_assert_not(bucket_take(set, 1, (uint32_t)id, 1, T0 + SECOND));
    cr_assert_not(bucket_take(set, 0, (uint32_t)id, 1, T0 + SECOND));
    cr_assert_eq(bucket_test_view(set, id).available, 0);
    cr_assert_eq(bucket_test_view(set, id).spent, 25);
    bucket_set_destroy(set);
}

Test(bucket, pause_applies_to_unlimited_buckets)
{
    struct bucket_set *set = bucket_test_set(1, 10);
    int id = bucket_test_add(set, 0, 0);
    bucket_pause(set, 0, (uint32_t)id, T0 + SECOND);
    cr_assert_not(bucket_take(set, 0, (uint32_t)id, 1, T0));
    cr_assert_eq(bucket_available(set, 0, (uint32_t)id, T0), 0);
    cr_assert_eq(bucket_wait_ns(set, 0, (uint32_t)id, 1, T0), SECOND);
    cr_assert(bucket_take(set, 0, (uint32_t)id, 1, T0 + SECOND));
    cr_assert_eq(bucket_test_view(set, id).paused_until_ns, T0 + SECOND);
    bucket_reconcile(set, 0, T0 + SECOND);
    cr_assert_eq(bucket_test_view(set, id).paused_until_ns, 0);
    bucket_set_destroy(set);
}

Test(bucket, amount_above_burst_once_full_leaves_debt)
{
    struct bucket_set *set = bucket_test_set(1, 10);
    int id = bucket_test_add(set, 600, 10);
    bucket_reconcile(set, 0, T0);
    cr_assert(bucket_take(set, 0, (uint32_t)id, 1, T0));
    cr_assert_not(bucket_take(set, 0, (uint32_t)id, 25, T0)); /* 9 of 10: not full */
    cr_assert_eq(bucket_wait_ns(set, 0, (uint32_t)id, 25, T0), 100 * MS);
    cr_assert(bucket_take(set, 0, (uint32_t)id, 25, T0 + 100 * MS));
    struct bucket_view view = bucket_test_view(set, id);
    cr_assert_eq(view.available, -15);
    cr_assert_eq(view.spent, 26);
    cr_assert_not(bucket_take(set, 0, (uint32_t)id, 1, T0 + 100 * MS));
    cr_assert_eq(bucket_wait_ns(set, 0, (uint32_t)id, 1, T0 + 100 * MS), 1600 * MS);
    for (uint64_t t = T0 + 110 * MS; t <= T0 + 1600 * MS; t += 10 * MS) {
        bucket_reconcile(set, 0, t);
    }
    cr_assert_eq(bucket_test_view(set, id).available, 0); /* the refill repaid 15 */
    cr_assert_not(bucket_take(set, 0, (uint32_t)id, 1, T0 + 1600 * MS));
    cr_assert(bucket_take(set, 0, (uint32_t)id, 1, T0 + 1700 * MS));
    bucket_set_destroy(set);
}

Test(bucket, view_sums_pool_and_shares)
{
    struct bucket_set *set = bucket_test_set(3, 10);
    int other = bucket_test_add(set, 60, 7);
    int id = bucket_test_add(set, 1, 100);
    bucket_test_reconcile_all(set, 3, T0);
    cr_assert(bucket_take(set, 0, (uint32_t)id, 10, T0));
    cr_assert(bucket_take(set, 1, (uint32_t)id, 20, T0));
    cr_assert(bucket_take(set, 2, (uint32_t)id, 5, T0));
    bucket_adjust(set, 2, (uint32_t)id, 2);
    bucket_adjust(set, 1, (uint32_t)id, -3);
    struct bucket_view view = bucket_test_view(set, id);
    cr_assert_eq(view.per_minute, 1);
    cr_assert_eq(view.burst, 100);
    cr_assert_eq(view.available, 100 - 34);
    cr_assert_eq(view.spent, 34);
    cr_assert_eq(view.paused_until_ns, 0);
    bucket_test_reconcile_all(set, 3, T0 + 10 * MS); /* shares 10, 20, 7; pool 29 */
    view = bucket_test_view(set, id);
    cr_assert_eq(view.available, 66);
    cr_assert_eq(view.spent, 34);
    cr_assert_eq(bucket_available(set, 1, (uint32_t)id, T0 + 10 * MS), 20 + 29);
    cr_assert_eq(bucket_available(set, 2, (uint32_t)id, T0 + 10 * MS), 7 + 29);
    view = bucket_test_view(set, other);
    cr_assert_eq(view.available, 7);
    cr_assert_eq(view.spent, 0);
    bucket_set_destroy(set);
}

/* ---- across threads ---- */

/* Each thread is one core: it takes 1 token (sometimes 3 and gives 2 back, sometimes spends
 * 1 more after the fact), reconciles whenever the shared simulated clock has moved, and moves
 * the clock one tick on when refused. The clock moves only once every core has reconciled at
 * the current tick (so all of them take part in every tick, however the threads are
 * scheduled) and only while the spending counted so far covers the refill up to the new time
 * plus CROSSCORE_MARGIN: the bucket is then never so full that a refill or a give-back
 * overflows burst, so no token is dropped and the final count must be exact:
 * spent + available == burst + refill. */
#define CROSSCORE_THREADS 4
#define CROSSCORE_PER_MINUTE 6000000ull /* 100 tokens per 1 ms tick */
#define CROSSCORE_BURST 1000
#define CROSSCORE_TICK_MS 1
#define CROSSCORE_TICKS 2000
#define CROSSCORE_MARGIN (CROSSCORE_THREADS + 1) /* each thread owes at most 1 */
#define CROSSCORE_REAL_LIMIT_NS (1500 * MS)

struct crosscore {
    struct bucket_set *set;
    uint32_t id;
    uint64_t real_deadline_ns;
    _Atomic uint64_t clock_ns;
    _Atomic uint64_t spent; /* net, counted after each take and its correction */
    _Atomic uint64_t violations;
    _Atomic uint64_t reconciled_ns[CROSSCORE_THREADS]; /* each core's last reconcile */
    pthread_barrier_t start; /* so that the threads overlap from the first tick */
};

struct crosscore_thread {
    pthread_t thread;
    struct crosscore *shared;
    uint32_t core;
    uint64_t random;
    uint64_t takes;
    uint64_t refusals;
};

static struct crosscore crosscore;

static uint64_t crosscore_real_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * SECOND + (uint64_t)now.tv_nsec;
}

static uint64_t crosscore_refill(uint64_t clock_ns)
{
    return (clock_ns - T0) * CROSSCORE_PER_MINUTE / (60 * SECOND);
}

static bool crosscore_tick_done(struct crosscore *shared, uint64_t clock_ns)
{
    for (uint32_t i = 0; i < CROSSCORE_THREADS; i++) {
        if (atomic_load(&shared->reconciled_ns[i]) != clock_ns) {
            return false;
        }
    }
    return true;
}

static void crosscore_spend(struct crosscore_thread *thread, uint64_t clock_ns)
{
    struct crosscore *shared = thread->shared;
    thread->random ^= thread->random << 13;
    thread->random ^= thread->random >> 7;
    thread->random ^= thread->random << 17;
    uint64_t kind = thread->random % 8;
    uint64_t amount = kind == 0 ? 3 : 1;
    if (!bucket_take(shared->set, thread->core, shared->id, amount, clock_ns)) {
        thread->refusals++;
        uint64_t next = clock_ns + CROSSCORE_TICK_MS * MS;
        if (crosscore_tick_done(shared, clock_ns) &&
            atomic_load(&shared->spent) >= crosscore_refill(next) + CROSSCORE_MARGIN) {
            atomic_compare_exchange_strong(&shared->clock_ns, &clock_ns, next);
        } else {
            sched_yield(); /* the others have spending or reconciling to do */
        }
        return;
    }
    uint64_t net = amount;
    if (kind == 0) {
        bucket_adjust(shared->set, thread->core, shared->id, -2);
        net = 1;
    } else if (kind == 1) {
        bucket_adjust(shared->set, thread->core, shared->id, 1);
        net = 2;
    }
    thread->takes++;
    uint64_t spent = atomic_fetch_add(&shared->spent, net) + net;
    /* Conservation as it runs: everything spent so far, against the refill up to a clock
     * read after it (each thread owes at most one token). */
    uint64_t bound = CROSSCORE_BURST + crosscore_refill(atomic_load(&shared->clock_ns)) +
                     CROSSCORE_THREADS;
    if (spent > bound) {
        atomic_fetch_add(&shared->violations, 1);
    }
}

static void *crosscore_run(void *argument)
{
    struct crosscore_thread *thread = argument;
    struct crosscore *shared = thread->shared;
    uint64_t reconciled_ns = 0;
    pthread_barrier_wait(&shared->start);
    for (;;) {
        uint64_t clock_ns = atomic_load(&shared->clock_ns);
        if (clock_ns >= T0 + CROSSCORE_TICKS * CROSSCORE_TICK_MS * MS ||
            crosscore_real_ns() > shared->real_deadline_ns) {
            return NULL;
        }
        if (clock_ns != reconciled_ns) {
            bucket_reconcile(shared->set, thread->core, clock_ns);
            reconciled_ns = clock_ns;
            atomic_store(&shared->reconciled_ns[thread->core], clock_ns);
        }
        crosscore_spend(thread, clock_ns);
    }
}

Test(crosscore_bucket, tokens_are_conserved_exactly, .timeout = 20)
{
    crosscore.set = bucket_test_set(CROSSCORE_THREADS, CROSSCORE_TICK_MS);
    int other = bucket_test_add(crosscore.set, 60, 0); /* reconciled alongside, never used */
    crosscore.id = (uint32_t)bucket_test_add(crosscore.set, CROSSCORE_PER_MINUTE, CROSSCORE_BURST);
    crosscore.real_deadline_ns = crosscore_real_ns() + CROSSCORE_REAL_LIMIT_NS;
    atomic_store(&crosscore.clock_ns, T0);
    atomic_store(&crosscore.spent, 0);
    atomic_store(&crosscore.violations, 0);
    for (uint32_t i = 0; i < CROSSCORE_THREADS; i++) {
        atomic_store(&crosscore.reconciled_ns[i], 0);
    }
    bucket_reconcile(crosscore.set, 0, T0); /* the refill clock starts at T0 */
    cr_assert_eq(pthread_barrier_init(&crosscore.start, NULL, CROSSCORE_THREADS), 0);
    struct crosscore_thread threads[CROSSCORE_THREADS];
    for (uint32_t i = 0; i < CROSSCORE_THREADS; i++) {
        threads[i] = (struct crosscore_thread){.shared = &crosscore, .core = i,
                                               .random = 0x9e3779b97f4a7c15ull * (i + 1)};
        cr_assert_eq(pthread_create(&threads[i].thread, NULL, crosscore_run, &threads[i]), 0);
    }
    uint64_t takes = 0;
    uint64_t refusals = 0;
    for (uint32_t i = 0; i < CROSSCORE_THREADS; i++) {
        cr_assert_eq(pthread_join(threads[i].thread, NULL), 0);
        takes += threads[i].takes;
        refusals += threads[i].refusals;
        cr_log_info("core %u: %llu takes", i, (unsigned long long)threads[i].takes);
    }
    cr_assert_eq(pthread_barrier_destroy(&crosscore.start), 0);
    uint64_t clock_ns = atomic_load(&crosscore.clock_ns);
    uint64_t spent = atomic_load(&crosscore.spent);
    cr_log_info("crosscore_bucket: %llu ticks, %llu takes, %llu refusals, %llu spent",
                (unsigned long long)((clock_ns - T0) / MS), (unsigned long long)takes,
                (unsigned long long)refusals, (unsigned long long)spent);
    cr_assert_geq(clock_ns, T0 + 20 * CROSSCORE_TICK_MS * MS); /* the run got somewhere */
    cr_assert_gt(refusals, 0);
    cr_assert_eq(atomic_load(&crosscore.violations), 0);
    /* Every core reconciles twice with no demand: shares go back, debts are repaid. */
    for (uint32_t round = 0; round < 2; round++) {
        bucket_test_reconcile_all(crosscore.set, CROSSCORE_THREADS, clock_ns);
    }
    struct bucket_view view = bucket_test_view(crosscore.set, (int)crosscore.id);
    cr_assert_eq(view.spent, spent);
    cr_assert_leq(spent, CROSSCORE_BURST + crosscore_refill(clock_ns) + CROSSCORE_THREADS);
    cr_assert_geq(view.available, -CROSSCORE_THREADS);
    cr_assert_eq((uint64_t)view.available + spent, CROSSCORE_BURST + crosscore_refill(clock_ns));
    cr_assert_leq(view.available, CROSSCORE_BURST);
    cr_assert_eq(bucket_test_view(crosscore.set, other).available, 1);
    bucket_set_destroy(crosscore.set);
}

/* Every core takes straight from the pool at once (no core holds a share, the clock stands
 * still): the CAS loop must hand out exactly burst tokens, never one more. */
#define CROSSCORE_POOL_BURST 100000

struct crosscore_racer {
    pthread_t thread;
    struct crosscore_race *race;
    uint32_t core;
    uint64_t got;
};

struct crosscore_race {
    struct bucket_set *set;
    uint32_t id;
    pthread_barrier_t start;
    _Atomic uint64_t tick;    /* the tick every core reconciles at next */
    _Atomic uint64_t arrived; /* reconciles done, over all ticks */
};

static struct crosscore_race race;

static void crosscore_race_start(uint32_t cores, uint64_t per_minute, uint64_t burst)
{
    race.set = bucket_test_set(cores, CROSSCORE_TICK_MS);
    race.id = (uint32_t)bucket_test_add(race.set, per_minute, burst);
    atomic_store(&race.tick, 1);
    atomic_store(&race.arrived, 0);
    cr_assert_eq(pthread_barrier_init(&race.start, NULL, cores), 0);
}

static uint64_t crosscore_race_join(struct crosscore_racer *racers, uint32_t cores,
                                    void *(*run)(void *))
{
    for (uint32_t i = 0; i < cores; i++) {
        racers[i] = (struct crosscore_racer){.race = &race, .core = i};
        cr_assert_eq(pthread_create(&racers[i].thread, NULL, run, &racers[i]), 0);
    }
    uint64_t got = 0;
    for (uint32_t i = 0; i < cores; i++) {
        cr_assert_eq(pthread_join(racers[i].thread, NULL), 0);
        got += racers[i].got;
    }
    cr_assert_eq(pthread_barrier_destroy(&race.start), 0);
    return got;
}

static void *crosscore_pool_run(void *argument)
{
    struct crosscore_racer *racer = argument;
    pthread_barrier_wait(&racer->race->start);
    for (uint64_t i = 0;; i++) {
        uint64_t amount = 1 + i % 3;
        if (bucket_take(racer->race->set, racer->core, racer->race->id, amount, T0)) {
            racer->got += amount;
        } else if (amount == 1) {
            return NULL;
        }
    }
}

Test(crosscore_bucket, pool_takes_hand_out_exactly_burst, .timeout = 20)
{
    crosscore_race_start(CROSSCORE_THREADS, 1, CROSSCORE_POOL_BURST);
    struct crosscore_racer racers[CROSSCORE_THREADS];
    uint64_t got = crosscore_race_join(racers, CROSSCORE_THREADS, crosscore_pool_run);
    cr_assert_eq(got, CROSSCORE_POOL_BURST);
    struct bucket_view view = bucket_test_view(race.set, (int)race.id);
    cr_assert_eq(view.available, 0);
    cr_assert_eq(view.spent, CROSSCORE_POOL_BURST);
    bucket_set_destroy(race.set);
}

/* Every core reconciles at the same simulated tick, all at once, and each tick's refill must
 * be added once: after CROSSCORE_TICKS ticks from an empty pool the bucket holds exactly the
 * refill for that time. */
static void *crosscore_refill_run(void *argument)
{
    struct crosscore_racer *racer = argument;
    pthread_barrier_wait(&racer->race->start);
    for (uint64_t tick = 1; tick <= CROSSCORE_TICKS; tick++) {
        while (atomic_load(&racer->race->tick) < tick) {
            sched_yield();
        }
        bucket_reconcile(racer->race->set, racer->core, T0 + tick * CROSSCORE_TICK_MS * MS);
        if (atomic_fetch_add(&racer->race->arrived, 1) + 1 == tick * CROSSCORE_THREADS) {
            atomic_store(&racer->race->tick, tick + 1);
        }
    }
    return NULL;
}

Test(crosscore_bucket, each_tick_refills_once, .timeout = 20)
{
    const uint64_t burst = 1000000; /* far above the refill of the run */
    crosscore_race_start(CROSSCORE_THREADS, CROSSCORE_PER_MINUTE, burst);
    bucket_reconcile(race.set, 0, T0);
    cr_assert(bucket_take(race.set, 0, race.id, burst, T0));
    struct crosscore_racer racers[CROSSCORE_THREADS];
    crosscore_race_join(racers, CROSSCORE_THREADS, crosscore_refill_run);
    uint64_t end_ns = T0 + CROSSCORE_TICKS * CROSSCORE_TICK_MS * MS;
    struct bucket_view view = bucket_test_view(race.set, (int)race.id);
    cr_assert_eq(view.available, (int64_t)crosscore_refill(end_ns));
    cr_assert_eq(bucket_available(race.set, 1, race.id, end_ns), view.available);
    bucket_set_destroy(race.set);
}
