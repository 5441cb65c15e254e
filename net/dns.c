#include "net/dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/rm_assert.h"

#define DNS_NS_PER_MS 1000000ull

_Static_assert(DNS_QUEUE_DEPTH_DEFAULT <= DNS_JOBS_MAX, "the default depth must be allowed");
_Static_assert(DNS_HOST_MAX > sizeof("localhost"), "literal names must fit");

/* A lookup slot. The reactor fills host/reactor/request and queues it; the resolver fills
 * the answer; the mutex hand-offs order the two. `request` is only touched on the reactor. */
struct dns_job {
    struct dns_job *next;
    struct dns_request *request; /* NULL once cancelled */
    uint32_t reactor;
    char host[DNS_HOST_MAX];
    int error;
    int system_error; /* errno for EAI_SYSTEM */
    uint32_t count;
    struct sockaddr_storage addresses[DNS_ADDRESSES_MAX];
    socklen_t lengths[DNS_ADDRESSES_MAX];
};

struct dns_cache_entry {
    char host[DNS_HOST_MAX];
    uint64_t expires_ns;
    uint64_t used; /* 0 = empty */
    int error;
    int system_error;
    uint32_t count;
    struct sockaddr_storage addresses[DNS_ADDRESSES_MAX]; /* port 0 */
    socklen_t lengths[DNS_ADDRESSES_MAX];
};

/* Per-reactor state; everything but `done` belongs to the reactor's thread. */
struct dns_reactor {
    struct dns *dns;
    struct reactor *reactor;
    int eventfd;
    uint64_t counter;
    struct reactor_op read_op;
    struct dns_job *done; /* answered jobs, under dns->mutex */
    struct dns_request *ready_head; /* literal and cached answers for the next tick */
    struct dns_request *ready_tail;
    uint64_t cache_clock;
    struct dns_cache_entry cache[DNS_CACHE_ENTRIES];
};

struct dns {
    struct dns_config config;
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    bool stopping;
    bool thread_started;
    struct dns_job *free_jobs;
    struct dns_job *queue_head;
    struct dns_job *queue_tail;
    struct dns_reactor *reactors[REACTOR_MAX];
    struct dns_job jobs[DNS_JOBS_MAX];
};

static void dns_lock(struct dns *dns) {
    RM_ASSERT(dns != NULL);
    int result = pthread_mutex_lock(&dns->mutex);
    RM_ASSERT(result == 0);
}

static void dns_unlock(struct dns *dns) {
    RM_ASSERT(dns != NULL);
    int result = pthread_mutex_unlock(&dns->mutex);
    RM_ASSERT(result == 0);
}

/* Runs getaddrinfo and keeps the first DNS_ADDRESSES_MAX stream addresses (port 0). */
static void dns_lookup(struct dns_job *job) {
    RM_ASSERT(job != NULL);
    RM_ASSERT(job->host[0] != '\0');
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *list = NULL;
    job->count = 0;
    job->system_error = 0;
    job->error = getaddrinfo(job->host, NULL, &hints, &list);
    if (job->error == EAI_SYSTEM) {
        job->system_error = errno;
    }
    if (job->error != 0) {
        return;
    }
    for (struct addrinfo *info = list; info != NULL && job->count < DNS_ADDRESSES_MAX;
         info = info->ai_next) {
        if (info->ai_addrlen > sizeof(job->addresses[0])) {
            continue;
        }
        memcpy(&job->addresses[job->count], info->ai_addr, info->ai_addrlen);
        job->lengths[job->count] = info->ai_addrlen;
        job->count++;
    }
    freeaddrinfo(list);
    if (job->count == 0) {
        job->error = EAI_NONAME;
    }
}

/* Hands an answered job to its reactor and wakes it through the eventfd. */
static void dns_resolver_deliver(struct dns *dns, struct dns_job *job) {
    RM_ASSERT(job->reactor < dns->config.reactors);
    struct dns_reactor *target = dns->reactors[job->reactor];
    RM_ASSERT(target != NULL);
    dns_lock(dns);
    job->next = target->done;
    target->done = job;
    dns_unlock(dns);
    uint64_t one = 1;
    /* A nonblocking eventfd write only fails when the counter would overflow, which would
     * need 2^64 undrained wakes; the reactor drains on every read completion. */
    ssize_t written = write(target->eventfd, &one, sizeof(one));
    RM_ASSERT(written == (ssize_t)sizeof(one));
}

static void *dns_resolver_thread(void *argument) {
    struct dns *dns = argument;
    RM_ASSERT(dns != NULL);
    for (;;) {
        dns_lock(dns);
        while (!dns->stopping && dns->queue_head == NULL) {
            pthread_cond_wait(&dns->wake, &dns->mutex);
        }
        if (dns->stopping) {
            dns_unlock(dns);
            return NULL;
        }
        struct dns_job *job = dns->queue_head;
        dns->queue_head = job->next;
        if (dns->queue_head == NULL) {
            dns->queue_tail = NULL;
        }
        dns_unlock(dns);
        job->next = NULL;
        dns_lookup(job);
        dns_resolver_deliver(dns, job);
    }
}

int dns_create(const struct dns_config *config, struct dns **out) {
    RM_ASSERT(config != NULL);
    RM_ASSERT(out != NULL);
    *out = NULL;
    if (config->reactors == 0 || config->reactors > REACTOR_MAX ||
        config->queue_depth > DNS_JOBS_MAX) {
        return -EINVAL;
    }
    struct dns *dns = rm_calloc(1, sizeof(*dns));
    if (dns == NULL) {
        return -ENOMEM;
    }
    dns->config = *config;
    dns->config.ttl_ms = config->ttl_ms != 0 ? config->ttl_ms : DNS_TTL_MS_DEFAULT;
    dns->config.negative_ttl_ms =
        config->negative_ttl_ms != 0 ? config->negative_ttl_ms : DNS_NEGATIVE_TTL_MS_DEFAULT;
    dns->config.queue_depth =
        config->queue_depth != 0 ? config->queue_depth : DNS_QUEUE_DEPTH_DEFAULT;
    for (uint32_t index = 0; index < dns->config.queue_depth; index++) {
        dns->jobs[index].next = dns->free_jobs;
        dns->free_jobs = &dns->jobs[index];
    }
    pthread_mutex_init(&dns->mutex, NULL);
    pthread_cond_init(&dns->wake, NULL);
    int result = pthread_create(&dns->thread, NULL, dns_resolver_thread, dns);
    if (result != 0) {
        dns_destroy(dns);
        return -result;
    }
    dns->thread_started = true;
    *out = dns;
    return 0;
}

void dns_destroy(struct dns *dns) {
    if (dns == NULL) {
        return;
    }
    RM_ASSERT(dns->config.reactors <= REACTOR_MAX);
    if (dns->thread_started) {
        dns_lock(dns);
        dns->stopping = true;
        pthread_cond_signal(&dns->wake);
        dns_unlock(dns);
        pthread_join(dns->thread, NULL);
    }
    for (uint32_t index = 0; index < dns->config.reactors; index++) {
        struct dns_reactor *attached = dns->reactors[index];
        if (attached != NULL) {
            close(attached->eventfd);
            rm_free(attached);
        }
    }
    pthread_cond_destroy(&dns->wake);
    pthread_mutex_destroy(&dns->mutex);
    rm_free(dns);
}

static void dns_format_error(struct dns_result *result, const char *host, int error,
                             int system_error) {
    RM_ASSERT(result != NULL);
    RM_ASSERT(error != 0);
    result->error = error;
    result->count = 0;
    const char *reason = error == EAI_SYSTEM ? strerror(system_error) : gai_strerror(error);
    snprintf(result->message, sizeof(result->message), "cannot resolve %s: %s", host, reason);
}

static void dns_set_port(struct dns_result *result, uint16_t port) {
    RM_ASSERT(result != NULL);
    RM_ASSERT(result->count <= DNS_ADDRESSES_MAX);
    for (uint32_t index = 0; index < result->count; index++) {
        struct sockaddr_storage *address = &result->addresses[index];
        if (address->ss_family == AF_INET) {
            ((struct sockaddr_in *)address)->sin_port = htons(port);
        } else if (address->ss_family == AF_INET6) {
            ((struct sockaddr_in6 *)address)->sin6_port = htons(port);
        }
    }
}

/* Fills `result` for literals and "localhost"; returns false for names needing a lookup. */
static bool dns_literal(const char *host, struct dns_result *result) {
    RM_ASSERT(host != NULL);
    RM_ASSERT(result != NULL);
    char bare[DNS_HOST_MAX];
    size_t length = strlen(host);
    if (length >= 2 && host[0] == '[' && host[length - 1] == ']') {
        memcpy(bare, host + 1, length - 2);
        bare[length - 2] = '\0';
        host = bare;
    }
    struct sockaddr_in *v4 = (struct sockaddr_in *)&result->addresses[0];
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&result->addresses[0];
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        result->lengths[0] = sizeof(*v4);
        result->count = 1;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        result->lengths[0] = sizeof(*v6);
        result->count = 1;
    } else if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.") == 0) {
        /* RFC 6761: localhost is always loopback; IPv4 first, as most local servers bind it. */
        v4->sin_family = AF_INET;
        v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        result->lengths[0] = sizeof(*v4);
        struct sockaddr_in6 *second = (struct sockaddr_in6 *)&result->addresses[1];
        second->sin6_family = AF_INET6;
        second->sin6_addr = in6addr_loopback;
        result->lengths[1] = sizeof(*second);
        result->count = 2;
    } else {
        return false;
    }
    result->literal = true;
    return true;
}

static struct dns_cache_entry *dns_cache_find(struct dns_reactor *attached, const char *host) {
    RM_ASSERT(attached != NULL);
    RM_ASSERT(host != NULL);
    for (size_t index = 0; index < DNS_CACHE_ENTRIES; index++) {
        struct dns_cache_entry *entry = &attached->cache[index];
        if (entry->used != 0 && strcasecmp(entry->host, host) == 0) {
            return entry;
        }
    }
    return NULL;
}

/* Copies a fresh cache entry into `result`; an expired entry is a miss. */
static bool dns_cache_lookup(struct dns_reactor *attached, const char *host,
                             struct dns_result *result) {
    RM_ASSERT(result != NULL);
    struct dns_cache_entry *entry = dns_cache_find(attached, host);
    if (entry == NULL || reactor_now_ns(attached->reactor) >= entry->expires_ns) {
        return false;
    }
    RM_ASSERT(entry->error != 0 || entry->count > 0);
    entry->used = ++attached->cache_clock;
    result->cached = true;
    if (entry->error != 0) {
        dns_format_error(result, host, entry->error, entry->system_error);
        return true;
    }
    result->count = entry->count;
    memcpy(result->addresses, entry->addresses, sizeof(result->addresses));
    memcpy(result->lengths, entry->lengths, sizeof(result->lengths));
    return true;
}

/* An empty entry (used 0) if there is one, else the least recently used. */
static struct dns_cache_entry *dns_cache_victim(struct dns_reactor *attached) {
    RM_ASSERT(attached != NULL);
    struct dns_cache_entry *victim = &attached->cache[0];
    for (size_t index = 1; index < DNS_CACHE_ENTRIES; index++) {
        if (attached->cache[index].used < victim->used) {
            victim = &attached->cache[index];
        }
    }
    RM_ASSERT(victim != NULL);
    return victim;
}

/* Stores a lookup answer, replacing the same host, else an empty or the least recently used
 * entry. Failures live for the negative TTL so a bad name does not hammer the resolver. */
static void dns_cache_store(struct dns_reactor *attached, const struct dns_job *job) {
    RM_ASSERT(attached != NULL);
    RM_ASSERT(job->error != 0 || job->count > 0);
    struct dns_cache_entry *entry = dns_cache_find(attached, job->host);
    if (entry == NULL) {
        entry = dns_cache_victim(attached);
    }
    uint32_t ttl_ms = job->error != 0 ? attached->dns->config.negative_ttl_ms
                                      : attached->dns->config.ttl_ms;
    memcpy(entry->host, job->host, sizeof(entry->host));
    entry->expires_ns = reactor_now_ns(attached->reactor) + ttl_ms * DNS_NS_PER_MS;
    entry->used = ++attached->cache_clock;
    entry->error = job->error;
    entry->system_error = job->system_error;
    entry->count = job->count;
    memcpy(entry->addresses, job->addresses, sizeof(entry->addresses));
    memcpy(entry->lengths, job->lengths, sizeof(entry->lengths));
}

static void dns_ready_push(struct dns_reactor *attached, struct dns_request *request) {
    RM_ASSERT(request->next == NULL);
    RM_ASSERT(request->previous == NULL);
    request->previous = attached->ready_tail;
    if (attached->ready_tail != NULL) {
        attached->ready_tail->next = request;
    } else {
        attached->ready_head = request;
    }
    attached->ready_tail = request;
}

static void dns_ready_remove(struct dns_reactor *attached, struct dns_request *request) {
    RM_ASSERT(request->previous != NULL || attached->ready_head == request);
    RM_ASSERT(request->next != NULL || attached->ready_tail == request);
    if (request->previous != NULL) {
        request->previous->next = request->next;
    } else {
        attached->ready_head = request->next;
    }
    if (request->next != NULL) {
        request->next->previous = request->previous;
    } else {
        attached->ready_tail = request->previous;
    }
    request->previous = NULL;
    request->next = NULL;
}

static void dns_request_complete(struct dns_request *request) {
    RM_ASSERT(request->pending);
    RM_ASSERT(request->job == NULL);
    request->pending = false;
    request->callback(request, &request->result, request->context);
}

/* Tick hook: delivers literal and cached answers. Callbacks may resolve or cancel; the
 * starting length bounds the loop, and newly added requests wait for the next tick. */
static void dns_reactor_tick(struct reactor *reactor, void *context) {
    struct dns_reactor *attached = context;
    RM_ASSERT(attached != NULL);
    RM_ASSERT(attached->reactor == reactor);
    size_t waiting = 0;
    for (struct dns_request *request = attached->ready_head; request != NULL;
         request = request->next) {
        waiting++;
    }
    for (; waiting > 0 && attached->ready_head != NULL; waiting--) {
        struct dns_request *request = attached->ready_head;
        dns_ready_remove(attached, request);
        dns_request_complete(request);
    }
}

/* Answers the caller of a finished job (unless cancelled) and returns the slot. */
static void dns_job_finish(struct dns_reactor *attached, struct dns_job *job) {
    RM_ASSERT(job->reactor == reactor_index(attached->reactor));
    RM_ASSERT(job->error != 0 || job->count > 0);
    dns_cache_store(attached, job);
    struct dns_request *request = job->request;
    if (request != NULL) {
        RM_ASSERT(request->job == job);
        request->job = NULL;
        if (job->error != 0) {
            dns_format_error(&request->result, job->host, job->error, job->system_error);
        } else {
            request->result.count = job->count;
            memcpy(request->result.addresses, job->addresses, sizeof(job->addresses));
            memcpy(request->result.lengths, job->lengths, sizeof(job->lengths));
            dns_set_port(&request->result, request->port);
        }
    }
    struct dns *dns = attached->dns;
    dns_lock(dns);
    job->request = NULL;
    job->next = dns->free_jobs;
    dns->free_jobs = job;
    dns_unlock(dns);
    if (request != NULL) {
        dns_request_complete(request);
    }
}

static void dns_reactor_arm(struct dns_reactor *attached);

/* The eventfd read completed: the resolver answered at least one job for this reactor. The
 * slot is returned before the callback, so a callback may start a new lookup at once. */
static void dns_reactor_read_done(struct reactor_op *op, int result, uint32_t cqe_flags) {
    (void)cqe_flags;
    struct dns_reactor *attached = op->context;
    RM_ASSERT(attached != NULL);
    RM_ASSERT(&attached->read_op == op);
    if (result == -ECANCELED) {
        return;
    }
    if (result < 0 && result != -EINTR && result != -EAGAIN) {
        log_error("dns eventfd read failed; re-arming", "error", strerror(-result));
    }
    struct dns *dns = attached->dns;
    dns_lock(dns);
    struct dns_job *done = attached->done;
    attached->done = NULL;
    dns_unlock(dns);
    /* Bounded: at most queue_depth jobs exist. */
    for (uint32_t count = 0; done != NULL; count++) {
        RM_ASSERT(count < dns->config.queue_depth);
        struct dns_job *job = done;
        done = job->next;
        dns_job_finish(attached, job);
    }
    dns_reactor_arm(attached);
}

static void dns_reactor_arm(struct dns_reactor *attached) {
    RM_ASSERT(attached != NULL);
    RM_ASSERT(attached->eventfd >= 0);
    struct io_uring_sqe *sqe = reactor_sqe(attached->reactor, &attached->read_op);
    io_uring_prep_read(sqe, attached->eventfd, &attached->counter, sizeof(attached->counter),
                       0);
}

int dns_reactor_attach(struct dns *dns, struct reactor *reactor) {
    RM_ASSERT(dns != NULL);
    RM_ASSERT(reactor != NULL && reactor_current() == reactor);
    uint32_t index = reactor_index(reactor);
    RM_ASSERT(index < dns->config.reactors);
    RM_ASSERT(dns->reactors[index] == NULL);
    struct dns_reactor *attached = rm_calloc(1, sizeof(*attached));
    if (attached == NULL) {
        return -ENOMEM;
    }
    attached->eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (attached->eventfd < 0) {
        int error = errno;
        rm_free(attached);
        return -error;
    }
    attached->dns = dns;
    attached->reactor = reactor;
    attached->read_op = (struct reactor_op){.callback = dns_reactor_read_done,
                                            .context = attached};
    /* Published under the mutex: the resolver reads it after taking a job of this reactor,
     * which can only be queued after this point. */
    dns_lock(dns);
    dns->reactors[index] = attached;
    dns_unlock(dns);
    reactor_hook_add(reactor, (struct reactor_hook){.run = dns_reactor_tick,
                                                    .context = attached});
    dns_reactor_arm(attached);
    return 0;
}

/* Takes a free slot and queues the lookup; -EAGAIN when every slot is busy. */
static int dns_job_queue(struct dns_reactor *attached, struct dns_request *request,
                         const char *host, size_t length) {
    RM_ASSERT(length < DNS_HOST_MAX);
    RM_ASSERT(request->job == NULL);
    struct dns *dns = attached->dns;
    dns_lock(dns);
    struct dns_job *job = dns->free_jobs;
    if (job == NULL) {
        dns_unlock(dns);
        return -EAGAIN;
    }
    dns->free_jobs = job->next;
    job->next = NULL;
    job->request = request;
    job->reactor = reactor_index(attached->reactor);
    memcpy(job->host, host, length + 1);
    if (dns->queue_tail != NULL) {
        dns->queue_tail->next = job;
    } else {
        dns->queue_head = job;
    }
    dns->queue_tail = job;
    pthread_cond_signal(&dns->wake);
    dns_unlock(dns);
    request->job = job;
    return 0;
}

int dns_resolve(struct dns *dns, struct reactor *reactor, const char *host, uint16_t port,
                struct dns_request *request, dns_callback callback, void *context) {
    RM_ASSERT(dns != NULL && host != NULL && callback != NULL);
    RM_ASSERT(reactor != NULL && reactor_current() == reactor);
    RM_ASSERT(request != NULL && !request->pending);
    struct dns_reactor *attached = dns->reactors[reactor_index(reactor)];
    RM_ASSERT(attached != NULL);
    size_t length = strlen(host);
    if (length == 0 || length >= DNS_HOST_MAX) {
        return -EINVAL;
    }
    memset(request, 0, sizeof(*request));
    request->owner = attached;
    request->callback = callback;
    request->context = context;
    request->port = port;
    if (dns_literal(host, &request->result) || dns_cache_lookup(attached, host, &request->result)) {
        dns_set_port(&request->result, port);
        request->pending = true;
        dns_ready_push(attached, request);
        return 0;
    }
    int result = dns_job_queue(attached, request, host, length);
    request->pending = result == 0;
    return result;
}

void dns_cancel(struct dns *dns, struct dns_request *request) {
    RM_ASSERT(dns != NULL);
    RM_ASSERT(request != NULL);
    if (!request->pending) {
        return;
    }
    struct dns_reactor *attached = request->owner;
    RM_ASSERT(attached != NULL && attached->dns == dns);
    RM_ASSERT(reactor_current() == attached->reactor);
    if (request->job != NULL) {
        /* The resolver never reads this field; the slot comes back when the answer does. */
        request->job->request = NULL;
        request->job = NULL;
    } else {
        dns_ready_remove(attached, request);
    }
    request->pending = false;
}
