#!/usr/bin/env python3
"""A TCP proxy that records what clients send: each accepted connection is forwarded to TARGET and the bytes the
client sent on it are written to OUTDIR/<n>.bin when it closes. scripts/fuzz-seeds.sh puts it in front of a real
etcd's client port, so that the gRPC and HTTP fuzz targets start from real etcdctl and curl traffic.

usage: record-proxy.py LISTEN_PORT TARGET_HOST:TARGET_PORT OUTDIR
"""
import os
import socket
import sys
import threading

listen_port = int(sys.argv[1])
target_host, target_port = sys.argv[2].rsplit(":", 1)
outdir = sys.argv[3]
os.makedirs(outdir, exist_ok=True)
counter = [0]
lock = threading.Lock()


def pump(src, dst, record):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if record is not None:
                record.append(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(client):
    upstream = socket.create_connection((target_host, int(target_port)))
    sent = []
    a = threading.Thread(target=pump, args=(client, upstream, sent))
    b = threading.Thread(target=pump, args=(upstream, client, None))
    a.start()
    b.start()
    a.join()
    b.join()
    with lock:
        counter[0] += 1
        n = counter[0]
    if sent:
        with open(os.path.join(outdir, "%04d.bin" % n), "wb") as f:
            f.write(b"".join(sent))
    client.close()
    upstream.close()


server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", listen_port))
server.listen(64)
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
