/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_NODE_MSG_H
#define GRAPPE_NODE_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/apic_bus.h"
#include "vmm/io.h"

/*
 * What the VMM halves of a cluster say to each other over the fabric (the
 * DSM has its own messages): interrupts for vCPUs on other nodes, device
 * accesses forwarded to the I/O node and their answers, EOIs for the
 * IOAPIC, the APIC directory (who answers which logical destination), the
 * guest clock, and machine events. Each is a small fixed-layout
 * little-endian record; decoding checks every field, since a frame's
 * payload comes from another process.
 */

enum node_msg_type {
	NODE_MSG_APIC = 0x100,    /* deliver an interrupt message to one local vCPU */
	NODE_MSG_APIC_ID,         /* a vCPU's APIC ID / LDR / DFR changed */
	NODE_MSG_EOI,             /* level-triggered EOI, for the IOAPIC */
	NODE_MSG_IO_REQ,          /* PIO/MMIO for a device on the I/O node */
	NODE_MSG_IO_RESP,         /* its answer (req_id matches) */
	NODE_MSG_EVENT,           /* machine event: poweroff, reset, error... */
	NODE_MSG_CLOCK,           /* the guest's kvmclock, from node 0 */
	NODE_MSG_READY,           /* a node finished set-up */
	/* Virtqueues served by the node of their vCPU (docs/cluster.md, "Disk queues"). */
	NODE_MSG_VQ_START,        /* I/O node -> server: a queue's rings, features, MSI-X route */
	NODE_MSG_VQ_MSIX,         /* I/O node -> server: the queue's MSI-X route changed */
	NODE_MSG_VQ_KICK,         /* I/O node -> server: the driver notified the queue there */
	NODE_MSG_VQ_RESET,        /* I/O node -> server: the device is reset; stop its queues */
	NODE_MSG_VQ_RESET_DONE,   /* server -> I/O node: stopped (seq matches) */
	NODE_MSG_VQ_IRQ,          /* server -> I/O node: interrupt the I/O node must send */
	NODE_MSG_VQ_FAIL,         /* server -> I/O node: the guest broke the queue */
	NODE_MSG_TYPE_END,
};

#define NODE_MSG_TEXT_MAX 200

/* Bounds a decoder checks (a device has at most this many queues, a machine disks). */
#define NODE_MSG_VQ_MAX_DISKS  64
#define NODE_MSG_VQ_MAX_QUEUES 127
#define NODE_MSG_VQ_NO_VECTOR  0xffff
#define NODE_MSG_VQ_MSIX_MAX_VECTOR 127
/* vq.msix_flags */
#define NODE_MSG_VQ_MSIX_DIRECT 1u   /* the server may send the MSI itself (unmasked, enabled) */

/*
 * One virtqueue served on another node. Which fields travel depends on the
 * type: disk everywhere; queue except in RESET/RESET_DONE; seq in
 * RESET/RESET_DONE; everything in START; the route (msix_*) in START and
 * MSIX.
 */
struct node_msg_vq {
	uint8_t disk;
	uint16_t queue;
	uint32_t seq;
	uint16_t size;                /* power of two, 1..32768 */
	uint16_t vector;              /* MSI-X vector of the queue, or NO_VECTOR */
	uint64_t features;            /* negotiated; VERSION_1 set */
	uint64_t notify_gpa;          /* where the driver writes to notify this queue */
	uint64_t desc, driver, device;
	uint64_t msix_addr;
	uint32_t msix_data;
	uint8_t msix_flags;
};

struct node_msg {
	uint16_t type;
	union {
		struct { uint16_t vcpu; struct apic_msg msg; } apic;
		struct { uint16_t vcpu; uint8_t apic_id; uint32_t ldr, dfr; } apic_id;
		struct { uint8_t vector; } eoi;
		struct io_req io;                 /* IO_REQ and IO_RESP */
		struct { uint8_t event; char text[NODE_MSG_TEXT_MAX + 1]; } event;
		struct { uint64_t clock_ns; uint64_t realtime_ns; } clock;
		struct { uint16_t node; } ready;
		struct node_msg_vq vq;            /* NODE_MSG_VQ_* */
	} u;
};

#define NODE_MSG_MAX_BYTES 256

/* Returns the encoded length (> 0) or -EINVAL for a message that cannot be sent. */
int node_msg_encode(const struct node_msg *m, uint8_t *buf, size_t cap);
/*
 * Decodes a payload of the given fabric type. Returns 0, or -EINVAL with
 * a reason in *why for anything malformed (length, range, reserved values).
 */
int node_msg_decode(uint16_t type, const uint8_t *buf, size_t len, struct node_msg *m,
		    const char **why);

#endif
