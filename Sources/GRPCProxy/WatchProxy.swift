import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import Logging
import Synchronization

/// Serves the Watch method: client watchers go into the `WatchCoalescer`, whose actions this performs: upstream
/// watches opened on (and resumed across) members, and responses queued to client streams.
///
/// Each client stream has a queue of `streamBuffer` responses (etcd's proxy's `watchCh`). Upstream responses are
/// never held up by a client: one that does not read and lets its queue fill is cut off (its stream ends
/// "context canceled", as etcd's proxy cancels a watch stream it cannot post to), so memory stays bounded.
package final class WatchProxy: Sendable {
    /// etcd's proxy's per-stream channel of 1024 responses.
    static let streamBuffer = 1024

    private enum Outbound: Sendable {
        case response(Etcdserverpb_WatchResponse)
    }

    private final class ClientStream: Sendable {
        let continuation: AsyncStream<Outbound>.Continuation
        /// Told once when the client is cut off: its writer may be blocked on the client's flow control, so the
        /// stream ends from here instead.
        let cutOff: AsyncStream<Void>.Continuation
        let overflowed = Atomic<Bool>(false)

        init(continuation: AsyncStream<Outbound>.Continuation, cutOff: AsyncStream<Void>.Continuation) {
            self.continuation = continuation
            self.cutOff = cutOff
        }
    }

    private struct State {
        var coalescer = WatchCoalescer()
        var streams: [Int: ClientStream] = [:]
        var upstreams: [Int: Task<Void, Never>] = [:]
        var nextStream = 1
    }

    private let state = Mutex(State())
    private let core: ProxyCore

    package init(core: ProxyCore) {
        self.core = core
    }

    /// Upstream watches open now (for tests and metrics).
    package var upstreamWatchCount: Int { state.withLock { $0.coalescer.upstreamCount } }

    func serve(_ request: StreamingServerRequest<Etcdserverpb_WatchRequest>, context: ServerContext)
        -> StreamingServerResponse<Etcdserverpb_WatchResponse>
    {
        let metadata = ProxyCore.forwarded(request.metadata)
        return StreamingServerResponse(metadata: [:]) { [self] writer in
            let (responses, continuation) = AsyncStream.makeStream(
                of: Outbound.self, bufferingPolicy: .bufferingOldest(Self.streamBuffer))
            let (cutOff, cutOffContinuation) = AsyncStream.makeStream(
                of: Void.self, bufferingPolicy: .bufferingNewest(1))
            let client = ClientStream(continuation: continuation, cutOff: cutOffContinuation)
            let stream = state.withLock { state in
                let number = state.nextStream
                state.nextStream += 1
                state.streams[number] = client
                return number
            }
            defer {
                perform { state in
                    state.streams[stream] = nil
                    return state.coalescer.onStreamClosed(stream: stream)
                }
                continuation.finish()
                cutOffContinuation.finish()
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { [self] in
                    for try await message in request.messages {
                        switch message.requestUnion {
                        case .createRequest(let create):
                            await self.create(stream: stream, create, metadata: metadata)
                        case .cancelRequest(let cancel):
                            perform { $0.coalescer.onCancel(stream: stream, watchID: cancel.watchID) }
                        case .progressRequest, nil:
                            // etcd 3.4's proxy ignores progress requests.
                            break
                        }
                    }
                    // The client half-closed: its watchers stay until it goes, as on a member.
                    try await Task.sleep(for: .seconds(365 * 86_400))
                }
                group.addTask { [namespace = core.namespace] in
                    for await item in responses {
                        if client.overflowed.load(ordering: .relaxed) {
                            throw RPCError(code: .cancelled, message: "context canceled")
                        }
                        switch item {
                        case .response(let response):
                            try await writer.write(namespace.isEmpty ? response : namespace.watch(response))
                        }
                    }
                    if client.overflowed.load(ordering: .relaxed) {
                        throw RPCError(code: .cancelled, message: "context canceled")
                    }
                }
                group.addTask {
                    for await _ in cutOff { throw RPCError(code: .cancelled, message: "context canceled") }
                }
                // A client that half-closed and then went away is noticed only through the RPC's cancellation.
                group.addTask {
                    try await context.cancellation.cancelled
                    throw RPCError(code: .cancelled, message: "context canceled")
                }
                defer { group.cancelAll() }
                try await group.next()
            }
            return [:]
        }
    }

    /// etcd's proxy checks that the client may read the range (a serializable count-only read with its token)
    /// before watching it for them; a refusal is a created-and-canceled response with the reason.
    private func create(stream: Int, _ request: Etcdserverpb_WatchCreateRequest, metadata: Metadata) async {
        var check = Etcdserverpb_RangeRequest()
        check.key = request.key.isEmpty ? Data([0]) : request.key
        check.rangeEnd = request.key.isEmpty ? Data([0]) : request.rangeEnd
        check.serializable = true
        check.countOnly = true
        check.limit = 1
        let upstreamCheck = core.namespace.range(check)
        let options = core.upstream.callOptions
        do {
            _ = try await core.upstream.call { client in
                try await Etcdserverpb_KV.Client(wrapping: client).range(
                    upstreamCheck, metadata: metadata, options: options)
            }
        } catch {
            var refused = Etcdserverpb_WatchResponse()
            refused.header = Etcdserverpb_ResponseHeader()
            refused.watchID = -1
            refused.created = true
            refused.canceled = true
            refused.cancelReason = (error as? RPCError)?.message ?? "\(error)"
            perform { _ in [.send(stream: stream, refused)] }
            return
        }
        let upstreamRequest = core.namespace.isEmpty ? request : core.namespace.watchCreate(request)
        perform(token: metadata) { $0.coalescer.onCreate(stream: stream, upstreamRequest) }
    }

    /// Changes the state and performs the resulting actions, in order, under the lock (none of them blocks).
    private func perform(token: Metadata = [:], _ change: (inout State) -> [WatchCoalescer.Action]) {
        state.withLock { state in
            for action in change(&state) {
                switch action {
                case .send(let stream, let response):
                    guard let client = state.streams[stream] else { continue }
                    if case .dropped = client.continuation.yield(.response(response)),
                        !client.overflowed.exchange(true, ordering: .relaxed)
                    {
                        // A client this far behind is cut off (its watchers go when its stream ends).
                        client.continuation.finish()
                        client.cutOff.yield(())
                        core.metrics.slowWatchStreams.increment()
                        core.logger.warning("watch stream cut off: the client does not read its responses")
                    }
                case .openUpstream(let broadcast, let key, let rangeEnd, _):
                    state.upstreams[broadcast] = Task { [self] in
                        await runUpstream(broadcast: broadcast, key: key, rangeEnd: rangeEnd, metadata: token)
                    }
                case .cancelUpstream(let broadcast):
                    state.upstreams.removeValue(forKey: broadcast)?.cancel()
                }
            }
            core.metrics.watchers.set(Double(state.coalescer.watcherCount))
            core.metrics.upstreamWatches.set(Double(state.coalescer.upstreamCount))
            core.metrics.watchersCoalescing.set(Double(state.coalescer.coalescingWatchers))
        }
    }

    /// One upstream watch (a broadcast's), on the current member; when the member fails, resumed on the next
    /// from the broadcast's next revision, as clientv3's watcher resumes.
    private func runUpstream(broadcast: Int, key: Data, rangeEnd: Data, metadata: Metadata) async {
        var failures = 0
        while !Task.isCancelled {
            guard let start = state.withLock({ $0.coalescer.resumeRevision(broadcast: broadcast) }) else { break }
            var create = Etcdserverpb_WatchCreateRequest()
            create.key = key
            create.rangeEnd = rangeEnd
            create.startRevision = start
            create.progressNotify = true
            create.prevKv = true
            var request = Etcdserverpb_WatchRequest()
            request.createRequest = create
            let first = request
            let member = core.upstream.current
            let received = Atomic<Bool>(false)
            do {
                let ended: Bool = try await Etcdserverpb_Watch.Client(wrapping: member.client).watch(
                    request: StreamingClientRequest(metadata: metadata) { writer in
                        try await writer.write(first)
                        while true { try await Task.sleep(for: .seconds(86_400)) }
                    },
                    options: core.upstream.callOptions
                ) { [self] response in
                    for try await message in response.messages {
                        received.store(true, ordering: .relaxed)
                        var sent = 0
                        perform { state in
                            let actions = state.coalescer.onUpstream(broadcast: broadcast, message)
                            sent = actions.count { if case .send = $0 { true } else { false } }
                            return actions
                        }
                        // etcd's count: responses fanned out beyond the one an unshared watch would have sent.
                        if sent > 1 { core.metrics.eventsCoalescing.increment(by: Int64(sent - 1)) }
                        if message.canceled { return true }
                    }
                    return false
                }
                if ended { break }
            } catch {
                if Task.isCancelled { break }
                if Upstream.isUnreachable(error) { core.upstream.failed(member) }
                core.logger.debug(
                    "upstream watch failed; resuming",
                    metadata: ["endpoint": "\(member.address)", "error": "\(error)"])
            }
            failures = received.load(ordering: .relaxed) ? 1 : failures + 1
            try? await Task.sleep(for: .milliseconds(min(2_000, 100 * failures)))
        }
        state.withLock { _ = $0.upstreams.removeValue(forKey: broadcast) }
    }
}
