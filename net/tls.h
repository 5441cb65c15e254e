#ifndef RM_TLS_H
#define RM_TLS_H

/* Per-connection TLS client over BearSSL's engine, independent of the transport.
 *
 * The caller owns the socket and drives the engine with four buffer pairs, one of each kind
 * in flight at a time (the io_uring pattern: the pointer handed to a send/recv SQE stays
 * valid until its ack):
 *   ciphertext out:  tls_conn_send_buf / tls_conn_send_ack   (io_uring send)
 *   ciphertext in:   tls_conn_recv_buf / tls_conn_recv_ack   (io_uring recv; EOF: recv_eof)
 *   plaintext out:   tls_conn_write_buf / tls_conn_write_ack, tls_conn_flush (or write)
 *   plaintext in:    tls_conn_read_buf / tls_conn_read_ack (or tls_conn_read)
 * After every ack, ask again: any buffer may appear or vanish. Typical loop: while send_buf
 * is non-NULL, send it; once nothing is to be sent and recv_buf is non-NULL, receive. After a
 * failure send_buf may still hold the fatal alert BearSSL queued; sending it is a courtesy.
 *
 * Security is not configurable: TLS 1.2 only (BearSSL 0.6's maximum), SNI is always sent,
 * the chain is always verified against the trust anchors and the host name is always
 * checked. BearSSL matches names only (dNSName entries, or the CN without SAN): connecting to
 * an IP literal succeeds only if the certificate carries that literal as a DNS name; otherwise
 * it fails with TLS_ERROR_NAME_MISMATCH and a message that says so.
 *
 * Sessions: when a session cache is given, a cached session for the host is offered at init
 * and the new session parameters are saved once the handshake completes (on the thread that
 * drives the connection, which must own the cache). A verification failure forgets the
 * host's cached session.
 *
 * The struct holds pointers into itself: once initialised it must not be moved or copied.
 * Not thread-safe: one thread drives a connection. */

#include <bearssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/tls_session.h"
#include "net/tls_trust.h"

#define TLS_HOST_MAX 256 /* host name bytes with the NUL, BearSSL's SNI limit */
#define TLS_MESSAGE_MAX 512

/* Why a connection failed; each value has a stable metric label (tls_error_name). */
enum tls_error {
    TLS_ERROR_NONE,          /* "none": no failure (also a clean close_notify) */
    TLS_ERROR_UNKNOWN_CA,    /* "unknown_ca": chain does not lead to a trust anchor */
    TLS_ERROR_NAME_MISMATCH, /* "name_mismatch": certificate is for another host */
    TLS_ERROR_EXPIRED,       /* "expired" */
    TLS_ERROR_NOT_YET_VALID, /* "not_yet_valid" */
    TLS_ERROR_BAD_CERTIFICATE, /* "bad_certificate": malformed, unsupported, not a CA, ... */
    TLS_ERROR_PROTOCOL,      /* "protocol": handshake or record layer violation */
    TLS_ERROR_ALERT,         /* "alert": the server sent a fatal alert */
    TLS_ERROR_CLOSED,        /* "closed": transport closed during the handshake */
    TLS_ERROR_TRUNCATED,     /* "truncated": transport closed without close_notify */
    TLS_ERROR_COUNT,
};

/* Feeds the first certificate of the chain to a decoder as well, to tell "expired" from "not
 * yet valid" (BearSSL reports both as BR_ERR_X509_EXPIRED). Internal to tls.c. */
struct tls_conn_x509 {
    const br_x509_class *vtable;
    const br_x509_class **inner;
    br_x509_decoder_context decoder;
    uint32_t certificate_index;
    bool validity_known;
};

struct tls_conn {
    br_ssl_client_context client;
    br_x509_minimal_context minimal;
    struct tls_conn_x509 x509;
    unsigned char *buffer; /* BR_SSL_BUFSIZE_BIDI bytes, rm_malloc at init */
    struct tls_session_cache *sessions; /* NULL: no resumption */
    br_ssl_session_parameters offered;  /* the session offered at init, if any */
    bool offered_session;
    bool handshake_done;
    bool resumed;
    bool transport_eof;
    enum tls_error error;
    int engine_error; /* raw br_ssl_engine_last_error at failure, for logs */
    char host[TLS_HOST_MAX];
    char message[TLS_MESSAGE_MAX];
};

/* Prepares a client connection to `host` (name for SNI and verification). `trust` must stay
 * loaded for the connection's life; `sessions` may be NULL. Returns 0, -EINVAL when the host
 * is empty or longer than TLS_HOST_MAX - 1 bytes, -ENOMEM, or -EPROTO when BearSSL refuses
 * to start (message set). On failure nothing needs to be released. */
int tls_conn_init(struct tls_conn *conn, const struct tls_trust *trust,
                  struct tls_session_cache *sessions, const char *host);
/* Releases the buffer and wipes key material. Safe after a failed init and twice. */
void tls_conn_destroy(struct tls_conn *conn);

/* Ciphertext to send, or NULL (length 0) when nothing is pending. */
unsigned char *tls_conn_send_buf(struct tls_conn *conn, size_t *length);
/* `length` bytes of send_buf went out (0 < length <= the length it gave). */
void tls_conn_send_ack(struct tls_conn *conn, size_t length);
/* Room for received ciphertext, or NULL when the engine cannot take any now. */
unsigned char *tls_conn_recv_buf(struct tls_conn *conn, size_t *length);
/* `length` bytes arrived in recv_buf (0 < length <= the room it gave). */
void tls_conn_recv_ack(struct tls_conn *conn, size_t length);
/* The transport reached end of file (recv returned 0) or failed: closes the engine and
 * records TLS_ERROR_CLOSED (during the handshake) or TLS_ERROR_TRUNCATED (afterwards, unless
 * the server had sent close_notify). */
void tls_conn_recv_eof(struct tls_conn *conn);

/* Room for plaintext to send, or NULL (handshake not done, or buffer full: send first). */
unsigned char *tls_conn_write_buf(struct tls_conn *conn, size_t *length);
void tls_conn_write_ack(struct tls_conn *conn, size_t length);
/* Copies up to `length` bytes into write_buf; returns how many were taken (may be 0). */
size_t tls_conn_write(struct tls_conn *conn, const void *data, size_t length);
/* Seals buffered plaintext into a record now (it then shows up in send_buf). */
void tls_conn_flush(struct tls_conn *conn);
/* Decrypted bytes ready to read, or NULL. */
unsigned char *tls_conn_read_buf(struct tls_conn *conn, size_t *length);
void tls_conn_read_ack(struct tls_conn *conn, size_t length);
/* Copies up to `capacity` decrypted bytes; returns how many (0: none ready now). */
size_t tls_conn_read(struct tls_conn *conn, void *data, size_t capacity);
/* Starts a graceful close (close_notify); keep sending until send_buf is NULL. */
void tls_conn_close(struct tls_conn *conn);

/* True once the handshake completed (application data may flow). Stays true. */
bool tls_conn_handshake_done(const struct tls_conn *conn);
/* True when the completed handshake resumed a cached session (abbreviated handshake). */
bool tls_conn_resumed(const struct tls_conn *conn);
/* True when the engine is closed, cleanly or not; tls_conn_error says why. */
bool tls_conn_closed(const struct tls_conn *conn);
enum tls_error tls_conn_error(const struct tls_conn *conn);
/* Human message for the failure (also for a failed init; "" when none), naming the host
 * and what to do. */
const char *tls_conn_error_message(const struct tls_conn *conn);

/* Stable lowercase label for metrics: "none", "unknown_ca", "name_mismatch", ... */
const char *tls_error_name(enum tls_error error);

#endif
