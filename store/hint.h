#ifndef RM_STORE_HINT_H
#define RM_STORE_HINT_H

/* Hint files: for each sealed segment, the index entries that pointed into it when its data
 * became durable (key, version, location, type, expiry), so that recovery rebuilds the
 * index without reading values. A hint is only an accelerator: one that is missing, torn or
 * fails its CRC makes recovery scan the segment instead.
 *
 *   header (32 bytes): u32 magic "RMHT", u32 format 1, u32 segment id, u32 entry count,
 *                      u64 segment bytes (its records' end: zeros written ahead may
 *                      follow), u32 crc32c of the entries, u32 crc32c of the first 28
 *                      header bytes
 *   entry (40 bytes + key): u8 type, u8 0, u16 key length, u32 record length,
 *                      u32 value length, u32 0, u64 offset, u64 version, u64 expiry */

#include <stddef.h>
#include <stdint.h>

#include "store/shard.h"

#define STORE_HINT_HEADER_BYTES 32u
#define STORE_HINT_ENTRY_BYTES 40u

struct store_hint_entry {
    enum store_record_type type;
    uint16_t key_length;
    uint32_t record_length;
    uint32_t value_length;
    uint64_t offset;
    uint64_t version;
    uint64_t expiry_unix_ns;
    const uint8_t *key;
};

typedef int (*store_hint_visitor)(void *context, const struct store_hint_entry *entry);

/* The segment bytes a hint image's header claims (0 when the image is too short to say);
 * store_hint_parse checks them. */
uint64_t store_hint_segment_bytes(const uint8_t *image, size_t length);
/* Validates the whole image first (CRCs, bounds), then visits each entry. Returns 0,
 * -EBADMSG for an invalid image, or the visitor's nonzero return. */
int store_hint_parse(const uint8_t *image, size_t length, uint32_t segment_id,
                     uint64_t segment_bytes, store_hint_visitor visitor, void *context);

/* Owner: notes that the entry's new record went into the segment (the active one), so that
 * the segment's hint visits its own records rather than the whole index. */
void store_hint_track(struct store_shard *shard, struct store_segment *segment,
                      struct store_entry *entry);
/* Frees the segment's list of written entries. */
void store_hint_untrack(struct store_segment *segment);

/* Starts writing the hint of one sealed, durable segment when none is being written. */
void store_hint_tick(struct store_shard *shard);
void store_hint_destroy(struct store_shard *shard);

#endif
