/* relay: see relay.h. The hot path of the node: per message, two
 * serializations (client frame, peer frame) whatever the fan-out, and one
 * reference per recipient. Duplicate suppression keeps, per origin, the
 * highest sequence delivered; origins are few (one per node), so a small
 * array with a last-hit cache beats a hash table here. */
#include "node/relay.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/msgbuf.h"
#include "common/util.h"
#include "node/clients.h"
#include "node/mesh.h"
#include "node/peer_proto.h"

/* Sequence numbers are leased this many at a time: one fsync'd write per
 * block, and a restart skips what is left of the block. */
#define RELAY_LEASE_BLOCK 100000

struct origin_mark {
    uint32_t origin;
    uint64_t seq;
};

struct relay {
    uint64_t next_seq;
    uint64_t lease_end;      /* highest seq this process may use */
    struct origin_mark *marks;
    size_t nmarks, capmarks;
    size_t last_hit;
    uint64_t remote_count;   /* for --test-drop-every */
};

static void lease_path(const node *n, char *out, size_t len)
{
    snprintf(out, len, "%s/seq.lease", n->cfg.data_dir);
}

/* Records end as the highest usable sequence: write, fsync, rename. */
static int lease_write(const node *n, uint64_t end)
{
    char path[600], tmp[620], text[32];
    lease_path(n, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int len = snprintf(text, sizeof(text), "%" PRIu64 "\n", end);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        goto fail;
    if (write(fd, text, (size_t)len) != len || fsync(fd) != 0) {
        close(fd);
        goto fail;
    }
    close(fd);
    if (rename(tmp, path) != 0)
        goto fail;
    return 0;
fail:
    log_error("cannot write the sequence lease %s: %s; check the data dir",
              path, strerror(errno));
    return -1;
}

int relay_init(node *n)
{
    struct relay *r = xcalloc(1, sizeof(*r));
    char path[600];
    uint64_t base = 0;

    n->relay = r;
    lease_path(n, path, sizeof(path));
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        char line[64];
        char *end = NULL;
        if (fgets(line, sizeof(line), f) != NULL)
            base = strtoull(line, &end, 10);
        fclose(f);
        if (end == NULL || end == line || (*end != '\n' && *end != '\0')) {
            log_error("sequence lease %s is corrupt; remove it only if this node's "
                      "id is also new, or sequence numbers could repeat", path);
            return -1;
        }
    }
    r->next_seq = base + 1;
    r->lease_end = base; /* nothing leased yet: the first message leases */
    return 0;
}

/* Returns the next sequence number, extending the lease when it runs out;
 * 0 when the lease cannot be written. */
static uint64_t next_seq(node *n)
{
    struct relay *r = n->relay;
    if (r->next_seq > r->lease_end) {
        uint64_t end = r->next_seq - 1 + RELAY_LEASE_BLOCK;
        if (lease_write(n, end) != 0)
            return 0;
        r->lease_end = end;
    }
    return r->next_seq++;
}

/* The delivered high-water mark of origin, created at 0 on first sight. */
static uint64_t *origin_mark(struct relay *r, uint32_t origin)
{
    if (r->last_hit < r->nmarks && r->marks[r->last_hit].origin == origin)
        return &r->marks[r->last_hit].seq;
    for (size_t i = 0; i < r->nmarks; i++) {
        if (r->marks[i].origin == origin) {
            r->last_hit = i;
            return &r->marks[i].seq;
        }
    }
    if (r->nmarks == r->capmarks) {
        r->capmarks = r->capmarks ? 2 * r->capmarks : 16;
        r->marks = xrealloc(r->marks, r->capmarks * sizeof(*r->marks));
    }
    r->marks[r->nmarks] = (struct origin_mark){ origin, 0 };
    r->last_hit = r->nmarks;
    return &r->marks[r->nmarks++].seq;
}

int relay_local(node *n, struct chat_message *m)
{
    if (n->id == 0)
        return -1;
    uint64_t seq = next_seq(n);
    if (seq == 0)
        return -1;
    m->origin = n->id;
    m->seq = seq;
    m->time_ms = util_wall_ms();
    n->counters.client_msgs_in++;

    /* Peers first: their copy leaves the node on this loop turn too, and the
     * order of the two queues does not matter to anyone. */
    msgbuf *pf = peer_proto_msg(m);
    n->counters.peer_msgs_out += mesh_broadcast(n->mesh, pf);
    msgbuf_unref(pf);

    msgbuf *cf = message_client_frame(n->id, m);
    n->counters.client_frames_out += clients_broadcast(n->clients, cf);
    msgbuf_unref(cf);

    /* Our own messages count as delivered, should a peer echo one back. */
    *origin_mark(n->relay, n->id) = seq;
    return 0;
}

void relay_remote(node *n, const struct chat_message *m)
{
    struct relay *r = n->relay;
    uint64_t *mark = origin_mark(r, m->origin);

    n->counters.peer_msgs_in++;
    if (m->seq <= *mark) {
        n->counters.dropped_dup++;
        log_debug("ignoring message %u/%" PRIu64 " from a peer: already delivered",
                  m->origin, m->seq);
        return;
    }
    *mark = m->seq;
    if (n->cfg.test_drop_every && ++r->remote_count % n->cfg.test_drop_every == 0)
        return; /* --test-drop-every: a deliberately lossy node for tests */

    msgbuf *cf = message_client_frame(n->id, m);
    n->counters.client_frames_out += clients_broadcast(n->clients, cf);
    msgbuf_unref(cf);
}

void relay_free(node *n)
{
    struct relay *r = n->relay;
    if (r == NULL)
        return;
    free(r->marks);
    free(r);
    n->relay = NULL;
}
