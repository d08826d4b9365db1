import Testing

@testable import Node

/// The Raft side of linearizable reads as scenarios: reads travel in rounds, a dropped round's reads wait for the
/// next, a confirmed round releases exactly its own, deadlines fail reads wherever they wait, and a round left empty
/// is given up. Waiters are plain (name, deadline) values.
@Suite struct ReadIndexRoundsTests {
    struct Read: Equatable {
        var name: String
        var deadline: Int64
    }

    @Test func aRoundCarriesEveryPendingReadAndOnlyThoseItsConfirmationReleases() {
        var rounds = ReadIndexRounds<Read>()
        #expect(rounds.startRound(now: 0, id: 1) == nil, "no round without a read")
        rounds.add([Read(name: "a", deadline: 100), Read(name: "b", deadline: 100)])
        let first = rounds.startRound(now: 0, id: 2)!
        rounds.add([Read(name: "c", deadline: 100)])
        let second = rounds.startRound(now: 1, id: 3)!
        #expect(first != second)
        #expect(rounds.waiting == 3)
        #expect(rounds.onConfirmed(second, now: 2).waiters.map(\.name) == ["c"])
        #expect(rounds.onConfirmed(first, now: 2).waiters.map(\.name) == ["a", "b"])
        #expect(rounds.onConfirmed(first, now: 3).waiters.isEmpty, "a round is released once")
        #expect(rounds.waiting == 0)
    }

    @Test func aDroppedRoundsReadsGoIntoTheNextRound() {
        var rounds = ReadIndexRounds<Read>()
        rounds.add([Read(name: "a", deadline: 100)])
        let dropped = rounds.startRound(now: 0, id: 4)!
        rounds.onDropped(dropped)
        #expect(rounds.pending.map(\.name) == ["a"])
        #expect(rounds.onConfirmed(dropped, now: 1).waiters.isEmpty, "a late answer to a dropped round finds nobody")
        let retry = rounds.startRound(now: 1, id: 5)!
        #expect(rounds.onConfirmed(retry, now: 2).waiters.map(\.name) == ["a"])
    }

    @Test func aRoundAnsweredAfterHalfASecondIsSlow() {
        var rounds = ReadIndexRounds<Read>()
        rounds.add([Read(name: "a", deadline: .max)])
        let quick = rounds.startRound(now: 0, id: 6)!
        #expect(rounds.onConfirmed(quick, now: ReadIndexRounds<Read>.slowNanoseconds).slow == false)
        rounds.add([Read(name: "b", deadline: .max)])
        let slow = rounds.startRound(now: 0, id: 7)!
        #expect(rounds.onConfirmed(slow, now: ReadIndexRounds<Read>.slowNanoseconds + 1).slow)
    }

    @Test func deadlinesFailReadsWhereverTheyWaitAndAnEmptiedRoundIsGivenUp() {
        var rounds = ReadIndexRounds<Read>()
        rounds.add([Read(name: "early", deadline: 10), Read(name: "late", deadline: 50)])
        let mixed = rounds.startRound(now: 0, id: 8)!
        rounds.add([Read(name: "alone", deadline: 10)])
        let lonely = rounds.startRound(now: 0, id: 9)!
        rounds.add([Read(name: "pending", deadline: 10)])
        let (expired, givenUp) = rounds.expire(now: 10, deadline: \.deadline)
        #expect(Set(expired.map(\.name)) == ["early", "alone", "pending"])
        #expect(givenUp == 1, "only the round with no read left is given up")
        #expect(rounds.onConfirmed(lonely, now: 11).waiters.isEmpty)
        #expect(rounds.onConfirmed(mixed, now: 11).waiters.map(\.name) == ["late"])
    }

    @Test func stoppingTakesEveryRead() {
        var rounds = ReadIndexRounds<Read>()
        rounds.add([Read(name: "a", deadline: 1)])
        _ = rounds.startRound(now: 0, id: 10)
        rounds.add([Read(name: "b", deadline: 1)])
        #expect(Set(rounds.takeAll().map(\.name)) == ["a", "b"])
        #expect(rounds.waiting == 0)
    }

    @Test func aHeartbeatMoreThanTwoIntervalsAfterThePreviousIsLate() {
        var late = LateHeartbeats(heartbeatNanoseconds: 100)
        #expect(late.onSent(to: 2, now: 0) == nil, "the first of a term has nothing to be late against")
        #expect(late.onSent(to: 2, now: 200) == nil, "two intervals is on time")
        #expect(late.onSent(to: 2, now: 450) == 50)
        #expect(late.onSent(to: 3, now: 450) == nil, "each follower on its own")
        late.reset()
        #expect(late.onSent(to: 2, now: 10_000) == nil, "a new term of leadership starts afresh")
    }

    /// A round's context is its id: a member that restarts names its rounds with fresh request ids, so a leader's
    /// late answer to a round of the previous run matches nothing.
    @Test func aLateAnswerToAnEarlierRunsRoundMatchesNothing() {
        var before = ReadIndexRounds<Read>()
        before.add([Read(name: "old", deadline: .max)])
        let old = before.startRound(now: 0, id: 1_000)!
        var after = ReadIndexRounds<Read>()  // the member restarted
        after.add([Read(name: "new", deadline: .max)])
        let new = after.startRound(now: 0, id: 2_000)!
        #expect(old != new)
        #expect(after.onConfirmed(old, now: 1).waiters.isEmpty)
        #expect(after.onConfirmed(new, now: 1).waiters.map(\.name) == ["new"])
    }
}
