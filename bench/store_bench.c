/* Embedded state-store benchmarks: the store's C API driven on a real reactor group, with no
 * network in between, the way an embedding program uses it.
 *
 *   cas        compare-and-swap puts (durability async) on keys of the reactor's own shard
 *   cas-cross  the same on keys owned by other shards (each write crosses to its owner)
 *   get        store_get on the reactor's own keys
 *   get-local  store_get_local (the synchronous fast path) on the reactor's own keys
 *   restart    fill keys, stop cleanly, then time a fresh store_create + store_shard_open
 *
 * Each reactor keeps `inflight` requests going, each re-issued from its callback (a CAS
 * carries the version its previous write returned), for `seconds`. Per-op latency is sampled
 * on one op in STORE_BENCH_SAMPLE_EVERY. Output: one line of key=value pairs. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_samples.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/metrics.h"
#include "core/reactor.h"
#include "core/rm_assert.h"
#include "store/store.h"

#define STORE_BENCH_NAMESPACE "bench"
#define STORE_BENCH_KEY_BYTES 24
#define STORE_BENCH_VALUE_MAX 4096u
#define STORE_BENCH_PATTERN_BYTES (STORE_BENCH_VALUE_MAX + 26u)
#define STORE_BENCH_INFLIGHT_MAX 4096u
#define STORE_BENCH_KEYS_MAX (4u << 20) /* per reactor; the store's index bound per shard */
#define STORE_BENCH_SAMPLE_EVERY 64u
#define STORE_BENCH_SAMPLES_MAX (1u << 20) /* per reactor */
#define STORE_BENCH_LOCAL_BATCH 1024u      /* get-local lookups between clock reads */
#define STORE_BENCH_QUEUE_DEPTH 512u       /* as the engine's */
#define STORE_BENCH_DRAIN_MS 10000u
#define STORE_BENCH_PHASE_LIMIT_S 300u /* a phase that runs longer than this is stuck */
#define STORE_BENCH_SECONDS_MAX 3600u
#define STORE_BENCH_PATH_MAX 512

enum store_bench_mode {
    STORE_BENCH_CAS,
    STORE_BENCH_CAS_CROSS,
    STORE_BENCH_GET,
    STORE_BENCH_GET_LOCAL,
    STORE_BENCH_RESTART,
};

enum store_bench_phase {
    STORE_BENCH_IDLE,
    STORE_BENCH_LOAD,
    STORE_BENCH_RUN,
    STORE_BENCH_VERIFY,
};

struct store_bench_options {
    enum store_bench_mode mode;
    const char *mode_name;
    uint32_t reactors;
    uint32_t keys; /* per reactor */
    uint32_t inflight;
    uint32_t seconds;
    uint32_t value_bytes;
    uint64_t segment_bytes; /* 0: the config default */
    const char *parent;     /* where the temporary data directory goes */
    bool pin;
    bool cold;
    bool keep;
};

struct store_bench_key {
    uint32_t number; /* "k<number>"; also picks the value's bytes */
    uint8_t length;
    char text[STORE_BENCH_KEY_BYTES];
};

struct store_bench_reactor;

struct store_bench_slot {
    struct store_request request;
    struct store_bench_reactor *owner;
    struct store_bench_slot *next_stalled;
    uint32_t index;
    uint32_t key;
    uint64_t issued_ns; /* 0: this op is not sampled */
};

struct store_bench_reactor {
    struct store_bench *bench;
    struct reactor *reactor;
    uint32_t index;
    uint32_t key_count;
    struct store_bench_key *keys;
    uint64_t *versions;
    struct store_bench_slot *slots;
    struct store_bench_slot *stalled; /* refused with -EAGAIN at the call: retried next tick */
    uint32_t load_next;
    uint32_t inflight;
    int phase_seen;
    int done;
    uint64_t started_ns;
    uint64_t deadline_ns;
    uint64_t issued;
    uint64_t operations;
    uint64_t conflicts;
    uint64_t retries;
    uint64_t errors;
    int first_error;
    uint64_t *samples_ns;
    uint32_t sample_count;
    uint64_t cpu_started_ns; /* this reactor thread's CPU time, read at the phase start */
    uint64_t cpu_used_ns;
    uint64_t open_ns;
    uint64_t open_cpu_ns;
    uint64_t found_memory;
    uint64_t found_disk;
    uint64_t missing;
    uint64_t bad_values;
};

struct store_bench {
    struct store_bench_options options;
    struct config config;
    struct store *store;
    struct metrics_registry *metrics;
    struct reactor_group *group;
    int phase;
    char directory[STORE_BENCH_PATH_MAX];
    struct store_bench_reactor reactors[REACTOR_MAX];
};

/* Value bytes: the value of key k<n> is value_bytes bytes of this pattern from n % 26. */
static uint8_t store_bench_pattern[STORE_BENCH_PATTERN_BYTES];

static void store_bench_usage(FILE *out)
{
    fprintf(out,
            "usage: store-bench MODE [options]\n"
            "modes:\n"
            "  cas        CAS puts (durability async) on keys of each reactor's own shard\n"
            "  cas-cross  CAS puts on keys owned by another reactor (needs --reactors >= 2)\n"
            "  get        store_get on each reactor's own keys\n"
            "  get-local  store_get_local on each reactor's own keys\n"
            "  restart    fill keys, stop, time store_create + store_shard_open (recovery)\n"
            "options:\n"
            "  --reactors N       reactors, one shard each (default 1; cas-cross 2)\n"
            "  --keys K           keys per reactor (default 100000; restart 1000000)\n"
            "  --inflight N       requests in flight per reactor (default 256)\n"
            "  --seconds D        measured run time (default 5)\n"
            "  --value-bytes V    value size (default 64, at most %u)\n"
            "  --segment-bytes B  store.segment_bytes (default: the config's, 64 MiB)\n"
            "  --dir PATH         parent of the temporary data_dir (default /tmp)\n"
            "  --no-pin           do not pin reactors to CPUs\n"
            "  --cold             restart: evict the data files from the page cache first\n"
            "  --keep             keep the data directory\n",
            STORE_BENCH_VALUE_MAX);
}

static int store_bench_number(const char *text, uint64_t low, uint64_t high, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value < low ||
        value > high) {
        return -1;
    }
    *out = value;
    return 0;
}

static int store_bench_mode_parse(const char *name, struct store_bench_options *options)
{
    static const char *const names[] = {"cas", "cas-cross", "get", "get-local", "restart"};
    for (size_t i = 0; i < RM_ARRAY_LENGTH(names); i++) {
        if (strcmp(name, names[i]) == 0) {
            options->mode = (enum store_bench_mode)i;
            options->mode_name = names[i];
            return 0;
        }
    }
    return -1;
}

static void store_bench_defaults(struct store_bench_options *options)
{
    options->reactors = options->mode == STORE_BENCH_CAS_CROSS ? 2 : 1;
    options->keys = options->mode == STORE_BENCH_RESTART ? 1000000 : 100000;
    options->inflight = 256;
    options->seconds = 5;
    options->value_bytes = 64;
    options->segment_bytes = 0;
    options->parent = "/tmp";
    options->pin = true;
    options->cold = false;
    options->keep = false;
}

/* One numeric option: its name's first letter picks the field and its bounds. */
static int store_bench_option_number(int option, const char *text,
                                     struct store_bench_options *options)
{
    uint64_t value = 0;
    int bad = 0;
    switch (option) {
    case 'r':
        bad = store_bench_number(text, 1, REACTOR_MAX, &value);
        options->reactors = (uint32_t)value;
        break;
    case 'k':
        bad = store_bench_number(text, 1, STORE_BENCH_KEYS_MAX, &value);
        options->keys = (uint32_t)value;
        break;
    case 'i':
        bad = store_bench_number(text, 1, STORE_BENCH_INFLIGHT_MAX, &value);
        options->inflight = (uint32_t)value;
        break;
    case 's':
        bad = store_bench_number(text, 1, STORE_BENCH_SECONDS_MAX, &value);
        options->seconds = (uint32_t)value;
        break;
    case 'v':
        bad = store_bench_number(text, 1, STORE_BENCH_VALUE_MAX, &value);
        options->value_bytes = (uint32_t)value;
        break;
    default:
        RM_ASSERT(option == 'b');
        bad = store_bench_number(text, 4096, UINT32_MAX, &value);
        options->segment_bytes = value;
        break;
    }
    return bad;
}

static int store_bench_check(const struct store_bench_options *options)
{
    if (options->mode == STORE_BENCH_CAS_CROSS && options->reactors < 2) {
        fprintf(stderr, "store-bench: cas-cross needs --reactors 2 or more\n");
        return -1;
    }
    if (options->mode != STORE_BENCH_RESTART && options->keys < options->inflight) {
        fprintf(stderr, "store-bench: --keys (%u) must be at least --inflight (%u), so that "
                "no two requests in flight share a key\n", options->keys, options->inflight);
        return -1;
    }
    return 0;
}

static int store_bench_parse(int argc, char **argv, struct store_bench_options *options)
{
    static const struct option long_options[] = {
        {"reactors", required_argument, NULL, 'r'},
        {"keys", required_argument, NULL, 'k'},
        {"inflight", required_argument, NULL, 'i'},
        {"seconds", required_argument, NULL, 's'},
        {"value-bytes", required_argument, NULL, 'v'},
        {"segment-bytes", required_argument, NULL, 'b'},
        {"dir", required_argument, NULL, 'd'},
        {"no-pin", no_argument, NULL, 'n'},
        {"cold", no_argument, NULL, 'c'},
        {"keep", no_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    if (argc < 2 || store_bench_mode_parse(argv[1], options) != 0) {
        store_bench_usage(stderr);
        return -1;
    }
    store_bench_defaults(options);
    int option;
    optind = 2;
    while ((option = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        if (option == 'd') {
            options->parent = optarg;
        } else if (option == 'n' || option == 'c' || option == 'K') {
            options->pin = options->pin && option != 'n';
            options->cold = options->cold || option == 'c';
            options->keep = options->keep || option == 'K';
        } else if (option == 'h' || option == '?' ||
                   store_bench_option_number(option, optarg, options) != 0) {
            if (option != 'h' && option != '?') {
                fprintf(stderr, "store-bench: invalid value '%s' for %s\n", optarg,
                        argv[optind - 1]);
            }
            store_bench_usage(option == 'h' ? stdout : stderr);
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "store-bench: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return store_bench_check(options);
}

static struct store_key store_bench_store_key(const struct store_bench_key *key)
{
    return (struct store_key){STORE_BENCH_NAMESPACE, strlen(STORE_BENCH_NAMESPACE), key->text,
                              key->length};
}

static const uint8_t *store_bench_value(const struct store_bench_key *key)
{
    return store_bench_pattern + key->number % 26;
}

/* Gives each reactor `keys` distinct keys: its own shard's, or (cas-cross) the next
 * reactor's, so that every write crosses and no two reactors share a key. */
static void store_bench_assign_keys(struct store_bench *bench)
{
    uint32_t reactors = bench->options.reactors;
    uint32_t wanted = bench->options.keys;
    uint32_t filled = 0;
    bool cross = bench->options.mode == STORE_BENCH_CAS_CROSS;
    for (uint32_t number = 0; filled < reactors; number++) {
        struct store_bench_key key = {.number = number};
        int length = snprintf(key.text, sizeof(key.text), "k%u", number);
        RM_ASSERT(length > 0 && length < STORE_BENCH_KEY_BYTES);
        key.length = (uint8_t)length;
        uint32_t shard = store_shard_of(bench->store, store_bench_store_key(&key));
        RM_ASSERT(shard < reactors);
        struct store_bench_reactor *self =
            &bench->reactors[cross ? (shard + 1) % reactors : shard];
        if (self->key_count < wanted) {
            self->keys[self->key_count++] = key;
            filled += self->key_count == wanted;
        }
    }
}

static int store_bench_allocate(struct store_bench *bench)
{
    const struct store_bench_options *options = &bench->options;
    for (uint32_t i = 0; i < options->reactors; i++) {
        struct store_bench_reactor *self = &bench->reactors[i];
        self->bench = bench;
        self->index = i;
        self->keys = rm_calloc(options->keys, sizeof(*self->keys));
        self->versions = rm_calloc(options->keys, sizeof(*self->versions));
        self->slots = rm_calloc(options->inflight, sizeof(*self->slots));
        self->samples_ns = rm_calloc(STORE_BENCH_SAMPLES_MAX, sizeof(*self->samples_ns));
        if (self->keys == NULL || self->versions == NULL || self->slots == NULL ||
            self->samples_ns == NULL) {
            fprintf(stderr, "store-bench: out of memory for %u keys\n", options->keys);
            return -1;
        }
        for (uint32_t s = 0; s < options->inflight; s++) {
            self->slots[s].owner = self;
            self->slots[s].index = s;
        }
    }
    for (uint32_t i = 0; i < STORE_BENCH_PATTERN_BYTES; i++) {
        store_bench_pattern[i] = (uint8_t)('a' + i % 26);
    }
    return 0;
}

static void store_bench_free(struct store_bench *bench)
{
    for (uint32_t i = 0; i < bench->options.reactors; i++) {
        struct store_bench_reactor *self = &bench->reactors[i];
        rm_free(self->keys);
        rm_free(self->versions);
        rm_free(self->slots);
        rm_free(self->samples_ns);
    }
}

/* CPU time of the calling thread: on a shared machine, wall time also counts the time other
 * processes held the core. */
static uint64_t store_bench_thread_cpu_ns(void)
{
    struct timespec now;
    int result = clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    RM_ASSERT(result == 0);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

static void store_bench_callback(struct store_request *request,
                                 const struct store_result *result);

/* Starts the slot's request on its key; a store refusal at the call (-EAGAIN: the owner's
 * mailbox is full) parks the slot for the next tick. */
static void store_bench_issue(struct store_bench_slot *slot)
{
    struct store_bench_reactor *self = slot->owner;
    struct store_bench *bench = self->bench;
    const struct store_bench_key *key = &self->keys[slot->key];
    slot->issued_ns = 0;
    if (self->phase_seen == STORE_BENCH_RUN && self->issued++ % STORE_BENCH_SAMPLE_EVERY == 0) {
        slot->issued_ns = reactor_clock_ns();
    }
    int result;
    if (self->phase_seen == STORE_BENCH_RUN && bench->options.mode == STORE_BENCH_GET) {
        result = store_get(bench->store, &slot->request, store_bench_store_key(key),
                           store_bench_callback, slot);
    } else {
        struct store_write write = {.expected_version = self->versions[slot->key],
                                    .value = store_bench_value(key),
                                    .value_length = bench->options.value_bytes};
        result = store_put(bench->store, &slot->request, store_bench_store_key(key), &write,
                           store_bench_callback, slot);
    }
    if (result == -EAGAIN) {
        self->retries++;
        slot->next_stalled = self->stalled;
        self->stalled = slot;
        return;
    }
    RM_ASSERT(result == 0); /* keys, namespace and values are valid by construction */
}

static void store_bench_slot_done(struct store_bench_reactor *self)
{
    RM_ASSERT(self->inflight > 0);
    self->inflight--;
    if (self->inflight == 0) {
        self->cpu_used_ns = store_bench_thread_cpu_ns() - self->cpu_started_ns;
        __atomic_store_n(&self->done, 1, __ATOMIC_RELEASE);
    }
}

/* The key a slot takes after `key` in a run: its own keys are slot, slot + inflight, ... */
static uint32_t store_bench_next_key(const struct store_bench_reactor *self,
                                     const struct store_bench_slot *slot, uint32_t key)
{
    key += self->bench->options.inflight;
    return key < self->key_count ? key : slot->index;
}

/* The slot's next request, or its end: loading takes the next unloaded key; a run cycles
 * through the slot's own keys until the deadline. */
static void store_bench_continue(struct store_bench_slot *slot, uint64_t now_ns)
{
    struct store_bench_reactor *self = slot->owner;
    if (self->phase_seen == STORE_BENCH_LOAD) {
        if (self->load_next == self->key_count) {
            store_bench_slot_done(self);
            return;
        }
        slot->key = self->load_next++;
        store_bench_issue(slot);
        return;
    }
    RM_ASSERT(self->phase_seen == STORE_BENCH_RUN);
    if (now_ns >= self->deadline_ns) {
        store_bench_slot_done(self);
        return;
    }
    slot->key = store_bench_next_key(self, slot, slot->key);
    /* The bench's own key and version for the request after this one: an embedding program
     * has its keys at hand, so the run measures the store rather than these arrays' misses. */
    uint32_t after = store_bench_next_key(self, slot, slot->key);
    __builtin_prefetch(&self->keys[after]);
    __builtin_prefetch(&self->versions[after]);
    store_bench_issue(slot);
}

static void store_bench_record(struct store_bench_reactor *self, struct store_bench_slot *slot,
                               const struct store_result *result, uint64_t now_ns)
{
    if (self->phase_seen != STORE_BENCH_RUN || now_ns >= self->deadline_ns) {
        return;
    }
    if (result->status == STORE_OK) {
        self->operations++;
    }
    if (slot->issued_ns != 0 && self->sample_count < STORE_BENCH_SAMPLES_MAX) {
        self->samples_ns[self->sample_count++] = reactor_clock_ns() - slot->issued_ns;
    }
}

static void store_bench_callback(struct store_request *request,
                                 const struct store_result *result)
{
    struct store_bench_slot *slot = request->context;
    struct store_bench_reactor *self = slot->owner;
    RM_ASSERT(&slot->request == request);
    uint64_t now_ns = reactor_now_ns(self->reactor);
    store_bench_record(self, slot, result, now_ns);
    bool get = self->phase_seen == STORE_BENCH_RUN && self->bench->options.mode == STORE_BENCH_GET;
    if (result->status == STORE_OK) {
        if (get) {
            self->bad_values += result->value_length != self->bench->options.value_bytes;
        } else {
            self->versions[slot->key] = result->version;
        }
    } else if (result->status == STORE_CONFLICT) {
        self->conflicts++;
        self->versions[slot->key] = result->version;
    } else if (result->status == -EAGAIN) {
        /* The commit buffer was full during a flush: retried next tick, as an embedding
         * program sheds load, rather than spinning on a buffer that cannot drain yet. */
        self->retries++;
        slot->next_stalled = self->stalled;
        self->stalled = slot;
        return;
    } else {
        self->errors++;
        self->first_error = self->first_error != 0 ? self->first_error : result->status;
    }
    store_bench_continue(slot, now_ns);
}

static void store_bench_start_slots(struct store_bench_reactor *self)
{
    uint32_t count = self->bench->options.inflight;
    RM_ASSERT(self->inflight == 0);
    if (self->phase_seen == STORE_BENCH_LOAD) {
        count = count < self->key_count ? count : self->key_count;
    }
    self->inflight = count;
    for (uint32_t s = 0; s < count; s++) {
        struct store_bench_slot *slot = &self->slots[s];
        slot->key = self->phase_seen == STORE_BENCH_LOAD ? self->load_next++ : s;
        store_bench_issue(slot);
    }
}

/* get-local: a tight loop inside one tick; the call is synchronous, so the loop is the
 * benchmark and nothing else on this reactor needs the time meanwhile. */
static void store_bench_get_local(struct store_bench_reactor *self)
{
    struct store_bench *bench = self->bench;
    uint8_t buffer[STORE_BENCH_VALUE_MAX];
    uint64_t now_ns = self->started_ns;
    uint32_t key = 0;
    while (now_ns < self->deadline_ns) {
        for (uint32_t i = 0; i < STORE_BENCH_LOCAL_BATCH; i++) {
            bool sampled = self->issued++ % STORE_BENCH_SAMPLE_EVERY == 0 &&
                           self->sample_count < STORE_BENCH_SAMPLES_MAX;
            uint64_t before_ns = sampled ? reactor_clock_ns() : 0;
            struct store_result result;
            int status = store_get_local(bench->store, store_bench_store_key(&self->keys[key]),
                                         buffer, sizeof(buffer), &result);
            if (sampled) {
                self->samples_ns[self->sample_count++] = reactor_clock_ns() - before_ns;
            }
            self->operations += status == STORE_OK;
            self->errors += status != STORE_OK;
            key = key + 1 == self->key_count ? 0 : key + 1;
        }
        now_ns = reactor_clock_ns();
    }
    self->deadline_ns = now_ns; /* the measured window ends at the last batch */
    self->cpu_used_ns = store_bench_thread_cpu_ns() - self->cpu_started_ns;
    __atomic_store_n(&self->done, 1, __ATOMIC_RELEASE);
}

/* restart: every key must be back, at version 1, with its value when it is in memory. */
static void store_bench_verify(struct store_bench_reactor *self)
{
    struct store_bench *bench = self->bench;
    uint8_t buffer[STORE_BENCH_VALUE_MAX];
    for (uint32_t k = 0; k < self->key_count; k++) {
        const struct store_bench_key *key = &self->keys[k];
        struct store_result result;
        int status = store_get_local(bench->store, store_bench_store_key(key), buffer,
                                     sizeof(buffer), &result);
        bool present = (status == STORE_OK || status == -EWOULDBLOCK) && result.version == 1 &&
                       result.value_length == bench->options.value_bytes;
        if (!present) {
            self->missing++;
        } else if (status == -EWOULDBLOCK) {
            self->found_disk++;
        } else {
            self->found_memory++;
            self->bad_values += memcmp(buffer, store_bench_value(key), result.value_length) != 0;
        }
    }
    __atomic_store_n(&self->done, 1, __ATOMIC_RELEASE);
}

static void store_bench_retry_stalled(struct store_bench_reactor *self)
{
    struct store_bench_slot *slot = self->stalled;
    self->stalled = NULL;
    while (slot != NULL) {
        struct store_bench_slot *next = slot->next_stalled;
        slot->next_stalled = NULL;
        store_bench_issue(slot);
        slot = next;
    }
}

/* Once per tick: starts the phase the main thread asked for, and retries parked slots. */
static void store_bench_hook(struct reactor *reactor, void *context)
{
    struct store_bench_reactor *self = context;
    RM_ASSERT(reactor_index(reactor) == self->index);
    int phase = __atomic_load_n(&self->bench->phase, __ATOMIC_ACQUIRE);
    if (phase == self->phase_seen) {
        store_bench_retry_stalled(self);
        return;
    }
    self->phase_seen = phase;
    self->cpu_started_ns = store_bench_thread_cpu_ns();
    self->started_ns = reactor_clock_ns();
    self->deadline_ns = self->started_ns + (uint64_t)self->bench->options.seconds * 1000000000;
    if (phase == STORE_BENCH_VERIFY) {
        store_bench_verify(self);
    } else if (phase == STORE_BENCH_RUN && self->bench->options.mode == STORE_BENCH_GET_LOCAL) {
        store_bench_get_local(self);
    } else if (phase != STORE_BENCH_IDLE) {
        store_bench_start_slots(self);
    }
}

static int store_bench_setup(struct reactor *reactor, void *context)
{
    struct store_bench *bench = context;
    struct store_bench_reactor *self = &bench->reactors[reactor_index(reactor)];
    self->reactor = reactor;
    uint64_t started_ns = reactor_clock_ns();
    uint64_t cpu_started_ns = store_bench_thread_cpu_ns();
    int result = store_shard_open(bench->store, reactor);
    self->open_ns = reactor_clock_ns() - started_ns;
    self->open_cpu_ns = store_bench_thread_cpu_ns() - cpu_started_ns;
    self->phase_seen = __atomic_load_n(&bench->phase, __ATOMIC_ACQUIRE);
    reactor_hook_add(reactor, (struct reactor_hook){.run = store_bench_hook, .context = self});
    return result;
}

static void store_bench_teardown(struct reactor *reactor, void *context)
{
    struct store_bench *bench = context;
    store_shard_close(bench->store, reactor);
}

static bool store_bench_busy(struct reactor *reactor, void *context)
{
    struct store_bench *bench = context;
    return store_shard_busy(bench->store, reactor);
}

/* store_create plus a started group whose setups opened (recovered) every shard. */
static int store_bench_open(struct store_bench *bench)
{
    bench->metrics = metrics_create(bench->options.reactors);
    if (bench->metrics == NULL) {
        fprintf(stderr, "store-bench: metrics_create failed\n");
        return -ENOMEM;
    }
    int result = store_create(&bench->config, bench->options.reactors, bench->metrics,
                              &bench->store);
    if (result != 0) {
        fprintf(stderr, "store-bench: store_create: %s\n", strerror(-result));
        return result;
    }
    struct reactor_group_config group = {
        .reactors = bench->options.reactors,
        .pin = bench->options.pin,
        .queue_depth = STORE_BENCH_QUEUE_DEPTH,
        .setup = store_bench_setup,
        .teardown = store_bench_teardown,
        .busy = store_bench_busy,
        .context = bench,
        .drain_timeout_ms = STORE_BENCH_DRAIN_MS,
    };
    result = reactor_group_create(&group, &bench->group);
    if (result == 0) {
        result = reactor_group_start(bench->group);
    }
    if (result != 0) {
        fprintf(stderr, "store-bench: starting the reactors: %s\n", strerror(-result));
    }
    return result;
}

/* Engine-style stop: the loops run until every shard has flushed, then close it. */
static void store_bench_close(struct store_bench *bench)
{
    if (bench->group != NULL) {
        reactor_group_stop(bench->group);
        reactor_group_join(bench->group);
        reactor_group_destroy(bench->group);
        bench->group = NULL;
    }
    store_destroy(bench->store);
    bench->store = NULL;
    if (bench->metrics != NULL) {
        metrics_destroy(bench->metrics);
        bench->metrics = NULL;
    }
}

/* Asks every reactor for a phase and waits until each reports it done. */
static int store_bench_phase(struct store_bench *bench, enum store_bench_phase phase)
{
    RM_ASSERT(phase != STORE_BENCH_IDLE);
    for (uint32_t i = 0; i < bench->options.reactors; i++) {
        __atomic_store_n(&bench->reactors[i].done, 0, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&bench->phase, (int)phase, __ATOMIC_RELEASE);
    uint64_t limit_ns = reactor_clock_ns() + (uint64_t)STORE_BENCH_PHASE_LIMIT_S * 1000000000 +
                        (uint64_t)bench->options.seconds * 1000000000;
    for (uint32_t i = 0; i < bench->options.reactors; i++) {
        while (!__atomic_load_n(&bench->reactors[i].done, __ATOMIC_ACQUIRE)) {
            if (reactor_clock_ns() > limit_ns) {
                fprintf(stderr, "store-bench: reactor %u did not finish its phase within "
                        "%u s\n", i, STORE_BENCH_PHASE_LIMIT_S + bench->options.seconds);
                return -ETIMEDOUT;
            }
            nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        }
    }
    return 0;
}

/* Every reactor's samples, merged and sorted, into the first reactor's array. */
static uint32_t store_bench_merge_samples(struct store_bench *bench, uint64_t **out)
{
    struct store_bench_reactor *first = &bench->reactors[0];
    uint32_t count = first->sample_count;
    for (uint32_t i = 1; i < bench->options.reactors; i++) {
        const struct store_bench_reactor *self = &bench->reactors[i];
        count = bench_samples_append(first->samples_ns, count, STORE_BENCH_SAMPLES_MAX,
                                     self->samples_ns, self->sample_count);
    }
    bench_samples_sort(first->samples_ns, count);
    *out = first->samples_ns;
    return count;
}

static int store_bench_report_run(struct store_bench *bench)
{
    uint64_t operations = 0, conflicts = 0, retries = 0, errors = 0, bad_values = 0;
    double window_s = 0.0;
    double cpu_s = 0.0;
    int first_error = 0;
    for (uint32_t i = 0; i < bench->options.reactors; i++) {
        const struct store_bench_reactor *self = &bench->reactors[i];
        operations += self->operations;
        conflicts += self->conflicts;
        retries += self->retries;
        errors += self->errors;
        bad_values += self->bad_values;
        first_error = first_error != 0 ? first_error : self->first_error;
        window_s += (double)(self->deadline_ns - self->started_ns) / 1e9;
        cpu_s += (double)self->cpu_used_ns / 1e9;
    }
    window_s /= bench->options.reactors; /* every reactor runs the same window */
    uint64_t *samples = NULL;
    uint32_t count = store_bench_merge_samples(bench, &samples);
    double per_core = (double)operations / window_s / bench->options.reactors;
    printf("mode=%s reactors=%u keys=%u inflight=%u value_bytes=%u seconds=%.2f ops=%llu "
           "ops_per_s_per_core=%.0f conflicts=%llu retries=%llu errors=%llu bad_values=%llu "
           "samples=%u p50_us=%.2f p99_us=%.2f reactor_cpu_s=%.2f ops_per_cpu_s=%.0f\n",
           bench->options.mode_name, bench->options.reactors, bench->options.keys,
           bench->options.inflight, bench->options.value_bytes, window_s,
           (unsigned long long)operations, per_core, (unsigned long long)conflicts,
           (unsigned long long)retries, (unsigned long long)errors,
           (unsigned long long)bad_values, count, bench_samples_percentile_us(samples, count, 0.50),
           bench_samples_percentile_us(samples, count, 0.99), cpu_s,
           cpu_s > 0.0 ? (double)operations / cpu_s : 0.0);
    if (errors > 0) {
        fprintf(stderr, "store-bench: %llu operations failed; first error: %s\n",
                (unsigned long long)errors,
                first_error < 0 ? strerror(-first_error) : "not found");
    }
    return errors == 0 && conflicts == 0 && bad_values == 0 ? 0 : 1;
}

struct store_bench_files {
    uint32_t segments;
    uint32_t hints;
    uint64_t bytes;
};

/* Counts (and with `evict`, drops from the page cache) one shard directory's files. */
static void store_bench_scan_shard(const char *path, bool evict, struct store_bench_files *files)
{
    DIR *directory = opendir(path);
    if (directory == NULL) {
        return;
    }
    struct dirent *item;
    while ((item = readdir(directory)) != NULL) {
        bool segment = strstr(item->d_name, ".log") != NULL;
        bool hint = strstr(item->d_name, ".hint") != NULL;
        if (!segment && !hint) {
            continue;
        }
        char file[STORE_BENCH_PATH_MAX * 2];
        int length = snprintf(file, sizeof(file), "%s/%s", path, item->d_name);
        RM_ASSERT(length > 0 && (size_t)length < sizeof(file)); /* --dir was checked */
        int fd = open(file, O_RDONLY | O_CLOEXEC);
        struct stat status;
        if (fd < 0 || fstat(fd, &status) != 0) {
            fprintf(stderr, "store-bench: cannot read %s: %s\n", file, strerror(errno));
        } else {
            files->segments += segment;
            files->hints += hint;
            files->bytes += (uint64_t)status.st_size;
            if (evict && posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) {
                fprintf(stderr, "store-bench: cannot evict %s from the page cache\n", file);
            }
        }
        if (fd >= 0) {
            close(fd);
        }
    }
    closedir(directory);
}

static struct store_bench_files store_bench_scan_files(const struct store_bench *bench,
                                                       bool evict)
{
    struct store_bench_files files = {0};
    for (uint32_t i = 0; i < bench->options.reactors; i++) {
        char path[STORE_BENCH_PATH_MAX * 2];
        snprintf(path, sizeof(path), "%s/shard-%u", bench->config.data_dir, i);
        store_bench_scan_shard(path, evict, &files);
    }
    return files;
}

/* The load phase must leave every key at version 1; its counters then start from zero. */
static int store_bench_check_load(struct store_bench *bench)
{
    uint64_t failures = 0;
    for (uint32_t i = 0; i < bench->options.reactors; i++) {
        struct store_bench_reactor *self = &bench->reactors[i];
        failures += self->errors + self->conflicts;
        for (uint32_t k = 0; k < self->key_count; k++) {
            failures += self->versions[k] != 1;
        }
        self->errors = 0;
        self->conflicts = 0;
        self->retries = 0;
        self->issued = 0;
    }
    if (failures > 0) {
        fprintf(stderr, "store-bench: loading the keys failed (%llu keys not at version 1)\n",
                (unsigned long long)failures);
        return -EIO;
    }
    return 0;
}

static int store_bench_run(struct store_bench *bench)
{
    int result = store_bench_open(bench);
    if (result == 0) {
        result = store_bench_phase(bench, STORE_BENCH_LOAD);
    }
    if (result == 0) {
        result = store_bench_check_load(bench);
    }
    if (result == 0) {
        result = store_bench_phase(bench, STORE_BENCH_RUN);
    }
    store_bench_close(bench);
    return result != 0 ? 1 : store_bench_report_run(bench);
}

static void store_bench_report_restart(struct store_bench *bench, double fill_s,
                                       double restart_s, const struct store_bench_files *files)
{
    uint64_t memory = 0, disk = 0, missing = 0, bad_values = 0, open_max_ns = 0;
    uint64_t open_cpu_max_ns = 0;
    for (uint32_t i = 0; i < bench->options.reactors; i++) {
        const struct store_bench_reactor *self = &bench->reactors[i];
        memory += self->found_memory;
        disk += self->found_disk;
        missing += self->missing;
        bad_values += self->bad_values;
        open_max_ns = self->open_ns > open_max_ns ? self->open_ns : open_max_ns;
        open_cpu_max_ns = self->open_cpu_ns > open_cpu_max_ns ? self->open_cpu_ns
                                                              : open_cpu_max_ns;
    }
    uint32_t sealed = files->segments - bench->options.reactors; /* each shard's last is open */
    printf("mode=restart reactors=%u keys=%llu value_bytes=%u segment_bytes=%llu cache=%s "
           "fill_s=%.3f restart_s=%.3f shard_open_max_s=%.3f shard_open_cpu_max_s=%.3f "
           "keys_recovered=%llu "
           "in_memory=%llu on_disk=%llu missing=%llu bad_values=%llu segments=%u sealed=%u "
           "hint_files=%u data_mib=%.1f\n",
           bench->options.reactors, (unsigned long long)bench->options.keys *
           bench->options.reactors, bench->options.value_bytes,
           (unsigned long long)bench->config.store.segment_bytes,
           bench->options.cold ? "cold" : "warm", fill_s, restart_s, (double)open_max_ns / 1e9,
           (double)open_cpu_max_ns / 1e9,
           (unsigned long long)(memory + disk), (unsigned long long)memory,
           (unsigned long long)disk, (unsigned long long)missing,
           (unsigned long long)bad_values, files->segments, sealed, files->hints,
           (double)files->bytes / (1024.0 * 1024.0));
}

/* Fills the store and stops it cleanly in a child process, so that the restart below runs
 * in a process that, like a restarted engine, never held the filled store (the allocator's
 * heap would otherwise be full of the first store's freed pages). */
static int store_bench_fill(struct store_bench *bench)
{
    fflush(NULL);
    pid_t child = fork();
    if (child < 0) {
        fprintf(stderr, "store-bench: fork: %s\n", strerror(errno));
        return -1;
    }
    if (child == 0) {
        int result = store_bench_open(bench);
        if (result == 0) {
            result = store_bench_phase(bench, STORE_BENCH_LOAD);
        }
        if (result == 0) {
            result = store_bench_check_load(bench);
        }
        store_bench_close(bench);
        _exit(result == 0 ? 0 : 1);
    }
    int status = 0;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "store-bench: filling the store failed\n");
        return -1;
    }
    return 0;
}

/* Fill, stop cleanly, then time store_create to every setup done (recovery included), and
 * check every key with store_get_local. */
static int store_bench_restart(struct store_bench *bench)
{
    uint64_t started_ns = reactor_clock_ns();
    int result = store_bench_fill(bench);
    double fill_s = (double)(reactor_clock_ns() - started_ns) / 1e9;
    if (result != 0) {
        return 1;
    }
    struct store_bench_files files = store_bench_scan_files(bench, bench->options.cold);
    started_ns = reactor_clock_ns();
    result = store_bench_open(bench);
    double restart_s = (double)(reactor_clock_ns() - started_ns) / 1e9;
    if (result == 0) {
        result = store_bench_phase(bench, STORE_BENCH_VERIFY);
    }
    store_bench_close(bench);
    if (result != 0) {
        return 1;
    }
    store_bench_report_restart(bench, fill_s, restart_s, &files);
    for (uint32_t i = 0; i < bench->options.reactors; i++) {
        if (bench->reactors[i].missing > 0 || bench->reactors[i].bad_values > 0) {
            fprintf(stderr, "store-bench: keys lost or damaged across the restart\n");
            return 1;
        }
    }
    return 0;
}

static int store_bench_remove_entry(const char *path, const struct stat *status, int type,
                                    struct FTW *walk)
{
    (void)status;
    (void)type;
    (void)walk;
    if (remove(path) != 0) {
        fprintf(stderr, "store-bench: cannot remove %s: %s\n", path, strerror(errno));
    }
    return 0;
}

static int store_bench_prepare(struct store_bench *bench)
{
    int length = snprintf(bench->directory, sizeof(bench->directory), "%s/store-bench.",
                          bench->options.parent);
    /* Room for mkdtemp's six characters and "/data/shard-NN/segment-NNNNNNNNNN.hint". */
    if (length <= 0 || (size_t)length + 56 >= sizeof(bench->directory)) {
        fprintf(stderr, "store-bench: --dir path too long\n");
        return -1;
    }
    /* mkdtemp replaces the template's last six characters, which must all be 'X'. */
    memset(bench->directory + length, 'X', 6);
    bench->directory[length + 6] = '\0';
    if (mkdtemp(bench->directory) == NULL) {
        fprintf(stderr, "store-bench: cannot create a directory in %s: %s\n",
                bench->options.parent, strerror(errno));
        bench->directory[0] = '\0';
        return -1;
    }
    config_defaults(&bench->config);
    length = snprintf(bench->config.data_dir, sizeof(bench->config.data_dir), "%s/data",
                      bench->directory);
    RM_ASSERT(length > 0 && (size_t)length < sizeof(bench->config.data_dir));
    bench->config.durability.default_mode = CONFIG_DURABILITY_ASYNC;
    if (bench->options.segment_bytes != 0) {
        bench->config.store.segment_bytes = bench->options.segment_bytes;
    }
    if (store_create(&bench->config, bench->options.reactors, NULL, &bench->store) != 0) {
        return -1;
    }
    if (store_bench_allocate(bench) != 0) {
        return -1;
    }
    store_bench_assign_keys(bench);
    store_destroy(bench->store);
    bench->store = NULL;
    return 0;
}

int main(int argc, char **argv)
{
    static struct store_bench bench;
    if (store_bench_parse(argc, argv, &bench.options) != 0) {
        return 2;
    }
    int status = 1;
    if (store_bench_prepare(&bench) == 0) {
        status = bench.options.mode == STORE_BENCH_RESTART ? store_bench_restart(&bench)
                                                            : store_bench_run(&bench);
    }
    store_bench_free(&bench);
    if (bench.directory[0] != '\0' && bench.options.keep) {
        fprintf(stderr, "store-bench: kept %s\n", bench.directory);
    } else if (bench.directory[0] != '\0') {
        nftw(bench.directory, store_bench_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    return status;
}
