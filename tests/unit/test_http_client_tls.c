/* The outbound client over https and to named hosts, on a real reactor. TLS tests generate a
 * throwaway PKI with the openssl CLI in a temporary directory (a CA; leaf certificates for
 * localhost, for another name, from an unknown CA and expired) and talk to a real
 * `openssl s_server -www` (which closes every connection) or, for keep-alive, to nginx; the
 * server is killed when the test ends. DNS tests resolve the machine's own host name (offline,
 * through /etc/hosts) and a .invalid name that never resolves. */

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/metrics.h"
#include "core/reactor.h"
#include "net/dns.h"
#include "net/http_client.h"
#include "net/tls_trust.h"

#define TLS_CLIENT_REQUESTS_MAX 4
#define TLS_CLIENT_WAIT_MS_MAX 5000

/* Runs in the temporary directory given as $1. EC P-256 keys keep generation fast. */
static const char tls_client_pki_script[] =
    "set -e; cd \"$1\"\n"
    "k() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out \"$1\"; }\n"
    "k ca.key; k other.key; k leaf.key\n"
    "openssl req -x509 -new -key ca.key -subj /CN=rm-client-test-ca -days 30 -out ca.crt\n"
    "openssl req -x509 -new -key other.key -subj /CN=rm-client-other-ca -days 30 "
    "-out other.crt\n"
    "openssl req -new -key leaf.key -subj /CN=localhost -out leaf.csr\n"
    "printf 'subjectAltName=DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > local.ext\n"
    "printf 'subjectAltName=DNS:wrong.example\\nbasicConstraints=CA:FALSE\\n' > wrong.ext\n"
    "s() { openssl x509 -req -in leaf.csr -CA \"$1.crt\" -CAkey \"$1.key\" -set_serial \"$4\" "
    "-days 30 -extfile \"$2.ext\" -out \"$3.crt\"; }\n"
    "s ca local good 1; s ca wrong wrong 2; s other local unknown 3\n"
    ": > index.txt; echo 10 > serial\n"
    "printf '[ca]\\ndefault_ca=t\\n[t]\\ndatabase=index.txt\\nunique_subject=no\\n"
    "new_certs_dir=.\\nserial=serial\\ndefault_md=sha256\\npolicy=p\\n[p]\\n"
    "commonName=supplied\\n' > ca.cnf\n"
    "openssl ca -batch -notext -config ca.cnf -cert ca.crt -keyfile ca.key -in leaf.csr "
    "-extfile local.ext -startdate 20200101000000Z -enddate 20200102000000Z -out expired.crt\n";

struct tls_client_result {
    enum http_client_outcome outcome;
    int status;
    char body[512];
    char error[HTTP_CLIENT_ERROR_BYTES];
};

struct tls_client_scenario {
    struct reactor_group *group;
    struct metrics_registry *metrics;
    struct http_client *client;
    struct dns *dns;
    struct http_client_options options;
    struct http_client_upstream_config config;
    char url[384];
    uint32_t request_count;
    struct http_client_request requests[TLS_CLIENT_REQUESTS_MAX];
    struct tls_client_result results[TLS_CLIENT_REQUESTS_MAX];
    uint32_t completed;
    struct http_client_upstream_stats stats;
    int upstream_id;
    char add_error[512];
    char metrics_text[65536];
};

struct tls_client_fixture {
    char directory[64];
    pid_t server;
    uint16_t port;
    struct tls_trust trust;
};

static struct tls_client_scenario scenario;
static struct tls_client_fixture fixture;

/* ---- the client on one reactor ---- */

static void tls_client_send(uint32_t index);

static void tls_client_on_complete(struct http_client_request *request,
                                   const struct http_client_response *response)
{
    struct tls_client_result *result = request->context;
    result->outcome = response->outcome;
    result->status = response->status;
    snprintf(result->error, sizeof(result->error), "%s", response->error);
    if (response->body != NULL) {
        snprintf(result->body, sizeof(result->body), "%.*s", (int)response->body_length,
                 response->body);
    }
    uint32_t index = (uint32_t)(result - scenario.results);
    scenario.completed++;
    if (index + 1 < scenario.request_count) {
        tls_client_send(index + 1); /* one after the other: s_server serves one at a time */
        return;
    }
    scenario.stats = http_client_stats(scenario.client, 0);
    reactor_group_stop(scenario.group);
}

static void tls_client_send(uint32_t index)
{
    struct http_client_request *request = &scenario.requests[index];
    memset(request, 0, sizeof(*request));
    request->upstream = (uint32_t)scenario.upstream_id;
    request->method = "GET";
    request->path = "/";
    request->on_complete = tls_client_on_complete;
    request->context = &scenario.results[index];
    cr_assert_eq(http_client_send(scenario.client, request), 0, "%s", request->error);
}

static int tls_client_setup(struct reactor *reactor, void *context)
{
    (void)context;
    if (scenario.dns != NULL) {
        cr_assert_eq(dns_reactor_attach(scenario.dns, reactor), 0);
    }
    cr_assert_eq(http_client_create(reactor, scenario.metrics, &scenario.options,
                                    &scenario.client), 0);
    scenario.config.url = scenario.url;
    scenario.upstream_id = http_client_add_upstream(scenario.client, &scenario.config,
                                                    scenario.add_error,
                                                    sizeof(scenario.add_error));
    if (scenario.upstream_id < 0) {
        reactor_group_stop(scenario.group);
        return 0;
    }
    tls_client_send(0);
    return 0;
}

static void tls_client_teardown(struct reactor *reactor, void *context)
{
    (void)reactor;
    (void)context;
    http_client_destroy(scenario.client);
}

static bool tls_client_busy(struct reactor *reactor, void *context)
{
    (void)reactor;
    (void)context;
    return http_client_busy(scenario.client);
}

static void tls_client_prepare(const char *url, uint32_t requests)
{
    memset(&scenario, 0, sizeof(scenario));
    snprintf(scenario.url, sizeof(scenario.url), "%s", url);
    scenario.config = (struct http_client_upstream_config){
        .name = "test-up",
        .max_connections = 2,
        .max_idle = 0,
        .max_queued = 8,
        .idle_timeout_ms = 5000,
        .connect_timeout_ms = 2000,
        .first_byte_timeout_ms = 3000,
        .total_timeout_ms = 8000,
        .limits = {.max_status_line_bytes = 256, .max_header_bytes = 8192, .max_headers = 64,
                   .max_body_bytes = 1 << 20},
        .max_event_bytes = 4096,
    };
    scenario.request_count = requests;
    scenario.options.trust = fixture.trust.count > 0 ? &fixture.trust : NULL;
}

static void tls_client_run(void)
{
    scenario.metrics = metrics_create(1);
    cr_assert_not_null(scenario.metrics);
    struct reactor_group_config config = {
        .reactors = 1, .queue_depth = 64, .setup = tls_client_setup,
        .teardown = tls_client_teardown, .busy = tls_client_busy, .drain_timeout_ms = 2000};
    cr_assert_eq(reactor_group_create(&config, &scenario.group), 0);
    cr_assert_eq(reactor_group_start(scenario.group), 0);
    reactor_group_join(scenario.group);
    reactor_group_destroy(scenario.group);
    dns_destroy(scenario.dns);
    scenario.dns = NULL;
    char *text = NULL;
    size_t length = metrics_render(scenario.metrics, &text);
    cr_assert_not_null(text);
    snprintf(scenario.metrics_text, sizeof(scenario.metrics_text), "%.*s", (int)length, text);
    rm_free(text);
    metrics_destroy(scenario.metrics);
}

static void tls_client_expect_metric(const char *series)
{
    cr_assert_not_null(strstr(scenario.metrics_text, series), "missing %s in:\n%s", series,
                       scenario.metrics_text);
}

/* ---- the PKI and openssl s_server ---- */

static void tls_client_path(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", fixture.directory, name);
}

static void tls_client_fixture_init(void)
{
    memset(&fixture, 0, sizeof(fixture));
    fixture.server = -1;
    /* mkdtemp wants a template ending in six 'X' characters. */
    static const char prefix[] = "/tmp/rm-client-tls-";
    memcpy(fixture.directory, prefix, sizeof(prefix) - 1);
    memset(fixture.directory + sizeof(prefix) - 1, 'X', 6);
    cr_assert_not_null(mkdtemp(fixture.directory));
    char script[128];
    tls_client_path(script, sizeof(script), "pki.sh");
    FILE *file = fopen(script, "w");
    cr_assert_not_null(file);
    fputs(tls_client_pki_script, file);
    fclose(file);
    char command[512];
    snprintf(command, sizeof(command), "sh %s %s > %s/pki.log 2>&1", script,
             fixture.directory, fixture.directory);
    cr_assert_eq(system(command), 0, "PKI generation failed; see %s/pki.log",
                 fixture.directory);
    char ca_file[128];
    tls_client_path(ca_file, sizeof(ca_file), "ca.crt");
    char error[TLS_TRUST_ERROR_MAX];
    cr_assert_eq(tls_trust_load(&fixture.trust, ca_file, error), 0, "%s", error);
}

static void tls_client_fixture_fini(void)
{
    if (fixture.server > 0) {
        kill(fixture.server, SIGKILL);
        waitpid(fixture.server, NULL, 0);
        fixture.server = -1;
    }
    tls_trust_free(&fixture.trust);
    if (fixture.directory[0] != '\0') {
        char command[192];
        snprintf(command, sizeof(command), "rm -rf %s", fixture.directory);
        cr_assert_eq(system(command), 0);
        fixture.directory[0] = '\0';
    }
}

TestSuite(http_client_tls, .init = tls_client_fixture_init, .fini = tls_client_fixture_fini);

/* A listening loopback socket on a free port; the caller closes it. */
static int tls_client_listen(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&address, sizeof(address)), 0);
    cr_assert_eq(listen(fd, 8), 0);
    socklen_t length = sizeof(address);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&address, &length), 0);
    *port = ntohs(address.sin_port);
    return fd;
}

static bool tls_client_server_up(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port),
                                  .sin_addr.s_addr = htonl(0x7f000001)};
    bool up = connect(fd, (struct sockaddr *)&address, sizeof(address)) == 0;
    close(fd);
    return up;
}

/* Starts s_server with the named certificate and waits until it accepts connections. */
static void tls_client_server_start(const char *certificate)
{
    char cert_path[128], key_path[128], log_path[128], accept_on[32];
    tls_client_path(cert_path, sizeof(cert_path), certificate);
    tls_client_path(key_path, sizeof(key_path), "leaf.key");
    tls_client_path(log_path, sizeof(log_path), "server.log");
    int probe = tls_client_listen(&fixture.port);
    close(probe);
    snprintf(accept_on, sizeof(accept_on), "127.0.0.1:%u", fixture.port);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        /* A test process that dies before its fini must not leave the server running. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int null_fd = open("/dev/null", O_RDONLY);
        dup2(null_fd, STDIN_FILENO);
        dup2(log_fd, STDOUT_FILENO);
        dup2(log_fd, STDERR_FILENO);
        execlp("openssl", "openssl", "s_server", "-accept", accept_on, "-cert", cert_path,
               "-key", key_path, "-www", (char *)NULL);
        _exit(127);
    }
    fixture.server = child;
    for (int waited_ms = 0; waited_ms < TLS_CLIENT_WAIT_MS_MAX; waited_ms += 20) {
        if (tls_client_server_up(fixture.port)) {
            return;
        }
        usleep(20 * 1000);
    }
    cr_assert_fail("openssl s_server did not listen on %s", accept_on);
}

/* One request to an s_server holding `certificate`, through `host`; returns its result. */
static struct tls_client_result *tls_client_against(const char *certificate, const char *host)
{
    tls_client_server_start(certificate);
    char url[128];
    snprintf(url, sizeof(url), "https://%s:%u", host, fixture.port);
    tls_client_prepare(url, 1);
    tls_client_run();
    cr_assert_eq(scenario.upstream_id, 0, "%s", scenario.add_error);
    return &scenario.results[0];
}

static void tls_client_expect_failure(const char *certificate, const char *host,
                                      const char *reason, const char *message)
{
    struct tls_client_result *result = tls_client_against(certificate, host);
    cr_assert_eq(result->outcome, HTTP_CLIENT_TLS_ERROR, "%s: %s",
                 http_client_outcome_name(result->outcome), result->error);
    char expected[HTTP_CLIENT_ERROR_BYTES];
    snprintf(expected, sizeof(expected), "upstream test-up (%s:%u): %s", host, fixture.port,
             message);
    cr_assert_str_eq(result->error, expected);
    char series[160];
    snprintf(series, sizeof(series),
             "ringmaster_tls_failures_total{upstream=\"test-up\",reason=\"%s\"} 1", reason);
    tls_client_expect_metric(series);
    tls_client_expect_metric("ringmaster_upstream_requests_total{upstream=\"test-up\","
                             "outcome=\"tls_error\"} 1");
}

Test(http_client_tls, a_valid_chain_returns_200_and_the_next_connection_resumes)
{
    tls_client_server_start("good.crt");
    char url[64];
    snprintf(url, sizeof(url), "https://localhost:%u", fixture.port);
    tls_client_prepare(url, 2);
    tls_client_run();
    cr_assert_eq(scenario.upstream_id, 0, "%s", scenario.add_error);
    for (int i = 0; i < 2; i++) {
        struct tls_client_result *result = &scenario.results[i];
        cr_assert_eq(result->outcome, HTTP_CLIENT_OK, "request %d: %s", i, result->error);
        cr_assert_eq(result->status, 200);
        cr_assert_not_null(strstr(result->body, "<HTML>"), "body: %.80s", result->body);
    }
    cr_assert_eq(scenario.stats.connections_opened, 2);
    tls_client_expect_metric("ringmaster_tls_handshakes_total{upstream=\"test-up\","
                             "kind=\"full\"} 1");
    tls_client_expect_metric("ringmaster_tls_handshakes_total{upstream=\"test-up\","
                             "kind=\"resumed\"} 1");
    tls_client_expect_metric("ringmaster_upstream_tls_handshake_seconds_count{"
                             "upstream=\"test-up\"} 2");
}

/* nginx in the foreground as one process (master_process off), so that killing the pid the
 * fixture holds ends it; everything it writes stays under `prefix`. */
static const char tls_client_nginx_conf[] =
    "master_process off;\n"
    "daemon off;\n"
    "pid %1$s/nginx.pid;\n"
    "error_log %1$s/error.log warn;\n"
    "events { worker_connections 64; }\n"
    "http {\n"
    "    access_log off;\n"
    "    client_body_temp_path %1$s/body;\n"
    "    proxy_temp_path %1$s/proxy;\n"
    "    fastcgi_temp_path %1$s/fastcgi;\n"
    "    uwsgi_temp_path %1$s/uwsgi;\n"
    "    scgi_temp_path %1$s/scgi;\n"
    "    keepalive_timeout 30s;\n"
    "    server {\n"
    "        listen 127.0.0.1:%2$u ssl;\n"
    "        ssl_certificate %3$s/good.crt;\n"
    "        ssl_certificate_key %3$s/leaf.key;\n"
    "        ssl_protocols TLSv1.2;\n"
    "        location / { return 200 \"ok\"; }\n"
    "    }\n"
    "}\n";

/* Starts nginx serving TLS with keep-alive on a free port and waits until it listens. */
static void tls_client_nginx_start(void)
{
    char prefix[128], conf_path[160], log_path[160];
    tls_client_path(prefix, sizeof(prefix), "nginx");
    cr_assert_eq(mkdir(prefix, 0700), 0);
    snprintf(conf_path, sizeof(conf_path), "%s/nginx.conf", prefix);
    snprintf(log_path, sizeof(log_path), "%s/error.log", prefix);
    int probe = tls_client_listen(&fixture.port);
    close(probe);
    FILE *file = fopen(conf_path, "w");
    cr_assert_not_null(file);
    fprintf(file, tls_client_nginx_conf, prefix, fixture.port, fixture.directory);
    cr_assert_eq(fclose(file), 0);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int null_fd = open("/dev/null", O_RDONLY);
        dup2(null_fd, STDIN_FILENO);
        dup2(log_fd, STDOUT_FILENO);
        dup2(log_fd, STDERR_FILENO);
        execlp("nginx", "nginx", "-p", prefix, "-e", log_path, "-c", conf_path, (char *)NULL);
        _exit(127);
    }
    fixture.server = child;
    for (int waited_ms = 0; waited_ms < TLS_CLIENT_WAIT_MS_MAX; waited_ms += 20) {
        if (tls_client_server_up(fixture.port)) {
            return;
        }
        cr_assert_eq(waitpid(child, NULL, WNOHANG), 0, "nginx exited; see %s", log_path);
        usleep(20 * 1000);
    }
    cr_assert_fail("nginx did not listen on port %u; see %s", fixture.port, log_path);
}

/* s_server -www closes every connection, so keep-alive over TLS needs a real server. */
Test(http_client_tls, two_sequential_requests_reuse_one_tls_connection)
{
    tls_client_nginx_start();
    char url[64];
    snprintf(url, sizeof(url), "https://localhost:%u", fixture.port);
    tls_client_prepare(url, 2);
    scenario.config.max_idle = 1;
    tls_client_run();
    cr_assert_eq(scenario.upstream_id, 0, "%s", scenario.add_error);
    for (int i = 0; i < 2; i++) {
        struct tls_client_result *result = &scenario.results[i];
        cr_assert_eq(result->outcome, HTTP_CLIENT_OK, "request %d: %s", i, result->error);
        cr_assert_eq(result->status, 200);
        cr_assert_str_eq(result->body, "ok");
    }
    cr_assert_eq(scenario.completed, 2);
    cr_assert_eq(scenario.stats.connections_opened, 1);
    cr_assert_eq(scenario.stats.connections_reused, 1);
    tls_client_expect_metric("ringmaster_upstream_connect_seconds_count{upstream=\"test-up\"} 1");
    tls_client_expect_metric("ringmaster_tls_handshakes_total{upstream=\"test-up\","
                             "kind=\"full\"} 1");
    tls_client_expect_metric("ringmaster_tls_handshakes_total{upstream=\"test-up\","
                             "kind=\"resumed\"} 0");
}

Test(http_client_tls, an_ip_literal_host_fails_with_name_mismatch)
{
    tls_client_expect_failure(
        "good.crt", "127.0.0.1", "name_mismatch",
        "certificate does not match host 127.0.0.1 (IP addresses are matched only against "
        "DNS names in the certificate; connect by a host name it lists)");
}

Test(http_client_tls, a_certificate_for_another_name_fails_with_name_mismatch)
{
    tls_client_expect_failure("wrong.crt", "localhost", "name_mismatch",
                              "certificate does not match host localhost");
}

Test(http_client_tls, an_unknown_issuer_fails_with_unknown_ca)
{
    tls_client_expect_failure("unknown.crt", "localhost", "unknown_ca",
                              "certificate of localhost not trusted: unknown issuer; add its "
                              "CA to tls.ca_file");
}

Test(http_client_tls, an_expired_certificate_fails_with_expired)
{
    tls_client_expect_failure("expired.crt", "localhost", "expired",
                              "certificate of localhost expired; the server must renew it");
}

/* The kernel accepts the connection into the backlog; nobody ever answers the ClientHello. */
Test(http_client_tls, a_server_that_never_speaks_tls_hits_the_handshake_timeout)
{
    uint16_t port = 0;
    int listener = tls_client_listen(&port);
    char url[64];
    snprintf(url, sizeof(url), "https://localhost:%u", port);
    tls_client_prepare(url, 1);
    scenario.config.tls_timeout_ms = 300;
    tls_client_run();
    close(listener);
    cr_assert_eq(scenario.upstream_id, 0, "%s", scenario.add_error);
    struct tls_client_result *result = &scenario.results[0];
    cr_assert_eq(result->outcome, HTTP_CLIENT_TIMEOUT, "%s", result->error);
    char expected[HTTP_CLIENT_ERROR_BYTES];
    snprintf(expected, sizeof(expected),
             "upstream test-up (localhost:%u): TLS handshake not done within 300 ms", port);
    cr_assert_str_eq(result->error, expected);
}

Test(http_client_tls, an_https_upstream_without_trust_anchors_is_refused)
{
    tls_client_prepare("https://localhost:8443", 1);
    scenario.options.trust = NULL;
    tls_client_run();
    cr_assert_eq(scenario.upstream_id, -EINVAL);
    cr_assert_str_eq(scenario.add_error,
                     "upstream test-up: an https URL needs trust anchors and this client has "
                     "none; configure a CA bundle (tls.ca_file) or use an http:// URL");
}

/* ---- names ---- */

struct dns_server {
    int listen_fd;
    pthread_t thread;
};

/* Answers one request with a small keep-alive-free response. */
static void *dns_server_main(void *context)
{
    struct dns_server *server = context;
    int fd = accept(server->listen_fd, NULL, NULL);
    if (fd < 0) {
        return NULL;
    }
    struct timeval timeout = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    char buffer[4096];
    size_t length = 0;
    while (length < sizeof(buffer) - 1) {
        ssize_t got = recv(fd, buffer + length, sizeof(buffer) - 1 - length, 0);
        if (got <= 0) {
            break;
        }
        length += (size_t)got;
        buffer[length] = '\0';
        if (strstr(buffer, "\r\n\r\n") != NULL) {
            static const char response[] =
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nnamed";
            (void)send(fd, response, sizeof(response) - 1, MSG_NOSIGNAL);
            break;
        }
    }
    close(fd);
    return NULL;
}

/* Listens on the first address `host` resolves to; returns the port. */
static uint16_t dns_server_start(struct dns_server *server, const char *host)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *list = NULL;
    cr_assert_eq(getaddrinfo(host, "0", &hints, &list), 0);
    server->listen_fd = socket(list->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(server->listen_fd, 0);
    cr_assert_eq(bind(server->listen_fd, list->ai_addr, list->ai_addrlen), 0);
    freeaddrinfo(list);
    cr_assert_eq(listen(server->listen_fd, 4), 0);
    struct sockaddr_storage address;
    socklen_t length = sizeof(address);
    cr_assert_eq(getsockname(server->listen_fd, (struct sockaddr *)&address, &length), 0);
    cr_assert_eq(pthread_create(&server->thread, NULL, dns_server_main, server), 0);
    return address.ss_family == AF_INET
               ? ntohs(((struct sockaddr_in *)&address)->sin_port)
               : ntohs(((struct sockaddr_in6 *)&address)->sin6_port);
}

static void dns_server_stop(struct dns_server *server)
{
    shutdown(server->listen_fd, SHUT_RDWR);
    pthread_join(server->thread, NULL);
    close(server->listen_fd);
}

static void dns_client_prepare(const char *url)
{
    tls_client_prepare(url, 1);
    struct dns_config config = {.reactors = 1};
    cr_assert_eq(dns_create(&config, &scenario.dns), 0);
    scenario.options.dns = scenario.dns;
}

Test(http_client_dns, the_machine_host_name_resolves_and_serves)
{
    char host[256] = {0};
    cr_assert_eq(gethostname(host, sizeof(host) - 1), 0);
    struct addrinfo *list = NULL;
    if (getaddrinfo(host, NULL, NULL, &list) != 0) {
        cr_skip_test("host name %s does not resolve on this machine", host);
    }
    freeaddrinfo(list);
    struct dns_server server;
    uint16_t port = dns_server_start(&server, host);
    char url[384];
    snprintf(url, sizeof(url), "http://%s:%u", host, port);
    dns_client_prepare(url);
    tls_client_run();
    dns_server_stop(&server);
    cr_assert_eq(scenario.upstream_id, 0, "%s", scenario.add_error);
    struct tls_client_result *result = &scenario.results[0];
    cr_assert_eq(result->outcome, HTTP_CLIENT_OK, "%s", result->error);
    cr_assert_eq(result->status, 200);
    cr_assert_str_eq(result->body, "named");
}

Test(http_client_dns, an_unresolvable_name_is_a_connect_error)
{
    dns_client_prepare("http://nonexistent.invalid:8080");
    tls_client_run();
    cr_assert_eq(scenario.upstream_id, 0, "%s", scenario.add_error);
    struct tls_client_result *result = &scenario.results[0];
    cr_assert_eq(result->outcome, HTTP_CLIENT_CONNECT_ERROR, "%s", result->error);
    cr_assert_not_null(strstr(result->error, "upstream test-up (nonexistent.invalid:8080): "
                                             "cannot resolve nonexistent.invalid: "),
                       "%s", result->error);
    cr_assert_eq(scenario.stats.connections_opened, 0);
}

Test(http_client_dns, a_name_without_a_resolver_is_refused)
{
    tls_client_prepare("http://nonexistent.invalid:8080", 1);
    tls_client_run();
    cr_assert_eq(scenario.upstream_id, -EINVAL);
    cr_assert_str_eq(scenario.add_error,
                     "upstream test-up: the host is a name and this client has no resolver; "
                     "use an IP literal or localhost, or create the client with a dns "
                     "resolver");
}
