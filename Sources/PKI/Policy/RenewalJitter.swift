/// A member's fixed position inside the renewal jitter window, in [0, 1).
///
/// Drawn once per process from an injected generator and then reused for every check, so repeated checks agree on the
/// renewal time (a fresh draw per check would make early renewal ever more likely) while different members, drawing
/// independently, spread their renewals instead of reloading TLS in lock-step.
public struct RenewalJitter: Sendable, Equatable {
    public let unit: Double

    public init(unit: Double) {
        self.unit = min(max(unit, 0), 0.999_999)
    }

    public static func random(using rng: inout some RandomNumberGenerator) -> RenewalJitter {
        RenewalJitter(unit: Double.random(in: 0..<1, using: &rng))
    }

    /// No spread: renew exactly at the threshold.
    public static let none = RenewalJitter(unit: 0)
}
