/* The agent runtime on each core: orders from the API, admission, idempotency, the per-agent
 * ready queues (fair between agents, one invocation at a time per session), waiters, and the
 * end of an invocation. */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <ck_pr.h>

#include "core/agent_messages.h"
#include "core/alloc.h"
#include "core/invocation_internal.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/rm_assert.h"

#define INVOCATION_RETRY_AFTER_MAX_S 60
#define INVOCATION_DEADLINE_CHECK_NS 50000000ull

static const char *const invocation_status_names[] = {
    "queued", "running", "completed", "failed", "cancelled",
};

const char *invocation_status_name(enum invocation_status status)
{
    RM_ASSERT(status <= INVOCATION_CANCELLED);
    return invocation_status_names[status];
}

uint64_t invocation_unix_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

static uint64_t invocation_hash(const char *text, size_t length)
{
    uint64_t hash = 0xcbf29ce484222325ull; /* FNV-1a: table buckets only */
    for (size_t i = 0; i < length; i++) {
        hash = (hash ^ (uint8_t)text[i]) * 0x100000001b3ull;
    }
    return hash;
}

struct invocation_core *invocation_core_of(struct invocation_runtime *runtime, uint32_t core)
{
    RM_ASSERT(core < runtime->cores);
    return runtime->per_core[core];
}

/* ---- metrics ---- */

static int invocation_metrics_agent(struct invocation_runtime *runtime, uint32_t index)
{
    struct metrics_registry *m = runtime->metrics;
    struct invocation_agent_metrics *a = &runtime->agent_metrics[index];
    const char *name = runtime->config->agents[index].name;
    int outcomes = metrics_family(m, "invocations_total", "Invocations ended, by agent and "
                                  "outcome.", METRICS_COUNTER);
    int duration = metrics_histogram_family(m, "invocation_duration_seconds",
                                            "From acceptance to the end.", 1000, 1e-9);
    int depth = metrics_family(m, "invocation_queue_depth", "Invocations waiting, by agent.",
                               METRICS_GAUGE);
    int running = metrics_family(m, "invocations_running", "Invocations running, by agent.",
                                 METRICS_GAUGE);
    int rejected = metrics_family(m, "invocation_rejections_total",
                                  "Invocations refused at admission, by agent and reason.",
                                  METRICS_COUNTER);
    int steps = metrics_histogram_family(m, "invocation_steps", "Steps (LLM calls and tool "
                                         "calls) per finished invocation.", 1, 1.0);
    int tokens = metrics_histogram_family(m, "invocation_tokens", "LLM tokens per finished "
                                          "invocation.", 1, 1.0);
    char labels[METRICS_LABELS_MAX];
    static const char *const outcome_names[] = {"completed", "failed", "cancelled"};
    for (int i = 0; i < 3; i++) {
        snprintf(labels, sizeof(labels), "agent=\"%s\",outcome=\"%s\"", name, outcome_names[i]);
        a->outcomes[i] = metrics_series(m, outcomes, labels);
    }
    snprintf(labels, sizeof(labels), "agent=\"%s\"", name);
    a->duration = metrics_series(m, duration, labels);
    a->queue_depth = metrics_series(m, depth, labels);
    a->running = metrics_series(m, running, labels);
    a->steps = metrics_series(m, steps, labels);
    a->tokens = metrics_series(m, tokens, labels);
    snprintf(labels, sizeof(labels), "agent=\"%s\",reason=\"queue_full\"", name);
    a->rejected_queue = metrics_series(m, rejected, labels);
    snprintf(labels, sizeof(labels), "agent=\"%s\",reason=\"saturated\"", name);
    a->rejected_saturated = metrics_series(m, rejected, labels);
    int all[] = {a->outcomes[0], a->outcomes[1], a->outcomes[2], a->duration, a->queue_depth,
                 a->running, a->steps, a->tokens, a->rejected_queue, a->rejected_saturated};
    for (size_t i = 0; i < RM_ARRAY_LENGTH(all); i++) {
        if (all[i] < 0) {
            return -ENOSPC;
        }
    }
    return 0;
}

/* ---- runtime life cycle ---- */

int invocation_runtime_create(const struct config *config, uint32_t cores,
                              struct metrics_registry *metrics, struct store *store,
                              struct upstream_set *upstreams, struct invocation_runtime **out,
                              char *err, size_t err_length)
{
    struct invocation_runtime *runtime = rm_calloc(1, sizeof(*runtime));
    if (runtime == NULL) {
        snprintf(err, err_length, "out of memory creating the agent runtime");
        return -ENOMEM;
    }
    runtime->config = config;
    runtime->cores = cores;
    runtime->metrics = metrics;
    runtime->store = store;
    runtime->upstreams = upstreams;
    config_json_init();
    for (uint32_t i = 0; i < config->agent_count; i++) {
        if (invocation_metrics_agent(runtime, i) != 0) {
            snprintf(err, err_length, "metrics registry full registering %u agents",
                     config->agent_count);
            rm_free(runtime);
            return -ENOSPC;
        }
    }
    *out = runtime;
    return 0;
}

void invocation_runtime_destroy(struct invocation_runtime *runtime)
{
    rm_free(runtime);
}

int invocation_runtime_register_tool(struct invocation_runtime *runtime, const char *name,
                                     invocation_c_tool function, void *context)
{
    const struct config *config = runtime->config;
    for (uint32_t i = 0; i < config->tool_count; i++) {
        if (config->tools[i].kind == CONFIG_TOOL_C && strcmp(config->tools[i].name, name) == 0) {
            runtime->c_tools[i].function = function;
            runtime->c_tools[i].context = context;
            return 0;
        }
    }
    return -ENOENT;
}

int invocation_agent_find(const struct invocation_runtime *runtime, const char *name,
                          size_t length)
{
    for (uint32_t i = 0; i < runtime->config->agent_count; i++) {
        const char *candidate = runtime->config->agents[i].name;
        if (strlen(candidate) == length && memcmp(candidate, name, length) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* ---- owners and ids ---- */

static struct store_key invocation_session_key(char *buffer, size_t size, const char *agent,
                                               const char *session)
{
    int length = snprintf(buffer, size, "%s/%s", agent, session);
    RM_ASSERT(length > 0 && (size_t)length < size);
    return (struct store_key){INVOCATION_SESSION_NS, strlen(INVOCATION_SESSION_NS), buffer,
                              (size_t)length};
}

uint32_t invocation_owner_of_session(const struct invocation_runtime *runtime, uint32_t agent,
                                     const char *session, uint32_t here)
{
    if (session[0] == '\0') {
        return here;
    }
    char buffer[CONFIG_NAME_MAX + INVOCATION_SESSION_MAX + 2];
    struct store_key key = invocation_session_key(buffer, sizeof(buffer),
                                                  runtime->config->agents[agent].name, session);
    return store_shard_of(runtime->store, key);
}

uint32_t invocation_owner_of_id(const struct invocation_runtime *runtime, const char *id)
{
    struct store_key key = {INVOCATION_NS, strlen(INVOCATION_NS), id, strlen(id)};
    return store_shard_of(runtime->store, key);
}

static uint64_t invocation_next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

void invocation_make_id(struct invocation_runtime *runtime, uint32_t owner, const char *seed,
                        char id[INVOCATION_ID_BYTES + 1], uint64_t *random)
{
    uint64_t derived = seed != NULL ? invocation_hash(seed, strlen(seed)) : 0;
    for (uint64_t attempt = 0;; attempt++) {
        uint64_t value = seed != NULL ? invocation_hash((const char *)&derived, 8) ^ attempt
                                      : invocation_next_random(random);
        derived = seed != NULL ? value : derived;
        snprintf(id, INVOCATION_ID_BYTES + 1, "%016llx", (unsigned long long)value);
        if (invocation_owner_of_id(runtime, id) == owner) {
            return;
        }
    }
}

/* ---- tables ---- */

static size_t invocation_bucket(const char *text)
{
    return invocation_hash(text, strlen(text)) % INVOCATION_TABLE_BUCKETS;
}

struct invocation *invocation_find(struct invocation_core *core, const char *id)
{
    struct invocation *cursor = core->table[invocation_bucket(id)];
    while (cursor != NULL && strcmp(cursor->id, id) != 0) {
        cursor = cursor->hash_next;
    }
    return cursor;
}

static void invocation_table_remove(struct invocation_core *core, struct invocation *invocation)
{
    struct invocation **link = &core->table[invocation_bucket(invocation->id)];
    while (*link != invocation) {
        RM_ASSERT(*link != NULL);
        link = &(*link)->hash_next;
    }
    *link = invocation->hash_next;
}

static struct invocation_session *invocation_session_get(struct invocation_core *core,
                                                         uint32_t agent, const char *name,
                                                         bool create)
{
    char key[CONFIG_NAME_MAX + INVOCATION_SESSION_MAX + 2];
    snprintf(key, sizeof(key), "%u/%s", agent, name);
    size_t bucket = invocation_bucket(key);
    struct invocation_session *cursor = core->sessions[bucket];
    while (cursor != NULL && (cursor->agent != agent || strcmp(cursor->name, name) != 0)) {
        cursor = cursor->hash_next;
    }
    if (cursor != NULL || !create) {
        return cursor;
    }
    cursor = rm_calloc(1, sizeof(*cursor));
    if (cursor != NULL) {
        cursor->agent = agent;
        snprintf(cursor->name, sizeof(cursor->name), "%s", name);
        cursor->hash_next = core->sessions[bucket];
        core->sessions[bucket] = cursor;
    }
    return cursor;
}

static void invocation_session_drop(struct invocation_core *core,
                                    struct invocation_session *session)
{
    char key[CONFIG_NAME_MAX + INVOCATION_SESSION_MAX + 2];
    snprintf(key, sizeof(key), "%u/%s", session->agent, session->name);
    struct invocation_session **link = &core->sessions[invocation_bucket(key)];
    while (*link != session) {
        link = &(*link)->hash_next;
    }
    *link = session->hash_next;
    rm_free(session);
}

/* In admission order: a session's next invocation, made ready when the one before it ends,
 * goes where its arrival puts it instead of behind everything admitted since (which would
 * make it wait the whole queue once more for each invocation ahead of it in its session).
 * The walk is from the tail, so a new admission costs O(1). */
static void invocation_list_insert(struct invocation_list *list, struct invocation *invocation)
{
    struct invocation *after = list->tail;
    while (after != NULL && after->admitted > invocation->admitted) {
        after = after->previous;
    }
    invocation->previous = after;
    invocation->next = after != NULL ? after->next : list->head;
    if (invocation->next != NULL) {
        invocation->next->previous = invocation;
    } else {
        list->tail = invocation;
    }
    if (after != NULL) {
        after->next = invocation;
    } else {
        list->head = invocation;
    }
    list->count++;
}

static void invocation_list_remove(struct invocation_list *list, struct invocation *invocation)
{
    RM_ASSERT(list->count > 0);
    if (invocation->previous != NULL) {
        invocation->previous->next = invocation->next;
    } else {
        list->head = invocation->next;
    }
    if (invocation->next != NULL) {
        invocation->next->previous = invocation->previous;
    } else {
        list->tail = invocation->previous;
    }
    invocation->next = invocation->previous = NULL;
    list->count--;
}

/* ---- queues ---- */

/* Makes the invocation runnable: in its agent's ready list (a session's only at its head). */
static void invocation_make_ready(struct invocation_core *core, struct invocation *invocation)
{
    RM_ASSERT(!invocation->ready_listed);
    invocation->ready_listed = true;
    invocation_list_insert(&core->ready[invocation->agent], invocation);
}

void invocation_admit(struct invocation_core *core, struct invocation *invocation)
{
    struct invocation_runtime *runtime = core->runtime;
    size_t bucket = invocation_bucket(invocation->id);
    invocation->hash_next = core->table[bucket];
    core->table[bucket] = invocation;
    invocation->admitted = ++core->admissions;
    ck_pr_inc_32(&runtime->agents[invocation->agent].queued);
    ck_pr_inc_32(&runtime->total);
    metrics_add(runtime->metrics, core->core,
                runtime->agent_metrics[invocation->agent].queue_depth, 1);
    invocation->status = INVOCATION_QUEUED;
    struct invocation_session *session = invocation->session;
    if (session != NULL) {
        invocation->session_next = NULL;
        if (session->tail != NULL) {
            session->tail->session_next = invocation;
        } else {
            session->head = invocation;
        }
        session->tail = invocation;
    }
    if (session == NULL || session->head == invocation) {
        invocation_make_ready(core, invocation);
    }
    reactor_keep_awake(core->reactor);
}

/* A ready invocation of `agent` goes, if the agent has a free slot (exact, engine-wide). */
static bool invocation_start_one(struct invocation_core *core, uint32_t agent)
{
    struct invocation_runtime *runtime = core->runtime;
    struct invocation_list *ready = &core->ready[agent];
    if (ready->head == NULL) {
        return false;
    }
    uint32_t max = runtime->config->agents[agent].max_concurrent;
    uint32_t *running = &runtime->agents[agent].running;
    uint32_t current = ck_pr_load_32(running);
    do {
        if (current >= max) {
            return false;
        }
    } while (!ck_pr_cas_32_value(running, current, current + 1, &current));
    struct invocation *invocation = ready->head;
    invocation_list_remove(ready, invocation);
    invocation->ready_listed = false;
    RM_ASSERT(invocation->session == NULL || invocation->session->head == invocation);
    ck_pr_dec_32(&runtime->agents[agent].queued);
    metrics_add(runtime->metrics, core->core, runtime->agent_metrics[agent].queue_depth, -1);
    metrics_add(runtime->metrics, core->core, runtime->agent_metrics[agent].running, 1);
    core->active++;
    agent_run_start(core, invocation);
    return true;
}

/* Round robin over agents, one start each per round, so one agent's backlog cannot starve
 * another's. */
void invocation_schedule(struct invocation_core *core)
{
    uint32_t agents = core->runtime->config->agent_count;
    bool progress = true;
    while (progress) {
        progress = false;
        for (uint32_t step = 0; step < agents; step++) {
            uint32_t agent = (core->agent_cursor + step) % agents;
            progress |= invocation_start_one(core, agent);
        }
        core->agent_cursor++;
    }
}

/* ---- answers ---- */

static void invocation_order_deliver(struct reactor *target, struct reactor_message *message)
{
    (void)target;
    struct invocation_order *order = message->pointer;
    order->reply(order);
}

static bool invocation_order_post(struct invocation_core *core, struct invocation_order *order)
{
    struct reactor_message message = {invocation_order_deliver, order, 0};
    return reactor_post(core->reactor, order->origin, &message) == 0;
}

/* Gives back the order's place in the queue: the invocation is admitted (and counts in
 * `queued`) or the order was refused. */
static void invocation_order_unreserve(struct invocation_core *core,
                                       struct invocation_order *order)
{
    if (order->reserved) {
        order->reserved = false;
        ck_pr_dec_32(&core->runtime->agents[order->agent].creating);
    }
}

void invocation_answer(struct invocation_core *core, struct invocation_order *order, int status,
                       json_t *body)
{
    invocation_order_unreserve(core, order);
    order->status = status;
    order->body = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    order->body_length = order->body != NULL ? strlen(order->body) : 0;
    json_decref(body);
    if (order->body == NULL) {
        order->status = 503;
    }
    if (!invocation_order_post(core, order)) {
        order->next = core->outbox;
        core->outbox = order;
        reactor_keep_awake(core->reactor);
    }
}

void invocation_answer_error(struct invocation_core *core, struct invocation_order *order,
                             int status, const char *type, const char *message)
{
    invocation_answer(core, order, status,
                      json_pack("{s:{s:s, s:s}}", "error", "type", type, "message", message));
}

static void invocation_outbox_flush(struct invocation_core *core)
{
    struct invocation_order *pending = core->outbox;
    core->outbox = NULL;
    while (pending != NULL) {
        struct invocation_order *next = pending->next;
        if (!invocation_order_post(core, pending)) {
            pending->next = core->outbox;
            core->outbox = pending;
        }
        pending = next;
    }
}

/* ---- views ---- */

json_t *invocation_view(const struct invocation_runtime *runtime,
                        const struct invocation *invocation)
{
    json_t *view = json_pack(
        "{s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "id", invocation->id, "agent",
        runtime->config->agents[invocation->agent].name, "status",
        invocation_status_name(invocation->status), "created_ms",
        (json_int_t)invocation->created_ms, "started_ms", (json_int_t)invocation->started_ms,
        "finished_ms", (json_int_t)invocation->finished_ms, "tokens",
        (json_int_t)invocation->tokens);
    if (view == NULL) {
        return NULL;
    }
    if (invocation->session != NULL) {
        json_object_set_new(view, "session", json_string(invocation->session->name));
    }
    json_object_set(view, "steps", invocation->steps != NULL ? invocation->steps : json_array());
    if (invocation->result != NULL) {
        json_object_set(view, "result", invocation->result);
    }
    if (invocation->error != NULL) {
        json_object_set_new(view, "error", json_string(invocation->error));
    }
    return view;
}

static json_t *invocation_accepted(const struct invocation *invocation)
{
    char url[64];
    snprintf(url, sizeof(url), "/v1/invocations/%s", invocation->id);
    return json_pack("{s:s, s:s, s:s}", "id", invocation->id, "status",
                     invocation_status_name(invocation->status), "status_url", url);
}

/* ---- waiters ---- */

static void invocation_waiting_remove(struct invocation_core *core,
                                      struct invocation_order *order)
{
    if (order->previous != NULL) {
        order->previous->next = order->next;
    } else {
        core->waiting = order->next;
    }
    if (order->next != NULL) {
        order->next->previous = order->previous;
    } else {
        core->waiting_tail = order->previous;
    }
    order->next = order->previous = NULL;
}

/* Keeps the list ordered by deadline. Waits are mostly alike, so a new deadline is nearly
 * always the latest: the walk from the tail is short. */
static void invocation_waiting_insert(struct invocation_core *core,
                                      struct invocation_order *order)
{
    struct invocation_order *after = core->waiting_tail;
    while (after != NULL && after->deadline_ns > order->deadline_ns) {
        after = after->previous;
    }
    order->previous = after;
    order->next = after != NULL ? after->next : core->waiting;
    if (order->next != NULL) {
        order->next->previous = order;
    } else {
        core->waiting_tail = order;
    }
    if (after != NULL) {
        after->next = order;
    } else {
        core->waiting = order;
    }
}

/* The order waits for the invocation's end, at most until its deadline. */
static void invocation_wait(struct invocation_core *core, struct invocation *invocation,
                            struct invocation_order *order)
{
    order->waiting_for = invocation;
    order->deadline_ns = reactor_now_ns(core->reactor) + order->wait_ms * 1000000ull;
    order->waiter_next = invocation->waiters;
    invocation->waiters = order;
    invocation_waiting_insert(core, order);
}

static void invocation_waiters_expire(struct invocation_core *core, uint64_t now_ns)
{
    while (core->waiting != NULL && core->waiting->deadline_ns <= now_ns) {
        struct invocation_order *order = core->waiting;
        invocation_waiting_remove(core, order);
        struct invocation *invocation = order->waiting_for;
        struct invocation_order **link = &invocation->waiters;
        while (*link != order) {
            link = &(*link)->waiter_next;
        }
        *link = order->waiter_next;
        invocation_answer(core, order, 202, invocation_accepted(invocation));
    }
}

static void invocation_waiters_answer(struct invocation_core *core,
                                      struct invocation *invocation)
{
    struct invocation_order *order = invocation->waiters;
    invocation->waiters = NULL;
    while (order != NULL) {
        struct invocation_order *next = order->waiter_next;
        invocation_waiting_remove(core, order);
        invocation_answer(core, order, 200, invocation_view(core->runtime, invocation));
        order = next;
    }
}

/* ---- the end ---- */

char *invocation_strdup(const char *text)
{
    size_t length = text != NULL ? strlen(text) : 0;
    char *copy = length > 0 ? rm_malloc(length + 1) : NULL;
    if (copy != NULL) {
        memcpy(copy, text, length + 1);
    }
    return copy;
}

void invocation_set_error(struct invocation *invocation, const char *text)
{
    rm_free(invocation->error);
    invocation->error = invocation_strdup(text);
}

void invocation_free(struct invocation *invocation)
{
    rm_free(invocation->input);
    rm_free(invocation->error);
    rm_free(invocation->idempotency);
    json_decref(invocation->messages);
    json_decref(invocation->steps);
    json_decref(invocation->result);
    rm_free(invocation);
}

static void invocation_count_end(struct invocation_core *core, struct invocation *invocation)
{
    struct invocation_runtime *runtime = core->runtime;
    struct invocation_agent_metrics *m = &runtime->agent_metrics[invocation->agent];
    int outcome = invocation->status == INVOCATION_COMPLETED ? 0
                  : invocation->status == INVOCATION_FAILED  ? 1
                                                             : 2;
    metrics_add(runtime->metrics, core->core, m->outcomes[outcome], 1);
    uint64_t took_ms = invocation->finished_ms - invocation->created_ms;
    metrics_observe(runtime->metrics, core->core, m->duration, took_ms * 1000000ull);
    metrics_observe(runtime->metrics, core->core, m->steps,
                    invocation->steps != NULL ? json_array_size(invocation->steps) : 0);
    metrics_observe(runtime->metrics, core->core, m->tokens, invocation->tokens);
    ck_pr_inc_64(&runtime->agents[invocation->agent].finished);
}

static void invocation_release(struct invocation_core *core, struct invocation *invocation)
{
    struct invocation_runtime *runtime = core->runtime;
    if (invocation->holds_slot) {
        invocation->holds_slot = false;
        ck_pr_dec_32(&runtime->agents[invocation->agent].running);
        metrics_add(runtime->metrics, core->core,
                    runtime->agent_metrics[invocation->agent].running, -1);
        RM_ASSERT(core->active > 0);
        core->active--;
    } else {
        ck_pr_dec_32(&runtime->agents[invocation->agent].queued);
        metrics_add(runtime->metrics, core->core,
                    runtime->agent_metrics[invocation->agent].queue_depth, -1);
    }
    ck_pr_dec_32(&runtime->total);
}

/* Unlinks it from its session; the next one of the session becomes ready. */
static void invocation_session_leave(struct invocation_core *core,
                                     struct invocation *invocation)
{
    struct invocation_session *session = invocation->session;
    if (session == NULL) {
        return;
    }
    struct invocation **link = &session->head;
    struct invocation *previous = NULL;
    while (*link != invocation) {
        previous = *link;
        link = &(*link)->session_next;
    }
    bool was_head = session->head == invocation;
    *link = invocation->session_next;
    if (session->tail == invocation) {
        session->tail = previous;
    }
    if (session->head == NULL) {
        invocation_session_drop(core, session);
    } else if (was_head) {
        invocation_make_ready(core, session->head);
    }
    invocation->session = NULL;
}

void invocation_finished(struct invocation_core *core, struct invocation *invocation)
{
    invocation_count_end(core, invocation);
    invocation_release(core, invocation);
    invocation_waiters_answer(core, invocation);
    if (invocation->parent != NULL) {
        agent_run_child_done(core, invocation);
    }
    if (invocation->ready_listed) {
        invocation_list_remove(&core->ready[invocation->agent], invocation);
        invocation->ready_listed = false;
    }
    invocation_session_leave(core, invocation);
    invocation_table_remove(core, invocation);
    invocation_free(invocation);
    invocation_schedule(core);
}

/* ---- CREATE ---- */

struct invocation_lookup {
    struct store_request request;
    struct invocation_core *core;
    struct invocation_order *order;
    char key[CONFIG_NAME_MAX + INVOCATION_IDEMPOTENCY_MAX + 2];
    char id[INVOCATION_ID_BYTES + 1];
};

static uint32_t invocation_retry_after(const struct invocation_agent_shared *shared,
                                       uint32_t queued)
{
    uint64_t rate = ck_pr_load_64((uint64_t *)&shared->finished_per_second);
    uint64_t seconds = rate == 0 ? 1 : (queued + rate - 1) / rate;
    return (uint32_t)(seconds < 1 ? 1 : seconds > INVOCATION_RETRY_AFTER_MAX_S
                                            ? INVOCATION_RETRY_AFTER_MAX_S
                                            : seconds);
}

static void invocation_created(struct invocation_core *core, struct invocation *invocation,
                               int status)
{
    struct invocation_order *order = invocation->creator;
    invocation->creator = NULL;
    if (status != 0) {
        char message[160];
        snprintf(message, sizeof(message), "the invocation could not be journaled (%s); "
                 "retry later", strerror(-status));
        order->retry_after_s = 1;
        invocation_answer_error(core, order, 503, "store_unavailable", message);
        invocation_free(invocation);
        return;
    }
    if (order->session[0] != '\0') {
        invocation->session = invocation_session_get(core, invocation->agent, order->session,
                                                     true);
    }
    invocation_admit(core, invocation);
    invocation_order_unreserve(core, order);
    if (order->wait_ms > 0) {
        invocation_wait(core, invocation, order);
    } else {
        invocation_answer(core, order, 202, invocation_accepted(invocation));
    }
    invocation_schedule(core);
}

static void invocation_create(struct invocation_core *core, struct invocation_order *order,
                              const char *id)
{
    struct invocation *invocation = rm_calloc(1, sizeof(*invocation));
    if (invocation == NULL) {
        invocation_answer_error(core, order, 503, "out_of_memory", "retry later");
        return;
    }
    snprintf(invocation->id, sizeof(invocation->id), "%s", id);
    invocation->agent = order->agent;
    invocation->input = order->input;
    order->input = NULL;
    invocation->created_ms = invocation_unix_ms();
    invocation->messages = json_array();
    invocation->steps = json_array();
    invocation->idempotency = invocation_strdup(order->idempotency);
    invocation->creator = order;
    /* The session is named in the record; the in-memory link is made once it is durable. */
    invocation_journal(core, invocation, STORE_RECORD_INVOCATION_CREATED, invocation_created);
}

/* An Idempotency-Key seen before: the same invocation, live or from its record. */
static void invocation_replay_record(struct store_request *request,
                                     const struct store_result *result)
{
    struct invocation_lookup *lookup = request->context;
    struct invocation_core *core = lookup->core;
    if (result->status == STORE_NOT_FOUND) {
        invocation_create(core, lookup->order, lookup->id); /* crashed before its record */
    } else if (result->status != STORE_OK) {
        invocation_answer_error(core, lookup->order, 503, "store_unavailable", "retry later");
    } else {
        json_t *record = json_loadb((const char *)result->value, result->value_length, 0, NULL);
        json_object_del(record, "messages");
        const char *status = json_string_value(json_object_get(record, "status"));
        bool done = status != NULL && strcmp(status, "queued") != 0 &&
                    strcmp(status, "running") != 0;
        invocation_answer(core, lookup->order, done ? 200 : 202, record);
    }
    rm_free(lookup);
}

static void invocation_replay(struct invocation_lookup *lookup)
{
    struct invocation_core *core = lookup->core;
    struct invocation *live = invocation_find(core, lookup->id);
    if (live != NULL) {
        invocation_answer(core, lookup->order, 202, invocation_accepted(live));
        rm_free(lookup);
        return;
    }
    struct store_key key = {INVOCATION_NS, strlen(INVOCATION_NS), lookup->id,
                            strlen(lookup->id)};
    if (store_get(core->runtime->store, &lookup->request, key, invocation_replay_record,
                  lookup) != 0) {
        invocation_answer_error(core, lookup->order, 503, "store_unavailable", "retry later");
        rm_free(lookup);
    }
}

static void invocation_idempotency_read(struct store_request *request,
                                        const struct store_result *result)
{
    struct invocation_lookup *lookup = request->context;
    if (result->status != STORE_OK || result->value_length != INVOCATION_ID_BYTES) {
        invocation_answer_error(lookup->core, lookup->order, 503, "store_unavailable",
                                "the idempotency record could not be read; retry later");
        rm_free(lookup);
        return;
    }
    memcpy(lookup->id, result->value, INVOCATION_ID_BYTES);
    lookup->id[INVOCATION_ID_BYTES] = '\0';
    invocation_replay(lookup);
}

static struct store_key invocation_idempotency_key(const struct invocation_lookup *lookup)
{
    return (struct store_key){INVOCATION_IDEMPOTENCY_NS, strlen(INVOCATION_IDEMPOTENCY_NS),
                              lookup->key, strlen(lookup->key)};
}

static void invocation_idempotency_claimed(struct store_request *request,
                                           const struct store_result *result)
{
    struct invocation_lookup *lookup = request->context;
    struct invocation_core *core = lookup->core;
    if (result->status == STORE_OK) {
        invocation_create(core, lookup->order, lookup->id);
        rm_free(lookup);
        return;
    }
    if (result->status == STORE_CONFLICT &&
        store_get(core->runtime->store, &lookup->request, invocation_idempotency_key(lookup),
                  invocation_idempotency_read, lookup) == 0) {
        return;
    }
    invocation_answer_error(core, lookup->order, 503, "store_unavailable", "retry later");
    rm_free(lookup);
}

/* Claims the key for a new id with a create-only write; a conflict means it was seen. */
static void invocation_create_idempotent(struct invocation_core *core,
                                         struct invocation_order *order)
{
    struct invocation_lookup *lookup = rm_calloc(1, sizeof(*lookup));
    if (lookup == NULL) {
        invocation_answer_error(core, order, 503, "out_of_memory", "retry later");
        return;
    }
    lookup->core = core;
    lookup->order = order;
    snprintf(lookup->key, sizeof(lookup->key), "%s/%s",
             core->runtime->config->agents[order->agent].name, order->idempotency);
    invocation_make_id(core->runtime, core->core, NULL, lookup->id, &core->random);
    struct store_write write = {.expected_version = 0, .value = lookup->id,
                                .value_length = INVOCATION_ID_BYTES};
    if (store_put(core->runtime->store, &lookup->request, invocation_idempotency_key(lookup),
                  &write, invocation_idempotency_claimed, lookup) != 0) {
        invocation_answer_error(core, order, 503, "store_unavailable", "retry later");
        rm_free(lookup);
    }
}

static void invocation_order_create(struct invocation_core *core, struct invocation_order *order)
{
    struct invocation_runtime *runtime = core->runtime;
    const struct config_agent *agent = &runtime->config->agents[order->agent];
    struct invocation_agent_shared *shared = &runtime->agents[order->agent];
    uint32_t queued = ck_pr_load_32(&shared->queued) + ck_pr_faa_32(&shared->creating, 1);
    order->reserved = true;
    if (queued >= agent->max_queue) {
        metrics_add(runtime->metrics, core->core,
                    runtime->agent_metrics[order->agent].rejected_queue, 1);
        order->retry_after_s = invocation_retry_after(shared, queued);
        invocation_answer_error(core, order, 429, "queue_full",
                                "the agent's queue is full (max_queue); retry after the delay "
                                "in Retry-After");
        return;
    }
    if (ck_pr_load_32(&runtime->total) >= runtime->config->limits.max_invocations) {
        metrics_add(runtime->metrics, core->core,
                    runtime->agent_metrics[order->agent].rejected_saturated, 1);
        order->retry_after_s = invocation_retry_after(shared, queued);
        invocation_answer_error(core, order, 503, "saturated",
                                "the engine holds limits.max_invocations invocations; retry "
                                "after the delay in Retry-After");
        return;
    }
    if (order->idempotency[0] != '\0') {
        invocation_create_idempotent(core, order);
        return;
    }
    char id[INVOCATION_ID_BYTES + 1];
    invocation_make_id(runtime, core->core, NULL, id, &core->random);
    invocation_create(core, order, id);
}

/* ---- GET and CANCEL ---- */

static void invocation_record_answer(struct store_request *request,
                                     const struct store_result *result)
{
    struct invocation_lookup *lookup = request->context;
    struct invocation_core *core = lookup->core;
    struct invocation_order *order = lookup->order;
    if (result->status == STORE_NOT_FOUND) {
        invocation_answer_error(core, order, 404, "not_found", "no invocation has this id");
    } else if (result->status != STORE_OK) {
        invocation_answer_error(core, order, 503, "store_unavailable", "retry later");
    } else if (order->kind == INVOCATION_ORDER_CANCEL) {
        invocation_answer_error(core, order, 409, "already_finished",
                                "the invocation has already finished");
    } else {
        json_t *record = json_loadb((const char *)result->value, result->value_length, 0, NULL);
        json_object_del(record, "messages");
        json_object_del(record, "idempotency_key");
        json_object_del(record, "depth");
        invocation_answer(core, order, record != NULL ? 200 : 500, record);
    }
    rm_free(lookup);
}

static void invocation_order_lookup(struct invocation_core *core, struct invocation_order *order)
{
    struct invocation_lookup *lookup = rm_calloc(1, sizeof(*lookup));
    if (lookup == NULL) {
        invocation_answer_error(core, order, 503, "out_of_memory", "retry later");
        return;
    }
    lookup->core = core;
    lookup->order = order;
    struct store_key key = {INVOCATION_NS, strlen(INVOCATION_NS), order->id, strlen(order->id)};
    if (store_get(core->runtime->store, &lookup->request, key, invocation_record_answer,
                  lookup) != 0) {
        invocation_answer_error(core, order, 503, "store_unavailable", "retry later");
        rm_free(lookup);
    }
}

static void invocation_cancel_queued(struct invocation_core *core,
                                     struct invocation *invocation)
{
    if (invocation->ready_listed) {
        invocation_list_remove(&core->ready[invocation->agent], invocation);
        invocation->ready_listed = false;
    }
    invocation->status = INVOCATION_CANCELLED;
    invocation->finished_ms = invocation_unix_ms();
    invocation_set_error(invocation, "cancelled before it started");
    invocation->finishing = true;
    invocation_journal(core, invocation, STORE_RECORD_INVOCATION_FINISHED,
                       agent_run_journal_finished);
}

static void invocation_order_cancel(struct invocation_core *core, struct invocation_order *order,
                                    struct invocation *invocation)
{
    if (invocation->finishing || invocation->cancel_requested) {
        invocation_wait(core, invocation, order);
        return;
    }
    order->wait_ms = INVOCATION_WAIT_MS_MAX;
    invocation_wait(core, invocation, order);
    if (invocation->status == INVOCATION_QUEUED) {
        invocation_cancel_queued(core, invocation);
    } else {
        agent_run_stop(core, invocation, INVOCATION_CANCELLED, "cancelled by DELETE");
    }
}

void invocation_order_run(struct invocation_runtime *runtime, struct reactor *reactor,
                          struct invocation_order *order)
{
    struct invocation_core *core = invocation_core_of(runtime, reactor_index(reactor));
    RM_ASSERT(core->reactor == reactor);
    if (order->kind == INVOCATION_ORDER_CREATE) {
        invocation_order_create(core, order);
        return;
    }
    struct invocation *live = invocation_find(core, order->id);
    if (live == NULL) {
        invocation_order_lookup(core, order);
    } else if (order->kind == INVOCATION_ORDER_GET) {
        invocation_answer(core, order, 200, invocation_view(runtime, live));
    } else {
        invocation_order_cancel(core, order, live);
    }
}

/* ---- per core ---- */

static void invocation_drain_rates(struct invocation_runtime *runtime, uint64_t now_ns)
{
    for (uint32_t i = 0; i < runtime->config->agent_count; i++) {
        struct invocation_agent_shared *shared = &runtime->agents[i];
        if (now_ns - shared->mark_ns < 1000000000ull) {
            continue;
        }
        uint64_t finished = ck_pr_load_64(&shared->finished);
        ck_pr_store_64(&shared->finished_per_second, (finished - shared->finished_mark) *
                                                         1000000000ull /
                                                         (now_ns - shared->mark_ns));
        shared->finished_mark = finished;
        shared->mark_ns = now_ns;
    }
}

static void invocation_tick(struct reactor *reactor, void *context)
{
    struct invocation_core *core = context;
    uint64_t now = reactor_now_ns(reactor);
    if (!core->recovered && ck_pr_load_int(&core->runtime->ready)) {
        core->recovered = true;
        invocation_journal_recover(core);
    }
    invocation_outbox_flush(core);
    invocation_journal_retry(core);
    invocation_waiters_expire(core, now);
    if (now >= core->next_deadline_check_ns) {
        core->next_deadline_check_ns = now + INVOCATION_DEADLINE_CHECK_NS;
        agent_run_check_deadlines(core, now);
        if (core->core == 0) {
            invocation_drain_rates(core->runtime, now);
        }
    }
    invocation_schedule(core);
}

int invocation_core_open(struct invocation_runtime *runtime, struct reactor *reactor)
{
    struct invocation_core *core = rm_calloc(1, sizeof(*core));
    if (core == NULL) {
        return -ENOMEM;
    }
    core->runtime = runtime;
    core->reactor = reactor;
    core->core = reactor_index(reactor);
    core->random = 0x2545f4914f6cdd1dull ^ reactor_clock_ns() ^ ((uint64_t)core->core << 40);
    runtime->per_core[core->core] = core;
    reactor_hook_add(reactor, (struct reactor_hook){invocation_tick, core});
    return 0;
}

void invocation_runtime_ready(struct invocation_runtime *runtime)
{
    ck_pr_store_int(&runtime->ready, 1);
}

bool invocation_core_busy(struct invocation_runtime *runtime, struct reactor *reactor)
{
    struct invocation_core *core = runtime->per_core[reactor_index(reactor)];
    return core != NULL && (core->writes > 0 || core->outbox != NULL);
}

/* Invocations still queued or running stay in their records and resume at the next start. */
void invocation_core_close(struct invocation_runtime *runtime, struct reactor *reactor)
{
    struct invocation_core *core = runtime->per_core[reactor_index(reactor)];
    if (core == NULL) {
        return;
    }
    for (size_t i = 0; i < INVOCATION_TABLE_BUCKETS; i++) {
        struct invocation *invocation = core->table[i];
        while (invocation != NULL) {
            struct invocation *next = invocation->hash_next;
            agent_run_discard(core, invocation);
            invocation_free(invocation);
            invocation = next;
        }
        struct invocation_session *session = core->sessions[i];
        while (session != NULL) {
            struct invocation_session *next = session->hash_next;
            rm_free(session);
            session = next;
        }
    }
    runtime->per_core[core->core] = NULL;
    rm_free(core);
}

void invocation_recovered(struct invocation_core *core, struct invocation *invocation,
                          const char *session)
{
    if (session[0] != '\0') {
        invocation->session = invocation_session_get(core, invocation->agent, session, true);
    }
    invocation_admit(core, invocation);
}
