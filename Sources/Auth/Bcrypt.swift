import CXCrypt

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// bcrypt password hashing through the system's libxcrypt (`crypt_gensalt_rn` and `crypt_r`): nothing of bcrypt is
/// written here.
///
/// New hashes use the `$2b$` prefix. etcd (Go's x/crypto) writes `$2a$`; both mean the same algorithm for every
/// password etcd accepts (at most 72 bytes), libxcrypt verifies both, and Go verifies `$2b$`, so stores move
/// between etcd and Quorum in both directions. Hashes are secrets too: nothing here logs or prints them.
public struct Bcrypt: Sendable, Equatable {
    /// etcd's `--bcrypt-cost` bounds and default (Go's `bcrypt.MinCost`, `MaxCost`, `DefaultCost`).
    public static let minimumCost = 4
    public static let maximumCost = 31
    public static let defaultCost = 10
    /// bcrypt reads at most 72 bytes of a password; Go refuses to hash longer ones and so does this.
    public static let maximumPasswordLength = 72

    /// The work factor: hashing takes 2^cost rounds.
    public let cost: Int

    /// A hasher at `cost`; like etcd's `NewAuthStore`, a cost outside 4...31 falls back to 10.
    public init(cost: Int = Bcrypt.defaultCost) {
        self.cost = (Self.minimumCost...Self.maximumCost).contains(cost) ? cost : Self.defaultCost
    }

    /// Hashes `password` with a fresh 16-byte salt drawn from `generator` (seeded in tests, the system generator in
    /// production). Returns the modular-crypt string, e.g. `$2b$10$<22 salt chars><31 hash chars>`.
    public func hash<R: RandomNumberGenerator>(password: String, using generator: inout R) throws(AuthError) -> String {
        guard password.utf8.count <= Self.maximumPasswordLength else { throw .passwordTooLong }
        var salt = [UInt8](repeating: 0, count: 16)
        for index in salt.indices { salt[index] = UInt8.random(in: .min ... .max, using: &generator) }
        let setting = try Self.makeSetting(cost: cost, randomBytes: salt)
        guard let hashed = Self.crypt(password: Array(password.utf8), setting: setting) else {
            throw .internal("auth: bcrypt hashing failed")
        }
        return hashed
    }

    /// Hashes `password` with a salt from the system's random source.
    public func hash(password: String) throws(AuthError) -> String {
        var generator = SystemRandomNumberGenerator()
        return try hash(password: password, using: &generator)
    }

    /// Whether `password` matches `hash` (a stored bcrypt string, `$2a$`, `$2b$` or `$2y$`). The recomputed hash is
    /// compared in constant time; a malformed or empty stored hash never matches.
    public static func verify(password: String, hash: some Collection<UInt8>) -> Bool {
        let stored = Array(hash)
        guard stored.count > 4, stored.first == UInt8(ascii: "$"), !stored.contains(0) else { return false }
        guard let recomputed = crypt(password: Array(password.utf8), setting: stored) else { return false }
        return constantTimeEqual(Array(recomputed.utf8), stored)
    }

    /// `crypt_gensalt_rn("$2b$", cost, randomBytes)`.
    private static func makeSetting(cost: Int, randomBytes: [UInt8]) throws(AuthError) -> [UInt8] {
        var output = [CChar](repeating: 0, count: Int(CRYPT_GENSALT_OUTPUT_SIZE))
        let produced = randomBytes.withUnsafeBufferPointer { random in
            random.withMemoryRebound(to: CChar.self) { random in
                output.withUnsafeMutableBufferPointer { output in
                    crypt_gensalt_rn(
                        "$2b$", UInt(cost), random.baseAddress, Int32(random.count), output.baseAddress,
                        Int32(output.count))
                }
            }
        }
        guard produced != nil, let end = output.firstIndex(of: 0), end > 0, output[0] != CChar(UInt8(ascii: "*"))
        else {
            throw .internal("auth: bcrypt salt generation failed")
        }
        return output[..<end].map { UInt8(bitPattern: $0) }
    }

    /// `crypt_r(password, setting)`, or nil when libxcrypt refuses the setting (it answers with a string
    /// starting with `*` or with NULL). The 32 KiB `crypt_data` is zeroed, as libxcrypt requires before first use.
    private static func crypt(password: [UInt8], setting: [UInt8]) -> String? {
        guard !password.contains(0) else { return nil }
        let data = UnsafeMutablePointer<crypt_data>.allocate(capacity: 1)
        defer {
            // The work area held the password's key schedule: wipe it before giving the memory back.
            UnsafeMutableRawPointer(data).initializeMemory(
                as: UInt8.self, repeating: 0, count: MemoryLayout<crypt_data>.size)
            data.deallocate()
        }
        UnsafeMutableRawPointer(data).initializeMemory(
            as: UInt8.self, repeating: 0, count: MemoryLayout<crypt_data>.size)
        let phrase = password.map { CChar(bitPattern: $0) } + [0]
        let settingC = setting.map { CChar(bitPattern: $0) } + [0]
        guard let result = crypt_r(phrase, settingC, data) else { return nil }
        let output = String(cString: result)
        guard !output.isEmpty, !output.hasPrefix("*") else { return nil }
        return output
    }

    private static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference: UInt8 = a.count == b.count ? 0 : 1
        for index in 0..<max(a.count, b.count) {
            let x = index < a.count ? a[index] : 0
            let y = index < b.count ? b[index] : 0
            difference |= x ^ y
        }
        return difference == 0
    }
}
