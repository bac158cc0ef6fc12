/* nvmux_hello: the C API end to end. Connects to nvmuxd, writes a block, reads it back, checks it.
 *
 *   cc nvmux_hello.c $(pkg-config --cflags --libs nvmux) -o nvmux_hello   # after cmake --install
 *   ./nvmux_hello [SOCKET]          # default: $NVMUX_SOCKET or the default path
 *
 * Exit codes: 0 the data came back intact, 1 an error (printed with nvmux_strerror). */
#include <nvmux/nvmux.h>
#include <stdio.h>
#include <string.h>

struct done {
  int finished;
  struct nvmux_cpl cpl;
};

static void on_done(void* ctx, const struct nvmux_cpl* cpl) {
  struct done* d = ctx;
  d->finished = 1;
  d->cpl = *cpl;
}

/* Waits (sleeping) until `d` finished; returns its status or the error that stopped the wait. */
static int wait_for(nvmux_queue* q, struct done* d) {
  while (!d->finished) {
    int rc = nvmux_queue_wait(q, 1000);
    if (rc < 0) return rc;
  }
  return d->cpl.status;
}

static int fail(const char* what, int err) {
  fprintf(stderr, "nvmux_hello: %s: %s\n", what, nvmux_strerror(err));
  return 1;
}

int main(int argc, char** argv) {
  nvmux_client* client = NULL;
  nvmux_queue* q = NULL;
  struct nvmux_ns_info ns;
  struct done w = {0}, r = {0};
  int rc = nvmux_connect(argc > 1 ? argv[1] : NULL, &client);
  if (rc < 0) return fail("connect", rc);
  rc = nvmux_ns_info(client, 1, &ns);
  if (rc < 0) return fail("ns_info", rc);
  printf("namespace 1: %llu blocks of %u bytes%s\n", (unsigned long long)ns.num_blocks, ns.block_size,
         ns.read_only ? " (read-only)" : "");
  rc = nvmux_queue_create(client, 8, &q);
  if (rc < 0) return fail("queue_create", rc);
  char* buf = nvmux_buf_alloc(client, ns.block_size);
  if (buf == NULL) return fail("buf_alloc", -12);
  memset(buf, 0, ns.block_size);
  strcpy(buf, "hello from C through nvmuxd");
  rc = nvmux_write(q, 1, 7, 1, buf, on_done, &w);
  if (rc < 0) return fail("write", rc);
  rc = wait_for(q, &w);
  if (rc < 0) return fail("write completion", rc);
  memset(buf, 0, ns.block_size);
  rc = nvmux_read(q, 1, 7, 1, buf, on_done, &r);
  if (rc < 0) return fail("read", rc);
  rc = wait_for(q, &r);
  if (rc < 0) return fail("read completion", rc);
  if (strcmp(buf, "hello from C through nvmuxd") != 0) {
    fprintf(stderr, "nvmux_hello: read back '%.40s'\n", buf);
    return 1;
  }
  /* Errors come back as negative errno values, never as crashes. */
  char private_buf[512];
  if (nvmux_read(q, 1, 0, 1, private_buf, on_done, &r) != -22) return fail("a private buffer was accepted", 0);
  if (nvmux_read(q, 1, ns.num_blocks, 1, buf, on_done, &r) != -34) return fail("an LBA past the end was accepted", 0);
  if (nvmux_read(NULL, 1, 0, 1, buf, on_done, &r) != -22) return fail("a NULL queue was accepted", 0);
  printf("read back: %s\n", buf);
  nvmux_buf_free(client, buf);
  nvmux_queue_destroy(q);
  nvmux_disconnect(client);
  return 0;
}
