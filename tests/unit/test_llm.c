/* The LLM queue's parsing of providers' rate-limit headers and its token estimate. */

#include <criterion/criterion.h>
#include <string.h>

#include "core/llm.h"

static int64_t llm_test_reset(const char *text) { return llm_parse_reset(text, strlen(text)); }

Test(llm_headers, retry_after_seconds_and_openai_reset_durations)
{
    cr_assert_eq(llm_test_reset("3"), 3000);
    cr_assert_eq(llm_test_reset("0"), 0);
    cr_assert_eq(llm_test_reset("1.5s"), 1500);
    cr_assert_eq(llm_test_reset("20ms"), 20);
    cr_assert_eq(llm_test_reset("6m0s"), 360000);
    cr_assert_eq(llm_test_reset("1h2m3.25s"), 3723250);
    cr_assert_eq(llm_test_reset("0.125s"), 125);
}

Test(llm_headers, anything_else_is_refused)
{
    cr_assert_eq(llm_test_reset(""), -1);
    cr_assert_eq(llm_test_reset("soon"), -1);
    cr_assert_eq(llm_test_reset("Wed, 21 Oct 2015 07:28:00 GMT"), -1);
    cr_assert_eq(llm_test_reset("5x"), -1);
    cr_assert_eq(llm_test_reset("-1"), -1);
    cr_assert_eq(llm_test_reset("s"), -1);
}

Test(llm_estimate, prompt_bytes_over_four_plus_the_completion_budget)
{
    cr_assert_eq(llm_estimate_tokens(400, 50), 150);
    cr_assert_eq(llm_estimate_tokens(400, 0), 100 + 256);
    cr_assert_eq(llm_estimate_tokens(0, 1), 1);
}
