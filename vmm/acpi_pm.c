// SPDX-License-Identifier: MIT
/*
 * ACPI PM1 event/control registers, PM timer and reset control register.
 *
 * The PM timer is not a counter that is incremented: its value is a pure
 * function of the timer queue's clock, so reading it costs no timer and it
 * stays exact however long the guest leaves it alone. TMR_STS (bit 31 of the
 * count toggled) is brought up to date lazily whenever the guest looks at
 * the registers, and by a vtimer only while TMR_EN asks for an SCI.
 */
#include <string.h>

#include "vmm/acpi_pm.h"

#define NS_PER_SEC 1000000000ULL

#define PM_OFF_STS 0
#define PM_OFF_EN  2
#define PM_OFF_CNT 4
#define PM_OFF_TMR 8

#define PM1_EN_MASK (PM1_EN_TMR | PM1_EN_GBL | PM1_EN_PWRBTN | \
		     PM1_EN_SLPBTN | PM1_EN_RTC)
/* Events that can raise the SCI here; the others never get a status bit. */
#define PM1_SCI_EVENTS (PM1_STS_TMR | PM1_STS_PWRBTN)
#define PM1_CNT_KEEP (PM1_CNT_BM_RLD | PM1_CNT_SLP_TYP)

/* 64-bit tick count since power-on; 128-bit arithmetic avoids overflow. */
static uint64_t pm_ticks(const struct acpi_pm *pm, uint64_t now)
{
	uint64_t ns = now > pm->tmr_origin_ns ? now - pm->tmr_origin_ns : 0;

	return (uint64_t)((unsigned __int128)ns * PM_TMR_FREQ / NS_PER_SEC);
}

/* First queue time at which the count reaches 'ticks'. */
static uint64_t pm_ticks_to_time(const struct acpi_pm *pm, uint64_t ticks)
{
	unsigned __int128 ns = (unsigned __int128)ticks * NS_PER_SEC;

	return pm->tmr_origin_ns + (uint64_t)((ns + PM_TMR_FREQ - 1) / PM_TMR_FREQ);
}

static void sync_tmr_sts(struct acpi_pm *pm)
{
	uint64_t half = pm_ticks(pm, timer_queue_now(pm->tq)) >> 31;

	if (half != pm->tmr_half) {
		pm->tmr_half = half;
		pm->sts |= PM1_STS_TMR;
	}
}

static void update_sci(struct acpi_pm *pm)
{
	int level = !!(pm->sts & pm->en & PM1_SCI_EVENTS);

	if (level != pm->sci_level) {
		pm->sci_level = level;
		irq_set(pm->irq, pm->gsi, level);
	}
}

static void arm_tmr(struct acpi_pm *pm)
{
	if (pm->en & PM1_EN_TMR)
		vtimer_mod(&pm->tmr_timer, pm_ticks_to_time(pm, (pm->tmr_half + 1) << 31));
	else
		vtimer_del(&pm->tmr_timer);
}

static void tmr_fire(void *opaque, uint64_t now)
{
	struct acpi_pm *pm = opaque;

	pthread_mutex_lock(&pm->lock);
	sync_tmr_sts(pm);
	update_sci(pm);
	arm_tmr(pm);
	pthread_mutex_unlock(&pm->lock);
}

void acpi_pm_init(struct acpi_pm *pm, struct timer_queue *tq, const struct irq_sink *irq,
		  const struct acpi_pm_ops *ops)
{
	memset(pm, 0, sizeof(*pm));
	pthread_mutex_init(&pm->lock, NULL);
	pm->tq = tq;
	pm->irq = irq;
	pm->gsi = ACPI_SCI_IRQ;
	if (ops)
		pm->ops = *ops;
	pm->tmr_origin_ns = timer_queue_now(tq);
	vtimer_init(&pm->tmr_timer, tq, tmr_fire, pm);
}

void acpi_pm_destroy(struct acpi_pm *pm)
{
	vtimer_del(&pm->tmr_timer);
	pthread_mutex_destroy(&pm->lock);
}

uint32_t acpi_pm_timer(struct acpi_pm *pm)
{
	return (uint32_t)pm_ticks(pm, timer_queue_now(pm->tq));
}

void acpi_pm_power_button(struct acpi_pm *pm)
{
	pthread_mutex_lock(&pm->lock);
	pm->sts |= PM1_STS_PWRBTN;
	update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

void acpi_pm_io_read(void *dev, uint64_t off, unsigned len, uint64_t *data)
{
	struct acpi_pm *pm = dev;
	uint8_t regs[ACPI_PM_LEN] = { 0 };
	uint16_t cnt;
	uint32_t tmr;

	pthread_mutex_lock(&pm->lock);
	sync_tmr_sts(pm);
	update_sci(pm);
	cnt = pm->cnt | PM1_CNT_SCI_EN;
	memcpy(regs + PM_OFF_STS, &pm->sts, 2);
	memcpy(regs + PM_OFF_EN, &pm->en, 2);
	pthread_mutex_unlock(&pm->lock);
	memcpy(regs + PM_OFF_CNT, &cnt, 2);
	tmr = acpi_pm_timer(pm);
	memcpy(regs + PM_OFF_TMR, &tmr, 4);

	*data = 0;
	for (unsigned i = 0; i < len && i < 8; i++)
		if (off + i < ACPI_PM_LEN)
			*data |= (uint64_t)regs[off + i] << (8 * i);
}

/*
 * The part of a write of 'len' bytes at 'off' that lands in the register at
 * 'reg' of 'width' bytes: the value and a mask of the bytes written, so that
 * byte, word and dword accesses all behave alike.
 */
static uint32_t reg_slice(uint64_t off, unsigned len, uint64_t data, unsigned reg,
			  unsigned width, uint32_t *val)
{
	uint32_t mask = 0;

	*val = 0;
	for (unsigned i = 0; i < len && i < 8; i++) {
		uint64_t a = off + i;

		if (a < reg || a >= reg + width)
			continue;
		*val |= (uint32_t)((data >> (8 * i)) & 0xff) << (8 * (a - reg));
		mask |= 0xffu << (8 * (a - reg));
	}
	return mask;
}

/* Returns true when the write asked for soft-off. */
static bool write_cnt(struct acpi_pm *pm, uint32_t val, uint32_t mask)
{
	uint16_t cnt = (pm->cnt & ~mask) | (val & mask);

	pm->cnt = cnt & PM1_CNT_KEEP;
	if (!(val & mask & PM1_CNT_SLP_EN))
		return false;
	/* Only \_S5 is offered to the guest; other sleep types do nothing. */
	return ((cnt & PM1_CNT_SLP_TYP) >> PM1_CNT_SLP_SHIFT) == ACPI_S5_SLP_TYP;
}

void acpi_pm_io_write(void *dev, uint64_t off, unsigned len, uint64_t data)
{
	struct acpi_pm *pm = dev;
	uint32_t val, mask;
	bool poweroff = false;

	pthread_mutex_lock(&pm->lock);
	/* A toggle that already happened is cleared by the write below. */
	sync_tmr_sts(pm);
	mask = reg_slice(off, len, data, PM_OFF_STS, 2, &val);
	pm->sts &= ~(val & mask);
	mask = reg_slice(off, len, data, PM_OFF_EN, 2, &val);
	if (mask) {
		pm->en = ((pm->en & ~mask) | (val & mask)) & PM1_EN_MASK;
		arm_tmr(pm);
	}
	mask = reg_slice(off, len, data, PM_OFF_CNT, 2, &val);
	if (mask)
		poweroff = write_cnt(pm, val, mask);
	update_sci(pm);
	pthread_mutex_unlock(&pm->lock);

	if (poweroff && pm->ops.poweroff)
		pm->ops.poweroff(pm->ops.ctx);
}

uint8_t acpi_pm_rcr_read(struct acpi_pm *pm)
{
	uint8_t v;

	pthread_mutex_lock(&pm->lock);
	v = pm->rcr;
	pthread_mutex_unlock(&pm->lock);
	return v;
}

/*
 * Linux writes SYS_RST, then SYS_RST|RST_CPU: setting RST_CPU starts the
 * reset. Hard and soft resets both restart the whole machine here, which is
 * what a guest asking for either expects.
 */
void acpi_pm_rcr_write(struct acpi_pm *pm, uint8_t val)
{
	bool reset;

	pthread_mutex_lock(&pm->lock);
	reset = val & RCR_RST_CPU;
	pm->rcr = val & (RCR_SYS_RST | RCR_FULL_RST);
	pthread_mutex_unlock(&pm->lock);
	if (reset && pm->ops.reset)
		pm->ops.reset(pm->ops.ctx);
}

static void rcr_io_read(void *dev, uint64_t off, unsigned len, uint64_t *data)
{
	*data = acpi_pm_rcr_read(dev);
}

static void rcr_io_write(void *dev, uint64_t off, unsigned len, uint64_t data)
{
	acpi_pm_rcr_write(dev, data & 0xff);
}

int acpi_pm_register_block(struct acpi_pm *pm, struct io_bus *bus)
{
	struct io_range r = {
		.space = IO_SPACE_PIO,
		.base = ACPI_PM_BASE,
		.size = ACPI_PM_LEN,
		.read = acpi_pm_io_read,
		.write = acpi_pm_io_write,
		.dev = pm,
		.name = "acpi-pm",
	};

	return io_bus_register(bus, &r);
}

int acpi_pm_register(struct acpi_pm *pm, struct io_bus *bus)
{
	int err = acpi_pm_register_block(pm, bus);
	struct io_range r = {
		.space = IO_SPACE_PIO,
		.base = ACPI_RESET_PORT,
		.size = 1,
		.read = rcr_io_read,
		.write = rcr_io_write,
		.dev = pm,
		.name = "reset-control",
	};

	return err ? err : io_bus_register(bus, &r);
}
