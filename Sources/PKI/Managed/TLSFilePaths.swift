import Foundation

/// The files the TLS layer loads, as returned by `ManagedPKI.ensure`. The Server builds its NIOSSL contexts from these
/// and reloads them whenever `ensure` reports an `issued` or `trustBundleUpdated` event.
public struct TLSFilePaths: Sendable, Equatable {
    public var clientTrustBundle: URL
    public var serverCertificate: URL
    public var serverKey: URL
    public var peerTrustBundle: URL
    public var peerCertificate: URL
    public var peerKey: URL
    public var adminCertificate: URL?
    public var adminKey: URL?
    /// Present only when `clients/crl.pem` exists.
    public var clientCRL: URL?

    init(layout: PKILayout, includeAdmin: Bool) {
        clientTrustBundle = layout.trustBundle(.clients)
        serverCertificate = layout.serverCertificate
        serverKey = layout.serverKey
        peerTrustBundle = layout.trustBundle(.peers)
        peerCertificate = layout.peerCertificate
        peerKey = layout.peerKey
        adminCertificate = includeAdmin ? layout.adminCertificate : nil
        adminKey = includeAdmin ? layout.adminKey : nil
        clientCRL = FileManager.default.fileExists(atPath: layout.clientsCRL.path) ? layout.clientsCRL : nil
    }
}
