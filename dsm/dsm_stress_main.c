// SPDX-License-Identifier: MIT
/*
 * dsm-stress: N node processes (no KVM) share guest RAM through the DSM
 * engine over unix sockets, with a tiny cache of other cells' pages so
 * that pages are evicted and written back all the time. Their threads:
 *
 *  - pass messages around a ring: node i writes a data page, then a flag;
 *    node i+1 waits for the flag, then checks the data (a read returns the
 *    last write, across pages);
 *  - increment their own counters in one shared page (false sharing);
 *  - add to shared counters with __atomic_fetch_add (SWMR gives the RMW an
 *    exclusive M copy);
 *  - read and rewrite random pages under a spinlock kept in the page
 *    itself, with a checksum.
 *
 * At the end node 0 checks every total and checksum. Exits 0 when all is
 * right, 1 on a mismatch, 2 on a DSM or set-up failure, 3 on a hang.
 *
 *   dsm-stress [--nodes N] [--threads T] [--seconds S] [--pages P] [--cache C]
 *              [--spin US] [--seed X] [--ops MASK] [--no-rx-thread] [--hold US]
 *              [--hold-max US] [--turn US] [-v]
 *
 * --ops picks the workloads: 1 messages, 2 false sharing, 4 atomics, 8 pages (15: all).
 * --spin: the fault handler and the transport's receive thread poll that
 * long after activity. --no-rx-thread: the fault handler also receives.
 * --hold: hold_us (a fresh grant stays that long before it can go).
 * --hold-max: hold_max_us (pages from other nodes held together as bursts).
 * --turn: turn_us (the node whose turn it is keeps its burst to the turn's end).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dsm/dsm.h"
#include "dsm/dsm_sock.h"

#define PG DSM_PAGE_SIZE
#define WORDS (PG / 8)
#define NCTR 8

struct opts {
	unsigned nodes, threads, seconds, cache, spin_us, verbose, ops, no_rx_thread, hold_us,
		 hold_max_us, turn_us;
	uint64_t pages, seed;
};

/* Guest RAM layout, in pages. */
enum {
	P_CTRL = 0,      /* barriers */
	P_FS,            /* false sharing: one counter per thread of every node */
	P_AT,            /* atomic counters */
	P_TALLY,         /* what each node added to the atomic counters */
	P_MP,            /* 2 per node: data, flag */
};

struct ctrl {
	uint64_t start, done, verified;
};

struct node {
	struct opts o;
	unsigned id;
	struct dsm_node *dsm;
	uint8_t *mem;
	uint64_t rw_first, rw_count;
	uint64_t deadline;
	_Atomic unsigned fatal;
	_Atomic unsigned bad;
	_Atomic uint64_t ops_mp, ops_fs, ops_at, ops_rw;
	uint64_t added[NCTR];
	pthread_mutex_t lock;
};

struct worker {
	struct node *n;
	unsigned tid;
	uint64_t rnd;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t *page(struct node *n, uint64_t p)
{
	return (uint64_t *)(n->mem + p * PG);
}

static void bad(struct node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bad(struct node *n, const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&n->bad, 1) > 5)
		return;
	fprintf(stderr, "node %u: MISMATCH: ", n->id);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static bool over(struct node *n)
{
	return now_ns() > n->deadline || atomic_load(&n->fatal);
}

/* ---- message passing around the ring ---- */

static uint64_t pattern(unsigned from, uint64_t k, unsigned w)
{
	return (k << 32) ^ ((uint64_t)from << 24) ^ w ^ 0x5a5a5a5aULL;
}

/* Flag page: word 0 = last round produced, word 8 = last round consumed. */
static void *mp_main(void *arg)
{
	struct node *n = ((struct worker *)arg)->n;
	unsigned prev = (n->id + n->o.nodes - 1) % n->o.nodes;
	volatile uint64_t *mydata = page(n, P_MP + 2 * n->id), *myflag = page(n, P_MP + 2 * n->id + 1);
	volatile uint64_t *indata = page(n, P_MP + 2 * prev), *inflag = page(n, P_MP + 2 * prev + 1);
	uint64_t produced = 0, consumed = 0;

	while (!over(n)) {
		bool did = false;

		/* produce round k once the consumer has acked k - 1 */
		if (__atomic_load_n(&myflag[8], __ATOMIC_ACQUIRE) == produced) {
			produced++;
			for (unsigned w = 0; w < WORDS; w++)
				mydata[w] = pattern(n->id, produced, w);
			__atomic_store_n(&myflag[0], produced, __ATOMIC_RELEASE);
			did = true;
		}
		if (__atomic_load_n(&inflag[0], __ATOMIC_ACQUIRE) > consumed) {
			consumed++;
			for (unsigned w = 0; w < WORDS; w++)
				if (indata[w] != pattern(prev, consumed, w)) {
					bad(n, "round %llu from node %u: word %u is %#llx",
					    (unsigned long long)consumed, prev, w,
					    (unsigned long long)indata[w]);
					break;
				}
			__atomic_store_n(&inflag[8], consumed, __ATOMIC_RELEASE);
			atomic_fetch_add(&n->ops_mp, 1);
			did = true;
		}
		if (!did)
			usleep(100);
	}
	return NULL;
}

/* ---- random pages under an in-page spinlock ---- */

/*
 * Word 0 lock, 1 sequence, 2 checksum, 3.. data. A page never written
 * (sequence 0) is all zero, checksum included.
 */
static uint64_t checksum(volatile uint64_t *pg)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ pg[1];

	if (!pg[1]) {
		for (unsigned w = 3; w < WORDS; w++)
			if (pg[w])
				return ~0ULL;
		return 0;
	}
	for (unsigned w = 3; w < WORDS; w++)
		h = (h ^ pg[w]) * 0x100000001b3ULL;
	return h;
}

static bool rw_lock(struct node *n, volatile uint64_t *pg, uint64_t me, uint64_t *rnd)
{
	uint64_t zero = 0;

	while (!__atomic_compare_exchange_n(&pg[0], &zero, me, false, __ATOMIC_ACQUIRE,
					    __ATOMIC_RELAXED)) {
		zero = 0;
		if (over(n))
			return false;
		usleep(20 + xorshift(rnd) % 200);
	}
	return true;
}

static void rw_op(struct worker *wk)
{
	struct node *n = wk->n;
	uint64_t p = n->rw_first + xorshift(&wk->rnd) % n->rw_count;
	volatile uint64_t *pg = page(n, p);
	uint64_t me = ((uint64_t)n->id << 16) | (wk->tid + 1);

	if (!rw_lock(n, pg, me, &wk->rnd))
		return;
	if (pg[2] != checksum(pg))
		bad(n, "page %llu: checksum", (unsigned long long)p);
	if (xorshift(&wk->rnd) & 1) {
		uint64_t s = xorshift(&wk->rnd);

		pg[1]++;
		for (unsigned w = 3; w < WORDS; w += 1 + (unsigned)(s & 7))
			pg[w] = xorshift(&s);
		pg[2] = checksum(pg);
	}
	if (pg[0] != me)
		bad(n, "page %llu: lock stolen", (unsigned long long)p);
	__atomic_store_n(&pg[0], 0, __ATOMIC_RELEASE);
	atomic_fetch_add(&n->ops_rw, 1);
}

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	struct node *n = wk->n;
	volatile uint64_t *fs = page(n, P_FS) + n->id * n->o.threads + wk->tid;
	uint64_t *at = page(n, P_AT), mine = 0, added[NCTR] = { 0 };

	while (!over(n)) {
		unsigned what = (unsigned)(xorshift(&wk->rnd) % 4);

		if (!(n->o.ops & (what == 0 ? 2 : what == 1 ? 4 : 8))) {
			if (!(n->o.ops & 14))
				break;
			continue;
		}

		if (what == 0) {
			(*fs)++;
			mine++;
			atomic_fetch_add(&n->ops_fs, 1);
		} else if (what == 1) {
			unsigned k = (unsigned)(xorshift(&wk->rnd) % NCTR);

			__atomic_fetch_add(&at[k], 1, __ATOMIC_SEQ_CST);
			added[k]++;
			atomic_fetch_add(&n->ops_at, 1);
		} else {
			rw_op(wk);
		}
	}
	if (*fs != mine)
		bad(n, "thread %u: own counter %llu, expected %llu", wk->tid,
		    (unsigned long long)*fs, (unsigned long long)mine);
	pthread_mutex_lock(&n->lock);
	for (unsigned k = 0; k < NCTR; k++)
		n->added[k] += added[k];
	pthread_mutex_unlock(&n->lock);
	return NULL;
}

/* ---- barriers in guest memory ---- */

static bool barrier(struct node *n, uint64_t *word, unsigned timeout_s)
{
	uint64_t end = now_ns() + (uint64_t)timeout_s * 1000000000ull;

	__atomic_fetch_add(word, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(word, __ATOMIC_ACQUIRE) < n->o.nodes) {
		if (now_ns() > end || atomic_load(&n->fatal))
			return false;
		usleep(500);
	}
	return true;
}

/* Node 0: every total and checksum. */
static void verify(struct node *n)
{
	uint64_t *at = page(n, P_AT), *tally = page(n, P_TALLY);

	for (unsigned k = 0; k < NCTR; k++) {
		uint64_t sum = 0;

		for (unsigned i = 0; i < n->o.nodes; i++)
			sum += tally[i * NCTR + k];
		if (sum != at[k])
			bad(n, "atomic counter %u is %llu, nodes added %llu", k,
			    (unsigned long long)at[k], (unsigned long long)sum);
	}
	for (uint64_t p = n->rw_first; p < n->rw_first + n->rw_count; p++) {
		volatile uint64_t *pg = page(n, p);

		if (pg[0] || pg[2] != checksum(pg))
			bad(n, "page %llu: lock %#llx, checksum after the run", (unsigned long long)p,
			    (unsigned long long)pg[0]);
	}
}

static void on_fatal(void *ctx, const char *msg)
{
	struct node *n = ctx;

	fprintf(stderr, "node %u: DSM fatal: %s\n", n->id, msg);
	atomic_store(&n->fatal, 1);
}

static int run_threads(struct node *n)
{
	unsigned nt = n->o.threads;
	struct worker *w = calloc(nt + 1, sizeof(*w));
	pthread_t *t = calloc(nt + 1, sizeof(*t));

	if (!w || !t)
		return -1;
	for (unsigned i = 0; i <= nt; i++) {
		w[i] = (struct worker){ n, i, n->o.seed * 7919 + n->id * 131 + i + 1 };
		if (i < nt || (n->o.ops & 1))
			pthread_create(&t[i], NULL, i == nt ? mp_main : worker_main, &w[i]);
		else
			t[i] = 0;
	}
	for (unsigned i = 0; i <= nt; i++)
		if (t[i])
			pthread_join(t[i], NULL);
	free(w);
	free(t);
	return 0;
}

static void report(struct node *n)
{
	struct dsm_stats st;

	dsm_node_stats(n->dsm, &st);
	printf("node %u: ops mp %llu fs %llu at %llu rw %llu | faults r %llu w %llu up %llu "
	       "zl %llu zr %llu loc %llu | msgs %llu/%llu pages %llu/%llu | evict s %llu m %llu "
	       "cache max %llu | inv %llu%s\n",
	       n->id, (unsigned long long)n->ops_mp, (unsigned long long)n->ops_fs,
	       (unsigned long long)n->ops_at, (unsigned long long)n->ops_rw,
	       (unsigned long long)st.fault_read_miss, (unsigned long long)st.fault_write_miss,
	       (unsigned long long)st.fault_upgrade, (unsigned long long)st.fault_zero_local,
	       (unsigned long long)st.fault_zero_remote, (unsigned long long)st.fault_local,
	       (unsigned long long)st.msgs_tx, (unsigned long long)st.msgs_rx,
	       (unsigned long long)st.pages_tx, (unsigned long long)st.pages_rx,
	       (unsigned long long)st.evict_s, (unsigned long long)st.evict_m,
	       (unsigned long long)st.cache_max, (unsigned long long)st.inv_sent,
	       atomic_load(&n->bad) ? " MISMATCH" : "");
	if (n->o.verbose) {
		char buf[2048];

		dsm_stats_format(&st, buf, sizeof(buf));
		printf("%s", buf);
	}
	fflush(stdout);
}

/*
 * Past the last barrier a node may still have to see it complete, through
 * pages homed elsewhere: nobody leaves before all have said so to the parent.
 */
static void leave_together(int up, int down)
{
	char c = 1;
	struct pollfd p = { .fd = down, .events = POLLIN };

	if (write(up, &c, 1) != 1 || poll(&p, 1, 60000) != 1 || read(down, &c, 1) != 1)
		fprintf(stderr, "dsm-stress: no word from the parent\n");
}

static int node_main(const struct opts *o, unsigned id, const int *fds, int up, int down)
{
	struct dsm_range homes[DSM_MAX_NODES];
	struct node n = { .o = *o, .id = id };
	struct dsm_sock *sock;
	struct dsm_transport_ops tx;
	struct dsm_config cfg;
	struct ctrl *ctrl;
	char err[256];
	int rc = 0;

	pthread_mutex_init(&n.lock, NULL);
	for (unsigned i = 0; i < o->nodes; i++)
		homes[i] = (struct dsm_range){ o->pages * i / o->nodes * PG,
					       o->pages * (i + 1) / o->nodes * PG, i };
	if (dsm_sock_create(id, o->nodes, fds, o->spin_us, &sock))
		return 2;
	tx = dsm_sock_ops(sock);
	cfg = (struct dsm_config){ .self = id, .nr_nodes = o->nodes, .size = o->pages * PG,
				   .homes = homes, .nr_homes = o->nodes, .cache_pages = o->cache,
				   .spin_us = o->spin_us, .request_timeout_ms = 20000,
				   .hold_us = o->hold_us, .hold_max_us = o->hold_max_us,
				   .turn_us = o->turn_us,
				   .on_fatal = on_fatal, .cb_ctx = &n };
	if (dsm_node_create(&cfg, &tx, &n.dsm, err, sizeof(err))) {
		fprintf(stderr, "node %u: %s\n", id, err);
		return 2;
	}
	dsm_sock_attach(sock, n.dsm);
	if (dsm_sock_start(sock, !o->no_rx_thread) || dsm_node_start(n.dsm, err, sizeof(err))) {
		fprintf(stderr, "node %u: start: %s\n", id, err);
		return 2;
	}
	n.mem = dsm_node_mem(n.dsm);
	n.rw_first = P_MP + 2 * o->nodes;
	n.rw_count = o->pages - n.rw_first;
	ctrl = (struct ctrl *)page(&n, P_CTRL);
	if (!barrier(&n, &ctrl->start, 30)) {
		fprintf(stderr, "node %u: start barrier timed out\n", id);
		return 3;
	}
	n.deadline = now_ns() + (uint64_t)o->seconds * 1000000000ull;
	run_threads(&n);
	for (unsigned k = 0; k < NCTR; k++)
		page(&n, P_TALLY)[id * NCTR + k] = n.added[k];
	if (!barrier(&n, &ctrl->done, 60)) {
		fprintf(stderr, "node %u: end barrier timed out\n", id);
		rc = 3;
	}
	if (!rc && id == 0)
		verify(&n);
	if (!rc && !barrier(&n, &ctrl->verified, 60)) {
		fprintf(stderr, "node %u: last barrier timed out\n", id);
		rc = 3;
	}
	report(&n);
	if (!rc)
		rc = atomic_load(&n.fatal) ? 2 : atomic_load(&n.bad) ? 1 : 0;
	/*
	 * Everyone is past the last barrier: nobody needs this node's pages.
	 * Stop coherence everywhere before any socket closes, so that a
	 * closing peer is not taken for a failure.
	 */
	leave_together(up, down);
	dsm_node_stop(n.dsm);
	leave_together(up, down);
	dsm_sock_destroy(sock);
	dsm_node_destroy(n.dsm);
	return rc;
}

static void usage(void)
{
	fprintf(stderr, "usage: dsm-stress [--nodes N] [--threads T] [--seconds S] [--pages P] "
			"[--cache C] [--spin US] [--seed X] [--ops MASK] [--no-rx-thread] [--hold US] [--hold-max US] [--turn US] [-v]\n");
	exit(2);
}

static void parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "nodes", 1, NULL, 'n' }, { "threads", 1, NULL, 't' },
		{ "seconds", 1, NULL, 's' }, { "pages", 1, NULL, 'p' },
		{ "cache", 1, NULL, 'c' },   { "spin", 1, NULL, 'S' },
		{ "seed", 1, NULL, 'r' },    { "verbose", 0, NULL, 'v' },
		{ "ops", 1, NULL, 'o' },     { "no-rx-thread", 0, NULL, 'R' },
		{ "hold", 1, NULL, 'H' },  { "hold-max", 1, NULL, 'M' },
		{ "turn", 1, NULL, 'T' },
		{ 0 },
	};
	int c;

	*o = (struct opts){ .nodes = 3, .threads = 2, .seconds = 5, .cache = 8, .pages = 128,
			    .seed = 1, .ops = 15 };
	while ((c = getopt_long(argc, argv, "v", lo, NULL)) != -1) {
		switch (c) {
		case 'n': o->nodes = (unsigned)atoi(optarg); break;
		case 't': o->threads = (unsigned)atoi(optarg); break;
		case 's': o->seconds = (unsigned)atoi(optarg); break;
		case 'p': o->pages = strtoull(optarg, NULL, 0); break;
		case 'c': o->cache = (unsigned)atoi(optarg); break;
		case 'S': o->spin_us = (unsigned)atoi(optarg); break;
		case 'r': o->seed = strtoull(optarg, NULL, 0); break;
		case 'v': o->verbose = 1; break;
		case 'o': o->ops = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'R': o->no_rx_thread = 1; break;
		case 'H': o->hold_us = (unsigned)atoi(optarg); break;
		case 'M': o->hold_max_us = (unsigned)atoi(optarg); break;
		case 'T': o->turn_us = (unsigned)atoi(optarg); break;
		default: usage();
		}
	}
	if (o->nodes < 2 || o->nodes > 8 || !o->threads || o->threads > 16 ||
	    o->pages < P_MP + 2 * o->nodes + 4 || o->pages > (1u << 20))
		usage();
}

int main(int argc, char **argv)
{
	struct opts o;
	int fds[64], rc = 0, st, up[2], down[8][2];
	unsigned arrived = 0;
	pid_t pid[8];
	uint64_t end;

	parse(argc, argv, &o);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (unsigned i = 0; i < o.nodes; i++)
		if (pipe(down[i]))
			return 2;
	if (pipe(up) || dsm_sock_pairs(o.nodes, fds)) {
		perror("socketpair");
		return 2;
	}
	printf("dsm-stress: %u nodes x %u threads, %llu pages, cache %u, spin %u us, hold %u-%u us, "
	       "turn %u us, %s, %u s\n", o.nodes, o.threads, (unsigned long long)o.pages, o.cache,
	       o.spin_us, o.hold_us, o.hold_max_us, o.turn_us, o.no_rx_thread ? "handler receives" : "receive thread", o.seconds);
	for (unsigned i = 0; i < o.nodes; i++) {
		pid[i] = fork();
		if (pid[i] < 0) {
			perror("fork");
			return 2;
		}
		if (pid[i] == 0) {
			for (unsigned j = 0; j < o.nodes * o.nodes; j++)
				if (j / o.nodes != i && fds[j] >= 0)
					close(fds[j]);
			close(up[0]);
			_exit(node_main(&o, i, fds + i * o.nodes, up[1], down[i][0]));
		}
	}
	for (unsigned j = 0; j < o.nodes * o.nodes; j++)
		if (fds[j] >= 0)
			close(fds[j]);
	close(up[1]);
	for (unsigned i = 0; i < o.nodes; i++)
		close(down[i][0]);
	fcntl(up[0], F_SETFL, O_NONBLOCK);
	/* a bounded run: a node that hangs is a failure, not a wait */
	end = now_ns() + (uint64_t)(o.seconds + 120) * 1000000000ull;
	for (unsigned left = o.nodes; left;) {
		pid_t p = waitpid(-1, &st, WNOHANG);
		char c;

		/* two rounds: all done, then all stopped */
		while (read(up[0], &c, 1) == 1)
			if (++arrived % o.nodes == 0)
				for (unsigned i = 0; i < o.nodes; i++)
					if (write(down[i][1], &c, 1) != 1)
						perror("dsm-stress: pipe");

		if (p > 0) {
			int code = WIFEXITED(st) ? WEXITSTATUS(st) : 3;

			if (code > rc)
				rc = code;
			left--;
			continue;
		}
		if (now_ns() > end) {
			fprintf(stderr, "dsm-stress: nodes hang, killing them\n");
			for (unsigned i = 0; i < o.nodes; i++)
				kill(pid[i], SIGKILL);
			rc = 3;
			end = UINT64_MAX;
		}
		usleep(20000);
	}
	printf("dsm-stress: %s\n", rc == 0 ? "OK" : rc == 1 ? "MISMATCH" : rc == 2 ? "FAILED" : "HANG");
	return rc;
}
