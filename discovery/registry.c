/* registry: see registry.h. The in-memory table is small (one entry per
 * node that logged in since start) and kept sorted by id. */
#include "discovery/registry.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/util.h"

#define SALT_LEN 16
#define HASH_LEN 32

struct registry {
    sqlite3 *db;
    sqlite3_stmt *insert, *lookup;
    struct registry_node *nodes;  /* every node that logged in, by id */
    size_t count, cap;
    struct registry_node *active; /* scratch for registry_active */
    size_t active_cap;
    uint64_t expired_total;       /* nodes expired since open */
};

registry *registry_open(const char *dir, char *err, size_t errlen)
{
    char path[1100];
    if (util_mkdir_p(dir) != 0) {
        snprintf(err, errlen, "cannot create data dir %s: %s", dir, strerror(errno));
        return NULL;
    }
    snprintf(path, sizeof(path), "%s/discovery.db", dir);
    registry *r = xcalloc(1, sizeof(*r));
    if (sqlite3_open(path, &r->db) != SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(r->db, 2000);
    if (sqlite3_exec(r->db,
                     "PRAGMA journal_mode=WAL;"
                     "PRAGMA synchronous=FULL;"
                     "CREATE TABLE IF NOT EXISTS nodes ("
                     "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
                     "  salt BLOB NOT NULL,"
                     "  hash BLOB NOT NULL,"
                     "  registered_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')));",
                     NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    if (sqlite3_prepare_v2(r->db, "INSERT INTO nodes (salt, hash) VALUES (?, ?)", -1,
                           &r->insert, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(r->db, "SELECT salt, hash FROM nodes WHERE id = ?", -1,
                           &r->lookup, NULL) != SQLITE_OK)
        goto fail;
    return r;
fail:
    snprintf(err, errlen, "cannot open database %s: %s", path,
             r->db ? sqlite3_errmsg(r->db) : "out of memory");
    registry_close(r);
    return NULL;
}

void registry_close(registry *r)
{
    if (r == NULL)
        return;
    sqlite3_finalize(r->insert);
    sqlite3_finalize(r->lookup);
    sqlite3_close(r->db);
    free(r->nodes);
    free(r->active);
    free(r);
}

static void password_hash(const unsigned char *salt, const char *password,
                          unsigned char *out)
{
    unsigned int len = HASH_LEN;
    HMAC(EVP_sha256(), salt, SALT_LEN, (const unsigned char *)password,
         strlen(password), out, &len);
}

int64_t registry_register(registry *r, const char *password)
{
    unsigned char salt[SALT_LEN], hash[HASH_LEN];
    if (getrandom(salt, sizeof(salt), 0) != (ssize_t)sizeof(salt)) {
        log_error("getrandom failed: %s", strerror(errno));
        return -1;
    }
    password_hash(salt, password, hash);
    sqlite3_reset(r->insert);
    sqlite3_bind_blob(r->insert, 1, salt, SALT_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(r->insert, 2, hash, HASH_LEN, SQLITE_STATIC);
    if (sqlite3_step(r->insert) != SQLITE_DONE) {
        log_error("storing a new node failed: %s; check the disk under the data dir",
                  sqlite3_errmsg(r->db));
        sqlite3_reset(r->insert);
        return -1;
    }
    sqlite3_reset(r->insert);
    return sqlite3_last_insert_rowid(r->db);
}

int registry_check(registry *r, int64_t id, const char *password)
{
    int ok = -1;
    sqlite3_reset(r->lookup);
    sqlite3_bind_int64(r->lookup, 1, id);
    if (sqlite3_step(r->lookup) == SQLITE_ROW &&
        sqlite3_column_bytes(r->lookup, 0) == SALT_LEN &&
        sqlite3_column_bytes(r->lookup, 1) == HASH_LEN) {
        unsigned char hash[HASH_LEN];
        password_hash(sqlite3_column_blob(r->lookup, 0), password, hash);
        if (CRYPTO_memcmp(hash, sqlite3_column_blob(r->lookup, 1), HASH_LEN) == 0)
            ok = 0;
    }
    sqlite3_reset(r->lookup);
    return ok;
}

static struct registry_node *find(registry *r, int64_t id)
{
    size_t lo = 0, hi = r->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r->nodes[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->count && r->nodes[lo].id == id ? &r->nodes[lo] : NULL;
}

void registry_login(registry *r, int64_t id, int syncport, int clientport,
                    const char *address, uint64_t now_ms)
{
    struct registry_node *n = find(r, id);
    if (n == NULL) {
        if (r->count == r->cap) {
            r->cap = r->cap ? 2 * r->cap : 16;
            r->nodes = xrealloc(r->nodes, r->cap * sizeof(*r->nodes));
        }
        size_t i = r->count;
        while (i > 0 && r->nodes[i - 1].id > id) {
            r->nodes[i] = r->nodes[i - 1];
            i--;
        }
        n = &r->nodes[i];
        r->count++;
        memset(n, 0, sizeof(*n));
        n->id = id;
    }
    n->syncport = syncport;
    n->clientport = clientport;
    snprintf(n->address, sizeof(n->address), "%s", address);
    n->last_seen_ms = now_ms;
    n->active = true;
}

int registry_heartbeat(registry *r, int64_t id, uint64_t now_ms)
{
    struct registry_node *n = find(r, id);
    if (n == NULL)
        return -1;
    n->last_seen_ms = now_ms;
    n->active = true;
    return 0;
}

void registry_logout(registry *r, int64_t id)
{
    struct registry_node *n = find(r, id);
    if (n == NULL)
        return;
    /* Forget its ports too: a heartbeat that was in flight when the node
     * logged out must not bring it back with them (it gets 404 and logs in
     * again if it means to). */
    size_t i = (size_t)(n - r->nodes);
    memmove(n, n + 1, (r->count - i - 1) * sizeof(*n));
    r->count--;
}

uint64_t registry_expired_total(const registry *r)
{
    return r->expired_total;
}

size_t registry_expire(registry *r, uint64_t now_ms, uint64_t ttl_ms)
{
    size_t expired = 0;
    for (size_t i = 0; i < r->count; i++) {
        struct registry_node *n = &r->nodes[i];
        if (n->active && now_ms - n->last_seen_ms > ttl_ms) {
            n->active = false;
            expired++;
            r->expired_total++;
            log_info("node %lld expired: no heartbeat for %llu ms", (long long)n->id,
                     (unsigned long long)(now_ms - n->last_seen_ms));
        }
    }
    return expired;
}

const struct registry_node *registry_active(registry *r, size_t *count)
{
    if (r->active_cap < r->count) {
        r->active_cap = r->count;
        r->active = xrealloc(r->active, r->active_cap * sizeof(*r->active));
    }
    size_t n = 0;
    for (size_t i = 0; i < r->count; i++)
        if (r->nodes[i].active)
            r->active[n++] = r->nodes[i];
    *count = n;
    return r->active;
}
