/* The chat page (GET / on a node's client port). It shows one chat room
 * (#room=N in the address; DSatter's chat 11 by default): it opens a
 * WebSocket to the node that served it, joins the room (subscribe), asks
 * for the room's recent history (clientSyncRequest), then shows messages
 * as they come. When the connection drops it reconnects, with a growing
 * delay, joins again and asks for what it missed since the marks the last
 * reply gave ("next", raised by the live messages since), so that nothing
 * is missed; every message is shown once, keyed by its messageId, in the
 * order of docs/PROTOCOL.md 1.4 (time, then origin, then id). Changing the
 * room starts afresh on a new connection.
 * Message text is untrusted: it only ever goes into textContent. */
"use strict";

(function () {
    /* The room shown: #room=N, or DSatter's chat 11. */
    const DEFAULT_ROOM = 11;
    let room = roomOf(location.hash);
    const RETRY_MIN_MS = 500;
    const RETRY_MAX_MS = 5000;

    const el = (id) => document.getElementById(id);
    const ui = {
        join: el("join"), name: el("name"), messages: el("messages"), send: el("send"),
        text: el("text"), sendButton: el("send-button"), conn: el("conn"),
        connText: el("conn-text"), notice: el("notice"), roomForm: el("room"),
        roomInput: el("room-input"),
    };

    const state = {
        name: "",
        ws: null,
        nodeId: null,
        retries: 0,
        retryTimer: null,
        syncing: false,
        seen: new Set(),    // messageIds shown
        /* Per origin, the highest id up to which we have every message of
         * the room: the last reply's "next", raised by the live messages
         * that came after it. Live messages that come while a reply is
         * awaited count only once it is in (live[]): a reply that stops
         * early leaves a gap below them. */
        marks: new Map(),
        live: new Map(),
        synced: false,      // marks hold a complete reply's point
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

    function roomOf(hash) {
        const m = /^#room=(-?[0-9]{1,18})$/.exec(hash);
        return m !== null ? Number(m[1]) : DEFAULT_ROOM;
    }

    function raise(map, o, id) {
        if (!(map.get(o) >= id))
            map.set(o, id);
    }

    function add(m) {
        if (!valid(m) || m.chatId !== room)
            return;
        raise(state.syncing || !state.synced ? state.live : state.marks, m.nodeId, m.id);
        if (state.seen.has(m.messageId))
            return;
        state.seen.add(m.messageId);
        show(m);
    }

    /* --- catch-up ------------------------------------------------------- */

    function join() {
        /* Until the reply is in, live messages only wait in state.live:
         * the node sends every chat until the subscribe is taken. */
        state.syncing = true;
        setConn("syncing", "joining room " + room);
        state.ws.send(JSON.stringify({ type: "subscribe", payload: { chatIds: [room] } }));
    }

    function requestSync(marks) {
        const frame = { type: "clientSyncRequest" };
        /* Without marks the node sends the room's latest messages: the
         * history a newcomer sees. With marks: everything after them. */
        if (marks !== undefined)
            frame.payload = marks;
        state.syncing = true;
        state.syncWithMarks = marks !== undefined;
        setConn("syncing", "catching up");
        state.ws.send(JSON.stringify(frame));
    }

    function marksObject() {
        const marks = {};
        for (const [o, id] of state.marks)
            marks[o] = id;
        return marks;
    }

    function onSyncReply(f) {
        f.payload.forEach(add);
        const next = f.next !== null && typeof f.next === "object" ? f.next : {};
        if (f.truncated === true && state.syncWithMarks) {
            requestSync(next);   // the oldest part came: ask for the rest
            return;
        }
        for (const o of Object.keys(next))
            if (Number.isInteger(next[o]))
                raise(state.marks, Number(o), next[o]);
        for (const [o, id] of state.live)
            raise(state.marks, o, id);
        state.live.clear();
        state.syncing = false;
        state.synced = true;
        state.retries = 0;
        setConn("connected", "connected to room " + room);
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
            state.marks.delete(Number(unknown[1]));
            resync();
            return;
        }
        const ws = state.ws;
        setConn("syncing", "catching up (retrying: " + text + ")");
        setTimeout(() => { if (state.ws === ws && ws.readyState === WebSocket.OPEN) resync(); }, 1000);
    }

    /* After (re)joining: from the marks we hold, or the latest. */
    function resync() {
        requestSync(state.synced ? marksObject() : undefined);
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
        else if (f.type === "subscribeReply")
            resync();
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
            join();
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

    /* Another room: a fresh list and a fresh connection, so that nothing of
     * the old room's requests can land in the new one. */
    function switchRoom(to) {
        if (to === room)
            return;
        room = to;
        ui.roomInput.value = String(room);
        if (location.hash !== "#room=" + room)
            history.replaceState(null, "", "#room=" + room);
        state.seen.clear();
        state.marks.clear();
        state.live.clear();
        state.synced = false;
        state.syncing = false;
        state.shown = [];
        ui.messages.replaceChildren();
        if (state.ws !== null) {
            const old = state.ws;
            state.ws = null;
            old.close(1000);
            connect();
        }
    }

    ui.roomForm.addEventListener("submit", (e) => {
        e.preventDefault();
        const v = ui.roomInput.value.trim();
        if (/^-?[0-9]{1,15}$/.test(v))
            switchRoom(Number(v));
        else
            notice("A room is a whole number, such as 11.");
    });
    window.addEventListener("hashchange", () => switchRoom(roomOf(location.hash)));

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
        if (state.ws === null || state.ws.readyState !== WebSocket.OPEN || !state.synced ||
            state.syncing) {
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
    ui.roomInput.value = String(room);
    setConn("idle", "not connected; pick a name to join");
})();
