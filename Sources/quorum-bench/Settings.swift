import ArgumentParser
import Foundation
import GRPCCore

/// The workloads, named as etcdload names them so results from both clients line up.
enum Workload: String, Sendable {
    case put
    case rangeLinearizable = "range-linearizable"
    case rangeSerializable = "range-serializable"
    case txnPut = "txn-put"
    case watchLatency = "watch-latency"
    case leaseKeepAlive = "lease-keepalive"
}

/// One host:port to dial.
struct Endpoint: Sendable, CustomStringConvertible {
    var host: String
    var port: Int

    var description: String { "\(host):\(port)" }

    /// Accepts etcd's endpoint spellings: `host:port`, `http://host:port`, separated by commas.
    static func parseList(_ text: String) throws -> [Endpoint] {
        let endpoints = try text.split(separator: ",").map { raw -> Endpoint in
            var s = raw.trimmingCharacters(in: .whitespaces)
            if s.hasPrefix("https://") {
                throw ValidationError("TLS endpoints are not supported by quorum-bench yet: \(s)")
            }
            if s.hasPrefix("http://") { s.removeFirst("http://".count) }
            while s.hasSuffix("/") { s.removeLast() }
            guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), port > 0 else {
                throw ValidationError("endpoint \(raw) is not host:port")
            }
            return Endpoint(host: String(s[..<colon]), port: port)
        }
        guard !endpoints.isEmpty else { throw ValidationError("no --endpoints") }
        return endpoints
    }
}

/// Everything a run needs, resolved from the command line.
struct BenchSettings: Sendable {
    var workload: Workload
    var endpoints: [Endpoint]
    var clients: Int
    var conns: Int
    var total: Int
    var duration: Double
    var keySize: Int
    var valSize: Int
    var keySpace: Int
    var sequentialKeys: Bool
    var timeout: Double
    var preload = 0
    var putRate = 100
    var leaseTTL: Int64 = 60
    /// `--user NAME:PASSWORD`: log in first and send the token with every request.
    var credentials: (String, String)?
    /// What every request carries (the auth token, once logged in).
    var metadata: Metadata = [:]
}

/// etcd's benchmark keys: a zig-zag varint of the key number at the start of a zeroed buffer of `keySize` bytes
/// (Go's `binary.PutVarint`), so the keys, and the B-tree shapes they make, are the same for both clients.
func benchKey(_ n: Int, size: Int) -> Data {
    var key = Data(count: size)
    var x = UInt64(bitPattern: Int64(n)) << 1
    if n < 0 { x = ~x }
    var i = 0
    while x >= 0x80 && i < size {
        key[i] = UInt8(truncatingIfNeeded: x) | 0x80
        x >>= 7
        i += 1
    }
    if i < size { key[i] = UInt8(truncatingIfNeeded: x) }
    return key
}

/// A fast, seedable generator: the system generator would cost a syscall-grade read per key.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Monotonic nanoseconds: request latencies must not jump with the wall clock.
@inline(__always)
func nowNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// CPU seconds (user + system) this process has used, to show what the client itself costs.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
        + Double(usage.ru_stime.tv_usec) / 1e6
}
