import Synchronization

/// etcd's `etcd_server_client_requests_total{type,client_api_version}`: every client call, `unary` or `stream`, by
/// the API version its client announced in the `client-api-version` metadata (clientv3 sends its major.minor;
/// "unknown" without it). The versions clients send are counted in atomics where calls start, so the hot path
/// compares a few short strings and adds one; the counters are brought up to date when scraped.
final class ClientRequestCounters: Sendable {
    /// The versions etcd's clients have announced so far, and "unknown".
    static let knownVersions = ["3.0", "3.1", "3.2", "3.3", "3.4", "3.5", "3.6", "3.7", "unknown"]
    /// Other versions get their own counts, up to this many; calls announcing yet others count as "unknown", so a
    /// client cannot grow the member's series without bound.
    static let maxOtherVersions = 32
    /// The metadata clientv3 announces its API version in.
    static let versionHeader = "client-api-version"

    private final class Count: Sendable {
        let value = Atomic<Int>(0)
    }

    private let unary = knownVersions.map { _ in Count() }
    private let stream = knownVersions.map { _ in Count() }
    private let others = Mutex<[String: (unary: Int, stream: Int)]>([:])

    /// A client call started; `version` is its `client-api-version` metadata.
    func count(stream isStream: Bool, version: String?) {
        let version = version ?? "unknown"
        if let i = Self.knownVersions.firstIndex(of: version) {
            (isStream ? stream : unary)[i].value.add(1, ordering: .relaxed)
            return
        }
        let counted = others.withLock { all -> Bool in
            guard all[version] != nil || all.count < Self.maxOtherVersions else { return false }
            if isStream { all[version, default: (0, 0)].stream += 1 } else { all[version, default: (0, 0)].unary += 1 }
            return true
        }
        if !counted { (isStream ? stream : unary)[Self.knownVersions.count - 1].value.add(1, ordering: .relaxed) }
    }

    /// Every (type, client_api_version) counted so far with its running total.
    func totals() -> [(type: String, version: String, count: Int)] {
        var out: [(String, String, Int)] = []
        for (i, version) in Self.knownVersions.enumerated() {
            let u = unary[i].value.load(ordering: .relaxed)
            let s = stream[i].value.load(ordering: .relaxed)
            if u > 0 { out.append(("unary", version, u)) }
            if s > 0 { out.append(("stream", version, s)) }
        }
        for (version, counts) in others.withLock({ $0 }) {
            if counts.unary > 0 { out.append(("unary", version, counts.unary)) }
            if counts.stream > 0 { out.append(("stream", version, counts.stream)) }
        }
        return out
    }
}
