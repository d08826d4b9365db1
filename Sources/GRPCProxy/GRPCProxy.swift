import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import PKI
import RPCTransport
import ReloadingTLS
import X509

/// `quorum grpc-proxy start`: etcd's gRPC proxy, a stateless L7 proxy in front of a cluster. Clients speak the
/// whole etcd v3 API to it; it forwards to the members over one connection each, shares watches of the same range
/// among its clients, answers repeated serializable reads from a cache, and moves to another member when one cannot
/// be reached.
package enum GRPCProxy {
    /// Runs the proxy until cancelled. `onListening` gets the bound address once clients can connect.
    package static func run(_ options: GRPCProxyOptions, logger: Logger) async throws {
        for notice in options.notices { logger.warning("\(notice)") }
        let serving = try servingTLS(options, logger: logger)
        let listen = try hostPort(options.listenAddress, flag: "listen-addr")
        let transport = RPCServerTransport(
            options: .init(
                host: listen.host, port: listen.port, maxMessageBytes: max(4 << 20, options.maxSendBytes + (512 << 10)),
                keepalive: keepalive(options), maxConcurrentStreams: options.maxConcurrentStreams))
        do {
            try transport.open()
        } catch {
            throw GRPCProxyError("listen tcp \(options.listenAddress): \(describe(error))")
        }
        logger.info("listening for gRPC proxy client requests", metadata: ["address": "\(options.listenAddress)"])

        let upstream = try Upstream(
            endpoints: options.endpoints, security: try memberTLS(options, logger: logger),
            maxSendBytes: options.maxSendBytes, maxReceiveBytes: options.maxRecvBytes, logger: logger)
        let metrics = ProxyMetrics()
        let core = ProxyCore(
            upstream: upstream, namespace: KeyNamespace(options.namespace), metrics: metrics,
            advertiseClientURL: options.advertiseClientURL, resolverPrefix: options.resolverPrefix, logger: logger)
        let watch = WatchProxy(core: core)
        let router = ProxyHTTPRouter(core: core)
        transport.route([:], http: router, tls: serving)

        var servers = [GRPCServer(transport: transport, services: [ProxyService(core: core, watch: watch)])]
        if !options.metricsAddress.isEmpty {
            let url = options.metricsAddress
            guard let parsed = URL(string: url), let host = parsed.host, let port = parsed.port,
                parsed.scheme == "http" || parsed.scheme == "https"
            else {
                throw GRPCProxyError("cannot parse \"\(url)\"")
            }
            let metricsTransport = RPCServerTransport(
                options: .init(host: host, port: port, maxMessageBytes: 64 * 1024))
            do {
                try metricsTransport.open()
            } catch {
                throw GRPCProxyError("listen tcp \(host):\(port): \(describe(error))")
            }
            metricsTransport.route([:], http: router, tls: parsed.scheme == "https" ? serving : nil)
            servers.append(GRPCServer(transport: metricsTransport, services: []))
            logger.info("gRPC proxy listening for metrics", metadata: ["address": "\(url)"])
        }
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { await upstream.run() }
            group.addTask { await followTLSFiles(options, serving: serving, upstream: upstream, logger: logger) }
            for server in servers {
                group.addTask { try await server.serve() }
            }
            if !options.resolverPrefix.isEmpty {
                group.addTask {
                    await Registration.run(
                        upstream: upstream, prefix: options.namespace + options.resolverPrefix,
                        address: options.advertiseClientURL,
                        ttl: options.resolverTTL, logger: logger)
                }
            }
            logger.info("started gRPC proxy", metadata: ["address": "\(options.listenAddress)"])
            if !options.namespace.isEmpty {
                logger.info("namespacing requests", metadata: ["namespace": "\(options.namespace)"])
            }
        }
    }

    /// Follows the proxy's certificate files, so that renewing them on disk is enough (the outage Quorum exists to
    /// prevent: a proxy presenting a certificate that expired while it ran). Every second: the serving side takes
    /// new files for new handshakes (`ReloadingTLSContext`), and when `--cert`, `--key` or `--cacert` changed the
    /// clients to the members are replaced (grpc-swift reads them once per client); a file set that does not load
    /// is logged and the previous one kept until the files change again.
    static func followTLSFiles(
        _ options: GRPCProxyOptions, serving: ReloadingTLSContext?, upstream: Upstream, logger: Logger
    ) async {
        let memberFiles = [options.cert, options.key, options.cacert].filter { !$0.isEmpty }.map {
            URL(fileURLWithPath: $0)
        }
        guard serving != nil || !memberFiles.isEmpty else { return }
        var stamp = FileStamp(memberFiles)
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            if let serving, serving.reloadIfChanged() {
                logger.notice("reloaded the proxy's serving certificate", metadata: ["side": "client"])
            }
            guard !memberFiles.isEmpty else { continue }
            let now = FileStamp(memberFiles)
            guard now != stamp else { continue }
            stamp = now
            do {
                guard let security = try memberTLS(options, logger: logger) else { continue }
                try upstream.replaceClients(security: security)
                logger.notice(
                    "TLS files for the members changed; new calls use them, older connections close in \(upstream.retireAfter)",
                    metadata: ["cert": "\(options.cert)", "cacert": "\(options.cacert)"])
            } catch {
                logger.error("cannot load the TLS files for the members; still using the previous ones: \(error)")
            }
        }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? IOError, error.errnoCode == EADDRINUSE { return "bind: address already in use" }
        return "\(error)"
    }

    static func hostPort(_ address: String, flag: String) throws -> (host: String, port: Int) {
        var text = address
        for scheme in ["http://", "https://"] where text.hasPrefix(scheme) { text.removeFirst(scheme.count) }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
            throw GRPCProxyError("listen tcp \(address): address \(address): missing port in address")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }

    static func keepalive(_ options: GRPCProxyOptions) -> KeepaliveSettings {
        var settings = KeepaliveSettings()
        settings.minTime = options.keepaliveMinTime
        settings.interval = options.keepaliveInterval
        settings.timeout = options.keepaliveTimeout
        return settings
    }

    /// TLS to the members (`--cert`, `--key`, `--cacert`, `--insecure-skip-tls-verify`). As etcd's proxy, its
    /// client certificate must have an empty Common Name (etcd's `TLSInfo.EmptyCN`): a member with client
    /// certificate auth would otherwise take the proxy for that user.
    /// Nil: no TLS flag was given.
    static func memberTLS(_ options: GRPCProxyOptions, logger: Logger) throws
        -> HTTP2ClientTransport.Posix.TransportSecurity?
    {
        let anyTLS = !options.cert.isEmpty || !options.key.isEmpty || !options.cacert.isEmpty
        guard anyTLS || options.insecureSkipTLSVerify else { return nil }
        if !options.cert.isEmpty {
            let pem: String
            do {
                pem = try String(contentsOfFile: options.cert, encoding: .utf8)
            } catch {
                throw GRPCProxyError("open \(options.cert): no such file or directory")
            }
            let certificate = try Certificate(pemEncoded: pem)
            let commonName = certificate.subject.flatMap { $0 }.first {
                $0.type == .RDNAttributeType.commonName
            }.map { "\($0.value)" }
            if let commonName, !commonName.isEmpty {
                throw GRPCProxyError("cert has non empty Common Name (\(commonName))")
            }
        }
        if options.insecureSkipTLSVerify {
            logger.warning(
                "--insecure-skip-tls-verify was given, this grpc proxy process skips authentication of etcd server TLS certificates. This option should be enabled only for testing purposes."
            )
        }
        let tls = HTTP2ClientTransport.Posix.TransportSecurity.TLS(
            certificateChain: options.cert.isEmpty ? [] : [.file(path: options.cert, format: .pem)],
            privateKey: options.key.isEmpty ? nil : .file(path: options.key, format: .pem),
            serverCertificateVerification: options.insecureSkipTLSVerify ? .noVerification : .fullVerification,
            trustRoots: options.cacert.isEmpty
                ? .systemDefault : .certificates([.file(path: options.cacert, format: .pem)]))
        logger.info("gRPC proxy client TLS", metadata: ["cert": "\(options.cert)", "cacert": "\(options.cacert)"])
        return .tls(tls)
    }

    /// TLS for the proxy's clients: `--cert-file`/`--key-file`, or with `--auto-tls` a self-signed certificate
    /// under `<data-dir>/fixtures/proxy`. With `--trusted-ca-file` clients must present a certificate signed by it
    /// (etcd requires one then too), and with `--client-crl-file` one that list does not revoke.
    static func servingTLS(_ options: GRPCProxyOptions, logger: Logger) throws -> ReloadingTLSContext? {
        var certFile = options.certFile
        var keyFile = options.keyFile
        if certFile.isEmpty && keyFile.isEmpty && options.trustedCAFile.isEmpty && options.autoTLS {
            // Several proxies may share a data directory (etcd's tests start one per member with the default): the
            // first makes the self-signed pair, under a lock, and the others take it, so nobody reads a file
            // another is writing or a certificate with someone else's key.
            let directory = URL(fileURLWithPath: options.dataDir).appendingPathComponent("fixtures/proxy")
            let cert = directory.appendingPathComponent("cert.pem")
            let key = directory.appendingPathComponent("key.pem")
            try PKILock.withLock(directory: directory) {
                let existing = try? LoadedTLSMaterial.load(TLSFileSet(certificate: cert, key: key))
                if let existing, existing.leaf.notValidAfter > Date() + 60 { return }
                let host = (try? hostPort(options.listenAddress, flag: "listen-addr").host) ?? "127.0.0.1"
                var rng = SystemRandomNumberGenerator()
                let issued = try SelfSignedCertificate.make(
                    names: SubjectNames(commonName: "etcd", hosts: [host]),
                    validityYears: max(1, options.selfSignedCertValidity), keyAlgorithm: .ecdsaP256, now: Date(),
                    using: &rng)
                try AtomicFileWriter.write(issued.privateKeyPEM, to: key, mode: AtomicFileWriter.privateKeyMode)
                try AtomicFileWriter.write(issued.certificatePEM, to: cert, mode: AtomicFileWriter.certificateMode)
            }
            certFile = cert.path
            keyFile = key.path
        }
        guard !certFile.isEmpty || !keyFile.isEmpty else {
            if !options.trustedCAFile.isEmpty {
                logger.warning("--trusted-ca-file without --cert-file and --key-file: the proxy serves plaintext")
            }
            return nil
        }
        let files = TLSFileSet(
            certificate: URL(fileURLWithPath: certFile), key: URL(fileURLWithPath: keyFile),
            trustBundle: options.trustedCAFile.isEmpty ? nil : URL(fileURLWithPath: options.trustedCAFile),
            crl: options.clientCRLFile.isEmpty ? nil : URL(fileURLWithPath: options.clientCRLFile))
        // As etcd's `TLSInfo.ServerConfig`: a trusted CA means clients must present a certificate it signed (and,
        // with a CRL, one it does not revoke). Unlike etcd's proxy, the files are followed: see `followTLSFiles`.
        let serving = try ReloadingTLSContext(
            files: files,
            options: TLSContextOptions(side: "client", clientCertAuth: !options.trustedCAFile.isEmpty),
            sink: TLSEventSink(logger: logger, countFailure: nil))
        logger.info("gRPC proxy server TLS", metadata: ["cert-file": "\(certFile)", "key-file": "\(keyFile)"])
        return serving
    }
}
