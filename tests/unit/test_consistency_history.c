/* The consistency checker on hand-made histories: each kind of violation it exists for is
 * detected, and a valid history full of unknown outcomes (crashes) is accepted, so a clean
 * run of the crash harness means something. Times are in milliseconds. */

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "tests/consistency_history.h"

static struct consistency_history history;
static struct consistency_report report;

static void history_setup(void) { consistency_history_init(&history, 1024); }
static void history_teardown(void) { consistency_history_free(&history); }

static void history_add(struct consistency_operation operation, uint64_t begin_ms,
                        uint64_t end_ms)
{
    operation.invoke_ns = begin_ms * 1000000;
    operation.complete_ns = end_ms * 1000000;
    cr_assert(consistency_history_append(&history, &operation));
}

/* A write of `value` over version `expected`: acknowledged (new version expected + 1) or
 * unknown (the connection died). */
static void write_op(uint64_t begin, uint64_t end, uint64_t expected, const char *value,
                     enum consistency_outcome outcome)
{
    cr_assert_neq(outcome, CONSISTENCY_FAIL, "use write_failed");
    struct consistency_operation op = {.kind = CONSISTENCY_WRITE, .outcome = (uint8_t)outcome,
                                       .expected = expected};
    if (outcome == CONSISTENCY_OK) {
        op.status = expected == 0 ? 201 : 200;
        op.version = expected + 1;
    }
    snprintf(op.value, sizeof(op.value), "%s", value);
    history_add(op, begin, end);
}

/* A write answered 412 with the version that was current instead. */
static void write_failed(uint64_t begin, uint64_t end, uint64_t expected, const char *value,
                         uint64_t current)
{
    struct consistency_operation op = {.kind = CONSISTENCY_WRITE, .outcome = CONSISTENCY_FAIL,
                                       .status = 412, .expected = expected, .version = current};
    snprintf(op.value, sizeof(op.value), "%s", value);
    history_add(op, begin, end);
}

/* A read answered (version, value); version 0 is a 404. */
static void read_op(uint64_t begin, uint64_t end, uint64_t version, const char *value,
                    bool final)
{
    struct consistency_operation op = {.kind = CONSISTENCY_READ, .outcome = CONSISTENCY_OK,
                                       .status = version > 0 ? 200 : 404, .version = version,
                                       .final = final};
    snprintf(op.value, sizeof(op.value), "%s", value);
    history_add(op, begin, end);
}

static void invoke_op(uint64_t at, const char *key, const char *id,
                      enum consistency_outcome outcome, bool final)
{
    struct consistency_operation op = {.kind = CONSISTENCY_INVOKE, .outcome = (uint8_t)outcome,
                                       .status = outcome == CONSISTENCY_OK ? 202 : 0,
                                       .final = final};
    snprintf(op.value, sizeof(op.value), "%s", key);
    snprintf(op.id, sizeof(op.id), "%s", id);
    history_add(op, at, at + 1);
}

static void invocation_get(uint64_t at, const char *id, const char *status)
{
    bool found = status != NULL;
    struct consistency_operation op = {.kind = CONSISTENCY_INVOCATION_GET,
                                       .outcome = found ? CONSISTENCY_OK : CONSISTENCY_FAIL,
                                       .status = found ? 200 : 404, .final = true};
    snprintf(op.value, sizeof(op.value), "%s", found ? status : "");
    snprintf(op.id, sizeof(op.id), "%s", id);
    history_add(op, at, at + 1);
}

static uint64_t history_check(void)
{
    uint64_t violations = consistency_check(&history, &report);
    consistency_report_print(stderr, &report, 0);
    return violations;
}

TestSuite(consistency_history, .init = history_setup, .fini = history_teardown);

Test(consistency_history, a_valid_history_with_unknown_outcomes_is_accepted)
{
    write_op(0, 10, 0, "a", CONSISTENCY_OK);      /* v1 */
    write_failed(5, 12, 0, "b", 1);               /* a concurrent create loses */
    write_op(20, 30, 1, "c", CONSISTENCY_UNKNOWN); /* crash: it did take effect (v2)... */
    read_op(40, 45, 2, "c", false);                /* ...as this read shows */
    write_op(50, 60, 2, "d", CONSISTENCY_UNKNOWN); /* crash: lost with the engine */
    read_op(70, 75, 2, "c", false);                /* after the restart */
    write_op(80, 90, 2, "e", CONSISTENCY_OK);      /* v3 again, made by another write */
    read_op(85, 88, 2, "c", false);                /* concurrent with it: may see either */
    read_op(100, 101, 3, "e", true);
    invoke_op(5, "k1", "00000000000000a1", CONSISTENCY_OK, false);
    invoke_op(50, "k2", "", CONSISTENCY_UNKNOWN, false); /* never acknowledged: no demand */
    invoke_op(100, "k1", "00000000000000a1", CONSISTENCY_OK, true);
    invocation_get(101, "00000000000000a1", "completed");
    cr_assert_eq(history_check(), 0, "%s", report.messages[0]);
    cr_assert_eq(report.keys, 1);
    cr_assert_eq(report.operations[CONSISTENCY_WRITE][CONSISTENCY_UNKNOWN], 2);
}

Test(consistency_history, a_lost_update_is_detected)
{
    write_op(0, 10, 0, "a", CONSISTENCY_OK);
    write_op(20, 30, 1, "b", CONSISTENCY_OK);
    write_op(21, 31, 1, "c", CONSISTENCY_OK); /* also replaced v1: b or c was overwritten */
    read_op(40, 41, 2, "c", true);
    cr_assert_gt(history_check(), 0);
    cr_assert_gt(report.violations[CONSISTENCY_CHECK_LOST_UPDATE], 0);
}

Test(consistency_history, a_lost_update_through_an_observed_unknown_write_is_detected)
{
    write_op(0, 10, 0, "a", CONSISTENCY_OK);
    write_op(20, 30, 1, "b", CONSISTENCY_UNKNOWN);
    read_op(31, 32, 2, "b", false); /* b took effect */
    write_op(21, 40, 1, "c", CONSISTENCY_OK);
    cr_assert_gt(history_check(), 0);
    cr_assert_gt(report.violations[CONSISTENCY_CHECK_LOST_UPDATE], 0);
}

Test(consistency_history, a_stale_read_after_a_completed_write_is_detected)
{
    write_op(0, 10, 0, "a", CONSISTENCY_OK);
    write_op(20, 30, 1, "b", CONSISTENCY_OK);
    read_op(40, 45, 1, "a", false); /* b ended before this read began */
    cr_assert_gt(history_check(), 0);
    cr_assert_gt(report.violations[CONSISTENCY_CHECK_REAL_TIME], 0);
    cr_assert_eq(report.violations[CONSISTENCY_CHECK_LOST_UPDATE], 0);
}

Test(consistency_history, a_read_of_a_failed_write_is_detected)
{
    write_op(0, 10, 0, "a", CONSISTENCY_OK);
    write_failed(20, 30, 1, "b", 2); /* the engine said no... */
    write_op(15, 25, 1, "c", CONSISTENCY_OK);
    read_op(40, 45, 2, "b", false); /* ...but b is what it serves */
    cr_assert_gt(history_check(), 0);
    cr_assert_gt(report.violations[CONSISTENCY_CHECK_FAILED_SEEN], 0);
}

Test(consistency_history, a_version_going_backwards_across_a_restart_is_detected)
{
    write_op(0, 10, 0, "a", CONSISTENCY_OK);
    write_op(20, 30, 1, "b", CONSISTENCY_OK);
    write_op(40, 50, 2, "c", CONSISTENCY_OK); /* acknowledged, then SIGKILL */
    read_op(100, 101, 2, "b", true);          /* after the restart: c is gone */
    cr_assert_gt(history_check(), 0);
    cr_assert_gt(report.violations[CONSISTENCY_CHECK_LOST_WRITE], 0);
    cr_assert_gt(report.violations[CONSISTENCY_CHECK_REAL_TIME], 0);
}

Test(consistency_history, an_observed_unknown_write_that_vanishes_is_detected)
{
    /* Nothing acknowledged was lost, but a read saw a write the restart then forgot. */
    write_op(0, 10, 0, "a", CONSISTENCY_OK);
    write_op(20, 30, 1, "b", CONSISTENCY_UNKNOWN); /* the kill came at 30 */
    read_op(22, 25, 2, "b", false);
    read_op(100, 101, 1, "a", true);
    cr_assert_gt(history_check(), 0);
    cr_assert_gt(report.violations[CONSISTENCY_CHECK_UNDURABLE_READ], 0);
    cr_assert_eq(report.violations[CONSISTENCY_CHECK_REAL_TIME], 0);
    cr_assert_eq(report.violations[CONSISTENCY_CHECK_LOST_WRITE], 0);
}

Test(consistency_history, an_observed_unknown_write_replaced_after_the_crash_is_detected)
{
    write_op(0, 10, 0, "a", CONSISTENCY_OK);
    write_op(20, 30, 1, "b", CONSISTENCY_UNKNOWN); /* the kill came at 30 */
    read_op(22, 25, 2, "b", false);
    write_op(50, 60, 1, "c", CONSISTENCY_OK); /* after the restart v2 is made again */
    read_op(70, 71, 2, "c", true);
    cr_assert_gt(history_check(), 0);
    cr_assert_gt(report.violations[CONSISTENCY_CHECK_UNDURABLE_READ], 0);
    cr_assert_eq(report.violations[CONSISTENCY_CHECK_LOST_UPDATE], 0);
    cr_assert_eq(report.violations[CONSISTENCY_CHECK_REAL_TIME], 0);
}

Test(consistency_history, a_412_naming_a_version_the_crash_took_is_an_undurable_read)
{
    write_op(0, 10, 0, "a", CONSISTENCY_OK);
    write_op(20, 30, 1, "b", CONSISTENCY_UNKNOWN); /* the kill came at 30 */
    write_failed(22, 25, 1, "c", 2);               /* current v2: b's, not durable */
    write_op(50, 60, 1, "d", CONSISTENCY_OK);      /* after the restart v2 is made again */
    cr_assert_gt(history_check(), 0);
    cr_assert_gt(report.violations[CONSISTENCY_CHECK_UNDURABLE_READ], 0);
    cr_assert_eq(report.violations[CONSISTENCY_CHECK_REAL_TIME], 0);
}

Test(consistency_history, a_stale_read_of_an_unknown_write_still_in_flight_is_real_time)
{
    /* No crash explains it: b's connection was still open when the older read began. */
    write_op(0, 10, 0, "a", CONSISTENCY_OK);
    write_op(20, 90, 1, "b", CONSISTENCY_UNKNOWN);
    read_op(22, 25, 2, "b", false);
    read_op(30, 35, 1, "a", false);
    cr_assert_gt(history_check(), 0);
    cr_assert_gt(report.violations[CONSISTENCY_CHECK_REAL_TIME], 0);
    cr_assert_eq(report.violations[CONSISTENCY_CHECK_UNDURABLE_READ], 0);
}

Test(consistency_history, invented_values_and_reads_from_the_future_are_detected)
{
    write_op(0, 10, 0, "a", CONSISTENCY_OK);
    read_op(20, 21, 1, "zz", false); /* nobody wrote zz */
    read_op(22, 23, 2, "b", false);  /* b is sent only later */
    write_op(30, 40, 1, "b", CONSISTENCY_OK);
    write_failed(50, 51, 2, "c", 7); /* v7 was never made */
    cr_assert_geq(history_check(), 3);
    cr_assert_geq(report.violations[CONSISTENCY_CHECK_UNWRITTEN_READ], 3);
}

Test(consistency_history, protocol_breaks_are_detected)
{
    struct consistency_operation op = {.kind = CONSISTENCY_WRITE, .outcome = CONSISTENCY_OK,
                                       .status = 200, .expected = 0, .version = 1};
    snprintf(op.value, sizeof(op.value), "a");
    history_add(op, 0, 1); /* a create must answer 201 */
    write_failed(2, 3, 1, "b", 1); /* a 412 that names the expected version */
    cr_assert_eq(history_check(), 2);
    cr_assert_eq(report.violations[CONSISTENCY_CHECK_PROTOCOL], 2);
}

Test(consistency_history, lost_and_duplicated_invocations_are_detected)
{
    invoke_op(0, "k1", "00000000000000a1", CONSISTENCY_OK, false);
    invoke_op(1, "k2", "00000000000000a2", CONSISTENCY_OK, false);
    invoke_op(2, "k3", "00000000000000a3", CONSISTENCY_OK, false);
    invoke_op(100, "k1", "00000000000000a1", CONSISTENCY_OK, true);
    invocation_get(101, "00000000000000a1", NULL); /* 404: gone */
    invoke_op(102, "k2", "00000000000000b2", CONSISTENCY_OK, true); /* another id */
    invocation_get(103, "00000000000000a2", "completed");
    invoke_op(104, "k3", "00000000000000a3", CONSISTENCY_OK, true);
    invocation_get(105, "00000000000000a3", "running"); /* never ended */
    cr_assert_eq(history_check(), 3);
    cr_assert_eq(report.violations[CONSISTENCY_CHECK_INVOCATION_LOST], 2);
    cr_assert_eq(report.violations[CONSISTENCY_CHECK_IDEMPOTENCY], 1);
}

Test(consistency_history, a_full_history_drops_and_counts)
{
    struct consistency_history small;
    consistency_history_init(&small, 2);
    struct consistency_operation op = {.kind = CONSISTENCY_READ, .outcome = CONSISTENCY_OK,
                                       .status = 404};
    cr_assert(consistency_history_append(&small, &op));
    cr_assert(consistency_history_append(&small, &op));
    cr_assert_not(consistency_history_append(&small, &op));
    cr_assert_eq(small.count, 2);
    cr_assert_eq(small.dropped, 1);
    consistency_history_free(&small);
}
