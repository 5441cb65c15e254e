/* The disk paths a group commit can take, one after the other through io_uring, as the store
 * issues them: a write of SIZE bytes at the next offset of a file whose blocks are already
 * written (the store's zero fill), then what makes it durable.
 *   buffered  write through the page cache, fdatasync linked behind it (the async path)
 *   direct    O_DIRECT write of the whole blocks, fdatasync linked behind it (store/direct.h)
 *   dsync     O_DIRECT write with RWF_DSYNC, no separate fdatasync (tried, not used)
 * With --busy, the submitting thread spins between submitting and reaping, as a loaded
 * reactor does, so work the kernel hands to a thread on the same core waits for it. Run a
 * second instance of `taskset -c N sh -c 'while :; do :; done'` to load another core.
 *
 * usage: commit-paths DIRECTORY [SIZE] [SECONDS] [--busy]
 * prints: path, commits/s, mean microseconds per commit. */

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define COMMIT_BLOCK 4096u
#define COMMIT_FILE_BYTES (256u << 20)
#define COMMIT_SIZE_MAX (1u << 20)

enum commit_path { COMMIT_BUFFERED, COMMIT_DIRECT, COMMIT_DSYNC };

static const char *const commit_path_names[] = {"buffered", "direct", "dsync"};

static double commit_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static void commit_die(const char *what, int error)
{
    fprintf(stderr, "commit-paths: %s: %s\n", what, strerror(error));
    exit(1);
}

/* A file of written zeros, made durable, so that the writes measured are overwrites. */
static void commit_prepare(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        commit_die(path, errno);
    }
    static uint8_t zeros[COMMIT_SIZE_MAX];
    for (uint32_t done = 0; done < COMMIT_FILE_BYTES; done += sizeof(zeros)) {
        if (write(fd, zeros, sizeof(zeros)) != (ssize_t)sizeof(zeros)) {
            commit_die("writing the zeros", errno != 0 ? errno : ENOSPC);
        }
    }
    if (fsync(fd) != 0) {
        commit_die("fsync", errno);
    }
    close(fd);
}

static void commit_reap(struct io_uring *ring, unsigned count, bool busy)
{
    for (unsigned i = 0; i < count; i++) {
        struct io_uring_cqe *cqe;
        while (busy && io_uring_peek_cqe(ring, &cqe) != 0) {
            for (volatile int spin = 0; spin < 2000; spin++) {
            }
            io_uring_get_events(ring);
        }
        int result = busy ? 0 : io_uring_wait_cqe(ring, &cqe);
        if (result != 0 || cqe->res < 0) {
            commit_die("completion", result != 0 ? -result : -cqe->res);
        }
        io_uring_cqe_seen(ring, cqe);
    }
}

/* One commit at offset; returns the operations it queued. */
static unsigned commit_queue(struct io_uring *ring, enum commit_path path, int fd,
                             int direct_fd, const uint8_t *data, uint32_t size, uint64_t offset)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (path == COMMIT_BUFFERED) {
        io_uring_prep_write(sqe, fd, data, size, offset);
    } else {
        uint64_t start = offset & ~(uint64_t)(COMMIT_BLOCK - 1);
        uint64_t end = (offset + size + COMMIT_BLOCK - 1) & ~(uint64_t)(COMMIT_BLOCK - 1);
        io_uring_prep_write(sqe, direct_fd, data, (unsigned)(end - start), start);
    }
    if (path == COMMIT_DSYNC) {
        sqe->rw_flags = RWF_DSYNC;
        return 1;
    }
    sqe->flags |= IOSQE_IO_LINK;
    io_uring_prep_fsync(io_uring_get_sqe(ring), fd, IORING_FSYNC_DATASYNC);
    return 2;
}

static void commit_measure(const char *file, enum commit_path path, uint32_t size,
                           double seconds, bool busy)
{
    int fd = open(file, O_RDWR);
    int direct_fd = open(file, O_RDWR | O_DIRECT);
    if (fd < 0 || direct_fd < 0) {
        commit_die("open (O_DIRECT needs a file system that takes it)", errno);
    }
    uint8_t *data = aligned_alloc(COMMIT_BLOCK, COMMIT_SIZE_MAX + COMMIT_BLOCK);
    memset(data, 'x', COMMIT_SIZE_MAX + COMMIT_BLOCK);
    struct io_uring ring;
    struct io_uring_params params = {.flags = IORING_SETUP_SINGLE_ISSUER |
                                              IORING_SETUP_DEFER_TASKRUN};
    int result = io_uring_queue_init_params(8, &ring, &params);
    if (result != 0) {
        commit_die("io_uring_queue_init_params", -result);
    }
    uint64_t offset = 0, commits = 0;
    double started = commit_now();
    while (commit_now() - started < seconds && offset + size + COMMIT_BLOCK < COMMIT_FILE_BYTES) {
        unsigned queued = commit_queue(&ring, path, fd, direct_fd, data, size, offset);
        io_uring_submit(&ring);
        commit_reap(&ring, queued, busy);
        offset += size;
        commits++;
    }
    double elapsed = commit_now() - started;
    printf("%-9s %8.0f commits/s %8.1f us\n", commit_path_names[path],
           (double)commits / elapsed, elapsed / (double)commits * 1e6);
    io_uring_queue_exit(&ring);
    free(data);
    close(direct_fd);
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: commit-paths DIRECTORY [SIZE] [SECONDS] [--busy]\n");
        return 2;
    }
    uint32_t size = argc > 2 ? (uint32_t)atoi(argv[2]) : 3500;
    double seconds = argc > 3 ? atof(argv[3]) : 3.0;
    bool busy = argc > 4 && strcmp(argv[4], "--busy") == 0;
    if (size == 0 || size > COMMIT_SIZE_MAX || seconds <= 0) {
        fprintf(stderr, "commit-paths: SIZE 1..%u bytes, SECONDS > 0\n", COMMIT_SIZE_MAX);
        return 2;
    }
    char file[4096];
    snprintf(file, sizeof(file), "%s/commit-paths.data", argv[1]);
    commit_prepare(file);
    for (enum commit_path path = COMMIT_BUFFERED; path <= COMMIT_DSYNC; path++) {
        commit_measure(file, path, size, seconds, busy);
    }
    unlink(file);
    return 0;
}
