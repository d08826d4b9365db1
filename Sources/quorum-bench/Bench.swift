import ArgumentParser
import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization

typealias Transport = HTTP2ClientTransport.Posix

/// One gRPC client, which is one HTTP/2 connection to one endpoint, with the etcd stubs on it.
struct Connection: Sendable {
    let client: GRPCClient<Transport>
    let kv: Etcdserverpb_KV.Client<Transport>
    let watch: Etcdserverpb_Watch.Client<Transport>
    let lease: Etcdserverpb_Lease.Client<Transport>

    init(endpoint: Endpoint) throws {
        let transport = try HTTP2ClientTransport.Posix(
            target: .dns(host: endpoint.host, port: endpoint.port), transportSecurity: .plaintext)
        client = GRPCClient(transport: transport)
        kv = Etcdserverpb_KV.Client(wrapping: client)
        watch = Etcdserverpb_Watch.Client(wrapping: client)
        lease = Etcdserverpb_Lease.Client(wrapping: client)
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Counters shared by the worker tasks (a class, since atomics cannot be captured by value).
final class Counters: Sendable {
    /// Tickets handed out: a worker stops once it draws one past `total`, so exactly `total` requests are issued.
    let issued = Atomic<Int>(0)
    let completed = Atomic<Int>(0)
    let sequence = Atomic<Int>(0)
}

/// What one closed-loop worker measured.
struct WorkerResult: Sendable {
    var latencies = Latencies()
    var errors = 0
    var firstError: String?

    mutating func merge(_ other: WorkerResult) {
        latencies.add(other.latencies)
        errors += other.errors
        if firstError == nil { firstError = other.firstError }
    }
}

enum Bench {
    static func runAndReport(_ settings: BenchSettings, options: CommonOptions) async throws {
        let showProgress = !options.noProgress && isatty(STDERR_FILENO) != 0
        let report = try await run(settings, showProgress: showProgress)
        // One write, so the line is complete on stdout even when stdout is a file or a pipe.
        FileHandle.standardOutput.write(Data(((options.json ? report.jsonLine() : report.table()) + "\n").utf8))
        if report.latencies.count == 0 && report.errors > 0 { throw ExitCode(2) }
    }

    /// Opens the connections, runs the workload on them, and closes them again.
    static func run(_ settings: BenchSettings, showProgress: Bool) async throws -> BenchReport {
        var settings = settings
        // watch-latency's writer gets a connection of its own, as etcdload's does.
        let count = settings.conns + (settings.workload == .watchLatency ? 1 : 0)
        let connections = try (0..<count).map { i in
            try Connection(endpoint: settings.endpoints[i % settings.endpoints.count])
        }
        return try await withThrowingTaskGroup(of: Void.self) { group in
            for connection in connections {
                group.addTask { try await connection.client.runConnections() }
            }
            let outcome: Result<BenchReport, any Error>
            do {
                if let (name, password) = settings.credentials {
                    settings.metadata = [
                        "token": .string(try await authenticate(connections[0], name, password, settings))
                    ]
                }
                try await probe(connections, settings: settings)
                let progress = showProgress ? ProgressBar(settings: settings) : nil
                if settings.workload == .watchLatency {
                    outcome = .success(
                        try await WatchLatencyRun.run(
                            settings, watchers: Array(connections.dropLast()), writer: connections.last!,
                            progress: progress))
                } else {
                    outcome = .success(try await closedLoop(settings, connections, progress: progress))
                }
            } catch {
                outcome = .failure(error)
            }
            for connection in connections { connection.client.beginGracefulShutdown() }
            try await group.waitForAll()
            return try outcome.get()
        }
    }

    static func callOptions(_ settings: BenchSettings) -> CallOptions {
        var options = CallOptions.defaults
        options.timeout = .milliseconds(Int64(settings.timeout * 1000))
        return options
    }

    /// Logs in once (etcd's Authenticate) and returns the token every request then carries as `token` metadata,
    /// as clientv3 does with `--user`.
    static func authenticate(_ connection: Connection, _ name: String, _ password: String, _ s: BenchSettings)
        async throws -> String
    {
        var request = Etcdserverpb_AuthenticateRequest()
        request.name = name
        request.password = password
        do {
            return try await Etcdserverpb_Auth.Client(wrapping: connection.client).authenticate(
                request, options: callOptions(s)
            ).token
        } catch {
            throw BenchError("authenticate as \(name): \(error)")
        }
    }

    /// Makes sure every connection really works before the clock starts (etcdload does the same).
    static func probe(_ connections: [Connection], settings: BenchSettings) async throws {
        var request = Etcdserverpb_RangeRequest()
        request.key = Data("quorum-bench-probe".utf8)
        request.serializable = true
        for (i, connection) in connections.enumerated() {
            do {
                _ = try await connection.kv.range(request, metadata: settings.metadata, options: callOptions(settings))
            } catch {
                let endpoint = settings.endpoints[i % settings.endpoints.count]
                throw BenchError("probe \(endpoint): \(error)")
            }
        }
    }

    static func randomValue(_ size: Int) -> Data {
        var rng = SplitMix64(state: nowNanos())
        return Data((0..<size).map { _ in UInt8(ascii: "a") + UInt8.random(in: 0..<26, using: &rng) })
    }

    // MARK: Closed loop: put, range, txn-put, lease-keepalive

    static func closedLoop(_ s: BenchSettings, _ connections: [Connection], progress: ProgressBar?) async throws
        -> BenchReport
    {
        let value = randomValue(s.valSize)
        let options = callOptions(s)
        if s.preload > 0 { try await preload(s, connections, count: s.preload, value: value) }
        var leases: [Int64] = []
        if s.workload == .leaseKeepAlive {
            for i in 0..<s.clients {
                var grant = Etcdserverpb_LeaseGrantRequest()
                grant.ttl = s.leaseTTL
                leases.append(
                    try await connections[i % connections.count].lease.leaseGrant(
                        grant, metadata: s.metadata, options: options
                    ).id)
            }
        }
        let counters = Counters()
        let seed = nowNanos()
        let cpuBefore = processCPUSeconds()
        let start = nowNanos()
        let deadline = start + UInt64(s.duration * 1e9)
        let progressTask = progress.map { bar in Task { await bar.run(counters: counters, start: start) } }
        let leaseIDs = leases
        let merged = try await withThrowingTaskGroup(of: WorkerResult.self) { group in
            for i in 0..<s.clients {
                let connection = connections[i % connections.count]
                let leaseID = leaseIDs.isEmpty ? 0 : leaseIDs[i]
                group.addTask {
                    var result = WorkerResult()
                    var rng = SplitMix64(state: seed &+ UInt64(i) &* 7919)
                    while true {
                        if counters.issued.wrappingAdd(1, ordering: .relaxed).newValue > s.total
                            || nowNanos() >= deadline
                        {
                            break
                        }
                        let n =
                            s.sequentialKeys
                            ? counters.sequence.wrappingAdd(1, ordering: .relaxed).oldValue % s.keySpace
                            : Int.random(in: 0..<s.keySpace, using: &rng)
                        let key = benchKey(n, size: s.keySize)
                        let t0 = nowNanos()
                        do {
                            try await one(
                                s.workload, on: connection, key: key, value: value, lease: leaseID, options,
                                metadata: s.metadata)
                            result.latencies.record(nanoseconds: nowNanos() - t0)
                            counters.completed.wrappingAdd(1, ordering: .relaxed)
                        } catch {
                            result.errors += 1
                            if result.firstError == nil { result.firstError = "\(error)" }
                        }
                    }
                    return result
                }
            }
            var merged = WorkerResult()
            for try await result in group { merged.merge(result) }
            return merged
        }
        let elapsed = Double(nowNanos() - start) / 1e9
        progressTask?.cancel()
        await progressTask?.value
        let cpu = processCPUSeconds() - cpuBefore
        for (i, id) in leases.enumerated() {
            var revoke = Etcdserverpb_LeaseRevokeRequest()
            revoke.id = id
            _ = try? await connections[i % connections.count].lease.leaseRevoke(
                revoke, metadata: s.metadata, options: options)
        }
        var report = BenchReport(settings: s)
        report.latencies = merged.latencies
        report.errors = merged.errors
        report.firstError = merged.firstError
        report.elapsed = elapsed
        report.clientCPUSeconds = cpu
        report.stoppedBy = Int(merged.latencies.count) + merged.errors < s.total ? "duration" : "total"
        return report
    }

    /// One request of a closed-loop workload.
    static func one(
        _ workload: Workload, on c: Connection, key: Data, value: Data, lease: Int64, _ options: CallOptions,
        metadata: Metadata = [:]
    ) async throws {
        switch workload {
        case .put:
            var r = Etcdserverpb_PutRequest()
            r.key = key
            r.value = value
            _ = try await c.kv.put(r, metadata: metadata, options: options)
        case .rangeLinearizable, .rangeSerializable:
            var r = Etcdserverpb_RangeRequest()
            r.key = key
            r.serializable = workload == .rangeSerializable
            _ = try await c.kv.range(r, metadata: metadata, options: options)
        case .txnPut:
            // mod_revision > -1 always holds, so the put branch always runs: the txn path plus a write.
            var compare = Etcdserverpb_Compare()
            compare.key = key
            compare.target = .mod
            compare.result = .greater
            compare.modRevision = -1
            var put = Etcdserverpb_PutRequest()
            put.key = key
            put.value = value
            var op = Etcdserverpb_RequestOp()
            op.requestPut = put
            var r = Etcdserverpb_TxnRequest()
            r.compare = [compare]
            r.success = [op]
            let response = try await c.kv.txn(r, metadata: metadata, options: options)
            if !response.succeeded { throw BenchError("txn compare unexpectedly failed") }
        case .leaseKeepAlive:
            // clientv3's KeepAliveOnce: a fresh stream, one request, one answer.
            var r = Etcdserverpb_LeaseKeepAliveRequest()
            r.id = lease
            let request = r
            let ttl = try await c.lease.leaseKeepAlive(
                metadata: metadata, options: options, requestProducer: { writer in try await writer.write(request) },
                onResponse: { response in
                    for try await message in response.messages { return message.ttl }
                    throw BenchError("keep-alive stream ended without an answer")
                })
            if ttl <= 0 { throw BenchError("lease \(lease) expired") }
        case .watchLatency:
            throw BenchError("watch-latency is not a closed-loop workload")
        }
    }

    /// Writes keys 0..<count (64 in parallel), so range reads find what they look for.
    static func preload(_ s: BenchSettings, _ connections: [Connection], count: Int, value: Data) async throws {
        let next = Counters()
        let options = callOptions(s)
        let deadline = nowNanos() + 300_000_000_000
        try await withThrowingTaskGroup(of: String?.self) { group in
            for i in 0..<min(64, count) {
                let connection = connections[i % connections.count]
                group.addTask {
                    var firstError: String?
                    while true {
                        let j = next.issued.wrappingAdd(1, ordering: .relaxed).oldValue
                        if j >= count || nowNanos() >= deadline { break }
                        var r = Etcdserverpb_PutRequest()
                        r.key = benchKey(j, size: s.keySize)
                        r.value = value
                        do {
                            _ = try await connection.kv.put(r, metadata: s.metadata, options: options)
                        } catch {
                            firstError = firstError ?? "\(error)"
                            break
                        }
                    }
                    return firstError
                }
            }
            for try await error in group {
                if let error { throw BenchError("preload: \(error)") }
            }
        }
    }
}
