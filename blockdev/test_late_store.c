// SPDX-License-Identifier: MIT
/* The stand-in store: fails before attach and after detach, forwards between. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "blockdev/late_store.h"

#define SIZE 8192

/* A store in memory that counts its calls. */
struct mem_store {
	struct blockdev bd;
	uint8_t data[SIZE];
	int flushes, discards, zeroes, closed;
};

static int mem_rw(struct blockdev *bd, const struct iovec *iov, int iovcnt, uint64_t off,
		  bool write)
{
	struct mem_store *m = (struct mem_store *)bd;

	for (int i = 0; i < iovcnt; off += iov[i].iov_len, i++) {
		if (off + iov[i].iov_len > SIZE)
			return -EIO;
		if (write)
			memcpy(m->data + off, iov[i].iov_base, iov[i].iov_len);
		else
			memcpy(iov[i].iov_base, m->data + off, iov[i].iov_len);
	}
	return 0;
}

static int mem_read(struct blockdev *bd, const struct iovec *iov, int n, uint64_t off)
{
	return mem_rw(bd, iov, n, off, false);
}

static int mem_write(struct blockdev *bd, const struct iovec *iov, int n, uint64_t off)
{
	return mem_rw(bd, iov, n, off, true);
}

static int mem_flush(struct blockdev *bd)
{
	((struct mem_store *)bd)->flushes++;
	return 0;
}

static int mem_discard(struct blockdev *bd, uint64_t off, uint64_t len)
{
	((struct mem_store *)bd)->discards++;
	return 0;
}

static int mem_zeroes(struct blockdev *bd, uint64_t off, uint64_t len, bool unmap)
{
	struct mem_store *m = (struct mem_store *)bd;

	memset(m->data + off, 0, len);
	m->zeroes++;
	return 0;
}

static uint64_t mem_size(struct blockdev *bd)
{
	return SIZE;
}

static void mem_close(struct blockdev *bd)
{
	((struct mem_store *)bd)->closed++;
}

static const struct blockdev_ops mem_ops = {
	.read = mem_read, .write = mem_write, .flush = mem_flush, .discard = mem_discard,
	.write_zeroes = mem_zeroes, .size = mem_size, .close = mem_close,
};

static void test_lifecycle(void **state)
{
	struct late_store_geometry g = { .size = SIZE, .block_size = 512, .discard = true };
	struct mem_store m = { .bd = { .ops = &mem_ops, .block_size = 512 } };
	struct late_store *ls;
	struct blockdev *bd;
	char buf[512] = "hello", back[512];
	struct iovec w = { buf, sizeof(buf) }, r = { back, sizeof(back) };

	(void)state;
	assert_int_equal(late_store_create(&g, &ls, &bd), 0);
	assert_int_equal(blockdev_size(bd), SIZE);
	assert_int_equal(bd->block_size, 512);
	assert_true(bd->discard);
	/* Nothing attached: every operation fails, nothing hangs. */
	assert_int_equal(blockdev_write(bd, &w, 1, 0), -EIO);
	assert_int_equal(blockdev_read(bd, &r, 1, 0), -EIO);
	assert_int_equal(blockdev_flush(bd), -EIO);

	assert_int_equal(late_store_attach(ls, &m.bd), 0);
	assert_int_equal(late_store_attach(ls, &m.bd), -EINVAL);	/* only once */
	assert_int_equal(blockdev_write(bd, &w, 1, 1024), 0);
	assert_int_equal(blockdev_read(bd, &r, 1, 1024), 0);
	assert_string_equal(back, "hello");
	assert_int_equal(blockdev_flush(bd), 0);
	assert_int_equal(blockdev_discard(bd, 0, 512), 0);
	assert_int_equal(blockdev_write_zeroes(bd, 1024, 512, false), 0);
	assert_int_equal(blockdev_read(bd, &r, 1, 1024), 0);
	assert_int_equal(back[0], 0);
	assert_int_equal(m.flushes, 1);
	assert_int_equal(m.discards, 1);
	assert_int_equal(m.zeroes, 1);

	assert_ptr_equal(late_store_detach(ls), &m.bd);
	assert_int_equal(blockdev_read(bd, &r, 1, 0), -EIO);
	assert_int_equal(m.closed, 0);	/* the caller closes what it detached */
	blockdev_close(bd);
	assert_int_equal(m.closed, 0);
}

/* A store of another size is refused: the guest already saw the size. */
static void test_size_mismatch(void **state)
{
	struct late_store_geometry g = { .size = SIZE * 2, .block_size = 512 };
	struct mem_store m = { .bd = { .ops = &mem_ops } };
	struct late_store *ls;
	struct blockdev *bd;

	(void)state;
	assert_int_equal(late_store_create(&g, &ls, &bd), 0);
	assert_int_equal(late_store_attach(ls, &m.bd), -EINVAL);
	blockdev_close(bd);
	assert_int_equal(m.closed, 0);
}

/* A store of larger blocks than the guest was told of is refused too. */
static void test_block_size_mismatch(void **state)
{
	struct late_store_geometry g = { .size = SIZE, .block_size = 512 };
	struct mem_store m = { .bd = { .ops = &mem_ops, .block_size = 4096 } };
	struct late_store *ls;
	struct blockdev *bd;

	(void)state;
	assert_int_equal(late_store_create(&g, &ls, &bd), 0);
	assert_int_equal(late_store_attach(ls, &m.bd), -EINVAL);
	blockdev_close(bd);
	g.block_size = 4096;
	assert_int_equal(late_store_create(&g, &ls, &bd), 0);
	assert_int_equal(late_store_attach(ls, &m.bd), 0);
	assert_ptr_equal(late_store_detach(ls), &m.bd);
	blockdev_close(bd);
}

/* Closing the disk closes an attached store too. */
static void test_close_attached(void **state)
{
	struct late_store_geometry g = { .size = SIZE, .block_size = 512 };
	struct mem_store m = { .bd = { .ops = &mem_ops } };
	struct late_store *ls;
	struct blockdev *bd;

	(void)state;
	assert_int_equal(late_store_create(&g, &ls, &bd), 0);
	assert_int_equal(late_store_attach(ls, &m.bd), 0);
	blockdev_close(bd);
	assert_int_equal(m.closed, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lifecycle),
		cmocka_unit_test(test_size_mismatch),
		cmocka_unit_test(test_block_size_mismatch),
		cmocka_unit_test(test_close_attached),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
