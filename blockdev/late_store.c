// SPDX-License-Identifier: MIT
/* A stand-in store attached after the disk exists: see late_store.h. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "blockdev/late_store.h"

struct late_store {
	struct blockdev bd;	/* first: the device holds &ls->bd */
	uint64_t size;
	pthread_rwlock_t lock;	/* readers: operations; writer: attach/detach */
	struct blockdev *real;
};

static struct late_store *of(struct blockdev *bd)
{
	return (struct late_store *)bd;
}

/* Runs op on the attached store under the read lock, or fails with -EIO. */
#define WITH_REAL(bd, call)						\
	({								\
		struct late_store *ls_ = of(bd);			\
		int rc_ = -EIO;						\
		pthread_rwlock_rdlock(&ls_->lock);			\
		if (ls_->real) {					\
			struct blockdev *real = ls_->real;		\
			rc_ = (call);					\
		}							\
		pthread_rwlock_unlock(&ls_->lock);			\
		rc_;							\
	})

static int ls_read(struct blockdev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return WITH_REAL(bd, blockdev_read(real, iov, iovcnt, off));
}

static int ls_write(struct blockdev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return WITH_REAL(bd, blockdev_write(real, iov, iovcnt, off));
}

static int ls_flush(struct blockdev *bd)
{
	return WITH_REAL(bd, blockdev_flush(real));
}

static int ls_discard(struct blockdev *bd, uint64_t off, uint64_t len)
{
	return WITH_REAL(bd, blockdev_discard(real, off, len));
}

static int ls_write_zeroes(struct blockdev *bd, uint64_t off, uint64_t len, bool may_unmap)
{
	return WITH_REAL(bd, blockdev_write_zeroes(real, off, len, may_unmap));
}

static uint64_t ls_size(struct blockdev *bd)
{
	return of(bd)->size;
}

static void ls_close(struct blockdev *bd)
{
	struct late_store *ls = of(bd);

	blockdev_close(late_store_detach(ls));
	pthread_rwlock_destroy(&ls->lock);
	free(ls);
}

static const struct blockdev_ops late_store_ops = {
	.read = ls_read, .write = ls_write, .flush = ls_flush, .discard = ls_discard,
	.write_zeroes = ls_write_zeroes, .size = ls_size, .close = ls_close,
};

int late_store_create(const struct late_store_geometry *g, struct late_store **out,
		      struct blockdev **bd)
{
	struct late_store *ls = calloc(1, sizeof(*ls));

	if (!ls)
		return -ENOMEM;
	ls->bd = (struct blockdev){ .ops = &late_store_ops, .block_size = g->block_size,
				    .read_only = g->read_only, .discard = g->discard };
	ls->size = g->size;
	pthread_rwlock_init(&ls->lock, NULL);
	*out = ls;
	*bd = &ls->bd;
	return 0;
}

int late_store_attach(struct late_store *ls, struct blockdev *real)
{
	int rc = 0;

	pthread_rwlock_wrlock(&ls->lock);
	if (ls->real || blockdev_size(real) != ls->size || real->block_size > ls->bd.block_size)
		rc = -EINVAL;
	else
		ls->real = real;
	pthread_rwlock_unlock(&ls->lock);
	return rc;
}

struct blockdev *late_store_detach(struct late_store *ls)
{
	struct blockdev *real;

	pthread_rwlock_wrlock(&ls->lock);
	real = ls->real;
	ls->real = NULL;
	pthread_rwlock_unlock(&ls->lock);
	return real;
}
