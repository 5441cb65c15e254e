#ifndef RM_BUFRING_H
#define RM_BUFRING_H

/* A ring of provided buffers for multishot recv (IORING_REGISTER_PBUF_RING). The kernel
 * picks a buffer per completion; the owner copies what it needs and hands the buffer back at
 * once, so the ring only runs dry (-ENOBUFS) when completions outpace the reactor. liburing
 * 2.3 has no io_uring_setup_buf_ring, so the ring memory is mapped by hand. */

#include <liburing.h>
#include <stdint.h>

#define BUFRING_COUNT 1024 /* power of two, at most 32768 */
#define BUFRING_BUFFER_BYTES 4096

struct bufring {
    struct io_uring_buf_ring *ring;
    char *memory;
    size_t ring_bytes;
    uint16_t group_id;
};

/* Registers the ring with the reactor's io_uring (call on the reactor thread). 0 or -errno. */
int bufring_init(struct bufring *bufring, struct io_uring *ring, uint16_t group_id);
void bufring_free(struct bufring *bufring, struct io_uring *ring);
/* The memory of buffer `id`, as selected by the kernel (cqe->flags >> IORING_CQE_BUFFER_SHIFT). */
char *bufring_buffer(struct bufring *bufring, uint16_t id);
/* Gives buffer `id` back to the kernel. */
void bufring_recycle(struct bufring *bufring, uint16_t id);

#endif
