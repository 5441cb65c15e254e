/* GET/PUT/DELETE /v1/state/{ns}/{key}: the store's compare-and-swap over HTTP. The version
 * is the ETag; If-Match carries the expected version and If-None-Match: * means "must not
 * exist". Answers arrive from store callbacks, always on the connection's reactor. */

#include "net/api_state.h"

#include <errno.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rm_assert.h"
#include "net/http_response.h"
#include "store/store.h"

#define API_STATE_PREFIX "/v1/state/"
#define API_STATE_ETAG_BYTES (HTTP_RESPONSE_DECIMAL_MAX + 3) /* quotes and NUL */

struct api_state_call {
    struct store_request request; /* first: the callback gets it back */
    struct http_exchange *exchange;
    struct api_context *api;
    enum http_method method;
    bool created_if_absent; /* PUT without precondition, tried as a create first */
    uint64_t expected_version;
    char ns[STORE_NAMESPACE_MAX + 1];
    char key[STORE_KEY_MAX];
    size_t ns_length;
    size_t key_length;
};

static bool api_state_ns_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.';
}

static int api_state_hex(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
        return (c | 0x20) - 'a' + 10;
    }
    return -1;
}

/* Percent-decodes the key into call->key. Control bytes are refused even when encoded, so
 * keys stay printable in logs and admin views. */
static const char *api_state_decode_key(struct api_state_call *call, const char *text,
                                        size_t length)
{
    size_t out = 0;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '%') {
            int high = i + 2 < length ? api_state_hex(text[i + 1]) : -1;
            int low = i + 2 < length ? api_state_hex(text[i + 2]) : -1;
            if (high < 0 || low < 0) {
                return "bad percent-encoding in the key; use %XX with two hex digits";
            }
            c = (unsigned char)(high * 16 + low);
            i += 2;
        }
        if (c < 0x20 || c == 0x7f) {
            return "control characters are not allowed in keys";
        }
        if (out == STORE_KEY_MAX) {
            return "key longer than 512 bytes; use a shorter key";
        }
        call->key[out++] = (char)c;
    }
    call->key_length = out;
    return out == 0 ? "empty key; the path is /v1/state/{namespace}/{key}" : NULL;
}

/* Splits /v1/state/{ns}/{key}; returns NULL or a message for a 400. */
static const char *api_state_parse_path(struct api_state_call *call, const struct http_slice *path)
{
    size_t prefix = strlen(API_STATE_PREFIX);
    RM_ASSERT(path->length >= prefix);
    const char *rest = path->base + prefix;
    size_t rest_length = path->length - prefix;
    const char *slash = memchr(rest, '/', rest_length);
    if (slash == NULL) {
        return "missing key; the path is /v1/state/{namespace}/{key}";
    }
    size_t ns_length = (size_t)(slash - rest);
    if (ns_length == 0 || ns_length > STORE_NAMESPACE_MAX) {
        return "namespace must be 1 to 63 characters";
    }
    for (size_t i = 0; i < ns_length; i++) {
        if (!api_state_ns_char(rest[i])) {
            return "namespace may hold only letters, digits, '_', '-' and '.'";
        }
    }
    memcpy(call->ns, rest, ns_length);
    call->ns[ns_length] = '\0';
    call->ns_length = ns_length;
    return api_state_decode_key(call, slash + 1, rest_length - ns_length - 1);
}

static struct store_key api_state_key(const struct api_state_call *call)
{
    return (struct store_key){call->ns, call->ns_length, call->key, call->key_length};
}

static void api_state_finish(struct api_state_call *call)
{
    RM_ASSERT(call->exchange != NULL);
    call->exchange = NULL;
    rm_free(call);
}

/* Parses an If-Match value: a version, quoted (the ETag form) or bare. */
static bool api_state_parse_version(const struct http_slice *value, uint64_t *version)
{
    const char *text = value->base;
    size_t length = value->length;
    if (length >= 2 && text[0] == '"' && text[length - 1] == '"') {
        text++;
        length -= 2;
    }
    if (length == 0 || length > 19) {
        return false;
    }
    uint64_t parsed = 0;
    for (size_t i = 0; i < length; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return false;
        }
        parsed = parsed * 10 + (uint64_t)(text[i] - '0');
    }
    *version = parsed;
    return parsed > 0;
}

enum api_state_precondition { API_STATE_NONE, API_STATE_MATCH, API_STATE_ABSENT, API_STATE_BAD };

static enum api_state_precondition api_state_precondition(const struct http_request *request,
                                                          uint64_t *version)
{
    const struct http_slice *match = http_request_header(request, "If-Match");
    const struct http_slice *none = http_request_header(request, "If-None-Match");
    if (match != NULL && none != NULL) {
        return API_STATE_BAD;
    }
    if (match != NULL) {
        return api_state_parse_version(match, version) ? API_STATE_MATCH : API_STATE_BAD;
    }
    if (none != NULL) {
        bool star = none->length == 1 && none->base[0] == '*';
        *version = 0;
        return star ? API_STATE_ABSENT : API_STATE_BAD;
    }
    return API_STATE_NONE;
}

/* The quoted version: "\"7\"". Returns etag, NUL-terminated. */
static const char *api_state_etag(char *etag, uint64_t version)
{
    etag[0] = '"';
    size_t digits = http_response_decimal(etag + 1, version);
    RM_ASSERT(digits + 3 <= API_STATE_ETAG_BYTES);
    etag[digits + 1] = '"';
    etag[digits + 2] = '\0';
    return etag;
}

/* `prefix` then the number then '}': the JSON bodies that end in a version. */
static size_t api_state_number_body(char *body, size_t capacity, const char *prefix,
                                    size_t prefix_length, uint64_t number)
{
    RM_ASSERT(capacity >= prefix_length + HTTP_RESPONSE_DECIMAL_MAX + 1);
    memcpy(body, prefix, prefix_length);
    size_t length = prefix_length + http_response_decimal(body + prefix_length, number);
    body[length++] = '}';
    return length;
}

static void api_state_respond_version(struct api_state_call *call, int status, uint64_t version)
{
    static const char start[] = "{\"version\":";
    char etag[API_STATE_ETAG_BYTES];
    char body[sizeof(start) + HTTP_RESPONSE_DECIMAL_MAX + 1];
    size_t length = api_state_number_body(body, sizeof(body), start, sizeof(start) - 1, version);
    struct http_response_header header = {"ETag", api_state_etag(etag, version)};
    http_exchange_respond(call->exchange, status, "application/json", &header, 1, body, length);
}

static void api_state_respond_conflict(struct api_state_call *call, uint64_t current)
{
    static const char start[] =
        "{\"error\":{\"type\":\"precondition_failed\",\"message\":\"the version does not "
        "match; read the key again and retry with its ETag\"},\"current_version\":";
    char body[sizeof(start) + HTTP_RESPONSE_DECIMAL_MAX + 1];
    size_t length = api_state_number_body(body, sizeof(body), start, sizeof(start) - 1, current);
    http_exchange_respond(call->exchange, 412, "application/json", NULL, 0, body, length);
}

static const char api_state_overloaded[] =
    "{\"error\":{\"type\":\"overloaded\",\"message\":\"the store is saturated; retry after "
    "the Retry-After delay\"}}";

static void api_state_respond_failure(struct api_state_call *call, int status)
{
    static const struct http_response_header retry = {"Retry-After", "1"};
    switch (status) {
    case -EAGAIN:
        http_exchange_respond(call->exchange, 503, "application/json", &retry, 1,
                              api_state_overloaded, sizeof(api_state_overloaded) - 1);
        return;
    case -EINVAL:
        http_exchange_respond_error(call->exchange, 400, "invalid_key",
                                    "the namespace, key or value is outside the store's limits");
        return;
    case -EIO:
        http_exchange_respond_error(call->exchange, 503, "storage_failed",
                                    "a disk write failed; this shard refuses writes until the "
                                    "engine restarts (see the log)");
        return;
    case -ENOSPC:
        http_exchange_respond_error(call->exchange, 507, "storage_full",
                                    "the store is full; free disk space or raise limits");
        return;
    default:
        http_exchange_respond_error(call->exchange, 500, "storage_error",
                                    "the store could not serve this key (see the log)");
        return;
    }
}

static void api_state_on_get(struct store_request *request, const struct store_result *result)
{
    struct api_state_call *call = (struct api_state_call *)request;
    RM_ASSERT(call->exchange != NULL);
    if (result->status == STORE_OK) {
        char etag[API_STATE_ETAG_BYTES];
        struct http_response_header header = {"ETag", api_state_etag(etag, result->version)};
        http_exchange_respond(call->exchange, 200, "application/octet-stream", &header, 1,
                              (const char *)result->value, result->value_length);
    } else if (result->status == STORE_NOT_FOUND) {
        http_exchange_respond_error(call->exchange, 404, "not_found", "no such key");
    } else {
        api_state_respond_failure(call, result->status);
    }
    api_state_finish(call);
}

static void api_state_on_write(struct store_request *request, const struct store_result *result)
{
    struct api_state_call *call = (struct api_state_call *)request;
    RM_ASSERT(call->exchange != NULL);
    if (result->status == STORE_OK) {
        bool created = call->method == HTTP_METHOD_PUT &&
                       (call->created_if_absent || call->expected_version == 0);
        if (call->method == HTTP_METHOD_DELETE) {
            api_state_respond_version(call, 200, result->version);
        } else {
            api_state_respond_version(call, created ? 201 : 200, result->version);
        }
    } else if (result->status == STORE_CONFLICT && call->created_if_absent) {
        http_exchange_respond_error(call->exchange, 428, "precondition_required",
                                    "the key exists; send If-Match with its ETag to overwrite");
    } else if (result->status == STORE_CONFLICT) {
        api_state_respond_conflict(call, result->version);
    } else if (result->status == STORE_NOT_FOUND) {
        http_exchange_respond_error(call->exchange, 404, "not_found", "no such key");
    } else {
        api_state_respond_failure(call, result->status);
    }
    api_state_finish(call);
}

/* Chooses the expected version of a write from its preconditions; returns false after
 * answering the exchange when they are unusable. */
static bool api_state_expected(struct api_state_call *call, const struct http_request *request,
                               bool require_precondition)
{
    uint64_t version = 0;
    switch (api_state_precondition(request, &version)) {
    case API_STATE_MATCH:
    case API_STATE_ABSENT: call->expected_version = version; return true;
    case API_STATE_BAD:
        http_exchange_respond_error(call->exchange, 400, "invalid_precondition",
                                    "If-Match takes one version (the ETag, e.g. \"3\"); "
                                    "If-None-Match takes only *; send one of them");
        return false;
    case API_STATE_NONE: break;
    }
    if (!require_precondition) {
        call->expected_version = STORE_VERSION_ANY;
        return true;
    }
    if (call->method == HTTP_METHOD_DELETE) {
        http_exchange_respond_error(call->exchange, 428, "precondition_required",
                                    "send If-Match with the key's ETag to delete it");
        return false;
    }
    /* Without a precondition a PUT may still create: it is tried as "must not exist", and a
     * conflict becomes 428 rather than a silent overwrite. */
    call->created_if_absent = true;
    call->expected_version = 0;
    return true;
}

static int api_state_start(struct api_state_call *call, const struct http_request *request)
{
    struct store *store = call->api->store;
    struct store_key key = api_state_key(call);
    if (call->method == HTTP_METHOD_GET || call->method == HTTP_METHOD_HEAD) {
        return store_get(store, &call->request, key, api_state_on_get, call);
    }
    if (call->method == HTTP_METHOD_DELETE) {
        return store_delete(store, &call->request, key, call->expected_version,
                            api_state_on_write, call);
    }
    struct store_write write = {
        .expected_version = call->expected_version,
        .value = request->body.base,
        .value_length = request->body.length,
    };
    return store_put(store, &call->request, key, &write, api_state_on_write, call);
}

void api_state_handle(struct api_context *api, struct http_exchange *exchange)
{
    const struct http_request *request = http_exchange_request(exchange);
    RM_ASSERT(api->store != NULL);
    struct api_state_call *call = rm_calloc(1, sizeof(*call));
    if (call == NULL) {
        http_exchange_respond_error(exchange, 503, "out_of_memory", "retry later");
        return;
    }
    call->exchange = exchange;
    call->api = api;
    call->method = request->method;
    const char *problem = api_state_parse_path(call, &request->path);
    if (problem != NULL) {
        http_exchange_respond_error(exchange, 400, "invalid_key", problem);
        api_state_finish(call);
        return;
    }
    bool write = call->method == HTTP_METHOD_PUT || call->method == HTTP_METHOD_DELETE;
    if (call->method == HTTP_METHOD_PUT && request->body.length > api->max_value_bytes) {
        http_exchange_respond_error(exchange, 413, "value_too_large",
                                    "the value exceeds limits.max_value_bytes");
        api_state_finish(call);
        return;
    }
    if (write && !api_state_expected(call, request, api->require_precondition)) {
        api_state_finish(call);
        return;
    }
    int result = api_state_start(call, request);
    if (result != 0) {
        api_state_respond_failure(call, result);
        api_state_finish(call);
    }
}
