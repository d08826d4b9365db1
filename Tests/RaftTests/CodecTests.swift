import Raft
import Testing

@Suite("Codec")
struct CodecTests {
    struct Gen {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func bytes(_ max: Int) -> [UInt8] {
            (0..<Int(next() % UInt64(max + 1))).map { _ in UInt8(truncatingIfNeeded: next()) }
        }
        mutating func big() -> UInt64 { next() >> (next() % 64) }
    }

    static func randomMessage(_ g: inout Gen) -> Message {
        let kind = MessageKind.allCases[Int(g.next() % UInt64(MessageKind.allCases.count))]
        var m = Message(
            kind: kind, from: g.big(), to: g.big(), term: g.big(), logTerm: g.big(), index: g.big(),
            commit: g.big(), reject: g.next() % 2 == 0, rejectHint: g.big(), context: g.bytes(8))
        for _ in 0..<(g.next() % 4) {
            m.entries.append(
                Entry(term: g.big(), index: g.big(), kind: g.next() % 2 == 0 ? .normal : .confChange, data: g.bytes(20))
            )
        }
        if g.next() % 3 == 0 {
            m.snapshot = Snapshot(
                metadata: SnapshotMetadata(
                    index: g.big(), term: g.big(), confState: ConfState(voters: [1, g.big()], learners: [g.big()])),
                data: g.bytes(10))
        }
        return m
    }

    @Test func roundTrip() throws {
        var g = Gen(state: 1)
        for _ in 0..<2000 {
            let m = Self.randomMessage(&g)
            #expect(try Message(serialized: m.serialized()) == m)
        }
        let cc = ConfChange(kind: .promoteLearner, node: 77, context: [1, 2, 3])
        #expect(try ConfChange(serialized: cc.serialized()) == cc)
    }

    /// Truncations, bit flips and random garbage must throw or decode, never trap or over-allocate.
    @Test func malformedInputNeverTraps() {
        var g = Gen(state: 7)
        var rejected = 0
        for _ in 0..<3000 {
            let valid = Self.randomMessage(&g).serialized()
            var mutated = valid
            switch g.next() % 4 {
            case 0: mutated = Array(valid.prefix(Int(g.next() % UInt64(valid.count))))
            case 1:
                let i = Int(g.next() % UInt64(valid.count))
                mutated[i] ^= UInt8(truncatingIfNeeded: g.next() | 1)
            case 2: mutated = g.bytes(64)
            default: mutated += [0]
            }
            do {
                _ = try Message(serialized: mutated)
                _ = try ConfChange(serialized: mutated)
            } catch {
                rejected += 1
            }
        }
        #expect(rejected > 1000)
        // A forged entry count far beyond the input must be rejected before allocation.
        let forged: [UInt8] = [1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]
        #expect(throws: RaftError.self) { try Message(serialized: forged) }
        #expect(throws: RaftError.self) { try Message(serialized: [UInt8]()) }
        #expect(throws: RaftError.self) { try Message(serialized: [2, 2]) }
    }
}
