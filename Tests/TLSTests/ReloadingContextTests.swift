import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import PKI
import ReloadingTLS
import Server
import TestSupport
import Testing
import X509

/// The reloadable TLS context in-process, over loopback: the machinery both the client and the peer listener use.
@Suite("ReloadingTLSContext", .serialized)
struct ReloadingContextTests {
    struct Fixture {
        let dir: TemporaryDirectory
        let ca: CertificateAuthority
        let files: TLSFileSet
        let logs = LogCapture()
        let metrics = ServerMetrics()
        let identities = ClientIdentityRegistry()

        init(crl: Bool = false) throws {
            dir = TemporaryDirectory("ctx")
            ca = try TestPKI.ca()
            let server = try TestPKI.leaf(ca, cn: "m1")
            let (cert, key) = try TestPKI.write(server, dir.url, "server")
            try TestPKI.writeCA([ca], to: dir.fileURL("ca.crt"))
            files = TLSFileSet(
                certificate: cert, key: key, trustBundle: dir.fileURL("ca.crt"), crl: dir.fileURL("crl.pem"))
        }

        func context(_ options: TLSContextOptions) throws -> ReloadingTLSContext {
            try ReloadingTLSContext(
                files: files, options: options,
                sink: TLSEventSink(logger: logs.logger(), countFailure: { metrics.tlsHandshakeFailed(reason: $0) }, identities: identities))
        }

        func failures(_ reason: String) -> Int {
            let text = String(decoding: metrics.registry.emitToBuffer(), as: UTF8.self)
            for line in text.split(separator: "\n")
            where line.hasPrefix("quorum_tls_handshake_failures_total{reason=\"\(reason)\"}") {
                return Int(Double(line.split(separator: " ").last ?? "0") ?? 0)
            }
            return 0
        }
    }

    static func servedSerial(_ port: Int) async throws -> String {
        let observation = try await TLSEndpointProbe.observe(host: "127.0.0.1", port: port)
        return observation.chain.first?.serialNumber.hexString ?? "none"
    }

    @Test("a replaced certificate serves new handshakes at once; open connections keep going")
    func swapKeepsOpenConnections() async throws {
        let fixture = try Fixture()
        let context = try fixture.context(TLSContextOptions(side: "client", clientCertAuth: false))
        let server = try await EchoServer(tls: context)
        let firstSerial = context.material.leaf.serialNumber.hexString
        #expect(try await Self.servedSerial(server.port) == firstSerial)
        #expect(context.reloadIfChanged() == false, "nothing changed yet")

        let open = try await EchoClient.connect(port: server.port, trusting: fixture.ca)
        try await open.channel.executeThenClose { inbound, outbound in
            var iterator = inbound.makeAsyncIterator()
            try await outbound.write(ByteBuffer(string: "before"))
            #expect(try await iterator.next().map { String(buffer: $0) } == "before")

            let renewed = try TestPKI.leaf(fixture.ca, cn: "m1")
            try TestPKI.write(renewed, fixture.dir.url, "server")
            #expect(context.reloadIfChanged(), "the rename-into-place must be noticed")
            #expect(context.reloadCount == 1)
            #expect(try await Self.servedSerial(server.port) == renewed.certificate.serialNumber.hexString)
            #expect(renewed.certificate.serialNumber.hexString != firstSerial)

            // The connection opened before the swap still works on its original session.
            try await outbound.write(ByteBuffer(string: "after"))
            #expect(try await iterator.next().map { String(buffer: $0) } == "after")
        }
        #expect(fixture.logs.contains("reloaded client TLS material"))
        await server.close()
    }

    @Test("a half-replaced pair (new certificate, old key) keeps the previous certificate")
    func mismatchedPairIsNotInstalled() async throws {
        let fixture = try Fixture()
        let context = try fixture.context(TLSContextOptions(side: "client", clientCertAuth: false))
        let served = context.material.leaf.serialNumber
        let other = try TestPKI.leaf(fixture.ca, cn: "m1")
        try AtomicFileWriter.write(other.certificatePEM, to: fixture.files.certificate, mode: 0o644)
        #expect(context.reloadIfChanged() == false)
        #expect(context.material.leaf.serialNumber == served)
        #expect(fixture.logs.contains("does not match"))
        // Once the key follows, the pair is installed.
        try AtomicFileWriter.write(other.privateKeyPEM, to: fixture.files.key, mode: 0o600)
        #expect(context.reloadIfChanged())
        #expect(context.material.leaf.serialNumber == other.certificate.serialNumber)
    }

    @Test("client-certificate rejections are logged with their reason and counted")
    func rejectionMatrix() async throws {
        let fixture = try Fixture()
        let context = try fixture.context(
            TLSContextOptions(side: "client", clientCertAuth: true, minimumVersion: .tlsv12))
        let server = try await EchoServer(tls: context)
        let port = server.port

        func attempt(_ identity: IssuedCertificate?, maximumVersion: TLSVersion? = nil, plaintext: Bool = false)
            async -> Bool
        {
            do {
                let client = try await EchoClient.connect(
                    port: port, identity: identity, trusting: fixture.ca, maximumVersion: maximumVersion,
                    plaintext: plaintext)
                return try await EchoClient.roundTrip(client, "hello") == "hello"
            } catch {
                return false
            }
        }

        let good = try TestPKI.leaf(fixture.ca, cn: "alice", profile: .client)
        #expect(await attempt(good), "a valid client certificate is accepted")

        #expect(await attempt(nil) == false)
        #expect(await eventually { fixture.failures("no_certificate") == 1 })
        #expect(await eventually { fixture.logs.contains("presented no certificate") })

        let otherCA = try TestPKI.ca()
        let stranger = try TestPKI.leaf(otherCA, cn: "mallory", profile: .client)
        #expect(await attempt(stranger) == false)
        #expect(await eventually { fixture.failures("unknown_authority") == 1 })
        #expect(await eventually { fixture.logs.contains("signed by an unknown authority") })

        let expired = try TestPKI.leaf(
            fixture.ca, cn: "old", profile: .client, validity: 60, now: Date() - 600)
        #expect(await attempt(expired) == false)
        #expect(await eventually { fixture.failures("expired") == 1 })
        #expect(await eventually { fixture.logs.contains("expired at") })

        // Revocation: a CRL written next to the bundle is picked up by the next poll, no restart.
        let revoked = try TestPKI.leaf(fixture.ca, cn: "bob", profile: .client)
        #expect(await attempt(revoked), "accepted before it is revoked")
        let crl = try CertificateRevocationList.issue(
            revoking: [.init(serialNumber: revoked.certificate.serialNumber, revocationDate: Date())],
            by: fixture.ca, crlNumber: 1, thisUpdate: Date(), nextUpdate: nil)
        try AtomicFileWriter.write(crl.pem, to: fixture.files.crl!, mode: 0o644)
        #expect(context.reloadIfChanged())
        #expect(await attempt(revoked) == false)
        #expect(await eventually { fixture.failures("revoked") == 1 })
        #expect(
            await eventually {
                fixture.logs.contains("serial \(revoked.certificate.serialNumber.hexString) is revoked")
            })
        #expect(await attempt(good), "other certificates stay accepted")

        // A CA added to the bundle is trusted from the next handshake on (how a CA rotation stages its new CA).
        try TestPKI.writeCA([fixture.ca, otherCA], to: fixture.files.trustBundle!)
        #expect(context.reloadIfChanged())
        #expect(await attempt(stranger), "trusted once its CA is in the bundle")

        #expect(await attempt(nil, plaintext: true) == false)
        #expect(await eventually { fixture.failures("plaintext") == 1 })
        #expect(await eventually { fixture.logs.contains("plaintext to a TLS port") })
        await server.close()
    }

    @Test("the verified common name is kept per open connection (the etcd user) and forgotten on close")
    func identities() async throws {
        let fixture = try Fixture()
        let context = try fixture.context(TLSContextOptions(side: "client", clientCertAuth: true))
        let server = try await EchoServer(tls: context)
        let alice = try TestPKI.leaf(fixture.ca, cn: "alice", profile: .client)
        let client = try await EchoClient.connect(port: server.port, identity: alice, trusting: fixture.ca)
        let local = try #require(client.channel.channel.localAddress?.port)
        try await client.channel.executeThenClose { inbound, outbound in
            var iterator = inbound.makeAsyncIterator()
            try await outbound.write(ByteBuffer(string: "hi"))
            _ = try await iterator.next()
            // The form gRPC's ServerContext.remotePeer uses.
            #expect(fixture.identities.commonName(forRemote: "ipv4:127.0.0.1:\(local)") == "alice")
            #expect(fixture.identities.count == 1)
        }
        #expect(await eventually { fixture.identities.count == 0 })
        await server.close()
    }

    @Test("a TLS version below the minimum is refused with that reason")
    func minimumVersion() async throws {
        let fixture = try Fixture()
        let context = try fixture.context(
            TLSContextOptions(side: "client", clientCertAuth: false, minimumVersion: .tlsv13))
        let server = try await EchoServer(tls: context)
        let old = try? await EchoClient.roundTrip(
            try await EchoClient.connect(port: server.port, trusting: fixture.ca, maximumVersion: .tlsv12), "x")
        #expect(old == nil)
        #expect(await eventually { fixture.failures("protocol_version") == 1 })
        #expect(await eventually { fixture.logs.contains("below the minimum TLS1.3") })
        let current = try await EchoClient.roundTrip(
            try await EchoClient.connect(port: server.port, trusting: fixture.ca), "y")
        #expect(current == "y")
        await server.close()
    }

    @Test("peer side: allowed CN and hostname are enforced when accepting, not when dialling (as etcd)")
    func peerPolicies() async throws {
        let dir = TemporaryDirectory("peer")
        let ca = try TestPKI.ca(.peers)
        try TestPKI.writeCA([ca], to: dir.fileURL("ca.crt"))
        func peerFiles(_ name: String, hosts: [String]) throws -> TLSFileSet {
            let (cert, key) = try TestPKI.write(
                try TestPKI.leaf(ca, cn: name, hosts: hosts, profile: .peer), dir.url, name)
            return TLSFileSet(certificate: cert, key: key, trustBundle: dir.fileURL("ca.crt"))
        }
        let logs = LogCapture()
        let metrics = ServerMetrics()
        let sink = TLSEventSink(logger: logs.logger(), countFailure: { metrics.tlsHandshakeFailed(reason: $0) })
        let serverSide = try ReloadingTLSContext(
            files: try peerFiles("m1", hosts: ["127.0.0.1", "m1.cluster"]),
            options: TLSContextOptions(
                side: "peer", clientCertAuth: true, allowedCN: "m2", applicationProtocols: ["h2"]),
            sink: sink)
        let server = try await EchoServer(tls: serverSide)

        // m2 dials m1 with its own peer certificate: accepted, and m1's certificate is valid for 127.0.0.1. m2 itself
        // only lets CN m2 connect to it, which does not stop it from dialling m1 (etcd's rule).
        let m2 = try ReloadingTLSContext(
            files: try peerFiles("m2", hosts: ["127.0.0.1"]),
            options: TLSContextOptions(side: "peer", clientCertAuth: true, allowedCN: "m2"), sink: sink)
        let ok = try await EchoClient.roundTrip(
            try await EchoClient.connect(port: server.port) { try m2.makeClientHandler(host: "127.0.0.1") }, "raft")
        #expect(ok == "raft")

        // m3 has a valid peer certificate but not the allowed CN.
        let m3 = try ReloadingTLSContext(
            files: try peerFiles("m3", hosts: ["127.0.0.1"]),
            options: TLSContextOptions(side: "peer", clientCertAuth: true), sink: sink)
        let refused = try? await EchoClient.roundTrip(
            try await EchoClient.connect(port: server.port) { try m3.makeClientHandler(host: "127.0.0.1") }, "raft")
        #expect(refused == nil)
        // In etcd's words too ("client certificate authentication failed"), which etcd's e2e tests look for.
        #expect(
            await eventually {
                logs.contains("client certificate authentication failed (common name m3 is not the allowed CN m2)")
            })

        // Dialling m1 under a name its certificate does not carry fails on the dialling side, with the SAN reason.
        let wrongHost = try? await EchoClient.roundTrip(
            try await EchoClient.connect(port: server.port) { try m2.makeClientHandler(host: "m9.cluster") }, "raft")
        #expect(wrongHost == nil)
        #expect(await eventually { logs.contains("SAN does not contain m9.cluster") })

        // An allowed hostname that the presented peer certificate does not cover is refused when accepting.
        let hostServer = try ReloadingTLSContext(
            files: try peerFiles("m4", hosts: ["127.0.0.1"]),
            options: TLSContextOptions(
                side: "peer", clientCertAuth: true, allowedHostname: "peers.example.com", applicationProtocols: ["h2"]),
            sink: sink)
        let hostEcho = try await EchoServer(tls: hostServer)
        let byHost = try? await EchoClient.roundTrip(
            try await EchoClient.connect(port: hostEcho.port) { try m2.makeClientHandler(host: "127.0.0.1") }, "x")
        #expect(byHost == nil)
        #expect(
            await eventually {
                logs.contains(
                    "client certificate authentication failed (SAN does not contain allowed hostname peers.example.com")
            })
        await server.close()
        await hostEcho.close()

        // The gRPC Posix client configuration the peer transport dials with runs the same check.
        let m1Chain = try serverSide.material.chain.map { try NIOSSLCertificate(bytes: $0.derBytes, format: .der) }
        func dialVerdict(_ host: String) async throws -> Bool {
            let tls = m2.clientTLS(host: host)
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            let promise = loop.makePromise(of: NIOSSLVerificationResultWithMetadata.self)
            loop.execute { tls.customVerificationCallback?(m1Chain, promise) }
            if case .certificateVerified = try await promise.futureResult.get() { return true }
            return false
        }
        #expect(try await dialVerdict("m1.cluster"))
        #expect(try await dialVerdict("m7.cluster") == false)
        #expect(await eventually { logs.contains("SAN does not contain m7.cluster") })
    }
}
