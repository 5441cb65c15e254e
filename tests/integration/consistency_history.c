/* The checker of a crash and consistency history (tests/consistency_history.h).
 *
 * Per key the state is a versioned compare-and-swap register: (version, value), initially
 * (0, absent); a write with expected version e succeeds only on version e and makes version
 * e + 1, so every write that takes effect names the version it replaced. Values are unique
 * per write, so a value read names the one write that produced it. Versions alone do not:
 * a write whose answer was lost in a crash may be lost with it, and the next write then makes
 * the same version number again. From that the checker needs no search over orderings:
 * - (a) lost update: no two writes that took effect (acknowledged, or observed by a read)
 *   replaced the same version;
 * - (b) every observed (version, value) was written by a write that was acknowledged or whose
 *   outcome is unknown, as that version, and not after the read ended; every version a
 *   successful CAS replaced or a 412 reported was produced by such a write;
 * - (c) real-time order: if A ended before B began, B's version is >= A's (> for a write B);
 * - (d) after the last restart each key's version is >= every acknowledged write's version;
 * - (e) a write answered 412 or 503 is never observed.
 * A break of (a) or (c) whose only cause is a read of a write that a crash then took (the
 * write's connection died, and the operation on the other side began after that) is counted
 * apart, as an undurable read: the engine showed a write before it was durable.
 * Invocations: every acknowledged one is found after the last restart and has ended, and
 * every answer for one Idempotency-Key names the same id. */

#include "tests/consistency_history.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rm_assert.h"

/* The history grows by doubling from this many operations. */
#define CONSISTENCY_INITIAL_OPERATIONS 4096

struct consistency_checker {
    const struct consistency_operation *operations;
    uint64_t origin_ns; /* the first operation's start: times in messages count from it */
    bool has_final;     /* the history includes the reads made after the last restart */
    struct consistency_report *report;
};

/* One key's operations, and its writes in two orders (by value and by expected version). */
struct consistency_key_view {
    uint32_t key;
    const size_t *operations;
    size_t operation_count;
    size_t *writes_by_value;
    size_t *writes_by_expected;
    size_t write_count;
};

void consistency_history_init(struct consistency_history *history, uint64_t capacity)
{
    RM_ASSERT(history != NULL);
    RM_ASSERT(capacity > 0);
    memset(history, 0, sizeof(*history));
    RM_ASSERT(pthread_mutex_init(&history->lock, NULL) == 0);
    history->capacity = capacity;
}

void consistency_history_free(struct consistency_history *history)
{
    RM_ASSERT(history != NULL);
    RM_ASSERT(history->count <= history->allocated);
    free(history->operations);
    pthread_mutex_destroy(&history->lock);
    memset(history, 0, sizeof(*history));
}

static bool consistency_history_grow(struct consistency_history *history)
{
    uint64_t allocated = history->allocated == 0 ? CONSISTENCY_INITIAL_OPERATIONS
                                                 : history->allocated * 2;
    allocated = allocated > history->capacity ? history->capacity : allocated;
    struct consistency_operation *operations =
        realloc(history->operations, allocated * sizeof(*operations));
    if (operations == NULL) {
        return false;
    }
    history->operations = operations;
    history->allocated = allocated;
    return true;
}

bool consistency_history_append(struct consistency_history *history,
                                const struct consistency_operation *operation)
{
    RM_ASSERT(operation->kind < CONSISTENCY_KINDS);
    RM_ASSERT(operation->outcome < CONSISTENCY_OUTCOMES);
    RM_ASSERT(operation->invoke_ns <= operation->complete_ns);
    pthread_mutex_lock(&history->lock);
    bool room = history->count < history->allocated ||
                (history->count < history->capacity && consistency_history_grow(history));
    if (room) {
        history->operations[history->count++] = *operation;
    } else {
        history->dropped++;
    }
    pthread_mutex_unlock(&history->lock);
    return room;
}

uint64_t consistency_now_ns(void)
{
    struct timespec now;
    RM_ASSERT(clock_gettime(CLOCK_MONOTONIC, &now) == 0);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

const char *consistency_check_name(enum consistency_check check)
{
    static const char *const names[CONSISTENCY_CHECKS] = {
        [CONSISTENCY_CHECK_LOST_UPDATE] = "lost update",
        [CONSISTENCY_CHECK_UNWRITTEN_READ] = "unwritten read",
        [CONSISTENCY_CHECK_REAL_TIME] = "real-time order",
        [CONSISTENCY_CHECK_LOST_WRITE] = "lost acknowledged write",
        [CONSISTENCY_CHECK_FAILED_SEEN] = "failed write observed",
        [CONSISTENCY_CHECK_UNDURABLE_READ] = "read of a write lost in a crash",
        [CONSISTENCY_CHECK_PROTOCOL] = "protocol",
        [CONSISTENCY_CHECK_INVOCATION_LOST] = "lost acknowledged invocation",
        [CONSISTENCY_CHECK_IDEMPOTENCY] = "idempotency",
    };
    RM_ASSERT((unsigned)check < CONSISTENCY_CHECKS);
    return names[check];
}

/* ---- violations and descriptions ---- */

static void consistency_violation(struct consistency_checker *checker,
                                  enum consistency_check check, const char *format, ...)
{
    struct consistency_report *report = checker->report;
    RM_ASSERT((unsigned)check < CONSISTENCY_CHECKS);
    report->violations[check]++;
    report->violations_total++;
    if (report->message_count >= CONSISTENCY_MESSAGES) {
        return;
    }
    char *message = report->messages[report->message_count++];
    int length = snprintf(message, CONSISTENCY_MESSAGE_MAX, "%s: ", consistency_check_name(check));
    RM_ASSERT(length > 0 && length < CONSISTENCY_MESSAGE_MAX);
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message + length, CONSISTENCY_MESSAGE_MAX - (size_t)length, format, arguments);
    va_end(arguments);
}

static const char *consistency_outcome_name(uint8_t outcome)
{
    RM_ASSERT(outcome < CONSISTENCY_OUTCOMES);
    return outcome == CONSISTENCY_OK ? "ok" : outcome == CONSISTENCY_FAIL ? "fail" : "unknown";
}

/* "write 'c3-17' v5->v6 ok 200 [12.345, 13.002 ms]": enough to find it in a client log. */
static const char *consistency_describe(const struct consistency_checker *checker, size_t index,
                                        char *buffer, size_t size)
{
    const struct consistency_operation *op = &checker->operations[index];
    double begin_ms = (double)(op->invoke_ns - checker->origin_ns) / 1e6;
    double end_ms = (double)(op->complete_ns - checker->origin_ns) / 1e6;
    const char *outcome = consistency_outcome_name(op->outcome);
    unsigned long long expected = op->expected, version = op->version;
    if (op->kind == CONSISTENCY_WRITE && op->outcome == CONSISTENCY_FAIL) {
        snprintf(buffer, size, "write '%s' over v%llu failed %u (current v%llu) [%.3f, %.3f ms]",
                 op->value, expected, op->status, version, begin_ms, end_ms);
    } else if (op->kind == CONSISTENCY_WRITE) {
        snprintf(buffer, size, "write '%s' v%llu->v%llu %s %u [%.3f, %.3f ms]", op->value,
                 expected, op->outcome == CONSISTENCY_OK ? version : expected + 1, outcome,
                 op->status, begin_ms, end_ms);
    } else {
        snprintf(buffer, size, "%sread v%llu '%s' %s %u [%.3f, %.3f ms]",
                 op->final ? "final " : "", version, op->value, outcome, op->status, begin_ms,
                 end_ms);
    }
    return buffer;
}

/* ---- sorting ---- */

static int consistency_by_key(const void *left, const void *right, void *context)
{
    const struct consistency_operation *operations = context;
    const struct consistency_operation *a = &operations[*(const size_t *)left];
    const struct consistency_operation *b = &operations[*(const size_t *)right];
    if (a->key != b->key) {
        return a->key < b->key ? -1 : 1;
    }
    return a->invoke_ns < b->invoke_ns ? -1 : a->invoke_ns > b->invoke_ns;
}

/* By value, then by start time: the answers for one Idempotency-Key in the order sent. */
static int consistency_by_value(const void *left, const void *right, void *context)
{
    const struct consistency_operation *operations = context;
    const struct consistency_operation *a = &operations[*(const size_t *)left];
    const struct consistency_operation *b = &operations[*(const size_t *)right];
    int order = strcmp(a->value, b->value);
    if (order != 0) {
        return order;
    }
    return a->invoke_ns < b->invoke_ns ? -1 : a->invoke_ns > b->invoke_ns;
}

static int consistency_by_expected(const void *left, const void *right, void *context)
{
    const struct consistency_operation *operations = context;
    uint64_t a = operations[*(const size_t *)left].expected;
    uint64_t b = operations[*(const size_t *)right].expected;
    return a < b ? -1 : a > b;
}

static int consistency_by_invoke(const void *left, const void *right, void *context)
{
    const struct consistency_operation *operations = context;
    uint64_t a = operations[*(const size_t *)left].invoke_ns;
    uint64_t b = operations[*(const size_t *)right].invoke_ns;
    return a < b ? -1 : a > b;
}

static int consistency_by_complete(const void *left, const void *right, void *context)
{
    const struct consistency_operation *operations = context;
    uint64_t a = operations[*(const size_t *)left].complete_ns;
    uint64_t b = operations[*(const size_t *)right].complete_ns;
    return a < b ? -1 : a > b;
}

static int consistency_by_id(const void *left, const void *right, void *context)
{
    const struct consistency_operation *operations = context;
    return strcmp(operations[*(const size_t *)left].id, operations[*(const size_t *)right].id);
}

static void consistency_sort(size_t *indices, size_t count,
                             int (*compare)(const void *, const void *, void *),
                             const struct consistency_operation *operations)
{
    if (count > 1) {
        qsort_r(indices, count, sizeof(*indices), compare, (void *)operations);
    }
}

/* The position in writes_by_value of the write whose value is `value`, or SIZE_MAX. */
static size_t consistency_find_write(const struct consistency_checker *checker,
                                     const struct consistency_key_view *view, const char *value)
{
    size_t low = 0, high = view->write_count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        int order = strcmp(checker->operations[view->writes_by_value[middle]].value, value);
        if (order == 0) {
            return middle;
        }
        if (order < 0) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    return SIZE_MAX;
}

/* The first position in writes_by_expected whose expected version is >= expected. */
static size_t consistency_first_expected(const struct consistency_checker *checker,
                                         const struct consistency_key_view *view,
                                         uint64_t expected)
{
    size_t low = 0, high = view->write_count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (checker->operations[view->writes_by_expected[middle]].expected < expected) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    RM_ASSERT(low <= view->write_count);
    return low;
}

/* ---- per key: the answers themselves ---- */

static bool consistency_write_answer_valid(const struct consistency_operation *op)
{
    if (op->outcome == CONSISTENCY_OK) {
        /* 201 for a create, 200 for an update, and the new version is the replaced one + 1. */
        bool created = op->expected == 0;
        return op->status == (created ? 201 : 200) && op->version == op->expected + 1;
    }
    if (op->outcome == CONSISTENCY_FAIL) {
        /* A 412 names a current version other than the expected one; 503 is "not applied". */
        return (op->status == 412 && op->version != op->expected) || op->status == 503;
    }
    return true;
}

static bool consistency_read_answer_valid(const struct consistency_operation *op)
{
    if (op->outcome == CONSISTENCY_OK) {
        return (op->status == 200 && op->version > 0) || (op->status == 404 && op->version == 0);
    }
    return op->outcome != CONSISTENCY_FAIL || op->status == 503;
}

static void consistency_key_protocol(struct consistency_checker *checker,
                                     const struct consistency_key_view *view)
{
    for (size_t i = 0; i < view->operation_count; i++) {
        size_t index = view->operations[i];
        const struct consistency_operation *op = &checker->operations[index];
        RM_ASSERT(op->key == view->key);
        bool valid = op->kind == CONSISTENCY_WRITE ? consistency_write_answer_valid(op)
                                                   : consistency_read_answer_valid(op);
        if (!valid) {
            char text[CONSISTENCY_MESSAGE_MAX];
            consistency_violation(checker, CONSISTENCY_CHECK_PROTOCOL,
                                  "key %u: %s: status or version outside the API's contract",
                                  view->key, consistency_describe(checker, index, text,
                                                                  sizeof(text)));
        }
    }
}

/* ---- per key: (b) and (e), reads name their write ---- */

/* Checks one successful read of a value; returns the position of its write in
 * writes_by_value when the read proves that write took effect, else SIZE_MAX. */
static size_t consistency_read_source(struct consistency_checker *checker,
                                      const struct consistency_key_view *view, size_t index)
{
    const struct consistency_operation *read = &checker->operations[index];
    RM_ASSERT(read->kind == CONSISTENCY_READ && read->outcome == CONSISTENCY_OK);
    RM_ASSERT(read->version > 0);
    char text[CONSISTENCY_MESSAGE_MAX / 2], other[CONSISTENCY_MESSAGE_MAX / 2];
    consistency_describe(checker, index, text, sizeof(text));
    size_t position = consistency_find_write(checker, view, read->value);
    if (position == SIZE_MAX) {
        consistency_violation(checker, CONSISTENCY_CHECK_UNWRITTEN_READ,
                              "key %u: %s: no write wrote this value", view->key, text);
        return SIZE_MAX;
    }
    size_t source = view->writes_by_value[position];
    const struct consistency_operation *write = &checker->operations[source];
    consistency_describe(checker, source, other, sizeof(other));
    if (write->outcome == CONSISTENCY_FAIL) {
        consistency_violation(checker, CONSISTENCY_CHECK_FAILED_SEEN, "key %u: %s saw %s",
                              view->key, text, other);
    } else if (write->expected + 1 != read->version) {
        consistency_violation(checker, CONSISTENCY_CHECK_UNWRITTEN_READ,
                              "key %u: %s saw the value of %s under another version", view->key,
                              text, other);
    } else if (write->invoke_ns > read->complete_ns) {
        consistency_violation(checker, CONSISTENCY_CHECK_UNWRITTEN_READ,
                              "key %u: %s saw %s, sent only after the read ended", view->key,
                              text, other);
    } else {
        return position;
    }
    return SIZE_MAX;
}

/* Marks in took_effect (by position in writes_by_value) the writes known to have taken
 * effect: acknowledged, or observed by a read. */
static void consistency_key_reads(struct consistency_checker *checker,
                                  const struct consistency_key_view *view, bool *took_effect)
{
    for (size_t p = 0; p < view->write_count; p++) {
        took_effect[p] = checker->operations[view->writes_by_value[p]].outcome == CONSISTENCY_OK;
    }
    for (size_t i = 0; i < view->operation_count; i++) {
        size_t index = view->operations[i];
        const struct consistency_operation *op = &checker->operations[index];
        if (op->kind != CONSISTENCY_READ || op->outcome != CONSISTENCY_OK || op->version == 0) {
            continue;
        }
        size_t position = consistency_read_source(checker, view, index);
        if (position != SIZE_MAX) {
            took_effect[position] = true;
        }
    }
}

/* ---- per key: (a), one effective write per replaced version ---- */

/* Two writes that took effect replaced one version. When one of them took effect only as far
 * as a read shows, its connection died (the crash), and the other began after that, the crash
 * took it: the read saw a write that was not durable. */
static enum consistency_check consistency_lost_update_cause(const struct consistency_operation *a,
                                                            const struct consistency_operation *b)
{
    RM_ASSERT(a->expected == b->expected);
    RM_ASSERT(a->kind == CONSISTENCY_WRITE && b->kind == CONSISTENCY_WRITE);
    bool a_tentative = a->outcome == CONSISTENCY_UNKNOWN;
    bool b_tentative = b->outcome == CONSISTENCY_UNKNOWN;
    if (a_tentative && b_tentative) {
        a_tentative = a->complete_ns <= b->complete_ns;
        b_tentative = !a_tentative;
    }
    const struct consistency_operation *lost = a_tentative ? a : b_tentative ? b : NULL;
    const struct consistency_operation *other = lost == a ? b : a;
    return lost != NULL && lost->complete_ns <= other->invoke_ns
               ? CONSISTENCY_CHECK_UNDURABLE_READ
               : CONSISTENCY_CHECK_LOST_UPDATE;
}

static void consistency_key_lost_updates(struct consistency_checker *checker,
                                         const struct consistency_key_view *view,
                                         const bool *took_effect)
{
    size_t *effective = malloc((view->write_count + 1) * sizeof(*effective));
    RM_ASSERT(effective != NULL);
    size_t count = 0;
    for (size_t p = 0; p < view->write_count; p++) {
        if (took_effect[p]) {
            effective[count++] = view->writes_by_value[p];
        }
    }
    consistency_sort(effective, count, consistency_by_expected, checker->operations);
    for (size_t i = 1; i < count; i++) {
        const struct consistency_operation *a = &checker->operations[effective[i - 1]];
        const struct consistency_operation *b = &checker->operations[effective[i]];
        if (a->expected == b->expected) {
            char first[CONSISTENCY_MESSAGE_MAX / 2], second[CONSISTENCY_MESSAGE_MAX / 2];
            consistency_violation(
                checker, consistency_lost_update_cause(a, b),
                "key %u: %s and %s both replaced v%llu", view->key,
                consistency_describe(checker, effective[i - 1], first, sizeof(first)),
                consistency_describe(checker, effective[i], second, sizeof(second)),
                (unsigned long long)a->expected);
        }
    }
    free(effective);
}

/* ---- per key: (b) for versions without a value ---- */

/* The version an operation saw without its value: the one a successful CAS replaced, or the
 * current one a 412 reported; 0 when there is none. */
static uint64_t consistency_base_version(const struct consistency_operation *op)
{
    if (op->kind != CONSISTENCY_WRITE) {
        return 0;
    }
    if (op->outcome == CONSISTENCY_OK) {
        return op->expected;
    }
    return op->outcome == CONSISTENCY_FAIL && op->status == 412 ? op->version : 0;
}

/* Some write not answered with a failure made `version` and was sent before `by` ended. */
static bool consistency_version_written(const struct consistency_checker *checker,
                                        const struct consistency_key_view *view,
                                        uint64_t version, const struct consistency_operation *by)
{
    RM_ASSERT(version > 0);
    for (size_t p = consistency_first_expected(checker, view, version - 1);
         p < view->write_count; p++) {
        const struct consistency_operation *write =
            &checker->operations[view->writes_by_expected[p]];
        if (write->expected != version - 1) {
            break;
        }
        if (write->outcome != CONSISTENCY_FAIL && write->invoke_ns <= by->complete_ns) {
            return true;
        }
    }
    return false;
}

static void consistency_key_bases(struct consistency_checker *checker,
                                  const struct consistency_key_view *view)
{
    for (size_t i = 0; i < view->operation_count; i++) {
        size_t index = view->operations[i];
        const struct consistency_operation *op = &checker->operations[index];
        uint64_t version = consistency_base_version(op);
        if (version > 0 && !consistency_version_written(checker, view, version, op)) {
            char text[CONSISTENCY_MESSAGE_MAX];
            consistency_violation(checker, CONSISTENCY_CHECK_UNWRITTEN_READ,
                                  "key %u: %s relies on v%llu, which no write made", view->key,
                                  consistency_describe(checker, index, text, sizeof(text)),
                                  (unsigned long long)version);
        }
    }
}

/* ---- per key: (c), real-time order ---- */

/* The version an operation saw or made, where it is known: an answered read, an acknowledged
 * write, a 412's current version. */
static bool consistency_position(const struct consistency_operation *op, uint64_t *position)
{
    bool known = op->outcome == CONSISTENCY_OK ||
                 (op->kind == CONSISTENCY_WRITE && op->outcome == CONSISTENCY_FAIL &&
                  op->status == 412);
    *position = known ? op->version : 0;
    return known;
}

/* True when the version an operation saw is one that only writes with unknown outcomes can
 * have made (a read of such a write's value, or a 412 naming a version no acknowledged write
 * made); *lost_ns is then when the last of their connections died, i.e. the crash. */
static bool consistency_tentative(const struct consistency_checker *checker,
                                  const struct consistency_key_view *view, size_t index,
                                  uint64_t *lost_ns)
{
    const struct consistency_operation *op = &checker->operations[index];
    *lost_ns = 0;
    if (op->kind == CONSISTENCY_READ && op->outcome == CONSISTENCY_OK && op->version > 0) {
        size_t position = consistency_find_write(checker, view, op->value);
        const struct consistency_operation *source =
            position == SIZE_MAX ? NULL : &checker->operations[view->writes_by_value[position]];
        *lost_ns = source != NULL ? source->complete_ns : 0;
        return source != NULL && source->outcome == CONSISTENCY_UNKNOWN;
    }
    if (consistency_base_version(op) == 0 || op->outcome != CONSISTENCY_FAIL) {
        return false; /* an acknowledged write's own version is durable, and so its base */
    }
    bool candidates = false;
    for (size_t p = consistency_first_expected(checker, view, op->version - 1);
         p < view->write_count; p++) {
        const struct consistency_operation *write =
            &checker->operations[view->writes_by_expected[p]];
        if (write->expected != op->version - 1) {
            break;
        }
        if (write->outcome == CONSISTENCY_OK && write->invoke_ns <= op->complete_ns) {
            return false;
        }
        if (write->outcome == CONSISTENCY_UNKNOWN && write->invoke_ns <= op->complete_ns) {
            candidates = true;
            *lost_ns = write->complete_ns > *lost_ns ? write->complete_ns : *lost_ns;
        }
    }
    return candidates;
}

/* `earlier` ended before `later` began, yet later saw an older version. When earlier saw a
 * version only writes with unknown outcomes made, and their connections died before later
 * began, the crash took that version. */
static void consistency_real_time_violation(struct consistency_checker *checker,
                                            const struct consistency_key_view *view,
                                            size_t earlier, size_t later)
{
    uint64_t lost_ns;
    bool crash = consistency_tentative(checker, view, earlier, &lost_ns) &&
                 lost_ns <= checker->operations[later].invoke_ns;
    char first[CONSISTENCY_MESSAGE_MAX / 2], second[CONSISTENCY_MESSAGE_MAX / 2];
    consistency_violation(checker,
                          crash ? CONSISTENCY_CHECK_UNDURABLE_READ : CONSISTENCY_CHECK_REAL_TIME,
                          "key %u: %s ended before %s began", view->key,
                          consistency_describe(checker, earlier, first, sizeof(first)),
                          consistency_describe(checker, later, second, sizeof(second)));
}

/* The highest version among operations that have ended, with the operation that saw it. */
struct consistency_highest {
    size_t operation; /* SIZE_MAX: none yet */
    uint64_t position;
};

static void consistency_highest_update(struct consistency_highest *highest, size_t operation,
                                       uint64_t position)
{
    if (highest->operation == SIZE_MAX || position > highest->position) {
        highest->operation = operation;
        highest->position = position;
    }
}

static bool consistency_highest_broken(const struct consistency_highest *highest,
                                       const struct consistency_operation *later)
{
    uint64_t position;
    consistency_position(later, &position);
    bool write = later->kind == CONSISTENCY_WRITE && later->outcome == CONSISTENCY_OK;
    return highest->operation != SIZE_MAX &&
           (write ? position <= highest->position : position < highest->position);
}

/* One sweep: operations by start time against the highest version among those that had
 * already ended (ordered by end time). A write must make a version above it (it replaced at
 * least that version), anything else must see at least it. `firm` leaves out versions only
 * writes with unknown outcomes made, so that a break is blamed on a crash only when nothing
 * else explains it. */
static void consistency_key_real_time(struct consistency_checker *checker,
                                      const struct consistency_key_view *view)
{
    size_t *ended = malloc((view->operation_count + 1) * sizeof(*ended));
    size_t *started = malloc((view->operation_count + 1) * sizeof(*started));
    RM_ASSERT(ended != NULL && started != NULL);
    size_t count = 0;
    for (size_t i = 0; i < view->operation_count; i++) {
        uint64_t position;
        if (consistency_position(&checker->operations[view->operations[i]], &position)) {
            ended[count] = started[count] = view->operations[i];
            count++;
        }
    }
    consistency_sort(ended, count, consistency_by_complete, checker->operations);
    consistency_sort(started, count, consistency_by_invoke, checker->operations);
    struct consistency_highest all = {SIZE_MAX, 0}, firm = {SIZE_MAX, 0};
    size_t next_ended = 0;
    for (size_t i = 0; i < count; i++) {
        const struct consistency_operation *later = &checker->operations[started[i]];
        for (; next_ended < count &&
               checker->operations[ended[next_ended]].complete_ns < later->invoke_ns;
             next_ended++) {
            uint64_t position;
            consistency_position(&checker->operations[ended[next_ended]], &position);
            consistency_highest_update(&all, ended[next_ended], position);
            uint64_t lost_ns;
            if (!consistency_tentative(checker, view, ended[next_ended], &lost_ns)) {
                consistency_highest_update(&firm, ended[next_ended], position);
            }
        }
        if (consistency_highest_broken(&firm, later)) {
            consistency_real_time_violation(checker, view, firm.operation, started[i]);
        } else if (consistency_highest_broken(&all, later)) {
            consistency_real_time_violation(checker, view, all.operation, started[i]);
        }
    }
    free(ended);
    free(started);
}

/* ---- per key: (d), the state after the last restart ---- */

static void consistency_final_violation(struct consistency_checker *checker, uint32_t key,
                                        size_t read, size_t write, const char *why)
{
    char first[CONSISTENCY_MESSAGE_MAX / 2], second[CONSISTENCY_MESSAGE_MAX / 2];
    consistency_violation(checker, CONSISTENCY_CHECK_LOST_WRITE, "key %u: %s %s %s", key,
                          consistency_describe(checker, read, first, sizeof(first)), why,
                          consistency_describe(checker, write, second, sizeof(second)));
}

static void consistency_key_final(struct consistency_checker *checker,
                                  const struct consistency_key_view *view)
{
    size_t newest = SIZE_MAX; /* the acknowledged write with the highest version */
    for (size_t p = 0; p < view->write_count; p++) {
        size_t index = view->writes_by_value[p];
        const struct consistency_operation *write = &checker->operations[index];
        if (write->outcome == CONSISTENCY_OK &&
            (newest == SIZE_MAX || write->version > checker->operations[newest].version)) {
            newest = index;
        }
    }
    bool read_at_end = false;
    for (size_t i = 0; i < view->operation_count && newest != SIZE_MAX; i++) {
        size_t index = view->operations[i];
        const struct consistency_operation *read = &checker->operations[index];
        if (!read->final || read->kind != CONSISTENCY_READ || read->outcome != CONSISTENCY_OK) {
            continue;
        }
        read_at_end = true;
        const struct consistency_operation *write = &checker->operations[newest];
        if (read->version < write->version) {
            consistency_final_violation(checker, view->key, index, newest, "is older than");
        } else if (read->version == write->version && strcmp(read->value, write->value) != 0) {
            consistency_final_violation(checker, view->key, index, newest, "differs from");
        }
    }
    if (newest != SIZE_MAX && checker->has_final && !read_at_end) {
        char text[CONSISTENCY_MESSAGE_MAX];
        consistency_violation(checker, CONSISTENCY_CHECK_LOST_WRITE,
                              "key %u: no successful read after the last restart to find %s",
                              view->key,
                              consistency_describe(checker, newest, text, sizeof(text)));
    }
}

/* ---- per key: the driver ---- */

static void consistency_key_view_build(struct consistency_checker *checker,
                                       struct consistency_key_view *view)
{
    view->writes_by_value = malloc((view->operation_count + 1) * sizeof(size_t));
    view->writes_by_expected = malloc((view->operation_count + 1) * sizeof(size_t));
    RM_ASSERT(view->writes_by_value != NULL && view->writes_by_expected != NULL);
    view->write_count = 0;
    for (size_t i = 0; i < view->operation_count; i++) {
        size_t index = view->operations[i];
        if (checker->operations[index].kind == CONSISTENCY_WRITE) {
            view->writes_by_value[view->write_count] = index;
            view->writes_by_expected[view->write_count] = index;
            view->write_count++;
        }
    }
    consistency_sort(view->writes_by_value, view->write_count, consistency_by_value,
                     checker->operations);
    consistency_sort(view->writes_by_expected, view->write_count, consistency_by_expected,
                     checker->operations);
    /* Values are unique per key by construction: a read must name exactly one write. */
    for (size_t p = 1; p < view->write_count; p++) {
        RM_ASSERT(strcmp(checker->operations[view->writes_by_value[p - 1]].value,
                         checker->operations[view->writes_by_value[p]].value) != 0);
    }
}

static void consistency_key_check(struct consistency_checker *checker,
                                  struct consistency_key_view *view)
{
    consistency_key_view_build(checker, view);
    bool *took_effect = calloc(view->write_count + 1, sizeof(*took_effect));
    RM_ASSERT(took_effect != NULL);
    consistency_key_protocol(checker, view);
    consistency_key_reads(checker, view, took_effect);
    consistency_key_lost_updates(checker, view, took_effect);
    consistency_key_bases(checker, view);
    consistency_key_real_time(checker, view);
    consistency_key_final(checker, view);
    free(took_effect);
    free(view->writes_by_value);
    free(view->writes_by_expected);
}

static void consistency_check_keys(struct consistency_checker *checker, uint64_t count)
{
    size_t *state = malloc((count + 1) * sizeof(*state));
    RM_ASSERT(state != NULL);
    size_t state_count = 0;
    for (size_t i = 0; i < count; i++) {
        uint8_t kind = checker->operations[i].kind;
        if (kind == CONSISTENCY_READ || kind == CONSISTENCY_WRITE) {
            state[state_count++] = i;
        }
    }
    consistency_sort(state, state_count, consistency_by_key, checker->operations);
    for (size_t begin = 0; begin < state_count;) {
        uint32_t key = checker->operations[state[begin]].key;
        size_t end = begin;
        while (end < state_count && checker->operations[state[end]].key == key) {
            end++;
        }
        struct consistency_key_view view = {.key = key, .operations = &state[begin],
                                            .operation_count = end - begin};
        consistency_key_check(checker, &view);
        checker->report->keys++;
        begin = end;
    }
    free(state);
}

/* ---- invocations ---- */

static bool consistency_terminal(const char *status)
{
    return strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
           strcmp(status, "cancelled") == 0;
}

/* True when a status read made after the last restart found invocation `id` ended; `gets`
 * holds the status reads sorted by id. */
static bool consistency_invocation_ended(const struct consistency_checker *checker,
                                         const size_t *gets, size_t get_count, const char *id)
{
    size_t low = 0, high = get_count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (strcmp(checker->operations[gets[middle]].id, id) < 0) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    for (size_t i = low; i < get_count && strcmp(checker->operations[gets[i]].id, id) == 0;
         i++) {
        const struct consistency_operation *get = &checker->operations[gets[i]];
        if (get->final && get->outcome == CONSISTENCY_OK && consistency_terminal(get->value)) {
            return true;
        }
    }
    return false;
}

/* The starts sent with one Idempotency-Key: every answer names one id, and if one was
 * acknowledged before the last restart, re-sending the key afterwards finds it, ended. */
static void consistency_idempotency_group(struct consistency_checker *checker,
                                          const size_t *posts, size_t count, const size_t *gets,
                                          size_t get_count)
{
    const struct consistency_operation *first = NULL;
    bool acknowledged = false, resent = false;
    for (size_t i = 0; i < count; i++) {
        const struct consistency_operation *post = &checker->operations[posts[i]];
        RM_ASSERT(strcmp(post->value, checker->operations[posts[0]].value) == 0);
        if (post->outcome != CONSISTENCY_OK) {
            continue;
        }
        if (first == NULL) {
            first = post;
        } else if (strcmp(first->id, post->id) != 0) {
            consistency_violation(checker, CONSISTENCY_CHECK_IDEMPOTENCY,
                                  "Idempotency-Key '%s' answered id %s and later id %s",
                                  post->value, first->id, post->id);
        }
        acknowledged = acknowledged || !post->final;
        resent = resent || post->final;
    }
    if (!acknowledged || !checker->has_final) {
        return;
    }
    if (!resent) {
        consistency_violation(checker, CONSISTENCY_CHECK_INVOCATION_LOST,
                              "invocation %s (key '%s') was acknowledged, but re-sending its "
                              "Idempotency-Key after the last restart got no answer with an id",
                              first->id, first->value);
    } else if (!consistency_invocation_ended(checker, gets, get_count, first->id)) {
        consistency_violation(checker, CONSISTENCY_CHECK_INVOCATION_LOST,
                              "invocation %s (key '%s') was acknowledged but was not found "
                              "ended after the last restart",
                              first->id, first->value);
    }
}

static void consistency_check_invocations(struct consistency_checker *checker, uint64_t count)
{
    size_t *posts = malloc((count + 1) * sizeof(*posts));
    size_t *gets = malloc((count + 1) * sizeof(*gets));
    RM_ASSERT(posts != NULL && gets != NULL);
    size_t post_count = 0, get_count = 0;
    for (size_t i = 0; i < count; i++) {
        if (checker->operations[i].kind == CONSISTENCY_INVOKE) {
            posts[post_count++] = i;
        } else if (checker->operations[i].kind == CONSISTENCY_INVOCATION_GET) {
            gets[get_count++] = i;
        }
    }
    consistency_sort(posts, post_count, consistency_by_value, checker->operations);
    consistency_sort(gets, get_count, consistency_by_id, checker->operations);
    for (size_t begin = 0; begin < post_count;) {
        size_t end = begin + 1;
        while (end < post_count && strcmp(checker->operations[posts[end]].value,
                                          checker->operations[posts[begin]].value) == 0) {
            end++;
        }
        consistency_idempotency_group(checker, &posts[begin], end - begin, gets, get_count);
        begin = end;
    }
    free(posts);
    free(gets);
}

/* ---- the whole history ---- */

uint64_t consistency_check(const struct consistency_history *history,
                           struct consistency_report *report)
{
    /* A dropped operation could be the write a read saw: the history must be whole. */
    RM_ASSERT(history->dropped == 0);
    RM_ASSERT(history->count <= history->allocated);
    memset(report, 0, sizeof(*report));
    struct consistency_checker checker = {.operations = history->operations,
                                          .origin_ns = UINT64_MAX, .report = report};
    for (uint64_t i = 0; i < history->count; i++) {
        const struct consistency_operation *op = &history->operations[i];
        RM_ASSERT(op->invoke_ns <= op->complete_ns);
        report->operations[op->kind][op->outcome]++;
        checker.origin_ns = op->invoke_ns < checker.origin_ns ? op->invoke_ns : checker.origin_ns;
        checker.has_final = checker.has_final || op->final;
    }
    consistency_check_keys(&checker, history->count);
    consistency_check_invocations(&checker, history->count);
    return report->violations_total;
}

void consistency_report_print(FILE *out, const struct consistency_report *report,
                              uint32_t cycles)
{
    static const char *const kinds[CONSISTENCY_KINDS] = {"state read", "state write",
                                                         "invocation start",
                                                         "invocation status"};
    uint64_t total = 0;
    for (int k = 0; k < CONSISTENCY_KINDS; k++) {
        for (int o = 0; o < CONSISTENCY_OUTCOMES; o++) {
            total += report->operations[k][o];
        }
    }
    fprintf(out, "consistency: %u kill cycles, %u keys, %llu operations, %llu violations\n",
            cycles, report->keys, (unsigned long long)total,
            (unsigned long long)report->violations_total);
    for (int k = 0; k < CONSISTENCY_KINDS; k++) {
        fprintf(out, "  %-18s ok %8llu  fail %8llu  unknown %6llu\n", kinds[k],
                (unsigned long long)report->operations[k][CONSISTENCY_OK],
                (unsigned long long)report->operations[k][CONSISTENCY_FAIL],
                (unsigned long long)report->operations[k][CONSISTENCY_UNKNOWN]);
    }
    for (int c = 0; c < CONSISTENCY_CHECKS; c++) {
        fprintf(out, "  %-30s %llu\n", consistency_check_name((enum consistency_check)c),
                (unsigned long long)report->violations[c]);
    }
    for (uint32_t m = 0; m < report->message_count; m++) {
        fprintf(out, "  - %s\n", report->messages[m]);
    }
}
