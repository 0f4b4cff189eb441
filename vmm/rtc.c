// SPDX-License-Identifier: MIT
/*
 * MC146818 RTC and CMOS RAM (Motorola MC146818A datasheet).
 *
 * Nothing is ticked. The divider position is a function of the timer
 * queue's clock; the time registers are the wall-clock seconds count,
 * formatted when read; the interrupt flags are computed by comparing the
 * divider position with the last one processed. So the guest sees the right
 * registers at any instant and a late host raises each flag once instead
 * of replaying missed seconds.
 *
 * Simplifications: the update is instantaneous (UIP is high only during
 * the 244 us before it, when the datasheet also has it high); an alarm is
 * checked against the latest second only; day-of-week follows the date and
 * daylight-saving (DSE) is ignored.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "vmm/rtc.h"

#define NSEC		1000000000ULL
#define DIV_HZ		32768u
#define UIP_NS		244141ULL	/* 8 divider cycles */
#define SEC_PER_DAY	86400

static uint64_t div_ns(const struct rtc *r, uint64_t now)
{
	if (r->div_held)
		return r->div_frac;
	return r->div_frac + (now - r->q_base);
}

static uint64_t ns_to_div(uint64_t ns)
{
	return (uint64_t)((unsigned __int128)ns * DIV_HZ / NSEC);
}

static uint64_t div_to_ns(uint64_t ticks)
{
	return (uint64_t)(((unsigned __int128)ticks * NSEC + DIV_HZ - 1) / DIV_HZ);
}

/* Periodic interrupt period in divider cycles, from rate select; 0 = off. */
static uint64_t period_ticks(const struct rtc *r)
{
	unsigned rs = r->cmos[RTC_REG_A] & 0x0f;

	if (rs == 0)
		return 0;
	if (rs <= 2)
		return 1u << (rs + 6);
	return 1u << (rs - 1);
}

static uint64_t period_index(const struct rtc *r, uint64_t total)
{
	uint64_t pt = period_ticks(r);

	return pt ? ns_to_div(total) / pt : 0;
}

static bool updating(const struct rtc *r)
{
	return !r->div_held && !(r->cmos[RTC_REG_B] & RTC_B_SET);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (March-based years). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, struct rtc_tm *tm)
{
	int64_t era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	tm->mday = (int)(doy - (153 * mp + 2) / 5 + 1);
	tm->mon = (int)(mp < 10 ? mp + 3 : mp - 9);
	tm->year = (int)(yoe + era * 400 + (tm->mon <= 2));
}

static int64_t floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b < 0);
}

static void sec_to_tm(int64_t sec, struct rtc_tm *tm)
{
	int64_t days = floor_div(sec, SEC_PER_DAY);
	int64_t rem = sec - days * SEC_PER_DAY;

	civil_from_days(days, tm);
	tm->hour = (int)(rem / 3600);
	tm->min = (int)(rem / 60 % 60);
	tm->sec = (int)(rem % 60);
	tm->wday = (int)((days % 7 + 7 + 4) % 7) + 1;	/* 1970-01-01: Thursday */
}

static int clamp(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* Out-of-range fields (a guest can write anything) are clamped. */
static int64_t tm_to_sec(const struct rtc_tm *tm)
{
	int64_t days = days_from_civil(tm->year, clamp(tm->mon, 1, 12),
				       clamp(tm->mday, 1, 31));

	return days * SEC_PER_DAY + clamp(tm->hour, 0, 23) * 3600 +
	       clamp(tm->min, 0, 59) * 60 + clamp(tm->sec, 0, 59);
}

static int64_t now_sec(const struct rtc *r, uint64_t now)
{
	return r->base_sec + (int64_t)(div_ns(r, now) / NSEC);
}

static void current_tm(const struct rtc *r, uint64_t now, struct rtc_tm *tm)
{
	if (r->cmos[RTC_REG_B] & RTC_B_SET)
		*tm = r->set_tm;
	else
		sec_to_tm(now_sec(r, now), tm);
}

static bool binary(const struct rtc *r)
{
	return r->cmos[RTC_REG_B] & RTC_B_DM;
}

static uint8_t encode(const struct rtc *r, int v)
{
	v = clamp(v, 0, binary(r) ? 255 : 99);
	return (uint8_t)(binary(r) ? v : (v / 10) << 4 | v % 10);
}

static int decode(const struct rtc *r, uint8_t b)
{
	return binary(r) ? b : (b >> 4) * 10 + (b & 0x0f);
}

static uint8_t encode_hour(const struct rtc *r, int h)
{
	int h12;

	if (r->cmos[RTC_REG_B] & RTC_B_24H)
		return encode(r, h);
	h12 = h % 12 ? h % 12 : 12;
	return (uint8_t)(encode(r, h12) | (h >= 12 ? 0x80 : 0));
}

static int decode_hour(const struct rtc *r, uint8_t b)
{
	int h;

	if (r->cmos[RTC_REG_B] & RTC_B_24H)
		return decode(r, b);
	h = decode(r, b & 0x7f) % 12;
	return b & 0x80 ? h + 12 : h;
}

static bool alarm_field(uint8_t alarm, uint8_t cur)
{
	return (alarm & 0xc0) == 0xc0 || alarm == cur;
}

static bool alarm_matches(const struct rtc *r, const struct rtc_tm *tm)
{
	return alarm_field(r->cmos[1], encode(r, tm->sec)) &&
	       alarm_field(r->cmos[3], encode(r, tm->min)) &&
	       alarm_field(r->cmos[5], encode_hour(r, tm->hour));
}

static void update_irq(struct rtc *r)
{
	uint8_t *c = &r->cmos[RTC_REG_C];
	int level = (*c & r->cmos[RTC_REG_B] & 0x70) != 0;

	if (level)
		*c |= RTC_C_IRQF;
	else
		*c &= (uint8_t)~RTC_C_IRQF;
	if (level != r->irq_level) {
		r->irq_level = level;
		irq_set(&r->irq, RTC_IRQ, level);
	}
}

/* Raises the flags of the seconds and periods gone by since the last call. */
static void sync(struct rtc *r, uint64_t now)
{
	uint64_t total = div_ns(r, now), s, p;

	if (!r->div_held) {
		s = total / NSEC;
		if (s != r->last_sec) {
			r->last_sec = s;
			if (updating(r)) {
				struct rtc_tm tm;

				r->cmos[RTC_REG_C] |= RTC_C_UF;
				sec_to_tm(now_sec(r, now), &tm);
				if (alarm_matches(r, &tm))
					r->cmos[RTC_REG_C] |= RTC_C_AF;
			}
		}
		p = period_index(r, total);
		if (period_ticks(r) && p != r->last_period) {
			r->last_period = p;
			r->cmos[RTC_REG_C] |= RTC_C_PF;
		}
	}
	update_irq(r);
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/*
 * Arms the vtimer for the next flag that would raise IRQ 8. With the IRQ
 * already raised nothing more can be seen until register C is read, and
 * that read syncs: so no timer runs for a guest that ignores the RTC.
 */
static void arm(struct rtc *r)
{
	uint8_t b = r->cmos[RTC_REG_B];
	uint64_t next = UINT64_MAX, pt = period_ticks(r);

	if (!r->irq_level && !r->div_held) {
		if ((b & RTC_B_PIE) && pt)
			next = div_to_ns((r->last_period + 1) * pt);
		if ((b & (RTC_B_UIE | RTC_B_AIE)) && updating(r))
			next = min_u64(next, (r->last_sec + 1) * NSEC);
	}
	if (next == UINT64_MAX)
		vtimer_del(&r->timer);
	else
		vtimer_mod(&r->timer, r->q_base + (next - r->div_frac));
}

static void start_clock(struct rtc *r, uint64_t now, int64_t sec, uint64_t frac)
{
	r->base_sec = sec;
	r->q_base = now;
	r->div_frac = frac;
	r->last_sec = frac / NSEC;
	r->last_period = period_index(r, frac);
}

static void set_wall(struct rtc *r, uint64_t now, int64_t sec)
{
	r->base_sec = sec - (int64_t)(div_ns(r, now) / NSEC);
}

static uint8_t read_time_reg(struct rtc *r, unsigned idx, uint64_t now)
{
	struct rtc_tm tm;

	current_tm(r, now, &tm);
	switch (idx) {
	case 0x00:
		return encode(r, tm.sec);
	case 0x02:
		return encode(r, tm.min);
	case 0x04:
		return encode_hour(r, tm.hour);
	case 0x06:
		return encode(r, tm.wday);
	case 0x07:
		return encode(r, tm.mday);
	case 0x08:
		return encode(r, tm.mon);
	case 0x09:
		return encode(r, tm.year % 100);
	default:
		return encode(r, tm.year / 100);
	}
}

static bool is_time_reg(unsigned idx)
{
	return idx == 0 || idx == 2 || idx == 4 || (idx >= 6 && idx <= 9) ||
	       idx == RTC_CENTURY;
}

static uint8_t read_reg(struct rtc *r, unsigned idx, uint64_t now)
{
	uint8_t v;

	if (is_time_reg(idx))
		return read_time_reg(r, idx, now);
	switch (idx) {
	case RTC_REG_A:
		v = r->cmos[RTC_REG_A];
		if (updating(r) && div_ns(r, now) % NSEC >= NSEC - UIP_NS)
			v |= RTC_A_UIP;
		return v;
	case RTC_REG_C:
		/* Reading C acknowledges: flags clear and IRQ 8 drops. */
		v = r->cmos[RTC_REG_C];
		r->cmos[RTC_REG_C] = 0;
		update_irq(r);
		return v;
	case RTC_REG_D:
		return RTC_D_VRT;
	default:
		return r->cmos[idx];
	}
}

static void write_time_reg(struct rtc *r, unsigned idx, uint8_t val, uint64_t now)
{
	struct rtc_tm tm;
	int v = decode(r, val);

	current_tm(r, now, &tm);
	switch (idx) {
	case 0x00:
		tm.sec = v;
		break;
	case 0x02:
		tm.min = v;
		break;
	case 0x04:
		tm.hour = decode_hour(r, val);
		break;
	case 0x06:
		tm.wday = v;
		break;
	case 0x07:
		tm.mday = v;
		break;
	case 0x08:
		tm.mon = v;
		break;
	case 0x09:
		tm.year = tm.year / 100 * 100 + v % 100;
		break;
	default:
		tm.year = v * 100 + tm.year % 100;
	}
	if (r->cmos[RTC_REG_B] & RTC_B_SET)
		r->set_tm = tm;
	else
		set_wall(r, now, tm_to_sec(&tm));	/* takes effect at once */
}

static void write_reg_a(struct rtc *r, uint8_t val, uint64_t now)
{
	bool held = ((val >> 4) & 7) >= 6;

	if (held && !r->div_held) {
		r->div_frac = div_ns(r, now);
		r->div_held = true;
	}
	r->cmos[RTC_REG_A] = val & 0x7f;
	if (!held && r->div_held) {
		int64_t sec = now_sec(r, now);

		/* Out of divider reset, the first update is 500 ms later. */
		r->div_held = false;
		start_clock(r, now, sec, NSEC / 2);
	}
	/* A new rate starts counting periods from here. */
	r->last_period = period_index(r, div_ns(r, now));
}

static void write_reg_b(struct rtc *r, uint8_t val, uint64_t now)
{
	uint8_t old = r->cmos[RTC_REG_B];

	if ((val & RTC_B_SET) && !(old & RTC_B_SET)) {
		sec_to_tm(now_sec(r, now), &r->set_tm);
		val &= (uint8_t)~RTC_B_UIE;
	}
	r->cmos[RTC_REG_B] = val;
	if (!(val & RTC_B_SET) && (old & RTC_B_SET))
		set_wall(r, now, tm_to_sec(&r->set_tm));
}

static void write_reg(struct rtc *r, unsigned idx, uint8_t val, uint64_t now)
{
	if (is_time_reg(idx))
		write_time_reg(r, idx, val, now);
	else if (idx == RTC_REG_A)
		write_reg_a(r, val, now);
	else if (idx == RTC_REG_B)
		write_reg_b(r, val, now);
	else if (idx != RTC_REG_C && idx != RTC_REG_D)
		r->cmos[idx] = val;
	update_irq(r);
}

uint8_t rtc_inb(struct rtc *r, uint16_t port)
{
	uint8_t v = 0xff;
	uint64_t now;

	if (port != RTC_PORT_BASE + 1)
		return v;	/* the index register is write-only */
	pthread_mutex_lock(&r->lock);
	now = timer_queue_now(r->q);
	sync(r, now);
	v = read_reg(r, r->index, now);
	arm(r);
	pthread_mutex_unlock(&r->lock);
	return v;
}

void rtc_outb(struct rtc *r, uint16_t port, uint8_t val)
{
	uint64_t now;

	pthread_mutex_lock(&r->lock);
	if (port == RTC_PORT_BASE) {
		r->index = val & 0x7f;
	} else if (port == RTC_PORT_BASE + 1) {
		now = timer_queue_now(r->q);
		sync(r, now);
		write_reg(r, r->index, val, now);
		arm(r);
	}
	pthread_mutex_unlock(&r->lock);
}

static void rtc_timer_cb(void *opaque, uint64_t now_ns)
{
	struct rtc *r = opaque;

	(void)now_ns;
	pthread_mutex_lock(&r->lock);
	sync(r, timer_queue_now(r->q));
	arm(r);
	pthread_mutex_unlock(&r->lock);
}

int rtc_init(struct rtc *r, struct timer_queue *q, const struct irq_sink *irq)
{
	struct timespec ts;
	int err;

	memset(r, 0, sizeof(*r));
	err = pthread_mutex_init(&r->lock, NULL);
	if (err)
		return -err;
	r->q = q;
	if (irq)
		r->irq = *irq;
	vtimer_init(&r->timer, q, rtc_timer_cb, r);
	r->cmos[RTC_REG_A] = 0x26;	/* 32.768 kHz divider, 1024 Hz rate */
	r->cmos[RTC_REG_B] = RTC_B_24H;
	clock_gettime(CLOCK_REALTIME, &ts);
	/* Keep the host's sub-second phase: guest seconds tick with the host's. */
	start_clock(r, timer_queue_now(q), ts.tv_sec, (uint64_t)ts.tv_nsec);
	return 0;
}

void rtc_destroy(struct rtc *r)
{
	vtimer_del(&r->timer);
	pthread_mutex_destroy(&r->lock);
}

void rtc_set_time(struct rtc *r, int64_t epoch_sec)
{
	pthread_mutex_lock(&r->lock);
	start_clock(r, timer_queue_now(r->q), epoch_sec, 0);
	arm(r);
	pthread_mutex_unlock(&r->lock);
}

int64_t rtc_get_time(struct rtc *r)
{
	int64_t sec;

	pthread_mutex_lock(&r->lock);
	sec = now_sec(r, timer_queue_now(r->q));
	pthread_mutex_unlock(&r->lock);
	return sec;
}

static void checksum(struct rtc *r)
{
	unsigned sum = 0;

	for (unsigned i = 0x10; i <= 0x2d; i++)
		sum += r->cmos[i];
	r->cmos[0x2e] = (uint8_t)(sum >> 8);
	r->cmos[0x2f] = (uint8_t)sum;
}

static bool ram_byte(unsigned idx)
{
	return idx > RTC_REG_D && idx < RTC_CMOS_SIZE && idx != RTC_CENTURY;
}

int rtc_set_cmos(struct rtc *r, unsigned idx, uint8_t val)
{
	if (!ram_byte(idx))
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	r->cmos[idx] = val;
	if (idx >= 0x10 && idx <= 0x2d)
		checksum(r);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

uint8_t rtc_get_cmos(struct rtc *r, unsigned idx)
{
	uint8_t v = 0xff;

	if (idx >= RTC_CMOS_SIZE)
		return v;
	pthread_mutex_lock(&r->lock);
	v = r->cmos[idx];
	pthread_mutex_unlock(&r->lock);
	return v;
}

static void set_word(struct rtc *r, unsigned idx, uint64_t v, uint64_t max)
{
	v = v > max ? max : v;
	r->cmos[idx] = (uint8_t)v;
	r->cmos[idx + 1] = (uint8_t)(v >> 8);
	if (max > 0xffff)
		r->cmos[idx + 2] = (uint8_t)(v >> 16);
}

void rtc_set_memory_size(struct rtc *r, uint64_t below_4g, uint64_t above_4g)
{
	const uint64_t mib = 1ULL << 20;
	uint64_t ext_kib = below_4g > mib ? (below_4g - mib) >> 10 : 0;
	uint64_t ext16 = below_4g > 16 * mib ? (below_4g - 16 * mib) >> 16 : 0;

	pthread_mutex_lock(&r->lock);
	set_word(r, 0x15, 640, 0xffff);
	set_word(r, 0x17, ext_kib, 0xffff);
	set_word(r, 0x30, ext_kib, 0xffff);
	set_word(r, 0x34, ext16, 0xffff);
	set_word(r, 0x5b, above_4g >> 16, 0xffffff);
	checksum(r);
	pthread_mutex_unlock(&r->lock);
}

static void rtc_io_read(void *dev, uint64_t off, unsigned len, uint64_t *data)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < len && i < 8; i++)
		v |= (uint64_t)rtc_inb(dev, (uint16_t)(RTC_PORT_BASE + off + i)) << (8 * i);
	*data = v;
}

static void rtc_io_write(void *dev, uint64_t off, unsigned len, uint64_t data)
{
	for (unsigned i = 0; i < len && i < 8; i++)
		rtc_outb(dev, (uint16_t)(RTC_PORT_BASE + off + i), (uint8_t)(data >> (8 * i)));
}

int rtc_register(struct rtc *r, struct io_bus *bus)
{
	struct io_range range = {
		.space = IO_SPACE_PIO, .base = RTC_PORT_BASE, .size = 2,
		.read = rtc_io_read, .write = rtc_io_write, .dev = r, .name = "rtc",
	};

	return io_bus_register(bus, &range);
}

void rtc_save(struct rtc *r, struct rtc_state *st)
{
	uint64_t now, total;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&r->lock);
	now = timer_queue_now(r->q);
	sync(r, now);
	total = div_ns(r, now);
	st->version = RTC_STATE_VERSION;
	memcpy(st->cmos, r->cmos, sizeof(st->cmos));
	st->index = r->index;
	st->div_held = r->div_held;
	st->sec = now_sec(r, now);
	st->frac_ns = total % NSEC;
	st->set_tm = r->set_tm;
	st->irq_level = r->irq_level;
	pthread_mutex_unlock(&r->lock);
}

int rtc_restore(struct rtc *r, const struct rtc_state *st)
{
	if (st->version != RTC_STATE_VERSION || st->frac_ns >= NSEC ||
	    st->index >= RTC_CMOS_SIZE)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	memcpy(r->cmos, st->cmos, sizeof(r->cmos));
	r->index = st->index;
	r->div_held = st->div_held;
	r->set_tm = st->set_tm;
	r->irq_level = st->irq_level ? 1 : 0;
	start_clock(r, timer_queue_now(r->q), st->sec, st->frac_ns);
	update_irq(r);
	arm(r);
	pthread_mutex_unlock(&r->lock);
	return 0;
}
