import Foundation

/// Persists `CARotation` as small, human-readable JSON (`ca/<kind>-rotation.json`), written atomically.
enum CARotationStore {
    static func load(_ kind: CAKind, layout: PKILayout) throws -> CARotation {
        let url = layout.rotationState(kind)
        guard let data = FileManager.default.contents(atPath: url.path) else { return CARotation(kind: kind) }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(CARotation.self, from: data)
        } catch {
            throw PKIError.rotation("rotation state \(url.path) is corrupt (\(error)); inspect or remove it")
        }
    }

    static func save(_ rotation: CARotation, layout: PKILayout) throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(rotation)
        try AtomicFileWriter.write(
            Array(data) + [0x0A], to: layout.rotationState(rotation.kind), mode: AtomicFileWriter.privateKeyMode,
            keepPrevious: false)
    }
}
