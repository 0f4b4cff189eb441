// SPDX-License-Identifier: MIT
/*
 * Intel 8254 PIT (datasheet 231164) and port 0x61.
 *
 * Each counter is a function of time: the counting element started with n
 * at start_ns, and every read computes how many input clocks have gone by
 * since. Nothing runs while the guest does not look, except channel 0's
 * vtimer, which is armed for the next OUT edge only.
 *
 * Simplifications, all invisible to PC software:
 *  - a count is loaded into the counting element at once, not on the next
 *    clock edge (the datasheet's N+1);
 *  - channel 0's line models OUT's rising edges: in modes 2 and 3 the line
 *    rests high and each period is a low-then-high pulse, which is what an
 *    edge-triggered 8259 or IOAPIC pin latches;
 *  - in mode 3 a new count takes effect at the end of the period, not of
 *    the half period;
 *  - BCD counters count in binary and are shown in BCD.
 */
#include <errno.h>
#include <string.h>

#include "vmm/pit.h"

#define NSEC		1000000000ULL
#define NO_EVENT	UINT64_MAX

static uint64_t ns_to_ticks(uint64_t ns)
{
	return (uint64_t)((unsigned __int128)ns * PIT_FREQ_HZ / NSEC);
}

/* Rounded up, so that at the returned time the tick has really happened. */
static uint64_t ticks_to_ns(uint64_t t)
{
	return (uint64_t)(((unsigned __int128)t * NSEC + PIT_FREQ_HZ - 1) / PIT_FREQ_HZ);
}

static uint32_t modulus(const struct pit_channel *c)
{
	return c->bcd ? 10000 : 65536;
}

static uint32_t bcd_to_bin(uint16_t v)
{
	uint32_t r = 0;

	/* Invalid nibbles give a wrong count, never an out-of-range one. */
	for (int shift = 12; shift >= 0; shift -= 4)
		r = r * 10 + ((v >> shift) & 0xf);
	return r % 10000;
}

static uint16_t bin_to_bcd(uint32_t v)
{
	uint16_t r = 0;

	for (int shift = 0; shift < 16; shift += 4, v /= 10)
		r |= (uint16_t)((v % 10) << shift);
	return r;
}

static uint32_t decode_count(const struct pit_channel *c, uint16_t raw)
{
	uint32_t v = c->bcd ? bcd_to_bin(raw) : raw;

	return v ? v : modulus(c);
}

static uint64_t elapsed(const struct pit_channel *c, uint64_t now)
{
	uint64_t t = c->paused ? c->pause_ns : now;
	int64_t delta = (int64_t)(t - c->start_ns);
	uint64_t ticks = delta > 0 ? ns_to_ticks((uint64_t)delta) : 0;

	return ticks > c->base_tick ? ticks - c->base_tick : 0;
}

static bool periodic(const struct pit_channel *c)
{
	return c->mode == 2 || c->mode == 3;
}

static void start(struct pit_channel *c, uint64_t now)
{
	c->n = c->cr;
	c->start_ns = now;
	c->pause_ns = now;
	c->base_tick = 0;
	c->counting = true;
	c->paused = !c->gate && c->mode != 1 && c->mode != 5;
	c->signalled = 0;
	c->owed = false;
	c->reload_pending = false;
	c->null_count = false;
}

/*
 * Modes 2 and 3 take a new count at the end of the running period. The
 * boundary's OUT edge belongs to the old cycle: if it was not signalled
 * yet, 'owed' keeps it.
 */
static void sync(struct pit_channel *c, uint64_t now)
{
	uint64_t boundary;

	if (!c->reload_pending || !c->counting || c->paused)
		return;
	boundary = c->pending_k * c->n;
	if (elapsed(c, now) < boundary)
		return;
	c->owed = c->owed || c->signalled < c->pending_k;
	/* Rebase in ticks: rounding to ns would shift later periods. */
	c->base_tick += boundary;
	c->n = c->cr;
	c->signalled = 0;
	c->reload_pending = false;
	c->null_count = false;
}

static uint32_t raw_value(const struct pit_channel *c, uint64_t now)
{
	uint64_t d = elapsed(c, now);
	uint64_t m = modulus(c), p, half, q;

	switch (c->mode) {
	case 2:
		return c->n - (uint32_t)(d % c->n);
	case 3:
		/* Counts down by two through each half period. */
		p = d % c->n;
		half = (c->n + 1) / 2;
		q = p < half ? p : p - half;
		return (uint32_t)((c->n & ~1u) - 2 * q);
	default:
		return (uint32_t)((c->n + m - d % m) % m);
	}
}

static uint16_t value(const struct pit_channel *c, uint64_t now)
{
	uint32_t v;

	if (!c->counting)
		return c->idle_value;
	v = raw_value(c, now) % modulus(c);
	return c->bcd ? bin_to_bcd(v) : (uint16_t)v;
}

static int out(const struct pit_channel *c, uint64_t now)
{
	uint64_t d;

	if (!c->counting)
		return c->mode != 0;
	d = elapsed(c, now);
	switch (c->mode) {
	case 0:
	case 1:
		return d >= c->n;
	case 2:
		return c->paused || d % c->n != c->n - 1;
	case 3:
		return c->paused || d % c->n < (c->n + 1) / 2;
	default:
		return d != c->n;
	}
}

/* Channel 0: how many OUT rising edges have happened by tick d. */
static uint64_t events_due(const struct pit_channel *c, uint64_t d)
{
	uint64_t tc = c->mode >= 4 ? (uint64_t)c->n + 1 : c->n;

	if (periodic(c))
		return d / c->n;
	return d >= tc;
}

static uint64_t next_event_tick(const struct pit_channel *c)
{
	if (periodic(c))
		return (c->signalled + 1) * c->n;
	if (c->signalled)
		return NO_EVENT;
	return c->mode >= 4 ? (uint64_t)c->n + 1 : c->n;
}

static void line_set(struct pit *p, int level)
{
	if (p->irq_level == level)
		return;
	p->irq_level = level;
	irq_set(&p->irq, PIT_IRQ, level);
}

/*
 * Sends at most one edge however late we are: a guest that lost ticks
 * counts time with its clocksource, and a burst of stale interrupts would
 * only stall it.
 */
static void ch0_update(struct pit *p, uint64_t now)
{
	struct pit_channel *c = &p->ch[0];
	uint64_t due, next, deadline;

	sync(c, now);
	if (!c->counting || c->paused) {
		vtimer_del(&p->timer);
		return;
	}
	due = events_due(c, elapsed(c, now));
	if (c->owed || due > c->signalled) {
		if (c->mode == 0 || c->mode == 1) {
			line_set(p, 1);
		} else {
			line_set(p, 0);
			line_set(p, 1);
		}
		if (due > c->signalled)
			c->signalled = due;
		c->owed = false;
	}
	next = next_event_tick(c);
	if (next == NO_EVENT) {
		vtimer_del(&p->timer);
		return;
	}
	deadline = c->start_ns + ticks_to_ns(c->base_tick + next);
	if ((int64_t)(deadline - now) < 0)
		deadline = now;
	vtimer_mod(&p->timer, deadline);
}

static void sync_all(struct pit *p, uint64_t now)
{
	for (int i = 0; i < 3; i++)
		sync(&p->ch[i], now);
}

static void latch_count(struct pit_channel *c, uint64_t now)
{
	/* A second latch before the first is read is ignored. */
	if (c->latch_rw)
		return;
	c->latched = value(c, now);
	c->latch_rw = c->rw;
}

static void latch_status(struct pit_channel *c, uint64_t now)
{
	if (c->status_latched)
		return;
	c->status = (uint8_t)(out(c, now) << 7 | c->null_count << 6 | c->rw << 4 |
			      c->mode << 1 | c->bcd);
	c->status_latched = true;
}

static void read_back(struct pit *p, uint8_t val, uint64_t now)
{
	for (int i = 0; i < 3; i++) {
		if (!(val & (2 << i)))
			continue;
		if (!(val & 0x20))
			latch_count(&p->ch[i], now);
		if (!(val & 0x10))
			latch_status(&p->ch[i], now);
	}
}

static void write_control(struct pit *p, uint8_t val, uint64_t now)
{
	unsigned sc = val >> 6, rw = (val >> 4) & 3, mode = (val >> 1) & 7;
	struct pit_channel *c;

	if (sc == 3) {
		read_back(p, val, now);
		return;
	}
	c = &p->ch[sc];
	if (rw == 0) {
		latch_count(c, now);
		return;
	}
	c->idle_value = value(c, now);
	c->mode = (uint8_t)(mode > 5 ? mode - 4 : mode);
	c->rw = (uint8_t)rw;
	c->bcd = val & 1;
	c->loaded = c->counting = c->paused = false;
	c->reload_pending = c->owed = false;
	c->null_count = true;
	c->write_msb_next = c->read_msb_next = false;
	c->latch_rw = 0;
	c->status_latched = false;
	c->signalled = 0;
	if (sc == 0) {
		line_set(p, c->mode != 0);
		ch0_update(p, now);
	}
}

static void load(struct pit *p, unsigned idx, uint16_t raw, uint64_t now)
{
	struct pit_channel *c = &p->ch[idx];

	c->cr = decode_count(c, raw);
	c->loaded = true;
	c->null_count = true;
	switch (c->mode) {
	case 0:
	case 4:
		start(c, now);
		break;
	case 2:
	case 3:
		if (!c->counting) {
			start(c, now);
		} else if (!c->paused) {
			c->pending_k = elapsed(c, now) / c->n + 1;
			c->reload_pending = true;
		}
		break;
	default:
		break;		/* modes 1 and 5 wait for a gate trigger */
	}
	if (idx == 0) {
		if (c->mode == 0)
			line_set(p, 0);
		ch0_update(p, now);
	}
}

/* Mode 0: writing the first byte of a two-byte count stops counting. */
static void stop_counting(struct pit *p, unsigned idx, uint64_t now)
{
	struct pit_channel *c = &p->ch[idx];

	c->idle_value = value(c, now);
	c->counting = false;
	if (idx == 0) {
		line_set(p, 0);
		ch0_update(p, now);
	}
}

static void write_counter(struct pit *p, unsigned idx, uint8_t b, uint64_t now)
{
	struct pit_channel *c = &p->ch[idx];

	switch (c->rw) {
	case 1:
		load(p, idx, b, now);
		break;
	case 2:
		load(p, idx, (uint16_t)(b << 8), now);
		break;
	default:
		if (!c->write_msb_next) {
			c->write_lsb = b;
			c->write_msb_next = true;
			if (c->mode == 0)
				stop_counting(p, idx, now);
		} else {
			c->write_msb_next = false;
			load(p, idx, (uint16_t)(c->write_lsb | b << 8), now);
		}
	}
}

static uint8_t read_counter(struct pit_channel *c, uint64_t now)
{
	uint16_t v;

	if (c->status_latched) {
		c->status_latched = false;
		return c->status;
	}
	switch (c->latch_rw) {
	case 1:
		c->latch_rw = 0;
		return c->latched & 0xff;
	case 2:
		c->latch_rw = 0;
		return c->latched >> 8;
	case 3:
		c->latch_rw = 2;
		return c->latched & 0xff;
	}
	v = value(c, now);
	if (c->rw == 1)
		return v & 0xff;
	if (c->rw == 2)
		return v >> 8;
	if (c->read_msb_next) {
		c->read_msb_next = false;
		return v >> 8;
	}
	c->read_msb_next = true;
	return v & 0xff;
}

/* Only channel 2's gate is wired (port 0x61 bit 0); 0 and 1 are tied high. */
static void set_gate2(struct pit *p, bool gate, uint64_t now)
{
	struct pit_channel *c = &p->ch[2];

	if (c->gate == gate)
		return;
	c->gate = gate;
	switch (c->mode) {
	case 0:
	case 4:
		if (!c->counting)
			break;
		if (!gate) {
			c->paused = true;
			c->pause_ns = now;
		} else if (c->paused) {
			c->start_ns += now - c->pause_ns;
			c->paused = false;
		}
		break;
	case 2:
	case 3:
		if (!gate && c->counting && !c->paused) {
			c->paused = true;
			c->pause_ns = now;
			c->reload_pending = false;
		} else if (gate && c->loaded) {
			start(c, now);
		}
		break;
	default:
		if (gate && c->loaded)
			start(c, now);
	}
}

static uint8_t port61_read(struct pit *p, uint64_t now)
{
	/* Delay loops wait for bit 4 to change: let every read see it move. */
	p->refresh = !p->refresh;
	return (uint8_t)((p->port61 & 0x0f) | p->refresh << 4 |
			 out(&p->ch[2], now) << 5);
}

uint8_t pit_inb(struct pit *p, uint16_t port)
{
	uint8_t v = 0xff;
	uint64_t now;

	pthread_mutex_lock(&p->lock);
	now = timer_queue_now(p->q);
	sync_all(p, now);
	if (port >= PIT_PORT_BASE && port < PIT_PORT_BASE + 3)
		v = read_counter(&p->ch[port - PIT_PORT_BASE], now);
	else if (port == PIT_PORT_61)
		v = port61_read(p, now);
	pthread_mutex_unlock(&p->lock);
	return v;
}

void pit_outb(struct pit *p, uint16_t port, uint8_t val)
{
	uint64_t now;

	pthread_mutex_lock(&p->lock);
	now = timer_queue_now(p->q);
	sync_all(p, now);
	if (port >= PIT_PORT_BASE && port < PIT_PORT_BASE + 3) {
		write_counter(p, port - PIT_PORT_BASE, val, now);
	} else if (port == PIT_PORT_BASE + 3) {
		write_control(p, val, now);
	} else if (port == PIT_PORT_61) {
		p->port61 = val & 0x0f;
		set_gate2(p, val & 1, now);
	}
	pthread_mutex_unlock(&p->lock);
}

static void pit_timer_cb(void *opaque, uint64_t now_ns)
{
	struct pit *p = opaque;

	(void)now_ns;
	pthread_mutex_lock(&p->lock);
	/* Re-read under the lock: a vCPU may have moved the state past now_ns. */
	ch0_update(p, timer_queue_now(p->q));
	pthread_mutex_unlock(&p->lock);
}

static void reset_channel(struct pit_channel *c, bool gate)
{
	memset(c, 0, sizeof(*c));
	c->rw = 3;
	c->gate = gate;
	c->cr = c->n = 65536;
}

int pit_init(struct pit *p, struct timer_queue *q, const struct irq_sink *irq)
{
	int err;

	memset(p, 0, sizeof(*p));
	err = pthread_mutex_init(&p->lock, NULL);
	if (err)
		return -err;
	p->q = q;
	if (irq)
		p->irq = *irq;
	vtimer_init(&p->timer, q, pit_timer_cb, p);
	for (int i = 0; i < 3; i++)
		reset_channel(&p->ch[i], i != 2);
	return 0;
}

void pit_destroy(struct pit *p)
{
	vtimer_del(&p->timer);
	pthread_mutex_destroy(&p->lock);
}

static void pit_io_read(void *dev, uint64_t off, unsigned len, uint64_t *data)
{
	struct pit *p = dev;
	uint64_t v = 0;

	/* Wider accesses read consecutive ports, as on the ISA bus. */
	for (unsigned i = 0; i < len && i < 8; i++)
		v |= (uint64_t)pit_inb(p, (uint16_t)(PIT_PORT_BASE + off + i)) << (8 * i);
	*data = v;
}

static void pit_io_write(void *dev, uint64_t off, unsigned len, uint64_t data)
{
	for (unsigned i = 0; i < len && i < 8; i++)
		pit_outb(dev, (uint16_t)(PIT_PORT_BASE + off + i), (uint8_t)(data >> (8 * i)));
}

static void port61_io_read(void *dev, uint64_t off, unsigned len, uint64_t *data)
{
	*data = pit_inb(dev, PIT_PORT_61) | (~0ULL << 8);
}

static void port61_io_write(void *dev, uint64_t off, unsigned len, uint64_t data)
{
	pit_outb(dev, PIT_PORT_61, (uint8_t)data);
}

int pit_register(struct pit *p, struct io_bus *bus)
{
	struct io_range pit = {
		.space = IO_SPACE_PIO, .base = PIT_PORT_BASE, .size = 4,
		.read = pit_io_read, .write = pit_io_write, .dev = p, .name = "pit",
	};
	struct io_range p61 = {
		.space = IO_SPACE_PIO, .base = PIT_PORT_61, .size = 1,
		.read = port61_io_read, .write = port61_io_write, .dev = p,
		.name = "port61",
	};
	int err = io_bus_register(bus, &pit);

	return err ? err : io_bus_register(bus, &p61);
}

void pit_save(struct pit *p, struct pit_state *st)
{
	uint64_t now;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&p->lock);
	now = timer_queue_now(p->q);
	sync_all(p, now);
	st->version = PIT_STATE_VERSION;
	for (int i = 0; i < 3; i++) {
		st->ch[i] = p->ch[i];
		st->ch[i].start_ns = now - p->ch[i].start_ns;
		st->ch[i].pause_ns = now - p->ch[i].pause_ns;
	}
	st->port61 = p->port61;
	st->refresh = p->refresh;
	st->irq_level = p->irq_level;
	pthread_mutex_unlock(&p->lock);
}

static bool channel_valid(const struct pit_channel *c)
{
	return c->mode <= 5 && c->rw >= 1 && c->rw <= 3 && c->latch_rw <= 3 &&
	       c->cr >= 1 && c->cr <= 65536 && c->n >= 1 && c->n <= 65536;
}

/*
 * Returns -EINVAL for a state this code could not have produced. Times
 * are modular, so an age larger than the new clock's origin still works.
 */
int pit_restore(struct pit *p, const struct pit_state *st)
{
	uint64_t now;

	if (st->version != PIT_STATE_VERSION)
		return -EINVAL;
	for (int i = 0; i < 3; i++)
		if (!channel_valid(&st->ch[i]))
			return -EINVAL;
	pthread_mutex_lock(&p->lock);
	now = timer_queue_now(p->q);
	for (int i = 0; i < 3; i++) {
		p->ch[i] = st->ch[i];
		p->ch[i].start_ns = now - st->ch[i].start_ns;
		p->ch[i].pause_ns = now - st->ch[i].pause_ns;
		p->ch[i].gate = i != 2 || (st->port61 & 1);
	}
	p->port61 = st->port61 & 0x0f;
	p->refresh = st->refresh;
	p->irq_level = st->irq_level ? 1 : 0;
	ch0_update(p, now);
	pthread_mutex_unlock(&p->lock);
	return 0;
}
