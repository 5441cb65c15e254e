/* The LLM queue of one core: per endpoint a FIFO of calls waiting for a slot under the
 * endpoint's exact in-flight cap and a key with budget; one list of calls waiting out a
 * retry backoff. Everything moves from the core's tick (llm_pump_all), which runs after the
 * loop's completions, so a call submitted from a request handler goes out in the same loop
 * iteration and callbacks never run inside llm_submit. */

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include <ck_pr.h>

#include "core/alloc.h"
#include "core/breaker.h"
#include "core/bucket.h"
#include "core/llm.h"
#include "core/metrics.h"
#include "core/rm_assert.h"
#include "core/upstream.h"

#define LLM_COMPLETION_TOKENS_DEFAULT 256
#define LLM_PAUSE_MS_DEFAULT 1000
#define LLM_RETRY_AFTER_MS_MAX 60000
#define LLM_PATH "/chat/completions"

enum llm_state { LLM_IDLE, LLM_WAITING, LLM_BACKOFF, LLM_IN_FLIGHT };

static void llm_lane_push(struct upstream_lane *lane, struct llm_call *call, bool at_head)
{
    call->previous = at_head ? NULL : lane->tail;
    call->next = at_head ? lane->head : NULL;
    if (at_head) {
        if (lane->head != NULL) {
            lane->head->previous = call;
        }
        lane->head = call;
        lane->tail = lane->tail == NULL ? call : lane->tail;
    } else {
        if (lane->tail != NULL) {
            lane->tail->next = call;
        }
        lane->tail = call;
        lane->head = lane->head == NULL ? call : lane->head;
    }
    lane->count++;
}

static void llm_lane_remove(struct upstream_lane *lane, struct llm_call *call)
{
    RM_ASSERT(lane->count > 0);
    if (call->previous != NULL) {
        call->previous->next = call->next;
    } else {
        lane->head = call->next;
    }
    if (call->next != NULL) {
        call->next->previous = call->previous;
    } else {
        lane->tail = call->previous;
    }
    call->next = call->previous = NULL;
    lane->count--;
}

static struct upstream_endpoint *llm_endpoint(const struct llm_call *call)
{
    return &call->core->set->endpoints[call->endpoint_used];
}

/* Queues the call on its current endpoint; waiting calls count in the endpoint's depth. */
static void llm_enqueue(struct llm_call *call, enum llm_state state, bool at_head)
{
    struct upstream_core *core = call->core;
    struct upstream_endpoint *endpoint = llm_endpoint(call);
    struct upstream_lane *lane =
        state == LLM_BACKOFF ? &core->backoff : &core->waiting[call->endpoint_used];
    llm_lane_push(lane, call, at_head);
    call->state = (uint8_t)state;
    ck_pr_inc_32(&endpoint->shared.queued);
    metrics_add(core->set->metrics, core->core, endpoint->queue_depth, 1);
}

static void llm_dequeue(struct llm_call *call)
{
    struct upstream_core *core = call->core;
    struct upstream_endpoint *endpoint = llm_endpoint(call);
    RM_ASSERT(call->state == LLM_WAITING || call->state == LLM_BACKOFF);
    llm_lane_remove(call->state == LLM_BACKOFF ? &core->backoff
                                               : &core->waiting[call->endpoint_used],
                    call);
    call->state = LLM_IDLE;
    ck_pr_dec_32(&endpoint->shared.queued);
    metrics_add(core->set->metrics, core->core, endpoint->queue_depth, -1);
}

static void llm_finish(struct llm_call *call, enum llm_outcome outcome)
{
    struct upstream_core *core = call->core;
    RM_ASSERT(core->active > 0);
    core->active--;
    call->outcome = outcome;
    call->state = LLM_IDLE;
    ck_pr_inc_64(&llm_endpoint(call)->shared.completed);
    if (call->owned_body != NULL) {
        rm_free(call->owned_body);
        call->owned_body = NULL;
    }
    call->on_complete(call);
}

uint64_t llm_estimate_tokens(size_t body_length, uint64_t max_tokens)
{
    return body_length / 4 + (max_tokens != 0 ? max_tokens : LLM_COMPLETION_TOKENS_DEFAULT);
}

static uint32_t llm_retry_after_ms(const struct upstream_endpoint_shared *shared)
{
    uint64_t queued = ck_pr_load_32(&shared->queued);
    uint64_t rate = ck_pr_load_64(&shared->drain_per_second);
    uint64_t ms = rate == 0 ? LLM_PAUSE_MS_DEFAULT : (queued * 1000 + rate - 1) / rate;
    return (uint32_t)(ms < 1000 ? 1000 : ms > LLM_RETRY_AFTER_MS_MAX ? LLM_RETRY_AFTER_MS_MAX
                                                                       : ms);
}

int llm_submit(struct upstream_core *core, struct llm_call *call, uint32_t *retry_after_ms)
{
    RM_ASSERT(core != NULL && call != NULL && call->on_complete != NULL);
    RM_ASSERT(call->endpoint < core->set->endpoint_count);
    struct upstream_endpoint *endpoint = &core->set->endpoints[call->endpoint];
    /* A plain load: cores racing past the limit together overshoot it by at most one call
     * each, which a queue bound tolerates. */
    uint32_t queued = ck_pr_load_32(&endpoint->shared.queued);
    if (queued >= endpoint->config->max_queue) {
        metrics_add(core->set->metrics, core->core, endpoint->rejected, 1);
        *retry_after_ms = llm_retry_after_ms(&endpoint->shared);
        snprintf(call->error, sizeof(call->error), "endpoint %s: %u calls are waiting, the "
                 "queue's limit (max_queue); retry later", endpoint->config->name, queued);
        return -EAGAIN;
    }
    call->core = core;
    call->outcome = LLM_FAILED;
    call->status = 0;
    call->response_body = NULL;
    call->response_length = 0;
    call->prompt_tokens = call->completion_tokens = 0;
    call->attempts = call->endpoint_attempts = call->chain = 0;
    call->endpoint_used = call->endpoint;
    call->queue_wait_ns = 0;
    call->events = 0;
    call->usage_seen = false;
    call->error[0] = '\0';
    call->owned_body = NULL;
    if (call->estimated_tokens == 0) {
        call->estimated_tokens = llm_estimate_tokens(call->body_length, 0);
    }
    call->enqueued_ns = reactor_now_ns(core->reactor);
    core->active++;
    llm_enqueue(call, LLM_WAITING, false);
    reactor_keep_awake(core->reactor);
    return 0;
}

/* Takes one of the endpoint's in-flight slots if one is free (exact across cores). */
static bool llm_slot_take(struct upstream_endpoint *endpoint)
{
    uint32_t max = endpoint->config->max_in_flight;
    uint32_t current = ck_pr_load_32(&endpoint->shared.in_flight);
    while (current < max) {
        if (ck_pr_cas_32_value(&endpoint->shared.in_flight, current, current + 1, &current)) {
            return true;
        }
    }
    return false;
}

static void llm_slot_give(struct upstream_endpoint *endpoint)
{
    RM_ASSERT(ck_pr_load_32(&endpoint->shared.in_flight) > 0);
    ck_pr_dec_32(&endpoint->shared.in_flight);
}

/* How many calls of this size the key could pay for now. */
static double llm_key_budget(struct upstream_core *core, const struct upstream_key *key,
                             uint64_t tokens, uint64_t now_ns)
{
    struct bucket_set *buckets = core->set->buckets;
    double requests = (double)bucket_available(buckets, core->core, key->rpm_bucket, now_ns);
    double budget = (double)bucket_available(buckets, core->core, key->tpm_bucket, now_ns) /
                    (double)(tokens == 0 ? 1 : tokens);
    return requests < budget ? requests : budget;
}

static bool llm_key_take(struct upstream_core *core, const struct upstream_key *key,
                         uint64_t tokens, uint64_t now_ns)
{
    struct bucket_set *buckets = core->set->buckets;
    if (!bucket_take(buckets, core->core, key->rpm_bucket, 1, now_ns)) {
        return false;
    }
    if (!bucket_take(buckets, core->core, key->tpm_bucket, tokens, now_ns)) {
        bucket_adjust(buckets, core->core, key->rpm_bucket, -1);
        return false;
    }
    return true;
}

/* The key with the most budget that can pay for the call now; -1 when none can. Keys of
 * equal budget (unlimited ones, say) take turns, from a cursor that moves on every choice. */
static int llm_key_choose(struct upstream_core *core, uint32_t index, uint64_t tokens,
                          uint64_t now_ns)
{
    struct upstream_endpoint *endpoint = &core->set->endpoints[index];
    uint32_t count = endpoint->config->key_count;
    uint32_t start = core->key_cursor[index]++ % count;
    double budget[CONFIG_KEYS_MAX];
    for (uint32_t i = 0; i < count; i++) {
        budget[i] = llm_key_budget(core, &endpoint->keys[i], tokens, now_ns);
    }
    for (uint32_t tried = 0; tried < count; tried++) {
        int best = -1;
        for (uint32_t step = 0; step < count; step++) {
            uint32_t i = (start + step) % count;
            if (budget[i] > 0 && (best < 0 || budget[i] > budget[best])) {
                best = (int)i;
            }
        }
        if (best < 0) {
            return -1;
        }
        if (llm_key_take(core, &endpoint->keys[best], tokens, now_ns)) {
            return best;
        }
        budget[best] = 0;
    }
    return -1;
}

static void llm_key_refund(struct upstream_core *core, const struct upstream_key *key,
                           uint64_t tokens)
{
    bucket_adjust(core->set->buckets, core->core, key->rpm_bucket, -1);
    bucket_adjust(core->set->buckets, core->core, key->tpm_bucket, -(int64_t)tokens);
}

static void llm_complete_http(struct http_client_request *request,
                              const struct http_client_response *response);
static void llm_stream_broken(struct llm_call *call);
static void llm_event_http(struct http_client_request *request, const struct sse_event *event);

static bool llm_next_endpoint(struct llm_call *call);

/* Sends the head call of its lane with the given key and permit. */
static void llm_send(struct llm_call *call, uint32_t key, int permit, uint64_t now_ns)
{
    struct upstream_core *core = call->core;
    struct upstream_endpoint *endpoint = llm_endpoint(call);
    llm_dequeue(call);
    call->key = key;
    call->key_used = key;
    call->permit = permit;
    call->tokens_taken = call->estimated_tokens;
    call->queue_wait_ns += now_ns - call->enqueued_ns;
    metrics_observe(core->set->metrics, core->core, endpoint->queue_wait,
                    now_ns - call->enqueued_ns);
    if (call->attempts > 0) {
        metrics_add(core->set->metrics, core->core, endpoint->retries, 1);
    }
    call->attempts++;
    call->endpoint_attempts++;
    uint32_t header_count = 0;
    call->headers[header_count++] = (struct http_client_header){"Content-Type",
                                                                "application/json"};
    if (endpoint->keys[key].authorization[0] != '\0') {
        call->headers[header_count++] =
            (struct http_client_header){"Authorization", endpoint->keys[key].authorization};
    }
    const char *body = call->owned_body != NULL ? call->owned_body : call->body;
    size_t length = call->owned_body != NULL ? strlen(call->owned_body) : call->body_length;
    call->request = (struct http_client_request){
        .upstream = core->endpoint_upstream[call->endpoint_used],
        .method = "POST",
        .path = LLM_PATH,
        .headers = call->headers,
        .header_count = header_count,
        .body = body,
        .body_length = length,
        .on_event = call->on_event != NULL ? llm_event_http : NULL,
        .on_complete = llm_complete_http,
        .context = call,
    };
    call->sent_ns = now_ns;
    call->state = LLM_IN_FLIGHT;
    metrics_add(core->set->metrics, core->core, endpoint->in_flight, 1);
    if (http_client_send(core->client, &call->request) != 0) {
        struct http_client_response refused = {
            .outcome = HTTP_CLIENT_REJECTED,
            .error = call->request.error,
        };
        llm_complete_http(&call->request, &refused);
    }
}

/* Sends what the lane's head allows, in order; stops at the first call that must wait. */
static void llm_pump_lane(struct upstream_core *core, uint32_t index, uint64_t now_ns)
{
    struct upstream_lane *lane = &core->waiting[index];
    struct upstream_endpoint *endpoint = &core->set->endpoints[index];
    while (lane->head != NULL) {
        struct llm_call *call = lane->head;
        if (!llm_slot_take(endpoint)) {
            return;
        }
        int key = llm_key_choose(core, index, call->estimated_tokens, now_ns);
        if (key < 0) {
            llm_slot_give(endpoint);
            return;
        }
        enum breaker_permit permit =
            breaker_acquire(core->set->breakers, core->core, endpoint->breaker, now_ns);
        if (permit == BREAKER_DENIED) {
            llm_slot_give(endpoint);
            llm_key_refund(core, &endpoint->keys[key], call->estimated_tokens);
            metrics_add(core->set->metrics, core->core, endpoint->breaker_open, 1);
            llm_dequeue(call);
            snprintf(call->error, sizeof(call->error), "endpoint %s: circuit breaker open",
                     endpoint->config->name);
            if (!llm_next_endpoint(call)) {
                llm_finish(call, LLM_BREAKER_OPEN);
            }
            continue;
        }
        llm_send(call, (uint32_t)key, permit, now_ns);
    }
}

static void llm_pump_backoff(struct upstream_core *core, uint64_t now_ns)
{
    struct llm_call *call = core->backoff.head;
    while (call != NULL) {
        struct llm_call *next = call->next;
        if (call->due_ns <= now_ns) {
            llm_dequeue(call);
            llm_enqueue(call, LLM_WAITING, true);
        }
        call = next;
    }
}

void llm_pump_all(struct upstream_core *core, uint64_t now_ns)
{
    llm_pump_backoff(core, now_ns);
    for (uint32_t i = 0; i < core->set->endpoint_count; i++) {
        if (core->waiting[i].head != NULL) {
            llm_pump_lane(core, i, now_ns);
        }
    }
}

uint32_t llm_waiting(const struct upstream_core *core)
{
    uint32_t total = core->backoff.count;
    for (uint32_t i = 0; i < core->set->endpoint_count; i++) {
        total += core->waiting[i].count;
    }
    return total;
}

/* A fallback endpoint may serve other models: the body's model becomes its first one. */
static void llm_rewrite_model(struct llm_call *call, const struct config_endpoint *config)
{
    if (config->model_count == 0) {
        return;
    }
    json_t *root = json_loadb(call->body, call->body_length, 0, NULL);
    const char *model = json_string_value(json_object_get(root, "model"));
    bool served = false;
    for (uint32_t i = 0; model != NULL && i < config->model_count; i++) {
        served |= strcmp(config->models[i], model) == 0;
    }
    if (json_is_object(root) && !served) {
        json_object_set_new(root, "model", json_string(config->models[0]));
        char *text = json_dumps(root, JSON_COMPACT);
        if (text != NULL) {
            rm_free(call->owned_body);
            call->owned_body = text;
        }
    }
    json_decref(root);
}

/* Moves the call to the next fallback of its original endpoint; false when none is left. */
static bool llm_next_endpoint(struct llm_call *call)
{
    struct upstream_core *core = call->core;
    const struct upstream_endpoint *origin = &core->set->endpoints[call->endpoint];
    if (call->chain >= origin->config->fallback_count) {
        return false;
    }
    metrics_add(core->set->metrics, core->core, llm_endpoint(call)->fallbacks_taken, 1);
    call->endpoint_used = origin->fallbacks[call->chain++];
    call->endpoint_attempts = 0;
    llm_rewrite_model(call, llm_endpoint(call)->config);
    call->enqueued_ns = reactor_now_ns(core->reactor);
    llm_enqueue(call, LLM_WAITING, false);
    return true;
}

static enum llm_attempt_outcome llm_classify(const struct http_client_response *response)
{
    switch (response->outcome) {
    case HTTP_CLIENT_OK:
    case HTTP_CLIENT_HTTP_ERROR:
        if (response->status >= 200 && response->status < 300) {
            return LLM_ATTEMPT_OK;
        }
        if (response->status == 429) {
            return LLM_ATTEMPT_RATE_LIMITED;
        }
        return response->status >= 500 ? LLM_ATTEMPT_SERVER_ERROR : LLM_ATTEMPT_CLIENT_ERROR;
    case HTTP_CLIENT_TIMEOUT:
        return LLM_ATTEMPT_TIMEOUT;
    default:
        return LLM_ATTEMPT_CONNECTION_ERROR;
    }
}

static int64_t llm_parse_number(const char **cursor, const char *end, int64_t *fraction_ms)
{
    int64_t whole = 0;
    const char *start = *cursor;
    while (*cursor < end && **cursor >= '0' && **cursor <= '9' && whole < 1000000000) {
        whole = whole * 10 + (**cursor - '0');
        (*cursor)++;
    }
    *fraction_ms = 0;
    if (*cursor < end && **cursor == '.') {
        (*cursor)++;
        int64_t scale = 100;
        for (; *cursor < end && **cursor >= '0' && **cursor <= '9'; (*cursor)++) {
            *fraction_ms += (**cursor - '0') * scale;
            scale /= 10;
        }
    }
    return *cursor == start ? -1 : whole;
}

int64_t llm_parse_reset(const char *value, size_t length)
{
    const char *cursor = value, *end = value + length;
    int64_t total = 0;
    bool any = false;
    while (cursor < end) {
        int64_t fraction = 0;
        int64_t number = llm_parse_number(&cursor, end, &fraction);
        if (number < 0) {
            return -1;
        }
        int64_t unit = 1000; /* a bare number is Retry-After's seconds */
        if (cursor + 1 < end && cursor[0] == 'm' && cursor[1] == 's') {
            unit = 1, cursor += 2;
        } else if (cursor < end && (*cursor == 's' || *cursor == 'm' || *cursor == 'h')) {
            unit = *cursor == 's' ? 1000 : *cursor == 'm' ? 60000 : 3600000;
            cursor++;
        } else if (cursor != end) {
            return -1;
        }
        total += number * unit + fraction * unit / 1000;
        any = true;
    }
    return any ? total : -1;
}

static int64_t llm_header_ms(const struct http_response_parsed *head, const char *name)
{
    const struct http_slice *value = http_response_parse_header(head, name);
    return value == NULL ? -1 : llm_parse_reset(value->base, value->length);
}

/* How long the provider wants the key left alone after a 429. */
static uint64_t llm_pause_ms(const struct http_client_response *response)
{
    int64_t ms = -1;
    if (response->head != NULL) {
        ms = llm_header_ms(response->head, "retry-after");
        if (ms < 0) {
            int64_t requests = llm_header_ms(response->head, "x-ratelimit-reset-requests");
            int64_t tokens = llm_header_ms(response->head, "x-ratelimit-reset-tokens");
            ms = requests > tokens ? requests : tokens;
        }
    }
    return ms < 0 ? LLM_PAUSE_MS_DEFAULT : (uint64_t)ms;
}

/* Takes prompt_tokens / completion_tokens from a usage object; true when either was there. */
static bool llm_usage_take(struct llm_call *call, json_t *object)
{
    json_t *prompt = json_object_get(object, "prompt_tokens");
    json_t *completion = json_object_get(object, "completion_tokens");
    bool found = false;
    if (json_is_integer(prompt) && json_integer_value(prompt) >= 0) {
        call->prompt_tokens = (uint64_t)json_integer_value(prompt);
        found = true;
    }
    if (json_is_integer(completion) && json_integer_value(completion) >= 0) {
        call->completion_tokens = (uint64_t)json_integer_value(completion);
        found = true;
    }
    return found;
}

/* usage.prompt_tokens / completion_tokens of an OpenAI answer, found without parsing the
 * whole body. */
static void llm_read_usage(struct llm_call *call, const char *body, size_t length)
{
    const char *usage = body == NULL ? NULL : memmem(body, length, "\"usage\"", 7);
    const char *open = usage == NULL ? NULL : memchr(usage, '{', length - (size_t)(usage - body));
    if (open == NULL) {
        return;
    }
    json_t *object = json_loadb(open, length - (size_t)(open - body), JSON_DISABLE_EOF_CHECK,
                                NULL);
    llm_usage_take(call, object);
    json_decref(object);
}

/* The usage of a streamed chunk: "usage": {...} in the last one, "usage": null (or nothing)
 * in the others, so only an object right after the key is parsed. */
static void llm_read_event_usage(struct llm_call *call, const char *data, size_t length)
{
    const char *usage = memmem(data, length, "\"usage\"", 7);
    if (usage == NULL) {
        return;
    }
    const char *end = data + length;
    const char *cursor = usage + 7;
    while (cursor < end && (*cursor == ':' || *cursor == ' ' || *cursor == '\t' ||
                            *cursor == '\r' || *cursor == '\n')) {
        cursor++;
    }
    if (cursor == end || *cursor != '{') {
        return;
    }
    RM_ASSERT(cursor > data && cursor < end);
    json_t *object = json_loadb(cursor, (size_t)(end - cursor), JSON_DISABLE_EOF_CHECK, NULL);
    call->usage_seen |= llm_usage_take(call, object);
    json_decref(object);
}

/* The token bucket's correction once an attempt is over: by the usage of an answer, or the
 * whole charge back without one; a streamed answer (tokens were spent) keeps its estimate
 * unless a chunk carried the usage. */
static int64_t llm_correction(struct llm_call *call, enum llm_attempt_outcome attempt,
                              const struct http_client_response *response)
{
    struct upstream_core *core = call->core;
    struct upstream_endpoint *endpoint = llm_endpoint(call);
    bool streamed = call->events > 0;
    RM_ASSERT(!call->usage_seen || streamed);
    if (!streamed && attempt == LLM_ATTEMPT_OK) {
        llm_read_usage(call, response->body, response->body_length);
    }
    if (streamed ? !call->usage_seen : attempt != LLM_ATTEMPT_OK) {
        return streamed ? 0 : -(int64_t)call->tokens_taken;
    }
    metrics_add(core->set->metrics, core->core, endpoint->tokens_prompt,
                (int64_t)call->prompt_tokens);
    metrics_add(core->set->metrics, core->core, endpoint->tokens_completion,
                (int64_t)call->completion_tokens);
    return (int64_t)(call->prompt_tokens + call->completion_tokens) -
           (int64_t)call->tokens_taken;
}

static void llm_account(struct llm_call *call, enum llm_attempt_outcome attempt,
                        const struct http_client_response *response, uint64_t now_ns)
{
    struct upstream_core *core = call->core;
    struct upstream_endpoint *endpoint = llm_endpoint(call);
    struct upstream_key *key = &endpoint->keys[call->key];
    struct metrics_registry *metrics = core->set->metrics;
    llm_slot_give(endpoint);
    metrics_add(metrics, core->core, endpoint->in_flight, -1);
    metrics_add(metrics, core->core, key->requests[attempt], 1);
    bool failed = attempt == LLM_ATTEMPT_SERVER_ERROR || attempt == LLM_ATTEMPT_TIMEOUT ||
                  attempt == LLM_ATTEMPT_CONNECTION_ERROR;
    breaker_release(core->set->breakers, core->core, endpoint->breaker, call->permit, failed,
                    now_ns - call->sent_ns, now_ns);
    int64_t correction = llm_correction(call, attempt, response);
    if (attempt != LLM_ATTEMPT_TIMEOUT) {
        bucket_adjust(core->set->buckets, core->core, key->tpm_bucket, correction);
    }
    if (attempt == LLM_ATTEMPT_RATE_LIMITED) {
        uint64_t until = now_ns + llm_pause_ms(response) * 1000000ull;
        bucket_pause(core->set->buckets, core->core, key->rpm_bucket, until);
        bucket_pause(core->set->buckets, core->core, key->tpm_bucket, until);
    }
}

static void llm_retry_or_fail(struct llm_call *call, enum llm_attempt_outcome attempt,
                              uint64_t now_ns)
{
    struct upstream_core *core = call->core;
    const struct config_endpoint *config = llm_endpoint(call)->config;
    if (call->endpoint_attempts < config->retry.max_attempts) {
        call->enqueued_ns = now_ns;
        if (attempt == LLM_ATTEMPT_RATE_LIMITED) {
            llm_enqueue(call, LLM_WAITING, true); /* the key is paused: another goes next */
        } else {
            call->due_ns = now_ns + upstream_backoff_ns(core, &config->retry, call->endpoint_attempts);
            llm_enqueue(call, LLM_BACKOFF, false);
        }
        return;
    }
    if (!llm_next_endpoint(call)) {
        char last[LLM_ERROR_MAX];
        snprintf(last, sizeof(last), "%s", call->error);
        snprintf(call->error, sizeof(call->error), "%u attempts failed and no fallback "
                 "endpoint is left; last: %.240s", call->attempts, last);
        llm_finish(call, LLM_FAILED);
    }
}

static void llm_complete_http(struct http_client_request *request,
                              const struct http_client_response *response)
{
    struct llm_call *call = request->context;
    RM_ASSERT(call->state == LLM_IN_FLIGHT);
    uint64_t now = reactor_now_ns(call->core->reactor);
    enum llm_attempt_outcome attempt = llm_classify(response);
    llm_account(call, attempt, response, now);
    call->state = LLM_IDLE;
    call->status = response->status;
    call->response_body = response->body;
    call->response_length = response->body_length;
    if (attempt == LLM_ATTEMPT_OK || attempt == LLM_ATTEMPT_CLIENT_ERROR) {
        call->error[0] = '\0';
        llm_finish(call, attempt == LLM_ATTEMPT_OK ? LLM_OK : LLM_UPSTREAM_ERROR);
        return;
    }
    if (response->outcome == HTTP_CLIENT_OK || response->outcome == HTTP_CLIENT_HTTP_ERROR) {
        snprintf(call->error, sizeof(call->error), "endpoint %s answered %d",
                 llm_endpoint(call)->config->name, response->status);
    } else {
        snprintf(call->error, sizeof(call->error), "%.300s", response->error);
    }
    call->response_body = NULL;
    call->response_length = 0;
    if (call->events > 0) {
        llm_stream_broken(call);
        return;
    }
    struct reactor *reactor = call->core->reactor; /* the call may be gone after the next line */
    llm_retry_or_fail(call, attempt, now);
    reactor_keep_awake(reactor);
}

/* A streamed answer failed after part of it was passed on: it cannot be retried. */
static void llm_stream_broken(struct llm_call *call)
{
    RM_ASSERT(call->events > 0);
    RM_ASSERT(call->state == LLM_IDLE);
    char last[LLM_ERROR_MAX];
    snprintf(last, sizeof(last), "%s", call->error);
    snprintf(call->error, sizeof(call->error), "the answer broke off after %u streamed events "
             "and cannot be retried; %.240s", call->events, last);
    llm_finish(call, LLM_FAILED);
}

/* Passes one event of a streamed answer on; from the first one the call is committed to this
 * attempt. */
static void llm_event_http(struct http_client_request *request, const struct sse_event *event)
{
    struct llm_call *call = request->context;
    RM_ASSERT(call->state == LLM_IN_FLIGHT);
    RM_ASSERT(call->on_event != NULL);
    call->events++;
    llm_read_event_usage(call, event->data, event->data_length);
    call->on_event(call, event->data, event->data_length); /* may cancel the call */
}

void llm_cancel(struct llm_call *call)
{
    struct upstream_core *core = call->core;
    if (call->state == LLM_WAITING || call->state == LLM_BACKOFF) {
        llm_dequeue(call);
    } else if (call->state == LLM_IN_FLIGHT) {
        http_client_cancel(&call->request);
        struct upstream_endpoint *endpoint = llm_endpoint(call);
        llm_slot_give(endpoint);
        metrics_add(core->set->metrics, core->core, endpoint->in_flight, -1);
        /* A probe permit must come back or the breaker would stay half-open. */
        uint64_t now = reactor_now_ns(core->reactor);
        breaker_release(core->set->breakers, core->core, endpoint->breaker, call->permit, false,
                        now - call->sent_ns, now);
    } else {
        return;
    }
    call->state = LLM_IDLE;
    RM_ASSERT(core->active > 0);
    core->active--;
    rm_free(call->owned_body);
    call->owned_body = NULL;
}
