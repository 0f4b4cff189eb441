// SPDX-License-Identifier: MIT
/*
 * A disk queue served by another node (docs/cluster.md, "Disk queues"):
 * two nodes in one process, each with its vq_remote, joined by a fabric
 * that encodes and decodes every message. Node 0 is the I/O node, with
 * the device's registers; queue 1's vector is affine to a CPU of node 1,
 * which serves that queue from the rings in guest RAM through a replica of
 * the device. The test is the driver (vmm/test_blk_fixture.h).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/test_blk_fixture.h"
#include "vmm/vq_remote.h"

/* A node of a two-node cluster in this process (queues served elsewhere). */
struct tnode {
	struct fx *f;
	unsigned self;
	struct vq_remote *vqr;
	struct virtio_blk *replica;  /* node 1's, once it serves a queue */
};

/* The device's fixture, with queue 1 served by node 1. */
struct two {
	struct fx fx;                /* first: the driver and the tests see a struct fx */
	struct tnode node[2];
	unsigned sent[16];           /* node messages by type - NODE_MSG_APIC */
	unsigned failures;
};

static struct two *two_of(struct fx *f)
{
	return (struct two *)f;
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
	two_of(f)->sent[(msg->type - NODE_MSG_APIC) % 16]++;
	pthread_mutex_unlock(&f->lock);
	vq_remote_receive(two_of(f)->node[dst].vqr, t->self, &got);
	return 0;
}

static unsigned sent(struct fx *f, uint16_t type)
{
	unsigned n;

	pthread_mutex_lock(&f->lock);
	n = two_of(f)->sent[(type - NODE_MSG_APIC) % 16];
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
	two_of(t->f)->failures++;
	pthread_mutex_unlock(&t->f->lock);
}

static void make_nodes(struct two *w)
{
	char err[256];

	for (unsigned i = 0; i < 2; i++) {
		struct vq_remote_config c = {
			.self = i, .io_node = 0, .nr_disks = 1, .nr_queues = NQ,
			.msi_node = tn_msi_node, .send = tn_send, .make_replica = tn_make_replica,
			.msi = tn_msi, .fail = tn_fail, .ctx = &w->node[i],
		};

		w->node[i].f = &w->fx;
		w->node[i].self = i;
		assert_int_equal(vq_remote_create(&w->node[i].vqr, &c, err, sizeof(err)), 0);
	}
}

static void add_blk(struct two *w)
{
	struct fx *f = &w->fx;
	struct virtio_blk_opts o = fx_blk_opts(f, make_store(f, false));

	o.remote = &vq_remote_ops;
	o.remote_ctx = vq_remote_disk_ctx(w->node[0].vqr, 0);
	fx_add_blk(f, &o);
	vq_remote_set_device(w->node[0].vqr, 0, &f->blk->vp);
}

static int setup_two_nodes(void **state)
{
	struct two *w = test_calloc(1, sizeof(*w));

	fx_init(&w->fx);
	make_nodes(w);
	add_blk(w);
	*state = &w->fx;
	return 0;
}

static int teardown(void **state)
{
	struct two *w = two_of(*state);

	vq_remote_stop(w->node[1].vqr);   /* the serving node first, as a node's teardown does */
	virtio_blk_destroy(w->fx.blk);
	vq_remote_destroy(w->node[1].vqr);
	vq_remote_destroy(w->node[0].vqr);
	fx_fini(&w->fx);
	test_free(w);
	return 0;
}

/* ---- queue 1 served by node 1 (docs/cluster.md, "Disk queues") ---- */

static struct vq_remote_queue_stats served(struct fx *f)
{
	struct vq_remote_queue_stats st[NQ];
	unsigned n = vq_remote_stats(two_of(f)->node[1].vqr, st, NQ);

	assert_int_equal(n, 1);
	assert_int_equal(st[0].queue, 1);
	return st[0];
}

static bool notify_here(struct fx *f, unsigned q)
{
	struct io_req r = { .space = IO_SPACE_MMIO, .is_write = 1, .len = 2, .data = q,
			    .addr = f->bar4 + f->cap_off[VIRTIO_PCI_CAP_NOTIFY_CFG] +
				    (uint64_t)q * f->notify_mult };

	return vq_remote_notify(two_of(f)->node[1].vqr, &r);
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
	assert_int_equal(two_of(f)->failures, 0);
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
	struct virtio_blk *b = __atomic_load_n(&two_of(f)->node[1].replica, __ATOMIC_ACQUIRE);
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
	assert_int_equal(two_of(f)->failures, 0);
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

	driver_init(f, true);
	post_looping_chain(f, 1);
	/* Node 1 takes its notifies once it has started the queue (before: forwarded). */
	assert_true(wait_for(notify_here, f, 1));
	assert_true(wait_for(needs_reset, f, 0));
	assert_true(wait_for(config_irq, f, 1));
	assert_int_equal(sent(f, NODE_MSG_VQ_FAIL), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_remote_queue, setup_two_nodes, teardown),
		cmocka_unit_test_setup_teardown(test_remote_masked_vector, setup_two_nodes, teardown),
		cmocka_unit_test_setup_teardown(test_remote_reset, setup_two_nodes, teardown),
		cmocka_unit_test_setup_teardown(test_remote_broken_ring, setup_two_nodes, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
