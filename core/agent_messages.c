#include "core/agent_messages.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rm_assert.h"

/* A double holds every integer up to 2^53 exactly; token counts beyond it are not counts. */
#define AGENT_MESSAGES_EXACT_INTEGER_MAX 9007199254740992.0
#define AGENT_MESSAGES_REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD in UTF-8 */
#define AGENT_MESSAGES_REPLACEMENT_BYTES 3

_Static_assert(AGENT_TOOL_NAME_MAX == CONFIG_NAME_MAX, "a reply's names must fit config names");
_Static_assert(AGENT_TOOL_CALLS_MAX > 0 && AGENT_TOOL_CALLS_MAX <= 1024, "call bound");
_Static_assert(AGENT_REPLY_MAX_BYTES <= (1u << 30), "replies are parsed in memory at once");

/* The length of the well-formed UTF-8 sequence at text (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF, the same rules as jansson), or 0 if there is none. */
static size_t agent_messages_utf8_sequence(const unsigned char *text, size_t length)
{
    RM_ASSERT(text != NULL);
    RM_ASSERT(length > 0);
    unsigned char first = text[0];
    if (first < 0x80) {
        return 1;
    }
    size_t size = 0;
    unsigned char low = 0x80;
    unsigned char high = 0xBF;
    if (first >= 0xC2 && first <= 0xDF) {
        size = 2;
    } else if (first >= 0xE0 && first <= 0xEF) {
        size = 3;
        low = first == 0xE0 ? 0xA0 : 0x80;  /* overlong below U+0800 */
        high = first == 0xED ? 0x9F : 0xBF; /* surrogates U+D800..U+DFFF */
    } else if (first >= 0xF0 && first <= 0xF4) {
        size = 4;
        low = first == 0xF0 ? 0x90 : 0x80;  /* overlong below U+10000 */
        high = first == 0xF4 ? 0x8F : 0xBF; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (length < size || text[1] < low || text[1] > high) {
        return 0;
    }
    for (size_t i = 2; i < size; i++) {
        if ((text[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    return size;
}

/* Makes an error message safe to log and to put in JSON: invalid UTF-8 (jansson quotes raw
 * input bytes; snprintf may cut a character) becomes '?', control characters spaces. */
static void agent_messages_error_clean(char *err)
{
    RM_ASSERT(err != NULL);
    size_t length = strlen(err);
    size_t at = 0;
    while (at < length) {
        unsigned char *byte = (unsigned char *)err + at;
        size_t size = agent_messages_utf8_sequence(byte, length - at);
        if (size == 0) {
            *byte = '?';
            size = 1;
        } else if (size == 1 && (*byte < 0x20 || *byte == 0x7F)) {
            *byte = ' ';
        }
        at += size;
    }
    RM_ASSERT(at == length);
}

__attribute__((format(printf, 3, 4))) static int agent_messages_fail(char *err, size_t err_size,
                                                                     const char *format, ...)
{
    RM_ASSERT(err != NULL);
    RM_ASSERT(err_size > 1);
    va_list arguments;
    va_start(arguments, format);
    int written = vsnprintf(err, err_size, format, arguments);
    va_end(arguments);
    RM_ASSERT(written > 0);
    agent_messages_error_clean(err);
    return -1;
}

/* Text as a JSON string; invalid UTF-8 bytes become U+FFFD. NULL on allocation failure. */
static json_t *agent_messages_text(const char *text, size_t length)
{
    RM_ASSERT(text != NULL || length == 0);
    const unsigned char *bytes = (const unsigned char *)(text != NULL ? text : "");
    size_t invalid = 0;
    for (size_t at = 0; at < length;) {
        size_t size = agent_messages_utf8_sequence(bytes + at, length - at);
        invalid += size == 0;
        at += size == 0 ? 1 : size;
    }
    if (invalid == 0) {
        return json_stringn((const char *)bytes, length);
    }
    RM_ASSERT(invalid <= length);
    if (length > (SIZE_MAX - 1) / AGENT_MESSAGES_REPLACEMENT_BYTES) {
        return NULL;
    }
    char *repaired = rm_malloc(length * AGENT_MESSAGES_REPLACEMENT_BYTES + 1);
    if (repaired == NULL) {
        return NULL;
    }
    size_t filled = 0;
    for (size_t at = 0; at < length;) {
        size_t size = agent_messages_utf8_sequence(bytes + at, length - at);
        if (size == 0) {
            memcpy(repaired + filled, AGENT_MESSAGES_REPLACEMENT, AGENT_MESSAGES_REPLACEMENT_BYTES);
            filled += AGENT_MESSAGES_REPLACEMENT_BYTES;
            at += 1;
        } else {
            memcpy(repaired + filled, bytes + at, size);
            filled += size;
            at += size;
        }
    }
    RM_ASSERT(filled == length + invalid * (AGENT_MESSAGES_REPLACEMENT_BYTES - 1));
    json_t *value = json_stringn(repaired, filled);
    rm_free(repaired);
    return value;
}

/* A NUL-terminated field of a config struct, with its length. */
static size_t agent_messages_field_length(const char *field, size_t size)
{
    RM_ASSERT(field != NULL);
    size_t length = strnlen(field, size);
    RM_ASSERT(length < size);
    return length;
}

/* Compact JSON text from a validated config field. NULL only on allocation failure: any
 * other parse error means the config was not validated, a programmer error. */
static json_t *agent_messages_config_json(const char *field, size_t size)
{
    size_t length = agent_messages_field_length(field, size);
    RM_ASSERT(length > 0);
    json_error_t error;
    json_t *value = json_loadb(field, length, 0, &error);
    if (value == NULL) {
        RM_ASSERT(json_error_code(&error) == json_error_out_of_memory);
        return NULL;
    }
    RM_ASSERT(json_is_object(value));
    return value;
}

static const struct config_tool *agent_messages_find_tool(const struct config *config,
                                                          const char *name)
{
    RM_ASSERT(config->tool_count <= CONFIG_TOOLS_MAX);
    RM_ASSERT(name[0] != '\0');
    for (uint32_t i = 0; i < config->tool_count; i++) {
        if (strncmp(config->tools[i].name, name, CONFIG_NAME_MAX) == 0) {
            return &config->tools[i];
        }
    }
    return NULL;
}

/* {"type":"function","function":{"name","description" if any,"parameters"}}. */
static json_t *agent_messages_tool_definition(const struct config_tool *tool)
{
    RM_ASSERT(tool != NULL);
    RM_ASSERT(tool->name[0] != '\0');
    json_t *parameters = tool->parameters[0] == '\0'
                             ? json_pack("{s:s}", "type", "object")
                             : agent_messages_config_json(tool->parameters,
                                                          sizeof(tool->parameters));
    json_t *function = json_object();
    json_t *definition = json_object();
    bool failed = parameters == NULL || function == NULL || definition == NULL;
    size_t name_length = agent_messages_field_length(tool->name, sizeof(tool->name));
    size_t description_length =
        agent_messages_field_length(tool->description, sizeof(tool->description));
    failed = failed || json_object_set_new(function, "name",
                                           json_stringn(tool->name, name_length)) != 0;
    failed = failed || (description_length > 0 &&
                        json_object_set_new(function, "description",
                                            json_stringn(tool->description,
                                                         description_length)) != 0);
    failed = failed || json_object_set(function, "parameters", parameters) != 0;
    failed = failed || json_object_set_new(definition, "type", json_string("function")) != 0;
    failed = failed || json_object_set(definition, "function", function) != 0;
    json_decref(parameters);
    json_decref(function);
    if (failed) {
        json_decref(definition);
        return NULL;
    }
    RM_DEBUG_ASSERT(json_object_size(definition) == 2);
    return definition;
}

json_t *agent_messages_tools(const struct config *config, const struct config_agent *agent)
{
    RM_ASSERT(config != NULL);
    RM_ASSERT(agent != NULL);
    RM_ASSERT(agent->tool_count <= CONFIG_AGENT_TOOLS_MAX);
    config_json_init();
    if (agent->tool_count == 0) {
        return NULL;
    }
    json_t *tools = json_array();
    if (tools == NULL) {
        return NULL;
    }
    for (uint32_t i = 0; i < agent->tool_count; i++) {
        RM_ASSERT(agent_messages_field_length(agent->tools[i], sizeof(agent->tools[i])) > 0);
        const struct config_tool *tool = agent_messages_find_tool(config, agent->tools[i]);
        RM_ASSERT(tool != NULL); /* config validation resolves every tool an agent names */
        if (json_array_append_new(tools, agent_messages_tool_definition(tool)) != 0) {
            json_decref(tools);
            return NULL;
        }
    }
    RM_ASSERT(json_array_size(tools) == agent->tool_count);
    return tools;
}

/* Where the part of the history sent to the LLM starts: at most history_messages from its
 * end, moved forward to a user message so that no tool result loses the call it answers.
 * The whole history stays in the store; this bounds the context and the tokens per call. */
static size_t agent_messages_history_start(const struct config_agent *agent,
                                           const json_t *history)
{
    size_t size = json_array_size(history);
    size_t start = size > agent->history_messages ? size - agent->history_messages : 0;
    if (start == 0) {
        return 0;
    }
    while (start < size) {
        const char *role = json_string_value(json_object_get(json_array_get(history, start),
                                                             "role"));
        if (role != NULL && strcmp(role, "user") == 0) {
            break;
        }
        start++;
    }
    return start;
}

/* The system prompt, then history, then fresh; the messages are shared, not copied. */
static json_t *agent_messages_conversation(const struct config_agent *agent,
                                           const json_t *history, const json_t *fresh)
{
    RM_ASSERT(history == NULL || json_is_array(history));
    RM_ASSERT(fresh == NULL || json_is_array(fresh));
    json_t *messages = json_array();
    if (messages == NULL) {
        return NULL;
    }
    bool failed = false;
    size_t system_length = agent_messages_field_length(agent->system, sizeof(agent->system));
    if (system_length > 0) {
        json_t *system = json_object();
        failed = system == NULL || json_array_append_new(messages, system) != 0;
        failed = failed || json_object_set_new(system, "role", json_string("system")) != 0;
        failed = failed || json_object_set_new(system, "content",
                                               json_stringn(agent->system, system_length)) != 0;
    }
    const json_t *parts[2] = {history, fresh};
    size_t starts[2] = {agent_messages_history_start(agent, history), 0};
    for (size_t part = 0; part < RM_ARRAY_LENGTH(parts) && !failed; part++) {
        for (size_t i = starts[part]; i < json_array_size(parts[part]) && !failed; i++) {
            json_t *message = json_array_get(parts[part], i);
            RM_DEBUG_ASSERT(json_is_object(message));
            failed = json_array_append(messages, message) != 0;
        }
    }
    if (failed) {
        json_decref(messages);
        return NULL;
    }
    return messages;
}

/* Every key of the agent's params into body, except the keys the engine sets itself. */
static int agent_messages_merge_params(json_t *body, const char *params, size_t size)
{
    RM_ASSERT(json_is_object(body));
    RM_ASSERT(json_object_get(body, "messages") != NULL);
    if (params[0] == '\0') {
        return 0;
    }
    json_t *object = agent_messages_config_json(params, size);
    if (object == NULL) {
        return -1;
    }
    static const char *const reserved[] = {"model", "messages", "tools"};
    int result = 0;
    const char *key = NULL;
    json_t *value = NULL;
    json_object_foreach(object, key, value) {
        bool ours = false;
        for (size_t i = 0; i < RM_ARRAY_LENGTH(reserved); i++) {
            ours = ours || strcmp(key, reserved[i]) == 0;
        }
        if (!ours && json_object_set(body, key, value) != 0) {
            result = -1;
            break;
        }
    }
    json_decref(object);
    return result;
}

char *agent_messages_request(const struct config_agent *agent, const json_t *tools,
                             const json_t *history, const json_t *fresh, size_t *length)
{
    RM_ASSERT(agent != NULL);
    RM_ASSERT(length != NULL);
    RM_ASSERT(tools == NULL || json_is_array(tools));
    config_json_init();
    *length = 0;
    size_t model_length = agent_messages_field_length(agent->model, sizeof(agent->model));
    RM_ASSERT(model_length > 0); /* required by config validation */
    json_t *body = json_object();
    if (body == NULL) {
        return NULL;
    }
    bool failed =
        json_object_set_new(body, "model", json_stringn(agent->model, model_length)) != 0;
    failed = failed || json_object_set_new(body, "messages", agent_messages_conversation(
                                                                 agent, history, fresh)) != 0;
    /* jansson takes a mutable pointer only to count the reference; tools is not changed. */
    failed = failed || (tools != NULL && json_object_set(body, "tools", (json_t *)tools) != 0);
    failed = failed || agent_messages_merge_params(body, agent->params, sizeof(agent->params));
    char *text = failed ? NULL : json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text != NULL) {
        *length = strlen(text);
        RM_ASSERT(*length > 0);
    }
    return text;
}

/* A token count: a non-negative integer (a real with an exact integer value counts too, as
 * some servers write 12.0). */
static bool agent_messages_token_count(const json_t *value, uint64_t *count)
{
    RM_ASSERT(count != NULL);
    RM_ASSERT(*count == 0);
    if (json_is_integer(value)) {
        json_int_t integer = json_integer_value(value);
        *count = integer >= 0 ? (uint64_t)integer : 0;
        return integer >= 0;
    }
    if (!json_is_real(value)) {
        return false;
    }
    double real = json_real_value(value);
    if (!(real >= 0.0 && real <= AGENT_MESSAGES_EXACT_INTEGER_MAX) ||
        (double)(uint64_t)real != real) {
        return false;
    }
    *count = (uint64_t)real;
    return true;
}

/* choices[0] and its message, finish_reason and usage. */
static int agent_messages_parse_root(const json_t *root, struct agent_reply *reply,
                                     const json_t **message, char *err, size_t err_size)
{
    RM_ASSERT(root != NULL);
    RM_ASSERT(reply->message == NULL);
    if (!json_is_object(root)) {
        return agent_messages_fail(err, err_size, "the LLM's answer is not a JSON object");
    }
    const json_t *choices = json_object_get(root, "choices");
    if (!json_is_array(choices) || json_array_size(choices) == 0) {
        const char *upstream =
            json_string_value(json_object_get(json_object_get(root, "error"), "message"));
        if (upstream != NULL) {
            return agent_messages_fail(err, err_size, "the LLM's answer is an error: %s",
                                       upstream);
        }
        return agent_messages_fail(err, err_size, "the LLM's answer has no choices");
    }
    const json_t *choice = json_array_get(choices, 0);
    if (!json_is_object(choice)) {
        return agent_messages_fail(err, err_size, "the LLM's answer has a choice that is not "
                                                  "an object");
    }
    *message = json_object_get(choice, "message");
    if (!json_is_object(*message)) {
        return agent_messages_fail(err, err_size, "the LLM's answer has no message");
    }
    json_t *finish = json_object_get(choice, "finish_reason");
    if (json_is_string(finish)) {
        reply->finish_reason_json = json_incref(finish);
        reply->finish_reason = json_string_value(finish);
    }
    const json_t *usage = json_object_get(root, "usage");
    agent_messages_token_count(json_object_get(usage, "prompt_tokens"), &reply->prompt_tokens);
    agent_messages_token_count(json_object_get(usage, "completion_tokens"),
                               &reply->completion_tokens);
    return 0;
}

/* function.arguments: a string, or an object taken as its compact text. */
static json_t *agent_messages_call_arguments(json_t *arguments)
{
    if (json_is_string(arguments)) {
        return json_incref(arguments);
    }
    RM_ASSERT(json_is_object(arguments));
    char *text = json_dumps(arguments, JSON_COMPACT);
    json_t *value = text != NULL ? json_string(text) : NULL;
    rm_free(text);
    return value;
}

/* Checks one tool call and builds its normalised form into *normal ({"id","type":"function",
 * "function":{"name","arguments"}}). Returns 0, or -1 with err filled. */
static int agent_messages_parse_call(const json_t *source, uint32_t number, json_t **normal,
                                     char *err, size_t err_size)
{
    RM_ASSERT(number >= 1 && number <= AGENT_TOOL_CALLS_MAX);
    RM_ASSERT(*normal == NULL);
    if (!json_is_object(source)) {
        return agent_messages_fail(err, err_size, "tool call %u is not an object", number);
    }
    json_t *id = json_object_get(source, "id");
    if (!json_is_string(id) || json_string_length(id) == 0) {
        return agent_messages_fail(err, err_size, "tool call %u has no id", number);
    }
    if (json_string_length(id) >= AGENT_TOOL_CALL_ID_MAX) {
        return agent_messages_fail(err, err_size, "tool call %u has an id of %zu bytes (at "
                                   "most %d)", number, json_string_length(id),
                                   AGENT_TOOL_CALL_ID_MAX - 1);
    }
    const json_t *type = json_object_get(source, "type");
    if (type != NULL && !json_is_null(type) &&
        (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0)) {
        return agent_messages_fail(err, err_size, "tool call %u is not of type \"function\"",
                                   number);
    }
    const json_t *function = json_object_get(source, "function");
    json_t *name = json_object_get(function, "name");
    json_t *arguments = json_object_get(function, "arguments");
    if (!json_is_object(function)) {
        return agent_messages_fail(err, err_size, "tool call %u has no function", number);
    }
    if (!json_is_string(name) || json_string_length(name) == 0) {
        return agent_messages_fail(err, err_size, "tool call %u has no function name", number);
    }
    if (json_string_length(name) >= AGENT_TOOL_NAME_MAX) {
        return agent_messages_fail(err, err_size, "tool call %u has a function name of %zu "
                                   "bytes (at most %d)", number, json_string_length(name),
                                   AGENT_TOOL_NAME_MAX - 1);
    }
    if (!json_is_string(arguments) && !json_is_object(arguments)) {
        return agent_messages_fail(err, err_size, "tool call %u has no function arguments",
                                   number);
    }
    json_t *text = agent_messages_call_arguments(arguments);
    *normal = json_pack("{s:O,s:s,s:{s:O,s:O}}", "id", id, "type", "function", "function",
                        "name", name, "arguments", text);
    json_decref(text);
    if (*normal == NULL) {
        return agent_messages_fail(err, err_size, "out of memory reading the LLM's answer");
    }
    return 0;
}

/* Points reply->calls into the normalised tool_calls and rejects repeated ids (the results
 * are matched to the calls by id). */
static int agent_messages_point_calls(const json_t *calls, struct agent_reply *reply,
                                      char *err, size_t err_size)
{
    RM_ASSERT(json_array_size(calls) <= AGENT_TOOL_CALLS_MAX);
    RM_ASSERT(reply->call_count == 0);
    for (size_t i = 0; i < json_array_size(calls); i++) {
        const json_t *call = json_array_get(calls, i);
        const json_t *function = json_object_get(call, "function");
        struct agent_tool_call *target = &reply->calls[i];
        target->id = json_string_value(json_object_get(call, "id"));
        target->name = json_string_value(json_object_get(function, "name"));
        target->arguments = json_string_value(json_object_get(function, "arguments"));
        RM_ASSERT(target->id != NULL && target->name != NULL && target->arguments != NULL);
        for (size_t earlier = 0; earlier < i; earlier++) {
            if (strcmp(reply->calls[earlier].id, target->id) == 0) {
                return agent_messages_fail(err, err_size, "tool call %zu repeats the id of "
                                           "tool call %zu", i + 1, earlier + 1);
            }
        }
        reply->call_count = (uint32_t)(i + 1);
    }
    return 0;
}

/* The normalised tool_calls array into reply->message, and reply->calls pointing into it. */
static int agent_messages_parse_calls(const json_t *source, size_t count,
                                      struct agent_reply *reply, char *err, size_t err_size)
{
    RM_ASSERT(count > 0 && count <= AGENT_TOOL_CALLS_MAX);
    RM_ASSERT(json_is_object(reply->message));
    json_t *calls = json_array();
    if (calls == NULL || json_object_set_new(reply->message, "tool_calls", calls) != 0) {
        return agent_messages_fail(err, err_size, "out of memory reading the LLM's answer");
    }
    for (size_t i = 0; i < count; i++) {
        json_t *normal = NULL;
        if (agent_messages_parse_call(json_array_get(source, i), (uint32_t)(i + 1), &normal,
                                      err, err_size) != 0) {
            return -1;
        }
        if (json_array_append_new(calls, normal) != 0) {
            return agent_messages_fail(err, err_size, "out of memory reading the LLM's answer");
        }
    }
    return agent_messages_point_calls(calls, reply, err, err_size);
}

/* Why a message with neither content nor tool calls came back, as well as we can tell. */
static int agent_messages_fail_empty(const json_t *source, const struct agent_reply *reply,
                                     char *err, size_t err_size)
{
    RM_ASSERT(json_is_object(source));
    RM_ASSERT(reply->message == NULL);
    const char *refusal = json_string_value(json_object_get(source, "refusal"));
    if (refusal != NULL) {
        return agent_messages_fail(err, err_size, "the LLM refused: %s", refusal);
    }
    if (reply->finish_reason != NULL) {
        return agent_messages_fail(err, err_size, "the LLM's answer has neither content nor "
                                   "tool calls (finish_reason \"%s\")", reply->finish_reason);
    }
    return agent_messages_fail(err, err_size,
                               "the LLM's answer has neither content nor tool calls");
}

/* choices[0].message into reply->message (normalised), content and calls. */
static int agent_messages_parse_message(const json_t *source, struct agent_reply *reply,
                                        char *err, size_t err_size)
{
    RM_ASSERT(json_is_object(source));
    RM_ASSERT(reply->message == NULL);
    json_t *content = json_object_get(source, "content");
    if (content != NULL && !json_is_string(content) && !json_is_null(content)) {
        return agent_messages_fail(err, err_size, "the LLM's answer has content that is "
                                                  "neither text nor null");
    }
    const json_t *calls = json_object_get(source, "tool_calls");
    if (calls != NULL && !json_is_null(calls) && !json_is_array(calls)) {
        return agent_messages_fail(err, err_size, "the LLM's answer has tool_calls that is "
                                                  "not an array");
    }
    size_t count = json_array_size(calls);
    if (count > AGENT_TOOL_CALLS_MAX) {
        return agent_messages_fail(err, err_size, "more than %d tool calls in one answer",
                                   AGENT_TOOL_CALLS_MAX);
    }
    if (!json_is_string(content) && count == 0) {
        return agent_messages_fail_empty(source, reply, err, err_size);
    }
    reply->message = json_pack("{s:s,s:O}", "role", "assistant", "content",
                               json_is_string(content) ? content : json_null());
    if (reply->message == NULL) {
        return agent_messages_fail(err, err_size, "out of memory reading the LLM's answer");
    }
    reply->content = json_string_value(content);
    if (count > 0 && agent_messages_parse_calls(calls, count, reply, err, err_size) != 0) {
        return -1;
    }
    RM_ASSERT(reply->call_count == count);
    return 0;
}

int agent_messages_parse_reply(const char *body, size_t length, struct agent_reply *reply,
                               char *err, size_t err_size)
{
    RM_ASSERT(body != NULL || length == 0);
    RM_ASSERT(reply != NULL);
    RM_ASSERT(err != NULL && err_size > 1);
    config_json_init();
    memset(reply, 0, sizeof(*reply));
    err[0] = '\0';
    if (length > AGENT_REPLY_MAX_BYTES) {
        return agent_messages_fail(err, err_size, "the LLM's answer is larger than %u bytes",
                                   AGENT_REPLY_MAX_BYTES);
    }
    json_error_t error;
    json_t *root = json_loadb(body != NULL ? body : "", length,
                              JSON_DECODE_ANY, &error);
    if (root == NULL) {
        return agent_messages_fail(err, err_size, "the LLM's answer is not JSON at %d:%d: %s",
                                   error.line, error.column, error.text);
    }
    const json_t *message = NULL;
    int result = agent_messages_parse_root(root, reply, &message, err, err_size);
    if (result == 0) {
        result = agent_messages_parse_message(message, reply, err, err_size);
    }
    json_decref(root);
    if (result != 0) {
        agent_reply_free(reply);
        RM_ASSERT(err[0] != '\0');
        return -1;
    }
    RM_ASSERT(reply->content != NULL || reply->call_count > 0);
    RM_ASSERT(reply->call_count <= AGENT_TOOL_CALLS_MAX);
    return 0;
}

void agent_reply_free(struct agent_reply *reply)
{
    RM_ASSERT(reply != NULL);
    RM_ASSERT(reply->call_count <= AGENT_TOOL_CALLS_MAX);
    json_decref(reply->message);
    json_decref(reply->finish_reason_json);
    memset(reply, 0, sizeof(*reply));
}

json_t *agent_messages_tool_result(const char *call_id, const char *content, size_t length)
{
    RM_ASSERT(call_id != NULL && call_id[0] != '\0');
    RM_ASSERT(content != NULL || length == 0);
    config_json_init();
    json_t *text = agent_messages_text(content, length);
    json_t *message = json_object();
    bool failed = text == NULL || message == NULL;
    failed = failed || json_object_set_new(message, "role", json_string("tool")) != 0;
    failed = failed || json_object_set_new(message, "tool_call_id", json_string(call_id)) != 0;
    failed = failed || json_object_set(message, "content", text) != 0;
    json_decref(text);
    if (failed) {
        json_decref(message);
        return NULL;
    }
    RM_DEBUG_ASSERT(json_object_size(message) == 3);
    return message;
}

json_t *agent_messages_user(const json_t *input)
{
    RM_ASSERT(input != NULL);
    config_json_init();
    json_t *content = NULL;
    if (json_is_string(input)) {
        content = json_stringn(json_string_value(input), json_string_length(input));
    } else {
        char *text = json_dumps(input, JSON_COMPACT | JSON_ENCODE_ANY);
        content = text != NULL ? json_string(text) : NULL;
        rm_free(text);
    }
    json_t *message = json_object();
    bool failed = content == NULL || message == NULL;
    failed = failed || json_object_set_new(message, "role", json_string("user")) != 0;
    failed = failed || json_object_set(message, "content", content) != 0;
    json_decref(content);
    if (failed) {
        json_decref(message);
        return NULL;
    }
    RM_ASSERT(json_is_string(json_object_get(message, "content")));
    return message;
}
