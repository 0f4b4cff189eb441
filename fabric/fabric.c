// SPDX-License-Identifier: MIT
/* The fabric: TCP full mesh, handshake, framed MACed messages, liveness. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "fabric/fabric.h"
#include "fabric/tcp.h"

#define DEFAULT_HEARTBEAT_MS 200
#define DEFAULT_DEAD_MS 2000
#define DEFAULT_HANDSHAKE_MS 5000
#define DIAL_BACKOFF_MIN_MS 10
#define DIAL_BACKOFF_MAX_MS 500
/* Room for a few maximal frames: fewer read() calls under a burst. */
#define RXBUF_LEN (4 * (FRAME_HDR_LEN + FRAME_MAX_PAYLOAD))
/*
 * A peer that does not read makes its queue grow. Application threads
 * wait above the soft limit; the receive thread never waits (it would stop
 * reading, and two nodes could wait for each other), so past the hard
 * limit the peer is cut off instead.
 */
#define OUTQ_SOFT (8u << 20)
#define OUTQ_HARD (64u << 20)
/* Connections still in their handshake, beyond which new ones are refused. */
#define MAX_PENDING(n) (2 * (n) + 16)
#define LOG_PER_SEC 20
#define MAX_EVENTS 64

enum ep_kind { EP_LISTEN, EP_WAKE, EP_CONN, EP_PEER, EP_WATCH };

struct ep_tag {
	enum ep_kind kind;
	void *obj;
};

enum peer_state { PEER_WAITING, PEER_UP, PEER_DOWN };

struct outq {
	uint8_t *buf;
	size_t off, len, cap;
};

struct conn;

struct peer {
	struct fabric *f;
	unsigned id;
	struct ep_tag tag;
	struct tcp_addr addr;            /* as configured */
	char addr_str[FABRIC_ADDR_MAX];
	bool addr_set;
	_Atomic int state;               /* enum peer_state; changed under f->lock */
	char last_err[200];              /* f->lock: why it is not up, for fabric_start */
	/* dialling: receive thread only */
	struct conn *dialing;
	uint64_t next_dial_ms;
	unsigned backoff_ms;
	/* sending: tx_lock */
	pthread_mutex_t tx_lock;
	pthread_cond_t tx_cond;
	int fd;                          /* -1 unless up; closed under tx_lock */
	bool was_up;
	bool tx_broken;                  /* a send failed: the loop cuts the peer */
	char tx_why[160];
	struct frame_tx tx;
	struct outq q;
	bool pollout;
	uint64_t tx_progress_ms;         /* when the socket last took bytes */
	_Atomic uint64_t last_tx_ms;
	/* receiving: receive thread only */
	struct frame_rx rx;
	uint8_t *rxbuf;
	size_t rx_len;
	uint64_t last_rx_ms;
	char remote[TCP_ADDR_STR];
	_Atomic uint64_t frames_tx, bytes_tx, frames_rx, bytes_rx;
};

/* A connection that has not finished its handshake yet. */
struct conn {
	struct fabric *f;
	struct ep_tag tag;
	int fd;
	bool outbound, connecting;
	unsigned node;                   /* outbound: the node dialled */
	struct tcp_addr remote;
	char remote_str[TCP_ADDR_STR];
	struct handshake hs;
	struct conn *next;
};

/* An fd of an upper layer watched by the receive thread. */
struct watch {
	struct ep_tag tag;
	int fd;                          /* -1: free slot */
	fabric_fd_cb cb;
	void *ctx;
};

struct fabric {
	unsigned self, n;
	struct fabric_ops ops;
	uint8_t secret[FABRIC_SECRET_LEN];
	uint8_t cluster_id[HS_CLUSTER_ID_LEN];
	unsigned hb_ms, dead_ms, hs_ms, busy_poll_us;
	uint64_t timers_ms;             /* when the receive thread last ran its clocks */
	bool addr_check;
	struct tcp_addr self_addr;
	int lfd, epfd, wakefd;
	struct ep_tag lfd_tag, wake_tag;
	pthread_t thread;
	bool running;
	atomic_bool stop;
	pthread_mutex_t lock;
	pthread_cond_t cond;             /* a peer came up or went down */
	unsigned nr_up;
	struct conn *conns;              /* receive thread only */
	unsigned nr_conns;
	/* log rate limit: receive thread and callers of fabric_log */
	pthread_mutex_t log_lock;
	uint64_t log_sec;
	unsigned log_count, log_dropped;
	/* held by the receive thread while it runs a watch callback */
	pthread_mutex_t watch_lock;
	struct watch watches[FABRIC_MAX_WATCH];
	struct peer peers[FABRIC_MAX_NODES];
};

static bool on_loop_thread(const struct fabric *f)
{
	return f->running && pthread_equal(pthread_self(), f->thread);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ms(void)
{
	return now_ns() / 1000000u;
}

static void fabric_log(struct fabric *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Refusals are logged, and anyone who can reach the port can cause them:
 * a rate limit keeps a flood from filling the log.
 */
static void fabric_log(struct fabric *f, const char *fmt, ...)
{
	char msg[512], note[64] = "";
	uint64_t sec = now_ms() / 1000;
	size_t n;
	va_list ap;

	pthread_mutex_lock(&f->log_lock);
	if (sec != f->log_sec) {
		if (f->log_dropped)
			snprintf(note, sizeof(note), " (%u earlier messages suppressed)",
				 f->log_dropped);
		f->log_sec = sec;
		f->log_count = f->log_dropped = 0;
	}
	if (++f->log_count > LOG_PER_SEC) {
		f->log_dropped++;
		pthread_mutex_unlock(&f->log_lock);
		return;
	}
	pthread_mutex_unlock(&f->log_lock);
	n = (size_t)snprintf(msg, sizeof(msg), "fabric node %u: ", f->self);
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - n, fmt, ap);
	va_end(ap);
	n = strlen(msg);
	snprintf(msg + n, sizeof(msg) - n, "%s", note);
	if (f->ops.on_log)
		f->ops.on_log(f->ops.ctx, msg);
	else
		fprintf(stderr, "%s\n", msg);
}

/* ---- send queue ---------------------------------------------------------- */

static int outq_append(struct outq *q, const void *p, size_t n)
{
	if (q->off && q->off + q->len + n > q->cap) {
		memmove(q->buf, q->buf + q->off, q->len);
		q->off = 0;
	}
	if (q->len + n > q->cap) {
		size_t cap = q->cap ? q->cap : 65536;
		uint8_t *b;

		while (cap < q->len + n)
			cap *= 2;
		b = realloc(q->buf, cap);
		if (!b)
			return -ENOMEM;
		q->buf = b;
		q->cap = cap;
	}
	memcpy(q->buf + q->off + q->len, p, n);
	q->len += n;
	return 0;
}

static void outq_free(struct outq *q)
{
	free(q->buf);
	memset(q, 0, sizeof(*q));
}

/* Marks the connection broken; the receive thread sees the hang-up and cuts it. */
static void tx_break(struct peer *p, const char *why)
{
	if (!p->tx_broken) {
		p->tx_broken = true;
		snprintf(p->tx_why, sizeof(p->tx_why), "%s", why);
	}
	if (p->fd >= 0)
		shutdown(p->fd, SHUT_RDWR);
	pthread_cond_broadcast(&p->tx_cond);
}

/* Watch for writability only while something is queued. Under tx_lock. */
static void tx_set_pollout(struct peer *p, bool on)
{
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = &p->tag };

	if (p->pollout == on || p->fd < 0)
		return;
	p->pollout = on;
	epoll_ctl(p->f->epfd, EPOLL_CTL_MOD, p->fd, &ev);
}

/* Writes what the queue holds, as far as the socket takes it. Under tx_lock. */
static void tx_flush(struct peer *p)
{
	while (p->q.len && !p->tx_broken) {
		ssize_t n = send(p->fd, p->q.buf + p->q.off, p->q.len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				tx_break(p, strerror(errno));
			break;
		}
		p->q.off += (size_t)n;
		p->q.len -= (size_t)n;
		p->tx_progress_ms = now_ms();
	}
	if (!p->q.len)
		p->q.off = 0;
	tx_set_pollout(p, p->q.len > 0);
	if (p->q.len <= OUTQ_SOFT)
		pthread_cond_broadcast(&p->tx_cond);
}

/* Queues bytes [skip, total) of hdr + iov. Under tx_lock. */
static int tx_queue(struct peer *p, const struct iovec *v, int cnt, size_t skip)
{
	for (int i = 0; i < cnt; i++) {
		size_t l = v[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		if (outq_append(&p->q, (const uint8_t *)v[i].iov_base + skip, l - skip)) {
			tx_break(p, "out of memory for the send queue");
			return -ENOMEM;
		}
		skip = 0;
	}
	return 0;
}

static struct timespec ms_to_ts(uint64_t ms)
{
	return (struct timespec){ .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000 };
}

/*
 * Application threads wait while the queue is long; the receive thread
 * never does. A peer that reads slowly is alive: only dead_ms without the
 * socket taking a single byte means it stopped reading.
 */
static int tx_wait_room(struct fabric *f, struct peer *p, bool may_wait)
{
	if (!may_wait || p->q.len <= OUTQ_SOFT)
		return 0;
	while (p->fd >= 0 && !p->tx_broken && p->q.len > OUTQ_SOFT) {
		uint64_t deadline = p->tx_progress_ms + f->dead_ms;
		struct timespec dl = ms_to_ts(deadline);

		if (now_ms() >= deadline ||
		    (pthread_cond_timedwait(&p->tx_cond, &p->tx_lock, &dl) == ETIMEDOUT &&
		     now_ms() >= p->tx_progress_ms + f->dead_ms)) {
			char why[160];

			snprintf(why, sizeof(why), "peer stopped reading (%zu bytes queued, none "
				 "taken for %u ms)", p->q.len, f->dead_ms);
			tx_break(p, why);
			return -ETIMEDOUT;
		}
	}
	return 0;
}

static int tx_state_err(const struct peer *p)
{
	if (p->fd >= 0 && !p->tx_broken)
		return 0;
	return p->was_up ? -EPIPE : -ENOTCONN;
}

/* Seals and sends (or queues) one frame. */
static int xmit_locked(struct fabric *f, struct peer *p, uint16_t type, uint64_t req_id,
		       const struct iovec *iov, int iovcnt, bool may_wait)
{
	uint8_t hdr[FRAME_HDR_LEN];
	struct iovec v[FRAME_IOV_MAX + 1];
	struct msghdr mh = { .msg_iov = v, .msg_iovlen = (size_t)iovcnt + 1 };
	size_t total = FRAME_HDR_LEN;
	ssize_t n = 0;
	int rc;

	rc = tx_state_err(p);
	if (!rc)
		rc = tx_wait_room(f, p, may_wait);
	if (!rc)
		rc = tx_state_err(p);
	if (!rc)
		rc = frame_seal(&p->tx, hdr, type, 0, req_id, iov, iovcnt);
	if (rc)
		goto out;
	v[0] = (struct iovec){ .iov_base = hdr, .iov_len = FRAME_HDR_LEN };
	for (int i = 0; i < iovcnt; i++) {
		v[i + 1] = iov[i];
		total += iov[i].iov_len;
	}
	/* Common case: nothing queued, the socket takes it all, no copy. */
	if (!p->q.len) {
		do
			n = sendmsg(p->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR);
		if (n < 0 && errno != EAGAIN) {
			tx_break(p, strerror(errno));
			rc = -EPIPE;
			goto out;
		}
		if (n < 0)
			n = 0;
		else
			p->tx_progress_ms = now_ms();
	}
	if ((size_t)n < total) {
		rc = tx_queue(p, v, iovcnt + 1, (size_t)n);
		if (!rc)
			tx_flush(p);
		if (!rc && p->q.len > OUTQ_HARD) {
			tx_break(p, "peer stopped reading (send queue over its hard limit)");
			rc = -ETIMEDOUT;
		}
	}
	atomic_store_explicit(&p->last_tx_ms, now_ms(), memory_order_relaxed);
	atomic_fetch_add_explicit(&p->frames_tx, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&p->bytes_tx, total, memory_order_relaxed);
out:
	return rc;
}

static int xmit(struct fabric *f, struct peer *p, uint16_t type, uint64_t req_id,
		const struct iovec *iov, int iovcnt, bool may_wait)
{
	int rc;

	pthread_mutex_lock(&p->tx_lock);
	rc = xmit_locked(f, p, type, req_id, iov, iovcnt, may_wait);
	pthread_mutex_unlock(&p->tx_lock);
	return rc;
}

/* A heartbeat is not needed while another thread holds the lock to send. */
static void send_heartbeat(struct fabric *f, struct peer *p)
{
	if (pthread_mutex_trylock(&p->tx_lock))
		return;
	xmit_locked(f, p, FRAME_TYPE_HEARTBEAT, 0, NULL, 0, false);
	pthread_mutex_unlock(&p->tx_lock);
}

int fabric_sendv(struct fabric *f, unsigned dst, uint16_t type, uint64_t req_id,
		 const struct iovec *iov, int iovcnt)
{
	if (dst >= f->n || dst == f->self || type < FRAME_TYPE_USER || iovcnt < 0 ||
	    iovcnt > FRAME_IOV_MAX)
		return -EINVAL;
	return xmit(f, &f->peers[dst], type, req_id, iov, iovcnt, !on_loop_thread(f));
}

int fabric_send(struct fabric *f, unsigned dst, uint16_t type, uint64_t req_id,
		const void *payload, size_t len)
{
	struct iovec v = { .iov_base = (void *)payload, .iov_len = len };

	return fabric_sendv(f, dst, type, req_id, &v, len ? 1 : 0);
}

/* ---- peers up and down --------------------------------------------------- */

static void peer_down(struct fabric *f, struct peer *p, enum fabric_down_reason reason,
		      const char *why)
{
	int fd;

	pthread_mutex_lock(&f->lock);
	if (p->state != PEER_UP) {
		pthread_mutex_unlock(&f->lock);
		return;
	}
	p->state = PEER_DOWN;
	f->nr_up--;
	snprintf(p->last_err, sizeof(p->last_err), "went down: %s", why);
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);

	pthread_mutex_lock(&p->tx_lock);
	fd = p->fd;
	p->fd = -1;
	outq_free(&p->q);
	sodium_memzero(&p->tx, sizeof(p->tx));
	pthread_cond_broadcast(&p->tx_cond);
	pthread_mutex_unlock(&p->tx_lock);
	epoll_ctl(f->epfd, EPOLL_CTL_DEL, fd, NULL);
	close(fd);
	sodium_memzero(&p->rx, sizeof(p->rx));
	free(p->rxbuf);
	p->rxbuf = NULL;
	p->rx_len = 0;
	fabric_log(f, "node %u (%s) is down: %s", p->id, p->remote, why);
	if (f->ops.on_peer_down)
		f->ops.on_peer_down(f->ops.ctx, p->id, reason, why);
}

/* A protocol violation: log what was refused, then cut the peer off. */
static void peer_refuse(struct fabric *f, struct peer *p, const char *what)
{
	char why[256];

	snprintf(why, sizeof(why), "protocol violation: %s", what);
	fabric_log(f, "refused a frame from node %u (%s): %s; closing the connection",
		   p->id, p->remote, what);
	peer_down(f, p, FABRIC_PEER_REFUSED, why);
}

static void peer_dispatch(struct fabric *f, struct peer *p, const struct frame_hdr *h,
			  const uint8_t *payload)
{
	char why[FRAME_HDR_LEN + 300];
	size_t i;

	atomic_fetch_add_explicit(&p->frames_rx, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&p->bytes_rx, FRAME_HDR_LEN + h->len, memory_order_relaxed);
	switch (h->type) {
	case FRAME_TYPE_HEARTBEAT:
		return;
	case FRAME_TYPE_BYE:
		/* The reason is the peer's text: keep it printable. */
		i = (size_t)snprintf(why, sizeof(why), "node left: ");
		for (size_t k = 0; k < h->len && i + 1 < sizeof(why); k++)
			why[i++] = payload[k] >= 0x20 && payload[k] < 0x7f ? (char)payload[k] : '?';
		why[i] = '\0';
		peer_down(f, p, FABRIC_PEER_LEFT, why);
		return;
	default:
		if (f->ops.on_frame)
			f->ops.on_frame(f->ops.ctx, p->id, h->type, h->req_id, payload, h->len);
	}
}

/* Decodes and delivers every complete frame in the receive buffer. */
static void peer_parse(struct fabric *f, struct peer *p)
{
	size_t off = 0, used;
	const uint8_t *payload;
	struct frame_hdr h;
	enum frame_err e;
	char what[200];

	while (p->state == PEER_UP && off < p->rx_len) {
		e = frame_decode(&p->rx, p->rxbuf + off, p->rx_len - off, &h, &payload, &used);
		if (e == FRAME_MORE)
			break;
		if (e != FRAME_OK) {
			frame_describe(e, &h, &p->rx, what, sizeof(what));
			peer_refuse(f, p, what);
			return;
		}
		off += used;
		peer_dispatch(f, p, &h, payload);
	}
	if (p->state != PEER_UP)
		return;
	memmove(p->rxbuf, p->rxbuf + off, p->rx_len - off);
	p->rx_len -= off;
}

/* Reads what the socket holds. Returns true if frames came in. */
static bool peer_readable(struct fabric *f, struct peer *p)
{
	char why[160];
	ssize_t n;

	do
		n = read(p->fd, p->rxbuf + p->rx_len, RXBUF_LEN - p->rx_len);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		p->rx_len += (size_t)n;
		p->last_rx_ms = now_ms();
		peer_parse(f, p);
		return true;
	}
	if (n < 0 && errno == EAGAIN)
		return false;
	pthread_mutex_lock(&p->tx_lock);
	if (p->tx_broken)
		snprintf(why, sizeof(why), "%s", p->tx_why);
	else if (n == 0)
		snprintf(why, sizeof(why), "connection closed by the peer%s",
			 p->rx_len ? " in the middle of a frame" : "");
	else
		snprintf(why, sizeof(why), "connection error: %s", strerror(errno));
	pthread_mutex_unlock(&p->tx_lock);
	peer_down(f, p, FABRIC_PEER_LOST, why);
	return false;
}

/*
 * The receive thread must not queue behind application threads sending in
 * a loop (mutexes are not fair, and its heartbeats would stop): if one holds
 * the lock, it flushes the queue itself.
 */
static void peer_writable(struct peer *p)
{
	if (pthread_mutex_trylock(&p->tx_lock))
		return;
	if (p->fd >= 0)
		tx_flush(p);
	pthread_mutex_unlock(&p->tx_lock);
}

/* ---- connections in their handshake -------------------------------------- */

static void conn_free(struct fabric *f, struct conn *c, bool close_fd)
{
	struct conn **pp;

	for (pp = &f->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	f->nr_conns--;
	if (close_fd && c->fd >= 0) {
		epoll_ctl(f->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	if (c->outbound)
		f->peers[c->node].dialing = NULL;
	hs_clear(&c->hs);
	free(c);
}

/* The next dial after a failure waits longer, up to a bound. */
static void dial_backoff(struct fabric *f, struct peer *p)
{
	p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : DIAL_BACKOFF_MIN_MS;
	if (p->backoff_ms > DIAL_BACKOFF_MAX_MS)
		p->backoff_ms = DIAL_BACKOFF_MAX_MS;
	p->next_dial_ms = now_ms() + p->backoff_ms;
}

static void set_last_err(struct fabric *f, unsigned node, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_last_err(struct fabric *f, unsigned node, const char *fmt, ...)
{
	struct peer *p = &f->peers[node];
	va_list ap;

	pthread_mutex_lock(&f->lock);
	if (p->state == PEER_WAITING) {
		va_start(ap, fmt);
		vsnprintf(p->last_err, sizeof(p->last_err), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&f->lock);
}

/* A handshake failed or the connection broke before it finished. */
static void conn_fail(struct fabric *f, struct conn *c, const char *why)
{
	/* Only a claim that passed the HELLO checks names a node. */
	bool named = c->outbound || c->hs.state == HS_WAIT_PROOF || c->hs.state == HS_OK ||
		     c->hs.error == HS_ERR_AUTH;
	unsigned node = c->outbound ? c->node : c->hs.peer;

	if (c->outbound) {
		dial_backoff(f, &f->peers[c->node]);
		/* Refused dials are normal while peers start: only report them at the end. */
		if (!c->connecting)
			fabric_log(f, "handshake with node %u at %s failed: %s", c->node,
				   c->remote_str, why);
	} else {
		fabric_log(f, "refused connection from %s: %s", c->remote_str, why);
	}
	if (named && node < f->n && node != f->self) {
		if (c->outbound)
			set_last_err(f, node, "%s", why);
		else
			set_last_err(f, node, "refused a connection from %s: %s", c->remote_str, why);
	}
	conn_free(f, c, true);
}

/* Sends what the handshake has to say. false if the connection broke. */
static bool conn_flush(struct conn *c)
{
	const uint8_t *out;
	size_t len;

	while ((len = hs_output(&c->hs, &out)) > 0) {
		ssize_t n = send(c->fd, out, len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN;
		hs_sent(&c->hs, (size_t)n);
	}
	return true;
}

static void conn_arm(struct fabric *f, struct conn *c)
{
	const uint8_t *out;
	struct epoll_event ev = {
		.events = EPOLLIN | (hs_output(&c->hs, &out) || c->connecting ? EPOLLOUT : 0),
		.data.ptr = &c->tag,
	};

	epoll_ctl(f->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Checks that only a handshake cannot do: one connection per node, from its address. */
static bool conn_admissible(struct fabric *f, struct conn *c, struct peer *p, char *why,
			    size_t len)
{
	char want[TCP_ADDR_STR];

	if (p->state == PEER_UP) {
		snprintf(why, len, "node %u is already connected from %s; refusing a second "
			 "connection (two nodes with the same id?)", p->id, p->remote);
		return false;
	}
	if (p->state == PEER_DOWN) {
		snprintf(why, len, "node %u was declared down and cannot rejoin", p->id);
		return false;
	}
	if (!c->outbound && f->addr_check && p->addr_set && !tcp_is_wildcard(&p->addr) &&
	    !tcp_same_ip(&p->addr, &c->remote)) {
		tcp_addr_str(&p->addr, want, sizeof(want));
		snprintf(why, len, "node %u is configured at %s, but this connection comes from %s",
			 p->id, want, c->remote_str);
		return false;
	}
	return true;
}

/* The handshake succeeded: the connection becomes the peer's. */
static void conn_promote(struct fabric *f, struct conn *c, const uint8_t *rest, size_t rest_len)
{
	struct peer *p = &f->peers[c->hs.peer];
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &p->tag };
	const uint8_t *out;
	size_t out_len;
	char why[300];
	int fd = c->fd;

	pthread_mutex_lock(&f->lock);
	if (!conn_admissible(f, c, p, why, sizeof(why))) {
		pthread_mutex_unlock(&f->lock);
		conn_fail(f, c, why);
		return;
	}
	p->rxbuf = malloc(RXBUF_LEN);
	if (!p->rxbuf || frame_rx_init(&p->rx, c->hs.rx_key, p->id, f->self, f->n) ||
	    rest_len > RXBUF_LEN) {
		pthread_mutex_unlock(&f->lock);
		free(p->rxbuf);
		p->rxbuf = NULL;
		conn_fail(f, c, "out of memory");
		return;
	}
	memcpy(p->rxbuf, rest, rest_len);
	p->rx_len = rest_len;
	p->last_rx_ms = now_ms();
	snprintf(p->remote, sizeof(p->remote), "%s", c->remote_str);

	pthread_mutex_lock(&p->tx_lock);
	frame_tx_init(&p->tx, c->hs.tx_key, f->self, p->id);
	p->fd = fd;
	p->was_up = true;
	p->pollout = false;
	p->tx_progress_ms = now_ms();
	/* The handshake's last words go out before any frame. */
	out_len = hs_output(&c->hs, &out);
	if (out_len && outq_append(&p->q, out, out_len))
		tx_break(p, "out of memory");
	atomic_store(&p->last_tx_ms, now_ms());
	epoll_ctl(f->epfd, EPOLL_CTL_MOD, fd, &ev);
	tx_flush(p);
	pthread_mutex_unlock(&p->tx_lock);

	p->state = PEER_UP;
	p->backoff_ms = 0;
	f->nr_up++;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);

	fabric_log(f, "node %u is up (%s, %s)", p->id, c->remote_str,
		   c->outbound ? "dialled" : "accepted");
	c->fd = -1;
	conn_free(f, c, false);
	if (p->rx_len)
		peer_parse(f, p);
}

static void conn_readable(struct fabric *f, struct conn *c)
{
	uint8_t buf[4096];
	enum hs_status st;
	size_t used;
	ssize_t n;

	do
		n = read(c->fd, buf, sizeof(buf));
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n <= 0) {
		conn_fail(f, c, n == 0 ? "connection closed during the handshake"
				       : strerror(errno));
		return;
	}
	st = hs_feed(&c->hs, buf, (size_t)n, &used);
	if (st == HS_FAILED) {
		conn_fail(f, c, c->hs.err);
		return;
	}
	if (st == HS_DONE) {
		conn_promote(f, c, buf + used, (size_t)n - used);
		return;
	}
	if (!conn_flush(c)) {
		conn_fail(f, c, "connection broken during the handshake");
		return;
	}
	conn_arm(f, c);
}

static void conn_writable(struct fabric *f, struct conn *c)
{
	int e;

	if (c->connecting) {
		e = tcp_connect_result(c->fd);
		if (e) {
			conn_fail(f, c, strerror(e));
			return;
		}
		c->connecting = false;
	}
	if (!conn_flush(c)) {
		conn_fail(f, c, "connection broken during the handshake");
		return;
	}
	conn_arm(f, c);
}

static struct conn *conn_new(struct fabric *f, int fd, bool outbound, unsigned node,
			     const struct tcp_addr *remote)
{
	struct hs_params hp = {
		.role = outbound ? HS_INITIATOR : HS_RESPONDER,
		.secret = f->secret,
		.self = f->self,
		.nr_nodes = f->n,
		/* Higher ids dial lower ones: whoever calls us has a higher id. */
		.peer_min = outbound ? node : f->self + 1,
		.peer_max = outbound ? node : f->n - 1,
		.now_ms = now_ms(),
		.timeout_ms = f->hs_ms,
	};
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT };
	struct conn *c;

	memcpy(hp.cluster_id, f->cluster_id, HS_CLUSTER_ID_LEN);
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	if (hs_init(&c->hs, &hp)) {
		free(c);
		return NULL;
	}
	c->f = f;
	c->fd = fd;
	c->outbound = outbound;
	c->node = node;
	c->remote = *remote;
	tcp_addr_str(remote, c->remote_str, sizeof(c->remote_str));
	c->tag = (struct ep_tag){ .kind = EP_CONN, .obj = c };
	ev.data.ptr = &c->tag;
	if (epoll_ctl(f->epfd, EPOLL_CTL_ADD, fd, &ev)) {
		hs_clear(&c->hs);
		free(c);
		return NULL;
	}
	c->next = f->conns;
	f->conns = c;
	f->nr_conns++;
	return c;
}

static void on_accept(struct fabric *f)
{
	struct tcp_addr remote;
	char s[TCP_ADDR_STR];
	int fd;

	while ((fd = tcp_accept(f->lfd, &remote)) >= 0) {
		tcp_addr_str(&remote, s, sizeof(s));
		if (f->nr_conns >= MAX_PENDING(f->n)) {
			fabric_log(f, "refused connection from %s: too many handshakes in progress", s);
			close(fd);
			continue;
		}
		if (!conn_new(f, fd, false, 0, &remote)) {
			fabric_log(f, "refused connection from %s: out of memory", s);
			close(fd);
		}
	}
}

static void dial(struct fabric *f, struct peer *p)
{
	const struct tcp_addr *src = tcp_is_wildcard(&f->self_addr) ? NULL : &f->self_addr;
	struct conn *c;
	int fd, rc;

	rc = tcp_connect_start(&p->addr, src, &fd);
	if (rc < 0) {
		set_last_err(f, p->id, "%s", strerror(-rc));
		if (fd >= 0)
			close(fd);
		dial_backoff(f, p);
		return;
	}
	c = conn_new(f, fd, true, p->id, &p->addr);
	if (!c) {
		close(fd);
		dial_backoff(f, p);
		return;
	}
	c->connecting = rc == 1;
	p->dialing = c;
}

/* ---- the receive thread -------------------------------------------------- */

static uint64_t min64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static void peer_timers(struct fabric *f, struct peer *p, uint64_t now, uint64_t *next)
{
	uint64_t last_tx;
	char why[64];

	if (p->state == PEER_WAITING && p->id < f->self && !p->dialing && p->addr_set) {
		if (now >= p->next_dial_ms)
			dial(f, p);
		else
			*next = min64(*next, p->next_dial_ms);
		return;
	}
	if (p->state != PEER_UP)
		return;
	if (now - p->last_rx_ms >= f->dead_ms) {
		struct pollfd pfd = { .fd = p->fd, .events = POLLIN };

		/*
		 * Bytes waiting means we were slow (a long callback), not that the
		 * peer was silent: read them first.
		 */
		if (poll(&pfd, 1, 0) > 0) {
			*next = now;
			return;
		}
		snprintf(why, sizeof(why), "no traffic for %" PRIu64 " ms", now - p->last_rx_ms);
		peer_down(f, p, FABRIC_PEER_LOST, why);
		return;
	}
	*next = min64(*next, p->last_rx_ms + f->dead_ms);
	/* Other threads' sends count: a busy link needs no heartbeat. */
	last_tx = atomic_load(&p->last_tx_ms);
	if (last_tx <= now && now - last_tx >= f->hb_ms) {
		send_heartbeat(f, p);
		last_tx = now;
	}
	*next = min64(*next, last_tx + f->hb_ms);
}

/*
 * This thread did not run its clocks for a while (a long callback, or the
 * whole host starved: in the lab all nodes share one emulated CPU, and a
 * 2-3 s freeze made every node declare every other dead at once): peers
 * could not be heard meanwhile, so their silence counts from now on only
 * for the time this thread was not running. A peer that really died is
 * still noticed, dead_ms after this thread resumed.
 */
static void forgive_own_stall(struct fabric *f, uint64_t now)
{
	uint64_t gap = f->timers_ms && now > f->timers_ms ? now - f->timers_ms : 0;

	f->timers_ms = now;
	if (gap <= 2 * (uint64_t)f->hb_ms)
		return;
	for (unsigned i = 0; i < f->n; i++) {
		struct peer *p = &f->peers[i];

		if (i != f->self && p->state == PEER_UP)
			p->last_rx_ms = min64(p->last_rx_ms + gap, now);
	}
}

/* Runs the clocks: dials, heartbeats, dead peers, stuck handshakes. Returns the next deadline. */
static uint64_t run_timers(struct fabric *f)
{
	uint64_t now = now_ms(), next = now + f->hb_ms;
	struct conn *c, *nx;

	forgive_own_stall(f, now);

	for (unsigned i = 0; i < f->n; i++)
		if (i != f->self)
			peer_timers(f, &f->peers[i], now, &next);
	for (c = f->conns; c; c = nx) {
		nx = c->next;
		if (hs_check_timeout(&c->hs, now) == HS_FAILED)
			conn_fail(f, c, c->hs.err);
		else
			next = min64(next, c->hs.deadline_ms);
	}
	return next;
}

/* Returns true if the event brought frames. */
static bool handle_event(struct fabric *f, const struct epoll_event *ev)
{
	struct ep_tag *t = ev->data.ptr;
	uint64_t v;

	switch (t->kind) {
	case EP_LISTEN:
		on_accept(f);
		return false;
	case EP_WAKE:
		if (read(f->wakefd, &v, sizeof(v)) < 0)
			return false;
		return false;
	case EP_CONN:
		if (ev->events & (EPOLLOUT | EPOLLERR | EPOLLHUP) && ((struct conn *)t->obj)->connecting) {
			conn_writable(f, t->obj);
			return false;
		}
		if (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP))
			conn_readable(f, t->obj);
		else if (ev->events & EPOLLOUT)
			conn_writable(f, t->obj);
		return false;
	case EP_WATCH: {
		struct watch *w = t->obj;
		bool ran = false;

		pthread_mutex_lock(&f->watch_lock);
		if (w->fd >= 0 && w->cb) {
			w->cb(w->ctx, w->fd, ev->events);
			ran = true;
		}
		pthread_mutex_unlock(&f->watch_lock);
		return ran;
	}
	case EP_PEER: {
		struct peer *p = t->obj;

		if (ev->events & EPOLLOUT)
			peer_writable(p);
		if (p->state == PEER_UP && ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP))
			return peer_readable(f, p);
		return false;
	}
	}
	return false;
}

/*
 * Waits for events. After traffic it first polls without sleeping for a
 * budget of microseconds (a sleeping thread takes 25-35 us to wake on
 * these hosts): the budget halves when polling finds nothing and doubles
 * when a sleep ended soon after it began, so an idle or slow peer costs
 * little CPU and a chatty one gets the fast path.
 */
static int wait_events(struct fabric *f, struct epoll_event *evs, int timeout_ms,
		       bool traffic, unsigned *budget_us)
{
	uint64_t t0 = now_ns();
	int n;

	if (traffic && *budget_us) {
		do
			n = epoll_wait(f->epfd, evs, MAX_EVENTS, 0);
		while (n == 0 && now_ns() - t0 < *budget_us * 1000ull && !f->stop);
		if (n)
			return n;
		*budget_us /= 2;
		t0 = now_ns();
	}
	n = epoll_wait(f->epfd, evs, MAX_EVENTS, timeout_ms);
	if (f->busy_poll_us && n > 0 && now_ns() - t0 < f->busy_poll_us * 1000ull) {
		*budget_us = *budget_us ? *budget_us * 2 : 4;
		if (*budget_us > f->busy_poll_us)
			*budget_us = f->busy_poll_us;
	}
	return n;
}

static void *loop_main(void *arg)
{
	struct fabric *f = arg;
	struct epoll_event evs[MAX_EVENTS];
	unsigned budget = f->busy_poll_us;
	bool traffic = false;
	char name[16];

	snprintf(name, sizeof(name), "fabric%u", f->self);
	pthread_setname_np(pthread_self(), name);
	while (!f->stop) {
		uint64_t next = run_timers(f), now = now_ms();
		int timeout = next > now ? (int)(next - now) : 0;
		int n = wait_events(f, evs, timeout, traffic, &budget);

		traffic = false;
		for (int i = 0; i < n && !f->stop; i++)
			traffic |= handle_event(f, &evs[i]);
	}
	return NULL;
}

/* ---- life cycle ---------------------------------------------------------- */

static int check_config(const struct fabric_config *cfg, char *err, size_t errlen)
{
	if (cfg->nr_nodes < 1 || cfg->nr_nodes > FABRIC_MAX_NODES) {
		snprintf(err, errlen, "fabric: %u nodes (1..%d allowed)", cfg->nr_nodes,
			 FABRIC_MAX_NODES);
		return -1;
	}
	if (cfg->self >= cfg->nr_nodes) {
		snprintf(err, errlen, "fabric: node id %u out of range (cluster of %u)", cfg->self,
			 cfg->nr_nodes);
		return -1;
	}
	if (!cfg->addr[cfg->self]) {
		snprintf(err, errlen, "fabric: no address for this node (%u)", cfg->self);
		return -1;
	}
	if (cfg->dead_ms && cfg->heartbeat_ms && cfg->dead_ms <= 2 * cfg->heartbeat_ms) {
		snprintf(err, errlen, "fabric: dead_ms (%u) must exceed two heartbeats (%u ms)",
			 cfg->dead_ms, cfg->heartbeat_ms);
		return -1;
	}
	return 0;
}

static void peer_init(struct fabric *f, unsigned i, const pthread_condattr_t *ca)
{
	struct peer *p = &f->peers[i];

	p->f = f;
	p->id = i;
	p->fd = -1;
	p->tag = (struct ep_tag){ .kind = EP_PEER, .obj = p };
	snprintf(p->remote, sizeof(p->remote), "never connected");
	snprintf(p->last_err, sizeof(p->last_err), i < f->self ? "not reached yet" :
		 "has not connected (it dials this node)");
	pthread_mutex_init(&p->tx_lock, NULL);
	pthread_cond_init(&p->tx_cond, ca);
}

static int fabric_init_fds(struct fabric *f, char *err, size_t errlen)
{
	struct epoll_event ev = { .events = EPOLLIN };

	f->lfd = tcp_listen(&f->self_addr, err, errlen);
	if (f->lfd < 0)
		return -1;
	f->epfd = epoll_create1(EPOLL_CLOEXEC);
	f->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (f->epfd < 0 || f->wakefd < 0) {
		snprintf(err, errlen, "fabric: epoll/eventfd: %s", strerror(errno));
		return -1;
	}
	f->lfd_tag = (struct ep_tag){ .kind = EP_LISTEN, .obj = f };
	f->wake_tag = (struct ep_tag){ .kind = EP_WAKE, .obj = f };
	ev.data.ptr = &f->lfd_tag;
	epoll_ctl(f->epfd, EPOLL_CTL_ADD, f->lfd, &ev);
	ev.data.ptr = &f->wake_tag;
	epoll_ctl(f->epfd, EPOLL_CTL_ADD, f->wakefd, &ev);
	return 0;
}

static void fabric_free(struct fabric *f)
{
	while (f->conns)
		conn_free(f, f->conns, true);
	for (unsigned i = 0; i < FABRIC_MAX_NODES; i++) {
		struct peer *p = &f->peers[i];

		if (p->f != f)
			continue;
		if (p->fd >= 0)
			close(p->fd);
		outq_free(&p->q);
		free(p->rxbuf);
		pthread_mutex_destroy(&p->tx_lock);
		pthread_cond_destroy(&p->tx_cond);
	}
	if (f->lfd >= 0)
		close(f->lfd);
	if (f->epfd >= 0)
		close(f->epfd);
	if (f->wakefd >= 0)
		close(f->wakefd);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->log_lock);
	pthread_mutex_destroy(&f->watch_lock);
	sodium_memzero(f, sizeof(*f));
	free(f);
}

int fabric_create(const struct fabric_config *cfg, const struct fabric_ops *ops,
		  struct fabric **out, char *err, size_t errlen)
{
	pthread_condattr_t ca;
	struct fabric *f;

	*out = NULL;
	if (check_config(cfg, err, errlen))
		return -1;
	if (sodium_init() < 0) {
		snprintf(err, errlen, "fabric: libsodium cannot be initialised");
		return -1;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		snprintf(err, errlen, "fabric: out of memory");
		return -1;
	}
	f->lfd = f->epfd = f->wakefd = -1;
	f->self = cfg->self;
	f->n = cfg->nr_nodes;
	if (ops)
		f->ops = *ops;
	memcpy(f->secret, cfg->secret, FABRIC_SECRET_LEN);
	fabric_cluster_id(cfg->cluster, f->cluster_id);
	f->hb_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms : DEFAULT_HEARTBEAT_MS;
	f->dead_ms = cfg->dead_ms ? cfg->dead_ms : DEFAULT_DEAD_MS;
	f->hs_ms = cfg->handshake_ms ? cfg->handshake_ms : DEFAULT_HANDSHAKE_MS;
	f->busy_poll_us = cfg->busy_poll_us;
	f->addr_check = !cfg->no_addr_check;
	pthread_mutex_init(&f->lock, NULL);
	pthread_mutex_init(&f->log_lock, NULL);
	pthread_mutex_init(&f->watch_lock, NULL);
	for (unsigned i = 0; i < FABRIC_MAX_WATCH; i++) {
		f->watches[i].fd = -1;
		f->watches[i].tag = (struct ep_tag){ .kind = EP_WATCH, .obj = &f->watches[i] };
	}
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	/* Every wait has a deadline on the monotonic clock. */
	pthread_cond_init(&f->cond, &ca);
	for (unsigned i = 0; i < f->n; i++)
		peer_init(f, i, &ca);
	pthread_condattr_destroy(&ca);
	if (tcp_resolve(cfg->addr[f->self], true, &f->self_addr, err, errlen))
		goto fail;
	for (unsigned i = 0; i < f->n; i++) {
		if (i != f->self && cfg->addr[i] &&
		    fabric_set_peer_addr(f, i, cfg->addr[i], err, errlen))
			goto fail;
	}
	if (fabric_init_fds(f, err, errlen))
		goto fail;
	*out = f;
	return 0;
fail:
	fabric_free(f);
	return -1;
}

unsigned fabric_local_port(const struct fabric *f)
{
	return tcp_local_port(f->lfd);
}

int fabric_set_peer_addr(struct fabric *f, unsigned node, const char *addr, char *err,
			 size_t errlen)
{
	struct peer *p;
	char e[200];

	if (node >= f->n || node == f->self || f->running) {
		snprintf(err, errlen, "fabric: cannot set the address of node %u now", node);
		return -1;
	}
	p = &f->peers[node];
	if (tcp_resolve(addr, false, &p->addr, e, sizeof(e))) {
		snprintf(err, errlen, "fabric: node %u: %s", node, e);
		return -1;
	}
	snprintf(p->addr_str, sizeof(p->addr_str), "%s", addr);
	p->addr_set = true;
	return 0;
}

/* Names every node that is not up, and why. Under f->lock. */
static void describe_missing(struct fabric *f, unsigned timeout_ms, char *err, size_t errlen)
{
	size_t n = (size_t)snprintf(err, errlen, "fabric node %u: mesh incomplete after %u ms:",
				    f->self, timeout_ms);

	for (unsigned i = 0; i < f->n && n < errlen; i++) {
		struct peer *p = &f->peers[i];

		if (i == f->self || p->state == PEER_UP)
			continue;
		n += (size_t)snprintf(err + n, errlen - n, " node %u (%s): %s;", i,
				      p->addr_set ? p->addr_str : "no address", p->last_err);
	}
}

int fabric_start(struct fabric *f, unsigned timeout_ms, char *err, size_t errlen)
{
	struct timespec dl;
	uint64_t ns = now_ns() + (uint64_t)timeout_ms * 1000000u;
	bool down = false;
	int rc;

	for (unsigned i = 0; i < f->self; i++) {
		if (!f->peers[i].addr_set) {
			snprintf(err, errlen, "fabric node %u: no address for node %u", f->self, i);
			return -1;
		}
	}
	if (f->running) {
		snprintf(err, errlen, "fabric node %u: already started", f->self);
		return -1;
	}
	f->running = true;
	rc = pthread_create(&f->thread, NULL, loop_main, f);
	if (rc) {
		f->running = false;
		snprintf(err, errlen, "fabric: cannot start its thread: %s", strerror(rc));
		return -1;
	}
	dl.tv_sec = (time_t)(ns / 1000000000u);
	dl.tv_nsec = (long)(ns % 1000000000u);
	pthread_mutex_lock(&f->lock);
	for (;;) {
		for (unsigned i = 0; i < f->n; i++)
			down |= f->peers[i].state == PEER_DOWN;
		if (down || f->nr_up == f->n - 1)
			break;
		if (pthread_cond_timedwait(&f->cond, &f->lock, &dl) == ETIMEDOUT)
			break;
	}
	rc = f->nr_up == f->n - 1 && !down ? 0 : -1;
	if (rc)
		describe_missing(f, timeout_ms, err, errlen);
	pthread_mutex_unlock(&f->lock);
	return rc;
}

int fabric_watch_fd(struct fabric *f, int fd, uint32_t events, fabric_fd_cb cb, void *ctx)
{
	struct epoll_event ev = { .events = events };
	struct watch *w = NULL;
	bool locked = !on_loop_thread(f);
	int rc = 0;

	if (fd < 0 || !cb)
		return -EINVAL;
	if (locked)
		pthread_mutex_lock(&f->watch_lock);
	for (unsigned i = 0; i < FABRIC_MAX_WATCH; i++) {
		if (f->watches[i].fd == fd) {
			rc = -EEXIST;
			goto out;
		}
		if (!w && f->watches[i].fd < 0)
			w = &f->watches[i];
	}
	if (!w) {
		rc = -ENOSPC;
		goto out;
	}
	ev.data.ptr = &w->tag;
	if (epoll_ctl(f->epfd, EPOLL_CTL_ADD, fd, &ev)) {
		rc = -errno;
		goto out;
	}
	w->cb = cb;
	w->ctx = ctx;
	w->fd = fd;
out:
	if (locked)
		pthread_mutex_unlock(&f->watch_lock);
	return rc;
}

int fabric_unwatch_fd(struct fabric *f, int fd)
{
	bool locked = !on_loop_thread(f);
	int rc = -ENOENT;

	/* Taking the lock waits for a callback in progress on the receive thread. */
	if (locked)
		pthread_mutex_lock(&f->watch_lock);
	for (unsigned i = 0; i < FABRIC_MAX_WATCH; i++) {
		if (fd >= 0 && f->watches[i].fd == fd) {
			epoll_ctl(f->epfd, EPOLL_CTL_DEL, fd, NULL);
			f->watches[i].fd = -1;
			f->watches[i].cb = NULL;
			rc = 0;
		}
	}
	if (locked)
		pthread_mutex_unlock(&f->watch_lock);
	return rc;
}

bool fabric_peer_up(const struct fabric *f, unsigned node)
{
	return node < f->n && node != f->self && f->peers[node].state == PEER_UP;
}

void fabric_peer_stats(struct fabric *f, unsigned node, struct fabric_peer_stats *st)
{
	struct peer *p;

	memset(st, 0, sizeof(*st));
	if (node >= f->n || node == f->self)
		return;
	p = &f->peers[node];
	st->frames_tx = atomic_load(&p->frames_tx);
	st->bytes_tx = atomic_load(&p->bytes_tx);
	st->frames_rx = atomic_load(&p->frames_rx);
	st->bytes_rx = atomic_load(&p->bytes_rx);
	pthread_mutex_lock(&p->tx_lock);
	st->queued = p->q.len;
	pthread_mutex_unlock(&p->tx_lock);
}

/* What is still queued gets a short chance to leave (the BYE, mostly). */
static void drain_queues(struct fabric *f, unsigned ms)
{
	uint64_t deadline = now_ms() + ms;

	for (unsigned i = 0; i < f->n; i++) {
		struct peer *p = &f->peers[i];

		if (i == f->self)
			continue;
		pthread_mutex_lock(&p->tx_lock);
		while (p->fd >= 0 && p->q.len && !p->tx_broken && now_ms() < deadline) {
			struct pollfd pfd = { .fd = p->fd, .events = POLLOUT };

			if (poll(&pfd, 1, 10) > 0)
				tx_flush(p);
		}
		pthread_mutex_unlock(&p->tx_lock);
	}
}

void fabric_destroy(struct fabric *f)
{
	static const char bye[] = "closed by its owner";
	struct iovec v = { .iov_base = (void *)bye, .iov_len = sizeof(bye) - 1 };
	uint64_t one = 1;

	if (!f)
		return;
	if (f->running) {
		/* The thread first: peers hanging up on our BYE must not call us back. */
		f->stop = true;
		if (write(f->wakefd, &one, sizeof(one)) < 0)
			fabric_log(f, "cannot wake the receive thread: %s", strerror(errno));
		pthread_join(f->thread, NULL);
		f->running = false;
		for (unsigned i = 0; i < f->n; i++)
			if (i != f->self && f->peers[i].state == PEER_UP)
				xmit(f, &f->peers[i], FRAME_TYPE_BYE, 0, &v, 1, false);
		drain_queues(f, 200);
	}
	fabric_free(f);
}
