// kubewatch checks, with etcd's own Go client (clientv3 3.4 from Debian), the server behaviour kube-apiserver keys
// on for etcd >= 3.5.13, and the protocol details around it. One mode per run (-mode):
//
//   - order: writes, watches from old revisions and RequestProgress interleaved on one watch stream. Every progress
//     notification (revision R) a watcher receives must come after every event <= R it matches (etcd issue #15220),
//     and every RequestProgress must be answered, also for a watcher that matches no event (etcd issue #17507).
//   - auth-order: with authentication on, a create request, a progress request and a second create sent at once
//     on a raw watch stream: handled in that order (the progress answer counts the first watcher and follows its
//     events; watch ids follow the creates), although the server authorizes each create on its own.
//   - fragment: a watch with WithFragment catching up a batch larger than the server's --max-request-bytes; clientv3
//     reassembles the fragments, and a raw watch stream counts them.
//   - gzip: the KV, Watch and Lease calls with grpc's gzip compressor; the client's stats handler tells whether the
//     server's responses came compressed.
//   - alarm-activate: raises the CORRUPT alarm for the member answering (AlarmRequest ACTIVATE).
//   - downgrade: etcd 3.5's Maintenance.Downgrade (VALIDATE, ENABLE, CANCEL), through the raw gRPC method, since
//     Debian's clientv3 3.4 does not have it.
//
// It prints one JSON object of observations and exits non-zero when it cannot run. Every wait is bounded.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/stats"
)

func main() {
	endpoint := flag.String("endpoints", "127.0.0.1:2379", "")
	mode := flag.String("mode", "order", "order | auth-order | fragment | gzip | alarm-activate | downgrade")
	user := flag.String("user", "", "user:password (auth-order mode)")
	seed := flag.Int64("seed", time.Now().UnixNano(), "")
	maxRequestBytes := flag.Int("max-request-bytes", 1572864, "the server's --max-request-bytes (fragment mode)")
	target := flag.String("target", "3.4", "downgrade target version")
	flag.Parse()
	fmt.Fprintf(os.Stderr, "kubewatch mode %s seed %d\n", *mode, *seed)
	var out interface{}
	switch *mode {
	case "order":
		out = order(*endpoint, *seed)
	case "auth-order":
		out = authOrder(*endpoint, *user)
	case "fragment":
		out = fragment(*endpoint, *maxRequestBytes)
	case "gzip":
		out = gzipCalls(*endpoint)
	case "alarm-activate":
		out = alarmActivate(*endpoint)
	case "downgrade":
		out = downgrade(*endpoint, *target)
	default:
		fail(fmt.Errorf("unknown mode %q", *mode))
	}
	text, _ := json.Marshal(out)
	fmt.Println(string(text))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kubewatch:", err)
	os.Exit(2)
}

func client(endpoint string, options ...grpc.DialOption) *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{endpoint}, DialTimeout: 10 * time.Second, DialOptions: options,
		MaxCallRecvMsgSize: 64 << 20,
	})
	if err != nil {
		fail(err)
	}
	return cli
}

// MARK: order

type item struct {
	progress bool
	rev      int64
	key      string
}

type watcherLog struct {
	start   int64
	prefix  string
	mu      sync.Mutex
	items   []item
	created chan struct{}
	// progress receives the revision of each progress notification, for the rounds that wait on one.
	progress chan int64
	canceled string
}

type orderResult struct {
	Watchers         int      `json:"watchers"`
	Events           int      `json:"events"`
	ProgressSeen     int      `json:"progressSeen"`
	ProgressRequests int      `json:"progressRequests"`
	ProgressAnswered int      `json:"progressAnswered"`
	EventsExact      bool     `json:"eventsExact"`
	ProgressAhead    int      `json:"progressAhead"`
	Samples          []string `json:"samples"`
}

func order(endpoint string, seed int64) orderResult {
	rnd := rand.New(rand.NewSource(seed))
	cli := client(endpoint)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	p := fmt.Sprintf("/kubewatch-%d", seed)

	// Every write's key and revision, to know exactly what each watcher must receive.
	var mu sync.Mutex
	written := map[int64]string{}
	put := func(key, value string) int64 {
		resp, err := cli.Put(ctx, key, value)
		if err != nil {
			fail(err)
		}
		mu.Lock()
		written[resp.Header.Revision] = key
		mu.Unlock()
		return resp.Header.Revision
	}
	value := strings.Repeat("v", 1024)
	first := put(p+"/a/0", value)
	for i := 1; i < 1500; i++ {
		put(fmt.Sprintf("%s/a/%d", p, i%300), value)
	}

	// One watch stream (clientv3 puts the watches of one context on one stream).
	sctx, scancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer scancel()
	var logs []*watcherLog
	watch := func(prefix string, start int64) *watcherLog {
		w := &watcherLog{start: start, prefix: prefix, created: make(chan struct{}), progress: make(chan int64, 1024)}
		ch := cli.Watch(sctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(start), clientv3.WithCreatedNotify())
		go func() {
			for resp := range ch {
				if resp.Created {
					close(w.created)
					continue
				}
				if resp.Canceled {
					w.mu.Lock()
					w.canceled = fmt.Sprintf("canceled: %v", resp.Err())
					w.mu.Unlock()
					return
				}
				w.mu.Lock()
				if resp.IsProgressNotify() {
					w.items = append(w.items, item{progress: true, rev: resp.Header.Revision})
				}
				for _, ev := range resp.Events {
					w.items = append(w.items, item{rev: ev.Kv.ModRevision, key: string(ev.Kv.Key)})
				}
				w.mu.Unlock()
				if resp.IsProgressNotify() {
					select {
					case w.progress <- resp.Header.Revision:
					default:
					}
				}
			}
		}()
		logs = append(logs, w)
		return w
	}

	// Writers run through every round.
	var stop atomic.Bool
	var writers sync.WaitGroup
	for g := 0; g < 2; g++ {
		writers.Add(1)
		go func(g int) {
			defer writers.Done()
			for i := 0; !stop.Load(); i++ {
				put(fmt.Sprintf("%s/b/%d/%d", p, g, i%50), value)
			}
		}(g)
	}

	var r orderResult
	for round := 0; round < 12; round++ {
		mu.Lock()
		var newest int64
		for rev := range written {
			if rev > newest {
				newest = rev
			}
		}
		mu.Unlock()
		start := first + rnd.Int63n(newest-first+1)
		prefix := p + "/"
		switch round % 4 {
		case 1:
			prefix = p + "/a/"
		case 3:
			// A watcher no write matches (etcd issue #17507): its progress must still be answered.
			prefix = p + "/none/"
		}
		w := watch(prefix, start)
		select {
		case <-w.created:
		case <-time.After(60 * time.Second):
			fail(fmt.Errorf("round %d: watch not created within 60s", round))
		}
		// Drop progress notifications that arrived before this request.
		for len(w.progress) > 0 {
			<-w.progress
		}
		if err := cli.RequestProgress(sctx); err != nil {
			fail(err)
		}
		r.ProgressRequests++
		select {
		case <-w.progress:
			r.ProgressAnswered++
		case <-time.After(60 * time.Second):
			r.Samples = append(r.Samples, fmt.Sprintf("round %d: no progress notification within 60s", round))
		}
		if round%3 == 2 {
			// A burst of writes right behind the request.
			for i := 0; i < 20; i++ {
				put(fmt.Sprintf("%s/a/%d", p, i), value)
			}
		}
	}
	stop.Store(true)
	writers.Wait()

	// A last write; then each watcher's log is complete once it holds the newest revision it matches.
	final := put(p+"/z", "end")
	deadline := time.Now().Add(120 * time.Second)
	for _, w := range logs {
		var want int64
		mu.Lock()
		for rev, key := range written {
			if rev >= w.start && strings.HasPrefix(key, w.prefix) && rev > want {
				want = rev
			}
		}
		mu.Unlock()
		for want > 0 {
			w.mu.Lock()
			done := len(w.items) > 0 && w.items[len(w.items)-1].rev >= want || w.canceled != ""
			w.mu.Unlock()
			if done {
				break
			}
			if time.Now().After(deadline) {
				r.Samples = append(r.Samples, fmt.Sprintf("watch of %s from %d never saw revision %d", w.prefix, w.start, want))
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	scancel()

	r.Watchers = len(logs)
	r.EventsExact = true
	mu.Lock()
	defer mu.Unlock()
	for i, w := range logs {
		w.mu.Lock()
		if w.canceled != "" {
			r.EventsExact = false
			r.Samples = append(r.Samples, fmt.Sprintf("watcher %d %s", i, w.canceled))
		}
		var expected []int64
		for rev := int64(first); rev <= final; rev++ {
			if key, ok := written[rev]; ok && rev >= w.start && strings.HasPrefix(key, w.prefix) {
				expected = append(expected, rev)
			}
		}
		var got []int64
		for _, it := range w.items {
			if it.progress {
				r.ProgressSeen++
				// Every expected event <= R must already be in `got`.
				missing := 0
				for _, rev := range expected {
					if rev > it.rev {
						break
					}
					if len(got) == 0 || rev > got[len(got)-1] {
						missing++
					}
				}
				if missing > 0 {
					r.ProgressAhead++
					if len(r.Samples) < 10 {
						last := int64(0)
						if len(got) > 0 {
							last = got[len(got)-1]
						}
						r.Samples = append(r.Samples, fmt.Sprintf(
							"watcher %d (%s from %d): progress %d after event %d, %d events <= %d not yet sent",
							i, w.prefix, w.start, it.rev, last, missing, it.rev))
					}
				}
				continue
			}
			got = append(got, it.rev)
			r.Events++
		}
		if w.prefix != p+"/none/" && !equal(got, expected) {
			r.EventsExact = false
			r.Samples = append(r.Samples, fmt.Sprintf("watcher %d (%s from %d): %d events, expected %d",
				i, w.prefix, w.start, len(got), len(expected)))
		}
		w.mu.Unlock()
	}
	return r
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// MARK: fragment

type fragmentResult struct {
	Events           int   `json:"events"`
	Responses        int   `json:"responses"`
	ReassembledOK    bool  `json:"reassembledOK"`
	RawResponses     int   `json:"rawResponses"`
	RawFragments     int   `json:"rawFragments"`
	RawEvents        int   `json:"rawEvents"`
	RawLargest       int   `json:"rawLargestResponse"`
	RawUnfragmented  int   `json:"rawResponsesWithoutFragment"`
	RawUnfragLargest int   `json:"rawLargestWithoutFragment"`
	Start            int64 `json:"-"`
}

func fragment(endpoint string, maxRequestBytes int) fragmentResult {
	cli := client(endpoint)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	p := fmt.Sprintf("/kubewatch-fragment-%d", time.Now().UnixNano())
	// 4 times --max-request-bytes of events, in values of a twentieth of it.
	value := strings.Repeat("f", maxRequestBytes/20)
	var first, last int64
	for i := 0; i < 80; i++ {
		resp, err := cli.Put(ctx, fmt.Sprintf("%s/%03d", p, i), value)
		if err != nil {
			fail(err)
		}
		if i == 0 {
			first = resp.Header.Revision
		}
		last = resp.Header.Revision
	}
	var r fragmentResult
	r.Start = first
	// clientv3 reassembles: one WatchResponse with every event, whatever the fragments were.
	wctx, wcancel := context.WithCancel(ctx)
	ch := cli.Watch(wctx, p+"/", clientv3.WithPrefix(), clientv3.WithRev(first), clientv3.WithFragment())
	var seen int64
	for resp := range ch {
		if resp.Err() != nil {
			fail(resp.Err())
		}
		r.Responses++
		for _, ev := range resp.Events {
			r.Events++
			seen = ev.Kv.ModRevision
		}
		if seen >= last {
			break
		}
	}
	wcancel()
	r.ReassembledOK = r.Events == 80 && seen == last

	// A raw stream shows the fragments themselves, then the same watch without fragment for contrast.
	for _, withFragment := range []bool{true, false} {
		stream, err := pb.NewWatchClient(cli.ActiveConnection()).Watch(ctx, grpc.MaxCallRecvMsgSize(64<<20))
		if err != nil {
			fail(err)
		}
		create := &pb.WatchCreateRequest{Key: []byte(p + "/"), RangeEnd: []byte(p + "0"), StartRevision: first,
			Fragment: withFragment}
		if err := stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: create}}); err != nil {
			fail(err)
		}
		events := 0
		for events < 80 {
			resp, err := stream.Recv()
			if err != nil {
				fail(err)
			}
			if resp.Created {
				continue
			}
			events += len(resp.Events)
			if withFragment {
				r.RawResponses++
				r.RawEvents += len(resp.Events)
				if resp.Fragment {
					r.RawFragments++
				}
				if resp.Size() > r.RawLargest {
					r.RawLargest = resp.Size()
				}
			} else {
				r.RawUnfragmented++
				if resp.Size() > r.RawUnfragLargest {
					r.RawUnfragLargest = resp.Size()
				}
			}
		}
		_ = stream.CloseSend()
	}
	return r
}

// MARK: gzip

type wireCounter struct {
	compressedIn int64 // responses whose wire length was below their length: they came compressed
	plainIn      int64
}

func (c *wireCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (c *wireCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if in, ok := s.(*stats.InPayload); ok {
		if in.WireLength < in.Length {
			atomic.AddInt64(&c.compressedIn, 1)
		} else {
			atomic.AddInt64(&c.plainIn, 1)
		}
	}
}
func (c *wireCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (c *wireCounter) HandleConn(context.Context, stats.ConnStats)                       {}

type gzipResult struct {
	PutOK          bool   `json:"putOK"`
	GetValueOK     bool   `json:"getValueOK"`
	WatchOK        bool   `json:"watchOK"`
	LeaseOK        bool   `json:"leaseOK"`
	CompressedIn   int64  `json:"compressedResponses"`
	UncompressedIn int64  `json:"uncompressedResponses"`
	Error          string `json:"error"`
}

func gzipCalls(endpoint string) gzipResult {
	counter := &wireCounter{}
	cli := client(endpoint, grpc.WithDefaultCallOptions(grpc.UseCompressor(gzip.Name)), grpc.WithStatsHandler(counter))
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var r gzipResult
	key := fmt.Sprintf("/kubewatch-gzip-%d", time.Now().UnixNano())
	value := strings.Repeat("compressible ", 20000)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	ch := cli.Watch(wctx, key, clientv3.WithCreatedNotify())
	<-ch
	put, err := cli.Put(ctx, key, value)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.PutOK = true
	get, err := cli.Get(ctx, key)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.GetValueOK = len(get.Kvs) == 1 && string(get.Kvs[0].Value) == value
	select {
	case resp := <-ch:
		r.WatchOK = len(resp.Events) == 1 && string(resp.Events[0].Kv.Value) == value &&
			resp.Events[0].Kv.ModRevision == put.Header.Revision
	case <-time.After(30 * time.Second):
	}
	if lease, err := cli.Grant(ctx, 60); err == nil {
		_, err = cli.KeepAliveOnce(ctx, lease.ID)
		r.LeaseOK = err == nil
	}
	r.CompressedIn = atomic.LoadInt64(&counter.compressedIn)
	r.UncompressedIn = atomic.LoadInt64(&counter.plainIn)
	return r
}

// MARK: alarms

type alarmResult struct {
	MemberID uint64 `json:"memberID"`
	Alarms   int    `json:"alarms"`
}

func alarmActivate(endpoint string) alarmResult {
	cli := client(endpoint)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	status, err := cli.Status(ctx, endpoint)
	if err != nil {
		fail(err)
	}
	resp, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Alarm(ctx, &pb.AlarmRequest{
		Action: pb.AlarmRequest_ACTIVATE, MemberID: status.Header.MemberId, Alarm: pb.AlarmType_CORRUPT})
	if err != nil {
		fail(err)
	}
	return alarmResult{MemberID: status.Header.MemberId, Alarms: len(resp.Alarms)}
}

// MARK: downgrade

// etcd 3.5's DowngradeRequest and DowngradeResponse (rpc.proto), declared here because Debian's etcdserverpb is 3.4's.
type downgradeRequest struct {
	Action  int32  `protobuf:"varint,1,opt,name=action,proto3"`
	Version string `protobuf:"bytes,2,opt,name=version,proto3"`
}

func (m *downgradeRequest) Reset()         { *m = downgradeRequest{} }
func (m *downgradeRequest) String() string { return fmt.Sprintf("%+v", *m) }
func (*downgradeRequest) ProtoMessage()    {}

type downgradeResponse struct {
	Header  *pb.ResponseHeader `protobuf:"bytes,1,opt,name=header,proto3"`
	Version string             `protobuf:"bytes,2,opt,name=version,proto3"`
}

func (m *downgradeResponse) Reset()         { *m = downgradeResponse{} }
func (m *downgradeResponse) String() string { return fmt.Sprintf("%+v", *m) }
func (*downgradeResponse) ProtoMessage()    {}

// One step of the downgrade script: the action, and what came back ("ok <version>" or the error as grpc-go shows it).
type downgradeStep struct {
	Action string `json:"action"`
	Target string `json:"target"`
	Result string `json:"result"`
}

func downgrade(endpoint, target string) []downgradeStep {
	cli := client(endpoint)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	actions := map[string]int32{"validate": 0, "enable": 1, "cancel": 2}
	call := func(action, version string) downgradeStep {
		var resp downgradeResponse
		err := cli.ActiveConnection().Invoke(ctx, "/etcdserverpb.Maintenance/Downgrade",
			&downgradeRequest{Action: actions[action], Version: version}, &resp)
		step := downgradeStep{Action: action, Target: version}
		if err != nil {
			step.Result = err.Error()
		} else {
			step.Result = "ok " + resp.Version
		}
		return step
	}
	return []downgradeStep{
		call("cancel", target),
		call("validate", "3.3"),
		call("validate", "3.6"),
		call("validate", "bad"),
		call("validate", target),
		call("enable", target),
		call("validate", target),
		call("enable", target),
		call("cancel", target),
		call("cancel", target),
	}
}

// MARK: auth-order

type authOrderResult struct {
	Responses       []string `json:"responses"`
	EventsBefore    int      `json:"eventsBeforeProgress"`
	ProgressAfterID bool     `json:"progressAfterCreated"`
}

func authOrder(endpoint, user string) authOrderResult {
	parts := strings.SplitN(user, ":", 2)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 10 * time.Second,
		Username: parts[0], Password: parts[1]})
	if err != nil {
		fail(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := fmt.Sprintf("/kubewatch-auth-%d", time.Now().UnixNano())
	var first int64
	for i := 0; i < 300; i++ {
		resp, err := cli.Put(ctx, fmt.Sprintf("%s/%d", p, i), strings.Repeat("a", 512))
		if err != nil {
			fail(err)
		}
		if i == 0 {
			first = resp.Header.Revision
		}
	}
	stream, err := pb.NewWatchClient(cli.ActiveConnection()).Watch(ctx)
	if err != nil {
		fail(err)
	}
	create := func(start int64) *pb.WatchRequest {
		return &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
			Key: []byte(p + "/"), RangeEnd: []byte(p + "0"), StartRevision: start}}}
	}
	progress := &pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}}
	for _, req := range []*pb.WatchRequest{create(first), progress, create(0)} {
		if err := stream.Send(req); err != nil {
			fail(err)
		}
	}
	var r authOrderResult
	created := 0
	for {
		resp, err := stream.Recv()
		if err != nil {
			fail(err)
		}
		switch {
		case resp.Created:
			created++
			r.Responses = append(r.Responses, fmt.Sprintf("created %d", resp.WatchId))
		case len(resp.Events) > 0:
			r.EventsBefore += len(resp.Events)
		case resp.WatchId == -1:
			r.Responses = append(r.Responses, "progress -1")
			r.ProgressAfterID = created >= 1
		}
		if len(r.Responses) == 3 {
			return r
		}
	}
}
