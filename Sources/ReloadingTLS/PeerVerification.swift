import Foundation
import NIOSSL
import PKI
import X509

/// What the other side of a connection must present, checked against the trust bundle and CRL current at the
/// moment of the handshake (so bundle and CRL changes apply to the next handshake, like certificate changes).
public struct TLSVerificationPolicy: Sendable {
    /// The usage the presented leaf must allow: clientAuth when we are the server, serverAuth when we dial.
    public enum Role: Sendable {
        case verifyingClient
        case verifyingServer
    }

    public var role: Role
    /// `--peer-cert-allowed-cn`.
    public var allowedCN: String?
    /// `--client-cert-allowed-hostname`, `--peer-cert-allowed-hostname`.
    public var allowedHostname: String?

    public init(role: Role, allowedCN: String? = nil, allowedHostname: String? = nil) {
        self.role = role
        self.allowedCN = allowedCN
        self.allowedHostname = allowedHostname
    }
}

/// The certificate that passed verification; its common name is the etcd user for client-certificate auth.
public struct VerifiedPeer: Sendable, Equatable {
    public var commonName: String?
    public var subject: String
    public var serialHex: String
}

/// Why a handshake was refused, as a short metric label and an operator sentence.
public struct TLSRejection: Error, Sendable, Equatable, CustomStringConvertible {
    /// The `reason` label of `quorum_tls_handshake_failures_total`: expired, not_yet_valid, unknown_authority,
    /// revoked, san_mismatch, cn_not_allowed, wrong_usage, no_certificate, plaintext, protocol_version,
    /// no_shared_cipher, rejected_by_peer, bad_certificate, other.
    public var reason: String
    public var message: String

    public init(reason: String, message: String) {
        self.reason = reason
        self.message = message
    }

    public var description: String { message }
}

/// Quorum's certificate check for TLS handshakes, run from NIOSSL's custom verification callback.
///
/// BoringSSL's own verifier only says "certificate verify failed"; running `ChainVerifier` instead names the
/// certificate, the date, the bundle and the host, which is what an operator needs at 3 a.m.
public enum TLSVerifier {
    public static func verify(
        presented: [NIOSSLCertificate],
        bundle: TrustBundle?,
        crl: ChainVerifier.NamedCRL?,
        policy: TLSVerificationPolicy,
        expectedHost: String? = nil,
        now: Date = Date()
    ) -> Result<VerifiedPeer, TLSRejection> {
        guard !presented.isEmpty else {
            return .failure(TLSRejection(reason: "no_certificate", message: "no certificate presented"))
        }
        let chain: [Certificate]
        do {
            chain = try presented.map { try Certificate(derEncoded: $0.toDERBytes()) }
        } catch {
            return .failure(TLSRejection(reason: "bad_certificate", message: "unparsable certificate: \(error)"))
        }
        return verify(
            chain: chain, bundle: bundle, crl: crl, policy: policy, expectedHost: expectedHost, now: now)
    }

    public static func verify(
        chain: [Certificate],
        bundle: TrustBundle?,
        crl: ChainVerifier.NamedCRL?,
        policy: TLSVerificationPolicy,
        expectedHost: String? = nil,
        now: Date = Date()
    ) -> Result<VerifiedPeer, TLSRejection> {
        guard let leaf = chain.first else {
            return .failure(TLSRejection(reason: "no_certificate", message: "no certificate presented"))
        }
        let who = "certificate \(leaf.subject) (serial \(leaf.serialNumber.hexString))"
        guard let bundle else {
            return .failure(
                TLSRejection(reason: "unknown_authority", message: "\(who): no trusted CA file is configured"))
        }
        let usage: ExtendedKeyUsage.Usage = policy.role == .verifyingClient ? .clientAuth : .serverAuth
        let result = ChainVerifier.verify(
            leaf, intermediates: Array(chain.dropFirst()), against: bundle, at: now, host: expectedHost,
            requiredUsage: usage, revocation: crl)
        // A stale or unsigned CRL is reported by doctor, but must not lock every client out: only real problems count.
        let fatal = result.problems.filter { problem in
            switch problem {
            case .crlExpired, .crlSignatureInvalid: return false
            default: return true
            }
        }
        if let first = fatal.first {
            let message = fatal.map(\.description).joined(separator: "; ")
            return .failure(TLSRejection(reason: label(first), message: "\(who): \(message)"))
        }
        let commonName = leaf.subject.commonName
        if let allowed = policy.allowedCN, commonName != allowed {
            return .failure(
                TLSRejection(
                    reason: "cn_not_allowed",
                    message: "\(who): \(Self.authenticationFailed) (common name \(commonName ?? "(none)") is not the "
                        + "allowed CN \(allowed))"))
        }
        if let allowed = policy.allowedHostname, !SubjectNames(certificate: leaf).covers(host: allowed) {
            let names = SubjectNames(certificate: leaf).allNames
            return .failure(
                TLSRejection(
                    reason: "san_mismatch",
                    message: "\(who): \(Self.authenticationFailed) (SAN does not contain allowed hostname \(allowed), "
                        + "has: " + (names.isEmpty ? "no SANs" : names.joined(separator: ", ")) + ")"))
        }
        return .success(
            VerifiedPeer(
                commonName: commonName, subject: leaf.subject.description, serialHex: leaf.serialNumber.hexString))
    }

    /// etcd's words for a certificate refused by `--(peer-)cert-allowed-cn` or `-allowed-hostname` (its
    /// `VerifyPeerCertificate` error, which is what etcd logs), so that the same search finds both.
    static let authenticationFailed = "client certificate authentication failed"

    static func label(_ problem: ChainProblem) -> String {
        switch problem {
        case .expired: return "expired"
        case .notYetValid: return "not_yet_valid"
        case .unknownAuthority, .signatureMismatch, .issuerNotCertificateAuthority: return "unknown_authority"
        case .hostNotInSAN: return "san_mismatch"
        case .missingExtendedKeyUsage: return "wrong_usage"
        case .revoked: return "revoked"
        case .crlExpired, .crlSignatureInvalid: return "other"
        }
    }

    /// Turns NIOSSL's handshake errors into a reason for failures our callback did not already explain: BoringSSL's
    /// codes are precise but cryptic (`PEER_DID_NOT_RETURN_A_CERTIFICATE`), so each is spelled out.
    public static func classify(_ error: any Error, tlsMinimum: String) -> TLSRejection {
        let text = String(describing: error)
        func has(_ code: String) -> Bool { text.contains(code) }
        if has("PEER_DID_NOT_RETURN_A_CERTIFICATE") || has("CERTIFICATE_REQUIRED") {
            return TLSRejection(
                reason: "no_certificate",
                message: "client presented no certificate, but client certificate auth is required")
        }
        if has("WRONG_VERSION_NUMBER") || has("HTTP_REQUEST") || has("HTTPS_PROXY_REQUEST")
            || has("PACKET_LENGTH_TOO_LONG") || has("RECORD_LENGTH_MISMATCH")
        {
            return TLSRejection(
                reason: "plaintext",
                message: "client spoke plaintext to a TLS port (use https:// and a TLS-enabled client)")
        }
        if has("UNSUPPORTED_PROTOCOL") || has("PROTOCOL_VERSION") {
            return TLSRejection(
                reason: "protocol_version",
                message: "client offered only TLS versions below the minimum \(tlsMinimum) (or above the maximum)")
        }
        if has("NO_SHARED_CIPHER") || has("NO_CIPHERS_AVAILABLE") {
            return TLSRejection(
                reason: "no_shared_cipher",
                message: "client and server have no cipher suite in common (--cipher-suites)")
        }
        if has("ALERT_UNKNOWN_CA") || has("ALERT_BAD_CERTIFICATE") || has("ALERT_CERTIFICATE_EXPIRED")
            || has("ALERT_CERTIFICATE_UNKNOWN") || has("ALERT_UNSUPPORTED_CERTIFICATE")
            || has("ALERT_CERTIFICATE_REVOKED") || has("ALERT_HANDSHAKE_FAILURE") || has("ALERT_DECRYPT_ERROR")
        {
            return TLSRejection(
                reason: "rejected_by_peer",
                message: "the other side rejected our certificate (\(text)); check that it trusts our CA bundle "
                    + "and connects to a name in our certificate's SANs")
        }
        if has("CERTIFICATE_VERIFY_FAILED") {
            return TLSRejection(reason: "bad_certificate", message: "certificate verification failed (\(text))")
        }
        return TLSRejection(reason: "other", message: text)
    }
}
