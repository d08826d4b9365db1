import Foundation

/// The verdict of `RenewalPolicy.evaluate`: whether to issue now, why, and when to look again.
public struct RenewalDecision: Sendable, Equatable {
    /// Empty when the certificate is fine.
    public let reasons: [RenewalReason]
    /// When the current certificate becomes due for renewal (jitter applied); nil when there is no usable certificate.
    public let renewAt: Date?
    /// When the caller should evaluate again.
    public let nextCheck: Date

    public var shouldRenew: Bool { !reasons.isEmpty }

    /// One line for logs: `renew: …; …` or `keep: renewal due at …`.
    public var summary: String {
        if shouldRenew { return "renew: " + reasons.map(\.description).joined(separator: "; ") }
        if let renewAt { return "keep: renewal due at \(RFC3339.string(renewAt))" }
        return "keep"
    }
}
