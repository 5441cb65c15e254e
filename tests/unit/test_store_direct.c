/* Direct group-commit writes (store/direct.h): sync batches go to the segment with O_DIRECT
 * in whole blocks, each repeating the bytes before it in its first block and padding its last
 * with zeros. Every batch below is one waited sync put, so batch boundaries fall anywhere in
 * a block; what is read back after a restart comes from the files the direct writes made. */

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/metrics.h"
#include "store/shard.h"
#include "tests/unit/test_store_harness.h"

#define DIRECT_KEYS 300u
#define DIRECT_VALUE_MAX 3001u

static struct harness_result result;

/* Key k<key> and its value for the round; lengths from 1 to DIRECT_VALUE_MAX bytes, so records
 * end at every offset of a block. */
static uint32_t direct_entry(char key_name[16], char *value, uint32_t key, uint32_t round)
{
    snprintf(key_name, 16, "k%u", key);
    uint32_t length = (key * 37u + round * 11u) % DIRECT_VALUE_MAX + 1u;
    for (uint32_t i = 0; i < length; i++) {
        value[i] = (char)('a' + (key + round + i) % 26u);
    }
    return length;
}

static void direct_put_range(struct harness *harness, uint32_t first, uint32_t count,
                             uint32_t round)
{
    char key[16];
    static char value[DIRECT_VALUE_MAX];
    for (uint32_t i = first; i < first + count; i++) {
        uint32_t length = direct_entry(key, value, i, round);
        cr_assert_eq(harness_put_bytes(harness, 0, "d", key, value, length, STORE_VERSION_ANY,
                                       &result),
                     STORE_OK);
    }
}

static void direct_check_range(struct harness *harness, uint32_t first, uint32_t count,
                               uint32_t round)
{
    char key[16];
    static char value[DIRECT_VALUE_MAX];
    for (uint32_t i = first; i < first + count; i++) {
        uint32_t length = direct_entry(key, value, i, round);
        cr_assert_eq(harness_get(harness, 0, "d", key, &result), STORE_OK, "%s missing", key);
        cr_assert_eq(result.value_length, length, "%s length", key);
        cr_assert_eq(memcmp(result.value, value, length), 0, "%s differs", key);
    }
}

static int64_t direct_writes(struct harness *harness)
{
    return metrics_value(harness->metrics, harness->store->stats.direct_writes);
}

Test(store_direct, sync_batches_go_direct_and_read_back_after_a_restart)
{
    struct harness harness;
    harness_init(&harness, 1);
    cr_assert_eq(harness_start(&harness), 0);
    direct_put_range(&harness, 0, DIRECT_KEYS, 1);
    cr_assert_geq(direct_writes(&harness), DIRECT_KEYS, "one direct write per waited put");
    int64_t written = metrics_value(harness.metrics, harness.store->stats.bytes_written);
    harness_stop(&harness);
    uint32_t files = 0;
    cr_assert_eq(harness_segment_bytes(&harness, &files), (uint64_t)written,
                 "the stop leaves the records and nothing after them");
    cr_assert_eq(harness_start(&harness), 0);
    direct_check_range(&harness, 0, DIRECT_KEYS, 1);
    harness_stop(&harness);
    harness_cleanup(&harness);
}

Test(store_direct, a_restart_goes_on_writing_inside_the_last_partial_block)
{
    struct harness harness;
    harness_init(&harness, 1);
    for (uint32_t round = 0; round < 4; round++) {
        cr_assert_eq(harness_start(&harness), 0);
        if (round > 0) {
            direct_check_range(&harness, 0, round * 25, 1);
        }
        direct_put_range(&harness, round * 25, 25, 1);
        harness_stop(&harness);
        uint32_t files = 0;
        cr_assert_neq(harness_segment_bytes(&harness, &files) % 4096, 0,
                      "the records end inside a block (the case under test)");
    }
    cr_assert_eq(harness_start(&harness), 0);
    direct_check_range(&harness, 0, 100, 1);
    harness_stop(&harness);
    harness_cleanup(&harness);
}

Test(store_direct, segment_rolls_keep_every_record)
{
    struct harness harness;
    harness_init(&harness, 1);
    harness.config.store.segment_bytes = 20000;
    cr_assert_eq(harness_start(&harness), 0);
    direct_put_range(&harness, 0, DIRECT_KEYS, 1);
    direct_put_range(&harness, 0, DIRECT_KEYS / 2, 2);
    harness_stop(&harness);
    uint32_t files = 0;
    harness_segment_bytes(&harness, &files);
    cr_assert_gt(files, 10, "many segments rolled");
    cr_assert_eq(harness_start(&harness), 0);
    direct_check_range(&harness, 0, DIRECT_KEYS / 2, 2);
    direct_check_range(&harness, DIRECT_KEYS / 2, DIRECT_KEYS / 2, 1);
    harness_stop(&harness);
    harness_cleanup(&harness);
}

static void direct_copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert(in >= 0 && out >= 0, "%s -> %s", from, to);
    char buffer[65536];
    ssize_t got;
    while ((got = read(in, buffer, sizeof(buffer))) > 0) {
        cr_assert_eq(write(out, buffer, (size_t)got), got);
    }
    cr_assert_eq(got, 0);
    close(in);
    close(out);
}

/* The files as a kill leaves them: copied while the store runs, zeros ahead and all. */
static void direct_copy_shard(const struct harness *harness, const char *to_data_dir)
{
    char from[700], to[700];
    snprintf(from, sizeof(from), "%s/shard-0", harness->config.data_dir);
    snprintf(to, sizeof(to), "%s/shard-0", to_data_dir);
    cr_assert_eq(mkdir(to_data_dir, 0755), 0);
    cr_assert_eq(mkdir(to, 0755), 0);
    DIR *directory = opendir(from);
    cr_assert_not_null(directory);
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
        if (entry->d_name[0] == '.') {
            continue;
        }
        char source[1024], target[1024];
        snprintf(source, sizeof(source), "%s/%s", from, entry->d_name);
        snprintf(target, sizeof(target), "%s/%s", to, entry->d_name);
        direct_copy_file(source, target);
    }
    closedir(directory);
}

Test(store_direct, files_copied_while_running_hold_every_acknowledged_write)
{
    struct harness harness;
    harness_init(&harness, 1);
    cr_assert_eq(harness_start(&harness), 0);
    direct_put_range(&harness, 0, 120, 1);
    char copy[300];
    snprintf(copy, sizeof(copy), "%s/copy", harness.directory);
    direct_copy_shard(&harness, copy);
    harness_stop(&harness);

    struct harness restarted;
    harness_init(&restarted, 1);
    snprintf(restarted.config.data_dir, sizeof(restarted.config.data_dir), "%s", copy);
    cr_assert_eq(harness_start(&restarted), 0);
    direct_check_range(&restarted, 0, 120, 1);
    cr_assert_eq(metrics_value(restarted.metrics, restarted.store->stats.bytes_truncated), 0,
                 "a zero tail is the end of the records, not damage");
    direct_put_range(&restarted, 120, 30, 1);
    harness_stop(&restarted);
    cr_assert_eq(harness_start(&restarted), 0);
    direct_check_range(&restarted, 0, 150, 1);
    harness_stop(&restarted);
    harness_cleanup(&restarted);
    harness_cleanup(&harness);
}

/* tmpfs reports no direct-I/O alignment: the store keeps buffered writes there. */
Test(store_direct, a_file_system_without_direct_writes_keeps_buffered_ones)
{
    struct stat status;
    if (stat("/dev/shm", &status) != 0 || !S_ISDIR(status.st_mode)) {
        cr_skip_test("no /dev/shm");
    }
    struct harness harness;
    harness_init(&harness, 1);
    char directory[] = "/dev/shm/rm-direct-XXXXXX"; /* mkdtemp's template */
    cr_assert_not_null(mkdtemp(directory));
    snprintf(harness.config.data_dir, sizeof(harness.config.data_dir), "%s/data", directory);
    cr_assert_eq(harness_start(&harness), 0);
    direct_put_range(&harness, 0, 60, 1);
    cr_assert_eq(direct_writes(&harness), 0);
    harness_stop(&harness);
    cr_assert_eq(harness_start(&harness), 0);
    direct_check_range(&harness, 0, 60, 1);
    harness_stop(&harness);
    char command[128];
    snprintf(command, sizeof(command), "rm -rf '%s'", directory);
    cr_assert_eq(system(command), 0);
    harness_cleanup(&harness);
}
