/* The store's disk paths: cache misses read from segments, torn and corrupt tails, hint
 * files, compaction under overwrite load, and injected I/O faults. */

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/test_store_harness.h"

static struct harness_result result;

static void disk_pause_ms(long milliseconds)
{
    struct timespec pause = {.tv_sec = milliseconds / 1000,
                             .tv_nsec = (milliseconds % 1000) * 1000000};
    nanosleep(&pause, NULL);
}

static void disk_value(char *value, size_t length, uint32_t key, uint32_t round)
{
    memset(value, 'a' + (int)(key % 26), length - 1);
    snprintf(value, length, "key %u round %u ", key, round);
    value[strlen(value)] = '.';
    value[length - 1] = '\0';
}

static void disk_put_all(struct harness *harness, uint32_t keys, uint32_t round,
                         size_t value_length)
{
    char key[32];
    char value[1200];
    cr_assert(value_length < sizeof(value));
    for (uint32_t i = 0; i < keys; i++) {
        snprintf(key, sizeof(key), "key-%u", i);
        disk_value(value, value_length + 1, i, round);
        cr_assert_eq(harness_put(harness, i % harness->reactors, "d", key, value,
                                 STORE_VERSION_ANY, 0, &result),
                     STORE_OK);
    }
}

static void disk_check_all(struct harness *harness, uint32_t keys, uint32_t round,
                           size_t value_length)
{
    char key[32];
    char value[1200];
    for (uint32_t i = 0; i < keys; i++) {
        snprintf(key, sizeof(key), "key-%u", i);
        disk_value(value, value_length + 1, i, round);
        cr_assert_eq(harness_get(harness, (i + 1) % harness->reactors, "d", key, &result),
                     STORE_OK, "key-%u missing", i);
        cr_assert_eq(result.value_length, value_length);
        cr_assert_eq(memcmp(result.value, value, value_length), 0, "key-%u differs", i);
    }
}

struct local_probe {
    const char *key;
    int status;
};

static void local_probe_run(struct harness *harness, void *argument)
{
    struct local_probe *probe = argument;
    char buffer[2048];
    struct store_result local;
    struct store_key key = {"d", 1, probe->key, strlen(probe->key)};
    probe->status = store_get_local(harness->store, key, buffer, sizeof(buffer), &local);
}

Test(store_cache, tiny_cache_reads_values_back_from_segments)
{
    struct harness harness;
    harness_init(&harness, 2);
    harness.config.store.cache_bytes = 4096;
    cr_assert_eq(harness_start(&harness), 0);
    disk_put_all(&harness, 64, 1, 1000);
    disk_pause_ms(50); /* a few ticks: values on disk get dropped from memory */
    struct local_probe probe = {.key = "key-0"};
    harness_run(&harness, 0, local_probe_run, &probe);
    cr_assert_eq(probe.status, -EWOULDBLOCK, "the oldest value left memory");
    disk_check_all(&harness, 64, 1, 1000);
    harness_stop(&harness);
    cr_assert_eq(harness_start(&harness), 0);
    disk_check_all(&harness, 64, 1, 1000);
    harness_stop(&harness);
    harness_cleanup(&harness);
}

static void disk_flip_byte(const char *path, off_t offset)
{
    int fd = open(path, O_RDWR);
    cr_assert(fd >= 0, "open %s", path);
    uint8_t byte = 0;
    cr_assert_eq(pread(fd, &byte, 1, offset), 1);
    byte ^= 0x40;
    cr_assert_eq(pwrite(fd, &byte, 1, offset), 1);
    close(fd);
}

static off_t disk_file_size(const char *path)
{
    struct stat status;
    cr_assert_eq(stat(path, &status), 0);
    return status.st_size;
}

Test(store_recovery, torn_tail_is_truncated_at_the_last_good_record)
{
    struct harness harness;
    harness_init(&harness, 1);
    cr_assert_eq(harness_start(&harness), 0);
    disk_put_all(&harness, 10, 1, 100);
    harness_stop(&harness);
    char path[700];
    harness_last_segment(&harness, 0, path, sizeof(path));
    off_t good = disk_file_size(path);
    int fd = open(path, O_WRONLY | O_APPEND);
    cr_assert(fd >= 0);
    uint8_t torn[70];
    memset(torn, 0x5a, sizeof(torn));
    cr_assert_eq(write(fd, torn, sizeof(torn)), (ssize_t)sizeof(torn));
    close(fd);
    cr_assert_eq(harness_start(&harness), 0);
    disk_check_all(&harness, 10, 1, 100);
    /* Measured stopped: a running store writes zeros ahead of its records (prefill.h). */
    harness_stop(&harness);
    cr_assert_eq(disk_file_size(path), good, "the torn tail was cut");
    cr_assert_eq(harness_start(&harness), 0);
    disk_put_all(&harness, 10, 2, 100);
    harness_stop(&harness);
    cr_assert_eq(harness_start(&harness), 0);
    disk_check_all(&harness, 10, 2, 100);
    harness_stop(&harness);
    harness_cleanup(&harness);
}

Test(store_recovery, bit_flip_drops_the_record_and_everything_after_it)
{
    struct harness harness;
    harness_init(&harness, 1);
    cr_assert_eq(harness_start(&harness), 0);
    disk_put_all(&harness, 10, 1, 100);
    cr_assert_eq(harness_put(&harness, 0, "d", "last", "final words", 0, 0, &result), STORE_OK);
    harness_stop(&harness);
    char path[700];
    harness_last_segment(&harness, 0, path, sizeof(path));
    off_t size = disk_file_size(path);
    disk_flip_byte(path, size - 3); /* inside the last record's value */
    cr_assert_eq(harness_start(&harness), 0);
    cr_assert_eq(harness_get(&harness, 0, "d", "last", &result), STORE_NOT_FOUND,
                 "a record with a bad CRC is never served");
    disk_check_all(&harness, 10, 1, 100);
    harness_stop(&harness);
    cr_assert(disk_file_size(path) < size);
    harness_cleanup(&harness);
}

static uint32_t disk_count_files(const struct harness *harness, const char *suffix)
{
    char command[800];
    snprintf(command, sizeof(command), "ls %s/shard-*/ | grep -c '%s$'",
             harness->config.data_dir, suffix);
    FILE *pipe = popen(command, "r");
    cr_assert_not_null(pipe);
    unsigned count = 0;
    cr_assert_eq(fscanf(pipe, "%u", &count), 1);
    pclose(pipe);
    return count;
}

Test(store_recovery, hint_files_rebuild_the_index_and_bad_hints_fall_back_to_scans)
{
    struct harness harness;
    harness_init(&harness, 2);
    harness.config.store.segment_bytes = 8192;
    harness.config.store.compact_dead_percent = 100; /* keep every segment for this test */
    cr_assert_eq(harness_start(&harness), 0);
    disk_put_all(&harness, 200, 1, 300);
    disk_pause_ms(100);
    harness_stop(&harness);
    uint32_t hints = disk_count_files(&harness, ".hint");
    cr_assert(hints >= 4, "sealed segments have hints (%u)", hints);
    cr_assert_eq(harness_start(&harness), 0);
    disk_check_all(&harness, 200, 1, 300);
    harness_stop(&harness);
    char command[800];
    snprintf(command, sizeof(command),
             "for f in %s/shard-*/*.hint; do printf 'garbage' | dd of=$f bs=1 seek=40 "
             "conv=notrunc status=none; done", harness.config.data_dir);
    cr_assert_eq(system(command), 0);
    cr_assert_eq(harness_start(&harness), 0);
    disk_check_all(&harness, 200, 1, 300);
    harness_stop(&harness);
    harness_cleanup(&harness);
}

/* Hints are built from the records written into each segment (or from the index once a
 * segment holds more records than there are keys): overwrites inside a segment, keys moving
 * on to later segments and tombstones must all come back exactly. */
Test(store_recovery, hints_of_overwritten_and_deleted_keys_restore_the_latest_versions)
{
    struct harness harness;
    harness_init(&harness, 2);
    harness.config.store.segment_bytes = 8192;
    harness.config.store.compact_dead_percent = 100; /* keep every segment for this test */
    cr_assert_eq(harness_start(&harness), 0);
    disk_put_all(&harness, 200, 1, 300);
    for (uint32_t round = 2; round <= 4; round++) {
        disk_put_all(&harness, 10, round, 300); /* keys 0-9 again, several per segment */
    }
    char key[32];
    for (uint32_t i = 10; i < 20; i++) {
        snprintf(key, sizeof(key), "key-%u", i);
        cr_assert_eq(harness_delete(&harness, 0, "d", key, STORE_VERSION_ANY, &result),
                     STORE_OK);
    }
    disk_put_all(&harness, 3, 5, 40); /* small records: more records than keys in a segment */
    for (uint32_t round = 6; round <= 60; round++) {
        disk_put_all(&harness, 3, round, 40);
    }
    disk_pause_ms(100);
    harness_stop(&harness);
    cr_assert(disk_count_files(&harness, ".hint") >= 8, "sealed segments have hints");
    cr_assert_eq(harness_start(&harness), 0);
    disk_check_all(&harness, 3, 60, 40);
    for (uint32_t i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "key-%u", i);
        int status = harness_get(&harness, i % 2, "d", key, &result);
        uint64_t version = i < 3 ? 60 : i < 10 ? 4 : 1;
        if (i >= 10 && i < 20) {
            cr_assert_eq(status, STORE_NOT_FOUND, "key-%u was deleted", i);
        } else {
            cr_assert_eq(status, STORE_OK, "key-%u missing", i);
            cr_assert_eq(result.version, version, "key-%u at version %llu", i,
                         (unsigned long long)result.version);
            char value[301];
            disk_value(value, sizeof(value), i, i < 10 ? 4 : 1);
            cr_assert(i < 3 || (result.value_length == 300 &&
                                memcmp(result.value, value, 300) == 0), "key-%u differs", i);
        }
    }
    harness_stop(&harness);
    harness_cleanup(&harness);
}

Test(store_compaction, overwrite_heavy_load_keeps_disk_use_bounded)
{
    struct harness harness;
    harness_init(&harness, 2);
    harness.config.store.segment_bytes = 16384;
    harness.config.store.cache_bytes = 8192;
    harness.config.durability.default_mode = CONFIG_DURABILITY_ASYNC;
    cr_assert_eq(harness_start(&harness), 0);
    uint32_t files = 0;
    uint64_t peak = 0;
    const uint64_t bound = 40 * 16384; /* live data is ~6 KiB; 40 segments is generous */
    for (uint32_t round = 1; round <= 150; round++) {
        disk_put_all(&harness, 20, round, 200);
        uint64_t bytes = harness_segment_bytes(&harness, &files);
        peak = bytes > peak ? bytes : peak;
    }
    cr_assert(peak < bound, "disk use peaked at %llu bytes", (unsigned long long)peak);
    for (int wait = 0; wait < 200 && harness_segment_bytes(&harness, &files) > 8 * 16384;
         wait++) {
        disk_pause_ms(10);
    }
    uint64_t settled = harness_segment_bytes(&harness, &files);
    cr_assert(settled <= 8 * 16384, "compaction settles disk use (%llu bytes in %u files)",
              (unsigned long long)settled, files);
    disk_check_all(&harness, 20, 150, 200);
    harness_stop(&harness);
    cr_assert_eq(harness_start(&harness), 0);
    disk_check_all(&harness, 20, 150, 200);
    harness_stop(&harness);
    harness_cleanup(&harness);
}

static void fault_arm(struct harness *harness, void *argument)
{
    int *error = argument;
    store_fault_inject(harness->store, 1, *error);
}

static void fault_case(int error)
{
    struct harness harness;
    harness_init(&harness, 1);
    cr_assert_eq(harness_start(&harness), 0);
    cr_assert_eq(harness_put(&harness, 0, "f", "k", "before", 0, 0, &result), STORE_OK);
    harness_run(&harness, 0, fault_arm, &error);
    cr_assert_eq(harness_put(&harness, 0, "f", "k", "lost", 1, 0, &result), error);
    cr_assert_eq(harness_get(&harness, 0, "f", "k", &result), STORE_OK);
    cr_assert_eq(result.version, 1, "the failed write was undone");
    cr_assert_eq(memcmp(result.value, "before", 6), 0);
    cr_assert_eq(harness_put(&harness, 0, "f", "other", "x", 0, 0, &result), error,
                 "the shard refuses writes after a disk error");
    harness_stop(&harness);
    /* A failed write's outcome is unknown, as with any I/O error: the injected fault hides
     * a write the kernel did make. Either version may come back, but whole and consistent. */
    cr_assert_eq(harness_start(&harness), 0);
    cr_assert_eq(harness_get(&harness, 0, "f", "k", &result), STORE_OK);
    cr_assert(result.version == 1 || result.version == 2);
    cr_assert_eq(memcmp(result.value, result.version == 1 ? "before" : "lost", 4), 0);
    cr_assert_eq(harness_put(&harness, 0, "f", "k", "after", result.version, 0, &result),
                 STORE_OK);
    harness_stop(&harness);
    harness_cleanup(&harness);
}

Test(store_fault, eio_on_a_segment_write_fails_the_write_and_keeps_the_store_consistent)
{
    fault_case(-EIO);
}

Test(store_fault, enospc_on_a_segment_write_fails_the_write_and_keeps_the_store_consistent)
{
    fault_case(-ENOSPC);
}

struct fault_sweep_arm {
    uint32_t countdown;
    int error;
};

static void fault_sweep_arm_run(struct harness *harness, void *argument)
{
    struct fault_sweep_arm *arm = argument;
    store_fault_inject(harness->store, arm->countdown, arm->error);
}

/* SQLite's FAULTSIM loop: fail the Nth disk completion for N = 1, 2, ... Every acknowledged
 * write must read back before and after a restart; after the first failure the shard
 * refuses writes; a failed write never shows up before the restart. */
Test(store_fault, each_disk_completion_in_turn_fails_cleanly)
{
    for (uint32_t countdown = 1; countdown <= 6; countdown++) {
        struct harness harness;
        harness_init(&harness, 1);
        cr_assert_eq(harness_start(&harness), 0);
        struct fault_sweep_arm arm = {countdown, -EIO};
        harness_run(&harness, 0, fault_sweep_arm_run, &arm);
        bool acked[6] = {false};
        bool failed = false;
        char key[16];
        for (uint32_t i = 0; i < 6; i++) {
            snprintf(key, sizeof(key), "k%u", i);
            int status = harness_put(&harness, 0, "f", key, key, 0, 0, &result);
            cr_assert(status == STORE_OK || status == -EIO);
            cr_assert(!failed || status == -EIO, "writes stay refused after a failure");
            acked[i] = status == STORE_OK;
            failed = failed || status == -EIO;
        }
        for (uint32_t i = 0; i < 6; i++) {
            snprintf(key, sizeof(key), "k%u", i);
            int status = harness_get(&harness, 0, "f", key, &result);
            cr_assert_eq(status, acked[i] ? STORE_OK : STORE_NOT_FOUND, "N=%u k%u", countdown, i);
        }
        harness_run(&harness, 0, fault_sweep_arm_run, &(struct fault_sweep_arm){0, 0});
        harness_stop(&harness);
        cr_assert_eq(harness_start(&harness), 0);
        for (uint32_t i = 0; i < 6; i++) {
            snprintf(key, sizeof(key), "k%u", i);
            if (acked[i]) {
                cr_assert_eq(harness_get(&harness, 0, "f", key, &result), STORE_OK);
                cr_assert_eq(memcmp(result.value, key, strlen(key)), 0);
            }
        }
        harness_stop(&harness);
        harness_cleanup(&harness);
    }
}
