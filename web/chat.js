/* The chat page (GET / on a node's client port). It opens a WebSocket to
 * the node that served it, asks for the recent history (clientSyncRequest),
 * then shows messages as they come. When the connection drops it
 * reconnects, with a growing delay, and asks for what it missed since the
 * last message it holds of every origin, so that nothing is missed; every
 * message is shown once, keyed by its messageId, in the order of
 * docs/PROTOCOL.md 1.4 (time, then origin, then id).
 * Message text is untrusted: it only ever goes into textContent. */
"use strict";

(function () {
    /* The room shown. Rooms do not exist yet: this is DSatter's chat 11.
     * A room selector (index.html, #room) will set it. Messages of other
     * chats (the bench uses other numbers) are tracked but not shown. */
    const room = 11;
    const RETRY_MIN_MS = 500;
    const RETRY_MAX_MS = 5000;

    const el = (id) => document.getElementById(id);
    const ui = {
        join: el("join"), name: el("name"), messages: el("messages"), send: el("send"),
        text: el("text"), sendButton: el("send-button"), conn: el("conn"),
        connText: el("conn-text"), notice: el("notice"),
    };

    const state = {
        name: "",
        ws: null,
        nodeId: null,
        retries: 0,
        retryTimer: null,
        syncing: false,
        seen: new Set(),    // messageIds shown (this room's only: others need no dedupe)
        /* Per origin: contig, the highest id such that we hold every message
         * of the origin from where we started up to it (null until known),
         * and above, ids held beyond it. A reconnect asks for what follows
         * contig: a live message beyond a gap must not count as a mark
         * (docs/PROTOCOL.md 1.4, "Limits"). */
        origins: new Map(),
        shown: [],          // the messages in the list, in order
    };

    /* --- connection state line ------------------------------------------ */

    function setConn(kind, text) {
        ui.conn.dataset.state = kind;
        const where = location.host + (state.nodeId !== null ? " (node " + state.nodeId + ")" : "");
        ui.connText.textContent = where + ": " + text;
        ui.sendButton.disabled = kind !== "connected";
    }

    function notice(text) {
        ui.notice.textContent = text;
        ui.notice.hidden = text === "";
    }

    /* --- the message list ----------------------------------------------- */

    function before(a, b) {
        if (a.dateTime !== b.dateTime)
            return a.dateTime < b.dateTime;   // fixed-width ISO 8601: text order is time order
        if (a.nodeId !== b.nodeId)
            return a.nodeId < b.nodeId;
        return a.id < b.id;
    }

    function formatTime(iso) {
        const d = new Date(iso);
        return isNaN(d) ? iso : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    }

    function show(m) {
        let lo = 0;
        let hi = state.shown.length;
        while (lo < hi) {
            const mid = (lo + hi) >> 1;
            if (before(state.shown[mid], m))
                lo = mid + 1;
            else
                hi = mid;
        }
        const li = document.createElement("li");
        li.className = "message" + (m.sender === state.name ? " mine" : "");
        li.dataset.messageId = m.messageId;
        li.title = m.dateTime + ", from node " + m.nodeId + ", message " + m.id;
        const time = document.createElement("time");
        time.dateTime = m.dateTime;
        time.textContent = formatTime(m.dateTime);
        const sender = document.createElement("span");
        sender.className = "sender";
        sender.textContent = m.sender;
        const text = document.createElement("span");
        text.className = "text";
        text.textContent = m.text;
        li.append(time, sender, text);

        const list = ui.messages;
        const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
        list.insertBefore(li, list.children[lo] || null);
        state.shown.splice(lo, 0, m);
        if (atBottom || lo === state.shown.length - 1 && m.sender === state.name)
            list.scrollTop = list.scrollHeight;
    }

    function valid(m) {
        return m !== null && typeof m === "object" && typeof m.messageId === "string" &&
            /^[0-9]+$/.test(m.messageId) && Number.isInteger(m.nodeId) &&
            Number.isInteger(m.id) && typeof m.dateTime === "string" &&
            typeof m.text === "string" && typeof m.sender === "string";
    }

    function originOf(o) {
        let s = state.origins.get(o);
        if (s === undefined) {
            s = { contig: null, above: new Set() };
            state.origins.set(o, s);
        }
        return s;
    }

    function absorb(s) {
        while (s.above.delete(s.contig + 1))
            s.contig++;
        for (const id of s.above)
            if (id <= s.contig)
                s.above.delete(id);
    }

    /* Where an origin we knew nothing of starts: just before the lowest id
     * we hold of it. Messages before that were before we joined. */
    function settle(s) {
        if (s.contig === null && s.above.size > 0) {
            s.contig = Math.min(...s.above) - 1;
            absorb(s);
        }
    }

    function track(m) {
        const s = originOf(m.nodeId);
        if (s.contig !== null && m.id <= s.contig)
            return;
        s.above.add(m.id);
        if (s.contig === null) {
            /* While a sync runs, the reply may still bring older ones. */
            if (!state.syncing)
                settle(s);
        } else {
            absorb(s);
        }
    }

    function add(m) {
        if (!valid(m))
            return;
        track(m);
        if (m.chatId !== room || state.seen.has(m.messageId))
            return;
        state.seen.add(m.messageId);
        show(m);
    }

    /* --- catch-up ------------------------------------------------------- */

    function requestSync() {
        const marks = {};
        let named = 0;
        for (const [o, s] of state.origins) {
            if (s.contig !== null) {
                marks[o] = s.contig;
                named++;
            }
        }
        const frame = { type: "clientSyncRequest" };
        /* Without marks the node sends its latest messages: the history a
         * newcomer sees. With marks: everything after them, and every
         * origin we do not name from its start. */
        if (named > 0)
            frame.payload = marks;
        state.syncing = true;
        state.syncWithMarks = named > 0;
        setConn("syncing", "catching up");
        state.ws.send(JSON.stringify(frame));
    }

    function onSyncReply(f) {
        const byOrigin = new Map();
        for (const m of f.payload) {
            add(m);
            if (valid(m) && !byOrigin.has(m.nodeId))
                byOrigin.set(m.nodeId, m.id);
        }
        /* The reply holds, per origin, what follows our mark, or the start
         * of an origin we did not name: the lowest id in it is where that
         * origin starts for us. */
        for (const [o, low] of byOrigin) {
            const s = originOf(o);
            if (s.contig === null) {
                s.contig = low - 1;
                absorb(s);
            }
        }
        if (f.truncated === true && state.syncWithMarks) {
            requestSync();   // the oldest part came: ask for the rest
            return;
        }
        state.syncing = false;
        for (const s of state.origins.values())
            settle(s);
        state.retries = 0;
        setConn("connected", "connected");
    }

    function onError(f) {
        const text = typeof f.error === "string" ? f.error : "error";
        if (!state.syncing) {
            notice("The node said: " + text);
            return;
        }
        /* A node whose history began after ours does not know an origin we
         * name: ask without it (its messages, if they come, come whole). */
        const unknown = /names origin (\d+)/.exec(text);
        if (unknown !== null) {
            state.origins.delete(Number(unknown[1]));
            requestSync();
            return;
        }
        const ws = state.ws;
        setConn("syncing", "catching up (retrying: " + text + ")");
        setTimeout(() => { if (state.ws === ws && ws.readyState === WebSocket.OPEN) requestSync(); }, 1000);
    }

    function onFrame(data) {
        let f;
        try {
            f = JSON.parse(data);
        } catch (e) {
            return;
        }
        if (f === null || typeof f !== "object")
            return;
        if (Number.isInteger(f.source) && f.source !== state.nodeId) {
            state.nodeId = f.source;
            ui.conn.dataset.node = String(f.source);
        }
        if (f.type === "newMessagesForClient" && Array.isArray(f.payload))
            f.payload.forEach(add);
        else if (f.type === "clientSyncReply" && Array.isArray(f.payload))
            onSyncReply(f);
        else if (f.type === "error")
            onError(f);
    }

    /* --- the WebSocket -------------------------------------------------- */

    function connect() {
        state.retryTimer = null;
        setConn("connecting", "connecting");
        const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/";
        let ws;
        try {
            ws = new WebSocket(url);
        } catch (e) {
            retry("cannot open " + url);
            return;
        }
        state.ws = ws;
        ws.onopen = () => {
            notice("");
            requestSync();
        };
        ws.onmessage = (ev) => {
            if (state.ws === ws)
                onFrame(ev.data);
        };
        ws.onclose = (ev) => {
            if (state.ws !== ws)
                return;
            state.ws = null;
            state.syncing = false;
            retry(ev.code === 1001 ? "the node is going away" : "connection lost");
        };
    }

    function retry(why) {
        const delay = Math.min(RETRY_MIN_MS * 2 ** state.retries, RETRY_MAX_MS) +
            Math.floor(Math.random() * 250);
        state.retries++;
        setConn("disconnected", why + "; reconnecting in " + Math.ceil(delay / 1000) + " s");
        state.retryTimer = setTimeout(connect, delay);
    }

    /* --- the forms ------------------------------------------------------ */

    ui.join.addEventListener("submit", (e) => {
        e.preventDefault();
        const name = ui.name.value.trim();
        if (name === "")
            return;
        state.name = name;
        try {
            localStorage.setItem("dchat.name", name);
        } catch (err) {
            /* storage may be off; the name is only remembered for next time */
        }
        ui.join.hidden = true;
        ui.messages.hidden = false;
        ui.send.hidden = false;
        ui.text.focus();
        connect();
    });

    ui.send.addEventListener("submit", (e) => {
        e.preventDefault();
        const text = ui.text.value;
        if (text.trim() === "")
            return;
        if (state.ws === null || state.ws.readyState !== WebSocket.OPEN || state.syncing) {
            notice("Not connected: the message was not sent.");
            return;
        }
        state.ws.send(JSON.stringify({
            type: "newMessageFromClient",
            payload: { text: text, sender: state.name, chatId: room },
        }));
        notice("");
        ui.text.value = "";
    });

    try {
        ui.name.value = localStorage.getItem("dchat.name") || "";
    } catch (err) {
        /* no storage: the field stays empty */
    }
    setConn("idle", "not connected; pick a name to join");
})();
