/* The agent loop of one running invocation: load the session's history, then LLM call, tool
 * calls (in parallel), LLM call... until a final answer, max_steps or the deadline; each
 * completed step journaled before the next starts; the session's history written back with
 * compare-and-swap at the end.
 *
 * Resuming after a crash needs no separate path: a step looks at the journaled messages.
 * Their last message decides what comes next: an assistant message with tool calls whose
 * results are not all there runs the missing calls only; a final assistant message ends the
 * invocation; anything else calls the LLM. */

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/agent_messages.h"
#include "core/alloc.h"
#include "core/invocation_internal.h"
#include "core/llm.h"
#include "core/log.h"
#include "core/rm_assert.h"
#include "core/tool.h"
#include "core/upstream.h"

#define AGENT_RUN_SESSION_TRIES 8
#define AGENT_RUN_APPLIED_MAX 32 /* invocation ids a session's history remembers */

struct agent_run;

struct agent_slot {
    struct agent_run *run;
    uint32_t index;
    bool active;
    int tool; /* config index, -1 unknown */
    char id[AGENT_TOOL_CALL_ID_MAX];
    char name[AGENT_TOOL_NAME_MAX];
    char *arguments;
    uint64_t start_ns;
    struct invocation *child;
    char child_id[INVOCATION_ID_BYTES + 1];
    struct store_request lookup;
    struct tool_call call;
};

struct agent_run {
    struct invocation *invocation;
    struct invocation_core *core;
    struct agent_run *next;
    struct agent_run *previous;
    json_t *history; /* the session's messages before this invocation */
    json_t *applied; /* ids of invocations already in the history */
    uint64_t history_version;
    json_t *tools;
    char *request;
    bool llm_active;
    uint64_t llm_start_ns;
    uint32_t tools_active;
    uint64_t deadline_ns;
    uint64_t retry_ns; /* an LLM queue that was full: step again at this time */
    bool stopping;
    uint32_t session_tries;
    char *session_text;
    struct store_request session;
    /* Allocated for the calls of a turn only (a slot is ~2 KB; most turns have one call). */
    struct agent_slot *slots[AGENT_TOOL_CALLS_MAX];
    struct llm_call llm;
};

static const struct config_agent *agent_run_agent(const struct agent_run *run)
{
    return &run->core->runtime->config->agents[run->invocation->agent];
}

static uint64_t agent_run_ms(uint64_t ns) { return ns / 1000000; }

/* ---- the end ---- */

void agent_run_journal_finished(struct invocation_core *core, struct invocation *invocation,
                                int status)
{
    if (status != 0) {
        log_error("the end of an invocation could not be journaled; it runs again after a "
                  "restart", "id", invocation->id, "error", strerror(-status));
    }
    invocation_finished(core, invocation);
}

static void agent_run_unlink(struct agent_run *run)
{
    struct invocation_core *core = run->core;
    if (run->previous != NULL) {
        run->previous->next = run->next;
    } else {
        core->runs = run->next;
    }
    if (run->next != NULL) {
        run->next->previous = run->previous;
    }
}

static void agent_run_free(struct agent_run *run)
{
    for (uint32_t i = 0; i < AGENT_TOOL_CALLS_MAX; i++) {
        if (run->slots[i] != NULL) {
            rm_free(run->slots[i]->arguments);
            rm_free(run->slots[i]);
        }
    }
    json_decref(run->history);
    json_decref(run->applied);
    json_decref(run->tools);
    rm_free(run->request);
    rm_free(run->session_text);
    run->invocation->run = NULL;
    rm_free(run);
}

/* Stops what is in flight: the LLM call, HTTP tool calls; sub-agents go on alone. */
static void agent_run_halt(struct agent_run *run)
{
    if (run->llm_active) {
        llm_cancel(&run->llm);
        run->llm_active = false;
    }
    for (uint32_t i = 0; i < AGENT_TOOL_CALLS_MAX; i++) {
        struct agent_slot *slot = run->slots[i];
        if (slot == NULL || !slot->active) {
            continue;
        }
        if (slot->child != NULL) {
            slot->child->parent = NULL;
        } else if (slot->tool >= 0 &&
                   run->core->runtime->config->tools[slot->tool].kind == CONFIG_TOOL_HTTP) {
            tool_call_cancel(&slot->call);
        }
        slot->active = false;
    }
    run->tools_active = 0;
}

static void agent_run_finalize(struct agent_run *run, enum invocation_status status)
{
    struct invocation *invocation = run->invocation;
    struct invocation_core *core = run->core;
    agent_run_halt(run);
    agent_run_unlink(run);
    agent_run_free(run);
    invocation->status = status;
    invocation->finished_ms = invocation_unix_ms();
    invocation->finishing = true;
    invocation_journal(core, invocation, STORE_RECORD_INVOCATION_FINISHED,
                       agent_run_journal_finished);
}

static void agent_run_fail(struct agent_run *run, const char *why)
{
    invocation_set_error(run->invocation, why);
    agent_run_finalize(run, INVOCATION_FAILED);
}

void agent_run_stop(struct invocation_core *core, struct invocation *invocation,
                    enum invocation_status status, const char *why)
{
    (void)core;
    struct agent_run *run = invocation->run;
    invocation->cancel_requested = true;
    if (run == NULL || run->stopping) {
        return; /* already writing its end */
    }
    run->stopping = true;
    invocation_set_error(invocation, why);
    agent_run_finalize(run, status);
}

void agent_run_discard(struct invocation_core *core, struct invocation *invocation)
{
    (void)core;
    if (invocation->run != NULL) {
        agent_run_halt(invocation->run);
        agent_run_free(invocation->run);
    }
}

/* ---- the session's history ---- */

static struct store_key agent_run_session_key(const struct agent_run *run, char *buffer,
                                              size_t size)
{
    const struct invocation *invocation = run->invocation;
    int length = snprintf(buffer, size, "%s/%s", agent_run_agent(run)->name,
                          invocation->session->name);
    return (struct store_key){INVOCATION_SESSION_NS, strlen(INVOCATION_SESSION_NS), buffer,
                              (size_t)length};
}

static bool agent_run_applied(const struct agent_run *run)
{
    size_t index;
    json_t *id;
    json_array_foreach(run->applied, index, id) {
        if (strcmp(json_string_value(id) != NULL ? json_string_value(id) : "",
                   run->invocation->id) == 0) {
            return true;
        }
    }
    return false;
}

/* {"messages": [...], "applied": [...]} of the session; absent or unreadable: empty. */
static void agent_run_history_parse(struct agent_run *run, const struct store_result *result)
{
    json_decref(run->history);
    json_decref(run->applied);
    json_t *doc = result->status == STORE_OK
                      ? json_loadb((const char *)result->value, result->value_length, 0, NULL)
                      : NULL;
    run->history = json_incref(json_object_get(doc, "messages"));
    run->applied = json_incref(json_object_get(doc, "applied"));
    run->history = json_is_array(run->history) ? run->history : json_array();
    run->applied = json_is_array(run->applied) ? run->applied : json_array();
    run->history_version = result->status == STORE_OK ? result->version : 0;
    json_decref(doc);
}

static void agent_run_step(struct agent_run *run);
static void agent_run_session_write(struct agent_run *run);

static void agent_run_history_loaded(struct store_request *request,
                                     const struct store_result *result)
{
    struct agent_run *run = request->context;
    if (result->status != STORE_OK && result->status != STORE_NOT_FOUND) {
        agent_run_fail(run, "the session's history could not be read from the store");
        return;
    }
    agent_run_history_parse(run, result);
    agent_run_step(run);
}

static void agent_run_session_reloaded(struct store_request *request,
                                       const struct store_result *result)
{
    struct agent_run *run = request->context;
    if (result->status != STORE_OK && result->status != STORE_NOT_FOUND) {
        agent_run_fail(run, "the session's history could not be read back after a conflict");
        return;
    }
    agent_run_history_parse(run, result);
    agent_run_session_write(run);
}

static void agent_run_session_written(struct store_request *request,
                                      const struct store_result *result)
{
    struct agent_run *run = request->context;
    rm_free(run->session_text);
    run->session_text = NULL;
    if (result->status == STORE_OK) {
        agent_run_finalize(run, INVOCATION_COMPLETED);
        return;
    }
    char key[CONFIG_NAME_MAX + INVOCATION_SESSION_MAX + 2];
    if (result->status == STORE_CONFLICT && ++run->session_tries < AGENT_RUN_SESSION_TRIES &&
        store_get(run->core->runtime->store, &run->session,
                  agent_run_session_key(run, key, sizeof(key)), agent_run_session_reloaded,
                  run) == 0) {
        return; /* someone else wrote it: merge onto theirs */
    }
    agent_run_fail(run, "the session's history could not be written back");
}

/* History + this invocation's messages, unless a write before a crash already put them in. */
static void agent_run_session_write(struct agent_run *run)
{
    if (agent_run_applied(run)) {
        agent_run_finalize(run, INVOCATION_COMPLETED);
        return;
    }
    json_t *messages = json_copy(run->history);
    json_array_extend(messages, run->invocation->messages);
    json_t *applied = json_copy(run->applied);
    while (json_array_size(applied) >= AGENT_RUN_APPLIED_MAX) {
        json_array_remove(applied, 0);
    }
    json_array_append_new(applied, json_string(run->invocation->id));
    json_t *doc = json_pack("{s:o, s:o}", "messages", messages, "applied", applied);
    run->session_text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    char key[CONFIG_NAME_MAX + INVOCATION_SESSION_MAX + 2];
    struct store_write write = {
        .expected_version = run->history_version,
        .value = run->session_text,
        .value_length = run->session_text != NULL ? strlen(run->session_text) : 0,
    };
    if (run->session_text == NULL ||
        store_put(run->core->runtime->store, &run->session,
                  agent_run_session_key(run, key, sizeof(key)), &write,
                  agent_run_session_written, run) != 0) {
        agent_run_fail(run, "the session's history could not be written back");
    }
}

static void agent_run_complete(struct agent_run *run, const char *content)
{
    struct invocation *invocation = run->invocation;
    json_decref(invocation->result);
    invocation->result = json_string(content != NULL ? content : "");
    if (invocation->session != NULL) {
        agent_run_session_write(run);
    } else {
        agent_run_finalize(run, INVOCATION_COMPLETED);
    }
}

/* ---- steps ---- */

static void agent_run_record(struct agent_run *run, const char *kind, const char *target,
                             uint64_t start_ns, const char *outcome, uint64_t tokens)
{
    uint64_t took_ns = reactor_now_ns(run->core->reactor) - start_ns;
    json_int_t start_ms = (json_int_t)(invocation_unix_ms() - agent_run_ms(took_ns));
    json_array_append_new(run->invocation->steps,
                          json_pack("{s:s, s:s, s:I, s:I, s:I, s:s}", "kind", kind, "target",
                                    target, "start_ms", start_ms, "duration_us",
                                    (json_int_t)(took_ns / 1000), "tokens", (json_int_t)tokens,
                                    "outcome", outcome));
}

static void agent_run_journaled(struct invocation_core *core, struct invocation *invocation,
                                int status)
{
    (void)core;
    struct agent_run *run = invocation->run;
    if (run == NULL || run->stopping) {
        return;
    }
    if (status != 0) {
        char why[160];
        snprintf(why, sizeof(why), "a step could not be journaled: %s", strerror(-status));
        agent_run_fail(run, why);
        return;
    }
    if (run->tools_active == 0 && !run->llm_active) {
        agent_run_step(run);
    }
}

static void agent_run_llm_done(struct llm_call *call)
{
    struct agent_run *run = call->context;
    struct invocation *invocation = run->invocation;
    const struct upstream_set *upstreams = run->core->runtime->upstreams;
    run->llm_active = false;
    const char *target = upstreams->endpoints[call->endpoint_used].config->name;
    uint64_t tokens = call->prompt_tokens + call->completion_tokens;
    invocation->llm_steps++;
    invocation->tokens += tokens;
    static const char *const outcomes[] = {"ok", "upstream_error", "failed", "breaker_open"};
    agent_run_record(run, "llm", target, run->llm_start_ns, outcomes[call->outcome], tokens);
    if (call->outcome != LLM_OK) {
        char why[INVOCATION_ERROR_MAX];
        snprintf(why, sizeof(why), "LLM step %u: %s%s", invocation->llm_steps,
                 call->error[0] != '\0' ? call->error : "the endpoint answered ",
                 call->error[0] != '\0' ? "" : (call->status == 400 ? "400" : "an error"));
        agent_run_fail(run, why);
        return;
    }
    struct agent_reply reply;
    char err[AGENT_REPLY_ERROR_MAX];
    if (agent_messages_parse_reply(call->response_body, call->response_length, &reply, err,
                                   sizeof(err)) != 0) {
        agent_run_fail(run, err);
        return;
    }
    json_array_append(invocation->messages, reply.message);
    agent_reply_free(&reply);
    invocation_journal(run->core, invocation, STORE_RECORD_STEP_COMPLETED, agent_run_journaled);
}

static void agent_run_llm(struct agent_run *run)
{
    const struct config_agent *agent = agent_run_agent(run);
    struct invocation *invocation = run->invocation;
    if (invocation->llm_steps >= agent->max_steps) {
        char why[128];
        snprintf(why, sizeof(why), "max_steps (%u) reached without a final answer",
                 agent->max_steps);
        agent_run_fail(run, why);
        return;
    }
    rm_free(run->request);
    size_t length = 0;
    run->request = agent_messages_request(agent, run->tools, run->history, invocation->messages,
                                          &length);
    int endpoint = upstream_endpoint_find(run->core->runtime->upstreams, agent->endpoint,
                                          strlen(agent->endpoint));
    RM_ASSERT(endpoint >= 0); /* config.c checked it */
    if (run->request == NULL) {
        agent_run_fail(run, "out of memory building the LLM request");
        return;
    }
    run->llm = (struct llm_call){
        .endpoint = (uint32_t)endpoint,
        .body = run->request,
        .body_length = length,
        .on_complete = agent_run_llm_done,
        .context = run,
    };
    uint32_t retry_after_ms = 0;
    struct upstream_core *upstream = upstream_core_of(run->core->reactor);
    if (llm_submit(upstream, &run->llm, &retry_after_ms) != 0) {
        run->retry_ns = reactor_now_ns(run->core->reactor) + retry_after_ms * 1000000ull;
        return;
    }
    run->llm_active = true;
    run->llm_start_ns = reactor_now_ns(run->core->reactor);
}

/* ---- tools ---- */

static void agent_run_tool_result(struct agent_slot *slot, const char *outcome,
                                  const char *content, size_t length)
{
    struct agent_run *run = slot->run;
    if (!slot->active) {
        return;
    }
    slot->active = false;
    RM_ASSERT(run->tools_active > 0);
    run->tools_active--;
    json_array_append_new(run->invocation->messages,
                          agent_messages_tool_result(slot->id, content, length));
    agent_run_record(run, "tool", slot->name, slot->start_ns, outcome, 0);
    invocation_journal(run->core, run->invocation, STORE_RECORD_STEP_COMPLETED,
                       agent_run_journaled);
}

static void agent_run_tool_error(struct agent_slot *slot, const char *outcome,
                                 const char *message)
{
    json_t *error = json_pack("{s:s}", "error", message);
    char *text = error != NULL ? json_dumps(error, JSON_COMPACT) : NULL;
    json_decref(error);
    agent_run_tool_result(slot, outcome, text != NULL ? text : "{}",
                          text != NULL ? strlen(text) : 2);
    rm_free(text);
}

static void agent_run_http_done(struct tool_call *call)
{
    struct agent_slot *slot = call->context;
    const char *outcome = upstream_tool_outcome_name(call->outcome);
    if (call->outcome == TOOL_OK || call->outcome == TOOL_FALLBACK) {
        agent_run_tool_result(slot, outcome, call->result, call->result_length);
    } else {
        agent_run_tool_error(slot, outcome, call->error);
    }
}

static void agent_run_c_tool(struct agent_slot *slot)
{
    struct invocation_runtime *runtime = slot->run->core->runtime;
    if (runtime->c_tools[slot->tool].function == NULL) {
        agent_run_tool_error(slot, "error", "this C tool is not registered by the embedding "
                             "program (rm_engine_register_tool)");
        return;
    }
    char *result = NULL;
    size_t length = 0;
    int status = runtime->c_tools[slot->tool].function(
        runtime->c_tools[slot->tool].context, slot->arguments, strlen(slot->arguments),
        &result, &length);
    if (status == 0 && result != NULL) {
        agent_run_tool_result(slot, "ok", result, length);
    } else {
        char message[INVOCATION_ERROR_MAX];
        snprintf(message, sizeof(message), "%.*s", (int)(result != NULL ? length : 0),
                 result != NULL ? result : "");
        agent_run_tool_error(slot, "error", message[0] != '\0' ? message : "the tool failed");
    }
    rm_free(result);
}

void agent_run_child_done(struct invocation_core *core, struct invocation *child)
{
    (void)core;
    struct invocation *parent = child->parent;
    child->parent = NULL;
    if (parent->run == NULL || parent->run->stopping) {
        return;
    }
    struct agent_slot *slot = parent->run->slots[child->parent_slot];
    slot->child = NULL;
    if (child->status == INVOCATION_COMPLETED) {
        const char *text = json_string_value(child->result);
        agent_run_tool_result(slot, "ok", text != NULL ? text : "", text != NULL ? strlen(text)
                                                                                 : 0);
    } else {
        agent_run_tool_error(slot, invocation_status_name(child->status),
                             child->error != NULL ? child->error : "the sub-agent failed");
    }
}

static void agent_run_child_created(struct invocation_core *core, struct invocation *child,
                                    int status)
{
    struct invocation *parent = child->parent;
    if (status != 0 || parent == NULL) {
        child->parent = NULL;
        if (parent != NULL && parent->run != NULL) {
            agent_run_tool_error(parent->run->slots[child->parent_slot], "error",
                                 "the sub-agent's invocation could not be journaled");
        }
        invocation_free(child);
        return;
    }
    invocation_admit(core, child);
    invocation_schedule(core);
}

/* The record of a sub-agent call made before a crash: its result if it finished. */
static void agent_run_child_record(struct store_request *request,
                                   const struct store_result *result)
{
    struct agent_slot *slot = request->context;
    struct agent_run *run = slot->run;
    struct invocation_core *core = run->core;
    char session[INVOCATION_SESSION_MAX + 1];
    struct invocation *child = NULL;
    if (result->status == STORE_OK) {
        child = invocation_journal_load(core->runtime, slot->child_id, result->value,
                                        result->value_length, session);
    }
    if (child != NULL && result->type == STORE_RECORD_INVOCATION_FINISHED) {
        json_t *state = json_loadb((const char *)result->value, result->value_length, 0, NULL);
        const char *text = json_string_value(json_object_get(state, "result"));
        if (text != NULL) {
            agent_run_tool_result(slot, "ok", text, strlen(text));
        } else {
            agent_run_tool_error(slot, "error", "the sub-agent failed before the restart");
        }
        json_decref(state);
        invocation_free(child);
        return;
    }
    if (child == NULL) {
        child = rm_calloc(1, sizeof(*child));
        if (child == NULL) {
            agent_run_tool_error(slot, "error", "out of memory starting the sub-agent");
            return;
        }
        snprintf(child->id, sizeof(child->id), "%s", slot->child_id);
        child->agent = (uint32_t)invocation_agent_find(
            core->runtime, core->runtime->config->tools[slot->tool].agent,
            strlen(core->runtime->config->tools[slot->tool].agent));
        child->input = rm_malloc(strlen(slot->arguments) + 1);
        if (child->input != NULL) {
            memcpy(child->input, slot->arguments, strlen(slot->arguments) + 1);
        }
        child->messages = json_array();
        child->steps = json_array();
        child->created_ms = invocation_unix_ms();
        child->depth = run->invocation->depth + 1;
    }
    child->parent = run->invocation;
    child->parent_slot = slot->index;
    slot->child = child;
    json_t *input = child->input != NULL ? json_loads(child->input, JSON_DECODE_ANY, NULL)
                                         : NULL;
    bool valid = input != NULL;
    json_decref(input);
    if (!valid) {
        /* The model's arguments must be JSON; the sub-agent gets them as its input. */
        child->parent = NULL;
        slot->child = NULL;
        invocation_free(child);
        agent_run_tool_error(slot, "error", "the tool call's arguments are not JSON");
        return;
    }
    invocation_journal(core, child, STORE_RECORD_INVOCATION_CREATED, agent_run_child_created);
}

static void agent_run_sub_agent(struct agent_slot *slot)
{
    struct agent_run *run = slot->run;
    struct invocation_core *core = run->core;
    const struct config_agent *agent = agent_run_agent(run);
    if (run->invocation->depth >= agent->max_depth) {
        agent_run_tool_error(slot, "error", "sub-agent depth limit (max_depth) reached");
        return;
    }
    char seed[INVOCATION_ID_BYTES + AGENT_TOOL_CALL_ID_MAX + 2];
    snprintf(seed, sizeof(seed), "%s/%s", run->invocation->id, slot->id);
    char id[INVOCATION_ID_BYTES + 1];
    invocation_make_id(core->runtime, core->core, seed, id, &core->random);
    struct invocation *live = invocation_find(core, id);
    if (live != NULL) { /* recovered on its own after a restart: wait for it */
        live->parent = run->invocation;
        live->parent_slot = slot->index;
        slot->child = live;
        return;
    }
    memcpy(slot->child_id, id, sizeof(slot->child_id));
    struct store_key key = {INVOCATION_NS, strlen(INVOCATION_NS), slot->child_id,
                            strlen(slot->child_id)};
    if (store_get(core->runtime->store, &slot->lookup, key, agent_run_child_record, slot) !=
        0) {
        agent_run_tool_error(slot, "error", "the store refused to look up the sub-agent");
    }
}

static int agent_run_tool_index(const struct agent_run *run, const char *name)
{
    const struct config *config = run->core->runtime->config;
    const struct config_agent *agent = agent_run_agent(run);
    for (uint32_t i = 0; i < agent->tool_count; i++) {
        if (strcmp(agent->tools[i], name) != 0) {
            continue;
        }
        for (uint32_t t = 0; t < config->tool_count; t++) {
            if (strcmp(config->tools[t].name, name) == 0) {
                return (int)t;
            }
        }
    }
    return -1;
}

static void agent_run_tool_start(struct agent_run *run, struct agent_slot *slot)
{
    const struct config *config = run->core->runtime->config;
    if (slot->tool < 0) {
        agent_run_tool_error(slot, "error", "this agent has no tool of that name");
        return;
    }
    switch (config->tools[slot->tool].kind) {
    case CONFIG_TOOL_C:
        agent_run_c_tool(slot);
        return;
    case CONFIG_TOOL_AGENT:
        agent_run_sub_agent(slot);
        return;
    case CONFIG_TOOL_HTTP:
        break;
    }
    slot->call = (struct tool_call){
        .tool = (uint32_t)upstream_tool_find(run->core->runtime->upstreams, slot->name,
                                             strlen(slot->name)),
        .arguments = slot->arguments,
        .arguments_length = strlen(slot->arguments),
        .on_complete = agent_run_http_done,
        .context = slot,
    };
    if (tool_call_start(upstream_core_of(run->core->reactor), &slot->call) != 0) {
        agent_run_http_done(&slot->call); /* completed at once: breaker open */
    }
}

static bool agent_run_has_result(const json_t *messages, size_t from, const char *id)
{
    for (size_t i = from; i < json_array_size(messages); i++) {
        const char *answered =
            json_string_value(json_object_get(json_array_get(messages, i), "tool_call_id"));
        if (answered != NULL && strcmp(answered, id) == 0) {
            return true;
        }
    }
    return false;
}

/* Starts the calls of the last assistant message that have no result yet; false if none. */
static bool agent_run_tools(struct agent_run *run, size_t at, const json_t *calls)
{
    const json_t *messages = run->invocation->messages;
    uint32_t started = 0;
    uint32_t fresh[AGENT_TOOL_CALLS_MAX];
    for (size_t i = 0; i < json_array_size(calls) && i < AGENT_TOOL_CALLS_MAX; i++) {
        const json_t *call = json_array_get(calls, i);
        const char *id = json_string_value(json_object_get(call, "id"));
        const json_t *function = json_object_get(call, "function");
        const char *name = json_string_value(json_object_get(function, "name"));
        const char *arguments = json_string_value(json_object_get(function, "arguments"));
        if (id == NULL || name == NULL || agent_run_has_result(messages, at + 1, id)) {
            continue;
        }
        if (run->slots[i] == NULL) {
            run->slots[i] = rm_calloc(1, sizeof(*run->slots[i]));
        }
        struct agent_slot *slot = run->slots[i];
        if (slot == NULL) {
            continue; /* out of memory: the call stays without a result, the step retries */
        }
        rm_free(slot->arguments);
        *slot = (struct agent_slot){.run = run, .index = (uint32_t)i, .active = true};
        snprintf(slot->id, sizeof(slot->id), "%s", id);
        snprintf(slot->name, sizeof(slot->name), "%s", name);
        slot->arguments = rm_malloc(strlen(arguments != NULL ? arguments : "{}") + 1);
        if (slot->arguments != NULL) {
            strcpy(slot->arguments, arguments != NULL ? arguments : "{}");
        }
        slot->tool = agent_run_tool_index(run, name);
        slot->start_ns = reactor_now_ns(run->core->reactor);
        run->tools_active++;
        fresh[started++] = (uint32_t)i;
    }
    /* All are counted before any starts: one completing at once must not step early. */
    for (uint32_t i = 0; i < started; i++) {
        agent_run_tool_start(run, run->slots[fresh[i]]);
    }
    return started > 0;
}

static void agent_run_step(struct agent_run *run)
{
    struct invocation *invocation = run->invocation;
    if (run->stopping) {
        return;
    }
    if (reactor_now_ns(run->core->reactor) >= run->deadline_ns) {
        agent_run_fail(run, "the agent's deadline (deadline_ms) passed");
        return;
    }
    size_t count = json_array_size(invocation->messages);
    const json_t *last = count > 0 ? json_array_get(invocation->messages, count - 1) : NULL;
    size_t at = count;
    while (at > 0) {
        const char *previous =
            json_string_value(json_object_get(json_array_get(invocation->messages, at - 1),
                                              "role"));
        if (previous == NULL || strcmp(previous, "tool") != 0) {
            break;
        }
        at--;
    }
    const json_t *assistant = at > 0 ? json_array_get(invocation->messages, at - 1) : NULL;
    const char *role = json_string_value(json_object_get(assistant, "role"));
    const json_t *calls = json_object_get(assistant, "tool_calls");
    if (role != NULL && strcmp(role, "assistant") == 0 && json_array_size(calls) > 0) {
        if (!agent_run_tools(run, at - 1, calls)) {
            agent_run_llm(run); /* every call has its result: the model goes on */
        }
        return;
    }
    if (last != NULL && assistant == last && role != NULL && strcmp(role, "assistant") == 0) {
        agent_run_complete(run, json_string_value(json_object_get(last, "content")));
        return;
    }
    agent_run_llm(run);
}

/* ---- start and deadlines ---- */

static void agent_run_begin(struct agent_run *run)
{
    struct invocation *invocation = run->invocation;
    if (json_array_size(invocation->messages) == 0) {
        json_t *input = json_loads(invocation->input, JSON_DECODE_ANY, NULL);
        json_array_append_new(invocation->messages, agent_messages_user(input));
        json_decref(input);
    }
    if (invocation->session == NULL) {
        agent_run_step(run);
        return;
    }
    char key[CONFIG_NAME_MAX + INVOCATION_SESSION_MAX + 2];
    if (store_get(run->core->runtime->store, &run->session,
                  agent_run_session_key(run, key, sizeof(key)), agent_run_history_loaded,
                  run) != 0) {
        agent_run_fail(run, "the store refused to read the session's history; retry later");
    }
}

void agent_run_start(struct invocation_core *core, struct invocation *invocation)
{
    invocation->holds_slot = true;
    invocation->status = INVOCATION_RUNNING;
    invocation->started_ms = invocation_unix_ms();
    struct agent_run *run = rm_calloc(1, sizeof(*run));
    if (run == NULL) {
        invocation_set_error(invocation, "out of memory starting");
        invocation->status = INVOCATION_FAILED;
        invocation->finishing = true;
        invocation_journal(core, invocation, STORE_RECORD_INVOCATION_FINISHED,
                           agent_run_journal_finished);
        return;
    }
    run->invocation = invocation;
    run->core = core;
    run->history = json_array();
    run->applied = json_array();
    invocation->run = run;
    run->next = core->runs;
    if (core->runs != NULL) {
        core->runs->previous = run;
    }
    core->runs = run;
    const struct config_agent *agent = agent_run_agent(run);
    run->deadline_ns = reactor_now_ns(core->reactor) + agent->deadline_ms * 1000000ull;
    run->tools = agent_messages_tools(core->runtime->config, agent);
    agent_run_begin(run);
}

void agent_run_check_deadlines(struct invocation_core *core, uint64_t now_ns)
{
    struct agent_run *run = core->runs;
    while (run != NULL) {
        struct agent_run *next = run->next;
        if (now_ns >= run->deadline_ns) {
            agent_run_stop(core, run->invocation, INVOCATION_FAILED,
                           "the agent's deadline (deadline_ms) passed");
        } else if (run->retry_ns != 0 && now_ns >= run->retry_ns) {
            run->retry_ns = 0;
            agent_run_llm(run);
        }
        run = next;
    }
}
