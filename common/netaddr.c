/* netaddr: see netaddr.h. */
#include "common/netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
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
