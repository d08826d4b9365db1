// rangebench: loads keys into an etcd v3 API server and times one large Range (or etcd 3.7's RangeStream) over
// them, for scripts/bench-range.sh. Built on Debian's etcd 3.4 clientv3 and grpc-go (GOPATH mode).
//
//	rangebench load --endpoint 127.0.0.1:2379 --keys 1000000 --val-size 100 --batch 128 --clients 8
//	rangebench get  --endpoint 127.0.0.1:2379 [--keys-only] [--count-only] [--stream]
//	rangebench small --endpoint 127.0.0.1:2379 --keys 1000000 --n 2000 --span 100
//
// `get` sends the RangeRequest as bytes and receives the answer as bytes (a raw codec), so the client neither
// needs RangeStream in its generated code nor spends its time decoding while the server is measured; the answer
// is decoded after the clock stops, to report how many keys arrived. Output: one JSON line.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

const prefix = "/bench/range/"

// rawCodec passes messages through as bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                               { return "proto" }

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "rangebench: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: rangebench load|get [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	endpoint := fs.String("endpoint", "127.0.0.1:2379", "server (host:port)")
	keys := fs.Int("keys", 1000000, "load: keys to write")
	valSize := fs.Int("val-size", 100, "load: value bytes")
	batch := fs.Int("batch", 128, "load: puts per txn (etcd's default --max-txn-ops is 128)")
	clients := fs.Int("clients", 8, "load: concurrent writers")
	keysOnly := fs.Bool("keys-only", false, "get: keys_only")
	countOnly := fs.Bool("count-only", false, "get: count_only")
	stream := fs.Bool("stream", false, "get: RangeStream instead of Range")
	timeout := fs.Duration("timeout", 10*time.Minute, "bound of the whole run")
	n := fs.Int("n", 2000, "small: requests")
	span := fs.Int("span", 100, "small: keys per range (1: a get of one key)")
	fs.Parse(os.Args[2:])
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	switch os.Args[1] {
	case "load":
		load(ctx, *endpoint, *keys, *valSize, *batch, *clients)
	case "get":
		get(ctx, *endpoint, *keysOnly, *countOnly, *stream)
	case "small":
		small(ctx, *endpoint, *keys, *n, *span)
	default:
		fail("unknown command %q", os.Args[1])
	}
}

func load(ctx context.Context, endpoint string, keys, valSize, batch, clients int) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{endpoint}, DialTimeout: 10 * time.Second, LogConfig: &zap.Config{Level: zap.NewAtomicLevelAt(zap.ErrorLevel), Encoding: "json", OutputPaths: []string{"stderr"}, ErrorOutputPaths: []string{"stderr"}},
	})
	if err != nil {
		fail("connect: %v", err)
	}
	defer cli.Close()
	value := make([]byte, valSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	batches := (keys + batch - 1) / batch
	var next int64 = -1
	var failed atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				b := int(atomic.AddInt64(&next, 1))
				if b >= batches || failed.Load() != nil {
					return
				}
				ops := make([]clientv3.Op, 0, batch)
				for i := b * batch; i < (b+1)*batch && i < keys; i++ {
					ops = append(ops, clientv3.OpPut(fmt.Sprintf("%s%08d", prefix, i), string(value)))
				}
				if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		fail("load: %v", err)
	}
	out, _ := json.Marshal(map[string]interface{}{
		"loaded": keys, "val_size": valSize, "batch": batch, "seconds": time.Since(start).Seconds(),
	})
	fmt.Println(string(out))
}

func get(ctx context.Context, endpoint string, keysOnly, countOnly, stream bool) {
	conn, err := grpc.DialContext(ctx, endpoint, grpc.WithInsecure(), grpc.WithBlock(),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.ForceCodec(rawCodec{})))
	if err != nil {
		fail("connect: %v", err)
	}
	defer conn.Close()
	end := []byte(prefix)
	end[len(end)-1]++
	request, err := (&pb.RangeRequest{
		Key: []byte(prefix), RangeEnd: end, KeysOnly: keysOnly, CountOnly: countOnly,
	}).Marshal()
	if err != nil {
		fail("marshal: %v", err)
	}
	var messages [][]byte
	bytes := 0
	start := time.Now()
	if stream {
		s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/etcdserverpb.KV/RangeStream")
		if err != nil {
			fail("RangeStream: %v", err)
		}
		if err := s.SendMsg(&request); err != nil {
			fail("RangeStream send: %v", err)
		}
		if err := s.CloseSend(); err != nil {
			fail("RangeStream close: %v", err)
		}
		for {
			var m []byte
			if err := s.RecvMsg(&m); err != nil {
				if err.Error() == "EOF" {
					break
				}
				fail("RangeStream receive: %v", err)
			}
			bytes += len(m)
			messages = append(messages, m)
		}
	} else {
		var m []byte
		if err := conn.Invoke(ctx, "/etcdserverpb.KV/Range", &request, &m); err != nil {
			fail("Range: %v", err)
		}
		bytes = len(m)
		messages = append(messages, m)
	}
	elapsed := time.Since(start)
	// Decoded after the clock stopped: how many keys arrived, and the count the server reported.
	kvs, count := 0, int64(0)
	for _, m := range messages {
		body := m
		if stream {
			// RangeStreamResponse { RangeResponse range_response = 1; }: tag 0x0a, length, the RangeResponse.
			if len(m) == 0 {
				continue
			}
			if m[0] != 0x0a {
				fail("unexpected RangeStreamResponse field %x", m[0])
			}
			n, k := uvarint(m[1:])
			body = m[1+k : 1+k+int(n)]
		}
		var r pb.RangeResponse
		if err := r.Unmarshal(body); err != nil {
			fail("decode: %v", err)
		}
		kvs += len(r.Kvs)
		if r.Count != 0 {
			count = r.Count
		}
	}
	out, _ := json.Marshal(map[string]interface{}{
		"ms": float64(elapsed.Microseconds()) / 1000, "messages": len(messages), "bytes": bytes, "kvs": kvs,
		"count": count, "stream": stream, "keys_only": keysOnly, "count_only": countOnly,
	})
	fmt.Println(string(out))
}

func uvarint(b []byte) (uint64, int) {
	var x uint64
	for i, c := range b {
		x |= uint64(c&0x7f) << (7 * uint(i))
		if c < 0x80 {
			return x, i + 1
		}
	}
	fail("bad varint")
	return 0, 0
}

// small times n serializable Ranges of `span` consecutive loaded keys (a get of one key when span is 1), one at a
// time from one client: the hot path a large-range change must not slow down.
func small(ctx context.Context, endpoint string, keys, n, span int) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 10 * time.Second})
	if err != nil {
		fail("connect: %v", err)
	}
	defer cli.Close()
	rng := rand.New(rand.NewSource(1))
	latencies := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		start := rng.Intn(keys - span)
		from := fmt.Sprintf("%s%08d", prefix, start)
		opts := []clientv3.OpOption{clientv3.WithSerializable()}
		if span > 1 {
			opts = append(opts, clientv3.WithRange(fmt.Sprintf("%s%08d", prefix, start+span)))
		}
		t := time.Now()
		r, err := cli.Get(ctx, from, opts...)
		if err != nil {
			fail("get: %v", err)
		}
		latencies = append(latencies, float64(time.Since(t).Microseconds()))
		if len(r.Kvs) != span {
			fail("got %d keys, want %d", len(r.Kvs), span)
		}
	}
	sort.Float64s(latencies)
	sum := 0.0
	for _, l := range latencies {
		sum += l
	}
	out, _ := json.Marshal(map[string]interface{}{
		"n": n, "span": span, "mean_us": sum / float64(n), "p50_us": latencies[n/2], "p99_us": latencies[n*99/100],
	})
	fmt.Println(string(out))
}
