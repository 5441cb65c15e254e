/* An invocation's journal: one store key per invocation ("inv", id) whose latest record holds
 * the whole state as JSON. Writes are coalesced (one in flight per invocation; a change made
 * meanwhile is written right after), and recovery reads back every unfinished record of the
 * core's shard and admits them in creation order. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/invocation_internal.h"
#include "core/log.h"
#include "core/rm_assert.h"

#define INVOCATION_RECOVERY_WINDOW 64

struct invocation_write {
    struct store_request request;
    struct invocation_core *core;
    struct invocation *invocation;
    char *text;
};

/* The input is already compact JSON text (checked when it was accepted): it is spliced in
 * as the first member rather than parsed again at every step. */
static char *invocation_journal_splice(const char *input, const char *rest, size_t *length)
{
    static const char prefix[] = "{\"input\":";
    size_t input_length = strlen(input), rest_length = strlen(rest);
    RM_ASSERT(rest_length >= 2 && rest[0] == '{' && rest[1] != '}');
    *length = sizeof(prefix) - 1 + input_length + 1 + rest_length - 1;
    char *text = rm_malloc(*length + 1);
    if (text != NULL) {
        memcpy(text, prefix, sizeof(prefix) - 1);
        memcpy(text + sizeof(prefix) - 1, input, input_length);
        text[sizeof(prefix) - 1 + input_length] = ',';
        memcpy(text + sizeof(prefix) + input_length, rest + 1, rest_length);
    }
    return text;
}

char *invocation_journal_text(const struct invocation_runtime *runtime,
                              const struct invocation *invocation, size_t *length)
{
    json_t *state = invocation_view(runtime, invocation);
    if (state == NULL) {
        return NULL;
    }
    json_object_set(state, "messages", invocation->messages);
    json_object_set_new(state, "llm_steps", json_integer(invocation->llm_steps));
    json_object_set_new(state, "depth", json_integer(invocation->depth));
    if (invocation->idempotency != NULL) {
        json_object_set_new(state, "idempotency_key", json_string(invocation->idempotency));
    }
    if (invocation->session == NULL && invocation->creator != NULL &&
        invocation->creator->session[0] != '\0') {
        json_object_set_new(state, "session", json_string(invocation->creator->session));
    }
    char *rest = json_dumps(state, JSON_COMPACT);
    json_decref(state);
    char *text = rest != NULL ? invocation_journal_splice(invocation->input, rest, length) : NULL;
    rm_free(rest);
    *length = text != NULL ? *length : 0;
    return text;
}

static void invocation_journal_start(struct invocation_core *core,
                                     struct invocation *invocation);

/* The shard's commit buffer is full until its flush completes: the write waits for the next
 * tick (not the next loop iteration, which would spin while the fdatasync runs). */
static void invocation_journal_defer(struct invocation_core *core,
                                     struct invocation *invocation)
{
    invocation->journal_busy = true;
    invocation->journal_dirty = true;
    invocation->retry_next = core->journal_retry;
    core->journal_retry = invocation;
    core->writes++;
}

void invocation_journal_retry(struct invocation_core *core)
{
    struct invocation *pending = core->journal_retry;
    core->journal_retry = NULL;
    while (pending != NULL) {
        struct invocation *next = pending->retry_next;
        RM_ASSERT(core->writes > 0);
        core->writes--;
        pending->journal_busy = false;
        invocation_journal_start(core, pending);
        pending = next;
    }
}

static void invocation_journal_written(struct store_request *request,
                                       const struct store_result *result)
{
    struct invocation_write *write = request->context;
    struct invocation_core *core = write->core;
    struct invocation *invocation = write->invocation;
    int status = result->status; /* result lives in the write freed below */
    rm_free(write->text);
    rm_free(write);
    RM_ASSERT(core->writes > 0);
    core->writes--;
    invocation->journal_busy = false;
    if (status == -EAGAIN) {
        invocation_journal_defer(core, invocation);
        return;
    }
    if (status == STORE_OK && invocation->journal_dirty) {
        invocation_journal_start(core, invocation);
        return;
    }
    invocation->journal_done(core, invocation, status == STORE_OK ? 0 : status);
}

static void invocation_journal_start(struct invocation_core *core, struct invocation *invocation)
{
    struct invocation_write *write = rm_calloc(1, sizeof(*write));
    size_t length = 0;
    char *text = write != NULL ? invocation_journal_text(core->runtime, invocation, &length)
                               : NULL;
    int result = text == NULL ? -ENOMEM : 0;
    if (result == 0) {
        write->core = core;
        write->invocation = invocation;
        write->text = text;
        struct store_key key = {INVOCATION_NS, strlen(INVOCATION_NS), invocation->id,
                                strlen(invocation->id)};
        result = store_append(core->runtime->store, &write->request,
                              (enum store_record_type)invocation->journal_type, key, text,
                              length, invocation_journal_written, write);
    }
    invocation->journal_dirty = false;
    if (result != 0) {
        rm_free(text);
        rm_free(write);
        if (result == -EAGAIN) {
            invocation_journal_defer(core, invocation);
        } else {
            invocation->journal_done(core, invocation, result);
        }
        return;
    }
    invocation->journal_busy = true;
    core->writes++;
}

void invocation_journal(struct invocation_core *core, struct invocation *invocation,
                        enum store_record_type type,
                        void (*done)(struct invocation_core *core,
                                     struct invocation *invocation, int status))
{
    invocation->journal_type = (uint8_t)type;
    invocation->journal_done = done;
    if (invocation->journal_busy) {
        invocation->journal_dirty = true;
        return;
    }
    invocation_journal_start(core, invocation);
}

static enum invocation_status invocation_journal_status(const char *name)
{
    static const char *const names[] = {"queued", "running", "completed", "failed",
                                        "cancelled"};
    for (int i = 0; i < 5; i++) {
        if (name != NULL && strcmp(name, names[i]) == 0) {
            return (enum invocation_status)i;
        }
    }
    return INVOCATION_QUEUED;
}

static uint64_t invocation_journal_u64(json_t *state, const char *name)
{
    json_int_t value = json_integer_value(json_object_get(state, name));
    return value > 0 ? (uint64_t)value : 0;
}

struct invocation *invocation_journal_load(struct invocation_runtime *runtime, const char *id,
                                           const uint8_t *value, size_t length,
                                           char session[INVOCATION_SESSION_MAX + 1])
{
    json_t *state = json_loadb((const char *)value, length, 0, NULL);
    const char *agent = json_string_value(json_object_get(state, "agent"));
    int index = agent != NULL ? invocation_agent_find(runtime, agent, strlen(agent)) : -1;
    struct invocation *invocation = index >= 0 ? rm_calloc(1, sizeof(*invocation)) : NULL;
    if (invocation == NULL) {
        log_warn("invocation record skipped: its agent is not configured or it is not JSON",
                 "id", id);
        json_decref(state);
        return NULL;
    }
    snprintf(invocation->id, sizeof(invocation->id), "%s", id);
    invocation->agent = (uint32_t)index;
    invocation->status = invocation_journal_status(
        json_string_value(json_object_get(state, "status")));
    invocation->input = json_dumps(json_object_get(state, "input"), JSON_COMPACT |
                                                                     JSON_ENCODE_ANY);
    invocation->messages = json_incref(json_object_get(state, "messages"));
    invocation->steps = json_incref(json_object_get(state, "steps"));
    invocation->messages = invocation->messages != NULL ? invocation->messages : json_array();
    invocation->steps = invocation->steps != NULL ? invocation->steps : json_array();
    bool shaped = json_is_array(invocation->messages) && json_is_array(invocation->steps);
    invocation->created_ms = invocation_journal_u64(state, "created_ms");
    invocation->tokens = invocation_journal_u64(state, "tokens");
    invocation->llm_steps = (uint32_t)invocation_journal_u64(state, "llm_steps");
    invocation->depth = (uint32_t)invocation_journal_u64(state, "depth");
    const char *key = json_string_value(json_object_get(state, "idempotency_key"));
    invocation->idempotency = invocation_strdup(key);
    const char *name = json_string_value(json_object_get(state, "session"));
    snprintf(session, INVOCATION_SESSION_MAX + 1, "%s", name != NULL ? name : "");
    json_decref(state);
    if (invocation->input == NULL || !shaped) {
        log_warn("invocation record skipped: it lacks its input or its messages and steps are "
                 "not arrays", "id", id);
        invocation_free(invocation);
        return NULL;
    }
    return invocation;
}

/* ---- recovery ---- */

struct invocation_recovery {
    struct invocation_core *core;
    char (*ids)[INVOCATION_ID_BYTES + 1];
    uint32_t id_count;
    uint32_t id_capacity;
    uint32_t next;        /* the next id to read */
    uint32_t outstanding; /* reads in flight */
    struct invocation **loaded;
    char (*sessions)[INVOCATION_SESSION_MAX + 1];
    uint32_t loaded_count;
    struct store_request requests[INVOCATION_RECOVERY_WINDOW];
    uint32_t slots[INVOCATION_RECOVERY_WINDOW]; /* the id index each request reads */
    bool busy[INVOCATION_RECOVERY_WINDOW];
};

static bool invocation_recovery_keep(struct invocation_recovery *recovery, const char *id)
{
    if (recovery->id_count == recovery->id_capacity) {
        uint32_t capacity = recovery->id_capacity == 0 ? 1024 : recovery->id_capacity * 2;
        void *grown = rm_realloc(recovery->ids, (size_t)capacity * sizeof(*recovery->ids));
        if (grown == NULL) {
            return false;
        }
        recovery->ids = grown;
        recovery->id_capacity = capacity;
    }
    snprintf(recovery->ids[recovery->id_count++], INVOCATION_ID_BYTES + 1, "%s", id);
    return true;
}

/* Lists unfinished records of this shard under a prefix; a prefix with more matches than
 * one batch holds is split into its 16 hex extensions (ids are hex). */
static bool invocation_recovery_scan(struct invocation_recovery *recovery,
                                     struct store_scan_item *items, char *prefix, size_t length)
{
    struct invocation_runtime *runtime = recovery->core->runtime;
    bool more = false;
    int count = store_scan(runtime->store, INVOCATION_NS, strlen(INVOCATION_NS), prefix, length,
                           items, INVOCATION_SCAN_BATCH, &more);
    if (count < 0) {
        return false;
    }
    if (more && length < INVOCATION_ID_BYTES) {
        for (int digit = 0; digit < 16; digit++) {
            prefix[length] = "0123456789abcdef"[digit];
            if (!invocation_recovery_scan(recovery, items, prefix, length + 1)) {
                return false;
            }
        }
        return true;
    }
    for (int i = 0; i < count; i++) {
        char id[INVOCATION_ID_BYTES + 1];
        if (items[i].key_length != INVOCATION_ID_BYTES ||
            items[i].type == STORE_RECORD_INVOCATION_FINISHED) {
            continue;
        }
        memcpy(id, items[i].key, INVOCATION_ID_BYTES);
        id[INVOCATION_ID_BYTES] = '\0';
        if (invocation_owner_of_id(runtime, id) == recovery->core->core &&
            !invocation_recovery_keep(recovery, id)) {
            return false;
        }
    }
    return true;
}

static int invocation_recovery_order(const void *left, const void *right)
{
    const struct invocation *a = *(struct invocation *const *)left;
    const struct invocation *b = *(struct invocation *const *)right;
    if (a->created_ms != b->created_ms) {
        return a->created_ms < b->created_ms ? -1 : 1;
    }
    return strcmp(a->id, b->id);
}

static void invocation_recovery_finish(struct invocation_recovery *recovery)
{
    struct invocation_core *core = recovery->core;
    /* Creation order keeps each session's invocations in the order they were accepted. */
    struct invocation **sorted = recovery->loaded;
    for (uint32_t i = 0; i < recovery->loaded_count; i++) {
        sorted[i]->parent_slot = i; /* where its session name is, until admitted */
    }
    if (recovery->loaded_count > 1) {
        qsort(sorted, recovery->loaded_count, sizeof(*sorted), invocation_recovery_order);
    }
    for (uint32_t i = 0; i < recovery->loaded_count; i++) {
        uint32_t at = sorted[i]->parent_slot;
        sorted[i]->parent_slot = 0;
        invocation_recovered(core, sorted[i], recovery->sessions[at]);
    }
    char count[16];
    snprintf(count, sizeof(count), "%u", recovery->loaded_count);
    char shard[16];
    snprintf(shard, sizeof(shard), "%u", core->core);
    if (recovery->loaded_count > 0) {
        log_info("invocations recovered", "shard", shard, "count", count);
    }
    rm_free(recovery->ids);
    rm_free(recovery->loaded);
    rm_free(recovery->sessions);
    rm_free(recovery);
    RM_ASSERT(core->writes > 0);
    core->writes--;
    invocation_schedule(core);
}

static void invocation_recovery_pump(struct invocation_recovery *recovery);

static void invocation_recovery_read(struct store_request *request,
                                     const struct store_result *result)
{
    struct invocation_recovery *recovery = request->context;
    uint32_t slot = (uint32_t)(request - recovery->requests);
    RM_ASSERT(slot < INVOCATION_RECOVERY_WINDOW);
    const char *id = recovery->ids[recovery->slots[slot]];
    recovery->busy[slot] = false;
    if (result->status == STORE_OK && result->type != STORE_RECORD_INVOCATION_FINISHED) {
        uint32_t at = recovery->loaded_count;
        struct invocation *invocation = invocation_journal_load(
            recovery->core->runtime, id, result->value, result->value_length,
            recovery->sessions[at]);
        if (invocation != NULL) {
            recovery->loaded[recovery->loaded_count++] = invocation;
        }
    } else if (result->status != STORE_OK) {
        log_error("invocation record unreadable at recovery; it stays in the store", "id", id);
    }
    recovery->outstanding--;
    invocation_recovery_pump(recovery);
}

static void invocation_recovery_pump(struct invocation_recovery *recovery)
{
    struct invocation_core *core = recovery->core;
    for (uint32_t slot = 0; slot < INVOCATION_RECOVERY_WINDOW; slot++) {
        if (recovery->outstanding == INVOCATION_RECOVERY_WINDOW ||
            recovery->next == recovery->id_count) {
            break;
        }
        if (recovery->busy[slot]) {
            continue;
        }
        recovery->slots[slot] = recovery->next;
        const char *id = recovery->ids[recovery->next++];
        struct store_key key = {INVOCATION_NS, strlen(INVOCATION_NS), id, strlen(id)};
        if (store_get(core->runtime->store, &recovery->requests[slot], key,
                      invocation_recovery_read, recovery) == 0) {
            recovery->busy[slot] = true;
            recovery->outstanding++;
        } else {
            log_error("invocation record read refused at recovery; retried at next start",
                      "id", id);
        }
    }
    if (recovery->outstanding == 0 && recovery->next == recovery->id_count) {
        invocation_recovery_finish(recovery);
    }
}

void invocation_journal_recover(struct invocation_core *core)
{
    struct invocation_recovery *recovery = rm_calloc(1, sizeof(*recovery));
    struct store_scan_item *items = rm_malloc(INVOCATION_SCAN_BATCH * sizeof(*items));
    char prefix[INVOCATION_ID_BYTES + 1] = {0};
    bool scanned = recovery != NULL && items != NULL;
    if (scanned) {
        recovery->core = core;
        scanned = invocation_recovery_scan(recovery, items, prefix, 0);
    }
    rm_free(items);
    if (scanned && recovery->id_count > 0) {
        recovery->loaded = rm_calloc(recovery->id_count, sizeof(*recovery->loaded));
        recovery->sessions = rm_calloc(recovery->id_count, sizeof(*recovery->sessions));
        scanned = recovery->loaded != NULL && recovery->sessions != NULL;
    }
    if (!scanned) {
        log_error("out of memory listing unfinished invocations; they resume at the next "
                  "start");
        if (recovery != NULL) {
            rm_free(recovery->ids);
            rm_free(recovery->loaded);
            rm_free(recovery->sessions);
        }
        rm_free(recovery);
        return;
    }
    core->writes++; /* busy until every record is read */
    invocation_recovery_pump(recovery);
}
