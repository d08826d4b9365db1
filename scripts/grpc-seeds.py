#!/usr/bin/env python3
"""Writes one gRPC connection per etcd method for the grpc fuzz target: the HTTP/2 preface, SETTINGS, a HEADERS
frame whose header block uses HPACK literals without Huffman coding (so that the method path is plain text the
fuzzer can mutate, and the dictionary's paths match), and a DATA frame with an empty request message. Real clients
(recorded by scripts/fuzz-seeds.sh) cover the common methods with real requests; these cover the rest
(Lock, Election, Downgrade, ...).

usage: grpc-seeds.py OUTDIR PATH...
"""
import os
import struct
import sys


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    # Literal header field without indexing, new name; lengths below 127 fit the 7-bit prefix.
    name, value = name.encode(), value.encode()
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


outdir = sys.argv[1]
os.makedirs(outdir, exist_ok=True)
for path in sys.argv[2:]:
    block = b"".join(
        literal(n, v)
        for n, v in [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "127.0.0.1:2379"),
                     ("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "5S")])
    data = b"\x00" + struct.pack(">I", 0)
    connection = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + frame(1, 4, 1, block)
                  + frame(0, 1, 1, data))
    with open(os.path.join(outdir, "method-" + path.strip("/").replace("/", "-")), "wb") as f:
        f.write(connection)
