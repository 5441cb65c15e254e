/* libFuzzer target for the store's on-disk formats: the fuzz input is a segment image
 * scanned by store_record_scan, the function recovery uses, and the same bytes parsed as a
 * hint file. Every record the scan accepts is encoded again and must give back the same
 * bytes (a decoder that accepts what the encoder would not write is a bug); the good prefix
 * never exceeds the input; hint entries must lie inside the segment they describe. */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/rm_assert.h"
#include "store/hint.h"
#include "store/record.h"

struct fuzz_scan {
    const uint8_t *image;
    uint8_t *scratch;
    uint64_t next_offset;
};

static int fuzz_store_record_visit(void *context, const struct store_record *record,
                                   uint64_t offset, uint32_t length)
{
    struct fuzz_scan *scan = context;
    RM_ASSERT(offset == scan->next_offset);
    RM_ASSERT(length == store_record_size(record->key_length, record->value_length));
    store_record_encode(record, scan->scratch);
    RM_ASSERT(memcmp(scan->scratch, scan->image + offset, length) == 0);
    scan->next_offset = offset + length;
    return 0;
}

static int fuzz_store_hint_visit(void *context, const struct store_hint_entry *entry)
{
    const size_t *segment_bytes = context;
    RM_ASSERT(entry->offset + entry->record_length <= *segment_bytes);
    RM_ASSERT(entry->key_length >= 1 && entry->key_length <= STORE_FULL_KEY_MAX);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_scan scan = {.image = data, .scratch = malloc(size + 1)};
    RM_ASSERT(scan.scratch != NULL);
    int reason = 0;
    uint64_t good = store_record_scan(data, size, fuzz_store_record_visit, &scan, &reason);
    RM_ASSERT(good <= size);
    RM_ASSERT(good == scan.next_offset);
    RM_ASSERT((good == size) == (reason == 0));
    free(scan.scratch);
    /* The hint parser, told the segment id and size the image claims, so that valid hints
     * reach the entry checks. */
    uint32_t segment_id = 1;
    size_t segment_bytes = size;
    if (size >= STORE_HINT_HEADER_BYTES) {
        memcpy(&segment_id, data + 8, sizeof(segment_id));
        uint64_t claimed = 0;
        memcpy(&claimed, data + 16, sizeof(claimed));
        segment_bytes = (size_t)(claimed & 0xffffffffu);
    }
    int parsed = store_hint_parse(data, size, segment_id, segment_bytes, fuzz_store_hint_visit,
                                  &segment_bytes);
    RM_ASSERT(parsed == 0 || parsed == -EBADMSG);
    return 0;
}
