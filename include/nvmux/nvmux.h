/* nvmux client C API: many processes share one NVMe device through the nvmuxd daemon that owns it.
 *
 * Compiles as C11 and as C++. Every function returns 0 (or a count) on success and a negative errno
 * on failure; none aborts or throws on a caller's error. See docs/service.md for a complete example.
 *
 * Threading: an nvmux_client is thread-safe; an nvmux_queue is used by one thread at a time, and
 * its callbacks run on that thread inside nvmux_queue_poll / nvmux_queue_wait.
 *
 * Errors: -ENOTCONN the daemon is not running or died (in-flight requests complete with
 * -ECANCELED); -EACCES refused by the daemon's policy; -EAGAIN the queue is full (poll, retry);
 * -EINVAL a bad argument, or a buffer not from nvmux_buf_alloc; -ERANGE an LBA range beyond the
 * namespace; -ENOENT no such namespace. A completion's status may also be -EIO (a device error,
 * nvme_status says which), -ETIMEDOUT (the device did not answer in time) or -ECANCELED (also when
 * the daemon reset the queue pair after a device fault). nvmux_strerror() names each. */
#ifndef NVMUX_NVMUX_H
#define NVMUX_NVMUX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nvmux_client nvmux_client; /* one session; thread-safe */
typedef struct nvmux_queue nvmux_queue;   /* one queue; one thread at a time */

struct nvmux_ns_info {
  uint32_t nsid;
  uint32_t block_size;
  uint64_t num_blocks;
  int read_only;
};

struct nvmux_cpl {
  int status;           /* 0 or -errno */
  uint16_t nvme_status; /* SCT<<8|SC, 0 on success */
  uint32_t result;      /* completion dword 0 */
};

typedef void (*nvmux_io_cb)(void* ctx, const struct nvmux_cpl* cpl);

/* socket_path NULL: $NVMUX_SOCKET, else the default path (docs/service.md). */
int nvmux_connect(const char* socket_path, nvmux_client** out);
void nvmux_disconnect(nvmux_client* client);
int nvmux_ns_info(nvmux_client* client, uint32_t nsid, struct nvmux_ns_info* out);
int nvmux_queue_create(nvmux_client* client, uint32_t depth, nvmux_queue** out);
void nvmux_queue_destroy(nvmux_queue* queue);
void* nvmux_buf_alloc(nvmux_client* client, size_t bytes); /* in the shared arena, 4 KiB aligned; NULL when exhausted */
void nvmux_buf_free(nvmux_client* client, void* buf);
int nvmux_read(nvmux_queue* q, uint32_t nsid, uint64_t lba, uint32_t blocks, void* buf, nvmux_io_cb cb, void* ctx);
int nvmux_write(nvmux_queue* q, uint32_t nsid, uint64_t lba, uint32_t blocks, const void* buf, nvmux_io_cb cb,
                void* ctx);
int nvmux_flush(nvmux_queue* q, uint32_t nsid, nvmux_io_cb cb, void* ctx);
int nvmux_write_zeroes(nvmux_queue* q, uint32_t nsid, uint64_t lba, uint32_t blocks, nvmux_io_cb cb, void* ctx);
int nvmux_deallocate(nvmux_queue* q, uint32_t nsid, uint64_t lba, uint32_t blocks, nvmux_io_cb cb, void* ctx);
int nvmux_queue_poll(nvmux_queue* q, uint32_t max_completions /* 0: all */); /* completions run, or -errno */
int nvmux_queue_wait(nvmux_queue* q, int timeout_ms); /* sleeps until a completion or the timeout; then polls */
const char* nvmux_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* NVMUX_NVMUX_H */
