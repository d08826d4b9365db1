import NIOCore
import NIOSSL

/// Supplies the TLS context for each new connection; swapping what it returns rotates certificates without
/// touching open connections.
public protocol TLSContextSource: Sendable {
    /// The context new handshakes use, or nil for plaintext.
    func currentContext() -> NIOSSLContext?
    /// Builds the server-side TLS handler for one accepted connection (lets the source add verification hooks).
    func makeHandler(context: NIOSSLContext) -> NIOSSLServerHandler
    /// Adds the TLS handler, and whatever observes its handshake, to one accepted connection.
    func configureConnection(channel: any Channel, context: NIOSSLContext) throws
}

extension TLSContextSource {
    public func configureConnection(channel: any Channel, context: NIOSSLContext) throws {
        try channel.pipeline.syncOperations.addHandler(makeHandler(context: context))
    }
}

