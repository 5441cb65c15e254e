#include "store/hint.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/rm_assert.h"
#include "store/crc32c.h"
#include "store/record.h"

#define STORE_HINT_MAGIC 0x54484d52u /* "RMHT" */
#define STORE_HINT_FORMAT 1u
/* A hint buffer up to this size is kept for the next hint: a fresh one of several MiB comes
 * straight from mmap and costs a page fault per page every segment roll. */
#define STORE_HINT_BUFFER_KEEP_BYTES (16u << 20)

enum store_hint_stage {
    STORE_HINT_IDLE,
    STORE_HINT_OPENING,
    STORE_HINT_WRITING,
    STORE_HINT_SYNCING,
    STORE_HINT_CLOSING,
};

static uint32_t store_hint_u32(const uint8_t *in)
{
    uint32_t value;
    memcpy(&value, in, sizeof(value));
    return le32toh(value);
}

static uint64_t store_hint_u64(const uint8_t *in)
{
    uint64_t value;
    memcpy(&value, in, sizeof(value));
    return le64toh(value);
}

static void store_hint_put_u32(uint8_t *out, uint32_t value)
{
    value = htole32(value);
    memcpy(out, &value, sizeof(value));
}

static void store_hint_put_u64(uint8_t *out, uint64_t value)
{
    value = htole64(value);
    memcpy(out, &value, sizeof(value));
}

/* Decodes and range-checks one entry; returns its size or -EBADMSG. */
static int64_t store_hint_entry_decode(const uint8_t *bytes, size_t remaining,
                                       uint64_t segment_bytes, struct store_hint_entry *entry)
{
    if (remaining < STORE_HINT_ENTRY_BYTES) {
        return -EBADMSG;
    }
    uint16_t key_length = (uint16_t)(bytes[2] | (bytes[3] << 8));
    *entry = (struct store_hint_entry){
        .type = (enum store_record_type)bytes[0],
        .key_length = key_length,
        .record_length = store_hint_u32(bytes + 4),
        .value_length = store_hint_u32(bytes + 8),
        .offset = store_hint_u64(bytes + 16),
        .version = store_hint_u64(bytes + 24),
        .expiry_unix_ns = store_hint_u64(bytes + 32),
        .key = bytes + STORE_HINT_ENTRY_BYTES,
    };
    if (!store_record_type_valid(bytes[0]) || bytes[1] != 0 || key_length == 0 ||
        key_length > STORE_FULL_KEY_MAX || remaining - STORE_HINT_ENTRY_BYTES < key_length ||
        entry->value_length > STORE_RECORD_VALUE_LIMIT || entry->version == 0 ||
        entry->record_length != store_record_size(key_length, entry->value_length) ||
        entry->offset > segment_bytes || segment_bytes - entry->offset < entry->record_length) {
        return -EBADMSG;
    }
    return STORE_HINT_ENTRY_BYTES + key_length;
}

static int store_hint_header_check(const uint8_t *image, size_t length, uint32_t segment_id,
                                   uint64_t segment_bytes)
{
    if (length < STORE_HINT_HEADER_BYTES || store_hint_u32(image) != STORE_HINT_MAGIC ||
        store_hint_u32(image + 4) != STORE_HINT_FORMAT ||
        store_hint_u32(image + 8) != segment_id || store_hint_u64(image + 16) != segment_bytes ||
        store_hint_u32(image + 28) != store_crc32c(0, image, 28) ||
        store_hint_u32(image + 24) !=
            store_crc32c(0, image + STORE_HINT_HEADER_BYTES, length - STORE_HINT_HEADER_BYTES)) {
        return -EBADMSG;
    }
    return 0;
}

uint64_t store_hint_segment_bytes(const uint8_t *image, size_t length)
{
    return length < STORE_HINT_HEADER_BYTES ? 0 : store_hint_u64(image + 16);
}

int store_hint_parse(const uint8_t *image, size_t length, uint32_t segment_id,
                     uint64_t segment_bytes, store_hint_visitor visitor, void *context)
{
    RM_ASSERT(image != NULL || length == 0);
    RM_ASSERT(visitor != NULL);
    if (store_hint_header_check(image, length, segment_id, segment_bytes) != 0) {
        return -EBADMSG;
    }
    uint32_t count = store_hint_u32(image + 12);
    /* Two passes: nothing is applied from an image that is wrong anywhere. */
    for (int pass = 0; pass < 2; pass++) {
        size_t position = STORE_HINT_HEADER_BYTES;
        for (uint32_t i = 0; i < count; i++) {
            struct store_hint_entry entry;
            int64_t size = store_hint_entry_decode(image + position, length - position,
                                                   segment_bytes, &entry);
            if (size < 0) {
                return -EBADMSG;
            }
            if (pass == 1) {
                int result = visitor(context, &entry);
                if (result != 0) {
                    return result;
                }
            }
            position += (size_t)size;
        }
        if (position != length) {
            return -EBADMSG;
        }
    }
    return 0;
}

static void store_hint_entry_encode(uint8_t *out, const struct store_entry *entry,
                                    const struct store_snapshot *snapshot)
{
    RM_ASSERT(snapshot->record_length == store_record_size(entry->key_length,
                                                           snapshot->value_length));
    memset(out, 0, STORE_HINT_ENTRY_BYTES);
    out[0] = snapshot->type;
    out[2] = (uint8_t)(entry->key_length & 0xff);
    out[3] = (uint8_t)(entry->key_length >> 8);
    store_hint_put_u32(out + 4, snapshot->record_length);
    store_hint_put_u32(out + 8, snapshot->value_length);
    store_hint_put_u64(out + 16, snapshot->offset);
    store_hint_put_u64(out + 24, snapshot->version);
    store_hint_put_u64(out + 32, snapshot->expiry_unix_ns);
    memcpy(out + STORE_HINT_ENTRY_BYTES, entry->key, entry->key_length);
}

void store_hint_untrack(struct store_segment *segment)
{
    RM_ASSERT(segment != NULL);
    struct store_hint_chunk *chunk = segment->hint_chunks_head;
    while (chunk != NULL) {
        struct store_hint_chunk *next = chunk->next;
        rm_free(chunk);
        chunk = next;
    }
    segment->hint_chunks_head = NULL;
    segment->hint_chunks_tail = NULL;
    segment->hint_tracked_count = 0;
    segment->hint_tracked = false;
}

void store_hint_track(struct store_shard *shard, struct store_segment *segment,
                      struct store_entry *entry)
{
    RM_ASSERT(entry->snapshot != NULL && entry->snapshot->segment_id == segment->id);
    RM_ASSERT(segment->state == STORE_SEGMENT_ACTIVE || segment->state == STORE_SEGMENT_OPENING);
    if (!segment->hint_tracked) {
        return;
    }
    /* Past one record per key, walking the index is the cheaper hint: stop listing. */
    if (segment->hint_tracked_count >= shard->keys.count) {
        store_hint_untrack(segment);
        return;
    }
    struct store_hint_chunk *tail = segment->hint_chunks_tail;
    if (tail == NULL || tail->count == STORE_HINT_CHUNK_ENTRIES) {
        struct store_hint_chunk *chunk = rm_malloc(sizeof(*chunk));
        if (chunk == NULL) {
            store_hint_untrack(segment); /* the index walk needs no memory */
            return;
        }
        chunk->next = NULL;
        chunk->count = 0;
        if (tail == NULL) {
            segment->hint_chunks_head = chunk;
        } else {
            tail->next = chunk;
        }
        segment->hint_chunks_tail = chunk;
        tail = chunk;
    }
    tail->entries[tail->count++] = entry;
    segment->hint_tracked_count++;
}

/* Adds the entry to the hint when it points into the segment: pass 0 sizes and marks it,
 * pass 1 unmarks it and fills it into `out` (when there is one), so that an entry listed
 * twice (written twice into the segment) is counted and written once. */
static void store_hint_visit(struct store_entry *entry, uint32_t segment_id, int pass,
                             uint8_t *out, uint64_t *length, uint32_t *count)
{
    const struct store_snapshot *snapshot = entry->snapshot;
    if (snapshot == NULL || snapshot->segment_id != segment_id) {
        return;
    }
    if (pass == 0) {
        if (entry->hint_mark == segment_id) {
            return;
        }
        entry->hint_mark = segment_id;
    } else {
        if (entry->hint_mark != segment_id) {
            return;
        }
        entry->hint_mark = 0;
        if (out != NULL) {
            store_hint_entry_encode(out + *length, entry, snapshot);
        }
    }
    *length += STORE_HINT_ENTRY_BYTES + entry->key_length;
    (*count)++;
}

/* Entries are visited this many after they are met, their snapshot prefetched half-way:
 * each visit would otherwise wait for two cache misses in a row (entry, then snapshot). */
#define STORE_HINT_PIPELINE 16u
_Static_assert(RM_IS_POWER_OF_TWO(STORE_HINT_PIPELINE), "a ring indexed by a mask");

struct store_hint_walk {
    uint32_t segment_id;
    int pass;
    uint8_t *out;
    uint64_t length;
    uint32_t count;
    uint64_t met;
    struct store_entry *ring[STORE_HINT_PIPELINE];
};

static void store_hint_walk_visit(struct store_hint_walk *walk, struct store_entry *entry)
{
    store_hint_visit(entry, walk->segment_id, walk->pass, walk->out, &walk->length,
                     &walk->count);
}

static void store_hint_walk_meet(struct store_hint_walk *walk, struct store_entry *entry)
{
    const uint64_t mask = STORE_HINT_PIPELINE - 1;
    if (walk->met >= STORE_HINT_PIPELINE) {
        store_hint_walk_visit(walk, walk->ring[walk->met & mask]);
    }
    if (walk->met >= STORE_HINT_PIPELINE / 2) {
        const struct store_entry *half = walk->ring[(walk->met - STORE_HINT_PIPELINE / 2) & mask];
        if (half->snapshot != NULL) {
            __builtin_prefetch(half->snapshot);
        }
    }
    __builtin_prefetch(entry);
    walk->ring[walk->met & mask] = entry;
    walk->met++;
}

static void store_hint_walk_finish(struct store_hint_walk *walk)
{
    uint64_t first = walk->met > STORE_HINT_PIPELINE ? walk->met - STORE_HINT_PIPELINE : 0;
    for (uint64_t i = first; i < walk->met; i++) {
        store_hint_walk_visit(walk, walk->ring[i & (STORE_HINT_PIPELINE - 1)]);
    }
}

/* Visits the entries that may point into the segment: those written into it, or, for an
 * untracked segment, the whole index. Returns the hint's length. */
static uint64_t store_hint_collect(struct store_shard *shard, const struct store_segment *segment,
                                   int pass, uint8_t *out, uint32_t *count)
{
    struct store_hint_walk walk = {.segment_id = segment->id, .pass = pass, .out = out,
                                   .length = STORE_HINT_HEADER_BYTES};
    if (segment->hint_tracked) {
        for (const struct store_hint_chunk *chunk = segment->hint_chunks_head; chunk != NULL;
             chunk = chunk->next) {
            for (uint32_t i = 0; i < chunk->count; i++) {
                store_hint_walk_meet(&walk, chunk->entries[i]);
            }
        }
    } else {
        struct store_index_iterator iterator;
        struct store_entry *entry = NULL;
        store_index_iterator_init(&shard->keys, &iterator);
        while (store_index_next(&iterator, &entry)) {
            store_hint_walk_meet(&walk, entry);
        }
    }
    store_hint_walk_finish(&walk);
    RM_ASSERT(walk.length >= STORE_HINT_HEADER_BYTES);
    *count = walk.count;
    return walk.length;
}

static int store_hint_build(struct store_shard *shard, struct store_segment *segment)
{
    uint32_t count = 0;
    uint64_t length = store_hint_collect(shard, segment, 0, NULL, &count);
    /* Pass 0 marked the entries: pass 1 runs whatever happens, to clear them. */
    struct store_hint_job *job = &shard->hint;
    if (length > job->capacity) {
        rm_free(job->buffer);
        job->buffer = length <= UINT32_MAX ? rm_malloc(length) : NULL;
        job->capacity = job->buffer != NULL ? (uint32_t)length : 0;
    }
    uint8_t *buffer = job->buffer;
    uint32_t filled = 0;
    uint64_t refilled = store_hint_collect(shard, segment, 1, buffer, &filled);
    RM_ASSERT(refilled == length && filled == count);
    store_hint_untrack(segment);
    if (buffer == NULL) {
        return length > UINT32_MAX ? -EFBIG : -ENOMEM;
    }
    store_hint_put_u32(buffer, STORE_HINT_MAGIC);
    store_hint_put_u32(buffer + 4, STORE_HINT_FORMAT);
    store_hint_put_u32(buffer + 8, segment->id);
    store_hint_put_u32(buffer + 12, count);
    store_hint_put_u64(buffer + 16, segment->size);
    store_hint_put_u32(buffer + 24, store_crc32c(0, buffer + STORE_HINT_HEADER_BYTES,
                                                 length - STORE_HINT_HEADER_BYTES));
    store_hint_put_u32(buffer + 28, store_crc32c(0, buffer, 28));
    job->length = (uint32_t)length;
    job->written = 0;
    return 0;
}

static void store_hint_submit(struct store_shard *shard);

static void store_hint_end(struct store_shard *shard, bool success)
{
    struct store_hint_job *job = &shard->hint;
    RM_ASSERT(job->segment != NULL);
    job->segment->hinted = success;
    job->segment->hint_failed = !success;
    if (job->capacity > STORE_HINT_BUFFER_KEEP_BYTES) {
        rm_free(job->buffer);
        job->buffer = NULL;
        job->capacity = 0;
    }
    job->segment = NULL;
    job->stage = STORE_HINT_IDLE;
}

static void store_hint_callback(struct reactor_op *op, int result, uint32_t flags)
{
    struct store_shard *shard = op->context;
    struct store_hint_job *job = &shard->hint;
    (void)flags;
    RM_ASSERT(shard->inflight > 0);
    RM_ASSERT(job->segment != NULL);
    shard->inflight--;
    result = store_shard_fault(shard, result);
    if (job->stage == STORE_HINT_CLOSING) {
        store_hint_end(shard, job->written == job->length);
        return;
    }
    if (result < 0) {
        log_warn("store: cannot write a hint file; recovery will scan the segment instead",
                 "file", job->segment->hint_path, "error", strerror(-result));
        job->written = 0; /* marks the job failed once closed */
        if (job->stage == STORE_HINT_OPENING) {
            store_hint_end(shard, false);
            return;
        }
        job->stage = STORE_HINT_CLOSING;
    } else if (job->stage == STORE_HINT_OPENING) {
        job->fd = result;
        job->stage = STORE_HINT_WRITING;
    } else if (job->stage == STORE_HINT_WRITING) {
        job->written += (uint32_t)result;
        if (result == 0) {
            job->written = 0;
            job->stage = STORE_HINT_CLOSING;
        } else if (job->written == job->length) {
            job->stage = STORE_HINT_SYNCING;
        }
    } else {
        RM_ASSERT(job->stage == STORE_HINT_SYNCING);
        job->stage = STORE_HINT_CLOSING;
    }
    store_hint_submit(shard);
}

static void store_hint_submit(struct store_shard *shard)
{
    struct store_hint_job *job = &shard->hint;
    job->op = (struct reactor_op){.callback = store_hint_callback, .context = shard};
    struct io_uring_sqe *sqe = reactor_sqe(shard->reactor, &job->op);
    switch (job->stage) {
    case STORE_HINT_OPENING:
        io_uring_prep_openat(sqe, AT_FDCWD, job->segment->hint_path,
                             O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        break;
    case STORE_HINT_WRITING:
        io_uring_prep_write(sqe, job->fd, job->buffer + job->written, job->length - job->written,
                            job->written);
        break;
    case STORE_HINT_SYNCING:
        io_uring_prep_fsync(sqe, job->fd, IORING_FSYNC_DATASYNC);
        break;
    default:
        RM_ASSERT(job->stage == STORE_HINT_CLOSING);
        io_uring_prep_close(sqe, job->fd);
        break;
    }
    shard->inflight++;
}

static bool store_hint_wanted(const struct store_shard *shard, const struct store_segment *segment)
{
    return segment->state == STORE_SEGMENT_SEALED && !segment->hinted && !segment->hint_failed &&
           segment->pending_runs == 0 && segment->dirty_sequence == 0 && segment->fd >= 0 &&
           segment->written == segment->size && segment != shard->compaction.victim;
}

void store_hint_tick(struct store_shard *shard)
{
    store_shard_assert_owner(shard);
    if (shard->hint.segment != NULL || shard->failed != 0) {
        return;
    }
    for (uint32_t i = 0; i < shard->segment_count; i++) {
        struct store_segment *segment = shard->segments[i];
        if (!store_hint_wanted(shard, segment)) {
            continue;
        }
        shard->hint.segment = segment;
        if (store_hint_build(shard, segment) != 0) {
            store_hint_end(shard, false);
            return;
        }
        shard->hint.stage = STORE_HINT_OPENING;
        store_hint_submit(shard);
        return;
    }
}

void store_hint_destroy(struct store_shard *shard)
{
    RM_ASSERT(shard != NULL);
    RM_ASSERT(shard->hint.segment == NULL || shard->leak_batches);
    if (shard->hint.segment == NULL) {
        rm_free(shard->hint.buffer);
        shard->hint.buffer = NULL;
        shard->hint.capacity = 0;
    }
}
