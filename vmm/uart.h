/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_UART_H
#define GRAPPE_UART_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/io.h"
#include "vmm/irq.h"

/*
 * A 16550A UART: eight byte-wide registers at 'base', one interrupt line.
 *
 * Transmission is instant: a byte written to THR is handed to the 'out'
 * callback and THR is empty again when the write returns (unless another
 * thread is still busy emitting earlier bytes, in which case LSR.THRE stays
 * clear until they are out, like a real transmitter draining its FIFO).
 * 'out' runs without the UART lock held, so it may block on a slow
 * terminal and may call back into the UART (uart_receive); bytes still
 * reach it in the order the guest wrote them.
 *
 * The interrupt line is driven as a level through the irq sink, with the
 * UART lock held: the sink must not call back into the UART. OUT2 does not
 * gate the line (the machine's wiring is always on), which is what guests
 * expect from virtual hardware.
 */

#define UART_COM1_BASE 0x3f8
#define UART_COM1_IRQ  4
#define UART_NR_PORTS  8
#define UART_FIFO_SIZE 16

/* Register offsets (DLAB=0 unless noted). */
#define UART_RBR 0   /* read: receive buffer; write: THR */
#define UART_IER 1
#define UART_IIR 2   /* read: interrupt identification; write: FCR */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7
#define UART_DLL 0   /* DLAB=1 */
#define UART_DLM 1   /* DLAB=1 */

#define UART_IER_RDI  0x01
#define UART_IER_THRI 0x02
#define UART_IER_RLSI 0x04
#define UART_IER_MSI  0x08

#define UART_IIR_NO_INT 0x01
#define UART_IIR_MSI    0x00
#define UART_IIR_THRI   0x02
#define UART_IIR_RDI    0x04
#define UART_IIR_RLSI   0x06
#define UART_IIR_CTI    0x0c
#define UART_IIR_FIFO   0xc0

#define UART_FCR_ENABLE 0x01
#define UART_FCR_CLR_RX 0x02
#define UART_FCR_CLR_TX 0x04
#define UART_FCR_TRIG   0xc0

#define UART_LCR_DLAB 0x80

#define UART_MCR_DTR  0x01
#define UART_MCR_RTS  0x02
#define UART_MCR_OUT1 0x04
#define UART_MCR_OUT2 0x08
#define UART_MCR_LOOP 0x10

#define UART_LSR_DR   0x01
#define UART_LSR_OE   0x02
#define UART_LSR_PE   0x04
#define UART_LSR_FE   0x08
#define UART_LSR_BI   0x10
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_LSR_ERRS (UART_LSR_OE | UART_LSR_PE | UART_LSR_FE | UART_LSR_BI)

#define UART_MSR_DCTS  0x01
#define UART_MSR_DDSR  0x02
#define UART_MSR_TERI  0x04
#define UART_MSR_DDCD  0x08
#define UART_MSR_DELTA 0x0f
#define UART_MSR_CTS   0x10
#define UART_MSR_DSR   0x20
#define UART_MSR_RI    0x40
#define UART_MSR_DCD   0x80

typedef void (*uart_out_fn)(void *ctx, const uint8_t *buf, size_t len);

struct uart_fifo {
	uint8_t buf[UART_FIFO_SIZE];
	unsigned head;   /* index of the oldest byte */
	unsigned count;
};

struct uart {
	pthread_mutex_t lock;
	uint16_t base;
	unsigned gsi;
	const struct irq_sink *irq;
	uart_out_fn out;
	void *out_ctx;
	/* Called, without the lock, when the guest frees FIFO space after
	 * uart_receive() could not take everything it was given. */
	void (*rx_notify)(void *ctx);
	void *rx_notify_ctx;

	uint8_t ier, fcr, lcr, mcr, lsr, msr, scr, dll, dlm;
	uint8_t modem_in;     /* CTS/DSR/RI/DCD lines outside loopback */
	bool thr_ipending;    /* THRE interrupt pending until IIR read or THR write */
	bool flushing;        /* a thread is inside 'out' */
	bool rx_starved;      /* uart_receive() was refused bytes */
	int irq_level;
	struct uart_fifo rx, tx;
};

void uart_init(struct uart *u, uint16_t base, unsigned gsi, const struct irq_sink *irq,
	       uart_out_fn out, void *ctx);
void uart_destroy(struct uart *u);
/* Registers the eight ports; returns io_bus_register()'s result. */
int uart_register(struct uart *u, struct io_bus *bus);
void uart_set_rx_notify(struct uart *u, void (*fn)(void *ctx), void *ctx);

/* Host input: queues up to len bytes, returns how many fitted. */
size_t uart_receive(struct uart *u, const uint8_t *buf, size_t len);
size_t uart_rx_space(struct uart *u);

/* Register access, as the io bus calls it (exposed for tests and forwarding). */
void uart_io_read(void *dev, uint64_t off, unsigned len, uint64_t *data);
void uart_io_write(void *dev, uint64_t off, unsigned len, uint64_t data);

#endif
