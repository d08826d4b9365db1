import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import PKI
import ReloadingTLS
import Synchronization
import X509

/// Connects to a TLS endpoint and reports what it presents: the chain (leaf first), the negotiated ALPN protocol,
/// and, when asked, an HTTP/1.1 GET's response with its `Date` header (for clock-skew checks).
///
/// Used by `quorumctl certs check-expiration --endpoints` and `certs doctor --endpoints` to compare what is served
/// with what is on disk, and by tests to watch the served serial change. It never trusts what it sees: the chain is
/// recorded before verification and verification always "succeeds", because the point is to report, not to connect.
public enum TLSEndpointProbe {
    public struct Observation: Sendable {
        public var chain: [Certificate]
        public var negotiatedProtocol: String?
        /// The server's clock per its HTTP `Date` header, when requested and sent.
        public var serverDate: Date?
        /// The raw HTTP response (status line, headers, body), when a path was requested.
        public var httpResponse: String?

        /// The response body, after the blank line.
        public var httpBody: String? {
            guard let response = httpResponse, let blank = response.range(of: "\r\n\r\n") else { return nil }
            return String(response[blank.upperBound...])
        }
        /// Our clock when the response arrived.
        public var observedAt: Date
        /// Set when the handshake failed after the chain was received (e.g. the server wanted a client certificate).
        public var handshakeError: String?

        public var chainPEM: String { (try? PEMCodec.pem(for: chain)) ?? "" }
    }

    public struct ProbeError: Error, CustomStringConvertible {
        public var description: String
    }

    /// - Parameters:
    ///   - clientIdentity: a certificate and key to present (servers with client-cert auth).
    ///   - httpPath: also send `GET <path>` over HTTP/1.1 (ALPN http/1.1) and keep the response and `Date` header.
    public static func observe(
        host: String,
        port: Int,
        clientIdentity: TLSFileSet? = nil,
        minimumVersion: TLSVersion? = nil,
        maximumVersion: TLSVersion? = nil,
        httpPath: String? = nil,
        timeout: TimeAmount = .seconds(5)
    ) async throws -> Observation {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .noHostnameVerification
        configuration.applicationProtocols = httpPath != nil ? ["http/1.1"] : ["h2", "http/1.1"]
        if let minimumVersion { configuration.minimumTLSVersion = minimumVersion }
        configuration.maximumTLSVersion = maximumVersion
        if let clientIdentity {
            let material = try LoadedTLSMaterial.load(clientIdentity)
            configuration.certificateChain = try material.chain.map {
                .certificate(try NIOSSLCertificate(bytes: $0.derBytes, format: .der))
            }
            configuration.privateKey = .privateKey(
                try NIOSSLPrivateKey(bytes: Array(material.privateKeyPEM.utf8), format: .pem))
        }
        let context = try NIOSSLContext(configuration: configuration)
        let group = MultiThreadedEventLoopGroup.singleton
        let eventLoop = group.next()
        let done = eventLoop.makePromise(of: Observation.self)
        let captured = CapturedChain()
        let sni = IPAddress(host) == nil ? host : nil
        let channel = try await ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let tls = try NIOSSLClientHandler(
                        context: context, serverHostname: sni,
                        customVerificationCallback: { presented, promise in
                            captured.chain.withLock { $0 = presented }
                            promise.succeed(.certificateVerified)
                        })
                    try channel.pipeline.syncOperations.addHandler(tls)
                    try channel.pipeline.syncOperations.addHandler(
                        ProbeHandler(done: done, httpPath: httpPath, host: host, captured: captured))
                }
            }
            .connect(host: host, port: port).get()
        eventLoop.scheduleTask(in: timeout) {
            done.fail(
                ProbeError(description: "\(host):\(port): no answer within \(timeout.nanoseconds / 1_000_000) ms"))
        }
        defer { channel.close(promise: nil) }
        return try await done.futureResult.get()
    }

    /// Splits `https://host:port` (or `host:port`) for `observe`.
    public static func hostAndPort(_ endpoint: String) throws -> (host: String, port: Int) {
        let text = endpoint.contains("://") ? endpoint : "https://\(endpoint)"
        let url = try ListenURL(text)
        return (url.host, url.port)
    }

    /// What the server presented, recorded by the verification callback (a class: the callback escapes).
    private final class CapturedChain: Sendable {
        let chain = Mutex<[NIOSSLCertificate]>([])
    }

    private final class ProbeHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        let done: EventLoopPromise<Observation>
        let httpPath: String?
        let host: String
        let captured: CapturedChain
        var observation: Observation?
        var response = ""

        init(done: EventLoopPromise<Observation>, httpPath: String?, host: String, captured: CapturedChain) {
            self.done = done
            self.httpPath = httpPath
            self.host = host
            self.captured = captured
        }

        func chain() -> [Certificate] {
            captured.chain.withLock { $0 }.compactMap { try? Certificate(derEncoded: $0.toDERBytes()) }
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let event = event as? TLSUserEvent, case .handshakeCompleted(let alpn) = event {
                let observation = Observation(chain: chain(), negotiatedProtocol: alpn, observedAt: Date())
                if let httpPath {
                    self.observation = observation
                    let request = "GET \(httpPath) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n\r\n"
                    context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: request)), promise: nil)
                } else {
                    done.succeed(observation)
                }
            }
            context.fireUserInboundEventTriggered(event)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            response += buffer.readString(length: buffer.readableBytes) ?? ""
        }

        func finishHTTP() {
            guard var observation else { return }
            self.observation = nil
            observation.observedAt = Date()
            observation.httpResponse = response
            for line in response.split(separator: "\r\n") where line.lowercased().hasPrefix("date:") {
                let formatter = DateFormatter()
                formatter.locale = Locale(identifier: "en_US_POSIX")
                formatter.timeZone = TimeZone(identifier: "GMT")
                formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
                observation.serverDate = formatter.date(from: line.dropFirst(5).trimmingCharacters(in: .whitespaces))
            }
            done.succeed(observation)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            let chain = chain()
            if observation != nil {
                // After our side finished the handshake: with TLS 1.3 this is where a server that refuses our
                // certificate answers (an alert on the first read).
                observation?.handshakeError = "\(error)"
                finishHTTP()
            } else if !chain.isEmpty {
                done.succeed(
                    Observation(chain: chain, negotiatedProtocol: nil, observedAt: Date(), handshakeError: "\(error)"))
            } else {
                done.fail(ProbeError(description: "TLS handshake failed: \(error)"))
            }
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            if observation != nil { finishHTTP() }
            let chain = chain()
            if chain.isEmpty {
                done.fail(ProbeError(description: "connection closed before the TLS handshake completed"))
            } else {
                done.succeed(Observation(chain: chain, negotiatedProtocol: nil, observedAt: Date()))
            }
            context.fireChannelInactive()
        }
    }
}
