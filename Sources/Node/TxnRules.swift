import EtcdProto
import Foundation
import MVCC

/// Request validation with etcd's rules and errors. `validate…` runs before proposing (cheap, stateless);
/// `check…` runs at apply time against the state the request will modify.
public enum TxnRules {
    // MARK: Before proposing

    public static func validate(_ r: Etcdserverpb_RangeRequest) throws(EtcdError) {
        if r.key.isEmpty { throw .emptyKey }
        if case .UNRECOGNIZED = r.sortOrder { throw .invalidSortOption }
        if case .UNRECOGNIZED = r.sortTarget { throw .invalidSortOption }
    }

    public static func validate(_ r: Etcdserverpb_PutRequest) throws(EtcdError) {
        if r.key.isEmpty { throw .emptyKey }
        if r.ignoreValue && !r.value.isEmpty { throw .valueProvided }
        if r.ignoreLease && r.lease != 0 { throw .leaseProvided }
    }

    public static func validate(_ r: Etcdserverpb_DeleteRangeRequest) throws(EtcdError) {
        if r.key.isEmpty { throw .emptyKey }
    }

    public static func validate(_ r: Etcdserverpb_TxnRequest, maxOps: Int) throws(EtcdError) {
        if max(r.compare.count, r.success.count, r.failure.count) > maxOps { throw .tooManyOps }
        for c in r.compare where c.key.isEmpty { throw .emptyKey }
        for op in r.success + r.failure {
            switch op.request {
            case .requestRange(let x): try validate(x)
            case .requestPut(let x): try validate(x)
            case .requestDeleteRange(let x): try validate(x)
            case .requestTxn(let x): try validate(x, maxOps: maxOps)
            // etcd's `checkRequestOp`: an operation with no request (e.g. JSON naming a field that does not exist)
            case .none: throw .keyNotFound
            }
        }
        _ = try writtenKeys(r.success)
        _ = try writtenKeys(r.failure)
    }

    /// Keys put and ranges deleted by one branch, including nested txns; a key written twice, or put and
    /// deleted, in what could run together is `duplicateKey`. The two branches of a nested txn never both run,
    /// so the same key may appear in each.
    static func writtenKeys(_ ops: [Etcdserverpb_RequestOp]) throws(EtcdError) -> (puts: Set<Data>, deletes: [KeyRange])
    {
        var deletes: [KeyRange] = []
        for op in ops {
            if case .requestDeleteRange(let d) = op.request {
                deletes.append(KeyRange(key: d.key, rangeEnd: d.rangeEnd))
            }
        }
        func deleted(_ key: Data) -> Bool { deletes.contains { $0.contains(key) } }
        var puts: Set<Data> = []
        for op in ops {
            guard case .requestTxn(let nested) = op.request else { continue }
            let then = try writtenKeys(nested.success)
            let otherwise = try writtenKeys(nested.failure)
            for key in then.puts {
                if puts.contains(key) || deleted(key) { throw .duplicateKey }
                puts.insert(key)
            }
            for key in otherwise.puts {
                if (puts.contains(key) && !then.puts.contains(key)) || deleted(key) { throw .duplicateKey }
                puts.insert(key)
            }
            deletes += then.deletes + otherwise.deletes
        }
        for op in ops {
            guard case .requestPut(let p) = op.request else { continue }
            if puts.contains(p.key) || deleted(p.key) { throw .duplicateKey }
            puts.insert(p.key)
        }
        return (puts, deletes)
    }

    public static func hasPut(_ r: Etcdserverpb_TxnRequest) -> Bool {
        (r.success + r.failure).contains { op in
            switch op.request {
            case .requestPut: return true
            case .requestTxn(let nested): return hasPut(nested)
            default: return false
            }
        }
    }

    // MARK: At apply time

    /// Evaluates the compares of `r` and of every nested txn on the chosen path, depth first, in the order
    /// `execute` consumes them.
    static func decidePath(_ r: Etcdserverpb_TxnRequest, read: (KeyRange) throws -> [Mvccpb_KeyValue]) throws
        -> [Bool]
    {
        var path: [Bool] = []
        func walk(_ t: Etcdserverpb_TxnRequest) throws {
            let ok = try t.compare.allSatisfy { try holds($0, read: read) }
            path.append(ok)
            for op in ok ? t.success : t.failure {
                if case .requestTxn(let nested) = op.request { try walk(nested) }
            }
        }
        try walk(r)
        return path
    }

    static func holds(_ c: Etcdserverpb_Compare, read: (KeyRange) throws -> [Mvccpb_KeyValue]) throws -> Bool {
        let kvs = try read(KeyRange(key: c.key, rangeEnd: c.rangeEnd))
        if kvs.isEmpty {
            // A missing key compares as all zeros, except that a value comparison against it always fails.
            if c.target == .value { return false }
            return compare(c, Mvccpb_KeyValue())
        }
        return kvs.allSatisfy { compare(c, $0) }
    }

    private static func compare(_ c: Etcdserverpb_Compare, _ kv: Mvccpb_KeyValue) -> Bool {
        func order(_ a: Int64, _ b: Int64) -> Int { a < b ? -1 : (a > b ? 1 : 0) }
        let result: Int
        switch c.target {
        case .value:
            let target: Data
            if case .value(let v) = c.targetUnion { target = v } else { target = Data() }
            result = KeyRange.compare(kv.value, target)
        case .create:
            if case .createRevision(let v) = c.targetUnion {
                result = order(kv.createRevision, v)
            } else {
                result = order(kv.createRevision, 0)
            }
        case .mod:
            if case .modRevision(let v) = c.targetUnion {
                result = order(kv.modRevision, v)
            } else {
                result = order(kv.modRevision, 0)
            }
        case .version:
            if case .version(let v) = c.targetUnion {
                result = order(kv.version, v)
            } else {
                result = order(kv.version, 0)
            }
        case .lease:
            if case .lease(let v) = c.targetUnion { result = order(kv.lease, v) } else { result = order(kv.lease, 0) }
        case .UNRECOGNIZED:
            return false
        }
        switch c.result {
        case .equal: return result == 0
        case .notEqual: return result != 0
        case .greater: return result > 0
        case .less: return result < 0
        case .UNRECOGNIZED: return false
        }
    }

    /// Apply-time checks of the ops the path will run: leases exist, `ignore_*` keys exist, historical ranges
    /// are readable. Done before any write so that a failure leaves nothing half-applied.
    static func check(
        _ r: Etcdserverpb_TxnRequest, path: inout ArraySlice<Bool>, txn: KVWriteTxn, leases: Leases
    ) throws {
        let ok = path.popFirst()!
        for op in ok ? r.success : r.failure {
            switch op.request {
            case .requestPut(let p): try checkPut(p, txn: txn, leases: leases)
            case .requestRange(let range):
                if range.revision > 0 {
                    let revisions = txn.store.revisions
                    if range.revision > txn.revision { throw EtcdError.futureRevision }
                    if range.revision < revisions.compacted { throw EtcdError.compacted }
                }
            case .requestTxn(let nested): try check(nested, path: &path, txn: txn, leases: leases)
            default: break
            }
        }
    }

    static func checkPut(_ p: Etcdserverpb_PutRequest, txn: KVWriteTxn, leases: Leases) throws {
        if p.ignoreValue || p.ignoreLease {
            if try txn.get(p.key) == nil { throw EtcdError.keyNotFound }
        }
        if p.lease != 0 && !leases.contains(p.lease) { throw EtcdError.leaseNotFound }
    }
}
