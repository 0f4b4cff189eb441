/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_PIT_H
#define GRAPPE_PIT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/io.h"
#include "vmm/irq.h"
#include "vmm/timer.h"

/*
 * Intel 8254 programmable interval timer at ports 0x40-0x43, plus port 0x61
 * (NMI status and control: channel 2 gate, speaker data, channel 2 OUT and
 * the refresh toggle).
 *
 * Counters are not ticked: every value is derived from the timer queue's
 * clock and the time a count was loaded, so a read is right at any instant
 * and an idle PIT costs nothing. Only channel 0 drives an interrupt (ISA
 * IRQ 0 through the irq sink); it uses one vtimer, armed only while an OUT
 * edge is ahead.
 *
 * The irq sink is called with the PIT lock held: the interrupt routing never
 * calls back into the PIT.
 */
#define PIT_FREQ_HZ	1193182u
#define PIT_IRQ		0	/* ISA IRQ, passed to set_irq as the gsi */
#define PIT_PORT_BASE	0x40
#define PIT_PORT_61	0x61
#define PIT_STATE_VERSION 1

struct pit_channel {
	uint8_t mode;		/* 0..5 */
	uint8_t rw;		/* 1 lobyte, 2 hibyte, 3 lobyte then hibyte */
	bool bcd;
	bool gate;
	bool loaded;		/* a count was written since the control word */
	bool counting;		/* the counting element holds n and runs */
	bool paused;		/* gate low holds the count (modes 0, 2, 3, 4) */
	bool reload_pending;	/* modes 2/3: cr becomes n at boundary pending_k */
	bool owed;		/* channel 0: an edge is due that 'signalled' hides */
	bool null_count;
	uint32_t cr;		/* count register, decoded: 1..65536 (10000 BCD) */
	uint32_t n;		/* count of the running cycle */
	uint16_t idle_value;	/* what a read shows while not counting */
	uint64_t start_ns;	/* timer-queue time counting began */
	uint64_t base_tick;	/* ticks after start_ns where this cycle began */
	uint64_t pause_ns;	/* when the gate went low */
	uint64_t pending_k;
	uint64_t signalled;	/* channel 0: OUT edges already sent */

	bool write_msb_next;
	uint8_t write_lsb;
	bool read_msb_next;
	uint8_t latch_rw;	/* bytes of the latched count still unread */
	uint16_t latched;
	bool status_latched;
	uint8_t status;
};

struct pit {
	pthread_mutex_t lock;
	struct timer_queue *q;
	struct irq_sink irq;
	struct vtimer timer;		/* channel 0's next OUT edge */
	struct pit_channel ch[3];
	uint8_t port61;			/* writable bits 0-3 */
	bool refresh;			/* port 0x61 bit 4 */
	int irq_level;			/* last level sent for IRQ 0 */
};

/*
 * Plain snapshot of the PIT. Times are ages relative to the clock when the
 * state was saved, so a restore on another host (another clock origin)
 * resumes every counter where it was.
 */
struct pit_state {
	uint32_t version;
	struct pit_channel ch[3];	/* start_ns/pause_ns hold ages */
	uint8_t port61;
	bool refresh;
	int irq_level;
};

/* 'irq' is copied. Returns 0 or a negative errno. */
int pit_init(struct pit *p, struct timer_queue *q, const struct irq_sink *irq);
/*
 * The timer queue must not be running the PIT's callback concurrently (stop
 * the queue thread first, or destroy from the queue's thread).
 */
void pit_destroy(struct pit *p);
/* Registers 0x40-0x43 and 0x61. Returns 0 or the io_bus_register error. */
int pit_register(struct pit *p, struct io_bus *bus);

/* Port access by absolute port number, for tests and for the io bus. */
uint8_t pit_inb(struct pit *p, uint16_t port);
void pit_outb(struct pit *p, uint16_t port, uint8_t val);

void pit_save(struct pit *p, struct pit_state *st);
int pit_restore(struct pit *p, const struct pit_state *st);

#endif
