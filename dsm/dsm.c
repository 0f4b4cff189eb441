// SPDX-License-Identifier: MIT
/*
 * The DSM node: configuration, the userfaultfd engine (page operations
 * and fault handler threads), failure, statistics. The protocol itself is
 * in dsm/dsm_proto.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "dsm/dsm_internal.h"

/* The source of zero pages installed with UFFDIO_COPY (read-only data, shared). */
static const uint8_t zero_page[DSM_PAGE_SIZE] __attribute__((aligned(DSM_PAGE_SIZE)));

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t dsm_now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

uint64_t dsm_realtime_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

uint64_t dsm_node_now(struct dsm_node *n)
{
	return n->cfg.clock_ns ? n->cfg.clock_ns(n->cfg.cb_ctx) : dsm_now_ns();
}

static void vlog(struct dsm_node *n, const char *fmt, va_list ap)
{
	char buf[320];
	int k = snprintf(buf, sizeof(buf), "dsm node %u: ", n->self);

	vsnprintf(buf + k, sizeof(buf) - (size_t)k, fmt, ap);
	if (n->cfg.on_log)
		n->cfg.on_log(n->cfg.cb_ctx, buf);
	else
		fprintf(stderr, "%s\n", buf);
}

void dsm_log(struct dsm_node *n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(n, fmt, ap);
	va_end(ap);
}

void dsm_fail(struct dsm_node *n, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (atomic_exchange(&n->failed, true))
		return;
	if (atomic_load(&n->stopped))
		return;
	dsm_log(n, "fatal: %s", msg);
	/* first, so that the VMM knows before its vCPUs run on */
	if (n->cfg.on_fatal)
		n->cfg.on_fatal(n->cfg.cb_ctx, msg);
	dsm_engine_release(n);
}

/*
 * Unregistering wakes every thread blocked on a fault of the range, and
 * from then on the mapping is plain anonymous memory: absent pages fill
 * with zeros, write-protected ones become writable.
 */
void dsm_engine_release(struct dsm_node *n)
{
	struct uffdio_range r = { .start = (uintptr_t)n->base, .len = n->size };

	pthread_mutex_lock(&n->fail_lock);
	if (n->registered) {
		if (ioctl(n->uffd, UFFDIO_UNREGISTER, &r))
			dsm_log(n, "UFFDIO_UNREGISTER: %s", strerror(errno));
		n->registered = false;
	}
	pthread_mutex_unlock(&n->fail_lock);
}

bool dsm_node_failed(const struct dsm_node *n)
{
	return atomic_load(&((struct dsm_node *)n)->failed);
}

/* ---- page operations on userfaultfd ---- */

static uint64_t page_addr(struct dsm_node *n, uint64_t p)
{
	return (uintptr_t)(n->base + (p << DSM_PAGE_SHIFT));
}

static int u_install(void *ctx, uint64_t p, const void *data, unsigned flags)
{
	struct dsm_node *n = ctx;
	struct uffdio_zeropage z = { .range = { page_addr(n, p), DSM_PAGE_SIZE } };
	struct uffdio_copy c = {
		.dst = page_addr(n, p),
		.src = (uintptr_t)(data ? data : zero_page),
		.len = DSM_PAGE_SIZE,
		.mode = (flags & DSM_INSTALL_WP) ? UFFDIO_COPY_MODE_WP : 0,
	};

	/*
	 * UFFDIO_ZEROPAGE maps the shared zero page without the uffd-wp bit:
	 * a later write copies it silently, which only M may allow. S needs
	 * the atomic UFFDIO_COPY with MODE_WP.
	 */
	if (!data && (flags & DSM_INSTALL_ZERO_RO) && !(flags & DSM_INSTALL_WP)) {
		while (ioctl(n->uffd, UFFDIO_ZEROPAGE, &z))
			if (errno != EAGAIN)
				return -errno;
		return 0;
	}
	while (ioctl(n->uffd, UFFDIO_COPY, &c)) {
		if (errno != EAGAIN)
			return -errno;
		c.copy = 0;
	}
	return 0;
}

static int u_protect(void *ctx, uint64_t p, bool wp)
{
	struct dsm_node *n = ctx;
	struct uffdio_writeprotect w = {
		.range = { page_addr(n, p), DSM_PAGE_SIZE },
		.mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	while (ioctl(n->uffd, UFFDIO_WRITEPROTECT, &w))
		if (errno != EAGAIN)
			return -errno;
	return 0;
}

static int u_drop(void *ctx, uint64_t p)
{
	struct dsm_node *n = ctx;

	return madvise(n->base + (p << DSM_PAGE_SHIFT), DSM_PAGE_SIZE, MADV_DONTNEED) ? -errno : 0;
}

static int u_read(void *ctx, uint64_t p, void *buf)
{
	struct dsm_node *n = ctx;

	memcpy(buf, n->base + (p << DSM_PAGE_SHIFT), DSM_PAGE_SIZE);
	return 0;
}

static void u_wake(void *ctx, uint64_t p)
{
	struct dsm_node *n = ctx;
	struct uffdio_range r = { page_addr(n, p), DSM_PAGE_SIZE };

	ioctl(n->uffd, UFFDIO_WAKE, &r);
}

/* ---- the fault handler ---- */

static void handle_fault(struct dsm_node *n, const struct uffd_msg *m)
{
	uint64_t off;
	bool write;

	if (m->event != UFFD_EVENT_PAGEFAULT)
		return;
	off = m->arg.pagefault.address - (uintptr_t)n->base;
	if (off >= n->size)
		return;
	write = m->arg.pagefault.flags & (UFFD_PAGEFAULT_FLAG_WRITE | UFFD_PAGEFAULT_FLAG_WP);
	dsm_proto_fault(n, off >> DSM_PAGE_SHIFT, write, false);
}

/* A request unanswered too long: nothing arrived since it was sent. */
static void watchdog(struct dsm_node *n, uint64_t *pending_since, uint64_t now)
{
	uint64_t last;

	if (!n->cfg.request_timeout_ms || !atomic_load(&n->in_flight)) {
		*pending_since = 0;
		return;
	}
	if (!*pending_since)
		*pending_since = now;
	/* the receive thread may have stamped a time later than now */
	last = atomic_load(&n->last_rx_ns);
	if (last < *pending_since)
		last = *pending_since;
	if (now > last && now - last > (uint64_t)n->cfg.request_timeout_ms * 1000000) {
		dsm_proto_dump(n);
		dsm_fail(n, "no answer for %u ms", n->cfg.request_timeout_ms);
	}
}

/*
 * Adaptive spin: after an event keep polling for cur ns. A window that
 * ends with nothing halves; an event while spinning, or one that came
 * soon after we went to sleep, brings it back to the maximum.
 */
struct spin {
	uint64_t max, cur, last;
};

static bool spin_more(struct spin *s, uint64_t now)
{
	if (s->cur && now - s->last < s->cur)
		return true;
	if (s->last) {
		s->cur /= 2;
		if (s->cur < 1000)
			s->cur = 0;
		s->last = 0;
	}
	return false;
}

static void spin_event(struct spin *s, uint64_t now, bool spinning)
{
	if (spinning)
		s->cur = s->max;
	s->last = now;
}

struct handler_arg {
	struct dsm_node *n;
	unsigned index;
};

static void *handler_main(void *arg)
{
	struct dsm_node *n = ((struct handler_arg *)arg)->n;
	bool watch = ((struct handler_arg *)arg)->index == 0;
	struct spin sp = { .max = (uint64_t)n->cfg.spin_us * 1000 };
	struct pollfd pfd[3] = {
		{ .fd = n->uffd, .events = POLLIN },
		{ .fd = n->kick_fd, .events = POLLIN },
		{ .fd = n->tx.poll && n->tx.poll_fd ? n->tx.poll_fd(n->tx.ctx) : -1, .events = POLLIN },
	};
	uint64_t pending_since = 0, now, slept, wait, kick;
	struct uffd_msg msgs[16];
	bool spinning = false;
	char name[16];
	ssize_t r;

	/* named, so that a scheduler trace or top shows who runs */
	snprintf(name, sizeof(name), "dsm%u.%u", n->self, ((struct handler_arg *)arg)->index);
	pthread_setname_np(pthread_self(), name);
	free(arg);
	sp.cur = sp.max;
	while (!atomic_load(&n->stopped)) {
		r = read(n->uffd, msgs, sizeof(msgs));
		if (r > 0) {
			for (size_t i = 0; i < (size_t)r / sizeof(msgs[0]); i++)
				handle_fault(n, &msgs[i]);
			spin_event(&sp, dsm_now_ns(), spinning);
			continue;
		}
		if (r < 0 && errno != EAGAIN && errno != EINTR) {
			dsm_fail(n, "userfaultfd read: %s", strerror(errno));
			break;
		}
		if (n->tx.poll && (sp.max || pfd[2].revents) && n->tx.poll(n->tx.ctx) > 0) {
			pfd[2].revents = 0;
			spin_event(&sp, dsm_now_ns(), spinning);
			continue;
		}
		wait = dsm_proto_tick(n);
		if (!wait)
			continue;
		now = dsm_now_ns();
		if (spin_more(&sp, now)) {
			spinning = true;
			/* two cores: let a woken vCPU or the receive thread run */
			sched_yield();
			continue;
		}
		spinning = false;
		if (watch)
			watchdog(n, &pending_since, now);
		pfd[0].revents = pfd[2].revents = 0;
		if (wait > 100000000)
			wait = 100000000;
		if (ppoll(pfd, 3, &(struct timespec){ 0, (long)wait }, NULL) > 0 &&
		    (pfd[1].revents & POLLIN) && read(n->kick_fd, &kick, sizeof(kick)) < 0)
			kick = 0;
		if ((pfd[0].revents | pfd[2].revents) & POLLIN) {
			slept = dsm_now_ns() - now;
			if (sp.max && slept < sp.max)
				sp.cur = sp.max;
		}
	}
	return NULL;
}

/* ---- set-up ---- */

static int fail_cfg(char *err, size_t errlen, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return -1;
}

static int cmp_range(const void *a, const void *b)
{
	const struct dsm_range *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* The ranges must tile [0, size) with page-aligned pieces of existing nodes. */
static int check_homes(const struct dsm_config *cfg, struct dsm_range *sorted, char *err,
		       size_t errlen)
{
	uint64_t at = 0;

	if (!cfg->homes || !cfg->nr_homes)
		return fail_cfg(err, errlen, "no home ranges");
	memcpy(sorted, cfg->homes, cfg->nr_homes * sizeof(*sorted));
	qsort(sorted, cfg->nr_homes, sizeof(*sorted), cmp_range);
	for (unsigned i = 0; i < cfg->nr_homes; i++) {
		const struct dsm_range *r = &sorted[i];

		if (r->node >= cfg->nr_nodes)
			return fail_cfg(err, errlen, "home range of a node beyond nr_nodes");
		if ((r->start | r->end) & (DSM_PAGE_SIZE - 1) || r->end <= r->start)
			return fail_cfg(err, errlen, "home range empty or not page aligned");
		if (r->start != at)
			return fail_cfg(err, errlen, "home ranges overlap or leave a hole");
		at = r->end;
	}
	if (at != cfg->size)
		return fail_cfg(err, errlen, "home ranges do not cover the whole size");
	return 0;
}

static int check_cfg(const struct dsm_config *cfg, const struct dsm_transport_ops *tx, char *err,
		     size_t errlen)
{
	if (!cfg->nr_nodes || cfg->nr_nodes > DSM_MAX_NODES || cfg->self >= cfg->nr_nodes)
		return fail_cfg(err, errlen, "bad self or nr_nodes");
	if (!cfg->size || cfg->size & (DSM_PAGE_SIZE - 1) ||
	    (cfg->size >> DSM_PAGE_SHIFT) > DSM_MSG_MAX_PAGE)
		return fail_cfg(err, errlen, "size must be a non-zero multiple of 4096");
	if ((uintptr_t)cfg->mem & (DSM_PAGE_SIZE - 1))
		return fail_cfg(err, errlen, "mapping not page aligned");
	if (!tx || !tx->send)
		return fail_cfg(err, errlen, "no transport");
	if (cfg->mem_ops && (!cfg->mem_ops->install || !cfg->mem_ops->protect ||
			     !cfg->mem_ops->drop || !cfg->mem_ops->read || !cfg->mem_ops->wake))
		return fail_cfg(err, errlen, "incomplete mem_ops");
	return 0;
}

/* Per page: its home; and this node's own ranges for the directory. */
static int map_homes(struct dsm_node *n)
{
	n->own = calloc(n->cfg.nr_homes, sizeof(*n->own));
	if (!n->own)
		return -ENOMEM;
	for (unsigned i = 0; i < n->cfg.nr_homes; i++) {
		const struct dsm_range *r = &n->homes[i];
		uint64_t a = r->start >> DSM_PAGE_SHIFT, b = r->end >> DSM_PAGE_SHIFT;

		for (uint64_t p = a; p < b; p++)
			n->pages[p].home = (uint8_t)r->node;
		if (r->node == n->self)
			n->own[n->nr_own++] = (struct dsm_own_range){ .start = a, .end = b };
	}
	return 0;
}

int dsm_node_create(const struct dsm_config *cfg, const struct dsm_transport_ops *tx,
		    struct dsm_node **out, char *err, size_t errlen)
{
	struct dsm_node *n;

	*out = NULL;
	if (check_cfg(cfg, tx, err, errlen))
		return -1;
	n = calloc(1, sizeof(*n));
	if (!n)
		return fail_cfg(err, errlen, "out of memory");
	n->uffd = n->kick_fd = -1;
	n->cfg = *cfg;
	n->tx = *tx;
	n->self = cfg->self;
	n->nr_nodes = cfg->nr_nodes;
	n->size = cfg->size;
	n->npages = cfg->size >> DSM_PAGE_SHIFT;
	n->cache_pages = cfg->cache_pages;
	pthread_mutex_init(&n->fail_lock, NULL);
	n->homes = calloc(cfg->nr_homes ? cfg->nr_homes : 1, sizeof(*n->homes));
	n->pages = calloc(n->npages, sizeof(*n->pages));
	if (!n->homes || !n->pages) {
		dsm_node_destroy(n);
		return fail_cfg(err, errlen, "out of memory");
	}
	if (check_homes(cfg, n->homes, err, errlen)) {
		dsm_node_destroy(n);
		return -1;
	}
	n->cfg.homes = n->homes;
	if (map_homes(n) || dsm_proto_init(n)) {
		dsm_node_destroy(n);
		return fail_cfg(err, errlen, "out of memory");
	}
	if (cfg->mem) {
		n->base = cfg->mem;
	} else {
		void *m = mmap(NULL, n->size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (m == MAP_FAILED) {
			snprintf(err, errlen, "mmap %llu bytes: %s", (unsigned long long)n->size,
				 strerror(errno));
			dsm_node_destroy(n);
			return -1;
		}
		n->base = m;
		n->own_mapping = true;
	}
	if (cfg->mem_ops) {
		n->mem = *cfg->mem_ops;
	} else {
		n->uffd_mode = true;
		n->mem = (struct dsm_mem_ops){ u_install, u_protect, u_drop, u_read, u_wake, n };
	}
	*out = n;
	return 0;
}

static int open_uffd(struct dsm_node *n, char *err, size_t errlen)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP };
	struct uffdio_register reg = {
		.range = { (uintptr_t)n->base, n->size },
		.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
	};
	const uint64_t need = (1ULL << _UFFDIO_COPY) | (1ULL << _UFFDIO_ZEROPAGE) |
			      (1ULL << _UFFDIO_WRITEPROTECT) | (1ULL << _UFFDIO_WAKE);

	/* Not UFFD_USER_MODE_ONLY: KVM's own accesses to guest RAM fault here too. */
	n->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (n->uffd < 0) {
		snprintf(err, errlen, "userfaultfd: %s", strerror(errno));
		return -1;
	}
	if (ioctl(n->uffd, UFFDIO_API, &api) || !(api.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP)) {
		snprintf(err, errlen, "userfaultfd without write-protect support (kernel >= 5.7 needed)");
		return -1;
	}
	if (ioctl(n->uffd, UFFDIO_REGISTER, &reg)) {
		snprintf(err, errlen, "UFFDIO_REGISTER (anonymous private mapping needed): %s",
			 strerror(errno));
		return -1;
	}
	n->registered = true;
	if ((reg.ioctls & need) != need) {
		snprintf(err, errlen, "userfaultfd lacks COPY/ZEROPAGE/WRITEPROTECT/WAKE");
		return -1;
	}
	n->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (n->kick_fd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * A caller's mapping may have pages already: those of this cell are
 * taken as written here, those of other cells are discarded.
 */
static int adopt_present(struct dsm_node *n, char *err, size_t errlen)
{
	unsigned char *vec;

	if (n->own_mapping)
		return 0;
	vec = malloc(n->npages);
	if (!vec)
		return fail_cfg(err, errlen, "out of memory");
	if (mincore(n->base, n->size, vec)) {
		snprintf(err, errlen, "mincore: %s", strerror(errno));
		free(vec);
		return -1;
	}
	for (uint64_t p = 0; p < n->npages; p++) {
		if (!(vec[p] & 1))
			continue;
		if (n->pages[p].home == n->self)
			dsm_proto_adopt(n, p);
		else
			madvise(n->base + (p << DSM_PAGE_SHIFT), DSM_PAGE_SIZE, MADV_DONTNEED);
	}
	free(vec);
	return 0;
}

int dsm_node_start(struct dsm_node *n, char *err, size_t errlen)
{
	unsigned nt = n->cfg.handler_threads ? n->cfg.handler_threads : 1;

	if (n->started)
		return fail_cfg(err, errlen, "already started");
	n->started = true;
	if (!n->uffd_mode)
		return 0;
	if (adopt_present(n, err, errlen) || open_uffd(n, err, errlen))
		return -1;
	n->threads = calloc(nt, sizeof(*n->threads));
	if (!n->threads)
		return fail_cfg(err, errlen, "out of memory");
	for (unsigned i = 0; i < nt; i++) {
		struct handler_arg *a = malloc(sizeof(*a));

		if (!a)
			return fail_cfg(err, errlen, "out of memory");
		a->n = n;
		a->index = i;
		if (pthread_create(&n->threads[i], NULL, handler_main, a)) {
			free(a);
			return fail_cfg(err, errlen, "cannot start a fault handler thread");
		}
		n->nr_threads++;
	}
	return 0;
}

void dsm_node_stop(struct dsm_node *n)
{
	uint64_t one = 1;

	if (atomic_exchange(&n->stopped, true))
		return;
	if (n->kick_fd >= 0 && write(n->kick_fd, &one, sizeof(one)) < 0)
		dsm_log(n, "eventfd write: %s", strerror(errno));
	for (unsigned i = 0; i < n->nr_threads; i++)
		pthread_join(n->threads[i], NULL);
	n->nr_threads = 0;
	dsm_engine_release(n);
}

void dsm_node_destroy(struct dsm_node *n)
{
	if (!n)
		return;
	dsm_node_stop(n);
	if (n->uffd >= 0)
		close(n->uffd);
	if (n->kick_fd >= 0)
		close(n->kick_fd);
	if (n->dir)
		dsm_proto_free(n);
	if (n->own_mapping)
		munmap(n->base, n->size);
	pthread_mutex_destroy(&n->fail_lock);
	free(n->threads);
	free(n->own);
	free(n->pages);
	free(n->homes);
	free(n);
}

void *dsm_node_mem(const struct dsm_node *n)
{
	return n->base;
}

unsigned dsm_home_of(const struct dsm_node *n, uint64_t offset)
{
	return offset < n->size ? n->pages[offset >> DSM_PAGE_SHIFT].home : DSM_NONE;
}

/* ---- entry points ---- */

int dsm_receive(struct dsm_node *n, unsigned src, const struct dsm_msg *msg, const void *page)
{
	const char *why;

	if (atomic_load(&n->stopped))
		return 0;
	if (dsm_msg_check(msg, &why)) {
		dsm_fail(n, "node %u sent a bad message: %s", src, why);
		return -EINVAL;
	}
	return dsm_proto_receive(n, src, msg, page);
}

void dsm_peer_down(struct dsm_node *n, unsigned peer, const char *why)
{
	if (atomic_load(&n->stopped))
		return;
	dsm_fail(n, "node %u is down: %s", peer, why ? why : "?");
}

uint64_t dsm_node_tick(struct dsm_node *n)
{
	return dsm_proto_tick(n);
}

void dsm_engine_kick(struct dsm_node *n)
{
	uint64_t one = 1;

	if (n->kick_fd >= 0 && write(n->kick_fd, &one, sizeof(one)) < 0)
		dsm_log(n, "eventfd write: %s", strerror(errno));
}

void dsm_node_idle(struct dsm_node *n, bool idle)
{
	if (atomic_exchange(&n->idle, idle) == idle || !idle)
		return;
	dsm_proto_release_holds(n);
}

void dsm_node_yield(struct dsm_node *n)
{
	dsm_count(&n->c.yields, 1);
	dsm_proto_release_holds(n);
}

void dsm_node_fail(struct dsm_node *n, const char *why)
{
	dsm_fail(n, "%s", why);
}

int dsm_fault(struct dsm_node *n, uint64_t offset, bool write)
{
	int r;

	if (offset >= n->size)
		return -EINVAL;
	if (atomic_load(&n->stopped))
		return -ESHUTDOWN;
	r = dsm_proto_fault(n, offset >> DSM_PAGE_SHIFT, write, false);
	return r > 1 ? 1 : r;
}

int dsm_prefetch(struct dsm_node *n, uint64_t offset, uint64_t len, bool write)
{
	uint64_t a, b;
	int sent = 0, r;

	if (offset >= n->size || len > n->size - offset)
		return -EINVAL;
	if (atomic_load(&n->stopped))
		return -ESHUTDOWN;
	a = offset >> DSM_PAGE_SHIFT;
	b = (offset + len + DSM_PAGE_SIZE - 1) >> DSM_PAGE_SHIFT;
	for (uint64_t p = a; p < b; p++) {
		r = dsm_proto_fault(n, p, write, true);
		if (r < 0)
			return r;
		sent += r == 1;
	}
	return sent;
}

int dsm_access(struct dsm_node *n, uint64_t offset, uint64_t len, bool write)
{
	uint64_t a;
	int r;

	if (!n->uffd_mode)
		return -EOPNOTSUPP;
	r = dsm_prefetch(n, offset, len, write);
	if (r < 0)
		return r;
	/* touching waits for each page like any access would */
	for (a = offset & ~(uint64_t)(DSM_PAGE_SIZE - 1); a < offset + len; a += DSM_PAGE_SIZE) {
		volatile uint8_t *b = n->base + a;

		if (write)
			__atomic_fetch_or(b, 0, __ATOMIC_RELAXED);
		else
			(void)*b;
	}
	return dsm_node_failed(n) ? -EIO : 0;
}

/* ---- statistics ---- */

static void top_insert(struct dsm_page_count *top, uint64_t off, uint64_t cnt)
{
	int i = DSM_STATS_TOP - 1;

	if (cnt <= top[i].count)
		return;
	while (i > 0 && top[i - 1].count < cnt) {
		top[i] = top[i - 1];
		i--;
	}
	top[i] = (struct dsm_page_count){ .offset = off, .count = cnt };
}

#define LD(f) atomic_load_explicit(&n->c.f, memory_order_relaxed)

void dsm_node_stats(struct dsm_node *n, struct dsm_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->fault_read_miss = LD(fault_read_miss);
	st->fault_write_miss = LD(fault_write_miss);
	st->fault_upgrade = LD(fault_upgrade);
	st->fault_zero_local = LD(fault_zero_local);
	st->fault_zero_remote = LD(fault_zero_remote);
	st->fault_local = LD(fault_local);
	st->fault_joined = LD(fault_joined);
	st->fault_spurious = LD(fault_spurious);
	st->msgs_tx = LD(msgs_tx);
	st->msgs_rx = LD(msgs_rx);
	st->bytes_tx = LD(bytes_tx);
	st->bytes_rx = LD(bytes_rx);
	st->pages_tx = LD(pages_tx);
	st->pages_rx = LD(pages_rx);
	for (unsigned t = 0; t < DSM_MSG_TYPE_END; t++) {
		st->msgs_tx_type[t] = LD(msgs_tx_type[t]);
		st->msgs_rx_type[t] = LD(msgs_rx_type[t]);
	}
	st->inv_sent = LD(inv_sent);
	st->inv_dropped = LD(inv_dropped);
	st->evict_s = LD(evict_s);
	st->evict_m = LD(evict_m);
	st->queued = LD(queued);
	st->held_back = LD(held_back);
	st->refetched = LD(refetched);
	st->bursts = LD(bursts);
	st->yields = LD(yields);
	st->readahead = LD(readahead);
	st->hot_grants = LD(hot_grants);
	st->held_ns = LD(held_ns);
	st->fetch_total_ns = LD(fetch_total_ns);
	st->fetches = LD(fetches);
	st->burst_grants = LD(burst_grants);
	st->cache_max = LD(cache_max);
	st->fetch_ns = atomic_load(&n->fetch_ns);
	st->fetch_samples = atomic_load(&n->fetch_samples);
	dsm_proto_hold_params(n, &st->hold_ext_ns, &st->hold_burst_ns);
	st->cache_held = atomic_load(&n->held);
	st->in_flight = atomic_load(&n->in_flight);
	/* racy reads of counters that only grow: good enough for a report */
	for (uint64_t p = 0; p < n->npages; p++) {
		uint32_t m = __atomic_load_n(&n->pages[p].moves, __ATOMIC_RELAXED);

		if (m)
			top_insert(st->top, p << DSM_PAGE_SHIFT, m);
	}
}

int dsm_stats_format(const struct dsm_stats *st, char *buf, size_t len)
{
	size_t k = 0;
	int w;

#define OUT(...)                                                         \
	do {                                                             \
		w = snprintf(buf + k, k < len ? len - k : 0, __VA_ARGS__); \
		k += w > 0 ? (size_t)w : 0;                              \
	} while (0)
	OUT("faults read_miss %llu write_miss %llu upgrade %llu zero_local %llu zero_remote %llu "
	    "local %llu joined %llu spurious %llu\n",
	    (unsigned long long)st->fault_read_miss, (unsigned long long)st->fault_write_miss,
	    (unsigned long long)st->fault_upgrade, (unsigned long long)st->fault_zero_local,
	    (unsigned long long)st->fault_zero_remote, (unsigned long long)st->fault_local,
	    (unsigned long long)st->fault_joined, (unsigned long long)st->fault_spurious);
	OUT("msgs tx %llu rx %llu bytes tx %llu rx %llu pages tx %llu rx %llu\n",
	    (unsigned long long)st->msgs_tx, (unsigned long long)st->msgs_rx,
	    (unsigned long long)st->bytes_tx, (unsigned long long)st->bytes_rx,
	    (unsigned long long)st->pages_tx, (unsigned long long)st->pages_rx);
	OUT("bursts %llu grants %llu hold ext %llu us burst %llu us fetch %llu us (%llu samples) "
	    "refetched %llu readahead %llu\n", (unsigned long long)st->bursts,
	    (unsigned long long)st->burst_grants,
	    (unsigned long long)st->hold_ext_ns / 1000, (unsigned long long)st->hold_burst_ns / 1000,
	    (unsigned long long)st->fetch_ns / 1000, (unsigned long long)st->fetch_samples,
	    (unsigned long long)st->refetched, (unsigned long long)st->readahead);
	OUT("hot grants %llu held back %llu ms fetches %llu taking %llu ms\n",
	    (unsigned long long)st->hot_grants, (unsigned long long)st->held_ns / 1000000,
	    (unsigned long long)st->fetches, (unsigned long long)st->fetch_total_ns / 1000000);
	OUT("inv sent %llu dropped %llu evict s %llu m %llu queued %llu held_back %llu cache %llu "
	    "max %llu in_flight %llu\n",
	    (unsigned long long)st->inv_sent, (unsigned long long)st->inv_dropped,
	    (unsigned long long)st->evict_s, (unsigned long long)st->evict_m,
	    (unsigned long long)st->queued, (unsigned long long)st->held_back,
	    (unsigned long long)st->cache_held, (unsigned long long)st->cache_max,
	    (unsigned long long)st->in_flight);
	for (unsigned i = 0; i < DSM_STATS_TOP && st->top[i].count; i++)
		OUT("hot page %#llx moved %llu\n", (unsigned long long)st->top[i].offset,
		    (unsigned long long)st->top[i].count);
#undef OUT
	return (int)k;
}
