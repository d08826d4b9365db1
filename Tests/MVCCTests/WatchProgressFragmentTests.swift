import EtcdProto
import Foundation
import Testing

@testable import MVCC

/// etcd 3.5.13's progress semantics and etcd's watch fragments, at the hub.
@Suite struct WatchProgressFragmentTests {
    /// A progress request made while a watcher catches up waits for it, and comes after its events.
    @Test func progressRequestWaitsForCatchUpAndFollowsTheEvents() throws {
        let w = try WatchFixture()
        for i in 1...10 { try w.put("a", "\(i)") }  // revisions 2...11
        let stream = WatchStream()
        let id = try #require(w.hub.watch(WatchRequestSpec(range: .single(k("a")), startRevision: 2), on: stream))
        w.hub.requestProgress(on: stream)
        #expect(drain(stream).allSatisfy { $0.watchID == id && $0.created })  // nothing but `created` yet
        try w.catchUpFully()
        let responses = drain(stream)
        let progress = try #require(responses.last)
        #expect(progress.watchID == -1 && progress.events.isEmpty && progress.header.revision == 11)
        #expect(events(responses, id: id).map(\.kv.modRevision) == Array(2...11))
    }

    /// The deferred answer also comes when the last watcher catching up is canceled or compacted away.
    @Test func progressRequestIsAnsweredWhenTheLaggingWatcherGoes() throws {
        let w = try WatchFixture()
        for i in 1...5 { try w.put("a", "\(i)") }
        let stream = WatchStream()
        let id = try #require(w.hub.watch(WatchRequestSpec(range: .single(k("a")), startRevision: 2), on: stream))
        w.hub.requestProgress(on: stream)
        _ = drain(stream)
        #expect(w.hub.cancel(watchID: id, on: stream))
        #expect(drain(stream).map(\.watchID) == [-1])

        let compacted = WatchStream()
        _ = try #require(w.hub.watch(WatchRequestSpec(range: .single(k("a")), startRevision: 2), on: compacted))
        w.hub.requestProgress(on: compacted)
        try w.f.backend.beginBatch()
        try w.f.store.scheduleCompaction(5)
        try w.f.backend.commitBatch()
        try w.catchUpFully()
        let responses = drain(compacted)
        #expect(responses.dropFirst().map(\.canceled) == [true, false])
        #expect(responses.last?.watchID == -1)
    }

    /// Periodic notifications skip a watcher that was sent events since the last one (etcd's behaviour), and
    /// carry the newest revision otherwise.
    @Test func periodicProgressSkipsWatchersThatGotEvents() throws {
        let w = try WatchFixture()
        let stream = WatchStream()
        let id = try #require(w.hub.watch(WatchRequestSpec(range: .single(k("a")), progressNotify: true), on: stream))
        _ = drain(stream)
        w.hub.notifyProgress()
        #expect(drain(stream).map(\.watchID) == [id])
        try w.put("a", "1")
        w.hub.notifyProgress()
        #expect(drain(stream).map(\.events.count) == [1])  // the event, no notification
        try w.put("b", "other key")
        w.hub.notifyProgress()
        let progress = drain(stream)
        #expect(progress.map(\.watchID) == [id] && progress.first?.events.isEmpty == true)
        #expect(progress.first?.header.revision == w.f.store.revisions.current)
    }

    /// etcd's sendFragments: pieces below the limit (a single event may exceed it), `fragment` on all but the last.
    @Test func fragmentsSplitBelowTheLimit() throws {
        var response = Etcdserverpb_WatchResponse()
        response.watchID = 3
        response.header.revision = 99
        response.events = (0..<10).map { i in
            var event = Mvccpb_Event()
            event.kv.key = k("key\(i)")
            event.kv.value = Data(repeating: 0x61, count: i == 4 ? 3000 : 300)
            return event
        }
        #expect(response.fragments(limit: 1 << 20) == [response])
        let pieces = response.fragments(limit: 1000)
        #expect(pieces.count > 3)
        #expect(pieces.flatMap(\.events) == response.events)
        #expect(pieces.dropLast().allSatisfy(\.fragment) && pieces.last?.fragment == false)
        #expect(pieces.allSatisfy { $0.watchID == 3 && $0.header.revision == 99 })
        for piece in pieces where piece.events.count > 1 {
            #expect((try piece.serializedBytes() as [UInt8]).count < 1000)
        }
    }

    /// A watcher with a fragment limit gets a large catch-up split, queued together in order.
    @Test func fragmentingWatcherGetsPieces() throws {
        let w = try WatchFixture()
        for i in 0..<20 { try w.put("f\(i)", String(repeating: "v", count: 200)) }
        let stream = WatchStream()
        let spec = WatchRequestSpec(
            range: KeyRange(key: k("f"), rangeEnd: KeyRange.prefixEnd(k("f"))), startRevision: 1, fragmentLimit: 1000)
        let id = try #require(w.hub.watch(spec, on: stream))
        try w.hub.catchUp(limit: 1000)
        let responses = drain(stream).filter { $0.watchID == id && !$0.created }
        #expect(responses.count > 1 && responses.dropLast().allSatisfy(\.fragment))
        #expect(events(responses, id: id).map(\.kv.modRevision) == Array(2...21))
    }
}
