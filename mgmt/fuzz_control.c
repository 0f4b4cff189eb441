/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the control protocol dispatcher: the input is a session's worth
 * of request lines after capabilities negotiation. Besides crashes, leaks
 * and undefined behaviour, every reply must be one valid JSON object (UTF-8
 * included) that is a return or an error of a known class, carrying the
 * request's id exactly when the request had one. Each line that is JSON is
 * also handed to `grappe stats`' formatter as a node's answers, since those
 * come from another process too.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "mgmt/control.h"
#include "mgmt/control_client.h"

struct fuzz_node {
	unsigned calls;
};

/* Every third call fails, with or without a message. */
static int outcome(struct fuzz_node *n, char *err, size_t errlen)
{
	unsigned k = n->calls++;

	if (k % 3 != 2)
		return 0;
	if (k % 2)
		snprintf(err, errlen, "fuzz failure %u", k);
	return -5;
}

static int f_status(void *ctx, struct control_status *out, char *err, size_t errlen)
{
	struct fuzz_node *n = ctx;

	out->state = (enum control_run_state)(n->calls % 4);   /* 3 is invalid */
	out->node = n->calls;
	out->nr_nodes = 2;
	memset(out->vm_name, 'v', sizeof(out->vm_name));     /* unterminated */
	return outcome(n, err, errlen);
}

static int f_simple(void *ctx, char *err, size_t errlen)
{
	return outcome(ctx, err, errlen);
}

static int f_cpus(void *ctx, struct control_cpu *cpus, unsigned max, unsigned *nr,
		  char *err, size_t errlen)
{
	struct fuzz_node *n = ctx;

	*nr = n->calls % 5 == 4 ? max + 1 : n->calls % 5;
	for (unsigned i = 0; i < *nr && i < max; i++)
		cpus[i] = (struct control_cpu){ .index = i, .thread_id = 100 + (pid_t)i,
						.exits = UINT64_MAX - i };
	return outcome(n, err, errlen);
}

static int f_stats(void *ctx, struct json_object **out, char *err, size_t errlen)
{
	struct fuzz_node *n = ctx;
	int ret;

	*out = n->calls % 4 == 3 ? NULL : json_tokener_parse("{\"node\":0,\"dsm\":{}}");
	ret = outcome(n, err, errlen);
	return ret;
}

static void check_reply(const char *line, size_t len, const char *reply)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *r, *req = NULL, *rid, *qid, *e, *cls;
	bool req_has_id = false;

	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	r = json_tokener_parse_ex(tok, reply, (int)strlen(reply));
	if (!r || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != strlen(reply) ||
	    !json_object_is_type(r, json_type_object) || strchr(reply, '\n'))
		abort();
	json_tokener_free(tok);
	if (json_object_object_get_ex(r, "error", &e)) {
		if (json_object_object_get_ex(r, "return", NULL) ||
		    !json_object_object_get_ex(e, "class", &cls) ||
		    (strcmp(json_object_get_string(cls), "GenericError") &&
		     strcmp(json_object_get_string(cls), "CommandNotFound")) ||
		    !json_object_is_type(json_object_object_get(e, "desc"), json_type_string))
			abort();
	} else if (!json_object_object_get_ex(r, "return", NULL)) {
		abort();
	}
	/* The id comes back, unchanged, exactly when the request had one. */
	if (len <= CONTROL_MAX_LINE && !memchr(line, '\0', len)) {
		tok = json_tokener_new_ex(32);
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
		req = json_tokener_parse_ex(tok, line, (int)len);
		if (req && json_tokener_get_parse_end(tok) < len) {
			json_object_put(req);
			req = NULL;
		}
		json_tokener_free(tok);
		req_has_id = req && json_object_is_type(req, json_type_object) &&
			     json_object_object_get_ex(req, "id", &qid);
	}
	if (json_object_object_get_ex(r, "id", &rid) != req_has_id)
		abort();
	if (req_has_id && !json_object_equal(rid, qid))
		abort();
	json_object_put(req);
	json_object_put(r);
}

/* A node answering with whatever this line is. */
static void format_stats(const char *line, size_t len)
{
	struct control_node_report r[2];
	struct json_object *o;
	FILE *f;

	if (len > CONTROL_MAX_LINE)
		return;
	o = json_tokener_parse_verbose(line, &(enum json_tokener_error){ 0 });
	if (!o)
		return;
	f = fopen("/dev/null", "w");
	if (!f)
		abort();
	memset(r, 0, sizeof(r));
	r[0].socket = r[1].socket = "fuzz";
	r[0].stats = r[0].status = o;
	r[1].cpus = o;
	r[1].stats = json_object_object_get(o, "stats");
	control_stats_print(f, r, 2);
	control_stats_print_json(f, r, 2);
	fclose(f);
	json_object_put(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_node node = { 0 };
	struct control_ops ops = {
		.query_status = f_status, .stop = f_simple, .cont = f_simple,
		.system_powerdown = f_simple, .quit = f_simple, .query_cpus = f_cpus,
		.query_stats = f_stats, .ctx = &node,
	};
	struct control_session s;
	const char *p = (const char *)data, *end = p + size;
	char *reply;

	control_session_init(&s, &ops);
	if (control_handle_line(&s, "{\"execute\":\"qmp_capabilities\"}", 30, &reply) ||
	    !s.negotiated)
		abort();
	free(reply);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char *copy = malloc(len + 1);

		/* An exact-size copy lets ASan catch a read past the line. */
		memcpy(copy, p, len);
		if (control_handle_line(&s, copy, len, &reply))
			abort();
		if (reply)
			check_reply(copy, len, reply);
		free(reply);
		copy[len] = '\0';
		format_stats(copy, len);
		free(copy);
		p += len + 1;
	}
	return 0;
}
