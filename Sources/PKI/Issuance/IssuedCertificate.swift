import X509

/// A freshly issued certificate with its private key, ready to be written to disk or handed to a TLS stack.
public struct IssuedCertificate: Sendable, Equatable {
    public let certificate: Certificate
    public let privateKey: Certificate.PrivateKey

    public init(certificate: Certificate, privateKey: Certificate.PrivateKey) {
        self.certificate = certificate
        self.privateKey = privateKey
    }

    public var certificatePEM: String {
        get throws { try PEMCodec.pem(for: certificate) }
    }

    public var privateKeyPEM: String {
        get throws { try PEMCodec.pem(for: privateKey) }
    }
}
