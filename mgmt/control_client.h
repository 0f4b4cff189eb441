/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_CONTROL_CLIENT_H
#define GRAPPE_CONTROL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/*
 * Client side of the node control protocol (mgmt/control.h,
 * docs/control.md), and the `grappe qmp` / `grappe stats` commands built
 * on it.
 */

struct json_object;
struct control_client;

/* Longest reply line a client accepts (statistics can be large). */
#define CONTROL_CLIENT_MAX_LINE   (16 * 1024 * 1024)
/* Events kept while waiting for replies; older ones are dropped. */
#define CONTROL_CLIENT_MAX_EVENTS 64
/* Default time limit of each step, in milliseconds. */
#define CONTROL_CLIENT_TIMEOUT_MS 5000

/*
 * Connects to the server at path, reads its greeting and negotiates
 * capabilities, each step within timeout_ms (<= 0: the default).
 * Returns 0, or -1 with a message in err.
 */
int control_client_connect(const char *path, int timeout_ms, struct control_client **out,
			   char *err, size_t errlen);

/* The server's greeting ({"QMP": ...}); owned by the client. */
struct json_object *control_client_greeting(struct control_client *c);

/*
 * Executes one command. args (borrowed; NULL for none) must be an object.
 * *reply is the whole reply object, {"return": ...} or {"error": ...},
 * which the caller puts. Events that arrive meanwhile are kept for
 * control_client_next_event(). Returns 0 when a reply arrived (even an
 * error reply), -1 with a message in err when the exchange failed.
 */
int control_client_execute(struct control_client *c, const char *command,
			   struct json_object *args, struct json_object **reply,
			   char *err, size_t errlen);

/*
 * The next event ({"event": ...}): one already received, else waits up to
 * timeout_ms (0: do not wait). Returns 1 with *event set (the caller puts
 * it), 0 when none came in time, -1 with a message in err.
 */
int control_client_next_event(struct control_client *c, int timeout_ms,
			      struct json_object **event, char *err, size_t errlen);

void control_client_close(struct control_client *c);

/*
 * The "return" member of a successful reply (borrowed), or NULL with
 * "CLASS: desc" in err for an error reply or a reply of neither kind.
 */
struct json_object *control_reply_return(struct json_object *reply, char *err, size_t errlen);

/* One node's answers, as `grappe stats` prints them. */
struct control_node_report {
	const char *socket;
	struct json_object *status;   /* query-status "return", or NULL */
	struct json_object *stats;    /* query-grappe-stats "return", or NULL */
	struct json_object *cpus;     /* query-cpus-fast "return", or NULL */
	char error[256];              /* why the node could not be asked, or "" */
};

/* Asks one node (all three queries); failures go to r->error. */
void control_node_report_fill(struct control_node_report *r, const char *socket, int timeout_ms);
void control_node_report_clear(struct control_node_report *r);

/* The readable tables of `grappe stats`. */
void control_stats_print(FILE *f, const struct control_node_report *r, unsigned n);
/* The --json form: an array of {"socket", "status", "stats", "cpus"[, "error"]}. */
void control_stats_print_json(FILE *f, const struct control_node_report *r, unsigned n);

/*
 * The sockets `grappe stats` reads for one argument: the argument itself
 * if it is a socket, else every nodeN.qmp of a directory, else of the VM
 * of that name under control_run_dir(), in node order. Appends malloc'd
 * paths to *paths. Returns 0, or -1 with a message in err.
 */
int control_resolve_sockets(const char *arg, char ***paths, unsigned *n,
			    char *err, size_t errlen);

/*
 * The commands, argv without the program name ("qmp ..." / "stats ...").
 * Return the exit status: 0 success, 1 failure (or an error reply),
 * 2 usage.
 */
int control_cmd_qmp(int argc, char **argv, FILE *out, FILE *errf);
int control_cmd_stats(int argc, char **argv, FILE *out, FILE *errf);

#endif
