/// Where an auto-vacuum SQLite file records each page's pointer-map entry, and what the entry says: which page points
/// at it. An incremental vacuum reads this to move a live page from the end of the file (it must rewrite the pointer
/// in the parent), so its read-ahead does too (`TailPrefetch`).
///
/// The format is SQLite's (fileformat2.html, "Pointer Map or Ptrmap Pages"): page 2 is the first map page, and a map
/// page follows every `period` pages, each holding a 5-byte entry (a type, then the parent's page number, big-endian)
/// for every page up to the next map page. The page holding the byte at offset 1 GiB (SQLite's lock byte) is never
/// used; a map page that would fall on it is the page after.
public struct PointerMapLayout: Equatable, Sendable {
    public let pageSize: Int
    /// Pages from one map page to the next: one entry of 5 bytes per page, plus the map page itself.
    public let period: Int

    /// `reservedBytes`: the header's byte 20, the bytes at the end of each page that extensions keep.
    public init(pageSize: Int, reservedBytes: Int) {
        self.pageSize = pageSize
        self.period = (pageSize - reservedBytes) / 5 + 1
    }

    /// The page holding the lock byte at 1 GiB: never used, never mapped.
    public var lockBytePage: Int { 0x4000_0000 / pageSize + 1 }

    /// The map page holding `page`'s entry.
    public func mapPage(for page: Int) -> Int {
        let map = (page - 2) / period * period + 2
        return map == lockBytePage ? map + 1 : map
    }

    /// Map pages and the lock-byte page have no entry of their own and are never moved.
    public func hasEntry(_ page: Int) -> Bool {
        page > 2 && page != lockBytePage && mapPage(for: page) != page
    }

    /// Where in its map page `page`'s entry starts.
    public func entryOffset(for page: Int) -> Int { 5 * (page - mapPage(for: page) - 1) }
}

/// One pointer-map entry.
public struct PointerMapEntry: Equatable, Sendable {
    public enum Kind: UInt8, Sendable {
        /// A table's or index's root: no parent.
        case root = 1
        case free = 2
        /// The first overflow page of a cell: the parent is the b-tree page holding the cell.
        case firstOverflow = 3
        /// A later overflow page: the parent is the overflow page before it.
        case laterOverflow = 4
        /// A b-tree page below the root: the parent is the page above it.
        case btree = 5
    }

    public var kind: Kind
    /// The page whose pointer must change when this page moves; 0 for none.
    public var parent: Int

    public init(kind: Kind, parent: Int) {
        self.kind = kind
        self.parent = parent
    }

    /// Decodes 5 bytes at `offset` of a map page; nil for a type SQLite does not write (an unused or damaged entry).
    public init?(_ map: [UInt8], at offset: Int) {
        guard offset >= 0, offset + 5 <= map.count, let kind = Kind(rawValue: map[offset]) else { return nil }
        self.kind = kind
        self.parent = SQLiteFileHeader.bigEndian32(map, at: offset + 1)
    }

    /// The pages SQLite reads to move this page: the page itself and the one holding its pointer. A free page is
    /// only taken off the free list, whose trunks `FreeListPrefetch` has read; a root is never moved by a vacuum
    /// (auto-vacuum keeps roots at the front of the file).
    public func pagesReadToMove(_ page: Int) -> [Int] {
        switch kind {
        case .free, .root: []
        case .firstOverflow, .laterOverflow, .btree: parent > 0 ? [page, parent] : [page]
        }
    }
}
