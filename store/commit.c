#include "store/commit.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/log.h"
#include "core/rm_assert.h"
#include "store/hint.h"
#include "store/segment.h"

static void store_commit_reset(struct store_batch *batch, uint64_t sequence)
{
    RM_ASSERT(batch->ops_pending == 0);
    RM_ASSERT(batch->waiters_head == NULL);
    batch->used = 0;
    batch->run_count = 0;
    batch->sync_count = 0;
    batch->undo_count = 0;
    batch->error = 0;
    batch->sync = false;
    batch->sequence = sequence;
    batch->waiters_tail = NULL;
}

int store_commit_init(struct store_shard *shard)
{
    RM_ASSERT(shard->record_max > 0 && shard->record_max <= STORE_RECORD_MAX);
    for (int i = 0; i < 2; i++) {
        struct store_batch *batch = &shard->batches[i];
        batch->shard = shard;
        batch->capacity = STORE_BATCH_BYTES + (uint32_t)shard->record_max;
        batch->buffer = rm_malloc(batch->capacity);
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
    shard->next_sequence = 1;
    shard->filling = &shard->batches[0];
    store_commit_reset(shard->filling, shard->next_sequence++);
    shard->flushing = NULL;
    RM_ASSERT(shard->filling->used == 0);
    return 0;
}

void store_commit_destroy(struct store_shard *shard)
{
    RM_ASSERT(shard != NULL);
    RM_ASSERT(shard->flushing == NULL);
    for (int i = 0; i < 2; i++) {
        rm_free(shard->batches[i].buffer);
        rm_free(shard->batches[i].undo);
        shard->batches[i].buffer = NULL;
        shard->batches[i].undo = NULL;
    }
}

static bool store_commit_new_run(const struct store_shard *shard, const struct store_batch *batch)
{
    return batch->run_count == 0 || batch->runs[batch->run_count - 1].segment != shard->active;
}

static bool store_commit_fits(const struct store_shard *shard, uint32_t size)
{
    const struct store_batch *batch = shard->filling;
    RM_ASSERT(batch->used <= batch->capacity);
    RM_ASSERT(batch->undo_count <= STORE_BATCH_RECORDS_MAX);
    return batch->used + size <= batch->capacity && batch->undo_count < STORE_BATCH_RECORDS_MAX &&
           (!store_commit_new_run(shard, batch) || batch->run_count < STORE_BATCH_RUNS_MAX);
}

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
        store_commit_flush(shard);
        if (!store_commit_fits(shard, size)) {
            return -EAGAIN;
        }
    }
    struct store_batch *batch = shard->filling;
    active = shard->active;
    if (store_commit_new_run(shard, batch)) {
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

static void store_commit_fail(struct store_shard *shard, struct store_batch *batch)
{
    RM_ASSERT(batch == shard->flushing);
    RM_ASSERT(batch->error < 0);
    shard->failed = batch->error;
    char lost[32];
    snprintf(lost, sizeof(lost), "%u", batch->undo_count + shard->filling->undo_count);
    log_error("store: segment write or fdatasync failed; the shard refuses writes until a "
              "restart, and the unacknowledged and async records in flight are undone. "
              "Check the disk (space, errors in dmesg), then restart",
              "directory", shard->directory, "error", strerror(-batch->error), "records", lost);
    store_index_section_begin(shard->epoch_record);
    store_commit_undo(shard, shard->filling);
    store_commit_undo(shard, batch);
    store_index_section_end(shard->epoch_record);
    store_commit_finish_waiters(shard, shard->filling, batch->error);
    store_commit_finish_waiters(shard, batch, batch->error);
    store_commit_reset(shard->filling, shard->filling->sequence);
    shard->flushing = NULL;
}

static void store_commit_arm_timer(struct store_shard *shard);

static void store_commit_complete(struct store_shard *shard, struct store_batch *batch)
{
    RM_ASSERT(batch == shard->flushing);
    RM_ASSERT(batch->ops_pending == 0 && batch->error == 0);
    store_index_section_begin(shard->epoch_record);
    for (uint32_t i = 0; i < batch->undo_count; i++) {
        if (batch->undo[i].previous != NULL) {
            store_index_retire(shard->epoch_record, batch->undo[i].previous);
        }
    }
    store_index_section_end(shard->epoch_record);
    for (uint32_t r = 0; r < batch->run_count; r++) {
        RM_ASSERT(batch->runs[r].segment->pending_runs > 0);
        batch->runs[r].segment->pending_runs--;
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
    shard->flushing = NULL;
    store_commit_finish_waiters(shard, batch, 0);
}

static void store_commit_op_done(struct store_shard *shard, struct store_batch *batch,
                                 int result, uint32_t expected)
{
    RM_ASSERT(batch->ops_pending > 0);
    RM_ASSERT(shard->inflight > 0);
    batch->ops_pending--;
    shard->inflight--;
    if (result < 0 && batch->error == 0) {
        batch->error = result;
    } else if (result >= 0 && (uint32_t)result != expected && batch->error == 0) {
        batch->error = -EIO; /* a short write to a regular file: the disk is full */
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
    if (batch->error != 0) {
        store_commit_fail(shard, batch);
        return;
    }
    for (uint32_t i = 0; i < batch->sync_count; i++) {
        if (batch->syncs[i].segment != NULL) {
            batch->syncs[i].segment->dirty = false;
            batch->syncs[i].segment->directory_synced = true;
        }
    }
    uint64_t elapsed = reactor_clock_ns() - batch->started_ns;
    store_stats_observe(&shard->store->stats, shard->index, shard->store->stats.fsync_latency,
                        elapsed);
    store_commit_complete(shard, batch);
}

static void store_commit_sync_add(struct store_batch *batch, struct store_segment *segment)
{
    RM_ASSERT(batch->sync_count < STORE_BATCH_SYNCS_MAX);
    struct store_batch_sync *sync = &batch->syncs[batch->sync_count++];
    sync->segment = segment;
    sync->op = (struct reactor_op){.callback = store_commit_sync_callback, .context = sync};
}

static void store_commit_sync_start(struct store_shard *shard, struct store_batch *batch)
{
    RM_ASSERT(batch->sync);
    RM_ASSERT(batch->ops_pending == 0);
    bool directory = false;
    batch->sync_count = 0;
    for (uint32_t i = 0; i < shard->segment_count; i++) {
        struct store_segment *segment = shard->segments[i];
        if (segment->dirty) {
            store_commit_sync_add(batch, segment);
            directory = directory || !segment->directory_synced;
        }
    }
    if (directory) {
        store_commit_sync_add(batch, NULL);
    }
    if (batch->sync_count == 0) {
        store_commit_complete(shard, batch);
        return;
    }
    batch->started_ns = reactor_clock_ns();
    for (uint32_t i = 0; i < batch->sync_count; i++) {
        struct store_batch_sync *sync = &batch->syncs[i];
        struct io_uring_sqe *sqe = reactor_sqe(shard->reactor, &sync->op);
        if (sync->segment != NULL) {
            io_uring_prep_fsync(sqe, sync->segment->fd, IORING_FSYNC_DATASYNC);
        } else {
            io_uring_prep_fsync(sqe, shard->directory_fd, 0);
        }
        batch->ops_pending++;
        shard->inflight++;
    }
}

static void store_commit_write_callback(struct reactor_op *op, int result, uint32_t flags)
{
    struct store_batch_run *run = op->context;
    struct store_batch *batch = run->batch;
    struct store_shard *shard = batch->shard;
    (void)flags;
    result = store_shard_fault(shard, result);
    store_commit_op_done(shard, batch, result, run->length);
    if (result >= 0 && (uint32_t)result == run->length) {
        RM_ASSERT(run->segment->written == run->file_offset);
        run->segment->written = run->file_offset + run->length;
        run->segment->dirty = true;
        store_stats_add(&shard->store->stats, shard->index, shard->store->stats.bytes_written,
                        run->length);
    }
    if (batch->ops_pending > 0) {
        return;
    }
    if (batch->error != 0) {
        store_commit_fail(shard, batch);
    } else if (batch->sync) {
        store_commit_sync_start(shard, batch);
    } else {
        store_commit_complete(shard, batch);
    }
}

static bool store_commit_dirty(const struct store_shard *shard)
{
    for (uint32_t i = 0; i < shard->segment_count; i++) {
        if (shard->segments[i]->dirty) {
            return true;
        }
    }
    return false;
}

uint64_t store_commit_barrier(struct store_shard *shard)
{
    store_shard_assert_owner(shard);
    if (shard->filling->used == 0 && shard->flushing == NULL && !store_commit_dirty(shard)) {
        return shard->synced_sequence;
    }
    /* An empty filling batch behind a syncing one would never flush (nothing is left dirty
     * once that sync ends), and that sync covers everything written before it anyway. */
    if (shard->filling->used == 0 && shard->flushing != NULL && shard->flushing->sync) {
        return shard->flushing->sequence;
    }
    return store_commit_require_sync(shard);
}

/* Starts the filling batch when there is something to do and nothing in flight. */
void store_commit_flush(struct store_shard *shard)
{
    store_shard_assert_owner(shard);
    struct store_batch *batch = shard->filling;
    if (shard->flushing != NULL || shard->failed != 0) {
        return;
    }
    if (batch->used == 0 && batch->waiters_head == NULL &&
        !(batch->sync && store_commit_dirty(shard))) {
        batch->sync = false;
        return;
    }
    for (uint32_t r = 0; r < batch->run_count; r++) {
        if (batch->runs[r].segment->fd < 0) {
            return; /* its file is still being created */
        }
    }
    shard->flushing = batch;
    shard->filling = batch == &shard->batches[0] ? &shard->batches[1] : &shard->batches[0];
    store_commit_reset(shard->filling, shard->next_sequence++);
    batch->started_ns = reactor_clock_ns();
    if (batch->run_count == 0) {
        store_commit_sync_start(shard, batch);
        return;
    }
    for (uint32_t r = 0; r < batch->run_count; r++) {
        struct store_batch_run *run = &batch->runs[r];
        run->op = (struct reactor_op){.callback = store_commit_write_callback, .context = run};
        struct io_uring_sqe *sqe = reactor_sqe(shard->reactor, &run->op);
        io_uring_prep_write(sqe, run->segment->fd, batch->buffer + run->buffer_offset,
                            run->length, run->file_offset);
        batch->ops_pending++;
        shard->inflight++;
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
    if (shard->unsynced_since_ns != 0 && shard->flushing == NULL && !shard->timer_armed) {
        store_commit_arm_timer(shard);
    }
}

bool store_commit_idle(const struct store_shard *shard)
{
    RM_ASSERT(shard != NULL);
    return shard->flushing == NULL && shard->filling->used == 0 &&
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
        run->segment->dirty = true;
    }
    RM_ASSERT(shard->reactor == reactor_current());
}

bool store_commit_close(struct store_shard *shard)
{
    store_shard_assert_owner(shard);
    bool settled = shard->flushing == NULL;
    if (shard->failed != 0) {
        return settled;
    }
    if (!settled) {
        /* The drain deadline passed with a batch in flight: write its bytes again (same
         * bytes, same offsets) so that what it acknowledged is on disk either way. */
        log_warn("store: closing with a flush in flight; rewriting it synchronously",
                 "directory", shard->directory);
        store_commit_write_blocking(shard, shard->flushing);
    }
    store_commit_write_blocking(shard, shard->filling);
    for (uint32_t i = 0; i < shard->segment_count; i++) {
        struct store_segment *segment = shard->segments[i];
        if (segment->dirty && segment->fd >= 0 && fdatasync(segment->fd) == 0) {
            segment->dirty = false;
        }
    }
    if (shard->directory_fd >= 0) {
        fsync(shard->directory_fd);
    }
    return settled;
}
