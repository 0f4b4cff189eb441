// SPDX-License-Identifier: MIT
/*
 * The remote block store's client: a blockdev whose operations are done
 * by another node's store server. See store_client.h and
 * docs/store-protocol.md.
 *
 * An operation is cut into requests ("chunks"), described on the caller's
 * stack or heap. The caller's thread sends them, waits, and enforces their
 * deadlines itself: no timer thread. The receive thread finds a chunk by
 * its request id in a hash table, records the answer and wakes the
 * callers. One mutex and one condition variable cover everything: the
 * waiters are the few threads that issue I/O (one per virtqueue), so a
 * broadcast costs little, and a generation counter tells a waiter whether
 * something happened while it had the lock released to send.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blockdev/store_client.h"

#define HASH_BUCKETS 256
#define NS_PER_MS 1000000ULL
/* A request answered BUSY is sent again after 1, 2, 4 ... 64 ms, until its deadline. */
#define RETRY_MIN_NS (1 * NS_PER_MS)
#define RETRY_MAX_SHIFT 6

enum chunk_state {
	CH_UNSENT,
	CH_SENT,      /* in the hash table, holds a credit of its node */
	CH_CLAIMED,   /* answered; the receive thread is copying the data (holds the credit) */
	CH_RETRY,     /* answered BUSY; to be sent again at retry_at */
	CH_DONE,
};

struct rs_op;

/* One request of an operation. */
struct chunk {
	struct chunk *hnext;
	struct rs_op *op;
	uint64_t req_id;
	uint64_t off;          /* in the store */
	uint32_t len;
	uint64_t pos;          /* in the operation's data */
	uint64_t deadline;     /* ns: the answer is due (set when first sent) */
	uint64_t retry_at;     /* ns: CH_RETRY only */
	unsigned tries;
	enum chunk_state state;
};

struct remote_store;

/* One blockdev operation (or an OPEN), for as long as its caller waits. */
struct rs_op {
	struct remote_store *rs;   /* NULL for OPEN */
	unsigned node;
	uint16_t type;
	uint8_t flags;
	uint32_t handle;
	const struct iovec *iov;   /* the caller's: WRITE source, READ destination */
	int iovcnt;
	const char *name;          /* OPEN */
	uint8_t *buf;              /* READ: all of the data; WRITE: one request's */
	struct store_info info;    /* OPEN's answer */
	struct chunk *ch;
	struct chunk one;          /* ch when there is a single request */
	unsigned n, next_unsent, outstanding;
	uint64_t progress;         /* ns: last send (waiting for a credit past it + timeout fails) */
	bool holds_gate;           /* OPEN: the node's other sends wait until this one is out */
	int error;
};

struct node_state {
	unsigned in_flight;
	unsigned window;           /* ours, lowered to the server's credit by OPEN */
	unsigned senders;          /* threads inside cfg.send for this node */
	unsigned opening;          /* OPENs not sent yet: other sends wait (see open_gate) */
	bool down;                 /* for good: a node that failed does not come back */
};

struct store_client {
	struct store_client_config cfg;
	uint64_t timeout_ns;
	pthread_mutex_t lock;
	pthread_cond_t cond;       /* any chunk, node or client state changed */
	uint64_t gen;              /* bumped with every broadcast of cond */
	uint64_t next_req_id;
	struct chunk *hash[HASH_BUCKETS];
	struct node_state nodes[STORE_MAX_NODES];
	unsigned senders;          /* threads inside cfg.send */
	unsigned refs;             /* the creator's, and one per open store */
	bool shut;
	struct store_client_stats st;
};

struct remote_store {
	struct blockdev bd;
	struct store_client *cli;
	unsigned node;
	uint32_t handle;
	uint64_t size;
	int failed;                /* sticky: 0 or the error every operation returns (lock) */
	char name[STORE_MSG_NAME_MAX + 1];
};

static void cli_log(struct store_client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void cli_log(struct store_client *c, const char *fmt, ...)
{
	char line[320];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (c->cfg.log)
		c->cfg.log(c->cfg.ctx, line);
	else
		fprintf(stderr, "store client: %s\n", line);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void wake(struct store_client *c)
{
	c->gen++;
	pthread_cond_broadcast(&c->cond);
}

/* ---- requests in flight, by request id ---- */

static struct chunk **bucket(struct store_client *c, uint64_t req_id)
{
	return &c->hash[req_id % HASH_BUCKETS];
}

static void hash_add(struct store_client *c, struct chunk *ch)
{
	struct chunk **b = bucket(c, ch->req_id);

	ch->hnext = *b;
	*b = ch;
}

static void hash_del(struct store_client *c, struct chunk *ch)
{
	struct chunk **pp = bucket(c, ch->req_id);

	while (*pp && *pp != ch)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = ch->hnext;
}

static struct chunk *hash_find(struct store_client *c, uint64_t req_id)
{
	struct chunk *ch = *bucket(c, req_id);

	while (ch && ch->req_id != req_id)
		ch = ch->hnext;
	return ch;
}

/* The chunk is over (answered or given up): its credit and its waiter are released. */
static void chunk_finish(struct store_client *c, struct chunk *ch, int rc)
{
	struct rs_op *op = ch->op;

	if (ch->state == CH_SENT)
		hash_del(c, ch);
	if (ch->state == CH_SENT || ch->state == CH_CLAIMED) {
		c->nodes[op->node].in_flight--;
		c->st.in_flight--;
	}
	ch->state = CH_DONE;
	op->outstanding--;
	if (rc && !op->error)
		op->error = rc;
	wake(c);
}

static void chunk_to_retry(struct store_client *c, struct chunk *ch, uint64_t now)
{
	unsigned shift = ch->tries < RETRY_MAX_SHIFT ? ch->tries : RETRY_MAX_SHIFT;

	hash_del(c, ch);
	c->nodes[ch->op->node].in_flight--;
	c->st.in_flight--;
	ch->tries++;
	ch->retry_at = now + (RETRY_MIN_NS << shift);
	ch->state = CH_RETRY;
	wake(c);
}

/* Fails every request in flight to node (or to any node when node < 0). */
static unsigned fail_in_flight(struct store_client *c, int node, int rc)
{
	unsigned n = 0;

	for (unsigned b = 0; b < HASH_BUCKETS; b++) {
		struct chunk *ch = c->hash[b];

		while (ch) {
			struct chunk *next = ch->hnext;

			if (node < 0 || ch->op->node == (unsigned)node) {
				chunk_finish(c, ch, rc);
				n++;
			}
			ch = next;
		}
	}
	return n;
}

static void store_fail(struct store_client *c, struct remote_store *rs, int rc, const char *why)
{
	if (!rs || rs->failed)
		return;
	rs->failed = rc;
	cli_log(c, "store %s on node %u failed: %s; it now fails every operation (reopen it)",
	     rs->name, rs->node, why);
}

/* An error that ends every operation on the store now, or 0. Lock held. */
static int store_fatal(struct store_client *c, const struct remote_store *rs, unsigned node)
{
	if (c->shut)
		return -ESHUTDOWN;
	if (c->nodes[node].down)
		return -ENOTCONN;
	return rs ? rs->failed : 0;
}

/* ---- the caller's side of an operation ---- */

static void iov_gather(const struct iovec *iov, int iovcnt, uint64_t pos, uint8_t *dst,
		       size_t len)
{
	for (int i = 0; i < iovcnt && len; i++) {
		size_t l = iov[i].iov_len, n;

		if (pos >= l) {
			pos -= l;
			continue;
		}
		n = l - pos < len ? l - pos : len;
		memcpy(dst, (const uint8_t *)iov[i].iov_base + pos, n);
		dst += n;
		len -= n;
		pos = 0;
	}
}

static void iov_scatter(const struct iovec *iov, int iovcnt, const uint8_t *src, size_t len)
{
	for (int i = 0; i < iovcnt && len; i++) {
		size_t n = iov[i].iov_len < len ? iov[i].iov_len : len;

		if (n)
			memcpy(iov[i].iov_base, src, n);
		src += n;
		len -= n;
	}
}

/*
 * Builds and sends one request, without the lock. Write data is copied
 * from the caller's buffers here, on the caller's thread (see the header:
 * guest memory must not be read inside the fabric's send lock).
 */
static int transmit(struct store_client *c, struct rs_op *op, struct chunk *ch)
{
	struct store_req q = { .flags = op->flags, .handle = op->handle, .off = ch->off,
			       .len = ch->len, .body = (const uint8_t *)op->name };
	uint8_t hdr[STORE_MSG_REQ_HDR_LEN];
	struct iovec iov[2] = { { .iov_base = hdr, .iov_len = sizeof(hdr) } };
	const char *why;

	if (store_msg_encode_req(op->type, &q, hdr, &why) < 0) {
		cli_log(c, "cannot encode %s: %s", store_msg_type_name(op->type), why);
		return -EINVAL;
	}
	if (op->type == STORE_MSG_OPEN) {
		iov[1] = (struct iovec){ .iov_base = (void *)op->name, .iov_len = ch->len };
	} else if (op->type == STORE_MSG_WRITE) {
		iov_gather(op->iov, op->iovcnt, ch->pos, op->buf, ch->len);
		iov[1] = (struct iovec){ .iov_base = op->buf, .iov_len = ch->len };
	}
	return c->cfg.send(c->cfg.ctx, op->node, op->type, ch->req_id, iov,
			   iov[1].iov_len ? 2 : 1);
}

/*
 * OPEN is a barrier at the server (it is answered once every earlier
 * request of this node is done). For that to cover every request of a
 * store that failed, the OPEN must also leave after them: so it waits for
 * the sends in progress to this node, and holds new ones back until it is
 * handed to the transport. Lock held.
 */
static void close_gate(struct store_client *c, struct rs_op *op)
{
	struct node_state *ns = &c->nodes[op->node];

	ns->opening++;
	op->holds_gate = true;
	while (ns->senders && !c->shut)
		pthread_cond_wait(&c->cond, &c->lock);
}

static void open_gate(struct store_client *c, struct rs_op *op)
{
	c->nodes[op->node].opening--;
	op->holds_gate = false;
	wake(c);
}

/* Sends a chunk (first time or again); lock held, released during the send. */
static void chunk_send(struct store_client *c, struct rs_op *op, struct chunk *ch, uint64_t now)
{
	int rc;

	if (ch->state == CH_UNSENT) {
		ch->deadline = now + c->timeout_ns;
		op->next_unsent++;
		op->outstanding++;
	} else {
		c->st.retries++;
	}
	ch->req_id = c->next_req_id++;
	ch->state = CH_SENT;
	hash_add(c, ch);
	c->nodes[op->node].in_flight++;
	c->st.in_flight++;
	c->st.requests++;
	op->progress = now;
	c->senders++;
	c->nodes[op->node].senders++;
	pthread_mutex_unlock(&c->lock);
	rc = transmit(c, op, ch);
	pthread_mutex_lock(&c->lock);
	c->senders--;
	c->nodes[op->node].senders--;
	if (op->holds_gate)
		open_gate(c, op);
	/* The answer may already be in (or the node down): then the chunk is not SENT. */
	if (rc && ch->state == CH_SENT)
		chunk_finish(c, ch, rc == -EPIPE ? -ENOTCONN : rc);
	if (c->shut || c->nodes[op->node].opening)
		wake(c);   /* shutdown, or an OPEN, waits for the last sender */
}

static struct chunk *next_to_send(struct rs_op *op, uint64_t now)
{
	for (unsigned i = 0; i < op->next_unsent; i++)
		if (op->ch[i].state == CH_RETRY && op->ch[i].retry_at <= now)
			return &op->ch[i];
	return op->next_unsent < op->n ? &op->ch[op->next_unsent] : NULL;
}

/* Sends what is due while the node has credit; lock held. */
static void op_send_ready(struct store_client *c, struct rs_op *op)
{
	for (;;) {
		uint64_t now = now_ns();
		struct chunk *ch;

		if (op->error || store_fatal(c, op->rs, op->node))
			return;
		ch = next_to_send(op, now);
		if (!ch || c->nodes[op->node].in_flight >= c->nodes[op->node].window)
			return;
		if (c->nodes[op->node].opening && op->type != STORE_MSG_OPEN)
			return;
		chunk_send(c, op, ch, now);
	}
}

static void op_expire(struct store_client *c, struct rs_op *op, uint64_t now)
{
	for (unsigned i = 0; i < op->next_unsent; i++) {
		struct chunk *ch = &op->ch[i];
		char why[160];

		if (ch->state == CH_RETRY && now >= ch->deadline) {
			chunk_finish(c, ch, -EBUSY);   /* the server never had room: nothing done */
		} else if (ch->state == CH_SENT && now >= ch->deadline) {
			c->st.timeouts++;
			snprintf(why, sizeof(why), "%s request %llu (offset %llu, %u bytes) "
				 "unanswered after %llu ms", store_msg_type_name(op->type),
				 (unsigned long long)ch->req_id, (unsigned long long)ch->off, ch->len,
				 (unsigned long long)(c->timeout_ns / NS_PER_MS));
			store_fail(c, op->rs, -ETIMEDOUT, why);
			chunk_finish(c, ch, -ETIMEDOUT);
		}
	}
	/* Starved of credit: the node's window never opened for a whole timeout. */
	if (op->next_unsent < op->n && !op->error && now >= op->progress + c->timeout_ns)
		op->error = -ETIMEDOUT;
}

/* Ends the operation early: nothing more is sent; requests in flight are given up if asked. */
static void op_cancel(struct store_client *c, struct rs_op *op, int rc, bool in_flight_too)
{
	for (unsigned i = 0; i < op->next_unsent; i++) {
		struct chunk *ch = &op->ch[i];

		if (ch->state == CH_RETRY || (ch->state == CH_SENT && in_flight_too))
			chunk_finish(c, ch, rc);
	}
	op->next_unsent = op->n;
	if (!op->error)
		op->error = rc;
}

/* When the caller must look again even if nobody wakes it. */
static uint64_t op_next_event(const struct store_client *c, const struct rs_op *op, uint64_t now)
{
	uint64_t t = now + c->timeout_ns;

	if (op->next_unsent < op->n && op->progress + c->timeout_ns < t)
		t = op->progress + c->timeout_ns;
	for (unsigned i = 0; i < op->next_unsent; i++) {
		const struct chunk *ch = &op->ch[i];

		if ((ch->state == CH_SENT || ch->state == CH_RETRY) && ch->deadline < t)
			t = ch->deadline;
		if (ch->state == CH_RETRY && ch->retry_at < t)
			t = ch->retry_at;
	}
	return t;
}

static void wait_until(struct store_client *c, uint64_t t)
{
	struct timespec ts = { .tv_sec = (time_t)(t / 1000000000ULL),
			       .tv_nsec = (long)(t % 1000000000ULL) };

	pthread_cond_timedwait(&c->cond, &c->lock, &ts);
}

/* Sends every chunk of op and waits for all of them. Returns 0 or the first error. */
static int op_run(struct store_client *c, struct rs_op *op)
{
	int rc;

	pthread_mutex_lock(&c->lock);
	op->progress = now_ns();
	for (;;) {
		uint64_t gen = c->gen, now = now_ns();
		int fatal;

		op_expire(c, op, now);
		fatal = store_fatal(c, op->rs, op->node);
		if (fatal)
			op_cancel(c, op, fatal, true);
		else if (op->error)
			op_cancel(c, op, op->error, false);
		else
			op_send_ready(c, op);
		if (op->next_unsent == op->n && !op->outstanding)
			break;
		if (c->gen == gen)
			wait_until(c, op_next_event(c, op, now_ns()));
	}
	rc = op->error;
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* Cuts [off, off + len) into requests of at most max bytes (one, of len 0, for FLUSH). */
static int op_split(struct rs_op *op, uint64_t off, uint64_t len, uint32_t max)
{
	uint64_t n = len ? (len + max - 1) / max : 1;

	op->ch = n == 1 ? &op->one : calloc(n, sizeof(*op->ch));
	if (!op->ch)
		return -ENOMEM;
	op->n = (unsigned)n;
	for (unsigned i = 0; i < op->n; i++) {
		struct chunk *ch = &op->ch[i];
		uint64_t pos = (uint64_t)i * max;

		*ch = (struct chunk){ .op = op, .off = off + pos, .pos = pos, .state = CH_UNSENT,
				      .len = (uint32_t)(len - pos < max ? len - pos : max) };
	}
	return 0;
}

static void op_init(struct rs_op *op, struct remote_store *rs, uint16_t type)
{
	memset(op, 0, sizeof(*op));
	op->rs = rs;
	op->node = rs->node;
	op->handle = rs->handle;
	op->type = type;
}

static void op_free(struct rs_op *op)
{
	if (op->ch != &op->one)
		free(op->ch);
	free(op->buf);
}

/* ---- the blockdev ---- */

static const struct blockdev_ops remote_ops;

static struct remote_store *rs_of(struct blockdev *bd)
{
	return (struct remote_store *)bd;
}

static int iov_total(const struct iovec *iov, int iovcnt, uint64_t *len)
{
	*len = 0;
	if (iovcnt < 0 || (iovcnt > 0 && !iov))
		return -EINVAL;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > UINT64_MAX - *len)
			return -EINVAL;
		*len += iov[i].iov_len;
	}
	return 0;
}

static int check_range(const struct remote_store *rs, uint64_t off, uint64_t len, bool write)
{
	if (off % STORE_MSG_SECTOR || len % STORE_MSG_SECTOR)
		return -EINVAL;
	if (off > rs->size || len > rs->size - off)
		return -EINVAL;
	return write && rs->bd.read_only ? -EROFS : 0;
}

static int rs_rw(struct remote_store *rs, uint16_t type, const struct iovec *iov, int iovcnt,
		 uint64_t off)
{
	struct rs_op op;
	uint64_t len;
	int rc = iov_total(iov, iovcnt, &len);

	if (!rc)
		rc = check_range(rs, off, len, type == STORE_MSG_WRITE);
	if (rc || !len)
		return rc;
	op_init(&op, rs, type);
	op.iov = iov;
	op.iovcnt = iovcnt;
	/* READ: the receive thread lands every request's data here; WRITE: one request's. */
	op.buf = malloc(type == STORE_MSG_READ || len < STORE_MSG_MAX_DATA ? len
							: STORE_MSG_MAX_DATA);
	rc = op.buf ? op_split(&op, off, len, STORE_MSG_MAX_DATA) : -ENOMEM;
	if (!rc)
		rc = op_run(rs->cli, &op);
	if (!rc && type == STORE_MSG_READ)
		iov_scatter(iov, iovcnt, op.buf, len);
	op_free(&op);
	return rc;
}

static int rs_read(struct blockdev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return rs_rw(rs_of(bd), STORE_MSG_READ, iov, iovcnt, off);
}

static int rs_write(struct blockdev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return rs_rw(rs_of(bd), STORE_MSG_WRITE, iov, iovcnt, off);
}

static int rs_range(struct remote_store *rs, uint16_t type, uint64_t off, uint64_t len,
		    uint8_t flags)
{
	struct rs_op op;
	int rc = check_range(rs, off, len, true);

	if (rc || !len)
		return rc;
	op_init(&op, rs, type);
	op.flags = flags;
	rc = op_split(&op, off, len, STORE_MSG_MAX_RANGE);
	if (!rc)
		rc = op_run(rs->cli, &op);
	op_free(&op);
	return rc;
}

static int rs_discard(struct blockdev *bd, uint64_t off, uint64_t len)
{
	return rs_range(rs_of(bd), STORE_MSG_DISCARD, off, len, 0);
}

static int rs_write_zeroes(struct blockdev *bd, uint64_t off, uint64_t len, bool may_unmap)
{
	return rs_range(rs_of(bd), STORE_MSG_WRITE_ZEROES, off, len,
			may_unmap ? STORE_REQ_F_MAY_UNMAP : 0);
}

static int rs_flush(struct blockdev *bd)
{
	struct remote_store *rs = rs_of(bd);
	struct rs_op op;
	int rc;

	op_init(&op, rs, STORE_MSG_FLUSH);
	rc = op_split(&op, 0, 0, STORE_MSG_MAX_DATA);
	if (!rc)
		rc = op_run(rs->cli, &op);
	op_free(&op);
	return rc;
}

static uint64_t rs_size(struct blockdev *bd)
{
	return rs_of(bd)->size;
}

static void client_unref(struct store_client *c)
{
	bool last;

	pthread_mutex_lock(&c->lock);
	last = --c->refs == 0;
	pthread_mutex_unlock(&c->lock);
	if (!last)
		return;
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static void rs_close(struct blockdev *bd)
{
	struct remote_store *rs = rs_of(bd);
	struct store_client *c = rs->cli;

	free(rs);
	client_unref(c);
}

static const struct blockdev_ops remote_ops = {
	.read = rs_read,
	.write = rs_write,
	.flush = rs_flush,
	.discard = rs_discard,
	.write_zeroes = rs_write_zeroes,
	.size = rs_size,
	.close = rs_close,
};

int store_client_store_error(struct blockdev *bd)
{
	struct remote_store *rs;
	int rc;

	if (!bd || bd->ops != &remote_ops)
		return -EINVAL;
	rs = rs_of(bd);
	pthread_mutex_lock(&rs->cli->lock);
	rc = store_fatal(rs->cli, rs, rs->node);
	pthread_mutex_unlock(&rs->cli->lock);
	return rc;
}

/* ---- opening ---- */

static struct remote_store *new_store(struct store_client *c, unsigned node, const char *name,
				      const struct store_info *in)
{
	struct remote_store *rs = calloc(1, sizeof(*rs));

	if (!rs)
		return NULL;
	rs->bd.ops = &remote_ops;
	rs->bd.block_size = in->block_size;
	rs->bd.read_only = in->read_only;
	rs->bd.discard = in->discard;
	rs->cli = c;
	rs->node = node;
	rs->handle = in->handle;
	rs->size = in->size;
	snprintf(rs->name, sizeof(rs->name), "%s", name);
	pthread_mutex_lock(&c->lock);
	c->refs++;
	pthread_mutex_unlock(&c->lock);
	return rs;
}

int store_client_open(struct store_client *c, unsigned node, const char *name,
		      struct blockdev **out, char *err, size_t errlen)
{
	size_t nlen = name ? strlen(name) : 0;
	struct remote_store *rs;
	struct rs_op op;
	int rc;

	*out = NULL;
	if (node >= STORE_MAX_NODES || !store_msg_name_ok(name, nlen)) {
		snprintf(err, errlen, "remote store: bad node %u or store name", node);
		return -EINVAL;
	}
	memset(&op, 0, sizeof(op));
	op.node = node;
	op.type = STORE_MSG_OPEN;
	op.name = name;
	rc = op_split(&op, 0, nlen, STORE_MSG_NAME_MAX);
	if (!rc) {
		pthread_mutex_lock(&c->lock);
		close_gate(c, &op);
		pthread_mutex_unlock(&c->lock);
		rc = op_run(c, &op);
		pthread_mutex_lock(&c->lock);
		if (op.holds_gate)   /* never sent (node down, shutdown...) */
			open_gate(c, &op);
		pthread_mutex_unlock(&c->lock);
	}
	op_free(&op);
	if (rc) {
		snprintf(err, errlen, "store %s on node %u: %s", name, node,
			 rc == -ENOENT ? "not exported there" : strerror(-rc));
		return rc;
	}
	rs = new_store(c, node, name, &op.info);
	if (!rs) {
		snprintf(err, errlen, "store %s on node %u: out of memory", name, node);
		return -ENOMEM;
	}
	*out = &rs->bd;
	return 0;
}

int store_client_reopen(struct store_client *c, unsigned node, const char *name,
			struct blockdev *cur, struct blockdev **out, char *why, size_t whylen)
{
	*out = NULL;
	if (cur && !store_client_store_error(cur))
		return 0;
	return store_client_open(c, node, name, out, why, whylen) ? -1 : 1;
}

/* ---- the fabric thread ---- */

static const char *reply_mismatch(const struct chunk *ch, const struct store_reply *r)
{
	if (r->req_type != ch->op->type)
		return "answers another type of request";
	if (r->status == STORE_ST_OK && r->req_type == STORE_MSG_READ && r->data_len != ch->len)
		return "read data length differs from the request's";
	return NULL;
}

static void reply_refused(struct store_client *c, struct chunk *ch, unsigned src,
			  uint64_t req_id, const char *why)
{
	char what[200];

	c->st.malformed++;
	snprintf(what, sizeof(what), "malformed reply to request %llu: %s",
		 (unsigned long long)req_id, why);
	cli_log(c, "refused a reply from node %u: %s", src, what);
	store_fail(c, ch->op->rs, -EPROTO, what);
	chunk_finish(c, ch, -EPROTO);
}

/* A READ's data goes to the operation's buffer, copied without the lock. */
static void reply_data(struct store_client *c, struct chunk *ch, const struct store_reply *r)
{
	uint8_t *dst = ch->op->buf + ch->pos;

	ch->state = CH_CLAIMED;
	hash_del(c, ch);
	pthread_mutex_unlock(&c->lock);
	memcpy(dst, r->data, r->data_len);
	pthread_mutex_lock(&c->lock);
	chunk_finish(c, ch, 0);
}

static void reply_apply(struct store_client *c, struct chunk *ch, const struct store_reply *r)
{
	struct rs_op *op = ch->op;

	if (r->status == STORE_ST_BUSY) {
		chunk_to_retry(c, ch, now_ns());
		return;
	}
	if (r->status == STORE_ST_OK && r->req_type == STORE_MSG_READ) {
		reply_data(c, ch, r);
		return;
	}
	if (r->status == STORE_ST_OK && r->req_type == STORE_MSG_OPEN) {
		struct node_state *ns = &c->nodes[op->node];

		op->info = r->info;
		/* The server's credit: never more queued there than it takes. */
		ns->window = c->cfg.window < r->info.max_inflight ? c->cfg.window
								  : r->info.max_inflight;
	}
	chunk_finish(c, ch, store_status_to_errno(r->status));
}

void store_client_receive(struct store_client *c, unsigned src, uint16_t type,
			  uint64_t req_id, const void *payload, size_t len)
{
	struct store_reply r;
	const char *why = NULL;
	struct chunk *ch;

	pthread_mutex_lock(&c->lock);
	if (!store_msg_is_reply(type)) {
		/* Its request id is another node's numbering: it cannot name one of ours. */
		if (!c->shut) {
			c->st.malformed++;
			cli_log(c, "dropped a frame of type 0x%x from node %u: not a store reply",
			     type, src);
		}
		pthread_mutex_unlock(&c->lock);
		return;
	}
	store_msg_decode_reply(payload, len, &r, &why);
	ch = c->shut ? NULL : hash_find(c, req_id);
	if (ch && ch->op->node == src) {
		if (!why)
			why = reply_mismatch(ch, &r);
		if (why)
			reply_refused(c, ch, src, req_id, why);
		else
			reply_apply(c, ch, &r);
	} else if (!c->shut) {
		c->st.unknown++;
		cli_log(c, "dropped a reply (type 0x%x) from node %u to request %llu: %s", type, src,
		     (unsigned long long)req_id, why ? why : "no such request in flight "
		     "(a late answer after a timeout?)");
	}
	pthread_mutex_unlock(&c->lock);
}

void store_client_peer_down(struct store_client *c, unsigned node)
{
	if (node >= STORE_MAX_NODES)
		return;
	pthread_mutex_lock(&c->lock);
	if (!c->nodes[node].down) {
		unsigned n;

		c->nodes[node].down = true;
		n = fail_in_flight(c, (int)node, -ENOTCONN);
		cli_log(c, "node %u is down: its stores fail from now on (%u requests in flight "
		     "failed)", node, n);
	}
	wake(c);
	pthread_mutex_unlock(&c->lock);
}

/* ---- life cycle ---- */

void store_client_stats(struct store_client *c, struct store_client_stats *st)
{
	pthread_mutex_lock(&c->lock);
	*st = c->st;
	pthread_mutex_unlock(&c->lock);
}

int store_client_create(struct store_client **out, const struct store_client_config *cfg,
			char *err, size_t errlen)
{
	struct store_client *c;
	pthread_condattr_t ca;

	*out = NULL;
	if (!cfg->send || cfg->window > STORE_MSG_MAX_INFLIGHT) {
		snprintf(err, errlen, "store client: %s", !cfg->send ? "no send callback"
			 : "window too large");
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "store client: out of memory");
		return -ENOMEM;
	}
	c->cfg = *cfg;
	c->cfg.window = cfg->window ? cfg->window : 32;
	c->timeout_ns = (cfg->timeout_ms ? cfg->timeout_ms : 10000) * NS_PER_MS;
	c->next_req_id = 1;
	c->refs = 1;
	for (unsigned i = 0; i < STORE_MAX_NODES; i++)
		c->nodes[i].window = c->cfg.window;
	pthread_mutex_init(&c->lock, NULL);
	/* Deadlines are on the monotonic clock: a wall-clock step must not fire them. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	*out = c;
	return 0;
}

void store_client_shutdown(struct store_client *c)
{
	pthread_mutex_lock(&c->lock);
	if (!c->shut) {
		c->shut = true;
		fail_in_flight(c, -1, -ESHUTDOWN);
		wake(c);
	}
	while (c->senders)
		pthread_cond_wait(&c->cond, &c->lock);
	pthread_mutex_unlock(&c->lock);
}

void store_client_destroy(struct store_client *c)
{
	if (!c)
		return;
	store_client_shutdown(c);
	client_unref(c);
}
