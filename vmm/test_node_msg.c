// SPDX-License-Identifier: MIT
/* Node-to-node VMM messages: round trips and refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/node_msg.h"

static void roundtrip(const struct node_msg *m)
{
	uint8_t buf[NODE_MSG_MAX_BYTES];
	struct node_msg out;
	const char *why = NULL;
	int n = node_msg_encode(m, buf, sizeof(buf));

	assert_true(n > 0);
	assert_int_equal(node_msg_decode(m->type, buf, (size_t)n, &out, &why), 0);
	assert_int_equal(out.type, m->type);
	/* One byte short is truncated; one extra is trailing garbage. */
	assert_int_equal(node_msg_decode(m->type, buf, (size_t)n - 1, &out, &why), -EINVAL);
	buf[n] = 0;
	assert_int_equal(node_msg_decode(m->type, buf, (size_t)n + 1, &out, &why), -EINVAL);
	assert_string_equal(why, "trailing bytes");
}

static void test_roundtrips(void **state)
{
	struct node_msg m;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.type = NODE_MSG_APIC;
	m.u.apic.vcpu = 3;
	m.u.apic.msg = (struct apic_msg){ .vector = 0xfd, .delivery = APIC_DM_FIXED, .dest = 3 };
	roundtrip(&m);
	m.type = NODE_MSG_IO_REQ;
	m.u.io = (struct io_req){ .space = IO_SPACE_PIO, .is_write = 1, .len = 1, .addr = 0x3f8, .data = 'A' };
	roundtrip(&m);
	m.type = NODE_MSG_EVENT;
	m.u.event.event = 2;
	strcpy(m.u.event.text, "vCPU 3: unhandled exit");
	roundtrip(&m);
	m.type = NODE_MSG_CLOCK;
	m.u.clock.clock_ns = 123456789;
	roundtrip(&m);
	m.type = NODE_MSG_APIC_ID;
	m.u.apic_id.ldr = 0x01000000;
	roundtrip(&m);
	m.type = NODE_MSG_EOI;
	roundtrip(&m);
	m.type = NODE_MSG_READY;
	roundtrip(&m);
}

static void test_refusals(void **state)
{
	uint8_t buf[64] = { 0 };
	struct node_msg m;
	const char *why = NULL;

	(void)state;
	/* I/O of length 3, and a port above 0xffff */
	uint8_t io[21] = { 0, 0, 3 };
	assert_int_equal(node_msg_decode(NODE_MSG_IO_REQ, io, sizeof(io), &m, &why), -EINVAL);
	assert_non_null(strstr(why, "size"));
	uint8_t io2[21] = { 0, 0, 1, 0, 0, 0, 0, 1 };
	assert_int_equal(node_msg_decode(NODE_MSG_IO_REQ, io2, sizeof(io2), &m, &why), -EINVAL);
	/* reserved delivery mode 3 */
	uint8_t ap[10] = { 0, 0, 0x30, 3 };
	assert_int_equal(node_msg_decode(NODE_MSG_APIC, ap, sizeof(ap), &m, &why), -EINVAL);
	/* event text longer than the limit */
	buf[0] = 1;
	buf[1] = 250;
	assert_int_equal(node_msg_decode(NODE_MSG_EVENT, buf, 2, &m, &why), -EINVAL);
	/* unknown type */
	assert_int_equal(node_msg_decode(0x999, buf, 1, &m, &why), -EINVAL);
	m.type = 0x999;
	assert_int_equal(node_msg_encode(&m, buf, sizeof(buf)), -EINVAL);
	/* control characters in event text are neutralised */
	uint8_t ev[5] = { 1, 3, 'a', 0x1b, 'b' };
	assert_int_equal(node_msg_decode(NODE_MSG_EVENT, ev, sizeof(ev), &m, &why), 0);
	assert_string_equal(m.u.event.text, "a?b");
}

static struct node_msg vq_start(void)
{
	struct node_msg m = { .type = NODE_MSG_VQ_START };

	m.u.vq = (struct node_msg_vq){
		.disk = 1, .queue = 3, .size = 256, .vector = 4, .features = 1ULL << 32 | 1ULL << 12,
		.notify_gpa = 0xfe00300c, .desc = 0x12340, .driver = 0x22342, .device = 0x33344,
		.msix_addr = 0xfee01000, .msix_data = 0x4041, .msix_flags = NODE_MSG_VQ_MSIX_DIRECT,
	};
	return m;
}

/* The disk queue messages carry exactly their fields, and come back equal. */
static void test_vq_roundtrips(void **state)
{
	static const uint16_t types[] = {
		NODE_MSG_VQ_START, NODE_MSG_VQ_MSIX, NODE_MSG_VQ_KICK, NODE_MSG_VQ_RESET,
		NODE_MSG_VQ_RESET_DONE, NODE_MSG_VQ_IRQ, NODE_MSG_VQ_FAIL,
	};
	static const int lengths[] = { 60, 16, 3, 5, 5, 3, 3 };
	uint8_t buf[NODE_MSG_MAX_BYTES];
	struct node_msg m = vq_start(), out;
	const char *why;

	(void)state;
	assert_int_equal(node_msg_encode(&m, buf, sizeof(buf)), 60);
	assert_int_equal(node_msg_decode(m.type, buf, 60, &out, &why), 0);
	assert_memory_equal(&out, &m, sizeof(m));
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		struct node_msg v = { .type = types[i] };

		v.u.vq.disk = 2;
		v.u.vq.queue = types[i] == NODE_MSG_VQ_RESET || types[i] == NODE_MSG_VQ_RESET_DONE ? 0 : 5;
		v.u.vq.seq = v.u.vq.queue ? 0 : 77;
		if (types[i] == NODE_MSG_VQ_MSIX)
			v.u.vq.msix_addr = 0xfee00000;
		if (types[i] == NODE_MSG_VQ_START)
			v = vq_start();
		assert_int_equal(node_msg_encode(&v, buf, sizeof(buf)), lengths[i]);
		roundtrip(&v);
		assert_int_equal(node_msg_decode(v.type, buf, (size_t)lengths[i], &out, &why), 0);
		assert_memory_equal(&out, &v, sizeof(v));
	}
}

static void expect_refused(const struct node_msg *m, const char *what)
{
	uint8_t buf[NODE_MSG_MAX_BYTES];
	struct node_msg out;
	const char *why = NULL;
	int n = node_msg_encode(m, buf, sizeof(buf));

	assert_true(n > 0);
	assert_int_equal(node_msg_decode(m->type, buf, (size_t)n, &out, &why), -EINVAL);
	assert_non_null(why);
	assert_non_null(strstr(why, what));
}

static void test_vq_refusals(void **state)
{
	struct node_msg m;

	(void)state;
	m = vq_start();
	m.u.vq.disk = NODE_MSG_VQ_MAX_DISKS;
	expect_refused(&m, "disk");
	m = vq_start();
	m.u.vq.queue = NODE_MSG_VQ_MAX_QUEUES;
	expect_refused(&m, "queue out of range");
	m = vq_start();
	m.u.vq.size = 96;
	expect_refused(&m, "power of two");
	m.u.vq.size = 0;
	expect_refused(&m, "power of two");
	m = vq_start();
	m.u.vq.vector = 128;
	expect_refused(&m, "vector");
	m.u.vq.vector = NODE_MSG_VQ_NO_VECTOR;		/* no vector is fine */
	roundtrip(&m);
	m = vq_start();
	m.u.vq.features = 1ULL << 12;
	expect_refused(&m, "VERSION_1");
	m = vq_start();
	m.u.vq.desc |= 8;
	expect_refused(&m, "misaligned");
	m = vq_start();
	m.u.vq.driver |= 1;
	expect_refused(&m, "misaligned");
	m = vq_start();
	m.u.vq.device |= 2;
	expect_refused(&m, "misaligned");
	m = vq_start();
	m.u.vq.notify_gpa |= 1;
	expect_refused(&m, "misaligned");
	m = vq_start();
	m.u.vq.msix_flags = 2;
	expect_refused(&m, "flags");
	m = vq_start();
	m.u.vq.msix_addr = 0xfec00000;	/* the IOAPIC, not an MSI */
	expect_refused(&m, "0xFEE00000");
	m.u.vq.msix_flags = 0;		/* left to the I/O node: any address is its business */
	roundtrip(&m);
	m = (struct node_msg){ .type = NODE_MSG_VQ_KICK };
	m.u.vq.queue = 200;
	expect_refused(&m, "queue");
	m = (struct node_msg){ .type = NODE_MSG_VQ_RESET };
	m.u.vq.disk = 200;
	expect_refused(&m, "disk");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrips),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_vq_roundtrips),
		cmocka_unit_test(test_vq_refusals),
	};

	return cmocka_run_group_tests_name("node_msg", tests, NULL, NULL);
}
