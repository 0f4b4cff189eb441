// SPDX-License-Identifier: MIT
/*
 * The 8259A pair (Intel datasheet 231468) with the PIIX ELCR.
 *
 * Choices that differ from a literal reading of the datasheet, all for
 * robustness and invisible to PC operating systems:
 *  - the slave's INT reaches the master's IR2 as a level: if the slave
 *    still requests after the master's EOI, the master asks again instead
 *    of waiting for an edge that a wire would never make;
 *  - an edge-triggered IRR bit stays latched when the line falls before
 *    INTA, since irq_pulse() raises and lowers in one go;
 *  - a chip in the middle of its ICW sequence does not interrupt;
 *  - the power-on state (undefined on the chip) is all lines masked.
 */
#include <errno.h>
#include <string.h>

#include "vmm/pic.h"

static const uint8_t elcr_mask[2] = {
	0xf8,	/* IRQ 0, 1 and 2 are always edge-triggered */
	0xde,	/* as are IRQ 8 and 13 */
};

static uint8_t level_mask(const struct pic_chip *c)
{
	return c->ltim ? 0xff : c->elcr;
}

/* Priority (0 highest) of the highest-priority bit set in 'mask', or 8. */
static int priority_of(const struct pic_chip *c, uint8_t mask)
{
	for (int prio = 0; prio < 8; prio++)
		if (mask & (1 << ((prio + c->priority_add) & 7)))
			return prio;
	return 8;
}

static int chip_irq(const struct pic_chip *c, bool master)
{
	uint8_t in_service = c->isr;
	int prio;

	if (c->init_state)
		return -1;
	prio = priority_of(c, c->irr & ~c->imr);
	if (prio == 8)
		return -1;
	if (c->smm)
		in_service &= ~c->imr;
	/* Special fully nested: the slave may interrupt its own service. */
	if (master && c->sfnm)
		in_service &= (uint8_t)~(1 << PIC_CASCADE_IRQ);
	if (prio >= priority_of(c, in_service))
		return -1;
	return (prio + c->priority_add) & 7;
}

static void set_input(struct pic_chip *c, unsigned line, int level)
{
	uint8_t mask = (uint8_t)(1 << line);

	if (level_mask(c) & mask) {
		if (level)
			c->irr |= mask;
		else
			c->irr &= (uint8_t)~mask;
	} else if (level && !(c->lines & mask)) {
		c->irr |= mask;
	}
	if (level)
		c->lines |= mask;
	else
		c->lines &= (uint8_t)~mask;
}

/* Recomputes the cascade and the master's INT. Called with the lock held. */
static void update(struct pic *p)
{
	struct pic_chip *m = &p->chip[0];
	int slave = chip_irq(&p->chip[1], false) >= 0;
	int level;

	if (slave) {
		m->irr |= 1 << PIC_CASCADE_IRQ;
		m->lines |= 1 << PIC_CASCADE_IRQ;
	} else {
		m->irr &= (uint8_t)~(1 << PIC_CASCADE_IRQ);
		m->lines &= (uint8_t)~(1 << PIC_CASCADE_IRQ);
	}
	level = chip_irq(m, true) >= 0;
	if (level && !p->int_level)
		p->int_rises++;
	p->int_level = level;
}

/*
 * Reports INT to int_out with the lock released. One thread reports at a
 * time; the others only change the state, which the reporting thread
 * re-reads after every call, so the last report is always the current
 * level and no rise goes unreported.
 */
static void notify(struct pic *p)
{
	int level;
	bool pulse;

	pthread_mutex_lock(&p->lock);
	if (!p->int_out || p->notifying) {
		pthread_mutex_unlock(&p->lock);
		return;
	}
	p->notifying = true;
	for (;;) {
		level = p->int_level;
		pulse = level && p->reported_level && p->int_rises != p->reported_rises;
		if (level == p->reported_level && !pulse)
			break;
		p->reported_level = level;
		p->reported_rises = p->int_rises;
		pthread_mutex_unlock(&p->lock);
		if (pulse)
			p->int_out(p->ctx, 0);
		p->int_out(p->ctx, level);
		pthread_mutex_lock(&p->lock);
	}
	p->notifying = false;
	pthread_mutex_unlock(&p->lock);
}

static void ack(struct pic_chip *c, int irq)
{
	uint8_t mask = (uint8_t)(1 << irq);

	if (c->aeoi) {
		if (c->rotate_aeoi)
			c->priority_add = (irq + 1) & 7;
	} else {
		c->isr |= mask;
	}
	/* A level-triggered request stays while its line is high. */
	if (!(level_mask(c) & mask))
		c->irr &= (uint8_t)~mask;
}

static int intack_locked(struct pic *p)
{
	struct pic_chip *m = &p->chip[0], *s = &p->chip[1];
	int irq = chip_irq(m, true), irq2;

	if (irq < 0)
		return m->vector_base + 7;	/* spurious IRQ 7 */
	ack(m, irq);
	if (irq != PIC_CASCADE_IRQ)
		return m->vector_base + irq;
	irq2 = chip_irq(s, false);
	if (irq2 < 0)
		return s->vector_base + 7;	/* spurious IRQ 15 */
	ack(s, irq2);
	return s->vector_base + irq2;
}

int pic_intack(struct pic *p)
{
	int vec;

	pthread_mutex_lock(&p->lock);
	vec = intack_locked(p);
	update(p);
	pthread_mutex_unlock(&p->lock);
	notify(p);
	return vec;
}

bool pic_int_pending(struct pic *p)
{
	bool pending;

	pthread_mutex_lock(&p->lock);
	pending = chip_irq(&p->chip[0], true) >= 0;
	pthread_mutex_unlock(&p->lock);
	return pending;
}

void pic_set_irq(struct pic *p, unsigned irq, int level)
{
	if (irq >= 16 || irq == PIC_CASCADE_IRQ)
		return;
	pthread_mutex_lock(&p->lock);
	set_input(&p->chip[irq >> 3], irq & 7, level);
	update(p);
	pthread_mutex_unlock(&p->lock);
	notify(p);
}

static void icw1(struct pic_chip *c, uint8_t val)
{
	c->icw4_needed = val & 1;
	c->single = val & 2;
	c->ltim = val & 8;
	c->init_state = 1;
	c->imr = 0;
	c->isr = 0;
	/* The edge sense latches are reset: only a new rising edge counts. */
	c->irr = c->lines & level_mask(c);
	c->priority_add = 0;
	c->read_isr = c->poll = c->smm = false;
	c->rotate_aeoi = false;
	if (!c->icw4_needed)
		c->aeoi = c->sfnm = false;
}

static void icw_next(struct pic_chip *c, uint8_t val, bool master)
{
	switch (c->init_state) {
	case 1:
		c->vector_base = val & 0xf8;
		c->init_state = !c->single ? 2 : c->icw4_needed ? 3 : 0;
		break;
	case 2:
		c->icw3 = val;
		c->init_state = c->icw4_needed ? 3 : 0;
		break;
	default:
		c->aeoi = val & 2;
		c->sfnm = master && (val & 0x10);
		c->init_state = 0;
	}
}

static void eoi(struct pic_chip *c, int irq, bool rotate)
{
	if (irq < 0) {
		int prio = priority_of(c, c->isr);

		if (prio == 8)
			return;
		irq = (prio + c->priority_add) & 7;
	}
	c->isr &= (uint8_t)~(1 << irq);
	if (rotate)
		c->priority_add = (irq + 1) & 7;
}

static void ocw2(struct pic_chip *c, uint8_t val)
{
	int level = val & 7;

	switch (val >> 5) {
	case 0:
		c->rotate_aeoi = false;
		break;
	case 1:
		eoi(c, -1, false);
		break;
	case 3:
		eoi(c, level, false);
		break;
	case 4:
		c->rotate_aeoi = true;
		break;
	case 5:
		eoi(c, -1, true);
		break;
	case 6:
		c->priority_add = (level + 1) & 7;
		break;
	case 7:
		eoi(c, level, true);
		break;
	default:
		break;		/* 2: no operation */
	}
}

static void ocw3(struct pic_chip *c, uint8_t val)
{
	if (val & 4)
		c->poll = true;
	if (val & 2)
		c->read_isr = val & 1;
	if (val & 0x40)
		c->smm = val & 0x20;
}

static void chip_write(struct pic_chip *c, unsigned off, uint8_t val, bool master)
{
	if (off == 0) {
		if (val & 0x10)
			icw1(c, val);
		else if (val & 0x08)
			ocw3(c, val);
		else
			ocw2(c, val);
	} else if (c->init_state) {
		icw_next(c, val, master);
	} else {
		c->imr = val;
	}
}

/* Poll mode: the read is the chip's INTA, answered as a status byte. */
static uint8_t poll_read(struct pic_chip *c, bool master)
{
	int irq = chip_irq(c, master);

	c->poll = false;
	if (irq < 0)
		return 0;
	ack(c, irq);
	return (uint8_t)(0x80 | irq);
}

static uint8_t chip_read(struct pic_chip *c, unsigned off, bool master)
{
	if (c->poll)
		return poll_read(c, master);
	if (off == 0)
		return c->read_isr ? c->isr : c->irr;
	return c->imr;
}

static void elcr_write(struct pic_chip *c, unsigned idx, uint8_t val)
{
	uint8_t lm;

	c->elcr = val & elcr_mask[idx];
	lm = level_mask(c);
	c->irr = (uint8_t)((c->irr & ~lm) | (c->lines & lm));
}

static int port_chip(uint16_t port, unsigned *off)
{
	if ((port & ~1) == PIC_MASTER_BASE || (port & ~1) == PIC_SLAVE_BASE) {
		*off = port & 1;
		return port >= PIC_SLAVE_BASE;
	}
	return -1;
}

uint8_t pic_inb(struct pic *p, uint16_t port)
{
	uint8_t v = 0xff;
	unsigned off;
	int idx = port_chip(port, &off);

	pthread_mutex_lock(&p->lock);
	if (idx >= 0)
		v = chip_read(&p->chip[idx], off, idx == 0);
	else if (port == PIC_ELCR_BASE || port == PIC_ELCR_BASE + 1)
		v = p->chip[port - PIC_ELCR_BASE].elcr;
	update(p);
	pthread_mutex_unlock(&p->lock);
	notify(p);
	return v;
}

void pic_outb(struct pic *p, uint16_t port, uint8_t val)
{
	unsigned off;
	int idx = port_chip(port, &off);

	pthread_mutex_lock(&p->lock);
	if (idx >= 0)
		chip_write(&p->chip[idx], off, val, idx == 0);
	else if (port == PIC_ELCR_BASE || port == PIC_ELCR_BASE + 1)
		elcr_write(&p->chip[port - PIC_ELCR_BASE], port - PIC_ELCR_BASE, val);
	update(p);
	pthread_mutex_unlock(&p->lock);
	notify(p);
}

static void reset_chip(struct pic_chip *c)
{
	memset(c, 0, sizeof(*c));
	c->imr = 0xff;
}

int pic_init(struct pic *p, void (*int_out)(void *ctx, int level), void *ctx)
{
	int err;

	memset(p, 0, sizeof(*p));
	err = pthread_mutex_init(&p->lock, NULL);
	if (err)
		return -err;
	p->int_out = int_out;
	p->ctx = ctx;
	reset_chip(&p->chip[0]);
	reset_chip(&p->chip[1]);
	return 0;
}

void pic_destroy(struct pic *p)
{
	pthread_mutex_destroy(&p->lock);
}

static void io_read(struct pic *p, uint16_t base, uint64_t off, unsigned len,
		    uint64_t *data)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < len && i < 8; i++)
		v |= (uint64_t)pic_inb(p, (uint16_t)(base + off + i)) << (8 * i);
	*data = v;
}

static void io_write(struct pic *p, uint16_t base, uint64_t off, unsigned len,
		     uint64_t data)
{
	for (unsigned i = 0; i < len && i < 8; i++)
		pic_outb(p, (uint16_t)(base + off + i), (uint8_t)(data >> (8 * i)));
}

#define PIC_IO_FNS(name, base)							\
static void name##_read(void *dev, uint64_t off, unsigned len, uint64_t *d)	\
{										\
	io_read(dev, base, off, len, d);					\
}										\
static void name##_write(void *dev, uint64_t off, unsigned len, uint64_t d)	\
{										\
	io_write(dev, base, off, len, d);					\
}

PIC_IO_FNS(master, PIC_MASTER_BASE)
PIC_IO_FNS(slave, PIC_SLAVE_BASE)
PIC_IO_FNS(elcr_port, PIC_ELCR_BASE)

int pic_register(struct pic *p, struct io_bus *bus)
{
	const struct io_range ranges[] = {
		{ IO_SPACE_PIO, PIC_MASTER_BASE, 2, master_read, master_write, p, "pic-master" },
		{ IO_SPACE_PIO, PIC_SLAVE_BASE, 2, slave_read, slave_write, p, "pic-slave" },
		{ IO_SPACE_PIO, PIC_ELCR_BASE, 2, elcr_port_read, elcr_port_write, p, "elcr" },
	};

	for (unsigned i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		int err = io_bus_register(bus, &ranges[i]);

		if (err)
			return err;
	}
	return 0;
}

void pic_save(struct pic *p, struct pic_state *st)
{
	memset(st, 0, sizeof(*st));
	st->version = PIC_STATE_VERSION;
	pthread_mutex_lock(&p->lock);
	st->chip[0] = p->chip[0];
	st->chip[1] = p->chip[1];
	pthread_mutex_unlock(&p->lock);
}

int pic_restore(struct pic *p, const struct pic_state *st)
{
	if (st->version != PIC_STATE_VERSION)
		return -EINVAL;
	for (int i = 0; i < 2; i++)
		if (st->chip[i].init_state > 3 || (st->chip[i].elcr & ~elcr_mask[i]))
			return -EINVAL;
	pthread_mutex_lock(&p->lock);
	p->chip[0] = st->chip[0];
	p->chip[1] = st->chip[1];
	update(p);
	pthread_mutex_unlock(&p->lock);
	notify(p);
	return 0;
}
