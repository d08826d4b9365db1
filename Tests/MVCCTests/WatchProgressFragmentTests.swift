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
}
