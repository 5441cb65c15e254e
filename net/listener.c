#include "net/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/rm_assert.h"

/* Literal addresses only: resolving a name here would block, and a listen address that
 * changes with DNS is a misconfiguration anyway. */
static int listener_address(const char *host, uint16_t port, struct sockaddr_storage *address,
                            socklen_t *length)
{
    memset(address, 0, sizeof(*address));
    if (strcmp(host, "localhost") == 0) {
        host = "127.0.0.1";
    }
    struct sockaddr_in *v4 = (struct sockaddr_in *)address;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        *length = sizeof(*v4);
        return 0;
    }
    char bare[64];
    size_t host_length = strlen(host);
    if (host_length >= 2 && host[0] == '[' && host[host_length - 1] == ']' &&
        host_length - 2 < sizeof(bare)) {
        memcpy(bare, host + 1, host_length - 2);
        bare[host_length - 2] = '\0';
        host = bare;
    }
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)address;
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        *length = sizeof(*v6);
        return 0;
    }
    return -EINVAL;
}

static int listener_open_one(const struct sockaddr_storage *address, socklen_t length)
{
    int fd = socket(address->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, (const struct sockaddr *)address, length) != 0 ||
        listen(fd, LISTENER_BACKLOG) != 0) {
        int error = -errno;
        close(fd);
        return error;
    }
    return fd;
}

static uint16_t listener_port_of(int fd)
{
    struct sockaddr_storage bound;
    socklen_t length = sizeof(bound);
    RM_ASSERT(getsockname(fd, (struct sockaddr *)&bound, &length) == 0);
    if (bound.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    }
    return ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

int listener_open(const char *host, uint16_t port, uint32_t count, int *fds,
                  uint16_t *bound_port, char *err, size_t err_length)
{
    RM_ASSERT(count >= 1);
    RM_ASSERT(fds != NULL);
    struct sockaddr_storage address;
    socklen_t length;
    if (listener_address(host, port, &address, &length) != 0) {
        snprintf(err, err_length,
                 "listen %s:%u: not an IP address; use an IPv4 or [IPv6] literal or localhost",
                 host, port);
        return -EINVAL;
    }
    for (uint32_t i = 0; i < count; i++) {
        int fd = listener_open_one(&address, length);
        if (fd < 0) {
            snprintf(err, err_length, "listen %s:%u: %s", host, port, strerror(-fd));
            listener_close(fds, i);
            return fd;
        }
        fds[i] = fd;
        if (i == 0) {
            port = listener_port_of(fd);
            if (address.ss_family == AF_INET6) {
                ((struct sockaddr_in6 *)&address)->sin6_port = htons(port);
            } else {
                ((struct sockaddr_in *)&address)->sin_port = htons(port);
            }
        }
    }
    *bound_port = port;
    return 0;
}

void listener_close(int *fds, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
    }
}
