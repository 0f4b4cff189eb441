/*
 * grappe DSM coherence protocol: a home-based MSI directory at page
 * granularity. This model IS the design of dsm/dsm_proto.c: same states,
 * same message names, same transitions. A change to the protocol changes
 * this file first, then the C (docs/dsm.md has the tables). Each d_step
 * below is one step taken under the page's lock in the C engine, and its
 * sends leave in that order (the engine's outbox keeps the order).
 *
 * Shape: N nodes, P pages; page p is homed on node p (node 2 is a pure
 * client). Channels are FIFO per ordered pair and page (below). Each node is two
 * processes, as in the engine: cpu() = the faulting threads and the
 * evictor, rx() = the receive thread. The home answers its own node's
 * requests inline, without messages.
 *
 * Checked (ci/check-models):
 *  - SWMR: a page in M on one node is held nowhere else;
 *  - data value: every copy a node holds carries the last written version;
 *  - directory invariants when the entry is idle;
 *  - every request is answered: every run is finite (a budget bounds the
 *    requests and writes of each node), so "no invalid end state, every
 *    channel empty at the end" (pan -q) means no request is left pending;
 *  - with -DLIVE: writes are unbounded and ltl "answered" is checked
 *    under weak fairness (no starvation).
 */

#define N 3
#ifndef P
#define P 2             /* 1 or 2 pages */
#endif
#define NONE 15
#define VMOD 4          /* versions wrap; a stale copy is still caught */
#ifndef BUDGET
#define BUDGET 2        /* requests + writes per node */
#endif
#define QCAP 4          /* per pair and page; send asserts it is never full */

/*
 * ci/check-models builds with -DCOVER_ENV and runs with COVER=n for each
 * race below, expecting the assertion to fail: the race is reachable, so
 * the checks really covered it.
 */
#ifdef COVER_ENV
/* the race to reach is named at run time (COVER=n): one build for all */
byte cover_sel;
#define cover(n) assert(cover_sel != n)
#else
#ifndef COVER
#define COVER 0
#endif
#define cover(n) assert(COVER != n)
#endif

mtype = { GET_S, GET_M, UPGRADE, PUT_M, INV, INV_ACK, FWD_GET_S, FWD_GET_M,
	  FWD_DATA, DATA, DATA_ZERO, UPG_ACK, PUT_ACK };

/* enum dsm_state */
#define I    0
#define S    1
#define M    2
#define IS_D 3
#define IM_D 4
#define SM_A 5
#define MI_A 6

#define HOME(p)  (p)
#define ST(n,p)  st[(n)*P+(p)]
#define VER(n,p) ver[(n)*P+(p)]
#define CH(s,d,p) ch[((s)*N+(d))*P+(p)]

/*
 * type, page, version of the data carried (0 = a zero page), grant M.
 * One FIFO channel per ordered pair AND page: messages about different
 * pages may overtake each other. The transports keep a pair in order, but
 * the engine relies on order per page only (a node may hold back one
 * page's INV/FWD_* while others go on: hold_us in dsm/dsm.h).
 */
chan ch[N*N*P] = [QCAP] of { mtype, byte, byte, bit };

byte st[N*P];           /* each node's state of each page */
byte ver[N*P];          /* version of its copy (or of the PutM buffer in MI_A) */
byte latest[P];         /* last version written */
bit lpend[P];           /* the home has a local request queued or running */

/* The directory entry, kept by the home. */
byte owner[P] = NONE;   /* node in M, or NONE: the home's copy is valid */
byte sharers[P];        /* remote nodes that may hold S (a superset) */
bit zero[P] = 1;        /* never written: the content is zero */
bit busy[P];            /* a transaction is waiting for acks or data */
byte treq[P];
mtype tkind[P];
byte tacks[P];
bit twait[P];           /* waiting for FWD_DATA from the owner */
byte tver[P];           /* data captured for the grant */
byte qlen[P];           /* requests that arrived while busy, FIFO */
byte qreq[P*N];
mtype qkind[P*N];
byte qver[P*N];

#define HOLDS(n,p) (ST(n,p) == S || ST(n,p) == M || ST(n,p) == SM_A)
#define ALONE(a,b,c,p) (ST(a,p) != M || !(HOLDS(b,p) || HOLDS(c,p)))
#define SWMR(p) (ALONE(0,1,2,p) && ALONE(1,0,2,p) && ALONE(2,0,1,p))
#define FRESH(n,p) (!HOLDS(n,p) || VER(n,p) == latest[p])
#define DATAOK(p) (FRESH(0,p) && FRESH(1,p) && FRESH(2,p))
#define DIROK(p) (busy[p] || \
	(((owner[p] == HOME(p)) == (ST(HOME(p),p) == M)) && \
	 (owner[p] != NONE || zero[p] || ST(HOME(p),p) == S) && \
	 (!zero[p] || (owner[p] == NONE && latest[p] == 0))))
#if P == 2
#define ALLOK (SWMR(0) && SWMR(1) && DATAOK(0) && DATAOK(1) && DIROK(0) && DIROK(1))
#else
#define ALLOK (SWMR(0) && DATAOK(0) && DIROK(0))
#endif

active proctype monitor()
{
end:	atomic { !ALLOK -> assert(ALLOK) }
}

/* ---- sending ---- */

inline send(d, t, p, v, g)
{
	assert(d != me && nfull(CH(me, d, p)));
	CH(me, d, p)!t, p, v, g
}

/* A page whose content is zero travels as DATA_ZERO, without payload. */
inline send_data(d, p, v, g)
{
	if
	:: v == 0 -> send(d, DATA_ZERO, p, 0, g)
	:: else -> send(d, DATA, p, v, g)
	fi
}

/* ---- the home ---- */

/* Grant M to r: every other copy is gone. */
inline grant_m(p, r, k, v)
{
	owner[p] = r;
	sharers[p] = 0;
	zero[p] = 0;
	if
	:: r == me ->
		/* UPGRADE: clear write protection; else install the data. */
		if
		:: k != UPGRADE -> VER(me, p) = v
		:: else
		fi;
		ST(me, p) = M;
		lpend[p] = 0
	:: else ->
		if
		:: k == UPGRADE -> send(r, UPG_ACK, p, 0, 1)
		:: else -> send_data(r, p, v, 1)
		fi
	fi
}

/* Invalidate the remote sharers in inv, grant when they all acked. */
inline start_inv(p, r, k, v)
{
	busy[p] = 1; treq[p] = r; tkind[p] = k; tver[p] = v; tacks[p] = 0;
	s = 0;
	do
	:: s < N ->
		if
		:: (inv >> s) & 1 -> send(s, INV, p, 0, 0); tacks[p]++
		:: else
		fi;
		s++
	:: else -> break
	od;
	s = 0
}

/* Ask the owner for the page (it answers FWD_DATA to the home). */
inline start_fwd(p, r, k)
{
	busy[p] = 1; treq[p] = r; tkind[p] = k; twait[p] = 1;
	if
	:: k == GET_S -> send(owner[p], FWD_GET_S, p, 0, 0)
	:: else -> send(owner[p], FWD_GET_M, p, 0, 0)
	fi
}

/* A request for page p from r (r == me: a local fault), directory idle. */
inline home_req(p, r, k, v)
{
	if
	:: r == me ->
		if
		:: (k == GET_S && (ST(me, p) == S || ST(me, p) == M)) ||
		   (k == GET_M && ST(me, p) == M) ->
			lpend[p] = 0            /* satisfied meanwhile: wake */
		:: k == GET_M && ST(me, p) == S ->
			/* upgrade at the home */
			inv = sharers[p];
			if
			:: inv == 0 -> grant_m(p, me, UPGRADE, 0)
			:: else -> cover(1); start_inv(p, me, UPGRADE, 0)
			fi
		:: ST(me, p) == I && owner[p] == NONE ->
			/* zero page, never written: no data moves */
			assert(zero[p]);
			if
			:: k == GET_S && sharers[p] == 0 ->
				/* nobody else has it: take M (read-only zero page) */
				VER(me, p) = 0; ST(me, p) = M;
				owner[p] = me; zero[p] = 0; lpend[p] = 0
			:: k == GET_S && sharers[p] != 0 ->
				VER(me, p) = 0; ST(me, p) = S; lpend[p] = 0
			:: k == GET_M ->
				inv = sharers[p];
				if
				:: inv == 0 -> grant_m(p, me, GET_M, 0)
				:: else -> start_inv(p, me, GET_M, 0)
				fi
			fi
		:: ST(me, p) == I && owner[p] != NONE ->
			assert(owner[p] != me);
			start_fwd(p, me, k)
		fi
	:: r != me && k == PUT_M ->
		if
		:: owner[p] == r ->
			owner[p] = NONE;
			if
			:: v == 0 -> cover(2); zero[p] = 1     /* the home stays absent */
			:: else -> VER(me, p) = v; ST(me, p) = S
			fi;
			sharers[p] = 0
		:: else -> cover(3)             /* stale: a FWD_* took the data */
		fi;
		send(r, PUT_ACK, p, 0, 0)
	:: r != me && k == GET_S ->
		if
		:: owner[p] == NONE ->
			sharers[p] = sharers[p] | (1 << r);
			if
			:: zero[p] -> send(r, DATA_ZERO, p, 0, 0)
			:: else -> assert(ST(me, p) == S); send_data(r, p, VER(me, p), 0)
			fi
		:: owner[p] == me ->
			/* write-protect the home's copy, share it */
			ST(me, p) = S; owner[p] = NONE;
			sharers[p] = sharers[p] | (1 << r);
			send_data(r, p, VER(me, p), 0)
		:: else ->
			assert(owner[p] != r);
			start_fwd(p, r, GET_S)
		fi
	:: r != me && (k == GET_M || k == UPGRADE) ->
		/* an UPGRADE whose S copy was invalidated meanwhile is a GET_M */
		if
		:: k == UPGRADE && !(owner[p] == NONE && ((sharers[p] >> r) & 1)) -> cover(4); k = GET_M
		:: else
		fi;
		if
		:: owner[p] == NONE ->
			if
			:: k == UPGRADE || zero[p] -> tv = 0
			:: else -> assert(ST(me, p) == S); tv = VER(me, p)
			fi;
			/* write-protected already: copy, then drop */
			if
			:: ST(me, p) == S -> ST(me, p) = I; VER(me, p) = 0
			:: else
			fi;
			inv = sharers[p] & ~(1 << r);
			if
			:: inv == 0 -> grant_m(p, r, k, tv)
			:: else -> start_inv(p, r, k, tv)
			fi
		:: owner[p] == me ->
			/* write-protect, copy, drop */
			tv = VER(me, p); ST(me, p) = I; VER(me, p) = 0;
			grant_m(p, r, GET_M, tv)
		:: else ->
			assert(owner[p] != r);
			start_fwd(p, r, GET_M)
		fi
	fi;
	inv = 0; tv = 0
}

inline enqueue(p, r, k, v)
{
	assert(qlen[p] < N);
	qreq[p * N + qlen[p]] = r; qkind[p * N + qlen[p]] = k; qver[p * N + qlen[p]] = v;
	qlen[p]++
}

/* The transaction is over: serve the queue until one starts another. */
inline finish(p)
{
	busy[p] = 0; treq[p] = 0; tkind[p] = 0; tacks[p] = 0; twait[p] = 0; tver[p] = 0;
	do
	:: !busy[p] && qlen[p] > 0 ->
		r2 = qreq[p * N]; k2 = qkind[p * N]; v2 = qver[p * N];
		s = 1;
		do
		:: s < qlen[p] ->
			qreq[p * N + s - 1] = qreq[p * N + s];
			qkind[p * N + s - 1] = qkind[p * N + s];
			qver[p * N + s - 1] = qver[p * N + s];
			s++
		:: else -> break
		od;
		qlen[p]--;
		qreq[p * N + qlen[p]] = 0; qkind[p * N + qlen[p]] = 0; qver[p * N + qlen[p]] = 0;
		s = 0;
		home_req(p, r2, k2, v2)
	:: else -> break
	od;
	r2 = 0; k2 = 0; v2 = 0
}

/* A local fault on a page homed here: no message. */
inline local_req(p, k)
{
	lpend[p] = 1;
	if
	:: busy[p] -> cover(9); enqueue(p, me, k, 0)
	:: else -> r2 = me; k2 = k; home_req(p, r2, k2, 0); r2 = 0; k2 = 0
	fi
}

/* ---- one message, on the receive thread ---- */
inline handle(src)
{
	if
	:: HOME(pg) == me && (t == GET_S || t == GET_M || t == UPGRADE || t == PUT_M) ->
		if
		:: busy[pg] -> cover(5); enqueue(pg, src, t, vv)
		:: else -> r2 = src; k2 = t; home_req(pg, r2, k2, vv); r2 = 0; k2 = 0
		fi
	:: HOME(pg) == me && t == INV_ACK ->
		assert(busy[pg] && !twait[pg] && tacks[pg] > 0);
		tacks[pg]--;
		if
		:: tacks[pg] == 0 ->
			grant_m(pg, treq[pg], tkind[pg], tver[pg]);
			finish(pg)
		:: else
		fi
	:: HOME(pg) == me && t == FWD_DATA ->
		assert(busy[pg] && twait[pg] && src == owner[pg]);
		if
		:: tkind[pg] == GET_S ->
			/* the old owner keeps S; the home keeps the copy */
			owner[pg] = NONE;
			VER(me, pg) = vv; ST(me, pg) = S;
			sharers[pg] = sharers[pg] | (1 << src);
			if
			:: treq[pg] == me -> lpend[pg] = 0
			:: else ->
				sharers[pg] = sharers[pg] | (1 << treq[pg]);
				send_data(treq[pg], pg, vv, 0)
			fi
		:: else ->
			grant_m(pg, treq[pg], GET_M, vv)
		fi;
		finish(pg)
	/* as a client of another home */
	:: HOME(pg) != me && (t == DATA || t == DATA_ZERO) ->
		if
		:: g -> assert(ST(me, pg) == IM_D); ST(me, pg) = M
		:: else -> assert(ST(me, pg) == IS_D); ST(me, pg) = S
		fi;
		VER(me, pg) = vv
	:: HOME(pg) != me && t == UPG_ACK ->
		assert(ST(me, pg) == SM_A);
		ST(me, pg) = M
	:: HOME(pg) != me && t == INV ->
		if
		:: ST(me, pg) == S -> ST(me, pg) = I; VER(me, pg) = 0
		:: ST(me, pg) == SM_A -> cover(6); ST(me, pg) = IM_D; VER(me, pg) = 0
		/*
		 * Not holding it: a silent eviction, or a FWD_GET_S answered
		 * from the PutM buffer, made the sharer set a superset.
		 */
		:: ST(me, pg) == I || ST(me, pg) == IS_D || ST(me, pg) == IM_D || ST(me, pg) == MI_A
		:: else -> assert(false)
		fi;
		send(src, INV_ACK, pg, 0, 0)
	:: HOME(pg) != me && t == FWD_GET_S ->
		if
		:: ST(me, pg) == M -> ST(me, pg) = S
		:: ST(me, pg) == MI_A -> cover(7)  /* answer from the PutM buffer */
		:: else -> assert(false)
		fi;
		send(src, FWD_DATA, pg, VER(me, pg), 0)
	:: HOME(pg) != me && t == FWD_GET_M ->
		assert(ST(me, pg) == M || ST(me, pg) == MI_A);
		if :: ST(me, pg) == MI_A -> cover(8) :: else fi;
		send(src, FWD_DATA, pg, VER(me, pg), 0);
		if
		:: ST(me, pg) == M -> ST(me, pg) = I; VER(me, pg) = 0
		:: else
		fi
	:: HOME(pg) != me && t == PUT_ACK ->
		assert(ST(me, pg) == MI_A);
		ST(me, pg) = I; VER(me, pg) = 0
	:: else -> assert(false)
	fi
}

#define RECV(s, p) d_step { nempty(CH(s, me, p)) -> CH(s, me, p)?t, pg, vv, g; handle(s); \
			    t = 0; pg = 0; vv = 0; g = 0 }

proctype rx(byte me)
{
	mtype t, k2;
	byte pg, vv, inv, tv, s, r2, v2;
	bit g;
end:
	do
	:: RECV(0, 0)
	:: RECV(1, 0)
	:: RECV(2, 0)
#if P == 2
	:: RECV(0, 1)
	:: RECV(1, 1)
	:: RECV(2, 1)
#endif
	od
}

#if P == 2
#define PENDING(n) (ST(n,0) >= IS_D || ST(n,1) >= IS_D || (HOME(0) == n && lpend[0]) || \
		    (HOME(1) == n && lpend[1]))
#else
#define PENDING(n) (ST(n,0) >= IS_D || (HOME(0) == n && lpend[0]))
#endif

/* One access by a faulting thread: a miss sends a request, a write hit bumps the version. */
inline access(p)
{
	if
	/* read miss */
	:: ST(me, p) == I && HOME(p) != me -> ST(me, p) = IS_D; send(HOME(p), GET_S, p, 0, 0)
	:: ST(me, p) == I && HOME(p) == me -> local_req(p, GET_S)
	/* write miss, upgrade */
	:: ST(me, p) == I && HOME(p) != me -> ST(me, p) = IM_D; send(HOME(p), GET_M, p, 0, 0)
	:: ST(me, p) == S && HOME(p) != me -> ST(me, p) = SM_A; send(HOME(p), UPGRADE, p, 0, 0)
	:: (ST(me, p) == I || ST(me, p) == S) && HOME(p) == me -> local_req(p, GET_M)
	/* a write hit */
	:: ST(me, p) == M -> latest[p] = (latest[p] + 1) % VMOD; VER(me, p) = latest[p]
	fi
}

/* A faulting thread waits while its page is in flight. */
#define CAN(p) ((ST(me, p) == I || ST(me, p) == S || ST(me, p) == M) && \
		!(HOME(p) == me && lpend[p]))
#ifndef LIVE
#define SPEND(p) budget--
#else
#define SPEND(p) if :: ST(me, p) != M -> budget-- :: else fi
#endif

/* Evict another home's page: S silently, M with PUT_M (the buffer stays for FWD_*). */
inline evict(p)
{
	if
	:: ST(me, p) == S -> ST(me, p) = I; VER(me, p) = 0
	:: else -> ST(me, p) = MI_A; send(HOME(p), PUT_M, p, VER(me, p), 0)
	fi
}
#define CANEVICT(p) (HOME(p) != me && (ST(me, p) == S || ST(me, p) == M))

proctype cpu(byte me)
{
	mtype k2;
	byte budget = BUDGET, inv, tv, s, r2;

	do
	:: atomic { budget > 0 && CAN(0) -> SPEND(0); access(0) }
#if P == 2
	:: atomic { budget > 0 && CAN(1) -> SPEND(1); access(1) }
#endif
	:: atomic { CANEVICT(0) -> evict(0) }
#if P == 2
	:: atomic { CANEVICT(1) -> evict(1) }
#endif
	:: !PENDING(me) -> break
	od
}

init
{
	atomic {
#ifdef COVER_ENV
		c_code { now.cover_sel = getenv("COVER") ? atoi(getenv("COVER")) : 0; };
#endif
		run rx(0); run cpu(0);
		run rx(1); run cpu(1);
		run rx(2); run cpu(2)
	}
}

#ifdef LIVE
/* Node 2's request for page 0 and node 0's local request for it are answered. */
#define PEND20 (ST(2,0) >= IS_D)
#define PEND00 (lpend[0])
ltl answered { [] ((PEND20 -> <> !PEND20) && (PEND00 -> <> !PEND00)) }
#endif
