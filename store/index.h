#ifndef RM_STORE_INDEX_H
#define RM_STORE_INDEX_H

/* The shard's in-memory index: an insert-only open-addressing hash table mapping a full key
 * to its entry, in the spirit of ck_hs in SPMC mode. Only the owner reactor inserts; every
 * reactor looks up lock-free inside a ck_epoch section of its own epoch record.
 *
 * Each slot holds the key's 64-bit hash beside the entry pointer, so that a probe compares
 * hashes in the table and dereferences an entry only when its hash matches (ck_hs calls its
 * compare callback, a cache miss on the entry, for every occupied slot it probes). Entries
 * are never removed, so a slot, once published, never changes: the owner writes the hash,
 * then the entry with a release store; readers load the entry with acquire and stop at the
 * first empty slot. Growth builds a doubled table aside, publishes it by pointer and retires
 * the old one through ck_epoch, which readers may still be walking.
 *
 * An entry is created once per key and lives until the shard closes (deleted keys keep a
 * tombstone snapshot, which is what makes versions continue after delete + recreate). Its
 * state is an immutable snapshot swapped by pointer: writers build a new snapshot, publish it
 * with a release store, and retire the old one through ck_epoch_call; readers load it with
 * an acquire load and may use it until their section ends. */

#include <ck_epoch.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/rm_assert.h"
#include "store/store.h"

/* Keys per shard. The table doubles once it is half full, so it peaks at four slots per key
 * (16 bytes each) and never holds fewer than two. */
#define STORE_INDEX_KEYS_MAX (1u << 22)
#define STORE_INDEX_SLOTS_INITIAL 2048u
_Static_assert(RM_IS_POWER_OF_TWO(STORE_INDEX_SLOTS_INITIAL), "slots are masked by the hash");
_Static_assert(STORE_INDEX_SLOTS_INITIAL / 2 <= STORE_INDEX_KEYS_MAX, "initial within bound");

/* ThreadSanitizer cannot see the ordering that ck_epoch and the reactors' ck_ring mailboxes
 * provide (libck is not instrumented and relies on fences), so the store tells it
 * explicitly: reader sections release at their end and reclamation acquires; a list of
 * requests is released when posted and acquired by its handler. The index's own slots use C
 * atomics, which TSan sees. Compiled away outside TSan builds. */
#if defined(__SANITIZE_THREAD__)
#define STORE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STORE_TSAN 1
#endif
#endif
#ifdef STORE_TSAN
#include <sanitizer/tsan_interface.h>
#define STORE_TSAN_RELEASE(address) __tsan_release((void *)(address))
#define STORE_TSAN_ACQUIRE(address) __tsan_acquire((void *)(address))
#else
#define STORE_TSAN_RELEASE(address) ((void)(address))
#define STORE_TSAN_ACQUIRE(address) ((void)(address))
#endif

struct store_snapshot {
    ck_epoch_entry_t epoch_entry;
    uint64_t version;
    uint64_t expiry_unix_ns; /* 0 = never */
    uint64_t offset;         /* of the record in its segment */
    uint64_t batch_sequence; /* the commit batch that wrote the record; 0: recovered */
    uint32_t segment_id;
    uint32_t record_length;
    uint32_t value_length;
    uint8_t type;   /* enum store_record_type */
    bool cached;    /* value[] holds the value */
    uint8_t value[];
};

struct store_entry {
    struct store_snapshot *snapshot; /* NULL: never written durably (an undone insert) */
    uint64_t hash;
    const uint8_t *key;
    uint16_t key_length;
    /* Owner-only: the write-back cache's FIFO of entries whose snapshot holds the value. */
    bool cache_listed;
    uint32_t hint_mark; /* owner-only: the segment whose hint is being built lists it */
    struct store_entry *cache_previous;
    struct store_entry *cache_next;
    uint8_t key_storage[];
};

struct store_index_slot {
    uint64_t hash;
    struct store_entry *entry; /* NULL: empty, and the end of every probe through it */
};

struct store_index_table {
    ck_epoch_entry_t epoch_entry;
    uint64_t mask; /* slots - 1 */
    struct store_index_slot slots[];
};

struct store_index {
    struct store_index_table *table; /* replaced by the owner on growth; readers acquire it */
    uint32_t count;
};

/* A walk over one table: the one current when it started (owner: nothing is inserted during
 * the walk; readers: keys inserted meanwhile may or may not be seen). */
struct store_index_iterator {
    const struct store_index_table *table;
    uint64_t position;
};

uint64_t store_index_hash(const uint8_t *key, size_t length);
/* The same hash in steps, for a caller that hashes many keys with a common prefix (their
 * namespace): for a key made of a then b, store_index_hash(key) == store_index_hash_end(
 * store_index_hash_add(store_index_hash_add(STORE_INDEX_HASH_START, a), b)). */
#define STORE_INDEX_HASH_START 0xcbf29ce484222325ull
uint64_t store_index_hash_add(uint64_t state, const uint8_t *bytes, size_t length);
uint64_t store_index_hash_end(uint64_t state);

/* Sets the calling thread's epoch record, used to defer frees of replaced tables.
 * The owner calls it on its thread before writing. */
void store_index_writer_set(ck_epoch_record_t *record);

int store_index_init(struct store_index *index);
/* Owner only: sizes the table for `keys` at once, so that loading them does not rehash it
 * again and again. False when out of memory; the table then still grows on demand. */
bool store_index_reserve(struct store_index *index, uint32_t keys);
/* Frees every entry and snapshot; no reader may be active. */
void store_index_destroy(struct store_index *index);

/* Any thread, inside an epoch section. */
struct store_entry *store_index_find(struct store_index *index, const uint8_t *key,
                                     uint16_t key_length, uint64_t hash);
/* Any thread: starts loading the slot where a lookup of `hash` begins, so that a caller with
 * several keys in hand overlaps their cache misses. */
void store_index_prefetch(const struct store_index *index, uint64_t hash);
/* Any thread, inside an epoch section: the entry a lookup of `hash` most likely returns (the
 * first on its probe with that hash; keys are not compared), or NULL. For prefetching only:
 * a caller with a batch of keys starts loading their entries, then their snapshots, before
 * it looks any of them up. */
const struct store_entry *store_index_peek(const struct store_index *index, uint64_t hash);
/* Owner only: adds an entry without a snapshot. Returns NULL when full (-ENOSPC) or out of
 * memory; the caller reports which from store_index_full(). */
struct store_entry *store_index_insert(struct store_index *index, const uint8_t *key,
                                       uint16_t key_length, uint64_t hash);
bool store_index_full(const struct store_index *index);

struct store_snapshot *store_index_load(const struct store_entry *entry);
void store_index_publish(struct store_entry *entry, struct store_snapshot *snapshot);

/* value_length bytes of value[] when cached is true, none otherwise. */
struct store_snapshot *store_index_snapshot_create(const struct store_snapshot *fields,
                                                   const uint8_t *value, bool cached);
void store_index_snapshot_free(struct store_snapshot *snapshot);
/* Frees the snapshot once no reader can hold it; owner, inside its epoch section. Snapshots
 * gather in the thread's bag, handed to the epoch when full or by store_index_retire_flush. */
void store_index_retire(ck_epoch_record_t *record, struct store_snapshot *snapshot);
/* Hands the thread's bag to the epoch; the owner calls it before each ck_epoch_poll and when
 * its shard closes. */
void store_index_retire_flush(ck_epoch_record_t *record);

void store_index_section_begin(ck_epoch_record_t *record);
void store_index_section_end(ck_epoch_record_t *record);

/* Iterates every entry; readers that are not the owner do it inside an epoch section. */
void store_index_iterator_init(const struct store_index *index,
                               struct store_index_iterator *iterator);
bool store_index_next(struct store_index_iterator *iterator, struct store_entry **entry);

/* True when the snapshot is a live value (not a tombstone, not expired at now). */
bool store_index_live(const struct store_snapshot *snapshot, uint64_t now_unix_ns);

#endif
