import ArgumentParser
import Foundation
import PKI
import ReloadingTLS
import Server
import X509

/// `quorumctl certs …`: issue, revoke, renew, rotate and inspect a member's certificates.
struct CertsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs",
        abstract: "Manage and inspect a member's certificates.",
        subcommands: [
            CheckExpirationCommand.self, DoctorCommand.self, IssueClientCommand.self, RevokeCommand.self,
            RenewCommand.self, RotateCACommand.self,
        ])
}

/// Options shared by the commands that read a data directory.
struct DataDirOption: ParsableArguments {
    @Option(name: .long, help: "The member's data directory (holds pki/).")
    var dataDir: String?

    var url: URL? { dataDir.map { URL(fileURLWithPath: $0) } }

    func required() throws -> URL {
        guard let url else { throw ValidationError("--data-dir is required") }
        return url
    }
}

/// A client identity for dialling endpoints that require client certificates.
struct ClientIdentityOptions: ParsableArguments {
    @Option(name: .long, help: "Client certificate to present to endpoints.")
    var cert: String?
    @Option(name: .long, help: "Key of --cert.")
    var key: String?

    var files: TLSFileSet? {
        guard let cert, let key else { return nil }
        return TLSFileSet(certificate: URL(fileURLWithPath: cert), key: URL(fileURLWithPath: key))
    }
}

func splitList(_ text: String?) -> [String] {
    (text ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
}

// MARK: check-expiration

struct CheckExpirationCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-expiration",
        abstract: "Show every certificate with its expiry, like kubeadm certs check-expiration.",
        discussion: "Exits 1 when a certificate is expired, not yet valid, missing or unreadable.")

    @OptionGroup var dataDir: DataDirOption

    @Option(name: .long, help: "Comma-separated https endpoints whose served certificates to show.")
    var endpoints: String?

    @OptionGroup var identity: ClientIdentityOptions

    @Option(name: .shortAndLong, help: "Output format: table or json.")
    var output = "table"

    func run() async throws {
        guard dataDir.dataDir != nil || endpoints != nil else {
            throw ValidationError("give --data-dir DIR and/or --endpoints URLS")
        }
        var fetched: [ExpirationReport.Endpoint] = []
        for endpoint in splitList(endpoints) {
            do {
                let (host, port) = try TLSEndpointProbe.hostAndPort(endpoint)
                let observation = try await TLSEndpointProbe.observe(
                    host: host, port: port, clientIdentity: identity.files)
                fetched.append(.init(name: endpoint, pem: observation.chainPEM))
            } catch {
                fetched.append(.init(name: endpoint, pem: "unreachable: \(error)"))
            }
        }
        // Without a data directory only the endpoint rows are wanted; an empty temporary directory yields none.
        let directory = dataDir.url ?? FileManager.default.temporaryDirectory.appendingPathComponent("quorumctl-none")
        var report = ExpirationReport(dataDirectory: directory, now: Date(), endpoints: fetched)
        if dataDir.url == nil { report.rows.removeAll { !$0.name.contains("://") && !$0.name.contains(":") } }
        switch output {
        case "json": print(try report.renderJSON())
        case "table": print(report.renderTable(), terminator: "")
        default: throw ValidationError("unknown output format \(output): use table or json")
        }
        if report.hasFailures { throw ExitCode(1) }
    }
}

// MARK: doctor

struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Find what is wrong with a member's certificates and print the fix for each problem.",
        discussion: """
            Checks expired or not-yet-valid leaves and CAs, chains that do not match the trust bundle, SANs that do \
            not cover the advertise URLs, keys that do not match their certificates, and, with --peer-endpoints or \
            --endpoints, what other members serve and how far their clocks are from ours (via their HTTP Date \
            header when they send one). Exits 1 when it finds an error.
            """)

    @OptionGroup var dataDir: DataDirOption

    @Option(name: .long, help: "This member's advertised client URLs (checked against the server certificate).")
    var advertiseClientUrls: String?

    @Option(name: .long, help: "This member's advertised peer URLs (checked against the peer certificate).")
    var initialAdvertisePeerUrls: String?

    @Option(name: .long, help: "Other members' client URLs to inspect.")
    var endpoints: String?

    @Option(name: .long, help: "Other members' peer URLs to inspect.")
    var peerEndpoints: String?

    @OptionGroup var identity: ClientIdentityOptions

    @Option(name: .shortAndLong, help: "Output format: text or json.")
    var output = "text"

    func run() async throws {
        let directory = try dataDir.required()
        var members: [Doctor.MemberObservation] = []
        for (list, kind) in [(endpoints, CAKind.clients), (peerEndpoints, CAKind.peers)] {
            for endpoint in splitList(list) {
                do {
                    let (host, port) = try TLSEndpointProbe.hostAndPort(endpoint)
                    let observation = try await TLSEndpointProbe.observe(
                        host: host, port: port, clientIdentity: identity.files, httpPath: "/health")
                    var member = Doctor.MemberObservation(
                        name: endpoint, chainPEM: observation.chainPEM, kind: kind, host: host,
                        reportedTime: observation.serverDate, observedAt: observation.observedAt)
                    if kind == .peers {
                        member.refusedOurCertificate = await Self.refusal(by: host, port: port, of: directory)
                    }
                    members.append(member)
                } catch {
                    FileHandle.standardError.write(Data("quorumctl: cannot inspect \(endpoint): \(error)\n".utf8))
                }
            }
        }
        let report = Doctor.examine(
            Doctor.Input(
                dataDirectory: directory, advertiseClientURLs: splitList(advertiseClientUrls),
                advertisePeerURLs: splitList(initialAdvertisePeerUrls), members: members, now: Date()))
        switch output {
        case "json": print(try report.renderJSON())
        case "text": print(report.renderText(), terminator: "")
        default: throw ValidationError("unknown output format \(output): use text or json")
        }
        if !report.isHealthy { throw ExitCode(1) }
    }

    /// Dials a peer endpoint presenting this member's own peer certificate, as the member itself would: nil when
    /// the handshake (and a request over it) succeeds, else the TLS alert the peer answered with.
    static func refusal(by host: String, port: Int, of directory: URL) async -> String? {
        let layout = PKILayout(dataDirectory: directory)
        let own = TLSFileSet(certificate: layout.certificate(for: .peer), key: layout.key(for: .peer))
        guard FileManager.default.fileExists(atPath: own.certificate.path) else { return nil }
        let text: String
        do {
            let observation = try await TLSEndpointProbe.observe(
                host: host, port: port, clientIdentity: own, httpPath: "/health")
            text = observation.handshakeError ?? ""
        } catch {
            text = String(describing: error)
        }
        guard let range = text.range(of: #"[A-Z0-9_]*ALERT_[A-Z_]+"#, options: .regularExpression) else { return nil }
        return "it answered the handshake with \(text[range])"

    }
}

// MARK: issue-client

struct IssueClientCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "issue-client",
        abstract: "Issue a client certificate (CN = NAME, the etcd user) signed by the member's clients CA.",
        discussion: "Writes NAME.crt, NAME.key (0600) and ca.crt into --out, ready for etcdctl --cert --key --cacert.")

    @Argument(help: "The client's name; with client-cert auth it is the etcd user name.")
    var name: String

    @OptionGroup var dataDir: DataDirOption

    @Option(name: .long, help: "Lifetime, e.g. 8760h, 90d, 1y, 30s.")
    var validity = "1y"

    @Option(name: .long, help: "Output directory.")
    var out = "."

    @Option(name: .long, help: "Subject organization (a group), optional.")
    var organization: String?

    @Option(name: .long, help: "Key algorithm: ecdsa-p256 or rsa-2048.")
    var keyAlgorithm = "ecdsa-p256"

    func run() throws {
        guard let algorithm = KeyAlgorithm(flagValue: keyAlgorithm) else {
            throw ValidationError("unknown key algorithm \(keyAlgorithm)")
        }
        let result = try ClientCertificateIssuer.issue(
            user: name, validity: try LeafLifetime(parsing: validity), keyAlgorithm: algorithm,
            organization: organization, dataDirectory: try dataDir.required(),
            outputDirectory: URL(fileURLWithPath: out), now: Date())
        let certificate = result.issued.certificate
        print(
            "issued client certificate CN=\(name) serial \(certificate.serialNumber.hexString) valid until "
                + RFC3339.string(certificate.notValidAfter))
        print(
            "  --cert \(result.certificatePath.path) --key \(result.keyPath.path) --cacert \(result.trustBundlePath.path)"
        )
    }
}

// MARK: revoke

struct RevokeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke",
        abstract: "Revoke client certificates by serial (adds them to <data-dir>/pki/clients/crl.pem).",
        discussion: "A running member picks the new CRL up within a second; no restart.")

    @Argument(help: "Serial numbers in hex, as printed by openssl x509 -serial or check-expiration.")
    var serials: [String]

    @OptionGroup var dataDir: DataDirOption

    func run() throws {
        let parsed = try serials.map { text -> Certificate.SerialNumber in
            guard let serial = ClientCertificateRevoker.parseSerial(text) else {
                throw ValidationError("not a serial number: \(text)")
            }
            return serial
        }
        let crl = try ClientCertificateRevoker.revoke(
            serials: parsed, dataDirectory: try dataDir.required(), now: Date())
        print("CRL #\(crl.crlNumber ?? 0) now revokes \(crl.entries.count) certificate(s)")
    }
}

// MARK: renew

struct RenewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "renew",
        abstract: "Re-issue a member's managed leaf certificates now (server, peer, admin).",
        discussion: """
            Keeps each certificate's names unless --name/--advertise-client-urls/--initial-advertise-peer-urls say \
            otherwise. A running member serves the new certificates within a second.
            """)

    @OptionGroup var dataDir: DataDirOption

    @Option(name: .long, help: "Which certificates: all, client-server, client-admin or peer.")
    var usage = "all"

    @Option(name: .long, help: "Member name (common name of server and peer certificates).")
    var name: String?

    @Option(name: .long, help: "Advertised client URLs (SANs of the server certificate).")
    var advertiseClientUrls: String?

    @Option(name: .long, help: "Advertised peer URLs (SANs of the peer certificate).")
    var initialAdvertisePeerUrls: String?

    @Option(name: .long, help: "Lifetime of the new leaves; default: that of the current ones.")
    var validity: String?

    func run() throws {
        let directory = try dataDir.required()
        let layout = PKILayout(dataDirectory: directory)
        func existing(_ usage: CertificateUsage) -> Certificate? {
            try? PEMCodec.certificate(at: layout.certificate(for: usage))
        }
        let server = existing(.clientServer)
        let peer = existing(.peer)
        let memberName = name ?? server.map { SubjectNames(certificate: $0).commonName } ?? "default"
        func names(_ urls: String?, _ current: Certificate?) -> SubjectNames {
            let list = splitList(urls)
            if !list.isEmpty {
                return .member(name: memberName, advertiseURLs: list, hostname: ProcessInfo.processInfo.hostName)
            }
            if var names = current.map(SubjectNames.init(certificate:)) {
                names.commonName = memberName
                return names
            }
            return .member(name: memberName, advertiseURLs: [], hostname: ProcessInfo.processInfo.hostName)
        }
        let lifetime: LeafLifetime
        if let validity {
            lifetime = try LeafLifetime(parsing: validity)
        } else if let server {
            lifetime = try LeafLifetime(
                seconds: max(1, server.notValidAfter.timeIntervalSince(server.notValidBefore).rounded()))
        } else {
            lifetime = .default
        }
        let adminUser = existing(.clientAdmin).map { SubjectNames(certificate: $0).commonName }
        let configuration = ManagedPKIConfiguration(
            dataDirectory: directory, memberName: memberName, clientNames: names(advertiseClientUrls, server),
            peerNames: names(initialAdvertisePeerUrls, peer), leafLifetime: lifetime,
            keyAlgorithm: server.flatMap { KeyAlgorithm(publicKey: $0.publicKey) } ?? .ecdsaP256,
            adminUser: adminUser ?? "root", createCAsIfMissing: false)
        let forced: Set<CertificateUsage>
        switch usage {
        case "all": forced = [.clientServer, .clientAdmin, .peer]
        default:
            guard let one = CertificateUsage(rawValue: usage), !one.isCertificateAuthority else {
                throw ValidationError("unknown usage \(usage): use all, client-server, client-admin or peer")
            }
            forced = [one]
        }
        var rng = SystemRandomNumberGenerator()
        let report = try ManagedPKI(configuration: configuration, using: &rng).ensure(now: Date(), forceRenewal: forced)
        for event in report.events { print(event.description) }
        for warning in report.warnings { print("warning: \(warning)") }
        if report.events.contains(where: \.isFailure) { throw ExitCode(1) }
    }
}

// MARK: rotate-ca

struct RotateCACommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate-ca",
        abstract: "Rotate the clients and/or peers CA online, one phase per run (or all with --complete).",
        discussion: """
            Phases: start (stage a new CA and add it to the trust bundle; distribute the new ca.crt to every client \
            now), advance (re-issue this member's leaves from the new CA; old CA still trusted), advance again \
            (retire the old CA once nothing depends on it). Members serving from this data directory pick up each \
            change within a second. In a cluster, stage on one member and copy pki/ca/<kind>-ca-next.* to the others \
            (or pass --next-ca-dir), and advance every member before retiring on any. See docs/TLS.md.
            """)

    @OptionGroup var dataDir: DataDirOption

    @Option(name: .long, help: "Which CA: clients, peers or all.")
    var kind = "all"

    @Flag(name: .long, help: "Only print the rotation state.")
    var status = false

    @Flag(name: .long, help: "Run every remaining phase now (single member, or an already expired CA).")
    var complete = false

    @Option(name: .long, help: "Directory with <kind>-ca.crt|key from quorumctl pki init to use as the new CA.")
    var nextCADir: String?

    @Option(name: .long, help: "Validity of a newly generated CA.")
    var caValidity = "10y"

    @Option(
        name: .long, help: "Other members' leaf certificates (PEM files) that must leave the old CA before retiring.")
    var otherLeaves: [String] = []

    func run() throws {
        let directory = try dataDir.required()
        let kinds: [CAKind]
        switch kind {
        case "all": kinds = CAKind.allCases
        default:
            guard let one = CAKind(rawValue: kind) else { throw ValidationError("unknown CA kind \(kind)") }
            kinds = [one]
        }
        let others = try otherLeaves.flatMap { try PEMCodec.certificates(at: URL(fileURLWithPath: $0)) }
        var rng = SystemRandomNumberGenerator()
        for kind in kinds {
            let runner = CARotationRunner(
                dataDirectory: directory, kind: kind, caValidity: try LeafLifetime(parsing: caValidity).seconds)
            let state = try runner.state()
            if status {
                print("\(kind.rawValue): phase \(state.phase.rawValue)")
                for transition in state.history {
                    print("  \(transition.phase.rawValue) at \(RFC3339.string(transition.at))")
                }
                continue
            }
            let results: [CARotationRunner.StepResult]
            if complete {
                results = try runner.runToCompletion(now: Date(), using: &rng)
            } else if state.phase.isInProgress {
                results = [try runner.advance(now: Date(), otherMembersLeaves: others, using: &rng)]
            } else {
                results = [
                    try runner.start(
                        now: Date(), nextCASource: nextCADir.map { URL(fileURLWithPath: $0) }, using: &rng)
                ]
            }
            for result in results {
                print("\(kind.rawValue) CA: \(result.from.rawValue) -> \(result.to.rawValue)")
                for line in result.log { print("  \(line)") }
                print("  next: \(Self.nextStep(kind: kind, phase: result.to, dataDir: directory.path))")
            }
        }
    }

    static func nextStep(kind: CAKind, phase: CARotation.Phase, dataDir: String) -> String {
        let bundle = PKILayout(dataDirectory: URL(fileURLWithPath: dataDir)).trustBundle(kind).path
        switch phase {
        case .stagedNewCA:
            return "give \(bundle) (old + new CA) to every client and member, then run rotate-ca --kind "
                + "\(kind.rawValue) --data-dir \(dataDir) again to re-issue leaves from the new CA"
        case .reissued:
            return "re-issue client certificates from the new CA (quorumctl certs issue-client), then run rotate-ca "
                + "--kind \(kind.rawValue) --data-dir \(dataDir) again to retire the old CA"
        case .retired, .idle:
            return "done: \(bundle) trusts only the new CA"
        }
    }
}
