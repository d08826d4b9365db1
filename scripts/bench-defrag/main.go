// defragbench: fills an etcd v3 API server with free space and measures what a Defragment does to the requests
// around it, for scripts/bench-defrag.sh. Built on Debian's etcd 3.4 clientv3 (GOPATH mode).
//
//	defragbench load --endpoint 127.0.0.1:2379 --keys 1024 --rounds 16 --val-size 65536 --clients 16
//	defragbench run  --endpoint 127.0.0.1:2379 --clients 64 --duration 30s --defrag-at 10s
//
// `load` writes every key `rounds` times and compacts (physically) at the last revision: all but the newest value of
// each key is free space. `run` has `clients` goroutines alternate a put and a linearizable get of random keys for
// `duration`; at `defrag-at` it issues a Defragment and waits for it (the clients go on until it has answered, if it
// takes longer). Latencies are split by when the request started: before the Defragment was sent, while it ran.
// Output: one JSON line.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.uber.org/zap"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "defragbench: "+format+"\n", args...)
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

type sample struct {
	start   time.Duration // since the run began
	latency time.Duration
	put     bool
	failed  bool
}

type summary struct {
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	QPS      float64 `json:"qps"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
	PutMax   float64 `json:"put_max_ms"`
	GetMax   float64 `json:"get_max_ms"`
	Over100  int     `json:"over_100ms"`
}

func summarize(samples []sample, seconds float64) summary {
	var s summary
	var all []float64
	for _, x := range samples {
		ms := float64(x.latency) / 1e6
		s.Requests++
		if x.failed {
			s.Errors++
		}
		all = append(all, ms)
		if ms > 100 {
			s.Over100++
		}
		if x.put && ms > s.PutMax {
			s.PutMax = ms
		}
		if !x.put && ms > s.GetMax {
			s.GetMax = ms
		}
	}
	if len(all) == 0 {
		return s
	}
	sort.Float64s(all)
	q := func(p float64) float64 { return all[int(p*float64(len(all)-1))] }
	s.P50, s.P99, s.Max = q(0.50), q(0.99), all[len(all)-1]
	if seconds > 0 {
		s.QPS = float64(len(all)) / seconds
	}
	return s
}

// slowBurst is a tenth of a second in which requests over 100 ms completed: 64 of them at once is a stall every
// client waited for (a step, an fsync), one or two are requests that queued behind something shorter.
type slowBurst struct {
	At    string  `json:"at"` // UTC wall clock of the window's start, for the member's log and /proc/diskstats
	Count int     `json:"n"`
	Max   float64 `json:"max_ms"`
}

func slowBursts(samples []sample, began time.Time) []slowBurst {
	byWindow := map[int64]*slowBurst{}
	for _, x := range samples {
		if x.latency <= 100*time.Millisecond {
			continue
		}
		window := int64((x.start + x.latency) / (100 * time.Millisecond))
		b := byWindow[window]
		if b == nil {
			at := began.Add(time.Duration(window) * 100 * time.Millisecond).UTC()
			b = &slowBurst{At: at.Format("15:04:05.0")}
			byWindow[window] = b
		}
		b.Count++
		if ms := float64(x.latency) / 1e6; ms > b.Max {
			b.Max = ms
		}
	}
	windows := make([]int64, 0, len(byWindow))
	for w := range byWindow {
		windows = append(windows, w)
	}
	sort.Slice(windows, func(i, j int) bool { return windows[i] < windows[j] })
	out := make([]slowBurst, 0, len(windows))
	for _, w := range windows {
		out = append(out, *byWindow[w])
	}
	return out
}

func status(cli *clientv3.Client, endpoint string) (int64, int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := cli.Status(ctx, endpoint)
	if err != nil {
		fail("status: %v", err)
	}
	return st.DbSize, st.DbSizeInUse
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: defragbench load|run [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	endpoint := fs.String("endpoint", "127.0.0.1:2379", "server (host:port)")
	keys := fs.Int("keys", 1024, "load: keys; run: keys the clients write and read")
	rounds := fs.Int("rounds", 16, "load: times every key is written")
	valSize := fs.Int("val-size", 65536, "load: value bytes")
	runValSize := fs.Int("run-val-size", 256, "run: value bytes")
	clients := fs.Int("clients", 64, "concurrent clients")
	conns := fs.Int("conns", 8, "run: gRPC connections the clients share")
	duration := fs.Duration("duration", 30*time.Second, "run: how long the clients run (at least)")
	defragAt := fs.Duration("defrag-at", 10*time.Second, "run: when the Defragment (or Compact) is sent")
	txn := fs.Int("txn", 1, "load: puts per request (a txn of that many puts to distinct keys when more than 1)")
	compactLoad := fs.Bool("compact", true, "load: compact the loaded history physically (and wait for it)")
	op := fs.String("op", "defrag", "run: the operation under measure: defrag, or compact (a physical Compact at the current revision)")
	_ = fs.Parse(os.Args[2:])

	switch os.Args[1] {
	case "load":
		cli := client(*endpoint)
		defer cli.Close()
		value := make([]byte, *valSize)
		rand.Read(value)
		var next int64 = -1
		total := int64(*keys * *rounds)
		started := time.Now()
		var wg sync.WaitGroup
		var lastRev int64
		var mu sync.Mutex
		for c := 0; c < *clients; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					first := atomic.AddInt64(&next, int64(*txn)) - int64(*txn) + 1
					if first >= total {
						return
					}
					var ops []clientv3.Op
					for i := first; i < first+int64(*txn) && i < total; i++ {
						ops = append(ops, clientv3.OpPut(fmt.Sprintf("/bench/defrag/load/%06d", i%int64(*keys)), string(value)))
					}
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					var rev int64
					if len(ops) == 1 {
						r, err := cli.Do(ctx, ops[0])
						if err != nil {
							fail("put: %v", err)
						}
						rev = r.Put().Header.Revision
					} else {
						r, err := cli.Txn(ctx).Then(ops...).Commit()
						if err != nil {
							fail("txn: %v", err)
						}
						rev = r.Header.Revision
					}
					cancel()
					mu.Lock()
					if rev > lastRev {
						lastRev = rev
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		loaded := time.Since(started)
		size, _ := status(cli, *endpoint)
		if !*compactLoad {
			out, _ := json.Marshal(map[string]interface{}{
				"puts": total, "load_s": loaded.Seconds(), "mb_per_s": float64(total) * float64(*valSize) / 1e6 / loaded.Seconds(),
				"db_size_loaded": size, "last_revision": lastRev,
			})
			fmt.Println(string(out))
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := cli.Compact(ctx, lastRev)
		cancel()
		if err != nil {
			fail("compact: %v", err)
		}
		// Physical compaction goes on in the background (a physical Compact may outlast the request timeout): wait
		// until the space in use has stopped shrinking for 3 s.
		compacting := time.Now()
		last, stable := int64(-1), 0
		for stable < 3 && time.Since(compacting) < 5*time.Minute {
			time.Sleep(time.Second)
			_, inUse := status(cli, *endpoint)
			if inUse == last {
				stable++
			} else {
				last, stable = inUse, 0
			}
		}
		sizeAfter, inUse := status(cli, *endpoint)
		out, _ := json.Marshal(map[string]interface{}{
			"puts": total, "load_s": loaded.Seconds(), "mb_per_s": float64(total) * float64(*valSize) / 1e6 / loaded.Seconds(),
			"compact_s": time.Since(compacting).Seconds(), "db_size_loaded": size, "db_size_compacted": sizeAfter, "db_size_in_use_compacted": inUse,
		})
		fmt.Println(string(out))

	case "run":
		var clis []*clientv3.Client
		for i := 0; i < *conns; i++ {
			clis = append(clis, client(*endpoint))
		}
		admin := client(*endpoint)
		value := string(make([]byte, *runValSize))
		sizeBefore, inUseBefore := status(admin, *endpoint)
		var stop int32
		samples := make([][]sample, *clients)
		began := time.Now()
		var wg sync.WaitGroup
		for c := 0; c < *clients; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				cli := clis[c%len(clis)]
				rng := rand.New(rand.NewSource(int64(c)))
				for n := 0; atomic.LoadInt32(&stop) == 0; n++ {
					key := fmt.Sprintf("/bench/defrag/run/%06d", rng.Intn(*keys))
					put := n%2 == 0
					start := time.Now()
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					var err error
					if put {
						_, err = cli.Put(ctx, key, value)
					} else {
						_, err = cli.Get(ctx, key)
					}
					cancel()
					samples[c] = append(samples[c], sample{start.Sub(began), time.Since(start), put, err != nil})
				}
			}(c)
		}
		time.Sleep(*defragAt)
		defragStart := time.Since(began)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		var derr error
		switch *op {
		case "defrag":
			_, derr = admin.Defragment(ctx, *endpoint)
		case "compact":
			// Everything written so far: the load's history and the run's so far. A physical Compact answers once
			// the rows are removed.
			var r *clientv3.GetResponse
			if r, derr = admin.Get(ctx, "/bench/defrag/none"); derr == nil {
				_, derr = admin.Compact(ctx, r.Header.Revision, clientv3.WithCompactPhysical())
			}
		default:
			fail("unknown op %q", *op)
		}
		cancel()
		defragEnd := time.Since(began)
		if derr != nil {
			fail("%s: %v", *op, derr)
		}
		if rest := *duration - time.Since(began); rest > 0 {
			time.Sleep(rest)
		} else {
			time.Sleep(time.Second)
		}
		atomic.StoreInt32(&stop, 1)
		wg.Wait()
		runEnd := time.Since(began)
		var before, during, after []sample
		for _, list := range samples {
			for _, x := range list {
				switch {
				case x.start < defragStart:
					before = append(before, x)
				case x.start <= defragEnd:
					during = append(during, x)
				default:
					after = append(after, x)
				}
			}
		}
		// Sizes once the clients stopped (their own writes added to the file since).
		time.Sleep(time.Second)
		sizeAfter, inUseAfter := status(admin, *endpoint)
		out, _ := json.Marshal(map[string]interface{}{
			"defrag_ms":      float64(defragEnd-defragStart) / 1e6,
			"before":         summarize(before, defragStart.Seconds()),
			"during":         summarize(during, (defragEnd - defragStart).Seconds()),
			"after":          summarize(after, (runEnd - defragEnd).Seconds()),
			"db_size_before": sizeBefore, "db_size_in_use_before": inUseBefore,
			"db_size_after": sizeAfter, "db_size_in_use_after": inUseAfter,
			"during_slow_bursts": slowBursts(during, began),
		})
		fmt.Println(string(out))
	default:
		fail("unknown command %s", os.Args[1])
	}
}
