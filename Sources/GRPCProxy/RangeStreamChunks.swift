import EtcdProto

/// The proxy's RangeStream: a unary Range answer cut into etcd 3.7's chunk layout, so that clients of the proxy get
/// the same stream shape as from a member (header first, then key-values, `more` and `count` in the last chunk).
/// The proxy falls back to unary Range upstream, as etcd's proxy does, so it holds the whole answer; the members
/// serve RangeStream in bounded memory themselves.
enum RangeStreamChunks {
    /// Bytes of keys and values per chunk.
    static let chunkBytes = 1 << 20

    /// The member's refusal of a sorted RangeStream, word for word.
    static let sortRefused =
        "etcdserver: RangeStream does not support sort order other than ascending by key; use Range"

    /// Whether the request is answered in key order (the only order RangeStream serves).
    static func sortsByKey(_ r: Etcdserverpb_RangeRequest) -> Bool {
        switch (r.sortOrder, r.sortTarget) {
        case (.none, .key), (.ascend, .key): return true
        default: return false
        }
    }

    static func split(_ response: Etcdserverpb_RangeResponse) -> [Etcdserverpb_RangeStreamResponse] {
        var header = response.header
        let revision = header.revision
        header.revision = 0
        var first = Etcdserverpb_RangeStreamResponse()
        first.rangeResponse.header = header
        var chunks = [first]
        var current = Etcdserverpb_RangeResponse()
        current.header.revision = revision
        var bytes = 0
        for kv in response.kvs {
            if bytes >= chunkBytes {
                var chunk = Etcdserverpb_RangeStreamResponse()
                chunk.rangeResponse = current
                chunks.append(chunk)
                current = Etcdserverpb_RangeResponse()
                bytes = 0
            }
            current.kvs.append(kv)
            bytes += kv.key.count + kv.value.count + 16
        }
        current.more = response.more
        current.count = response.count
        var last = Etcdserverpb_RangeStreamResponse()
        last.rangeResponse = current
        chunks.append(last)
        return chunks
    }
}
