/* The store across reactors: writes travel to the owner by message and their results come
 * back; readers on other reactors use the lock-free path while the owner writes, evicts and
 * compacts. Also run under ThreadSanitizer (make test-tsan). */

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/unit/test_store_harness.h"

#define CROSSCORE_KEYS 8
#define CROSSCORE_READS_PER_TICK 500

static struct harness_result result;

Test(crosscore_store, writes_from_every_core_reach_the_owner)
{
    struct harness harness;
    harness_init(&harness, 3);
    cr_assert_eq(harness_start(&harness), 0);
    for (uint32_t owner = 0; owner < 3; owner++) {
        char key[32];
        harness_key_on_shard(&harness, "x", owner, 0, key, sizeof(key));
        uint64_t version = 0;
        for (uint32_t from = 0; from < 3; from++) {
            cr_assert_eq(harness_put(&harness, from, "x", key, "v", version, 0, &result),
                         STORE_OK);
            cr_assert_eq(result.version, version + 1);
            version = result.version;
            cr_assert_eq(harness_put(&harness, (from + 1) % 3, "x", key, "v", 0, 0, &result),
                         STORE_CONFLICT);
            cr_assert_eq(result.version, version);
        }
        for (uint32_t from = 0; from < 3; from++) {
            cr_assert_eq(harness_get(&harness, from, "x", key, &result), STORE_OK);
            cr_assert_eq(result.version, 3);
        }
    }
    harness_stop(&harness);
    harness_cleanup(&harness);
}

struct reader {
    struct harness *harness;
    char keys[CROSSCORE_KEYS][32];
    uint64_t reads;
    uint64_t hits;
    uint64_t misses;
    uint64_t inconsistent;
    int stop;
};

static struct reader reader;

static void reader_hook(struct reactor *reactor, void *context)
{
    struct reader *state = context;
    (void)reactor;
    if (__atomic_load_n(&state->stop, __ATOMIC_ACQUIRE)) {
        return;
    }
    char buffer[512];
    for (uint32_t i = 0; i < CROSSCORE_READS_PER_TICK; i++) {
        const char *name = state->keys[i % CROSSCORE_KEYS];
        struct store_key key = {"cc", 2, name, strlen(name)};
        struct store_result found;
        int status = store_get_local(state->harness->store, key, buffer, sizeof(buffer), &found);
        state->reads++;
        if (status == STORE_OK) {
            char expected[32];
            int length = snprintf(expected, sizeof(expected), "v%" PRIu64 ";", found.version);
            state->hits++;
            if (found.value_length < (size_t)length || memcmp(buffer, expected, length) != 0) {
                state->inconsistent++;
            }
        } else if (status == -EWOULDBLOCK) {
            state->misses++;
        }
    }
}

static void reader_install(struct harness *harness, void *argument)
{
    (void)harness;
    reactor_hook_add(reactor_current(), (struct reactor_hook){.run = reader_hook,
                                                              .context = argument});
}

static void reader_stop(struct harness *harness, void *argument)
{
    struct reader *state = argument;
    (void)harness;
    __atomic_store_n(&state->stop, 1, __ATOMIC_RELEASE);
}

Test(crosscore_store, lock_free_readers_while_the_owner_writes_evicts_and_compacts)
{
    struct harness harness;
    harness_init(&harness, 2);
    harness.config.store.segment_bytes = 8192;
    harness.config.store.cache_bytes = 4096;
    harness.config.durability.default_mode = CONFIG_DURABILITY_ASYNC;
    cr_assert_eq(harness_start(&harness), 0);
    memset(&reader, 0, sizeof(reader));
    reader.harness = &harness;
    uint32_t next = 0;
    for (uint32_t i = 0; i < CROSSCORE_KEYS; i++) {
        next = 1 + harness_key_on_shard(&harness, "cc", 0, next, reader.keys[i],
                                        sizeof(reader.keys[i]));
    }
    harness_run(&harness, 1, reader_install, &reader);
    uint64_t versions[CROSSCORE_KEYS] = {0};
    char value[300];
    for (uint32_t round = 0; round < 300; round++) {
        for (uint32_t i = 0; i < CROSSCORE_KEYS; i++) {
            memset(value, 'p', sizeof(value) - 1);
            value[sizeof(value) - 1] = '\0';
            int length = snprintf(value, sizeof(value), "v%" PRIu64 ";", versions[i] + 1);
            value[length] = 'p';
            cr_assert_eq(harness_put(&harness, 0, "cc", reader.keys[i], value, versions[i], 0,
                                     &result),
                         STORE_OK);
            versions[i] = result.version;
        }
    }
    harness_run(&harness, 1, reader_stop, &reader);
    cr_assert_eq(reader.inconsistent, 0);
    cr_assert(reader.hits > 0, "readers saw values (%" PRIu64 " reads)", reader.reads);
    uint32_t files = 0;
    cr_assert(harness_segment_bytes(&harness, &files) < 64 * 8192, "compaction kept up");
    harness_stop(&harness);
    harness_cleanup(&harness);
}
