#ifndef RM_DNS_H
#define RM_DNS_H

/* Name resolution that never blocks a reactor.
 *
 * IPv4 and IPv6 literals (bracketed or not) and "localhost" resolve without a lookup. Other
 * names go to ONE resolver thread that calls getaddrinfo: a reactor takes a job slot from a
 * fixed pool (queue_depth slots shared by all reactors; none free: -EAGAIN), copies the host
 * into it and queues it under a mutex held only for the list operation. The resolver writes
 * the answer into the job (never into caller memory), pushes the job onto the requesting
 * reactor's SPSC ck_ring and bumps that reactor's eventfd. Each reactor keeps an io_uring
 * read armed on its eventfd; its completion drains the ring, fills the per-reactor cache,
 * runs the callbacks and returns the slots. The ring holds more entries than there are job
 * slots, so it can never overflow.
 *
 * Every answer comes through the callback on the requesting reactor, never inside
 * dns_resolve: literals and cache hits are delivered by the reactor's next tick, lookups
 * when the resolver is done. Answers are cached per reactor for ttl_ms (getaddrinfo reports
 * no TTL, so the configured value stands in), failures for negative_ttl_ms.
 *
 * Life cycle: dns_create on the main thread, dns_reactor_attach in each reactor's setup,
 * dns_destroy on the main thread after the reactor group was joined (it stops the resolver,
 * waiting for a lookup in progress to end). */

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/reactor.h"

#define DNS_HOST_MAX 254 /* a 253-byte name plus the NUL */
#define DNS_ADDRESSES_MAX 4
#define DNS_JOBS_MAX 256 /* upper bound of queue_depth */
#define DNS_CACHE_ENTRIES 64 /* per reactor */
#define DNS_MESSAGE_MAX 320
#define DNS_TTL_MS_DEFAULT 30000
#define DNS_NEGATIVE_TTL_MS_DEFAULT 1000
#define DNS_QUEUE_DEPTH_DEFAULT 64

struct dns_config {
    uint32_t reactors;        /* reactors that will attach (the group size) */
    uint32_t ttl_ms;          /* 0: DNS_TTL_MS_DEFAULT */
    uint32_t negative_ttl_ms; /* 0: DNS_NEGATIVE_TTL_MS_DEFAULT */
    uint32_t queue_depth;     /* lookups in flight at once, 1..DNS_JOBS_MAX; 0: default */
};

struct dns_result {
    int error; /* 0, or the getaddrinfo EAI_* code */
    uint32_t count; /* addresses, 1..DNS_ADDRESSES_MAX when error is 0 */
    struct sockaddr_storage addresses[DNS_ADDRESSES_MAX]; /* with the requested port */
    socklen_t lengths[DNS_ADDRESSES_MAX];
    bool literal; /* answered without a lookup */
    bool cached;  /* answered from this reactor's cache */
    char message[DNS_MESSAGE_MAX]; /* "cannot resolve NAME: <reason>" when error != 0 */
};

struct dns_request;
struct dns_job;
struct dns_reactor;
struct dns;

typedef void (*dns_callback)(struct dns_request *request, const struct dns_result *result,
                             void *context);

/* Owned by the caller (embedded in its connection); private fields. It must stay valid until
 * its callback runs or dns_cancel returns. */
struct dns_request {
    struct dns_request *previous; /* in the reactor's ready list */
    struct dns_request *next;
    struct dns_job *job; /* the lookup in flight, if any */
    struct dns_reactor *owner;
    dns_callback callback;
    void *context;
    uint16_t port;
    bool pending;
    struct dns_result result;
};

/* Starts the resolver thread. Returns 0, -EINVAL for a bad config (reactors 0 or over
 * REACTOR_MAX, queue_depth over DNS_JOBS_MAX), -ENOMEM, or the pthread_create error. */
int dns_create(const struct dns_config *config, struct dns **out);
/* Stops and joins the resolver, then frees everything. Callbacks still pending never run. */
void dns_destroy(struct dns *dns);

/* Registers the calling reactor (from its setup callback): creates its eventfd, arms the
 * read and adds the delivery tick hook. Returns 0 or a negative errno. */
int dns_reactor_attach(struct dns *dns, struct reactor *reactor);

/* Resolves host:port for the calling reactor. Returns 0 (the callback will run later on this
 * reactor), -EINVAL for an empty host or one longer than DNS_HOST_MAX - 1 bytes, or -EAGAIN
 * when every lookup slot is busy (shed load, retry later). No callback on a nonzero return. */
int dns_resolve(struct dns *dns, struct reactor *reactor, const char *host, uint16_t port,
                struct dns_request *request, dns_callback callback, void *context);
/* Withdraws a pending request: its callback will not run and its memory may be reused. */
void dns_cancel(struct dns *dns, struct dns_request *request);

#endif
