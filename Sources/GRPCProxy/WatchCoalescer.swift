import EtcdProto
import Foundation

/// etcd's grpc-proxy watch coalescing, as a state machine: client watchers on the same key range whose start
/// revisions allow it share one upstream watch (a "broadcast"), whose responses fan out to each of them.
///
/// The rules are etcd's (`watch_broadcast.go`, `watch_broadcasts.go`, `watcher.go`):
/// - a broadcast knows `nextRevision`, the first revision it has not delivered yet;
/// - a watcher may join a broadcast that will not skip events it wants: one that starts at or before the watcher's
///   start revision. A watcher of "now" (start revision 0) joins a broadcast already running (it sees everything
///   from the broadcast's next revision; its created response is made here, as etcd makes it) or one still waiting
///   for its own "now";
/// - otherwise it gets a new broadcast (a new upstream watch from its start revision). After each upstream
///   response, a broadcast with fewer than 5 watchers that has caught up with another running broadcast of the
///   same range hands its watchers over and its upstream watch is cancelled;
/// - each watcher filters what it is sent: events older than its own next revision (it may have joined a
///   broadcast that is behind), its NOPUT/NODELETE filters, previous values it did not ask for, progress
///   notifications it did not ask for;
/// - the last watcher of a broadcast leaving cancels the upstream watch.
///
/// Upstream watches ask for previous values and progress notifications, so every watcher can be served from them.
/// The driver (`WatchProxy`) performs the actions in order: opening and cancelling upstream watches, and queueing
/// responses to client streams (bounded there).
package struct WatchCoalescer: Sendable {
    /// One client watcher: the client stream it belongs to and the id the proxy gave it on that stream.
    package struct WatcherID: Hashable, Sendable {
        package var stream: Int
        package var watch: Int64

        package init(stream: Int, watch: Int64) {
            self.stream = stream
            self.watch = watch
        }
    }

    struct Range: Hashable {
        var key: Data
        var end: Data
    }

    struct Watcher {
        var range: Range
        var nextRevision: Int64
        var progressNotify: Bool
        var prevKV: Bool
        var noPut: Bool
        var noDelete: Bool
        var broadcast: Int
    }

    struct Broadcast {
        var range: Range
        var nextRevision: Int64
        var responses = 0
        var receivers: Set<WatcherID> = []
    }

    package enum Action: Equatable, Sendable {
        /// Start an upstream watch of `key`..`rangeEnd` from `startRevision` (0: now), with previous values,
        /// progress notifications and a created notification.
        case openUpstream(broadcast: Int, key: Data, rangeEnd: Data, startRevision: Int64)
        case cancelUpstream(broadcast: Int)
        /// Queue `response` on client stream `stream`.
        case send(stream: Int, Etcdserverpb_WatchResponse)
    }

    /// etcd's `maxCoalesceReceivers`: broadcasts this large are not merged into others.
    static let maxCoalesceReceivers = 5

    private var watchers: [WatcherID: Watcher] = [:]
    private var broadcasts: [Int: Broadcast] = [:]
    private var nextBroadcast = 1
    private var nextWatchID: [Int: Int64] = [:]

    package init() {}

    /// Upstream watches open (what the members see).
    package var upstreamCount: Int { broadcasts.count }
    package var watcherCount: Int { watchers.count }
    /// etcd's `watchers_coalescing_total`: watchers served by a broadcast beyond its first.
    package var coalescingWatchers: Int { broadcasts.values.reduce(0) { $0 + max(0, $1.receivers.count - 1) } }

    /// Where a broadcast's upstream watch resumes after its stream to a member failed.
    package func resumeRevision(broadcast: Int) -> Int64? { broadcasts[broadcast]?.nextRevision }

    /// A client asked for a watch on `stream`. Its id is the stream's next (etcd's proxy numbers from 0 and ignores
    /// a requested id).
    package mutating func onCreate(stream: Int, _ request: Etcdserverpb_WatchCreateRequest) -> [Action] {
        let range = Range(key: request.key, end: request.rangeEnd)
        guard Self.isValid(range) else {
            var refused = Etcdserverpb_WatchResponse()
            refused.watchID = -1
            refused.created = true
            refused.canceled = true
            return [.send(stream: stream, refused)]
        }
        let watchID = nextWatchID[stream, default: 0]
        nextWatchID[stream] = watchID + 1
        let id = WatcherID(stream: stream, watch: watchID)
        var watcher = Watcher(
            range: range, nextRevision: max(0, request.startRevision), progressNotify: request.progressNotify,
            prevKV: request.prevKv, noPut: request.filters.contains(.noput),
            noDelete: request.filters.contains(.nodelete), broadcast: 0)
        // A running broadcast that has not gone past the watcher's start (any running one for a watch of "now"),
        // else one still starting from the same point.
        let candidates = broadcasts.filter { $0.value.range == range }.sorted { $0.key < $1.key }
        for (number, broadcast) in candidates {
            if broadcast.responses > 0 {
                guard watcher.nextRevision == 0 || broadcast.nextRevision <= watcher.nextRevision else { continue }
                if watcher.nextRevision == 0 { watcher.nextRevision = broadcast.nextRevision }
                watcher.broadcast = number
                watchers[id] = watcher
                broadcasts[number]!.receivers.insert(id)
                var created = Etcdserverpb_WatchResponse()
                created.header.revision = max(0, broadcast.nextRevision - 1)
                created.watchID = watchID
                created.created = true
                return [.send(stream: stream, created)]
            }
            let sameStart =
                broadcast.nextRevision == watcher.nextRevision
                || (broadcast.nextRevision != 0 && broadcast.nextRevision <= watcher.nextRevision)
            if sameStart {
                watcher.broadcast = number
                watchers[id] = watcher
                broadcasts[number]!.receivers.insert(id)
                return []
            }
        }
        let number = nextBroadcast
        nextBroadcast += 1
        var broadcast = Broadcast(range: range, nextRevision: watcher.nextRevision)
        broadcast.receivers = [id]
        broadcasts[number] = broadcast
        watcher.broadcast = number
        watchers[id] = watcher
        return [
            .openUpstream(
                broadcast: number, key: range.key, rangeEnd: range.end, startRevision: watcher.nextRevision)
        ]
    }

    /// etcd's `watchRange.valid`: no end, an end after the key, or `\0` (from the key on).
    static func isValid(_ range: Range) -> Bool {
        range.end.isEmpty || range.end == Data([0])
            || range.key.lexicographicallyPrecedes(range.end)
    }

    /// The client cancelled watch `watchID` on `stream`; it is told so (with the last header it saw, etcd sends
    /// its `lastHeader`; here the revision before its next one).
    package mutating func onCancel(stream: Int, watchID: Int64) -> [Action] {
        let id = WatcherID(stream: stream, watch: watchID)
        guard let watcher = watchers[id] else { return [] }
        var actions = remove(id)
        var canceled = Etcdserverpb_WatchResponse()
        canceled.header.revision = max(0, watcher.nextRevision - 1)
        canceled.watchID = watchID
        canceled.canceled = true
        actions.append(.send(stream: stream, canceled))
        return actions
    }

    /// The client stream ended (or was cut off): all its watchers go.
    package mutating func onStreamClosed(stream: Int) -> [Action] {
        nextWatchID[stream] = nil
        let mine = watchers.keys.filter { $0.stream == stream }.sorted { $0.watch < $1.watch }
        return mine.flatMap { remove($0) }
    }

    /// A response of broadcast `number`'s upstream watch.
    package mutating func onUpstream(broadcast number: Int, _ response: Etcdserverpb_WatchResponse) -> [Action] {
        guard var broadcast = broadcasts[number] else { return [] }
        // A resumed upstream watch (after a member failed) announces itself again: the watchers already know.
        if response.created && broadcast.responses > 0 && response.events.isEmpty && !response.canceled {
            return []
        }
        if broadcast.responses > 0 || broadcast.nextRevision == 0 {
            broadcast.nextRevision = response.header.revision + 1
        }
        broadcast.responses += 1
        broadcasts[number] = broadcast
        var actions: [Action] = []
        for id in broadcast.receivers.sorted(by: { ($0.stream, $0.watch) < ($1.stream, $1.watch) }) {
            if let message = deliver(response, to: id) { actions.append(.send(stream: id.stream, message)) }
        }
        if response.canceled {
            // The member ended the watch (compaction, permission): the watchers were told; nothing more comes.
            for id in broadcast.receivers { watchers[id] = nil }
            broadcasts[number] = nil
            return actions
        }
        actions += coalesce(number)
        return actions
    }

    /// etcd's `watcher.send`: what watcher `id` is sent of an upstream response (nil: nothing).
    private mutating func deliver(_ response: Etcdserverpb_WatchResponse, to id: WatcherID)
        -> Etcdserverpb_WatchResponse?
    {
        guard var watcher = watchers[id] else { return nil }
        let isProgress =
            response.events.isEmpty && !response.canceled && !response.created && response.compactRevision == 0
            && response.header.revision != 0
        if isProgress && !watcher.progressNotify { return nil }
        if watcher.nextRevision > response.header.revision && !response.events.isEmpty { return nil }
        if watcher.nextRevision == 0 { watcher.nextRevision = response.header.revision + 1 }
        var events: [Mvccpb_Event] = []
        var lastRevision: Int64 = 0
        for var event in response.events {
            if event.kv.modRevision < watcher.nextRevision { continue }
            lastRevision = event.kv.modRevision
            if (event.type == .put && watcher.noPut) || (event.type == .delete && watcher.noDelete) { continue }
            if !watcher.prevKV { event.clearPrevKv() }
            events.append(event)
        }
        if lastRevision >= watcher.nextRevision { watcher.nextRevision = lastRevision + 1 }
        watchers[id] = watcher
        if !isProgress && !response.created && !response.canceled && events.isEmpty && response.compactRevision == 0 {
            return nil
        }
        var message = Etcdserverpb_WatchResponse()
        message.header = response.header
        message.created = response.created
        message.canceled = response.canceled
        message.cancelReason = response.cancelReason
        message.compactRevision = response.compactRevision
        message.watchID = id.watch
        message.events = events
        return message
    }

    /// etcd's `watchBroadcasts.coalesce`: a small broadcast that caught up with a running one of the same range
    /// joins it, and its own upstream watch goes.
    private mutating func coalesce(_ number: Int) -> [Action] {
        guard let broadcast = broadcasts[number], broadcast.receivers.count < Self.maxCoalesceReceivers else {
            return []
        }
        let target = broadcasts.filter { other in
            other.key != number && other.value.range == broadcast.range && other.value.responses > 0
                && broadcast.nextRevision >= other.value.nextRevision
        }.min { $0.key < $1.key }
        guard let (into, _) = target else { return [] }
        for id in broadcast.receivers {
            watchers[id]?.broadcast = into
            broadcasts[into]!.receivers.insert(id)
        }
        broadcasts[number] = nil
        return [.cancelUpstream(broadcast: number)]
    }

    private mutating func remove(_ id: WatcherID) -> [Action] {
        guard let watcher = watchers.removeValue(forKey: id) else { return [] }
        broadcasts[watcher.broadcast]?.receivers.remove(id)
        if let broadcast = broadcasts[watcher.broadcast], broadcast.receivers.isEmpty {
            broadcasts[watcher.broadcast] = nil
            return [.cancelUpstream(broadcast: watcher.broadcast)]
        }
        return []
    }
}
