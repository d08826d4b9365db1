import Foundation

/// Why a leaf certificate must be (re-)issued. Each case renders as a sentence for logs and events.
public enum RenewalReason: Sendable, Equatable, CustomStringConvertible {
    case missing(path: String)
    case unreadable(path: String, error: String)
    case keyMissing(path: String)
    case keyMismatch(path: String)
    case expired(notAfter: Date)
    case notYetValid(notBefore: Date)
    case nearExpiry(notAfter: Date, renewAt: Date)
    /// No CA in the trust bundle signed it (typically: the old CA was retired, or the bundle was replaced).
    case issuerNotTrusted(issuer: String, bundle: String)
    /// A trusted CA signed it, but not the CA that currently signs (a CA rotation is moving leaves to the new CA).
    case issuedByPreviousCA(issuer: String, current: String)
    case namesChanged(missing: [String], unexpected: [String])
    case commonNameChanged(from: String, to: String)
    case usageChanged(has: [String], wants: [String])
    case keyAlgorithmChanged(from: String, to: String)
    case forced

    public var description: String {
        switch self {
        case .missing(let path): return "\(path) does not exist"
        case .unreadable(let path, let error): return "\(path) cannot be read: \(error)"
        case .keyMissing(let path): return "private key \(path) does not exist"
        case .keyMismatch(let path): return "private key \(path) does not match the certificate"
        case .expired(let notAfter): return "certificate expired at \(RFC3339.string(notAfter))"
        case .notYetValid(let notBefore):
            return "certificate is not yet valid until \(RFC3339.string(notBefore)) (issued with a clock ahead of ours)"
        case .nearExpiry(let notAfter, let renewAt):
            return "certificate expires at \(RFC3339.string(notAfter)); renewal was due at \(RFC3339.string(renewAt))"
        case .issuerNotTrusted(let issuer, let bundle):
            return "issuer \(issuer) is not in the trust bundle \(bundle)"
        case .issuedByPreviousCA(let issuer, let current):
            return "issued by \(issuer), but the signing CA is now \(current)"
        case .namesChanged(let missing, let unexpected):
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing SANs \(missing.joined(separator: ", "))") }
            if !unexpected.isEmpty { parts.append("no longer wanted SANs \(unexpected.joined(separator: ", "))") }
            return "subject alternative names changed: " + parts.joined(separator: "; ")
        case .commonNameChanged(let from, let to): return "common name changed from \(from) to \(to)"
        case .usageChanged(let has, let wants):
            return "extended key usage is [\(has.joined(separator: ", "))], wanted [\(wants.joined(separator: ", "))]"
        case .keyAlgorithmChanged(let from, let to): return "key algorithm is \(from), configured \(to)"
        case .forced: return "renewal requested by operator"
        }
    }
}
