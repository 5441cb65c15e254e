#include "store/compact.h"

#include <errno.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/rm_assert.h"
#include "store/commit.h"
#include "store/record.h"
#include "store/segment.h"

_Static_assert(STORE_COMPACT_SLICE_BYTES <= STORE_BATCH_BYTES,
               "a slice's live records fit one batch");

int store_compact_init(struct store_shard *shard)
{
    RM_ASSERT(shard->record_max >= STORE_RECORD_HEADER_BYTES);
    struct store_compaction *compaction = &shard->compaction;
    compaction->capacity = STORE_COMPACT_SLICE_BYTES;
    if (shard->record_max > compaction->capacity) {
        compaction->capacity = (uint32_t)shard->record_max;
    }
    compaction->buffer = rm_malloc(compaction->capacity);
    RM_ASSERT(compaction->victim == NULL);
    return compaction->buffer == NULL ? -ENOMEM : 0;
}

void store_compact_destroy(struct store_shard *shard)
{
    RM_ASSERT(shard != NULL);
    RM_ASSERT(!shard->compaction.reading || shard->leak_batches);
    if (!shard->compaction.reading) {
        rm_free(shard->compaction.buffer);
        shard->compaction.buffer = NULL;
    }
}

static bool store_compact_candidate(const struct store_shard *shard,
                                    const struct store_segment *segment)
{
    uint64_t percent = shard->store->config.store.compact_dead_percent;
    return segment->state == STORE_SEGMENT_SEALED && segment != shard->active &&
           segment->fd >= 0 && segment->pending_runs == 0 && segment->dirty_sequence == 0 &&
           segment->prefill_length == 0 &&
           !segment->compact_refused && segment != shard->hint.segment && segment->size > 0 &&
           segment->written == segment->size &&
           (segment->size - segment->live_bytes) * 100 > segment->size * percent;
}

static struct store_segment *store_compact_pick(struct store_shard *shard)
{
    struct store_segment *best = NULL;
    for (uint32_t i = 0; i < shard->segment_count; i++) {
        struct store_segment *segment = shard->segments[i];
        if (store_compact_candidate(shard, segment) &&
            (best == NULL ||
             segment->size - segment->live_bytes > best->size - best->live_bytes)) {
            best = segment;
        }
    }
    return best;
}

static void store_compact_abandon(struct store_shard *shard, const char *why)
{
    struct store_compaction *compaction = &shard->compaction;
    RM_ASSERT(compaction->victim != NULL);
    log_warn("store: segment left uncompacted; it keeps its disk space until the record is "
             "rewritten or deleted", "file", compaction->victim->path, "reason", why);
    compaction->victim->compact_refused = true;
    compaction->victim = NULL;
    compaction->draining = false;
}

/* Copies one record the index still points at to the end of the log. Returns 0 (moved or
 * dead), -EAGAIN when the batch is full, or another negative errno. */
static int store_compact_move(struct store_shard *shard, const struct store_record *record,
                              const uint8_t *bytes, uint64_t offset, uint32_t size)
{
    struct store_compaction *compaction = &shard->compaction;
    uint64_t hash = store_index_hash(record->key, record->key_length);
    struct store_entry *entry = store_index_find(&shard->keys, record->key, record->key_length,
                                                 hash);
    struct store_snapshot *current = entry != NULL ? entry->snapshot : NULL;
    if (current == NULL || current->segment_id != compaction->victim->id ||
        current->offset != offset) {
        return 0;
    }
    /* The slice walk only peeked at the header: check the bytes about to be copied. */
    struct store_record verified;
    uint32_t verified_size = 0;
    if (store_record_decode(bytes, size, &verified, &verified_size) != 0) {
        return STORE_RECORD_CORRUPT;
    }
    RM_ASSERT(verified_size == size);
    /* An expired value becomes a tombstone of the same version: absent either way, and the
     * version survives for the next write of the key. */
    bool expire = current->type != STORE_RECORD_DELETE && current->expiry_unix_ns != 0 &&
                  current->expiry_unix_ns <= store_shard_unix_ns();
    struct store_record tombstone = *record;
    if (expire) {
        tombstone.type = STORE_RECORD_DELETE;
        tombstone.value_length = 0;
        tombstone.expiry_unix_ns = 0;
    }
    struct store_snapshot fields = *current;
    fields.type = (uint8_t)tombstone.type;
    fields.expiry_unix_ns = tombstone.expiry_unix_ns;
    fields.value_length = tombstone.value_length;
    fields.record_length = expire ? store_record_size(record->key_length, 0) : size;
    /* Cached: the copy is not on disk until its batch is, so no read may go there. */
    struct store_snapshot *moved = store_index_snapshot_create(&fields, record->value, true);
    if (moved == NULL) {
        return -ENOMEM;
    }
    uint8_t *out = NULL;
    int result = store_commit_reserve(shard, fields.record_length, &out, &moved->segment_id,
                                      &moved->offset);
    if (result != 0) {
        store_index_snapshot_free(moved);
        return result;
    }
    if (expire) {
        store_record_encode(&tombstone, out);
    } else {
        memcpy(out, bytes, size);
    }
    store_commit_track(shard, entry, store_shard_swap(shard, entry, moved));
    compaction->wait_sequence = store_commit_require_sync(shard);
    return 0;
}

/* Moves the live records of the slice in the buffer; returns the bytes consumed. Records are
 * peeked, not decoded: most are dead, and a dead record's CRC protects nothing. A damaged
 * header still stops the walk, and a damaged length that sends it astray can only make it
 * miss live records, which leaves live_bytes above zero and the segment in place. */
static uint32_t store_compact_slice(struct store_shard *shard, uint32_t length, int *error)
{
    struct store_compaction *compaction = &shard->compaction;
    uint32_t position = 0;
    *error = 0;
    store_index_section_begin(shard->epoch_record);
    while (position < length) {
        struct store_record record;
        uint32_t size = 0;
        int result = store_record_peek(compaction->buffer + position, length - position,
                                       &record, &size);
        if (result == STORE_RECORD_SHORT && position > 0) {
            break; /* the next read starts at this record */
        }
        if (result != 0) {
            *error = result;
            break;
        }
        result = store_compact_move(shard, &record, compaction->buffer + position,
                                    compaction->offset + position, size);
        if (result != 0) {
            *error = result == -EAGAIN ? 0 : result;
            break;
        }
        position += size;
    }
    store_index_section_end(shard->epoch_record);
    RM_ASSERT(position <= length);
    return position;
}

static void store_compact_read_callback(struct reactor_op *op, int result, uint32_t flags)
{
    struct store_shard *shard = op->context;
    struct store_compaction *compaction = &shard->compaction;
    (void)flags;
    RM_ASSERT(compaction->reading && compaction->victim != NULL);
    RM_ASSERT(shard->inflight > 0);
    compaction->reading = false;
    shard->inflight--;
    store_segment_read_done(compaction->victim);
    result = store_shard_fault(shard, result);
    if (result <= 0) {
        store_compact_abandon(shard, result < 0 ? strerror(-result) : "unexpected end of file");
        return;
    }
    int error = 0;
    uint32_t consumed = store_compact_slice(shard, (uint32_t)result, &error);
    compaction->offset += consumed;
    compaction->grow = false;
    if (error == STORE_RECORD_SHORT && (uint32_t)result < compaction->capacity &&
        compaction->offset + (uint32_t)result < compaction->victim->size) {
        compaction->grow = true; /* a record longer than a slice: read it whole next tick */
        return;
    }
    if (error != 0) {
        store_compact_abandon(shard, error == STORE_RECORD_CORRUPT ? "a record fails its CRC"
                                     : error == STORE_RECORD_SHORT ? "a record is cut short"
                                                                   : strerror(-error));
    }
}

/* Every live record has a fdatasynced copy: the segment and its hint can go. */
static void store_compact_finish(struct store_shard *shard)
{
    struct store_compaction *compaction = &shard->compaction;
    struct store_segment *victim = compaction->victim;
    RM_ASSERT(victim != NULL && compaction->draining);
    RM_ASSERT(victim->reads == 0);
    if (victim->live_bytes != 0) {
        store_compact_abandon(shard, "records still point into it");
        return;
    }
    compaction->victim = NULL;
    compaction->draining = false;
    store_segment_delete_async(victim);
    store_stats_add(&shard->store->stats, shard->index, shard->store->stats.compactions, 1);
}

void store_compact_tick(struct store_shard *shard)
{
    store_shard_assert_owner(shard);
    struct store_compaction *compaction = &shard->compaction;
    if (shard->failed != 0 || compaction->reading ||
        reactor_group_stopping(reactor_group_of(shard->reactor))) {
        return;
    }
    if (compaction->victim == NULL) {
        compaction->victim = store_compact_pick(shard);
        compaction->offset = 0;
        compaction->wait_sequence = 0;
        if (compaction->victim == NULL) {
            return;
        }
    }
    struct store_segment *victim = compaction->victim;
    if (compaction->draining) {
        if (shard->synced_sequence >= compaction->wait_sequence) {
            store_compact_finish(shard);
        }
        return;
    }
    /* Nothing left to move once no entry points into the victim (all overwritten since it
     * was picked): reading the rest would only skip dead records. Before the victim goes,
     * the writes that superseded its records must be durable too, not only the moved copies:
     * an async overwrite still in the page cache would otherwise leave, after a crash, an
     * older record (or none) for the key, and its version would go back. */
    if (compaction->offset >= victim->size || victim->live_bytes == 0) {
        uint64_t barrier = store_commit_barrier(shard);
        compaction->wait_sequence =
            barrier > compaction->wait_sequence ? barrier : compaction->wait_sequence;
        compaction->draining = true;
        return;
    }
    uint64_t length = victim->size - compaction->offset;
    uint32_t limit = compaction->grow ? compaction->capacity : STORE_COMPACT_SLICE_BYTES;
    if (length > limit) {
        length = limit;
    }
    compaction->op = (struct reactor_op){.callback = store_compact_read_callback,
                                         .context = shard};
    struct io_uring_sqe *sqe = reactor_sqe(shard->reactor, &compaction->op);
    io_uring_prep_read(sqe, victim->fd, compaction->buffer, (uint32_t)length, compaction->offset);
    compaction->reading = true;
    victim->reads++;
    shard->inflight++;
}
