import EtcdProto
import Foundation
import TestSupport
import Testing

@testable import MVCC

/// Drives a hub the way the member does: every committed write is published; catch-up runs when asked.
final class WatchFixture {
    let f: StoreFixture
    let hub: WatchHub

    init() throws {
        f = try StoreFixture()
        let store = f.store
        hub = WatchHub(store: store, currentRevision: store.revisions.current) { revision in
            var header = Etcdserverpb_ResponseHeader()
            header.revision = revision
            return header
        }
    }

    func put(_ key: String, _ value: String) throws {
        let (revision, events) = try f.write { _ = try $0.put(key: k(key), value: k(value), lease: 0) }
        hub.publish(events, revision: revision)
    }

    func delete(_ key: String) throws {
        let (revision, events) = try f.write { _ = try $0.deleteRange(.single(k(key))) }
        hub.publish(events, revision: revision)
    }

    func catchUpFully() throws {
        var rounds = 0
        while try hub.catchUp(limit: 3) {
            rounds += 1
            if rounds > 1000 { Issue.record("catch-up does not converge"); return }
        }
    }
}

/// Reads everything queued on a stream without waiting; responses the hub queued in wire form are decoded, so
/// every test below also checks the encoding of the streams that write to the wire (the default).
func drain(_ stream: WatchStream) -> [Etcdserverpb_WatchResponse] {
    stream.state.withLock { s in
        defer { s.queue.removeAll() }
        return s.queue.compactMap { item in
            guard let message = item.message else {
                Issue.record("a queued response in wire form does not decode")
                return nil
            }
            return message
        }
    }
}

func events(_ responses: [Etcdserverpb_WatchResponse], id: Int64) -> [Mvccpb_Event] {
    responses.filter { $0.watchID == id }.flatMap(\.events)
}

@Suite struct WatchHubTests {
    @Test func liveEventsArriveInOrderAfterTheCreatedResponse() throws {
        let w = try WatchFixture()
        let stream = WatchStream()
        let id = try #require(w.hub.watch(WatchRequestSpec(range: .single(k("a"))), on: stream))
        #expect(id == 0)  // etcd numbers a stream's watchers from 0
        try w.put("a", "1")
        try w.put("b", "x")
        try w.delete("a")
        let responses = drain(stream)
        #expect(responses.first?.created == true)
        let seen = events(responses, id: id)
        #expect(seen.map(\.type) == [.put, .delete])
        #expect(seen.map(\.kv.modRevision) == [2, 4])
        #expect(!seen[1].hasPrevKv)  // prev_kv only when asked for
    }

    @Test func historicalWatchReplaysThenContinuesLiveWithoutGapsOrDuplicates() throws {
        let w = try WatchFixture()
        for i in 1...10 { try w.put("p/\(i % 3)", "\(i)") }  // revisions 2...11
        try w.put("q", "other")  // 12
        let stream = WatchStream()
        let prefix = KeyRange(key: k("p/"), rangeEnd: KeyRange.prefixEnd(k("p/")))
        let id = try #require(w.hub.watch(WatchRequestSpec(range: prefix, startRevision: 4, prevKV: true), on: stream))
        try w.put("p/new", "live")  // 13, published while the watcher is still behind
        try w.catchUpFully()
        try w.put("p/after", "live")  // 14
        let seen = events(drain(stream), id: id)
        #expect(seen.map(\.kv.modRevision) == [4, 5, 6, 7, 8, 9, 10, 11, 13, 14])
        #expect(!seen[0].hasPrevKv)  // revision 4 created p/0
        #expect(seen[1].prevKv.value == k("1"))  // revision 5 overwrote p/1, first written with value 1
    }

    @Test func slowStreamFallsBehindAndCatchesUpWithoutLoss() throws {
        let w = try WatchFixture()
        let stream = WatchStream(capacity: 2)
        let id = try #require(w.hub.watch(WatchRequestSpec(range: .from(k("a"))), on: stream))
        var received: [Mvccpb_Event] = []
        for i in 0..<50 {
            try w.put("k\(i)", "v")
            if i % 7 == 0 {
                received += events(drain(stream), id: id)
                try w.hub.catchUp(limit: 5)
            }
        }
        // The writer never blocked; now let the client read everything.
        for _ in 0..<100 {
            received += events(drain(stream), id: id)
            if try !w.hub.catchUp(limit: 5) { break }
        }
        received += events(drain(stream), id: id)
        #expect(received.map(\.kv.modRevision) == Array(2...51))
        #expect(w.hub.unsyncedCount == 0)
    }

    @Test func compactedStartRevisionCancelsWithTheCompactRevision() throws {
        let w = try WatchFixture()
        for i in 1...5 { try w.put("a", "\(i)") }
        try w.f.backend.beginBatch()
        try w.f.store.scheduleCompaction(5)
        try w.f.backend.commitBatch()
        let stream = WatchStream()
        let id = try #require(w.hub.watch(WatchRequestSpec(range: .single(k("a")), startRevision: 2), on: stream))
        try w.catchUpFully()
        let responses = drain(stream).filter { $0.watchID == id }
        let cancel = try #require(responses.last)
        #expect(cancel.canceled && cancel.compactRevision == 5)
        #expect(w.hub.watcherCount == 0)
    }

    @Test func filtersAndCancellation() throws {
        let w = try WatchFixture()
        let stream = WatchStream()
        let noPut = try #require(w.hub.watch(WatchRequestSpec(range: .single(k("a")), filterPut: true), on: stream))
        let noDelete = try #require(
            w.hub.watch(WatchRequestSpec(range: .single(k("a")), filterDelete: true), on: stream))
        #expect(noPut != noDelete)
        try w.put("a", "1")
        try w.delete("a")
        let responses = drain(stream)
        #expect(events(responses, id: noPut).map(\.type) == [.delete])
        #expect(events(responses, id: noDelete).map(\.type) == [.put])
        #expect(w.hub.cancel(watchID: noPut, on: stream))
        #expect(!w.hub.cancel(watchID: noPut, on: stream))
        try w.put("a", "2")
        #expect(events(drain(stream), id: noPut).isEmpty)
    }

    @Test func duplicateClientChosenIDIsRefused() throws {
        let w = try WatchFixture()
        let stream = WatchStream()
        #expect(w.hub.watch(WatchRequestSpec(range: .single(k("a")), requestedID: 7), on: stream) == 7)
        #expect(w.hub.watch(WatchRequestSpec(range: .single(k("a")), requestedID: 7), on: stream) == nil)
        let refusal = drain(stream).last!
        #expect(refusal.canceled && refusal.cancelReason.contains("duplicate watch ID"))
    }

    @Test func progressRequestWaitsUntilTheStreamIsCaughtUp() throws {
        let w = try WatchFixture()
        for i in 1...5 { try w.put("a", "\(i)") }
        let stream = WatchStream()
        w.hub.watch(WatchRequestSpec(range: .single(k("a")), startRevision: 2), on: stream)
        w.hub.requestProgress(on: stream)
        #expect(!drain(stream).contains { $0.watchID == -1 })
        try w.catchUpFully()
        let progress = drain(stream).filter { $0.watchID == -1 }
        #expect(progress.count == 1 && progress[0].header.revision == 6 && progress[0].events.isEmpty)
    }
}

@Suite struct LessorTests {
    let second: Int64 = 1_000_000_000

    @Test func onlyThePrimaryExpiresAndPromotionRestartsDeadlines() {
        var lessor = Lessor(minTTL: 2)
        _ = lessor.grant(id: 1, ttl: 5, now: 0)
        #expect(lessor.expired(now: 100 * second).isEmpty)  // followers never expire leases
        lessor.promote(now: 10 * second)
        #expect(lessor.expired(now: 14 * second).isEmpty)
        #expect(lessor.expired(now: 15 * second) == [1])
        // A new leader extends: the deadline restarts at promotion.
        lessor.demote()
        lessor.promote(now: 20 * second)
        #expect(lessor.expired(now: 24 * second).isEmpty)
        #expect(lessor.remaining(id: 1, now: 22 * second) == 3)
    }

    @Test func renewalAndMinimumTTL() {
        var lessor = Lessor(minTTL: 2)
        lessor.promote(now: 0)
        let lease = lessor.grant(id: 9, ttl: 1, now: 0)
        #expect(lease.ttl == 2)  // raised to the minimum
        #expect(lessor.renew(id: 9, now: 1 * second) == .success(2))
        #expect(lessor.expired(now: 2 * second + 1).isEmpty)
        #expect(lessor.expired(now: 3 * second) == [9])
        #expect(lessor.renew(id: 9, now: 4 * second) == .failure(.notFound))  // past its deadline
        #expect(lessor.renew(id: 10, now: 0) == .failure(.notFound))
        lessor.demote()
        #expect(lessor.renew(id: 9, now: 0) == .failure(.notPrimary))
    }

    /// Once the leader proposed an expired lease's revocation (and postponed its deadline, so as not to propose it
    /// twice), a keep-alive must not answer that the lease lives on: its keys are about to go. A new leader decides
    /// afresh. Found by the member simulation (seed 4003042, `--simulated-disks --disk-fault-rate 0.0003`).
    @Test func aLeaseBeingRevokedCannotBeKeptAlive() {
        var lessor = Lessor(minTTL: 1)
        lessor.promote(now: 0)
        _ = lessor.grant(id: 7, ttl: 3, now: 0)
        #expect(lessor.expired(now: 3 * second) == [7])
        // The revocation is proposed; the deadline moves on so the lease is not proposed again at once.
        lessor.postpone(id: 7, until: 5 * second)
        #expect(lessor.renew(id: 7, now: 3 * second + 1) == .failure(.notFound))
        #expect(lessor.renew(id: 7, now: 4 * second) == .failure(.notFound))
        // Leadership changed before the revocation was applied: the next leader starts the lease afresh.
        lessor.demote()
        lessor.promote(now: 10 * second)
        #expect(lessor.renew(id: 7, now: 11 * second) == .success(3))
    }

    @Test func revokeReturnsAttachedKeysSorted() {
        var lessor = Lessor(minTTL: 1)
        _ = lessor.grant(id: 3, ttl: 10, now: 0)
        lessor.attach(k("b"), to: 3)
        lessor.attach(k("a"), to: 3)
        lessor.detach(k("b"), from: 3)
        lessor.attach(k("c"), to: 3)
        #expect(lessor.revoke(id: 3) == [k("a"), k("c")])
        #expect(lessor.revoke(id: 3) == nil)
    }
}

@Suite struct EncodedWatchResponseTests {
    /// The hub's hand-assembled wire form is byte for byte what the message encoder writes for the same
    /// response: header, watch id (left out when 0, ten bytes when negative), then the events.
    @Test(arguments: [Int64(0), 1, 300, -1, Int64.max])
    func encodedResponseIsTheMessageEncodersBytes(watchID: Int64) throws {
        var header = Etcdserverpb_ResponseHeader()
        header.clusterID = 0xdead_beef_cafe
        header.memberID = 42
        header.revision = 1_000_000
        header.raftTerm = 3
        var events: [Mvccpb_Event] = []
        for i in 0..<3 {
            var event = Mvccpb_Event()
            event.type = i == 1 ? .delete : .put
            event.kv.key = k("key-\(i)")
            event.kv.value = Data(repeating: UInt8(i), count: 200 * i)
            event.kv.modRevision = 1_000_000 - Int64(2 - i)
            if i > 0 {
                event.prevKv.key = event.kv.key
                event.prevKv.value = k("old")
            }
            events.append(event)
        }
        for prevKV in [false, true] {
            var parts = WatchResponseParts(header: header, events: events)
            let variants = events.indices.map { WatchResponseParts.variant($0, of: events[$0], prevKV: prevKV) }
            let made = parts.response(watchID: watchID, variants: variants)
            let encoded = try #require(made)
            var expected = Etcdserverpb_WatchResponse()
            expected.header = header
            expected.watchID = watchID
            expected.events = events.map { event in
                var event = event
                if !prevKV { event.clearPrevKv() }
                return event
            }
            let bytes: [UInt8] = try expected.serializedBytes()
            #expect(encoded.bytes == bytes)
            #expect(encoded.byteCount == bytes.count)
            #expect(try Etcdserverpb_WatchResponse(serializedBytes: encoded.bytes) == expected)
        }
    }

    @Test func aStreamThatTakesMessagesGetsMessagesAndOneThatWritesTheWireGetsSharedEncodings() throws {
        let w = try WatchFixture()
        let messages = WatchStream(wireFormat: false)
        let wire = [WatchStream(), WatchStream()]
        w.hub.watch(WatchRequestSpec(range: .single(k("a"))), on: messages)
        for stream in wire { w.hub.watch(WatchRequestSpec(range: .single(k("a"))), on: stream) }
        try w.put("a", "1")
        let fromMessages = messages.take(limit: 10)
        #expect(fromMessages.count == 2)
        guard case .message(let response) = fromMessages[1] else {
            Issue.record("a stream without wireFormat got an encoded response")
            return
        }
        #expect(response.events.map(\.kv.value) == [k("1")])
        var encoded: [EncodedWatchResponse] = []
        for stream in wire {
            let taken = stream.take(limit: 10)
            guard taken.count == 2, case .encoded(let event) = taken[1] else {
                Issue.record("a wire stream did not get its event encoded: \(taken)")
                return
            }
            encoded.append(event)
        }
        // One serialization of the event for both watchers: their responses share the same storage.
        let storage = encoded.map { $0.events[0].withUnsafeBufferPointer { $0.baseAddress } }
        #expect(storage[0] == storage[1])
        #expect(try Etcdserverpb_WatchResponse(serializedBytes: encoded[0].bytes).events == response.events)
    }

    /// What etcd's watch metrics read: open streams, events queued and not yet taken by the writer, events taken.
    @Test func streamsCountTheirEventsFromQueuedToTaken() throws {
        let w = try WatchFixture()
        let counters = w.hub.counters
        var stream: WatchStream? = WatchStream(counters: counters)
        let closed = WatchStream(wireFormat: false, counters: counters)
        #expect(counters.openStreams.load(ordering: .relaxed) == 2)
        w.hub.watch(WatchRequestSpec(range: .interval(from: k("a"), to: KeyRange.prefixEnd(k("a")))), on: stream!)
        w.hub.watch(WatchRequestSpec(range: .interval(from: k("a"), to: KeyRange.prefixEnd(k("a")))), on: closed)
        try w.put("a1", "1")
        try w.put("a2", "2")
        #expect(counters.pendingEvents.load(ordering: .relaxed) == 4)
        _ = stream!.take(limit: 10)
        #expect(counters.pendingEvents.load(ordering: .relaxed) == 2)
        #expect(counters.sentEvents.load(ordering: .relaxed) == 2)
        // Closing drops what was queued: pending, never sent.
        w.hub.closeStream(closed)
        closed.close()
        #expect(counters.openStreams.load(ordering: .relaxed) == 1)
        #expect(counters.pendingEvents.load(ordering: .relaxed) == 0)
        #expect(counters.sentEvents.load(ordering: .relaxed) == 2)
        // A stream let go without a close is no longer open either.
        w.hub.closeStream(stream!)
        stream = WatchStream(counters: counters)
        #expect(counters.openStreams.load(ordering: .relaxed) == 1)
        stream = nil
        #expect(counters.openStreams.load(ordering: .relaxed) == 0)
    }
}

/// A put reads its key's previous value only when someone wants it (etcd reads only its index on a put): the request
/// (`prev_kv`), or a watcher that asked for previous versions when the events are published.
@Suite struct PreviousValueOnDemandTests {
    final class Fixture {
        let dir = TemporaryDirectory()
        let backend: Backend
        let store: KVStore
        let hub: WatchHub
        var completions = 0

        init() throws {
            backend = try Backend(path: dir.path + "/db")
            // No value cache: every previous value not in the batch being written must come from the database.
            store = try KVStore(backend: backend, valueCacheBytes: 0)
            hub = WatchHub(store: store, currentRevision: store.revisions.current) { revision in
                var header = Etcdserverpb_ResponseHeader()
                header.revision = revision
                return header
            }
        }

        /// Puts as the applier does for a request without `prev_kv`, then publishes as the member does.
        @discardableResult
        func put(_ key: String, _ value: String) throws -> KVWriteTxn {
            try backend.beginBatch()
            let txn = store.beginWrite()
            try txn.put(key: k(key), value: k(value), lease: 0, previousValue: false)
            try store.end(txn)
            try backend.commitBatch()
            let pending = txn.pendingPrevValues
            hub.publish(txn.events, revision: txn.revision) { [self] events in
                completions += 1
                store.fill(pending, into: &events)
            }
            return txn
        }
    }

    @Test func aWatcherThatAsksForPreviousVersionsGetsTheirValuesAndNobodyElseCausesAReadOfThem() throws {
        let f = try Fixture()
        try f.put("k", "v1")
        // Nobody watches: the previous value is left unread.
        let unread = try f.put("k", "v2")
        #expect(!unread.pendingPrevValues.isEmpty)
        #expect(unread.events[0].prevKv.version == 1 && unread.events[0].prevKv.value.isEmpty)
        #expect(f.completions == 0)

        // A watcher without prev_kv: still nothing read.
        let plain = WatchStream()
        let plainID = try #require(f.hub.watch(WatchRequestSpec(range: .single(k("k"))), on: plain))
        try f.put("k", "v3")
        #expect(f.completions == 0)
        #expect(events(drain(plain), id: plainID).map { $0.hasPrevKv } == [false])

        // A watcher with prev_kv: the values are read before the events go out, to both watchers as they asked.
        let withPrev = WatchStream()
        let prevID = try #require(f.hub.watch(WatchRequestSpec(range: .single(k("k")), prevKV: true), on: withPrev))
        try f.put("k", "v4")
        try f.put("k", "v5")
        #expect(f.completions == 2)
        let seen = events(drain(withPrev), id: prevID)
        #expect(seen.map(\.prevKv.value) == [k("v3"), k("v4")])
        #expect(seen.map(\.prevKv.version) == [3, 4])
        #expect(events(drain(plain), id: plainID).allSatisfy { !$0.hasPrevKv })

        // Once it is gone, puts stop reading previous values again.
        #expect(f.hub.cancel(watchID: prevID, on: withPrev))
        try f.put("k", "v6")
        #expect(f.completions == 2)
    }

    @Test func aRequestThatAsksForThePreviousValueGetsItWhateverTheWatchers() throws {
        let f = try Fixture()
        try f.put("k", "v1")
        try f.backend.beginBatch()
        let txn = f.store.beginWrite()
        let prev = try txn.put(key: k("k"), value: k("v2"), lease: 0, previousValue: true)
        try f.store.end(txn)
        try f.backend.commitBatch()
        #expect(prev?.value == k("v1"))
        #expect(txn.pendingPrevValues.isEmpty)
        #expect(txn.events[0].prevKv.value == k("v1"))
    }
}
