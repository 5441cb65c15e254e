#include "core/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/rm_assert.h"

/* A config is a few kilobytes; the bound keeps a wrong path (a log file, a device) from being
 * read whole into memory. */
#define CONFIG_FILE_BYTES_MAX (1024 * 1024)
/* The schema's deepest key is durability.namespaces.<name>; one spare level. */
#define CONFIG_KEY_DEPTH_MAX 4
/* Keys and values echoed in errors are shortened so that one message stays readable. */
#define CONFIG_ECHO_MAX 64
#define CONFIG_PATH_TEXT_MAX (CONFIG_KEY_DEPTH_MAX * (CONFIG_ECHO_MAX + 4))
#define CONFIG_ENV_NAME_MAX 128
#define CONFIG_MIB (1024ull * 1024)
#define CONFIG_GIB (1024ull * CONFIG_MIB)
#define CONFIG_TIB (1024ull * CONFIG_GIB)

_Static_assert(CONFIG_ERROR_MAX >= 128, "errors need room for source, line and key path");
_Static_assert(CONFIG_NAME_MAX == 64, "namespace names are validated as 1..63 bytes");

struct config_parser {
    struct config *config;
    const char *source;
    const char *text;
    size_t length;
    char *err;
    size_t err_length;
    uint32_t depth;
    const char *path[CONFIG_KEY_DEPTH_MAX];
};

struct config_key;
typedef int (*config_key_parse)(struct config_parser *parser, json_t *value,
                                const struct config_key *key);

/* One known key of an object. Integer keys share one parser and use offset (into struct
 * config) and the range; the other keys have their own parser and ignore those fields. */
struct config_key {
    const char *name;
    config_key_parse parse;
    size_t offset;
    uint64_t minimum;
    uint64_t maximum;
};

static pthread_once_t config_json_once = PTHREAD_ONCE_INIT;

static void *config_json_malloc(size_t size) { return rm_malloc(size); }

static void config_json_free(void *pointer) { rm_free(pointer); }

static void config_json_install(void)
{
    json_set_alloc_funcs(config_json_malloc, config_json_free);
}

void config_json_init(void)
{
    RM_ASSERT(pthread_once(&config_json_once, config_json_install) == 0);
}

void config_defaults(struct config *config)
{
    RM_ASSERT(config != NULL);
    memset(config, 0, sizeof(*config));
    snprintf(config->source, sizeof(config->source), "%s", "<default>");
    snprintf(config->listen_host, sizeof(config->listen_host), "%s", "127.0.0.1");
    config->listen_port = 8080;
    config->threads = 0;
    snprintf(config->data_dir, sizeof(config->data_dir), "%s", "./ringmaster-data");
    config->limits = (struct config_limits){
        .max_connections = 10000,
        .max_uri_bytes = 8192,
        .max_header_bytes = 16384,
        .max_headers = 64,
        .max_body_bytes = CONFIG_MIB,
        .header_timeout_ms = 10000,
        .body_timeout_ms = 30000,
        .idle_timeout_ms = 60000,
        .drain_timeout_ms = 10000,
        .max_value_bytes = CONFIG_MIB,
    };
    config->durability.default_mode = CONFIG_DURABILITY_SYNC;
    config->durability.flush_interval_ms = 5;
    config->durability.namespace_count = 0;
    config->store.segment_bytes = 64 * CONFIG_MIB;
    config->store.cache_bytes = 256 * CONFIG_MIB;
    config->store.compact_dead_percent = 50;
    config->store.require_precondition = true;
    config->log.level = CONFIG_LOG_INFO;
    config->admin.token_set = false;
    RM_ASSERT(config->limits.max_uri_bytes <= config->limits.max_header_bytes);
}

/* ---- locating a key path's line in the source text ---- */

static bool config_locate_hex(const char *text, size_t length, size_t at, uint32_t *value)
{
    RM_ASSERT(text != NULL);
    RM_ASSERT(value != NULL);
    *value = 0;
    if (length < 4 || at > length - 4) {
        return false;
    }
    for (size_t i = at; i < at + 4; i++) {
        char c = text[i];
        uint32_t digit = c >= '0' && c <= '9'   ? (uint32_t)(c - '0')
                         : c >= 'a' && c <= 'f' ? (uint32_t)(c - 'a' + 10)
                         : c >= 'A' && c <= 'F' ? (uint32_t)(c - 'A' + 10)
                                                : 16;
        if (digit == 16) {
            return false;
        }
        *value = *value * 16 + digit;
    }
    return true;
}

/* Decodes the escape that starts at text[*at] (the backslash) into UTF-8, the form in which
 * jansson hands out keys; leaves *at on the escape's last byte. Returns the byte count. */
static size_t config_locate_escape(const char *text, size_t length, size_t *at, char out[4])
{
    RM_ASSERT(*at < length);
    RM_ASSERT(text[*at] == '\\');
    if (*at + 1 >= length) {
        return 0;
    }
    *at += 1;
    static const char plain_in[] = "\"\\/bfnrt";
    static const char plain_out[] = "\"\\/\b\f\n\r\t";
    const char *plain = strchr(plain_in, text[*at]);
    if (text[*at] != 'u') {
        out[0] = plain != NULL && *plain != '\0' ? plain_out[plain - plain_in] : text[*at];
        return 1;
    }
    uint32_t code = 0;
    uint32_t low = 0;
    if (!config_locate_hex(text, length, *at + 1, &code)) {
        return 0;
    }
    *at += 4;
    if (code >= 0xd800 && code < 0xdc00 && *at + 2 < length && text[*at + 1] == '\\' &&
        text[*at + 2] == 'u' && config_locate_hex(text, length, *at + 3, &low) &&
        low >= 0xdc00 && low < 0xe000) {
        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
        *at += 6;
    }
    if (code < 0x80) {
        out[0] = (char)code;
        return 1;
    }
    if (code < 0x800) {
        out[0] = (char)(0xc0 | (code >> 6));
        out[1] = (char)(0x80 | (code & 0x3f));
        return 2;
    }
    if (code < 0x10000) {
        out[0] = (char)(0xe0 | (code >> 12));
        out[1] = (char)(0x80 | ((code >> 6) & 0x3f));
        out[2] = (char)(0x80 | (code & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (code >> 18));
    out[1] = (char)(0x80 | ((code >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((code >> 6) & 0x3f));
    out[3] = (char)(0x80 | (code & 0x3f));
    return 4;
}

/* Skips the string whose opening quote is text[*at], leaving *at on its closing quote.
 * Returns whether its decoded bytes equal key (false when key is NULL). */
static bool config_locate_string(const char *text, size_t length, size_t *at, const char *key)
{
    RM_ASSERT(*at < length);
    RM_ASSERT(text[*at] == '"');
    size_t key_length = key != NULL ? strlen(key) : 0;
    size_t matched = 0;
    bool equal = key != NULL;
    for (*at += 1; *at < length && text[*at] != '"'; *at += 1) {
        char decoded[4] = {text[*at], 0, 0, 0};
        size_t decoded_length = 1;
        if (text[*at] == '\\') {
            decoded_length = config_locate_escape(text, length, at, decoded);
        }
        if (equal && (decoded_length > key_length - matched ||
                      memcmp(key + matched, decoded, decoded_length) != 0)) {
            equal = false;
        }
        matched += equal ? decoded_length : 0;
    }
    return equal && matched == key_length;
}

/* Returns the line of the key path (object keys only) in the text, or the line of the deepest
 * prefix of it that was found. One pass, no recursion, bounded by the text's length: it
 * follows strings and nesting depth, and looks for path[matched] only among the keys of the
 * object it entered through path[matched - 1]. The text has already been accepted by jansson,
 * but every read is bounds-checked anyway. */
static size_t config_locate(const char *text, size_t length, const char *const *path,
                            uint32_t depth)
{
    RM_ASSERT(text != NULL || length == 0);
    RM_ASSERT(depth <= CONFIG_KEY_DEPTH_MAX);
    size_t line = 1;
    size_t found_line = 1;
    uint32_t matched = 0;
    uint32_t nesting = 0;
    bool awaiting_object = true;
    bool expect_key = false;
    for (size_t at = 0; at < length; at++) {
        char c = text[at];
        if (c == '\n') {
            line++;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r' || c == ':') {
            continue;
        }
        if (depth == 0) {
            return line;
        }
        if (awaiting_object && c != '{') {
            return found_line;
        }
        if (c == '"') {
            bool is_key = expect_key && nesting == matched + 1;
            size_t key_line = line;
            bool equal = config_locate_string(text, length, &at, is_key ? path[matched] : NULL);
            expect_key = is_key ? false : expect_key;
            if (equal) {
                found_line = key_line;
                matched++;
                awaiting_object = true;
            }
            if (equal && matched == depth) {
                return key_line;
            }
        } else if (c == '{' || c == '[') {
            nesting++;
            expect_key = awaiting_object;
            awaiting_object = false;
        } else if (c == '}' || c == ']') {
            if (nesting == matched + 1) {
                return found_line;
            }
            nesting--;
        } else if (c == ',' && nesting == matched + 1) {
            expect_key = true;
        }
    }
    return found_line;
}

/* ---- errors ---- */

/* Copies at most CONFIG_ECHO_MAX bytes of text, control characters shown as '?', so that a
 * hostile key or value cannot break the error message into several lines. The empty string
 * is shown as "" so that an empty key stays visible in a key path. */
static void config_echo(char *out, size_t out_length, const char *text)
{
    RM_ASSERT(out_length > CONFIG_ECHO_MAX + 3);
    RM_ASSERT(text != NULL);
    if (text[0] == '\0') {
        memcpy(out, "\"\"", 3);
        return;
    }
    size_t length = 0;
    for (; text[length] != '\0' && length < CONFIG_ECHO_MAX; length++) {
        unsigned char c = (unsigned char)text[length];
        out[length] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (text[length] != '\0') {
        memcpy(out + length, "...", 3);
        length += 3;
    }
    out[length] = '\0';
}

static void config_path_text(const struct config_parser *parser, char *out, size_t out_length)
{
    RM_ASSERT(out_length >= CONFIG_PATH_TEXT_MAX);
    RM_ASSERT(parser->depth <= CONFIG_KEY_DEPTH_MAX);
    size_t used = 0;
    out[0] = '\0';
    if (parser->depth == 0) {
        snprintf(out, out_length, "%s", "(root)");
        return;
    }
    for (uint32_t i = 0; i < parser->depth; i++) {
        char echo[CONFIG_ECHO_MAX + 4];
        config_echo(echo, sizeof(echo), parser->path[i]);
        int written = snprintf(out + used, out_length - used, "%s%s", i > 0 ? "." : "", echo);
        RM_ASSERT(written >= 0 && (size_t)written < out_length - used);
        used += (size_t)written;
    }
}

/* Fills the error as "<source>:<line>: <key path>: <message>" and returns -1. */
__attribute__((format(printf, 2, 3))) static int config_fail(struct config_parser *parser,
                                                            const char *format, ...)
{
    RM_ASSERT(parser->err != NULL);
    RM_ASSERT(parser->err_length > 0);
    char path[CONFIG_PATH_TEXT_MAX];
    char message[CONFIG_ERROR_MAX];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message, sizeof(message), format, arguments);
    va_end(arguments);
    config_path_text(parser, path, sizeof(path));
    size_t line = config_locate(parser->text, parser->length, parser->path, parser->depth);
    snprintf(parser->err, parser->err_length, "%s:%zu: %s: %s", parser->source, line, path,
             message);
    return -1;
}

static const char *config_type_name(const json_t *value)
{
    RM_ASSERT(value != NULL);
    switch (json_typeof(value)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    RM_ASSERT(!"jansson returned an unknown type");
    return "";
}

static void config_path_push(struct config_parser *parser, const char *key)
{
    RM_ASSERT(key != NULL);
    RM_ASSERT(parser->depth < CONFIG_KEY_DEPTH_MAX);
    parser->path[parser->depth++] = key;
}

static void config_path_pop(struct config_parser *parser)
{
    RM_ASSERT(parser->depth > 0);
    parser->depth--;
    parser->path[parser->depth] = NULL;
}

/* ---- generic values ---- */

static int config_fail_unknown(struct config_parser *parser, const struct config_key *keys,
                               size_t key_count)
{
    RM_ASSERT(keys != NULL);
    RM_ASSERT(key_count > 0);
    char known[CONFIG_ERROR_MAX / 2];
    size_t used = 0;
    for (size_t i = 0; i < key_count; i++) {
        int written = snprintf(known + used, sizeof(known) - used, "%s%s", i > 0 ? ", " : "",
                               keys[i].name);
        RM_ASSERT(written > 0 && (size_t)written < sizeof(known) - used);
        used += (size_t)written;
    }
    return config_fail(parser, "unknown key; known keys: %s", known);
}

static int config_parse_object(struct config_parser *parser, json_t *object,
                               const struct config_key *keys, size_t key_count)
{
    RM_ASSERT(keys != NULL);
    RM_ASSERT(key_count > 0);
    if (!json_is_object(object)) {
        return config_fail(parser, "must be an object (got %s)", config_type_name(object));
    }
    const char *name;
    json_t *value;
    json_object_foreach(object, name, value) {
        const struct config_key *key = NULL;
        for (size_t i = 0; i < key_count && key == NULL; i++) {
            key = strcmp(keys[i].name, name) == 0 ? &keys[i] : NULL;
        }
        config_path_push(parser, name);
        int result = 0;
        if (key != NULL) {
            result = key->parse(parser, value, key);
        } else {
            result = config_fail_unknown(parser, keys, key_count);
        }
        config_path_pop(parser);
        if (result != 0) {
            return -1;
        }
    }
    return 0;
}

static int config_parse_integer(struct config_parser *parser, json_t *value,
                                const struct config_key *key, uint64_t *number)
{
    RM_ASSERT(key->minimum <= key->maximum);
    RM_ASSERT(key->maximum <= INT64_MAX);
    if (!json_is_integer(value)) {
        return config_fail(parser, "must be an integer between %" PRIu64 " and %" PRIu64
                                   " (got %s)",
                           key->minimum, key->maximum, config_type_name(value));
    }
    json_int_t given = json_integer_value(value);
    if (given < 0 || (uint64_t)given < key->minimum || (uint64_t)given > key->maximum) {
        return config_fail(parser, "must be an integer between %" PRIu64 " and %" PRIu64
                                   " (got %lld)",
                           key->minimum, key->maximum, (long long)given);
    }
    *number = (uint64_t)given;
    return 0;
}

static int config_parse_u32(struct config_parser *parser, json_t *value,
                            const struct config_key *key)
{
    RM_ASSERT(key->maximum <= UINT32_MAX);
    RM_ASSERT(key->offset + sizeof(uint32_t) <= sizeof(struct config));
    uint64_t number = 0;
    if (config_parse_integer(parser, value, key, &number) != 0) {
        return -1;
    }
    uint32_t narrow = (uint32_t)number;
    memcpy((char *)parser->config + key->offset, &narrow, sizeof(narrow));
    return 0;
}

static int config_parse_u64(struct config_parser *parser, json_t *value,
                            const struct config_key *key)
{
    RM_ASSERT(key->offset % sizeof(uint64_t) == 0);
    RM_ASSERT(key->offset + sizeof(uint64_t) <= sizeof(struct config));
    uint64_t number = 0;
    if (config_parse_integer(parser, value, key, &number) != 0) {
        return -1;
    }
    memcpy((char *)parser->config + key->offset, &number, sizeof(number));
    return 0;
}

/* Copies a string value into field (capacity bytes, NUL included); the empty string is
 * accepted only when allow_empty. wanted names the kind of string in errors ("a path"). */
static int config_parse_text(struct config_parser *parser, json_t *value, char *field,
                             size_t capacity, bool allow_empty, const char *wanted)
{
    RM_ASSERT(field != NULL && wanted != NULL);
    RM_ASSERT(capacity > 1);
    if (!json_is_string(value)) {
        return config_fail(parser, "must be %s (got %s)", wanted, config_type_name(value));
    }
    size_t length = json_string_length(value);
    if ((length == 0 && !allow_empty) || length >= capacity) {
        return config_fail(parser, "must be %s shorter than %zu bytes (got %zu bytes)", wanted,
                           capacity, length);
    }
    memcpy(field, json_string_value(value), length + 1);
    return 0;
}

/* Accepts one of names[]; *index is the position of the name given. */
static int config_parse_choice(struct config_parser *parser, json_t *value,
                               const char *const *names, size_t name_count, size_t *index)
{
    RM_ASSERT(name_count >= 2 && name_count <= 4);
    RM_ASSERT(index != NULL);
    char wanted[96];
    size_t used = 0;
    for (size_t i = 0; i < name_count; i++) {
        int written = snprintf(wanted + used, sizeof(wanted) - used, "%s\"%s\"",
                               i > 0 ? ", " : "", names[i]);
        RM_ASSERT(written > 0 && (size_t)written < sizeof(wanted) - used);
        used += (size_t)written;
    }
    if (!json_is_string(value)) {
        return config_fail(parser, "must be one of %s (got %s)", wanted,
                           config_type_name(value));
    }
    for (size_t i = 0; i < name_count; i++) {
        if (strcmp(json_string_value(value), names[i]) == 0) {
            *index = i;
            return 0;
        }
    }
    char echo[CONFIG_ECHO_MAX + 4];
    config_echo(echo, sizeof(echo), json_string_value(value));
    return config_fail(parser, "must be one of %s (got \"%s\")", wanted, echo);
}

static int config_parse_durability_mode(struct config_parser *parser, json_t *value,
                                        enum config_durability *mode)
{
    static const char *const names[] = {"sync", "async"};
    _Static_assert(CONFIG_DURABILITY_SYNC == 0 && CONFIG_DURABILITY_ASYNC == 1, "names[]");
    size_t index = 0;
    if (config_parse_choice(parser, value, names, RM_ARRAY_LENGTH(names), &index) != 0) {
        return -1;
    }
    RM_ASSERT(index < RM_ARRAY_LENGTH(names));
    *mode = index == 0 ? CONFIG_DURABILITY_SYNC : CONFIG_DURABILITY_ASYNC;
    return 0;
}

/* ---- listen ---- */

/* Accepts an IPv4 literal, "[IPv6 literal]" or "localhost"; stores IPv6 without brackets. */
static bool config_listen_host(struct config *config, const char *host, size_t length)
{
    RM_ASSERT(host != NULL);
    RM_ASSERT(sizeof(config->listen_host) == CONFIG_HOST_MAX);
    char bare[CONFIG_HOST_MAX];
    bool bracketed = length >= 2 && host[0] == '[' && host[length - 1] == ']';
    size_t bare_length = bracketed ? length - 2 : length;
    if (bare_length == 0 || bare_length >= sizeof(bare)) {
        return false;
    }
    memcpy(bare, host + (bracketed ? 1 : 0), bare_length);
    bare[bare_length] = '\0';
    unsigned char address[sizeof(struct in6_addr)];
    bool valid = bracketed ? inet_pton(AF_INET6, bare, address) == 1
                           : strcmp(bare, "localhost") == 0 ||
                                 inet_pton(AF_INET, bare, address) == 1;
    if (valid) {
        memcpy(config->listen_host, bare, bare_length + 1);
    }
    return valid;
}

/* Decimal digits only, 0..65535: port 0 asks the kernel for an ephemeral port. */
static bool config_listen_port(const char *text, size_t length, uint16_t *port)
{
    RM_ASSERT(text != NULL);
    RM_ASSERT(port != NULL);
    if (length == 0 || length > 5) {
        return false;
    }
    uint32_t value = 0;
    for (size_t i = 0; i < length; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return false;
        }
        value = value * 10 + (uint32_t)(text[i] - '0');
    }
    if (value > UINT16_MAX) {
        return false;
    }
    *port = (uint16_t)value;
    return true;
}

static int config_parse_listen(struct config_parser *parser, json_t *value,
                               const struct config_key *key)
{
    RM_ASSERT(key->parse == config_parse_listen);
    RM_ASSERT(parser->depth == 1);
    if (!json_is_string(value)) {
        return config_fail(parser, "must be a string \"host:port\" (got %s)",
                           config_type_name(value));
    }
    const char *text = json_string_value(value);
    size_t length = json_string_length(value);
    const char *colon = memrchr(text, ':', length);
    char echo[CONFIG_ECHO_MAX + 4];
    config_echo(echo, sizeof(echo), text);
    if (colon == NULL) {
        return config_fail(parser, "must be \"host:port\" (got \"%s\")", echo);
    }
    size_t host_length = (size_t)(colon - text);
    if (!config_listen_host(parser->config, text, host_length)) {
        return config_fail(parser,
                           "host must be an IPv4 address, [IPv6 address] or localhost "
                           "(got \"%s\")",
                           echo);
    }
    if (!config_listen_port(colon + 1, length - host_length - 1, &parser->config->listen_port)) {
        return config_fail(parser, "port must be a number from 0 to 65535 (got \"%s\")", echo);
    }
    return 0;
}

/* ---- top-level scalars ---- */

static int config_parse_data_dir(struct config_parser *parser, json_t *value,
                                 const struct config_key *key)
{
    RM_ASSERT(key->parse == config_parse_data_dir);
    RM_ASSERT(parser->depth == 1);
    struct config *config = parser->config;
    return config_parse_text(parser, value, config->data_dir, sizeof(config->data_dir), false,
                             "a non-empty path");
}

static int config_parse_log_level(struct config_parser *parser, json_t *value,
                                  const struct config_key *key)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    _Static_assert(CONFIG_LOG_DEBUG == 0 && CONFIG_LOG_ERROR == 3, "names[] follows the enum");
    RM_ASSERT(key->parse == config_parse_log_level);
    size_t index = 0;
    if (config_parse_choice(parser, value, names, RM_ARRAY_LENGTH(names), &index) != 0) {
        return -1;
    }
    RM_ASSERT(index < RM_ARRAY_LENGTH(names));
    parser->config->log.level = (enum config_log_level)index;
    return 0;
}

static int config_parse_log_file(struct config_parser *parser, json_t *value,
                                 const struct config_key *key)
{
    RM_ASSERT(key->parse == config_parse_log_file);
    RM_ASSERT(parser->depth == 2);
    struct config *config = parser->config;
    return config_parse_text(parser, value, config->log.file, sizeof(config->log.file), true,
                             "a path (empty for stderr)");
}

static int config_parse_log(struct config_parser *parser, json_t *value,
                            const struct config_key *key)
{
    static const struct config_key keys[] = {
        {"level", config_parse_log_level, 0, 0, 0},
        {"file", config_parse_log_file, 0, 0, 0},
    };
    RM_ASSERT(key->parse == config_parse_log);
    RM_ASSERT(parser->depth == 1);
    return config_parse_object(parser, value, keys, RM_ARRAY_LENGTH(keys));
}

/* ---- limits ---- */

#define CONFIG_LIMIT(field, minimum, maximum, parse)                                          \
    {#field, parse, offsetof(struct config, limits.field), minimum, maximum}

static int config_parse_limits(struct config_parser *parser, json_t *value,
                               const struct config_key *key)
{
    static const struct config_key keys[] = {
        CONFIG_LIMIT(max_connections, 1, 1000000, config_parse_u32),
        CONFIG_LIMIT(max_uri_bytes, 64, 1048576, config_parse_u32),
        CONFIG_LIMIT(max_header_bytes, 1024, 1048576, config_parse_u32),
        CONFIG_LIMIT(max_headers, 1, 128, config_parse_u32),
        CONFIG_LIMIT(max_body_bytes, 0, CONFIG_GIB, config_parse_u64),
        CONFIG_LIMIT(header_timeout_ms, 1, 3600000, config_parse_u32),
        CONFIG_LIMIT(body_timeout_ms, 1, 3600000, config_parse_u32),
        CONFIG_LIMIT(idle_timeout_ms, 1, 3600000, config_parse_u32),
        CONFIG_LIMIT(drain_timeout_ms, 1, 3600000, config_parse_u32),
        CONFIG_LIMIT(max_value_bytes, 1, 64 * CONFIG_MIB, config_parse_u32),
    };
    RM_ASSERT(key->parse == config_parse_limits);
    RM_ASSERT(parser->depth == 1);
    if (config_parse_object(parser, value, keys, RM_ARRAY_LENGTH(keys)) != 0) {
        return -1;
    }
    const struct config_limits *limits = &parser->config->limits;
    if (limits->max_uri_bytes <= limits->max_header_bytes) {
        return 0;
    }
    /* The request line is part of the header block, so it cannot be allowed more room. The
     * error goes to whichever of the two keys the file sets. */
    int result;
    if (json_object_get(value, "max_uri_bytes") != NULL) {
        config_path_push(parser, "max_uri_bytes");
        result = config_fail(parser,
                             "must be an integer between 64 and limits.max_header_bytes (%" PRIu32
                             ") (got %" PRIu32 ")",
                             limits->max_header_bytes, limits->max_uri_bytes);
    } else {
        config_path_push(parser, "max_header_bytes");
        result = config_fail(parser,
                             "must be at least limits.max_uri_bytes (%" PRIu32
                             ", its default); set limits.max_uri_bytes as well",
                             limits->max_uri_bytes);
    }
    config_path_pop(parser);
    return result;
}

/* ---- durability ---- */

static bool config_namespace_name_valid(const char *name, size_t length)
{
    RM_ASSERT(name != NULL);
    RM_ASSERT(CONFIG_NAME_MAX > 1);
    if (length == 0 || length >= CONFIG_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < length; i++) {
        char c = name[i];
        bool valid = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
        if (!valid) {
            return false;
        }
    }
    return true;
}

static int config_parse_namespaces(struct config_parser *parser, json_t *value,
                                   const struct config_key *key)
{
    RM_ASSERT(key->parse == config_parse_namespaces);
    RM_ASSERT(parser->depth == 2);
    struct config_durability_section *durability = &parser->config->durability;
    if (!json_is_object(value)) {
        return config_fail(parser, "must be an object of \"namespace\": \"sync\" or \"async\" "
                                   "(got %s)",
                           config_type_name(value));
    }
    if (json_object_size(value) > CONFIG_NAMESPACES_MAX) {
        return config_fail(parser, "at most %d namespaces (got %zu)", CONFIG_NAMESPACES_MAX,
                           json_object_size(value));
    }
    durability->namespace_count = 0;
    const char *name;
    json_t *mode;
    json_object_foreach(value, name, mode) {
        RM_ASSERT(durability->namespace_count < CONFIG_NAMESPACES_MAX);
        struct config_namespace_durability *entry =
            &durability->namespaces[durability->namespace_count];
        config_path_push(parser, name);
        size_t length = strlen(name);
        int result = 0;
        if (!config_namespace_name_valid(name, length)) {
            result = config_fail(parser, "namespace names are 1 to %d characters of A-Z a-z "
                                         "0-9 _ . -",
                                 CONFIG_NAME_MAX - 1);
        } else {
            result = config_parse_durability_mode(parser, mode, &entry->mode);
        }
        config_path_pop(parser);
        if (result != 0) {
            return -1;
        }
        memcpy(entry->name, name, length + 1);
        durability->namespace_count++;
    }
    return 0;
}

static int config_parse_durability_default(struct config_parser *parser, json_t *value,
                                           const struct config_key *key)
{
    RM_ASSERT(key->parse == config_parse_durability_default);
    RM_ASSERT(parser->depth == 2);
    return config_parse_durability_mode(parser, value, &parser->config->durability.default_mode);
}

static int config_parse_durability(struct config_parser *parser, json_t *value,
                                   const struct config_key *key)
{
    static const struct config_key keys[] = {
        {"default", config_parse_durability_default, 0, 0, 0},
        {"flush_interval_ms", config_parse_u32,
         offsetof(struct config, durability.flush_interval_ms), 1, 10000},
        {"namespaces", config_parse_namespaces, 0, 0, 0},
    };
    RM_ASSERT(key->parse == config_parse_durability);
    RM_ASSERT(parser->depth == 1);
    return config_parse_object(parser, value, keys, RM_ARRAY_LENGTH(keys));
}

/* ---- store ---- */

static int config_parse_require_precondition(struct config_parser *parser, json_t *value,
                                             const struct config_key *key)
{
    RM_ASSERT(key->parse == config_parse_require_precondition);
    RM_ASSERT(parser->depth == 2);
    if (!json_is_boolean(value)) {
        return config_fail(parser, "must be true or false (got %s)", config_type_name(value));
    }
    parser->config->store.require_precondition = json_is_true(value);
    return 0;
}

static int config_parse_store(struct config_parser *parser, json_t *value,
                              const struct config_key *key)
{
    static const struct config_key keys[] = {
        {"segment_bytes", config_parse_u64, offsetof(struct config, store.segment_bytes),
         CONFIG_MIB, 4 * CONFIG_GIB},
        {"cache_bytes", config_parse_u64, offsetof(struct config, store.cache_bytes), CONFIG_MIB,
         CONFIG_TIB},
        {"compact_dead_percent", config_parse_u32,
         offsetof(struct config, store.compact_dead_percent), 1, 99},
        {"require_precondition", config_parse_require_precondition, 0, 0, 0},
    };
    RM_ASSERT(key->parse == config_parse_store);
    RM_ASSERT(parser->depth == 1);
    return config_parse_object(parser, value, keys, RM_ARRAY_LENGTH(keys));
}

/* ---- admin ---- */

/* Stores a secret; never echoes it. Returns NULL on success or what is wrong with it. */
static const char *config_store_secret(struct config *config, const char *secret,
                                       size_t length)
{
    RM_ASSERT(secret != NULL);
    RM_ASSERT(sizeof(config->admin.token) == CONFIG_SECRET_MAX);
    if (length == 0) {
        return "is empty";
    }
    if (length >= CONFIG_SECRET_MAX) {
        return "holds a token longer than the limit (255 bytes)";
    }
    if (memchr(secret, '\0', length) != NULL) {
        return "holds a NUL byte";
    }
    memcpy(config->admin.token, secret, length);
    config->admin.token[length] = '\0';
    config->admin.token_set = true;
    return NULL;
}

static int config_parse_token_env(struct config_parser *parser, json_t *value,
                                  const struct config_key *key)
{
    RM_ASSERT(key->parse == config_parse_token_env);
    RM_ASSERT(parser->depth == 2);
    char name[CONFIG_ENV_NAME_MAX];
    if (config_parse_text(parser, value, name, sizeof(name), false,
                          "the name of an environment variable") != 0) {
        return -1;
    }
    if (strchr(name, '=') != NULL) {
        return config_fail(parser, "must be the name of an environment variable");
    }
    const char *secret = getenv(name);
    if (secret == NULL) {
        return config_fail(parser, "environment variable %s is not set", name);
    }
    const char *problem = config_store_secret(parser->config, secret, strlen(secret));
    if (problem != NULL) {
        return config_fail(parser, "environment variable %s %s", name, problem);
    }
    return 0;
}

/* Reads at most CONFIG_SECRET_MAX bytes of a regular file into secret. Only regular files:
 * a FIFO or a terminal named by mistake would block start-up. Returns 0 or -errno, with
 * -EFBIG when the file is longer. */
static int config_read_secret(const char *path, char *secret, size_t *length)
{
    RM_ASSERT(path != NULL);
    RM_ASSERT(secret != NULL);
    *length = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        return -errno;
    }
    struct stat status;
    int result = fstat(fd, &status) != 0 ? -errno : S_ISREG(status.st_mode) ? 0 : -EINVAL;
    while (result == 0 && *length <= CONFIG_SECRET_MAX) {
        ssize_t got = read(fd, secret + *length, CONFIG_SECRET_MAX + 1 - *length);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            result = got < 0 ? -errno : 0;
            break;
        }
        *length += (size_t)got;
    }
    close(fd);
    return result == 0 && *length > CONFIG_SECRET_MAX ? -EFBIG : result;
}

static int config_parse_token_file(struct config_parser *parser, json_t *value,
                                   const struct config_key *key)
{
    RM_ASSERT(key->parse == config_parse_token_file);
    RM_ASSERT(parser->depth == 2);
    char path[CONFIG_PATH_MAX];
    if (config_parse_text(parser, value, path, sizeof(path), false, "a non-empty path") != 0) {
        return -1;
    }
    char secret[CONFIG_SECRET_MAX + 1];
    size_t length = 0;
    int result = config_read_secret(path, secret, &length);
    const char *problem = NULL;
    if (result == 0) {
        /* Files written by editors and `echo` end with one newline that is not the token. */
        length -= length > 0 && secret[length - 1] == '\n' ? 1 : 0;
        length -= length > 0 && secret[length - 1] == '\r' ? 1 : 0;
        problem = config_store_secret(parser->config, secret, length);
    }
    explicit_bzero(secret, sizeof(secret));
    char echo[CONFIG_ECHO_MAX + 4];
    config_echo(echo, sizeof(echo), path);
    if (result == -EINVAL) {
        return config_fail(parser, "%s: not a regular file", echo);
    }
    if (result == -EFBIG) {
        return config_fail(parser, "%s: holds a token longer than the limit (255 bytes)", echo);
    }
    if (result != 0) {
        return config_fail(parser, "%s: cannot read: %s", echo, strerror(-result));
    }
    return problem != NULL ? config_fail(parser, "%s: %s", echo, problem) : 0;
}

static int config_parse_admin(struct config_parser *parser, json_t *value,
                              const struct config_key *key)
{
    static const struct config_key keys[] = {
        {"token_env", config_parse_token_env, 0, 0, 0},
        {"token_file", config_parse_token_file, 0, 0, 0},
    };
    RM_ASSERT(key->parse == config_parse_admin);
    RM_ASSERT(parser->depth == 1);
    if (json_is_object(value) && json_object_get(value, "token") != NULL) {
        config_path_push(parser, "token");
        int result = config_fail(parser, "secrets are not allowed in the config file; set "
                                         "admin.token_env (an environment variable) or "
                                         "admin.token_file (a file) instead");
        config_path_pop(parser);
        return result;
    }
    if (config_parse_object(parser, value, keys, RM_ARRAY_LENGTH(keys)) != 0) {
        return -1;
    }
    size_t given = (json_object_get(value, "token_env") != NULL ? 1u : 0u) +
                   (json_object_get(value, "token_file") != NULL ? 1u : 0u);
    if (given != 1) {
        return config_fail(parser, "set exactly one of token_env and token_file (got %zu)",
                           given);
    }
    return 0;
}

/* ---- root ---- */

static int config_parse_root(struct config_parser *parser, json_t *root)
{
    static const struct config_key keys[] = {
        {"listen", config_parse_listen, 0, 0, 0},
        {"threads", config_parse_u32, offsetof(struct config, threads), 0, 64},
        {"data_dir", config_parse_data_dir, 0, 0, 0},
        {"limits", config_parse_limits, 0, 0, 0},
        {"durability", config_parse_durability, 0, 0, 0},
        {"store", config_parse_store, 0, 0, 0},
        {"log", config_parse_log, 0, 0, 0},
        {"admin", config_parse_admin, 0, 0, 0},
    };
    RM_ASSERT(root != NULL);
    RM_ASSERT(parser->depth == 0);
    if (!json_is_object(root)) {
        return config_fail(parser, "must be an object (got %s)", config_type_name(root));
    }
    return config_parse_object(parser, root, keys, RM_ARRAY_LENGTH(keys));
}

int config_parse(struct config *config, const char *source, const char *text, size_t length,
                 char *err, size_t err_length)
{
    RM_ASSERT(config != NULL && source != NULL);
    RM_ASSERT(text != NULL || length == 0);
    RM_ASSERT(err != NULL && err_length > 0);
    config_json_init();
    config_defaults(config);
    snprintf(config->source, sizeof(config->source), "%s", source);
    err[0] = '\0';
    json_error_t error;
    json_t *root = json_loadb(length > 0 ? text : "", length, JSON_REJECT_DUPLICATES, &error);
    if (root == NULL) {
        snprintf(err, err_length, "%s:%d:%d: %s", source, error.line, error.column, error.text);
        return -1;
    }
    struct config_parser parser = {
        .config = config,
        .source = source,
        .text = text,
        .length = length,
        .err = err,
        .err_length = err_length,
        .depth = 0,
    };
    int result = config_parse_root(&parser, root);
    json_decref(root);
    RM_ASSERT(parser.depth == 0);
    if (result != 0) {
        /* A config that failed is not used, but its token must not outlive it either. */
        explicit_bzero(config->admin.token, sizeof(config->admin.token));
        config->admin.token_set = false;
    }
    return result;
}

int config_load(struct config *config, const char *path, char *err, size_t err_length)
{
    RM_ASSERT(config != NULL && path != NULL);
    RM_ASSERT(err != NULL && err_length > 0);
    config_defaults(config);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, err_length, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    /* One byte over the limit tells a file at the limit from a larger one. */
    char *text = rm_malloc(CONFIG_FILE_BYTES_MAX + 1);
    if (text == NULL) {
        close(fd);
        snprintf(err, err_length, "%s: cannot read: %s", path, strerror(ENOMEM));
        return -1;
    }
    size_t length = 0;
    int read_error = 0;
    while (length <= CONFIG_FILE_BYTES_MAX) {
        ssize_t got = read(fd, text + length, CONFIG_FILE_BYTES_MAX + 1 - length);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            read_error = got < 0 ? errno : 0;
            break;
        }
        length += (size_t)got;
    }
    close(fd);
    int result = -1;
    if (read_error != 0) {
        snprintf(err, err_length, "%s: cannot read: %s", path, strerror(read_error));
    } else if (length > CONFIG_FILE_BYTES_MAX) {
        snprintf(err, err_length, "%s: larger than the limit for a config file (%d bytes)", path,
                 CONFIG_FILE_BYTES_MAX);
    } else {
        result = config_parse(config, path, text, length, err, err_length);
    }
    rm_free(text);
    return result;
}

enum config_durability config_durability_of(const struct config *config, const char *ns,
                                            size_t ns_length)
{
    RM_ASSERT(config != NULL);
    RM_ASSERT(ns != NULL || ns_length == 0);
    RM_ASSERT(config->durability.namespace_count <= CONFIG_NAMESPACES_MAX);
    for (uint32_t i = 0; i < config->durability.namespace_count; i++) {
        const struct config_namespace_durability *entry = &config->durability.namespaces[i];
        if (strnlen(entry->name, CONFIG_NAME_MAX) == ns_length &&
            memcmp(entry->name, ns, ns_length) == 0) {
            return entry->mode;
        }
    }
    return config->durability.default_mode;
}
