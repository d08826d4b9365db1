import Testing

@testable import Server

/// The Raft link's decisions, event by event: dialling with backoff, and replacing a working connection after a
/// certificate renewal or a peer's GOAWAY without ever leaving the link without a connection that carries messages.
@Suite("Raft link state machine")
struct RaftLinkStateTests {
    typealias Link = RaftLinkState

    /// A link that dialled attempt 1 at generation 0 and has it open.
    func openLink() -> Link {
        var link = Link()
        #expect(link.onSendAttempt(now: 0) == [.dial(attempt: 1)])
        #expect(link.onDialed(attempt: 1, generation: 0, currentGeneration: 0) == [])
        #expect(link.openConnection == 1)
        return link
    }

    @Test("the first send dials; sends while dialling do not dial again")
    func firstSendDials() {
        var link = Link()
        #expect(link.onSendAttempt(now: 0) == [.dial(attempt: 1)])
        #expect(link.onSendAttempt(now: 1) == [])
        #expect(link.phase == .dialling(attempt: 1))
    }

    @Test("a failed dial waits out a doubling backoff, capped at a second, and reports the peer unreachable")
    func backoff() {
        var link = Link()
        var now: UInt64 = 0
        var attempt: UInt64 = 1
        var waits: [UInt64] = []
        _ = link.onSendAttempt(now: now)
        for _ in 0..<7 {
            #expect(link.onDialFailed(attempt: attempt, now: now) == [.reportUnreachable])
            guard case .waiting(let until) = link.phase else {
                Issue.record("not waiting after a failure: \(link.phase)")
                return
            }
            waits.append(until - now)
            #expect(link.onSendAttempt(now: until - 1) == [], "dialled before the backoff ran out")
            now = until
            attempt += 1
            #expect(link.onSendAttempt(now: now) == [.dial(attempt: attempt)])
        }
        #expect(waits.map { $0 / 1_000_000 } == [50, 100, 200, 400, 800, 1000, 1000])
        // A success resets the backoff.
        _ = link.onDialed(attempt: attempt, generation: 0, currentGeneration: 0)
        #expect(link.backoffNanos == Link.initialBackoff)
    }

    @Test("after a renewal the open connection carries messages until its replacement is up, then is retired")
    func renewalReplacesWithoutGap() {
        var link = openLink()
        #expect(link.onRenew(.renewal) == [.dial(attempt: 2)])
        #expect(link.openConnection == 1, "the old connection must keep carrying messages while the new one dials")
        #expect(link.onSendAttempt(now: 10) == [])
        #expect(
            link.onDialed(attempt: 2, generation: 1, currentGeneration: 1) == [
                .retire(1), .replaced(old: 1, new: 2, .renewal),
            ])
        #expect(link.openConnection == 2)
        // The retired connection closing afterwards is not a broken link.
        #expect(link.onClosed(1, now: 20) == [])
        #expect(link.openConnection == 2)
    }

    @Test("a peer's GOAWAY on the open connection replaces it; on a retired one it is ignored")
    func goAway() {
        var link = openLink()
        #expect(link.onRenew(.goAway, connection: 1) == [.dial(attempt: 2)])
        _ = link.onDialed(attempt: 2, generation: 0, currentGeneration: 0)
        #expect(link.onRenew(.goAway, connection: 1) == [], "GOAWAY on the retired connection")
        #expect(link.openConnection == 2)
    }

    @Test("a renewal during a dial made with the old material renews again once it is open")
    func renewalDuringDial() {
        var link = Link()
        _ = link.onSendAttempt(now: 0)
        #expect(link.onRenew(.renewal) == [])
        #expect(link.onDialed(attempt: 1, generation: 0, currentGeneration: 1) == [.dial(attempt: 2)])
        #expect(link.openConnection == 1)
        #expect(
            link.onDialed(attempt: 2, generation: 1, currentGeneration: 1) == [
                .retire(1), .replaced(old: 1, new: 2, .renewal),
            ])
    }

    @Test("a second renewal while a replacement dials renews once more after it")
    func renewalDuringReplacement() {
        var link = openLink()
        #expect(link.onRenew(.renewal) == [.dial(attempt: 2)])
        #expect(link.onRenew(.renewal) == [])
        // Attempt 2 was made with generation 1, but the material is at 2 by now.
        #expect(
            link.onDialed(attempt: 2, generation: 1, currentGeneration: 2) == [
                .retire(1), .replaced(old: 1, new: 2, .renewal), .dial(attempt: 3),
            ])
        #expect(
            link.onDialed(attempt: 3, generation: 2, currentGeneration: 2) == [
                .retire(2), .replaced(old: 2, new: 3, .renewal),
            ])
    }

    @Test("a failed replacement keeps the working connection and is retried after the backoff")
    func failedReplacement() {
        var link = openLink()
        _ = link.onRenew(.renewal)
        #expect(link.onDialFailed(attempt: 2, now: 100) == [], "the link still works: nothing is unreachable")
        #expect(link.openConnection == 1)
        #expect(link.onSendAttempt(now: 100 + Link.initialBackoff - 1) == [])
        #expect(link.onSendAttempt(now: 100 + Link.initialBackoff) == [.dial(attempt: 3)])
        #expect(
            link.onDialed(attempt: 3, generation: 1, currentGeneration: 1) == [
                .retire(1), .replaced(old: 1, new: 3, .renewal),
            ])
    }

    @Test("when the open connection breaks during a replacement, the replacement becomes the dial to wait for")
    func breakDuringReplacement() {
        var link = openLink()
        _ = link.onRenew(.goAway, connection: 1)
        #expect(link.onClosed(1, now: 5) == [.reportUnreachable])
        #expect(link.phase == .dialling(attempt: 2))
        #expect(link.onDialed(attempt: 2, generation: 0, currentGeneration: 0) == [])
        #expect(link.openConnection == 2)
    }

    @Test("a broken open connection is redialled after the backoff")
    func brokenConnection() {
        var link = openLink()
        #expect(link.onClosed(1, now: 1_000) == [.reportUnreachable])
        #expect(link.phase == .waiting(until: 1_000 + Link.initialBackoff))
        #expect(link.onSendAttempt(now: 1_000 + Link.initialBackoff) == [.dial(attempt: 2)])
    }

    @Test("stopping closes what is open and what is being dialled; late dials are closed")
    func stop() {
        var link = openLink()
        _ = link.onRenew(.renewal)
        #expect(link.onStop() == [.close(1), .close(2)])
        #expect(link.onDialed(attempt: 2, generation: 1, currentGeneration: 1) == [.close(2)])
        #expect(link.onSendAttempt(now: 0) == [])
        #expect(link.onRenew(.renewal) == [])
    }
}
