/* DNS on a real reactor group: literals without a lookup, a name from /etc/hosts (the
 * machine's own host name, resolved offline) and its cache hit, a bogus .invalid name, the
 * full queue, cancellation, and answers delivered on the requesting reactor (crosscore_dns).
 * Callbacks run on reactor threads, so they only record; the main thread asserts after the
 * group has been joined. */

#include <criterion/criterion.h>
#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "core/reactor.h"
#include "net/dns.h"

#define DNS_TEST_ANSWERS 8
#define DNS_TEST_DEADLINE_NS (10ull * 1000000000ull)

struct dns_test_answer {
    struct dns_request request;
    bool done;
    bool calling; /* dns_resolve is running for this answer */
    bool inside;  /* the callback ran inside dns_resolve */
    int error;
    uint32_t count;
    bool literal;
    bool cached;
    int family[DNS_ADDRESSES_MAX];
    uint16_t port[DNS_ADDRESSES_MAX];
    char message[DNS_MESSAGE_MAX];
    uint32_t wanted_reactor;
    uint32_t delivered_reactor;
    uint64_t started_ns;
    uint64_t elapsed_ns;
};

struct dns_test {
    struct dns *dns;
    struct reactor_group *group;
    void (*start)(struct reactor *reactor);
    void (*next)(struct dns_test_answer *answer); /* runs after each answer is recorded */
    uint64_t deadline_ns;
    atomic_bool timed_out;
    atomic_int remaining; /* answers still expected; the group stops at zero */
    int returned[DNS_TEST_ANSWERS]; /* dns_resolve return values, by answer */
    char hostname[256];
    struct dns_test_answer answers[DNS_TEST_ANSWERS];
};

static struct dns_test test;

static void dns_test_callback(struct dns_request *request, const struct dns_result *result,
                              void *context) {
    struct dns_test_answer *answer = context;
    (void)request;
    answer->done = true;
    answer->inside = answer->calling;
    answer->error = result->error;
    answer->count = result->count;
    answer->literal = result->literal;
    answer->cached = result->cached;
    for (uint32_t index = 0; index < result->count; index++) {
        const struct sockaddr_storage *address = &result->addresses[index];
        answer->family[index] = address->ss_family;
        answer->port[index] = address->ss_family == AF_INET
                                  ? ntohs(((const struct sockaddr_in *)address)->sin_port)
                                  : ntohs(((const struct sockaddr_in6 *)address)->sin6_port);
    }
    strcpy(answer->message, result->message);
    answer->delivered_reactor = reactor_index(reactor_current());
    answer->elapsed_ns = reactor_clock_ns() - answer->started_ns;
    if (test.next != NULL) {
        test.next(answer);
    }
    if (atomic_fetch_sub(&test.remaining, 1) == 1) {
        reactor_group_stop(test.group);
    }
}

/* Resolves into answers[slot] on the calling reactor, noting whether the callback ran inside
 * the call (it must not). */
static int dns_test_resolve(struct reactor *reactor, int slot, const char *host,
                            uint16_t port) {
    struct dns_test_answer *answer = &test.answers[slot];
    answer->wanted_reactor = reactor_index(reactor);
    answer->started_ns = reactor_clock_ns();
    answer->calling = true;
    int result = dns_resolve(test.dns, reactor, host, port, &answer->request, dns_test_callback,
                             answer);
    answer->calling = false;
    test.returned[slot] = result;
    return result;
}

static void dns_test_deadline(struct reactor *reactor, void *context) {
    (void)context;
    if (reactor_now_ns(reactor) > test.deadline_ns) {
        atomic_store(&test.timed_out, true);
        reactor_group_stop(test.group);
    }
}

static int dns_test_setup(struct reactor *reactor, void *context) {
    (void)context;
    int result = dns_reactor_attach(test.dns, reactor);
    if (result != 0) {
        return result;
    }
    reactor_hook_add(reactor, (struct reactor_hook){.run = dns_test_deadline});
    test.start(reactor);
    return 0;
}

static void dns_test_run(uint32_t reactors, uint32_t queue_depth, int expected,
                         void (*start)(struct reactor *reactor)) {
    test.start = start;
    atomic_store(&test.remaining, expected);
    struct dns_config config = {.reactors = reactors, .queue_depth = queue_depth};
    cr_assert_eq(dns_create(&config, &test.dns), 0);
    struct reactor_group_config group_config = {.reactors = reactors,
                                                .queue_depth = 64,
                                                .setup = dns_test_setup,
                                                .drain_timeout_ms = 1000};
    test.deadline_ns = reactor_clock_ns() + DNS_TEST_DEADLINE_NS;
    cr_assert_eq(reactor_group_create(&group_config, &test.group), 0);
    cr_assert_eq(reactor_group_start(test.group), 0);
    reactor_group_join(test.group);
    reactor_group_destroy(test.group);
    dns_destroy(test.dns);
    cr_assert_not(atomic_load(&test.timed_out), "answers did not arrive within 10 s");
}

static void dns_test_init(void) {
    memset(&test, 0, sizeof(test));
    cr_assert_eq(gethostname(test.hostname, sizeof(test.hostname) - 1), 0);
}

TestSuite(dns_resolve, .init = dns_test_init);
TestSuite(crosscore_dns, .init = dns_test_init);

static void dns_test_start_literals(struct reactor *reactor) {
    dns_test_resolve(reactor, 0, "127.0.0.1", 80);
    dns_test_resolve(reactor, 1, "::1", 443);
    dns_test_resolve(reactor, 2, "[::1]", 8443);
    dns_test_resolve(reactor, 3, "LocalHost", 8080);
}

Test(dns_resolve, literals_and_localhost_resolve_without_a_lookup) {
    dns_test_run(1, 1, 4, dns_test_start_literals);
    for (int slot = 0; slot < 4; slot++) {
        struct dns_test_answer *answer = &test.answers[slot];
        cr_assert_eq(test.returned[slot], 0);
        cr_assert(answer->done);
        cr_assert_not(answer->inside);
        cr_assert(answer->literal);
        cr_assert_eq(answer->error, 0);
    }
    cr_assert_eq(test.answers[0].family[0], AF_INET);
    cr_assert_eq(test.answers[0].port[0], 80);
    cr_assert_eq(test.answers[1].family[0], AF_INET6);
    cr_assert_eq(test.answers[1].port[0], 443);
    cr_assert_eq(test.answers[2].family[0], AF_INET6);
    cr_assert_eq(test.answers[3].count, 2);
    cr_assert_eq(test.answers[3].family[0], AF_INET);
    cr_assert_eq(test.answers[3].family[1], AF_INET6);
    cr_assert_eq(test.answers[3].port[1], 8080);
}

/* The first answer comes from getaddrinfo; asking again from its callback hits the cache. */
static void dns_test_again(struct dns_test_answer *answer) {
    if (answer == &test.answers[0]) {
        dns_test_resolve(reactor_current(), 1, test.hostname, 9000);
    }
}

static void dns_test_start_hostname(struct reactor *reactor) {
    test.next = dns_test_again;
    dns_test_resolve(reactor, 0, test.hostname, 8000);
}

Test(dns_resolve, a_hosts_file_name_resolves_and_then_hits_the_cache) {
    struct addrinfo *list = NULL;
    if (getaddrinfo(test.hostname, NULL, NULL, &list) != 0) {
        cr_skip_test("host name %s does not resolve on this machine", test.hostname);
    }
    freeaddrinfo(list);
    dns_test_run(1, 4, 2, dns_test_start_hostname);
    struct dns_test_answer *first = &test.answers[0];
    struct dns_test_answer *second = &test.answers[1];
    cr_assert_eq(first->error, 0, "%s", first->message);
    cr_assert_not(first->literal);
    cr_assert_not(first->cached);
    cr_assert_not(first->inside);
    cr_assert_geq(first->count, 1);
    cr_assert_eq(first->port[0], 8000);
    cr_assert_eq(second->error, 0);
    cr_assert(second->cached);
    cr_assert_not(second->inside);
    cr_assert_eq(second->count, first->count);
    cr_assert_eq(second->family[0], first->family[0]);
    cr_assert_eq(second->port[0], 9000);
}

static void dns_test_bogus_again(struct dns_test_answer *answer) {
    if (answer == &test.answers[0]) {
        dns_test_resolve(reactor_current(), 1, "nonexistent.invalid", 80);
    }
}

static void dns_test_start_bogus(struct reactor *reactor) {
    test.next = dns_test_bogus_again;
    dns_test_resolve(reactor, 0, "nonexistent.invalid", 80);
}

Test(dns_resolve, a_bogus_name_fails_quickly_and_the_failure_is_cached) {
    dns_test_run(1, 4, 2, dns_test_start_bogus);
    struct dns_test_answer *first = &test.answers[0];
    cr_assert_neq(first->error, 0);
    cr_assert_eq(first->count, 0);
    cr_assert_eq(strncmp(first->message, "cannot resolve nonexistent.invalid: ", 36), 0,
                 "message: %s", first->message);
    cr_assert_gt(strlen(first->message), 36);
    cr_assert_lt(first->elapsed_ns, 5000000000ull);
    cr_assert(test.answers[1].cached);
    cr_assert_str_eq(test.answers[1].message, first->message);
}

/* With one slot, a second lookup in the same tick is refused; once the first answer is in,
 * the slot is free again. */
static void dns_test_after_full(struct dns_test_answer *answer) {
    if (answer == &test.answers[0]) {
        dns_test_resolve(reactor_current(), 2, "another.invalid", 80);
    }
}

static void dns_test_start_full(struct reactor *reactor) {
    test.next = dns_test_after_full;
    dns_test_resolve(reactor, 0, "first.invalid", 80);
    dns_test_resolve(reactor, 1, "second.invalid", 80);
    dns_test_resolve(reactor, 3, "", 80);
    char long_name[DNS_HOST_MAX + 1];
    memset(long_name, 'a', DNS_HOST_MAX);
    long_name[DNS_HOST_MAX] = '\0';
    dns_test_resolve(reactor, 4, long_name, 80);
}

Test(dns_resolve, a_full_queue_refuses_with_eagain_and_bad_names_with_einval) {
    dns_test_run(1, 1, 2, dns_test_start_full);
    cr_assert_eq(test.returned[0], 0);
    cr_assert_eq(test.returned[1], -EAGAIN);
    cr_assert_not(test.answers[1].done);
    cr_assert_eq(test.returned[2], 0);
    cr_assert(test.answers[2].done);
    cr_assert_eq(test.returned[3], -EINVAL);
    cr_assert_eq(test.returned[4], -EINVAL);
    cr_assert_not(test.answers[3].done);
}

/* Cancelled requests (a lookup and a literal) never call back; a later lookup still does. */
static void dns_test_start_cancel(struct reactor *reactor) {
    dns_test_resolve(reactor, 0, "cancelled.invalid", 80);
    dns_test_resolve(reactor, 1, "127.0.0.1", 80);
    dns_cancel(test.dns, &test.answers[0].request);
    dns_cancel(test.dns, &test.answers[1].request);
    dns_test_resolve(reactor, 2, "kept.invalid", 80);
}

Test(dns_resolve, cancelled_requests_never_call_back) {
    dns_test_run(1, 2, 1, dns_test_start_cancel);
    cr_assert_eq(test.returned[0], 0);
    cr_assert_not(test.answers[0].done);
    cr_assert_not(test.answers[1].done);
    cr_assert(test.answers[2].done);
    cr_assert_neq(test.answers[2].error, 0);
}

static void dns_test_start_crosscore(struct reactor *reactor) {
    int base = (int)reactor_index(reactor) * 3;
    dns_test_resolve(reactor, base, test.hostname, 80);
    dns_test_resolve(reactor, base + 1, "127.0.0.1", 81);
    dns_test_resolve(reactor, base + 2, "nonexistent.invalid", 82);
}

Test(crosscore_dns, answers_arrive_on_the_requesting_reactor) {
    dns_test_run(2, 8, 6, dns_test_start_crosscore);
    for (int slot = 0; slot < 6; slot++) {
        struct dns_test_answer *answer = &test.answers[slot];
        cr_assert(answer->done);
        cr_assert_eq(answer->delivered_reactor, answer->wanted_reactor);
        cr_assert_eq(answer->wanted_reactor, (uint32_t)slot / 3);
    }
    cr_assert_eq(test.answers[1].error, 0);
    cr_assert_eq(test.answers[4].port[0], 81);
    cr_assert_neq(test.answers[5].error, 0);
}
