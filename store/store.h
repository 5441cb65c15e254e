#ifndef RM_STORE_H
#define RM_STORE_H

/* The state store: a Bitcask-like log-structured key-value store, one shard per reactor.
 *
 * A key is (namespace, key). Its shard is store_shard_of(): hash(namespace "/" key) % shards.
 * The shard's reactor alone writes the shard; every reactor reads every shard's index
 * lock-free. Writes from other reactors travel to the owner by reactor_post() and their
 * results come back by message, so callbacks always run on the calling reactor; both go in
 * batches, one message per pair of reactors per loop iteration. The owner's own writes wait
 * for its store tick too and run there as one batch (store_get_local and store_scan see a
 * write once it ran); a store_get waits behind the writes its reactor made before it.
 *
 * Asynchronous calls (store_get, store_put, store_delete, store_append) take a caller-owned
 * `struct store_request` that must stay valid, and untouched, until its callback runs, along
 * with the key and value bytes passed in. They return 0 when the callback will run, or a
 * negative errno when the request was refused at once (then the callback never runs):
 *   -EINVAL  bad namespace, key or value length (see the limits below)
 *   -EAGAIN  the batch for the owner is full (4096 requests waiting for this loop iteration
 *            to end); shed load (HTTP 503) and retry later
 * The callback never runs inside the call that started the request.
 *
 * The callback's result: status 0 (STORE_OK), STORE_CONFLICT (result.version holds the
 * current version, 0 when the key is absent), STORE_NOT_FOUND, or a negative errno:
 *   -EAGAIN  the shard's commit buffer is full while a flush is in flight (HTTP 503)
 *   -EIO     the shard failed a disk write or fsync; it refuses writes until a restart
 *            (recovery truncates whatever was not made durable)
 *   -ENOSPC  the shard's key table or segment table is full
 *   -EBADMSG a record read back from disk failed its CRC; it is never served
 * result.value points at value bytes valid only during the callback.
 *
 * Durability per namespace (config durability): sync writes are acknowledged after the
 * group-commit fdatasync that covers them; async writes at once, and are made durable within
 * flush_interval_ms. In a sync namespace nothing shows a version before it is durable: a
 * read, or a conflict naming the current version, that finds one still in a batch waits for
 * the fdatasync that covers it (otherwise a crash could take back a version someone saw, and
 * the next write would give its number to another value). In an async namespace reads
 * return the latest accepted version.
 *
 * Versions start at 1 and only grow per key, across restarts and across delete + recreate
 * (a delete writes a tombstone with the next version; the tombstone stays, so a recreated
 * key continues from it). Expired keys (TTL) read as absent and continue the same way. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/reactor.h"

struct config;
struct metrics_registry;
struct store;

#define STORE_KEY_MAX 512
#define STORE_NAMESPACE_MAX 63
/* Namespace, a '/', and the key: the bytes the index and the records hold. */
#define STORE_FULL_KEY_MAX (STORE_NAMESPACE_MAX + 1 + STORE_KEY_MAX)
#define STORE_SHARDS_MAX REACTOR_MAX
/* expected_version meaning "no precondition" (embedding, journal appends). */
#define STORE_VERSION_ANY UINT64_MAX

enum store_status {
    STORE_OK = 0,
    STORE_CONFLICT = 1,
    STORE_NOT_FOUND = 2,
};

/* On-disk record types. The last three are the agent runtime's journal (store_append). */
enum store_record_type {
    STORE_RECORD_PUT = 1,
    STORE_RECORD_DELETE = 2, /* tombstone */
    STORE_RECORD_INVOCATION_CREATED = 3,
    STORE_RECORD_STEP_COMPLETED = 4,
    STORE_RECORD_INVOCATION_FINISHED = 5,
};

struct store_key {
    const char *ns;
    size_t ns_length;
    const void *key;
    size_t key_length;
};

struct store_result {
    int status;
    uint64_t version;
    enum store_record_type type;
    const uint8_t *value;
    size_t value_length;
    uint64_t expiry_unix_ns; /* 0 = never expires */
};

struct store_request;
typedef void (*store_callback)(struct store_request *request, const struct store_result *result);

enum store_operation {
    STORE_OPERATION_GET = 1,
    STORE_OPERATION_GET_MISS,
    STORE_OPERATION_PUT,
    STORE_OPERATION_DELETE,
    STORE_OPERATION_APPEND,
};

/* Caller-owned; the caller sets nothing in it directly: the store_* calls fill it. The
 * fields are visible only so that callers can embed it without an allocation. */
struct store_request {
    /* The first 64 bytes hold what the store reads of every request when it walks a batch
     * of them. */
    struct store_request *next;
    uint64_t hash;
    struct store *store;
    store_callback callback;
    void *context;
    uint32_t origin; /* the calling reactor */
    uint32_t shard;
    uint32_t value_length;
    uint16_t key_length; /* of full_key */
    uint16_t ns_length;
    uint8_t operation;
    uint8_t type;
    bool sync; /* the namespace is in sync durability */
    const uint8_t *value;
    uint8_t *owned_value; /* a value read from disk for this request; freed after callback */
    uint64_t expected_version;
    uint64_t ttl_ms;
    uint64_t started_ns;
    struct store_result result;
    uint64_t read_offset; /* the record a disk read fetches */
    uint32_t read_length;
    uint32_t read_segment_id;
    uint64_t read_batch_sequence; /* the batch that wrote what a read saw */
    struct reactor_op read_op;
    uint8_t full_key[STORE_FULL_KEY_MAX];
};

/* Creates the store for `shards` reactors (one shard each) from the config's data_dir,
 * store and durability sections; `metrics` may be NULL. Main thread, before the reactors
 * start. Returns 0 or a negative errno (-EINVAL with a log line for bad settings). */
int store_create(const struct config *config, uint32_t shards, struct metrics_registry *metrics,
                 struct store **out);
/* Opens the calling reactor's shard (shard index = reactor index) and recovers it from disk.
 * Call from the reactor group's setup callback; blocking file I/O happens here. */
int store_shard_open(struct store *store, struct reactor *reactor);
/* True while the shard has writes to flush, fsyncs or reads in flight: the engine's `busy`
 * callback must include it so that a clean stop loses no acknowledged (async) write. */
bool store_shard_busy(struct store *store, struct reactor *reactor);
/* From the group's teardown callback: flushes anything left (blocking) and frees the shard. */
void store_shard_close(struct store *store, struct reactor *reactor);
/* After the group joined. */
void store_destroy(struct store *store);

uint32_t store_shard_of(const struct store *store, struct store_key key);

/* Reads a key. On a reactor thread. */
int store_get(struct store *store, struct store_request *request, struct store_key key,
              store_callback callback, void *context);

struct store_write {
    uint64_t expected_version; /* 0: must not exist; STORE_VERSION_ANY: unconditional */
    const void *value;
    size_t value_length;
    uint64_t ttl_ms; /* 0: never expires */
};
int store_put(struct store *store, struct store_request *request, struct store_key key,
              const struct store_write *write, store_callback callback, void *context);

/* Deletes with compare-and-swap (STORE_VERSION_ANY: unconditional). */
int store_delete(struct store *store, struct store_request *request, struct store_key key,
                 uint64_t expected_version, store_callback callback, void *context);

/* Appends a journal record of `type` for a key, unconditionally, with the next version. The
 * index keeps the latest record per key: use one key per journal item (for example
 * "<invocation>/step/<n>") and store_scan to list them. */
int store_append(struct store *store, struct store_request *request,
                 enum store_record_type type, struct store_key key, const void *value,
                 size_t value_length, store_callback callback, void *context);

/* The synchronous fast path, from any reactor: copies the value of a key whose value is in
 * memory into buffer. Returns STORE_OK (result filled, result->value = buffer),
 * STORE_NOT_FOUND, -EWOULDBLOCK when the value is only on disk (use store_get), -ENOBUFS
 * when capacity is smaller than result->value_length, or -EINVAL. */
int store_get_local(struct store *store, struct store_key key, void *buffer, size_t capacity,
                    struct store_result *result);

/* One live key found by store_scan. */
struct store_scan_item {
    uint64_t version;
    uint32_t value_length;
    uint16_t key_length;
    enum store_record_type type;
    char key[STORE_KEY_MAX];
};

/* Lists up to `capacity` live keys of a namespace that start with `prefix`, across every
 * shard, lock-free, in no particular order; on a reactor thread. Returns the count, or
 * -EINVAL. `*more` is set when matches were left out for lack of room. */
int store_scan(struct store *store, const char *ns, size_t ns_length, const void *prefix,
               size_t prefix_length, struct store_scan_item *items, uint32_t capacity,
               bool *more);

/* Test-only fault injection in the style of SQLite's FAULTSIM: the `countdown`-th store
 * disk completion from now (1 = the next one) on any shard reports `error` instead of its
 * result (for example -EIO or -ENOSPC); 0 disarms. */
void store_fault_inject(struct store *store, uint32_t countdown, int error);

#endif
