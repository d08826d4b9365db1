import EtcdProto
import Foundation
import TestSupport
import Testing

@testable import Auth

/// The merged-interval permission cache against a brute-force reference, on random roles and queries.
///
/// The reference never merges anything: a key is permitted when one granted interval holds it, and a range
/// `[b, e)` when every "critical point" in it is: `b` and every interval bound inside `(b, e)`. Coverage can only
/// change at an interval bound, so that finite check decides coverage of the infinite key range exactly.
@Suite struct RandomizedPermissionTests {
    /// Keys over a 4-byte alphabet that includes the extremes 0x00 and 0xff, up to 3 bytes long.
    static let alphabet: [UInt8] = [0x00, 0x61, 0x62, 0xff]

    static func randomKey(_ generator: inout SeededRandom, allowEmpty: Bool = false) -> [UInt8] {
        let length = Int.random(in: (allowEmpty ? 0 : 1)...3, using: &generator)
        return (0..<length).map { _ in alphabet.randomElement(using: &generator)! }
    }

    /// A random range end: the single key, from-key, or an arbitrary key (possibly not above the start).
    static func randomEnd(_ generator: inout SeededRandom) -> [UInt8] {
        switch Int.random(in: 0..<4, using: &generator) {
        case 0: return []
        case 1: return [0]
        default: return randomKey(&generator)
        }
    }

    /// The reference: the intervals etcd can match (non-empty key, non-empty range), unmerged.
    static func intervals(_ permissions: [Authpb_Permission], access: AuthStore.Access) -> [KeyInterval] {
        permissions.compactMap { permission in
            let type = permission.permType
            guard type == .readwrite || (access == .read ? type == .read : type == .write) else { return nil }
            let key = [UInt8](permission.key)
            let end = [UInt8](permission.rangeEnd)
            guard !key.isEmpty else { return nil }
            if end.isEmpty { return KeyInterval(begin: key, end: key + [0]) }
            if end == [0] { return KeyInterval(begin: key, end: nil) }
            guard key.lexicographicallyPrecedes(end) else { return nil }
            return KeyInterval(begin: key, end: end)
        }
    }

    static func referencePermits(_ intervals: [KeyInterval], key: [UInt8], rangeEnd: [UInt8]) -> Bool {
        func holds(_ point: [UInt8]) -> Bool { intervals.contains { $0.contains(point) } }
        guard !key.isEmpty else { return false }
        if rangeEnd.isEmpty { return holds(key) }
        let end: [UInt8]? = rangeEnd == [0] ? nil : rangeEnd
        if let end, !key.lexicographicallyPrecedes(end) { return holds(key) }
        let bounds = intervals.flatMap { [$0.begin] + ($0.end.map { [$0] } ?? []) }
        let inside = bounds.filter { bound in
            key.lexicographicallyPrecedes(bound) && (end.map { bound.lexicographicallyPrecedes($0) } ?? true)
        }
        return ([key] + inside).allSatisfy(holds)
    }

    @Test func mergedCacheAgreesWithBruteForce() throws {
        let seed = UInt64.random(in: .min ... .max)
        print("RandomizedPermissionTests seed: \(seed)")
        var generator = SeededRandom(seed: seed)
        var checked = 0
        for round in 0..<300 {
            // Roles are built directly, as an old store may hold them: empty keys and empty ranges included.
            var roles: [Authpb_Role] = []
            for index in 0..<Int.random(in: 1...3, using: &generator) {
                var role = Authpb_Role()
                role.name = k("role\(index)")
                role.keyPermission = (0..<Int.random(in: 0...5, using: &generator)).map { _ in
                    permission(
                        [.read, .write, .readwrite].randomElement(using: &generator)!,
                        Data(Self.randomKey(&generator, allowEmpty: Int.random(in: 0..<10, using: &generator) == 0)),
                        Data(Self.randomEnd(&generator)))
                }
                roles.append(role)
            }
            var user = Authpb_User()
            user.name = k("u")
            user.roles = roles.map { String(decoding: $0.name, as: UTF8.self) } + ["missing-role"]
            let store = AuthStore(isEnabled: true, revision: 5, users: [user], roles: roles)
            let info = AuthInfo(username: "u", revision: 5)
            let granted = roles.flatMap(\.keyPermission)

            for _ in 0..<60 {
                let key = Self.randomKey(&generator, allowEmpty: Int.random(in: 0..<20, using: &generator) == 0)
                let end = Self.randomEnd(&generator)
                for access in [AuthStore.Access.read, .write] {
                    let expected = Self.referencePermits(
                        Self.intervals(granted, access: access), key: key, rangeEnd: end)
                    let actual =
                        authError { try store.checkKeys(info, key: Data(key), rangeEnd: Data(end), access: access) }
                        == nil
                    #expect(
                        actual == expected,
                        "seed \(seed) round \(round): \(access) \(key) ..< \(end) with \(granted.map { ([UInt8]($0.key), [UInt8]($0.rangeEnd), $0.permType) })"
                    )
                    checked += 1
                }
            }
        }
        #expect(checked == 300 * 60 * 2)
    }

    @Test func mergingJoinsTouchingAndOverlappingIntervals() {
        let set = KeyIntervalSet([
            KeyInterval(begin: [0x63], end: [0x65]), KeyInterval(begin: [0x61], end: [0x63]),
            KeyInterval(begin: [0x64], end: [0x66]), KeyInterval(begin: [0x78], end: nil),
            KeyInterval(begin: [0x79], end: [0x7a]),
        ])
        #expect(set.intervals == [KeyInterval(begin: [0x61], end: [0x66]), KeyInterval(begin: [0x78], end: nil)])
        #expect(set.containsRange(from: [0x61], to: [0x66]))
        #expect(!set.containsRange(from: [0x61], to: [0x66, 0x00]))
        #expect(set.containsRange(from: [0x78], to: nil))
        #expect(!set.containsKey([0x66]))
        #expect(!set.containsKey([]))
    }
}
