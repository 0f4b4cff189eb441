/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_APIC_BUS_H
#define GRAPPE_APIC_BUS_H

#include <stdbool.h>
#include <stdint.h>

/*
 * An interrupt message as it travels between the IOAPIC, the local APICs
 * and (in a cluster) the fabric: the fields of an ICR write or of a
 * redirection-table entry. It is plain data so that it can be sent to
 * another node unchanged.
 */
enum apic_delivery {
	APIC_DM_FIXED = 0,
	APIC_DM_LOWEST = 1,
	APIC_DM_SMI = 2,
	APIC_DM_NMI = 4,
	APIC_DM_INIT = 5,
	APIC_DM_SIPI = 6,
	APIC_DM_EXTINT = 7,
};

enum apic_shorthand {
	APIC_SH_NONE = 0,
	APIC_SH_SELF = 1,
	APIC_SH_ALL_INCL = 2,
	APIC_SH_ALL_EXCL = 3,
};

struct apic_msg {
	uint8_t vector;
	uint8_t delivery;     /* enum apic_delivery */
	uint8_t dest_logical; /* 1: logical destination mode */
	uint8_t level;        /* 1: assert (INIT de-assert has 0) */
	uint8_t trigger_level;/* 1: level-triggered (needs EOI broadcast) */
	uint8_t shorthand;    /* enum apic_shorthand */
	uint8_t dest;         /* APIC ID or logical destination */
	uint16_t source;      /* vCPU index of the sender, for shorthands */
};

/*
 * Something that delivers interrupt messages to local APICs. The machine
 * implements it: it finds the target LAPICs (local or on other nodes).
 */
struct apic_bus {
	void (*deliver)(void *ctx, const struct apic_msg *msg);
	void *ctx;
};

static inline void apic_bus_deliver(const struct apic_bus *b, const struct apic_msg *m)
{
	if (b && b->deliver)
		b->deliver(b->ctx, m);
}

#endif
