#include "store/record.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#include "core/rm_assert.h"
#include "store/crc32c.h"

_Static_assert(STORE_RECORD_HEADER_BYTES == 40, "the header layout above is 40 bytes");

static void store_record_put_u32(uint8_t *out, uint32_t value)
{
    value = htole32(value);
    memcpy(out, &value, sizeof(value));
}

static uint16_t store_record_get_u16(const uint8_t *in)
{
    uint16_t value;
    memcpy(&value, in, sizeof(value));
    return le16toh(value);
}

static uint32_t store_record_get_u32(const uint8_t *in)
{
    uint32_t value;
    memcpy(&value, in, sizeof(value));
    return le32toh(value);
}

static uint64_t store_record_get_u64(const uint8_t *in)
{
    uint64_t value;
    memcpy(&value, in, sizeof(value));
    return le64toh(value);
}

bool store_record_type_valid(uint32_t type)
{
    return type >= STORE_RECORD_PUT && type <= STORE_RECORD_INVOCATION_FINISHED;
}

void store_record_encode(const struct store_record *record, uint8_t *out)
{
    RM_ASSERT(store_record_type_valid(record->type));
    RM_ASSERT(record->key_length >= 1 && record->key_length <= STORE_FULL_KEY_MAX);
    RM_ASSERT(record->value_length <= STORE_RECORD_VALUE_LIMIT);
    RM_ASSERT(record->version >= 1);
    /* Bytes [4, 40) of the header as four whole words and a tail, each stored once: the CRC
     * reads them back at the same places and widths, so its loads take their data from the
     * stores (built from byte and half-word stores, each load spanned several and waited for
     * them to reach the cache). The whole record then goes through the CRC in one call: one
     * call per piece spent more on calls and tails than on the bytes. */
    uint64_t version = record->version;
    uint64_t timestamp = record->timestamp_unix_ns;
    uint64_t expiry = record->expiry_unix_ns;
    uint64_t words[4] = {
        htole64(STORE_RECORD_MAGIC | (uint64_t)record->type << 32 |
                (uint64_t)record->key_length << 48),
        htole64(record->value_length | version << 32),
        htole64(version >> 32 | timestamp << 32),
        htole64(timestamp >> 32 | expiry << 32),
    };
    uint32_t tail = htole32((uint32_t)(expiry >> 32));
    /* Word by word from registers: one memcpy of the array became a 16-byte load of two
     * 8-byte stores, the very stall this avoids. */
    for (size_t i = 0; i < RM_ARRAY_LENGTH(words); i++) {
        uint64_t word = words[i];
        memcpy(out + 4 + i * sizeof(word), &word, sizeof(word));
    }
    memcpy(out + 4 + sizeof(words), &tail, sizeof(tail));
    _Static_assert(4 + sizeof(words) + sizeof(tail) == STORE_RECORD_HEADER_BYTES, "header");
    memcpy(out + STORE_RECORD_HEADER_BYTES, record->key, record->key_length);
    if (record->value_length > 0) {
        memcpy(out + STORE_RECORD_HEADER_BYTES + record->key_length, record->value,
               record->value_length);
    }
    uint32_t size = store_record_size(record->key_length, record->value_length);
    uint32_t crc = store_crc32c(0, out + 4, size - 4);
    store_record_put_u32(out, crc);
    RM_DEBUG_ASSERT(crc == store_crc32c_software(0, out + 4, size - 4));
}

int store_record_peek(const uint8_t *bytes, size_t length, struct store_record *out,
                      uint32_t *length_out)
{
    RM_ASSERT(bytes != NULL || length == 0);
    RM_ASSERT(out != NULL && length_out != NULL);
    if (length < STORE_RECORD_HEADER_BYTES) {
        return STORE_RECORD_SHORT;
    }
    uint32_t type = bytes[8];
    uint16_t key_length = store_record_get_u16(bytes + 10);
    uint32_t value_length = store_record_get_u32(bytes + 12);
    if (store_record_get_u32(bytes + 4) != STORE_RECORD_MAGIC || !store_record_type_valid(type) ||
        bytes[9] != 0 || key_length == 0 || key_length > STORE_FULL_KEY_MAX ||
        value_length > STORE_RECORD_VALUE_LIMIT) {
        return STORE_RECORD_CORRUPT;
    }
    uint32_t size = store_record_size(key_length, value_length);
    if (length < size) {
        return STORE_RECORD_SHORT;
    }
    out->type = (enum store_record_type)type;
    out->key_length = key_length;
    out->value_length = value_length;
    out->version = store_record_get_u64(bytes + 16);
    out->timestamp_unix_ns = store_record_get_u64(bytes + 24);
    out->expiry_unix_ns = store_record_get_u64(bytes + 32);
    out->key = bytes + STORE_RECORD_HEADER_BYTES;
    out->value = out->key + key_length;
    if (out->version == 0) {
        return STORE_RECORD_CORRUPT;
    }
    *length_out = size;
    RM_ASSERT(*length_out <= length);
    return 0;
}

int store_record_decode(const uint8_t *bytes, size_t length, struct store_record *out,
                        uint32_t *length_out)
{
    int result = store_record_peek(bytes, length, out, length_out);
    if (result != 0) {
        return result;
    }
    RM_ASSERT(*length_out >= STORE_RECORD_HEADER_BYTES);
    if (store_crc32c(0, bytes + 4, *length_out - 4) != store_record_get_u32(bytes)) {
        return STORE_RECORD_CORRUPT;
    }
    return 0;
}

uint64_t store_record_scan(const uint8_t *image, uint64_t length, store_record_visitor visitor,
                           void *context, int *stop_reason)
{
    RM_ASSERT(image != NULL || length == 0);
    RM_ASSERT(stop_reason != NULL);
    uint64_t offset = 0;
    *stop_reason = 0;
    while (offset < length) {
        struct store_record record;
        uint32_t size = 0;
        int result = store_record_decode(image + offset, length - offset, &record, &size);
        if (result != 0) {
            *stop_reason = result;
            break;
        }
        RM_ASSERT(size >= STORE_RECORD_HEADER_BYTES && offset + size <= length);
        if (visitor != NULL) {
            result = visitor(context, &record, offset, size);
            if (result != 0) {
                *stop_reason = result;
                break;
            }
        }
        offset += size;
    }
    RM_ASSERT(offset <= length);
    return offset;
}
