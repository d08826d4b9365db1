/// CRC-32C (Castagnoli), the checksum `etcdctl snapshot status` reports as the snapshot's hash. Table-driven,
/// eight bytes per step; values match Go's `crc32.New(crc32.MakeTable(crc32.Castagnoli))`.
struct CRC32C {
    private static let tables: [[UInt32]] = {
        var tables = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
        for i in 0..<256 {
            var crc = UInt32(i)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            tables[0][i] = crc
        }
        for i in 0..<256 {
            for t in 1..<8 { tables[t][i] = (tables[t - 1][i] >> 8) ^ tables[0][Int(tables[t - 1][i] & 0xFF)] }
        }
        return tables
    }()

    private var state: UInt32 = 0xFFFF_FFFF

    var value: UInt32 { ~state }

    mutating func update(_ bytes: [UInt8]) {
        var crc = state
        CRC32C.tables.withUnsafeBufferPointer { tables in
            let t = (0..<8).map { tables[$0] }
            bytes.withUnsafeBufferPointer { buffer in
                var i = 0
                let n = buffer.count
                while n - i >= 8 {
                    let lo =
                        crc
                        ^ (UInt32(buffer[i]) | UInt32(buffer[i + 1]) << 8 | UInt32(buffer[i + 2]) << 16
                            | UInt32(buffer[i + 3]) << 24)
                    crc =
                        t[7][Int(lo & 0xFF)] ^ t[6][Int((lo >> 8) & 0xFF)] ^ t[5][Int((lo >> 16) & 0xFF)]
                        ^ t[4][Int(lo >> 24)] ^ t[3][Int(buffer[i + 4])] ^ t[2][Int(buffer[i + 5])]
                        ^ t[1][Int(buffer[i + 6])] ^ t[0][Int(buffer[i + 7])]
                    i += 8
                }
                while i < n {
                    crc = t[0][Int((crc ^ UInt32(buffer[i])) & 0xFF)] ^ (crc >> 8)
                    i += 1
                }
            }
        }
        state = crc
    }
}
