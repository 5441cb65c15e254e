#include "store/index.h"

#include <errno.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rm_assert.h"

/* Snapshots replaced together wait for the epoch as one bag rather than one ck_epoch_call
 * each: reclaiming them one by one walked the epoch's list, a cache miss per snapshot, while a
 * bag frees them from an array that it prefetches ahead in. */
#define STORE_INDEX_BAG_SNAPSHOTS 1020u
#define STORE_INDEX_BAG_PREFETCH 8u

struct store_index_bag {
    ck_epoch_entry_t epoch_entry;
    ck_epoch_record_t *record;
    uint32_t count;
    struct store_snapshot *snapshots[STORE_INDEX_BAG_SNAPSHOTS];
};
_Static_assert(sizeof(struct store_index_bag) <= 8192, "a bag is at most two pages");

static _Thread_local ck_epoch_record_t *store_index_writer_record;
/* The calling thread's bag being filled, for its own epoch record; NULL: none. */
static _Thread_local struct store_index_bag *store_index_retire_bag;
/* ThreadSanitizer's stand-in for the epoch: sections release it, reclamation acquires it. */
static int store_index_tsan_epoch;

/* FNV-1a, then a murmur3 finalizer to spread it. */
uint64_t store_index_hash_add(uint64_t state, const uint8_t *bytes, size_t length)
{
    RM_ASSERT(bytes != NULL || length == 0);
    RM_ASSERT(length <= STORE_FULL_KEY_MAX);
    for (size_t i = 0; i < length; i++) {
        state = (state ^ bytes[i]) * 0x100000001b3ull;
    }
    return state;
}

uint64_t store_index_hash_end(uint64_t state)
{
    state ^= state >> 33;
    state *= 0xff51afd7ed558ccdull;
    state ^= state >> 33;
    state *= 0xc4ceb9fe1a85ec53ull;
    state ^= state >> 33;
    return state;
}

uint64_t store_index_hash(const uint8_t *key, size_t length)
{
    RM_ASSERT(key != NULL);
    return store_index_hash_end(store_index_hash_add(STORE_INDEX_HASH_START, key, length));
}

void store_index_writer_set(ck_epoch_record_t *record)
{
    RM_ASSERT(record != NULL);
    RM_ASSERT(store_index_writer_record == NULL || store_index_writer_record == record);
    store_index_writer_record = record;
}

static struct store_index_table *store_index_table_create(uint64_t slots)
{
    RM_ASSERT(RM_IS_POWER_OF_TWO(slots));
    RM_ASSERT(slots <= (uint64_t)STORE_INDEX_KEYS_MAX * 4);
    struct store_index_table *table =
        rm_calloc(1, sizeof(*table) + slots * sizeof(struct store_index_slot));
    if (table != NULL) {
        table->mask = slots - 1;
    }
    return table;
}

static void store_index_table_reclaim(ck_epoch_entry_t *entry)
{
    STORE_TSAN_ACQUIRE(&store_index_tsan_epoch);
    rm_free(entry); /* the epoch entry is the table's first member */
}

/* Owner only: the slot a new key takes (the first empty one on its probe). */
static struct store_index_slot *store_index_free_slot(struct store_index_table *table,
                                                      uint64_t hash)
{
    for (uint64_t probe = 0, i = hash & table->mask; probe <= table->mask;
         probe++, i = (i + 1) & table->mask) {
        if (table->slots[i].entry == NULL) {
            return &table->slots[i];
        }
    }
    RM_ASSERT(!"index table full: growth keeps it at most half full");
    return NULL;
}

static void store_index_slot_fill(struct store_index_slot *slot, struct store_entry *entry)
{
    RM_ASSERT(slot->entry == NULL);
    slot->hash = entry->hash;
    /* Release: a reader that sees the pointer sees the hash and the entry's fields. */
    __atomic_store_n(&slot->entry, entry, __ATOMIC_RELEASE);
}

/* Moves every entry into a table of `slots` and publishes it; the old one waits for readers
 * in the epoch. False when out of memory (the old table stays). */
static bool store_index_resize(struct store_index *index, uint64_t slots)
{
    struct store_index_table *old = index->table;
    RM_ASSERT(slots > old->mask + 1);
    struct store_index_table *table = store_index_table_create(slots);
    if (table == NULL) {
        return false;
    }
    uint32_t moved = 0;
    for (uint64_t i = 0; i <= old->mask; i++) {
        struct store_entry *entry = old->slots[i].entry;
        if (entry != NULL) {
            store_index_slot_fill(store_index_free_slot(table, entry->hash), entry);
            moved++;
        }
    }
    RM_ASSERT(moved == index->count);
    __atomic_store_n(&index->table, table, __ATOMIC_RELEASE);
    RM_ASSERT(store_index_writer_record != NULL);
    ck_epoch_call(store_index_writer_record, &old->epoch_entry, store_index_table_reclaim);
    return true;
}

int store_index_init(struct store_index *index)
{
    RM_ASSERT(index != NULL);
    index->count = 0;
    index->table = store_index_table_create(STORE_INDEX_SLOTS_INITIAL);
    RM_ASSERT(index->table == NULL || index->table->mask + 1 == STORE_INDEX_SLOTS_INITIAL);
    return index->table == NULL ? -ENOMEM : 0;
}

/* The slots that hold `keys` at most half full. */
static uint64_t store_index_slots_for(uint64_t keys)
{
    uint64_t slots = STORE_INDEX_SLOTS_INITIAL;
    while (slots < keys * 2) {
        slots *= 2;
    }
    return slots;
}

bool store_index_reserve(struct store_index *index, uint32_t keys)
{
    RM_ASSERT(index != NULL);
    RM_ASSERT(keys <= STORE_INDEX_KEYS_MAX);
    uint64_t slots = store_index_slots_for(keys);
    return slots <= index->table->mask + 1 || store_index_resize(index, slots);
}

void store_index_destroy(struct store_index *index)
{
    RM_ASSERT(index != NULL);
    struct store_index_iterator iterator;
    struct store_entry *entry = NULL;
    uint32_t freed = 0;
    store_index_iterator_init(index, &iterator);
    while (store_index_next(&iterator, &entry)) {
        if (entry->snapshot != NULL) {
            store_index_snapshot_free(entry->snapshot);
        }
        rm_free(entry);
        freed++;
    }
    RM_ASSERT(freed == index->count);
    rm_free(index->table);
    index->table = NULL;
}

static uint64_t store_index_load_64(const uint8_t *bytes)
{
    uint64_t word;
    memcpy(&word, bytes, sizeof(word));
    return word;
}

static uint32_t store_index_load_32(const uint8_t *bytes)
{
    uint32_t word;
    memcpy(&word, bytes, sizeof(word));
    return word;
}

/* The keys of a matching hash are almost always equal: compared inline a word at a time, the
 * last word overlapping the one before it, where a call to memcmp cost more than the
 * comparison. */
static bool store_index_key_equal(const uint8_t *left, const uint8_t *right, uint16_t length)
{
    RM_ASSERT(length >= 1);
    if (length < sizeof(uint32_t)) {
        return memcmp(left, right, length) == 0;
    }
    if (length < sizeof(uint64_t)) {
        uint16_t last = (uint16_t)(length - sizeof(uint32_t));
        return store_index_load_32(left) == store_index_load_32(right) &&
               store_index_load_32(left + last) == store_index_load_32(right + last);
    }
    uint16_t last = (uint16_t)(length - sizeof(uint64_t));
    for (uint16_t i = 0; i < last; i += sizeof(uint64_t)) {
        if (store_index_load_64(left + i) != store_index_load_64(right + i)) {
            return false;
        }
    }
    return store_index_load_64(left + last) == store_index_load_64(right + last);
}

struct store_entry *store_index_find(struct store_index *index, const uint8_t *key,
                                     uint16_t key_length, uint64_t hash)
{
    RM_ASSERT(key != NULL);
    RM_ASSERT(key_length >= 1 && key_length <= STORE_FULL_KEY_MAX);
    const struct store_index_table *table = __atomic_load_n(&index->table, __ATOMIC_ACQUIRE);
    for (uint64_t probe = 0, i = hash & table->mask; probe <= table->mask;
         probe++, i = (i + 1) & table->mask) {
        struct store_entry *entry = __atomic_load_n(&table->slots[i].entry, __ATOMIC_ACQUIRE);
        if (entry == NULL) {
            return NULL;
        }
        if (table->slots[i].hash == hash && entry->key_length == key_length &&
            store_index_key_equal(entry->key, key, key_length)) {
            return entry;
        }
    }
    RM_ASSERT(!"index table without an empty slot");
    return NULL;
}

void store_index_prefetch(const struct store_index *index, uint64_t hash)
{
    RM_ASSERT(index != NULL);
    const struct store_index_table *table = __atomic_load_n(&index->table, __ATOMIC_ACQUIRE);
    RM_ASSERT(table != NULL);
    __builtin_prefetch(&table->slots[hash & table->mask]);
}

const struct store_entry *store_index_peek(const struct store_index *index, uint64_t hash)
{
    RM_ASSERT(index != NULL);
    const struct store_index_table *table = __atomic_load_n(&index->table, __ATOMIC_ACQUIRE);
    RM_ASSERT(table != NULL);
    for (uint64_t probe = 0, i = hash & table->mask; probe <= table->mask;
         probe++, i = (i + 1) & table->mask) {
        const struct store_entry *entry =
            __atomic_load_n(&table->slots[i].entry, __ATOMIC_ACQUIRE);
        if (entry == NULL || table->slots[i].hash == hash) {
            return entry;
        }
    }
    return NULL;
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
    uint64_t slots = index->table->mask + 1;
    if ((uint64_t)(index->count + 1) * 2 > slots && !store_index_resize(index, slots * 2)) {
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
    store_index_slot_fill(store_index_free_slot(index->table, hash), entry);
    index->count++;
    RM_ASSERT((uint64_t)index->count * 2 <= index->table->mask + 1);
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

/* Frees the bag's snapshots, each prefetched a few ahead: they were last touched when they
 * were replaced, long enough ago to have left the cache. */
static void store_index_bag_reclaim(ck_epoch_entry_t *entry)
{
    STORE_TSAN_ACQUIRE(&store_index_tsan_epoch);
    struct store_index_bag *bag = (struct store_index_bag *)entry; /* its first member */
    RM_ASSERT(bag->count >= 1 && bag->count <= STORE_INDEX_BAG_SNAPSHOTS);
    for (uint32_t i = 0; i < bag->count; i++) {
        if (i + STORE_INDEX_BAG_PREFETCH < bag->count) {
            __builtin_prefetch(bag->snapshots[i + STORE_INDEX_BAG_PREFETCH], 1);
        }
        store_index_snapshot_free(bag->snapshots[i]);
    }
    rm_free(bag);
}

void store_index_retire(ck_epoch_record_t *record, struct store_snapshot *snapshot)
{
    RM_ASSERT(record != NULL);
    RM_ASSERT(snapshot != NULL);
    struct store_index_bag *bag = store_index_retire_bag;
    if (bag == NULL) {
        bag = rm_malloc(sizeof(*bag));
        if (bag == NULL) {
            /* On its own, as every snapshot went before bags. */
            ck_epoch_call(record, &snapshot->epoch_entry, store_index_snapshot_reclaim);
            return;
        }
        bag->record = record;
        bag->count = 0;
        store_index_retire_bag = bag;
    }
    RM_ASSERT(bag->record == record); /* one record per thread */
    RM_ASSERT(bag->count < STORE_INDEX_BAG_SNAPSHOTS);
    bag->snapshots[bag->count++] = snapshot;
    if (bag->count == STORE_INDEX_BAG_SNAPSHOTS) {
        store_index_retire_flush(record);
    }
}

void store_index_retire_flush(ck_epoch_record_t *record)
{
    RM_ASSERT(record != NULL);
    struct store_index_bag *bag = store_index_retire_bag;
    if (bag == NULL) {
        return;
    }
    RM_ASSERT(bag->record == record);
    RM_ASSERT(bag->count >= 1);
    store_index_retire_bag = NULL;
    /* In a section, as ck_epoch_call wants when the record also reads: the epoch it reads is
     * then not older than the replacements of the bag's snapshots. A bag handed over later
     * than its snapshots were replaced only waits longer. */
    store_index_section_begin(record);
    ck_epoch_call(record, &bag->epoch_entry, store_index_bag_reclaim);
    store_index_section_end(record);
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

void store_index_iterator_init(const struct store_index *index,
                               struct store_index_iterator *iterator)
{
    RM_ASSERT(index != NULL);
    RM_ASSERT(iterator != NULL);
    iterator->table = __atomic_load_n(&index->table, __ATOMIC_ACQUIRE);
    iterator->position = 0;
}

bool store_index_next(struct store_index_iterator *iterator, struct store_entry **entry)
{
    RM_ASSERT(iterator->table != NULL);
    RM_ASSERT(entry != NULL);
    const struct store_index_table *table = iterator->table;
    while (iterator->position <= table->mask) {
        struct store_entry *found =
            __atomic_load_n(&table->slots[iterator->position++].entry, __ATOMIC_ACQUIRE);
        if (found != NULL) {
            *entry = found;
            return true;
        }
    }
    return false;
}

bool store_index_live(const struct store_snapshot *snapshot, uint64_t now_unix_ns)
{
    if (snapshot == NULL || snapshot->type == STORE_RECORD_DELETE) {
        return false;
    }
    return snapshot->expiry_unix_ns == 0 || snapshot->expiry_unix_ns > now_unix_ns;
}
