#ifndef RM_REACTOR_H
#define RM_REACTOR_H

/* One reactor per core: a pinned thread that owns an io_uring and runs every callback of the
 * data it owns, without locks and without blocking.
 *
 * Operations: an io_uring operation is a `struct reactor_op` embedded in its owner's struct.
 * `reactor_sqe()` hands out an SQE whose user_data points at the op; when the CQE arrives the
 * reactor calls `op->callback(op, cqe->res, cqe->flags)`. Multishot ops get one call per CQE
 * and stay armed while `flags & IORING_CQE_F_MORE`.
 *
 * Ticks: every loop iteration (at least every `REACTOR_TICK_MS`), the reactor runs its tick
 * hooks in registration order; they are the once-per-loop batching point (group commit,
 * timeouts, reconciliation). Hooks run after completions are dispatched and before the
 * reactor submits and sleeps.
 *
 * Messages: `reactor_post()` sends a small message to another reactor through an SPSC ck_ring
 * per ordered pair of reactors; the target is woken with IORING_OP_MSG_RING once per tick. */

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#define REACTOR_MAX 64
#define REACTOR_TICK_MS 10
#define REACTOR_MAILBOX_SLOTS 4096 /* per ordered pair of reactors; power of two */
#define REACTOR_HOOKS_MAX 16

struct reactor;
struct reactor_op;

typedef void (*reactor_callback)(struct reactor_op *op, int result, uint32_t cqe_flags);

struct reactor_op {
    reactor_callback callback;
    void *context;
};

/* A message to another reactor; copied by value into the ring. */
struct reactor_message {
    void (*handler)(struct reactor *target, struct reactor_message *message);
    void *pointer;
    uint64_t value;
};

struct reactor_hook {
    void (*run)(struct reactor *reactor, void *context);
    void *context;
};

struct reactor_stats {
    uint64_t loops;
    uint64_t completions;
    uint64_t submit_retries;
    uint64_t cq_overflows;
    uint64_t messages_received;
    uint64_t messages_dropped; /* target ring full; the sender got -EAGAIN */
};

struct reactor_group;

/* Thread-local: the reactor running on this thread, or NULL off the reactors. */
struct reactor *reactor_current(void);
uint32_t reactor_index(const struct reactor *reactor);
uint32_t reactor_group_size(const struct reactor_group *group);
struct reactor_group *reactor_group_of(const struct reactor *reactor);
struct reactor *reactor_group_get(struct reactor_group *group, uint32_t index);

/* The next SQE of this reactor's ring, with user_data set to op (NULL op: CQE ignored).
 * Never returns NULL: when the SQ is full it submits first. Must be called on the owner. */
struct io_uring_sqe *reactor_sqe(struct reactor *reactor, struct reactor_op *op);
/* Makes room for `count` SQEs, so that the next `count` reactor_sqe() calls go to the kernel
 * in one submission (an IOSQE_IO_LINK chain must not be split). */
void reactor_sqe_reserve(struct reactor *reactor, uint32_t count);

/* The reactor's io_uring, for registrations (buffer rings, files); owner thread only. */
struct io_uring *reactor_ring(struct reactor *reactor);

/* Monotonic time in nanoseconds, read once at the start of each loop iteration. */
uint64_t reactor_now_ns(const struct reactor *reactor);
/* Fresh monotonic time in nanoseconds (a clock_gettime call). */
uint64_t reactor_clock_ns(void);

/* Asks for the next loop iteration to come at once instead of sleeping until a completion
 * or the tick: for work a hook queued for itself (callbacks deferred to the next tick). */
void reactor_keep_awake(struct reactor *reactor);

/* Registers a hook run once per loop iteration; only before the group starts, or from the
 * reactor's own thread. */
void reactor_hook_add(struct reactor *reactor, struct reactor_hook hook);

/* Sends a message to reactor `target` (may be the sender itself: then it runs next tick).
 * Returns 0, or -EAGAIN when the ring to the target is full (the caller sheds load). */
int reactor_post(struct reactor *from, uint32_t target, const struct reactor_message *message);

/* Per-reactor user data slots, for modules that keep per-core state (store shard, server). */
enum reactor_slot {
    REACTOR_SLOT_SERVER,
    REACTOR_SLOT_STORE,
    REACTOR_SLOT_METRICS,
    REACTOR_SLOT_UPSTREAM,
    REACTOR_SLOT_COUNT,
};
void *reactor_slot_get(const struct reactor *reactor, enum reactor_slot slot);
void reactor_slot_set(struct reactor *reactor, enum reactor_slot slot, void *value);

struct reactor_stats reactor_stats_read(const struct reactor *reactor);

/* Group life cycle (used by the engine). `setup` runs on each reactor's own thread before
 * its loop starts (SINGLE_ISSUER requires the ring to be created there); a nonzero return
 * aborts the start. The loop runs until `reactor_group_stop` and then until every reactor's
 * `busy` callback (if any) reports idle or the drain deadline passes. */
struct reactor_group_config {
    uint32_t reactors;
    bool pin;
    uint32_t queue_depth;
    int (*setup)(struct reactor *reactor, void *context);
    void (*teardown)(struct reactor *reactor, void *context);
    /* Called once per tick while stopping; returns true while work is in flight. */
    bool (*busy)(struct reactor *reactor, void *context);
    /* Called once on each reactor when stopping begins (stop accepting). */
    void (*stopping)(struct reactor *reactor, void *context);
    void *context;
    uint32_t drain_timeout_ms;
};

int reactor_group_create(const struct reactor_group_config *config, struct reactor_group **out);
/* Starts the threads and waits until every setup ran; returns the first setup error. */
int reactor_group_start(struct reactor_group *group);
/* Asks every reactor to drain and stop; safe from any thread and from signal context. */
void reactor_group_stop(struct reactor_group *group);
/* Joins the threads. */
void reactor_group_join(struct reactor_group *group);
void reactor_group_destroy(struct reactor_group *group);
bool reactor_group_stopping(const struct reactor_group *group);
/* True when the kernel accepted SINGLE_ISSUER|DEFER_TASKRUN (else COOP_TASKRUN or none). */
bool reactor_deferred_taskrun(const struct reactor *reactor);

#endif
