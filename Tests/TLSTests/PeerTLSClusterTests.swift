import Foundation
import PKI
import RPCTransport
import ReloadingTLS
import Server
import TestSupport
import Testing
import X509

/// Three real members whose peer links are mutually authenticated TLS from CAs created once with
/// `quorumctl pki init` and handed to every member, as docs/TLS.md describes for a cluster.
@Suite("peer TLS in a cluster", .serialized)
struct PeerTLSClusterTests {
    struct Member {
        let name: String
        let clientPort: Int
        let peerPort: Int
        let dataDir: URL
        var endpoint: String { "http://127.0.0.1:\(clientPort)" }
        var peerURL: String { "https://127.0.0.1:\(peerPort)" }

        func arguments(initialCluster: String, state: String, extra: [String]) -> [String] {
            [
                "--name", name, "--data-dir", dataDir.path,
                "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
                "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
                "--initial-cluster", initialCluster, "--initial-cluster-state", state,
                "--heartbeat-interval", "50", "--election-timeout", "500",
            ] + extra
        }
    }

    static func ctl(_ endpoints: String, _ command: [String]) throws -> CommandResult {
        try runCommand(
            "/usr/bin/etcdctl",
            ["--endpoints", endpoints, "--dial-timeout", "3s", "--command-timeout", "8s"] + command,
            timeout: 20)
    }

    @Test("members replicate over mutual peer TLS from shared CAs; a member with CAs of its own cannot join")
    func sharedCAsAuthenticatePeers() async throws {
        let scratch = TemporaryDirectory()
        let caDir = scratch.fileURL("ca")
        let initCA = try runCommand(builtProduct("quorumctl").path, ["pki", "init", "--out", caDir.path])
        #expect(initCA.status == 0, "\(initCA.output)")

        let members = (1...3).map { i in
            Member(name: "m\(i)", clientPort: freePort(), peerPort: freePort(), dataDir: scratch.fileURL("m\(i)"))
        }
        let initial = members.map { "\($0.name)=\($0.peerURL)" }.joined(separator: ",")
        let children = try members.map { m in
            try ChildProcess(
                builtProduct("quorum"),
                m.arguments(initialCluster: initial, state: "new", extra: ["--pki-ca-dir", caDir.path]),
                log: scratch.fileURL("\(m.name).log"))
        }
        defer { for child in children { child.stop() } }
        let ready = await eventually(timeout: .seconds(40)) {
            children.allSatisfy { $0.log.contains("ready to serve client requests") }
        }
        try #require(ready, "members did not become ready:\n\(children.map { String($0.log.suffix(2000)) })")

        // A write through one member is read, locally, on another: the log travelled over the TLS links.
        let endpoints = members.map(\.endpoint).joined(separator: ",")
        #expect(try Self.ctl(members[0].endpoint, ["put", "over/tls", "yes"]).status == 0)
        let replicated = await eventually(timeout: .seconds(10)) {
            (try? Self.ctl(members[2].endpoint, ["get", "over/tls", "--consistency=s", "--print-value-only"]))?
                .stdout == "yes\n"
        }
        #expect(replicated)
        let list = try Self.ctl(endpoints, ["member", "list"]).stdout
        #expect(list.split(separator: "\n").count == 3 && !list.contains("unstarted"), "\(list)")

        // Each peer listener serves its member's own peer certificate, issued by the shared peers CA.
        let peersCA = try Certificate(
            pemEncoded: String(contentsOf: caDir.appendingPathComponent("peers-ca.crt"), encoding: .utf8))
        for m in members {
            let observation = try await TLSEndpointProbe.observe(host: "127.0.0.1", port: m.peerPort)
            let leaf = try #require(observation.chain.first)
            #expect(leaf.issuer == peersCA.subject)
            #expect(leaf.subject.description.contains(m.name))
        }

        // A fourth member added to the cluster but started without the shared CAs makes CAs of its own: the
        // members refuse its certificate, it never joins, and the cluster keeps serving.
        let foreign = Member(
            name: "m4", clientPort: freePort(), peerPort: freePort(), dataDir: scratch.fileURL("m4"))
        let added = try Self.ctl(endpoints, ["member", "add", foreign.name, "--peer-urls=\(foreign.peerURL)"])
        #expect(added.status == 0, "\(added.output)")
        let outsider = try ChildProcess(
            builtProduct("quorum"),
            foreign.arguments(initialCluster: initial + ",m4=\(foreign.peerURL)", state: "existing", extra: []),
            log: scratch.fileURL("m4.log"))
        defer { outsider.stop() }
        let refused = await eventually(timeout: .seconds(20)) {
            outsider.log.contains("rejected TLS connection") && outsider.log.contains("unknown_authority")
        }
        #expect(refused, "the outsider did not log the refusal:\n\(outsider.log.suffix(3000))")
        #expect(!outsider.log.contains("ready to serve client requests"))
        #expect(try Self.ctl(endpoints, ["put", "still", "serving"]).status == 0)
        #expect(try Self.ctl(endpoints, ["member", "list"]).stdout.contains("unstarted"))
    }

    /// A botched CA rotation: the new peers CA is staged and used on one member only. Its peers refuse the
    /// certificate it now presents, which its `/health` and `quorumctl certs doctor` say, naming the certificate and
    /// why; the others' `/health` say which peer's certificate they refuse. Staging the CA on the others mends it.
    @Test("a member whose peers refuse its certificate says so in /health and doctor, and recovers once they trust it")
    func peersRefusingACertificateAreReported() async throws {
        let scratch = TemporaryDirectory()
        let caDir = scratch.fileURL("ca")
        let quorumctl = builtProduct("quorumctl").path
        #expect(try runCommand(quorumctl, ["pki", "init", "--out", caDir.path]).status == 0)
        let members = (1...3).map { i in
            Member(name: "m\(i)", clientPort: freePort(), peerPort: freePort(), dataDir: scratch.fileURL("m\(i)"))
        }
        let initial = members.map { "\($0.name)=\($0.peerURL)" }.joined(separator: ",")
        let children = try members.map { m in
            try ChildProcess(
                builtProduct("quorum"),
                m.arguments(initialCluster: initial, state: "new", extra: ["--pki-ca-dir", caDir.path]),
                log: scratch.fileURL("\(m.name).log"))
        }
        defer { for child in children { child.stop() } }
        let ready = await eventually(timeout: .seconds(40)) {
            children.allSatisfy { $0.log.contains("ready to serve client requests") }
        }
        try #require(ready, "members did not become ready")

        // m3 alone moves to a peers CA nobody else trusts.
        let other = scratch.fileURL("other-ca")
        #expect(try runCommand(quorumctl, ["pki", "init", "--out", other.path]).status == 0)
        let m3 = members[2].dataDir.path
        for extra in [["--next-ca-dir", other.path], []] {
            let step = try runCommand(
                quorumctl, ["certs", "rotate-ca", "--data-dir", m3, "--kind", "peers"] + extra, timeout: 30)
            #expect(step.status == 0, "\(step.output)")
        }
        func health(_ m: Member) -> String {
            (try? runCommand("/usr/bin/curl", ["-s", "--max-time", "3", "\(m.endpoint)/health"]))?.stdout ?? ""
        }
        let reported = await eventually(timeout: .seconds(30)) {
            health(members[2]).contains("refuses this member's peer certificate CN=m3")
        }
        #expect(reported, "m3's /health: \(health(members[2]))\n\(children[2].log.suffix(3000))")
        #expect(health(members[2]).contains("\"health\":\"true\""), "a warning, not a failure of its own")
        // Its log says it in etcd's words too, the ones operators search for (and etcd's TestEtcdPeerCNAuth).
        #expect(children[2].log.contains("(remote error: tls: bad certificate)"), "\(children[2].log.suffix(3000))")
        let refusing = await eventually(timeout: .seconds(45)) {
            health(members[0]).contains("this member refuses the certificate of peer")
        }
        #expect(refusing, "m1's /health: \(health(members[0]))")
        #expect(health(members[0]).contains("signed by an unknown authority"), "\(health(members[0]))")

        let doctor = try runCommand(
            quorumctl,
            ["certs", "doctor", "--data-dir", m3, "--peer-endpoints", "\(members[0].peerURL),\(members[1].peerURL)"],
            timeout: 30)
        #expect(doctor.status == 1, "\(doctor.output)")
        #expect(doctor.output.contains("refused-by-member"), "\(doctor.output)")
        #expect(doctor.output.contains("refuses this member's peer certificate CN=m3"), "\(doctor.output)")
        #expect(doctor.output.contains("does not trust the CA that signed it"), "\(doctor.output)")

        // The fix: the others trust the new CA too (stage it there). Links come back, the warnings go.
        for m in members.prefix(2) {
            let stage = try runCommand(
                quorumctl,
                ["certs", "rotate-ca", "--data-dir", m.dataDir.path, "--kind", "peers", "--next-ca-dir", other.path],
                timeout: 30)
            #expect(stage.status == 0, "\(stage.output)")
        }
        let mended = await eventually(timeout: .seconds(30)) {
            members.allSatisfy { !health($0).contains("refuse") }
        }
        #expect(mended, "\(members.map(health))")
        #expect(try Self.ctl(members[2].endpoint, ["put", "after/mend", "ok"]).status == 0)
        let replicated = await eventually(timeout: .seconds(15)) {
            (try? Self.ctl(members[0].endpoint, ["get", "after/mend", "--consistency=s", "--print-value-only"]))?
                .stdout == "ok\n"
        }
        #expect(replicated)
    }

    /// etcd's default peer TLS in its own test suite: every member makes a self-signed certificate, so there is no CA
    /// to verify against and etcd encrypts the links without authenticating them. Members must still form a cluster.
    @Test("--peer-auto-tls members form a cluster over encrypted, unauthenticated links, as etcd's do")
    func peerAutoTLSClusterForms() async throws {
        let scratch = TemporaryDirectory()
        let members = (1...3).map { i in
            Member(name: "m\(i)", clientPort: freePort(), peerPort: freePort(), dataDir: scratch.fileURL("m\(i)"))
        }
        let initial = members.map { "\($0.name)=\($0.peerURL)" }.joined(separator: ",")
        let children = try members.map { m in
            try ChildProcess(
                builtProduct("quorum"), m.arguments(initialCluster: initial, state: "new", extra: ["--peer-auto-tls"]),
                log: scratch.fileURL("\(m.name).log"))
        }
        defer { for child in children { child.stop() } }
        let ready = await eventually(timeout: .seconds(40)) {
            children.allSatisfy { $0.log.contains("ready to serve client requests") }
        }
        try #require(ready, "members did not become ready:\n\(children.map { String($0.log.suffix(1500)) })")
        #expect(children[0].log.contains("self-signed certificates are not verified"))
        #expect(try Self.ctl(members[0].endpoint, ["put", "auto", "tls"]).status == 0)
        let replicated = await eventually(timeout: .seconds(10)) {
            (try? Self.ctl(members[2].endpoint, ["get", "auto", "--consistency=s", "--print-value-only"]))?
                .stdout == "tls\n"
        }
        #expect(replicated)
        let observation = try await TLSEndpointProbe.observe(host: "127.0.0.1", port: members[1].peerPort)
        #expect(observation.chain.first?.issuer == observation.chain.first?.subject, "a self-signed peer certificate")
    }

    @Test("HTTP responses carry a Date header in IMF-fixdate form (doctor measures clock skew with it)")
    func httpDateFormat() throws {
        #expect(HTTPDate.format(784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(HTTPDate.format(1_795_000_000).hasSuffix(" GMT"))
    }
}
