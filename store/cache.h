#ifndef RM_STORE_CACHE_H
#define RM_STORE_CACHE_H

/* The write-back value cache. New values stay in their snapshot (the write is served from
 * memory and needs no read-back); once a record is on disk its value may be dropped, oldest
 * write first, to keep the shard under its share of store.cache_bytes. Reads of dropped
 * values go to the segment with io_uring and put the value back. */

#include "store/shard.h"

/* Keeps the byte count and the FIFO in step when a snapshot replaces another (owner). */
void store_cache_note(struct store_shard *shard, struct store_entry *entry,
                      const struct store_snapshot *previous, const struct store_snapshot *next);
/* Drops values until the shard is within its bound (bounded work per call). */
void store_cache_evict(struct store_shard *shard);
/* A get whose value was not in memory at the origin: served on the owner. */
void store_cache_read(struct store_shard *shard, struct store_request *request);
/* True when the snapshot's value can be served without a disk read. */
bool store_cache_in_memory(const struct store_snapshot *snapshot);

#endif
