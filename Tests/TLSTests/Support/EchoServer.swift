import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import PKI
import RPCTransport
import ReloadingTLS
import Server
import X509

/// A loopback TLS echo server wired exactly as the client and peer listeners wire each accepted connection:
/// `TLSContextSource.configureConnection` with the context current at accept time.
final class EchoServer: Sendable {
    let channel: any Channel
    var port: Int { channel.localAddress!.port! }

    init(tls: any TLSContextSource) async throws {
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context = tls.currentContext() {
                        try tls.configureConnection(channel: channel, context: context)
                    }
                    try channel.pipeline.syncOperations.addHandler(Echo())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func close() async { try? await channel.close() }

    final class Echo: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            context.writeAndFlush(data, promise: nil)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}

/// A TLS client connection to an `EchoServer`.
struct EchoClient {
    let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>

    /// - Parameter handler: a ready-made TLS handler (e.g. `ReloadingTLSContext.makeClientHandler`); otherwise one is
    ///   built from `identity` and `trusting`.
    static func connect(
        port: Int, identity: IssuedCertificate? = nil, trusting ca: CertificateAuthority? = nil,
        maximumVersion: TLSVersion? = nil, plaintext: Bool = false,
        handler: (@Sendable () throws -> NIOSSLClientHandler)? = nil
    ) async throws -> EchoClient {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = ca == nil ? .none : .noHostnameVerification
        if let ca {
            configuration.trustRoots = .certificates([
                try NIOSSLCertificate(bytes: ca.certificate.derBytes, format: .der)
            ])
        }
        if let identity {
            configuration.certificateChain = [
                .certificate(try NIOSSLCertificate(bytes: identity.certificate.derBytes, format: .der))
            ]
            configuration.privateKey = .privateKey(
                try NIOSSLPrivateKey(bytes: Array(identity.privateKeyPEM.utf8), format: .pem))
        }
        configuration.maximumTLSVersion = maximumVersion
        let context = try NIOSSLContext(configuration: configuration)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if !plaintext {
                        let tls = try handler?() ?? NIOSSLClientHandler(context: context, serverHostname: nil)
                        try channel.pipeline.syncOperations.addHandler(tls)
                    }
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return EchoClient(channel: channel)
    }

    /// Sends `text` and returns what came back, or throws when the connection fails or closes first.
    static func roundTrip(_ client: EchoClient, _ text: String) async throws -> String {
        try await client.channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: text))
            var received = ""
            for try await var buffer in inbound {
                received += buffer.readString(length: buffer.readableBytes) ?? ""
                if received.count >= text.count { return received }
            }
            throw SetupError("connection closed after \(received.count) bytes")
        }
    }
}
