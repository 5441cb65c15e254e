#ifndef RM_INVOCATION_INTERNAL_H
#define RM_INVOCATION_INTERNAL_H

/* What core/invocation*.c and core/agent_run.c share: the runtime, its per-core state and one
 * invocation. Everything here belongs to the owner core's thread except the fields marked
 * shared (ck_pr atomics). */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/invocation.h"
#include "store/store.h"

#define INVOCATION_TABLE_BUCKETS 65536 /* per core; chains beyond */
#define INVOCATION_ERROR_MAX 512
#define INVOCATION_SCAN_BATCH 4096

enum invocation_status {
    INVOCATION_QUEUED,
    INVOCATION_RUNNING,
    INVOCATION_COMPLETED,
    INVOCATION_FAILED,
    INVOCATION_CANCELLED,
};

struct invocation;
struct invocation_core;
struct agent_run;

struct invocation_list {
    struct invocation *head;
    struct invocation *tail;
    uint32_t count;
};

struct invocation_session {
    struct invocation_session *hash_next;
    struct invocation *head; /* its invocations in order (session_next); the head may run */
    struct invocation *tail;
    uint32_t agent;
    char name[INVOCATION_SESSION_MAX + 1];
};

struct invocation {
    char id[INVOCATION_ID_BYTES + 1];
    uint32_t agent;
    enum invocation_status status;
    uint32_t depth;                     /* sub-agent nesting */
    struct invocation_session *session; /* NULL without one */
    struct invocation *hash_next;
    struct invocation *next;            /* in its agent's ready list */
    struct invocation *previous;
    struct invocation *session_next;    /* in its session's queue */
    struct invocation_order *waiters;   /* orders waiting for the end */
    struct agent_run *run;              /* while running */
    struct invocation *parent;          /* a sub-agent's caller, while it waits */
    uint32_t parent_slot;
    char *input;                        /* compact JSON */
    json_t *messages;                   /* the messages this invocation added */
    json_t *steps;
    json_t *result;
    /* Both allocated only when set: a queued invocation stays small (the memory budget). */
    char *error;
    char *idempotency;
    uint64_t created_ms; /* unix time */
    uint64_t admitted;   /* its core's admission count: the ready lists' order */
    uint64_t started_ms;
    uint64_t finished_ms;
    uint64_t tokens;
    uint32_t llm_steps;
    struct invocation_order *creator; /* the CREATE order until the record is durable */
    bool ready_listed;   /* in its agent's ready list */
    bool holds_slot;     /* counted in its agent's running (engine-wide) */
    bool cancel_requested;
    struct invocation *retry_next; /* in its core's journal_retry list */
    bool journal_busy;   /* a record write in flight, or waiting to be retried */
    bool journal_dirty;  /* state changed since that write began */
    bool finishing;      /* the FINISHED record is being written */
    uint8_t journal_type; /* of the write to make once the one in flight is done */
    void (*journal_done)(struct invocation_core *core, struct invocation *invocation,
                         int status);
};

/* Engine-wide counts of one agent, on their own line. */
struct invocation_agent_shared {
    uint32_t running;
    uint32_t queued;
    uint32_t creating; /* admitted orders whose record is not yet written: max_queue counts
                          them, so a slow journal cannot let the queue overshoot */
    uint64_t finished;
    uint64_t finished_per_second; /* measured by core 0 */
    uint64_t finished_mark;
    uint64_t mark_ns;
} __attribute__((aligned(64)));

struct invocation_agent_metrics {
    int outcomes[3]; /* completed, failed, cancelled */
    int duration;
    int queue_depth;
    int running;
    int rejected_queue;
    int rejected_saturated;
    int steps;
    int tokens;
};

struct invocation_core;

struct invocation_runtime {
    const struct config *config;
    uint32_t cores;
    struct metrics_registry *metrics;
    struct store *store;
    struct upstream_set *upstreams;
    uint32_t total; /* shared: invocations queued or running, engine-wide */
    int ready;      /* shared: recovery may start */
    struct invocation_agent_shared agents[CONFIG_AGENTS_MAX];
    struct invocation_agent_metrics agent_metrics[CONFIG_AGENTS_MAX];
    int rejected_saturated;
    struct {
        invocation_c_tool function;
        void *context;
    } c_tools[CONFIG_TOOLS_MAX];
    struct invocation_core *per_core[REACTOR_MAX];
};

struct invocation_core {
    struct invocation_runtime *runtime;
    struct reactor *reactor;
    uint32_t core;
    struct invocation *table[INVOCATION_TABLE_BUCKETS];
    struct invocation_session *sessions[INVOCATION_TABLE_BUCKETS];
    struct invocation_list ready[CONFIG_AGENTS_MAX];
    struct agent_run *runs;           /* running invocations (agent_run.c links them) */
    struct invocation_order *waiting; /* orders with a wait deadline, oldest deadline first */
    struct invocation_order *waiting_tail;
    struct invocation_order *outbox;  /* answers whose message found the ring full */
    struct invocation *journal_retry; /* record writes the store refused for now (-EAGAIN) */
    uint32_t agent_cursor;
    uint64_t admissions;
    uint32_t active;    /* invocations running or with a record write in flight */
    uint32_t writes;    /* store writes in flight */
    bool recovered;
    uint64_t random;
    uint64_t next_deadline_check_ns;
};

/* core/invocation.c */
/* Replaces invocation->error (NULL or "" clears it). */
void invocation_set_error(struct invocation *invocation, const char *text);
/* A copy of text in a new allocation, or NULL for NULL, "" or no memory. */
char *invocation_strdup(const char *text);
struct invocation_core *invocation_core_of(struct invocation_runtime *runtime, uint32_t core);
struct invocation *invocation_find(struct invocation_core *core, const char *id);
uint64_t invocation_unix_ms(void);
/* Makes a new id whose journal key falls on `owner`'s shard; `seed` (may be NULL) makes it
 * deterministic (a sub-agent call: the same parent and call give the same id). */
void invocation_make_id(struct invocation_runtime *runtime, uint32_t owner, const char *seed,
                        char id[INVOCATION_ID_BYTES + 1], uint64_t *random);
/* Adds a new or recovered invocation to the core's tables and queues. */
void invocation_admit(struct invocation_core *core, struct invocation *invocation);
/* The end: the FINISHED record was written; answers waiters, frees, schedules the next. */
void invocation_finished(struct invocation_core *core, struct invocation *invocation);
void invocation_free(struct invocation *invocation);
void invocation_schedule(struct invocation_core *core);
const char *invocation_status_name(enum invocation_status status);
/* The JSON of GET /v1/invocations/{id}; a new reference. */
json_t *invocation_view(const struct invocation_runtime *runtime,
                        const struct invocation *invocation);

/* Sends the answer (status, JSON body; `retry_after_s` for 429/503) back to the order's
 * core. Consumes body (json_decref). */
void invocation_answer(struct invocation_core *core, struct invocation_order *order, int status,
                       json_t *body);
void invocation_answer_error(struct invocation_core *core, struct invocation_order *order,
                             int status, const char *type, const char *message);

/* core/invocation_journal.c */
/* The record's value: the whole state as compact JSON (rm_free it). */
char *invocation_journal_text(const struct invocation_runtime *runtime,
                              const struct invocation *invocation, size_t *length);
/* Writes the invocation's record (coalescing: at most one write in flight per invocation).
 * type CREATED for the first, STEP_COMPLETED for a step, FINISHED for the end. `done` runs
 * on this core once a write that covers the current state is durable, with 0 or a negative
 * errno. */
void invocation_journal(struct invocation_core *core, struct invocation *invocation,
                        enum store_record_type type,
                        void (*done)(struct invocation_core *core,
                                     struct invocation *invocation, int status));
/* Rebuilds an invocation from a record's value (its session's name into `session`); NULL
 * when the record cannot be used (its agent is no longer configured, or it is garbage). */
struct invocation *invocation_journal_load(struct invocation_runtime *runtime, const char *id,
                                           const uint8_t *value, size_t length,
                                           char session[INVOCATION_SESSION_MAX + 1]);
/* Retries the record writes the store refused with -EAGAIN (its commit buffer was full):
 * from the tick, so a full buffer is waited out instead of failing invocations. */
void invocation_journal_retry(struct invocation_core *core);
/* Starts the recovery scan of this core's shard (at its first tick once ready). */
void invocation_journal_recover(struct invocation_core *core);

/* core/agent_run.c */
void agent_run_start(struct invocation_core *core, struct invocation *invocation);
/* A cancel or a deadline: stops what is in flight and finishes the invocation. */
void agent_run_stop(struct invocation_core *core, struct invocation *invocation,
                    enum invocation_status status, const char *why);
/* A sub-agent invocation ended: its caller's tool call gets the result. */
void agent_run_child_done(struct invocation_core *core, struct invocation *child);
/* Fails running invocations past their deadline; from the tick. */
void agent_run_check_deadlines(struct invocation_core *core, uint64_t now_ns);
/* The journal continuation of a FINISHED record: hands the invocation to
 * invocation_finished (or logs a failed write and finishes anyway: the record says running,
 * so it runs again after a restart). */
void agent_run_journal_finished(struct invocation_core *core, struct invocation *invocation,
                                int status);
/* Frees a running invocation's run state without finishing it (teardown). */
void agent_run_discard(struct invocation_core *core, struct invocation *invocation);
/* Admits an invocation read back from its record (recovery). */
void invocation_recovered(struct invocation_core *core, struct invocation *invocation,
                          const char *session);

#endif
