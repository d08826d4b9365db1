import EtcdAPI
import EtcdProto
import GRPCCore
import MVCC
import Node

/// etcdserverpb.Watch: one bidirectional stream carries many watchers.
///
/// Requests are read on one task and responses written on another: the hub queues responses on the stream's
/// bounded `WatchStream`, and the writer drains it, so a client that stops reading only fills its own queue.
struct WatchService: Etcdserverpb_Watch.SimpleServiceProtocol {
    let handler: EtcdHandler

    func watch(
        request: RPCAsyncSequence<Etcdserverpb_WatchRequest, any Error>,
        response: RPCWriter<Etcdserverpb_WatchResponse>,
        context: ServerContext
    ) async throws {
        let hub = handler.node.hub!
        let stream = WatchStream()
        defer { hub.closeStream(stream) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // Batches: the responses a fanned-out write queued together go out in one write and one flush.
                while let batch = await stream.nextBatch() {
                    try await response.write(contentsOf: batch)
                }
            }
            group.addTask {
                // A client that half-closes keeps its watchers (as with etcd); only an error or a cancellation
                // of the RPC ends the stream.
                do {
                    for try await message in request {
                        WatchService.handle(message, on: stream, hub: hub, handler: handler)
                    }
                } catch {
                    stream.close()
                    throw error
                }
            }
            try await group.waitForAll()
        }
    }

    static func handle(_ message: Etcdserverpb_WatchRequest, on stream: WatchStream, hub: WatchHub, handler: EtcdHandler)
    {
        switch message.requestUnion {
        case .createRequest(let create):
            let spec = WatchRequestSpec(
                range: KeyRange(key: create.key, rangeEnd: create.rangeEnd),
                startRevision: create.startRevision,
                prevKV: create.prevKv,
                filterPut: create.filters.contains(.noput),
                filterDelete: create.filters.contains(.nodelete),
                progressNotify: create.progressNotify,
                requestedID: create.watchID)
            hub.watch(spec, on: stream)
        case .cancelRequest(let cancel):
            if hub.cancel(watchID: cancel.watchID, on: stream) {
                var response = Etcdserverpb_WatchResponse()
                response.header = handler.node.header(revision: handler.node.store.revisions.current)
                response.watchID = cancel.watchID
                response.canceled = true
                stream.send(response)
            }
        case .progressRequest:
            hub.requestProgress(on: stream)
        case .none:
            break
        }
    }
}
