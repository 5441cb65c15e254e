#include "store/index.h"

#include <ck_pr.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rm_assert.h"

/* The header in front of every block ck_hs allocates, so that a replaced table can wait for
 * readers in ck_epoch before it is freed. */
struct store_index_block {
    ck_epoch_entry_t epoch_entry;
    size_t size;
    max_align_t alignment[];
};

static _Thread_local ck_epoch_record_t *store_index_writer_record;
/* ThreadSanitizer's stand-in for the epoch: sections release it, reclamation acquires it. */
static int store_index_tsan_epoch;

uint64_t store_index_hash(const uint8_t *key, size_t length)
{
    RM_ASSERT(key != NULL);
    RM_ASSERT(length <= STORE_FULL_KEY_MAX);
    uint64_t hash = 0xcbf29ce484222325ull; /* FNV-1a, then a murmur3 finalizer to spread it */
    for (size_t i = 0; i < length; i++) {
        hash = (hash ^ key[i]) * 0x100000001b3ull;
    }
    hash ^= hash >> 33;
    hash *= 0xff51afd7ed558ccdull;
    hash ^= hash >> 33;
    hash *= 0xc4ceb9fe1a85ec53ull;
    hash ^= hash >> 33;
    return hash;
}

static void *store_index_block_malloc(size_t size)
{
    struct store_index_block *block = rm_malloc(sizeof(*block) + size);
    if (block == NULL) {
        return NULL;
    }
    block->size = size;
    return block->alignment;
}

static void *store_index_block_realloc(void *pointer, size_t old_size, size_t size, bool defer)
{
    RM_ASSERT(!defer);
    RM_ASSERT(pointer != NULL);
    void *fresh = store_index_block_malloc(size);
    if (fresh != NULL) {
        memcpy(fresh, pointer, old_size < size ? old_size : size);
        rm_free((uint8_t *)pointer - offsetof(struct store_index_block, alignment));
    }
    return fresh;
}

static void store_index_block_reclaim(ck_epoch_entry_t *entry)
{
    STORE_TSAN_ACQUIRE(&store_index_tsan_epoch);
    rm_free(entry);
}

static void store_index_block_free(void *pointer, size_t size, bool defer)
{
    RM_ASSERT(pointer != NULL);
    struct store_index_block *block =
        (struct store_index_block *)((uint8_t *)pointer -
                                     offsetof(struct store_index_block, alignment));
    RM_ASSERT(block->size == size || size == 0);
    if (defer) {
        RM_ASSERT(store_index_writer_record != NULL);
        ck_epoch_call(store_index_writer_record, &block->epoch_entry, store_index_block_reclaim);
    } else {
        rm_free(block);
    }
}

static struct ck_malloc store_index_allocator = {
    .malloc = store_index_block_malloc,
    .realloc = store_index_block_realloc,
    .free = store_index_block_free,
};

static unsigned long store_index_hash_callback(const void *object, unsigned long seed)
{
    const struct store_entry *entry = object;
    (void)seed;
    return (unsigned long)entry->hash;
}

static bool store_index_compare_callback(const void *previous, const void *compare)
{
    const struct store_entry *left = previous;
    const struct store_entry *right = compare;
    STORE_TSAN_ACQUIRE(left);
    STORE_TSAN_ACQUIRE(right);
    return left->hash == right->hash && left->key_length == right->key_length &&
           memcmp(left->key, right->key, left->key_length) == 0;
}

void store_index_writer_set(ck_epoch_record_t *record)
{
    RM_ASSERT(record != NULL);
    RM_ASSERT(store_index_writer_record == NULL || store_index_writer_record == record);
    store_index_writer_record = record;
}

int store_index_init(struct store_index *index)
{
    RM_ASSERT(index != NULL);
    index->count = 0;
    if (!ck_hs_init(&index->set, CK_HS_MODE_SPMC | CK_HS_MODE_OBJECT, store_index_hash_callback,
                    store_index_compare_callback, &store_index_allocator,
                    STORE_INDEX_CAPACITY_INITIAL * 2, 0)) {
        return -ENOMEM;
    }
    RM_ASSERT(ck_hs_count(&index->set) == 0);
    return 0;
}

bool store_index_reserve(struct store_index *index, uint32_t keys)
{
    RM_ASSERT(index != NULL);
    RM_ASSERT(keys <= STORE_INDEX_KEYS_MAX);
    /* ck_hs doubles once its entries pass half its slots: twice the keys holds them all. */
    return ck_hs_grow(&index->set, (unsigned long)keys * 2);
}

void store_index_destroy(struct store_index *index)
{
    RM_ASSERT(index != NULL);
    ck_hs_iterator_t iterator = CK_HS_ITERATOR_INITIALIZER;
    void *object = NULL;
    uint32_t freed = 0;
    while (ck_hs_next(&index->set, &iterator, &object)) {
        struct store_entry *entry = object;
        if (entry->snapshot != NULL) {
            store_index_snapshot_free(entry->snapshot);
        }
        rm_free(entry);
        freed++;
    }
    RM_ASSERT(freed == index->count);
    ck_hs_destroy(&index->set);
}

struct store_entry *store_index_find(struct store_index *index, const uint8_t *key,
                                     uint16_t key_length, uint64_t hash)
{
    RM_ASSERT(key != NULL);
    RM_ASSERT(key_length >= 1 && key_length <= STORE_FULL_KEY_MAX);
    struct store_entry probe = {.hash = hash, .key = key, .key_length = key_length};
    return ck_hs_get(&index->set, (unsigned long)hash, &probe);
}

bool store_index_full(const struct store_index *index)
{
    return index->count >= STORE_INDEX_KEYS_MAX;
}

struct store_entry *store_index_insert(struct store_index *index, const uint8_t *key,
                                       uint16_t key_length, uint64_t hash)
{
    RM_ASSERT(key_length >= 1 && key_length <= STORE_FULL_KEY_MAX);
    RM_DEBUG_ASSERT(store_index_find(index, key, key_length, hash) == NULL);
    if (store_index_full(index)) {
        return NULL;
    }
    struct store_entry *entry = rm_calloc(1, sizeof(*entry) + key_length);
    if (entry == NULL) {
        return NULL;
    }
    memcpy(entry->key_storage, key, key_length);
    entry->key = entry->key_storage;
    entry->key_length = key_length;
    entry->hash = hash;
    STORE_TSAN_RELEASE(entry);
    ck_pr_fence_store();
    if (!ck_hs_put(&index->set, (unsigned long)hash, entry)) {
        rm_free(entry);
        return NULL;
    }
    index->count++;
    return entry;
}

struct store_snapshot *store_index_load(const struct store_entry *entry)
{
    RM_ASSERT(entry != NULL);
    /* Acquire pairs with the release in publish: the snapshot's fields and value bytes are
     * complete when its pointer is seen. */
    struct store_snapshot *snapshot = __atomic_load_n(&entry->snapshot, __ATOMIC_ACQUIRE);
    RM_ASSERT(snapshot == NULL || snapshot->version >= 1);
    return snapshot;
}

void store_index_publish(struct store_entry *entry, struct store_snapshot *snapshot)
{
    RM_ASSERT(entry != NULL);
    RM_ASSERT(snapshot == NULL || snapshot->version >= 1);
    __atomic_store_n(&entry->snapshot, snapshot, __ATOMIC_RELEASE);
}

struct store_snapshot *store_index_snapshot_create(const struct store_snapshot *fields,
                                                   const uint8_t *value, bool cached)
{
    RM_ASSERT(fields->version >= 1);
    RM_ASSERT(!cached || value != NULL || fields->value_length == 0);
    size_t value_bytes = cached ? fields->value_length : 0;
    struct store_snapshot *snapshot = rm_malloc(sizeof(*snapshot) + value_bytes);
    if (snapshot == NULL) {
        return NULL;
    }
    *snapshot = *fields;
    snapshot->cached = cached;
    if (value_bytes > 0) {
        memcpy(snapshot->value, value, value_bytes);
    }
    return snapshot;
}

void store_index_snapshot_free(struct store_snapshot *snapshot)
{
    RM_ASSERT(snapshot != NULL);
    RM_ASSERT(snapshot->version >= 1);
    rm_free(snapshot);
}

static void store_index_snapshot_reclaim(ck_epoch_entry_t *entry)
{
    STORE_TSAN_ACQUIRE(&store_index_tsan_epoch);
    struct store_snapshot *snapshot =
        (struct store_snapshot *)((uint8_t *)entry - offsetof(struct store_snapshot, epoch_entry));
    store_index_snapshot_free(snapshot);
}

void store_index_retire(ck_epoch_record_t *record, struct store_snapshot *snapshot)
{
    RM_ASSERT(record != NULL);
    RM_ASSERT(snapshot != NULL);
    ck_epoch_call(record, &snapshot->epoch_entry, store_index_snapshot_reclaim);
}

void store_index_section_begin(ck_epoch_record_t *record)
{
    RM_ASSERT(record != NULL);
    ck_epoch_begin(record, NULL);
}

void store_index_section_end(ck_epoch_record_t *record)
{
    RM_ASSERT(record != NULL);
    STORE_TSAN_RELEASE(&store_index_tsan_epoch);
    ck_epoch_end(record, NULL);
}

bool store_index_next(struct store_index *index, ck_hs_iterator_t *iterator,
                      struct store_entry **entry, bool spmc)
{
    RM_ASSERT(index != NULL);
    RM_ASSERT(entry != NULL);
    void *object = NULL;
    bool found = spmc ? ck_hs_next_spmc(&index->set, iterator, &object)
                      : ck_hs_next(&index->set, iterator, &object);
    if (found) {
        STORE_TSAN_ACQUIRE(object);
        *entry = object;
    }
    return found;
}

bool store_index_live(const struct store_snapshot *snapshot, uint64_t now_unix_ns)
{
    if (snapshot == NULL || snapshot->type == STORE_RECORD_DELETE) {
        return false;
    }
    return snapshot->expiry_unix_ns == 0 || snapshot->expiry_unix_ns > now_unix_ns;
}
