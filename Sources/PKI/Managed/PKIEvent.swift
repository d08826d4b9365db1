import Foundation

/// Something `ManagedPKI.ensure` did or could not do. The Server logs each event and counts them
/// (`quorum_pki_renewals_total{usage,result}`), so every change to the PKI is visible after the fact.
public enum PKIEvent: Sendable, Equatable, CustomStringConvertible {
    case createdCA(CAKind, path: String, subject: String, notAfter: Date)
    case importedCA(CAKind, from: String)
    case trustBundleUpdated(CAKind, path: String, added: String)
    case issued(CertificateUsage, path: String, serialHex: String, notAfter: Date, reasons: [RenewalReason])
    case renewalFailed(CertificateUsage, path: String, error: String)
    /// The certificate needs renewal but its CA key is not here (externally managed CA).
    case renewalBlocked(CertificateUsage, path: String, reasons: [RenewalReason])

    public var description: String {
        switch self {
        case .createdCA(let kind, let path, let subject, let notAfter):
            return "created \(kind.rawValue) CA \(subject) at \(path), valid until \(RFC3339.string(notAfter))"
        case .importedCA(let kind, let from):
            return "imported \(kind.rawValue) CA from \(from)"
        case .trustBundleUpdated(let kind, let path, let added):
            return "added \(added) to \(kind.rawValue) trust bundle \(path)"
        case .issued(let usage, let path, let serial, let notAfter, let reasons):
            return "issued \(usage.rawValue) certificate \(path) serial \(serial) valid until "
                + "\(RFC3339.string(notAfter)) because \(reasons.map(\.description).joined(separator: "; "))"
        case .renewalFailed(let usage, let path, let error):
            return "renewing \(usage.rawValue) certificate \(path) failed: \(error)"
        case .renewalBlocked(let usage, let path, let reasons):
            return "\(usage.rawValue) certificate \(path) needs renewal ("
                + reasons.map(\.description).joined(separator: "; ")
                + ") but its CA key is not in this data directory; replace it by hand"
        }
    }

    /// The usage label for metrics, when the event concerns one certificate.
    public var usage: CertificateUsage? {
        switch self {
        case .issued(let usage, _, _, _, _), .renewalFailed(let usage, _, _), .renewalBlocked(let usage, _, _):
            return usage
        case .createdCA(let kind, _, _, _), .importedCA(let kind, _), .trustBundleUpdated(let kind, _, _):
            return kind.usage
        }
    }

    public var isFailure: Bool {
        switch self {
        case .renewalFailed, .renewalBlocked: return true
        default: return false
        }
    }
}
