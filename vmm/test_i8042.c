// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "vmm/i8042.h"

struct fixture {
	struct i8042 k;
	struct io_bus bus;
	int resets;
};

static void on_reset(void *ctx)
{
	((struct fixture *)ctx)->resets++;
}

static int setup(void **state)
{
	struct fixture *f = test_calloc(1, sizeof(*f));

	i8042_init(&f->k, on_reset, f);
	io_bus_init(&f->bus);
	assert_int_equal(i8042_register(&f->k, &f->bus), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	i8042_destroy(&f->k);
	test_free(f);
	return 0;
}

static uint8_t in(struct fixture *f, uint16_t port)
{
	struct io_req r = { .space = IO_SPACE_PIO, .len = 1, .addr = port };

	assert_true(io_bus_dispatch(&f->bus, &r));
	return r.data;
}

static void out(struct fixture *f, uint16_t port, uint8_t v)
{
	struct io_req r = { .space = IO_SPACE_PIO, .is_write = 1, .len = 1,
			    .addr = port, .data = v };

	assert_true(io_bus_dispatch(&f->bus, &r));
}

static uint8_t status(struct fixture *f)
{
	return in(f, I8042_STATUS_PORT);
}

/* What a driver does: command, then wait for the output buffer. */
static uint8_t command(struct fixture *f, uint8_t cmd)
{
	assert_int_equal(status(f) & I8042_STR_IBF, 0);
	out(f, I8042_STATUS_PORT, cmd);
	assert_int_equal(status(f) & (I8042_STR_OBF | I8042_STR_IBF), I8042_STR_OBF);
	return in(f, I8042_DATA_PORT);
}

static void test_idle_status(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(status(f), I8042_STR_SYS | I8042_STR_CMD | I8042_STR_UNLOCK);
	/* Flushing an empty controller ends at once. */
	assert_int_equal(status(f) & I8042_STR_OBF, 0);
}

static void test_self_test(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(command(f, I8042_CMD_SELF_TEST), 0x55);
	assert_int_equal(status(f) & I8042_STR_OBF, 0);
	assert_int_equal(status(f) & I8042_STR_SYS, I8042_STR_SYS);
	assert_int_equal(command(f, I8042_CMD_KBD_TEST), 0x00);
	assert_int_equal(command(f, I8042_CMD_AUX_TEST), 0x00);
}

static void test_command_byte(void **state)
{
	struct fixture *f = *state;
	uint8_t ctr = command(f, I8042_CMD_READ_CTR);

	/* Linux reads it twice and wants the same value. */
	assert_int_equal(command(f, I8042_CMD_READ_CTR), ctr);
	assert_true(ctr & I8042_CTR_SYS);

	out(f, I8042_STATUS_PORT, I8042_CMD_WRITE_CTR);
	assert_int_equal(status(f) & (I8042_STR_IBF | I8042_STR_OBF), 0);
	out(f, I8042_DATA_PORT, 0x30);
	assert_int_equal(status(f) & I8042_STR_CMD, 0);
	assert_int_equal(command(f, I8042_CMD_READ_CTR), 0x30);
	/* The status system flag follows the command byte. */
	assert_int_equal(status(f) & I8042_STR_SYS, 0);

	out(f, I8042_STATUS_PORT, I8042_CMD_KBD_EN);
	out(f, I8042_STATUS_PORT, I8042_CMD_AUX_EN);
	assert_int_equal(command(f, I8042_CMD_READ_CTR), 0x00);
	out(f, I8042_STATUS_PORT, I8042_CMD_KBD_DIS);
	out(f, I8042_STATUS_PORT, I8042_CMD_AUX_DIS);
	assert_int_equal(command(f, I8042_CMD_READ_CTR),
			 I8042_CTR_KBDDIS | I8042_CTR_AUXDIS);
	/* Those commands produce no output. */
	assert_int_equal(status(f) & I8042_STR_OBF, 0);
}

static void test_aux_loop(void **state)
{
	struct fixture *f = *state;

	out(f, I8042_STATUS_PORT, I8042_CMD_WRITE_AUX_OBUF);
	out(f, I8042_DATA_PORT, 0x5a);
	assert_int_equal(status(f) & (I8042_STR_OBF | I8042_STR_AUXDATA),
			 I8042_STR_OBF | I8042_STR_AUXDATA);
	assert_int_equal(in(f, I8042_DATA_PORT), 0x5a);
	assert_int_equal(status(f) & (I8042_STR_OBF | I8042_STR_AUXDATA), 0);
	/* A byte for the absent mouse or keyboard gets no answer. */
	out(f, I8042_STATUS_PORT, I8042_CMD_WRITE_AUX);
	out(f, I8042_DATA_PORT, 0xf2);
	out(f, I8042_DATA_PORT, 0xff);
	assert_int_equal(status(f) & (I8042_STR_OBF | I8042_STR_IBF), 0);
}

static void test_reset_pulse(void **state)
{
	struct fixture *f = *state;

	/* 0xFF pulses no line; 0xFE pulses the reset line. */
	out(f, I8042_STATUS_PORT, 0xff);
	assert_int_equal(f->resets, 0);
	out(f, I8042_STATUS_PORT, I8042_CMD_PULSE_RESET);
	assert_int_equal(f->resets, 1);
	/* Writing the output port with the reset bit low resets too. */
	out(f, I8042_STATUS_PORT, I8042_CMD_WRITE_OUT);
	out(f, I8042_DATA_PORT, I8042_OUT_A20 | I8042_OUT_RESET);
	assert_int_equal(f->resets, 1);
	assert_int_equal(command(f, I8042_CMD_READ_OUT), I8042_OUT_A20 | I8042_OUT_RESET);
	out(f, I8042_STATUS_PORT, I8042_CMD_WRITE_OUT);
	out(f, I8042_DATA_PORT, I8042_OUT_A20);
	assert_int_equal(f->resets, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_idle_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_self_test, setup, teardown),
		cmocka_unit_test_setup_teardown(test_command_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_aux_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_pulse, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
