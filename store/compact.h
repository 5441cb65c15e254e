#ifndef RM_STORE_COMPACT_H
#define RM_STORE_COMPACT_H

/* Compaction on the owner reactor, a slice per tick: a sealed segment whose dead bytes
 * exceed store.compact_dead_percent is read STORE_COMPACT_SLICE_BYTES at a time; each record
 * the index still points at is appended again through the group commit (same bytes, same
 * version; an expired value becomes a tombstone of the same version), and once those copies
 * are fdatasynced the segment and its hint are deleted. */

#include "store/shard.h"

int store_compact_init(struct store_shard *shard);
void store_compact_destroy(struct store_shard *shard);
void store_compact_tick(struct store_shard *shard);

#endif
