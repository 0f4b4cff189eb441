/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_CONTROL_H
#define GRAPPE_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * The node control protocol: QMP-style newline-delimited JSON on a unix
 * socket (docs/control.md). Each grappe-node runs one server; `grappe qmp`
 * and `grappe stats` are its clients (mgmt/control_client.h).
 *
 * Two layers:
 *   - a session (struct control_session) turns one request line into one
 *     reply line; it knows nothing about sockets, so tests and the fuzzer
 *     drive it directly;
 *   - a server (struct control) listens on a unix socket and runs one
 *     session per connected client on a single thread.
 */

struct json_object;

#define CONTROL_VERSION_MAJOR 0
#define CONTROL_VERSION_MINOR 1
#define CONTROL_VERSION_MICRO 0

/* Longest request line, newline excluded; longer is an error (and, on a socket, a disconnect). */
#define CONTROL_MAX_LINE      (64 * 1024)
/* Clients connected at once; more are told so and closed. */
#define CONTROL_MAX_CLIENTS   16
/* Output queued for a client that does not read; beyond it the client is dropped. */
#define CONTROL_MAX_OUTPUT    (4 * 1024 * 1024)
/* Entries query-cpus-fast asks query_cpus for at most. */
#define CONTROL_MAX_CPUS      256
/* Room for a callback's error message. */
#define CONTROL_ERR_LEN       256

enum control_run_state {
	CONTROL_RUNNING,         /* "running": vCPUs run */
	CONTROL_PAUSED,          /* "paused": stopped by `stop` (or not started yet) */
	CONTROL_SHUTDOWN,        /* "shutdown": the guest powered off or the node is ending */
};

/* query-status. */
struct control_status {
	enum control_run_state state;
	unsigned node;           /* this node's id in the cluster */
	unsigned nr_nodes;       /* nodes in the cluster; 1 for a machine alone */
	char vm_name[128];       /* the domain's <name> */
};

/* query-cpus-fast: one vCPU. */
struct control_cpu {
	unsigned index;          /* "cpu-index" */
	unsigned node;           /* grappe node whose host runs it */
	unsigned cell;           /* NUMA cell: props "node-id" */
	unsigned socket;         /* props "socket-id" */
	unsigned core;           /* props "core-id" */
	pid_t thread_id;         /* host thread id of the vCPU thread; 0 if not on this node */
	bool halted;             /* in HLT, waiting for an interrupt */
	uint64_t exits;          /* KVM exits so far */
};

/*
 * What the commands do: implemented by grappe-node. Every callback runs on
 * the server's thread, one at a time, and must not block for long (the
 * server answers nobody meanwhile). A callback may call
 * control_emit_event() but never control_stop().
 *
 * Return 0 on success; otherwise a negative errno value, with a message
 * for the client in err (errlen is CONTROL_ERR_LEN) if there is a better
 * one than strerror(). A failure is a GenericError reply.
 *
 * A NULL callback means the command does not exist on this node: it is
 * left out of query-commands and answers CommandNotFound.
 *
 *   query_status      fill *out
 *   stop, cont        pause / resume every vCPU of the VM
 *   system_powerdown  press the ACPI power button
 *   quit              end the node (and the VM); the reply is queued
 *                     before the callback runs, so it should only request
 *                     the end and return, and the node's main thread then
 *                     calls control_stop(), which sends what is queued.
 *   query_cpus        fill cpus[0..*n), *n <= max
 *   query_stats       *out = a new JSON object the server takes ownership
 *                     of (docs/control.md has its shape)
 */
struct control_ops {
	int (*query_status)(void *ctx, struct control_status *out, char *err, size_t errlen);
	int (*stop)(void *ctx, char *err, size_t errlen);
	int (*cont)(void *ctx, char *err, size_t errlen);
	int (*system_powerdown)(void *ctx, char *err, size_t errlen);
	int (*quit)(void *ctx, char *err, size_t errlen);
	int (*query_cpus)(void *ctx, struct control_cpu *cpus, unsigned max, unsigned *n,
			  char *err, size_t errlen);
	int (*query_stats)(void *ctx, struct json_object **out, char *err, size_t errlen);
	void *ctx;
};

/* One client's protocol state, independent of any socket. */
struct control_session {
	const struct control_ops *ops;
	bool negotiated;         /* qmp_capabilities done */
};

void control_session_init(struct control_session *s, const struct control_ops *ops);

/*
 * The greeting sent when a client connects, as one JSON text without the
 * newline. Returns a malloc'd string or NULL when out of memory.
 */
char *control_greeting(void);

/*
 * Handles one request line (len bytes, no newline needed; need not be
 * NUL-terminated). *reply is set to a malloc'd JSON text without newline,
 * or to NULL for a blank line, which gets no reply. Returns 0, or -1 when
 * out of memory (*reply NULL). Every other problem is an error reply:
 * malformed JSON, a line over CONTROL_MAX_LINE, a bad request.
 */
int control_handle_line(struct control_session *s, const char *line, size_t len, char **reply);

/*
 * An event as one JSON text without newline, stamped with the current
 * time. Takes ownership of data (NULL is an empty object).
 */
char *control_format_event(const char *name, struct json_object *data);

struct control;

/*
 * Starts a server on the unix socket at path (mode 0600): a stale socket
 * file there is replaced; a path where another server answers, or that is
 * not a socket, is refused. ops is copied; ops->ctx is passed to every
 * callback. Returns 0, or -1 with a message in err.
 */
int control_start(const char *path, const struct control_ops *ops, struct control **out,
		  char *err, size_t errlen);

/*
 * Stops the server: flushes what is queued for each client (for at most a
 * second), closes the connections, removes the socket file if it is still
 * ours. NULL is fine.
 */
void control_stop(struct control *c);

/*
 * Sends an event to every client that has negotiated capabilities. Takes
 * ownership of data (NULL is an empty object). Any thread may call it.
 * Returns 0, or -1 when out of memory.
 */
int control_emit_event(struct control *c, const char *name, struct json_object *data);

/* Clients connected now (for tests and diagnostics). */
unsigned control_nr_clients(struct control *c);

/*
 * Where node sockets live: $GRAPPE_RUN_DIR, else /run/grappe; a VM's are
 * RUN_DIR/VM-NAME/nodeN.qmp.
 */
const char *control_run_dir(void);
/* RUN_DIR/vm_name into out; -1 if it does not fit or vm_name is not a plain name. */
int control_vm_dir(char *out, size_t len, const char *vm_name);
/*
 * RUN_DIR/vm_name/node<node>.qmp into out, creating the directories
 * (mode 0700) that are missing. Returns 0, or -1 with a message in err.
 */
int control_node_socket_path(char *out, size_t len, const char *vm_name, unsigned node,
			     char *err, size_t errlen);

/* Formats an error message into err (may be NULL); shared by server and client. */
void control_set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
