import Foundation
import PKI
import TestSupport
import Testing

/// `quorum grpc-proxy start` follows its certificate files: the seed's outage one level up, a proxy still presenting
/// (to its clients and to the members) certificates that expired while it ran. Both of its certificates live 20 s;
/// they are renewed on disk while it runs; once the old ones have expired, the member is restarted so that the
/// proxy must dial it again, and a client that verifies the proxy's certificate connects anew. Both handshakes
/// succeed only if the proxy took the renewed files.
@Suite(.ownThread) struct GRPCProxyRenewalTests {
    static let etcdctl = "/usr/bin/etcdctl"

    @Test func renewedFilesAreUsedOnBothSidesOnceTheOldCertificatesExpired() async throws {
        let dir = TemporaryDirectory("proxy-renewal")
        let ca = try TestPKI.ca()
        let caFile = dir.fileURL("ca.pem")
        try TestPKI.writeCA([ca], to: caFile)
        let memberTLS = try TestPKI.write(try TestPKI.leaf(ca, cn: "m1"), dir.url, "member")
        let client = try TestPKI.write(try TestPKI.leaf(ca, cn: "root", profile: .client), dir.url, "client")
        // etcd's proxy dials the members with a certificate whose Common Name is empty.
        let shortLived = try TestPKI.leaf(ca, cn: "", profile: .client, validity: 20)
        let proxyClient = try TestPKI.write(shortLived, dir.url, "proxy-client")
        let proxyServer = try TestPKI.write(try TestPKI.leaf(ca, cn: "proxy", validity: 20), dir.url, "proxy-server")
        let expiry = shortLived.certificate.notValidAfter

        let (clientPort, peerPort, proxyPort) = (freePort(), freePort(), freePort())
        let memberArguments = [
            "--name", "m1", "--data-dir", dir.fileURL("m1").path,
            "--listen-client-urls", "https://127.0.0.1:\(clientPort)",
            "--advertise-client-urls", "https://127.0.0.1:\(clientPort)",
            "--listen-peer-urls", "http://127.0.0.1:\(peerPort)",
            "--initial-advertise-peer-urls", "http://127.0.0.1:\(peerPort)",
            "--initial-cluster", "m1=http://127.0.0.1:\(peerPort)",
            "--cert-file", memberTLS.cert.path, "--key-file", memberTLS.key.path,
            "--trusted-ca-file", caFile.path, "--client-cert-auth",
        ]
        func startMember(_ attempt: Int) async throws -> ChildProcess {
            let member = try ChildProcess(
                builtProduct("quorum"), memberArguments, log: dir.fileURL("m1-\(attempt).log"))
            let ready = await eventually(timeout: .seconds(30)) {
                member.log.contains("ready to serve client requests")
            }
            try #require(ready, "the member did not become ready: \(member.log.suffix(3000))")
            return member
        }
        var member = try await startMember(1)
        defer { member.stop() }
        let proxy = try ChildProcess(
            builtProduct("quorum"),
            [
                "grpc-proxy", "start", "--endpoints=https://127.0.0.1:\(clientPort)",
                "--listen-addr=127.0.0.1:\(proxyPort)",
                "--cert", proxyClient.cert.path, "--key", proxyClient.key.path, "--cacert", caFile.path,
                "--cert-file", proxyServer.cert.path, "--key-file", proxyServer.key.path,
                "--trusted-ca-file", caFile.path,
            ], log: dir.fileURL("proxy.log"))
        defer { proxy.stop() }
        let started = await eventually(timeout: .seconds(30)) { proxy.log.contains("started gRPC proxy") }
        try #require(started, "the proxy did not start: \(proxy.log.suffix(3000))")

        func ctl(_ command: [String]) throws -> CommandResult {
            try runCommand(
                Self.etcdctl,
                [
                    "--endpoints", "127.0.0.1:\(proxyPort)", "--dial-timeout", "3s", "--command-timeout", "5s",
                    "--cacert", caFile.path, "--cert", client.cert.path, "--key", client.key.path,
                ] + command, timeout: 15)
        }
        let before = try ctl(["put", "k", "before"])
        try #require(before.status == 0, "through the proxy before the renewal: \(before.output)")

        // Renewed on disk, as cert-manager or `quorumctl certs renew` would: new keys, an hour each.
        try TestPKI.write(try TestPKI.leaf(ca, cn: "", profile: .client), dir.url, "proxy-client")
        try TestPKI.write(try TestPKI.leaf(ca, cn: "proxy"), dir.url, "proxy-server")
        let followed = await eventually(timeout: .seconds(15)) {
            proxy.log.contains("TLS files for the members changed")
                && proxy.log.contains("reloaded the proxy's serving certificate")
        }
        #expect(followed, "the proxy did not take the renewed files: \(proxy.log.suffix(3000))")

        // The old certificates expire; the member restarts, so the proxy must dial it again.
        let expired = await eventually(timeout: .seconds(40)) { Date() > expiry + 1 }
        #expect(expired)
        member.stop()
        member = try await startMember(2)
        var last = CommandResult(status: -1, stdout: "", stderr: "")
        let after = try await eventually(timeout: .seconds(30), interval: .milliseconds(500)) {
            last = try ctl(["put", "k", "after"])
            return last.status == 0
        }
        #expect(
            after, "through the proxy after the old certificates expired: \(last.output)\n\(proxy.log.suffix(3000))")
        let read = try ctl(["get", "k", "--print-value-only"])
        #expect(read.stdout == "after\n", "\(read.output)")
        #expect(!member.log.contains("expired"), "the member saw an expired certificate: \(member.log.suffix(3000))")
    }
}
