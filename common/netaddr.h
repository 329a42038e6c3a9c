/* netaddr: socket addresses as the rest of the code wants them: bare IP
 * strings (a v4-mapped IPv6 address shown as plain IPv4, as discovery must
 * report it), parsing of IPv4/IPv6 literals for bind and connect, the
 * check that a string names a host and nothing else, and the parsing of
 * the address a node announces (--advertise HOST[:CLIENTPORT[:SYNCPORT]]). */
#ifndef DCHAT_NETADDR_H
#define DCHAT_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

/* Writes the bare IP of sa into out (outlen >= 46 fits any) and its port
 * into *port (either may be NULL). "::ffff:1.2.3.4" becomes "1.2.3.4".
 * Returns 0 or a UV_E* code. */
int netaddr_to_string(const struct sockaddr *sa, char *out, size_t outlen,
                      int *port);

/* The remote / local address of a connected TCP handle, as above. */
int netaddr_peer(const uv_tcp_t *tcp, char *out, size_t outlen, int *port);
int netaddr_sockname(const uv_tcp_t *tcp, char *out, size_t outlen, int *port);

/* Parses an IPv4 or IPv6 literal (brackets allowed) with port into out.
 * "localhost" is taken as 127.0.0.1. Returns 0 or UV_EINVAL. */
int netaddr_parse(const char *host, int port, struct sockaddr_storage *out);

/* Whether s is an IP literal (IPv4 dotted quad or IPv6, unbracketed, as
 * inet_pton takes them) or a host name (RFC 1123: dot-separated labels of
 * 1 to 63 letters, digits and hyphens, not starting or ending with a
 * hyphen, at most 253 bytes in all, no trailing dot, and a last label
 * that is not all digits, so that "1.2.3" cannot pass for an address).
 * Anything else (spaces, slashes, ports, URLs, control bytes) is false. */
bool netaddr_is_host(const char *s);

/* The longest host discovery keeps for a node (a login's "address"). */
#define NETADDR_ADVERTISE_HOST_MAX 63

/* What a node announces to discovery instead of what it bound or what
 * discovery sees: clients are sent to host:client_port and peers dial
 * host:sync_port, e.g. the published side of a container's port mapping. */
struct netaddr_advertise {
    char host[NETADDR_ADVERTISE_HOST_MAX + 1]; /* IP literal (IPv6 without
                                                  brackets) or "localhost" */
    int client_port;                           /* 1..65535, or 0: not given */
    int sync_port;                             /* 1..65535, or 0: not given */
};

/* Parses s as HOST, HOST:CLIENTPORT or HOST:CLIENTPORT:SYNCPORT into *out
 * (ports not given are 0). HOST is an IPv4 address, an IPv6 address,
 * bracketed when ports follow ("[2001:db8::1]:9001:9101"; an unbracketed
 * string that is a whole IPv6 address is taken as one, with no port), or
 * "localhost": what discovery accepts (netaddr_is_host, at most
 * NETADDR_ADVERTISE_HOST_MAX bytes) and what peers can dial
 * (netaddr_parse), so host names are refused. Ports are decimal, 1 to
 * 65535. Returns 0, or -1 with *out unspecified and err (errlen bytes)
 * saying what is wrong and what to write instead. */
int netaddr_parse_advertise(const char *s, struct netaddr_advertise *out, char *err,
                            size_t errlen);

#endif
