/* Zeros written ahead of the active segment (store/prefill.h): they run ahead while the
 * store appends, a clean stop trims them, and recovery reads a zero tail (what a kill leaves)
 * as the end of the records, not as damage, with or without a hint. */

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/metrics.h"
#include "store/prefill.h"
#include "store/shard.h"
#include "tests/unit/test_store_harness.h"

#define PREFILL_KEYS 40u
#define PREFILL_VALUE_BYTES 900u

static struct harness_result result;

static void prefill_value(char *value, uint32_t key, uint32_t round)
{
    char prefix[24];
    int length = snprintf(prefix, sizeof(prefix), "k%u-r%u:", key, round);
    memset(value, 'a' + (int)((key + round) % 26), PREFILL_VALUE_BYTES);
    memcpy(value, prefix, (size_t)length);
    value[PREFILL_VALUE_BYTES] = '\0';
}

static void prefill_put_all(struct harness *harness, uint32_t round)
{
    char key[16];
    char value[PREFILL_VALUE_BYTES + 1];
    for (uint32_t i = 0; i < PREFILL_KEYS; i++) {
        snprintf(key, sizeof(key), "k%u", i);
        prefill_value(value, i, round);
        cr_assert_eq(harness_put(harness, 0, "z", key, value, STORE_VERSION_ANY, 0, &result),
                     STORE_OK);
    }
}

static void prefill_check_all(struct harness *harness, uint32_t round)
{
    char key[16];
    char value[PREFILL_VALUE_BYTES + 1];
    for (uint32_t i = 0; i < PREFILL_KEYS; i++) {
        snprintf(key, sizeof(key), "k%u", i);
        prefill_value(value, i, round);
        cr_assert_eq(harness_get(harness, 0, "z", key, &result), STORE_OK, "%s missing", key);
        cr_assert_eq(result.value_length, PREFILL_VALUE_BYTES);
        cr_assert_eq(memcmp(result.value, value, PREFILL_VALUE_BYTES), 0, "%s differs", key);
    }
}

static off_t prefill_file_size(const char *path)
{
    struct stat status;
    cr_assert_eq(stat(path, &status), 0, "%s", path);
    return status.st_size;
}

static void prefill_segment_path(const struct harness *harness, uint32_t id, char *path,
                                 size_t length)
{
    snprintf(path, length, "%s/shard-0/segment-%010u.log", harness->config.data_dir, id);
}

/* What a SIGKILL leaves behind the records: zeros, or (damage) anything else. */
static void prefill_append(const char *path, uint8_t byte, size_t length)
{
    uint8_t *bytes = malloc(length);
    cr_assert_not_null(bytes);
    memset(bytes, byte, length);
    int fd = open(path, O_WRONLY | O_APPEND);
    cr_assert(fd >= 0, "%s", path);
    cr_assert_eq(write(fd, bytes, length), (ssize_t)length);
    close(fd);
    free(bytes);
}

static int64_t prefill_metric(struct harness *harness, int series)
{
    return metrics_value(harness->metrics, series);
}

Test(store_prefill, zeros_run_ahead_while_appending_and_a_clean_stop_trims_them)
{
    struct harness harness;
    harness_init(&harness, 1);
    cr_assert_eq(harness_start(&harness), 0);
    prefill_put_all(&harness, 1);
    char path[700];
    prefill_segment_path(&harness, 1, path, sizeof(path));
    for (int wait = 0; wait < 400 && prefill_file_size(path) < STORE_PREFILL_GAP_BYTES; wait++) {
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    }
    cr_assert_geq(prefill_file_size(path), STORE_PREFILL_GAP_BYTES, "zeros went ahead");
    cr_assert_gt(prefill_metric(&harness, harness.store->stats.prefilled_bytes), 0);
    harness_stop(&harness);
    off_t records = prefill_file_size(path);
    cr_assert_lt(records, STORE_PREFILL_GAP_BYTES, "the stop trimmed the zeros");
    cr_assert_geq(records, PREFILL_KEYS * PREFILL_VALUE_BYTES);
    cr_assert_eq(harness_start(&harness), 0);
    prefill_check_all(&harness, 1);
    harness_stop(&harness);
    harness_cleanup(&harness);
}

Test(store_prefill, an_all_async_store_writes_no_zeros)
{
    struct harness harness;
    harness_init(&harness, 1);
    harness.config.durability.default_mode = CONFIG_DURABILITY_ASYNC;
    cr_assert_eq(harness_start(&harness), 0);
    prefill_put_all(&harness, 1);
    nanosleep(&(struct timespec){0, 50000000}, NULL);
    cr_assert_eq(prefill_metric(&harness, harness.store->stats.prefilled_bytes), 0);
    char path[700];
    prefill_segment_path(&harness, 1, path, sizeof(path));
    cr_assert_lt(prefill_file_size(path), STORE_PREFILL_GAP_BYTES);
    harness_stop(&harness);
    harness_cleanup(&harness);
}

Test(store_prefill, a_zero_tail_left_by_a_kill_ends_the_records_without_loss_or_damage)
{
    struct harness harness;
    harness_init(&harness, 1);
    cr_assert_eq(harness_start(&harness), 0);
    prefill_put_all(&harness, 1);
    harness_stop(&harness);
    char path[700];
    prefill_segment_path(&harness, 1, path, sizeof(path));
    off_t records = prefill_file_size(path);
    prefill_append(path, 0, 2u << 20);
    cr_assert_eq(harness_start(&harness), 0);
    prefill_check_all(&harness, 1);
    cr_assert_eq(prefill_metric(&harness, harness.store->stats.bytes_truncated), 0,
                 "zeros are not a torn tail");
    prefill_put_all(&harness, 2);
    harness_stop(&harness);
    cr_assert_gt(prefill_file_size(path), records, "new records follow the old ones");
    cr_assert_eq(harness_start(&harness), 0);
    prefill_check_all(&harness, 2);
    harness_stop(&harness);
    harness_cleanup(&harness);
}

/* Segments of 384 KiB: each takes zeros ahead past its records before it is sealed. */
static void prefill_sealed_case(uint8_t tail_byte)
{
    struct harness harness;
    harness_init(&harness, 1);
    harness.config.store.segment_bytes = 384u << 10;
    harness.config.store.compact_dead_percent = 100; /* keep every segment */
    cr_assert_eq(harness_start(&harness), 0);
    for (uint32_t round = 1; round <= 30; round++) {
        prefill_put_all(&harness, round);
    }
    nanosleep(&(struct timespec){0, 100000000}, NULL); /* the hints of sealed segments */
    harness_stop(&harness);
    char path[700];
    char hint[700];
    prefill_segment_path(&harness, 1, path, sizeof(path));
    snprintf(hint, sizeof(hint), "%s/shard-0/segment-%010u.hint", harness.config.data_dir, 1u);
    cr_assert_eq(access(hint, F_OK), 0, "the first segment is sealed and hinted");
    off_t records = prefill_file_size(path);
    prefill_append(path, tail_byte, 64u << 10);
    cr_assert_eq(harness_start(&harness), 0);
    prefill_check_all(&harness, 30);
    int64_t truncated = prefill_metric(&harness, harness.store->stats.bytes_truncated);
    if (tail_byte == 0) {
        cr_assert_eq(truncated, 0, "the hint stands: the zeros follow its records");
    } else {
        cr_assert_eq(truncated, 64 << 10, "the hint is refused and the scan cuts the tail");
    }
    harness_stop(&harness);
    /* A scan would have cut the zeros too; with the hint they stay, harmless. */
    cr_assert_eq(prefill_file_size(path), records + (tail_byte == 0 ? 64 << 10 : 0));
    harness_cleanup(&harness);
}

Test(store_prefill, a_hinted_segment_followed_by_zeros_keeps_its_hint)
{
    prefill_sealed_case(0);
}

Test(store_prefill, a_hinted_segment_followed_by_garbage_is_scanned_and_cut)
{
    prefill_sealed_case(0x5a);
}
