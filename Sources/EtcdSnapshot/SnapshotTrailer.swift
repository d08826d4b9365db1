import Crypto
import Foundation

/// The sha256 that `etcdctl snapshot save` expects after the database: etcd streams the bbolt file and then the
/// sha256 of everything it sent. etcd tells a snapshot with a trailer from a raw database by size alone: the size
/// modulo 512 is 32 (bbolt files are whole pages, and pages are multiples of 512 bytes).
public enum SnapshotTrailer {
    public static let size = 32

    /// etcd's `hasChecksum`.
    public static func isPresent(fileSize: Int64) -> Bool { fileSize % 512 == Int64(size) }

    /// The sha256 of the first `length` bytes of the file, read in fixed-size chunks.
    static func sha256(of path: String, length: Int64) throws(EtcdSnapshotError) -> [UInt8] {
        do {
            let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            var hasher = SHA256()
            var remaining = length
            while remaining > 0 {
                let chunk = try handle.read(upToCount: Int(min(remaining, 1 << 20))) ?? Data()
                guard !chunk.isEmpty else {
                    throw EtcdSnapshotError(
                        .io, path: path, "the file ended while hashing, \(remaining) bytes short",
                        offset: length - remaining)
                }
                hasher.update(data: chunk)
                remaining -= Int64(chunk.count)
            }
            return Array(hasher.finalize())
        } catch let error as EtcdSnapshotError {
            throw error
        } catch {
            throw EtcdSnapshotError(.io, path: path, "cannot read to hash: \(error)")
        }
    }

    /// The last 32 bytes of the file.
    static func stored(in path: String, fileSize: Int64) throws(EtcdSnapshotError) -> [UInt8] {
        do {
            let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            try handle.seek(toOffset: UInt64(fileSize - Int64(size)))
            let bytes = Array(try handle.read(upToCount: size) ?? Data())
            guard bytes.count == size else {
                throw EtcdSnapshotError(.io, path: path, "cannot read the sha256 trailer", offset: fileSize - 32)
            }
            return bytes
        } catch let error as EtcdSnapshotError {
            throw error
        } catch {
            throw EtcdSnapshotError(.io, path: path, "cannot read the sha256 trailer: \(error)")
        }
    }

    /// Hashes the whole file and appends the hash; returns it.
    static func append(to path: String, durable: Bool = true) throws(EtcdSnapshotError) -> [UInt8] {
        let length: Int64
        do {
            length = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value ?? 0
        } catch {
            throw EtcdSnapshotError(.io, path: path, "cannot stat: \(error)")
        }
        let digest = try sha256(of: path, length: length)
        do {
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            try handle.seek(toOffset: UInt64(length))
            try handle.write(contentsOf: digest)
            if durable { try handle.synchronize() }
        } catch {
            throw EtcdSnapshotError(.io, path: path, "cannot append the sha256 trailer: \(error)", offset: length)
        }
        return digest
    }
}
