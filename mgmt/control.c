// SPDX-License-Identifier: MIT
/*
 * The node control protocol (docs/control.md): a QMP-style dispatcher that
 * turns request lines into reply lines, and a unix-socket server that runs
 * one dispatcher session per client on one poll() thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "mgmt/control.h"

/* Nesting a request may have; json-c refuses deeper input. */
#define CONTROL_MAX_DEPTH 32
/* Stop reading a client's requests while this much output waits for it. */
#define CONTROL_OUTPUT_BACKLOG (256 * 1024)
/* poll() timeout of the server thread: it also wakes up through a pipe. */
#define CONTROL_POLL_MS 1000
/* How long control_stop() tries to deliver queued output. */
#define CONTROL_FLUSH_MS 1000

/* ---------------------------------------------------------------------- */
/* Replies                                                                */

static char *to_text(struct json_object *o)
{
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
						       JSON_C_TO_STRING_NOSLASHESCAPE);
	char *dup = s ? strdup(s) : NULL;

	json_object_put(o);
	return dup;
}

/* Adds the request's id, if it had one, and serializes. Consumes o. */
static char *finish(struct json_object *o, struct json_object *id, bool has_id)
{
	if (!o)
		return NULL;
	if (has_id && json_object_object_add(o, "id", json_object_get(id))) {
		json_object_put(o);
		return NULL;
	}
	return to_text(o);
}

static char *reply_return(struct json_object *ret, struct json_object *id, bool has_id)
{
	struct json_object *o = json_object_new_object();

	if (!o || !ret || json_object_object_add(o, "return", ret)) {
		json_object_put(o);
		json_object_put(ret);
		return NULL;
	}
	return finish(o, id, has_id);
}

static char *reply_error(const char *cls, struct json_object *id, bool has_id,
			 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static char *reply_error(const char *cls, struct json_object *id, bool has_id,
			 const char *fmt, ...)
{
	struct json_object *o = json_object_new_object(), *e = json_object_new_object();
	char *desc = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&desc, fmt, ap);
	va_end(ap);
	if (n < 0)
		desc = NULL;
	if (!o || !e || !desc ||
	    json_object_object_add(e, "class", json_object_new_string(cls)) ||
	    json_object_object_add(e, "desc", json_object_new_string(desc)) ||
	    json_object_object_add(o, "error", e)) {
		free(desc);
		json_object_put(e);
		json_object_put(o);
		return NULL;
	}
	free(desc);
	return finish(o, id, has_id);
}

static struct json_object *version_object(void)
{
	struct json_object *v = json_object_new_object(), *g = json_object_new_object();

	if (!v || !g ||
	    json_object_object_add(g, "major", json_object_new_int(CONTROL_VERSION_MAJOR)) ||
	    json_object_object_add(g, "minor", json_object_new_int(CONTROL_VERSION_MINOR)) ||
	    json_object_object_add(g, "micro", json_object_new_int(CONTROL_VERSION_MICRO)) ||
	    json_object_object_add(v, "grappe", g)) {
		json_object_put(g);
		json_object_put(v);
		return NULL;
	}
	if (json_object_object_add(v, "package", json_object_new_string("grappe"))) {
		json_object_put(v);
		return NULL;
	}
	return v;
}

char *control_greeting(void)
{
	struct json_object *o = json_object_new_object(), *q = json_object_new_object();
	struct json_object *v = version_object();

	if (!o || !q || !v || json_object_object_add(q, "version", v)) {
		json_object_put(v);
		goto fail;
	}
	if (json_object_object_add(q, "capabilities", json_object_new_array()) ||
	    json_object_object_add(o, "QMP", q))
		goto fail;
	return to_text(o);
fail:
	json_object_put(q);
	json_object_put(o);
	return NULL;
}

char *control_format_event(const char *name, struct json_object *data)
{
	struct json_object *o = json_object_new_object(), *ts = json_object_new_object();
	struct timeval tv;

	gettimeofday(&tv, NULL);
	if (!data)
		data = json_object_new_object();
	if (!o || !ts || !data ||
	    json_object_object_add(o, "event", json_object_new_string(name)))
		goto fail;
	if (json_object_object_add(o, "data", data))
		goto fail;
	data = NULL;
	if (json_object_object_add(ts, "seconds", json_object_new_int64(tv.tv_sec)) ||
	    json_object_object_add(ts, "microseconds", json_object_new_int64(tv.tv_usec)) ||
	    json_object_object_add(o, "timestamp", ts))
		goto fail;
	return to_text(o);
fail:
	json_object_put(data);
	json_object_put(ts);
	json_object_put(o);
	return NULL;
}

/* Names echoed in messages: at most 64 bytes, cut on a UTF-8 character boundary. */
#define CLIP_LEN 64
struct clipped {
	char s[CLIP_LEN + 4];
};

static const char *clip(const char *s, struct clipped *buf)
{
	size_t n = strlen(s);

	if (n <= CLIP_LEN)
		return s;
	n = CLIP_LEN;
	while (n && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	memcpy(buf->s, s, n);
	memcpy(buf->s + n, "...", 4);
	return buf->s;
}

/* ---------------------------------------------------------------------- */
/* Commands                                                               */

/* What a command handler returns. */
enum cmd_result {
	CMD_OK,
	CMD_ERROR,          /* GenericError with desc */
	CMD_NOMEM,
};

struct cmd_call {
	struct control_session *s;
	struct json_object *args;    /* an object, possibly empty */
	struct json_object *ret;     /* set on CMD_OK */
	char err[CONTROL_ERR_LEN];   /* a callback's message */
	char desc[CONTROL_ERR_LEN + 64]; /* the error reply's, on CMD_ERROR */
};

struct cmd {
	const char *name;
	enum cmd_result (*run)(struct cmd_call *c);
	bool (*available)(const struct control_ops *ops);
	const char *const *params;   /* NULL-terminated names it accepts */
};

/* Turns a callback's failure into the message the client sees. */
static enum cmd_result op_failed(struct cmd_call *c, const char *what, int ret)
{
	c->err[sizeof(c->err) - 1] = '\0';
	snprintf(c->desc, sizeof(c->desc), "%s: %s", what,
		 c->err[0] ? c->err : ret < 0 ? strerror(-ret) : "failed");
	return CMD_ERROR;
}

static enum cmd_result ok_empty(struct cmd_call *c)
{
	c->ret = json_object_new_object();
	return c->ret ? CMD_OK : CMD_NOMEM;
}

static bool always(const struct control_ops *ops)
{
	return true;
}

static enum cmd_result cmd_capabilities(struct cmd_call *c)
{
	struct json_object *enable;

	if (json_object_object_get_ex(c->args, "enable", &enable)) {
		if (!json_object_is_type(enable, json_type_array)) {
			snprintf(c->desc, sizeof(c->desc),
				 "Invalid parameter type for 'enable', expected: array");
			return CMD_ERROR;
		}
		/* grappe offers no capabilities: anything asked for is refused. */
		if (json_object_array_length(enable)) {
			struct json_object *cap = json_object_array_get_idx(enable, 0);
			struct clipped b;

			if (json_object_is_type(cap, json_type_string))
				snprintf(c->desc, sizeof(c->desc), "Capability '%s' not available",
					 clip(json_object_get_string(cap), &b));
			else
				snprintf(c->desc, sizeof(c->desc),
					 "Invalid parameter type for 'enable[0]', expected: string");
			return CMD_ERROR;
		}
	}
	c->s->negotiated = true;
	return ok_empty(c);
}

static const char *state_name(enum control_run_state st)
{
	switch (st) {
	case CONTROL_RUNNING:
		return "running";
	case CONTROL_PAUSED:
		return "paused";
	case CONTROL_SHUTDOWN:
		return "shutdown";
	}
	return NULL;
}

static bool has_query_status(const struct control_ops *ops)
{
	return ops->query_status;
}

static enum cmd_result cmd_query_status(struct cmd_call *c)
{
	const struct control_ops *ops = c->s->ops;
	struct control_status st;
	struct json_object *o;
	const char *name;
	int ret;

	memset(&st, 0, sizeof(st));
	ret = ops->query_status(ops->ctx, &st, c->err, sizeof(c->err));
	if (ret)
		return op_failed(c, "query-status", ret);
	name = state_name(st.state);
	if (!name) {
		snprintf(c->desc, sizeof(c->desc), "query-status: unknown run state %d", (int)st.state);
		return CMD_ERROR;
	}
	st.vm_name[sizeof(st.vm_name) - 1] = '\0';
	o = json_object_new_object();
	if (!o ||
	    json_object_object_add(o, "running", json_object_new_boolean(st.state == CONTROL_RUNNING)) ||
	    json_object_object_add(o, "singlestep", json_object_new_boolean(false)) ||
	    json_object_object_add(o, "status", json_object_new_string(name)) ||
	    json_object_object_add(o, "node", json_object_new_int64(st.node)) ||
	    json_object_object_add(o, "nr-nodes", json_object_new_int64(st.nr_nodes)) ||
	    json_object_object_add(o, "vm-name", json_object_new_string(st.vm_name))) {
		json_object_put(o);
		return CMD_NOMEM;
	}
	c->ret = o;
	return CMD_OK;
}

#define SIMPLE_OP(fn, field, label)						\
	static bool has_##field(const struct control_ops *ops)			\
	{									\
		return ops->field;						\
	}									\
	static enum cmd_result fn(struct cmd_call *c)				\
	{									\
		const struct control_ops *ops = c->s->ops;			\
		int ret = ops->field(ops->ctx, c->err, sizeof(c->err));		\
										\
		if (ret)							\
			return op_failed(c, label, ret);			\
		return ok_empty(c);						\
	}

SIMPLE_OP(cmd_stop, stop, "stop")
SIMPLE_OP(cmd_cont, cont, "cont")
SIMPLE_OP(cmd_powerdown, system_powerdown, "system_powerdown")
SIMPLE_OP(cmd_quit, quit, "quit")

static bool has_query_cpus(const struct control_ops *ops)
{
	return ops->query_cpus;
}

static struct json_object *cpu_object(const struct control_cpu *cpu)
{
	struct json_object *o = json_object_new_object(), *props = json_object_new_object();

	if (!o || !props ||
	    json_object_object_add(props, "node-id", json_object_new_int64(cpu->cell)) ||
	    json_object_object_add(props, "socket-id", json_object_new_int64(cpu->socket)) ||
	    json_object_object_add(props, "core-id", json_object_new_int64(cpu->core)) ||
	    json_object_object_add(props, "thread-id", json_object_new_int64(0))) {
		json_object_put(props);
		json_object_put(o);
		return NULL;
	}
	if (json_object_object_add(o, "props", props)) {
		json_object_put(props);
		json_object_put(o);
		return NULL;
	}
	if (json_object_object_add(o, "cpu-index", json_object_new_int64(cpu->index)) ||
	    json_object_object_add(o, "thread-id", json_object_new_int64(cpu->thread_id)) ||
	    json_object_object_add(o, "target", json_object_new_string("x86_64")) ||
	    json_object_object_add(o, "node", json_object_new_int64(cpu->node)) ||
	    json_object_object_add(o, "halted", json_object_new_boolean(cpu->halted)) ||
	    json_object_object_add(o, "exits", json_object_new_uint64(cpu->exits))) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static enum cmd_result cmd_query_cpus(struct cmd_call *c)
{
	const struct control_ops *ops = c->s->ops;
	struct control_cpu *cpus = calloc(CONTROL_MAX_CPUS, sizeof(*cpus));
	struct json_object *list;
	unsigned n = 0;
	int ret;

	if (!cpus)
		return CMD_NOMEM;
	ret = ops->query_cpus(ops->ctx, cpus, CONTROL_MAX_CPUS, &n, c->err, sizeof(c->err));
	if (ret) {
		free(cpus);
		return op_failed(c, "query-cpus-fast", ret);
	}
	if (n > CONTROL_MAX_CPUS) {
		free(cpus);
		snprintf(c->desc, sizeof(c->desc), "query-cpus-fast: %u vCPUs reported, at most %u",
			 n, CONTROL_MAX_CPUS);
		return CMD_ERROR;
	}
	list = json_object_new_array();
	for (unsigned i = 0; list && i < n; i++) {
		struct json_object *o = cpu_object(&cpus[i]);

		if (!o || json_object_array_add(list, o)) {
			json_object_put(o);
			json_object_put(list);
			list = NULL;
		}
	}
	free(cpus);
	if (!list)
		return CMD_NOMEM;
	c->ret = list;
	return CMD_OK;
}

static bool has_query_stats(const struct control_ops *ops)
{
	return ops->query_stats;
}

static enum cmd_result cmd_query_stats(struct cmd_call *c)
{
	const struct control_ops *ops = c->s->ops;
	struct json_object *o = NULL;
	int ret = ops->query_stats(ops->ctx, &o, c->err, sizeof(c->err));

	if (ret) {
		json_object_put(o);
		return op_failed(c, "query-grappe-stats", ret);
	}
	if (!o) {
		snprintf(c->desc, sizeof(c->desc), "query-grappe-stats: no statistics");
		return CMD_ERROR;
	}
	c->ret = o;
	return CMD_OK;
}

static enum cmd_result cmd_query_version(struct cmd_call *c)
{
	c->ret = version_object();
	return c->ret ? CMD_OK : CMD_NOMEM;
}

static enum cmd_result cmd_query_commands(struct cmd_call *c);

static const char *const no_params[] = { NULL };
static const char *const capabilities_params[] = { "enable", NULL };

static const struct cmd commands[] = {
	{ "qmp_capabilities", cmd_capabilities, always, capabilities_params },
	{ "query-commands", cmd_query_commands, always, no_params },
	{ "query-version", cmd_query_version, always, no_params },
	{ "query-status", cmd_query_status, has_query_status, no_params },
	{ "stop", cmd_stop, has_stop, no_params },
	{ "cont", cmd_cont, has_cont, no_params },
	{ "system_powerdown", cmd_powerdown, has_system_powerdown, no_params },
	{ "quit", cmd_quit, has_quit, no_params },
	{ "query-cpus-fast", cmd_query_cpus, has_query_cpus, no_params },
	{ "query-grappe-stats", cmd_query_stats, has_query_stats, no_params },
};

static enum cmd_result cmd_query_commands(struct cmd_call *c)
{
	struct json_object *list = json_object_new_array();

	if (!list)
		return CMD_NOMEM;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		struct json_object *o;

		if (!commands[i].available(c->s->ops))
			continue;
		o = json_object_new_object();
		if (!o || json_object_object_add(o, "name", json_object_new_string(commands[i].name)) ||
		    json_object_array_add(list, o)) {
			json_object_put(o);
			json_object_put(list);
			return CMD_NOMEM;
		}
	}
	c->ret = list;
	return CMD_OK;
}

/* The command named by a JSON string (which may hold NUL bytes). */
static const struct cmd *find_command(struct json_object *name)
{
	const char *s = json_object_get_string(name);
	size_t len = (size_t)json_object_get_string_len(name);

	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strlen(commands[i].name) == len && !memcmp(commands[i].name, s, len))
			return &commands[i];
	return NULL;
}

static const char *unexpected_param(const struct cmd *cmd, struct json_object *args)
{
	json_object_object_foreach(args, key, val) {
		bool known = false;

		(void)val;
		for (const char *const *p = cmd->params; *p && !known; p++)
			known = !strcmp(*p, key);
		if (!known)
			return key;
	}
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* Dispatcher                                                             */

void control_session_init(struct control_session *s, const struct control_ops *ops)
{
	s->ops = ops;
	s->negotiated = false;
}

static bool blank(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
			return false;
	return true;
}

/* Parses one JSON text that must fill the line; NULL with a message otherwise. */
static struct json_object *parse(const char *line, size_t len, char *why, size_t whylen)
{
	struct json_tokener *tok;
	struct json_object *o;
	enum json_tokener_error e;

	if (memchr(line, '\0', len)) {
		snprintf(why, whylen, "JSON parse error, NUL byte in input");
		return NULL;
	}
	tok = json_tokener_new_ex(CONTROL_MAX_DEPTH);
	if (!tok) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, line, (int)len);
	e = json_tokener_get_error(tok);
	if (!o && e == json_tokener_continue) {
		/* A bare number is only complete at the end of the input. */
		o = json_tokener_parse_ex(tok, "", 1);
		e = json_tokener_get_error(tok);
		if (!o && e == json_tokener_continue)
			e = json_tokener_error_parse_eof;
	}
	if (!o && e != json_tokener_success)
		snprintf(why, whylen, "JSON parse error, %s", json_tokener_error_desc(e));
	else if (!o)
		snprintf(why, whylen, "QMP input must be a JSON object");
	json_tokener_free(tok);
	return o;
}

int control_handle_line(struct control_session *s, const char *line, size_t len, char **reply)
{
	struct json_object *req, *id = NULL, *exec = NULL, *args = NULL, *empty = NULL;
	const struct cmd *cmd;
	struct cmd_call call;
	struct clipped cb;
	bool has_id;
	char why[128];
	const char *bad;
	char *out = NULL;

	*reply = NULL;
	if (len > CONTROL_MAX_LINE) {
		out = reply_error("GenericError", NULL, false,
				  "request longer than %u bytes", CONTROL_MAX_LINE);
		goto done;
	}
	if (blank(line, len))
		return 0;
	req = parse(line, len, why, sizeof(why));
	if (!req) {
		out = reply_error("GenericError", NULL, false, "%s", why);
		goto done;
	}
	if (!json_object_is_type(req, json_type_object)) {
		out = reply_error("GenericError", NULL, false, "QMP input must be a JSON object");
		goto put;
	}
	has_id = json_object_object_get_ex(req, "id", &id);
	json_object_object_foreach(req, key, val) {
		(void)val;
		if (strcmp(key, "execute") && strcmp(key, "arguments") && strcmp(key, "id")) {
			out = reply_error("GenericError", id, has_id,
					  "QMP input member '%s' is unexpected", clip(key, &cb));
			goto put;
		}
	}
	if (!json_object_object_get_ex(req, "execute", &exec)) {
		out = reply_error("GenericError", id, has_id, "QMP input lacks member 'execute'");
		goto put;
	}
	if (!json_object_is_type(exec, json_type_string)) {
		out = reply_error("GenericError", id, has_id,
				  "QMP input member 'execute' must be a string");
		goto put;
	}
	if (json_object_object_get_ex(req, "arguments", &args) &&
	    !json_object_is_type(args, json_type_object)) {
		out = reply_error("GenericError", id, has_id,
				  "QMP input member 'arguments' must be an object");
		goto put;
	}
	cmd = find_command(exec);
	if (!s->negotiated && (!cmd || cmd->run != cmd_capabilities)) {
		out = reply_error("CommandNotFound", id, has_id,
				  "Expecting capabilities negotiation with 'qmp_capabilities' "
				  "before command '%s'", clip(json_object_get_string(exec), &cb));
		goto put;
	}
	if (s->negotiated && cmd && cmd->run == cmd_capabilities) {
		out = reply_error("CommandNotFound", id, has_id,
				  "Capabilities negotiation is already complete, command ignored");
		goto put;
	}
	if (!cmd || !cmd->available(s->ops)) {
		out = reply_error("CommandNotFound", id, has_id,
				  "The command %s has not been found",
				  clip(json_object_get_string(exec), &cb));
		goto put;
	}
	if (!args) {
		args = empty = json_object_new_object();
		if (!args)
			goto put;
	}
	bad = unexpected_param(cmd, args);
	if (bad) {
		out = reply_error("GenericError", id, has_id, "Parameter '%s' is unexpected",
				  clip(bad, &cb));
		goto put;
	}
	memset(&call, 0, sizeof(call));
	call.s = s;
	call.args = args;
	switch (cmd->run(&call)) {
	case CMD_OK:
		out = reply_return(call.ret, id, has_id);
		break;
	case CMD_ERROR:
		out = reply_error("GenericError", id, has_id, "%s", call.desc);
		break;
	case CMD_NOMEM:
		break;
	}
put:
	json_object_put(empty);
	json_object_put(req);
done:
	*reply = out;
	return out ? 0 : -1;
}

/* ---------------------------------------------------------------------- */
/* Server                                                                 */

struct client {
	int fd;
	struct control_session session;
	char *in;                  /* CONTROL_MAX_LINE + 1 bytes */
	size_t in_len;
	char *out;
	size_t out_off, out_len, out_cap;
	bool events;               /* negotiated: gets events (under lock) */
	bool closing;              /* close once the output is out */
	bool dead;                 /* close now */
};

struct control {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t dev;
	ino_t ino;
	int listen_fd;
	int wake[2];
	struct control_ops ops;
	pthread_t thread;
	pthread_mutex_t lock;      /* clients' output and events, nr_clients, stopping */
	struct client *clients[CONTROL_MAX_CLIENTS];
	unsigned nr_clients;
	bool stopping;
};

static void wake(struct control *c)
{
	char b = 0;

	/* Nonblocking: a full pipe already means a pending wake-up. */
	if (write(c->wake[1], &b, 1) < 0 && errno != EAGAIN)
		return;
}

/* Queues text plus a newline for a client; called with c->lock held. */
static void queue_locked(struct client *cl, const char *text)
{
	size_t n = strlen(text), pending = cl->out_len - cl->out_off;

	if (cl->dead)
		return;
	if (pending + n + 1 > CONTROL_MAX_OUTPUT) {
		cl->dead = true;       /* it does not read what it is sent */
		return;
	}
	if (cl->out_off && cl->out_len + n + 1 > cl->out_cap) {
		memmove(cl->out, cl->out + cl->out_off, pending);
		cl->out_len = pending;
		cl->out_off = 0;
	}
	if (cl->out_len + n + 1 > cl->out_cap) {
		size_t cap = cl->out_cap ? cl->out_cap : 4096;
		char *p;

		while (cap < cl->out_len + n + 1)
			cap *= 2;
		p = realloc(cl->out, cap);
		if (!p) {
			cl->dead = true;
			return;
		}
		cl->out = p;
		cl->out_cap = cap;
	}
	memcpy(cl->out + cl->out_len, text, n);
	cl->out[cl->out_len + n] = '\n';
	cl->out_len += n + 1;
}

/* Sends what the socket takes now; called with c->lock held. */
static void flush_locked(struct client *cl)
{
	while (!cl->dead && cl->out_off < cl->out_len) {
		ssize_t n = send(cl->fd, cl->out + cl->out_off, cl->out_len - cl->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				cl->dead = true;
			return;
		}
		cl->out_off += (size_t)n;
	}
	if (cl->out_off == cl->out_len)
		cl->out_off = cl->out_len = 0;
}

static void client_free(struct client *cl)
{
	if (!cl)
		return;
	if (cl->fd >= 0)
		close(cl->fd);
	free(cl->in);
	free(cl->out);
	free(cl);
}

static void accept_client(struct control *c)
{
	struct client *cl;
	char *greeting;
	int fd = accept4(c->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	pthread_mutex_lock(&c->lock);
	if (c->nr_clients >= CONTROL_MAX_CLIENTS) {
		static const char busy[] =
			"{\"error\":{\"class\":\"GenericError\",\"desc\":\"too many clients\"}}\n";

		ssize_t r;

		pthread_mutex_unlock(&c->lock);
		r = send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)r;
		close(fd);
		return;
	}
	pthread_mutex_unlock(&c->lock);

	cl = calloc(1, sizeof(*cl));
	greeting = control_greeting();
	if (!cl || !greeting || !(cl->in = malloc(CONTROL_MAX_LINE + 1))) {
		free(greeting);
		if (cl)
			cl->fd = fd;
		else
			close(fd);
		client_free(cl);
		return;
	}
	cl->fd = fd;
	control_session_init(&cl->session, &c->ops);
	pthread_mutex_lock(&c->lock);
	queue_locked(cl, greeting);
	flush_locked(cl);
	c->clients[c->nr_clients++] = cl;
	pthread_mutex_unlock(&c->lock);
	free(greeting);
}

/* Runs the complete lines in a client's input buffer. */
static void run_lines(struct control *c, struct client *cl, bool eof)
{
	size_t start = 0;

	for (;;) {
		char *nl = memchr(cl->in + start, '\n', cl->in_len - start);
		size_t len = nl ? (size_t)(nl - (cl->in + start)) : cl->in_len - start;
		char *reply = NULL;
		bool dead;

		if (!nl && !(eof && len))
			break;
		if (control_handle_line(&cl->session, cl->in + start, len, &reply))
			reply = strdup("{\"error\":{\"class\":\"GenericError\",\"desc\":\"out of memory\"}}");
		pthread_mutex_lock(&c->lock);
		if (reply)
			queue_locked(cl, reply);
		cl->events = cl->session.negotiated;
		dead = cl->dead;
		pthread_mutex_unlock(&c->lock);
		free(reply);
		start += len + (nl ? 1 : 0);
		if (dead)
			break;
	}
	memmove(cl->in, cl->in + start, cl->in_len - start);
	cl->in_len -= start;
	if (cl->in_len > CONTROL_MAX_LINE) {
		/* A line that cannot end within the limit: say so, then hang up. */
		char *reply = NULL;

		control_handle_line(&cl->session, cl->in, cl->in_len, &reply);
		pthread_mutex_lock(&c->lock);
		if (reply)
			queue_locked(cl, reply);
		cl->closing = true;
		pthread_mutex_unlock(&c->lock);
		free(reply);
		cl->in_len = 0;
	}
}

static void read_client(struct control *c, struct client *cl)
{
	ssize_t n;

	if (cl->closing)
		return;
	n = recv(cl->fd, cl->in + cl->in_len, CONTROL_MAX_LINE + 1 - cl->in_len, MSG_DONTWAIT);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			pthread_mutex_lock(&c->lock);
			cl->dead = true;
			pthread_mutex_unlock(&c->lock);
		}
		return;
	}
	cl->in_len += (size_t)n;
	run_lines(c, cl, n == 0);
	if (n == 0) {
		/* The client is done sending: answer what it asked, then close. */
		cl->closing = true;
		cl->in_len = 0;
	}
}

static void *server_thread(void *arg)
{
	struct control *c = arg;
	struct pollfd fds[2 + CONTROL_MAX_CLIENTS];
	struct client *polled[CONTROL_MAX_CLIENTS];

	for (;;) {
		unsigned n = 2, nc = 0;

		pthread_mutex_lock(&c->lock);
		if (c->stopping) {
			pthread_mutex_unlock(&c->lock);
			break;
		}
		/* Drop the dead and those done talking. */
		for (unsigned i = 0; i < c->nr_clients;) {
			struct client *cl = c->clients[i];

			if (cl->dead || (cl->closing && cl->out_off == cl->out_len)) {
				c->clients[i] = c->clients[--c->nr_clients];
				client_free(cl);
				continue;
			}
			i++;
		}
		fds[0] = (struct pollfd){ .fd = c->wake[0], .events = POLLIN };
		fds[1] = (struct pollfd){ .fd = c->listen_fd, .events = POLLIN };
		for (unsigned i = 0; i < c->nr_clients; i++) {
			struct client *cl = c->clients[i];
			size_t pending = cl->out_len - cl->out_off;
			short ev = 0;

			if (pending)
				ev |= POLLOUT;
			if (!cl->closing && pending < CONTROL_OUTPUT_BACKLOG)
				ev |= POLLIN;
			polled[nc++] = cl;
			fds[n++] = (struct pollfd){ .fd = cl->fd, .events = ev };
		}
		pthread_mutex_unlock(&c->lock);

		if (poll(fds, n, CONTROL_POLL_MS) < 0) {
			if (errno == EINTR)
				continue;
			/* Should not happen; do not spin if it does. */
			usleep(10000);
			continue;
		}
		if (fds[0].revents & POLLIN) {
			char buf[64];

			while (read(c->wake[0], buf, sizeof(buf)) > 0)
				;
		}
		for (unsigned i = 0; i < nc; i++) {
			struct client *cl = polled[i];
			short re = fds[2 + i].revents;

			if (re & (POLLIN | POLLHUP | POLLERR))
				read_client(c, cl);
			pthread_mutex_lock(&c->lock);
			if (re & POLLNVAL)
				cl->dead = true;
			flush_locked(cl);
			if ((re & (POLLHUP | POLLERR)) && cl->out_off != cl->out_len &&
			    !(re & POLLIN))
				cl->dead = true;
			pthread_mutex_unlock(&c->lock);
		}
		if (fds[1].revents & POLLIN)
			accept_client(c);
	}
	return NULL;
}

void control_set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/*
 * Is a server answering on path? 1 yes, 0 no (nothing or a stale socket,
 * which is removed), -1 cannot tell (err says why).
 */
static int live_server(const char *path, const struct sockaddr_un *sa, char *err, size_t errlen)
{
	struct stat st;
	int fd, ret;

	if (lstat(path, &st)) {
		if (errno == ENOENT)
			return 0;
		control_set_err(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		control_set_err(err, errlen, "%s: exists and is not a socket", path);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		control_set_err(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	ret = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	if (!ret || errno == EAGAIN || errno == EINPROGRESS) {
		close(fd);
		control_set_err(err, errlen, "%s: another server is listening there", path);
		return 1;
	}
	ret = errno;
	close(fd);
	if (ret == ECONNREFUSED) {
		if (unlink(path) && errno != ENOENT) {
			control_set_err(err, errlen, "%s: cannot remove the stale socket: %s", path,
				strerror(errno));
			return -1;
		}
		return 0;
	}
	if (ret == ENOENT)
		return 0;
	control_set_err(err, errlen, "%s: %s", path, strerror(ret));
	return -1;
}

int control_start(const char *path, const struct control_ops *ops, struct control **out,
		  char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct control *c;
	struct stat st;
	int e;

	*out = NULL;
	if (!path || !*path || strlen(path) >= sizeof(sa.sun_path)) {
		control_set_err(err, errlen, "control socket path '%s' is empty or longer than %zu bytes",
			path ? path : "", sizeof(sa.sun_path) - 1);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	c = calloc(1, sizeof(*c));
	if (!c) {
		control_set_err(err, errlen, "out of memory");
		return -1;
	}
	c->listen_fd = c->wake[0] = c->wake[1] = -1;
	memcpy(c->path, path, strlen(path) + 1);
	c->ops = *ops;
	pthread_mutex_init(&c->lock, NULL);

	if (live_server(path, &sa, err, errlen))
		goto fail;
	c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->listen_fd < 0) {
		control_set_err(err, errlen, "socket: %s", strerror(errno));
		goto fail;
	}
	/* On Linux the socket file takes its mode from the socket: no window at umask. */
	if (fchmod(c->listen_fd, 0600)) {
		control_set_err(err, errlen, "%s: fchmod: %s", path, strerror(errno));
		goto fail;
	}
	if (bind(c->listen_fd, (struct sockaddr *)&sa, sizeof(sa))) {
		control_set_err(err, errlen, "%s: bind: %s", path, strerror(errno));
		goto fail;
	}
	if (chmod(path, 0600) || lstat(path, &st)) {
		control_set_err(err, errlen, "%s: %s", path, strerror(errno));
		unlink(path);
		goto fail;
	}
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	if (listen(c->listen_fd, 8)) {
		control_set_err(err, errlen, "%s: listen: %s", path, strerror(errno));
		unlink(path);
		goto fail;
	}
	if (pipe2(c->wake, O_NONBLOCK | O_CLOEXEC)) {
		control_set_err(err, errlen, "pipe: %s", strerror(errno));
		unlink(path);
		goto fail;
	}
	e = pthread_create(&c->thread, NULL, server_thread, c);
	if (e) {
		control_set_err(err, errlen, "cannot start the control thread: %s", strerror(e));
		unlink(path);
		goto fail;
	}
	*out = c;
	return 0;
fail:
	if (c->listen_fd >= 0)
		close(c->listen_fd);
	if (c->wake[0] >= 0)
		close(c->wake[0]);
	if (c->wake[1] >= 0)
		close(c->wake[1]);
	pthread_mutex_destroy(&c->lock);
	free(c);
	return -1;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Last chance for queued replies and events (the reply to quit, SHUTDOWN). */
static void final_flush(struct control *c)
{
	long long deadline = now_ms() + CONTROL_FLUSH_MS;

	for (;;) {
		struct pollfd fds[CONTROL_MAX_CLIENTS];
		struct client *who[CONTROL_MAX_CLIENTS];
		unsigned n = 0;
		long long left;

		for (unsigned i = 0; i < c->nr_clients; i++) {
			struct client *cl = c->clients[i];

			flush_locked(cl);
			if (!cl->dead && cl->out_off != cl->out_len) {
				who[n] = cl;
				fds[n++] = (struct pollfd){ .fd = cl->fd, .events = POLLOUT };
			}
		}
		left = deadline - now_ms();
		if (!n || left <= 0)
			return;
		if (poll(fds, n, (int)left) < 0 && errno != EINTR)
			return;
		for (unsigned i = 0; i < n; i++)
			if (fds[i].revents & (POLLERR | POLLHUP | POLLNVAL))
				who[i]->dead = true;
	}
}

void control_stop(struct control *c)
{
	struct stat st;

	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	c->stopping = true;
	pthread_mutex_unlock(&c->lock);
	wake(c);
	pthread_join(c->thread, NULL);

	close(c->listen_fd);
	/* Only remove the file if nobody has put another in its place since. */
	if (!lstat(c->path, &st) && st.st_dev == c->dev && st.st_ino == c->ino)
		unlink(c->path);
	pthread_mutex_lock(&c->lock);
	final_flush(c);
	for (unsigned i = 0; i < c->nr_clients; i++)
		client_free(c->clients[i]);
	c->nr_clients = 0;
	pthread_mutex_unlock(&c->lock);
	close(c->wake[0]);
	close(c->wake[1]);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

int control_emit_event(struct control *c, const char *name, struct json_object *data)
{
	char *text = control_format_event(name, data);

	if (!text)
		return -1;
	pthread_mutex_lock(&c->lock);
	for (unsigned i = 0; i < c->nr_clients; i++)
		if (c->clients[i]->events)
			queue_locked(c->clients[i], text);
	pthread_mutex_unlock(&c->lock);
	free(text);
	wake(c);
	return 0;
}

unsigned control_nr_clients(struct control *c)
{
	unsigned n;

	pthread_mutex_lock(&c->lock);
	n = c->nr_clients;
	pthread_mutex_unlock(&c->lock);
	return n;
}

/* ---------------------------------------------------------------------- */
/* Where sockets live                                                     */

const char *control_run_dir(void)
{
	const char *d = getenv("GRAPPE_RUN_DIR");

	return d && *d ? d : "/run/grappe";
}

int control_vm_dir(char *out, size_t len, const char *vm_name)
{
	int n;

	if (!vm_name || !*vm_name || strchr(vm_name, '/') || !strcmp(vm_name, ".") ||
	    !strcmp(vm_name, ".."))
		return -1;
	n = snprintf(out, len, "%s/%s", control_run_dir(), vm_name);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* mkdir -p with mode 0700 for what it creates. */
static int make_dirs(const char *dir, char *err, size_t errlen)
{
	char p[PATH_MAX];
	size_t len = strlen(dir);

	if (len >= sizeof(p)) {
		control_set_err(err, errlen, "%s: path too long", dir);
		return -1;
	}
	memcpy(p, dir, len + 1);
	for (char *s = p + 1;; s++) {
		bool end = !*s;

		if (*s != '/' && !end)
			continue;
		*s = '\0';
		if (mkdir(p, 0700) && errno != EEXIST) {
			control_set_err(err, errlen, "cannot create %s: %s", p, strerror(errno));
			return -1;
		}
		if (end)
			break;
		*s = '/';
	}
	return 0;
}

int control_node_socket_path(char *out, size_t len, const char *vm_name, unsigned node,
			     char *err, size_t errlen)
{
	char dir[PATH_MAX];
	int n;

	if (control_vm_dir(dir, sizeof(dir), vm_name)) {
		control_set_err(err, errlen, "no control socket directory for VM name '%s'",
			vm_name ? vm_name : "");
		return -1;
	}
	n = snprintf(out, len, "%s/node%u.qmp", dir, node);
	if (n < 0 || (size_t)n >= len ||
	    (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		control_set_err(err, errlen, "control socket path %s/node%u.qmp is too long", dir, node);
		return -1;
	}
	return make_dirs(dir, err, errlen);
}
