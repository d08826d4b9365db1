import Foundation

/// Everything `ManagedPKI.ensure` has to say: what changed, what worries it, what to load, when to call again.
public struct PKIEnsureReport: Sendable {
    public var events: [PKIEvent]
    /// Conditions that need a human soon (CA near expiry, externally managed CA, a very short leaf lifetime).
    public var warnings: [String]
    public var paths: TLSFilePaths
    /// Every certificate in use, for metrics.
    public var certificates: [CertificateStatus]
    /// When to run `ensure` again.
    public var nextCheck: Date

    /// True when any served certificate or trust bundle changed, i.e. TLS contexts must be reloaded.
    public var tlsMaterialChanged: Bool {
        events.contains { event in
            switch event {
            case .issued, .trustBundleUpdated, .createdCA, .importedCA: return true
            case .renewalFailed, .renewalBlocked: return false
            }
        }
    }
}
