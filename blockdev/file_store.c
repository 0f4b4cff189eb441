// SPDX-License-Identifier: MIT
/*
 * A blockdev on a raw file or a host block device. See file_store.h and
 * the contract in blockdev.h.
 *
 * cache='none' (O_DIRECT) needs aligned buffers and offsets. Guest buffers
 * usually are (page cache pages), but nothing promises it, so a request the
 * O_DIRECT descriptor refuses goes through a second, buffered descriptor on
 * the same file: Linux writes back and invalidates the page cache around
 * direct I/O, so the two views stay coherent.
 *
 * The image is locked (flock: exclusive for read-write, shared for
 * read-only) so that two guests cannot write the same disk.
 *
 * Reads, writes and flushes can also be submitted asynchronously on the
 * caller's io_uring (aio_ring.c). That is what lets a guest's queue depth
 * reach the kernel: a synchronous O_DIRECT write into a hole of a file (a
 * sparse image, the usual case) holds the inode lock exclusively until the
 * write is done, so writers behind it wait whatever the number of threads,
 * while an asynchronous one lets go of the lock once its bios are issued
 * (docs/devices.md, "Requests in flight").
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockdev/iov_slice.h"
#include "blockdev/aio_ring.h"
#include "blockdev/file_store.h"

#define ZERO_BUF_SIZE (64 * 1024)
#define ZERO_IOVS     16
#define DIO_ALIGN     512
#define AIO_RETRIES   8        /* EINTR / EAGAIN from the kernel, per request */

struct file_store {
	struct blockdev bd;
	int fd;            /* O_DIRECT when direct */
	int buf_fd;        /* buffered, for what O_DIRECT refuses; -1 when not direct */
	bool is_blk;
	bool direct;
	bool no_flush;
	uint64_t size;
	int punch_ok;      /* atomic: cleared when the filesystem says EOPNOTSUPP */
	int zero_range_ok; /* atomic */
};

/* An asynchronous request on its way through the ring. */
struct fs_aio {
	struct aio_ring_op op;
	struct aio_ring *ring;  /* the submitter's: continuations go there too */
	struct file_store *s;
	struct blockdev_req *req;
	uint64_t left;          /* bytes still to transfer */
	int first;              /* iov[first..iovcnt) still to transfer */
	int iovcnt;
	int retries;
	bool buffered;          /* on buf_fd */
	struct iovec iov[];     /* the caller's, advanced over what is done */
};

static const uint8_t zeros[ZERO_BUF_SIZE] __attribute__((aligned(4096)));

static struct file_store *fs_of(struct blockdev *bd)
{
	return (struct file_store *)bd;
}

static bool aligned(const struct iovec *iov, int iovcnt, uint64_t off)
{
	if (off % DIO_ALIGN)
		return false;
	for (int i = 0; i < iovcnt; i++)
		if ((uintptr_t)iov[i].iov_base % DIO_ALIGN || iov[i].iov_len % DIO_ALIGN)
			return false;
	return true;
}

/*
 * The whole transfer or an error. A read that meets the end of the file
 * (someone truncated it) reads zeros there, as a sparse tail would.
 */
static int rw_all(int fd, bool is_write, const struct iovec *iov0, int iovcnt, uint64_t off)
{
	struct iovec iov[IOV_MAX];
	int first = 0;

	while (first < iovcnt) {
		int cnt = iovcnt - first > IOV_MAX ? IOV_MAX : iovcnt - first;
		int i = 0;

		memcpy(iov, iov0 + first, sizeof(iov[0]) * (size_t)cnt);
		first += cnt;
		while (i < cnt) {
			ssize_t n = is_write ? pwritev(fd, iov + i, cnt - i, (off_t)off)
					     : preadv(fd, iov + i, cnt - i, (off_t)off);

			if (n < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
			if (n == 0) {
				if (is_write)
					return -EIO;
				for (; i < cnt; i++)
					memset(iov[i].iov_base, 0, iov[i].iov_len);
				break;
			}
			off += (uint64_t)n;
			while (n > 0 && i < cnt) {
				if ((size_t)n >= iov[i].iov_len) {
					n -= (ssize_t)iov[i].iov_len;
					i++;
				} else {
					iov[i].iov_base = (uint8_t *)iov[i].iov_base + n;
					iov[i].iov_len -= (size_t)n;
					n = 0;
				}
			}
		}
	}
	return 0;
}

static int fs_rw(struct file_store *s, bool is_write, const struct iovec *iov, int iovcnt,
		 uint64_t off)
{
	int rc;

	if (is_write && s->bd.read_only)
		return -EROFS;
	if (!s->direct)
		return rw_all(s->fd, is_write, iov, iovcnt, off);
	if (aligned(iov, iovcnt, off)) {
		rc = rw_all(s->fd, is_write, iov, iovcnt, off);
		if (rc != -EINVAL)
			return rc;
	}
	return rw_all(s->buf_fd, is_write, iov, iovcnt, off);
}

static int fs_read(struct blockdev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return fs_rw(fs_of(bd), false, iov, iovcnt, off);
}

static int fs_write(struct blockdev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return fs_rw(fs_of(bd), true, iov, iovcnt, off);
}

static int fs_flush(struct blockdev *bd)
{
	struct file_store *s = fs_of(bd);

	if (s->no_flush || s->bd.read_only)
		return 0;
	/* One inode: syncing through either descriptor covers both. */
	return fdatasync(s->fd) ? -errno : 0;
}

static int write_zero_bytes(struct file_store *s, uint64_t off, uint64_t len)
{
	struct iovec iov[ZERO_IOVS];

	while (len > 0) {
		uint64_t chunk = len < (uint64_t)ZERO_BUF_SIZE * ZERO_IOVS ? len
				 : (uint64_t)ZERO_BUF_SIZE * ZERO_IOVS;
		int n = 0, rc;

		for (uint64_t left = chunk; left > 0; n++) {
			size_t l = left < ZERO_BUF_SIZE ? (size_t)left : ZERO_BUF_SIZE;

			iov[n].iov_base = (void *)zeros;
			iov[n].iov_len = l;
			left -= l;
		}
		rc = fs_rw(s, true, iov, n, off);
		if (rc)
			return rc;
		off += chunk;
		len -= chunk;
	}
	return 0;
}

static bool unsupported(int e)
{
	return e == EOPNOTSUPP || e == ENOTTY || e == ENOSYS;
}

static int punch(struct file_store *s, uint64_t off, uint64_t len)
{
	if (s->is_blk) {
		uint64_t range[2] = { off, len };

		return ioctl(s->fd, BLKDISCARD, range) ? -errno : 0;
	}
	if (!__atomic_load_n(&s->punch_ok, __ATOMIC_RELAXED))
		return -EOPNOTSUPP;
	if (!fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
		return 0;
	if (unsupported(errno))
		__atomic_store_n(&s->punch_ok, 0, __ATOMIC_RELAXED);
	return -errno;
}

static int fs_discard(struct blockdev *bd, uint64_t off, uint64_t len)
{
	struct file_store *s = fs_of(bd);
	int rc;

	if (s->bd.read_only)
		return -EROFS;
	rc = punch(s, off, len);
	/* A hint the store cannot take is still a successful discard. */
	return rc && unsupported(-rc) ? 0 : rc;
}

static int fs_write_zeroes(struct blockdev *bd, uint64_t off, uint64_t len, bool may_unmap)
{
	struct file_store *s = fs_of(bd);
	int rc = -EOPNOTSUPP;

	if (s->bd.read_only)
		return -EROFS;
	if (may_unmap && !s->is_blk) {
		/* A punched hole reads back as zeros. */
		rc = punch(s, off, len);
		if (!rc || !unsupported(-rc))
			return rc;
	}
	if (s->is_blk) {
		uint64_t range[2] = { off, len };

		rc = ioctl(s->fd, BLKZEROOUT, range) ? -errno : 0;
	} else if (__atomic_load_n(&s->zero_range_ok, __ATOMIC_RELAXED)) {
		rc = fallocate(s->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			       (off_t)len) ? -errno : 0;
		if (rc && unsupported(-rc))
			__atomic_store_n(&s->zero_range_ok, 0, __ATOMIC_RELAXED);
	}
	if (!rc || !(unsupported(-rc) || rc == -EINVAL))
		return rc;
	return write_zero_bytes(s, off, len);
}

/* ---- asynchronous requests ---- */

static void aio_finish(struct fs_aio *a, int rc)
{
	struct blockdev_req *req = a->req;

	free(a);
	req->done(req, rc);
}

/* Skips n transferred bytes. */
static void aio_advance(struct fs_aio *a, uint64_t n)
{
	a->left -= n;
	a->op.off += n;
	while (n > 0 && a->first < a->iovcnt) {
		struct iovec *v = &a->iov[a->first];

		if (n >= v->iov_len) {
			n -= v->iov_len;
			a->first++;
		} else {
			v->iov_base = (uint8_t *)v->iov_base + n;
			v->iov_len -= n;
			n = 0;
		}
	}
	a->op.iov = a->iov + a->first;
	a->op.iovcnt = a->iovcnt - a->first;
}

/*
 * On the ring's owner thread, the op no longer in flight: there is room
 * for it again, so this cannot be refused.
 */
static void resubmit(struct fs_aio *a)
{
	int rc = aio_ring_submit(a->ring, &a->op);

	if (rc)
		aio_finish(a, rc);
}

/* On the ring's owner thread; the same rules as rw_all() and fs_rw(). */
static void aio_complete(struct aio_ring_op *op, int res)
{
	struct fs_aio *a = (struct fs_aio *)op;
	struct file_store *s = a->s;

	if (op->kind == AIO_RING_FDATASYNC) {
		aio_finish(a, res < 0 ? res : 0);
		return;
	}
	if (res == -EINVAL && s->direct && !a->buffered) {
		/* What O_DIRECT refuses goes through the page cache, as fs_rw() does. */
		a->buffered = true;
		op->fd = s->buf_fd;
		resubmit(a);
		return;
	}
	if ((res == -EINTR || res == -EAGAIN) && a->retries++ < AIO_RETRIES) {
		resubmit(a);
		return;
	}
	if (res < 0) {
		aio_finish(a, res);
		return;
	}
	if (res == 0) {
		/* End of file: a write cannot go on; a read finds zeros, as past a sparse tail. */
		if (op->kind == AIO_RING_WRITEV) {
			aio_finish(a, -EIO);
			return;
		}
		for (int i = a->first; i < a->iovcnt; i++)
			memset(a->iov[i].iov_base, 0, a->iov[i].iov_len);
		aio_finish(a, 0);
		return;
	}
	aio_advance(a, (uint64_t)res);
	if (!a->left) {
		aio_finish(a, 0);
		return;
	}
	a->retries = 0;
	resubmit(a);
}

static int fs_submit(struct blockdev *bd, struct aio_ring *ring, struct blockdev_req *req)
{
	struct file_store *s = fs_of(bd);
	bool is_write = req->op == BLOCKDEV_REQ_WRITE;
	struct fs_aio *a;
	uint64_t len;
	int rc;

	if (req->op == BLOCKDEV_REQ_FLUSH) {
		if (s->no_flush || s->bd.read_only) {
			req->done(req, 0);
			return 0;
		}
		a = calloc(1, sizeof(*a));
		if (!a)
			return -ENOMEM;
		a->s = s;
		a->ring = ring;
		a->req = req;
		a->op = (struct aio_ring_op){ .kind = AIO_RING_FDATASYNC, .fd = s->fd,
					      .complete = aio_complete };
		rc = aio_ring_submit(ring, &a->op);
		if (rc)
			free(a);
		return rc;
	}
	if (req->op != BLOCKDEV_REQ_READ && !is_write)
		return -EINVAL;
	if (is_write && s->bd.read_only) {
		req->done(req, -EROFS);
		return 0;
	}
	if (req->iovcnt < 1 || req->iovcnt > IOV_MAX)
		return -EINVAL;     /* the synchronous path copes with any count */
	a = malloc(sizeof(*a) + sizeof(a->iov[0]) * (size_t)req->iovcnt);
	if (!a)
		return -ENOMEM;
	memcpy(a->iov, req->iov, sizeof(a->iov[0]) * (size_t)req->iovcnt);
	len = iov_total(req->iov, req->iovcnt);
	a->s = s;
	a->ring = ring;
	a->req = req;
	a->left = len;
	a->first = 0;
	a->iovcnt = req->iovcnt;
	a->retries = 0;
	a->buffered = s->direct && !aligned(req->iov, req->iovcnt, req->off);
	a->op = (struct aio_ring_op){
		.kind = is_write ? AIO_RING_WRITEV : AIO_RING_READV,
		.fd = a->buffered ? s->buf_fd : s->fd,
		.iov = a->iov, .iovcnt = a->iovcnt, .off = req->off,
		.complete = aio_complete,
	};
	if (!len) {
		aio_finish(a, 0);
		return 0;
	}
	rc = aio_ring_submit(ring, &a->op);
	if (rc)
		free(a);
	return rc;
}

static uint64_t fs_size(struct blockdev *bd)
{
	return fs_of(bd)->size;
}

static void fs_close(struct blockdev *bd)
{
	struct file_store *s = fs_of(bd);

	if (s->buf_fd >= 0)
		close(s->buf_fd);
	if (s->fd >= 0)
		close(s->fd);	/* also drops the flock */
	free(s);
}

static const struct blockdev_ops file_store_ops = {
	.read = fs_read,
	.write = fs_write,
	.flush = fs_flush,
	.discard = fs_discard,
	.write_zeroes = fs_write_zeroes,
	.size = fs_size,
	.close = fs_close,
	.submit = fs_submit,
};

static int fail(struct file_store *s, char *err, size_t errlen, const char *path,
		const char *what)
{
	snprintf(err, errlen, "%s: %s", path, what);
	fs_close(&s->bd);
	return -1;
}

int file_store_open(const char *path, const struct file_store_opts *o, struct blockdev **out,
		    char *err, size_t errlen)
{
	struct file_store *s = calloc(1, sizeof(*s));
	int flags = (o->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct stat st;

	*out = NULL;
	if (!s) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	s->fd = s->buf_fd = -1;
	s->bd.ops = &file_store_ops;
	s->bd.read_only = o->read_only;
	s->bd.block_size = 512;
	s->direct = o->cache == FILE_STORE_NONE || o->cache == FILE_STORE_DIRECTSYNC;
	s->no_flush = o->cache == FILE_STORE_UNSAFE;
	s->punch_ok = s->zero_range_ok = 1;
	if (o->cache == FILE_STORE_WRITETHROUGH || o->cache == FILE_STORE_DIRECTSYNC)
		flags |= O_DSYNC;
	s->fd = open(path, flags | (s->direct ? O_DIRECT : 0));
	if (s->fd < 0 && s->direct && errno == EINVAL)
		return fail(s, err, errlen, path, "cache='none' needs O_DIRECT, which this "
			    "filesystem does not support (tmpfs?); use cache='writeback'");
	if (s->fd < 0)
		return fail(s, err, errlen, path, strerror(errno));
	if (fstat(s->fd, &st))
		return fail(s, err, errlen, path, strerror(errno));
	if (S_ISBLK(st.st_mode)) {
		int ssz = 0;

		s->is_blk = true;
		if (ioctl(s->fd, BLKGETSIZE64, &s->size))
			return fail(s, err, errlen, path, strerror(errno));
		if (!ioctl(s->fd, BLKSSZGET, &ssz) && (ssz == 512 || ssz == 4096))
			s->bd.block_size = (unsigned)ssz;
		s->bd.discard = true;
	} else if (S_ISREG(st.st_mode)) {
		s->size = (uint64_t)st.st_size;
		s->bd.discard = true;
	} else {
		return fail(s, err, errlen, path, "not a regular file or a block device");
	}
	if (flock(s->fd, (o->read_only ? LOCK_SH : LOCK_EX) | LOCK_NB))
		return fail(s, err, errlen, path, errno == EWOULDBLOCK ?
			    "in use: another process holds a lock on it" : strerror(errno));
	if (s->direct) {
		s->buf_fd = open(path, flags);
		if (s->buf_fd < 0)
			return fail(s, err, errlen, path, strerror(errno));
	}
	*out = &s->bd;
	return 0;
}
