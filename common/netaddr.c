/* netaddr: see netaddr.h. */
#include "common/netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#define NETADDR_NAME_MAX 253
#define NETADDR_LABEL_MAX 63

int netaddr_to_string(const struct sockaddr *sa, char *out, size_t outlen,
                      int *port)
{
    char buf[INET6_ADDRSTRLEN];
    int p;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf)) == NULL)
            return UV_EINVAL;
        p = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            if (inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], buf, sizeof(buf)) == NULL)
                return UV_EINVAL;
        } else if (inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof(buf)) == NULL) {
            return UV_EINVAL;
        }
        p = ntohs(in6->sin6_port);
    } else {
        return UV_EAFNOSUPPORT;
    }
    if (out != NULL) {
        if (strlen(buf) >= outlen)
            return UV_ENOBUFS;
        strcpy(out, buf);
    }
    if (port != NULL)
        *port = p;
    return 0;
}

int netaddr_peer(const uv_tcp_t *tcp, char *out, size_t outlen, int *port)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    int rc = uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len);
    return rc ? rc : netaddr_to_string((struct sockaddr *)&ss, out, outlen, port);
}

int netaddr_sockname(const uv_tcp_t *tcp, char *out, size_t outlen, int *port)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    int rc = uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len);
    return rc ? rc : netaddr_to_string((struct sockaddr *)&ss, out, outlen, port);
}

int netaddr_parse(const char *host, int port, struct sockaddr_storage *out)
{
    char buf[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(host);

    if (port < 0 || port > 65535)
        return UV_EINVAL;
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        if (n - 2 >= sizeof(buf))
            return UV_EINVAL;
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    memset(out, 0, sizeof(*out));
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)out) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)out) == 0)
        return 0;
    return UV_EINVAL;
}

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool netaddr_is_host(const char *s)
{
    struct in6_addr a6;
    struct in_addr a4;
    if (inet_pton(AF_INET, s, &a4) == 1 || inet_pton(AF_INET6, s, &a6) == 1)
        return true;
    size_t len = strlen(s);
    if (len == 0 || len > NETADDR_NAME_MAX)
        return false;
    const char *label = s;
    bool all_digits = true;
    for (const char *p = s;; p++) {
        if (*p == '.' || *p == '\0') {
            size_t n = (size_t)(p - label);
            if (n == 0 || n > NETADDR_LABEL_MAX || label[0] == '-' || p[-1] == '-')
                return false;
            if (*p == '\0')
                return !all_digits;
            label = p + 1;
            all_digits = true;
            continue;
        }
        if (!is_alnum(*p) && *p != '-')
            return false;
        if (*p < '0' || *p > '9')
            all_digits = false;
    }
}

/* --- --advertise HOST[:CLIENTPORT[:SYNCPORT]] ------------------------------ */

#define NETADDR_ADVERTISE_FORM "HOST, HOST:CLIENTPORT or HOST:CLIENTPORT:SYNCPORT"
#define NETADDR_QUOTE_MAX 24 /* bytes of a bad part quoted back in an error */

/* One port: the len decimal digits at s, 1 to 65535, into *out. */
static int advertise_port(const char *s, size_t len, const char *what, int *out, char *err,
                          size_t errlen)
{
    int q = (int)(len < NETADDR_QUOTE_MAX ? len : NETADDR_QUOTE_MAX);
    long v = 0;
    if (len == 0) {
        snprintf(err, errlen, "%s is empty; give a port from 1 to 65535 after the ':', or "
                 "leave out the ':' to announce the port the node bound", what);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            snprintf(err, errlen, "%s '%.*s' is not a port number; give digits only, 1 to "
                     "65535 (" NETADDR_ADVERTISE_FORM ")", what, q, s);
            return -1;
        }
        if ((v = v * 10 + (s[i] - '0')) > 65535)
            break;
    }
    if (v < 1 || v > 65535) {
        snprintf(err, errlen, "%s %.*s is out of range; give a port from 1 to 65535", what,
                 q, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static size_t count_colons(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += *s == ':';
    return n;
}

/* The ports after HOST's ':' (CLIENTPORT[:SYNCPORT]). */
static int advertise_ports(const char *s, struct netaddr_advertise *out, char *err,
                           size_t errlen)
{
    const char *colon = strchr(s, ':');
    size_t len = colon != NULL ? (size_t)(colon - s) : strlen(s);
    if (advertise_port(s, len, "CLIENTPORT", &out->client_port, err, errlen) != 0)
        return -1;
    if (colon == NULL)
        return 0;
    if (count_colons(colon + 1) > 0) {
        snprintf(err, errlen, "has more than two ports; expected " NETADDR_ADVERTISE_FORM);
        return -1;
    }
    return advertise_port(colon + 1, strlen(colon + 1), "SYNCPORT", &out->sync_port, err,
                          errlen);
}

int netaddr_parse_advertise(const char *s, struct netaddr_advertise *out, char *err,
                            size_t errlen)
{
    struct in6_addr a6;
    struct sockaddr_storage ss;
    const char *host = s, *ports = NULL;
    size_t hostlen;
    bool bracketed = s[0] == '[';

    memset(out, 0, sizeof(*out));
    if (strstr(s, "://") != NULL) {
        snprintf(err, errlen, "is a URL; give " NETADDR_ADVERTISE_FORM
                 " without a scheme, e.g. 203.0.113.7:9001:9101");
        return -1;
    }
    if (bracketed) {
        const char *close = strchr(s, ']');
        if (close == NULL) {
            snprintf(err, errlen, "has '[' without ']'; write an IPv6 address with ports "
                     "as [2001:db8::1]:9001:9101");
            return -1;
        }
        host = s + 1;
        hostlen = (size_t)(close - host);
        if (close[1] == ':')
            ports = close + 2;
        else if (close[1] != '\0') {
            snprintf(err, errlen, "expected ':' and a port after ']', e.g. "
                     "[2001:db8::1]:9001:9101");
            return -1;
        }
    } else if (inet_pton(AF_INET6, s, &a6) == 1) {
        hostlen = strlen(s); /* a whole IPv6 address, without ports */
    } else {
        /* More colons than HOST:CLIENTPORT:SYNCPORT has, or an empty
         * part between two: meant as IPv6, with a zone or ports. */
        const char *colon = strchr(s, ':');
        if (count_colons(s) > 2 || strstr(s, "::") != NULL) {
            snprintf(err, errlen, "is neither an IPv6 address nor " NETADDR_ADVERTISE_FORM
                     "; an IPv6 address followed by ports goes in brackets: "
                     "[2001:db8::1]:9001:9101");
            return -1;
        }
        hostlen = colon != NULL ? (size_t)(colon - s) : strlen(s);
        if (colon != NULL)
            ports = colon + 1;
    }

    if (hostlen == 0) {
        snprintf(err, errlen, "HOST is empty; expected " NETADDR_ADVERTISE_FORM
                 ", e.g. 203.0.113.7:9001:9101");
        return -1;
    }
    if (hostlen > NETADDR_ADVERTISE_HOST_MAX) {
        snprintf(err, errlen, "HOST has %zu bytes, more than discovery keeps (%d); give an "
                 "IP address", hostlen, NETADDR_ADVERTISE_HOST_MAX);
        return -1;
    }
    memcpy(out->host, host, hostlen);
    out->host[hostlen] = '\0';
    if (bracketed && inet_pton(AF_INET6, out->host, &a6) != 1) {
        snprintf(err, errlen, "[%s] is not an IPv6 address; brackets are for IPv6 only "
                 "(write 203.0.113.7:9001, not [203.0.113.7]:9001)", out->host);
        return -1;
    }
    if (!netaddr_is_host(out->host)) {
        snprintf(err, errlen, "HOST '%s' is not an IP address; expected "
                 NETADDR_ADVERTISE_FORM, out->host);
        return -1;
    }
    /* Peers dial what is announced (node/mesh.c) and take IP literals only. */
    if (netaddr_parse(out->host, 0, &ss) != 0) {
        snprintf(err, errlen, "HOST '%s' is a name; peers dial the announced address and do "
                 "not resolve names: give its IP address", out->host);
        return -1;
    }
    return ports != NULL ? advertise_ports(ports, out, err, errlen) : 0;
}
