/// What no correct member sends, whatever its state: `RaftNode.step` refuses such a message whole, before it changes
/// anything, with `RaftError.invalidMessage`. A peer that sends one is buggy, corrupt or hostile; trusting it would
/// trap the member (an index past the end of a range, an overflow) or write a log that recovery refuses.
///
/// Only what holds of the message alone is checked here; what depends on the receiver (a commit index beyond its
/// log, an acknowledgement of entries it never sent) is ignored where it is handled.
extension Message {
    /// The highest term and index a message may carry. No cluster reaches 2^62 terms or entries (a billion a second
    /// for over a century); refusing anything above keeps every `+ 1` on a term or an index from overflowing, a
    /// member's own elections included.
    public static let maxTermOrIndex: UInt64 = 1 << 62

    /// Why the message is invalid, or nil when it is not.
    var invalidity: String? {
        if term > Self.maxTermOrIndex || index > Self.maxTermOrIndex || commit > Self.maxTermOrIndex
            || rejectHint > Self.maxTermOrIndex
        {
            return "term or index beyond \(Self.maxTermOrIndex)"
        }
        switch kind {
        case .append: return entriesInvalidity
        case .appendResponse:
            // The follower's hint is at or below the index it rejects.
            return reject && rejectHint > index ? "rejection hint \(rejectHint) above its index \(index)" : nil
        case .snapshot: return snapshot?.invalidity
        default: return nil
        }
    }

    /// An append's entries follow its previous entry (`index`, `logTerm`) one by one, with terms that never go back
    /// and never exceed the leader's term: the log a follower builds from them is one recovery accepts.
    private var entriesInvalidity: String? {
        guard !entries.isEmpty else { return nil }
        if Self.maxTermOrIndex - index < UInt64(entries.count) { return "entries beyond index \(Self.maxTermOrIndex)" }
        var previousTerm = max(logTerm, 1)
        for (offset, e) in entries.enumerated() {
            if e.index != index + 1 + UInt64(offset) {
                return "entry \(e.index) where \(index + 1 + UInt64(offset)) goes"
            }
            if e.term < previousTerm { return "entry \(e.index) of term \(e.term) after one of term \(previousTerm)" }
            if e.term > term { return "entry \(e.index) of term \(e.term) from a leader of term \(term)" }
            previousTerm = e.term
        }
        return nil
    }
}

extension Snapshot {
    /// A leader's snapshot covers entries (index and term at least 1), and a configuration with voters, none of
    /// them 0 or listed twice, and no member both voter and learner. (Its term may exceed the message's: the
    /// member writes the image, and reads the term at its index, after the message was made.)
    var invalidity: String? {
        let meta = metadata
        if meta.index == 0 || meta.index > Message.maxTermOrIndex { return "snapshot index \(meta.index)" }
        if meta.term == 0 || meta.term > Message.maxTermOrIndex { return "snapshot term \(meta.term)" }
        let conf = meta.confState
        let members = conf.voters + conf.learners
        if conf.voters.isEmpty || members.contains(0) || Set(members).count != members.count {
            return "snapshot configuration \(conf.voters) / \(conf.learners)"
        }
        return nil
    }
}
