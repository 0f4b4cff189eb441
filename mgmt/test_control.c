// SPDX-License-Identifier: MIT
/*
 * The node control protocol: the dispatcher without sockets (negotiation,
 * every command against a fake node, error classes, malformed and
 * oversized input, id echo), then the server and client over a real unix
 * socket, and the `grappe qmp` / `grappe stats` commands.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "mgmt/control.h"
#include "mgmt/control_client.h"

/* ---------------------------------------------------------------------- */
/* A fake node                                                            */

struct fake {
	enum control_run_state state;
	unsigned node;
	unsigned stops, conts, powerdowns, quits;
	int fail;                 /* negative errno every command callback returns */
	const char *fail_msg;     /* and the message it gives, or NULL */
	unsigned nr_cpus;
	unsigned report_cpus;     /* what query_cpus claims as *n, if nonzero */
	bool stats_null;          /* query_stats succeeds without an object */
	struct control *ctl;      /* emits STOP/RESUME like a node would */
};

static int fake_result(struct fake *f, char *err, size_t errlen)
{
	if (f->fail && f->fail_msg)
		snprintf(err, errlen, "%s", f->fail_msg);
	return f->fail;
}

static int fake_status(void *ctx, struct control_status *out, char *err, size_t errlen)
{
	struct fake *f = ctx;

	out->state = f->state;
	out->node = f->node;
	out->nr_nodes = 3;
	snprintf(out->vm_name, sizeof(out->vm_name), "testvm");
	return fake_result(f, err, errlen);
}

static int fake_stop(void *ctx, char *err, size_t errlen)
{
	struct fake *f = ctx;

	if (f->fail)
		return fake_result(f, err, errlen);
	f->stops++;
	f->state = CONTROL_PAUSED;
	if (f->ctl)
		control_emit_event(f->ctl, "STOP", NULL);
	return 0;
}

static int fake_cont(void *ctx, char *err, size_t errlen)
{
	struct fake *f = ctx;

	if (f->fail)
		return fake_result(f, err, errlen);
	f->conts++;
	f->state = CONTROL_RUNNING;
	if (f->ctl)
		control_emit_event(f->ctl, "RESUME", NULL);
	return 0;
}

static int fake_powerdown(void *ctx, char *err, size_t errlen)
{
	struct fake *f = ctx;

	f->powerdowns++;
	return fake_result(f, err, errlen);
}

static int fake_quit(void *ctx, char *err, size_t errlen)
{
	struct fake *f = ctx;

	f->quits++;
	return fake_result(f, err, errlen);
}

static int fake_cpus(void *ctx, struct control_cpu *cpus, unsigned max, unsigned *n,
		     char *err, size_t errlen)
{
	struct fake *f = ctx;

	for (unsigned i = 0; i < f->nr_cpus && i < max; i++)
		cpus[i] = (struct control_cpu){ .index = i, .node = i % 2, .cell = i % 2,
						.socket = i % 2, .core = i / 2,
						.thread_id = i % 2 == 1 ? 4000 + (pid_t)i : 0,
						.halted = i == 1, .exits = 1000 * (i + 1) };
	*n = f->report_cpus ? f->report_cpus : f->nr_cpus;
	return fake_result(f, err, errlen);
}

static const char stats_json[] =
	"{\"node\":1,\"dsm\":{\"faults\":{\"read\":10,\"write\":20,\"upgrade\":3,"
	"\"zero_local\":4},\"pages_sent\":7,\"bytes_sent\":28672,\"pages_received\":9,"
	"\"bytes_received\":3145728,\"invalidations\":2,\"evictions\":0,"
	"\"hot_pages\":[{\"gpa\":\"0x2000\",\"moves\":5},{\"gpa\":\"0x1000\",\"moves\":50}]},"
	"\"vcpus\":[{\"index\":1,\"exits\":1234,\"io\":100,\"mmio\":7,\"halts\":30}]}";

static int fake_stats(void *ctx, struct json_object **out, char *err, size_t errlen)
{
	struct fake *f = ctx;

	if (f->fail)
		return fake_result(f, err, errlen);
	*out = f->stats_null ? NULL : json_tokener_parse(stats_json);
	return 0;
}

static struct control_ops fake_ops(struct fake *f)
{
	return (struct control_ops){
		.query_status = fake_status, .stop = fake_stop, .cont = fake_cont,
		.system_powerdown = fake_powerdown, .quit = fake_quit,
		.query_cpus = fake_cpus, .query_stats = fake_stats, .ctx = f,
	};
}

/* ---------------------------------------------------------------------- */
/* Dispatcher helpers                                                     */

/* Strict parse: every reply must be valid JSON (and valid UTF-8). */
static struct json_object *parse_strict(const char *text)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o;

	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, text, (int)strlen(text));
	assert_int_equal(json_tokener_get_error(tok), json_tokener_success);
	json_tokener_free(tok);
	assert_non_null(o);
	return o;
}

static struct json_object *ask_len(struct control_session *s, const char *line, size_t len)
{
	char *reply = NULL;
	struct json_object *o;

	assert_int_equal(control_handle_line(s, line, len, &reply), 0);
	assert_non_null(reply);
	assert_null(strchr(reply, '\n'));
	o = parse_strict(reply);
	free(reply);
	return o;
}

static struct json_object *ask(struct control_session *s, const char *line)
{
	return ask_len(s, line, strlen(line));
}

static const char *error_class(struct json_object *r)
{
	struct json_object *e, *cls, *desc;

	if (!json_object_object_get_ex(r, "error", &e))
		return NULL;
	assert_true(json_object_object_get_ex(e, "class", &cls));
	assert_true(json_object_object_get_ex(e, "desc", &desc));
	assert_true(json_object_is_type(desc, json_type_string));
	return json_object_get_string(cls);
}

static const char *error_desc(struct json_object *r)
{
	return json_object_get_string(json_object_object_get(json_object_object_get(r, "error"),
							     "desc"));
}

static struct json_object *ret_of(struct json_object *r)
{
	struct json_object *v;

	if (!json_object_object_get_ex(r, "return", &v))
		fail_msg("not a return: %s", json_object_to_json_string(r));
	return v;
}

static void expect_error(struct control_session *s, const char *line, const char *cls,
			 const char *desc_part)
{
	struct json_object *r = ask(s, line);

	if (!error_class(r) || strcmp(error_class(r), cls))
		fail_msg("%s -> %s, expected %s", line, json_object_to_json_string(r), cls);
	if (desc_part && !strstr(error_desc(r), desc_part))
		fail_msg("%s -> desc '%s' lacks '%s'", line, error_desc(r), desc_part);
	json_object_put(r);
}

static void expect_return_empty(struct control_session *s, const char *line)
{
	struct json_object *r = ask(s, line), *v = ret_of(r);

	assert_true(json_object_is_type(v, json_type_object));
	assert_int_equal(json_object_object_length(v), 0);
	json_object_put(r);
}

static void negotiate(struct control_session *s)
{
	expect_return_empty(s, "{\"execute\":\"qmp_capabilities\"}");
}

/* ---------------------------------------------------------------------- */
/* Dispatcher                                                             */

static void test_greeting(void **state)
{
	char *g = control_greeting();
	struct json_object *o = parse_strict(g), *v;

	assert_true(json_object_object_get_ex(o, "QMP", &v));
	assert_int_equal(json_object_get_int(json_object_object_get(
		json_object_object_get(json_object_object_get(v, "version"), "grappe"), "major")),
		CONTROL_VERSION_MAJOR);
	assert_int_equal(json_object_get_int(json_object_object_get(
		json_object_object_get(json_object_object_get(v, "version"), "grappe"), "minor")),
		CONTROL_VERSION_MINOR);
	assert_true(json_object_is_type(json_object_object_get(v, "capabilities"),
					json_type_array));
	assert_int_equal(json_object_array_length(json_object_object_get(v, "capabilities")), 0);
	json_object_put(o);
	free(g);
}

static void test_negotiation_first(void **state)
{
	struct fake f = { 0 };
	struct control_ops ops = fake_ops(&f);
	struct control_session s;
	struct json_object *r;

	control_session_init(&s, &ops);
	expect_error(&s, "{\"execute\":\"stop\"}", "CommandNotFound", "qmp_capabilities");
	expect_error(&s, "{\"execute\":\"no-such\"}", "CommandNotFound", "qmp_capabilities");
	assert_int_equal(f.stops, 0);
	/* The id comes back on that error too. */
	r = ask(&s, "{\"execute\":\"query-status\",\"id\":\"a\"}");
	assert_string_equal(error_class(r), "CommandNotFound");
	assert_string_equal(json_object_get_string(json_object_object_get(r, "id")), "a");
	json_object_put(r);
	/* Asking for a capability grappe does not have fails and negotiates nothing. */
	expect_error(&s, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}}",
		     "GenericError", "oob");
	expect_error(&s, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":\"oob\"}}",
		     "GenericError", "enable");
	expect_error(&s, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[3]}}",
		     "GenericError", "enable");
	expect_error(&s, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"x\":1}}",
		     "GenericError", "'x'");
	assert_false(s.negotiated);
	expect_error(&s, "{\"execute\":\"stop\"}", "CommandNotFound", NULL);
	expect_return_empty(&s, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[]}}");
	assert_true(s.negotiated);
	expect_error(&s, "{\"execute\":\"qmp_capabilities\"}", "CommandNotFound", "already");
	expect_return_empty(&s, "{\"execute\":\"stop\"}");
	assert_int_equal(f.stops, 1);
}

static void test_query_status(void **state)
{
	static const char *const names[] = { "running", "paused", "shutdown" };
	struct fake f = { .node = 1 };
	struct control_ops ops = fake_ops(&f);
	struct control_session s;

	control_session_init(&s, &ops);
	negotiate(&s);
	for (int st = CONTROL_RUNNING; st <= CONTROL_SHUTDOWN; st++) {
		struct json_object *r, *v;

		f.state = (enum control_run_state)st;
		r = ask(&s, "{\"execute\":\"query-status\"}");
		v = ret_of(r);
		assert_string_equal(json_object_get_string(json_object_object_get(v, "status")),
				    names[st]);
		assert_int_equal(json_object_get_boolean(json_object_object_get(v, "running")),
				 st == CONTROL_RUNNING);
		assert_false(json_object_get_boolean(json_object_object_get(v, "singlestep")));
		assert_int_equal(json_object_get_int(json_object_object_get(v, "node")), 1);
		assert_int_equal(json_object_get_int(json_object_object_get(v, "nr-nodes")), 3);
		assert_string_equal(json_object_get_string(json_object_object_get(v, "vm-name")),
				    "testvm");
		json_object_put(r);
	}
	f.state = (enum control_run_state)42;
	expect_error(&s, "{\"execute\":\"query-status\"}", "GenericError", "run state");
}

static void test_run_control(void **state)
{
	struct fake f = { 0 };
	struct control_ops ops = fake_ops(&f);
	struct control_session s;

	control_session_init(&s, &ops);
	negotiate(&s);
	expect_return_empty(&s, "{\"execute\":\"stop\"}");
	assert_int_equal(f.state, CONTROL_PAUSED);
	expect_return_empty(&s, "{\"execute\":\"cont\",\"arguments\":{}}");
	assert_int_equal(f.state, CONTROL_RUNNING);
	expect_return_empty(&s, "{\"execute\":\"system_powerdown\"}");
	expect_return_empty(&s, "{\"execute\":\"quit\"}");
	assert_int_equal(f.stops, 1);
	assert_int_equal(f.conts, 1);
	assert_int_equal(f.powerdowns, 1);
	assert_int_equal(f.quits, 1);

	/* A failing callback: its message, else strerror. */
	f.fail = -EBUSY;
	f.fail_msg = "the guest is migrating";
	expect_error(&s, "{\"execute\":\"stop\"}", "GenericError", "stop: the guest is migrating");
	f.fail_msg = NULL;
	expect_error(&s, "{\"execute\":\"cont\"}", "GenericError", strerror(EBUSY));
	expect_error(&s, "{\"execute\":\"system_powerdown\"}", "GenericError", "system_powerdown");
	expect_error(&s, "{\"execute\":\"quit\"}", "GenericError", "quit");
	expect_error(&s, "{\"execute\":\"query-cpus-fast\"}", "GenericError", "query-cpus-fast");
	expect_error(&s, "{\"execute\":\"query-grappe-stats\"}", "GenericError",
		     "query-grappe-stats");
	f.fail = 0;
	/* These take no arguments. */
	expect_error(&s, "{\"execute\":\"stop\",\"arguments\":{\"now\":true}}", "GenericError",
		     "Parameter 'now' is unexpected");
	assert_int_equal(f.stops, 1);
}

static void test_query_cpus(void **state)
{
	struct fake f = { .nr_cpus = 3 };
	struct control_ops ops = fake_ops(&f);
	struct control_session s;
	struct json_object *r, *list, *c1, *props;

	control_session_init(&s, &ops);
	negotiate(&s);
	r = ask(&s, "{\"execute\":\"query-cpus-fast\"}");
	list = ret_of(r);
	assert_true(json_object_is_type(list, json_type_array));
	assert_int_equal(json_object_array_length(list), 3);
	c1 = json_object_array_get_idx(list, 1);
	assert_int_equal(json_object_get_int(json_object_object_get(c1, "cpu-index")), 1);
	assert_int_equal(json_object_get_int(json_object_object_get(c1, "thread-id")), 4001);
	assert_string_equal(json_object_get_string(json_object_object_get(c1, "target")), "x86_64");
	assert_int_equal(json_object_get_int(json_object_object_get(c1, "node")), 1);
	assert_true(json_object_get_boolean(json_object_object_get(c1, "halted")));
	assert_int_equal(json_object_get_int64(json_object_object_get(c1, "exits")), 2000);
	props = json_object_object_get(c1, "props");
	assert_int_equal(json_object_get_int(json_object_object_get(props, "node-id")), 1);
	assert_int_equal(json_object_get_int(json_object_object_get(props, "socket-id")), 1);
	assert_int_equal(json_object_get_int(json_object_object_get(props, "core-id")), 0);
	json_object_put(r);

	f.nr_cpus = 0;
	r = ask(&s, "{\"execute\":\"query-cpus-fast\"}");
	assert_int_equal(json_object_array_length(ret_of(r)), 0);
	json_object_put(r);

	/* A callback that claims more than it was given room for. */
	f.report_cpus = CONTROL_MAX_CPUS + 1;
	expect_error(&s, "{\"execute\":\"query-cpus-fast\"}", "GenericError", "at most");
}

static void test_query_stats(void **state)
{
	struct fake f = { 0 };
	struct control_ops ops = fake_ops(&f);
	struct control_session s;
	struct json_object *r, *want = json_tokener_parse(stats_json);

	control_session_init(&s, &ops);
	negotiate(&s);
	r = ask(&s, "{\"execute\":\"query-grappe-stats\",\"id\":7}");
	assert_true(json_object_equal(ret_of(r), want));
	assert_int_equal(json_object_get_int(json_object_object_get(r, "id")), 7);
	json_object_put(r);
	json_object_put(want);
	f.stats_null = true;
	expect_error(&s, "{\"execute\":\"query-grappe-stats\"}", "GenericError", "no statistics");
}

static bool listed(struct json_object *list, const char *name)
{
	for (size_t i = 0; i < json_object_array_length(list); i++)
		if (!strcmp(json_object_get_string(json_object_object_get(
				json_object_array_get_idx(list, i), "name")), name))
			return true;
	return false;
}

static void test_query_commands_version(void **state)
{
	static const char *const all[] = {
		"qmp_capabilities", "query-commands", "query-version", "query-status", "stop",
		"cont", "system_powerdown", "quit", "query-cpus-fast", "query-grappe-stats",
	};
	struct fake f = { 0 };
	struct control_ops ops = fake_ops(&f), few = { .query_status = fake_status, .ctx = &f };
	struct control_session s;
	struct json_object *r, *v;

	control_session_init(&s, &ops);
	negotiate(&s);
	r = ask(&s, "{\"execute\":\"query-commands\"}");
	assert_int_equal(json_object_array_length(ret_of(r)), 10);
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		assert_true(listed(ret_of(r), all[i]));
	json_object_put(r);

	r = ask(&s, "{\"execute\":\"query-version\"}");
	v = json_object_object_get(ret_of(r), "grappe");
	assert_int_equal(json_object_get_int(json_object_object_get(v, "major")),
			 CONTROL_VERSION_MAJOR);
	assert_int_equal(json_object_get_int(json_object_object_get(v, "minor")),
			 CONTROL_VERSION_MINOR);
	assert_non_null(json_object_object_get(ret_of(r), "package"));
	json_object_put(r);

	/* Commands without a callback do not exist. */
	control_session_init(&s, &few);
	negotiate(&s);
	r = ask(&s, "{\"execute\":\"query-commands\"}");
	assert_int_equal(json_object_array_length(ret_of(r)), 4);
	assert_true(listed(ret_of(r), "query-status"));
	assert_false(listed(ret_of(r), "stop"));
	json_object_put(r);
	expect_error(&s, "{\"execute\":\"stop\"}", "CommandNotFound", "stop");
	expect_error(&s, "{\"execute\":\"query-grappe-stats\"}", "CommandNotFound", NULL);
}

static void test_bad_requests(void **state)
{
	struct fake f = { 0 };
	struct control_ops ops = fake_ops(&f);
	struct control_session s;

	control_session_init(&s, &ops);
	negotiate(&s);
	expect_error(&s, "{\"execute\":\"query-nothing\"}", "CommandNotFound",
		     "The command query-nothing has not been found");
	expect_error(&s, "[1,2]", "GenericError", "JSON object");
	expect_error(&s, "42", "GenericError", "JSON object");
	expect_error(&s, "\"stop\"", "GenericError", "JSON object");
	expect_error(&s, "null", "GenericError", NULL);
	expect_error(&s, "{}", "GenericError", "lacks member 'execute'");
	expect_error(&s, "{\"execute\":3}", "GenericError", "must be a string");
	expect_error(&s, "{\"execute\":\"stop\",\"arguments\":[]}", "GenericError",
		     "'arguments' must be an object");
	expect_error(&s, "{\"execute\":\"stop\",\"arguments\":null}", "GenericError",
		     "'arguments' must be an object");
	expect_error(&s, "{\"execute\":\"stop\",\"exec-oob\":\"stop\"}", "GenericError",
		     "'exec-oob' is unexpected");
	/* A command name with a NUL in it is not the command before the NUL. */
	expect_error(&s, "{\"execute\":\"stop\\u0000x\"}", "CommandNotFound", NULL);
	assert_int_equal(f.stops, 0);
}

static void test_malformed_json(void **state)
{
	static const char *const bad[] = {
		"{", "{\"execute\":", "{\"execute\":\"stop\"", "{\"execute\":\"stop\",}",
		"{\"execute\":\"stop\"} x", "{\"execute\":\"stop\"}{}", "nan", "\x01",
		"{\"execute\":\"\xff\"}", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]"
		"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
	};
	struct fake f = { 0 };
	struct control_ops ops = fake_ops(&f);
	struct control_session s;
	char *reply;

	control_session_init(&s, &ops);
	negotiate(&s);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		expect_error(&s, bad[i], "GenericError", "JSON parse error");
		/* The session goes on. */
		expect_return_empty(&s, "{\"execute\":\"cont\"}");
	}
	/* NUL bytes in the line. */
	{
		static const char nul[] = "{\"execute\":\"stop\"}\0junk";
		struct json_object *r = ask_len(&s, nul, sizeof(nul) - 1);

		assert_string_equal(error_class(r), "GenericError");
		json_object_put(r);
	}
	/* Blank lines get no reply at all. */
	assert_int_equal(control_handle_line(&s, "", 0, &reply), 0);
	assert_null(reply);
	assert_int_equal(control_handle_line(&s, " \t\r", 3, &reply), 0);
	assert_null(reply);
	/* Surrounding white space and a CR are fine. */
	expect_return_empty(&s, "  {\"execute\":\"stop\"}\r");
	assert_int_equal(f.stops, 1);
}

static void test_oversized_line(void **state)
{
	struct fake f = { 0 };
	struct control_ops ops = fake_ops(&f);
	struct control_session s;
	size_t len = CONTROL_MAX_LINE + 1;
	char *big = malloc(len + 1);
	struct json_object *r;

	control_session_init(&s, &ops);
	negotiate(&s);
	/* A valid request, padded with spaces past the limit. */
	memset(big, ' ', len);
	memcpy(big, "{\"execute\":\"stop\"}", 18);
	big[len] = '\0';
	r = ask_len(&s, big, len);
	assert_string_equal(error_class(r), "GenericError");
	assert_non_null(strstr(error_desc(r), "longer than"));
	json_object_put(r);
	assert_int_equal(f.stops, 0);
	/* Exactly at the limit is accepted. */
	big[CONTROL_MAX_LINE] = '\0';
	expect_return_empty(&s, big);
	assert_int_equal(f.stops, 1);
	free(big);
}

static void test_id_echo(void **state)
{
	static const char *const ids[] = {
		"\"x\"", "0", "-12", "18446744073709551615", "1.5", "1e400", "true", "null",
		"[1,{\"a\":[]}]", "{\"k\":\"v\",\"n\":{}}", "\"\\u00e9\\n\"",
	};
	struct fake f = { 0 };
	struct control_ops ops = fake_ops(&f);
	struct control_session s;

	control_session_init(&s, &ops);
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		static const char *const cmds[] = {
			"\"execute\":\"query-status\"",          /* before negotiation: error */
			"\"execute\":\"query-version\"",
			"\"execute\":\"nope\"",
			"\"execute\":\"stop\",\"arguments\":{\"z\":0}",
			"\"execute\":5",
			"\"arguments\":{}",
		};
		for (size_t j = 0; j < sizeof(cmds) / sizeof(cmds[0]); j++) {
			char line[256];
			struct json_object *r, *want, *got;

			if (j == 1 && !s.negotiated)
				negotiate(&s);
			snprintf(line, sizeof(line), "{%s,\"id\":%s}", cmds[j], ids[i]);
			r = ask(&s, line);
			want = json_tokener_parse(ids[i]);
			assert_true(json_object_object_get_ex(r, "id", &got));
			if (!json_object_equal(got, want))
				fail_msg("%s: id %s came back as %s", line, ids[i],
					 json_object_to_json_string(got));
			json_object_put(want);
			json_object_put(r);
		}
		control_session_init(&s, &ops);
	}
	/* No id in, no id out. */
	control_session_init(&s, &ops);
	{
		struct json_object *r = ask(&s, "{\"execute\":\"qmp_capabilities\"}");

		assert_false(json_object_object_get_ex(r, "id", NULL));
		json_object_put(r);
	}
}

static void test_long_names_clipped(void **state)
{
	struct fake f = { 0 };
	struct control_ops ops = fake_ops(&f);
	struct control_session s;
	char line[2048], name[1024];
	struct json_object *r;
	size_t n = 0;

	control_session_init(&s, &ops);
	negotiate(&s);
	/* A long name of 2-byte characters: the echo is cut between characters. */
	while (n + 2 < 601) {
		name[n++] = '\xc3';
		name[n++] = '\xa9';
	}
	name[n] = '\0';
	snprintf(line, sizeof(line), "{\"execute\":\"x%s\"}", name);
	r = ask(&s, line);     /* ask() checks the reply is valid UTF-8 */
	assert_string_equal(error_class(r), "CommandNotFound");
	assert_true(strlen(error_desc(r)) < 200);
	assert_non_null(strstr(error_desc(r), "..."));
	json_object_put(r);
	snprintf(line, sizeof(line), "{\"execute\":\"stop\",\"arguments\":{\"%s\":1}}", name);
	r = ask(&s, line);
	assert_string_equal(error_class(r), "GenericError");
	json_object_put(r);
}

static void test_event_format(void **state)
{
	struct json_object *d = json_object_new_object(), *o, *ts;
	char *text;

	json_object_object_add(d, "reason", json_object_new_string("host-qmp-quit"));
	text = control_format_event("SHUTDOWN", d);
	o = parse_strict(text);
	assert_string_equal(json_object_get_string(json_object_object_get(o, "event")), "SHUTDOWN");
	assert_string_equal(json_object_get_string(json_object_object_get(
		json_object_object_get(o, "data"), "reason")), "host-qmp-quit");
	ts = json_object_object_get(o, "timestamp");
	assert_true(json_object_get_int64(json_object_object_get(ts, "seconds")) > 1600000000);
	assert_true(json_object_get_int64(json_object_object_get(ts, "microseconds")) < 1000000);
	json_object_put(o);
	free(text);
	text = control_format_event("STOP", NULL);
	o = parse_strict(text);
	assert_int_equal(json_object_object_length(json_object_object_get(o, "data")), 0);
	json_object_put(o);
	free(text);
}

/* ---------------------------------------------------------------------- */
/* Over a socket                                                          */

struct sock_fixture {
	char dir[40];
	char path[80];
};

static int sock_setup(void **state)
{
	struct sock_fixture *fx = calloc(1, sizeof(*fx));

	snprintf(fx->dir, sizeof(fx->dir), "/tmp/grappe-ctl-XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	snprintf(fx->path, sizeof(fx->path), "%s/node0.qmp", fx->dir);
	*state = fx;
	return 0;
}

static int sock_teardown(void **state)
{
	struct sock_fixture *fx = *state;
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", fx->dir);
	if (system(cmd))
		return -1;
	free(fx);
	return 0;
}

static struct control *start(const char *path, const struct control_ops *ops)
{
	struct control *c;
	char err[256];

	if (control_start(path, ops, &c, err, sizeof(err)))
		fail_msg("control_start: %s", err);
	return c;
}

static struct control_client *client(const char *path)
{
	struct control_client *c;
	char err[256];

	if (control_client_connect(path, 2000, &c, err, sizeof(err)))
		fail_msg("connect: %s", err);
	return c;
}

static struct json_object *run(struct control_client *c, const char *cmd, const char *args)
{
	struct json_object *a = args ? json_tokener_parse(args) : NULL, *r;
	char err[256];

	if (control_client_execute(c, cmd, a, &r, err, sizeof(err)))
		fail_msg("%s: %s", cmd, err);
	json_object_put(a);
	return r;
}

static struct json_object *event(struct control_client *c, const char *name)
{
	struct json_object *ev;
	char err[256];

	if (control_client_next_event(c, 2000, &ev, err, sizeof(err)) != 1)
		fail_msg("no %s event", name);
	assert_string_equal(json_object_get_string(json_object_object_get(ev, "event")), name);
	return ev;
}

static void wait_clients(struct control *c, unsigned n)
{
	for (int i = 0; i < 200 && control_nr_clients(c) != n; i++)
		usleep(10000);
	assert_int_equal(control_nr_clients(c), n);
}

/* A raw connection, to send what the client library never would. */
static int raw_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { .tv_sec = 2 };

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* One line from a raw connection (without the newline); NULL at EOF or error. */
static char *raw_line(int fd)
{
	static char buf[4096];
	size_t n = 0;

	while (n < sizeof(buf) - 1) {
		ssize_t r = recv(fd, buf + n, 1, 0);

		if (r <= 0)
			return NULL;
		if (buf[n] == '\n') {
			buf[n] = '\0';
			return buf;
		}
		n++;
	}
	return NULL;
}

static void raw_send(int fd, const char *s)
{
	assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

static void test_socket_basic(void **state)
{
	struct sock_fixture *fx = *state;
	struct fake f = { .nr_cpus = 2 };
	struct control_ops ops = fake_ops(&f);
	struct control *ctl = start(fx->path, &ops);
	struct control_client *c;
	struct json_object *r, *ev;
	struct stat st;

	f.ctl = ctl;
	assert_int_equal(lstat(fx->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);

	c = client(fx->path);
	assert_non_null(json_object_object_get(control_client_greeting(c), "QMP"));
	r = run(c, "query-status", NULL);
	assert_string_equal(json_object_get_string(json_object_object_get(ret_of(r), "status")),
			    "running");
	json_object_put(r);

	/* stop emits STOP from inside the callback, before the reply. */
	r = run(c, "stop", NULL);
	ret_of(r);
	json_object_put(r);
	ev = event(c, "STOP");
	json_object_put(ev);

	r = run(c, "query-cpus-fast", NULL);
	assert_int_equal(json_object_array_length(ret_of(r)), 2);
	json_object_put(r);
	r = run(c, "nope", NULL);
	assert_string_equal(error_class(r), "CommandNotFound");
	json_object_put(r);
	r = run(c, "stop", "{\"force\":true}");
	assert_string_equal(error_class(r), "GenericError");
	json_object_put(r);

	/* An event from another thread (the node's main loop). */
	{
		struct json_object *d = json_object_new_object();

		json_object_object_add(d, "node", json_object_new_int(2));
		assert_int_equal(control_emit_event(ctl, "GRAPPE_NODE_DOWN", d), 0);
	}
	ev = event(c, "GRAPPE_NODE_DOWN");
	assert_int_equal(json_object_get_int(json_object_object_get(
		json_object_object_get(ev, "data"), "node")), 2);
	assert_non_null(json_object_object_get(ev, "timestamp"));
	json_object_put(ev);
	{
		char err[64];

		assert_int_equal(control_client_next_event(c, 50, &ev, err, sizeof(err)), 0);
	}

	control_client_close(c);
	wait_clients(ctl, 0);
	control_stop(ctl);
	/* The socket file goes with the server. */
	assert_int_equal(lstat(fx->path, &st), -1);
}

static void test_socket_two_clients(void **state)
{
	struct sock_fixture *fx = *state;
	struct fake f = { 0 };
	struct control_ops ops = fake_ops(&f);
	struct control *ctl = start(fx->path, &ops);
	struct control_client *a, *b;
	struct json_object *r, *ev;

	f.ctl = ctl;
	a = client(fx->path);
	b = client(fx->path);
	wait_clients(ctl, 2);
	r = run(a, "stop", NULL);
	json_object_put(r);
	/* Both get the event, whoever asked. */
	ev = event(a, "STOP");
	json_object_put(ev);
	ev = event(b, "STOP");
	json_object_put(ev);
	r = run(b, "query-status", NULL);
	assert_string_equal(json_object_get_string(json_object_object_get(ret_of(r), "status")),
			    "paused");
	json_object_put(r);
	r = run(b, "cont", NULL);
	json_object_put(r);
	ev = event(a, "RESUME");
	json_object_put(ev);
	ev = event(b, "RESUME");
	json_object_put(ev);
	/* One leaving does not disturb the other. */
	control_client_close(a);
	wait_clients(ctl, 1);
	r = run(b, "query-version", NULL);
	ret_of(r);
	json_object_put(r);
	control_client_close(b);
	control_stop(ctl);
}

static void test_socket_stale_and_live(void **state)
{
	struct sock_fixture *fx = *state;
	struct fake f = { 0 };
	struct control_ops ops = fake_ops(&f);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct control *ctl, *other;
	struct control_client *c;
	struct json_object *r;
	char err[256], file[160];
	int fd;

	/* A socket file nobody listens on, as a crashed node leaves behind. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fx->path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	ctl = start(fx->path, &ops);
	c = client(fx->path);
	r = run(c, "query-status", NULL);
	ret_of(r);
	json_object_put(r);
	control_client_close(c);

	/* A live server is not displaced. */
	assert_int_equal(control_start(fx->path, &ops, &other, err, sizeof(err)), -1);
	assert_null(other);
	assert_non_null(strstr(err, "another server"));
	c = client(fx->path);
	control_client_close(c);
	control_stop(ctl);

	/* A file that is not a socket is left alone. */
	snprintf(file, sizeof(file), "%s/plain", fx->dir);
	fd = open(file, O_CREAT | O_WRONLY, 0600);
	close(fd);
	assert_int_equal(control_start(file, &ops, &other, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a socket"));
	assert_int_equal(access(file, F_OK), 0);

	/* Nor is a path that does not fit a socket address. */
	memset(file, 'a', sizeof(file) - 1);
	file[0] = '/';
	file[sizeof(file) - 1] = '\0';
	assert_int_equal(control_start(file, &ops, &other, err, sizeof(err)), -1);
}

static void test_socket_raw_protocol(void **state)
{
	struct sock_fixture *fx = *state;
	struct fake f = { 0 };
	struct control_ops ops = fake_ops(&f);
	struct control *ctl = start(fx->path, &ops);
	struct json_object *o;
	char *line;
	int fd = raw_connect(fx->path);

	line = raw_line(fd);
	assert_non_null(line);
	assert_non_null(strstr(line, "\"QMP\""));
	/* No events before negotiation. */
	control_emit_event(ctl, "EARLY", NULL);
	raw_send(fd, "\n\n{\"execute\":\"qmp_capabilities\"}\n");
	line = raw_line(fd);
	assert_non_null(line);
	assert_string_equal(line, "{\"return\":{}}");
	/* Malformed JSON: an error, and the connection stays usable. */
	raw_send(fd, "{\"execute\":\n");
	line = raw_line(fd);
	assert_non_null(line);
	o = parse_strict(line);
	assert_string_equal(error_class(o), "GenericError");
	json_object_put(o);
	/* Several requests in one write, one split over two writes, CRLF. */
	raw_send(fd, "{\"execute\":\"stop\",\"id\":1}\r\n{\"execute\":\"cont\",\"id\":2}\n{\"exec");
	usleep(20000);
	raw_send(fd, "ute\":\"query-status\",\"id\":3}\n");
	for (int id = 1; id <= 3; id++) {
		line = raw_line(fd);
		assert_non_null(line);
		o = parse_strict(line);
		assert_int_equal(json_object_get_int(json_object_object_get(o, "id")), id);
		ret_of(o);
		json_object_put(o);
	}
	assert_int_equal(f.stops, 1);
	assert_int_equal(f.conts, 1);
	/* The client stops sending: what it asked is still answered. */
	raw_send(fd, "{\"execute\":\"query-version\",\"id\":4}");
	shutdown(fd, SHUT_WR);
	line = raw_line(fd);
	assert_non_null(line);
	o = parse_strict(line);
	assert_int_equal(json_object_get_int(json_object_object_get(o, "id")), 4);
	json_object_put(o);
	assert_null(raw_line(fd));
	close(fd);
	wait_clients(ctl, 0);
	control_stop(ctl);
}

static void test_socket_oversized(void **state)
{
	struct sock_fixture *fx = *state;
	struct fake f = { 0 };
	struct control_ops ops = fake_ops(&f);
	struct control *ctl = start(fx->path, &ops);
	struct control_client *c = client(fx->path);
	size_t len = CONTROL_MAX_LINE + 4096;
	char *junk = malloc(len);
	int fd = raw_connect(fx->path);
	size_t sent = 0;
	char buf[4096];
	bool eof = false;

	assert_non_null(raw_line(fd));
	wait_clients(ctl, 2);
	memset(junk, 'x', len);
	while (sent < len) {
		ssize_t n = send(fd, junk + sent, len - sent, MSG_NOSIGNAL);

		if (n <= 0)
			break;     /* the server may hang up before taking it all */
		sent += (size_t)n;
	}
	/* The server says why (if the reply wins the race) and hangs up. */
	for (int i = 0; i < 100 && !eof; i++) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		eof = n == 0 || (n < 0 && errno == ECONNRESET);
	}
	assert_true(eof);
	close(fd);
	free(junk);
	wait_clients(ctl, 1);
	/* Others are unaffected. */
	{
		struct json_object *r = run(c, "query-status", NULL);

		ret_of(r);
		json_object_put(r);
	}
	control_client_close(c);
	control_stop(ctl);
}

static void test_socket_too_many(void **state)
{
	struct sock_fixture *fx = *state;
	struct fake f = { 0 };
	struct control_ops ops = fake_ops(&f);
	struct control *ctl = start(fx->path, &ops);
	struct control_client *c[CONTROL_MAX_CLIENTS], *extra;
	char err[256];

	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
		c[i] = client(fx->path);
	assert_int_equal(control_client_connect(fx->path, 2000, &extra, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "too many clients"));
	control_client_close(c[0]);
	wait_clients(ctl, CONTROL_MAX_CLIENTS - 1);
	extra = client(fx->path);
	control_client_close(extra);
	for (int i = 1; i < CONTROL_MAX_CLIENTS; i++)
		control_client_close(c[i]);
	control_stop(ctl);
}

/* quit: the reply and a final event are delivered by control_stop. */
static void test_socket_quit(void **state)
{
	struct sock_fixture *fx = *state;
	struct fake f = { 0 };
	struct control_ops ops = fake_ops(&f);
	struct control *ctl = start(fx->path, &ops);
	int fd = raw_connect(fx->path);
	char *line;

	assert_non_null(raw_line(fd));
	raw_send(fd, "{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"quit\"}\n");
	assert_non_null(raw_line(fd));
	for (int i = 0; i < 200 && !f.quits; i++)
		usleep(5000);
	assert_int_equal(f.quits, 1);
	control_emit_event(ctl, "SHUTDOWN", NULL);
	control_stop(ctl);
	line = raw_line(fd);
	assert_non_null(line);
	assert_string_equal(line, "{\"return\":{}}");
	line = raw_line(fd);
	assert_non_null(line);
	assert_non_null(strstr(line, "\"SHUTDOWN\""));
	assert_null(raw_line(fd));
	close(fd);
}

static void test_client_errors(void **state)
{
	struct sock_fixture *fx = *state;
	struct control_client *c;
	char err[256];
	int lfd;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	assert_int_equal(control_client_connect(fx->path, 500, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, fx->path));
	/* A server that never greets: the client gives up in time. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fx->path);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(control_client_connect(fx->path, 200, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "greeting"));
	/* One that greets with something else. */
	close(lfd);
	unlink(fx->path);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	{
		pid_t pid = fork();

		if (!pid) {
			int s = accept(lfd, NULL, NULL);

			if (write(s, "{\"hello\":1}\n", 12) != 12)
				_exit(1);
			usleep(300000);
			_exit(0);
		}
		assert_int_equal(control_client_connect(fx->path, 1000, &c, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "not a QMP greeting"));
		waitpid(pid, NULL, 0);
	}
	close(lfd);
}

/* ---------------------------------------------------------------------- */
/* grappe qmp / grappe stats                                              */

static char *capture_out;
static size_t capture_len;

static int cli(int (*cmd)(int, char **, FILE *, FILE *), char **argv, char **out, char **errs)
{
	int argc = 0, status;
	FILE *o, *e;
	char *eb = NULL;
	size_t el = 0;

	while (argv[argc])
		argc++;
	o = open_memstream(&capture_out, &capture_len);
	e = open_memstream(&eb, &el);
	status = cmd(argc, argv, o, e);
	fclose(o);
	fclose(e);
	*out = capture_out;
	if (errs)
		*errs = eb;
	else
		free(eb);
	return status;
}

static void test_cmd_qmp(void **state)
{
	struct sock_fixture *fx = *state;
	struct fake f = { 0 };
	struct control_ops ops = fake_ops(&f);
	struct control *ctl = start(fx->path, &ops);
	struct json_object *o;
	char *out, *errs;

	{
		char *argv[] = { "qmp", fx->path, "query-status", NULL };

		assert_int_equal(cli(control_cmd_qmp, argv, &out, NULL), 0);
		o = parse_strict(out);
		assert_string_equal(json_object_get_string(json_object_object_get(ret_of(o),
										  "status")),
				    "running");
		assert_non_null(strchr(out, '\n'));   /* pretty: several lines */
		json_object_put(o);
		free(out);
	}
	{
		char *argv[] = { "qmp", fx->path, "stop", "{\"x\":1}", NULL };

		assert_int_equal(cli(control_cmd_qmp, argv, &out, NULL), 1);
		o = parse_strict(out);
		assert_string_equal(error_class(o), "GenericError");
		json_object_put(o);
		free(out);
	}
	{
		char *argv[] = { "qmp", fx->path, "stop", "{not json", NULL };

		assert_int_equal(cli(control_cmd_qmp, argv, &out, &errs), 2);
		assert_non_null(strstr(errs, "JSON object"));
		free(out);
		free(errs);
	}
	{
		char *argv[] = { "qmp", fx->path, NULL };

		assert_int_equal(cli(control_cmd_qmp, argv, &out, NULL), 2);
		free(out);
	}
	/* VM:NODE names a socket under $GRAPPE_RUN_DIR. */
	{
		char *argv[] = { "qmp", "ctlvm:0", "cont", NULL };
		char dir[160], path[200], err[256];
		struct control *ctl2;

		setenv("GRAPPE_RUN_DIR", fx->dir, 1);
		assert_int_equal(control_node_socket_path(path, sizeof(path), "ctlvm", 0, err,
							  sizeof(err)), 0);
		snprintf(dir, sizeof(dir), "%s/ctlvm/node0.qmp", fx->dir);
		assert_string_equal(path, dir);
		ctl2 = start(path, &ops);
		assert_int_equal(cli(control_cmd_qmp, argv, &out, NULL), 0);
		assert_int_equal(f.conts, 1);
		free(out);
		control_stop(ctl2);
		unsetenv("GRAPPE_RUN_DIR");
	}
	{
		char *argv[] = { "qmp", "/nonexistent/node0.qmp", "query-status", NULL };

		assert_int_equal(cli(control_cmd_qmp, argv, &out, &errs), 1);
		assert_non_null(strstr(errs, "/nonexistent/node0.qmp"));
		free(out);
		free(errs);
	}
	control_stop(ctl);
}

static bool has_line(const char *text, const char *want)
{
	const char *p = text;

	/* A line whose cells, white space squeezed, read as want. */
	while (p && *p) {
		const char *e = strchr(p, '\n');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		char sq[512];
		size_t n = 0;
		bool sp = true;

		for (size_t i = 0; i < len && n < sizeof(sq) - 1; i++) {
			if (p[i] == ' ') {
				if (!sp)
					sq[n++] = ' ';
				sp = true;
			} else {
				sq[n++] = p[i];
				sp = false;
			}
		}
		while (n && sq[n - 1] == ' ')
			n--;
		sq[n] = '\0';
		if (!strcmp(sq, want))
			return true;
		p = e ? e + 1 : NULL;
	}
	return false;
}

static void test_stats_print(void **state)
{
	struct control_node_report r[2];
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	memset(r, 0, sizeof(r));
	r[0].socket = "/x/node0.qmp";
	r[0].status = json_tokener_parse("{\"status\":\"running\",\"node\":0}");
	/* Node 0: partial stats; lists both vCPUs, vCPU 1 as remote. */
	r[0].stats = json_tokener_parse(
		"{\"node\":0,\"dsm\":{\"faults\":{\"read\":5},\"bytes_sent\":512,"
		"\"hot_pages\":[{\"gpa\":4096,\"moves\":3}]},"
		"\"vcpus\":[{\"index\":0,\"exits\":77,\"io\":1}]}");
	r[0].cpus = json_tokener_parse(
		"[{\"cpu-index\":0,\"thread-id\":111,\"node\":0,\"halted\":false,\"exits\":70},"
		"{\"cpu-index\":1,\"thread-id\":0,\"node\":1,\"halted\":true}]");
	r[1].socket = "/x/node1.qmp";
	r[1].status = json_tokener_parse("{\"status\":\"paused\",\"node\":1}");
	r[1].stats = json_tokener_parse(stats_json);
	r[1].cpus = json_tokener_parse(
		"[{\"cpu-index\":1,\"thread-id\":222,\"node\":1,\"halted\":false,\"exits\":9}]");

	f = open_memstream(&out, &len);
	control_stats_print(f, r, 2);
	fclose(f);
	if (!has_line(out, "0 running 5 - - - - - 512 B - - - -") ||
	    !has_line(out, "1 paused 10 20 3 4 - 7 28.0 KiB 9 3.0 MiB 2 0") ||
	    !has_line(out, "0 0x1000 3") ||
	    !has_line(out, "1 0x1000 50") ||
	    !has_line(out, "1 0x2000 5") ||
	    !has_line(out, "0 0 111 no 77 1 - -") ||
	    !has_line(out, "1 1 222 no 1234 100 7 30"))
		fail_msg("unexpected table:\n%s", out);
	/* Most moves first. */
	assert_true(strstr(out, "0x1000  50") < strstr(out, "0x2000"));
	free(out);

	/* The JSON form keeps everything. */
	out = NULL;
	f = open_memstream(&out, &len);
	control_stats_print_json(f, r, 2);
	fclose(f);
	{
		struct json_object *o = parse_strict(out), *want = json_tokener_parse(stats_json);

		assert_int_equal(json_object_array_length(o), 2);
		assert_true(json_object_equal(json_object_object_get(
			json_object_array_get_idx(o, 1), "stats"), want));
		json_object_put(want);
		json_object_put(o);
	}
	free(out);

	/* A node that could not be asked. */
	for (int i = 0; i < 2; i++)
		control_node_report_clear(&r[i]);
	snprintf(r[0].error, sizeof(r[0].error), "connection refused");
	out = NULL;
	f = open_memstream(&out, &len);
	control_stats_print(f, r, 1);
	fclose(f);
	if (!has_line(out, "- unreachable - - - - - - - - - - -"))
		fail_msg("unexpected table:\n%s", out);
	free(out);
}

/* Read leases: the coordinator's line, then each serving node's local reads. */
static void test_stats_print_read_leases(void **state)
{
	struct control_node_report r[2];
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	(void)state;
	memset(r, 0, sizeof(r));
	r[0].socket = "/x/node0.qmp";
	r[0].stats = json_tokener_parse(
		"{\"node\":0,\"read_leases\":[{\"volume\":\"vol0\",\"leases\":3,"
		"\"granted\":5,\"refused\":1,\"revoked\":2}],\"local_reads\":[]}");
	r[1].socket = "/x/node1.qmp";
	r[1].stats = json_tokener_parse(
		"{\"node\":1,\"read_leases\":[],\"local_reads\":[{\"volume\":\"vol0\","
		"\"reads_local\":40,\"bytes_local\":163840,\"reads_forwarded\":6,"
		"\"bytes_forwarded\":24576,\"local_errors\":0,\"late_reads\":1,\"leases\":3,\"granted\":5,"
		"\"refused\":1,\"revoked\":2}]}");
	f = open_memstream(&out, &len);
	control_stats_print(f, r, 2);
	fclose(f);
	if (!strstr(out, "volume vol0 read leases (node 0): 3 held, 5 granted, 1 refused, "
		    "2 revoked\n") ||
	    !strstr(out, "node 1 reads of volume vol0: 40 from its own store (163840 B), 6 through "
		    "the I/O node (24576 B), 0 local errors, 1 reread after a revocation; 3 leases "
		    "held\n"))
		fail_msg("unexpected output:\n%s", out);
	free(out);
	for (int i = 0; i < 2; i++)
		control_node_report_clear(&r[i]);
}

static void test_resolve_sockets(void **state)
{
	struct sock_fixture *fx = *state;
	char vmdir[160], p[200], err[256], **paths = NULL;
	unsigned n = 0;

	snprintf(vmdir, sizeof(vmdir), "%s/vm1", fx->dir);
	setenv("GRAPPE_RUN_DIR", fx->dir, 1);
	assert_int_equal(control_node_socket_path(p, sizeof(p), "vm1", 10, err, sizeof(err)), 0);
	assert_int_equal(control_node_socket_path(p, sizeof(p), "vm1", 2, err, sizeof(err)), 0);
	assert_int_equal(control_node_socket_path(p, sizeof(p), "vm1", 0, err, sizeof(err)), 0);
	{
		struct stat st;

		assert_int_equal(stat(vmdir, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0700);
	}
	for (unsigned node = 0; node <= 10; node += (node ? 8 : 2)) {
		snprintf(p, sizeof(p), "%s/node%u.qmp", vmdir, node);
		close(open(p, O_CREAT | O_WRONLY, 0600));
	}
	/* Not node sockets. */
	snprintf(p, sizeof(p), "%s/node01.qmp", vmdir);
	close(open(p, O_CREAT | O_WRONLY, 0600));
	snprintf(p, sizeof(p), "%s/node3.qmp.old", vmdir);
	close(open(p, O_CREAT | O_WRONLY, 0600));

	assert_int_equal(control_resolve_sockets("vm1", &paths, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 3);
	snprintf(p, sizeof(p), "%s/node0.qmp", vmdir);
	assert_string_equal(paths[0], p);
	snprintf(p, sizeof(p), "%s/node2.qmp", vmdir);
	assert_string_equal(paths[1], p);
	snprintf(p, sizeof(p), "%s/node10.qmp", vmdir);
	assert_string_equal(paths[2], p);
	/* A directory works the same and appends. */
	assert_int_equal(control_resolve_sockets(vmdir, &paths, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 6);
	for (unsigned i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
	paths = NULL;
	n = 0;
	assert_int_equal(control_resolve_sockets("nosuchvm", &paths, &n, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "nosuchvm"));
	snprintf(p, sizeof(p), "%s/node0.qmp", vmdir);
	assert_int_equal(control_resolve_sockets(p, &paths, &n, err, sizeof(err)), -1);
	assert_int_equal(n, 0);
	assert_int_equal(control_node_socket_path(p, sizeof(p), "../x", 0, err, sizeof(err)), -1);
	assert_int_equal(control_node_socket_path(p, sizeof(p), "", 0, err, sizeof(err)), -1);
	unsetenv("GRAPPE_RUN_DIR");
	assert_string_equal(control_run_dir(), "/run/grappe");
}

static void test_cmd_stats(void **state)
{
	struct sock_fixture *fx = *state;
	struct fake f0 = { .node = 0, .nr_cpus = 2 }, f1 = { .node = 1, .nr_cpus = 0 };
	struct control_ops ops0 = fake_ops(&f0), ops1 = fake_ops(&f1);
	struct control *c0, *c1;
	char p0[200], p1[200], err[256], *out, *errs;

	setenv("GRAPPE_RUN_DIR", fx->dir, 1);
	assert_int_equal(control_node_socket_path(p0, sizeof(p0), "svm", 0, err, sizeof(err)), 0);
	assert_int_equal(control_node_socket_path(p1, sizeof(p1), "svm", 1, err, sizeof(err)), 0);
	ops0.query_stats = NULL;       /* a node without statistics: dashes */
	c0 = start(p0, &ops0);
	c1 = start(p1, &ops1);
	{
		char *argv[] = { "stats", "svm", NULL };

		assert_int_equal(cli(control_cmd_stats, argv, &out, &errs), 0);
		if (!has_line(out, "1 running 10 20 3 4 - 7 28.0 KiB 9 3.0 MiB 2 0") ||
		    !has_line(out, "0 running - - - - - - - - - - -") ||
		    !has_line(out, "0 0 0 no 1000 - - -") ||
		    !has_line(out, "1 1 - yes 1234 100 7 30"))
			fail_msg("unexpected output:\n%s\nerrors:\n%s", out, errs);
		assert_string_equal(errs, "");
		free(out);
		free(errs);
	}
	{
		char *argv[] = { "stats", "--json", p1, NULL };
		struct json_object *o;

		assert_int_equal(cli(control_cmd_stats, argv, &out, NULL), 0);
		o = parse_strict(out);
		assert_int_equal(json_object_array_length(o), 1);
		assert_string_equal(json_object_get_string(json_object_object_get(
			json_object_array_get_idx(o, 0), "socket")), p1);
		json_object_put(o);
		free(out);
	}
	control_stop(c1);
	{
		/* A node that is gone: reported, the others still shown. */
		char *argv[] = { "stats", p0, "nosuchvm", NULL };

		assert_int_equal(cli(control_cmd_stats, argv, &out, &errs), 1);
		assert_non_null(strstr(errs, "nosuchvm"));
		assert_non_null(strstr(out, "running"));
		free(out);
		free(errs);
	}
	{
		char *argv[] = { "stats", NULL };

		assert_int_equal(cli(control_cmd_stats, argv, &out, NULL), 2);
		free(out);
	}
	control_stop(c0);
	unsetenv("GRAPPE_RUN_DIR");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greeting),
		cmocka_unit_test(test_negotiation_first),
		cmocka_unit_test(test_query_status),
		cmocka_unit_test(test_run_control),
		cmocka_unit_test(test_query_cpus),
		cmocka_unit_test(test_query_stats),
		cmocka_unit_test(test_query_commands_version),
		cmocka_unit_test(test_bad_requests),
		cmocka_unit_test(test_malformed_json),
		cmocka_unit_test(test_oversized_line),
		cmocka_unit_test(test_id_echo),
		cmocka_unit_test(test_long_names_clipped),
		cmocka_unit_test(test_event_format),
		cmocka_unit_test_setup_teardown(test_socket_basic, sock_setup, sock_teardown),
		cmocka_unit_test_setup_teardown(test_socket_two_clients, sock_setup, sock_teardown),
		cmocka_unit_test_setup_teardown(test_socket_stale_and_live, sock_setup,
						sock_teardown),
		cmocka_unit_test_setup_teardown(test_socket_raw_protocol, sock_setup, sock_teardown),
		cmocka_unit_test_setup_teardown(test_socket_oversized, sock_setup, sock_teardown),
		cmocka_unit_test_setup_teardown(test_socket_too_many, sock_setup, sock_teardown),
		cmocka_unit_test_setup_teardown(test_socket_quit, sock_setup, sock_teardown),
		cmocka_unit_test_setup_teardown(test_client_errors, sock_setup, sock_teardown),
		cmocka_unit_test_setup_teardown(test_cmd_qmp, sock_setup, sock_teardown),
		cmocka_unit_test(test_stats_print),
		cmocka_unit_test(test_stats_print_read_leases),
		cmocka_unit_test_setup_teardown(test_resolve_sockets, sock_setup, sock_teardown),
		cmocka_unit_test_setup_teardown(test_cmd_stats, sock_setup, sock_teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
