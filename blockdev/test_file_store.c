// SPDX-License-Identifier: MIT
/*
 * The raw-file blockdev: reads and writes through iovecs, flush, discard,
 * write-zeroes (with and without a filesystem that can punch holes),
 * read-only images, O_DIRECT with unaligned buffers, locking, errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
