import Foundation
import Logging
import NIOCore
import NIOPosix
import PKI
import Synchronization
import TestSupport
import X509

#if canImport(Glibc)
    import Glibc
#endif

/// Certificates for tests, made with the PKI library the server itself uses.
enum TestPKI {
    static func ca(_ kind: CAKind = .clients, validity: TimeInterval = 86_400, now: Date = Date()) throws
        -> CertificateAuthority
    {
        var rng = SystemRandomNumberGenerator()
        return try CertificateAuthority.generate(
            kind: kind, keyAlgorithm: .ecdsaP256, validity: validity, now: now, using: &rng)
    }

    static func leaf(
        _ ca: CertificateAuthority, cn: String, hosts: [String] = ["localhost", "127.0.0.1"],
        profile: LeafProfile = .server, validity: TimeInterval = 3_600, now: Date = Date()
    ) throws -> IssuedCertificate {
        var rng = SystemRandomNumberGenerator()
        let names = profile == .client ? SubjectNames(commonName: cn) : SubjectNames(commonName: cn, hosts: hosts)
        return try LeafIssuer(authority: ca).issue(
            LeafRequest(names: names, profile: profile, validity: validity), now: now, using: &rng)
    }

    /// Writes `<name>.crt` and `<name>.key` (atomically, like cert-manager's rename-into-place).
    @discardableResult
    static func write(_ issued: IssuedCertificate, _ dir: URL, _ name: String) throws -> (cert: URL, key: URL) {
        let cert = dir.appendingPathComponent("\(name).crt")
        let key = dir.appendingPathComponent("\(name).key")
        try AtomicFileWriter.write(issued.privateKeyPEM, to: key, mode: 0o600)
        try AtomicFileWriter.write(issued.certificatePEM, to: cert, mode: 0o644)
        return (cert, key)
    }

    static func writeCA(_ cas: [CertificateAuthority], to url: URL) throws {
        try AtomicFileWriter.write(PEMCodec.pem(for: cas.map(\.certificate)), to: url, mode: 0o644)
    }
}

/// Captures log lines so tests can assert that a rejection was logged with its reason.
final class LogCapture: Sendable {
    private let lines = Mutex<[String]>([])

    var all: [String] { lines.withLock { $0 } }

    func contains(_ fragment: String) -> Bool { all.contains { $0.contains(fragment) } }

    func append(_ line: String) { lines.withLock { $0.append(line) } }

    func logger() -> Logger {
        Logger(label: "test") { _ in CaptureHandler(capture: self) }
    }

    struct CaptureHandler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            capture.append(
                "\(event.level) \(event.message) \(merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" })")
        }
    }
}

/// Polls `condition` every `interval` until it holds or `timeout` passes; returns whether it held.
func eventually(
    timeout: Duration = .seconds(10), interval: Duration = .milliseconds(100), _ condition: () async throws -> Bool
)
    async rethrows -> Bool
{
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}
