#include "store/read.h"

#include <errno.h>

#include "core/rm_assert.h"
#include "store/cache.h"

void store_read_resolve(struct store_shard *shard, struct store_request *request)
{
    store_shard_assert_owner(shard);
    RM_ASSERT(request->operation == STORE_OPERATION_GET);
    struct store_shard *owner = request->store->shards[request->shard];
    store_index_section_begin(shard->epoch_record);
    struct store_entry *entry =
        store_index_find(&owner->keys, request->full_key, request->key_length, request->hash);
    const struct store_snapshot *snapshot = entry != NULL ? store_index_load(entry) : NULL;
    bool live = store_index_live(snapshot, store_shard_unix_ns());
    /* In a sync namespace a version is shown only once durable: a crash could take back
     * one shown earlier, and the next write would give its number to another value. The
     * owner holds such reads until the fdatasync. */
    bool unsynced = snapshot != NULL && store_shard_unsynced(owner, snapshot) &&
                    request->sync;
    if (unsynced || (live && !store_cache_in_memory(snapshot))) {
        store_index_section_end(shard->epoch_record);
        request->operation = STORE_OPERATION_GET_MISS;
        if (store_shard_dispatch(request->store, request) != 0) {
            request->result = (struct store_result){.status = -EAGAIN};
            store_shard_deliver(shard, request);
        }
        return;
    }
    request->result = (struct store_result){.status = STORE_NOT_FOUND};
    if (live) {
        request->result = (struct store_result){
            .status = STORE_OK,
            .version = snapshot->version,
            .type = (enum store_record_type)snapshot->type,
            .value = snapshot->value,
            .value_length = snapshot->value_length,
            .expiry_unix_ns = snapshot->expiry_unix_ns,
        };
    }
    /* Delivered inside the section, so the value stays valid for the callback without a
     * copy; marked as resolved so that delivery calls back instead of looking up again. */
    request->operation = STORE_OPERATION_GET_MISS;
    store_shard_deliver(shard, request);
    store_index_section_end(shard->epoch_record);
}
