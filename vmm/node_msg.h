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
	NODE_MSG_TYPE_END,
};

#define NODE_MSG_TEXT_MAX 200

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
