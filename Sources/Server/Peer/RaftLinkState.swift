/// The life of one Raft link as a pure state machine: events in, actions out. `RaftLink` is the shell that dials,
/// writes and closes; this decides when.
///
/// Besides dialling and redialling with backoff, it replaces a working connection without a gap: when this member's
/// TLS material changes (a renewed certificate, a rotated CA) or the other member asks for it (HTTP/2 GOAWAY after
/// *its* renewal), a second connection is dialled while the first keeps carrying messages; once the second is up it
/// carries them, and the first is retired: its stream is ended so whatever was written on it is delivered, then it
/// closes. So no link lives on a certificate that was current when it was dialled but expires later, in either
/// direction, and no message is dropped for it.
struct RaftLinkState: Sendable {
    /// A connection the link dialled, by attempt number, with the generation of the TLS material it was made with.
    struct Connection: Equatable, Sendable {
        var id: UInt64
        var generation: Int
    }

    enum Phase: Equatable, Sendable {
        case idle
        case dialling(attempt: UInt64)
        case open(Connection)
        /// Down after a failure; dialled again by the first send at or after `until` (monotonic nanoseconds).
        case waiting(until: UInt64)
        case stopped
    }

    /// Why a working connection is being replaced.
    enum Renewal: String, Sendable {
        /// This member's TLS material changed.
        case renewal
        /// The other member sent GOAWAY (it renewed, or is shutting down).
        case goAway = "goaway"
    }

    enum Action: Equatable, Sendable {
        /// Dial a connection; its outcome comes back as `onDialed` or `onDialFailed` with this attempt.
        case dial(attempt: UInt64)
        /// End the connection's stream so what was written is delivered, then close it.
        case retire(UInt64)
        /// Close the connection now (superseded or stopped).
        case close(UInt64)
        /// Raft should hear that the peer is unreachable (messages were or will be dropped).
        case reportUnreachable
        /// A replacement took over (for the reconnect metric and the log).
        case replaced(old: UInt64, new: UInt64, Renewal)
    }

    private(set) var phase = Phase.idle
    /// A second connection being dialled to take over from the open one.
    private(set) var replacement: (attempt: UInt64, reason: Renewal)?
    /// A renewal asked for while a dial was under way, or that failed: done once a connection is open and due.
    private var pendingRenewal: (reason: Renewal, notBefore: UInt64)?
    private var nextAttempt: UInt64 = 1
    private(set) var backoffNanos: UInt64 = Self.initialBackoff

    static let initialBackoff: UInt64 = 50_000_000
    static let maximumBackoff: UInt64 = 1_000_000_000

    /// The open connection's id, if any.
    var openConnection: UInt64? {
        if case .open(let connection) = phase { return connection.id }
        return nil
    }

    private mutating func attempt() -> UInt64 {
        defer { nextAttempt += 1 }
        return nextAttempt
    }

    private mutating func backOff(now: UInt64) -> UInt64 {
        let until = now + backoffNanos
        backoffNanos = min(backoffNanos * 2, Self.maximumBackoff)
        return until
    }

    /// Someone wants to send (or the link starts): dial if nothing is open and the backoff allows; start a renewal
    /// that is due.
    mutating func onSendAttempt(now: UInt64) -> [Action] {
        switch phase {
        case .idle:
            let id = attempt()
            phase = .dialling(attempt: id)
            return [.dial(attempt: id)]
        case .waiting(let until) where until <= now:
            let id = attempt()
            phase = .dialling(attempt: id)
            return [.dial(attempt: id)]
        case .open:
            if let pending = pendingRenewal, pending.notBefore <= now, replacement == nil {
                pendingRenewal = nil
                return startReplacement(pending.reason)
            }
            return []
        default:
            return []
        }
    }

    /// The material changed, or the other side sent GOAWAY on `connection` (nil: whatever is open).
    mutating func onRenew(_ reason: Renewal, connection: UInt64? = nil) -> [Action] {
        switch phase {
        case .open(let open):
            if let connection, connection != open.id { return [] }
            if replacement != nil {
                // A replacement is already being dialled; if it was made before this change, it is renewed in turn.
                if reason == .renewal { pendingRenewal = (reason, 0) }
                return []
            }
            return startReplacement(reason)
        case .dialling:
            // The dial under way may have been made with the old material: renew once it is open.
            if reason == .renewal { pendingRenewal = (reason, 0) }
            return []
        default:
            // Nothing open: the next dial uses whatever is current.
            return []
        }
    }

    private mutating func startReplacement(_ reason: Renewal) -> [Action] {
        let id = attempt()
        replacement = (id, reason)
        return [.dial(attempt: id)]
    }

    /// A dial succeeded; `currentGeneration` is the material's generation now.
    mutating func onDialed(attempt id: UInt64, generation: Int, currentGeneration: Int) -> [Action] {
        let connection = Connection(id: id, generation: generation)
        if case .dialling(let attempt) = phase, attempt == id {
            phase = .open(connection)
            backoffNanos = Self.initialBackoff
            if generation < currentGeneration || pendingRenewal != nil {
                pendingRenewal = nil
                return startReplacement(.renewal)
            }
            return []
        }
        if let replacing = replacement, replacing.attempt == id, case .open(let old) = phase {
            phase = .open(connection)
            replacement = nil
            backoffNanos = Self.initialBackoff
            var actions: [Action] = [.retire(old.id), .replaced(old: old.id, new: id, replacing.reason)]
            if generation < currentGeneration || pendingRenewal != nil {
                pendingRenewal = nil
                actions += startReplacement(.renewal)
            }
            return actions
        }
        // Stopped, or superseded: nobody uses it.
        return [.close(id)]
    }

    mutating func onDialFailed(attempt id: UInt64, now: UInt64) -> [Action] {
        if case .dialling(let attempt) = phase, attempt == id {
            phase = .waiting(until: backOff(now: now))
            return [.reportUnreachable]
        }
        if let replacing = replacement, replacing.attempt == id {
            // The open connection still works: keep it and try the replacement again after the backoff.
            replacement = nil
            pendingRenewal = (replacing.reason, backOff(now: now))
            return []
        }
        return []
    }

    /// A connection closed (the other side went away, the network broke, or a retired one finished).
    mutating func onClosed(_ id: UInt64, now: UInt64) -> [Action] {
        guard case .open(let open) = phase, open.id == id else { return [] }
        if let replacing = replacement {
            // The replacement being dialled becomes the only hope; messages meanwhile are dropped.
            phase = .dialling(attempt: replacing.attempt)
            replacement = nil
            return [.reportUnreachable]
        }
        phase = .waiting(until: backOff(now: now))
        return [.reportUnreachable]
    }

    mutating func onStop() -> [Action] {
        var actions: [Action] = []
        if case .open(let open) = phase { actions.append(.close(open.id)) }
        if let replacing = replacement { actions.append(.close(replacing.attempt)) }
        phase = .stopped
        replacement = nil
        pendingRenewal = nil
        return actions
    }
}
