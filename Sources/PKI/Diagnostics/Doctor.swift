import Foundation
import X509

/// `quorumctl certs doctor`: finds everything wrong with a member's certificates and says how to fix each thing.
///
/// Pure apart from reading the data directory: other members' chains and clock readings are gathered by the caller
/// (the CLI dials them; the server's health check uses what its peer connections saw) and passed in.
public enum Doctor {
    /// What another member presented and what its clock said.
    public struct MemberObservation: Sendable {
        public var name: String
        /// The chain it served (leaf first), PEM.
        public var chainPEM: String
        /// Which port the chain came from: peers are checked against `peers/ca.crt`, clients against `clients/ca.crt`.
        public var kind: CAKind
        /// The host we dialled, checked against the leaf's SANs.
        public var host: String?
        /// The member's clock when observed (e.g. from an HTTP Date header or the peer handshake).
        public var reportedTime: Date?
        /// Our clock at the same moment; defaults to `now`.
        public var observedAt: Date?
        /// Set when the member aborted a handshake in which this member presented its own peer certificate: what
        /// it answered (the TLS alert). The other half of trust: the member may be fine, but it refuses us.
        public var refusedOurCertificate: String?

        public init(
            name: String, chainPEM: String, kind: CAKind = .peers, host: String? = nil, reportedTime: Date? = nil,
            observedAt: Date? = nil, refusedOurCertificate: String? = nil
        ) {
            self.name = name
            self.chainPEM = chainPEM
            self.kind = kind
            self.host = host
            self.reportedTime = reportedTime
            self.observedAt = observedAt
            self.refusedOurCertificate = refusedOurCertificate
        }
    }

    public struct Input: Sendable {
        public var dataDirectory: URL
        public var advertiseClientURLs: [String]
        public var advertisePeerURLs: [String]
        public var members: [MemberObservation]
        public var now: Date
        /// CAs and unmanaged leaves closer than this to expiry are warnings (90 days, as in `ManagedPKI`).
        public var warningWindow: TimeInterval
        /// Skew above this is a warning: etcd itself complains about peer clock differences above one second.
        public var clockSkewWarning: TimeInterval
        /// Skew above this is an error: it exceeds the 5-minute notBefore backdate, so fresh certificates from one
        /// member are "not yet valid" on another.
        public var clockSkewError: TimeInterval

        public init(
            dataDirectory: URL, advertiseClientURLs: [String] = [], advertisePeerURLs: [String] = [],
            members: [MemberObservation] = [], now: Date, warningWindow: TimeInterval = 90 * IssuanceDefaults.day,
            clockSkewWarning: TimeInterval = 1, clockSkewError: TimeInterval = IssuanceDefaults.clockSkewAllowance
        ) {
            self.dataDirectory = dataDirectory
            self.advertiseClientURLs = advertiseClientURLs
            self.advertisePeerURLs = advertisePeerURLs
            self.members = members
            self.now = now
            self.warningWindow = warningWindow
            self.clockSkewWarning = clockSkewWarning
            self.clockSkewError = clockSkewError
        }
    }

    public static func examine(_ input: Input) -> DoctorReport {
        let inventory = CertificateInventory(layout: PKILayout(dataDirectory: input.dataDirectory))
        var checks = DoctorChecks(input: input, inventory: inventory)
        checks.checkAuthorities()
        checks.checkBundles()
        checks.checkLeaves()
        checks.checkMembers()
        return DoctorReport(
            findings: checks.findings.sorted { lhs, rhs in
                lhs.severity != rhs.severity ? lhs.severity > rhs.severity : lhs.subject < rhs.subject
            })
    }
}

/// The result of `Doctor.examine`.
public struct DoctorReport: Sendable, Codable, Equatable {
    public var findings: [DoctorFinding]

    public var isHealthy: Bool { !findings.contains { $0.severity == .error } }

    public func findings(withCode code: String) -> [DoctorFinding] { findings.filter { $0.code == code } }

    /// Human-readable output: one block per finding, then a summary line.
    public func renderText() -> String {
        var text = ""
        for finding in findings {
            text += "\(finding.severity.rawValue.uppercased().padding(toLength: 7, withPad: " ", startingAt: 0))"
            text += "\(finding.code): \(finding.subject): \(finding.message)\n"
            text += "       fix: \(finding.fix)\n"
        }
        let errors = findings.filter { $0.severity == .error }.count
        let warnings = findings.filter { $0.severity == .warning }.count
        text += findings.isEmpty ? "no problems found\n" : "\(errors) error(s), \(warnings) warning(s)\n"
        return text
    }

    public func renderJSON() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}
