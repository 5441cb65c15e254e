#ifndef RM_INVOCATION_H
#define RM_INVOCATION_H

/* The agent runtime: durable invocations, scheduled on their owner core.
 *
 * Ownership: a session's invocations all live on one core, the store shard of the session's
 * key ("sessions", "<agent>/<session>"), so they run one at a time and in order without
 * locks, and the session's history is written where it lives. An invocation without a
 * session is owned by the core that accepted it. Invocation ids are chosen so that their
 * journal key ("inv", id) falls on the owner's shard: any core finds the owner from an id.
 *
 * Durable queue: an invocation is accepted only once its INVOCATION_CREATED record is in the
 * owner's shard (sync durability: after its fdatasync). Each completed step (an LLM answer,
 * a tool result) rewrites the record as STEP_COMPLETED with the whole state before the next
 * step starts, and the end writes INVOCATION_FINISHED. After a crash, each core scans its
 * shard's unfinished records and resumes them after their last journaled step: a call that
 * completed before the crash is never made again.
 *
 * Requests from the HTTP API travel to the owner core as an `invocation_order` by message
 * and come back answered (status and JSON body) by message; the API answers the exchange on
 * its own core. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/reactor.h"

#define INVOCATION_ID_BYTES 16 /* hex digits */
#define INVOCATION_SESSION_MAX 128
#define INVOCATION_IDEMPOTENCY_MAX 128
#define INVOCATION_WAIT_MS_MAX 300000
#define INVOCATION_NS "inv"
#define INVOCATION_SESSION_NS "sessions"
#define INVOCATION_IDEMPOTENCY_NS "idem"

struct config;
struct metrics_registry;
struct store;
struct upstream_set;
struct invocation_runtime;

enum invocation_order_kind {
    INVOCATION_ORDER_CREATE,
    INVOCATION_ORDER_GET,
    INVOCATION_ORDER_CANCEL,
};

/* A request for the owner core, and its answer. Allocated by the API on its core; the owner
 * fills the answer and sends it back with reply(). */
struct invocation_order {
    enum invocation_order_kind kind;
    uint32_t origin;           /* the core to answer on */
    uint32_t agent;            /* CREATE */
    char session[INVOCATION_SESSION_MAX + 1];
    char idempotency[INVOCATION_IDEMPOTENCY_MAX + 1];
    char id[INVOCATION_ID_BYTES + 1]; /* GET, CANCEL */
    char *input;               /* CREATE: compact JSON text, owned by the order */
    size_t input_length;
    uint64_t wait_ms;          /* CREATE: answer 200 with the result if done by then */
    /* The answer. */
    int status;
    char *body;                /* JSON, rm_malloc'd; the API frees it */
    size_t body_length;
    uint32_t retry_after_s;    /* 429 and 503 */
    /* Runtime-private. */
    bool reserved;     /* CREATE: holds a place in its agent's queue until admitted */
    void *waiting_for; /* the invocation a waiting order waits for */
    struct invocation_order *waiter_next; /* that invocation's other waiters */
    uint64_t deadline_ns;
    struct invocation_order *next;
    struct invocation_order *previous;
    void (*reply)(struct invocation_order *order); /* runs on origin */
    void *context;
};

/* A C tool registered through the embedding API: returns 0 and a result (JSON text,
 * rm_malloc'd, the runtime frees it), or -1 and an error text in the same way. Runs on a
 * reactor thread: it must not block. */
typedef int (*invocation_c_tool)(void *context, const char *arguments, size_t length,
                                 char **result, size_t *result_length);

int invocation_runtime_create(const struct config *config, uint32_t cores,
                              struct metrics_registry *metrics, struct store *store,
                              struct upstream_set *upstreams, struct invocation_runtime **out,
                              char *err, size_t err_length);
void invocation_runtime_destroy(struct invocation_runtime *runtime);
/* Before the reactors start. Returns 0, or -ENOENT when no tool of kind "c" has this name. */
int invocation_runtime_register_tool(struct invocation_runtime *runtime, const char *name,
                                     invocation_c_tool function, void *context);
/* In each reactor's setup / teardown; busy while invocations run or journal writes fly. */
int invocation_core_open(struct invocation_runtime *runtime, struct reactor *reactor);
bool invocation_core_busy(struct invocation_runtime *runtime, struct reactor *reactor);
void invocation_core_close(struct invocation_runtime *runtime, struct reactor *reactor);
/* Called when the engine is ready: each core starts recovering its shard at its next tick. */
void invocation_runtime_ready(struct invocation_runtime *runtime);

int invocation_agent_find(const struct invocation_runtime *runtime, const char *name,
                          size_t length);
/* The core that owns a CREATE order (its session, or `here` without one) or an id. */
uint32_t invocation_owner_of_session(const struct invocation_runtime *runtime, uint32_t agent,
                                     const char *session, uint32_t here);
uint32_t invocation_owner_of_id(const struct invocation_runtime *runtime, const char *id);
/* Runs the order on its owner core (which must be the calling reactor): the reply comes
 * later, by message to order->origin. */
void invocation_order_run(struct invocation_runtime *runtime, struct reactor *reactor,
                          struct invocation_order *order);

#endif
