// SPDX-License-Identifier: MIT
/*
 * Client of the node control protocol, and `grappe qmp` / `grappe stats`
 * (docs/control.md).
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "mgmt/control.h"
#include "mgmt/control_client.h"

struct control_client {
	int fd;
	int timeout_ms;
	char *buf;
	size_t len, cap;
	struct json_object *greeting;
	struct json_object *events[CONTROL_CLIENT_MAX_EVENTS];
	unsigned ev_first, ev_count;
	int64_t next_id;
};


static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int left_ms(long long deadline)
{
	long long left = deadline - now_ms();

	return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

/*
 * The next JSON message from the server: 1 with *out set, 0 when the
 * deadline passed first, -1 with err on a failure.
 */
static int read_message(struct control_client *c, long long deadline, struct json_object **out,
			char *err, size_t errlen)
{
	*out = NULL;
	for (;;) {
		char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		ssize_t n;
		int r;

		if (nl) {
			size_t len = (size_t)(nl - c->buf);
			struct json_tokener *tok;
			struct json_object *o;
			enum json_tokener_error e;
			bool blank = true;

			for (size_t i = 0; i < len && blank; i++)
				blank = c->buf[i] == ' ' || c->buf[i] == '\t' || c->buf[i] == '\r';
			o = NULL;
			e = json_tokener_success;
			if (!blank) {
				tok = json_tokener_new();
				if (!tok) {
					control_set_err(err, errlen, "out of memory");
					return -1;
				}
				o = json_tokener_parse_ex(tok, c->buf, (int)len);
				e = json_tokener_get_error(tok);
				json_tokener_free(tok);
			}
			memmove(c->buf, nl + 1, c->len - len - 1);
			c->len -= len + 1;
			if (blank)
				continue;
			if (!o || !json_object_is_type(o, json_type_object)) {
				json_object_put(o);
				control_set_err(err, errlen, "malformed message from the server: %s",
					o ? "not an object" : json_tokener_error_desc(e));
				return -1;
			}
			*out = o;
			return 1;
		}
		if (c->len > CONTROL_CLIENT_MAX_LINE) {
			control_set_err(err, errlen, "message from the server longer than %d bytes",
				CONTROL_CLIENT_MAX_LINE);
			return -1;
		}
		if (c->cap - c->len < 4096) {
			size_t cap = c->cap ? c->cap * 2 : 65536;
			char *p;

			if (cap > CONTROL_CLIENT_MAX_LINE + 4096)
				cap = CONTROL_CLIENT_MAX_LINE + 4096;
			p = realloc(c->buf, cap);
			if (!p) {
				control_set_err(err, errlen, "out of memory");
				return -1;
			}
			c->buf = p;
			c->cap = cap;
		}
		r = poll(&pfd, 1, left_ms(deadline));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			control_set_err(err, errlen, "poll: %s", strerror(errno));
			return -1;
		}
		if (!r)
			return 0;
		n = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0) {
			control_set_err(err, errlen, "read: %s", strerror(errno));
			return -1;
		}
		if (!n) {
			control_set_err(err, errlen, "the server closed the connection");
			return -1;
		}
		c->len += (size_t)n;
	}
}

static int send_all(struct control_client *c, const char *p, size_t len, long long deadline,
		    char *err, size_t errlen)
{
	while (len) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		int r;

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN) {
			control_set_err(err, errlen, "write: %s", strerror(errno));
			return -1;
		}
		r = poll(&pfd, 1, left_ms(deadline));
		if (r < 0 && errno != EINTR) {
			control_set_err(err, errlen, "poll: %s", strerror(errno));
			return -1;
		}
		if (!r) {
			control_set_err(err, errlen, "timed out sending to the server");
			return -1;
		}
	}
	return 0;
}

static void keep_event(struct control_client *c, struct json_object *ev)
{
	if (c->ev_count == CONTROL_CLIENT_MAX_EVENTS) {
		json_object_put(c->events[c->ev_first]);
		c->ev_first = (c->ev_first + 1) % CONTROL_CLIENT_MAX_EVENTS;
		c->ev_count--;
	}
	c->events[(c->ev_first + c->ev_count) % CONTROL_CLIENT_MAX_EVENTS] = ev;
	c->ev_count++;
}

int control_client_connect(const char *path, int timeout_ms, struct control_client **out,
			   char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct control_client *c;
	struct json_object *qmp, *reply = NULL;
	long long deadline;
	int r;

	*out = NULL;
	if (timeout_ms <= 0)
		timeout_ms = CONTROL_CLIENT_TIMEOUT_MS;
	deadline = now_ms() + timeout_ms;
	if (!path || strlen(path) >= sizeof(sa.sun_path)) {
		control_set_err(err, errlen, "%s: socket path too long", path ? path : "(null)");
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	c = calloc(1, sizeof(*c));
	if (!c) {
		control_set_err(err, errlen, "out of memory");
		return -1;
	}
	c->timeout_ms = timeout_ms;
	c->next_id = 1;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		control_set_err(err, errlen, "socket: %s", strerror(errno));
		goto fail;
	}
	/* EAGAIN: the server's backlog is full; it frees up as it accepts. */
	while (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa))) {
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN || !left_ms(deadline)) {
			control_set_err(err, errlen, "%s: %s", path, strerror(errno));
			goto fail;
		}
		usleep(10000);
	}
	r = read_message(c, deadline, &c->greeting, err, errlen);
	if (r <= 0) {
		if (!r)
			control_set_err(err, errlen, "%s: no greeting from the server", path);
		goto fail;
	}
	if (!json_object_object_get_ex(c->greeting, "QMP", &qmp) ||
	    !json_object_is_type(qmp, json_type_object)) {
		char why[200] = "not a QMP greeting";

		/* A server that cannot take us says why, as an error. */
		if (json_object_object_get_ex(c->greeting, "error", NULL))
			control_reply_return(c->greeting, why, sizeof(why));
		control_set_err(err, errlen, "%s: %s", path, why);
		goto fail;
	}
	if (control_client_execute(c, "qmp_capabilities", NULL, &reply, err, errlen))
		goto fail;
	if (!control_reply_return(reply, err, errlen)) {
		json_object_put(reply);
		goto fail;
	}
	json_object_put(reply);
	*out = c;
	return 0;
fail:
	control_client_close(c);
	return -1;
}

struct json_object *control_client_greeting(struct control_client *c)
{
	return c->greeting;
}

int control_client_execute(struct control_client *c, const char *command,
			   struct json_object *args, struct json_object **reply,
			   char *err, size_t errlen)
{
	struct json_object *req = json_object_new_object();
	long long deadline = now_ms() + c->timeout_ms;
	int64_t id = c->next_id++;
	const char *text;
	char *line;
	int r;

	*reply = NULL;
	if (args && !json_object_is_type(args, json_type_object)) {
		json_object_put(req);
		control_set_err(err, errlen, "%s: arguments must be a JSON object", command);
		return -1;
	}
	if (!req || json_object_object_add(req, "execute", json_object_new_string(command)) ||
	    (args && json_object_object_add(req, "arguments", json_object_get(args))) ||
	    json_object_object_add(req, "id", json_object_new_int64(id))) {
		json_object_put(req);
		control_set_err(err, errlen, "out of memory");
		return -1;
	}
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN |
					      JSON_C_TO_STRING_NOSLASHESCAPE);
	line = text ? malloc(strlen(text) + 2) : NULL;
	if (!line) {
		json_object_put(req);
		control_set_err(err, errlen, "out of memory");
		return -1;
	}
	sprintf(line, "%s\n", text);
	json_object_put(req);
	r = send_all(c, line, strlen(line), deadline, err, errlen);
	free(line);
	if (r)
		return -1;
	for (;;) {
		struct json_object *m, *rid;

		r = read_message(c, deadline, &m, err, errlen);
		if (r < 0)
			return -1;
		if (!r) {
			control_set_err(err, errlen, "%s: no reply within %d ms", command, c->timeout_ms);
			return -1;
		}
		if (json_object_object_get_ex(m, "event", NULL)) {
			keep_event(c, m);
			continue;
		}
		/* A reply without id answers a request the server could not read. */
		if (json_object_object_get_ex(m, "id", &rid) &&
		    (!json_object_is_type(rid, json_type_int) || json_object_get_int64(rid) != id)) {
			json_object_put(m);
			continue;
		}
		*reply = m;
		return 0;
	}
}

int control_client_next_event(struct control_client *c, int timeout_ms,
			      struct json_object **event, char *err, size_t errlen)
{
	long long deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);

	*event = NULL;
	for (;;) {
		struct json_object *m;
		int r;

		if (c->ev_count) {
			*event = c->events[c->ev_first];
			c->ev_first = (c->ev_first + 1) % CONTROL_CLIENT_MAX_EVENTS;
			c->ev_count--;
			return 1;
		}
		r = read_message(c, deadline, &m, err, errlen);
		if (r <= 0)
			return r;
		if (json_object_object_get_ex(m, "event", NULL))
			keep_event(c, m);
		else
			json_object_put(m);   /* a late reply nobody waits for */
	}
}

void control_client_close(struct control_client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	while (c->ev_count) {
		json_object_put(c->events[c->ev_first]);
		c->ev_first = (c->ev_first + 1) % CONTROL_CLIENT_MAX_EVENTS;
		c->ev_count--;
	}
	json_object_put(c->greeting);
	free(c->buf);
	free(c);
}

struct json_object *control_reply_return(struct json_object *reply, char *err, size_t errlen)
{
	struct json_object *ret, *e, *cls, *desc;

	if (reply && json_object_object_get_ex(reply, "return", &ret))
		return ret;
	if (reply && json_object_object_get_ex(reply, "error", &e) &&
	    json_object_is_type(e, json_type_object)) {
		json_object_object_get_ex(e, "class", &cls);
		json_object_object_get_ex(e, "desc", &desc);
		control_set_err(err, errlen, "%s: %s", cls ? json_object_get_string(cls) : "Error",
			desc ? json_object_get_string(desc) : "(no description)");
		return NULL;
	}
	control_set_err(err, errlen, "reply has neither 'return' nor 'error'");
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* Node reports                                                           */

/*
 * One query for a report: its "return" (a new reference), or NULL. A
 * failed exchange sets *broken (the connection is not usable after it).
 * CommandNotFound is not an error: a node need not have every command.
 */
static struct json_object *query(struct control_client *c, const char *cmd,
				 struct control_node_report *r, bool *broken)
{
	struct json_object *reply, *ret;
	char why[200];

	if (*broken)
		return NULL;
	if (control_client_execute(c, cmd, NULL, &reply, why, sizeof(why))) {
		*broken = true;
		if (!r->error[0])
			snprintf(r->error, sizeof(r->error), "%s", why);
		return NULL;
	}
	ret = control_reply_return(reply, why, sizeof(why));
	if (ret)
		json_object_get(ret);
	else if (!r->error[0] && strncmp(why, "CommandNotFound", 15))
		snprintf(r->error, sizeof(r->error), "%s: %s", cmd, why);
	json_object_put(reply);
	return ret;
}

void control_node_report_fill(struct control_node_report *r, const char *socket, int timeout_ms)
{
	struct control_client *c;
	bool broken = false;

	memset(r, 0, sizeof(*r));
	r->socket = socket;
	if (control_client_connect(socket, timeout_ms, &c, r->error, sizeof(r->error)))
		return;
	r->status = query(c, "query-status", r, &broken);
	r->stats = query(c, "query-grappe-stats", r, &broken);
	r->cpus = query(c, "query-cpus-fast", r, &broken);
	control_client_close(c);
}

void control_node_report_clear(struct control_node_report *r)
{
	json_object_put(r->status);
	json_object_put(r->stats);
	json_object_put(r->cpus);
	r->status = r->stats = r->cpus = NULL;
}

/* ---------------------------------------------------------------------- */
/* Tables                                                                 */

#define TABLE_MAX_COLS 16
#define CELL_LEN 40

struct table {
	unsigned ncols, nrows;
	const char *head[TABLE_MAX_COLS];
	bool right[TABLE_MAX_COLS];          /* numbers: right-aligned */
	char (*cells)[TABLE_MAX_COLS][CELL_LEN];
};

static void table_init(struct table *t, const char *const *head, const char *align)
{
	memset(t, 0, sizeof(*t));
	for (; head[t->ncols] && t->ncols < TABLE_MAX_COLS; t->ncols++) {
		t->head[t->ncols] = head[t->ncols];
		t->right[t->ncols] = align[t->ncols] == 'r';
	}
}

/* A new row, all "-"; NULL when out of memory. */
static char (*table_row(struct table *t))[CELL_LEN]
{
	char (*p)[TABLE_MAX_COLS][CELL_LEN] = realloc(t->cells, (t->nrows + 1) * sizeof(*p));

	if (!p)
		return NULL;
	t->cells = p;
	for (unsigned i = 0; i < TABLE_MAX_COLS; i++)
		snprintf(p[t->nrows][i], CELL_LEN, "-");
	return p[t->nrows++];
}

static void table_print(FILE *f, struct table *t)
{
	unsigned w[TABLE_MAX_COLS];

	for (unsigned j = 0; j < t->ncols; j++) {
		w[j] = (unsigned)strlen(t->head[j]);
		for (unsigned i = 0; i < t->nrows; i++)
			if (strlen(t->cells[i][j]) > w[j])
				w[j] = (unsigned)strlen(t->cells[i][j]);
	}
	for (unsigned i = 0; i <= t->nrows; i++) {
		for (unsigned j = 0; j < t->ncols; j++) {
			const char *s = i ? t->cells[i - 1][j] : t->head[j];
			bool last = j + 1 == t->ncols;

			if (t->right[j])
				fprintf(f, "%*s%s", (int)w[j], s, last ? "" : "  ");
			else if (last)
				fprintf(f, "%s", s);
			else
				fprintf(f, "%-*s  ", (int)w[j], s);
		}
		fputc('\n', f);
	}
	free(t->cells);
	t->cells = NULL;
	t->nrows = 0;
}

/* o[k0][k1]...: NULL if any step is missing or not an object. */
static struct json_object *jget(struct json_object *o, ...)
{
	va_list ap;
	const char *k;

	va_start(ap, o);
	while (o && (k = va_arg(ap, const char *))) {
		struct json_object *v = NULL;

		if (!json_object_is_type(o, json_type_object) ||
		    !json_object_object_get_ex(o, k, &v))
			v = NULL;
		o = v;
	}
	va_end(ap);
	return o;
}

static bool jnum(struct json_object *v, uint64_t *out)
{
	if (!v)
		return false;
	if (json_object_is_type(v, json_type_int)) {
		int64_t i = json_object_get_int64(v);

		*out = i >= 0 ? (uint64_t)(i == INT64_MAX ? json_object_get_uint64(v) : (uint64_t)i) : 0;
		return i >= 0;
	}
	if (json_object_is_type(v, json_type_double)) {
		double d = json_object_get_double(v);

		if (!(d >= 0 && d < 1.8e19))
			return false;
		*out = (uint64_t)d;
		return true;
	}
	return false;
}

/* A number cell: the value, or "-" when it is missing or not a count. */
static void cell_num(char *cell, struct json_object *v)
{
	uint64_t n;

	if (jnum(v, &n))
		snprintf(cell, CELL_LEN, "%" PRIu64, n);
}

static void cell_bytes(char *cell, struct json_object *v)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	uint64_t n;
	double d;
	unsigned u = 0;

	if (!jnum(v, &n))
		return;
	if (n < 1024) {
		snprintf(cell, CELL_LEN, "%" PRIu64 " B", n);
		return;
	}
	for (d = (double)n; d >= 1024 && u + 1 < sizeof(unit) / sizeof(unit[0]); u++)
		d /= 1024;
	snprintf(cell, CELL_LEN, "%.1f %s", d, unit[u]);
}

static void cell_str(char *cell, struct json_object *v)
{
	if (v && json_object_is_type(v, json_type_string))
		snprintf(cell, CELL_LEN, "%s", json_object_get_string(v));
	else if (v && json_object_is_type(v, json_type_boolean))
		snprintf(cell, CELL_LEN, "%s", json_object_get_boolean(v) ? "yes" : "no");
	else
		cell_num(cell, v);
}

/* The node a report is about: stats "node", else query-status "node"; -1 if unknown. */
static long long report_node(const struct control_node_report *r)
{
	uint64_t n;

	if (jnum(jget(r->stats, "node", NULL), &n) || jnum(jget(r->status, "node", NULL), &n))
		return n > INT_MAX ? -1 : (long long)n;
	return -1;
}

static void print_nodes(FILE *f, const struct control_node_report *r, unsigned n)
{
	static const char *const head[] = {
		"NODE", "STATUS", "F-READ", "F-WRITE", "F-UPGRADE", "F-ZERO-L", "F-ZERO-R",
		"PAGES-OUT", "BYTES-OUT", "PAGES-IN", "BYTES-IN", "INVAL", "EVICT", NULL
	};
	static const char *const kinds[] = { "read", "write", "upgrade", "zero_local",
					     "zero_remote" };
	struct table t;

	table_init(&t, head, "llrrrrrrrrrrr");
	for (unsigned i = 0; i < n; i++) {
		struct json_object *dsm = jget(r[i].stats, "dsm", NULL);
		char (*row)[CELL_LEN] = table_row(&t);
		long long node = report_node(&r[i]);

		if (!row)
			break;
		if (node >= 0)
			snprintf(row[0], CELL_LEN, "%lld", node);
		if (r[i].status)
			cell_str(row[1], jget(r[i].status, "status", NULL));
		else if (r[i].error[0] && !r[i].stats)
			snprintf(row[1], CELL_LEN, "unreachable");
		for (unsigned k = 0; k < 5; k++)
			cell_num(row[2 + k], jget(dsm, "faults", kinds[k], NULL));
		cell_num(row[7], jget(dsm, "pages_sent", NULL));
		cell_bytes(row[8], jget(dsm, "bytes_sent", NULL));
		cell_num(row[9], jget(dsm, "pages_received", NULL));
		cell_bytes(row[10], jget(dsm, "bytes_received", NULL));
		cell_num(row[11], jget(dsm, "invalidations", NULL));
		cell_num(row[12], jget(dsm, "evictions", NULL));
	}
	fprintf(f, "DSM faults and page traffic per node\n");
	table_print(f, &t);
}

struct hot {
	long long node;
	struct json_object *gpa;
	uint64_t moves;
	bool has_moves;
};

static int hot_cmp(const void *a, const void *b)
{
	const struct hot *x = a, *y = b;

	if (x->node != y->node)
		return x->node < y->node ? -1 : 1;
	if (x->has_moves != y->has_moves)
		return x->has_moves ? -1 : 1;
	return x->moves > y->moves ? -1 : x->moves < y->moves;
}

#define HOT_PAGES_SHOWN 10

static void print_hot(FILE *f, const struct control_node_report *r, unsigned n)
{
	static const char *const head[] = { "NODE", "GPA", "MOVES", NULL };
	struct hot *h = NULL;
	size_t nh = 0;
	struct table t;

	for (unsigned i = 0; i < n; i++) {
		struct json_object *list = jget(r[i].stats, "dsm", "hot_pages", NULL);
		size_t len;
		struct hot *p;

		if (!list || !json_object_is_type(list, json_type_array))
			continue;
		len = json_object_array_length(list);
		p = realloc(h, (nh + len + 1) * sizeof(*h));
		if (!p)
			break;
		h = p;
		for (size_t j = 0; j < len; j++) {
			struct json_object *e = json_object_array_get_idx(list, j);

			h[nh].node = report_node(&r[i]);
			h[nh].gpa = jget(e, "gpa", NULL);
			h[nh].has_moves = jnum(jget(e, "moves", NULL), &h[nh].moves);
			nh++;
		}
	}
	if (!nh) {
		free(h);
		return;
	}
	qsort(h, nh, sizeof(*h), hot_cmp);
	table_init(&t, head, "lrr");
	for (size_t i = 0, shown = 0; i < nh; i++) {
		char (*row)[CELL_LEN];
		uint64_t gpa;

		shown = i && h[i].node == h[i - 1].node ? shown + 1 : 0;
		if (shown >= HOT_PAGES_SHOWN)
			continue;
		row = table_row(&t);
		if (!row)
			break;
		if (h[i].node >= 0)
			snprintf(row[0], CELL_LEN, "%lld", h[i].node);
		if (jnum(h[i].gpa, &gpa))
			snprintf(row[1], CELL_LEN, "0x%" PRIx64, gpa);
		else
			cell_str(row[1], h[i].gpa);
		if (h[i].has_moves)
			snprintf(row[2], CELL_LEN, "%" PRIu64, h[i].moves);
	}
	fprintf(f, "\nPages that moved most often (top %d per node)\n", HOT_PAGES_SHOWN);
	table_print(f, &t);
	free(h);
}

struct vcpu_row {
	uint64_t index;
	long long node;
	bool local;                 /* reported by the node that runs it */
	struct json_object *cpu;    /* query-cpus-fast entry */
	struct json_object *stats;  /* stats "vcpus" entry */
};

/* More vCPU rows than any VM has: a node that lists more is not believed. */
#define VCPU_ROWS_MAX 1024

static struct vcpu_row *vcpu_find(struct vcpu_row **rows, size_t *n, uint64_t index)
{
	struct vcpu_row *p;

	for (size_t i = 0; i < *n; i++)
		if ((*rows)[i].index == index)
			return &(*rows)[i];
	if (*n >= VCPU_ROWS_MAX)
		return NULL;
	p = realloc(*rows, (*n + 1) * sizeof(**rows));
	if (!p)
		return NULL;
	*rows = p;
	p = &p[(*n)++];
	memset(p, 0, sizeof(*p));
	p->index = index;
	p->node = -1;
	return p;
}

static int vcpu_cmp(const void *a, const void *b)
{
	const struct vcpu_row *x = a, *y = b;

	return x->index < y->index ? -1 : x->index > y->index;
}

static void print_vcpus(FILE *f, const struct control_node_report *r, unsigned n)
{
	static const char *const head[] = { "VCPU", "NODE", "THREAD", "HALTED", "EXITS",
					    "IO", "MMIO", "HALTS", NULL };
	struct vcpu_row *rows = NULL;
	size_t nr = 0;
	struct table t;

	for (unsigned i = 0; i < n; i++) {
		long long self = report_node(&r[i]);
		struct json_object *list = r[i].cpus;
		size_t len = list && json_object_is_type(list, json_type_array) ?
			     json_object_array_length(list) : 0;

		for (size_t j = 0; j < len; j++) {
			struct json_object *e = json_object_array_get_idx(list, j);
			struct vcpu_row *row;
			uint64_t idx, node;
			bool has_node = jnum(jget(e, "node", NULL), &node);
			bool local = !has_node || self < 0 || (long long)node == self;

			if (!jnum(jget(e, "cpu-index", NULL), &idx) ||
			    !(row = vcpu_find(&rows, &nr, idx)))
				continue;
			if (row->cpu && (row->local || !local))
				continue;
			row->cpu = e;
			row->local = local;
			row->node = has_node ? (long long)node : self;
		}
		list = jget(r[i].stats, "vcpus", NULL);
		len = list && json_object_is_type(list, json_type_array) ?
		      json_object_array_length(list) : 0;
		for (size_t j = 0; j < len; j++) {
			struct json_object *e = json_object_array_get_idx(list, j);
			struct vcpu_row *row;
			uint64_t idx;

			if (!jnum(jget(e, "index", NULL), &idx) ||
			    !(row = vcpu_find(&rows, &nr, idx)))
				continue;
			row->stats = e;
			if (row->node < 0 || !row->local)
				row->node = self;
		}
	}
	if (!nr) {
		free(rows);
		return;
	}
	qsort(rows, nr, sizeof(*rows), vcpu_cmp);
	table_init(&t, head, "rrrlrrrr");
	for (size_t i = 0; i < nr; i++) {
		char (*row)[CELL_LEN] = table_row(&t);
		struct json_object *exits = jget(rows[i].stats, "exits", NULL);

		if (!row)
			break;
		snprintf(row[0], CELL_LEN, "%" PRIu64, rows[i].index);
		if (rows[i].node >= 0)
			snprintf(row[1], CELL_LEN, "%lld", rows[i].node);
		if (rows[i].local)
			cell_num(row[2], jget(rows[i].cpu, "thread-id", NULL));
		cell_str(row[3], jget(rows[i].cpu, "halted", NULL));
		cell_num(row[4], exits ? exits : jget(rows[i].cpu, "exits", NULL));
		cell_num(row[5], jget(rows[i].stats, "io", NULL));
		cell_num(row[6], jget(rows[i].stats, "mmio", NULL));
		cell_num(row[7], jget(rows[i].stats, "halts", NULL));
	}
	fprintf(f, "\nvCPUs\n");
	table_print(f, &t);
	free(rows);
}

static uint64_t jnum_or0(struct json_object *v)
{
	uint64_t x = 0;

	jnum(v, &x);
	return x;
}

/* One line per replicated volume, then one per store (docs/volume.md). */
static void print_volumes(FILE *f, const struct control_node_report *r, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct json_object *vols = jget(r[i].stats, "volumes", NULL);
		size_t nv = vols && json_object_is_type(vols, json_type_array) ?
			    json_object_array_length(vols) : 0;

		for (size_t k = 0; k < nv; k++) {
			struct json_object *v = json_object_array_get_idx(vols, k);
			struct json_object *stores = jget(v, "stores", NULL);
			size_t ns = stores && json_object_is_type(stores, json_type_array) ?
				    json_object_array_length(stores) : 0;

			fprintf(f, "\nvolume %s (disk %s): %s, generation %" PRIu64 ", %" PRIu64
				" chunks, %" PRIu64 " stale, %" PRIu64 " resynced, %" PRIu64
				" unavailable\n", json_object_get_string(jget(v, "volume", NULL)),
				json_object_get_string(jget(v, "disk", NULL)),
				json_object_get_boolean(jget(v, "degraded", NULL)) ? "DEGRADED" : "healthy",
				jnum_or0(jget(v, "generation", NULL)), jnum_or0(jget(v, "chunks", NULL)),
				jnum_or0(jget(v, "chunks_stale", NULL)),
				jnum_or0(jget(v, "chunks_resynced", NULL)),
				jnum_or0(jget(v, "chunks_unavailable", NULL)));
			for (size_t s = 0; s < ns; s++) {
				struct json_object *st = json_object_array_get_idx(stores, s);

				fprintf(f, "  store %zu: %-9s %" PRIu64 " chunks, %" PRIu64 " stale, read %"
					PRIu64 " B, written %" PRIu64 " B, %" PRIu64 " errors\n", s,
					json_object_get_string(jget(st, "state", NULL)),
					jnum_or0(jget(st, "chunks", NULL)),
					jnum_or0(jget(st, "chunks_stale", NULL)),
					jnum_or0(jget(st, "bytes_read", NULL)),
					jnum_or0(jget(st, "bytes_written", NULL)),
					jnum_or0(jget(st, "errors", NULL)));
			}
		}
	}
}

/* Read leases (docs/volume.md, "Read leases"): coordinators, then serving nodes' local reads. */
static void print_read_leases(FILE *f, const struct control_node_report *r, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct json_object *a = jget(r[i].stats, "read_leases", NULL);
		size_t na = a && json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;

		for (size_t k = 0; k < na; k++) {
			struct json_object *v = json_object_array_get_idx(a, k);

			fprintf(f, "\nvolume %s read leases (node %" PRIu64 "): %" PRIu64 " held, %" PRIu64
				" granted, %" PRIu64 " refused, %" PRIu64 " revoked\n",
				json_object_get_string(jget(v, "volume", NULL)),
				jnum_or0(jget(r[i].stats, "node", NULL)), jnum_or0(jget(v, "leases", NULL)),
				jnum_or0(jget(v, "granted", NULL)), jnum_or0(jget(v, "refused", NULL)),
				jnum_or0(jget(v, "revoked", NULL)));
		}
	}
	for (unsigned i = 0; i < n; i++) {
		struct json_object *a = jget(r[i].stats, "local_reads", NULL);
		size_t na = a && json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;

		for (size_t k = 0; k < na; k++) {
			struct json_object *v = json_object_array_get_idx(a, k);

			fprintf(f, "node %" PRIu64 " reads of volume %s: %" PRIu64 " from its own store (%"
				PRIu64 " B), %" PRIu64 " through the I/O node (%" PRIu64 " B), %" PRIu64
				" local errors, %" PRIu64 " reread after a revocation; %" PRIu64
				" leases held\n",
				jnum_or0(jget(r[i].stats, "node", NULL)),
				json_object_get_string(jget(v, "volume", NULL)),
				jnum_or0(jget(v, "reads_local", NULL)), jnum_or0(jget(v, "bytes_local", NULL)),
				jnum_or0(jget(v, "reads_forwarded", NULL)),
				jnum_or0(jget(v, "bytes_forwarded", NULL)),
				jnum_or0(jget(v, "local_errors", NULL)),
				jnum_or0(jget(v, "late_reads", NULL)), jnum_or0(jget(v, "leases", NULL)));
		}
	}
}

void control_stats_print(FILE *f, const struct control_node_report *r, unsigned n)
{
	print_nodes(f, r, n);
	print_hot(f, r, n);
	print_vcpus(f, r, n);
	print_volumes(f, r, n);
	print_read_leases(f, r, n);
}

void control_stats_print_json(FILE *f, const struct control_node_report *r, unsigned n)
{
	struct json_object *all = json_object_new_array();

	for (unsigned i = 0; all && i < n; i++) {
		struct json_object *o = json_object_new_object();

		if (!o)
			break;
		json_object_object_add(o, "socket", json_object_new_string(r[i].socket));
		json_object_object_add(o, "status", json_object_get(r[i].status));
		json_object_object_add(o, "stats", json_object_get(r[i].stats));
		json_object_object_add(o, "cpus", json_object_get(r[i].cpus));
		if (r[i].error[0])
			json_object_object_add(o, "error", json_object_new_string(r[i].error));
		json_object_array_add(all, o);
	}
	fprintf(f, "%s\n", json_object_to_json_string_ext(all, JSON_C_TO_STRING_PRETTY |
							      JSON_C_TO_STRING_SPACED |
							      JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(all);
}

/* ---------------------------------------------------------------------- */
/* Finding sockets                                                        */

struct sock_ent {
	unsigned node;
	char *path;
};

static int sock_cmp(const void *a, const void *b)
{
	const struct sock_ent *x = a, *y = b;

	return x->node < y->node ? -1 : x->node > y->node;
}

/* Is name "node<N>.qmp" with N a plain decimal number? */
static bool node_socket_name(const char *name, unsigned *node)
{
	char again[64];
	unsigned n;

	if (sscanf(name, "node%u.qmp", &n) != 1)
		return false;
	snprintf(again, sizeof(again), "node%u.qmp", n);
	if (strcmp(again, name))
		return false;
	*node = n;
	return true;
}

static int push_path(char ***paths, unsigned *n, char *p)
{
	char **a = realloc(*paths, (*n + 1) * sizeof(**paths));

	if (!a) {
		free(p);
		return -1;
	}
	*paths = a;
	a[(*n)++] = p;
	return 0;
}

static int scan_dir(const char *dir, char ***paths, unsigned *n, char *err, size_t errlen)
{
	struct sock_ent *e = NULL;
	size_t ne = 0;
	struct dirent *d;
	DIR *dp = opendir(dir);
	int ret = 0;

	if (!dp) {
		control_set_err(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	while ((d = readdir(dp))) {
		struct sock_ent *p;
		unsigned node;
		char *path;

		if (!node_socket_name(d->d_name, &node))
			continue;
		p = realloc(e, (ne + 1) * sizeof(*e));
		if (!p || asprintf(&path, "%s/%s", dir, d->d_name) < 0) {
			if (p)
				e = p;
			ret = -1;
			control_set_err(err, errlen, "out of memory");
			break;
		}
		e = p;
		e[ne].node = node;
		e[ne++].path = path;
	}
	closedir(dp);
	if (!ret && !ne) {
		control_set_err(err, errlen, "%s: no node*.qmp sockets", dir);
		ret = -1;
	}
	qsort(e, ne, sizeof(*e), sock_cmp);
	for (size_t i = 0; i < ne; i++) {
		if (ret) {
			free(e[i].path);
		} else if (push_path(paths, n, e[i].path)) {
			control_set_err(err, errlen, "out of memory");
			ret = -1;
		}
	}
	free(e);
	return ret;
}

int control_resolve_sockets(const char *arg, char ***paths, unsigned *n, char *err, size_t errlen)
{
	char dir[PATH_MAX];
	struct stat st;

	if (!stat(arg, &st)) {
		if (S_ISSOCK(st.st_mode)) {
			char *p = strdup(arg);

			if (!p || push_path(paths, n, p)) {
				control_set_err(err, errlen, "out of memory");
				return -1;
			}
			return 0;
		}
		if (S_ISDIR(st.st_mode))
			return scan_dir(arg, paths, n, err, errlen);
		control_set_err(err, errlen, "%s: not a socket or a directory", arg);
		return -1;
	}
	if (control_vm_dir(dir, sizeof(dir), arg)) {
		control_set_err(err, errlen, "%s: no such socket, directory or VM", arg);
		return -1;
	}
	if (stat(dir, &st)) {
		control_set_err(err, errlen, "%s: no such socket, and no VM of that name in %s", arg,
			control_run_dir());
		return -1;
	}
	return scan_dir(dir, paths, n, err, errlen);
}

/* ---------------------------------------------------------------------- */
/* Commands                                                               */

/* `grappe qmp VM:N`: node N of a VM, when no file has that name. */
static const char *qmp_socket(const char *arg, char *buf, size_t len)
{
	char name[256], dir[PATH_MAX];
	const char *colon = strrchr(arg, ':');
	unsigned node;
	struct stat st;

	if (!stat(arg, &st) || !colon || strchr(arg, '/') || (size_t)(colon - arg) >= sizeof(name))
		return arg;
	memcpy(name, arg, (size_t)(colon - arg));
	name[colon - arg] = '\0';
	if (sscanf(colon + 1, "%u", &node) != 1 || control_vm_dir(dir, sizeof(dir), name))
		return arg;
	snprintf(buf, len, "%s/node%u.qmp", dir, node);
	return buf;
}

int control_cmd_qmp(int argc, char **argv, FILE *out, FILE *errf)
{
	struct json_object *args = NULL, *reply = NULL, *e;
	struct control_client *c;
	char err[512], pathbuf[PATH_MAX + 32];
	const char *path;
	int status;

	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		fprintf(out, "usage: grappe qmp SOCKET|VM:NODE COMMAND [JSON-ARGS]\n");
		return 0;
	}
	if (argc < 3 || argc > 4) {
		fprintf(errf, "usage: grappe qmp SOCKET|VM:NODE COMMAND [JSON-ARGS]\n");
		return 2;
	}
	if (argc == 4) {
		enum json_tokener_error je;

		args = json_tokener_parse_verbose(argv[3], &je);
		if (!args || !json_object_is_type(args, json_type_object)) {
			fprintf(errf, "grappe: arguments must be a JSON object: %s\n",
				args ? "not an object" : json_tokener_error_desc(je));
			json_object_put(args);
			return 2;
		}
	}
	path = qmp_socket(argv[1], pathbuf, sizeof(pathbuf));
	if (control_client_connect(path, 0, &c, err, sizeof(err))) {
		fprintf(errf, "grappe: %s\n", err);
		json_object_put(args);
		return 1;
	}
	if (control_client_execute(c, argv[2], args, &reply, err, sizeof(err))) {
		fprintf(errf, "grappe: %s\n", err);
		status = 1;
	} else {
		/* The id is the client's own bookkeeping. */
		json_object_object_del(reply, "id");
		fprintf(out, "%s\n", json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PRETTY |
								      JSON_C_TO_STRING_SPACED |
								      JSON_C_TO_STRING_NOSLASHESCAPE));
		status = json_object_object_get_ex(reply, "error", &e) ? 1 : 0;
	}
	json_object_put(reply);
	json_object_put(args);
	control_client_close(c);
	return status;
}

int control_cmd_stats(int argc, char **argv, FILE *out, FILE *errf)
{
	struct control_node_report *r;
	char **paths = NULL, err[512];
	unsigned n = 0;
	bool json = false;
	int i = 1, status = 0;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fprintf(out, "usage: grappe stats [--json] SOCKET|DIR|VM-NAME...\n");
			return 0;
		} else {
			fprintf(errf, "grappe: unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	if (i == argc) {
		fprintf(errf, "usage: grappe stats [--json] SOCKET|DIR|VM-NAME...\n");
		return 2;
	}
	for (; i < argc; i++) {
		if (control_resolve_sockets(argv[i], &paths, &n, err, sizeof(err))) {
			fprintf(errf, "grappe: %s\n", err);
			status = 1;
		}
	}
	r = n ? calloc(n, sizeof(*r)) : NULL;
	if (n && !r) {
		fprintf(errf, "grappe: out of memory\n");
		status = 1;
		n = 0;
	}
	for (unsigned j = 0; j < n; j++) {
		control_node_report_fill(&r[j], paths[j], 0);
		if (r[j].error[0]) {
			fprintf(errf, "grappe: %s: %s\n", paths[j], r[j].error);
			status = 1;
		}
	}
	if (n) {
		if (json)
			control_stats_print_json(out, r, n);
		else
			control_stats_print(out, r, n);
	}
	for (unsigned j = 0; j < n; j++)
		control_node_report_clear(&r[j]);
	for (unsigned j = 0; j < n; j++)
		free(paths[j]);
	free(paths);
	free(r);
	return status;
}
