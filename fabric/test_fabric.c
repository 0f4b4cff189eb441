// SPDX-License-Identifier: MIT
/*
 * The fabric on loopback: four endpoints in one process forming a mesh,
 * messages all to all, bursts, pages, peers dying, and fake peers that
 * have the wrong secret, a stolen id, or send garbage.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "fabric/fabric.h"

#define MAXN 4
#define MAX_THREADS 4
#define T_DATA 0x300      /* checked sequence traffic */
#define T_ECHO 0x301      /* answered from inside on_frame */
#define T_ECHO_REPLY 0x302
#define T_PAGE 0x303
#define T_PLAIN 0x304     /* counted only */
#define T_STALL 0x305     /* the callback sleeps for 1.5 s */

static const uint8_t secret[FABRIC_SECRET_LEN] = "grappe test cluster secret 12345";
static const uint8_t wrong[FABRIC_SECRET_LEN] = "some other cluster's secret 9876";

struct node {
	struct fabric *f;
	unsigned id;
	/* receive side: touched by this node's receive thread only */
	uint32_t next[MAXN][MAX_THREADS];
	atomic_uint rx[MAXN];
	atomic_uint echo_replies;
	atomic_uint pages;
	atomic_uint errors;
	/* peers that went down */
	atomic_int down[MAXN];
	atomic_uint nr_down;
	char down_why[MAXN][256];
	enum fabric_down_reason down_reason[MAXN];
	uint64_t down_at[MAXN];
	/* log lines */
	pthread_mutex_t log_lock;
	char log[16384];
	size_t log_len;
};

static struct node nodes[MAXN];

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint8_t pattern(unsigned src, uint32_t thread, uint32_t counter, size_t k)
{
	return (uint8_t)(src * 31 + thread * 7 + counter + k);
}

static uint32_t next_of(struct node *n, unsigned src, unsigned th)
{
	return __atomic_load_n(&n->next[src][th], __ATOMIC_RELAXED);
}

static void check_data(struct node *n, unsigned src, const uint8_t *p, size_t len)
{
	uint32_t th, ctr;

	if (len < 8) {
		n->errors++;
		return;
	}
	memcpy(&th, p, 4);
	memcpy(&ctr, p + 4, 4);
	/* Per sender thread, per pair: no loss, no reordering. */
	if (th >= MAX_THREADS || ctr != n->next[src][th]) {
		fprintf(stderr, "node %u: from %u thread %u: got %u, expected %u\n", n->id, src, th,
			ctr, th < MAX_THREADS ? n->next[src][th] : 0);
		n->errors++;
		return;
	}
	/* Written here, read by the test thread: atomically, for TSan. */
	__atomic_store_n(&n->next[src][th], ctr + 1, __ATOMIC_RELAXED);
	for (size_t k = 8; k < len; k++) {
		if (p[k] != pattern(src, th, ctr, k)) {
			n->errors++;
			return;
		}
	}
}

static void on_frame(void *ctx, unsigned src, uint16_t type, uint64_t req_id,
		     const void *payload, size_t len)
{
	struct node *n = ctx;
	const uint8_t *p = payload;

	switch (type) {
	case T_DATA:
		check_data(n, src, p, len);
		break;
	case T_ECHO:
		/* Sending from the receive thread, inside the callback. */
		if (fabric_send(n->f, src, T_ECHO_REPLY, req_id, payload, len))
			n->errors++;
		break;
	case T_ECHO_REPLY:
		if (req_id != ((uint64_t)n->id << 32 | src) || len != 5 || memcmp(p, "echo!", 5))
			n->errors++;
		n->echo_replies++;
		break;
	case T_PAGE:
		if (len != 16 + 4096 || memcmp(p, "page header 16B.", 16))
			n->errors++;
		for (size_t k = 0; k < 4096; k++)
			if (p[16 + k] != (uint8_t)(k ^ req_id))
				n->errors++;
		n->pages++;
		break;
	case T_PLAIN:
		break;
	case T_STALL:
		usleep(1500 * 1000);
		break;
	default:
		n->errors++;
	}
	n->rx[src]++;
}

static void on_peer_down(void *ctx, unsigned peer, enum fabric_down_reason reason,
			 const char *why)
{
	struct node *n = ctx;

	n->down_reason[peer] = reason;

	snprintf(n->down_why[peer], sizeof(n->down_why[peer]), "%s", why);
	n->down_at[peer] = now_ms();
	/* Once per peer: a second call is an error. */
	if (n->down[peer]++)
		n->errors++;
	n->nr_down++;
}

static void on_log(void *ctx, const char *msg)
{
	struct node *n = ctx;
	size_t len = strlen(msg);

	pthread_mutex_lock(&n->log_lock);
	if (n->log_len + len + 2 < sizeof(n->log)) {
		memcpy(n->log + n->log_len, msg, len);
		n->log_len += len;
		n->log[n->log_len++] = '\n';
		n->log[n->log_len] = '\0';
	}
	pthread_mutex_unlock(&n->log_lock);
	if (getenv("FABRIC_TEST_VERBOSE"))
		fprintf(stderr, "%s\n", msg);
}

static bool log_has(struct node *n, const char *what)
{
	bool found;

	pthread_mutex_lock(&n->log_lock);
	found = strstr(n->log, what) != NULL;
	pthread_mutex_unlock(&n->log_lock);
	return found;
}

/* Waits up to ms for a condition checked every millisecond. */
#define WAIT_FOR(cond, ms) ({                                       \
	uint64_t _end = now_ms() + (ms);                            \
	while (!(cond) && now_ms() < _end)                          \
		usleep(1000);                                       \
	(cond);                                                     \
})

static struct fabric_config config(unsigned self, unsigned nr)
{
	struct fabric_config c = {
		.self = self,
		.nr_nodes = nr,
		.cluster = "test",
		.heartbeat_ms = 100,
		.dead_ms = 1000,
		.handshake_ms = 2000,
	};

	memcpy(c.secret, secret, sizeof(secret));
	c.addr[self] = "127.0.0.1:0";
	return c;
}

static void node_reset(struct node *n, unsigned id)
{
	pthread_mutex_destroy(&n->log_lock);
	memset(n, 0, sizeof(*n));
	n->id = id;
	pthread_mutex_init(&n->log_lock, NULL);
}

static struct fabric_ops ops_for(struct node *n)
{
	return (struct fabric_ops){
		.on_frame = on_frame, .on_peer_down = on_peer_down, .on_log = on_log, .ctx = n,
	};
}

/* Creates nr endpoints on ephemeral ports and tells each the others' ports. */
static unsigned dead_ms_of[MAXN];   /* per node, 0: config()'s */

static void mesh_create(unsigned nr, unsigned busy_poll_us)
{
	char err[512], addr[MAXN][32];

	for (unsigned i = 0; i < nr; i++) {
		struct fabric_config c = config(i, nr);
		struct fabric_ops ops;

		node_reset(&nodes[i], i);
		ops = ops_for(&nodes[i]);
		c.busy_poll_us = busy_poll_us;
		if (dead_ms_of[i])
			c.dead_ms = dead_ms_of[i];
		if (fabric_create(&c, &ops, &nodes[i].f, err, sizeof(err)))
			fail_msg("fabric_create: %s", err);
		snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%u", fabric_local_port(nodes[i].f));
	}
	for (unsigned i = 0; i < nr; i++)
		for (unsigned j = 0; j < nr; j++)
			if (i != j)
				assert_int_equal(fabric_set_peer_addr(nodes[i].f, j, addr[j], err,
								      sizeof(err)), 0);
}

struct start_arg {
	struct node *n;
	unsigned delay_ms;
	int rc;
	char err[1024];
};

static void *start_thread(void *arg)
{
	struct start_arg *a = arg;

	usleep(a->delay_ms * 1000);
	a->rc = fabric_start(a->n->f, 10000, a->err, sizeof(a->err));
	return NULL;
}

/* Starts every endpoint in its own thread, the i-th after delay[i] ms. */
static void mesh_start(unsigned nr, const unsigned *delay)
{
	struct start_arg a[MAXN];
	pthread_t t[MAXN];

	for (unsigned i = 0; i < nr; i++) {
		a[i] = (struct start_arg){ .n = &nodes[i], .delay_ms = delay ? delay[i] : 0 };
		pthread_create(&t[i], NULL, start_thread, &a[i]);
	}
	for (unsigned i = 0; i < nr; i++) {
		pthread_join(t[i], NULL);
		if (a[i].rc)
			fail_msg("fabric_start node %u: %s", i, a[i].err);
	}
	for (unsigned i = 0; i < nr; i++)
		for (unsigned j = 0; j < nr; j++)
			assert_int_equal(fabric_peer_up(nodes[i].f, j), i != j);
}

static void mesh_destroy(unsigned nr)
{
	for (unsigned i = 0; i < nr; i++) {
		fabric_destroy(nodes[i].f);
		nodes[i].f = NULL;
	}
}

static int send_data(struct fabric *f, unsigned self, unsigned dst, uint32_t th, uint32_t ctr,
		     size_t len)
{
	uint8_t buf[2048];

	memcpy(buf, &th, 4);
	memcpy(buf + 4, &ctr, 4);
	for (size_t k = 8; k < len; k++)
		buf[k] = pattern(self, th, ctr, k);
	return fabric_send(f, dst, T_DATA, ctr, buf, len);
}

/* Every node sends to every other node; replies come from inside on_frame. */
static void test_all_to_all(void **state)
{
	const unsigned nr = 4, per = 200;

	(void)state;
	mesh_create(nr, 0);
	mesh_start(nr, NULL);
	for (uint32_t c = 0; c < per; c++)
		for (unsigned i = 0; i < nr; i++)
			for (unsigned j = 0; j < nr; j++)
				if (i != j)
					assert_int_equal(send_data(nodes[i].f, i, j, 0, c,
								   8 + (c * 13) % 1500), 0);
	for (unsigned i = 0; i < nr; i++)
		for (unsigned j = 0; j < nr; j++)
			if (i != j)
				assert_int_equal(fabric_send(nodes[i].f, j, T_ECHO,
							     (uint64_t)i << 32 | j, "echo!", 5), 0);
	for (unsigned i = 0; i < nr; i++) {
		assert_true(WAIT_FOR(nodes[i].echo_replies == nr - 1, 5000));
		for (unsigned j = 0; j < nr; j++)
			if (i != j)
				assert_true(WAIT_FOR(next_of(&nodes[i], j, 0) == per, 5000));
		assert_int_equal(nodes[i].errors, 0);
		assert_int_equal(nodes[i].nr_down, 0);
	}
	mesh_destroy(nr);
}

/* Nodes that start in any order, seconds apart, still form the mesh. */
static void test_start_order(void **state)
{
	static const unsigned delay[] = { 600, 300, 0, 150 };

	(void)state;
	mesh_create(4, 0);
	mesh_start(4, delay);
	assert_int_equal(fabric_send(nodes[0].f, 3, T_ECHO, 3, "echo!", 5), 0);
	assert_true(WAIT_FOR(nodes[0].echo_replies == 1, 5000));
	mesh_destroy(4);
}

struct burst_arg {
	unsigned self, dst;
	uint32_t thread, count;
	int failures;
};

static void *burst_thread(void *arg)
{
	struct burst_arg *a = arg;

	for (uint32_t c = 0; c < a->count; c++)
		if (send_data(nodes[a->self].f, a->self, a->dst, a->thread, c, 8 + c % 120))
			a->failures++;
	return NULL;
}

/*
 * 100k messages per pair, from two threads per sender, every node sending
 * at the same time: nothing lost, nothing out of order.
 */
static void test_bursts(void **state)
{
	const unsigned nr = 4, threads = 2;
	const uint32_t per_thread = 50000;
	struct burst_arg a[MAXN][MAX_THREADS];
	pthread_t t[MAXN][MAX_THREADS];
	uint64_t t0;

	(void)state;
	mesh_create(nr, 0);
	mesh_start(nr, NULL);
	t0 = now_ms();
	for (unsigned i = 0; i < nr; i++) {
		for (unsigned k = 0; k < threads; k++) {
			a[i][k] = (struct burst_arg){
				.self = i, .dst = (i + 1) % nr, .thread = k, .count = per_thread,
			};
			pthread_create(&t[i][k], NULL, burst_thread, &a[i][k]);
		}
	}
	/* All joined before any assertion: a failure must not leave them running. */
	for (unsigned i = 0; i < nr; i++)
		for (unsigned k = 0; k < threads; k++)
			pthread_join(t[i][k], NULL);
	for (unsigned i = 0; i < nr; i++)
		for (unsigned k = 0; k < threads; k++)
			assert_int_equal(a[i][k].failures, 0);
	for (unsigned i = 0; i < nr; i++) {
		unsigned src = (i + nr - 1) % nr;

		for (unsigned k = 0; k < threads; k++)
			assert_true(WAIT_FOR(next_of(&nodes[i], src, k) == per_thread, 20000));
		assert_int_equal(nodes[i].errors, 0);
		assert_int_equal(nodes[i].nr_down, 0);
	}
	fprintf(stderr, "    %u x %u messages in %" PRIu64 " ms\n", nr, threads * per_thread,
		now_ms() - t0);
	mesh_destroy(nr);
}

/* A header and a 4 KiB page sent as two pieces arrive as one payload. */
static void test_sendv_page(void **state)
{
	static uint8_t page[4096];
	struct iovec v[2] = { { (void *)"page header 16B.", 16 }, { page, sizeof(page) } };
	struct fabric_peer_stats st;

	(void)state;
	mesh_create(2, 0);
	mesh_start(2, NULL);
	for (unsigned r = 0; r < 100; r++) {
		for (size_t k = 0; k < sizeof(page); k++)
			page[k] = (uint8_t)(k ^ r);
		assert_int_equal(fabric_sendv(nodes[1].f, 0, T_PAGE, r, v, 2), 0);
	}
	assert_true(WAIT_FOR(nodes[0].pages == 100, 5000));
	assert_int_equal(nodes[0].errors, 0);
	fabric_peer_stats(nodes[1].f, 0, &st);
	assert_true(st.frames_tx >= 100);
	assert_true(st.bytes_tx >= 100 * (FRAME_HDR_LEN + 16 + 4096));
	mesh_destroy(2);
}

static void test_send_errors(void **state)
{
	static uint8_t big[FRAME_MAX_PAYLOAD + 1];

	(void)state;
	mesh_create(2, 0);
	/* Not started: the peer is not up yet. */
	assert_int_equal(fabric_send(nodes[0].f, 1, T_DATA, 0, "x", 1), -ENOTCONN);
	mesh_start(2, NULL);
	assert_int_equal(fabric_send(nodes[0].f, 0, T_DATA, 0, "x", 1), -EINVAL);
	assert_int_equal(fabric_send(nodes[0].f, 2, T_DATA, 0, "x", 1), -EINVAL);
	assert_int_equal(fabric_send(nodes[0].f, 1, FRAME_TYPE_BYE, 0, "x", 1), -EINVAL);
	assert_int_equal(fabric_send(nodes[0].f, 1, T_DATA, 0, big, sizeof(big)), -EINVAL);
	assert_int_equal(fabric_send(nodes[0].f, 1, T_DATA, 0, big, sizeof(big) - 1), 0);
	mesh_destroy(2);
}

/* Ending one endpoint: every other one hears of it, once, and sends to it fail. */
static void test_destroy_one(void **state)
{
	const unsigned nr = 4;
	uint64_t t0;

	(void)state;
	mesh_create(nr, 0);
	mesh_start(nr, NULL);
	t0 = now_ms();
	fabric_destroy(nodes[2].f);
	nodes[2].f = NULL;
	for (unsigned i = 0; i < nr; i++) {
		if (i == 2)
			continue;
		assert_true(WAIT_FOR(nodes[i].down[2] == 1, 3000));
		assert_true(nodes[i].down_at[2] - t0 < 3000);
		assert_non_null(strstr(nodes[i].down_why[2], "node left: closed by its owner"));
		assert_int_equal(nodes[i].down_reason[2], FABRIC_PEER_LEFT);
		assert_int_equal(fabric_send(nodes[i].f, 2, T_DATA, 0, "x", 1), -EPIPE);
		assert_false(fabric_peer_up(nodes[i].f, 2));
	}
	/* The others go on. */
	assert_int_equal(fabric_send(nodes[0].f, 3, T_ECHO, 3, "echo!", 5), 0);
	assert_true(WAIT_FOR(nodes[0].echo_replies == 1, 3000));
	usleep(300 * 1000);
	for (unsigned i = 0; i < nr; i++)
		if (i != 2) {
			assert_int_equal(nodes[i].nr_down, 1);
			assert_int_equal(nodes[i].errors, 0);
		}
	mesh_destroy(nr);
}

/*
 * A callback that stalls the receive thread longer than dead_ms: the peer,
 * whose heartbeats wait in the socket, is not declared dead for it.
 */
static void test_slow_callback(void **state)
{
	(void)state;
	dead_ms_of[1] = 5000;           /* node 1 tolerates node 0's stall */
	mesh_create(2, 0);
	dead_ms_of[1] = 0;
	mesh_start(2, NULL);
	assert_int_equal(fabric_send(nodes[1].f, 0, T_STALL, 0, NULL, 0), 0);
	usleep(1700 * 1000);
	assert_int_equal(nodes[0].nr_down, 0);
	assert_int_equal(nodes[1].nr_down, 0);
	assert_int_equal(fabric_send(nodes[0].f, 1, T_ECHO, 0ull << 32 | 1, "echo!", 5), 0);
	assert_true(WAIT_FOR(nodes[0].echo_replies == 1, 3000));
	mesh_destroy(2);
}

/*
 * Both receive threads stall longer than dead_ms at once (a host that
 * starved every node): neither declares the other dead for a silence it
 * could not have heard.
 */
static void test_both_stall(void **state)
{
	(void)state;
	mesh_create(2, 0);
	mesh_start(2, NULL);
	assert_int_equal(fabric_send(nodes[1].f, 0, T_STALL, 0, NULL, 0), 0);
	assert_int_equal(fabric_send(nodes[0].f, 1, T_STALL, 0, NULL, 0), 0);
	usleep(2000 * 1000);
	assert_int_equal(nodes[0].nr_down, 0);
	assert_int_equal(nodes[1].nr_down, 0);
	assert_int_equal(fabric_send(nodes[0].f, 1, T_ECHO, 0ull << 32 | 1, "echo!", 5), 0);
	assert_true(WAIT_FOR(nodes[0].echo_replies == 1, 3000));
	mesh_destroy(2);
}

/* ---- fake peers: a raw socket driving the handshake by hand -------------- */

static int raw_connect(const char *from_ip, unsigned port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct sockaddr_in b = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	inet_pton(AF_INET, from_ip, &b.sin_addr);
	assert_int_equal(bind(fd, (struct sockaddr *)&b, sizeof(b)), 0);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* Reads with a timeout: >0 bytes, 0 on EOF, -1 on timeout or error. */
static ssize_t read_timeout(int fd, void *buf, size_t len, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (poll(&p, 1, ms) <= 0)
		return -1;
	return read(fd, buf, len);
}

/* Runs a handshake as node `self` over a blocking socket. */
static enum hs_status fake_handshake(int fd, struct handshake *hs, const uint8_t *key,
				     unsigned self, unsigned peer, unsigned nr)
{
	struct hs_params p = {
		.role = HS_INITIATOR, .secret = key, .self = self, .nr_nodes = nr,
		.peer_min = peer, .peer_max = peer, .now_ms = now_ms(), .timeout_ms = 3000,
	};
	enum hs_status st = HS_CONTINUE;

	fabric_cluster_id("test", p.cluster_id);
	assert_int_equal(hs_init(hs, &p), 0);
	while (st == HS_CONTINUE) {
		const uint8_t *out;
		uint8_t buf[256];
		size_t n = hs_output(hs, &out), used;
		ssize_t r;

		if (n) {
			assert_int_equal(write(fd, out, n), (ssize_t)n);
			hs_sent(hs, n);
		}
		r = read_timeout(fd, buf, sizeof(buf), 3000);
		if (r <= 0)
			return HS_FAILED;       /* refused: the other side hung up */
		st = hs_feed(hs, buf, (size_t)r, &used);
	}
	if (st == HS_DONE) {
		const uint8_t *out;
		size_t n = hs_output(hs, &out);

		if (n)
			assert_int_equal(write(fd, out, n), (ssize_t)n);
	}
	return st;
}

/* The other side closes the socket: read returns EOF (or RST). */
static bool closed_by_peer(int fd)
{
	uint8_t buf[256];
	ssize_t r;

	while ((r = read_timeout(fd, buf, sizeof(buf), 3000)) > 0)
		;
	return r == 0 || (r < 0 && errno == ECONNRESET);
}

/* After the mesh is up: a stranger without the secret, then a node stealing an id. */
static void test_fake_peers(void **state)
{
	const unsigned nr = 4;
	unsigned port;
	struct handshake hs;
	int fd;

	(void)state;
	mesh_create(nr, 0);
	mesh_start(nr, NULL);
	port = fabric_local_port(nodes[0].f);

	fd = raw_connect("127.0.0.1", port);
	assert_int_equal(fake_handshake(fd, &hs, wrong, 3, 0, nr), HS_FAILED);
	assert_true(closed_by_peer(fd));
	close(fd);
	assert_true(WAIT_FOR(log_has(&nodes[0], "failed to prove the cluster secret"), 2000));
	assert_true(log_has(&nodes[0], "refused connection from 127.0.0.1:"));

	/* The right secret, but node 3 is already here. */
	fd = raw_connect("127.0.0.1", port);
	fake_handshake(fd, &hs, secret, 3, 0, nr);
	assert_true(closed_by_peer(fd));
	close(fd);
	assert_true(WAIT_FOR(log_has(&nodes[0], "node 3 is already connected"), 2000));

	/* Garbage instead of a handshake. */
	fd = raw_connect("127.0.0.1", port);
	assert_int_equal(write(fd, "GET / HTTP/1.0\r\n\r\n" "0123456789012345678901234567890123456789"
			       "0123456789", 68), 68);
	assert_true(closed_by_peer(fd));
	close(fd);
	assert_true(WAIT_FOR(log_has(&nodes[0], "not a grappe fabric peer"), 2000));

	/* The mesh did not notice. */
	assert_int_equal(fabric_send(nodes[0].f, 3, T_ECHO, 3, "echo!", 5), 0);
	assert_true(WAIT_FOR(nodes[0].echo_replies == 1, 3000));
	for (unsigned i = 0; i < nr; i++) {
		assert_int_equal(nodes[i].nr_down, 0);
		assert_int_equal(nodes[i].errors, 0);
	}
	mesh_destroy(nr);
}

/*
 * A two-node cluster whose node 1 is played by the test: node 0 is real.
 * Returns the connected, authenticated socket and the session keys.
 */
static int fake_node1(struct handshake *hs, unsigned dead_ms)
{
	struct fabric_config c = config(0, 2);
	struct fabric_ops ops;
	char err[512];
	int fd;

	node_reset(&nodes[0], 0);
	ops = ops_for(&nodes[0]);
	c.addr[1] = "127.0.0.1:9";            /* never dialled: 1 > 0 dials us */
	c.dead_ms = dead_ms;
	assert_int_equal(fabric_create(&c, &ops, &nodes[0].f, err, sizeof(err)), 0);
	/* Start in the background: it returns when node 1 is up. */
	fd = raw_connect("127.0.0.1", fabric_local_port(nodes[0].f));
	{
		struct start_arg a = { .n = &nodes[0] };
		pthread_t t;

		pthread_create(&t, NULL, start_thread, &a);
		assert_int_equal(fake_handshake(fd, hs, secret, 1, 0, 2), HS_DONE);
		pthread_join(t, NULL);
		assert_int_equal(a.rc, 0);
	}
	return fd;
}

static size_t fake_frame(struct frame_tx *tx, uint8_t *buf, uint16_t type, const char *text)
{
	struct iovec v = { (void *)text, strlen(text) };

	assert_int_equal(frame_seal(tx, buf, type, 0, 0, &v, 1), 0);
	memcpy(buf + FRAME_HDR_LEN, text, v.iov_len);
	return FRAME_HDR_LEN + v.iov_len;
}

/* An authenticated peer that turns to garbage is cut off and reported. */
static void test_garbage_after_auth(void **state)
{
	static const char *const cases[][2] = {
		{ "garbage", "bad magic" },
		{ "bad mac", "bad MAC" },
		{ "replay", "replayed or out-of-order sequence number: 1, expected 2" },
		{ "wrong src", "wrong source node: 3" },
	};
	uint8_t buf[256];
	struct handshake hs;

	(void)state;
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct frame_tx tx;
		size_t n;
		int fd = fake_node1(&hs, 0);

		frame_tx_init(&tx, hs.tx_key, 1, 0);
		n = fake_frame(&tx, buf, T_PLAIN, "good");
		if (k == 0) {
			memcpy(buf + n, "this is not a frame at all, not even close........"
			       "..........", 60);
			n += 60;
		} else if (k == 1) {
			n += fake_frame(&tx, buf + n, T_PLAIN, "forged");
			buf[n - 1] ^= 1;
		} else if (k == 2) {
			memcpy(buf + n, buf, n);
			n *= 2;
		} else {
			tx.src = 3;
			n += fake_frame(&tx, buf + n, T_PLAIN, "x");
		}
		assert_int_equal(write(fd, buf, n), (ssize_t)n);
		assert_true(WAIT_FOR(nodes[0].down[1] == 1, 3000));
		/* The good first frame was delivered, the bad one was not. */
		assert_int_equal(nodes[0].rx[1], 1);
		assert_non_null(strstr(nodes[0].down_why[1], "protocol violation"));
		assert_non_null(strstr(nodes[0].down_why[1], cases[k][1]));
		assert_int_equal(nodes[0].down_reason[1], FABRIC_PEER_REFUSED);
		assert_true(log_has(&nodes[0], "refused a frame from node 1 (127.0.0.1:"));
		assert_int_equal(nodes[0].errors, 0);
		assert_true(closed_by_peer(fd));
		assert_int_equal(fabric_send(nodes[0].f, 1, T_DATA, 0, "x", 1), -EPIPE);
		close(fd);
		fabric_destroy(nodes[0].f);
	}
}

/* A peer that falls silent is declared dead; a live one gets heartbeats. */
static void test_silent_peer(void **state)
{
	struct frame_hdr h;
	const uint8_t *payload;
	struct frame_rx rx;
	struct handshake hs;
	uint8_t buf[4096];
	size_t len = 0, used;
	unsigned beats = 0;
	uint64_t t0;
	int fd;

	(void)state;
	fd = fake_node1(&hs, 600);
	frame_rx_init(&rx, hs.rx_key, 0, 1, 2);
	t0 = now_ms();
	/* Node 0 sends heartbeats every 100 ms to its silent peer. */
	while (now_ms() - t0 < 450) {
		ssize_t r = read_timeout(fd, buf + len, sizeof(buf) - len, 100);

		if (r > 0)
			len += (size_t)r;
		while (frame_decode(&rx, buf, len, &h, &payload, &used) == FRAME_OK) {
			assert_int_equal(h.type, FRAME_TYPE_HEARTBEAT);
			beats++;
			memmove(buf, buf + used, len - used);
			len -= used;
		}
	}
	assert_true(beats >= 3);
	assert_true(WAIT_FOR(nodes[0].down[1] == 1, 2000));
	assert_non_null(strstr(nodes[0].down_why[1], "no traffic for"));
	assert_int_equal(nodes[0].down_reason[1], FABRIC_PEER_LOST);
	assert_true(nodes[0].down_at[1] - t0 >= 500);
	assert_true(nodes[0].down_at[1] - t0 < 1500);
	close(fd);
	fabric_destroy(nodes[0].f);
}

/* A peer whose socket just closes (crash) is reported at once. */
static void test_peer_crash(void **state)
{
	struct handshake hs;
	uint64_t t0;
	int fd;

	(void)state;
	fd = fake_node1(&hs, 0);
	t0 = now_ms();
	close(fd);
	assert_true(WAIT_FOR(nodes[0].down[1] == 1, 3000));
	assert_true(nodes[0].down_at[1] - t0 < 500);
	assert_non_null(strstr(nodes[0].down_why[1], "connection closed by the peer"));
	assert_int_equal(nodes[0].down_reason[1], FABRIC_PEER_LOST);
	fabric_destroy(nodes[0].f);
}

struct beat_arg {
	int fd;
	struct frame_tx tx;
	atomic_bool stop;
};

/* Keeps a fake peer alive (heartbeats) while it reads nothing. */
static void *beat_thread(void *arg)
{
	struct beat_arg *a = arg;
	uint8_t hdr[FRAME_HDR_LEN];

	while (!a->stop) {
		frame_seal(&a->tx, hdr, FRAME_TYPE_HEARTBEAT, 0, 0, NULL, 0);
		if (write(a->fd, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr))
			break;
		usleep(50 * 1000);
	}
	return NULL;
}

/*
 * A peer that is alive but stops reading: the send queue fills, the sender
 * waits at most dead_ms, then gets an error and the peer is declared down.
 */
static void test_slow_reader(void **state)
{
	static uint8_t big[64 * 1024];
	struct beat_arg b = { 0 };
	struct handshake hs;
	pthread_t t;
	uint64_t t0, sent = 0;
	int rc = 0;

	(void)state;
	b.fd = fake_node1(&hs, 0);
	frame_tx_init(&b.tx, hs.tx_key, 1, 0);
	pthread_create(&t, NULL, beat_thread, &b);
	t0 = now_ms();
	while (rc == 0 && now_ms() - t0 < 10000) {
		rc = fabric_send(nodes[0].f, 1, T_PLAIN, 0, big, sizeof(big));
		sent += sizeof(big);
	}
	fprintf(stderr, "    %d after %" PRIu64 " KiB and %" PRIu64 " ms\n", rc, sent >> 10,
		now_ms() - t0);
	assert_int_equal(rc, -ETIMEDOUT);
	/* It waited dead_ms (2 s) for room, no less and not much more. */
	assert_true(now_ms() - t0 >= 1900);
	assert_true(now_ms() - t0 < 5000);
	assert_true(WAIT_FOR(nodes[0].down[1] == 1, 2000));
	assert_non_null(strstr(nodes[0].down_why[1], "peer stopped reading"));
	assert_non_null(strstr(nodes[0].down_why[1], "none taken for 2000 ms"));
	assert_int_equal(fabric_send(nodes[0].f, 1, T_PLAIN, 0, "x", 1), -EPIPE);
	b.stop = true;
	pthread_join(t, NULL);
	close(b.fd);
	fabric_destroy(nodes[0].f);
}

struct echo_arg {
	unsigned self, dst, count;
	int failures;
};

static void *echo_thread(void *arg)
{
	struct echo_arg *a = arg;

	for (unsigned c = 0; c < a->count; c++)
		if (fabric_send(nodes[a->self].f, a->dst, T_ECHO, (uint64_t)a->self << 32 | a->dst,
				"echo!", 5))
			a->failures++;
	return NULL;
}

/*
 * Both nodes flood each other with requests answered from inside
 * on_frame: the receive threads never wait on each other.
 */
static void test_echo_storm(void **state)
{
	const unsigned count = 50000;
	struct echo_arg a[2] = { { 0, 1, count, 0 }, { 1, 0, count, 0 } };
	pthread_t t[2];

	(void)state;
	mesh_create(2, 0);
	mesh_start(2, NULL);
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, echo_thread, &a[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 2; i++)
		assert_int_equal(a[i].failures, 0);
	for (int i = 0; i < 2; i++) {
		assert_true(WAIT_FOR(nodes[i].echo_replies == count, 10000));
		assert_int_equal(nodes[i].errors, 0);
		assert_int_equal(nodes[i].nr_down, 0);
	}
	mesh_destroy(2);
}

/* A node must connect from its configured address. */
static void test_wrong_source_address(void **state)
{
	struct fabric_config c = config(0, 2);
	struct fabric_ops ops;
	struct start_arg a;
	struct handshake hs;
	char err[512];
	pthread_t t;
	int fd;

	(void)state;
	node_reset(&nodes[0], 0);
	ops = ops_for(&nodes[0]);
	c.addr[1] = "127.0.0.2:7777";
	assert_int_equal(fabric_create(&c, &ops, &nodes[0].f, err, sizeof(err)), 0);
	a = (struct start_arg){ .n = &nodes[0] };
	pthread_create(&t, NULL, start_thread, &a);
	/* From 127.0.0.1, not 127.0.0.2: refused after the handshake. */
	fd = raw_connect("127.0.0.1", fabric_local_port(nodes[0].f));
	assert_int_not_equal(fake_handshake(fd, &hs, secret, 1, 0, 2), HS_DONE);
	assert_true(closed_by_peer(fd));
	close(fd);
	assert_true(WAIT_FOR(log_has(&nodes[0], "node 1 is configured at 127.0.0.2:7777, but "
					      "this connection comes from 127.0.0.1:"), 2000));
	assert_false(fabric_peer_up(nodes[0].f, 1));
	/* From 127.0.0.2: welcome. */
	fd = raw_connect("127.0.0.2", fabric_local_port(nodes[0].f));
	assert_int_equal(fake_handshake(fd, &hs, secret, 1, 0, 2), HS_DONE);
	pthread_join(t, NULL);
	assert_int_equal(a.rc, 0);
	assert_true(fabric_peer_up(nodes[0].f, 1));
	close(fd);
	fabric_destroy(nodes[0].f);
}

static unsigned free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	unsigned port;

	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &len);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* fabric_start names every node that did not come, and why. */
static void test_start_timeout(void **state)
{
	struct fabric_config c = config(1, 3);
	struct fabric_ops ops;
	char err[1024], addr[32];
	uint64_t t0;

	(void)state;
	node_reset(&nodes[1], 1);
	ops = ops_for(&nodes[1]);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", free_port());
	c.addr[0] = addr;
	c.addr[2] = "127.0.0.1:9";
	assert_int_equal(fabric_create(&c, &ops, &nodes[1].f, err, sizeof(err)), 0);
	t0 = now_ms();
	assert_int_equal(fabric_start(nodes[1].f, 700, err, sizeof(err)), -1);
	assert_true(now_ms() - t0 >= 690);
	assert_true(now_ms() - t0 < 2000);
	assert_non_null(strstr(err, "mesh incomplete after 700 ms"));
	assert_non_null(strstr(err, "node 0 (127.0.0.1:"));
	assert_non_null(strstr(err, "Connection refused"));
	assert_non_null(strstr(err, "node 2 (127.0.0.1:9): has not connected"));
	fabric_destroy(nodes[1].f);
}

static void test_config_errors(void **state)
{
	struct fabric_config c = config(0, 2);
	struct fabric *f;
	char err[512];

	(void)state;
	c.nr_nodes = 0;
	assert_int_equal(fabric_create(&c, NULL, &f, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "0 nodes"));
	c = config(0, 65);
	assert_int_equal(fabric_create(&c, NULL, &f, err, sizeof(err)), -1);
	c = config(0, 2);
	c.self = 2;
	assert_int_equal(fabric_create(&c, NULL, &f, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "out of range"));
	c = config(0, 2);
	c.addr[1] = "no-port-here";
	assert_int_equal(fabric_create(&c, NULL, &f, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "node 1: bad address 'no-port-here'"));
	c = config(0, 2);
	c.addr[1] = "127.0.0.1:0";
	assert_int_equal(fabric_create(&c, NULL, &f, err, sizeof(err)), -1);
	c = config(0, 2);
	c.addr[1] = "::1:7000";
	assert_int_equal(fabric_create(&c, NULL, &f, err, sizeof(err)), -1);
	c = config(0, 2);
	c.dead_ms = 150;
	assert_int_equal(fabric_create(&c, NULL, &f, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "dead_ms"));
	/* Node 1 dials node 0: it needs 0's address before it starts. */
	c = config(1, 2);
	assert_int_equal(fabric_create(&c, NULL, &f, err, sizeof(err)), 0);
	assert_int_equal(fabric_start(f, 100, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no address for node 0"));
	fabric_destroy(f);
	/* A one-node cluster is up at once. */
	c = config(0, 1);
	assert_int_equal(fabric_create(&c, NULL, &f, err, sizeof(err)), 0);
	assert_int_equal(fabric_start(f, 100, err, sizeof(err)), 0);
	fabric_destroy(f);
}

/* IPv6 loopback works the same way, when the host has it. */
static void test_ipv6(void **state)
{
	char err[512], addr[2][64];
	struct fabric_config c[2];
	struct fabric_ops ops[2];
	int probe = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };

	(void)state;
	if (probe < 0 || bind(probe, (struct sockaddr *)&a, sizeof(a))) {
		if (probe >= 0)
			close(probe);
		skip();
	}
	close(probe);
	for (unsigned i = 0; i < 2; i++) {
		c[i] = config(i, 2);
		c[i].addr[i] = "[::1]:0";
		node_reset(&nodes[i], i);
		ops[i] = ops_for(&nodes[i]);
		assert_int_equal(fabric_create(&c[i], &ops[i], &nodes[i].f, err, sizeof(err)), 0);
		snprintf(addr[i], sizeof(addr[i]), "[::1]:%u", fabric_local_port(nodes[i].f));
	}
	assert_int_equal(fabric_set_peer_addr(nodes[0].f, 1, addr[1], err, sizeof(err)), 0);
	assert_int_equal(fabric_set_peer_addr(nodes[1].f, 0, addr[0], err, sizeof(err)), 0);
	mesh_start(2, NULL);
	assert_int_equal(fabric_send(nodes[1].f, 0, T_ECHO, 1ull << 32 | 0, "echo!", 5), 0);
	assert_true(WAIT_FOR(nodes[1].echo_replies == 1, 3000));
	assert_int_equal(nodes[1].errors, 0);
	mesh_destroy(2);
}

struct watched {
	struct fabric *f;
	atomic_uint calls;
	uint64_t sum;
};

/* An eventfd watched by the receive thread; its callback sends a frame. */
static void on_eventfd(void *ctx, int fd, uint32_t events)
{
	struct watched *w = ctx;
	uint64_t v;

	if (!(events & EPOLLIN) || read(fd, &v, sizeof(v)) != sizeof(v))
		return;
	w->sum += v;
	w->calls++;
	fabric_send(w->f, 1, T_ECHO, 0ull << 32 | 1, "echo!", 5);
}

static void test_watch_fd(void **state)
{
	struct watched w = { 0 };
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), fds[FABRIC_MAX_WATCH + 1];
	uint64_t one = 1;

	(void)state;
	mesh_create(2, 0);
	w.f = nodes[0].f;
	assert_int_equal(fabric_watch_fd(nodes[0].f, efd, EPOLLIN, on_eventfd, &w), 0);
	assert_int_equal(fabric_watch_fd(nodes[0].f, efd, EPOLLIN, on_eventfd, &w), -EEXIST);
	mesh_start(2, NULL);
	assert_int_equal(write(efd, &one, sizeof(one)), sizeof(one));
	assert_true(WAIT_FOR(nodes[0].echo_replies == 1, 3000));
	assert_int_equal(w.calls, 1);
	assert_int_equal(fabric_unwatch_fd(nodes[0].f, efd), 0);
	assert_int_equal(fabric_unwatch_fd(nodes[0].f, efd), -ENOENT);
	assert_int_equal(write(efd, &one, sizeof(one)), sizeof(one));
	usleep(100 * 1000);
	assert_int_equal(w.calls, 1);
	/* A bounded table. */
	for (int i = 0; i <= FABRIC_MAX_WATCH; i++) {
		fds[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		assert_int_equal(fabric_watch_fd(nodes[0].f, fds[i], EPOLLIN, on_eventfd, &w),
				 i < FABRIC_MAX_WATCH ? 0 : -ENOSPC);
	}
	for (int i = 0; i <= FABRIC_MAX_WATCH; i++)
		close(fds[i]);
	close(efd);
	assert_int_equal(nodes[0].errors, 0);
	mesh_destroy(2);
}

/* An idle mesh sleeps: heartbeats only, no spinning. */
static void test_idle_cpu(void **state)
{
	struct timespec a, b;
	double ms;

	(void)state;
	mesh_create(4, 50);
	mesh_start(4, NULL);
	/* Some traffic first, so the busy-poll budget is armed. */
	assert_int_equal(fabric_send(nodes[0].f, 1, T_ECHO, 0ull << 32 | 1, "echo!", 5), 0);
	usleep(100 * 1000);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
	usleep(1000 * 1000);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
	ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
	fprintf(stderr, "    idle 4-node mesh: %.1f ms CPU per second\n", ms);
	assert_true(ms < 50);
	mesh_destroy(4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_to_all),
		cmocka_unit_test(test_start_order),
		cmocka_unit_test(test_bursts),
		cmocka_unit_test(test_sendv_page),
		cmocka_unit_test(test_send_errors),
		cmocka_unit_test(test_destroy_one),
		cmocka_unit_test(test_slow_callback),
		cmocka_unit_test(test_both_stall),
		cmocka_unit_test(test_fake_peers),
		cmocka_unit_test(test_garbage_after_auth),
		cmocka_unit_test(test_silent_peer),
		cmocka_unit_test(test_peer_crash),
		cmocka_unit_test(test_slow_reader),
		cmocka_unit_test(test_echo_storm),
		cmocka_unit_test(test_wrong_source_address),
		cmocka_unit_test(test_start_timeout),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_watch_fd),
		cmocka_unit_test(test_idle_cpu),
	};

	for (unsigned i = 0; i < MAXN; i++)
		pthread_mutex_init(&nodes[i].log_lock, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
