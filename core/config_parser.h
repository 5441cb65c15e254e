#ifndef RM_CONFIG_PARSER_H
#define RM_CONFIG_PARSER_H

/* The configuration parser's machinery, shared by the files that parse its sections
 * (config.c: the engine's own sections; config_upstreams.c: tls, resilience, endpoints and
 * tools; config_agents.c: agents, and the references between sections). Internal: nothing
 * outside core/config*.c includes it.
 *
 * A section is a table of struct config_field, one per known key; config_parse_object walks
 * a JSON object against a table, keeps the key path for errors and rejects unknown keys.
 * Every error is "FILE:LINE: key.path: what is wrong (got X)" via config_fail. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

/* The schema's deepest key is endpoints.<name>.keys[<index>].<key>; one spare level. (An
 * agent's params are checked one level deep only: agents.<name>.params.<key>.) */
#define CONFIG_KEY_DEPTH_MAX 6
/* Keys and values echoed in errors are shortened so that one message stays readable. */
#define CONFIG_ECHO_MAX 64
#define CONFIG_QUOTE_MAX (CONFIG_ECHO_MAX + 6) /* config_quote's output, NUL included */
#define CONFIG_MIB (1024ull * 1024)
#define CONFIG_GIB (1024ull * CONFIG_MIB)
#define CONFIG_TIB (1024ull * CONFIG_GIB)
#define CONFIG_NAME_RULE "1 to 63 characters of A-Z a-z 0-9 _ . -"

struct config_parser {
    struct config *config;
    const char *source;
    const char *text;
    size_t length;
    char *err;
    size_t err_length;
    /* Where the fields of the object being parsed live: the config itself, or the endpoint,
     * key, tool or breaker in it, so that one table serves every instance of a section. */
    void *base;
    size_t base_size;
    uint32_t depth;
    const char *path[CONFIG_KEY_DEPTH_MAX]; /* an object key, or NULL for an array index */
    uint32_t index[CONFIG_KEY_DEPTH_MAX];   /* the array index where path[i] is NULL */
};

struct config_field;
typedef int (*config_field_parse)(struct config_parser *parser, json_t *value,
                                  const struct config_field *field);

/* One known key of an object. Integer fields share one parser each (u32, u64) and use offset
 * (into parser->base) and the range; other parsers use offset when they store into base and
 * ignore the range unless they say otherwise. */
struct config_field {
    const char *name;
    config_field_parse parse;
    size_t offset;
    uint64_t minimum;
    uint64_t maximum;
};

/* Where a secret read from an environment variable or a file is stored. */
struct config_secret {
    char *value;       /* CONFIG_SECRET_MAX bytes */
    bool *value_set;
    bool header_value; /* goes into an HTTP header: visible ASCII only */
};

/* ---- errors and key paths ---- */

/* Fills parser->err as "<source>:<line>: <key path>: <message>" and returns -1. */
__attribute__((format(printf, 2, 3))) int config_fail(struct config_parser *parser,
                                                     const char *format, ...);
/* The same, for the key `key` of the object at the current path. */
__attribute__((format(printf, 3, 4))) int config_fail_key(struct config_parser *parser,
                                                         const char *key, const char *format,
                                                         ...);
/* Copies at most CONFIG_ECHO_MAX bytes of text for an error, control characters as '?'. */
void config_echo(char *out, size_t out_length, const char *text);
/* The same in double quotes, for "(got \"value\")"; the empty string is shown as "". */
void config_quote(char *out, size_t out_length, const char *text);
const char *config_type_name(const json_t *value);
void config_path_push(struct config_parser *parser, const char *key);
void config_path_push_index(struct config_parser *parser, uint32_t index);
void config_path_pop(struct config_parser *parser);

/* ---- generic values ---- */

int config_parse_object(struct config_parser *parser, json_t *object,
                        const struct config_field *fields, size_t field_count);
/* config_parse_object with base set to `base` for the object's fields, restored after. */
int config_parse_object_at(struct config_parser *parser, json_t *object,
                           const struct config_field *fields, size_t field_count, void *base,
                           size_t base_size);
/* Where field's value lives in parser->base; size is the value's size. */
void *config_field_target(const struct config_parser *parser, const struct config_field *field,
                          size_t size);
int config_parse_u32(struct config_parser *parser, json_t *value,
                     const struct config_field *field);
int config_parse_u64(struct config_parser *parser, json_t *value,
                     const struct config_field *field);
/* A JSON true or false into a bool field. */
int config_parse_bool(struct config_parser *parser, json_t *value,
                      const struct config_field *field);
/* Copies a string value into out (capacity bytes, NUL included); the empty string is
 * accepted only when allow_empty. wanted names the kind of string in errors ("a path"). */
int config_parse_text(struct config_parser *parser, json_t *value, char *out, size_t capacity,
                      bool allow_empty, const char *wanted);
/* Accepts one of names[]; *index is the position of the name given. */
int config_parse_choice(struct config_parser *parser, json_t *value, const char *const *names,
                        size_t name_count, size_t *index);
/* Names of namespaces, endpoints, tools, agents and keys: 1..CONFIG_NAME_MAX-1 of
 * [A-Za-z0-9_.-] (CONFIG_NAME_RULE). */
bool config_name_valid(const char *name, size_t length);
/* Bytes 0x21..0x7e: what may go into a request line or a header unescaped. */
bool config_visible(const char *text, size_t length);

/* A name that refers to an item of another section, "endpoint", "tool" or "agent" (kind),
 * stored into out (CONFIG_NAME_MAX bytes). A string that is no valid name is refused now;
 * whether such an item exists is for config_check_references, once every section is parsed. */
int config_parse_reference(struct config_parser *parser, json_t *value, const char *kind,
                           char *out);
/* Encodes value as compact JSON into out (capacity bytes, NUL included). Returns its length:
 * 0 when jansson cannot encode it, at least capacity when it does not fit; in both cases out
 * holds the empty string. */
size_t config_json_compact(const json_t *value, char *out, size_t capacity);

/* Parses one item of a section of named items; index is its slot (the items parsed before). */
typedef int (*config_item_parse)(struct config_parser *parser, json_t *value, const char *name,
                                 size_t name_length, uint32_t index);
/* An object of named items ("endpoints", "tools", "agents") at depth 1: at most maximum, each
 * name valid; *count counts those parsed so far. kind names one item in errors ("tool"). */
int config_parse_named(struct config_parser *parser, json_t *value, const char *kind,
                       uint32_t maximum, config_item_parse parse, uint32_t *count);

/* ---- secrets ---- */

/* value names an environment variable; its value is stored in *secret. */
int config_secret_from_env(struct config_parser *parser, json_t *value,
                           const struct config_secret *secret);
/* value names a regular file; its content, less one trailing newline, is stored in *secret. */
int config_secret_from_file(struct config_parser *parser, json_t *value,
                            const struct config_secret *secret);

/* ---- sections parsed in config_upstreams.c ---- */

void config_upstreams_defaults(struct config *config);
int config_parse_tls(struct config_parser *parser, json_t *value,
                     const struct config_field *field);
int config_parse_resilience(struct config_parser *parser, json_t *value,
                            const struct config_field *field);
int config_parse_endpoints(struct config_parser *parser, json_t *value,
                           const struct config_field *field);
int config_parse_tools(struct config_parser *parser, json_t *value,
                       const struct config_field *field);
/* Wipes every API key secret, parsed or half-parsed, of a config that failed. */
void config_upstreams_wipe(struct config *config);

/* ---- sections parsed in config_agents.c ---- */

int config_parse_agents(struct config_parser *parser, json_t *value,
                        const struct config_field *field);
/* Resolves the names one section gives of another's items (an agent's endpoint and tools, an
 * agent tool's agent) once the whole root is parsed, since sections come in any order. Errors
 * name the referring key. parser->depth is 0. */
int config_check_references(struct config_parser *parser);

#endif
