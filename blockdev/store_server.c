// SPDX-License-Identifier: MIT
/*
 * The remote block store's server: exports local blockdevs to other nodes.
 * See store_server.h and docs/store-protocol.md.
 *
 * One mutex guards the queue, the counters and the export table; it is
 * never held across I/O or a send. Exports are never removed while the
 * server lives, so a request can keep a pointer to its export.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/store_server.h"

struct srv_export {
	char name[STORE_MSG_NAME_MAX + 1];
	struct blockdev *bd;
	struct store_info info;   /* what OPEN answers, read once at export */
};

/* One queued request, with a copy of its data (the payload dies with the frame). */
struct srv_item {
	struct srv_item *next;
	struct srv_export *exp;
	uint64_t seq;             /* arrival order, for OPEN barriers */
	unsigned src;
	uint16_t type;
	uint64_t req_id;
	struct store_req req;     /* req.body points to data (WRITE) */
	uint8_t data[];
};

/*
 * An OPEN that arrived while earlier requests of its node were queued or
 * in service: it is answered once they are all done, so that a client
 * that reopens a store after a timeout knows none of its old requests
 * can still land afterwards.
 */
struct srv_barrier {
	struct srv_barrier *next;
	unsigned src;
	uint64_t req_id;
	uint64_t seq;             /* waits for the requests of src with a lower seq */
	unsigned remaining;
	struct store_reply reply; /* decided on arrival */
};

struct srv_worker {
	struct store_server *srv;
	pthread_t thread;
	uint8_t *buf;             /* READ data, STORE_MSG_MAX_DATA */
};

struct store_server {
	struct store_server_config cfg;
	pthread_mutex_t lock;
	pthread_cond_t cond;      /* work queued, stopping, a send finished */
	struct srv_item *head, *tail;
	uint64_t next_seq;
	unsigned per_src[STORE_MAX_NODES];
	struct srv_barrier *barriers;
	unsigned per_src_barriers[STORE_MAX_NODES];
	unsigned senders;         /* threads inside cfg.send */
	bool stopping;            /* workers exit; new requests are refused */
	bool shut;                /* nothing is sent any more */
	struct srv_export *exports[STORE_SERVER_MAX_EXPORTS];
	unsigned nr_exports;
	struct srv_worker workers[STORE_SERVER_MAX_WORKERS];
	unsigned nr_workers;
	struct store_server_stats st;
};

static void slog(struct store_server *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void slog(struct store_server *s, const char *fmt, ...)
{
	char line[320];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (s->cfg.log)
		s->cfg.log(s->cfg.ctx, line);
	else
		fprintf(stderr, "store server: %s\n", line);
}

/* Every send is counted so that shutdown can wait for the last one. */
static bool send_begin(struct store_server *s)
{
	bool ok;

	pthread_mutex_lock(&s->lock);
	ok = !s->shut;
	if (ok)
		s->senders++;
	pthread_mutex_unlock(&s->lock);
	return ok;
}

static void send_end(struct store_server *s, bool failed)
{
	pthread_mutex_lock(&s->lock);
	s->senders--;
	s->st.send_errors += failed;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void reply(struct store_server *s, unsigned dst, uint64_t req_id,
		  const struct store_reply *r)
{
	uint8_t hdr[STORE_MSG_REPLY_MAX_HDR];
	struct iovec iov[2];
	const char *why;
	int n = store_msg_encode_reply(r, hdr, sizeof(hdr), &why);
	int rc;

	if (n < 0) {
		slog(s, "cannot encode a reply to node %u: %s", dst, why);
		return;
	}
	iov[0] = (struct iovec){ .iov_base = hdr, .iov_len = (size_t)n };
	iov[1] = (struct iovec){ .iov_base = (void *)r->data, .iov_len = r->data_len };
	if (!send_begin(s))
		return;
	rc = s->cfg.send(s->cfg.ctx, dst, STORE_MSG_REPLY, req_id, iov, r->data_len ? 2 : 1);
	send_end(s, rc != 0);
	/* A node that went down cannot be answered; the fabric reports that itself. */
	if (rc && rc != -EPIPE && rc != -ENOTCONN)
		slog(s, "reply to node %u (request %llu) lost: %s", dst,
		     (unsigned long long)req_id, strerror(-rc));
}

static void reply_status(struct store_server *s, unsigned dst, uint16_t type, uint64_t req_id,
			 uint16_t status)
{
	struct store_reply r = { .req_type = type, .status = status };

	reply(s, dst, req_id, &r);
}

/* ---- the fabric thread: decode, answer what needs no I/O, queue the rest ---- */

static void find_export(struct store_server *s, const struct store_req *q,
			struct store_reply *r)
{
	r->status = STORE_ST_NOENT;
	for (unsigned i = 0; i < s->nr_exports; i++) {
		const char *name = s->exports[i]->name;

		if (strlen(name) == q->len && !memcmp(name, q->body, q->len)) {
			r->status = STORE_ST_OK;
			r->info = s->exports[i]->info;
			return;
		}
	}
}

/* Makes the OPEN wait for src's earlier requests if there are any; lock held. */
static bool park_open(struct store_server *s, unsigned src, uint64_t req_id,
		      struct srv_barrier *b, struct store_reply *r)
{
	if (!s->per_src[src])
		return false;
	if (!b || s->per_src_barriers[src] >= s->cfg.per_source) {
		r->status = b ? STORE_ST_BUSY : STORE_ST_NOMEM;
		return false;
	}
	*b = (struct srv_barrier){ .src = src, .req_id = req_id, .seq = s->next_seq,
				   .remaining = s->per_src[src], .reply = *r };
	b->next = s->barriers;
	s->barriers = b;
	s->per_src_barriers[src]++;
	s->st.opens_waiting++;
	return true;
}

static void answer_open(struct store_server *s, unsigned src, uint64_t req_id,
			const struct store_req *q)
{
	struct store_reply r = { .req_type = STORE_MSG_OPEN };
	struct srv_barrier *b = malloc(sizeof(*b));
	bool parked = false;

	pthread_mutex_lock(&s->lock);
	s->st.opens++;
	find_export(s, q, &r);
	if (s->stopping)
		r.status = STORE_ST_SHUTDOWN;
	else
		parked = park_open(s, src, req_id, b, &r);
	pthread_mutex_unlock(&s->lock);
	if (parked)
		return;
	free(b);
	reply(s, src, req_id, &r);
}

static bool writes(uint16_t type)
{
	return type == STORE_MSG_WRITE || type == STORE_MSG_DISCARD ||
	       type == STORE_MSG_WRITE_ZEROES;
}

/* Checks a decoded request against its export; lock held. */
static uint16_t admit(struct store_server *s, unsigned src, uint16_t type,
		      const struct store_req *q, struct srv_export **exp)
{
	const struct store_info *in;

	if (s->stopping)
		return STORE_ST_SHUTDOWN;
	if (q->handle >= s->nr_exports)
		return STORE_ST_BADHANDLE;
	*exp = s->exports[q->handle];
	in = &(*exp)->info;
	if (type != STORE_MSG_FLUSH && (q->off > in->size || q->len > in->size - q->off))
		return STORE_ST_INVAL;
	if (in->read_only && writes(type))
		return STORE_ST_ROFS;
	if (s->per_src[src] >= s->cfg.per_source || s->st.queued >= s->cfg.max_queued)
		return STORE_ST_BUSY;
	return STORE_ST_OK;
}

static void count_refusal(struct store_server *s, uint16_t status)
{
	if (status == STORE_ST_BUSY)
		s->st.busy++;
	else
		s->st.refused++;
}

static void push(struct store_server *s, struct srv_item *it)
{
	it->next = NULL;
	it->seq = s->next_seq++;
	if (s->tail)
		s->tail->next = it;
	else
		s->head = it;
	s->tail = it;
	s->per_src[it->src]++;
	s->st.queued++;
	s->st.requests++;
	pthread_cond_signal(&s->cond);
}

static void enqueue(struct store_server *s, unsigned src, uint16_t type, uint64_t req_id,
		    const struct store_req *q)
{
	size_t dlen = type == STORE_MSG_WRITE ? q->len : 0;
	struct srv_item *it = malloc(sizeof(*it) + dlen);
	uint16_t status = STORE_ST_NOMEM;

	pthread_mutex_lock(&s->lock);
	if (it)
		status = admit(s, src, type, q, &it->exp);
	if (status == STORE_ST_OK) {
		it->src = src;
		it->type = type;
		it->req_id = req_id;
		it->req = *q;
		if (dlen)
			memcpy(it->data, q->body, dlen);
		it->req.body = dlen ? it->data : NULL;
		push(s, it);
	} else {
		count_refusal(s, status);
	}
	pthread_mutex_unlock(&s->lock);
	if (status == STORE_ST_OK)
		return;
	free(it);
	if (status == STORE_ST_INVAL || status == STORE_ST_BADHANDLE)
		slog(s, "refused %s from node %u (request %llu, handle %u, offset %llu, length %u): %s",
		     store_msg_type_name(type), src, (unsigned long long)req_id, q->handle,
		     (unsigned long long)q->off, q->len, store_status_name(status));
	reply_status(s, src, type, req_id, status);
}

void store_server_receive(struct store_server *s, unsigned src, uint16_t type,
			  uint64_t req_id, const void *payload, size_t len)
{
	struct store_req q;
	const char *why;
	bool shut;

	pthread_mutex_lock(&s->lock);
	shut = s->shut;
	pthread_mutex_unlock(&s->lock);
	if (shut)
		return;
	if (!store_msg_is_request(type) || src >= STORE_MAX_NODES) {
		pthread_mutex_lock(&s->lock);
		s->st.malformed++;
		pthread_mutex_unlock(&s->lock);
		slog(s, "dropped a frame of type 0x%x from node %u: not a store request", type, src);
		return;
	}
	if (store_msg_decode_req(type, payload, len, &q, &why)) {
		pthread_mutex_lock(&s->lock);
		s->st.malformed++;
		pthread_mutex_unlock(&s->lock);
		slog(s, "refused a malformed %s from node %u (request %llu, %zu bytes): %s",
		     store_msg_type_name(type), src, (unsigned long long)req_id, len, why);
		reply_status(s, src, type, req_id, STORE_ST_PROTO);
		return;
	}
	if (type == STORE_MSG_OPEN)
		answer_open(s, src, req_id, &q);
	else
		enqueue(s, src, type, req_id, &q);
}

/* ---- the workers: the I/O and the reply ---- */

static int perform(struct srv_worker *w, const struct srv_item *it)
{
	struct blockdev *bd = it->exp->bd;
	const struct store_req *q = &it->req;
	struct iovec iov;

	switch (it->type) {
	case STORE_MSG_READ:
		iov = (struct iovec){ .iov_base = w->buf, .iov_len = q->len };
		return blockdev_read(bd, &iov, 1, q->off);
	case STORE_MSG_WRITE:
		iov = (struct iovec){ .iov_base = (void *)q->body, .iov_len = q->len };
		return blockdev_write(bd, &iov, 1, q->off);
	case STORE_MSG_FLUSH:
		return blockdev_flush(bd);
	case STORE_MSG_DISCARD:
		return blockdev_discard(bd, q->off, q->len);
	case STORE_MSG_WRITE_ZEROES:
		return blockdev_write_zeroes(bd, q->off, q->len,
					     q->flags & STORE_REQ_F_MAY_UNMAP);
	default:
		return -EPROTO;   /* not reached: receive queues nothing else */
	}
}

static void serve(struct srv_worker *w, const struct srv_item *it)
{
	struct store_server *s = w->srv;
	int rc = perform(w, it);
	struct store_reply r = { .req_type = it->type, .status = store_status_from_errno(rc) };

	if (rc) {
		pthread_mutex_lock(&s->lock);
		s->st.io_errors++;
		pthread_mutex_unlock(&s->lock);
		slog(s, "%s on %s (offset %llu, length %u) for node %u failed: %s",
		     store_msg_type_name(it->type), it->exp->name,
		     (unsigned long long)it->req.off, it->req.len, it->src, strerror(-rc));
	} else if (it->type == STORE_MSG_READ) {
		r.data = w->buf;
		r.data_len = it->req.len;
	}
	reply(s, it->src, it->req_id, &r);
}

static struct srv_item *next_item(struct store_server *s)
{
	struct srv_item *it;

	pthread_mutex_lock(&s->lock);
	while (!s->head && !s->stopping)
		pthread_cond_wait(&s->cond, &s->lock);
	it = s->stopping ? NULL : s->head;
	if (it) {
		s->head = it->next;
		if (!s->head)
			s->tail = NULL;
	}
	pthread_mutex_unlock(&s->lock);
	return it;
}

/*
 * One of src's requests (arrived as seq) is over: the OPENs that waited
 * for it and have nothing else to wait for are unlinked into *out. Lock held.
 */
static void barriers_release(struct store_server *s, unsigned src, uint64_t seq,
			     struct srv_barrier **out)
{
	struct srv_barrier **pp = &s->barriers, *b;

	while ((b = *pp)) {
		if (b->src != src || seq >= b->seq || --b->remaining) {
			pp = &b->next;
			continue;
		}
		*pp = b->next;
		s->per_src_barriers[src]--;
		s->st.opens_waiting--;
		if (s->stopping)
			b->reply.status = STORE_ST_SHUTDOWN;
		b->next = *out;
		*out = b;
	}
}

static void barriers_answer(struct store_server *s, struct srv_barrier *b)
{
	while (b) {
		struct srv_barrier *next = b->next;

		reply(s, b->src, b->req_id, &b->reply);
		free(b);
		b = next;
	}
}

/*
 * The request's credit comes back once its reply is out (its memory is
 * held till then), and OPENs that waited for it may now be answered.
 */
static void item_done(struct store_server *s, struct srv_item *it)
{
	struct srv_barrier *released = NULL;

	pthread_mutex_lock(&s->lock);
	s->per_src[it->src]--;
	s->st.queued--;
	barriers_release(s, it->src, it->seq, &released);
	pthread_mutex_unlock(&s->lock);
	free(it);
	barriers_answer(s, released);
}

static void *worker_main(void *arg)
{
	struct srv_worker *w = arg;
	struct srv_item *it;

	while ((it = next_item(w->srv))) {
		serve(w, it);
		item_done(w->srv, it);
	}
	return NULL;
}

/* ---- life cycle ---- */

static int start_workers(struct store_server *s, char *err, size_t errlen)
{
	for (unsigned i = 0; i < s->cfg.workers; i++) {
		struct srv_worker *w = &s->workers[i];
		int rc;

		w->srv = s;
		w->buf = malloc(STORE_MSG_MAX_DATA);
		if (!w->buf) {
			snprintf(err, errlen, "store server: out of memory");
			return -ENOMEM;
		}
		rc = pthread_create(&w->thread, NULL, worker_main, w);
		if (rc) {
			free(w->buf);
			w->buf = NULL;
			snprintf(err, errlen, "store server: cannot start a worker: %s", strerror(rc));
			return -rc;
		}
		s->nr_workers++;
	}
	return 0;
}

static int check_config(const struct store_server_config *c, char *err, size_t errlen)
{
	if (!c->send) {
		snprintf(err, errlen, "store server: no send callback");
		return -EINVAL;
	}
	if (c->workers > STORE_SERVER_MAX_WORKERS || c->per_source > STORE_MSG_MAX_INFLIGHT) {
		snprintf(err, errlen, "store server: at most %d workers and %d requests per node",
			 STORE_SERVER_MAX_WORKERS, STORE_MSG_MAX_INFLIGHT);
		return -EINVAL;
	}
	return 0;
}

int store_server_create(struct store_server **out, const struct store_server_config *cfg,
			char *err, size_t errlen)
{
	struct store_server *s;
	int rc;

	*out = NULL;
	rc = check_config(cfg, err, errlen);
	if (rc)
		return rc;
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "store server: out of memory");
		return -ENOMEM;
	}
	s->cfg = *cfg;
	s->cfg.workers = cfg->workers ? cfg->workers : 2;
	s->cfg.per_source = cfg->per_source ? cfg->per_source : 64;
	s->cfg.max_queued = cfg->max_queued ? cfg->max_queued : 256;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	rc = start_workers(s, err, errlen);
	if (rc) {
		store_server_destroy(s);
		return rc;
	}
	*out = s;
	return 0;
}

static int export_info(struct blockdev *bd, unsigned per_source, struct store_info *in)
{
	in->size = blockdev_size(bd);
	in->block_size = bd->block_size;
	in->read_only = bd->read_only;
	in->discard = bd->discard;
	in->max_inflight = (uint16_t)per_source;
	if (in->block_size != 512 && in->block_size != 4096)
		return -EINVAL;
	return in->size > STORE_MSG_MAX_END ? -EINVAL : 0;
}

int store_server_export(struct store_server *s, const char *name, struct blockdev *bd)
{
	size_t len = name ? strlen(name) : 0;
	struct srv_export *e;
	int rc = 0;

	if (!bd || !store_msg_name_ok(name, len))
		return -EINVAL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	memcpy(e->name, name, len);
	e->bd = bd;
	rc = export_info(bd, s->cfg.per_source, &e->info);
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; !rc && i < s->nr_exports; i++)
		if (!strcmp(s->exports[i]->name, name))
			rc = -EEXIST;
	if (!rc && s->nr_exports == STORE_SERVER_MAX_EXPORTS)
		rc = -ENOSPC;
	if (!rc) {
		/* The handle is the index: exports are never removed. */
		e->info.handle = s->nr_exports;
		s->exports[s->nr_exports++] = e;
	}
	pthread_mutex_unlock(&s->lock);
	if (rc)
		free(e);
	return rc;
}

/* The OPENs a node that went down was waiting for: nobody to answer. Lock held. */
static struct srv_barrier *barriers_of(struct store_server *s, unsigned node)
{
	struct srv_barrier **pp = &s->barriers, *b, *out = NULL;

	while ((b = *pp)) {
		if (b->src != node) {
			pp = &b->next;
			continue;
		}
		*pp = b->next;
		s->per_src_barriers[node]--;
		s->st.opens_waiting--;
		b->next = out;
		out = b;
	}
	return out;
}

void store_server_peer_down(struct store_server *s, unsigned node)
{
	struct srv_item **pp, *it, *dead = NULL;
	struct srv_barrier *b;

	if (node >= STORE_MAX_NODES)
		return;
	pthread_mutex_lock(&s->lock);
	b = barriers_of(s, node);
	for (pp = &s->head; (it = *pp);) {
		if (it->src != node) {
			pp = &it->next;
			continue;
		}
		*pp = it->next;
		it->next = dead;
		dead = it;
		s->per_src[node]--;
		s->st.queued--;
		s->st.dropped++;
	}
	s->tail = NULL;
	for (it = s->head; it; it = it->next)
		s->tail = it;
	pthread_mutex_unlock(&s->lock);
	while ((it = dead)) {
		dead = it->next;
		free(it);
	}
	while (b) {
		struct srv_barrier *next = b->next;

		free(b);
		b = next;
	}
}

void store_server_stats(struct store_server *s, struct store_server_stats *st)
{
	pthread_mutex_lock(&s->lock);
	*st = s->st;
	st->stopping = s->stopping;
	pthread_mutex_unlock(&s->lock);
}

static void refuse_queued(struct store_server *s)
{
	struct srv_item *it;

	pthread_mutex_lock(&s->lock);
	it = s->head;
	s->head = s->tail = NULL;
	pthread_mutex_unlock(&s->lock);
	while (it) {
		struct srv_item *next = it->next;

		reply_status(s, it->src, it->type, it->req_id, STORE_ST_SHUTDOWN);
		item_done(s, it);
		it = next;
	}
}

void store_server_shutdown(struct store_server *s)
{
	pthread_mutex_lock(&s->lock);
	if (s->stopping) {
		/* Another thread is shutting down (or has): wait for it to finish. */
		while (!s->shut || s->senders)
			pthread_cond_wait(&s->cond, &s->lock);
		pthread_mutex_unlock(&s->lock);
		return;
	}
	s->stopping = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; i < s->nr_workers; i++)
		pthread_join(s->workers[i].thread, NULL);
	s->nr_workers = 0;
	refuse_queued(s);
	pthread_mutex_lock(&s->lock);
	s->shut = true;
	pthread_cond_broadcast(&s->cond);
	while (s->senders)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
}

void store_server_destroy(struct store_server *s)
{
	if (!s)
		return;
	store_server_shutdown(s);
	for (unsigned i = 0; i < STORE_SERVER_MAX_WORKERS; i++)
		free(s->workers[i].buf);
	for (unsigned i = 0; i < s->nr_exports; i++)
		free(s->exports[i]);
	/* None is left after shutdown (every request is over); this is belt and braces. */
	for (struct srv_barrier *b = s->barriers, *next; b; b = next) {
		next = b->next;
		free(b);
	}
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
