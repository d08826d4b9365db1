// scalebench: loads an etcd v3 API server with a database of a given size and measures requests on it, for
// scripts/bench-scale.sh. Built on Debian's etcd 3.4 clientv3 (GOPATH mode).
//
//	scalebench load  --endpoint 127.0.0.1:2379 --keys 2000000 --val-size 4096 --clients 64 [--batch 128]
//	scalebench run   --endpoint 127.0.0.1:2379 --keys 2000000 --op put|get --clients 64 --duration 10s [--timeline F]
//	scalebench ready --endpoint 127.0.0.1:2379 --timeout 30m
//
// Keys are /scale/%010d, 0 <= i < keys. `load` writes each key once (puts of val-size random bytes, `clients`
// goroutines over `conns` connections; with --batch N, transactions of N puts of consecutive keys, which loads tens
// of millions of small values in minutes) and prints the rate in keys per second. `run` has `clients` goroutines do puts of val-size bytes
// to random existing keys, or linearizable gets of one random key, for `duration`; it prints qps and p50/p99/max,
// and with --timeline writes every request's start and latency (ms), to find stalls that all clients share.
// `ready` waits until a linearizable get succeeds (a member that has recovered and has a leader) and prints how long
// that took. Output: one JSON line each.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.uber.org/zap"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "scalebench: "+format+"\n", args...)
	os.Exit(1)
}

func client(endpoint string) *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, MaxCallSendMsgSize: 4 << 20,
		LogConfig: &zap.Config{Level: zap.NewAtomicLevelAt(zap.ErrorLevel), Encoding: "json",
			OutputPaths: []string{"stderr"}, ErrorOutputPaths: []string{"stderr"}},
	})
	if err != nil {
		fail("connect: %v", err)
	}
	return cli
}

func key(i int64) string { return fmt.Sprintf("/scale/%010d", i) }

func clients(endpoint string, n int) []*clientv3.Client {
	var all []*clientv3.Client
	for i := 0; i < n; i++ {
		all = append(all, client(endpoint))
	}
	return all
}

func emit(v map[string]interface{}) {
	out, _ := json.Marshal(v)
	fmt.Println(string(out))
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: scalebench load|run|ready [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	endpoint := fs.String("endpoint", "127.0.0.1:2379", "server (host:port)")
	keys := fs.Int64("keys", 1000, "keys loaded (load) or in the database (run)")
	valSize := fs.Int("val-size", 4096, "value bytes")
	nClients := fs.Int("clients", 64, "concurrent clients")
	conns := fs.Int("conns", 8, "gRPC connections the clients share")
	duration := fs.Duration("duration", 10*time.Second, "run: how long")
	op := fs.String("op", "put", "run: put or get")
	timeout := fs.Duration("timeout", 30*time.Minute, "ready: give up after this long")
	batch := fs.Int64("batch", 1, "load: puts per request (a transaction of that many puts when above 1)")
	timeline := fs.String("timeline", "", "run: write each request's start (ms since the run began) and latency (ms) here")
	_ = fs.Parse(os.Args[2:])

	value := make([]byte, *valSize)
	rand.Read(value)
	switch os.Args[1] {
	case "load":
		clis := clients(*endpoint, *conns)
		var next int64 = -1
		started := time.Now()
		var wg sync.WaitGroup
		for c := 0; c < *nClients; c++ {
			wg.Add(1)
			cli := clis[c%len(clis)]
			go func() {
				defer wg.Done()
				for {
					i := atomic.AddInt64(&next, 1) * *batch
					if i >= *keys {
						return
					}
					var ops []clientv3.Op
					for j := i; j < i+*batch && j < *keys; j++ {
						ops = append(ops, clientv3.OpPut(key(j), string(value)))
					}
					var err error
					for attempt := 0; attempt < 5; attempt++ {
						ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
						if len(ops) == 1 {
							_, err = cli.Put(ctx, key(i), string(value))
						} else {
							_, err = cli.Txn(ctx).Then(ops...).Commit()
						}
						cancel()
						if err == nil {
							break
						}
						time.Sleep(time.Second)
					}
					if err != nil {
						fail("put %s: %v", key(i), err)
					}
				}
			}()
		}
		wg.Wait()
		took := time.Since(started).Seconds()
		emit(map[string]interface{}{"keys": *keys, "load_s": took, "puts_per_s": float64(*keys) / took,
			"mb_per_s": float64(*keys) * float64(*valSize) / 1e6 / took})

	case "run":
		clis := clients(*endpoint, *conns)
		var mu sync.Mutex
		var latencies []float64
		var starts []float64
		errors := 0
		deadline := time.Now().Add(*duration)
		started := time.Now()
		var wg sync.WaitGroup
		for c := 0; c < *nClients; c++ {
			wg.Add(1)
			cli := clis[c%len(clis)]
			rng := rand.New(rand.NewSource(int64(c) + 1))
			go func() {
				defer wg.Done()
				var mine, myStarts []float64
				failed := 0
				for time.Now().Before(deadline) {
					k := key(rng.Int63n(*keys))
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					t := time.Now()
					var err error
					if *op == "put" {
						_, err = cli.Put(ctx, k, string(value))
					} else {
						_, err = cli.Get(ctx, k)
					}
					mine = append(mine, float64(time.Since(t))/1e6)
					myStarts = append(myStarts, float64(t.Sub(started))/1e6)
					cancel()
					if err != nil {
						failed++
					}
				}
				mu.Lock()
				latencies = append(latencies, mine...)
				starts = append(starts, myStarts...)
				errors += failed
				mu.Unlock()
			}()
		}
		wg.Wait()
		took := time.Since(started).Seconds()
		if *timeline != "" {
			f, err := os.Create(*timeline)
			if err != nil {
				fail("timeline: %v", err)
			}
			w := bufio.NewWriter(f)
			for i := range latencies {
				fmt.Fprintf(w, "%.3f %.3f\n", starts[i], latencies[i])
			}
			if err := w.Flush(); err != nil {
				fail("timeline: %v", err)
			}
			f.Close()
		}
		sort.Float64s(latencies)
		q := func(p float64) float64 {
			if len(latencies) == 0 {
				return 0
			}
			return latencies[int(p*float64(len(latencies)-1))]
		}
		emit(map[string]interface{}{"op": *op, "requests": len(latencies), "errors": errors,
			"qps": float64(len(latencies)) / took, "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1)})

	case "ready":
		// The member may not listen yet (it recovers first): dial until it does.
		started := time.Now()
		var cli *clientv3.Client
		for {
			var err error
			if cli == nil {
				// The port first: a client dialling a port nobody listens on yet waits out gRPC's backoff (1 s).
				if conn, derr := net.DialTimeout("tcp", *endpoint, time.Second); derr != nil {
					if time.Since(started) > *timeout {
						fail("not ready after %v: %v", *timeout, derr)
					}
					time.Sleep(20 * time.Millisecond)
					continue
				} else {
					conn.Close()
				}
				cli, err = clientv3.New(clientv3.Config{Endpoints: []string{*endpoint}, DialTimeout: 2 * time.Second,
					LogConfig: &zap.Config{Level: zap.NewAtomicLevelAt(zap.FatalLevel), Encoding: "json",
						OutputPaths: []string{"stderr"}, ErrorOutputPaths: []string{"stderr"}}})
				if err != nil {
					cli = nil
				}
			}
			if cli != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err = cli.Get(ctx, key(0))
				cancel()
				if err == nil {
					break
				}
				// A fresh client for the next attempt: gRPC's reconnect backoff (1 s and more) would otherwise decide
				// when a member that became ready is noticed, not the member.
				cli.Close()
				cli = nil
			}
			if time.Since(started) > *timeout {
				fail("not ready after %v: %v", *timeout, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		emit(map[string]interface{}{"ready_s": time.Since(started).Seconds()})
	default:
		fail("unknown command %s", os.Args[1])
	}
}
