// SPDX-License-Identifier: MIT
/*
 * The raw-file blockdev: reads and writes through iovecs, flush, discard,
 * write-zeroes (with and without a filesystem that can punch holes),
 * read-only images, O_DIRECT with unaligned buffers, locking, errors; and
 * the same through asynchronous requests (io_uring), with many in flight.
 * Asynchronous tests are skipped where io_uring is not available.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "blockdev/aio_ring.h"
#include "blockdev/file_store.h"

#define SIZE (1u << 20)

struct fx {
	char dir[64];
	char path[96];
};

static int setup(void **state)
{
	struct fx *f = test_calloc(1, sizeof(*f));
	uint8_t *buf = test_malloc(SIZE);
	int fd;

	snprintf(f->dir, sizeof(f->dir), "/tmp/grappe-fs-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/disk.img", f->dir);
	for (unsigned i = 0; i < SIZE; i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	fd = open(f->path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, SIZE), SIZE);
	close(fd);
	test_free(buf);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	unlink(f->path);
	rmdir(f->dir);
	test_free(f);
	return 0;
}

static struct blockdev *open_ok(struct fx *f, bool ro, enum file_store_cache cache)
{
	struct file_store_opts o = { .read_only = ro, .cache = cache };
	struct blockdev *bd = NULL;
	char err[256] = "";

	if (file_store_open(f->path, &o, &bd, err, sizeof(err)))
		print_error("%s\n", err);
	assert_non_null(bd);
	return bd;
}

static uint8_t expect_byte(uint64_t off)
{
	return (uint8_t)(off * 7 + 3);
}

static void test_read_write(void **state)
{
	struct fx *f = *state;
	struct blockdev *bd = open_ok(f, false, FILE_STORE_WRITEBACK);
	uint8_t a[512], b[1024], c[512];
	struct iovec iov[3] = { { a, sizeof(a) }, { b, sizeof(b) }, { c, sizeof(c) } };

	assert_int_equal(blockdev_size(bd), SIZE);
	assert_int_equal(bd->block_size, 512);
	assert_false(bd->read_only);
	assert_int_equal(blockdev_read(bd, iov, 3, 4096), 0);
	for (unsigned i = 0; i < 512; i++) {
		assert_int_equal(a[i], expect_byte(4096 + i));
		assert_int_equal(c[i], expect_byte(4096 + 1536 + i));
	}
	memset(a, 0xaa, sizeof(a));
	memset(b, 0xbb, sizeof(b));
	memset(c, 0xcc, sizeof(c));
	assert_int_equal(blockdev_write(bd, iov, 3, 8192), 0);
	assert_int_equal(blockdev_flush(bd), 0);
	memset(b, 0, sizeof(b));
	assert_int_equal(blockdev_read(bd, &iov[1], 1, 8192 + 256), 0);
	assert_int_equal(b[0], 0xaa);
	assert_int_equal(b[256], 0xbb);
	assert_int_equal(b[1023], 0xbb);
	blockdev_close(bd);
}

static void check_zero(struct blockdev *bd, uint64_t off, size_t len, bool zero)
{
	uint8_t *buf = test_malloc(len);
	struct iovec iov = { buf, len };

	assert_int_equal(blockdev_read(bd, &iov, 1, off), 0);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(buf[i], zero ? 0 : expect_byte(off + i));
	test_free(buf);
}

static void test_zeroes_and_discard(void **state)
{
	struct fx *f = *state;
	struct blockdev *bd = open_ok(f, false, FILE_STORE_WRITEBACK);
	struct stat st;

	assert_true(bd->discard);
	assert_int_equal(blockdev_write_zeroes(bd, 65536, 8192, false), 0);
	check_zero(bd, 65536, 8192, true);
	check_zero(bd, 65536 - 512, 512, false);
	check_zero(bd, 65536 + 8192, 512, false);
	assert_int_equal(blockdev_write_zeroes(bd, 131072, 131072, true), 0);
	check_zero(bd, 131072, 131072, true);
	/* A discarded range reads back as zeros here (a hole), or as before. */
	assert_int_equal(blockdev_discard(bd, 4 * 65536, 65536), 0);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_size, SIZE);       /* holes keep the size */
	check_zero(bd, 5 * 65536, 65536, false);
	blockdev_close(bd);
}

static void test_read_only(void **state)
{
	struct fx *f = *state;
	struct blockdev *bd = open_ok(f, true, FILE_STORE_WRITEBACK), *bd2;
	uint8_t a[512];
	struct iovec iov = { a, sizeof(a) };

	assert_true(bd->read_only);
	assert_int_equal(blockdev_read(bd, &iov, 1, 0), 0);
	assert_int_equal(blockdev_write(bd, &iov, 1, 0), -EROFS);
	assert_int_equal(blockdev_discard(bd, 0, 512), -EROFS);
	assert_int_equal(blockdev_write_zeroes(bd, 0, 512, true), -EROFS);
	assert_int_equal(blockdev_flush(bd), 0);
	/* Readers share the image. */
	bd2 = open_ok(f, true, FILE_STORE_WRITEBACK);
	blockdev_close(bd2);
	blockdev_close(bd);
	check_zero(bd = open_ok(f, true, FILE_STORE_UNSAFE), 0, 512, false);
	blockdev_close(bd);
}

static void test_lock(void **state)
{
	struct fx *f = *state;
	struct blockdev *bd = open_ok(f, false, FILE_STORE_WRITEBACK), *bd2 = NULL;
	struct file_store_opts o = { .read_only = false };
	char err[256];

	assert_int_equal(file_store_open(f->path, &o, &bd2, err, sizeof(err)), -1);
	assert_null(bd2);
	assert_non_null(strstr(err, "in use"));
	o.read_only = true;
	assert_int_equal(file_store_open(f->path, &o, &bd2, err, sizeof(err)), -1);
	blockdev_close(bd);
	bd = open_ok(f, false, FILE_STORE_WRITEBACK);
	blockdev_close(bd);
}

static void test_errors(void **state)
{
	struct fx *f = *state;
	struct file_store_opts o = { 0 };
	struct blockdev *bd = (void *)1;
	char err[256], path[128];

	snprintf(path, sizeof(path), "%s/missing.img", f->dir);
	assert_int_equal(file_store_open(path, &o, &bd, err, sizeof(err)), -1);
	assert_null(bd);
	assert_non_null(strstr(err, "missing.img: No such file"));
	assert_int_equal(file_store_open(f->dir, &o, &bd, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "Is a directory"));
	o.read_only = true;
	assert_int_equal(file_store_open(f->dir, &o, &bd, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a regular file or a block device"));
	assert_int_equal(file_store_open("/dev/null", &o, &bd, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/dev/null: not a regular file"));
	blockdev_close(NULL);
}

/* A file that shrank under us reads zeros past its end. */
static void test_short_read(void **state)
{
	struct fx *f = *state;
	struct blockdev *bd = open_ok(f, false, FILE_STORE_WRITEBACK);
	uint8_t buf[4096];
	struct iovec iov = { buf, sizeof(buf) };

	assert_int_equal(truncate(f->path, SIZE - 1024), 0);
	memset(buf, 0x55, sizeof(buf));
	assert_int_equal(blockdev_read(bd, &iov, 1, SIZE - 4096), 0);
	assert_int_equal(buf[0], expect_byte(SIZE - 4096));
	assert_int_equal(buf[3071], expect_byte(SIZE - 1025));
	assert_int_equal(buf[3072], 0);
	assert_int_equal(buf[4095], 0);
	blockdev_close(bd);
}

static void test_direct(void **state)
{
	struct fx *f = *state;
	struct file_store_opts o = { .cache = FILE_STORE_NONE };
	struct blockdev *bd = NULL;
	char err[256];
	uint8_t *mem = test_malloc(3 * 4096);
	uint8_t *aligned = (uint8_t *)(((uintptr_t)mem + 4095) & ~(uintptr_t)4095);
	struct iovec iov;

	if (file_store_open(f->path, &o, &bd, err, sizeof(err))) {
		/* tmpfs before Linux 6.6 has no O_DIRECT: the message says so. */
		assert_non_null(strstr(err, "needs O_DIRECT"));
		test_free(mem);
		skip();
	}
	/* Aligned: the O_DIRECT descriptor. */
	iov = (struct iovec){ aligned, 4096 };
	memset(aligned, 0x11, 4096);
	assert_int_equal(blockdev_write(bd, &iov, 1, 4096), 0);
	/* Unaligned buffer: the buffered descriptor, same file, coherent. */
	iov = (struct iovec){ aligned + 1, 512 };
	assert_int_equal(blockdev_read(bd, &iov, 1, 4096), 0);
	assert_int_equal(aligned[1], 0x11);
	memset(aligned + 1, 0x22, 512);
	assert_int_equal(blockdev_write(bd, &iov, 1, 8192), 0);
	iov = (struct iovec){ aligned, 4096 };
	assert_int_equal(blockdev_read(bd, &iov, 1, 8192), 0);
	assert_int_equal(aligned[0], 0x22);
	assert_int_equal(aligned[511], 0x22);
	assert_int_equal(aligned[512], expect_byte(8192 + 512));
	/* The zero buffer is aligned too. */
	assert_int_equal(blockdev_write_zeroes(bd, 12288, 4096, false), 0);
	assert_int_equal(blockdev_read(bd, &iov, 1, 12288), 0);
	assert_int_equal(aligned[100], 0);
	assert_int_equal(blockdev_flush(bd), 0);
	blockdev_close(bd);
	test_free(mem);
}

/* ---- asynchronous requests ---- */

struct areq {
	struct blockdev_req req;     /* first: done() gets it back */
	int rc;
	bool finished;
};

static struct aio_ring *ring;     /* the test is its owner thread */
static unsigned a_done;

static void areq_done(struct blockdev_req *req, int rc)
{
	struct areq *a = (struct areq *)req;

	assert_false(a->finished);      /* exactly once */
	a->rc = rc;
	a->finished = true;
	a_done++;
}

static void areq_init(struct areq *a, enum blockdev_req_op op, const struct iovec *iov, int n,
		      uint64_t off)
{
	memset(a, 0, sizeof(*a));
	a->req = (struct blockdev_req){ .op = op, .iov = iov, .iovcnt = n, .off = off,
					.done = areq_done };
}

/* Waits on the ring, as a virtqueue worker does, until `total` requests are done. */
static void areq_wait(unsigned total)
{
	for (unsigned i = 0; a_done < total && i < 100000; i++)
		aio_ring_wait(ring);
	assert_true(a_done >= total);
}

static int do_async(struct blockdev *bd, enum blockdev_req_op op, const struct iovec *iov, int n,
		    uint64_t off)
{
	struct areq a;
	int rc;

	areq_init(&a, op, iov, n, off);
	rc = blockdev_submit(bd, ring, &a.req);
	if (rc)
		return 1000 + rc;        /* refused: distinguishable from a completion */
	areq_wait(a_done + !a.finished);
	return a.rc;
}

static int setup_async(void **state)
{
	char err[256] = "";

	setup(state);
	a_done = 0;
	if (aio_ring_create(&ring, 64, err, sizeof(err))) {
		print_message("no io_uring here (%s): asynchronous tests skipped\n", err);
		ring = NULL;
	}
	return 0;
}

static int teardown_async(void **state)
{
	aio_ring_destroy(ring);
	ring = NULL;
	return teardown(state);
}

static struct blockdev *open_async(struct fx *f, bool ro, enum file_store_cache cache)
{
	if (!ring)
		skip();
	return open_ok(f, ro, cache);
}

static void test_async_read_write(void **state)
{
	struct fx *f = *state;
	struct blockdev *bd = open_async(f, false, FILE_STORE_WRITEBACK);
	uint8_t out[3 * 1024], in[3 * 1024], file[3 * 1024];
	struct iovec wv[3] = { { out, 512 }, { out + 512, 1536 }, { out + 2048, 1024 } };
	struct iovec rv[2] = { { in, 2560 }, { in + 2560, 512 } };
	struct iovec one = { file, sizeof(file) };

	assert_true(blockdev_has_submit(bd));
	for (unsigned i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 13 + 5);
	assert_int_equal(do_async(bd, BLOCKDEV_REQ_WRITE, wv, 3, 4096), 0);
	assert_int_equal(blockdev_read(bd, &one, 1, 4096), 0);
	assert_memory_equal(file, out, sizeof(out));
	memset(in, 0, sizeof(in));
	assert_int_equal(do_async(bd, BLOCKDEV_REQ_READ, rv, 2, 4096), 0);
	assert_memory_equal(in, out, sizeof(in));
	assert_int_equal(do_async(bd, BLOCKDEV_REQ_READ, rv, 2, 8192), 0);
	assert_int_equal(in[0], expect_byte(8192));
	assert_int_equal(in[3071], expect_byte(8192 + 3071));
	assert_int_equal(do_async(bd, BLOCKDEV_REQ_FLUSH, NULL, 0, 0), 0);
	/* More iovecs than one system call takes: the caller must go synchronous. */
	{
		struct iovec *many = calloc(IOV_MAX + 1, sizeof(*many));

		assert_non_null(many);
		for (int i = 0; i <= IOV_MAX; i++)
			many[i] = (struct iovec){ in, 512 };
		assert_int_equal(do_async(bd, BLOCKDEV_REQ_READ, many, IOV_MAX + 1, 0),
				 1000 - EINVAL);
		free(many);
	}
	blockdev_close(bd);
}

/* A file that shrank: zeros past its end, as synchronously. */
static void test_async_short_read(void **state)
{
	struct fx *f = *state;
	struct blockdev *bd = open_async(f, false, FILE_STORE_WRITEBACK);
	uint8_t buf[4096];
	struct iovec iov = { buf, sizeof(buf) };

	assert_int_equal(truncate(f->path, SIZE - 1024), 0);
	memset(buf, 0x55, sizeof(buf));
	assert_int_equal(do_async(bd, BLOCKDEV_REQ_READ, &iov, 1, SIZE - 4096), 0);
	assert_int_equal(buf[0], expect_byte(SIZE - 4096));
	assert_int_equal(buf[3071], expect_byte(SIZE - 1025));
	assert_int_equal(buf[3072], 0);
	assert_int_equal(buf[4095], 0);
	blockdev_close(bd);
}

static void test_async_read_only(void **state)
{
	struct fx *f = *state;
	struct blockdev *bd = open_async(f, true, FILE_STORE_WRITEBACK);
	uint8_t buf[512];
	struct iovec iov = { buf, sizeof(buf) };

	memset(buf, 0x77, sizeof(buf));
	assert_int_equal(do_async(bd, BLOCKDEV_REQ_WRITE, &iov, 1, 0), -EROFS);
	assert_int_equal(do_async(bd, BLOCKDEV_REQ_FLUSH, NULL, 0, 0), 0);
	assert_int_equal(do_async(bd, BLOCKDEV_REQ_READ, &iov, 1, 0), 0);
	assert_int_equal(buf[0], expect_byte(0));
	blockdev_close(bd);
}

/* O_DIRECT: aligned requests on the direct descriptor, unaligned ones buffered, coherent. */
static void test_async_direct(void **state)
{
	struct fx *f = *state;
	struct file_store_opts o = { .cache = FILE_STORE_NONE };
	struct blockdev *bd = NULL;
	char err[256];
	uint8_t *mem = test_malloc(3 * 4096);
	uint8_t *aligned = (uint8_t *)(((uintptr_t)mem + 4095) & ~(uintptr_t)4095);
	struct iovec iov;

	if (!ring || file_store_open(f->path, &o, &bd, err, sizeof(err))) {
		assert_true(!ring || strstr(err, "needs O_DIRECT"));
		test_free(mem);
		skip();
	}
	iov = (struct iovec){ aligned, 4096 };
	memset(aligned, 0x11, 4096);
	assert_int_equal(do_async(bd, BLOCKDEV_REQ_WRITE, &iov, 1, 4096), 0);
	iov = (struct iovec){ aligned + 1, 512 };
	assert_int_equal(do_async(bd, BLOCKDEV_REQ_READ, &iov, 1, 4096), 0);
	assert_int_equal(aligned[1], 0x11);
	memset(aligned + 1, 0x22, 512);
	assert_int_equal(do_async(bd, BLOCKDEV_REQ_WRITE, &iov, 1, 8192), 0);
	iov = (struct iovec){ aligned, 4096 };
	assert_int_equal(do_async(bd, BLOCKDEV_REQ_READ, &iov, 1, 8192), 0);
	assert_int_equal(aligned[0], 0x22);
	assert_int_equal(aligned[511], 0x22);
	assert_int_equal(aligned[512], expect_byte(8192 + 512));
	assert_int_equal(do_async(bd, BLOCKDEV_REQ_FLUSH, NULL, 0, 0), 0);
	blockdev_close(bd);
	test_free(mem);
}

#define MANY 300      /* more than the ring's depth: the submitter waits for room */

/* Hundreds from one thread, as many in flight as the ring takes, each its own 2 KiB; all land. */
static void test_async_many(void **state)
{
	struct fx *f = *state;
	struct blockdev *bd = open_async(f, false, FILE_STORE_WRITEBACK);
	struct areq *a = test_calloc(MANY, sizeof(*a));
	uint8_t (*buf)[2048] = test_malloc(MANY * sizeof(*buf));
	struct iovec *iov = test_calloc(MANY, sizeof(*iov));
	unsigned before = a_done;
	int fd;

	for (unsigned i = 0; i < MANY; i++) {
		memset(buf[i], (int)(i % 251) + 1, sizeof(buf[i]));
		iov[i] = (struct iovec){ buf[i], sizeof(buf[i]) };
		areq_init(&a[i], BLOCKDEV_REQ_WRITE, &iov[i], 1, (uint64_t)i * 2048);
		while (!aio_ring_room(ring))
			aio_ring_wait(ring);
		assert_int_equal(blockdev_submit(bd, ring, &a[i].req), 0);
	}
	areq_wait(before + MANY);
	fd = open(f->path, O_RDONLY);
	assert_true(fd >= 0);
	for (unsigned i = 0; i < MANY; i++) {
		uint8_t got[2048];

		assert_int_equal(a[i].rc, 0);
		assert_int_equal(pread(fd, got, sizeof(got), (off_t)i * 2048), sizeof(got));
		assert_memory_equal(got, buf[i], sizeof(got));
	}
	close(fd);
	blockdev_close(bd);
	test_free(iov);
	test_free(buf);
	test_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_read_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zeroes_and_discard, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_direct, setup, teardown),
		cmocka_unit_test_setup_teardown(test_async_read_write, setup_async, teardown_async),
		cmocka_unit_test_setup_teardown(test_async_short_read, setup_async, teardown_async),
		cmocka_unit_test_setup_teardown(test_async_read_only, setup_async, teardown_async),
		cmocka_unit_test_setup_teardown(test_async_direct, setup_async, teardown_async),
		cmocka_unit_test_setup_teardown(test_async_many, setup_async, teardown_async),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
