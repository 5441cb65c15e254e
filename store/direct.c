#include "store/direct.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/rm_assert.h"

/* Whether direct writes of whole STORE_DIRECT_BLOCK blocks from block-aligned memory suit
 * the file; unknown (a kernel before 6.1 does not say) counts as no. */
static bool store_direct_aligned(int fd)
{
    struct statx status;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &status) != 0 ||
        (status.stx_mask & STATX_DIOALIGN) == 0) {
        return false;
    }
    uint32_t offset = status.stx_dio_offset_align;
    uint32_t memory = status.stx_dio_mem_align;
    return offset != 0 && memory != 0 && STORE_DIRECT_BLOCK % offset == 0 &&
           STORE_DIRECT_BLOCK % memory == 0;
}

void store_direct_open(struct store_shard *shard, struct store_segment *segment)
{
    RM_ASSERT(segment->direct_fd < 0);
    if (!shard->direct) {
        return;
    }
    int fd = open(segment->path, O_RDWR | O_DIRECT | O_CLOEXEC);
    if (fd >= 0 && store_direct_aligned(fd)) {
        segment->direct_fd = fd;
        return;
    }
    const char *reason = fd < 0 ? strerror(errno) : "no alignment for whole 4 KiB blocks";
    if (fd >= 0) {
        close(fd);
    }
    shard->direct = false;
    log_info("store: the data directory's file system takes no O_DIRECT writes of whole 4 KiB "
             "blocks; group commits go through the page cache", "file", segment->path,
             "reason", reason);
}

int store_direct_resume(struct store_shard *shard, struct store_segment *segment)
{
    struct store_direct_tail *tail = &shard->tail;
    shard->direct = shard->store->prefill;
    tail->segment = segment;
    tail->end = segment->size;
    store_direct_open(shard, segment);
    if (segment->direct_fd < 0) {
        return 0;
    }
    uint32_t partial = (uint32_t)(segment->size - store_direct_down(segment->size));
    if (fdatasync(segment->fd) != 0 ||
        (partial > 0 && pread(segment->fd, tail->block, partial,
                              (off_t)store_direct_down(segment->size)) != (ssize_t)partial)) {
        int error = errno != 0 ? errno : EIO;
        log_error("store: cannot read back the active segment's last block", "file",
                  segment->path, "error", strerror(error));
        return -error;
    }
    return 0;
}

uint8_t *store_direct_buffer(const struct store_batch_run *run)
{
    uint32_t lead = (uint32_t)(run->file_offset - store_direct_down(run->file_offset));
    RM_ASSERT(run->buffer_offset >= lead);
    return run->batch->buffer + run->buffer_offset - lead;
}

uint32_t store_direct_length(const struct store_batch_run *run)
{
    return (uint32_t)(store_direct_up(run->file_offset + run->length) -
                      store_direct_down(run->file_offset));
}

void store_direct_stage(struct store_shard *shard, struct store_batch_run *run)
{
    struct store_direct_tail *tail = &shard->tail;
    uint64_t start = run->file_offset;
    uint64_t end = start + run->length;
    uint8_t *blocks = store_direct_buffer(run);
    RM_ASSERT(((uintptr_t)blocks & (STORE_DIRECT_BLOCK - 1)) == 0);
    RM_ASSERT(run->buffer_offset + (store_direct_up(end) - start) <= run->batch->capacity);
    uint32_t lead = (uint32_t)(start - store_direct_down(start));
    if (lead > 0) {
        RM_ASSERT(tail->segment == run->segment && tail->end == start);
        memcpy(blocks, tail->block, lead);
    }
    uint8_t *records_end = run->batch->buffer + run->buffer_offset + run->length;
    memset(records_end, 0, store_direct_up(end) - end);
    tail->segment = run->segment;
    tail->end = end;
    memcpy(tail->block, blocks + (store_direct_down(end) - store_direct_down(start)),
           end - store_direct_down(end));
}

void store_direct_close(struct store_segment *segment)
{
    if (segment->direct_fd >= 0) {
        close(segment->direct_fd);
        segment->direct_fd = -1;
    }
}
