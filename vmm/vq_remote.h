/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_VQ_REMOTE_H
#define GRAPPE_VQ_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/io.h"
#include "vmm/node_msg.h"
#include "vmm/virtio_blk.h"

/*
 * Disk queues served by the node of their vCPU (docs/cluster.md, "Disk
 * queues"). A virtio-blk disk has one queue per vCPU; the guest's blk-mq
 * maps each queue to the CPU its MSI-X vector is affine to. Each queue is
 * served by the node that runs that vCPU (decided at DRIVER_OK):
 *
 *  - on the I/O node the device keeps every register (PCI and common
 *    configuration, MSI-X table); this object is its virtio_remote_ops:
 *    at DRIVER_OK it sends the queue's rings, the negotiated features and
 *    its MSI-X route to the serving node (NODE_MSG_VQ_START), a changed
 *    route (VQ_MSIX), a notify that reached the I/O node (VQ_KICK), and a
 *    device reset (VQ_RESET, waited for: VQ_RESET_DONE);
 *  - on a serving node it holds a replica of the device (not on any bus)
 *    over the disk's store, reached from there (docs/volume.md, "Queues
 *    on several nodes"), takes the notify writes of local vCPUs for its
 *    queues without forwarding them, and sends completion MSIs straight
 *    to the APIC bus (VQ_IRQ to the I/O node when the vector is masked or
 *    MSI-X is off; VQ_FAIL when the guest broke a ring).
 *
 * Everything goes through callbacks, so two objects (an I/O node and a
 * serving node) can be joined in one process by a test.
 */
struct vq_remote_config {
	unsigned self;
	unsigned io_node;
	unsigned nr_disks;              /* at most NODE_MSG_VQ_MAX_DISKS */
	unsigned nr_queues;             /* per disk, at most VIRTIO_BLK_MAX_QUEUES */
	/*
	 * I/O node: the node of the vCPU an MSI (address, data) goes to, or
	 * -1. A queue is served by the node of the CPU its interrupt targets:
	 * the guest's blk-mq maps each queue to the CPUs of its interrupt's
	 * affinity, so that is where its requests come from.
	 */
	int (*msi_node)(void *ctx, uint64_t addr, uint32_t data);
	/* A node message to dst (the machine's link). */
	int (*send)(void *ctx, unsigned dst, const struct node_msg *msg);
	/*
	 * Serving node: disk d's replica, created with virtio_blk_create(bus
	 * NULL) and the replica ops and context given, over the disk's store.
	 * Called from this object's thread, not the fabric's.
	 */
	int (*make_replica)(void *ctx, unsigned disk, const struct virtio_replica_ops *ops,
			    void *ops_ctx, struct virtio_blk **out, char *err, size_t errlen);
	/* Serving node: a completion MSI (address, data) for the local APIC bus. */
	void (*msi)(void *ctx, uint64_t addr, uint32_t data);
	bool (*stopping)(void *ctx);    /* the machine stops: stop waiting */
	/* The cluster cannot go on (a serving node never confirmed a reset). */
	void (*fail)(void *ctx, const char *msg);
	void (*log)(void *ctx, const char *msg);
	void *ctx;
	unsigned reset_timeout_ms;      /* 0: 10000 */
};

struct vq_remote;

/* Per queue served on this node (statistics). */
struct vq_remote_queue_stats {
	unsigned disk, queue;
	uint64_t requests;              /* completed here */
	uint64_t local_notifies;        /* notify writes of this node's vCPUs, taken here */
	uint64_t forwarded_notifies;    /* notifies that went through the I/O node */
	uint64_t msis, irqs_forwarded;  /* completions: direct MSIs, interrupts left to the I/O node */
};

int vq_remote_create(struct vq_remote **out, const struct vq_remote_config *c,
		     char *err, size_t errlen);
/* I/O node: the remote ops and their context for disk d's device... */
extern const struct virtio_remote_ops vq_remote_ops;
void *vq_remote_disk_ctx(struct vq_remote *r, unsigned disk);
/* ...and the device, once created (VQ_IRQ and VQ_FAIL act on it). */
void vq_remote_set_device(struct vq_remote *r, unsigned disk, struct virtio_pci *vp);
/* A VQ message from node src (fabric thread; never blocks). */
void vq_remote_receive(struct vq_remote *r, unsigned src, const struct node_msg *msg);
/*
 * Serving node: an MMIO access of a local vCPU. True when it was the
 * notify of a queue served here (then it is done); false: forward it.
 */
bool vq_remote_notify(struct vq_remote *r, const struct io_req *req);
/* Up to max queues served here; returns how many. */
unsigned vq_remote_stats(struct vq_remote *r, struct vq_remote_queue_stats *out, unsigned max);
/*
 * Serving node: stops serving (after the vCPUs stopped), logs each served
 * queue's figures and destroys the replicas (their stores closed).
 * Idempotent.
 */
void vq_remote_stop(struct vq_remote *r);
void vq_remote_destroy(struct vq_remote *r);

#endif
