import Foundation
import X509

/// A leaf certificate and key as found on disk, including the ways they can be broken.
///
/// Loading never throws: a missing or corrupt file is a *reason to renew*, not a reason to refuse to start.
public struct LeafMaterial: Sendable {
    public enum State: Sendable {
        case missing
        case unreadable(String)
        case present(Certificate, Certificate.PrivateKey?)
    }

    public let state: State
    public let certificatePath: String
    public let keyPath: String
    /// Why the key could not be loaded, when the key file exists but does not parse.
    public let keyError: String?

    public init(state: State, certificatePath: String, keyPath: String, keyError: String? = nil) {
        self.state = state
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        self.keyError = keyError
    }

    /// In-memory material, for callers that hold certificates rather than files.
    public init(certificate: Certificate, privateKey: Certificate.PrivateKey?, name: String = "certificate") {
        self.init(state: .present(certificate, privateKey), certificatePath: name, keyPath: name + " key")
    }

    public static func load(certificate: URL, key: URL) -> LeafMaterial {
        guard FileManager.default.fileExists(atPath: certificate.path) else {
            return LeafMaterial(state: .missing, certificatePath: certificate.path, keyPath: key.path)
        }
        let parsed: Certificate
        do {
            parsed = try PEMCodec.certificate(at: certificate)
        } catch {
            return LeafMaterial(state: .unreadable("\(error)"), certificatePath: certificate.path, keyPath: key.path)
        }
        guard FileManager.default.fileExists(atPath: key.path) else {
            return LeafMaterial(state: .present(parsed, nil), certificatePath: certificate.path, keyPath: key.path)
        }
        do {
            let privateKey = try PEMCodec.privateKey(at: key)
            return LeafMaterial(
                state: .present(parsed, privateKey), certificatePath: certificate.path, keyPath: key.path)
        } catch {
            return LeafMaterial(
                state: .present(parsed, nil), certificatePath: certificate.path, keyPath: key.path,
                keyError: "\(error)")
        }
    }

    public var certificate: Certificate? {
        if case .present(let certificate, _) = state { return certificate }
        return nil
    }

    public var privateKey: Certificate.PrivateKey? {
        if case .present(_, let key) = state { return key }
        return nil
    }

    /// The renewal reason for a missing or unreadable certificate.
    var problem: RenewalReason? {
        switch state {
        case .missing: return .missing(path: certificatePath)
        case .unreadable(let error): return .unreadable(path: certificatePath, error: error)
        case .present: return nil
        }
    }
}
