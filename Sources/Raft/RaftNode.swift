/// One member of a Raft group, as a value: all of its state, including the in-memory log, lives in this
/// struct, and it performs no I/O, reads no clock and draws no randomness but its seeded generator.
///
/// Inputs are ticks, messages and requests; outputs are collected into a `Ready` that the application
/// persists, sends and applies before calling `advance`. See the `Raft` documentation catalog for the design
/// (membership changes, persistence ordering, reads).
public struct RaftNode: Sendable {
    public let config: RaftConfig
    public var id: NodeID { config.id }

    // Persistent state (reported through Ready.hardState).
    var term: UInt64 = 0
    var vote: NodeID = 0

    // Volatile state.
    public internal(set) var role: Role = .follower
    var lead: NodeID = 0
    var log: RaftLog
    var tracker: ProgressTracker
    /// Configuration at the log's base (from the snapshot, or the bootstrap configuration).
    var baseConf: ConfState
    /// Configurations introduced by conf-change entries still in the log, by entry index, ascending. The
    /// latest one is in effect as soon as it is appended (not when committed); truncation rolls it back.
    var confChanges: [(index: UInt64, conf: ConfState)] = []
    /// Votes received in the current (pre-)election, sorted by voter.
    var votes: [(id: NodeID, granted: Bool)] = []
    var electionElapsed = 0
    /// Ticks since a leader last contacted us. While below `electionTick` (with check-quorum) we ignore vote
    /// requests: the leader's lease. Starts at 0 with lease-based reads, so a member that restarts keeps the
    /// promise it may have made before crashing.
    var ticksSinceLeaderContact: Int
    /// Ticks since creation; the leader's lease is measured in it.
    var tickCount: UInt64 = 0
    /// A transfer was started in this term: the lease no longer holds (the transferee's forced election
    /// ignores followers' promises).
    var transferAttempted = false
    var heartbeatElapsed = 0
    var randomizedElectionTimeout = 0
    var leadTransferee: NodeID = 0
    /// Index of the last conf change the leader appended (or of its first entry of the term): no new change
    /// may be proposed until it is committed.
    var pendingConfIndex: UInt64 = 0
    /// Bytes of the leader's entries not yet committed (for `maxUncommittedEntriesSize`).
    var uncommittedSize = 0
    var reads = ReadOnlyQueue()
    /// Latest snapshot taken by the application (via `compact`), sent to followers that fell too far behind.
    var snapshot: Snapshot?
    var rng: SplitMix64

    // Outputs accumulated for the next Ready.
    var msgs: [Message] = []
    var msgsAfterPersist: [Message] = []
    var readStates: [ReadState] = []
    var droppedReads: [[UInt8]] = []
    /// The leader has new entries or a new commit index to spread; sends are batched until `ready()`.
    var needsBroadcast = false
    /// A ReadIndex round is waiting for its heartbeat broadcast.
    var needsReadHeartbeat = false
    var lastSoftState: SoftState
    var lastHardState: HardState
    var readyInFlight = false
    /// Indexes of conf-change entries handed out to apply, in order, so `applyConfChange` knows which
    /// configuration the application is applying.
    var confEntriesToApply: [UInt64] = []

    // MARK: - Creation

    /// Restores a member from its durable state (or creates a blank one from `PersistentState()`, which is
    /// how a member joining an existing cluster starts: the leader's log or snapshot tells it the rest).
    public init(config: RaftConfig, state: PersistentState) {
        config.validate()
        self.config = config
        ticksSinceLeaderContact = config.readOnlyOption == .leaseBased ? 0 : config.electionTick
        rng = SplitMix64(seed: config.randomSeed ^ (config.id &* 0x9E37_79B9_7F4A_7C15))
        let snapIndex = state.snapshot?.metadata.index ?? 0
        let snapTerm = state.snapshot?.metadata.term ?? 0
        let entries = state.entries.filter { $0.index > snapIndex }
        if let first = entries.first {
            precondition(first.index == snapIndex + 1, "entries must continue right after the snapshot")
        }
        let last = snapIndex + UInt64(entries.count)
        var commit = max(state.hardState.commit, snapIndex)
        let applied = min(max(state.applied, snapIndex), last)
        // The commit index is persisted without fsync and may lag what the state machine durably applied;
        // whatever was applied was committed, so the commit index can safely catch up to it.
        commit = max(commit, applied)
        log = RaftLog(baseIndex: snapIndex, baseTerm: snapTerm, entries: entries, committed: commit, applied: applied)
        snapshot = state.snapshot
        baseConf = state.snapshot?.metadata.confState ?? state.confState
        tracker = ProgressTracker(maxInflight: config.maxInflightMessages, maxInflightBytes: config.maxInflightBytes)
        term = state.hardState.term
        vote = state.hardState.vote
        lastHardState = HardState(term: term, vote: vote, commit: commit)
        lastSoftState = SoftState(leader: 0, role: .follower)
        for e in entries where e.kind == .confChange { noteConfEntry(e) }
        tracker.setConf(currentConf, nextIndex: log.lastIndex + 1)
        becomeFollower(term: term, lead: 0)
    }

    /// The founding state of a member of a brand-new cluster. Every initial member uses the same `peers`.
    ///
    /// Like etcd, the initial configuration is a log: one `addVoter` entry per peer at term 1, all committed, so a
    /// member added later learns the founding members by replaying the log, exactly like any later change.
    ///
    /// The caller must make this state durable *together with the creation of its log* (one atomic write), then
    /// start the node from it with `RaftNode(config:state:)`. A log that exists without its founding entries must be
    /// impossible: a member that crashed in between would restart with an empty log, could receive only the first
    /// founding entry from a leader that then crashes, apply it, find itself the only voter and elect itself, while
    /// the others form the real cluster: two configurations, two leaders (the simulator found exactly this).
    public static func bootstrapState(peers: [NodeID]) -> PersistentState {
        let members = Array(Set(peers)).sorted()
        precondition(!members.isEmpty && !members.contains(0), "bootstrap needs at least one non-zero peer")
        let entries = members.enumerated().map { i, peer in
            Entry(
                term: 1, index: UInt64(i + 1), kind: .confChange,
                data: ConfChange(kind: .addVoter, node: peer).serialized())
        }
        return PersistentState(hardState: HardState(term: 1, vote: 0, commit: UInt64(members.count)), entries: entries)
    }

    /// A member of a brand-new cluster, started from `bootstrapState(peers:)`, which the caller has made durable.
    /// The founding entries come out of the first Ready as committed entries to apply; the configuration is already
    /// in effect, so `campaign()` works immediately (a single-member cluster elects itself at once).
    public static func bootstrap(config: RaftConfig, peers: [NodeID]) -> RaftNode {
        RaftNode(config: config, state: bootstrapState(peers: peers))
    }

    // MARK: - Configuration tracking

    var currentConf: ConfState { confChanges.last?.conf ?? baseConf }

    /// The configuration in effect at log position `index` (at or after the log's base).
    public func confState(at index: UInt64) -> ConfState {
        var conf = baseConf
        for change in confChanges where change.index <= index { conf = change.conf }
        return conf
    }

    var isPromotable: Bool { tracker.isVoter(id) }

    /// Records a conf-change entry just added to the log. Malformed changes (which only a buggy or hostile
    /// proposer can produce: the leader validates what it appends) leave the configuration unchanged.
    mutating func noteConfEntry(_ entry: Entry) {
        precondition(entry.kind == .confChange)
        guard let change = try? ConfChange(serialized: entry.data) else {
            confChanges.append((entry.index, currentConf))
            return
        }
        confChanges.append((entry.index, Self.applying(change, to: currentConf)))
    }

    static func applying(_ change: ConfChange, to conf: ConfState) -> ConfState {
        var voters = conf.voters
        var learners = conf.learners
        let n = change.node
        guard n != 0 else { return conf }
        switch change.kind {
        case .addVoter, .promoteLearner:
            if change.kind == .promoteLearner && !learners.contains(n) { return conf }
            learners.removeAll { $0 == n }
            if !voters.contains(n) { voters.append(n) }
        case .addLearner:
            voters.removeAll { $0 == n }
            if !learners.contains(n) { learners.append(n) }
        case .removeNode:
            voters.removeAll { $0 == n }
            learners.removeAll { $0 == n }
        }
        return ConfState(voters: voters, learners: learners)
    }

    /// Re-reads the configuration after the log changed (entries appended or truncated).
    mutating func logChanged(truncatedFrom: UInt64?, appended: ArraySlice<Entry>) {
        var confChanged = false
        if let cut = truncatedFrom, let last = confChanges.last, last.index >= cut {
            confChanges.removeAll { $0.index >= cut }
            confChanged = true
        }
        for e in appended where e.kind == .confChange {
            noteConfEntry(e)
            confChanged = true
        }
        if confChanged { installConf() }
    }

    mutating func installConf() {
        tracker.setConf(currentConf, nextIndex: log.lastIndex + 1)
        if let i = tracker.slot(id), role == .leader {
            tracker.progress[i].match = max(tracker.progress[i].match, ownMatch)
            tracker.progress[i].state = .replicate
            tracker.progress[i].next = log.lastIndex + 1
        }
        if leadTransferee != 0 && !tracker.isVoter(leadTransferee) { leadTransferee = 0 }
        if role == .leader {
            // A smaller quorum may commit more; a newly added member needs the log.
            if maybeCommit() { needsBroadcast = true }
            needsBroadcast = true
        }
    }

    // MARK: - Roles

    mutating func resetTerm(_ newTerm: UInt64) {
        precondition(newTerm >= term, "term must never go back (\(term) -> \(newTerm))")
        if newTerm != term {
            term = newTerm
            vote = 0
        }
        lead = 0
        electionElapsed = 0
        heartbeatElapsed = 0
        randomizedElectionTimeout = config.electionTick + Int(rng.next(below: UInt64(config.electionTick)))
        leadTransferee = 0
        transferAttempted = false
        votes.removeAll()
        pendingConfIndex = 0
        uncommittedSize = 0
        needsReadHeartbeat = false
        for (from, context) in reads.reset() where from == id { droppedReads.append(context) }
        for i in tracker.progress.indices {
            let pr = tracker.progress[i]
            var fresh = Progress(
                id: pr.id, next: log.lastIndex + 1, isLearner: pr.isLearner, maxInflight: config.maxInflightMessages,
                maxInflightBytes: config.maxInflightBytes)
            if pr.id == id {
                fresh.match = ownMatch
                fresh.state = .replicate
            }
            tracker.progress[i] = fresh
        }
    }

    /// What the leader may count for itself toward commit: what the application reported durable.
    var ownMatch: UInt64 { log.persisted }

    mutating func becomeFollower(term newTerm: UInt64, lead newLead: NodeID) {
        resetTerm(newTerm)
        role = .follower
        lead = newLead
    }

    mutating func becomePreCandidate() {
        precondition(role != .leader, "a leader cannot become pre-candidate")
        // Pre-vote changes neither term nor vote: a pre-candidate that loses leaves no trace.
        votes.removeAll()
        role = .preCandidate
        lead = 0
    }

    mutating func becomeCandidate() {
        precondition(role != .leader, "a leader cannot become candidate")
        resetTerm(term + 1)
        vote = id
        role = .candidate
    }

    mutating func becomeLeader() {
        precondition(role == .candidate, "only a candidate can become leader")
        resetTerm(term)
        role = .leader
        lead = id
        // The leader's own progress is driven by what it has persisted.
        if let i = tracker.slot(id) {
            tracker.progress[i].state = .replicate
            tracker.progress[i].recentActive = true
        }
        // Committing an entry of its own term is how a leader learns its commit index (§5.4.2, §6.4), and
        // until then it must neither serve reads nor start a configuration change (the thesis' fix for
        // single-server changes: a change proposed before the leader's term commits could overlap one that a
        // previous leader left uncommitted).
        appendEntry(Entry(term: term, index: log.lastIndex + 1, kind: .normal, data: []))
        pendingConfIndex = log.lastIndex
    }

    // MARK: - Public inputs

    /// Advances the logical clock by one tick: followers count toward an election, leaders toward the
    /// next heartbeat and the next check-quorum round.
    public mutating func tick() {
        tickCount += 1
        if ticksSinceLeaderContact < Int.max { ticksSinceLeaderContact += 1 }
        if role == .leader {
            tickLeader()
        } else {
            electionElapsed += 1
            if isPromotable && electionElapsed >= randomizedElectionTimeout {
                electionElapsed = 0
                hup(transfer: false)
            }
        }
    }

    mutating func tickLeader() {
        heartbeatElapsed += 1
        electionElapsed += 1
        if electionElapsed >= config.electionTick {
            electionElapsed = 0
            if config.checkQuorum && !checkQuorumActive() {
                becomeFollower(term: term, lead: 0)
                return
            }
            // A transfer that has not completed within an election timeout has failed: resume service.
            if leadTransferee != 0 { leadTransferee = 0 }
        }
        if heartbeatElapsed >= config.heartbeatTick {
            heartbeatElapsed = 0
            broadcastHeartbeat()
        }
    }

    /// Whether a quorum of voters was heard from since the last round; resets the activity flags.
    mutating func checkQuorumActive() -> Bool {
        var active = 0
        for i in tracker.progress.indices {
            let pr = tracker.progress[i]
            if !pr.isLearner && (pr.id == id || pr.recentActive) { active += 1 }
            if pr.id != id { tracker.progress[i].recentActive = false }
        }
        return active >= tracker.quorum
    }

    /// Starts an election now (honouring pre-vote), as if the election timeout had elapsed.
    /// Throws when this member is not a voter. A leader stays leader.
    public mutating func campaign() throws(RaftError) {
        guard isPromotable else { throw .proposalDropped(reason: "not a voter: cannot campaign") }
        hup(transfer: false)
    }

    /// Starts an election: a pre-vote round first unless disabled or leadership is being handed to us.
    mutating func hup(transfer: Bool) {
        guard role != .leader, isPromotable else { return }
        if config.preVote && !transfer {
            startElection(pre: true, transfer: false)
        } else {
            startElection(pre: false, transfer: transfer)
        }
    }

    mutating func startElection(pre: Bool, transfer: Bool) {
        let voteTerm: UInt64
        if pre {
            becomePreCandidate()
            voteTerm = term + 1
        } else {
            becomeCandidate()
            voteTerm = term
        }
        if recordVote(from: id, granted: true) == .won {
            if pre {
                startElection(pre: false, transfer: transfer)
            } else {
                becomeLeader()
            }
            return
        }
        for voter in tracker.conf.voters where voter != id {
            send(
                Message(
                    kind: pre ? .requestPreVote : .requestVote, to: voter, term: voteTerm, logTerm: log.lastTerm,
                    index: log.lastIndex, context: transfer ? Message.transferContext : []))
        }
    }

    enum ElectionOutcome { case pending, won, lost }

    mutating func recordVote(from voter: NodeID, granted: Bool) -> ElectionOutcome {
        if !votes.contains(where: { $0.id == voter }) {
            let at = votes.firstIndex { $0.id > voter } ?? votes.count
            votes.insert((voter, granted), at: at)
        }
        var yes = 0
        var no = 0
        for v in votes where tracker.isVoter(v.id) {
            if v.granted { yes += 1 } else { no += 1 }
        }
        if yes >= tracker.quorum { return .won }
        if no > tracker.voterCount - tracker.quorum { return .lost }
        return .pending
    }

    /// Proposes `data` for replication. On a follower the proposal is forwarded to the leader (consecutive
    /// forwards are batched into one message); its fate is then only visible through the committed entries.
    public mutating func propose(_ data: [UInt8]) throws(RaftError) {
        try propose(Entry(term: 0, index: 0, kind: .normal, data: data))
    }

    /// Proposes a membership change. Only one change may be in flight: the leader refuses a new one until the
    /// previous one is committed, and until it has committed an entry of its own term.
    public mutating func proposeConfChange(_ change: ConfChange) throws(RaftError) {
        guard change.node != 0 else { throw .proposalDropped(reason: "conf change for node 0") }
        if role == .leader {
            try validateConfChange(change)
        }
        try propose(Entry(term: 0, index: 0, kind: .confChange, data: change.serialized()))
    }

    mutating func validateConfChange(_ change: ConfChange) throws(RaftError) {
        if pendingConfIndex > log.committed {
            throw .proposalDropped(reason: "a configuration change is still pending")
        }
        let next = Self.applying(change, to: currentConf)
        if next.voters.isEmpty { throw .proposalDropped(reason: "the change would leave no voter") }
        if config.maxLearners > 0 && next.learners.count > max(config.maxLearners, currentConf.learners.count) {
            throw .tooManyLearners(limit: config.maxLearners)
        }
    }

    mutating func propose(_ entry: Entry) throws(RaftError) {
        switch role {
        case .leader:
            if leadTransferee != 0 {
                throw .proposalDropped(reason: "leadership transfer to \(leadTransferee) in progress")
            }
            if !tracker.isVoter(id) && confChanges.last.map({ $0.index <= log.committed }) ?? true {
                throw .proposalDropped(reason: "leader was removed from the configuration")
            }
            if config.maxUncommittedEntriesSize > 0 && uncommittedSize > 0
                && uncommittedSize + entry.data.count > config.maxUncommittedEntriesSize
            {
                throw .proposalDropped(reason: "too many uncommitted bytes")
            }
            var e = entry
            e.term = term
            e.index = log.lastIndex + 1
            if e.kind == .confChange { pendingConfIndex = e.index }
            appendEntry(e)
        case .follower:
            guard lead != 0 else { throw .proposalDropped(reason: "no leader") }
            // Batch consecutive forwards to the same leader into one message.
            if let last = msgs.indices.last, msgs[last].kind == .propose, msgs[last].to == lead {
                msgs[last].entries.append(entry)
            } else {
                send(Message(kind: .propose, to: lead, entries: [entry]))
            }
        case .candidate, .preCandidate:
            throw .proposalDropped(reason: "no leader (election in progress)")
        }
    }

    /// Appends one of the leader's entries to its log; replication is batched until `ready()`.
    mutating func appendEntry(_ e: Entry) {
        precondition(role == .leader)
        log.append(e)
        uncommittedSize += e.data.count
        if e.kind == .confChange {
            noteConfEntry(e)
            installConf()
        }
        if let i = tracker.slot(id) { tracker.progress[i].next = log.lastIndex + 1 }
        needsBroadcast = true
    }

    /// Called when the application applies a committed `.confChange` entry. The configuration already took
    /// effect when the entry was appended (one-at-a-time changes take effect on append, see the catalog), so
    /// this only returns the configuration as of that entry, for the application to store with its state.
    @discardableResult
    public mutating func applyConfChange(_ change: ConfChange) -> ConfState {
        if !confEntriesToApply.isEmpty {
            return confState(at: confEntriesToApply.removeFirst())
        }
        return currentConf
    }

    /// Requests a linearizable read. The answer arrives as a `ReadState` in a later Ready: serve the read once
    /// the state machine has applied `ReadState.index`. When no leader is known, the context comes back in
    /// `Ready.droppedReadIndexes`.
    public mutating func readIndex(context: [UInt8]) {
        switch role {
        case .leader:
            handleReadIndex(from: id, context: context)
        case .follower where lead != 0:
            send(Message(kind: .readIndex, to: lead, context: context))
        default:
            droppedReads.append(context)
        }
    }

    /// Hands leadership to `target` (a voter). On a follower the request is forwarded to the leader. While a
    /// transfer is in progress the leader drops proposals; it gives up after an election timeout.
    public mutating func transferLeadership(to target: NodeID) {
        switch role {
        case .leader:
            startTransfer(to: target)
        case .follower where lead != 0 && lead != target:
            send(Message(kind: .transferLeader, to: lead, index: target))
        default:
            break
        }
    }

    mutating func startTransfer(to target: NodeID) {
        guard target != id, tracker.isVoter(target), let i = tracker.slot(target) else { return }
        if leadTransferee == target { return }
        leadTransferee = target
        transferAttempted = true
        // The transfer must finish within one election timeout.
        electionElapsed = 0
        if tracker.progress[i].match == log.lastIndex {
            send(Message(kind: .timeoutNow, to: target))
        } else {
            needsBroadcast = true
        }
    }

    /// The transport could not deliver to `node`: stop pipelining to it and probe instead.
    public mutating func reportUnreachable(_ node: NodeID) {
        guard role == .leader, let i = tracker.slot(node), node != id else { return }
        if tracker.progress[i].state == .replicate { tracker.progress[i].becomeProbe() }
    }

    /// The application finished (or failed) sending the snapshot to `node`.
    public mutating func reportSnapshot(_ node: NodeID, succeeded: Bool) {
        guard role == .leader, let i = tracker.slot(node), tracker.progress[i].state == .snapshot else { return }
        if !succeeded { tracker.progress[i].pendingSnapshot = 0 }
        tracker.progress[i].becomeProbe()
        // Wait for the follower's answer (success) or the next heartbeat (failure) before sending again.
        tracker.progress[i].probeSent = true
    }

    /// Records that the application took a state-machine snapshot at `index` (at most the applied index):
    /// Raft keeps it to send to lagging followers and forgets log entries up to `snapshotCatchUpEntries`
    /// below it. The application may likewise drop its stored entries through `firstIndex - 1` afterwards.
    /// Returns the bytes of entry data dropped from memory.
    @discardableResult
    public mutating func compact(through index: UInt64, snapshotData: [UInt8]) -> Int {
        precondition(index <= log.applied, "cannot snapshot beyond the applied index")
        // A snapshot received from the leader while the application was applying may already cover `index`:
        // then there is nothing left to compact (a benign race, not an error).
        if let s = snapshot, s.metadata.index >= index { return 0 }
        if index < log.baseIndex { return 0 }
        guard let t = log.term(at: index) else { preconditionFailure("no term for index \(index)") }
        snapshot = Snapshot(
            metadata: SnapshotMetadata(index: index, term: t, confState: confState(at: index)), data: snapshotData)
        let keep = config.snapshotCatchUpEntries
        var newBase = index > keep ? index - keep : 0
        if role == .leader && config.catchUpRetention > 0 {
            // Only followers that are catching up now: receiving a snapshot, or heard from this round. A member
            // that is down gets a snapshot when it returns, as before.
            for pr in tracker.progress where pr.id != id && (pr.state == .snapshot || pr.recentActive) {
                let needs = pr.state == .snapshot ? pr.pendingSnapshot : pr.match
                if needs < newBase && index - needs <= config.catchUpRetention { newBase = needs }
            }
        }
        guard newBase > log.baseIndex else { return 0 }
        baseConf = confState(at: newBase)
        confChanges.removeAll { $0.index <= newBase }
        return log.compact(through: newBase)
    }

    // MARK: - Observation

    public var status: RaftStatus {
        var progress: [NodeID: ProgressStatus] = [:]
        if role == .leader {
            for pr in tracker.progress { progress[pr.id] = pr.status }
        }
        return RaftStatus(
            id: id, hardState: HardState(term: term, vote: vote, commit: log.committed),
            softState: SoftState(leader: lead, role: role), applied: log.applied, progress: progress,
            leadTransferee: leadTransferee, confState: currentConf, isLearner: tracker.conf.learners.contains(id),
            firstIndex: log.firstIndex, lastIndex: log.lastIndex, persistedIndex: log.persisted)
    }

    /// Entries currently held in memory (after the last compaction point). For tests and diagnostics.
    public var logEntries: [Entry] { log.entries }
    /// The latest snapshot known to this member (taken locally or received).
    public var latestSnapshot: Snapshot? { snapshot }
}

// MARK: - Cheap accessors (no allocation), for hot loops in simulators and servers.

extension RaftNode {
    public var currentTerm: UInt64 { term }
    public var leaderID: NodeID { lead }
    public var commitIndex: UInt64 { log.committed }
    public var appliedIndex: UInt64 { log.applied }
    public var firstIndex: UInt64 { log.firstIndex }
    public var lastIndex: UInt64 { log.lastIndex }
    public var votedFor: NodeID { vote }
    public var configuration: ConfState { currentConf }

    /// The entry at `index`, if it is still in the in-memory log.
    public func entry(at index: UInt64) -> Entry? {
        guard index > log.baseIndex && index <= log.lastIndex else { return nil }
        return log.entry(at: index)
    }

    /// The term of the entry at `index`, including the compaction point; nil if unknown.
    public func term(at index: UInt64) -> UInt64? { log.term(at: index) }
}
