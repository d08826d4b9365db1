#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Little-endian integer access to byte arrays, with the caller responsible for bounds (checked by the array).
extension Array where Element == UInt8 {
    @inline(__always)
    func loadLE<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= count)
        return withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }

    @inline(__always)
    mutating func storeLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= count)
        withUnsafeMutableBytes { $0.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self) }
    }

    @inline(__always)
    mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}

/// Orders byte strings the way bbolt does (`bytes.Compare`): lexicographically by unsigned byte.
@inline(__always)
func byteOrder(_ a: [UInt8], _ b: [UInt8]) -> Int {
    let n = Swift.min(a.count, b.count)
    let c = a.withUnsafeBufferPointer { pa in
        b.withUnsafeBufferPointer { pb -> Int32 in
            guard n > 0, let x = pa.baseAddress, let y = pb.baseAddress else { return 0 }
            return memcmp(x, y, n)
        }
    }
    if c != 0 { return c < 0 ? -1 : 1 }
    return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
}

/// A byte string for messages: printable ASCII as is, anything else as hex.
func printable(_ bytes: [UInt8], limit: Int = 48) -> String {
    let shown = bytes.prefix(limit)
    let suffix = bytes.count > limit ? "…(\(bytes.count) bytes)" : ""
    if shown.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) {
        return "\"" + String(decoding: shown, as: UTF8.self) + "\"" + suffix
    }
    return "0x" + shown.map { String($0, radix: 16).leftPadded(2) }.joined() + suffix
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
