import Foundation

/// Every failure the PKI library reports, each with a message an operator can act on.
///
/// The etcd-manager outage was made worse by errors like `tls: bad certificate` that named neither the file nor the
/// date nor the fix. Every case here renders a sentence that names the file, the time and, where there is one, the
/// command that repairs it.
public enum PKIError: Error, Equatable, Sendable, CustomStringConvertible, LocalizedError {
    case invalidPEM(source: String, reason: String)
    case unsupportedKey(source: String, reason: String)
    case keyMismatch(certificate: String, path: String?)
    case notACertificateAuthority(subject: String)
    case missingFile(path: String, hint: String)
    case fileSystem(operation: String, path: String, reason: String)
    case certificateAuthorityExpired(usage: CertificateUsage, path: String, notAfter: Date, now: Date, dataDir: String)
    case certificateAuthorityNotYetValid(usage: CertificateUsage, path: String, notBefore: Date, now: Date)
    case certificateAuthorityKeyMissing(usage: CertificateUsage, path: String, dataDir: String)
    case invalidLifetime(input: String, reason: String)
    case invalidCRL(source: String, reason: String)
    case rotation(String)
    case issuance(String)

    public var description: String {
        switch self {
        case .invalidPEM(let source, let reason):
            return "\(source): not valid PEM: \(reason)"
        case .unsupportedKey(let source, let reason):
            return "\(source): unsupported or corrupt private key: \(reason)"
        case .keyMismatch(let certificate, let path):
            let location = path.map { " (\($0))" } ?? ""
            return "private key does not match certificate \(certificate)\(location)"
        case .notACertificateAuthority(let subject):
            return "certificate \(subject) is not a certificate authority (basicConstraints CA:FALSE or missing)"
        case .missingFile(let path, let hint):
            return "\(path) does not exist; \(hint)"
        case .fileSystem(let operation, let path, let reason):
            return "cannot \(operation) \(path): \(reason)"
        case .certificateAuthorityExpired(let usage, let path, let notAfter, let now, let dataDir):
            return """
                \(usage.caDescription) \(path) expired at \(RFC3339.string(notAfter)) (now \(RFC3339.string(now))); \
                every certificate it signed is rejected by peers and clients. \
                Fix: quorumctl certs rotate-ca --data-dir \(dataDir)
                """
        case .certificateAuthorityNotYetValid(let usage, let path, let notBefore, let now):
            return """
                \(usage.caDescription) \(path) is not yet valid until \(RFC3339.string(notBefore)) \
                (now \(RFC3339.string(now))); check this machine's clock (timedatectl, chronyc tracking)
                """
        case .certificateAuthorityKeyMissing(let usage, let path, let dataDir):
            return """
                \(usage.caDescription) private key \(path) is missing, so certificates cannot be issued or renewed. \
                Fix: copy the CA key from the bundle created by `quorumctl pki init` into \(path), \
                or run quorumctl certs rotate-ca --data-dir \(dataDir)
                """
        case .invalidLifetime(let input, let reason):
            return "invalid certificate validity \"\(input)\": \(reason)"
        case .invalidCRL(let source, let reason):
            return "\(source): not a valid certificate revocation list: \(reason)"
        case .rotation(let message), .issuance(let message):
            return message
        }
    }

    public var errorDescription: String? { description }
}
