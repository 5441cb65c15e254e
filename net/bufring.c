#include "net/bufring.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "core/alloc.h"
#include "core/rm_assert.h"

_Static_assert(RM_IS_POWER_OF_TWO(BUFRING_COUNT), "buffer rings are powers of two");
_Static_assert(BUFRING_COUNT <= 32768, "the kernel caps buffer rings at 32768 entries");

int bufring_init(struct bufring *bufring, struct io_uring *ring, uint16_t group_id)
{
    RM_ASSERT(ring != NULL);
    memset(bufring, 0, sizeof(*bufring));
    bufring->ring_bytes = BUFRING_COUNT * sizeof(struct io_uring_buf);
    void *mapped = mmap(NULL, bufring->ring_bytes, PROT_READ | PROT_WRITE,
                        MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mapped == MAP_FAILED) {
        return -errno;
    }
    bufring->ring = mapped;
    bufring->memory = rm_malloc((size_t)BUFRING_COUNT * BUFRING_BUFFER_BYTES);
    if (bufring->memory == NULL) {
        munmap(mapped, bufring->ring_bytes);
        return -ENOMEM;
    }
    struct io_uring_buf_reg registration = {
        .ring_addr = (uint64_t)(uintptr_t)mapped,
        .ring_entries = BUFRING_COUNT,
        .bgid = group_id,
    };
    int result = io_uring_register_buf_ring(ring, &registration, 0);
    if (result != 0) {
        rm_free(bufring->memory);
        munmap(mapped, bufring->ring_bytes);
        return result;
    }
    bufring->group_id = group_id;
    io_uring_buf_ring_init(bufring->ring);
    for (uint16_t id = 0; id < BUFRING_COUNT; id++) {
        io_uring_buf_ring_add(bufring->ring, bufring_buffer(bufring, id), BUFRING_BUFFER_BYTES,
                              id, io_uring_buf_ring_mask(BUFRING_COUNT), id);
    }
    io_uring_buf_ring_advance(bufring->ring, BUFRING_COUNT);
    return 0;
}

void bufring_free(struct bufring *bufring, struct io_uring *ring)
{
    if (bufring->ring == NULL) {
        return;
    }
    io_uring_unregister_buf_ring(ring, bufring->group_id);
    munmap(bufring->ring, bufring->ring_bytes);
    rm_free(bufring->memory);
    bufring->ring = NULL;
    bufring->memory = NULL;
}

char *bufring_buffer(struct bufring *bufring, uint16_t id)
{
    RM_ASSERT(id < BUFRING_COUNT);
    RM_ASSERT(bufring->memory != NULL);
    return bufring->memory + (size_t)id * BUFRING_BUFFER_BYTES;
}

void bufring_recycle(struct bufring *bufring, uint16_t id)
{
    RM_ASSERT(id < BUFRING_COUNT);
    io_uring_buf_ring_add(bufring->ring, bufring_buffer(bufring, id), BUFRING_BUFFER_BYTES, id,
                          io_uring_buf_ring_mask(BUFRING_COUNT), 0);
    io_uring_buf_ring_advance(bufring->ring, 1);
}
