#ifndef RM_BREAKER_H
#define RM_BREAKER_H

/* Circuit breakers, one per tool and per LLM endpoint: closed, open, half-open.
 *
 * Per core with global reconciliation. Each core counts its calls' outcomes in its own
 * slots and decides on its fast path from the breaker's global state word, which it reads
 * with one relaxed atomic load (a line that changes only on transitions, so it stays in
 * every core's cache). Every reconcile tick each core publishes its counts into the
 * breaker's global pending counters (ck_pr atomic adds); one core per tick (whoever wins a
 * CAS on the tick's deadline) folds them into the sliding window and makes the transition
 * decision. A core whose own counts since its last publish already cross the thresholds
 * (judged as a window of their own: at least min_calls, and for a count window at most the
 * last window_calls in proportion) opens the breaker for every core at once (a CAS on the
 * state word), without waiting for the tick.
 *
 * Window: count-based (the last window_calls calls) or time-based (the last window_ms), kept
 * as a ring of BREAKER_BUCKETS buckets of merged counts; a bucket of a count window closes
 * once it holds ceil(window_calls / (BREAKER_BUCKETS - 1)) calls, and the oldest bucket gives
 * up its share of calls as new ones arrive, so the window holds exactly the last window_calls
 * calls; a bucket of a time window covers window_ms / BREAKER_BUCKETS (at least one tick). The
 * counts a core publishes in one tick are merged, so within them only the proportions of
 * failed and slow calls survive, not their order. The breaker opens when the window holds at
 * least min_calls calls and failures * 100 >= failure_percent * calls, or slow calls * 100 >=
 * slow_percent * calls (when slow_call_ms is set; a call is slow when duration >=
 * slow_call_ms). Timeouts count as failures; a call can be both failed and slow.
 *
 * Open: every call is denied at once until open_ms have passed since it opened; then the
 * breaker is half-open with `probes` probe permits shared by all cores (an atomic counter).
 * A probe's failure re-opens it at once; when `probes` probes have succeeded it closes and
 * its window starts empty. Calls that are neither probes nor denied in half-open do not
 * exist: once the permits are taken, further calls are denied until the probes report.
 * Each transition starts a new generation (view.transitions counts them); a report that
 * belongs to an earlier one does not touch the probe accounting: a permitted call reported
 * while the breaker is not closed is dropped (one reported after it closed again counts in
 * the new window), and so is a probe reported after its half-open episode ended. Probes are
 * judged by failure alone (a slow probe that succeeds counts as a success).
 *
 * Every transition is logged (log_warn when it opens, else log_info: "breaker transition"
 * with kind, name, from, to and reason) and
 * counted in metrics: ringmaster_breaker_state{kind,name} (gauge: 0 closed, 1 half-open,
 * 2 open; kept only in the registry's extra writer slot, index `cores`, by whichever core made
 * the transition, so the registry must be created with the same `cores` as the set) and
 * ringmaster_breaker_transitions_total{kind,name,to} (to: "closed", "half-open", "open"). */

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"

#define BREAKER_MAX 128
#define BREAKER_BUCKETS 64

struct metrics_registry;
struct breaker_set;

enum breaker_state { BREAKER_CLOSED = 0, BREAKER_HALF_OPEN = 1, BREAKER_OPEN = 2 };

/* What breaker_acquire allows. */
enum breaker_permit {
    BREAKER_DENIED,    /* open (or half-open with every probe taken): do not call */
    BREAKER_PERMITTED, /* closed: call, then report with breaker_release */
    BREAKER_PROBE,     /* half-open probe: call, then report with breaker_release */
};

/* A snapshot for the admin API and tests. */
struct breaker_view {
    const char *kind; /* "tool" or "endpoint" */
    const char *name;
    enum breaker_state state;
    uint64_t window_calls;    /* calls, failures and slow calls in the window as of the last
                                 fold (0 when closed since then); read one by one */
    uint64_t window_failures;
    uint64_t window_slow;
    uint64_t opened_at_ns;    /* monotonic (reactor_clock_ns) time it last opened; 0 never */
    uint64_t open_until_ns;   /* when it becomes half-open; 0 unless open */
    uint32_t probes_left;     /* permits not yet taken (half-open) */
    uint64_t transitions;     /* since start; also the generation of the current state */
};

/* cores: the number of reactors (cores 0..cores-1 call the functions below). Returns NULL
 * when out of memory. */
struct breaker_set *breaker_set_create(uint32_t cores, uint32_t reconcile_ms,
                                       struct metrics_registry *metrics);
void breaker_set_destroy(struct breaker_set *set);

/* Adds a breaker before the reactors start; returns its id (>= 0), or -ENOSPC (BREAKER_MAX
 * reached or metrics full). kind is "tool" or "endpoint"; name and kind are copied. The
 * config has been validated (config.c). */
int breaker_add(struct breaker_set *set, const char *kind, const char *name,
                const struct config_breaker *config);
uint32_t breaker_count(const struct breaker_set *set);

/* On core `core`'s reactor thread. now_ns is monotonic (reactor_now_ns). */
enum breaker_permit breaker_acquire(struct breaker_set *set, uint32_t core, uint32_t id,
                                    uint64_t now_ns);
/* Reports a permitted or probe call: failed (error or timeout) and its duration. On the core
 * that acquired it: a core's probe permits are tracked per core, and a core still waiting for
 * a probe of an earlier half-open episode is given no probe in a later one until it reports
 * (that is how a late probe is told apart from a current one without a token). */
void breaker_release(struct breaker_set *set, uint32_t core, uint32_t id,
                     enum breaker_permit permit, bool failed, uint64_t duration_ns,
                     uint64_t now_ns);
/* Each core's tick hook: publishes this core's counts and, once per reconcile period, on one
 * core, folds them into the windows and makes time-driven transitions (open -> half-open). */
void breaker_reconcile(struct breaker_set *set, uint32_t core, uint64_t now_ns);

/* From any thread. */
void breaker_view(struct breaker_set *set, uint32_t id, struct breaker_view *out);
const char *breaker_state_name(enum breaker_state state);

#endif
