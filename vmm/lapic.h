/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_LAPIC_H
#define GRAPPE_LAPIC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/apic_bus.h"
#include "vmm/timer.h"

/*
 * One xAPIC local APIC, emulated in userspace (no KVM_CREATE_IRQCHIP), so
 * that an interrupt can come from anywhere — another vCPU thread, the
 * IOAPIC, or later another host — and so that its state can travel with a
 * migrating vCPU.
 *
 * The owning vCPU thread reads and writes the registers (MMIO exits) and
 * asks for the next vector to inject; any thread may deliver a message.
 * Everything is under one mutex; callbacks are made with it released.
 */

#define LAPIC_BUS_FREQ_HZ 1000000000ULL  /* timer input clock before the divider */
#define LAPIC_VERSION     0x00050014     /* version 0x14, 6 LVT entries */

struct lapic;

struct lapic_ops {
	/* An interrupt, NMI, INIT or SIPI became pending: wake the vCPU. */
	void (*kick)(void *ctx);
	/* The guest wrote the ICR: send the message to the APIC bus. */
	void (*send)(void *ctx, const struct apic_msg *msg);
	/* EOI of a level-triggered vector: the IOAPIC clears its remote IRR. */
	void (*eoi_level)(void *ctx, uint8_t vector);
	/* ExtINT: is the 8259 asserting INTR, and its INTA cycle. */
	bool (*extint_pending)(void *ctx);
	int (*extint_ack)(void *ctx);
	/* The APIC ID, LDR or DFR changed: other nodes route by them. */
	void (*addr_changed)(void *ctx);
	void *ctx;
};

/* The architectural register file plus what the vCPU needs to act on. */
struct lapic_state {
	uint32_t id;        /* register value, APIC ID in bits 24-31 */
	uint32_t tpr;
	uint32_t ldr;
	uint32_t dfr;
	uint32_t svr;
	uint32_t isr[8];
	uint32_t tmr[8];
	uint32_t irr[8];
	uint32_t esr;
	uint32_t icr_lo;
	uint32_t icr_hi;
	uint32_t lvt[7];    /* timer, thermal, perf, LINT0, LINT1, error, CMCI */
	uint32_t timer_initial;
	uint32_t timer_divide;  /* the DCR register */
	uint64_t timer_start_ns;   /* when the current count was loaded */
	uint64_t timer_deadline_ns;/* 0 when not counting */
	uint64_t apic_base_msr;
	bool nmi_pending;
	bool init_pending;
	bool sipi_pending;
	uint8_t sipi_vector;
	bool wait_for_sipi;
};

enum {
	LAPIC_LVT_TIMER = 0,
	LAPIC_LVT_THERMAL,
	LAPIC_LVT_PERF,
	LAPIC_LVT_LINT0,
	LAPIC_LVT_LINT1,
	LAPIC_LVT_ERROR,
	LAPIC_LVT_CMCI,
};

struct lapic {
	pthread_mutex_t lock;
	struct lapic_state s;
	struct vtimer timer;
	struct timer_queue *tq;
	struct lapic_ops ops;
	unsigned vcpu;      /* index of the owning vCPU */
	bool bsp;
	uint64_t timer_fired; /* statistics */
};

void lapic_init(struct lapic *l, unsigned vcpu, uint8_t apic_id, bool bsp,
		struct timer_queue *tq, const struct lapic_ops *ops);
void lapic_destroy(struct lapic *l);
/* Power-on or INIT reset; INIT keeps the APIC ID and the base MSR. */
void lapic_reset(struct lapic *l, bool init);

/* MMIO on the APIC page, offset 0..0xfff, 4-byte accesses. */
uint32_t lapic_read(struct lapic *l, uint32_t off);
void lapic_write(struct lapic *l, uint32_t off, uint32_t val);

/* Does a message address this APIC? (Shorthands are resolved by the bus.) */
bool lapic_match_dest(struct lapic *l, const struct apic_msg *msg);
/*
 * How a LAPIC is addressed. A cluster keeps a copy for every vCPU on every
 * node, so that a node can resolve a destination without asking.
 */
struct lapic_addr {
	uint8_t apic_id;
	uint32_t ldr;
	uint32_t dfr;
};
void lapic_get_addr(struct lapic *l, struct lapic_addr *a);
bool lapic_addr_match(const struct lapic_addr *a, const struct apic_msg *msg);

/* Accepts a message addressed to this APIC. */
void lapic_accept(struct lapic *l, const struct apic_msg *msg);

/*
 * The highest-priority interrupt deliverable now (above PPR), or -1.
 * lapic_ack() moves it from IRR to ISR once it has been injected; for an
 * ExtINT, lapic_next_vector() performs the INTA cycle and returns the
 * vector with *extint set, and no ack is needed.
 */
int lapic_next_vector(struct lapic *l, bool *extint);
void lapic_ack(struct lapic *l, int vector);
/* True when something would wake a halted vCPU. */
bool lapic_has_event(struct lapic *l);

/* Events the vCPU thread acts on itself, taken (and cleared) at once. */
struct lapic_events {
	bool nmi;
	bool init;   /* the LAPIC has been INIT-reset; the vCPU must be too */
	int sipi;    /* start-up vector, or -1 */
};
void lapic_take_events(struct lapic *l, struct lapic_events *ev);
bool lapic_waiting_for_sipi(struct lapic *l);
/* What wakes a CPU halted with interrupts disabled. */
bool lapic_has_nmi_init(struct lapic *l);

uint8_t lapic_apic_id(struct lapic *l);
/* CR8 is TPR[7:4]: KVM reports the guest's CR8 in kvm_run. */
void lapic_set_cr8(struct lapic *l, uint64_t cr8);
uint64_t lapic_get_cr8(struct lapic *l);

#endif
