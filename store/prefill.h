#ifndef RM_STORE_PREFILL_H
#define RM_STORE_PREFILL_H

/* Zeros written ahead of the active segment's end. On ext4, as on most journaling file
 * systems, an fdatasync after an append must also commit the journal (the file's size and
 * block map changed), and a write that extends the file can wait for a commit in progress;
 * overwriting blocks already written needs neither. Writing zeros a chunk ahead turns the
 * group commit's appends into overwrites, so one journal commit serves a chunk instead of
 * every batch. Recovery reads a zero tail as the end of the records (recover.c). */

#include <stdbool.h>
#include <stdint.h>

#include "store/shard.h"

#define STORE_PREFILL_CHUNK_BYTES (1u << 20)
/* Records this close to the end go out as plain appends: a fill must not start where a
 * batch may write before the fill completes. */
#define STORE_PREFILL_GAP_BYTES (256u << 10)

/* Only sync namespaces wait for fdatasyncs; async ones would pay the zeros' writes for
 * nothing. */
bool store_prefill_wanted(const struct config *config);
/* Starts the next zero fill of the active segment when it is less than a chunk ahead. */
void store_prefill_tick(struct store_shard *shard);
/* Whether a write of [offset, offset + length) into the segment must wait for the zero fill
 * in flight over the same bytes. */
bool store_prefill_overlaps(const struct store_segment *segment, uint64_t offset,
                            uint64_t length);

#endif
