#include "core/breaker.h"

#include <ck_pr.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/rm_assert.h"

#define breaker_load(target) rm_atomic_load_64(target)
#define breaker_store(target, value) rm_atomic_store_64((target), (value))
#define breaker_exchange(target, value) rm_atomic_exchange_64((target), (value))

#define BREAKER_CACHE_LINE 64
#define BREAKER_CORES_MAX METRICS_CORES_MAX
#define BREAKER_PROBES_MAX 1000 /* config.c allows 1..1000 */
#define BREAKER_KIND_MAX 16
#define BREAKER_REASON_MAX 128
#define BREAKER_NS_PER_MS 1000000ULL
/* The deadline of a fold in progress: no core's now_ns reaches it, so only one folds. */
#define BREAKER_FOLD_BUSY UINT64_MAX
/* Rewrites of the state gauge before giving up to a later transition (see gauge_sync). */
#define BREAKER_GAUGE_ATTEMPTS 8

/* The state word: state in bits 0-1, probes taken and probes succeeded (this half-open
 * episode) in two 10-bit fields, and the generation above them. Every transition bumps the
 * generation, so a CAS from a word that was read before a transition always fails, and the
 * generation names the episode a probe or a count belongs to. */
#define BREAKER_STATE_MASK 0x3ULL
#define BREAKER_FIELD_MASK 0x3FFULL
#define BREAKER_TAKEN_SHIFT 2
#define BREAKER_SUCCEEDED_SHIFT 12
#define BREAKER_GENERATION_SHIFT 22
#define BREAKER_TAKEN_ONE (1ULL << BREAKER_TAKEN_SHIFT)
#define BREAKER_SUCCEEDED_ONE (1ULL << BREAKER_SUCCEEDED_SHIFT)

_Static_assert(BREAKER_PROBES_MAX <= BREAKER_FIELD_MASK, "probe counts fit the state word");
_Static_assert(BREAKER_TAKEN_SHIFT + 10 == BREAKER_SUCCEEDED_SHIFT, "fields do not overlap");
_Static_assert(BREAKER_SUCCEEDED_SHIFT + 10 == BREAKER_GENERATION_SHIFT, "fields do not overlap");
_Static_assert(BREAKER_BUCKETS >= 2, "a count window needs a head and older buckets");

struct breaker_bucket {
    uint64_t calls;
    uint64_t failures;
    uint64_t slow;
    uint64_t epoch; /* time windows: now_ns / bucket_ns of the calls it holds */
};

/* Owned by the folding core (folds are serialized by the fold deadline CAS). */
struct breaker_window {
    struct breaker_bucket buckets[BREAKER_BUCKETS];
    uint32_t head;            /* count windows: the bucket being filled */
    uint32_t tail;            /* count windows: the oldest bucket that may hold calls */
    uint64_t epoch_latest;    /* time windows: cores' clocks differ slightly; never go back */
    uint64_t carry_failures;  /* published before their calls (see breaker_fold) */
    uint64_t carry_slow;
    uint64_t calls;
    uint64_t failures;
    uint64_t slow;
    uint64_t generation;      /* the closed episode the window belongs to */
};

struct breaker {
    /* Read-only once added. */
    _Alignas(BREAKER_CACHE_LINE) struct config_breaker config;
    uint64_t slow_ns;        /* 0: slow detection off */
    uint64_t open_ns;
    uint64_t bucket_calls;   /* count windows: calls per bucket */
    uint64_t bucket_ns;      /* time windows: time per bucket */
    uint64_t bucket_span;    /* time windows: buckets covering window_ms */
    int series_state;
    int series_transitions[3]; /* by the state entered */
    char kind[BREAKER_KIND_MAX];
    char name[CONFIG_NAME_MAX];
    /* Read by every acquire; written only on transitions and half-open probe accounting. */
    _Alignas(BREAKER_CACHE_LINE) uint64_t state;
    uint64_t open_generation; /* the generation whose open times below are published */
    uint64_t opened_at_ns;
    uint64_t open_until_ns;
    /* Every core adds its counts here once per tick. */
    _Alignas(BREAKER_CACHE_LINE) uint64_t pending_calls;
    uint64_t pending_failures;
    uint64_t pending_slow;
    _Alignas(BREAKER_CACHE_LINE) struct breaker_window window;
    /* The window's totals and generation as of the last fold, for breaker_view. */
    uint64_t view_calls;
    uint64_t view_failures;
    uint64_t view_slow;
    uint64_t view_generation;
};

/* One core's counts for one breaker: plain fields, only that core touches them. */
struct breaker_core {
    _Alignas(BREAKER_CACHE_LINE) uint64_t generation; /* closed episode of the counts */
    uint64_t calls;
    uint64_t failures;
    uint64_t slow;
    uint64_t probe_generation; /* half-open episode of the outstanding probes */
    uint32_t probes_outstanding;
};

_Static_assert(sizeof(struct breaker_core) == BREAKER_CACHE_LINE, "one line per record");

struct breaker_set {
    _Alignas(BREAKER_CACHE_LINE) uint64_t fold_deadline_ns;
    _Alignas(BREAKER_CACHE_LINE) uint32_t cores;
    uint32_t count;
    uint64_t reconcile_ns;
    struct metrics_registry *metrics;
    void *allocation;
    struct breaker_core *records; /* [core][BREAKER_MAX] */
    void *records_allocation;
    struct breaker breakers[BREAKER_MAX];
};

static const char *const breaker_state_names[] = {"closed", "half-open", "open"};

/* rm_calloc aligns to 16 bytes; per-core lines need 64. */
static void *breaker_aligned_calloc(size_t size, void **allocation)
{
    RM_ASSERT(size > 0);
    *allocation = rm_calloc(1, size + BREAKER_CACHE_LINE);
    if (*allocation == NULL) {
        return NULL;
    }
    uintptr_t base = (uintptr_t)*allocation;
    uintptr_t aligned = (base + BREAKER_CACHE_LINE - 1) & ~(uintptr_t)(BREAKER_CACHE_LINE - 1);
    RM_ASSERT(aligned + size <= base + size + BREAKER_CACHE_LINE);
    return (void *)aligned;
}

static enum breaker_state breaker_word_state(uint64_t word)
{
    uint64_t state = word & BREAKER_STATE_MASK;
    RM_ASSERT(state <= BREAKER_OPEN);
    return (enum breaker_state)state;
}

static uint64_t breaker_word_generation(uint64_t word)
{
    return word >> BREAKER_GENERATION_SHIFT;
}

static uint32_t breaker_word_taken(uint64_t word)
{
    return (uint32_t)((word >> BREAKER_TAKEN_SHIFT) & BREAKER_FIELD_MASK);
}

static uint32_t breaker_word_succeeded(uint64_t word)
{
    return (uint32_t)((word >> BREAKER_SUCCEEDED_SHIFT) & BREAKER_FIELD_MASK);
}

static struct breaker *breaker_of(struct breaker_set *set, uint32_t id)
{
    RM_ASSERT(set != NULL);
    RM_ASSERT(id < set->count);
    return &set->breakers[id];
}

static struct breaker_core *breaker_core_of(struct breaker_set *set, uint32_t core, uint32_t id)
{
    RM_ASSERT(core < set->cores);
    RM_ASSERT(id < set->count);
    return &set->records[(size_t)core * BREAKER_MAX + id];
}

/* part * of / total without overflow, rounded down; of <= total. */
static uint64_t breaker_share(uint64_t part, uint64_t of, uint64_t total)
{
    RM_ASSERT(total > 0);
    RM_ASSERT(of <= total);
    return (uint64_t)((unsigned __int128)part * of / total);
}

/* Why these counts open the breaker, or NULL. */
static const char *breaker_crossed(const struct breaker *breaker, uint64_t calls,
                                   uint64_t failures, uint64_t slow)
{
    RM_ASSERT(failures <= calls);
    RM_ASSERT(slow <= calls);
    if (calls == 0 || calls < breaker->config.min_calls) {
        return NULL;
    }
    if (failures * 100 >= (uint64_t)breaker->config.failure_percent * calls) {
        return "failure rate";
    }
    /* No call is counted slow when slow_call_ms is 0. */
    if (slow * 100 >= (uint64_t)breaker->config.slow_percent * calls) {
        return "slow-call rate";
    }
    return NULL;
}

/* The gauge lives in the registry's extra slot (index cores), written by whichever core made
 * a transition. The CAS orders transitions but not the writes after them, so a writer checks
 * the state again after its write and repeats if another transition slipped in; the last
 * transition's writer always ends with the current state. */
static void breaker_gauge_sync(struct breaker_set *set, struct breaker *breaker)
{
    for (uint32_t attempt = 0; attempt < BREAKER_GAUGE_ATTEMPTS; attempt++) {
        enum breaker_state state = breaker_word_state(breaker_load(&breaker->state));
        metrics_set(set->metrics, set->cores, breaker->series_state, (int64_t)state);
        ck_pr_fence_memory();
        if (breaker_word_state(breaker_load(&breaker->state)) == state) {
            return;
        }
    }
}

static void breaker_transition_report(struct breaker_set *set, uint32_t core,
                                      struct breaker *breaker, enum breaker_state from,
                                      enum breaker_state to, const char *reason)
{
    metrics_add(set->metrics, core, breaker->series_transitions[to], 1);
    breaker_gauge_sync(set, breaker);
    if (to == BREAKER_OPEN) {
        log_warn("breaker transition", "kind", breaker->kind, "name", breaker->name, "from",
                 breaker_state_names[from], "to", breaker_state_names[to], "reason", reason);
    } else {
        log_info("breaker transition", "kind", breaker->kind, "name", breaker->name, "from",
                 breaker_state_names[from], "to", breaker_state_names[to], "reason", reason);
    }
}

/* Moves the breaker from `word` to `to` with the next generation; false when another core
 * changed the word first. */
static bool breaker_transition(struct breaker_set *set, uint32_t core, struct breaker *breaker,
                               uint64_t word, enum breaker_state to, uint64_t now_ns,
                               const char *reason)
{
    enum breaker_state from = breaker_word_state(word);
    RM_ASSERT(from != to);
    uint64_t generation = breaker_word_generation(word) + 1;
    if (to == BREAKER_CLOSED) {
        /* Counts published before the breaker opened may still wait for a fold; the new
         * window must start empty. Nothing new arrives while it is not closed. */
        breaker_exchange(&breaker->pending_calls, 0);
        breaker_exchange(&breaker->pending_failures, 0);
        breaker_exchange(&breaker->pending_slow, 0);
    }
    uint64_t next = (generation << BREAKER_GENERATION_SHIFT) | (uint64_t)to;
    if (!ck_pr_cas_64(&breaker->state, word, next)) {
        return false;
    }
    if (to == BREAKER_OPEN) {
        /* Published after the CAS (only the winner may write them), then tagged with the
         * generation: readers ignore the times until the tag matches the state word. */
        breaker_store(&breaker->opened_at_ns, now_ns);
        breaker_store(&breaker->open_until_ns, now_ns + breaker->open_ns);
        ck_pr_fence_store();
        breaker_store(&breaker->open_generation, generation);
    }
    breaker_transition_report(set, core, breaker, from, to, reason);
    return true;
}

static bool breaker_open_elapsed(struct breaker *breaker, uint64_t word, uint64_t now_ns)
{
    RM_ASSERT(breaker_word_state(word) == BREAKER_OPEN);
    if (breaker_load(&breaker->open_generation) != breaker_word_generation(word)) {
        return false; /* the opening core has not published its times yet */
    }
    ck_pr_fence_load();
    return now_ns >= breaker_load(&breaker->open_until_ns);
}

/* Every failed CAS on the state word within one half-open episode is another core's
 * success, and an episode has at most probes takes, probes - 1 successes and one transition;
 * after that the generation differs and the loops below stop. */
static uint32_t breaker_attempts(const struct breaker *breaker)
{
    return 2 * breaker->config.probes + 4;
}

/* A core never holds probes of two episodes, so (core, generation) tells a probe's episode
 * without a token: a core still waiting for a probe of an earlier episode takes no new one. */
static bool breaker_probe_blocked(const struct breaker_core *record, uint64_t word)
{
    return record->probes_outstanding > 0 &&
           record->probe_generation != breaker_word_generation(word);
}

static enum breaker_permit breaker_acquire_slow(struct breaker_set *set, uint32_t core,
                                                uint32_t id, uint64_t word, uint64_t now_ns)
{
    struct breaker *breaker = breaker_of(set, id);
    struct breaker_core *record = breaker_core_of(set, core, id);
    uint32_t attempts = breaker_attempts(breaker);
    for (uint32_t attempt = 0; attempt < attempts; attempt++) {
        switch (breaker_word_state(word)) {
        case BREAKER_CLOSED:
            return BREAKER_PERMITTED;
        case BREAKER_OPEN:
            if (!breaker_open_elapsed(breaker, word, now_ns)) {
                return BREAKER_DENIED;
            }
            breaker_transition(set, core, breaker, word, BREAKER_HALF_OPEN, now_ns,
                               "open_ms elapsed");
            break;
        case BREAKER_HALF_OPEN:
            if (breaker_word_taken(word) >= breaker->config.probes ||
                breaker_probe_blocked(record, word)) {
                return BREAKER_DENIED;
            }
            if (ck_pr_cas_64(&breaker->state, word, word + BREAKER_TAKEN_ONE)) {
                record->probe_generation = breaker_word_generation(word);
                record->probes_outstanding++;
                return BREAKER_PROBE;
            }
            break;
        }
        word = breaker_load(&breaker->state);
    }
    /* Denying is always safe; it takes episodes ending under us to get here. */
    return BREAKER_DENIED;
}

enum breaker_permit breaker_acquire(struct breaker_set *set, uint32_t core, uint32_t id,
                                    uint64_t now_ns)
{
    struct breaker *breaker = breaker_of(set, id);
    RM_ASSERT(core < set->cores);
    uint64_t word = breaker_load(&breaker->state);
    if (breaker_word_state(word) == BREAKER_CLOSED) {
        return BREAKER_PERMITTED;
    }
    return breaker_acquire_slow(set, core, id, word, now_ns);
}

/* One attempt at reporting a probe of the current episode; false when the CAS lost. */
static bool breaker_probe_report(struct breaker_set *set, uint32_t core, struct breaker *breaker,
                                 uint64_t word, bool failed, uint64_t now_ns)
{
    uint32_t succeeded = breaker_word_succeeded(word);
    RM_ASSERT(succeeded < breaker_word_taken(word));
    if (failed) {
        return breaker_transition(set, core, breaker, word, BREAKER_OPEN, now_ns,
                                  "probe failed");
    }
    if (succeeded + 1 == breaker->config.probes) {
        return breaker_transition(set, core, breaker, word, BREAKER_CLOSED, now_ns,
                                  "probes succeeded");
    }
    return ck_pr_cas_64(&breaker->state, word, word + BREAKER_SUCCEEDED_ONE);
}

static void breaker_release_probe(struct breaker_set *set, uint32_t core,
                                  struct breaker *breaker, struct breaker_core *record,
                                  bool failed, uint64_t now_ns)
{
    RM_ASSERT(record->probes_outstanding > 0);
    record->probes_outstanding--;
    uint32_t attempts = breaker_attempts(breaker);
    for (uint32_t attempt = 0; attempt < attempts; attempt++) {
        uint64_t word = breaker_load(&breaker->state);
        if (breaker_word_state(word) != BREAKER_HALF_OPEN ||
            breaker_word_generation(word) != record->probe_generation) {
            return; /* its episode is over: a stale probe counts for nothing */
        }
        if (breaker_probe_report(set, core, breaker, word, failed, now_ns)) {
            return;
        }
    }
    RM_ASSERT(!"more failed CAS attempts than an episode allows");
}

/* Why this core's own counts open the breaker, or NULL. A count window never holds more
 * than window_calls calls, so neither do they: beyond it they keep their proportions (as a
 * fold does), and a min_calls above window_calls never opens the breaker here either. */
static const char *breaker_burst_crossed(const struct breaker *breaker,
                                         const struct breaker_core *record)
{
    uint64_t calls = record->calls;
    uint64_t failures = record->failures;
    uint64_t slow = record->slow;
    uint64_t window_calls = breaker->config.window_calls;
    if (breaker->config.window == CONFIG_WINDOW_COUNT && calls > window_calls) {
        failures = breaker_share(failures, window_calls, calls);
        slow = breaker_share(slow, window_calls, calls);
        calls = window_calls;
    }
    RM_ASSERT(calls >= 1);
    return breaker_crossed(breaker, calls, failures, slow);
}

static void breaker_release_permitted(struct breaker_set *set, uint32_t core,
                                      struct breaker *breaker, struct breaker_core *record,
                                      bool failed, bool slow, uint64_t now_ns)
{
    uint64_t word = breaker_load(&breaker->state);
    if (breaker_word_state(word) != BREAKER_CLOSED) {
        return; /* permitted before it opened: its window is gone and it is no probe */
    }
    uint64_t generation = breaker_word_generation(word);
    if (record->generation != generation) {
        *record = (struct breaker_core){.generation = generation,
                                        .probe_generation = record->probe_generation,
                                        .probes_outstanding = record->probes_outstanding};
    }
    record->calls++;
    record->failures += failed ? 1 : 0;
    record->slow += slow ? 1 : 0;
    const char *reason = breaker_burst_crossed(breaker, record);
    if (reason == NULL) {
        return;
    }
    char text[BREAKER_REASON_MAX];
    snprintf(text, sizeof(text), "%s on one core: %" PRIu64 " failed, %" PRIu64 " slow of %" PRIu64,
             reason, record->failures, record->slow, record->calls);
    breaker_transition(set, core, breaker, word, BREAKER_OPEN, now_ns, text);
}

void breaker_release(struct breaker_set *set, uint32_t core, uint32_t id,
                     enum breaker_permit permit, bool failed, uint64_t duration_ns,
                     uint64_t now_ns)
{
    struct breaker *breaker = breaker_of(set, id);
    struct breaker_core *record = breaker_core_of(set, core, id);
    RM_ASSERT(permit == BREAKER_PERMITTED || permit == BREAKER_PROBE);
    if (permit == BREAKER_PROBE) {
        breaker_release_probe(set, core, breaker, record, failed, now_ns);
        return;
    }
    bool slow = breaker->slow_ns != 0 && duration_ns >= breaker->slow_ns;
    breaker_release_permitted(set, core, breaker, record, failed, slow, now_ns);
}

/* Adds this core's counts of the current closed episode to the breaker's pending counts.
 * Calls go last so that a fold never sees calls whose failures it has not seen yet. */
static void breaker_publish(struct breaker_set *set, uint32_t core)
{
    for (uint32_t id = 0; id < set->count; id++) {
        struct breaker_core *record = breaker_core_of(set, core, id);
        if (record->calls == 0) {
            continue;
        }
        struct breaker *breaker = &set->breakers[id];
        uint64_t word = breaker_load(&breaker->state);
        if (breaker_word_state(word) == BREAKER_CLOSED &&
            breaker_word_generation(word) == record->generation) {
            if (record->failures != 0) {
                ck_pr_faa_64(&breaker->pending_failures, record->failures);
            }
            if (record->slow != 0) {
                ck_pr_faa_64(&breaker->pending_slow, record->slow);
            }
            ck_pr_faa_64(&breaker->pending_calls, record->calls);
        }
        record->calls = 0;
        record->failures = 0;
        record->slow = 0;
    }
}

static void breaker_window_store(struct breaker *breaker)
{
    const struct breaker_window *window = &breaker->window;
    RM_ASSERT(window->failures <= window->calls);
    RM_ASSERT(window->slow <= window->calls);
    breaker_store(&breaker->view_calls, window->calls);
    breaker_store(&breaker->view_failures, window->failures);
    breaker_store(&breaker->view_slow, window->slow);
    breaker_store(&breaker->view_generation, window->generation);
}

/* Empties the buckets; the carry and the generation stay. */
static void breaker_window_clear(struct breaker_window *window)
{
    memset(window->buckets, 0, sizeof(window->buckets));
    window->head = 0;
    window->tail = 0;
    window->calls = 0;
    window->failures = 0;
    window->slow = 0;
}

/* A new closed episode: nothing from before it counts, not even the carry. */
static void breaker_window_reset(struct breaker_window *window, uint64_t generation)
{
    RM_ASSERT(generation != window->generation);
    breaker_window_clear(window);
    window->carry_failures = 0;
    window->carry_slow = 0;
    window->generation = generation;
}

static void breaker_bucket_remove(struct breaker_window *window, struct breaker_bucket *bucket,
                                  uint64_t calls)
{
    RM_ASSERT(calls <= bucket->calls);
    uint64_t failures = breaker_share(bucket->failures, calls, bucket->calls);
    uint64_t slow = breaker_share(bucket->slow, calls, bucket->calls);
    bucket->calls -= calls;
    bucket->failures -= failures;
    bucket->slow -= slow;
    window->calls -= calls;
    window->failures -= failures;
    window->slow -= slow;
    RM_ASSERT(bucket->failures <= bucket->calls);
    RM_ASSERT(bucket->slow <= bucket->calls);
}

/* Drops the oldest calls (the oldest bucket's share of them) beyond window_calls. */
static void breaker_window_trim(struct breaker_window *window, uint64_t window_calls)
{
    for (uint32_t step = 0; step < BREAKER_BUCKETS && window->calls > window_calls; step++) {
        struct breaker_bucket *bucket = &window->buckets[window->tail];
        uint64_t excess = window->calls - window_calls;
        breaker_bucket_remove(window, bucket, excess < bucket->calls ? excess : bucket->calls);
        if (bucket->calls == 0 && window->tail != window->head) {
            window->tail = (window->tail + 1) % BREAKER_BUCKETS;
        }
    }
    RM_ASSERT(window->calls <= window_calls);
}

/* Buckets hold at most bucket_calls = ceil(window_calls / (BREAKER_BUCKETS - 1)) calls, so
 * the buckets other than the head always have room for the whole window and the head never
 * advances onto calls still in it. Calls within one batch keep only their proportions. */
static void breaker_window_add_count(struct breaker *breaker, uint64_t calls, uint64_t failures,
                                     uint64_t slow)
{
    struct breaker_window *window = &breaker->window;
    uint64_t window_calls = breaker->config.window_calls;
    if (calls >= window_calls) {
        failures = breaker_share(failures, window_calls, calls);
        slow = breaker_share(slow, window_calls, calls);
        calls = window_calls;
        breaker_window_clear(window);
    }
    for (uint32_t step = 0; step <= BREAKER_BUCKETS && calls > 0; step++) {
        struct breaker_bucket *head = &window->buckets[window->head];
        RM_ASSERT(head->calls < breaker->bucket_calls);
        uint64_t room = breaker->bucket_calls - head->calls;
        uint64_t taken = calls < room ? calls : room;
        uint64_t taken_failures = breaker_share(failures, taken, calls);
        uint64_t taken_slow = breaker_share(slow, taken, calls);
        *head = (struct breaker_bucket){head->calls + taken, head->failures + taken_failures,
                                        head->slow + taken_slow, 0};
        window->calls += taken;
        window->failures += taken_failures;
        window->slow += taken_slow;
        calls -= taken;
        failures -= taken_failures;
        slow -= taken_slow;
        breaker_window_trim(window, window_calls);
        if (head->calls == breaker->bucket_calls) {
            window->head = (window->head + 1) % BREAKER_BUCKETS;
            RM_ASSERT(window->buckets[window->head].calls == 0);
        }
    }
    RM_ASSERT(calls == 0);
}

/* Buckets are epochs of bucket_ns; the window is the last bucket_span of them. */
static void breaker_window_add_time(struct breaker *breaker, uint64_t now_ns, uint64_t calls,
                                    uint64_t failures, uint64_t slow)
{
    struct breaker_window *window = &breaker->window;
    uint64_t epoch = now_ns / breaker->bucket_ns;
    epoch = epoch > window->epoch_latest ? epoch : window->epoch_latest;
    window->epoch_latest = epoch;
    for (uint32_t index = 0; index < BREAKER_BUCKETS; index++) {
        struct breaker_bucket *bucket = &window->buckets[index];
        if (bucket->calls != 0 && bucket->epoch + breaker->bucket_span <= epoch) {
            breaker_bucket_remove(window, bucket, bucket->calls);
        }
    }
    struct breaker_bucket *current = &window->buckets[epoch % BREAKER_BUCKETS];
    RM_ASSERT(current->calls == 0 || current->epoch == epoch);
    *current = (struct breaker_bucket){current->calls + calls, current->failures + failures,
                                       current->slow + slow, epoch};
    window->calls += calls;
    window->failures += failures;
    window->slow += slow;
}

#ifdef RM_DEBUG
static bool breaker_window_sums_match(const struct breaker_window *window)
{
    uint64_t calls = 0;
    uint64_t failures = 0;
    uint64_t slow = 0;
    for (uint32_t index = 0; index < BREAKER_BUCKETS; index++) {
        calls += window->buckets[index].calls;
        failures += window->buckets[index].failures;
        slow += window->buckets[index].slow;
    }
    return calls == window->calls && failures == window->failures && slow == window->slow;
}
#endif

/* Takes the pending counts into the window and decides. Cores add calls after failures and
 * this takes calls first, so failures may come a fold before their calls: they wait in the
 * carry (never more failures than calls in a bucket). The state is read after the take: a
 * closing core empties the pending counts before its CAS, so counts taken while the word
 * says closed belong to that closed episode. */
static void breaker_fold(struct breaker_set *set, uint32_t core, struct breaker *breaker,
                         uint64_t now_ns)
{
    struct breaker_window *window = &breaker->window;
    uint64_t calls = breaker_exchange(&breaker->pending_calls, 0);
    uint64_t failures = breaker_exchange(&breaker->pending_failures, 0);
    uint64_t slow = breaker_exchange(&breaker->pending_slow, 0);
    ck_pr_fence_load();
    uint64_t word = breaker_load(&breaker->state);
    enum breaker_state state = breaker_word_state(word);
    if (state != BREAKER_CLOSED) {
        if (state == BREAKER_OPEN && breaker_open_elapsed(breaker, word, now_ns)) {
            breaker_transition(set, core, breaker, word, BREAKER_HALF_OPEN, now_ns,
                               "open_ms elapsed");
        }
        return; /* counts of a window that is over */
    }
    if (breaker_word_generation(word) != window->generation) {
        breaker_window_reset(window, breaker_word_generation(word));
    }
    failures += window->carry_failures;
    slow += window->carry_slow;
    window->carry_failures = failures > calls ? failures - calls : 0;
    window->carry_slow = slow > calls ? slow - calls : 0;
    failures -= window->carry_failures;
    slow -= window->carry_slow;
    RM_ASSERT(failures <= calls);
    RM_ASSERT(slow <= calls);
    if (breaker->config.window == CONFIG_WINDOW_COUNT) {
        breaker_window_add_count(breaker, calls, failures, slow);
    } else {
        breaker_window_add_time(breaker, now_ns, calls, failures, slow);
    }
    RM_DEBUG_ASSERT(breaker_window_sums_match(window));
    breaker_window_store(breaker);
    const char *reason = breaker_crossed(breaker, window->calls, window->failures, window->slow);
    if (reason != NULL) {
        char text[BREAKER_REASON_MAX];
        snprintf(text, sizeof(text), "%s: %" PRIu64 " failed, %" PRIu64 " slow of %" PRIu64,
                 reason, window->failures, window->slow, window->calls);
        breaker_transition(set, core, breaker, word, BREAKER_OPEN, now_ns, text);
    }
}

void breaker_reconcile(struct breaker_set *set, uint32_t core, uint64_t now_ns)
{
    RM_ASSERT(set != NULL);
    RM_ASSERT(core < set->cores);
    breaker_publish(set, core);
    uint64_t deadline = breaker_load(&set->fold_deadline_ns);
    if (now_ns < deadline || !ck_pr_cas_64(&set->fold_deadline_ns, deadline, BREAKER_FOLD_BUSY)) {
        return;
    }
    for (uint32_t id = 0; id < set->count; id++) {
        breaker_fold(set, core, &set->breakers[id], now_ns);
    }
    /* Exchanged rather than stored, to check that no other core folded meanwhile. */
    uint64_t busy = breaker_exchange(&set->fold_deadline_ns, now_ns + set->reconcile_ns);
    RM_ASSERT(busy == BREAKER_FOLD_BUSY);
}

struct breaker_set *breaker_set_create(uint32_t cores, uint32_t reconcile_ms,
                                       struct metrics_registry *metrics)
{
    RM_ASSERT(cores >= 1);
    RM_ASSERT(cores <= BREAKER_CORES_MAX);
    RM_ASSERT(reconcile_ms >= 1);
    RM_ASSERT(metrics != NULL);
    void *allocation = NULL;
    struct breaker_set *set = breaker_aligned_calloc(sizeof(*set), &allocation);
    if (set == NULL) {
        return NULL;
    }
    set->allocation = allocation;
    size_t records = (size_t)cores * BREAKER_MAX * sizeof(struct breaker_core);
    set->records = breaker_aligned_calloc(records, &set->records_allocation);
    if (set->records == NULL) {
        rm_free(allocation);
        return NULL;
    }
    set->cores = cores;
    set->reconcile_ns = reconcile_ms * BREAKER_NS_PER_MS;
    set->metrics = metrics;
    return set;
}

void breaker_set_destroy(struct breaker_set *set)
{
    if (set == NULL) {
        return;
    }
    RM_ASSERT(set->count <= BREAKER_MAX);
    rm_free(set->records_allocation);
    rm_free(set->allocation);
}

static bool breaker_metrics_register(struct breaker_set *set, struct breaker *breaker)
{
    int state = metrics_family(set->metrics, "breaker_state",
                               "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
                               METRICS_GAUGE);
    int transitions = metrics_family(set->metrics, "breaker_transitions_total",
                                     "Circuit breaker transitions, by the state entered.",
                                     METRICS_COUNTER);
    if (state < 0 || transitions < 0) {
        return false;
    }
    /* The longest labels, with every character of the name escaped, still fit. */
    _Static_assert(sizeof("kind=\"\",name=\"\",to=\"half-open\"") + BREAKER_KIND_MAX +
                           2 * CONFIG_NAME_MAX <= METRICS_LABELS_MAX,
                   "breaker labels fit");
    char name[2 * CONFIG_NAME_MAX];
    metrics_label_escape(name, sizeof(name), breaker->name, strlen(breaker->name));
    char labels[METRICS_LABELS_MAX];
    snprintf(labels, sizeof(labels), "kind=\"%s\",name=\"%s\"", breaker->kind, name);
    breaker->series_state = metrics_series(set->metrics, state, labels);
    for (uint32_t to = BREAKER_CLOSED; to <= BREAKER_OPEN; to++) {
        char labels_to[METRICS_LABELS_MAX];
        snprintf(labels_to, sizeof(labels_to), "kind=\"%s\",name=\"%s\",to=\"%s\"",
                 breaker->kind, name, breaker_state_names[to]);
        breaker->series_transitions[to] = metrics_series(set->metrics, transitions, labels_to);
        if (breaker->series_transitions[to] < 0) {
            return false;
        }
    }
    return breaker->series_state >= 0;
}

static void breaker_config_check(const struct config_breaker *config)
{
    RM_ASSERT(config->window == CONFIG_WINDOW_COUNT || config->window == CONFIG_WINDOW_TIME);
    RM_ASSERT(config->failure_percent >= 1);
    RM_ASSERT(config->failure_percent <= 100);
    RM_ASSERT(config->slow_percent >= 1);
    RM_ASSERT(config->slow_percent <= 100);
    RM_ASSERT(config->open_ms >= 1);
    RM_ASSERT(config->probes >= 1);
    RM_ASSERT(config->probes <= BREAKER_PROBES_MAX);
}

/* Bucket sizes: see breaker_window_add_count and breaker_window_add_time. */
static void breaker_window_setup(struct breaker *breaker, uint64_t reconcile_ns)
{
    const struct config_breaker *config = &breaker->config;
    if (config->window == CONFIG_WINDOW_COUNT) {
        RM_ASSERT(config->window_calls >= 1);
        breaker->bucket_calls = (config->window_calls + BREAKER_BUCKETS - 2) /
                                (BREAKER_BUCKETS - 1);
        return;
    }
    RM_ASSERT(config->window_ms >= 1);
    uint64_t window_ns = config->window_ms * BREAKER_NS_PER_MS;
    uint64_t bucket_ns = window_ns / BREAKER_BUCKETS;
    breaker->bucket_ns = bucket_ns > reconcile_ns ? bucket_ns : reconcile_ns;
    breaker->bucket_span = (window_ns + breaker->bucket_ns - 1) / breaker->bucket_ns;
    RM_ASSERT(breaker->bucket_span >= 1);
    RM_ASSERT(breaker->bucket_span <= BREAKER_BUCKETS);
}

int breaker_add(struct breaker_set *set, const char *kind, const char *name,
                const struct config_breaker *config)
{
    RM_ASSERT(set != NULL);
    RM_ASSERT(kind != NULL);
    RM_ASSERT(name != NULL);
    RM_ASSERT(config != NULL);
    RM_ASSERT(strcmp(kind, "tool") == 0 || strcmp(kind, "endpoint") == 0);
    RM_ASSERT(strlen(name) < CONFIG_NAME_MAX);
    breaker_config_check(config);
    if (set->count == BREAKER_MAX) {
        return -ENOSPC;
    }
    struct breaker *breaker = &set->breakers[set->count];
    memset(breaker, 0, sizeof(*breaker));
    breaker->config = *config;
    breaker->slow_ns = config->slow_call_ms * BREAKER_NS_PER_MS;
    breaker->open_ns = config->open_ms * BREAKER_NS_PER_MS;
    breaker_window_setup(breaker, set->reconcile_ns);
    snprintf(breaker->kind, sizeof(breaker->kind), "%s", kind);
    snprintf(breaker->name, sizeof(breaker->name), "%s", name);
    if (!breaker_metrics_register(set, breaker)) {
        return -ENOSPC;
    }
    return (int)set->count++;
}

uint32_t breaker_count(const struct breaker_set *set)
{
    RM_ASSERT(set != NULL);
    RM_ASSERT(set->count <= BREAKER_MAX);
    return set->count;
}

void breaker_view(struct breaker_set *set, uint32_t id, struct breaker_view *out)
{
    struct breaker *breaker = breaker_of(set, id);
    RM_ASSERT(out != NULL);
    uint64_t word = breaker_load(&breaker->state);
    enum breaker_state state = breaker_word_state(word);
    /* A closed episode the folder has not seen yet has an empty window. */
    bool window_current = state != BREAKER_CLOSED ||
                          breaker_load(&breaker->view_generation) ==
                              breaker_word_generation(word);
    *out = (struct breaker_view){
        .kind = breaker->kind,
        .name = breaker->name,
        .state = state,
        .window_calls = window_current ? breaker_load(&breaker->view_calls) : 0,
        .window_failures = window_current ? breaker_load(&breaker->view_failures) : 0,
        .window_slow = window_current ? breaker_load(&breaker->view_slow) : 0,
        .opened_at_ns = breaker_load(&breaker->opened_at_ns),
        .open_until_ns = state == BREAKER_OPEN ? breaker_load(&breaker->open_until_ns) : 0,
        .probes_left = state == BREAKER_HALF_OPEN
                           ? breaker->config.probes - breaker_word_taken(word)
                           : 0,
        .transitions = breaker_word_generation(word),
    };
}

const char *breaker_state_name(enum breaker_state state)
{
    RM_ASSERT(state <= BREAKER_OPEN);
    RM_ASSERT(RM_ARRAY_LENGTH(breaker_state_names) == BREAKER_OPEN + 1);
    return breaker_state_names[state];
}
