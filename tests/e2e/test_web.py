"""End-to-end tests of the web page every node serves on its client port
(GET / the chat, GET /status the status view; docs/PROTOCOL.md 1.2 and
README, "Web page").

Without a browser: the files and their headers, HEAD, 405, the 404 text,
and that DSatter clients still open their WebSocket on / and chat.

In a real browser (Debian's headless Chromium through python3-selenium):
two pages on two nodes exchange messages; the node under one page is
stopped and restarted while the other page sends, and the page reconnects
and shows every message of the cluster once, in the protocol's order; a page
the node serves works under --allowed-origins; the status view draws the
node's figures. Waits are WebDriverWait conditions (each with a hang limit
only), never sleeps.

DCHAT_SCREENSHOT_DIR=DIR makes test_status_view_and_screenshots write
web-chat.png and web-status.png there (scripts/web-screenshots.sh writes
docs/img/ this way)."""

import asyncio
import base64
import http.client
import json
import math
import os
import re
import shutil
import socket
import tempfile

import pytest
import websockets

from cluster import REPO, Discovery, Node, free_port, http_json, new_message, wait_mesh, wait_until

try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # reported by the browser fixture, so the HTTP tests still run
    webdriver = None

HANG = 30           # seconds: only a guard against hangs, never a speed claim
FAST_SYNC = ("--sync-interval", "0.3")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WEB_DIR = os.path.join(REPO, "web")
PAGES = {"/": "index.html", "/status": "status.html", "/chat.js": "chat.js",
         "/status.js": "status.js", "/dchat.css": "dchat.css", "/favicon.svg": "favicon.svg"}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def request(node, method, path, headers=None):
    """(status, headers with lower-case names, body) of one plain request."""
    c = http.client.HTTPConnection("127.0.0.1", node.client_port, timeout=HANG)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def handshake_status(node, origin=None, host=None):
    """The status line's code of a WebSocket handshake on / (raw socket)."""
    key = base64.b64encode(os.urandom(16)).decode()
    host = host or f"127.0.0.1:{node.client_port}"
    lines = ["GET / HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    with socket.create_connection(("127.0.0.1", node.client_port), timeout=HANG) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n" not in head:
            chunk = s.recv(1024)
            assert chunk, f"closed before a status line: {head!r}"
            head += chunk
        return int(head.split()[1])


async def dsatter_round_trip(node, text):
    """What DSatter's client does on /: connect, say "Client connected",
    send, and get the message back."""
    async with websockets.connect(node.ws_url) as ws:
        await ws.send("Client connected")
        await ws.send(new_message(text, sender="dsatter"))
        frame = json.loads(await asyncio.wait_for(ws.recv(), HANG))
        assert frame["type"] == "newMessagesForClient", frame
        assert frame["payload"][0]["text"] == text


async def send_accepted(node, texts, sender, chat=11):
    """Sends texts from a websockets client and returns once all came back
    (a node echoes a message only once it has stored it)."""
    async with websockets.connect(node.ws_url) as ws:
        for t in texts:
            await ws.send(new_message(t, sender=sender, chat=chat))
        got = []
        while len(got) < len(texts):
            f = json.loads(await asyncio.wait_for(ws.recv(), HANG))
            m = f["payload"][0]
            if m["sender"] == sender:
                got.append(m["text"])
        assert got == texts


def cluster_messages(node, chat=11):
    """Every message of the cluster in node's history, of one chat, in the
    order of docs/PROTOCOL.md 1.4: time, then origin, then id."""
    out = []
    for o in node.status()["history"]["origins"]:
        after = 0
        while True:
            status, body = http_json(f"{node.url}/api/history?origin={o['origin']}"
                                     f"&after={after}&limit=1000")
            assert status == 200, body
            out += body["messages"]
            if not body["more"]:
                break
            after = body["messages"][-1]["id"]
    out.sort(key=lambda m: (m["dateTime"], m["nodeId"], m["id"]))
    return [m for m in out if m["chatId"] == chat]


def wait_converged(nodes):
    """Until the nodes' histories are the same and committed."""
    def same():
        hs = [n.status()["history"] for n in nodes]
        ds = [{o["origin"]: (o["count"], o["highest"]) for o in h["origins"]} for h in hs]
        return all(d == ds[0] for d in ds) and not any(h["pending"] for h in hs)
    wait_until(same, HANG, "the nodes' histories to converge")


# --- plain HTTP: no browser ----------------------------------------------------

@pytest.fixture
def node(logdir, procs):
    d = Discovery(logdir)
    procs.append(d)
    n = Node(d, logdir)
    procs.append(n)
    return n


def test_the_files_are_served_with_their_headers(node):
    host = f"127.0.0.1:{node.client_port}"
    for path, name in PAGES.items():
        with open(os.path.join(WEB_DIR, name), "rb") as f:
            want = f.read()
        status, h, body = request(node, "GET", path)
        assert status == 200, (path, body)
        assert body == want, path
        assert h["content-type"] == TYPES[os.path.splitext(name)[1]], (path, h)
        assert h["content-length"] == str(len(want))
        assert h["cache-control"] == "no-cache"
        assert h["x-content-type-options"] == "nosniff"
        csp = [d.strip() for d in h["content-security-policy"].split(";")]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp, csp
        assert "style-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp
        assert f"connect-src 'self' ws://{host} wss://{host}" in csp, csp
        assert "unsafe-inline" not in h["content-security-policy"]
        # HEAD: the same headers, no body.
        hstatus, hh, hbody = request(node, "HEAD", path)
        assert (hstatus, hbody) == (200, b"")
        assert {k: v for k, v in hh.items() if k != "date"} == \
            {k: v for k, v in h.items() if k != "date"}


def test_the_pages_hold_no_inline_script_or_style_and_load_only_their_own_files(node):
    """What the CSP would refuse (the browser tests also watch the console
    for violations): inline scripts, event handler and style attributes,
    <style>; and nothing is loaded from another site."""
    for page in ("/", "/status"):
        _, _, body = request(node, "GET", page)
        html = body.decode()
        scripts = re.findall(r"<script\b[^>]*>", html)
        assert scripts and all(re.search(r'\ssrc="[a-z]+\.js"', t) for t in scripts), scripts
        assert not re.search(r"<[a-z][^>]*\s(on[a-z]+|style)\s*=", html, re.I), page
        assert "<style" not in html, page
        assert "//" not in html.replace("<!--", ""), page   # no URL of another site


def test_other_methods_get_405_and_unknown_paths_404(node):
    for method, path in (("POST", "/"), ("PUT", "/status"), ("DELETE", "/chat.js")):
        status, h, body = request(node, method, path)
        assert status == 405, (method, path, body)
        assert h["allow"] == "GET, HEAD"
        assert json.loads(body) == {"error": f"use GET on {path}"}
    for path in ("/index.html", "/status.html", "/nope.js", "/web/chat.js", "/status/"):
        status, _, body = request(node, "GET", path)
        assert status == 404, (path, body)
        assert json.loads(body) == {"error": (
            f"no such path {path}: this port serves WebSocket clients, the chat page at "
            "GET /, the status view at GET /status, GET /healthz, GET /readyz, GET /metrics, "
            "GET /api/status and GET /api/history")}


def test_a_websocket_upgrade_on_slash_still_works(node):
    assert handshake_status(node) == 101
    run(dsatter_round_trip(node, "still a WebSocket on /"))
    # and GET / after it, on the same port, is still the page
    status, h, _ = request(node, "GET", "/")
    assert status == 200 and h["content-type"].startswith("text/html")


def test_allowed_origins_let_the_nodes_own_page_in(logdir, procs):
    d = Discovery(logdir)
    procs.append(d)
    nd = Node(d, logdir, extra=("--allowed-origins", "https://chat.example.com"))
    procs.append(nd)
    own = f"http://127.0.0.1:{nd.client_port}"
    assert handshake_status(nd, origin=own) == 101
    assert handshake_status(nd, origin="https://chat.example.com") == 101
    assert handshake_status(nd) == 101                      # no Origin: DSatter's clients
    # The page's own origin means scheme, host and port of this request.
    assert handshake_status(nd, origin=f"https://127.0.0.1:{nd.client_port}") == 403
    assert handshake_status(nd, origin=f"http://127.0.0.1:{nd.client_port + 1}") == 403
    assert handshake_status(nd, origin=f"http://localhost:{nd.client_port}") == 403
    assert handshake_status(nd, origin=f"http://localhost:{nd.client_port}",
                            host=f"localhost:{nd.client_port}") == 101
    assert handshake_status(nd, origin="https://evil.example") == 403


# --- in a browser ----------------------------------------------------------------

def new_browser(profile):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", "--window-size=1000,700", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


@pytest.fixture
def browser():
    """A function that opens a headless Chromium (each with its own profile);
    all are closed at the end, after checking that no page broke its CSP or
    threw."""
    if webdriver is None:
        pytest.fail("python3-selenium is missing: run 'scripts/deps.sh test' (as root)")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} is missing: run 'scripts/deps.sh test' (as root) to install "
                        "chromium and chromium-driver")
    try:
        socket.getaddrinfo("localhost", None)
    except socket.gaierror:
        pytest.fail("the name localhost does not resolve here (no /etc/hosts?), and "
                    "chromedriver reaches the browser it starts by that name: add "
                    "'127.0.0.1 localhost' to /etc/hosts")
    opened = []
    profiles = []

    def open_one():
        profiles.append(tempfile.mkdtemp(prefix="dchat-chromium-"))
        d = new_browser(profiles[-1])
        opened.append(d)
        return d
    yield open_one
    problems = []
    for d in opened:
        try:
            problems += page_errors(d)
        finally:
            d.quit()
    for p in profiles:
        shutil.rmtree(p, ignore_errors=True)
    assert not problems, "the pages logged errors:\n" + "\n".join(problems)


def page_errors(driver):
    """Console entries that mean the page is broken: a CSP violation, an
    uncaught exception. (A refused WebSocket while a node is down is not.)"""
    out = []
    for e in driver.get_log("browser"):
        msg = e.get("message", "")
        if "Content Security Policy" in msg or "Uncaught" in msg:
            out.append(msg)
    return out


class ChatPage:
    """The chat page of one node in one browser, read through the DOM."""

    def __init__(self, driver, node, name, path="/"):
        self.d = driver
        self.node = node
        self.name = name
        driver.get(node.url + path)
        driver.find_element(By.ID, "name").send_keys(name)
        driver.find_element(By.CSS_SELECTOR, "#join button").click()
        self.wait_state("connected")

    def wait(self, cond, what):
        try:
            return WebDriverWait(self.d, HANG, poll_frequency=0.05).until(lambda _: cond())
        except Exception as e:
            raise AssertionError(f"{self.name}'s page: timed out waiting for {what}; it shows "
                                 f"{self.conn_text()!r} and {self.texts()}") from e

    def state(self):
        return self.d.find_element(By.ID, "conn").get_attribute("data-state")

    def conn_text(self):
        return self.d.find_element(By.ID, "conn-text").text

    def wait_state(self, state):
        self.wait(lambda: self.state() == state, f"the state {state}")

    def messages(self):
        """The list as shown: messageId, sender and text of every entry."""
        return self.d.execute_script(
            "return Array.from(document.querySelectorAll('#messages > li')).map(li => ({"
            "id: li.dataset.messageId, sender: li.querySelector('.sender').textContent,"
            "text: li.querySelector('.text').textContent}));")

    def texts(self):
        return [m["text"] for m in self.messages()]

    def send(self, text):
        self.wait(lambda: self.d.find_element(By.ID, "send-button").is_enabled(),
                  "the send button")
        box = self.d.find_element(By.ID, "text")
        box.send_keys(text)
        self.d.find_element(By.ID, "send-button").click()
        self.wait(lambda: box.get_attribute("value") == "", "the message to leave the box")

    def wait_texts(self, texts):
        """Until every one of texts is in the list."""
        self.wait(lambda: all(t in self.texts() for t in texts), f"the messages {texts}")


def check_shows_the_cluster(page, node, chat=11):
    """The page lists exactly the cluster's messages of chat, each once, in
    the protocol's order."""
    want = [m["messageId"] for m in cluster_messages(node, chat)]
    page.wait(lambda: [m["id"] for m in page.messages()] == want,
              f"exactly the cluster's {len(want)} messages, in order")
    got = [m["id"] for m in page.messages()]
    assert len(set(got)) == len(got), "a message is shown twice"


def test_two_pages_exchange_and_a_restarted_node_loses_nothing(logdir, procs, browser):
    d = Discovery(logdir)
    procs.append(d)
    # Node A keeps its client port over the restart: the page reconnects there.
    a = Node(d, logdir, name="a", extra=("--client-port", str(free_port()), *FAST_SYNC))
    procs.append(a)
    b = Node(d, logdir, name="b", extra=FAST_SYNC)
    procs.append(b)
    wait_mesh([a, b])

    # History from before the pages, with text that would be markup.
    earlier = ["first", "<img src=x onerror=alert(1)>", "third & last"]
    run(send_accepted(a, earlier, "earlier"))

    alice = ChatPage(browser(), a, "alice")
    bob = ChatPage(browser(), b, "bob")
    for page, nd in ((alice, a), (bob, b)):
        page.wait_texts(earlier)                                 # the history on join
        assert page.d.find_element(By.ID, "conn").get_attribute("data-node") == str(nd.id)
        assert f"(node {nd.id})" in page.conn_text()
        # the markup stays text
        assert page.d.find_elements(By.CSS_SELECTOR, "#messages img") == []

    alice.send("hello bob")
    bob.wait_texts(["hello bob"])
    bob.send("hello alice")
    alice.wait_texts(["hello alice"])
    assert [m for m in alice.messages() if m["text"] == "hello alice"][0]["sender"] == "bob"

    a.stop()
    alice.wait_state("disconnected")
    away = [f"while a was away {i}" for i in range(5)]
    for t in away:
        bob.send(t)
    bob.wait_texts(away)
    assert not any(t in alice.texts() for t in away)             # a is down: nothing came

    # A comes back first where the page cannot reach it (another client
    # port) and catches up from b; only then on its own port. So what was
    # sent while it was away is in its history before the page reconnects,
    # and can reach the page only through its clientSyncRequest, not live.
    port = a.client_port
    a.args[len(a.args) - 1 - a.args[::-1].index(str(port))] = str(free_port())
    a.restart()
    wait_mesh([a, b])
    wait_converged([a, b])
    assert alice.state() in ("disconnected", "connecting")
    a.stop()
    a.args[len(a.args) - 1 - a.args[::-1].index(str(a.client_port))] = str(port)
    a.restart()
    assert a.client_port == port
    wait_mesh([a, b])
    alice.wait_state("connected")
    alice.wait_texts(away)
    check_shows_the_cluster(alice, a)

    # Live again, both ways, and still nothing twice.
    alice.send("back")
    bob.wait_texts(["back"])
    bob.send("welcome back")
    alice.wait_texts(["welcome back"])
    wait_converged([a, b])
    check_shows_the_cluster(alice, a)
    check_shows_the_cluster(bob, b)
    assert alice.texts() == bob.texts()


def test_the_page_shows_one_room_and_switches(logdir, procs, browser):
    """#room=12 shows chat 12 only (its history and live messages, not
    chat 11's); the room box switches to 11 and shows exactly chat 11; a
    restart of the node loses nothing of the room shown."""
    d = Discovery(logdir)
    procs.append(d)
    a = Node(d, logdir, name="a", extra=("--client-port", str(free_port()), *FAST_SYNC))
    procs.append(a)
    run(send_accepted(a, ["eleven before"], "x", chat=11))
    run(send_accepted(a, ["twelve before"], "x", chat=12))
    page = ChatPage(browser(), a, "dana", path="/#room=12")
    page.wait_texts(["twelve before"])
    assert page.d.find_element(By.ID, "room-input").get_attribute("value") == "12"
    assert a.status()["rooms"] == {"rooms": 1, "memberships": 1}
    page.send("twelve from the page")
    run(send_accepted(a, ["eleven live"], "x", chat=11))
    run(send_accepted(a, ["twelve live"], "x", chat=12))
    page.wait_texts(["twelve from the page", "twelve live"])
    check_shows_the_cluster(page, a, chat=12)       # nothing of chat 11

    a.stop()
    page.wait_state("disconnected")
    a.restart()
    wait_mesh([a])   # a restarted node numbers once it has discovery's list
    page.wait_state("connected")
    run(send_accepted(a, ["twelve after restart"], "x", chat=12))
    page.wait_texts(["twelve after restart"])
    check_shows_the_cluster(page, a, chat=12)

    box = page.d.find_element(By.ID, "room-input")
    box.clear()
    box.send_keys("11")
    page.d.find_element(By.CSS_SELECTOR, "#room button").click()
    page.wait(lambda: page.d.current_url.endswith("#room=11"), "the address to say room 11")
    page.wait_state("connected")
    check_shows_the_cluster(page, a, chat=11)


def test_the_page_works_under_allowed_origins(logdir, procs, browser):
    d = Discovery(logdir)
    procs.append(d)
    nd = Node(d, logdir, extra=("--allowed-origins", "https://chat.example.com"))
    procs.append(nd)
    page = ChatPage(browser(), nd, "carol")   # waits for "connected"
    page.send("from the node's own page")
    page.wait_texts(["from the node's own page"])
    assert nd.status()["clients"] == 1


def png_ok(path):
    with open(path, "rb") as f:
        head = f.read(8)
    return head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 10000


def test_status_view_and_screenshots(logdir, procs, browser):
    d = Discovery(logdir)
    procs.append(d)
    a = Node(d, logdir, name="a")
    procs.append(a)
    b = Node(d, logdir, name="b")
    procs.append(b)
    wait_mesh([a, b])
    run(send_accepted(b, ["Morning! Is the cluster up?", "Node b is, and linked."], "bob"))
    alice = ChatPage(browser(), a, "alice")
    alice.wait_texts(["Node b is, and linked."])
    alice.send("So is a. The status view is at /status.")
    run(send_accepted(b, ["Charts without Grafana, nice.", "Quotes \"and\" <tags> stay text."],
                      "bob"))
    alice.wait_texts(["Quotes \"and\" <tags> stay text."])
    # Another chat's message, then one of room 11 from the same origin: the
    # page has had the first when it shows the second, and must not show it.
    run(send_accepted(a, ["in chat 12"], "elsewhere", chat=12))
    alice.send("Reconnects catch up too: stop my node and see.")
    alice.wait_texts(["Reconnects catch up too: stop my node and see."])
    assert "in chat 12" not in alice.texts()
    shots = os.environ.get("DCHAT_SCREENSHOT_DIR") or logdir
    os.makedirs(shots, exist_ok=True)
    chat_png = os.path.join(shots, "web-chat.png")
    assert alice.d.save_screenshot(chat_png) and png_ok(chat_png), chat_png

    view = browser()
    view.get(a.url + "/status")

    def shows(sel, text):
        return view.find_element(By.CSS_SELECTOR, sel).text == text

    def points():
        return int(view.find_element(By.ID, "c-rates").get_attribute("data-points") or 0)
    wait = WebDriverWait(view, HANG, poll_frequency=0.05)
    if os.environ.get("DCHAT_SCREENSHOT_DIR"):
        # For the picture: a minute of varying load, in chat 12 so that the
        # chat page (room 11) does not show it, one batch per sample.
        for i in range(60):
            n = points()
            count = int(40 + 35 * math.sin(i / 6))
            run(send_accepted(a if i % 3 else b, [f"load {i}.{k}" for k in range(count)],
                              "load", chat=12))
            wait.until(lambda _: points() > n)
    wait.until(lambda _: shows("#f-id", str(a.id)))
    wait.until(lambda _: shows("#v-clients-0", "1"))             # alice's page
    wait.until(lambda _: shows("#v-peers-0", "1"))               # the link to b
    wait.until(lambda _: int(view.find_element(By.ID, "c-rates").get_attribute("data-points")
                             or 0) >= 3)
    assert view.find_element(By.ID, "conn").get_attribute("data-state") == "connected"
    rows = [r.text for r in view.find_elements(By.CSS_SELECTOR, "#peers tr")]
    assert len(rows) == 1 and rows[0].startswith(f"{b.id} ") and " up " in rows[0], rows
    # the charts drew something: a canvas with only its background is uniform
    drawn = view.execute_script(
        "const c = document.getElementById('c-clients');"
        "const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) n++; return n;")
    assert drawn > 100, drawn

    status_png = os.path.join(shots, "web-status.png")
    assert view.save_screenshot(status_png) and png_ok(status_png), status_png
