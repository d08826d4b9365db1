import Foundation
import X509

/// One certificate a member has loaded, in the shape the Server exports as gauges
/// (`quorum_pki_certificate_not_after_seconds{usage,subject,serial}`).
public struct CertificateStatus: Sendable, Equatable, Codable {
    public var usage: CertificateUsage
    public var path: String
    public var subject: String
    public var serialHex: String
    public var notBefore: Date
    public var notAfter: Date
    /// Whether Quorum holds the signing key and so renews this certificate itself.
    public var managed: Bool
    /// When the renewal policy will renew it (leaves only).
    public var renewAt: Date?

    public init(usage: CertificateUsage, path: String, certificate: Certificate, managed: Bool, renewAt: Date? = nil) {
        self.usage = usage
        self.path = path
        subject = certificate.subject.description
        serialHex = certificate.serialNumber.hexString
        notBefore = certificate.notValidBefore
        notAfter = certificate.notValidAfter
        self.managed = managed
        self.renewAt = renewAt
    }

    /// notAfter as Unix seconds, the gauge value.
    public var notAfterUnixSeconds: Double { notAfter.timeIntervalSince1970 }
}
