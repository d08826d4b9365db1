/// The elements of one leaf or branch page while they are collected, before the page is encoded and written.
///
/// Keys and values go into one contiguous byte buffer and the element headers are produced at encoding time,
/// because an element's `pos` field depends on how many elements the page ends up with.
struct PageAccumulator {
    let isLeaf: Bool
    private(set) var count = 0
    private(set) var firstKey: [UInt8] = []
    /// Per element: leaf flags (leaves) or child page id (branches).
    private var tags: [UInt64] = []
    private var keySizes: [UInt32] = []
    private var valueSizes: [UInt32] = []
    private var data: [UInt8] = []

    init(isLeaf: Bool, pageSize: Int) {
        self.isLeaf = isLeaf
        data.reserveCapacity(pageSize)
    }

    /// The child of a branch page that holds exactly one.
    var onlyChild: UInt64? { !isLeaf && count == 1 ? tags[0] : nil }

    /// The encoded size: header, element headers, keys and values.
    var byteSize: Int { BoltFormat.pageHeaderSize + count * BoltFormat.elementSize + data.count }

    static func elementByteSize(key: [UInt8], value: [UInt8]) -> Int {
        BoltFormat.elementSize + key.count + value.count
    }

    mutating func appendLeaf(key: [UInt8], value: [UInt8], flags: UInt32) {
        if count == 0 { firstKey = key }
        tags.append(UInt64(flags))
        keySizes.append(UInt32(key.count))
        valueSizes.append(UInt32(value.count))
        data.append(contentsOf: key)
        data.append(contentsOf: value)
        count += 1
    }

    mutating func appendBranch(key: [UInt8], child: UInt64) {
        if count == 0 { firstKey = key }
        tags.append(child)
        keySizes.append(UInt32(key.count))
        valueSizes.append(0)
        data.append(contentsOf: key)
        count += 1
    }

    mutating func removeAll() {
        count = 0
        firstKey = []
        tags.removeAll(keepingCapacity: true)
        keySizes.removeAll(keepingCapacity: true)
        valueSizes.removeAll(keepingCapacity: true)
        data.removeAll(keepingCapacity: true)
    }

    /// The page bytes, padded to whole pages: the header (with `id` and the overflow count), the element headers,
    /// then keys and values in element order. Returns the bytes and the number of pages they span.
    func encode(id: UInt64, pageSize: Int, padded: Bool = true) -> (bytes: [UInt8], pages: Int) {
        let size = byteSize
        let pages = (size + pageSize - 1) / pageSize
        var page = [UInt8](repeating: 0, count: padded ? pages * pageSize : size)
        page.storeLE(id, at: 0)
        page.storeLE(isLeaf ? BoltPageFlags.leaf.rawValue : BoltPageFlags.branch.rawValue, at: 8)
        page.storeLE(UInt16(count), at: 10)
        page.storeLE(UInt32(padded ? pages - 1 : 0), at: 12)
        var dataOffset = BoltFormat.pageHeaderSize + count * BoltFormat.elementSize
        for i in 0..<count {
            let element = BoltFormat.pageHeaderSize + i * BoltFormat.elementSize
            let pos = UInt32(dataOffset - element)
            if isLeaf {
                page.storeLE(UInt32(truncatingIfNeeded: tags[i]), at: element)
                page.storeLE(pos, at: element + 4)
                page.storeLE(keySizes[i], at: element + 8)
                page.storeLE(valueSizes[i], at: element + 12)
            } else {
                page.storeLE(pos, at: element)
                page.storeLE(keySizes[i], at: element + 4)
                page.storeLE(tags[i], at: element + 8)
            }
            dataOffset += Int(keySizes[i]) + Int(valueSizes[i])
        }
        let start = BoltFormat.pageHeaderSize + count * BoltFormat.elementSize
        page.withUnsafeMutableBytes { out in
            data.withUnsafeBytes { src in
                if let source = src.baseAddress, let destination = out.baseAddress, src.count > 0 {
                    (destination + start).copyMemory(from: source, byteCount: src.count)
                }
            }
        }
        return (page, pages)
    }
}
