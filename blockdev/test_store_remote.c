// SPDX-License-Identifier: MIT
/*
 * The remote block store end to end: a store client and a store server in
 * one process, joined by a loopback transport whose send() hands each
 * frame to a delivery thread of the other side (as the fabric's receive
 * thread would), in order or shuffled, or drops or holds frames. The
 * server exports a file_store on a temporary file, which the tests read
 * directly to check what reached the disk.
 *
 * The server and the client are also driven alone, with a send() that
 * captures frames, to feed them malformed and unexpected messages.
 *
 * Last, a replicated volume over a local store and a remote one: the
 * remote store unreachable when the volume opens, then reachable, is
 * reopened by the volume's probe (store_client_reopen) and resynchronised;
 * so is one whose requests timed out.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "blockdev/file_store.h"
#include "blockdev/store_client.h"
#include "blockdev/store_server.h"
#include "blockdev/volume.h"
#include "blockdev/volume_layout.h"
#include "fabric/frame.h"

#define CLIENT_NODE 0u
#define SERVER_NODE 1u
#define FILE_SIZE (40u << 20)   /* sparse; write-zeroes crosses STORE_MSG_MAX_RANGE */
#define RW_AREA (8u << 20)      /* where the random I/O goes */
#define MiB (1u << 20)
#define KiB 1024u

/* ---- small helpers ---- */

static uint64_t rnd(uint64_t *s)
{
	/* xorshift64*: reproducible, no global state. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

static void fill(uint8_t *buf, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)((seed * 131 + i * 7 + (i >> 9)) ^ (seed >> 3));
}

static bool all_zero(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i])
			return false;
	return true;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/*
 * Waits for a condition another thread brings about. The bound only keeps
 * a broken build from hanging the suite; no test depends on its length.
 */
#define WAIT_FOR(cond)                                                  \
	do {                                                            \
		unsigned waited_ = 0;                                   \
		while (!(cond) && waited_++ < 20000)                    \
			sleep_ms(1);                                    \
		assert_true(cond);                                      \
	} while (0)

/* Cuts buf into 1..max pieces of random lengths (not sector multiples). */
static int cut(uint8_t *buf, size_t len, struct iovec *iov, int max, uint64_t *s)
{
	int n = 1 + (int)(rnd(s) % (uint64_t)max);
	size_t left = len;
	int i;

	for (i = 0; i < n - 1 && left > 1; i++) {
		size_t l = 1 + rnd(s) % (left / 2 + 1);

		if (l >= left)
			break;
		iov[i] = (struct iovec){ .iov_base = buf + (len - left), .iov_len = l };
		left -= l;
	}
	iov[i++] = (struct iovec){ .iov_base = buf + (len - left), .iov_len = left };
	return i;
}

/* ---- the loopback transport ---- */

enum lo_mode { LO_DELIVER, LO_DROP, LO_HOLD };

struct lo_frame {
	struct lo_frame *next;
	unsigned src;
	uint16_t type;
	uint64_t req_id;
	size_t len;
	uint8_t data[];
};

typedef void (*lo_deliver_fn)(void *to, unsigned src, uint16_t type, uint64_t req_id,
			      const void *payload, size_t len);

/* One direction: frames sent by node `from` to node `to_node`. */
struct lo_link {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct lo_frame *q;         /* to deliver, in send order */
	struct lo_frame *held;      /* LO_HOLD, newest first */
	unsigned nq;
	enum lo_mode mode;
	bool shuffle;
	bool stop;
	unsigned from, to_node;
	uint64_t seed;
	lo_deliver_fn deliver;
	void *to;
	unsigned sent, dropped, held_count;
	unsigned reordered;         /* frames delivered before one sent earlier */
	unsigned bad_sends;         /* broke the fabric's rules (checked by the main thread) */
	pthread_t thread;
};

static bool lo_frame_ok(uint16_t type, const struct iovec *iov, int iovcnt, size_t *len)
{
	*len = 0;
	if (type < FRAME_TYPE_USER || iovcnt < 0 || iovcnt > FRAME_IOV_MAX)
		return false;
	for (int i = 0; i < iovcnt; i++)
		*len += iov[i].iov_len;
	return *len <= FRAME_MAX_PAYLOAD;
}

static int lo_send(void *ctx, unsigned dst, uint16_t type, uint64_t req_id,
		   const struct iovec *iov, int iovcnt)
{
	struct lo_link *l = ctx;
	struct lo_frame *f;
	size_t len, off = 0;

	if (dst != l->to_node)
		return -ENOTCONN;   /* as the fabric says for a node that is not up */
	if (!lo_frame_ok(type, iov, iovcnt, &len)) {
		pthread_mutex_lock(&l->lock);
		l->bad_sends++;
		pthread_mutex_unlock(&l->lock);
		return -EINVAL;
	}
	f = malloc(sizeof(*f) + len);
	if (!f)
		return -ENOMEM;
	*f = (struct lo_frame){ .src = l->from, .type = type, .req_id = req_id, .len = len };
	for (int i = 0; i < iovcnt; i++) {
		memcpy(f->data + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	pthread_mutex_lock(&l->lock);
	l->sent++;
	if (l->mode == LO_DROP) {
		l->dropped++;
		free(f);
	} else if (l->mode == LO_HOLD) {
		f->next = l->held;
		l->held = f;
		l->held_count++;
	} else {
		struct lo_frame **pp = &l->q;

		while (*pp)
			pp = &(*pp)->next;
		*pp = f;
		l->nq++;
		pthread_cond_signal(&l->cond);
	}
	pthread_mutex_unlock(&l->lock);
	return 0;
}

/* Takes the next frame: the first, or (shuffled) any of those queued. Lock held. */
static struct lo_frame *lo_take(struct lo_link *l)
{
	struct lo_frame **pp = &l->q, *f;
	unsigned skip = l->shuffle ? (unsigned)(rnd(&l->seed) % l->nq) : 0;

	l->reordered += skip > 0;
	while (skip--)
		pp = &(*pp)->next;
	f = *pp;
	*pp = f->next;
	l->nq--;
	return f;
}

static void *lo_main(void *arg)
{
	struct lo_link *l = arg;

	pthread_mutex_lock(&l->lock);
	for (;;) {
		struct lo_frame *f;

		while (!l->q && !l->stop)
			pthread_cond_wait(&l->cond, &l->lock);
		if (l->stop)
			break;
		if (l->shuffle && l->nq < 8) {
			/* Let a few frames gather so that there is something to reorder. */
			pthread_mutex_unlock(&l->lock);
			usleep(100);
			pthread_mutex_lock(&l->lock);
		}
		f = lo_take(l);
		pthread_mutex_unlock(&l->lock);
		l->deliver(l->to, f->src, f->type, f->req_id, f->data, f->len);
		free(f);
		pthread_mutex_lock(&l->lock);
	}
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

static void lo_start(struct lo_link *l, unsigned from, unsigned to_node, lo_deliver_fn deliver,
		     void *to, bool shuffle, uint64_t seed)
{
	memset(l, 0, sizeof(*l));
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	l->from = from;
	l->to_node = to_node;
	l->deliver = deliver;
	l->to = to;
	l->shuffle = shuffle;
	l->seed = seed | 1;
	assert_int_equal(pthread_create(&l->thread, NULL, lo_main, l), 0);
}

static void lo_set_mode(struct lo_link *l, enum lo_mode m)
{
	pthread_mutex_lock(&l->lock);
	l->mode = m;
	pthread_mutex_unlock(&l->lock);
}

/* Held frames go out, in the order they were sent. */
static void lo_release(struct lo_link *l)
{
	pthread_mutex_lock(&l->lock);
	l->mode = LO_DELIVER;
	while (l->held) {
		struct lo_frame *f = l->held;

		l->held = f->next;
		f->next = l->q;
		l->q = f;
		l->nq++;
	}
	pthread_cond_signal(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

static unsigned lo_count(struct lo_link *l, unsigned *field)
{
	unsigned v;

	pthread_mutex_lock(&l->lock);
	v = *field;
	pthread_mutex_unlock(&l->lock);
	return v;
}

static void lo_free_list(struct lo_frame *f)
{
	while (f) {
		struct lo_frame *next = f->next;

		free(f);
		f = next;
	}
}

static void lo_stop(struct lo_link *l)
{
	pthread_mutex_lock(&l->lock);
	l->stop = true;
	pthread_cond_signal(&l->cond);
	pthread_mutex_unlock(&l->lock);
	pthread_join(l->thread, NULL);
	lo_free_list(l->q);
	lo_free_list(l->held);
	assert_int_equal(l->bad_sends, 0);
	pthread_cond_destroy(&l->cond);
	pthread_mutex_destroy(&l->lock);
}

static void to_server(void *to, unsigned src, uint16_t type, uint64_t req_id,
		      const void *payload, size_t len)
{
	store_server_receive(to, src, type, req_id, payload, len);
}

static void to_client(void *to, unsigned src, uint16_t type, uint64_t req_id,
		      const void *payload, size_t len)
{
	store_client_receive(to, src, type, req_id, payload, len);
}

/* ---- log capture ---- */

struct logbook {
	pthread_mutex_t lock;
	unsigned n;
	char last[320];
	char all[8192];       /* the first lines, for assertions on their content */
};

static void log_line(void *ctx, const char *msg)
{
	struct logbook *lb = ctx;
	size_t used;

	pthread_mutex_lock(&lb->lock);
	lb->n++;
	snprintf(lb->last, sizeof(lb->last), "%s", msg);
	used = strlen(lb->all);
	snprintf(lb->all + used, sizeof(lb->all) - used, "%s\n", msg);
	pthread_mutex_unlock(&lb->lock);
	if (getenv("STORE_TEST_VERBOSE"))
		fprintf(stderr, "log: %s\n", msg);
}

static unsigned log_count(struct logbook *lb)
{
	unsigned n;

	pthread_mutex_lock(&lb->lock);
	n = lb->n;
	pthread_mutex_unlock(&lb->lock);
	return n;
}

static bool log_has(struct logbook *lb, const char *what)
{
	bool found;

	pthread_mutex_lock(&lb->lock);
	found = strstr(lb->all, what) != NULL;
	pthread_mutex_unlock(&lb->lock);
	return found;
}

/* What one node's callbacks see: the link its frames leave by, and its log. */
struct side {
	struct lo_link *out;
	struct logbook log;
};

static int side_send(void *ctx, unsigned dst, uint16_t type, uint64_t req_id,
		     const struct iovec *iov, int iovcnt)
{
	return lo_send(((struct side *)ctx)->out, dst, type, req_id, iov, iovcnt);
}

static void side_log(void *ctx, const char *msg)
{
	log_line(&((struct side *)ctx)->log, msg);
}

/* ---- a blockdev wrapper: slow, gated or failing, around the file store ---- */

struct wrap_bd {
	struct blockdev bd;
	struct blockdev *inner;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool gate_closed;         /* operations wait until it opens */
	unsigned waiting;         /* operations at the gate */
	unsigned delay_us;
	uint64_t eio_lo, eio_hi;      /* reads and writes overlapping fail with -EIO */
	uint64_t nospc_lo, nospc_hi;  /* writes overlapping fail with -ENOSPC */
	int flush_rc;
};

static struct wrap_bd *wrap_of(struct blockdev *bd)
{
	return (struct wrap_bd *)bd;
}

static void wrap_pass(struct wrap_bd *w)
{
	pthread_mutex_lock(&w->lock);
	w->waiting++;
	while (w->gate_closed)
		pthread_cond_wait(&w->cond, &w->lock);
	w->waiting--;
	pthread_mutex_unlock(&w->lock);
	if (w->delay_us)
		usleep(w->delay_us);
}

static bool overlaps(uint64_t off, uint64_t len, uint64_t lo, uint64_t hi)
{
	return off < hi && lo < off + len;
}

static uint64_t iov_len(const struct iovec *iov, int iovcnt)
{
	uint64_t n = 0;

	for (int i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	return n;
}

static int wrap_read(struct blockdev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	struct wrap_bd *w = wrap_of(bd);

	wrap_pass(w);
	if (overlaps(off, iov_len(iov, iovcnt), w->eio_lo, w->eio_hi))
		return -EIO;
	return blockdev_read(w->inner, iov, iovcnt, off);
}

static int wrap_write(struct blockdev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	struct wrap_bd *w = wrap_of(bd);
	uint64_t len = iov_len(iov, iovcnt);

	wrap_pass(w);
	if (overlaps(off, len, w->eio_lo, w->eio_hi))
		return -EIO;
	if (overlaps(off, len, w->nospc_lo, w->nospc_hi))
		return -ENOSPC;
	return blockdev_write(w->inner, iov, iovcnt, off);
}

static int wrap_flush(struct blockdev *bd)
{
	struct wrap_bd *w = wrap_of(bd);

	wrap_pass(w);
	return w->flush_rc ? w->flush_rc : blockdev_flush(w->inner);
}

static int wrap_discard(struct blockdev *bd, uint64_t off, uint64_t len)
{
	wrap_pass(wrap_of(bd));
	return blockdev_discard(wrap_of(bd)->inner, off, len);
}

static int wrap_write_zeroes(struct blockdev *bd, uint64_t off, uint64_t len, bool may_unmap)
{
	wrap_pass(wrap_of(bd));
	return blockdev_write_zeroes(wrap_of(bd)->inner, off, len, may_unmap);
}

static uint64_t wrap_size(struct blockdev *bd)
{
	return blockdev_size(wrap_of(bd)->inner);
}

static void wrap_close(struct blockdev *bd)
{
	(void)bd;   /* the wrapper lives in the test; the inner store is the rig's */
}

static const struct blockdev_ops wrap_ops = {
	.read = wrap_read, .write = wrap_write, .flush = wrap_flush, .discard = wrap_discard,
	.write_zeroes = wrap_write_zeroes, .size = wrap_size, .close = wrap_close,
};

static void wrap_init(struct wrap_bd *w, struct blockdev *inner)
{
	memset(w, 0, sizeof(*w));
	w->bd = *inner;
	w->bd.ops = &wrap_ops;
	w->inner = inner;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
}

static void wrap_open_gate(struct wrap_bd *w)
{
	pthread_mutex_lock(&w->lock);
	w->gate_closed = false;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static unsigned wrap_waiting(struct wrap_bd *w)
{
	unsigned n;

	pthread_mutex_lock(&w->lock);
	n = w->waiting;
	pthread_mutex_unlock(&w->lock);
	return n;
}

/* ---- the rig: client node 0, server node 1, a file exported as "disk0" ---- */

struct rig_opts {
	bool shuffle;
	unsigned timeout_ms, window;
	unsigned workers, per_source, max_queued;
};

struct rig {
	char dir[64], path[96];
	struct blockdev *file_bd;       /* the server's store */
	struct blockdev *bd;            /* the client's view of it */
	struct store_server *srv;
	struct store_client *cli;
	struct lo_link to_srv, to_cli;
	struct side srv_side, cli_side;
	int fd;                         /* the file, read directly to check */
};

static void make_file(const char *path, size_t size)
{
	uint8_t *buf = malloc(RW_AREA);
	int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);

	assert_non_null(buf);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	fill(buf, RW_AREA, 99);
	assert_int_equal(pwrite(fd, buf, RW_AREA, 0), RW_AREA);
	close(fd);
	free(buf);
}

static struct blockdev *open_file(const char *path, bool ro)
{
	struct file_store_opts o = { .read_only = ro };
	struct blockdev *bd = NULL;
	char err[256] = "";

	if (file_store_open(path, &o, &bd, err, sizeof(err)))
		print_error("%s\n", err);
	assert_non_null(bd);
	return bd;
}

static struct blockdev *open_remote_named(struct store_client *cli, const char *name)
{
	struct blockdev *bd = NULL;
	char err[256] = "";
	int rc = store_client_open(cli, SERVER_NODE, name, &bd, err, sizeof(err));

	if (rc)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
	assert_non_null(bd);
	return bd;
}

static struct blockdev *open_remote(struct rig *r, const char *name)
{
	struct blockdev *bd = NULL;
	char err[256] = "";
	int rc = store_client_open(r->cli, SERVER_NODE, name, &bd, err, sizeof(err));

	if (rc)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
	assert_non_null(bd);
	return bd;
}

static struct rig *rig_start(const struct rig_opts *o)
{
	struct rig *r = calloc(1, sizeof(*r));
	struct store_server_config sc = { .send = side_send, .log = side_log };
	struct store_client_config cc = { .send = side_send, .log = side_log };
	char err[256] = "";

	assert_non_null(r);
	pthread_mutex_init(&r->srv_side.log.lock, NULL);
	pthread_mutex_init(&r->cli_side.log.lock, NULL);
	r->srv_side.out = &r->to_cli;
	r->cli_side.out = &r->to_srv;
	snprintf(r->dir, sizeof(r->dir), "/tmp/grappe-rs-XXXXXX");
	assert_non_null(mkdtemp(r->dir));
	snprintf(r->path, sizeof(r->path), "%s/disk.img", r->dir);
	make_file(r->path, FILE_SIZE);
	r->fd = open(r->path, O_RDONLY);
	assert_true(r->fd >= 0);
	r->file_bd = open_file(r->path, false);

	sc.ctx = &r->srv_side;
	sc.workers = o->workers;
	sc.per_source = o->per_source;
	sc.max_queued = o->max_queued;
	assert_int_equal(store_server_create(&r->srv, &sc, err, sizeof(err)), 0);
	cc.ctx = &r->cli_side;
	cc.timeout_ms = o->timeout_ms;
	cc.window = o->window;
	assert_int_equal(store_client_create(&r->cli, &cc, err, sizeof(err)), 0);
	lo_start(&r->to_srv, CLIENT_NODE, SERVER_NODE, to_server, r->srv, o->shuffle, 7);
	lo_start(&r->to_cli, SERVER_NODE, CLIENT_NODE, to_client, r->cli, o->shuffle, 11);
	assert_int_equal(store_server_export(r->srv, "disk0", r->file_bd), 0);
	r->bd = open_remote(r, "disk0");
	return r;
}

static void rig_stop(struct rig *r)
{
	blockdev_close(r->bd);
	if (r->cli)
		store_client_shutdown(r->cli);
	store_server_shutdown(r->srv);
	lo_stop(&r->to_srv);
	lo_stop(&r->to_cli);
	store_client_destroy(r->cli);
	store_server_destroy(r->srv);
	blockdev_close(r->file_bd);
	close(r->fd);
	unlink(r->path);
	rmdir(r->dir);
	pthread_mutex_destroy(&r->srv_side.log.lock);
	pthread_mutex_destroy(&r->cli_side.log.lock);
	free(r);
}

static void check_file(struct rig *r, uint64_t off, const uint8_t *want, size_t len)
{
	uint8_t *got = malloc(len);

	assert_non_null(got);
	assert_int_equal(pread(r->fd, got, len, (off_t)off), (ssize_t)len);
	assert_memory_equal(got, want, len);
	free(got);
}

static int rd(struct blockdev *bd, void *buf, size_t len, uint64_t off)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };

	return blockdev_read(bd, &iov, 1, off);
}

static int wr(struct blockdev *bd, const void *buf, size_t len, uint64_t off)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return blockdev_write(bd, &iov, 1, off);
}

/* ---- a thread running one operation ---- */

enum op_kind { OP_READ, OP_WRITE, OP_FLUSH };

struct async_op {
	pthread_t thread;
	struct blockdev *bd;
	enum op_kind kind;
	uint64_t off;
	size_t len;
	uint8_t *buf;
	int rc;
};

static void *async_main(void *arg)
{
	struct async_op *a = arg;

	if (a->kind == OP_READ)
		a->rc = rd(a->bd, a->buf, a->len, a->off);
	else if (a->kind == OP_WRITE)
		a->rc = wr(a->bd, a->buf, a->len, a->off);
	else
		a->rc = blockdev_flush(a->bd);
	return NULL;
}

static void async_start(struct async_op *a, struct blockdev *bd, enum op_kind kind, uint64_t off,
			size_t len)
{
	*a = (struct async_op){ .bd = bd, .kind = kind, .off = off, .len = len, .rc = 1 };
	a->buf = calloc(1, len ? len : 1);
	assert_non_null(a->buf);
	fill(a->buf, len, off);
	assert_int_equal(pthread_create(&a->thread, NULL, async_main, a), 0);
}

static int async_join(struct async_op *a)
{
	pthread_join(a->thread, NULL);
	free(a->buf);
	a->buf = NULL;
	return a->rc;
}

static unsigned cli_in_flight(struct store_client *c)
{
	struct store_client_stats st;

	store_client_stats(c, &st);
	return st.in_flight;
}


/* ---- through the loopback ---- */

static const struct rig_opts defaults = { 0 };

static void test_open_info(void **state)
{
	struct rig *r = rig_start(&defaults);
	struct blockdev *bd = NULL;
	char err[256] = "";

	(void)state;
	assert_int_equal(blockdev_size(r->bd), FILE_SIZE);
	assert_int_equal(r->bd->block_size, 512);
	assert_false(r->bd->read_only);
	assert_true(r->bd->discard);
	assert_int_equal(store_client_store_error(r->bd), 0);
	assert_int_equal(store_client_store_error(r->file_bd), -EINVAL);

	assert_int_equal(store_client_open(r->cli, SERVER_NODE, "nope", &bd, err, sizeof(err)),
			 -ENOENT);
	assert_null(bd);
	assert_non_null(strstr(err, "nope on node 1: not exported there"));
	assert_int_equal(store_client_open(r->cli, SERVER_NODE, "a b", &bd, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(store_client_open(r->cli, 99, "disk0", &bd, err, sizeof(err)), -EINVAL);
	/* A node the transport cannot reach now: the send error comes back. */
	assert_int_equal(store_client_open(r->cli, 5, "disk0", &bd, err, sizeof(err)), -ENOTCONN);
	assert_null(bd);
	/* Two exports of one name are refused; a second open of one store is fine. */
	assert_int_equal(store_server_export(r->srv, "disk0", r->file_bd), -EEXIST);
	assert_int_equal(store_server_export(r->srv, "bad name", r->file_bd), -EINVAL);
	bd = open_remote(r, "disk0");
	assert_int_equal(blockdev_size(bd), FILE_SIZE);
	blockdev_close(bd);
	rig_stop(r);
}

/* Random writes and reads up to 1 MiB, in random pieces, checked against the file. */
static void random_rw(const struct rig_opts *o, uint64_t seed, unsigned rounds)
{
	struct rig *r = rig_start(o);
	uint8_t *buf = malloc(MiB), *back = malloc(MiB);
	struct iovec iov[48];

	assert_non_null(buf);
	assert_non_null(back);
	for (unsigned i = 0; i < rounds; i++) {
		size_t len = (size_t)(1 + rnd(&seed) % (MiB / 512)) * 512;
		uint64_t off = rnd(&seed) % ((RW_AREA - len) / 512 + 1) * 512;
		int n;

		fill(buf, len, seed);
		n = cut(buf, len, iov, 48, &seed);
		assert_int_equal(blockdev_write(r->bd, iov, n, off), 0);
		check_file(r, off, buf, len);
		memset(back, 0, len);
		n = cut(back, len, iov, 48, &seed);
		assert_int_equal(blockdev_read(r->bd, iov, n, off), 0);
		assert_memory_equal(back, buf, len);
	}
	/* The blockdev contract's refusals, before anything is sent. */
	assert_int_equal(rd(r->bd, buf, 512, 100), -EINVAL);
	assert_int_equal(rd(r->bd, buf, 100, 0), -EINVAL);
	assert_int_equal(rd(r->bd, buf, 1024, FILE_SIZE - 512), -EINVAL);
	assert_int_equal(wr(r->bd, buf, 512, FILE_SIZE), -EINVAL);
	assert_int_equal(rd(r->bd, buf, 0, 0), 0);
	assert_int_equal(blockdev_read(r->bd, iov, -1, 0), -EINVAL);
	assert_int_equal(rd(r->bd, buf, 512, FILE_SIZE - 512), 0);
	if (o->shuffle)
		assert_true(lo_count(&r->to_srv, &r->to_srv.reordered) > 0 &&
			    lo_count(&r->to_cli, &r->to_cli.reordered) > 0);
	free(buf);
	free(back);
	rig_stop(r);
}

static void test_rw_random(void **state)
{
	(void)state;
	random_rw(&defaults, 1, 40);
}

/* The same with frames delivered out of order and a small window. */
static void test_rw_random_shuffled(void **state)
{
	struct rig_opts o = { .shuffle = true, .window = 5 };

	(void)state;
	random_rw(&o, 2, 40);
}

static void test_flush_discard_zeroes(void **state)
{
	struct rig *r = rig_start(&defaults);
	size_t zlen = 20 * MiB;   /* two requests: over STORE_MSG_MAX_RANGE */
	uint8_t *buf = malloc(zlen), *back = malloc(zlen), *zero = calloc(1, zlen);
	struct store_server_stats st0, st1;

	(void)state;
	assert_non_null(buf);
	assert_non_null(back);
	assert_non_null(zero);
	store_server_stats(r->srv, &st0);
	assert_int_equal(blockdev_flush(r->bd), 0);
	store_server_stats(r->srv, &st1);
	assert_int_equal(st1.requests, st0.requests + 1);

	/* Discard: each sector reads back as before or as zeros. */
	fill(buf, 2 * MiB, 5);
	assert_int_equal(wr(r->bd, buf, 2 * MiB, MiB), 0);
	assert_int_equal(blockdev_discard(r->bd, MiB + 4096, MiB), 0);
	assert_int_equal(rd(r->bd, back, 2 * MiB, MiB), 0);
	for (size_t s = 0; s < 2 * MiB; s += 512)
		assert_true(!memcmp(back + s, buf + s, 512) || all_zero(back + s, 512));
	assert_memory_equal(back, buf, 4096);
	assert_memory_equal(back + MiB + 4096, buf + MiB + 4096, MiB - 4096);

	/* Write zeroes, without and with unmapping, across two requests. */
	fill(buf, zlen, 6);
	assert_int_equal(wr(r->bd, buf, zlen, 4 * MiB), 0);
	check_file(r, 4 * MiB, buf, zlen);
	assert_int_equal(blockdev_write_zeroes(r->bd, 4 * MiB + 512, zlen - 1024, false), 0);
	assert_int_equal(rd(r->bd, back, zlen, 4 * MiB), 0);
	assert_memory_equal(back, buf, 512);
	assert_true(all_zero(back + 512, zlen - 1024));
	assert_memory_equal(back + zlen - 512, buf + zlen - 512, 512);
	check_file(r, 4 * MiB, back, zlen);

	assert_int_equal(wr(r->bd, buf, MiB, 30 * MiB), 0);
	assert_int_equal(blockdev_write_zeroes(r->bd, 30 * MiB, MiB, true), 0);
	assert_int_equal(rd(r->bd, back, MiB, 30 * MiB), 0);
	assert_true(all_zero(back, MiB));
	check_file(r, 30 * MiB, zero, MiB);
	assert_int_equal(blockdev_write_zeroes(r->bd, 0, 0, false), 0);
	assert_int_equal(blockdev_discard(r->bd, 100, 512), -EINVAL);
	assert_int_equal(blockdev_write_zeroes(r->bd, FILE_SIZE - 512, 1024, true), -EINVAL);
	free(buf);
	free(back);
	free(zero);
	rig_stop(r);
}

static void test_read_only(void **state)
{
	struct rig *r = rig_start(&defaults);
	char path[128];
	struct blockdev *ro_file, *bd;
	uint8_t buf[4096], want[4096];
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/ro.img", r->dir);
	fd = open(path, O_CREAT | O_RDWR, 0600);
	assert_true(fd >= 0);
	fill(want, sizeof(want), 77);
	assert_int_equal(pwrite(fd, want, sizeof(want), 0), sizeof(want));
	assert_int_equal(ftruncate(fd, MiB), 0);
	close(fd);
	ro_file = open_file(path, true);
	assert_int_equal(store_server_export(r->srv, "ro", ro_file), 0);
	bd = open_remote(r, "ro");
	assert_true(bd->read_only);
	assert_int_equal(blockdev_size(bd), MiB);
	assert_int_equal(rd(bd, buf, sizeof(buf), 0), 0);
	assert_memory_equal(buf, want, sizeof(want));
	assert_int_equal(wr(bd, buf, sizeof(buf), 0), -EROFS);
	assert_int_equal(blockdev_discard(bd, 0, 4096), -EROFS);
	assert_int_equal(blockdev_write_zeroes(bd, 0, 4096, false), -EROFS);
	assert_int_equal(blockdev_flush(bd), 0);
	/* A refusal is not a failure of the store. */
	assert_int_equal(store_client_store_error(bd), 0);
	blockdev_close(bd);
	rig_stop(r);
	blockdev_close(ro_file);
	unlink(path);
}

/* ---- four threads at once, each on its own region, checked against a shadow ---- */

#define CONC_THREADS 4
#define CONC_REGION (2 * MiB)

struct conc_worker {
	pthread_t thread;
	struct blockdev *bd;
	unsigned id, rounds;
	uint8_t *shadow;        /* what the region must hold */
	unsigned failures;
	char first_failure[128];
};

static void conc_fail(struct conc_worker *w, const char *what, int rc)
{
	if (!w->failures++)
		snprintf(w->first_failure, sizeof(w->first_failure), "thread %u: %s (%d)", w->id,
			 what, rc);
}

static void *conc_main(void *arg)
{
	struct conc_worker *w = arg;
	uint64_t seed = 1000 + w->id, base = (uint64_t)w->id * CONC_REGION;
	uint8_t *buf = malloc(256 * KiB);
	struct iovec iov[32];

	for (unsigned i = 0; buf && i < w->rounds; i++) {
		size_t len = (size_t)(1 + rnd(&seed) % (256 * KiB / 512)) * 512;
		uint64_t off = rnd(&seed) % ((CONC_REGION - len) / 512 + 1) * 512;
		int n = cut(buf, len, iov, 32, &seed), rc;

		if (rnd(&seed) % 2) {
			fill(buf, len, seed);
			rc = blockdev_write(w->bd, iov, n, base + off);
			if (rc)
				conc_fail(w, "write", rc);
			else
				memcpy(w->shadow + off, buf, len);
		} else {
			rc = blockdev_read(w->bd, iov, n, base + off);
			if (rc)
				conc_fail(w, "read", rc);
			else if (memcmp(buf, w->shadow + off, len))
				conc_fail(w, "read returned other data", 0);
		}
	}
	if (!buf)
		conc_fail(w, "out of memory", -ENOMEM);
	free(buf);
	return NULL;
}

static void run_concurrent(struct rig *r, struct blockdev *bd, unsigned rounds)
{
	struct conc_worker w[CONC_THREADS];

	for (unsigned i = 0; i < CONC_THREADS; i++) {
		w[i] = (struct conc_worker){ .bd = bd, .id = i, .rounds = rounds };
		w[i].shadow = malloc(CONC_REGION);
		assert_non_null(w[i].shadow);
		assert_int_equal(pread(r->fd, w[i].shadow, CONC_REGION, (off_t)i * CONC_REGION),
				 CONC_REGION);
	}
	for (unsigned i = 0; i < CONC_THREADS; i++)
		assert_int_equal(pthread_create(&w[i].thread, NULL, conc_main, &w[i]), 0);
	for (unsigned i = 0; i < CONC_THREADS; i++)
		pthread_join(w[i].thread, NULL);
	for (unsigned i = 0; i < CONC_THREADS; i++) {
		if (w[i].failures)
			print_error("%s\n", w[i].first_failure);
		assert_int_equal(w[i].failures, 0);
		check_file(r, (uint64_t)i * CONC_REGION, w[i].shadow, CONC_REGION);
		free(w[i].shadow);
	}
}

static void test_concurrent(void **state)
{
	struct rig_opts o = { .shuffle = true, .window = 8, .workers = 3 };
	struct rig *r = rig_start(&o);
	struct store_client_stats st;

	(void)state;
	run_concurrent(r, r->bd, 60);
	store_client_stats(r->cli, &st);
	assert_int_equal(st.in_flight, 0);
	assert_int_equal(st.timeouts + st.malformed + st.unknown, 0);
	rig_stop(r);
}

/*
 * A server with room for two requests in all and a slow disk: most
 * requests are first refused BUSY, and the client sends them again until
 * they are done. Nothing fails.
 */
static void test_busy_retry(void **state)
{
	struct rig_opts o = { .workers = 1, .max_queued = 2 };
	struct rig *r = rig_start(&o);
	struct store_server_stats sst;
	struct store_client_stats cst;
	struct wrap_bd slow;
	struct blockdev *bd;

	(void)state;
	wrap_init(&slow, r->file_bd);
	slow.delay_us = 300;
	assert_int_equal(store_server_export(r->srv, "slow", &slow.bd), 0);
	bd = open_remote(r, "slow");
	run_concurrent(r, bd, 10);
	store_server_stats(r->srv, &sst);
	store_client_stats(r->cli, &cst);
	assert_true(sst.busy > 0);
	assert_true(cst.retries > 0);
	assert_int_equal(store_client_store_error(bd), 0);
	blockdev_close(bd);
	rig_stop(r);
}

/* Errors of the server's disk come back as they are; the store stays usable. */
static void test_io_error(void **state)
{
	struct rig *r = rig_start(&defaults);
	struct store_server_stats st;
	uint8_t *buf = malloc(256 * KiB), want[4096];
	struct wrap_bd faulty;
	struct blockdev *bd;

	(void)state;
	assert_non_null(buf);
	wrap_init(&faulty, r->file_bd);
	faulty.eio_lo = MiB;
	faulty.eio_hi = MiB + 4096;
	faulty.nospc_lo = 2 * MiB;
	faulty.nospc_hi = 2 * MiB + 512;
	faulty.flush_rc = -EBADMSG;    /* no portable code: an I/O error */
	assert_int_equal(store_server_export(r->srv, "faulty", &faulty.bd), 0);
	bd = open_remote(r, "faulty");

	/* One of the four requests fails: the whole read does. */
	assert_int_equal(rd(bd, buf, 256 * KiB, MiB - 64 * KiB), -EIO);
	assert_int_equal(wr(bd, buf, 4096, MiB), -EIO);
	assert_int_equal(wr(bd, buf, 64 * KiB, 2 * MiB - 32 * KiB), -ENOSPC);
	assert_int_equal(blockdev_flush(bd), -EIO);
	assert_int_equal(store_client_store_error(bd), 0);
	/* Elsewhere it works. */
	assert_int_equal(rd(bd, want, sizeof(want), 3 * MiB), 0);
	check_file(r, 3 * MiB, want, sizeof(want));
	store_server_stats(r->srv, &st);
	assert_int_equal(st.io_errors, 4);
	assert_true(log_has(&r->srv_side.log, "READ on faulty (offset 1048576, length 65536) "
			    "for node 0 failed: Input/output error"));
	blockdev_close(bd);
	free(buf);
	rig_stop(r);
}

/* ---- failures ---- */

/*
 * The server never answers (its link holds every frame); the node is then
 * reported down: everything in flight fails at once with -ENOTCONN. The
 * timeout is long, so an -ETIMEDOUT would mean peer_down did nothing.
 */
static void test_peer_down(void **state)
{
	struct rig_opts o = { .timeout_ms = 120000 };
	struct rig *r = rig_start(&o);
	struct async_op a, b;
	uint8_t buf[512];

	(void)state;
	lo_set_mode(&r->to_srv, LO_HOLD);
	async_start(&a, r->bd, OP_READ, 0, MiB);            /* 16 requests */
	async_start(&b, r->bd, OP_WRITE, 2 * MiB, 512 * KiB);  /* 8 */
	WAIT_FOR(cli_in_flight(r->cli) == 24);
	store_client_peer_down(r->cli, SERVER_NODE);
	assert_int_equal(async_join(&a), -ENOTCONN);
	assert_int_equal(async_join(&b), -ENOTCONN);
	assert_int_equal(cli_in_flight(r->cli), 0);
	/* The node stays down: its stores fail at once, nothing is sent. */
	assert_int_equal(store_client_store_error(r->bd), -ENOTCONN);
	assert_int_equal(rd(r->bd, buf, sizeof(buf), 0), -ENOTCONN);
	assert_int_equal(blockdev_flush(r->bd), -ENOTCONN);
	assert_int_equal(lo_count(&r->to_srv, &r->to_srv.sent), 24 + 1);   /* + the OPEN */
	assert_true(log_has(&r->cli_side.log, "node 1 is down"));
	store_client_peer_down(r->cli, SERVER_NODE);   /* twice is harmless */
	store_client_peer_down(r->cli, 1000);
	rig_stop(r);
}

/* Requests to a server that never gets them time out, and the store fails for good. */
static void test_timeout(void **state)
{
	/* Long enough that what must succeed does on a loaded machine; each expiry costs it. */
	struct rig_opts o = { .timeout_ms = 1000 };
	struct rig *r = rig_start(&o);
	struct store_server_stats sst, sst2;
	struct store_client_stats st;
	uint8_t buf[64 * KiB];
	unsigned sent;
	struct blockdev *bd;

	(void)state;
	lo_set_mode(&r->to_srv, LO_DROP);
	assert_int_equal(rd(r->bd, buf, sizeof(buf), 0), -ETIMEDOUT);
	assert_int_equal(store_client_store_error(r->bd), -ETIMEDOUT);
	assert_true(log_has(&r->cli_side.log, "store disk0 on node 1 failed: READ request"));
	sent = lo_count(&r->to_srv, &r->to_srv.sent);
	/* Later operations fail without being sent. */
	assert_int_equal(blockdev_flush(r->bd), -ETIMEDOUT);
	assert_int_equal(wr(r->bd, buf, 512, 0), -ETIMEDOUT);
	assert_int_equal(lo_count(&r->to_srv, &r->to_srv.sent), sent);
	store_client_stats(r->cli, &st);
	assert_int_equal(st.timeouts, 1);
	assert_int_equal(st.in_flight, 0);
	/* An OPEN times out too (there is no store to fail yet). */
	assert_int_equal(store_client_open(r->cli, SERVER_NODE, "disk0", &bd, (char[64]){ 0 }, 64),
			 -ETIMEDOUT);

	/* Replies lost instead: the write was done, but the client cannot know it. */
	lo_set_mode(&r->to_srv, LO_DELIVER);
	blockdev_close(r->bd);
	r->bd = open_remote(r, "disk0");
	assert_int_equal(store_client_store_error(r->bd), 0);
	lo_set_mode(&r->to_cli, LO_DROP);
	fill(buf, sizeof(buf), 123);
	store_server_stats(r->srv, &sst);
	assert_int_equal(wr(r->bd, buf, sizeof(buf), 5 * MiB), -ETIMEDOUT);
	WAIT_FOR((store_server_stats(r->srv, &sst2), sst2.requests == sst.requests + 1 &&
		  sst2.queued == 0));
	check_file(r, 5 * MiB, buf, sizeof(buf));

	/* Replies late: they arrive after the timeout and are dropped with a log line. */
	lo_set_mode(&r->to_cli, LO_DELIVER);
	blockdev_close(r->bd);
	r->bd = open_remote(r, "disk0");
	lo_set_mode(&r->to_cli, LO_HOLD);
	assert_int_equal(rd(r->bd, buf, sizeof(buf), 0), -ETIMEDOUT);
	lo_release(&r->to_cli);
	WAIT_FOR((store_client_stats(r->cli, &st), st.unknown == 1));
	assert_true(log_has(&r->cli_side.log, "no such request in flight"));
	rig_stop(r);
}

/* Shutting the client down ends what is in flight; stores outlive the client object. */
static void test_client_shutdown(void **state)
{
	struct rig_opts o = { .timeout_ms = 120000 };
	struct rig *r = rig_start(&o);
	struct async_op a;
	uint8_t buf[512];

	(void)state;
	lo_set_mode(&r->to_srv, LO_HOLD);
	async_start(&a, r->bd, OP_READ, 0, 128 * KiB);
	WAIT_FOR(cli_in_flight(r->cli) == 2);
	store_client_shutdown(r->cli);
	assert_int_equal(async_join(&a), -ESHUTDOWN);
	assert_int_equal(rd(r->bd, buf, sizeof(buf), 0), -ESHUTDOWN);
	assert_int_equal(store_client_store_error(r->bd), -ESHUTDOWN);
	store_client_shutdown(r->cli);
	/* Destroyed with a store open: the store keeps the memory until it is closed. */
	store_client_destroy(r->cli);
	r->cli = NULL;
	assert_int_equal(blockdev_flush(r->bd), -ESHUTDOWN);
	rig_stop(r);
}

static void *shutdown_main(void *srv)
{
	store_server_shutdown(srv);
	return NULL;
}

static bool server_stopping(struct rig *r)
{
	struct store_server_stats st;

	store_server_stats(r->srv, &st);
	return st.stopping;
}

/*
 * A server stopping with a request in service and two queued: the first
 * completes, the queued ones are answered SHUTDOWN (nothing done).
 */
static void test_server_shutdown(void **state)
{
	struct rig_opts o = { .workers = 1, .timeout_ms = 120000 };
	struct rig *r = rig_start(&o);
	struct wrap_bd gate;
	struct blockdev *bd, *probe = NULL;
	struct async_op a[3];
	pthread_t stopper;
	char err[128];
	int ok = 0, shut = 0;

	(void)state;
	wrap_init(&gate, r->file_bd);
	gate.gate_closed = true;
	assert_int_equal(store_server_export(r->srv, "gate", &gate.bd), 0);
	bd = open_remote(r, "gate");
	async_start(&a[0], bd, OP_WRITE, 0, 4096);
	WAIT_FOR(wrap_waiting(&gate) == 1);
	async_start(&a[1], bd, OP_WRITE, 8192, 4096);
	async_start(&a[2], bd, OP_FLUSH, 0, 0);
	WAIT_FOR(cli_in_flight(r->cli) == 3);
	assert_int_equal(pthread_create(&stopper, NULL, shutdown_main, r->srv), 0);
	/* Once the server is stopping, let the disk go on. */
	WAIT_FOR(server_stopping(r));
	assert_int_equal(store_client_open(r->cli, SERVER_NODE, "gate", &probe, err, sizeof(err)),
			 -ESHUTDOWN);
	wrap_open_gate(&gate);
	pthread_join(stopper, NULL);
	for (int i = 0; i < 3; i++) {
		int rc = async_join(&a[i]);

		ok += rc == 0;
		shut += rc == -ESHUTDOWN;
	}
	assert_int_equal(ok, 1);
	assert_int_equal(shut, 2);
	blockdev_close(bd);
	rig_stop(r);
}

/* A client node that goes down: the server drops its queued requests. */
static void test_server_peer_down(void **state)
{
	struct rig_opts o = { .workers = 1, .timeout_ms = 120000 };
	struct rig *r = rig_start(&o);
	struct store_server_stats st;
	struct wrap_bd gate;
	struct blockdev *bd;
	struct async_op a[3];

	(void)state;
	wrap_init(&gate, r->file_bd);
	gate.gate_closed = true;
	assert_int_equal(store_server_export(r->srv, "gate", &gate.bd), 0);
	bd = open_remote(r, "gate");
	async_start(&a[0], bd, OP_WRITE, 0, 4096);
	WAIT_FOR(wrap_waiting(&gate) == 1);
	async_start(&a[1], bd, OP_READ, 8192, 4096);
	async_start(&a[2], bd, OP_READ, 16384, 4096);
	WAIT_FOR((store_server_stats(r->srv, &st), st.queued == 3));
	store_server_peer_down(r->srv, CLIENT_NODE);
	store_server_stats(r->srv, &st);
	assert_int_equal(st.dropped, 2);
	assert_int_equal(st.queued, 1);
	/* And the client sees the server's node go (the fabric tells both ends). */
	store_client_peer_down(r->cli, SERVER_NODE);
	for (int i = 0; i < 3; i++)
		assert_int_equal(async_join(&a[i]), -ENOTCONN);
	wrap_open_gate(&gate);
	WAIT_FOR((store_server_stats(r->srv, &st), st.queued == 0));
	blockdev_close(bd);
	rig_stop(r);
}

/* ---- one side alone, against a simulated peer that captures what it is sent ---- */

struct sim {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct lo_frame *frames;    /* in send order */
	unsigned n;
	bool block_writes;          /* a WRITE's send waits inside send() until cleared */
	unsigned blocked;
	struct logbook log;
};

static int sim_send(void *ctx, unsigned dst, uint16_t type, uint64_t req_id,
		    const struct iovec *iov, int iovcnt)
{
	struct sim *s = ctx;
	struct lo_frame *f, **pp;
	size_t len, off = 0;

	if (!lo_frame_ok(type, iov, iovcnt, &len))
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	if (type == STORE_MSG_WRITE && s->block_writes) {
		s->blocked++;
		while (s->block_writes)
			pthread_cond_wait(&s->cond, &s->lock);
		s->blocked--;
	}
	pthread_mutex_unlock(&s->lock);
	f = malloc(sizeof(*f) + len);
	if (!f)
		return -ENOMEM;
	/* src holds the destination here: what the tests check. */
	*f = (struct lo_frame){ .src = dst, .type = type, .req_id = req_id, .len = len };
	for (int i = 0; i < iovcnt; i++) {
		memcpy(f->data + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	pthread_mutex_lock(&s->lock);
	for (pp = &s->frames; *pp; pp = &(*pp)->next)
		;
	*pp = f;
	s->n++;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static void sim_log(void *ctx, const char *msg)
{
	log_line(&((struct sim *)ctx)->log, msg);
}

static void sim_init(struct sim *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	pthread_mutex_init(&s->log.lock, NULL);
}

static void sim_fini(struct sim *s)
{
	lo_free_list(s->frames);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->log.lock);
}

static unsigned sim_count(struct sim *s)
{
	unsigned n;

	pthread_mutex_lock(&s->lock);
	n = s->n;
	pthread_mutex_unlock(&s->lock);
	return n;
}

static unsigned sim_blocked(struct sim *s)
{
	unsigned n;

	pthread_mutex_lock(&s->lock);
	n = s->blocked;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* Takes the first frame of a type (and request id, unless 0) sent; waits for it. */
static struct lo_frame *sim_take(struct sim *s, uint16_t type, uint64_t req_id)
{
	struct lo_frame *f = NULL, **pp;
	struct timespec ts;

	pthread_mutex_lock(&s->lock);
	for (unsigned waited = 0; !f && waited < 20000; waited++) {
		for (pp = &s->frames; *pp; pp = &(*pp)->next)
			if ((*pp)->type == type && (!req_id || (*pp)->req_id == req_id))
				break;
		if (*pp) {
			f = *pp;
			*pp = f->next;
			s->n--;
			break;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	}
	pthread_mutex_unlock(&s->lock);
	assert_non_null(f);
	return f;
}

/* The server's answer to req_id: its status (and the decoded reply in *out if asked). */
static unsigned sim_status(struct sim *s, uint64_t req_id, uint16_t req_type,
			   struct store_reply *out, uint8_t *data)
{
	struct lo_frame *f = sim_take(s, STORE_MSG_REPLY, req_id);
	struct store_reply r;
	const char *why = NULL;

	assert_int_equal(f->src, CLIENT_NODE);
	assert_int_equal(store_msg_decode_reply(f->data, f->len, &r, &why), 0);
	assert_int_equal(r.req_type, req_type);
	if (out)
		*out = r;
	if (data && r.data_len)
		memcpy(data, r.data, r.data_len);
	free(f);
	return r.status;
}

/* Sends the server a request built from fields (valid or not) plus a body. */
static void send_req(struct store_server *srv, unsigned src, uint16_t type, uint64_t req_id,
		     const struct store_req *q, const void *body, size_t blen)
{
	uint8_t *p = malloc(STORE_MSG_REQ_HDR_LEN + blen + 1);

	assert_non_null(p);
	memset(p, 0, STORE_MSG_REQ_HDR_LEN);
	p[0] = STORE_MSG_VERSION;
	p[1] = q->flags;
	for (int i = 0; i < 4; i++)
		p[4 + i] = (uint8_t)(q->handle >> (8 * i));
	for (int i = 0; i < 8; i++)
		p[8 + i] = (uint8_t)(q->off >> (8 * i));
	for (int i = 0; i < 4; i++)
		p[16 + i] = (uint8_t)(q->len >> (8 * i));
	if (blen)
		memcpy(p + STORE_MSG_REQ_HDR_LEN, body, blen);
	store_server_receive(srv, src, type, req_id, p, STORE_MSG_REQ_HDR_LEN + blen);
	free(p);
}

static void test_server_refusals(void **state)
{
	char dir[64] = "/tmp/grappe-rs-XXXXXX", path[96], ro_path[96];
	struct store_server_config sc = { .send = sim_send, .log = sim_log };
	struct store_server *srv;
	struct store_server_stats st;
	struct blockdev *disk, *ro;
	struct store_reply rep;
	uint8_t garbage[50], data[4096], back[4096], before[4096];
	struct sim sim;
	char err[256];
	unsigned logs;
	int fd;

	(void)state;
	sim_init(&sim);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/disk.img", dir);
	snprintf(ro_path, sizeof(ro_path), "%s/ro.img", dir);
	make_file(path, FILE_SIZE);
	make_file(ro_path, RW_AREA);
	disk = open_file(path, false);
	ro = open_file(ro_path, true);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, before, sizeof(before), 0), sizeof(before));
	sc.ctx = &sim;
	assert_int_equal(store_server_create(&srv, &sc, err, sizeof(err)), 0);
	assert_int_equal(store_server_export(srv, "disk0", disk), 0);
	assert_int_equal(store_server_export(srv, "ro", ro), 0);

	/* Malformed: answered PROTO, never acted on, logged. */
	memset(garbage, 0xee, sizeof(garbage));
	store_server_receive(srv, CLIENT_NODE, STORE_MSG_READ, 1, garbage, sizeof(garbage));
	assert_int_equal(sim_status(&sim, 1, STORE_MSG_READ, NULL, NULL), STORE_ST_PROTO);
	fill(data, sizeof(data), 4);
	send_req(srv, CLIENT_NODE, STORE_MSG_WRITE, 2, &(struct store_req){ .len = 4096 },
		 data, 4000);
	assert_int_equal(sim_status(&sim, 2, STORE_MSG_WRITE, NULL, NULL), STORE_ST_PROTO);
	garbage[0] = 2;
	store_server_receive(srv, CLIENT_NODE, STORE_MSG_FLUSH, 3, garbage,
			     STORE_MSG_REQ_HDR_LEN);
	assert_int_equal(sim_status(&sim, 3, STORE_MSG_FLUSH, NULL, NULL), STORE_ST_PROTO);
	send_req(srv, CLIENT_NODE, STORE_MSG_OPEN, 4, &(struct store_req){ .len = 3 }, "a b", 3);
	assert_int_equal(sim_status(&sim, 4, STORE_MSG_OPEN, NULL, NULL), STORE_ST_PROTO);
	send_req(srv, CLIENT_NODE, STORE_MSG_READ, 5,
		 &(struct store_req){ .off = 100, .len = 512 }, NULL, 0);
	assert_int_equal(sim_status(&sim, 5, STORE_MSG_READ, NULL, NULL), STORE_ST_PROTO);
	assert_true(log_has(&sim.log, "refused a malformed READ from node 0 (request 5, 24 "
			    "bytes): offset or length not a multiple of 512"));

	/* Not requests at all, or from a node that cannot exist: no answer. */
	logs = log_count(&sim.log);
	send_req(srv, CLIENT_NODE, 0x3f0, 6, &(struct store_req){ .len = 512 }, NULL, 0);
	send_req(srv, CLIENT_NODE, STORE_MSG_REPLY, 7, &(struct store_req){ .len = 512 }, NULL, 0);
	send_req(srv, STORE_MAX_NODES, STORE_MSG_READ, 8, &(struct store_req){ .len = 512 },
		 NULL, 0);
	assert_int_equal(sim_count(&sim), 0);
	assert_int_equal(log_count(&sim.log), logs + 3);
	assert_true(log_has(&sim.log, "type 0x3f0 from node 0: not a store request"));

	/* Well formed but refused. */
	send_req(srv, CLIENT_NODE, STORE_MSG_OPEN, 9, &(struct store_req){ .len = 4 }, "nope", 4);
	assert_int_equal(sim_status(&sim, 9, STORE_MSG_OPEN, NULL, NULL), STORE_ST_NOENT);
	send_req(srv, CLIENT_NODE, STORE_MSG_OPEN, 10, &(struct store_req){ .len = 5 }, "disk0", 5);
	assert_int_equal(sim_status(&sim, 10, STORE_MSG_OPEN, &rep, NULL), STORE_ST_OK);
	assert_int_equal(rep.info.handle, 0);
	assert_int_equal(rep.info.size, FILE_SIZE);
	assert_int_equal(rep.info.max_inflight, 64);
	send_req(srv, CLIENT_NODE, STORE_MSG_READ, 11,
		 &(struct store_req){ .handle = 99, .len = 512 }, NULL, 0);
	assert_int_equal(sim_status(&sim, 11, STORE_MSG_READ, NULL, NULL), STORE_ST_BADHANDLE);
	send_req(srv, CLIENT_NODE, STORE_MSG_READ, 12,
		 &(struct store_req){ .off = FILE_SIZE, .len = 512 }, NULL, 0);
	assert_int_equal(sim_status(&sim, 12, STORE_MSG_READ, NULL, NULL), STORE_ST_INVAL);
	send_req(srv, CLIENT_NODE, STORE_MSG_DISCARD, 13,
		 &(struct store_req){ .off = FILE_SIZE - 512, .len = 1024 }, NULL, 0);
	assert_int_equal(sim_status(&sim, 13, STORE_MSG_DISCARD, NULL, NULL), STORE_ST_INVAL);
	send_req(srv, CLIENT_NODE, STORE_MSG_WRITE, 14,
		 &(struct store_req){ .handle = 1, .len = 4096 }, data, 4096);
	assert_int_equal(sim_status(&sim, 14, STORE_MSG_WRITE, NULL, NULL), STORE_ST_ROFS);

	/* Nothing above touched the disk. */
	assert_int_equal(pread(fd, back, sizeof(back), 0), sizeof(back));
	assert_memory_equal(back, before, sizeof(back));

	/* A good write and read on the same server still work. */
	send_req(srv, CLIENT_NODE, STORE_MSG_WRITE, 15, &(struct store_req){ .len = 4096 },
		 data, 4096);
	assert_int_equal(sim_status(&sim, 15, STORE_MSG_WRITE, NULL, NULL), STORE_ST_OK);
	send_req(srv, CLIENT_NODE, STORE_MSG_READ, 16, &(struct store_req){ .len = 4096 },
		 NULL, 0);
	memset(back, 0, sizeof(back));
	assert_int_equal(sim_status(&sim, 16, STORE_MSG_READ, &rep, back), STORE_ST_OK);
	assert_int_equal(rep.data_len, 4096);
	assert_memory_equal(back, data, sizeof(data));

	store_server_stats(srv, &st);
	assert_int_equal(st.malformed, 8);
	assert_int_equal(st.refused, 4);
	assert_int_equal(st.opens, 2);
	assert_int_equal(st.requests, 2);
	store_server_destroy(srv);
	/* After shutdown nothing is answered. */
	blockdev_close(disk);
	blockdev_close(ro);
	close(fd);
	unlink(path);
	unlink(ro_path);
	rmdir(dir);
	sim_fini(&sim);
}

/* ---- the client alone: replies injected by hand ---- */

struct async_open {
	pthread_t thread;
	struct store_client *cli;
	const char *name;       /* NULL: "disk0" */
	struct blockdev *bd;
	int rc;                 /* written by the thread when the open returns */
};

static void *open_main(void *arg)
{
	struct async_open *a = arg;
	char err[128];
	int rc = store_client_open(a->cli, SERVER_NODE, a->name ? a->name : "disk0", &a->bd, err,
				   sizeof(err));

	__atomic_store_n(&a->rc, rc, __ATOMIC_RELEASE);
	return NULL;
}

static void inject(struct store_client *cli, uint64_t req_id, const struct store_reply *r)
{
	uint8_t buf[STORE_MSG_REPLY_MAX_HDR + STORE_MSG_MAX_DATA];
	const char *why = NULL;
	int n = store_msg_encode_reply(r, buf, sizeof(buf), &why);

	assert_true(n > 0);
	if (r->data_len)
		memcpy(buf + n, r->data, r->data_len);
	store_client_receive(cli, SERVER_NODE, STORE_MSG_REPLY, req_id, buf,
			     (size_t)n + r->data_len);
}

/* Opens "disk0" answering the OPEN with the description given. */
static struct blockdev *sim_open(struct sim *s, struct store_client *cli,
				 const struct store_info *in)
{
	struct async_open a = { .cli = cli };
	struct store_reply r = { .req_type = STORE_MSG_OPEN, .info = *in };
	struct lo_frame *f;
	struct store_req q;
	const char *why;

	assert_int_equal(pthread_create(&a.thread, NULL, open_main, &a), 0);
	f = sim_take(s, STORE_MSG_OPEN, 0);
	assert_int_equal(f->src, SERVER_NODE);
	assert_int_equal(store_msg_decode_req(STORE_MSG_OPEN, f->data, f->len, &q, &why), 0);
	assert_int_equal(q.len, 5);
	assert_memory_equal(q.body, "disk0", 5);
	inject(cli, f->req_id, &r);
	free(f);
	pthread_join(a.thread, NULL);
	assert_int_equal(a.rc, 0);
	return a.bd;
}

/* Takes the next request of a type and decodes it. */
static struct lo_frame *sim_req(struct sim *s, uint16_t type, struct store_req *q)
{
	struct lo_frame *f = sim_take(s, type, 0);
	const char *why = NULL;

	assert_int_equal(store_msg_decode_req(type, f->data, f->len, q, &why), 0);
	return f;
}

static void test_client_refusals(void **state)
{
	struct store_client_config cc = { .send = sim_send, .log = sim_log, .timeout_ms = 120000 };
	struct store_info in = { .handle = 3, .block_size = 4096, .size = MiB, .discard = true,
				 .max_inflight = 4 };
	struct store_client *cli;
	struct store_client_stats st;
	struct blockdev *bd;
	struct async_op a;
	struct lo_frame *f;
	struct store_req q;
	uint8_t data[4096], garbage[64];
	struct sim sim;
	char err[128];

	(void)state;
	sim_init(&sim);
	cc.ctx = &sim;
	assert_int_equal(store_client_create(&cli, &cc, err, sizeof(err)), 0);
	bd = sim_open(&sim, cli, &in);
	assert_int_equal(bd->block_size, 4096);
	assert_int_equal(blockdev_size(bd), MiB);
	assert_true(bd->discard);

	/* Replies to nothing, and frames that are not replies: logged, dropped. */
	memset(garbage, 0x5a, sizeof(garbage));
	store_client_receive(cli, SERVER_NODE, STORE_MSG_REPLY, 999999, garbage, sizeof(garbage));
	store_client_receive(cli, SERVER_NODE, STORE_MSG_READ, 1, garbage, sizeof(garbage));
	store_client_stats(cli, &st);
	assert_int_equal(st.unknown, 1);
	assert_int_equal(st.malformed, 1);
	assert_true(log_has(&sim.log, "not a store reply"));

	/* A read answered by the wrong node (ignored), then with too little data. */
	async_start(&a, bd, OP_READ, 8192, 4096);
	f = sim_req(&sim, STORE_MSG_READ, &q);
	assert_int_equal(q.handle, 3);
	assert_int_equal(q.off, 8192);
	assert_int_equal(q.len, 4096);
	fill(data, sizeof(data), 1);
	{
		uint8_t buf[STORE_MSG_REPLY_HDR_LEN + 4096] = { 1, 1, 0, 0 };

		memcpy(buf + STORE_MSG_REPLY_HDR_LEN, data, 4096);
		store_client_receive(cli, 2, STORE_MSG_REPLY, f->req_id, buf, sizeof(buf));
		assert_int_equal(cli_in_flight(cli), 1);
		store_client_receive(cli, SERVER_NODE, STORE_MSG_REPLY, f->req_id, buf,
				     STORE_MSG_REPLY_HDR_LEN + 512);
	}
	free(f);
	assert_int_equal(async_join(&a), -EPROTO);
	assert_int_equal(store_client_store_error(bd), -EPROTO);
	assert_true(log_has(&sim.log, "read data length differs from the request's"));
	blockdev_close(bd);

	/* A write: the request carries the caller's data; a truncated reply fails it. */
	bd = sim_open(&sim, cli, &in);
	async_start(&a, bd, OP_WRITE, 4096, 4096);
	f = sim_req(&sim, STORE_MSG_WRITE, &q);
	fill(data, sizeof(data), 4096);   /* what async_start wrote into its buffer */
	assert_int_equal(q.len, 4096);
	assert_memory_equal(q.body, data, 4096);
	store_client_receive(cli, SERVER_NODE, STORE_MSG_REPLY, f->req_id, garbage, 3);
	free(f);
	assert_int_equal(async_join(&a), -EPROTO);
	assert_true(log_has(&sim.log, "truncated header"));
	blockdev_close(bd);

	/* A flush answered as if it were a read. */
	bd = sim_open(&sim, cli, &in);
	async_start(&a, bd, OP_FLUSH, 0, 0);
	f = sim_req(&sim, STORE_MSG_FLUSH, &q);
	inject(cli, f->req_id, &(struct store_reply){ .req_type = STORE_MSG_READ,
						      .status = STORE_ST_IO });
	free(f);
	assert_int_equal(async_join(&a), -EPROTO);
	assert_true(log_has(&sim.log, "answers another type of request"));
	blockdev_close(bd);

	/* Status codes map to errnos, and are not failures of the store. */
	bd = sim_open(&sim, cli, &in);
	async_start(&a, bd, OP_WRITE, 0, 4096);
	f = sim_req(&sim, STORE_MSG_WRITE, &q);
	inject(cli, f->req_id, &(struct store_reply){ .req_type = STORE_MSG_WRITE,
						      .status = STORE_ST_NOSPC });
	free(f);
	assert_int_equal(async_join(&a), -ENOSPC);
	assert_int_equal(store_client_store_error(bd), 0);

	/* BUSY: the same request comes again, under a new id, and then succeeds. */
	async_start(&a, bd, OP_READ, 0, 4096);
	f = sim_req(&sim, STORE_MSG_READ, &q);
	inject(cli, f->req_id, &(struct store_reply){ .req_type = STORE_MSG_READ,
						      .status = STORE_ST_BUSY });
	{
		struct lo_frame *again = sim_req(&sim, STORE_MSG_READ, &q);

		assert_int_not_equal(again->req_id, f->req_id);
		assert_int_equal(q.off, 0);
		fill(data, sizeof(data), 55);
		inject(cli, again->req_id, &(struct store_reply){ .req_type = STORE_MSG_READ,
								  .data = data,
								  .data_len = 4096 });
		free(again);
	}
	free(f);
	pthread_join(a.thread, NULL);
	assert_int_equal(a.rc, 0);
	assert_memory_equal(a.buf, data, 4096);
	free(a.buf);
	store_client_stats(cli, &st);
	assert_int_equal(st.retries, 1);

	/*
	 * The server's credit (4) bounds what is in flight: a 512 KiB read
	 * goes out four requests at a time, each answer letting one more go.
	 */
	async_start(&a, bd, OP_READ, 0, 512 * KiB);
	for (unsigned i = 0; i < 8; i++) {
		uint8_t chunk[64 * KiB];

		WAIT_FOR(sim_count(&sim) == (i < 4 ? 4 : 8 - i));
		assert_true(cli_in_flight(cli) <= 4);
		f = sim_req(&sim, STORE_MSG_READ, &q);
		fill(chunk, q.len, q.off);
		inject(cli, f->req_id, &(struct store_reply){ .req_type = STORE_MSG_READ,
							      .data = chunk, .data_len = q.len });
		free(f);
	}
	pthread_join(a.thread, NULL);
	assert_int_equal(a.rc, 0);
	for (unsigned i = 0; i < 8; i++) {
		uint8_t chunk[64 * KiB];

		fill(chunk, sizeof(chunk), (uint64_t)i * 64 * KiB);
		assert_memory_equal(a.buf + i * 64 * KiB, chunk, sizeof(chunk));
	}
	free(a.buf);

	/* A storm of garbage at a read in flight: no crash; its own garbage fails it. */
	async_start(&a, bd, OP_READ, 0, 4096);
	f = sim_req(&sim, STORE_MSG_READ, &q);
	{
		uint64_t seed = 42;

		for (unsigned i = 0; i < 3000; i++) {
			uint8_t junk[96];
			size_t len = rnd(&seed) % sizeof(junk);

			for (size_t j = 0; j < len; j++)
				junk[j] = (uint8_t)rnd(&seed);
			store_client_receive(cli, (unsigned)(rnd(&seed) % 3),
					     (uint16_t)(0x300 + rnd(&seed) % 0x100),
					     f->req_id + 1 + rnd(&seed) % 50, junk, len);
		}
		assert_int_equal(cli_in_flight(cli), 1);
		garbage[0] = 7;   /* an unknown version: cannot decode */
		store_client_receive(cli, SERVER_NODE, STORE_MSG_REPLY, f->req_id, garbage, 40);
	}
	free(f);
	assert_int_equal(async_join(&a), -EPROTO);
	blockdev_close(bd);
	store_client_destroy(cli);
	sim_fini(&sim);
}

/*
 * OPEN as a barrier, at the server: a store that timed out while its
 * write sat at the server is reopened; the OPEN is answered only once the
 * old write is done, so it cannot land over what the new store writes.
 */
static void test_reopen_barrier(void **state)
{
	struct rig_opts o = { .timeout_ms = 1000, .workers = 1 };
	struct rig *r = rig_start(&o);
	struct store_server_stats st;
	struct async_open op = { .cli = r->cli };
	uint8_t old[64 * KiB], new[64 * KiB];
	struct wrap_bd gate;
	struct blockdev *bd;

	(void)state;
	wrap_init(&gate, r->file_bd);
	gate.gate_closed = true;
	assert_int_equal(store_server_export(r->srv, "gate", &gate.bd), 0);
	bd = open_remote(r, "gate");
	fill(old, sizeof(old), 1);
	fill(new, sizeof(new), 2);
	assert_int_equal(wr(bd, old, sizeof(old), 0), -ETIMEDOUT);
	assert_int_equal(store_client_store_error(bd), -ETIMEDOUT);
	blockdev_close(bd);

	op.name = "gate";
	op.rc = 1;
	assert_int_equal(pthread_create(&op.thread, NULL, open_main, &op), 0);
	WAIT_FOR((store_server_stats(r->srv, &st), st.opens_waiting == 1));
	/* Held while the old write is pending (the gate is still closed: no timing here). */
	assert_int_equal(__atomic_load_n(&op.rc, __ATOMIC_ACQUIRE), 1);
	wrap_open_gate(&gate);
	pthread_join(op.thread, NULL);
	assert_int_equal(op.rc, 0);
	check_file(r, 0, old, sizeof(old));   /* the old write is done by now */
	assert_int_equal(wr(op.bd, new, sizeof(new), 0), 0);
	check_file(r, 0, new, sizeof(new));
	store_server_stats(r->srv, &st);
	assert_int_equal(st.opens_waiting, 0);
	blockdev_close(op.bd);
	rig_stop(r);
}

/*
 * OPEN as a barrier, at the client: an OPEN leaves only after the sends
 * already in progress to that node (here a WRITE stuck inside send()).
 */
static void test_open_after_sends(void **state)
{
	struct store_client_config cc = { .send = sim_send, .log = sim_log, .timeout_ms = 120000 };
	struct store_info in = { .handle = 0, .block_size = 512, .size = MiB, .max_inflight = 8 };
	struct async_open op;
	struct store_client *cli;
	struct blockdev *bd;
	struct async_op w;
	struct lo_frame *f;
	struct sim sim;
	char err[128];

	(void)state;
	sim_init(&sim);
	cc.ctx = &sim;
	assert_int_equal(store_client_create(&cli, &cc, err, sizeof(err)), 0);
	bd = sim_open(&sim, cli, &in);
	sim.block_writes = true;
	async_start(&w, bd, OP_WRITE, 0, 4096);
	WAIT_FOR(sim_blocked(&sim) == 1);
	op = (struct async_open){ .cli = cli, .name = "disk0", .rc = 1 };
	assert_int_equal(pthread_create(&op.thread, NULL, open_main, &op), 0);
	sleep_ms(50);   /* room for a broken gate to let the OPEN overtake (not needed to pass) */
	assert_int_equal(sim_count(&sim), 0);
	pthread_mutex_lock(&sim.lock);
	sim.block_writes = false;
	pthread_cond_broadcast(&sim.cond);
	pthread_mutex_unlock(&sim.lock);
	WAIT_FOR(sim_count(&sim) == 2);
	pthread_mutex_lock(&sim.lock);
	assert_int_equal(sim.frames->type, STORE_MSG_WRITE);
	assert_int_equal(sim.frames->next->type, STORE_MSG_OPEN);
	pthread_mutex_unlock(&sim.lock);
	f = sim_take(&sim, STORE_MSG_WRITE, 0);
	inject(cli, f->req_id, &(struct store_reply){ .req_type = STORE_MSG_WRITE });
	free(f);
	f = sim_take(&sim, STORE_MSG_OPEN, 0);
	inject(cli, f->req_id, &(struct store_reply){ .req_type = STORE_MSG_OPEN, .info = in });
	free(f);
	assert_int_equal(async_join(&w), 0);
	pthread_join(op.thread, NULL);
	assert_int_equal(op.rc, 0);
	blockdev_close(op.bd);
	blockdev_close(bd);
	store_client_destroy(cli);
	sim_fini(&sim);
}

/* ---- a volume whose second store is on the server ---- */

#define VCHUNK (64u * KiB)
#define VSIZE (16u * VCHUNK)
#define VSTORE "vol0/1"

struct vremote {
	char dir[64], path[2][96];
	struct vlayout lay;
	struct store_server *srv;
	struct store_client *cli;
	struct blockdev *exported;
	struct lo_link to_srv, to_cli;
	struct side srv_side, cli_side;
	struct volume *vol;
	struct blockdev *bd;
	unsigned reopens;            /* atomic: calls of the probe's reopen() */
	uint8_t ref[VSIZE];
	pthread_mutex_t log_lock;
	char log[8192];
};

static void vr_log(void *ctx, const char *msg)
{
	struct vremote *v = ctx;
	size_t n;

	pthread_mutex_lock(&v->log_lock);
	n = strlen(v->log);
	snprintf(v->log + n, sizeof(v->log) - n, "%s\n", msg);
	pthread_mutex_unlock(&v->log_lock);
}

static bool vr_logged(struct vremote *v, const char *what)
{
	bool found;

	pthread_mutex_lock(&v->log_lock);
	found = strstr(v->log, what) != NULL;
	pthread_mutex_unlock(&v->log_lock);
	return found;
}

/* What vmm/volume_host.c does for a store on another node. */
static int vr_reopen(void *ctx, unsigned idx, struct blockdev *cur, struct blockdev **out,
		     char *why, size_t whylen)
{
	struct vremote *v = ctx;

	*out = NULL;
	if (idx != 1)
		return 0;
	__atomic_fetch_add(&v->reopens, 1, __ATOMIC_RELAXED);
	return store_client_reopen(v->cli, SERVER_NODE, VSTORE, cur, out, why, whylen);
}

static void vr_open(struct vremote *v, bool remote)
{
	struct blockdev *bds[2] = { open_file(v->path[0], false), NULL };
	const char *names[2] = { "local", "node 1" };
	struct volume_config cfg = {
		.name = "vol0", .size = VSIZE, .chunk_size = VCHUNK, .stores = 2, .replicas = 2,
		.store_names = names, .log = vr_log, .log_ctx = v, .probe_ms = 20,
		.idle_ms = 600000, .reopen = vr_reopen, .reopen_ctx = v,
	};
	char err[512] = "";

	/* As volume_host does: a store whose node does not answer is left out. */
	if (remote)
		bds[1] = open_remote_named(v->cli, VSTORE);
	else
		assert_int_equal(store_client_open(v->cli, SERVER_NODE, VSTORE, &bds[1], err,
						   sizeof(err)), -ETIMEDOUT);
	if (volume_open(&cfg, bds, 0, &v->vol, err, sizeof(err)))
		fail_msg("volume_open: %s", err);
	v->bd = volume_blockdev(v->vol);
}

static void vr_write(struct vremote *v, uint64_t *seed, uint64_t limit)
{
	uint64_t len = 512 * (1 + rnd(seed) % (2 * VCHUNK / 512));
	uint64_t off = 512 * (rnd(seed) % ((limit - len) / 512 + 1));

	fill(v->ref + off, len, rnd(seed));
	assert_int_equal(wr(v->bd, v->ref + off, len, off), 0);
}

static void vr_verify(struct vremote *v)
{
	uint8_t *buf = malloc(VSIZE);

	assert_non_null(buf);
	assert_int_equal(rd(v->bd, buf, VSIZE, 0), 0);
	assert_memory_equal(buf, v->ref, VSIZE);
	free(buf);
}

/* Both stores hold every chunk (N = R = 2) at the same place: their data areas are equal. */
static void vr_same_data(struct vremote *v)
{
	uint64_t start = vlayout_data_offset(&v->lay, 0, 0), len = VSIZE;
	uint8_t *a = malloc(len), *b = malloc(len);
	int fa = open(v->path[0], O_RDONLY), fb = open(v->path[1], O_RDONLY);

	assert_true(a && b && fa >= 0 && fb >= 0);
	assert_int_equal(vlayout_data_offset(&v->lay, 0, 1), start);
	assert_int_equal(pread(fa, a, len, (off_t)start), (ssize_t)len);
	assert_int_equal(pread(fb, b, len, (off_t)start), (ssize_t)len);
	assert_memory_equal(a, v->ref, len);
	assert_memory_equal(b, v->ref, len);
	close(fa);
	close(fb);
	free(a);
	free(b);
}

static void vr_wait_healthy(struct vremote *v)
{
	struct volume_stats st;

	WAIT_FOR((volume_stats(v->vol, &st), !st.degraded && !st.chunks_unavailable));
}

static unsigned vr_reopens(struct vremote *v)
{
	return __atomic_load_n(&v->reopens, __ATOMIC_RELAXED);
}

static void test_volume_reopens_remote_store(void **state)
{
	struct vremote *v = calloc(1, sizeof(*v));
	struct store_server_config sc = { .send = side_send, .log = side_log };
	struct store_client_config cc = { .send = side_send, .log = side_log, .timeout_ms = 300 };
	struct volume_stats st;
	char err[256];
	uint64_t seed = 42;
	unsigned calls;

	(void)state;
	assert_non_null(v);
	pthread_mutex_init(&v->log_lock, NULL);
	pthread_mutex_init(&v->srv_side.log.lock, NULL);
	pthread_mutex_init(&v->cli_side.log.lock, NULL);
	v->srv_side.out = &v->to_cli;
	v->cli_side.out = &v->to_srv;
	assert_int_equal(vlayout_init(&v->lay, VSIZE, VCHUNK, 2, 2, err, sizeof(err)), 0);
	snprintf(v->dir, sizeof(v->dir), "/tmp/grappe-vr-XXXXXX");
	assert_non_null(mkdtemp(v->dir));
	for (unsigned i = 0; i < 2; i++) {
		int fd;

		snprintf(v->path[i], sizeof(v->path[i]), "%s/store%u.img", v->dir, i);
		fd = open(v->path[i], O_CREAT | O_RDWR | O_TRUNC, 0600);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, (off_t)vlayout_store_bytes(&v->lay, i)), 0);
		close(fd);
	}
	sc.ctx = &v->srv_side;
	cc.ctx = &v->cli_side;
	assert_int_equal(store_server_create(&v->srv, &sc, err, sizeof(err)), 0);
	assert_int_equal(store_client_create(&v->cli, &cc, err, sizeof(err)), 0);
	lo_start(&v->to_srv, CLIENT_NODE, SERVER_NODE, to_server, v->srv, false, 3);
	lo_start(&v->to_cli, SERVER_NODE, CLIENT_NODE, to_client, v->cli, false, 5);
	v->exported = open_file(v->path[1], false);
	assert_int_equal(store_server_export(v->srv, VSTORE, v->exported), 0);

	/* Formatted with both stores, some data, closed cleanly. */
	vr_open(v, true);
	for (int i = 0; i < 20; i++)
		vr_write(v, &seed, VSIZE);
	volume_close(v->vol);

	/* Node 1 does not answer when the volume opens: degraded, probed. */
	lo_set_mode(&v->to_srv, LO_DROP);
	vr_open(v, false);
	volume_stats(v->vol, &st);
	assert_true(st.degraded);
	assert_false(st.replica[1].attached);
	for (int i = 0; i < 20; i++)
		vr_write(v, &seed, VSIZE / 2);
	calls = vr_reopens(v);
	WAIT_FOR(vr_reopens(v) >= calls + 2);
	assert_true(vr_logged(v, "is still out of service: store " VSTORE " on node 1: "
			      "Connection timed out"));
	volume_stats(v->vol, &st);
	assert_int_equal(st.replica[1].state, VOLUME_REPLICA_FAILED);

	/* It answers: reopened, judged, the chunks written meanwhile copied. */
	lo_set_mode(&v->to_srv, LO_DELIVER);
	vr_wait_healthy(v);
	volume_stats(v->vol, &st);
	assert_true(st.replica[1].attached);
	assert_true(st.replica[1].chunks_resynced > 0);
	assert_true(st.replica[1].chunks_resynced <= VSIZE / 2 / VCHUNK + 1);
	assert_true(vr_logged(v, "returned"));
	vr_verify(v);
	vr_same_data(v);

	/* Requests that time out fail the remote store for good; the probe reopens it. */
	lo_set_mode(&v->to_srv, LO_DROP);
	vr_write(v, &seed, VSIZE);        /* the local copy takes it: no error */
	volume_stats(v->vol, &st);
	assert_int_equal(st.replica[1].state, VOLUME_REPLICA_FAILED);
	for (int i = 0; i < 5; i++)
		vr_write(v, &seed, VSIZE);
	lo_set_mode(&v->to_srv, LO_DELIVER);
	vr_wait_healthy(v);
	vr_verify(v);
	vr_same_data(v);
	volume_close(v->vol);

	store_client_shutdown(v->cli);
	store_server_shutdown(v->srv);
	lo_stop(&v->to_srv);
	lo_stop(&v->to_cli);
	store_client_destroy(v->cli);
	store_server_destroy(v->srv);
	blockdev_close(v->exported);
	unlink(v->path[0]);
	unlink(v->path[1]);
	rmdir(v->dir);
	pthread_mutex_destroy(&v->srv_side.log.lock);
	pthread_mutex_destroy(&v->cli_side.log.lock);
	pthread_mutex_destroy(&v->log_lock);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_info),
		cmocka_unit_test(test_rw_random),
		cmocka_unit_test(test_rw_random_shuffled),
		cmocka_unit_test(test_flush_discard_zeroes),
		cmocka_unit_test(test_read_only),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_busy_retry),
		cmocka_unit_test(test_io_error),
		cmocka_unit_test(test_peer_down),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_client_shutdown),
		cmocka_unit_test(test_server_shutdown),
		cmocka_unit_test(test_server_peer_down),
		cmocka_unit_test(test_server_refusals),
		cmocka_unit_test(test_client_refusals),
		cmocka_unit_test(test_reopen_barrier),
		cmocka_unit_test(test_open_after_sends),
		cmocka_unit_test(test_volume_reopens_remote_store),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
