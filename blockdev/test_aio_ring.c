// SPDX-License-Identifier: MIT
/*
 * The io_uring engine on a temporary file, driven as its owner does:
 * reads, writes, fdatasync, many queued and handed over by one wait, a
 * transfer continued from complete(), errors passed through, refused
 * operations, the depth (-EBUSY beyond it), and wakes from other threads
 * (each wakes the owner once, however many there are; one that lands
 * before the owner waits is not lost). Where io_uring is not available (an
 * old kernel, a seccomp filter) the tests are skipped: virtio-blk then
 * keeps to its synchronous workers, which test_virtio_blk covers.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "blockdev/aio_ring.h"

#define FILE_SIZE (1u << 20)
#define DEPTH     8
#define MAX_WAITS 100000     /* bounds a broken build; no test depends on it */

struct fx {
	char dir[64], path[96];
	int fd;
	struct aio_ring *ring;
	unsigned done;
};

struct op {
	struct aio_ring_op op;
	struct fx *f;
	int res;
	bool finished;
	/* For a transfer done in two halves. */
	struct iovec iov[2];
	int halves;
	uint64_t total;
};

static int setup(void **state)
{
	struct fx *f = test_calloc(1, sizeof(*f));
	char err[256] = "";

	snprintf(f->dir, sizeof(f->dir), "/tmp/grappe-aio-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/file", f->dir);
	f->fd = open(f->path, O_CREAT | O_RDWR, 0600);
	assert_true(f->fd >= 0);
	assert_int_equal(ftruncate(f->fd, FILE_SIZE), 0);
	if (aio_ring_create(&f->ring, DEPTH, err, sizeof(err))) {
		print_message("no io_uring here (%s): skipped\n", err);
		assert_null(f->ring);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	aio_ring_destroy(f->ring);
	close(f->fd);
	unlink(f->path);
	rmdir(f->dir);
	test_free(f);
	return 0;
}

static void need_ring(struct fx *f)
{
	if (!f->ring)
		skip();
}

static void complete(struct aio_ring_op *op, int res)
{
	struct op *o = (struct op *)op;

	/* The first half of a two-part transfer: go on with the second. */
	if (o->halves == 2 && res > 0 && (uint64_t)res == o->iov[0].iov_len) {
		o->halves = 1;
		o->total += (uint64_t)res;
		op->off += (uint64_t)res;
		op->iov = &o->iov[1];
		op->iovcnt = 1;
		assert_int_equal(aio_ring_submit(o->f->ring, op), 0);
		return;
	}
	assert_false(o->finished);
	o->res = res;
	if (res > 0)
		o->total += (uint64_t)res;
	o->finished = true;
	o->f->done++;
}

/* As the owner does: wait until at least n operations are done. */
static void run_until(struct fx *f, unsigned n)
{
	for (unsigned i = 0; f->done < n && i < MAX_WAITS; i++)
		aio_ring_wait(f->ring);
	assert_true(f->done >= n);
}

static void prep(struct op *o, struct fx *f, enum aio_ring_kind kind, void *buf, size_t len,
		 uint64_t off)
{
	memset(o, 0, sizeof(*o));
	o->f = f;
	o->iov[0] = (struct iovec){ buf, len };
	o->op = (struct aio_ring_op){ .kind = kind, .fd = f->fd, .iov = o->iov, .iovcnt = 1,
				      .off = off, .complete = complete };
}

static void test_read_write_sync(void **state)
{
	struct fx *f = *state;
	uint8_t out[8192], in[8192], file[8192];
	struct op w, r, s;

	need_ring(f);
	for (unsigned i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 31 + 7);
	prep(&w, f, AIO_RING_WRITEV, out, sizeof(out), 12288);
	assert_int_equal(aio_ring_submit(f->ring, &w.op), 0);
	assert_int_equal(aio_ring_in_flight(f->ring), 1);
	assert_int_equal(aio_ring_room(f->ring), DEPTH - 1);
	run_until(f, 1);
	assert_int_equal(w.res, sizeof(out));
	assert_int_equal(pread(f->fd, file, sizeof(file), 12288), sizeof(file));
	assert_memory_equal(file, out, sizeof(out));

	memset(in, 0, sizeof(in));
	prep(&r, f, AIO_RING_READV, in, sizeof(in), 12288);
	assert_int_equal(aio_ring_submit(f->ring, &r.op), 0);
	prep(&s, f, AIO_RING_FDATASYNC, NULL, 0, 0);
	assert_int_equal(aio_ring_submit(f->ring, &s.op), 0);
	run_until(f, 3);
	assert_int_equal(r.res, sizeof(in));
	assert_memory_equal(in, out, sizeof(in));
	assert_int_equal(s.res, 0);
	assert_int_equal(aio_ring_in_flight(f->ring), 0);
	assert_int_equal(aio_ring_room(f->ring), DEPTH);
}

/* complete() may submit the rest of a transfer; it is still one operation. */
static void test_resubmit(void **state)
{
	struct fx *f = *state;
	static uint8_t out[65536], in[65536];
	struct op w, r;

	need_ring(f);
	for (unsigned i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i ^ (i >> 8));
	prep(&w, f, AIO_RING_WRITEV, out, 4096, 0);
	w.iov[1] = (struct iovec){ out + 4096, sizeof(out) - 4096 };
	w.halves = 2;
	assert_int_equal(aio_ring_submit(f->ring, &w.op), 0);
	run_until(f, 1);
	assert_int_equal(w.res, sizeof(out) - 4096);
	assert_int_equal(w.total, sizeof(out));
	prep(&r, f, AIO_RING_READV, in, 512, 0);
	r.iov[1] = (struct iovec){ in + 512, sizeof(in) - 512 };
	r.halves = 2;
	assert_int_equal(aio_ring_submit(f->ring, &r.op), 0);
	run_until(f, 2);
	assert_int_equal(r.total, sizeof(in));
	assert_memory_equal(in, out, sizeof(in));
	assert_int_equal(aio_ring_in_flight(f->ring), 0);
}

/* The kernel's errors come back as they are; malformed operations are refused. */
static void test_errors_and_refusals(void **state)
{
	struct fx *f = *state;
	int ro = open(f->path, O_RDONLY);
	uint8_t buf[512];
	struct op w, bad;

	need_ring(f);
	assert_true(ro >= 0);
	prep(&w, f, AIO_RING_WRITEV, buf, sizeof(buf), 0);
	w.op.fd = ro;
	assert_int_equal(aio_ring_submit(f->ring, &w.op), 0);
	run_until(f, 1);
	assert_int_equal(w.res, -EBADF);
	close(ro);

	prep(&bad, f, AIO_RING_READV, buf, sizeof(buf), 0);
	bad.op.iovcnt = 0;
	assert_int_equal(aio_ring_submit(f->ring, &bad.op), -EINVAL);
	bad.op.iovcnt = IOV_MAX + 1;
	assert_int_equal(aio_ring_submit(f->ring, &bad.op), -EINVAL);
	bad.op.iovcnt = 1;
	bad.op.fd = -1;
	assert_int_equal(aio_ring_submit(f->ring, &bad.op), -EINVAL);
	bad.op.fd = f->fd;
	bad.op.complete = NULL;
	assert_int_equal(aio_ring_submit(f->ring, &bad.op), -EINVAL);
	assert_int_equal(aio_ring_in_flight(f->ring), 0);
}

static void test_bad_depth(void **state)
{
	struct aio_ring *r = NULL;
	char err[128];

	(void)state;
	assert_int_equal(aio_ring_create(&r, 6, err, sizeof(err)), -EINVAL);
	assert_null(r);
	assert_int_equal(aio_ring_create(&r, 2, err, sizeof(err)), -EINVAL);
	assert_int_equal(aio_ring_create(&r, 8192, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "power of two"));
	aio_ring_destroy(NULL);
}

/* DEPTH at once, all handed over by one wait; one more is refused until room comes back. */
static void test_depth(void **state)
{
	struct fx *f = *state;
	static uint8_t bufs[DEPTH + 1][512];
	struct op ops[DEPTH + 1];
	uint8_t sector[512];

	need_ring(f);
	for (unsigned i = 0; i <= DEPTH; i++) {
		memset(bufs[i], 0xa0 + (int)i, sizeof(bufs[i]));
		prep(&ops[i], f, AIO_RING_WRITEV, bufs[i], sizeof(bufs[i]), (uint64_t)i * 512);
	}
	for (unsigned i = 0; i < DEPTH; i++)
		assert_int_equal(aio_ring_submit(f->ring, &ops[i].op), 0);
	assert_int_equal(aio_ring_room(f->ring), 0);
	assert_int_equal(aio_ring_submit(f->ring, &ops[DEPTH].op), -EBUSY);
	run_until(f, 1);
	assert_true(aio_ring_room(f->ring) >= 1);
	assert_int_equal(aio_ring_submit(f->ring, &ops[DEPTH].op), 0);
	run_until(f, DEPTH + 1);
	assert_int_equal(f->done, DEPTH + 1);
	for (unsigned i = 0; i <= DEPTH; i++) {
		assert_int_equal(ops[i].res, 512);
		assert_int_equal(pread(f->fd, sector, sizeof(sector), (off_t)i * 512), 512);
		assert_int_equal(sector[0], 0xa0 + i);
	}
}

struct waker {
	struct aio_ring *ring;
	unsigned n;
	unsigned delay_us;
};

static void *wake_main(void *arg)
{
	struct waker *w = arg;

	usleep(w->delay_us);
	for (unsigned i = 0; i < w->n; i++)
		aio_ring_wake(w->ring);
	return NULL;
}

/* Wakes from other threads: the owner's wait returns; many coalesce; none is lost. */
static void test_wake(void **state)
{
	struct fx *f = *state;
	struct waker many = { .ring = f->ring, .n = 1000 }, late = { .ring = f->ring, .n = 1,
								      .delay_us = 10000 };
	pthread_t t[3];
	struct op s;

	need_ring(f);
	/* A wake before the owner waits makes that wait return at once. */
	aio_ring_wake(f->ring);
	assert_true(aio_ring_wait(f->ring));
	/* 3000 wakes while the owner is busy: its next wait returns, once. */
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&t[i], NULL, wake_main, &many), 0);
	for (unsigned i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	assert_true(aio_ring_wait(f->ring));
	prep(&s, f, AIO_RING_FDATASYNC, NULL, 0, 0);
	assert_int_equal(aio_ring_submit(f->ring, &s.op), 0);
	while (!s.finished)
		assert_false(aio_ring_wait(f->ring));     /* nothing else pending */
	/* A wake while the owner sleeps. */
	assert_int_equal(pthread_create(&t[0], NULL, wake_main, &late), 0);
	assert_true(aio_ring_wait(f->ring));
	pthread_join(t[0], NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_read_write_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resubmit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors_and_refusals, setup, teardown),
		cmocka_unit_test(test_bad_depth),
		cmocka_unit_test_setup_teardown(test_depth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wake, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
