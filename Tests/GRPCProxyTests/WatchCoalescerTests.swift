import EtcdProto
import Foundation
import GRPCProxy
import Testing

/// The coalescing rules of etcd's grpc-proxy, on the state machine alone.
@Suite struct WatchCoalescerTests {
    func create(
        _ key: String, end: String = "", from revision: Int64 = 0, prevKV: Bool = false,
        progress: Bool = false, noPut: Bool = false
    ) -> Etcdserverpb_WatchCreateRequest {
        var request = Etcdserverpb_WatchCreateRequest()
        request.key = Data(key.utf8)
        request.rangeEnd = Data(end.utf8)
        request.startRevision = revision
        request.prevKv = prevKV
        request.progressNotify = progress
        if noPut { request.filters = [.noput] }
        return request
    }

    func response(revision: Int64, created: Bool = false, events: [(String, Int64)] = []) -> Etcdserverpb_WatchResponse
    {
        var response = Etcdserverpb_WatchResponse()
        response.header.revision = revision
        response.created = created
        response.events = events.map { key, modRevision in
            var event = Mvccpb_Event()
            event.type = .put
            event.kv.key = Data(key.utf8)
            event.kv.modRevision = modRevision
            event.prevKv.key = Data(key.utf8)
            return event
        }
        return response
    }

    func sends(_ actions: [WatchCoalescer.Action]) -> [(stream: Int, response: Etcdserverpb_WatchResponse)] {
        actions.compactMap { if case .send(let stream, let response) = $0 { (stream, response) } else { nil } }
    }

    func opened(_ actions: [WatchCoalescer.Action]) -> [Int] {
        actions.compactMap { if case .openUpstream(let number, _, _, _) = $0 { number } else { nil } }
    }

    @Test func watchersOfOneKeyShareOneUpstreamWatch() {
        var state = WatchCoalescer()
        let first = state.onCreate(stream: 1, create("foo"))
        #expect(opened(first) == [1])
        // A second watcher before the upstream answered joins the same broadcast and gets the member's created.
        #expect(state.onCreate(stream: 2, create("foo")).isEmpty)
        let created = sends(state.onUpstream(broadcast: 1, response(revision: 10, created: true)))
        #expect(created.map(\.stream) == [1, 2] && created.allSatisfy { $0.response.created })
        // A third after it answered joins at once; its created is made by the proxy at the broadcast's revision.
        let third = state.onCreate(stream: 3, create("foo"))
        #expect(opened(third).isEmpty)
        #expect(sends(third).first?.response.created == true && sends(third).first?.response.header.revision == 10)
        #expect(state.upstreamCount == 1 && state.watcherCount == 3 && state.coalescingWatchers == 2)
        // One event fans out to all three, each under its own stream's watch id (0).
        let fanout = sends(state.onUpstream(broadcast: 1, response(revision: 11, events: [("foo", 11)])))
        #expect(fanout.map(\.stream) == [1, 2, 3])
        #expect(fanout.allSatisfy { $0.response.watchID == 0 && $0.response.events.count == 1 })
        // Previous values only for those who asked.
        #expect(fanout.allSatisfy { !$0.response.events[0].hasPrevKv })
        // The last watcher leaving cancels the upstream watch.
        #expect(sends(state.onCancel(stream: 1, watchID: 0)).first?.response.canceled == true)
        _ = state.onStreamClosed(stream: 2)
        let last = state.onCancel(stream: 3, watchID: 0)
        #expect(last.contains(.cancelUpstream(broadcast: 1)))
        #expect(state.upstreamCount == 0 && state.watcherCount == 0)
    }

    @Test func aWatcherFromAnOlderRevisionGetsItsOwnUpstreamUntilItCatchesUp() {
        var state = WatchCoalescer()
        _ = state.onCreate(stream: 1, create("k"))
        _ = state.onUpstream(broadcast: 1, response(revision: 20, created: true))
        // Joining would skip revisions 5...20: a new upstream watch from 5.
        let old = state.onCreate(stream: 2, create("k", from: 5))
        #expect(opened(old) == [2])
        _ = state.onUpstream(broadcast: 2, response(revision: 20, created: true))
        // Its history up to 20 arrives; it has caught up with broadcast 1, so it joins it and its upstream goes.
        let history = state.onUpstream(
            broadcast: 2, response(revision: 21, events: [("k", 8), ("k", 20), ("k", 21)]))
        #expect(sends(history).first?.response.events.count == 3)
        #expect(history.contains(.cancelUpstream(broadcast: 2)))
        #expect(state.upstreamCount == 1)
        // Broadcast 1 now delivers to both; nothing is repeated to watcher 2.
        let next = sends(state.onUpstream(broadcast: 1, response(revision: 22, events: [("k", 21), ("k", 22)])))
        #expect(next.first { $0.stream == 2 }?.response.events.map(\.kv.modRevision) == [22])
        #expect(next.first { $0.stream == 1 }?.response.events.map(\.kv.modRevision) == [21, 22])
    }

    @Test func filtersProgressAndInvalidRanges() {
        var state = WatchCoalescer()
        _ = state.onCreate(stream: 1, create("a", end: "z", noPut: true))
        _ = state.onCreate(stream: 1, create("a", end: "z", progress: true))
        _ = state.onUpstream(broadcast: 1, response(revision: 3, created: true))
        // NOPUT drops the put; the response would be empty, so it is not sent at all.
        let put = sends(state.onUpstream(broadcast: 1, response(revision: 4, events: [("b", 4)])))
        #expect(put.map(\.response.watchID) == [1])
        // A progress notification goes only to the watcher that asked.
        let progress = sends(state.onUpstream(broadcast: 1, response(revision: 9)))
        #expect(progress.map(\.response.watchID) == [1])
        // An end before the key is refused as etcd's proxy refuses it.
        let refused = sends(state.onCreate(stream: 2, create("z", end: "a")))
        #expect(refused.first?.response.watchID == -1 && refused.first?.response.canceled == true)
    }

    @Test func anUpstreamCancelEndsItsWatchers() {
        var state = WatchCoalescer()
        _ = state.onCreate(stream: 1, create("x", from: 2))
        var compacted = Etcdserverpb_WatchResponse()
        compacted.header.revision = 50
        compacted.canceled = true
        compacted.compactRevision = 40
        let told = sends(state.onUpstream(broadcast: 1, compacted))
        #expect(told.first?.response.compactRevision == 40 && told.first?.response.canceled == true)
        #expect(state.upstreamCount == 0 && state.watcherCount == 0)
    }

    @Test func aResumedUpstreamDoesNotAnnounceItselfAgain() {
        var state = WatchCoalescer()
        _ = state.onCreate(stream: 1, create("r"))
        _ = state.onUpstream(broadcast: 1, response(revision: 7, created: true))
        _ = state.onUpstream(broadcast: 1, response(revision: 8, events: [("r", 8)]))
        #expect(state.resumeRevision(broadcast: 1) == 9)
        #expect(state.onUpstream(broadcast: 1, response(revision: 12, created: true)).isEmpty)
    }
}
