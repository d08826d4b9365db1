import Raft
import Testing

/// Messages a buggy, stale or hostile peer can send, found by the raft fuzz target (docs/FUZZING.md): a member refuses
/// or ignores them, never traps, and goes on replicating. Each test names the regression input
/// (Tests/FuzzTests/Regressions/raft/) of the crash it pins down, when the fuzzer found one.
@Suite("Peer input")
struct PeerInputTests {
    /// The leader 1 of term 2, followers 2 and 3, logs 1...4 committed everywhere.
    static let cluster = """
        bootstrap 1 2 3
        campaign 1
        stabilize
        expect * term=2 commit=4 last=4
        """

    /// `heartbeat-commit-beyond-log`: `RaftLog.commit` trapped ("commit index beyond last index").
    @Test func aHeartbeatCommitBeyondTheLogCommitsNothing() {
        ScriptHarness.run(
            Self.cluster + """

                inject 1->2 heartbeat term=2 commit=99
                expect 2 commit=4 last=4 lead=1
                propose 1 x
                stabilize
                expect * commit=5 data=x
                """)
    }

    /// `append-entries-not-contiguous`: `RaftLog.maybeAppend` cut the entries at a negative offset and trapped.
    @Test func appendedEntriesMustFollowTheirPreviousEntry() {
        ScriptHarness.run(
            Self.cluster + """

                expect-error inject 1->2 append term=2 logterm=2 index=4 entries=100@2
                expect-error inject 1->2 append term=2 logterm=2 index=4 entries=5@2,7@2
                expect-error inject 1->2 append term=2 logterm=2 index=4 entries=4@2
                expect 2 last=4 commit=4
                """)
    }

    /// `append-entry-terms-decrease`: the follower wrote a log whose terms go back, which recovery refuses at the
    /// next start ("terms must not decrease"). An entry of a term beyond the leader's is as impossible.
    @Test func appendedEntryTermsNeverGoBackNorPassTheLeaders() {
        ScriptHarness.run(
            Self.cluster + """

                expect-error inject 1->2 append term=2 logterm=2 index=4 entries=5@1
                expect-error inject 1->2 append term=2 logterm=2 index=4 entries=5@2,6@1
                expect-error inject 1->2 append term=2 logterm=2 index=4 entries=5@3
                expect-error inject 1->2 append term=2 logterm=0 index=4 entries=5@0
                expect 2 last=4 logterms=1,1,1,2
                inject 1->2 append term=2 logterm=2 index=4 entries=5@2,6@2 commit=4
                expect 2 last=6 logterms=1,1,1,2,2,2
                """)
    }

    /// Only the leader of the term answers a follower's ReadIndex: an answer from anyone else (member 3, a follower
    /// like it) would let the follower serve a linearizable read at an index no leader confirmed.
    @Test func aReadIndexAnswerFromAMemberOtherThanTheLeaderIsIgnored() {
        ScriptHarness.run(
            Self.cluster + """

                inject 3->2 readIndexResponse term=2 index=1 context=forged
                read 2 r1
                stabilize
                expect 2 reads=r1@4
                """)
    }

    /// An acknowledgement of entries the leader does not have answers nothing it sent: counted, it made the
    /// follower's match run past the log, and the leader had nothing left to send it.
    @Test func anAppendResponseBeyondTheLeadersLogIsIgnored() {
        ScriptHarness.run(
            Self.cluster + """

                inject 2->1 appendResponse term=2 index=99
                inject 3->1 appendResponse term=2 index=99
                expect 1 commit=4 match-2=4 match-3=4
                propose 1 x
                stabilize
                expect * commit=5 data=x
                """)
    }

    /// `transfer-leader-relayed-for-another-member`: a follower relayed a peer's (here a stranger's) transfer request
    /// to the leader under the peer's name, and the leader handed leadership over on its word.
    @Test func aFollowerDoesNotRelayAPeersTransferRequest() {
        ScriptHarness.run(
            Self.cluster + """

                inject 9->2 transferLeader index=3
                inject 3->2 transferLeader index=3
                stabilize
                expect 1 role=leader term=2 transferee=0
                expect 3 role=follower
                transfer 3 3                # its own request still goes to the leader
                stabilize
                expect 3 role=leader term=3
                """)
    }

    /// Terms and indexes near 2^64 would overflow the `+ 1` of the next election or entry.
    @Test func termsAndIndexesAtTheTopOfTheRangeAreRefused() {
        ScriptHarness.run(
            Self.cluster + """

                expect-error inject 3->2 heartbeat term=18446744073709551615
                expect-error inject 3->2 requestVote term=4611686018427387905 logterm=2 index=4
                expect-error inject 1->2 append term=2 logterm=2 index=4611686018427387904 entries=4611686018427387905@2
                expect-error inject 2->1 appendResponse term=2 index=4 reject hint=18446744073709551615
                expect-error inject 2->1 appendResponse term=2 index=4 reject hint=5
                expect * term=2 commit=4 last=4
                """)
    }

    /// A snapshot covers entries and carries a configuration with voters, each listed once.
    @Test func aSnapshotWithoutAValidPositionOrConfigurationIsRefused() {
        ScriptHarness.run(
            Self.cluster + """

                expect-error inject 1->2 snapshot term=2 snapshot=20@2
                expect-error inject 1->2 snapshot term=2 snapshot=20@2 voters=0,1
                expect-error inject 1->2 snapshot term=2 snapshot=20@2 voters=1,1
                expect-error inject 1->2 snapshot term=2 snapshot=20@2 voters=1,2 learners=2
                expect-error inject 1->2 snapshot term=2 snapshot=0@2 voters=1
                expect-error inject 1->2 snapshot term=2 snapshot=20@0 voters=1
                expect 2 last=4 commit=4
                inject 1->2 snapshot term=2 snapshot=20@2 voters=1,2,3
                process 2
                expect 2 last=20 commit=20 snapshot=20
                """)
    }

    /// A follower told of a snapshot whose last entry it already holds learns that entry committed, and acknowledges
    /// the snapshot's index, not its own last: entries past it may be stale (here 6 of term 2, where the leader has 6
    /// of term 3), and counting them as matching the leader's could commit an entry on replicas that lack it. etcd
    /// answers its commit index there too. Found by reading, while the raft target was written.
    @Test func aSnapshotTheFollowerAlreadyHoldsIsAcknowledgedAtItsIndexOnly() {
        ScriptHarness.run(
            """
            bootstrap 1 2 3 prevote=false checkquorum=false
            campaign 1
            stabilize
            expect * term=2 commit=4
            partition 2 | 1 3
            propose 1 a
            stabilize
            expect 1 commit=5
            # Node 2, cut off, holds 5 and a stale 6 of term 2 that no other member has.
            inject 1->2 append term=2 logterm=2 index=4 entries=5@2,6@2 commit=4
            expect 2 last=6 commit=4 logterms=1,1,1,2,2,2
            campaign 3
            stabilize
            expect 3 role=leader term=3 last=6 commit=6 logterms=1,1,1,2,2,3
            heal
            inject 3->2 snapshot term=3 snapshot=5@2 voters=1,2,3
            process 2
            expect 2 commit=5 last=6
            deliver 2->3
            expect 3 match-2=5
            stabilize
            expect * commit=6 logterms=1,1,1,2,2,3
            """)
    }
}
