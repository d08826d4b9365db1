import Foundation

/// The CA rotation state machine: pure, persisted, and resumable after a crash at any point.
///
/// Rotating a CA without an outage needs an overlap in which both CAs are trusted:
///
/// 1. `.stagedNewCA`: a new CA exists (`ca/<kind>-ca-next.*`) and is appended to the trust bundle; leaves are still
///    from the old CA. Every member and client must pick up the new bundle before step 2, so that certificates from
///    either CA verify everywhere.
/// 2. `.reissued`: the new CA is promoted to signing CA (the old one kept as `ca/<kind>-ca-previous.*`) and every
///    local leaf is re-issued from it. The bundle still trusts both, so members not yet re-issued keep working.
/// 3. `.retired`: once nothing depends on the old CA (no local leaf, and no leaf of another member the caller knows
///    about, is signed by it), it is removed from the bundle and its key is deleted.
///
/// Each step is a list of idempotent actions; the phase is persisted only after all of them succeed, so a crash
/// anywhere simply repeats the step. Re-running a completed action is a no-op.
public struct CARotation: Sendable, Codable, Equatable {
    public enum Phase: String, Sendable, Codable, CaseIterable {
        case idle
        case stagedNewCA
        case reissued
        case retired

        /// A rotation is between `start` and retirement.
        public var isInProgress: Bool { self == .stagedNewCA || self == .reissued }
    }

    /// One idempotent piece of work, performed by `CARotationRunner`.
    public enum Action: String, Sendable, Codable, Equatable {
        /// Create `<kind>-ca-next.*` unless it already exists (a staged CA copied from another member is reused).
        case stageNextCA
        /// Append the next CA to the trust bundle unless present.
        case addNextCAToBundle
        /// Keep the current CA as `-previous`, make the next CA current, remove `-next`.
        case promoteNextCA
        /// Re-issue every local leaf not signed by the current CA.
        case reissueLeaves
        /// Remove the previous CA from the trust bundle.
        case removePreviousCAFromBundle
        /// Delete `<kind>-ca-previous.*`.
        case deletePreviousCA
    }

    public enum Request: Sendable, Equatable {
        case start
        case advance
    }

    /// What the next step would do.
    public enum Step: Sendable, Equatable {
        case perform([Action], reaching: Phase)
        case blocked(String)
    }

    /// A completed phase change, kept for `quorumctl certs rotate-ca --status`.
    public struct Transition: Sendable, Codable, Equatable {
        public var phase: Phase
        public var at: Date
    }

    public let kind: CAKind
    public private(set) var phase: Phase
    /// SHA-256 fingerprint of the CA being replaced.
    public private(set) var previousCAFingerprint: String?
    /// SHA-256 fingerprint of the replacement CA.
    public private(set) var newCAFingerprint: String?
    public private(set) var history: [Transition]

    public init(kind: CAKind) {
        self.kind = kind
        phase = .idle
        history = []
    }

    /// Plans the next step. `leavesOnPreviousCA` lists certificates (paths or member names) still signed by the
    /// previous CA; retirement waits until it is empty.
    public func plan(_ request: Request, leavesOnPreviousCA: [String] = []) -> Step {
        switch (request, phase) {
        case (.start, .idle), (.start, .retired):
            return .perform([.stageNextCA, .addNextCAToBundle], reaching: .stagedNewCA)
        case (.start, _):
            return .blocked(
                "a \(kind.rawValue) CA rotation is already in progress (phase \(phase.rawValue)); advance it")
        case (.advance, .idle), (.advance, .retired):
            return .blocked("no \(kind.rawValue) CA rotation is in progress; start one first")
        case (.advance, .stagedNewCA):
            return .perform([.promoteNextCA, .reissueLeaves], reaching: .reissued)
        case (.advance, .reissued):
            guard leavesOnPreviousCA.isEmpty else {
                return .blocked(
                    "cannot retire the previous \(kind.rawValue) CA yet: still signed by it: "
                        + leavesOnPreviousCA.joined(separator: ", "))
            }
            return .perform([.removePreviousCAFromBundle, .deletePreviousCA], reaching: .retired)
        }
    }

    /// Records that every action of the step reaching `phase` has been performed.
    public mutating func onStepCompleted(
        reaching phase: Phase,
        previousCAFingerprint: String?,
        newCAFingerprint: String?,
        at now: Date
    ) {
        self.phase = phase
        if let previousCAFingerprint { self.previousCAFingerprint = previousCAFingerprint }
        if let newCAFingerprint { self.newCAFingerprint = newCAFingerprint }
        history.append(Transition(phase: phase, at: now))
    }
}
