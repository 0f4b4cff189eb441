// SPDX-License-Identifier: MIT
/* Unit tests for the 8259A pair. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <cmocka.h>

#include "vmm/pic.h"

#define MAX_LOG 64

struct fake_cpu {
	int level;
	unsigned calls;
	int log[MAX_LOG];
	struct pic *pic;
	/* re-entrancy test: what to do inside int_out */
	bool ack_inside;
	int acked_vec;
};

struct fx {
	struct pic pic;
	struct fake_cpu cpu;
};

static void fake_int_out(void *ctx, int level)
{
	struct fake_cpu *c = ctx;

	if (c->calls < MAX_LOG)
		c->log[c->calls] = level;
	c->calls++;
	c->level = level;
	if (c->ack_inside && level) {
		c->ack_inside = false;
		c->acked_vec = pic_intack(c->pic);
		/* A higher-priority one arrives before the vCPU returns. */
		pic_set_irq(c->pic, 1, 1);
	}
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	f->cpu.pic = &f->pic;
	assert_int_equal(pic_init(&f->pic, fake_int_out, &f->cpu), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	/* Whatever happened, int_out was left telling the truth. */
	assert_int_equal(f->cpu.level, pic_int_pending(&f->pic));
	pic_destroy(&f->pic);
	free(f);
	return 0;
}

/* The sequence of arch/x86/kernel/i8259.c init_8259A(). */
static void linux_init(struct pic *p, uint8_t master_icw4)
{
	pic_outb(p, 0x21, 0xff);
	pic_outb(p, 0xa1, 0xff);
	pic_outb(p, 0x20, 0x11);
	pic_outb(p, 0x21, 0x30);
	pic_outb(p, 0x21, 0x04);
	pic_outb(p, 0x21, master_icw4);
	pic_outb(p, 0xa0, 0x11);
	pic_outb(p, 0xa1, 0x38);
	pic_outb(p, 0xa1, 0x02);
	pic_outb(p, 0xa1, 0x01);
	pic_outb(p, 0x21, 0x00);
	pic_outb(p, 0xa1, 0x00);
}

static uint8_t read_isr(struct pic *p, uint16_t cmd)
{
	pic_outb(p, cmd, 0x0b);
	return pic_inb(p, cmd);
}

static uint8_t read_irr(struct pic *p, uint16_t cmd)
{
	pic_outb(p, cmd, 0x0a);
	return pic_inb(p, cmd);
}

static int init_setup(void **state)
{
	setup(state);
	linux_init(&((struct fx *)*state)->pic, 0x01);
	return 0;
}

static void test_reset_masked(void **state)
{
	struct fx *f = *state;

	assert_int_equal(pic_inb(&f->pic, 0x21), 0xff);
	pic_set_irq(&f->pic, 1, 1);
	assert_false(pic_int_pending(&f->pic));
	assert_int_equal(f->cpu.calls, 0);
}

static void test_irq1_basic(void **state)
{
	struct fx *f = *state;

	assert_int_equal(pic_inb(&f->pic, 0x21), 0x00);
	assert_int_equal(f->cpu.level, 0);
	pic_set_irq(&f->pic, 1, 1);
	assert_int_equal(f->cpu.level, 1);
	assert_true(pic_int_pending(&f->pic));
	assert_int_equal(read_irr(&f->pic, 0x20), 0x02);
	assert_int_equal(pic_intack(&f->pic), 0x31);
	assert_int_equal(f->cpu.level, 0);
	assert_int_equal(read_isr(&f->pic, 0x20), 0x02);
	assert_int_equal(read_irr(&f->pic, 0x20), 0x00);
	pic_set_irq(&f->pic, 1, 0);
	pic_outb(&f->pic, 0x20, 0x20);	/* non-specific EOI */
	assert_int_equal(read_isr(&f->pic, 0x20), 0x00);
	assert_int_equal(f->cpu.level, 0);
	/* Edge-triggered: a new rising edge interrupts again. */
	pic_set_irq(&f->pic, 1, 1);
	assert_int_equal(f->cpu.level, 1);
	assert_int_equal(pic_intack(&f->pic), 0x31);
	pic_outb(&f->pic, 0x20, 0x61);	/* specific EOI for IRQ 1 */
	assert_int_equal(read_isr(&f->pic, 0x20), 0x00);
}

static void test_slave_cascade(void **state)
{
	struct fx *f = *state;

	pic_set_irq(&f->pic, 10, 1);
	assert_int_equal(f->cpu.level, 1);
	assert_int_equal(read_irr(&f->pic, 0xa0), 0x04);
	assert_int_equal(pic_intack(&f->pic), 0x3a);
	assert_int_equal(f->cpu.level, 0);
	assert_int_equal(read_isr(&f->pic, 0xa0), 0x04);
	assert_int_equal(read_isr(&f->pic, 0x20), 0x04);
	/* Linux: specific EOI to the slave, then to the master's IR2. */
	pic_outb(&f->pic, 0xa0, 0x62);
	pic_outb(&f->pic, 0x20, 0x62);
	assert_int_equal(read_isr(&f->pic, 0xa0), 0x00);
	assert_int_equal(read_isr(&f->pic, 0x20), 0x00);
	pic_set_irq(&f->pic, 10, 0);
	assert_false(pic_int_pending(&f->pic));
}

static void test_slave_two_pending(void **state)
{
	struct fx *f = *state;

	pic_set_irq(&f->pic, 11, 1);
	pic_set_irq(&f->pic, 9, 1);
	assert_int_equal(pic_intack(&f->pic), 0x39);
	assert_false(pic_int_pending(&f->pic));
	pic_outb(&f->pic, 0xa0, 0x20);
	/* IRQ 11 waits for the master's EOI on IR2... */
	assert_false(pic_int_pending(&f->pic));
	pic_outb(&f->pic, 0x20, 0x20);
	/* ... and is not lost. */
	assert_int_equal(f->cpu.level, 1);
	assert_int_equal(pic_intack(&f->pic), 0x3b);
}

static void test_priority(void **state)
{
	struct fx *f = *state;

	pic_set_irq(&f->pic, 3, 1);
	pic_set_irq(&f->pic, 0, 1);
	assert_int_equal(pic_intack(&f->pic), 0x30);
	/* IRQ 3 has lower priority than IRQ 0 in service. */
	assert_false(pic_int_pending(&f->pic));
	pic_outb(&f->pic, 0x20, 0x20);
	assert_true(pic_int_pending(&f->pic));
	assert_int_equal(pic_intack(&f->pic), 0x33);
	/* A higher-priority request nests over IRQ 3. */
	pic_set_irq(&f->pic, 0, 0);
	pic_set_irq(&f->pic, 0, 1);
	assert_true(pic_int_pending(&f->pic));
	assert_int_equal(pic_intack(&f->pic), 0x30);
	assert_int_equal(read_isr(&f->pic, 0x20), 0x09);
	/* Non-specific EOI ends the highest-priority service first. */
	pic_outb(&f->pic, 0x20, 0x20);
	assert_int_equal(read_isr(&f->pic, 0x20), 0x08);
	pic_outb(&f->pic, 0x20, 0x20);
	assert_int_equal(read_isr(&f->pic, 0x20), 0x00);
	/* Slave lines rank between IRQ 1 and IRQ 3. */
	pic_set_irq(&f->pic, 3, 0);
	pic_set_irq(&f->pic, 3, 1);
	pic_set_irq(&f->pic, 12, 1);
	assert_int_equal(pic_intack(&f->pic), 0x3c);
}

static void test_mask(void **state)
{
	struct fx *f = *state;

	pic_outb(&f->pic, 0x21, 0x10);
	pic_set_irq(&f->pic, 4, 1);
	assert_false(pic_int_pending(&f->pic));
	assert_int_equal(f->cpu.level, 0);
	assert_int_equal(read_irr(&f->pic, 0x20), 0x10);
	/* Unmasking delivers the latched request. */
	pic_outb(&f->pic, 0x21, 0x00);
	assert_int_equal(f->cpu.level, 1);
	assert_int_equal(pic_intack(&f->pic), 0x34);
	/* Masking the cascade masks the whole slave. */
	pic_outb(&f->pic, 0x20, 0x20);
	pic_outb(&f->pic, 0x21, 0x04);
	pic_set_irq(&f->pic, 14, 1);
	assert_false(pic_int_pending(&f->pic));
	pic_outb(&f->pic, 0xa1, 0x40);
	pic_outb(&f->pic, 0x21, 0x00);
	assert_false(pic_int_pending(&f->pic));
	pic_outb(&f->pic, 0xa1, 0x00);
	assert_int_equal(pic_intack(&f->pic), 0x3e);
}

static void test_level_vs_edge(void **state)
{
	struct fx *f = *state;

	/* Edge: a pulse is latched. */
	pic_set_irq(&f->pic, 5, 1);
	pic_set_irq(&f->pic, 5, 0);
	assert_true(pic_int_pending(&f->pic));
	assert_int_equal(pic_intack(&f->pic), 0x35);
	pic_outb(&f->pic, 0x20, 0x20);
	assert_false(pic_int_pending(&f->pic));

	/* Level via ELCR: IRQ 5 and IRQ 10. */
	pic_outb(&f->pic, 0x4d0, 0x20);
	pic_outb(&f->pic, 0x4d1, 0x04);
	pic_set_irq(&f->pic, 10, 1);
	assert_int_equal(f->cpu.level, 1);
	pic_set_irq(&f->pic, 10, 0);
	assert_int_equal(f->cpu.level, 0);
	/* Dropped before INTA: spurious IRQ 7, nothing put in service. */
	assert_int_equal(pic_intack(&f->pic), 0x37);
	assert_int_equal(read_isr(&f->pic, 0x20), 0x00);

	pic_set_irq(&f->pic, 5, 1);
	assert_int_equal(pic_intack(&f->pic), 0x35);
	pic_outb(&f->pic, 0x20, 0x20);
	/* Still high after EOI: asks again. */
	assert_int_equal(f->cpu.level, 1);
	assert_int_equal(pic_intack(&f->pic), 0x35);
	pic_set_irq(&f->pic, 5, 0);
	pic_outb(&f->pic, 0x20, 0x20);
	assert_false(pic_int_pending(&f->pic));

	/* A level line switched back to edge keeps no stale request. */
	pic_outb(&f->pic, 0x4d0, 0x00);
	pic_set_irq(&f->pic, 5, 1);
	assert_int_equal(pic_intack(&f->pic), 0x35);
	pic_outb(&f->pic, 0x20, 0x20);
	assert_false(pic_int_pending(&f->pic));
}

static void test_elcr_mask(void **state)
{
	struct fx *f = *state;

	pic_outb(&f->pic, 0x4d0, 0xff);
	pic_outb(&f->pic, 0x4d1, 0xff);
	assert_int_equal(pic_inb(&f->pic, 0x4d0), 0xf8);
	assert_int_equal(pic_inb(&f->pic, 0x4d1), 0xde);
}

static void test_spurious(void **state)
{
	struct fx *f = *state;

	assert_int_equal(pic_intack(&f->pic), 0x37);
	assert_int_equal(read_isr(&f->pic, 0x20), 0x00);
	assert_int_equal(f->cpu.calls, 0);
	/* A masked request is not delivered either. */
	pic_outb(&f->pic, 0x21, 0x02);
	pic_set_irq(&f->pic, 1, 1);
	assert_int_equal(pic_intack(&f->pic), 0x37);
	assert_int_equal(read_irr(&f->pic, 0x20), 0x02);
}

static void test_auto_eoi(void **state)
{
	struct fx *f = *state;

	linux_init(&f->pic, 0x03);
	pic_set_irq(&f->pic, 6, 1);
	assert_int_equal(pic_intack(&f->pic), 0x36);
	assert_int_equal(read_isr(&f->pic, 0x20), 0x00);
	pic_set_irq(&f->pic, 7, 1);
	assert_true(pic_int_pending(&f->pic));
	assert_int_equal(pic_intack(&f->pic), 0x37);
	assert_int_equal(read_isr(&f->pic, 0x20), 0x00);
}

static void test_poll_mode(void **state)
{
	struct fx *f = *state;

	pic_outb(&f->pic, 0x20, 0x0c);
	assert_int_equal(pic_inb(&f->pic, 0x20), 0x00);
	pic_set_irq(&f->pic, 1, 1);
	pic_outb(&f->pic, 0x20, 0x0c);
	assert_int_equal(pic_inb(&f->pic, 0x20), 0x81);
	assert_int_equal(read_isr(&f->pic, 0x20), 0x02);
	/* Poll is one-shot: the next read is a register again. */
	assert_int_equal(pic_inb(&f->pic, 0x20), 0x02);
}

static void test_rotation(void **state)
{
	struct fx *f = *state;

	/* Set priority: IR3 lowest, so IR4 highest. */
	pic_outb(&f->pic, 0x20, 0xc3);
	pic_set_irq(&f->pic, 0, 1);
	pic_set_irq(&f->pic, 5, 1);
	assert_int_equal(pic_intack(&f->pic), 0x35);
	/* Rotate on non-specific EOI: IR5 becomes lowest, IR6 highest. */
	pic_outb(&f->pic, 0x20, 0xa0);
	pic_set_irq(&f->pic, 6, 1);
	assert_int_equal(pic_intack(&f->pic), 0x36);
	pic_outb(&f->pic, 0x20, 0xe6);	/* rotate on specific EOI 6 */
	assert_int_equal(pic_intack(&f->pic), 0x30);
}

static void test_special_mask_mode(void **state)
{
	struct fx *f = *state;

	pic_set_irq(&f->pic, 1, 1);
	assert_int_equal(pic_intack(&f->pic), 0x31);
	pic_set_irq(&f->pic, 4, 1);
	assert_false(pic_int_pending(&f->pic));
	/* SMM with IR1 masked lets lower priorities through. */
	pic_outb(&f->pic, 0x21, 0x02);
	pic_outb(&f->pic, 0x20, 0x68);
	assert_true(pic_int_pending(&f->pic));
	assert_int_equal(pic_intack(&f->pic), 0x34);
	pic_outb(&f->pic, 0x20, 0x48);
	pic_outb(&f->pic, 0x20, 0x64);
	pic_outb(&f->pic, 0x20, 0x61);
	pic_outb(&f->pic, 0x21, 0x00);
	assert_false(pic_int_pending(&f->pic));
}

static void test_reinit_resets_edges(void **state)
{
	struct fx *f = *state;

	pic_set_irq(&f->pic, 3, 1);
	assert_true(pic_int_pending(&f->pic));
	linux_init(&f->pic, 0x01);
	/* The line is still high but no new edge was seen. */
	assert_false(pic_int_pending(&f->pic));
	pic_set_irq(&f->pic, 3, 0);
	pic_set_irq(&f->pic, 3, 1);
	assert_int_equal(pic_intack(&f->pic), 0x33);
}

static void test_no_int_during_init(void **state)
{
	struct fx *f = *state;

	pic_set_irq(&f->pic, 1, 1);
	pic_outb(&f->pic, 0x20, 0x11);
	pic_set_irq(&f->pic, 1, 0);
	pic_set_irq(&f->pic, 1, 1);
	assert_false(pic_int_pending(&f->pic));
	pic_outb(&f->pic, 0x21, 0x50);
	pic_outb(&f->pic, 0x21, 0x04);
	pic_outb(&f->pic, 0x21, 0x01);
	assert_int_equal(pic_intack(&f->pic), 0x51);
}

static void test_reentrant_int_out(void **state)
{
	struct fx *f = *state;

	f->cpu.ack_inside = true;
	pic_set_irq(&f->pic, 3, 1);
	assert_int_equal(f->cpu.acked_vec, 0x33);
	/* IRQ 1 arrived while the first report was being handled. */
	assert_int_equal(f->cpu.calls, 3);
	assert_int_equal(f->cpu.log[0], 1);
	assert_int_equal(f->cpu.log[1], 0);
	assert_int_equal(f->cpu.log[2], 1);
	assert_int_equal(pic_intack(&f->pic), 0x31);
	assert_int_equal(f->cpu.level, 0);
}

static void test_ignored_lines(void **state)
{
	struct fx *f = *state;

	pic_set_irq(&f->pic, 2, 1);
	pic_set_irq(&f->pic, 16, 1);
	pic_set_irq(&f->pic, 1000, 1);
	assert_false(pic_int_pending(&f->pic));
	assert_int_equal(pic_inb(&f->pic, 0x4d2), 0xff);
}

static void test_io_bus(void **state)
{
	struct fx *f = *state;
	struct io_bus bus;
	struct io_req req = { .space = IO_SPACE_PIO, .len = 1, .is_write = 1 };

	io_bus_init(&bus);
	assert_int_equal(pic_register(&f->pic, &bus), 0);
	req.addr = 0xa1;
	req.data = 0x7f;
	assert_true(io_bus_dispatch(&bus, &req));
	req.addr = 0x4d1;
	req.data = 0x02;
	assert_true(io_bus_dispatch(&bus, &req));
	req.is_write = 0;
	req.addr = 0xa1;
	io_bus_dispatch(&bus, &req);
	assert_int_equal(req.data, 0x7f);
	req.addr = 0x4d0;
	req.len = 2;
	io_bus_dispatch(&bus, &req);
	assert_int_equal(req.data, 0x0200);
}

static void test_save_restore(void **state)
{
	struct fx *f = *state;
	struct pic_state st;
	struct pic p2;
	struct fake_cpu cpu2 = { 0 };

	pic_outb(&f->pic, 0x4d1, 0x04);
	pic_set_irq(&f->pic, 10, 1);
	pic_set_irq(&f->pic, 1, 1);
	pic_save(&f->pic, &st);
	assert_int_equal(pic_init(&p2, fake_int_out, &cpu2), 0);
	cpu2.pic = &p2;
	assert_int_equal(pic_restore(&p2, &st), 0);
	assert_int_equal(cpu2.level, 1);
	assert_int_equal(pic_intack(&p2), 0x31);
	pic_outb(&p2, 0x20, 0x20);
	assert_int_equal(pic_intack(&p2), 0x3a);
	pic_outb(&p2, 0xa0, 0x20);
	pic_outb(&p2, 0x20, 0x20);
	/* IRQ 10 is level-triggered and still high. */
	assert_int_equal(pic_intack(&p2), 0x3a);
	st.version = 0;
	assert_int_equal(pic_restore(&p2, &st), -EINVAL);
	pic_destroy(&p2);
}


struct stress {
	struct pic pic;
	atomic_int level;
	atomic_bool done;
	atomic_uint acks;
	unsigned seed;
};

static void stress_int_out(void *ctx, int level)
{
	struct stress *s = ctx;

	atomic_store(&s->level, level);
}

static void *stress_device(void *arg)
{
	static const unsigned lines[] = { 1, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15 };
	struct stress *s = arg;
	unsigned seed = __atomic_add_fetch(&s->seed, 7919, __ATOMIC_RELAXED);

	for (int i = 0; i < 20000; i++) {
		unsigned irq = lines[rand_r(&seed) % 12];

		pic_set_irq(&s->pic, irq, 1);
		pic_set_irq(&s->pic, irq, 0);
	}
	return NULL;
}

static void cpu_take(struct stress *s)
{
	int vec = pic_intack(&s->pic);

	if (vec >= 0x38 && vec < 0x40)
		pic_outb(&s->pic, 0xa0, 0x20);
	if (vec != 0x37)
		pic_outb(&s->pic, 0x20, 0x20);
	atomic_fetch_add(&s->acks, 1);
}

static void *stress_cpu(void *arg)
{
	struct stress *s = arg;

	while (!atomic_load(&s->done))
		if (atomic_load(&s->level))
			cpu_take(s);
	return NULL;
}

static void test_threads(void **state)
{
	struct stress *s = calloc(1, sizeof(*s));
	pthread_t dev[3], cpu;

	(void)state;
	assert_int_equal(pic_init(&s->pic, stress_int_out, s), 0);
	linux_init(&s->pic, 0x01);
	pthread_create(&cpu, NULL, stress_cpu, s);
	for (int i = 0; i < 3; i++)
		pthread_create(&dev[i], NULL, stress_device, s);
	for (int i = 0; i < 3; i++)
		pthread_join(dev[i], NULL);
	atomic_store(&s->done, true);
	pthread_join(cpu, NULL);
	/* The last report matches the state; draining leaves nothing behind. */
	assert_int_equal(atomic_load(&s->level), pic_int_pending(&s->pic));
	for (int i = 0; i < 64 && atomic_load(&s->level); i++)
		cpu_take(s);
	assert_false(pic_int_pending(&s->pic));
	assert_int_equal(atomic_load(&s->level), 0);
	assert_true(atomic_load(&s->acks) > 0);
	pic_destroy(&s->pic);
	free(s);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, init_setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_reset_masked, setup, teardown),
		T(test_irq1_basic),
		T(test_slave_cascade),
		T(test_slave_two_pending),
		T(test_priority),
		T(test_mask),
		T(test_level_vs_edge),
		T(test_elcr_mask),
		T(test_spurious),
		T(test_auto_eoi),
		T(test_poll_mode),
		T(test_rotation),
		T(test_special_mask_mode),
		T(test_reinit_resets_edges),
		T(test_no_int_during_init),
		T(test_reentrant_int_out),
		T(test_ignored_lines),
		T(test_io_bus),
		T(test_save_restore),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
