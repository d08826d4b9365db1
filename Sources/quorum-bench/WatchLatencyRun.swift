import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import Synchronization

/// watch-latency: one writer puts one key at a fixed rate; W watchers on that key, spread over the connections
/// with one watch stream per connection (clientv3 multiplexes a client's watchers on one stream the same way).
/// Each event's latency runs from the moment the writer issued the put that produced it to the moment a watcher
/// received it; every put must reach every watcher, and a missing event counts as an error.
enum WatchLatencyRun {
    /// What one watch stream saw. Written by that stream's response handler only, read at the end.
    final class StreamState: Sendable {
        let latencies = Mutex(Latencies())
        let created = Atomic<Int>(0)
        let seen = Atomic<Int>(0)
        let bad = Atomic<Int>(0)
        let firstError = Mutex<String?>(nil)

        func fail(_ message: String) {
            firstError.withLock { if $0 == nil { $0 = message } }
        }
    }

    /// Issue times of the puts (index → monotonic ns), shared by the writer and the watchers.
    final class Shared: Sendable {
        let starts: Mutex<[UInt64]>
        let finished = Atomic<Bool>(false)

        init(count: Int) { starts = Mutex([UInt64](repeating: 0, count: count)) }
    }

    static func run(_ s: BenchSettings, watchers: [Connection], writer: Connection, progress: ProgressBar?)
        async throws -> BenchReport
    {
        let key = Data("quorum-bench-watch-\(nowNanos())".utf8)
        let n = s.total
        let shared = Shared(count: n)
        let perStream = (0..<watchers.count).map { j in (s.clients - j + watchers.count - 1) / watchers.count }
        let states = perStream.map { _ in StreamState() }
        let cpuBefore = processCPUSeconds()

        return try await withThrowingTaskGroup(of: Void.self) { group in
            for (j, connection) in watchers.enumerated() {
                let state = states[j]
                let count = perStream[j]
                group.addTask {
                    do {
                        try await watchStream(connection, key: key, watchers: count, total: n, shared, state)
                    } catch {
                        if !shared.finished.load(ordering: .acquiring) { state.fail("\(error)") }
                    }
                }
            }
            defer {
                shared.finished.store(true, ordering: .releasing)
                group.cancelAll()
            }

            // Every watcher must exist before the first put, or it would miss events.
            let createdBy = nowNanos() + UInt64(s.timeout * 1e9) + 5_000_000_000
            while states.reduce(0, { $0 + $1.created.load(ordering: .relaxed) }) < s.clients {
                if nowNanos() > createdBy { throw BenchError("watchers were not created in time") }
                if let error = states.lazy.compactMap({ $0.firstError.withLock { $0 } }).first {
                    throw BenchError("watch: \(error)")
                }
                try await Task.sleep(for: .milliseconds(5))
            }

            // The writer: one put every 1/rate seconds, paced against a schedule so a slow put does not slow it.
            let counters = Counters()
            let start = nowNanos()
            let progressTask = progress.map { bar in Task { await bar.run(counters: counters, start: start) } }
            let interval = UInt64(1e9 / Double(s.putRate))
            let deadline = start + UInt64(s.duration * 1e9)
            let filler = String(repeating: "x", count: max(16, s.valSize) - 16)
            var putLatencies = Latencies()
            var puts = 0
            var putErrors = 0
            var firstError: String?
            var next = start
            var issued = 0
            for i in 0..<n {
                let now = nowNanos()
                if now < next { try await Task.sleep(for: .nanoseconds(Int64(next - now))) }
                next += interval
                if nowNanos() >= deadline { break }
                var r = Etcdserverpb_PutRequest()
                r.key = key
                r.value = Data((String(format: "%016d", i) + filler).utf8)
                let t0 = nowNanos()
                shared.starts.withLock { $0[i] = t0 }
                issued += 1
                counters.completed.wrappingAdd(1, ordering: .relaxed)
                do {
                    _ = try await writer.kv.put(r, options: Bench.callOptions(s))
                    putLatencies.record(nanoseconds: nowNanos() - t0)
                    puts += 1
                } catch {
                    putErrors += 1
                    firstError = firstError ?? "\(error)"
                }
            }

            // Wait (bounded) until every watcher has seen every successful put.
            let expected = puts * s.clients
            let catchUpBy = nowNanos() + 5_000_000_000 + UInt64(s.timeout * 1e9)
            while states.reduce(0, { $0 + $1.seen.load(ordering: .relaxed) }) < expected && nowNanos() < catchUpBy {
                try await Task.sleep(for: .milliseconds(10))
            }
            let elapsed = Double(nowNanos() - start) / 1e9
            progressTask?.cancel()
            await progressTask?.value

            var report = BenchReport(settings: s)
            var seen = 0
            var bad = 0
            for state in states {
                report.latencies.add(state.latencies.withLock { $0 })
                seen += state.seen.load(ordering: .relaxed)
                bad += state.bad.load(ordering: .relaxed)
                if firstError == nil { firstError = state.firstError.withLock { $0 } }
            }
            report.errors = max(0, expected - seen) + bad + putErrors
            report.firstError = firstError
            report.elapsed = elapsed
            report.puts = puts
            report.putLatencies = putLatencies
            report.stoppedBy = issued < n ? "duration" : "total"
            report.clientCPUSeconds = processCPUSeconds() - cpuBefore
            return report
        }
    }

    /// One watch stream carrying `watchers` watchers of `key`; records every event until cancelled.
    private static func watchStream(
        _ connection: Connection, key: Data, watchers: Int, total: Int, _ shared: Shared, _ state: StreamState
    ) async throws {
        try await connection.watch.watch(
            requestProducer: { writer in
                for _ in 0..<watchers {
                    var create = Etcdserverpb_WatchCreateRequest()
                    create.key = key
                    var request = Etcdserverpb_WatchRequest()
                    request.createRequest = create
                    try await writer.write(request)
                }
                // Keep the request side open until the run is over; etcd keeps watchers after a half-close, but
                // not every server need.
                while !shared.finished.load(ordering: .acquiring) { try await Task.sleep(for: .milliseconds(20)) }
            },
            onResponse: { response in
                for try await message in response.messages {
                    if message.created {
                        state.created.wrappingAdd(1, ordering: .relaxed)
                        if message.canceled { state.fail("watch refused: \(message.cancelReason)") }
                        continue
                    }
                    if message.canceled {
                        state.fail("watch canceled: \(message.cancelReason)")
                        continue
                    }
                    let now = nowNanos()
                    for event in message.events {
                        guard let index = index(of: event.kv.value), index < total else {
                            state.bad.wrappingAdd(1, ordering: .relaxed)
                            continue
                        }
                        let start = shared.starts.withLock { $0[index] }
                        state.latencies.withLock { $0.record(nanoseconds: now &- start) }
                        state.seen.wrappingAdd(1, ordering: .relaxed)
                    }
                }
            })
    }

    /// The put number in the value's first 16 ASCII digits.
    static func index(of value: Data) -> Int? {
        guard value.count >= 16 else { return nil }
        var n = 0
        for byte in value.prefix(16) {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            n = n * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return n
    }
}
