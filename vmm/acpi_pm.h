/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_ACPI_PM_H
#define GRAPPE_ACPI_PM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/acpi.h"
#include "vmm/io.h"
#include "vmm/irq.h"
#include "vmm/timer.h"

/*
 * ACPI fixed hardware, as the FADT describes it (vmm/acpi.h):
 *
 *   ACPI_PM_BASE + 0  PM1a_STS  16 bits, write 1 to clear
 *                + 2  PM1a_EN   16 bits
 *                + 4  PM1a_CNT  16 bits
 *                + 8  PM_TMR    32 bits, 3.579545 MHz, read-only
 *   ACPI_RESET_PORT   reset control register (one byte)
 *
 * The FADT has SMI_CMD = 0, so the machine is always in ACPI mode and
 * SCI_EN reads 1. The SCI is a level on ACPI_SCI_IRQ, asserted while
 * (STS & EN) has a bit set; it is driven with the device lock held, so the
 * irq sink must not call back into this device. 'poweroff' and 'reset' run
 * without the lock, on the vCPU thread that made the access: they should
 * only request the action from the machine, not perform it inline.
 */

#define ACPI_PM_LEN 12
#define PM_TMR_FREQ 3579545ULL

/* PM1 register bits (ACPI 6.x, 4.8.3). PM1_EN mirrors PM1_STS's layout. */
#define PM1_STS_TMR     0x0001
#define PM1_STS_GBL     0x0020
#define PM1_STS_PWRBTN  0x0100
#define PM1_STS_SLPBTN  0x0200
#define PM1_STS_RTC     0x0400
#define PM1_STS_WAK     0x8000
#define PM1_EN_TMR      PM1_STS_TMR
#define PM1_EN_GBL      PM1_STS_GBL
#define PM1_EN_PWRBTN   PM1_STS_PWRBTN
#define PM1_EN_SLPBTN   PM1_STS_SLPBTN
#define PM1_EN_RTC      PM1_STS_RTC
#define PM1_CNT_SCI_EN  0x0001   /* reads 1: no SMI_CMD, always in ACPI mode */
#define PM1_CNT_BM_RLD  0x0002
#define PM1_CNT_GBL_RLS 0x0004   /* write-only */
#define PM1_CNT_SLP_SHIFT 10
#define PM1_CNT_SLP_TYP (7u << PM1_CNT_SLP_SHIFT)
#define PM1_CNT_SLP_EN  0x2000   /* write-only: enter SLP_TYP */

/* Reset control register bits (0xCF9). */
#define RCR_SYS_RST  0x02
#define RCR_RST_CPU  0x04
#define RCR_FULL_RST 0x08

struct acpi_pm_ops {
	void (*poweroff)(void *ctx);
	void (*reset)(void *ctx);
	void *ctx;
};

struct acpi_pm {
	pthread_mutex_t lock;
	struct timer_queue *tq;
	const struct irq_sink *irq;
	unsigned gsi;
	struct acpi_pm_ops ops;   /* a copy: the caller's may be on its stack */

	uint16_t sts, en, cnt;
	uint8_t rcr;
	int sci_level;
	uint64_t tmr_origin_ns;  /* queue time at which PM_TMR read 0 */
	uint64_t tmr_half;       /* PM timer ticks >> 31 when TMR_STS was last updated */
	struct vtimer tmr_timer; /* armed for the next bit-31 toggle while TMR_EN */
};

void acpi_pm_init(struct acpi_pm *pm, struct timer_queue *tq, const struct irq_sink *irq,
		  const struct acpi_pm_ops *ops);
void acpi_pm_destroy(struct acpi_pm *pm);
/*
 * Registers the PM1/PM timer block at ACPI_PM_BASE and the one-byte reset
 * control register at ACPI_RESET_PORT. 0xCF9 sits inside the PCI
 * configuration window: the PCI host must leave it free by registering
 * CONFIG_ADDRESS as [0xCF8, 1 byte) (the bus routes a dword access to the
 * range holding its first byte) and CONFIG_DATA as [0xCFC, 4 bytes).
 * A PCI host that insists on owning 0xCF8-0xCFF can instead use
 * acpi_pm_register_block() and forward byte accesses at 0xCF9 to
 * acpi_pm_rcr_read()/acpi_pm_rcr_write().
 */
int acpi_pm_register(struct acpi_pm *pm, struct io_bus *bus);
int acpi_pm_register_block(struct acpi_pm *pm, struct io_bus *bus);
uint8_t acpi_pm_rcr_read(struct acpi_pm *pm);
void acpi_pm_rcr_write(struct acpi_pm *pm, uint8_t val);

/* Presses the power button: PWRBTN_STS, and an SCI if the OS enabled it. */
void acpi_pm_power_button(struct acpi_pm *pm);
/* The PM timer's current count. */
uint32_t acpi_pm_timer(struct acpi_pm *pm);

void acpi_pm_io_read(void *dev, uint64_t off, unsigned len, uint64_t *data);
void acpi_pm_io_write(void *dev, uint64_t off, unsigned len, uint64_t data);

#endif
