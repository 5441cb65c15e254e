#include "net/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/rm_assert.h"

_Static_assert(TLS_HOST_MAX <= sizeof(((br_ssl_engine_context *)0)->server_name),
               "BearSSL keeps the SNI name in a fixed buffer; ours must fit in it");
_Static_assert(TLS_HOST_MAX <= TLS_SESSION_NAME_MAX, "every host name must be cacheable");

/* BearSSL counts days from 0000-01-01 (proleptic Gregorian); the Unix epoch is day 719528. */
#define TLS_EPOCH_DAYS 719528u
#define TLS_SECONDS_PER_DAY 86400u

static const char *const tls_error_names[TLS_ERROR_COUNT] = {
    [TLS_ERROR_NONE] = "none",
    [TLS_ERROR_UNKNOWN_CA] = "unknown_ca",
    [TLS_ERROR_NAME_MISMATCH] = "name_mismatch",
    [TLS_ERROR_EXPIRED] = "expired",
    [TLS_ERROR_NOT_YET_VALID] = "not_yet_valid",
    [TLS_ERROR_BAD_CERTIFICATE] = "bad_certificate",
    [TLS_ERROR_PROTOCOL] = "protocol",
    [TLS_ERROR_ALERT] = "alert",
    [TLS_ERROR_CLOSED] = "closed",
    [TLS_ERROR_TRUNCATED] = "truncated",
};

const char *tls_error_name(enum tls_error error) {
    RM_ASSERT(error >= TLS_ERROR_NONE);
    RM_ASSERT(error < TLS_ERROR_COUNT);
    return tls_error_names[error];
}

/* The x509 wrapper: forwards everything to the minimal engine and decodes the end-entity
 * certificate on the side, for its validity dates. */
static struct tls_conn_x509 *tls_conn_x509_of(const br_x509_class **context) {
    RM_ASSERT(context != NULL);
    struct tls_conn_x509 *x509 = (struct tls_conn_x509 *)(void *)context;
    RM_ASSERT(x509->inner != NULL);
    return x509;
}

static void tls_conn_x509_start_chain(const br_x509_class **context, const char *server_name) {
    struct tls_conn_x509 *x509 = tls_conn_x509_of(context);
    x509->certificate_index = 0;
    x509->validity_known = false;
    (*x509->inner)->start_chain(x509->inner, server_name);
}

static void tls_conn_x509_start_cert(const br_x509_class **context, uint32_t length) {
    struct tls_conn_x509 *x509 = tls_conn_x509_of(context);
    if (x509->certificate_index == 0) {
        br_x509_decoder_init(&x509->decoder, NULL, NULL);
    }
    (*x509->inner)->start_cert(x509->inner, length);
}

static void tls_conn_x509_append(const br_x509_class **context, const unsigned char *bytes,
                                 size_t length) {
    struct tls_conn_x509 *x509 = tls_conn_x509_of(context);
    if (x509->certificate_index == 0) {
        br_x509_decoder_push(&x509->decoder, bytes, length);
    }
    (*x509->inner)->append(x509->inner, bytes, length);
}

static void tls_conn_x509_end_cert(const br_x509_class **context) {
    struct tls_conn_x509 *x509 = tls_conn_x509_of(context);
    if (x509->certificate_index == 0) {
        x509->validity_known = br_x509_decoder_last_error(&x509->decoder) == 0;
    }
    x509->certificate_index++;
    (*x509->inner)->end_cert(x509->inner);
}

static unsigned tls_conn_x509_end_chain(const br_x509_class **context) {
    struct tls_conn_x509 *x509 = tls_conn_x509_of(context);
    return (*x509->inner)->end_chain(x509->inner);
}

static const br_x509_pkey *tls_conn_x509_get_pkey(const br_x509_class *const *context,
                                                  unsigned *usages) {
    RM_ASSERT(context != NULL);
    const struct tls_conn_x509 *x509 = (const struct tls_conn_x509 *)(const void *)context;
    RM_ASSERT(x509->inner != NULL);
    return (*x509->inner)->get_pkey(x509->inner, usages);
}

static const br_x509_class tls_conn_x509_class = {
    .context_size = sizeof(struct tls_conn_x509),
    .start_chain = tls_conn_x509_start_chain,
    .start_cert = tls_conn_x509_start_cert,
    .append = tls_conn_x509_append,
    .end_cert = tls_conn_x509_end_cert,
    .end_chain = tls_conn_x509_end_chain,
    .get_pkey = tls_conn_x509_get_pkey,
};

static bool tls_conn_host_is_ip_literal(const char *host) {
    RM_ASSERT(host != NULL);
    unsigned char address[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, address) == 1 || inet_pton(AF_INET6, host, address) == 1;
}

/* Offers the host's cached session, if any, and starts the handshake. */
static int tls_conn_start(struct tls_conn *conn) {
    RM_ASSERT(conn->buffer != NULL);
    RM_ASSERT(conn->host[0] != '\0');
    br_ssl_engine_context *engine = &conn->client.eng;
    conn->offered_session = false;
    if (conn->sessions != NULL &&
        tls_session_lookup(conn->sessions, conn->host, &conn->offered)) {
        br_ssl_engine_set_session_parameters(engine, &conn->offered);
        conn->offered_session = conn->offered.session_id_len > 0;
    }
    if (br_ssl_client_reset(&conn->client, conn->host, conn->offered_session ? 1 : 0) == 0) {
        conn->engine_error = br_ssl_engine_last_error(engine);
        conn->error = TLS_ERROR_PROTOCOL;
        snprintf(conn->message, sizeof(conn->message),
                 "TLS engine refused to start for %s (BearSSL error %d)", conn->host,
                 conn->engine_error);
        return -EPROTO;
    }
    return 0;
}

int tls_conn_init(struct tls_conn *conn, const struct tls_trust *trust,
                  struct tls_session_cache *sessions, const char *host) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(trust != NULL);
    RM_ASSERT(host != NULL);
    memset(conn, 0, sizeof(*conn));
    size_t host_length = strlen(host);
    if (host_length == 0 || host_length >= sizeof(conn->host)) {
        snprintf(conn->message, sizeof(conn->message),
                 "TLS host name must be 1 to %zu bytes long", sizeof(conn->host) - 1);
        return -EINVAL;
    }
    memcpy(conn->host, host, host_length + 1);
    conn->sessions = sessions;
    conn->buffer = rm_malloc(BR_SSL_BUFSIZE_BIDI);
    if (conn->buffer == NULL) {
        snprintf(conn->message, sizeof(conn->message), "out of memory for a TLS buffer");
        return -ENOMEM;
    }
    br_ssl_client_init_full(&conn->client, &conn->minimal, trust->anchors, trust->count);
    br_ssl_engine_context *engine = &conn->client.eng;
    /* TLS 1.0 and 1.1 are deprecated (RFC 8996); 1.2 is BearSSL 0.6's maximum. */
    br_ssl_engine_set_versions(engine, BR_TLS12, BR_TLS12);
    conn->x509.vtable = &tls_conn_x509_class;
    conn->x509.inner = &conn->minimal.vtable;
    br_ssl_engine_set_x509(engine, &conn->x509.vtable);
    br_ssl_engine_set_buffer(engine, conn->buffer, BR_SSL_BUFSIZE_BIDI, 1);
    int result = tls_conn_start(conn);
    if (result != 0) {
        tls_conn_destroy(conn);
    }
    return result;
}

void tls_conn_destroy(struct tls_conn *conn) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(conn->buffer == NULL || conn->host[0] != '\0');
    if (conn->buffer != NULL) {
        /* The buffer and the engine hold traffic keys; do not leave them in freed memory. */
        explicit_bzero(conn->buffer, BR_SSL_BUFSIZE_BIDI);
        rm_free(conn->buffer);
        conn->buffer = NULL;
    }
    explicit_bzero(&conn->client, sizeof(conn->client));
    explicit_bzero(&conn->offered, sizeof(conn->offered));
}

/* Returns the table entry describing a BearSSL error, or NULL. */
static const char *tls_conn_engine_error_text(int code) {
    RM_ASSERT(code >= 0);
    RM_ASSERT(code < BR_ERR_SEND_FATAL_ALERT + 256);
    switch (code) {
    case BR_ERR_UNSUPPORTED_VERSION: return "server does not support TLS 1.2";
    case BR_ERR_BAD_VERSION: return "unexpected protocol version";
    case BR_ERR_BAD_MAC: return "record authentication failed";
    case BR_ERR_BAD_CIPHER_SUITE: return "server chose a cipher suite we did not offer";
    case BR_ERR_BAD_HANDSHAKE: return "malformed handshake message";
    case BR_ERR_BAD_FINISHED: return "Finished message does not verify";
    case BR_ERR_RESUME_MISMATCH: return "resumed session parameters do not match";
    case BR_ERR_BAD_SIGNATURE: return "server key exchange signature is invalid";
    case BR_ERR_WRONG_KEY_USAGE: return "server key usage forbids the key exchange";
    case BR_ERR_UNEXPECTED: return "unexpected message";
    case BR_ERR_TOO_LARGE: return "record too large";
    case BR_ERR_X509_NOT_CA: return "an issuing certificate is not a CA";
    case BR_ERR_X509_DN_MISMATCH: return "the chain is out of order or broken";
    case BR_ERR_X509_BAD_SIGNATURE: return "a certificate signature is invalid";
    case BR_ERR_X509_WEAK_PUBLIC_KEY: return "a certificate key is too weak";
    case BR_ERR_X509_UNSUPPORTED: return "a certificate uses an unsupported algorithm";
    case BR_ERR_X509_CRITICAL_EXTENSION: return "a certificate has an unknown critical extension";
    case BR_ERR_X509_FORBIDDEN_KEY_USAGE: return "the certificate key usage forbids TLS";
    case BR_ERR_X509_EMPTY_CHAIN: return "the server sent no certificate";
    case BR_ERR_X509_TIME_UNKNOWN: return "the current time is unknown";
    default: return NULL;
    }
}

/* Tells expired from not yet valid with the end-entity dates; an expired intermediate (the
 * end entity itself being valid) counts as expired. */
static enum tls_error tls_conn_validity_error(const struct tls_conn *conn) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(conn->x509.certificate_index <= UINT32_MAX);
    if (!conn->x509.validity_known) {
        return TLS_ERROR_EXPIRED;
    }
    time_t now = time(NULL);
    uint32_t days = (uint32_t)(now / TLS_SECONDS_PER_DAY) + TLS_EPOCH_DAYS;
    uint32_t seconds = (uint32_t)(now % TLS_SECONDS_PER_DAY);
    const br_x509_decoder_context *decoder = &conn->x509.decoder;
    bool before = days < decoder->notbefore_days ||
                  (days == decoder->notbefore_days && seconds < decoder->notbefore_seconds);
    return before ? TLS_ERROR_NOT_YET_VALID : TLS_ERROR_EXPIRED;
}

static enum tls_error tls_conn_classify(const struct tls_conn *conn, int code) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(code != BR_ERR_OK);
    if (code == BR_ERR_X509_NOT_TRUSTED) {
        return TLS_ERROR_UNKNOWN_CA;
    }
    if (code == BR_ERR_X509_BAD_SERVER_NAME) {
        return TLS_ERROR_NAME_MISMATCH;
    }
    if (code == BR_ERR_X509_EXPIRED) {
        return tls_conn_validity_error(conn);
    }
    if (code >= BR_ERR_X509_OK && code <= BR_ERR_X509_NOT_TRUSTED) {
        return TLS_ERROR_BAD_CERTIFICATE;
    }
    if (code >= BR_ERR_RECV_FATAL_ALERT && code < BR_ERR_SEND_FATAL_ALERT) {
        return TLS_ERROR_ALERT;
    }
    return TLS_ERROR_PROTOCOL;
}

static void tls_conn_describe(struct tls_conn *conn) {
    RM_ASSERT(conn->error != TLS_ERROR_NONE);
    RM_ASSERT(conn->error < TLS_ERROR_COUNT);
    char *out = conn->message;
    size_t size = sizeof(conn->message);
    const char *host = conn->host;
    int code = conn->engine_error;
    const char *text = code < BR_ERR_RECV_FATAL_ALERT ? tls_conn_engine_error_text(code) : NULL;
    switch (conn->error) {
    case TLS_ERROR_UNKNOWN_CA:
        snprintf(out, size, "certificate of %s not trusted: unknown issuer; add its CA to "
                            "tls.ca_file", host);
        break;
    case TLS_ERROR_NAME_MISMATCH:
        snprintf(out, size, "certificate does not match host %s%s", host,
                 tls_conn_host_is_ip_literal(host)
                     ? " (IP addresses are matched only against DNS names in the certificate;"
                       " connect by a host name it lists)"
                     : "");
        break;
    case TLS_ERROR_EXPIRED:
        snprintf(out, size, "certificate of %s expired; the server must renew it", host);
        break;
    case TLS_ERROR_NOT_YET_VALID:
        snprintf(out, size, "certificate of %s is not yet valid; check the clocks of the "
                            "server and of this machine", host);
        break;
    case TLS_ERROR_BAD_CERTIFICATE:
        snprintf(out, size, "certificate of %s rejected: %s (BearSSL error %d)", host,
                 text != NULL ? text : "invalid certificate", code);
        break;
    case TLS_ERROR_ALERT:
        snprintf(out, size, "%s rejected the TLS handshake with alert %d; it may not support "
                            "TLS 1.2 or our cipher suites", host, code - BR_ERR_RECV_FATAL_ALERT);
        break;
    case TLS_ERROR_CLOSED:
        snprintf(out, size, "%s closed the connection during the TLS handshake; check that "
                            "the port speaks TLS", host);
        break;
    case TLS_ERROR_TRUNCATED:
        snprintf(out, size, "%s closed the connection without TLS close_notify; data may be "
                            "truncated", host);
        break;
    default:
        snprintf(out, size, "TLS handshake with %s failed: %s (BearSSL error %d)", host,
                 text != NULL ? text : "protocol error", code);
        break;
    }
}

/* Records the failure once, and drops the host's session so the next attempt starts fresh. */
static void tls_conn_fail(struct tls_conn *conn, enum tls_error error) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(error != TLS_ERROR_NONE);
    if (conn->error != TLS_ERROR_NONE) {
        return;
    }
    conn->error = error;
    tls_conn_describe(conn);
    if (conn->sessions != NULL && error != TLS_ERROR_TRUNCATED) {
        tls_session_forget(conn->sessions, conn->host);
    }
}

static void tls_conn_handshake_completed(struct tls_conn *conn) {
    RM_ASSERT(!conn->handshake_done);
    RM_ASSERT(conn->error == TLS_ERROR_NONE);
    conn->handshake_done = true;
    br_ssl_session_parameters current;
    br_ssl_engine_get_session_parameters(&conn->client.eng, &current);
    /* A server that resumes echoes the offered session id; a full handshake gets a new one. */
    conn->resumed = conn->offered_session &&
                    current.session_id_len == conn->offered.session_id_len &&
                    memcmp(current.session_id, conn->offered.session_id,
                           current.session_id_len) == 0;
    if (conn->sessions != NULL && current.session_id_len > 0) {
        tls_session_store(conn->sessions, conn->host, &current);
    }
    explicit_bzero(&current, sizeof(current));
}

/* Re-reads the engine after every state change: notices the end of the handshake and
 * classifies a failure. */
static void tls_conn_update(struct tls_conn *conn) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(conn->buffer != NULL);
    unsigned state = br_ssl_engine_current_state(&conn->client.eng);
    if ((state & BR_SSL_CLOSED) != 0) {
        int code = br_ssl_engine_last_error(&conn->client.eng);
        if (code != BR_ERR_OK) {
            conn->engine_error = code;
            tls_conn_fail(conn, tls_conn_classify(conn, code));
        } else if (!conn->handshake_done) {
            tls_conn_fail(conn, TLS_ERROR_CLOSED);
        }
        return;
    }
    if (!conn->handshake_done && (state & BR_SSL_SENDAPP) != 0) {
        tls_conn_handshake_completed(conn);
    }
}

unsigned char *tls_conn_send_buf(struct tls_conn *conn, size_t *length) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(length != NULL);
    *length = 0;
    if (conn->buffer == NULL || conn->transport_eof) {
        return NULL;
    }
    unsigned char *bytes = br_ssl_engine_sendrec_buf(&conn->client.eng, length);
    return *length > 0 ? bytes : NULL;
}

void tls_conn_send_ack(struct tls_conn *conn, size_t length) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(length > 0);
    br_ssl_engine_sendrec_ack(&conn->client.eng, length);
    tls_conn_update(conn);
}

unsigned char *tls_conn_recv_buf(struct tls_conn *conn, size_t *length) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(length != NULL);
    *length = 0;
    if (conn->buffer == NULL || conn->transport_eof) {
        return NULL;
    }
    unsigned char *bytes = br_ssl_engine_recvrec_buf(&conn->client.eng, length);
    return *length > 0 ? bytes : NULL;
}

void tls_conn_recv_ack(struct tls_conn *conn, size_t length) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(length > 0);
    br_ssl_engine_recvrec_ack(&conn->client.eng, length);
    tls_conn_update(conn);
}

void tls_conn_recv_eof(struct tls_conn *conn) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(conn->buffer != NULL);
    tls_conn_update(conn);
    conn->transport_eof = true;
    if ((br_ssl_engine_current_state(&conn->client.eng) & BR_SSL_CLOSED) != 0) {
        return;
    }
    tls_conn_fail(conn, conn->handshake_done ? TLS_ERROR_TRUNCATED : TLS_ERROR_CLOSED);
}

unsigned char *tls_conn_write_buf(struct tls_conn *conn, size_t *length) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(length != NULL);
    *length = 0;
    if (conn->buffer == NULL || conn->transport_eof) {
        return NULL;
    }
    unsigned char *bytes = br_ssl_engine_sendapp_buf(&conn->client.eng, length);
    return *length > 0 ? bytes : NULL;
}

void tls_conn_write_ack(struct tls_conn *conn, size_t length) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(length > 0);
    br_ssl_engine_sendapp_ack(&conn->client.eng, length);
    tls_conn_update(conn);
}

size_t tls_conn_write(struct tls_conn *conn, const void *data, size_t length) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(data != NULL || length == 0);
    size_t room = 0;
    unsigned char *target = tls_conn_write_buf(conn, &room);
    if (target == NULL || length == 0) {
        return 0;
    }
    size_t taken = length < room ? length : room;
    memcpy(target, data, taken);
    tls_conn_write_ack(conn, taken);
    return taken;
}

void tls_conn_flush(struct tls_conn *conn) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(conn->buffer != NULL);
    br_ssl_engine_flush(&conn->client.eng, 0);
    tls_conn_update(conn);
}

unsigned char *tls_conn_read_buf(struct tls_conn *conn, size_t *length) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(length != NULL);
    *length = 0;
    if (conn->buffer == NULL) {
        return NULL;
    }
    unsigned char *bytes = br_ssl_engine_recvapp_buf(&conn->client.eng, length);
    return *length > 0 ? bytes : NULL;
}

void tls_conn_read_ack(struct tls_conn *conn, size_t length) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(length > 0);
    br_ssl_engine_recvapp_ack(&conn->client.eng, length);
    tls_conn_update(conn);
}

size_t tls_conn_read(struct tls_conn *conn, void *data, size_t capacity) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(data != NULL || capacity == 0);
    size_t ready = 0;
    unsigned char *source = tls_conn_read_buf(conn, &ready);
    if (source == NULL || capacity == 0) {
        return 0;
    }
    size_t taken = capacity < ready ? capacity : ready;
    memcpy(data, source, taken);
    tls_conn_read_ack(conn, taken);
    return taken;
}

void tls_conn_close(struct tls_conn *conn) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(conn->buffer != NULL);
    br_ssl_engine_close(&conn->client.eng);
    tls_conn_update(conn);
}

bool tls_conn_handshake_done(const struct tls_conn *conn) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(!conn->handshake_done || conn->buffer != NULL);
    return conn->handshake_done;
}

bool tls_conn_resumed(const struct tls_conn *conn) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(!conn->resumed || conn->handshake_done);
    return conn->resumed;
}

bool tls_conn_closed(const struct tls_conn *conn) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(conn->error < TLS_ERROR_COUNT);
    if (conn->buffer == NULL || conn->transport_eof) {
        return true;
    }
    return (br_ssl_engine_current_state(&conn->client.eng) & BR_SSL_CLOSED) != 0;
}

enum tls_error tls_conn_error(const struct tls_conn *conn) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(conn->error < TLS_ERROR_COUNT);
    return conn->error;
}

const char *tls_conn_error_message(const struct tls_conn *conn) {
    RM_ASSERT(conn != NULL);
    RM_ASSERT(conn->error == TLS_ERROR_NONE || conn->message[0] != '\0');
    return conn->message;
}
