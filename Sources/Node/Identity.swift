import Crypto
import Foundation
import Synchronization

/// Member and cluster ids, derived as etcd derives them, so the same flags give the same ids.
public enum Identity {
    /// SHA-1 of the sorted peer URLs joined, then the cluster token; the first 8 bytes, big-endian.
    /// Members added at run time also hash the time (Unix seconds), so a re-added member gets a new id.
    public static func memberID(peerURLs: [String], token: String, time: Date? = nil) -> UInt64 {
        var bytes = Array(peerURLs.sorted().joined().utf8)
        bytes += Array(token.utf8)
        if let time { bytes += Array(String(Int64(time.timeIntervalSince1970)).utf8) }
        return firstEightBytes(Insecure.SHA1.hash(data: bytes))
    }

    /// SHA-1 of the sorted member ids, each 8 bytes big-endian.
    public static func clusterID(memberIDs: [UInt64]) -> UInt64 {
        var bytes: [UInt8] = []
        for id in memberIDs.sorted() {
            for shift in stride(from: 56, through: 0, by: -8) {
                bytes.append(UInt8(truncatingIfNeeded: id >> UInt64(shift)))
            }
        }
        return firstEightBytes(Insecure.SHA1.hash(data: bytes))
    }

    private static func firstEightBytes(_ digest: Insecure.SHA1Digest) -> UInt64 {
        var value: UInt64 = 0
        for (i, byte) in digest.enumerated() where i < 8 { value = value << 8 | UInt64(byte) }
        return value
    }

    /// Hex rendering as etcd prints ids.
    public static func hex(_ id: UInt64) -> String { String(id, radix: 16) }
}

/// Request ids unique across members and restarts: the member's low 16 bits, then a counter seeded from the
/// wall clock in milliseconds (so a restart does not reuse ids still in the log).
final class RequestIDGenerator: Sendable {
    private let prefix: UInt64
    private let counter: Atomic<UInt64>

    /// `now` is the wall clock: ids start from the time, so a member that restarts does not reuse the ids of its
    /// previous run (a simulation passes its own clock).
    init(memberID: UInt64, now: Date = Date()) {
        prefix = (memberID & 0xffff) << 48
        let millis = UInt64(max(0, now.timeIntervalSince1970) * 1000)
        counter = Atomic((millis << 8) & ((1 << 48) - 1))
    }

    func next() -> UInt64 {
        let n = counter.wrappingAdd(1, ordering: .relaxed).newValue
        return prefix | (n & ((1 << 48) - 1))
    }
}
