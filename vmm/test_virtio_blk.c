// SPDX-License-Identifier: MIT
/*
 * virtio-blk over the modern PCI transport, end to end: this test is the
 * driver. It finds the function through configuration mechanism #1, reads
 * the virtio capabilities, negotiates features, sets up MSI-X and the
 * queues in guest RAM, and submits requests that the device's workers
 * serve from a raw file. Malformed chains and requests must end in
 * DEVICE_NEEDS_RESET, and a reset must bring the device back.
 *
 * Completions come from worker threads, or from the store's own thread
 * for asynchronous requests: the test waits for them with a generous
 * deadline (it asserts on what happened, never on how fast). A store that
 * holds asynchronous requests until the test lets them go shows how many
 * are in flight at once, completions in any order, errors, a store that
 * refuses them (synchronous fallback), and a reset that waits for them.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "blockdev/file_store.h"
#include "vmm/virtio_blk.h"
#include "vmm/vq_remote.h"

#define MEM_SIZE   (8u << 20)
#define DISK_SIZE  (1u << 20)
#define QSIZE      16
#define NQ         2
#define RING_GPA(q) (0x100000ULL + 0x10000ULL * (q))
#define BUF_GPA    0x400000ULL
#define MSI_DATA(v) (0x40 + (v))
#define MAX_MSGS   4096
#define SERIAL     "SN-1234"

struct queue {
	uint16_t avail_idx;
	uint16_t used_seen;
	uint16_t next_desc;
};

struct fx;

/* A node of a two-node cluster in this process (queues served elsewhere). */
struct tnode {
	struct fx *f;
	unsigned self;
	struct vq_remote *vqr;
	struct virtio_blk *replica;  /* node 1's, once it serves a queue */
};

struct fx {
	struct guest_mem mem;
	/* Queue 1 served by node 1 (NULL vqr: everything on one node). */
	struct tnode node[2];
	unsigned sent[16];           /* node messages by type - NODE_MSG_APIC */
	unsigned failures;
	struct io_bus io;
	struct pci_bus bus;
	struct irq_sink irq;
	struct apic_bus apic;
	struct virtio_blk *blk;
	char dir[64], path[96];
	pthread_mutex_t lock;
	int level[32];
	unsigned msgs[256];          /* MSIs received, per vector */
	uint64_t buf_next;
	/* What the driver found. */
	uint64_t bar4, bar1;
	unsigned cap_off[6], cap_len[6], cap_bar[6];
	unsigned msix_cap, notify_mult;
	struct queue q[NQ];
	struct held_store *held;     /* instead of the file, for some tests */
	struct pipe_store *pipe;
	unsigned ring_depth;
	bool io_uring;
};

/* ---- the platform ---- */

static void rec_irq(void *ctx, unsigned gsi, int level)
{
	struct fx *f = ctx;

	pthread_mutex_lock(&f->lock);
	f->level[gsi % 32] = level;
	pthread_mutex_unlock(&f->lock);
}

static void rec_msg(void *ctx, const struct apic_msg *m)
{
	struct fx *f = ctx;

	pthread_mutex_lock(&f->lock);
	f->msgs[m->vector]++;
	pthread_mutex_unlock(&f->lock);
}

static unsigned msgs(struct fx *f, unsigned vector)
{
	unsigned n;

	pthread_mutex_lock(&f->lock);
	n = f->msgs[vector];
	pthread_mutex_unlock(&f->lock);
	return n;
}

static int level(struct fx *f, unsigned gsi)
{
	int l;

	pthread_mutex_lock(&f->lock);
	l = f->level[gsi];
	pthread_mutex_unlock(&f->lock);
	return l;
}

static uint8_t pattern(uint64_t off)
{
	return (uint8_t)(off * 13 + 1);
}

/* ---- a store that holds asynchronous requests until released ---- */

#define HELD_MAX 64

struct held_store {
	struct blockdev bd;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct blockdev_req *held[HELD_MAX];
	unsigned nheld, max_held;
	int fail_rc;              /* what done() gets */
	int refuse_rc;            /* submit() returns it when non-zero */
	unsigned sync_ops;        /* synchronous reads and writes done */
	bool closed;
	uint8_t data[DISK_SIZE];
};

static struct held_store *held_of(struct blockdev *bd)
{
	return (struct held_store *)bd;
}

static void mem_rw(struct held_store *h, bool is_write, const struct iovec *iov, int n,
		   uint64_t off)
{
	for (int i = 0; i < n; i++) {
		if (is_write)
			memcpy(h->data + off, iov[i].iov_base, iov[i].iov_len);
		else
			memcpy(iov[i].iov_base, h->data + off, iov[i].iov_len);
		off += iov[i].iov_len;
	}
}

static int h_read(struct blockdev *bd, const struct iovec *iov, int n, uint64_t off)
{
	struct held_store *h = held_of(bd);

	pthread_mutex_lock(&h->lock);
	h->sync_ops++;
	mem_rw(h, false, iov, n, off);
	pthread_mutex_unlock(&h->lock);
	return 0;
}

static int h_write(struct blockdev *bd, const struct iovec *iov, int n, uint64_t off)
{
	struct held_store *h = held_of(bd);

	pthread_mutex_lock(&h->lock);
	h->sync_ops++;
	mem_rw(h, true, iov, n, off);
	pthread_mutex_unlock(&h->lock);
	return 0;
}

static int h_flush(struct blockdev *bd)
{
	return 0;
}

static int h_discard(struct blockdev *bd, uint64_t off, uint64_t len)
{
	return 0;
}

static int h_zeroes(struct blockdev *bd, uint64_t off, uint64_t len, bool may_unmap)
{
	memset(held_of(bd)->data + off, 0, len);
	return 0;
}

static uint64_t h_size(struct blockdev *bd)
{
	return DISK_SIZE;
}

static void h_close(struct blockdev *bd)
{
	held_of(bd)->closed = true;     /* the test frees it */
}

static int h_submit(struct blockdev *bd, struct aio_ring *ring, struct blockdev_req *req)
{
	struct held_store *h = held_of(bd);

	pthread_mutex_lock(&h->lock);
	if (h->refuse_rc) {
		pthread_mutex_unlock(&h->lock);
		return h->refuse_rc;
	}
	assert_true(h->nheld < HELD_MAX);
	h->held[h->nheld++] = req;
	if (h->nheld > h->max_held)
		h->max_held = h->nheld;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	return 0;
}

static const struct blockdev_ops held_ops = {
	.read = h_read, .write = h_write, .flush = h_flush, .discard = h_discard,
	.write_zeroes = h_zeroes, .size = h_size, .close = h_close,
	.submit = h_submit,
};

/* Waits until n requests are held. */
static void held_wait(struct held_store *h, unsigned n)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 20;
	pthread_mutex_lock(&h->lock);
	while (h->nheld < n)
		if (pthread_cond_timedwait(&h->cond, &h->lock, &ts)) {
			pthread_mutex_unlock(&h->lock);
			fail_msg("%u of %u requests reached the store", h->nheld, n);
		}
	pthread_mutex_unlock(&h->lock);
}

/* Does and completes every held request, the newest first (any order is allowed). */
static void held_release(struct held_store *h)
{
	pthread_mutex_lock(&h->lock);
	while (h->nheld) {
		struct blockdev_req *r = h->held[--h->nheld];

		if (r->op != BLOCKDEV_REQ_FLUSH && !h->fail_rc)
			mem_rw(h, r->op == BLOCKDEV_REQ_WRITE, r->iov, r->iovcnt, r->off);
		pthread_mutex_unlock(&h->lock);
		r->done(r, h->fail_rc);
		pthread_mutex_lock(&h->lock);
	}
	pthread_mutex_unlock(&h->lock);
}

/* ---- a store whose reads wait for the test to feed a pipe (through the ring) ---- */

struct pipe_store {
	struct blockdev bd;
	int rd, wr;
	unsigned submitted;          /* atomic */
	bool closed;
};

struct pipe_op {
	struct aio_ring_op op;
	struct blockdev_req *req;
	uint64_t len;
};

static void p_complete(struct aio_ring_op *op, int res)
{
	struct pipe_op *p = (struct pipe_op *)op;
	struct blockdev_req *req = p->req;
	int rc = res == (int)p->len ? 0 : -EIO;

	free(p);
	req->done(req, rc);
}

static int p_submit(struct blockdev *bd, struct aio_ring *ring, struct blockdev_req *req)
{
	struct pipe_store *s = (struct pipe_store *)bd;
	struct pipe_op *p;
	int rc;

	if (req->op != BLOCKDEV_REQ_READ)
		return -EOPNOTSUPP;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->req = req;
	for (int i = 0; i < req->iovcnt; i++)
		p->len += req->iov[i].iov_len;
	p->op = (struct aio_ring_op){ .kind = AIO_RING_READV, .fd = s->rd, .iov = req->iov,
				      .iovcnt = req->iovcnt, .complete = p_complete };
	rc = aio_ring_submit(ring, &p->op);
	if (rc) {
		free(p);
		return rc;
	}
	__atomic_fetch_add(&s->submitted, 1, __ATOMIC_RELEASE);
	return 0;
}

static int p_rw(struct blockdev *bd, const struct iovec *iov, int n, uint64_t off)
{
	return -EIO;
}

static uint64_t p_size(struct blockdev *bd)
{
	return DISK_SIZE;
}

static void p_close(struct blockdev *bd)
{
	((struct pipe_store *)bd)->closed = true;
}

static const struct blockdev_ops pipe_ops = {
	.read = p_rw, .write = p_rw, .flush = h_flush, .discard = h_discard,
	.write_zeroes = h_zeroes, .size = p_size, .close = p_close, .submit = p_submit,
};

static unsigned pipe_submitted(struct pipe_store *s)
{
	return __atomic_load_n(&s->submitted, __ATOMIC_ACQUIRE);
}

static struct blockdev *make_store(struct fx *f, bool ro)
{
	struct file_store_opts o = { .read_only = ro };
	struct blockdev *bd = NULL;
	char err[256];

	assert_int_equal(file_store_open(f->path, &o, &bd, err, sizeof(err)), 0);
	return bd;
}

static void add_blk(struct fx *f, bool ro)
{
	struct virtio_blk_opts o = {
		.name = "vda", .bd = f->held ? &f->held->bd : f->pipe ? &f->pipe->bd :
		make_store(f, ro), .serial = SERIAL, .discard = true, .nr_queues = NQ,
		.mem = &f->mem, .io_uring = f->io_uring, .ring_depth = f->ring_depth,
	};
	char err[256];

	if (f->node[0].vqr) {
		o.remote = &vq_remote_ops;
		o.remote_ctx = vq_remote_disk_ctx(f->node[0].vqr, 0);
	}
	assert_int_equal(virtio_blk_create(&f->blk, &f->bus, &o, err, sizeof(err)), 0);
	if (f->node[0].vqr)
		vq_remote_set_device(f->node[0].vqr, 0, &f->blk->vp);
}

/* ---- the fabric between the two nodes: every message encoded and decoded ---- */

static int tn_send(void *ctx, unsigned dst, const struct node_msg *msg)
{
	struct tnode *t = ctx;
	struct fx *f = t->f;
	uint8_t buf[NODE_MSG_MAX_BYTES];
	struct node_msg got;
	const char *why = NULL;
	int n = node_msg_encode(msg, buf, sizeof(buf));

	assert_true(n > 0);
	assert_int_equal(node_msg_decode(msg->type, buf, (size_t)n, &got, &why), 0);
	assert_true(dst < 2 && dst != t->self);
	pthread_mutex_lock(&f->lock);
	f->sent[(msg->type - NODE_MSG_APIC) % 16]++;
	pthread_mutex_unlock(&f->lock);
	vq_remote_receive(f->node[dst].vqr, t->self, &got);
	return 0;
}

static unsigned sent(struct fx *f, uint16_t type)
{
	unsigned n;

	pthread_mutex_lock(&f->lock);
	n = f->sent[(type - NODE_MSG_APIC) % 16];
	pthread_mutex_unlock(&f->lock);
	return n;
}

/*
 * Node 1's store of the disk: the I/O node's own, borrowed (a node reaches
 * it through the store protocol, tested in blockdev/test_store_remote.c;
 * file_store locks the file against a second opening).
 */
struct borrowed {
	struct blockdev bd;
	struct blockdev *under;
};

static int b_read(struct blockdev *bd, const struct iovec *iov, int n, uint64_t off)
{
	return blockdev_read(((struct borrowed *)bd)->under, iov, n, off);
}

static int b_write(struct blockdev *bd, const struct iovec *iov, int n, uint64_t off)
{
	return blockdev_write(((struct borrowed *)bd)->under, iov, n, off);
}

static int b_flush(struct blockdev *bd)
{
	return blockdev_flush(((struct borrowed *)bd)->under);
}

static int b_discard(struct blockdev *bd, uint64_t off, uint64_t len)
{
	return blockdev_discard(((struct borrowed *)bd)->under, off, len);
}

static int b_wz(struct blockdev *bd, uint64_t off, uint64_t len, bool unmap)
{
	return blockdev_write_zeroes(((struct borrowed *)bd)->under, off, len, unmap);
}

static uint64_t b_size(struct blockdev *bd)
{
	return blockdev_size(((struct borrowed *)bd)->under);
}

static void b_close(struct blockdev *bd)
{
	free(bd);
}

static const struct blockdev_ops borrowed_ops = {
	.read = b_read, .write = b_write, .flush = b_flush, .discard = b_discard,
	.write_zeroes = b_wz, .size = b_size, .close = b_close,
};

static struct blockdev *borrow(struct blockdev *under)
{
	struct borrowed *b = calloc(1, sizeof(*b));   /* on node 1's thread: not cmocka's allocator */

	b->bd = *under;
	b->bd.ops = &borrowed_ops;
	b->under = under;
	return &b->bd;
}

static int tn_make_replica(void *ctx, unsigned disk, const struct virtio_replica_ops *ops,
			   void *ops_ctx, struct virtio_blk **out, char *err, size_t errlen)
{
	struct tnode *t = ctx;
	struct virtio_blk_opts o = {
		.name = "vda", .bd = borrow(t->f->blk->bd), .serial = SERIAL, .discard = true,
		.nr_queues = NQ, .mem = &t->f->mem, .replica = ops, .remote_ctx = ops_ctx,
	};

	assert_int_equal(disk, 0);
	if (virtio_blk_create(out, NULL, &o, err, errlen))
		return -1;
	__atomic_store_n(&t->replica, *out, __ATOMIC_RELEASE);
	return 0;
}

/* Node 1's LAPICs: the same recorder as the I/O node's APIC bus. */
static void tn_msi(void *ctx, uint64_t addr, uint32_t data)
{
	struct tnode *t = ctx;
	struct apic_msg m;

	assert_true(pci_msi_to_apic(addr, data, &m));
	rec_msg(t->f, &m);
}

/* Queue 1's vector (2) is affine to a CPU of node 1; every other to node 0. */
static int tn_msi_node(void *ctx, uint64_t addr, uint32_t data)
{
	return data == MSI_DATA(2) ? 1 : 0;
}

static void tn_fail(void *ctx, const char *msg)
{
	struct tnode *t = ctx;

	pthread_mutex_lock(&t->f->lock);
	t->f->failures++;
	pthread_mutex_unlock(&t->f->lock);
}

static void make_nodes(struct fx *f)
{
	char err[256];

	for (unsigned i = 0; i < 2; i++) {
		struct vq_remote_config c = {
			.self = i, .io_node = 0, .nr_disks = 1, .nr_queues = NQ,
			.msi_node = tn_msi_node, .send = tn_send, .make_replica = tn_make_replica,
			.msi = tn_msi, .fail = tn_fail, .ctx = &f->node[i],
		};

		f->node[i].f = f;
		f->node[i].self = i;
		assert_int_equal(vq_remote_create(&f->node[i].vqr, &c, err, sizeof(err)), 0);
	}
}

static int setup_with(void **state, bool ro, bool held, bool io_uring, bool pipe,
		      bool two_nodes)
{
	struct fx *f = test_calloc(1, sizeof(*f));
	uint8_t *buf = test_malloc(DISK_SIZE);
	int fd;

	pthread_mutex_init(&f->lock, NULL);
	snprintf(f->dir, sizeof(f->dir), "/tmp/grappe-blk-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/disk.img", f->dir);
	for (unsigned i = 0; i < DISK_SIZE; i++)
		buf[i] = pattern(i);
	fd = open(f->path, O_CREAT | O_WRONLY, 0600);
	assert_int_equal(write(fd, buf, DISK_SIZE), DISK_SIZE);
	close(fd);
	test_free(buf);
	if (held) {
		f->held = test_calloc(1, sizeof(*f->held));
		f->held->bd.ops = &held_ops;
		f->held->bd.block_size = 512;
		pthread_mutex_init(&f->held->lock, NULL);
		pthread_cond_init(&f->held->cond, NULL);
		for (unsigned i = 0; i < DISK_SIZE; i++)
			f->held->data[i] = pattern(i);
	}
	if (pipe) {
		int fds[2];

		assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
		f->pipe = test_calloc(1, sizeof(*f->pipe));
		f->pipe->bd.ops = &pipe_ops;
		f->pipe->bd.block_size = 512;
		f->pipe->rd = fds[0];
		f->pipe->wr = fds[1];
		f->ring_depth = 4;
	}
	f->io_uring = io_uring || held || pipe;
	assert_int_equal(guest_mem_init(&f->mem, MEM_SIZE), 0);
	f->irq = (struct irq_sink){ rec_irq, f };
	f->apic = (struct apic_bus){ rec_msg, f };
	io_bus_init(&f->io);
	pci_bus_init(&f->bus, &f->irq, &f->apic);
	assert_int_equal(pci_bus_register(&f->bus, &f->io), 0);
	if (two_nodes)
		make_nodes(f);
	add_blk(f, ro);
	f->buf_next = BUF_GPA;
	*state = f;
	return 0;
}

static int setup_two_nodes(void **state)
{
	return setup_with(state, false, false, false, false, true);
}

static int setup(void **state)
{
	return setup_with(state, false, false, false, false, false);
}

static int setup_readonly(void **state)
{
	return setup_with(state, true, false, false, false, false);
}

/* The file store with io='io_uring'. */
static int setup_uring(void **state)
{
	return setup_with(state, false, false, true, false, false);
}

static int setup_uring_readonly(void **state)
{
	return setup_with(state, true, false, true, false, false);
}

static int setup_held(void **state)
{
	return setup_with(state, false, true, false, false, false);
}

static int setup_pipe(void **state)
{
	return setup_with(state, false, false, false, true, false);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	vq_remote_stop(f->node[1].vqr);   /* the serving node first, as a node's teardown does */
	virtio_blk_destroy(f->blk);
	if (f->pipe) {
		assert_true(f->pipe->closed);
		close(f->pipe->rd);
		close(f->pipe->wr);
		test_free(f->pipe);
	}
	if (f->held) {
		assert_true(f->held->closed);
		pthread_cond_destroy(&f->held->cond);
		pthread_mutex_destroy(&f->held->lock);
		test_free(f->held);
	}
	vq_remote_destroy(f->node[1].vqr);
	vq_remote_destroy(f->node[0].vqr);
	pci_bus_destroy(&f->bus);
	guest_mem_destroy(&f->mem);
	unlink(f->path);
	rmdir(f->dir);
	pthread_mutex_destroy(&f->lock);
	test_free(f);
	return 0;
}

/* ---- bus accesses ---- */

static uint64_t bus_access(struct fx *f, uint8_t space, uint64_t addr, unsigned len, int write,
		       uint64_t v)
{
	struct io_req r = { .space = space, .is_write = (uint8_t)write, .len = (uint8_t)len,
			    .addr = addr, .data = v };

	io_bus_dispatch(&f->io, &r);
	return r.data;
}

static uint32_t cfg_rd(struct fx *f, unsigned reg, unsigned len)
{
	bus_access(f, IO_SPACE_PIO, PCI_CONFIG_ADDRESS, 4, 1, 0x80000000u | 1u << 11 | (reg & 0xfc));
	return (uint32_t)bus_access(f, IO_SPACE_PIO, PCI_CONFIG_DATA + (reg & 3), len, 0, 0);
}

static void cfg_wr(struct fx *f, unsigned reg, unsigned len, uint32_t v)
{
	bus_access(f, IO_SPACE_PIO, PCI_CONFIG_ADDRESS, 4, 1, 0x80000000u | 1u << 11 | (reg & 0xfc));
	bus_access(f, IO_SPACE_PIO, PCI_CONFIG_DATA + (reg & 3), len, 1, v);
}

static uint64_t cc_rd(struct fx *f, unsigned off, unsigned len)
{
	return bus_access(f, IO_SPACE_MMIO, f->bar4 + f->cap_off[VIRTIO_PCI_CAP_COMMON_CFG] + off,
		      len, 0, 0);
}

static void cc_wr(struct fx *f, unsigned off, unsigned len, uint64_t v)
{
	bus_access(f, IO_SPACE_MMIO, f->bar4 + f->cap_off[VIRTIO_PCI_CAP_COMMON_CFG] + off, len, 1, v);
}

static uint64_t devcfg(struct fx *f, unsigned off, unsigned len)
{
	return bus_access(f, IO_SPACE_MMIO, f->bar4 + f->cap_off[VIRTIO_PCI_CAP_DEVICE_CFG] + off,
		      len, 0, 0);
}

static uint8_t status(struct fx *f)
{
	return (uint8_t)cc_rd(f, VIRTIO_PCI_COMMON_STATUS, 1);
}

/* Walks the capability list as a driver would. */
static void discover(struct fx *f)
{
	unsigned at = cfg_rd(f, PCI_CAPABILITY_LIST, 1);

	assert_true(cfg_rd(f, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	while (at) {
		unsigned id = cfg_rd(f, at, 1);

		if (id == PCI_CAP_ID_MSIX) {
			f->msix_cap = at;
		} else if (id == PCI_CAP_ID_VNDR) {
			unsigned type = cfg_rd(f, at + 3, 1);

			assert_true(type >= 1 && type <= 5);
			f->cap_bar[type] = cfg_rd(f, at + 4, 1);
			f->cap_off[type] = type == VIRTIO_PCI_CAP_PCI_CFG ? at : cfg_rd(f, at + 8, 4);
			f->cap_len[type] = cfg_rd(f, at + 12, 4);
			if (type == VIRTIO_PCI_CAP_NOTIFY_CFG)
				f->notify_mult = cfg_rd(f, at + 16, 4);
		}
		at = cfg_rd(f, at + 1, 1);
	}
	f->bar4 = (cfg_rd(f, PCI_BAR0 + 16, 4) & ~0xfu) | (uint64_t)cfg_rd(f, PCI_BAR0 + 20, 4) << 32;
	f->bar1 = cfg_rd(f, PCI_BAR0 + 4, 4) & ~0xfu;
}

static void setup_msix(struct fx *f)
{
	unsigned n = (cfg_rd(f, f->msix_cap + 2, 2) & 0x7ff) + 1;

	cfg_wr(f, f->msix_cap + 2, 2, 0xc000);
	for (unsigned v = 0; v < n; v++) {
		bus_access(f, IO_SPACE_MMIO, f->bar1 + 16 * v, 4, 1, 0xfee00000);
		bus_access(f, IO_SPACE_MMIO, f->bar1 + 16 * v + 4, 4, 1, 0);
		bus_access(f, IO_SPACE_MMIO, f->bar1 + 16 * v + 8, 4, 1, MSI_DATA(v));
		bus_access(f, IO_SPACE_MMIO, f->bar1 + 16 * v + 12, 4, 1, 0);
	}
	cfg_wr(f, f->msix_cap + 2, 2, 0x8000);
}

static uint64_t device_features(struct fx *f)
{
	cc_wr(f, VIRTIO_PCI_COMMON_DFSELECT, 4, 0);
	uint64_t lo = cc_rd(f, VIRTIO_PCI_COMMON_DF, 4);

	cc_wr(f, VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
	return lo | cc_rd(f, VIRTIO_PCI_COMMON_DF, 4) << 32;
}

static bool negotiate(struct fx *f, uint64_t features)
{
	cc_wr(f, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	assert_int_equal(status(f), 0);
	cc_wr(f, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	cc_wr(f, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	cc_wr(f, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	cc_wr(f, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)features);
	cc_wr(f, VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	cc_wr(f, VIRTIO_PCI_COMMON_GF, 4, features >> 32);
	cc_wr(f, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	      VIRTIO_STATUS_FEATURES_OK);
	return status(f) & VIRTIO_STATUS_FEATURES_OK;
}

static void setup_queue(struct fx *f, unsigned q, bool msix)
{
	uint64_t base = RING_GPA(q);

	memset(f->mem.host + base, 0, 0x3000);
	memset(&f->q[q], 0, sizeof(f->q[q]));
	cc_wr(f, VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), VIRTIO_BLK_QUEUE_SIZE);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_Q_NOFF, 2), q);
	cc_wr(f, VIRTIO_PCI_COMMON_Q_SIZE, 2, QSIZE);
	cc_wr(f, VIRTIO_PCI_COMMON_Q_MSIX, 2, msix ? q + 1 : PCI_MSIX_NO_VECTOR);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_Q_MSIX, 2), msix ? q + 1 : PCI_MSIX_NO_VECTOR);
	/* 64-bit fields as two halves, the way Linux writes them. */
	cc_wr(f, VIRTIO_PCI_COMMON_Q_DESC, 4, (uint32_t)base);
	cc_wr(f, VIRTIO_PCI_COMMON_Q_DESC + 4, 4, base >> 32);
	cc_wr(f, VIRTIO_PCI_COMMON_Q_DRIVER, 8, base + 0x1000);
	cc_wr(f, VIRTIO_PCI_COMMON_Q_DEVICE, 8, base + 0x2000);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_Q_DEVICE, 8), base + 0x2000);
	cc_wr(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
}

#define STD_FEATURES (1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_BLK_F_FLUSH | \
		      1ULL << VIRTIO_BLK_F_SEG_MAX | 1ULL << VIRTIO_BLK_F_BLK_SIZE | \
		      1ULL << VIRTIO_BLK_F_MQ | 1ULL << VIRTIO_F_INDIRECT_DESC)

static void driver_init_features(struct fx *f, bool msix, uint64_t features)
{
	discover(f);
	cfg_wr(f, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	if (msix)
		setup_msix(f);
	assert_true(negotiate(f, features & device_features(f)));
	cc_wr(f, VIRTIO_PCI_COMMON_MSIX, 2, msix ? 0 : PCI_MSIX_NO_VECTOR);
	for (unsigned q = 0; q < NQ; q++)
		setup_queue(f, q, msix);
	cc_wr(f, VIRTIO_PCI_COMMON_STATUS, 1, status(f) | VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(status(f), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

static void driver_init(struct fx *f, bool msix)
{
	driver_init_features(f, msix, STD_FEATURES | 1ULL << VIRTIO_BLK_F_DISCARD |
			     1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
}

/* ---- requests ---- */

static uint64_t galloc(struct fx *f, size_t len)
{
	uint64_t at = f->buf_next;

	f->buf_next += (len + 15) & ~15ULL;
	assert_true(f->buf_next < MEM_SIZE);
	return at;
}

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

static uint16_t submit_nokick(struct fx *f, unsigned q, const struct seg *s, unsigned n)
{
	struct queue *d = &f->q[q];
	uint8_t *ring = f->mem.host + RING_GPA(q);
	uint16_t head = d->next_desc, idx;

	for (unsigned i = 0; i < n; i++) {
		uint16_t at = (uint16_t)((head + i) % QSIZE);
		uint16_t flags = (uint16_t)((s[i].write ? VIRTQ_DESC_F_WRITE : 0) |
					    (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
		uint16_t next = (uint16_t)((at + 1) % QSIZE);

		memcpy(ring + 16 * at, &s[i].gpa, 8);
		memcpy(ring + 16 * at + 8, &s[i].len, 4);
		memcpy(ring + 16 * at + 12, &flags, 2);
		memcpy(ring + 16 * at + 14, &next, 2);
	}
	d->next_desc = (uint16_t)((head + n) % QSIZE);
	memcpy(ring + 0x1000 + 4 + 2 * (d->avail_idx % QSIZE), &head, 2);
	idx = ++d->avail_idx;
	__atomic_store_n((uint16_t *)(ring + 0x1002), idx, __ATOMIC_RELEASE);
	return head;
}

static void kick(struct fx *f, unsigned q)
{
	bus_access(f, IO_SPACE_MMIO, f->bar4 + f->cap_off[VIRTIO_PCI_CAP_NOTIFY_CFG] +
	       (uint64_t)q * f->notify_mult, 2, 1, q);
}

static uint16_t used_idx(struct fx *f, unsigned q)
{
	return __atomic_load_n((uint16_t *)(f->mem.host + RING_GPA(q) + 0x2002), __ATOMIC_ACQUIRE);
}

static bool wait_for(bool (*cond)(struct fx *, unsigned), struct fx *f, unsigned arg)
{
	for (int i = 0; i < 20000; i++) {	/* 20 s */
		struct timespec ts = { 0, 1000000 };

		if (cond(f, arg))
			return true;
		nanosleep(&ts, NULL);
	}
	return cond(f, arg);
}

static bool used_moved(struct fx *f, unsigned q)
{
	return used_idx(f, q) != f->q[q].used_seen;
}

/* Waits for the next completion on q: returns its used length. */
static uint32_t complete(struct fx *f, unsigned q, uint16_t head)
{
	uint8_t *e;
	uint32_t id, len;

	assert_true(wait_for(used_moved, f, q));
	e = f->mem.host + RING_GPA(q) + 0x2000 + 4 + 8 * (f->q[q].used_seen % QSIZE);
	memcpy(&id, e, 4);
	memcpy(&len, e + 4, 4);
	assert_int_equal(id, head);
	f->q[q].used_seen++;
	return len;
}

/*
 * The next used entry of queue q, whichever request it is: with several
 * workers per queue, requests complete in any order (as virtio allows).
 */
static uint16_t complete_any(struct fx *f, unsigned q)
{
	uint8_t *e;
	uint32_t id;

	assert_true(wait_for(used_moved, f, q));
	e = f->mem.host + RING_GPA(q) + 0x2000 + 4 + 8 * (f->q[q].used_seen % QSIZE);
	memcpy(&id, e, 4);
	f->q[q].used_seen++;
	return (uint16_t)id;
}

struct req {
	uint64_t hdr, data, status;
	uint32_t data_len;
};

/* A request with its header cut in two buffers and the data in two more. */
static uint8_t blk_req(struct fx *f, unsigned q, uint32_t type, uint64_t sector, void *data,
		       uint32_t len, bool data_in, uint32_t *used)
{
	struct req r = { .hdr = galloc(f, 16), .data = len ? galloc(f, len) : 0,
			 .status = galloc(f, 1), .data_len = len };
	struct seg s[5];
	unsigned n = 0;
	uint16_t head;
	uint32_t u;

	memcpy(f->mem.host + r.hdr, &type, 4);
	memset(f->mem.host + r.hdr + 4, 0, 4);
	memcpy(f->mem.host + r.hdr + 8, &sector, 8);
	f->mem.host[r.status] = 0xee;
	if (len && !data_in)
		memcpy(f->mem.host + r.data, data, len);
	s[n++] = (struct seg){ r.hdr, 5, false };
	s[n++] = (struct seg){ r.hdr + 5, 11, false };
	if (len > 512) {
		s[n++] = (struct seg){ r.data, 512, data_in };
		s[n++] = (struct seg){ r.data + 512, len - 512, data_in };
	} else if (len) {
		s[n++] = (struct seg){ r.data, len, data_in };
	}
	s[n++] = (struct seg){ r.status, 1, true };
	head = submit_nokick(f, q, s, n);
	kick(f, q);
	u = complete(f, q, head);
	if (used)
		*used = u;
	if (len && data_in)
		memcpy(data, f->mem.host + r.data, len);
	return f->mem.host[r.status];
}

static void file_read(struct fx *f, uint64_t off, void *buf, size_t len)
{
	int fd = open(f->path, O_RDONLY);

	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

/* ---- tests ---- */

static void test_probe(void **state)
{
	struct fx *f = *state;
	uint64_t df;

	assert_int_equal(cfg_rd(f, PCI_VENDOR_ID, 4), 0x10421af4);
	assert_int_equal(cfg_rd(f, PCI_REVISION_ID, 4), 0x01800001);
	assert_int_equal(cfg_rd(f, PCI_SUBSYSTEM_VENDOR, 4), 0x00401af4);
	assert_int_equal(cfg_rd(f, PCI_INTERRUPT_PIN, 1), 1);
	discover(f);
	assert_int_not_equal(f->msix_cap, 0);
	assert_int_equal(cfg_rd(f, f->msix_cap + 2, 2) & 0x7ff, NQ);   /* NQ + 1 vectors */
	for (unsigned t = 1; t <= 4; t++)
		assert_int_equal(f->cap_bar[t], VIRTIO_PCI_BAR);
	assert_int_equal(f->cap_len[VIRTIO_PCI_CAP_COMMON_CFG], 0x38);
	assert_int_equal(f->cap_len[VIRTIO_PCI_CAP_DEVICE_CFG], VIRTIO_BLK_CONFIG_SIZE);
	assert_int_equal(f->cap_len[VIRTIO_PCI_CAP_NOTIFY_CFG], NQ * 4);
	assert_int_equal(f->notify_mult, 4);
	assert_int_not_equal(f->cap_off[VIRTIO_PCI_CAP_PCI_CFG], 0);
	assert_int_equal(f->bar4, 0xc0004000);
	assert_int_equal(f->bar1, 0xc0000000);
	/* BAR 4 is 64-bit and 16 KiB. */
	cfg_wr(f, PCI_COMMAND, 2, 0);
	cfg_wr(f, PCI_BAR0 + 16, 4, 0xffffffff);
	assert_int_equal(cfg_rd(f, PCI_BAR0 + 16, 4), 0xffffc004);
	cfg_wr(f, PCI_BAR0 + 16, 4, (uint32_t)f->bar4);
	cfg_wr(f, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);

	df = device_features(f);
	assert_true(df & 1ULL << VIRTIO_F_VERSION_1);
	assert_true(df & 1ULL << VIRTIO_F_INDIRECT_DESC);
	assert_true(df & 1ULL << VIRTIO_F_EVENT_IDX);
	assert_true(df & 1ULL << VIRTIO_BLK_F_FLUSH);
	assert_true(df & 1ULL << VIRTIO_BLK_F_MQ);
	assert_true(df & 1ULL << VIRTIO_BLK_F_DISCARD);
	assert_true(df & 1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
	assert_false(df & 1ULL << VIRTIO_BLK_F_RO);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_NUMQ, 2), NQ);
	assert_int_equal(devcfg(f, VIRTIO_BLK_CFG_CAPACITY, 8), DISK_SIZE / 512);
	assert_int_equal(devcfg(f, VIRTIO_BLK_CFG_CAPACITY + 4, 4), 0);
	assert_int_equal(devcfg(f, VIRTIO_BLK_CFG_SEG_MAX, 4), VIRTIO_BLK_QUEUE_SIZE - 2);
	assert_int_equal(devcfg(f, VIRTIO_BLK_CFG_BLK_SIZE, 4), 512);
	assert_int_equal(devcfg(f, VIRTIO_BLK_CFG_NUM_QUEUES, 2), NQ);
	assert_int_equal(devcfg(f, VIRTIO_BLK_CFG_MAX_DISCARD_SEG, 4), VIRTIO_BLK_MAX_DISCARD_SEG);
	/* Past the end of the device configuration: nothing. */
	assert_int_equal(devcfg(f, VIRTIO_BLK_CONFIG_SIZE - 2, 4), 0xffffffff);
	/* A queue that does not exist has size 0. */
	cc_wr(f, VIRTIO_PCI_COMMON_Q_SELECT, 2, NQ);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
}

static void test_read_write(void **state)
{
	struct fx *f = *state;
	uint8_t out[1536], in[1536], file[1536];
	uint32_t used;

	driver_init(f, true);
	for (unsigned i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i ^ 0x5a);
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_OUT, 10, out, sizeof(out), false, &used),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(used, 1);
	file_read(f, 10 * 512, file, sizeof(file));
	assert_memory_equal(file, out, sizeof(out));
	assert_int_equal(msgs(f, MSI_DATA(1)), 1);

	assert_int_equal(blk_req(f, 1, VIRTIO_BLK_T_IN, 10, in, sizeof(in), true, &used),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(used, sizeof(in) + 1);
	assert_memory_equal(in, out, sizeof(in));
	assert_int_equal(msgs(f, MSI_DATA(2)), 1);
	/* Untouched data around it. */
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_IN, 9, in, 512, true, NULL), VIRTIO_BLK_S_OK);
	for (unsigned i = 0; i < 512; i++)
		assert_int_equal(in[i], pattern(9 * 512 + i));
	/* The last sector is readable, one past it is not. */
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_IN, DISK_SIZE / 512 - 1, in, 512, true, NULL),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_IN, DISK_SIZE / 512 - 1, in, 1024, true, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_OUT, UINT64_MAX, out, 512, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	/* Not a whole number of sectors. */
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_IN, 0, in, 100, true, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(f->blk->stats.errors, 0);	/* those never reached the store */
}

static void test_flush_id_unsupported(void **state)
{
	struct fx *f = *state;
	char id[VIRTIO_BLK_ID_BYTES + 4];
	uint32_t used;

	driver_init(f, true);
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, false, &used),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(used, 1);
	memset(id, 'x', sizeof(id));
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_GET_ID, 0, id, VIRTIO_BLK_ID_BYTES, true, &used),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(used, VIRTIO_BLK_ID_BYTES + 1);
	assert_string_equal(id, SERIAL);
	assert_int_equal(id[VIRTIO_BLK_ID_BYTES - 1], 0);
	assert_int_equal(blk_req(f, 1, 99, 0, NULL, 0, false, NULL), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(f->blk->stats.flushes, 1);
	assert_int_equal(f->blk->stats.get_ids, 1);
	assert_int_equal(f->blk->stats.unsupported, 1);
}

struct range {
	uint64_t sector;
	uint32_t num, flags;
};

static void test_discard_write_zeroes(void **state)
{
	struct fx *f = *state;
	struct range r[2] = { { 100, 8, 0 }, { 200, 16, 1 } };
	struct range many[VIRTIO_BLK_MAX_DISCARD_SEG + 1];
	uint8_t buf[8192];

	driver_init(f, true);
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, r, sizeof(r), false, NULL),
			 VIRTIO_BLK_S_OK);
	file_read(f, 100 * 512, buf, 8 * 512);
	for (unsigned i = 0; i < 8 * 512; i++)
		assert_int_equal(buf[i], 0);
	file_read(f, 200 * 512, buf, 16 * 512);
	for (unsigned i = 0; i < 16 * 512; i++)
		assert_int_equal(buf[i], 0);
	file_read(f, 108 * 512, buf, 512);
	assert_int_equal(buf[0], pattern(108 * 512));
	/* Discard: no unmap flag allowed, a range in the disk. */
	r[1].flags = 0;
	assert_int_equal(blk_req(f, 1, VIRTIO_BLK_T_DISCARD, 0, r, sizeof(r), false, NULL),
			 VIRTIO_BLK_S_OK);
	r[0].flags = 1;
	assert_int_equal(blk_req(f, 1, VIRTIO_BLK_T_DISCARD, 0, r, sizeof(r), false, NULL),
			 VIRTIO_BLK_S_UNSUPP);
	r[0] = (struct range){ DISK_SIZE / 512 - 4, 8, 0 };
	assert_int_equal(blk_req(f, 1, VIRTIO_BLK_T_DISCARD, 0, r, sizeof(r), false, NULL),
			 VIRTIO_BLK_S_IOERR);
	memset(many, 0, sizeof(many));
	assert_int_equal(blk_req(f, 1, VIRTIO_BLK_T_WRITE_ZEROES, 0, many, sizeof(many), false, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_req(f, 1, VIRTIO_BLK_T_WRITE_ZEROES, 0, many, 8, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(f->blk->stats.write_zeroes, 1);
	assert_int_equal(f->blk->stats.discards, 1);
}

/* Without the features, the requests are unsupported. */
static void test_discard_not_negotiated(void **state)
{
	struct fx *f = *state;
	struct range r = { 0, 8, 0 };

	driver_init_features(f, true, STD_FEATURES);
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_DISCARD, 0, &r, sizeof(r), false, NULL),
			 VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, &r, sizeof(r), false, NULL),
			 VIRTIO_BLK_S_UNSUPP);
}

static void test_read_only(void **state)
{
	struct fx *f = *state;
	uint8_t buf[512], file[512];
	struct range r = { 0, 8, 0 };
	uint64_t df;

	discover(f);
	df = device_features(f);
	assert_true(df & 1ULL << VIRTIO_BLK_F_RO);
	assert_false(df & 1ULL << VIRTIO_BLK_F_DISCARD);
	assert_false(df & 1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
	driver_init_features(f, true, STD_FEATURES | 1ULL << VIRTIO_BLK_F_RO);
	memset(buf, 0x77, sizeof(buf));
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_OUT, 0, buf, 512, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, &r, sizeof(r), false, NULL),
			 VIRTIO_BLK_S_UNSUPP);
	file_read(f, 0, file, 512);
	assert_int_equal(file[0], pattern(0));
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_IN, 0, buf, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(buf[1], pattern(1));
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, false, NULL),
			 VIRTIO_BLK_S_OK);
}

static bool needs_reset(struct fx *f, unsigned unused)
{
	return status(f) & VIRTIO_STATUS_NEEDS_RESET;
}

static bool config_irq(struct fx *f, unsigned n)
{
	return msgs(f, MSI_DATA(0)) >= n;
}

/* A looping chain breaks the device until a reset; then it works again. */
static void test_broken_chain_and_reset(void **state)
{
	struct fx *f = *state;
	uint8_t *ring = f->mem.host + RING_GPA(0);
	uint16_t flags = VIRTQ_DESC_F_NEXT, idx = 1, zero = 0;
	uint64_t gpa = galloc(f, 64);
	uint32_t len = 16;
	uint8_t buf[512];

	driver_init(f, true);
	memcpy(ring, &gpa, 8);
	memcpy(ring + 8, &len, 4);
	memcpy(ring + 12, &flags, 2);
	memcpy(ring + 14, &zero, 2);          /* desc 0 -> desc 0 */
	memcpy(ring + 0x1004, &zero, 2);
	__atomic_store_n((uint16_t *)(ring + 0x1002), idx, __ATOMIC_RELEASE);
	kick(f, 0);
	assert_true(wait_for(needs_reset, f, 0));
	assert_true(wait_for(config_irq, f, 1));
	assert_int_equal(used_idx(f, 0), 0);
	/* The status keeps NEEDS_RESET whatever the driver writes, until a reset. */
	cc_wr(f, VIRTIO_PCI_COMMON_STATUS, 1, status(f) & ~VIRTIO_STATUS_NEEDS_RESET);
	assert_true(status(f) & VIRTIO_STATUS_NEEDS_RESET);
	/* The other queue is not served either. */
	cc_wr(f, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	assert_int_equal(status(f), 0);
	cc_wr(f, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), VIRTIO_BLK_QUEUE_SIZE);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_Q_MSIX, 2), PCI_MSIX_NO_VECTOR);

	driver_init(f, true);
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_IN, 3, buf, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(buf[0], pattern(3 * 512));
}

/* A request too short for its header and status is a protocol error. */
static void test_bad_request(void **state)
{
	struct fx *f = *state;
	struct seg s = { galloc(f, 16), 1, true };

	driver_init(f, true);
	submit_nokick(f, 1, &s, 1);
	kick(f, 1);
	assert_true(wait_for(needs_reset, f, 0));
	assert_true(wait_for(config_irq, f, 1));
}

static void test_bad_queue_address(void **state)
{
	struct fx *f = *state;

	discover(f);
	cfg_wr(f, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	assert_true(negotiate(f, STD_FEATURES));
	cc_wr(f, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	cc_wr(f, VIRTIO_PCI_COMMON_Q_DESC, 8, MEM_SIZE - 16);
	cc_wr(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	assert_true(status(f) & VIRTIO_STATUS_NEEDS_RESET);
	/* Writing 0 to queue_enable is not how a queue stops: ignored. */
	cc_wr(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 0);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
}

static void test_features_refused(void **state)
{
	struct fx *f = *state;

	discover(f);
	/* Something we do not offer, or no VERSION_1: FEATURES_OK does not stick. */
	assert_false(negotiate(f, STD_FEATURES | 1ULL << VIRTIO_BLK_F_SIZE_MAX));
	assert_false(negotiate(f, 1ULL << VIRTIO_BLK_F_FLUSH));
	/* DRIVER_OK without FEATURES_OK is not taken either. */
	cc_wr(f, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	      VIRTIO_STATUS_DRIVER_OK);
	assert_false(status(f) & VIRTIO_STATUS_DRIVER_OK);
	assert_true(negotiate(f, STD_FEATURES));
	/* Features are frozen once accepted. */
	cc_wr(f, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	cc_wr(f, VIRTIO_PCI_COMMON_GF, 4, 0);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_GF, 4), (uint32_t)STD_FEATURES);
	assert_int_equal(virtio_pci_features(&f->blk->vp), STD_FEATURES);
	/* A config vector beyond the table reads back as NO_VECTOR. */
	cc_wr(f, VIRTIO_PCI_COMMON_MSIX, 2, 100);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_MSIX, 2), PCI_MSIX_NO_VECTOR);
}

static bool intx_up(struct fx *f, unsigned gsi)
{
	return level(f, gsi);
}

/* Without MSI-X: INTx and the ISR, which reading clears. */
static void test_intx(void **state)
{
	struct fx *f = *state;
	uint64_t isr;
	uint8_t buf[512];
	unsigned gsi = PCI_INTX_GSI_BASE + 1;

	driver_init(f, false);
	assert_false(pci_msix_enabled(&f->blk->vp.msix));
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_IN, 1, buf, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_true(wait_for(intx_up, f, gsi));
	assert_true(cfg_rd(f, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	isr = bus_access(f, IO_SPACE_MMIO, f->bar4 + f->cap_off[VIRTIO_PCI_CAP_ISR_CFG], 1, 0, 0);
	assert_int_equal(isr, 1);
	assert_int_equal(level(f, gsi), 0);
	isr = bus_access(f, IO_SPACE_MMIO, f->bar4 + f->cap_off[VIRTIO_PCI_CAP_ISR_CFG], 1, 0, 0);
	assert_int_equal(isr, 0);
	assert_int_equal(msgs(f, MSI_DATA(1)), 0);
}

/* The PCI-configuration-access window reaches the BAR through config space. */
static void test_pci_cfg_window(void **state)
{
	struct fx *f = *state;
	unsigned cap;

	discover(f);
	cap = f->cap_off[VIRTIO_PCI_CAP_PCI_CFG];
	cfg_wr(f, cap + 4, 1, VIRTIO_PCI_BAR);
	cfg_wr(f, cap + 8, 4, VIRTIO_PCI_COMMON_OFF + VIRTIO_PCI_COMMON_NUMQ);
	cfg_wr(f, cap + 12, 4, 2);
	assert_int_equal(cfg_rd(f, cap + 16, 4) & 0xffff, NQ);
	/* A write: queue_select = 1, then read it back through MMIO. */
	cfg_wr(f, cap + 8, 4, VIRTIO_PCI_COMMON_OFF + VIRTIO_PCI_COMMON_Q_SELECT);
	cfg_wr(f, cap + 16, 2, 1);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_Q_SELECT, 2), 1);
	/* Bad lengths and offsets give nothing. */
	cfg_wr(f, cap + 12, 4, 3);
	assert_int_equal(cfg_rd(f, cap + 16, 4), 0);
	cfg_wr(f, cap + 12, 4, 4);
	cfg_wr(f, cap + 8, 4, 0x10000);
	assert_int_equal(cfg_rd(f, cap + 16, 4), 0);
}

/* Requests in flight on both queues at once, several per queue. */
static void test_multiqueue(void **state)
{
	struct fx *f = *state;
	uint16_t head[NQ][3];
	uint64_t data[NQ][3], st[NQ][3];

	driver_init(f, true);
	for (unsigned q = 0; q < NQ; q++) {
		for (unsigned k = 0; k < 3; k++) {
			uint64_t hdr = galloc(f, 16);
			uint32_t type = VIRTIO_BLK_T_OUT;
			uint64_t sector = 1000 + 16 * (q * 3 + k);
			struct seg s[3];

			data[q][k] = galloc(f, 4096);
			st[q][k] = galloc(f, 1);
			memcpy(f->mem.host + hdr, &type, 4);
			memcpy(f->mem.host + hdr + 8, &sector, 8);
			memset(f->mem.host + data[q][k], (int)(q * 3 + k + 1), 4096);
			s[0] = (struct seg){ hdr, 16, false };
			s[1] = (struct seg){ data[q][k], 4096, false };
			s[2] = (struct seg){ st[q][k], 1, true };
			head[q][k] = submit_nokick(f, q, s, 3);
		}
	}
	kick(f, 0);
	kick(f, 1);
	for (unsigned q = 0; q < NQ; q++) {
		unsigned seen = 0;

		for (unsigned k = 0; k < 3; k++) {
			uint16_t id = complete_any(f, q);
			unsigned which = 3;

			for (unsigned j = 0; j < 3; j++)
				if (head[q][j] == id)
					which = j;
			assert_true(which < 3);
			assert_false(seen & (1u << which));	/* each once */
			seen |= 1u << which;
		}
	}
	for (unsigned q = 0; q < NQ; q++) {
		for (unsigned k = 0; k < 3; k++) {
			uint8_t buf[4096];

			assert_int_equal(f->mem.host[st[q][k]], VIRTIO_BLK_S_OK);
			file_read(f, (1000 + 16 * (q * 3 + k)) * 512ULL, buf, sizeof(buf));
			assert_int_equal(buf[0], q * 3 + k + 1);
			assert_int_equal(buf[4095], q * 3 + k + 1);
		}
	}
	assert_int_equal(__atomic_load_n(&f->blk->vp.queues[0].requests, __ATOMIC_RELAXED), 3);
	assert_int_equal(__atomic_load_n(&f->blk->vp.queues[1].requests, __ATOMIC_RELAXED), 3);
}

/* Requests queued before DRIVER_OK are served when it comes. */
static void test_kick_before_driver_ok(void **state)
{
	struct fx *f = *state;
	uint64_t hdr = galloc(f, 16), data = galloc(f, 512), st = galloc(f, 1);
	uint32_t type = VIRTIO_BLK_T_IN;
	uint64_t sector = 5;
	struct seg s[3] = { { hdr, 16, false }, { data, 512, true }, { st, 1, true } };
	uint16_t head;

	discover(f);
	cfg_wr(f, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	setup_msix(f);
	assert_true(negotiate(f, STD_FEATURES));
	setup_queue(f, 0, true);
	memcpy(f->mem.host + hdr, &type, 4);
	memcpy(f->mem.host + hdr + 8, &sector, 8);
	head = submit_nokick(f, 0, s, 3);
	kick(f, 0);
	usleep(20000);
	assert_int_equal(used_idx(f, 0), 0);
	cc_wr(f, VIRTIO_PCI_COMMON_STATUS, 1, status(f) | VIRTIO_STATUS_DRIVER_OK);
	complete(f, 0, head);
	assert_int_equal(f->mem.host[st], VIRTIO_BLK_S_OK);
	assert_int_equal(f->mem.host[data], pattern(5 * 512));
}

/* ---- asynchronous requests, on the holding store ---- */

/* A request posted without waiting for it: header, data, status. */
static uint16_t post(struct fx *f, unsigned q, uint32_t type, uint64_t sector, uint64_t data,
		     uint32_t len, bool data_in, uint64_t st)
{
	uint64_t hdr = galloc(f, 16);
	struct seg s[3];
	unsigned n = 0;

	memcpy(f->mem.host + hdr, &type, 4);
	memset(f->mem.host + hdr + 4, 0, 4);
	memcpy(f->mem.host + hdr + 8, &sector, 8);
	f->mem.host[st] = 0xee;
	s[n++] = (struct seg){ hdr, 16, false };
	if (len)
		s[n++] = (struct seg){ data, len, data_in };
	s[n++] = (struct seg){ st, 1, true };
	return submit_nokick(f, q, s, n);
}

#define BATCH 5      /* 15 descriptors of the test's 16: more than the old 4 workers */

/* Every request the driver queued is in flight at once, from one worker. */
static void test_async_all_in_flight(void **state)
{
	struct fx *f = *state;
	uint64_t data[BATCH], st[BATCH];
	uint16_t head[BATCH];
	unsigned seen = 0;

	driver_init(f, true);
	if (!f->blk->async)
		skip();             /* no io_uring here: no queue loop */
	assert_int_equal(f->blk->vp.queues[0].nr_workers, 1);
	for (unsigned k = 0; k < BATCH; k++) {
		data[k] = galloc(f, 4096);
		st[k] = galloc(f, 1);
		memset(f->mem.host + data[k], 0x40 + (int)k, 4096);
		head[k] = post(f, 0, VIRTIO_BLK_T_OUT, 64 + 8 * k, data[k], 4096, false, st[k]);
	}
	kick(f, 0);
	held_wait(f->held, BATCH);
	assert_int_equal(f->held->max_held, BATCH);
	assert_int_equal(used_idx(f, 0), 0);          /* none completed yet */
	held_release(f->held);                          /* newest first */
	for (unsigned k = 0; k < BATCH; k++) {
		uint16_t id = complete_any(f, 0);
		unsigned which = BATCH;

		for (unsigned j = 0; j < BATCH; j++)
			if (head[j] == id)
				which = j;
		assert_true(which < BATCH);
		assert_false(seen & (1u << which));
		seen |= 1u << which;
	}
	for (unsigned k = 0; k < BATCH; k++) {
		assert_int_equal(f->mem.host[st[k]], VIRTIO_BLK_S_OK);
		assert_int_equal(f->held->data[(64 + 8 * k) * 512], 0x40 + k);
		assert_int_equal(f->held->data[(64 + 8 * k) * 512 + 4095], 0x40 + k);
	}
	assert_int_equal(f->blk->stats.writes, BATCH);
	assert_int_equal(f->held->sync_ops, 0);
	/* At least one interrupt; with EVENT_IDX off, possibly one per request. */
	assert_true(msgs(f, MSI_DATA(1)) >= 1 && msgs(f, MSI_DATA(1)) <= BATCH);
	assert_int_equal(__atomic_load_n(&f->blk->vp.queues[0].requests, __ATOMIC_RELAXED), BATCH);
}

/* A failed asynchronous request is an I/O error; a store that refuses one is used synchronously. */
static void test_async_error_and_refusal(void **state)
{
	struct fx *f = *state;
	uint64_t data = galloc(f, 1024), st = galloc(f, 1);
	uint8_t buf[512];
	uint32_t used;
	uint16_t head;

	driver_init(f, true);
	if (!f->blk->async)
		skip();             /* no io_uring here */
	f->held->fail_rc = -EIO;
	head = post(f, 1, VIRTIO_BLK_T_IN, 2, data, 1024, true, st);
	kick(f, 1);
	held_wait(f->held, 1);
	held_release(f->held);
	assert_int_equal(complete(f, 1, head), 1);
	assert_int_equal(f->mem.host[st], VIRTIO_BLK_S_IOERR);
	assert_int_equal(f->blk->stats.errors, 1);
	assert_int_equal(f->blk->stats.reads, 0);

	/* A flush goes the same way. */
	f->held->fail_rc = 0;
	head = post(f, 1, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, st);
	kick(f, 1);
	held_wait(f->held, 1);
	held_release(f->held);
	assert_int_equal(complete(f, 1, head), 1);
	assert_int_equal(f->mem.host[st], VIRTIO_BLK_S_OK);
	assert_int_equal(f->blk->stats.flushes, 1);

	/* Refused (out of memory, say): done on the worker, synchronously. */
	f->held->refuse_rc = -ENOMEM;
	memset(buf, 0x5c, sizeof(buf));
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_OUT, 7, buf, sizeof(buf), false, &used),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(used, 1);
	assert_int_equal(f->held->sync_ops, 1);
	assert_int_equal(f->held->data[7 * 512], 0x5c);
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_IN, 7, buf, sizeof(buf), true, &used),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(used, sizeof(buf) + 1);
	assert_int_equal(f->held->sync_ops, 2);
	assert_int_equal(f->held->max_held, 1);
}

struct resetter {
	struct fx *f;
	int done;        /* atomic */
	pthread_t t;
};

static void *reset_main(void *arg)
{
	struct resetter *r = arg;

	cc_wr(r->f, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* A reset waits for the requests in flight; none is returned to the ring after it. */
static void test_reset_waits_for_async(void **state)
{
	struct fx *f = *state;
	struct resetter r = { .f = f };
	uint64_t data[3], st[3];
	uint8_t buf[512];

	driver_init(f, true);
	if (!f->blk->async)
		skip();             /* no io_uring here */
	for (unsigned k = 0; k < 3; k++) {
		data[k] = galloc(f, 512);
		st[k] = galloc(f, 1);
		post(f, 0, VIRTIO_BLK_T_IN, k, data[k], 512, true, st[k]);
	}
	kick(f, 0);
	held_wait(f->held, 3);
	assert_int_equal(pthread_create(&r.t, NULL, reset_main, &r), 0);
	usleep(50000);
	/* Still waiting: nothing was completed (a reset that did not wait would be done). */
	assert_int_equal(__atomic_load_n(&r.done, __ATOMIC_ACQUIRE), 0);
	held_release(f->held);
	pthread_join(r.t, NULL);
	assert_int_equal(status(f), 0);
	for (unsigned k = 0; k < 3; k++) {
		assert_int_equal(f->mem.host[st[k]], VIRTIO_BLK_S_OK);
		assert_int_equal(f->mem.host[data[k]], pattern(k * 512));
	}
	/* Usable again. */
	f->held->refuse_rc = -EAGAIN;
	driver_init(f, true);
	assert_int_equal(blk_req(f, 1, VIRTIO_BLK_T_IN, 9, buf, sizeof(buf), true, NULL),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(buf[0], pattern(9 * 512));
}

static bool pipe_reached(struct fx *f, unsigned n)
{
	return pipe_submitted(f->pipe) >= n;
}

static void feed(struct fx *f, unsigned requests)
{
	uint8_t buf[512];

	memset(buf, 0x3c, sizeof(buf));
	for (unsigned i = 0; i < requests; i++)
		assert_int_equal(write(f->pipe->wr, buf, sizeof(buf)), sizeof(buf));
}

/*
 * A ring of 4: four requests go to it, the fifth stays in the virtqueue
 * (notifications off) until one completes; then the worker, woken by that
 * completion, takes it without a kick.
 */
static void test_ring_full(void **state)
{
	struct fx *f = *state;
	uint64_t data[5], st[5];

	driver_init(f, true);
	if (!f->blk->async)
		skip();
	for (unsigned k = 0; k < 5; k++) {
		data[k] = galloc(f, 512);
		st[k] = galloc(f, 1);
		post(f, 0, VIRTIO_BLK_T_IN, k, data[k], 512, true, st[k]);
	}
	kick(f, 0);
	assert_true(wait_for(pipe_reached, f, 4));
	usleep(20000);
	assert_int_equal(pipe_submitted(f->pipe), 4);      /* the fifth waits for room */
	assert_int_equal(used_idx(f, 0), 0);
	feed(f, 1);
	assert_true(wait_for(pipe_reached, f, 5));
	complete_any(f, 0);
	feed(f, 4);
	for (unsigned k = 0; k < 4; k++)
		complete_any(f, 0);
	for (unsigned k = 0; k < 5; k++) {
		assert_int_equal(f->mem.host[st[k]], VIRTIO_BLK_S_OK);
		assert_int_equal(f->mem.host[data[k]], 0x3c);
	}
	assert_int_equal(f->blk->stats.reads, 5);
}

/* The default (io='threads'): no asynchronous requests, the workers do everything. */
static void test_io_threads(void **state)
{
	struct fx *f = *state;
	uint8_t out[2048], in[2048];

	driver_init(f, true);
	assert_false(f->blk->async);
	assert_int_equal(f->blk->vp.queues[0].nr_workers, VIRTIO_BLK_QUEUE_THREADS);
	for (unsigned i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 3);
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_OUT, 20, out, sizeof(out), false, NULL),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(blk_req(f, 1, VIRTIO_BLK_T_IN, 20, in, sizeof(in), true, NULL),
			 VIRTIO_BLK_S_OK);
	assert_memory_equal(in, out, sizeof(in));
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, false, NULL),
			 VIRTIO_BLK_S_OK);
}

/* ---- queue 1 served by node 1 (docs/cluster.md, "Disk queues") ---- */

static struct vq_remote_queue_stats served(struct fx *f)
{
	struct vq_remote_queue_stats st[NQ];
	unsigned n = vq_remote_stats(f->node[1].vqr, st, NQ);

	assert_int_equal(n, 1);
	assert_int_equal(st[0].queue, 1);
	return st[0];
}

static bool notify_here(struct fx *f, unsigned q)
{
	struct io_req r = { .space = IO_SPACE_MMIO, .is_write = 1, .len = 2, .data = q,
			    .addr = f->bar4 + f->cap_off[VIRTIO_PCI_CAP_NOTIFY_CFG] +
				    (uint64_t)q * f->notify_mult };

	return vq_remote_notify(f->node[1].vqr, &r);
}

/* Node 1 serves queue 1 from the rings in guest RAM: data, completions, interrupts. */
static void test_remote_queue(void **state)
{
	struct fx *f = *state;
	uint8_t out[1024], in[1024], disk[1024];
	uint64_t hdr = 0, dat, st;
	uint32_t type = VIRTIO_BLK_T_IN;
	uint64_t sector = 40;
	struct seg s[3];
	uint16_t head;

	driver_init(f, true);
	/* DRIVER_OK sent queue 1's state to node 1, and nothing for queue 0. */
	assert_int_equal(sent(f, NODE_MSG_VQ_START), 1);
	for (unsigned i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 7 + 3);
	/* A notify reaching the I/O node (a vCPU of node 0) is passed on to node 1. */
	assert_int_equal(blk_req(f, 1, VIRTIO_BLK_T_OUT, 20, out, sizeof(out), false, NULL),
			 VIRTIO_BLK_S_OK);
	file_read(f, 20 * 512, disk, sizeof(disk));
	assert_memory_equal(disk, out, sizeof(out));
	assert_int_equal(blk_req(f, 1, VIRTIO_BLK_T_IN, 20, in, sizeof(in), true, NULL),
			 VIRTIO_BLK_S_OK);
	assert_memory_equal(in, out, sizeof(out));
	assert_true(sent(f, NODE_MSG_VQ_KICK) >= 2);
	/* Node 1's vCPU notifies: taken there, never forwarded. */
	hdr = galloc(f, 16);
	dat = galloc(f, 512);
	st = galloc(f, 1);
	memcpy(f->mem.host + hdr, &type, 4);
	memcpy(f->mem.host + hdr + 8, &sector, 8);
	s[0] = (struct seg){ hdr, 16, false };
	s[1] = (struct seg){ dat, 512, true };
	s[2] = (struct seg){ st, 1, true };
	head = submit_nokick(f, 1, s, 3);
	assert_true(notify_here(f, 1));
	complete(f, 1, head);
	assert_int_equal(f->mem.host[st], VIRTIO_BLK_S_OK);
	assert_int_equal(f->mem.host[dat + 7], pattern(40 * 512 + 7));
	/* Queue 0 is the I/O node's: its notify is not node 1's to take. */
	assert_false(notify_here(f, 0));
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_IN, 1, in, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(__atomic_load_n(&f->blk->vp.queues[0].requests, __ATOMIC_RELAXED), 1);
	assert_int_equal(__atomic_load_n(&f->blk->vp.queues[1].requests, __ATOMIC_RELAXED), 0);
	assert_int_equal(served(f).requests, 3);
	assert_int_equal(served(f).local_notifies, 1);
	/* Completions went straight from node 1 to the LAPICs: queue 1's vector is 2. */
	assert_int_equal(served(f).msis, msgs(f, MSI_DATA(2)));
	assert_true(served(f).msis >= 1);
	assert_int_equal(served(f).irqs_forwarded, 0);
	assert_int_equal(f->failures, 0);
}

static bool pba_set(struct fx *f, unsigned v)
{
	return bus_access(f, IO_SPACE_MMIO, f->bar1 + 2048, 4, 0, 0) & (1u << v);
}

/* A masked vector: node 1 leaves the interrupt to the I/O node, which holds it pending. */
/*
 * Node 1 started queue 1 and applied its route (direct or not, as asked).
 * A route change reaches the serving node asynchronously (docs/cluster.md,
 * "Disk queues"): a request its worker picks up before the message arrives
 * completes on the old route, so the test waits before queueing one.
 */
static bool route_is(struct fx *f, unsigned direct)
{
	struct virtio_blk *b = __atomic_load_n(&f->node[1].replica, __ATOMIC_ACQUIRE);
	bool d, started;

	if (!b)
		return false;
	pthread_mutex_lock(&b->vp.lock);
	started = b->vp.queues[1].enabled;
	pthread_mutex_unlock(&b->vp.lock);
	if (!started)
		return false;
	pthread_mutex_lock(&b->vp.route_lock);
	d = b->vp.queues[1].route.direct;
	pthread_mutex_unlock(&b->vp.route_lock);
	return d == (direct != 0);
}

static void test_remote_masked_vector(void **state)
{
	struct fx *f = *state;
	uint8_t buf[512];
	unsigned before, routes;

	driver_init(f, true);
	routes = sent(f, NODE_MSG_VQ_MSIX);
	bus_access(f, IO_SPACE_MMIO, f->bar1 + 16 * 2 + 12, 4, 1, 1);	/* mask vector 2 */
	assert_int_equal(sent(f, NODE_MSG_VQ_MSIX), routes + 1);
	assert_true(wait_for(route_is, f, 0));
	before = msgs(f, MSI_DATA(2));
	assert_int_equal(blk_req(f, 1, VIRTIO_BLK_T_IN, 2, buf, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_true(wait_for(pba_set, f, 2));
	assert_int_equal(msgs(f, MSI_DATA(2)), before);
	assert_true(served(f).irqs_forwarded >= 1);
	/* Unmasked: the pending message goes, and node 1 sends the next ones itself. */
	bus_access(f, IO_SPACE_MMIO, f->bar1 + 16 * 2 + 12, 4, 1, 0);
	assert_int_equal(msgs(f, MSI_DATA(2)), before + 1);
	assert_int_equal(sent(f, NODE_MSG_VQ_MSIX), routes + 2);
	assert_true(wait_for(route_is, f, 1));
	/* A table write that changes nothing for queue 1 sends nothing. */
	bus_access(f, IO_SPACE_MMIO, f->bar1 + 16 * 1 + 8, 4, 1, MSI_DATA(1));
	assert_int_equal(sent(f, NODE_MSG_VQ_MSIX), routes + 2);
	assert_int_equal(blk_req(f, 1, VIRTIO_BLK_T_IN, 3, buf, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(buf[0], pattern(3 * 512));
}

/* A reset stops node 1 before the I/O node answers; the queue starts again after. */
static void test_remote_reset(void **state)
{
	struct fx *f = *state;
	uint8_t buf[512];

	driver_init(f, true);
	assert_int_equal(blk_req(f, 1, VIRTIO_BLK_T_IN, 4, buf, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_true(notify_here(f, 1));
	cc_wr(f, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	assert_int_equal(status(f), 0);
	/* The reset was confirmed (the write returned), and node 1 no longer takes notifies. */
	assert_int_equal(sent(f, NODE_MSG_VQ_RESET), 1);
	assert_int_equal(sent(f, NODE_MSG_VQ_RESET_DONE), 1);
	assert_false(notify_here(f, 1));
	assert_int_equal(f->failures, 0);
	/* The driver sets the device up again (new rings): node 1 serves the new queue. */
	f->buf_next = BUF_GPA;
	driver_init(f, true);
	assert_int_equal(sent(f, NODE_MSG_VQ_START), 2);
	assert_int_equal(blk_req(f, 1, VIRTIO_BLK_T_IN, 5, buf, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(buf[0], pattern(5 * 512));
}

/* A ring the guest breaks on node 1 makes the I/O node's device need a reset. */
static void test_remote_broken_ring(void **state)
{
	struct fx *f = *state;
	uint8_t *ring = f->mem.host + RING_GPA(1);
	uint16_t flags = VIRTQ_DESC_F_NEXT, idx = 1, zero = 0;
	uint64_t gpa = galloc(f, 64);
	uint32_t len = 16;

	driver_init(f, true);
	memcpy(ring, &gpa, 8);
	memcpy(ring + 8, &len, 4);
	memcpy(ring + 12, &flags, 2);
	memcpy(ring + 14, &zero, 2);          /* desc 0 -> desc 0 */
	memcpy(ring + 0x1004, &zero, 2);
	__atomic_store_n((uint16_t *)(ring + 0x1002), idx, __ATOMIC_RELEASE);
	/* Node 1 takes its notifies once it has started the queue (before: forwarded). */
	assert_true(wait_for(notify_here, f, 1));
	assert_true(wait_for(needs_reset, f, 0));
	assert_true(wait_for(config_irq, f, 1));
	assert_int_equal(sent(f, NODE_MSG_VQ_FAIL), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_probe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush_id_unsupported, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard_write_zeroes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard_not_negotiated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only, setup_readonly, teardown),
		cmocka_unit_test_setup_teardown(test_broken_chain_and_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_queue_address, setup, teardown),
		cmocka_unit_test_setup_teardown(test_features_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_intx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pci_cfg_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_multiqueue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kick_before_driver_ok, setup, teardown),
		/* The same requests through the io_uring queue loop (io='io_uring'). */
		cmocka_unit_test_setup_teardown(test_read_write, setup_uring, teardown),
		cmocka_unit_test_setup_teardown(test_flush_id_unsupported, setup_uring, teardown),
		cmocka_unit_test_setup_teardown(test_discard_write_zeroes, setup_uring, teardown),
		cmocka_unit_test_setup_teardown(test_read_only, setup_uring_readonly, teardown),
		cmocka_unit_test_setup_teardown(test_broken_chain_and_reset, setup_uring, teardown),
		cmocka_unit_test_setup_teardown(test_intx, setup_uring, teardown),
		cmocka_unit_test_setup_teardown(test_multiqueue, setup_uring, teardown),
		cmocka_unit_test_setup_teardown(test_kick_before_driver_ok, setup_uring, teardown),
		cmocka_unit_test_setup_teardown(test_async_all_in_flight, setup_held, teardown),
		cmocka_unit_test_setup_teardown(test_async_error_and_refusal, setup_held, teardown),
		cmocka_unit_test_setup_teardown(test_reset_waits_for_async, setup_held, teardown),
		cmocka_unit_test_setup_teardown(test_io_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ring_full, setup_pipe, teardown),
		cmocka_unit_test_setup_teardown(test_remote_queue, setup_two_nodes, teardown),
		cmocka_unit_test_setup_teardown(test_remote_masked_vector, setup_two_nodes, teardown),
		cmocka_unit_test_setup_teardown(test_remote_reset, setup_two_nodes, teardown),
		cmocka_unit_test_setup_teardown(test_remote_broken_ring, setup_two_nodes, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
