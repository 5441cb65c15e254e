/* Reactors on their own: cross-core messages, timers, ordered shutdown. The crosscore_ suite
 * also runs under ThreadSanitizer. */

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "core/reactor.h"
#include "core/timer.h"

#define PING_ROUNDS 20000

struct ping_state {
    struct reactor_group *group;
    uint64_t received[REACTOR_MAX];
    uint64_t last_value[REACTOR_MAX];
    int out_of_order;
};

static struct ping_state ping;

static void ping_handler(struct reactor *target, struct reactor_message *message);

/* Each message carries a sequence number; the receiver checks the per-sender order and
 * replies to the next reactor until every round is done. */
static void ping_send(struct reactor *from, uint64_t value)
{
    uint32_t count = reactor_group_size(ping.group);
    uint32_t target = (reactor_index(from) + 1) % count;
    struct reactor_message message = {.handler = ping_handler, .value = value};
    while (reactor_post(from, target, &message) != 0) {
        cr_assert_fail("mailbox full with one message in flight");
    }
}

static void ping_handler(struct reactor *target, struct reactor_message *message)
{
    uint32_t index = reactor_index(target);
    uint32_t count = reactor_group_size(ping.group);
    if (ping.last_value[index] != 0 && message->value != ping.last_value[index] + count) {
        ping.out_of_order++;
    }
    ping.last_value[index] = message->value;
    ping.received[index]++;
    if (message->value < PING_ROUNDS) {
        ping_send(target, message->value + 1);
    } else {
        reactor_group_stop(ping.group);
    }
}

static int ping_setup(struct reactor *reactor, void *context)
{
    (void)context;
    if (reactor_index(reactor) == 0) {
        ping_send(reactor, 1);
    }
    return 0;
}

Test(crosscore_reactor, messages_travel_in_order_between_reactors)
{
    memset(&ping, 0, sizeof(ping));
    struct reactor_group_config config = {
        .reactors = 2, .queue_depth = 64, .setup = ping_setup, .drain_timeout_ms = 1000};
    cr_assert_eq(reactor_group_create(&config, &ping.group), 0);
    cr_assert_eq(reactor_group_start(ping.group), 0);
    reactor_group_join(ping.group);
    cr_assert_eq(ping.received[0] + ping.received[1], PING_ROUNDS);
    cr_assert_eq(ping.out_of_order, 0);
    reactor_group_destroy(ping.group);
}

static int failing_setup(struct reactor *reactor, void *context)
{
    (void)context;
    return reactor_index(reactor) == 1 ? -EADDRINUSE : 0;
}

Test(crosscore_reactor, a_failed_setup_fails_the_start)
{
    struct reactor_group *group = NULL;
    struct reactor_group_config config = {
        .reactors = 2, .queue_depth = 64, .setup = failing_setup, .drain_timeout_ms = 100};
    cr_assert_eq(reactor_group_create(&config, &group), 0);
    cr_assert_eq(reactor_group_start(group), -EADDRINUSE);
    reactor_group_destroy(group);
}

struct timer_probe {
    struct timer_entry entry;
    int fired;
};

static void timer_probe_expired(struct timer_entry *entry)
{
    ((struct timer_probe *)entry)->fired++;
}

Test(timer, fixed_duration_queue_expires_in_order_and_cancels)
{
    struct timer_queue queue;
    timer_queue_init(&queue, 100);
    struct timer_probe probes[3] = {0};
    for (int i = 0; i < 3; i++) {
        timer_entry_init(&probes[i].entry, timer_probe_expired);
        timer_arm(&queue, &probes[i].entry, (uint64_t)i * 10);
    }
    timer_cancel(&probes[1].entry);
    timer_queue_expire(&queue, 105);
    cr_assert_eq(probes[0].fired, 1);
    cr_assert_eq(probes[1].fired, 0);
    cr_assert_eq(probes[2].fired, 0);
    timer_arm(&queue, &probes[0].entry, 105); /* re-armed: moves behind probe 2 */
    timer_queue_expire(&queue, 120);
    cr_assert_eq(probes[2].fired, 1);
    cr_assert_eq(probes[0].fired, 1);
    cr_assert(timer_armed(&probes[0].entry));
    timer_queue_expire(&queue, 205);
    cr_assert_eq(probes[0].fired, 2);
    cr_assert(!timer_armed(&probes[0].entry));
}
