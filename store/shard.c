#include "store/shard.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/log.h"
#include "core/rm_assert.h"
#include "store/cache.h"
#include "store/commit.h"
#include "store/compact.h"
#include "store/hint.h"
#include "store/prefill.h"
#include "store/read.h"
#include "store/recover.h"
#include "store/write.h"

struct store_shard *store_shard_current(struct store *store)
{
    struct reactor *reactor = reactor_current();
    RM_ASSERT(reactor != NULL); /* the store is used from reactor threads only */
    uint32_t index = reactor_index(reactor);
    RM_ASSERT(index < store->shard_count);
    return store->shards[index];
}

_Thread_local struct reactor *store_shard_thread_reactor;

uint64_t store_shard_unix_ns(void)
{
    struct timespec now;
    /* Coarse is enough for record timestamps and TTLs, and never a syscall. */
    clock_gettime(CLOCK_REALTIME_COARSE, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

struct store_segment *store_shard_segment(struct store_shard *shard, uint32_t id)
{
    RM_ASSERT(shard->segment_count <= STORE_SEGMENTS_MAX);
    if (shard->active != NULL && shard->active->id == id) {
        return shard->active;
    }
    uint32_t low = 0;
    uint32_t high = shard->segment_count;
    while (low < high) {
        uint32_t middle = low + (high - low) / 2;
        if (shard->segments[middle]->id < id) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    if (low < shard->segment_count && shard->segments[low]->id == id) {
        return shard->segments[low];
    }
    return NULL;
}

int store_shard_segment_add(struct store_shard *shard, struct store_segment *segment)
{
    RM_ASSERT(segment->shard == shard);
    if (shard->segment_count >= STORE_SEGMENTS_MAX) {
        return -ENOSPC;
    }
    /* Ids only grow, so a new segment goes last. */
    RM_ASSERT(shard->segment_count == 0 ||
              shard->segments[shard->segment_count - 1]->id < segment->id);
    shard->segments[shard->segment_count++] = segment;
    return 0;
}

void store_shard_segment_remove(struct store_shard *shard, struct store_segment *segment)
{
    RM_ASSERT(segment != shard->active);
    for (uint32_t i = 0; i < shard->segment_count; i++) {
        if (shard->segments[i] == segment) {
            memmove(&shard->segments[i], &shard->segments[i + 1],
                    (shard->segment_count - i - 1) * sizeof(shard->segments[0]));
            shard->segment_count--;
            return;
        }
    }
    RM_ASSERT(!"segment not in its shard's table");
}

bool store_shard_unsynced(const struct store_shard *owner, const struct store_snapshot *snapshot)
{
    return snapshot->batch_sequence > rm_atomic_load_64(&owner->synced_sequence);
}

struct store_snapshot *store_shard_swap(struct store_shard *shard, struct store_entry *entry,
                                        struct store_snapshot *snapshot)
{
    struct store_snapshot *previous = entry->snapshot; /* the owner is the only writer */
    RM_ASSERT(previous != snapshot);
    store_index_publish(entry, snapshot);
    if (previous != NULL) {
        struct store_segment *segment = store_shard_segment(shard, previous->segment_id);
        RM_ASSERT(segment != NULL && segment->live_bytes >= previous->record_length);
        segment->live_bytes -= previous->record_length;
    }
    if (snapshot != NULL) {
        struct store_segment *segment = store_shard_segment(shard, snapshot->segment_id);
        RM_ASSERT(segment != NULL);
        segment->live_bytes += snapshot->record_length;
    }
    store_cache_note(shard, entry, previous, snapshot);
    return previous;
}

int store_shard_fault(struct store_shard *shard, int result)
{
    struct store *store = shard->store;
    uint32_t countdown = __atomic_load_n(&store->fault_countdown, __ATOMIC_RELAXED);
    while (countdown > 0) {
        if (__atomic_compare_exchange_n(&store->fault_countdown, &countdown, countdown - 1,
                                        false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            return countdown == 1 ? __atomic_load_n(&store->fault_error, __ATOMIC_RELAXED)
                                  : result;
        }
    }
    return result;
}

static void store_shard_list_append(struct store_request **head, struct store_request **tail,
                                    struct store_request *request)
{
    RM_ASSERT(request->next == NULL);
    if (*tail == NULL) {
        *head = request;
    } else {
        (*tail)->next = request;
    }
    *tail = request;
}

static struct store_request *store_shard_list_pop(struct store_request **head,
                                                  struct store_request **tail)
{
    struct store_request *request = *head;
    if (request != NULL) {
        *head = request->next;
        if (*head == NULL) {
            *tail = NULL;
        }
        request->next = NULL;
    }
    return request;
}

static void store_shard_post(struct store_shard *shard, uint32_t target,
                             struct store_outbox *outbox,
                             void (*handler)(struct reactor *, struct reactor_message *));
static void store_shard_reply_handler(struct reactor *target, struct reactor_message *message);
static void store_shard_execute_handler(struct reactor *target, struct reactor_message *message);

/* Queues the request for `target`; a list long enough goes at once. */
static void store_shard_outbox_append(struct store_shard *shard, uint32_t target,
                                      struct store_outbox *outbox, struct store_request *request,
                                      void (*handler)(struct reactor *, struct reactor_message *))
{
    store_shard_list_append(&outbox->head, &outbox->tail, request);
    outbox->count++;
    if (outbox->count >= STORE_OUTBOX_POST_AT) {
        store_shard_post(shard, target, outbox, handler);
    }
    reactor_keep_awake(shard->reactor);
}

/* Takes a posted list apart; each request's next is cleared before it is handed on, since
 * whoever gets it may reuse it at once. */
static struct store_request *store_shard_list_take(struct store_request **list)
{
    struct store_request *request = *list;
    if (request != NULL) {
        *list = request->next;
        request->next = NULL;
    }
    return request;
}

static void store_shard_reply_handler(struct reactor *target, struct reactor_message *message)
{
    struct store_request *list = message->pointer;
    STORE_TSAN_ACQUIRE(list); /* pairs with the release of the list's head at its post */
    struct store_shard *origin = list->store->shards[reactor_index(target)];
    struct store_request *request;
    while ((request = store_shard_list_take(&list)) != NULL) {
        RM_ASSERT(request->origin == origin->index);
        store_shard_deliver(origin, request);
    }
}

void store_shard_finish(struct store_shard *shard, struct store_request *request)
{
    store_shard_assert_owner(shard);
    RM_ASSERT(request->next == NULL);
    if (request->origin == shard->index) {
        store_shard_list_append(&shard->done_head, &shard->done_tail, request);
        return;
    }
    store_shard_outbox_append(shard, request->origin, &shard->replies[request->origin], request,
                              store_shard_reply_handler);
}

/* A batch's lookups are started ahead of the request being run, one level at a time: the
 * slot of the request LEAD_DISTANCE * 3 ahead, the entry of the one LEAD_DISTANCE * 2 ahead
 * (its slot has arrived by then), the snapshot of the one LEAD_DISTANCE ahead. Each level's
 * cache miss overlaps the runs of the requests before it, where a lookup started when its
 * request ran waited for each level in turn. A get in the local batch may be of another
 * shard's key: it only costs useless prefetches. */
#define STORE_SHARD_LEAD_DISTANCE 4u

struct store_shard_leads {
    const struct store_request *slot; /* the next request of each level; NULL: past the end */
    const struct store_request *entry;
    const struct store_request *snapshot;
    /* What the entry level found, for the snapshot level LEAD_DISTANCE requests later. */
    const struct store_entry *found[STORE_SHARD_LEAD_DISTANCE];
    uint32_t entries;   /* requests the entry level passed */
    uint32_t snapshots; /* requests the snapshot level passed */
};

static void store_shard_lead_slot(struct store_shard *shard, struct store_shard_leads *leads)
{
    if (leads->slot != NULL) {
        store_index_prefetch(&shard->keys, leads->slot->hash);
        leads->slot = leads->slot->next;
    }
}

static void store_shard_lead_entry(struct store_shard *shard, struct store_shard_leads *leads)
{
    if (leads->entry != NULL) {
        const struct store_entry *entry = store_index_peek(&shard->keys, leads->entry->hash);
        if (entry != NULL) {
            __builtin_prefetch(entry);
        }
        leads->found[leads->entries++ % STORE_SHARD_LEAD_DISTANCE] = entry;
        leads->entry = leads->entry->next;
    }
}

static void store_shard_lead_snapshot(struct store_shard_leads *leads)
{
    if (leads->snapshot != NULL) {
        /* The entry level found this request's entry and has not reused its ring slot. */
        RM_ASSERT(leads->snapshots < leads->entries);
        RM_ASSERT(leads->entries - leads->snapshots <= STORE_SHARD_LEAD_DISTANCE);
        const struct store_entry *entry =
            leads->found[leads->snapshots++ % STORE_SHARD_LEAD_DISTANCE];
        if (entry != NULL && entry->snapshot != NULL) {
            __builtin_prefetch(entry->snapshot);
        }
        leads->snapshot = leads->snapshot->next;
    }
}

static void store_shard_execute_one(struct store_shard *shard, struct store_request *request,
                                    uint64_t now_unix_ns)
{
    if (request->operation == STORE_OPERATION_GET) {
        /* A get made on this reactor, queued only to keep its place behind the writes
         * before it: it is resolved at delivery. */
        RM_ASSERT(request->origin == shard->index);
        store_shard_finish(shard, request);
        return;
    }
    RM_ASSERT(request->shard == shard->index);
    if (request->operation == STORE_OPERATION_GET_MISS) {
        store_cache_read(shard, request);
    } else {
        store_write_execute(shard, request, now_unix_ns);
    }
}

/* Runs a batch of requests on their owner (this reactor's shard), in order, in one epoch
 * section and with one clock read: a batch shares a coarse timestamp anyway. */
static void store_shard_execute_list(struct store_shard *shard, struct store_request *list)
{
    store_shard_assert_owner(shard);
    store_index_section_begin(shard->epoch_record);
    struct store_shard_leads leads = {.slot = list, .entry = list, .snapshot = list};
    /* In each step the snapshot level goes first: it reads the ring slot that the entry level
     * then fills for the request LEAD_DISTANCE further on. */
    for (uint32_t step = 0; step < STORE_SHARD_LEAD_DISTANCE * 3; step++) {
        if (step >= STORE_SHARD_LEAD_DISTANCE * 2) {
            store_shard_lead_snapshot(&leads);
        }
        if (step >= STORE_SHARD_LEAD_DISTANCE) {
            store_shard_lead_entry(shard, &leads);
        }
        store_shard_lead_slot(shard, &leads);
    }
    uint64_t now_unix_ns = store_shard_unix_ns();
    struct store_request *request;
    while ((request = store_shard_list_take(&list)) != NULL) {
        /* Every lead is ahead of request: their next pointers are still intact. */
        store_shard_lead_snapshot(&leads);
        store_shard_lead_entry(shard, &leads);
        store_shard_lead_slot(shard, &leads);
        store_shard_execute_one(shard, request, now_unix_ns);
    }
    store_index_section_end(shard->epoch_record);
}

static void store_shard_execute_handler(struct reactor *target, struct reactor_message *message)
{
    struct store_request *list = message->pointer;
    STORE_TSAN_ACQUIRE(list); /* pairs with the release of the list's head at its post */
    struct store_shard *owner = list->store->shards[reactor_index(target)];
    store_shard_execute_list(owner, list);
}

static void store_shard_local_append(struct store_shard *shard, struct store_request *request)
{
    RM_ASSERT(shard->local.count < STORE_OUTBOX_REQUESTS_MAX);
    store_shard_list_append(&shard->local.head, &shard->local.tail, request);
    shard->local.count++;
    reactor_keep_awake(shard->reactor);
}

static void store_shard_execute_local(struct store_shard *shard)
{
    struct store_request *list = shard->local.head;
    if (list != NULL) {
        shard->local = (struct store_outbox){0};
        store_shard_execute_list(shard, list);
        RM_ASSERT(shard->local.head == NULL); /* running a request never makes another */
    }
}

/* Both calls below run on the request's origin, which store_prepare took from the calling
 * reactor. */
int store_shard_dispatch(struct store *store, struct store_request *request)
{
    RM_ASSERT(request->origin < store->shard_count);
    struct store_shard *here = store->shards[request->origin];
    store_shard_assert_owner(here);
    bool local = request->shard == here->index;
    struct store_outbox *outbox = local ? &here->local : &here->requests[request->shard];
    if (outbox->count >= STORE_OUTBOX_REQUESTS_MAX) {
        return -EAGAIN;
    }
    if (local) {
        store_shard_local_append(here, request);
    } else {
        store_shard_outbox_append(here, request->shard, outbox, request,
                                  store_shard_execute_handler);
    }
    return 0;
}

int store_shard_read(struct store *store, struct store_request *request)
{
    RM_ASSERT(request->origin < store->shard_count);
    struct store_shard *here = store->shards[request->origin];
    store_shard_assert_owner(here);
    RM_ASSERT(request->operation == STORE_OPERATION_GET);
    if (here->local.head == NULL) {
        store_shard_finish(here, request);
        return 0;
    }
    if (here->local.count >= STORE_OUTBOX_REQUESTS_MAX) {
        return -EAGAIN;
    }
    store_shard_local_append(here, request);
    return 0;
}

/* Posts the list as one message; a full mailbox keeps it for the next tick. After a
 * successful post the target may run and reuse the requests at once: nothing here touches
 * them afterwards. */
static void store_shard_post(struct store_shard *shard, uint32_t target,
                             struct store_outbox *outbox,
                             void (*handler)(struct reactor *, struct reactor_message *))
{
    if (outbox->head == NULL) {
        return;
    }
    RM_ASSERT(target != shard->index);
    struct reactor_message message = {.handler = handler, .pointer = outbox->head};
    STORE_TSAN_RELEASE(outbox->head);
    if (reactor_post(shard->reactor, target, &message) == 0) {
        *outbox = (struct store_outbox){0};
    }
}

static void store_shard_post_all(struct store_shard *shard)
{
    for (uint32_t target = 0; target < shard->store->shard_count; target++) {
        store_shard_post(shard, target, &shard->requests[target], store_shard_execute_handler);
        store_shard_post(shard, target, &shard->replies[target], store_shard_reply_handler);
    }
}

static bool store_shard_outboxes_empty(const struct store_shard *shard)
{
    for (uint32_t target = 0; target < shard->store->shard_count; target++) {
        if (shard->requests[target].head != NULL || shard->replies[target].head != NULL) {
            return false;
        }
    }
    return true;
}

static enum store_stats_operation store_shard_stats_operation(uint8_t operation)
{
    switch (operation) {
    case STORE_OPERATION_GET:
    case STORE_OPERATION_GET_MISS:
        return STORE_STATS_GET;
    case STORE_OPERATION_DELETE:
        return STORE_STATS_DELETE;
    default:
        return STORE_STATS_PUT;
    }
}

void store_shard_deliver(struct store_shard *shard, struct store_request *request)
{
    store_shard_assert_owner(shard);
    RM_ASSERT(request->origin == shard->index);
    if (request->operation == STORE_OPERATION_GET) {
        store_read_resolve(shard, request);
        return;
    }
    const struct store_stats *stats = &shard->store->stats;
    enum store_stats_operation operation = store_shard_stats_operation(request->operation);
    store_stats_count(&shard->tally, operation, request->result.status);
    bool read = operation == STORE_STATS_GET;
    if (store_stats_latency_sampled(&shard->tally, read ? STORE_STATS_READ_LATENCY
                                                        : STORE_STATS_WRITE_LATENCY)) {
        /* The loop's clock, like started_ns: a clock read per request cost 5% of the CAS
         * path; a latency within one loop iteration reads as 0. */
        store_stats_observe(stats, shard->index, read ? stats->read_latency : stats->write_latency,
                            reactor_now_ns(shard->reactor) - request->started_ns);
    }
    /* The callback may reuse the request at once: take what the store still owns first. */
    uint8_t *owned = request->owned_value;
    request->owned_value = NULL;
    request->callback(request, &request->result);
    rm_free(owned);
}

/* Runs the local batch and delivers what is done, in turns, since callbacks make new
 * requests: up to STORE_DONE_BATCH deliveries per tick, so that a tick ends and the commit
 * batch goes out. */
static void store_shard_deliver_done(struct store_shard *shard)
{
    uint32_t delivered = 0;
    while (delivered < STORE_DONE_BATCH) {
        store_shard_execute_local(shard);
        if (shard->done_head == NULL) {
            return;
        }
        while (delivered < STORE_DONE_BATCH && shard->done_head != NULL) {
            store_shard_deliver(shard,
                                store_shard_list_pop(&shard->done_head, &shard->done_tail));
            delivered++;
        }
    }
}

static void store_shard_publish_gauges(struct store_shard *shard)
{
    uint64_t total = 0;
    uint64_t live = 0;
    for (uint32_t i = 0; i < shard->segment_count; i++) {
        total += shard->segments[i]->size;
        live += shard->segments[i]->live_bytes;
    }
    RM_ASSERT(live <= total);
    const struct store_stats *stats = &shard->store->stats;
    store_stats_set(stats, shard->index, stats->gauges[STORE_STATS_LIVE_BYTES], (int64_t)live);
    store_stats_set(stats, shard->index, stats->gauges[STORE_STATS_DEAD_BYTES],
                    (int64_t)(total - live));
    store_stats_set(stats, shard->index, stats->gauges[STORE_STATS_SEGMENTS],
                    shard->segment_count);
}

static void store_shard_tick(struct reactor *reactor, void *context)
{
    struct store_shard *shard = context;
    RM_ASSERT(shard->reactor == reactor);
    RM_ASSERT(shard->open);
    store_shard_deliver_done(shard);
    if (shard->done_head != NULL || shard->local.head != NULL) {
        /* The delivery limit cut the turns short: go on next iteration rather than after a
         * whole idle tick. */
        reactor_keep_awake(reactor);
    }
    store_commit_tick(shard);
    store_prefill_tick(shard);
    store_hint_tick(shard);
    store_compact_tick(shard);
    store_cache_evict(shard);
    store_shard_publish_gauges(shard);
    store_stats_flush(&shard->store->stats, shard->index, &shard->tally);
    store_index_retire_flush(shard->epoch_record);
    ck_epoch_poll(shard->epoch_record);
    /* Last: everything this tick and the loop iteration before it sent to other reactors. */
    store_shard_post_all(shard);
}

int store_shard_open(struct store *store, struct reactor *reactor)
{
    RM_ASSERT(reactor == reactor_current());
    uint32_t index = reactor_index(reactor);
    RM_ASSERT(index < store->shard_count);
    struct store_shard *shard = store->shards[index];
    RM_ASSERT(!shard->open && shard->reactor == NULL);
    shard->reactor = reactor;
    store_shard_thread_reactor = reactor;
    store_index_writer_set(shard->epoch_record);
    uint64_t started_ns = reactor_clock_ns();
    int result = store_commit_init(shard);
    if (result == 0) {
        result = store_compact_init(shard);
    }
    if (result == 0) {
        result = store_recover(shard);
    }
    if (result != 0) {
        return result;
    }
    store_stats_observe(&store->stats, index, store->stats.recovery_seconds,
                        reactor_clock_ns() - started_ns);
    reactor_slot_set(reactor, REACTOR_SLOT_STORE, shard);
    reactor_hook_add(reactor, (struct reactor_hook){.run = store_shard_tick, .context = shard});
    shard->open = true;
    return 0;
}

bool store_shard_busy(struct store *store, struct reactor *reactor)
{
    struct store_shard *shard = store->shards[reactor_index(reactor)];
    RM_ASSERT(shard->reactor == reactor);
    if (!shard->open) {
        return false;
    }
    return !store_commit_idle(shard) || shard->done_head != NULL ||
           shard->local.head != NULL || !store_shard_outboxes_empty(shard) ||
           shard->inflight > 0;
}

void store_shard_close(struct store *store, struct reactor *reactor)
{
    struct store_shard *shard = store->shards[reactor_index(reactor)];
    store_shard_assert_owner(shard);
    if (!shard->open) {
        return;
    }
    if (shard->done_head != NULL || shard->local.head != NULL ||
        !store_shard_outboxes_empty(shard) || shard->inflight > 0) {
        log_warn("store: shard closed before its work drained (drain timeout); unanswered "
                 "requests are dropped, acknowledged writes are flushed",
                 "directory", shard->directory);
    }
    store_stats_flush(&store->stats, shard->index, &shard->tally);
    shard->leak_batches = !store_commit_close(shard);
    store_index_retire_flush(shard->epoch_record);
    shard->open = false;
}
