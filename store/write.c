#include "store/write.h"

#include <errno.h>

#include "core/rm_assert.h"
#include "store/commit.h"
#include "store/record.h"

/* The compare-and-swap rules. An absent key (never written, deleted or expired) matches
 * only expected version 0; a live one only its own version; STORE_VERSION_ANY matches all. */
static int store_write_check(const struct store_request *request,
                             const struct store_snapshot *current, bool live)
{
    uint64_t expected = request->expected_version;
    RM_ASSERT(request->operation != STORE_OPERATION_APPEND || expected == STORE_VERSION_ANY);
    if (request->operation == STORE_OPERATION_DELETE) {
        if (!live) {
            return STORE_NOT_FOUND;
        }
        return expected == STORE_VERSION_ANY || expected == current->version ? STORE_OK
                                                                             : STORE_CONFLICT;
    }
    if (expected == STORE_VERSION_ANY) {
        return STORE_OK;
    }
    if (expected == 0) {
        return live ? STORE_CONFLICT : STORE_OK;
    }
    return live && current->version == expected ? STORE_OK : STORE_CONFLICT;
}

static void store_write_record(const struct store_request *request,
                               const struct store_snapshot *current, uint64_t now_unix_ns,
                               struct store_record *record)
{
    bool tombstone = request->operation == STORE_OPERATION_DELETE;
    *record = (struct store_record){
        .type = tombstone ? STORE_RECORD_DELETE : (enum store_record_type)request->type,
        .key_length = request->key_length,
        .value_length = tombstone ? 0 : request->value_length,
        .version = (current != NULL ? current->version : 0) + 1,
        .timestamp_unix_ns = now_unix_ns,
        .expiry_unix_ns =
            tombstone || request->ttl_ms == 0 ? 0 : now_unix_ns + request->ttl_ms * 1000000ull,
        .key = request->full_key,
        .value = request->value,
    };
    RM_ASSERT(record->version > (current != NULL ? current->version : 0));
    RM_ASSERT(store_record_type_valid(record->type));
}

/* Encodes the record into the batch and publishes its snapshot. Returns 0 or -errno. */
static int store_write_apply(struct store_shard *shard, struct store_request *request,
                             struct store_entry *entry, const struct store_snapshot *current,
                             uint64_t now_unix_ns)
{
    struct store_record record;
    store_write_record(request, current, now_unix_ns, &record);
    uint32_t size = store_record_size(record.key_length, record.value_length);
    struct store_snapshot fields = {
        .version = record.version,
        .expiry_unix_ns = record.expiry_unix_ns,
        .record_length = size,
        .value_length = record.value_length,
        .type = (uint8_t)record.type,
    };
    struct store_snapshot *snapshot = store_index_snapshot_create(&fields, record.value, true);
    if (snapshot == NULL) {
        return -ENOMEM;
    }
    if (entry == NULL) {
        entry = store_index_insert(&shard->keys, request->full_key, request->key_length,
                                   request->hash);
        if (entry == NULL) {
            store_index_snapshot_free(snapshot);
            return store_index_full(&shard->keys) ? -ENOSPC : -ENOMEM;
        }
    }
    uint8_t *out = NULL;
    int result =
        store_commit_reserve(shard, size, &out, &snapshot->segment_id, &snapshot->offset);
    if (result != 0) {
        store_index_snapshot_free(snapshot);
        return result;
    }
    snapshot->batch_sequence = shard->filling->sequence;
    store_record_encode(&record, out);
    store_commit_track(shard, entry, store_shard_swap(shard, entry, snapshot));
    request->result = (struct store_result){
        .status = STORE_OK,
        .version = record.version,
        .type = record.type,
        .expiry_unix_ns = record.expiry_unix_ns,
    };
    return 0;
}

void store_write_execute(struct store_shard *shard, struct store_request *request,
                         uint64_t now_unix_ns)
{
    store_shard_assert_owner(shard);
    RM_ASSERT(request->operation == STORE_OPERATION_PUT ||
              request->operation == STORE_OPERATION_DELETE ||
              request->operation == STORE_OPERATION_APPEND);
    request->result = (struct store_result){.status = shard->failed};
    if (shard->failed != 0) {
        store_shard_finish(shard, request);
        return;
    }
    store_index_section_begin(shard->epoch_record);
    struct store_entry *entry =
        store_index_find(&shard->keys, request->full_key, request->key_length, request->hash);
    const struct store_snapshot *current = entry != NULL ? entry->snapshot : NULL;
    bool live = store_index_live(current, now_unix_ns);
    int status = store_write_check(request, current, live);
    /* A refusal names the current version: in a sync namespace, only once it is durable. */
    bool unsynced = current != NULL && store_shard_unsynced(shard, current);
    if (status != STORE_OK) {
        request->result.status = status;
        request->result.version = live ? current->version : 0;
    } else {
        status = store_write_apply(shard, request, entry, current, now_unix_ns);
        request->result.status = status;
    }
    store_index_section_end(shard->epoch_record);
    if (request->sync && (status == STORE_OK || (status > 0 && unsynced))) {
        store_commit_wait(shard, request);
    } else {
        store_shard_finish(shard, request);
    }
}
