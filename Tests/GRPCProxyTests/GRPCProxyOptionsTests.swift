import GRPCProxy
import Testing

@Suite struct GRPCProxyOptionsTests {
    @Test func etcdsFlagsAndRefusals() throws {
        let options = try GRPCProxyOptions.parse([
            "start", "--endpoints=a:1,b:2", "--listen-addr", "127.0.0.1:5", "--namespace=ns/", "--debug",
            "--grpc-keepalive-min-time=10s", "--listen-cipher-suites", "TLS_X",
        ])
        #expect(options.endpoints == ["a:1", "b:2"] && options.listenAddress == "127.0.0.1:5")
        #expect(options.namespace == "ns/" && options.debug && options.keepaliveMinTime == .seconds(10))
        #expect(options.notices.contains { $0.contains("--listen-cipher-suites") })
        #expect(throws: GRPCProxyError.self) { try GRPCProxyOptions.parse(["start", "--nope"]) }
        do {
            _ = try GRPCProxyOptions.parse(["start", "--resolver-prefix=x"])
            Issue.record("accepted a prefix without a TTL")
        } catch {
            #expect(error.description == "invalid resolver-ttl 0")
        }
        do {
            _ = try GRPCProxyOptions.parse(["start", "--nope"])
        } catch {
            #expect(error.description == "unknown flag: --nope")
        }
    }
}
