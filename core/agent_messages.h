#ifndef RM_AGENT_MESSAGES_H
#define RM_AGENT_MESSAGES_H

/* The wire format of an agent's conversation with its LLM: OpenAI chat completions with
 * function calling. This module builds request bodies and parses answers; it keeps no state,
 * does no I/O and knows nothing of the agent loop (core/agent.c drives it).
 *
 * Building: agent_messages_tools turns an agent's tool names into the "tools" array once;
 * agent_messages_request joins model, system prompt, the history so far, the fresh messages
 * of this step, the tools and the agent's params into one compact JSON body. Messages are
 * jansson objects: the loop keeps its history as an array of them, appending the normalised
 * assistant message of each answer and one agent_messages_tool_result per tool call.
 *
 * Parsing: the answer is untrusted bytes (an LLM, a proxy, a misconfigured endpoint), so
 * agent_messages_parse_reply checks every field it uses, bounds every count and length, and
 * returns an error that says what was wrong rather than asserting. Fields it does not use are
 * ignored, whatever their type, with one exception: jansson refuses integers beyond 64 bits
 * anywhere in the text, so such an answer is "not JSON". (Decoding integers as reals would
 * avoid that, but would turn the integers of object-valued arguments into 2.0.)
 *
 * Text: every string handed to jansson is valid UTF-8. Tool results come from tools and may
 * not be: invalid bytes become U+FFFD rather than failing the step.
 *
 * Allocation: jansson values and dumped strings come from rm_malloc (config_json_init is
 * called by every function here); free strings with rm_free and values with json_decref. */

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

#define AGENT_TOOL_CALLS_MAX 16      /* tool calls in one reply; more is an error */
#define AGENT_REPLY_MAX_BYTES (8u * 1024 * 1024)
#define AGENT_TOOL_CALL_ID_MAX 128   /* a call id is shorter than this */
#define AGENT_TOOL_NAME_MAX 64       /* a function name is shorter than this */
#define AGENT_REPLY_ERROR_MAX 320    /* enough for every message of parse_reply */

/* The tool definitions an agent offers:
 * [{"type":"function","function":{"name","description","parameters"}}] for each of
 * agent->tools, looked up in config->tools by name ("description" is left out when empty;
 * empty "parameters" become {"type":"object"}). Every name must resolve and every schema be
 * a JSON object: the config was validated, so anything else is a programmer error. Returns
 * NULL if the agent has no tools, or on allocation failure (agent->tool_count tells them
 * apart). */
json_t *agent_messages_tools(const struct config *config, const struct config_agent *agent);

/* The chat completions request body:
 * {"model": agent->model,
 *  "messages": [{"role":"system","content": agent->system} if non-empty] + history + fresh,
 *  "tools": tools (if not NULL),
 *  then every key of agent->params (except "model", "messages" and "tools": ours win)}.
 * history and fresh are arrays of message objects, or NULL; they are shared, not copied.
 * Returns a compact JSON string with its length in *length (rm_free it), or NULL on
 * allocation failure. */
char *agent_messages_request(const struct config_agent *agent, const json_t *tools,
                             const json_t *history, const json_t *fresh, size_t *length);

struct agent_tool_call {
    const char *id;        /* pointers into reply->message; valid while the reply lives */
    const char *name;
    const char *arguments; /* the JSON text the model wrote (a string in the wire format) */
};

struct agent_reply {
    json_t *message;       /* choices[0].message, normalised:
                              {"role":"assistant","content":...,"tool_calls":[...] if any};
                              owned. Append it to the history (json_array_append). */
    uint32_t call_count;
    struct agent_tool_call calls[AGENT_TOOL_CALLS_MAX];
    const char *content;   /* the text of the answer, or NULL; the final answer when
                              call_count is 0 (may then be "") */
    const char *finish_reason; /* choices[0].finish_reason; may be NULL */
    uint64_t prompt_tokens;    /* usage; 0 when absent or not a valid count */
    uint64_t completion_tokens;
    json_t *finish_reason_json; /* private: keeps finish_reason alive */
};

/* Parses an LLM answer (untrusted bytes, at most AGENT_REPLY_MAX_BYTES). Returns 0, or -1
 * with err filled (valid UTF-8, no control characters; never empty; err_size at least 2,
 * AGENT_REPLY_ERROR_MAX is enough not to cut ours) and *reply left empty.
 * Rules:
 *   - the body is a JSON object with a non-empty "choices" array (an {"error":{"message"}}
 *     body is reported with its message); choices[0] and choices[0].message are objects;
 *   - "content" is a string or null (or absent); "refusal" with no content is an error that
 *     quotes it;
 *   - "tool_calls" (if present and non-null) is an array of at most AGENT_TOOL_CALLS_MAX
 *     objects, each with a string "id" (non-empty, < AGENT_TOOL_CALL_ID_MAX bytes, unique in
 *     the answer), "type" "function" (or absent/null), "function"."name" a string (non-empty,
 *     < AGENT_TOOL_NAME_MAX bytes), "function"."arguments" a string (may be empty; not
 *     validated as JSON here; an object, as some servers send, is taken as its compact text);
 *     an empty array is the same as none;
 *   - "usage" is optional: prompt_tokens/completion_tokens are taken when they are
 *     non-negative integers, else ignored;
 *   - a message with neither content nor tool calls is an error.
 * Tool calls are numbered from 1 in errors: "tool call 2 has no function name". */
int agent_messages_parse_reply(const char *body, size_t length, struct agent_reply *reply,
                               char *err, size_t err_size);

/* Releases what the reply owns and empties it. Harmless on an empty reply (after -1, or
 * zero-initialised) and when called twice. */
void agent_reply_free(struct agent_reply *reply);

/* {"role":"tool","tool_call_id":call_id,"content":content}. content is length bytes of text
 * (a tool's JSON result is passed as its text); invalid UTF-8 becomes U+FFFD. NULL on
 * allocation failure. */
json_t *agent_messages_tool_result(const char *call_id, const char *content, size_t length);

/* {"role":"user","content":...}: input is a JSON string (its text is used) or any other JSON
 * value (dumped compact as the content). NULL on allocation failure. */
json_t *agent_messages_user(const json_t *input);

#endif
