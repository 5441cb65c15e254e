/* The store through a real reactor group: compare-and-swap, versions across delete and
 * restart, TTL, prefix scans, cross-core writes, durability modes, journal appends. */

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "tests/unit/test_store_harness.h"

static struct harness_result result;

Test(store_cas, put_get_and_version_rules)
{
    struct harness harness;
    harness_init(&harness, 2);
    cr_assert_eq(harness_start(&harness), 0);
    cr_assert_eq(harness_get(&harness, 0, "app", "a", &result), STORE_NOT_FOUND);
    cr_assert_eq(harness_put(&harness, 0, "app", "a", "one", 0, 0, &result), STORE_OK);
    cr_assert_eq(result.version, 1);
    cr_assert_eq(harness_put(&harness, 1, "app", "a", "dup", 0, 0, &result), STORE_CONFLICT);
    cr_assert_eq(result.version, 1, "conflict reports the current version");
    cr_assert_eq(harness_put(&harness, 0, "app", "a", "two", 7, 0, &result), STORE_CONFLICT);
    cr_assert_eq(result.version, 1);
    cr_assert_eq(harness_put(&harness, 1, "app", "a", "two", 1, 0, &result), STORE_OK);
    cr_assert_eq(result.version, 2);
    cr_assert_eq(harness_get(&harness, 1, "app", "a", &result), STORE_OK);
    cr_assert_eq(result.version, 2);
    cr_assert_eq(result.value_length, 3);
    cr_assert_eq(memcmp(result.value, "two", 3), 0);
    cr_assert_eq(harness_put(&harness, 0, "app", "a", "any", STORE_VERSION_ANY, 0, &result),
                 STORE_OK);
    cr_assert_eq(result.version, 3);
    cr_assert_eq(harness_put(&harness, 0, "app", "missing", "x", 5, 0, &result), STORE_CONFLICT);
    cr_assert_eq(result.version, 0);
    harness_stop(&harness);
    harness_cleanup(&harness);
}

Test(store_cas, delete_and_recreate_keep_growing_versions)
{
    struct harness harness;
    harness_init(&harness, 2);
    cr_assert_eq(harness_start(&harness), 0);
    cr_assert_eq(harness_put(&harness, 0, "app", "d", "v", 0, 0, &result), STORE_OK);
    cr_assert_eq(harness_put(&harness, 0, "app", "d", "v2", 1, 0, &result), STORE_OK);
    cr_assert_eq(harness_delete(&harness, 1, "app", "d", 1, &result), STORE_CONFLICT);
    cr_assert_eq(result.version, 2);
    cr_assert_eq(harness_delete(&harness, 1, "app", "d", 2, &result), STORE_OK);
    cr_assert_eq(result.version, 3, "the tombstone takes the next version");
    cr_assert_eq(harness_get(&harness, 0, "app", "d", &result), STORE_NOT_FOUND);
    cr_assert_eq(harness_delete(&harness, 0, "app", "d", STORE_VERSION_ANY, &result),
                 STORE_NOT_FOUND);
    cr_assert_eq(harness_put(&harness, 1, "app", "d", "again", 0, 0, &result), STORE_OK);
    cr_assert_eq(result.version, 4);
    harness_stop(&harness);
    cr_assert_eq(harness_start(&harness), 0);
    cr_assert_eq(harness_get(&harness, 1, "app", "d", &result), STORE_OK);
    cr_assert_eq(result.version, 4);
    cr_assert_eq(harness_delete(&harness, 0, "app", "d", 4, &result), STORE_OK);
    harness_stop(&harness);
    cr_assert_eq(harness_start(&harness), 0);
    cr_assert_eq(harness_get(&harness, 0, "app", "d", &result), STORE_NOT_FOUND);
    cr_assert_eq(harness_put(&harness, 0, "app", "d", "third life", 0, 0, &result), STORE_OK);
    cr_assert_eq(result.version, 6, "versions continue across restart and delete");
    harness_stop(&harness);
    harness_cleanup(&harness);
}

Test(store_cas, invalid_input_is_refused)
{
    struct harness harness;
    harness_init(&harness, 1);
    cr_assert_eq(harness_start(&harness), 0);
    cr_assert_eq(harness_put(&harness, 0, "bad/ns", "a", "v", 0, 0, &result), -EINVAL);
    cr_assert_eq(harness_put(&harness, 0, "", "a", "v", 0, 0, &result), -EINVAL);
    cr_assert_eq(harness_put(&harness, 0, "ok", "", "v", 0, 0, &result), -EINVAL);
    char key[STORE_KEY_MAX + 2];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    cr_assert_eq(harness_put(&harness, 0, "ok", key, "v", 0, 0, &result), -EINVAL);
    key[STORE_KEY_MAX] = '\0';
    cr_assert_eq(harness_put(&harness, 0, "ok", key, "v", 0, 0, &result), STORE_OK);
    harness_stop(&harness);
    harness_cleanup(&harness);
}

static void pause_ms(long milliseconds)
{
    struct timespec pause = {.tv_sec = milliseconds / 1000,
                             .tv_nsec = (milliseconds % 1000) * 1000000};
    nanosleep(&pause, NULL);
}

/* Four requests made in one callback on the reactor that owns their key: put, get, put on
 * the first put's version, get. The owner runs its own requests as a batch at its tick, and a
 * get waits behind the writes made before it, so none misses the put just before it (a get
 * resolved at delivery may also see later ones). From a callback, since callbacks run while
 * the store delivers: a get queued for delivery there would be answered before the batch. */
#define ORDER_REQUESTS 5 /* the starter, then the four */

struct order_turn {
    struct harness *harness;
    char starter[32]; /* also reactor 0's: its callback runs as reactor 0's store delivers */
    char key[32];
    struct store_request requests[ORDER_REQUESTS];
    int status[ORDER_REQUESTS];
    uint64_t version[ORDER_REQUESTS];
    char value[ORDER_REQUESTS][8];
    int done;
};

static void order_callback(struct store_request *request, const struct store_result *outcome);

static void order_four(struct order_turn *turn)
{
    struct store *store = turn->harness->store;
    struct store_key key = {"app", 3, turn->key, strlen(turn->key)};
    struct store_write first = {.expected_version = 0, .value = "one", .value_length = 3};
    struct store_write second = {.expected_version = 1, .value = "two", .value_length = 3};
    cr_assert_eq(store_put(store, &turn->requests[1], key, &first, order_callback, turn), 0);
    cr_assert_eq(store_get(store, &turn->requests[2], key, order_callback, turn), 0);
    cr_assert_eq(store_put(store, &turn->requests[3], key, &second, order_callback, turn), 0);
    cr_assert_eq(store_get(store, &turn->requests[4], key, order_callback, turn), 0);
}

static void order_callback(struct store_request *request, const struct store_result *outcome)
{
    struct order_turn *turn = request->context;
    size_t index = (size_t)(request - turn->requests);
    cr_assert(index < ORDER_REQUESTS);
    turn->status[index] = outcome->status;
    turn->version[index] = outcome->version;
    if (outcome->status == STORE_OK && outcome->value != NULL &&
        outcome->value_length < sizeof(turn->value[index])) {
        memcpy(turn->value[index], outcome->value, outcome->value_length);
    }
    if (index == 0) {
        order_four(turn);
    }
    __atomic_add_fetch(&turn->done, 1, __ATOMIC_RELEASE);
}

static void order_start(struct harness *harness, void *argument)
{
    struct order_turn *turn = argument;
    struct store_key key = {"app", 3, turn->starter, strlen(turn->starter)};
    struct store_write write = {.expected_version = STORE_VERSION_ANY, .value = "s",
                                .value_length = 1};
    cr_assert_eq(store_put(harness->store, &turn->requests[0], key, &write, order_callback,
                           turn), 0);
}

/* The reactor's count of successful puts in state_operations_total, from /metrics. */
static long order_puts_counted(struct harness *harness)
{
    char *text = NULL;
    metrics_render(harness->metrics, &text);
    cr_assert_not_null(text);
    const char *name = "ringmaster_state_operations_total{op=\"put\",result=\"ok\"} ";
    const char *line = strstr(text, name);
    long count = line != NULL ? strtol(line + strlen(name), NULL, 10) : -1;
    rm_free(text);
    return count;
}

Test(store_cas, own_shard_requests_of_one_callback_keep_their_order)
{
    struct harness harness;
    harness_init(&harness, 2);
    cr_assert_eq(harness_start(&harness), 0);
    static struct order_turn turn;
    turn.harness = &harness;
    uint32_t used = harness_key_on_shard(&harness, "app", 0, 0, turn.key, sizeof(turn.key));
    harness_key_on_shard(&harness, "app", 0, used + 1, turn.starter, sizeof(turn.starter));
    harness_run(&harness, 0, order_start, &turn);
    for (int wait = 0; wait < 5000 && __atomic_load_n(&turn.done, __ATOMIC_ACQUIRE) <
                                          ORDER_REQUESTS; wait++) {
        pause_ms(1);
    }
    cr_assert_eq(__atomic_load_n(&turn.done, __ATOMIC_ACQUIRE), ORDER_REQUESTS);
    cr_assert_eq(turn.status[0], STORE_OK);
    cr_assert_eq(turn.status[1], STORE_OK);
    cr_assert_eq(turn.version[1], 1);
    cr_assert_eq(turn.status[2], STORE_OK, "the get sees the put made before it");
    cr_assert(turn.version[2] == 1 || turn.version[2] == 2);
    cr_assert_str_eq(turn.value[2], turn.version[2] == 1 ? "one" : "two");
    cr_assert_eq(turn.status[3], STORE_OK, "the second put finds version 1");
    cr_assert_eq(turn.version[3], 2);
    cr_assert_eq(turn.status[4], STORE_OK);
    cr_assert_eq(turn.version[4], 2);
    cr_assert_str_eq(turn.value[4], "two");
    /* Counters are flushed once per tick: exact, if up to a tick late. */
    long counted = -1;
    for (int wait = 0; wait < 5000 && counted != 3; wait++) {
        counted = order_puts_counted(&harness);
        pause_ms(counted == 3 ? 0 : 1);
    }
    cr_assert_eq(counted, 3, "the starter and the two puts");
    harness_stop(&harness);
    harness_cleanup(&harness);
}

static void durability_round(struct harness *harness, const char *ns, uint32_t keys)
{
    char key[32];
    char value[64];
    for (uint32_t i = 0; i < keys; i++) {
        snprintf(key, sizeof(key), "key-%u", i);
        snprintf(value, sizeof(value), "%s-value-%u", ns, i);
        cr_assert_eq(harness_put(harness, i % harness->reactors, ns, key, value, 0, 0, &result),
                     STORE_OK);
    }
}

static void durability_check(struct harness *harness, const char *ns, uint32_t keys)
{
    char key[32];
    char value[64];
    for (uint32_t i = 0; i < keys; i++) {
        snprintf(key, sizeof(key), "key-%u", i);
        snprintf(value, sizeof(value), "%s-value-%u", ns, i);
        cr_assert_eq(harness_get(harness, (i + 1) % harness->reactors, ns, key, &result),
                     STORE_OK, "%s/%s lost", ns, key);
        cr_assert_eq(result.version, 1);
        cr_assert_eq(result.value_length, strlen(value));
        cr_assert_eq(memcmp(result.value, value, result.value_length), 0);
    }
}

Test(store_durability, sync_and_async_writes_survive_a_clean_stop)
{
    struct harness harness;
    harness_init(&harness, 2);
    harness.config.durability.namespace_count = 1;
    snprintf(harness.config.durability.namespaces[0].name, CONFIG_NAME_MAX, "fast");
    harness.config.durability.namespaces[0].mode = CONFIG_DURABILITY_ASYNC;
    cr_assert_eq(harness_start(&harness), 0);
    durability_round(&harness, "fast", 300);
    durability_round(&harness, "safe", 100);
    harness_stop(&harness);
    cr_assert_eq(harness_start(&harness), 0);
    durability_check(&harness, "fast", 300);
    durability_check(&harness, "safe", 100);
    harness_stop(&harness);
    harness_cleanup(&harness);
}

Test(store_ttl, expired_keys_read_as_absent_and_keep_their_version)
{
    struct harness harness;
    harness_init(&harness, 2);
    cr_assert_eq(harness_start(&harness), 0);
    cr_assert_eq(harness_put(&harness, 0, "s", "t", "brief", 0, 80, &result), STORE_OK);
    cr_assert_eq(harness_get(&harness, 1, "s", "t", &result), STORE_OK);
    pause_ms(150);
    cr_assert_eq(harness_get(&harness, 1, "s", "t", &result), STORE_NOT_FOUND);
    cr_assert_eq(harness_put(&harness, 0, "s", "t", "x", 1, 0, &result), STORE_CONFLICT);
    cr_assert_eq(harness_put(&harness, 1, "s", "t", "back", 0, 0, &result), STORE_OK);
    cr_assert_eq(result.version, 2);
    harness_stop(&harness);
    harness_cleanup(&harness);
}

struct scan_call {
    const char *prefix;
    uint32_t capacity;
    int count;
    bool more;
    struct store_scan_item items[8];
};

static void scan_run(struct harness *harness, void *argument)
{
    struct scan_call *call = argument;
    call->count = store_scan(harness->store, "app", 3, call->prefix, strlen(call->prefix),
                             call->items, call->capacity, &call->more);
}

Test(store_scan, prefix_scan_across_shards_is_bounded)
{
    struct harness harness;
    harness_init(&harness, 2);
    cr_assert_eq(harness_start(&harness), 0);
    const char *keys[] = {"user/1", "user/2", "user/3", "user/4", "user/5", "other", "use"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        cr_assert_eq(harness_put(&harness, 0, "app", keys[i], "v", 0, 0, &result), STORE_OK);
    }
    cr_assert_eq(harness_put(&harness, 0, "app2", "user/9", "v", 0, 0, &result), STORE_OK);
    cr_assert_eq(harness_delete(&harness, 1, "app", "user/5", 1, &result), STORE_OK);
    struct scan_call call = {.prefix = "user/", .capacity = 8};
    harness_run(&harness, 1, scan_run, &call);
    cr_assert_eq(call.count, 4);
    cr_assert(!call.more);
    for (int i = 0; i < call.count; i++) {
        cr_assert_eq(memcmp(call.items[i].key, "user/", 5), 0);
        cr_assert_eq(call.items[i].key_length, 6);
        cr_assert_eq(call.items[i].version, 1);
    }
    struct scan_call small = {.prefix = "user/", .capacity = 2};
    harness_run(&harness, 0, scan_run, &small);
    cr_assert_eq(small.count, 2);
    cr_assert(small.more);
    harness_stop(&harness);
    harness_cleanup(&harness);
}

struct append_call {
    struct store_request request;
    int done;
    int status;
    uint64_t version;
    enum store_record_type type;
};

static void append_callback(struct store_request *request, const struct store_result *outcome)
{
    struct append_call *call = request->context;
    call->status = outcome->status;
    call->version = outcome->version;
    call->type = outcome->type;
    __atomic_store_n(&call->done, 1, __ATOMIC_RELEASE);
}

static void append_run(struct harness *harness, void *argument)
{
    struct append_call *call = argument;
    struct store_key key = {"inv", 3, "42/step/1", 9};
    int started = store_append(harness->store, &call->request, STORE_RECORD_STEP_COMPLETED, key,
                               "{}", 2, append_callback, call);
    cr_assert_eq(started, 0);
}

static void get_type_run(struct harness *harness, void *argument)
{
    struct append_call *call = argument;
    struct store_key key = {"inv", 3, "42/step/1", 9};
    cr_assert_eq(store_get(harness->store, &call->request, key, append_callback, call), 0);
}

Test(store_journal, append_records_keep_their_type_across_restart)
{
    struct harness harness;
    harness_init(&harness, 2);
    cr_assert_eq(harness_start(&harness), 0);
    struct append_call call = {0};
    harness_run(&harness, 1, append_run, &call);
    while (!__atomic_load_n(&call.done, __ATOMIC_ACQUIRE)) {
        pause_ms(1);
    }
    cr_assert_eq(call.status, STORE_OK);
    cr_assert_eq(call.version, 1);
    harness_stop(&harness);
    cr_assert_eq(harness_start(&harness), 0);
    struct append_call read = {0};
    harness_run(&harness, 0, get_type_run, &read);
    while (!__atomic_load_n(&read.done, __ATOMIC_ACQUIRE)) {
        pause_ms(1);
    }
    cr_assert_eq(read.status, STORE_OK);
    cr_assert_eq(read.type, STORE_RECORD_STEP_COMPLETED);
    harness_stop(&harness);
    harness_cleanup(&harness);
}
