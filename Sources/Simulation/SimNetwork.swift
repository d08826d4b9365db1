import Raft

/// A directed link between two members.
public struct Link: Hashable, Sendable, Comparable {
    public var from: NodeID
    public var to: NodeID
    public init(from: NodeID, to: NodeID) {
        self.from = from
        self.to = to
    }
    public static func < (a: Link, b: Link) -> Bool { (a.from, a.to) < (b.from, b.to) }
}

/// The network as the simulator sees it: it decides the fate of every message (when it arrives, whether it
/// is lost or duplicated) and which links are cut. Implementations must draw randomness only from the
/// `SimRandom` they are given, so runs stay reproducible.
public protocol SimNetwork {
    /// Delivery times of one message sent at `now`: empty when it is lost, two entries when duplicated.
    mutating func route(from: NodeID, to: NodeID, now: SimTime, rng: inout SimRandom) -> [SimTime]
    /// Whether a message in flight on the link may still be delivered (links can be cut while it travels).
    func isConnected(from: NodeID, to: NodeID) -> Bool
    /// Cuts every link between members of different groups (members in no group keep their links).
    mutating func partition(_ groups: [[NodeID]])
    /// Cuts one direction of one link.
    mutating func cut(_ link: Link)
    /// Restores every link.
    mutating func heal()
}

/// Fault knobs of `FaultyNetwork`.
public struct NetworkFaults: Sendable {
    public var minDelay: SimTime = .ms(1)
    public var maxDelay: SimTime = .ms(8)
    /// Probability that a message takes up to `slowDelay` instead, which reorders it behind later ones.
    public var slowRate: Double = 0.02
    public var slowDelay: SimTime = .ms(120)
    public var dropRate: Double = 0
    public var duplicateRate: Double = 0
    public init() {}
}

/// An unreliable network: random delay (hence reordering), loss, duplication, partitions and one-way links.
public struct FaultyNetwork: SimNetwork, Sendable {
    public var faults: NetworkFaults
    public private(set) var cutLinks: Set<Link> = []

    public init(faults: NetworkFaults = NetworkFaults()) { self.faults = faults }

    public mutating func route(from: NodeID, to: NodeID, now: SimTime, rng: inout SimRandom) -> [SimTime] {
        if cutLinks.contains(Link(from: from, to: to)) { return [] }
        if faults.dropRate > 0 && rng.chance(faults.dropRate) { return [] }
        var times: [SimTime] = [now + delay(&rng)]
        if faults.duplicateRate > 0 && rng.chance(faults.duplicateRate) { times.append(now + delay(&rng)) }
        return times
    }

    private func delay(_ rng: inout SimRandom) -> SimTime {
        if faults.slowRate > 0 && rng.chance(faults.slowRate) {
            return rng.int(in: faults.minDelay...faults.slowDelay)
        }
        return rng.int(in: faults.minDelay...faults.maxDelay)
    }

    public func isConnected(from: NodeID, to: NodeID) -> Bool { !cutLinks.contains(Link(from: from, to: to)) }

    public mutating func partition(_ groups: [[NodeID]]) {
        for (gi, g) in groups.enumerated() {
            for (hi, h) in groups.enumerated() where gi != hi {
                for a in g {
                    for b in h { cutLinks.insert(Link(from: a, to: b)) }
                }
            }
        }
    }

    public mutating func cut(_ link: Link) { cutLinks.insert(link) }

    public mutating func heal() { cutLinks.removeAll() }
}
