#ifndef RM_TLS_TRUST_H
#define RM_TLS_TRUST_H

/* Trust anchors for TLS verification, decoded from a PEM bundle (BearSSL 0.6 has no bundle
 * loader). Loaded once on the main thread before the reactors start and read-only
 * afterwards, so every core shares one set without locks. Each anchor's DN and public key
 * bytes are copied into memory the set owns. */

#include <bearssl.h>
#include <stddef.h>

#define TLS_TRUST_DEFAULT_FILE "/etc/ssl/certs/ca-certificates.crt"
#define TLS_TRUST_ANCHORS_MAX 4096 /* certificates per bundle */
#define TLS_TRUST_DN_MAX 4096      /* encoded subject DN bytes per certificate */
#define TLS_TRUST_ERROR_MAX 512

struct tls_trust {
    br_x509_trust_anchor *anchors;
    size_t count;
};

/* Loads every CERTIFICATE in the PEM file at `path` (NULL or "": the system bundle).
 * Returns 0, or a negative errno with `error` (TLS_TRUST_ERROR_MAX bytes) naming the path:
 * -ENOENT and other open/read errors, -EINVAL when the file has no usable certificate or a
 * malformed one, -E2BIG over TLS_TRUST_ANCHORS_MAX, -ENOMEM. On failure `trust` is empty. */
int tls_trust_load(struct tls_trust *trust, const char *path, char *error);
void tls_trust_free(struct tls_trust *trust);

#endif
