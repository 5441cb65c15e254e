#include "store/cache.h"

#include <errno.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/rm_assert.h"
#include "store/commit.h"
#include "store/record.h"
#include "store/segment.h"

#define STORE_CACHE_EVICTIONS_PER_TICK 4096u

bool store_cache_in_memory(const struct store_snapshot *snapshot)
{
    RM_ASSERT(snapshot != NULL);
    return snapshot->cached || snapshot->value_length == 0;
}

static bool store_cache_counted(const struct store_snapshot *snapshot)
{
    return snapshot != NULL && snapshot->cached && snapshot->value_length > 0;
}

static void store_cache_unlink(struct store_shard *shard, struct store_entry *entry)
{
    RM_ASSERT(entry->cache_listed);
    if (entry->cache_previous != NULL) {
        entry->cache_previous->cache_next = entry->cache_next;
    } else {
        shard->cache_head = entry->cache_next;
    }
    if (entry->cache_next != NULL) {
        entry->cache_next->cache_previous = entry->cache_previous;
    } else {
        shard->cache_tail = entry->cache_previous;
    }
    entry->cache_previous = NULL;
    entry->cache_next = NULL;
    entry->cache_listed = false;
}

static void store_cache_link_tail(struct store_shard *shard, struct store_entry *entry)
{
    RM_ASSERT(!entry->cache_listed);
    entry->cache_previous = shard->cache_tail;
    entry->cache_next = NULL;
    if (shard->cache_tail != NULL) {
        shard->cache_tail->cache_next = entry;
    } else {
        shard->cache_head = entry;
    }
    shard->cache_tail = entry;
    entry->cache_listed = true;
}

void store_cache_note(struct store_shard *shard, struct store_entry *entry,
                      const struct store_snapshot *previous, const struct store_snapshot *next)
{
    RM_ASSERT(entry != NULL);
    if (store_cache_counted(previous)) {
        RM_ASSERT(shard->cache_bytes >= previous->value_length);
        shard->cache_bytes -= previous->value_length;
    }
    if (entry->cache_listed) {
        store_cache_unlink(shard, entry);
    }
    if (store_cache_counted(next)) {
        shard->cache_bytes += next->value_length;
        store_cache_link_tail(shard, entry);
    }
}

static bool store_cache_durable(struct store_shard *shard, const struct store_snapshot *snapshot)
{
    struct store_segment *segment = store_shard_segment(shard, snapshot->segment_id);
    RM_ASSERT(segment != NULL);
    return snapshot->offset + snapshot->record_length <= segment->written;
}

void store_cache_evict(struct store_shard *shard)
{
    store_shard_assert_owner(shard);
    uint32_t evicted = 0;
    store_index_section_begin(shard->epoch_record);
    while (shard->cache_bytes > shard->cache_limit && shard->cache_head != NULL &&
           evicted < STORE_CACHE_EVICTIONS_PER_TICK) {
        struct store_entry *entry = shard->cache_head;
        struct store_snapshot *snapshot = entry->snapshot;
        RM_ASSERT(store_cache_counted(snapshot));
        if (!store_cache_durable(shard, snapshot)) {
            break; /* oldest first: everything after it is newer and not on disk either */
        }
        struct store_snapshot *bare = store_index_snapshot_create(snapshot, NULL, false);
        if (bare == NULL) {
            break;
        }
        store_index_retire(shard->epoch_record, store_shard_swap(shard, entry, bare));
        evicted++;
    }
    store_index_section_end(shard->epoch_record);
}

static void store_cache_fill(struct store_shard *shard, const struct store_request *request,
                             const struct store_record *record)
{
    store_index_section_begin(shard->epoch_record);
    struct store_entry *entry =
        store_index_find(&shard->keys, request->full_key, request->key_length, request->hash);
    struct store_snapshot *snapshot = entry != NULL ? entry->snapshot : NULL;
    if (snapshot != NULL && !snapshot->cached && snapshot->segment_id == request->read_segment_id &&
        snapshot->offset == request->read_offset) {
        struct store_snapshot *filled = store_index_snapshot_create(snapshot, record->value, true);
        if (filled != NULL) {
            store_index_retire(shard->epoch_record, store_shard_swap(shard, entry, filled));
        }
    }
    store_index_section_end(shard->epoch_record);
}

static int store_cache_verify(const struct store_request *request, const uint8_t *bytes,
                              uint32_t length, struct store_record *record)
{
    uint32_t size = 0;
    if (store_record_decode(bytes, length, record, &size) != 0 || size != length ||
        record->key_length != request->key_length ||
        memcmp(record->key, request->full_key, request->key_length) != 0 ||
        record->version != request->result.version) {
        return -EBADMSG;
    }
    return 0;
}

/* Answers a read on the owner. In a sync namespace, a version that is not yet durable is
 * shown only after the fdatasync that covers it (see store_read_resolve). */
static void store_cache_answer(struct store_shard *shard, struct store_request *request)
{
    bool unsynced = request->read_batch_sequence > shard->synced_sequence;
    if (request->result.status < 0 || !unsynced ||
        !request->sync) {
        store_shard_finish(shard, request);
    } else if (shard->failed != 0) {
        request->result = (struct store_result){.status = shard->failed};
        store_shard_finish(shard, request);
    } else {
        store_commit_wait(shard, request);
    }
}

static void store_cache_read_callback(struct reactor_op *op, int result, uint32_t flags)
{
    struct store_request *request = op->context;
    struct store_shard *shard = request->store->shards[request->shard];
    (void)flags;
    RM_ASSERT(shard->inflight > 0);
    shard->inflight--;
    struct store_segment *segment = store_shard_segment(shard, request->read_segment_id);
    RM_ASSERT(segment != NULL);
    store_segment_read_done(segment);
    result = store_shard_fault(shard, result);
    struct store_record record;
    if (result >= 0 && (uint32_t)result != request->read_length) {
        result = -EIO;
    }
    if (result >= 0) {
        result = store_cache_verify(request, request->owned_value, request->read_length, &record);
        if (result != 0) {
            log_error("store: a record read back failed its check and is not served; the "
                      "segment is damaged, restore it from a backup or delete the key",
                      "file", segment->path);
        }
    }
    if (result < 0) {
        request->result = (struct store_result){.status = result};
    } else {
        request->result.value = record.value;
        request->result.value_length = record.value_length;
        store_cache_fill(shard, request, &record);
    }
    store_cache_answer(shard, request);
}

static void store_cache_read_disk(struct store_shard *shard, struct store_request *request,
                                  const struct store_snapshot *snapshot)
{
    struct store_segment *segment = store_shard_segment(shard, snapshot->segment_id);
    RM_ASSERT(segment != NULL && segment->fd >= 0);
    RM_ASSERT(snapshot->offset + snapshot->record_length <= segment->written);
    request->owned_value = rm_malloc(snapshot->record_length);
    if (request->owned_value == NULL) {
        request->result = (struct store_result){.status = -ENOMEM};
        store_shard_finish(shard, request);
        return;
    }
    request->read_segment_id = snapshot->segment_id;
    request->read_offset = snapshot->offset;
    request->read_length = snapshot->record_length;
    request->read_op = (struct reactor_op){.callback = store_cache_read_callback,
                                           .context = request};
    struct io_uring_sqe *sqe = reactor_sqe(shard->reactor, &request->read_op);
    io_uring_prep_read(sqe, segment->fd, request->owned_value, snapshot->record_length,
                       snapshot->offset);
    segment->reads++;
    shard->inflight++;
}

void store_cache_read(struct store_shard *shard, struct store_request *request)
{
    store_shard_assert_owner(shard);
    RM_ASSERT(request->operation == STORE_OPERATION_GET_MISS);
    RM_ASSERT(request->owned_value == NULL);
    store_index_section_begin(shard->epoch_record);
    struct store_entry *entry =
        store_index_find(&shard->keys, request->full_key, request->key_length, request->hash);
    const struct store_snapshot *snapshot = entry != NULL ? entry->snapshot : NULL;
    request->result = (struct store_result){.status = STORE_NOT_FOUND};
    request->read_batch_sequence = snapshot != NULL ? snapshot->batch_sequence : 0;
    if (store_index_live(snapshot, store_shard_unix_ns())) {
        request->result = (struct store_result){
            .status = STORE_OK, .version = snapshot->version,
            .type = (enum store_record_type)snapshot->type,
            .expiry_unix_ns = snapshot->expiry_unix_ns};
        if (!store_cache_in_memory(snapshot)) {
            store_cache_read_disk(shard, request, snapshot);
            store_index_section_end(shard->epoch_record);
            return;
        }
        /* Filled since the origin looked: copy, since the reply crosses reactors. */
        request->owned_value = rm_malloc(snapshot->value_length + 1);
        if (request->owned_value == NULL) {
            request->result = (struct store_result){.status = -ENOMEM};
        } else {
            memcpy(request->owned_value, snapshot->value, snapshot->value_length);
            request->result.value = request->owned_value;
            request->result.value_length = snapshot->value_length;
        }
    }
    store_index_section_end(shard->epoch_record);
    store_cache_answer(shard, request);
}
