#ifndef RM_BENCH_MOCK_LLM_H
#define RM_BENCH_MOCK_LLM_H

/* What a chat completion request asked for and what the mock decided to answer, shared by
 * the handler (mock_llm.c) and the body writer (mock_llm_body.c). */

#include <jansson.h>

#include "bench/mock.h"

struct mock_call {
    const char *name;
    size_t name_length;
    size_t arguments_start; /* in core->text */
    size_t arguments_length;
};

struct mock_chat {
    json_t *root;
    const char *model;
    size_t model_length;
    bool stream;
    bool include_usage;
    uint32_t tool_results;       /* messages with role "tool" */
    const char *user_text;       /* the last user message's content, or "" */
    size_t user_text_length;
    uint32_t call_count;         /* 0: a final answer, its content at core->text[0..] */
    struct mock_call calls[MOCK_TOOL_CALLS_MAX];
    size_t content_length;
    uint64_t prompt_tokens;
    uint64_t completion_tokens;
    uint64_t sequence;
    long long created;
};

/* Writes the whole response body (JSON, or SSE when chat->stream) into core->scratch. */
void mock_llm_body(struct mock_core *core, const struct mock_chat *chat);

#endif
