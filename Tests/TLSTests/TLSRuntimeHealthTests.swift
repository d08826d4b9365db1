import Foundation
import PKI
import Server
import TestSupport
import Testing

/// What `/health` and `/readyz` learn from the TLS runtime: warnings for what will break unless someone acts,
/// failures for what breaks new connections now.
@Suite("TLS health")
struct TLSRuntimeHealthTests {
    static func config(_ data: URL) throws -> ServerConfig {
        var config = ServerConfig()
        config.node.name = "m1"
        config.node.dataDir = data.path
        config.node.advertiseClientURLs = ["https://127.0.0.1:2379"]
        config.listenClientURLs = [try ListenURL("https://127.0.0.1:2379")]
        return config
    }

    @Test("an external certificate inside its warning window is a warning; an expired one a failure")
    func externalCertificates() throws {
        let dir = TemporaryDirectory("health")
        let ca = try TestPKI.ca()
        var config = try Self.config(dir.fileURL("data"))
        config.tls.client.certFile = dir.fileURL("server.crt").path
        config.tls.client.keyFile = dir.fileURL("server.key").path

        // 30 s lifetime, 25 s gone: 5 s left, inside a third of its lifetime, and nothing here can renew it.
        try TestPKI.write(try TestPKI.leaf(ca, cn: "m1", validity: 30, now: Date() - 25), dir.url, "server")
        let soon = try TLSRuntime.prepare(config: config, logger: LogCapture().logger(), metrics: nil)
        #expect(soon.clientMode == .files)
        #expect(soon.healthFailures().isEmpty)
        let warnings = soon.healthWarnings()
        #expect(warnings.count == 1)
        #expect(warnings.first?.contains("cannot be renewed") == true, "\(warnings)")

        #expect(soon.healthWarnings(now: Date() - 20).isEmpty, "10 s into a 30 s lifetime nothing is due")

        try TestPKI.write(try TestPKI.leaf(ca, cn: "m1", validity: 30, now: Date() - 60), dir.url, "server")
        let expired = try TLSRuntime.prepare(config: config, logger: LogCapture().logger(), metrics: nil)
        let failures = expired.healthFailures()
        #expect(failures.count == 1)
        #expect(failures.first?.contains("expired at") == true, "\(failures)")
    }

    @Test("a managed CA within 90 days of expiry is announced with the command that fixes it")
    func caNearExpiry() throws {
        let dir = TemporaryDirectory("ca-soon")
        let data = dir.fileURL("data")
        var pki = ManagedPKIConfiguration(
            dataDirectory: data, memberName: "m1", advertiseClientURLs: ["https://127.0.0.1:2379"],
            advertisePeerURLs: ["http://127.0.0.1:2380"])
        pki.caValidity = 30 * 86_400
        _ = try ManagedPKI(configuration: pki, jitter: .none).ensure(now: Date())

        let metrics = ServerMetrics()
        let runtime = try TLSRuntime.prepare(
            config: try Self.config(data), logger: LogCapture().logger(), metrics: metrics)
        #expect(runtime.clientMode == .managed)
        #expect(runtime.healthFailures().isEmpty)
        let warnings = runtime.healthWarnings()
        #expect(
            warnings.contains { $0.contains("ca-clients") && $0.contains("quorumctl certs rotate-ca") }, "\(warnings)")
        #expect(!warnings.contains { $0.contains("client-server") }, "managed leaves renew themselves: no warning")

        let exposition = String(decoding: metrics.registry.emitToBuffer(), as: UTF8.self)
        #expect(exposition.contains("quorum_pki_certificate_expiry_timestamp_seconds{usage=\"ca-clients\""))
        #expect(exposition.contains("quorum_pki_certificate_expiry_timestamp_seconds{usage=\"client-server\""))
    }

    @Test("etcd's TLS flags resolve, and bad combinations are refused as etcd refuses them")
    func flags() throws {
        let dir = TemporaryDirectory("flags")
        try TestPKI.write(try TestPKI.leaf(try TestPKI.ca(), cn: "m1"), dir.url, "s")
        func resolve(_ arguments: [String]) throws -> ServerConfig {
            try EtcdFlags.parse(arguments: ["--data-dir", dir.fileURL("d").path] + arguments).0.resolve()
        }
        let config = try resolve([
            "--listen-client-urls", "https://127.0.0.1:2379", "--cert-file", dir.fileURL("s.crt").path,
            "--key-file", dir.fileURL("s.key").path, "--tls-min-version", "TLS1.2", "--tls-max-version", "TLS1.3",
            "--cipher-suites", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "--peer-cert-allowed-cn", "member", "--pki-leaf-validity", "90s",
        ])
        #expect(config.tls.client.certFile == dir.fileURL("s.crt").path)
        #expect(config.tls.cipherSuites.count == 2)
        #expect(config.tls.peer.allowedCN == "member")
        #expect(config.tls.leafValidity.seconds == 90)
        #expect(config.tls.clientMode(httpsURLs: true) == .files)
        #expect(config.tls.peerMode(httpsURLs: false) == .none)
        #expect(TLSSettings().clientMode(httpsURLs: true) == .managed, "https without files: the managed PKI")

        #expect(throws: ConfigError.self) { try resolve(["--cert-file", dir.fileURL("s.crt").path]) }
        #expect(throws: ConfigError.self) {
            try resolve(["--tls-min-version", "TLS1.3", "--tls-max-version", "TLS1.2"])
        }
        #expect(throws: ConfigError.self) { try resolve(["--cipher-suites", "TLS_FANCY"]) }
        #expect(throws: ConfigError.self) { try resolve(["--pki-leaf-validity", "0s"]) }
        #expect(throws: ConfigError.self) {
            try resolve(["--peer-cert-allowed-cn", "a", "--peer-cert-allowed-hostname", "b"])
        }
    }
}
