// SPDX-License-Identifier: MIT
/*
 * One node's membership of a cluster: the fabric endpoint, guest RAM's
 * coherence, and the dispatch of frames. See cluster.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "blockdev/store_msg.h"
#include "fabric/fabric.h"
#include "vmm/cluster.h"
#include "vmm/cluster_ram.h"

/* Time a node waits for the whole mesh (nodes may start in any order). */
#define MESH_TIMEOUT_MS 30000
#define CLOCK_TIMEOUT_S 60

struct cluster {
	struct machine *m;
	struct fabric *f;
	struct cluster_ram *ram;
	struct volume_host *volumes;
	unsigned self;
	unsigned nr_nodes;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool clock_set;
	bool failed;
	char fail_msg[256];
	/* A peer that left on purpose: why it left should arrive shortly. */
	struct vtimer grace;
	unsigned left_peer;
	char left_why[160];
};

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void log_line(void *ctx, const char *msg)
{
	struct cluster *c = ctx;

	fprintf(stderr, "grappe-node %u: %s\n", c->self, msg);
}

/* kvmclock: every node's VM must count guest time from the same origin. */
static void apply_clock(struct cluster *c, const struct node_msg *msg)
{
	struct kvm_clock_data data = { 0 };
	uint64_t now = realtime_ns();

	data.clock = msg->u.clock.clock_ns;
	if (now > msg->u.clock.realtime_ns)
		data.clock += now - msg->u.clock.realtime_ns;
	if (ioctl(c->m->vm_fd, KVM_SET_CLOCK, &data) < 0)
		log_line(c, "KVM_SET_CLOCK failed: guest time may differ between nodes");
	pthread_mutex_lock(&c->lock);
	c->clock_set = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void on_frame(void *ctx, unsigned src, uint16_t type, uint64_t req_id,
		     const void *payload, size_t len)
{
	struct cluster *c = ctx;
	struct node_msg msg;
	const char *why;
	char line[160];

	if (cluster_ram_owns_type(type)) {
		cluster_ram_receive(c->ram, src, type, req_id, payload, len);
		return;
	}
	if (store_msg_owns_type(type)) {
		if (c->volumes)
			volume_host_receive(c->volumes, src, type, req_id, payload, len);
		return;
	}
	if (node_msg_decode(type, payload, len, &msg, &why)) {
		snprintf(line, sizeof(line), "dropped a malformed message (type 0x%x) from node %u: %s",
			 type, src, why);
		log_line(c, line);
		return;
	}
	if (msg.type == NODE_MSG_CLOCK)
		apply_clock(c, &msg);
	else
		machine_node_msg(c->m, src, &msg);
}

/*
 * A node that leaves on purpose does so because the guest stopped (a
 * poweroff, say) — but the event that says so comes from the node that saw
 * it, over another connection, and may arrive after the departure. Give it
 * a moment before calling the departure a failure; the first event wins.
 */
#define LEAVE_GRACE_NS (3 * 1000000000ULL)

static void grace_expired(void *opaque, uint64_t now)
{
	struct cluster *c = opaque;

	machine_peer_down(c->m, c->left_peer, c->left_why);
}

static void on_peer_down(void *ctx, unsigned peer, enum fabric_down_reason reason,
			 const char *why)
{
	struct cluster *c = ctx;

	if (reason == FABRIC_PEER_LEFT && !machine_stopping(c->m)) {
		pthread_mutex_lock(&c->lock);
		c->left_peer = peer;
		snprintf(c->left_why, sizeof(c->left_why), "%s", why);
		pthread_mutex_unlock(&c->lock);
		vtimer_mod(&c->grace, timer_queue_now(&c->m->tq) + LEAVE_GRACE_NS);
		return;
	}

	pthread_mutex_lock(&c->lock);
	c->failed = true;
	snprintf(c->fail_msg, sizeof(c->fail_msg), "node %u is gone: %s", peer, why);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	/*
	 * The machine first: the first event is the one reported, and "node N
	 * is gone (why)" says what happened, where the DSM's and the volumes'
	 * own failures that follow would only say what it broke.
	 */
	machine_peer_down(c->m, peer, why);
	cluster_ram_peer_down(c->ram, peer);
	if (c->volumes)
		volume_host_peer_down(c->volumes, peer);
}

static int link_send(void *ctx, unsigned dst, const struct node_msg *msg)
{
	struct cluster *c = ctx;
	uint8_t buf[NODE_MSG_MAX_BYTES];
	int n = node_msg_encode(msg, buf, sizeof(buf));

	if (n < 0)
		return n;
	return fabric_send(c->f, dst, msg->type, 0, buf, (size_t)n);
}

static int store_send(void *ctx, unsigned dst, uint16_t type, uint64_t req_id,
		      const struct iovec *iov, int iovcnt)
{
	struct cluster *c = ctx;

	return fabric_sendv(c->f, dst, type, req_id, iov, iovcnt);
}

static int make_fabric(struct cluster *c, const struct vm_config *cfg,
		       const struct cluster_opts *o, char *err, size_t errlen)
{
	struct fabric_config fc = { 0 };
	struct fabric_ops ops = {
		.on_frame = on_frame, .on_peer_down = on_peer_down,
		.on_log = log_line, .ctx = c,
	};
	char sub[256];

	fc.self = o->self;
	fc.nr_nodes = cfg->cluster.nr_nodes;
	fc.cluster = cfg->name;
	for (unsigned i = 0; i < fc.nr_nodes; i++)
		fc.addr[i] = o->peer_addr[i] ? o->peer_addr[i] : cfg->cluster.nodes[i].address;
	if (fabric_secret_load(o->secret_path, fc.secret, sub, sizeof(sub))) {
		snprintf(err, errlen, "cluster secret: %s", sub);
		return -1;
	}
	if (fabric_create(&fc, &ops, &c->f, sub, sizeof(sub))) {
		snprintf(err, errlen, "fabric: %s", sub);
		return -1;
	}
	return 0;
}

int cluster_attach(struct cluster **out, struct machine *m, const struct vm_config *cfg,
		   const struct cluster_opts *o, char *err, size_t errlen)
{
	struct cluster *c = calloc(1, sizeof(*c));
	char sub[512];

	*out = c;
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	c->m = m;
	c->self = o->self;
	c->nr_nodes = cfg->cluster.nr_nodes;
	vtimer_init(&c->grace, &m->tq, grace_expired, c);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	if (make_fabric(c, cfg, o, err, errlen))
		return -1;
	/* Stores are served before any peer can ask for one. */
	c->volumes = o->volumes;
	if (c->volumes && volume_host_set_transport(c->volumes, store_send, c, sub, sizeof(sub))) {
		snprintf(err, errlen, "%s", sub);
		return -1;
	}
	/* Guest RAM is coherent before any peer can ask for a page. */
	if (cluster_ram_create(&c->ram, m, cfg, c->f, sub, sizeof(sub))) {
		snprintf(err, errlen, "guest memory: %s", sub);
		return -1;
	}
	if (fabric_start(c->f, MESH_TIMEOUT_MS, sub, sizeof(sub))) {
		snprintf(err, errlen, "node %u: the cluster did not come up: %s", c->self, sub);
		return -1;
	}
	m->link = (struct node_link){ .send = link_send, .ctx = c };
	return 0;
}

int cluster_start_guest(struct cluster *c, char *err, size_t errlen)
{
	struct timespec deadline;
	int rc = 0;

	if (c->self == c->m->pl.io_node) {
		struct kvm_clock_data data = { 0 };
		struct node_msg msg = { .type = NODE_MSG_CLOCK };

		if (ioctl(c->m->vm_fd, KVM_GET_CLOCK, &data) < 0) {
			snprintf(err, errlen, "KVM_GET_CLOCK: %s", strerror(errno));
			return -1;
		}
		msg.u.clock.clock_ns = data.clock;
		msg.u.clock.realtime_ns = realtime_ns();
		for (unsigned n = 0; n < c->nr_nodes; n++)
			if (n != c->self && link_send(c, n, &msg)) {
				snprintf(err, errlen, "cannot send the guest clock to node %u", n);
				return -1;
			}
		return 0;
	}
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += CLOCK_TIMEOUT_S;
	pthread_mutex_lock(&c->lock);
	while (!c->clock_set && !c->failed && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&c->cond, &c->lock, &deadline);
	if (!c->clock_set)
		snprintf(err, errlen, "node %u: %s", c->self,
			 c->failed ? c->fail_msg : "the I/O node never sent the guest clock");
	rc = c->clock_set ? 0 : -1;
	pthread_mutex_unlock(&c->lock);
	return rc;
}

void cluster_wait_peer_gone(struct cluster *c, unsigned node, unsigned timeout_ms)
{
	for (unsigned waited = 0; c && c->f && fabric_peer_up(c->f, node) && waited < timeout_ms;
	     waited += 10)
		usleep(10000);
}

void cluster_detach(struct cluster *c)
{
	if (!c)
		return;
	if (c->m)
		c->m->link = (struct node_link){ 0 };
	/* No store message after this: the fabric is about to go. */
	if (c->volumes)
		volume_host_shutdown(c->volumes);
	/* The fabric goes first: no callback may run into a freed DSM. */
	if (c->f)
		fabric_destroy(c->f);
	vtimer_del(&c->grace);
	cluster_ram_destroy(c->ram);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
