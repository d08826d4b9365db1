import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Synchronization

/// The members behind the proxy: one grpc-swift client per `--endpoints` entry, and which one calls go to.
///
/// Calls go to one member until it cannot be reached; then to the next (a member that is down or unreachable
/// fails fast, as the clients are set not to wait for a connection). Only failures to reach a member move on:
/// etcd's own errors (even "etcdserver: no leader") are the member's answer and are returned to the client, as
/// clientv3 returns them to etcd's proxy.
package final class Upstream: Sendable {
    package typealias Client = GRPCClient<HTTP2ClientTransport.Posix>

    package struct Member: Sendable {
        package let address: String
        package let client: Client
    }

    package let members: [Member]
    private let preferred = Atomic<Int>(0)
    let logger: Logger

    /// `endpoints`: `host:port`, or a URL: as in clientv3, an `http://` endpoint is dialled in plaintext whatever
    /// the TLS flags, an `https://` one with TLS (`security`, or TLS with the system's roots when no TLS flag was
    /// given), and a bare `host:port` with `security`.
    package init(
        endpoints: [String], security: HTTP2ClientTransport.Posix.TransportSecurity?, maxSendBytes: Int,
        maxReceiveBytes: Int, logger: Logger
    ) throws {
        self.logger = logger
        let tlsIsDefault = security.map { _ in false } ?? true
        let security = security ?? .plaintext
        var members: [Member] = []
        for endpoint in endpoints {
            var memberSecurity = security
            if endpoint.hasPrefix("http://") || endpoint.hasPrefix("unix://") {
                memberSecurity = .plaintext
            } else if endpoint.hasPrefix("https://") || endpoint.hasPrefix("unixs://"), tlsIsDefault {
                memberSecurity = .tls(.defaults())
            }
            var address = endpoint
            for scheme in ["http://", "https://", "unix://", "unixs://"] where address.hasPrefix(scheme) {
                address.removeFirst(scheme.count)
            }
            while address.hasSuffix("/") { address.removeLast() }
            guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...])
            else {
                throw GRPCProxyError("invalid endpoint \"\(endpoint)\": missing port")
            }
            var host = String(address[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            let target: any ResolvableTarget
            if host.contains(":") {
                target = .ipv6(address: host, port: port)
            } else if host.split(separator: ".").count == 4, host.split(separator: ".").allSatisfy({ UInt8($0) != nil })
            {
                target = .ipv4(address: host, port: port)
            } else {
                target = .dns(host: host, port: port)
            }
            var config = HTTP2ClientTransport.Posix.Config.defaults
            config.backoff = .init(initial: .milliseconds(100), max: .seconds(2), multiplier: 1.6, jitter: 0.2)
            config.connection.maxIdleTime = nil
            config.http2.maxFrameSize = 1 << 20
            let client = GRPCClient(
                transport: try HTTP2ClientTransport.Posix(
                    target: target, transportSecurity: memberSecurity, config: config,
                    serviceConfig: ServiceConfig()))
            members.append(Member(address: address, client: client))
        }
        guard !members.isEmpty else { throw GRPCProxyError("no endpoints given") }
        self.members = members
        self.maxSendBytes = maxSendBytes
        self.maxReceiveBytes = maxReceiveBytes
    }

    let maxSendBytes: Int
    let maxReceiveBytes: Int

    /// Runs the clients' connections until cancelled.
    package func run() async {
        await withDiscardingTaskGroup { group in
            for member in members {
                group.addTask { try? await member.client.runConnections() }
            }
            group.addTask { [self] in
                // Cancellation of `run` stops the clients (and their calls).
                await withTaskCancellationHandler {
                    while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
                } onCancel: {
                    for member in members { member.client.beginGracefulShutdown() }
                }
            }
        }
    }

    /// Options for a call to a member: fail at once when it cannot be reached (so the next is tried), and take
    /// requests up to `--max-send-bytes` and answers up to `--max-recv-bytes`.
    package var callOptions: CallOptions {
        var options = CallOptions.defaults
        options.waitForReady = false
        options.maxRequestMessageBytes = maxSendBytes
        options.maxResponseMessageBytes = maxReceiveBytes
        return options
    }

    /// The member calls go to now.
    package var current: Member { members[preferred.load(ordering: .relaxed) % members.count] }

    /// Moves calls off `member` (it could not be reached), unless they already moved.
    package func failed(_ member: Member) {
        guard let index = members.firstIndex(where: { $0.address == member.address }) else { return }
        if preferred.compareExchange(expected: index, desired: (index + 1) % members.count, ordering: .relaxed)
            .exchanged
        {
            logger.warning(
                "member unreachable; switching", metadata: ["endpoint": "\(member.address)"])
        }
    }

    /// Whether `error` says the member could not be reached (rather than being its answer).
    package static func isUnreachable(_ error: any Error) -> Bool {
        guard let error = error as? RPCError else { return false }
        return error.code == .unavailable && !error.message.hasPrefix("etcdserver:")
    }

    /// Runs a call on the current member, and on the next ones while members cannot be reached. The member's error
    /// is returned as its code and message only (see `answer`).
    package func call<T: Sendable>(_ body: (Client) async throws -> T) async throws -> T {
        var lastError: (any Error)?
        for _ in 0..<members.count {
            let member = current
            do {
                return try await body(member.client)
            } catch  where Self.isUnreachable(error) {
                lastError = error
                failed(member)
            } catch {
                throw Self.answer(error)
            }
        }
        throw Self.answer(lastError ?? RPCError(code: .unavailable, message: "no endpoint available"))
    }

    /// A member's error as the proxy passes it on: its code and message. The trailers it came with (`grpc-status`,
    /// `content-type`, ...) are the member's response's; sent again by the proxy they break its own response.
    package static func answer(_ error: any Error) -> any Error {
        guard let error = error as? RPCError else { return error }
        return RPCError(code: error.code, message: error.message)
    }
}
