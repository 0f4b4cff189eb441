/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_FABRIC_TCP_H
#define GRAPPE_FABRIC_TCP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/*
 * The socket plumbing under the fabric: addresses, a non-blocking
 * listener, non-blocking connects. Every socket is non-blocking and
 * close-on-exec, and data sockets have TCP_NODELAY (a fabric message is
 * often a request that someone waits for).
 */
struct tcp_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

#define TCP_ADDR_STR 64

/*
 * Resolves "host:port" or "[v6]:port" (numeric or a name). allow_port0
 * accepts port 0, meaning "any free port" for a listener. 0, or -1 and err.
 */
int tcp_resolve(const char *hostport, bool allow_port0, struct tcp_addr *out, char *err,
		size_t errlen);
/* Returns a listening fd, or -1 with err. */
int tcp_listen(const struct tcp_addr *a, char *err, size_t errlen);
/* The port a socket is bound to, 0 if unknown. */
unsigned tcp_local_port(int fd);
/*
 * Starts connecting to dst, from src's address when src is not NULL (port
 * 0). *fd is the socket. Returns 0 (connected), 1 (in progress: wait for
 * writability, then tcp_connect_result) or -errno.
 */
int tcp_connect_start(const struct tcp_addr *dst, const struct tcp_addr *src, int *fd);
/* 0 when a non-blocking connect succeeded, else the errno it failed with. */
int tcp_connect_result(int fd);
/* Accepts one connection (non-blocking, tuned); -errno when none. */
int tcp_accept(int lfd, struct tcp_addr *peer);
void tcp_tune(int fd);
/* "1.2.3.4:5" or "[::1]:5" */
void tcp_addr_str(const struct tcp_addr *a, char *buf, size_t len);
/* Same IP address (ports ignored; IPv4-mapped IPv6 equals IPv4). */
bool tcp_same_ip(const struct tcp_addr *a, const struct tcp_addr *b);
/* 0.0.0.0 or :: */
bool tcp_is_wildcard(const struct tcp_addr *a);

#endif
