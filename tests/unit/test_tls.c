/* TLS against a real server: each test generates a throwaway PKI with the openssl CLI (a CA,
 * certificates for the right name, a wrong name, an unknown CA, expired and not yet valid)
 * and starts `openssl s_server -www` on a free loopback port. The connection is driven over a
 * plain blocking socket; the io_uring integration belongs to the HTTP client. */

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net/tls.h"
#include "net/tls_session.h"
#include "net/tls_trust.h"

#define TLS_TEST_PUMP_STEPS_MAX 10000
#define TLS_TEST_WAIT_MS_MAX 5000

/* Runs in the temporary directory given as $1. EC P-256 keys keep generation fast. */
static const char tls_test_pki_script[] =
    "set -e; cd \"$1\"\n"
    "k() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out \"$1\"; }\n"
    "k ca.key; k other.key; k leaf.key\n"
    "openssl req -x509 -new -key ca.key -subj /CN=ringmaster-test-ca -days 30 -out ca.crt\n"
    "openssl req -x509 -new -key other.key -subj /CN=ringmaster-other-ca -days 30 "
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
    "c() { openssl ca -batch -notext -config ca.cnf -cert ca.crt -keyfile ca.key "
    "-in leaf.csr -extfile local.ext -startdate \"$1\" -enddate \"$2\" -out \"$3.crt\"; }\n"
    "c 20200101000000Z 20200102000000Z expired\n"
    "c 20990101000000Z 21000101000000Z future\n";

struct tls_fixture {
    char directory[64];
    pid_t server;
    uint16_t port;
    struct tls_trust trust;
    struct tls_session_cache sessions;
};

static struct tls_fixture fixture;

static void tls_fixture_path(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", fixture.directory, name);
}

static void tls_fixture_init(void) {
    memset(&fixture, 0, sizeof(fixture));
    fixture.server = -1;
    strcpy(fixture.directory, "/tmp/rm-tls-XXXXXX");
    cr_assert_not_null(mkdtemp(fixture.directory));
    char script[128];
    tls_fixture_path(script, sizeof(script), "pki.sh");
    FILE *file = fopen(script, "w");
    cr_assert_not_null(file);
    fputs(tls_test_pki_script, file);
    fclose(file);
    char command[512];
    snprintf(command, sizeof(command), "sh %s %s > %s/pki.log 2>&1", script,
             fixture.directory, fixture.directory);
    cr_assert_eq(system(command), 0, "PKI generation failed; see %s/pki.log",
                 fixture.directory);
    char ca_file[128];
    tls_fixture_path(ca_file, sizeof(ca_file), "ca.crt");
    char error[TLS_TRUST_ERROR_MAX];
    cr_assert_eq(tls_trust_load(&fixture.trust, ca_file, error), 0, "%s", error);
    tls_session_init(&fixture.sessions);
}

static void tls_fixture_fini(void) {
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

TestSuite(tls_conn, .init = tls_fixture_init, .fini = tls_fixture_fini);

static uint16_t tls_test_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&address, sizeof(address)), 0);
    socklen_t length = sizeof(address);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&address, &length), 0);
    close(fd);
    return ntohs(address.sin_port);
}

/* A blocking loopback connection with 5 s timeouts, or -1 when nothing listens. */
static int tls_test_connect(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct timeval timeout = {.tv_sec = TLS_TEST_WAIT_MS_MAX / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port),
                                  .sin_addr.s_addr = htonl(0x7f000001)};
    if (connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Starts s_server with the named certificate (and the shared leaf key); waits until it
 * accepts connections. */
static void tls_test_server_start(const char *certificate) {
    char cert_path[128], key_path[128], log_path[128], accept[32];
    tls_fixture_path(cert_path, sizeof(cert_path), certificate);
    tls_fixture_path(key_path, sizeof(key_path), "leaf.key");
    tls_fixture_path(log_path, sizeof(log_path), "server.log");
    fixture.port = tls_test_free_port();
    snprintf(accept, sizeof(accept), "127.0.0.1:%u", fixture.port);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int null_fd = open("/dev/null", O_RDONLY);
        dup2(null_fd, STDIN_FILENO);
        dup2(log_fd, STDOUT_FILENO);
        dup2(log_fd, STDERR_FILENO);
        execlp("openssl", "openssl", "s_server", "-accept", accept, "-cert", cert_path, "-key",
               key_path, "-www", (char *)NULL);
        _exit(127);
    }
    fixture.server = child;
    for (int waited_ms = 0; waited_ms < TLS_TEST_WAIT_MS_MAX; waited_ms += 20) {
        int fd = tls_test_connect(fixture.port);
        if (fd >= 0) {
            close(fd);
            return;
        }
        usleep(20 * 1000);
    }
    cr_assert_fail("openssl s_server did not listen on %s", accept);
}

/* One transport step: send what the engine wants to send, else receive what it can take.
 * Returns false when the engine wants nothing. */
static bool tls_test_pump_once(struct tls_conn *conn, int fd) {
    size_t length = 0;
    unsigned char *bytes = tls_conn_send_buf(conn, &length);
    if (bytes != NULL) {
        ssize_t sent = send(fd, bytes, length, MSG_NOSIGNAL);
        if (sent <= 0) {
            tls_conn_recv_eof(conn);
        } else {
            tls_conn_send_ack(conn, (size_t)sent);
        }
        return true;
    }
    bytes = tls_conn_recv_buf(conn, &length);
    if (bytes == NULL) {
        return false;
    }
    ssize_t got = recv(fd, bytes, length, 0);
    if (got <= 0) {
        tls_conn_recv_eof(conn);
    } else {
        tls_conn_recv_ack(conn, (size_t)got);
    }
    return true;
}

static void tls_test_handshake(struct tls_conn *conn, int fd) {
    for (int step = 0; step < TLS_TEST_PUMP_STEPS_MAX; step++) {
        if (tls_conn_handshake_done(conn) || tls_conn_closed(conn)) {
            return;
        }
        if (!tls_test_pump_once(conn, fd)) {
            return;
        }
    }
    cr_assert_fail("handshake did not finish in %d steps", TLS_TEST_PUMP_STEPS_MAX);
}

/* Sends an HTTP GET and reads the plaintext response until the connection closes. */
static size_t tls_test_get(struct tls_conn *conn, int fd, char *response, size_t capacity) {
    static const char request[] = "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n";
    cr_assert_eq(tls_conn_write(conn, request, sizeof(request) - 1), sizeof(request) - 1);
    tls_conn_flush(conn);
    size_t used = 0;
    for (int step = 0; step < TLS_TEST_PUMP_STEPS_MAX; step++) {
        used += tls_conn_read(conn, response + used, capacity - 1 - used);
        if (tls_conn_closed(conn) || used == capacity - 1 || !tls_test_pump_once(conn, fd)) {
            break;
        }
    }
    used += tls_conn_read(conn, response + used, capacity - 1 - used);
    response[used] = '\0';
    return used;
}

/* Connects to the running server as `host` and runs the handshake to its end. */
static int tls_test_connect_as(struct tls_conn *conn, const char *host) {
    cr_assert_eq(tls_conn_init(conn, &fixture.trust, &fixture.sessions, host), 0);
    int fd = tls_test_connect(fixture.port);
    cr_assert_geq(fd, 0);
    tls_test_handshake(conn, fd);
    return fd;
}

static void tls_test_expect_failure(const char *certificate, const char *host,
                                    enum tls_error expected, const char *message) {
    tls_test_server_start(certificate);
    struct tls_conn conn;
    int fd = tls_test_connect_as(&conn, host);
    cr_assert(tls_conn_closed(&conn));
    cr_assert_not(tls_conn_handshake_done(&conn));
    cr_assert_eq(tls_conn_error(&conn), expected, "got %s: %s",
                 tls_error_name(tls_conn_error(&conn)), tls_conn_error_message(&conn));
    cr_assert_str_eq(tls_conn_error_message(&conn), message);
    tls_conn_destroy(&conn);
    close(fd);
}

Test(tls_conn, a_valid_chain_completes_and_http_get_returns_200) {
    tls_test_server_start("good.crt");
    struct tls_conn conn;
    int fd = tls_test_connect_as(&conn, "localhost");
    cr_assert(tls_conn_handshake_done(&conn), "%s", tls_conn_error_message(&conn));
    cr_assert_not(tls_conn_resumed(&conn));
    cr_assert_eq(tls_conn_error(&conn), TLS_ERROR_NONE);
    char response[8192];
    size_t length = tls_test_get(&conn, fd, response, sizeof(response));
    cr_assert_gt(length, 12);
    cr_assert_eq(strncmp(response, "HTTP/1.0 200", 12), 0, "response: %.80s", response);
    cr_assert(tls_conn_closed(&conn));
    tls_conn_destroy(&conn);
    close(fd);
}

Test(tls_conn, a_second_connection_resumes_the_session) {
    tls_test_server_start("good.crt");
    char response[8192];
    for (int round = 0; round < 2; round++) {
        struct tls_conn conn;
        int fd = tls_test_connect_as(&conn, "localhost");
        cr_assert(tls_conn_handshake_done(&conn), "%s", tls_conn_error_message(&conn));
        cr_assert_eq(tls_conn_resumed(&conn), round == 1);
        tls_test_get(&conn, fd, response, sizeof(response));
        cr_assert_eq(strncmp(response, "HTTP/1.0 200", 12), 0);
        tls_conn_destroy(&conn);
        close(fd);
    }
    cr_assert_eq(fixture.sessions.hits, 1);
}

Test(tls_conn, a_certificate_for_another_name_fails_with_name_mismatch) {
    tls_test_expect_failure("wrong.crt", "localhost", TLS_ERROR_NAME_MISMATCH,
                            "certificate does not match host localhost");
}

Test(tls_conn, an_ip_literal_host_fails_unless_the_certificate_names_it) {
    tls_test_expect_failure(
        "good.crt", "127.0.0.1", TLS_ERROR_NAME_MISMATCH,
        "certificate does not match host 127.0.0.1 (IP addresses are matched only against "
        "DNS names in the certificate; connect by a host name it lists)");
}

Test(tls_conn, an_unknown_issuer_fails_with_unknown_ca) {
    tls_test_expect_failure("unknown.crt", "localhost", TLS_ERROR_UNKNOWN_CA,
                            "certificate of localhost not trusted: unknown issuer; add its CA "
                            "to tls.ca_file");
}

Test(tls_conn, an_expired_certificate_fails_with_expired) {
    tls_test_expect_failure("expired.crt", "localhost", TLS_ERROR_EXPIRED,
                            "certificate of localhost expired; the server must renew it");
}

Test(tls_conn, a_future_certificate_fails_with_not_yet_valid) {
    tls_test_expect_failure("future.crt", "localhost", TLS_ERROR_NOT_YET_VALID,
                            "certificate of localhost is not yet valid; check the clocks of "
                            "the server and of this machine");
}

Test(tls_conn, a_failed_verification_forgets_the_cached_session) {
    tls_test_server_start("good.crt");
    struct tls_conn conn;
    int fd = tls_test_connect_as(&conn, "localhost");
    cr_assert(tls_conn_handshake_done(&conn));
    tls_conn_destroy(&conn);
    close(fd);
    br_ssl_session_parameters parameters;
    cr_assert(tls_session_lookup(&fixture.sessions, "localhost", &parameters));
    kill(fixture.server, SIGKILL);
    waitpid(fixture.server, NULL, 0);
    fixture.server = -1;
    tls_test_expect_failure("wrong.crt", "localhost", TLS_ERROR_NAME_MISMATCH,
                            "certificate does not match host localhost");
    cr_assert_not(tls_session_lookup(&fixture.sessions, "localhost", &parameters));
}

/* A listener that accepts and closes at once: the handshake sees end of file. */
Test(tls_conn, a_peer_closing_during_the_handshake_fails_with_closed) {
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    cr_assert_eq(bind(listener, (struct sockaddr *)&address, sizeof(address)), 0);
    socklen_t length = sizeof(address);
    cr_assert_eq(getsockname(listener, (struct sockaddr *)&address, &length), 0);
    cr_assert_eq(listen(listener, 4), 0);
    fixture.port = ntohs(address.sin_port);
    struct tls_conn conn;
    cr_assert_eq(tls_conn_init(&conn, &fixture.trust, NULL, "localhost"), 0);
    int fd = tls_test_connect(fixture.port);
    cr_assert_geq(fd, 0);
    close(accept(listener, NULL, NULL));
    tls_test_handshake(&conn, fd);
    cr_assert(tls_conn_closed(&conn));
    cr_assert_eq(tls_conn_error(&conn), TLS_ERROR_CLOSED);
    cr_assert_str_eq(tls_conn_error_message(&conn),
                     "localhost closed the connection during the TLS handshake; check that "
                     "the port speaks TLS");
    tls_conn_destroy(&conn);
    close(fd);
    close(listener);
}

Test(tls_conn, init_rejects_empty_and_oversized_host_names) {
    struct tls_conn conn;
    cr_assert_eq(tls_conn_init(&conn, &fixture.trust, NULL, ""), -EINVAL);
    cr_assert_str_eq(tls_conn_error_message(&conn), "TLS host name must be 1 to 255 bytes long");
    char host[TLS_HOST_MAX + 1];
    memset(host, 'a', sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    cr_assert_eq(tls_conn_init(&conn, &fixture.trust, NULL, host), -EINVAL);
    tls_conn_destroy(&conn);
}

Test(tls_errors, every_reason_has_a_distinct_label) {
    cr_assert_str_eq(tls_error_name(TLS_ERROR_NONE), "none");
    cr_assert_str_eq(tls_error_name(TLS_ERROR_UNKNOWN_CA), "unknown_ca");
    cr_assert_str_eq(tls_error_name(TLS_ERROR_NAME_MISMATCH), "name_mismatch");
    cr_assert_str_eq(tls_error_name(TLS_ERROR_EXPIRED), "expired");
    cr_assert_str_eq(tls_error_name(TLS_ERROR_PROTOCOL), "protocol");
    cr_assert_str_eq(tls_error_name(TLS_ERROR_CLOSED), "closed");
    for (int first = 0; first < TLS_ERROR_COUNT; first++) {
        for (int second = first + 1; second < TLS_ERROR_COUNT; second++) {
            cr_assert_str_neq(tls_error_name(first), tls_error_name(second));
        }
    }
}

Test(tls_trust, a_missing_file_names_its_path) {
    struct tls_trust trust;
    char error[TLS_TRUST_ERROR_MAX];
    cr_assert_eq(tls_trust_load(&trust, "/nonexistent/ca.pem", error), -ENOENT);
    cr_assert_str_eq(error, "cannot open CA file /nonexistent/ca.pem: No such file or "
                            "directory; set tls.ca_file to a PEM bundle");
    cr_assert_eq(trust.count, 0);
}

Test(tls_trust, a_file_without_certificates_is_an_error) {
    char path[] = "/tmp/rm-tls-empty-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "not a certificate\n", 18), 18);
    close(fd);
    struct tls_trust trust;
    char error[TLS_TRUST_ERROR_MAX], expected[TLS_TRUST_ERROR_MAX];
    int result = tls_trust_load(&trust, path, error);
    unlink(path);
    cr_assert_eq(result, -EINVAL);
    snprintf(expected, sizeof(expected), "no certificates found in CA file %s; it must hold "
             "PEM \"BEGIN CERTIFICATE\" blocks", path);
    cr_assert_str_eq(error, expected);
}

Test(tls_trust, the_system_bundle_loads) {
    if (access(TLS_TRUST_DEFAULT_FILE, R_OK) != 0) {
        cr_skip_test("no system CA bundle at %s", TLS_TRUST_DEFAULT_FILE);
    }
    struct tls_trust trust;
    char error[TLS_TRUST_ERROR_MAX];
    cr_assert_eq(tls_trust_load(&trust, NULL, error), 0, "%s", error);
    cr_assert_gt(trust.count, 10);
    cr_assert_not_null(trust.anchors[0].dn.data);
    tls_trust_free(&trust);
    cr_assert_eq(trust.count, 0);
}

static void tls_session_fill(br_ssl_session_parameters *parameters, unsigned char id) {
    memset(parameters, 0, sizeof(*parameters));
    parameters->session_id_len = 32;
    memset(parameters->session_id, id, sizeof(parameters->session_id));
}

Test(tls_session, the_least_recently_used_entry_is_replaced) {
    static struct tls_session_cache cache;
    tls_session_init(&cache);
    br_ssl_session_parameters parameters;
    char name[32];
    for (int index = 0; index < TLS_SESSION_ENTRIES; index++) {
        snprintf(name, sizeof(name), "host%d.example", index);
        tls_session_fill(&parameters, (unsigned char)index);
        tls_session_store(&cache, name, &parameters);
    }
    cr_assert(tls_session_lookup(&cache, "HOST0.example", &parameters));
    cr_assert_eq(parameters.session_id[0], 0);
    tls_session_fill(&parameters, 200);
    tls_session_store(&cache, "newcomer.example", &parameters);
    cr_assert(tls_session_lookup(&cache, "host0.example", &parameters));
    cr_assert_not(tls_session_lookup(&cache, "host1.example", &parameters));
    cr_assert(tls_session_lookup(&cache, "newcomer.example", &parameters));
    cr_assert_eq(parameters.session_id[0], 200);
    tls_session_forget(&cache, "newcomer.example");
    cr_assert_not(tls_session_lookup(&cache, "newcomer.example", &parameters));
    tls_session_clear(&cache);
    cr_assert_not(tls_session_lookup(&cache, "host0.example", &parameters));
}
