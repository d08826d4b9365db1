// kubestorage does, with etcd's own Go client (clientv3 3.4), what kube-apiserver's storage layer (k8s.io/apiserver
// storage/etcd3) does: creates guarded by mod_revision 0, optimistic updates as a Txn comparing mod_revision with a
// read on failure, paginated lists at a fixed revision with a continuation key, watches from a resource version with
// prev_kv and progress notifications plus RequestProgress, compaction through the compact-revision key, and
// objects bound to leases. It prints one JSON object of observations; the Swift test runs it against Quorum and
// against real etcd and compares them. Every loop is bounded; it exits non-zero on a protocol violation.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/mvcc/mvccpb"
)

type result struct {
	Creates            int      `json:"creates"`
	CreateConflicts    int      `json:"createConflicts"`
	Updates            int      `json:"updates"`
	UpdateRetries      int      `json:"updateRetriesPositive"`
	FinalCounter       int      `json:"finalCounter"`
	ListPages          int      `json:"listPages"`
	ListedKeys         int      `json:"listedKeys"`
	ListConsistent     bool     `json:"listConsistent"`
	ListCount          int64    `json:"listCount"`
	WatchEvents        int      `json:"watchEvents"`
	WatchPrevKVOK      bool     `json:"watchPrevKVOK"`
	WatchOrdered       bool     `json:"watchOrdered"`
	ProgressSeen       bool     `json:"progressSeen"`
	ProgressNotAhead   bool     `json:"progressNotAhead"`
	CompactedTo        bool     `json:"compactedTo"`
	CompactedReadError string   `json:"compactedReadError"`
	CompactRaceLost    bool     `json:"compactRaceLost"`
	LeaseDeleteEvent   bool     `json:"leaseDeleteEvent"`
	Errors             []string `json:"errors"`
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "")
	prefix := flag.String("prefix", "/registry", "")
	flag.Parse()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{*endpoints}, DialTimeout: 5 * time.Second})
	if err != nil {
		fail(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var r result
	p := *prefix

	// Creates: kube's Create is a Txn "If ModRevision(key) == 0 Then Put" (already exists otherwise).
	for i := 0; i < 20; i++ {
		key := fmt.Sprintf("%s/pods/ns/pod-%02d", p, i)
		for attempt := 0; attempt < 2; attempt++ {
			resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", 0)).
				Then(clientv3.OpPut(key, `{"v":0}`)).Commit()
			if err != nil {
				fail(err)
			}
			if resp.Succeeded {
				r.Creates++
			} else {
				r.CreateConflicts++
			}
		}
	}

	// GuaranteedUpdate: read, then "If ModRevision == read's Then Put Else Get", retried with the fresh object,
	// from several goroutines at once; the counter must end at exactly the number of successful updates.
	counter := p + "/configmaps/ns/counter"
	if _, err := cli.Put(ctx, counter, "0"); err != nil {
		fail(err)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			get, err := cli.Get(ctx, counter)
			if err != nil {
				fail(err)
			}
			kv := get.Kvs[0]
			for n := 0; n < 25; n++ {
				for {
					v, _ := strconv.Atoi(string(kv.Value))
					resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(counter), "=", kv.ModRevision)).
						Then(clientv3.OpPut(counter, strconv.Itoa(v+1))).Else(clientv3.OpGet(counter)).Commit()
					if err != nil {
						fail(err)
					}
					if resp.Succeeded {
						mu.Lock()
						r.Updates++
						mu.Unlock()
						kv = &mvccpb.KeyValue{Value: []byte(strconv.Itoa(v + 1)), ModRevision: resp.Header.Revision}
						break
					}
					mu.Lock()
					r.UpdateRetries = 1
					mu.Unlock()
					kv = resp.Responses[0].GetResponseRange().Kvs[0]
				}
			}
		}()
	}
	wg.Wait()
	final, err := cli.Get(ctx, counter)
	if err != nil {
		fail(err)
	}
	r.FinalCounter, _ = strconv.Atoi(string(final.Kvs[0].Value))

	// Paginated list at a fixed revision (the first page's), with a count, while writes go on.
	pods := p + "/pods/"
	stop := make(chan struct{})
	var writer sync.WaitGroup
	writer.Add(1)
	go func() {
		defer writer.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			cli.Put(ctx, fmt.Sprintf("%s/pods/ns/pod-%02d", p, i%20), fmt.Sprintf(`{"v":%d}`, i))
		}
	}()
	end := clientv3.GetPrefixRangeEnd(pods)
	first, err := cli.Get(ctx, pods, clientv3.WithRange(end), clientv3.WithLimit(6))
	if err != nil {
		fail(err)
	}
	rev := first.Header.Revision
	r.ListCount = first.Count
	listed := len(first.Kvs)
	r.ListPages = 1
	r.ListConsistent = true
	next := first
	for next.More {
		from := string(next.Kvs[len(next.Kvs)-1].Key) + "\x00"
		next, err = cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(6), clientv3.WithRev(rev))
		if err != nil {
			fail(err)
		}
		r.ListPages++
		listed += len(next.Kvs)
		for _, kv := range next.Kvs {
			if kv.ModRevision > rev {
				r.ListConsistent = false
			}
		}
	}
	r.ListedKeys = listed
	close(stop)
	writer.Wait()

	// Watch from a resource version with prev_kv and progress notifications; RequestProgress answered after the
	// events delivered so far, never ahead of them.
	start, err := cli.Get(ctx, counter)
	if err != nil {
		fail(err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	watch := cli.Watch(wctx, pods, clientv3.WithPrefix(), clientv3.WithRev(start.Header.Revision+1),
		clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	for i := 0; i < 30; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("%s/pods/ns/pod-%02d", p, i%20), fmt.Sprintf(`{"w":%d}`, i)); err != nil {
			fail(err)
		}
	}
	last, _ := cli.Get(ctx, counter)
	target := last.Header.Revision
	r.WatchPrevKVOK = true
	r.WatchOrdered = true
	r.ProgressNotAhead = true
	var lastEvent int64
	deadline := time.After(30 * time.Second)
	requested := false
loop:
	for {
		select {
		case resp, ok := <-watch:
			if !ok {
				r.Errors = append(r.Errors, "watch channel closed")
				break loop
			}
			if err := resp.Err(); err != nil {
				r.Errors = append(r.Errors, err.Error())
				break loop
			}
			if resp.IsProgressNotify() {
				r.ProgressSeen = true
				if resp.Header.Revision < lastEvent {
					r.ProgressNotAhead = false
				}
				if requested && resp.Header.Revision >= target {
					break loop
				}
				continue
			}
			for _, ev := range resp.Events {
				r.WatchEvents++
				if ev.Kv.ModRevision <= lastEvent {
					r.WatchOrdered = false
				}
				lastEvent = ev.Kv.ModRevision
				if ev.PrevKv == nil {
					r.WatchPrevKVOK = false
				}
			}
			if lastEvent >= target && !requested {
				requested = true
				if err := cli.RequestProgress(ctx); err != nil {
					r.Errors = append(r.Errors, "RequestProgress: "+err.Error())
					break loop
				}
			}
		case <-deadline:
			r.Errors = append(r.Errors, "watch: no progress notification after RequestProgress within 30s")
			break loop
		}
	}
	wcancel()

	// Compaction as kube-apiserver's compactor does it: a Txn on the compact-revision key's version, then Compact.
	compactKey := "compact_rev_key"
	cur, _ := cli.Get(ctx, compactKey)
	version := int64(0)
	if len(cur.Kvs) > 0 {
		version = cur.Kvs[0].Version
	}
	compactTo := start.Header.Revision
	txn, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Version(compactKey), "=", version)).
		Then(clientv3.OpPut(compactKey, strconv.FormatInt(compactTo, 10))).Else(clientv3.OpGet(compactKey)).Commit()
	if err != nil {
		fail(err)
	}
	if txn.Succeeded {
		if _, err := cli.Compact(ctx, compactTo, clientv3.WithCompactPhysical()); err != nil {
			fail(err)
		}
		r.CompactedTo = true
	}
	// A second compactor that read the old version loses the race, as kube's does.
	lost, _ := cli.Txn(ctx).If(clientv3.Compare(clientv3.Version(compactKey), "=", version)).
		Then(clientv3.OpPut(compactKey, "x")).Commit()
	r.CompactRaceLost = lost != nil && !lost.Succeeded
	if _, err := cli.Get(ctx, pods, clientv3.WithPrefix(), clientv3.WithRev(compactTo-1)); err != nil {
		r.CompactedReadError = err.Error()
	}

	// An object bound to a lease (kube's events): revoking the lease deletes it, and a watch sees the delete.
	lease, err := cli.Grant(ctx, 60)
	if err != nil {
		fail(err)
	}
	event := p + "/events/ns/e1"
	if _, err := cli.Put(ctx, event, "{}", clientv3.WithLease(lease.ID)); err != nil {
		fail(err)
	}
	got, _ := cli.Get(ctx, event)
	ew := cli.Watch(ctx, event, clientv3.WithRev(got.Header.Revision+1))
	if _, err := cli.Revoke(ctx, lease.ID); err != nil {
		fail(err)
	}
	select {
	case resp := <-ew:
		for _, ev := range resp.Events {
			if ev.Type == mvccpb.DELETE {
				r.LeaseDeleteEvent = true
			}
		}
	case <-time.After(10 * time.Second):
		r.Errors = append(r.Errors, "no delete event for the lease's key")
	}
	sort.Strings(r.Errors)
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kubestorage:", err)
	os.Exit(2)
}
