/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_I8042_H
#define GRAPPE_I8042_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/io.h"

/*
 * An i8042 keyboard controller with nothing plugged into it: it exists
 * because firmware and kernels poke it (self-test, command byte, and above
 * all "pulse reset line", the oldest way to reboot a PC), not to provide a
 * keyboard. Commands complete at once, so the input buffer is never full
 * and a driver waiting for it to drain never waits. Bytes for the keyboard
 * or mouse go nowhere and get no answer: drivers time out and carry on.
 * No interrupt is raised.
 */

#define I8042_DATA_PORT   0x60
#define I8042_STATUS_PORT 0x64  /* read: status; write: command */

#define I8042_STR_OBF     0x01  /* output buffer full */
#define I8042_STR_IBF     0x02  /* input buffer full (never set here) */
#define I8042_STR_SYS     0x04  /* system flag, from the command byte */
#define I8042_STR_CMD     0x08  /* last write was a command */
#define I8042_STR_UNLOCK  0x10  /* keyboard not inhibited by the keylock */
#define I8042_STR_AUXDATA 0x20  /* output buffer holds mouse data */

#define I8042_CTR_KBDINT  0x01
#define I8042_CTR_AUXINT  0x02
#define I8042_CTR_SYS     0x04
#define I8042_CTR_KBDDIS  0x10
#define I8042_CTR_AUXDIS  0x20
#define I8042_CTR_XLATE   0x40

#define I8042_CMD_READ_CTR   0x20
#define I8042_CMD_WRITE_CTR  0x60
#define I8042_CMD_AUX_DIS    0xa7
#define I8042_CMD_AUX_EN     0xa8
#define I8042_CMD_AUX_TEST   0xa9
#define I8042_CMD_SELF_TEST  0xaa
#define I8042_CMD_KBD_TEST   0xab
#define I8042_CMD_KBD_DIS    0xad
#define I8042_CMD_KBD_EN     0xae
#define I8042_CMD_READ_OUT   0xd0
#define I8042_CMD_WRITE_OUT  0xd1
#define I8042_CMD_WRITE_KBD_OBUF 0xd2
#define I8042_CMD_WRITE_AUX_OBUF 0xd3
#define I8042_CMD_WRITE_AUX  0xd4
#define I8042_CMD_PULSE_RESET 0xfe

#define I8042_OUT_RESET   0x01  /* output port: CPU reset line, active low */
#define I8042_OUT_A20     0x02

struct i8042 {
	pthread_mutex_t lock;
	void (*reset)(void *ctx);
	void *ctx;

	uint8_t status;
	uint8_t ctr;      /* command byte ("controller configuration") */
	uint8_t outport;
	uint8_t obuf;     /* output buffer, valid while status has OBF */
	uint8_t pending;  /* command waiting for its data byte, or 0 */
};

/* 'reset' runs without the lock, on the vCPU thread: it should only request one. */
void i8042_init(struct i8042 *k, void (*reset)(void *ctx), void *ctx);
void i8042_destroy(struct i8042 *k);
/* Registers ports 0x60 and 0x64. */
int i8042_register(struct i8042 *k, struct io_bus *bus);

void i8042_data_read(void *dev, uint64_t off, unsigned len, uint64_t *data);
void i8042_data_write(void *dev, uint64_t off, unsigned len, uint64_t data);
void i8042_cmd_read(void *dev, uint64_t off, unsigned len, uint64_t *data);
void i8042_cmd_write(void *dev, uint64_t off, unsigned len, uint64_t data);

#endif
