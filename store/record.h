#ifndef RM_STORE_RECORD_H
#define RM_STORE_RECORD_H

/* The on-disk record: a 40-byte little-endian header, then the key, then the value.
 *
 *   0  u32 crc32c of bytes [4, end of value)
 *   4  u32 magic "RMST"
 *   8  u8  type (enum store_record_type)
 *   9  u8  reserved, 0
 *  10  u16 key length (1..STORE_FULL_KEY_MAX)
 *  12  u32 value length (<= STORE_RECORD_VALUE_LIMIT)
 *  16  u64 version (>= 1)
 *  24  u64 timestamp, unix ns
 *  32  u64 expiry, unix ns (0 = never)
 *
 * Records are packed back to back; a segment is a sequence of records. Decoding never
 * trusts the bytes: every field is range-checked and the CRC must match. */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define STORE_RECORD_HEADER_BYTES 40u
#define STORE_RECORD_MAGIC 0x54534d52u /* "RMST" read as a little-endian u32 */
/* The largest value any record may carry, whatever the configured limit: a header that
 * claims more is corrupt. */
#define STORE_RECORD_VALUE_LIMIT (64u << 20)
#define STORE_RECORD_MAX                                                                       \
    (STORE_RECORD_HEADER_BYTES + STORE_FULL_KEY_MAX + STORE_RECORD_VALUE_LIMIT)

_Static_assert(STORE_FULL_KEY_MAX <= UINT16_MAX, "key length is a u16 on disk");
_Static_assert(STORE_RECORD_MAX < UINT32_MAX, "record lengths are u32 in the index");

/* Decoding results besides 0. */
#define STORE_RECORD_SHORT (-ENODATA) /* the bytes end inside the record */
#define STORE_RECORD_CORRUPT (-EBADMSG)

struct store_record {
    enum store_record_type type;
    uint16_t key_length;
    uint32_t value_length;
    uint64_t version;
    uint64_t timestamp_unix_ns;
    uint64_t expiry_unix_ns;
    const uint8_t *key;
    const uint8_t *value;
};

static inline uint32_t store_record_size(uint32_t key_length, uint32_t value_length)
{
    return STORE_RECORD_HEADER_BYTES + key_length + value_length;
}

bool store_record_type_valid(uint32_t type);

/* Writes the record into out, which holds store_record_size() bytes. */
void store_record_encode(const struct store_record *record, uint8_t *out);

/* Decodes the record at the start of bytes. Returns 0 with *out pointing into bytes and
 * *length_out its size, STORE_RECORD_SHORT or STORE_RECORD_CORRUPT. */
int store_record_decode(const uint8_t *bytes, size_t length, struct store_record *out,
                        uint32_t *length_out);

/* store_record_decode without the CRC check: the header is sane and the record is whole,
 * but its bytes are unverified. For walks that only need to skip most records (compaction's
 * dead ones); decode any record before using its key or value for more than a lookup. */
int store_record_peek(const uint8_t *bytes, size_t length, struct store_record *out,
                      uint32_t *length_out);

/* Called per good record with its offset in the image; a nonzero return stops the scan. */
typedef int (*store_record_visitor)(void *context, const struct store_record *record,
                                    uint64_t offset, uint32_t length);

/* Walks a segment image record by record, the way recovery does, and returns the length of
 * its good prefix: everything after it is torn or corrupt. *stop_reason gets 0 (clean end),
 * STORE_RECORD_SHORT, STORE_RECORD_CORRUPT or the visitor's nonzero return. */
uint64_t store_record_scan(const uint8_t *image, uint64_t length, store_record_visitor visitor,
                           void *context, int *stop_reason);

#endif
