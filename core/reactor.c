#include "core/reactor.h"

#include <ck_ring.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/rm_assert.h"

/* CQEs are copied out before their callbacks run, so that a callback which submits (and so
 * may make the kernel post more CQEs) never sees the ring change under the loop. */
#define REACTOR_CQE_BATCH 256
#define REACTOR_MESSAGE_BATCH 1024
#define REACTOR_WAKE_USER_DATA ((uint64_t)1)

_Static_assert(RM_IS_POWER_OF_TWO(REACTOR_MAILBOX_SLOTS), "ck_ring needs a power of two");
_Static_assert(REACTOR_MAILBOX_SLOTS >= 4, "ck_ring needs at least 4 slots");

CK_RING_PROTOTYPE(reactor_message, reactor_message)

/* ck_ring orders its slots with fences and volatile accesses, which ThreadSanitizer does not
 * model; these annotations tell it that a message's contents (and whatever the sender wrote
 * before posting) happen before the receiver reads them. */
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define REACTOR_TSAN_RELEASE(address) __tsan_release(address)
#define REACTOR_TSAN_ACQUIRE(address) __tsan_acquire(address)
#else
#define REACTOR_TSAN_RELEASE(address) ((void)(address))
#define REACTOR_TSAN_ACQUIRE(address) ((void)(address))
#endif

struct reactor_mailbox {
    ck_ring_t ring;
    struct reactor_message *slots;
} __attribute__((aligned(64)));

struct reactor_completion {
    uint64_t user_data;
    int32_t result;
    uint32_t flags;
};

struct reactor {
    struct io_uring ring;
    struct reactor_group *group;
    uint32_t index;
    bool deferred_taskrun;
    bool stopping_seen;
    bool keep_awake;
    uint64_t now_ns;
    uint64_t drain_deadline_ns;
    uint32_t hook_count;
    struct reactor_hook hooks[REACTOR_HOOKS_MAX];
    void *slots[REACTOR_SLOT_COUNT];
    bool wake_pending[REACTOR_MAX];
    struct reactor_stats stats;
    struct reactor_completion completions[REACTOR_CQE_BATCH];
    pthread_t thread;
    int setup_result;
} __attribute__((aligned(64)));

struct reactor_group {
    struct reactor_group_config config;
    struct reactor *reactors;
    /* mailboxes[from * count + to] */
    struct reactor_mailbox *mailboxes;
    pthread_barrier_t barrier;
    bool barrier_ready;
    int stopping; /* written by any thread, read by reactors */
    int failed;
    int ring_fds[REACTOR_MAX];
};

static _Thread_local struct reactor *reactor_current_value;

struct reactor *reactor_current(void) { return reactor_current_value; }

uint32_t reactor_index(const struct reactor *reactor) { return reactor->index; }

uint32_t reactor_group_size(const struct reactor_group *group) { return group->config.reactors; }

struct reactor_group *reactor_group_of(const struct reactor *reactor) { return reactor->group; }

struct reactor *reactor_group_get(struct reactor_group *group, uint32_t index)
{
    RM_ASSERT(index < group->config.reactors);
    return &group->reactors[index];
}

bool reactor_deferred_taskrun(const struct reactor *reactor) { return reactor->deferred_taskrun; }

uint64_t reactor_clock_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

uint64_t reactor_now_ns(const struct reactor *reactor) { return reactor->now_ns; }

struct io_uring *reactor_ring(struct reactor *reactor)
{
    RM_ASSERT(reactor == reactor_current_value);
    return &reactor->ring;
}

static void reactor_stat_add(uint64_t *counter, uint64_t delta)
{
    /* Single writer (the owner); other threads only read, so a relaxed store suffices. */
    __atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + delta,
                     __ATOMIC_RELAXED);
}

struct reactor_stats reactor_stats_read(const struct reactor *reactor)
{
    struct reactor_stats stats;
    stats.loops = __atomic_load_n(&reactor->stats.loops, __ATOMIC_RELAXED);
    stats.completions = __atomic_load_n(&reactor->stats.completions, __ATOMIC_RELAXED);
    stats.submit_retries = __atomic_load_n(&reactor->stats.submit_retries, __ATOMIC_RELAXED);
    stats.cq_overflows = __atomic_load_n(&reactor->stats.cq_overflows, __ATOMIC_RELAXED);
    stats.messages_received =
        __atomic_load_n(&reactor->stats.messages_received, __ATOMIC_RELAXED);
    stats.messages_dropped = __atomic_load_n(&reactor->stats.messages_dropped, __ATOMIC_RELAXED);
    return stats;
}

struct io_uring_sqe *reactor_sqe(struct reactor *reactor, struct reactor_op *op)
{
    RM_ASSERT(reactor == reactor_current_value);
    RM_ASSERT(op == NULL || op->callback != NULL);
    struct io_uring_sqe *sqe = io_uring_get_sqe(&reactor->ring);
    for (int attempt = 0; sqe == NULL; attempt++) {
        /* The SQ is full: hand what we have to the kernel. -EBUSY means the CQ is
         * overcommitted; the entries stay queued, so retrying after a yield is correct. */
        RM_ASSERT(attempt < 1000);
        int submitted = io_uring_submit(&reactor->ring);
        if (submitted < 0 && submitted != -EBUSY && submitted != -EAGAIN) {
            log_error("io_uring_submit failed", "error", strerror(-submitted));
        }
        reactor_stat_add(&reactor->stats.submit_retries, 1);
        sqe = io_uring_get_sqe(&reactor->ring);
    }
    io_uring_sqe_set_data(sqe, op);
    return sqe;
}

void reactor_sqe_reserve(struct reactor *reactor, uint32_t count)
{
    RM_ASSERT(reactor == reactor_current_value);
    RM_ASSERT(count > 0 && count <= reactor->ring.sq.ring_entries);
    for (int attempt = 0; io_uring_sq_space_left(&reactor->ring) < count; attempt++) {
        RM_ASSERT(attempt < 1000);
        int submitted = io_uring_submit(&reactor->ring);
        if (submitted < 0 && submitted != -EBUSY && submitted != -EAGAIN) {
            log_error("io_uring_submit failed", "error", strerror(-submitted));
        }
        reactor_stat_add(&reactor->stats.submit_retries, 1);
    }
}

void reactor_keep_awake(struct reactor *reactor)
{
    RM_ASSERT(reactor == reactor_current_value);
    reactor->keep_awake = true;
}

void reactor_hook_add(struct reactor *reactor, struct reactor_hook hook)
{
    RM_ASSERT(hook.run != NULL);
    RM_ASSERT(reactor->hook_count < REACTOR_HOOKS_MAX);
    reactor->hooks[reactor->hook_count++] = hook;
}

void *reactor_slot_get(const struct reactor *reactor, enum reactor_slot slot)
{
    RM_ASSERT(slot < REACTOR_SLOT_COUNT);
    return reactor->slots[slot];
}

void reactor_slot_set(struct reactor *reactor, enum reactor_slot slot, void *value)
{
    RM_ASSERT(slot < REACTOR_SLOT_COUNT);
    reactor->slots[slot] = value;
}

static struct reactor_mailbox *reactor_mailbox(struct reactor_group *group, uint32_t from,
                                               uint32_t to)
{
    uint32_t count = group->config.reactors;
    RM_ASSERT(from < count);
    RM_ASSERT(to < count);
    return &group->mailboxes[from * count + to];
}

int reactor_post(struct reactor *from, uint32_t target, const struct reactor_message *message)
{
    RM_ASSERT(from == reactor_current_value);
    RM_ASSERT(message->handler != NULL);
    struct reactor_mailbox *mailbox = reactor_mailbox(from->group, from->index, target);
    struct reactor_message copy = *message;
    REACTOR_TSAN_RELEASE(mailbox);
    if (!ck_ring_enqueue_spsc_reactor_message(&mailbox->ring, mailbox->slots, &copy)) {
        reactor_stat_add(&from->stats.messages_dropped, 1);
        return -EAGAIN;
    }
    from->wake_pending[target] = true;
    return 0;
}

static void reactor_send_wakes(struct reactor *reactor)
{
    uint32_t count = reactor->group->config.reactors;
    for (uint32_t target = 0; target < count; target++) {
        if (!reactor->wake_pending[target]) {
            continue;
        }
        reactor->wake_pending[target] = false;
        if (target == reactor->index) {
            continue; /* our own mailbox is drained every loop */
        }
        struct io_uring_sqe *sqe = reactor_sqe(reactor, NULL);
        io_uring_prep_msg_ring(sqe, reactor->group->ring_fds[target], 0,
                               REACTOR_WAKE_USER_DATA, 0);
        /* Only the target needs a CQE; a failed wake (target CQ full) is harmless because
         * every reactor drains its mailboxes at least once per tick. */
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    }
}

static void reactor_drain_mailboxes(struct reactor *reactor)
{
    uint32_t count = reactor->group->config.reactors;
    for (uint32_t from = 0; from < count; from++) {
        struct reactor_mailbox *mailbox = reactor_mailbox(reactor->group, from, reactor->index);
        struct reactor_message message;
        uint32_t taken = 0;
        while (taken < REACTOR_MESSAGE_BATCH &&
               ck_ring_dequeue_spsc_reactor_message(&mailbox->ring, mailbox->slots, &message)) {
            taken++;
            REACTOR_TSAN_ACQUIRE(mailbox);
            message.handler(reactor, &message);
        }
        reactor_stat_add(&reactor->stats.messages_received, taken);
    }
}

static uint32_t reactor_copy_completions(struct reactor *reactor)
{
    struct io_uring_cqe *cqes[REACTOR_CQE_BATCH];
    uint32_t count = io_uring_peek_batch_cqe(&reactor->ring, cqes, REACTOR_CQE_BATCH);
    RM_ASSERT(count <= REACTOR_CQE_BATCH);
    for (uint32_t i = 0; i < count; i++) {
        reactor->completions[i].user_data = cqes[i]->user_data;
        reactor->completions[i].result = cqes[i]->res;
        reactor->completions[i].flags = cqes[i]->flags;
    }
    io_uring_cq_advance(&reactor->ring, count);
    return count;
}

static void reactor_dispatch(struct reactor *reactor)
{
    uint32_t count;
    uint32_t rounds = 0;
    do {
        count = reactor_copy_completions(reactor);
        for (uint32_t i = 0; i < count; i++) {
            struct reactor_completion *completion = &reactor->completions[i];
            if (completion->user_data == 0 ||
                completion->user_data == REACTOR_WAKE_USER_DATA) {
                continue;
            }
            struct reactor_op *op = (struct reactor_op *)(uintptr_t)completion->user_data;
            op->callback(op, completion->result, completion->flags);
        }
        reactor_stat_add(&reactor->stats.completions, count);
        rounds++;
    } while (count == REACTOR_CQE_BATCH && rounds < 16);
    if (io_uring_cq_has_overflow(&reactor->ring)) {
        reactor_stat_add(&reactor->stats.cq_overflows, 1);
    }
}

static void reactor_run_hooks(struct reactor *reactor)
{
    for (uint32_t i = 0; i < reactor->hook_count; i++) {
        reactor->hooks[i].run(reactor, reactor->hooks[i].context);
    }
}

/* Returns true when the loop should end: stopping was requested and either nothing is in
 * flight any more or the drain deadline has passed. */
static bool reactor_check_stop(struct reactor *reactor)
{
    struct reactor_group *group = reactor->group;
    if (!__atomic_load_n(&group->stopping, __ATOMIC_ACQUIRE)) {
        return false;
    }
    if (!reactor->stopping_seen) {
        reactor->stopping_seen = true;
        reactor->drain_deadline_ns =
            reactor->now_ns + (uint64_t)group->config.drain_timeout_ms * 1000000ull;
        if (group->config.stopping != NULL) {
            group->config.stopping(reactor, group->config.context);
        }
    }
    bool busy = group->config.busy != NULL && group->config.busy(reactor, group->config.context);
    return !busy || reactor->now_ns >= reactor->drain_deadline_ns;
}

static void reactor_loop(struct reactor *reactor)
{
    struct __kernel_timespec tick = {.tv_sec = 0, .tv_nsec = REACTOR_TICK_MS * 1000000ll};
    for (;;) {
        reactor->now_ns = reactor_clock_ns();
        reactor_dispatch(reactor);
        reactor_drain_mailboxes(reactor);
        reactor_run_hooks(reactor);
        if (reactor_check_stop(reactor)) {
            break;
        }
        reactor_send_wakes(reactor);
        reactor_stat_add(&reactor->stats.loops, 1);
        struct io_uring_cqe *cqe = NULL;
        int result;
        if (reactor->keep_awake) {
            reactor->keep_awake = false;
            result = io_uring_submit_and_get_events(&reactor->ring);
        } else {
            result = io_uring_submit_and_wait_timeout(&reactor->ring, &cqe, 1, &tick, NULL);
        }
        if (result < 0 && result != -ETIME && result != -EINTR && result != -EBUSY &&
            result != -EAGAIN) {
            log_error("io_uring_submit_and_wait_timeout failed", "error", strerror(-result));
        }
    }
}

static int reactor_ring_init(struct reactor *reactor, uint32_t queue_depth)
{
    struct io_uring_params params;
    const uint32_t flag_sets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int result = -EINVAL;
    for (size_t i = 0; i < RM_ARRAY_LENGTH(flag_sets); i++) {
        memset(&params, 0, sizeof(params));
        /* Multishot operations make the CQE count unbounded: a CQ 8x the SQ absorbs bursts,
         * and CLAMP keeps large configured depths within what the kernel accepts. */
        params.flags = flag_sets[i] | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
        params.cq_entries = queue_depth * 8;
        result = io_uring_queue_init_params(queue_depth, &reactor->ring, &params);
        if (result == 0) {
            reactor->deferred_taskrun = (flag_sets[i] & IORING_SETUP_DEFER_TASKRUN) != 0;
            io_uring_register_ring_fd(&reactor->ring);
            return 0;
        }
        if (result != -EINVAL) {
            break;
        }
    }
    return result;
}

static void reactor_pin(struct reactor *reactor)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0 || CPU_COUNT(&allowed) == 0) {
        return;
    }
    int wanted = (int)(reactor->index % (uint32_t)CPU_COUNT(&allowed));
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, &allowed) && wanted-- == 0) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
            return;
        }
    }
}

static void *reactor_thread(void *argument)
{
    struct reactor *reactor = argument;
    struct reactor_group *group = reactor->group;
    reactor_current_value = reactor;
    if (group->config.pin) {
        reactor_pin(reactor);
    }
    reactor->now_ns = reactor_clock_ns();
    int result = reactor_ring_init(reactor, group->config.queue_depth);
    if (result == 0) {
        group->ring_fds[reactor->index] = reactor->ring.ring_fd;
        if (group->config.setup != NULL) {
            result = group->config.setup(reactor, group->config.context);
        }
    }
    reactor->setup_result = result;
    if (result != 0) {
        __atomic_store_n(&group->failed, 1, __ATOMIC_RELEASE);
    }
    pthread_barrier_wait(&group->barrier); /* every setup done */
    pthread_barrier_wait(&group->barrier); /* the starter has read the results */
    if (!__atomic_load_n(&group->failed, __ATOMIC_ACQUIRE)) {
        reactor_loop(reactor);
    }
    if (result == 0 && group->config.teardown != NULL) {
        group->config.teardown(reactor, group->config.context);
    }
    if (result == 0 || group->ring_fds[reactor->index] >= 0) {
        io_uring_queue_exit(&reactor->ring);
    }
    reactor_current_value = NULL;
    return NULL;
}

static int reactor_group_alloc_mailboxes(struct reactor_group *group)
{
    uint32_t count = group->config.reactors;
    group->mailboxes = rm_calloc((size_t)count * count, sizeof(*group->mailboxes));
    if (group->mailboxes == NULL) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < count * count; i++) {
        group->mailboxes[i].slots =
            rm_calloc(REACTOR_MAILBOX_SLOTS, sizeof(struct reactor_message));
        if (group->mailboxes[i].slots == NULL) {
            return -ENOMEM;
        }
        ck_ring_init(&group->mailboxes[i].ring, REACTOR_MAILBOX_SLOTS);
    }
    return 0;
}

int reactor_group_create(const struct reactor_group_config *config, struct reactor_group **out)
{
    RM_ASSERT(config->reactors >= 1);
    RM_ASSERT(config->reactors <= REACTOR_MAX);
    RM_ASSERT(config->queue_depth >= 8);
    struct reactor_group *group = rm_calloc(1, sizeof(*group));
    if (group == NULL) {
        return -ENOMEM;
    }
    group->config = *config;
    group->reactors = rm_calloc(config->reactors, sizeof(*group->reactors));
    int result = group->reactors == NULL ? -ENOMEM : reactor_group_alloc_mailboxes(group);
    if (result != 0) {
        reactor_group_destroy(group);
        return result;
    }
    for (uint32_t i = 0; i < config->reactors; i++) {
        group->reactors[i].group = group;
        group->reactors[i].index = i;
        group->ring_fds[i] = -1;
    }
    *out = group;
    return 0;
}

int reactor_group_start(struct reactor_group *group)
{
    uint32_t count = group->config.reactors;
    RM_ASSERT(count >= 1);
    RM_ASSERT(reactor_current_value == NULL);
    pthread_barrier_init(&group->barrier, NULL, count + 1);
    group->barrier_ready = true;
    for (uint32_t i = 0; i < count; i++) {
        int result = pthread_create(&group->reactors[i].thread, NULL, reactor_thread,
                                    &group->reactors[i]);
        RM_ASSERT(result == 0); /* thread creation fails only when the process is broken */
    }
    pthread_barrier_wait(&group->barrier);
    int first_error = 0;
    for (uint32_t i = 0; i < count && first_error == 0; i++) {
        first_error = group->reactors[i].setup_result;
    }
    pthread_barrier_wait(&group->barrier);
    if (first_error != 0) {
        reactor_group_join(group);
    }
    return first_error;
}

void reactor_group_stop(struct reactor_group *group)
{
    __atomic_store_n(&group->stopping, 1, __ATOMIC_RELEASE);
}

bool reactor_group_stopping(const struct reactor_group *group)
{
    return __atomic_load_n(&group->stopping, __ATOMIC_ACQUIRE) != 0;
}

void reactor_group_join(struct reactor_group *group)
{
    RM_ASSERT(reactor_current_value == NULL);
    for (uint32_t i = 0; i < group->config.reactors; i++) {
        if (group->reactors[i].thread != 0) {
            pthread_join(group->reactors[i].thread, NULL);
            group->reactors[i].thread = 0;
        }
    }
    if (group->barrier_ready) {
        pthread_barrier_destroy(&group->barrier);
        group->barrier_ready = false;
    }
}

void reactor_group_destroy(struct reactor_group *group)
{
    if (group == NULL) {
        return;
    }
    RM_ASSERT(reactor_current_value == NULL);
    if (group->mailboxes != NULL) {
        uint32_t count = group->config.reactors;
        for (uint32_t i = 0; i < count * count; i++) {
            rm_free(group->mailboxes[i].slots);
        }
    }
    rm_free(group->mailboxes);
    rm_free(group->reactors);
    rm_free(group);
}
