import Foundation

/// Lifetimes and clock-skew allowances used when the caller does not say otherwise.
public enum IssuanceDefaults {
    public static let day: TimeInterval = 86_400
    /// Ten years: a CA must outlive many leaf generations, and its rotation is a deliberate, announced operation.
    public static let caValidity: TimeInterval = 3_650 * day
    /// One year, the etcd-manager lifetime, but here renewed automatically long before it runs out.
    public static let leafValidity: TimeInterval = 365 * day
    /// How far notBefore is moved into the past so a peer whose clock is a little behind still accepts a fresh
    /// certificate. Five minutes covers NTP-synchronised fleets; larger skew is a Doctor finding, not a thing to hide.
    public static let clockSkewAllowance: TimeInterval = 300

    /// The backdate for a given lifetime: the skew allowance, but never more than a tenth of a very short lifetime so
    /// test certificates of a few seconds are not dominated by it.
    static func backdate(forValidity validity: TimeInterval) -> TimeInterval {
        min(clockSkewAllowance, (validity / 10).rounded(.down))
    }

    /// X.509 times have one-second resolution; issuing on whole seconds makes the stored and in-memory dates equal.
    static func wholeSeconds(_ date: Date) -> Date {
        Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down))
    }
}
