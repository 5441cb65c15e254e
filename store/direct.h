#ifndef RM_STORE_DIRECT_H
#define RM_STORE_DIRECT_H

/* Direct (O_DIRECT) group-commit writes into the active segment, where some namespace is
 * sync. A buffered write to ext4 cannot complete inside io_uring_enter: it goes to an io_uring
 * worker, which under load waits for the reactor's own busy core. A direct write over blocks
 * the zero fill already wrote (prefill.h) goes to the device from the submitting call; its
 * fdatasync, linked behind it, then only flushes the device's cache. One 3.5 KB write +
 * fdatasync with the submitting core busy (bench/commit_paths.c --busy): buffered 282-285 us,
 * direct 187-203 us. RWF_DSYNC instead of the linked fdatasync took 125 us with the core that
 * takes the disk's interrupts idle but 3.7 ms with it busy (the flush runs in a kworker on
 * that core), so it is not used.
 *
 * Direct writes cover whole blocks. A batch's first block repeats the bytes before it, kept in
 * the shard's tail block, and its last is padded with zeros, which the next batch overwrites
 * and recovery reads as the end of the records (recover.c). Two writes in flight would both
 * write the block they share, in either order, so a direct batch starts only once every
 * earlier write completed (commit.c). Where the file system refuses O_DIRECT or does not
 * report an alignment that whole 4 KiB blocks meet (statx STATX_DIOALIGN: tmpfs, kernels
 * before 6.1), the store keeps buffered writes. */

#include <stdbool.h>
#include <stdint.h>

#include "store/shard.h"

#define STORE_DIRECT_BLOCK 4096u

static inline uint64_t store_direct_down(uint64_t offset)
{
    return offset & ~(uint64_t)(STORE_DIRECT_BLOCK - 1);
}

static inline uint64_t store_direct_up(uint64_t offset)
{
    return store_direct_down(offset + STORE_DIRECT_BLOCK - 1);
}

/* Opens the segment's O_DIRECT descriptor when the store writes directly; where the file
 * system refuses, direct_fd stays -1 and the segment is written through the page cache. */
void store_direct_open(struct store_shard *shard, struct store_segment *segment);
/* Prepares the recovered active segment for direct writes: flushes what the page cache may
 * still hold of it (an RWF_DSYNC write flushes only its own range) and loads its last partial
 * block. */
int store_direct_resume(struct store_shard *shard, struct store_segment *segment);
/* Fills the run's first block with the bytes before it and its last with zeros, and records
 * the segment's new last block. Runs are staged in file order. */
void store_direct_stage(struct store_shard *shard, struct store_batch_run *run);
/* The bytes a staged run writes: whole blocks around its records. */
uint8_t *store_direct_buffer(const struct store_batch_run *run);
uint32_t store_direct_length(const struct store_batch_run *run);
/* Closes the O_DIRECT descriptor of a segment that takes no more writes. */
void store_direct_close(struct store_segment *segment);

#endif
