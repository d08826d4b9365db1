import EtcdProto
import Foundation
import MVCC
import Node

/// Watchers of the member simulation and the checks of etcd's watch guarantees on what they receive.
///
/// Every revision of the simulated workload is one change (a put on a `k` key, a lease key's put, or the delete of a
/// lease's key when it is revoked or expires), so a watcher of every key from revision S must receive exactly the
/// revisions S, S+1, … up to the last one, each once and in order, whatever
/// happens on the way: its member partitioned, its client slow enough to overflow its stream (the member then
/// catches it up from history), or the watcher moved to another member and resumed from the next revision it
/// needs. What each watcher receives must agree with every other watcher and with the clients' acknowledged writes,
/// `prev_kv` must be the key's previous value, and a progress notification must never claim a revision whose events
/// were not delivered yet.
final class SimWatchers: @unchecked Sendable {
    // @unchecked: confined to the scheduler's thread.
    struct Received {
        var key: Data
        var value: Data
        var prev: Data?
        var deleted = false
    }

    final class Watcher: @unchecked Sendable {
        let id: Int
        var member: Int
        var stream: WatchStream?
        var watchID: Int64?
        let prevKV: Bool
        /// The next revision this watcher must receive.
        var next: Int64
        var events: [(revision: Int64, event: Received)] = []
        var moves = 0
        var progressReplies = 0
        /// The newest compaction that canceled this watcher: it resumed after it, the revisions before were lost.
        var compactedThrough: Int64 = 0

        init(id: Int, member: Int, prevKV: Bool, next: Int64) {
            self.id = id
            self.member = member
            self.prevKV = prevKV
            self.next = next
        }
    }

    unowned let simulation: MemberSimulation
    var watchers: [Watcher] = []
    /// What some watcher received at each revision: every other watcher must agree.
    var truth: [Int64: Received] = [:]
    var violations: [String] = []
    static let capacity = 16

    init(simulation: MemberSimulation) {
        self.simulation = simulation
    }

    var scheduler: SimScheduler { simulation.scheduler }

    /// Watcher 0 watches from revision 1 on the first member for the whole run (the reference); the others start
    /// later, from the past or from now, with or without `prev_kv`, and move between members.
    func start(count: Int) {
        guard count > 0 else { return }
        open(Watcher(id: 0, member: 0, prevKV: true, next: 2))
        for id in 1..<count {
            scheduler.after(.ms(scheduler.random.int(in: 300...5000))) { [self] in
                let member = scheduler.random.int(0..<simulation.members.count)
                guard let node = simulation.members[member].node else { return }
                let current = node.store.revisions.current
                // Revision 1 is the empty store: the first event is at 2.
                let from = scheduler.random.chance(0.5) ? 0 : scheduler.random.int(in: 2...max(2, current))
                let watcher = Watcher(
                    id: id, member: member, prevKV: scheduler.random.chance(0.5), next: from == 0 ? current + 1 : from)
                open(watcher)
                scheduleMove(watcher)
            }
        }
    }

    private func open(_ w: Watcher) {
        if !watchers.contains(where: { $0 === w }) { watchers.append(w) }
        guard let node = simulation.members[w.member].node, !node.status.isLearner else {
            // Its member is down (or a learner, which serves no watch): try another in a moment.
            w.stream = nil
            return reconnect(w)
        }
        let stream = WatchStream(capacity: Self.capacity, wireFormat: false)
        w.stream = stream
        stream.onReady { [self] in
            // Mostly prompt, sometimes a slow client whose stream overflows.
            let delay: SimTime =
                scheduler.random.chance(0.1)
                ? .ms(scheduler.random.int(in: 500...2500)) : .ms(scheduler.random.int(in: 0...20))
            scheduler.after(delay) { [self] in drain(w, stream) }
        }
        simulation.trace(
            "watcher \(w.id) opens on member \(w.member) from revision \(w.next) (member at \(node.store.revisions.current))"
        )
        w.watchID = node.hub.watch(
            WatchRequestSpec(
                range: KeyRange(key: Data([0]), rangeEnd: Data([0])), startRevision: w.next, prevKV: w.prevKV),
            on: stream)
        if w.watchID == nil { violations.append("watcher \(w.id): refused on member \(w.member)") }
    }

    /// Now and then: a progress request, or the watcher closed and resumed on another member from where it was.
    private func scheduleMove(_ w: Watcher) {
        scheduler.after(.ms(scheduler.random.int(in: 500...4000))) { [self] in
            guard !finished else { return }
            guard let stream = w.stream, let node = simulation.members[w.member].node else { return scheduleMove(w) }
            if scheduler.random.chance(0.5) {
                simulation.trace("watcher \(w.id) on member \(w.member) requests progress")
                node.hub.requestProgress(on: stream)
            } else {
                if let id = w.watchID { node.hub.cancel(watchID: id, on: stream) }
                node.hub.closeStream(stream)
                stream.close()
                w.stream = nil
                w.moves += 1
                w.member = scheduler.random.int(0..<simulation.members.count)
                open(w)
            }
            scheduleMove(w)
        }
    }

    var finished = false

    static func describe(_ r: Received) -> String {
        (r.deleted ? "delete " : "put ") + String(decoding: r.key, as: UTF8.self)
            + (r.deleted ? "" : "=" + String(decoding: r.value, as: UTF8.self))
    }

    /// The watchers of a crashed member lost their stream: as a client would, each reconnects to another member a
    /// moment later and resumes from the next revision it needs.
    func memberCrashed(_ member: Int) {
        for w in watchers where w.member == member && w.stream != nil {
            w.stream = nil
            reconnect(w)
        }
    }

    /// Opens the watcher again on a running member a moment from now (and again later while none runs).
    private func reconnect(_ w: Watcher) {
        scheduler.after(.ms(scheduler.random.int(in: 10...500))) { [self] in
            guard !finished, w.stream == nil else { return }
            let running = simulation.members.indices.filter {
                simulation.members[$0].node.map { !$0.status.isLearner } ?? false
            }
            guard !running.isEmpty else { return reconnect(w) }
            w.moves += 1
            w.member = scheduler.random.pick(running)
            open(w)
        }
    }

    /// The member canceled the watcher because the revisions it needs were compacted: legitimate only if they were
    /// (the revision it needs next is below the compaction). As an etcd client does, it watches again from after the
    /// compaction (the revision of the compaction itself may have lost its event: a deleted key's tombstone goes).
    private func compactedAway(_ w: Watcher, _ compacted: Int64) {
        simulation.trace("watcher \(w.id) on member \(w.member): compacted at \(compacted), needs \(w.next)")
        guard w.next < compacted else {
            violations.append(
                "watcher \(w.id): canceled by member \(w.member) as compacted at \(compacted), but it needs \(w.next)")
            return
        }
        w.compactedThrough = max(w.compactedThrough, compacted)
        w.next = compacted + 1
        w.stream?.close()
        w.stream = nil
        reconnect(w)
    }

    private func drain(_ w: Watcher, _ stream: WatchStream) {
        guard w.stream === stream else { return }  // moved since
        let batch = stream.take(limit: 8)
        for outgoing in batch {
            // Canceled as compacted, the watcher left this stream: what follows on it (a progress notification for a
            // stream with no watcher left) is no longer about the watcher.
            guard w.stream === stream else { break }
            guard case .message(let response) = outgoing else {
                violations.append("watcher \(w.id): an encoded response on a stream that asked for messages")
                continue
            }
            receive(w, response)
        }
        if batch.count == 8 { scheduler.after(.ms(1)) { [self] in drain(w, stream) } }
    }

    private func receive(_ w: Watcher, _ response: Etcdserverpb_WatchResponse) {
        if response.canceled && response.compactRevision > 0 { return compactedAway(w, response.compactRevision) }
        if response.created {
            if response.canceled {
                violations.append("watcher \(w.id): canceled at creation: \(response.cancelReason)")
            }
            return
        }
        if response.canceled {
            violations.append("watcher \(w.id): canceled by member \(w.member): \(response.cancelReason)")
            return
        }
        if response.events.isEmpty {
            // A progress notification: everything up to its revision must already be here.
            w.progressReplies += 1
            let revision = response.header.revision
            simulation.trace("watcher \(w.id) on member \(w.member): progress \(revision)")
            if revision > w.next - 1 {
                violations.append(
                    "watcher \(w.id): progress at revision \(revision) before the events from \(w.next) were delivered")
            }
            return
        }
        simulation.trace(
            "watcher \(w.id) on member \(w.member): revisions \(response.events.map { String($0.kv.modRevision) }.joined(separator: ","))"
        )
        for event in response.events {
            let revision = event.kv.modRevision
            if revision != w.next {
                violations.append(
                    "watcher \(w.id) on member \(w.member): expected revision \(w.next), got \(revision) "
                        + (revision < w.next ? "(repeated or out of order)" : "(a gap)"))
            }
            w.next = max(w.next, revision + 1)
            let received = Received(
                key: event.kv.key, value: event.kv.value, prev: event.hasPrevKv ? event.prevKv.value : nil,
                deleted: event.type == .delete)
            w.events.append((revision, received))
            if let seen = truth[revision] {
                if seen.key != received.key || seen.value != received.value || seen.deleted != received.deleted {
                    violations.append(
                        "revision \(revision): watchers disagree on its event (watcher \(w.id) on member \(w.member) "
                            + "saw \(Self.describe(received)), an earlier watcher \(Self.describe(seen)))")
                }
            } else {
                truth[revision] = Received(key: received.key, value: received.value, deleted: received.deleted)
            }
        }
    }

    /// After the run: every watcher received everything up to `last`; acknowledged writes appear exactly once;
    /// `prev_kv` is right. Revisions a compaction took from a canceled watcher (`compactedThrough`) may be missing
    /// from what the watchers saw together; the checks that need every revision then keep to those after it.
    func check(lastRevision last: Int64, compacted: Int64, history: [HistoryEntry]) -> [String] {
        finished = true
        var found = violations
        for w in watchers where w.next - 1 != last {
            found.append("watcher \(w.id) on member \(w.member) ended at revision \(w.next - 1), the store at \(last)")
        }
        var values: [Data: Int64] = [:]
        for revision in truth.keys.sorted() where truth[revision]!.key.first == UInt8(ascii: "k") {
            if !truth[revision]!.deleted, let earlier = values.updateValue(revision, forKey: truth[revision]!.value) {
                found.append("value written twice, at revisions \(earlier) and \(revision)")
            }
        }
        let lost = watchers.map(\.compactedThrough).max() ?? 0
        let missing = (max(2, lost + 1)...max(2, last)).filter { $0 <= last && truth[$0] == nil }
        if !missing.isEmpty {
            found.append(
                "the watchers saw \(truth.count) revisions of the \(last - 1) the store made (missing "
                    + "\(missing.prefix(5).map(String.init).joined(separator: ",")))")
            return Array(found.prefix(10))
        }
        guard lost == 0 else { return Array(found.prefix(10)) }
        // The watchers saw every revision from 2 on: every acknowledged write is among them, and `prev_kv` is the
        // key's value before.
        for h in history {
            let written: Int64? =
                switch (h.op, h.output) {
                case (.put(_, let v), .ok): v
                case (.cas(_, _, let v), .ok): v
                default: nil
                }
            if let v = written, values[Data(String(v).utf8)] == nil {
                found.append("an acknowledged write of \(v) never reached a watcher")
            }
        }
        var latest: [Data: Data] = [:]
        var previous: [Int64: Data] = [:]
        for revision in truth.keys.sorted() {
            let r = truth[revision]!
            previous[revision] = latest[r.key]
            latest[r.key] = r.deleted ? nil : r.value
        }
        for w in watchers where w.prevKV {
            // An event at or below a compaction may come without `prev_kv`, as from etcd: the version before it was
            // compacted away.
            let wrongPrev = { (e: (revision: Int64, event: Received)) in
                previous[e.revision] != e.event.prev && !(e.event.prev == nil && e.revision <= compacted)
            }
            if let wrong = w.events.first(where: wrongPrev) {
                found.append("watcher \(w.id): wrong prev_kv at revision \(wrong.revision)")
            }
        }
        return Array(found.prefix(10))
    }

    /// The value `key` had at `revision` by what the watchers saw (nil: absent), or nil when they did not see every
    /// revision up to it.
    func value(of key: Data, at revision: Int64) -> Data?? {
        var value: Data? = nil
        for r in 2...max(2, revision) where r <= revision {
            guard let event = truth[r] else { return nil }
            if event.key == key { value = event.deleted ? nil : event.value }
        }
        return .some(value)
    }

    /// Closes every stream (their handlers capture this object).
    func release() {
        for w in watchers {
            w.stream?.close()
            w.stream = nil
        }
        watchers = []
    }
}
