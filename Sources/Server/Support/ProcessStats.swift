import Foundation
import Prometheus
import RPCTransport

#if canImport(Glibc)
    import Glibc
#endif

/// What Prometheus' process collector reports about the running process, read from /proc and getrlimit as Go's
/// client (which etcd links) reads them, so `process_*` and etcd's `os_fd_*` mean the same for Quorum.
struct ProcessStats {
    var residentBytes = 0
    var virtualBytes = 0
    /// `RLIMIT_AS`; an unlimited limit is reported as Go's client reports it, the largest 64-bit value.
    var virtualLimit = Double(UInt64.max)
    var cpuSeconds = 0.0
    var openFDs = 0
    var fdLimit = 0.0

    static func read() -> ProcessStats {
        var stats = ProcessStats()
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let fields = statm.split(separator: " ")
            if fields.count > 1 {
                stats.virtualBytes = (Int(fields[0]) ?? 0) * page
                stats.residentBytes = (Int(fields[1]) ?? 0) * page
            }
        }
        // /proc/self/stat: fields after the parenthesised command name; utime and stime are the 12th and 13th.
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        {
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) {
                stats.cpuSeconds = (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
            }
        }
        stats.openFDs = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 1) - 1
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 { stats.fdLimit = Double(limit.rlim_cur) }
        if getrlimit(Int32(RLIMIT_AS.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max {
            stats.virtualLimit = Double(limit.rlim_cur)
        }
        return stats
    }
}

/// The client listeners' message bytes, as etcd counts them for `etcd_network_client_grpc_*_bytes_total`.
struct ClientTraffic: RPCTrafficObserver {
    let received: Counter
    let sent: Counter

    func received(bytes: Int) { received.increment(by: Int64(bytes)) }
    func sent(bytes: Int) { sent.increment(by: Int64(bytes)) }
}
