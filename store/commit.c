#include "store/commit.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/log.h"
#include "core/rm_assert.h"
#include "store/direct.h"
#include "store/hint.h"
#include "store/prefill.h"
#include "store/segment.h"

static void store_commit_reset(struct store_batch *batch, uint64_t sequence)
{
    RM_ASSERT(batch->ops_pending == 0 && batch->writes_pending == 0);
    RM_ASSERT(batch->waiters_head == NULL);
    batch->used = 0;
    batch->run_count = 0;
    batch->sync_count = 0;
    batch->undo_count = 0;
    batch->error = 0;
    batch->sync = false;
    batch->applied = false;
    batch->sync_started = false;
    batch->sequence = sequence;
    batch->waiters_tail = NULL;
}

static struct store_batch *store_commit_batch(struct store_shard *shard, uint64_t sequence)
{
    return &shard->batches[sequence % STORE_BATCHES];
}

static uint32_t store_commit_in_flight(const struct store_shard *shard)
{
    RM_ASSERT(shard->filling->sequence > shard->retired_sequence);
    uint64_t count = shard->filling->sequence - 1 - shard->retired_sequence;
    RM_ASSERT(count < STORE_BATCHES);
    return (uint32_t)count;
}

int store_commit_init(struct store_shard *shard)
{
    RM_ASSERT(shard->record_max > 0 && shard->record_max <= STORE_RECORD_MAX);
    for (uint32_t i = 0; i < STORE_BATCHES; i++) {
        struct store_batch *batch = &shard->batches[i];
        batch->shard = shard;
        /* Room for each run's partial first block and its zero-padded last (direct.h). */
        batch->capacity = STORE_BATCH_BYTES + (uint32_t)shard->record_max +
                          2 * STORE_BATCH_RUNS_MAX * STORE_DIRECT_BLOCK;
        batch->buffer = rm_malloc_aligned(batch->capacity, STORE_DIRECT_BLOCK);
        batch->undo = rm_malloc(STORE_BATCH_RECORDS_MAX * sizeof(*batch->undo));
        if (batch->buffer == NULL || batch->undo == NULL) {
            return -ENOMEM;
        }
        for (uint32_t r = 0; r < STORE_BATCH_RUNS_MAX; r++) {
            batch->runs[r].batch = batch;
        }
        for (uint32_t s = 0; s < STORE_BATCH_SYNCS_MAX; s++) {
            batch->syncs[s].batch = batch;
        }
    }
    shard->tail.block = rm_malloc_aligned(STORE_DIRECT_BLOCK, STORE_DIRECT_BLOCK);
    if (shard->tail.block == NULL) {
        return -ENOMEM;
    }
    shard->next_sequence = 1;
    shard->retired_sequence = 0;
    shard->filling = store_commit_batch(shard, shard->next_sequence);
    store_commit_reset(shard->filling, shard->next_sequence++);
    RM_ASSERT(shard->filling->used == 0);
    return 0;
}

void store_commit_destroy(struct store_shard *shard)
{
    RM_ASSERT(shard != NULL);
    RM_ASSERT(shard->filling == NULL || store_commit_in_flight(shard) == 0);
    for (uint32_t i = 0; i < STORE_BATCHES; i++) {
        rm_free(shard->batches[i].buffer);
        rm_free(shard->batches[i].undo);
        shard->batches[i].buffer = NULL;
        shard->batches[i].undo = NULL;
    }
    rm_free(shard->tail.block);
    shard->tail.block = NULL;
}

static bool store_commit_new_run(const struct store_shard *shard, const struct store_batch *batch)
{
    return batch->run_count == 0 || batch->runs[batch->run_count - 1].segment != shard->active;
}

/* Where a new run's records start in the buffer: at the same offset within a block as in
 * the file, after a block's room for the bytes before them, so that the run can be written
 * in whole blocks from the buffer itself (direct.h). */
static uint32_t store_commit_run_start(const struct store_shard *shard,
                                       const struct store_batch *batch)
{
    uint64_t offset = shard->active->size;
    return (uint32_t)(store_direct_up(batch->used) + (offset - store_direct_down(offset)));
}

static bool store_commit_fits(const struct store_shard *shard, uint32_t size)
{
    const struct store_batch *batch = shard->filling;
    RM_ASSERT(batch->used <= batch->capacity);
    RM_ASSERT(batch->undo_count <= STORE_BATCH_RECORDS_MAX);
    bool new_run = store_commit_new_run(shard, batch);
    uint32_t start = new_run ? store_commit_run_start(shard, batch) : batch->used;
    /* The last block's zero padding must fit too. */
    return (uint64_t)start + size + STORE_DIRECT_BLOCK <= batch->capacity &&
           batch->undo_count < STORE_BATCH_RECORDS_MAX &&
           (!new_run || batch->run_count < STORE_BATCH_RUNS_MAX);
}

static void store_commit_start(struct store_shard *shard);

static int store_commit_roll(struct store_shard *shard)
{
    struct store_segment *sealed = shard->active;
    RM_ASSERT(sealed->state == STORE_SEGMENT_ACTIVE || sealed->state == STORE_SEGMENT_OPENING);
    if (sealed->state == STORE_SEGMENT_OPENING) {
        return -EAGAIN; /* rolling faster than files open: segments are tiny */
    }
    if (shard->segment_count >= STORE_SEGMENTS_MAX) {
        log_error("store: segment table full; raise store.segment_bytes or let compaction "
                  "catch up", "directory", shard->directory);
        return -ENOSPC;
    }
    struct store_segment *segment = store_segment_new(shard, shard->next_segment_id);
    if (segment == NULL) {
        return -ENOMEM;
    }
    int result = store_shard_segment_add(shard, segment);
    RM_ASSERT(result == 0);
    shard->next_segment_id++;
    sealed->state = STORE_SEGMENT_SEALED;
    if (sealed->pending_runs == 0) {
        store_direct_close(sealed); /* otherwise when its last batch is done */
    }
    shard->active = segment;
    segment->hint_tracked = true;
    store_segment_create_async(segment);
    /* The sealed segment's tail must reach the disk before its hint describes it. */
    shard->filling->sync = true;
    return 0;
}

int store_commit_reserve(struct store_shard *shard, uint32_t size, uint8_t **out,
                         uint32_t *segment_id, uint64_t *offset)
{
    store_shard_assert_owner(shard);
    RM_ASSERT(size >= STORE_RECORD_HEADER_BYTES && size <= shard->record_max);
    if (shard->failed != 0) {
        return shard->failed;
    }
    struct store_segment *active = shard->active;
    if (active->size > 0 && active->size + size > shard->store->config.store.segment_bytes) {
        int result = store_commit_roll(shard);
        if (result != 0) {
            return result;
        }
    }
    if (!store_commit_fits(shard, size)) {
        store_commit_start(shard);
        if (!store_commit_fits(shard, size)) {
            return -EAGAIN;
        }
    }
    struct store_batch *batch = shard->filling;
    active = shard->active;
    if (store_commit_new_run(shard, batch)) {
        batch->used = store_commit_run_start(shard, batch);
        batch->runs[batch->run_count++] = (struct store_batch_run){
            .batch = batch, .segment = active, .file_offset = active->size,
            .buffer_offset = batch->used};
        active->pending_runs++;
    }
    struct store_batch_run *run = &batch->runs[batch->run_count - 1];
    RM_ASSERT(run->file_offset + run->length == active->size);
    *out = batch->buffer + batch->used;
    *segment_id = active->id;
    *offset = active->size;
    run->length += size;
    batch->used += size;
    active->size += size;
    return 0;
}

void store_commit_track(struct store_shard *shard, struct store_entry *entry,
                        struct store_snapshot *previous)
{
    struct store_batch *batch = shard->filling;
    RM_ASSERT(entry != NULL);
    RM_ASSERT(batch->undo_count < STORE_BATCH_RECORDS_MAX);
    batch->undo[batch->undo_count++] = (struct store_undo){.entry = entry, .previous = previous};
    store_hint_track(shard, shard->active, entry);
}

static void store_commit_append_waiter(struct store_batch *batch, struct store_request *request)
{
    RM_ASSERT(request->next == NULL);
    if (batch->waiters_tail == NULL) {
        batch->waiters_head = request;
    } else {
        batch->waiters_tail->next = request;
    }
    batch->waiters_tail = request;
}

void store_commit_wait(struct store_shard *shard, struct store_request *request)
{
    store_shard_assert_owner(shard);
    RM_ASSERT(request->result.status >= 0);
    shard->filling->sync = true;
    store_commit_append_waiter(shard->filling, request);
}

uint64_t store_commit_require_sync(struct store_shard *shard)
{
    store_shard_assert_owner(shard);
    RM_ASSERT(shard->filling->sequence > shard->synced_sequence);
    shard->filling->sync = true;
    return shard->filling->sequence;
}

static void store_commit_finish_waiters(struct store_shard *shard, struct store_batch *batch,
                                        int error)
{
    struct store_request *request = batch->waiters_head;
    batch->waiters_head = NULL;
    batch->waiters_tail = NULL;
    while (request != NULL) {
        struct store_request *next = request->next;
        request->next = NULL;
        if (error != 0) {
            request->result.status = error;
            request->result.version = 0;
        }
        store_shard_finish(shard, request);
        request = next;
    }
}

static void store_commit_undo(struct store_shard *shard, struct store_batch *batch)
{
    RM_ASSERT(batch->undo_count <= STORE_BATCH_RECORDS_MAX);
    /* Newest first: an entry written twice in the batch ends at its oldest snapshot. */
    for (uint32_t i = batch->undo_count; i-- > 0;) {
        struct store_undo *row = &batch->undo[i];
        struct store_snapshot *current = store_shard_swap(shard, row->entry, row->previous);
        RM_ASSERT(current != NULL);
        store_index_retire(shard->epoch_record, current);
    }
    for (uint32_t r = 0; r < batch->run_count; r++) {
        RM_ASSERT(batch->runs[r].segment->pending_runs > 0);
        batch->runs[r].segment->pending_runs--;
    }
    batch->undo_count = 0;
}

/* Every batch not yet retired, once none has an operation in flight. */
static void store_commit_fail(struct store_shard *shard)
{
    RM_ASSERT(shard->failed < 0);
    uint64_t first = shard->retired_sequence + 1;
    uint64_t last = shard->filling->sequence;
    uint32_t lost = 0;
    for (uint64_t s = first; s <= last; s++) {
        lost += store_commit_batch(shard, s)->undo_count;
    }
    char count[32];
    snprintf(count, sizeof(count), "%u", lost);
    log_error("store: segment write or fdatasync failed; the shard refuses writes until a "
              "restart, and the unacknowledged and async records in flight are undone. "
              "Check the disk (space, errors in dmesg), then restart",
              "directory", shard->directory, "error", strerror(-shard->failed), "records", count);
    store_index_section_begin(shard->epoch_record);
    for (uint64_t s = last; s >= first; s--) {
        store_commit_undo(shard, store_commit_batch(shard, s));
    }
    store_index_section_end(shard->epoch_record);
    for (uint64_t s = first; s <= last; s++) {
        struct store_batch *batch = store_commit_batch(shard, s);
        store_commit_finish_waiters(shard, batch, shard->failed);
        store_commit_reset(batch, s);
    }
    shard->retired_sequence = last - 1;
}

static void store_commit_arm_timer(struct store_shard *shard);

static void store_commit_complete(struct store_shard *shard, struct store_batch *batch)
{
    RM_ASSERT(batch->sequence == shard->retired_sequence + 1);
    RM_ASSERT(batch->ops_pending == 0 && batch->error == 0 && batch->applied);
    store_index_section_begin(shard->epoch_record);
    for (uint32_t i = 0; i < batch->undo_count; i++) {
        if (batch->undo[i].previous != NULL) {
            store_index_retire(shard->epoch_record, batch->undo[i].previous);
        }
    }
    store_index_section_end(shard->epoch_record);
    for (uint32_t r = 0; r < batch->run_count; r++) {
        struct store_segment *segment = batch->runs[r].segment;
        RM_ASSERT(segment->pending_runs > 0);
        segment->pending_runs--;
        if (segment->state == STORE_SEGMENT_SEALED && segment->pending_runs == 0) {
            store_direct_close(segment);
        }
    }
    if (batch->sync) {
        rm_atomic_store_64(&shard->synced_sequence, batch->sequence);
        shard->unsynced_since_ns = 0;
    } else if (batch->used > 0 && shard->unsynced_since_ns == 0) {
        shard->unsynced_since_ns = reactor_now_ns(shard->reactor);
        store_commit_arm_timer(shard);
    }
    if (batch->undo_count > 0) {
        store_stats_observe(&shard->store->stats, shard->index, shard->store->stats.batch_records,
                            batch->undo_count);
    }
    shard->retired_sequence = batch->sequence;
    store_commit_finish_waiters(shard, batch, 0);
}

/* Oldest first, each once its writes (and fdatasyncs, when it asked for them) are done. */
static void store_commit_retire(struct store_shard *shard)
{
    while (store_commit_in_flight(shard) > 0) {
        struct store_batch *batch = store_commit_batch(shard, shard->retired_sequence + 1);
        if (batch->ops_pending > 0 || batch->error != 0 || !batch->applied ||
            (batch->sync && !batch->sync_started)) {
            break;
        }
        store_commit_complete(shard, batch);
    }
    if (shard->failed == 0) {
        return;
    }
    for (uint64_t s = shard->retired_sequence + 1; s < shard->filling->sequence; s++) {
        if (store_commit_batch(shard, s)->ops_pending > 0) {
            return;
        }
    }
    store_commit_fail(shard);
}

static void store_commit_op_done(struct store_shard *shard, struct store_batch *batch,
                                 int result, uint32_t expected)
{
    RM_ASSERT(batch->ops_pending > 0);
    RM_ASSERT(shard->inflight > 0);
    batch->ops_pending--;
    shard->inflight--;
    if (result >= 0 && (uint32_t)result != expected) {
        result = -EIO; /* a short write to a regular file: the disk is full */
    }
    if (result < 0 && batch->error == 0) {
        batch->error = result;
    }
    if (result < 0 && shard->failed == 0) {
        shard->failed = result;
    }
}

static void store_commit_advance(struct store_shard *shard);

/* The batch's fdatasyncs all succeeded. */
static void store_commit_synced(struct store_shard *shard, struct store_batch *batch)
{
    RM_ASSERT(batch->ops_pending == 0 && batch->sync_started && batch->error == 0);
    for (uint32_t i = 0; i < batch->sync_count; i++) {
        struct store_segment *segment = batch->syncs[i].segment;
        /* A later batch may have written into it after this fdatasync started. */
        if (segment != NULL && segment->dirty_sequence <= batch->sequence) {
            segment->dirty_sequence = 0;
        }
        if (segment != NULL) {
            segment->directory_synced = true;
        }
    }
    uint64_t elapsed = reactor_clock_ns() - batch->started_ns;
    store_stats_observe(&shard->store->stats, shard->index, shard->store->stats.fsync_latency,
                        elapsed);
}

/* Whether the filling batch, which someone waits on, waits for another such batch in flight.
 * This disk serves overlapping fdatasyncs no faster than one after the other, so fewer,
 * fuller batches answer more writes: sync CAS over HTTP at 64 connections (state-bench,
 * 4 rounds alternating with the previous build, whose batches overlapped, and which wrote
 * through the page cache) went from 98.6k-110.7k ops/s to 120.0k-128.5k. */
static bool store_commit_sync_waits(struct store_shard *shard)
{
    struct store_batch *batch = shard->filling;
    if (batch->waiters_head == NULL) {
        return false;
    }
    for (uint64_t s = shard->retired_sequence + 1; s < batch->sequence; s++) {
        if (store_commit_batch(shard, s)->sync) {
            return true;
        }
    }
    return false;
}

/* A batch someone waits on goes as soon as the batch before it is done, from that one's
 * completion: its write then enters the kernel ahead of the responses this loop iteration is
 * about to send (the tick comes after them), where it waited behind their TCP work. */
static void store_commit_next(struct store_shard *shard)
{
    if (shard->filling->waiters_head != NULL && !store_commit_sync_waits(shard)) {
        store_commit_start(shard);
    }
}

static void store_commit_sync_callback(struct reactor_op *op, int result, uint32_t flags)
{
    struct store_batch_sync *sync = op->context;
    struct store_batch *batch = sync->batch;
    struct store_shard *shard = batch->shard;
    (void)flags;
    store_commit_op_done(shard, batch, store_shard_fault(shard, result), 0);
    if (batch->ops_pending > 0) {
        return;
    }
    if (batch->error == 0) {
        store_commit_synced(shard, batch);
    }
    store_commit_advance(shard);
    store_commit_next(shard);
}

static void store_commit_sync_issue(struct store_shard *shard, struct store_batch *batch,
                                    struct store_segment *segment)
{
    RM_ASSERT(batch->sync_count < STORE_BATCH_SYNCS_MAX);
    struct store_batch_sync *sync = &batch->syncs[batch->sync_count++];
    sync->segment = segment;
    sync->op = (struct reactor_op){.callback = store_commit_sync_callback, .context = sync};
    struct io_uring_sqe *sqe = reactor_sqe(shard->reactor, &sync->op);
    if (segment != NULL) {
        io_uring_prep_fsync(sqe, segment->fd, IORING_FSYNC_DATASYNC);
    } else {
        io_uring_prep_fsync(sqe, shard->directory_fd, 0);
    }
    batch->ops_pending++;
    shard->inflight++;
}

static bool store_commit_syncing(const struct store_batch *batch,
                                 const struct store_segment *segment)
{
    for (uint32_t i = 0; i < batch->sync_count; i++) {
        if (batch->syncs[i].segment == segment) {
            return true;
        }
    }
    return false;
}

/* An fdatasync for every dirty segment the batch does not sync yet, then one for the
 * directory when a synced segment's entry is not durable yet. */
static void store_commit_sync_rest(struct store_shard *shard, struct store_batch *batch)
{
    for (uint32_t i = 0; i < shard->segment_count; i++) {
        struct store_segment *segment = shard->segments[i];
        if (segment->dirty_sequence != 0 && !store_commit_syncing(batch, segment)) {
            store_commit_sync_issue(shard, batch, segment);
        }
    }
    bool directory = false;
    for (uint32_t i = 0; i < batch->sync_count; i++) {
        struct store_segment *segment = batch->syncs[i].segment;
        RM_ASSERT(segment != NULL);
        directory = directory || !segment->directory_synced;
    }
    if (directory) {
        store_commit_sync_issue(shard, batch, NULL);
    }
}

/* Every batch before this one is written, so these fdatasyncs cover them too. */
static void store_commit_sync_start(struct store_shard *shard, struct store_batch *batch)
{
    RM_ASSERT(batch->sync && !batch->sync_started && batch->applied);
    RM_ASSERT(batch->ops_pending == 0);
    batch->sync_started = true;
    batch->sync_count = 0;
    batch->started_ns = reactor_clock_ns();
    store_commit_sync_rest(shard, batch);
}

/* In sequence order, so that each segment's `written` only grows by whole runs. */
static void store_commit_apply(struct store_shard *shard, struct store_batch *batch)
{
    RM_ASSERT(!batch->applied && batch->writes_pending == 0 && batch->error == 0);
    for (uint32_t r = 0; r < batch->run_count; r++) {
        struct store_batch_run *run = &batch->runs[r];
        RM_ASSERT(run->segment->written == run->file_offset);
        run->segment->written = run->file_offset + run->length;
        run->segment->dirty_sequence = batch->sequence;
        store_stats_add(&shard->store->stats, shard->index, shard->store->stats.bytes_written,
                        run->length);
    }
    batch->applied = true;
}

/* Applies written batches and starts fdatasyncs, both in sequence order up to the first
 * batch still writing, then retires what is done. */
static void store_commit_advance(struct store_shard *shard)
{
    for (uint64_t s = shard->retired_sequence + 1; s < shard->filling->sequence; s++) {
        struct store_batch *batch = store_commit_batch(shard, s);
        if (batch->writes_pending > 0 || batch->error != 0 || shard->failed != 0) {
            break;
        }
        if (!batch->applied) {
            store_commit_apply(shard, batch);
        }
        if (batch->sync && !batch->sync_started) {
            store_commit_sync_start(shard, batch);
        }
    }
    store_commit_retire(shard);
}

static void store_commit_write_callback(struct reactor_op *op, int result, uint32_t flags)
{
    struct store_batch_run *run = op->context;
    struct store_batch *batch = run->batch;
    struct store_shard *shard = batch->shard;
    (void)flags;
    RM_ASSERT(batch->writes_pending > 0);
    batch->writes_pending--;
    uint32_t expected = run->direct ? store_direct_length(run) : run->length;
    store_commit_op_done(shard, batch, store_shard_fault(shard, result), expected);
    if (batch->writes_pending > 0) {
        return;
    }
    store_commit_advance(shard);
    store_commit_next(shard);
}

static bool store_commit_dirty(const struct store_shard *shard)
{
    for (uint32_t i = 0; i < shard->segment_count; i++) {
        if (shard->segments[i]->dirty_sequence != 0) {
            return true;
        }
    }
    return false;
}

uint64_t store_commit_barrier(struct store_shard *shard)
{
    store_shard_assert_owner(shard);
    uint32_t in_flight = store_commit_in_flight(shard);
    if (shard->filling->used == 0 && in_flight == 0 && !store_commit_dirty(shard)) {
        return shard->synced_sequence;
    }
    /* The newest batch in flight, when it syncs, covers everything written before it. */
    struct store_batch *newest = store_commit_batch(shard, shard->filling->sequence - 1);
    if (shard->filling->used == 0 && in_flight > 0 && newest->sync) {
        return newest->sequence;
    }
    return store_commit_require_sync(shard);
}

static bool store_commit_prior_applied(struct store_shard *shard,
                                      const struct store_batch *batch)
{
    for (uint64_t s = shard->retired_sequence + 1; s < batch->sequence; s++) {
        if (!store_commit_batch(shard, s)->applied) {
            return false;
        }
    }
    return true;
}

static void store_commit_write_issue(struct store_shard *shard, struct store_batch *batch,
                                     struct store_batch_run *run, bool linked)
{
    if (linked) {
        reactor_sqe_reserve(shard->reactor, 2);
    }
    run->op = (struct reactor_op){.callback = store_commit_write_callback, .context = run};
    run->direct = run->segment->direct_fd >= 0;
    struct io_uring_sqe *sqe = reactor_sqe(shard->reactor, &run->op);
    if (run->direct) {
        store_direct_stage(shard, run);
        io_uring_prep_write(sqe, run->segment->direct_fd, store_direct_buffer(run),
                            store_direct_length(run), store_direct_down(run->file_offset));
        store_stats_add(&shard->store->stats, shard->index, shard->store->stats.direct_writes, 1);
    } else {
        io_uring_prep_write(sqe, run->segment->fd, batch->buffer + run->buffer_offset,
                            run->length, run->file_offset);
    }
    batch->ops_pending++;
    batch->writes_pending++;
    shard->inflight++;
    if (linked) {
        sqe->flags |= IOSQE_IO_LINK;
        store_commit_sync_issue(shard, batch, run->segment);
    }
}

/* Whether the run must wait: its file is still being created, zeros are still going where
 * it writes, or (direct) an earlier write may still land on the block it starts in. */
static bool store_commit_run_blocked(struct store_shard *shard, const struct store_batch *batch,
                                     const struct store_batch_run *run)
{
    struct store_segment *segment = run->segment;
    if (segment->fd < 0) {
        return true;
    }
    if (segment->direct_fd < 0) {
        return store_prefill_overlaps(segment, run->file_offset, run->length);
    }
    uint64_t start = store_direct_down(run->file_offset);
    if (store_prefill_overlaps(segment, start, store_direct_up(run->file_offset + run->length) -
                                                   start)) {
        return true;
    }
    for (uint64_t s = shard->retired_sequence + 1; s < batch->sequence; s++) {
        if (store_commit_batch(shard, s)->writes_pending > 0) {
            return true;
        }
    }
    return false;
}

/* Sends the filling batch when there is something to send and a batch free to fill next. */
static void store_commit_start(struct store_shard *shard)
{
    struct store_batch *batch = shard->filling;
    uint32_t in_flight = store_commit_in_flight(shard);
    if (in_flight == STORE_BATCHES - 1 || shard->failed != 0) {
        return;
    }
    /* An empty sync batch behind one in flight waits for that one's writes, then syncs. */
    if (batch->used == 0 && batch->waiters_head == NULL &&
        !(batch->sync && (in_flight > 0 || store_commit_dirty(shard)))) {
        batch->sync = false;
        return;
    }
    for (uint32_t r = 0; r < batch->run_count; r++) {
        if (store_commit_run_blocked(shard, batch, &batch->runs[r])) {
            return;
        }
    }
    shard->filling = store_commit_batch(shard, shard->next_sequence);
    store_commit_reset(shard->filling, shard->next_sequence++);
    batch->started_ns = reactor_clock_ns();
    /* With every batch before it written, the batch's fdatasyncs can follow its writes
     * at once, each linked behind the write into its segment: one trip through the kernel
     * instead of a write, a wake-up of this loop, then the fdatasync. */
    bool linked = batch->sync && batch->run_count > 0 && store_commit_prior_applied(shard, batch);
    batch->sync_started = linked;
    batch->sync_count = 0;
    for (uint32_t r = 0; r < batch->run_count; r++) {
        store_commit_write_issue(shard, batch, &batch->runs[r], linked);
    }
    if (linked) {
        store_commit_sync_rest(shard, batch);
    }
    store_commit_advance(shard);
}

/* An async batch waits for the batches in flight (its records are acknowledged already, and
 * one write per tick is cheaper than several); a batch someone waits on goes at once. */
void store_commit_flush(struct store_shard *shard)
{
    store_shard_assert_owner(shard);
    if (store_commit_sync_waits(shard)) {
        return;
    }
    if (shard->filling->sync || store_commit_in_flight(shard) == 0) {
        store_commit_start(shard);
    }
}

static void store_commit_timer_callback(struct reactor_op *op, int result, uint32_t flags)
{
    struct store_shard *shard = op->context;
    (void)result; /* -ETIME: the interval passed, which is all the tick needs to know */
    (void)flags;
    RM_ASSERT(shard->timer_armed);
    RM_ASSERT(shard->inflight > 0);
    shard->timer_armed = false;
    shard->inflight--;
}

/* Wakes the loop when async data is due for its fdatasync, even if nothing else happens. */
static void store_commit_arm_timer(struct store_shard *shard)
{
    if (shard->timer_armed) {
        return;
    }
    uint32_t interval_ms = shard->store->config.durability.flush_interval_ms;
    shard->timer_interval.tv_sec = interval_ms / 1000;
    shard->timer_interval.tv_nsec = (long long)(interval_ms % 1000) * 1000000ll;
    shard->timer_op = (struct reactor_op){.callback = store_commit_timer_callback,
                                          .context = shard};
    struct io_uring_sqe *sqe = reactor_sqe(shard->reactor, &shard->timer_op);
    io_uring_prep_timeout(sqe, &shard->timer_interval, 0, 0);
    shard->timer_armed = true;
    shard->inflight++;
}

void store_commit_tick(struct store_shard *shard)
{
    store_shard_assert_owner(shard);
    uint64_t interval_ns = (uint64_t)shard->store->config.durability.flush_interval_ms * 1000000;
    if (shard->unsynced_since_ns != 0 &&
        reactor_now_ns(shard->reactor) - shard->unsynced_since_ns >= interval_ns) {
        shard->filling->sync = true;
    }
    store_commit_flush(shard);
    if (shard->unsynced_since_ns != 0 && store_commit_in_flight(shard) == 0 &&
        !shard->timer_armed) {
        store_commit_arm_timer(shard);
    }
}

bool store_commit_idle(const struct store_shard *shard)
{
    RM_ASSERT(shard != NULL);
    return store_commit_in_flight(shard) == 0 && shard->filling->used == 0 &&
           shard->filling->waiters_head == NULL && shard->unsynced_since_ns == 0 &&
           !shard->timer_armed;
}

static void store_commit_write_blocking(struct store_shard *shard, struct store_batch *batch)
{
    for (uint32_t r = 0; r < batch->run_count; r++) {
        struct store_batch_run *run = &batch->runs[r];
        if (run->segment->fd < 0) {
            continue;
        }
        ssize_t written = pwrite(run->segment->fd, batch->buffer + run->buffer_offset,
                                 run->length, (off_t)run->file_offset);
        if (written != (ssize_t)run->length) {
            log_error("store: final flush failed; records written since the last fdatasync "
                      "may be lost", "file", run->segment->path);
            continue;
        }
        run->segment->dirty_sequence = batch->sequence;
    }
    RM_ASSERT(shard->reactor == reactor_current());
}

/* A stopped store leaves segment files that end with their records: the zeros written ahead
 * are only worth keeping while appending. */
static void store_commit_trim(struct store_shard *shard)
{
    for (uint32_t i = 0; i < shard->segment_count; i++) {
        struct store_segment *segment = shard->segments[i];
        if (segment->fd >= 0 && segment->prefilled > segment->size &&
            ftruncate(segment->fd, (off_t)segment->size) != 0) {
            log_warn("store: cannot trim the zeros after a segment's records; they stay",
                     "file", segment->path, "error", strerror(errno));
        }
    }
}

bool store_commit_close(struct store_shard *shard)
{
    store_shard_assert_owner(shard);
    bool settled = store_commit_in_flight(shard) == 0;
    if (shard->failed != 0) {
        return settled;
    }
    if (!settled) {
        /* The drain deadline passed with batches in flight: write their bytes again (same
         * bytes, same offsets, in order) so that what they acknowledged is on disk either
         * way. */
        log_warn("store: closing with a flush in flight; rewriting it synchronously",
                 "directory", shard->directory);
    }
    for (uint64_t s = shard->retired_sequence + 1; s <= shard->filling->sequence; s++) {
        store_commit_write_blocking(shard, store_commit_batch(shard, s));
    }
    for (uint32_t i = 0; i < shard->segment_count; i++) {
        struct store_segment *segment = shard->segments[i];
        if (segment->dirty_sequence != 0 && segment->fd >= 0 && fdatasync(segment->fd) == 0) {
            segment->dirty_sequence = 0;
        }
    }
    if (shard->directory_fd >= 0) {
        fsync(shard->directory_fd);
    }
    store_commit_trim(shard);
    return settled;
}
