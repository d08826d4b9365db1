import Raft
import Testing

@Suite("Replication")
struct ReplicationTests {
    /// Raft paper figure 8, up to the moment that matters: S1, leader of term 4, has its term-2 entry 7 on a
    /// majority (S1, S2, S3) while S5 (last term 3) could still be elected by S3, S4 and S5 and overwrite it.
    /// `mutation` switches a Raft safety rule off (test-only).
    static func figure8(mutation: String? = nil) -> String {
        """
        bootstrap 1 2 3 4 5 prevote=false checkquorum=false maxsize=1\(mutation.map { " mutation=" + $0 } ?? "")
        campaign 1
        stabilize
        expect * term=2 commit=6
        # (a) S1 (term 2) appends index 7 and reaches only S2.
        partition 1 2 | 3 4 5
        propose 1 a
        stabilize
        expect 2 last=7 logterms=1,1,1,1,1,2,2
        crash 1
        # (b) S5 wins term 3 with S3 and S4 and appends index 7 at term 3, but crashes before sending it.
        campaign 5
        process 5
        deliver 5->3
        deliver 5->4
        process 3
        process 4
        deliver 3->5
        deliver 4->5
        expect 5 role=leader term=3 last=7
        crash 5
        heal
        # (c) S1 restarts; term 3 is taken, so it wins term 4 with S2, S3, S4.
        restart 1
        campaign 1
        stabilize
        expect 1 role=candidate term=3    # S3 and S4 already voted in term 3
        campaign 1
        process 1
        deliver 1->2
        deliver 1->3
        deliver 1->4
        process 2
        process 3
        process 4
        deliver 2->1
        deliver 3->1
        deliver 4->1
        expect 1 role=leader term=4 commit=6 last=8
        drop 1->4
        # S1 replicates its term-2 entry 7 to S3 (one entry per message: maxsize=1) and entry 8 to S2.
        process 1
        deliver 1->2
        deliver 1->3
        process 2
        process 3
        deliver 2->1
        deliver 3->1
        process 1
        deliver 1->3
        process 3
        deliver 3->1
        expect 3 logterms=1,1,1,1,1,2,2

        """
    }

    /// A leader must not commit an entry of an older term by counting replicas, or a later leader may overwrite it.
    /// Only committing an entry of its own term commits the older one.
    @Test func figure8LeaderWaitsForAnEntryOfItsTerm() {
        ScriptHarness.run(
            Self.figure8()
                + """
                # Counting replicas must not commit index 7 (term 2).
                expect 1 commit=6 match-3=7 match-2=8
                # Once the term-4 entry reaches a majority, both commit.
                stabilize
                expect 1 commit=8
                expect 3 logterms=1,1,1,1,1,2,2,4
                """)
    }

    /// The same history with the figure-8 rule disabled: the leader commits index 7 by counting replicas, exactly
    /// the unsafe step the paper warns about.
    @Test func figure8MutationCommitsByCounting() {
        ScriptHarness.run(
            Self.figure8(mutation: "commitOlderTermByCount")
                + """
                expect 1 commit=7 match-3=7 match-2=8    # MUTATION: the unsafe rule commits index 7
                """)
    }

    @Test func fastBacktrackingOverDivergentTail() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3 prevote=false checkquorum=false
            campaign 1
            stabilize
            isolate 1
            propose 1 lost1
            propose 1 lost2
            propose 1 lost3
            stabilize
            expect 1 last=7
            crash 1
            heal
            campaign 2
            stabilize
            expect 2 role=leader term=3
            propose 2 kept
            stabilize
            restart 1
            tick 2 x1
            stabilize
            expect * logterms=1,1,1,2,3,3 data=kept commit=6
            """)
    }

    @Test func proposalsAreForwardedAndDroppedWithoutLeader() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3
            expect-error propose 2 nope
            campaign 1
            stabilize
            propose 2 via-follower
            propose 3 via-other
            stabilize
            expect * data=via-follower,via-other
            """)
    }

    @Test func flowControlPausesAndResumes() {
        ScriptHarness.run(
            """
            bootstrap 1 2 inflight=2 maxsize=1
            campaign 1
            stabilize
            cut 1->2
            propose 1 a
            propose 1 b
            propose 1 c
            propose 1 d
            stabilize
            expect 1 progress-2=replicate commit=3
            heal
            tick 1 x1                   # heartbeat response frees a window slot and replication resumes
            stabilize
            expect * commit=7 data=a,b,c,d
            """)
    }

    @Test func restartHandsCommittedEntriesOutAgainFromApplied() {
        ScriptHarness.run(
            """
            bootstrap 1
            campaign 1
            stabilize
            propose 1 x
            propose 1 y
            stabilize
            expect 1 commit=4 applied=4
            crash 1
            restart 1
            expect 1 commit=4 applied=4 role=follower
            campaign 1
            stabilize
            expect 1 role=leader term=3 commit=5
            """)
    }
}
