#ifndef RM_STORE_COMMIT_H
#define RM_STORE_COMMIT_H

/* Group commit. Records are encoded straight into the shard's filling batch; once per
 * reactor tick (and at once when the batch is full) the batch goes out as one io_uring write
 * per segment it touches (O_DIRECT where some namespace is sync: direct.h), followed by one
 * fdatasync per dirty segment when any write in it asked for durability. Up to
 * STORE_BATCHES - 1 batches are in flight. An async batch waits for the ones before it. A
 * batch someone waits on goes when no other such batch is in flight: on this disk fewer,
 * fuller fdatasyncs answer more writes than overlapping ones. A batch's
 * fdatasyncs start once every earlier batch is written, so each covers all before it;
 * batches are retired (answered, their old snapshots freed) in sequence order. When every
 * batch is busy and the filling one is full, writers get -EAGAIN (the HTTP layer answers 503
 * with Retry-After; a wait queue would only move the bound elsewhere).
 *
 * Every index change made for a batch is logged (entry, previous snapshot). On success the
 * previous snapshots are retired through the epoch; on a failed write or fsync every batch
 * not yet retired is undone, so that the index never shows what the disk does not have, and
 * the shard refuses writes until a restart (a failed fsync cannot be retried safely on
 * Linux: the kernel may have dropped the dirty pages) */

#include <stdbool.h>
#include <stdint.h>

#include "store/shard.h"

int store_commit_init(struct store_shard *shard);
void store_commit_destroy(struct store_shard *shard);

/* Room for a record of `size` bytes at the end of the active segment (rolling to a new one
 * when full) and of the filling batch. Returns 0 with the place to encode it and its
 * location, or -EAGAIN, -ENOSPC, -ENOMEM, or the shard's disk error. Pair every success
 * with one store_commit_track() before returning to the loop. */
int store_commit_reserve(struct store_shard *shard, uint32_t size, uint8_t **out,
                         uint32_t *segment_id, uint64_t *offset);
void store_commit_track(struct store_shard *shard, struct store_entry *entry,
                        struct store_snapshot *previous);
/* Answers the request (its result filled, not an error) after the fdatasync that covers the
 * filling batch, and so every batch before it. */
void store_commit_wait(struct store_shard *shard, struct store_request *request);
/* Makes the filling batch end with an fdatasync; returns its sequence. */
uint64_t store_commit_require_sync(struct store_shard *shard);
/* A sequence after whose fdatasync (synced_sequence >= it) every record accepted so far is
 * durable, requesting that fdatasync when one is needed; synced_sequence itself when
 * everything already is. */
uint64_t store_commit_barrier(struct store_shard *shard);

void store_commit_flush(struct store_shard *shard);
void store_commit_tick(struct store_shard *shard);
bool store_commit_idle(const struct store_shard *shard);
/* Teardown, after the loop ended: writes and syncs what is left with blocking calls. Returns
 * false when a batch was still in flight (its buffers must then not be freed). */
bool store_commit_close(struct store_shard *shard);

#endif
