import Foundation

/// A private network of hosts, each a network namespace with one veth link into a bridge, so members run as
/// if on machines of their own and faults can be injected per link with `tc netem`.
///
/// Addresses are 10.`subnet`.`host` with the bridge (where the test's clients live) at .254. Everything is named
/// with a run-unique prefix and removed by `tearDown`, so parallel runs and crashed runs cannot collide.
public final class ChaosNetwork: @unchecked Sendable {
    public let prefix: String
    public let subnet: Int
    public let hosts: Int
    private var created = false

    public init(hosts: Int) {
        let id = UInt32.random(in: 0..<0xffff)
        prefix = "qc" + String(id, radix: 16)
        subnet = Int(id % 200) + 20
        self.hosts = hosts
    }

    var bridge: String { "\(prefix)br" }
    func namespace(_ host: Int) -> String { "\(prefix)h\(host)" }
    func hostLink(_ host: Int) -> String { "\(prefix)v\(host)" }
    public func address(_ host: Int) -> String { "10.\(subnet).0.\(host + 1)" }
    public var gatewayAddress: String { "10.\(subnet).0.254" }

    private func ip(_ args: String...) throws { try Shell.run(Shell.privileged + ["ip"] + args) }
    private func tc(inHost host: Int?, _ args: [String]) throws {
        if let host {
            try Shell.run(Shell.privileged + ["ip", "netns", "exec", namespace(host), "tc"] + args)
        } else {
            try Shell.run(Shell.privileged + ["tc"] + args)
        }
    }

    /// Creates the bridge and one namespace per host.
    public func setUp() throws {
        created = true
        try ip("link", "add", bridge, "type", "bridge")
        try ip("addr", "add", "\(gatewayAddress)/24", "dev", bridge)
        try ip("link", "set", bridge, "up")
        for h in 0..<hosts {
            try ip("netns", "add", namespace(h))
            try ip("link", "add", hostLink(h), "type", "veth", "peer", "name", "eth0", "netns", namespace(h))
            try ip("link", "set", hostLink(h), "master", bridge)
            try ip("link", "set", hostLink(h), "up")
            try ip("netns", "exec", namespace(h), "ip", "addr", "add", "\(address(h))/24", "dev", "eth0")
            try ip("netns", "exec", namespace(h), "ip", "link", "set", "eth0", "up")
            try ip("netns", "exec", namespace(h), "ip", "link", "set", "lo", "up")
        }
    }

    public func tearDown() {
        guard created else { return }
        for h in 0..<hosts {
            _ = try? Shell.run(Shell.privileged + ["ip", "netns", "del", namespace(h)], allowFailure: true)
            _ = try? Shell.run(Shell.privileged + ["ip", "link", "del", hostLink(h)], allowFailure: true)
        }
        _ = try? Shell.run(Shell.privileged + ["ip", "link", "del", bridge], allowFailure: true)
        created = false
    }

    deinit { tearDown() }

    /// The command prefix that runs a program inside a host.
    public func exec(host: Int) -> [String] { Shell.privileged + ["ip", "netns", "exec", namespace(host)] }

    // MARK: Faults

    /// What a host's links currently do to packets; every change rebuilds the qdiscs from this description.
    public struct LinkState: Equatable, Sendable {
        /// Hosts whose packets from this host are dropped (one direction: this host → them).
        public var dropsTo: Set<Int> = []
        /// Drop everything this host sends, and everything sent to it.
        public var isolated = false
        public var delayMilliseconds = 0
        public var lossPercent = 0

        public init() {}
    }

    private var states: [Int: LinkState] = [:]

    public func state(_ host: Int) -> LinkState { states[host] ?? LinkState() }

    /// Applies a link state to a host: egress filtering inside the host, and for isolation also the bridge
    /// side (traffic towards the host).
    public func apply(_ state: LinkState, to host: Int) throws {
        states[host] = state
        _ = try? Shell.run(
            Shell.privileged + ["ip", "netns", "exec", namespace(host), "tc", "qdisc", "del", "dev", "eth0", "root"],
            allowFailure: true)
        _ = try? Shell.run(Shell.privileged + ["tc", "qdisc", "del", "dev", hostLink(host), "root"], allowFailure: true)
        if state.isolated {
            try tc(inHost: host, ["qdisc", "add", "dev", "eth0", "root", "netem", "loss", "100%"])
            try tc(inHost: nil, ["qdisc", "add", "dev", hostLink(host), "root", "netem", "loss", "100%"])
            return
        }
        var netem: [String] = []
        if state.delayMilliseconds > 0 { netem += ["delay", "\(state.delayMilliseconds)ms", "\(state.delayMilliseconds / 2)ms"] }
        if state.lossPercent > 0 { netem += ["loss", "\(state.lossPercent)%"] }
        if state.dropsTo.isEmpty {
            if !netem.isEmpty { try tc(inHost: host, ["qdisc", "add", "dev", "eth0", "root", "netem"] + netem) }
            return
        }
        // A prio qdisc whose third band drops; filters send packets for the cut-off hosts there.
        try tc(inHost: host, ["qdisc", "add", "dev", "eth0", "root", "handle", "1:", "prio"])
        try tc(inHost: host, ["qdisc", "add", "dev", "eth0", "parent", "1:3", "handle", "30:", "netem", "loss", "100%"])
        if !netem.isEmpty {
            try tc(inHost: host, ["qdisc", "add", "dev", "eth0", "parent", "1:1", "handle", "10:", "netem"] + netem)
        }
        for target in state.dropsTo.sorted() {
            try tc(
                inHost: host,
                [
                    "filter", "add", "dev", "eth0", "parent", "1:0", "protocol", "ip", "prio", "1", "u32", "match", "ip",
                    "dst", "\(address(target))/32", "flowid", "1:3",
                ])
        }
    }

    public func healAll() throws {
        for h in 0..<hosts where states[h] != nil && states[h] != LinkState() { try apply(LinkState(), to: h) }
    }
}
