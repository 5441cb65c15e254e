#ifndef RM_BUCKET_H
#define RM_BUCKET_H

/* Token buckets (requests per minute, tokens per minute of an API key), spent per core and
 * reconciled globally.
 *
 * Tokens are conserved: they enter a bucket only by its refill (rate = per_minute / 60 s, up
 * to `burst` held in the global pool) and leave only by being spent, so the global rate can
 * never exceed the limit (plus the burst) whatever the cores do. Each core holds a share of
 * tokens of its own and spends from it with no atomic operation at all. When its share is too
 * small for a take it moves tokens from the global pool with one CAS loop (lock-free), so a
 * busy core is never starved by shares idle on other cores for more than one tick. Every
 * reconcile tick each core gives back what it holds beyond its demand of the last tick (so an
 * idle core's share is not lost) and tops its share up to that demand from the pool; one core
 * per tick (a CAS on the tick's deadline) adds the refill for the time since the last one. A
 * take that the refill due by now would pay runs that step itself, so a busy core is not bound
 * to the tick. Refill is counted in token-nanoseconds with the remainder carried, so it never
 * drifts; its clock starts at the first reconcile (or take that reaches the pool). Tokens
 * that do not fit in the pool (refill, or shares given back to a full pool) are dropped, as in
 * any token bucket.
 *
 * Corrections: the token cost of an LLM request is estimated before the call and corrected
 * from `usage` after it; a core spending more than it took goes into debt (its share goes
 * negative) and pays it back from its next takes (and from the pool at its reconciles). A
 * provider 429 drains the pool and pauses the bucket until a given time (bucket_pause), after
 * which refill starts again from zero; a pause holds unlimited buckets too. */

#include <stdbool.h>
#include <stdint.h>

#define BUCKET_MAX 512

struct bucket_set;

struct bucket_view {
    uint64_t per_minute;
    uint64_t burst;
    int64_t available;      /* global pool plus every core's share (may be negative: debt);
                               INT64_MAX for an unlimited bucket */
    uint64_t paused_until_ns; /* 0 when not paused (cleared at the first reconcile after) */
    uint64_t spent;         /* since start: takes plus corrections */
};

/* cores: 1..64 (REACTOR_MAX); reconcile_ms: 1..60000. NULL when out of memory. */
struct bucket_set *bucket_set_create(uint32_t cores, uint32_t reconcile_ms);
void bucket_set_destroy(struct bucket_set *set);

/* Adds a bucket before the reactors start, full (burst tokens in the pool); returns its id or
 * -ENOSPC. per_minute 0 means unlimited: every take succeeds (unless paused). burst 0 means
 * per_minute / 60 (one second's worth), at least 1. Rates, bursts, amounts and corrections
 * above 2^48 are programmer errors (asserted). */
int bucket_add(struct bucket_set *set, uint64_t per_minute, uint64_t burst);

/* On core `core`'s reactor thread; now_ns monotonic. Takes amount tokens, or nothing and
 * returns false. An amount larger than burst is allowed once the pool is full (the pool and
 * this core's share hold burst; so a single request bigger than one second's budget is not
 * refused forever): it takes everything there is and leaves the rest as debt. */
bool bucket_take(struct bucket_set *set, uint32_t core, uint32_t id, uint64_t amount,
                 uint64_t now_ns);
/* Corrects a take: delta > 0 spends more (debt allowed), delta < 0 gives tokens back. */
void bucket_adjust(struct bucket_set *set, uint32_t core, uint32_t id, int64_t delta);
/* Tokens this core could spend now without waiting: its share plus the pool (with the refill
 * due by now, up to burst), or INT64_MAX for an unlimited bucket; 0 while paused. For
 * choosing between keys. */
int64_t bucket_available(struct bucket_set *set, uint32_t core, uint32_t id, uint64_t now_ns);
/* Nanoseconds until `amount` tokens could be available at the refill rate (0 if now; for an
 * amount above burst, until the pool is full), if no other core spends meanwhile. */
uint64_t bucket_wait_ns(struct bucket_set *set, uint32_t core, uint32_t id, uint64_t amount,
                        uint64_t now_ns);
/* A provider said the budget is gone: empties the pool and every share it can reach (this
 * core's now, others' at their next reconcile) and refuses takes until until_ns. From any
 * core. */
void bucket_pause(struct bucket_set *set, uint32_t core, uint32_t id, uint64_t until_ns);
/* Each core's tick hook. */
void bucket_reconcile(struct bucket_set *set, uint32_t core, uint64_t now_ns);

/* From any thread. */
void bucket_view(struct bucket_set *set, uint32_t id, struct bucket_view *out);

#endif
