/* The configuration of agents, "agents": {"NAME": {...}}: an LLM loop over one endpoint and
 * model with a set of tools. Also the check of the names one section gives of another's
 * items (an agent's endpoint and tools, an agent tool's agent), which runs once the whole root
 * is parsed, since sections may come in any order. Parsed with the machinery of
 * config_parser.h, so errors read like every other config error. */

#include <stddef.h>
#include <string.h>

#include "core/config_parser.h"
#include "core/rm_assert.h"

#define CONFIG_DAY_MS 86400000
#define CONFIG_STEPS_MAX 100
#define CONFIG_CONCURRENT_MAX 1000000
#define CONFIG_AGENT_QUEUE_MAX 10000000
#define CONFIG_DEPTH_MAX 8

_Static_assert(CONFIG_AGENT_TOOLS_MAX <= CONFIG_TOOLS_MAX, "an agent's tools are distinct");
_Static_assert(CONFIG_PARAMS_JSON_MAX > 2, "the default params {} fit");
_Static_assert(offsetof(struct config_endpoint, name) == 0, "config_named reads names first");
_Static_assert(offsetof(struct config_tool, name) == 0, "config_named reads names first");
_Static_assert(offsetof(struct config_agent, name) == 0, "config_named reads names first");

/* Keys of an LLM request that the engine writes itself; params may not override them. */
static const char *const config_params_reserved[] = {"model", "messages", "tools", "stream"};

static struct config_agent *config_agent_of(const struct config_parser *parser)
{
    RM_ASSERT(parser->base != NULL);
    RM_ASSERT(parser->base_size == sizeof(struct config_agent));
    return parser->base;
}

static void config_agent_defaults(struct config_agent *agent, const char *name, size_t length)
{
    RM_ASSERT(length < sizeof(agent->name));
    RM_ASSERT(name != NULL);
    memset(agent, 0, sizeof(*agent));
    memcpy(agent->name, name, length + 1);
    agent->max_steps = 8;
    agent->deadline_ms = 300000;
    agent->max_concurrent = 64;
    agent->max_queue = 10000;
    agent->max_depth = 3;
    agent->history_messages = 100;
    memcpy(agent->params, "{}", 3);
}

/* ---- an agent's keys ---- */

static int config_parse_agent_endpoint(struct config_parser *parser, json_t *value,
                                       const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_agent_endpoint);
    RM_ASSERT(parser->depth == 3);
    struct config_agent *agent = config_agent_of(parser);
    return config_parse_reference(parser, value, "endpoint", agent->endpoint);
}

/* The rule of an endpoint's "models": the name goes into a JSON body, but it also appears in
 * metrics labels and logs, where spaces and control bytes do harm. */
static int config_parse_agent_model(struct config_parser *parser, json_t *value,
                                    const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_agent_model);
    RM_ASSERT(parser->depth == 3);
    struct config_agent *agent = config_agent_of(parser);
    if (!json_is_string(value)) {
        return config_fail(parser, "must be a model name (got %s)", config_type_name(value));
    }
    const char *model = json_string_value(value);
    size_t length = json_string_length(value);
    if (length == 0 || length >= sizeof(agent->model) || !config_visible(model, length)) {
        char quoted[CONFIG_QUOTE_MAX];
        config_quote(quoted, sizeof(quoted), model);
        return config_fail(parser, "must be a model name of 1 to %d visible ASCII characters "
                                   "(got %s)",
                           CONFIG_NAME_MAX - 1, quoted);
    }
    memcpy(agent->model, model, length + 1);
    return 0;
}

static int config_parse_agent_system(struct config_parser *parser, json_t *value,
                                     const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_agent_system);
    RM_ASSERT(parser->depth == 3);
    struct config_agent *agent = config_agent_of(parser);
    return config_parse_text(parser, value, agent->system, sizeof(agent->system), true,
                             "a string");
}

static int config_parse_agent_tool(struct config_parser *parser, json_t *value,
                                   struct config_agent *agent)
{
    RM_ASSERT(agent->tool_count < CONFIG_AGENT_TOOLS_MAX);
    RM_ASSERT(parser->path[parser->depth - 1] == NULL);
    char *name = agent->tools[agent->tool_count];
    if (config_parse_reference(parser, value, "tool", name) != 0) {
        return -1;
    }
    for (uint32_t i = 0; i < agent->tool_count; i++) {
        if (strcmp(agent->tools[i], name) == 0) {
            char quoted[CONFIG_QUOTE_MAX];
            config_quote(quoted, sizeof(quoted), name);
            name[0] = '\0';
            return config_fail(parser, "duplicate tool (got %s)", quoted);
        }
    }
    return 0;
}

static int config_parse_agent_tools(struct config_parser *parser, json_t *value,
                                    const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_agent_tools);
    RM_ASSERT(parser->depth == 3);
    struct config_agent *agent = config_agent_of(parser);
    if (!json_is_array(value)) {
        return config_fail(parser, "must be an array of tool names (got %s)",
                           config_type_name(value));
    }
    if (json_array_size(value) > CONFIG_AGENT_TOOLS_MAX) {
        return config_fail(parser, "at most %d tools (got %zu)", CONFIG_AGENT_TOOLS_MAX,
                           json_array_size(value));
    }
    for (uint32_t i = 0; i < json_array_size(value); i++) {
        config_path_push_index(parser, i);
        int result = config_parse_agent_tool(parser, json_array_get(value, i), agent);
        config_path_pop(parser);
        if (result != 0) {
            return -1;
        }
        agent->tool_count = i + 1;
    }
    return 0;
}

/* Merged into every LLM request of the agent, so a key the engine writes would either be
 * overwritten or break the loop ("stream", "tools"); those are refused on their own line. */
static int config_parse_agent_params(struct config_parser *parser, json_t *value,
                                     const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_agent_params);
    RM_ASSERT(parser->depth == 3);
    struct config_agent *agent = config_agent_of(parser);
    if (!json_is_object(value)) {
        return config_fail(parser, "must be an object of model parameters like "
                                   "{\"temperature\": 0.2} (got %s)",
                           config_type_name(value));
    }
    const char *key;
    json_t *member;
    json_object_foreach(value, key, member) {
        for (size_t i = 0; i < RM_ARRAY_LENGTH(config_params_reserved); i++) {
            if (strcmp(key, config_params_reserved[i]) == 0) {
                return config_fail_key(parser, key, "is set by the engine; params cannot "
                                                    "override model, messages, tools or "
                                                    "stream");
            }
        }
    }
    size_t length = config_json_compact(value, agent->params, sizeof(agent->params));
    if (length == 0 || length >= sizeof(agent->params)) {
        return config_fail(parser, "must be at most %d bytes in compact JSON (got %zu bytes)",
                           CONFIG_PARAMS_JSON_MAX - 1, length);
    }
    return 0;
}

/* ---- agents ---- */

#define CONFIG_AGENT(field, parse, minimum, maximum)                                          \
    {#field, parse, offsetof(struct config_agent, field), minimum, maximum}

static int config_parse_agent(struct config_parser *parser, json_t *value, const char *name,
                              size_t name_length, uint32_t index)
{
    static const struct config_field fields[] = {
        CONFIG_AGENT(endpoint, config_parse_agent_endpoint, 0, 0),
        CONFIG_AGENT(model, config_parse_agent_model, 0, 0),
        CONFIG_AGENT(system, config_parse_agent_system, 0, 0),
        CONFIG_AGENT(tools, config_parse_agent_tools, 0, 0),
        CONFIG_AGENT(max_steps, config_parse_u32, 1, CONFIG_STEPS_MAX),
        CONFIG_AGENT(deadline_ms, config_parse_u32, 1, CONFIG_DAY_MS),
        CONFIG_AGENT(max_concurrent, config_parse_u32, 1, CONFIG_CONCURRENT_MAX),
        CONFIG_AGENT(max_queue, config_parse_u32, 0, CONFIG_AGENT_QUEUE_MAX),
        CONFIG_AGENT(max_depth, config_parse_u32, 0, CONFIG_DEPTH_MAX),
        CONFIG_AGENT(history_messages, config_parse_u32, 0, 100000),
        CONFIG_AGENT(params, config_parse_agent_params, 0, 0),
    };
    RM_ASSERT(index < CONFIG_AGENTS_MAX);
    RM_ASSERT(parser->depth == 2);
    struct config_agent *agent = &parser->config->agents[index];
    config_agent_defaults(agent, name, name_length);
    if (config_parse_object_at(parser, value, fields, RM_ARRAY_LENGTH(fields), agent,
                               sizeof(*agent)) != 0) {
        return -1;
    }
    if (agent->endpoint[0] == '\0') {
        return config_fail(parser, "missing \"endpoint\" (the endpoint the agent's LLM calls "
                                   "go to)");
    }
    if (agent->model[0] == '\0') {
        return config_fail(parser, "missing \"model\" (the model the agent asks the endpoint "
                                   "for)");
    }
    return 0;
}

int config_parse_agents(struct config_parser *parser, json_t *value,
                        const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_agents);
    RM_ASSERT(parser->depth == 1);
    return config_parse_named(parser, value, "agent", CONFIG_AGENTS_MAX, config_parse_agent,
                              &parser->config->agent_count);
}

/* ---- references between sections ---- */

/* Whether one of count items, stride bytes apart, each starting with its name, is named so. */
static bool config_named(const void *items, size_t stride, uint32_t count, const char *name)
{
    RM_ASSERT(items != NULL && name != NULL);
    RM_ASSERT(stride >= CONFIG_NAME_MAX);
    for (uint32_t i = 0; i < count; i++) {
        const char *candidate = (const char *)items + (size_t)i * stride;
        if (strcmp(candidate, name) == 0) {
            return true;
        }
    }
    return false;
}

/* Reports "no <kind> is named <name>" at section.item.key, or section.item.key[index] when
 * index is not UINT32_MAX. */
static int config_fail_reference(struct config_parser *parser, const char *section,
                                 const char *item, const char *key, uint32_t index,
                                 const char *kind, const char *name)
{
    RM_ASSERT(parser->depth == 0);
    RM_ASSERT(section != NULL && item != NULL && key != NULL);
    config_path_push(parser, section);
    config_path_push(parser, item);
    config_path_push(parser, key);
    if (index != UINT32_MAX) {
        config_path_push_index(parser, index);
    }
    char quoted[CONFIG_QUOTE_MAX];
    config_quote(quoted, sizeof(quoted), name);
    config_fail(parser, "no %s is named %s", kind, quoted);
    while (parser->depth > 0) {
        config_path_pop(parser);
    }
    return -1;
}

static int config_check_agent_references(struct config_parser *parser,
                                         const struct config_agent *agent)
{
    const struct config *config = parser->config;
    RM_ASSERT(agent->tool_count <= CONFIG_AGENT_TOOLS_MAX);
    RM_ASSERT(config->tool_count <= CONFIG_TOOLS_MAX);
    if (!config_named(config->endpoints, sizeof(config->endpoints[0]), config->endpoint_count,
                      agent->endpoint)) {
        return config_fail_reference(parser, "agents", agent->name, "endpoint", UINT32_MAX,
                                     "endpoint", agent->endpoint);
    }
    for (uint32_t i = 0; i < agent->tool_count; i++) {
        if (!config_named(config->tools, sizeof(config->tools[0]), config->tool_count,
                          agent->tools[i])) {
            return config_fail_reference(parser, "agents", agent->name, "tools", i, "tool",
                                         agent->tools[i]);
        }
    }
    return 0;
}

/* Agents may name each other through agent tools, cycles included: the runtime bounds the
 * nesting with max_depth, so only the names are checked here. */
int config_check_references(struct config_parser *parser)
{
    const struct config *config = parser->config;
    RM_ASSERT(parser->depth == 0);
    RM_ASSERT(config->agent_count <= CONFIG_AGENTS_MAX);
    for (uint32_t i = 0; i < config->agent_count; i++) {
        if (config_check_agent_references(parser, &config->agents[i]) != 0) {
            return -1;
        }
    }
    for (uint32_t i = 0; i < config->tool_count; i++) {
        const struct config_tool *tool = &config->tools[i];
        if (tool->kind == CONFIG_TOOL_AGENT &&
            !config_named(config->agents, sizeof(config->agents[0]), config->agent_count,
                          tool->agent)) {
            return config_fail_reference(parser, "tools", tool->name, "agent", UINT32_MAX,
                                         "agent", tool->agent);
        }
    }
    return 0;
}
