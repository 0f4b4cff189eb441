// SPDX-License-Identifier: MIT
/*
 * i8042 keyboard controller, with no keyboard and no mouse attached.
 */
#include <string.h>

#include "vmm/i8042.h"

/* What firmware leaves behind: translation, keyboard interrupt, POST passed. */
#define CTR_DEFAULT (I8042_CTR_XLATE | I8042_CTR_SYS | I8042_CTR_KBDINT)

void i8042_init(struct i8042 *k, void (*reset)(void *ctx), void *ctx)
{
	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->reset = reset;
	k->ctx = ctx;
	k->ctr = CTR_DEFAULT;
	k->status = I8042_STR_SYS | I8042_STR_CMD | I8042_STR_UNLOCK;
	k->outport = I8042_OUT_RESET | I8042_OUT_A20;
}

void i8042_destroy(struct i8042 *k)
{
	pthread_mutex_destroy(&k->lock);
}

/* A new byte replaces an unread one: a driver always drains before asking. */
static void output(struct i8042 *k, uint8_t v, bool aux)
{
	k->obuf = v;
	k->status |= I8042_STR_OBF;
	if (aux)
		k->status |= I8042_STR_AUXDATA;
	else
		k->status &= ~I8042_STR_AUXDATA;
}

static void write_ctr(struct i8042 *k, uint8_t v)
{
	k->ctr = v;
	/* The command byte's system flag is what the status register shows. */
	k->status = (k->status & ~I8042_STR_SYS) | (v & I8042_CTR_SYS);
}

/* Returns true when the command asks for a CPU reset. */
static bool do_command(struct i8042 *k, uint8_t cmd)
{
	switch (cmd) {
	case I8042_CMD_READ_CTR:
		output(k, k->ctr, false);
		break;
	case I8042_CMD_WRITE_CTR:
	case I8042_CMD_WRITE_OUT:
	case I8042_CMD_WRITE_KBD_OBUF:
	case I8042_CMD_WRITE_AUX_OBUF:
	case I8042_CMD_WRITE_AUX:
		k->pending = cmd;
		break;
	case I8042_CMD_AUX_DIS:
		k->ctr |= I8042_CTR_AUXDIS;
		break;
	case I8042_CMD_AUX_EN:
		k->ctr &= ~I8042_CTR_AUXDIS;
		break;
	case I8042_CMD_KBD_DIS:
		k->ctr |= I8042_CTR_KBDDIS;
		break;
	case I8042_CMD_KBD_EN:
		k->ctr &= ~I8042_CTR_KBDDIS;
		break;
	case I8042_CMD_SELF_TEST:
		write_ctr(k, k->ctr | I8042_CTR_SYS);
		output(k, 0x55, false);
		break;
	case I8042_CMD_AUX_TEST:
	case I8042_CMD_KBD_TEST:
		output(k, 0x00, false);	/* the lines themselves are fine */
		break;
	case I8042_CMD_READ_OUT:
		output(k, k->outport, false);
		break;
	default:
		/* 0xF0-0xFF pulse output port lines whose bit is 0; bit 0 is reset. */
		if (cmd >= 0xf0 && !(cmd & I8042_OUT_RESET))
			return true;
		break;
	}
	return false;
}

/* A byte written to port 0x60: the argument of a pending command, if any. */
static bool do_data(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->pending;

	k->pending = 0;
	switch (cmd) {
	case I8042_CMD_WRITE_CTR:
		write_ctr(k, v);
		break;
	case I8042_CMD_WRITE_OUT:
		k->outport = v;
		return !(v & I8042_OUT_RESET);
	case I8042_CMD_WRITE_KBD_OBUF:
		output(k, v, false);
		break;
	case I8042_CMD_WRITE_AUX_OBUF:
		output(k, v, true);
		break;
	default:
		/* For a keyboard or mouse that is not there. */
		break;
	}
	return false;
}

void i8042_cmd_write(void *dev, uint64_t off, unsigned len, uint64_t data)
{
	struct i8042 *k = dev;
	bool reset;

	pthread_mutex_lock(&k->lock);
	k->status |= I8042_STR_CMD;
	k->pending = 0;
	reset = do_command(k, data & 0xff);
	pthread_mutex_unlock(&k->lock);
	if (reset && k->reset)
		k->reset(k->ctx);
}

void i8042_data_write(void *dev, uint64_t off, unsigned len, uint64_t data)
{
	struct i8042 *k = dev;
	bool reset;

	pthread_mutex_lock(&k->lock);
	k->status &= ~I8042_STR_CMD;
	reset = do_data(k, data & 0xff);
	pthread_mutex_unlock(&k->lock);
	if (reset && k->reset)
		k->reset(k->ctx);
}

void i8042_cmd_read(void *dev, uint64_t off, unsigned len, uint64_t *data)
{
	struct i8042 *k = dev;

	pthread_mutex_lock(&k->lock);
	*data = k->status;
	pthread_mutex_unlock(&k->lock);
}

/* An empty buffer reads back its last byte, as on real controllers. */
void i8042_data_read(void *dev, uint64_t off, unsigned len, uint64_t *data)
{
	struct i8042 *k = dev;

	pthread_mutex_lock(&k->lock);
	*data = k->obuf;
	k->status &= ~(I8042_STR_OBF | I8042_STR_AUXDATA);
	pthread_mutex_unlock(&k->lock);
}

int i8042_register(struct i8042 *k, struct io_bus *bus)
{
	struct io_range data = {
		.space = IO_SPACE_PIO,
		.base = I8042_DATA_PORT,
		.size = 1,
		.read = i8042_data_read,
		.write = i8042_data_write,
		.dev = k,
		.name = "i8042-data",
	};
	struct io_range cmd = {
		.space = IO_SPACE_PIO,
		.base = I8042_STATUS_PORT,
		.size = 1,
		.read = i8042_cmd_read,
		.write = i8042_cmd_write,
		.dev = k,
		.name = "i8042-cmd",
	};
	int err = io_bus_register(bus, &data);

	return err ? err : io_bus_register(bus, &cmd);
}
