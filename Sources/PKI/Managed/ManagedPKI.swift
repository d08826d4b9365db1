import Foundation
import Logging
import X509

/// The member's self-managing PKI: call `ensure(now:)` at start-up and again at `report.nextCheck`.
///
/// `ensure` is idempotent. On first start it creates (or imports) the clients and peers CAs and issues the serving,
/// peer and admin certificates; afterwards it only re-issues what the `RenewalPolicy` says must be re-issued, and
/// reports why. It refuses to continue, with an error naming the file, the date and the fix, when a CA has expired,
/// because serving with an expired CA only moves the failure to every client.
public struct ManagedPKI: Sendable {
    public let configuration: ManagedPKIConfiguration
    /// This process's position in the renewal jitter window, drawn once so repeated checks agree.
    public let jitter: RenewalJitter
    private let logger: Logger

    public init(
        configuration: ManagedPKIConfiguration,
        jitter: RenewalJitter,
        logger: Logger = Logger(label: "quorum.pki")
    ) {
        self.configuration = configuration
        self.jitter = jitter
        self.logger = logger
    }

    /// Draws the jitter from `rng`.
    public init(
        configuration: ManagedPKIConfiguration,
        using rng: inout some RandomNumberGenerator,
        logger: Logger = Logger(label: "quorum.pki")
    ) {
        self.init(configuration: configuration, jitter: .random(using: &rng), logger: logger)
    }

    public var layout: PKILayout { configuration.layout }

    public func ensure(now: Date, forceRenewal: Set<CertificateUsage> = []) throws -> PKIEnsureReport {
        var rng = SystemRandomNumberGenerator()
        return try ensure(now: now, forceRenewal: forceRenewal, using: &rng)
    }

    public func ensure(
        now: Date,
        forceRenewal: Set<CertificateUsage> = [],
        using rng: inout some RandomNumberGenerator
    ) throws -> PKIEnsureReport {
        let report = try PKILock.withLock(layout) {
            try ensureLocked(now: now, forceRenewal: forceRenewal, using: &rng)
        }
        for event in report.events {
            if event.isFailure {
                logger.error("\(event.description)")
            } else {
                logger.notice("\(event.description)")
            }
        }
        for warning in report.warnings { logger.warning("\(warning)") }
        return report
    }

    private func ensureLocked(
        now: Date,
        forceRenewal: Set<CertificateUsage>,
        using rng: inout some RandomNumberGenerator
    ) throws -> PKIEnsureReport {
        for directory in layout.allDirectories { try AtomicFileWriter.ensureDirectory(directory) }
        var events: [PKIEvent] = []
        var warnings = configuration.leafLifetime.warnings
        var statuses: [CertificateStatus] = []
        var nextCheck = now + configuration.renewalPolicy.maximumCheckInterval

        var authorities: [CAKind: (ca: LoadedCA, bundle: TrustBundle)] = [:]
        for kind in CAKind.allCases {
            let ca = try prepareCA(kind, now: now, events: &events, using: &rng)
            try checkValidity(of: ca, now: now, warnings: &warnings, nextCheck: &nextCheck)
            let bundle = try prepareBundle(kind, ca: ca, events: &events)
            authorities[kind] = (ca, bundle)
            statuses.append(
                CertificateStatus(
                    usage: kind.usage, path: ca.certificatePath, certificate: ca.certificate, managed: ca.isManaged))
        }

        var fatal: PKIError?
        for (usage, request) in configuration.leafSpecifications {
            guard let (ca, bundle) = authorities[usage.authority] else { continue }
            let outcome = reconcile(
                usage, request: request, ca: ca, bundle: bundle, now: now,
                forced: forceRenewal.contains(usage), events: &events, using: &rng)
            if let status = outcome.status { statuses.append(status) }
            nextCheck = min(nextCheck, outcome.nextCheck)
            if fatal == nil { fatal = outcome.fatal }
        }
        if let fatal { throw fatal }
        return PKIEnsureReport(
            events: events, warnings: warnings,
            paths: TLSFilePaths(layout: layout, includeAdmin: configuration.adminUser != nil),
            certificates: statuses.sorted { $0.usage < $1.usage }, nextCheck: nextCheck)
    }
}
