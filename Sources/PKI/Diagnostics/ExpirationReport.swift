import Foundation
import X509

/// `quorumctl certs check-expiration`: one row per certificate, like `kubeadm certs check-expiration`.
///
/// This is the table the etcd-manager operators never had: every certificate of the member, with its expiry, time
/// left, issuer and whether Quorum will renew it, plus any chains fetched from live endpoints so that what is actually
/// served can be compared with what is on disk.
public struct ExpirationReport: Sendable, Codable, Equatable {
    public enum Status: String, Sendable, Codable {
        case ok
        case warning
        case expired
        case notYetValid = "not-yet-valid"
        case missing
        case unreadable
    }

    public struct Row: Sendable, Codable, Equatable {
        /// File relative to `<data-dir>/pki`, or the endpoint it was fetched from.
        public var name: String
        public var usage: CertificateUsage?
        public var subject: String?
        public var serialHex: String?
        public var notAfter: Date?
        /// kubeadm-style time left: `364d`, `23h`, `expired`.
        public var residualTime: String?
        /// Common name of the issuer, `self-signed` for roots.
        public var certificateAuthority: String?
        /// Whether Quorum renews it; nil when unknown (live endpoints).
        public var managed: Bool?
        public var status: Status
        public var detail: String?
    }

    /// A certificate chain fetched by the caller (e.g. from `https://10.0.0.2:2379`), leaf first, as PEM.
    public struct Endpoint: Sendable {
        public var name: String
        public var pem: String

        public init(name: String, pem: String) {
            self.name = name
            self.pem = pem
        }
    }

    /// When a certificate counts as "warning". CAs: inside `caWarningWindow`. Leaves: less than
    /// `leafWarningFraction` of their lifetime left, which for managed leaves means renewal is overdue.
    public struct Thresholds: Sendable {
        public var caWarningWindow: TimeInterval
        public var leafWarningFraction: Double

        public init(caWarningWindow: TimeInterval = 90 * IssuanceDefaults.day, leafWarningFraction: Double = 1.0 / 3.0)
        {
            self.caWarningWindow = caWarningWindow
            self.leafWarningFraction = leafWarningFraction
        }
    }

    public var generatedAt: Date
    public var dataDirectory: String
    public var rows: [Row]

    public init(dataDirectory: URL, now: Date, endpoints: [Endpoint] = [], thresholds: Thresholds = Thresholds()) {
        let inventory = CertificateInventory(layout: PKILayout(dataDirectory: dataDirectory))
        generatedAt = now
        self.dataDirectory = inventory.layout.dataDirectory.path
        var rows: [Row] = []
        for leaf in inventory.leaves {
            switch leaf.material.state {
            case .missing:
                rows.append(Row(name: leaf.relativePath, usage: leaf.usage, status: .missing))
            case .unreadable(let error):
                rows.append(Row(name: leaf.relativePath, usage: leaf.usage, status: .unreadable, detail: error))
            case .present(let certificate, _):
                let managed = inventory.isManaged(certificate, kind: leaf.usage.authority)
                rows.append(
                    Self.row(
                        leaf.relativePath, usage: leaf.usage, certificate, managed: managed, now: now,
                        thresholds: thresholds))
            }
        }
        for ca in inventory.authorities {
            let name = ca.relativePath
            guard let certificate = ca.certificate else {
                let missing = ca.error?.contains("no such file") == true
                rows.append(
                    Row(name: name, usage: ca.kind.usage, status: missing ? .missing : .unreadable, detail: ca.error))
                continue
            }
            rows.append(
                Self.row(
                    name, usage: ca.generation == .current ? ca.kind.usage : nil, certificate,
                    managed: ca.hasKey && ca.keyMatches, now: now, thresholds: thresholds))
        }
        for kind in CAKind.allCases {
            let known = Set(inventory.authorities.compactMap { $0.certificate })
            for (index, certificate) in (inventory.bundles[kind]?.certificates ?? []).enumerated()
            where !known.contains(certificate) {
                let name = "\(inventory.relative(inventory.layout.trustBundle(kind)))[\(index)]"
                rows.append(Self.row(name, usage: nil, certificate, managed: false, now: now, thresholds: thresholds))
            }
        }
        for endpoint in endpoints {
            do {
                let chain = try PEMCodec.certificates(fromPEM: endpoint.pem, source: endpoint.name)
                var row = Self.row(
                    endpoint.name, usage: nil, chain[0], managed: false, now: now, thresholds: thresholds)
                row.managed = nil
                rows.append(row)
            } catch {
                rows.append(Row(name: endpoint.name, status: .unreadable, detail: "\(error)"))
            }
        }
        self.rows = rows
    }

    static func row(
        _ name: String,
        usage: CertificateUsage?,
        _ certificate: Certificate,
        managed: Bool,
        now: Date,
        thresholds: Thresholds
    ) -> Row {
        let info = CertificateInfo(certificate)
        let remaining = info.remaining(at: now)
        let status: Status
        if remaining < 0 {
            status = .expired
        } else if now < info.notBefore {
            status = .notYetValid
        } else if info.isCertificateAuthority {
            status = remaining < thresholds.caWarningWindow ? .warning : .ok
        } else {
            status = remaining < info.lifetime * thresholds.leafWarningFraction ? .warning : .ok
        }
        return Row(
            name: name, usage: usage, subject: info.subject, serialHex: info.serialHex, notAfter: info.notAfter,
            residualTime: ResidualTime.format(remaining),
            certificateAuthority: info.isSelfSigned ? "self-signed" : (certificate.issuer.commonName ?? info.issuer),
            managed: managed, status: status)
    }

    /// True when something is expired, missing or unreadable: the CLI exits non-zero.
    public var hasFailures: Bool {
        rows.contains { [.expired, .notYetValid, .missing, .unreadable].contains($0.status) }
    }
}
