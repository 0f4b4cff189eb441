// SPDX-License-Identifier: MIT
/*
 * volume-bench: the replicated volume's own cost on this host, no guest, no
 * fabric: the same jobs on one raw file (file_store, what a single-node
 * <disk type='file'> uses) and on a volume of N files on this host with R
 * replicas (what an I/O node serves), measured in one run, as ratios.
 *
 *   sequential 1 MiB reads and writes, random 4 KiB reads and writes,
 *   each by T threads (the queue's workers) for S seconds
 *
 * Reads of a volume go to one replica: they should cost what the file's
 * do (the goal of docs/volume.md). Writes go to every replica (R writes
 * instead of one) and set write intent on a chunk's first write.
 *
 *   volume-bench [--dir D] [--mib M] [--threads T] [--secs S] [--stores N]
 *                [--replicas R] [--cache none|writeback]
 *
 * --cache none (O_DIRECT) needs a filesystem that has it (not tmpfs);
 * writeback measures the CPU path through the page cache.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blockdev/file_store.h"
#include "blockdev/volume.h"
#include "blockdev/volume_layout.h"

#define MAX_STORES 8
#define MAX_THREADS 32
#define CHUNK (1ull << 20)           /* the volume's default chunk */

struct opts {
	const char *dir;
	uint64_t mib;
	unsigned threads, secs, stores, replicas;
	enum file_store_cache cache;
};

enum job { SEQREAD, SEQWRITE, RANDREAD, RANDWRITE, NJOBS };
static const char *const job_names[NJOBS] = { "seqread", "seqwrite", "randread", "randwrite" };

struct run {
	struct blockdev *bd;
	enum job job;
	uint64_t size;
	uint64_t deadline_ns;
	_Atomic uint64_t next_seq;     /* sequential jobs: the next 1 MiB, shared */
	_Atomic uint64_t ops, errors;
};

struct worker {
	struct run *r;
	unsigned id;
	pthread_t thread;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->r;
	bool seq = r->job == SEQREAD || r->job == SEQWRITE;
	bool wr = r->job == SEQWRITE || r->job == RANDWRITE;
	size_t len = seq ? 1u << 20 : 4096;
	uint64_t seed = 0x9e3779b97f4a7c15ull * (w->id + 1), off;
	void *buf;

	if (posix_memalign(&buf, 4096, len))
		return NULL;
	memset(buf, 0x5a, len);
	while (now_ns() < r->deadline_ns) {
		struct iovec iov = { buf, len };
		int rc;

		if (seq)
			off = (atomic_fetch_add(&r->next_seq, len)) % (r->size - len + 1) / len * len;
		else
			off = xorshift(&seed) % (r->size / len) * len;
		rc = wr ? blockdev_write(r->bd, &iov, 1, off) : blockdev_read(r->bd, &iov, 1, off);
		atomic_fetch_add(rc ? &r->errors : &r->ops, 1);
	}
	free(buf);
	return NULL;
}

/* Runs one job on bd; returns operations per second, or -1 on an error. */
static double run_job(const struct opts *o, struct blockdev *bd, enum job job)
{
	struct worker w[MAX_THREADS];
	struct run r = { .bd = bd, .job = job, .size = blockdev_size(bd) };
	uint64_t t0 = now_ns();

	r.deadline_ns = t0 + (uint64_t)o->secs * 1000000000ull;
	for (unsigned i = 0; i < o->threads; i++) {
		w[i] = (struct worker){ .r = &r, .id = i };
		pthread_create(&w[i].thread, NULL, worker_main, &w[i]);
	}
	for (unsigned i = 0; i < o->threads; i++)
		pthread_join(w[i].thread, NULL);
	if (atomic_load(&r.errors)) {
		fprintf(stderr, "volume-bench: %s: %llu errors\n", job_names[job],
			(unsigned long long)atomic_load(&r.errors));
		return -1;
	}
	return (double)atomic_load(&r.ops) * 1e9 / (double)(now_ns() - t0);
}

/* A file of this size (filled through its blockdev later). */
static int make_file(const char *path, uint64_t size)
{
	static char zeros[1 << 20];
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);

	if (fd < 0)
		return -errno;
	for (uint64_t off = 0; off < size; off += sizeof(zeros)) {
		size_t n = size - off < sizeof(zeros) ? size - off : sizeof(zeros);

		if (pwrite(fd, zeros, n, (off_t)off) != (ssize_t)n) {
			close(fd);
			return -EIO;
		}
	}
	fsync(fd);
	close(fd);
	return 0;
}

/*
 * Writes all of bd once: a new volume's stores are formatted sparse (their
 * data reads as zeros without I/O), which would make its reads look free.
 */
static int fill(struct blockdev *bd)
{
	uint64_t size = blockdev_size(bd);
	size_t len = 1u << 20;
	void *buf;
	int rc = 0;

	if (posix_memalign(&buf, 4096, len))
		return -ENOMEM;
	memset(buf, 0xa5, len);
	for (uint64_t off = 0; off < size && !rc; off += len) {
		struct iovec iov = { buf, size - off < len ? size - off : len };

		rc = blockdev_write(bd, &iov, 1, off);
	}
	if (!rc)
		rc = blockdev_flush(bd);
	free(buf);
	if (rc)
		fprintf(stderr, "volume-bench: filling: %s\n", strerror(-rc));
	return rc;
}

static void bench_log(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "%s\n", msg);
}

static int open_file(const struct opts *o, const char *path, struct blockdev **bd)
{
	struct file_store_opts fo = { .cache = o->cache };
	char err[256];

	if (file_store_open(path, &fo, bd, err, sizeof(err))) {
		fprintf(stderr, "volume-bench: %s\n", err);
		return -1;
	}
	return 0;
}

static int open_volume(const struct opts *o, char paths[][512], struct volume **vol)
{
	struct blockdev *bds[MAX_STORES] = { NULL };
	const char *names[MAX_STORES];
	struct volume_config cfg = {
		.name = "bench", .size = o->mib << 20, .chunk_size = CHUNK, .stores = o->stores,
		.replicas = o->replicas, .store_names = names, .log = bench_log,
	};
	char err[256];

	for (unsigned i = 0; i < o->stores; i++) {
		names[i] = paths[i];
		if (open_file(o, paths[i], &bds[i]))
			goto fail;
	}
	if (volume_open(&cfg, bds, 0, vol, err, sizeof(err)) == 0)
		return 0;
	fprintf(stderr, "volume-bench: %s\n", err);
fail:
	for (unsigned i = 0; i < o->stores; i++)
		if (bds[i])
			blockdev_close(bds[i]);
	return -1;
}

static void usage(void)
{
	fprintf(stderr, "usage: volume-bench [--dir D] [--mib M] [--threads T] [--secs S] "
		"[--stores N] [--replicas R] [--cache none|writeback]\n");
	exit(2);
}

static void parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "dir", 1, NULL, 'd' },     { "mib", 1, NULL, 'm' },
		{ "threads", 1, NULL, 't' }, { "secs", 1, NULL, 's' },
		{ "stores", 1, NULL, 'n' },  { "replicas", 1, NULL, 'r' },
		{ "cache", 1, NULL, 'c' },   { 0 },
	};
	int c;

	*o = (struct opts){ .dir = "/var/tmp", .mib = 256, .threads = 4, .secs = 3, .stores = 2,
			    .replicas = 2, .cache = FILE_STORE_NONE };
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'd': o->dir = optarg; break;
		case 'm': o->mib = strtoull(optarg, NULL, 0); break;
		case 't': o->threads = (unsigned)atoi(optarg); break;
		case 's': o->secs = (unsigned)atoi(optarg); break;
		case 'n': o->stores = (unsigned)atoi(optarg); break;
		case 'r': o->replicas = (unsigned)atoi(optarg); break;
		case 'c':
			if (!strcmp(optarg, "none"))
				o->cache = FILE_STORE_NONE;
			else if (!strcmp(optarg, "writeback"))
				o->cache = FILE_STORE_WRITEBACK;
			else
				usage();
			break;
		default: usage();
		}
	}
	if (o->mib < 16 || o->mib > (1u << 20) || !o->threads || o->threads > MAX_THREADS ||
	    !o->secs || o->stores < 1 || o->stores > MAX_STORES || !o->replicas ||
	    o->replicas > o->stores)
		usage();
}

int main(int argc, char **argv)
{
	struct opts o;
	struct vlayout lay;
	char dir[400], file[600], paths[MAX_STORES][512], why[200];
	struct blockdev *fbd = NULL;
	struct volume *vol = NULL;
	double f[NJOBS], v[NJOBS];
	int rc = 1;

	parse(argc, argv, &o);
	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(dir, sizeof(dir), "%s/volume-bench-XXXXXX", o.dir);
	if (!mkdtemp(dir)) {
		perror("volume-bench: mkdtemp");
		return 1;
	}
	if (vlayout_init(&lay, o.mib << 20, CHUNK, o.replicas, o.stores, why, sizeof(why))) {
		fprintf(stderr, "volume-bench: %s\n", why);
		goto out;
	}
	snprintf(file, sizeof(file), "%s/file.img", dir);
	if (make_file(file, o.mib << 20))
		goto out;
	for (unsigned i = 0; i < o.stores; i++) {
		snprintf(paths[i], sizeof(paths[i]), "%s/store%u.img", dir, i);
		if (make_file(paths[i], vlayout_store_bytes(&lay, i)))
			goto out;
	}
	printf("volume-bench: %llu MiB, %u threads, %u s per job, %s; volume: %u stores, R=%u, "
	       "on this host\n", (unsigned long long)o.mib, o.threads, o.secs,
	       o.cache == FILE_STORE_NONE ? "O_DIRECT" : "page cache", o.stores, o.replicas);
	if (open_file(&o, file, &fbd) || open_volume(&o, paths, &vol) ||
	    fill(fbd) || fill(volume_blockdev(vol)))
		goto out;
	/* interleaved, so that a change in the host's load hits both alike */
	for (unsigned j = 0; j < NJOBS; j++) {
		f[j] = run_job(&o, fbd, (enum job)j);
		v[j] = run_job(&o, volume_blockdev(vol), (enum job)j);
		if (f[j] < 0 || v[j] < 0)
			goto out;
		printf("  %-9s  file %9.0f ops/s   volume %9.0f ops/s   volume/file %.2fx\n",
		       job_names[j], f[j], v[j], v[j] / f[j]);
	}
	rc = 0;
out:
	if (fbd)
		blockdev_close(fbd);
	if (vol)
		blockdev_close(volume_blockdev(vol));
	for (unsigned i = 0; i < o.stores; i++) {
		snprintf(paths[i], sizeof(paths[i]), "%s/store%u.img", dir, i);
		unlink(paths[i]);
	}
	unlink(file);
	rmdir(dir);
	return rc;
}
