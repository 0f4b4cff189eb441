// SPDX-License-Identifier: MIT
/*
 * 16550A UART.
 *
 * The interrupt identification is recomputed from the state after every
 * access instead of being tracked as events: the 16550's sources are all
 * conditions on its registers (plus the one-shot THRE event, thr_ipending),
 * so deriving IIR keeps the priority order and the line level consistent by
 * construction.
 */
#include <string.h>

#include "vmm/uart.h"

/* What a connected terminal shows when nothing is in loopback. */
#define UART_MODEM_CONNECTED (UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS)

static const uint8_t rx_trigger[4] = { 1, 4, 8, 14 };

static bool fifo_enabled(const struct uart *u)
{
	return u->fcr & UART_FCR_ENABLE;
}

/* Without FIFOs the 16550 behaves as a 16450: one holding register each way. */
static unsigned fifo_capacity(const struct uart *u)
{
	return fifo_enabled(u) ? UART_FIFO_SIZE : 1;
}

static bool fifo_push(struct uart_fifo *f, unsigned cap, uint8_t b)
{
	if (f->count >= cap)
		return false;
	f->buf[(f->head + f->count) % UART_FIFO_SIZE] = b;
	f->count++;
	return true;
}

static uint8_t fifo_pop(struct uart_fifo *f)
{
	uint8_t b = f->buf[f->head];

	f->head = (f->head + 1) % UART_FIFO_SIZE;
	f->count--;
	return b;
}

static void fifo_clear(struct uart_fifo *f)
{
	f->head = 0;
	f->count = 0;
}

static uint8_t uart_iir(const struct uart *u)
{
	uint8_t id = UART_IIR_NO_INT;

	if ((u->ier & UART_IER_RLSI) && (u->lsr & UART_LSR_ERRS))
		id = UART_IIR_RLSI;
	else if ((u->ier & UART_IER_RDI) && u->rx.count)
		/* No real character timer: data below the trigger level is
		 * reported as a timeout at once, which drivers treat as RDA. */
		id = fifo_enabled(u) && u->rx.count < rx_trigger[u->fcr >> 6] ?
			UART_IIR_CTI : UART_IIR_RDI;
	else if ((u->ier & UART_IER_THRI) && u->thr_ipending)
		id = UART_IIR_THRI;
	else if ((u->ier & UART_IER_MSI) && (u->msr & UART_MSR_DELTA))
		id = UART_IIR_MSI;
	return id | (fifo_enabled(u) ? UART_IIR_FIFO : 0);
}

static void update_irq(struct uart *u)
{
	int level = !(uart_iir(u) & UART_IIR_NO_INT);

	if (level != u->irq_level) {
		u->irq_level = level;
		irq_set(u->irq, u->gsi, level);
	}
}

static uint8_t uart_lsr(const struct uart *u)
{
	uint8_t lsr = u->lsr & UART_LSR_ERRS;

	if (u->rx.count)
		lsr |= UART_LSR_DR;
	if (!u->tx.count) {
		lsr |= UART_LSR_THRE;
		if (!u->flushing)
			lsr |= UART_LSR_TEMT;
	}
	return lsr;
}

/* Loopback wires RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD. */
static uint8_t modem_lines(const struct uart *u)
{
	uint8_t m = u->mcr;

	if (!(m & UART_MCR_LOOP))
		return u->modem_in;
	return (m & UART_MCR_RTS ? UART_MSR_CTS : 0) |
	       (m & UART_MCR_DTR ? UART_MSR_DSR : 0) |
	       (m & UART_MCR_OUT1 ? UART_MSR_RI : 0) |
	       (m & UART_MCR_OUT2 ? UART_MSR_DCD : 0);
}

static void update_msr(struct uart *u)
{
	uint8_t old = u->msr & 0xf0, now = modem_lines(u);
	uint8_t delta = u->msr & UART_MSR_DELTA;

	if ((old ^ now) & UART_MSR_CTS)
		delta |= UART_MSR_DCTS;
	if ((old ^ now) & UART_MSR_DSR)
		delta |= UART_MSR_DDSR;
	if ((old & UART_MSR_RI) && !(now & UART_MSR_RI))
		delta |= UART_MSR_TERI;
	if ((old ^ now) & UART_MSR_DCD)
		delta |= UART_MSR_DDCD;
	u->msr = now | delta;
}

/* A character arriving at the receiver: a full FIFO loses it (overrun). */
static void rx_char(struct uart *u, uint8_t b)
{
	if (!fifo_push(&u->rx, fifo_capacity(u), b))
		u->lsr |= UART_LSR_OE;
}

/* True when the host should be told that input fits again. */
static bool take_rx_notify(struct uart *u)
{
	if (!u->rx_starved || u->rx.count >= fifo_capacity(u))
		return false;
	u->rx_starved = false;
	return u->rx_notify != NULL;
}

void uart_init(struct uart *u, uint16_t base, unsigned gsi, const struct irq_sink *irq,
	       uart_out_fn out, void *ctx)
{
	memset(u, 0, sizeof(*u));
	pthread_mutex_init(&u->lock, NULL);
	u->base = base;
	u->gsi = gsi;
	u->irq = irq;
	u->out = out;
	u->out_ctx = ctx;
	u->dll = 12;	/* 9600 baud; firmware reprograms it anyway */
	u->modem_in = UART_MODEM_CONNECTED;
	u->msr = UART_MODEM_CONNECTED;
}

void uart_destroy(struct uart *u)
{
	pthread_mutex_destroy(&u->lock);
}

void uart_set_rx_notify(struct uart *u, void (*fn)(void *ctx), void *ctx)
{
	pthread_mutex_lock(&u->lock);
	u->rx_notify = fn;
	u->rx_notify_ctx = ctx;
	pthread_mutex_unlock(&u->lock);
}

int uart_register(struct uart *u, struct io_bus *bus)
{
	struct io_range r = {
		.space = IO_SPACE_PIO,
		.base = u->base,
		.size = UART_NR_PORTS,
		.read = uart_io_read,
		.write = uart_io_write,
		.dev = u,
		.name = "uart",
	};

	return io_bus_register(bus, &r);
}

size_t uart_rx_space(struct uart *u)
{
	size_t space;

	pthread_mutex_lock(&u->lock);
	space = fifo_capacity(u) - u->rx.count;
	pthread_mutex_unlock(&u->lock);
	return space;
}

size_t uart_receive(struct uart *u, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&u->lock);
	/* In loopback the receiver hears only the transmitter. */
	if (!(u->mcr & UART_MCR_LOOP))
		while (n < len && fifo_push(&u->rx, fifo_capacity(u), buf[n]))
			n++;
	if (n < len)
		u->rx_starved = true;
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
	return n;
}

static uint8_t read_reg(struct uart *u, unsigned reg)
{
	uint8_t v;

	switch (reg) {
	case UART_RBR:
		if (u->lcr & UART_LCR_DLAB)
			return u->dll;
		return u->rx.count ? fifo_pop(&u->rx) : 0;
	case UART_IER:
		return u->lcr & UART_LCR_DLAB ? u->dlm : u->ier;
	case UART_IIR:
		v = uart_iir(u);
		/* Reading IIR is what acknowledges a THRE interrupt. */
		if ((v & 0x0f) == UART_IIR_THRI)
			u->thr_ipending = false;
		return v;
	case UART_LCR:
		return u->lcr;
	case UART_MCR:
		return u->mcr;
	case UART_LSR:
		v = uart_lsr(u);
		u->lsr &= ~UART_LSR_ERRS;
		return v;
	case UART_MSR:
		v = u->msr;
		u->msr &= ~UART_MSR_DELTA;
		return v;
	default:
		return u->scr;
	}
}

void uart_io_read(void *dev, uint64_t off, unsigned len, uint64_t *data)
{
	struct uart *u = dev;
	bool notify;

	pthread_mutex_lock(&u->lock);
	*data = read_reg(u, off & 7);
	update_irq(u);
	notify = take_rx_notify(u);
	pthread_mutex_unlock(&u->lock);
	if (notify)
		u->rx_notify(u->rx_notify_ctx);
}

static void write_ier(struct uart *u, uint8_t v)
{
	uint8_t old = u->ier;

	u->ier = v & 0x0f;
	/*
	 * Enabling ETBEI while THR is empty raises a THRE interrupt at once;
	 * Linux's 8250 driver toggles IER.THRI to provoke exactly this.
	 */
	if ((u->ier & ~old & UART_IER_THRI) && !u->tx.count)
		u->thr_ipending = true;
	else if (!(u->ier & UART_IER_THRI))
		u->thr_ipending = false;
}

static void write_fcr(struct uart *u, uint8_t v)
{
	bool had_tx = u->tx.count;

	/* Switching the FIFOs on or off resets them. */
	if ((v ^ u->fcr) & UART_FCR_ENABLE) {
		fifo_clear(&u->rx);
		fifo_clear(&u->tx);
	}
	/* The other FCR bits only take effect together with FIFO enable. */
	if (v & UART_FCR_ENABLE) {
		if (v & UART_FCR_CLR_RX)
			fifo_clear(&u->rx);
		if (v & UART_FCR_CLR_TX)
			fifo_clear(&u->tx);
	}
	if (had_tx && !u->tx.count)
		u->thr_ipending = true;
	u->fcr = v & UART_FCR_ENABLE ? v & (UART_FCR_ENABLE | UART_FCR_TRIG) : 0;
}

static void write_reg(struct uart *u, unsigned reg, uint8_t v)
{
	switch (reg) {
	case UART_IER:
		if (u->lcr & UART_LCR_DLAB)
			u->dlm = v;
		else
			write_ier(u, v);
		break;
	case UART_IIR:
		write_fcr(u, v);
		break;
	case UART_LCR:
		u->lcr = v;
		break;
	case UART_MCR:
		u->mcr = v & 0x1f;
		update_msr(u);
		break;
	case UART_SCR:
		u->scr = v;
		break;
	default:
		/* LSR and MSR writes are factory test modes: ignored. */
		break;
	}
}

/*
 * A THR write. Writing clears the THRE interrupt; the byte then leaves at
 * once and THR is empty again, so the line drops and rises and an
 * edge-triggered controller sees a fresh interrupt. One thread at a time
 * feeds 'out', outside the lock, in FIFO order; a writer that finds another
 * thread doing so leaves its byte in the TX FIFO for it.
 */
static void write_thr(struct uart *u, uint8_t b)
{
	uint8_t buf[UART_FIFO_SIZE];
	size_t n;

	u->thr_ipending = false;
	update_irq(u);
	if (u->mcr & UART_MCR_LOOP) {
		rx_char(u, b);
		u->thr_ipending = true;
		return;
	}
	if (!fifo_push(&u->tx, fifo_capacity(u), b) || u->flushing)
		return;
	u->flushing = true;
	while (u->tx.count) {
		for (n = 0; u->tx.count; n++)
			buf[n] = fifo_pop(&u->tx);
		u->thr_ipending = true;
		update_irq(u);
		if (!u->out)
			continue;
		pthread_mutex_unlock(&u->lock);
		u->out(u->out_ctx, buf, n);
		pthread_mutex_lock(&u->lock);
	}
	u->flushing = false;
}

void uart_io_write(void *dev, uint64_t off, unsigned len, uint64_t data)
{
	struct uart *u = dev;
	unsigned reg = off & 7;
	bool notify;

	pthread_mutex_lock(&u->lock);
	if (reg == UART_RBR && !(u->lcr & UART_LCR_DLAB))
		write_thr(u, data & 0xff);
	else if (reg == UART_RBR)
		u->dll = data & 0xff;
	else
		write_reg(u, reg, data & 0xff);
	update_irq(u);
	notify = take_rx_notify(u);
	pthread_mutex_unlock(&u->lock);
	if (notify)
		u->rx_notify(u->rx_notify_ctx);
}
