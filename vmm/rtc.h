/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_RTC_H
#define GRAPPE_RTC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/io.h"
#include "vmm/irq.h"
#include "vmm/timer.h"

/*
 * MC146818 real-time clock and CMOS RAM at ports 0x70 (index; bit 7, the
 * NMI mask, is ignored) and 0x71 (data).
 *
 * The time is a seconds count plus the position of the 32.768 kHz divider,
 * both derived from the timer queue's clock: registers are computed when
 * read, in the format register B selects (BCD or binary, 12 or 24 hour).
 * Update-ended, alarm and periodic flags are also computed from the clock;
 * the vtimer is armed only when an enabled flag could raise IRQ 8 and the
 * IRQ is not already raised, so a guest that does not read register C
 * costs nothing.
 *
 * The irq sink is called with the RTC lock held: the interrupt routing
 * never calls back into the RTC.
 */
#define RTC_IRQ		8	/* ISA IRQ, passed to set_irq as the gsi */
#define RTC_PORT_BASE	0x70
#define RTC_CMOS_SIZE	128
#define RTC_REG_A	0x0a
#define RTC_REG_B	0x0b
#define RTC_REG_C	0x0c
#define RTC_REG_D	0x0d
#define RTC_CENTURY	0x32	/* point the FADT's CENTURY field here */
#define RTC_STATE_VERSION 1

/* Register bits. */
#define RTC_A_UIP	0x80
#define RTC_B_SET	0x80
#define RTC_B_PIE	0x40
#define RTC_B_AIE	0x20
#define RTC_B_UIE	0x10
#define RTC_B_DM	0x04	/* 1: binary, 0: BCD */
#define RTC_B_24H	0x02
#define RTC_C_IRQF	0x80
#define RTC_C_PF	0x40
#define RTC_C_AF	0x20
#define RTC_C_UF	0x10
#define RTC_D_VRT	0x80

struct rtc_tm {
	int year;	/* e.g. 2024 */
	int mon;	/* 1..12 */
	int mday;	/* 1..31 */
	int hour;	/* 0..23 */
	int min, sec;
	int wday;	/* 1..7, Sunday = 1 */
};

struct rtc {
	pthread_mutex_t lock;
	struct timer_queue *q;
	struct irq_sink irq;
	struct vtimer timer;
	uint8_t cmos[RTC_CMOS_SIZE];	/* RAM, alarms, A-D; not the time */
	uint8_t index;
	/* The divider has run div_ns(now) ns; the time is base_sec + that / 1e9. */
	int64_t base_sec;
	uint64_t q_base;		/* timer-queue time of div_frac */
	uint64_t div_frac;		/* divider ns at q_base */
	bool div_held;			/* register A divider in reset */
	struct rtc_tm set_tm;		/* the time registers while SET = 1 */
	uint64_t last_sec;		/* divider seconds already processed */
	uint64_t last_period;		/* periodic ticks already processed */
	int irq_level;
};

struct rtc_state {
	uint32_t version;
	uint8_t cmos[RTC_CMOS_SIZE];
	uint8_t index;
	bool div_held;
	int64_t sec;		/* wall clock when saved */
	uint64_t frac_ns;	/* divider position in that second */
	struct rtc_tm set_tm;
	int irq_level;
};

/*
 * Starts the clock at the host's CLOCK_REALTIME, in a PC BIOS's format
 * (24 hour, BCD). 'irq' is copied. Returns 0 or a negative errno.
 */
int rtc_init(struct rtc *r, struct timer_queue *q, const struct irq_sink *irq);
/* The queue must not be running the RTC's callback concurrently. */
void rtc_destroy(struct rtc *r);
int rtc_register(struct rtc *r, struct io_bus *bus);

/* Sets / reads the wall clock (seconds since 1970, UTC as the guest sees it). */
void rtc_set_time(struct rtc *r, int64_t epoch_sec);
int64_t rtc_get_time(struct rtc *r);

/*
 * Stores a CMOS RAM byte (0x0e-0x7f except the century at 0x32) and keeps
 * the standard checksum at 0x2e-0x2f over 0x10-0x2d. Returns 0 or -EINVAL.
 */
int rtc_set_cmos(struct rtc *r, unsigned idx, uint8_t val);
uint8_t rtc_get_cmos(struct rtc *r, unsigned idx);
/*
 * Fills the memory size bytes a BIOS reads: 0x15-0x16 base (640 KiB),
 * 0x17-0x18 and 0x30-0x31 extended KiB above 1 MiB, 0x34-0x35 64 KiB
 * blocks above 16 MiB, 0x5b-0x5d 64 KiB blocks above 4 GiB.
 */
void rtc_set_memory_size(struct rtc *r, uint64_t below_4g, uint64_t above_4g);

uint8_t rtc_inb(struct rtc *r, uint16_t port);
void rtc_outb(struct rtc *r, uint16_t port, uint8_t val);

void rtc_save(struct rtc *r, struct rtc_state *st);
int rtc_restore(struct rtc *r, const struct rtc_state *st);

#endif
