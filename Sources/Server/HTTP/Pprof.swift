import Foundation
import NIOHTTP1
import RPCTransport

#if canImport(Glibc)
    import Glibc
#endif

/// `--enable-pprof`: `/debug/pprof/` on the client URLs, in the spirit of Go's net/http/pprof that etcd serves there.
///
/// What it offers, honestly: Quorum is not a Go program, so these are plain-text reports, not Go's protobuf
/// profiles (`go tool pprof` cannot read them):
/// - `heap` (and `allocs`): the process's memory from `/proc/self/status` and glibc's allocator totals
///   (`malloc_info`);
/// - `profile?seconds=N` (default 30, at most 300): a CPU profile of the process taken with Linux `perf record -g`
///   and returned as `perf script` text (feed it to FlameGraph's stackcollapse-perf.pl); 501 when `perf` is not
///   installed or not permitted;
/// - `threadcreate`: the process's threads and their CPU time from `/proc/self/task`;
/// - `cmdline`: the command line, NUL-separated as Go's.
struct PprofRouter: HTTPRouting {
    static let prefix = "/debug/pprof"

    func handle(_ request: HTTPRequestInfo) async -> HTTPReply {
        var name = String(request.path.dropFirst(Self.prefix.count))
        if name.hasPrefix("/") { name.removeFirst() }
        switch name {
        case "":
            return .text(
                """
                /debug/pprof/ (Quorum: plain-text reports, not Go's protobuf profiles)

                heap          process memory and allocator totals (glibc malloc_info)
                allocs        the same as heap
                profile       CPU profile: ?seconds=N (default 30), taken with perf record -g, as perf script text
                threadcreate  threads and their CPU time
                cmdline       the command line

                """)
        case "heap", "allocs":
            return .text(Self.heapReport())
        case "profile":
            let seconds = min(300, max(1, Int(request.query["seconds"]?.first ?? "") ?? 30))
            return await Self.cpuProfile(seconds: seconds)
        case "threadcreate":
            return .text(Self.threadReport())
        case "cmdline":
            let bytes = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/self/cmdline"))) ?? Data()
            return HTTPReply(status: .ok, contentType: "text/plain; charset=utf-8", body: Array(bytes))
        default:
            return .text(
                "404 page not found: Quorum's /debug/pprof/ offers heap, allocs, profile, threadcreate and cmdline\n",
                status: .notFound)
        }
    }

    static func heapReport() -> String {
        var text = "# /proc/self/status\n"
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        for line in status.split(separator: "\n") where line.hasPrefix("Vm") || line.hasPrefix("Rss") {
            text += line + "\n"
        }
        text += "\n# glibc malloc_info (totals over all arenas; bytes)\n"
        text += mallocInfoTotals() ?? "(malloc_info is not available in this C library)\n"
        return text
    }

    /// The allocator totals from glibc's `malloc_info` (looked up at run time: the Glibc module does not export it),
    /// without the per-arena detail.
    static func mallocInfoTotals() -> String? {
        typealias MallocInfo = @convention(c) (Int32, UnsafeMutablePointer<FILE>?) -> Int32
        guard let symbol = dlsym(nil, "malloc_info"), let file = tmpfile() else { return nil }
        defer { fclose(file) }
        let mallocInfo = unsafeBitCast(symbol, to: MallocInfo.self)
        guard mallocInfo(0, file) == 0 else { return nil }
        fflush(file)
        rewind(file)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        let xml = String(decoding: bytes, as: UTF8.self)
        let totals = xml.range(of: "</heap>", options: .backwards).map { String(xml[$0.upperBound...]) } ?? xml
        return totals.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { $0.hasPrefix("<total") || $0.hasPrefix("<system") || $0.hasPrefix("<aspace") }
            .joined(separator: "\n") + "\n"
    }

    static func threadReport() -> String {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        var text = "threads: \(tasks.count)\n# tid name utime-ticks stime-ticks\n"
        for tid in tasks.sorted(by: { (Int($0) ?? 0) < (Int($1) ?? 0) }) {
            let name = ((try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8)) ?? "?")
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let stat = (try? String(contentsOfFile: "/proc/self/task/\(tid)/stat", encoding: .utf8)) ?? ""
            // Fields after the parenthesised name: state is 3rd, utime 14th, stime 15th.
            let rest = stat.split(separator: ")").last.map { $0.split(separator: " ") } ?? []
            let utime = rest.count > 12 ? String(rest[11]) : "?"
            let stime = rest.count > 13 ? String(rest[12]) : "?"
            text += "\(tid) \(name) \(utime) \(stime)\n"
        }
        return text
    }

    static func cpuProfile(seconds: Int) async -> HTTPReply {
        let perf = ["/usr/bin/perf", "/usr/local/bin/perf"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let perf else {
            return .text(
                "CPU profiles need Linux perf (apt-get install linux-perf), which is not installed here\n",
                status: .notImplemented)
        }
        let output = NSTemporaryDirectory() + "quorum-pprof-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).data"
        defer { try? FileManager.default.removeItem(atPath: output) }
        do {
            let recorded = try await BlockingWork.run("quorum-pprof") {
                try Self.run(
                    perf,
                    ["record", "-q", "-g", "-F", "99", "-p", "\(getpid())", "-o", output, "--", "sleep", "\(seconds)"])
            }
            guard recorded.status == 0 else {
                return .text("perf record failed (\(recorded.status)): \(recorded.output)\n", status: .notImplemented)
            }
            let script = try await BlockingWork.run("quorum-pprof") { try Self.run(perf, ["script", "-i", output]) }
            guard script.status == 0 else {
                return .text("perf script failed (\(script.status)): \(script.output)\n", status: .internalServerError)
            }
            let header =
                "# perf record -g -F 99 of this process for \(seconds)s, as perf script text "
                + "(no samples below: the process used no CPU meanwhile)\n"
            return .text(
                script.output.isEmpty
                    ? header
                    : header.replacingOccurrences(
                        of: " (no samples below: the process used no CPU meanwhile)", with: "") + script.output)
        } catch {
            return .text("cannot run perf: \(error)\n", status: .internalServerError)
        }
    }

    /// Runs a command to completion; its output (standard output and error) as text. Spawned with an empty signal
    /// mask and default signal handlers: the thread that spawns may have signals blocked, and `perf record` waits for
    /// its workload's SIGCHLD.
    private static func run(_ path: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let outputPath = NSTemporaryDirectory() + "quorum-pprof-out-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        guard rc == 0 else { throw PprofError("posix_spawn \(path): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        // WIFEXITED / WEXITSTATUS.
        let exited = status & 0x7f == 0
        return (exited ? (status >> 8) & 0xff : 128 + (status & 0x7f), output)
    }

    struct PprofError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}

/// The HTTP endpoints of a `--listen-metrics-urls` listener: `/metrics` and the health endpoints, as etcd's
/// metrics listener serves them; everything else is 404.
struct MetricsRouter: HTTPRouting {
    let router: any HTTPRouting

    static let paths: Set<String> = ["/metrics", "/health", "/livez", "/livez/", "/readyz", "/readyz/"]

    func handle(_ request: HTTPRequestInfo) async -> HTTPReply {
        guard Self.paths.contains(request.path) else { return .text("404 page not found\n", status: .notFound) }
        return await router.handle(request)
    }
}

/// The client URLs' router with `/debug/pprof/` in front (`--enable-pprof`).
struct PprofEnabledRouter: HTTPRouting {
    let router: any HTTPRouting
    let pprof = PprofRouter()

    func handle(_ request: HTTPRequestInfo) async -> HTTPReply {
        if request.path == PprofRouter.prefix || request.path.hasPrefix(PprofRouter.prefix + "/") {
            return await pprof.handle(request)
        }
        return await router.handle(request)
    }
}
