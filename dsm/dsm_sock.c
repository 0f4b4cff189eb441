// SPDX-License-Identifier: MIT
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "dsm/dsm_sock.h"

struct dsm_sock {
	unsigned self, nr;
	int fds[DSM_MAX_NODES];
	bool down[DSM_MAX_NODES];
	pthread_mutex_t tx_lock[DSM_MAX_NODES];
	pthread_mutex_t rx_lock;          /* one reader at a time: keeps each pair in order */
	struct dsm_node *node;
	int ep, stop_fd;
	pthread_t thread;
	bool running;
	_Atomic bool stop;
	uint64_t spin_ns;
	uint8_t buf[DSM_MSG_MAX_LEN + 1] __attribute__((aligned(64)));
};

int dsm_sock_pairs(unsigned nr, int *fds)
{
	int sv[2];

	for (unsigned i = 0; i < nr * nr; i++)
		fds[i] = -1;
	for (unsigned i = 0; i < nr; i++)
		for (unsigned j = i + 1; j < nr; j++) {
			int sz = 4 << 20;

			if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
				return -errno;
			for (int k = 0; k < 2; k++) {
				setsockopt(sv[k], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
				setsockopt(sv[k], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
			}
			fds[i * nr + j] = sv[0];
			fds[j * nr + i] = sv[1];
		}
	return 0;
}

int dsm_sock_create(unsigned self, unsigned nr_nodes, const int *fds, unsigned spin_us,
		    struct dsm_sock **out)
{
	struct dsm_sock *t;

	if (!nr_nodes || nr_nodes > DSM_MAX_NODES || self >= nr_nodes)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->self = self;
	t->nr = nr_nodes;
	t->spin_ns = (uint64_t)spin_us * 1000;
	t->ep = t->stop_fd = -1;
	pthread_mutex_init(&t->rx_lock, NULL);
	for (unsigned i = 0; i < nr_nodes; i++) {
		t->fds[i] = i == self ? -1 : fds[i];
		pthread_mutex_init(&t->tx_lock[i], NULL);
	}
	t->ep = epoll_create1(EPOLL_CLOEXEC);
	t->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->ep < 0 || t->stop_fd < 0) {
		dsm_sock_destroy(t);
		return -errno;
	}
	*out = t;
	return 0;
}

void dsm_sock_attach(struct dsm_sock *t, struct dsm_node *n)
{
	t->node = n;
}

static int sock_send(void *ctx, unsigned dst, const struct dsm_msg *msg, const void *page)
{
	struct dsm_sock *t = ctx;
	uint8_t hdr[DSM_MSG_HDR_LEN];
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)page, DSM_PAGE_SIZE } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = page ? 2 : 1 };
	ssize_t r;

	if (dst >= t->nr || t->fds[dst] < 0 || dsm_msg_encode(msg, hdr, sizeof(hdr)) < 0)
		return -EINVAL;
	pthread_mutex_lock(&t->tx_lock[dst]);
	do
		r = sendmsg(t->fds[dst], &mh, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	pthread_mutex_unlock(&t->tx_lock[dst]);
	return r < 0 ? -errno : 0;
}

static void peer_down(struct dsm_sock *t, unsigned peer, const char *why)
{
	if (t->down[peer])
		return;
	t->down[peer] = true;
	epoll_ctl(t->ep, EPOLL_CTL_DEL, t->fds[peer], NULL);
	if (t->node)
		dsm_peer_down(t->node, peer, why);
}

/* Delivers what is waiting on one socket; with rx_lock held. */
static int drain(struct dsm_sock *t, unsigned peer)
{
	struct iovec iov = { t->buf, sizeof(t->buf) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	const uint8_t *page;
	struct dsm_msg m;
	const char *why;
	int count = 0;
	ssize_t r;

	while (!t->down[peer]) {
		r = recvmsg(t->fds[peer], &mh, MSG_DONTWAIT);
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			peer_down(t, peer, strerror(errno));
			break;
		}
		if (r == 0) {
			peer_down(t, peer, "connection closed");
			break;
		}
		if ((mh.msg_flags & MSG_TRUNC) ||
		    dsm_msg_decode(t->buf, (size_t)r, &m, &page, &why)) {
			peer_down(t, peer, (mh.msg_flags & MSG_TRUNC) ? "oversized packet" : why);
			break;
		}
		if (t->node)
			dsm_receive(t->node, peer, &m, page);
		count++;
	}
	return count;
}

static int drain_all(struct dsm_sock *t)
{
	int count = 0;

	for (unsigned i = 0; i < t->nr; i++)
		if (t->fds[i] >= 0)
			count += drain(t, i);
	return count;
}

static int sock_poll(void *ctx)
{
	struct dsm_sock *t = ctx;
	int count;

	if (pthread_mutex_trylock(&t->rx_lock))
		return 0;
	count = drain_all(t);
	pthread_mutex_unlock(&t->rx_lock);
	return count;
}

/* Only without a receive thread: two sleepers on one descriptor would both wake. */
static int sock_poll_fd(void *ctx)
{
	struct dsm_sock *t = ctx;

	return t->running ? -1 : t->ep;
}

struct dsm_transport_ops dsm_sock_ops(struct dsm_sock *t)
{
	return (struct dsm_transport_ops){ .send = sock_send, .poll = sock_poll,
					   .poll_fd = sock_poll_fd, .ctx = t };
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *rx_main(void *arg)
{
	struct dsm_sock *t = arg;
	struct epoll_event ev[DSM_MAX_NODES + 1];
	uint64_t last = 0;

	while (!atomic_load(&t->stop)) {
		int got;

		pthread_mutex_lock(&t->rx_lock);
		got = drain_all(t);
		pthread_mutex_unlock(&t->rx_lock);
		if (got)
			last = now_ns();
		if (t->spin_ns && now_ns() - last < t->spin_ns) {
			sched_yield();
			continue;
		}
		epoll_wait(t->ep, ev, DSM_MAX_NODES + 1, 200);
	}
	return NULL;
}

int dsm_sock_start(struct dsm_sock *t, bool rx_thread)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = DSM_MAX_NODES };

	if (epoll_ctl(t->ep, EPOLL_CTL_ADD, t->stop_fd, &ev))
		return -errno;
	for (unsigned i = 0; i < t->nr; i++) {
		if (t->fds[i] < 0)
			continue;
		ev.data.u32 = i;
		if (epoll_ctl(t->ep, EPOLL_CTL_ADD, t->fds[i], &ev))
			return -errno;
	}
	if (!rx_thread)
		return 0;
	if (pthread_create(&t->thread, NULL, rx_main, t))
		return -EAGAIN;
	t->running = true;
	return 0;
}

void dsm_sock_destroy(struct dsm_sock *t)
{
	uint64_t one = 1;

	if (!t)
		return;
	atomic_store(&t->stop, true);
	if (t->running) {
		if (write(t->stop_fd, &one, sizeof(one)) < 0)
			perror("dsm_sock: eventfd");
		pthread_join(t->thread, NULL);
	}
	for (unsigned i = 0; i < t->nr; i++) {
		if (t->fds[i] >= 0)
			close(t->fds[i]);
		pthread_mutex_destroy(&t->tx_lock[i]);
	}
	if (t->ep >= 0)
		close(t->ep);
	if (t->stop_fd >= 0)
		close(t->stop_fd);
	pthread_mutex_destroy(&t->rx_lock);
	free(t);
}
