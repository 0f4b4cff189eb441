/* blkcheck: block device checks run inside a grappe guest (grappe.test=disk).
 *
 * Everything goes straight to the device with O_DIRECT, so every read and
 * write is a virtio-blk request and no page cache hides a wrong answer.
 *
 *   blkcheck stamp  DEV OFF_MIB LEN_MIB SEED   write a known pattern
 *   blkcheck verify DEV OFF_MIB LEN_MIB SEED   check it (e.g. after a reboot)
 *   blkcheck random DEV OFF_MIB LEN_MIB SEED [ROUNDS]
 *        one thread per online CPU, pinned (so blk-mq uses every queue), each
 *        in its own stripe: random-sized writes at random offsets, read-backs,
 *        BLKZEROOUT (virtio WRITE_ZEROES), BLKDISCARD, fsync (FLUSH); every
 *        read is checked against what the thread last wrote there, and a
 *        final pass reads the whole region back
 *   blkcheck rofail DEV                        a write must be refused
 *
 * The stamp pattern is simple enough to recompute on the host (tests/
 * test_disk.py): 64-bit little-endian word i of 512-byte sector s (counted
 * from the start of the device) is splitmix64(SEED + s * 64 + i).
 *
 * Output: "GRAPPE-GUEST: blkcheck MODE PASS ..." or "... FAIL why"; exit
 * status 0 or 1. Built static (gcc -static -pthread).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define P "GRAPPE-GUEST: "
#define SECTOR 512
#define WORDS (SECTOR / 8)
#define MIB (1024 * 1024)
#define CHUNK (1024 * 1024)
#define MAX_THREADS 256
#define MAX_IO_SECTORS 256          /* 128 KiB per write */
#define GEN_UNKNOWN 0               /* never written by us (or discarded) */
#define GEN_ZERO 0xffffffffu        /* zeroed with BLKZEROOUT */

static const char *mode = "?";

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	printf(P "blkcheck %s FAIL %s\n", mode, msg);
	fflush(stdout);
	exit(1);
}

static uint64_t splitmix64(uint64_t x)
{
	uint64_t z = x + 0x9e3779b97f4a7c15ULL;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void *xalloc(size_t len)
{
	void *p;

	if (posix_memalign(&p, 4096, len))
		fail("out of memory");
	return p;
}

static int open_dev(const char *dev, int flags)
{
	int fd = open(dev, flags | O_DIRECT | O_CLOEXEC);

	if (fd < 0)
		fail("%s: %s", dev, strerror(errno));
	return fd;
}

static void pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pread(fd, buf, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fail("read of %zu bytes at %llu: %s", len, (unsigned long long)off,
			     n < 0 ? strerror(errno) : "end of device");
		buf = (char *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
}

static void pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, buf, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fail("write of %zu bytes at %llu: %s", len, (unsigned long long)off,
			     n < 0 ? strerror(errno) : "no progress");
		buf = (const char *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- stamp / verify ---- */

static void stamp_fill(uint64_t *w, uint64_t sector, size_t nsect, uint64_t seed)
{
	for (size_t s = 0; s < nsect; s++)
		for (unsigned i = 0; i < WORDS; i++)
			w[s * WORDS + i] = splitmix64(seed + (sector + s) * WORDS + i);
}

static int stamp(const char *dev, uint64_t off, uint64_t len, uint64_t seed, bool check)
{
	int fd = open_dev(dev, check ? O_RDONLY : O_RDWR);
	uint64_t *buf = xalloc(CHUNK), *want = xalloc(CHUNK);
	double t0 = now();

	for (uint64_t o = off; o < off + len; o += CHUNK) {
		size_t n = off + len - o < CHUNK ? (size_t)(off + len - o) : CHUNK;

		stamp_fill(want, o / SECTOR, n / SECTOR, seed);
		if (!check) {
			pwrite_all(fd, want, n, o);
			continue;
		}
		pread_all(fd, buf, n, o);
		for (size_t i = 0; i < n / 8; i++)
			if (buf[i] != want[i])
				fail("byte %llu: read 0x%016llx, expected 0x%016llx",
				     (unsigned long long)(o + i * 8), (unsigned long long)buf[i],
				     (unsigned long long)want[i]);
	}
	if (!check && fsync(fd))
		fail("fsync: %s", strerror(errno));
	close(fd);
	printf(P "blkcheck %s PASS %llu MiB in %.2f s\n", mode,
	       (unsigned long long)(len / MIB), now() - t0);
	return 0;
}

/* The device's logical block: O_DIRECT I/O must be made of whole ones. */
static size_t logical_block(int fd, const char *dev)
{
	int lbs;

	if (ioctl(fd, BLKSSZGET, &lbs) || lbs < SECTOR || lbs % SECTOR)
		fail("%s: BLKSSZGET: %s", dev, strerror(errno));
	return (size_t)lbs;
}

/* ---- random ---- */

struct worker {
	pthread_t thread;
	int cpu;
	int fd;
	uint64_t first, nsect;      /* stripe, in sectors */
	uint64_t align;             /* sectors per logical block: every I/O is made of whole ones */
	uint32_t *gen;              /* per sector */
	uint32_t next_gen;
	uint64_t rng;
	uint64_t seed;
	long rounds;
	long writes, reads, zeroes, discards, flushes;
	uint64_t bytes;
};

static uint64_t rnd(struct worker *w)
{
	w->rng = splitmix64(w->rng);
	return w->rng;
}

static uint64_t content(uint64_t seed, uint64_t sector, uint32_t gen, unsigned i)
{
	return splitmix64(seed ^ (sector << 20) ^ ((uint64_t)gen << 44) ^ i);
}

static void check_range(struct worker *w, const uint64_t *buf, uint64_t sector, size_t nsect)
{
	for (size_t s = 0; s < nsect; s++) {
		uint32_t g = w->gen[sector + s - w->first];
		const uint64_t *p = buf + s * WORDS;

		if (g == GEN_UNKNOWN)
			continue;
		for (unsigned i = 0; i < WORDS; i++) {
			uint64_t want = g == GEN_ZERO ? 0 : content(w->seed, sector + s, g, i);

			if (p[i] != want)
				fail("cpu %d: sector %llu word %u: read 0x%016llx, expected 0x%016llx "
				     "(%s)", w->cpu, (unsigned long long)(sector + s), i,
				     (unsigned long long)p[i], (unsigned long long)want,
				     g == GEN_ZERO ? "zeroed" : "written");
		}
	}
}

static void *random_worker(void *arg)
{
	struct worker *w = arg;
	uint64_t *buf = xalloc((size_t)MAX_IO_SECTORS * SECTOR * 4);
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(w->cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
	for (long r = 0; r < w->rounds; r++) {
		unsigned op = (unsigned)(rnd(w) % 100);
		uint64_t n = w->align * (1 + rnd(w) % (MAX_IO_SECTORS / w->align)), s;

		if (n > w->nsect)
			n = w->nsect;
		s = w->first + w->align * (rnd(w) % ((w->nsect - n) / w->align + 1));
		if (op < 55) {
			uint32_t g = ++w->next_gen;

			for (uint64_t k = 0; k < n; k++)
				for (unsigned i = 0; i < WORDS; i++)
					buf[k * WORDS + i] = content(w->seed, s + k, g, i);
			pwrite_all(w->fd, buf, n * SECTOR, s * SECTOR);
			for (uint64_t k = 0; k < n; k++)
				w->gen[s + k - w->first] = g;
			w->writes++;
			w->bytes += n * SECTOR;
		} else if (op < 85) {
			pread_all(w->fd, buf, n * SECTOR, s * SECTOR);
			check_range(w, buf, s, n);
			w->reads++;
			w->bytes += n * SECTOR;
		} else if (op < 93) {
			uint64_t range[2] = { s * SECTOR, n * SECTOR };

			if (ioctl(w->fd, BLKZEROOUT, range))
				fail("cpu %d: BLKZEROOUT %llu+%llu: %s", w->cpu,
				     (unsigned long long)s, (unsigned long long)n, strerror(errno));
			for (uint64_t k = 0; k < n; k++)
				w->gen[s + k - w->first] = GEN_ZERO;
			w->zeroes++;
		} else if (op < 97) {
			uint64_t range[2] = { s * SECTOR, n * SECTOR };

			/* A discarded range reads back as anything: forget it. */
			if (ioctl(w->fd, BLKDISCARD, range) && errno != EOPNOTSUPP)
				fail("cpu %d: BLKDISCARD %llu+%llu: %s", w->cpu,
				     (unsigned long long)s, (unsigned long long)n, strerror(errno));
			for (uint64_t k = 0; k < n; k++)
				w->gen[s + k - w->first] = GEN_UNKNOWN;
			w->discards++;
		} else {
			if (fsync(w->fd))
				fail("cpu %d: fsync: %s", w->cpu, strerror(errno));
			w->flushes++;
		}
	}
	if (fsync(w->fd))
		fail("cpu %d: fsync: %s", w->cpu, strerror(errno));
	/* The whole stripe, in big reads. */
	for (uint64_t s = w->first; s < w->first + w->nsect; s += MAX_IO_SECTORS * 4) {
		uint64_t n = w->first + w->nsect - s;

		if (n > MAX_IO_SECTORS * 4)
			n = MAX_IO_SECTORS * 4;
		pread_all(w->fd, buf, n * SECTOR, s * SECTOR);
		check_range(w, buf, s, n);
	}
	free(buf);
	return NULL;
}

static int random_test(const char *dev, uint64_t off, uint64_t len, uint64_t seed, long rounds)
{
	static struct worker w[MAX_THREADS];
	cpu_set_t online;
	int ncpu = 0, fd = open_dev(dev, O_RDWR);
	long writes = 0, reads = 0, zeroes = 0, discards = 0, flushes = 0;
	uint64_t bytes = 0, stripe;
	double t0 = now();
	/* A disk of 4 KiB logical blocks refuses O_DIRECT I/O of 512 bytes. */
	size_t lbs = logical_block(fd, dev);
	uint64_t align = lbs / SECTOR;

	if (sched_getaffinity(0, sizeof(online), &online))
		fail("sched_getaffinity: %s", strerror(errno));
	for (int c = 0; c < CPU_SETSIZE && ncpu < MAX_THREADS; c++)
		if (CPU_ISSET(c, &online))
			w[ncpu++].cpu = c;
	stripe = len / SECTOR / (uint64_t)ncpu / align * align;
	if (stripe < MAX_IO_SECTORS)
		fail("region too small for %d threads", ncpu);
	for (int t = 0; t < ncpu; t++) {
		w[t].fd = fd;
		w[t].first = off / SECTOR + (uint64_t)t * stripe;
		w[t].nsect = stripe;
		w[t].align = align;
		w[t].gen = calloc(stripe, sizeof(uint32_t));
		w[t].seed = seed;
		w[t].rng = seed * 1000003 + (uint64_t)t;
		w[t].rounds = rounds;
		if (!w[t].gen)
			fail("out of memory");
	}
	for (int t = 0; t < ncpu; t++)
		if (pthread_create(&w[t].thread, NULL, random_worker, &w[t]))
			fail("pthread_create");
	for (int t = 0; t < ncpu; t++) {
		pthread_join(w[t].thread, NULL);
		writes += w[t].writes;
		reads += w[t].reads;
		zeroes += w[t].zeroes;
		discards += w[t].discards;
		flushes += w[t].flushes;
		bytes += w[t].bytes;
	}
	close(fd);
	printf(P "blkcheck %s PASS lbs=%zu threads=%d writes=%ld reads=%ld zeroes=%ld discards=%ld "
	       "flushes=%ld MiB=%llu in %.2f s\n", mode, lbs, ncpu, writes, reads, zeroes, discards,
	       flushes, (unsigned long long)(bytes / MIB), now() - t0);
	return 0;
}

/* ---- read-only ---- */

static int rofail(const char *dev)
{
	int fd = open(dev, O_RDWR | O_DIRECT | O_CLOEXEC);
	size_t lbs;
	void *buf;
	ssize_t n;

	if (fd < 0) {
		if (errno != EACCES && errno != EROFS && errno != EPERM)
			fail("open %s for writing: unexpected %s", dev, strerror(errno));
		printf(P "blkcheck %s PASS open for writing refused (%s)\n", mode, strerror(errno));
		return 0;
	}
	lbs = logical_block(fd, dev);
	buf = xalloc(lbs);
	pread_all(fd, buf, lbs, 0);
	n = pwrite(fd, buf, lbs, 0);
	if (n >= 0)
		fail("a write to a read-only disk succeeded");
	printf(P "blkcheck %s PASS write refused (%s)\n", mode, strerror(errno));
	close(fd);
	return 0;
}

static uint64_t num(const char *s, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end || end == s)
		fail("bad %s '%s'", what, s);
	return v;
}

int main(int argc, char **argv)
{
	uint64_t off, len, seed;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2)
		mode = argv[1];
	if (argc == 3 && !strcmp(mode, "rofail"))
		return rofail(argv[2]);
	if (argc < 6)
		fail("usage: blkcheck stamp|verify|random DEV OFF_MIB LEN_MIB SEED [ROUNDS] | "
		     "rofail DEV");
	off = num(argv[3], "offset") * MIB;
	len = num(argv[4], "length") * MIB;
	seed = num(argv[5], "seed");
	if (!strcmp(mode, "stamp") || !strcmp(mode, "verify"))
		return stamp(argv[2], off, len, seed, !strcmp(mode, "verify"));
	if (!strcmp(mode, "random"))
		return random_test(argv[2], off, len, seed, argc > 6 ? (long)num(argv[6], "rounds")
								   : 300);
	fail("unknown mode");
}
