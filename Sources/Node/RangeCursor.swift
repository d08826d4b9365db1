import EtcdProto
import Foundation
import MVCC

/// A Range read in pages at one pinned revision, so that its answer can be encoded (unary Range) or sent (etcd 3.7's
/// RangeStream) as it is read, instead of gathering every key-value first.
///
/// The first page pins the revision (the request's, or the newest); every later page reads at it, so the pages
/// together are the answer of one read, whatever is written meanwhile. A compaction past the pinned revision fails the
/// next page with `EtcdError.compacted` (the store checks it under the same lock it reads under, and a row removed
/// between the index walk and its fetch fails the page too): no page is ever read from a compacted view.
///
/// The result is exactly `RangeExecution.execute`'s for the same request: the same keys, `more` and `count` (the keys
/// in the range at the revision, whatever `limit` and the revision filters keep). Sorting needs every key before the
/// first can be sent, so only the store's own order is served here (`servesInPages`).
public struct RangeCursor {
    private let request: Etcdserverpb_RangeRequest
    private let store: KVStore
    private let range: KeyRange
    private let filtered: Bool
    private let limit: Int
    /// Revision every page reads at; 0 until the first page pinned it.
    public private(set) var pinnedRevision: Int64 = 0
    /// The store's revision when the first page was read: the answer's `header.revision`, as in a unary Range.
    public private(set) var headerRevision: Int64 = 0
    /// Where the next page starts (nil: at the range's first key).
    private var resume: Data?
    /// Keys the request's answer carries so far (after the revision filters).
    private var emitted = 0
    /// Keys in the range at the revision seen so far (before the filters): `count` when the walk ends.
    private var counted = 0
    /// Keys per page: pages are bounded by bytes too, but values memory does not know the length of (historical
    /// versions) count as empty there, so the key count follows the bytes the last page really had.
    private var pageKeys = 256
    /// No page is left: `count` and `more` are final.
    public private(set) var finished = false
    public private(set) var count: Int64 = 0
    public private(set) var more = false

    /// Whether a request is answered in the store's key order (no sorting): only those can be read in pages.
    public static func servesInPages(_ r: Etcdserverpb_RangeRequest) -> Bool {
        switch (r.sortOrder, r.sortTarget) {
        case (.none, .key), (.ascend, .key): return true
        default: return false
        }
    }

    /// etcd 3.7's refusal of a sorted RangeStream.
    public static let sortRefused = EtcdError(
        .invalidArgument, "etcdserver: RangeStream does not support sort order other than ascending by key; use Range")

    /// `r` must be validated (`TxnRules.validate`) and served in pages (`servesInPages`).
    public init(_ r: Etcdserverpb_RangeRequest, store: KVStore) {
        request = r
        self.store = store
        range = KeyRange(key: r.key, rangeEnd: r.rangeEnd)
        filtered =
            r.minModRevision != 0 || r.maxModRevision != 0 || r.minCreateRevision != 0 || r.maxCreateRevision != 0
        limit = r.limit > 0 ? Int(r.limit) : Int.max
    }

    /// The next key-values of the answer, about `byteBudget` bytes of keys and values; may be empty (the last page, a
    /// page the filters emptied). Call until `finished`.
    public mutating func next(byteBudget: Int) throws(EtcdError) -> [Mvccpb_KeyValue] {
        precondition(!finished, "RangeCursor.next after the last page")
        if request.countOnly {
            let result = try read(RangeOptions(revision: request.revision, countOnly: true))
            pin(result)
            count = Int64(result.count)
            finished = true
            return []
        }
        var options = RangeOptions(revision: pinnedRevision > 0 ? pinnedRevision : request.revision)
        options.keysOnly = request.keysOnly
        options.from = resume
        options.pageBytes = max(1, byteBudget)
        // Unfiltered, one key past what the answer still takes tells whether there is `more`.
        options.limit = filtered || limit == .max ? pageKeys : min(pageKeys, limit - emitted + 1)
        let result = try read(options)
        pin(result)
        counted += result.kvs.count
        var kvs = result.kvs
        if result.resume != nil { adapt(kvs, byteBudget: byteBudget) }
        if filtered {
            let r = request
            kvs.removeAll { kv in
                (r.minModRevision > 0 && kv.modRevision < r.minModRevision)
                    || (r.maxModRevision > 0 && kv.modRevision > r.maxModRevision)
                    || (r.minCreateRevision > 0 && kv.createRevision < r.minCreateRevision)
                    || (r.maxCreateRevision > 0 && kv.createRevision > r.maxCreateRevision)
            }
        }
        if kvs.count > limit - emitted {
            kvs.removeLast(kvs.count - (limit - emitted))
            more = true
            try finish(countingFrom: result.resume)
        } else if result.resume == nil {
            try finish(countingFrom: nil)
        } else {
            resume = result.resume
        }
        emitted += kvs.count
        return kvs
    }

    private mutating func pin(_ result: RangeResult) {
        guard pinnedRevision == 0 else { return }
        headerRevision = result.revision
        // A read of the newest revision read the store's current one, which `result.revision` is.
        pinnedRevision = request.revision > 0 ? request.revision : result.revision
    }

    /// Ends the walk: `count` is the keys seen plus those after `key`, counted from the index alone.
    private mutating func finish(countingFrom key: Data?) throws(EtcdError) {
        var total = counted
        if let key {
            var options = RangeOptions(revision: pinnedRevision, countOnly: true)
            options.from = key
            total += try read(options).count
        }
        count = Int64(total)
        finished = true
    }

    /// Next page's key count from this one's bytes: about `byteBudget`, at most four times this one's.
    private mutating func adapt(_ kvs: [Mvccpb_KeyValue], byteBudget: Int) {
        guard !kvs.isEmpty else { return }
        var bytes = 0
        for kv in kvs { bytes += kv.key.count + kv.value.count + 16 }
        let fitting = max(1, Int(Double(kvs.count) * Double(byteBudget) / Double(max(1, bytes))))
        pageKeys = min(max(fitting, 1), pageKeys * 4, 1 << 20)
    }

    private func read(_ options: RangeOptions) throws(EtcdError) -> RangeResult {
        do {
            return try store.range(range, options: options)
        } catch let error as MVCCError {
            throw EtcdError(error)
        } catch {
            throw .internal("\(error)")
        }
    }
}
