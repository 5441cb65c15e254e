/* Chat completion bodies in OpenAI's shapes: one chat.completion object, or (stream: true)
 * a server-sent event stream of chat.completion.chunk objects ending in "data: [DONE]".
 * The whole stream is written as one body: the server sends it at once, which is still a
 * valid event stream for any SSE client. */

#include <string.h>

#include "bench/mock_llm.h"
#include "core/rm_assert.h"

/* Stream deltas carry this many bytes of content or arguments (a few tokens), cut only
 * between UTF-8 characters so that every chunk is valid JSON text. */
#define MOCK_PIECE_BYTES 24

static void mock_llm_body_call_id(struct mock_json *json, const struct mock_core *core,
                                  const struct mock_chat *chat, uint32_t call)
{
    mock_json_format(json, "\"call_%u_%llu_%u\"", core->index,
                     (unsigned long long)chat->sequence, call);
}

static void mock_llm_body_usage(struct mock_json *json, const struct mock_chat *chat)
{
    RM_ASSERT(chat->prompt_tokens > 0);
    RM_ASSERT(chat->completion_tokens > 0);
    mock_json_format(json,
                     "\"usage\":{\"prompt_tokens\":%llu,\"completion_tokens\":%llu,"
                     "\"total_tokens\":%llu}",
                     (unsigned long long)chat->prompt_tokens,
                     (unsigned long long)chat->completion_tokens,
                     (unsigned long long)(chat->prompt_tokens + chat->completion_tokens));
}

static void mock_llm_body_head(struct mock_json *json, const struct mock_core *core,
                               const struct mock_chat *chat, const char *object)
{
    mock_json_format(json, "{\"id\":\"chatcmpl-mock%u-%llu\",\"object\":\"%s\",\"created\":%lld,"
                     "\"model\":", core->index, (unsigned long long)chat->sequence, object,
                     chat->created);
    mock_json_string(json, chat->model, chat->model_length);
    mock_json_text(json, ",\"system_fingerprint\":\"fp_mock\",");
}

static void mock_llm_body_message(struct mock_json *json, const struct mock_core *core,
                                  const struct mock_chat *chat)
{
    const char *text = core->text.data;
    if (chat->call_count == 0) {
        mock_json_text(json, "{\"role\":\"assistant\",\"content\":");
        mock_json_string(json, text, chat->content_length);
        mock_json_text(json, "}");
        return;
    }
    mock_json_text(json, "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[");
    for (uint32_t i = 0; i < chat->call_count; i++) {
        const struct mock_call *call = &chat->calls[i];
        mock_json_text(json, i == 0 ? "{\"id\":" : ",{\"id\":");
        mock_llm_body_call_id(json, core, chat, i);
        mock_json_text(json, ",\"type\":\"function\",\"function\":{\"name\":");
        mock_json_string(json, call->name, call->name_length);
        mock_json_text(json, ",\"arguments\":");
        mock_json_string(json, text + call->arguments_start, call->arguments_length);
        mock_json_text(json, "}}");
    }
    mock_json_text(json, "]}");
}

static void mock_llm_body_complete(struct mock_core *core, const struct mock_chat *chat)
{
    struct mock_json *json = &core->scratch;
    RM_ASSERT(!chat->stream);
    mock_llm_body_head(json, core, chat, "chat.completion");
    mock_json_text(json, "\"choices\":[{\"index\":0,\"message\":");
    mock_llm_body_message(json, core, chat);
    mock_json_format(json, ",\"logprobs\":null,\"finish_reason\":\"%s\"}],",
                     chat->call_count > 0 ? "tool_calls" : "stop");
    mock_llm_body_usage(json, chat);
    mock_json_text(json, "}");
}

static void mock_llm_chunk_open(struct mock_json *json, const struct mock_core *core,
                                const struct mock_chat *chat)
{
    mock_json_text(json, "data: ");
    mock_llm_body_head(json, core, chat, "chat.completion.chunk");
    mock_json_text(json, "\"choices\":[{\"index\":0,\"delta\":");
}

static void mock_llm_chunk_close(struct mock_json *json, const char *finish_reason)
{
    if (finish_reason == NULL) {
        mock_json_text(json, ",\"logprobs\":null,\"finish_reason\":null}]}\n\n");
    } else {
        mock_json_format(json, ",\"logprobs\":null,\"finish_reason\":\"%s\"}]}\n\n",
                         finish_reason);
    }
}

static size_t mock_llm_piece_length(const char *text, size_t left)
{
    if (left <= MOCK_PIECE_BYTES) {
        return left;
    }
    size_t length = MOCK_PIECE_BYTES;
    while (length < left && ((unsigned char)text[length] & 0xC0) == 0x80) {
        length++; /* do not split a UTF-8 sequence */
    }
    return length;
}

/* Deltas of `text` in pieces; call < 0 for content, else arguments of tool call `call`. */
static void mock_llm_stream_pieces(struct mock_json *json, const struct mock_core *core,
                                   const struct mock_chat *chat, const char *text,
                                   size_t length, int call)
{
    size_t at = 0;
    while (at < length && !json->overflow) {
        size_t piece = mock_llm_piece_length(text + at, length - at);
        RM_ASSERT(piece > 0);
        mock_llm_chunk_open(json, core, chat);
        if (call < 0) {
            mock_json_text(json, "{\"content\":");
        } else {
            mock_json_format(json, "{\"tool_calls\":[{\"index\":%d,\"function\":{\"arguments\":",
                             call);
        }
        mock_json_string(json, text + at, piece);
        mock_json_text(json, call < 0 ? "}" : "}}]}");
        mock_llm_chunk_close(json, NULL);
        at += piece;
    }
}

static void mock_llm_stream_calls(struct mock_json *json, const struct mock_core *core,
                                  const struct mock_chat *chat)
{
    const char *text = core->text.data;
    for (uint32_t i = 0; i < chat->call_count && !json->overflow; i++) {
        const struct mock_call *call = &chat->calls[i];
        mock_llm_chunk_open(json, core, chat);
        mock_json_format(json, "{\"tool_calls\":[{\"index\":%u,\"id\":", i);
        mock_llm_body_call_id(json, core, chat, i);
        mock_json_text(json, ",\"type\":\"function\",\"function\":{\"name\":");
        mock_json_string(json, call->name, call->name_length);
        mock_json_text(json, ",\"arguments\":\"\"}}]}");
        mock_llm_chunk_close(json, NULL);
        mock_llm_stream_pieces(json, core, chat, text + call->arguments_start,
                               call->arguments_length, (int)i);
    }
}

static void mock_llm_body_stream(struct mock_core *core, const struct mock_chat *chat)
{
    struct mock_json *json = &core->scratch;
    RM_ASSERT(chat->stream);
    mock_llm_chunk_open(json, core, chat);
    mock_json_text(json, chat->call_count > 0 ? "{\"role\":\"assistant\",\"content\":null}"
                                              : "{\"role\":\"assistant\",\"content\":\"\"}");
    mock_llm_chunk_close(json, NULL);
    if (chat->call_count > 0) {
        mock_llm_stream_calls(json, core, chat);
    } else {
        mock_llm_stream_pieces(json, core, chat, core->text.data, chat->content_length, -1);
    }
    mock_llm_chunk_open(json, core, chat);
    mock_json_text(json, "{}");
    mock_llm_chunk_close(json, chat->call_count > 0 ? "tool_calls" : "stop");
    if (chat->include_usage) {
        mock_json_text(json, "data: ");
        mock_llm_body_head(json, core, chat, "chat.completion.chunk");
        mock_json_text(json, "\"choices\":[],");
        mock_llm_body_usage(json, chat);
        mock_json_text(json, "}\n\n");
    }
    mock_json_text(json, "data: [DONE]\n\n");
}

void mock_llm_body(struct mock_core *core, const struct mock_chat *chat)
{
    RM_ASSERT(chat->call_count <= MOCK_TOOL_CALLS_MAX);
    RM_ASSERT(chat->model != NULL);
    mock_json_reset(&core->scratch);
    if (chat->stream) {
        mock_llm_body_stream(core, chat);
    } else {
        mock_llm_body_complete(core, chat);
    }
}
