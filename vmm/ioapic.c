// SPDX-License-Identifier: MIT
/*
 * I/O APIC.
 *
 * Every path that may send interrupts collects them into a small outbox
 * under the lock and delivers after unlocking, so the IOAPIC never holds
 * its lock across the apic bus (see ioapic.h).
 */
#include <string.h>

#include "vmm/acpi.h"
#include "vmm/ioapic.h"

#define RTE_LO_WRITABLE (IOAPIC_RTE_VECTOR | IOAPIC_RTE_DELMODE | IOAPIC_RTE_DESTMODE | \
			 IOAPIC_RTE_POLARITY | IOAPIC_RTE_TRIGGER | IOAPIC_RTE_MASK)
#define RTE_HI_WRITABLE 0xff000000u   /* destination, bits 56-63 */

struct outbox {
	unsigned n;
	struct apic_msg msg[IOAPIC_NR_PINS];
};

static void outbox_send(const struct ioapic *io, const struct outbox *ob)
{
	for (unsigned i = 0; i < ob->n; i++)
		apic_bus_deliver(io->bus, &ob->msg[i]);
}

static bool rte_level(uint64_t e)
{
	return e & IOAPIC_RTE_TRIGGER;
}

static struct apic_msg rte_msg(uint64_t e)
{
	return (struct apic_msg){
		.vector = e & IOAPIC_RTE_VECTOR,
		.delivery = (e & IOAPIC_RTE_DELMODE) >> IOAPIC_RTE_DELMODE_SHIFT,
		.dest_logical = !!(e & IOAPIC_RTE_DESTMODE),
		.level = 1,
		.trigger_level = rte_level(e),
		.shorthand = APIC_SH_NONE,
		.dest = e >> IOAPIC_RTE_DEST_SHIFT,
		.source = IOAPIC_MSG_SOURCE,
	};
}

/*
 * Sends the pin's interrupt if its line is asserted and nothing holds it
 * back. For an edge pin the caller has already seen the rising edge; a
 * level pin then waits for the EOI that clears remote IRR.
 */
static void service_pin(struct ioapic *io, unsigned pin, struct outbox *ob)
{
	uint64_t *e = &io->s.redir[pin];

	if ((*e & IOAPIC_RTE_MASK) || !(io->s.irr & (1u << pin)))
		return;
	if (rte_level(*e)) {
		if (*e & IOAPIC_RTE_REMOTE_IRR)
			return;
		*e |= IOAPIC_RTE_REMOTE_IRR;
	}
	ob->msg[ob->n++] = rte_msg(*e);
}

static void reset_state(struct ioapic *io)
{
	uint32_t irr = io->s.irr;
	uint8_t id = io->s.id;

	memset(&io->s, 0, sizeof(io->s));
	io->s.id = id;
	io->s.irr = irr;
	for (unsigned i = 0; i < IOAPIC_NR_PINS; i++)
		io->s.redir[i] = IOAPIC_RTE_MASK;
}

void ioapic_init(struct ioapic *io, uint8_t id, const struct apic_bus *bus)
{
	memset(io, 0, sizeof(*io));
	pthread_mutex_init(&io->lock, NULL);
	io->bus = bus;
	io->base = IOAPIC_BASE_GPA;
	io->s.id = id & 0x0f;
	reset_state(io);
}

void ioapic_destroy(struct ioapic *io)
{
	pthread_mutex_destroy(&io->lock);
}

void ioapic_reset(struct ioapic *io)
{
	pthread_mutex_lock(&io->lock);
	reset_state(io);
	pthread_mutex_unlock(&io->lock);
}

int ioapic_register(struct ioapic *io, struct io_bus *bus)
{
	struct io_range r = {
		.space = IO_SPACE_MMIO,
		.base = io->base,
		.size = IOAPIC_MMIO_SIZE,
		.read = ioapic_mmio_read,
		.write = ioapic_mmio_write,
		.dev = io,
		.name = "ioapic",
	};

	return io_bus_register(bus, &r);
}

void ioapic_set_irq(struct ioapic *io, unsigned pin, int level)
{
	struct outbox ob = { 0 };
	uint32_t bit = 1u << pin;
	bool was;

	if (pin >= IOAPIC_NR_PINS)
		return;
	pthread_mutex_lock(&io->lock);
	was = io->s.irr & bit;
	if (level)
		io->s.irr |= bit;
	else
		io->s.irr &= ~bit;
	/* Edge pins fire on the rising edge only; level pins whenever asserted. */
	if (level && (!was || rte_level(io->s.redir[pin])))
		service_pin(io, pin, &ob);
	pthread_mutex_unlock(&io->lock);
	outbox_send(io, &ob);
}

void ioapic_sink_set_irq(void *ctx, unsigned gsi, int level)
{
	ioapic_set_irq(ctx, gsi, level);
}

/* Clears remote IRR of the level pins using 'vector'; re-sends those still asserted. */
static void eoi_locked(struct ioapic *io, uint8_t vector, struct outbox *ob)
{
	for (unsigned pin = 0; pin < IOAPIC_NR_PINS; pin++) {
		uint64_t *e = &io->s.redir[pin];

		if ((*e & IOAPIC_RTE_VECTOR) != vector || !rte_level(*e) ||
		    !(*e & IOAPIC_RTE_REMOTE_IRR))
			continue;
		*e &= ~IOAPIC_RTE_REMOTE_IRR;
		service_pin(io, pin, ob);
	}
}

void ioapic_eoi(struct ioapic *io, uint8_t vector)
{
	struct outbox ob = { 0 };

	pthread_mutex_lock(&io->lock);
	eoi_locked(io, vector, &ob);
	pthread_mutex_unlock(&io->lock);
	outbox_send(io, &ob);
}

static uint32_t read_reg(const struct ioapic *io)
{
	unsigned sel = io->s.ioregsel;
	uint64_t e;

	switch (sel) {
	case IOAPIC_REG_ID:
	case IOAPIC_REG_ARB:
		return (uint32_t)io->s.id << 24;
	case IOAPIC_REG_VER:
		return (IOAPIC_NR_PINS - 1) << 16 | IOAPIC_VERSION;
	}
	if (sel < IOAPIC_REG_REDTBL || sel >= IOAPIC_REG_REDTBL + 2 * IOAPIC_NR_PINS)
		return 0;
	e = io->s.redir[(sel - IOAPIC_REG_REDTBL) / 2];
	return sel & 1 ? e >> 32 : (uint32_t)e;
}

static void write_rte_lo(struct ioapic *io, unsigned pin, uint32_t val, struct outbox *ob)
{
	uint64_t *e = &io->s.redir[pin];

	*e = (*e & ~RTE_LO_WRITABLE) | (val & RTE_LO_WRITABLE);
	/* Remote IRR means nothing for an edge pin; switching to edge drops it. */
	if (!rte_level(*e))
		*e &= ~IOAPIC_RTE_REMOTE_IRR;
	else
		/* Unmasking (or retyping) an asserted level pin delivers it. */
		service_pin(io, pin, ob);
}

static void write_reg(struct ioapic *io, uint32_t val, struct outbox *ob)
{
	unsigned sel = io->s.ioregsel;
	unsigned pin;

	if (sel == IOAPIC_REG_ID) {
		io->s.id = (val >> 24) & 0x0f;
		return;
	}
	if (sel < IOAPIC_REG_REDTBL || sel >= IOAPIC_REG_REDTBL + 2 * IOAPIC_NR_PINS)
		return;	/* version, arbitration: read-only */
	pin = (sel - IOAPIC_REG_REDTBL) / 2;
	if (sel & 1) {
		uint64_t *e = &io->s.redir[pin];

		*e = (uint32_t)*e | (uint64_t)(val & RTE_HI_WRITABLE) << 32;
	} else {
		write_rte_lo(io, pin, val, ob);
	}
}

void ioapic_mmio_read(void *dev, uint64_t off, unsigned len, uint64_t *data)
{
	struct ioapic *io = dev;

	pthread_mutex_lock(&io->lock);
	if (off == IOAPIC_IOREGSEL)
		*data = io->s.ioregsel;
	else if (off == IOAPIC_IOWIN)
		*data = read_reg(io);
	else
		*data = 0;
	pthread_mutex_unlock(&io->lock);
}

void ioapic_mmio_write(void *dev, uint64_t off, unsigned len, uint64_t data)
{
	struct ioapic *io = dev;
	struct outbox ob = { 0 };

	pthread_mutex_lock(&io->lock);
	if (off == IOAPIC_IOREGSEL)
		io->s.ioregsel = data & 0xff;
	else if (off == IOAPIC_IOWIN)
		write_reg(io, (uint32_t)data, &ob);
	else if (off == IOAPIC_EOI)
		eoi_locked(io, data & 0xff, &ob);
	pthread_mutex_unlock(&io->lock);
	outbox_send(io, &ob);
}

void ioapic_get_state(struct ioapic *io, struct ioapic_state *st)
{
	pthread_mutex_lock(&io->lock);
	*st = io->s;
	pthread_mutex_unlock(&io->lock);
}

void ioapic_set_state(struct ioapic *io, const struct ioapic_state *st)
{
	pthread_mutex_lock(&io->lock);
	io->s = *st;
	pthread_mutex_unlock(&io->lock);
}
