// SPDX-License-Identifier: MIT
/*
 * Opening the replicated volume (volume_open in volume.h).
 *
 * Two phases. The first only reads: every store's header and table are
 * checked, and for every chunk one copy is chosen and the others are found
 * current or stale. Any doubt (a damaged or foreign store, a split brain,
 * a chunk whose only copies may be older than a missing store's) is an
 * error, and nothing has been written. The second phase writes: new
 * members are formatted, stale copies are marked (generation 0) before the
 * header round that records this opening, so no later opening can mistake
 * them for current ones.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "blockdev/volume_internal.h"

#define MAX_STRIPES 1024


enum store_kind { ABSENT, EMPTY, VALID };

struct scan {
	enum store_kind kind[VOLUME_MAX_STORES];
	bool unreadable[VOLUME_MAX_STORES];  /* ABSENT because of an I/O error: kept for the probe */
	struct vmeta_header h[VOLUME_MAX_STORES];
	uint64_t maxgen[VOLUME_MAX_STORES];
	uint64_t dirty_chunks;         /* chunks resynchronised because of write intent */
	uint64_t *intent;              /* bit per chunk: its source copy has write intent */
};

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static struct volume *vol_alloc(const struct volume_config *cfg, char *err, size_t errlen)
{
	unsigned replicas = cfg->replicas ? cfg->replicas : (cfg->stores < 2 ? cfg->stores : 2);
	struct volume *vol = calloc(1, sizeof(*vol));
	pthread_rwlockattr_t attr;
	char why[200];

	if (!vol) {
		fail(err, errlen, "volume %s: out of memory", cfg->name ? cfg->name : "?");
		return NULL;
	}
	snprintf(vol->name, sizeof(vol->name), "%s", cfg->name ? cfg->name : "volume");
	pthread_mutex_init(&vol->state_lock, NULL);
	pthread_mutex_init(&vol->attach_lock, NULL);
	pthread_mutex_init(&vol->maint_lock, NULL);
	pthread_cond_init(&vol->maint_cond, NULL);
	if (vlayout_init(&vol->lay, cfg->size, cfg->chunk_size ? cfg->chunk_size : 1ull << 20,
			 replicas, cfg->stores, why, sizeof(why))) {
		fail(err, errlen, "volume %s: %s", vol->name, why);
		vol_free(vol);
		return NULL;
	}
	vol->log = cfg->log;
	vol->log_ctx = cfg->log_ctx;
	vol->probe_ms = cfg->probe_ms ? cfg->probe_ms : 1000;
	vol->idle_ms = cfg->idle_ms ? cfg->idle_ms : 5000;
	vol->reopen = cfg->reopen;
	vol->reopen_ctx = cfg->reopen_ctx;
	vol->nstripes = vol->lay.chunks < MAX_STRIPES ? (unsigned)vol->lay.chunks : MAX_STRIPES;
	vol->stripes = calloc(vol->nstripes, sizeof(*vol->stripes));
	vol->last_write = calloc(vol->lay.chunks, sizeof(uint64_t));
	for (unsigned i = 0; i < vol->lay.stores; i++) {
		const char *name = cfg->store_names ? cfg->store_names[i] : NULL;

		if (vrep_init(&vol->rep[i], vol, i, name)) {
			vol->nstripes = 0;
			fail(err, errlen, "volume %s: out of memory", vol->name);
			vol_free(vol);
			return NULL;
		}
	}
	if (!vol->stripes || !vol->last_write) {
		vol->nstripes = 0;
		fail(err, errlen, "volume %s: out of memory", vol->name);
		vol_free(vol);
		return NULL;
	}
	/* The resync's exclusive hold must not starve behind a stream of guest I/O. */
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	for (unsigned i = 0; i < vol->nstripes; i++)
		pthread_rwlock_init(&vol->stripes[i], &attr);
	pthread_rwlockattr_destroy(&attr);
	return vol;
}

/* Size, block size, read-only: what can be said before reading anything. */
static int check_store(struct volume *vol, struct blockdev *bd, unsigned i, char *err,
		       size_t errlen)
{
	uint64_t need = vlayout_store_bytes(&vol->lay, i), have = blockdev_size(bd);
	const char *name = vol->rep[i].name;

	if (bd->read_only)
		return fail(err, errlen, "volume %s: %s: read-only", vol->name, name);
	if (have < need)
		return fail(err, errlen, "volume %s: %s: truncated: store is %" PRIu64 " bytes, the "
			    "volume needs %" PRIu64, vol->name, name, have, need);
	if (bd->block_size > vol->bd.block_size)
		vol->bd.block_size = bd->block_size;
	return 0;
}

/*
 * A store that cannot be read is as good as missing, but its blockdev is
 * kept: the probe takes it back when it answers. (A store that reads but
 * is wrong stops the opening instead: that needs a person.)
 */
static void unreadable(struct volume *vol, struct scan *sc, unsigned i, const char *why)
{
	struct vol_replica *r = &vol->rep[i];

	sc->kind[i] = ABSENT;
	sc->unreadable[i] = true;
	sc->maxgen[i] = 0;
	memset(r->entries, 0, sizeof(uint64_t) * (r->slots ? r->slots : 1));
	vol_log(vol, "%s is out of service: %s", r->name, why);
	snprintf(r->probe_note, sizeof(r->probe_note), "%s", why);   /* said once */
}

static int read_headers(struct volume *vol, struct blockdev **stores, struct scan *sc, char *err,
			size_t errlen)
{
	bool have_uuid = false;

	for (unsigned i = 0; i < vol->lay.stores; i++) {
		struct vol_replica *r = &vol->rep[i];
		char why[300];
		int rc;

		sc->kind[i] = ABSENT;
		if (!stores[i])
			continue;
		if (check_store(vol, stores[i], i, err, errlen))
			return -1;
		rc = vrep_read_header(stores[i], &sc->h[i], why, sizeof(why));
		if (rc == VREP_IOERR) {
			unreadable(vol, sc, i, why);
			continue;
		}
		if (rc == VMETA_INVALID)
			return fail(err, errlen, "volume %s: %s: header: %s", vol->name, r->name, why);
		if (rc == VMETA_EMPTY) {
			sc->kind[i] = EMPTY;
			continue;
		}
		if (!have_uuid)
			memcpy(vol->uuid, sc->h[i].uuid, 16);
		have_uuid = true;
		if (vrep_check_header(vol, i, &sc->h[i], why, sizeof(why)))
			return fail(err, errlen, "volume %s: %s: %s", vol->name, r->name, why);
		sc->kind[i] = VALID;
	}
	if (vol->lay.size % vol->bd.block_size)
		return fail(err, errlen, "volume %s: size %" PRIu64 " is not a multiple of the "
			    "stores' %u-byte blocks", vol->name, vol->lay.size, vol->bd.block_size);
	return 0;
}

static int read_tables(struct volume *vol, struct blockdev **stores, struct scan *sc, char *err,
		       size_t errlen)
{
	for (unsigned i = 0; i < vol->lay.stores; i++) {
		struct vol_replica *r = &vol->rep[i];
		char why[300];
		int rc;

		if (sc->kind[i] != VALID)
			continue;
		rc = vrep_read_table(stores[i], &sc->h[i], r->entries, r->block_seq, why,
				     sizeof(why));
		if (rc == VREP_IOERR) {
			unreadable(vol, sc, i, why);
			continue;
		}
		if (rc)
			return fail(err, errlen, "volume %s: %s: %s", vol->name, r->name, why);
		for (uint64_t s = 0; s < r->slots; s++)
			if (vmeta_gen(r->entries[s]) > sc->maxgen[i])
				sc->maxgen[i] = vmeta_gen(r->entries[s]);
	}
	return 0;
}

/*
 * s holds data written at a generation t never saw s live at: s was used
 * without t. Both ways round is a split brain: two histories of the disk.
 */
static int check_split_brain(struct volume *vol, const struct scan *sc, char *err, size_t errlen)
{
	for (unsigned s = 0; s < vol->lay.stores; s++) {
		for (unsigned t = s + 1; t < vol->lay.stores; t++) {
			if (sc->kind[s] != VALID || sc->kind[t] != VALID)
				continue;
			if (sc->maxgen[s] > sc->h[t].last_live[s] &&
			    sc->maxgen[t] > sc->h[s].last_live[t])
				return fail(err, errlen, "volume %s: split brain: %s and %s were each "
					    "written while the other was missing (data of generation %"
					    PRIu64 " and %" PRIu64 "); zero the header of the one to "
					    "discard, it is then rebuilt from the others", vol->name,
					    vol->rep[s].name, vol->rep[t].name, sc->maxgen[s],
					    sc->maxgen[t]);
		}
	}
	return 0;
}

/* The copy other copies are judged against: highest generation, then freshest store, then primary. */
static int choose_source(struct volume *vol, const struct scan *sc, uint64_t c)
{
	const struct vlayout *l = &vol->lay;
	int best = -1;
	uint64_t best_gen = 0;

	for (unsigned k = 0; k < l->replicas; k++) {
		unsigned s = vlayout_store(l, c, k);
		uint64_t g;

		if (sc->kind[s] != VALID)
			continue;
		g = vmeta_gen(vol->rep[s].entries[vlayout_slot(l, c, s)]);
		if (g == 0)
			continue;
		if (best < 0 || g > best_gen ||
		    (g == best_gen && sc->h[s].generation > sc->h[best].generation)) {
			best = (int)s;
			best_gen = g;
		}
	}
	return best;
}

static void describe_chunk(const struct volume *vol, uint64_t c, char *out, size_t len)
{
	const struct vlayout *l = &vol->lay;
	int n = snprintf(out, len, "chunk %" PRIu64 " (bytes %" PRIu64 "..%" PRIu64 ", on stores",
			 c, c << l->chunk_shift, (c << l->chunk_shift) + vlayout_chunk_len(l, c) - 1);

	for (unsigned k = 0; k < l->replicas && n > 0 && (size_t)n < len; k++)
		n += snprintf(out + n, len - (size_t)n, " %u", vlayout_store(l, c, k));
	if (n > 0 && (size_t)n < len)
		snprintf(out + n, len - (size_t)n, ")");
}

/* A store that is missing may have been live after the chosen copy's store lost sight of it. */
static int check_absent(struct volume *vol, const struct scan *sc, uint64_t c, int src, char *err,
			size_t errlen)
{
	const struct vlayout *l = &vol->lay;

	for (unsigned k = 0; k < l->replicas; k++) {
		unsigned u = vlayout_store(l, c, k);
		char what[160];

		if (sc->kind[u] != ABSENT)
			continue;
		for (unsigned t = 0; t < l->stores; t++) {
			if (sc->kind[t] != VALID || sc->h[t].last_live[u] <= sc->h[src].last_live[u])
				continue;
			describe_chunk(vol, c, what, sizeof(what));
			return fail(err, errlen, "volume %s: %s: %s, which is missing, may hold a "
				    "newer copy than %s (%s saw it live at generation %" PRIu64 ", %s "
				    "only at %" PRIu64 ")", vol->name, what, vol->rep[u].name,
				    vol->rep[src].name, vol->rep[t].name, sc->h[t].last_live[u],
				    vol->rep[src].name, sc->h[src].last_live[u]);
		}
	}
	return 0;
}

static void mark_stale(struct vol_replica *r, uint64_t slot)
{
	vol_bit_set(r->stale, slot);
	r->nstale++;
	/* On disk too, before this opening's header round (see the file comment). */
	if (r->entries[slot])
		vrep_set_entry(r, slot, 0);
}

/*
 * Chooses the source copy of chunk c; copies with a lower generation are
 * stale, and so are all but the source when a copy with its generation
 * carries write intent (the replicas may differ after a crash).
 */
static int plan_chunk(struct volume *vol, struct scan *sc, uint64_t c, char *err, size_t errlen)
{
	const struct vlayout *l = &vol->lay;
	int src = choose_source(vol, sc, c);
	uint64_t src_gen;
	bool dirty = false, others = false;
	char what[160];

	if (src < 0) {
		describe_chunk(vol, c, what, sizeof(what));
		return fail(err, errlen, "volume %s: %s has no copy with data on the stores present",
			    vol->name, what);
	}
	if (check_absent(vol, sc, c, src, err, errlen))
		return -1;
	src_gen = vmeta_gen(vol->rep[src].entries[vlayout_slot(l, c, (unsigned)src)]);
	for (unsigned k = 0; k < l->replicas; k++) {
		unsigned s = vlayout_store(l, c, k);
		uint64_t e;

		if (sc->kind[s] != VALID)
			continue;
		e = vol->rep[s].entries[vlayout_slot(l, c, s)];
		if (vmeta_gen(e) == src_gen && (e & VMETA_DIRTY))
			dirty = true;
	}
	for (unsigned k = 0; k < l->replicas; k++) {
		unsigned s = vlayout_store(l, c, k);
		struct vol_replica *r = &vol->rep[s];
		uint64_t slot = vlayout_slot(l, c, s);

		if (sc->kind[s] == ABSENT || (int)s == src)
			continue;
		others = true;
		/* New members are all stale already. */
		if (sc->kind[s] != VALID || (vmeta_gen(r->entries[slot]) == src_gen && !dirty))
			continue;
		mark_stale(r, slot);
	}
	if (dirty)
		vol_bit_set(sc->intent, c);
	if (dirty && others)
		sc->dirty_chunks++;
	return 0;
}

static int plan(struct volume *vol, struct scan *sc, char *err, size_t errlen)
{
	sc->intent = calloc((vol->lay.chunks + 63) / 64, sizeof(uint64_t));
	if (!sc->intent)
		return fail(err, errlen, "volume %s: out of memory", vol->name);
	for (unsigned i = 0; i < vol->lay.stores; i++)
		if (sc->kind[i] == EMPTY)
			for (uint64_t s = 0; s < vol->rep[i].slots; s++)
				mark_stale(&vol->rep[i], s);
	for (uint64_t c = 0; c < vol->lay.chunks; c++)
		if (plan_chunk(vol, sc, c, err, errlen))
			return -1;
	return 0;
}

static int format_all(struct volume *vol, struct scan *sc, char *err, size_t errlen)
{
	randombytes_buf(vol->uuid, sizeof(vol->uuid));
	for (unsigned i = 0; i < vol->lay.stores; i++) {
		struct vol_replica *r = &vol->rep[i];
		int rc;

		/* Replicas must agree on never-written bytes too. */
		rc = blockdev_write_zeroes(r->bd, vol->lay.data_start, r->slots * vol->lay.chunk_size,
					   true);
		for (uint64_t s = 0; s < r->slots && !rc; s++)
			r->entries[s] = 1;
		if (!rc) {
			vrep_dirty_all_tables(r);
			rc = vrep_sync(r);
		}
		if (rc)
			return fail(err, errlen, "volume %s: %s: formatting: %s", vol->name, r->name,
				    strerror(-rc));
		sc->kind[i] = VALID;
	}
	pthread_mutex_lock(&vol->state_lock);
	/* Generation 1, clean; opening then moves to 2, not clean. */
	__atomic_store_n(&vol->gen, 1, __ATOMIC_RELEASE);
	vol_header_round_locked(vol, true, false);
	pthread_mutex_unlock(&vol->state_lock);
	for (unsigned i = 0; i < vol->lay.stores; i++)
		if (vol_state(&vol->rep[i]) == VOLUME_REPLICA_FAILED)
			return fail(err, errlen, "volume %s: %s: formatting failed", vol->name,
				    vol->rep[i].name);
	vol_log(vol, "formatted: %" PRIu64 " bytes, %u stores, %u replicas, chunks of %" PRIu64
		" bytes", vol->lay.size, vol->lay.stores, vol->lay.replicas, vol->lay.chunk_size);
	return 0;
}

static bool has_failed_replica(struct volume *vol, uint64_t c)
{
	for (unsigned k = 0; k < vol->lay.replicas; k++)
		if (vol_state(&vol->rep[vlayout_store(&vol->lay, c, k)]) == VOLUME_REPLICA_FAILED)
			return true;
	return false;
}

/*
 * A chunk whose source has write intent while another replica is out of
 * service (missing, unreadable, or failed while its stale mark was being
 * written): that replica may hold an older version with no intent of its
 * own (the crash came before its turn), which would look current when it
 * returns. The source is given this session's generation, as a write
 * would, so that copy is stale by generation.
 */
static void raise_unresolved(struct volume *vol, const struct scan *sc)
{
	const struct vlayout *l = &vol->lay;
	uint64_t g = vol_gen_now(vol);

	for (uint64_t c = 0; sc->intent && c < l->chunks; c++) {
		if (!vol_bit(sc->intent, c) || !has_failed_replica(vol, c))
			continue;
		for (unsigned k = 0; k < l->replicas; k++) {
			struct vol_replica *r = &vol->rep[vlayout_store(l, c, k)];
			uint64_t slot = vlayout_slot(l, c, r->idx);

			if (vol_current(r, slot))
				vrep_mark_write(r, slot, g);
		}
	}
	for (unsigned i = 0; i < l->stores; i++) {
		struct vol_replica *r = &vol->rep[i];
		int rc;

		if (vol_state(r) == VOLUME_REPLICA_FAILED)
			continue;
		rc = vrep_sync(r);
		if (rc)
			vol_mark_failed(vol, r, "writing its table at open: %s", strerror(-rc));
	}
}

/* Phase two of an existing volume: new members, stale marks, then the header round. */
static void write_open_state(struct volume *vol, struct scan *sc)
{
	uint64_t g = vol_gen_now(vol);

	for (unsigned i = 0; i < vol->lay.stores; i++) {
		struct vol_replica *r = &vol->rep[i];
		int rc;

		if (sc->kind[i] == ABSENT)
			continue;
		if (sc->kind[i] == EMPTY)
			vrep_dirty_all_tables(r);
		rc = vrep_sync(r);
		if (rc) {
			vol_log(vol, "%s failed (writing its table at open: %s)", r->name,
				strerror(-rc));
			__atomic_store_n(&r->state, VOLUME_REPLICA_FAILED, __ATOMIC_RELEASE);
		}
	}
	for (unsigned i = 0; i < vol->lay.stores; i++) {
		if (sc->kind[i] == VALID && sc->h[i].generation > g)
			g = sc->h[i].generation;
		for (unsigned t = 0; t < vol->lay.stores; t++)
			if (sc->kind[t] == VALID && sc->h[t].last_live[i] > vol->last_live[i])
				vol->last_live[i] = sc->h[t].last_live[i];
	}
	pthread_mutex_lock(&vol->state_lock);
	__atomic_store_n(&vol->gen, g, __ATOMIC_RELEASE);
	/* Every opening is a new generation: writes of this session are told apart. */
	vol_header_round_locked(vol, false, true);
	pthread_mutex_unlock(&vol->state_lock);
	raise_unresolved(vol, sc);
}

static void set_states(struct volume *vol, struct blockdev **stores, const struct scan *sc)
{
	for (unsigned i = 0; i < vol->lay.stores; i++) {
		struct vol_replica *r = &vol->rep[i];

		r->bd = stores[i];          /* an unreadable store stays, for the probe */
		r->state = sc->kind[i] == ABSENT ? VOLUME_REPLICA_FAILED
			   : r->nstale ? VOLUME_REPLICA_RESYNCING : VOLUME_REPLICA_LIVE;
	}
}

/* On failure the caller keeps its stores: detach them before freeing. */
static int give_back(struct volume *vol)
{
	if (vol->maint_running)
		vol_maint_stop(vol);
	if (vol->pool.threads)
		vpool_stop(&vol->pool);
	for (unsigned i = 0; i < vol->lay.stores; i++)
		vol->rep[i].bd = NULL;
	vol_free(vol);
	return -1;
}

static void log_opened(struct volume *vol, const struct scan *sc, bool unclean)
{
	char detail[400] = "";
	int n = 0;

	for (unsigned i = 0; i < vol->lay.stores; i++) {
		struct vol_replica *r = &vol->rep[i];
		const char *what = sc->unreadable[i] ? "unreadable" : sc->kind[i] == ABSENT ? "missing"
				   : sc->kind[i] == EMPTY ? "new member" : NULL;
		uint64_t stale;

		if (n < 0 || (size_t)n >= sizeof(detail))
			break;
		if (vol_state(r) == VOLUME_REPLICA_FAILED && !what)
			what = "failed";
		stale = __atomic_load_n(&r->nstale, __ATOMIC_ACQUIRE);   /* the resync runs */
		if (what)
			n += snprintf(detail + n, sizeof(detail) - (size_t)n, "; %s %s", r->name, what);
		else if (stale)
			n += snprintf(detail + n, sizeof(detail) - (size_t)n, "; %s has %" PRIu64
				      " stale chunks", r->name, stale);
	}
	vol_log(vol, "opened at generation %" PRIu64 "%s%s", vol_gen_now(vol),
		unclean ? " after an unclean shutdown" : "", detail);
	if (sc->dirty_chunks)
		vol_log(vol, "%" PRIu64 " chunks had write intent: their replicas are "
			"resynchronised from one chosen copy", sc->dirty_chunks);
}

/* A store lost earlier is never closed cleanly: only the last ones in service tell. */
static bool was_unclean(const struct volume *vol, const struct scan *sc)
{
	uint64_t g = 0;
	bool unclean = false;

	for (unsigned i = 0; i < vol->lay.stores; i++)
		if (sc->kind[i] == VALID && sc->h[i].generation > g)
			g = sc->h[i].generation;
	for (unsigned i = 0; i < vol->lay.stores; i++)
		unclean |= sc->kind[i] == VALID && sc->h[i].generation == g && !sc->h[i].clean;
	return unclean;
}

static int start(struct volume *vol, const struct volume_config *cfg, char *err, size_t errlen)
{
	unsigned workers = cfg->workers ? cfg->workers
			   : (2 * vol->lay.stores < 16 ? 2 * vol->lay.stores : 16);
	int rc = vpool_start(&vol->pool, workers);

	if (!rc)
		rc = vol_maint_start(vol);
	if (rc)
		return fail(err, errlen, "volume %s: starting threads: %s", vol->name,
			    strerror(-rc));
	return 0;
}

int volume_open(const struct volume_config *cfg, struct blockdev **stores, unsigned local_store,
		struct volume **out, char *err, size_t errlen)
{
	struct volume *vol;
	struct scan *sc;
	unsigned nvalid = 0, nabsent = 0, absent = 0;
	bool unclean = false;

	*out = NULL;
	if (sodium_init() < 0)
		return fail(err, errlen, "volume: libsodium failed to initialise");
	vol = vol_alloc(cfg, err, errlen);
	if (!vol)
		return -1;
	vol->bd.ops = &vol_blockdev_ops;
	vol->bd.block_size = 512;
	vol->bd.discard = true;
	vol->local = local_store;
	sc = calloc(1, sizeof(*sc));
	if (!sc) {
		fail(err, errlen, "volume %s: out of memory", vol->name);
		return give_back(vol);
	}
	if (read_headers(vol, stores, sc, err, errlen) || read_tables(vol, stores, sc, err, errlen))
		goto fail;
	for (unsigned i = 0; i < vol->lay.stores; i++) {
		nvalid += sc->kind[i] == VALID;
		if (sc->kind[i] == ABSENT)
			absent = i, nabsent++;
	}
	unclean = was_unclean(vol, sc);
	if (!nvalid && nabsent) {
		fail(err, errlen, "volume %s: no store has a volume header and %s is unavailable: "
		     "creating a volume needs all %u stores", vol->name, vol->rep[absent].name,
		     vol->lay.stores);
		goto fail;
	}
	if (nvalid && (check_split_brain(vol, sc, err, errlen) || plan(vol, sc, err, errlen)))
		goto fail;
	/* Phase two: from here on, stores are written. */
	set_states(vol, stores, sc);
	if (!nvalid && format_all(vol, sc, err, errlen))
		goto fail;
	write_open_state(vol, sc);
	pthread_mutex_lock(&vol->state_lock);
	if (vol_count_unavailable_locked(vol)) {
		pthread_mutex_unlock(&vol->state_lock);
		fail(err, errlen, "volume %s: stores failed while opening; some chunks have no "
		     "current copy left", vol->name);
		goto fail;
	}
	pthread_mutex_unlock(&vol->state_lock);
	if (start(vol, cfg, err, errlen))
		goto fail;
	log_opened(vol, sc, unclean);
	free(sc->intent);
	free(sc);
	*out = vol;
	return 0;
fail:
	if (sc)
		free(sc->intent);
	free(sc);
	return give_back(vol);
}
