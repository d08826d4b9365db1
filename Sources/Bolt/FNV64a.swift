/// FNV-1a, 64 bits: the hash bbolt stores in each meta page to detect torn or corrupt writes.
struct FNV64a {
    private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325

    mutating func update(_ bytes: some Sequence<UInt8>) {
        for byte in bytes {
            value ^= UInt64(byte)
            value &*= 0x0000_0100_0000_01B3
        }
    }

    static func hash(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var h = FNV64a()
        h.update(bytes)
        return h.value
    }
}
