#include "store/crc32c.h"

#include <pthread.h>
#include <string.h>

#include "core/rm_assert.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#define STORE_CRC32C_POLYNOMIAL 0x82f63b78u /* reflected Castagnoli polynomial */
#define STORE_CRC32C_SLICES 8

static uint32_t store_crc32c_table[STORE_CRC32C_SLICES][256];
static pthread_once_t store_crc32c_once = PTHREAD_ONCE_INIT;
static uint32_t (*store_crc32c_function)(uint32_t crc, const uint8_t *data, size_t length);

static uint32_t store_crc32c_slicing(uint32_t crc, const uint8_t *data, size_t length)
{
    RM_ASSERT(data != NULL || length == 0);
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, data, sizeof(word));
        word ^= crc; /* little-endian: the CRC covers the first four bytes */
        crc = store_crc32c_table[7][word & 0xff] ^ store_crc32c_table[6][(word >> 8) & 0xff] ^
              store_crc32c_table[5][(word >> 16) & 0xff] ^
              store_crc32c_table[4][(word >> 24) & 0xff] ^
              store_crc32c_table[3][(word >> 32) & 0xff] ^
              store_crc32c_table[2][(word >> 40) & 0xff] ^
              store_crc32c_table[1][(word >> 48) & 0xff] ^ store_crc32c_table[0][word >> 56];
        data += 8;
        length -= 8;
    }
    while (length > 0) {
        crc = store_crc32c_table[0][(crc ^ *data) & 0xff] ^ (crc >> 8);
        data++;
        length--;
    }
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t store_crc32c_hardware(uint32_t crc,
                                                                         const uint8_t *data,
                                                                         size_t length)
{
    RM_ASSERT(data != NULL || length == 0);
    uint64_t crc64 = crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, data, sizeof(word));
        crc64 = _mm_crc32_u64(crc64, word);
        data += 8;
        length -= 8;
    }
    /* The tail in at most three steps: each is a 3-cycle dependency, whatever its width. */
    uint32_t crc32 = (uint32_t)crc64;
    if (length >= 4) {
        uint32_t word;
        memcpy(&word, data, sizeof(word));
        crc32 = _mm_crc32_u32(crc32, word);
        data += 4;
        length -= 4;
    }
    if (length >= 2) {
        uint16_t half;
        memcpy(&half, data, sizeof(half));
        crc32 = _mm_crc32_u16(crc32, half);
        data += 2;
        length -= 2;
    }
    if (length > 0) {
        crc32 = _mm_crc32_u8(crc32, *data);
    }
    return crc32;
}
#endif

static void store_crc32c_init(void)
{
    for (uint32_t byte = 0; byte < 256; byte++) {
        uint32_t crc = byte;
        for (int bit = 0; bit < 8; bit++) {
            crc = (crc & 1) ? (crc >> 1) ^ STORE_CRC32C_POLYNOMIAL : crc >> 1;
        }
        store_crc32c_table[0][byte] = crc;
    }
    for (uint32_t byte = 0; byte < 256; byte++) {
        for (int slice = 1; slice < STORE_CRC32C_SLICES; slice++) {
            uint32_t previous = store_crc32c_table[slice - 1][byte];
            store_crc32c_table[slice][byte] =
                (previous >> 8) ^ store_crc32c_table[0][previous & 0xff];
        }
    }
    uint32_t (*function)(uint32_t, const uint8_t *, size_t) = store_crc32c_slicing;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) {
        function = store_crc32c_hardware;
    }
#endif
    RM_ASSERT(store_crc32c_table[0][1] == 0xf26b8303u);
    /* Release: a thread that sees the function sees the tables it may use. */
    __atomic_store_n(&store_crc32c_function, function, __ATOMIC_RELEASE);
}

uint32_t store_crc32c(uint32_t crc, const void *data, size_t length)
{
    /* pthread_once only until the first call is done: a record takes three calls. */
    uint32_t (*function)(uint32_t, const uint8_t *, size_t) =
        __atomic_load_n(&store_crc32c_function, __ATOMIC_ACQUIRE);
    if (function == NULL) {
        pthread_once(&store_crc32c_once, store_crc32c_init);
        function = __atomic_load_n(&store_crc32c_function, __ATOMIC_ACQUIRE);
    }
    RM_ASSERT(function != NULL);
    return ~function(~crc, data, length);
}

uint32_t store_crc32c_software(uint32_t crc, const void *data, size_t length)
{
    pthread_once(&store_crc32c_once, store_crc32c_init);
    RM_ASSERT(store_crc32c_table[0][1] != 0);
    return ~store_crc32c_slicing(~crc, data, length);
}
