// SPDX-License-Identifier: MIT
/*
 * Local APIC (xAPIC mode) in userspace. See lapic.h for why it is not
 * KVM's. Register behaviour follows the Intel SDM vol. 3, chapter 11.
 */
#include <string.h>

#include "vmm/lapic.h"

#define APIC_ID       0x020
#define APIC_VERSION  0x030
#define APIC_TPR      0x080
#define APIC_APR      0x090
#define APIC_PPR      0x0a0
#define APIC_EOI      0x0b0
#define APIC_RRD      0x0c0
#define APIC_LDR      0x0d0
#define APIC_DFR      0x0e0
#define APIC_SVR      0x0f0
#define APIC_ISR      0x100
#define APIC_TMR      0x180
#define APIC_IRR      0x200
#define APIC_ESR      0x280
#define APIC_LVT_CMCI 0x2f0
#define APIC_ICR_LO   0x300
#define APIC_ICR_HI   0x310
#define APIC_LVT0     0x320   /* timer; LVT registers follow every 0x10 */
#define APIC_TMICT    0x380
#define APIC_TMCCT    0x390
#define APIC_TDCR     0x3e0

#define LVT_MASKED      (1u << 16)
#define LVT_TIMER_PERIODIC (1u << 17)
#define LVT_LEVEL       (1u << 15)
#define SVR_ENABLED     (1u << 8)
#define ICR_PENDING     (1u << 12)

static bool test_vec(const uint32_t *bm, int v)
{
	return bm[v >> 5] & (1u << (v & 31));
}

static void set_vec(uint32_t *bm, int v)
{
	bm[v >> 5] |= 1u << (v & 31);
}

static void clear_vec(uint32_t *bm, int v)
{
	bm[v >> 5] &= ~(1u << (v & 31));
}

static int highest_vec(const uint32_t *bm)
{
	for (int i = 7; i >= 0; i--)
		if (bm[i])
			return i * 32 + 31 - __builtin_clz(bm[i]);
	return -1;
}

static uint32_t ppr(const struct lapic_state *s)
{
	int isrv = highest_vec(s->isr);
	uint32_t isr_class = isrv < 0 ? 0 : (uint32_t)isrv & 0xf0;

	if ((s->tpr & 0xf0) >= isr_class)
		return s->tpr & 0xff;
	return isr_class;
}

static bool sw_enabled(const struct lapic_state *s)
{
	return s->svr & SVR_ENABLED;
}

static uint32_t timer_divisor(const struct lapic_state *s)
{
	uint32_t v = (s->timer_divide & 3) | ((s->timer_divide >> 1) & 4);

	return v == 7 ? 1 : 2u << v;
}

static uint64_t timer_period_ns(const struct lapic_state *s)
{
	uint64_t ticks = (uint64_t)s->timer_initial * timer_divisor(s);

	return ticks * 1000000000ULL / LAPIC_BUS_FREQ_HZ;
}

static void reset_locked(struct lapic *l, bool init)
{
	struct lapic_state *s = &l->s;
	uint32_t id = s->id;
	uint64_t base = s->apic_base_msr;

	vtimer_del(&l->timer);
	memset(s, 0, sizeof(*s));
	s->id = id;
	s->apic_base_msr = base;
	s->dfr = 0xffffffff;
	s->svr = 0xff;
	for (int i = 0; i < 7; i++)
		s->lvt[i] = LVT_MASKED;
	if (!init)
		s->apic_base_msr = 0xfee00000ULL | (1u << 11) | (l->bsp ? 1u << 8 : 0);
	/* A PC's BIOS leaves LINT0 in virtual-wire (ExtINT) and LINT1 as NMI on the BSP. */
	if (l->bsp && !init) {
		s->lvt[LAPIC_LVT_LINT0] = 7u << 8;
		s->lvt[LAPIC_LVT_LINT1] = 4u << 8;
	}
	s->wait_for_sipi = !l->bsp || init;
}

void lapic_reset(struct lapic *l, bool init)
{
	pthread_mutex_lock(&l->lock);
	reset_locked(l, init);
	pthread_mutex_unlock(&l->lock);
}

static void timer_expired(void *opaque, uint64_t now);

void lapic_init(struct lapic *l, unsigned vcpu, uint8_t apic_id, bool bsp,
		struct timer_queue *tq, const struct lapic_ops *ops)
{
	memset(l, 0, sizeof(*l));
	pthread_mutex_init(&l->lock, NULL);
	l->vcpu = vcpu;
	l->bsp = bsp;
	l->tq = tq;
	l->ops = *ops;
	l->s.id = (uint32_t)apic_id << 24;
	vtimer_init(&l->timer, tq, timer_expired, l);
	reset_locked(l, false);
}

void lapic_destroy(struct lapic *l)
{
	vtimer_del(&l->timer);
	pthread_mutex_destroy(&l->lock);
}

static void kick(struct lapic *l)
{
	if (l->ops.kick)
		l->ops.kick(l->ops.ctx);
}

/* Sets a vector pending. Returns true if the vCPU must be woken. */
static bool set_irr(struct lapic *l, int vector, bool level)
{
	struct lapic_state *s = &l->s;

	if (vector < 16) {
		s->esr |= 1u << 6; /* received illegal vector */
		return false;
	}
	set_vec(s->irr, vector);
	if (level)
		set_vec(s->tmr, vector);
	else
		clear_vec(s->tmr, vector);
	return true;
}

static void timer_expired(void *opaque, uint64_t now)
{
	struct lapic *l = opaque;
	struct lapic_state *s = &l->s;
	uint32_t lvt;
	bool wake = false;

	pthread_mutex_lock(&l->lock);
	if (!s->timer_deadline_ns || now < s->timer_deadline_ns) {
		pthread_mutex_unlock(&l->lock);
		return;
	}
	lvt = s->lvt[LAPIC_LVT_TIMER];
	if (!(lvt & LVT_MASKED) && sw_enabled(s))
		wake = set_irr(l, lvt & 0xff, false);
	l->timer_fired++;
	if ((lvt & LVT_TIMER_PERIODIC) && s->timer_initial) {
		uint64_t period = timer_period_ns(s);

		if (period < 1000)
			period = 1000; /* a guest cannot make us spin */
		/* Stay on the original grid; skip periods the host missed. */
		s->timer_start_ns = s->timer_deadline_ns;
		s->timer_deadline_ns += period;
		if (s->timer_deadline_ns <= now) {
			uint64_t missed = (now - s->timer_deadline_ns) / period + 1;

			s->timer_start_ns += missed * period;
			s->timer_deadline_ns += missed * period;
		}
		vtimer_mod(&l->timer, s->timer_deadline_ns);
	} else {
		s->timer_deadline_ns = 0;
	}
	pthread_mutex_unlock(&l->lock);
	if (wake)
		kick(l);
}

static void timer_load(struct lapic *l, uint32_t count)
{
	struct lapic_state *s = &l->s;
	uint64_t now = timer_queue_now(l->tq);

	s->timer_initial = count;
	if (!count) {
		s->timer_deadline_ns = 0;
		vtimer_del(&l->timer);
		return;
	}
	s->timer_start_ns = now;
	s->timer_deadline_ns = now + timer_period_ns(s);
	vtimer_mod(&l->timer, s->timer_deadline_ns);
}

static uint32_t timer_current(struct lapic *l)
{
	struct lapic_state *s = &l->s;
	uint64_t now, ns_per_tick_x, left;

	if (!s->timer_deadline_ns)
		return 0;
	now = timer_queue_now(l->tq);
	if (now >= s->timer_deadline_ns)
		return (s->lvt[LAPIC_LVT_TIMER] & LVT_TIMER_PERIODIC) ? s->timer_initial : 0;
	left = s->timer_deadline_ns - now;
	/* ticks left = ns left * bus frequency / divisor */
	ns_per_tick_x = (uint64_t)timer_divisor(s);
	return (uint32_t)(left * (LAPIC_BUS_FREQ_HZ / 1000000000ULL) / ns_per_tick_x);
}

static struct apic_msg icr_to_msg(const struct lapic *l)
{
	const struct lapic_state *s = &l->s;

	return (struct apic_msg){
		.vector = s->icr_lo & 0xff,
		.delivery = (s->icr_lo >> 8) & 7,
		.dest_logical = (s->icr_lo >> 11) & 1,
		.level = (s->icr_lo >> 14) & 1,
		.trigger_level = (s->icr_lo >> 15) & 1,
		.shorthand = (s->icr_lo >> 18) & 3,
		.dest = s->icr_hi >> 24,
		.source = (uint16_t)l->vcpu,
	};
}

/* Returns the vector whose EOI must be broadcast to the IOAPIC, or -1. */
static int do_eoi(struct lapic *l)
{
	struct lapic_state *s = &l->s;
	int v = highest_vec(s->isr);

	if (v < 0)
		return -1;
	clear_vec(s->isr, v);
	if (test_vec(s->tmr, v)) {
		clear_vec(s->tmr, v);
		return v;
	}
	return -1;
}

uint32_t lapic_read(struct lapic *l, uint32_t off)
{
	struct lapic_state *s = &l->s;
	uint32_t v = 0;

	off &= 0xff0;
	pthread_mutex_lock(&l->lock);
	switch (off) {
	case APIC_ID: v = s->id; break;
	case APIC_VERSION: v = LAPIC_VERSION; break;
	case APIC_TPR: v = s->tpr; break;
	case APIC_APR: v = 0; break;
	case APIC_PPR: v = ppr(s); break;
	case APIC_LDR: v = s->ldr; break;
	case APIC_DFR: v = s->dfr; break;
	case APIC_SVR: v = s->svr; break;
	case APIC_ESR: v = s->esr; break;
	case APIC_ICR_LO: v = s->icr_lo & ~ICR_PENDING; break;
	case APIC_ICR_HI: v = s->icr_hi; break;
	case APIC_LVT_CMCI: v = s->lvt[LAPIC_LVT_CMCI]; break;
	case APIC_TMICT: v = s->timer_initial; break;
	case APIC_TMCCT: v = timer_current(l); break;
	case APIC_TDCR: v = s->timer_divide; break;
	default:
		if (off >= APIC_ISR && off < APIC_ISR + 0x80)
			v = s->isr[(off - APIC_ISR) >> 4];
		else if (off >= APIC_TMR && off < APIC_TMR + 0x80)
			v = s->tmr[(off - APIC_TMR) >> 4];
		else if (off >= APIC_IRR && off < APIC_IRR + 0x80)
			v = s->irr[(off - APIC_IRR) >> 4];
		else if (off >= APIC_LVT0 && off <= 0x370)
			v = s->lvt[(off - APIC_LVT0) >> 4];
		break;
	}
	pthread_mutex_unlock(&l->lock);
	return v;
}

static const uint32_t lvt_writable[7] = {
	0x000300ff | LVT_MASKED | (1u << 18),	/* timer: vector, mode bits 17-18 */
	0x000107ff, 0x000107ff,			/* thermal, perf */
	0x0001a7ff, 0x0001a7ff,			/* LINT0/1: + polarity, trigger */
	0x000100ff, 0x000107ff,			/* error, CMCI */
};

static void write_lvt(struct lapic *l, unsigned idx, uint32_t val)
{
	struct lapic_state *s = &l->s;
	bool was_periodic = s->lvt[LAPIC_LVT_TIMER] & LVT_TIMER_PERIODIC;

	if (!sw_enabled(s))
		val |= LVT_MASKED;
	s->lvt[idx] = val & lvt_writable[idx];
	/* Switching timer mode stops the count, as on hardware. */
	if (idx == LAPIC_LVT_TIMER &&
	    was_periodic != !!(s->lvt[idx] & LVT_TIMER_PERIODIC)) {
		s->timer_deadline_ns = 0;
		vtimer_del(&l->timer);
	}
}

void lapic_write(struct lapic *l, uint32_t off, uint32_t val)
{
	struct lapic_state *s = &l->s;
	struct apic_msg msg;
	bool send = false, wake = false, addr_changed = false;
	int eoi_vec = -1;

	off &= 0xff0;
	pthread_mutex_lock(&l->lock);
	switch (off) {
	case APIC_ID: s->id = val & 0xff000000; addr_changed = true; break;
	case APIC_TPR: s->tpr = val & 0xff; wake = true; break;
	case APIC_EOI: eoi_vec = do_eoi(l); wake = true; break;
	case APIC_LDR: s->ldr = val & 0xff000000; addr_changed = true; break;
	case APIC_DFR: s->dfr = val | 0x0fffffff; addr_changed = true; break;
	case APIC_SVR:
		s->svr = val & 0x13ff;
		if (!sw_enabled(s))
			for (int i = 0; i < 7; i++)
				s->lvt[i] |= LVT_MASKED;
		wake = true;
		break;
	case APIC_ESR: s->esr = 0; break;
	case APIC_ICR_HI: s->icr_hi = val & 0xff000000; break;
	case APIC_ICR_LO:
		s->icr_lo = val & 0x000ccfff;
		msg = icr_to_msg(l);
		send = true;
		break;
	case APIC_LVT_CMCI: write_lvt(l, LAPIC_LVT_CMCI, val); break;
	case APIC_TMICT:
		if (!(s->lvt[LAPIC_LVT_TIMER] & (1u << 18)))
			timer_load(l, val);
		break;
	case APIC_TDCR: s->timer_divide = val & 0xb; break;
	default:
		if (off >= APIC_LVT0 && off <= 0x370)
			write_lvt(l, (off - APIC_LVT0) >> 4, val);
		break;
	}
	pthread_mutex_unlock(&l->lock);
	if (eoi_vec >= 0 && l->ops.eoi_level)
		l->ops.eoi_level(l->ops.ctx, (uint8_t)eoi_vec);
	if (send && l->ops.send)
		l->ops.send(l->ops.ctx, &msg);
	if (addr_changed && l->ops.addr_changed)
		l->ops.addr_changed(l->ops.ctx);
	if (wake)
		kick(l);
}

bool lapic_match_dest(struct lapic *l, const struct apic_msg *msg)
{
	struct lapic_addr a;

	lapic_get_addr(l, &a);
	return lapic_addr_match(&a, msg);
}

void lapic_accept(struct lapic *l, const struct apic_msg *msg)
{
	struct lapic_state *s = &l->s;
	bool wake = false;

	pthread_mutex_lock(&l->lock);
	switch (msg->delivery) {
	case APIC_DM_FIXED:
	case APIC_DM_LOWEST:
		if (sw_enabled(s))
			wake = set_irr(l, msg->vector, msg->trigger_level);
		break;
	case APIC_DM_NMI:
		s->nmi_pending = true;
		wake = true;
		break;
	case APIC_DM_INIT:
		/* INIT level de-assert is only meaningful to ancient CPUs. */
		if (msg->trigger_level && !msg->level)
			break;
		/* An INIT cancels a start-up not yet taken; SIPIs after it count. */
		s->init_pending = true;
		s->sipi_pending = false;
		s->wait_for_sipi = true;
		wake = true;
		break;
	case APIC_DM_SIPI:
		if (s->wait_for_sipi && !s->sipi_pending) {
			s->sipi_pending = true;
			s->sipi_vector = msg->vector;
			wake = true;
		}
		break;
	case APIC_DM_EXTINT:
		wake = true; /* the vector comes from the 8259 at injection */
		break;
	default:
		break;
	}
	pthread_mutex_unlock(&l->lock);
	if (wake)
		kick(l);
}

static bool extint_ready(struct lapic *l)
{
	uint32_t lint0 = l->s.lvt[LAPIC_LVT_LINT0];

	/* LINT0 in ExtINT mode and unmasked; with the APIC disabled the line goes straight through. */
	if (!(l->s.apic_base_msr & (1u << 11)) || !sw_enabled(&l->s))
		return l->bsp;
	return !(lint0 & LVT_MASKED) && ((lint0 >> 8) & 7) == APIC_DM_EXTINT;
}

int lapic_next_vector(struct lapic *l, bool *extint)
{
	struct lapic_state *s = &l->s;
	bool ext;
	int v;

	*extint = false;
	pthread_mutex_lock(&l->lock);
	ext = extint_ready(l);
	v = highest_vec(s->irr);
	if (v >= 0 && (uint32_t)(v & 0xf0) <= (ppr(s) & 0xf0))
		v = -1;
	pthread_mutex_unlock(&l->lock);
	if (v >= 0)
		return v;
	if (ext && l->ops.extint_pending && l->ops.extint_pending(l->ops.ctx)) {
		*extint = true;
		return l->ops.extint_ack(l->ops.ctx);
	}
	return -1;
}

void lapic_ack(struct lapic *l, int vector)
{
	struct lapic_state *s = &l->s;

	pthread_mutex_lock(&l->lock);
	clear_vec(s->irr, vector);
	set_vec(s->isr, vector);
	pthread_mutex_unlock(&l->lock);
}

bool lapic_has_event(struct lapic *l)
{
	struct lapic_state *s = &l->s;
	bool ev, ext;
	int v;

	pthread_mutex_lock(&l->lock);
	v = highest_vec(s->irr);
	ev = s->nmi_pending || s->init_pending || s->sipi_pending ||
	     (v >= 0 && (uint32_t)(v & 0xf0) > (ppr(s) & 0xf0));
	ext = extint_ready(l);
	pthread_mutex_unlock(&l->lock);
	if (!ev && ext && l->ops.extint_pending)
		ev = l->ops.extint_pending(l->ops.ctx);
	return ev;
}

uint8_t lapic_apic_id(struct lapic *l)
{
	uint8_t id;

	pthread_mutex_lock(&l->lock);
	id = l->s.id >> 24;
	pthread_mutex_unlock(&l->lock);
	return id;
}

void lapic_set_cr8(struct lapic *l, uint64_t cr8)
{
	pthread_mutex_lock(&l->lock);
	l->s.tpr = (uint32_t)(cr8 & 0xf) << 4;
	pthread_mutex_unlock(&l->lock);
}

uint64_t lapic_get_cr8(struct lapic *l)
{
	uint64_t cr8;

	pthread_mutex_lock(&l->lock);
	cr8 = (l->s.tpr >> 4) & 0xf;
	pthread_mutex_unlock(&l->lock);
	return cr8;
}

void lapic_take_events(struct lapic *l, struct lapic_events *ev)
{
	struct lapic_state *s = &l->s;

	pthread_mutex_lock(&l->lock);
	ev->nmi = s->nmi_pending;
	ev->init = s->init_pending;
	ev->sipi = s->sipi_pending ? s->sipi_vector : -1;
	s->nmi_pending = false;
	s->init_pending = false;
	s->sipi_pending = false;
	if (ev->init)
		reset_locked(l, true);
	if (ev->sipi >= 0)
		s->wait_for_sipi = false;
	pthread_mutex_unlock(&l->lock);
}

bool lapic_waiting_for_sipi(struct lapic *l)
{
	bool w;

	pthread_mutex_lock(&l->lock);
	w = l->s.wait_for_sipi;
	pthread_mutex_unlock(&l->lock);
	return w;
}

bool lapic_has_nmi_init(struct lapic *l)
{
	bool ev;

	pthread_mutex_lock(&l->lock);
	ev = l->s.nmi_pending || l->s.init_pending || l->s.sipi_pending;
	pthread_mutex_unlock(&l->lock);
	return ev;
}

void lapic_get_addr(struct lapic *l, struct lapic_addr *a)
{
	pthread_mutex_lock(&l->lock);
	a->apic_id = l->s.id >> 24;
	a->ldr = l->s.ldr;
	a->dfr = l->s.dfr;
	pthread_mutex_unlock(&l->lock);
}

bool lapic_addr_match(const struct lapic_addr *a, const struct apic_msg *msg)
{
	uint8_t ldr = a->ldr >> 24, dest = msg->dest;

	if (!msg->dest_logical)
		return dest == 0xff || dest == a->apic_id;
	if ((a->dfr >> 28) == 0xf)
		return (ldr & dest) != 0;	/* flat model */
	/* cluster model: high nibble cluster (15 = all), low nibble members */
	return ((dest >> 4) == 0xf || (dest >> 4) == (ldr >> 4)) && (dest & ldr & 0xf);
}
