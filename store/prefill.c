#include "store/prefill.h"

#include <errno.h>
#include <string.h>

#include "core/log.h"
#include "core/rm_assert.h"
#include "store/direct.h"

/* Only ever read (by the kernel), so every reactor can write from it; aligned for O_DIRECT. */
static _Alignas(STORE_DIRECT_BLOCK) uint8_t store_prefill_zeros[STORE_PREFILL_CHUNK_BYTES];

static void store_prefill_callback(struct reactor_op *op, int result, uint32_t flags)
{
    struct store_segment *segment = op->context;
    struct store_shard *shard = segment->shard;
    (void)flags;
    RM_ASSERT(segment->prefill_length > 0);
    RM_ASSERT(shard->inflight > 0);
    shard->inflight--;
    if (result == (int)segment->prefill_length) {
        segment->prefilled = segment->prefill_offset + segment->prefill_length;
        store_stats_add(&shard->store->stats, shard->index,
                        shard->store->stats.prefilled_bytes, segment->prefill_length);
    } else if (!shard->prefill_failed) {
        /* Not fatal: records are appended as without it, only their fdatasyncs cost more. */
        shard->prefill_failed = true;
        log_warn("store: writing zeros ahead of the active segment failed; appending "
                 "without them", "file", segment->path,
                 "error", result < 0 ? strerror(-result) : "short write");
    }
    segment->prefill_length = 0;
}

bool store_prefill_wanted(const struct config *config)
{
    const struct config_durability_section *durability = &config->durability;
    bool sync = durability->default_mode == CONFIG_DURABILITY_SYNC;
    for (uint32_t i = 0; i < durability->namespace_count; i++) {
        sync = sync || durability->namespaces[i].mode == CONFIG_DURABILITY_SYNC;
    }
    return sync;
}

void store_prefill_tick(struct store_shard *shard)
{
    store_shard_assert_owner(shard);
    struct store_segment *segment = shard->active;
    uint64_t limit = shard->store->config.store.segment_bytes;
    if (!shard->store->prefill || shard->prefill_failed || shard->failed != 0 || segment->fd < 0 ||
        segment->state != STORE_SEGMENT_ACTIVE || segment->prefill_length > 0 ||
        segment->prefilled >= segment->size + STORE_PREFILL_CHUNK_BYTES) {
        return;
    }
    uint64_t start = segment->prefilled;
    if (start < segment->size + STORE_PREFILL_GAP_BYTES) {
        start = segment->size + STORE_PREFILL_GAP_BYTES;
    }
    /* Direct commits overwrite these blocks: written directly too, the zeros leave no pages
     * in the cache that such a write would have to flush first. */
    int fd = segment->direct_fd >= 0 ? segment->direct_fd : segment->fd;
    if (segment->direct_fd >= 0) {
        start = store_direct_up(start);
        limit = store_direct_down(limit);
    }
    if (start >= limit) {
        return;
    }
    uint64_t length = limit - start < STORE_PREFILL_CHUNK_BYTES ? limit - start
                                                                : STORE_PREFILL_CHUNK_BYTES;
    segment->prefill_offset = start;
    segment->prefill_length = (uint32_t)length;
    segment->prefill_op = (struct reactor_op){.callback = store_prefill_callback,
                                              .context = segment};
    struct io_uring_sqe *sqe = reactor_sqe(shard->reactor, &segment->prefill_op);
    io_uring_prep_write(sqe, fd, store_prefill_zeros, (unsigned)length, start);
    shard->inflight++;
}

bool store_prefill_overlaps(const struct store_segment *segment, uint64_t offset,
                            uint64_t length)
{
    return segment->prefill_length > 0 && offset < segment->prefill_offset +
                                                       segment->prefill_length &&
           segment->prefill_offset < offset + length;
}
