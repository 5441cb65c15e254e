#include "net/url.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/rm_assert.h"

static int url_fail(char *err, size_t err_size, const char *text, const char *why)
{
    RM_ASSERT(err != NULL);
    RM_ASSERT(why != NULL);
    snprintf(err, err_size, "invalid URL \"%.64s\": %s; expected http[s]://host[:port][/path]",
             text, why);
    return -EINVAL;
}

static bool url_host_byte(char byte)
{
    return (byte >= 'a' && byte <= 'z') || (byte >= 'A' && byte <= 'Z') ||
           (byte >= '0' && byte <= '9') || byte == '-' || byte == '.' || byte == '_';
}

static bool url_ipv6_byte(char byte)
{
    return (byte >= '0' && byte <= '9') || (byte >= 'a' && byte <= 'f') ||
           (byte >= 'A' && byte <= 'F') || byte == ':' || byte == '.';
}

/* Copies the host of [start, end) lower-cased; brackets were already removed. */
static const char *url_copy_host(struct url *url, const char *start, const char *end)
{
    RM_ASSERT(start <= end);
    size_t length = (size_t)(end - start);
    if (length == 0) {
        return "the host is empty";
    }
    if (length > URL_HOST_MAX_BYTES) {
        return "the host is longer than 253 bytes";
    }
    for (size_t i = 0; i < length; i++) {
        char byte = start[i];
        if (url->ipv6 ? !url_ipv6_byte(byte) : !url_host_byte(byte)) {
            return url->ipv6 ? "the IPv6 literal has a character that is not hex, ':' or '.'"
                             : "the host has a character outside letters, digits, '-', '.'";
        }
        url->host[i] = byte >= 'A' && byte <= 'Z' ? (char)(byte - 'A' + 'a') : byte;
    }
    url->host[length] = '\0';
    RM_ASSERT(strlen(url->host) == length);
    return NULL;
}

static const char *url_parse_port(struct url *url, const char *start, const char *end)
{
    RM_ASSERT(start <= end);
    if (start == end || end - start > 5) {
        return "the port must be 1 to 5 digits";
    }
    uint32_t port = 0;
    for (const char *cursor = start; cursor < end; cursor++) {
        if (*cursor < '0' || *cursor > '9') {
            return "the port must be decimal digits";
        }
        port = port * 10 + (uint32_t)(*cursor - '0');
    }
    if (port == 0 || port > 65535) {
        return "the port must be between 1 and 65535";
    }
    url->port = (uint16_t)port;
    return NULL;
}

/* Host and port in [start, end): "name", "name:port", "[v6]" or "[v6]:port". */
static const char *url_parse_authority(struct url *url, const char *start, const char *end)
{
    RM_ASSERT(start <= end);
    if (memchr(start, '@', (size_t)(end - start)) != NULL) {
        return "user information is not supported; put credentials in headers";
    }
    const char *host_end = end;
    const char *port = NULL;
    const char *problem = NULL;
    if (start < end && *start == '[') {
        const char *close = memchr(start, ']', (size_t)(end - start));
        if (close == NULL) {
            return "the IPv6 literal has no closing ']'";
        }
        if (close + 1 < end && close[1] != ':') {
            return "only ':port' may follow an IPv6 literal";
        }
        url->ipv6 = true;
        problem = url_copy_host(url, start + 1, close);
        port = close + 1 < end ? close + 2 : NULL;
    } else {
        const char *colon = memchr(start, ':', (size_t)(end - start));
        host_end = colon != NULL ? colon : end;
        port = colon != NULL ? colon + 1 : NULL;
        problem = url_copy_host(url, start, host_end);
    }
    if (problem == NULL && port != NULL) {
        problem = url_parse_port(url, port, end);
    }
    return problem;
}

static const char *url_copy_path(struct url *url, const char *start)
{
    RM_ASSERT(start != NULL);
    size_t length = strlen(start);
    while (length > 0 && start[length - 1] == '/') {
        length--; /* request paths start with '/', so a trailing one would double it */
    }
    if (length > URL_PATH_MAX_BYTES) {
        return "the path is longer than 1024 bytes";
    }
    for (size_t i = 0; i < length; i++) {
        unsigned char byte = (unsigned char)start[i];
        if (byte <= ' ' || byte >= 0x7f) {
            return "the path has a space or control character; percent-encode it";
        }
        if (byte == '?' || byte == '#') {
            return "queries and fragments are not supported in a base URL";
        }
    }
    memcpy(url->path, start, length);
    url->path[length] = '\0';
    return NULL;
}

int url_parse(const char *text, struct url *url, char *err, size_t err_size)
{
    RM_ASSERT(text != NULL);
    RM_ASSERT(url != NULL);
    memset(url, 0, sizeof(*url));
    const char *rest = NULL;
    if (strncasecmp(text, "http://", 7) == 0) {
        rest = text + 7;
        url->port = 80;
    } else if (strncasecmp(text, "https://", 8) == 0) {
        rest = text + 8;
        url->tls = true;
        url->port = 443;
    } else {
        return url_fail(err, err_size, text, "the scheme must be http or https");
    }
    const char *slash = strchr(rest, '/');
    const char *end = slash != NULL ? slash : rest + strlen(rest);
    const char *problem = url_parse_authority(url, rest, end);
    if (problem == NULL && slash != NULL) {
        problem = url_copy_path(url, slash);
    }
    if (problem == NULL && slash == NULL && strpbrk(rest, "?#") != NULL) {
        problem = "queries and fragments are not supported in a base URL";
    }
    return problem != NULL ? url_fail(err, err_size, text, problem) : 0;
}

size_t url_authority(const struct url *url, char *out, size_t out_size)
{
    RM_ASSERT(url->host[0] != '\0');
    RM_ASSERT(out_size > 0);
    bool default_port = url->port == (url->tls ? 443 : 80);
    const char *open = url->ipv6 ? "[" : "";
    const char *close = url->ipv6 ? "]" : "";
    int length = default_port ? snprintf(out, out_size, "%s%s%s", open, url->host, close)
                               : snprintf(out, out_size, "%s%s%s:%u", open, url->host, close,
                                          (unsigned)url->port);
    RM_ASSERT(length > 0);
    return (size_t)length < out_size ? (size_t)length : out_size - 1;
}
