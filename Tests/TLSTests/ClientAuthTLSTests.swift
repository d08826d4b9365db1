import Foundation
import PKI
import Server
import TestSupport
import Testing
import X509

/// Client certificates in managed-PKI mode: required by default, and the verified common name is the etcd user.
@Suite("client certificates and auth", .serialized)
struct ClientAuthTLSTests {
    static let etcdctlPath = EndToEndTLSTests.etcdctlPath

    static func ctl(_ member: QuorumMember, _ client: EndToEndTLSTests.Client?, _ command: [String]) throws
        -> CommandResult
    {
        try EndToEndTLSTests.ctl(member, client, command, dialTimeout: "1s")
    }

    @Test("managed PKI requires client certificates: none and a foreign CA's are refused, the admin's accepted")
    func managedPKIRequiresClientCertificates() async throws {
        let dir = TemporaryDirectory("mtls-default")
        let data = dir.fileURL("data")
        let member = try QuorumMember(dataDir: data, extra: [])
        defer { member.stop() }
        let layout = PKILayout(dataDirectory: data)
        let admin = EndToEndTLSTests.Client(
            cacert: layout.trustBundle(.clients), cert: layout.adminCertificate, key: layout.adminKey, serial: "")
        let put = try Self.ctl(member, admin, ["put", "k", "v"])
        #expect(put.status == 0, "\(put.output)")

        var arguments = etcdctl(member, cacert: admin.cacert, ["get", "k"])
        arguments[3] = "1s"
        arguments[5] = "2s"
        let bare = try runCommand(Self.etcdctlPath, arguments, timeout: 15)
        #expect(bare.status != 0, "a client without a certificate is refused")

        let foreignCA = try TestPKI.ca()
        try TestPKI.writeCA([foreignCA], to: dir.fileURL("foreign-ca.crt"))
        let (cert, key) = try TestPKI.write(
            try TestPKI.leaf(foreignCA, cn: "root", profile: .client), dir.url, "foreign")
        let foreign = EndToEndTLSTests.Client(cacert: admin.cacert, cert: cert, key: key, serial: "")
        let refused = try Self.ctl(member, foreign, ["get", "k"])
        #expect(refused.status != 0, "a certificate from another CA is refused")
        #expect(!member.log.contains("any client that reaches the port"))
    }

    @Test("--client-cert-auth=false opts out of client certificates in managed-PKI mode, with a warning")
    func managedPKIOptOut() async throws {
        let dir = TemporaryDirectory("mtls-optout")
        let data = dir.fileURL("data")
        let member = try QuorumMember(dataDir: data, extra: ["--client-cert-auth=false"])
        defer { member.stop() }
        let layout = PKILayout(dataDirectory: data)
        let result = try runCommand(
            Self.etcdctlPath, etcdctl(member, cacert: layout.trustBundle(.clients), ["put", "k", "v"]))
        #expect(result.status == 0, "\(result.output)")
        #expect(member.log.contains("any client that reaches the port"))
    }

    @Test("with auth on, the certificate's CN is the user; a token wins over it")
    func commonNameIsTheUser() async throws {
        let dir = TemporaryDirectory("mtls-cn")
        let data = dir.fileURL("data")
        let member = try QuorumMember(dataDir: data, extra: ["--bcrypt-cost", "4"])
        defer { member.stop() }
        let layout = PKILayout(dataDirectory: data)
        let admin = EndToEndTLSTests.Client(
            cacert: layout.trustBundle(.clients), cert: layout.adminCertificate, key: layout.adminKey, serial: "")
        let alice = try EndToEndTLSTests.Client.issue("alice", data: data, out: dir.fileURL("alice"))
        for command in [
            ["user", "add", "root:rootpw"], ["user", "grant-role", "root", "root"], ["role", "add", "r"],
            ["role", "grant-permission", "r", "read", "shared/", "--prefix"], ["user", "add", "alice:alicepw"],
            ["user", "grant-role", "alice", "r"], ["put", "shared/x", "1"], ["auth", "enable"],
        ] {
            let result = try Self.ctl(member, admin, command)
            #expect(result.status == 0, "\(command): \(result.output)")
        }
        // The admin certificate (CN root) acts as root without a password.
        let asRoot = try Self.ctl(member, admin, ["user", "list"])
        #expect(asRoot.status == 0 && asRoot.stdout == "alice\nroot\n", "\(asRoot.output)")
        // Alice's certificate: read on shared/, nothing else.
        let read = try Self.ctl(member, alice, ["get", "shared/x", "--print-value-only"])
        #expect(read.status == 0 && read.stdout == "1\n", "\(read.output)")
        let write = try Self.ctl(member, alice, ["put", "shared/x", "2"])
        #expect(write.status != 0 && write.output.contains("permission denied"), "\(write.output)")
        let admin2 = try Self.ctl(member, alice, ["user", "list"])
        #expect(admin2.status != 0 && admin2.output.contains("permission denied"), "\(admin2.output)")
        // A token wins over the certificate: root's password over alice's certificate acts as root...
        let token = try Self.ctl(member, alice, ["put", "shared/x", "3", "--user=root:rootpw"])
        #expect(token.status == 0, "\(token.output)")
        // ...and a wrong password is refused even though the certificate alone would have been enough to read.
        let wrong = try Self.ctl(member, alice, ["get", "shared/x", "--user=alice:wrong"])
        #expect(wrong.status != 0 && wrong.output.contains("authentication failed"), "\(wrong.output)")
    }
}
