/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_IRQ_H
#define GRAPPE_IRQ_H

/*
 * Where a device's interrupt line goes. A device knows only its GSI and this
 * sink; the machine routes the level to the 8259 pair and the IOAPIC (and,
 * in a cluster, on to the node of the target vCPU). 'level' is 1 raised,
 * 0 lowered; an edge-triggered device raises then lowers.
 */
struct irq_sink {
	void (*set_irq)(void *ctx, unsigned gsi, int level);
	void *ctx;
};

static inline void irq_set(const struct irq_sink *s, unsigned gsi, int level)
{
	if (s && s->set_irq)
		s->set_irq(s->ctx, gsi, level);
}

static inline void irq_pulse(const struct irq_sink *s, unsigned gsi)
{
	irq_set(s, gsi, 1);
	irq_set(s, gsi, 0);
}

#endif
