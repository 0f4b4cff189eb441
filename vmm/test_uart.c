// SPDX-License-Identifier: MIT
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/uart.h"

struct fixture {
	struct uart u;
	struct irq_sink sink;
	int level;            /* last level seen on the line */
	int raises, lowers;
	unsigned last_gsi;
	uint8_t out[256];
	size_t out_len;
	int out_calls;
	int notified;
	bool echo;            /* the out callback feeds bytes back as input */
};

static void rec_irq(void *ctx, unsigned gsi, int level)
{
	struct fixture *f = ctx;

	f->last_gsi = gsi;
	/* The UART must only report changes. */
	assert_int_not_equal(level, f->level);
	f->level = level;
	if (level)
		f->raises++;
	else
		f->lowers++;
}

static void rec_out(void *ctx, const uint8_t *buf, size_t len)
{
	struct fixture *f = ctx;

	assert_true(f->out_len + len <= sizeof(f->out));
	memcpy(f->out + f->out_len, buf, len);
	f->out_len += len;
	f->out_calls++;
	if (f->echo)
		uart_receive(&f->u, buf, len);
}

static void rec_notify(void *ctx)
{
	struct fixture *f = ctx;

	f->notified++;
}

static int setup(void **state)
{
	struct fixture *f = test_calloc(1, sizeof(*f));

	f->sink.set_irq = rec_irq;
	f->sink.ctx = f;
	uart_init(&f->u, UART_COM1_BASE, UART_COM1_IRQ, &f->sink, rec_out, f);
	uart_set_rx_notify(&f->u, rec_notify, f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	uart_destroy(&f->u);
	test_free(f);
	return 0;
}

static uint8_t rd(struct fixture *f, unsigned reg)
{
	uint64_t v = 0;

	uart_io_read(&f->u, reg, 1, &v);
	return v;
}

static void wr(struct fixture *f, unsigned reg, uint8_t v)
{
	uart_io_write(&f->u, reg, 1, v);
}

static void test_reset_state(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(rd(f, UART_IIR), UART_IIR_NO_INT);
	assert_int_equal(rd(f, UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	assert_int_equal(rd(f, UART_IER), 0);
	assert_int_equal(rd(f, UART_LCR), 0);
	assert_int_equal(rd(f, UART_MCR), 0);
	assert_int_equal(f->raises, 0);
}

/* The steps of Linux's 8250 autoconfig(), in its order. */
static void test_linux_probe(void **state)
{
	struct fixture *f = *state;

	/* IER: the low nibble is writable, UUE (bit 6) is not. */
	wr(f, UART_IER, 0);
	assert_int_equal(rd(f, UART_IER) & 0x0f, 0);
	wr(f, UART_IER, 0x0f);
	assert_int_equal(rd(f, UART_IER) & 0x0f, 0x0f);
	wr(f, UART_IER, 0x4f);
	assert_int_equal(rd(f, UART_IER), 0x0f);
	wr(f, UART_IER, 0);

	/* Scratch register. */
	wr(f, UART_SCR, 0xa5);
	assert_int_equal(rd(f, UART_SCR), 0xa5);
	wr(f, UART_SCR, 0x5a);
	assert_int_equal(rd(f, UART_SCR), 0x5a);

	/* Loopback: MSR follows MCR. */
	wr(f, UART_MCR, UART_MCR_LOOP);
	assert_int_equal(rd(f, UART_MSR) & 0xf0, 0);
	wr(f, UART_MCR, UART_MCR_LOOP | 0x0a);
	assert_int_equal(rd(f, UART_MSR) & 0xf0, UART_MSR_CTS | UART_MSR_DCD);
	wr(f, UART_MCR, UART_MCR_LOOP | 0x0f);
	assert_int_equal(rd(f, UART_MSR) & 0xf0, 0xf0);
	wr(f, UART_MCR, 0);

	/* EFR probes (LCR=0xBF) must not find an EFR: offset 2 stays IIR. */
	wr(f, UART_LCR, 0xbf);
	assert_int_not_equal(rd(f, UART_IIR), 0);
	wr(f, UART_LCR, 0);

	/* FIFO detection: IIR bits 7:6 = 3 means 16550A. */
	wr(f, UART_IIR, UART_FCR_ENABLE);
	assert_int_equal(rd(f, UART_IIR) >> 6, 3);
	/* No 64-byte FIFO (16750): IIR bit 5 stays clear. */
	wr(f, UART_IIR, 0xe7);
	assert_int_equal(rd(f, UART_IIR) & 0x20, 0);
	wr(f, UART_IIR, 0);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_NO_INT);
	assert_int_equal(f->level, 0);
}

static void test_loopback_delta_bits(void **state)
{
	struct fixture *f = *state;

	wr(f, UART_MCR, UART_MCR_LOOP);
	rd(f, UART_MSR);
	wr(f, UART_MCR, UART_MCR_LOOP | UART_MCR_RTS | UART_MCR_OUT1);
	assert_int_equal(rd(f, UART_MSR), UART_MSR_CTS | UART_MSR_RI | UART_MSR_DCTS);
	/* RI falling is the trailing edge. */
	wr(f, UART_MCR, UART_MCR_LOOP | UART_MCR_RTS);
	assert_int_equal(rd(f, UART_MSR), UART_MSR_CTS | UART_MSR_TERI);
	assert_int_equal(rd(f, UART_MSR), UART_MSR_CTS);
}

static void test_divisor_latch(void **state)
{
	struct fixture *f = *state;

	wr(f, UART_IER, UART_IER_RDI);
	wr(f, UART_LCR, UART_LCR_DLAB | 0x03);
	wr(f, UART_DLL, 0x01);
	wr(f, UART_DLM, 0x02);
	assert_int_equal(rd(f, UART_DLL), 0x01);
	assert_int_equal(rd(f, UART_DLM), 0x02);
	/* Divisor writes do not transmit or touch IER. */
	assert_int_equal(f->out_len, 0);
	wr(f, UART_LCR, 0x03);
	assert_int_equal(rd(f, UART_IER), UART_IER_RDI);
	assert_int_equal(rd(f, UART_LCR), 0x03);
	wr(f, UART_LCR, UART_LCR_DLAB | 0x03);
	assert_int_equal(rd(f, UART_DLL), 0x01);
	assert_int_equal(rd(f, UART_DLM), 0x02);
}

static void test_transmit(void **state)
{
	struct fixture *f = *state;

	wr(f, UART_RBR, 'h');
	wr(f, UART_RBR, 'i');
	assert_int_equal(f->out_len, 2);
	assert_memory_equal(f->out, "hi", 2);
	assert_int_equal(rd(f, UART_LSR) & (UART_LSR_THRE | UART_LSR_TEMT),
			 UART_LSR_THRE | UART_LSR_TEMT);
	/* THRE interrupts are not enabled: the line never moved. */
	assert_int_equal(f->raises, 0);
}

static void test_thre_interrupt(void **state)
{
	struct fixture *f = *state;

	/* Enabling ETBEI with THR empty interrupts at once. */
	wr(f, UART_IER, UART_IER_THRI);
	assert_int_equal(f->level, 1);
	assert_int_equal(f->last_gsi, UART_COM1_IRQ);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_THRI);
	/* Reading IIR acknowledged it. */
	assert_int_equal(f->level, 0);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_NO_INT);

	/* Each transmitted byte raises it again. */
	wr(f, UART_RBR, 'x');
	assert_int_equal(f->level, 1);
	assert_int_equal(f->raises, 2);
	/* A THR write while it is pending drops and re-raises the line. */
	wr(f, UART_RBR, 'y');
	assert_int_equal(f->raises, 3);
	assert_int_equal(f->lowers, 2);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_THRI);
	assert_int_equal(f->level, 0);

	/* Linux's THRE re-enable test: IER=0, IER=THRI -> pending again. */
	wr(f, UART_IER, 0);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_NO_INT);
	wr(f, UART_IER, UART_IER_THRI);
	assert_int_equal(rd(f, UART_LSR) & UART_LSR_TEMT, UART_LSR_TEMT);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_THRI);

	/* Disabling ETBEI lowers a pending THRE interrupt. */
	wr(f, UART_IER, 0);
	wr(f, UART_IER, UART_IER_THRI);
	assert_int_equal(f->level, 1);
	wr(f, UART_IER, 0);
	assert_int_equal(f->level, 0);
	assert_memory_equal(f->out, "xy", 2);
}

static void test_receive_rda(void **state)
{
	struct fixture *f = *state;

	wr(f, UART_IIR, UART_FCR_ENABLE | UART_FCR_CLR_RX | UART_FCR_CLR_TX);
	wr(f, UART_IER, UART_IER_RDI);
	assert_int_equal(f->level, 0);
	assert_int_equal(uart_receive(&f->u, (const uint8_t *)"abc", 3), 3);
	assert_int_equal(uart_rx_space(&f->u), UART_FIFO_SIZE - 3);
	assert_int_equal(f->level, 1);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_FIFO | UART_IIR_RDI);
	assert_int_equal(rd(f, UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	assert_int_equal(rd(f, UART_RBR), 'a');
	assert_int_equal(rd(f, UART_RBR), 'b');
	assert_int_equal(f->level, 1);
	assert_int_equal(rd(f, UART_RBR), 'c');
	assert_int_equal(f->level, 0);
	assert_int_equal(rd(f, UART_LSR) & UART_LSR_DR, 0);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
}

static void test_trigger_level(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[8] = "12345678";

	/* Trigger at 8: fewer bytes show as a character timeout. */
	wr(f, UART_IIR, UART_FCR_ENABLE | 0x80);
	wr(f, UART_IER, UART_IER_RDI);
	uart_receive(&f->u, buf, 3);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_FIFO | UART_IIR_CTI);
	uart_receive(&f->u, buf + 3, 5);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_FIFO | UART_IIR_RDI);
	/* Clearing the RX FIFO removes the data and the interrupt. */
	wr(f, UART_IIR, UART_FCR_ENABLE | 0x80 | UART_FCR_CLR_RX);
	assert_int_equal(rd(f, UART_LSR) & UART_LSR_DR, 0);
	assert_int_equal(f->level, 0);
}

static void test_rx_space_and_notify(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[20];

	memset(buf, 'z', sizeof(buf));
	/* Without FIFOs there is a single holding register. */
	assert_int_equal(uart_rx_space(&f->u), 1);
	assert_int_equal(uart_receive(&f->u, buf, 2), 1);
	assert_int_equal(f->notified, 0);
	rd(f, UART_RBR);
	assert_int_equal(f->notified, 1);

	wr(f, UART_IIR, UART_FCR_ENABLE);
	assert_int_equal(uart_receive(&f->u, buf, sizeof(buf)), UART_FIFO_SIZE);
	assert_int_equal(uart_rx_space(&f->u), 0);
	/* Refused input is not an overrun: the host keeps it. */
	assert_int_equal(rd(f, UART_LSR) & UART_LSR_OE, 0);
	rd(f, UART_RBR);
	assert_int_equal(f->notified, 2);
	rd(f, UART_RBR);
	assert_int_equal(f->notified, 2);
}

static void test_fifo_overrun(void **state)
{
	struct fixture *f = *state;

	wr(f, UART_IIR, UART_FCR_ENABLE);
	wr(f, UART_MCR, UART_MCR_LOOP);
	for (int i = 0; i < UART_FIFO_SIZE + 1; i++)
		wr(f, UART_RBR, 'A' + i);
	/* Loopback sends nothing out. */
	assert_int_equal(f->out_len, 0);
	assert_int_equal(rd(f, UART_LSR) & (UART_LSR_OE | UART_LSR_DR),
			 UART_LSR_OE | UART_LSR_DR);
	/* OE clears on read. */
	assert_int_equal(rd(f, UART_LSR) & UART_LSR_OE, 0);
	for (int i = 0; i < UART_FIFO_SIZE; i++)
		assert_int_equal(rd(f, UART_RBR), 'A' + i);
	assert_int_equal(rd(f, UART_LSR) & UART_LSR_DR, 0);
	/* Host input is refused in loopback. */
	assert_int_equal(uart_receive(&f->u, (const uint8_t *)"q", 1), 0);
}

static void test_iir_priority(void **state)
{
	struct fixture *f = *state;

	wr(f, UART_IIR, UART_FCR_ENABLE);
	wr(f, UART_MCR, UART_MCR_LOOP);
	rd(f, UART_MSR);
	for (int i = 0; i < UART_FIFO_SIZE + 1; i++)
		wr(f, UART_RBR, 'a');
	/* A modem-status change, too. */
	wr(f, UART_MCR, UART_MCR_LOOP | UART_MCR_DTR);
	wr(f, UART_IER, 0x0f);
	assert_int_equal(f->level, 1);

	assert_int_equal(rd(f, UART_IIR), UART_IIR_FIFO | UART_IIR_RLSI);
	rd(f, UART_LSR);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_FIFO | UART_IIR_RDI);
	for (int i = 0; i < UART_FIFO_SIZE; i++)
		rd(f, UART_RBR);
	/* Reading IIR reports THRE and acknowledges it... */
	assert_int_equal(rd(f, UART_IIR), UART_IIR_FIFO | UART_IIR_THRI);
	/* ...so modem status comes next. */
	assert_int_equal(rd(f, UART_IIR), UART_IIR_FIFO | UART_IIR_MSI);
	assert_int_equal(f->level, 1);
	assert_int_equal(rd(f, UART_MSR) & UART_MSR_DELTA, UART_MSR_DDSR);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	assert_int_equal(f->level, 0);
}

static void test_out_reentry(void **state)
{
	struct fixture *f = *state;

	/* 'out' runs without the lock: calling back must not deadlock. */
	f->echo = true;
	wr(f, UART_IIR, UART_FCR_ENABLE);
	wr(f, UART_RBR, 'e');
	assert_int_equal(f->out_calls, 1);
	assert_int_equal(rd(f, UART_RBR), 'e');
}

static void test_bus_dispatch(void **state)
{
	struct fixture *f = *state;
	struct io_bus bus;
	struct io_req req = {
		.space = IO_SPACE_PIO, .is_write = 1, .len = 1,
		.addr = UART_COM1_BASE + UART_RBR, .data = '!',
	};

	io_bus_init(&bus);
	assert_int_equal(uart_register(&f->u, &bus), 0);
	assert_true(io_bus_dispatch(&bus, &req));
	assert_int_equal(f->out_len, 1);
	assert_int_equal(f->out[0], '!');
	req.is_write = 0;
	req.addr = UART_COM1_BASE + UART_LSR;
	assert_true(io_bus_dispatch(&bus, &req));
	assert_int_equal(req.data, UART_LSR_THRE | UART_LSR_TEMT);
	req.addr = UART_COM1_BASE + 8;
	assert_false(io_bus_dispatch(&bus, &req));
}

struct writer {
	struct uart *u;
	unsigned id;
};

#define WRITERS 4
#define PER_WRITER 2000

static uint8_t conc_out[WRITERS * PER_WRITER];
static size_t conc_len;

static void conc_rec(void *ctx, const uint8_t *buf, size_t len)
{
	/* Only one thread at a time may be inside 'out'. */
	assert_true(conc_len + len <= sizeof(conc_out));
	memcpy(conc_out + conc_len, buf, len);
	sched_yield();
	conc_len += len;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	for (unsigned i = 0; i < PER_WRITER; i++) {
		uint64_t lsr;

		/* A driver waits for THRE; the FIFO has room for every writer. */
		do
			uart_io_read(w->u, UART_LSR, 1, &lsr);
		while (!(lsr & UART_LSR_THRE));
		uart_io_write(w->u, UART_RBR, 1, (w->id << 6) | (i % 64));
	}
	return NULL;
}

static void test_concurrent_writers_keep_order(void **state)
{
	struct uart u;
	pthread_t th[WRITERS];
	struct writer w[WRITERS];
	unsigned next[WRITERS] = { 0 };

	conc_len = 0;
	uart_init(&u, UART_COM1_BASE, UART_COM1_IRQ, NULL, conc_rec, NULL);
	uart_io_write(&u, UART_IIR, 1, UART_FCR_ENABLE);
	for (unsigned i = 0; i < WRITERS; i++) {
		w[i] = (struct writer){ .u = &u, .id = i };
		assert_int_equal(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
	}
	for (unsigned i = 0; i < WRITERS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(conc_len, WRITERS * PER_WRITER);
	for (size_t i = 0; i < conc_len; i++) {
		unsigned id = conc_out[i] >> 6;

		assert_int_equal(conc_out[i] & 63, next[id] % 64);
		next[id]++;
	}
	uart_destroy(&u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_reset_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_linux_probe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loopback_delta_bits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_divisor_latch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transmit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thre_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_receive_rda, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trigger_level, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_space_and_notify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fifo_overrun, setup, teardown),
		cmocka_unit_test_setup_teardown(test_iir_priority, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_reentry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bus_dispatch, setup, teardown),
		cmocka_unit_test(test_concurrent_writers_keep_order),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
