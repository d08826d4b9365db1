import EtcdProto
import Foundation
import Synchronization

/// What a client asked to watch.
public struct WatchRequestSpec: Sendable {
    public var range: KeyRange
    /// 0 = from the next revision on.
    public var startRevision: Int64
    public var prevKV: Bool
    public var filterPut: Bool
    public var filterDelete: Bool
    public var progressNotify: Bool
    public var requestedID: Int64
    /// The watcher asked for `fragment`: responses of this many serialized bytes or more are split
    /// (`Etcdserverpb_WatchResponse.fragments`). nil: never split.
    public var fragmentLimit: Int?

    public init(
        range: KeyRange, startRevision: Int64 = 0, prevKV: Bool = false, filterPut: Bool = false,
        filterDelete: Bool = false, progressNotify: Bool = false, requestedID: Int64 = 0, fragmentLimit: Int? = nil
    ) {
        self.fragmentLimit = fragmentLimit
        self.range = range
        self.startRevision = startRevision
        self.prevKV = prevKV
        self.filterPut = filterPut
        self.filterDelete = filterDelete
        self.progressNotify = progressNotify
        self.requestedID = requestedID
    }
}

/// Routes committed events to watchers, in revision order, none lost and none repeated.
///
/// A watcher is *synced* (receives events as batches commit) or *unsynced* (behind: it started in the past, or
/// its stream was full). Unsynced watchers are caught up from the store's history by `catchUp`, driven by a
/// background loop, and become synced again once they reach the newest revision. `nextRevision` is the first
/// revision a watcher has not been sent; `publish` skips anything below it, which makes the hand-over between
/// catch-up and live delivery exact even when they race.
public final class WatchHub: Sendable {
    public typealias HeaderProvider = @Sendable (_ revision: Int64) -> Etcdserverpb_ResponseHeader

    final class Watcher: @unchecked Sendable {
        // Mutated only under the hub's lock.
        let key: UInt64
        let watchID: Int64
        let stream: WatchStream
        let spec: WatchRequestSpec
        var nextRevision: Int64
        var synced: Bool
        /// Events went out since the last periodic progress notification: the next one is skipped (etcd's
        /// `serverWatchStream.progress`), since the events already told the client how far it is.
        var sentSinceProgress = false

        init(key: UInt64, watchID: Int64, stream: WatchStream, spec: WatchRequestSpec, next: Int64, synced: Bool) {
            self.key = key
            self.watchID = watchID
            self.stream = stream
            self.spec = spec
            self.nextRevision = next
            self.synced = synced
        }

        /// `keyMatched`: the event's key was found in the hub's index of single-key watchers, so the range
        /// need not be checked again.
        func matches(_ event: Mvccpb_Event, keyMatched: Bool = false) -> Bool {
            if event.type == .put && spec.filterPut { return false }
            if event.type == .delete && spec.filterDelete { return false }
            return keyMatched || spec.range.contains(event.kv.key)
        }
    }

    struct State {
        var watchers: [UInt64: Watcher] = [:]
        var byKey: [Data: Set<UInt64>] = [:]
        var ranged: Set<UInt64> = []
        var unsynced: Set<UInt64> = []
        var nextKey: UInt64 = 1
        var currentRevision: Int64
        var streams: [ObjectIdentifier: Set<UInt64>] = [:]
        /// Watchers that asked for `prev_kv`: only with one of them is a put's previous value worth reading.
        var prevKVWatchers = 0
    }

    let state: Mutex<State>
    let store: KVStore
    let header: HeaderProvider
    /// Called (outside any lock) when a watcher falls behind, so the catch-up loop can wake at once.
    let onBehind: @Sendable () -> Void
    /// The watch metrics of the streams made for this hub (`WatchStream(counters:)`).
    public let counters = WatchCounters()

    /// TEST-ONLY: a rule switched off to show that the member simulation's watch checks catch it.
    let testingMutation: WatchMutation?

    public init(
        store: KVStore, currentRevision: Int64, header: @escaping HeaderProvider,
        onBehind: @escaping @Sendable () -> Void = {}, testingMutation: WatchMutation? = nil
    ) {
        self.testingMutation = testingMutation
        self.store = store
        self.header = header
        self.onBehind = onBehind
        state = Mutex(State(currentRevision: currentRevision))
    }

    public var watcherCount: Int { state.withLock { $0.watchers.count } }
    public var unsyncedCount: Int { state.withLock { $0.unsynced.count } }

    /// Creates a watcher on `stream`. Sends the `created` response (or etcd's error response) itself.
    @discardableResult
    public func watch(_ spec: WatchRequestSpec, on stream: WatchStream) -> Int64? {
        guard let id = stream.allocateID(requested: spec.requestedID) else {
            var response = Etcdserverpb_WatchResponse()
            response.header = header(state.withLock { $0.currentRevision })
            response.watchID = spec.requestedID
            response.created = true
            response.canceled = true
            response.cancelReason = "mvcc: duplicate watch ID provided on the WatchStream"
            stream.send(response)
            return nil
        }
        let behind = state.withLock { s -> Bool in
            let key = s.nextKey
            s.nextKey += 1
            let current = s.currentRevision
            let start = spec.startRevision
            let synced = start == 0 || start > current
            let watcher = Watcher(
                key: key, watchID: id, stream: stream, spec: spec, next: start == 0 ? current + 1 : start,
                synced: synced)
            s.watchers[key] = watcher
            if spec.prevKV { s.prevKVWatchers += 1 }
            if case .single(let k) = spec.range {
                s.byKey[k, default: []].insert(key)
            } else {
                s.ranged.insert(key)
            }
            if !synced { s.unsynced.insert(key) }
            s.streams[ObjectIdentifier(stream), default: []].insert(key)
            var response = Etcdserverpb_WatchResponse()
            response.header = header(current)
            response.watchID = id
            response.created = true
            // Sent under the lock so no event for this watcher can overtake its `created` response.
            stream.send(response)
            return !synced
        }
        if behind { onBehind() }
        return id
    }

    /// Cancels a watcher by its stream-local id; false if there was none.
    @discardableResult
    public func cancel(watchID: Int64, on stream: WatchStream) -> Bool {
        let removed = state.withLock { s -> Bool in
            guard let keys = s.streams[ObjectIdentifier(stream)],
                let key = keys.first(where: { s.watchers[$0]?.watchID == watchID })
            else { return false }
            remove(key, from: &s)
            // The canceled watcher may have been the last one still catching up: a deferred progress request
            // can be answered now.
            sendProgressIfRequested(stream, in: s)
            return true
        }
        if removed { stream.releaseID(watchID) }
        return removed
    }

    /// Drops every watcher of a stream that ended.
    public func closeStream(_ stream: WatchStream) {
        state.withLock { s in
            for key in s.streams[ObjectIdentifier(stream)] ?? [] { remove(key, from: &s) }
            s.streams[ObjectIdentifier(stream)] = nil
        }
        stream.close()
    }

    private func remove(_ key: UInt64, from s: inout State) {
        guard let watcher = s.watchers.removeValue(forKey: key) else { return }
        if watcher.spec.prevKV { s.prevKVWatchers -= 1 }
        if case .single(let k) = watcher.spec.range {
            s.byKey[k]?.remove(key)
            if s.byKey[k]?.isEmpty == true { s.byKey[k] = nil }
        } else {
            s.ranged.remove(key)
        }
        s.unsynced.remove(key)
        s.streams[ObjectIdentifier(watcher.stream)]?.remove(key)
    }

    /// After the store was replaced wholesale (a snapshot from the leader), live delivery has a gap: every
    /// watcher goes back to catching up from history, which cancels it with the compact revision if the
    /// history it needs is gone.
    public func resync(revision: Int64) {
        state.withLock { s in
            for (key, watcher) in s.watchers where watcher.synced {
                // Synced means: sent everything up to the old current revision.
                watcher.nextRevision = max(watcher.nextRevision, s.currentRevision + 1)
                watcher.synced = false
                s.unsynced.insert(key)
            }
            s.currentRevision = revision
        }
        onBehind()
    }

    /// Delivers the events of a committed batch (all revisions up to `revision`) to synced watchers.
    /// Never blocks: a full stream turns its watcher unsynced. `completingPreviousValues` reads the values the
    /// events' previous versions were recorded without (`PendingPrevValues`); it runs under the hub's lock, and only
    /// while a watcher that wants them exists, so that none registering meanwhile can receive an event without them.
    public func publish(
        _ events: [Mvccpb_Event], revision: Int64,
        completingPreviousValues: ((inout [Mvccpb_Event]) -> Void)? = nil
    ) {
        let fellBehind = state.withLock { s -> Bool in
            s.currentRevision = max(s.currentRevision, revision)
            guard !events.isEmpty, !s.watchers.isEmpty else { return false }
            var events = events
            if let complete = completingPreviousValues, s.prevKVWatchers > 0 { complete(&events) }
            // Fan-out is the hot part of a watched write: one header for every response of the batch (building
            // one takes the member's status lock), and each event serialized once for all the watchers that
            // receive it (`WatchResponseParts`).
            var parts = WatchResponseParts(header: header(revision), events: events)
            var fellBehind = false
            func deliver(_ variants: some Collection<Int>, to watcher: Watcher) {
                if offer(variants, to: watcher, parts: &parts) {
                    watcher.nextRevision = revision + 1
                    watcher.sentSinceProgress = true
                } else {
                    watcher.synced = false
                    watcher.nextRevision = events[variants.first! / 2].kv.modRevision
                    s.unsynced.insert(watcher.key)
                    fellBehind = true
                }
            }
            // Each watcher gets the events it matches, in revision order, in one response. A single-event batch
            // (the usual one at low load) is delivered as it is matched, with nothing to group.
            var perWatcher: [UInt64: (Watcher, [Int])] = [:]
            func collect(_ index: Int, _ event: Mvccpb_Event, for key: UInt64, keyMatched: Bool) {
                guard let watcher = s.watchers[key], watcher.synced, event.kv.modRevision >= watcher.nextRevision,
                    watcher.matches(event, keyMatched: keyMatched)
                else { return }
                let variant = WatchResponseParts.variant(index, of: event, prevKV: watcher.spec.prevKV)
                if events.count == 1 {
                    deliver(CollectionOfOne(variant), to: watcher)
                } else {
                    perWatcher[key, default: (watcher, [])].1.append(variant)
                }
            }
            for (index, event) in events.enumerated() {
                if let keys = s.byKey[event.kv.key] {
                    for key in keys { collect(index, event, for: key, keyMatched: true) }
                }
                for key in s.ranged { collect(index, event, for: key, keyMatched: false) }
            }
            for (watcher, variants) in perWatcher.values { deliver(variants, to: watcher) }
            return fellBehind
        }
        if fellBehind { onBehind() }
    }

    /// Queues `variants` of the batch's events for `watcher`: in wire form if its stream writes to the wire.
    private func offer(_ variants: some Collection<Int>, to watcher: Watcher, parts: inout WatchResponseParts) -> Bool {
        if watcher.stream.wireFormat, let encoded = parts.response(watchID: watcher.watchID, variants: variants),
            encoded.byteCount < watcher.spec.fragmentLimit ?? Int.max
        {
            return watcher.stream.offer(.encoded(encoded))
        }
        var response = Etcdserverpb_WatchResponse()
        response.header = parts.headerMessage
        response.watchID = watcher.watchID
        response.events = variants.map { parts.message($0) }
        return offer(response, to: watcher)
    }

    private func deliver(_ events: [Mvccpb_Event], to watcher: Watcher, revision: Int64) -> Bool {
        var response = Etcdserverpb_WatchResponse()
        response.header = header(revision)
        response.watchID = watcher.watchID
        response.events = events
        return offer(response, to: watcher)
    }

    /// Queues an event response, split into fragments if the watcher asked for them; all or nothing.
    private func offer(_ response: Etcdserverpb_WatchResponse, to watcher: Watcher) -> Bool {
        if let limit = watcher.spec.fragmentLimit, response.events.count > 1 {
            let pieces = response.fragments(limit: limit)
            if pieces.count > 1 { return watcher.stream.offer(pieces.map { .message($0) }) }
        }
        return watcher.stream.offer(.message(response))
    }

    /// Moves unsynced watchers forward from history, at most `limit` events per call. Returns whether another call
    /// right away could do more: work remains *and* this call moved some watcher forward. A watcher whose stream is
    /// full cannot move until its client reads; calling again at once would spin (the caller's periodic pass, or the
    /// next event, retries it).
    @discardableResult
    public func catchUp(limit: Int = 1000) throws -> Bool {
        let pending: [(Watcher, Int64)] = state.withLock { s in
            s.unsynced.compactMap { key in s.watchers[key].map { ($0, $0.nextRevision) } }
        }
        guard let from = pending.map(\.1).min() else { return false }
        let needPrev = pending.contains { $0.0.spec.prevKV }
        let batch: (events: [Mvccpb_Event], covered: Int64, revisions: RevisionState)
        do {
            batch = try store.events(from: from, through: Int64.max, limit: limit, prevKV: needPrev)
        } catch MVCCError.compacted {
            batch = ([], from - 1, store.revisions)
        }
        let compacted = batch.revisions.compacted
        return state.withLock { s in
            var moved = false
            for (watcher, next) in pending {
                // Skip watchers that were removed or moved on since the snapshot above.
                guard s.watchers[watcher.key] === watcher, !watcher.synced, watcher.nextRevision == next else {
                    continue
                }
                if next < compacted {
                    var response = Etcdserverpb_WatchResponse()
                    response.header = header(s.currentRevision)
                    response.watchID = watcher.watchID
                    response.compactRevision = compacted
                    response.canceled = true
                    watcher.stream.send(response)
                    remove(watcher.key, from: &s)
                    watcher.stream.releaseID(watcher.watchID)
                    sendProgressIfRequested(watcher.stream, in: s)
                    moved = true
                    continue
                }
                var matched: [Mvccpb_Event] = []
                let first = testingMutation == .catchUpStartsPastTheNextRevision ? next + 1 : next
                for event in batch.events where event.kv.modRevision >= first && watcher.matches(event) {
                    var event = event
                    if !watcher.spec.prevKV { event.clearPrevKv() }
                    matched.append(event)
                }
                if !matched.isEmpty {
                    guard deliver(matched, to: watcher, revision: batch.covered) else { continue }
                    watcher.sentSinceProgress = true
                }
                moved = moved || batch.covered + 1 > watcher.nextRevision
                watcher.nextRevision = max(watcher.nextRevision, batch.covered + 1)
                if watcher.nextRevision > s.currentRevision {
                    watcher.synced = true
                    s.unsynced.remove(watcher.key)
                    sendProgressIfRequested(watcher.stream, in: s)
                }
            }
            return moved && !s.unsynced.isEmpty
        }
    }

    /// A client's progress request (`RequestProgress`): answered with watch id -1 and the newest revision once all
    /// of the stream's watchers have caught up, since the revision promises that every earlier event the stream's
    /// watchers match was sent. This is etcd 3.5.13's behaviour (etcd issues #15220 and #17507), which
    /// kube-apiserver relies on for consistent reads from its watch cache: the answer goes through the stream's one
    /// ordered queue behind the events already queued, and a request made while a watcher catches up (a watch
    /// from an old revision, or one whose client read slowly) is deferred until the last of them is synced,
    /// canceled or compacted away, with or without events on the way.
    public func requestProgress(on stream: WatchStream) {
        state.withLock { s in
            stream.state.withLock { $0.progressRequested = true }
            sendProgressIfRequested(stream, in: s)
        }
    }

    private func sendProgressIfRequested(_ stream: WatchStream, in s: State) {
        let keys = s.streams[ObjectIdentifier(stream)] ?? []
        guard keys.allSatisfy({ s.watchers[$0]?.synced ?? true }) else { return }
        let requested = stream.state.withLock { st -> Bool in
            defer { st.progressRequested = false }
            return st.progressRequested
        }
        guard requested else { return }
        var response = Etcdserverpb_WatchResponse()
        response.header = header(s.currentRevision)
        response.watchID = -1
        stream.send(response)
    }

    /// Periodic progress notification for synced watchers that asked for it (`progress_notify`), except those
    /// that were sent events since the last one, as etcd skips them.
    public func notifyProgress() {
        state.withLock { s in
            for watcher in s.watchers.values where watcher.spec.progressNotify {
                if watcher.sentSinceProgress {
                    watcher.sentSinceProgress = false
                    continue
                }
                guard watcher.synced else { continue }
                var response = Etcdserverpb_WatchResponse()
                response.header = header(s.currentRevision)
                response.watchID = watcher.watchID
                _ = watcher.stream.offer(.message(response))
            }
        }
    }
}

/// Rules of the watch hub that can be switched off to show that the member simulation catches their absence.
///
/// TEST-ONLY. Never set in production: every case breaks a watch guarantee by design.
public enum WatchMutation: String, Sendable, CaseIterable {
    /// Catching a watcher up from history starts one revision past the one it needs next (an off-by-one): that
    /// revision is lost (a gap) whenever a watcher starts in the past, resumes, or fell behind.
    case catchUpStartsPastTheNextRevision
}
