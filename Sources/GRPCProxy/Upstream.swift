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

    /// One `--endpoints` entry. Its client is replaced when the proxy's TLS files change (`replaceClients`), so a
    /// call takes the client current when it starts.
    package final class Member: Sendable {
        package let address: String
        /// Where it is dialled (a target per new client: grpc-swift's targets are not Sendable).
        let target: @Sendable () -> any ResolvableTarget
        /// nil: dialled with the proxy's TLS settings; otherwise fixed by the endpoint's scheme.
        let fixedSecurity: HTTP2ClientTransport.Posix.TransportSecurity?
        private let current: Mutex<Client>

        init(
            address: String, target: @escaping @Sendable () -> any ResolvableTarget,
            fixedSecurity: HTTP2ClientTransport.Posix.TransportSecurity?, client: Client
        ) {
            self.address = address
            self.target = target
            self.fixedSecurity = fixedSecurity
            current = Mutex(client)
        }

        package var client: Client { current.withLock { $0 } }

        func swap(_ client: Client) -> Client {
            current.withLock { old in
                defer { old = client }
                return old
            }
        }
    }

    package let members: [Member]
    private let preferred = Atomic<Int>(0)
    let logger: Logger
    /// Clients made after `run` started: it runs their connections too.
    private let added: (stream: AsyncStream<Client>, continuation: AsyncStream<Client>.Continuation)
    /// How long a replaced client keeps serving the calls it has (watches above all) before it is stopped and they
    /// resume on the new one.
    let retireAfter: Duration

    /// `endpoints`: `host:port`, or a URL: as in clientv3, an `http://` endpoint is dialled in plaintext whatever
    /// the TLS flags, an `https://` one with TLS (`security`, or TLS with the system's roots when no TLS flag was
    /// given), and a bare `host:port` with `security`.
    package init(
        endpoints: [String], security: HTTP2ClientTransport.Posix.TransportSecurity?, maxSendBytes: Int,
        maxReceiveBytes: Int, logger: Logger, retireAfter: Duration = .seconds(30)
    ) throws {
        self.logger = logger
        self.retireAfter = retireAfter
        added = AsyncStream.makeStream(of: Client.self, bufferingPolicy: .unbounded)
        let tlsIsDefault = security.map { _ in false } ?? true
        var members: [Member] = []
        for endpoint in endpoints {
            var fixed: HTTP2ClientTransport.Posix.TransportSecurity?
            if endpoint.hasPrefix("http://") || endpoint.hasPrefix("unix://") {
                fixed = .plaintext
            } else if endpoint.hasPrefix("https://") || endpoint.hasPrefix("unixs://"), tlsIsDefault {
                fixed = .tls(.defaults())
            } else if security == nil {
                fixed = .plaintext
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
            let isIPv4 =
                host.split(separator: ".").count == 4 && host.split(separator: ".").allSatisfy { UInt8($0) != nil }
            let target: @Sendable () -> any ResolvableTarget = { [host] in
                if host.contains(":") { return .ipv6(address: host, port: port) }
                if isIPv4 { return .ipv4(address: host, port: port) }
                return .dns(host: host, port: port)
            }
            let client = try Self.makeClient(target: target, security: fixed ?? security ?? .plaintext)
            members.append(Member(address: address, target: target, fixedSecurity: fixed, client: client))
        }
        guard !members.isEmpty else { throw GRPCProxyError("no endpoints given") }
        self.members = members
        self.maxSendBytes = maxSendBytes
        self.maxReceiveBytes = maxReceiveBytes
    }

    static func makeClient(
        target: @Sendable () -> any ResolvableTarget, security: HTTP2ClientTransport.Posix.TransportSecurity
    )
        throws -> Client
    {
        var config = HTTP2ClientTransport.Posix.Config.defaults
        config.backoff = .init(initial: .milliseconds(100), max: .seconds(2), multiplier: 1.6, jitter: 0.2)
        config.connection.maxIdleTime = nil
        config.http2.maxFrameSize = 1 << 20
        return GRPCClient(
            transport: try HTTP2ClientTransport.Posix(
                target: target(), transportSecurity: security, config: config, serviceConfig: ServiceConfig()))
    }

    let maxSendBytes: Int
    let maxReceiveBytes: Int

    /// New clients for every member dialled with the proxy's TLS settings, made with `security` (the files as they
    /// are now: grpc-swift reads certificate files once per client). New calls take the new clients at once; the
    /// old ones finish their calls for `retireAfter` and are then stopped, so no connection to a member outlives
    /// the certificate it was opened with by more than that.
    package func replaceClients(security: HTTP2ClientTransport.Posix.TransportSecurity) throws {
        for member in members where member.fixedSecurity == nil {
            let client = try Self.makeClient(target: member.target, security: security)
            added.continuation.yield(client)
            let old = member.swap(client)
            old.beginGracefulShutdown()
            retiring.withLock { $0.append((old, ContinuousClock.now + retireAfter)) }
        }
    }

    /// The task running each client's connections.
    private let running = Mutex<[ObjectIdentifier: Task<Void, Never>]>([:])

    private func start(_ client: Client) {
        let task = Task { _ = try? await client.runConnections() }
        running.withLock { $0[ObjectIdentifier(client)] = task }
    }

    /// Replaced clients and when they are stopped.
    private let retiring = Mutex<[(client: Client, at: ContinuousClock.Instant)]>([])

    /// Runs the clients' connections until cancelled: the first ones, those `replaceClients` makes, and stops
    /// replaced ones when their time is up.
    package func run() async {
        await withDiscardingTaskGroup { group in
            for member in members { start(member.client) }
            group.addTask { [self] in
                for await client in added.stream { start(client) }
            }
            group.addTask { [self] in
                // Cancellation of `run` stops the clients (and their calls).
                await withTaskCancellationHandler {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .seconds(1))
                        let now = ContinuousClock.now
                        let due = retiring.withLock { list in
                            defer { list.removeAll { $0.at <= now } }
                            return list.filter { $0.at <= now }.map(\.client)
                        }
                        for client in due {
                            running.withLock { $0.removeValue(forKey: ObjectIdentifier(client)) }?.cancel()
                        }
                    }
                    let all = running.withLock { $0.values }
                    for task in all { _ = await task.value }
                } onCancel: {
                    added.continuation.finish()
                    let all = running.withLock { $0.values }
                    for task in all { task.cancel() }
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
