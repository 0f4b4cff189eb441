// SPDX-License-Identifier: MIT
/* TCP plumbing for the fabric: addresses, listener, non-blocking connects. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fabric/tcp.h"

/* Splits host:port; a [v6] host loses its brackets. */
static int split(const char *hp, char *host, size_t hlen, char *port, size_t plen)
{
	const char *colon = strrchr(hp, ':');
	const char *h = hp;
	size_t n;

	if (!colon || !colon[1] || strlen(colon + 1) >= plen)
		return -1;
	n = (size_t)(colon - hp);
	if (n >= 2 && hp[0] == '[' && hp[n - 1] == ']') {
		h++;
		n -= 2;
	} else if (memchr(hp, ':', n)) {
		return -1;      /* a bare IPv6 address needs brackets */
	}
	if (n == 0 || n >= hlen)
		return -1;
	memcpy(host, h, n);
	host[n] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static int parse_port(const char *s, bool allow0)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < (allow0 ? 0 : 1) || v > 65535)
		return -1;
	return (int)v;
}

int tcp_resolve(const char *hostport, bool allow_port0, struct tcp_addr *out, char *err,
		size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char host[256], port[8];
	int rc;

	if (!hostport || split(hostport, host, sizeof(host), port, sizeof(port)) ||
	    parse_port(port, allow_port0) < 0) {
		snprintf(err, errlen, "bad address '%s' (expected host:port or [v6]:port)",
			 hostport ? hostport : "(null)");
		return -1;
	}
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc || !res) {
		snprintf(err, errlen, "cannot resolve '%s': %s", hostport, gai_strerror(rc));
		return -1;
	}
	memset(out, 0, sizeof(*out));
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int tcp_listen(const struct tcp_addr *a, char *err, size_t errlen)
{
	char s[TCP_ADDR_STR];
	int one = 1, fd;

	tcp_addr_str(a, s, sizeof(s));
	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket for %s: %s", s, strerror(errno));
		return -1;
	}
	/* A restarted cluster must be able to listen again at once. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) || listen(fd, 128)) {
		snprintf(err, errlen, "cannot listen on %s: %s", s, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

unsigned tcp_local_port(int fd)
{
	struct tcp_addr a = { .len = sizeof(a.ss) };

	if (getsockname(fd, (struct sockaddr *)&a.ss, &a.len))
		return 0;
	if (a.ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&a.ss)->sin_port);
	if (a.ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&a.ss)->sin6_port);
	return 0;
}

void tcp_tune(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int tcp_connect_start(const struct tcp_addr *dst, const struct tcp_addr *src, int *fd)
{
	int s = socket(dst->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	*fd = -1;
	if (s < 0)
		return -errno;
	tcp_tune(s);
	/*
	 * From our own listen address when it is a specific one, so that the
	 * peer sees the address it has configured for us. If that address is
	 * not local (NAT), connect from wherever the kernel chooses.
	 */
	if (src && src->ss.ss_family == dst->ss.ss_family) {
		struct tcp_addr b = *src;

		if (b.ss.ss_family == AF_INET)
			((struct sockaddr_in *)&b.ss)->sin_port = 0;
		else
			((struct sockaddr_in6 *)&b.ss)->sin6_port = 0;
		(void)bind(s, (struct sockaddr *)&b.ss, b.len);
	}
	*fd = s;
	if (connect(s, (const struct sockaddr *)&dst->ss, dst->len) == 0)
		return 0;
	if (errno == EINPROGRESS)
		return 1;
	return -errno;
}

int tcp_connect_result(int fd)
{
	int e = 0;
	socklen_t len = sizeof(e);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len))
		return errno;
	return e;
}

int tcp_accept(int lfd, struct tcp_addr *peer)
{
	int fd;

	peer->len = sizeof(peer->ss);
	fd = accept4(lfd, (struct sockaddr *)&peer->ss, &peer->len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return -errno;
	tcp_tune(fd);
	return fd;
}

void tcp_addr_str(const struct tcp_addr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (a->ss.ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)&a->ss;

		inet_ntop(AF_INET, &s->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(s->sin_port));
	} else if (a->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&a->ss;

		inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(s->sin6_port));
	} else {
		snprintf(buf, len, "(unknown address family %d)", a->ss.ss_family);
	}
}

/* The IPv4 address of a, also when written as IPv4-mapped IPv6. */
static bool ipv4_of(const struct tcp_addr *a, struct in_addr *out)
{
	if (a->ss.ss_family == AF_INET) {
		*out = ((const struct sockaddr_in *)&a->ss)->sin_addr;
		return true;
	}
	if (a->ss.ss_family == AF_INET6) {
		const struct in6_addr *v6 = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(v6)) {
			memcpy(out, &v6->s6_addr[12], 4);
			return true;
		}
	}
	return false;
}

bool tcp_same_ip(const struct tcp_addr *a, const struct tcp_addr *b)
{
	struct in_addr x, y;

	if (ipv4_of(a, &x) && ipv4_of(b, &y))
		return x.s_addr == y.s_addr;
	if (a->ss.ss_family == AF_INET6 && b->ss.ss_family == AF_INET6)
		return !memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
			       &((const struct sockaddr_in6 *)&b->ss)->sin6_addr,
			       sizeof(struct in6_addr));
	return false;
}

bool tcp_is_wildcard(const struct tcp_addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	if (a->ss.ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
	return true;
}
