/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_VIRTIO_PCI_H
#define GRAPPE_VIRTIO_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/guest_mem.h"
#include "vmm/pci.h"
#include "vmm/virtqueue.h"

/*
 * The virtio 1.x PCI transport, modern only (virtio 1.2, 4.1): vendor
 * 0x1AF4, device 0x1040 + type, the common, notify, ISR and device
 * configuration structures in one 64-bit memory BAR (BAR 4), MSI-X in
 * BAR 1, and the PCI-configuration-access capability. No legacy I/O BAR.
 *
 * The transport also serves the queues: worker threads per queue (params'
 * queue_threads, 1 by default) wait for the driver's kick, pop chains, hand
 * each to the device model's process() and return it on the used ring,
 * then interrupt the driver (MSI-X vector of the queue, else INTx + ISR).
 * So a vCPU that kicks a queue returns to the guest at once; the device's
 * work (disk I/O) happens on the workers. With several workers a queue has
 * that many requests in flight, completed in any order (as virtio allows):
 * a disk then sees the queue depth the guest asked for, not one request at
 * a time.
 *
 * A queue the guest breaks (see virtqueue.h), or a request the device
 * cannot make sense of, sets DEVICE_NEEDS_RESET and raises a configuration
 * change interrupt; the queue stays stopped until the driver resets the
 * device.
 */

#define VIRTIO_PCI_VENDOR        0x1af4
#define VIRTIO_PCI_DEVICE_BASE   0x1040
#define VIRTIO_PCI_SUBSYS_ID     0x0040   /* "0x40 or higher" for non-transitional devices */

/* Device status (2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE  1
#define VIRTIO_STATUS_DRIVER       2
#define VIRTIO_STATUS_DRIVER_OK    4
#define VIRTIO_STATUS_FEATURES_OK  8
#define VIRTIO_STATUS_NEEDS_RESET  0x40
#define VIRTIO_STATUS_FAILED       0x80

#define VIRTIO_F_VERSION_1       32

/* Capability types (4.1.4). */
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG    3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG    5

/* Where things are. */
#define VIRTIO_PCI_MSIX_BAR      1
#define VIRTIO_PCI_BAR           4
#define VIRTIO_PCI_BAR_SIZE      0x4000
#define VIRTIO_PCI_COMMON_OFF    0x0000
#define VIRTIO_PCI_COMMON_LEN    0x38
#define VIRTIO_PCI_ISR_OFF       0x1000
#define VIRTIO_PCI_ISR_LEN       4
#define VIRTIO_PCI_DEVICE_OFF    0x2000
#define VIRTIO_PCI_DEVICE_MAX    0x1000
#define VIRTIO_PCI_NOTIFY_OFF    0x3000
#define VIRTIO_PCI_NOTIFY_MULT   4
#define VIRTIO_PCI_MAX_QUEUES    ((0x1000 / VIRTIO_PCI_NOTIFY_MULT) < (PCI_MSIX_MAX_VECTORS - 1) ? \
				  (0x1000 / VIRTIO_PCI_NOTIFY_MULT) : (PCI_MSIX_MAX_VECTORS - 1))

/* Common configuration offsets (4.1.4.3). */
#define VIRTIO_PCI_COMMON_DFSELECT   0x00
#define VIRTIO_PCI_COMMON_DF         0x04
#define VIRTIO_PCI_COMMON_GFSELECT   0x08
#define VIRTIO_PCI_COMMON_GF         0x0c
#define VIRTIO_PCI_COMMON_MSIX       0x10
#define VIRTIO_PCI_COMMON_NUMQ       0x12
#define VIRTIO_PCI_COMMON_STATUS     0x14
#define VIRTIO_PCI_COMMON_CFGGEN     0x15
#define VIRTIO_PCI_COMMON_Q_SELECT   0x16
#define VIRTIO_PCI_COMMON_Q_SIZE     0x18
#define VIRTIO_PCI_COMMON_Q_MSIX     0x1a
#define VIRTIO_PCI_COMMON_Q_ENABLE   0x1c
#define VIRTIO_PCI_COMMON_Q_NOFF     0x1e
#define VIRTIO_PCI_COMMON_Q_DESC     0x20
#define VIRTIO_PCI_COMMON_Q_DRIVER   0x28
#define VIRTIO_PCI_COMMON_Q_DEVICE   0x30

/* process() took the chain and completes it later with virtio_pci_complete(). */
#define VIRTIO_PCI_DEFERRED (-2)

/*
 * Queues served by another node (docs/cluster.md, "Disk queues"). The
 * device's registers stay on the I/O node; a queue whose vCPU runs on
 * another node is served there by a replica of the device, which needs the
 * queue's rings, the negotiated features and where its interrupt goes.
 */
struct virtio_msix_route {
	uint64_t addr;
	uint32_t data;
	bool direct;     /* MSI-X on, vector and function unmasked: the server sends it */
};

struct virtio_queue_state {
	uint16_t size;
	uint16_t vector;
	uint64_t features;
	uint64_t notify_gpa;         /* the queue's notify register in guest physical space */
	uint64_t desc, driver, device;
	struct virtio_msix_route route;
};

/* I/O node: the transport tells the queue's server what the driver did. */
struct virtio_remote_ops {
	/*
	 * DRIVER_OK with the queue enabled: does another node serve queue q?
	 * The route says which CPU the guest wants its completions on, which
	 * is the CPU its block layer submits from (blk-mq maps queues by their
	 * interrupts' affinity). True: start follows.
	 */
	bool (*place)(void *ctx, unsigned q, const struct virtio_msix_route *r);
	/* The server starts serving it. */
	void (*start)(void *ctx, unsigned q, const struct virtio_queue_state *st);
	void (*route)(void *ctx, unsigned q, const struct virtio_msix_route *r);
	void (*kick)(void *ctx, unsigned q);         /* a notify that reached the I/O node */
	/* Device reset: returns once no other node touches the device's rings. */
	void (*reset)(void *ctx);
};

/* Serving node: how a replica's queues interrupt and fail. */
struct virtio_replica_ops {
	void (*msi)(void *ctx, unsigned q, uint64_t addr, uint32_t data);
	void (*irq)(void *ctx, unsigned q);          /* not direct: the I/O node sends it */
	void (*fail)(void *ctx, const char *why);    /* DEVICE_NEEDS_RESET, on the I/O node */
};

/* What a device model gives the transport. */
struct virtio_dev_ops {
	/*
	 * One request, on the queue's worker thread: returns the number of
	 * bytes written into the chain's writable buffers, -1 when the
	 * request breaks the device's protocol (after virtio_pci_fail()), or
	 * VIRTIO_PCI_DEFERRED when the device started it and will call
	 * virtio_pci_complete() once it is done (from any thread, even before
	 * process() returns). The chain itself is the worker's scratch: a
	 * deferred request keeps what it needs of it.
	 */
	long (*process)(void *opaque, unsigned queue, const struct virtq_chain *c);
	/* Device-specific configuration (offset within it; bounded by config_size). */
	void (*config_read)(void *opaque, uint64_t off, unsigned len, uint64_t *data);
	void (*config_write)(void *opaque, uint64_t off, unsigned len, uint64_t data);
	/* The driver reset the device; no process() call is running or will start. */
	void (*reset)(void *opaque);
};

/*
 * Optional: a queue whose worker sleeps in, and is woken through, the
 * device's own event source (an io_uring its requests complete on) instead
 * of a condition variable. The queue then has one worker, which alternates
 * between serving the ring and wait(); a device that defers requests
 * completes them from within wait(). See "Requests in flight" in
 * docs/devices.md.
 */
struct virtio_queue_loop {
	/* On the worker: sleeps until wake() or something completes; runs completions. */
	void (*wait)(void *opaque, unsigned queue);
	/* Any thread: makes wait() return. */
	void (*wake)(void *opaque, unsigned queue);
	/*
	 * On the worker, before it pops a chain: whether the device can take
	 * one more now. When it cannot, the worker leaves the rest in the ring
	 * and serves it again after the next wait().
	 */
	bool (*room)(void *opaque, unsigned queue);
};

struct virtio_pci_params {
	const char *name;            /* for messages, e.g. "virtio-blk vda" */
	uint16_t device_type;        /* 2: block */
	uint32_t class_code;
	uint64_t features;           /* device-specific and transport bits offered */
	unsigned nr_queues;
	uint16_t queue_size;         /* maximum (and initial) size of each queue */
	size_t config_size;
	const struct virtio_dev_ops *ops;
	void *opaque;
	const struct guest_mem *mem;
	void (*log)(void *ctx, const char *msg);   /* may be NULL */
	void *log_ctx;
	unsigned queue_threads;      /* workers per queue, 0 = 1, at most the max below */
	const struct virtio_queue_loop *loop;   /* NULL: condition variables (queue_threads) */
	/* At most one of these (NULL both: every queue is served here). */
	const struct virtio_remote_ops *remote;    /* I/O node of a cluster */
	const struct virtio_replica_ops *replica;  /* a replica: no registers, no bus */
	void *remote_ctx;
};

#define VIRTIO_PCI_MAX_QUEUE_THREADS 16

struct virtio_pci;

struct virtio_pci_queue {
	struct virtio_pci *vp;
	unsigned index;
	/* Driver-visible registers, under vp->lock. */
	uint16_t size;
	uint16_t msix_vector;        /* read by workers: atomic */
	bool enabled;
	uint64_t desc, driver, device;
	/* The ring itself: only with run_lock held. */
	pthread_mutex_t run_lock;
	struct virtq vq;
	/* Kicks. */
	pthread_mutex_t kick_lock;
	pthread_cond_t kick_cond;
	bool kicked;
	bool stop;
	/*
	 * Workers; busy counts those processing a chain outside run_lock,
	 * deferred the requests a device completes later (both under run_lock;
	 * a reset waits for both to be 0).
	 */
	struct virtio_pci_worker {
		struct virtio_pci_queue *q;
		pthread_t thread;
		struct virtq_chain *chain;   /* its scratch */
	} workers[VIRTIO_PCI_MAX_QUEUE_THREADS];
	unsigned nr_workers;         /* started */
	unsigned busy;               /* under run_lock */
	int deferred;                /* under run_lock; below 0 for a moment when a
				      * request completes before process() returns */
	bool throttled;              /* loop: stopped popping for want of room (run_lock) */
	pthread_cond_t idle_cond;    /* busy dropped to 0 (with run_lock) */
	uint64_t kicks;              /* statistics (survive device resets) */
	uint64_t requests;
	/* I/O node: another node serves the queue now (set at DRIVER_OK, cleared by a reset). */
	bool remote;                 /* atomic: the notify path reads it */
	bool remote_started;         /* under vp->lock */
	/* Remote: the route last sent (vp->lock). Replica: the route in use (route_lock). */
	struct virtio_msix_route route;
};

struct virtio_pci {
	struct pci_device pci;
	struct pci_msix msix;
	struct virtio_pci_params p;
	pthread_mutex_t lock;        /* driver-visible registers */
	uint32_t dfselect, gfselect;
	uint64_t guest_features;
	uint16_t config_msix_vector; /* atomic */
	uint8_t status;              /* atomic */
	uint8_t config_generation;
	uint16_t queue_sel;
	struct virtio_pci_queue *queues;
	pthread_mutex_t isr_lock;    /* ISR and the INTx line move together */
	uint8_t isr;
	uint8_t pcicfg_cap;          /* config offset of the PCI_CFG capability */
	pthread_mutex_t route_lock;  /* replica: the queues' routes */
};

/*
 * Builds the PCI function (not yet on a bus) and starts the queue workers.
 * Returns 0, or -1 with a message in err.
 */
int virtio_pci_init(struct virtio_pci *vp, const struct virtio_pci_params *p,
		    char *err, size_t errlen);
/*
 * Stops the queue workers (no process() call runs afterwards) and waits for
 * the deferred requests to complete; idempotent.
 */
void virtio_pci_stop(struct virtio_pci *vp);
/* Stops the workers and frees what init allocated; idempotent. */
void virtio_pci_destroy(struct virtio_pci *vp);

/* Features both sides agreed on (valid once FEATURES_OK is set). */
uint64_t virtio_pci_features(struct virtio_pci *vp);
/* The configuration changed (e.g. capacity): tell the driver. */
void virtio_pci_config_changed(struct virtio_pci *vp);
/*
 * The device cannot go on with what the driver gave it: DEVICE_NEEDS_RESET
 * plus a configuration change interrupt; 'why' is logged once.
 */
void virtio_pci_fail(struct virtio_pci *vp, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/*
 * A request that process() deferred is done: its chain (head) goes on the
 * used ring with `written` bytes, and the driver is interrupted if it
 * wants to be. Any thread; after virtio_pci_stop() returns, none is left.
 */
void virtio_pci_complete(struct virtio_pci *vp, unsigned queue, uint16_t head, uint32_t written);
/* Interrupt for queue q (used by the workers; exposed for tests). */
void virtio_pci_queue_irq(struct virtio_pci *vp, unsigned q);

/*
 * Replica side (params.replica): serve queue q from the state the I/O node
 * sent (starts its workers the first time). Returns 0, or -1 with a reason
 * (the ring addresses do not fit RAM, no thread).
 */
int virtio_pci_replica_start(struct virtio_pci *vp, unsigned q, const struct virtio_queue_state *st,
			     char *err, size_t errlen);
void virtio_pci_replica_route(struct virtio_pci *vp, unsigned q, const struct virtio_msix_route *r);
void virtio_pci_replica_kick(struct virtio_pci *vp, unsigned q);
/* The device was reset on the I/O node: returns once no worker touches a ring. */
void virtio_pci_replica_reset(struct virtio_pci *vp);

#endif
