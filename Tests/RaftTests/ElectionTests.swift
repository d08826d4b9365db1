import Raft
import Testing

@Suite("Election")
struct ElectionTests {
    @Test func singleMemberElectsItselfAndCommits() {
        ScriptHarness.run(
            """
            bootstrap 1
            expect 1 role=follower term=1 commit=1 applied=1 voters=1
            campaign 1
            expect 1 role=leader term=2 last=2 commit=1   # the empty entry waits for its own persistence
            process 1
            expect 1 commit=2
            process 1
            expect 1 applied=2
            propose 1 hello
            process 1
            process 1
            expect 1 commit=3 applied=3 data=hello
            read 1 r1
            process 1
            expect 1 reads=r1@3
            expect-error propose-conf 1 remove 1   # would leave no voter
            """)
    }

    @Test func threeMemberElection() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3
            campaign 1
            expect 1 role=precandidate term=1
            stabilize
            expect 1 role=leader term=2
            expect 2 role=follower term=2 lead=1 vote=1
            expect * commit=4 applied=4 logterms=1,1,1,2
            propose 1 a
            propose 1 b
            stabilize
            expect * commit=6 data=a,b
            """)
    }
}

@Suite("Election edge cases")
struct ElectionEdgeTests {
    @Test func preVoteKeepsAnIsolatedMemberFromInflatingTerms() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3
            campaign 1
            stabilize
            expect * term=2 lead=1
            isolate 3
            tick 3 x50                   # 3 pre-campaigns over and over, but never bumps its term
            stabilize
            expect 3 role=precandidate term=2
            heal
            tick-all x1                   # leader heartbeat reaches 3 again
            stabilize
            expect 3 role=follower term=2 lead=1
            expect 1 role=leader term=2
            """)
    }

    @Test func withoutPreVoteARejoiningMemberDisruptsButCannotWin() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3 prevote=false checkquorum=false
            campaign 1
            stabilize
            propose 1 x
            stabilize
            isolate 3
            propose 1 y                   # 3 misses it: its log is behind
            stabilize
            tick 3 x30
            stabilize
            expect 3 role=candidate
            heal
            tick 3 x30                   # its vote requests carry a higher term: the leader steps down ...
            stabilize
            expect 3 role=follower           # ... but 3 cannot win with a stale log
            tick 1 x30
            stabilize
            expect * data=x,y
            """)
    }

    @Test func checkQuorumLeaderStepsDownWhenIsolated() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3
            campaign 1
            stabilize
            isolate 1
            tick 1 x10
            expect 1 role=leader
            tick 1 x10
            expect 1 role=follower lead=0 term=2
            """)
    }

    @Test func followersInLeaseIgnoreVoteRequests() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3 prevote=false
            campaign 1
            stabilize
            campaign 3                    # forced term bump without pre-vote: 1 and 2 heard from 1 recently
            stabilize
            expect 3 role=candidate term=3
            expect 1 role=leader term=2
            expect 2 term=2 lead=1
            """)
    }

    @Test func votesSurviveRestart() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3 prevote=false checkquorum=false
            campaign 1
            process 1
            deliver 1->2
            process 2                    # 2 persisted its vote for 1 in term 2
            expect 2 vote=1 term=2
            crash 2
            restart 2
            expect 2 vote=1 term=2
            campaign 3
            process 3
            deliver 3->2                  # 3 asks for the same term 2: 2 remembers it voted for 1
            expect 2 vote=1 term=2
            campaign 3
            process 3
            deliver 3->2                  # term 3 is new: 2 may vote again
            expect 2 vote=3 term=3
            """)
    }

    @Test func candidateWithStaleLogLoses() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3 prevote=false checkquorum=false
            campaign 1
            stabilize
            cut 1->3
            propose 1 only-on-1-and-2
            stabilize
            heal
            crash 1
            campaign 3                   # 3's log misses an entry; 2 refuses its vote
            stabilize
            expect 3 role=candidate             # one rejection, one silence: undecided
            campaign 2
            stabilize
            expect 2 role=leader
            expect 3 lead=2 data=only-on-1-and-2
            """)
    }
}
