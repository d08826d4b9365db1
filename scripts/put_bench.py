"""Put throughput against an etcd v3 endpoint (Quorum or etcd), plaintext or TLS, via grpc.aio.

Encodes PutRequest by hand (key=1, value=2) so it needs no generated code.
usage: put_bench.py HOST:PORT SECONDS CHANNELS INFLIGHT_PER_CHANNEL [CA CERT KEY]
"""
import asyncio, sys, time
import grpc

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)

def put_request(key, value):
    return b"\x0a" + varint(len(key)) + key + b"\x12" + varint(len(value)) + value

async def worker(stub, deadline, worker_id, counts):
    i = 0
    value = b"x" * 256
    while time.monotonic() < deadline:
        key = b"bench/%d/%d" % (worker_id, i % 1000)
        await stub(put_request(key, value), timeout=10)
        i += 1
    counts.append(i)

async def main():
    target, seconds, channels, inflight = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    creds = None
    if len(sys.argv) > 5:
        ca, cert, key = (open(p, "rb").read() for p in sys.argv[5:8])
        creds = grpc.ssl_channel_credentials(ca, key, cert)
    chans = []
    for _ in range(channels):
        ch = grpc.aio.secure_channel(target, creds) if creds else grpc.aio.insecure_channel(target)
        chans.append(ch)
    stubs = [ch.unary_unary("/etcdserverpb.KV/Put", request_serializer=None, response_deserializer=None) for ch in chans]
    # warm up
    for s in stubs:
        await s(put_request(b"warm", b"up"), timeout=10)
    counts = []
    start = time.monotonic()
    deadline = start + seconds
    await asyncio.gather(*(worker(stubs[w % channels], deadline, w, counts) for w in range(channels * inflight)))
    elapsed = time.monotonic() - start
    total = sum(counts)
    print(f"{total} puts in {elapsed:.2f}s = {total/elapsed:.0f} puts/s ({channels} conns x {inflight} in flight)")
    for ch in chans:
        await ch.close()

asyncio.run(main())
