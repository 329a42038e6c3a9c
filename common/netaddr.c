/* netaddr: see netaddr.h. */
#include "common/netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

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
