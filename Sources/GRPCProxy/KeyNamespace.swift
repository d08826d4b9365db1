import EtcdProto
import Foundation

/// `--namespace`: the proxy's clients see the key space under a prefix as the whole key space, as etcd's proxy
/// does with clientv3's `namespace` package: keys and ranges are prefixed on the way in and the prefix is stripped
/// from the keys that come back (KV, Txn, Watch, and the keys of a lease's TimeToLive).
package struct KeyNamespace: Sendable {
    package let prefix: Data

    package init(_ prefix: String) {
        self.prefix = Data(prefix.utf8)
    }

    package var isEmpty: Bool { prefix.isEmpty }

    /// clientv3's `prefixInterval`: the prefixed key, and the prefixed end (`\0`, the end of the key space,
    /// becomes the end of the prefix's space).
    package func interval(key: Data, end: Data) -> (key: Data, end: Data) {
        let prefixedKey = prefix + key
        if end == Data([0]) {
            var bytes = [UInt8](prefix)
            while let last = bytes.last {
                if last < 0xff {
                    bytes[bytes.count - 1] = last + 1
                    return (prefixedKey, Data(bytes))
                }
                bytes.removeLast()
            }
            return (prefixedKey, Data([0]))
        }
        if end.isEmpty { return (prefixedKey, Data()) }
        return (prefixedKey, prefix + end)
    }

    package func strip(_ key: Data) -> Data {
        key.starts(with: prefix) ? key.dropFirst(prefix.count) : key
    }

    // MARK: requests

    package func range(_ r: Etcdserverpb_RangeRequest) -> Etcdserverpb_RangeRequest {
        var r = r
        (r.key, r.rangeEnd) = interval(key: r.key, end: r.rangeEnd)
        return r
    }

    package func put(_ r: Etcdserverpb_PutRequest) -> Etcdserverpb_PutRequest {
        var r = r
        r.key = prefix + r.key
        return r
    }

    package func deleteRange(_ r: Etcdserverpb_DeleteRangeRequest) -> Etcdserverpb_DeleteRangeRequest {
        var r = r
        (r.key, r.rangeEnd) = interval(key: r.key, end: r.rangeEnd)
        return r
    }

    package func txn(_ r: Etcdserverpb_TxnRequest) -> Etcdserverpb_TxnRequest {
        var r = r
        r.compare = r.compare.map { compare in
            var compare = compare
            (compare.key, compare.rangeEnd) = interval(key: compare.key, end: compare.rangeEnd)
            return compare
        }
        r.success = r.success.map(op)
        r.failure = r.failure.map(op)
        return r
    }

    private func op(_ op: Etcdserverpb_RequestOp) -> Etcdserverpb_RequestOp {
        var op = op
        switch op.request {
        case .requestRange(let r): op.requestRange = range(r)
        case .requestPut(let r): op.requestPut = put(r)
        case .requestDeleteRange(let r): op.requestDeleteRange = deleteRange(r)
        case .requestTxn(let r): op.requestTxn = txn(r)
        case nil: break
        }
        return op
    }

    package func watchCreate(_ r: Etcdserverpb_WatchCreateRequest) -> Etcdserverpb_WatchCreateRequest {
        var r = r
        (r.key, r.rangeEnd) = interval(key: r.key, end: r.rangeEnd)
        return r
    }

    // MARK: responses

    private func kv(_ kv: Mvccpb_KeyValue) -> Mvccpb_KeyValue {
        var kv = kv
        kv.key = strip(kv.key)
        return kv
    }

    package func range(_ r: Etcdserverpb_RangeResponse) -> Etcdserverpb_RangeResponse {
        var r = r
        r.kvs = r.kvs.map(kv)
        return r
    }

    package func put(_ r: Etcdserverpb_PutResponse) -> Etcdserverpb_PutResponse {
        var r = r
        if r.hasPrevKv { r.prevKv = kv(r.prevKv) }
        return r
    }

    package func deleteRange(_ r: Etcdserverpb_DeleteRangeResponse) -> Etcdserverpb_DeleteRangeResponse {
        var r = r
        r.prevKvs = r.prevKvs.map(kv)
        return r
    }

    package func txn(_ r: Etcdserverpb_TxnResponse) -> Etcdserverpb_TxnResponse {
        var r = r
        r.responses = r.responses.map { op in
            var op = op
            switch op.response {
            case .responseRange(let x): op.responseRange = range(x)
            case .responsePut(let x): op.responsePut = put(x)
            case .responseDeleteRange(let x): op.responseDeleteRange = deleteRange(x)
            case .responseTxn(let x): op.responseTxn = txn(x)
            case nil: break
            }
            return op
        }
        return r
    }

    package func watch(_ r: Etcdserverpb_WatchResponse) -> Etcdserverpb_WatchResponse {
        var r = r
        r.events = r.events.map { event in
            var event = event
            event.kv = kv(event.kv)
            if event.hasPrevKv { event.prevKv = kv(event.prevKv) }
            return event
        }
        return r
    }

    /// clientv3's `leasePrefix.TimeToLive`: keys outside the namespace are left out, the others stripped.
    package func timeToLive(_ r: Etcdserverpb_LeaseTimeToLiveResponse) -> Etcdserverpb_LeaseTimeToLiveResponse {
        var r = r
        r.keys = r.keys.filter { $0.starts(with: prefix) }.map(strip)
        return r
    }
}
