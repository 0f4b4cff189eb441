/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_VIRTIO_BLK_H
#define GRAPPE_VIRTIO_BLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blockdev/aio_ring.h"
#include "blockdev/blockdev.h"
#include "vmm/guest_mem.h"
#include "vmm/pci.h"
#include "vmm/virtio_pci.h"

/*
 * virtio-blk (virtio 1.2, 5.2) over the modern PCI transport, backed by a
 * struct blockdev. Requests run on the transport's per-queue workers, so
 * the vCPU that kicked is back in the guest while the disk works; reads,
 * writes and flushes are asynchronous when the store allows (io_uring for a
 * file or block device), so all the guest queued are in flight at once.
 *
 * Features: VERSION_1, INDIRECT_DESC, EVENT_IDX, SEG_MAX, BLK_SIZE, FLUSH,
 * MQ (one queue per vCPU, at most VIRTIO_BLK_MAX_QUEUES), RO for read-only
 * disks, DISCARD and WRITE_ZEROES for writable ones. GET_ID answers the
 * serial.
 */

#define VIRTIO_ID_BLOCK          2
#define VIRTIO_BLK_MAX_QUEUES    16
#define VIRTIO_BLK_QUEUE_SIZE    256
#define VIRTIO_BLK_QUEUE_THREADS 4     /* workers per queue on a synchronous store */
#define VIRTIO_BLK_RING_DEPTH    256   /* asynchronous requests in flight per queue */
#define VIRTIO_BLK_ID_BYTES      20
#define VIRTIO_BLK_CONFIG_SIZE   60

/* Feature bits (5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX     1
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_GEOMETRY     4
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_TOPOLOGY     10
#define VIRTIO_BLK_F_CONFIG_WCE   11
#define VIRTIO_BLK_F_MQ           12
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types and status (5.2.6). */
#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK           0
#define VIRTIO_BLK_S_IOERR        1
#define VIRTIO_BLK_S_UNSUPP       2

/* Configuration layout offsets (5.2.4). */
#define VIRTIO_BLK_CFG_CAPACITY   0
#define VIRTIO_BLK_CFG_SIZE_MAX   8
#define VIRTIO_BLK_CFG_SEG_MAX    12
#define VIRTIO_BLK_CFG_BLK_SIZE   20
#define VIRTIO_BLK_CFG_PHYS_BLOCK_EXP 24    /* topology: log2(physical / logical) */
#define VIRTIO_BLK_CFG_ALIGN_OFFSET   25    /* left 0: a disk's blocks start at 0 */
#define VIRTIO_BLK_CFG_MIN_IO_SIZE    26    /* in logical blocks */
#define VIRTIO_BLK_CFG_OPT_IO_SIZE    28    /* left 0: no preferred size to advise */
#define VIRTIO_BLK_CFG_NUM_QUEUES 34
#define VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS 36
#define VIRTIO_BLK_CFG_MAX_DISCARD_SEG     40
#define VIRTIO_BLK_CFG_DISCARD_ALIGN       44
#define VIRTIO_BLK_CFG_MAX_WZ_SECTORS      48
#define VIRTIO_BLK_CFG_MAX_WZ_SEG          52
#define VIRTIO_BLK_CFG_WZ_MAY_UNMAP        56

#define VIRTIO_BLK_MAX_DISCARD_SECTORS (1u << 22)  /* 2 GiB per segment */
#define VIRTIO_BLK_MAX_DISCARD_SEG     32

struct virtio_blk_opts {
	const char *name;            /* target, e.g. "vda" */
	struct blockdev *bd;         /* the device takes it over (closed by destroy) */
	const char *serial;          /* NULL or up to 20 bytes */
	bool discard;                /* offer DISCARD (a writable disk only) */
	bool io_uring;               /* asynchronous reads, writes, flushes where the store has them */
	unsigned ring_depth;         /* asynchronous requests in flight per queue; 0 = the default */
	unsigned nr_queues;
	/*
	 * <blockio>: the logical block the guest must use (0: the store's own;
	 * never below it) and the physical block it is told of (0: not told,
	 * no TOPOLOGY), in bytes.
	 */
	unsigned logical_block, physical_block;
	const struct guest_mem *mem;
	void (*log)(void *ctx, const char *msg);
	void *log_ctx;
	/*
	 * In a cluster (docs/cluster.md, "Disk queues"): the I/O node's device
	 * has remote ops for the queues other nodes serve; a serving node's
	 * replica (created with bus NULL) has replica ops.
	 */
	const struct virtio_remote_ops *remote;
	const struct virtio_replica_ops *replica;
	void *remote_ctx;
};

struct virtio_blk_stats {
	uint64_t reads, writes, flushes, discards, write_zeroes, get_ids, errors, unsupported;
	uint64_t refused;            /* answered IOERR without reaching the store */
	uint64_t bytes_read, bytes_written;
};

struct virtio_blk {
	struct virtio_pci vp;
	struct blockdev *bd;
	char name[40];
	char serial[VIRTIO_BLK_ID_BYTES];
	uint64_t capacity;           /* 512-byte sectors */
	unsigned lbs, pbs;           /* logical block (requests are multiples of it), physical or 0 */
	bool async;                  /* reads, writes, flushes go through blockdev_submit */
	struct aio_ring *rings[VIRTIO_BLK_MAX_QUEUES];   /* when async: one per queue */
	uint8_t config[VIRTIO_BLK_CONFIG_SIZE];
	struct virtio_blk_stats stats;   /* updated atomically */
	void (*log)(void *ctx, const char *msg);
	void *log_ctx;
};

/*
 * Creates the device and puts it on the bus (first free slot; a replica,
 * bus NULL, is on none). On error
 * returns -1 with a message in err; the blockdev is closed either way on
 * failure.
 */
int virtio_blk_create(struct virtio_blk **out, struct pci_bus *bus,
		      const struct virtio_blk_opts *o, char *err, size_t errlen);
/* Stops the queue workers and closes the store (it stays on the bus: call at machine teardown). */
void virtio_blk_destroy(struct virtio_blk *b);

#endif
