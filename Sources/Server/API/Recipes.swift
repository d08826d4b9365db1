import Auth
import EtcdProto
import Foundation
import MVCC
import Node

/// The server side of etcd's concurrency recipes (locks and elections), built like the client library builds
/// them: a key per lease under a prefix, ownership by lowest create revision, waiting by watching the key just
/// ahead for its deletion.
struct Recipes: Sendable {
    let handler: EtcdHandler
    /// Whose keys these are: every read, write and watch is checked as the caller's own (etcd runs its lock and
    /// election services as clients of itself, passing the caller's token along).
    let caller: Caller

    /// The key a lease owns under `prefix` (etcd: prefix + lease id in hex).
    static func ownKey(prefix: Data, lease: Int64) -> Data {
        prefix + Data(String(UInt64(bitPattern: lease), radix: 16).utf8)
    }

    /// Range over `prefix` returning the oldest (first-created) key, or with `maxCreate` the newest below it.
    func firstCreated(prefix: Data) -> Etcdserverpb_RangeRequest {
        var r = Etcdserverpb_RangeRequest()
        r.key = prefix
        r.rangeEnd = KeyRange.prefixEnd(prefix)
        r.sortTarget = .create
        r.sortOrder = .ascend
        r.limit = 1
        return r
    }

    /// Puts `key` for `lease` unless it exists; returns (create revision of key, whether this call created it,
    /// current owner's create revision, header, existing value).
    func enqueue(key: Data, prefix: Data, value: Data, lease: Int64) async throws(EtcdError) -> (
        myRevision: Int64, owner: Int64?, header: Etcdserverpb_ResponseHeader, existing: Mvccpb_KeyValue?
    ) {
        var txn = Etcdserverpb_TxnRequest()
        var compare = Etcdserverpb_Compare()
        compare.key = key
        compare.target = .create
        compare.result = .equal
        compare.createRevision = 0
        txn.compare = [compare]
        var put = Etcdserverpb_PutRequest()
        put.key = key
        put.value = value
        put.lease = lease
        var get = Etcdserverpb_RangeRequest()
        get.key = key
        var owner = Etcdserverpb_RequestOp()
        owner.requestRange = firstCreated(prefix: prefix)
        var putOp = Etcdserverpb_RequestOp()
        putOp.requestPut = put
        var getOp = Etcdserverpb_RequestOp()
        getOp.requestRange = get
        txn.success = [putOp, owner]
        txn.failure = [getOp, owner]
        let response = try await handler.txn(txn, caller)
        let ownerKVs = response.responses[1].responseRange.kvs
        if response.succeeded {
            return (response.header.revision, ownerKVs.first?.createRevision, response.header, nil)
        }
        guard let existing = response.responses[0].responseRange.kvs.first else { throw EtcdError.keyNotFound }
        return (existing.createRevision, ownerKVs.first?.createRevision, response.header, existing)
    }

    /// Waits until no key under `prefix` has a create revision at or below `maxCreate`.
    func waitDeletes(prefix: Data, maxCreate: Int64) async throws(EtcdError) -> Etcdserverpb_ResponseHeader {
        while true {
            var r = Etcdserverpb_RangeRequest()
            r.key = prefix
            r.rangeEnd = KeyRange.prefixEnd(prefix)
            r.sortTarget = .create
            r.sortOrder = .descend
            r.maxCreateRevision = maxCreate
            r.limit = 1
            let response = try await handler.range(r, caller)
            guard let last = response.kvs.first else { return response.header }
            try await waitForDelete(key: last.key, from: response.header.revision)
            if Task.isCancelled { throw EtcdError(.canceled, "context canceled") }
        }
    }

    /// Waits for the deletion of `key` at or after revision `from`.
    func waitForDelete(key: Data, from revision: Int64) async throws(EtcdError) {
        var watched = Etcdserverpb_WatchCreateRequest()
        watched.key = key
        try handler.check(caller) { (store, info) throws(AuthError) in try store.checkWatch(watched, info) }
        let watch = InternalWatch(handler: handler, range: .single(key), startRevision: revision, filterPut: true)
        defer { watch.close() }
        while let events = await watch.next() {
            if events.contains(where: { $0.type == .delete }) { return }
        }
        throw EtcdError(.canceled, "context canceled")
    }
}

/// A watcher used by the server itself (elections, locks): events of one range, from a revision on.
final class InternalWatch: Sendable {
    private let hub: WatchHub
    private let stream: WatchStream

    init(handler: EtcdHandler, range: KeyRange, startRevision: Int64, filterPut: Bool = false) {
        hub = handler.node.hub
        stream = WatchStream(capacity: 64, wireFormat: false, counters: hub.counters)
        hub.watch(WatchRequestSpec(range: range, startRevision: startRevision, filterPut: filterPut), on: stream)
    }

    /// The next batch of events, or nil when the watch ended (cancelled, or the history was compacted).
    func next() async -> [Mvccpb_Event]? {
        while let response = await stream.next() {
            if response.canceled { return nil }
            if !response.events.isEmpty { return response.events }
        }
        return nil
    }

    func close() { hub.closeStream(stream) }
}
