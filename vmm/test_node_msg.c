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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrips),
		cmocka_unit_test(test_refusals),
	};

	return cmocka_run_group_tests_name("node_msg", tests, NULL, NULL);
}
