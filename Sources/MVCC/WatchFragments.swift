import EtcdProto

extension Etcdserverpb_WatchResponse {
    /// etcd's `sendFragments`: a response for a watcher created with `fragment` whose serialized size reaches
    /// `limit` (and has more than one event) is split into consecutive responses of the same header and watch id,
    /// each below `limit` (or holding a single event), every one but the last with `fragment` set; clientv3 joins
    /// them back into one response. Anything else is returned as it is.
    public func fragments(limit: Int) -> [Etcdserverpb_WatchResponse] {
        guard events.count > 1 else { return [self] }
        // Sizes without serializing the whole response more than once: the response without events (with
        // `fragment` set, as each fragment is measured) plus each event as a length-delimited field 11.
        var shell = self
        shell.events = []
        shell.fragment = true
        let base = (try? shell.serializedBytes() as [UInt8])?.count ?? 0
        let sizes = events.map { event -> Int in
            let body = (try? event.serializedBytes() as [UInt8])?.count ?? 0
            return 1 + Self.varintSize(body) + body
        }
        // The whole response is measured without the fragment field (2 bytes), as etcd measures it unsplit.
        if base - 2 + sizes.reduce(0, +) < limit { return [self] }
        var pieces: [Etcdserverpb_WatchResponse] = []
        var index = 0
        while index < events.count {
            var piece = shell
            var size = base
            let start = index
            while index < events.count {
                // An event that brings the piece to the limit goes to the next one, unless it is the piece's first.
                if index > start && size + sizes[index] >= limit { break }
                size += sizes[index]
                index += 1
            }
            piece.events = Array(events[start..<index])
            piece.fragment = index < events.count
            pieces.append(piece)
        }
        return pieces
    }

    private static func varintSize(_ value: Int) -> Int {
        var value = UInt64(value)
        var size = 1
        while value >= 0x80 {
            value >>= 7
            size += 1
        }
        return size
    }
}
