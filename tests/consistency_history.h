#ifndef RM_TESTS_CONSISTENCY_HISTORY_H
#define RM_TESTS_CONSISTENCY_HISTORY_H

/* The history of a crash and consistency run, and its checker. Clients record every
 * operation they started against the engine (state reads, compare-and-swap writes,
 * invocation starts and status reads) with its real-time interval and its outcome; after the
 * run the checker decides, per key, whether the history is linearizable for a versioned CAS
 * register and whether anything acknowledged was lost. It is pure (no I/O besides printing),
 * so hand-made histories test it. */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define CONSISTENCY_VALUE_MAX 48  /* a written value, or an idempotency key, with its NUL */
#define CONSISTENCY_ID_MAX 24     /* an invocation id (16 hex digits) or a status, with NUL */
#define CONSISTENCY_MESSAGES 16   /* violations described in words; the rest only counted */
#define CONSISTENCY_MESSAGE_MAX 320

enum consistency_kind {
    CONSISTENCY_READ,           /* GET /v1/state/{ns}/{key} */
    CONSISTENCY_WRITE,          /* PUT with If-Match (expected > 0) or If-None-Match: * */
    CONSISTENCY_INVOKE,         /* POST /v1/agents/{agent}/invocations with an Idempotency-Key */
    CONSISTENCY_INVOCATION_GET, /* GET /v1/invocations/{id}, the final wait for its end */
    CONSISTENCY_KINDS,
};

/* ok: the engine answered and the operation took effect (a read's answer, 200/201 for a
 * write, 202/200 for an invocation); fail: the engine answered that it did not (412, 503);
 * unknown: the connection died before the answer, so it may or may not have taken effect. */
enum consistency_outcome {
    CONSISTENCY_OK,
    CONSISTENCY_FAIL,
    CONSISTENCY_UNKNOWN,
    CONSISTENCY_OUTCOMES,
};

/* What the checker looks for; a report counts violations per check. */
enum consistency_check {
    CONSISTENCY_CHECK_LOST_UPDATE,    /* two writes that took effect replaced one version */
    CONSISTENCY_CHECK_UNWRITTEN_READ, /* an observed (version, value) nobody wrote */
    CONSISTENCY_CHECK_REAL_TIME,      /* a later operation saw an older version */
    CONSISTENCY_CHECK_LOST_WRITE,     /* the final state misses an acknowledged write */
    CONSISTENCY_CHECK_FAILED_SEEN,    /* a write answered 412/503 was observed */
    /* A read saw a write whose answer a crash took, and the state after that crash no longer
     * has it: the engine served a write before it was durable. A break of linearizability
     * like (a) and (c), told apart because its cause is durability, not ordering. */
    CONSISTENCY_CHECK_UNDURABLE_READ,
    CONSISTENCY_CHECK_PROTOCOL,       /* an answer breaks the API's contract (status, version) */
    CONSISTENCY_CHECK_INVOCATION_LOST,     /* an acknowledged invocation is gone or unfinished */
    CONSISTENCY_CHECK_IDEMPOTENCY,         /* one Idempotency-Key, two invocation ids */
    CONSISTENCY_CHECKS,
};

struct consistency_operation {
    uint64_t invoke_ns;   /* CLOCK_MONOTONIC before the request's first byte was sent */
    uint64_t complete_ns; /* after its answer was read (or the connection died) */
    uint32_t key;         /* index of the state key; unused by invocations */
    uint16_t client;
    uint16_t status; /* the HTTP status, 0 when unknown */
    uint8_t kind;    /* enum consistency_kind */
    uint8_t outcome; /* enum consistency_outcome */
    bool final;      /* made after the last restart, with no more kills to come */
    /* A write's expected version (0: the key must not exist). */
    uint64_t expected;
    /* A read's version (0: absent), a successful write's new version, a 412's current one. */
    uint64_t version;
    /* A write's value (unique per key), a read's value, an invocation's Idempotency-Key, or
     * the status an invocation GET answered ("completed"). */
    char value[CONSISTENCY_VALUE_MAX];
    /* The invocation's id (from the POST's answer, or the one a GET asked for). */
    char id[CONSISTENCY_ID_MAX];
};

/* Appended to by many client threads; grows up to `capacity` operations. */
struct consistency_history {
    pthread_mutex_t lock;
    struct consistency_operation *operations;
    uint64_t count;
    uint64_t allocated;
    uint64_t capacity;
    uint64_t dropped; /* appends beyond capacity: the run is then too long to check */
};

struct consistency_report {
    uint64_t operations[CONSISTENCY_KINDS][CONSISTENCY_OUTCOMES];
    uint64_t violations[CONSISTENCY_CHECKS];
    uint64_t violations_total;
    uint32_t keys;
    uint32_t message_count;
    char messages[CONSISTENCY_MESSAGES][CONSISTENCY_MESSAGE_MAX];
};

void consistency_history_init(struct consistency_history *history, uint64_t capacity);
void consistency_history_free(struct consistency_history *history);
/* Thread-safe; returns false (and counts the drop) when the history is full. */
bool consistency_history_append(struct consistency_history *history,
                                const struct consistency_operation *operation);
uint64_t consistency_now_ns(void);

/* Checks the whole history; fills report. Returns the number of violations. */
uint64_t consistency_check(const struct consistency_history *history,
                           struct consistency_report *report);
/* Operations by kind and outcome, keys, cycles, violations per check and their first
 * descriptions. */
void consistency_report_print(FILE *out, const struct consistency_report *report,
                              uint32_t cycles);
const char *consistency_check_name(enum consistency_check check);

#endif
