/* membership: see membership.h. A small state machine driven by one timer
 * and at most one discovery request in flight:
 *   REGISTER -> LOGIN -> ACTIVE (heartbeats) -> (refused) LOGIN ...
 * Network failures back off exponentially (250 ms .. 5 s, with jitter);
 * after a failure the next successful contact is a login, which discovery
 * treats as idempotent, so a discovery that restarted and forgot its
 * active list learns about this node again. Every request is signed with
 * the cluster secret (common/reqauth.h); a refusal of that proof is an
 * operator's error, logged as such, and never taken for a lost identity. */
#include "node/membership.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/http_client.h"
#include "common/log.h"
#include "common/reqauth.h"
#include "common/util.h"
#include "node/mesh.h"

#define MEMBERSHIP_BACKOFF_MIN_MS 250
#define MEMBERSHIP_BACKOFF_MAX_MS 5000
#define MEMBERSHIP_LOGOUT_TIMEOUT_MS 1000

enum membership_state { M_REGISTER, M_LOGIN, M_ACTIVE, M_STOPPING };

struct membership {
    node *n;
    uv_timer_t timer;
    http_client_req *req;        /* the request in flight, if any */
    enum membership_state state;
    unsigned backoff_ms;
    uint64_t asked_ms;           /* when the request in flight was sent */
    bool active;
    bool outage_logged;
    bool timer_closed;
    bool logout_done;
    unsigned pending;            /* requests whose callback has not run */
    void (*done)(node *n);
};

static void membership_step(struct membership *m);
static void finish_stop(struct membership *m);

static void identity_path(const node *n, char *out, size_t len)
{
    snprintf(out, len, "%s/node.json", n->cfg.data_dir);
}

int membership_load(node *n)
{
    char path[600];

    if (util_mkdir_p(n->cfg.data_dir) != 0) {
        log_error("cannot create data dir %s: %s; pass a writable --data-dir",
                  n->cfg.data_dir, strerror(errno));
        return -1;
    }
    identity_path(n, path, sizeof(path));
    if (access(path, F_OK) != 0)
        return 0; /* first start: registered later */

    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    json_int_t id = 0;
    const char *pw = NULL;
    if (root != NULL) {
        json_t *jid = json_object_get(root, "id");
        json_t *jpw = json_object_get(root, "password");
        if (json_is_integer(jid))
            id = json_integer_value(jid);
        if (json_is_string(jpw))
            pw = json_string_value(jpw);
    }
    if (root == NULL || id < 1 || id > INT32_MAX || pw == NULL ||
        strlen(pw) >= sizeof(n->password)) {
        log_error("identity file %s is unreadable or corrupt (%s); fix it or "
                  "remove it to register as a new node",
                  path, root ? "bad id or password" : jerr.text);
        json_decref(root);
        return -1;
    }
    n->id = (uint32_t)id;
    strcpy(n->password, pw);
    json_decref(root);
    log_set_id((long)n->id);
    log_info("loaded identity from %s: node id %u", path, n->id);
    return 0;
}

/* Writes node.json atomically: a temporary file, fsync, rename, fsync of
 * the directory, so a crash leaves the old or the new identity. */
static int identity_save(const node *n)
{
    char path[600], tmp[620];
    identity_path(n, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);

    json_t *root = json_pack("{s:I, s:s}", "id", (json_int_t)n->id,
                             "password", n->password);
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (text == NULL)
        return -1;

    int rc = -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
        size_t len = strlen(text);
        if (write(fd, text, len) == (ssize_t)len && write(fd, "\n", 1) == 1 &&
            fsync(fd) == 0)
            rc = 0;
        close(fd);
    }
    free(text);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -1;
    if (rc == 0) {
        int dfd = open(n->cfg.data_dir, O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    } else {
        log_error("cannot write identity file %s: %s; check that the data dir "
                  "is writable", path, strerror(errno));
        unlink(tmp);
    }
    return rc;
}

static void new_password(char *out, size_t len)
{
    unsigned char raw[16];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        /* getrandom only fails on ancient kernels; fall back to the clock
         * mixed with the pid, which is enough for a loopback cluster. */
        uint64_t x = util_now_ns() ^ ((uint64_t)getpid() << 32);
        for (size_t i = 0; i < sizeof(raw); i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            raw[i] = (unsigned char)(x >> 56);
        }
    }
    for (size_t i = 0; i < sizeof(raw) && 2 * i + 2 < len; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

/* The ports login announces: --advertise's, else the bound ones. Peers
 * and clients use these; the node itself knows its entry by its id. */
static int announced_client_port(const node *n)
{
    return n->cfg.advertise.client_port ? n->cfg.advertise.client_port : n->client_port;
}

static int announced_sync_port(const node *n)
{
    return n->cfg.advertise.sync_port ? n->cfg.advertise.sync_port : n->sync_port;
}

static void log_login(const node *n)
{
    const struct netaddr_advertise *a = &n->cfg.advertise;
    if (a->host[0] == '\0') {
        log_info("logged in with discovery (clients on port %d, sync on port %d)",
                 n->client_port, n->sync_port);
        return;
    }
    bool v6 = strchr(a->host, ':') != NULL;
    log_info("logged in with discovery, announcing %s%s%s with clients on port %d and sync "
             "on port %d (--advertise; bound %d and %d)", v6 ? "[" : "", a->host,
             v6 ? "]" : "", announced_client_port(n), announced_sync_port(n), n->client_port,
             n->sync_port);
}

/* Hands discovery's "activeNodes" array to the mesh. */
static void apply_active_list(struct membership *m, json_t *root)
{
    json_t *arr = json_object_get(root, "activeNodes");
    if (!json_is_array(arr)) {
        log_warn("discovery answer has no activeNodes array; keeping the mesh as it is");
        return;
    }
    size_t count = json_array_size(arr), used = 0;
    struct peer_info *list = xcalloc(count ? count : 1, sizeof(*list));
    for (size_t i = 0; i < count; i++) {
        json_t *e = json_array_get(arr, i);
        json_t *id = json_object_get(e, "id");
        json_t *sp = json_object_get(e, "syncport");
        json_t *cp = json_object_get(e, "clientport");
        json_t *addr = json_object_get(e, "address");
        if (!json_is_integer(id) || !json_is_integer(sp) || !json_is_string(addr) ||
            json_integer_value(id) < 1 || json_integer_value(id) > INT32_MAX ||
            json_integer_value(sp) < 1 || json_integer_value(sp) > 65535 ||
            strlen(json_string_value(addr)) >= sizeof(list[0].address)) {
            log_warn("ignoring malformed entry %zu in discovery's active list", i);
            continue;
        }
        if ((uint32_t)json_integer_value(id) == m->n->id)
            continue;
        list[used].id = (uint32_t)json_integer_value(id);
        list[used].sync_port = (int)json_integer_value(sp);
        list[used].client_port = json_is_integer(cp) ? (int)json_integer_value(cp) : 0;
        strcpy(list[used].address, json_string_value(addr));
        used++;
    }
    mesh_update(m->n->mesh, list, used, m->asked_ms);
    free(list);
}

static void timer_cb(uv_timer_t *t)
{
    membership_step(container_of(t, struct membership, timer));
}

static void schedule(struct membership *m, unsigned ms)
{
    if (m->state != M_STOPPING)
        uv_timer_start(&m->timer, timer_cb, ms, 0);
}

/* A failed contact: log the start of an outage once, retry with backoff. */
static void retry_later(struct membership *m, const char *what, int status)
{
    if (!m->outage_logged) {
        if (status < 0)
            log_warn("%s with discovery at %s failed: %s; serving with the "
                     "current mesh and retrying", what, m->n->cfg.discovery_url,
                     uv_strerror(status));
        else
            log_warn("%s with discovery at %s answered HTTP %d; retrying",
                     what, m->n->cfg.discovery_url, status);
        m->outage_logged = true;
    }
    unsigned jitter = m->backoff_ms / 4 ? (unsigned)rand() % (m->backoff_ms / 4) : 0;
    schedule(m, m->backoff_ms + jitter);
    m->backoff_ms = UTIL_MIN(m->backoff_ms * 2, MEMBERSHIP_BACKOFF_MAX_MS);
    /* Whatever discovery forgot meanwhile, a login puts it right; until
     * then /api/status says we are not on its list. */
    if (m->state == M_ACTIVE)
        m->state = M_LOGIN;
    m->active = false;
}

static void contact_ok(struct membership *m)
{
    if (m->outage_logged)
        log_info("discovery at %s answers again", m->n->cfg.discovery_url);
    m->outage_logged = false;
    m->backoff_ms = MEMBERSHIP_BACKOFF_MIN_MS;
}

/* POSTs body to discovery's path with the X-Dchat-Auth proof. Returns what
 * http_client_request_headers returns. */
static int discovery_post(node *n, const char *path, const char *body, unsigned timeout_ms,
                          http_client_cb cb, void *ud, http_client_req **out)
{
    char value[REQAUTH_VALUE_MAX], header[sizeof(REQAUTH_HEADER) + REQAUTH_VALUE_MAX + 4];
    reqauth_sign("POST", path, util_wall_ms(), body, strlen(body), value);
    snprintf(header, sizeof(header), REQAUTH_HEADER ": %s\r\n", value);
    return http_client_request_headers(n->loop, n->cfg.discovery_url, "POST", path, header,
                                       body, timeout_ms, cb, ud, out);
}

/* The "reason" of a 401 that refused our proof of the cluster secret
 * ("secret", "clock" or "replay"), copied into out with the error text
 * into text; 0, or -1 for any other answer (a 401 for the id and
 * password carries no reason). */
static int auth_refusal(int status, const char *body, size_t len, char *out, size_t outlen,
                        char *text, size_t textlen)
{
    if (status != 401 || body == NULL)
        return -1;
    json_t *root = json_loadb(body, len, 0, NULL);
    const char *reason = json_string_value(json_object_get(root, "reason"));
    const char *error = json_string_value(json_object_get(root, "error"));
    int rc = -1;
    if (reason != NULL) {
        snprintf(out, outlen, "%s", reason);
        snprintf(text, textlen, "%s", error ? error : "(no text)");
        rc = 0;
    }
    json_decref(root);
    return rc;
}

static void answer_cb(int status, const char *body, size_t len, void *ud)
{
    struct membership *m = ud;
    node *n = m->n;
    m->pending--;
    if (m->state == M_STOPPING) {
        finish_stop(m);
        return;
    }
    m->req = NULL;

    static const char *const what[] = { "registration", "login", "heartbeat" };
    const char *step = what[m->state];
    char reason[16], text[512];
    if (auth_refusal(status, body, len, reason, sizeof(reason), text, sizeof(text)) == 0) {
        /* A replay refusal is a fluke (a request resent on the way); the
         * others need the operator: say so once per outage, and retry. */
        if (!m->outage_logged || strcmp(reason, "replay") == 0)
            log_error("discovery at %s refused the %s: %s%s", n->cfg.discovery_url, step,
                      text, strcmp(reason, "secret") == 0
                                ? " (this node's cluster secret is wrong or missing: give it "
                                  "the same --cluster-secret-file as discovery)"
                                : "");
        m->outage_logged = true;
        retry_later(m, step, status);
        return;
    }
    json_t *root = NULL;
    if (status == 200) {
        json_error_t jerr;
        root = json_loadb(body, len, 0, &jerr);
        if (!json_is_object(root)) {
            json_decref(root);
            log_warn("discovery sent a malformed %s answer: %s", step, jerr.text);
            retry_later(m, step, UV_EPROTO);
            return;
        }
    }

    switch (m->state) {
    case M_REGISTER: {
        json_t *id = json_object_get(root, "id");
        if (status != 200 || !json_is_integer(id) || json_integer_value(id) < 1 ||
            json_integer_value(id) > INT32_MAX) {
            json_decref(root);
            retry_later(m, step, status == 200 ? UV_EPROTO : status);
            return;
        }
        n->id = (uint32_t)json_integer_value(id);
        json_decref(root);
        log_set_id((long)n->id);
        if (identity_save(n) != 0) {
            /* Without a saved identity a restart would take a new id; keep
             * going, the operator has been told why. */
            log_error("node id %u is not saved; a restart will register anew", n->id);
        }
        log_info("registered with discovery as node %u", n->id);
        contact_ok(m);
        m->state = M_LOGIN;
        membership_step(m);
        return;
    }
    case M_LOGIN:
    case M_ACTIVE:
        if (status == 200) {
            contact_ok(m);
            if (m->state == M_LOGIN || !m->active)
                log_login(n);
            m->active = true;
            m->state = M_ACTIVE;
            apply_active_list(m, root);
            json_decref(root);
            schedule(m, n->cfg.heartbeat_ms);
            return;
        }
        if (status == 401 && m->state == M_LOGIN) {
            log_error("discovery does not know node id %u with this password (was its "
                      "database lost?); registering as a new node", n->id);
            m->active = false;
            m->state = M_REGISTER;
            membership_step(m);
            return;
        }
        if (status >= 400 && status < 500 && m->state == M_ACTIVE) {
            log_warn("discovery refused the heartbeat (HTTP %d); logging in again", status);
            m->active = false;
            m->state = M_LOGIN;
            membership_step(m);
            return;
        }
        retry_later(m, step, status);
        return;
    case M_STOPPING:
        return;
    }
}

static void membership_step(struct membership *m)
{
    node *n = m->n;
    char body[512];
    const char *path;

    if (m->req != NULL || m->state == M_STOPPING)
        return;
    switch (m->state) {
    case M_REGISTER:
        new_password(n->password, sizeof(n->password));
        snprintf(body, sizeof(body), "{\"password\":\"%s\"}", n->password);
        path = "/api/nodes/register";
        break;
    case M_LOGIN: {
        /* The host is an IP literal (netaddr_parse_advertise): nothing in
         * it needs escaping in JSON. */
        const char *host = n->cfg.advertise.host;
        int len = snprintf(body, sizeof(body),
                           "{\"id\":%u,\"password\":\"%s\",\"syncport\":%d,"
                           "\"clientport\":%d", n->id, n->password, announced_sync_port(n),
                           announced_client_port(n));
        snprintf(body + len, sizeof(body) - (size_t)len, "%s%s%s}",
                 host[0] ? ",\"address\":\"" : "", host, host[0] ? "\"" : "");
        path = "/api/nodes/active/login";
        break;
    }
    case M_ACTIVE:
        snprintf(body, sizeof(body), "{\"id\":%u,\"password\":\"%s\"}", n->id,
                 n->password);
        path = "/api/nodes/active/heartbeat";
        break;
    default:
        return;
    }
    m->asked_ms = util_now_ms();
    unsigned timeout = UTIL_MAX(n->cfg.heartbeat_ms, 1000u);
    int rc = discovery_post(n, path, body, timeout, answer_cb, m, &m->req);
    if (rc != 0) {
        m->req = NULL;
        retry_later(m, "contact", rc);
        return;
    }
    m->pending++;
}

static struct membership *membership_of(const node *n) { return n->membership; }

void membership_start(node *n)
{
    struct membership *m = xcalloc(1, sizeof(*m));
    m->n = n;
    m->state = n->id ? M_LOGIN : M_REGISTER;
    m->backoff_ms = MEMBERSHIP_BACKOFF_MIN_MS;
    uv_timer_init(n->loop, &m->timer);
    n->membership = m;
    membership_step(m);
}

bool membership_active(const node *n)
{
    const struct membership *m = membership_of(n);
    return m != NULL && m->active;
}

static void timer_closed_cb(uv_handle_t *h)
{
    struct membership *m = container_of((uv_timer_t *)h, struct membership, timer);
    node *n = m->n;
    void (*done)(node *) = m->done;
    n->membership = NULL;
    free(m);
    if (done)
        done(n);
}

/* Frees the membership once the logout is over and no request callback
 * is still due (a cancelled request's callback still runs, later). */
static void finish_stop(struct membership *m)
{
    if (!m->logout_done || m->pending > 0 || m->timer_closed)
        return;
    m->timer_closed = true;
    uv_close((uv_handle_t *)&m->timer, timer_closed_cb);
}

static void logout_cb(int status, const char *body, size_t len, void *ud)
{
    struct membership *m = ud;
    m->pending--;
    if (status == 200)
        log_info("logged out from discovery");
    else if (status < 0)
        log_warn("logout from discovery failed: %s", uv_strerror(status));
    else
        log_warn("logout from discovery answered HTTP %d", status);
    m->logout_done = true;
    finish_stop(m);
}

void membership_stop(node *n, void (*done)(node *n))
{
    struct membership *m = membership_of(n);
    if (m == NULL) {
        if (done)
            done(n);
        return;
    }
    if (m->state == M_STOPPING)
        return;
    m->state = M_STOPPING;
    m->done = done;
    uv_timer_stop(&m->timer);
    if (m->req != NULL) {
        http_client_cancel(m->req); /* its callback still runs: pending */
        m->req = NULL;
    }
    char body[256];
    snprintf(body, sizeof(body), "{\"id\":%u,\"password\":\"%s\"}", n->id,
             n->password);
    if (m->active &&
        discovery_post(n, "/api/nodes/active/logout", body, MEMBERSHIP_LOGOUT_TIMEOUT_MS,
                       logout_cb, m, NULL) == 0) {
        m->pending++;
        return;
    }
    m->logout_done = true;
    finish_stop(m);
}
