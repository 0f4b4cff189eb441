/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_VIRTQUEUE_H
#define GRAPPE_VIRTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/guest_mem.h"

/*
 * The device side of a split virtqueue (virtio 1.2, 2.7): descriptor table,
 * available ring, used ring, in guest RAM. Everything the guest wrote is
 * untrusted: every index, length and address is checked, and a malformed
 * chain (a loop, a buffer outside RAM, a readable buffer after a writable
 * one, an indirect table inside an indirect table...) marks the queue
 * broken, with the reason in 'why'. A broken queue pops nothing more; the
 * transport then sets DEVICE_NEEDS_RESET.
 *
 * Guest RAM is reached through guest_mem_ptr(): in a cluster the pages come
 * from the DSM on first touch, which is invisible here. Fields are
 * little-endian, as is the host (x86-64). Each guest field is read once
 * into a local before it is checked, so a guest changing it under our feet
 * cannot get a checked value swapped for an unchecked one.
 *
 * One thread at a time works a queue (the device's worker); the transport
 * configures it while the device is quiescent.
 */

#define VIRTQ_MAX_SIZE       32768
#define VIRTQ_MAX_SEGS       1024     /* buffers in one chain, indirect included */

#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_USED_F_NO_NOTIFY 1
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

/* Feature bits the ring layer understands. */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX     29

struct virtq_seg {
	uint8_t *host;        /* into guest RAM */
	uint64_t gpa;
	uint32_t len;
};

/* One request: its readable buffers, then its writable ones. */
struct virtq_chain {
	uint16_t head;
	unsigned nr_out;      /* readable (device reads), seg[0..nr_out) */
	unsigned nr_in;       /* writable (device writes), seg[nr_out..nr_out+nr_in) */
	uint64_t out_bytes;
	uint64_t in_bytes;
	struct virtq_seg seg[VIRTQ_MAX_SEGS];
};

struct virtq {
	const struct guest_mem *mem;
	uint16_t size;
	bool ready;
	bool event_idx;
	bool indirect;
	bool broken;
	char why[128];
	uint8_t *desc;
	uint8_t *avail;
	uint8_t *used;
	uint16_t last_avail;
	uint16_t used_idx;
	uint16_t signalled_used;
	bool signalled_valid;
	bool notify_enabled;
	uint64_t popped;      /* statistics */
};

/*
 * Checks the ring addresses the driver gave and makes the queue ready:
 * 'size' a power of two up to VIRTQ_MAX_SIZE, the three parts aligned
 * (16, 2, 4) and inside RAM. Returns 0 or -EINVAL (why says which).
 */
int virtq_enable(struct virtq *vq, const struct guest_mem *mem, uint16_t size,
		 uint64_t desc_gpa, uint64_t avail_gpa, uint64_t used_gpa, uint64_t features);
void virtq_reset(struct virtq *vq);

/* Whether the driver made chains available that virtq_pop has not taken. */
bool virtq_has_avail(const struct virtq *vq);
/*
 * The next available chain into *c: returns 1, 0 when the ring is empty,
 * or -EINVAL when the guest broke the rules (the queue is then broken).
 */
int virtq_pop(struct virtq *vq, struct virtq_chain *c);
/* Returns a chain to the driver; 'written' bytes went into its writable buffers. */
void virtq_push(struct virtq *vq, uint16_t head, uint32_t written);
/* After pushes: does the driver want an interrupt for them? */
bool virtq_should_notify(struct virtq *vq);
/* Kicks are not needed while the worker drains the ring... */
void virtq_disable_notify(struct virtq *vq);
/* ...and are again afterwards; true if more work arrived in between. */
bool virtq_enable_notify(struct virtq *vq);

/* Copies out of the readable buffers from byte 'off'; returns the bytes copied. */
size_t virtq_chain_read(const struct virtq_chain *c, uint64_t off, void *buf, size_t len);
/* Copies into the writable buffers from byte 'off'; returns the bytes copied. */
size_t virtq_chain_write(const struct virtq_chain *c, uint64_t off, const void *buf, size_t len);
/*
 * Where writable byte 'off' is in guest RAM (NULL past the end): a request
 * completed later, after the chain was handed back to the walker, writes
 * its status there.
 */
uint8_t *virtq_chain_in_byte(const struct virtq_chain *c, uint64_t off);

#endif
