import Foundation
import PKI
import ReloadingTLS
import Server
import TestSupport
import Testing
import X509

/// The real `quorum` binary driven by the real `etcdctl` 3.4 and `openssl` (and `curl`, when installed) over
/// loopback TLS.
@Suite("TLS end to end", .serialized)
struct EndToEndTLSTests {
    static let etcdctlPath = "/usr/bin/etcdctl"

    /// A client certificate of its own for the load: the member's admin certificate is renewed every few seconds
    /// too, and reading a pair while it is being replaced is not what these tests are about.
    struct Client {
        let cacert: URL
        let cert: URL
        let key: URL
        let serial: String

        static func issue(_ user: String, data: URL, out: URL, validity: String = "1h", now: Date = Date()) throws
            -> Client
        {
            let result = try ClientCertificateIssuer.issue(
                user: user, validity: try LeafLifetime(parsing: validity), dataDirectory: data, outputDirectory: out,
                now: now)
            return Client(
                cacert: result.trustBundlePath, cert: result.certificatePath, key: result.keyPath,
                serial: result.issued.certificate.serialNumber.hexString)
        }

        func with(cacert: URL) -> Client { Client(cacert: cacert, cert: cert, key: key, serial: serial) }
        var identity: TLSFileSet { TLSFileSet(certificate: cert, key: key) }
    }

    /// Runs etcdctl; refused connections are retried by etcdctl until the dial timeout, so expected refusals pass
    /// a short one.
    static func ctl(_ member: QuorumMember, _ client: Client?, _ command: [String], dialTimeout: String = "3s") throws
        -> CommandResult
    {
        var arguments = etcdctl(member, cacert: client?.cacert, cert: client?.cert, key: client?.key, command)
        arguments[3] = dialTimeout
        if dialTimeout == "1s" { arguments[5] = "2s" }  // etcdctl 3.4 retries a refused dial until the command timeout
        return try runCommand(etcdctlPath, arguments, timeout: 15)
    }

    static func servedSerial(_ member: QuorumMember, _ client: Client?) async -> String? {
        let observation = try? await TLSEndpointProbe.observe(
            host: "127.0.0.1", port: member.clientPort, clientIdentity: client?.identity)
        return observation?.chain.first?.serialNumber.hexString
    }

    /// GET over HTTPS (HTTP/1.1) with the client's certificate; returns the body, or "" when unreachable.
    static func get(_ member: QuorumMember, _ client: Client, _ path: String) async -> String {
        let observation = try? await TLSEndpointProbe.observe(
            host: "127.0.0.1", port: member.clientPort, clientIdentity: client.identity, httpPath: path)
        return observation?.httpBody ?? ""
    }

    /// The keys an `etcdctl watch` process printed, in order (it prints PUT, key, value per event).
    static func watchedKeys(_ log: String) -> [String] {
        let lines = log.split(separator: "\n").map(String.init)
        var keys: [String] = []
        var index = 0
        while index + 1 < lines.count {
            if lines[index] == "PUT" {
                keys.append(lines[index + 1])
                index += 3
            } else {
                index += 1
            }
        }
        return keys
    }

    /// Puts `key` until `watch` reports it: an `etcdctl watch` process only sees writes made after its watch is
    /// established, which nothing outside it announces. Returns false if it never shows up (bounded).
    static func establish(_ watch: ChildProcess, key: String, put: () throws -> CommandResult) async throws -> Bool {
        for _ in 0..<20 {
            _ = try put()
            if await eventually(timeout: .milliseconds(500), { watchedKeys(watch.log).contains(key) }) { return true }
        }
        return false
    }

    /// The watched keys other than the sentinel used to establish the watch.
    static func watched(_ watch: ChildProcess, except sentinel: String) -> [String] {
        watchedKeys(watch.log).filter { $0 != sentinel }
    }

    @Test("leaves living 4 s are renewed repeatedly under continuous puts and a watch: nothing fails")
    func renewalUnderLoad() async throws {
        let dir = TemporaryDirectory("renew")
        let data = dir.fileURL("data")
        let member = try QuorumMember(
            // Renewing at half the lifetime leaves 2 s of margin, enough for a loaded 2-core CI machine.
            dataDir: data, extra: ["--client-cert-auth", "--pki-leaf-validity", "4s", "--pki-renewal-fraction", "0.5"])
        defer { member.stop() }
        let client = try Client.issue("root", data: data, out: dir.fileURL("client"))

        let watch = try ChildProcess(
            URL(fileURLWithPath: Self.etcdctlPath),
            etcdctl(
                member, cacert: client.cacert, cert: client.cert, key: client.key, ["watch", "--prefix", "/load/"]),
            log: dir.fileURL("watch.log"))
        defer { watch.stop() }
        #expect(
            try await Self.establish(watch, key: "/load/ready") {
                try Self.ctl(member, client, ["put", "/load/ready", "1"])
            }, "watch is established")

        var serials: [String] = []
        var failures: [String] = []
        var written = 0
        let deadline = Date() + 14
        while Date() < deadline && written < 400 {
            let result = try Self.ctl(member, client, ["put", "/load/\(written)", "v\(written)"])
            if result.status != 0 { failures.append("put \(written): \(result.output)") }
            written += 1
            if let serial = await Self.servedSerial(member, client), serial != serials.last { serials.append(serial) }
        }
        #expect(failures.isEmpty, "\(failures.prefix(3))")
        #expect(written >= 5, "enough puts to span several renewals (each is a new etcdctl process and handshake)")
        #expect(serials.count >= 3, "served serials over 14 s: \(serials)")
        #expect(Set(serials).count == serials.count, "each renewal serves a new serial")

        let expected = (0..<written).map { "/load/\($0)" }
        #expect(await eventually { Self.watched(watch, except: "/load/ready").count >= expected.count })
        #expect(
            Self.watched(watch, except: "/load/ready") == expected, "the watch saw every put, in order, without a gap")
        #expect(watch.isRunning, "the watch connection outlived every renewal")

        let metrics = await Self.get(member, client, "/metrics")
        let renewals = metrics.split(separator: "\n").first {
            $0.hasPrefix("quorum_pki_renewals_total{usage=\"client-server\"}")
        }
        #expect(Double(renewals?.split(separator: " ").last ?? "0") ?? 0 >= Double(serials.count - 1))
        #expect(metrics.contains("quorum_pki_certificate_expiry_timestamp_seconds{usage=\"client-server\""))
        let health = await Self.get(member, client, "/health")
        #expect(health.contains(#""health":"true""#), "\(health)\n\(member.log.suffix(6000))")
        // Go clients negotiate h2 over TLS and ask for /health with a plain GET: it must reach the HTTP router.
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") {
            let h2 = try runCommand(
                "curl",
                [
                    "-sS", "--http2", "--max-time", "5", "-w", " %{http_version}", "--cacert", client.cacert.path,
                    "--cert", client.cert.path, "--key", client.key.path, "\(member.endpoint)/health",
                ])
            #expect(h2.stdout.contains(#""health":"true""#) && h2.stdout.hasSuffix(" 2"), "\(h2.output)")
        }
        #expect(member.log.contains("reloaded client TLS material"))
    }

    @Test("a member whose leaves expired renews them before serving")
    func startupWithExpiredLeaves() async throws {
        let dir = TemporaryDirectory("expired")
        let data = dir.fileURL("data")
        // A PKI issued two hours ago with one-hour leaves: every leaf expired an hour ago.
        let pki = ManagedPKI(
            configuration: ManagedPKIConfiguration(
                dataDirectory: data, memberName: "m1", advertiseClientURLs: ["https://127.0.0.1:2379"],
                advertisePeerURLs: ["http://127.0.0.1:2380"], leafLifetime: try LeafLifetime(parsing: "1h")),
            jitter: .none)
        _ = try pki.ensure(now: Date() - 7_200)
        let layout = PKILayout(dataDirectory: data)
        let stale = try PEMCodec.certificate(at: layout.serverCertificate)
        #expect(stale.notValidAfter < Date())

        let member = try QuorumMember(dataDir: data, extra: ["--pki-leaf-validity", "1h"])
        defer { member.stop() }
        let cacert = layout.trustBundle(.clients)
        // The managed PKI requires client certificates: the member's own admin certificate serves etcdctl.
        let put = try runCommand(
            Self.etcdctlPath,
            etcdctl(member, cacert: cacert, cert: layout.adminCertificate, key: layout.adminKey, ["put", "k", "v"]))
        #expect(put.status == 0, "\(put.output)")
        let served = await Self.servedSerial(member, nil)
        #expect(served != nil && served != stale.serialNumber.hexString)
        #expect(member.log.contains("certificate expired at"), "the renewal reason is logged")
    }

    @Test("externally managed files: expired at start, replaced on disk while serving, picked up without restart")
    func externalFilesReload() async throws {
        let dir = TemporaryDirectory("files")
        let ca = try TestPKI.ca()
        try TestPKI.writeCA([ca], to: dir.fileURL("ca.crt"))
        let expired = try TestPKI.leaf(ca, cn: "m1", validity: 60, now: Date() - 600)
        let (cert, key) = try TestPKI.write(expired, dir.url, "server")
        let (clientCert, clientKey) = try TestPKI.write(
            try TestPKI.leaf(ca, cn: "root", profile: .client), dir.url, "client")
        let client = Client(cacert: dir.fileURL("ca.crt"), cert: clientCert, key: clientKey, serial: "")
        let member = try QuorumMember(
            dataDir: dir.fileURL("data"),
            extra: [
                "--cert-file", cert.path, "--key-file", key.path, "--trusted-ca-file", dir.fileURL("ca.crt").path,
                "--client-cert-auth",
            ])
        defer { member.stop() }
        #expect(member.log.contains("expired at"), "serving an expired external certificate is logged loudly")
        let refused = try Self.ctl(member, client, ["put", "k", "v"], dialTimeout: "1s")
        #expect(refused.status != 0)
        let health = await Self.get(member, client, "/health")  // the probe does not verify: the cert is expired
        #expect(health.contains(#""health":"false""#) && health.contains("expired"), "\(health)")

        // cert-manager renews: new files are renamed into place. No restart.
        let fresh = try TestPKI.leaf(ca, cn: "m1")
        try TestPKI.write(fresh, dir.url, "server")
        #expect(
            await eventually(timeout: .seconds(5)) { (try? Self.ctl(member, client, ["put", "k", "v1"]))?.status == 0 })

        let watch = try ChildProcess(
            URL(fileURLWithPath: Self.etcdctlPath),
            etcdctl(member, cacert: client.cacert, cert: client.cert, key: client.key, ["watch", "--prefix", "w/"]),
            log: dir.fileURL("watch.log"))
        defer { watch.stop() }
        #expect(
            try await Self.establish(watch, key: "w/ready") { try Self.ctl(member, client, ["put", "w/ready", "1"]) })
        #expect(try Self.ctl(member, client, ["put", "w/1", "1"]).status == 0)
        #expect(await eventually { Self.watched(watch, except: "w/ready") == ["w/1"] })
        let next = try TestPKI.leaf(ca, cn: "m1")
        try TestPKI.write(next, dir.url, "server")
        let nextSerial = next.certificate.serialNumber.hexString
        #expect(await eventually(timeout: .seconds(5)) { await Self.servedSerial(member, client) == nextSerial })
        #expect(try Self.ctl(member, client, ["put", "w/2", "2"]).status == 0)
        #expect(
            await eventually { Self.watched(watch, except: "w/ready") == ["w/1", "w/2"] },
            "the open watch kept streaming")
        #expect(watch.isRunning)

        // The CA bundle reloads too: a client of a new CA is accepted once the bundle lists it.
        let newCA = try TestPKI.ca()
        let (otherCert, otherKey) = try TestPKI.write(
            try TestPKI.leaf(newCA, cn: "svc", profile: .client), dir.url, "other")
        let other = Client(cacert: dir.fileURL("ca.crt"), cert: otherCert, key: otherKey, serial: "")
        #expect(try Self.ctl(member, other, ["put", "o", "1"], dialTimeout: "1s").status != 0)
        try TestPKI.writeCA([ca, newCA], to: dir.fileURL("ca.crt"))
        #expect(
            await eventually(timeout: .seconds(5)) { (try? Self.ctl(member, other, ["put", "o", "2"]))?.status == 0 })
    }

    @Test("rejections with etcdctl and openssl are logged with their reason")
    func negativeMatrix() async throws {
        let dir = TemporaryDirectory("neg")
        let data = dir.fileURL("data")
        let member = try QuorumMember(
            dataDir: data, extra: ["--client-cert-auth", "--tls-min-version", "TLS1.3"])
        defer { member.stop() }
        let alice = try Client.issue("alice", data: data, out: dir.fileURL("alice"))
        #expect(try Self.ctl(member, alice, ["put", "a", "1"]).status == 0)

        func refusedAndLogged(_ client: Client?, _ fragment: String, endpoint: String? = nil) async throws -> Bool {
            var arguments = etcdctl(
                member, cacert: client?.cacert, cert: client?.cert, key: client?.key, ["put", "x", "1"])
            if let endpoint { arguments[1] = endpoint }
            arguments[3] = "1s"
            arguments[5] = "2s"
            let result = try runCommand(Self.etcdctlPath, arguments, timeout: 15)
            let logged = await eventually(timeout: .seconds(5)) { member.log.contains(fragment) }
            return result.status != 0 && logged
        }

        var bare = try runCommand(
            Self.etcdctlPath, etcdctl(member, cacert: alice.cacert, ["put", "x", "1"]) + ["--command-timeout=2s"],
            timeout: 15)
        #expect(bare.status != 0)
        #expect(await eventually(timeout: .seconds(5)) { member.log.contains("presented no certificate") })

        let foreignCA = try TestPKI.ca()
        let (fc, fk) = try TestPKI.write(
            try TestPKI.leaf(foreignCA, cn: "mallory", profile: .client), dir.url, "mallory")
        let mallory = Client(cacert: alice.cacert, cert: fc, key: fk, serial: "")
        #expect(try await refusedAndLogged(mallory, "signed by an unknown authority"))

        let old = try Client.issue("old", data: data, out: dir.fileURL("old"), validity: "60s", now: Date() - 250)
        #expect(try await refusedAndLogged(old, "expired at"))

        let bob = try Client.issue("bob", data: data, out: dir.fileURL("bob"))
        #expect(try Self.ctl(member, bob, ["put", "b", "1"]).status == 0)
        let revoke = try runCommand(
            builtProduct("quorumctl").path, ["certs", "revoke", bob.serial, "--data-dir", data.path])
        #expect(revoke.status == 0, "\(revoke.output)")
        #expect(
            await eventually(timeout: .seconds(5)) {
                (try? Self.ctl(member, bob, ["put", "b", "2"], dialTimeout: "1s"))?.status != 0
            },
            "the CRL is reloaded without restart")
        #expect(await eventually(timeout: .seconds(5)) { member.log.contains("serial \(bob.serial) is revoked") })

        #expect(
            try await refusedAndLogged(
                alice, "plaintext to a TLS port", endpoint: "http://127.0.0.1:\(member.clientPort)"))

        bare = try runCommand(
            "openssl",
            ["s_client", "-connect", "127.0.0.1:\(member.clientPort)", "-tls1_2", "-CAfile", alice.cacert.path],
            timeout: 10)
        #expect(!bare.output.contains("Verify return code: 0 (ok)") || bare.output.contains("alert"))
        #expect(await eventually(timeout: .seconds(5)) { member.log.contains("below the minimum TLS1.3") })

        let tls13 = try runCommand(
            "openssl",
            [
                "s_client", "-connect", "127.0.0.1:\(member.clientPort)", "-tls1_3", "-CAfile", alice.cacert.path,
                "-cert", alice.cert.path, "-key", alice.key.path, "-alpn", "h2",
            ], timeout: 10)
        #expect(
            tls13.output.contains("Verify return code: 0 (ok)"),
            "openssl s_client verifies the member: \(tls13.output.suffix(600))")
        #expect(tls13.output.contains("ALPN protocol: h2"))

        let metrics = await Self.get(member, alice, "/metrics")
        for reason in ["no_certificate", "unknown_authority", "expired", "revoked", "plaintext", "protocol_version"] {
            #expect(metrics.contains("quorum_tls_handshake_failures_total{reason=\"\(reason)\"}"), "\(reason)")
        }
        #expect(try Self.ctl(member, alice, ["get", "a"]).stdout.contains("1"), "good clients are unaffected")
    }

    @Test("CA rotation while serving, with clients on the old and the new bundle")
    func caRotationWhileServing() async throws {
        let dir = TemporaryDirectory("rotate")
        let data = dir.fileURL("data")
        let member = try QuorumMember(dataDir: data, extra: ["--client-cert-auth"])
        defer { member.stop() }
        let layout = PKILayout(dataDirectory: data)
        let quorumctl = builtProduct("quorumctl").path
        let oldBundle = dir.fileURL("old-ca.crt")
        try FileManager.default.copyItem(at: layout.trustBundle(.clients), to: oldBundle)
        let alice = try Client.issue("alice", data: data, out: dir.fileURL("alice")).with(cacert: oldBundle)

        let watch = try ChildProcess(
            URL(fileURLWithPath: Self.etcdctlPath),
            etcdctl(member, cacert: alice.cacert, cert: alice.cert, key: alice.key, ["watch", "--prefix", "/r/"]),
            log: dir.fileURL("watch.log"))
        defer { watch.stop() }
        #expect(
            try await Self.establish(watch, key: "/r/ready") { try Self.ctl(member, alice, ["put", "/r/ready", "1"]) })
        #expect(try Self.ctl(member, alice, ["put", "/r/0", "before"]).status == 0)

        // Phase 1: stage the new CA into the bundle. Old-bundle clients are unaffected.
        let start = try runCommand(quorumctl, ["certs", "rotate-ca", "--kind", "clients", "--data-dir", data.path])
        #expect(start.status == 0, "\(start.output)")
        #expect(start.stdout.contains("stagedNewCA"))
        let newBundle = dir.fileURL("new-ca.crt")
        try FileManager.default.copyItem(at: layout.trustBundle(.clients), to: newBundle)
        #expect(try TrustBundle.load(from: newBundle).certificates.count == 2)
        #expect(await eventually { member.log.contains("\"trusted-cas\":\"2\"") })
        #expect(try Self.ctl(member, alice, ["put", "/r/1", "staged"]).status == 0)
        #expect(try Self.ctl(member, alice.with(cacert: newBundle), ["put", "/r/2", "staged"]).status == 0)

        // Phase 2: leaves re-issued from the new CA; both CAs still trusted for client certificates.
        let servedBefore = await Self.servedSerial(member, alice.with(cacert: newBundle))
        let reissue = try runCommand(quorumctl, ["certs", "rotate-ca", "--kind", "clients", "--data-dir", data.path])
        #expect(reissue.status == 0, "\(reissue.output)")
        #expect(
            await eventually(timeout: .seconds(5)) {
                await Self.servedSerial(member, alice.with(cacert: newBundle)) != servedBefore
            })
        #expect(try Self.ctl(member, alice.with(cacert: newBundle), ["put", "/r/3", "reissued"]).status == 0)
        let carol = try Client.issue("carol", data: data, out: dir.fileURL("carol")).with(cacert: newBundle)
        #expect(try Self.ctl(member, carol, ["put", "/r/4", "new-ca-client"]).status == 0)
        let stale = try Self.ctl(member, alice, ["put", "/r/x", "old-bundle"], dialTimeout: "1s")
        #expect(stale.status != 0, "a client that never received the new bundle cannot verify the new server cert")

        // Phase 3: retire the old CA. Old-CA client certificates are refused from now on.
        let retire = try runCommand(quorumctl, ["certs", "rotate-ca", "--kind", "clients", "--data-dir", data.path])
        #expect(retire.status == 0, "\(retire.output)")
        #expect(try TrustBundle.load(from: layout.trustBundle(.clients)).certificates.count == 1)
        #expect(
            await eventually(timeout: .seconds(5)) {
                (try? Self.ctl(member, alice.with(cacert: newBundle), ["put", "/elsewhere", "1"], dialTimeout: "1s"))?
                    .status != 0
            })
        #expect(await eventually(timeout: .seconds(5)) { member.log.contains("signed by an unknown authority") })
        #expect(
            try Self.ctl(member, carol.with(cacert: layout.trustBundle(.clients)), ["put", "/r/5", "done"]).status == 0)

        #expect(
            await eventually {
                Self.watched(watch, except: "/r/ready") == ["/r/0", "/r/1", "/r/2", "/r/3", "/r/4", "/r/5"]
            },
            "the watch opened before the rotation saw every write: \(Self.watchedKeys(watch.log))")
        #expect(watch.isRunning)
    }

    @Test("an expired CA stops start-up with the file, the date and the fix; doctor and check-expiration agree")
    func expiredCA() async throws {
        let dir = TemporaryDirectory("ca")
        let data = dir.fileURL("data")
        var configuration = ManagedPKIConfiguration(
            dataDirectory: data, memberName: "m1", advertiseClientURLs: ["https://127.0.0.1:2379"],
            advertisePeerURLs: ["http://127.0.0.1:2380"], leafLifetime: try LeafLifetime(parsing: "10m"))
        configuration.caValidity = 3_600
        _ = try ManagedPKI(configuration: configuration, jitter: .none).ensure(now: Date() - 7_200)

        let member = try QuorumMember(dataDir: data, extra: [], waitReady: false)
        let status = member.child.waitForExit(timeout: 30)
        #expect(status != nil && status != 0)
        let log = member.log
        #expect(log.contains("clients-ca.crt") && log.contains("expired at"), "\(log.suffix(800))")
        #expect(log.contains("quorumctl certs rotate-ca --data-dir"))

        let quorumctl = builtProduct("quorumctl").path
        let doctor = try runCommand(quorumctl, ["certs", "doctor", "--data-dir", data.path])
        #expect(doctor.status == 1)
        #expect(doctor.stdout.contains("ca-expired") && doctor.stdout.contains("fix: quorumctl certs rotate-ca"))
        let table = try runCommand(quorumctl, ["certs", "check-expiration", "--data-dir", data.path])
        #expect(table.status == 1)
        #expect(table.stdout.contains("RESIDUAL TIME") && table.stdout.contains("expired"))

        // The fix the message names works: rotate, and the member starts.
        let fix = try runCommand(quorumctl, ["certs", "rotate-ca", "--complete", "--data-dir", data.path])
        #expect(fix.status == 0, "\(fix.output)")
        let restarted = try QuorumMember(dataDir: data, extra: [])
        defer { restarted.stop() }
        let layout = PKILayout(dataDirectory: data)
        let put = try runCommand(
            Self.etcdctlPath,
            etcdctl(
                restarted, cacert: layout.trustBundle(.clients), cert: layout.adminCertificate, key: layout.adminKey,
                ["put", "k", "v"]))
        #expect(put.status == 0, "\(put.output)")
        let live = try runCommand(
            quorumctl, ["certs", "check-expiration", "--endpoints", restarted.endpoint, "-o", "json"])
        #expect(live.status == 0, "\(live.output)")
        #expect(
            live.stdout.contains("127.0.0.1:\(restarted.clientPort)") && live.stdout.contains("\"status\" : \"ok\""))
    }
}
