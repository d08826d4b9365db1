import NIOCore
import NIOSSL

/// Supplies the TLS context for each new connection; swapping what it returns rotates certificates without
/// touching open connections.
public protocol TLSContextSource: Sendable {
    /// The context new handshakes use, or nil for plaintext.
    func currentContext() -> NIOSSLContext?
    /// Grows each time the context is replaced: a connection accepted at generation N was handshaken with material
    /// that is stale once this is larger (see `RPCServerTransport.retireConnections`).
    var generation: Int { get }
    /// Builds the server-side TLS handler for one accepted connection (lets the source add verification hooks).
    func makeHandler(context: NIOSSLContext) -> NIOSSLServerHandler
    /// Adds the TLS handler, and whatever observes its handshake, to one accepted connection.
    func configureConnection(channel: any Channel, context: NIOSSLContext) throws
}

extension TLSContextSource {
    public var generation: Int { 0 }

    public func configureConnection(channel: any Channel, context: NIOSSLContext) throws {
        try channel.pipeline.syncOperations.addHandler(makeHandler(context: context))
    }
}
