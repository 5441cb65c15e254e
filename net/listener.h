#ifndef RM_LISTENER_H
#define RM_LISTENER_H

/* Listening sockets: one per reactor on the same address with SO_REUSEPORT, so the kernel
 * spreads connections over the reactors without a shared accept queue. */

#include <stddef.h>
#include <stdint.h>

#define LISTENER_BACKLOG 4096

/* Opens `count` sockets bound to host:port (port 0: the first socket picks a free port and
 * the others join it). Fills fds[] and *bound_port. Returns 0, or -errno with err filled
 * ("listen 127.0.0.1:80: Permission denied"). */
int listener_open(const char *host, uint16_t port, uint32_t count, int *fds,
                  uint16_t *bound_port, char *err, size_t err_length);
void listener_close(int *fds, uint32_t count);

#endif
