import Raft
import Testing

@Suite("Membership")
struct MembershipTests {
    @Test func learnerCatchesUpThenIsPromoted() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3
            campaign 1
            stabilize
            propose 1 before
            stabilize
            add-blank 4
            propose-conf 1 add-learner 4
            expect 1 learners=4                 # in effect as soon as appended
            stabilize
            expect * voters=1,2,3 learners=4 commit=6
            expect 4 data=before role=follower
            expect-error campaign 4             # learners never campaign
            propose-conf 1 promote 4
            stabilize
            expect * voters=1,2,3,4 learners= commit=7
            propose 1 after
            stabilize
            expect 4 data=before,after
            """)
    }

    /// etcd admits one learner. The leader counts the learners of its whole log when a change is proposed, so a
    /// second one is refused even where the application's member table has not applied the first yet; a second
    /// learner forwarded by a follower is dropped whole; promoting the learner frees its place.
    @Test func theLeaderAdmitsNoMoreLearnersThanItsLimit() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3 learners=1
            campaign 1
            stabilize
            add-blank 4
            propose-conf 1 add-learner 4
            stabilize
            expect * voters=1,2,3 learners=4
            expect-error propose-conf 1 add-learner 5
            propose-conf 2 add-learner 5        # forwarded to the leader, which drops it
            stabilize
            expect * voters=1,2,3 learners=4
            propose-conf 1 add-learner 4        # already a learner: nothing more
            stabilize
            propose-conf 1 promote 4
            stabilize
            expect * voters=1,2,3,4 learners=
            add-blank 5
            propose-conf 1 add-learner 5
            stabilize
            expect * voters=1,2,3,4 learners=5
            """)
    }

    /// etcd's restore procedure and recovery from a lost quorum both start with `member add` on a one-member
    /// cluster: the entry that adds the second voter is committed by the single member, before the new member
    /// exists, and the leader then waits for the newcomer like any leader without a quorum.
    @Test func singleVoterCommitsTheChangeThatAddsASecondVoter() {
        ScriptHarness.run(
            """
            bootstrap 1
            campaign 1
            stabilize
            propose 1 alone
            stabilize
            expect 1 role=leader commit=3
            add-blank 2
            isolate 2                             # the new member has not started yet
            propose-conf 1 add-voter 2
            stabilize
            expect 1 voters=1,2 commit=4          # committed by the old configuration
            propose 1 needs-two
            stabilize
            expect 1 commit=4                     # everything after it needs the new majority
            heal
            tick 1
            stabilize
            expect 2 data=alone,needs-two
            expect * commit=5
            """)
    }

    @Test func anAddedThirdVoterStillNeedsAMajorityOfTheOldTwo() {
        ScriptHarness.run(
            """
            bootstrap 1 2
            campaign 1
            stabilize
            add-blank 3
            isolate 2
            isolate 3
            propose-conf 1 add-voter 3
            stabilize
            expect 1 voters=1,2,3 commit=3        # one of two is not a majority of the old configuration
            heal
            tick 1
            stabilize
            expect * voters=1,2,3 commit=4
            """)
    }

    @Test func onlyOneChangeAtATime() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3
            expect-error propose-conf 1 add-voter 4   # no leader
            campaign 1
            process 1
            expect-error propose-conf 1 add-learner 4   # the leader's first entry is not committed yet
            stabilize
            cut 1->2
            cut 1->3
            propose-conf 1 add-learner 4
            expect-error propose-conf 1 add-learner 5   # the previous change is not committed yet
            heal
            tick 1
            stabilize
            propose-conf 1 add-learner 5
            stabilize
            expect * learners=4,5
            """)
    }

    @Test func removingTheLeaderHandsOverLeadership() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3
            campaign 1
            stabilize
            propose-conf 1 remove 1
            expect 1 role=leader voters=2,3     # still leads (without counting itself) until committed
            stabilize
            expect 1 role=follower voters=2,3
            expect 2 role=leader term=3 voters=2,3   # TimeoutNow: no election timeout needed
            propose 2 after-removal
            stabilize
            expect 2 data=after-removal
            expect 3 data=after-removal
            """)
    }

    @Test func leaderRemovedWhileChangeUncommittedThenCrashes() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3 prevote=false checkquorum=false
            campaign 1
            stabilize
            isolate 1
            propose-conf 1 remove 1
            stabilize
            crash 1                              # the removal never left the old leader
            heal
            campaign 2
            stabilize
            expect 2 role=leader voters=1,2,3
            restart 1
            tick 2
            stabilize
            expect 1 voters=1,2,3 role=follower lead=2   # its uncommitted removal was overwritten: rolled back
            """)
    }

    @Test func replaceAMember() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3
            campaign 1
            stabilize
            add-blank 4
            propose-conf 1 add-learner 4
            stabilize
            propose-conf 1 promote 4
            stabilize
            propose-conf 1 remove 3
            stabilize
            crash 3
            expect * voters=1,2,4
            crash 2                             # 1 and 4 are a majority of {1, 2, 4}
            propose 1 still-available
            stabilize
            expect 4 data=still-available
            """)
    }
}

@Suite("Snapshots")
struct SnapshotTests {
    @Test func snapshotReplacesAConflictingLog() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3 prevote=false checkquorum=false catchup=0
            campaign 3
            stabilize
            isolate 3
            propose 3 stale1
            propose 3 stale2
            stabilize
            expect 3 logterms=1,1,1,2,2,2
            campaign 1
            stabilize
            propose 1 a
            propose 1 b
            propose 1 c
            stabilize
            expect 1 commit=8 term=3
            compact 1 8
            expect 1 first=9
            heal
            tick 1
            stabilize
            expect 3 snapshot=8 commit=8 logterms= term=3 lead=1
            propose 1 d
            stabilize
            expect 3 logterms=3 data=d commit=9
            crash 3
            restart 3
            expect 3 commit=9 applied=9 first=9 last=9
            """)
    }

    @Test func compactionKeepsATrailingMargin() {
        ScriptHarness.run(
            """
            bootstrap 1 catchup=2
            campaign 1
            stabilize
            propose 1 a
            propose 1 b
            propose 1 c
            stabilize
            compact 1 5
            expect 1 first=4 last=5
            """)
    }

    /// A follower that is behind but catching up keeps its entries on the leader, within the retention bound: it
    /// catches up from the log instead of needing a snapshot (and, after a snapshot, instead of needing another).
    @Test func compactionOnALeaderKeepsWhatACatchingUpFollowerNeeds() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3 catchup=2 retention=100
            campaign 1
            stabilize
            isolate 3
            propose 1 e5
            propose 1 e6
            propose 1 e7
            propose 1 e8
            propose 1 e9
            propose 1 e10
            stabilize
            compact 1 10
            expect 1 first=5 last=10          # node 3 matched 4: everything after it stays
            heal
            tick 1
            stabilize
            expect 3 data=e5,e6,e7,e8,e9,e10 snapshot=0
            """)
        ScriptHarness.run(
            """
            bootstrap 1 2 3 catchup=2 retention=3
            campaign 1
            stabilize
            isolate 3
            propose 1 e5
            propose 1 e6
            propose 1 e7
            propose 1 e8
            propose 1 e9
            propose 1 e10
            stabilize
            compact 1 10
            expect 1 first=9 last=10          # 6 behind is beyond the retention: only the margin stays
            """)
    }
}

@Suite("Leader transfer")
struct TransferTests {
    @Test func transferToUpToDateFollower() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3
            campaign 1
            stabilize
            transfer 1 2
            stabilize
            expect 2 role=leader term=3
            expect 1 role=follower lead=2
            """)
    }

    @Test func transferToLaggingFollowerCatchesItUpFirst() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3
            campaign 1
            stabilize
            cut 1->3
            propose 1 x
            stabilize
            transfer 1 3
            expect 1 transferee=3
            expect-error propose 1 y            # proposals are refused during a transfer
            heal
            tick 1
            stabilize
            expect 3 role=leader data=x
            """)
    }

    @Test func transferAbortsAfterElectionTimeout() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3 checkquorum=false
            campaign 1
            stabilize
            isolate 3
            transfer 1 3
            tick 1 x10
            expect 1 role=leader transferee=0
            propose 1 ok-again
            """)
    }

    @Test func followerForwardsTransferRequest() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3
            campaign 1
            stabilize
            transfer 3 2
            stabilize
            expect 2 role=leader
            """)
    }
}

@Suite("Reads")
struct ReadTests {
    @Test func readIndexNeedsAHeartbeatRound() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3
            campaign 1
            stabilize
            read 1 r1
            process 1
            expect 1 reads=
            stabilize
            expect 1 reads=r1@4
            read 2 r2
            stabilize
            expect 2 reads=r2@4
            isolate 1
            read 1 r3
            stabilize
            expect 1 reads=r1@4
            tick 1 x20
            process 1
            expect 1 role=follower dropped=r3
            """)
    }

    @Test func readWithoutLeaderIsDropped() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3
            read 2 nobody
            process 2
            expect 2 dropped=nobody
            """)
    }

    @Test func readWaitsForTheLeadersFirstCommit() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3 prevote=false
            campaign 1
            process 1
            deliver 1->2
            deliver 1->3
            process 2
            process 3
            deliver 2->1
            deliver 3->1
            expect 1 role=leader commit=3
            read 1 early
            stabilize
            expect 1 reads=early@4
            """)
    }

    @Test func leaseReadsSkipTheRoundTripOnceTheLeaseIsEstablished() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3 lease
            tick-all x10                # with leases, a (re)started member first honours any earlier promise
            campaign 1
            stabilize
            expect 1 role=leader
            read 1 slow                 # no acknowledged heartbeat yet: falls back to a ReadIndex round
            process 1
            expect 1 reads=
            stabilize
            expect 1 reads=slow@4
            read 1 fast                 # a quorum acknowledged a heartbeat within the lease
            process 1
            expect 1 reads=slow@4,fast@4
            isolate 1
            tick 1 x9                   # heartbeats go unanswered: the lease runs out before followers' promises
            read 1 late
            process 1
            expect 1 reads=slow@4,fast@4
            """)
    }
}
