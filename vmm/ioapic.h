/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_IOAPIC_H
#define GRAPPE_IOAPIC_H

#include <pthread.h>
#include <stdint.h>

#include "vmm/apic_bus.h"
#include "vmm/io.h"

/*
 * An I/O APIC with 24 pins, version 0x20 (the ICH generation of the
 * 82093AA: same registers, plus a directed-EOI register at +0x40).
 *
 * Pin levels: ioapic_set_irq()'s 'level' is whether the line is asserted
 * (1) or not, as the device means it. The polarity bit of a redirection
 * entry is stored and read back but does not invert anything: the machine
 * always drives asserted = 1, so the guest's choice of active-low for, say,
 * the SCI only describes the wiring it believes in.
 *
 * Interrupts leave as struct apic_msg through the apic bus, always called
 * with the IOAPIC lock released: a LAPIC may answer with ioapic_eoi() from
 * inside the delivery, and the machine may forward the message to another
 * node. A caller of ioapic_set_irq() or ioapic_eoi() must therefore not
 * hold a lock that the apic bus's deliver takes.
 */

#define IOAPIC_NR_PINS   24
#define IOAPIC_MMIO_SIZE 0x1000
#define IOAPIC_VERSION   0x20
#define IOAPIC_MSG_SOURCE 0xffff   /* apic_msg.source: not a vCPU */

/* MMIO offsets. */
#define IOAPIC_IOREGSEL 0x00
#define IOAPIC_IOWIN    0x10
#define IOAPIC_EOI      0x40

/* Indirect registers. */
#define IOAPIC_REG_ID     0x00
#define IOAPIC_REG_VER    0x01
#define IOAPIC_REG_ARB    0x02
#define IOAPIC_REG_REDTBL 0x10     /* two per pin: low dword, high dword */

/* Redirection table entry bits. */
#define IOAPIC_RTE_VECTOR     0xffULL
#define IOAPIC_RTE_DELMODE_SHIFT 8
#define IOAPIC_RTE_DELMODE    (7ULL << IOAPIC_RTE_DELMODE_SHIFT)
#define IOAPIC_RTE_DESTMODE   (1ULL << 11)  /* 1: logical */
#define IOAPIC_RTE_DELIVS     (1ULL << 12)  /* read-only */
#define IOAPIC_RTE_POLARITY   (1ULL << 13)  /* 1: active low (informational) */
#define IOAPIC_RTE_REMOTE_IRR (1ULL << 14)  /* read-only */
#define IOAPIC_RTE_TRIGGER    (1ULL << 15)  /* 1: level */
#define IOAPIC_RTE_MASK       (1ULL << 16)
#define IOAPIC_RTE_DEST_SHIFT 56

/* Everything that survives a snapshot: plain data, no pointers. */
struct ioapic_state {
	uint8_t id;
	uint8_t ioregsel;
	uint32_t irr;                    /* line levels, bit n = pin n asserted */
	uint64_t redir[IOAPIC_NR_PINS];
};

struct ioapic {
	pthread_mutex_t lock;
	const struct apic_bus *bus;
	uint64_t base;                   /* IOAPIC_BASE_GPA unless changed before register */
	struct ioapic_state s;
};

void ioapic_init(struct ioapic *io, uint8_t id, const struct apic_bus *bus);
void ioapic_destroy(struct ioapic *io);
/* Back to power-on state (all pins masked); line levels are kept. */
void ioapic_reset(struct ioapic *io);
int ioapic_register(struct ioapic *io, struct io_bus *bus);

void ioapic_set_irq(struct ioapic *io, unsigned pin, int level);
/* A LAPIC took an EOI for a level-triggered 'vector'. */
void ioapic_eoi(struct ioapic *io, uint8_t vector);
/* irq_sink.set_irq for an IOAPIC wired alone, GSI n = pin n (ctx = the ioapic). */
void ioapic_sink_set_irq(void *ctx, unsigned gsi, int level);

void ioapic_get_state(struct ioapic *io, struct ioapic_state *st);
/*
 * Restores a snapshot without delivering anything: a level pin waiting in
 * the state (asserted, unmasked, remote IRR clear) is delivered on the next
 * ioapic_set_irq() for it, which the devices' own restore will do.
 */
void ioapic_set_state(struct ioapic *io, const struct ioapic_state *st);

void ioapic_mmio_read(void *dev, uint64_t off, unsigned len, uint64_t *data);
void ioapic_mmio_write(void *dev, uint64_t off, unsigned len, uint64_t data);

#endif
