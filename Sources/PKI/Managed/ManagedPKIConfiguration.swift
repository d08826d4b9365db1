import Foundation

/// What a member wants from its PKI. Built once from flags; everything else is derived.
public struct ManagedPKIConfiguration: Sendable {
    public var dataDirectory: URL
    public var memberName: String
    /// Names for `clients/server.crt`: hosts of `--advertise-client-urls`, the hostname, loopback.
    public var clientNames: SubjectNames
    /// Names for `peers/peer.crt`: hosts of `--initial-advertise-peer-urls`, the hostname, loopback.
    public var peerNames: SubjectNames
    public var leafLifetime: LeafLifetime
    public var keyAlgorithm: KeyAlgorithm
    public var caKeyAlgorithm: KeyAlgorithm
    public var caValidity: TimeInterval
    /// Issue `clients/admin.crt` for local `etcdctl`; its common name is the etcd user.
    public var adminUser: String?
    /// Create CAs on first start when the data directory has none. Turn off for multi-member clusters, whose members
    /// must share CAs made by `quorumctl pki init`; a member that made its own CA could never talk to the others.
    public var createCAsIfMissing: Bool
    /// A directory holding CA files from `quorumctl pki init`, imported when the data directory has no CA yet.
    public var caSourceDirectory: URL?
    /// How long before a CA's expiry to start warning. 90 days: a quarter is enough to schedule a rotation, which
    /// needs every member and every client to pick up the staged bundle before the old CA is retired. The effective
    /// window is never shorter than one leaf lifetime, since a CA closer to expiry than that caps new leaves.
    public var caWarningWindow: TimeInterval
    public var renewalPolicy: RenewalPolicy

    public init(
        dataDirectory: URL,
        memberName: String,
        clientNames: SubjectNames,
        peerNames: SubjectNames,
        leafLifetime: LeafLifetime = .default,
        keyAlgorithm: KeyAlgorithm = .ecdsaP256,
        caKeyAlgorithm: KeyAlgorithm = .ecdsaP256,
        caValidity: TimeInterval = IssuanceDefaults.caValidity,
        adminUser: String? = "root",
        createCAsIfMissing: Bool = true,
        caSourceDirectory: URL? = nil,
        caWarningWindow: TimeInterval = 90 * IssuanceDefaults.day,
        renewalPolicy: RenewalPolicy = .default
    ) {
        self.dataDirectory = dataDirectory
        self.memberName = memberName
        self.clientNames = clientNames
        self.peerNames = peerNames
        self.leafLifetime = leafLifetime
        self.keyAlgorithm = keyAlgorithm
        self.caKeyAlgorithm = caKeyAlgorithm
        self.caValidity = caValidity
        self.adminUser = adminUser
        self.createCAsIfMissing = createCAsIfMissing
        self.caSourceDirectory = caSourceDirectory
        self.caWarningWindow = caWarningWindow
        self.renewalPolicy = renewalPolicy
    }

    /// Convenience for the server's flags: names come from the advertise URLs plus hostname and loopback.
    public init(
        dataDirectory: URL,
        memberName: String,
        advertiseClientURLs: [String],
        advertisePeerURLs: [String],
        hostname: String? = ProcessInfo.processInfo.hostName,
        leafLifetime: LeafLifetime = .default
    ) {
        self.init(
            dataDirectory: dataDirectory,
            memberName: memberName,
            clientNames: .member(name: memberName, advertiseURLs: advertiseClientURLs, hostname: hostname),
            peerNames: .member(name: memberName, advertiseURLs: advertisePeerURLs, hostname: hostname),
            leafLifetime: leafLifetime
        )
    }

    public var layout: PKILayout { PKILayout(dataDirectory: dataDirectory) }

    var effectiveCAWarningWindow: TimeInterval { max(caWarningWindow, leafLifetime.seconds) }

    /// The leaf certificates this member keeps, with what each must look like.
    var leafSpecifications: [(usage: CertificateUsage, request: LeafRequest)] {
        var specs: [(CertificateUsage, LeafRequest)] = [
            (
                .clientServer,
                LeafRequest(
                    names: clientNames, profile: .server, validity: leafLifetime.seconds, keyAlgorithm: keyAlgorithm)
            ),
            (
                .peer,
                LeafRequest(
                    names: peerNames, profile: .peer, validity: leafLifetime.seconds, keyAlgorithm: keyAlgorithm)
            ),
        ]
        if let adminUser {
            specs.insert(
                (.clientAdmin, .client(user: adminUser, validity: leafLifetime.seconds, keyAlgorithm: keyAlgorithm)),
                at: 1)
        }
        return specs
    }
}
