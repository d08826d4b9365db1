import Foundation
import Raft

/// Seed inputs for the raft target (`quorum-fuzz seeds-raft OUTDIR`, run by scripts/fuzz-seeds.sh): the exchanges a
/// member of the scenarios' cluster really has (appends, heartbeats, votes and their answers, a snapshot, a leader
/// transfer, reads, forwarded proposals), and the odd ones it must survive (unknown members, stale and future
/// terms), each record framed as `RaftTarget` reads it.
enum RaftSeeds {
    /// Scenario selectors (`RaftScenario`), with the default options (pre-vote, check-quorum, safe reads).
    static let founding: UInt8 = 0
    static let follower: UInt8 = 1
    static let snapshotted: UInt8 = 2
    static let campaigning: UInt8 = 3
    static let leader: UInt8 = 4
    static let snapshottedLeader: UInt8 = 5
    static let learner: UInt8 = 6
    /// `campaigning` without pre-vote: a candidate in term 4.
    static let candidate: UInt8 = 3 | 0x08

    /// Operation bytes (`RaftTarget.Operation`).
    static let plain: UInt8 = 0
    static let electionTimeout: UInt8 = 7

    static let me = RaftScenario.me

    static func message(
        _ kind: MessageKind, from: NodeID, term: UInt64, logTerm: UInt64 = 0, index: UInt64 = 0,
        entries: [Entry] = [], commit: UInt64 = 0, snapshot: Snapshot? = nil, reject: Bool = false,
        rejectHint: UInt64 = 0, context: [UInt8] = []
    ) -> Message {
        Message(
            kind: kind, from: from, to: me, term: term, logTerm: logTerm, index: index, entries: entries,
            commit: commit,
            snapshot: snapshot, reject: reject, rejectHint: rejectHint, context: context)
    }

    static func writes(_ indexes: ClosedRange<UInt64>, term: UInt64) -> [Entry] {
        indexes.map { Entry(term: term, index: $0, data: Array("put \($0)".utf8)) }
    }

    /// The seeds, by file name.
    static var all: [(name: String, scenario: UInt8, records: [(UInt8, Message)])] {
        let snapshot20 = Snapshot(
            metadata: SnapshotMetadata(index: 20, term: 3, confState: ConfState(voters: [1, 2, 3])))
        return [
            (
                "founding-append", founding,
                [
                    (plain, message(.append, from: 2, term: 2, logTerm: 1, index: 3, entries: writes(4...4, term: 2))),
                    (plain, message(.heartbeat, from: 2, term: 2, commit: 4)),
                ]
            ),
            (
                "follower-append", follower,
                [
                    (
                        plain,
                        message(
                            .append, from: 2, term: 3, logTerm: 3, index: 9, entries: writes(10...11, term: 3),
                            commit: 9)
                    ),
                    (plain, message(.append, from: 2, term: 3, logTerm: 3, index: 11, commit: 11)),
                ]
            ),
            (
                "follower-append-conflict", follower,
                [
                    (
                        plain,
                        message(
                            .append, from: 2, term: 4, logTerm: 3, index: 8, entries: writes(9...10, term: 4), commit: 8
                        )
                    )
                ]
            ),
            (
                "follower-append-rejected", follower,
                [(plain, message(.append, from: 2, term: 4, logTerm: 4, index: 9, entries: writes(10...10, term: 4)))]
            ),
            (
                "follower-heartbeat", follower,
                [
                    (plain, message(.heartbeat, from: 2, term: 3, commit: 7, context: [0, 1])),
                    (3, message(.heartbeat, from: 2, term: 3, commit: 9, context: [0, 4])),
                ]
            ),
            (
                "follower-votes", follower,
                [
                    (electionTimeout, message(.requestPreVote, from: 3, term: 4, logTerm: 3, index: 9)),
                    (electionTimeout, message(.requestVote, from: 3, term: 4, logTerm: 3, index: 9)),
                    (plain, message(.requestVote, from: 2, term: 4, logTerm: 3, index: 9)),
                ]
            ),
            (
                "follower-timeout-now", follower,
                [(plain, message(.timeoutNow, from: 2, term: 3, context: Message.transferContext))]
            ),
            (
                "follower-snapshot", follower,
                [
                    (0x10, message(.snapshot, from: 2, term: 3, snapshot: snapshot20)),
                    (
                        0x10,
                        message(.append, from: 2, term: 3, logTerm: 3, index: 20, entries: writes(21...21, term: 3))
                    ),
                    (plain, message(.heartbeat, from: 2, term: 3, commit: 21)),
                ]
            ),
            (
                "snapshotted-snapshot-below-commit", snapshotted,
                [
                    (
                        plain,
                        message(
                            .snapshot, from: 2, term: 3, snapshot: RaftScenario.snapshot(index: 4, voters: [1, 2, 3]))
                    )
                ]
            ),
            (
                "snapshotted-append-compacted", snapshotted,
                [
                    (plain, message(.append, from: 2, term: 3, logTerm: 2, index: 5, entries: writes(6...8, term: 3))),
                    (
                        0x20,
                        message(
                            .append, from: 2, term: 3, logTerm: 3, index: 9, entries: writes(10...10, term: 3),
                            commit: 10)
                    ),
                ]
            ),
            (
                "candidate-votes", candidate,
                [
                    (plain, message(.requestVoteResponse, from: 3, term: 4, reject: true)),
                    (plain, message(.requestVoteResponse, from: 2, term: 4)),
                    (plain, message(.appendResponse, from: 2, term: 4, index: 10)),
                ]
            ),
            (
                "precandidate-votes", campaigning,
                [
                    (plain, message(.requestPreVoteResponse, from: 2, term: 4)),
                    (plain, message(.requestVoteResponse, from: 3, term: 4)),
                ]
            ),
            (
                "candidate-loses-to-leader", candidate,
                [(plain, message(.append, from: 3, term: 4, logTerm: 3, index: 9, entries: writes(10...10, term: 4)))]
            ),
            (
                "leader-replicates", leader,
                [
                    (0x08, message(.appendResponse, from: 2, term: 4, index: 10)),
                    (
                        plain,
                        message(.appendResponse, from: 3, term: 4, logTerm: 3, index: 9, reject: true, rejectHint: 7)
                    ),
                    (plain, message(.appendResponse, from: 3, term: 4, index: 11)),
                    (1, message(.heartbeatResponse, from: 2, term: 4, context: [0, 1])),
                    (1, message(.heartbeatResponse, from: 3, term: 4, context: [0, 2])),
                ]
            ),
            (
                "leader-serves-peers", leader,
                [
                    (plain, message(.appendResponse, from: 2, term: 4, index: 10)),
                    (plain, message(.readIndex, from: 3, term: 0, context: Array("read-1".utf8))),
                    (1, message(.heartbeatResponse, from: 2, term: 4, context: [1, 1])),
                    (plain, message(.propose, from: 3, term: 0, entries: [Entry(term: 0, index: 0, data: [1, 2, 3])])),
                    (plain, message(.transferLeader, from: 3, term: 0, index: 3)),
                    (plain, message(.appendResponse, from: 3, term: 4, index: 11)),
                ]
            ),
            (
                "leader-sends-snapshot", snapshottedLeader,
                [
                    (plain, message(.appendResponse, from: 3, term: 4, index: 10, reject: true, rejectHint: 3)),
                    (plain, message(.appendResponse, from: 3, term: 4, index: 10)),
                    (0x40, message(.appendResponse, from: 2, term: 4, index: 9, reject: true, rejectHint: 1)),
                ]
            ),
            (
                "leader-deposed", leader,
                [
                    (plain, message(.appendResponse, from: 2, term: 5)),
                    (plain, message(.append, from: 2, term: 5, logTerm: 3, index: 9, commit: 7)),
                ]
            ),
            (
                "unknown-members", leader,
                [
                    (plain, message(.appendResponse, from: 9, term: 4, index: 10)),
                    (plain, message(.requestVoteResponse, from: 9, term: 4)),
                    (plain, message(.heartbeatResponse, from: 7, term: 4)),
                    (plain, message(.transferLeader, from: 9, term: 0, index: 9)),
                ]
            ),
            (
                "stale-and-future-terms", follower,
                [
                    (plain, message(.append, from: 3, term: 1, logTerm: 1, index: 3, commit: 3)),
                    (plain, message(.requestPreVote, from: 3, term: 2, logTerm: 1, index: 3)),
                    (plain, message(.heartbeat, from: 2, term: 100, commit: 7)),
                ]
            ),
            (
                "learner-follows", learner,
                [
                    (
                        plain,
                        message(
                            .append, from: 2, term: 2, logTerm: 2, index: 5, entries: writes(6...7, term: 2), commit: 6)
                    ),
                    (electionTimeout, message(.timeoutNow, from: 2, term: 2)),
                    (plain, message(.requestVote, from: 3, term: 3, logTerm: 2, index: 7)),
                ]
            ),
        ]
    }

    /// One seed's bytes.
    static func encode(scenario: UInt8, records: [(UInt8, Message)]) -> [UInt8] {
        var bytes = [scenario]
        for (operation, message) in records {
            let encoded = message.serialized()
            bytes += [operation, UInt8(encoded.count >> 8), UInt8(encoded.count & 0xFF)] + encoded
        }
        return bytes
    }

    static func write(to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for seed in all {
            let bytes = encode(scenario: seed.scenario, records: seed.records)
            try Data(bytes).write(to: URL(fileURLWithPath: directory + "/" + seed.name))
        }
    }
}

/// The raft target's seeds (`quorum-fuzz seeds-raft OUTDIR`).
public func writeRaftSeeds(to directory: String) throws { try RaftSeeds.write(to: directory) }
