#ifndef RM_TIMER_H
#define RM_TIMER_H

/* Fixed-duration timeout queues. Every entry of a queue waits the same duration, so
 * appending keeps the queue sorted by deadline: arming, cancelling and expiring are O(1) per
 * entry, with no heap and no allocation (the approach h2o takes for its timeouts). A reactor
 * expires its queues from a tick hook; one-shot timers of other durations use io_uring
 * timeouts directly. */

#include <stdbool.h>
#include <stdint.h>

struct timer_entry {
    struct timer_entry *previous;
    struct timer_entry *next;
    uint64_t deadline_ns;
    void (*expire)(struct timer_entry *entry);
};

struct timer_queue {
    struct timer_entry sentinel;
    uint64_t duration_ns;
};

void timer_queue_init(struct timer_queue *queue, uint64_t duration_ns);
void timer_entry_init(struct timer_entry *entry, void (*expire)(struct timer_entry *entry));
/* (Re)arms entry to expire duration_ns after now_ns; moves it to the queue's tail. */
void timer_arm(struct timer_queue *queue, struct timer_entry *entry, uint64_t now_ns);
void timer_cancel(struct timer_entry *entry);
bool timer_armed(const struct timer_entry *entry);
/* Unlinks and calls every entry whose deadline is <= now_ns, oldest first. An expire
 * callback may re-arm or cancel any entry, including others of the same queue. */
void timer_queue_expire(struct timer_queue *queue, uint64_t now_ns);

#endif
