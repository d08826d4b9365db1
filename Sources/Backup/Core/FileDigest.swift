import Crypto
import Foundation

/// A file's length and SHA-256, computed by streaming it in `FileIO.chunkSize` pieces: snapshots can be gigabytes, and
/// the digest is what proves, on restore, that the bytes are the ones the leader wrote.
public struct FileDigest: Sendable, Equatable {
    public var size: Int64
    /// Lowercase hex.
    public var sha256: String

    public init(size: Int64, sha256: String) {
        self.size = size
        self.sha256 = sha256
    }

    /// Reads the whole file once. Checks for task cancellation between chunks.
    public static func compute(file: URL) throws -> FileDigest {
        let reader = try FileReader(path: file.path)
        var hasher = SHA256()
        var size: Int64 = 0
        var buffer = [UInt8](repeating: 0, count: FileIO.chunkSize)
        while true {
            try Task.checkCancellation()
            let n = try reader.read(into: &buffer)
            if n == 0 { break }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            size += Int64(n)
        }
        return FileDigest(size: size, sha256: hasher.finalize().hexString)
    }
}

extension Sequence where Element == UInt8 {
    /// Lowercase hex, as the manifest, S3 and `sha256sum` spell digests.
    var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in self {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension SHA256Digest {
    var hexString: String { Array(self).hexString }
}
