import EtcdProto
import Foundation
import GRPCProxy
import Testing

@Suite struct KeyNamespaceTests {
    @Test func prefixesAndStripsAsClientv3Namespace() {
        let ns = KeyNamespace("app/")
        #expect(ns.interval(key: Data("k".utf8), end: Data()) == (Data("app/k".utf8), Data()))
        #expect(ns.interval(key: Data("a".utf8), end: Data("b".utf8)) == (Data("app/a".utf8), Data("app/b".utf8)))
        // "From the key on" stays inside the namespace.
        #expect(ns.interval(key: Data("a".utf8), end: Data([0])) == (Data("app/a".utf8), Data("app0".utf8)))
        var response = Etcdserverpb_RangeResponse()
        var kv = Mvccpb_KeyValue()
        kv.key = Data("app/k".utf8)
        response.kvs = [kv]
        #expect(ns.range(response).kvs.first?.key == Data("k".utf8))
        var ttl = Etcdserverpb_LeaseTimeToLiveResponse()
        ttl.keys = [Data("app/x".utf8), Data("other".utf8)]
        #expect(ns.timeToLive(ttl).keys == [Data("x".utf8)])
    }
}
