// SPDX-License-Identifier: MIT
/*
 * Disk queues served by the node of their vCPU: see vq_remote.h and
 * docs/cluster.md, "Disk queues".
 *
 * Serving node: messages from the I/O node are handled in order on one
 * thread of this object, never on the fabric's receive thread: starting a
 * queue opens the disk's store (a round trip on the fabric) and a reset
 * waits for the queue's workers, which may themselves wait for a store
 * reply or a guest page that only the receive thread can bring. Kicks are
 * coalesced into one bit per queue, taken after the messages that came
 * before them.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmm/vm_config.h"
#include "vmm/vq_remote.h"

#define RING_ITEMS 256
#define RESET_TIMEOUT_MS 10000
#define WAIT_SLICE_MS 100

struct vqr_disk {
	struct vq_remote *r;
	unsigned index;
	/* I/O node (r->lock): the device, and what each node was asked to serve. */
	struct virtio_pci *vp;
	uint8_t node[VIRTIO_BLK_MAX_QUEUES];   /* where each queue is served (once placed) */
	bool started_on[VM_MAX_NODES];
	uint32_t reset_seq;
	bool reset_waiting[VM_MAX_NODES];
	/* Serving node: the replica (pointer under r->lock; made by the thread). */
	struct virtio_blk *replica;
	bool served[VIRTIO_BLK_MAX_QUEUES];
	bool notify_valid[VIRTIO_BLK_MAX_QUEUES];
	uint64_t notify_gpa[VIRTIO_BLK_MAX_QUEUES];
	uint32_t kick_bits;                    /* pending forwarded kicks, per queue */
	/* Statistics (atomic). */
	uint64_t local_notifies[VIRTIO_BLK_MAX_QUEUES];
	uint64_t forwarded_notifies[VIRTIO_BLK_MAX_QUEUES];
	uint64_t msis[VIRTIO_BLK_MAX_QUEUES];
	uint64_t irqs_forwarded[VIRTIO_BLK_MAX_QUEUES];
};

struct vqr_item {
	unsigned src;
	struct node_msg msg;
};

struct vq_remote {
	struct vq_remote_config c;
	pthread_mutex_t lock;
	pthread_cond_t cond;               /* items or kicks for the thread; reset replies */
	struct vqr_disk disks[NODE_MSG_VQ_MAX_DISKS];
	struct vqr_item ring[RING_ITEMS];
	unsigned head, count;
	bool kicks;                        /* some kick_bits set */
	bool stop;
	bool thread_started;
	pthread_t thread;
};

#define STAT_ADD(p) __atomic_fetch_add(&(p), 1, __ATOMIC_RELAXED)

static void rlog(struct vq_remote *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rlog(struct vq_remote *r, const char *fmt, ...)
{
	char msg[384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (r->c.log)
		r->c.log(r->c.ctx, msg);
	else
		fprintf(stderr, "grappe-node %u: %s\n", r->c.self, msg);
}

static int send_msg(struct vq_remote *r, unsigned dst, const struct node_msg *m)
{
	int rc = r->c.send ? r->c.send(r->c.ctx, dst, m) : -ENOTCONN;

	if (rc)
		rlog(r, "disk queues: cannot send message 0x%x to node %u: %s", m->type, dst,
		     strerror(rc < 0 ? -rc : rc));
	return rc;
}

static bool is_io_node(const struct vq_remote *r)
{
	return r->c.self == r->c.io_node;
}

/* ---- I/O node: the device's remote ops ---- */

/* The node of the vCPU the queue's completions go to; only a direct MSI can say. */
static bool op_place(void *ctx, unsigned q, const struct virtio_msix_route *rt)
{
	struct vqr_disk *d = ctx;
	struct vq_remote *r = d->r;
	int node;

	if (q >= r->c.nr_queues || !rt->direct || (rt->addr >> 20) != 0xfee || !r->c.msi_node)
		return false;
	node = r->c.msi_node(r->c.ctx, rt->addr, rt->data);
	if (node < 0 || node >= VM_MAX_NODES || (unsigned)node == r->c.self)
		return false;
	pthread_mutex_lock(&r->lock);
	d->node[q] = (uint8_t)node;
	pthread_mutex_unlock(&r->lock);
	return true;
}

static unsigned node_of(struct vqr_disk *d, unsigned q)
{
	unsigned n;

	pthread_mutex_lock(&d->r->lock);
	n = d->node[q];
	pthread_mutex_unlock(&d->r->lock);
	return n;
}

static void put_route(struct node_msg_vq *v, const struct virtio_msix_route *rt)
{
	v->msix_addr = rt->addr;
	v->msix_data = rt->data;
	v->msix_flags = rt->direct ? NODE_MSG_VQ_MSIX_DIRECT : 0;
	/* Not an MSI address: the serving node could not send it; the I/O node does. */
	if ((rt->addr >> 20) != 0xfee)
		v->msix_flags = 0;
}

static void op_start(void *ctx, unsigned q, const struct virtio_queue_state *st)
{
	struct vqr_disk *d = ctx;
	struct vq_remote *r = d->r;
	unsigned node = node_of(d, q);
	struct node_msg m = { .type = NODE_MSG_VQ_START };

	m.u.vq = (struct node_msg_vq){
		.disk = (uint8_t)d->index, .queue = (uint16_t)q, .size = st->size,
		.vector = st->vector, .features = st->features, .notify_gpa = st->notify_gpa,
		.desc = st->desc, .driver = st->driver, .device = st->device,
	};
	put_route(&m.u.vq, &st->route);
	pthread_mutex_lock(&r->lock);
	d->started_on[node] = true;
	pthread_mutex_unlock(&r->lock);
	send_msg(r, node, &m);
}

static void op_route(void *ctx, unsigned q, const struct virtio_msix_route *rt)
{
	struct vqr_disk *d = ctx;
	struct node_msg m = { .type = NODE_MSG_VQ_MSIX };

	m.u.vq.disk = (uint8_t)d->index;
	m.u.vq.queue = (uint16_t)q;
	put_route(&m.u.vq, rt);
	send_msg(d->r, node_of(d, q), &m);
}

static void op_kick(void *ctx, unsigned q)
{
	struct vqr_disk *d = ctx;
	struct node_msg m = { .type = NODE_MSG_VQ_KICK };

	m.u.vq.disk = (uint8_t)d->index;
	m.u.vq.queue = (uint16_t)q;
	send_msg(d->r, node_of(d, q), &m);
}

static bool any_waiting(const struct vqr_disk *d)
{
	for (unsigned n = 0; n < VM_MAX_NODES; n++)
		if (d->reset_waiting[n])
			return true;
	return false;
}

/*
 * Every node that serves a queue of the disk stops and says so; only then
 * does the device forget its rings (the driver may reuse their memory as
 * soon as it reads status 0).
 */
static void op_reset(void *ctx)
{
	struct vqr_disk *d = ctx;
	struct vq_remote *r = d->r;
	unsigned timeout = r->c.reset_timeout_ms ? r->c.reset_timeout_ms : RESET_TIMEOUT_MS;
	struct node_msg m = { .type = NODE_MSG_VQ_RESET };
	unsigned waited = 0;

	pthread_mutex_lock(&r->lock);
	m.u.vq.disk = (uint8_t)d->index;
	m.u.vq.seq = ++d->reset_seq;
	for (unsigned n = 0; n < VM_MAX_NODES; n++) {
		d->reset_waiting[n] = d->started_on[n];
		d->started_on[n] = false;
	}
	pthread_mutex_unlock(&r->lock);
	for (unsigned n = 0; n < VM_MAX_NODES; n++)
		if (d->reset_waiting[n] && send_msg(r, n, &m)) {
			pthread_mutex_lock(&r->lock);
			d->reset_waiting[n] = false;
			pthread_mutex_unlock(&r->lock);
		}
	pthread_mutex_lock(&r->lock);
	while (any_waiting(d) && waited < timeout && !(r->c.stopping && r->c.stopping(r->c.ctx))) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += WAIT_SLICE_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
		waited += WAIT_SLICE_MS;
	}
	if (any_waiting(d) && !(r->c.stopping && r->c.stopping(r->c.ctx))) {
		char msg[160];

		pthread_mutex_unlock(&r->lock);
		snprintf(msg, sizeof(msg), "disk %u: a node serving its queues did not confirm the "
			 "device reset within %u ms", d->index, timeout);
		if (r->c.fail)
			r->c.fail(r->c.ctx, msg);
		else
			rlog(r, "%s", msg);
		return;
	}
	pthread_mutex_unlock(&r->lock);
}

const struct virtio_remote_ops vq_remote_ops = {
	.place = op_place,
	.start = op_start,
	.route = op_route,
	.kick = op_kick,
	.reset = op_reset,
};

void *vq_remote_disk_ctx(struct vq_remote *r, unsigned disk)
{
	return disk < r->c.nr_disks ? &r->disks[disk] : NULL;
}

void vq_remote_set_device(struct vq_remote *r, unsigned disk, struct virtio_pci *vp)
{
	if (disk < r->c.nr_disks) {
		pthread_mutex_lock(&r->lock);
		r->disks[disk].vp = vp;
		pthread_mutex_unlock(&r->lock);
	}
}

/* What a serving node sends the I/O node. */
static void io_node_receive(struct vq_remote *r, unsigned src, const struct node_msg *msg)
{
	const struct node_msg_vq *v = &msg->u.vq;
	struct vqr_disk *d = &r->disks[v->disk];
	struct virtio_pci *vp;
	bool its_queue;

	pthread_mutex_lock(&r->lock);
	vp = d->vp;
	its_queue = v->queue < r->c.nr_queues && d->node[v->queue] == src;
	if (msg->type == NODE_MSG_VQ_RESET_DONE && v->seq == d->reset_seq && src < VM_MAX_NODES) {
		d->reset_waiting[src] = false;
		pthread_cond_broadcast(&r->cond);
	}
	pthread_mutex_unlock(&r->lock);
	if (!vp)
		return;
	switch (msg->type) {
	case NODE_MSG_VQ_IRQ:
		/* Only the node that serves the queue may ask. */
		if (its_queue)
			virtio_pci_queue_irq(vp, v->queue);
		break;
	case NODE_MSG_VQ_FAIL:
		virtio_pci_fail(vp, "a queue served on node %u is broken (that node's log says why)",
				src);
		break;
	default:
		break;
	}
}

/* ---- serving node ---- */

static void rep_msi(void *ctx, unsigned q, uint64_t addr, uint32_t data)
{
	struct vqr_disk *d = ctx;

	STAT_ADD(d->msis[q]);
	d->r->c.msi(d->r->c.ctx, addr, data);
}

static void rep_irq(void *ctx, unsigned q)
{
	struct vqr_disk *d = ctx;
	struct node_msg m = { .type = NODE_MSG_VQ_IRQ };

	STAT_ADD(d->irqs_forwarded[q]);
	m.u.vq.disk = (uint8_t)d->index;
	m.u.vq.queue = (uint16_t)q;
	send_msg(d->r, d->r->c.io_node, &m);
}

static void rep_fail(void *ctx, const char *why)
{
	struct vqr_disk *d = ctx;
	struct node_msg m = { .type = NODE_MSG_VQ_FAIL };

	m.u.vq.disk = (uint8_t)d->index;
	send_msg(d->r, d->r->c.io_node, &m);
}

static const struct virtio_replica_ops replica_ops = {
	.msi = rep_msi,
	.irq = rep_irq,
	.fail = rep_fail,
};

static void start_queue(struct vq_remote *r, const struct node_msg_vq *v)
{
	struct vqr_disk *d = &r->disks[v->disk];
	struct virtio_queue_state st = {
		.size = v->size, .vector = v->vector, .features = v->features,
		.notify_gpa = v->notify_gpa, .desc = v->desc, .driver = v->driver,
		.device = v->device,
		.route = { .addr = v->msix_addr, .data = v->msix_data,
			   .direct = v->msix_flags & NODE_MSG_VQ_MSIX_DIRECT },
	};
	struct virtio_blk *b;
	char err[384];
	bool first;

	if (v->queue >= r->c.nr_queues) {
		rlog(r, "disk %u: asked to serve queue %u, which it does not have", v->disk, v->queue);
		return;
	}
	pthread_mutex_lock(&r->lock);
	b = d->replica;
	pthread_mutex_unlock(&r->lock);
	if (!b) {
		if (!r->c.make_replica ||
		    r->c.make_replica(r->c.ctx, v->disk, &replica_ops, d, &b, err, sizeof(err))) {
			rlog(r, "disk %u: cannot serve queue %u here: %s", v->disk, v->queue,
			     r->c.make_replica ? err : "no disk replicas on this node");
			rep_fail(d, err);
			return;
		}
		pthread_mutex_lock(&r->lock);
		d->replica = b;
		pthread_mutex_unlock(&r->lock);
	}
	if (virtio_pci_replica_start(&b->vp, v->queue, &st, err, sizeof(err))) {
		rlog(r, "%s", err);
		rep_fail(d, err);
		return;
	}
	pthread_mutex_lock(&r->lock);
	first = !d->served[v->queue];
	d->served[v->queue] = true;
	d->notify_gpa[v->queue] = v->notify_gpa;
	d->notify_valid[v->queue] = true;
	pthread_mutex_unlock(&r->lock);
	if (first)
		rlog(r, "virtio-blk %s: queue %u served on this node (node %u)", b->name, v->queue,
		     r->c.self);
}

static void reset_disk(struct vq_remote *r, unsigned src, const struct node_msg_vq *v)
{
	struct vqr_disk *d = &r->disks[v->disk];
	struct node_msg m = { .type = NODE_MSG_VQ_RESET_DONE };
	struct virtio_blk *b;

	/* Notifies go to the I/O node again until the queues are started anew. */
	pthread_mutex_lock(&r->lock);
	for (unsigned q = 0; q < VIRTIO_BLK_MAX_QUEUES; q++)
		d->notify_valid[q] = false;
	d->kick_bits = 0;
	b = d->replica;
	pthread_mutex_unlock(&r->lock);
	if (b)
		virtio_pci_replica_reset(&b->vp);
	m.u.vq.disk = v->disk;
	m.u.vq.seq = v->seq;
	send_msg(r, src, &m);
}

static void handle_item(struct vq_remote *r, const struct vqr_item *it)
{
	const struct node_msg_vq *v = &it->msg.u.vq;
	struct vqr_disk *d = &r->disks[v->disk];
	struct virtio_blk *b;

	switch (it->msg.type) {
	case NODE_MSG_VQ_START:
		start_queue(r, v);
		break;
	case NODE_MSG_VQ_MSIX:
		pthread_mutex_lock(&r->lock);
		b = d->replica;
		pthread_mutex_unlock(&r->lock);
		if (b && v->queue < r->c.nr_queues) {
			struct virtio_msix_route rt = {
				.addr = v->msix_addr, .data = v->msix_data,
				.direct = v->msix_flags & NODE_MSG_VQ_MSIX_DIRECT,
			};

			virtio_pci_replica_route(&b->vp, v->queue, &rt);
		}
		break;
	case NODE_MSG_VQ_RESET:
		reset_disk(r, it->src, v);
		break;
	default:
		break;
	}
}

static void run_kicks(struct vq_remote *r, const uint32_t *bits)
{
	for (unsigned di = 0; di < r->c.nr_disks; di++) {
		struct vqr_disk *d = &r->disks[di];
		struct virtio_blk *b;

		if (!bits[di])
			continue;
		pthread_mutex_lock(&r->lock);
		b = d->replica;
		pthread_mutex_unlock(&r->lock);
		for (unsigned q = 0; b && q < r->c.nr_queues; q++)
			if (bits[di] & (1u << q))
				virtio_pci_replica_kick(&b->vp, q);
	}
}

static void *serve_thread(void *arg)
{
	struct vq_remote *r = arg;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		uint32_t bits[NODE_MSG_VQ_MAX_DISKS];

		while (!r->stop && !r->count && !r->kicks)
			pthread_cond_wait(&r->cond, &r->lock);
		if (r->stop)
			break;
		if (r->count) {
			struct vqr_item it = r->ring[r->head];

			r->head = (r->head + 1) % RING_ITEMS;
			r->count--;
			pthread_mutex_unlock(&r->lock);
			handle_item(r, &it);
			pthread_mutex_lock(&r->lock);
			continue;
		}
		/* Kicks after the messages that came before them. */
		for (unsigned di = 0; di < r->c.nr_disks; di++) {
			bits[di] = r->disks[di].kick_bits;
			r->disks[di].kick_bits = 0;
		}
		r->kicks = false;
		pthread_mutex_unlock(&r->lock);
		run_kicks(r, bits);
		pthread_mutex_lock(&r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

static void serving_receive(struct vq_remote *r, unsigned src, const struct node_msg *msg)
{
	const struct node_msg_vq *v = &msg->u.vq;

	pthread_mutex_lock(&r->lock);
	if (r->stop) {
		pthread_mutex_unlock(&r->lock);
		return;
	}
	if (msg->type == NODE_MSG_VQ_KICK) {
		if (v->queue < r->c.nr_queues) {
			r->disks[v->disk].kick_bits |= 1u << v->queue;
			r->kicks = true;
			STAT_ADD(r->disks[v->disk].forwarded_notifies[v->queue]);
			pthread_cond_broadcast(&r->cond);
		}
		pthread_mutex_unlock(&r->lock);
		return;
	}
	if (r->count == RING_ITEMS) {
		pthread_mutex_unlock(&r->lock);
		/* Each message is a register write of the guest on the I/O node: this cannot fill up. */
		rlog(r, "disk queues: dropped message 0x%x from node %u: %u messages waiting",
		     msg->type, src, RING_ITEMS);
		return;
	}
	r->ring[(r->head + r->count) % RING_ITEMS] = (struct vqr_item){ src, *msg };
	r->count++;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

void vq_remote_receive(struct vq_remote *r, unsigned src, const struct node_msg *msg)
{
	if (!r || msg->u.vq.disk >= r->c.nr_disks)
		return;
	switch (msg->type) {
	case NODE_MSG_VQ_START:
	case NODE_MSG_VQ_MSIX:
	case NODE_MSG_VQ_KICK:
	case NODE_MSG_VQ_RESET:
		/* Only the I/O node drives the queues. */
		if (src == r->c.io_node && !is_io_node(r))
			serving_receive(r, src, msg);
		break;
	case NODE_MSG_VQ_RESET_DONE:
	case NODE_MSG_VQ_IRQ:
	case NODE_MSG_VQ_FAIL:
		if (is_io_node(r))
			io_node_receive(r, src, msg);
		break;
	default:
		break;
	}
}

bool vq_remote_notify(struct vq_remote *r, const struct io_req *req)
{
	if (!r || is_io_node(r) || req->space != IO_SPACE_MMIO || !req->is_write)
		return false;
	pthread_mutex_lock(&r->lock);
	for (unsigned di = 0; di < r->c.nr_disks; di++) {
		struct vqr_disk *d = &r->disks[di];

		for (unsigned q = 0; q < r->c.nr_queues; q++) {
			if (!d->notify_valid[q] || d->notify_gpa[q] != req->addr)
				continue;
			virtio_pci_replica_kick(&d->replica->vp, q);
			pthread_mutex_unlock(&r->lock);
			STAT_ADD(d->local_notifies[q]);
			return true;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return false;
}

unsigned vq_remote_stats(struct vq_remote *r, struct vq_remote_queue_stats *out, unsigned max)
{
	unsigned n = 0;

	if (!r)
		return 0;
	pthread_mutex_lock(&r->lock);
	for (unsigned di = 0; di < r->c.nr_disks; di++) {
		struct vqr_disk *d = &r->disks[di];

		for (unsigned q = 0; q < r->c.nr_queues && n < max; q++) {
			if (!d->served[q] || !d->replica)
				continue;
			out[n++] = (struct vq_remote_queue_stats){
				.disk = di, .queue = q,
				.requests = __atomic_load_n(&d->replica->vp.queues[q].requests,
							    __ATOMIC_RELAXED),
				.local_notifies = __atomic_load_n(&d->local_notifies[q], __ATOMIC_RELAXED),
				.forwarded_notifies = __atomic_load_n(&d->forwarded_notifies[q],
								      __ATOMIC_RELAXED),
				.msis = __atomic_load_n(&d->msis[q], __ATOMIC_RELAXED),
				.irqs_forwarded = __atomic_load_n(&d->irqs_forwarded[q], __ATOMIC_RELAXED),
			};
		}
	}
	pthread_mutex_unlock(&r->lock);
	return n;
}

int vq_remote_create(struct vq_remote **out, const struct vq_remote_config *c,
		     char *err, size_t errlen)
{
	struct vq_remote *r;
	int rc;

	*out = NULL;
	if (c->nr_disks > NODE_MSG_VQ_MAX_DISKS || c->nr_queues > VIRTIO_BLK_MAX_QUEUES ||
	    c->self >= VM_MAX_NODES || c->io_node >= VM_MAX_NODES) {
		snprintf(err, errlen, "disk queues: %u disks of %u queues: too many", c->nr_disks,
			 c->nr_queues);
		return -1;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	r->c = *c;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	for (unsigned di = 0; di < NODE_MSG_VQ_MAX_DISKS; di++) {
		r->disks[di].r = r;
		r->disks[di].index = di;
	}
	if (!is_io_node(r)) {
		rc = pthread_create(&r->thread, NULL, serve_thread, r);
		if (rc) {
			snprintf(err, errlen, "disk queues: cannot start a thread: %s", strerror(rc));
			vq_remote_destroy(r);
			return -1;
		}
		r->thread_started = true;
	}
	*out = r;
	return 0;
}

void vq_remote_stop(struct vq_remote *r)
{
	struct vq_remote_queue_stats st[VIRTIO_BLK_MAX_QUEUES];
	struct virtio_blk *reps[NODE_MSG_VQ_MAX_DISKS];

	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	if (r->thread_started)
		pthread_join(r->thread, NULL);
	r->thread_started = false;
	for (unsigned di = 0; di < r->c.nr_disks; di++) {
		unsigned n;

		pthread_mutex_lock(&r->lock);
		reps[di] = r->disks[di].replica;
		pthread_mutex_unlock(&r->lock);
		if (!reps[di])
			continue;
		/* Workers first: the figures are final then. */
		virtio_pci_stop(&reps[di]->vp);
		n = vq_remote_stats(r, st, VIRTIO_BLK_MAX_QUEUES);
		for (unsigned i = 0; i < n; i++)
			if (st[i].disk == di)
				rlog(r, "virtio-blk %s: queue %u served on node %u: %llu requests, "
				     "%llu notifies taken here, %llu forwarded by the I/O node, "
				     "%llu MSIs sent here, %llu interrupts left to the I/O node",
				     reps[di]->name, st[i].queue, r->c.self,
				     (unsigned long long)st[i].requests,
				     (unsigned long long)st[i].local_notifies,
				     (unsigned long long)st[i].forwarded_notifies,
				     (unsigned long long)st[i].msis,
				     (unsigned long long)st[i].irqs_forwarded);
		pthread_mutex_lock(&r->lock);
		r->disks[di].replica = NULL;
		for (unsigned q = 0; q < VIRTIO_BLK_MAX_QUEUES; q++)
			r->disks[di].notify_valid[q] = false;
		pthread_mutex_unlock(&r->lock);
		virtio_blk_destroy(reps[di]);
	}
}

void vq_remote_destroy(struct vq_remote *r)
{
	if (!r)
		return;
	vq_remote_stop(r);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
}
