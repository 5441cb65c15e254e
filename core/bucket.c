#include "core/bucket.h"

#include <ck_pr.h>
#include <errno.h>
#include <stddef.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/rm_assert.h"

#define BUCKET_CACHE_LINE 64
#define BUCKET_CORES_MAX 64 /* REACTOR_MAX */
/* Amounts, rates and corrections above this are programmer errors (the configuration caps
 * tokens per minute at 10^12); the bound keeps every sum of them far from int64 overflow. */
#define BUCKET_AMOUNT_MAX (1ull << 48)
/* Refill is counted in token-nanoseconds: one token per minute for a nanosecond. A token is
 * added for every BUCKET_TOKEN_NS of them, and the remainder is carried to the next refill,
 * so the rate never drifts however the refills are spaced. */
#define BUCKET_TOKEN_NS 60000000000ull
#define BUCKET_NS_PER_MS 1000000ull
#define BUCKET_RECONCILE_MS_MAX 60000u
/* deadline_ns while one core is refilling: the others skip the refill rather than wait. */
#define BUCKET_REFILLING UINT64_MAX
/* refilled_ns before the first refill step: the refill clock starts at the first time a core
 * reconciles or takes, since bucket_add has no time and the bucket starts full. */
#define BUCKET_UNSTARTED UINT64_MAX

/* Signed words (pool, shares) are kept in uint64_t words, as ck_pr wants them. */
struct bucket {
    /* Read by every take; written only by pauses (and cleared once a pause is over). */
    uint64_t per_minute;
    uint64_t burst;
    uint64_t paused_until_ns;  /* 0 when not paused */
    uint64_t restart_ns;       /* latest until of any pause: refill never counts time before */
    uint64_t pause_generation; /* counts pauses; cores and the refill compare their copies */
    /* Moved by takes their share cannot pay, by reconciles and by the refill. */
    _Alignas(BUCKET_CACHE_LINE) uint64_t pool; /* int64_t, within [0, burst] */
    uint64_t deadline_ns;                      /* next tick's refill, or BUCKET_REFILLING */
    /* Written only by the core that holds deadline_ns at BUCKET_REFILLING; the others read
     * refilled_ns and carry only to estimate what the next refill will bring. */
    uint64_t refilled_ns; /* refill is counted up to here */
    uint64_t carry;       /* token-nanoseconds short of the next whole token */
    uint64_t refill_pause_generation;
};

/* One core's state for one bucket, on a line of its own: only that core writes it. */
struct bucket_share {
    uint64_t held;             /* int64_t: tokens this core holds; negative is debt */
    uint64_t spent;            /* net tokens spent on this core since start (wraps; summed) */
    uint64_t taken;            /* tokens taken since the last reconcile: next tick's demand */
    uint64_t pause_generation; /* the last pause whose share drop this core has done */
} __attribute__((aligned(BUCKET_CACHE_LINE)));

struct bucket_set {
    uint32_t cores;
    uint32_t count; /* written by bucket_add before the reactors start */
    uint64_t reconcile_ns;
    void *allocation;
    struct bucket *buckets;       /* BUCKET_MAX */
    struct bucket_share *shares;  /* cores * BUCKET_MAX, core after core */
};

_Static_assert(sizeof(struct bucket) == 2 * BUCKET_CACHE_LINE, "read-mostly and hot lines");
_Static_assert(sizeof(struct bucket_share) == BUCKET_CACHE_LINE, "a share per line");
_Static_assert(BUCKET_MAX <= INT32_MAX, "ids are returned as int");
_Static_assert(BUCKET_AMOUNT_MAX * 4 < (uint64_t)INT64_MAX, "sums of amounts fit int64");

/* ---- words ---- */

static uint64_t bucket_load(const uint64_t *word) { return rm_atomic_load_64(word); }

static void bucket_store(uint64_t *word, uint64_t value) { rm_atomic_store_64(word, value); }

static int64_t bucket_load_signed(const uint64_t *word)
{
    return (int64_t)bucket_load(word);
}

static void bucket_store_signed(uint64_t *word, int64_t value)
{
    bucket_store(word, (uint64_t)value);
}

/* Raises *word to value unless it is already at least that. */
static void bucket_store_max(uint64_t *word, uint64_t value)
{
    uint64_t seen = bucket_load(word);
    while (seen < value) {
        if (ck_pr_cas_64_value(word, seen, value, &seen)) {
            return;
        }
    }
}

static struct bucket *bucket_get(struct bucket_set *set, uint32_t id)
{
    RM_ASSERT(set != NULL);
    RM_ASSERT(id < set->count);
    return &set->buckets[id];
}

static struct bucket_share *bucket_share_get(struct bucket_set *set, uint32_t core, uint32_t id)
{
    RM_ASSERT(core < set->cores);
    RM_ASSERT(id < set->count);
    return &set->shares[(size_t)core * BUCKET_MAX + id];
}

/* The end of the pause in force at now, or 0. */
static uint64_t bucket_paused_until(struct bucket *bucket, uint64_t now_ns)
{
    uint64_t until = bucket_load(&bucket->paused_until_ns);
    return now_ns < until ? until : 0;
}

/* ---- the pool ---- */

/* Adds tokens to the pool up to burst; what does not fit is gone, as in any token bucket. */
static void bucket_pool_add(struct bucket *bucket, uint64_t tokens)
{
    RM_ASSERT(bucket->per_minute != 0); /* unlimited buckets have no pool */
    uint64_t pool = bucket_load(&bucket->pool);
    for (;;) {
        RM_ASSERT(pool <= bucket->burst);
        uint64_t room = bucket->burst - pool;
        uint64_t added = tokens < room ? tokens : room;
        if (added == 0 || ck_pr_cas_64_value(&bucket->pool, pool, pool + added, &pool)) {
            return;
        }
    }
}

/* Empties the pool: ck_pr_fas_64, but starting from bucket_load rather than a volatile load. */
static void bucket_pool_drain(struct bucket *bucket)
{
    RM_ASSERT(bucket->per_minute != 0);
    uint64_t pool = bucket_load(&bucket->pool);
    while (pool != 0) {
        if (ck_pr_cas_64_value(&bucket->pool, pool, 0, &pool)) {
            return;
        }
    }
}

/* Moves up to wanted tokens out of the pool; returns how many. */
static int64_t bucket_pool_take_up_to(struct bucket *bucket, int64_t wanted)
{
    RM_ASSERT(wanted > 0);
    uint64_t pool = bucket_load(&bucket->pool);
    for (;;) {
        RM_ASSERT(pool <= bucket->burst);
        int64_t got = (int64_t)pool < wanted ? (int64_t)pool : wanted;
        if (got == 0 || ck_pr_cas_64_value(&bucket->pool, pool, pool - (uint64_t)got, &pool)) {
            return got;
        }
    }
}

/* The pool level at which a take of amount succeeds for a core holding held: the whole
 * amount, or for an amount above burst, a full bucket (counting this core's share). */
static int64_t bucket_pool_needed(const struct bucket *bucket, int64_t held, uint64_t amount)
{
    int64_t whole = (int64_t)amount - held;
    if (amount <= bucket->burst) {
        return whole;
    }
    int64_t full = (int64_t)bucket->burst - (held > 0 ? held : 0);
    RM_ASSERT(full <= whole);
    return full;
}

/* The take when the core's share is short: one CAS loop on the pool. An amount above burst
 * takes what there is and leaves the core in debt for the rest. */
static bool bucket_take_pool(struct bucket *bucket, struct bucket_share *share, uint64_t amount)
{
    int64_t held = bucket_load_signed(&share->held);
    RM_ASSERT(held < (int64_t)amount);
    int64_t needed = bucket_pool_needed(bucket, held, amount);
    int64_t whole = (int64_t)amount - held;
    uint64_t pool = bucket_load(&bucket->pool);
    for (;;) {
        RM_ASSERT(pool <= bucket->burst);
        if ((int64_t)pool < needed) {
            return false;
        }
        int64_t got = (int64_t)pool < whole ? (int64_t)pool : whole;
        if (ck_pr_cas_64_value(&bucket->pool, pool, pool - (uint64_t)got, &pool)) {
            bucket_store_signed(&share->held, held + got - (int64_t)amount);
            return true;
        }
    }
}

/* ---- refill ---- */

/* Token-nanoseconds the next refill would count at now (carry included): an estimate for
 * cores that do not hold the refill, read from words the refilling core may be changing. */
static unsigned __int128 bucket_refill_progress(const struct bucket *bucket, uint64_t now_ns)
{
    uint64_t refilled = bucket_load(&bucket->refilled_ns);
    uint64_t carry = bucket_load(&bucket->carry);
    uint64_t restart = bucket_load(&bucket->restart_ns);
    if (refilled == BUCKET_UNSTARTED) {
        return 0;
    }
    if (restart > refilled) { /* a pause the refill has not applied yet */
        refilled = restart;
        carry = 0;
    }
    RM_ASSERT(carry < BUCKET_TOKEN_NS);
    if (now_ns <= refilled) {
        return carry;
    }
    return (unsigned __int128)bucket->per_minute * (now_ns - refilled) + carry;
}

/* Whether the pool plus the refill progress reaches needed tokens. */
static bool bucket_refill_reaches(int64_t pool, int64_t needed, unsigned __int128 progress)
{
    RM_ASSERT(pool >= 0);
    if (pool >= needed) {
        return true;
    }
    return progress >= (unsigned __int128)(needed - pool) * BUCKET_TOKEN_NS;
}

/* A pause the refill has not applied yet: refill restarts from zero at its until, and the
 * pool is emptied again of what reached it after the pause emptied it (a refill or a give-back
 * racing the pause). Returns the new refilled_ns. */
static uint64_t bucket_refill_apply_pause(struct bucket *bucket, uint64_t refilled)
{
    uint64_t generation = bucket_load(&bucket->pause_generation);
    if (generation == bucket->refill_pause_generation) {
        return refilled;
    }
    bucket->refill_pause_generation = generation;
    ck_pr_fence_load(); /* bucket_pause raised restart_ns before the generation */
    bucket_pool_drain(bucket);
    bucket_store(&bucket->carry, 0);
    uint64_t restart = bucket_load(&bucket->restart_ns);
    return restart > refilled ? restart : refilled;
}

/* Only with deadline_ns held at BUCKET_REFILLING. */
static void bucket_refill_locked(struct bucket *bucket, uint64_t now_ns)
{
    RM_ASSERT(bucket_load(&bucket->deadline_ns) == BUCKET_REFILLING);
    uint64_t refilled = bucket->refilled_ns;
    if (refilled == BUCKET_UNSTARTED) {
        RM_ASSERT(bucket->carry == 0);
        refilled = now_ns;
    }
    refilled = bucket_refill_apply_pause(bucket, refilled);
    if (now_ns > refilled) {
        unsigned __int128 progress =
            (unsigned __int128)bucket->per_minute * (now_ns - refilled) + bucket->carry;
        unsigned __int128 tokens = progress / BUCKET_TOKEN_NS;
        bucket_store(&bucket->carry, (uint64_t)(progress % BUCKET_TOKEN_NS));
        bucket_pool_add(bucket, tokens < bucket->burst ? (uint64_t)tokens : bucket->burst);
        refilled = now_ns;
    }
    bucket_store(&bucket->refilled_ns, refilled);
    RM_ASSERT(bucket->carry < BUCKET_TOKEN_NS);
}

/* One refill step, by whichever core wins the CAS on the deadline: at the tick (early false)
 * or before it, for a take the refill due by now would satisfy. Never waits: a core that
 * finds another refilling goes on without. The release is a CAS too, so that the next
 * refiller's CAS orders it after everything this one wrote. */
static void bucket_refill_try(struct bucket_set *set, struct bucket *bucket, uint64_t now_ns,
                              bool early)
{
    uint64_t deadline = bucket_load(&bucket->deadline_ns);
    if (deadline == BUCKET_REFILLING || (!early && now_ns < deadline)) {
        return;
    }
    if (!ck_pr_cas_64(&bucket->deadline_ns, deadline, BUCKET_REFILLING)) {
        return;
    }
    ck_pr_fence_lock();
    bucket_refill_locked(bucket, now_ns);
    ck_pr_fence_unlock();
    uint64_t next = now_ns + set->reconcile_ns;
    RM_ASSERT(next != BUCKET_REFILLING);
    bool released = ck_pr_cas_64(&bucket->deadline_ns, BUCKET_REFILLING, next);
    RM_ASSERT(released);
}

/* ---- set ---- */

struct bucket_set *bucket_set_create(uint32_t cores, uint32_t reconcile_ms)
{
    RM_ASSERT(cores >= 1 && cores <= BUCKET_CORES_MAX);
    RM_ASSERT(reconcile_ms >= 1 && reconcile_ms <= BUCKET_RECONCILE_MS_MAX);
    struct bucket_set *set = rm_calloc(1, sizeof(*set));
    if (set == NULL) {
        return NULL;
    }
    size_t bucket_bytes = BUCKET_MAX * sizeof(struct bucket);
    size_t share_bytes = (size_t)cores * BUCKET_MAX * sizeof(struct bucket_share);
    /* The allocator aligns to 16 bytes; both arrays want cache lines. */
    set->allocation = rm_calloc(1, bucket_bytes + share_bytes + BUCKET_CACHE_LINE);
    if (set->allocation == NULL) {
        rm_free(set);
        return NULL;
    }
    uintptr_t base = (uintptr_t)set->allocation;
    base = (base + BUCKET_CACHE_LINE - 1) & ~(uintptr_t)(BUCKET_CACHE_LINE - 1);
    set->buckets = (struct bucket *)base;
    set->shares = (struct bucket_share *)(base + bucket_bytes);
    set->cores = cores;
    set->reconcile_ns = reconcile_ms * BUCKET_NS_PER_MS;
    RM_ASSERT((uintptr_t)set->shares % BUCKET_CACHE_LINE == 0);
    return set;
}

void bucket_set_destroy(struct bucket_set *set)
{
    if (set == NULL) {
        return;
    }
    RM_ASSERT(set->allocation != NULL);
    RM_ASSERT(set->count <= BUCKET_MAX);
    rm_free(set->allocation);
    rm_free(set);
}

int bucket_add(struct bucket_set *set, uint64_t per_minute, uint64_t burst)
{
    RM_ASSERT(set != NULL);
    RM_ASSERT(per_minute <= BUCKET_AMOUNT_MAX);
    RM_ASSERT(burst <= BUCKET_AMOUNT_MAX);
    if (set->count == BUCKET_MAX) {
        return -ENOSPC;
    }
    if (burst == 0) {
        burst = per_minute / 60 > 0 ? per_minute / 60 : 1;
    }
    struct bucket *bucket = &set->buckets[set->count];
    bucket->per_minute = per_minute;
    bucket->burst = burst;
    bucket->pool = per_minute == 0 ? 0 : burst;
    bucket->refilled_ns = BUCKET_UNSTARTED;
    return (int)set->count++;
}

/* ---- per core ---- */

bool bucket_take(struct bucket_set *set, uint32_t core, uint32_t id, uint64_t amount,
                 uint64_t now_ns)
{
    struct bucket *bucket = bucket_get(set, id);
    struct bucket_share *share = bucket_share_get(set, core, id);
    RM_ASSERT(amount <= BUCKET_AMOUNT_MAX);
    if (bucket_paused_until(bucket, now_ns) != 0) {
        return false;
    }
    if (bucket->per_minute != 0) {
        int64_t held = (int64_t)share->held;
        if (held >= (int64_t)amount) {
            /* The fast path: this core's own line, no atomic operation. */
            bucket_store_signed(&share->held, held - (int64_t)amount);
        } else if (!bucket_take_pool(bucket, share, amount)) {
            int64_t needed = bucket_pool_needed(bucket, held, amount);
            int64_t pool = bucket_load_signed(&bucket->pool);
            if (bucket_load(&bucket->refilled_ns) != BUCKET_UNSTARTED &&
                !bucket_refill_reaches(pool, needed, bucket_refill_progress(bucket, now_ns))) {
                return false;
            }
            bucket_refill_try(set, bucket, now_ns, true);
            if (!bucket_take_pool(bucket, share, amount)) {
                return false;
            }
        }
    }
    share->taken += amount;
    bucket_store(&share->spent, share->spent + amount);
    return true;
}

void bucket_adjust(struct bucket_set *set, uint32_t core, uint32_t id, int64_t delta)
{
    struct bucket *bucket = bucket_get(set, id);
    struct bucket_share *share = bucket_share_get(set, core, id);
    RM_ASSERT(delta <= (int64_t)BUCKET_AMOUNT_MAX);
    RM_ASSERT(delta >= -(int64_t)BUCKET_AMOUNT_MAX);
    if (bucket->per_minute != 0) {
        bucket_store_signed(&share->held, (int64_t)share->held - delta);
        if (delta > 0) {
            share->taken += (uint64_t)delta; /* the next tick's share should cover it */
        }
    }
    bucket_store(&share->spent, share->spent + (uint64_t)delta);
}

int64_t bucket_available(struct bucket_set *set, uint32_t core, uint32_t id, uint64_t now_ns)
{
    struct bucket *bucket = bucket_get(set, id);
    struct bucket_share *share = bucket_share_get(set, core, id);
    if (bucket_paused_until(bucket, now_ns) != 0) {
        return 0;
    }
    if (bucket->per_minute == 0) {
        return INT64_MAX;
    }
    uint64_t pool = bucket_load(&bucket->pool);
    RM_ASSERT(pool <= bucket->burst);
    unsigned __int128 due = bucket_refill_progress(bucket, now_ns) / BUCKET_TOKEN_NS;
    unsigned __int128 filled = pool + due;
    if (filled > bucket->burst) {
        filled = bucket->burst;
    }
    return (int64_t)share->held + (int64_t)filled;
}

uint64_t bucket_wait_ns(struct bucket_set *set, uint32_t core, uint32_t id, uint64_t amount,
                        uint64_t now_ns)
{
    struct bucket *bucket = bucket_get(set, id);
    struct bucket_share *share = bucket_share_get(set, core, id);
    RM_ASSERT(amount <= BUCKET_AMOUNT_MAX);
    uint64_t until = bucket_paused_until(bucket, now_ns);
    uint64_t delay = until == 0 ? 0 : until - now_ns;
    if (bucket->per_minute == 0) {
        return delay;
    }
    int64_t held = (int64_t)share->held;
    int64_t pool = 0;
    unsigned __int128 progress = 0;
    if (until != 0) {
        /* The pool and shares are emptied and refill restarts from zero when it ends. */
        held = held < 0 ? held : 0;
    } else {
        pool = bucket_load_signed(&bucket->pool);
        progress = bucket_refill_progress(bucket, now_ns);
    }
    int64_t needed = bucket_pool_needed(bucket, held, amount);
    if (bucket_refill_reaches(pool, needed, progress)) {
        return delay;
    }
    unsigned __int128 missing = (unsigned __int128)(needed - pool) * BUCKET_TOKEN_NS - progress;
    unsigned __int128 wait = delay + (missing + bucket->per_minute - 1) / bucket->per_minute;
    return wait < UINT64_MAX ? (uint64_t)wait : UINT64_MAX;
}

void bucket_pause(struct bucket_set *set, uint32_t core, uint32_t id, uint64_t until_ns)
{
    struct bucket *bucket = bucket_get(set, id);
    struct bucket_share *share = bucket_share_get(set, core, id);
    /* restart_ns before the generation: a refill that sees the pause sees where it ends. */
    bucket_store_max(&bucket->paused_until_ns, until_ns);
    bucket_store_max(&bucket->restart_ns, until_ns);
    ck_pr_fence_atomic();
    share->pause_generation = ck_pr_faa_64(&bucket->pause_generation, 1) + 1;
    if (bucket->per_minute != 0) {
        bucket_pool_drain(bucket);
        if ((int64_t)share->held > 0) {
            bucket_store_signed(&share->held, 0); /* debt stays: it was spent */
        }
    }
    RM_ASSERT(bucket_load(&bucket->restart_ns) >= until_ns);
}

/* Once per pause, drops what this core holds (the pausing core did so at once). Returns
 * whether the bucket is paused now; clears the pause once it is over, for bucket_view. */
static bool bucket_reconcile_pause(struct bucket *bucket, struct bucket_share *share,
                                   uint64_t now_ns)
{
    uint64_t generation = bucket_load(&bucket->pause_generation);
    if (generation != share->pause_generation) {
        share->pause_generation = generation;
        if ((int64_t)share->held > 0) {
            bucket_store_signed(&share->held, 0);
        }
    }
    uint64_t until = bucket_load(&bucket->paused_until_ns);
    if (until == 0) {
        return false;
    }
    if (now_ns < until) {
        return true;
    }
    /* Fails harmlessly when a newer pause has just raised it. */
    ck_pr_cas_64(&bucket->paused_until_ns, until, 0);
    return false;
}

/* Keeps this core's share at its demand of the last tick: gives back the rest, so that an
 * idle core's tokens are not lost, and tops up (debt first) from the pool. */
static void bucket_reconcile_one(struct bucket_set *set, struct bucket *bucket,
                                 struct bucket_share *share, uint64_t now_ns)
{
    bool paused = bucket_reconcile_pause(bucket, share, now_ns);
    uint64_t taken = share->taken;
    share->taken = 0;
    if (bucket->per_minute == 0) {
        return;
    }
    bucket_refill_try(set, bucket, now_ns, false);
    int64_t demand = (int64_t)(taken < bucket->burst ? taken : bucket->burst);
    int64_t held = (int64_t)share->held;
    if (held > demand) {
        /* Out of the share before into the pool: a view never counts them twice. */
        bucket_store_signed(&share->held, demand);
        bucket_pool_add(bucket, (uint64_t)(held - demand));
    } else if (held < demand && !paused) {
        int64_t got = bucket_pool_take_up_to(bucket, demand - held);
        bucket_store_signed(&share->held, held + got);
    }
    RM_ASSERT(bucket_load_signed(&bucket->pool) >= 0);
}

void bucket_reconcile(struct bucket_set *set, uint32_t core, uint64_t now_ns)
{
    RM_ASSERT(set != NULL);
    RM_ASSERT(core < set->cores);
    for (uint32_t id = 0; id < set->count; id++) {
        bucket_reconcile_one(set, &set->buckets[id], bucket_share_get(set, core, id), now_ns);
    }
}

void bucket_view(struct bucket_set *set, uint32_t id, struct bucket_view *out)
{
    struct bucket *bucket = bucket_get(set, id);
    RM_ASSERT(out != NULL);
    int64_t available = bucket_load_signed(&bucket->pool);
    uint64_t spent = 0;
    for (uint32_t core = 0; core < set->cores; core++) {
        struct bucket_share *share = bucket_share_get(set, core, id);
        available += bucket_load_signed(&share->held);
        spent += bucket_load(&share->spent);
    }
    out->per_minute = bucket->per_minute;
    out->burst = bucket->burst;
    out->available = bucket->per_minute == 0 ? INT64_MAX : available;
    out->paused_until_ns = bucket_load(&bucket->paused_until_ns);
    out->spent = spent;
}
