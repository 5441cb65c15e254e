#include "core/config_parser.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rm_assert.h"

#define CONFIG_PATH_TEXT_MAX (CONFIG_KEY_DEPTH_MAX * (CONFIG_ECHO_MAX + 4))
#define CONFIG_ENV_NAME_MAX 128

_Static_assert(CONFIG_ERROR_MAX >= 128, "errors need room for source, line and key path");
_Static_assert(CONFIG_NAME_MAX == 64, "names are validated as 1..63 bytes (CONFIG_NAME_RULE)");
_Static_assert(CONFIG_SECRET_MAX == 256, "errors state the secret limit as 255 bytes");

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

/* The locator's state during its one pass over the text. */
struct config_locator {
    const struct config_parser *parser;
    size_t line;       /* of the byte being read */
    size_t found_line; /* of the deepest path element found so far */
    uint32_t matched;  /* path elements found */
    uint32_t nesting;  /* objects and arrays open at the byte being read */
    uint32_t element;  /* members seen so far in the container of path[matched] */
    bool awaiting;     /* the next value must be the container of path[matched] */
    bool member_next;  /* the next token in that container starts a member */
};

/* Records path[matched] as found on line; returns whether it was the last element. */
static bool config_locate_found(struct config_locator *locator, size_t line)
{
    RM_ASSERT(locator->matched < locator->parser->depth);
    RM_ASSERT(line >= locator->found_line);
    locator->found_line = line;
    locator->matched++;
    locator->awaiting = true;
    return locator->matched == locator->parser->depth;
}

/* Reads the token at text[*at] (strings whole); returns whether the search is over. A member
 * of the container of path[matched] is compared with it: a key by its decoded bytes, an array
 * element by its position. */
static bool config_locate_token(struct config_locator *locator, size_t *at)
{
    const struct config_parser *parser = locator->parser;
    char c = parser->text[*at];
    bool inside = locator->nesting == locator->matched + 1;
    bool member = locator->member_next && inside && c != '}' && c != ']';
    locator->member_next = locator->member_next && !member;
    if (member && parser->path[locator->matched] != NULL) {
        size_t line = locator->line;
        return c == '"' &&
               config_locate_string(parser->text, parser->length, at,
                                    parser->path[locator->matched]) &&
               config_locate_found(locator, line);
    }
    if (member && locator->element == parser->index[locator->matched] &&
        config_locate_found(locator, locator->line)) {
        return true;
    }
    if (locator->awaiting) {
        /* The value of the element found: after a key it is the next token, after an array
         * index it is this very token. Either way it must open the next container. */
        if (c != (parser->path[locator->matched] != NULL ? '{' : '[')) {
            return true;
        }
        locator->awaiting = false;
        locator->member_next = true;
        locator->element = 0;
        locator->nesting++;
        return false;
    }
    if (c == '"') {
        config_locate_string(parser->text, parser->length, at, NULL);
    } else if (c == '{' || c == '[') {
        locator->nesting++;
    } else if (c == '}' || c == ']') {
        RM_ASSERT(locator->nesting > 0);
        locator->nesting--;
        return inside;
    } else if (c == ',' && inside) {
        locator->member_next = true;
        locator->element++;
    }
    return false;
}

/* Returns the line of the parser's key path in the text, or the line of the deepest prefix
 * of it that was found. One pass, no recursion, bounded by the text's length: it follows
 * strings and nesting depth, and looks for path[matched] only among the members of the
 * container it entered through path[matched - 1]. The text has already been accepted by
 * jansson, but every read is bounds-checked anyway. */
static size_t config_locate(const struct config_parser *parser)
{
    RM_ASSERT(parser->text != NULL || parser->length == 0);
    RM_ASSERT(parser->depth <= CONFIG_KEY_DEPTH_MAX);
    struct config_locator locator = {
        .parser = parser, .line = 1, .found_line = 1, .awaiting = true};
    for (size_t at = 0; at < parser->length; at++) {
        char c = parser->text[at];
        if (c == '\n') {
            locator.line++;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r' || c == ':') {
            continue;
        }
        if (parser->depth == 0) {
            return locator.line;
        }
        if (config_locate_token(&locator, &at)) {
            return locator.found_line;
        }
    }
    return locator.found_line;
}

/* ---- errors and key paths ---- */

/* The empty string is shown as "" so that an empty key stays visible in a key path; control
 * characters become '?' so that a hostile key or value cannot split the message into lines. */
void config_echo(char *out, size_t out_length, const char *text)
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

void config_quote(char *out, size_t out_length, const char *text)
{
    RM_ASSERT(out_length >= CONFIG_QUOTE_MAX);
    RM_ASSERT(text != NULL);
    if (text[0] == '\0') {
        memcpy(out, "\"\"", 3);
        return;
    }
    out[0] = '"';
    config_echo(out + 1, out_length - 2, text);
    size_t length = strlen(out);
    memcpy(out + length, "\"", 2);
}

/* Keys joined by '.', array indexes as "[N]": "endpoints.openai.keys[1].env". */
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
        int written = 0;
        if (parser->path[i] == NULL) {
            written = snprintf(out + used, out_length - used, "[%" PRIu32 "]", parser->index[i]);
        } else {
            char echo[CONFIG_ECHO_MAX + 4];
            config_echo(echo, sizeof(echo), parser->path[i]);
            written = snprintf(out + used, out_length - used, "%s%s", i > 0 ? "." : "", echo);
        }
        RM_ASSERT(written >= 0 && (size_t)written < out_length - used);
        used += (size_t)written;
    }
}

__attribute__((format(printf, 2, 0))) static int config_fail_list(struct config_parser *parser,
                                                                 const char *format,
                                                                 va_list arguments)
{
    RM_ASSERT(parser->err != NULL);
    RM_ASSERT(parser->err_length > 0);
    char path[CONFIG_PATH_TEXT_MAX];
    char message[CONFIG_ERROR_MAX];
    vsnprintf(message, sizeof(message), format, arguments);
    config_path_text(parser, path, sizeof(path));
    size_t line = config_locate(parser);
    snprintf(parser->err, parser->err_length, "%s:%zu: %s: %s", parser->source, line, path,
             message);
    return -1;
}

int config_fail(struct config_parser *parser, const char *format, ...)
{
    va_list arguments;
    va_start(arguments, format);
    int result = config_fail_list(parser, format, arguments);
    va_end(arguments);
    return result;
}

int config_fail_key(struct config_parser *parser, const char *key, const char *format, ...)
{
    va_list arguments;
    va_start(arguments, format);
    config_path_push(parser, key);
    int result = config_fail_list(parser, format, arguments);
    config_path_pop(parser);
    va_end(arguments);
    return result;
}

const char *config_type_name(const json_t *value)
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

void config_path_push(struct config_parser *parser, const char *key)
{
    RM_ASSERT(key != NULL);
    RM_ASSERT(parser->depth < CONFIG_KEY_DEPTH_MAX);
    parser->index[parser->depth] = 0;
    parser->path[parser->depth++] = key;
}

void config_path_push_index(struct config_parser *parser, uint32_t index)
{
    RM_ASSERT(parser->depth > 0);
    RM_ASSERT(parser->depth < CONFIG_KEY_DEPTH_MAX);
    parser->index[parser->depth] = index;
    parser->path[parser->depth++] = NULL;
}

void config_path_pop(struct config_parser *parser)
{
    RM_ASSERT(parser->depth > 0);
    parser->depth--;
    parser->path[parser->depth] = NULL;
    parser->index[parser->depth] = 0;
}

/* ---- generic values ---- */

static int config_fail_unknown(struct config_parser *parser, const struct config_field *fields,
                               size_t field_count)
{
    RM_ASSERT(fields != NULL);
    RM_ASSERT(field_count > 0);
    char known[CONFIG_ERROR_MAX / 2];
    size_t used = 0;
    for (size_t i = 0; i < field_count; i++) {
        int written = snprintf(known + used, sizeof(known) - used, "%s%s", i > 0 ? ", " : "",
                               fields[i].name);
        RM_ASSERT(written > 0 && (size_t)written < sizeof(known) - used);
        used += (size_t)written;
    }
    return config_fail(parser, "unknown key; known keys: %s", known);
}

int config_parse_object(struct config_parser *parser, json_t *object,
                        const struct config_field *fields, size_t field_count)
{
    RM_ASSERT(fields != NULL);
    RM_ASSERT(field_count > 0);
    if (!json_is_object(object)) {
        return config_fail(parser, "must be an object (got %s)", config_type_name(object));
    }
    const char *name;
    json_t *value;
    json_object_foreach(object, name, value) {
        const struct config_field *field = NULL;
        for (size_t i = 0; i < field_count && field == NULL; i++) {
            field = strcmp(fields[i].name, name) == 0 ? &fields[i] : NULL;
        }
        config_path_push(parser, name);
        int result = 0;
        if (field != NULL) {
            result = field->parse(parser, value, field);
        } else {
            result = config_fail_unknown(parser, fields, field_count);
        }
        config_path_pop(parser);
        if (result != 0) {
            return -1;
        }
    }
    return 0;
}

int config_parse_object_at(struct config_parser *parser, json_t *object,
                           const struct config_field *fields, size_t field_count, void *base,
                           size_t base_size)
{
    RM_ASSERT(base != NULL);
    RM_ASSERT(base_size > 0);
    void *outer = parser->base;
    size_t outer_size = parser->base_size;
    parser->base = base;
    parser->base_size = base_size;
    int result = config_parse_object(parser, object, fields, field_count);
    parser->base = outer;
    parser->base_size = outer_size;
    return result;
}

void *config_field_target(const struct config_parser *parser, const struct config_field *field,
                          size_t size)
{
    RM_ASSERT(parser->base != NULL);
    RM_ASSERT(field->offset + size <= parser->base_size);
    return (char *)parser->base + field->offset;
}

static int config_parse_integer(struct config_parser *parser, json_t *value,
                                const struct config_field *field, uint64_t *number)
{
    RM_ASSERT(field->minimum <= field->maximum);
    RM_ASSERT(field->maximum <= INT64_MAX);
    if (!json_is_integer(value)) {
        return config_fail(parser, "must be an integer between %" PRIu64 " and %" PRIu64
                                   " (got %s)",
                           field->minimum, field->maximum, config_type_name(value));
    }
    json_int_t given = json_integer_value(value);
    if (given < 0 || (uint64_t)given < field->minimum || (uint64_t)given > field->maximum) {
        return config_fail(parser, "must be an integer between %" PRIu64 " and %" PRIu64
                                   " (got %lld)",
                           field->minimum, field->maximum, (long long)given);
    }
    *number = (uint64_t)given;
    return 0;
}

int config_parse_u32(struct config_parser *parser, json_t *value,
                     const struct config_field *field)
{
    RM_ASSERT(field->maximum <= UINT32_MAX);
    RM_ASSERT(field->parse == config_parse_u32);
    uint64_t number = 0;
    if (config_parse_integer(parser, value, field, &number) != 0) {
        return -1;
    }
    uint32_t narrow = (uint32_t)number;
    memcpy(config_field_target(parser, field, sizeof(narrow)), &narrow, sizeof(narrow));
    return 0;
}

int config_parse_bool(struct config_parser *parser, json_t *value,
                      const struct config_field *field)
{
    RM_ASSERT(field->parse == config_parse_bool);
    if (!json_is_boolean(value)) {
        return config_fail(parser, "must be true or false (got %s)", config_type_name(value));
    }
    bool flag = json_is_true(value);
    memcpy(config_field_target(parser, field, sizeof(flag)), &flag, sizeof(flag));
    return 0;
}

int config_parse_u64(struct config_parser *parser, json_t *value,
                     const struct config_field *field)
{
    RM_ASSERT(field->offset % sizeof(uint64_t) == 0);
    RM_ASSERT(field->parse == config_parse_u64);
    uint64_t number = 0;
    if (config_parse_integer(parser, value, field, &number) != 0) {
        return -1;
    }
    memcpy(config_field_target(parser, field, sizeof(number)), &number, sizeof(number));
    return 0;
}

int config_parse_text(struct config_parser *parser, json_t *value, char *out, size_t capacity,
                      bool allow_empty, const char *wanted)
{
    RM_ASSERT(out != NULL && wanted != NULL);
    RM_ASSERT(capacity > 1);
    if (!json_is_string(value)) {
        return config_fail(parser, "must be %s (got %s)", wanted, config_type_name(value));
    }
    size_t length = json_string_length(value);
    if ((length == 0 && !allow_empty) || length >= capacity) {
        return config_fail(parser, "must be %s shorter than %zu bytes (got %zu bytes)", wanted,
                           capacity, length);
    }
    memcpy(out, json_string_value(value), length + 1);
    return 0;
}

int config_parse_choice(struct config_parser *parser, json_t *value, const char *const *names,
                        size_t name_count, size_t *index)
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

bool config_name_valid(const char *name, size_t length)
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

bool config_visible(const char *text, size_t length)
{
    RM_ASSERT(text != NULL || length == 0);
    for (size_t i = 0; i < length; i++) {
        unsigned char byte = (unsigned char)text[i];
        if (byte <= ' ' || byte > '~') {
            return false;
        }
    }
    return true;
}

int config_parse_reference(struct config_parser *parser, json_t *value, const char *kind,
                           char *out)
{
    RM_ASSERT(kind != NULL && out != NULL);
    RM_ASSERT(parser->depth > 0);
    if (!json_is_string(value)) {
        return config_fail(parser, "must be the name of %s %s (got %s)",
                           kind[0] == 'a' || kind[0] == 'e' ? "an" : "a", kind,
                           config_type_name(value));
    }
    const char *name = json_string_value(value);
    size_t length = json_string_length(value);
    if (!config_name_valid(name, length)) {
        char quoted[CONFIG_QUOTE_MAX];
        config_quote(quoted, sizeof(quoted), name);
        return config_fail(parser, "no %s is named %s", kind, quoted);
    }
    memcpy(out, name, length + 1);
    return 0;
}

size_t config_json_compact(const json_t *value, char *out, size_t capacity)
{
    RM_ASSERT(value != NULL && out != NULL);
    RM_ASSERT(capacity > 1);
    /* json_dumpb writes at most the buffer's size and returns the whole length, so one call
     * both encodes and measures. jansson prints reals with 17 digits, which turns a written
     * 0.2 into 0.20000000000000001; 15 digits give back every decimal of up to 15 digits as
     * written, so they are kept whenever they decode to the very same doubles. */
    size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
    size_t length = json_dumpb(value, out, capacity, flags | JSON_REAL_PRECISION(15));
    if (length > 0 && length < capacity) {
        json_t *decoded = json_loadb(out, length, JSON_DECODE_ANY, NULL);
        bool same = decoded != NULL && json_equal(decoded, value);
        json_decref(decoded);
        length = same ? length : json_dumpb(value, out, capacity, flags);
    }
    out[length > 0 && length < capacity ? length : 0] = '\0';
    return length;
}

/* ---- sections of named items ---- */

int config_parse_named(struct config_parser *parser, json_t *value, const char *kind,
                       uint32_t maximum, config_item_parse parse, uint32_t *count)
{
    RM_ASSERT(parser->depth == 1);
    RM_ASSERT(*count == 0);
    if (!json_is_object(value)) {
        return config_fail(parser, "must be an object of %ss by name (got %s)", kind,
                           config_type_name(value));
    }
    if (json_object_size(value) > maximum) {
        return config_fail(parser, "at most %" PRIu32 " %ss (got %zu)", maximum, kind,
                           json_object_size(value));
    }
    const char *name;
    json_t *item;
    json_object_foreach(value, name, item) {
        config_path_push(parser, name);
        size_t length = strlen(name);
        int result = 0;
        if (!config_name_valid(name, length)) {
            result = config_fail(parser, "%s names are " CONFIG_NAME_RULE, kind);
        } else {
            result = parse(parser, item, name, length, *count);
        }
        config_path_pop(parser);
        if (result != 0) {
            return -1;
        }
        *count += 1;
    }
    return 0;
}

/* ---- secrets ---- */

/* Stores a secret; never echoes it. Returns NULL on success or what is wrong with it. A
 * secret sent in an HTTP header must be visible ASCII: CR or LF would split the header (header
 * injection), and spaces or other bytes would be trimmed or refused by the peer. */
static const char *config_secret_store(const struct config_secret *secret, const char *value,
                                       size_t length)
{
    RM_ASSERT(secret->value != NULL && secret->value_set != NULL);
    RM_ASSERT(value != NULL);
    if (length == 0) {
        return "is empty";
    }
    if (length >= CONFIG_SECRET_MAX) {
        return "holds a token longer than the limit (255 bytes)";
    }
    if (memchr(value, '\0', length) != NULL) {
        return "holds a NUL byte";
    }
    for (size_t i = 0; i < length && secret->header_value; i++) {
        unsigned char byte = (unsigned char)value[i];
        if (byte <= ' ' || byte > '~') {
            return "holds a space, control or non-ASCII byte, which cannot go in an HTTP header";
        }
    }
    memcpy(secret->value, value, length);
    secret->value[length] = '\0';
    *secret->value_set = true;
    return NULL;
}

int config_secret_from_env(struct config_parser *parser, json_t *value,
                           const struct config_secret *secret)
{
    RM_ASSERT(secret != NULL);
    RM_ASSERT(parser->depth > 0);
    char name[CONFIG_ENV_NAME_MAX];
    if (config_parse_text(parser, value, name, sizeof(name), false,
                          "the name of an environment variable") != 0) {
        return -1;
    }
    if (strchr(name, '=') != NULL) {
        return config_fail(parser, "must be the name of an environment variable");
    }
    const char *text = getenv(name);
    if (text == NULL) {
        return config_fail(parser, "environment variable %s is not set", name);
    }
    const char *problem = config_secret_store(secret, text, strlen(text));
    if (problem != NULL) {
        return config_fail(parser, "environment variable %s %s", name, problem);
    }
    return 0;
}

/* Reads at most CONFIG_SECRET_MAX bytes of a regular file into out. Only regular files: a
 * FIFO or a terminal named by mistake would block start-up. Returns 0 or -errno, with -EFBIG
 * when the file is longer. */
static int config_secret_read(const char *path, char *out, size_t *length)
{
    RM_ASSERT(path != NULL);
    RM_ASSERT(out != NULL);
    *length = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        return -errno;
    }
    struct stat status;
    int result = fstat(fd, &status) != 0 ? -errno : S_ISREG(status.st_mode) ? 0 : -EINVAL;
    while (result == 0 && *length <= CONFIG_SECRET_MAX) {
        ssize_t got = read(fd, out + *length, CONFIG_SECRET_MAX + 1 - *length);
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

int config_secret_from_file(struct config_parser *parser, json_t *value,
                            const struct config_secret *secret)
{
    RM_ASSERT(secret != NULL);
    RM_ASSERT(parser->depth > 0);
    char path[CONFIG_PATH_MAX];
    if (config_parse_text(parser, value, path, sizeof(path), false, "a non-empty path") != 0) {
        return -1;
    }
    char text[CONFIG_SECRET_MAX + 1];
    size_t length = 0;
    int result = config_secret_read(path, text, &length);
    const char *problem = NULL;
    if (result == 0) {
        /* Files written by editors and `echo` end with one newline that is not the secret. */
        length -= length > 0 && text[length - 1] == '\n' ? 1 : 0;
        length -= length > 0 && text[length - 1] == '\r' ? 1 : 0;
        problem = config_secret_store(secret, text, length);
    }
    explicit_bzero(text, sizeof(text));
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
