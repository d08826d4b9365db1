import Foundation
import Logging
import TestSupport
import X509

@testable import PKI

/// Shared fixed instants: tests never read the wall clock.
enum Fixtures {
    /// 2025-01-01T00:00:00Z.
    static let epoch = Date(timeIntervalSince1970: 1_735_689_600)
    static let day: TimeInterval = 86_400

    static func ca(
        _ kind: CAKind = .clients,
        algorithm: KeyAlgorithm = .ecdsaP256,
        validity: TimeInterval = IssuanceDefaults.caValidity,
        at now: Date = epoch,
        seed: UInt64 = 1
    ) throws -> CertificateAuthority {
        var rng = SeededRandom(seed: seed)
        return try CertificateAuthority.generate(
            kind: kind, keyAlgorithm: algorithm, validity: validity, now: now, using: &rng)
    }

    static func serverNames(_ name: String = "member-1") -> SubjectNames {
        SubjectNames.member(
            name: name,
            advertiseURLs: ["https://10.0.0.1:2379", "https://member-1.example.com:2379"],
            hostname: "node1"
        )
    }

    static func leaf(
        from ca: CertificateAuthority,
        names: SubjectNames = serverNames(),
        profile: LeafProfile = .server,
        validity: TimeInterval = 365 * day,
        algorithm: KeyAlgorithm = .ecdsaP256,
        at now: Date = epoch,
        seed: UInt64 = 2
    ) throws -> IssuedCertificate {
        var rng = SeededRandom(seed: seed)
        let request = LeafRequest(names: names, profile: profile, validity: validity, keyAlgorithm: algorithm)
        return try LeafIssuer(authority: ca).issue(request, now: now, using: &rng)
    }
}

extension Fixtures {
    static func configuration(
        _ dir: URL,
        name: String = "member-1",
        clientURLs: [String] = ["https://10.0.0.1:2379"],
        peerURLs: [String] = ["https://10.0.0.1:2380"],
        lifetime: LeafLifetime = .default,
        createCAs: Bool = true,
        caSource: URL? = nil,
        caValidity: TimeInterval = IssuanceDefaults.caValidity,
        policy: RenewalPolicy = RenewalPolicy(jitterFraction: 0)
    ) -> ManagedPKIConfiguration {
        ManagedPKIConfiguration(
            dataDirectory: dir, memberName: name,
            clientNames: .member(name: name, advertiseURLs: clientURLs, hostname: "node1"),
            peerNames: .member(name: name, advertiseURLs: peerURLs, hostname: "node1"),
            leafLifetime: lifetime, caValidity: caValidity, createCAsIfMissing: createCAs,
            caSourceDirectory: caSource, renewalPolicy: policy)
    }

    static func managed(_ configuration: ManagedPKIConfiguration, jitter: RenewalJitter = .none) -> ManagedPKI {
        ManagedPKI(
            configuration: configuration, jitter: jitter,
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
    }
}

/// File-system inspection helpers.
enum Files {
    static func mode(_ url: URL) -> Int {
        let attributes = try? FileManager.default.attributesOfItem(atPath: url.path)
        return (attributes?[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    static func exists(_ url: URL) -> Bool { FileManager.default.fileExists(atPath: url.path) }

    /// Every file below `url`, relative, sorted.
    static func tree(_ url: URL) -> [String] {
        let base = url.standardizedFileURL.resolvingSymlinksInPath().path
        guard let enumerator = FileManager.default.enumerator(atPath: base) else { return [] }
        return enumerator.compactMap { $0 as? String }.sorted()
    }
}
