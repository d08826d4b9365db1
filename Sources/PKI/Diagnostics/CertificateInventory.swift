import Foundation
import X509

/// Every certificate file of a data directory, loaded without throwing, for the read-only diagnostics.
///
/// `check-expiration` and `doctor` must work on exactly the broken directories that make the server refuse to start,
/// so nothing here throws: unreadable files become entries with an error.
struct CertificateInventory {
    struct LeafEntry {
        var usage: CertificateUsage
        var relativePath: String
        var material: LeafMaterial
    }

    struct CAEntry {
        var kind: CAKind
        var generation: PKILayout.Generation
        var relativePath: String
        var certificate: Certificate?
        var error: String?
        var hasKey: Bool
        var keyMatches: Bool
    }

    let layout: PKILayout
    var leaves: [LeafEntry] = []
    var authorities: [CAEntry] = []
    var bundles: [CAKind: TrustBundle] = [:]
    var bundleErrors: [CAKind: String] = [:]
    var crl: CertificateRevocationList?

    init(layout: PKILayout) {
        self.layout = layout
        for usage in [CertificateUsage.clientServer, .clientAdmin, .peer] {
            let url = layout.certificate(for: usage)
            guard FileManager.default.fileExists(atPath: url.path) || usage != .clientAdmin else { continue }
            leaves.append(
                LeafEntry(
                    usage: usage, relativePath: relative(url),
                    material: LeafMaterial.load(certificate: url, key: layout.key(for: usage))))
        }
        for kind in CAKind.allCases {
            for generation in PKILayout.Generation.allCases {
                let url = layout.caCertificate(kind, generation)
                guard generation == .current || FileManager.default.fileExists(atPath: url.path) else { continue }
                authorities.append(loadCA(kind, generation))
            }
            let bundleURL = layout.trustBundle(kind)
            if FileManager.default.fileExists(atPath: bundleURL.path) {
                do {
                    bundles[kind] = try TrustBundle.load(from: bundleURL)
                } catch {
                    bundleErrors[kind] = "\(error)"
                }
            } else {
                bundleErrors[kind] = "\(bundleURL.path) does not exist"
            }
        }
        crl = try? CertificateRevocationList.load(from: layout.clientsCRL)
    }

    func relative(_ url: URL) -> String {
        let base = layout.root.path + "/"
        return url.path.hasPrefix(base) ? String(url.path.dropFirst(base.count)) : url.path
    }

    /// The current CA of `kind` when it loaded.
    func currentCA(_ kind: CAKind) -> CAEntry? {
        authorities.first { $0.kind == kind && $0.generation == .current }
    }

    /// Whether this member can renew `leaf`: the current CA of its kind signed it and its key is here.
    func isManaged(_ leaf: Certificate, kind: CAKind) -> Bool {
        guard let ca = currentCA(kind), let certificate = ca.certificate, ca.hasKey, ca.keyMatches else { return false }
        return CARotationRunner.isSigned(leaf, by: certificate)
    }

    private func loadCA(_ kind: CAKind, _ generation: PKILayout.Generation) -> CAEntry {
        let url = layout.caCertificate(kind, generation)
        let keyURL = layout.caKey(kind, generation)
        var entry = CAEntry(
            kind: kind, generation: generation, relativePath: relative(url), certificate: nil, error: nil,
            hasKey: false, keyMatches: false)
        do {
            entry.certificate = try PEMCodec.certificate(at: url)
        } catch {
            entry.error = "\(error)"
            return entry
        }
        if FileManager.default.fileExists(atPath: keyURL.path) {
            entry.hasKey = true
            if let key = try? PEMCodec.privateKey(at: keyURL), let certificate = entry.certificate {
                entry.keyMatches = KeyPairCheck.matches(certificate: certificate, privateKey: key)
            }
        }
        return entry
    }
}
