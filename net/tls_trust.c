#include "net/tls_trust.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/rm_assert.h"

#define TLS_TRUST_READ_CHUNK 4096
#define TLS_TRUST_INITIAL_CAPACITY 64

_Static_assert(TLS_TRUST_INITIAL_CAPACITY <= TLS_TRUST_ANCHORS_MAX, "capacity grows to max");

/* State for one pass over the PEM file; too big for comfort on a stack, so allocated. */
struct tls_trust_loader {
    br_pem_decoder_context pem;
    br_x509_decoder_context x509;
    unsigned char dn[TLS_TRUST_DN_MAX];
    size_t dn_length;
    bool dn_overflow;
    bool in_certificate;
    size_t capacity;
    size_t objects; /* PEM objects seen, for messages */
    struct tls_trust *trust;
    const char *path;
    char *error;
};

static void tls_trust_append_dn(void *context, const void *bytes, size_t length) {
    struct tls_trust_loader *loader = context;
    RM_ASSERT(loader != NULL);
    RM_ASSERT(bytes != NULL || length == 0);
    if (length > sizeof(loader->dn) - loader->dn_length) {
        loader->dn_overflow = true;
        return;
    }
    memcpy(loader->dn + loader->dn_length, bytes, length);
    loader->dn_length += length;
}

static void tls_trust_append_certificate(void *context, const void *bytes, size_t length) {
    struct tls_trust_loader *loader = context;
    RM_ASSERT(loader != NULL);
    RM_ASSERT(loader->in_certificate);
    br_x509_decoder_push(&loader->x509, bytes, length);
}

void tls_trust_free(struct tls_trust *trust) {
    RM_ASSERT(trust != NULL);
    RM_ASSERT(trust->anchors != NULL || trust->count == 0);
    for (size_t index = 0; index < trust->count; index++) {
        /* One block per anchor, starting with the DN bytes (see tls_trust_copy_anchor). */
        rm_free(trust->anchors[index].dn.data);
    }
    rm_free(trust->anchors);
    trust->anchors = NULL;
    trust->count = 0;
}

static size_t tls_trust_key_length(const br_x509_pkey *key) {
    RM_ASSERT(key != NULL);
    RM_ASSERT(key->key_type == BR_KEYTYPE_RSA || key->key_type == BR_KEYTYPE_EC);
    if (key->key_type == BR_KEYTYPE_RSA) {
        return key->key.rsa.nlen + key->key.rsa.elen;
    }
    return key->key.ec.qlen;
}

/* Copies the DN and the key bytes the decoder points into its own buffers into one block. */
static int tls_trust_copy_anchor(struct tls_trust_loader *loader, const br_x509_pkey *key) {
    RM_ASSERT(loader->trust->count < loader->capacity);
    RM_ASSERT(loader->dn_length > 0);
    unsigned char *block = rm_malloc(loader->dn_length + tls_trust_key_length(key));
    if (block == NULL) {
        return -ENOMEM;
    }
    br_x509_trust_anchor *anchor = &loader->trust->anchors[loader->trust->count];
    memset(anchor, 0, sizeof(*anchor));
    memcpy(block, loader->dn, loader->dn_length);
    anchor->dn.data = block;
    anchor->dn.len = loader->dn_length;
    anchor->flags = br_x509_decoder_isCA(&loader->x509) ? BR_X509_TA_CA : 0;
    anchor->pkey.key_type = key->key_type;
    unsigned char *cursor = block + loader->dn_length;
    if (key->key_type == BR_KEYTYPE_RSA) {
        br_rsa_public_key *rsa = &anchor->pkey.key.rsa;
        memcpy(cursor, key->key.rsa.n, key->key.rsa.nlen);
        rsa->n = cursor;
        rsa->nlen = key->key.rsa.nlen;
        cursor += rsa->nlen;
        memcpy(cursor, key->key.rsa.e, key->key.rsa.elen);
        rsa->e = cursor;
        rsa->elen = key->key.rsa.elen;
    } else {
        br_ec_public_key *ec = &anchor->pkey.key.ec;
        memcpy(cursor, key->key.ec.q, key->key.ec.qlen);
        ec->curve = key->key.ec.curve;
        ec->q = cursor;
        ec->qlen = key->key.ec.qlen;
    }
    loader->trust->count++;
    return 0;
}

static int tls_trust_grow(struct tls_trust_loader *loader) {
    RM_ASSERT(loader->trust->count <= loader->capacity);
    RM_ASSERT(loader->capacity <= TLS_TRUST_ANCHORS_MAX);
    if (loader->trust->count < loader->capacity) {
        return 0;
    }
    if (loader->capacity == TLS_TRUST_ANCHORS_MAX) {
        snprintf(loader->error, TLS_TRUST_ERROR_MAX,
                 "CA file %s has more than %d certificates", loader->path,
                 TLS_TRUST_ANCHORS_MAX);
        return -E2BIG;
    }
    size_t capacity = loader->capacity == 0 ? TLS_TRUST_INITIAL_CAPACITY : loader->capacity * 2;
    capacity = capacity > TLS_TRUST_ANCHORS_MAX ? TLS_TRUST_ANCHORS_MAX : capacity;
    br_x509_trust_anchor *anchors =
        rm_realloc(loader->trust->anchors, capacity * sizeof(*anchors));
    if (anchors == NULL) {
        return -ENOMEM;
    }
    loader->trust->anchors = anchors;
    loader->capacity = capacity;
    return 0;
}

/* A certificate's PEM object ended: decode it into an anchor. */
static int tls_trust_finish_certificate(struct tls_trust_loader *loader) {
    RM_ASSERT(loader->in_certificate);
    RM_ASSERT(loader->objects > 0);
    loader->in_certificate = false;
    int code = br_x509_decoder_last_error(&loader->x509);
    const br_x509_pkey *key = br_x509_decoder_get_pkey(&loader->x509);
    if (loader->dn_overflow) {
        snprintf(loader->error, TLS_TRUST_ERROR_MAX,
                 "CA file %s: certificate in PEM object %zu has a subject over %d bytes; "
                 "remove it from the file", loader->path, loader->objects, TLS_TRUST_DN_MAX);
        return -EINVAL;
    }
    if (code != 0 || key == NULL || loader->dn_length == 0) {
        snprintf(loader->error, TLS_TRUST_ERROR_MAX,
                 "CA file %s: PEM object %zu is not a certificate BearSSL can decode "
                 "(BearSSL error %d); remove it from the file", loader->path, loader->objects,
                 code);
        return -EINVAL;
    }
    int result = tls_trust_grow(loader);
    if (result != 0) {
        return result;
    }
    return tls_trust_copy_anchor(loader, key);
}

static void tls_trust_begin_object(struct tls_trust_loader *loader) {
    RM_ASSERT(!loader->in_certificate);
    const char *name = br_pem_decoder_name(&loader->pem);
    RM_ASSERT(name != NULL);
    loader->objects++;
    if (strcmp(name, "CERTIFICATE") != 0 && strcmp(name, "X509 CERTIFICATE") != 0 &&
        strcmp(name, "TRUSTED CERTIFICATE") != 0) {
        br_pem_decoder_setdest(&loader->pem, NULL, NULL);
        return;
    }
    loader->in_certificate = true;
    loader->dn_length = 0;
    loader->dn_overflow = false;
    br_x509_decoder_init(&loader->x509, tls_trust_append_dn, loader);
    br_pem_decoder_setdest(&loader->pem, tls_trust_append_certificate, loader);
}

/* Feeds a chunk of the file through the PEM decoder, handling each event it raises. */
static int tls_trust_push(struct tls_trust_loader *loader, const unsigned char *bytes,
                          size_t length) {
    RM_ASSERT(loader != NULL);
    RM_ASSERT(bytes != NULL);
    while (length > 0) {
        size_t used = br_pem_decoder_push(&loader->pem, bytes, length);
        bytes += used;
        length -= used;
        int event = br_pem_decoder_event(&loader->pem);
        if (event == BR_PEM_BEGIN_OBJ) {
            tls_trust_begin_object(loader);
        } else if (event == BR_PEM_END_OBJ && loader->in_certificate) {
            int result = tls_trust_finish_certificate(loader);
            if (result != 0) {
                return result;
            }
        } else if (event == BR_PEM_ERROR) {
            snprintf(loader->error, TLS_TRUST_ERROR_MAX,
                     "CA file %s has malformed PEM after object %zu; it must hold "
                     "\"BEGIN CERTIFICATE\" blocks", loader->path, loader->objects);
            return -EINVAL;
        }
    }
    return 0;
}

static int tls_trust_read(struct tls_trust_loader *loader, int fd) {
    RM_ASSERT(loader != NULL);
    RM_ASSERT(fd >= 0);
    unsigned char chunk[TLS_TRUST_READ_CHUNK];
    for (;;) {
        ssize_t got = read(fd, chunk, sizeof(chunk));
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            int error = errno;
            snprintf(loader->error, TLS_TRUST_ERROR_MAX, "cannot read CA file %s: %s",
                     loader->path, strerror(error));
            return -error;
        }
        if (got == 0) {
            break;
        }
        int result = tls_trust_push(loader, chunk, (size_t)got);
        if (result != 0) {
            return result;
        }
    }
    /* The PEM decoder needs an end of line after the last END line; a file may lack it. */
    return tls_trust_push(loader, (const unsigned char *)"\n", 1);
}

static int tls_trust_load_file(struct tls_trust_loader *loader) {
    RM_ASSERT(loader->trust->count == 0);
    RM_ASSERT(loader->path != NULL);
    int fd = open(loader->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int error = errno;
        snprintf(loader->error, TLS_TRUST_ERROR_MAX,
                 "cannot open CA file %s: %s; set tls.ca_file to a PEM bundle", loader->path,
                 strerror(error));
        return -error;
    }
    int result = tls_trust_read(loader, fd);
    close(fd);
    if (result == 0 && loader->trust->count == 0) {
        snprintf(loader->error, TLS_TRUST_ERROR_MAX,
                 "no certificates found in CA file %s; it must hold PEM \"BEGIN CERTIFICATE\" "
                 "blocks", loader->path);
        result = -EINVAL;
    }
    return result;
}

int tls_trust_load(struct tls_trust *trust, const char *path, char *error) {
    RM_ASSERT(trust != NULL);
    RM_ASSERT(error != NULL);
    memset(trust, 0, sizeof(*trust));
    error[0] = '\0';
    struct tls_trust_loader *loader = rm_calloc(1, sizeof(*loader));
    if (loader == NULL) {
        snprintf(error, TLS_TRUST_ERROR_MAX, "out of memory loading CA file");
        return -ENOMEM;
    }
    loader->trust = trust;
    loader->path = path == NULL || path[0] == '\0' ? TLS_TRUST_DEFAULT_FILE : path;
    loader->error = error;
    br_pem_decoder_init(&loader->pem);
    int result = tls_trust_load_file(loader);
    if (result == -ENOMEM && error[0] == '\0') {
        snprintf(error, TLS_TRUST_ERROR_MAX, "out of memory loading CA file %s", loader->path);
    }
    rm_free(loader);
    if (result != 0) {
        tls_trust_free(trust);
    }
    return result;
}
