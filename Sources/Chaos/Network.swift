import Foundation
import Synchronization

/// A private network of hosts, each a network namespace with one veth link into a bridge, so members run as
/// if on machines of their own and faults can be injected per link with `tc netem`.
///
/// Addresses are 10.`subnet`.0.`host + 1` with the bridge (where the test's clients live) at .254. Everything is named
/// with a run-unique prefix and removed by `tearDown`, and each network takes a subnet no other one holds (see
/// `allocateSubnet`), so parallel runs and crashed runs cannot collide.
public final class ChaosNetwork: @unchecked Sendable {
    public let prefix: String
    public let subnet: Int
    public let hosts: Int
    private var created = false

    public init(hosts: Int) {
        let id = UInt32.random(in: 0..<0xffff)
        prefix = "qc" + String(id, radix: 16)
        subnet = Self.allocateSubnet()
        self.hosts = hosts
    }

    /// Subnets held by this process's networks.
    private static let subnetsHeld = Mutex<Set<Int>>([])

    /// A subnet (10.N.0.0/24, N in 20..<220) that neither another network of this process nor an interface of the
    /// machine (another process's run, a crashed run's leftovers) has. Two bridges on one subnet make the host's route
    /// to it ambiguous: a test's clients then reach the other run's members, or none (a CI run with three suites'
    /// networks up at once waited 30 s for a leader it could not see, when subnets were drawn at random).
    static func allocateSubnet() -> Int {
        let addresses = (try? Shell.run(["ip", "-4", "-o", "addr", "show"], allowFailure: true)) ?? ""
        let onInterfaces = Set(
            addresses.split(separator: " ").compactMap { word -> Int? in
                let parts = word.split(separator: ".")
                guard parts.count == 4, parts[0] == "10" else { return nil }
                return Int(parts[1])
            })
        return subnetsHeld.withLock { held in
            let free = (20..<220).filter { !held.contains($0) && !onInterfaces.contains($0) }
            let subnet = free.randomElement() ?? Int.random(in: 20..<220)
            held.insert(subnet)
            return subnet
        }
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

    deinit {
        tearDown()
        _ = Self.subnetsHeld.withLock { $0.remove(subnet) }
    }

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

    /// Applies a link state to a host. Cuts need nothing beyond the core kernel, so they work everywhere network
    /// namespaces do: isolation takes the host's bridge port down (nothing in or out), a cut towards other hosts is
    /// a blackhole route for each of them inside the host (its packets to them vanish; the connections between
    /// them break in both directions, as TCP needs both). Delay and loss need `tc netem`, which not every kernel
    /// has (`netemAvailable`); asking for them without it throws.
    public func apply(_ state: LinkState, to host: Int) throws {
        let previous = states[host] ?? LinkState()
        states[host] = state
        if previous.isolated != state.isolated {
            try ip("link", "set", hostLink(host), state.isolated ? "down" : "up")
        }
        for target in previous.dropsTo.subtracting(state.dropsTo) {
            try Shell.run(exec(host: host) + ["ip", "route", "del", "blackhole", "\(address(target))/32"])
        }
        for target in state.dropsTo.subtracting(previous.dropsTo) {
            try Shell.run(exec(host: host) + ["ip", "route", "add", "blackhole", "\(address(target))/32"])
        }
        let hadNetem = previous.delayMilliseconds > 0 || previous.lossPercent > 0
        if hadNetem {
            _ = try? Shell.run(exec(host: host) + ["tc", "qdisc", "del", "dev", "eth0", "root"], allowFailure: true)
        }
        var netem: [String] = []
        if state.delayMilliseconds > 0 {
            netem += ["delay", "\(state.delayMilliseconds)ms", "\(state.delayMilliseconds / 2)ms"]
        }
        if state.lossPercent > 0 { netem += ["loss", "\(state.lossPercent)%"] }
        if !netem.isEmpty { try tc(inHost: host, ["qdisc", "add", "dev", "eth0", "root", "netem"] + netem) }
    }

    /// Whether this kernel has `tc netem` (delay and loss); Firecracker-style kernels without modules do not.
    public static let netemAvailable: Bool = {
        let probe = "qcnetem\(UInt16.random(in: 0...UInt16.max))"
        guard (try? Shell.run(Shell.privileged + ["ip", "netns", "add", probe])) != nil else { return false }
        defer { _ = try? Shell.run(Shell.privileged + ["ip", "netns", "del", probe], allowFailure: true) }
        let ok =
            (try? Shell.run(
                Shell.privileged + [
                    "ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                    "delay", "1ms",
                ])) != nil
        return ok
    }()

    public func healAll() throws {
        for h in 0..<hosts where states[h] != nil && states[h] != LinkState() { try apply(LinkState(), to: h) }
    }
}
