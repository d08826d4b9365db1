import Foundation

/// A reproducible random number generator (SplitMix64), shared by every test target so that a failing run repeats
/// from the seed it printed.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    public let seed: UInt64
    private var state: UInt64

    /// Uses `QUORUM_TEST_SEED` when set, else a fresh seed; prints it either way, naming the test.
    public init(_ test: String = #function) {
        let seed = Self.seed(for: test)
        self.init(seed: seed)
    }

    public init(seed: UInt64) {
        self.seed = seed
        state = seed
    }

    /// A seed from `QUORUM_TEST_SEED` or a fresh one, printed with the way to replay it.
    public static func seed(for test: String) -> UInt64 {
        let seed =
            ProcessInfo.processInfo.environment["QUORUM_TEST_SEED"].flatMap { UInt64($0) }
            ?? UInt64.random(in: 1...UInt64(UInt32.max))
        print("\(test): seed \(seed) (replay with QUORUM_TEST_SEED=\(seed))")
        return seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var i = 0
        while i < count {
            var word = next()
            for _ in 0..<8 where i < count {
                out[i] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                i += 1
            }
        }
        return out
    }
}
