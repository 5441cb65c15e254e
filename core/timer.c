#include "core/timer.h"

#include <stddef.h>

#include "core/rm_assert.h"

void timer_queue_init(struct timer_queue *queue, uint64_t duration_ns)
{
    RM_ASSERT(duration_ns > 0);
    queue->sentinel.previous = &queue->sentinel;
    queue->sentinel.next = &queue->sentinel;
    queue->sentinel.expire = NULL;
    queue->duration_ns = duration_ns;
}

void timer_entry_init(struct timer_entry *entry, void (*expire)(struct timer_entry *entry))
{
    RM_ASSERT(expire != NULL);
    entry->previous = NULL;
    entry->next = NULL;
    entry->deadline_ns = 0;
    entry->expire = expire;
}

bool timer_armed(const struct timer_entry *entry) { return entry->next != NULL; }

void timer_cancel(struct timer_entry *entry)
{
    if (!timer_armed(entry)) {
        return;
    }
    RM_ASSERT(entry->previous != NULL);
    entry->previous->next = entry->next;
    entry->next->previous = entry->previous;
    entry->previous = NULL;
    entry->next = NULL;
}

void timer_arm(struct timer_queue *queue, struct timer_entry *entry, uint64_t now_ns)
{
    RM_ASSERT(entry->expire != NULL);
    RM_ASSERT(entry != &queue->sentinel);
    timer_cancel(entry);
    entry->deadline_ns = now_ns + queue->duration_ns;
    struct timer_entry *tail = queue->sentinel.previous;
    RM_DEBUG_ASSERT(tail == &queue->sentinel || tail->deadline_ns <= entry->deadline_ns);
    entry->previous = tail;
    entry->next = &queue->sentinel;
    tail->next = entry;
    queue->sentinel.previous = entry;
}

void timer_queue_expire(struct timer_queue *queue, uint64_t now_ns)
{
    RM_ASSERT(queue->sentinel.next != NULL);
    while (queue->sentinel.next != &queue->sentinel) {
        struct timer_entry *entry = queue->sentinel.next;
        if (entry->deadline_ns > now_ns) {
            return;
        }
        timer_cancel(entry);
        entry->expire(entry);
    }
}
