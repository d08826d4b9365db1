import EtcdProto
import Foundation
import GRPCProxy
import Testing

@Suite struct RangeCacheTests {
    func get(_ key: String, end: String = "", revision: Int64 = 0) -> Etcdserverpb_RangeRequest {
        var request = Etcdserverpb_RangeRequest()
        request.key = Data(key.utf8)
        request.rangeEnd = Data(end.utf8)
        request.revision = revision
        request.serializable = true
        return request
    }

    func answer(_ count: Int64) -> Etcdserverpb_RangeResponse {
        var response = Etcdserverpb_RangeResponse()
        response.count = count
        return response
    }

    @Test func writesInvalidateOverlappingReads() {
        var cache = RangeCache()
        cache.add(get("a"), answer(1))
        cache.add(get("b", end: "d"), answer(2))
        cache.add(get("\0", end: "\0"), answer(3))
        cache.add(get("x"), answer(4))
        #expect(cache.get(get("a")) == .hit(answer(1)))
        // A linearizable read is keyed as the serializable one it also answers.
        var linearizable = get("x")
        linearizable.serializable = false
        #expect(cache.get(linearizable) == .hit(answer(4)))
        cache.invalidate(key: Data("c".utf8))
        #expect(cache.get(get("b", end: "d")) == .miss)
        #expect(cache.get(get("\0", end: "\0")) == .miss)
        #expect(cache.get(get("a")) == .hit(answer(1)))
        cache.invalidate(key: Data("a".utf8), end: Data("b".utf8))
        #expect(cache.get(get("a")) == .miss)
        #expect(cache.get(get("x")) == .hit(answer(4)))
    }

    @Test func compactedRevisionsAndEviction() {
        var cache = RangeCache(maxEntries: 2)
        cache.add(get("k", revision: 5), answer(1))
        cache.compact(10)
        #expect(cache.get(get("k", revision: 5)) == .compacted)
        cache.add(get("a"), answer(1))
        cache.add(get("b"), answer(2))
        _ = cache.get(get("a"))
        cache.add(get("c"), answer(3))
        // The least recently used ("b") went.
        #expect(cache.count == 2)
        #expect(cache.get(get("b")) == .miss)
        #expect(cache.get(get("a")) == .hit(answer(1)))
    }
}
