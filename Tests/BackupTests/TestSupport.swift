import Foundation
import Synchronization
import TestSupport
import Testing

@testable import Backup

/// A seed from the environment (`BACKUP_TEST_SEED`) or the clock, printed so a failing run can be repeated.
func testSeed(_ label: String) -> UInt64 {
    let seed =
        ProcessInfo.processInfo.environment["BACKUP_TEST_SEED"].flatMap { UInt64($0) }
        ?? UInt64(Date().timeIntervalSince1970 * 1000)
    print("\(label): seed \(seed) (set BACKUP_TEST_SEED=\(seed) to repeat)")
    return seed
}

/// Writes `size` pseudo-random bytes to `url` in 1 MiB pieces and returns their digest.
@discardableResult
func writeRandomFile(_ url: URL, size: Int, seed: UInt64) throws -> FileDigest {
    var generator = SeededRandom(seed: seed)
    try Data().write(to: url)
    let handle = try FileHandle(forWritingTo: url)
    defer { try? handle.close() }
    var remaining = size
    while remaining > 0 {
        let n = min(remaining, 1 << 20)
        var chunk = [UInt8](repeating: 0, count: n)
        var i = 0
        while i < n {
            var word = generator.next()
            for _ in 0..<8 where i < n {
                chunk[i] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                i += 1
            }
        }
        try handle.write(contentsOf: chunk)
        remaining -= n
    }
    return try FileDigest.compute(file: url)
}

/// A manifest for `file` with plausible IDs.
func makeManifest(name: BackupName, file: URL, memberName: String = "etcd-a") throws -> BackupManifest {
    BackupManifest(
        name: name, clusterID: 0xcdf8_1819_4e3a_8c32, memberID: 0x8e9e_05c5_2164_694d, memberName: memberName,
        raftIndex: UInt64(name.revision) * 2, quorumVersion: "0.9.0-test", etcdVersion: "3.5.0",
        snapshot: try FileDigest.compute(file: file))
}

/// 2026-12-06T03:15:00Z.
let referenceTime = Date(timeIntervalSince1970: 1_796_526_900)

/// A clock moved by hand. `sleep` suspends until `advance` moves the time past the sleeper's deadline (or the sleeping
/// task is cancelled); tests wait for the runner to go to sleep (`waitForSleepCalls`) instead of sleeping themselves.
final class ManualClock: BackupClock {
    private struct Sleeper {
        var id: Int
        var deadline: Date
        var continuation: CheckedContinuation<Void, any Error>
    }
    private struct State {
        var now: Date
        var sleepers: [Sleeper] = []
        var nextID = 0
        var sleepCalls = 0
        var sleepCallWaiters: [(count: Int, continuation: CheckedContinuation<Void, Never>)] = []
    }
    private let state: Mutex<State>

    init(_ start: Date = referenceTime) { state = Mutex(State(now: start)) }

    func now() -> Date { state.withLock { $0.now } }

    func set(_ date: Date) {
        let ready = state.withLock { s in
            s.now = date
            var ready: [CheckedContinuation<Void, any Error>] = []
            s.sleepers.removeAll { sleeper in
                guard sleeper.deadline <= s.now else { return false }
                ready.append(sleeper.continuation)
                return true
            }
            return ready
        }
        for c in ready { c.resume() }
    }

    func advance(by seconds: TimeInterval) { set(now().addingTimeInterval(seconds)) }

    func sleep(for duration: Duration) async throws {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        let id = state.withLock { s in
            s.nextID += 1
            return s.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                let (waiters, cancelled) = state.withLock { s in
                    s.sleepCalls += 1
                    var ready: [CheckedContinuation<Void, Never>] = []
                    s.sleepCallWaiters.removeAll { w in
                        guard s.sleepCalls >= w.count else { return false }
                        ready.append(w.continuation)
                        return true
                    }
                    if Task.isCancelled { return (ready, true) }
                    s.sleepers.append(Sleeper(id: id, deadline: s.now.addingTimeInterval(seconds), continuation: c))
                    return (ready, false)
                }
                for w in waiters { w.resume() }
                if cancelled { c.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            let sleeper = state.withLock { s -> Sleeper? in
                guard let index = s.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return s.sleepers.remove(at: index)
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Total `sleep` calls so far.
    var sleepCalls: Int { state.withLock { $0.sleepCalls } }

    /// Returns once `sleep` has been called at least `count` times in total.
    func waitForSleepCalls(_ count: Int) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { s in
                if s.sleepCalls >= count { return true }
                s.sleepCallWaiters.append((count, c))
                return false
            }
            if ready { c.resume() }
        }
    }
}

/// A one-shot signal between tasks.
final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func open() {
        let waiters = state.withLock { s in
            s.open = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }

    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let isOpen = state.withLock { s in
                if s.open { return true }
                s.waiters.append(c)
                return false
            }
            if isOpen { c.resume() }
        }
    }

    var isOpen: Bool { state.withLock { $0.open } }
}

/// A mutable value shared with `@Sendable` closures.
final class Shared<Value: Sendable>: Sendable {
    private let state: Mutex<Value>
    init(_ value: Value) { state = Mutex(value) }
    var value: Value {
        get { state.withLock { $0 } }
        set { state.withLock { $0 = newValue } }
    }
    func update<R>(_ body: (inout Value) -> R) -> R { state.withLock { body(&$0) } }
}
