/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_PIC_H
#define GRAPPE_PIC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/io.h"

/*
 * The PC's pair of Intel 8259A interrupt controllers: master at 0x20-0x21,
 * slave at 0xA0-0xA1 cascaded on the master's IR2, and the PIIX edge/level
 * control registers (ELCR) at 0x4D0-0x4D1.
 *
 * The master's INT output is reported through int_out, which the machine
 * routes to the BSP's LINT0 (ExtINT, level-sensitive). int_out is called
 * without the PIC lock held, so it may call pic_intack() or any other PIC
 * function, even synchronously. Calls are serialised and the last one
 * always carries the current level; when the output rose again since the
 * last report while the reported level was already 1 (an interrupt was
 * taken and another arrived), a 0 then 1 is reported so that an
 * edge-latching consumer also sees it.
 */
#define PIC_MASTER_BASE	0x20
#define PIC_SLAVE_BASE	0xa0
#define PIC_ELCR_BASE	0x4d0
#define PIC_CASCADE_IRQ	2
#define PIC_STATE_VERSION 1

struct pic_chip {
	uint8_t irr, isr, imr;
	uint8_t lines;		/* current input levels */
	uint8_t elcr;		/* 1 = level-triggered line */
	uint8_t vector_base;
	uint8_t priority_add;	/* the IR that has the highest priority */
	uint8_t init_state;	/* 0 ready, 1..3: the next ICW is 2..4 */
	uint8_t icw3;
	bool icw4_needed, single, ltim;
	bool aeoi, rotate_aeoi, sfnm;
	bool read_isr, poll, smm;
};

struct pic {
	pthread_mutex_t lock;
	struct pic_chip chip[2];	/* master, slave */
	void (*int_out)(void *ctx, int level);
	void *ctx;
	int int_level;			/* the master's INT now */
	uint64_t int_rises;
	int reported_level;		/* what int_out was last told */
	uint64_t reported_rises;
	bool notifying;			/* a thread is calling int_out */
};

struct pic_state {
	uint32_t version;
	struct pic_chip chip[2];
};

/* int_out may be NULL (no consumer). Returns 0 or a negative errno. */
int pic_init(struct pic *p, void (*int_out)(void *ctx, int level), void *ctx);
void pic_destroy(struct pic *p);
/* Registers 0x20-0x21, 0xA0-0xA1 and 0x4D0-0x4D1. */
int pic_register(struct pic *p, struct io_bus *bus);

/*
 * Drives input line 'irq' (0-15; 8-15 are the slave's IR0-7). IRQ 2 is the
 * cascade input and is ignored: ISA IRQ 2 devices are wired to IRQ 9.
 */
void pic_set_irq(struct pic *p, unsigned irq, int level);
/* INTA cycle: the vector to inject; a spurious IRQ 7 or 15 if none. */
int pic_intack(struct pic *p);
bool pic_int_pending(struct pic *p);

uint8_t pic_inb(struct pic *p, uint16_t port);
void pic_outb(struct pic *p, uint16_t port, uint8_t val);

void pic_save(struct pic *p, struct pic_state *st);
int pic_restore(struct pic *p, const struct pic_state *st);

#endif
