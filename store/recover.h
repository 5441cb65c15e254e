#ifndef RM_STORE_RECOVER_H
#define RM_STORE_RECOVER_H

/* Recovery, on the owner's thread during setup (blocking file I/O is fine there): sealed
 * segments load from their hint file, or are scanned; the active (last) segment is always
 * scanned. A torn or corrupt tail is cut at the last good record and reported, so nothing
 * after a bad CRC is ever served. For each key the highest version wins; equal versions (a
 * record and its copy made by compaction) resolve to the later location. */

#include "store/shard.h"

int store_recover(struct store_shard *shard);

#endif
