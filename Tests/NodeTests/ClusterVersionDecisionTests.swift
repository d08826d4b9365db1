import EtcdProto
import Testing

@testable import Node

/// The leader's cluster-version decision (etcd's monitorVersions and monitorDowngrade).
@Suite struct ClusterVersionDecisionTests {
    func values(_ cluster: String?, _ members: [UInt64: String], downgrade: String? = nil)
        -> ClusterVersionState.Values
    {
        var v = ClusterVersionState.Values()
        v.clusterVersion = cluster
        v.memberVersions = members
        if let downgrade {
            v.downgrade.enabled = true
            v.downgrade.targetVersion = downgrade
        }
        return v
    }

    @Test func lowestMemberVersionOnceEveryMemberReported() {
        #expect(ClusterVersionDecision.decide(values(nil, [1: "3.5.13", 2: "3.4.23"]), members: [1, 2, 3]) == nil)
        #expect(
            ClusterVersionDecision.decide(values(nil, [1: "3.5.13", 2: "3.4.23", 3: "3.5.0"]), members: [1, 2, 3])
                == .setClusterVersion("3.4.0"))
        // Removed members no longer count.
        #expect(
            ClusterVersionDecision.decide(values(nil, [1: "3.5.13", 2: "3.4.23"]), members: [1])
                == .setClusterVersion("3.5.0"))
    }

    @Test func raisedAsMembersUpgradeNeverLoweredWithoutDowngrade() {
        #expect(
            ClusterVersionDecision.decide(values("3.4.0", [1: "3.5.13", 2: "3.5.1"]), members: [1, 2])
                == .setClusterVersion("3.5.0"))
        #expect(ClusterVersionDecision.decide(values("3.5.0", [1: "3.5.13", 2: "3.5.1"]), members: [1, 2]) == nil)
        #expect(ClusterVersionDecision.decide(values("3.5.0", [1: "3.5.13", 2: "3.4.2"]), members: [1, 2]) == nil)
    }

    @Test func downgradeLowersByOneMinorAndFinishesWhenAllRunTheTarget() {
        #expect(
            ClusterVersionDecision.decide(
                values("3.5.0", [1: "3.5.13", 2: "3.4.2"], downgrade: "3.4.0"), members: [1, 2])
                == .setClusterVersion("3.4.0"))
        #expect(
            ClusterVersionDecision.decide(
                values("3.4.0", [1: "3.4.23", 2: "3.4.2"], downgrade: "3.4.0"), members: [1, 2])
                == .finishDowngrade)
        #expect(
            ClusterVersionDecision.decide(values("3.5.0", [1: "3.5.13"], downgrade: "3.4.0"), members: [1]) == nil)
    }

    @Test func versionsParseAsEtcdsSemverDoes() {
        #expect(MinorVersion("3.4")?.description == "3.4.0")
        #expect(MinorVersion("3.5.13")?.description == "3.5.0")
        #expect(MinorVersion("3.6.0-alpha.0")?.description == "3.6.0")
        for bad in ["", "bad", "3", "3.x", "3.4.x", "3.4.5.6", "-3.4"] { #expect(MinorVersion(bad) == nil, "\(bad)") }
    }
}
