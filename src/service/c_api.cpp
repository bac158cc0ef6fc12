// The C API over the C++ client: opaque handles, 0 or a negative errno, never a throw or an abort
// on a caller's error (every entry point checks its pointers and catches allocation failure).
#include <cerrno>
#include <cstring>
#include <new>

#include "nvmux/nvmux.h"
#include "nvmux/service/client.hpp"

using nvmux::Status;
using nvmux::service::Client;
using nvmux::service::Queue;

struct nvmux_client {
  std::unique_ptr<Client> client;
};
struct nvmux_queue {
  std::unique_ptr<Queue> queue;
};

namespace {

int to_c(const Status& s) { return s.ok() ? 0 : s.to_errno(); }

template <class F>
int guarded(F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  } catch (...) {
    return -EFAULT;
  }
}

}  // namespace

extern "C" {

int nvmux_connect(const char* socket_path, nvmux_client** out) {
  if (out == nullptr) return -EINVAL;
  *out = nullptr;
  return guarded([&] {
    auto c = Client::connect(socket_path == nullptr ? std::string_view{} : std::string_view(socket_path));
    if (!c.ok()) return to_c(c.status());
    *out = new nvmux_client{std::move(c).value()};
    return 0;
  });
}

void nvmux_disconnect(nvmux_client* client) { delete client; }

int nvmux_ns_info(nvmux_client* client, uint32_t nsid, struct nvmux_ns_info* out) {
  if (client == nullptr || out == nullptr) return -EINVAL;
  return guarded([&] {
    auto info = client->client->namespace_info(nsid);
    if (!info.ok()) return to_c(info.status());
    out->nsid = info->nsid;
    out->block_size = info->block_size;
    out->num_blocks = info->blocks;
    out->read_only = info->read_only ? 1 : 0;
    return 0;
  });
}

int nvmux_queue_create(nvmux_client* client, uint32_t depth, nvmux_queue** out) {
  if (client == nullptr || out == nullptr) return -EINVAL;
  *out = nullptr;
  return guarded([&] {
    auto q = client->client->create_queue(depth);
    if (!q.ok()) return to_c(q.status());
    *out = new nvmux_queue{std::move(q).value()};
    return 0;
  });
}

void nvmux_queue_destroy(nvmux_queue* queue) { delete queue; }

void* nvmux_buf_alloc(nvmux_client* client, size_t bytes) {
  if (client == nullptr) return nullptr;
  try {
    return client->client->buf_alloc(bytes);
  } catch (...) {
    return nullptr;
  }
}

void nvmux_buf_free(nvmux_client* client, void* buf) {
  if (client == nullptr || buf == nullptr) return;
  try {
    (void)client->client->buf_free(buf);
  } catch (...) {
  }
}

int nvmux_read(nvmux_queue* q, uint32_t nsid, uint64_t lba, uint32_t blocks, void* buf, nvmux_io_cb cb, void* ctx) {
  if (q == nullptr) return -EINVAL;
  return guarded([&] { return to_c(q->queue->read(nsid, lba, blocks, buf, cb, ctx)); });
}

int nvmux_write(nvmux_queue* q, uint32_t nsid, uint64_t lba, uint32_t blocks, const void* buf, nvmux_io_cb cb,
                void* ctx) {
  if (q == nullptr) return -EINVAL;
  return guarded([&] { return to_c(q->queue->write(nsid, lba, blocks, buf, cb, ctx)); });
}

int nvmux_flush(nvmux_queue* q, uint32_t nsid, nvmux_io_cb cb, void* ctx) {
  if (q == nullptr) return -EINVAL;
  return guarded([&] { return to_c(q->queue->flush(nsid, cb, ctx)); });
}

int nvmux_write_zeroes(nvmux_queue* q, uint32_t nsid, uint64_t lba, uint32_t blocks, nvmux_io_cb cb, void* ctx) {
  if (q == nullptr) return -EINVAL;
  return guarded([&] { return to_c(q->queue->write_zeroes(nsid, lba, blocks, cb, ctx)); });
}

int nvmux_deallocate(nvmux_queue* q, uint32_t nsid, uint64_t lba, uint32_t blocks, nvmux_io_cb cb, void* ctx) {
  if (q == nullptr) return -EINVAL;
  return guarded([&] { return to_c(q->queue->deallocate(nsid, lba, blocks, cb, ctx)); });
}

int nvmux_queue_poll(nvmux_queue* q, uint32_t max_completions) {
  if (q == nullptr) return -EINVAL;
  return guarded([&] {
    auto n = q->queue->poll(max_completions);
    return n.ok() ? static_cast<int>(*n) : to_c(n.status());
  });
}

int nvmux_queue_wait(nvmux_queue* q, int timeout_ms) {
  if (q == nullptr) return -EINVAL;
  return guarded([&] {
    auto n = q->queue->wait(timeout_ms);
    return n.ok() ? static_cast<int>(*n) : to_c(n.status());
  });
}

const char* nvmux_strerror(int err) {
  switch (-err) {
    case 0: return "success";
    case ENOTCONN: return "nvmuxd is not running or hung up (ENOTCONN)";
    case ECANCELED:
      return "cancelled: nvmuxd reset its queue pair, the queue was destroyed, or nvmuxd died (ECANCELED)";
    case EACCES: return "refused by nvmuxd's policy (EACCES)";
    case EAGAIN: return "queue full: poll for completions, then retry (EAGAIN)";
    case EINVAL: return "invalid argument, or a buffer not from nvmux_buf_alloc (EINVAL)";
    case ERANGE: return "LBA range beyond the namespace (ERANGE)";
    case ENOENT: return "no such namespace (ENOENT)";
    case EIO: return "the device reported an error; see nvme_status (EIO)";
    case ETIMEDOUT: return "the device did not complete the request in time (ETIMEDOUT)";
    case EBADMSG: return "nvmuxd's session memory did not validate (EBADMSG)";
    default: return err < 0 ? std::strerror(-err) : "not an error code (expected 0 or a negative errno)";
  }
}

}  // extern "C"
