/* The limits a provider enforces: an exact in-flight cap across every core (one atomic
 * counter, as providers count exactly), and per API key a request budget and a token budget
 * per fixed window (a minute by default). Each budget is one 64-bit word, (window id << 40)
 * | used, updated by CAS, so cores never lock and a new window resets the count in the same
 * atomic step that charges it. */

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "bench/mock.h"
#include "core/rm_assert.h"

#define MOCK_WINDOW_SHIFT 40
#define MOCK_WINDOW_USED_MASK ((1ull << MOCK_WINDOW_SHIFT) - 1)
#define MOCK_WINDOW_ID_MASK ((1ull << (64 - MOCK_WINDOW_SHIFT)) - 1)
#define MOCK_CAS_TRIES_MAX 100000

bool mock_limits_acquire(struct mock *mock)
{
    RM_ASSERT(mock != NULL);
    uint32_t limit = mock->config.max_concurrency;
    uint32_t now = __atomic_add_fetch(&mock->in_flight, 1, __ATOMIC_ACQ_REL);
    RM_ASSERT(now > 0);
    if (limit != 0 && now > limit) {
        __atomic_sub_fetch(&mock->in_flight, 1, __ATOMIC_ACQ_REL);
        return false;
    }
    uint32_t peak = __atomic_load_n(&mock->in_flight_peak, __ATOMIC_RELAXED);
    while (now > peak && !__atomic_compare_exchange_n(&mock->in_flight_peak, &peak, now, false,
                                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return true;
}

bool mock_limits_storm(const struct mock *mock, const struct http_request *request)
{
    size_t length = strlen(mock->config.storm_key);
    const struct http_slice *value = http_request_header(request, "authorization");
    return length > 0 && value != NULL && value->length == length + 7 &&
           strncasecmp(value->base, "Bearer ", 7) == 0 &&
           memcmp(value->base + 7, mock->config.storm_key, length) == 0;
}

void mock_limits_release(struct mock *mock)
{
    uint32_t before = __atomic_fetch_sub(&mock->in_flight, 1, __ATOMIC_ACQ_REL);
    RM_ASSERT(before > 0);
}

static uint64_t mock_window_used(uint64_t word, uint64_t window)
{
    return (word >> MOCK_WINDOW_SHIFT) == window ? word & MOCK_WINDOW_USED_MASK : 0;
}

/* Adds amount to the window's count unless that passes limit; *used gets the count after
 * (or the current count when refused). */
static bool mock_window_take(uint64_t *word, uint64_t window, uint64_t amount, uint64_t limit,
                             uint64_t *used)
{
    RM_ASSERT(window <= MOCK_WINDOW_ID_MASK);
    RM_ASSERT(limit <= MOCK_WINDOW_USED_MASK);
    uint64_t old = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    for (uint32_t tries = 0; tries < MOCK_CAS_TRIES_MAX; tries++) {
        *used = mock_window_used(old, window);
        if (amount > limit || *used > limit - amount) {
            return false;
        }
        uint64_t next = (window << MOCK_WINDOW_SHIFT) | (*used + amount);
        if (__atomic_compare_exchange_n(word, &old, next, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            *used += amount;
            return true;
        }
    }
    return false;
}

/* Gives back a charge that a later check refused, if its window is still the current one. */
static void mock_window_refund(uint64_t *word, uint64_t window, uint64_t amount)
{
    uint64_t old = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    for (uint32_t tries = 0; tries < MOCK_CAS_TRIES_MAX; tries++) {
        uint64_t used = mock_window_used(old, window);
        if ((old >> MOCK_WINDOW_SHIFT) != window || used < amount) {
            return;
        }
        uint64_t next = (window << MOCK_WINDOW_SHIFT) | (used - amount);
        if (__atomic_compare_exchange_n(word, &old, next, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            return;
        }
    }
}

static uint64_t mock_limit_or_max(uint64_t limit)
{
    return limit == 0 ? MOCK_WINDOW_USED_MASK : limit;
}

struct mock_rate mock_limits_charge(struct mock *mock, int key, uint64_t tokens, uint64_t now_ns)
{
    const struct mock_config *config = &mock->config;
    struct mock_rate rate = {0};
    rate.limited = config->requests_per_window != 0 || config->tokens_per_window != 0;
    if (!rate.limited || key < 0 || key >= MOCK_NAMES_MAX) {
        return rate; /* "other" keys (table full) are not limited */
    }
    RM_ASSERT(config->window_ms > 0);
    RM_ASSERT(now_ns >= mock->start_ns);
    now_ns -= mock->start_ns;
    uint64_t window_ns = (uint64_t)config->window_ms * 1000000ull;
    uint64_t window = (now_ns / window_ns) & MOCK_WINDOW_ID_MASK;
    rate.reset_ms = (window_ns - now_ns % window_ns + 999999) / 1000000;
    struct mock_name_entry *entry = &mock->keys.entries[key];
    uint64_t request_limit = mock_limit_or_max(config->requests_per_window);
    uint64_t token_limit = mock_limit_or_max(config->tokens_per_window);
    uint64_t requests = 0;
    uint64_t used_tokens = 0;
    if (!mock_window_take(&entry->request_window, window, 1, request_limit, &requests)) {
        rate.refused = true;
    } else if (!mock_window_take(&entry->token_window, window, tokens, token_limit,
                                 &used_tokens)) {
        rate.refused = true;
        rate.refused_tokens = true;
        mock_window_refund(&entry->request_window, window, 1);
        requests--;
    }
    RM_ASSERT(requests <= request_limit);
    rate.remaining_requests = request_limit - requests;
    rate.remaining_tokens = used_tokens > token_limit ? 0 : token_limit - used_tokens;
    return rate;
}

void mock_limits_reset(struct mock *mock)
{
    RM_ASSERT(mock != NULL);
    __atomic_store_n(&mock->in_flight_peak, __atomic_load_n(&mock->in_flight, __ATOMIC_RELAXED),
                     __ATOMIC_RELAXED);
    for (uint32_t i = 0; i < MOCK_NAMES_MAX; i++) {
        __atomic_store_n(&mock->keys.entries[i].request_window, 0, __ATOMIC_RELEASE);
        __atomic_store_n(&mock->keys.entries[i].token_window, 0, __ATOMIC_RELEASE);
    }
}

/* OpenAI's headers: limits, what is left in the window, and when it resets (a duration). */
void mock_limits_headers(const struct mock *mock, const struct mock_rate *rate,
                         struct mock_response *response)
{
    const struct mock_config *config = &mock->config;
    if (!rate->limited) {
        return;
    }
    RM_ASSERT(response->header_count + 6 <= MOCK_RESPONSE_HEADERS_MAX);
    uint64_t seconds = rate->reset_ms / 1000;
    uint64_t millis = rate->reset_ms % 1000;
    if (config->requests_per_window != 0) {
        mock_reply_header(response, "x-ratelimit-limit-requests", "%llu",
                          (unsigned long long)config->requests_per_window);
        mock_reply_header(response, "x-ratelimit-remaining-requests", "%llu",
                          (unsigned long long)rate->remaining_requests);
        mock_reply_header(response, "x-ratelimit-reset-requests", "%llu.%03llus",
                          (unsigned long long)seconds, (unsigned long long)millis);
    }
    if (config->tokens_per_window != 0) {
        mock_reply_header(response, "x-ratelimit-limit-tokens", "%llu",
                          (unsigned long long)config->tokens_per_window);
        mock_reply_header(response, "x-ratelimit-remaining-tokens", "%llu",
                          (unsigned long long)rate->remaining_tokens);
        mock_reply_header(response, "x-ratelimit-reset-tokens", "%llu.%03llus",
                          (unsigned long long)seconds, (unsigned long long)millis);
    }
}
