/* The shared table of names (API keys, tool names). Every core may insert: a free slot is
 * claimed with a CAS on its hash, the text is written, and `ready` is published with release
 * order. A core that meets a claimed but unpublished slot waits the few instructions the
 * writer needs; after the first request of a name, lookups are read-only. */

#include <string.h>

#include "bench/mock.h"
#include "core/rm_assert.h"

_Static_assert(RM_IS_POWER_OF_TWO(MOCK_NAMES_MAX), "the probe mask needs a power of two");

#define MOCK_NAMES_SPIN_MAX 1000000

static uint64_t mock_names_hash(const char *name, size_t length)
{
    uint64_t hash = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < length; i++) {
        hash = (hash ^ (unsigned char)name[i]) * 0x100000001b3ull;
    }
    return hash == 0 ? 1 : hash; /* 0 marks a free slot */
}

static bool mock_names_wait_ready(struct mock_name_entry *entry)
{
    for (uint32_t spin = 0; spin < MOCK_NAMES_SPIN_MAX; spin++) {
        if (__atomic_load_n(&entry->ready, __ATOMIC_ACQUIRE) != 0) {
            return true;
        }
        __builtin_ia32_pause();
    }
    return false;
}

static bool mock_names_match(struct mock_name_entry *entry, const char *name, size_t length)
{
    if (!mock_names_wait_ready(entry)) {
        return false;
    }
    return entry->length == length && memcmp(entry->text, name, length) == 0;
}

int mock_names_find(struct mock_names *names, const char *name, size_t length)
{
    RM_ASSERT(names != NULL);
    RM_ASSERT(length < MOCK_NAME_MAX);
    uint64_t hash = mock_names_hash(name, length);
    for (uint32_t probe = 0; probe < MOCK_NAMES_MAX; probe++) {
        uint32_t index = (uint32_t)(hash + probe) & (MOCK_NAMES_MAX - 1);
        struct mock_name_entry *entry = &names->entries[index];
        uint64_t seen = __atomic_load_n(&entry->hash, __ATOMIC_ACQUIRE);
        if (seen == 0) {
            uint64_t expected = 0;
            if (__atomic_compare_exchange_n(&entry->hash, &expected, hash, false,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                memcpy(entry->text, name, length);
                entry->text[length] = '\0';
                entry->length = (uint32_t)length;
                __atomic_store_n(&entry->ready, 1, __ATOMIC_RELEASE);
                return (int)index;
            }
            seen = expected; /* another core claimed it first: compare with its name */
        }
        if (seen == hash && mock_names_match(entry, name, length)) {
            return (int)index;
        }
    }
    return -1;
}
