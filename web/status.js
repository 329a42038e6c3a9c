/* The status view (GET /status on a node's client port): polls the node's
 * GET /api/status once a second and draws the last two minutes as small
 * line charts on <canvas>, for people who run no Grafana. Rates are the
 * differences of the node's counters over its own uptime clock; a node
 * that restarted (uptime went back) starts the rates afresh. */
"use strict";

(function () {
    const POLL_MS = 1000;
    const POINTS = 120;
    const COLORS = ["#2a6fdb", "#1f9d55", "#d98e04", "#b03fc7", "#d64545"];

    const el = (id) => document.getElementById(id);

    /* Each chart: its series (label, and how to read a value from the
     * current and previous status), and the samples drawn. */
    function rate(read) {
        return (cur, prev) => {
            if (prev === null || cur.uptimeMs <= prev.uptimeMs)
                return null;
            return Math.max(0, (read(cur) - read(prev)) * 1000 / (cur.uptimeMs - prev.uptimeMs));
        };
    }
    const gauge = (read) => (cur) => read(cur);
    const peersIn = (...states) => (s) => s.peers.filter((p) => states.includes(p.state)).length;
    const msg = (k) => (s) => s.messages[k];

    const charts = [
        { id: "rates", series: [
            ["from clients", rate(msg("fromClients"))],
            ["from peers", rate(msg("fromPeers"))],
            ["to clients", rate(msg("toClients"))],
            ["to peers", rate(msg("toPeers"))],
        ] },
        { id: "clients", series: [["clients", gauge((s) => s.clients)]] },
        { id: "peers", series: [
            ["up", gauge(peersIn("up"))],
            ["connecting", gauge(peersIn("connecting", "closing"))],
            ["down", gauge(peersIn("down"))],
        ] },
        { id: "queues", series: [
            ["all links", gauge((s) => s.peers.reduce((a, p) => a + (p.queuedBytes || 0), 0))],
            ["largest", gauge((s) => s.peers.reduce((a, p) => Math.max(a, p.queuedBytes || 0), 0))],
        ] },
        { id: "flow", series: [
            ["paused clients", gauge((s) => s.flow.pausedClients)],
            ["congested clients", gauge((s) => s.flow.congestedClients)],
            ["paused peers", gauge((s) => s.flow.pausedPeers)],
            ["congested links", gauge((s) => s.flow.congestedLinks)],
        ] },
        { id: "commits", series: [
            ["commits", rate((s) => (s.history && s.history.commits) || 0)],
        ] },
    ];

    for (const c of charts) {
        c.canvas = el("c-" + c.id);
        c.data = c.series.map(() => []);
        c.values = [];
        const legend = el("l-" + c.id);
        c.series.forEach(([label], i) => {
            const li = document.createElement("li");
            li.className = "s" + i;
            li.append(label + " ");
            const v = document.createElement("span");
            v.className = "v";
            v.id = "v-" + c.id + "-" + i;
            v.textContent = "–";
            li.append(v);
            legend.append(li);
            c.values.push(v);
        });
    }

    function fmt(v) {
        if (v === null || v === undefined)
            return "–";
        if (v >= 1e6)
            return (v / 1e6).toFixed(1) + "M";
        if (v >= 1e4)
            return (v / 1e3).toFixed(1) + "k";
        return Number.isInteger(v) ? String(v) : v.toFixed(1);
    }

    /* A round upper bound for the y axis: 1, 2 or 5 times a power of 10. */
    function niceMax(v) {
        if (!(v > 0))
            return 1;
        const p = 10 ** Math.floor(Math.log10(v));
        for (const m of [1, 2, 5, 10])
            if (v <= m * p)
                return m * p;
        return 10 * p;
    }

    function draw(c) {
        const canvas = c.canvas;
        const ratio = window.devicePixelRatio || 1;
        const w = canvas.clientWidth;
        const h = canvas.clientHeight;
        if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
            canvas.width = Math.round(w * ratio);
            canvas.height = Math.round(h * ratio);
        }
        const g = canvas.getContext("2d");
        g.setTransform(ratio, 0, 0, ratio, 0, 0);
        g.clearRect(0, 0, w, h);
        const left = 44;
        const top = 6;
        const right = w - 6;
        const bottom = h - 16;
        let max = 0;
        for (const d of c.data)
            for (const v of d)
                if (v !== null && v > max)
                    max = v;
        max = niceMax(max);

        g.font = "11px system-ui, sans-serif";
        g.fillStyle = "#667085";
        g.strokeStyle = "#dde1e8";
        g.lineWidth = 1;
        g.textAlign = "right";
        g.textBaseline = "middle";
        for (let i = 0; i <= 2; i++) {
            const y = Math.round(bottom - (bottom - top) * i / 2) + 0.5;
            g.beginPath();
            g.moveTo(left, y);
            g.lineTo(right, y);
            g.stroke();
            g.fillText(fmt(max * i / 2), left - 6, y);
        }
        g.textAlign = "left";
        g.textBaseline = "top";
        g.fillText("−" + POINTS + " s", left, bottom + 3);
        g.textAlign = "right";
        g.fillText("now", right, bottom + 3);

        const dx = (right - left) / (POINTS - 1);
        c.data.forEach((d, k) => {
            g.strokeStyle = COLORS[k % COLORS.length];
            g.lineWidth = 1.8;
            g.beginPath();
            let pen = false;
            const start = POINTS - d.length;
            d.forEach((v, i) => {
                if (v === null) {
                    pen = false;
                    return;
                }
                const x = left + (start + i) * dx;
                const y = bottom - (bottom - top) * v / max;
                if (pen)
                    g.lineTo(x, y);
                else
                    g.moveTo(x, y);
                pen = true;
            });
            g.stroke();
        });
        canvas.dataset.points = String(c.data[0].length);
    }

    function duration(ms) {
        const s = Math.floor(ms / 1000);
        if (s < 120)
            return s + " s";
        if (s < 7200)
            return Math.floor(s / 60) + " min";
        return Math.floor(s / 3600) + " h " + Math.floor(s % 3600 / 60) + " min";
    }

    function cell(row, text) {
        const td = document.createElement("td");
        td.textContent = text;
        row.append(td);
    }

    function facts(s) {
        el("f-id").textContent = String(s.id);
        el("f-uptime").textContent = duration(s.uptimeMs);
        el("f-discovery").textContent = s.discovery.active ? "active" : "not active";
        const origins = (s.history && s.history.origins) || [];
        el("f-stored").textContent = fmt(origins.reduce((a, o) => a + o.count, 0));
        el("f-fsync").textContent = s.history ? s.history.fsync : "–";
        const body = el("peers");
        body.replaceChildren();
        for (const p of s.peers) {
            const row = document.createElement("tr");
            cell(row, String(p.id));
            cell(row, p.address + ":" + p.syncport);
            cell(row, p.state);
            cell(row, p.direction || "–");
            cell(row, p.sinceMs !== undefined ? duration(p.sinceMs) : "–");
            cell(row, p.queuedBytes !== undefined ? fmt(p.queuedBytes) : "–");
            body.append(row);
        }
    }

    let prev = null;

    function sample(s) {
        for (const c of charts) {
            c.series.forEach(([, read], k) => {
                let v = null;
                try {
                    v = read(s, prev);
                } catch (e) {
                    v = null;   // a key this node does not have
                }
                c.data[k].push(v);
                if (c.data[k].length > POINTS)
                    c.data[k].shift();
                c.values[k].textContent = fmt(v);
            });
            draw(c);
        }
        prev = s;
    }

    function setConn(kind, text) {
        const conn = el("conn");
        conn.dataset.state = kind;
        el("conn-text").textContent = location.host + ": " + text;
    }

    async function poll() {
        try {
            const r = await fetch("api/status", { cache: "no-store" });
            if (!r.ok)
                throw new Error("HTTP " + r.status);
            const s = await r.json();
            if (prev !== null && s.uptimeMs < prev.uptimeMs)
                prev = null;   // the node restarted: its counters did too
            facts(s);
            sample(s);
            setConn("connected", "live, every second");
        } catch (e) {
            setConn("down", "cannot read /api/status (" + e.message + "); retrying");
            prev = null;
        }
        setTimeout(poll, POLL_MS);
    }

    window.addEventListener("resize", () => charts.forEach(draw));
    poll();
})();
