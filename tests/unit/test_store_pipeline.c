/* Group commit with several batches in flight (store/commit.c): sync writes issued in
 * successive ticks, without waiting for each other, are answered in the order of their
 * batches, and every acknowledged one survives a restart, also when a disk completion fails
 * while other batches are in flight. */

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "store/store.h"
#include "tests/unit/test_store_harness.h"

#define PIPELINE_WAVES 16u
#define PIPELINE_WAVE_PUTS 8u
#define PIPELINE_PUTS (PIPELINE_WAVES * PIPELINE_WAVE_PUTS)

struct pipeline;

struct pipeline_put {
    struct store_request request;
    struct pipeline *pipeline;
    uint32_t wave;
    char key[16];
    int status; /* written before `answered`, read after it */
    uint32_t order;
    int answered;
};

struct pipeline {
    struct pipeline_put puts[PIPELINE_PUTS];
    uint32_t issued;    /* reactor side only */
    uint32_t completed; /* atomic: answers so far, and the next answer's order */
};

static struct harness_result result;

static void pipeline_answer(struct pipeline_put *put, int status)
{
    put->status = status;
    put->order = __atomic_fetch_add(&put->pipeline->completed, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&put->answered, 1, __ATOMIC_RELEASE);
}

static void pipeline_callback(struct store_request *request, const struct store_result *answer)
{
    pipeline_answer(request->context, answer->status);
}

static void pipeline_issue_wave(struct harness *harness, void *argument)
{
    struct pipeline *pipeline = argument;
    for (uint32_t i = 0; i < PIPELINE_WAVE_PUTS; i++) {
        struct pipeline_put *put = &pipeline->puts[pipeline->issued++];
        struct store_key key = {"p", 1, put->key, strlen(put->key)};
        struct store_write write = {0, put->key, (uint32_t)strlen(put->key), 0};
        int started = store_put(harness->store, &put->request, key, &write, pipeline_callback,
                                put);
        if (started != 0) {
            pipeline_answer(put, started);
        }
    }
}

static void pipeline_run(struct harness *harness, struct pipeline *pipeline)
{
    memset(pipeline, 0, sizeof(*pipeline));
    for (uint32_t i = 0; i < PIPELINE_PUTS; i++) {
        pipeline->puts[i].pipeline = pipeline;
        pipeline->puts[i].wave = i / PIPELINE_WAVE_PUTS;
        snprintf(pipeline->puts[i].key, sizeof(pipeline->puts[i].key), "w%u", i);
    }
    for (uint32_t wave = 0; wave < PIPELINE_WAVES; wave++) {
        harness_run(harness, 0, pipeline_issue_wave, pipeline);
    }
    for (uint32_t i = 0; i < PIPELINE_PUTS; i++) {
        while (!__atomic_load_n(&pipeline->puts[i].answered, __ATOMIC_ACQUIRE)) {
            nanosleep(&(struct timespec){0, 50000}, NULL);
        }
    }
}

/* A later wave is never answered before an earlier one, and never succeeds after an earlier
 * one failed: batches retire in sequence order. */
static void pipeline_assert_order(const struct pipeline *pipeline)
{
    for (uint32_t a = 0; a < PIPELINE_PUTS; a++) {
        const struct pipeline_put *earlier = &pipeline->puts[a];
        for (uint32_t b = a + 1; b < PIPELINE_PUTS; b++) {
            const struct pipeline_put *later = &pipeline->puts[b];
            if (later->wave == earlier->wave) {
                continue;
            }
            cr_assert(earlier->status != STORE_OK || later->status != STORE_OK ||
                          earlier->order < later->order,
                      "%s answered after %s", earlier->key, later->key);
            cr_assert(earlier->status == STORE_OK || later->status != STORE_OK,
                      "%s failed but the later %s succeeded", earlier->key, later->key);
        }
    }
}

/* Acknowledged writes read back; failed ones are not there (before a restart). */
static void pipeline_assert_reads(struct harness *harness, const struct pipeline *pipeline,
                                  bool failed_absent)
{
    for (uint32_t i = 0; i < PIPELINE_PUTS; i++) {
        const struct pipeline_put *put = &pipeline->puts[i];
        int status = harness_get(harness, 0, "p", put->key, &result);
        if (put->status == STORE_OK) {
            cr_assert_eq(status, STORE_OK, "acknowledged %s is missing", put->key);
            cr_assert_eq(result.version, 1);
            cr_assert_eq(memcmp(result.value, put->key, strlen(put->key)), 0);
        } else if (failed_absent) {
            cr_assert_eq(status, STORE_NOT_FOUND, "failed %s is visible", put->key);
        }
    }
}

Test(store_pipeline, overlapping_sync_batches_answer_in_order_and_survive_a_restart)
{
    static struct pipeline pipeline;
    struct harness harness;
    harness_init(&harness, 1);
    cr_assert_eq(harness_start(&harness), 0);
    pipeline_run(&harness, &pipeline);
    for (uint32_t i = 0; i < PIPELINE_PUTS; i++) {
        cr_assert_eq(pipeline.puts[i].status, STORE_OK, "%s", pipeline.puts[i].key);
    }
    pipeline_assert_order(&pipeline);
    pipeline_assert_reads(&harness, &pipeline, true);
    harness_stop(&harness);
    cr_assert_eq(harness_start(&harness), 0);
    pipeline_assert_reads(&harness, &pipeline, true);
    harness_stop(&harness);
    harness_cleanup(&harness);
}

static void pipeline_fault_arm(struct harness *harness, void *argument)
{
    store_fault_inject(harness->store, *(uint32_t *)argument, -EIO);
}

/* The Nth disk completion fails while later batches are still writing or syncing: every
 * batch before the failed one is acknowledged, the failed one and all after it get the
 * error and are undone, and the shard refuses writes until the restart. */
Test(store_pipeline, a_failure_amid_overlapping_batches_fails_it_and_every_later_one)
{
    static struct pipeline pipeline;
    for (uint32_t countdown = 1; countdown <= 12; countdown++) {
        struct harness harness;
        harness_init(&harness, 1);
        cr_assert_eq(harness_start(&harness), 0);
        harness_run(&harness, 0, pipeline_fault_arm, &countdown);
        pipeline_run(&harness, &pipeline);
        bool failed = false;
        for (uint32_t i = 0; i < PIPELINE_PUTS; i++) {
            int status = pipeline.puts[i].status;
            cr_assert(status == STORE_OK || status == -EIO, "N=%u status %d", countdown, status);
            failed = failed || status == -EIO;
        }
        cr_assert(failed, "N=%u: one of the disk completions failed", countdown);
        pipeline_assert_order(&pipeline);
        pipeline_assert_reads(&harness, &pipeline, true);
        cr_assert_eq(harness_put(&harness, 0, "p", "after", "x", 0, 0, &result), -EIO,
                     "the shard refuses writes after a disk error");
        uint32_t off = 0;
        harness_run(&harness, 0, pipeline_fault_arm, &off);
        harness_stop(&harness);
        cr_assert_eq(harness_start(&harness), 0);
        /* A failed write's outcome is unknown (the injected fault hides a write the kernel
         * made), so only acknowledged ones are checked after the restart. */
        pipeline_assert_reads(&harness, &pipeline, false);
        harness_stop(&harness);
        harness_cleanup(&harness);
    }
}
