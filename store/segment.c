#include "store/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/rm_assert.h"
#include "store/direct.h"
#include "store/hint.h"

struct store_segment *store_segment_new(struct store_shard *shard, uint32_t id)
{
    RM_ASSERT(shard != NULL);
    RM_ASSERT(id >= 1);
    struct store_segment *segment = rm_calloc(1, sizeof(*segment));
    if (segment == NULL) {
        return NULL;
    }
    segment->shard = shard;
    segment->id = id;
    segment->fd = -1;
    segment->direct_fd = -1;
    segment->state = STORE_SEGMENT_OPENING;
    int length = snprintf(segment->path, sizeof(segment->path), "%s/" STORE_SEGMENT_NAME_FORMAT,
                          shard->directory, id);
    RM_ASSERT(length > 0 && (size_t)length < sizeof(segment->path));
    length = snprintf(segment->hint_path, sizeof(segment->hint_path),
                      "%s/" STORE_SEGMENT_HINT_FORMAT, shard->directory, id);
    RM_ASSERT(length > 0 && (size_t)length < sizeof(segment->hint_path));
    return segment;
}

void store_segment_free(struct store_segment *segment)
{
    RM_ASSERT(segment != NULL);
    RM_ASSERT(segment->reads == 0);
    if (segment->fd >= 0) {
        close(segment->fd);
    }
    store_direct_close(segment);
    store_hint_untrack(segment);
    rm_free(segment);
}

static void store_segment_create_callback(struct reactor_op *op, int result, uint32_t flags)
{
    struct store_segment *segment = op->context;
    struct store_shard *shard = segment->shard;
    (void)flags;
    RM_ASSERT(segment->state == STORE_SEGMENT_OPENING);
    RM_ASSERT(shard->inflight > 0);
    shard->inflight--;
    result = store_shard_fault(shard, result);
    if (result < 0) {
        log_error("store: cannot create segment file; writes to this shard now fail, check "
                  "the data directory's permissions and free space",
                  "file", segment->path, "error", strerror(-result));
        if (shard->failed == 0) {
            shard->failed = result;
        }
        return;
    }
    segment->fd = result;
    segment->state = STORE_SEGMENT_ACTIVE;
    /* A plain open of the file just created: it only looks up the name. */
    store_direct_open(shard, segment);
}

void store_segment_create_async(struct store_segment *segment)
{
    struct store_shard *shard = segment->shard;
    store_shard_assert_owner(shard);
    RM_ASSERT(segment->fd < 0);
    segment->op = (struct reactor_op){.callback = store_segment_create_callback,
                                      .context = segment};
    struct io_uring_sqe *sqe = reactor_sqe(shard->reactor, &segment->op);
    io_uring_prep_openat(sqe, AT_FDCWD, segment->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
                         0644);
    shard->inflight++;
}

static void store_segment_close_callback(struct reactor_op *op, int result, uint32_t flags)
{
    struct store_segment *segment = op->context;
    struct store_shard *shard = segment->shard;
    (void)flags;
    (void)result; /* a failed close of an unlinked file leaves nothing to recover */
    RM_ASSERT(segment->state == STORE_SEGMENT_DELETING);
    RM_ASSERT(shard->inflight > 0);
    shard->inflight--;
    segment->fd = -1;
    store_shard_segment_remove(shard, segment);
    store_hint_untrack(segment);
    rm_free(segment);
}

static void store_segment_close_if_unused(struct store_segment *segment)
{
    struct store_shard *shard = segment->shard;
    RM_ASSERT(segment->state == STORE_SEGMENT_DELETING);
    if (segment->reads > 0 || segment->deletes > 0) {
        return;
    }
    store_direct_close(segment);
    segment->op = (struct reactor_op){.callback = store_segment_close_callback,
                                      .context = segment};
    struct io_uring_sqe *sqe = reactor_sqe(shard->reactor, &segment->op);
    io_uring_prep_close(sqe, segment->fd);
    shard->inflight++;
}

static void store_segment_unlink_callback(struct reactor_op *op, int result, uint32_t flags)
{
    struct store_segment *segment = op->context;
    struct store_shard *shard = segment->shard;
    (void)flags;
    RM_ASSERT(segment->deletes > 0);
    RM_ASSERT(shard->inflight > 0);
    shard->inflight--;
    segment->deletes--;
    if (result < 0 && result != -ENOENT) {
        log_warn("store: cannot delete a compacted segment file; it is harmless (its records "
                 "are older copies) but uses disk until removed",
                 "file", segment->path, "error", strerror(-result));
    }
    store_segment_close_if_unused(segment);
}

void store_segment_delete_async(struct store_segment *segment)
{
    struct store_shard *shard = segment->shard;
    store_shard_assert_owner(shard);
    RM_ASSERT(segment->state == STORE_SEGMENT_SEALED);
    RM_ASSERT(segment->fd >= 0 && segment->pending_runs == 0);
    segment->state = STORE_SEGMENT_DELETING;
    segment->unlink_op = (struct reactor_op){.callback = store_segment_unlink_callback,
                                             .context = segment};
    segment->op = segment->unlink_op;
    /* Not linked: a missing hint (-ENOENT) must not cancel the segment's unlink. A crash
     * between the two leaves either a segment that recovery scans (its records lose to their
     * newer copies) or a hint without a segment, which recovery ignores. */
    struct io_uring_sqe *sqe = reactor_sqe(shard->reactor, &segment->unlink_op);
    io_uring_prep_unlinkat(sqe, AT_FDCWD, segment->hint_path, 0);
    sqe = reactor_sqe(shard->reactor, &segment->op);
    io_uring_prep_unlinkat(sqe, AT_FDCWD, segment->path, 0);
    segment->deletes = 2;
    shard->inflight += 2;
}

void store_segment_read_done(struct store_segment *segment)
{
    RM_ASSERT(segment != NULL);
    RM_ASSERT(segment->reads > 0);
    segment->reads--;
    if (segment->state == STORE_SEGMENT_DELETING) {
        store_segment_close_if_unused(segment);
    }
}

int store_segment_parse_name(const char *name, uint32_t *id)
{
    RM_ASSERT(name != NULL);
    RM_ASSERT(id != NULL);
    unsigned value = 0;
    int consumed = 0;
    if (sscanf(name, "segment-%10u.log%n", &value, &consumed) != 1 ||
        name[consumed] != '\0' || consumed != (int)strlen("segment-0000000000.log") ||
        value == 0) {
        return 0;
    }
    *id = value;
    return 1;
}
