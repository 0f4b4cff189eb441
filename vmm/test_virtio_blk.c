// SPDX-License-Identifier: MIT
/*
 * virtio-blk over the modern PCI transport, end to end: this test is the
 * driver. It finds the function through configuration mechanism #1, reads
 * the virtio capabilities, negotiates features, sets up MSI-X and the
 * queues in guest RAM, and submits requests that the device's workers
 * serve from a raw file. Malformed chains and requests must end in
 * DEVICE_NEEDS_RESET, and a reset must bring the device back.
 *
 * The driver is vmm/test_blk_fixture.c; queues served by another node
 * are vmm/test_vq_remote.c's. A store that holds asynchronous requests
 * until the test lets them go shows how many are in flight at once,
 * completions in any order, errors, a store that refuses them
 * (synchronous fallback), and a reset that waits for them.
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

#include "vmm/test_blk_fixture.h"

struct held_store;
struct pipe_store;

/* The device's fixture, with the store of some tests instead of the file. */
struct blk_fx {
	struct fx fx;                /* first: the driver and the tests see a struct fx */
	struct held_store *held;
	struct pipe_store *pipe;
};

static struct blk_fx *blk_fx(struct fx *f)
{
	return (struct blk_fx *)f;
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

static void add_blk(struct blk_fx *b, bool ro, bool io_uring, unsigned ring_depth)
{
	struct fx *f = &b->fx;
	struct virtio_blk_opts o = fx_blk_opts(f, b->held ? &b->held->bd : b->pipe ?
					       &b->pipe->bd : make_store(f, ro));

	o.io_uring = io_uring;
	o.ring_depth = ring_depth;
	fx_add_blk(f, &o);
}

static int setup_with(void **state, bool ro, bool held, bool io_uring, bool pipe)
{
	struct blk_fx *b = test_calloc(1, sizeof(*b));
	unsigned ring_depth = 0;

	fx_init(&b->fx);
	if (held) {
		b->held = test_calloc(1, sizeof(*b->held));
		b->held->bd.ops = &held_ops;
		b->held->bd.block_size = 512;
		pthread_mutex_init(&b->held->lock, NULL);
		pthread_cond_init(&b->held->cond, NULL);
		for (unsigned i = 0; i < DISK_SIZE; i++)
			b->held->data[i] = pattern(i);
	}
	if (pipe) {
		int fds[2];

		assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
		b->pipe = test_calloc(1, sizeof(*b->pipe));
		b->pipe->bd.ops = &pipe_ops;
		b->pipe->bd.block_size = 512;
		b->pipe->rd = fds[0];
		b->pipe->wr = fds[1];
		ring_depth = 4;
	}
	add_blk(b, ro, io_uring || held || pipe, ring_depth);
	*state = &b->fx;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, false, false, false, false);
}

static int setup_readonly(void **state)
{
	return setup_with(state, true, false, false, false);
}

/* The file store with io='io_uring'. */
static int setup_uring(void **state)
{
	return setup_with(state, false, false, true, false);
}

static int setup_uring_readonly(void **state)
{
	return setup_with(state, true, false, true, false);
}

static int setup_held(void **state)
{
	return setup_with(state, false, true, false, false);
}

static int setup_pipe(void **state)
{
	return setup_with(state, false, false, false, true);
}

/* <blockio logical_block_size='4096' physical_block_size='16384'/> */
static int setup_blockio(void **state)
{
	struct blk_fx *b = test_calloc(1, sizeof(*b));
	struct virtio_blk_opts o;

	fx_init(&b->fx);
	o = fx_blk_opts(&b->fx, make_store(&b->fx, false));
	o.logical_block = 4096;
	o.physical_block = 16384;
	fx_add_blk(&b->fx, &o);
	*state = &b->fx;
	return 0;
}

static int teardown(void **state)
{
	struct blk_fx *b = blk_fx(*state);

	virtio_blk_destroy(b->fx.blk);
	if (b->pipe) {
		assert_true(b->pipe->closed);
		close(b->pipe->rd);
		close(b->pipe->wr);
		test_free(b->pipe);
	}
	if (b->held) {
		assert_true(b->held->closed);
		pthread_cond_destroy(&b->held->cond);
		pthread_mutex_destroy(&b->held->lock);
		test_free(b->held);
	}
	fx_fini(&b->fx);
	test_free(b);
	return 0;
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
	assert_false(df & 1ULL << VIRTIO_BLK_F_TOPOLOGY);    /* no <blockio physical_block_size> */
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
	assert_int_equal(f->blk->stats.refused, 3);
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

/*
 * 4 KiB logical blocks and a 16 KiB physical block: the guest is told
 * (BLK_SIZE, TOPOLOGY), and a request that does not start and end on a
 * logical block fails without reaching the store.
 */
static void test_blockio(void **state)
{
	struct fx *f = *state;
	static uint8_t out[8192], in[8192], file[8192];
	struct range ok = { 8, 16, 0 }, odd_start = { 9, 8, 0 }, odd_len = { 8, 9, 0 };

	discover(f);
	assert_true(device_features(f) & 1ULL << VIRTIO_BLK_F_TOPOLOGY);
	assert_int_equal(devcfg(f, VIRTIO_BLK_CFG_BLK_SIZE, 4), 4096);
	assert_int_equal(devcfg(f, VIRTIO_BLK_CFG_PHYS_BLOCK_EXP, 1), 2);
	assert_int_equal(devcfg(f, VIRTIO_BLK_CFG_ALIGN_OFFSET, 1), 0);
	assert_int_equal(devcfg(f, VIRTIO_BLK_CFG_MIN_IO_SIZE, 2), 4);
	assert_int_equal(devcfg(f, VIRTIO_BLK_CFG_OPT_IO_SIZE, 4), 0);
	assert_int_equal(devcfg(f, VIRTIO_BLK_CFG_DISCARD_ALIGN, 4), 8);
	driver_init_features(f, true, device_features(f));
	for (unsigned i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 7);
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_OUT, 8, out, sizeof(out), false, NULL),
			 VIRTIO_BLK_S_OK);
	file_read(f, 8 * 512, file, sizeof(file));
	assert_memory_equal(file, out, sizeof(out));
	assert_int_equal(blk_req(f, 1, VIRTIO_BLK_T_IN, 8, in, sizeof(in), true, NULL),
			 VIRTIO_BLK_S_OK);
	assert_memory_equal(in, out, sizeof(in));
	/* Sector 9, or 512 bytes: not on a 4 KiB block. */
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_IN, 9, in, 4096, true, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_OUT, 16, out, 512, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_DISCARD, 0, &odd_start, sizeof(odd_start),
				 false, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, &odd_len, sizeof(odd_len),
				 false, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, &ok, sizeof(ok), false, NULL),
			 VIRTIO_BLK_S_OK);
	file_read(f, 8 * 512, file, sizeof(file));
	for (unsigned i = 0; i < sizeof(file); i++)
		assert_int_equal(file[i], 0);
	assert_int_equal(f->blk->stats.errors, 0);
	assert_int_equal(f->blk->stats.refused, 4);
	assert_int_equal(f->blk->stats.bytes_written, sizeof(out));
}

/* A logical block smaller than the store's, or a physical one below it: refused. */
static void test_blockio_refused(void **state)
{
	struct fx f;
	struct virtio_blk *b = NULL;
	struct virtio_blk_opts o;
	char err[256];

	fx_init(&f);
	o = fx_blk_opts(&f, make_store(&f, false));
	o.bd->block_size = 4096;           /* as a device of 4 KiB sectors */
	o.logical_block = 512;
	assert_int_equal(virtio_blk_create(&b, &f.bus, &o, err, sizeof(err)), -1);
	assert_null(b);
	assert_string_equal(err, "virtio-blk vda: logical block size 512 does not fit a store "
			    "of 4096-byte blocks");
	o = fx_blk_opts(&f, make_store(&f, false));
	o.logical_block = 4096;
	o.physical_block = 2048;
	assert_int_equal(virtio_blk_create(&b, &f.bus, &o, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "physical block size 2048 is not a power-of-two multiple"));
	fx_fini(&f);
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


/* A looping chain breaks the device until a reset; then it works again. */
static void test_broken_chain_and_reset(void **state)
{
	struct fx *f = *state;
	uint8_t buf[512];

	driver_init(f, true);
	post_looping_chain(f, 0);
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
	struct held_store *h = blk_fx(f)->held;
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
	held_wait(h, BATCH);
	assert_int_equal(h->max_held, BATCH);
	assert_int_equal(used_idx(f, 0), 0);          /* none completed yet */
	held_release(h);                              /* newest first */
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
		assert_int_equal(h->data[(64 + 8 * k) * 512], 0x40 + k);
		assert_int_equal(h->data[(64 + 8 * k) * 512 + 4095], 0x40 + k);
	}
	assert_int_equal(f->blk->stats.writes, BATCH);
	assert_int_equal(h->sync_ops, 0);
	/* At least one interrupt; with EVENT_IDX off, possibly one per request. */
	assert_true(msgs(f, MSI_DATA(1)) >= 1 && msgs(f, MSI_DATA(1)) <= BATCH);
	assert_int_equal(__atomic_load_n(&f->blk->vp.queues[0].requests, __ATOMIC_RELAXED), BATCH);
}

/* A failed asynchronous request is an I/O error; a store that refuses one is used synchronously. */
static void test_async_error_and_refusal(void **state)
{
	struct fx *f = *state;
	struct held_store *h = blk_fx(f)->held;
	uint64_t data = galloc(f, 1024), st = galloc(f, 1);
	uint8_t buf[512];
	uint32_t used;
	uint16_t head;

	driver_init(f, true);
	if (!f->blk->async)
		skip();             /* no io_uring here */
	h->fail_rc = -EIO;
	head = post(f, 1, VIRTIO_BLK_T_IN, 2, data, 1024, true, st);
	kick(f, 1);
	held_wait(h, 1);
	held_release(h);
	assert_int_equal(complete(f, 1, head), 1);
	assert_int_equal(f->mem.host[st], VIRTIO_BLK_S_IOERR);
	assert_int_equal(f->blk->stats.errors, 1);
	assert_int_equal(f->blk->stats.reads, 0);

	/* A flush goes the same way. */
	h->fail_rc = 0;
	head = post(f, 1, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, st);
	kick(f, 1);
	held_wait(h, 1);
	held_release(h);
	assert_int_equal(complete(f, 1, head), 1);
	assert_int_equal(f->mem.host[st], VIRTIO_BLK_S_OK);
	assert_int_equal(f->blk->stats.flushes, 1);

	/* Refused (out of memory, say): done on the worker, synchronously. */
	h->refuse_rc = -ENOMEM;
	memset(buf, 0x5c, sizeof(buf));
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_OUT, 7, buf, sizeof(buf), false, &used),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(used, 1);
	assert_int_equal(h->sync_ops, 1);
	assert_int_equal(h->data[7 * 512], 0x5c);
	assert_int_equal(blk_req(f, 0, VIRTIO_BLK_T_IN, 7, buf, sizeof(buf), true, &used),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(used, sizeof(buf) + 1);
	assert_int_equal(h->sync_ops, 2);
	assert_int_equal(h->max_held, 1);
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
	struct held_store *h = blk_fx(f)->held;
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
	held_wait(h, 3);
	assert_int_equal(pthread_create(&r.t, NULL, reset_main, &r), 0);
	usleep(50000);
	/* Still waiting: nothing was completed (a reset that did not wait would be done). */
	assert_int_equal(__atomic_load_n(&r.done, __ATOMIC_ACQUIRE), 0);
	held_release(h);
	pthread_join(r.t, NULL);
	assert_int_equal(status(f), 0);
	for (unsigned k = 0; k < 3; k++) {
		assert_int_equal(f->mem.host[st[k]], VIRTIO_BLK_S_OK);
		assert_int_equal(f->mem.host[data[k]], pattern(k * 512));
	}
	/* Usable again. */
	h->refuse_rc = -EAGAIN;
	driver_init(f, true);
	assert_int_equal(blk_req(f, 1, VIRTIO_BLK_T_IN, 9, buf, sizeof(buf), true, NULL),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(buf[0], pattern(9 * 512));
}

static bool pipe_reached(struct fx *f, unsigned n)
{
	return pipe_submitted(blk_fx(f)->pipe) >= n;
}

static void feed(struct fx *f, unsigned requests)
{
	uint8_t buf[512];

	memset(buf, 0x3c, sizeof(buf));
	for (unsigned i = 0; i < requests; i++)
		assert_int_equal(write(blk_fx(f)->pipe->wr, buf, sizeof(buf)), sizeof(buf));
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
	assert_int_equal(pipe_submitted(blk_fx(f)->pipe), 4);      /* the fifth waits for room */
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


int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_probe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush_id_unsupported, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard_write_zeroes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard_not_negotiated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_blockio, setup_blockio, teardown),
		cmocka_unit_test(test_blockio_refused),
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

