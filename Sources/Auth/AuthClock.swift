#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Wall-clock time for token expiry, injected so that tests control it and nothing else reads the real clock.
///
/// Wall time, not a monotonic clock, because a JWT's `exp` claim is Unix seconds that other members and clients
/// compare too; simple tokens use the same clock for their TTL.
public struct AuthClock: Sendable {
    /// Time since the Unix epoch.
    public var now: @Sendable () -> Duration

    public init(now: @escaping @Sendable () -> Duration) {
        self.now = now
    }

    /// The system's wall clock.
    public static let system = AuthClock {
        let seconds = Date().timeIntervalSince1970
        return .nanoseconds(Int64((seconds * 1_000_000_000).rounded(.down)))
    }

    /// Whole seconds since the Unix epoch, rounded down as Go's `time.Time.Unix` rounds.
    var unixSeconds: Int64 {
        let (seconds, attoseconds) = now().components
        return attoseconds < 0 ? seconds - 1 : seconds
    }
}
