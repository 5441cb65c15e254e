#ifndef RM_STORE_SEGMENT_H
#define RM_STORE_SEGMENT_H

/* Segment files: data_dir/shard-<n>/segment-<id>.log, append-only, and their hint files
 * segment-<id>.hint. Ids only grow within a shard; the highest is the active segment. Files
 * are created, unlinked and closed through io_uring on the owner reactor; only recovery and
 * store_destroy use blocking calls (before the loop starts and after it ended). */

#include <stdint.h>

#include "store/shard.h"

#define STORE_SEGMENT_NAME_FORMAT "segment-%010u.log"
#define STORE_SEGMENT_HINT_FORMAT "segment-%010u.hint"

/* A segment struct with its paths filled and no file (fd -1); NULL on -ENOMEM. */
struct store_segment *store_segment_new(struct store_shard *shard, uint32_t id);
/* Closes the file (blocking) and frees the struct; store_destroy only. */
void store_segment_free(struct store_segment *segment);
/* Creates the file through io_uring (O_CREAT|O_TRUNC): the segment is OPENING until the
 * completion, and batches wait for it. */
void store_segment_create_async(struct store_segment *segment);
/* Unlinks the segment and its hint, closes it once no read is in flight, removes it from
 * the shard and frees it. */
void store_segment_delete_async(struct store_segment *segment);
/* Called when a read on the segment completes. */
void store_segment_read_done(struct store_segment *segment);
/* Parses "segment-<id>.log"; returns 1 with *id, or 0 for other names. */
int store_segment_parse_name(const char *name, uint32_t *id);

#endif
