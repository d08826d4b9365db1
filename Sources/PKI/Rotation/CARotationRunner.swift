import Foundation
import X509

/// Executes `CARotation` steps against a data directory; the library behind `quorumctl certs rotate-ca`.
///
/// In a cluster the new CA must be the same on every member: stage on one member, copy its
/// `ca/<kind>-ca-next.crt|key` to the others' `ca/` folders (or create one with `quorumctl pki init --out DIR` and pass
/// DIR as `nextCASource`), then stage on the others; a staged CA already present is always reused. Advance every
/// member to `.reissued` before retiring on any of them.
public struct CARotationRunner: Sendable {
    public struct StepResult: Sendable, Equatable {
        public var kind: CAKind
        public var from: CARotation.Phase
        public var to: CARotation.Phase
        /// What each action did, in order, for the CLI to print.
        public var log: [String]
    }

    public let layout: PKILayout
    public let kind: CAKind
    /// Validity of a newly generated CA.
    public var caValidity: TimeInterval
    /// Key type of a newly generated CA; nil keeps the type of the CA being replaced.
    public var keyAlgorithm: KeyAlgorithm?
    /// Lifetime of re-issued leaves; nil keeps each leaf's current lifetime.
    public var leafLifetime: LeafLifetime?

    public init(
        dataDirectory: URL,
        kind: CAKind,
        caValidity: TimeInterval = IssuanceDefaults.caValidity,
        keyAlgorithm: KeyAlgorithm? = nil,
        leafLifetime: LeafLifetime? = nil
    ) {
        layout = PKILayout(dataDirectory: dataDirectory)
        self.kind = kind
        self.caValidity = caValidity
        self.keyAlgorithm = keyAlgorithm
        self.leafLifetime = leafLifetime
    }

    public func state() throws -> CARotation {
        try CARotationStore.load(kind, layout: layout)
    }

    /// Starts a rotation (stages a new CA) or resumes an interrupted start.
    public func start(now: Date, nextCASource: URL? = nil, using rng: inout some RandomNumberGenerator) throws
        -> StepResult
    {
        try step(.start, now: now, nextCASource: nextCASource, otherMembersLeaves: [], using: &rng)
    }

    /// Moves an in-progress rotation one phase forward. `otherMembersLeaves` are certificates fetched from other
    /// members; retirement is refused while any of them is still signed by the previous CA.
    public func advance(
        now: Date,
        otherMembersLeaves: [Certificate] = [],
        using rng: inout some RandomNumberGenerator
    ) throws -> StepResult {
        try step(.advance, now: now, nextCASource: nil, otherMembersLeaves: otherMembersLeaves, using: &rng)
    }

    /// Single-member convenience (and the fix for an already expired CA): start unless in progress, then advance
    /// until retired.
    public func runToCompletion(now: Date, using rng: inout some RandomNumberGenerator) throws -> [StepResult] {
        var results: [StepResult] = []
        if !(try state().phase.isInProgress) {
            results.append(try start(now: now, using: &rng))
        }
        while try state().phase.isInProgress {
            results.append(try advance(now: now, using: &rng))
        }
        return results
    }

    /// The leaves (and other members' certificates) still signed by the CA being retired.
    public func leavesOnPreviousCA(otherMembersLeaves: [Certificate] = []) throws -> [String] {
        guard let previous = try previousCACertificate() else { return [] }
        var names: [String] = []
        for usage in PKILayout.leafUsages(signedBy: kind) {
            let url = layout.certificate(for: usage)
            if let leaf = try? PEMCodec.certificate(at: url), Self.isSigned(leaf, by: previous) {
                names.append(url.path)
            }
        }
        for leaf in otherMembersLeaves where Self.isSigned(leaf, by: previous) {
            names.append("\(leaf.subject) (serial \(leaf.serialNumber.hexString))")
        }
        return names
    }

    /// Performs one action; exposed so that tests (and careful operators) can run a step piecemeal.
    @discardableResult
    public func perform(
        _ action: CARotation.Action,
        state: CARotation,
        now: Date,
        nextCASource: URL? = nil,
        using rng: inout some RandomNumberGenerator
    ) throws -> String {
        try PKILock.withLock(layout) {
            try performLocked(action, state: state, now: now, nextCASource: nextCASource, using: &rng)
        }
    }

    private func step(
        _ request: CARotation.Request,
        now: Date,
        nextCASource: URL?,
        otherMembersLeaves: [Certificate],
        using rng: inout some RandomNumberGenerator
    ) throws -> StepResult {
        try PKILock.withLock(layout) {
            var state = try CARotationStore.load(kind, layout: layout)
            let pending = state.phase == .reissued ? try leavesOnPreviousCA(otherMembersLeaves: otherMembersLeaves) : []
            switch state.plan(request, leavesOnPreviousCA: pending) {
            case .blocked(let reason):
                throw PKIError.rotation(reason)
            case .perform(let actions, let target):
                let from = state.phase
                var log: [String] = []
                for action in actions {
                    log.append(
                        try performLocked(action, state: state, now: now, nextCASource: nextCASource, using: &rng))
                }
                let fingerprints = try fingerprintsAfter(target)
                state.onStepCompleted(
                    reaching: target, previousCAFingerprint: fingerprints.previous, newCAFingerprint: fingerprints.new,
                    at: now)
                try CARotationStore.save(state, layout: layout)
                return StepResult(kind: kind, from: from, to: target, log: log)
            }
        }
    }

    private func fingerprintsAfter(_ phase: CARotation.Phase) throws -> (previous: String?, new: String?) {
        guard phase == .stagedNewCA else { return (nil, nil) }
        let current = try PEMCodec.certificate(at: layout.caCertificate(kind)).sha256Fingerprint
        let next = try PEMCodec.certificate(at: layout.caCertificate(kind, .next)).sha256Fingerprint
        return (current, next)
    }

    static func isSigned(_ leaf: Certificate, by ca: Certificate) -> Bool {
        leaf.issuer == ca.subject && ca.publicKey.isValidSignature(leaf.signature, for: leaf)
    }
}
