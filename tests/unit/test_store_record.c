/* Store records and hint images on their own: encode/decode round trips, CRC detection of
 * every single-bit flip, the recovery scan's good-prefix rule. */

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "store/crc32c.h"
#include "store/hint.h"
#include "store/record.h"

static uint32_t record_build(uint8_t *out, const char *key, const char *value, uint64_t version,
                             enum store_record_type type)
{
    struct store_record record = {
        .type = type,
        .key_length = (uint16_t)strlen(key),
        .value_length = (uint32_t)strlen(value),
        .version = version,
        .timestamp_unix_ns = 1700000000000000000ull,
        .expiry_unix_ns = version * 7,
        .key = (const uint8_t *)key,
        .value = (const uint8_t *)value,
    };
    store_record_encode(&record, out);
    return store_record_size(record.key_length, record.value_length);
}

Test(store_record, crc32c_known_answer_and_paths_agree)
{
    cr_assert_eq(store_crc32c(0, "123456789", 9), 0xe3069283u);
    uint8_t bytes[1000];
    for (size_t i = 0; i < sizeof(bytes); i++) {
        bytes[i] = (uint8_t)(i * 31 + 7);
    }
    for (size_t length = 0; length < sizeof(bytes); length += 37) {
        cr_assert_eq(store_crc32c(0, bytes, length), store_crc32c_software(0, bytes, length));
    }
    uint32_t split = store_crc32c(store_crc32c(0, bytes, 100), bytes + 100, 900);
    cr_assert_eq(split, store_crc32c(0, bytes, 1000));
}

Test(store_record, round_trip)
{
    uint8_t buffer[256];
    uint32_t size = record_build(buffer, "ns/key", "hello world", 42,
                                 STORE_RECORD_STEP_COMPLETED);
    struct store_record record;
    uint32_t length = 0;
    cr_assert_eq(store_record_decode(buffer, size, &record, &length), 0);
    cr_assert_eq(length, size);
    cr_assert_eq(record.type, STORE_RECORD_STEP_COMPLETED);
    cr_assert_eq(record.version, 42);
    cr_assert_eq(record.expiry_unix_ns, 42 * 7);
    cr_assert_eq(record.timestamp_unix_ns, 1700000000000000000ull);
    cr_assert_eq(record.key_length, 6);
    cr_assert_eq(memcmp(record.key, "ns/key", 6), 0);
    cr_assert_eq(record.value_length, 11);
    cr_assert_eq(memcmp(record.value, "hello world", 11), 0);
    for (uint32_t cut = 0; cut < size; cut++) {
        cr_assert_eq(store_record_decode(buffer, cut, &record, &length), STORE_RECORD_SHORT);
    }
}

Test(store_record, every_bit_flip_is_detected)
{
    uint8_t buffer[256];
    uint32_t size = record_build(buffer, "ns/k", "value-bytes", 3, STORE_RECORD_PUT);
    for (uint32_t bit = 0; bit < size * 8; bit++) {
        buffer[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        struct store_record record;
        uint32_t length = 0;
        int result = store_record_decode(buffer, size, &record, &length);
        cr_assert_neq(result, 0, "bit %u flipped and still decoded", bit);
        buffer[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
}

static int record_count_visitor(void *context, const struct store_record *record,
                                uint64_t offset, uint32_t length)
{
    uint32_t *count = context;
    (void)record;
    (void)offset;
    (void)length;
    (*count)++;
    return 0;
}

Test(store_record, scan_stops_at_torn_and_corrupt_tails)
{
    uint8_t image[1024];
    uint32_t first = record_build(image, "a/1", "one", 1, STORE_RECORD_PUT);
    uint32_t second = record_build(image + first, "a/2", "two", 1, STORE_RECORD_DELETE);
    uint32_t third = record_build(image + first + second, "a/3", "three", 1, STORE_RECORD_PUT);
    uint32_t total = first + second + third;
    uint32_t count = 0;
    int reason = 0;
    cr_assert_eq(store_record_scan(image, total, record_count_visitor, &count, &reason), total);
    cr_assert_eq(count, 3);
    cr_assert_eq(reason, 0);
    count = 0;
    cr_assert_eq(store_record_scan(image, total - 1, record_count_visitor, &count, &reason),
                 first + second);
    cr_assert_eq(reason, STORE_RECORD_SHORT);
    image[first + 45] ^= 0x10;
    count = 0;
    cr_assert_eq(store_record_scan(image, total, record_count_visitor, &count, &reason), first);
    cr_assert_eq(reason, STORE_RECORD_CORRUPT);
    cr_assert_eq(count, 1);
}

Test(store_record, garbage_headers_are_corrupt)
{
    uint8_t buffer[64] = {0};
    struct store_record record;
    uint32_t length = 0;
    cr_assert_eq(store_record_decode(buffer, sizeof(buffer), &record, &length),
                 STORE_RECORD_CORRUPT);
    memset(buffer, 0xff, sizeof(buffer));
    cr_assert_eq(store_record_decode(buffer, sizeof(buffer), &record, &length),
                 STORE_RECORD_CORRUPT);
}

static int hint_reject_visitor(void *context, const struct store_hint_entry *entry)
{
    (void)context;
    (void)entry;
    return 0;
}

Test(store_record, hint_parse_rejects_garbage)
{
    uint8_t image[128];
    memset(image, 0xab, sizeof(image));
    cr_assert_eq(store_hint_parse(image, sizeof(image), 1, 4096, hint_reject_visitor, NULL),
                 -EBADMSG);
    cr_assert_eq(store_hint_parse(image, 3, 1, 4096, hint_reject_visitor, NULL), -EBADMSG);
}
