import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Raft
import Simulation
import Synchronization

/// Clients doing puts, linearizable gets and compare-and-swaps against random members, recording every
/// operation with its invocation and completion time for the linearizability checker. An operation whose
/// outcome the client cannot know (timeout, broken connection) is recorded as such: it may or may not have
/// taken effect.
final class Workload: Sendable {
    let members: ChaosMembers
    let keys: Int
    let started = ContinuousClock.now
    private let history = Mutex<[HistoryEntry]>([])
    private let acknowledged = Mutex<Set<String>>([])
    private let counters = Mutex<(ok: Int, failed: Int, unknown: Int)>((0, 0, 0))

    init(members: ChaosMembers, keys: Int) {
        self.members = members
        self.keys = keys
    }

    var now: Int64 {
        let elapsed = ContinuousClock.now - started
        return elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000
    }

    static func key(_ k: UInt64) -> Data { Data("lin/\(k)".utf8) }

    func record(_ entry: HistoryEntry) {
        history.withLock { $0.append(entry) }
        counters.withLock { c in
            switch entry.output {
            case .unknown: c.unknown += 1
            default: c.ok += 1
            }
        }
    }

    func failed() { counters.withLock { $0.failed += 1 } }

    var entries: [HistoryEntry] { history.withLock { $0 } }
    var acknowledgedKeys: Set<String> { acknowledged.withLock { $0 } }
    var stats: (ok: Int, failed: Int, unknown: Int) { counters.withLock { $0 } }

    /// One client: `deadline` bounds the loop.
    func runClient(_ id: UInt64, seed: UInt64, until deadline: ContinuousClock.Instant) async {
        var rng = SplitMix64(seed: seed ^ (id &* 0x9E37_79B9_7F4A_7C15))
        var sequence: Int64 = 0
        while ContinuousClock.now < deadline {
            let host = Int(rng.next() % UInt64(members.count))
            do {
                try await members.withClient(host) { client in
                    let kv = Etcdserverpb_KV.Client(wrapping: client)
                    // A handful of operations per connection, then another member.
                    for _ in 0..<20 where ContinuousClock.now < deadline {
                        sequence += 1
                        try await self.operation(kv, client: id, sequence: sequence, rng: &rng)
                    }
                }
            } catch {
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    private func operation(
        _ kv: Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix>, client: UInt64, sequence: Int64,
        rng: inout SplitMix64
    ) async throws {
        let key = rng.next() % UInt64(keys)
        let value = Int64(client) * 10_000_000 + sequence
        let call = now
        var options = CallOptions.defaults
        options.timeout = .seconds(2)
        switch rng.next() % 10 {
        case 0..<4:
            var r = Etcdserverpb_PutRequest()
            r.key = Self.key(key)
            r.value = Data(String(value).utf8)
            do {
                _ = try await kv.put(r, options: options)
                record(
                    HistoryEntry(client: client, op: .put(key: key, value: value), output: .ok, call: call, ret: now))
            } catch {
                record(
                    HistoryEntry(
                        client: client, op: .put(key: key, value: value), output: .unknown, call: call, ret: .max))
                throw error
            }
        case 4..<7:
            var r = Etcdserverpb_RangeRequest()
            r.key = Self.key(key)
            do {
                let response = try await kv.range(r, options: options)
                let read = response.kvs.first.flatMap { Int64(String(decoding: $0.value, as: UTF8.self)) }
                record(HistoryEntry(client: client, op: .get(key: key), output: .value(read), call: call, ret: now))
            } catch {
                failed()  // a failed read changed nothing: it is left out of the history
                throw error
            }
        case 7..<9:
            // Compare-and-swap from the value this client expects (a recent write of its own, or absent).
            let expected = Int64(client) * 10_000_000 + max(1, sequence - Int64(rng.next() % 3) - 1)
            var txn = Etcdserverpb_TxnRequest()
            var compare = Etcdserverpb_Compare()
            compare.key = Self.key(key)
            compare.target = .value
            compare.result = .equal
            compare.value = Data(String(expected).utf8)
            txn.compare = [compare]
            var put = Etcdserverpb_RequestOp()
            put.requestPut.key = Self.key(key)
            put.requestPut.value = Data(String(value).utf8)
            txn.success = [put]
            let op = KVOperation.cas(key: key, expected: expected, new: value)
            do {
                let response = try await kv.txn(txn, options: options)
                record(
                    HistoryEntry(
                        client: client, op: op, output: response.succeeded ? .ok : .casFailed, call: call, ret: now))
            } catch {
                record(HistoryEntry(client: client, op: op, output: .unknown, call: call, ret: .max))
                throw error
            }
        default:
            // Append-only writes: every acknowledged one must be readable at the end.
            let name = "acked/\(client)/\(sequence)"
            var r = Etcdserverpb_PutRequest()
            r.key = Data(name.utf8)
            r.value = Data("1".utf8)
            _ = try await kv.put(r, options: options)
            acknowledged.withLock { _ = $0.insert(name) }
        }
    }

    /// Final linearizable reads of every key (through a healthy member), added to the history.
    func finalReads(through host: Int) async throws -> Set<String> {
        return try await members.withClient(host) { client in
            let kv = Etcdserverpb_KV.Client(wrapping: client)
            for key in 0..<UInt64(keys) {
                var r = Etcdserverpb_RangeRequest()
                r.key = Self.key(key)
                let call = now
                let response = try await kv.range(r)
                let read = response.kvs.first.flatMap { Int64(String(decoding: $0.value, as: UTF8.self)) }
                record(HistoryEntry(client: 0, op: .get(key: key), output: .value(read), call: call, ret: now))
            }
            var all = Etcdserverpb_RangeRequest()
            all.key = Data("acked/".utf8)
            all.rangeEnd = Data("acked0".utf8)
            all.keysOnly = true
            let stored = try await kv.range(all)
            return Set(stored.kvs.map { String(decoding: $0.key, as: UTF8.self) })
        }
    }
}

extension HTTP2ClientTransport.Posix.Config {
    /// Connections fail fast so a client moves on to another member instead of waiting out a partition.
    static var clientDefaults: Self {
        var config = Self.defaults
        config.backoff = .init(initial: .milliseconds(50), max: .milliseconds(200), multiplier: 1.5, jitter: 0.1)
        return config
    }
}
