import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `quorum gateway start`, etcd's L4 gateway, on real processes: etcdctl through it, an endpoint that refuses
/// connections left out and taken back after `--retry-delay`, endpoints from DNS SRV records, and etcd's refusals.
@Suite(.ownThread) struct TCPGatewayTests {
    @Test func etcdctlWorksThroughTheGatewayAndDeadEndpointsAreSkipped() throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(in: scratch)
        try member.start()
        defer { member.stop() }
        // Nothing listens on `dead` yet: round robin picks it first, so the first connection skips it.
        let dead = freePort()
        let listen = freePort()
        let gateway = try BackgroundCommand(
            Paths.quorum,
            [
                "gateway", "--endpoints=http://127.0.0.1:\(dead),127.0.0.1:\(member.clientPort)", "start",
                "--listen-addr", "127.0.0.1:\(listen)", "--retry-delay", "300ms",
            ])
        defer { gateway.stop() }
        try gateway.waitFor { $0.contains("ready to proxy client requests") }
        #expect(
            gateway.output.contains("127.0.0.1:\(dead)") && gateway.output.contains("127.0.0.1:\(member.clientPort)"))
        let through = "127.0.0.1:\(listen)"
        #expect(try etcdctl(through, ["put", "foo", "bar"]).stdout == "OK\n")
        #expect(try etcdctl(through, ["get", "foo", "--print-value-only"]).stdout == "bar\n")
        try gateway.waitFor { $0.contains("deactivated endpoint") && $0.contains("\"address\":\"127.0.0.1:\(dead)\"") }
        #expect(gateway.output.contains(#""interval":"300ms""#))
        // A watch is a long-lived stream through the same byte pipe.
        let watch = try etcdctlInBackground(through, ["watch", "foo"])
        defer { watch.stop() }
        // Put until the watch (whose start etcdctl does not announce) reports it.
        try watch.waitFor { output in
            if output.contains("PUT\nfoo\nbaz") { return true }
            _ = try? etcdctl(through, ["put", "foo", "baz"])
            return false
        }
        // Every 300 ms the gateway tries the dead endpoint again; once something listens there, it is taken back.
        try gateway.waitFor { $0.contains("failed to activate endpoint") }
        let revived = QuorumProcess(in: scratch, name: "m2", clientPort: dead)
        try revived.start()
        defer { revived.stop() }
        try gateway.waitFor { $0.contains(#""msg":"activated""#) && $0.contains("127.0.0.1:\(dead)") }
        // Round robin now alternates between the two (separate) clusters.
        let values = try (0..<4).map { _ in try etcdctl(through, ["get", "foo", "--print-value-only"]).stdout }
        #expect(Set(values) == ["baz\n", ""], "\(values)")
    }

    @Test func endpointsFromSRVRecords() throws {
        let scratch = TemporaryDirectory()
        let member = QuorumProcess(in: scratch)
        try member.start()
        defer { member.stop() }
        let dns = DiscoverySRVTests.OneRecordDNS(
            name: "_etcd-client._tcp.gw.test", target: "127.0.0.1", targetPort: member.clientPort)
        let listen = freePort()
        let gateway = try BackgroundCommand(
            Paths.quorum,
            [
                "gateway", "start", "--discovery-srv=gw.test", "--insecure-discovery",
                "--listen-addr=127.0.0.1:\(listen)",
            ],
            environment: ["QUORUM_DNS_SERVER": "127.0.0.1:\(dns.port)"])
        defer { gateway.stop() }
        try gateway.waitFor { $0.contains("ready to proxy client requests") }
        #expect(gateway.output.contains("discovered cluster from SRV"))
        #expect(try etcdctl("127.0.0.1:\(listen)", ["put", "k", "v"]).stdout == "OK\n")
        #expect(try etcdctl(member.endpoint, ["get", "k", "--print-value-only"]).stdout == "v\n")
    }

    @Test func refusalsAreEtcds() throws {
        let unknown = try run(Paths.quorum, ["gateway", "start", "--nope"])
        #expect(unknown.status == 1 && unknown.stderr == "Error: unknown flag: --nope\n", "\(unknown)")
        let port = freePort()
        // An endpoint that is the gateway's own address would loop.
        let loop = try run(
            Paths.quorum, ["gateway", "start", "--listen-addr=127.0.0.1:\(port)", "--endpoints=127.0.0.1:\(port)"])
        #expect(loop.status == 1 && loop.stderr.contains("should not resolve to the gateway listen addr"), "\(loop)")
    }
}
