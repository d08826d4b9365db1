import EtcdProto
import MVCC

/// etcd's Range semantics on top of the store's ordered scan: revision filters, sorting, `limit` and `more`.
public enum RangeExecution {
    public static func execute(
        _ r: Etcdserverpb_RangeRequest, read: (KeyRange, RangeOptions) throws -> RangeResult
    ) throws -> Etcdserverpb_RangeResponse {
        let filtered =
            r.minModRevision != 0 || r.maxModRevision != 0 || r.minCreateRevision != 0
            || r.maxCreateRevision != 0
        var sortOrder = r.sortOrder
        if r.sortTarget != .key && sortOrder == .none { sortOrder = .ascend }
        // The store returns keys in ascending order, so a limit can be pushed down unless sorting or filtering
        // needs to see everything first; one extra key tells whether there is `more`.
        let pushDown = !filtered && (sortOrder == .none || (sortOrder == .ascend && r.sortTarget == .key))
        var options = RangeOptions(revision: r.revision, countOnly: r.countOnly, keysOnly: r.keysOnly)
        if r.limit > 0 && pushDown { options.limit = Int(r.limit) + 1 }

        let result: RangeResult
        do {
            result = try read(KeyRange(key: r.key, rangeEnd: r.rangeEnd), options)
        } catch let error as MVCCError {
            throw error == .compacted ? EtcdError.compacted : EtcdError.futureRevision
        }
        var kvs = result.kvs
        if filtered {
            kvs.removeAll { kv in
                (r.minModRevision > 0 && kv.modRevision < r.minModRevision)
                    || (r.maxModRevision > 0 && kv.modRevision > r.maxModRevision)
                    || (r.minCreateRevision > 0 && kv.createRevision < r.minCreateRevision)
                    || (r.maxCreateRevision > 0 && kv.createRevision > r.maxCreateRevision)
            }
        }
        if sortOrder != .none && !(sortOrder == .ascend && r.sortTarget == .key) {
            kvs = sort(kvs, target: r.sortTarget, descending: sortOrder == .descend)
        }
        var response = Etcdserverpb_RangeResponse()
        if r.limit > 0 && kvs.count > Int(r.limit) {
            kvs.removeLast(kvs.count - Int(r.limit))
            response.more = true
        }
        response.header.revision = result.revision
        response.kvs = kvs
        response.count = Int64(result.count)
        return response
    }

    /// Stable: ties keep key order, so the answer is deterministic.
    private static func sort(
        _ kvs: [Mvccpb_KeyValue], target: Etcdserverpb_RangeRequest.SortTarget, descending: Bool
    ) -> [Mvccpb_KeyValue] {
        func compare(_ a: Mvccpb_KeyValue, _ b: Mvccpb_KeyValue) -> Int {
            switch target {
            case .key: return KeyRange.compare(a.key, b.key)
            case .version: return a.version < b.version ? -1 : (a.version > b.version ? 1 : 0)
            case .create:
                return a.createRevision < b.createRevision ? -1 : (a.createRevision > b.createRevision ? 1 : 0)
            case .mod: return a.modRevision < b.modRevision ? -1 : (a.modRevision > b.modRevision ? 1 : 0)
            case .value: return KeyRange.compare(a.value, b.value)
            case .UNRECOGNIZED: return 0
            }
        }
        let indexed = kvs.enumerated().map { ($0.offset, $0.element) }
        return indexed.sorted { x, y in
            let c = compare(x.1, y.1)
            if c != 0 { return descending ? c > 0 : c < 0 }
            return x.0 < y.0
        }.map(\.1)
    }
}
