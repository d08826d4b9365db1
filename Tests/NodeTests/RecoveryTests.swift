import Raft
import Storage
import TestSupport
import Testing

@testable import Node

/// Every state a crash can leave on a member's disk, and what the restart makes of it (`Recovery.plan`), without
/// files: the log's marker and entries, and the database's applied index, term and configuration.
@Suite struct RecoveryTests {
    static let three = ConfState(voters: [1, 2, 3])

    static func entries(_ range: ClosedRange<UInt64>, term: UInt64 = 2) -> [WALEntry] {
        range.map { WALEntry(index: $0, term: term, kind: EntryKind.normal.rawValue, data: [UInt8($0 & 0xff)]) }
    }

    static func disk(
        marker: UInt64?, entries: [WALEntry], applied: UInt64, appliedTerm: UInt64? = nil,
        appliedConf: ConfState? = nil, commit: UInt64? = nil
    ) -> Recovery.Disk {
        Recovery.Disk(
            hardState: WALHardState(term: 2, vote: 1, commit: commit ?? entries.last?.index ?? marker ?? 0),
            snapshot: marker.map { WALSnapshot(index: $0, term: 2, confState: ConfStateCodec.encode(three)) },
            entries: entries, appliedIndex: applied, appliedTerm: appliedTerm, appliedConf: appliedConf)
    }

    @Test func aDatabaseWithinTheLogReplaysWhatItHasNotApplied() throws {
        let plan = try Recovery.plan(Self.disk(marker: 100, entries: Self.entries(101...150), applied: 120))
        #expect(plan.actions.isEmpty)
        #expect(plan.state.applied == 120)
        #expect(plan.state.snapshot?.metadata.index == 100)
        #expect(plan.state.entries.map(\.index) == Array(101...150))
        #expect(plan.state.hardState.commit == 150)
        #expect(plan.recoveredThrough == 150)
    }

    @Test func aDatabaseAheadOfTheLogIsTheSnapshotTheLogNeverRecorded() throws {
        // A snapshot from the leader went into the database; the member stopped before the log's marker.
        let plan = try Recovery.plan(
            Self.disk(
                marker: 100, entries: Self.entries(101...120), applied: 500, appliedTerm: 4, appliedConf: Self.three))
        #expect(
            plan.actions == [
                .saveSnapshotMarker(WALSnapshot(index: 500, term: 4, confState: ConfStateCodec.encode(Self.three)))
            ])
        #expect(plan.state.snapshot?.metadata == SnapshotMetadata(index: 500, term: 4, confState: Self.three))
        #expect(plan.state.entries.isEmpty)
        #expect(plan.state.applied == 500)
    }

    @Test func aDatabaseAheadOfTheLogWithoutItsTermIsRefused() {
        #expect(throws: Recovery.Refusal.self) {
            try Recovery.plan(Self.disk(marker: 100, entries: Self.entries(101...120), applied: 500))
        }
    }

    @Test func aDatabaseBehindTheLogsMarkerIsRefusedInsteadOfSkippingEntries() throws {
        // The log released entries 91...100; a database that applied only through 90 lacks them for good.
        let error = #expect(throws: Recovery.Refusal.self) {
            try Recovery.plan(Self.disk(marker: 100, entries: Self.entries(101...120), applied: 90))
        }
        #expect(error?.description.contains("released its entries through 100") == true)
    }

    @Test func aLogThatLostCommittedEntriesIsRefusedInsteadOfTrappingInRaft() throws {
        // The hard state says 32 was committed, but the log ends at 3: a disk that lost synced writes.
        let error = #expect(throws: Recovery.Refusal.self) {
            try Recovery.plan(Self.disk(marker: nil, entries: Self.entries(1...3), applied: 0, commit: 32))
        }
        #expect(error?.description.contains("ends at index 3 but records index 32 as committed") == true)
        // Up to the end of the log is fine.
        let plan = try Recovery.plan(Self.disk(marker: nil, entries: Self.entries(1...3), applied: 0, commit: 3))
        #expect(plan.state.hardState.commit == 3)
    }

    @Test func forcingANewClusterRemovesTheOtherMembersThroughTheLog() throws {
        let members = Dictionary(
            uniqueKeysWithValues: [1, 2, 3].map {
                (
                    $0,
                    MemberInfo(
                        id: $0, name: "m\($0)", peerURLs: ["http://m\($0):2380"], clientURLs: [], isLearner: false)
                )
            })
        let plan = try Recovery.plan(
            Self.disk(marker: 100, entries: Self.entries(101...120), applied: 110, commit: 115),
            forceNewCluster: Recovery.ForceNewCluster(memberID: 1, members: members))
        #expect(plan.removedMembers.sorted() == [2, 3])
        guard case .append(let appended, let hardState)? = plan.actions.first else {
            Issue.record("no entries appended: \(plan.actions)")
            return
        }
        #expect(appended.count == 2 && appended.allSatisfy { $0.kind == .confChange })
        #expect(appended.first?.index == 121)
        #expect(plan.state.entries.last?.index == appended.last?.index)
        #expect(plan.state.hardState == hardState)
        #expect(plan.recoveredThrough == 120)
    }

    @Test func forcingANewClusterFromALearnerIsRefused() {
        #expect(throws: Recovery.Refusal.self) {
            try Recovery.plan(
                Self.disk(marker: 100, entries: [], applied: 100),
                forceNewCluster: Recovery.ForceNewCluster(memberID: 9, members: [:]))
        }
    }

    /// Any combination of marker, log and database position: the plan refuses exactly when the database is behind
    /// the marker or ahead of the log without its term; otherwise Raft starts at the database's applied index with
    /// every entry after the marker (or the database as the snapshot).
    @Test func randomDiskStatesHaveTheDocumentedOutcome() {
        var random = SeededRandom()
        for _ in 0..<2_000 {
            let marker: UInt64? = Bool.random(using: &random) ? UInt64.random(in: 1...1_000, using: &random) : nil
            let first = (marker ?? 0) + 1
            let count = UInt64.random(in: 0...50, using: &random)
            let entries = count == 0 ? [] : Self.entries(first...(first + count - 1))
            let last = entries.last?.index ?? marker ?? 0
            let applied = UInt64.random(in: 0...(last + 20), using: &random)
            let knowsTerm = Bool.random(using: &random)
            let disk = Self.disk(
                marker: marker, entries: entries, applied: applied, appliedTerm: knowsTerm ? 7 : nil,
                appliedConf: knowsTerm ? Self.three : nil)
            let refused = applied < (marker ?? 0) || (applied > last && !knowsTerm)
            do {
                let plan = try Recovery.plan(disk)
                #expect(!refused, "seed \(random.seed): \(disk) should have been refused")
                #expect(plan.state.applied == applied)
                if applied > last {
                    #expect(plan.state.snapshot?.metadata.index == applied && plan.state.entries.isEmpty)
                    #expect(plan.actions.count == 1)
                } else {
                    #expect(plan.state.entries.map(\.index) == entries.map(\.index) && plan.actions.isEmpty)
                }
            } catch {
                #expect(refused, "seed \(random.seed): \(disk) refused: \(error)")
            }
        }
    }
}
