#include "store/recover.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/rm_assert.h"
#include "store/direct.h"
#include "store/hint.h"
#include "store/record.h"
#include "store/segment.h"

/* Hint entries applied this many behind the one being read: the index slots of the ones in
 * between are prefetched meanwhile, since each key lands in a random slot. */
#define STORE_RECOVER_PIPELINE 8u
_Static_assert(RM_IS_POWER_OF_TWO(STORE_RECOVER_PIPELINE), "a ring indexed by a mask");

/* `fields` last: a snapshot ends in its value's flexible array, left empty here. */
struct store_recover_pending {
    const uint8_t *key; /* into the hint image, which outlives the pipeline */
    uint64_t hash;
    uint16_t key_length;
    struct store_snapshot fields;
};

struct store_recover_context {
    struct store_shard *shard;
    struct store_segment *segment;
    uint64_t records;
    uint64_t base; /* segment offset of the scan window's first byte */
    uint64_t hinted_bytes; /* the segment's record bytes, as its hint says */
    uint32_t pending_head;
    uint32_t pending_count;
    struct store_recover_pending pending[STORE_RECOVER_PIPELINE];
};

/* Segments are scanned through one reused window rather than read whole: a fresh buffer the
 * size of a segment costs a copy plus a page fault per page. A record larger than the
 * window grows it, up to STORE_RECORD_MAX. */
#define STORE_RECOVER_WINDOW_BYTES (4u << 20)
/* Record bytes per key assumed when sizing the index for a segment without a hint. */
#define STORE_RECOVER_SCAN_BYTES_PER_KEY 128u

/* Later wins: a higher version, or the same version at a later place (a compaction copy). */
static bool store_recover_newer(const struct store_snapshot *candidate,
                                const struct store_snapshot *current)
{
    if (candidate->version != current->version) {
        return candidate->version > current->version;
    }
    if (candidate->segment_id != current->segment_id) {
        return candidate->segment_id > current->segment_id;
    }
    return candidate->offset > current->offset;
}

static int store_recover_apply(struct store_shard *shard, const struct store_snapshot *fields,
                               const uint8_t *key, uint16_t key_length, uint64_t hash,
                               const uint8_t *value)
{
    RM_DEBUG_ASSERT(hash == store_index_hash(key, key_length));
    if (store_shard_for_hash(hash, shard->store->shard_count) != shard->index) {
        return 0; /* not this shard's key: only a foreign file in the directory does this */
    }
    struct store_entry *entry = store_index_find(&shard->keys, key, key_length, hash);
    if (entry == NULL) {
        entry = store_index_insert(&shard->keys, key, key_length, hash);
        if (entry == NULL) {
            return store_index_full(&shard->keys) ? -ENOSPC : -ENOMEM;
        }
    }
    struct store_snapshot *current = entry->snapshot;
    if (current != NULL && !store_recover_newer(fields, current)) {
        return 0;
    }
    bool cached = value != NULL && (shard->cache_bytes + fields->value_length <=
                                    shard->cache_limit);
    struct store_snapshot *snapshot = store_index_snapshot_create(fields, value, cached);
    if (snapshot == NULL) {
        return -ENOMEM;
    }
    struct store_snapshot *previous = store_shard_swap(shard, entry, snapshot);
    if (previous != NULL) {
        store_index_snapshot_free(previous); /* no reader runs before setup ends */
    }
    return 0;
}

static int store_recover_record(void *context, const struct store_record *record,
                                uint64_t offset, uint32_t length)
{
    struct store_recover_context *recover = context;
    struct store_snapshot fields = {
        .version = record->version,
        .expiry_unix_ns = record->expiry_unix_ns,
        .offset = recover->base + offset,
        .segment_id = recover->segment->id,
        .record_length = length,
        .value_length = record->value_length,
        .type = (uint8_t)record->type,
    };
    recover->records++;
    return store_recover_apply(recover->shard, &fields, record->key, record->key_length,
                               store_index_hash(record->key, record->key_length), record->value);
}

/* Applies the oldest pending hint entry. */
static int store_recover_pending_apply(struct store_recover_context *recover)
{
    RM_ASSERT(recover->pending_count > 0);
    const struct store_recover_pending *oldest = &recover->pending[recover->pending_head];
    recover->pending_head = (recover->pending_head + 1) & (STORE_RECOVER_PIPELINE - 1);
    recover->pending_count--;
    return store_recover_apply(recover->shard, &oldest->fields, oldest->key, oldest->key_length,
                               oldest->hash, NULL);
}

static int store_recover_pending_drain(struct store_recover_context *recover)
{
    int result = 0;
    while (recover->pending_count > 0 && result == 0) {
        result = store_recover_pending_apply(recover);
    }
    recover->pending_count = 0;
    return result;
}

static int store_recover_hint_entry(void *context, const struct store_hint_entry *entry)
{
    struct store_recover_context *recover = context;
    int result = 0;
    if (recover->pending_count == STORE_RECOVER_PIPELINE) {
        result = store_recover_pending_apply(recover);
    }
    RM_ASSERT(recover->pending_count < STORE_RECOVER_PIPELINE);
    uint32_t tail = (recover->pending_head + recover->pending_count) &
                    (STORE_RECOVER_PIPELINE - 1);
    struct store_recover_pending *pending = &recover->pending[tail];
    *pending = (struct store_recover_pending){
        .fields = {
            .version = entry->version,
            .expiry_unix_ns = entry->expiry_unix_ns,
            .offset = entry->offset,
            .segment_id = recover->segment->id,
            .record_length = entry->record_length,
            .value_length = entry->value_length,
            .type = (uint8_t)entry->type,
        },
        .key = entry->key,
        .hash = store_index_hash(entry->key, entry->key_length),
        .key_length = entry->key_length,
    };
    store_index_prefetch(&recover->shard->keys, pending->hash);
    recover->pending_count++;
    recover->records++;
    return result;
}

/* Reads exactly length bytes at offset. */
static int store_recover_pread(int fd, uint8_t *buffer, size_t length, uint64_t offset)
{
    size_t done = 0;
    while (done < length) {
        ssize_t got = pread(fd, buffer + done, length - done, (off_t)(offset + done));
        if (got <= 0) {
            return got < 0 ? -errno : -EIO;
        }
        done += (size_t)got;
    }
    return 0;
}

/* Reads a whole file; *image is NULL for an empty file. */
static int store_recover_read(int fd, uint64_t length, uint8_t **image)
{
    *image = NULL;
    if (length == 0) {
        return 0;
    }
    uint8_t *buffer = rm_malloc(length);
    if (buffer == NULL) {
        return -ENOMEM;
    }
    int result = store_recover_pread(fd, buffer, length, 0);
    if (result != 0) {
        rm_free(buffer);
        return result;
    }
    *image = buffer;
    return 0;
}

/* Whether [from, to) of the file holds only zeros: what the zero fill wrote ahead of the
 * records (prefill.h), not a torn or corrupt tail. */
static bool store_recover_zero_tail(int fd, uint64_t from, uint64_t to)
{
    uint8_t buffer[64 << 10];
    while (from < to) {
        size_t length = to - from < sizeof(buffer) ? (size_t)(to - from) : sizeof(buffer);
        if (store_recover_pread(fd, buffer, length, from) != 0) {
            return false;
        }
        for (size_t i = 0; i < length; i++) {
            if (buffer[i] != 0) {
                return false;
            }
        }
        from += length;
    }
    return true;
}

static void store_recover_truncate(struct store_shard *shard, struct store_segment *segment,
                                   uint64_t good, uint64_t size, int reason)
{
    if (store_recover_zero_tail(segment->fd, good, size)) {
        /* The records end where the zeros start; a lost truncate only brings zeros back. */
        if (ftruncate(segment->fd, (off_t)good) != 0) {
            log_warn("store: cannot trim the zeros after a segment's records; they stay",
                     "file", segment->path, "error", strerror(errno));
        }
        return;
    }
    char offset[32];
    char dropped[32];
    snprintf(offset, sizeof(offset), "%llu", (unsigned long long)good);
    snprintf(dropped, sizeof(dropped), "%llu", (unsigned long long)(size - good));
    log_warn("store: torn or corrupt segment tail cut at the last good record (a crash during "
             "a write does this; acknowledged sync writes are never in the cut part)",
             "file", segment->path, "offset", offset, "bytes_dropped", dropped, "reason",
             reason == STORE_RECORD_SHORT ? "short record" : "bad record (CRC or header)");
    if (ftruncate(segment->fd, (off_t)good) != 0 || fdatasync(segment->fd) != 0) {
        log_error("store: cannot truncate a damaged segment; its tail is ignored in memory "
                  "but stays on disk", "file", segment->path, "error", strerror(errno));
    }
    store_stats_add(&shard->store->stats, shard->index, shard->store->stats.bytes_truncated,
                    (int64_t)(size - good));
}

/* Scans [0, size) window by window. A record cut by the window's end is carried to the
 * front of the next window, so every record is decoded whole exactly as in a one-piece
 * scan: the good prefix, its stop reason and the CRC checks do not depend on the window.
 * Returns 0 with *good and *reason set, or a negative errno from reading. */
static int store_recover_windows(struct store_recover_context *recover, uint64_t size,
                                 uint64_t *good, int *reason)
{
    recover->base = 0;
    *good = 0;
    *reason = 0;
    if (size == 0) {
        return 0;
    }
    size_t capacity = size < STORE_RECOVER_WINDOW_BYTES ? (size_t)size
                                                        : STORE_RECOVER_WINDOW_BYTES;
    uint8_t *buffer = rm_malloc(capacity);
    size_t filled = 0;
    int result = buffer == NULL ? -ENOMEM : 0;
    while (result == 0 && recover->base + filled < size) {
        uint64_t left = size - recover->base - filled;
        size_t want = left < capacity - filled ? (size_t)left : capacity - filled;
        result = store_recover_pread(recover->segment->fd, buffer + filled, want,
                                     recover->base + filled);
        if (result != 0) {
            break;
        }
        filled += want;
        uint64_t used = store_record_scan(buffer, filled, store_recover_record, recover, reason);
        *good = recover->base + used;
        bool at_end = recover->base + filled == size;
        if (*reason != 0 && (*reason != STORE_RECORD_SHORT || at_end)) {
            break; /* a real stop: corrupt, torn at the end of the file, or refused */
        }
        memmove(buffer, buffer + used, filled - (size_t)used);
        filled -= (size_t)used;
        recover->base = *good;
        if (filled == capacity) {
            /* One record larger than the window: decode said short, not corrupt, so its
             * header is sane and it fits in STORE_RECORD_MAX. */
            RM_ASSERT(capacity < STORE_RECORD_MAX);
            size_t grown = capacity * 2 < STORE_RECORD_MAX ? capacity * 2 : STORE_RECORD_MAX;
            uint8_t *bigger = rm_realloc(buffer, grown);
            if (bigger == NULL) {
                result = -ENOMEM;
                break;
            }
            buffer = bigger;
            capacity = grown;
        }
    }
    rm_free(buffer);
    return result;
}

static int store_recover_scan(struct store_recover_context *recover, uint64_t size)
{
    struct store_segment *segment = recover->segment;
    uint64_t good = 0;
    int reason = 0;
    int result = store_recover_windows(recover, size, &good, &reason);
    if (result != 0) {
        log_error("store: cannot read a segment at recovery", "file", segment->path, "error",
                  strerror(-result));
        return result;
    }
    if (reason != 0 && reason != STORE_RECORD_SHORT && reason != STORE_RECORD_CORRUPT) {
        return reason; /* the index refused: out of memory or full */
    }
    if (good < size) {
        store_recover_truncate(recover->shard, segment, good, size, reason);
    }
    segment->size = good;
    segment->written = good;
    return 0;
}

static int store_recover_hint(struct store_recover_context *recover, uint64_t size)
{
    struct store_segment *segment = recover->segment;
    int fd = open(segment->hint_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -ENOENT;
    }
    struct stat status;
    uint8_t *image = NULL;
    int result = fstat(fd, &status) != 0 ? -errno : 0;
    if (result == 0 && (uint64_t)status.st_size > size + STORE_HINT_HEADER_BYTES) {
        result = -EBADMSG; /* larger than any hint of this segment can be */
    }
    if (result == 0) {
        result = store_recover_read(fd, (uint64_t)status.st_size, &image);
    }
    close(fd);
    /* The segment file may go on past its records with zeros written ahead (prefill.h). */
    uint64_t records = result == 0 ? store_hint_segment_bytes(image, (size_t)status.st_size) : 0;
    if (result == 0 && (records > size || !store_recover_zero_tail(segment->fd, records, size))) {
        result = -EBADMSG;
    }
    if (result == 0) {
        recover->hinted_bytes = records;
        result = store_hint_parse(image, (size_t)status.st_size, segment->id, records,
                                  store_recover_hint_entry, recover);
        int drained = store_recover_pending_drain(recover);
        result = result == 0 ? drained : result;
    }
    rm_free(image);
    if (result == -EBADMSG) {
        log_warn("store: invalid hint file; scanning its segment instead", "file",
                 segment->hint_path);
    }
    return result;
}

static int store_recover_compare_ids(const void *left, const void *right)
{
    uint32_t a = *(const uint32_t *)left;
    uint32_t b = *(const uint32_t *)right;
    return (a > b) - (a < b);
}

/* Lists the segment ids in the shard directory, ascending. */
static int store_recover_list(struct store_shard *shard, uint32_t *ids, uint32_t *count)
{
    DIR *directory = opendir(shard->directory);
    if (directory == NULL) {
        return -errno;
    }
    *count = 0;
    int result = 0;
    struct dirent *item;
    while ((item = readdir(directory)) != NULL) {
        uint32_t id = 0;
        if (!store_segment_parse_name(item->d_name, &id)) {
            continue;
        }
        if (*count == STORE_SEGMENTS_MAX) {
            log_error("store: more segment files than a shard may hold", "directory",
                      shard->directory);
            result = -ENOSPC;
            break;
        }
        ids[(*count)++] = id;
    }
    closedir(directory);
    qsort(ids, *count, sizeof(ids[0]), store_recover_compare_ids);
    return result;
}

/* Sets *keys to the entry count a hint header claims, bounded by what the file's size can
 * hold. False when there is no readable hint. An estimate only: the hint is validated when
 * it is loaded. */
static bool store_recover_hint_keys(const struct store_shard *shard, uint32_t id,
                                    uint64_t *keys)
{
    char name[64];
    snprintf(name, sizeof(name), STORE_SEGMENT_HINT_FORMAT, id);
    int fd = openat(shard->directory_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    uint8_t header[STORE_HINT_HEADER_BYTES];
    struct stat status;
    bool found = fstat(fd, &status) == 0 &&
                 store_recover_pread(fd, header, sizeof(header), 0) == 0;
    close(fd);
    if (found) {
        uint64_t claimed = (uint64_t)header[12] | (uint64_t)header[13] << 8 |
                           (uint64_t)header[14] << 16 | (uint64_t)header[15] << 24;
        uint64_t fit = ((uint64_t)status.st_size - STORE_HINT_HEADER_BYTES) /
                       STORE_HINT_ENTRY_BYTES;
        *keys = claimed < fit ? claimed : fit;
    }
    return found;
}

/* An upper bound on the keys the shard's files hold, to size the index once. Sealed
 * segments count their hint's entries; a segment that will be scanned counts one key per
 * STORE_RECOVER_SCAN_BYTES_PER_KEY, which real records rarely undercut (a tiny-record
 * segment only makes the table grow on demand as it did without the estimate). */
static uint32_t store_recover_estimate(const struct store_shard *shard, const uint32_t *ids,
                                       uint32_t count)
{
    uint64_t keys = 0;
    for (uint32_t i = 0; i < count && keys < STORE_INDEX_KEYS_MAX; i++) {
        uint64_t hinted = 0;
        if (i + 1 < count && store_recover_hint_keys(shard, ids[i], &hinted)) {
            keys += hinted;
            continue;
        }
        char name[64];
        struct stat status;
        snprintf(name, sizeof(name), STORE_SEGMENT_NAME_FORMAT, ids[i]);
        if (fstatat(shard->directory_fd, name, &status, 0) == 0) {
            keys += (uint64_t)status.st_size / STORE_RECOVER_SCAN_BYTES_PER_KEY;
        }
    }
    return keys < STORE_INDEX_KEYS_MAX ? (uint32_t)keys : STORE_INDEX_KEYS_MAX;
}

static int store_recover_segment(struct store_shard *shard, uint32_t id, bool last,
                                 uint64_t *records)
{
    struct store_segment *segment = store_segment_new(shard, id);
    if (segment == NULL) {
        return -ENOMEM;
    }
    int result = store_shard_segment_add(shard, segment);
    RM_ASSERT(result == 0);
    segment->state = STORE_SEGMENT_SEALED;
    segment->directory_synced = true;
    segment->fd = open(segment->path, O_RDWR | O_CLOEXEC);
    struct stat status;
    if (segment->fd < 0 || fstat(segment->fd, &status) != 0) {
        int error = errno;
        log_error("store: cannot open a segment at recovery; check permissions", "file",
                  segment->path, "error", strerror(error));
        return -error;
    }
    struct store_recover_context recover = {.shard = shard, .segment = segment};
    uint64_t size = (uint64_t)status.st_size;
    result = last ? -ENOENT : store_recover_hint(&recover, size);
    if (result == 0) {
        segment->size = recover.hinted_bytes;
        segment->written = recover.hinted_bytes;
        segment->hinted = true;
    } else if (result == -ENOENT || result == -EBADMSG || result == -EIO) {
        result = store_recover_scan(&recover, size);
    }
    *records += recover.records;
    return result;
}

static int store_recover_directory(struct store_shard *shard)
{
    const char *root = shard->store->config.data_dir;
    if (mkdir(root, 0755) != 0 && errno != EEXIST) {
        int error = errno;
        log_error("store: cannot create data_dir", "path", root, "error", strerror(error));
        return -error;
    }
    if (mkdir(shard->directory, 0755) != 0 && errno != EEXIST) {
        int error = errno;
        log_error("store: cannot create the shard directory", "path", shard->directory,
                  "error", strerror(error));
        return -error;
    }
    shard->directory_fd = open(shard->directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return shard->directory_fd < 0 ? -errno : 0;
}

/* The first segment of an empty shard, created and made durable before serving. */
static int store_recover_first_segment(struct store_shard *shard)
{
    struct store_segment *segment = store_segment_new(shard, 1);
    if (segment == NULL) {
        return -ENOMEM;
    }
    int result = store_shard_segment_add(shard, segment);
    RM_ASSERT(result == 0);
    segment->fd = open(segment->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (segment->fd < 0 || fsync(shard->directory_fd) != 0) {
        int error = errno;
        log_error("store: cannot create a segment file", "file", segment->path, "error",
                  strerror(error));
        return -error;
    }
    segment->directory_synced = true;
    segment->hint_tracked = true; /* empty: every record it will hold is listed */
    return 0;
}

int store_recover(struct store_shard *shard)
{
    store_shard_assert_owner(shard);
    RM_ASSERT(shard->segment_count == 0);
    int result = store_recover_directory(shard);
    uint32_t *ids = rm_malloc(STORE_SEGMENTS_MAX * sizeof(*ids));
    uint32_t count = 0;
    if (ids == NULL) {
        return -ENOMEM;
    }
    if (result == 0) {
        result = store_recover_list(shard, ids, &count);
    }
    if (result == 0) {
        /* Best effort: without the room the table grows on demand while loading. */
        (void)store_index_reserve(&shard->keys, store_recover_estimate(shard, ids, count));
    }
    uint64_t records = 0;
    for (uint32_t i = 0; i < count && result == 0; i++) {
        result = store_recover_segment(shard, ids[i], i + 1 == count, &records);
    }
    rm_free(ids);
    if (result == 0 && count == 0) {
        result = store_recover_first_segment(shard);
    }
    if (result != 0) {
        return result;
    }
    shard->active = shard->segments[shard->segment_count - 1];
    shard->active->state = STORE_SEGMENT_ACTIVE;
    shard->next_segment_id = shard->active->id + 1;
    store_stats_add(&shard->store->stats, shard->index, shard->store->stats.records_recovered,
                    (int64_t)records);
    RM_ASSERT(shard->active->size == shard->active->written);
    return store_direct_resume(shard, shard->active);
}
