/* What the mock received, for tests and benchmark reports. Each core writes only its own
 * counter array (relaxed atomic stores, no locks, no shared cache lines); GET /mock/stats
 * sums the cores' arrays. POST /mock/reset cannot zero other cores' arrays without racing
 * their writers, so it records the current sums as a baseline that reads subtract. A mutex
 * orders resets and reads; it is taken only by these two rare requests. */

#include <string.h>

#include "bench/mock.h"
#include "core/rm_assert.h"

void mock_stats_add(struct mock_core *core, uint32_t counter, uint64_t amount)
{
    RM_ASSERT(counter < MOCK_COUNT_TOTAL);
    RM_ASSERT(core->counters != NULL);
    uint64_t *slot = &core->counters[counter];
    __atomic_store_n(slot, __atomic_load_n(slot, __ATOMIC_RELAXED) + amount, __ATOMIC_RELAXED);
}

/* Raw sums over cores, without the baseline. */
static void mock_stats_sum(struct mock *mock, uint64_t *sums)
{
    RM_ASSERT(mock->threads >= 1);
    memset(sums, 0, sizeof(uint64_t) * MOCK_COUNT_TOTAL);
    for (uint32_t core = 0; core < mock->threads; core++) {
        const uint64_t *counters = mock->cores[core].counters;
        RM_ASSERT(counters != NULL);
        for (uint32_t i = 0; i < MOCK_COUNT_TOTAL; i++) {
            sums[i] += __atomic_load_n(&counters[i], __ATOMIC_RELAXED);
        }
    }
}

static void mock_stats_names(struct mock_json *json, struct mock_names *names,
                             const uint64_t *first, const uint64_t *second, const char *label)
{
    bool any = false;
    mock_json_text(json, "{");
    for (uint32_t i = 0; i <= MOCK_NAMES_MAX; i++) {
        if (first[i] == 0 && (second == NULL || second[i] == 0)) {
            continue;
        }
        const struct mock_name_entry *entry = &names->entries[i < MOCK_NAMES_MAX ? i : 0];
        mock_json_text(json, any ? "," : "");
        any = true;
        if (i == MOCK_NAMES_MAX) {
            mock_json_text(json, "\"(other)\"");
        } else if (__atomic_load_n(&entry->ready, __ATOMIC_ACQUIRE) == 0) {
            mock_json_text(json, "\"(pending)\"");
        } else if (entry->length == 0) {
            mock_json_text(json, "\"(none)\""); /* no Authorization header */
        } else {
            mock_json_string(json, entry->text, entry->length);
        }
        if (second == NULL) {
            mock_json_format(json, ":%llu", (unsigned long long)first[i]);
        } else {
            mock_json_format(json, ":{\"requests\":%llu,\"%s\":%llu}",
                             (unsigned long long)first[i], label,
                             (unsigned long long)second[i]);
        }
    }
    mock_json_text(json, "}");
}

#define MOCK_U(index) ((unsigned long long)sums[index])

static void mock_stats_render(struct mock *mock, struct mock_json *json, const uint64_t *sums)
{
    mock_json_format(json, "{\"requests\":{\"chat_completions\":%llu,\"tools\":%llu,"
                     "\"stats\":%llu,\"reset\":%llu,\"other\":%llu},",
                     MOCK_U(MOCK_COUNT_CHAT), MOCK_U(MOCK_COUNT_TOOLS), MOCK_U(MOCK_COUNT_STATS),
                     MOCK_U(MOCK_COUNT_RESET), MOCK_U(MOCK_COUNT_OTHER));
    mock_json_format(json, "\"rejected_429\":{\"concurrency\":%llu,\"requests_per_minute\":%llu,"
                     "\"tokens_per_minute\":%llu,\"total\":%llu},",
                     MOCK_U(MOCK_COUNT_429_CONCURRENCY), MOCK_U(MOCK_COUNT_429_REQUESTS),
                     MOCK_U(MOCK_COUNT_429_TOKENS),
                     MOCK_U(MOCK_COUNT_429_CONCURRENCY) + MOCK_U(MOCK_COUNT_429_REQUESTS) +
                         MOCK_U(MOCK_COUNT_429_TOKENS));
    mock_json_format(json, "\"errors_injected\":{\"llm\":%llu,\"tools\":%llu},"
                     "\"hangs\":{\"llm\":%llu,\"tools\":%llu},\"bad_requests\":%llu,"
                     "\"overloaded\":%llu,",
                     MOCK_U(MOCK_COUNT_ERRORS_LLM), MOCK_U(MOCK_COUNT_ERRORS_TOOLS),
                     MOCK_U(MOCK_COUNT_HANGS_LLM), MOCK_U(MOCK_COUNT_HANGS_TOOLS),
                     MOCK_U(MOCK_COUNT_BAD_REQUESTS), MOCK_U(MOCK_COUNT_OVERLOADED));
    mock_json_format(json, "\"tokens\":{\"prompt\":%llu,\"completion\":%llu,\"total\":%llu},"
                     "\"answers\":{\"tool_calls\":%llu,\"final\":%llu,\"streamed\":%llu},"
                     "\"in_flight\":%u,\"in_flight_peak\":%u,",
                     MOCK_U(MOCK_COUNT_PROMPT_TOKENS), MOCK_U(MOCK_COUNT_COMPLETION_TOKENS),
                     MOCK_U(MOCK_COUNT_PROMPT_TOKENS) + MOCK_U(MOCK_COUNT_COMPLETION_TOKENS),
                     MOCK_U(MOCK_COUNT_TOOL_CALLS_ISSUED), MOCK_U(MOCK_COUNT_FINAL_ANSWERS),
                     MOCK_U(MOCK_COUNT_STREAMS),
                     __atomic_load_n(&mock->in_flight, __ATOMIC_RELAXED),
                     __atomic_load_n(&mock->in_flight_peak, __ATOMIC_RELAXED));
    mock_json_text(json, "\"api_keys\":");
    mock_stats_names(json, &mock->keys, &sums[MOCK_COUNT_KEY_REQUESTS],
                     &sums[MOCK_COUNT_KEY_TOKENS], "tokens");
    mock_json_text(json, ",\"tool_calls\":");
    mock_stats_names(json, &mock->tools, &sums[MOCK_COUNT_TOOL_CALLS], NULL, NULL);
    mock_json_text(json, "}");
}

#undef MOCK_U

void mock_stats_serve(struct mock *mock, struct mock_core *core, struct http_exchange *exchange)
{
    uint64_t sums[MOCK_COUNT_TOTAL];
    RM_ASSERT(core->reactor == reactor_current());
    mock_stats_add(core, MOCK_COUNT_STATS, 1);
    pthread_mutex_lock(&mock->stats_lock);
    mock_stats_sum(mock, sums);
    for (uint32_t i = 0; i < MOCK_COUNT_TOTAL; i++) {
        sums[i] -= mock->baseline[i];
    }
    pthread_mutex_unlock(&mock->stats_lock);
    struct mock_json *json = &core->scratch;
    mock_json_reset(json);
    mock_stats_render(mock, json, sums);
    RM_ASSERT(!json->overflow);
    struct mock_response response = {.status = 200, .content_type = "application/json",
                                     .body = json->data, .body_length = json->length};
    mock_reply(core, exchange, &response, 0);
}

/* Zeroes the counters (through the baseline) and every key's rate windows. */
void mock_stats_reset(struct mock *mock, struct mock_core *core, struct http_exchange *exchange)
{
    RM_ASSERT(core->reactor == reactor_current());
    RM_ASSERT(mock == core->mock);
    pthread_mutex_lock(&mock->stats_lock);
    mock_stats_sum(mock, mock->baseline);
    mock_limits_reset(mock);
    pthread_mutex_unlock(&mock->stats_lock);
    mock_stats_add(core, MOCK_COUNT_RESET, 1);
    static const char body[] = "{\"reset\":true}";
    struct mock_response response = {.status = 200, .content_type = "application/json",
                                     .body = (char *)body, .body_length = sizeof(body) - 1};
    mock_reply(core, exchange, &response, 0);
}
