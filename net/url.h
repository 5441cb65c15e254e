#ifndef RM_URL_H
#define RM_URL_H

/* Parsing of upstream base URLs from the configuration: "http://host[:port][/path]" and
 * "https://...". The host is a name, an IPv4 literal or an IPv6 literal in brackets; the path
 * is a prefix that every request path is appended to. User information, queries and fragments
 * are refused: a base URL that carries them is a configuration mistake. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define URL_HOST_MAX_BYTES 253 /* the longest DNS name */
#define URL_PATH_MAX_BYTES 1024
#define URL_ERROR_BYTES 160

struct url {
    bool tls;                          /* https */
    bool ipv6;                         /* host is an IPv6 literal (written without brackets) */
    uint16_t port;                     /* explicit, or 80 / 443 */
    char host[URL_HOST_MAX_BYTES + 1]; /* lower-cased */
    char path[URL_PATH_MAX_BYTES + 1]; /* "" or "/prefix" without a trailing slash */
};

/* Parses text into *url. Returns 0, or -EINVAL with a message in err (what was wrong and what
 * a valid URL looks like). */
int url_parse(const char *text, struct url *url, char *err, size_t err_size);

/* The Host header value: host, or [host] for IPv6, with ":port" unless it is the default. */
size_t url_authority(const struct url *url, char *out, size_t out_size);

#endif
