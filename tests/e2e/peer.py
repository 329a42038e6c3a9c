"""A fake peer for end-to-end tests: speaks the peer protocol of
docs/PROTOCOL.md section 2 from Python, written from that document (not
from the C code), so tests can play a node, an attacker without the secret,
or an insider with it. A FakeLink wraps one TCP socket: the handshake
(hellos with nonces, AUTH proofs), then sealed records both ways."""

import hashlib
import hmac
import os
import socket
import struct

VERSION = 2
HELLO, MSG, MARKS, AUTH = 1, 2, 3, 4
MAGIC = b"DCHT"


def frame(ftype, origin, seq, payload=b"", flags=0, version=VERSION):
    return struct.pack("!IBBHIQ", 16 + len(payload), version, ftype, flags, origin, seq) + payload


def msg_frame(origin, seq, text, sender=b"peer", chat_id=11, time_ms=1):
    if isinstance(text, str):
        text = text.encode()
    payload = struct.pack("!QqHI", time_ms, chat_id, len(sender), len(text)) + sender + text
    return frame(MSG, origin, seq, payload)


def marks_frame(origin, marks, flags=0):
    body = struct.pack("!I", len(marks)) + b"".join(struct.pack("!IQ", o, s) for o, s in marks)
    return frame(MARKS, origin, 0, body, flags)


def _bound(secret, label, role, dialer, acceptor, nd, na):
    data = label + b"\0" + role + b"\0" + struct.pack("!II", dialer, acceptor) + nd + na
    return hmac.new(secret, data, hashlib.sha256).digest()


def proof(secret, role, dialer, acceptor, nd, na):
    return _bound(secret, b"dchat-link-auth-v2", role, dialer, acceptor, nd, na)


def direction_key(secret, role, dialer, acceptor, nd, na):
    return _bound(secret, b"dchat-link-key-v2", role, dialer, acceptor, nd, na)


def read_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise EOFError(f"the node closed the link after {len(b)} of {n} bytes")
        b += chunk
    return b


def read_frame(s):
    """One bare frame: (type, flags, origin, seq, payload)."""
    head = read_exact(s, 20)
    length, version, ftype, flags, origin, seq = struct.unpack("!IBBHIQ", head)
    assert version == VERSION, f"peer protocol version {version}"
    return ftype, flags, origin, seq, read_exact(s, length - 16)


def parse_frames(data):
    out = []
    while data:
        length, version, ftype, flags, origin, seq = struct.unpack("!IBBHIQ", data[:20])
        out.append((ftype, flags, origin, seq, data[20:4 + length]))
        data = data[4 + length:]
    return out


class FakeLink:
    """One link, from the fake node's side. secret: bytes (b"" = --insecure)."""

    def __init__(self, sock, my_id, secret):
        self.s = sock
        self.id = my_id
        self.secret = secret
        self.peer_id = None
        self.send_key = self.recv_key = None
        self.sent = self.received = 0
        self.pending = []          # frames of a record already read

    # --- handshake ---------------------------------------------------------
    def accept_handshake(self, proof_override=None):
        """We accepted the node's dial: read its hello, answer with ours and
        our proof, read its proof. Returns its id; raises AssertionError if
        its proof is wrong, EOFError if it closed the link."""
        ftype, _, origin, _, payload = read_frame(self.s)
        assert ftype == HELLO and payload[:4] == MAGIC and len(payload) == 36
        nd, na = payload[4:], os.urandom(32)
        self.peer_id = origin
        ids = (origin, self.id, nd, na)
        mine = proof_override or proof(self.secret, b"acceptor", *ids)
        self.s.sendall(frame(HELLO, self.id, 0, MAGIC + na) + frame(AUTH, self.id, 0, mine))
        ftype, _, origin, _, theirs = read_frame(self.s)
        assert ftype == AUTH and origin == self.peer_id
        assert hmac.compare_digest(theirs, proof(self.secret, b"dialer", *ids)), \
            "the node's proof does not verify"
        self.send_key = direction_key(self.secret, b"acceptor", *ids)
        self.recv_key = direction_key(self.secret, b"dialer", *ids)
        return self.peer_id

    def dial_handshake(self, claim_id=None, proof_override=None):
        """We dialled the node: hello, its hello and proof, our proof.
        Returns its id; raises EOFError if it closed the link."""
        me = claim_id or self.id
        self.id = me
        nd = os.urandom(32)
        self.s.sendall(frame(HELLO, me, 0, MAGIC + nd))
        ftype, _, origin, _, payload = read_frame(self.s)
        assert ftype == HELLO and payload[:4] == MAGIC
        na = payload[4:]
        self.peer_id = origin
        ftype, _, origin2, _, theirs = read_frame(self.s)
        assert ftype == AUTH and origin2 == origin
        ids = (me, origin, nd, na)
        self.node_proof_ok = hmac.compare_digest(theirs, proof(self.secret, b"acceptor", *ids))
        self.s.sendall(frame(AUTH, me, 0, proof_override or proof(self.secret, b"dialer", *ids)))
        self.send_key = direction_key(self.secret, b"dialer", *ids)
        self.recv_key = direction_key(self.secret, b"acceptor", *ids)
        return self.peer_id

    # --- records -----------------------------------------------------------
    def seal(self, frames):
        head = struct.pack("!I", len(frames))
        mac = hmac.new(self.send_key, struct.pack("!Q", self.sent) + head + frames,
                       hashlib.sha256).digest()
        self.sent += 1
        return head + frames + mac

    def send(self, *frames):
        self.s.sendall(self.seal(b"".join(frames)))

    def recv(self):
        """The next frame the node sent, from its records (MACs checked)."""
        while not self.pending:
            head = read_exact(self.s, 4)
            body = read_exact(self.s, struct.unpack("!I", head)[0])
            mac = read_exact(self.s, 32)
            want = hmac.new(self.recv_key, struct.pack("!Q", self.received) + head + body,
                            hashlib.sha256).digest()
            assert hmac.compare_digest(mac, want), "a record from the node does not verify"
            self.received += 1
            self.pending = parse_frames(body)
        return self.pending.pop(0)


def connect(port, my_id, secret, timeout=30):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return FakeLink(s, my_id, secret)
