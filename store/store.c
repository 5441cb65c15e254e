#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/config.h"
#include "core/log.h"
#include "core/rm_assert.h"
#include "store/cache.h"
#include "store/commit.h"
#include "store/compact.h"
#include "store/hint.h"
#include "store/prefill.h"
#include "store/record.h"
#include "store/segment.h"
#include "store/shard.h"

#define STORE_SHARDS_FILE "store.shards"
#define STORE_CACHE_LINE 64

static int store_check_config(const struct config *config, uint32_t shards)
{
    const char *problem = NULL;
    if (shards == 0 || shards > STORE_SHARDS_MAX) {
        problem = "shards must be between 1 and 64";
    } else if (config->store.segment_bytes < STORE_SEGMENT_BYTES_MIN) {
        problem = "store.segment_bytes must be at least 4096";
    } else if (config->limits.max_value_bytes > STORE_RECORD_VALUE_LIMIT) {
        problem = "limits.max_value_bytes must be at most 64 MiB";
    } else if (config->durability.flush_interval_ms == 0) {
        problem = "durability.flush_interval_ms must be at least 1";
    } else if (config->store.compact_dead_percent > 100) {
        problem = "store.compact_dead_percent must be at most 100";
    } else if (config->data_dir[0] == '\0') {
        problem = "data_dir must not be empty";
    }
    if (problem != NULL) {
        log_error("store: invalid configuration", "problem", problem);
        return -EINVAL;
    }
    return 0;
}

/* A store written with N shards places keys by hash % N; another N would look in the wrong
 * shard, so the count is recorded once and checked at every start. */
static int store_check_shard_count(const char *data_dir, uint32_t shards)
{
    char path[STORE_PATH_MAX];
    snprintf(path, sizeof(path), "%s/" STORE_SHARDS_FILE, data_dir);
    if (mkdir(data_dir, 0755) != 0 && errno != EEXIST) {
        int error = errno;
        log_error("store: cannot create data_dir", "path", data_dir, "error", strerror(error));
        return -error;
    }
    FILE *file = fopen(path, "r");
    if (file != NULL) {
        unsigned recorded = 0;
        int parsed = fscanf(file, "%u", &recorded);
        fclose(file);
        if (parsed == 1 && recorded == shards) {
            return 0;
        }
        char expected[16];
        snprintf(expected, sizeof(expected), "%u", recorded);
        log_error("store: data_dir was written with another number of shards; start with "
                  "that many threads", "path", path, "shards", expected);
        return -EINVAL;
    }
    file = fopen(path, "w");
    if (file == NULL || fprintf(file, "%u\n", shards) < 0 || fflush(file) != 0 ||
        fsync(fileno(file)) != 0) {
        int error = errno;
        if (file != NULL) {
            fclose(file);
        }
        log_error("store: cannot write in data_dir", "path", path, "error", strerror(error));
        return -error;
    }
    fclose(file);
    return 0;
}

static int store_create_shard(struct store *store, uint32_t index)
{
    struct store_shard *shard = rm_calloc(1, sizeof(*shard));
    if (shard == NULL) {
        return -ENOMEM;
    }
    store->shards[index] = shard;
    shard->store = store;
    shard->index = index;
    shard->directory_fd = -1;
    shard->hint.fd = -1;
    shard->record_max = store->record_max;
    shard->cache_limit = store->config.store.cache_bytes / store->shard_count;
    shard->epoch_record = &store->epoch_records[index];
    ck_epoch_register(&store->epoch, shard->epoch_record, NULL);
    int length = snprintf(shard->directory, sizeof(shard->directory), "%s/shard-%u",
                          store->config.data_dir, index);
    RM_ASSERT(length > 0 && (size_t)length < sizeof(shard->directory));
    return store_index_init(&shard->keys);
}

int store_create(const struct config *config, uint32_t shards, struct metrics_registry *metrics,
                 struct store **out)
{
    RM_ASSERT(config != NULL && out != NULL);
    RM_ASSERT(reactor_current() == NULL);
    *out = NULL;
    int result = store_check_config(config, shards);
    if (result == 0) {
        result = store_check_shard_count(config->data_dir, shards);
    }
    if (result != 0) {
        return result;
    }
    struct store *store = rm_calloc(1, sizeof(*store));
    if (store == NULL) {
        return -ENOMEM;
    }
    store->config = *config;
    store->prefill = store_prefill_wanted(config);
    store->shard_count = shards;
    store->record_max = store_record_size(STORE_FULL_KEY_MAX, config->limits.max_value_bytes);
    store_stats_init(&store->stats, metrics);
    ck_epoch_init(&store->epoch);
    /* ck_epoch records are cache-line aligned types; the allocator gives 16 bytes. */
    store->epoch_records_allocation =
        rm_calloc(1, (size_t)shards * sizeof(ck_epoch_record_t) + STORE_CACHE_LINE);
    if (store->epoch_records_allocation == NULL) {
        rm_free(store);
        return -ENOMEM;
    }
    uintptr_t aligned = ((uintptr_t)store->epoch_records_allocation + STORE_CACHE_LINE - 1) &
                        ~(uintptr_t)(STORE_CACHE_LINE - 1);
    store->epoch_records = (ck_epoch_record_t *)aligned;
    for (uint32_t i = 0; i < shards && result == 0; i++) {
        result = store_create_shard(store, i);
    }
    if (result != 0) {
        store_destroy(store);
        return result;
    }
    *out = store;
    return 0;
}

static void store_destroy_shard(struct store_shard *shard)
{
    RM_ASSERT(!shard->open);
    if (shard->filling != NULL && !shard->leak_batches) {
        /* Closed with records flushed by store_shard_close: their old snapshots are free. */
        for (uint32_t i = 0; i < shard->filling->undo_count; i++) {
            if (shard->filling->undo[i].previous != NULL) {
                store_index_snapshot_free(shard->filling->undo[i].previous);
            }
        }
    }
    if (!shard->leak_batches) {
        store_commit_destroy(shard);
        store_compact_destroy(shard);
        store_hint_destroy(shard);
    }
    store_index_destroy(&shard->keys);
    for (uint32_t i = 0; i < shard->segment_count; i++) {
        shard->segments[i]->reads = 0;
        store_segment_free(shard->segments[i]);
    }
    if (shard->directory_fd >= 0) {
        close(shard->directory_fd);
    }
    rm_free(shard);
}

void store_destroy(struct store *store)
{
    if (store == NULL) {
        return;
    }
    RM_ASSERT(reactor_current() == NULL);
    /* Every reactor has stopped: whatever waits in an epoch can go now. */
    for (uint32_t i = 0; i < store->shard_count; i++) {
        if (store->shards[i] != NULL) {
            ck_epoch_reclaim(&store->epoch_records[i]);
        }
    }
    for (uint32_t i = 0; i < store->shard_count; i++) {
        if (store->shards[i] != NULL) {
            store_destroy_shard(store->shards[i]);
        }
    }
    rm_free(store->epoch_records_allocation);
    rm_free(store);
}

static bool store_namespace_valid(const char *ns, size_t length)
{
    if (ns == NULL || length == 0 || length > STORE_NAMESPACE_MAX) {
        return false;
    }
    for (size_t i = 0; i < length; i++) {
        char c = ns[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* The namespace's memo on this reactor, made anew when the namespace differs from the last
 * one. False when the namespace is invalid. */
static bool store_namespace_remember(const struct store *store, struct store_shard *here,
                                     const char *ns, size_t length)
{
    struct store_namespace_memo *memo = &here->namespace_memo;
    if (length != 0 && length == memo->length && memcmp(ns, memo->name, length) == 0) {
        return true;
    }
    if (!store_namespace_valid(ns, length)) {
        return false;
    }
    RM_ASSERT(length <= sizeof(memo->name));
    memcpy(memo->name, ns, length);
    memo->length = (uint16_t)length;
    memo->sync = config_durability_of(&store->config, ns, length) == CONFIG_DURABILITY_SYNC;
    memo->hash_state = store_index_hash_add(STORE_INDEX_HASH_START, (const uint8_t *)ns, length);
    memo->hash_state = store_index_hash_add(memo->hash_state, (const uint8_t *)"/", 1);
    return true;
}

/* Builds "ns/key" into the request and places it. Returns 0 or -EINVAL. */
static int store_prepare(struct store *store, struct store_request *request,
                         struct store_key key, enum store_operation operation,
                         store_callback callback, void *context)
{
    RM_ASSERT(store != NULL && request != NULL);
    RM_ASSERT(callback != NULL);
    struct store_shard *here = store_shard_current(store);
    RM_ASSERT(here->open); /* requests are made once the reactor's setup opened its shard */
    if (key.ns == NULL || key.key == NULL || key.key_length == 0 ||
        key.key_length > STORE_KEY_MAX ||
        !store_namespace_remember(store, here, key.ns, key.ns_length)) {
        return -EINVAL;
    }
    const struct store_namespace_memo *memo = &here->namespace_memo;
    memcpy(request->full_key, key.ns, key.ns_length);
    request->full_key[key.ns_length] = '/';
    memcpy(request->full_key + key.ns_length + 1, key.key, key.key_length);
    request->key_length = (uint16_t)(key.ns_length + 1 + key.key_length);
    request->ns_length = (uint16_t)key.ns_length;
    request->sync = memo->sync;
    request->hash = store_index_hash_end(
        store_index_hash_add(memo->hash_state, key.key, key.key_length));
    RM_DEBUG_ASSERT(request->hash == store_index_hash(request->full_key, request->key_length));
    request->shard = store_shard_for_hash(request->hash, store->shard_count);
    /* The owner's lookup comes soon: start its likely cache miss while the rest is filled. */
    store_index_prefetch(&store->shards[request->shard]->keys, request->hash);
    request->origin = here->index;
    request->store = store;
    request->next = NULL;
    request->owned_value = NULL;
    request->read_batch_sequence = 0;
    request->value = NULL;
    request->value_length = 0;
    request->expected_version = STORE_VERSION_ANY;
    request->ttl_ms = 0;
    request->operation = (uint8_t)operation;
    request->type = STORE_RECORD_PUT;
    request->callback = callback;
    request->context = context;
    request->result = (struct store_result){0};
    request->started_ns = reactor_now_ns(here->reactor);
    return 0;
}

uint32_t store_shard_of(const struct store *store, struct store_key key)
{
    RM_ASSERT(store != NULL);
    RM_ASSERT(key.ns_length <= STORE_NAMESPACE_MAX && key.key_length <= STORE_KEY_MAX);
    uint8_t full_key[STORE_FULL_KEY_MAX];
    memcpy(full_key, key.ns, key.ns_length);
    full_key[key.ns_length] = '/';
    memcpy(full_key + key.ns_length + 1, key.key, key.key_length);
    uint64_t hash = store_index_hash(full_key, key.ns_length + 1 + key.key_length);
    return store_shard_for_hash(hash, store->shard_count);
}

int store_get(struct store *store, struct store_request *request, struct store_key key,
              store_callback callback, void *context)
{
    int result = store_prepare(store, request, key, STORE_OPERATION_GET, callback, context);
    if (result != 0) {
        return result;
    }
    /* Answered at this reactor's next delivery, from the owner's index, lock-free. */
    return store_shard_read(store, request);
}

static int store_write(struct store *store, struct store_request *request, const void *value,
                       size_t value_length)
{
    if (value_length > store->config.limits.max_value_bytes ||
        (value == NULL && value_length > 0)) {
        return -EINVAL;
    }
    request->value = value;
    request->value_length = (uint32_t)value_length;
    return store_shard_dispatch(store, request);
}

int store_put(struct store *store, struct store_request *request, struct store_key key,
              const struct store_write *write, store_callback callback, void *context)
{
    RM_ASSERT(write != NULL);
    int result = store_prepare(store, request, key, STORE_OPERATION_PUT, callback, context);
    if (result != 0) {
        return result;
    }
    request->expected_version = write->expected_version;
    request->ttl_ms = write->ttl_ms;
    return store_write(store, request, write->value, write->value_length);
}

int store_delete(struct store *store, struct store_request *request, struct store_key key,
                 uint64_t expected_version, store_callback callback, void *context)
{
    int result = store_prepare(store, request, key, STORE_OPERATION_DELETE, callback, context);
    if (result != 0) {
        return result;
    }
    request->expected_version = expected_version;
    return store_write(store, request, NULL, 0);
}

int store_append(struct store *store, struct store_request *request,
                 enum store_record_type type, struct store_key key, const void *value,
                 size_t value_length, store_callback callback, void *context)
{
    if (!store_record_type_valid(type) || type == STORE_RECORD_DELETE) {
        return -EINVAL;
    }
    int result = store_prepare(store, request, key, STORE_OPERATION_APPEND, callback, context);
    if (result != 0) {
        return result;
    }
    request->type = (uint8_t)type;
    return store_write(store, request, value, value_length);
}

/* store_get_local builds its key with store_prepare, which wants a callback; it never runs. */
static void store_get_local_unused(struct store_request *request,
                                   const struct store_result *result)
{
    RM_ASSERT(request == NULL);
    RM_ASSERT(result == NULL);
}

int store_get_local(struct store *store, struct store_key key, void *buffer, size_t capacity,
                    struct store_result *result)
{
    struct store_request probe;
    RM_ASSERT(result != NULL);
    int status = store_prepare(store, &probe, key, STORE_OPERATION_GET, store_get_local_unused,
                               NULL);
    if (status != 0) {
        return status;
    }
    struct store_shard *here = store_shard_current(store);
    struct store_shard *owner = store->shards[probe.shard];
    *result = (struct store_result){.status = STORE_NOT_FOUND};
    store_index_section_begin(here->epoch_record);
    struct store_entry *entry =
        store_index_find(&owner->keys, probe.full_key, probe.key_length, probe.hash);
    const struct store_snapshot *snapshot = entry != NULL ? store_index_load(entry) : NULL;
    if (store_index_live(snapshot, store_shard_unix_ns())) {
        *result = (struct store_result){
            .status = STORE_OK, .version = snapshot->version,
            .type = (enum store_record_type)snapshot->type, .value = buffer,
            .value_length = snapshot->value_length,
            .expiry_unix_ns = snapshot->expiry_unix_ns};
        if (!store_cache_in_memory(snapshot)) {
            result->status = -EWOULDBLOCK;
        } else if (snapshot->value_length > capacity) {
            result->status = -ENOBUFS;
        } else if (snapshot->value_length > 0) {
            memcpy(buffer, snapshot->value, snapshot->value_length);
        }
    }
    store_index_section_end(here->epoch_record);
    return result->status;
}

static void store_scan_shard(struct store_shard *owner, const uint8_t *prefix,
                             size_t prefix_length, size_t ns_length,
                             struct store_scan_item *items, uint32_t capacity, uint32_t *count,
                             bool *more)
{
    uint64_t now_unix_ns = store_shard_unix_ns();
    struct store_index_iterator iterator;
    struct store_entry *entry = NULL;
    store_index_iterator_init(&owner->keys, &iterator);
    while (store_index_next(&iterator, &entry)) {
        if (entry->key_length < prefix_length ||
            memcmp(entry->key, prefix, prefix_length) != 0) {
            continue;
        }
        const struct store_snapshot *snapshot = store_index_load(entry);
        if (!store_index_live(snapshot, now_unix_ns)) {
            continue;
        }
        if (*count == capacity) {
            *more = true;
            return;
        }
        struct store_scan_item *item = &items[(*count)++];
        item->version = snapshot->version;
        item->value_length = snapshot->value_length;
        item->type = (enum store_record_type)snapshot->type;
        item->key_length = (uint16_t)(entry->key_length - ns_length - 1);
        RM_ASSERT(item->key_length <= STORE_KEY_MAX);
        memcpy(item->key, entry->key + ns_length + 1, item->key_length);
    }
}

int store_scan(struct store *store, const char *ns, size_t ns_length, const void *prefix,
               size_t prefix_length, struct store_scan_item *items, uint32_t capacity,
               bool *more)
{
    RM_ASSERT(store != NULL && more != NULL);
    RM_ASSERT(items != NULL || capacity == 0);
    if (!store_namespace_valid(ns, ns_length) || prefix_length > STORE_KEY_MAX ||
        (prefix == NULL && prefix_length > 0)) {
        return -EINVAL;
    }
    uint8_t full_prefix[STORE_FULL_KEY_MAX];
    memcpy(full_prefix, ns, ns_length);
    full_prefix[ns_length] = '/';
    if (prefix_length > 0) {
        memcpy(full_prefix + ns_length + 1, prefix, prefix_length);
    }
    struct store_shard *here = store_shard_current(store);
    uint32_t count = 0;
    *more = false;
    store_index_section_begin(here->epoch_record);
    for (uint32_t i = 0; i < store->shard_count && !*more; i++) {
        store_scan_shard(store->shards[i], full_prefix, ns_length + 1 + prefix_length, ns_length,
                         items, capacity, &count, more);
    }
    store_index_section_end(here->epoch_record);
    store_stats_count(&here->tally, STORE_STATS_SCAN, STORE_OK);
    return (int)count;
}

void store_fault_inject(struct store *store, uint32_t countdown, int error)
{
    RM_ASSERT(store != NULL);
    RM_ASSERT(countdown == 0 || error < 0);
    __atomic_store_n(&store->fault_error, error, __ATOMIC_RELAXED);
    __atomic_store_n(&store->fault_countdown, countdown, __ATOMIC_RELEASE);
}
