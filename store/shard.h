#ifndef RM_STORE_SHARD_H
#define RM_STORE_SHARD_H

/* The store's internal structures, shared by the store/ modules: the store, its shards, their
 * segment files, group-commit batches, hint job and compaction state. Only the owner reactor
 * touches a shard's fields, except `index` (lock-free readers) and `epoch_record` (owned by
 * whichever reactor has the same index: one reactor, one shard, one record). */

#include <ck_epoch.h>
#include <linux/time_types.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/reactor.h"
#include "store/index.h"
#include "store/record.h"
#include "store/stats.h"
#include "store/store.h"

#define STORE_PATH_MAX (CONFIG_PATH_MAX + 64)
#define STORE_SEGMENTS_MAX 1024u        /* per shard, sealed and active */
#define STORE_BATCH_BYTES (4u << 20)    /* group-commit buffer, plus one largest record */
#define STORE_BATCH_RECORDS_MAX 32768u  /* records per batch (the undo log's size) */
#define STORE_BATCH_RUNS_MAX 2u         /* a batch spans at most one segment roll */
/* One batch filling, the others in flight: async batches and full ones go while earlier
 * ones are still being written or synced. */
#define STORE_BATCHES 4u
#define STORE_BATCH_SYNCS_MAX 10u       /* fdatasyncs per batch: dirty segments + directory */
#define STORE_COMPACT_SLICE_BYTES (256u << 10) /* read per tick by compaction */
#define STORE_SEGMENT_BYTES_MIN 4096u
#define STORE_DONE_BATCH 4096u          /* completions delivered per tick */

_Static_assert(STORE_BATCHES * STORE_BATCH_RUNS_MAX + 1 <= STORE_BATCH_SYNCS_MAX,
               "a sync batch fsyncs the segments of every unsynced batch and the directory");
_Static_assert(STORE_BATCH_RECORDS_MAX * (STORE_RECORD_HEADER_BYTES + 1) <= STORE_BATCH_BYTES,
               "a batch of the smallest records fills its undo log before its buffer");

enum store_segment_state {
    STORE_SEGMENT_OPENING, /* async openat in flight */
    STORE_SEGMENT_ACTIVE,  /* appended to */
    STORE_SEGMENT_SEALED,  /* full; its hint is written once its data is durable */
    STORE_SEGMENT_DELETING, /* compacted away: unlink and close in flight */
};

struct store_shard;

/* The entries written into a segment, in chunks, so that its hint visits those records
 * rather than the whole index (hint.c). */
#define STORE_HINT_CHUNK_ENTRIES 4094u
struct store_hint_chunk {
    struct store_hint_chunk *next;
    uint32_t count;
    struct store_entry *entries[STORE_HINT_CHUNK_ENTRIES];
};
_Static_assert(sizeof(struct store_hint_chunk) == 32768, "a chunk is 32 KiB");

struct store_segment {
    struct store_shard *shard;
    uint32_t id;
    int fd;
    int direct_fd; /* O_DIRECT, for group commits while active (direct.h); -1: none */
    enum store_segment_state state;
    uint64_t size;       /* bytes assigned to records, written or still in a batch */
    uint64_t written;    /* bytes the kernel accepted */
    uint64_t live_bytes; /* bytes of records the index points at */
    uint32_t pending_runs;
    uint32_t reads;        /* reads in flight on fd */
    uint32_t deletes;      /* unlinks in flight */
    uint64_t dirty_sequence; /* the last batch written into it since its fdatasync; 0: clean */
    uint64_t prefilled;      /* the file's end as far as zero fills went (prefill.h) */
    uint64_t prefill_offset; /* the zero fill in flight, when prefill_length > 0 */
    uint32_t prefill_length;
    struct reactor_op prefill_op;
    bool directory_synced; /* its directory entry is durable */
    bool hinted;           /* its hint file is durable */
    bool hint_failed;      /* writing its hint failed: recovery scans it instead */
    bool compact_refused;  /* compaction met a bad record: the segment stays as it is */
    /* Its writes are listed in hint_chunks; false for recovered segments and once the list
     * outgrows the index (then its hint walks the index, which is no longer). */
    bool hint_tracked;
    uint32_t hint_tracked_count;
    struct store_hint_chunk *hint_chunks_head;
    struct store_hint_chunk *hint_chunks_tail;
    struct reactor_op op;
    struct reactor_op unlink_op;
    char path[STORE_PATH_MAX];
    char hint_path[STORE_PATH_MAX];
};

struct store_batch;

struct store_batch_run {
    struct store_batch *batch;
    struct store_segment *segment;
    uint64_t file_offset;
    uint32_t buffer_offset;
    uint32_t length;
    bool direct; /* written through the segment's direct_fd, in whole blocks (direct.h) */
    struct reactor_op op;
};

struct store_batch_sync {
    struct store_batch *batch;
    struct store_segment *segment; /* NULL: the shard's directory */
    struct reactor_op op;
};

/* Undo log row: what to restore if the batch never reaches the disk. */
struct store_undo {
    struct store_entry *entry;
    struct store_snapshot *previous;
};

struct store_batch {
    struct store_shard *shard;
    uint8_t *buffer;
    uint32_t used;
    uint32_t capacity;
    uint32_t run_count;
    uint32_t sync_count;
    uint32_t undo_count;
    uint32_t ops_pending;    /* writes and fdatasyncs in flight */
    uint32_t writes_pending; /* writes in flight */
    int error;
    bool sync; /* ends with fdatasync: a sync write, a roll, compaction or the async timer */
    bool applied;      /* its writes are counted in their segments (in sequence order) */
    bool sync_started; /* its fdatasyncs went out, after every earlier batch was written */
    uint64_t sequence;
    uint64_t started_ns;
    struct store_request *waiters_head;
    struct store_request *waiters_tail;
    struct store_undo *undo;
    struct store_batch_run runs[STORE_BATCH_RUNS_MAX];
    struct store_batch_sync syncs[STORE_BATCH_SYNCS_MAX];
};

struct store_hint_job {
    struct store_segment *segment; /* NULL: idle */
    int stage;
    uint8_t *buffer; /* kept for the next hint while it is small enough (hint.c) */
    uint32_t capacity;
    uint32_t length;
    uint32_t written;
    int fd;
    struct reactor_op op;
};

struct store_compaction {
    struct store_segment *victim; /* NULL: idle */
    uint64_t offset;              /* next victim byte to process */
    uint8_t *buffer;
    uint32_t capacity;
    bool reading;
    bool grow;              /* the next record is longer than a slice: read up to capacity */
    bool draining;          /* every record moved; waiting for them to be durable */
    uint64_t wait_sequence; /* the batch that holds the last moved record */
    struct reactor_op op;
};

/* The last partial block of the segment being appended to, as far as batches were staged
 * for direct writes (direct.h). */
struct store_direct_tail {
    struct store_segment *segment; /* NULL: none yet */
    uint64_t end;                  /* block holds the bytes [end rounded down to a block, end) */
    uint8_t *block;
};

/* Outgoing requests are batched: a message per request cost more than the request's work.
 * A list is posted at the end of the store's tick, or as soon as it holds
 * STORE_OUTBOX_POST_AT requests, so that the target starts on the first ones while this
 * reactor is still making more (posting only per tick made the two reactors take turns). */
#define STORE_OUTBOX_REQUESTS_MAX 4096u /* per target; beyond it, calls get -EAGAIN */
#define STORE_OUTBOX_POST_AT 32u
_Static_assert(STORE_OUTBOX_POST_AT <= STORE_OUTBOX_REQUESTS_MAX, "posted before it is full");

struct store_outbox {
    struct store_request *head;
    struct store_request *tail;
    uint32_t count;
};

/* The namespace of this reactor's last request and what store_prepare derives from it, so
 * that a run of requests in one namespace checks, hashes and looks it up once. */
struct store_namespace_memo {
    uint16_t length; /* 0: empty */
    bool sync;       /* in sync durability */
    uint64_t hash_state; /* store_index_hash_add of the namespace and its '/' */
    char name[STORE_NAMESPACE_MAX];
};

struct store_shard {
    struct store *store;
    struct reactor *reactor;
    uint32_t index;
    bool open;
    int failed; /* 0, or the disk error after which writes are refused */
    bool prefill_failed; /* a zero fill failed: appends go without them from then on */
    bool direct; /* group commits write with O_DIRECT (direct.h): the store prefills and the
                  * file system takes it */
    struct store_direct_tail tail;
    ck_epoch_record_t *epoch_record;
    struct store_index keys;
    char directory[STORE_PATH_MAX];
    int directory_fd;
    struct store_segment *segments[STORE_SEGMENTS_MAX]; /* sorted by id */
    uint32_t segment_count;
    struct store_segment *active;
    uint32_t next_segment_id;
    /* Batch n lives in batches[n % STORE_BATCHES]; the ones after retired_sequence and
     * before the filling one are in flight. */
    struct store_batch batches[STORE_BATCHES];
    struct store_batch *filling;
    uint64_t retired_sequence; /* every batch up to it is written, synced if asked, answered */
    uint64_t next_sequence;
    /* Every batch up to it is written and fdatasynced. The owner stores it with
     * rm_atomic_store_64; other cores load it to tell whether a snapshot is durable. */
    uint64_t synced_sequence;
    uint64_t unsynced_since_ns;  /* written but not yet fdatasynced (async); 0: none */
    bool timer_armed;
    struct __kernel_timespec timer_interval;
    struct reactor_op timer_op;
    uint64_t cache_bytes;
    uint64_t cache_limit;
    struct store_entry *cache_head;
    struct store_entry *cache_tail;
    struct store_request *done_head; /* completions for requests that started here */
    struct store_request *done_tail;
    /* Requests for other reactors, one list per reactor, each posted as one message at the
     * end of the store's tick: writes and disk reads to their owners, finished requests back
     * to their origins. */
    struct store_outbox requests[STORE_SHARDS_MAX];
    struct store_outbox replies[STORE_SHARDS_MAX];
    /* Requests for this shard made on its own reactor, run as one batch at the store's
     * tick: a batch's index lookups overlap their cache misses (store_shard_execute_list),
     * where a request run inside its call had nothing to overlap with. */
    struct store_outbox local;
    struct store_stats_tally tally; /* flushed to the metrics once per tick */
    struct store_namespace_memo namespace_memo; /* of requests made on this reactor */
    uint32_t inflight; /* io_uring operations not yet completed */
    uint64_t record_max;
    struct store_hint_job hint;
    struct store_compaction compaction;
    bool leak_batches; /* closed with a batch in flight: the kernel may still read it */
};

struct store {
    struct config config;
    uint32_t shard_count;
    uint64_t record_max; /* header + longest key + max_value_bytes */
    bool prefill;        /* some namespace is sync: zeros go ahead of the records (prefill.h) */
    struct store_stats stats;
    ck_epoch_t epoch;
    void *epoch_records_allocation;
    ck_epoch_record_t *epoch_records;
    struct store_shard *shards[STORE_SHARDS_MAX];
    uint32_t fault_countdown; /* test hook: see store_fault_inject */
    int fault_error;
};

/* Owner-side helpers shared by the modules (shard.c). */
struct store_shard *store_shard_current(struct store *store);

/* The calling thread's reactor, set when the thread opens its shard: the ownership asserts on
 * every request's path read it inline, where reactor_current() is a call each. */
extern _Thread_local struct reactor *store_shard_thread_reactor;

static inline void store_shard_assert_owner(const struct store_shard *shard)
{
    RM_ASSERT(shard != NULL);
    RM_ASSERT(shard->reactor == store_shard_thread_reactor);
}
struct store_segment *store_shard_segment(struct store_shard *shard, uint32_t id);
int store_shard_segment_add(struct store_shard *shard, struct store_segment *segment);
void store_shard_segment_remove(struct store_shard *shard, struct store_segment *segment);
/* Publishes a snapshot for an entry and keeps live bytes and the cache in step; returns the
 * replaced snapshot (the caller retires or frees it). */
struct store_snapshot *store_shard_swap(struct store_shard *shard, struct store_entry *entry,
                                        struct store_snapshot *snapshot);
/* Whether the snapshot's batch is not yet fdatasynced; any core, about the owner's shard. */
bool store_shard_unsynced(const struct store_shard *owner, const struct store_snapshot *snapshot);
/* Completes a request: on this reactor in the next delivery, or by message to its origin. */
void store_shard_finish(struct store_shard *shard, struct store_request *request);
/* Applies the fault-injection hook to a disk completion result. */
int store_shard_fault(struct store_shard *shard, int result);
uint64_t store_shard_unix_ns(void);
/* Sends a request to its owner in this reactor's next batch for it (the local batch when
 * this reactor owns it). Returns 0 or -EAGAIN when the batch for the owner is full. */
int store_shard_dispatch(struct store *store, struct store_request *request);
/* Queues a get for resolution at this reactor's next delivery, behind the local batch when
 * that holds requests, so that a get sees the writes its reactor made before it. Returns 0
 * or -EAGAIN when the local batch is full. */
int store_shard_read(struct store *store, struct store_request *request);
/* Counts and calls back a finished request on its origin reactor. */
void store_shard_deliver(struct store_shard *shard, struct store_request *request);

static inline uint32_t store_shard_for_hash(uint64_t hash, uint32_t shards)
{
    /* The high half: the index's table uses the low bits, which would otherwise be
     * correlated with the shard and leave buckets empty. */
    return (uint32_t)((hash >> 32) % shards);
}

#endif
